//! Parity with the reference: token ids and logits of every fixture model on the sample, against
//! what transformers computed (tests/fixtures/reference/*.json, made by scripts/make_fixtures.py).

use candle_core::{DType, Device};
use race_eval::data::{self, LoadOptions};
use race_eval::eval;
use race_eval::features::{FormatConfig, TextEncoder};
use race_eval::model::LoadedModel;

const TOLERANCE: f32 = 1e-4;

mod reference;

use reference::{read as reference, root};

fn sample() -> data::Dataset {
    data::load(
        &root().join("datasets/sample/test.jsonl"),
        &LoadOptions::default(),
    )
    .unwrap()
}

/// Checks ids and logits of one fixture model in both reference settings. Batches of 3
/// questions exercise padding and the length sort; batch 1 runs each question unpadded.
fn check_model(name: &str) {
    let dir = root().join("datasets/models").join(name);
    let reference = reference(name);
    let ds = sample();
    let encoder = TextEncoder::from_file(&dir.join("tokenizer.json")).unwrap();
    let loaded = LoadedModel::load(&dir, DType::F32, &Device::Cpu, None).unwrap();
    assert!(
        loaded.report.initialised.is_empty(),
        "{name}: {:?}",
        loaded.report.initialised
    );
    assert!(
        loaded.report.unused.is_empty(),
        "{name}: {:?}",
        loaded.report.unused
    );
    assert_eq!(
        loaded.config.family.model_type(),
        reference.model_type.as_deref().unwrap_or("albert"),
        "{name}: family"
    );
    // Padding with the model's own pad id matters for RoBERTa, whose positions skip it.
    let pad = loaded.config.pad_token_id;
    if let Some(p) = reference.pad_token_id {
        assert_eq!(pad, p, "{name}: pad_token_id");
    }
    for setting in &reference.settings {
        let cfg = FormatConfig {
            max_seq_len: setting.max_seq_len,
            max_qa_len: setting.max_qa_len,
        };
        let features = encoder.encode_all(&ds.questions, &cfg).unwrap();
        assert_eq!(features.len(), setting.questions.len());
        for ((q, f), r) in ds.questions.iter().zip(&features).zip(&setting.questions) {
            assert_eq!(
                (&q.passage_id, q.question_index, q.label),
                (&r.id, r.question_index, r.label)
            );
            assert_eq!(
                Some(&f.input_ids),
                r.input_ids.as_ref(),
                "{name} {} ids (max_seq_len {})",
                q.id,
                cfg.max_seq_len
            );
            assert_eq!(
                Some(&f.token_type_ids),
                r.token_type_ids.as_ref(),
                "{name} {} segment ids",
                q.id
            );
            assert!(f.max_len() <= cfg.max_seq_len);
        }
        // Up-front features, and tokenising as the model goes: in windows of 5 questions
        // (rounded up to passage boundaries, so several windows) and of the default size.
        let real_tokens: usize = features
            .iter()
            .flat_map(|f| f.input_ids.iter().map(Vec::len))
            .sum();
        let streamed = |window: Option<usize>, batch_size: usize| {
            let mut input = eval::Streamed::new(&encoder, &ds.questions, &cfg, batch_size);
            input.window = window.unwrap_or(input.window);
            let (logits, tokens) =
                eval::logits_streaming(&loaded.model, input, batch_size, pad, &Device::Cpu, None)
                    .unwrap();
            // It reports every real token it fed, and padding on top.
            assert_eq!(tokens.real, real_tokens);
            assert!(tokens.padded >= tokens.real);
            logits
        };
        for (how, batch_size) in [
            ("features", 1),
            ("features", 3),
            ("window 5", 3),
            ("streamed", 1),
            ("streamed", 3),
        ] {
            let logits = match how {
                "features" => eval::logits(
                    &loaded.model,
                    &features,
                    batch_size,
                    pad,
                    &Device::Cpu,
                    None,
                )
                .unwrap(),
                "window 5" => streamed(Some(5), batch_size),
                _ => streamed(None, batch_size),
            };
            let mut worst = 0f32;
            for (got, r) in logits.iter().zip(&setting.questions) {
                assert_eq!(got.len(), r.logits.len());
                for (a, b) in got.iter().zip(&r.logits) {
                    worst = worst.max((a - b).abs());
                }
            }
            assert!(
                worst < TOLERANCE,
                "{name}: max |logit - reference| = {worst} at max_seq_len {} batch {batch_size} ({how})",
                cfg.max_seq_len
            );
        }
    }
}

#[test]
fn tiny_albert_embedding_ne_hidden_gelu_new() {
    check_model("tiny-albert");
}

#[test]
fn groups_and_inner_layers_gelu() {
    check_model("groups-gelu");
}

#[test]
fn relu_from_pytorch_bin() {
    check_model("relu-bin");
}

#[test]
fn sharded_safetensors_index() {
    check_model("sharded");
}

#[test]
fn checkpoint_without_albert_prefix() {
    check_model("no-prefix");
}

#[test]
fn bert_family() {
    check_model("tiny-bert");
}

/// RoBERTa: `<s> A </s></s> B </s>` with type ids 0, pad id 1 and positions from pad + 1.
#[test]
fn roberta_family() {
    check_model("tiny-roberta");
}

#[test]
fn xlm_roberta_family() {
    check_model("tiny-xlm-roberta");
}

/// DistilBERT: no token types, `pre_classifier` + ReLU head.
#[test]
fn distilbert_family() {
    check_model("tiny-distilbert");
}

/// ELECTRA: embeddings narrower than the hidden states (`embeddings_project`), its summary head.
#[test]
fn electra_family() {
    check_model("tiny-electra");
}

/// The parameter counts `info` prints from config.json alone are the tensors each fixture
/// loads, for every family.
#[test]
fn param_counts_match_the_loaded_tensors_in_every_family() {
    for name in [
        "tiny-albert",
        "groups-gelu",
        "tiny-bert",
        "tiny-roberta",
        "tiny-xlm-roberta",
        "tiny-distilbert",
        "tiny-electra",
    ] {
        let dir = root().join("datasets/models").join(name);
        let varmap = candle_nn::VarMap::new();
        let loaded = LoadedModel::load(&dir, DType::F32, &Device::Cpu, Some(&varmap)).unwrap();
        let count: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(
            count,
            loaded.config.param_counts().multiple_choice,
            "{name}"
        );
    }
}

/// A BERT backbone saved without the `bert.` prefix, as sentence-transformers saves MiniLM:
/// its pooler loads, and only the classifier is initialised, with one warning line.
#[test]
fn bert_backbone_without_prefix_loads_its_pooler_and_initialises_the_classifier() {
    let dir = root().join("datasets/models/bert-backbone");
    let loaded = LoadedModel::load(&dir, DType::F32, &Device::Cpu, None).unwrap();
    let mut init = loaded.report.initialised.clone();
    init.sort();
    assert_eq!(init, ["classifier.bias", "classifier.weight"]);
    assert!(
        loaded.report.unused.is_empty(),
        "{:?}",
        loaded.report.unused
    );
    let warning = loaded.report.warning().expect("a warning line");
    assert!(
        warning.contains("classifier") && !warning.contains("pooler"),
        "{warning}"
    );
}

#[test]
fn tree_and_jsonl_give_the_same_questions() {
    let tree = data::load(&root().join("datasets/sample"), &LoadOptions::default()).unwrap();
    let jsonl = sample();
    assert_eq!(tree.format, "race-tree");
    assert_eq!(jsonl.format, "jsonl");
    let key = |d: &data::Dataset| -> Vec<(String, String, Vec<String>, usize, String)> {
        d.questions
            .iter()
            .map(|q| {
                (
                    q.id.clone(),
                    q.question.clone(),
                    q.options.clone(),
                    q.label,
                    q.article.to_string(),
                )
            })
            .collect()
    };
    assert_eq!(key(&tree), key(&jsonl));
    assert_eq!(tree.passages(), jsonl.passages());
}

#[test]
fn backbone_only_checkpoint_initialises_the_head_and_warns() {
    let dir = root().join("datasets/models/mlm-backbone");
    let loaded = LoadedModel::load(&dir, DType::F32, &Device::Cpu, None).unwrap();
    let init = &loaded.report.initialised;
    for name in [
        "albert.pooler.weight",
        "albert.pooler.bias",
        "classifier.weight",
        "classifier.bias",
    ] {
        assert!(
            init.iter().any(|n| n == name),
            "{name} not reported as initialised: {init:?}"
        );
    }
    assert!(loaded
        .report
        .ignored
        .iter()
        .any(|n| n.starts_with("predictions.")));
    let warning = loaded.report.warning().expect("a warning line");
    assert!(!warning.contains('\n'));
    assert!(
        warning.contains("albert.pooler") && warning.contains("classifier"),
        "{warning}"
    );
    assert_eq!(init.len(), 4, "only the head may be initialised: {init:?}");
}

#[test]
fn trainable_load_registers_every_tensor_in_the_varmap() {
    let dir = root().join("datasets/models/tiny-albert");
    let varmap = candle_nn::VarMap::new();
    let loaded = LoadedModel::load(&dir, DType::F32, &Device::Cpu, Some(&varmap)).unwrap();
    let count: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    assert_eq!(count, loaded.config.param_counts().multiple_choice);
    assert!(varmap
        .data()
        .lock()
        .unwrap()
        .contains_key("classifier.weight"));
}
