//! `race-eval ensemble RUN...`: average saved probabilities into a new run.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::results::{ensemble::ensemble, write_run, Run};

#[derive(Args, Debug)]
pub struct EnsembleArgs {
    /// Two or more runs (folders or run ids under --results-dir) on the same questions
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<String>,
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results_dir: PathBuf,
    /// Where the new run goes (default: --results-dir)
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

pub fn run(args: &EnsembleArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|r| Run::load(r, &args.results_dir))
        .collect::<Result<Vec<_>>>()?;
    let (summary, preds) = ensemble(&runs)?;
    let out = args.output_dir.as_ref().unwrap_or(&args.results_dir);
    let dir = write_run(out, summary.clone(), &preds)?;
    super::print_new_run(&summary, &dir);
    Ok(())
}
