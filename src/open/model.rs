//! Opening a model as every command names it (`--model`, `--student`, `--teacher`, `bench
//! --model`, `info`, `download`): a local folder (which always wins when it exists), a Hub id
//! `ORG/NAME` or `NAME` pinned as `ID@REVISION` or with `--revision`, a folder with only a
//! SentencePiece `spiece.model`, a head folder written by `train --head-only` (its base model
//! opened from its meta.json, the head over it), or a fully fine-tuned folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use tokenizers::Tokenizer;

use crate::features::TokenizerFile;
use crate::heads::{self, HeadMeta};
use crate::hub::client::Client;
use crate::hub::{self, HubConfig, RepoKind, RepoRef};
use crate::model::weights::{self, WEIGHT_FILES};
use crate::model::ModelConfig;

/// A model, opened: its files, configuration and tokenizer, and the hash of its weights
/// (computed once, on first use).
#[derive(Debug)]
pub struct OpenedModel {
    /// The model as the user wrote it.
    pub spec: String,
    /// The folder with config.json, the tokenizer and the weights (for a head folder: its
    /// base model's).
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub tokenizer: TokenizerFile,
    pub weight_files: Vec<PathBuf>,
    /// The repository and commit of a Hub model; `None` for a local folder.
    pub hub: Option<(RepoRef, String)>,
    /// A head folder given as the model: its head goes over `dir`'s weights.
    pub head: Option<PathBuf>,
    /// The meta.json of a folder written by `race-eval train` (full fine-tune or head).
    pub trained: Option<HeadMeta>,
    hash: OnceLock<String>,
}

impl OpenedModel {
    /// SHA-256 of the weight files, computed on first use and kept.
    pub fn weights_hash(&self) -> Result<&str> {
        if let Some(h) = self.hash.get() {
            return Ok(h);
        }
        let h = crate::hash::sha256_files(&self.weight_files)?;
        Ok(self.hash.get_or_init(|| h))
    }

    /// A name that reopens exactly this model: `ORG/NAME@COMMIT` for a Hub model, else the
    /// folder as given.
    pub fn pinned(&self) -> String {
        match &self.hub {
            Some((repo, commit)) => format!("{}@{commit}", repo.id),
            None => self.dir.display().to_string(),
        }
    }

    /// The tokenizer, checked against the model: every id it can produce must have a row in
    /// the embedding table (`vocab_size`), or the model would fail (or read garbage) on it.
    pub fn load_tokenizer(&self) -> Result<Tokenizer> {
        let tokenizer = self
            .tokenizer
            .load()
            .with_context(|| format!("--model {}: cannot load its tokenizer", self.spec))?;
        let vocab = tokenizer.get_vocab(true);
        if let Some((token, &id)) = vocab.iter().max_by_key(|(_, &id)| id) {
            if id as usize >= self.config.vocab_size {
                bail!(
                    "--model {}: the tokenizer ({}) has token {token:?} with id {id}, but config.json's `vocab_size` is {}: the tokenizer does not belong to these weights; use the tokenizer the model was trained with",
                    self.spec,
                    self.tokenizer
                        .files()
                        .first()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    self.config.vocab_size
                );
            }
        }
        Ok(tokenizer)
    }

    /// Refuses a head folder (for commands that need a whole model, such as `train`).
    pub fn require_whole_model(&self, flag: &str) -> Result<()> {
        if let Some(h) = &self.head {
            bail!(
                "{flag} {}: this folder holds a head only (head-only training), not a whole model; give its base model {} instead",
                h.display(),
                self.pinned()
            );
        }
        Ok(())
    }
}

/// Opens `--model SPEC` (with `--revision`): see the module's documentation.
pub fn open_model(spec: &str, revision: Option<&str>, cfg: &HubConfig) -> Result<OpenedModel> {
    let path = Path::new(spec);
    if path.is_dir() {
        if let Some(r) = revision {
            bail!("--revision {r} applies to Hub models, but --model {spec} is a local folder");
        }
        return open_dir(spec, path, None, cfg);
    }
    if looks_local(spec) || !hub::is_repo_id(spec.rsplit_once('@').map_or(spec, |(id, _)| id)) {
        bail!(
            "--model {spec}: no such folder (expected config.json, tokenizer.json or spiece.model, and weights in it){}",
            if path.exists() { "; it is a file" } else { "" }
        );
    }
    let repo = hub::parse_model_spec(spec, revision)?;
    let (dir, commit) = fetch_model(&repo, cfg, false).with_context(|| {
        format!("--model {spec}: no local folder of that name, so it was taken as a Hub model id")
    })?;
    open_dir(spec, &dir, Some((repo, commit)), cfg)
}

/// Only `config.json` of a model (for `info`): a local folder or file, or a Hub model whose
/// config alone is fetched.
pub fn open_config(spec: &str, revision: Option<&str>, cfg: &HubConfig) -> Result<ModelConfig> {
    let path = Path::new(spec);
    if path.is_dir() {
        return ModelConfig::from_file(&path.join("config.json"));
    }
    if path.is_file() {
        return ModelConfig::from_file(path);
    }
    if looks_local(spec) || !hub::is_repo_id(spec.rsplit_once('@').map_or(spec, |(id, _)| id)) {
        bail!("{spec}: no such folder or file");
    }
    let repo = hub::parse_model_spec(spec, revision)?;
    if let Some(snap) = cfg.snapshot_dir(repo.kind, &repo.id, &repo.revision) {
        if snap.join("config.json").is_file() {
            return ModelConfig::from_file(&snap.join("config.json"));
        }
    }
    if cfg.offline {
        return Err(hub::offline_miss(cfg, &repo, "config.json"));
    }
    let client = Client::new(cfg)?;
    let listing = client.listing(&repo)?;
    let file = hub::fetch_listed(&client, &repo, &listing, "config.json")?;
    ModelConfig::from_file(&file)
}

/// A path rather than a Hub id: absolute, starting with `.`, two or more `/`, or existing.
pub(super) fn looks_local(spec: &str) -> bool {
    let path = Path::new(spec);
    path.is_absolute() || spec.starts_with('.') || spec.matches('/').count() > 1 || path.exists()
}

fn open_dir(
    spec: &str,
    dir: &Path,
    hub: Option<(RepoRef, String)>,
    cfg: &HubConfig,
) -> Result<OpenedModel> {
    let trained = dir
        .join(heads::META_FILE)
        .is_file()
        .then(|| heads::read_meta(dir))
        .transpose()?;
    if dir.join(heads::HEAD_FILE).is_file() && !dir.join(heads::MODEL_FILE).is_file() {
        // A head folder: its base model, with the head over it.
        let meta = trained.as_ref().ok_or_else(|| {
            anyhow!(
                "--model {spec}: {} holds {} but no {}; is it a folder written by `race-eval train`?",
                dir.display(),
                heads::HEAD_FILE,
                heads::META_FILE
            )
        })?;
        let mut base = open_model(&meta.base_model, None, cfg).with_context(|| {
            format!(
                "--model {spec} is a head trained on {}, which cannot be opened from here; pass --model BASE --head {spec}",
                meta.base_model
            )
        })?;
        base.spec = spec.to_string();
        base.head = Some(dir.to_path_buf());
        base.trained = trained;
        return Ok(base);
    }
    if !dir.join("config.json").is_file() {
        bail!(
            "--model {spec}: config.json is missing from the model folder {}",
            dir.display()
        );
    }
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = TokenizerFile::in_dir(dir).with_context(|| format!("--model {spec}"))?;
    let weight_files = weights::find_weight_files(dir)?;
    // A Hub checkpoint of one file sits in a blob named by its sha256, checked against that
    // name when it was fetched or taken from the cache: that is already its weights hash.
    let hash = OnceLock::new();
    if let (Some(_), [only]) = (&hub, weight_files.as_slice()) {
        if let Some(name) = std::fs::canonicalize(only)
            .ok()
            .and_then(|b| b.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| n.len() == 64 && n.bytes().all(|c| c.is_ascii_hexdigit()))
        {
            let _ = hash.set(name.to_ascii_lowercase());
        }
    }
    Ok(OpenedModel {
        spec: spec.to_string(),
        dir: dir.to_path_buf(),
        config,
        tokenizer,
        weight_files,
        hub,
        head: None,
        trained,
        hash,
    })
}

/// What a model needs, chosen from the files a repository (or snapshot) has.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    pub files: Vec<String>,
    /// A sharded checkpoint's index, whose shards are needed too.
    pub index: Option<String>,
}

/// config.json; tokenizer.json, else spiece.model (with tokenizer_config.json); the weights in
/// the loaders' order.
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
    let names = weights::shard_names(index)?;
    for n in &names {
        if !crate::hub::client::is_safe_path(n) {
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

/// A Hub model's snapshot folder and commit: complete in the cache, or fetched (always asking
/// the Hub when `refresh`).
pub fn fetch_model(repo: &RepoRef, cfg: &HubConfig, refresh: bool) -> Result<(PathBuf, String)> {
    debug_assert_eq!(repo.kind, RepoKind::Model);
    if !refresh || cfg.offline {
        if let Some(snap) = cfg.snapshot_dir(repo.kind, &repo.id, &repo.revision) {
            match missing_in_snapshot(&snap, repo) {
                Ok(missing)
                    if missing.is_empty()
                        && hub::verify_snapshot(
                            cfg,
                            repo,
                            &snap,
                            &snapshot_files(&snap, repo)?,
                        )? =>
                {
                    let commit = snapshot_commit(&snap);
                    return Ok((snap, commit));
                }
                Ok(missing) if cfg.offline => {
                    return Err(hub::offline_miss(cfg, repo, &missing.join(", ")))
                }
                Err(e) if cfg.offline => {
                    // The plan's error names the missing file (config.json, a tokenizer, the
                    // weights or a shard).
                    let what = format!("{e:#}");
                    let missing = what
                        .split_once(": ")
                        .map_or(what.as_str(), |(_, rest)| rest)
                        .to_string();
                    return Err(hub::offline_miss(cfg, repo, &format!("a file ({missing})")));
                }
                _ => {}
            }
        } else if cfg.offline {
            return Err(hub::offline_miss(cfg, repo, "config.json"));
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
        last = Some(hub::fetch_listed(&client, repo, &listing, f)?);
    }
    if let Some(index) = &plan.index {
        let index_path = last
            .as_ref()
            .filter(|p| p.ends_with(index))
            .ok_or_else(|| anyhow!("internal: {index} was not fetched"))?;
        for shard in shard_names(index_path)? {
            hub::fetch_listed(&client, repo, &listing, &shard).map_err(|e| {
                anyhow!("{e:#}").context(format!("shard {shard} of {}", repo.describe()))
            })?;
        }
    }
    let snap = cfg
        .repo_dir(repo.kind, &repo.id)
        .join("snapshots")
        .join(&listing.commit);
    Ok((snap, listing.commit))
}

/// Every file of the plan in a snapshot, shards included.
fn snapshot_files(snapshot: &Path, repo: &RepoRef) -> Result<Vec<String>> {
    let plan = plan_model(|f| snapshot.join(f).is_file(), repo)?;
    let mut files = plan.files;
    if let Some(index) = &plan.index {
        files.extend(shard_names(&snapshot.join(index))?);
    }
    Ok(files)
}

fn snapshot_commit(snap: &Path) -> String {
    snap.file_name()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_plan_prefers_safetensors_then_bin_then_index() {
        let r = crate::hub::parse_model_spec("o/m", None).unwrap();
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

    #[test]
    fn local_folder_wins_and_missing_paths_are_not_hub_ids() {
        let cfg = HubConfig::from_vars(|_| None);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/models/tiny-albert");
        let spec = dir.to_str().unwrap();
        let m = open_model(spec, None, &cfg).unwrap();
        assert_eq!(m.dir, dir);
        assert!(m.hub.is_none());
        assert!(matches!(m.tokenizer, TokenizerFile::Json(_)));
        assert_eq!(m.weights_hash().unwrap().len(), 64);
        // A mistyped folder says so, and never reaches for the Hub (no endpoint is set here).
        let e = open_model("datasets/models/nope", None, &cfg).unwrap_err();
        assert!(format!("{e:#}").contains("no such folder"), "{e:#}");
        let e = open_model("./nope", None, &cfg).unwrap_err();
        assert!(format!("{e:#}").contains("no such folder"), "{e:#}");
        assert!(open_model(spec, Some("main"), &cfg).is_err());
    }
}
