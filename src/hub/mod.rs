//! The Hugging Face Hub: repository ids and revisions, the shared cache and its offline rules,
//! and fetching files (verified, resumable). Generic: which files a model or a RACE dataset
//! needs is decided above, in the `open` module (with `data::hub_layout` for datasets).
//!
//! - Model ids are `ORG/NAME` or a bare `NAME` (`albert-base-v2`), optionally pinned as
//!   `ID@REVISION` or with `--revision`; datasets are `hub:ORG/NAME[/CONFIG][@REVISION]`.
//! - A file already complete in the cache is used without contacting the Hub; with
//!   `HF_HUB_OFFLINE=1` the cache is all there is, and a miss names what is missing.

pub mod cache;
pub mod client;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

pub use cache::HubConfig;
use client::{Client, HubFailure, Listing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    pub fn plural(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }
}

/// A repository at a revision (branch, tag or commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub kind: RepoKind,
    pub id: String,
    pub revision: String,
}

impl RepoRef {
    /// `model ORG/NAME@REVISION`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}@{}", self.kind.singular(), self.id, self.revision)
    }
}

/// `NAME` or `ORG/NAME`, each part of letters, digits, `-`, `_` and `.`.
pub fn is_repo_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    !s.is_empty()
        && s.len() <= 96
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && !p.contains("..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

fn split_revision<'a>(
    spec: &'a str,
    flag: Option<&'a str>,
    what: &str,
) -> Result<(&'a str, &'a str)> {
    let (id, at) = match spec.rsplit_once('@') {
        Some((id, rev)) if !rev.is_empty() => (id, Some(rev)),
        Some(_) => {
            bail!("{what} {spec:?}: nothing after `@`; write ID@REVISION (a branch, tag or commit)")
        }
        None => (spec, None),
    };
    let revision = match (at, flag) {
        (Some(a), Some(f)) if a != f => {
            bail!("{what} {spec:?} pins revision `{a}` but --revision says `{f}`: give one")
        }
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => "main",
    };
    Ok((id, revision))
}

/// A model id from `--model` (and `--revision`).
pub fn parse_model_spec(spec: &str, revision: Option<&str>) -> Result<RepoRef> {
    let (id, revision) = split_revision(spec, revision, "--model")?;
    if !is_repo_id(id) {
        bail!("--model {spec:?} is neither an existing folder nor a Hub model id (ORG/NAME or NAME, optionally @REVISION)");
    }
    Ok(RepoRef {
        kind: RepoKind::Model,
        id: id.to_string(),
        revision: revision.to_string(),
    })
}

/// One file of a Hub model repository, `ORG/NAME/PATH[@REVISION]` (e.g. a GGUF file of a
/// repository that holds several quantisations): the repository and the file's path in it.
pub fn parse_model_file_spec(spec: &str, revision: Option<&str>) -> Result<(RepoRef, String)> {
    let (path, revision) = split_revision(spec, revision, "--model")?;
    let mut parts = path.splitn(3, '/');
    let (org, name, file) = match (parts.next(), parts.next(), parts.next()) {
        (Some(o), Some(n), Some(f)) => (o, n, f),
        _ => bail!("--model {spec:?} is not a file of a Hub repository: write ORG/NAME/FILE, optionally @REVISION"),
    };
    let id = format!("{org}/{name}");
    if !is_repo_id(&id) || !client::is_safe_path(file) {
        bail!("--model {spec:?} is not a file of a Hub repository: write ORG/NAME/FILE, optionally @REVISION");
    }
    Ok((
        RepoRef {
            kind: RepoKind::Model,
            id,
            revision: revision.to_string(),
        },
        file.to_string(),
    ))
}

/// One file of `repo`, and the commit it is at: from the cache when the revision's snapshot
/// holds it undamaged, else fetched (never asking the Hub under `HF_HUB_OFFLINE`).
pub fn fetch_file(repo: &RepoRef, file: &str, cfg: &HubConfig) -> Result<(PathBuf, String)> {
    if let Some(snap) = cfg.snapshot_dir(repo.kind, &repo.id, &repo.revision) {
        let cached = snap.join(file);
        if cached.is_file() && verify_snapshot(cfg, repo, &snap, &[file.to_string()])? {
            let commit = snap
                .file_name()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok((cached, commit));
        }
    }
    if cfg.offline {
        return Err(offline_miss(cfg, repo, file));
    }
    let client = Client::new(cfg)?;
    let listing = client.listing(repo)?;
    if listing.get(file).is_none() {
        bail!(
            "{} has no file {file:?} (it has {})",
            repo.describe(),
            listing
                .files
                .iter()
                .map(|f| f.path.as_str())
                .filter(|p| p.ends_with(".gguf") || !p.contains('/'))
                .take(12)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let path = fetch_listed(&client, repo, &listing, file)?;
    Ok((path, listing.commit))
}

/// `hub:ORG/NAME[/CONFIG][@REVISION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub repo: RepoRef,
    pub config: Option<String>,
}

pub const DATASET_PREFIX: &str = "hub:";

pub fn parse_dataset_spec(spec: &str, revision: Option<&str>) -> Result<DatasetSpec> {
    let rest = spec
        .strip_prefix(DATASET_PREFIX)
        .ok_or_else(|| anyhow!("{spec:?} is not a Hub dataset: write hub:ORG/NAME"))?;
    let (path, revision) = split_revision(rest, revision, "--data")?;
    let parts: Vec<&str> = path.split('/').collect();
    let (id, config) = match parts.as_slice() {
        [org, name, config] => (format!("{org}/{name}"), Some(config.to_string())),
        _ => (path.to_string(), None),
    };
    if !is_repo_id(&id) || config.as_deref().is_some_and(|c| !is_repo_id(c)) {
        bail!("--data {spec:?} is not a Hub dataset: write hub:ORG/NAME, hub:ORG/NAME/CONFIG, optionally @REVISION");
    }
    Ok(DatasetSpec {
        repo: RepoRef {
            kind: RepoKind::Dataset,
            id,
            revision: revision.to_string(),
        },
        config,
    })
}

/// Checks a cached snapshot file against the ETag its blob is named by (sha256 for LFS files,
/// git's blob sha1 for others): `None` when it matches, else what is wrong.
pub fn check_cached(path: &std::path::Path) -> Result<Option<String>> {
    let blob = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    client::check_content(&blob, None, &etag)
}

/// Removes a damaged cached file: the snapshot's link and the blob it points to.
pub fn remove_cached(path: &std::path::Path) {
    if let Ok(blob) = std::fs::canonicalize(path) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(path);
}

/// Checks `files` (paths relative to `snapshot`) as [`check_cached`] does. Online, damaged
/// files are removed (so they are fetched again) and `Ok` returned; offline, the first one is
/// an error that names it and says how to get a good copy.
pub fn verify_snapshot(
    cfg: &HubConfig,
    repo: &RepoRef,
    snapshot: &std::path::Path,
    files: &[String],
) -> Result<bool> {
    let mut all_good = true;
    for f in files {
        let path = snapshot.join(f);
        if !path.is_file() {
            continue;
        }
        if let Some(problem) = check_cached(&path)? {
            if cfg.offline {
                bail!(
                    "the cached {f} of {} in {} is damaged ({problem}): it was changed after download. Unset HF_HUB_OFFLINE and run `race-eval download {}{}@{}` to fetch a good copy",
                    repo.describe(),
                    snapshot.display(),
                    if repo.kind == RepoKind::Dataset { DATASET_PREFIX } else { "" },
                    repo.id,
                    repo.revision
                );
            }
            remove_cached(&path);
            all_good = false;
        }
    }
    Ok(all_good)
}

pub fn offline_miss(cfg: &HubConfig, repo: &RepoRef, what: &str) -> anyhow::Error {
    anyhow!(
        "HF_HUB_OFFLINE is set and {what} of {} {} at revision `{}` is not in the cache {}: fetch it on a machine with network (`race-eval download {}{}`) or unset HF_HUB_OFFLINE",
        repo.kind.singular(),
        repo.id,
        repo.revision,
        cfg.cache_dir.display(),
        if repo.kind == RepoKind::Dataset { DATASET_PREFIX } else { "" },
        if repo.revision == "main" { repo.id.clone() } else { format!("{}@{}", repo.id, repo.revision) },
    )
}

pub fn fetch_listed(
    client: &Client,
    repo: &RepoRef,
    listing: &Listing,
    path: &str,
) -> Result<PathBuf> {
    let file = listing.get(path).cloned().unwrap_or(client::RemoteFile {
        path: path.to_string(),
        size: None,
    });
    client
        .fetch(repo, &listing.commit, &file)
        .map_err(HubFailure::into_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoRef {
        RepoRef {
            kind: RepoKind::Dataset,
            id: "ehovy/race".into(),
            revision: "main".into(),
        }
    }

    #[test]
    fn model_specs() {
        let r = parse_model_spec("albert-base-v2", None).unwrap();
        assert_eq!(
            (r.id.as_str(), r.revision.as_str()),
            ("albert-base-v2", "main")
        );
        let r = parse_model_spec("org/name@v1.0", None).unwrap();
        assert_eq!((r.id.as_str(), r.revision.as_str()), ("org/name", "v1.0"));
        let r = parse_model_spec("org/name", Some("abc")).unwrap();
        assert_eq!(r.revision, "abc");
        assert!(parse_model_spec("org/name@a", Some("b")).is_err());
        assert!(parse_model_spec("org/name@", None).is_err());
        assert!(parse_model_spec("a/b/c", None).is_err());
        assert!(parse_model_spec("../x", None).is_err());
    }

    #[test]
    fn dataset_specs() {
        let d = parse_dataset_spec("hub:ehovy/race", None).unwrap();
        assert_eq!(d.repo, repo());
        assert_eq!(d.config, None);
        let d = parse_dataset_spec("hub:ehovy/race/high@refs%2Fconvert", None).unwrap();
        assert_eq!(d.config.as_deref(), Some("high"));
        assert_eq!(d.repo.revision, "refs%2Fconvert");
        assert!(parse_dataset_spec("ehovy/race", None).is_err());
        assert!(parse_dataset_spec("hub:a/b/c/d", None).is_err());
    }
}
