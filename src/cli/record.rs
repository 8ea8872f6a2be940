//! The run-record options of `race-eval eval` (`--output-dir`, `--shard`, `--shard-count`); the
//! record itself is written by [`crate::eval::pipeline::write_record`].

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Result};
use clap::Args;

use crate::results::shard::{shard_from_env, ResolvedShard};
use crate::results::Shard;

/// `--shard`: a fixed `I/N`, or `auto` (from the scheduler's job-array variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Fixed(Shard),
    Auto,
}

impl FromStr for ShardArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(ShardArg::Auto);
        }
        s.parse::<Shard>()
            .map(ShardArg::Fixed)
            .map_err(|e| format!("{e}, or auto (from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    /// Where run records go: each eval writes DIR/<run-id>/summary.json and predictions.jsonl
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub output_dir: PathBuf,
    /// Evaluate only shard I of N (questions I, I+N, I+2N, … in input order); put the shards
    /// back together with `race-eval merge`. `auto`: this task's shard of a SLURM job array
    /// (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT) or of a
    /// Kubernetes indexed Job (JOB_COMPLETION_INDEX of --shard-count)
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<ShardArg>,
    /// With --shard auto in a Kubernetes indexed Job: the number of shards (the Job's
    /// completions)
    #[arg(long, value_name = "N")]
    pub shard_count: Option<usize>,
}

impl RecordArgs {
    /// The shard given as `--shard I/N`; `None` for no shard and for `--shard auto`, which
    /// [`RecordArgs::auto_shard`] resolves.
    pub fn fixed_shard(&self) -> Option<Shard> {
        match self.shard {
            Some(ShardArg::Fixed(s)) => Some(s),
            _ => None,
        }
    }

    /// For `--shard auto`, the shard from the variables read through `var` (see
    /// [`shard_from_env`]); `None` otherwise. Refuses `--shard-count` without `--shard auto`.
    pub fn auto_shard(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ResolvedShard>> {
        match (self.shard, self.shard_count) {
            (Some(ShardArg::Auto), count) => shard_from_env(count, var).map(Some),
            (_, Some(n)) => bail!(
                "--shard-count {n} is only read with --shard auto (a Kubernetes indexed Job); add --shard auto, or drop --shard-count"
            ),
            (_, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(shard: Option<&str>, shard_count: Option<usize>) -> RecordArgs {
        RecordArgs {
            output_dir: PathBuf::from("results"),
            shard: shard.map(|s| s.parse().unwrap()),
            shard_count,
        }
    }

    #[test]
    fn shard_arg_parses_fixed_and_auto() {
        assert_eq!(
            "1/4".parse::<ShardArg>(),
            Ok(ShardArg::Fixed(Shard { index: 1, count: 4 }))
        );
        assert_eq!("auto".parse::<ShardArg>(), Ok(ShardArg::Auto));
        let err = "4/4".parse::<ShardArg>().unwrap_err();
        assert!(
            err.contains("expected I/N") && err.contains("or auto"),
            "{err}"
        );
    }

    #[test]
    fn auto_shard_resolves_only_auto() {
        let none = |_: &str| None;
        let fixed = args(Some("1/4"), None);
        assert_eq!(fixed.fixed_shard(), Some(Shard { index: 1, count: 4 }));
        assert_eq!(fixed.auto_shard(none).unwrap(), None);
        assert_eq!(args(None, None).auto_shard(none).unwrap(), None);

        let auto = args(Some("auto"), Some(3));
        assert_eq!(auto.fixed_shard(), None);
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "2".to_string());
        let r = auto.auto_shard(k8s).unwrap().unwrap();
        assert_eq!(r.shard, Shard { index: 2, count: 3 });
        assert!(args(Some("auto"), None).auto_shard(none).is_err());

        let err = args(Some("1/4"), Some(4)).auto_shard(none).unwrap_err();
        assert!(
            err.to_string().contains("only read with --shard auto"),
            "{err}"
        );
        assert!(args(None, Some(4)).auto_shard(none).is_err());
    }
}
