//! Loading errors name what is wrong: the tensor and both shapes, the config key, the file.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use race_eval::model::{LoadedModel, ModelConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/models")
        .join(name)
}

/// A copy of a fixture model folder whose config.json has `edit` applied.
fn with_config(name: &str, edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match LoadedModel::load(dir, DType::F32, &Device::Cpu, None) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn shape_mismatch_names_the_tensor_and_both_shapes() {
    let dir = with_config("tiny-albert", |c| c["intermediate_size"] = 96.into());
    let msg = load_err(dir.path());
    assert!(msg.contains("shape mismatch for tensor `albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight`"), "{msg}");
    assert!(
        msg.contains("[64, 32]") && msg.contains("[96, 32]"),
        "{msg}"
    );
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn missing_tensor_names_it_and_the_checkpoint() {
    // Two groups declared, one stored: group 1's tensors are missing.
    let dir = with_config("tiny-albert", |c| c["num_hidden_groups"] = 2.into());
    let msg = load_err(dir.path());
    assert!(
        msg.contains("albert.encoder.albert_layer_groups.1."),
        "{msg}"
    );
    assert!(msg.contains("missing from"), "{msg}");
}

#[test]
fn truncated_weights_file_is_reported_with_its_path() {
    let dir = with_config("tiny-albert", |_| {});
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains(&weights.display().to_string()) && msg.contains("truncated or corrupt"),
        "{msg}"
    );
}

#[test]
fn no_weights_at_all() {
    let dir = with_config("tiny-albert", |_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains("no weights in") && msg.contains("pytorch_model.bin"),
        "{msg}"
    );
}

#[test]
fn bad_config_values_name_the_key() {
    let cases: &[(&str, serde_json::Value, &str)] = &[
        (
            "num_attention_heads",
            5.into(),
            "`hidden_size` (32) must be a multiple of `num_attention_heads` (5)",
        ),
        (
            "hidden_act",
            "gelu_fancy".into(),
            "`hidden_act` \"gelu_fancy\"",
        ),
        (
            "num_hidden_groups",
            0.into(),
            "`num_hidden_groups` must be at least 1",
        ),
        (
            "hidden_dropout_prob",
            1.5.into(),
            "`hidden_dropout_prob` must be in [0, 1)",
        ),
        ("hidden_size", "big".into(), "invalid type"),
        (
            "position_embedding_type",
            "relative_key".into(),
            "`position_embedding_type`",
        ),
        ("model_type", "gpt2".into(), "`model_type` is \"gpt2\""),
    ];
    for (key, value, expected) in cases {
        let mut cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("tiny-albert").join("config.json")).unwrap(),
        )
        .unwrap();
        cfg[*key] = value.clone();
        let err = ModelConfig::from_json(&cfg.to_string()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(expected), "{key}: {msg}");
    }
}

#[test]
fn unknown_config_keys_are_ignored_and_defaults_follow_transformers() {
    let cfg = ModelConfig::from_json(r#"{"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "some_future_key": [1, 2]}"#)
        .unwrap();
    assert_eq!(cfg.embedding_size, 128);
    assert_eq!(cfg.hidden_act, "gelu_new");
    assert_eq!(cfg.layer_norm_eps, 1e-12);
    assert_eq!(cfg.classifier_dropout(), 0.1);
}

#[test]
fn group_of_layer_matches_transformers_formula() {
    let cfg = ModelConfig {
        num_hidden_layers: 12,
        num_hidden_groups: 3,
        ..ModelConfig::default()
    };
    let groups: Vec<usize> = (0..12).map(|i| cfg.group_of_layer(i)).collect();
    assert_eq!(groups, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    // Not divisible: int(i / (5 / 2)) = int(i / 2.5).
    let cfg = ModelConfig {
        num_hidden_layers: 5,
        num_hidden_groups: 2,
        ..ModelConfig::default()
    };
    let groups: Vec<usize> = (0..5).map(|i| cfg.group_of_layer(i)).collect();
    assert_eq!(groups, [0, 0, 0, 1, 1]);
}
