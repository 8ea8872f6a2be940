//! The predictions file (`predictions.jsonl`): one line per question, the unit every result
//! (scores, run records, comparisons, ensembles) is computed from. Nothing here knows a model.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::Level;
use crate::metrics::LevelScores;

/// One line of `predictions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    pub passage_id: String,
    pub question_index: usize,
    pub level: Level,
    /// Gold option index.
    pub label: usize,
    /// Predicted option index.
    pub pred: usize,
    pub logits: Vec<f32>,
    /// Whitespace-separated words in the article, for breakdowns by length (tokenizer-free, so
    /// runs of different models share buckets). Absent in files written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_words: Option<usize>,
    /// Whether the question is a cloze (has a `_` blank) rather than interrogative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloze: Option<bool>,
    /// The task's own question grouping (QuAIL's question type, MCTest's one/multiple).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Zero-shot LM runs: the harness' `acc_norm` choice (log-likelihood divided by the
    /// option's length in characters); `logits` are then the options' log-likelihoods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pred_norm: Option<usize>,
}

pub fn scores(preds: &[Prediction]) -> LevelScores {
    LevelScores::from_outcomes(preds.iter().map(|p| (p.level, p.pred == p.label)))
}

/// Accuracy by `pred_norm` (the harness' `acc_norm`), when every prediction has one.
pub fn scores_norm(preds: &[Prediction]) -> Option<LevelScores> {
    if preds.is_empty() || preds.iter().any(|p| p.pred_norm.is_none()) {
        return None;
    }
    Some(LevelScores::from_outcomes(
        preds
            .iter()
            .map(|p| (p.level, p.pred_norm == Some(p.label))),
    ))
}

pub fn write_predictions(path: &Path, preds: &[Prediction]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for p in preds {
        serde_json::to_writer(&mut w, p)?;
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(line) {
            Ok(p) => out.push(p),
            Err(e) => bail!("{}:{}: not a prediction record: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}
