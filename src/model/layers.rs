//! Small building blocks shared by the ALBERT modules: linear, embedding and LayerNorm layers
//! initialised as transformers' `AlbertPreTrainedModel._init_weights` does when a tensor is absent
//! from the checkpoint, and dropout that is active only in training.

use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Init, LayerNorm, Linear, VarBuilder};

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

pub fn layer_norm(width: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let w = vb.get_with_hints(width, "weight", Init::Const(1.0))?;
    let b = vb.get_with_hints(width, "bias", Init::Const(0.0))?;
    Ok(LayerNorm::new(w, b, eps))
}

pub fn dropout(x: &Tensor, p: f64, train: bool) -> Result<Tensor> {
    if train && p > 0.0 {
        candle_nn::ops::dropout(x, p as f32)
    } else {
        Ok(x.clone())
    }
}
