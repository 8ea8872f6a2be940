//! Merging the runs of `eval --shard i/n` back into the run an unsharded eval would have made:
//! the same predictions in the same order and the same numbers. (With --batch-size above 1 a
//! shard's batches hold other questions than the unsharded run's, so padding differs and logits
//! can differ in the last float digits; with --batch-size 1 they are bit-identical.)

use anyhow::{bail, Result};

use super::Prediction;
use super::{summarize, Run, RunKind, RunMeta, RunSummary};

/// Checks that `runs` are exactly the shards 0..n of one evaluation and interleaves their
/// predictions back into input order (question k came from shard k mod n).
pub fn merge(runs: &[Run]) -> Result<(RunSummary, Vec<Prediction>)> {
    if runs.is_empty() {
        bail!("nothing to merge: name the shard runs (e.g. `race-eval merge RUN_0 RUN_1`)");
    }
    let mut shards = Vec::with_capacity(runs.len());
    for r in runs {
        match r.summary.shard {
            Some(s) => shards.push((s, r)),
            None => bail!(
                "run {} is not a shard (it was not made with `eval --shard I/N`): only shard runs can be merged",
                r.id()
            ),
        }
    }
    let count = shards[0].0.count;
    let first = shards[0].1;
    for (s, r) in &shards {
        if s.count != count {
            bail!(
                "run {} is shard {s} but run {} is shard {}: all shards must split the data the same number of ways",
                r.id(),
                first.id(),
                shards[0].0
            );
        }
        let (a, b) = (&first.summary, &r.summary);
        let mismatch = if a.data.sha256 != b.data.sha256 {
            Some("data (sha256)")
        } else if a.data.split != b.data.split || a.data.level != b.data.level {
            Some("split or level")
        } else if a.model.weights_sha256 != b.model.weights_sha256 {
            Some("model weights (sha256)")
        } else if a.settings.max_seq_len != b.settings.max_seq_len
            || a.settings.max_qa_len != b.settings.max_qa_len
            || a.settings.dtype != b.settings.dtype
        {
            Some("settings (max_seq_len, max_qa_len, dtype)")
        } else {
            None
        };
        if let Some(what) = mismatch {
            bail!(
                "runs {} and {} differ in {what}: shards of one evaluation must use the same model, data and settings",
                first.id(),
                r.id()
            );
        }
    }
    let mut by_index: Vec<Option<&Run>> = vec![None; count];
    for (s, r) in &shards {
        if let Some(prev) = by_index[s.index] {
            bail!(
                "shard {s} is given twice (runs {} and {}): give each shard once",
                prev.id(),
                r.id()
            );
        }
        by_index[s.index] = Some(r);
    }
    let missing: Vec<String> = (0..count)
        .filter(|&i| by_index[i].is_none())
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard(s) {} missing: evaluate them with `race-eval eval … --shard I/N` and merge all {count}",
            missing.join(", ")
        );
    }
    let parts: Vec<&Run> = by_index.into_iter().flatten().collect();
    let total: usize = parts.iter().map(|r| r.predictions.len()).sum();
    for (i, r) in parts.iter().enumerate() {
        let expected = super::Shard { index: i, count }.len_of(total);
        if r.predictions.len() != expected {
            bail!(
                "shard {i}/{count} (run {}) has {} questions but should have {expected} of {total}: it is incomplete or from other data",
                r.id(),
                r.predictions.len()
            );
        }
    }
    let preds: Vec<Prediction> = (0..total)
        .map(|k| parts[k % count].predictions[k / count].clone())
        .collect();

    let meta = RunMeta {
        kind: RunKind::Merge,
        model: first.summary.model.clone(),
        data: first.summary.data.clone(),
        shard: None,
        members: parts.iter().map(|r| r.id().to_string()).collect(),
        skipped: first.summary.counts.skipped,
        skipped_reasons: first.summary.counts.skipped_reasons.clone(),
        settings: first.summary.settings.clone(),
        wall_secs: parts.iter().map(|r| r.summary.timing.wall_secs).sum(),
        model_secs: parts.iter().map(|r| r.summary.timing.model_secs).sum(),
    };
    Ok((summarize(meta, &preds), preds))
}
