//! `race-eval bench`: speed at fixed shapes (one config, or ALBERT and BERT sizes side by side)
//! or over a real data set with the production batching.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::Args;
use tabled::{settings::Style, Table, Tabled};

use super::{parse_device, RuntimeArgs};
use crate::bench::{self, BenchModel, BenchResult, FixedShape};
use crate::data::LevelFilter;
use crate::eval;
use crate::features::{FormatConfig, TextEncoder, TokenizerFile};
use crate::model::{presets, LoadedModel};
use crate::open;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A released name (albert-base-v2 …, bert-base-uncased, roberta-base, all-MiniLM-L6-v2, …: see
    /// `race-eval info --help`; random weights of its shape, nothing fetched), a model folder, a
    /// config.json, or a Hub model id ORG/NAME[@REVISION] (with --data: its own weights)
    #[arg(long, default_value = "albert-base-v2")]
    pub model: String,
    /// Branch, tag or commit of a Hub model
    #[arg(long)]
    pub revision: Option<String>,
    /// Time ALBERT base/large/xlarge/xxlarge and BERT base/large side by side
    #[arg(long, conflicts_with = "data")]
    pub compare: bool,
    /// Tokens per sequence (fixed-shape mode)
    #[arg(long, default_value_t = 512)]
    pub seq: usize,
    /// Questions to time per repeat (fixed-shape mode)
    #[arg(long, default_value_t = 1)]
    pub questions: usize,
    /// Options per question
    #[arg(long, default_value_t = 4)]
    pub choices: usize,
    /// Questions per forward pass
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed repeats; the best is reported
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Benchmark a data set end to end (load, tokenise, model) with length-sorted batching
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// tokenizer.json for --data with a released name (random weights)
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Only the first N questions of --data
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// With --data: the task whose files it holds (`race-eval tasks`)
    #[arg(long, value_name = "NAME", default_value = "race", value_parser = super::parse_task)]
    pub task: crate::data::Task,
    /// With --data: maximum tokens per sequence, as `eval --max-seq-len`
    #[arg(long, default_value_t = 512)]
    pub max_seq_len: usize,
    /// With --data: maximum question+option tokens, as `eval --max-qa-len`
    #[arg(long, default_value_t = 128)]
    pub max_qa_len: usize,
    /// CPU threads (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Time one linear layer's GEMM in f32 and int8: M,K,N (tokens, inputs, outputs)
    #[arg(long, value_name = "M,K,N", conflicts_with_all = ["data", "compare"])]
    pub gemm: Option<String>,
}

#[derive(Tabled)]
struct Row {
    model: String,
    params: String,
    shape: String,
    #[tabled(rename = "GFLOP/q")]
    gflop: String,
    #[tabled(rename = "s/q")]
    secs: String,
    #[tabled(rename = "q/s")]
    qps: String,
    #[tabled(rename = "tokens/s")]
    tps: String,
    #[tabled(rename = "GFLOP/s")]
    gflops: String,
    #[tabled(rename = "% sgemm peak")]
    peak: String,
    #[tabled(rename = "peak RSS MiB")]
    rss: String,
}

fn row(r: &BenchResult) -> Row {
    let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
    Row {
        model: r.model.clone(),
        params: format!("{:.1}M", r.params as f64 / 1e6),
        shape: format!("{}x{}x{}", r.questions, r.choices, r.seq),
        gflop: format!("{:.1}", r.gflop_per_question),
        secs: format!("{:.3}", r.seconds_per_question),
        qps: format!("{:.2}", r.questions_per_s),
        tps: format!("{:.0}", r.tokens_per_s),
        gflops: format!("{:.1}", r.gflop_per_s),
        peak: opt(r.percent_of_sgemm_peak, 0),
        rss: opt(r.peak_rss_mb, 0),
    }
}

/// Random weights in the shape of a released name, a config.json, or a model (folder or Hub).
fn model_for(name: &str, args: &BenchArgs, device: &Device) -> Result<BenchModel> {
    let cfg = match presets::preset(name) {
        Some(cfg) => cfg,
        None => open::open_config(name, args.revision.as_deref(), &open::hub_config(args.json))?,
    };
    BenchModel::random(&cfg, args.runtime.dtype, device)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        // Read by candle and rayon when their thread pools start, which has not happened yet.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    if let Some(shape) = &args.gemm {
        let dims: Vec<usize> = shape
            .split(',')
            .map(|d| d.trim().parse())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("--gemm {shape:?}: expected M,K,N, e.g. 1024,384,1536"))?;
        let [m, k, n] = dims[..] else {
            bail!("--gemm {shape:?}: expected three numbers M,K,N");
        };
        let rates = bench::gemm_rates(m, k, n, args.repeats);
        let f32_rate = rates.f32;
        let name = |k: &dyn std::fmt::Debug| format!("{k:?}").to_lowercase();
        if args.json {
            let v = serde_json::json!({ "m": m, "k": k, "n": n, "f32_gflops": f32_rate,
                "int8_gops": rates.int8.map(|r| r.0), "int8_kernel": rates.int8.map(|r| name(&r.1)),
                "bf16_gflops": rates.bf16.map(|r| r.0), "bf16_kernel": rates.bf16.map(|r| name(&r.1)) });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("{m}x{k}x{n}: f32 {f32_rate:.1} GFLOP/s");
            match rates.int8 {
                Some((r, kernel)) => println!(
                    "{m}x{k}x{n}: int8 {r:.1} GOP/s ({kernel:?} kernel, activation quantisation included): {:.2}x f32",
                    r / f32_rate
                ),
                None => println!("int8: no integer kernel on this CPU (AVX2 or AVX-512 VNNI)"),
            }
            match rates.bf16 {
                Some((r, kernel)) => println!(
                    "{m}x{k}x{n}: bf16 {r:.1} GFLOP/s ({} kernel, activation rounding included): {:.2}x f32",
                    kernel.name(),
                    r / f32_rate
                ),
                None => println!("bf16: no bf16 kernel on this CPU (AVX-512F, ideally with BF16)"),
            }
        }
        return Ok(());
    }
    let device = parse_device(&args.runtime.device)?;
    // A local folder, a config.json or a Hub id is checked before any timing starts.
    if args.data.is_some() {
        return run_data(args, &device);
    }
    let peak = bench::sgemm_peak(&device, args.runtime.dtype.dtype()).ok();
    let names: Vec<String> = if args.compare {
        let mut n: Vec<String> = presets::albert_names()
            .into_iter()
            .map(String::from)
            .collect();
        n.extend(["bert-base".to_string(), "bert-large".to_string()]);
        n
    } else {
        vec![args.model.clone()]
    };
    let mut results = Vec::new();
    for name in &names {
        bench::reset_peak_rss();
        let model = model_for(name, args, &device)?;
        let shape = FixedShape {
            questions: args.questions,
            choices: args.choices,
            seq: args.seq,
            batch: args.batch,
            repeats: args.repeats,
        };
        let r = bench::time_fixed(name, &model, shape, &device, peak)?;
        if !args.json {
            eprintln!("{name}: {:.3} s/question", r.seconds_per_question);
        }
        results.push(r);
    }
    if args.json {
        let v = serde_json::json!({ "sgemm_peak_gflops": peak, "results": results });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}",
            Table::new(results.iter().map(row)).with(Style::markdown())
        );
        if let Some(p) = peak {
            println!(
                "sgemm peak measured here: {p:.1} GFLOP/s (2048x768 · 768x3072, {:?})",
                args.runtime.dtype
            );
        }
    }
    Ok(())
}

/// End to end over real data: load, tokenise and run with the same batching as `eval`
/// (length-sorted, each batch padded to its own longest sequence).
fn run_data(args: &BenchArgs, device: &Device) -> Result<()> {
    let path = args.data.as_ref().expect("checked by caller");
    let hub = open::hub_config(args.json);
    let (model, config, tokenizer) = match presets::preset(&args.model) {
        None => {
            let opened = open::open_model(&args.model, args.revision.as_deref(), &hub)?;
            let (mut loaded, warning) = LoadedModel::for_inference(
                &opened.dir,
                opened.config.clone(),
                opened.weight_files.clone(),
                args.runtime.dtype,
                device,
                Default::default(),
            )?;
            if let Some(w) = warning {
                // A benchmark never reports one precision under another's name.
                bail!("--dtype {}: {w}", args.runtime.dtype.name());
            }
            // int8: no calibration in a benchmark (the same kernels run either way); this
            // drops the f32 copies as eval's calibration does.
            loaded.model.calibrate_int8(|_| Ok(()))?;
            (loaded.model, loaded.config, opened.tokenizer)
        }
        Some(cfg) => {
            let Some(tok) = &args.tokenizer else {
                bail!("--data with a released name needs --tokenizer FILE (random weights), or give a model folder or Hub id as --model");
            };
            let b = BenchModel::random(&cfg, args.runtime.dtype, device)?;
            (b.model, b.config, TokenizerFile::Json(tok.clone()))
        }
    };
    // Timed from here, as scripts/bench_hf.py times its side: data, tokeniser and model, not the
    // building of the model.
    let data = open::open_data(path, &args.split, LevelFilter::All, &hub)?.with_task(args.task);
    let started = Instant::now();
    let mut ds = data.load(LevelFilter::All, false)?;
    if let Some(n) = args.limit {
        ds.questions.truncate(n);
    }
    let encoder = TextEncoder::new(tokenizer.load()?)?;
    let fmt = FormatConfig {
        max_seq_len: args.max_seq_len,
        max_qa_len: args.max_qa_len,
    };
    fmt.validate(config.max_sequence_len())?;
    // As `eval` runs: tokenising in the read-ahead thread, overlapping the model.
    let (_, tokens) = eval::logits_streaming(
        &model,
        eval::Streamed::new(&encoder, &ds.questions, &fmt, args.batch),
        args.batch,
        config.pad_token_id,
        device,
        None,
    )?;
    let wall = started.elapsed().as_secs_f64();
    let (real_tokens, padded_tokens) = (tokens.real, tokens.padded);
    let padded_to_512: usize = ds
        .questions
        .iter()
        .map(|q| q.options.len() * fmt.max_seq_len)
        .sum();
    let n = ds.questions.len();
    let v = serde_json::json!({
        "data": path, "task": args.task.name(), "model": args.model, "model_type": config.family.model_type(),
        "dtype": args.runtime.dtype.name(),
        "questions": n, "batch": args.batch,
        "real_tokens": real_tokens, "padded_tokens": padded_tokens,
        // (named for the default; padded to max_seq_len)
        "tokens_if_padded_to_512": padded_to_512, "max_seq_len": fmt.max_seq_len,
        "max_qa_len": fmt.max_qa_len,
        "wall_s": wall,
        "questions_per_s": n as f64 / wall, "tokens_per_s": real_tokens as f64 / wall,
        "device": bench::device_name(device), "peak_rss_mb": bench::peak_rss_mb(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{n} questions, {real_tokens} real tokens ({padded_tokens} with dynamic padding, {padded_to_512} if padded to {})",
            fmt.max_seq_len
        );
        println!(
            "wall {wall:.2} s end to end ({:.2} questions/s, {:.0} tokens/s); peak RSS {:.0} MiB",
            n as f64 / wall,
            real_tokens as f64 / wall,
            bench::peak_rss_mb().unwrap_or(0.0)
        );
    }
    Ok(())
}
