//! Head folders: the output folder of `train` and `distill` (`heads/NAME/`), its provenance
//! (`meta.json`), and loading its tensors back over a base model. Below both `eval` (which
//! loads heads) and `train` (which writes them); it knows neither.
//!
//! Layout: `head.safetensors` (head-only: the classifier, and the pooler with `--train-pooler`)
//! or `model.safetensors` (full: every weight, so the folder is a model folder itself),
//! `meta.json`, `config.json`, the tokenizer (`tokenizer.json`, or `spiece.model` with
//! `tokenizer_config.json`), `loss.csv`, `loss.svg`, and `checkpoint/` while training.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;

pub mod files;

/// What a head folder holds, and so how a run trained it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every weight trains.
    Full,
    /// Frozen backbone; the classifier trains on cached pooled features.
    HeadOnly,
    /// Frozen encoder; pooler and classifier train on cached [CLS] hidden states.
    HeadPooler,
}

impl Mode {
    pub fn is_head(self) -> bool {
        self != Mode::Full
    }
}

/// Dev accuracy after an optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DevPoint {
    pub step: usize,
    pub accuracy: f64,
}

pub const HEAD_FILE: &str = "head.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "meta.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMeta {
    pub race_eval_version: String,
    pub mode: Mode,
    /// The base model as `train` opened it: a folder, or a Hub id pinned to the commit
    /// (`ORG/NAME@COMMIT`), so that the head folder reopens exactly that model.
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
    /// The run's settings (`train::TrainConfig` as JSON).
    pub hyperparameters: serde_json::Value,
    pub steps_done: usize,
    /// The step whose weights are saved (best dev accuracy).
    pub best: Option<DevPoint>,
    pub dev_history: Vec<DevPoint>,
    /// Set by `race-eval distill`: the teachers, the soft targets and how the student was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<serde_json::Value>,
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

/// The head tensors (canonical names) to load over the base model with
/// [`crate::model::LoadedModel::load_with_overrides`]: from a folder written by `race-eval train`
/// (checked to have been trained on these base weights), or from a bare `.safetensors` file of
/// head tensors (a seeded or exported head; only its names and shapes can be checked).
pub fn head_tensors(
    head_dir: &Path,
    base_dir: &Path,
    base_config: &ModelConfig,
    base_weights_hash: &str,
) -> Result<HashMap<String, Tensor>> {
    if head_dir.is_file() {
        // The weights file of a head folder is checked as the folder is (its meta.json names
        // the base it was trained on); only a loose file has nothing but names and shapes.
        match head_dir.parent().filter(|d| d.join(META_FILE).is_file()) {
            Some(folder) if read_meta(folder)?.weights_file.as_str() == file_name(head_dir) => {
                return head_tensors(folder, base_dir, base_config, base_weights_hash);
            }
            _ => return head_file(head_dir, base_config),
        }
    }
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
    let hash = base_weights_hash;
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
    for (name, t) in &tensors {
        crate::model::weights::check_finite(name, t, &file)?;
    }
    check_head_names(&file, &tensors, base_config, false)?;
    Ok(tensors)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `--head FILE.safetensors`: head tensors alone, e.g. the seeded classifier the MiniLM parity
/// fixture uses.
fn head_file(file: &Path, base_config: &ModelConfig) -> Result<HashMap<String, Tensor>> {
    if file.extension().is_none_or(|e| e != "safetensors") {
        bail!(
            "--head {}: expected a folder written by `race-eval train` or a .safetensors file of head tensors",
            file.display()
        );
    }
    let tensors = files::load_tensors(file)?;
    for (name, t) in &tensors {
        crate::model::weights::check_finite(name, t, file)?;
    }
    check_head_names(file, &tensors, base_config, true)?;
    let h = base_config.hidden_size;
    for (name, t) in &tensors {
        let want: &[usize] = match name.rsplit_once('.') {
            Some(("classifier", "weight")) => &[1, h],
            Some((_, "weight")) => &[h, h],
            Some(("classifier", _)) => &[1],
            _ => &[h],
        };
        if t.dims() != want {
            bail!(
                "{}: tensor `{name}` has shape {:?}, but --model has hidden size {h} (expected {want:?})",
                file.display(),
                t.dims()
            );
        }
    }
    Ok(tensors)
}

/// Every tensor must be a canonical weight of the model (and, with `head_only`, of its head).
fn check_head_names(
    file: &Path,
    tensors: &HashMap<String, Tensor>,
    config: &ModelConfig,
    head_only: bool,
) -> Result<()> {
    let family = config.family;
    for name in tensors.keys() {
        let canonical = family.canonical_name(name).as_deref() == Some(name.as_str());
        if !canonical || (head_only && !family.is_head_tensor(name)) {
            bail!(
                "{} has tensor `{name}`, which is not a {}weight of {}",
                file.display(),
                if head_only { "head " } else { "" },
                family.multiple_choice_class()
            );
        }
    }
    if tensors.is_empty() {
        bail!("{} holds no tensors", file.display());
    }
    Ok(())
}
