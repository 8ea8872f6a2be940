//! Small building blocks shared by the ALBERT modules: linear, embedding and LayerNorm layers
//! initialised as transformers' `AlbertPreTrainedModel._init_weights` does when a tensor is absent
//! from the checkpoint, and dropout that is active only in training.

use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Init, LayerNorm, Module, VarBuilder};

use super::config::AlbertConfig;

fn normal(cfg: &AlbertConfig) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: cfg.initializer_range,
    }
}

/// `nn.Linear(in, out)`: weight (out, in), bias (out). Unlike `candle_nn::Linear`, which runs one
/// matmul per batch entry against a broadcast weight, the forward pass folds every leading
/// dimension into the rows of a single matmul with the transposed weight view (no copy).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let input = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / input.max(1);
        let y = x
            .reshape((rows, input))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.bias.dim(0)?;
        }
        y.reshape(out_dims)
    }
}

pub fn linear(input: usize, output: usize, vb: VarBuilder, cfg: &AlbertConfig) -> Result<Linear> {
    let weight = vb.get_with_hints((output, input), "weight", normal(cfg))?;
    let bias = vb.get_with_hints(output, "bias", Init::Const(0.0))?;
    Ok(Linear { weight, bias })
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
