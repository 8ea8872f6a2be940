//! `--shard i/n`: a deterministic 1/n of the questions, by position in the loaded data
//! (question k goes to shard k mod n), so shards are stable across runs and machines and
//! interleave back into input order.

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

#[cfg(test)]
mod tests {
    use super::*;

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
