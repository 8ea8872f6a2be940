//! Ensembles of saved runs: the per-option softmax probabilities averaged over members.

use anyhow::{bail, Result};

use super::Prediction;
use super::{
    check_same_questions, sha256_str, summarize, ModelInfo, Run, RunKind, RunMeta, RunSummary,
};
use crate::metrics::argmax;
use crate::stats::softmax;

/// Averages the members' probabilities question by question. The new predictions carry the
/// log of the averaged probabilities as logits (so their softmax is that average). Refuses
/// fewer than two runs and runs that did not see the same questions.
pub fn ensemble(runs: &[Run]) -> Result<(RunSummary, Vec<Prediction>)> {
    if runs.len() < 2 {
        bail!("an ensemble needs at least two runs (got {})", runs.len());
    }
    for other in &runs[1..] {
        check_same_questions(&runs[0], other)?;
        // A zero-shot LM's log-likelihoods and an encoder's logits (or two LM protocols) are
        // different kinds of score: their softmaxes are not averaged.
        let (a, b) = (
            &runs[0].summary.settings.protocol,
            &other.summary.settings.protocol,
        );
        if a != b {
            let name = |p: &Option<String>| match p {
                Some(p) => format!("zero-shot {p}"),
                None => "a fine-tuned model's logits".to_string(),
            };
            bail!(
                "{} scores by {} but {} by {}: an ensemble averages runs of one protocol only",
                runs[0].id(),
                name(a),
                other.id(),
                name(b)
            );
        }
    }
    let preds: Vec<Prediction> = (0..runs[0].predictions.len())
        .map(|q| {
            let first = &runs[0].predictions[q];
            let mut avg = vec![0.0f64; first.logits.len()];
            for run in runs {
                for (a, p) in avg.iter_mut().zip(softmax(&run.predictions[q].logits)) {
                    *a += p / runs.len() as f64;
                }
            }
            let logits: Vec<f32> = avg.iter().map(|&p| p.ln() as f32).collect();
            Prediction {
                pred_norm: None,
                pred: argmax(&logits),
                logits,
                ..first.clone()
            }
        })
        .collect();

    let first = &runs[0].summary;
    let ids: Vec<&str> = runs.iter().map(|r| r.id()).collect();
    let weights: Vec<&str> = runs
        .iter()
        .map(|r| r.summary.model.weights_sha256.as_str())
        .collect();
    let meta = RunMeta {
        kind: RunKind::Ensemble,
        model: ModelInfo {
            name: format!("ensemble{}", runs.len()),
            path: String::new(),
            weights_sha256: sha256_str(&weights.join("+")),
            weight_files: Vec::new(),
            head: None,
        },
        data: first.data.clone(),
        shard: first.shard,
        members: ids.iter().map(|s| s.to_string()).collect(),
        skipped: first.counts.skipped,
        skipped_reasons: first.counts.skipped_reasons.clone(),
        settings: first.settings.clone(),
        wall_secs: runs.iter().map(|r| r.summary.timing.wall_secs).sum(),
        model_secs: runs.iter().map(|r| r.summary.timing.model_secs).sum(),
    };
    Ok((summarize(meta, &preds), preds))
}
