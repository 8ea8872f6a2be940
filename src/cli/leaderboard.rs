//! `race-eval leaderboard`: published baselines and local runs, ranked.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::results::leaderboard::{leaderboard, render, Format};
use crate::results::list_runs;

#[derive(Args, Debug)]
pub struct LeaderboardArgs {
    /// Which ranking: test, or dev (validation); dev and test are never mixed
    #[arg(long, default_value = "test")]
    pub split: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Folder of local runs (as written by `race-eval eval`)
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results_dir: PathBuf,
}

pub fn run(args: &LeaderboardArgs) -> Result<()> {
    let (local, problems) = list_runs(&args.results_dir)?;
    for p in problems {
        eprintln!("warning: {p}");
    }
    let rows = leaderboard(&args.split, &local)?;
    print!("{}", render(&rows, args.format)?);
    Ok(())
}
