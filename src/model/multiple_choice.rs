//! Multiple-choice head on the pooled output (transformers: `AlbertForMultipleChoice`):
//! dropout, then `classifier: Linear(hidden, 1)`, logits reshaped to (batch, choices).

use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::albert::AlbertModel;
use super::config::AlbertConfig;
use super::layers::{dropout, linear, Linear};

pub struct AlbertForMultipleChoice {
    pub albert: AlbertModel,
    classifier: Linear,
    classifier_dropout: f64,
}

impl AlbertForMultipleChoice {
    pub fn load(vb: VarBuilder, cfg: &AlbertConfig) -> Result<Self> {
        Ok(Self {
            albert: AlbertModel::load(vb.pp("albert"), cfg)?,
            classifier: linear(cfg.hidden_size, 1, vb.pp("classifier"), cfg)?,
            classifier_dropout: cfg.classifier_dropout(),
        })
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
        let pooled = self.albert.forward(
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
        let pooled = dropout(pooled, self.classifier_dropout, train)?;
        self.classifier.forward(&pooled)?.reshape((batch, choices))
    }
}

/// Mean cross-entropy of (batch, choices) logits against gold indices (batch,) u32.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}
