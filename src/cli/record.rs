//! The run-record options of `race-eval eval` (`--output-dir`, `--shard`); the record itself is
//! written by [`crate::eval::pipeline::write_record`].

use std::path::PathBuf;

use clap::Args;

use crate::results::Shard;

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    /// Where run records go: each eval writes DIR/<run-id>/summary.json and predictions.jsonl
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub output_dir: PathBuf,
    /// Evaluate only shard I of N (questions I, I+N, I+2N, … in input order); put the shards
    /// back together with `race-eval merge`
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}
