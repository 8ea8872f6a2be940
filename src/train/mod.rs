//! Fine-tuning ALBERT on RACE (`race-eval train`).
//!
//! Two modes: full fine-tuning as ALBERT's RACE recipe ([`Mode::Full`]), and training only the
//! head on features computed once by the frozen backbone and cached on disk ([`Mode::HeadOnly`]:
//! the classifier on pooled outputs; [`Mode::HeadPooler`]: pooler and classifier on [CLS]
//! hidden states). Pieces: [`optimizer`] (AdamW as torch, gradient clipping), [`schedule`]
//! (linear warmup and decay), [`cache`] (head-only features), [`objective`] (what a step
//! computes), [`checkpoint`] (resumable state), [`trainer`] (the run in named steps), [`distill`]
//! (`race-eval distill`: teachers' soft targets, then training on them), [`targets`] (the soft
//! targets and their provenance), [`student`] (smaller students). The output folder's
//! layout and meta.json are [`crate::heads`]'s.

pub mod cache;
pub mod checkpoint;
pub mod distill;
pub mod objective;
pub mod optimizer;
pub mod schedule;
pub mod student;
pub mod targets;
pub mod trainer;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::features::FormatConfig;
pub use crate::heads::{DevPoint, Mode};
pub use optimizer::{AdamW, AdamWConfig};
pub use schedule::LinearSchedule;
pub use trainer::{train, Epochs, LossPoint, TrainOptions, TrainReport};

/// Every hyperparameter of a run (recorded in meta.json; `--resume` requires the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub mode: Mode,
    pub lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Questions per optimizer step (the effective batch).
    pub batch_size: usize,
    /// Questions per forward/backward pass; gradients of `batch_size / micro_batch_size` passes
    /// are accumulated.
    pub micro_batch_size: usize,
    pub max_grad_norm: f64,
    pub adamw: AdamWConfig,
    pub seed: u64,
    pub eval_every: usize,
    pub save_every: usize,
    pub format: FormatConfig,
    /// Dropout overrides (None: the model's config.json).
    pub hidden_dropout: Option<f64>,
    pub attention_dropout: Option<f64>,
    pub classifier_dropout: Option<f64>,
    /// Knowledge distillation (`race-eval distill`): loss weights, temperature, student size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<targets::DistillConfig>,
}

impl Default for TrainConfig {
    /// ALBERT's RACE recipe: lr 1e-5, batch 32, 12,000 steps with 1,000 warmup, clip 1.0.
    fn default() -> Self {
        Self {
            mode: Mode::Full,
            lr: 1e-5,
            warmup_steps: 1000,
            total_steps: 12000,
            batch_size: 32,
            micro_batch_size: 4,
            max_grad_norm: 1.0,
            adamw: AdamWConfig::default(),
            seed: 12345,
            eval_every: 1000,
            save_every: 1000,
            format: FormatConfig::default(),
            hidden_dropout: None,
            attention_dropout: None,
            classifier_dropout: None,
            distill: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.total_steps == 0 {
            bail!("--steps must be at least 1");
        }
        if self.batch_size == 0 || self.micro_batch_size == 0 {
            bail!("--batch-size and --micro-batch-size must be at least 1");
        }
        if self.eval_every == 0 || self.save_every == 0 {
            bail!("--eval-every and --save-every must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            bail!("--lr must be a non-negative number, got {}", self.lr);
        }
        let a = &self.adamw;
        if !(0.0..1.0).contains(&a.beta1) || !(0.0..1.0).contains(&a.beta2) {
            bail!("--beta1 and --beta2 must be in [0, 1)");
        }
        if a.eps.is_nan() || a.eps <= 0.0 || a.weight_decay.is_nan() || a.weight_decay < 0.0 {
            bail!("--adam-eps must be positive and --weight-decay non-negative");
        }
        for (flag, p) in [
            ("--hidden-dropout", self.hidden_dropout),
            ("--attention-dropout", self.attention_dropout),
            ("--classifier-dropout", self.classifier_dropout),
        ] {
            if let Some(p) = p {
                if !(0.0..1.0).contains(&p) {
                    bail!("{flag} must be in [0, 1), got {p}");
                }
            }
        }
        if let Some(d) = &self.distill {
            d.validate()?;
            if d.student_layers.is_some() && self.mode != Mode::Full {
                bail!("--student-layers needs full training (drop --head-only): a smaller student's layers must train");
            }
        }
        Ok(())
    }

    pub fn schedule(&self) -> LinearSchedule {
        LinearSchedule {
            peak_lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.total_steps,
        }
    }
}
