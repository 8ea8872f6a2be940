//! How a Hub dataset repository lays out RACE-style data as parquet: configs (`all`, `middle`,
//! `high`, `default`, …) as top folders, and split files within them. Which config and files
//! hold a split is a data question; fetching them is the `hub` module's.

use anyhow::{anyhow, bail, Result};

use super::parquet::is_split_file;
use super::LevelFilter;

/// The config a level prefers (`all`, `middle`, `high`), as in `ehovy/race`.
pub fn level_config(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::All => "all",
        LevelFilter::Middle => "middle",
        LevelFilter::High => "high",
    }
}

/// The config whose files to use, and those files (repository paths) for the split.
pub fn select_parquet(
    files: &[String],
    config: Option<&str>,
    level: LevelFilter,
    split: &str,
    repo: &str,
) -> Result<(String, Vec<String>)> {
    let parquet: Vec<&String> = files.iter().filter(|f| f.ends_with(".parquet")).collect();
    if parquet.is_empty() {
        bail!(
            "{} has no parquet files: only datasets stored (or converted) as parquet can be read",
            repo
        );
    }
    // The config is the first folder of a path; files at the top belong to config "".
    let config_of = |f: &str| -> String {
        f.split_once('/')
            .map_or(String::new(), |(c, _)| c.to_string())
    };
    let mut configs: Vec<String> = parquet.iter().map(|f| config_of(f)).collect();
    configs.sort();
    configs.dedup();
    let level_name = level_config(level);
    let chosen = match config {
        Some(c) if configs.iter().any(|x| x == c) => c.to_string(),
        Some(c) => bail!(
            "{} has no config `{c}`; it has: {}",
            repo,
            configs.join(", ")
        ),
        None => [level_name, "all", "default", "data"]
            .iter()
            .find(|c| configs.iter().any(|x| x == *c))
            .map(|c| c.to_string())
            .or_else(|| (configs.len() == 1).then(|| configs[0].clone()))
            .ok_or_else(|| {
                anyhow!(
                    "{repo} has several configs ({}): pick one as hub:ORG/NAME/CONFIG",
                    configs.join(", "),
                )
            })?,
    };
    let prefix = if chosen.is_empty() {
        String::new()
    } else {
        format!("{chosen}/")
    };
    let in_config: Vec<&str> = parquet
        .iter()
        .filter(|f| config_of(f) == chosen)
        .map(|f| &f[prefix.len()..])
        .collect();
    let picked: Vec<String> = in_config
        .iter()
        .filter(|rel| is_split_file(rel, split))
        .map(|rel| format!("{prefix}{rel}"))
        .collect();
    if picked.is_empty() {
        let mut splits: Vec<String> = in_config
            .iter()
            .map(|rel| {
                let name = rel.rsplit('/').next().unwrap_or(rel);
                match rel.split_once('/') {
                    Some((dir, _)) => dir.to_string(),
                    None => name
                        .trim_end_matches(".parquet")
                        .split('-')
                        .next()
                        .unwrap_or(name)
                        .to_string(),
                }
            })
            .collect();
        splits.sort();
        splits.dedup();
        bail!(
            "{} (config `{}`) has no split `{split}`; it has: {}",
            repo,
            if chosen.is_empty() {
                "default"
            } else {
                &chosen
            },
            splits.join(", ")
        );
    }
    Ok((chosen, picked))
}

/// For sharded names `NAME-00001-of-00003.parquet`, the shards missing from `have`.
pub fn missing_shards(picked: &[String]) -> Option<usize> {
    let total = picked.iter().find_map(|f| {
        let stem = f.trim_end_matches(".parquet");
        let (_, n) = stem.rsplit_once("-of-")?;
        n.parse::<usize>().ok()
    })?;
    (picked.len() < total).then(|| total - picked.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "dataset ehovy/race@main";

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parquet_selection_by_config_level_and_split() {
        let files = names(&[
            "README.md",
            "all/test-00000-of-00001.parquet",
            "all/train-00000-of-00002.parquet",
            "all/train-00001-of-00002.parquet",
            "all/validation-00000-of-00001.parquet",
            "high/test-00000-of-00001.parquet",
            "middle/test-00000-of-00001.parquet",
        ]);
        let sel = |c: Option<&str>, l, s: &str| select_parquet(&files, c, l, s, REPO);
        assert_eq!(
            sel(None, LevelFilter::All, "test").unwrap(),
            (
                "all".to_string(),
                names(&["all/test-00000-of-00001.parquet"])
            )
        );
        assert_eq!(sel(None, LevelFilter::High, "test").unwrap().0, "high");
        assert_eq!(
            sel(Some("middle"), LevelFilter::All, "test").unwrap().0,
            "middle"
        );
        assert_eq!(sel(None, LevelFilter::All, "train").unwrap().1.len(), 2);
        assert_eq!(
            sel(None, LevelFilter::All, "dev").unwrap().1,
            names(&["all/validation-00000-of-00001.parquet"])
        );
        let e = sel(Some("nope"), LevelFilter::All, "test").unwrap_err();
        assert!(e.to_string().contains("all, high, middle"), "{e}");
        let e = sel(Some("high"), LevelFilter::All, "train").unwrap_err();
        assert!(e.to_string().contains("no split `train`"), "{e}");
        assert_eq!(
            missing_shards(&names(&["all/train-00000-of-00002.parquet"])),
            Some(1)
        );
        assert_eq!(
            missing_shards(&sel(None, LevelFilter::All, "train").unwrap().1),
            None
        );
    }

    #[test]
    fn parquet_selection_of_flat_and_converted_layouts() {
        let flat = names(&["test.parquet", "train-0.parquet"]);
        assert_eq!(
            select_parquet(&flat, None, LevelFilter::All, "test", REPO).unwrap(),
            (String::new(), names(&["test.parquet"]))
        );
        let converted = names(&["default/test/0000.parquet", "default/train/0000.parquet"]);
        assert_eq!(
            select_parquet(&converted, None, LevelFilter::All, "test", REPO).unwrap(),
            ("default".to_string(), names(&["default/test/0000.parquet"]))
        );
        let e = select_parquet(&names(&["a.json"]), None, LevelFilter::All, "test", REPO);
        assert!(e.unwrap_err().to_string().contains("no parquet"));
    }
}
