//! Run records end to end: the real `race-eval` binary on datasets/sample with the bundled tiny
//! models, writing into temporary folders. Covers eval records, shards and merge, compare,
//! ensemble, leaderboard, report and plot, and their refusals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_race-eval");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn race_eval(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(root())
        .output()
        .expect("race-eval runs")
}

fn ok(args: &[&str]) -> String {
    let out = race_eval(args);
    assert!(
        out.status.success(),
        "race-eval {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail cleanly (exit 1, an `error:` line, no panic); returns stderr.
fn refused(args: &[&str]) -> String {
    let out = race_eval(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "race-eval {args:?}: {err}");
    assert!(err.starts_with("error:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The `run: DIR` line of a command's output.
fn run_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap_or_else(|| panic!("no `run:` line in\n{stdout}"));
    PathBuf::from(line)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// eval into `out`; returns the run folder.
fn eval(out: &Path, model: &str, extra: &[&str]) -> PathBuf {
    let model = format!("datasets/models/{model}");
    let mut args = vec![
        "eval",
        "--model",
        &model,
        "--data",
        "datasets/sample",
        "--quiet",
        "--output-dir",
        s(out),
        // short sequences keep the suite fast; records and shards do not depend on them
        "--max-seq-len",
        "128",
        "--max-qa-len",
        "48",
        // one question per batch: padding then never depends on the other questions of a
        // batch, so shards reproduce the unsharded logits bit for bit
        "--batch-size",
        "1",
    ];
    args.extend_from_slice(extra);
    run_dir(&ok(&args))
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn predictions(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs shared by the tests (evaluated once): a full run, the same run again, three shards,
/// a second model, and a run on other data (dev).
struct Fixture {
    _tmp: tempfile::TempDir,
    results: PathBuf,
    full: PathBuf,
    again: PathBuf,
    shards: Vec<PathBuf>,
    other_model: PathBuf,
    dev: PathBuf,
    predictions_file: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let results = tmp.path().join("results");
        let predictions_file = tmp.path().join("preds.jsonl");
        let full = eval(
            &results,
            "tiny-albert",
            &["--predictions", s(&predictions_file)],
        );
        let again = eval(&results, "tiny-albert", &[]);
        let shards = (0..3)
            .map(|i| eval(&results, "tiny-albert", &["--shard", &format!("{i}/3")]))
            .collect();
        let other_model = eval(&results, "groups-gelu", &[]);
        let dev = eval(&results, "tiny-albert", &["--split", "dev"]);
        Fixture {
            _tmp: tmp,
            results,
            full,
            again,
            shards,
            other_model,
            dev,
            predictions_file,
        }
    })
}

#[test]
fn eval_writes_a_trustworthy_run_record() {
    let f = fixture();
    let sm = summary(&f.full);
    let preds = predictions(&f.full);
    let id = sm["run_id"].as_str().unwrap();
    assert!(id.starts_with("tiny-albert-test-"), "{id}");
    assert_eq!(f.full.file_name().unwrap().to_str().unwrap(), id);
    // a second run in the same second gets its own folder
    assert_ne!(f.full, f.again);

    // weights hash = sha256 of the one weight file
    let bytes =
        std::fs::read(root().join("datasets/models/tiny-albert/model.safetensors")).unwrap();
    let want: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sm["model"]["weights_sha256"], want.as_str());
    assert!(sm["model"]["head"].is_null());
    assert_eq!(sm["data"]["split"], "test");
    assert_eq!(sm["data"]["format"], "race-tree");
    assert_eq!(sm["data"]["sha256"].as_str().unwrap().len(), 64);
    assert!(!sm["race_eval"]["git_commit"].as_str().unwrap().is_empty());
    assert!(sm["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(sm["settings"]["max_seq_len"], 128);
    assert_eq!(sm["settings"]["max_qa_len"], 48);
    assert_eq!(sm["settings"]["batch_size"], 1);
    assert_eq!(sm["settings"]["dtype"], "f32");

    // the numbers agree with the predictions
    assert_eq!(sm["counts"]["questions"], preds.len());
    let correct = preds.iter().filter(|p| p["pred"] == p["label"]).count();
    let overall = &sm["accuracy"]["overall"];
    assert_eq!(overall["correct"], correct);
    let acc = overall["accuracy"].as_f64().unwrap();
    let (lo, hi) = (
        overall["ci95"]["lo"].as_f64().unwrap(),
        overall["ci95"]["hi"].as_f64().unwrap(),
    );
    assert!(lo <= acc && acc <= hi && lo >= 0.0 && hi <= 1.0);
    let middle = sm["accuracy"]["middle"]["total"].as_u64().unwrap();
    let high = sm["accuracy"]["high"]["total"].as_u64().unwrap();
    assert_eq!((middle + high) as usize, preds.len());
    // breakdowns cover every question
    for key in ["article_words", "question_kind", "gold_option"] {
        let total: u64 = sm["breakdowns"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["total"].as_u64().unwrap())
            .sum();
        assert_eq!(total as usize, preds.len(), "{key}");
    }
    assert!(preds
        .iter()
        .all(|p| p["article_words"].as_u64().unwrap() > 0));

    // --predictions still writes the same lines
    assert_eq!(
        std::fs::read_to_string(&f.predictions_file).unwrap(),
        std::fs::read_to_string(f.full.join("predictions.jsonl")).unwrap()
    );
}

#[test]
fn quiet_eval_prints_only_results() {
    let tmp = tempfile::tempdir().unwrap();
    let out = race_eval(&[
        "eval",
        "--model",
        "datasets/models/tiny-albert",
        "--data",
        "datasets/sample/test.jsonl",
        "--quiet",
        "--output-dir",
        s(tmp.path()),
    ]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("overall") && stdout.contains("run: "),
        "{stdout}"
    );
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let f = fixture();
    let full = predictions(&f.full);
    let mut shard_total = 0;
    for (i, dir) in f.shards.iter().enumerate() {
        let sm = summary(dir);
        assert_eq!(sm["shard"]["index"], i);
        assert_eq!(sm["shard"]["count"], 3);
        let part = predictions(dir);
        for (k, p) in part.iter().enumerate() {
            assert_eq!(p["id"], full[i + 3 * k]["id"]);
        }
        shard_total += part.len();
    }
    assert_eq!(shard_total, full.len());

    // any order of arguments
    let merged_out = tempfile::tempdir().unwrap();
    let out = ok(&[
        "merge",
        s(&f.shards[2]),
        s(&f.shards[0]),
        s(&f.shards[1]),
        "--output-dir",
        s(merged_out.path()),
    ]);
    let merged = run_dir(&out);
    // the very same lines (ids, levels, labels, predictions, logits), in the same order
    assert_eq!(
        std::fs::read_to_string(merged.join("predictions.jsonl")).unwrap(),
        std::fs::read_to_string(f.full.join("predictions.jsonl")).unwrap()
    );
    let mp = predictions(&merged);
    assert_eq!(mp.len(), full.len());
    for (a, b) in mp.iter().zip(&full) {
        for key in [
            "id",
            "passage_id",
            "level",
            "label",
            "pred",
            "article_words",
            "cloze",
        ] {
            assert_eq!(a[key], b[key], "{key}");
        }
        let (la, lb) = (
            a["logits"].as_array().unwrap(),
            b["logits"].as_array().unwrap(),
        );
        assert_eq!(la.len(), lb.len());
        for (x, y) in la.iter().zip(lb) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
    let (ms, fs) = (summary(&merged), summary(&f.full));
    for key in ["counts", "accuracy", "breakdowns", "data", "model"] {
        assert_eq!(ms[key], fs[key], "{key}");
    }
    assert!(ms["shard"].is_null());
    assert_eq!(ms["kind"], "merge");
    assert_eq!(ms["members"].as_array().unwrap().len(), 3);
}

#[test]
fn merge_refuses_missing_duplicate_and_mismatched_shards() {
    let f = fixture();
    let (a, b, c) = (s(&f.shards[0]), s(&f.shards[1]), s(&f.shards[2]));
    let out = tempfile::tempdir().unwrap();
    let o = s(out.path());
    let err = refused(&["merge", a, b, "--output-dir", o]);
    assert!(err.contains("2/3") && err.contains("missing"), "{err}");
    let err = refused(&["merge", a, b, c, a, "--output-dir", o]);
    assert!(err.contains("twice"), "{err}");
    let err = refused(&["merge", a, b, s(&f.full), "--output-dir", o]);
    assert!(err.contains("not a shard"), "{err}");
    // a shard of another split: other data
    let dev_shard = eval(
        out.path(),
        "tiny-albert",
        &["--split", "dev", "--shard", "2/3"],
    );
    let err = refused(&["merge", a, b, s(&dev_shard), "--output-dir", o]);
    assert!(err.contains("differ in data"), "{err}");
    // more shards than questions: this one would be empty
    let err = refused(&[
        "eval",
        "--model",
        "datasets/models/tiny-albert",
        "--data",
        "datasets/sample",
        "--shard",
        "19/20",
    ]);
    assert!(err.contains("would be empty"), "{err}");
    // not a shard at all: clap's usage error (exit 2) with our explanation
    let bad = race_eval(&["eval", "--model", "m", "--data", "d", "--shard", "3/3"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected I/N"));
    // nothing was written for the refused merges
    let written = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(written, 1, "only the dev shard run");
}

#[test]
fn compare_reports_paired_counts_and_refuses_other_questions() {
    let f = fixture();
    let out = ok(&["compare", s(&f.full), s(&f.other_model), "--json"]);
    let c: Value = serde_json::from_str(&out).unwrap();
    let (pa, pb) = (predictions(&f.full), predictions(&f.other_model));
    let only_a = pa
        .iter()
        .zip(&pb)
        .filter(|(a, b)| a["pred"] == a["label"] && b["pred"] != b["label"])
        .count();
    let only_b = pa
        .iter()
        .zip(&pb)
        .filter(|(a, b)| a["pred"] != a["label"] && b["pred"] == b["label"])
        .count();
    assert_eq!(c["only_a"], only_a);
    assert_eq!(c["only_b"], only_b);
    assert_eq!(c["questions"], pa.len());
    let same = pa
        .iter()
        .zip(&pb)
        .filter(|(a, b)| a["pred"] == b["pred"])
        .count();
    assert_eq!(c["same_answer"], same);
    assert!(
        same < pa.len(),
        "the fixture's two models disagree somewhere"
    );
    let p = c["mcnemar_p"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0);

    // a run against itself by id: no difference at all
    let id = f.full.file_name().unwrap().to_str().unwrap();
    let text = ok(&["compare", id, id, "--results-dir", s(&f.results)]);
    assert!(text.contains("difference A - B: +0.00 points"), "{text}");
    assert!(text.contains("p = 1.0000"), "{text}");
    let n = pa.len();
    assert!(
        text.contains(&format!(
            "same answer (argmax agreement): {n} of {n} (100.00%)"
        )),
        "{text}"
    );

    let err = refused(&["compare", s(&f.full), s(&f.dev)]);
    assert!(err.contains("did not read the same data"), "{err}");
    let err = refused(&["compare", s(&f.full), s(&f.shards[0])]);
    assert!(err.contains("different subsets"), "{err}");
    let err = refused(&[
        "compare",
        s(&f.full),
        "no-such-run",
        "--results-dir",
        s(&f.results),
    ]);
    assert!(err.contains("no run `no-such-run`"), "{err}");
}

#[test]
fn ensemble_of_identical_runs_is_the_run() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let dir = run_dir(&ok(&[
        "ensemble",
        s(&f.full),
        s(&f.again),
        "--output-dir",
        s(out.path()),
    ]));
    let (e, r) = (predictions(&dir), predictions(&f.full));
    assert_eq!(e.len(), r.len());
    let softmax = |v: &Value| {
        let l: Vec<f64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = l.iter().map(|x| (x - m).exp()).sum();
        l.iter().map(|x| (x - m).exp() / z).collect::<Vec<_>>()
    };
    for (a, b) in e.iter().zip(&r) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["pred"], b["pred"]);
        for (x, y) in softmax(&a["logits"]).iter().zip(softmax(&b["logits"])) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
    let (es, rs) = (summary(&dir), summary(&f.full));
    assert_eq!(es["kind"], "ensemble");
    assert_eq!(es["accuracy"], rs["accuracy"]);
    assert_eq!(es["breakdowns"], rs["breakdowns"]);
    assert_eq!(es["members"].as_array().unwrap().len(), 2);

    let err = refused(&["ensemble", s(&f.full), s(&f.dev)]);
    assert!(err.contains("did not read the same data"), "{err}");
}

#[test]
fn leaderboard_ranks_published_rows_with_local_runs() {
    let f = fixture();
    let out = ok(&[
        "leaderboard",
        "--results-dir",
        s(&f.results),
        "--format",
        "json",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let overall: Vec<f64> = rows
        .iter()
        .map(|r| r["overall"].as_f64().unwrap())
        .collect();
    assert!(overall.windows(2).all(|w| w[0] >= w[1]), "{overall:?}");
    let names: Vec<&str> = rows.iter().map(|r| r["system"].as_str().unwrap()).collect();
    for published in [
        "ALBERT (ensemble)",
        "BERT-large",
        "Amazon Turkers",
        "Random guess",
    ] {
        assert!(names.contains(&published), "{published} in {names:?}");
    }
    assert!(
        !names.contains(&"ALBERT-base v2"),
        "dev rows in the test ranking"
    );
    let full_id = f.full.file_name().unwrap().to_str().unwrap();
    let local = rows.iter().position(|r| r["system"] == full_id).unwrap();
    assert_eq!(rows[local]["local"], true);
    // its place: after every better row, before every worse one
    let acc = overall[local];
    assert!(overall[..local].iter().all(|&v| v >= acc));
    assert!(overall[local + 1..].iter().all(|&v| v <= acc));
    assert_eq!(rows[0]["system"], "Human ceiling");
    let expected_delta = acc - 94.5;
    assert!((rows[local]["delta_best"].as_f64().unwrap() - expected_delta).abs() < 1e-9);
    // shards never rank; the dev run ranks with dev rows only
    assert!(!names.iter().any(|n| n.contains("shard")));
    let dev_id = f.dev.file_name().unwrap().to_str().unwrap();
    assert!(!names.contains(&dev_id));
    let dev = ok(&[
        "leaderboard",
        "--results-dir",
        s(&f.results),
        "--split",
        "validation",
        "--format",
        "csv",
    ]);
    assert!(
        dev.contains(dev_id) && dev.contains("ALBERT-xxlarge v2"),
        "{dev}"
    );
    assert!(!dev.contains(",BERT-large,"), "{dev}");

    let table = ok(&["leaderboard", "--results-dir", s(&f.results)]);
    assert!(table.contains(&format!("* {full_id}")), "{table}");
    assert!(table.contains("Lan et al. 2020, Table 10"), "{table}");
    let md = ok(&[
        "leaderboard",
        "--results-dir",
        s(&f.results),
        "--format",
        "markdown",
    ]);
    assert!(
        md.lines()
            .any(|l| l.starts_with("|---") || l.starts_with("| ---") || l.starts_with("|-")),
        "{md}"
    );
}

#[test]
fn report_and_plot() {
    let f = fixture();
    let text = ok(&["report", s(&f.full)]);
    for part in [
        "by article length",
        "by question kind",
        "by gold option",
        "overall",
        "weights sha256",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("plot.svg");
    ok(&["plot", s(&f.full), s(&f.other_model), "--output", s(&svg)]);
    let body = std::fs::read_to_string(&svg).unwrap();
    assert!(
        body.contains("<svg") && body.trim_end().ends_with("</svg>"),
        "not an SVG"
    );
    assert!(body.contains(f.full.file_name().unwrap().to_str().unwrap()));
    assert!(body.contains("200-299") && body.contains("middle"));
    let png = tmp.path().join("plot.png");
    ok(&["plot", s(&f.full), s(&f.other_model), "--output", s(&png)]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, right after the signature and chunk header
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1100, 500 + 22 * 2));
    let err = refused(&[
        "plot",
        s(&f.full),
        "--output",
        s(&tmp.path().join("plot.gif")),
    ]);
    assert!(err.contains(".svg or .png"), "{err}");
}

#[test]
fn a_broken_record_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken-run");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("summary.json"), "{ not json").unwrap();
    let out = race_eval(&["leaderboard", "--results-dir", s(tmp.path())]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken-run") && err.contains("left out"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ALBERT (ensemble)"));
    let err = refused(&["report", s(&bad)]);
    assert!(err.contains("not a race-eval run summary"), "{err}");
    let err = refused(&["compare", s(&bad), s(&bad)]);
    assert!(err.contains("not a race-eval run summary"), "{err}");
}
