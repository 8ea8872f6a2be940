//! Models and datasets from the Hugging Face Hub, through the shared cache and its offline rules.
//!
//! - `--model` takes a local folder (which always wins when it exists), a Hub id `ORG/NAME` or a
//!   bare `NAME` (`albert-base-v2`), optionally pinned as `ID@REVISION` or with `--revision`.
//!   Files: `config.json`; `tokenizer.json`, else `spiece.model` (converted in memory by
//!   [`spiece`], with `tokenizer_config.json` when present); weights in the loaders' order
//!   (`model.safetensors`, `pytorch_model.bin`, then the sharded `*.index.json` and their shards).
//! - `--data hub:ORG/NAME[/CONFIG][@REVISION]` takes a dataset repository's parquet files for the
//!   split. Without `/CONFIG`, a config named after `--level` (`high`, `middle`) is used when the
//!   repository has one, else `all`, else `default`, else the only one.
//! - A model or dataset split already complete in the cache is used without contacting the Hub;
//!   with `HF_HUB_OFFLINE=1` the cache is all there is. `race-eval download` always asks the Hub
//!   for the revision's current commit and fetches what the cache lacks.

pub mod cache;
pub mod client;
pub mod spiece;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use tokenizers::Tokenizer;

pub use cache::HubConfig;
use client::{Client, HubFailure, Listing};

use crate::data::parquet::is_split_file;
use crate::data::LevelFilter;
use crate::model::weights::WEIGHT_FILES;

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

/// Where a model's tokenizer comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerFile {
    Json(PathBuf),
    /// A SentencePiece model to convert, with `tokenizer_config.json` when there is one.
    Spiece {
        model: PathBuf,
        config: Option<PathBuf>,
    },
}

/// A model's files on disk, local or in the Hub cache.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub tokenizer: TokenizerFile,
    /// The repository and commit for a Hub model; `None` for a local folder.
    pub hub: Option<(RepoRef, String)>,
}

impl ModelFiles {
    /// A folder with `config.json` and a tokenizer (weights are checked by the loader).
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "--model {}: no such folder (expected config.json, tokenizer.json and weights in it)",
                dir.display()
            );
        }
        if !dir.join("config.json").is_file() {
            bail!(
                "--model {}: config.json is missing from the model folder",
                dir.display()
            );
        }
        let tokenizer = if dir.join("tokenizer.json").is_file() {
            TokenizerFile::Json(dir.join("tokenizer.json"))
        } else if dir.join("spiece.model").is_file() {
            let config = dir.join("tokenizer_config.json");
            TokenizerFile::Spiece {
                model: dir.join("spiece.model"),
                config: config.is_file().then_some(config),
            }
        } else {
            bail!(
                "--model {}: no tokenizer: expected tokenizer.json or a SentencePiece spiece.model",
                dir.display()
            );
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            tokenizer,
            hub: None,
        })
    }

    /// The tokenizer, converting `spiece.model` when there is no `tokenizer.json`.
    pub fn load_tokenizer(&self) -> Result<Tokenizer> {
        match &self.tokenizer {
            TokenizerFile::Json(path) => Tokenizer::from_file(path)
                .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display())),
            TokenizerFile::Spiece { model, config } => {
                let opts = match config {
                    Some(c) => spiece::SpieceOptions::from_tokenizer_config(c)?,
                    None => spiece::SpieceOptions::default(),
                };
                spiece::convert_file(model, opts)
            }
        }
    }
}

/// What a model needs, chosen from the files a repository (or snapshot) has.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    pub files: Vec<String>,
    /// A sharded checkpoint's index, whose shards are needed too.
    pub index: Option<String>,
}

pub fn plan_model(has: impl Fn(&str) -> bool, repo: &RepoRef) -> Result<ModelPlan> {
    if !has("config.json") {
        bail!(
            "{} has no config.json: is it a transformers model repository?",
            repo.describe()
        );
    }
    let mut files = vec!["config.json".to_string()];
    if has("tokenizer.json") {
        files.push("tokenizer.json".into());
    } else if has("spiece.model") {
        files.push("spiece.model".into());
        if has("tokenizer_config.json") {
            files.push("tokenizer_config.json".into());
        }
    } else {
        bail!(
            "{} has neither tokenizer.json nor spiece.model",
            repo.describe()
        );
    }
    let weights = WEIGHT_FILES.iter().find(|w| has(w)).ok_or_else(|| {
        anyhow!(
            "{} has no weights: expected one of {}",
            repo.describe(),
            WEIGHT_FILES.join(", ")
        )
    })?;
    files.push(weights.to_string());
    let index = weights
        .ends_with(".index.json")
        .then(|| weights.to_string());
    Ok(ModelPlan { files, index })
}

/// The shard file names of a sharded checkpoint's index, refusing any that would leave the
/// snapshot folder.
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    let names = crate::model::weights::shard_names(index)?;
    for n in &names {
        if !client::is_safe_path(n) {
            bail!("{} names shard {n:?} outside its folder", index.display());
        }
    }
    Ok(names)
}

/// The files of the plan missing from `snapshot` (shards included), empty when complete.
fn missing_in_snapshot(snapshot: &Path, repo: &RepoRef) -> Result<Vec<String>> {
    let plan = plan_model(|f| snapshot.join(f).is_file(), repo)?;
    if let Some(index) = &plan.index {
        let shards = shard_names(&snapshot.join(index))?;
        return Ok(shards
            .into_iter()
            .filter(|s| !snapshot.join(s).is_file())
            .collect());
    }
    Ok(Vec::new())
}

fn offline_miss(cfg: &HubConfig, repo: &RepoRef, what: &str) -> anyhow::Error {
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

/// The model for `--model`: a local folder, else a Hub model from the cache or downloaded.
pub fn resolve_model(spec: &Path, revision: Option<&str>, cfg: &HubConfig) -> Result<ModelFiles> {
    if spec.is_dir() {
        if let Some(r) = revision {
            bail!(
                "--revision {r} applies to Hub models, but --model {} is a local folder",
                spec.display()
            );
        }
        return ModelFiles::in_dir(spec);
    }
    let text = spec.to_str().unwrap_or_default();
    let looks_local = spec.is_absolute()
        || text.starts_with('.')
        || text.matches('/').count() > 1
        || spec.exists();
    if looks_local || !is_repo_id(text.rsplit_once('@').map_or(text, |(id, _)| id)) {
        return ModelFiles::in_dir(spec);
    }
    let repo = parse_model_spec(text, revision)?;
    fetch_model(&repo, cfg, false)
}

/// A Hub model: complete in the cache, or fetched (always asking the Hub when `refresh`).
pub fn fetch_model(repo: &RepoRef, cfg: &HubConfig, refresh: bool) -> Result<ModelFiles> {
    if !refresh || cfg.offline {
        if let Some(snap) = cfg.snapshot_dir(repo.kind, &repo.id, &repo.revision) {
            match missing_in_snapshot(&snap, repo) {
                Ok(missing) if missing.is_empty() => return from_snapshot(&snap, repo),
                Ok(missing) if cfg.offline => {
                    return Err(offline_miss(cfg, repo, &missing.join(", ")))
                }
                Err(e) if cfg.offline => {
                    return Err(offline_miss(cfg, repo, "a needed file").context(format!("{e:#}")))
                }
                _ => {}
            }
        } else if cfg.offline {
            return Err(offline_miss(cfg, repo, "config.json"));
        }
    }
    if cfg.offline {
        bail!(
            "HF_HUB_OFFLINE is set: `race-eval download` needs the Hub; unset it on a machine with network"
        );
    }
    let client = Client::new(cfg)?;
    let listing = client.listing(repo)?;
    let plan = plan_model(|f| listing.get(f).is_some(), repo)?;
    let mut last = None;
    for f in &plan.files {
        last = Some(fetch_listed(&client, repo, &listing, f)?);
    }
    if let Some(index) = &plan.index {
        let index_path = last
            .as_ref()
            .filter(|p| p.ends_with(index))
            .ok_or_else(|| anyhow!("internal: {index} was not fetched"))?;
        for shard in shard_names(index_path)? {
            fetch_listed(&client, repo, &listing, &shard)?;
        }
    }
    let snap = cfg
        .repo_dir(repo.kind, &repo.id)
        .join("snapshots")
        .join(&listing.commit);
    from_snapshot(&snap, repo)
}

fn from_snapshot(snap: &Path, repo: &RepoRef) -> Result<ModelFiles> {
    let mut files = ModelFiles::in_dir(snap)?;
    let commit = snap
        .file_name()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    files.hub = Some((repo.clone(), commit));
    Ok(files)
}

fn fetch_listed(client: &Client, repo: &RepoRef, listing: &Listing, path: &str) -> Result<PathBuf> {
    let file = listing.get(path).cloned().unwrap_or(client::RemoteFile {
        path: path.to_string(),
        size: None,
    });
    client
        .fetch(repo, &listing.commit, &file)
        .map_err(HubFailure::into_error)
}

/// The config a level prefers (`all`, `middle`, `high`), as in `ehovy/race`.
fn level_config(level: LevelFilter) -> &'static str {
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
    repo: &RepoRef,
) -> Result<(String, Vec<String>)> {
    let parquet: Vec<&String> = files.iter().filter(|f| f.ends_with(".parquet")).collect();
    if parquet.is_empty() {
        bail!(
            "{} has no parquet files: only datasets stored (or converted) as parquet can be read",
            repo.describe()
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
            repo.describe(),
            configs.join(", ")
        ),
        None => [level_name, "all", "default", "data"]
            .iter()
            .find(|c| configs.iter().any(|x| x == *c))
            .map(|c| c.to_string())
            .or_else(|| (configs.len() == 1).then(|| configs[0].clone()))
            .ok_or_else(|| {
                anyhow!(
                    "{} has several configs ({}): pick one as hub:{}/CONFIG",
                    repo.describe(),
                    configs.join(", "),
                    repo.id
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
            repo.describe(),
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
fn missing_shards(picked: &[String]) -> Option<usize> {
    let total = picked.iter().find_map(|f| {
        let stem = f.trim_end_matches(".parquet");
        let (_, n) = stem.rsplit_once("-of-")?;
        n.parse::<usize>().ok()
    })?;
    (picked.len() < total).then(|| total - picked.len())
}

/// The local path for `--data`: unchanged unless it is `hub:…`, then the folder of the chosen
/// config in the cache, holding the split's parquet files (fetched when needed).
pub fn resolve_data(
    spec: &Path,
    split: &str,
    level: LevelFilter,
    cfg: &HubConfig,
) -> Result<PathBuf> {
    let Some(text) = spec.to_str().filter(|t| t.starts_with(DATASET_PREFIX)) else {
        return Ok(spec.to_path_buf());
    };
    let ds = parse_dataset_spec(text, None)?;
    let repo = &ds.repo;
    if let Some(snap) = cfg.snapshot_dir(repo.kind, &repo.id, &repo.revision) {
        let have = cache::list_files(&snap);
        match select_parquet(&have, ds.config.as_deref(), level, split, repo) {
            // Online, a cached `all` does not stand in for a `high` config the Hub may have;
            // offline it does (the level filter still applies to its rows).
            Ok((config, picked))
                if missing_shards(&picked).is_none()
                    && (cfg.offline
                        || ds.config.is_some()
                        || level == LevelFilter::All
                        || config == level_config(level)) =>
            {
                return Ok(snap.join(config));
            }
            Ok((_, picked)) if cfg.offline => {
                return Err(offline_miss(
                    cfg,
                    repo,
                    &format!(
                        "{} more shard(s) of split `{split}`",
                        missing_shards(&picked).unwrap_or(0)
                    ),
                ))
            }
            Err(e) if cfg.offline => {
                return Err(
                    offline_miss(cfg, repo, &format!("split `{split}`")).context(format!("{e:#}"))
                )
            }
            _ => {}
        }
    } else if cfg.offline {
        return Err(offline_miss(cfg, repo, &format!("split `{split}`")));
    }
    let client = Client::new(cfg)?;
    let listing = client.listing(repo)?;
    let names: Vec<String> = listing.files.iter().map(|f| f.path.clone()).collect();
    let (config, picked) = select_parquet(&names, ds.config.as_deref(), level, split, repo)?;
    for f in &picked {
        fetch_listed(&client, repo, &listing, f)?;
    }
    Ok(cfg
        .repo_dir(repo.kind, &repo.id)
        .join("snapshots")
        .join(&listing.commit)
        .join(config))
}

/// What `race-eval download` fetched.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub repo: RepoRef,
    pub commit: String,
    pub snapshot: PathBuf,
    pub files: Vec<String>,
}

/// Fetches a model (`ID[@REV]`) or dataset (`hub:ID[/CONFIG][@REV]`) into the cache, asking the
/// Hub for the revision's current commit.
pub fn download(spec: &str, revision: Option<&str>, cfg: &HubConfig) -> Result<Downloaded> {
    if cfg.offline {
        bail!("HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it on a machine with network");
    }
    if spec.starts_with(DATASET_PREFIX) {
        let ds = parse_dataset_spec(spec, revision)?;
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
            fetch_listed(&client, &ds.repo, &listing, f)?;
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
    let repo = parse_model_spec(spec, revision)?;
    let model = fetch_model(&repo, cfg, true)?;
    let (repo, commit) = model.hub.clone().expect("fetched from the Hub");
    let files = cache::list_files(&model.dir);
    Ok(Downloaded {
        repo,
        commit,
        snapshot: model.dir,
        files,
    })
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

    #[test]
    fn model_plan_prefers_safetensors_then_bin_then_index() {
        let r = parse_model_spec("o/m", None).unwrap();
        let plan = |files: &[&str]| plan_model(|f| files.contains(&f), &r);
        let p = plan(&[
            "config.json",
            "tokenizer.json",
            "pytorch_model.bin",
            "model.safetensors",
        ])
        .unwrap();
        assert_eq!(
            p.files,
            ["config.json", "tokenizer.json", "model.safetensors"]
        );
        let p = plan(&[
            "config.json",
            "spiece.model",
            "pytorch_model.bin",
            "tokenizer_config.json",
        ])
        .unwrap();
        assert_eq!(
            p.files,
            [
                "config.json",
                "spiece.model",
                "tokenizer_config.json",
                "pytorch_model.bin"
            ]
        );
        let p = plan(&[
            "config.json",
            "tokenizer.json",
            "model.safetensors.index.json",
        ])
        .unwrap();
        assert_eq!(p.index.as_deref(), Some("model.safetensors.index.json"));
        let e = plan(&["config.json", "tokenizer.json"]).unwrap_err();
        assert!(e.to_string().contains("no weights"), "{e}");
        let e = plan(&["config.json", "model.safetensors"]).unwrap_err();
        assert!(e.to_string().contains("spiece.model"), "{e}");
    }

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
        let sel = |c: Option<&str>, l, s: &str| select_parquet(&files, c, l, s, &repo());
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
            select_parquet(&flat, None, LevelFilter::All, "test", &repo()).unwrap(),
            (String::new(), names(&["test.parquet"]))
        );
        let converted = names(&["default/test/0000.parquet", "default/train/0000.parquet"]);
        assert_eq!(
            select_parquet(&converted, None, LevelFilter::All, "test", &repo()).unwrap(),
            ("default".to_string(), names(&["default/test/0000.parquet"]))
        );
        let e = select_parquet(&names(&["a.json"]), None, LevelFilter::All, "test", &repo());
        assert!(e.unwrap_err().to_string().contains("no parquet"));
    }

    #[test]
    fn local_folder_wins_and_missing_paths_are_not_hub_ids() {
        let cfg = HubConfig::from_vars(|_| None);
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/models/tiny-albert");
        let m = resolve_model(&dir, None, &cfg).unwrap();
        assert_eq!(m.dir, dir);
        assert!(m.hub.is_none());
        assert!(matches!(m.tokenizer, TokenizerFile::Json(_)));
        let e = resolve_model(Path::new("datasets/models/nope"), None, &cfg).unwrap_err();
        assert!(e.to_string().contains("no such folder"), "{e}");
        assert!(resolve_model(&dir, Some("main"), &cfg).is_err());
    }
}
