//! The whole of an evaluation as a library call: resolve the model (folder or Hub) and data,
//! load the tokenizer, model and optional head, tokenise and run with read-ahead, score, and
//! describe the run for its record. `race-eval eval` only parses arguments and prints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::data::{self, LevelFilter, LoadOptions};
use crate::features::{FormatConfig, TextEncoder};
use crate::hub;
use crate::metrics::LevelScores;
use crate::model::{LoadedModel, ModelConfig, Precision};
use crate::results::{self, DataInfo, ModelInfo, RunKind, RunMeta, Settings, Shard};
use crate::train::head;

use super::Prediction;

/// What to evaluate, and how.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// A model folder, or a Hub id (`ORG/NAME[@REVISION]`).
    pub model: PathBuf,
    pub revision: Option<String>,
    /// A head trained by `race-eval train --head-only` for `model`.
    pub head: Option<PathBuf>,
    /// A data path or `hub:ORG/NAME[/CONFIG][@REVISION]`.
    pub data: PathBuf,
    pub split: String,
    pub level: LevelFilter,
    pub skip_invalid: bool,
    pub shard: Option<Shard>,
    pub format: FormatConfig,
    pub batch_size: usize,
    /// `cpu`, `cuda[:N]` or `metal`.
    pub device: String,
    pub precision: Precision,
    /// No progress bars or notes on stderr.
    pub quiet: bool,
}

/// Everything one evaluation produced, for printing and for run records.
pub struct EvalOutcome {
    pub dataset: data::Dataset,
    pub config: ModelConfig,
    pub weight_files: Vec<PathBuf>,
    pub format: FormatConfig,
    pub predictions: Vec<Prediction>,
    pub scores: LevelScores,
    /// Seconds end to end (load, tokenise, model) and in the model alone.
    pub wall_secs: f64,
    pub model_secs: f64,
}

/// Loads data and model, tokenises and runs.
pub fn evaluate(req: &EvalRequest) -> Result<EvalOutcome> {
    let started = Instant::now();
    let mut hub_cfg = hub::HubConfig::from_env();
    hub_cfg.progress = !req.quiet;
    let model = hub::resolve_model(&req.model, req.revision.as_deref(), &hub_cfg)?;
    let model_dir: &Path = &model.dir;
    let device = crate::device::parse(&req.device)?;
    let config = ModelConfig::from_file(&model_dir.join("config.json"))?;
    let format = req.format;
    format.validate(config.max_sequence_len())?;
    if req.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }

    let opts = LoadOptions {
        split: req.split.clone(),
        level: req.level,
        skip_invalid: req.skip_invalid,
    };
    let data_path = hub::resolve_data(&req.data, &req.split, req.level, &hub_cfg)?;
    let mut dataset = data::load(&data_path, &opts)?;
    if let Some(shard) = req.shard {
        dataset.questions = shard.select(dataset.questions)?;
    }
    if !dataset.skipped.is_empty() && !req.quiet {
        eprintln!(
            "skipped {} invalid question(s) ({} problem(s)):",
            dataset.skipped_questions(),
            dataset.skipped.len()
        );
        for e in &dataset.skipped {
            eprintln!("  {e}");
        }
    }

    let encoder = TextEncoder::new(model.load_tokenizer()?)?;

    head::refuse_head_as_model(model_dir)?;
    // --head: the base model with the head's tensors in place of its own.
    let overrides = match &req.head {
        Some(h) => {
            let files = crate::model::weights::find_weight_files(model_dir)?;
            head::head_tensors(h, model_dir, &config, &files)?
        }
        None => Default::default(),
    };
    if req.precision == Precision::Int8 && !device.is_cpu() {
        bail!("--dtype int8 runs on the CPU only; use --dtype bf16 on a GPU");
    }
    let mut loaded = LoadedModel::load_with_overrides(
        model_dir,
        req.precision.dtype(),
        &device,
        None,
        overrides,
    )?;
    if req.precision == Precision::Int8 && loaded.quantize_int8()?.is_none() {
        eprintln!("warning: this CPU has no int8 kernel (AVX2 or AVX-512 VNNI): running in f32");
    }
    if let Some(w) = loaded.report.warning().filter(|_| req.head.is_none()) {
        eprintln!("{w}");
    }
    if !loaded.report.unused.is_empty() {
        eprintln!(
            "warning: {} tensor(s) in the checkpoint were not used (e.g. `{}`): does config.json match the weights?",
            loaded.report.unused.len(),
            loaded.report.unused[0]
        );
    }

    let bar = crate::progress::questions(dataset.questions.len() as u64, req.quiet, "eval");
    let model_start = Instant::now();
    // Tokenising runs in the read-ahead thread, overlapping the model.
    let (logits, _) = super::logits_streaming(
        &loaded.model,
        super::Streamed::new(&encoder, &dataset.questions, &format, req.batch_size),
        req.batch_size,
        config.pad_token_id,
        &device,
        Some(&bar),
    )?;
    bar.finish_and_clear();
    let model_secs = model_start.elapsed().as_secs_f64();

    let predictions = super::predictions(&dataset.questions, logits);
    let scores = super::scores(&predictions);
    Ok(EvalOutcome {
        dataset,
        config,
        weight_files: loaded.weight_files,
        format,
        predictions,
        scores,
        wall_secs: started.elapsed().as_secs_f64(),
        model_secs,
    })
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
/// `dev.jsonl` is dev whatever the requested split says); otherwise the requested split.
fn split_name(req: &EvalRequest) -> String {
    if req.data.is_file() {
        if let Some(stem) = req.data.file_stem().and_then(|s| s.to_str()) {
            if ["train", "dev", "validation", "test"].contains(&stem) {
                return results::normalize_split(stem);
            }
        }
    }
    results::normalize_split(&req.split)
}

/// The head a run used: `--head DIR`, or a fully fine-tuned model folder written by
/// `race-eval train` (it has a meta.json naming its base model).
fn head_name(req: &EvalRequest) -> Option<String> {
    if let Some(h) = &req.head {
        return Some(h.display().to_string());
    }
    let meta = head::read_meta(&req.model).ok()?;
    Some(format!(
        "{} (full fine-tune of {}, {} steps)",
        req.model.display(),
        meta.base_model,
        meta.steps_done
    ))
}

/// What the run record says about this evaluation.
pub fn run_meta(req: &EvalRequest, out: &EvalOutcome) -> Result<RunMeta> {
    Ok(RunMeta {
        kind: RunKind::Eval,
        model: ModelInfo {
            name: model_name(&req.model),
            path: req.model.display().to_string(),
            weights_sha256: crate::hash::sha256_files(&out.weight_files)?,
            weight_files: out
                .weight_files
                .iter()
                .map(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect(),
            head: head_name(req),
        },
        data: DataInfo {
            path: req.data.display().to_string(),
            format: out.dataset.format.to_string(),
            sha256: crate::hash::sha256_files(&out.dataset.files)?,
            files: out.dataset.files.len(),
            split: split_name(req),
            level: format!("{:?}", req.level).to_lowercase(),
        },
        shard: req.shard,
        members: Vec::new(),
        skipped: out.dataset.skipped_questions(),
        settings: Settings {
            max_seq_len: out.format.max_seq_len,
            max_qa_len: out.format.max_qa_len,
            dtype: req.precision.name().to_string(),
            device: req.device.clone(),
            batch_size: req.batch_size,
        },
        wall_secs: out.wall_secs,
        model_secs: out.model_secs,
    })
}

/// Writes the run record of one eval under `output_dir`; returns its folder.
pub fn write_record(req: &EvalRequest, out: &EvalOutcome, output_dir: &Path) -> Result<PathBuf> {
    let summary = results::summarize(run_meta(req, out)?, &out.predictions);
    results::write_run(output_dir, summary, &out.predictions)
}
