//! ALBERT configuration, mirroring the Hub's `config.json` (transformers' `AlbertConfig`).
//!
//! Defaults are those of `transformers.AlbertConfig.__init__`; unknown keys are ignored so any
//! Hub config parses. [`AlbertConfig::validate`] turns bad values into errors that name the key.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::activation::Activation;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlbertConfig {
    pub vocab_size: usize,
    pub embedding_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_hidden_groups: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub inner_group_num: usize,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub classifier_dropout_prob: Option<f64>,
    pub position_embedding_type: String,
    pub pad_token_id: u32,
    pub model_type: Option<String>,
}

impl Default for AlbertConfig {
    fn default() -> Self {
        // transformers/models/albert/configuration_albert.py (AlbertConfig.__init__ defaults).
        Self {
            vocab_size: 30000,
            embedding_size: 128,
            hidden_size: 4096,
            num_hidden_layers: 12,
            num_hidden_groups: 1,
            num_attention_heads: 64,
            intermediate_size: 16384,
            inner_group_num: 1,
            hidden_act: "gelu_new".into(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            classifier_dropout_prob: Some(0.1),
            position_embedding_type: "absolute".into(),
            pad_token_id: 0,
            model_type: Some("albert".into()),
        }
    }
}

impl AlbertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in model config {}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "config.json is not a valid ALBERT config (line {}, column {}): {e}",
                e.line(),
                e.column()
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value the model relies on; errors name the offending key.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.model_type {
            if t != "albert" {
                bail!("`model_type` is {t:?}, but race-eval runs ALBERT models only (\"albert\")");
            }
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_hidden_groups", self.num_hidden_groups),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("inner_group_num", self.inner_group_num),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("`{key}` must be at least 1, got 0");
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "`hidden_size` ({}) must be a multiple of `num_attention_heads` ({})",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.num_hidden_groups > self.num_hidden_layers {
            bail!(
                "`num_hidden_groups` ({}) cannot exceed `num_hidden_layers` ({})",
                self.num_hidden_groups,
                self.num_hidden_layers
            );
        }
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            (
                "classifier_dropout_prob",
                self.classifier_dropout_prob.unwrap_or(0.0),
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                bail!("`{key}` must be in [0, 1), got {p}");
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            bail!(
                "`layer_norm_eps` must be positive, got {}",
                self.layer_norm_eps
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!(
                "`position_embedding_type` {:?} is not supported; race-eval implements \"absolute\" (as every released ALBERT uses)",
                self.position_embedding_type
            );
        }
        Activation::from_name(&self.hidden_act)?;
        Ok(())
    }

    pub fn activation(&self) -> Activation {
        Activation::from_name(&self.hidden_act).expect("validated in AlbertConfig::validate")
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Dropout before the classifier (`classifier_dropout_prob`, 0.1 when absent).
    pub fn classifier_dropout(&self) -> f64 {
        self.classifier_dropout_prob.unwrap_or(0.1)
    }

    /// Layer group used by layer `i`: transformers computes `int(i / (layers / groups))`.
    pub fn group_of_layer(&self, i: usize) -> usize {
        let per_group = self.num_hidden_layers as f64 / self.num_hidden_groups as f64;
        ((i as f64 / per_group) as usize).min(self.num_hidden_groups - 1)
    }

    /// Parameter counts computed from the config alone (no weights read).
    pub fn param_counts(&self) -> ParamCounts {
        let (v, e, h, i) = (
            self.vocab_size,
            self.embedding_size,
            self.hidden_size,
            self.intermediate_size,
        );
        let embeddings = (v + self.max_position_embeddings + self.type_vocab_size) * e + 2 * e;
        let mapping_in = e * h + h;
        let attention = 4 * (h * h + h) + 2 * h;
        let ffn = (h * i + i) + (i * h + h) + 2 * h;
        let layer = attention + ffn;
        let encoder = mapping_in + self.num_hidden_groups * self.inner_group_num * layer;
        let pooler = h * h + h;
        let backbone = embeddings + encoder + pooler;
        ParamCounts {
            embeddings,
            encoder,
            pooler,
            backbone,
            multiple_choice: backbone + h + 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamCounts {
    pub embeddings: usize,
    /// Embedding projection plus the shared layer groups.
    pub encoder: usize,
    pub pooler: usize,
    /// `AlbertModel` with its pooler.
    pub backbone: usize,
    /// `AlbertForMultipleChoice`: the backbone plus `classifier` (hidden → 1).
    pub multiple_choice: usize,
}
