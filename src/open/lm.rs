//! Opening a decoder LM: a GGUF file (`--model FILE.gguf`: architecture from the metadata,
//! tokenizer built from the metadata), or a transformers folder whose `config.json` names a
//! Llama or Qwen2 decoder (`model_type` `llama`/`qwen2`, or `LlamaForCausalLM` /
//! `Qwen2ForCausalLM`) with its safetensors weights and `tokenizer.json`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::Device;
use tokenizers::Tokenizer;

use crate::features::gguf_tokenizer;
use crate::hub::{self, HubConfig, RepoRef};
use crate::model::llama::{self, Llama, LlamaConfig, WeightMode};

/// Whether `--model` names a GGUF file (by its extension): decoder LMs are opened from these.
pub fn is_gguf(spec: &Path) -> bool {
    spec.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The `config.json` of a local folder, when it has one that parses.
fn folder_config(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `--model` is a decoder LM: a GGUF file, or a local folder whose `config.json` names
/// a Llama or Qwen2 decoder.
pub fn is_decoder_lm(spec: &Path) -> bool {
    is_gguf(spec)
        || (spec.is_dir() && folder_config(spec).is_some_and(|c| llama::hf_family(&c).is_some()))
}

/// A decoder LM that `--model` names, found: its local file or folder, and the Hub repository
/// and commit it came from (a Hub model id whose `config.json` names a Llama or Qwen2 decoder,
/// or one GGUF file of a Hub repository, `ORG/NAME/FILE.gguf`).
#[derive(Debug, Clone)]
pub struct LmLocation {
    pub path: PathBuf,
    pub hub: Option<(RepoRef, String)>,
}

impl LmLocation {
    /// What the run record names: the Hub id at its commit (with the file), or the local path.
    pub fn pinned(&self) -> String {
        match &self.hub {
            Some((repo, commit)) if is_gguf(&self.path) => format!(
                "{}@{commit}/{}",
                repo.id,
                self.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            Some((repo, commit)) => format!("{}@{commit}", repo.id),
            None => self.path.display().to_string(),
        }
    }

    /// A short name: the GGUF file's stem, the Hub repository's name, or the folder's name.
    pub fn name(&self) -> String {
        let file = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        if is_gguf(&self.path) {
            let f = file(&self.path);
            return f.strip_suffix(".gguf").unwrap_or(&f).to_string();
        }
        match &self.hub {
            Some((repo, _)) => repo.id.rsplit('/').next().unwrap_or(&repo.id).to_string(),
            None => file(&self.path),
        }
    }
}

/// `--model SPEC` (with `--revision`) when it names a decoder LM, `None` when it names
/// something else (an encoder, or nothing: [`super::open_model`] then says what is wrong).
///
/// - an existing path: a GGUF file or a Llama/Qwen2 folder;
/// - `ORG/NAME/FILE.gguf[@REV]` that is no local file: that file of the Hub repository;
/// - a Hub id `ORG/NAME[@REV]` whose `config.json` (fetched alone first, or read from the
///   cache) names a Llama or Qwen2 decoder: the repository's config, tokenizer.json and
///   safetensors, as [`super::fetch_model`] brings them.
///
/// `expect_decoder` (decoder-only flags were given): a Hub id whose config.json cannot be had
/// is an error here, not left to the encoder path.
pub fn locate_decoder(
    spec: &str,
    revision: Option<&str>,
    cfg: &HubConfig,
    expect_decoder: bool,
) -> Result<Option<LmLocation>> {
    let path = Path::new(spec);
    if path.exists() {
        if !is_decoder_lm(path) {
            return Ok(None);
        }
        if let Some(r) = revision {
            bail!("--revision {r} applies to Hub models, but --model {spec} is a local file or folder");
        }
        return Ok(Some(LmLocation {
            path: path.to_path_buf(),
            hub: None,
        }));
    }
    let id = spec.rsplit_once('@').map_or(spec, |(id, _)| id);
    if is_gguf(Path::new(id)) {
        if path.is_absolute() || spec.starts_with('.') || id.matches('/').count() < 2 {
            bail!("--model {spec}: no such file");
        }
        let (repo, file) = hub::parse_model_file_spec(spec, revision)?;
        let (file_path, commit) = hub::fetch_file(&repo, &file, cfg).with_context(|| {
            format!("--model {spec}: no local file of that name, so it was taken as file {file} of Hub model {}", repo.id)
        })?;
        return Ok(Some(LmLocation {
            path: file_path,
            hub: Some((repo, commit)),
        }));
    }
    if super::model::looks_local(spec) || !hub::is_repo_id(id) {
        return Ok(None);
    }
    let repo = hub::parse_model_spec(spec, revision)?;
    // Only the config first: an encoder's repository is then fetched by `open_model`, which
    // reports its own errors (a failure here is left to it too, unless the flags asked for a
    // decoder).
    let config = match hub::fetch_file(&repo, "config.json", cfg) {
        Ok((config, _)) => config,
        Err(e) if expect_decoder => {
            return Err(e.context(format!(
                "--model {spec}: no local file or folder of that name, so it was taken as a Hub model id"
            )))
        }
        Err(_) => return Ok(None),
    };
    let family =
        folder_config(config.parent().unwrap_or(Path::new("."))).and_then(|c| llama::hf_family(&c));
    if family.is_none() {
        return Ok(None);
    }
    let (dir, commit) = super::fetch_model(&repo, cfg, false).with_context(|| {
        format!("--model {spec}: a Hub decoder LM (its config.json names a Llama/Qwen2 model)")
    })?;
    Ok(Some(LmLocation {
        path: dir,
        hub: Some((repo, commit)),
    }))
}

/// Where the weights are.
#[derive(Debug, Clone)]
pub enum LmWeights {
    Gguf,
    /// The safetensors files of a transformers folder.
    Safetensors(Vec<PathBuf>),
}

/// A decoder LM, opened: configuration and tokenizer read, weights not yet loaded.
pub struct OpenedLm {
    /// The GGUF file or the folder.
    pub path: PathBuf,
    pub config: LlamaConfig,
    pub tokenizer: Tokenizer,
    pub weights: LmWeights,
}

impl OpenedLm {
    /// The weight files: the GGUF file, or the safetensors files.
    pub fn weight_files(&self) -> Vec<PathBuf> {
        match &self.weights {
            LmWeights::Gguf => vec![self.path.clone()],
            LmWeights::Safetensors(files) => files.clone(),
        }
    }

    /// SHA-256 of the weight files.
    pub fn weights_hash(&self) -> Result<String> {
        crate::hash::sha256_files(&self.weight_files())
    }

    /// The weights: a GGUF file's in its quantisation or dequantised to f32 (`mode`); a
    /// transformers checkpoint's converted to f32 (`quantized` is refused there).
    pub fn load(&self, mode: WeightMode, device: &Device) -> Result<Llama> {
        match &self.weights {
            LmWeights::Gguf => Llama::from_gguf(&self.path, mode, device),
            LmWeights::Safetensors(files) => {
                if mode == WeightMode::Quantized {
                    bail!("--weights quantized applies to GGUF files; a safetensors checkpoint runs in f32");
                }
                Llama::from_safetensors(self.config.clone(), files, device)
                    .with_context(|| format!("--model {}", self.path.display()))
            }
        }
    }
}

/// Opens `--model`: a GGUF file or a transformers Llama/Qwen2 folder.
pub fn open_lm(path: &Path) -> Result<OpenedLm> {
    if is_gguf(path) {
        open_gguf(path)
    } else {
        open_hf_folder(path)
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
    check_vocab(path, &tokenizer, &config)?;
    Ok(OpenedLm {
        path: path.to_path_buf(),
        config,
        tokenizer,
        weights: LmWeights::Gguf,
    })
}

fn check_vocab(path: &Path, tokenizer: &Tokenizer, config: &LlamaConfig) -> Result<()> {
    let n = tokenizer.get_vocab_size(true);
    if n > config.vocab_size {
        bail!(
            "--model {}: the tokenizer has {n} tokens but the embedding only {} rows",
            path.display(),
            config.vocab_size
        );
    }
    Ok(())
}

/// Opens a transformers folder: `config.json` (Llama or Qwen2), `tokenizer.json`, and
/// `model.safetensors` or the shards that `model.safetensors.index.json` names.
pub fn open_hf_folder(dir: &Path) -> Result<OpenedLm> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("--model {}: no config.json", dir.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", cfg_path.display()))?;
    let config =
        LlamaConfig::from_hf_json(&json).with_context(|| format!("{}", cfg_path.display()))?;
    let index = dir.join("model.safetensors.index.json");
    let files = if index.is_file() {
        crate::model::weights::shard_names(&index)?
            .into_iter()
            .map(|n| dir.join(n))
            .collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    if let Some(f) = files.iter().find(|f| !f.is_file()) {
        bail!(
            "--model {}: {} is missing (a decoder LM folder needs model.safetensors or its index and shards)",
            dir.display(),
            f.display()
        );
    }
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| {
        anyhow::anyhow!("--model {}: cannot read tokenizer.json: {e}", dir.display())
    })?;
    check_vocab(dir, &tokenizer, &config)?;
    Ok(OpenedLm {
        path: dir.to_path_buf(),
        config,
        tokenizer,
        weights: LmWeights::Safetensors(files),
    })
}
