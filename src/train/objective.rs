//! What one training pass computes: the mean cross-entropy of a set of training questions, and
//! dev accuracy. [`FullModel`] runs the whole ALBERT; [`Head`] runs only the head on cached
//! backbone outputs.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::eval;
use crate::features::Features;
use crate::metrics::argmax;
use crate::model::{cross_entropy, MultipleChoiceModel};

pub trait Objective {
    /// Trainable tensors by name, sorted by name.
    fn vars(&self) -> Vec<(String, Var)>;
    /// Number of training questions.
    fn train_len(&self) -> usize;
    /// Mean loss over training questions `idx`, with dropout.
    fn loss(&self, idx: &[usize]) -> Result<Tensor>;
    /// Accuracy on the dev questions, without dropout.
    fn dev_accuracy(&self) -> Result<f64>;
}

/// The trainable variables of `varmap`, by name.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn accuracy(logits: &[Vec<f32>], labels: &[u32]) -> f64 {
    let right = logits
        .iter()
        .zip(labels)
        .filter(|(l, &y)| argmax(l) == y as usize)
        .count();
    right as f64 / labels.len().max(1) as f64
}

/// A labelled split as token features.
pub struct Split {
    pub features: Vec<Features>,
    pub labels: Vec<u32>,
}

pub struct FullModel {
    pub model: MultipleChoiceModel,
    pub varmap: VarMap,
    pub train: Split,
    pub dev: Split,
    pub pad_id: u32,
    pub device: Device,
    pub eval_batch_size: usize,
}

impl Objective for FullModel {
    fn vars(&self) -> Vec<(String, Var)> {
        sorted_vars(&self.varmap)
    }

    fn train_len(&self) -> usize {
        self.train.labels.len()
    }

    fn loss(&self, idx: &[usize]) -> Result<Tensor> {
        let feats: Vec<&Features> = idx.iter().map(|&i| &self.train.features[i]).collect();
        let (ids, types, mask) = eval::batch_tensors(&feats, self.pad_id, &self.device)?;
        let labels: Vec<u32> = idx.iter().map(|&i| self.train.labels[i]).collect();
        let labels = Tensor::new(labels, &self.device)?;
        let logits = self.model.forward(&ids, &types, &mask, true)?;
        Ok(cross_entropy(&logits.to_dtype(DType::F32)?, &labels)?)
    }

    fn dev_accuracy(&self) -> Result<f64> {
        let logits = eval::logits(
            &self.model,
            &self.dev.features,
            self.eval_batch_size,
            self.pad_id,
            &self.device,
            None,
        )?;
        Ok(accuracy(&logits, &self.dev.labels))
    }
}

/// The head on cached features: (questions, choices, hidden) tensors.
pub struct Head {
    pub varmap: VarMap,
    /// The head's dense layer (weight, bias) and its activation when it trains too (ALBERT's
    /// and BERT's pooler, DistilBERT's pre_classifier, ELECTRA's summary).
    pub pooler: Option<(Tensor, Tensor, crate::model::family::HeadActivation)>,
    pub classifier: (Tensor, Tensor),
    pub classifier_dropout: f64,
    pub train_x: Tensor,
    pub train_y: Vec<u32>,
    pub dev_x: Tensor,
    pub dev_y: Vec<u32>,
}

impl Head {
    /// Logits (batch, choices) from cached features (batch, choices, hidden).
    pub fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, c, h) = x.dims3()?;
        let mut x = x.reshape((b * c, h))?;
        if let Some((w, bias, act)) = &self.pooler {
            x = act.forward(&x.matmul(&w.t()?)?.broadcast_add(bias)?)?;
        }
        let p = self.classifier_dropout;
        if train && p > 0.0 {
            x = match crate::model::seeded_dropout::mask(x.elem_count(), p) {
                Some(m) => (x.clone() * Tensor::from_vec(m, x.shape(), x.device())?)?,
                None => candle_nn::ops::dropout(&x, p as f32)?,
            };
        }
        let (w, bias) = &self.classifier;
        Ok(x.matmul(&w.t()?)?.broadcast_add(bias)?.reshape((b, c))?)
    }
}

impl Objective for Head {
    fn vars(&self) -> Vec<(String, Var)> {
        sorted_vars(&self.varmap)
    }

    fn train_len(&self) -> usize {
        self.train_y.len()
    }

    fn loss(&self, idx: &[usize]) -> Result<Tensor> {
        let dev = self.train_x.device();
        let ids = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), dev)?;
        let x = self.train_x.index_select(&ids, 0)?;
        let labels: Vec<u32> = idx.iter().map(|&i| self.train_y[i]).collect();
        let logits = self.logits(&x, true)?;
        Ok(cross_entropy(&logits, &Tensor::new(labels, dev)?)?)
    }

    fn dev_accuracy(&self) -> Result<f64> {
        let logits = self.logits(&self.dev_x, false)?.to_vec2::<f32>()?;
        Ok(accuracy(&logits, &self.dev_y))
    }
}

/// Labels as u32, checking every question has the same number of options.
pub fn labels_of(questions: &[crate::data::Question], what: &str) -> Result<Vec<u32>> {
    let choices = questions.first().map(|q| q.options.len()).unwrap_or(0);
    if let Some(q) = questions.iter().find(|q| q.options.len() != choices) {
        bail!(
            "the {what} split mixes option counts ({} has {} options, the first question {choices}): training needs one count, as RACE's 4",
            q.id,
            q.options.len()
        );
    }
    Ok(questions.iter().map(|q| q.label as u32).collect())
}
