//! `race-eval report RUN`: one run's record, accuracies and breakdowns.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::results::{read_summary, report::render, Run};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run folder or a run id under --results-dir
    pub run: String,
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results_dir: PathBuf,
    /// Print the summary.json instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let dir = Run::find(&args.run, &args.results_dir)?;
    let summary = read_summary(&dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    Ok(())
}
