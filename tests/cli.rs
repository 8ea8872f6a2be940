//! The `race-eval` binary end to end: the README's command, predictions, info, errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn race_eval(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_race-eval"));
    cmd.args(args).current_dir(root());
    // eval writes a run record: keep the tests' records out of the checkout's results/
    let records = tempfile::tempdir().unwrap();
    if args.first() == Some(&"eval") {
        cmd.arg("--output-dir").arg(records.path());
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_predictions(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn readme_command_prints_accuracy_and_writes_predictions_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let preds = dir.path().join("preds.jsonl");
    let out = race_eval(&[
        "eval",
        "--model",
        "datasets/models/tiny-albert",
        "--data",
        "datasets/sample",
        "--split",
        "test",
        "--predictions",
        preds.to_str().unwrap(),
        "--batch-size",
        "4",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("19 questions in 6 passages"), "{text}");
    let rows = read_predictions(&preds);
    assert_eq!(rows.len(), 19);
    // Input order: the tree lists middle 1..3 then high 1..3, questions in passage order.
    let sample: Vec<serde_json::Value> =
        std::fs::read_to_string(root().join("datasets/sample/test.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    for (row, q) in rows.iter().zip(&sample) {
        assert_eq!(row["passage_id"], q["example_id"]);
        let label = (q["answer"].as_str().unwrap().as_bytes()[0] - b'A') as u64;
        assert_eq!(row["label"].as_u64().unwrap(), label);
        let logits: Vec<f64> = row["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(logits.len(), 4);
        let best = (0..4)
            .max_by(|&a, &b| logits[a].partial_cmp(&logits[b]).unwrap())
            .unwrap();
        assert_eq!(row["pred"].as_u64().unwrap(), best as u64);
        assert!(row["id"].is_string() && row["level"].is_string());
    }
    // The printed accuracy is the one the predictions give, per level.
    for level in ["middle", "high"] {
        let mine: Vec<_> = rows.iter().filter(|r| r["level"] == level).collect();
        let correct = mine.iter().filter(|r| r["pred"] == r["label"]).count();
        let line = text.lines().find(|l| l.starts_with(level)).unwrap();
        assert!(
            line.contains(&format!("{correct} / {}", mine.len())),
            "{line}"
        );
    }
}

#[test]
fn level_filter_and_jsonl_input() {
    let out = race_eval(&[
        "eval",
        "--model",
        "datasets/models/relu-bin",
        "--data",
        "datasets/sample/test.jsonl",
        "--level",
        "high",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("9 questions in 3 passages"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn info_param_counts_match_transformers() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/param_counts.json")).unwrap(),
    )
    .unwrap();
    for name in [
        "albert-base-v2",
        "albert-large-v2",
        "albert-xlarge-v2",
        "albert-xxlarge-v2",
    ] {
        let out = race_eval(&["info", name, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(
            info["params"]["backbone"], expected[name]["albert_model"],
            "{name}"
        );
        assert_eq!(
            info["params"]["multiple_choice"], expected[name]["albert_for_multiple_choice"],
            "{name}"
        );
        assert_eq!(
            info["config"]["hidden_size"], expected[name]["hidden_size"],
            "{name}"
        );
    }
}

#[test]
fn info_reads_a_model_folder_without_weights() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("datasets/models/groups-gelu/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let out = race_eval(&["info", dir.path().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["config"]["num_hidden_groups"], 2);
    assert!(
        info["params"]["multiple_choice"].as_u64().unwrap()
            > info["params"]["backbone"].as_u64().unwrap()
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let out = race_eval(&[
        "eval",
        "--model",
        "no/such/dir",
        "--data",
        "datasets/sample",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no/such/dir"), "{}", stderr(&out));

    let out = race_eval(&[
        "eval",
        "--model",
        "datasets/models/tiny-albert",
        "--data",
        "datasets/sample",
        "--split",
        "train",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no RACE data for split `train`"),
        "{}",
        stderr(&out)
    );

    let out = race_eval(&[
        "eval",
        "--model",
        "datasets/models/tiny-albert",
        "--data",
        "datasets/sample",
        "--max-seq-len",
        "1024",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("position table allows (512)"),
        "{}",
        stderr(&out)
    );

    let out = race_eval(&["info", "albert-huge-v9"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("albert-base-v2"), "{}", stderr(&out));
}

#[test]
fn backbone_only_model_warns_once() {
    let out = race_eval(&[
        "eval",
        "--model",
        "datasets/models/mlm-backbone",
        "--data",
        "datasets/sample",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("classifier"));
}
