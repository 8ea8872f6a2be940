//! `--shard i/n`: a deterministic 1/n of the questions, by position in the loaded data
//! (question k goes to shard k mod n), so shards are stable across runs and machines and
//! interleave back into input order.
//!
//! `--shard auto` takes the shard from a job scheduler's environment instead:
//! [`shard_from_env`] reads a SLURM job array's or a Kubernetes indexed Job's variables.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based: 0 ≤ index < count.
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/4 … 3/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Number of questions this shard gets out of `total`.
    pub fn len_of(&self, total: usize) -> usize {
        total / self.count + usize::from(self.index < total % self.count)
    }

    /// Keeps the items at positions `index`, `index + count`, … . Refuses a shard that would be
    /// empty, which is always a mistake (more shards than questions).
    pub fn select<T>(&self, items: Vec<T>) -> Result<Vec<T>> {
        let total = items.len();
        if self.len_of(total) == 0 {
            bail!(
                "--shard {self}: the data has only {total} question(s), so this shard would be empty; use at most {total} shards"
            );
        }
        Ok(items
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % self.count == self.index)
            .map(|(_, q)| q)
            .collect())
    }
}

/// A shard found in a scheduler's environment by [`shard_from_env`], with the variables it came
/// from, e.g. `SLURM_ARRAY_TASK_ID=2 (SLURM_ARRAY_TASK_COUNT=4)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedShard {
    pub shard: Shard,
    pub source: String,
}

/// The one message for "no scheduler variables at all".
const NO_SCHEDULER: &str = "--shard auto: neither SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (a SLURM job array) nor JOB_COMPLETION_INDEX with --shard-count (a Kubernetes indexed Job) is set; give --shard I/N";

/// A variable that must be a whole number when set; `None` when unset.
fn number(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>> {
    match var(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => bail!(
                "--shard auto: {name}={v:?} is not a whole number; run inside the scheduler's job (it sets {name}) or give --shard I/N"
            ),
        },
    }
}

/// `--shard auto`: the shard of this task of a job array, from environment variables read
/// through `var` (pass `|k| std::env::var(k).ok()`; tests pass a map).
///
/// - SLURM job array (`sbatch --array=A-B`): index = `SLURM_ARRAY_TASK_ID` −
///   `SLURM_ARRAY_TASK_MIN` (0 when unset), count = `SLURM_ARRAY_TASK_COUNT`. The array must
///   be a contiguous range (no `:step`, no lists with gaps). `shard_count`, when given, must
///   agree with `SLURM_ARRAY_TASK_COUNT`.
/// - otherwise a Kubernetes indexed Job: index = `JOB_COMPLETION_INDEX`, count = `shard_count`
///   (`--shard-count`, the Job's completions), which is then required.
///
/// Errors name the variable that is missing, not a number or out of range, and what to do.
pub fn shard_from_env(
    shard_count: Option<usize>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<ResolvedShard> {
    if shard_count == Some(0) {
        bail!("--shard-count 0: a job needs at least one shard; give the number of tasks (N >= 1)");
    }
    let id = number(&var, "SLURM_ARRAY_TASK_ID")?;
    let slurm_count = number(&var, "SLURM_ARRAY_TASK_COUNT")?;
    match (id, slurm_count) {
        (Some(id), Some(count)) => {
            let min = number(&var, "SLURM_ARRAY_TASK_MIN")?;
            if count == 0 {
                bail!("--shard auto: SLURM_ARRAY_TASK_COUNT=0 is not a job array of any task; submit with sbatch --array=0-N (N >= 0) or give --shard I/N");
            }
            let mut source = format!("SLURM_ARRAY_TASK_ID={id}");
            let index = match min {
                Some(min) => {
                    if id < min {
                        bail!("--shard auto: SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}; these must come from the same job array (do not set them by hand), or give --shard I/N");
                    }
                    if min != 0 {
                        source += &format!(" - SLURM_ARRAY_TASK_MIN={min}");
                    }
                    id - min
                }
                None => id,
            };
            if index >= count {
                bail!(
                    "--shard auto: SLURM_ARRAY_TASK_ID={id} minus SLURM_ARRAY_TASK_MIN={} gives shard {index}, not below SLURM_ARRAY_TASK_COUNT={count}: submit the array as one contiguous range (e.g. sbatch --array=0-{}, no :step or gaps), or give --shard I/N",
                    min.unwrap_or(0),
                    count - 1
                );
            }
            if let Some(n) = shard_count {
                if n != count {
                    bail!("--shard auto: --shard-count {n} disagrees with SLURM_ARRAY_TASK_COUNT={count}; drop --shard-count in a SLURM array (the array's size is used), or make them equal");
                }
            }
            source += &format!(" (SLURM_ARRAY_TASK_COUNT={count})");
            Ok(ResolvedShard {
                shard: Shard { index, count },
                source,
            })
        }
        (Some(id), None) => bail!(
            "--shard auto: SLURM_ARRAY_TASK_ID={id} is set but SLURM_ARRAY_TASK_COUNT is not; submit with sbatch --array=0-N (which sets both), or give --shard I/N"
        ),
        (None, Some(count)) => bail!(
            "--shard auto: SLURM_ARRAY_TASK_COUNT={count} is set but SLURM_ARRAY_TASK_ID is not; run this inside a task of the array (sbatch --array=0-N), or give --shard I/N"
        ),
        (None, None) => {
            let index = number(&var, "JOB_COMPLETION_INDEX")?;
            match (index, shard_count) {
                (Some(index), Some(count)) => {
                    if index >= count {
                        bail!("--shard auto: JOB_COMPLETION_INDEX={index} is not below --shard-count {count}; give --shard-count the Job's completions (spec.completions), or give --shard I/N");
                    }
                    Ok(ResolvedShard {
                        shard: Shard { index, count },
                        source: format!("JOB_COMPLETION_INDEX={index} (--shard-count {count})"),
                    })
                }
                (Some(index), None) => bail!(
                    "--shard auto: JOB_COMPLETION_INDEX={index} is set (a Kubernetes indexed Job) but --shard-count is not; add --shard-count N with N the Job's completions"
                ),
                (None, Some(count)) => bail!(
                    "--shard auto --shard-count {count}: JOB_COMPLETION_INDEX (a Kubernetes indexed Job, completionMode: Indexed) is not set, nor SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (a SLURM job array); run inside such a job, or give --shard I/N"
                ),
                (None, None) => bail!("{NO_SCHEDULER}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shard_from_env` over a fixed set of variables; the error text when it fails.
    fn resolve(count: Option<usize>, vars: &[(&str, &str)]) -> Result<ResolvedShard, String> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        shard_from_env(count, |k| map.get(k).cloned()).map_err(|e| e.to_string())
    }

    fn refused(count: Option<usize>, vars: &[(&str, &str)], wanted: &[&str]) {
        let err = resolve(count, vars).expect_err("should be refused");
        for w in wanted {
            assert!(err.contains(w), "{w:?} not in {err:?}");
        }
        assert!(
            err.contains("--shard I/N") || err.contains("--shard-count"),
            "{err}"
        );
    }

    #[test]
    fn auto_from_a_slurm_array() {
        let r = resolve(
            None,
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
        )
        .unwrap();
        assert_eq!(r.shard, Shard { index: 2, count: 4 });
        assert_eq!(r.source, "SLURM_ARRAY_TASK_ID=2 (SLURM_ARRAY_TASK_COUNT=4)");
        // MIN = 0 as sbatch sets it for --array=0-3: the same shard, the same description
        let r = resolve(
            None,
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
            ],
        )
        .unwrap();
        assert_eq!(r.source, "SLURM_ARRAY_TASK_ID=2 (SLURM_ARRAY_TASK_COUNT=4)");
        // --array=1-4: task 4 is the last of four shards
        let r = resolve(
            Some(4),
            &[
                ("SLURM_ARRAY_TASK_ID", " 4 "),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                // SLURM wins over a stray Kubernetes index
                ("JOB_COMPLETION_INDEX", "0"),
            ],
        )
        .unwrap();
        assert_eq!(r.shard, Shard { index: 3, count: 4 });
        assert_eq!(
            r.source,
            "SLURM_ARRAY_TASK_ID=4 - SLURM_ARRAY_TASK_MIN=1 (SLURM_ARRAY_TASK_COUNT=4)"
        );
    }

    #[test]
    fn auto_refuses_bad_slurm_variables() {
        let id_count = |id: &'static str, count: &'static str| {
            [
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", count),
            ]
        };
        refused(
            None,
            &id_count("4", "4"),
            &["SLURM_ARRAY_TASK_ID=4", "gives shard 4", "--array=0-3"],
        );
        refused(None, &id_count("0", "0"), &["SLURM_ARRAY_TASK_COUNT=0"]);
        refused(
            None,
            &id_count("two", "4"),
            &["SLURM_ARRAY_TASK_ID=\"two\"", "not a whole number"],
        );
        refused(
            None,
            &id_count("1", "-4"),
            &["SLURM_ARRAY_TASK_COUNT=\"-4\"", "not a whole number"],
        );
        refused(
            None,
            &id_count("", "4"),
            &["SLURM_ARRAY_TASK_ID=\"\"", "not a whole number"],
        );
        refused(
            None,
            &[("SLURM_ARRAY_TASK_ID", "1")],
            &["SLURM_ARRAY_TASK_COUNT is not", "--array"],
        );
        refused(
            None,
            &[("SLURM_ARRAY_TASK_COUNT", "4")],
            &["SLURM_ARRAY_TASK_ID is not"],
        );
        // a stepped array (--array=0-6:2): ids 0,2,4,6 are not 0..4
        let mut stepped = id_count("6", "4").to_vec();
        stepped.push(("SLURM_ARRAY_TASK_MIN", "0"));
        refused(None, &stepped, &["gives shard 6", "contiguous"]);
        let mut below = id_count("1", "4").to_vec();
        below.push(("SLURM_ARRAY_TASK_MIN", "2"));
        refused(None, &below, &["below SLURM_ARRAY_TASK_MIN=2"]);
        let mut bad_min = id_count("1", "4").to_vec();
        bad_min.push(("SLURM_ARRAY_TASK_MIN", "x"));
        refused(None, &bad_min, &["SLURM_ARRAY_TASK_MIN=\"x\""]);
        refused(
            Some(3),
            &id_count("1", "4"),
            &["--shard-count 3 disagrees with SLURM_ARRAY_TASK_COUNT=4"],
        );
    }

    #[test]
    fn auto_from_a_kubernetes_indexed_job() {
        let r = resolve(Some(4), &[("JOB_COMPLETION_INDEX", "3")]).unwrap();
        assert_eq!(r.shard, Shard { index: 3, count: 4 });
        assert_eq!(r.source, "JOB_COMPLETION_INDEX=3 (--shard-count 4)");
        refused(
            None,
            &[("JOB_COMPLETION_INDEX", "3")],
            &["JOB_COMPLETION_INDEX=3", "add --shard-count N"],
        );
        refused(
            Some(4),
            &[("JOB_COMPLETION_INDEX", "4")],
            &["JOB_COMPLETION_INDEX=4 is not below --shard-count 4"],
        );
        refused(
            Some(4),
            &[("JOB_COMPLETION_INDEX", "a")],
            &["JOB_COMPLETION_INDEX=\"a\"", "not a whole number"],
        );
        refused(
            Some(0),
            &[("JOB_COMPLETION_INDEX", "0")],
            &["--shard-count 0"],
        );
        refused(
            Some(4),
            &[],
            &["--shard-count 4", "JOB_COMPLETION_INDEX", "is not set"],
        );
    }

    #[test]
    fn auto_without_a_scheduler_says_what_to_set() {
        let err = resolve(None, &[("SLURM_JOB_ID", "7")]).unwrap_err();
        assert_eq!(err, NO_SCHEDULER);
        assert!(err.contains("give --shard I/N"));
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_in_order() {
        let items: Vec<usize> = (0..10).collect();
        let mut seen = Vec::new();
        for i in 0..3 {
            let s = Shard { index: i, count: 3 };
            let part = s.select(items.clone()).unwrap();
            assert_eq!(part.len(), s.len_of(10));
            assert!(part.iter().all(|k| k % 3 == i));
            seen.extend(part);
        }
        seen.sort();
        assert_eq!(seen, items);
        assert!(Shard { index: 3, count: 4 }.select(vec![1, 2, 3]).is_err());
    }
}
