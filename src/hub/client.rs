//! Talking to the Hub through the `hf-hub` crate's sync API: repository listings, downloads into
//! the shared cache, integrity checks, and errors that say what to do.
//!
//! Downloads are pinned to the commit the listing returned, so every file of one run comes from
//! the same commit; `refs/{revision}` then records that commit as Python tools do. `hf-hub`
//! writes into `blobs/{etag}.part` and renames only a complete transfer; an interrupted one is
//! resumed with a range request next time. On top of that every new file is checked against the
//! listing's size and its ETag (sha256 for LFS files, git's blob sha1 otherwise) before use.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::cache::{is_commit_hash, HubConfig};
use super::{RepoKind, RepoRef};

/// One file of a repository listing.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFile {
    pub path: String,
    pub size: Option<u64>,
}

/// A repository at one commit.
#[derive(Debug, Clone)]
pub struct Listing {
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

impl Listing {
    pub fn get(&self, path: &str) -> Option<&RemoteFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

#[derive(Deserialize)]
struct InfoJson {
    sha: String,
    #[serde(default)]
    siblings: Vec<SiblingJson>,
}

#[derive(Deserialize)]
struct SiblingJson {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<LfsJson>,
}

#[derive(Deserialize)]
struct LfsJson {
    size: Option<u64>,
}

/// Why a request failed, with enough context for a useful message.
#[derive(Debug)]
pub enum HubFailure {
    /// 404 for a file (the repository exists).
    FileNotFound(anyhow::Error),
    Other(anyhow::Error),
}

impl HubFailure {
    pub fn into_error(self) -> anyhow::Error {
        match self {
            HubFailure::FileNotFound(e) | HubFailure::Other(e) => e,
        }
    }
}

pub struct Client {
    cfg: HubConfig,
    api: Api,
}

/// A progress bar for one file's bytes, drawn on stderr (hidden when not a terminal).
struct DownloadBar(ProgressBar);

impl hf_hub::api::Progress for DownloadBar {
    fn init(&mut self, size: usize, filename: &str) {
        self.0.set_length(size as u64);
        self.0.set_position(0);
        self.0.set_message(filename.to_string());
    }

    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }

    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

fn download_bar(show: bool) -> DownloadBar {
    if !show {
        return DownloadBar(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes}, {bytes_per_sec}, ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    DownloadBar(bar)
}

fn hf_type(kind: RepoKind) -> RepoType {
    match kind {
        RepoKind::Model => RepoType::Model,
        RepoKind::Dataset => RepoType::Dataset,
    }
}

impl Client {
    pub fn new(cfg: &HubConfig) -> Result<Self> {
        let api = ApiBuilder::from_cache(Cache::new(cfg.cache_dir.clone()))
            .with_endpoint(cfg.endpoint.clone())
            .with_token(cfg.token.clone())
            .with_progress(false)
            .with_user_agent("race-eval", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| anyhow!("cannot set up the Hub client: {e}"))?;
        Ok(Self {
            cfg: cfg.clone(),
            api,
        })
    }

    /// The files of `repo` at its revision, with the commit that revision points to
    /// (`/api/{models,datasets}/{id}/revision/{revision}?blobs=true`).
    pub fn listing(&self, repo: &RepoRef) -> Result<Listing> {
        let hf = Repo::with_revision(repo.id.clone(), hf_type(repo.kind), repo.revision.clone());
        let response = self
            .api
            .repo(hf)
            .info_request()
            .query("blobs", "true")
            .call()
            .map_err(|e| self.explain_ureq(&e, repo, None).into_error())?;
        let mut body = String::new();
        response
            .into_reader()
            .take(256 << 20)
            .read_to_string(&mut body)
            .map_err(|e| self.explain_io(&e, repo, None))?;
        let info: InfoJson = serde_json::from_str(&body).with_context(|| {
            format!(
                "{} answered the listing of {} with something that is not the Hub's JSON: is HF_ENDPOINT a Hugging Face Hub?",
                self.cfg.endpoint,
                repo.describe()
            )
        })?;
        if !is_commit_hash(&info.sha) {
            bail!(
                "{} gave `{}` as the commit of {}, which is not a commit hash",
                self.cfg.endpoint,
                info.sha,
                repo.describe()
            );
        }
        Ok(Listing {
            commit: info.sha,
            files: info
                .siblings
                .into_iter()
                // A name that would leave the snapshot folder is never fetched.
                .filter(|s| is_safe_path(&s.rfilename))
                .map(|s| RemoteFile {
                    size: s.lfs.and_then(|l| l.size).or(s.size),
                    path: s.rfilename,
                })
                .collect(),
        })
    }

    /// `file` of `repo` at `commit`: from the cache when there, else downloaded and checked.
    pub fn fetch(
        &self,
        repo: &RepoRef,
        commit: &str,
        file: &RemoteFile,
    ) -> Result<PathBuf, HubFailure> {
        let repo_dir = self.cfg.repo_dir(repo.kind, &repo.id);
        let cached = repo_dir.join("snapshots").join(commit).join(&file.path);
        if cached.is_file() {
            // A cached file is used only while it still matches the hash it is named by; a
            // damaged one is deleted and fetched again.
            if super::check_cached(&cached)
                .map_err(HubFailure::Other)?
                .is_none()
            {
                self.record_ref(repo, commit);
                return Ok(cached);
            }
            super::remove_cached(&cached);
        }
        let hf = Repo::with_revision(repo.id.clone(), hf_type(repo.kind), commit.to_string());
        let bar = download_bar(self.cfg.progress);
        let path = match self.api.repo(hf).download_with_progress(&file.path, bar) {
            Ok(p) => p,
            Err(e) => return Err(self.explain(e, repo, &file.path)),
        };
        // hf-hub records `refs/{commit}`; Python's layout has no ref named by a commit.
        let own_ref = repo_dir.join("refs").join(commit);
        if std::fs::read_to_string(&own_ref).is_ok_and(|c| c.trim() == commit) {
            let _ = std::fs::remove_file(own_ref);
        }
        self.record_ref(repo, commit);
        verify(&path, file).map_err(HubFailure::Other)?;
        Ok(path)
    }

    /// `refs/{revision}` → `commit`, so offline runs find the snapshot by branch or tag.
    fn record_ref(&self, repo: &RepoRef, commit: &str) {
        if is_commit_hash(&repo.revision) {
            return;
        }
        let path = self
            .cfg
            .repo_dir(repo.kind, &repo.id)
            .join("refs")
            .join(&repo.revision);
        if std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
            return;
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(path, commit);
    }

    fn explain(&self, err: ApiError, repo: &RepoRef, file: &str) -> HubFailure {
        match err {
            ApiError::RequestError(e) => self.explain_ureq(&e, repo, Some(file)),
            ApiError::IoError(e) => HubFailure::Other(self.explain_io(&e, repo, Some(file))),
            ApiError::TooManyRetries(e) => self.explain(*e, repo, file),
            ApiError::InvalidResume => HubFailure::Other(anyhow!(
                "the partial download of {file} ({}) in {} is longer than the file: delete the *.part files there and run again",
                repo.describe(),
                self.cfg.repo_dir(repo.kind, &repo.id).join("blobs").display()
            )),
            ApiError::MissingHeader(h) | ApiError::InvalidHeader(h) => HubFailure::Other(anyhow!(
                "{} answered for {file} of {} without a valid `{h}` header: is HF_ENDPOINT a Hugging Face Hub (or a mirror of one)?",
                self.cfg.endpoint,
                repo.describe()
            )),
            other => HubFailure::Other(anyhow!(
                "cannot download {file} of {}: {other}",
                repo.describe()
            )),
        }
    }

    fn explain_io(&self, e: &std::io::Error, repo: &RepoRef, file: Option<&str>) -> anyhow::Error {
        let what = file.unwrap_or("the file listing");
        anyhow!(
            "the download of {what} of {} from {} was interrupted ({e}). Nothing incomplete is used: the part already received is kept in {} and resumed by the next run; run the command again",
            repo.describe(),
            self.cfg.endpoint,
            self.cfg.repo_dir(repo.kind, &repo.id).join("blobs").display()
        )
    }

    fn explain_ureq(&self, e: &ureq::Error, repo: &RepoRef, file: Option<&str>) -> HubFailure {
        let endpoint = &self.cfg.endpoint;
        let what = match file {
            Some(f) => format!("{f} of {}", repo.describe()),
            None => repo.describe(),
        };
        match e {
            ureq::Error::Status(code, resp) => {
                let code_hdr = resp.header("X-Error-Code").unwrap_or("").to_string();
                let msg_hdr = resp
                    .header("X-Error-Message")
                    .map(|m| format!(" (the Hub says: {m})"))
                    .unwrap_or_default();
                match (*code, code_hdr.as_str()) {
                    (404, "RevisionNotFound") => HubFailure::Other(anyhow!(
                        "revision `{}` of {} {} does not exist on {endpoint}{msg_hdr}: check the branch, tag or commit given with @REV or --revision",
                        repo.revision, repo.kind.singular(), repo.id
                    )),
                    (404, "EntryNotFound") | (404, "") if file.is_some() => {
                        HubFailure::FileNotFound(anyhow!(
                            "{what} was not found on {endpoint} (404){msg_hdr}: the repository has no such file at revision `{}`",
                            repo.revision
                        ))
                    }
                    (404, _) => HubFailure::Other(anyhow!(
                        "{} {} was not found on {endpoint} (404){msg_hdr}: check the id (ORG/NAME; datasets as hub:ORG/NAME), or that a local folder by that name exists",
                        repo.kind.singular(), repo.id
                    )),
                    (401 | 403, "GatedRepo") => HubFailure::Other(anyhow!(
                        "{what} is in a gated repository ({code}){msg_hdr}: accept its conditions on {endpoint}/{}{} while logged in, then set HF_TOKEN to a read token of that account",
                        if repo.kind == RepoKind::Dataset { "datasets/" } else { "" },
                        repo.id
                    )),
                    (401, _) => HubFailure::Other(anyhow!(
                        "{endpoint} refused {what} (401 unauthorized){msg_hdr}: the repository is private or gated, or does not exist. {}",
                        if self.cfg.token.is_some() {
                            "The token in HF_TOKEN (or the HF_HOME token file) was not accepted: check that it is valid and has read access"
                        } else {
                            "Set HF_TOKEN to a token with read access (https://huggingface.co/settings/tokens)"
                        }
                    )),
                    (403, _) => HubFailure::Other(anyhow!(
                        "{endpoint} refused {what} (403 forbidden){msg_hdr}: the repository is gated or your token lacks access. Accept its conditions on {endpoint}/{}{} and set HF_TOKEN to a token of that account",
                        if repo.kind == RepoKind::Dataset { "datasets/" } else { "" },
                        repo.id
                    )),
                    (code, _) => HubFailure::Other(anyhow!(
                        "{endpoint} answered {code} for {what}{msg_hdr}; try again later, or set HF_HUB_OFFLINE=1 to use the cache ({})",
                        self.cfg.cache_dir.display()
                    )),
                }
            }
            ureq::Error::Transport(t) => HubFailure::Other(anyhow!(
                "cannot reach {endpoint} for {what}: {t}. Without network, set HF_HUB_OFFLINE=1 to use only files already in the cache ({}), fetched beforehand with `race-eval download`",
                self.cfg.cache_dir.display()
            )),
        }
    }
}

/// A relative `/`-separated path that stays inside its folder.
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Checks a fresh download against the listing's size and the ETag its blob is named by;
/// a bad file is removed (blob and snapshot link) so it is never used.
fn verify(path: &Path, file: &RemoteFile) -> Result<()> {
    let blob = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let problem = check_content(&blob, file.size, &etag)?;
    if let Some(problem) = problem {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(&blob);
        bail!(
            "the download of {} is corrupt ({problem}); it was deleted: run the command again",
            file.path
        );
    }
    Ok(())
}

/// `None` when the content matches; otherwise what is wrong.
pub fn check_content(blob: &Path, size: Option<u64>, etag: &str) -> Result<Option<String>> {
    let len = std::fs::metadata(blob)
        .with_context(|| format!("cannot read {}", blob.display()))?
        .len();
    if let Some(size) = size {
        if len != size {
            return Ok(Some(format!("{len} bytes, the Hub lists {size}")));
        }
    }
    let hex_etag = etag.bytes().all(|b| b.is_ascii_hexdigit());
    let digest = match etag.len() {
        64 if hex_etag => {
            let mut h = Sha256::new();
            hash_file(blob, |b| h.update(b))?;
            format!("{:x}", h.finalize())
        }
        40 if hex_etag => {
            let mut h = Sha1::new();
            h.update(format!("blob {len}\0").as_bytes());
            hash_file(blob, |b| h.update(b))?;
            format!("{:x}", h.finalize())
        }
        _ => return Ok(None),
    };
    if !digest.eq_ignore_ascii_case(etag) {
        return Ok(Some(format!("its hash is {digest}, the Hub's ETag {etag}")));
    }
    Ok(None)
}

fn hash_file(path: &Path, mut update: impl FnMut(&[u8])) -> Result<()> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_snapshot_are_safe() {
        assert!(is_safe_path("config.json"));
        assert!(is_safe_path("all/test-00000-of-00001.parquet"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\..\\b",
        ] {
            assert!(!is_safe_path(bad), "{bad}");
        }
    }

    #[test]
    fn content_checks_size_sha256_and_git_sha1() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        // `git hash-object` of "hello\n".
        let git = "ce013625030ba8dba906f756967f9e9ca394464a";
        assert_eq!(check_content(&p, Some(6), git).unwrap(), None);
        assert!(check_content(&p, Some(7), git).unwrap().is_some());
        let sha = format!("{:x}", Sha256::digest(b"hello\n"));
        assert_eq!(check_content(&p, None, &sha).unwrap(), None);
        std::fs::write(&p, b"hellO\n").unwrap();
        assert!(check_content(&p, Some(6), &sha).unwrap().is_some());
        assert!(check_content(&p, Some(6), git).unwrap().is_some());
        // An ETag that is no known hash is not checked.
        assert_eq!(check_content(&p, Some(6), "W-abc").unwrap(), None);
    }
}
