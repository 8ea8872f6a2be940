//! Running the model over features: length-sorted dynamic batching, and predictions back in
//! input order. [`pipeline`] is a whole evaluation (model, data, run, scores, record).

pub mod lm;
pub mod pipeline;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use indicatif::ProgressBar;

use crate::data::Question;
use crate::features::{Features, FormatConfig, TextEncoder};
use crate::metrics::argmax;
use crate::model::MultipleChoiceModel;
use crate::results::Prediction;

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

/// One batch on its way to the model.
struct Packed {
    /// Indices of its questions in the input.
    questions: Vec<usize>,
    /// (ids, types, mask), (batch, choices, len).
    tensors: (Tensor, Tensor, Tensor),
    /// Tokens before padding.
    real_tokens: usize,
}

/// Tokens a run fed the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Before padding: what the CPU path computes (it packs padding away).
    pub real: usize,
    /// With each batch padded to its longest sequence: what a padded (GPU) batch computes.
    pub padded: usize,
}

type Sender = std::sync::mpsc::SyncSender<Result<Packed>>;

/// Packs `features` into length-sorted batches and sends them to the model side, with question
/// indices offset by `first`. Returns false once the model side has stopped (on an error).
fn send_batches(
    tx: &Sender,
    features: &[Features],
    first: usize,
    batch_size: usize,
    pad_id: u32,
) -> bool {
    plan_batches(features, batch_size).into_iter().all(|batch| {
        let feats: Vec<&Features> = batch.iter().map(|&i| &features[i]).collect();
        let packed = batch_tensors(&feats, pad_id, &Device::Cpu).map(|tensors| Packed {
            questions: batch.iter().map(|&i| first + i).collect(),
            tensors,
            real_tokens: feats
                .iter()
                .flat_map(|f| f.input_ids.iter().map(Vec::len))
                .sum(),
        });
        tx.send(packed).is_ok()
    })
}

/// Questions per read-ahead window, in batches: each window is tokenised, sorted by length and
/// packed into batches while the model runs the previous ones.
const WINDOW_BATCHES: usize = 32;

/// Logits for every question of `features` (already tokenised), in input order.
///
/// Read-ahead: a second thread pads and packs the next batches (up to two ahead) while the
/// model runs the current one.
pub fn logits(
    model: &MultipleChoiceModel,
    features: &[Features],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<Vec<Vec<f32>>> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        scope.spawn(move || send_batches(&tx, features, 0, batch_size, pad_id));
        run_batches(model, rx, features.len(), device, progress).map(|(logits, _)| logits)
    })
}

/// Questions to tokenise as the model goes (see [`logits_streaming`]).
pub struct Streamed<'a> {
    pub encoder: &'a TextEncoder,
    pub questions: &'a [Question],
    pub format: &'a FormatConfig,
    /// Questions per read-ahead window (rounded up to a passage boundary).
    pub window: usize,
}

impl<'a> Streamed<'a> {
    /// Windows of [`WINDOW_BATCHES`] batches.
    pub fn new(
        encoder: &'a TextEncoder,
        questions: &'a [Question],
        format: &'a FormatConfig,
        batch_size: usize,
    ) -> Self {
        Self {
            encoder,
            questions,
            format,
            window: batch_size.max(1) * WINDOW_BATCHES,
        }
    }
}

/// Questions `--dtype int8` calibrates its smoothing factors on: the first of the data set
/// (before sharding, so every shard quantises alike; inputs only, labels unused). The maxima
/// it needs settle early: on real MiniLM, 8 and 128 calibration questions gave the same
/// fidelity (pooled [CLS] relative error 0.027 either way).
pub const INT8_CALIBRATION_QUESTIONS: usize = 32;

/// Calibrates an int8 model's smoothing factors (SmoothQuant) by running it over `questions`;
/// see `MultipleChoiceModel::calibrate_int8`.
pub fn calibrate_int8(
    model: &mut MultipleChoiceModel,
    encoder: &TextEncoder,
    questions: &[Question],
    format: &FormatConfig,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<()> {
    model.calibrate_int8(|m| {
        let input = Streamed::new(encoder, questions, format, batch_size);
        logits_streaming(m, input, batch_size, pad_id, device, None).map(|_| ())
    })
}

/// Logits for every question, in input order, tokenising as it goes.
///
/// Read-ahead: a second thread tokenises the questions in windows (cut at passage boundaries,
/// so each article is tokenised once), sorts each window by length and packs its batches, up to
/// two batches ahead of the model. The model starts after the first window instead of after the
/// whole data set, and tokenising overlaps the model's work. Also returns the tokens it ran.
pub fn logits_streaming(
    model: &MultipleChoiceModel,
    input: Streamed,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<(Vec<Vec<f32>>, Tokens)> {
    let questions = input.questions;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        scope.spawn(move || {
            for (start, end) in windows(questions, input.window) {
                match input
                    .encoder
                    .encode_all(&questions[start..end], input.format)
                {
                    Ok(features) if send_batches(&tx, &features, start, batch_size, pad_id) => {}
                    Ok(_) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        run_batches(model, rx, questions.len(), device, progress)
    })
}

/// Ranges of about `size` questions that do not split a passage.
pub fn windows(questions: &[Question], size: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < questions.len() {
        let mut end = (start + size.max(1)).min(questions.len());
        while end < questions.len() && questions[end].passage_id == questions[end - 1].passage_id {
            end += 1;
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// The model side of the read-ahead: runs each batch as it arrives and files its logits under
/// the questions' indices. Every one of the `n` questions must arrive.
fn run_batches(
    model: &MultipleChoiceModel,
    rx: std::sync::mpsc::Receiver<Result<Packed>>,
    n: usize,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<(Vec<Vec<f32>>, Tokens)> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut tokens = Tokens::default();
    for packed in rx {
        let Packed {
            questions: batch,
            tensors: (ids, types, mask),
            real_tokens,
        } = packed?;
        tokens.real += real_tokens;
        tokens.padded += ids.elem_count();
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
            out[i] = Some(row);
        }
        if let Some(p) = progress {
            p.inc(batch.len() as u64);
        }
    }
    let logits = out
        .into_iter()
        .enumerate()
        .map(|(i, l)| l.ok_or_else(|| anyhow::anyhow!("internal: question {i} was never batched")))
        .collect::<Result<_>>()?;
    Ok((logits, tokens))
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
            category: q.category.clone(),
            pred_norm: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Level;

    fn question(passage: &str, index: usize) -> Question {
        Question {
            id: Question::make_id(passage, index),
            passage_id: passage.into(),
            question_index: index,
            level: Level::Middle,
            article: "".into(),
            question: String::new(),
            options: vec![],
            label: 0,
            category: None,
        }
    }

    #[test]
    fn windows_cover_everything_and_never_split_a_passage() {
        let qs: Vec<Question> = [("a", 3), ("b", 1), ("c", 4), ("d", 2)]
            .iter()
            .flat_map(|&(p, n)| (0..n).map(move |i| question(p, i)))
            .collect();
        assert_eq!(windows(&qs, 2), vec![(0, 3), (3, 8), (8, 10)]);
        assert_eq!(windows(&qs, 100), vec![(0, 10)]);
        assert_eq!(windows(&qs, 0).len(), 4);
        assert!(windows(&[], 5).is_empty());
    }
}
