//! `eval --shard auto` end to end: the real binary with a SLURM job array's (or a Kubernetes
//! indexed Job's) variables set, on datasets/sample with the bundled tiny model, merged back with
//! `race-eval merge` and compared with an unsharded run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_race-eval");

/// Every variable `--shard auto` reads: cleared for each run, so a test run inside a real
/// SLURM or Kubernetes job sees only what the test sets.
const SCHEDULER_VARS: [&str; 4] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "JOB_COMPLETION_INDEX",
];

const NO_SCHEDULER: &str = "error: --shard auto: neither SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (a SLURM job array) nor JOB_COMPLETION_INDEX with --shard-count (a Kubernetes indexed Job) is set; give --shard I/N";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `race-eval ARGS` in `dir` with only `vars` of the scheduler's variables set.
fn race_eval(dir: &Path, args: &[&str], vars: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for v in SCHEDULER_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("race-eval runs")
}

/// `race-eval eval` of the tiny model on the sample's test split into DIR/results; returns the
/// run folder and stderr.
fn eval(dir: &Path, extra: &[&str], vars: &[(&str, String)]) -> (PathBuf, String) {
    let model = root().join("datasets/models/tiny-albert");
    let data = root().join("datasets/sample");
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--split",
        "test",
        "--output-dir",
        "results",
    ];
    args.extend_from_slice(extra);
    let out = race_eval(dir, &args, vars);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "race-eval {args:?} failed:\n{stderr}");
    (run_dir(dir, &out), stderr)
}

/// The `run: DIR` line of a command's output, relative to the folder it ran in.
fn run_dir(dir: &Path, out: &Output) -> PathBuf {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run: "))
        .unwrap_or_else(|| panic!("no `run:` line in\n{stdout}"));
    dir.join(line)
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

fn slurm(id: usize, count: usize) -> Vec<(&'static str, String)> {
    vec![
        ("SLURM_ARRAY_TASK_ID", id.to_string()),
        ("SLURM_ARRAY_TASK_COUNT", count.to_string()),
        ("SLURM_ARRAY_TASK_MIN", "0".to_string()),
    ]
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_slurm_array_merges_back_into_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (full, _) = eval(dir, &["--quiet"], &[]);
    let mut shards = Vec::new();
    for i in 0..3 {
        let (run, stderr) = eval(dir, &["--shard", "auto"], &slurm(i, 3));
        let line = format!("shard {i}/3 from SLURM_ARRAY_TASK_ID={i} (SLURM_ARRAY_TASK_COUNT=3)");
        assert!(
            stderr.lines().any(|l| l == line),
            "{line:?} not in\n{stderr}"
        );
        let sm = summary(&run);
        assert_eq!(sm["shard"]["index"], i);
        assert_eq!(sm["shard"]["count"], 3);
        shards.push(run);
    }
    // -q: no shard line, the same shard
    let (quiet, stderr) = eval(dir, &["--shard", "auto", "-q"], &slurm(1, 3));
    assert!(!stderr.contains("shard 1/3"), "{stderr}");
    assert_eq!(predictions(&quiet), predictions(&shards[1]));

    // while shard 1 is missing, merge refuses and names it
    let merged_dir = dir.join("merged");
    let out = race_eval(
        dir,
        &[
            "merge",
            s(&shards[0]),
            s(&shards[2]),
            "--output-dir",
            s(&merged_dir),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("shard(s) 1/3 missing"), "{err}");
    assert!(!merged_dir.exists(), "a refused merge wrote {merged_dir:?}");

    let out = race_eval(
        dir,
        &[
            "merge",
            s(&shards[2]),
            s(&shards[0]),
            s(&shards[1]),
            "--output-dir",
            s(&merged_dir),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = run_dir(dir, &out);
    let (mp, fp) = (predictions(&merged), predictions(&full));
    assert_eq!(fp.len(), 19, "datasets/sample has 19 test questions");
    assert_eq!(mp.len(), fp.len());
    for (a, b) in mp.iter().zip(&fp) {
        for key in ["id", "label", "pred"] {
            assert_eq!(a[key], b[key], "{key} of {}", b["id"]);
        }
        // batches of 8 hold other questions in a shard, so padding differs: last bits only
        let (la, lb) = (
            a["logits"].as_array().unwrap(),
            b["logits"].as_array().unwrap(),
        );
        assert_eq!(la.len(), lb.len());
        for (x, y) in la.iter().zip(lb) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-4, "{} logits {x} vs {y}", b["id"]);
        }
    }
    let (ms, fs) = (summary(&merged), summary(&full));
    assert_eq!(ms["accuracy"], fs["accuracy"]);
    assert_eq!(ms["counts"], fs["counts"]);
    assert_eq!(ms["kind"], "merge");
}

#[test]
fn a_kubernetes_indexed_job_needs_shard_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let index = [("JOB_COMPLETION_INDEX", "2".to_string())];
    let (k8s, stderr) = eval(dir, &["--shard", "auto", "--shard-count", "3"], &index);
    assert!(
        stderr.contains("shard 2/3 from JOB_COMPLETION_INDEX=2 (--shard-count 3)"),
        "{stderr}"
    );
    let (fixed, _) = eval(dir, &["--shard", "2/3", "-q"], &[]);
    assert_eq!(predictions(&k8s), predictions(&fixed));
    assert_eq!(summary(&k8s)["shard"], summary(&fixed)["shard"]);

    let out = race_eval(
        dir,
        &["eval", "--model", "m", "--data", "d", "--shard", "auto"],
        &index,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("JOB_COMPLETION_INDEX=2 is set") && err.contains("add --shard-count N"),
        "{err}"
    );
}

#[test]
fn auto_without_a_scheduler_is_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let model = root().join("datasets/models/tiny-albert");
    let data = root().join("datasets/sample");
    let args = [
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--output-dir",
        "results",
        "--shard",
        "auto",
    ];
    let out = race_eval(tmp.path(), &args, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end(), NO_SCHEDULER);
    // an index past the array's size, and --shard-count without auto
    let out = race_eval(tmp.path(), &args, &slurm(3, 3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("gives shard 3, not below SLURM_ARRAY_TASK_COUNT=3"),
        "{err}"
    );
    let out = race_eval(
        tmp.path(),
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--shard",
            "0/3",
            "--shard-count",
            "3",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--shard-count 3 is only read with --shard auto"),
        "{err}"
    );
    assert!(
        !tmp.path().join("results").exists(),
        "a refused eval wrote a record"
    );
}
