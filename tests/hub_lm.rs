//! Decoder LMs by Hub id, against the loopback Hub (tests/common): a Llama repository in the
//! transformers layout (`--model ORG/NAME`, the tiny random Llama of
//! `scripts/make_lm_fixtures.py`), and one GGUF file of a repository that holds several
//! (`--model ORG/NAME/FILE.gguf`, SmolLM2's real file when `scripts/fetch_smollm2.sh` has
//! fetched it, else SKIPPED). Each run gives the same log-likelihoods as the same files used
//! locally, names the repository and commit in its run record, and runs again offline from the
//! cache; a missing file is reported with the files the repository has.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn predictions(path: &Path) -> Vec<serde_json::Value> {
    jsonl_rows(path)
}

/// The log-likelihoods of every scored option, in order.
fn logits(rows: &[serde_json::Value]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| {
            r["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// The one run record under `dir/results`.
fn summary(dir: &Path) -> serde_json::Value {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let text = std::fs::read_to_string(runs[0].join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn eval_args<'a>(model: &'a str, data: &'a str, preds: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "eval",
        "--model",
        model,
        "--data",
        data,
        "--protocol",
        "harness-all",
        "--predictions",
        preds,
        "-q",
    ];
    a.extend_from_slice(extra);
    a
}

/// One `eval` of the sample data with `model` in a fresh home against the Hub at `url`; it
/// must succeed.
struct Run {
    home: tempfile::TempDir,
    preds: PathBuf,
    text: String,
}

fn run_sample(url: &str, model: &str, extra: &[&str]) -> Run {
    let sample = manifest().join("datasets/sample/test.jsonl");
    let home = tempfile::tempdir().unwrap();
    let preds = home.path().join("p.jsonl");
    let args = eval_args(
        model,
        sample.to_str().unwrap(),
        preds.to_str().unwrap(),
        extra,
    );
    let text = ok(&race_eval(home.path(), url, &args, false));
    Run { home, preds, text }
}

#[test]
fn a_llama_repository_by_hub_id_scores_as_its_local_folder() {
    let folder = manifest().join("datasets/models/tiny-llama");
    let commit = commit_hash("tiny-llama");
    let mut server = HubServer::start(
        vec![HubRepo::new(
            "models",
            "org/tiny-llama",
            &commit,
            folder_files(&folder),
        )],
        None,
    );
    let sample = manifest().join("datasets/sample/test.jsonl");
    let sample = sample.to_str().unwrap();

    let local = run_sample(&server.url, folder.to_str().unwrap(), &[]);
    let hubbed = run_sample(&server.url, "org/tiny-llama", &[]);
    let home = &hubbed.home;
    assert!(
        hubbed.text.contains(&format!("org/tiny-llama@{commit}")),
        "the output names the repository at its commit: {}",
        hubbed.text
    );
    let (a, b) = (predictions(&local.preds), predictions(&hubbed.preds));
    assert_eq!(a.len(), 19, "every sample question is scored (harness-all)");
    assert_eq!(
        logits(&a),
        logits(&b),
        "the same files give the same numbers"
    );
    let s = summary(home.path());
    assert_eq!(s["model"]["path"], format!("org/tiny-llama@{commit}"));
    assert_eq!(s["model"]["name"], "tiny-llama");
    assert_eq!(
        s["model"]["weights_sha256"],
        summary(local.home.path())["model"]["weights_sha256"]
    );

    // Offline, with the server gone: the cache alone.
    server.stop();
    std::fs::remove_dir_all(home.path().join("results")).unwrap();
    let offline = home.path().join("offline.jsonl");
    ok(&race_eval(
        home.path(),
        &server.url,
        &eval_args("org/tiny-llama", sample, offline.to_str().unwrap(), &[]),
        true,
    ));
    assert_eq!(logits(&predictions(&offline)), logits(&b));

    // Offline, a repository never fetched: said so, nothing scored.
    let fresh = tempfile::tempdir().unwrap();
    let out = race_eval(
        fresh.path(),
        &server.url,
        &eval_args("org/tiny-llama", sample, "p.jsonl", &[]),
        true,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    assert!(!fresh.path().join("p.jsonl").exists());
}

#[test]
fn one_gguf_file_of_a_hub_repository() {
    let Some(gguf) = std::env::var_os("HOME")
        .map(PathBuf::from)
        .map(|h| h.join(".cache/race-eval/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .filter(|p| p.is_file())
    else {
        println!("SKIPPED: run scripts/fetch_smollm2.sh to fetch SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    let name = "SmolLM2-135M-Instruct.Q4_1.gguf";
    let commit = commit_hash("smol-gguf");
    let mut server = HubServer::start(
        vec![HubRepo::new(
            "models",
            "org/smol-GGUF",
            &commit,
            vec![
                HubFile::new("README.md", b"# a GGUF repository\n".to_vec()),
                HubFile::new(name, std::fs::read(&gguf).unwrap()),
            ],
        )],
        None,
    );
    let sample = manifest().join("datasets/sample/test.jsonl");
    let sample = sample.to_str().unwrap();
    let limit = ["--limit", "3"];

    let local = run_sample(&server.url, gguf.to_str().unwrap(), &limit);
    let spec = format!("org/smol-GGUF/{name}");
    let hubbed = run_sample(&server.url, &spec, &limit);
    let home = &hubbed.home;
    let b = predictions(&hubbed.preds);
    assert_eq!(b.len(), 3);
    assert_eq!(logits(&predictions(&local.preds)), logits(&b));
    let s = summary(home.path());
    assert_eq!(s["model"]["path"], format!("org/smol-GGUF@{commit}/{name}"));
    assert_eq!(s["model"]["name"], "SmolLM2-135M-Instruct.Q4_1");

    // A file the repository does not have: named, with the ones it has.
    let out = race_eval(
        home.path(),
        &server.url,
        &eval_args("org/smol-GGUF/other.Q8_0.gguf", sample, "x.jsonl", &limit),
        false,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("other.Q8_0.gguf") && err.contains(name),
        "{err}"
    );

    // `download` of that one file into a fresh cache, then that cache offline.
    let fresh = tempfile::tempdir().unwrap();
    let text = ok(&race_eval(
        fresh.path(),
        &server.url,
        &["download", &spec, "-q"],
        false,
    ));
    assert!(text.contains(&commit) && text.contains(name), "{text}");
    let fetched = fresh.path().join("fetched.jsonl");

    // Pinned by revision, then offline from the cache.
    server.stop();
    ok(&race_eval(
        fresh.path(),
        &server.url,
        &eval_args(&spec, sample, fetched.to_str().unwrap(), &limit),
        true,
    ));
    assert_eq!(logits(&predictions(&fetched)), logits(&b));
    let offline = home.path().join("offline.jsonl");
    let pinned = format!("{spec}@{commit}");
    ok(&race_eval(
        home.path(),
        &server.url,
        &eval_args(&pinned, sample, offline.to_str().unwrap(), &limit),
        true,
    ));
    assert_eq!(logits(&predictions(&offline)), logits(&b));
}

#[test]
fn a_local_decoder_refuses_revision_and_a_missing_gguf_path_is_no_hub_lookup() {
    let home = tempfile::tempdir().unwrap();
    let folder = manifest().join("datasets/models/tiny-llama");
    let sample = manifest().join("datasets/sample/test.jsonl");
    // No server at this address: a Hub lookup would fail with a connection error instead.
    let endpoint = "http://127.0.0.1:9";
    let out = race_eval(
        home.path(),
        endpoint,
        &[
            "eval",
            "--model",
            folder.to_str().unwrap(),
            "--revision",
            "v1",
            "--data",
            sample.to_str().unwrap(),
        ],
        false,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--revision v1 applies to Hub models"), "{err}");
    for missing in ["./nowhere/x.gguf", "x.gguf", "/abs/x.gguf"] {
        let out = race_eval(
            home.path(),
            endpoint,
            &[
                "eval",
                "--model",
                missing,
                "--data",
                sample.to_str().unwrap(),
            ],
            false,
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("--model {missing}: no such file")),
            "{err}"
        );
    }
}
