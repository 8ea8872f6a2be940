//! The output folder of `train` (`heads/NAME/`) and loading it back for `eval`.
//!
//! Layout: `head.safetensors` (head-only: the classifier, and the pooler with `--train-pooler`)
//! or `model.safetensors` (full: every weight, so the folder is a model folder itself),
//! `meta.json`, `config.json`, `tokenizer.json`, `loss.csv`, and `checkpoint/` while training.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::files;
use super::trainer::DevPoint;
use super::{Mode, TrainConfig};
use crate::model::ModelConfig;

pub const HEAD_FILE: &str = "head.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "meta.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMeta {
    pub race_eval_version: String,
    pub mode: Mode,
    /// The base model folder as given to `train`.
    pub base_model: String,
    /// SHA-256 of the base model's weight files.
    pub base_weights_hash: String,
    pub hidden_size: usize,
    pub weights_file: String,
    pub data: String,
    pub split: String,
    pub dev_split: String,
    pub data_hash: String,
    pub dev_data_hash: String,
    pub train_questions: usize,
    pub dev_questions: usize,
    pub hyperparameters: TrainConfig,
    pub steps_done: usize,
    /// The step whose weights are saved (best dev accuracy).
    pub best: Option<DevPoint>,
    pub dev_history: Vec<DevPoint>,
}

pub fn read_meta(dir: &Path) -> Result<HeadMeta> {
    let path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "--head {}: no {META_FILE}; is this a folder written by `race-eval train`?",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
}

/// `eval --model DIR` where DIR is a head-only folder: refused with the right command.
pub fn refuse_head_as_model(dir: &Path) -> Result<()> {
    if dir.join(HEAD_FILE).is_file() && !dir.join(MODEL_FILE).is_file() {
        let base = read_meta(dir)
            .map(|m| m.base_model)
            .unwrap_or_else(|_| "BASE".into());
        bail!(
            "--model {}: this folder holds a head only (head-only training), not a whole model; use --model {base} --head {}",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Checks that the head in `head_dir` was trained on this base model and returns its tensors
/// (canonical names), to load with [`crate::model::LoadedModel::load_with_overrides`].
pub fn head_tensors(
    head_dir: &Path,
    base_dir: &Path,
    base_config: &ModelConfig,
    base_weight_files: &[PathBuf],
) -> Result<(HeadMeta, HashMap<String, Tensor>)> {
    let meta = read_meta(head_dir)?;
    if meta.hidden_size != base_config.hidden_size {
        bail!(
            "--head {} was trained on a base model with hidden size {} ({}), but --model {} has hidden size {}: pass the base model it was trained on",
            head_dir.display(),
            meta.hidden_size,
            meta.base_model,
            base_dir.display(),
            base_config.hidden_size
        );
    }
    let hash = files::hash_files(base_weight_files)?;
    if meta.mode.is_head() && hash != meta.base_weights_hash {
        bail!(
            "--head {} was trained on other base weights ({}, weights hash {}…) than --model {} (hash {}…): a head only works on the backbone it was trained with",
            head_dir.display(),
            meta.base_model,
            &meta.base_weights_hash[..12.min(meta.base_weights_hash.len())],
            base_dir.display(),
            &hash[..12]
        );
    }
    let file = head_dir.join(&meta.weights_file);
    let tensors = files::load_tensors(&file)?;
    for name in tensors.keys() {
        if base_config.family.canonical_name(name).as_deref() != Some(name.as_str()) {
            bail!(
                "{} has tensor `{name}`, which is not a weight of {}",
                file.display(),
                base_config.family.multiple_choice_class()
            );
        }
    }
    Ok((meta, tensors))
}
