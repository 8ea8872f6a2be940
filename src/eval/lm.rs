//! Zero-shot evaluation of a decoder LM (a GGUF file) in lm-evaluation-harness' protocol
//! ([`crate::features::harness`]): each scored question's prompt runs once and its keys and
//! values serve all of its options, which run as one batch; an option's score is the summed
//! log-probability of its tokens, `pred` the argmax (the harness' `acc`) and `pred_norm` the
//! argmax after dividing by the option's length in characters (`acc_norm`).
//!
//! Documents run longest first, as the harness runs its requests, a passage's documents
//! together: under `harness-all` each question's prompt extends the one before it, whose keys
//! and values it reuses for the tokens they share. Tokenising runs ahead of the model in a
//! second thread. At the model's context limit
//! (`{arch}.context_length`, or [`LmRequest::max_len`]) the prompt is truncated from the left
//! per option, as the harness does; such options then run without the shared cache, and the
//! outcome counts them. Nothing here prints.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;

use crate::data::{self, LevelFilter, Task};
use crate::features::harness::{self, LmDoc, LmIds, Protocol};
use crate::metrics::LevelScores;
use crate::model::llama::{KvCache, Llama, WeightMode};
use crate::open::{self, LmLocation, OpenedData, OpenedLm};
use crate::results::{self, ModelInfo, Prediction, RunKind, RunMeta, Settings};

/// What to evaluate, and how.
#[derive(Debug, Clone)]
pub struct LmRequest {
    /// A GGUF file or a transformers Llama/Qwen2 folder, local or from the Hub
    /// ([`open::locate_decoder`]).
    pub model: LmLocation,
    pub data: PathBuf,
    pub task: Task,
    pub split: String,
    pub level: LevelFilter,
    pub skip_invalid: bool,
    pub protocol: Protocol,
    /// Score only the first N documents (questions scored), for quick runs and benchmarks.
    pub limit: Option<usize>,
    /// The context limit in tokens; `None`: the model's own.
    pub max_len: Option<usize>,
    /// How the weights are held and multiplied.
    pub weights: WeightMode,
    pub quiet: bool,
}

/// Everything one LM evaluation produced.
pub struct LmOutcome {
    pub model: OpenedLm,
    pub data: OpenedData,
    pub dataset: data::Dataset,
    pub predictions: Vec<Prediction>,
    pub scores: LevelScores,
    pub scores_norm: LevelScores,
    pub warnings: Vec<String>,
    /// Questions scored (documents) and tokens run through the model.
    pub documents: usize,
    pub tokens: usize,
    /// Documents whose prompt was truncated at the context limit.
    pub truncated: usize,
    pub wall_secs: f64,
    pub model_secs: f64,
}

/// The log-likelihood of every option of one document, per option its tokens' log-probabilities;
/// the tokens run through the model; whether the prompt was truncated at the context limit.
/// `previous` holds the last prompt's ids and cache, reused for the tokens this prompt shares
/// with it ([`Llama::prompt_reusing`]), and is left holding this one's (emptied when this one
/// was truncated).
pub fn score_ids(
    model: &Llama,
    ids: &LmIds,
    max_len: usize,
    previous: &mut Option<(Vec<u32>, KvCache)>,
) -> Result<(Vec<Vec<f32>>, usize, bool)> {
    let before = previous.take();
    match harness::truncated_contexts(ids, max_len)? {
        None => {
            let (cache, ran) = match before {
                Some((prev_ids, cache)) => {
                    model.prompt_reusing(Some((&prev_ids, cache)), &ids.context)?
                }
                None => model.prompt_reusing(None, &ids.context)?,
            };
            let out = model.continuation_logprobs(&cache, &ids.continuations)?;
            let tokens = ran + ids.continuations.iter().map(|c| c.len() - 1).sum::<usize>();
            *previous = Some((ids.context.clone(), cache));
            Ok((out, tokens, false))
        }
        Some(contexts) => {
            let mut out = Vec::with_capacity(contexts.len());
            let mut tokens = 0;
            for (ctx, cont) in contexts.iter().zip(&ids.continuations) {
                out.push(model.sequence_logprobs(ctx, cont)?);
                tokens += ctx.len() + cont.len() - 1;
            }
            Ok((out, tokens, true))
        }
    }
}

/// Document indices in the order they run: the documents of one passage together and in their
/// own order (under `harness-all` each prompt extends the one before, whose cache it reuses),
/// the passages longest first (their longest prompt + longest continuation, in characters);
/// ties in document order. Under `harness-last` (one document per passage) that is simply the
/// longest document first.
pub fn run_order(docs: &[LmDoc], passage: impl Fn(&LmDoc) -> String) -> Vec<usize> {
    let size =
        |d: &LmDoc| d.context.len() + d.continuations.iter().map(String::len).max().unwrap_or(0);
    let mut groups: Vec<(String, usize, Vec<usize>)> = Vec::new();
    let mut at = std::collections::HashMap::new();
    for (i, d) in docs.iter().enumerate() {
        let key = passage(d);
        let g = *at.entry(key.clone()).or_insert_with(|| {
            groups.push((key, 0, Vec::new()));
            groups.len() - 1
        });
        groups[g].1 = groups[g].1.max(size(d));
        groups[g].2.push(i);
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    groups.into_iter().flat_map(|g| g.2).collect()
}

/// Opens the GGUF file and the data, and scores.
pub fn evaluate_lm(req: &LmRequest) -> Result<LmOutcome> {
    let started = Instant::now();
    let model = open::open_lm(&req.model.path)?;
    let hub_cfg = open::hub_config(req.quiet);
    let data = open::open_data(&req.data, &req.split, req.level, &hub_cfg)?.with_task(req.task);
    let dataset = data.load(req.level, req.skip_invalid).map_err(|e| {
        if e.downcast_ref::<data::InvalidData>().is_some() {
            anyhow::anyhow!(
                "{e:#}, or pass --skip-invalid to leave out invalid questions and list each one"
            )
        } else {
            e
        }
    })?;
    let mut warnings = Vec::new();
    if !dataset.skipped.is_empty() {
        warnings.push(format!(
            "skipped {} invalid question(s) (each listed in the run record's summary.json); the harness prompt of a later question of the same article then lacks them",
            dataset.skipped_questions()
        ));
    }
    let max_len = req.max_len.unwrap_or(model.config.context_length);
    if max_len < 2 {
        bail!("a context limit of {max_len} tokens cannot score anything");
    }
    let mut docs = harness::documents(&dataset.questions, req.protocol);
    if let Some(n) = req.limit {
        docs.truncate(n);
    }
    if docs.is_empty() {
        bail!("no questions to score");
    }
    let llama = model.load(req.weights, &Device::Cpu)?;

    let bar = crate::progress::questions(docs.len() as u64, req.quiet, "eval");
    let model_start = Instant::now();
    let mut logprobs: Vec<Option<Vec<f32>>> = vec![None; dataset.questions.len()];
    let (mut tokens, mut truncated) = (0usize, 0usize);
    // Longest first (by characters, a proxy for tokens), as the harness orders its requests: a
    // run that will run out of memory or meet the context limit does so at its start, and the
    // progress bar's estimate errs long. A passage's documents run together, each reusing the
    // cache of the one before. Scores land by index, so the order changes no number beyond
    // float summation order.
    let passage_of = |d: &LmDoc| dataset.questions[d.question].passage_id.clone();
    let order = run_order(&docs, passage_of);
    let mut previous: Option<(Vec<u32>, KvCache)> = None;
    let mut previous_passage: Option<String> = None;
    // Read-ahead: a thread tokenises documents in that order while the model scores.
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = mpsc::sync_channel::<Result<(usize, LmIds)>>(16);
        let tok = &model.tokenizer;
        let docs_ref: &[LmDoc] = &docs;
        let order_ref: &[usize] = &order;
        s.spawn(move || {
            for &i in order_ref {
                let r = harness::encode_doc(tok, &docs_ref[i]).map(|ids| (i, ids));
                if tx.send(r).is_err() {
                    break;
                }
            }
        });
        for r in rx {
            let (i, ids) = r?;
            let q = &dataset.questions[docs[i].question];
            // A cache is kept only within a passage: another passage's prompt shares no more
            // than "Article:" with it, and holding it would add its size to the peak.
            if previous_passage.as_deref() != Some(q.passage_id.as_str()) {
                previous = None;
                previous_passage = Some(q.passage_id.clone());
            }
            let (per_token, n, cut) = score_ids(&llama, &ids, max_len, &mut previous)
                .with_context(|| {
                    format!(
                        "question `{}` (passage {}, question {})",
                        q.id,
                        q.passage_id,
                        q.question_index + 1
                    )
                })?;
            tokens += n;
            truncated += cut as usize;
            let sums: Vec<f32> = per_token
                .iter()
                .map(|t| t.iter().map(|&v| v as f64).sum::<f64>() as f32)
                .collect();
            if let Some(o) = sums.iter().position(|v| !v.is_finite()) {
                bail!(
                    "question `{}`: the model gave option {} a non-finite log-likelihood ({}); no accuracy is reported from a model that does this",
                    q.id,
                    (b'A' + o.min(25) as u8) as char,
                    sums[o]
                );
            }
            logprobs[docs[i].question] = Some(sums);
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let model_secs = model_start.elapsed().as_secs_f64();
    if truncated > 0 {
        warnings.push(format!(
            "{truncated} prompt(s) were longer than the context limit ({max_len} tokens) and were truncated from the left, as lm-evaluation-harness does"
        ));
    }

    // Predictions in data order, for the scored questions only.
    let mut predictions = Vec::with_capacity(docs.len());
    for (q, lp) in dataset.questions.iter().zip(logprobs) {
        let Some(lp) = lp else { continue };
        predictions.push(Prediction {
            id: q.id.clone(),
            passage_id: q.passage_id.clone(),
            question_index: q.question_index,
            level: q.level,
            label: q.label,
            pred: harness::argmax(&lp),
            pred_norm: Some(harness::argmax_norm(&lp, &q.options)),
            logits: lp,
            article_words: Some(q.article.split_whitespace().count()),
            cloze: Some(q.question.contains('_')),
            category: q.category.clone(),
        });
    }
    let scores = results::scores(&predictions);
    let scores_norm = results::scores_norm(&predictions).unwrap_or_default();
    Ok(LmOutcome {
        model,
        data,
        dataset,
        scores,
        scores_norm,
        documents: predictions.len(),
        predictions,
        warnings,
        tokens,
        truncated,
        wall_secs: started.elapsed().as_secs_f64(),
        model_secs,
    })
}

/// What the run record says about an LM evaluation.
pub fn run_meta(req: &LmRequest, out: &LmOutcome) -> Result<RunMeta> {
    let weight_files = out
        .model
        .weight_files()
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    Ok(RunMeta {
        kind: RunKind::Eval,
        model: ModelInfo {
            name: req.model.name(),
            path: req.model.pinned(),
            weights_sha256: out.model.weights_hash()?,
            weight_files,
            head: None,
        },
        data: super::pipeline::data_info(&req.data, req.level, &out.data, &out.dataset)?,
        shard: None,
        members: Vec::new(),
        skipped: out.dataset.skipped_questions(),
        skipped_reasons: out.dataset.skipped.iter().map(|e| e.to_string()).collect(),
        settings: Settings {
            max_seq_len: req.max_len.unwrap_or(out.model.config.context_length),
            max_qa_len: 0,
            dtype: format!("{} {}", out.model.config.weight_type, req.weights.name()),
            device: "cpu".into(),
            batch_size: 1,
            protocol: Some(match req.limit {
                Some(n) => format!("{} (first {n})", req.protocol.name()),
                None => req.protocol.name().to_string(),
            }),
        },
        wall_secs: out.wall_secs,
        model_secs: out.model_secs,
    })
}

/// Writes the run record of one LM eval under `output_dir`; returns its folder.
pub fn write_record(
    req: &LmRequest,
    out: &LmOutcome,
    output_dir: &std::path::Path,
) -> Result<PathBuf> {
    let summary = results::summarize(run_meta(req, out)?, &out.predictions);
    results::write_run(output_dir, summary, &out.predictions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(context: &str, continuations: &[&str]) -> LmDoc {
        LmDoc {
            question: 0,
            context: context.into(),
            continuations: continuations.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn run_order_keeps_passages_together_longest_first() {
        let docs = [
            doc("aaaa", &[" b"]),
            doc("aa", &[" bbbbbbb", " c"]),
            doc("aaaaa", &[" b"]),
            doc("aaaa", &[" c"]),
        ];
        // One passage each: 6, 10, 7, 6 characters, longest first, ties in order.
        let own = |d: &LmDoc| d.context.clone() + &d.continuations.concat();
        assert_eq!(run_order(&docs, own), vec![1, 2, 0, 3]);
        // Passages p (docs 0, 2: longest 7) and q (docs 1, 3: longest 10): q first, each
        // passage's documents in their own order.
        let by = |d: &LmDoc| {
            if d.context.len() == 2 || d.continuations[0] == " c" {
                "q"
            } else {
                "p"
            }
            .to_string()
        };
        assert_eq!(run_order(&docs, by), vec![1, 3, 0, 2]);
    }
}
