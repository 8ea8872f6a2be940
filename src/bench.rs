//! Measuring speed: model FLOPs, a self-measured sgemm peak, peak RSS, and timed forward passes
//! of any family (ALBERT, BERT, …: the same code `eval` runs) with random weights at fixed
//! shapes. Speed targets live here and in BENCHMARKS.md, never in tests.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use serde::Serialize;

use crate::model::{ModelConfig, MultipleChoiceModel, Precision};

/// A model with random weights, to time.
pub struct BenchModel {
    pub model: MultipleChoiceModel,
    pub config: ModelConfig,
    pub precision: Precision,
}

/// Every tensor drawn from its initialiser as a plain tensor: inference weights, not trainable
/// variables, so timing sees the same kernels as `eval`.
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        _: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        Ok(init.var(s, dtype, dev)?.as_tensor().detach())
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights: `{name}` has no shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

impl BenchModel {
    /// With [`Precision::Int8`] the linears are quantised (an error where the CPU has no
    /// integer kernel, so a benchmark never reports f32 as int8).
    pub fn random(cfg: &ModelConfig, precision: Precision, device: &Device) -> Result<Self> {
        // bf16 on the CPU packs from f32 weights (the CPU inference path); elsewhere the
        // weights are made in the precision's dtype.
        let dtype = match precision {
            Precision::Bf16 if device.is_cpu() => DType::F32,
            p => p.dtype(),
        };
        let vb = VarBuilder::from_backend(Box::new(RandomWeights), dtype, device.clone());
        let mut model = MultipleChoiceModel::load(vb, cfg)?;
        if precision == Precision::Int8 {
            model.quantize_int8()?.ok_or_else(|| {
                anyhow::anyhow!("this CPU has no int8 kernel (AVX2 or AVX-512 VNNI)")
            })?;
            // No calibration data here: unsmoothed int8 (the same kernels), f32 copies dropped.
            model.calibrate_int8(|_| Ok(()))?;
        }
        if precision == Precision::Bf16 && device.is_cpu() {
            model.pack_bf16()?.ok_or_else(|| {
                anyhow::anyhow!("this CPU has no bf16 kernel (AVX-512F, ideally with BF16)")
            })?;
        }
        Ok(Self {
            model,
            config: cfg.clone(),
            precision,
        })
    }

    pub fn params(&self) -> usize {
        self.config.param_counts().multiple_choice
    }

    pub fn flops_per_sequence(&self, len: usize) -> f64 {
        self.config.flops(len)
    }

    /// One forward pass over (questions, choices, len) inputs; waits for the result.
    pub fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> Result<()> {
        self.model
            .forward(ids, types, mask, false)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        Ok(())
    }

    /// Deterministic pseudo-random inputs: ids in [5, vocab), the second half of each sequence
    /// in segment 1 (where the model has two segments), no padding.
    pub fn inputs(
        &self,
        batch: usize,
        choices: usize,
        len: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let n = batch * choices * len;
        let vocab = self.config.vocab_size.max(6) as u64;
        let mut state = 0x9e3779b97f4a7c15u64;
        let ids: Vec<u32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (5 + (state >> 33) % (vocab - 5)) as u32
            })
            .collect();
        let two_types = self.config.type_vocab_size > 1;
        let types: Vec<u32> = (0..n)
            .map(|i| (two_types && (i % len) >= len / 2) as u32)
            .collect();
        let shape = (batch, choices, len);
        Ok((
            Tensor::from_vec(ids, shape, device)?,
            Tensor::from_vec(types, shape, device)?,
            Tensor::ones(shape, DType::U32, device)?,
        ))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub params: usize,
    pub device: String,
    pub dtype: String,
    pub questions: usize,
    pub choices: usize,
    pub seq: usize,
    pub gflop_per_question: f64,
    /// Best of the repeats.
    pub seconds_per_question: f64,
    pub questions_per_s: f64,
    pub tokens_per_s: f64,
    pub gflop_per_s: f64,
    /// Achieved GFLOP/s as a share of the sgemm peak measured in the same process.
    pub percent_of_sgemm_peak: Option<f64>,
    pub peak_rss_mb: Option<f64>,
}

/// The input shape of a fixed-shape benchmark.
#[derive(Debug, Clone, Copy)]
pub struct FixedShape {
    /// Questions timed per repeat.
    pub questions: usize,
    pub choices: usize,
    pub seq: usize,
    /// Questions per forward pass.
    pub batch: usize,
    pub repeats: usize,
}

/// Times `repeats` passes over the shape's questions after one warm-up.
pub fn time_fixed(
    name: &str,
    model: &BenchModel,
    shape: FixedShape,
    device: &Device,
    sgemm_peak: Option<f64>,
) -> Result<BenchResult> {
    let FixedShape {
        questions,
        choices,
        seq,
        batch,
        repeats,
    } = shape;
    let batch = batch.clamp(1, questions.max(1));
    let (ids, types, mask) = model.inputs(batch, choices, seq, device)?;
    model.forward(&ids, &types, &mask)?;
    let passes = questions.div_ceil(batch);
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        for _ in 0..passes {
            model.forward(&ids, &types, &mask)?;
        }
        best = best.min(t.elapsed().as_secs_f64() / (passes * batch) as f64);
    }
    let flop = model.flops_per_sequence(seq) * choices as f64;
    let gflops = flop / best / 1e9;
    Ok(BenchResult {
        model: name.to_string(),
        params: model.params(),
        device: device_name(device),
        dtype: model.precision.name().to_string(),
        questions: passes * batch,
        choices,
        seq,
        gflop_per_question: flop / 1e9,
        seconds_per_question: best,
        questions_per_s: 1.0 / best,
        tokens_per_s: (choices * seq) as f64 / best,
        gflop_per_s: gflops,
        percent_of_sgemm_peak: sgemm_peak.map(|p| 100.0 * gflops / p),
        peak_rss_mb: peak_rss_mb(),
    })
}

pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", candle_core::utils::get_num_threads()),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

/// Best GFLOP/s of a (2048 × 768) · (768 × 3072) matmul, the shape of ALBERT-base's first
/// feed-forward linear for 4 × 512 tokens, in `dtype` on `device`.
pub fn sgemm_peak(device: &Device, dtype: DType) -> Result<f64> {
    let (m, k, n) = (2048usize, 768usize, 3072usize);
    let a = Tensor::randn(0f32, 1.0, (m, k), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (k, n), device)?.to_dtype(dtype)?;
    a.matmul(&b)?
        .sum_all()?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    let mut best = f64::INFINITY;
    for _ in 0..12 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        c.flatten_all()?
            .narrow(0, 0, 1)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * k * n) as f64 / best / 1e9)
}

/// GFLOP/s of one linear layer's GEMM in f32 and int8: see [`crate::model::linear_gemm_rates`].
pub fn gemm_rates(m: usize, k: usize, n: usize, repeats: usize) -> crate::model::GemmRates {
    crate::model::linear_gemm_rates(m, k, n, repeats)
}

/// Starts a new peak-RSS window (Linux: writing 5 to /proc/self/clear_refs resets VmHWM), so
/// side-by-side rows each report their own peak.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size of this process (VmHWM), in MiB; Linux only.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::presets::preset;

    #[test]
    fn albert_base_needs_about_387_gflop_per_question_at_512() {
        let cfg = preset("albert-base-v2").unwrap();
        let g = 4.0 * cfg.flops(512) / 1e9;
        assert!((g - 387.0).abs() < 1.0, "{g}");
    }

    #[test]
    fn bert_base_has_its_published_parameter_count() {
        // bert-base-uncased: 109,482,240 parameters with the pooler; the head adds 769.
        let cfg = preset("bert-base-uncased").unwrap();
        assert_eq!(cfg.param_counts().backbone, 109_482_240);
        assert_eq!(cfg.param_counts().multiple_choice, 109_482_240 + 769);
    }

    #[test]
    fn bench_reports_the_weights_dtype() -> Result<()> {
        let mut cfg = preset("all-MiniLM-L6-v2").unwrap();
        cfg.num_hidden_layers = 1;
        cfg.num_hidden_groups = 1;
        let model = BenchModel::random(&cfg, Precision::F32, &Device::Cpu)?;
        let shape = FixedShape {
            questions: 1,
            choices: 2,
            seq: 8,
            batch: 1,
            repeats: 1,
        };
        let r = time_fixed("minilm", &model, shape, &Device::Cpu, None)?;
        assert_eq!(r.dtype, "f32");
        assert!(r.seconds_per_question > 0.0 && r.gflop_per_question > 0.0);
        Ok(())
    }
}
