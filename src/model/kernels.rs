//! CPU inference kernels where candle's generic ops leave speed behind: a multi-threaded GELU
//! (tanh form) whose tanh is built from `exp_m1`, and a fused scale + mask + softmax. They run
//! for f32 tensors on the CPU that do not track gradients; everything else (training, GPUs,
//! other dtypes) takes candle's ops, so results never depend on which path ran beyond f32
//! rounding (the parity tests hold both to 1e-4).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 16 * 1024;

fn fast_path(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op()
}

/// e^x for f32 without a libm call, so loops over it vectorise: x = n ln 2 + r with |r| <= ln2/2,
/// e^r by its degree-6 Taylor polynomial (relative error below 2e-7 over that range), and 2^n
/// put straight into the exponent bits. Inputs are clamped to [-87, 88], where f32 e^x neither
/// overflows nor goes subnormal.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and removing 1.5 * 2^23 (no libm call, so it vectorises).
    const ROUND: f32 = 12_582_912.0;
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// tanh(u) = 1 - 2 / (e^{2u} + 1): with [`exp_fast`], within 3e-7 of libm's tanhf and several
/// times faster.
#[inline(always)]
fn tanh_fast(u: f32) -> f32 {
    1.0 - 2.0 / (exp_fast(2.0 * u) + 1.0)
}

#[inline]
fn gelu_tanh_scalar(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh_fast(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
}

struct GeluTanh;

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "race-eval-gelu-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("gelu kernel: expects contiguous f32");
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, i)| {
                for (o, &x) in o.iter_mut().zip(i) {
                    *o = gelu_tanh_scalar(x);
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GELU, tanh form (`gelu_new`): the kernel on the CPU fast path, candle's op elsewhere.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        x.contiguous()?.apply_op1_no_bwd(&GeluTanh)
    } else {
        x.gelu()
    }
}

/// softmax(scores · scale + mask) over the last dimension, for scores (batch, heads, q, k) and an
/// additive mask (batch, 1, 1, k).
struct ScaledMaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for ScaledMaskedSoftmax {
    fn name(&self) -> &'static str {
        "race-eval-scaled-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(scores), CpuStorage::F32(mask)) = (s1, s2) else {
            candle_core::bail!("softmax kernel: expects f32");
        };
        let (Some((s0, s1e)), Some((m0, m1e))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("softmax kernel: expects contiguous inputs");
        };
        let (b, h, q, k) = l1.shape().dims4()?;
        let scores = &scores[s0..s1e];
        let mask = &mask[m0..m1e];
        if mask.len() != b * k {
            candle_core::bail!(
                "softmax kernel: mask has {} values, expected {}",
                mask.len(),
                b * k
            );
        }
        let scale = self.scale;
        let mut out = vec![0f32; scores.len()];
        out.par_chunks_mut(k)
            .zip(scores.par_chunks(k))
            .enumerate()
            .for_each(|(row, (o, s))| {
                let m = &mask[(row / (h * q)) * k..][..k];
                let mut max = f32::NEG_INFINITY;
                for ((o, &s), &m) in o.iter_mut().zip(s).zip(m) {
                    *o = s * scale + m;
                    max = max.max(*o);
                }
                let mut sum = 0f32;
                for o in o.iter_mut() {
                    *o = (*o - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                for o in o.iter_mut() {
                    *o *= inv;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Attention probabilities softmax(scores · scale + mask): one fused kernel on the CPU fast path.
pub fn scaled_masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    if fast_path(scores) && fast_path(mask) && scores.rank() == 4 {
        scores.contiguous()?.apply_op2_no_bwd(
            &mask.contiguous()?,
            &ScaledMaskedSoftmax {
                scale: scale as f32,
            },
        )
    } else {
        // Differentiable when training (see `layers::softmax_last_dim`).
        super::layers::softmax_last_dim(&(scores * scale)?.broadcast_add(mask)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn gelu_kernel_matches_candle_gelu() {
        let x = Tensor::randn(0f32, 3.0, (7, 1000), &Device::Cpu).unwrap();
        let fast = gelu_tanh(&x).unwrap();
        let reference = x.gelu().unwrap();
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff < 1e-6, "{diff}");
        for i in -4000..4000 {
            let u = i as f32 * 0.005;
            assert!((tanh_fast(u) - u.tanh()).abs() < 3e-7, "tanh({u})");
            let e = exp_fast(u * 4.0);
            assert!(
                (e - (u * 4.0).exp()).abs() <= 3e-7 * (u * 4.0).exp(),
                "exp({})",
                u * 4.0
            );
        }
        // Large inputs saturate instead of overflowing.
        let big = Tensor::new(&[-100f32, -20.0, 0.0, 20.0, 100.0], &Device::Cpu).unwrap();
        let v = gelu_tanh(&big).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, vec![-0.0, -0.0, 0.0, 20.0, 100.0]);
    }

    #[test]
    fn fused_softmax_matches_the_unfused_ops() {
        let dev = Device::Cpu;
        let scores = Tensor::randn(0f32, 4.0, (2, 3, 5, 6), &dev).unwrap();
        let keep = Tensor::new(
            &[[1f32, 1., 1., 1., 0., 0.], [1., 1., 1., 1., 1., 1.]],
            &dev,
        )
        .unwrap();
        let mask = ((keep.affine(-1.0, 1.0).unwrap()) * f32::MIN as f64)
            .unwrap()
            .reshape((2, 1, 1, 6))
            .unwrap();
        let fast = scaled_masked_softmax(&scores, &mask, 0.125).unwrap();
        let reference = candle_nn::ops::softmax_last_dim(
            &(&scores * 0.125).unwrap().broadcast_add(&mask).unwrap(),
        )
        .unwrap();
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff < 1e-6, "{diff}");
        // Masked keys get no weight.
        let row = fast
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(&row[4..], &[0.0, 0.0]);
    }
}
