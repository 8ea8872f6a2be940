//! Timing one linear layer's GEMM through the CPU encoder's own kernels (`bench --gemm`), so the
//! benchmark reaches the kernels through this module rather than their internals.

use std::time::Instant;

use super::{bf16, quant};

/// GFLOP/s (GOP/s for int8) of one linear layer's GEMM, best of the repeats.
#[derive(Debug, Clone, Copy)]
pub struct GemmRates {
    /// f32 through the gemm crate, as the CPU encoder calls it.
    pub f32: f64,
    /// int8 with the fastest integer kernel, quantising the activations included; `None`
    /// without one.
    pub int8: Option<(f64, quant::Kernel)>,
    /// bf16 with the fastest bf16 kernel, rounding the activations included; `None` without
    /// one.
    pub bf16: Option<(f64, bf16::Kernel)>,
}

/// Times one linear layer's GEMM (m tokens × k inputs → n outputs) in f32, int8 and bf16, best
/// of `repeats`.
pub fn linear_gemm_rates(m: usize, k: usize, n: usize, repeats: usize) -> GemmRates {
    let seq = |len: usize, seed: u64| -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    };
    let (x, w) = (seq(m * k, 1), seq(n * k, 2));
    let flop = 2.0 * (m * k * n) as f64;
    let mut out = vec![0f32; m * n];
    let mut best_of = |f: &mut dyn FnMut(&mut [f32])| {
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) + 1 {
            let t = Instant::now();
            f(&mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        flop / best / 1e9
    };
    let f32_rate =
        best_of(&mut |out| super::cpu_encoder::linear_accumulate_f32(&x, m, k, &w, n, out));
    let int8 = quant::Kernel::detect().map(|kernel| {
        let qw = quant::QuantLinear::new(&w, n, k);
        let rate = best_of(&mut |out| {
            let qx = quant::quantize_rows(&x, m, k, k, &qw);
            quant::gemm_accumulate(&qx, &qw, out, n, kernel);
        });
        (rate, kernel)
    });
    let bf16 = bf16::Kernel::detect().map(|kernel| {
        let bw = bf16::Bf16Linear::new(&w, n, k);
        let rate = best_of(&mut |out| {
            let bx = bf16::Bf16Rows::new(&x, m, k, k);
            bf16::gemm_accumulate(&bx, &bw, out, n, kernel);
        });
        (rate, kernel)
    });
    GemmRates {
        f32: f32_rate,
        int8,
        bf16,
    }
}
