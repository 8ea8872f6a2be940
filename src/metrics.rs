//! Scores computed from predictions; nothing here runs a model.

use serde::Serialize;

use crate::data::Level;

/// Index of the largest logit (the first on ties, as `argmax` in torch/numpy).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Accuracy {
    pub correct: usize,
    pub total: usize,
}

impl Accuracy {
    pub fn add(&mut self, right: bool) {
        self.total += 1;
        self.correct += right as usize;
    }

    /// Fraction correct; `None` when there are no questions.
    pub fn value(&self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }
}

/// Accuracy overall and per RACE level.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LevelScores {
    pub overall: Accuracy,
    pub middle: Accuracy,
    pub high: Accuracy,
    pub other: Accuracy,
}

impl LevelScores {
    pub fn from_outcomes(outcomes: impl IntoIterator<Item = (Level, bool)>) -> Self {
        let mut s = Self::default();
        for (level, right) in outcomes {
            s.overall.add(right);
            match level {
                Level::Middle => s.middle.add(right),
                Level::High => s.high.add(right),
                Level::Other => s.other.add(right),
            }
        }
        s
    }
}
