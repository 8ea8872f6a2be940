//! `race-eval train`: argument parsing only; the work is in [`crate::train`].

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::RuntimeArgs;
use crate::data::LevelFilter;
use crate::features::FormatConfig;
use crate::train::{self, AdamWConfig, Mode, TrainConfig, TrainOptions};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Base model: a folder (config.json, tokenizer.json or spiece.model, weights), or a Hub
    /// model id ORG/NAME or NAME, optionally ID@REVISION. A local folder wins when it exists.
    #[arg(long, value_name = "DIR|ID")]
    pub model: String,
    /// Branch, tag or commit of a Hub model
    #[arg(long)]
    pub revision: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The options `train` shares with `distill`: data, output, recipe, runtime.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// RACE data: a tree, a folder with SPLIT.jsonl or SPLIT[-*].parquet, or a Hub dataset
    /// hub:ORG/NAME[/CONFIG][@REVISION] (both splits are read from it; dev is also validation)
    #[arg(long, value_name = "PATH|hub:ID")]
    pub data: PathBuf,
    /// The task whose files --data holds (`race-eval tasks`)
    #[arg(long, value_name = "NAME", default_value = "race", value_parser = super::parse_task)]
    pub task: crate::data::Task,
    /// Split to train on
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Split to evaluate on every --eval-every steps (the best step's weights are kept)
    #[arg(long, default_value = "dev")]
    pub dev_split: String,
    /// Keep only questions of this level (both splits)
    #[arg(long, value_enum, default_value_t = LevelFilter::All)]
    pub level: LevelFilter,
    /// Output folder, e.g. heads/NAME: weights, meta.json, config.json, tokenizer.json, loss.csv
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Freeze the backbone; train the classifier on pooled features cached on disk
    #[arg(long)]
    pub head_only: bool,
    /// With --head-only: cache [CLS] hidden states instead and train the pooler too
    #[arg(long, requires = "head_only")]
    pub train_pooler: bool,
    /// Folder for cached head-only features [default: .cache next to --output]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Peak learning rate [default: 1e-5 full (ALBERT's RACE recipe), 1e-3 head-only]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer steps [default: 12000, or from --epochs]
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<usize>,
    /// Train for this many passes over the data instead of --steps
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Linear warmup steps [default: 1000, or 1/12 of the steps with --epochs]
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Questions per optimizer step (the effective batch)
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Questions per forward/backward pass (gradients are accumulated up to --batch-size)
    #[arg(long, default_value_t = 4)]
    pub micro_batch_size: usize,
    /// Global gradient-norm clipping (0: off)
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    #[arg(long, default_value_t = 1e-6)]
    pub adam_eps: f64,
    /// Override config.json's hidden_dropout_prob
    #[arg(long)]
    pub hidden_dropout: Option<f64>,
    /// Override config.json's attention_probs_dropout_prob
    #[arg(long)]
    pub attention_dropout: Option<f64>,
    /// Override config.json's classifier_dropout_prob
    #[arg(long)]
    pub classifier_dropout: Option<f64>,
    /// Seed for data order, dropout and new head weights
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// Evaluate on --dev-split every K steps (and at the end)
    #[arg(long, default_value_t = 1000)]
    pub eval_every: usize,
    /// Save a resumable checkpoint every K steps [default: --eval-every]
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Continue from OUTPUT/checkpoint exactly where it stopped (same options required)
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps in this run (checkpointed; continue with --resume)
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Maximum tokens per sequence
    #[arg(long, default_value_t = 512)]
    pub max_seq_len: usize,
    /// Maximum question+option tokens
    #[arg(long, default_value_t = 128)]
    pub max_qa_len: usize,
    /// Questions per batch when evaluating and caching features
    #[arg(long, default_value_t = 8)]
    pub eval_batch_size: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
}

/// The run's settings from the arguments (with `--epochs`, the steps are set once the training
/// split is loaded: see [`train::Epochs`]).
pub fn config(args: &RunArgs) -> Result<TrainConfig> {
    let mode = match (args.head_only, args.train_pooler) {
        (false, _) => Mode::Full,
        (true, false) => Mode::HeadOnly,
        (true, true) => Mode::HeadPooler,
    };
    let total_steps = args.steps.unwrap_or(12000);
    // The recipe's 1,000 of 12,000 steps; the same 1:12 ratio for other lengths.
    let warmup_steps = args.warmup_steps.unwrap_or(total_steps / 12);
    Ok(TrainConfig {
        mode,
        lr: args
            .lr
            .unwrap_or(if mode == Mode::Full { 1e-5 } else { 1e-3 }),
        warmup_steps,
        total_steps,
        batch_size: args.batch_size,
        micro_batch_size: args.micro_batch_size,
        max_grad_norm: args.max_grad_norm,
        adamw: AdamWConfig {
            beta1: args.beta1,
            beta2: args.beta2,
            eps: args.adam_eps,
            weight_decay: args.weight_decay,
        },
        seed: args.seed,
        eval_every: args.eval_every,
        save_every: args.save_every.unwrap_or(args.eval_every),
        format: FormatConfig {
            max_seq_len: args.max_seq_len,
            max_qa_len: args.max_qa_len,
        },
        hidden_dropout: args.hidden_dropout,
        attention_dropout: args.attention_dropout,
        classifier_dropout: args.classifier_dropout,
        distill: None,
    })
}

/// The training options for `model` (at `revision`) from the shared arguments.
pub fn options(model: &str, revision: Option<&str>, args: &RunArgs) -> Result<TrainOptions> {
    if args.runtime.dtype != super::Precision::F32 {
        bail!("train runs in f32 only (AdamW state and parity with torch); drop --dtype");
    }
    Ok(TrainOptions {
        model: model.to_string(),
        revision: revision.map(str::to_string),
        data: args.data.clone(),
        task: args.task,
        split: args.split.clone(),
        dev_split: args.dev_split.clone(),
        level: args.level,
        output: args.output.clone(),
        config: config(args)?,
        resume: args.resume,
        cache_dir: args.cache_dir.clone(),
        device: args.runtime.device.clone(),
        epochs: args.epochs.map(|passes| train::Epochs {
            passes,
            warmup_steps: args.warmup_steps,
        }),
        eval_batch_size: args.eval_batch_size.max(1),
        stop_after: args.stop_after,
        quiet: args.quiet,
        teachers: None,
    })
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let report = train::train(&options(&args.model, args.revision.as_deref(), &args.run)?)?;
    print_report(&report);
    Ok(())
}

/// What a finished run prints: steps, cache use, last loss, dev history and the best step.
pub fn print_report(report: &train::TrainReport) {
    println!(
        "race-eval train: {} steps done, output {}",
        report.steps_done,
        report.output.display()
    );
    if let Some(hit) = report.cache_hit {
        println!(
            "head-only features: {}",
            if hit {
                "from the cache"
            } else {
                "computed and cached"
            }
        );
    }
    if let Some(last) = report.loss_log.last() {
        println!("last loss {:.4} (step {})", last.loss, last.step);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for d in &report.dev_history {
        println!(
            "  step {:>6}: dev accuracy {:.2}%",
            d.step,
            100.0 * d.accuracy
        );
    }
    if let Some(b) = report.best {
        println!(
            "best dev accuracy {:.2}% at step {}: weights in {}",
            100.0 * b.accuracy,
            b.step,
            report.output.display()
        );
    }
}
