//! AdamW exactly as `torch.optim.AdamW` (single-tensor path, `amsgrad=False`), with the
//! ALBERT recipe's parameter groups, and global gradient-norm clipping as
//! `torch.nn.utils.clip_grad_norm_`.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// ALBERT's RACE recipe: betas (0.9, 0.999), epsilon 1e-6, weight decay 0.01.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.01,
        }
    }
}

/// Parameters without weight decay: biases and LayerNorm weights (the recipe's
/// `exclude_from_weight_decay = ["LayerNorm", "layer_norm", "bias"]`).
pub fn no_weight_decay(name: &str) -> bool {
    name.contains("LayerNorm") || name.contains("layer_norm") || name.ends_with("bias")
}

/// One trainable tensor with its moment estimates.
pub struct Param {
    pub name: String,
    pub var: Var,
    pub m: Tensor,
    pub v: Tensor,
    pub decay: bool,
}

pub struct AdamW {
    pub config: AdamWConfig,
    pub params: Vec<Param>,
    /// Optimizer steps taken so far (torch's per-parameter `step`, shared here).
    pub steps: usize,
}

impl AdamW {
    /// `vars` by name; the order given is the order of every loop (sort for repeatability).
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Param {
                    decay: !no_weight_decay(&name),
                    name,
                    m: zeros.clone(),
                    v: zeros,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            params,
            steps: 0,
        })
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone, as
    /// torch skips parameters whose `.grad` is None.
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = lr / bias1;
        for p in &mut self.params {
            let Some(g) = grads.get(&p.name) else {
                continue;
            };
            let g = g.to_dtype(p.m.dtype())?;
            let theta = p.var.as_tensor();
            let theta = if p.decay && c.weight_decay != 0.0 {
                theta.affine(1.0 - lr * c.weight_decay, 0.0)?
            } else {
                theta.clone()
            };
            // exp_avg.lerp_(grad, 1 - beta1): m + (1 - beta1) (g - m)
            p.m = (&p.m + ((&g - &p.m)? * (1.0 - c.beta1))?)?;
            p.v = ((&p.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((p.v.sqrt()? / bias2_sqrt)? + c.eps)?;
            let update = ((&p.m / denom)? * step_size)?;
            p.var.set(&(theta - update)?)?;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`), for checkpoints.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for p in &self.params {
            out.insert(format!("m.{}", p.name), p.m.clone());
            out.insert(format!("v.{}", p.name), p.v.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`].
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for p in &mut self.params {
            for (kind, slot) in [("m", &mut p.m), ("v", &mut p.v)] {
                let key = format!("{kind}.{}", p.name);
                let t = tensors.get(&key).with_context(|| {
                    format!(
                        "the optimizer state has no `{key}`: the checkpoint belongs to another run"
                    )
                })?;
                if t.dims() != slot.dims() {
                    bail!(
                        "optimizer state `{key}` has shape {:?}, the model {:?}: the checkpoint belongs to another model",
                        t.dims(),
                        slot.dims()
                    );
                }
                *slot = t.to_dtype(slot.dtype())?.to_device(slot.device())?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Scales every gradient so that their global L2 norm is at most `max_norm`
/// (`clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`, clamped to 1). Returns the
/// norm before clipping; non-finite when a gradient is.
pub fn clip_grad_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut names: Vec<String> = grads.keys().cloned().collect();
    names.sort();
    let mut norms = Vec::with_capacity(names.len());
    for n in &names {
        let g = grads[n].to_dtype(DType::F32)?;
        norms.push(g.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt());
    }
    let total = norms.iter().map(|x| x * x).sum::<f32>().sqrt() as f64;
    if max_norm > 0.0 {
        let coef = (max_norm as f32 / (total as f32 + 1e-6)).min(1.0) as f64;
        for n in &names {
            let g = grads.get_mut(n).expect("name from keys");
            *g = (&*g * coef)?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn groups_follow_the_recipe() {
        assert!(no_weight_decay("classifier.bias"));
        assert!(no_weight_decay("albert.embeddings.LayerNorm.weight"));
        assert!(no_weight_decay(
            "albert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.weight"
        ));
        assert!(!no_weight_decay("classifier.weight"));
        assert!(!no_weight_decay("albert.embeddings.word_embeddings.weight"));
    }

    /// Hand-computed first step: m = 0.1 g, v = 0.001 g², update = lr * g / (|g| + eps').
    #[test]
    fn first_step_matches_the_formula() -> Result<()> {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu)?)?;
        let mut opt = AdamW::new(
            vec![("w".into(), var.clone())],
            AdamWConfig {
                weight_decay: 0.5,
                ..Default::default()
            },
        )?;
        let grads = HashMap::from([(
            "w".to_string(),
            Tensor::new(&[0.5f32, -0.25], &Device::Cpu)?,
        )]);
        opt.step(&grads, 0.1)?;
        let got = var.as_tensor().to_vec1::<f32>()?;
        for (i, (p, g)) in [(1.0f64, 0.5f64), (-2.0, -0.25)].iter().enumerate() {
            let want = p * (1.0 - 0.1 * 0.5) - 0.1 * g / (g.abs() + 1e-6);
            assert!(
                (got[i] as f64 - want).abs() < 1e-6,
                "{i}: {} vs {want}",
                got[i]
            );
        }
        Ok(())
    }

    #[test]
    fn clipping_scales_to_max_norm() -> Result<()> {
        let mut grads = HashMap::from([
            ("a".to_string(), Tensor::new(&[3.0f32], &Device::Cpu)?),
            ("b".to_string(), Tensor::new(&[4.0f32], &Device::Cpu)?),
        ]);
        let norm = clip_grad_norm(&mut grads, 1.0)?;
        assert!((norm - 5.0).abs() < 1e-6);
        let a = grads["a"].to_vec1::<f32>()?[0];
        let b = grads["b"].to_vec1::<f32>()?[0];
        assert!(((a * a + b * b).sqrt() - 1.0).abs() < 1e-5);
        let norm = clip_grad_norm(&mut grads, 10.0)?;
        assert!((norm - 1.0).abs() < 1e-5, "small gradients are left alone");
        Ok(())
    }
}
