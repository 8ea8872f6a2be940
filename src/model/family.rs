//! The encoder families race-eval runs, and where each keeps its weights.
//!
//! Every family is the same post-LN transformer (embeddings, an optional projection to the
//! hidden width, `num_hidden_layers` passes of attention + feed-forward, a head on the first
//! token); they differ in tensor names, in which layers share weights (ALBERT) and in small
//! details (RoBERTa's position offset, DistilBERT's missing token types, the head's activation).
//! This file is the one place that knows the names: [`Family::layer_names`] for a layer's eight
//! weights, [`Family::embedding_prefix`], [`Family::projection`] and [`Family::head`].
//!
//! Names are those of transformers' `*ForMultipleChoice` state dicts: `modeling_albert.py`,
//! `modeling_bert.py`, `modeling_roberta.py` (XLM-R reuses RoBERTa's modules and prefix),
//! `modeling_distilbert.py` and `modeling_electra.py`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    #[default]
    Albert,
    Bert,
    Roberta,
    XlmRoberta,
    DistilBert,
    Electra,
}

/// The activation between the head's dense layer and the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadActivation {
    /// The pooler (ALBERT, BERT, RoBERTa): `tanh(dense(cls))`.
    Tanh,
    /// DistilBERT: `relu(pre_classifier(cls))`.
    Relu,
    /// ELECTRA's sequence summary: `gelu(summary(cls))` (exact GELU).
    Gelu,
}

/// Where the multiple-choice head keeps its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadNames {
    /// The dense layer on the first token's state (hidden → hidden).
    pub dense: String,
    pub activation: HeadActivation,
    /// `classifier` (hidden → 1) in every family.
    pub classifier: &'static str,
}

/// A layer's eight weights, relative to the layer's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    /// Attention output projection.
    pub dense: &'static str,
    /// LayerNorm after attention + residual.
    pub attention_norm: &'static str,
    /// Feed-forward in (hidden → intermediate) and out.
    pub ffn: &'static str,
    pub ffn_output: &'static str,
    /// LayerNorm after the feed-forward + residual.
    pub output_norm: &'static str,
}

const ALBERT_LAYER: LayerNames = LayerNames {
    query: "attention.query",
    key: "attention.key",
    value: "attention.value",
    dense: "attention.dense",
    attention_norm: "attention.LayerNorm",
    ffn: "ffn",
    ffn_output: "ffn_output",
    output_norm: "full_layer_layer_norm",
};

const BERT_LAYER: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    dense: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn: "intermediate.dense",
    ffn_output: "output.dense",
    output_norm: "output.LayerNorm",
};

const DISTILBERT_LAYER: LayerNames = LayerNames {
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    dense: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    ffn: "ffn.lin1",
    ffn_output: "ffn.lin2",
    output_norm: "output_layer_norm",
};

pub const ALL: [Family; 6] = [
    Family::Albert,
    Family::Bert,
    Family::Roberta,
    Family::XlmRoberta,
    Family::DistilBert,
    Family::Electra,
];

impl Family {
    /// From config.json's `model_type` (absent: ALBERT, as configs written before it existed).
    pub fn from_model_type(model_type: Option<&str>) -> Result<Self> {
        Ok(match model_type {
            None | Some("albert") => Self::Albert,
            Some("bert") => Self::Bert,
            Some("roberta") => Self::Roberta,
            Some("xlm-roberta") => Self::XlmRoberta,
            Some("distilbert") => Self::DistilBert,
            Some("electra") => Self::Electra,
            Some(other) => bail!(
                "`model_type` is {other:?}; race-eval runs {}",
                ALL.map(|f| format!("{:?}", f.model_type())).join(", ")
            ),
        })
    }

    /// config.json's `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Albert => "albert",
            Self::Bert => "bert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::DistilBert => "distilbert",
            Self::Electra => "electra",
        }
    }

    /// The transformers class whose checkpoints load with their head.
    pub fn multiple_choice_class(self) -> &'static str {
        match self {
            Self::Albert => "AlbertForMultipleChoice",
            Self::Bert => "BertForMultipleChoice",
            Self::Roberta => "RobertaForMultipleChoice",
            Self::XlmRoberta => "XLMRobertaForMultipleChoice",
            Self::DistilBert => "DistilBertForMultipleChoice",
            Self::Electra => "ElectraForMultipleChoice",
        }
    }

    /// The backbone's attribute in the multiple-choice model (`base_model_prefix`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Albert => "albert",
            Self::Bert => "bert",
            Self::Roberta | Self::XlmRoberta => "roberta",
            Self::DistilBert => "distilbert",
            Self::Electra => "electra",
        }
    }

    /// The backbone's top-level modules: a checkpoint name starting with one of these, after an
    /// optional `prefix.`, belongs to the backbone.
    fn backbone_modules(self) -> &'static [&'static str] {
        match self {
            Self::Albert => &["embeddings.", "encoder.", "pooler."],
            Self::Bert | Self::Roberta | Self::XlmRoberta => {
                &["embeddings.", "encoder.", "pooler."]
            }
            Self::DistilBert => &["embeddings.", "transformer."],
            Self::Electra => &["embeddings.", "embeddings_project.", "encoder."],
        }
    }

    /// The multiple-choice head's weights.
    pub fn head(self) -> HeadNames {
        let (dense, activation) = match self {
            Self::Albert => ("albert.pooler".to_string(), HeadActivation::Tanh),
            Self::Bert | Self::Roberta | Self::XlmRoberta => (
                format!("{}.pooler.dense", self.prefix()),
                HeadActivation::Tanh,
            ),
            Self::DistilBert => ("pre_classifier".to_string(), HeadActivation::Relu),
            Self::Electra => ("sequence_summary.summary".to_string(), HeadActivation::Gelu),
        };
        HeadNames {
            dense,
            activation,
            classifier: "classifier",
        }
    }

    /// Whether a canonical name is a head tensor: these may be absent from a checkpoint (a
    /// backbone saved from a masked-LM or sentence-embedding model) and are then initialised.
    pub fn is_head_tensor(self, canonical: &str) -> bool {
        let head = self.head();
        [head.dense.as_str(), head.classifier]
            .iter()
            .any(|p| canonical.starts_with(&format!("{p}.")))
    }

    /// The canonical (`*ForMultipleChoice`) name of a checkpoint tensor, or `None` for tensors
    /// of other heads (`predictions.*`, `cls.*`, `lm_head.*`, `vocab_*`, …).
    pub fn canonical_name(self, name: &str) -> Option<String> {
        // Buffers some checkpoints carry (`embeddings.position_ids`, `token_type_ids`): not weights.
        if name.ends_with(".position_ids") || name.ends_with("embeddings.token_type_ids") {
            return None;
        }
        if self.is_head_tensor(name) && !name.starts_with(&format!("{}.", self.prefix())) {
            return Some(name.to_string());
        }
        let rest = name
            .strip_prefix(self.prefix())
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(name);
        let canonical = format!("{}.{rest}", self.prefix());
        if self.backbone_modules().iter().any(|m| rest.starts_with(m)) {
            Some(canonical)
        } else if self.is_head_tensor(&canonical) {
            // A pooler saved without the prefix (`pooler.dense.weight`).
            Some(canonical)
        } else {
            None
        }
    }

    /// Where the embedding tables and their LayerNorm live.
    pub fn embedding_prefix(self) -> String {
        format!("{}.embeddings", self.prefix())
    }

    /// The linear layer from `embedding_size` to `hidden_size`, where the family has one.
    pub fn projection(self) -> Option<String> {
        match self {
            Self::Albert => Some("albert.encoder.embedding_hidden_mapping_in".into()),
            Self::Electra => Some("electra.embeddings_project".into()),
            _ => None,
        }
    }

    /// The prefix of layer `index`; for ALBERT, `index` is (group, inner layer).
    pub fn layer_prefix(self, group: usize, inner: usize) -> String {
        match self {
            Self::Albert => {
                format!("albert.encoder.albert_layer_groups.{group}.albert_layers.{inner}")
            }
            Self::DistilBert => format!("distilbert.transformer.layer.{group}"),
            _ => format!("{}.encoder.layer.{group}", self.prefix()),
        }
    }

    pub fn layer_names(self) -> LayerNames {
        match self {
            Self::Albert => ALBERT_LAYER,
            Self::DistilBert => DISTILBERT_LAYER,
            _ => BERT_LAYER,
        }
    }

    /// RoBERTa's position ids start after the padding index: `padding_idx + 1 + i` for real
    /// tokens, `padding_idx` for padding (`create_position_ids_from_input_ids`).
    pub fn offsets_positions(self) -> bool {
        matches!(self, Self::Roberta | Self::XlmRoberta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_the_prefix_meet() {
        let f = Family::Bert;
        for name in [
            "bert.encoder.layer.0.attention.self.query.weight",
            "encoder.layer.0.attention.self.query.weight",
        ] {
            assert_eq!(
                f.canonical_name(name).as_deref(),
                Some("bert.encoder.layer.0.attention.self.query.weight")
            );
        }
        assert_eq!(
            f.canonical_name("pooler.dense.weight").as_deref(),
            Some("bert.pooler.dense.weight")
        );
        assert_eq!(
            f.canonical_name("classifier.bias").as_deref(),
            Some("classifier.bias")
        );
        assert_eq!(f.canonical_name("cls.predictions.bias"), None);
        assert_eq!(f.canonical_name("embeddings.position_ids"), None);
        assert_eq!(
            Family::XlmRoberta
                .canonical_name("embeddings.word_embeddings.weight")
                .as_deref(),
            Some("roberta.embeddings.word_embeddings.weight")
        );
        assert_eq!(Family::Roberta.canonical_name("lm_head.dense.weight"), None);
        assert_eq!(
            Family::DistilBert
                .canonical_name("pre_classifier.weight")
                .as_deref(),
            Some("pre_classifier.weight")
        );
        assert_eq!(
            Family::DistilBert.canonical_name("vocab_projector.weight"),
            None
        );
        assert_eq!(
            Family::Electra
                .canonical_name("embeddings_project.bias")
                .as_deref(),
            Some("electra.embeddings_project.bias")
        );
        assert_eq!(
            Family::Electra
                .canonical_name("sequence_summary.summary.weight")
                .as_deref(),
            Some("sequence_summary.summary.weight")
        );
        assert_eq!(
            Family::Electra.canonical_name("discriminator_predictions.dense.weight"),
            None
        );
        assert_eq!(
            Family::Albert.canonical_name("pooler.weight").as_deref(),
            Some("albert.pooler.weight")
        );
        assert_eq!(Family::Albert.canonical_name("predictions.bias"), None);
    }

    #[test]
    fn model_types_round_trip_and_unknown_ones_are_named() {
        for f in ALL {
            assert_eq!(Family::from_model_type(Some(f.model_type())).unwrap(), f);
        }
        let err = Family::from_model_type(Some("gpt2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt2") && err.contains("distilbert"), "{err}");
    }
}
