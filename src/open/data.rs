//! Opening a data set as every command names it (`--data`): RACE's tree, a JSON-lines file or a
//! folder of `SPLIT.jsonl`, a parquet file or a folder of `SPLIT[-*].parquet`, or a Hub dataset
//! `hub:ORG/NAME[/CONFIG][@REVISION]` whose parquet files for the split are fetched into the
//! cache (`dev` is also `validation`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::data::hub_layout::{level_config, missing_shards, select_parquet};
use crate::data::{normalize_split, Dataset, LevelFilter, LoadOptions, Task};
use crate::hub::cache;
use crate::hub::client::Client;
use crate::hub::{self, HubConfig, RepoRef, DATASET_PREFIX};

/// A data set split, opened: where its files are on disk.
#[derive(Debug, Clone)]
pub struct OpenedData {
    /// `--data` as the user wrote it.
    pub spec: String,
    pub split: String,
    /// The local path the loaders read (for a Hub dataset: the config's folder in the cache).
    pub path: PathBuf,
    /// The repository and commit of a Hub dataset.
    pub hub: Option<(RepoRef, String)>,
    /// How the files are read (RACE unless [`OpenedData::with_task`] says otherwise).
    pub task: Task,
}

impl OpenedData {
    /// The same files read as `task`'s.
    pub fn with_task(mut self, task: Task) -> Self {
        self.task = task;
        self
    }

    /// Reads and validates the split (bad input names file, line or passage, and field).
    pub fn load(&self, level: LevelFilter, skip_invalid: bool) -> Result<Dataset> {
        if self.task != Task::Race && level != LevelFilter::All {
            anyhow::bail!(
                "--level {level:?} applies to RACE's middle and high school levels; task `{}` has none: drop --level",
                self.task.name()
            );
        }
        let opts = LoadOptions {
            split: self.split.clone(),
            level,
            skip_invalid,
        };
        self.task
            .load(&self.path, &opts)
            .with_context(|| format!("--data {} (split `{}`)", self.spec, self.split))
    }

    /// The split a run evaluated: a JSON-lines or parquet file given directly is named by its
    /// file (a `dev.jsonl` is dev whatever the requested split says); otherwise the split.
    pub fn split_name(&self) -> String {
        if self.hub.is_none() && self.path.is_file() {
            if let Some(stem) = self.path.file_stem().and_then(|s| s.to_str()) {
                if ["train", "dev", "validation", "test"].contains(&stem) {
                    return normalize_split(stem);
                }
            }
        }
        normalize_split(&self.split)
    }
}

/// Opens `--data SPEC` for `split`; `level` picks a Hub dataset's config when none is named.
pub fn open_data(
    spec: &Path,
    split: &str,
    level: LevelFilter,
    cfg: &HubConfig,
) -> Result<OpenedData> {
    let text = spec.to_string_lossy().into_owned();
    let Some(_) = text.strip_prefix(DATASET_PREFIX) else {
        if !spec.exists() {
            anyhow::bail!(
                "--data {}: no such file or folder (a Hub dataset is written hub:ORG/NAME)",
                spec.display()
            );
        }
        return Ok(OpenedData {
            spec: text,
            split: split.to_string(),
            path: spec.to_path_buf(),
            hub: None,
            task: Task::Race,
        });
    };
    let ds = hub::parse_dataset_spec(&text, None)?;
    let repo = &ds.repo;
    let what = repo.describe();
    let opened = |snap: PathBuf, config: String| {
        let commit = snap
            .file_name()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        OpenedData {
            spec: text.clone(),
            split: split.to_string(),
            path: snap.join(config),
            hub: Some((repo.clone(), commit)),
            task: Task::Race,
        }
    };
    if let Some(snap) = cfg.snapshot_dir(repo.kind, &repo.id, &repo.revision) {
        let have = cache::list_files(&snap);
        match select_parquet(&have, ds.config.as_deref(), level, split, &what) {
            // Online, a cached `all` does not stand in for a `high` config the Hub may have;
            // offline it does (the level filter still applies to its rows).
            Ok((config, picked))
                if missing_shards(&picked).is_none()
                    && (cfg.offline
                        || ds.config.is_some()
                        || level == LevelFilter::All
                        || config == level_config(level))
                    && hub::verify_snapshot(cfg, repo, &snap, &picked)? =>
            {
                return Ok(opened(snap, config));
            }
            Ok((_, picked)) if cfg.offline => {
                return Err(hub::offline_miss(
                    cfg,
                    repo,
                    &format!(
                        "{} more shard(s) of split `{split}`",
                        missing_shards(&picked).unwrap_or(0)
                    ),
                ))
            }
            Err(e) if cfg.offline => {
                return Err(hub::offline_miss(cfg, repo, &format!("split `{split}`"))
                    .context(format!("{e:#}")))
            }
            _ => {}
        }
    } else if cfg.offline {
        return Err(hub::offline_miss(cfg, repo, &format!("split `{split}`")));
    }
    let client = Client::new(cfg)?;
    let listing = client.listing(repo)?;
    let names: Vec<String> = listing.files.iter().map(|f| f.path.clone()).collect();
    let (config, picked) = select_parquet(&names, ds.config.as_deref(), level, split, &what)?;
    for f in &picked {
        hub::fetch_listed(&client, repo, &listing, f)?;
    }
    let snap = cfg
        .repo_dir(repo.kind, &repo.id)
        .join("snapshots")
        .join(&listing.commit);
    Ok(opened(snap, config))
}
