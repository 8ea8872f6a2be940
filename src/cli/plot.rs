//! `race-eval plot RUN... --output FILE.svg|FILE.png`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::results::{plot::plot, Run};

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// One or more runs (folders or run ids under --results-dir)
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// The picture to write: .svg, or .png
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results_dir: PathBuf,
}

pub fn run(args: &PlotArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|r| Run::load(r, &args.results_dir))
        .collect::<Result<Vec<_>>>()?;
    plot(&runs, &args.output)?;
    println!("plot: {}", args.output.display());
    Ok(())
}
