//! What one training pass computes: the mean cross-entropy of a set of training questions, and
//! dev accuracy. [`FullModel`] runs the whole ALBERT; [`Head`] runs only the head on cached
//! backbone outputs. With [`SoftTargets`] (`race-eval distill`) the loss mixes a teacher's
//! probabilities into the cross-entropy.

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

/// A teacher's answer distribution per training question and how much it weighs: the loss is
/// `alpha * T^2 * KL(teacher || softmax(z / T)) + (1 - alpha) * CE(z, label)` (Hinton et al.'s
/// knowledge distillation; the KL averaged over questions, as torch's `kl_div(...,
/// reduction="batchmean")`). The targets are the teachers' averaged softmax at temperature T.
pub struct SoftTargets {
    pub alpha: f64,
    pub temperature: f64,
    /// Per training question (same order as the split), one probability per option.
    pub probs: Vec<Vec<f32>>,
}

impl SoftTargets {
    /// The loss of `logits` (batch, choices) for training questions `idx` with gold `labels`.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor, idx: &[usize]) -> Result<Tensor> {
        let (b, c) = logits.dims2()?;
        let mut flat = Vec::with_capacity(b * c);
        // sum p ln p: the KL's constant part (0 ln 0 = 0), added as a number.
        let mut entropy_term = 0f64;
        for &i in idx {
            let p = &self.probs[i];
            if p.len() != c {
                bail!(
                    "training question {i} has {} soft targets for {c} options",
                    p.len()
                );
            }
            for &x in p {
                if x > 0.0 {
                    entropy_term += x as f64 * (x as f64).ln();
                }
            }
            flat.extend_from_slice(p);
        }
        let p = Tensor::from_vec(flat, (b, c), logits.device())?;
        let t = self.temperature;
        let log_q = candle_nn::ops::log_softmax(&(logits / t)?, 1)?;
        let cross = (p * log_q)?.sum_all()?.neg()?;
        let kl = ((cross + entropy_term)? / b as f64)?;
        let soft = (kl * (self.alpha * t * t))?;
        if self.alpha >= 1.0 {
            return Ok(soft);
        }
        let ce = cross_entropy(logits, labels)?;
        Ok((soft + (ce * (1.0 - self.alpha))?)?)
    }
}

/// The loss of one batch: cross-entropy, or the distillation loss with soft targets.
fn batch_loss(
    logits: &Tensor,
    labels: &Tensor,
    idx: &[usize],
    soft: Option<&SoftTargets>,
) -> Result<Tensor> {
    match soft {
        Some(s) => s.loss(logits, labels, idx),
        None => Ok(cross_entropy(logits, labels)?),
    }
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
    pub soft: Option<SoftTargets>,
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
        batch_loss(
            &logits.to_dtype(DType::F32)?,
            &labels,
            idx,
            self.soft.as_ref(),
        )
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
    pub soft: Option<SoftTargets>,
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
        batch_loss(&logits, &Tensor::new(labels, dev)?, idx, self.soft.as_ref())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss by hand in f64: alpha T^2 mean_q sum_i p_i (ln p_i - ln q_i) + (1 - alpha) CE.
    fn by_hand(z: &[[f64; 3]], y: &[usize], p: &[[f64; 3]], alpha: f64, t: f64) -> f64 {
        let log_softmax = |v: [f64; 3], t: f64| {
            let m = v.iter().cloned().fold(f64::MIN, f64::max);
            let lse = v.iter().map(|x| ((x - m) / t).exp()).sum::<f64>().ln();
            v.map(|x| (x - m) / t - lse)
        };
        let n = z.len() as f64;
        let (mut kl, mut ce) = (0.0, 0.0);
        for q in 0..z.len() {
            let lq = log_softmax(z[q], t);
            for i in 0..3 {
                if p[q][i] > 0.0 {
                    kl += p[q][i] * (p[q][i].ln() - lq[i]);
                }
            }
            ce -= log_softmax(z[q], 1.0)[y[q]];
        }
        alpha * t * t * kl / n + (1.0 - alpha) * ce / n
    }

    #[test]
    fn distillation_loss_matches_the_formula() -> Result<()> {
        let z = [[1.0, -0.5, 2.0], [0.3, 0.2, -1.0]];
        let y = [2usize, 0];
        // A zero probability (0 ln 0 = 0) and a peaked one.
        let p = [[0.2, 0.0, 0.8], [0.5, 0.3, 0.2]];
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1.0f32, -0.5, 2.0], [0.3, 0.2, -1.0]], &dev)?;
        let labels = Tensor::new(&[2u32, 0], &dev)?;
        for (alpha, t) in [(0.5, 2.0), (1.0, 1.0), (0.0, 3.0), (0.9, 4.0)] {
            let soft = SoftTargets {
                alpha,
                temperature: t,
                probs: vec![
                    vec![0.2, 0.0, 0.8],
                    vec![0.5, 0.3, 0.2],
                    vec![0.1, 0.1, 0.8],
                ],
            };
            let got = soft.loss(&logits, &labels, &[0, 1])?.to_scalar::<f32>()? as f64;
            let want = by_hand(&z, &y, &p, alpha, t);
            assert!(
                (got - want).abs() < 1e-5,
                "alpha {alpha} T {t}: {got} vs {want}"
            );
        }
        // alpha = 0 is plain cross-entropy.
        let soft = SoftTargets {
            alpha: 0.0,
            temperature: 2.0,
            probs: vec![vec![1.0, 0.0, 0.0]; 2],
        };
        let ce = cross_entropy(&logits, &labels)?.to_scalar::<f32>()?;
        let got = soft.loss(&logits, &labels, &[0, 1])?.to_scalar::<f32>()?;
        assert!((got - ce).abs() < 1e-6);
        // KL is zero when the student already matches the teacher at T.
        let matched = candle_nn::ops::softmax(&(&logits / 2.0)?, 1)?.to_vec2::<f32>()?;
        let soft = SoftTargets {
            alpha: 1.0,
            temperature: 2.0,
            probs: matched,
        };
        let got = soft.loss(&logits, &labels, &[0, 1])?.to_scalar::<f32>()?;
        assert!(got.abs() < 1e-6, "{got}");
        // The wrong number of targets for the options is an error, not a broadcast.
        let soft = SoftTargets {
            alpha: 0.5,
            temperature: 2.0,
            probs: vec![vec![0.5, 0.5]; 2],
        };
        assert!(soft.loss(&logits, &labels, &[0, 1]).is_err());
        Ok(())
    }
}
