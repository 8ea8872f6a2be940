//! The catalogue of bad inputs and faults (issue "No number from a broken model or data set"):
//! one test per class, each through the `race-eval` binary as a user meets it, asserting that
//! no accuracy is printed where none can be trusted, and that the message names the file, line,
//! passage, field or key, and says what to do that the command accepts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny() -> PathBuf {
    manifest().join("datasets/models/tiny-albert")
}

fn sample() -> String {
    manifest().join("datasets/sample").display().to_string()
}

/// `race-eval ARGS` in `dir` (run records land there).
fn race_eval(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_race-eval"))
        .args(args)
        .current_dir(dir)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed, printed no accuracy, and its error contains every one of `parts`.
fn refused(o: &Output, parts: &[&str]) -> String {
    let (out, err) = (stdout(o), stderr(o));
    assert!(
        !o.status.success(),
        "expected a failure; stdout {out}\nstderr {err}"
    );
    assert!(
        !out.contains("overall") && !out.contains('%'),
        "a number was printed: {out}"
    );
    for p in parts {
        assert!(err.contains(p), "{p:?} missing from: {err}");
    }
    err
}

/// A copy of tiny-albert whose tensor `name` is replaced by `f(tensor)`.
fn doctored(dir: &Path, name: &str, f: impl Fn(&Tensor) -> Tensor) -> PathBuf {
    let out = dir.join(format!("doctored-{}", name.replace('.', "-")));
    std::fs::create_dir_all(&out).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny().join(file), out.join(file)).unwrap();
    }
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(tiny().join("model.safetensors"), &Device::Cpu).unwrap();
    let key = tensors
        .keys()
        .find(|k| k.ends_with(name))
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .clone();
    let t = f(&tensors[&key]);
    tensors.insert(key, t);
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
    out
}

fn eval_args<'a>(model: &'a str, data: &'a str) -> Vec<&'a str> {
    vec![
        "eval", "--model", model, "--data", data, "--split", "test", "-q",
    ]
}

#[test]
fn non_finite_weights_are_refused_at_load_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let m = doctored(tmp.path(), "classifier.weight", |t| (t * f64::NAN).unwrap());
    let s = sample();
    let o = race_eval(tmp.path(), &eval_args(m.to_str().unwrap(), &s));
    refused(&o, &["classifier.weight", "NaN", "model.safetensors"]);
    // No run record either.
    assert!(!tmp.path().join("results").exists());
}

/// `--dtype bf16` on the CPU reads the linears straight from the file into bf16: a NaN there is
/// refused the same way, naming the tensor and the file.
#[test]
fn non_finite_linear_weights_are_refused_in_bf16_too() {
    if race_eval::model::Bf16Kernel::detect().is_none() {
        eprintln!("no AVX-512 here: bf16 runs in f32 (covered above), SKIPPED");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = doctored(tmp.path(), "ffn_output.weight", |t| {
        let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[7] = f32::INFINITY;
        Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap()
    });
    let s = sample();
    let mut args = eval_args(m.to_str().unwrap(), &s);
    args.extend(["--dtype", "bf16"]);
    let o = race_eval(tmp.path(), &args);
    refused(&o, &["ffn_output.weight", "infinite", "model.safetensors"]);
    assert!(!tmp.path().join("results").exists());
}

/// `--dtype bf16` on CPUs without AVX512-BF16 (hidden by `RACE_EVAL_CPU_FEATURES_OFF`): warns
/// once, saying what runs instead; the AVX-512F kernel's sums are the AVX512-BF16 kernel's bit
/// for bit, so the logits are too; without AVX-512 the run is f32's.
#[test]
fn bf16_without_its_instructions_warns_and_says_what_runs() {
    if race_eval::model::Bf16Kernel::detect() != Some(race_eval::model::Bf16Kernel::Avx512Bf16) {
        eprintln!("no AVX512-BF16 here, SKIPPED");
        return;
    }
    let s = sample();
    let run = |dtype: &str, off: &str| -> (String, String) {
        let tmp = tempfile::tempdir().unwrap();
        let m = tiny();
        let mut args = eval_args(m.to_str().unwrap(), &s);
        args.extend(["--dtype", dtype, "--output-dir", "runs"]);
        let o = Command::new(env!("CARGO_BIN_EXE_race-eval"))
            .args(&args)
            .current_dir(tmp.path())
            .env("HF_HUB_OFFLINE", "1")
            .env("RACE_EVAL_CPU_FEATURES_OFF", off)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let run = std::fs::read_dir(tmp.path().join("runs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let preds = std::fs::read_to_string(run.path().join("predictions.jsonl")).unwrap();
        let logits: Vec<String> = preds
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["logits"].to_string())
            .collect();
        (logits.join("\n"), stderr(&o))
    };
    let (native, err) = run("bf16", "");
    assert!(!err.contains("AVX"), "{err}");
    let (widened, err) = run("bf16", "avx512bf16");
    assert_eq!(err.matches("not AVX512-BF16").count(), 1, "{err}");
    assert!(err.contains("widened to f32"), "{err}");
    assert_eq!(native, widened);
    let (f32_run, _) = run("f32", "");
    let (no_avx512, err) = run("bf16", "avx512");
    assert_eq!(err.matches("runs in f32").count(), 1, "{err}");
    assert_eq!(no_avx512, f32_run);
    assert_ne!(native, f32_run, "bf16 gave f32's logits: did bf16 run?");
}

#[test]
fn a_non_finite_logit_at_run_time_stops_the_run_naming_the_question() {
    let tmp = tempfile::tempdir().unwrap();
    // Finite weights whose products overflow f32.
    let m = doctored(tmp.path(), "classifier.weight", |t| {
        (t.ones_like().unwrap() * 3e38).unwrap()
    });
    let s = sample();
    let o = race_eval(tmp.path(), &eval_args(m.to_str().unwrap(), &s));
    refused(&o, &["question `", "non-finite logit", "no accuracy"]);
}

#[test]
fn config_errors_name_the_key_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sample();
    let write_cfg = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.safetensors", "tokenizer.json"] {
            std::fs::copy(tiny().join(f), dir.join(f)).unwrap();
        }
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tiny().join("config.json")).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
        dir
    };
    let typed = write_cfg("typed", &|v| v["hidden_size"] = "thirty-two".into());
    let o = race_eval(tmp.path(), &eval_args(typed.to_str().unwrap(), &s));
    refused(&o, &["config.json", "hidden_size", "invalid type"]);
    let range = write_cfg("range", &|v| v["pad_token_id"] = 5000.into());
    let o = race_eval(tmp.path(), &eval_args(range.to_str().unwrap(), &s));
    refused(&o, &["pad_token_id", "5000", "vocab_size"]);
    // A tokenizer with more ids than the embedding table has rows.
    let small = write_cfg("small-vocab", &|v| v["vocab_size"] = 100.into());
    let o = race_eval(tmp.path(), &eval_args(small.to_str().unwrap(), &s));
    refused(&o, &["vocab_size", "is 100", "tokenizer"]);
}

/// A JSON line of the sample's format.
fn row(id: &str, article: &str, question: &str, options: &[&str], answer: &str) -> String {
    serde_json::json!({
        "example_id": id, "article": article, "question": question,
        "options": options, "answer": answer,
    })
    .to_string()
}

fn eval_jsonl(dir: &Path, rows: &[String], extra: &[&str]) -> Output {
    let path = dir.join("test.jsonl");
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    let model = tiny().display().to_string();
    let mut args = vec!["eval", "--model", &model, "--data", path.to_str().unwrap()];
    args.extend(extra);
    race_eval(dir, &args)
}

const OPTS: &[&str] = &["red", "blue", "green", "black"];

#[test]
fn duplicate_ids_and_rows_are_errors_naming_both_places() {
    let tmp = tempfile::tempdir().unwrap();
    let a = row("middle1.txt", "The kite is red.", "What colour?", OPTS, "A");
    let b = row(
        "middle2.txt",
        "A dog ran.",
        "What ran?",
        &["dog", "cat", "cow", "pig"],
        "A",
    );
    // A row appended twice.
    let o = eval_jsonl(tmp.path(), &[a.clone(), b.clone(), a.clone()], &["-q"]);
    refused(
        &o,
        &[
            "test.jsonl:3",
            "repeats",
            "test.jsonl:1",
            "Fix the data",
            "--skip-invalid",
        ],
    );
    // An id reused for another article.
    let c = row(
        "middle1.txt",
        "Another story.",
        "Who?",
        &["x", "y", "z", "w"],
        "A",
    );
    let o = eval_jsonl(tmp.path(), &[a.clone(), b.clone(), c], &["-q"]);
    refused(
        &o,
        &[
            "test.jsonl:3",
            "example_id",
            "another article",
            "test.jsonl:1",
        ],
    );
    // Two passage files with one id (RACE's tree).
    let tree = tmp.path().join("tree/RACE/test/middle");
    std::fs::create_dir_all(&tree).unwrap();
    let passage = |article: &str| {
        serde_json::json!({"id": "middle7.txt", "article": article,
            "questions": ["What colour?"], "options": [OPTS], "answers": ["A"]})
        .to_string()
    };
    std::fs::write(tree.join("1.txt"), passage("The kite is red.")).unwrap();
    std::fs::write(tree.join("2.txt"), passage("The kite is blue.")).unwrap();
    let model = tiny().display().to_string();
    let data = tmp.path().join("tree").display().to_string();
    let o = race_eval(tmp.path(), &eval_args(&model, &data));
    refused(&o, &["2.txt", "field `id`", "1.txt", "own id"]);
}

#[test]
fn blank_and_invisible_text_is_an_error_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let good = row("middle1.txt", "The kite is red.", "What colour?", OPTS, "A");
    for (bad, field) in [
        (
            row("middle2.txt", "Text.", "Q?", &["", "", "", ""], "A"),
            "options[0]",
        ),
        (
            row("middle2.txt", "Text.", "\u{200b}\u{200b} ", OPTS, "A"),
            "question",
        ),
        (
            row("middle2.txt", "\u{feff}\u{00a0}", "Q?", OPTS, "A"),
            "article",
        ),
    ] {
        let o = eval_jsonl(tmp.path(), &[good.clone(), bad], &["-q"]);
        refused(&o, &["test.jsonl:2", &format!("field `{field}`"), "empty"]);
    }
}

#[test]
fn invalid_utf8_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("test.jsonl");
    let good = row("middle1.txt", "The kite is red.", "What colour?", OPTS, "A");
    let mut bytes = (good + "\n").into_bytes();
    bytes.extend_from_slice(b"{\"example_id\": \"middle2.txt\", \"article\": \"caf\xe9\"}\n");
    std::fs::write(&path, bytes).unwrap();
    let model = tiny().display().to_string();
    let o = race_eval(
        tmp.path(),
        &[
            "eval",
            "--model",
            &model,
            "--data",
            path.to_str().unwrap(),
            "-q",
        ],
    );
    refused(&o, &["test.jsonl:2", "UTF-8"]);
}

#[test]
fn skip_invalid_lists_each_question_on_the_terminal_and_in_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let good = |id: &str| row(id, "The kite is red.", "What colour?", OPTS, "A");
    let rows = [
        good("middle1.txt"),
        row("middle2.txt", "Text.", "Q?", OPTS, "Z"),
        good("high3.txt"),
        row("high4.txt", "Text.", " ", OPTS, "A"),
    ];
    // -q: one summary line.
    let o = eval_jsonl(tmp.path(), &rows, &["--skip-invalid", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("skipped 2 invalid question(s)"), "{err}");
    // Without -q, each one with its reason.
    let o = eval_jsonl(tmp.path(), &rows, &["--skip-invalid"]);
    let err = stderr(&o);
    assert!(
        err.contains("test.jsonl:2") && err.contains("`answer`"),
        "{err}"
    );
    assert!(
        err.contains("test.jsonl:4") && err.contains("`question`"),
        "{err}"
    );
    // The run record keeps the reasons.
    let run = std::fs::read_dir(tmp.path().join("results"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["counts"]["skipped"], 2);
    let reasons = summary["counts"]["skipped_reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].as_str().unwrap().contains("test.jsonl:2"));
    // Counted within the level filter: --level middle skips only the middle question.
    let o = eval_jsonl(
        tmp.path(),
        &rows,
        &["--skip-invalid", "-q", "--level", "middle"],
    );
    assert!(
        stderr(&o).contains("skipped 1 invalid question(s)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn outputs_never_overwrite_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = [row(
        "middle1.txt",
        "The kite is red.",
        "What colour?",
        OPTS,
        "A",
    )];
    let path = tmp.path().join("test.jsonl");
    let o = eval_jsonl(
        tmp.path(),
        &rows,
        &["--predictions", path.to_str().unwrap(), "-q"],
    );
    refused(&o, &["--predictions", "would overwrite", "test.jsonl"]);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        rows.join("\n") + "\n",
        "the data is unchanged"
    );
    // train --output onto the model folder it reads.
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(tiny().join(f), model.join(f)).unwrap();
    }
    let before = std::fs::read(model.join("config.json")).unwrap();
    let m = model.display().to_string();
    let s = sample();
    let o = race_eval(
        tmp.path(),
        &[
            "train", "--model", &m, "--data", &s, "--split", "test", "--output", &m, "--steps",
            "1", "-q",
        ],
    );
    refused(&o, &["--output", "would overwrite"]);
    assert_eq!(std::fs::read(model.join("config.json")).unwrap(), before);
}

#[test]
fn concurrent_evals_into_one_output_dir_get_distinct_complete_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny().display().to_string();
    let s = sample();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_race-eval"))
                .args(eval_args(&model, &s))
                .args(["--output-dir", "shared-results"])
                .current_dir(tmp.path())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("shared-results"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(runs.len(), 4, "{runs:?}");
    for r in &runs {
        assert!(r.join("summary.json").is_file() && r.join("predictions.jsonl").is_file());
        assert!(!r.file_name().unwrap().to_string_lossy().starts_with('.'));
    }
}

#[test]
fn run_commands_refuse_missing_folders_and_records_that_do_not_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let o = race_eval(tmp.path(), &["leaderboard", "--results-dir", "typo"]);
    refused(&o, &["typo", "no such folder"]);
    // Without any --results-dir and no results/ yet: the published rows, and a note.
    let o = race_eval(tmp.path(), &["leaderboard"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("no local runs"), "{}", stderr(&o));

    let model = tiny().display().to_string();
    let s = sample();
    assert!(race_eval(tmp.path(), &eval_args(&model, &s))
        .status
        .success());
    let run = std::fs::read_dir(tmp.path().join("results"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let summary = run.join("summary.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    v["accuracy"]["overall"]["correct"] = 99.into();
    v["accuracy"]["overall"]["accuracy"] = 1.7.into();
    std::fs::write(&summary, v.to_string()).unwrap();
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    for args in [
        vec!["report", id.as_str()],
        vec!["compare", id.as_str(), id.as_str()],
        vec!["merge", id.as_str()],
        vec!["ensemble", id.as_str(), id.as_str()],
    ] {
        let o = race_eval(tmp.path(), &args);
        refused(&o, &["summary.json", "exceeds total", "evaluate again"]);
    }
    // The leaderboard leaves it out, naming the file, and ranks nothing at 170%.
    let o = race_eval(tmp.path(), &["leaderboard"]);
    assert!(o.status.success());
    assert!(!stdout(&o).contains(&id), "{}", stdout(&o));
    assert!(stderr(&o).contains("summary.json") && stderr(&o).contains("left out"));
}

#[test]
fn errors_advise_only_flags_the_command_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let good = row("middle1.txt", "The kite is red.", "What colour?", OPTS, "A");
    let bad = row("middle2.txt", "Text.", "Q?", OPTS, "Z");
    for split in ["train", "dev"] {
        std::fs::write(
            dir.join(format!("{split}.jsonl")),
            [good.clone(), bad.clone()].join("\n"),
        )
        .unwrap();
    }
    let model = tiny().display().to_string();
    let d = dir.display().to_string();
    let o = race_eval(
        tmp.path(),
        &[
            "train", "--model", &model, "--data", &d, "--output", "out", "--steps", "1", "-q",
        ],
    );
    let err = refused(&o, &["train.jsonl:2", "`answer`", "Fix the data"]);
    assert!(
        !err.contains("--skip-invalid"),
        "train has no --skip-invalid: {err}"
    );
    let o = race_eval(
        tmp.path(),
        &["bench", "--model", &model, "--data", &d, "--split", "train"],
    );
    let err = refused(&o, &["train.jsonl:2", "Fix the data"]);
    assert!(
        !err.contains("--skip-invalid"),
        "bench has no --skip-invalid: {err}"
    );
    let o = race_eval(
        tmp.path(),
        &[
            "eval", "--model", &model, "--data", &d, "--split", "train", "-q",
        ],
    );
    refused(&o, &["train.jsonl:2", "--skip-invalid"]);
}

#[test]
fn a_head_file_inside_a_head_folder_is_checked_against_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny().display().to_string();
    let s = sample();
    let out = tmp.path().join("head");
    let o = race_eval(
        tmp.path(),
        &[
            "train",
            "--model",
            &model,
            "--data",
            &s,
            "--split",
            "test",
            "--head-only",
            "--steps",
            "1",
            "--eval-every",
            "1",
            "--max-seq-len",
            "48",
            "--max-qa-len",
            "16",
            "--output",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let other = manifest().join("datasets/models/no-prefix");
    let file = out.join("head.safetensors");
    let o = race_eval(
        tmp.path(),
        &[
            "eval",
            "--model",
            other.to_str().unwrap(),
            "--head",
            file.to_str().unwrap(),
            "--data",
            &s,
            "-q",
        ],
    );
    refused(&o, &["--head", "other base weights"]);
}
