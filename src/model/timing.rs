//! Timing one linear layer's GEMM through the CPU encoder's own kernels (`bench --gemm`), so the
//! benchmark reaches the kernels through this module rather than their internals.

use std::time::Instant;

use super::quant;

/// GFLOP/s of one linear layer's GEMM (m tokens × k inputs → n outputs) in f32 (the gemm crate,
/// as the CPU encoder calls it) and in int8 (quantising the activations included), best of
/// `repeats`.
pub fn linear_gemm_rates(m: usize, k: usize, n: usize, repeats: usize) -> (f64, Option<f64>) {
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
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) + 1 {
        let t = Instant::now();
        super::cpu_encoder::linear_accumulate_f32(&x, m, k, &w, n, &mut out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let f32_rate = flop / best / 1e9;
    let int8_rate = quant::Kernel::detect().map(|kernel| {
        let qw = quant::QuantLinear::new(&w, n, k);
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) + 1 {
            let t = Instant::now();
            let qx = quant::quantize_rows(&x, m, k, k, &qw);
            quant::gemm_accumulate(&qx, &qw, &mut out, n, kernel);
            best = best.min(t.elapsed().as_secs_f64());
        }
        flop / best / 1e9
    });
    (f32_rate, int8_rate)
}
