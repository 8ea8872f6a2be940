//! What distillation trains on: its settings, the teachers' averaged soft targets and where
//! they came from, and the provenance recorded in meta.json. Data only: making the targets is
//! [`super::distill`]'s, training on them [`super::trainer`]'s.

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::student::StudentInit;

/// The file in the output folder with one line per training question: its id, gold option, the
/// averaged teacher probabilities the student was trained on, and each teacher's.
pub const SOFT_TARGETS_FILE: &str = "soft_targets.jsonl";

/// Distillation's hyperparameters (part of [`super::TrainConfig`], so `--resume` checks them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Weight of the soft (teacher) term; `1 - alpha` goes to the gold label's cross-entropy.
    pub alpha: f64,
    /// Softmax temperature of both teacher and student in the soft term.
    pub temperature: f64,
    /// Encoder layers of the student (None: the student model's own).
    pub student_layers: Option<usize>,
}

impl DistillConfig {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.alpha) {
            bail!("--alpha must be in [0, 1], got {}", self.alpha);
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!("--temperature must be positive, got {}", self.temperature);
        }
        if self.student_layers == Some(0) {
            bail!("--student-layers must be at least 1");
        }
        Ok(())
    }
}

/// Where a teacher's answers came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TeacherSource {
    /// A run record: its folder and id.
    Run { dir: String, run_id: String },
    /// A model evaluated on the training split for this run.
    Model { model: String, weights_hash: String },
}

/// The teachers' probabilities at the run's temperature, per question id.
#[derive(Debug, Clone)]
pub struct Teachers {
    pub sources: Vec<TeacherSource>,
    /// Averaged over teachers.
    pub probs: HashMap<String, Vec<f32>>,
    /// SHA-256 of the soft-targets file's text: part of the run's fingerprint.
    pub hash: String,
    /// The soft-targets file's text.
    pub jsonl: String,
    /// From evaluating model teachers, for the caller to show.
    pub warnings: Vec<String>,
}

/// Softmax of `logits / t`.
pub fn softmax_t(logits: &[f32], t: f64) -> Vec<f32> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&z| ((z as f64 - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| (x / s) as f32).collect()
}

/// What meta.json records about a distilled model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillMeta {
    pub teachers: Vec<TeacherSource>,
    pub soft_targets_file: String,
    pub soft_targets_hash: String,
    pub student: Option<StudentInit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_at_temperature() {
        let p = softmax_t(&[2.0, 0.0, 0.0], 2.0);
        let e = 1f64.exp();
        assert!((p[0] as f64 - e / (e + 2.0)).abs() < 1e-6);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Large logits do not overflow.
        let p = softmax_t(&[1000.0, 0.0], 1.0);
        assert_eq!(p, [1.0, 0.0]);
    }
}
