//! The command line: argument parsing and the glue between data, features, model and eval.
//! `main.rs` only calls [`run`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::{self, LevelFilter, LoadOptions};
use crate::eval;
use crate::features::{FormatConfig, TextEncoder};
use crate::metrics::{Accuracy, LevelScores};
use crate::model::{presets, AlbertConfig, LoadedModel};

#[derive(Parser, Debug)]
#[command(
    name = "race-eval",
    version,
    about = "Evaluate ALBERT on RACE-style multiple-choice reading comprehension",
    long_about = "Evaluate ALBERT on RACE-style multiple-choice reading comprehension.\n\n\
        Quick start (offline, with the bundled tiny model and sample):\n  \
        race-eval eval --model datasets/models/tiny-albert --data datasets/sample --split test"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate a model on a RACE split: accuracy overall, middle and high
    Eval(EvalArgs),
    /// Print a model's configuration and parameter counts (from config.json alone)
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model folder in the Hub's layout: config.json, tokenizer.json, and model.safetensors,
    /// pytorch_model.bin or a sharded *.index.json
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// RACE data: a tree (RACE/{train,dev,test}/{middle,high}/*.txt), a folder with
    /// SPLIT.jsonl, or a JSON-lines file with one question per line
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Split to read from a tree or folder (dev is also accepted as validation)
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Keep only questions of this level
    #[arg(long, value_enum, default_value_t = LevelFilter::All)]
    pub level: LevelFilter,
    /// Write one JSON line per question (id, level, label, pred, logits) in input order
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
    /// Questions per batch (each question carries all of its options)
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Maximum tokens per (article, question+option) sequence
    #[arg(long, default_value_t = 512)]
    pub max_seq_len: usize,
    /// Maximum question+option tokens (the last ones are kept)
    #[arg(long, default_value_t = 128)]
    pub max_qa_len: usize,
    /// Leave out invalid questions and report them, instead of stopping at the first
    #[arg(long)]
    pub skip_invalid: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// No progress bars
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// cpu, cuda, cuda:N or metal (cuda and metal need the matching cargo feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute precision
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }
}

pub fn parse_device(spec: &str) -> Result<Device> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => (
            k,
            i.parse::<usize>()
                .with_context(|| format!("--device {spec}: {i:?} is not a device number"))?,
        ),
        None => (spec, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" if candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(index)?),
        "cuda" => bail!("--device {spec}: this build has no CUDA support; rebuild with `cargo build --release --features cuda`"),
        "metal" if candle_core::utils::metal_is_available() => Ok(Device::new_metal(index)?),
        "metal" => bail!("--device {spec}: this build has no Metal support; rebuild with `cargo build --release --features metal`"),
        other => bail!("--device {other:?} is not a device: use cpu, cuda, cuda:N or metal"),
    }
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A model folder, a config.json, or a released name (albert-base-v2 … albert-xxlarge-v2)
    pub model: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(args) => run_eval(&args),
        Command::Info(args) => run_info(&args),
    }
}

/// A model folder with the files eval needs, checked up front so errors say what is missing.
fn check_model_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "--model {}: no such folder (expected config.json, tokenizer.json and weights in it)",
            dir.display()
        );
    }
    for file in ["config.json", "tokenizer.json"] {
        if !dir.join(file).is_file() {
            bail!(
                "--model {}: {file} is missing from the model folder",
                dir.display()
            );
        }
    }
    Ok(())
}

fn progress(len: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} questions, {{per_sec}}, ETA {{eta}}"
    );
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

pub fn run_eval(args: &EvalArgs) -> Result<()> {
    let started = Instant::now();
    check_model_dir(&args.model)?;
    let device = parse_device(&args.runtime.device)?;
    let config = AlbertConfig::from_file(&args.model.join("config.json"))?;
    let format = FormatConfig {
        max_seq_len: args.max_seq_len,
        max_qa_len: args.max_qa_len,
    };
    format.validate(config.max_position_embeddings)?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }

    let opts = LoadOptions {
        split: args.split.clone(),
        level: args.level,
        skip_invalid: args.skip_invalid,
    };
    let ds = data::load(&args.data, &opts)?;
    if !ds.skipped.is_empty() {
        eprintln!(
            "skipped {} invalid question(s) ({} problem(s)):",
            ds.skipped_questions(),
            ds.skipped.len()
        );
        for e in &ds.skipped {
            eprintln!("  {e}");
        }
    }

    let encoder = TextEncoder::from_file(&args.model.join("tokenizer.json"))?;
    let features = encoder.encode_all(&ds.questions, &format)?;

    let loaded = LoadedModel::load(&args.model, args.runtime.dtype.dtype(), &device, None)?;
    if let Some(w) = loaded.report.warning() {
        eprintln!("{w}");
    }
    if !loaded.report.unused.is_empty() {
        eprintln!(
            "warning: {} tensor(s) in the checkpoint were not used (e.g. `{}`): does config.json match the weights?",
            loaded.report.unused.len(),
            loaded.report.unused[0]
        );
    }

    let bar = progress(ds.questions.len() as u64, args.quiet, "eval");
    let infer_start = Instant::now();
    let logits = eval::logits(
        &loaded.model,
        &features,
        args.batch_size,
        config.pad_token_id,
        &device,
        Some(&bar),
    )?;
    bar.finish_and_clear();
    let infer_secs = infer_start.elapsed().as_secs_f64();

    let preds = eval::predictions(&ds.questions, logits);
    let scores = eval::scores(&preds);
    if let Some(path) = &args.predictions {
        eval::write_predictions(path, &preds)?;
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "race-eval: {} on {} (split {}, level {})",
        args.model.display(),
        args.data.display(),
        args.split,
        format!("{:?}", args.level).to_lowercase()
    );
    println!(
        "{} questions in {} passages",
        ds.questions.len(),
        ds.passages()
    );
    print!("{}", score_table(&scores));
    println!(
        "wall time {wall:.2} s ({:.2} questions/s end to end; model {:.2} questions/s)",
        ds.questions.len() as f64 / wall,
        ds.questions.len() as f64 / infer_secs.max(1e-9)
    );
    if let Some(path) = &args.predictions {
        println!("predictions: {}", path.display());
    }
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

/// The configuration named by `info`'s argument.
pub fn resolve_config(model: &str) -> Result<(String, AlbertConfig)> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok((
            model.to_string(),
            AlbertConfig::from_file(&path.join("config.json"))?,
        ));
    }
    if path.is_file() {
        return Ok((model.to_string(), AlbertConfig::from_file(path)?));
    }
    match presets::preset(model) {
        Some(cfg) => Ok((model.to_string(), cfg)),
        None => bail!(
            "{model:?} is neither a model folder, a config.json, nor a released model ({})",
            presets::names().join(", ")
        ),
    }
}

pub fn run_info(args: &InfoArgs) -> Result<()> {
    let (name, cfg) = resolve_config(&args.model)?;
    let counts = cfg.param_counts();
    if args.json {
        let v = serde_json::json!({ "model": name, "config": cfg, "params": counts });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model: {name}");
    println!(
        "hidden {} x {} layers ({} group(s) x {} inner), {} heads, intermediate {}, embedding {}, vocab {}, positions {}, act {}",
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_hidden_groups,
        cfg.inner_group_num,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        cfg.embedding_size,
        cfg.vocab_size,
        cfg.max_position_embeddings,
        cfg.hidden_act
    );
    println!("parameters: embeddings {}", counts.embeddings);
    println!("            encoder    {}", counts.encoder);
    println!("            pooler     {}", counts.pooler);
    println!(
        "            backbone   {} (AlbertModel, with pooler)",
        counts.backbone
    );
    println!(
        "            with multiple-choice head {} (AlbertForMultipleChoice)",
        counts.multiple_choice
    );
    Ok(())
}
