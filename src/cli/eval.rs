//! `race-eval eval`: arguments in, scores out; the work is [`crate::eval::pipeline`].

use anyhow::Result;

use super::EvalArgs;
use crate::eval::{self, pipeline::EvalRequest};
use crate::features::FormatConfig;
use crate::metrics::{Accuracy, LevelScores};

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

pub fn run(args: &EvalArgs) -> Result<()> {
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
