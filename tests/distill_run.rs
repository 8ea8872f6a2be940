//! `race-eval distill` end to end: a student follows its teacher against the gold labels, an
//! ensemble's soft targets are the average of its teachers' probabilities, smaller students,
//! and the errors for bad teachers and options.

mod synthetic;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use race_eval::data::LevelFilter;
use race_eval::features::FormatConfig;
use race_eval::train::distill::{self, softmax_t, DistillConfig, DistillOptions};
use race_eval::train::{Mode, TrainConfig, TrainOptions};
use serde_json::Value;

fn race_eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_race-eval"))
        .args(args)
        .current_dir(synthetic::repo(""))
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "failed:\n{out}\n{err}");
    out.into_owned()
}

fn failure(o: &Output) -> String {
    assert!(!o.status.success(), "should have failed");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Evaluates `model` on `split` of `data` into `results` and returns the run folder.
fn run_record(model: &str, data: &Path, split: &str, results: &Path, format: &[&str]) -> PathBuf {
    let before: Vec<PathBuf> = std::fs::read_dir(results)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    let mut args = vec![
        "eval",
        "--model",
        model,
        "--data",
        data.to_str().unwrap(),
        "--split",
        split,
        "--output-dir",
        results.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(format);
    ok(&race_eval(&args));
    std::fs::read_dir(results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !before.contains(p))
        .expect("a new run folder")
}

/// A teacher that always argues against the gold option (its logit -6, the others 0): a student
/// trained on its soft targets alone (alpha 1) learns to avoid the option whose word is in the
/// passage, so its dev accuracy falls well below chance (0.14 seen), where cross-entropy on the same labels
/// reaches >= 60% (tests/train_run.rs). The soft targets on disk are the teacher's softmax at T.
#[test]
fn a_student_follows_its_teacher_against_the_labels() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = synthetic::repo(synthetic::TINY);
    let data = synthetic::synthetic_task(tmp.path(), &model, 1024, 200);
    let fmt = ["--max-seq-len", "48", "--max-qa-len", "16"];
    let results = tmp.path().join("results");
    let run = run_record(model.to_str().unwrap(), &data, "train", &results, &fmt);
    let preds = run.join("predictions.jsonl");
    let mut text = String::new();
    for mut p in lines(&preds) {
        let label = p["label"].as_u64().unwrap() as usize;
        let logits: Vec<f32> = (0..4)
            .map(|k| if k == label { -6.0 } else { 0.0 })
            .collect();
        p["logits"] = serde_json::json!(logits);
        p["pred"] = serde_json::json!((label + 1) % 4);
        text += &(p.to_string() + "\n");
    }
    std::fs::write(&preds, text)?;
    // The record's numbers follow its predictions (every answer is now wrong), or the run
    // would be refused as edited.
    let summary = run.join("summary.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary)?)?;
    for level in ["overall", "middle", "high", "other"] {
        let score = &mut s["accuracy"][level];
        if score.is_object() {
            let total = score["total"].as_u64().unwrap();
            score["correct"] = 0.into();
            score["accuracy"] = if total > 0 {
                0.0.into()
            } else {
                serde_json::Value::Null
            };
        }
    }
    std::fs::write(&summary, s.to_string())?;

    let out = tmp.path().join("heads/student");
    let train = TrainOptions {
        model: model.display().to_string(),
        revision: None,
        data: data.clone(),
        task: race_eval::data::Task::Race,
        split: "train".into(),
        dev_split: "dev".into(),
        level: LevelFilter::All,
        output: out.clone(),
        config: TrainConfig {
            mode: Mode::Full,
            lr: 3e-3,
            warmup_steps: 40,
            total_steps: 400,
            batch_size: 16,
            micro_batch_size: 16,
            eval_every: 400,
            save_every: 400,
            seed: 3,
            format: FormatConfig {
                max_seq_len: 48,
                max_qa_len: 16,
            },
            distill: Some(DistillConfig {
                alpha: 1.0,
                temperature: 1.0,
                student_layers: None,
            }),
            ..TrainConfig::default()
        },
        resume: false,
        cache_dir: None,
        device: "cpu".into(),
        epochs: None,
        eval_batch_size: 32,
        stop_after: None,
        quiet: true,
        teachers: None,
    };
    let (report, teachers) = distill::distill(DistillOptions {
        teachers: vec![run.display().to_string()],
        results_dir: results.clone(),
        train,
    })?;
    let accuracy = report.dev_history.last().unwrap().accuracy;
    eprintln!("dev accuracy after distilling the anti-teacher: {accuracy:.3}");
    // Chance is 0.25 (50 of 200); at most 36 right is 2.3 standard deviations below it.
    assert!(
        accuracy <= 0.18,
        "the student should follow the teacher (accuracy {accuracy:.3}, chance 0.25)"
    );

    let targets = lines(&out.join(distill::SOFT_TARGETS_FILE));
    assert_eq!(targets.len(), 1024);
    let want = softmax_t(&[0.0, 0.0, -6.0, 0.0], 1.0);
    let row = targets.iter().find(|t| t["label"] == 2).unwrap();
    let got: Vec<f32> = serde_json::from_value(row["probs"].clone())?;
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(out.join("meta.json"))?)?;
    assert_eq!(meta["distill"]["teachers"][0]["kind"], "run");
    assert_eq!(meta["distill"]["soft_targets_hash"], teachers.hash.as_str());
    assert_eq!(meta["hyperparameters"]["distill"]["alpha"], 1.0);
    Ok(())
}

/// Two teachers, a run record of tiny-bert and the tiny ALBERT as a model, into an ALBERT
/// student with 2 of its 3 passes: the soft targets are the mean of the teachers' softmax at T
/// (checked against the teachers' own eval records), and the student is a model folder.
#[test]
fn an_ensemble_distils_into_a_shallower_albert() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic::repo("datasets/sample");
    let fmt = ["--max-seq-len", "64", "--max-qa-len", "16"];
    let results = tmp.path().join("results");
    let bert = run_record("datasets/models/tiny-bert", &data, "dev", &results, &fmt);
    let albert = run_record(synthetic::TINY, &data, "dev", &results, &fmt);
    let out = tmp.path().join("student");
    let mut args = vec![
        "distill",
        "--teacher",
        bert.to_str().unwrap(),
        "--teacher",
        synthetic::TINY,
        "--student",
        synthetic::TINY,
        "--student-layers",
        "2",
        "--temperature",
        "3",
        "--data",
        "datasets/sample",
        "--split",
        "dev",
        "--dev-split",
        "test",
        "--output",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--eval-every",
        "2",
        "-q",
    ];
    args.extend_from_slice(&fmt);
    let stdout = ok(&race_eval(&args));
    assert!(
        stdout.contains("soft targets from 2 teacher(s)"),
        "{stdout}"
    );

    let logits = |run: &Path| -> std::collections::HashMap<String, Vec<f32>> {
        lines(&run.join("predictions.jsonl"))
            .into_iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    serde_json::from_value(p["logits"].clone()).unwrap(),
                )
            })
            .collect()
    };
    let (b, a) = (logits(&bert), logits(&albert));
    let targets = lines(&out.join(distill::SOFT_TARGETS_FILE));
    assert_eq!(targets.len(), b.len());
    let mut spread = 0f32;
    for t in &targets {
        let id = t["id"].as_str().unwrap();
        let (pb, pa) = (softmax_t(&b[id], 3.0), softmax_t(&a[id], 3.0));
        let got: Vec<f32> = serde_json::from_value(t["probs"].clone()).unwrap();
        for k in 0..got.len() {
            assert!(
                (got[k] - (pb[k] + pa[k]) / 2.0).abs() < 1e-5,
                "{id}: {got:?} vs mean of {pb:?} and {pa:?}"
            );
            spread = spread.max((pb[k] - pa[k]).abs());
        }
    }
    assert!(spread > 1e-3, "the two teachers should disagree somewhere");

    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = meta["distill"]["teachers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["run", "model"]);
    assert_eq!(meta["distill"]["student"]["layers"], 2);
    assert_eq!(meta["distill"]["student"]["from_layers"], 3);
    assert!(meta["distill"]["student"]["layer_map"].is_null());
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_hidden_layers"], 2);
    assert_eq!(config["embedding_size"], 16, "other fields kept");

    // The student is a model folder that eval takes.
    let mut args = vec![
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--data",
        "datasets/sample",
        "--split",
        "test",
        "--output-dir",
        results.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(&fmt);
    assert!(ok(&race_eval(&args)).contains("overall"));
}

#[test]
fn bad_teachers_and_options_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic::repo("datasets/sample");
    let fmt = ["--max-seq-len", "64", "--max-qa-len", "16"];
    let results = tmp.path().join("results");
    // A run on the test split cannot teach the dev split.
    let test_run = run_record(synthetic::TINY, &data, "test", &results, &fmt);
    let out = tmp.path().join("s");
    let base = |teacher: &str, extra: &[&str]| -> String {
        let mut args = vec![
            "distill",
            "--teacher",
            teacher,
            "--student",
            "datasets/models/tiny-bert",
            "--data",
            "datasets/sample",
            "--split",
            "dev",
            "--dev-split",
            "test",
            "--output",
            out.to_str().unwrap(),
            "--steps",
            "1",
            "--results-dir",
            results.to_str().unwrap(),
        ];
        args.extend_from_slice(&fmt);
        args.extend_from_slice(extra);
        failure(&race_eval(&args))
    };
    let err = base(test_run.to_str().unwrap(), &[]);
    assert!(
        err.contains("no answer for training question `middle")
            && err.contains("predictions.jsonl")
            && err.contains("datasets/sample"),
        "{err}"
    );
    // By run id under --results-dir: the same check.
    let id = test_run.file_name().unwrap().to_str().unwrap();
    assert!(base(id, &[]).contains("no answer for training question"));
    let err = base("no/such/teacher", &[]);
    assert!(err.contains("not a run record"), "{err}");
    // Option errors, with a teacher that is fine (a model evaluated on the split).
    let id = "datasets/models/tiny-bert";
    let err = base(id, &["--student-layers", "5"]);
    assert!(err.contains("pick 1 to 3"), "{err}");
    let err = base(id, &["--student-layers", "2", "--head-only"]);
    assert!(
        err.contains("--student-layers needs full training"),
        "{err}"
    );
    let err = base(id, &["--alpha", "1.5"]);
    assert!(err.contains("--alpha must be in [0, 1]"), "{err}");
    let err = base(id, &["--temperature", "0"]);
    assert!(err.contains("--temperature must be positive"), "{err}");
    assert!(!out.join("model.safetensors").exists());
}
