//! `race-eval merge RUN...`: shard runs back into one run.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::results::{merge::merge, write_run, Run};

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// All the shard runs of one evaluation (folders or run ids under --results-dir), any order
    #[arg(required = true)]
    pub runs: Vec<String>,
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results_dir: PathBuf,
    /// Where the merged run goes (default: --results-dir)
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

pub fn run(args: &MergeArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|r| Run::load(r, &args.results_dir))
        .collect::<Result<Vec<_>>>()?;
    let (summary, preds) = merge(&runs)?;
    let out = args.output_dir.as_ref().unwrap_or(&args.results_dir);
    let dir = write_run(out, summary.clone(), &preds)?;
    super::print_new_run(&summary, &dir);
    Ok(())
}
