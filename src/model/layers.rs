//! Small building blocks shared by the ALBERT modules: linear, embedding and LayerNorm layers
//! initialised as transformers' `AlbertPreTrainedModel._init_weights` does when a tensor is absent
//! from the checkpoint, and dropout that is active only in training.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Embedding, Init, LayerNorm, Module, VarBuilder};

use super::config::ModelConfig;

fn normal(cfg: &ModelConfig) -> Init {
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
        let x2 = x.reshape((rows, input))?;
        let y = if x.dtype() != DType::F32 && x.device().is_cpu() {
            // bf16 / f16 on the CPU: products summed and the bias added in f32, rounded once,
            // as PyTorch's `addmm` does (candle's CPU matmul widens to f32 anyway; rounding
            // its output and then adding the bias would round twice).
            let f32 = DType::F32;
            x2.to_dtype(f32)?
                .matmul(&self.weight.to_dtype(f32)?.t()?)?
                .broadcast_add(&self.bias.to_dtype(f32)?)?
                .to_dtype(x.dtype())?
        } else {
            x2.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?
        };
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.bias.dim(0)?;
        }
        y.reshape(out_dims)
    }
}

impl Linear {
    /// The same layer with its weights in `dtype` (the head runs in f32 whatever the model's
    /// dtype).
    pub fn to_dtype(&self, dtype: candle_core::DType) -> Result<Self> {
        Ok(Self {
            weight: self.weight.to_dtype(dtype)?,
            bias: self.bias.to_dtype(dtype)?,
        })
    }

    /// `nn.Linear`'s weight, (out, in).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Drops the weight, for a layer whose packed copy (int8 or bf16) runs it from now on on
    /// the CPU inference path: a placeholder of no elements stays, and candle's `forward`
    /// then fails with an error rather than computing with a stale weight.
    pub fn release_weight(&mut self) -> Result<()> {
        self.weight = Tensor::zeros(0, self.weight.dtype(), self.weight.device())?;
        Ok(())
    }
}

pub fn linear(input: usize, output: usize, vb: VarBuilder, cfg: &ModelConfig) -> Result<Linear> {
    let weight = vb.get_with_hints((output, input), "weight", normal(cfg))?;
    let bias = vb.get_with_hints(output, "bias", Init::Const(0.0))?;
    Ok(Linear { weight, bias })
}

pub fn embedding(
    count: usize,
    width: usize,
    vb: VarBuilder,
    cfg: &ModelConfig,
) -> Result<Embedding> {
    let w = vb.get_with_hints((count, width), "weight", normal(cfg))?;
    Ok(Embedding::new(w, width))
}

pub fn layer_norm(width: usize, eps: f64, vb: VarBuilder) -> Result<Norm> {
    let w = vb.get_with_hints(width, "weight", Init::Const(1.0))?;
    let b = vb.get_with_hints(width, "bias", Init::Const(0.0))?;
    let f32_weights = if w.dtype() == DType::F32 {
        None
    } else {
        Some((w.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?))
    };
    let (fw, fb) = f32_weights.clone().unwrap_or((w.clone(), b.clone()));
    Ok(Norm {
        fused: LayerNorm::new(fw, fb, eps),
        weight: w,
        bias: b,
        f32_weights,
        eps,
    })
}

/// LayerNorm that stays differentiable when training: candle's fused kernel has no backward
/// pass (gradients would silently stop there), so the composite form runs whenever the input
/// or the weights are being tracked for gradients; the fused kernel otherwise. In bf16 and f16
/// the statistics and the affine step run in f32 and only the output is rounded back.
pub struct Norm {
    fused: LayerNorm,
    weight: Tensor,
    bias: Tensor,
    /// f32 copies of the weights when the model runs in another dtype.
    f32_weights: Option<(Tensor, Tensor)>,
    eps: f64,
}

impl Norm {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let (w, b) = match &self.f32_weights {
            Some((w, b)) => (w, b),
            None => (&self.weight, &self.bias),
        };
        let x32 = x.to_dtype(DType::F32)?;
        let y = if x.track_op() || self.weight.track_op() || self.bias.track_op() {
            candle_nn::ops::layer_norm_slow(&x32, w, b, self.eps as f32)?
        } else {
            self.fused.forward(&x32)?
        };
        y.to_dtype(dtype)
    }
}

/// Softmax over the last dimension; differentiable when the input is tracked (candle's fused
/// `softmax_last_dim` has no backward pass). On CPU in f32 a fused op with its own backward
/// pass keeps only the output for the gradient (the composite form keeps three tensors of the
/// attention's size per layer).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        // bf16 and f16: exponentials and sums in f32, probabilities rounded back.
        return softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype());
    }
    if !x.track_op() {
        candle_nn::ops::softmax_last_dim(x)
    } else if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(SoftmaxWithGrad)
    } else {
        candle_nn::ops::softmax(x, candle_core::D::Minus1)
    }
}

struct SoftmaxWithGrad;

impl candle_core::CustomOp1 for SoftmaxWithGrad {
    fn name(&self) -> &'static str {
        "softmax-last-dim-with-grad"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let candle_core::CpuStorage::F32(src) = storage else {
            candle_core::bail!("softmax-last-dim-with-grad: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax-last-dim-with-grad: input must be contiguous");
        };
        let src = &src[start..end];
        let dim = *layout.dims().last().unwrap_or(&1);
        let mut dst = vec![0f32; src.len()];
        src.par_chunks(dim.max(1))
            .zip(dst.par_chunks_mut(dim.max(1)))
            .for_each(|(s, d)| {
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, &v) in d.iter_mut().zip(s) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                for o in d.iter_mut() {
                    *o /= sum;
                }
            });
        Ok((candle_core::CpuStorage::F32(dst), layout.shape().clone()))
    }

    /// dx = y * (dy - sum(dy * y)) over the last dimension.
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(candle_core::D::Minus1)?;
        Ok(Some((res * grad_res.broadcast_sub(&dot)?)?))
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused training softmax gives the composite form's values and gradients.
    #[test]
    fn softmax_with_grad_matches_the_composite() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (2, 3, 7), &dev)?))?;
        let w = Tensor::randn(0f32, 1.0, (2, 3, 7), &dev)?;
        let fused = softmax_last_dim(x.as_tensor())?;
        let composite = candle_nn::ops::softmax(x.as_tensor(), candle_core::D::Minus1)?;
        let diff = (&fused - &composite)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "values differ by {diff}");
        let g1 = (fused * &w)?.sum_all()?.backward()?;
        let g2 = (composite * &w)?.sum_all()?.backward()?;
        let (g1, g2) = (
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        let diff = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let size = g2.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(size > 1e-3, "the gradient is not trivially zero");
        assert!(diff < 1e-5, "gradients differ by {diff}");
        Ok(())
    }
}
