//! Built-in configurations of the released ALBERT v2 models, as their Hub `config.json` files
//! give them, so `info` and benchmarks work without a download.

use super::config::ModelConfig;

/// (name, hidden, layers, heads, intermediate) of albert-{base,large,xlarge,xxlarge}-v2.
const V2: &[(&str, usize, usize, usize, usize)] = &[
    ("albert-base-v2", 768, 12, 12, 3072),
    ("albert-large-v2", 1024, 24, 16, 4096),
    ("albert-xlarge-v2", 2048, 24, 16, 8192),
    ("albert-xxlarge-v2", 4096, 12, 64, 16384),
];

pub fn names() -> Vec<&'static str> {
    V2.iter().map(|p| p.0).collect()
}

/// The configuration of a released model, by name (`albert-base-v2` or `albert/albert-base-v2`).
pub fn preset(name: &str) -> Option<ModelConfig> {
    let name = name.strip_prefix("albert/").unwrap_or(name);
    V2.iter()
        .find(|p| p.0 == name)
        .map(|&(_, hidden, layers, heads, intermediate)| ModelConfig {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: intermediate,
            embedding_size: 128,
            vocab_size: 30000,
            max_position_embeddings: 512,
            hidden_act: "gelu_new".into(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            classifier_dropout_prob: Some(0.1),
            ..ModelConfig::default()
        })
}
