//! Opening a decoder LM given as a GGUF file (`--model FILE.gguf`): its architecture from the
//! metadata, its tokenizer built from the metadata, and the file's hash for run records.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::Device;
use tokenizers::Tokenizer;

use crate::features::gguf_tokenizer;
use crate::model::llama::{Llama, LlamaConfig, WeightMode};

/// Whether `--model` names a GGUF file (by its extension): decoder LMs are opened from these.
pub fn is_gguf(spec: &Path) -> bool {
    spec.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// A GGUF model, opened: configuration and tokenizer read, weights not yet loaded.
pub struct OpenedLm {
    pub path: PathBuf,
    pub config: LlamaConfig,
    pub tokenizer: Tokenizer,
}

impl OpenedLm {
    /// SHA-256 of the file.
    pub fn weights_hash(&self) -> Result<String> {
        crate::hash::sha256_files(std::slice::from_ref(&self.path))
    }

    /// The weights, in the file's quantisation or dequantised to f32.
    pub fn load(&self, mode: WeightMode, device: &Device) -> Result<Llama> {
        Llama::from_gguf(&self.path, mode, device)
    }
}

/// Opens `--model FILE.gguf`.
pub fn open_gguf(path: &Path) -> Result<OpenedLm> {
    if !path.is_file() {
        bail!("--model {}: no such file", path.display());
    }
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("--model {}: cannot open it", path.display()))?;
    let content = gguf_file::Content::read(&mut f)
        .with_context(|| format!("--model {}: not a GGUF file", path.display()))?;
    let config =
        LlamaConfig::from_gguf(&content).with_context(|| format!("--model {}", path.display()))?;
    let tokenizer = gguf_tokenizer::from_metadata(&content)
        .with_context(|| format!("--model {}: its tokenizer", path.display()))?;
    let n = tokenizer.get_vocab_size(true);
    if n > config.vocab_size {
        bail!(
            "--model {}: the tokenizer has {n} tokens but the embedding only {} rows",
            path.display(),
            config.vocab_size
        );
    }
    Ok(OpenedLm {
        path: path.to_path_buf(),
        config,
        tokenizer,
    })
}
