//! Run records for `race-eval eval`: the `--output-dir` and `--shard` options, and turning an
//! [`EvalOutcome`] into `results/<run-id>/{summary.json,predictions.jsonl}`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use super::eval::EvalOutcome;
use super::EvalArgs;
use crate::results::{self, DataInfo, ModelInfo, RunKind, RunMeta, Settings, Shard};

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    /// Where run records go: each eval writes DIR/<run-id>/summary.json and predictions.jsonl
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub output_dir: PathBuf,
    /// Evaluate only shard I of N (questions I, I+N, I+2N, … in input order); put the shards
    /// back together with `race-eval merge`
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

/// The model folder's name (of its absolute path when given as `.` or similar).
fn model_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_owned())
        .or_else(|| {
            dir.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_owned()))
        })
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// The split a run evaluated: a JSON-lines file given directly is named by its file (a
/// `dev.jsonl` is dev whatever --split says); otherwise --split.
fn split_name(args: &EvalArgs) -> String {
    if args.data.is_file() {
        if let Some(stem) = args.data.file_stem().and_then(|s| s.to_str()) {
            if ["train", "dev", "validation", "test"].contains(&stem) {
                return results::normalize_split(stem);
            }
        }
    }
    results::normalize_split(&args.split)
}

/// The head a run used: `--head DIR`, or a fully fine-tuned model folder written by
/// `race-eval train` (it has a meta.json naming its base model).
fn head_name(args: &EvalArgs) -> Option<String> {
    if let Some(head) = &args.head {
        return Some(head.display().to_string());
    }
    let meta = crate::train::head::read_meta(&args.model).ok()?;
    Some(format!(
        "{} (full fine-tune of {}, {} steps)",
        args.model.display(),
        meta.base_model,
        meta.steps_done
    ))
}

pub fn meta(args: &EvalArgs, out: &EvalOutcome) -> Result<RunMeta> {
    Ok(RunMeta {
        kind: RunKind::Eval,
        model: ModelInfo {
            name: model_name(&args.model),
            path: args.model.display().to_string(),
            weights_sha256: results::sha256_files(&out.weight_files)?,
            weight_files: out
                .weight_files
                .iter()
                .map(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect(),
            head: head_name(args),
        },
        data: DataInfo {
            path: args.data.display().to_string(),
            format: out.dataset.format.to_string(),
            sha256: results::sha256_files(&out.dataset.files)?,
            files: out.dataset.files.len(),
            split: split_name(args),
            level: format!("{:?}", args.level).to_lowercase(),
        },
        shard: args.record.shard,
        members: Vec::new(),
        skipped: out.dataset.skipped_questions(),
        settings: Settings {
            max_seq_len: out.format.max_seq_len,
            max_qa_len: out.format.max_qa_len,
            dtype: format!("{:?}", args.runtime.dtype).to_lowercase(),
            device: args.runtime.device.clone(),
            batch_size: args.batch_size,
        },
        wall_secs: out.wall_secs,
        model_secs: out.model_secs,
    })
}

/// Writes the run record of one eval; returns its folder.
pub fn write(args: &EvalArgs, out: &EvalOutcome) -> Result<PathBuf> {
    let summary = results::summarize(meta(args, out)?, &out.predictions);
    results::write_run(&args.record.output_dir, summary, &out.predictions)
}
