//! Parity with transformers on every task beside RACE: the first questions of each task's
//! shared dev data, loaded through race-eval's own loaders, tokenised as `eval` does and run
//! through the tiny ALBERT (datasets/models/tiny-albert), against what
//! scripts/make_task_fixtures.py computed from the same files with its own parsing
//! (tests/fixtures/tasks/TASK.json: ids, labels, option counts, hashes of the token ids, f32
//! logits; never the licensed text).
//!
//! The data stays in ../shared beside the checkout: each test says SKIPPED and returns when it
//! is absent.

use std::path::PathBuf;

use candle_core::{DType, Device};
use serde::Deserialize;

use race_eval::data::{LoadOptions, Task};
use race_eval::eval;
use race_eval::features::{FormatConfig, TextEncoder};
use race_eval::model::LoadedModel;

mod reference;

use reference::root;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    task: String,
    split: String,
    model: String,
    weights_sha256: String,
    data: Vec<DataFile>,
    max_seq_len: usize,
    max_qa_len: usize,
    questions: Vec<FixtureQuestion>,
}

#[derive(Deserialize)]
struct DataFile {
    /// `shared/data/…`, relative to the folder beside the checkout.
    file: String,
    sha256: String,
}

#[derive(Deserialize)]
struct FixtureQuestion {
    /// `{passage_id}#{question_index}`.
    id: String,
    label: usize,
    options: usize,
    lengths: Vec<usize>,
    ids_sha256: Vec<String>,
    types_sha256: Vec<String>,
    logits: Vec<f32>,
}

/// As the fixture script hashes token ids: decimal numbers joined by ",".
fn ids_hash(ids: &[u32]) -> String {
    let text: Vec<String> = ids.iter().map(u32::to_string).collect();
    race_eval::hash::sha256_str(&text.join(","))
}

fn fixture(task: &str) -> Fixture {
    let path = root()
        .join("tests/fixtures/tasks")
        .join(format!("{task}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads the task's split from its shared folder (as `eval --data FOLDER --split dev` does),
/// then checks the first questions against the fixture.
fn check(task: &str) {
    let fx = fixture(task);
    assert_eq!(fx.task, task);
    let beside = root().join("..");
    let files: Vec<PathBuf> = fx.data.iter().map(|d| beside.join(&d.file)).collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        eprintln!("SKIPPED: {task}: no shared data at {}", missing.display());
        return;
    }
    for (d, f) in fx.data.iter().zip(&files) {
        assert_eq!(
            race_eval::hash::sha256_files(std::slice::from_ref(f)).unwrap(),
            d.sha256,
            "{}: not the fixture's file",
            f.display()
        );
    }

    let folder = files[0].parent().unwrap();
    let opts = LoadOptions {
        split: fx.split.clone(),
        ..LoadOptions::default()
    };
    let ds = Task::from_name(task).unwrap().load(folder, &opts).unwrap();
    let canon = |p: &PathBuf| p.canonicalize().unwrap();
    assert_eq!(
        ds.files.iter().map(canon).collect::<Vec<_>>(),
        files.iter().map(canon).collect::<Vec<_>>(),
        "{task}: --split {} read other files",
        fx.split
    );
    let n = fx.questions.len();
    assert!(
        ds.questions.len() >= n,
        "{task}: {} questions",
        ds.questions.len()
    );
    let questions = &ds.questions[..n];

    let dir = root().join(&fx.model);
    assert_eq!(
        race_eval::hash::sha256_files(&[dir.join("model.safetensors")]).unwrap(),
        fx.weights_sha256,
        "not the fixture's weights"
    );
    let encoder = TextEncoder::from_file(&dir.join("tokenizer.json")).unwrap();
    let cfg = FormatConfig {
        max_seq_len: fx.max_seq_len,
        max_qa_len: fx.max_qa_len,
    };
    let features = encoder.encode_all(questions, &cfg).unwrap();
    for ((q, f), r) in questions.iter().zip(&features).zip(&fx.questions) {
        assert_eq!(
            (q.id.as_str(), q.label, q.options.len()),
            (r.id.as_str(), r.label, r.options),
            "{task}: id, label, options"
        );
        let got: Vec<usize> = f.input_ids.iter().map(Vec::len).collect();
        assert_eq!(got, r.lengths, "{task} {}: token lengths", q.id);
        let got: Vec<String> = f.input_ids.iter().map(|i| ids_hash(i)).collect();
        assert_eq!(got, r.ids_sha256, "{task} {}: token ids", q.id);
        let got: Vec<String> = f.token_type_ids.iter().map(|i| ids_hash(i)).collect();
        assert_eq!(got, r.types_sha256, "{task} {}: token type ids", q.id);
    }

    let loaded = LoadedModel::load(&dir, DType::F32, &Device::Cpu, None).unwrap();
    let pad = loaded.config.pad_token_id;
    // Batches of 4 pad the shorter inputs, as eval does.
    let logits = eval::logits(&loaded.model, &features, 4, pad, &Device::Cpu, None).unwrap();
    let mut worst = 0f32;
    for ((q, got), r) in questions.iter().zip(&logits).zip(&fx.questions) {
        assert_eq!(got.len(), r.logits.len(), "{task} {}", q.id);
        for (a, b) in got.iter().zip(&r.logits) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(
        worst < TOLERANCE,
        "{task}: max |logit - transformers| = {worst}"
    );
    eprintln!("{task}: {n} questions: max |logit - transformers| = {worst:.2e}");
}

#[test]
fn dream_matches_transformers() {
    check("dream");
}

#[test]
fn mctest160_matches_transformers() {
    check("mctest160");
}

#[test]
fn mctest500_matches_transformers() {
    check("mctest500");
}

#[test]
fn mcscript_matches_transformers() {
    check("mcscript");
}

#[test]
fn reclor_matches_transformers() {
    check("reclor");
}

#[test]
fn cosmosqa_matches_transformers() {
    check("cosmosqa");
}

#[test]
fn quail_matches_transformers() {
    check("quail");
}
