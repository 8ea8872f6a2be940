//! `race-eval leaderboard`: published baselines and local runs, ranked.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::results::leaderboard::{leaderboard_for, render, Format};
use crate::results::list_runs;

#[derive(Args, Debug)]
pub struct LeaderboardArgs {
    /// Which ranking: test, or dev (validation); dev and test are never mixed
    #[arg(long, default_value = "test")]
    pub split: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The task to rank (`race-eval tasks`): its published results and local runs
    #[arg(long, value_name = "NAME", default_value = "race", value_parser = super::parse_task)]
    pub task: crate::data::Task,
    /// Folder of local runs (as written by `race-eval eval`)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_RESULTS_DIR)]
    pub results_dir: PathBuf,
}

const DEFAULT_RESULTS_DIR: &str = "results";

pub fn run(args: &LeaderboardArgs) -> Result<()> {
    // The default folder may not exist yet (no eval run so far): the published rows alone. A
    // folder the user named must exist.
    let default = args.results_dir == std::path::Path::new(DEFAULT_RESULTS_DIR);
    let (local, problems) = if default && !args.results_dir.exists() {
        eprintln!(
            "note: no local runs ({DEFAULT_RESULTS_DIR}/ does not exist yet): published results only"
        );
        (Vec::new(), Vec::new())
    } else {
        list_runs(&args.results_dir)?
    };
    for p in problems {
        eprintln!("warning: {p}");
    }
    let rows = leaderboard_for(args.task, &args.split, &local)?;
    if rows.iter().all(|r| r.split == "any") {
        eprintln!(
            "note: no published result of task `{}` on split `{}` was verified from a source, and there are no local runs of it: only chance is shown (evaluate a model with `race-eval eval --task {}`)",
            args.task.name(),
            args.split,
            args.task.name()
        );
    }
    print!("{}", render(&rows, args.format)?);
    Ok(())
}
