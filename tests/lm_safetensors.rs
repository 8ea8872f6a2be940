//! Decoder LMs from transformers folders (config.json + safetensors + tokenizer.json) against
//! transformers itself: the tiny random `LlamaForCausalLM` and `Qwen2ForCausalLM` of
//! `scripts/make_lm_fixtures.py` (datasets/models/tiny-llama, tiny-qwen2; reference
//! tests/fixtures/lm/reference.json, transformers 4.57.1, float32).
//!
//! Covered: tied (Llama) and untied (Qwen2) output layers, q/k/v biases (Qwen2), grouped-query
//! attention (4/2 and 4/1 heads), a head width with n_head × head_dim ≠ hidden (Llama), rope_theta
//! 1e4 and 1e6, a sharded checkpoint with its index (Qwen2), a tokenizer that prepends BOS
//! (Llama) and one that adds nothing (Qwen2), the harness' `_encode_pair` with the tokenizer's
//! default special tokens, and `race-eval eval --model FOLDER` choosing the decoder path.
//!
//! Tolerance: token and option log-likelihoods (options of 3–12 tokens, about −6 nats a token)
//! within [`TOL`] = 1e-4 nats; measured max |Δ| 1.0e-5 (Llama) and 8.6e-6 (Qwen2), printed by the
//! test (f32 arithmetic in another summation order than torch's).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use race_eval::features::harness::{self, LmDoc};
use race_eval::model::llama::WeightMode;
use serde::Deserialize;

const TOL: f64 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    models: std::collections::BTreeMap<String, ModelRef>,
    docs: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ModelRef {
    tokenizer: Vec<TokCase>,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct TokCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Item {
    doc: usize,
    question_index: usize,
    context: String,
    options: Vec<String>,
    context_ids: Vec<u32>,
    continuation_ids: Vec<Vec<u32>>,
    token_logprobs: Vec<Vec<f64>>,
    logprobs: Vec<f64>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(root().join("tests/fixtures/lm/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn folder(name: &str) -> PathBuf {
    root().join("datasets/models").join(name)
}

#[test]
fn tokenizer_and_harness_ids_match_transformers() {
    for (name, m) in reference().models {
        let lm = race_eval::open::open_hf_folder(&folder(&name)).unwrap();
        for case in &m.tokenizer {
            let ids = lm.tokenizer.encode(case.text.as_str(), true).unwrap();
            assert_eq!(ids.get_ids(), case.ids, "{name}: {:?}", case.text);
        }
        for it in &m.items {
            let doc = LmDoc {
                question: 0,
                context: it.context.clone(),
                continuations: it.options.iter().map(|o| format!(" {o}")).collect(),
            };
            let ids = harness::encode_doc(&lm.tokenizer, &doc).unwrap();
            assert_eq!(ids.context, it.context_ids, "{name}");
            assert_eq!(ids.continuations, it.continuation_ids, "{name}");
        }
    }
}

#[test]
fn loglikelihoods_match_transformers() {
    for (name, m) in reference().models {
        let lm = race_eval::open::open_hf_folder(&folder(&name)).unwrap();
        let model = lm.load(WeightMode::Dequantized, &Device::Cpu).unwrap();
        let mut worst = 0f64;
        for it in &m.items {
            // Cached prompt (whole and in chunks of 3) with batched continuations, and each
            // option run as one plain sequence.
            let cache = model.prompt(&it.context_ids).unwrap();
            let batched = model
                .continuation_logprobs(&cache, &it.continuation_ids)
                .unwrap();
            let chunked = model
                .continuation_logprobs(
                    &model.prompt_chunked(&it.context_ids, 3).unwrap(),
                    &it.continuation_ids,
                )
                .unwrap();
            for (o, cont) in it.continuation_ids.iter().enumerate() {
                let plain = model.sequence_logprobs(&it.context_ids, cont).unwrap();
                for got in [&batched[o], &chunked[o], &plain] {
                    assert_eq!(got.len(), it.token_logprobs[o].len());
                    for (g, r) in got.iter().zip(&it.token_logprobs[o]) {
                        worst = worst.max((*g as f64 - r).abs());
                    }
                    let sum: f64 = got.iter().map(|&v| v as f64).sum();
                    let d = (sum - it.logprobs[o]).abs();
                    worst = worst.max(d);
                    assert!(
                        d < TOL,
                        "{name} doc {} question {} option {o}: {sum} vs {} (|Δ| {d:.2e})",
                        it.doc,
                        it.question_index,
                        it.logprobs[o]
                    );
                }
            }
        }
        println!("{name}: max |Δ| {worst:.2e} nats (tolerance {TOL:.0e})");
        assert!(
            lm.load(WeightMode::Quantized, &Device::Cpu).is_err(),
            "{name}: --weights quantized is refused for safetensors"
        );
    }
}

/// The reference documents as a JSON-lines file in the EleutherAI/race layout.
fn write_docs(dir: &Path, docs: &[serde_json::Value]) -> PathBuf {
    let path = dir.join("test.jsonl");
    let mut text = String::new();
    for (i, d) in docs.iter().enumerate() {
        let mut d = d.clone();
        d["example_id"] = format!("own{i}").into();
        text += &d.to_string();
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn eval_cli_takes_a_llama_or_qwen2_folder() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let data = write_docs(tmp.path(), &r.docs);
    for (name, m) in &r.models {
        let preds = tmp.path().join(format!("{name}.jsonl"));
        let out = Command::new(env!("CARGO_BIN_EXE_race-eval"))
            .args(["eval", "--model"])
            .arg(folder(name))
            .arg("--data")
            .arg(&data)
            .args(["--protocol", "harness-all", "-q", "--predictions"])
            .arg(&preds)
            .arg("--output-dir")
            .arg(tmp.path().join("results"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<serde_json::Value> = std::fs::read_to_string(&preds)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), m.items.len(), "{name}");
        for (p, it) in got.iter().zip(&m.items) {
            assert_eq!(
                p["id"].as_str().unwrap(),
                format!("own{}#{}", it.doc, it.question_index)
            );
            let logits: Vec<f64> = serde_json::from_value(p["logits"].clone()).unwrap();
            for (g, r) in logits.iter().zip(&it.logprobs) {
                assert!((g - r).abs() < TOL, "{name}: {g} vs {r}");
            }
        }
        // The run record names the checkpoint's weight files.
        let run = std::fs::read_dir(tmp.path().join("results"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                std::fs::read_to_string(p.join("summary.json"))
                    .is_ok_and(|s| s.contains(&format!("\"name\": \"{name}\"")))
            })
            .unwrap_or_else(|| panic!("{name}: no run record"));
        let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
        assert!(summary.contains(".safetensors"), "{summary}");
    }
}

#[test]
fn unsupported_configs_are_refused_by_name() {
    let base: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(folder("tiny-llama").join("config.json")).unwrap(),
    )
    .unwrap();
    for (key, value, says) in [
        (
            "rope_scaling",
            serde_json::json!({"type": "linear", "factor": 2.0}),
            "rope_scaling",
        ),
        ("hidden_act", serde_json::json!("gelu"), "hidden_act"),
        ("attention_bias", serde_json::json!(true), "attention_bias"),
    ] {
        let mut c = base.clone();
        c[key] = value;
        let e = race_eval::model::llama::LlamaConfig::from_hf_json(&c)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{key}: {e}");
    }
    let mut c = base.clone();
    c["model_type"] = "bert".into();
    c["architectures"] = serde_json::json!(["BertForMultipleChoice"]);
    assert!(race_eval::model::llama::hf_family(&c).is_none());
    assert!(!race_eval::open::is_decoder_lm(&folder("tiny-bert")));
    assert!(race_eval::open::is_decoder_lm(&folder("tiny-qwen2")));
}
