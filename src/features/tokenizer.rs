//! Where a model's tokenizer comes from, and loading it: `tokenizer.json` as is, or a
//! SentencePiece `spiece.model` converted in memory by [`super::spiece`] (with
//! `tokenizer_config.json`'s options when the folder has one).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use tokenizers::Tokenizer;

use super::spiece;

/// A model folder's tokenizer files.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerFile {
    Json(PathBuf),
    /// A SentencePiece model to convert, with `tokenizer_config.json` when there is one.
    Spiece {
        model: PathBuf,
        config: Option<PathBuf>,
    },
}

impl TokenizerFile {
    /// The tokenizer files of folder `dir`: `tokenizer.json`, else `spiece.model`.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if dir.join("tokenizer.json").is_file() {
            return Ok(TokenizerFile::Json(dir.join("tokenizer.json")));
        }
        if dir.join("spiece.model").is_file() {
            let config = dir.join("tokenizer_config.json");
            return Ok(TokenizerFile::Spiece {
                model: dir.join("spiece.model"),
                config: config.is_file().then_some(config),
            });
        }
        bail!(
            "{}: no tokenizer: expected tokenizer.json or a SentencePiece spiece.model",
            dir.display()
        )
    }

    /// The files themselves (to copy beside trained weights, or to hash).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            TokenizerFile::Json(p) => vec![p.clone()],
            TokenizerFile::Spiece { model, config } => std::iter::once(model.clone())
                .chain(config.clone())
                .collect(),
        }
    }

    /// The tokenizer, converting `spiece.model` when there is no `tokenizer.json`.
    pub fn load(&self) -> Result<Tokenizer> {
        match self {
            TokenizerFile::Json(path) => Tokenizer::from_file(path)
                .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display())),
            TokenizerFile::Spiece { model, config } => {
                let opts = match config {
                    Some(c) => spiece::SpieceOptions::from_tokenizer_config(c)?,
                    None => spiece::SpieceOptions::default(),
                };
                spiece::convert_file(model, opts)
            }
        }
    }
}
