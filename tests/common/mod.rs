//! A loopback stand-in for the Hugging Face Hub (127.0.0.1 only), speaking the part of the HTTP
//! protocol `hf-hub`'s sync client uses:
//!
//! - `GET /api/{models,datasets}/ID/revision/REV[?blobs=true]`: `{sha, siblings: [{rfilename,
//!   size, lfs}]}`, or 404 with `X-Error-Code: RepoNotFound | RevisionNotFound`;
//! - `GET [/datasets]/ID/resolve/REV/FILE` with `Range`: small files answered directly with
//!   `ETag` (git blob sha1), `X-Repo-Commit`, `Content-Range`/`Content-Length`; LFS files (weights
//!   and parquet) as a 302 to `/cdn/SHA256` with `X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`,
//!   like the Hub's redirect to its CDN; 404 `EntryNotFound` for a missing file;
//! - `GET /cdn/SHA256` with `Range`: 206 partial content;
//! - private repositories answer 401 unless `Authorization: Bearer TOKEN` matches.
//!
//! Faults on demand: cut the next N bodies of a path short (an interrupted transfer), or serve
//! a path with one byte flipped (a corrupt transfer). Every request line is logged.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha1::Sha1;
use sha2::{Digest, Sha256};

pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone)]
pub struct HubFile {
    pub path: String,
    pub content: Arc<Vec<u8>>,
    pub lfs: bool,
}

impl HubFile {
    pub fn new(path: &str, content: Vec<u8>) -> Self {
        let lfs = path.ends_with(".safetensors")
            || path.ends_with(".bin")
            || path.ends_with(".parquet")
            || path.ends_with(".model");
        Self {
            path: path.to_string(),
            content: Arc::new(content),
            lfs,
        }
    }

    pub fn sha256(&self) -> String {
        format!("{:x}", Sha256::digest(self.content.as_slice()))
    }

    pub fn git_sha1(&self) -> String {
        let mut h = Sha1::new();
        h.update(format!("blob {}\0", self.content.len()).as_bytes());
        h.update(self.content.as_slice());
        format!("{:x}", h.finalize())
    }
}

/// Every file of a folder, as Hub files.
pub fn folder_files(dir: &Path) -> Vec<HubFile> {
    let mut out: Vec<HubFile> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            HubFile::new(
                &e.file_name().to_string_lossy(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

pub struct HubRepo {
    /// "models" or "datasets".
    pub kind: &'static str,
    pub id: String,
    /// Branch or tag → commit.
    pub refs: HashMap<String, String>,
    pub commits: HashMap<String, Vec<HubFile>>,
    pub private: bool,
    /// Former ids (a renamed repo, or a legacy bare name): answered with a relative 307.
    pub aliases: Vec<String>,
    /// Listing is public, files answer 403 `GatedRepo` (conditions not accepted).
    pub gated: bool,
}

impl HubRepo {
    pub fn new(kind: &'static str, id: &str, commit: &str, files: Vec<HubFile>) -> Self {
        let mut refs = HashMap::new();
        refs.insert("main".to_string(), commit.to_string());
        let mut commits = HashMap::new();
        commits.insert(commit.to_string(), files);
        Self {
            kind,
            id: id.to_string(),
            refs,
            commits,
            private: false,
            aliases: Vec::new(),
            gated: false,
        }
    }

    /// Adds a commit reachable by `tag`.
    pub fn with_tag(mut self, tag: &str, commit: &str, files: Vec<HubFile>) -> Self {
        self.refs.insert(tag.to_string(), commit.to_string());
        self.commits.insert(commit.to_string(), files);
        self
    }
}

#[derive(Default)]
pub struct Faults {
    /// Path → how many more bodies to cut short.
    pub truncate: HashMap<String, usize>,
    /// Paths served with one byte flipped.
    pub corrupt: Vec<String>,
}

struct State {
    repos: Vec<HubRepo>,
    token: Option<String>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<String>>,
    base: String,
}

pub struct HubServer {
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub url: String,
}

pub fn commit_hash(seed: &str) -> String {
    format!("{:x}", Sha1::digest(seed.as_bytes()))
}

impl HubServer {
    /// Starts on 127.0.0.1 on a free port.
    pub fn start(repos: Vec<HubRepo>, token: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            repos,
            token: token.map(str::to_string),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            base: url.clone(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Self {
            state,
            stop,
            handle: Some(handle),
            url,
        }
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.state.faults.lock().unwrap()
    }

    /// Request lines seen so far (`GET /path Range:...`).
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// Stops accepting connections; the port is closed afterwards.
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
            let _ = h.join();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then close.
    cut: Option<usize>,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
        cut: None,
    }
}

fn error(status: u16, code: &str, msg: &str) -> Reply {
    let mut r = reply(status, format!("{{\"error\":\"{msg}\"}}"));
    if !code.is_empty() {
        r.headers.push(("X-Error-Code".into(), code.into()));
    }
    r.headers.push(("X-Error-Message".into(), msg.into()));
    r
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    }
}

fn serve(conn: TcpStream, st: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    st.log.lock().unwrap().push(format!(
        "{method} {target} range={}",
        headers.get("range").cloned().unwrap_or_default()
    ));
    let r = route(st, &target, &headers);
    let mut out = conn;
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, status_text(r.status));
    for (k, v) in &r.headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += &format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    );
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let n = r.cut.unwrap_or(r.body.len()).min(r.body.len());
        out.write_all(&r.body[..n])?;
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Both);
    // Drain nothing more: one request per connection.
    let _ = reader.read(&mut [0u8; 0]);
    Ok(())
}

/// The repo `id` as the caller may see it, or the Hub's answer when it may not: 404 for an
/// unknown repo, 401 for a private one without the right token (the Hub says RepoNotFound for
/// both, so a private repo's existence does not leak).
fn visible_repo<'a>(
    st: &'a State,
    kind: &str,
    id: &str,
    headers: &HashMap<String, String>,
) -> Result<&'a HubRepo, Reply> {
    let Some(repo) = st.repos.iter().find(|r| r.kind == kind && r.id == id) else {
        return Err(error(404, "RepoNotFound", "Repository not found"));
    };
    if !authorized(st, repo, headers) {
        return Err(error(
            401,
            "RepoNotFound",
            "Invalid credentials in Authorization header",
        ));
    }
    Ok(repo)
}

/// A relative 307 to the repo's current id, as the Hub answers for renamed repos.
fn renamed(st: &State, kind: &str, id: &str, to: impl Fn(&str) -> String) -> Option<Reply> {
    let repo = st
        .repos
        .iter()
        .find(|r| r.kind == kind && r.aliases.iter().any(|a| a == id))?;
    let mut r = reply(307, Vec::new());
    r.headers.push(("Location".into(), to(&repo.id)));
    Some(r)
}

fn authorized(st: &State, repo: &HubRepo, headers: &HashMap<String, String>) -> bool {
    if !repo.private {
        return true;
    }
    match (&st.token, headers.get("authorization")) {
        (Some(t), Some(h)) => h == &format!("Bearer {t}"),
        _ => false,
    }
}

fn commit_of<'a>(repo: &'a HubRepo, rev: &str) -> Option<(&'a str, &'a Vec<HubFile>)> {
    let rev = rev.replace("%2F", "/");
    let commit = repo.refs.get(&rev).cloned().unwrap_or(rev);
    repo.commits
        .get_key_value(&commit)
        .map(|(c, f)| (c.as_str(), f))
}

fn route(st: &State, target: &str, headers: &HashMap<String, String>) -> Reply {
    let path = target.split('?').next().unwrap_or("");
    if let Some(rest) = path.strip_prefix("/api/") {
        let Some((kind, rest)) = rest.split_once('/') else {
            return error(404, "", "bad api path");
        };
        let Some((id, rev)) = rest.split_once("/revision/") else {
            return error(404, "", "bad api path");
        };
        if let Some(r) = renamed(st, kind, id, |to| {
            format!("/api/{kind}/{to}/revision/{rev}")
        }) {
            return r;
        }
        let repo = match visible_repo(st, kind, id, headers) {
            Ok(repo) => repo,
            Err(reply) => return reply,
        };
        let Some((commit, files)) = commit_of(repo, rev) else {
            return error(404, "RevisionNotFound", "Invalid rev id");
        };
        let siblings: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let mut v = serde_json::json!({"rfilename": f.path, "size": f.content.len()});
                if f.lfs {
                    v["lfs"] = serde_json::json!({"sha256": f.sha256(), "size": f.content.len()});
                }
                v
            })
            .collect();
        let body = serde_json::json!({"id": id, "sha": commit, "siblings": siblings});
        let mut r = reply(200, body.to_string());
        r.headers
            .push(("Content-Type".into(), "application/json".into()));
        return r;
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let file = st
            .repos
            .iter()
            .flat_map(|r| r.commits.values().flatten())
            .find(|f| f.sha256() == sha);
        return match file {
            Some(f) => content(st, path, f, headers, &f.sha256()),
            None => error(404, "", "no such object"),
        };
    }
    let (kind, rest) = match path.strip_prefix("/datasets/") {
        Some(rest) => ("datasets", rest),
        None => ("models", path.trim_start_matches('/')),
    };
    let Some((id, rest)) = rest.split_once("/resolve/") else {
        return error(404, "", "unknown path");
    };
    let prefix = if kind == "datasets" { "/datasets" } else { "" };
    if let Some(r) = renamed(st, kind, id, |to| format!("{prefix}/{to}/resolve/{rest}")) {
        return r;
    }
    let repo = match visible_repo(st, kind, id, headers) {
        Ok(repo) => repo,
        Err(reply) => return reply,
    };
    let Some((rev, file)) = rest.split_once('/') else {
        return error(404, "", "unknown path");
    };
    let Some((commit, files)) = commit_of(repo, rev) else {
        return error(404, "RevisionNotFound", "Invalid rev id");
    };
    if repo.gated {
        return error(403, "GatedRepo", "Access to this model is restricted");
    }
    let Some(f) = files.iter().find(|f| f.path == file) else {
        return error(404, "EntryNotFound", "Entry not found");
    };
    if f.lfs {
        let sha = f.sha256();
        let mut r = reply(302, Vec::new());
        r.headers.extend([
            ("Location".into(), format!("{}/cdn/{sha}", st.base)),
            ("X-Repo-Commit".into(), commit.to_string()),
            ("X-Linked-Etag".into(), format!("\"{sha}\"")),
            ("X-Linked-Size".into(), f.content.len().to_string()),
            ("ETag".into(), format!("\"{}\"", f.git_sha1())),
        ]);
        return r;
    }
    let mut r = content(st, path, f, headers, &f.git_sha1());
    r.headers.push(("X-Repo-Commit".into(), commit.to_string()));
    r
}

/// A file's bytes, honouring `Range: bytes=A-[B]` and the faults set for `path`.
fn content(
    st: &State,
    path: &str,
    f: &HubFile,
    headers: &HashMap<String, String>,
    etag: &str,
) -> Reply {
    let mut data = f.content.as_slice().to_vec();
    let mut faults = st.faults.lock().unwrap();
    if faults.corrupt.iter().any(|p| p == path) && !data.is_empty() {
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
    }
    let len = data.len();
    let mut r = match headers.get("range").and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = b.parse().map(|e: usize| e + 1).unwrap_or(len).min(len);
            if start >= len || start >= end {
                let mut r = reply(416, Vec::new());
                r.headers
                    .push(("Content-Range".into(), format!("bytes */{len}")));
                return r;
            }
            let mut r = reply(206, data[start..end].to_vec());
            r.headers.push((
                "Content-Range".into(),
                format!("bytes {start}-{}/{len}", end - 1),
            ));
            r
        }
        None => reply(200, data),
    };
    if r.body.len() > 1 {
        if let Some(n) = faults.truncate.get_mut(path) {
            if *n > 0 {
                *n -= 1;
                r.cut = Some(r.body.len() / 2);
            }
        }
    }
    r.headers.extend([
        ("ETag".into(), format!("\"{etag}\"")),
        ("Accept-Ranges".into(), "bytes".into()),
    ]);
    r
}

/// Writes RACE rows (JSON objects) as parquet with the Hub's schema: strings, and `options` as a
/// list of strings, snappy-compressed like `datasets` writes them. `columns` picks which.
pub fn write_race_parquet(rows: &[serde_json::Value], path: &Path, columns: &[&str]) {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let mut schema = String::from("message schema {\n");
    for c in columns {
        if *c == "options" {
            schema += "  optional group options (LIST) { repeated group list { optional binary element (STRING); } }\n";
        } else {
            schema += &format!("  optional binary {c} (STRING);\n");
        }
    }
    schema += "}";
    let schema = Arc::new(parse_message_type(&schema).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut rg = writer.next_row_group().unwrap();
    for c in columns {
        let mut col = rg.next_column().unwrap().unwrap();
        let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            if *c == "options" {
                for (i, o) in row["options"].as_array().unwrap().iter().enumerate() {
                    vals.push(ByteArray::from(o.as_str().unwrap()));
                    defs.push(3i16);
                    reps.push(i16::from(i > 0));
                }
            } else {
                vals.push(ByteArray::from(row[*c].as_str().unwrap()));
                defs.push(1i16);
            }
        }
        let reps = (*c == "options").then_some(reps.as_slice());
        col.typed::<ByteArrayType>()
            .write_batch(&vals, Some(defs.as_slice()), reps)
            .unwrap();
        col.close().unwrap();
    }
    rg.close().unwrap();
    writer.close().unwrap();
}

pub const RACE_COLUMNS: &[&str] = &["example_id", "article", "answer", "question", "options"];

/// The rows of a JSON-lines file.
pub fn jsonl_rows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Parquet bytes of `rows` with `columns`.
pub fn race_parquet_bytes(rows: &[serde_json::Value], columns: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.parquet");
    write_race_parquet(rows, &p, columns);
    std::fs::read(p).unwrap()
}

/// Runs the `race-eval` binary in `home` (its HF_HOME) against the Hub at `endpoint`, with no
/// proxy or token from the environment; `offline` sets HF_HUB_OFFLINE.
pub fn race_eval(
    home: &Path,
    endpoint: &str,
    args: &[&str],
    offline: bool,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_race-eval"));
    // Run records (eval's results/) land in the test's temporary home, not the checkout.
    cmd.args(args)
        .current_dir(home)
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HUGGINGFACE_HUB_CACHE");
    for p in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(p);
    }
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    } else {
        cmd.env_remove("HF_HUB_OFFLINE");
    }
    cmd.output().unwrap()
}

pub fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "race-eval failed: {text}");
    text
}

/// A parquet column's type, for [`parquet_bytes`].
#[derive(Clone, Copy)]
pub enum Col {
    Str,
    StrList,
    Int,
    /// A struct of string fields (the row value is an object with these keys).
    StrStruct(&'static [&'static str]),
}

/// Parquet bytes of `rows` (JSON objects) with typed `columns`, snappy-compressed, as the
/// Hub's conversion writes them: strings, lists of strings, 64-bit integers.
pub fn parquet_bytes(rows: &[serde_json::Value], columns: &[(&str, Col)]) -> Vec<u8> {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let mut schema = String::from("message schema {\n");
    for (c, t) in columns {
        schema += &match t {
            Col::Str => format!("  optional binary {c} (STRING);\n"),
            Col::Int => format!("  optional int64 {c};\n"),
            Col::StrList => format!(
                "  optional group {c} (LIST) {{ repeated group list {{ optional binary element (STRING); }} }}\n"
            ),
            Col::StrStruct(fields) => format!(
                "  optional group {c} {{ {} }}\n",
                fields
                    .iter()
                    .map(|f| format!("optional binary {f} (STRING);"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
    }
    schema += "}";
    let schema = Arc::new(parse_message_type(&schema).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut rg = writer.next_row_group().unwrap();
    for (c, t) in columns {
        if let Col::StrStruct(fields) = t {
            for f in *fields {
                let mut col = rg.next_column().unwrap().unwrap();
                let vals: Vec<ByteArray> = rows
                    .iter()
                    .map(|r| ByteArray::from(r[*c][*f].as_str().unwrap()))
                    .collect();
                let defs = vec![2i16; vals.len()];
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
                    .unwrap();
                col.close().unwrap();
            }
            continue;
        }
        let mut col = rg.next_column().unwrap().unwrap();
        match t {
            Col::Str => {
                let vals: Vec<ByteArray> = rows
                    .iter()
                    .map(|r| ByteArray::from(r[*c].as_str().unwrap()))
                    .collect();
                let defs = vec![1i16; vals.len()];
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
                    .unwrap();
            }
            Col::Int => {
                let vals: Vec<i64> = rows.iter().map(|r| r[*c].as_i64().unwrap()).collect();
                let defs = vec![1i16; vals.len()];
                col.typed::<Int64Type>()
                    .write_batch(&vals, Some(&defs), None)
                    .unwrap();
            }
            Col::StrList => {
                let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
                for r in rows {
                    for (i, o) in r[*c].as_array().unwrap().iter().enumerate() {
                        vals.push(ByteArray::from(o.as_str().unwrap()));
                        defs.push(3i16);
                        reps.push(i16::from(i > 0));
                    }
                }
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), Some(&reps))
                    .unwrap();
            }
            Col::StrStruct(_) => unreachable!("written above"),
        }
        col.close().unwrap();
    }
    rg.close().unwrap();
    writer.close().unwrap();
    std::fs::read(path).unwrap()
}
