//! `race-eval eval`: load data and model, run, print scores, write predictions.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use super::{parse_device, progress, EvalArgs};
use crate::data::{self, LoadOptions};
use crate::eval;
use crate::features::{FormatConfig, TextEncoder};
use crate::hub;
use crate::metrics::{Accuracy, LevelScores};
use crate::model::{LoadedModel, ModelConfig};

/// Everything one evaluation produced, for printing and for run records.
pub struct EvalOutcome {
    pub dataset: data::Dataset,
    pub config: ModelConfig,
    pub weight_files: Vec<std::path::PathBuf>,
    pub format: FormatConfig,
    pub predictions: Vec<eval::Prediction>,
    pub scores: LevelScores,
    /// Seconds end to end (load, tokenise, model) and in the model alone.
    pub wall_secs: f64,
    pub model_secs: f64,
}

/// Loads data and model, tokenises and runs: the whole of `eval` but the output.
pub fn evaluate(args: &EvalArgs) -> Result<EvalOutcome> {
    let started = Instant::now();
    let mut hub_cfg = hub::HubConfig::from_env();
    hub_cfg.progress = !args.quiet;
    let model = hub::resolve_model(&args.model, args.revision.as_deref(), &hub_cfg)?;
    let model_dir: &Path = &model.dir;
    let device = parse_device(&args.runtime.device)?;
    let config = ModelConfig::from_file(&model_dir.join("config.json"))?;
    let format = FormatConfig {
        max_seq_len: args.max_seq_len,
        max_qa_len: args.max_qa_len,
    };
    format.validate(config.max_sequence_len())?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }

    let opts = LoadOptions {
        split: args.split.clone(),
        level: args.level,
        skip_invalid: args.skip_invalid,
    };
    let data_path = hub::resolve_data(&args.data, &args.split, args.level, &hub_cfg)?;
    let mut dataset = data::load(&data_path, &opts)?;
    if let Some(shard) = args.record.shard {
        dataset.questions = shard.select(dataset.questions)?;
    }
    if !dataset.skipped.is_empty() && !args.quiet {
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

    crate::train::head::refuse_head_as_model(model_dir)?;
    // --head: the base model with the head's tensors in place of its own.
    let overrides = match &args.head {
        Some(head) => {
            let files = crate::model::weights::find_weight_files(model_dir)?;
            crate::train::head::head_tensors(head, model_dir, &config, &files)?.1
        }
        None => Default::default(),
    };
    let loaded = LoadedModel::load_with_overrides(
        model_dir,
        args.runtime.dtype.dtype(),
        &device,
        None,
        overrides,
    )?;
    if let Some(w) = loaded.report.warning().filter(|_| args.head.is_none()) {
        eprintln!("{w}");
    }
    if !loaded.report.unused.is_empty() {
        eprintln!(
            "warning: {} tensor(s) in the checkpoint were not used (e.g. `{}`): does config.json match the weights?",
            loaded.report.unused.len(),
            loaded.report.unused[0]
        );
    }

    let bar = progress(dataset.questions.len() as u64, args.quiet, "eval");
    let model_start = Instant::now();
    // Tokenising runs in the read-ahead thread, overlapping the model.
    let (logits, _) = eval::logits_streaming(
        &loaded.model,
        eval::Streamed::new(&encoder, &dataset.questions, &format, args.batch_size),
        args.batch_size,
        config.pad_token_id,
        &device,
        Some(&bar),
    )?;
    bar.finish_and_clear();
    let model_secs = model_start.elapsed().as_secs_f64();

    let predictions = eval::predictions(&dataset.questions, logits);
    let scores = eval::scores(&predictions);
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

pub fn run(args: &EvalArgs) -> Result<()> {
    let out = evaluate(args)?;
    if let Some(path) = &args.predictions {
        eval::write_predictions(path, &out.predictions)?;
    }
    let run_dir = super::record::write(args, &out)?;
    let n = out.dataset.questions.len();
    println!(
        "race-eval: {} on {} (split {}, level {})",
        args.model.display(),
        args.data.display(),
        args.split,
        format!("{:?}", args.level).to_lowercase()
    );
    println!("{n} questions in {} passages", out.dataset.passages());
    print!("{}", score_table(&out.scores));
    println!(
        "wall time {:.2} s ({:.2} questions/s end to end; model {:.2} questions/s)",
        out.wall_secs,
        n as f64 / out.wall_secs,
        n as f64 / out.model_secs.max(1e-9)
    );
    if let Some(path) = &args.predictions {
        println!("predictions: {}", path.display());
    }
    println!("run: {}", run_dir.display());
    Ok(())
}

fn score_row(name: &str, a: &Accuracy) -> String {
    match a.value() {
        Some(v) => format!(
            "{name:<8} {:>8.2}%  {:>6} / {:<6}\n",
            100.0 * v,
            a.correct,
            a.total
        ),
        None => format!("{name:<8} {:>9}  {:>6} / {:<6}\n", "-", 0, 0),
    }
}

pub fn score_table(s: &LevelScores) -> String {
    let mut out = format!(
        "{:<8} {:>9}  {:>15}\n",
        "level", "accuracy", "correct / total"
    );
    out += &score_row("overall", &s.overall);
    out += &score_row("middle", &s.middle);
    out += &score_row("high", &s.high);
    if s.other.total > 0 {
        out += &score_row("other", &s.other);
    }
    out
}
