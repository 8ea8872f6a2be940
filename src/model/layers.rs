//! Small building blocks shared by the ALBERT modules: linear, embedding and LayerNorm layers
//! initialised as transformers' `AlbertPreTrainedModel._init_weights` does when a tensor is absent
//! from the checkpoint, and dropout that is active only in training.

use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Init, LayerNorm, Linear, Module, VarBuilder};

use super::config::AlbertConfig;

fn normal(cfg: &AlbertConfig) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: cfg.initializer_range,
    }
}

/// `nn.Linear(in, out)`: weight (out, in), bias (out).
pub fn linear(input: usize, output: usize, vb: VarBuilder, cfg: &AlbertConfig) -> Result<Linear> {
    let w = vb.get_with_hints((output, input), "weight", normal(cfg))?;
    let b = vb.get_with_hints(output, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

pub fn embedding(
    count: usize,
    width: usize,
    vb: VarBuilder,
    cfg: &AlbertConfig,
) -> Result<Embedding> {
    let w = vb.get_with_hints((count, width), "weight", normal(cfg))?;
    Ok(Embedding::new(w, width))
}

pub fn layer_norm(width: usize, eps: f64, vb: VarBuilder) -> Result<Norm> {
    let w = vb.get_with_hints(width, "weight", Init::Const(1.0))?;
    let b = vb.get_with_hints(width, "bias", Init::Const(0.0))?;
    Ok(Norm {
        fused: LayerNorm::new(w.clone(), b.clone(), eps),
        weight: w,
        bias: b,
        eps,
    })
}

/// LayerNorm that stays differentiable when training: candle's fused kernel has no backward
/// pass (gradients would silently stop there), so the composite form runs whenever the input
/// or the weights are being tracked for gradients; the fused kernel otherwise.
pub struct Norm {
    fused: LayerNorm,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.track_op() || self.weight.track_op() || self.bias.track_op() {
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps as f32)
        } else {
            self.fused.forward(x)
        }
    }
}

/// Softmax over the last dimension; differentiable when the input is tracked (candle's fused
/// `softmax_last_dim` has no backward pass).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        candle_nn::ops::softmax(x, candle_core::D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

pub fn dropout(x: &Tensor, p: f64, train: bool) -> Result<Tensor> {
    if !(train && p > 0.0) {
        return Ok(x.clone());
    }
    match super::seeded_dropout::mask(x.elem_count(), p) {
        // A seeded stream (training sets one per micro-batch) makes runs and resumes repeatable.
        Some(mask) => {
            let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
            x * mask
        }
        None => candle_nn::ops::dropout(x, p as f32),
    }
}
