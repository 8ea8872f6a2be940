//! `race-eval compare RUN_A RUN_B`: paired comparison with the exact McNemar test.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::results::{compare::compare, Run};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A run folder or a run id under --results-dir
    pub run_a: String,
    /// The run to compare with, on the same questions
    pub run_b: String,
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results_dir: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let a = Run::load(&args.run_a, &args.results_dir)?;
    let b = Run::load(&args.run_b, &args.results_dir)?;
    let c = compare(&a, &b)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", c.to_text());
    }
    Ok(())
}
