//! One door for every command: `train` (head-only and full), `distill` (teachers and students),
//! `bench` and `info` open Hub models pinned to a revision and `hub:` parquet datasets exactly as
//! `eval` does, give the same bytes as the same files used locally, and rerun offline from the
//! cache. Against the loopback Hub of tests/common; the `race-eval` binary end to end.

mod common;
mod synthetic;

use std::path::{Path, PathBuf};

use common::*;

const MODEL: &str = "race-eval/tiny-albert";
const DATA: &str = "hub:race-eval/synthetic";

fn v1_commit() -> String {
    commit_hash("tiny-albert v1")
}

/// Parquet bytes of the synthetic task's train and dev splits.
fn splits(tmp: &Path) -> (Vec<u8>, Vec<u8>) {
    let model = synthetic::repo(synthetic::TINY);
    let data = synthetic::synthetic_task(tmp, &model, 48, 24);
    let bytes = |split: &str| {
        race_parquet_bytes(
            &jsonl_rows(&data.join(format!("{split}.jsonl"))),
            RACE_COLUMNS,
        )
    };
    (bytes("train"), bytes("dev"))
}

/// The same splits as local parquet files, in the Hub's shard naming (dev as `validation`).
fn local_parquet(tmp: &Path, train: &[u8], dev: &[u8]) -> PathBuf {
    let dir = tmp.join("local-parquet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train-00000-of-00001.parquet"), train).unwrap();
    std::fs::write(dir.join("validation-00000-of-00001.parquet"), dev).unwrap();
    dir
}

/// `race-eval/tiny-albert`: `main` holds another model (groups-gelu), the tag `v1` the bundled
/// tiny-albert, so only a correctly pinned revision matches the local folder.
/// `race-eval/synthetic`: the splits as parquet under config `default`.
fn hub(train: &[u8], dev: &[u8]) -> HubServer {
    let models = manifest().join("datasets/models");
    let model = HubRepo::new(
        "models",
        MODEL,
        &commit_hash("tiny-albert main"),
        folder_files(&models.join("groups-gelu")),
    )
    .with_tag(
        "v1",
        &v1_commit(),
        folder_files(&models.join("tiny-albert")),
    );
    let data = HubRepo::new(
        "datasets",
        "race-eval/synthetic",
        &commit_hash("synthetic"),
        vec![
            HubFile::new("default/train-00000-of-00001.parquet", train.to_vec()),
            HubFile::new("default/validation-00000-of-00001.parquet", dev.to_vec()),
        ],
    );
    HubServer::start(vec![model, data], None)
}

/// A short run's settings: small sequences, `steps` steps, dev accuracy every 2 steps.
fn recipe(steps: usize, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--steps",
        &steps.to_string(),
        "--eval-every",
        "2",
        "--batch-size",
        "8",
        "--micro-batch-size",
        "4",
        "--max-seq-len",
        "48",
        "--max-qa-len",
        "16",
        "--eval-batch-size",
        "8",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(home: &Path, endpoint: &str, args: Vec<String>, offline: bool) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&race_eval(home, endpoint, &args, offline))
}

fn train_args(model: &str, data: &str, output: &Path, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["train", "--model", model, "--data", data, "--output"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(output.display().to_string());
    v.extend(recipe(steps, extra));
    v
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&bytes(&dir.join("meta.json"))).unwrap()
}

#[test]
fn train_from_a_pinned_hub_model_on_hub_parquet_equals_the_local_run_and_reruns_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, dev) = splits(tmp.path());
    let local_data = local_parquet(tmp.path(), &train, &dev);
    let mut server = hub(&train, &dev);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let url = server.url.clone();
    let local_model = manifest().join("datasets/models/tiny-albert");
    let (lm, ld) = (local_model.to_str().unwrap(), local_data.to_str().unwrap());
    let out = |n: &str| tmp.path().join(n);
    // Separate feature caches, so that each run computes its own features.
    let cache = |n: &str| out(&format!("cache-{n}")).display().to_string();

    // Head-only: from the local folder and parquet files, and from the Hub pinned as ID@TAG.
    let head_args = |model: &str, data: &str, o: &str| {
        let c = cache(o);
        train_args(model, data, &out(o), 4, &["--head-only", "--cache-dir", &c])
    };
    run(&home, &url, head_args(lm, ld, "local-head"), false);
    let pinned = format!("{MODEL}@v1");
    run(&home, &url, head_args(&pinned, DATA, "hub-head"), false);
    let head = |o: &str| bytes(&out(o).join("head.safetensors"));
    assert_eq!(
        head("local-head"),
        head("hub-head"),
        "the head trained through the Hub differs from the local one"
    );
    // The head folder names its base so that it reopens exactly that commit.
    let m = meta(&out("hub-head"));
    assert_eq!(m["base_model"], format!("{MODEL}@{}", v1_commit()));
    assert_eq!(
        m["base_weights_hash"],
        meta(&out("local-head"))["base_weights_hash"]
    );
    assert_eq!(m["data_hash"], meta(&out("local-head"))["data_hash"]);
    // `main` is another model: unpinned, the same command trains on other weights.
    run(&home, &url, head_args(MODEL, DATA, "hub-main-head"), false);
    assert_ne!(head("hub-main-head").len(), 0);
    assert_ne!(
        meta(&out("hub-main-head"))["base_weights_hash"],
        m["base_weights_hash"],
        "main and v1 are different weights"
    );

    // Full fine-tuning, pinned with --revision this time.
    let full = |model: &str, data: &str, o: &str, rev: Option<&str>| {
        let mut a = train_args(model, data, &out(o), 2, &[]);
        if let Some(r) = rev {
            a.extend(["--revision".to_string(), r.to_string()]);
        }
        a
    };
    run(&home, &url, full(lm, ld, "local-full", None), false);
    run(
        &home,
        &url,
        full(MODEL, DATA, "hub-full", Some("v1")),
        false,
    );
    let model_bytes = |o: &str| bytes(&out(o).join("model.safetensors"));
    assert_eq!(model_bytes("local-full"), model_bytes("hub-full"));
    // A fully fine-tuned folder is a model folder: its tokenizer came along.
    assert!(out("hub-full").join("tokenizer.json").is_file());

    // Offline, with the server gone: the same commands from the cache, the same bytes.
    server.stop();
    run(&home, &url, head_args(&pinned, DATA, "offline-head"), true);
    assert_eq!(head("offline-head"), head("local-head"));
    run(
        &home,
        &url,
        full(MODEL, DATA, "offline-full", Some("v1")),
        true,
    );
    assert_eq!(model_bytes("offline-full"), model_bytes("local-full"));

    // The Hub-trained head folder evaluates as --model offline (its base reopened from the
    // cache), as its base with --head does.
    let eval = |model: &str, head: Option<&Path>| {
        let mut a: Vec<String> = [
            "eval",
            "--model",
            model,
            "--data",
            DATA,
            "--split",
            "dev",
            "--max-seq-len",
            "48",
            "--max-qa-len",
            "16",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(h) = head {
            a.extend(["--head".to_string(), h.display().to_string()]);
        }
        let text = run(&home, &url, a, true);
        text.lines()
            .find(|l| l.starts_with("overall"))
            .unwrap_or_else(|| panic!("no overall line in {text}"))
            .to_string()
    };
    let as_model = eval(out("hub-head").to_str().unwrap(), None);
    let with_head = eval(&pinned, Some(&out("local-head")));
    assert_eq!(as_model, with_head);
}

#[test]
fn distill_takes_hub_teachers_and_students_and_bench_takes_hub_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, dev) = splits(tmp.path());
    let local_data = local_parquet(tmp.path(), &train, &dev);
    let mut server = hub(&train, &dev);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let url = server.url.clone();
    let local_model = manifest().join("datasets/models/tiny-albert");
    let (lm, ld) = (local_model.to_str().unwrap(), local_data.to_str().unwrap());
    let pinned = format!("{MODEL}@v1");
    let out = |n: &str| tmp.path().join(n);
    let distill = |teacher: &str, student: &str, data: &str, o: &str| {
        let mut a: Vec<String> = [
            "distill",
            "--teacher",
            teacher,
            "--student",
            student,
            "--student-layers",
            "1",
            "--data",
            data,
            "--output",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(out(o).display().to_string());
        a.extend(recipe(2, &[]));
        a
    };
    run(&home, &url, distill(lm, lm, ld, "local"), false);
    run(&home, &url, distill(&pinned, &pinned, DATA, "hub"), false);
    for f in ["soft_targets.jsonl", "model.safetensors"] {
        assert_eq!(
            bytes(&out("local").join(f)),
            bytes(&out("hub").join(f)),
            "{f} differs between the local and the Hub distillation"
        );
    }
    let m = meta(&out("hub"));
    assert_eq!(
        m["distill"]["teachers"][0]["model"],
        format!("{MODEL}@{}", v1_commit())
    );

    // bench: a Hub id end to end over a Hub split, and in fixed-shape mode.
    let text = run(
        &home,
        &url,
        [
            "bench",
            "--model",
            &pinned,
            "--data",
            DATA,
            "--split",
            "dev",
            "--batch",
            "4",
            "--max-seq-len",
            "48",
            "--max-qa-len",
            "16",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        false,
    );
    let v: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    assert_eq!(v["questions"], 24);
    assert!(v["real_tokens"].as_u64().unwrap() > 0);
    let text = run(
        &home,
        &url,
        [
            "bench",
            "--model",
            &pinned,
            "--seq",
            "32",
            "--repeats",
            "1",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        false,
    );
    assert!(text.contains("\"results\""), "{text}");

    // info: a Hub id's config.json alone.
    let text = run(
        &home,
        &url,
        ["info", &pinned, "--json"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        false,
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let local: serde_json::Value =
        serde_json::from_slice(&bytes(&local_model.join("config.json"))).unwrap();
    assert_eq!(v["config"]["hidden_size"], local["hidden_size"]);

    // Offline, the server gone: distill and bench rerun from the cache.
    server.stop();
    run(
        &home,
        &url,
        distill(&pinned, &pinned, DATA, "offline"),
        true,
    );
    assert_eq!(
        bytes(&out("offline").join("model.safetensors")),
        bytes(&out("hub").join("model.safetensors"))
    );
    let text = run(
        &home,
        &url,
        [
            "bench",
            "--model",
            &pinned,
            "--data",
            DATA,
            "--split",
            "dev",
            "--batch",
            "4",
            "--max-seq-len",
            "48",
            "--max-qa-len",
            "16",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        true,
    );
    assert!(text.contains("\"questions\": 24"), "{text}");
}

/// A SentencePiece ModelProto of single characters (and the ALBERT specials): enough for a
/// tokenizer that only `spiece.model` describes.
fn char_spiece() -> Vec<u8> {
    const NORMAL: u8 = 1;
    const UNKNOWN: u8 = 2;
    const CONTROL: u8 = 3;
    let piece = |text: &str, score: f32, kind: u8| -> Vec<u8> {
        let mut p = vec![0x0a, text.len() as u8];
        p.extend_from_slice(text.as_bytes());
        p.push(0x15);
        p.extend_from_slice(&score.to_le_bytes());
        p.extend_from_slice(&[0x18, kind]);
        let mut out = vec![0x0a, p.len() as u8];
        out.extend(p);
        out
    };
    let mut buf = Vec::new();
    for (text, kind) in [
        ("<pad>", CONTROL),
        ("<unk>", UNKNOWN),
        ("[CLS]", CONTROL),
        ("[SEP]", CONTROL),
        ("[MASK]", CONTROL),
    ] {
        buf.extend(piece(text, 0.0, kind));
    }
    buf.extend(piece("\u{2581}", -1.0, NORMAL));
    for c in "abcdefghijklmnopqrstuvwxyz0123456789.,?!'\"-_:;()".chars() {
        buf.extend(piece(&c.to_string(), -2.0, NORMAL));
    }
    // trainer_spec { unk_id: 1 }
    buf.extend_from_slice(&[0x12, 0x03, 0xc0, 0x02, 0x01]);
    buf
}

#[test]
fn a_model_with_only_spiece_model_trains_locally_and_from_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = manifest().join("datasets/models/tiny-albert");
    let spm_dir = tmp.path().join("spiece-tiny");
    std::fs::create_dir_all(&spm_dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny.join(f), spm_dir.join(f)).unwrap();
    }
    std::fs::write(spm_dir.join("spiece.model"), char_spiece()).unwrap();
    std::fs::write(
        spm_dir.join("tokenizer_config.json"),
        br#"{"do_lower_case": true}"#,
    )
    .unwrap();
    let sample = manifest().join("datasets/sample");
    let rows = |split: &str| jsonl_rows(&sample.join(format!("{split}.jsonl")));
    let server = HubServer::start(
        vec![
            HubRepo::new(
                "models",
                "race-eval/spiece-tiny",
                &commit_hash("spiece"),
                folder_files(&spm_dir),
            ),
            HubRepo::new(
                "datasets",
                "race-eval/sample",
                &commit_hash("sample"),
                vec![
                    HubFile::new(
                        "all/test-00000-of-00001.parquet",
                        race_parquet_bytes(&rows("test"), RACE_COLUMNS),
                    ),
                    HubFile::new(
                        "all/validation-00000-of-00001.parquet",
                        race_parquet_bytes(&rows("dev"), RACE_COLUMNS),
                    ),
                ],
            ),
        ],
        None,
    );
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = |n: &str| tmp.path().join(n);
    let args = |model: &str, data: &str, o: &str| {
        let c = out(&format!("cache-{o}")).display().to_string();
        train_args(
            model,
            data,
            &out(o),
            4,
            &["--split", "test", "--head-only", "--cache-dir", &c],
        )
    };
    // The same rows as local parquet files (the sample's RACE tree orders passages otherwise).
    let local = out("sample-parquet");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(
        local.join("test.parquet"),
        race_parquet_bytes(&rows("test"), RACE_COLUMNS),
    )
    .unwrap();
    std::fs::write(
        local.join("validation.parquet"),
        race_parquet_bytes(&rows("dev"), RACE_COLUMNS),
    )
    .unwrap();
    let local = local.display().to_string();
    run(
        &home,
        &server.url,
        args(spm_dir.to_str().unwrap(), &local, "local"),
        false,
    );
    run(
        &home,
        &server.url,
        args("race-eval/spiece-tiny", "hub:race-eval/sample", "hub"),
        false,
    );
    assert_eq!(
        bytes(&out("local").join("head.safetensors")),
        bytes(&out("hub").join("head.safetensors"))
    );
    // The output folder carries the tokenizer the model came with.
    for o in ["local", "hub"] {
        assert!(out(o).join("spiece.model").is_file());
        assert!(out(o).join("tokenizer_config.json").is_file());
        assert!(!out(o).join("tokenizer.json").exists());
    }
    assert_eq!(meta(&out("local"))["train_questions"], rows("test").len());
}

#[test]
fn a_mistyped_local_path_is_a_missing_folder_before_anything_about_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    // No Hub at this address: a message about the Hub would mean it was asked.
    let endpoint = "http://127.0.0.1:9";
    for (cmd, flag) in [("train", "--model"), ("bench", "--model")] {
        let mut args = vec![cmd, flag, "./heads/typo", "--data", "datasets/sample"];
        if cmd == "train" {
            args.extend(["--output", "o"]);
        }
        let o = race_eval(tmp.path(), endpoint, &args, false);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success());
        assert!(
            err.contains("./heads/typo") && err.contains("no such folder") && !err.contains("Hub"),
            "{cmd}: {err}"
        );
    }
    let o = race_eval(
        tmp.path(),
        endpoint,
        &[
            "train",
            "--model",
            "no-such-model-xyz",
            "--data",
            "nowhere",
            "--output",
            "o",
        ],
        false,
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("no-such-model-xyz") && err.contains("no local folder of that name"),
        "a bare name is looked up on the Hub and says why: {err}"
    );
}
