//! Learning-rate schedule: linear warmup from 0, then linear decay to 0 at the last step
//! (transformers' `get_linear_schedule_with_warmup`, ALBERT's RACE recipe).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LinearSchedule {
    /// The learning rate of optimizer step `step` (0-based), as the reference's `LambdaLR`
    /// gives it before its `scheduler.step()`.
    pub fn lr(&self, step: usize) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let left = self.total_steps.saturating_sub(step) as f64;
            let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
            (left / span).max(0.0)
        };
        self.peak_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay_to_zero() {
        let s = LinearSchedule {
            peak_lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        assert_eq!(s.lr(110), 0.0);
        assert_eq!(s.lr(500), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        let s = LinearSchedule {
            peak_lr: 2e-5,
            warmup_steps: 0,
            total_steps: 4,
        };
        assert_eq!(s.lr(0), 2e-5);
        assert!((s.lr(2) - 1e-5).abs() < 1e-18);
    }
}
