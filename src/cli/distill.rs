//! `race-eval distill`: argument parsing only; the work is in [`crate::train::distill`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::train::{options, print_report, RunArgs};
use crate::train::distill::{self, DistillConfig, DistillOptions};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    race-eval eval --model heads/teacher --data DATA --split train        # a run record to distil from\n  \
    race-eval distill --teacher results/RUN_ID --student heads/teacher --student-layers 3 \\\n      \
    --data DATA --output heads/student --lr 5e-5 --epochs 1\n  \
    race-eval distill --teacher heads/a --teacher heads/b --student MINILM --data DATA --output heads/s")]
pub struct DistillArgs {
    /// A teacher: a run record of `race-eval eval` on the training split (its folder or run id
    /// under --results-dir), or a model (a folder, a head folder or a Hub model id) evaluated
    /// on it now. Repeat it for an ensemble
    /// (its averaged probabilities)
    #[arg(long, value_name = "RUN|MODEL", required = true, num_args = 1..)]
    pub teacher: Vec<String>,
    /// The student's starting model: a folder or a Hub model id (ORG/NAME[@REVISION]), a small
    /// pretrained model (MiniLM), or the teacher itself with --student-layers
    #[arg(long, value_name = "DIR|ID")]
    pub student: String,
    /// Keep this many encoder layers: every (L/N)-th layer of a BERT-family student, or fewer
    /// passes through ALBERT's shared layer [default: all]
    #[arg(long, value_name = "N")]
    pub student_layers: Option<usize>,
    /// Weight of the teacher term: alpha·T²·KL(teacher‖student) + (1−alpha)·CE(gold)
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Softmax temperature T of teacher and student in the KL term
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f64,
    /// Where run ids given as --teacher are looked up
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results_dir: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: &DistillArgs) -> Result<()> {
    let mut train = options(&args.student, None, &args.run)?;
    train.config.distill = Some(DistillConfig {
        alpha: args.alpha,
        temperature: args.temperature,
        student_layers: args.student_layers,
    });
    train.config.validate()?;
    let opts = DistillOptions {
        teachers: args.teacher.clone(),
        results_dir: args.results_dir.clone(),
        train,
    };
    let (report, teachers) = distill::distill(opts)?;
    for w in &teachers.warnings {
        eprintln!("{w}");
    }
    println!(
        "soft targets from {} teacher(s) for {} questions: {}",
        teachers.sources.len(),
        teachers.probs.len(),
        report.output.join(distill::SOFT_TARGETS_FILE).display()
    );
    print_report(&report);
    Ok(())
}
