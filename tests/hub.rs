//! The Hub client, proven against a loopback Hub (tests/common): first download, cache reuse
//! with the server stopped, offline mode, revision pins, 404/401, interrupted and corrupt
//! transfers, datasets as parquet, and `race-eval` end to end.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use race_eval::data::{self, LevelFilter, LoadOptions};
use race_eval::features::TokenizerFile;
use race_eval::hub::HubConfig;
use race_eval::open;

const TOKEN: &str = "hf_fixture_secret_token_123";

/// An error as `race-eval` prints it: every context, outermost first.
trait ChainText {
    fn chain_text(&self) -> String;
}

impl ChainText for anyhow::Error {
    fn chain_text(&self) -> String {
        format!("{self:#}")
    }
}

fn main_commit() -> String {
    commit_hash("tiny-main")
}
fn v0_commit() -> String {
    commit_hash("tiny-v0")
}
fn data_commit() -> String {
    commit_hash("race-sample")
}

/// Rows of the sample's test split, all and by level, as the Hub's configs hold them.
fn dataset_files() -> Vec<HubFile> {
    let rows = jsonl_rows(&manifest().join("datasets/sample/test.jsonl"));
    let of = |prefix: &str| -> Vec<serde_json::Value> {
        rows.iter()
            .filter(|r| r["example_id"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .collect()
    };
    vec![
        HubFile::new("README.md", b"# RACE sample\n".to_vec()),
        HubFile::new(
            "all/test-00000-of-00001.parquet",
            race_parquet_bytes(&rows, RACE_COLUMNS),
        ),
        HubFile::new(
            "high/test-00000-of-00001.parquet",
            race_parquet_bytes(&of("high"), RACE_COLUMNS),
        ),
        HubFile::new(
            "middle/test-00000-of-00001.parquet",
            race_parquet_bytes(&of("middle"), RACE_COLUMNS),
        ),
    ]
}

fn fixture_hub() -> HubServer {
    let models = manifest().join("datasets/models");
    let tiny = HubRepo::new(
        "models",
        "race-eval/tiny-albert",
        &main_commit(),
        folder_files(&models.join("tiny-albert")),
    )
    .with_tag("v0", &v0_commit(), folder_files(&models.join("no-prefix")));
    let mut tiny = tiny;
    tiny.aliases.push("tiny-albert-legacy".into());
    let sharded = HubRepo::new(
        "models",
        "race-eval/sharded",
        &commit_hash("sharded"),
        folder_files(&models.join("sharded")),
    );
    let mut private = HubRepo::new(
        "models",
        "race-eval/private",
        &commit_hash("private"),
        folder_files(&models.join("tiny-albert")),
    );
    private.private = true;
    let race = HubRepo::new(
        "datasets",
        "race-eval/race-sample",
        &data_commit(),
        dataset_files(),
    );
    let rows = jsonl_rows(&manifest().join("datasets/sample/test.jsonl"));
    let broken = HubRepo::new(
        "datasets",
        "race-eval/no-answers",
        &commit_hash("broken"),
        vec![HubFile::new(
            "data/test-00000-of-00001.parquet",
            race_parquet_bytes(&rows, &["example_id", "article", "question"]),
        )],
    );
    HubServer::start(vec![tiny, sharded, private, race, broken], Some(TOKEN))
}

/// `--data SPEC --split SPLIT` (all levels) through the hub resolver.
fn data_spec(spec: &str, split: &str, cfg: &HubConfig) -> anyhow::Result<PathBuf> {
    open::open_data(Path::new(spec), split, LevelFilter::All, cfg).map(|d| d.path)
}

fn config(server: &HubServer, home: &Path) -> HubConfig {
    HubConfig {
        endpoint: server.url.clone(),
        cache_dir: home.join("hub"),
        token: None,
        offline: false,
        progress: false,
    }
}

fn snapshot(home: &Path, kind: &str, id: &str, commit: &str) -> PathBuf {
    home.join("hub")
        .join(format!("{kind}--{}", id.replace('/', "--")))
        .join("snapshots")
        .join(commit)
}

#[test]
fn first_download_fills_the_cache_and_a_second_run_needs_no_server() {
    let mut server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());

    let m = open::open_model("race-eval/tiny-albert", None, &cfg).unwrap();
    let snap = snapshot(
        home.path(),
        "models",
        "race-eval/tiny-albert",
        &main_commit(),
    );
    assert_eq!(m.dir, snap);
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let want = std::fs::read(manifest().join("datasets/models/tiny-albert").join(f)).unwrap();
        assert_eq!(std::fs::read(snap.join(f)).unwrap(), want, "{f}");
        // Python's layout: the snapshot entry links to a blob named by the ETag.
        assert!(snap.join(f).is_symlink(), "{f} is a link into blobs/");
    }
    let repo_dir = home.path().join("hub/models--race-eval--tiny-albert");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        main_commit()
    );
    assert!(!repo_dir.join("refs").join(main_commit()).exists());
    assert!(matches!(m.tokenizer, TokenizerFile::Json(_)));
    let data_dir = data_spec("hub:race-eval/race-sample", "test", &cfg).unwrap();
    assert_eq!(
        data_dir,
        snapshot(
            home.path(),
            "datasets",
            "race-eval/race-sample",
            &data_commit()
        )
        .join("all")
    );
    let requests = server.log().len();
    assert!(requests > 0);

    server.stop();
    let again = open::open_model("race-eval/tiny-albert", None, &cfg).unwrap();
    assert_eq!(again.dir, snap);
    let again = data_spec("hub:race-eval/race-sample", "test", &cfg).unwrap();
    assert_eq!(again, data_dir);
    assert_eq!(server.log().len(), requests, "the cache answered alone");
    // A model not in the cache now needs the (stopped) server: a clear network error.
    let e = open::open_model("race-eval/sharded", None, &cfg)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("cannot reach") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
    assert!(e.contains(&cfg.cache_dir.display().to_string()), "{e}");
}

#[test]
fn offline_mode_uses_only_the_cache_and_names_what_is_missing() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let mut cfg = config(&server, home.path());
    cfg.offline = true;
    let e = open::open_model("race-eval/tiny-albert@v0", None, &cfg)
        .unwrap_err()
        .chain_text();
    for part in [
        "HF_HUB_OFFLINE",
        "race-eval/tiny-albert",
        "`v0`",
        "config.json",
    ] {
        assert!(e.contains(part), "{part:?} missing from: {e}");
    }
    let e = data_spec("hub:race-eval/race-sample", "test", &cfg)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("race-eval/race-sample") && e.contains("split `test`"),
        "{e}"
    );
    assert!(
        server.log().is_empty(),
        "offline mode sent {:?}",
        server.log()
    );
    assert!(open::download("race-eval/tiny-albert", None, &cfg).is_err());

    cfg.offline = false;
    open::open_model("race-eval/tiny-albert@v0", None, &cfg).unwrap();
    let test_dir = data_spec("hub:race-eval/race-sample", "test", &cfg).unwrap();
    let before = server.log().len();
    cfg.offline = true;
    let m = open::open_model("race-eval/tiny-albert@v0", None, &cfg).unwrap();
    assert!(m.dir.ends_with(v0_commit()));
    let again = data_spec("hub:race-eval/race-sample", "test", &cfg).unwrap();
    assert_eq!(again, test_dir);
    // Only the test split was fetched: the train split is a named miss.
    let e = data_spec("hub:race-eval/race-sample", "train", &cfg).unwrap_err();
    assert!(format!("{e:#}").contains("HF_HUB_OFFLINE"), "{e:#}");
    assert_eq!(server.log().len(), before);
}

#[test]
fn revision_pins_by_tag_flag_and_commit() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    let want =
        std::fs::read(manifest().join("datasets/models/no-prefix/model.safetensors")).unwrap();

    let m = open::open_model("race-eval/tiny-albert@v0", None, &cfg).unwrap();
    assert!(m.dir.ends_with(v0_commit()));
    assert_eq!(
        std::fs::read(m.dir.join("model.safetensors")).unwrap(),
        want
    );
    let refs = home.path().join("hub/models--race-eval--tiny-albert/refs");
    assert_eq!(
        std::fs::read_to_string(refs.join("v0")).unwrap(),
        v0_commit()
    );
    assert!(!refs.join("main").exists(), "main was never asked for");

    let m = open::open_model("race-eval/tiny-albert", Some("v0"), &cfg).unwrap();
    assert!(m.dir.ends_with(v0_commit()));
    let m = open::open_model("race-eval/tiny-albert", Some(&v0_commit()), &cfg).unwrap();
    assert!(m.dir.ends_with(v0_commit()));
    let m = open::open_model("race-eval/tiny-albert", None, &cfg).unwrap();
    assert!(m.dir.ends_with(main_commit()));
    assert_ne!(
        std::fs::read(m.dir.join("model.safetensors")).unwrap(),
        want
    );
}

#[test]
fn not_found_errors_name_the_repo_revision_or_split() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    let e = open::open_model("race-eval/nope", None, &cfg)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("race-eval/nope") && e.contains("404") && e.contains("not found"),
        "{e}"
    );
    let e = open::open_model("race-eval/tiny-albert@v9", None, &cfg)
        .unwrap_err()
        .chain_text();
    assert!(e.contains("revision `v9`"), "{e}");
    let e = data_spec("hub:race-eval/race-sample/high", "train", &cfg)
        .unwrap_err()
        .chain_text();
    assert!(e.contains("no split `train`") && e.contains("test"), "{e}");
    let e = data_spec("hub:race-eval/race-sample/grade9", "test", &cfg)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("no config `grade9`") && e.contains("all, high, middle"),
        "{e}"
    );
}

#[test]
fn private_repos_need_hf_token_which_is_never_shown() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let mut cfg = config(&server, home.path());
    let e = open::open_model("race-eval/private", None, &cfg)
        .unwrap_err()
        .chain_text();
    assert!(e.contains("401") && e.contains("HF_TOKEN"), "{e}");
    cfg.token = Some("hf_wrong_token_456".into());
    let e = open::open_model("race-eval/private", None, &cfg)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("401") && !e.contains("hf_wrong_token_456"),
        "{e}"
    );
    cfg.token = Some(TOKEN.into());
    let m = open::open_model("race-eval/private", None, &cfg).unwrap();
    assert!(m.dir.join("model.safetensors").is_file());
    assert!(!format!("{cfg:?}").contains(TOKEN));
}

#[test]
fn an_interrupted_transfer_is_never_used_and_is_resumed() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    let weights = HubFile::new(
        "model.safetensors",
        std::fs::read(manifest().join("datasets/models/tiny-albert/model.safetensors")).unwrap(),
    );
    let cdn = format!("/cdn/{}", weights.sha256());
    server.faults().truncate.insert(cdn.clone(), 1);

    let e = open::open_model("race-eval/tiny-albert", None, &cfg)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("model.safetensors") && e.contains("interrupted"),
        "{e}"
    );
    let snap = snapshot(
        home.path(),
        "models",
        "race-eval/tiny-albert",
        &main_commit(),
    );
    assert!(
        !snap.join("model.safetensors").exists(),
        "no incomplete file in the snapshot"
    );

    let m = open::open_model("race-eval/tiny-albert", None, &cfg).unwrap();
    assert_eq!(
        std::fs::read(m.dir.join("model.safetensors")).unwrap(),
        *weights.content
    );
    let body_requests: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.starts_with(&format!("GET {cdn} ")) && !l.ends_with("bytes=0-0"))
        .collect();
    // The second run resumed where the cut left off, with a range request.
    assert_eq!(body_requests.len(), 2, "{body_requests:?}");
    assert!(
        body_requests[0].ends_with("range=bytes=0-"),
        "{body_requests:?}"
    );
    let resumed_at = format!("range=bytes={}-", weights.content.len() / 2);
    assert!(body_requests[1].ends_with(&resumed_at), "{body_requests:?}");
    let blobs = home.path().join("hub/models--race-eval--tiny-albert/blobs");
    let parts = std::fs::read_dir(blobs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .count();
    assert_eq!(parts, 0, "no partial file left behind");
}

#[test]
fn a_corrupt_transfer_is_detected_and_deleted() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    server
        .faults()
        .corrupt
        .push("/race-eval/tiny-albert/resolve/".to_string() + &main_commit() + "/config.json");
    let e = open::open_model("race-eval/tiny-albert", None, &cfg)
        .unwrap_err()
        .chain_text();
    assert!(e.contains("config.json") && e.contains("corrupt"), "{e}");
    let snap = snapshot(
        home.path(),
        "models",
        "race-eval/tiny-albert",
        &main_commit(),
    );
    assert!(!snap.join("config.json").exists());
    server.faults().corrupt.clear();
    open::open_model("race-eval/tiny-albert", None, &cfg).unwrap();
}

#[test]
fn sharded_checkpoints_bring_their_shards() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    let m = open::open_model("race-eval/sharded", None, &cfg).unwrap();
    let files = race_eval::model::weights::find_weight_files(&m.dir).unwrap();
    assert_eq!(files.len(), 6);
    assert!(!m.dir.join("model.safetensors").exists());
}

#[test]
fn hub_parquet_reads_like_the_jsonl_it_was_written_from() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    let opts = LoadOptions::default();
    let local = data::load(&manifest().join("datasets/sample/test.jsonl"), &opts).unwrap();
    let dir = data_spec("hub:race-eval/race-sample", "test", &cfg).unwrap();
    let hubbed = data::load(&dir, &opts).unwrap();
    assert_eq!(hubbed.format, "parquet");
    assert_eq!(hubbed.questions.len(), local.questions.len());
    for (a, b) in hubbed.questions.iter().zip(&local.questions) {
        assert_eq!(
            (&a.id, &*a.article, &a.question, &a.options, a.label),
            (&b.id, &*b.article, &b.question, &b.options, b.label)
        );
    }
    // --level high picks the `high` config.
    let high = open::open_data(
        Path::new("hub:race-eval/race-sample"),
        "test",
        LevelFilter::High,
        &cfg,
    )
    .unwrap()
    .path;
    assert!(high.ends_with("high"));
    let ds = data::load(&high, &opts).unwrap();
    assert!(!ds.questions.is_empty());
    assert!(ds
        .questions
        .iter()
        .all(|q| q.passage_id.starts_with("high")));

    let broken = data_spec("hub:race-eval/no-answers", "test", &cfg).unwrap();
    let e = data::load(&broken, &opts).unwrap_err().chain_text();
    assert!(e.contains("missing column(s) options, answer"), "{e}");
}

#[test]
fn eval_through_the_hub_matches_the_same_files_used_locally() {
    let mut server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let out = home.path();
    let local = out.join("local.jsonl");
    let hubbed = out.join("hub.jsonl");
    let offline = out.join("offline.jsonl");
    let tiny = manifest().join("datasets/models/tiny-albert");
    let sample = manifest().join("datasets/sample/test.jsonl");
    ok(&race_eval(
        out,
        &server.url,
        &[
            "eval",
            "--model",
            tiny.to_str().unwrap(),
            "--data",
            sample.to_str().unwrap(),
            "--predictions",
            local.to_str().unwrap(),
            "-q",
            "--max-seq-len",
            "128",
            "--max-qa-len",
            "32",
        ],
        false,
    ));
    let text = ok(&race_eval(
        out,
        &server.url,
        &[
            "eval",
            "--model",
            "race-eval/tiny-albert",
            "--data",
            "hub:race-eval/race-sample",
            "--split",
            "test",
            "--predictions",
            hubbed.to_str().unwrap(),
            "-q",
            "--max-seq-len",
            "128",
            "--max-qa-len",
            "32",
        ],
        false,
    ));
    assert!(text.contains("19 questions"), "{text}");
    let local_preds = std::fs::read_to_string(&local).unwrap();
    assert!(!local_preds.is_empty());
    assert_eq!(std::fs::read_to_string(&hubbed).unwrap(), local_preds);

    let text = ok(&race_eval(
        out,
        &server.url,
        &["download", "hub:race-eval/race-sample"],
        false,
    ));
    assert!(
        text.contains("3 file(s)") && text.contains(&data_commit()),
        "{text}"
    );
    let text = ok(&race_eval(
        out,
        &server.url,
        &["download", "race-eval/tiny-albert@v0", "-q"],
        false,
    ));
    assert!(
        text.contains(&v0_commit()) && text.contains("model.safetensors"),
        "{text}"
    );

    server.stop();
    let text = ok(&race_eval(
        out,
        &server.url,
        &[
            "eval",
            "--model",
            "race-eval/tiny-albert",
            "--data",
            "hub:race-eval/race-sample",
            "--predictions",
            offline.to_str().unwrap(),
            "-q",
            "--max-seq-len",
            "128",
            "--max-qa-len",
            "32",
        ],
        true,
    ));
    assert!(text.contains("19 questions"), "{text}");
    assert_eq!(std::fs::read_to_string(&offline).unwrap(), local_preds);

    let bad = race_eval(
        out,
        &server.url,
        &[
            "eval",
            "--model",
            "race-eval/other",
            "--data",
            "hub:race-eval/race-sample",
        ],
        true,
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("race-eval/other"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_token_never_reaches_output() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_race-eval"));
    let out = cmd
        .args(["download", "race-eval/private", "-q"])
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", &server.url)
        .env("HF_TOKEN", TOKEN)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(
        text.contains("race-eval/private") && !text.contains(TOKEN),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_race-eval"))
        .args(["download", "race-eval/private", "-q"])
        .env("HF_HOME", home.path().join("other"))
        .env("HF_ENDPOINT", &server.url)
        .env("HF_TOKEN", "hf_not_the_token")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HF_TOKEN") && !err.contains("hf_not_the_token"),
        "{err}"
    );
}

#[test]
fn a_repo_with_only_spiece_model_gets_a_converted_tokenizer() {
    let spm = manifest().join("../shared/tokenizer/albert-spiece.model");
    let reference = manifest().join("../shared/tokenizer/albert-base-v2-tokenizer.json");
    if !spm.is_file() || !reference.is_file() {
        eprintln!("SKIPPED: ../shared/tokenizer (ALBERT's real spiece.model) is not present");
        return;
    }
    let tiny = manifest().join("datasets/models/tiny-albert");
    let files = vec![
        HubFile::new(
            "config.json",
            std::fs::read(tiny.join("config.json")).unwrap(),
        ),
        HubFile::new(
            "model.safetensors",
            std::fs::read(tiny.join("model.safetensors")).unwrap(),
        ),
        HubFile::new("spiece.model", std::fs::read(&spm).unwrap()),
        HubFile::new(
            "tokenizer_config.json",
            br#"{"do_lower_case": true}"#.to_vec(),
        ),
    ];
    let server = HubServer::start(
        vec![HubRepo::new(
            "models",
            "race-eval/spiece-only",
            &commit_hash("spm"),
            files,
        )],
        None,
    );
    let home = tempfile::tempdir().unwrap();
    let m = open::open_model("race-eval/spiece-only", None, &config(&server, home.path())).unwrap();
    assert!(matches!(
        m.tokenizer,
        TokenizerFile::Spiece {
            config: Some(_),
            ..
        }
    ));
    // The conversion alone: the real 30k vocabulary does not fit tiny-albert's 800 rows, which
    // `load_tokenizer` refuses (the fixture only pairs them to serve a spiece-only repo).
    let ours = m.tokenizer.load().unwrap();
    assert!(m.load_tokenizer().is_err());
    let theirs = tokenizers::Tokenizer::from_file(reference).unwrap();
    let text = "The ``quick'' brown fox -- Café, 1,000 (or 2,000) £5!";
    assert_eq!(
        ours.encode(text, true).unwrap().get_ids(),
        theirs.encode(text, true).unwrap().get_ids()
    );
}

#[test]
fn a_bare_legacy_name_follows_the_hubs_relative_redirects() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    let m = open::open_model("tiny-albert-legacy", None, &cfg).unwrap();
    // Cached under the name asked for, as Python does.
    assert_eq!(
        m.dir,
        snapshot(home.path(), "models", "tiny-albert-legacy", &main_commit())
    );
    let want =
        std::fs::read(manifest().join("datasets/models/tiny-albert/model.safetensors")).unwrap();
    assert_eq!(
        std::fs::read(m.dir.join("model.safetensors")).unwrap(),
        want
    );
    let log = server.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/models/tiny-albert-legacy/")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /tiny-albert-legacy/resolve/")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /race-eval/tiny-albert/resolve/")),
        "{log:?}"
    );
}

#[test]
fn a_gated_repo_says_to_accept_its_conditions() {
    let tiny = manifest().join("datasets/models/tiny-albert");
    let mut gated = HubRepo::new(
        "models",
        "race-eval/gated",
        &commit_hash("gated"),
        folder_files(&tiny),
    );
    gated.gated = true;
    let server = HubServer::start(vec![gated], None);
    let home = tempfile::tempdir().unwrap();
    let e = open::open_model("race-eval/gated", None, &config(&server, home.path()))
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("gated") && e.contains("403") && e.contains("HF_TOKEN"),
        "{e}"
    );
    assert!(e.contains("race-eval/gated"), "{e}");
}

/// Overwrites the blob behind a snapshot file (as a disk error or a stray edit would).
fn tamper(snapshot_file: &Path) {
    let blob = std::fs::canonicalize(snapshot_file).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
}

#[test]
fn a_cached_blob_changed_after_download_is_fetched_again_or_refused_offline() {
    let server = fixture_hub();
    let home = tempfile::tempdir().unwrap();
    let cfg = config(&server, home.path());
    let m = open::open_model("race-eval/tiny-albert", None, &cfg).unwrap();
    let weights = m.dir.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();
    let data = data_spec("hub:race-eval/race-sample", "test", &cfg).unwrap();
    let parquet = data.join("test-00000-of-00001.parquet");
    let good_parquet = std::fs::read(&parquet).unwrap();

    // Offline, a damaged blob is refused, naming the file and what to do.
    tamper(&weights);
    tamper(&parquet);
    let offline = HubConfig {
        offline: true,
        ..cfg.clone()
    };
    let e = open::open_model("race-eval/tiny-albert", None, &offline)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("model.safetensors")
            && e.contains("damaged")
            && e.contains("race-eval download"),
        "{e}"
    );
    let e = data_spec("hub:race-eval/race-sample", "test", &offline)
        .unwrap_err()
        .chain_text();
    assert!(
        e.contains("test-00000-of-00001.parquet") && e.contains("damaged"),
        "{e}"
    );

    // Online, it is deleted and fetched again: the file is whole once more.
    let m = open::open_model("race-eval/tiny-albert", None, &cfg).unwrap();
    assert_eq!(
        std::fs::read(m.dir.join("model.safetensors")).unwrap(),
        good
    );
    data_spec("hub:race-eval/race-sample", "test", &cfg).unwrap();
    assert_eq!(std::fs::read(&parquet).unwrap(), good_parquet);

    // `download` checks what it finds in the cache too.
    tamper(&weights);
    open::download("race-eval/tiny-albert", None, &cfg).unwrap();
    assert_eq!(std::fs::read(&weights).unwrap(), good);
}
