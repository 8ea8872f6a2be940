//! Running the model over features: length-sorted dynamic batching, and predictions back in
//! input order.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::data::{Level, Question};
use crate::features::Features;
use crate::metrics::{argmax, LevelScores};
use crate::model::AlbertForMultipleChoice;

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
}

/// Batches of question indices: sorted by option count then length, so each batch pads only to
/// its own longest sequence; at most `batch_size` questions each, all with one option count.
pub fn plan_batches(features: &[Features], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..features.len()).collect();
    order.sort_by_key(|&i| (features[i].choices(), features[i].max_len()));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match batches.last_mut() {
            Some(b)
                if b.len() < batch_size.max(1)
                    && features[b[0]].choices() == features[i].choices() =>
            {
                b.push(i)
            }
            _ => batches.push(vec![i]),
        }
    }
    batches
}

/// (batch, choices, len) tensors for a batch, padded with `pad_id` and masked.
pub fn batch_tensors(
    features: &[&Features],
    pad_id: u32,
    device: &Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let b = features.len();
    let c = features[0].choices();
    let l = features.iter().map(|f| f.max_len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; b * c * l];
    let mut types = vec![0u32; b * c * l];
    let mut mask = vec![0u32; b * c * l];
    for (bi, f) in features.iter().enumerate() {
        for (ci, (row_ids, row_types)) in f.input_ids.iter().zip(&f.token_type_ids).enumerate() {
            let start = (bi * c + ci) * l;
            ids[start..start + row_ids.len()].copy_from_slice(row_ids);
            types[start..start + row_types.len()].copy_from_slice(row_types);
            mask[start..start + row_ids.len()].fill(1);
        }
    }
    let t = |v: Vec<u32>| Tensor::from_vec(v, (b, c, l), device);
    Ok((t(ids)?, t(types)?, t(mask)?))
}

/// Logits for every question, in input order.
///
/// Read-ahead: a second thread pads and packs the next batches (up to two ahead) on the CPU
/// while the model runs the current one.
pub fn logits(
    model: &AlbertForMultipleChoice,
    features: &[Features],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<Vec<Vec<f32>>> {
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); features.len()];
    let batches = plan_batches(features, batch_size);
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let batches = &batches;
        scope.spawn(move || {
            for batch in batches {
                let feats: Vec<&Features> = batch.iter().map(|&i| &features[i]).collect();
                // A closed channel means the consumer stopped on an error: stop too.
                if tx
                    .send(batch_tensors(&feats, pad_id, &Device::Cpu))
                    .is_err()
                {
                    break;
                }
            }
        });
        for batch in batches {
            let (ids, types, mask) = rx
                .recv()
                .map_err(|_| anyhow::anyhow!("batch builder stopped"))??;
            let (ids, types, mask) = (
                ids.to_device(device)?,
                types.to_device(device)?,
                mask.to_device(device)?,
            );
            let rows = model
                .forward(&ids, &types, &mask, false)?
                .to_dtype(DType::F32)?
                .to_vec2::<f32>()?;
            for (&i, row) in batch.iter().zip(rows) {
                out[i] = row;
            }
            if let Some(p) = progress {
                p.inc(batch.len() as u64);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

pub fn predictions(questions: &[Question], logits: Vec<Vec<f32>>) -> Vec<Prediction> {
    questions
        .iter()
        .zip(logits)
        .map(|(q, l)| Prediction {
            id: q.id.clone(),
            passage_id: q.passage_id.clone(),
            question_index: q.question_index,
            level: q.level,
            label: q.label,
            pred: argmax(&l),
            logits: l,
            article_words: Some(q.article.split_whitespace().count()),
            cloze: Some(q.question.contains('_')),
        })
        .collect()
}

pub fn scores(preds: &[Prediction]) -> LevelScores {
    LevelScores::from_outcomes(preds.iter().map(|p| (p.level, p.pred == p.label)))
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
