//! `race-eval download`: a model or dataset fetched into the cache ahead of time (for compute
//! nodes without network), the same files [`super::open_model`] and [`super::open_data`] use.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::model::fetch_model;
use crate::hub::cache;
use crate::hub::client::Client;
use crate::hub::{self, HubConfig, RepoKind, RepoRef, DATASET_PREFIX};

/// What `race-eval download` fetched.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub repo: RepoRef,
    pub commit: String,
    pub snapshot: PathBuf,
    pub files: Vec<String>,
}

/// Fetches a model (`ID[@REV]`), one file of a model repository (`ORG/NAME/FILE[@REV]`, e.g.
/// a GGUF file), or a dataset (`hub:ID[/CONFIG][@REV]`) into the cache, asking the
/// Hub for the revision's current commit.
pub fn download(spec: &str, revision: Option<&str>, cfg: &HubConfig) -> Result<Downloaded> {
    if cfg.offline {
        bail!("HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it on a machine with network");
    }
    if spec.starts_with(DATASET_PREFIX) {
        let ds = hub::parse_dataset_spec(spec, revision)?;
        let client = Client::new(cfg)?;
        let listing = client.listing(&ds.repo)?;
        let files: Vec<String> = listing
            .files
            .iter()
            .map(|f| f.path.clone())
            .filter(|f| f.ends_with(".parquet"))
            .filter(|f| match &ds.config {
                Some(c) => f.starts_with(&format!("{c}/")),
                None => true,
            })
            .collect();
        if files.is_empty() {
            bail!(
                "{} has no parquet files{}",
                ds.repo.describe(),
                ds.config
                    .as_ref()
                    .map(|c| format!(" in config `{c}`"))
                    .unwrap_or_default()
            );
        }
        for f in &files {
            hub::fetch_listed(&client, &ds.repo, &listing, f)?;
        }
        return Ok(Downloaded {
            snapshot: cfg
                .repo_dir(RepoKind::Dataset, &ds.repo.id)
                .join("snapshots")
                .join(&listing.commit),
            repo: ds.repo,
            commit: listing.commit,
            files,
        });
    }
    let id = spec.rsplit_once('@').map_or(spec, |(id, _)| id);
    if id.matches('/').count() >= 2 {
        // One file of a model repository (a GGUF file of a decoder LM).
        let (repo, file) = hub::parse_model_file_spec(spec, revision)?;
        let client = Client::new(cfg)?;
        let listing = client.listing(&repo)?;
        if listing.get(&file).is_none() {
            bail!("{} has no file {file:?}", repo.describe());
        }
        hub::fetch_listed(&client, &repo, &listing, &file)?;
        return Ok(Downloaded {
            snapshot: cfg
                .repo_dir(RepoKind::Model, &repo.id)
                .join("snapshots")
                .join(&listing.commit),
            repo,
            commit: listing.commit,
            files: vec![file],
        });
    }
    let repo = hub::parse_model_spec(spec, revision)?;
    let (snapshot, commit) = fetch_model(&repo, cfg, true)?;
    let files = cache::list_files(&snapshot);
    Ok(Downloaded {
        repo,
        commit,
        snapshot,
        files,
    })
}
