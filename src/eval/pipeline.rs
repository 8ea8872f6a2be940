//! The whole of an evaluation as a library call: open the model and data (through
//! [`crate::open`]), load the tokenizer, model and optional head, tokenise and run with
//! read-ahead, score, and describe the run for its record. Nothing here prints: warnings come
//! back in [`EvalOutcome::warnings`] for the caller to show.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::data::{self, LevelFilter};
use crate::features::{FormatConfig, TextEncoder};
use crate::heads;
use crate::metrics::LevelScores;
use crate::model::{LoadedModel, ModelConfig, Precision};
use crate::open::{self, OpenedData, OpenedModel};
use crate::results::{self, DataInfo, ModelInfo, Prediction, RunKind, RunMeta, Settings, Shard};

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
    /// How the data is read (RACE by default).
    pub task: crate::data::Task,
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
    pub model: OpenedModel,
    pub data: OpenedData,
    pub dataset: data::Dataset,
    pub config: ModelConfig,
    pub format: FormatConfig,
    pub predictions: Vec<Prediction>,
    pub scores: LevelScores,
    /// What the caller should show the user: skipped questions, initialised head tensors,
    /// unused checkpoint tensors, a precision this CPU cannot run.
    pub warnings: Vec<String>,
    /// Seconds end to end (load, tokenise, model) and in the model alone.
    pub wall_secs: f64,
    pub model_secs: f64,
}

impl EvalOutcome {
    /// Every file this evaluation read (data, weights, config, tokenizer, head): what no
    /// output may overwrite.
    pub fn inputs(&self) -> Vec<PathBuf> {
        let mut v = self.dataset.files.clone();
        v.extend(self.model.weight_files.iter().cloned());
        v.push(self.model.dir.join("config.json"));
        v.extend(self.model.tokenizer.files());
        v.extend(self.model.head.iter().cloned());
        v
    }
}

/// Opens model and data, tokenises and runs.
pub fn evaluate(req: &EvalRequest) -> Result<EvalOutcome> {
    let hub_cfg = open::hub_config(req.quiet);
    let model = open::open_model(
        &req.model.to_string_lossy(),
        req.revision.as_deref(),
        &hub_cfg,
    )?;
    let data = open::open_data(&req.data, &req.split, req.level, &hub_cfg)?.with_task(req.task);
    evaluate_opened(req, model, data)
}

/// [`evaluate`] on a model and data already opened (the request's model and data are then
/// only names for the record).
pub fn evaluate_opened(
    req: &EvalRequest,
    model: OpenedModel,
    data: OpenedData,
) -> Result<EvalOutcome> {
    let started = Instant::now();
    let device = crate::device::parse(&req.device)?;
    let config = model.config.clone();
    let format = req.format;
    format.validate(config.max_sequence_len())?;
    if req.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if req.precision == Precision::Int8 && !device.is_cpu() {
        bail!("--dtype int8 runs on the CPU only; use --dtype bf16 on a GPU");
    }
    let mut warnings = Vec::new();

    let mut dataset = data.load(req.level, req.skip_invalid).map_err(|e| {
        if e.downcast_ref::<data::InvalidData>().is_some() {
            anyhow::anyhow!(
                "{e:#}, or pass --skip-invalid to leave out invalid questions and list each one"
            )
        } else {
            e
        }
    })?;
    // int8 calibrates on the first questions of the whole data set, so shards quantise alike.
    let calibration: Vec<_> = match req.precision {
        Precision::Int8 => dataset
            .questions
            .iter()
            .take(super::INT8_CALIBRATION_QUESTIONS)
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    if let Some(shard) = req.shard {
        dataset.questions = shard.select(dataset.questions)?;
    }
    if !dataset.skipped.is_empty() {
        let mut w = format!(
            "skipped {} invalid question(s) ({} problem(s), each listed in the run record's summary.json):",
            dataset.skipped_questions(),
            dataset.skipped.len()
        );
        for e in &dataset.skipped {
            w += &format!("\n  {e}");
        }
        warnings.push(w);
    }

    let encoder = TextEncoder::new(model.load_tokenizer()?)?;

    // A head: --head, or the head folder given as --model; its tensors replace the model's.
    let head = req.head.as_deref().or(model.head.as_deref());
    let overrides = match head {
        Some(h) => heads::head_tensors(h, &model.dir, &config, model.weights_hash()?)?,
        None => Default::default(),
    };
    let (mut loaded, warning) = LoadedModel::for_inference(
        &model.dir,
        config.clone(),
        model.weight_files.clone(),
        req.precision,
        &device,
        overrides,
    )?;
    // int8 ran (no warning that it fell back to f32): calibrate its smoothing on the data.
    let quantised = req.precision == Precision::Int8 && warning.is_none();
    warnings.extend(warning);
    if quantised {
        super::calibrate_int8(
            &mut loaded.model,
            &encoder,
            &calibration,
            &format,
            req.batch_size,
            config.pad_token_id,
            &device,
        )?;
    }
    if let Some(w) = loaded.report.warning().filter(|_| head.is_none()) {
        warnings.push(w);
    }
    if !loaded.report.unused.is_empty() {
        warnings.push(format!(
            "warning: {} tensor(s) in the checkpoint were not used (e.g. `{}`): does config.json match the weights?",
            loaded.report.unused.len(),
            loaded.report.unused[0]
        ));
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

    // A non-finite logit means the model is broken: no accuracy may come from it.
    for (q, l) in dataset.questions.iter().zip(&logits) {
        if let Some(i) = l.iter().position(|v| !v.is_finite()) {
            bail!(
                "question `{}` (passage {}, question {}): the model produced a non-finite logit ({}) for option {}; no accuracy is reported from a model that does this: check its weights (and --dtype {})",
                q.id,
                q.passage_id,
                q.question_index + 1,
                l[i],
                (b'A' + i.min(25) as u8) as char,
                req.precision.name()
            );
        }
    }
    let predictions = super::predictions(&dataset.questions, logits);
    let scores = results::scores(&predictions);
    Ok(EvalOutcome {
        model,
        data,
        dataset,
        config,
        format,
        predictions,
        scores,
        warnings,
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

/// The head a run used: `--head DIR`, a head folder given as the model, or a fully
/// fine-tuned model folder written by `race-eval train` (its meta.json names its base model).
fn head_name(req: &EvalRequest, model: &OpenedModel) -> Option<String> {
    if let Some(h) = req.head.as_ref().or(model.head.as_ref()) {
        return Some(h.display().to_string());
    }
    let meta = model.trained.as_ref()?;
    Some(format!(
        "{} (full fine-tune of {}, {} steps)",
        req.model.display(),
        meta.base_model,
        meta.steps_done
    ))
}

/// What a run record says about the data an evaluation read (`spec` as the user wrote it).
pub fn data_info(
    spec: &Path,
    level: LevelFilter,
    opened: &OpenedData,
    dataset: &data::Dataset,
) -> Result<DataInfo> {
    Ok(DataInfo {
        task: opened.task.name().to_string(),
        path: spec.display().to_string(),
        format: dataset.format.to_string(),
        sha256: crate::hash::sha256_files(&dataset.files)?,
        files: dataset.files.len(),
        split: opened.split_name(),
        level: format!("{level:?}").to_lowercase(),
    })
}

/// What the run record says about this evaluation.
pub fn run_meta(req: &EvalRequest, out: &EvalOutcome) -> Result<RunMeta> {
    Ok(RunMeta {
        kind: RunKind::Eval,
        model: ModelInfo {
            name: model_name(&req.model),
            path: req.model.display().to_string(),
            weights_sha256: out.model.weights_hash()?.to_string(),
            weight_files: out
                .model
                .weight_files
                .iter()
                .map(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect(),
            head: head_name(req, &out.model),
        },
        data: data_info(&req.data, req.level, &out.data, &out.dataset)?,
        shard: req.shard,
        members: Vec::new(),
        skipped: out.dataset.skipped_questions(),
        skipped_reasons: out.dataset.skipped.iter().map(|e| e.to_string()).collect(),
        settings: Settings {
            max_seq_len: out.format.max_seq_len,
            max_qa_len: out.format.max_qa_len,
            dtype: req.precision.name().to_string(),
            device: req.device.clone(),
            batch_size: req.batch_size,
            protocol: None,
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
