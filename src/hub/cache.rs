//! The Hugging Face cache layout, shared with Python's `huggingface_hub`:
//!
//! ```text
//! {cache}/models--ORG--NAME/refs/{revision}          commit hash of a branch or tag
//! {cache}/models--ORG--NAME/snapshots/{commit}/FILE  link to ../../blobs/{etag}
//! {cache}/models--ORG--NAME/blobs/{etag}             the content
//! {cache}/datasets--ORG--NAME/...                    the same for datasets
//! ```
//!
//! Where the cache is, the endpoint, the token and offline mode come from the environment the
//! way Python tools read them: `HF_HUB_CACHE` (else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), `HF_ENDPOINT`, `HF_TOKEN` (else the `HF_HOME/token` file),
//! `HF_HUB_OFFLINE`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::RepoKind;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the Hub and where its files live on disk.
#[derive(Clone)]
pub struct HubConfig {
    pub endpoint: String,
    /// The hub cache folder (the one holding `models--*` and `datasets--*`).
    pub cache_dir: PathBuf,
    /// Never printed: `Debug` shows only whether there is one.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: use the cache only.
    pub offline: bool,
    /// Draw progress bars for downloads.
    pub progress: bool,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .finish()
    }
}

/// `huggingface_hub`'s truthy spellings for boolean environment variables.
pub fn env_flag(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_uppercase()).as_deref(),
        Some("1" | "ON" | "YES" | "TRUE")
    )
}

impl HubConfig {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// From any variable lookup (tests pass a map instead of touching the process environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let base = var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                var("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".cache")
            });
            base.join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        // Absolute, so snapshot links and messages do not depend on the working directory.
        let cache_dir = std::path::absolute(&cache_dir).unwrap_or(cache_dir);
        let token = var("HF_TOKEN")
            .or_else(|| {
                let path = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home.join("token"));
                std::fs::read_to_string(path).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let endpoint = var("HF_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        Self {
            endpoint,
            cache_dir,
            token,
            offline: env_flag(var("HF_HUB_OFFLINE").as_deref()),
            progress: true,
        }
    }

    /// `{cache}/models--ORG--NAME` or `{cache}/datasets--ORG--NAME`.
    pub fn repo_dir(&self, kind: RepoKind, id: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{}--{}", kind.plural(), id.replace('/', "--")))
    }

    /// The snapshot folder of `revision` (a branch, tag or commit) if the cache knows it.
    pub fn snapshot_dir(&self, kind: RepoKind, id: &str, revision: &str) -> Option<PathBuf> {
        let repo = self.repo_dir(kind, id);
        if let Ok(commit) = std::fs::read_to_string(repo.join("refs").join(revision)) {
            let commit = commit.trim();
            if is_commit_hash(commit) {
                let dir = repo.join("snapshots").join(commit);
                if dir.is_dir() {
                    return Some(dir);
                }
            }
        }
        if is_commit_hash(revision) {
            let dir = repo.join("snapshots").join(revision);
            if dir.is_dir() {
                return Some(dir);
            }
        }
        None
    }
}

/// A full 40-hex-digit git commit hash.
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Files under `dir`, as `/`-separated paths relative to it, sorted.
pub fn list_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.is_file() {
                if let Ok(rel) = path.strip_prefix(base) {
                    let parts: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(parts.join("/"));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> HubConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn cache_location_follows_hf_home_and_hf_hub_cache() {
        let c = cfg(&[("HOME", "/home/u")]);
        assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        let c = cfg(&[("HOME", "/home/u"), ("HF_HOME", "/data/hf")]);
        assert_eq!(c.cache_dir, PathBuf::from("/data/hf/hub"));
        let c = cfg(&[("HF_HOME", "/data/hf"), ("HF_HUB_CACHE", "/fast/hub")]);
        assert_eq!(c.cache_dir, PathBuf::from("/fast/hub"));
        let c = cfg(&[("HF_HUB_CACHE", "rel/hub")]);
        assert!(c.cache_dir.is_absolute() && c.cache_dir.ends_with("rel/hub"));
        let c = cfg(&[("HF_ENDPOINT", "http://127.0.0.1:9/")]);
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
    }

    #[test]
    fn offline_flag_spellings() {
        for v in ["1", "true", "ON", "yes"] {
            assert!(cfg(&[("HF_HUB_OFFLINE", v)]).offline, "{v}");
        }
        for v in ["0", "false", "off", ""] {
            assert!(!cfg(&[("HF_HUB_OFFLINE", v)]).offline, "{v}");
        }
    }

    #[test]
    fn token_from_env_or_file_and_never_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_fromfile\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let c = cfg(&[("HF_HOME", home)]);
        assert_eq!(c.token.as_deref(), Some("hf_fromfile"));
        let c = cfg(&[("HF_HOME", home), ("HF_TOKEN", "hf_secret")]);
        assert_eq!(c.token.as_deref(), Some("hf_secret"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hf_secret"), "{shown}");
        assert!(shown.contains("<set>"), "{shown}");
    }

    #[test]
    fn snapshot_by_branch_or_commit() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&[("HF_HUB_CACHE", dir.path().to_str().unwrap())]);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let repo = c.repo_dir(RepoKind::Model, "org/name");
        assert!(repo.ends_with("models--org--name"));
        assert_eq!(c.snapshot_dir(RepoKind::Model, "org/name", "main"), None);
        std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), commit).unwrap();
        let snap = repo.join("snapshots").join(commit);
        assert_eq!(
            c.snapshot_dir(RepoKind::Model, "org/name", "main"),
            Some(snap.clone())
        );
        assert_eq!(
            c.snapshot_dir(RepoKind::Model, "org/name", commit),
            Some(snap)
        );
        assert_eq!(c.snapshot_dir(RepoKind::Model, "org/name", "v2"), None);
        assert_eq!(c.snapshot_dir(RepoKind::Dataset, "org/name", "main"), None);
    }
}
