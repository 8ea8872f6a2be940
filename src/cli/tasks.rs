//! `race-eval tasks`: the tasks, their files, splits and option counts.

use anyhow::Result;
use clap::Args;

use crate::data::tasks::ALL;

#[derive(Args, Debug)]
pub struct TasksArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TasksArgs) -> Result<()> {
    if args.json {
        let v: Vec<serde_json::Value> = ALL
            .iter()
            .map(|t| {
                let i = t.info();
                serde_json::json!({
                    "name": i.name, "title": i.title, "options": i.options, "splits": i.splits,
                    "formats": i.formats, "parquet": i.parquet, "context": i.context,
                    "reference": i.reference,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for t in ALL {
        let i = t.info();
        println!("{}: {}", i.name, i.title);
        println!("  options: {}; splits: {}", i.options, i.splits.join(", "));
        println!("  files: {}", i.formats);
        match i.parquet {
            Some(p) => println!("  Hub parquet columns: {p}"),
            None => println!("  Hub parquet: none read (no copy with a stable layout)"),
        }
        println!("  context: {}", i.context);
        println!("  reference: {}", i.reference);
        println!();
    }
    println!(
        "Evaluate with `race-eval eval --task NAME --data PATH --split SPLIT`; rank with `race-eval leaderboard --task NAME`."
    );
    Ok(())
}
