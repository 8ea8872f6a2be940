//! The encoder's configuration, mirroring the Hub's `config.json`.
//!
//! [`ModelConfig`] has the keys of transformers' `AlbertConfig` and describes every family: BERT,
//! RoBERTa, XLM-R and ELECTRA configs use the same key names (a BERT-like encoder is an ALBERT
//! with one group per layer and `embedding_size == hidden_size`); DistilBERT's own keys (`dim`,
//! `n_layers`, …) are read by [`DistilBertJson`]. `model_type` picks the [`Family`]. Defaults are
//! those of `transformers.ModelConfig.__init__` (and `BertConfig`, `DistilBertConfig`); unknown
//! keys are ignored so any Hub config parses. [`ModelConfig::validate`] turns bad values into
//! errors that name the key.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::family::Family;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// From `model_type`; written to run records, never read from config.json's own keys.
    #[serde(skip_deserializing)]
    pub family: Family,
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

impl Default for ModelConfig {
    fn default() -> Self {
        // transformers/models/albert/configuration_albert.py (ModelConfig.__init__ defaults).
        Self {
            family: Family::Albert,
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

impl ModelConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in model config {}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let syntax = |e: serde_json::Error| {
            anyhow::anyhow!(
                "config.json is not a valid model config (line {}, column {}): {e}",
                e.line(),
                e.column()
            )
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(syntax)?;
        let family = Family::from_model_type(value.get("model_type").and_then(|v| v.as_str()))?;
        // A value of the wrong type names its key (`hidden_size`: invalid type: string …).
        fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let key = e.path().to_string();
                anyhow::anyhow!("config.json: key `{key}`: {}", e.into_inner())
            })
        }
        let mut cfg = match family {
            Family::Albert => typed::<Self>(value)?,
            Family::DistilBert => typed::<DistilBertJson>(value)?.into_config(),
            _ => typed::<BertJson>(value)?.into_config(family),
        };
        cfg.family = family;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value the model relies on; errors name the offending key.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.model_type {
            if Family::from_model_type(Some(t))? != self.family {
                bail!(
                    "`model_type` is {t:?}, but the configuration was read as {:?}",
                    self.family.model_type()
                );
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
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("`{key}` must be at least 1, got 0");
            }
        }
        if self.family != Family::DistilBert && self.type_vocab_size == 0 {
            bail!("`type_vocab_size` must be at least 1, got 0");
        }
        if self.max_sequence_len() == 0 {
            bail!(
                "`max_position_embeddings` ({}) leaves no positions after RoBERTa's offset (pad_token_id {} + 1)",
                self.max_position_embeddings,
                self.pad_token_id
            );
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
        if self.pad_token_id as usize >= self.vocab_size {
            bail!(
                "`pad_token_id` ({}) must be below `vocab_size` ({})",
                self.pad_token_id,
                self.vocab_size
            );
        }
        if !(self.initializer_range.is_finite() && self.initializer_range >= 0.0) {
            bail!(
                "`initializer_range` must be a non-negative number, got {}",
                self.initializer_range
            );
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
        Activation::from_name(&self.hidden_act).expect("validated in ModelConfig::validate")
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

    /// Whether a linear layer maps the embeddings to the hidden width (ALBERT always; ELECTRA
    /// when the widths differ, as `ElectraModel.__init__` decides).
    pub fn has_projection(&self) -> bool {
        match self.family {
            Family::Albert => true,
            Family::Electra => self.embedding_size != self.hidden_size,
            _ => false,
        }
    }

    /// Whether the model reads token type ids (DistilBERT has no such table).
    pub fn has_token_types(&self) -> bool {
        self.family != Family::DistilBert
    }

    /// The first position id: `pad_token_id + 1` for RoBERTa and XLM-R, else 0.
    pub fn position_offset(&self) -> usize {
        if self.family.offsets_positions() {
            self.pad_token_id as usize + 1
        } else {
            0
        }
    }

    /// The longest input the position table allows.
    pub fn max_sequence_len(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset())
    }

    /// Distinct layers with their own weights (ALBERT shares them across passes).
    pub fn distinct_layers(&self) -> usize {
        self.num_hidden_groups * self.inner_group_num
    }

    /// Layer passes per forward: `num_hidden_layers` passes through every inner layer of a group.
    pub fn layer_passes(&self) -> usize {
        self.num_hidden_layers * self.inner_group_num
    }

    /// Parameter counts computed from the config alone (no weights read).
    pub fn param_counts(&self) -> ParamCounts {
        let (v, e, h, i) = (
            self.vocab_size,
            self.embedding_size,
            self.hidden_size,
            self.intermediate_size,
        );
        let types = if self.has_token_types() {
            self.type_vocab_size
        } else {
            0
        };
        let embeddings = (v + self.max_position_embeddings + types) * e + 2 * e;
        let projection = if self.has_projection() { e * h + h } else { 0 };
        let attention = 4 * (h * h + h) + 2 * h;
        let ffn = (h * i + i) + (i * h + h) + 2 * h;
        let layer = attention + ffn;
        let encoder = projection + self.distinct_layers() * layer;
        let head_dense = h * h + h;
        // DistilBERT's pre_classifier and ELECTRA's summary belong to the head, not the base model.
        let pooler = match self.family {
            Family::DistilBert | Family::Electra => 0,
            _ => head_dense,
        };
        let backbone = embeddings + encoder + pooler;
        ParamCounts {
            embeddings,
            encoder,
            pooler,
            backbone,
            multiple_choice: backbone + (head_dense - pooler) + h + 1,
        }
    }

    /// Forward FLOPs (multiply-add = 2) of one sequence of `len` tokens: the projection, every
    /// layer pass (projections, attention products, feed-forward) and the head; embedding
    /// lookups are free.
    pub fn flops(&self, len: usize) -> f64 {
        let (l, e, h, i) = (
            len as f64,
            self.embedding_size as f64,
            self.hidden_size as f64,
            self.intermediate_size as f64,
        );
        let projection = if self.has_projection() {
            2.0 * l * e * h
        } else {
            0.0
        };
        let layer = 4.0 * 2.0 * l * h * h + 2.0 * 2.0 * l * l * h + 2.0 * 2.0 * l * h * i;
        projection + self.layer_passes() as f64 * layer + 2.0 * h * h + 2.0 * h
    }
}

/// The keys of `BertConfig` (also RoBERTa's, XLM-R's and ELECTRA's), defaults of `BertConfig`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct BertJson {
    vocab_size: usize,
    /// ELECTRA only; BERT's embeddings are `hidden_size` wide.
    embedding_size: Option<usize>,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: String,
    hidden_dropout_prob: f64,
    attention_probs_dropout_prob: f64,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    initializer_range: f64,
    layer_norm_eps: f64,
    /// BERT's and RoBERTa's dropout before the classifier (None: `hidden_dropout_prob`).
    classifier_dropout: Option<f64>,
    /// ELECTRA's sequence summary dropout after its activation.
    summary_last_dropout: Option<f64>,
    position_embedding_type: String,
    pad_token_id: u32,
    model_type: Option<String>,
}

impl Default for BertJson {
    fn default() -> Self {
        // transformers/models/bert/configuration_bert.py (BertConfig.__init__ defaults).
        Self {
            vocab_size: 30522,
            embedding_size: None,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            classifier_dropout: None,
            summary_last_dropout: None,
            position_embedding_type: "absolute".into(),
            pad_token_id: 0,
            model_type: None,
        }
    }
}

impl BertJson {
    fn into_config(self, family: Family) -> ModelConfig {
        let classifier_dropout = match family {
            Family::Electra => self.summary_last_dropout.unwrap_or(0.1),
            _ => self.classifier_dropout.unwrap_or(self.hidden_dropout_prob),
        };
        ModelConfig {
            family,
            vocab_size: self.vocab_size,
            embedding_size: self.embedding_size.unwrap_or(self.hidden_size),
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            // Every layer its own weights: one group per layer.
            num_hidden_groups: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            inner_group_num: 1,
            hidden_act: self.hidden_act,
            hidden_dropout_prob: self.hidden_dropout_prob,
            attention_probs_dropout_prob: self.attention_probs_dropout_prob,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            initializer_range: self.initializer_range,
            layer_norm_eps: self.layer_norm_eps,
            classifier_dropout_prob: Some(classifier_dropout),
            position_embedding_type: self.position_embedding_type,
            pad_token_id: self.pad_token_id,
            model_type: self.model_type,
        }
    }
}

/// The keys of `DistilBertConfig`, with its defaults.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct DistilBertJson {
    vocab_size: usize,
    max_position_embeddings: usize,
    n_layers: usize,
    n_heads: usize,
    dim: usize,
    hidden_dim: usize,
    dropout: f64,
    attention_dropout: f64,
    activation: String,
    initializer_range: f64,
    seq_classif_dropout: f64,
    pad_token_id: u32,
    model_type: Option<String>,
}

impl Default for DistilBertJson {
    fn default() -> Self {
        // transformers/models/distilbert/configuration_distilbert.py.
        Self {
            vocab_size: 30522,
            max_position_embeddings: 512,
            n_layers: 6,
            n_heads: 12,
            dim: 768,
            hidden_dim: 3072,
            dropout: 0.1,
            attention_dropout: 0.1,
            activation: "gelu".into(),
            initializer_range: 0.02,
            seq_classif_dropout: 0.2,
            pad_token_id: 0,
            model_type: None,
        }
    }
}

impl DistilBertJson {
    fn into_config(self) -> ModelConfig {
        ModelConfig {
            family: Family::DistilBert,
            vocab_size: self.vocab_size,
            embedding_size: self.dim,
            hidden_size: self.dim,
            num_hidden_layers: self.n_layers,
            num_hidden_groups: self.n_layers,
            num_attention_heads: self.n_heads,
            intermediate_size: self.hidden_dim,
            inner_group_num: 1,
            hidden_act: self.activation,
            hidden_dropout_prob: self.dropout,
            attention_probs_dropout_prob: self.attention_dropout,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: 0,
            initializer_range: self.initializer_range,
            // DistilBERT's LayerNorms use eps 1e-12 (`nn.LayerNorm(dim, eps=1e-12)`).
            layer_norm_eps: 1e-12,
            classifier_dropout_prob: Some(self.seq_classif_dropout),
            position_embedding_type: "absolute".into(),
            pad_token_id: self.pad_token_id,
            model_type: self.model_type,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamCounts {
    pub embeddings: usize,
    /// Embedding projection (where there is one) plus the distinct layers.
    pub encoder: usize,
    pub pooler: usize,
    /// The base model (`AlbertModel`, `BertModel`, …) with its pooler where it has one.
    pub backbone: usize,
    /// `*ForMultipleChoice`: the backbone plus the head (`classifier`, hidden → 1, and
    /// DistilBERT's `pre_classifier` or ELECTRA's summary).
    pub multiple_choice: usize,
}
