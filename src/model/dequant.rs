//! Linear layers over GGML-quantised weights in f32 arithmetic (transformers' arithmetic on a
//! GGUF file), for the decoder LMs of [`super::llama`]: `x · Wᵀ` with `W` dequantised one panel
//! of rows at a time into a buffer that stays in the core's L2 cache, each panel multiplied as
//! soon as it is written, the panels spread over candle's worker threads.
//!
//! The dequantisation is bit for bit candle's `GgmlType::to_float` (what `QTensor::dequantize`
//! gives, itself ggml's `dequantize_row_*`): Q4_0, Q4_1 and Q8_0 with AVX-512 kernels where the
//! CPU has AVX-512F (a product and a sum, each rounded once, as the scalar code rounds them),
//! every other type through candle's own code a panel at a time.
//!
//! Why not `QTensor::dequantize` and one matmul: it writes the whole f32 matrix (SmolLM2's
//! MLP weights are 3.5 MB each, 424 MB a pass over all 30 layers) single-threaded with bounds
//! checks, and the GEMM then reads it back from memory; for the few rows of a continuation
//! batch that dequantisation was most of the pass.

use std::cell::RefCell;

use anyhow::{bail, Result};
use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::GgmlDType;
use gemm::Parallelism;

use super::kernels::SharedMut;

/// Bytes of f32 weights per panel: with the panel of the input rows the GEMM reads, about half
/// of a 1 MiB L2 cache.
const PANEL_BYTES: usize = 256 * 1024;

/// The rows of a linear layer's weight `W` (`n` rows of `k` values, `nn.Linear`'s layout).
#[derive(Clone, Copy)]
pub(crate) enum WeightRows<'a> {
    F32(&'a [f32]),
    /// GGML blocks, row after row (each row a whole number of blocks).
    Ggml {
        data: &'a [u8],
        dtype: GgmlDType,
    },
}

impl WeightRows<'_> {
    /// Checks that the weight holds `n` rows of `k` values.
    fn check(&self, n: usize, k: usize) -> Result<()> {
        match *self {
            WeightRows::F32(w) => {
                if w.len() != n * k {
                    bail!("f32 weight of {} values, expected {n} x {k}", w.len());
                }
            }
            WeightRows::Ggml { data, dtype } => {
                if !k.is_multiple_of(dtype.block_size()) {
                    bail!("a row of {k} values is not a whole number of {dtype:?} blocks");
                }
                let expected = n * (k / dtype.block_size()) * dtype.type_size();
                if data.len() != expected {
                    bail!(
                        "{dtype:?} weight of {} bytes, expected {expected} for {n} x {k}",
                        data.len()
                    );
                }
            }
        }
        Ok(())
    }
}

/// Dequantises GGML blocks `data` of type `dtype` into `out`, `out.len() / block_size` of them
/// (the caller has checked the lengths, [`WeightRows::check`]): candle's `to_float`, bit for
/// bit.
fn dequantize(data: &[u8], dtype: GgmlDType, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F; the caller checked the lengths.
        let fast = match dtype {
            GgmlDType::Q4_0 => unsafe { x86::q4_0(data, out) },
            GgmlDType::Q4_1 => unsafe { x86::q4_1(data, out) },
            GgmlDType::Q8_0 => unsafe { x86::q8_0(data, out) },
            _ => false,
        };
        if fast {
            return;
        }
    }
    match dtype {
        GgmlDType::F32 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlDType::F16 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlDType::BF16 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlDType::Q4_0 => to_float::<k_quants::BlockQ4_0>(data, out),
        GgmlDType::Q4_1 => to_float::<k_quants::BlockQ4_1>(data, out),
        GgmlDType::Q5_0 => to_float::<k_quants::BlockQ5_0>(data, out),
        GgmlDType::Q5_1 => to_float::<k_quants::BlockQ5_1>(data, out),
        GgmlDType::Q8_0 => to_float::<k_quants::BlockQ8_0>(data, out),
        GgmlDType::Q8_1 => to_float::<k_quants::BlockQ8_1>(data, out),
        GgmlDType::Q2K => to_float::<k_quants::BlockQ2K>(data, out),
        GgmlDType::Q3K => to_float::<k_quants::BlockQ3K>(data, out),
        GgmlDType::Q4K => to_float::<k_quants::BlockQ4K>(data, out),
        GgmlDType::Q5K => to_float::<k_quants::BlockQ5K>(data, out),
        GgmlDType::Q6K => to_float::<k_quants::BlockQ6K>(data, out),
        GgmlDType::Q8K => to_float::<k_quants::BlockQ8K>(data, out),
    }
}

/// candle's own dequantisation of the blocks in `data` (read in place when aligned for `T`,
/// else from an aligned copy).
fn to_float<T: GgmlType>(data: &[u8], out: &mut [f32]) {
    let size = std::mem::size_of::<T>();
    let n = data.len() / size;
    if (data.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        // SAFETY: `T` is one of candle's `#[repr(C)]` GGML blocks (plain integers and halves,
        // every bit pattern valid), `data` holds `n` of them and is aligned for `T`.
        let blocks = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<T>(), n) };
        T::to_float(blocks, out);
    } else {
        let mut blocks: Vec<T> = Vec::with_capacity(n);
        // SAFETY: as above; the copy fills the `n` blocks' bytes before the length is set.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                blocks.as_mut_ptr().cast::<u8>(),
                n * size,
            );
            blocks.set_len(n);
        }
        T::to_float(&blocks, out);
    }
}

thread_local! {
    /// Each thread's panel of dequantised weight rows.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows of `W` per panel for rows of `k` values: [`PANEL_BYTES`] of f32, a multiple of 16 rows
/// (the GEMM's register tile), at least 16.
fn panel_rows(k: usize) -> usize {
    (PANEL_BYTES / (4 * k.max(1)) / 16 * 16).max(16)
}

/// `out = a · wᵀ` for dense row-major `a` (`m × k`) and the `n × k` weight `w`; `out` is
/// `m × n`, overwritten. Panels of `w`'s rows are dequantised (a GGML weight) and multiplied
/// on candle's worker threads, each panel writing its own columns of `out`. An f32 weight
/// takes the same panels and the same GEMM calls, so both forms give the same bits.
pub(crate) fn matmul_t(
    a: &[f32],
    m: usize,
    k: usize,
    w: WeightRows,
    n: usize,
    out: &mut [f32],
) -> Result<()> {
    w.check(n, k)?;
    if a.len() != m * k || out.len() != m * n {
        bail!(
            "matmul: input of {} values for {m} x {k}, output of {} for {m} x {n}",
            a.len(),
            out.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let rows = panel_rows(k);
    let panels = n.div_ceil(rows);
    let out_at = SharedMut(out.as_mut_ptr());
    // candle's own worker threads, which its element-wise ops between these products use: on
    // rayon's, candle's workers would spin for work beside them (one thread too many per core).
    candle_core::utils::barrier_pool().execute_chunked(panels, |range| {
        for p in range {
            let r0 = p * rows;
            panel(a, m, k, w, n, r0..(r0 + rows).min(n), out_at);
        }
    });
    Ok(())
}

/// Rows `r` of `w`, dequantised into this thread's panel buffer (a GGML weight), times `a`,
/// into columns `r` of `out`; the shapes were checked by [`matmul_t`].
fn panel(
    a: &[f32],
    m: usize,
    k: usize,
    w: WeightRows,
    n: usize,
    r: std::ops::Range<usize>,
    out: SharedMut,
) {
    let run = |wp: &[f32]| {
        // SAFETY: `a` is m × k (row stride k), `wp` holds rows r of `w` (read as wᵀ: element
        // (kk, j) at j·k + kk) and the destination is columns r of `out` (m × n, row stride n),
        // checked by the caller; panels write disjoint columns.
        unsafe {
            gemm::gemm(
                m,
                r.len(),
                k,
                out.at(r.start),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                wp.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    match w {
        WeightRows::F32(w) => run(&w[r.start * k..r.end * k]),
        WeightRows::Ggml { data, dtype } => {
            let row_bytes = k / dtype.block_size() * dtype.type_size();
            PANEL.with(|panel| {
                let mut panel = panel.borrow_mut();
                panel.resize(r.len() * k, 0.0);
                let bytes = &data[r.start * row_bytes..r.end * row_bytes];
                dequantize(bytes, dtype, &mut panel);
                run(&panel);
            });
        }
    }
}

/// Whether the AVX-512 kernels run here.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    fn half(b: &[u8], at: usize) -> f32 {
        half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
    }

    /// Q4_0 (`d: f16, qs: [u8; 16]`, 18 bytes): value j = (nibble − 8) × d, low nibbles first.
    /// Returns true (every value written).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `data` holds `out.len() / 32` blocks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn q4_0(data: &[u8], out: &mut [f32]) -> bool {
        let low = _mm512_set1_epi32(0x0F);
        let eight = _mm512_set1_epi32(8);
        for (b, o) in data.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
            let d = _mm512_set1_ps(half(b, 0));
            // SAFETY: 16 bytes at b[2..18] and 32 floats in `o`.
            unsafe {
                let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(2).cast()));
                let lo = _mm512_sub_epi32(_mm512_and_si512(q, low), eight);
                let hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), eight);
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
                _mm512_storeu_ps(
                    o.as_mut_ptr().add(16),
                    _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d),
                );
            }
        }
        true
    }

    /// Q4_1 (`d: f16, m: f16, qs: [u8; 16]`, 20 bytes): value j = nibble × d + m, rounded after
    /// the product and after the sum (no fused multiply-add), low nibbles first.
    /// Returns true (every value written).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `data` holds `out.len() / 32` blocks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn q4_1(data: &[u8], out: &mut [f32]) -> bool {
        let low = _mm512_set1_epi32(0x0F);
        for (b, o) in data.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
            let d = _mm512_set1_ps(half(b, 0));
            let m = _mm512_set1_ps(half(b, 2));
            // SAFETY: 16 bytes at b[4..20] and 32 floats in `o`.
            unsafe {
                let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(4).cast()));
                let lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, low));
                let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(_mm512_mul_ps(lo, d), m));
                _mm512_storeu_ps(
                    o.as_mut_ptr().add(16),
                    _mm512_add_ps(_mm512_mul_ps(hi, d), m),
                );
            }
        }
        true
    }

    /// Q8_0 (`d: f16, qs: [i8; 32]`, 34 bytes): value j = q_j × d.
    /// Returns true (every value written).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `data` holds `out.len() / 32` blocks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn q8_0(data: &[u8], out: &mut [f32]) -> bool {
        for (b, o) in data.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
            let d = _mm512_set1_ps(half(b, 0));
            // SAFETY: 32 bytes at b[2..34] and 32 floats in `o`.
            unsafe {
                let q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(2).cast()));
                let q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(18).cast()));
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
                _mm512_storeu_ps(
                    o.as_mut_ptr().add(16),
                    _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d),
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Values with SmolLM2-like spread: mostly small, a few large.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                if i % 97 == 0 {
                    u * 40.0
                } else {
                    u * 0.2
                }
            })
            .collect()
    }

    /// candle's dequantisation of `q`, row after row.
    fn candle_floats(q: &QTensor) -> Vec<f32> {
        let t = q.dequantize(&Device::Cpu).unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    fn quantized(dtype: GgmlDType, n: usize, k: usize) -> QTensor {
        let t = Tensor::from_vec(values(n * k, n as u64 + k as u64), (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&t, dtype).unwrap()
    }

    const TYPES: [GgmlDType; 10] = [
        GgmlDType::F16,
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];

    #[test]
    fn dequantisation_is_candles_bit_for_bit() {
        for dtype in TYPES {
            let q = quantized(dtype, 8, 512);
            let want = candle_floats(&q);
            let mut got = vec![f32::NAN; want.len()];
            dequantize(&q.data().unwrap(), dtype, &mut got);
            assert!(
                same_bits(&want, &got),
                "{dtype:?}: differs from candle's dequantisation"
            );
            // Misaligned bytes (a copy one byte off) take the copying path and agree too.
            let bytes = q.data().unwrap().to_vec();
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            let mut again = vec![f32::NAN; want.len()];
            dequantize(&shifted[1..], dtype, &mut again);
            assert!(same_bits(&again, &got), "{dtype:?}: misaligned copy");
        }
    }

    #[test]
    fn panel_matmul_matches_f64_and_the_f32_form_bit_for_bit() {
        // Several panels (k = 512: 128 rows each) and a ragged last one.
        let (m, k, n) = (37, 512, 300);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q6K] {
            let q = quantized(dtype, n, k);
            let w = candle_floats(&q);
            let a = values(m * k, 7);
            let mut got = vec![f32::NAN; m * n];
            let rows = WeightRows::Ggml {
                data: &q.data().unwrap(),
                dtype,
            };
            matmul_t(&a, m, k, rows, n, &mut got).unwrap();
            let mut dense = vec![f32::NAN; m * n];
            matmul_t(&a, m, k, WeightRows::F32(&w), n, &mut dense).unwrap();
            assert!(
                same_bits(&got, &dense),
                "{dtype:?}: f32 and quantised forms differ"
            );
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|t| a[i * k + t] as f64 * w[j * k + t] as f64)
                        .sum();
                    let scale: f64 = (0..k)
                        .map(|t| (a[i * k + t] as f64 * w[j * k + t] as f64).abs())
                        .sum();
                    let d = (got[i * n + j] as f64 - want).abs();
                    assert!(d <= 1e-5 * scale.max(1.0), "{dtype:?} ({i},{j}): {d}");
                }
            }
        }
    }

    #[test]
    fn panel_matmul_reports_mismatched_shapes() {
        let q = quantized(GgmlDType::Q4_1, 4, 64);
        let data = q.data().unwrap();
        let rows = WeightRows::Ggml {
            data: &data,
            dtype: GgmlDType::Q4_1,
        };
        let mut out = vec![0f32; 12];
        let e = matmul_t(&[0.0; 3 * 64], 3, 64, rows, 5, &mut out).unwrap_err();
        assert!(e.to_string().contains("expected 200 for 5 x 64"), "{e}");
        let e = matmul_t(&[0.0; 3 * 64], 3, 64, rows, 4, &mut out[..11]).unwrap_err();
        assert!(e.to_string().contains("output of 11"), "{e}");
        // Rows of 48 values are not whole Q4_1 blocks of 32.
        let e = matmul_t(&[0.0; 3 * 48], 3, 48, rows, 4, &mut out).unwrap_err();
        assert!(
            e.to_string().contains("not a whole number of Q4_1 blocks"),
            "{e}"
        );
    }
}
