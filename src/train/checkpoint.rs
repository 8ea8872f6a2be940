//! Resumable training state in `OUTPUT/checkpoint/`: trainable weights, AdamW moments and
//! `state.json` (steps done, logs, the run's fingerprint). The data order and dropout masks are
//! derived from the seed and the step, so these are all `--resume` needs to continue exactly.
//!
//! A new checkpoint is written into `checkpoint.tmp/` and swapped in only once complete; if
//! saving fails (disk full) the previous checkpoint stays usable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{DevPoint, LossPoint};
use crate::heads::files;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps done.
    pub step: usize,
    /// Hash of everything that must match to resume (hyperparameters, model, data).
    pub fingerprint: String,
    pub loss_log: Vec<LossPoint>,
    pub dev_history: Vec<DevPoint>,
    pub best: Option<DevPoint>,
}

pub fn dir_of(output: &Path) -> PathBuf {
    output.join("checkpoint")
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    dir.with_file_name(format!("{name}{suffix}"))
}

pub fn save(
    dir: &Path,
    state: &CheckpointState,
    weights: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
) -> Result<()> {
    let tmp = sibling(dir, ".tmp");
    let old = sibling(dir, ".old");
    let write = || -> Result<()> {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        files::save_tensors(&tmp.join("weights.safetensors"), weights)?;
        files::save_tensors(&tmp.join("optimizer.safetensors"), optimizer)?;
        files::write_json(&tmp.join("state.json"), state)?;
        if dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old)?;
            }
            std::fs::rename(dir, &old)?;
        }
        std::fs::rename(&tmp, dir)?;
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        Ok(())
    };
    write().with_context(|| {
        let _ = std::fs::remove_dir_all(&tmp);
        format!(
            "cannot save the checkpoint at step {} in {} (disk full?); the previous checkpoint is kept",
            state.step,
            dir.display()
        )
    })
}

/// The checkpoint to resume from: `dir`, or `dir.old` when a swap was interrupted.
/// What a checkpoint holds: state, trainable weights, optimizer moments.
pub type Loaded = (
    CheckpointState,
    HashMap<String, Tensor>,
    HashMap<String, Tensor>,
);

pub fn load(dir: &Path) -> Result<Loaded> {
    let dir = if dir.join("state.json").is_file() {
        dir.to_path_buf()
    } else if sibling(dir, ".old").join("state.json").is_file() {
        sibling(dir, ".old")
    } else {
        bail!(
            "--resume: no checkpoint in {}; start without --resume",
            dir.display()
        )
    };
    let text = std::fs::read_to_string(dir.join("state.json"))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .with_context(|| format!("{}/state.json is damaged", dir.display()))?;
    let weights = files::load_tensors(&dir.join("weights.safetensors"))?;
    let optimizer = files::load_tensors(&dir.join("optimizer.safetensors"))?;
    Ok((state, weights, optimizer))
}
