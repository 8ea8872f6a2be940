//! The command line: argument parsing and the glue between data, features, model and eval.
//! `main.rs` only calls [`run`]; each subcommand lives in its own file.

pub mod bench;
pub mod download;
pub mod eval;
pub mod info;
// run records (issue #4)
pub mod compare;
pub mod distill;
pub mod ensemble;
pub mod leaderboard;
pub mod merge;
pub mod plot;
pub mod record;
pub mod report;
pub mod tasks;
pub mod train;

use std::path::PathBuf;

use anyhow::Result;

use clap::{Args, Parser, Subcommand};

use crate::data::LevelFilter;

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
    // run records (issue #4)
    /// List the tasks (RACE and the RACE-style sets): files, splits, options
    Tasks(tasks::TasksArgs),
    /// Rank published results and local runs of a task
    Leaderboard(leaderboard::LeaderboardArgs),
    /// Paired comparison of two runs on the same questions (exact McNemar test)
    Compare(compare::CompareArgs),
    /// Average the option probabilities of saved runs into a new run
    Ensemble(ensemble::EnsembleArgs),
    /// Combine the runs of `eval --shard I/N` into one run
    Merge(merge::MergeArgs),
    /// A run's record, accuracies with intervals and breakdowns
    Report(report::ReportArgs),
    /// Plot accuracy by level and article length for runs (SVG or PNG)
    Plot(plot::PlotArgs),
    /// Measure speed: fixed shapes, ALBERT vs BERT sizes, or a real data set end to end
    Bench(bench::BenchArgs),
    /// Fetch a Hub model or dataset into the Hugging Face cache (for offline machines)
    Download(DownloadArgs),
    /// Fine-tune on RACE: the full ALBERT recipe, or --head-only on cached features
    Train(Box<train::TrainArgs>),
    /// Distil teachers (models or run records) into a smaller student on their soft targets
    Distill(Box<distill::DistillArgs>),
}

/// `--task NAME` (see `race-eval tasks`).
pub fn parse_task(s: &str) -> Result<crate::data::Task, String> {
    crate::data::Task::from_name(s).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model folder in the Hub's layout (config.json, tokenizer.json or spiece.model, and
    /// model.safetensors, pytorch_model.bin or a sharded *.index.json), or a Hub model id
    /// ORG/NAME or NAME, optionally ID@REVISION. A local folder wins when it exists. Decoder LMs
    /// (zero-shot, see --protocol): a GGUF file, a Llama/Qwen2 folder or Hub id, or one GGUF
    /// file of a Hub repository, ORG/NAME/FILE.gguf[@REVISION].
    #[arg(long, value_name = "DIR|ID")]
    pub model: PathBuf,
    /// Branch, tag or commit of a Hub model
    #[arg(long)]
    pub revision: Option<String>,
    /// A head trained by `race-eval train --head-only` for --model (checked against its weights),
    /// or a .safetensors file of head tensors. A head folder may also be given as --model.
    #[arg(long, value_name = "DIR")]
    pub head: Option<PathBuf>,
    /// RACE data: a tree (RACE/{train,dev,test}/{middle,high}/*.txt), a folder with
    /// SPLIT.jsonl or SPLIT[-*].parquet, a .jsonl or .parquet file with one question per line
    /// or row, or a Hub dataset hub:ORG/NAME[/CONFIG][@REVISION] (e.g. hub:ehovy/race; the
    /// config defaults to the one named by --level, else `all`)
    #[arg(long, value_name = "PATH|hub:ID")]
    pub data: PathBuf,
    /// The task whose files --data holds: race, dream, mctest160, mctest500, mcscript, reclor,
    /// cosmosqa, quail (`race-eval tasks` lists their files and splits)
    #[arg(long, value_name = "NAME", default_value = "race", value_parser = parse_task)]
    pub task: crate::data::Task,
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
    /// No progress bars or notes: print only the results
    #[arg(long, short)]
    pub quiet: bool,
    /// Run record options (--output-dir, --shard)
    #[command(flatten)]
    pub record: record::RecordArgs,
    /// Decoder LM options (--model FILE.gguf, or a Llama/Qwen2 transformers folder)
    #[command(flatten)]
    pub lm: LmArgs,
}

/// Options of a zero-shot decoder LM (`--model FILE.gguf` or a Llama/Qwen2 folder).
#[derive(Args, Debug, Clone, Default)]
pub struct LmArgs {
    /// How a decoder LM (a GGUF file or a Llama/Qwen2 folder) is asked: harness-last (lm-evaluation-harness
    /// `race` v3.0: the last question of each article, the earlier ones answered in the prompt)
    /// or harness-all (every question, each with the earlier ones as context)
    #[arg(long, value_enum)]
    pub protocol: Option<crate::features::harness::Protocol>,
    /// Decoder LMs: score only the first N questions of the protocol (a quick run)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Decoder LMs: how the GGUF weights are multiplied. dequantize-on-use (default): kept
    /// quantised in memory, each linear dequantised to f32 a panel of rows at a time as it runs
    /// (transformers' arithmetic, memory about the file's size); dequantized: f32 resident (the
    /// same results, 4 bytes per weight, no faster); quantized: candle's quantised kernels with
    /// quantised activations (llama.cpp's arithmetic, much slower here). A safetensors folder
    /// always runs in f32
    #[arg(long, value_enum, value_name = "MODE")]
    pub weights: Option<crate::model::llama::WeightMode>,
}

#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// cpu, cuda, cuda:N or metal (cuda and metal need the matching cargo feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute precision. bf16 on the CPU: linears and attention products in bf16 with f32 sums
    /// (AVX512-BF16), everything else f32; int8: dynamic quantisation of the linears (CPU only;
    /// eval smooths it on the data's first 32 questions)
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
}

pub use crate::device::parse as parse_device;
pub use crate::model::Precision;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A model folder, a config.json, or a released name (albert-base-v2 … albert-xxlarge-v2,
    /// bert-base-uncased, bert-large-uncased, all-MiniLM-L6-v2, roberta-base, roberta-large,
    /// xlm-roberta-base, distilbert-base-uncased, electra-small-discriminator,
    /// electra-base-discriminator), or a Hub model id ORG/NAME[@REVISION] (config.json only)
    pub model: String,
    /// Branch, tag or commit of a Hub model
    #[arg(long)]
    pub revision: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// A Hub model id (ORG/NAME or NAME, optionally @REVISION), one file of a model repository
    /// (ORG/NAME/FILE, e.g. a decoder LM's GGUF file, optionally @REVISION) or a dataset
    /// (hub:ORG/NAME, hub:ORG/NAME/CONFIG for one config, optionally @REVISION)
    pub repo: String,
    /// Branch, tag or commit
    #[arg(long)]
    pub revision: Option<String>,
    /// No progress bars
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(args) => eval::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Tasks(args) => tasks::run(&args),
        Command::Leaderboard(args) => leaderboard::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Ensemble(args) => ensemble::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Download(args) => download::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Distill(args) => distill::run(&args),
    }
}

/// The lines printed for a run that ensemble or merge wrote.
pub(crate) fn print_new_run(s: &crate::results::RunSummary, dir: &std::path::Path) {
    let a = &s.accuracy.overall;
    println!(
        "{} questions, accuracy {}",
        s.counts.questions,
        a.accuracy
            .map(|v| format!("{:.2}%", 100.0 * v))
            .unwrap_or_else(|| "-".into())
    );
    println!("run: {}", dir.display());
}
