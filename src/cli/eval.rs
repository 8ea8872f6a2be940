//! `race-eval eval`: arguments in, scores out; the work is [`crate::eval::pipeline`].

use anyhow::{bail, Result};

use super::EvalArgs;
use crate::eval::{self, lm::LmRequest, pipeline::EvalRequest};
use crate::features::harness::Protocol;
use crate::features::FormatConfig;
use crate::metrics::{Accuracy, LevelScores};
use crate::model::llama::WeightMode;
use crate::open::LmLocation;

impl EvalArgs {
    /// The library's description of this evaluation.
    pub fn request(&self) -> EvalRequest {
        EvalRequest {
            model: self.model.clone(),
            revision: self.revision.clone(),
            head: self.head.clone(),
            data: self.data.clone(),
            task: self.task,
            split: self.split.clone(),
            level: self.level,
            skip_invalid: self.skip_invalid,
            shard: self.record.fixed_shard(),
            format: FormatConfig {
                max_seq_len: self.max_seq_len,
                max_qa_len: self.max_qa_len,
            },
            batch_size: self.batch_size,
            device: self.runtime.device.clone(),
            precision: self.runtime.dtype,
            quiet: self.quiet,
        }
    }
}

impl EvalArgs {
    /// The library's description of a decoder-LM evaluation (`--model FILE.gguf` or a Llama/Qwen2 folder).
    pub fn lm_request(&self, model: LmLocation) -> Result<LmRequest> {
        if self.head.is_some() {
            bail!("--head applies to encoder models, not to a decoder LM");
        }
        if self.record.shard.is_some() {
            bail!("--shard splits questions, but a decoder LM's prompt holds every earlier question of the article: run it unsharded");
        }
        Ok(LmRequest {
            model,
            data: self.data.clone(),
            task: self.task,
            split: self.split.clone(),
            level: self.level,
            skip_invalid: self.skip_invalid,
            protocol: self.lm.protocol.unwrap_or(Protocol::HarnessLast),
            limit: self.lm.limit,
            max_len: None,
            weights: self.lm.weights.unwrap_or(WeightMode::DequantizeOnUse),
            quiet: self.quiet,
        })
    }
}

/// `race-eval eval --model FILE.gguf`: a zero-shot decoder LM.
fn run_lm(args: &EvalArgs, model: LmLocation) -> Result<()> {
    let req = args.lm_request(model)?;
    if let Some(p) = &args.predictions {
        crate::paths::refuse_overwrite(
            p,
            "--predictions",
            &[args.data.clone(), req.model.path.clone()],
            false,
        )?;
    }
    let out = eval::lm::evaluate_lm(&req)?;
    for w in &out.warnings {
        eprintln!("{w}");
    }
    if let Some(path) = &args.predictions {
        crate::results::write_predictions(path, &out.predictions)?;
    }
    let run_dir = eval::lm::write_record(&req, &out, &args.record.output_dir)?;
    let n = out.predictions.len();
    println!(
        "race-eval: {} on {} (split {}, level {}, zero-shot {})",
        req.model.pinned(),
        args.data.display(),
        args.split,
        format!("{:?}", args.level).to_lowercase(),
        req.protocol.name()
    );
    println!(
        "{n} questions scored in {} passages ({} questions read)",
        out.dataset.passages(),
        out.dataset.questions.len()
    );
    println!("acc (summed log-likelihood):");
    print!("{}", score_table(&out.scores));
    println!("acc_norm (log-likelihood / option length in characters):");
    print!("{}", score_table(&out.scores_norm));
    println!(
        "wall time {:.2} s ({:.2} questions/s end to end; model {:.2} questions/s, {:.0} tokens/s)",
        out.wall_secs,
        n as f64 / out.wall_secs,
        n as f64 / out.model_secs.max(1e-9),
        out.tokens as f64 / out.model_secs.max(1e-9)
    );
    if let Some(path) = &args.predictions {
        println!("predictions: {}", path.display());
    }
    println!("run: {}", run_dir.display());
    Ok(())
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let hub = crate::open::hub_config(args.quiet);
    let lm_flags =
        args.lm.protocol.is_some() || args.lm.limit.is_some() || args.lm.weights.is_some();
    let spec = args.model.to_string_lossy();
    if let Some(lm) = crate::open::locate_decoder(&spec, args.revision.as_deref(), &hub, lm_flags)?
    {
        return run_lm(args, lm);
    }
    if lm_flags {
        bail!("--protocol, --limit and --weights apply to decoder LMs (--model FILE.gguf, a Llama/Qwen2 folder or Hub id, or ORG/NAME/FILE.gguf of a Hub repository), and --model {} is not one", args.model.display());
    }
    let mut req = args.request();
    // Refused before any work when it is plainly the data file; after loading, against every
    // file the run read.
    if let Some(p) = &args.predictions {
        crate::paths::refuse_overwrite(
            p,
            "--predictions",
            std::slice::from_ref(&args.data),
            false,
        )?;
    }
    if let Some(auto) = args.record.auto_shard(|k| std::env::var(k).ok())? {
        if !args.quiet {
            eprintln!("shard {} from {}", auto.shard, auto.source);
        }
        req.shard = Some(auto.shard);
    }
    let out = eval::pipeline::evaluate(&req)?;
    for w in &out.warnings {
        // -q: one line per warning (the skipped questions' list stays in the run record).
        match args.quiet {
            true => eprintln!("{}", w.lines().next().unwrap_or_default()),
            false => eprintln!("{w}"),
        }
    }
    if let Some(path) = &args.predictions {
        crate::paths::refuse_overwrite(path, "--predictions", &out.inputs(), false)?;
        crate::results::write_predictions(path, &out.predictions)?;
    }
    let run_dir = eval::pipeline::write_record(&req, &out, &args.record.output_dir)?;
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
