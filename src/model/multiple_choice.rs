//! The multiple-choice head on the first token's last hidden state, then logits reshaped to
//! (batch, choices):
//!
//! - ALBERT, BERT, RoBERTa, XLM-R (`*ForMultipleChoice` on the pooled output): the pooler
//!   `tanh(dense(cls))`, dropout, `classifier: Linear(hidden, 1)`;
//! - DistilBERT (`DistilBertForMultipleChoice`): `relu(pre_classifier(cls))`, dropout, classifier;
//! - ELECTRA (`ElectraForMultipleChoice`, its sequence summary with `summary_type` "first"):
//!   `gelu(summary(cls))`, dropout, classifier.
//!
//! The head runs in f32 whatever the backbone's dtype, so bf16 and f16 logits are not rounded
//! to the model's precision (their near-ties would otherwise flip).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::backbone::Backbone;
use super::config::ModelConfig;
use super::family::HeadActivation;
use super::layers::{dropout, linear, Linear};

impl HeadActivation {
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Tanh => x.tanh(),
            Self::Relu => x.relu(),
            Self::Gelu => x.gelu_erf(),
        }
    }
}

pub struct MultipleChoiceModel {
    pub backbone: Backbone,
    dense: Linear,
    activation: HeadActivation,
    classifier: Linear,
    classifier_dropout: f64,
}

impl MultipleChoiceModel {
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let head = cfg.family.head();
        let h = cfg.hidden_size;
        Ok(Self {
            backbone: Backbone::load(vb.clone(), cfg)?,
            dense: linear(h, h, vb.pp(&head.dense), cfg)?.to_dtype(DType::F32)?,
            activation: head.activation,
            classifier: linear(h, 1, vb.pp(head.classifier), cfg)?.to_dtype(DType::F32)?,
            classifier_dropout: cfg.classifier_dropout(),
        })
    }

    /// The head's dense layer and activation on [CLS] states (batch, hidden): the pooled output,
    /// in f32.
    pub fn pool(&self, cls: &Tensor) -> Result<Tensor> {
        let cls = cls.to_dtype(DType::F32)?;
        self.activation.forward(&self.dense.forward(&cls)?)
    }

    /// Pooled output (batch, hidden) of (batch, len) inputs.
    pub fn pooled(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let cls = self
            .backbone
            .cls_output(input_ids, token_type_ids, attention_mask, train)?;
        self.pool(&cls)
    }

    /// Inputs are (batch, choices, len); returns logits (batch, choices).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let (b, c, l) = input_ids.dims3()?;
        let flat = |t: &Tensor| t.reshape((b * c, l));
        let pooled = self.pooled(
            &flat(input_ids)?,
            &flat(token_type_ids)?,
            &flat(attention_mask)?,
            train,
        )?;
        self.logits_from_pooled(&pooled, b, c, train)
    }

    /// Classifier on already pooled features (batch * choices, hidden) → (batch, choices).
    pub fn logits_from_pooled(
        &self,
        pooled: &Tensor,
        batch: usize,
        choices: usize,
        train: bool,
    ) -> Result<Tensor> {
        let pooled = dropout(
            &pooled.to_dtype(DType::F32)?,
            self.classifier_dropout,
            train,
        )?;
        self.classifier.forward(&pooled)?.reshape((batch, choices))
    }
}

/// Mean cross-entropy of (batch, choices) logits against gold indices (batch,) u32.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}
