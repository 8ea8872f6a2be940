//! Built-in configurations of released models, with the keys their Hub `config.json` files give,
//! so `info` and benchmarks work without a download. Each is read by the same parser as a
//! downloaded config.

use super::config::ModelConfig;

/// (name, the config.json keys that matter).
const PRESETS: &[(&str, &str)] = &[
    (
        "albert-base-v2",
        r#"{"model_type": "albert", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}"#,
    ),
    (
        "albert-large-v2",
        r#"{"model_type": "albert", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}"#,
    ),
    (
        "albert-xlarge-v2",
        r#"{"model_type": "albert", "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 8192}"#,
    ),
    (
        "albert-xxlarge-v2",
        r#"{"model_type": "albert", "hidden_size": 4096, "num_hidden_layers": 12, "num_attention_heads": 64, "intermediate_size": 16384}"#,
    ),
    (
        "bert-base-uncased",
        r#"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}"#,
    ),
    (
        "bert-large-uncased",
        r#"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}"#,
    ),
    (
        "all-MiniLM-L6-v2",
        r#"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}"#,
    ),
    (
        "roberta-base",
        r#"{"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1, "layer_norm_eps": 1e-05}"#,
    ),
    (
        "roberta-large",
        r#"{"model_type": "roberta", "vocab_size": 50265, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1, "layer_norm_eps": 1e-05}"#,
    ),
    (
        "xlm-roberta-base",
        r#"{"model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1, "layer_norm_eps": 1e-05}"#,
    ),
    (
        "distilbert-base-uncased",
        r#"{"model_type": "distilbert", "vocab_size": 30522, "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072}"#,
    ),
    (
        "electra-small-discriminator",
        r#"{"model_type": "electra", "vocab_size": 30522, "embedding_size": 128, "hidden_size": 256, "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 1024}"#,
    ),
    (
        "electra-base-discriminator",
        r#"{"model_type": "electra", "vocab_size": 30522, "embedding_size": 768, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}"#,
    ),
];

/// Short names the side-by-side benchmarks have used.
const ALIASES: &[(&str, &str)] = &[
    ("bert-base", "bert-base-uncased"),
    ("bert-large", "bert-large-uncased"),
];

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.0).collect()
}

/// The ALBERT v2 sizes, for the side-by-side benchmark.
pub fn albert_names() -> Vec<&'static str> {
    names()
        .into_iter()
        .filter(|n| n.starts_with("albert-"))
        .collect()
}

/// The configuration of a released model, by name (`albert-base-v2` or `albert/albert-base-v2`,
/// `sentence-transformers/all-MiniLM-L6-v2`, …).
pub fn preset(name: &str) -> Option<ModelConfig> {
    let name = name.rsplit('/').next().unwrap_or(name);
    let name = ALIASES.iter().find(|a| a.0 == name).map_or(name, |a| a.1);
    let json = PRESETS.iter().find(|p| p.0 == name)?.1;
    Some(ModelConfig::from_json(json).expect("built-in presets are valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_as_its_family() {
        for name in names() {
            let cfg = preset(name).unwrap();
            let family = cfg.family.model_type();
            let expect = name.split('-').next().unwrap();
            let expect = match expect {
                "all" => "bert",
                "xlm" => "xlm-roberta",
                e => e,
            };
            assert_eq!(family, expect, "{name}");
        }
        assert_eq!(preset("bert-base"), preset("bert-base-uncased"));
        assert_eq!(preset("roberta-base").unwrap().max_sequence_len(), 512);
        assert!(!preset("electra-base-discriminator")
            .unwrap()
            .has_projection());
        assert!(preset("electra-small-discriminator")
            .unwrap()
            .has_projection());
    }
}
