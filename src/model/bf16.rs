//! bf16 linears for CPU inference (`--dtype bf16`): weights rounded to bf16 once when the model
//! loads and packed for the kernel, activations rounded to bf16 before each GEMM (round to
//! nearest even, as `torch.Tensor.to(torch.bfloat16)` does), products summed in f32.
//!
//! - Weights are packed in tiles of 16 output columns, and within a tile in pairs of
//!   consecutive k: one 64-byte load holds 16 columns × 2 k, which is what one 32-bit lane of
//!   AVX512-BF16's `vdpbf16ps` multiplies with a broadcast pair of activations. Only the packed
//!   bf16 copy is kept (half the memory of f32).
//! - [`Kernel::Avx512Bf16`] runs `vdpbf16ps` (each lane: `acc + x₁w₁ + x₀w₀`, the bf16
//!   products exact in f32). [`Kernel::Avx512`] is the fallback for AVX-512 CPUs without BF16:
//!   it widens the same packed bf16 to f32 (a shift or a mask) and runs two FMAs per pair, the
//!   same sums at f32 speed with half the weight memory. [`Kernel::Scalar`] is the reference
//!   the tests hold both to.
//!
//! Everything around the GEMMs (bias, residual, LayerNorm, softmax, GELU, the head) stays f32,
//! as in [`super::cpu_encoder`].

use rayon::prelude::*;

/// Output columns per packed tile (one 512-bit register of f32 sums).
const TILE: usize = 16;
/// Consecutive k values per 32-bit lane.
const PAIR: usize = 2;
/// Rows per micro-kernel call: 12 rows × 2 tiles = 24 accumulator registers of the 32.
pub(crate) const ROWS: usize = 12;
/// Pairs of k per micro-kernel call (K blocking).
const KC_PAIRS: usize = 256;

/// Which kernel runs the bf16 GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 with BF16 (`vdpbf16ps`).
    Avx512Bf16,
    /// AVX-512F without BF16: bf16 widened to f32, FMAs.
    Avx512,
    /// Plain Rust (the reference; slow).
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU runs, or `None` when only the scalar reference would (the
    /// model then stays in f32).
    pub fn detect() -> Option<Self> {
        [Self::Avx512Bf16, Self::Avx512]
            .into_iter()
            .find(|k| k.available())
    }

    /// Whether this CPU can run the kernel. `RACE_EVAL_CPU_FEATURES_OFF` (a comma-separated
    /// list of `avx512bf16`, `avx512`) hides instructions, to run what a CPU without them runs.
    pub fn available(self) -> bool {
        // Read once: `available` is asserted on every GEMM call.
        static OFF: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let off = OFF.get_or_init(|| {
            std::env::var("RACE_EVAL_CPU_FEATURES_OFF")
                .map(|v| v.split(',').map(|f| f.trim().to_string()).collect())
                .unwrap_or_default()
        });
        let hidden = |feature: &str| off.iter().any(|f| f == feature);
        match self {
            Self::Scalar => true,
            _ if hidden("avx512") => false,
            Self::Avx512Bf16 if hidden("avx512bf16") => false,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Bf16 => {
                std::arch::is_x86_feature_detected!("avx512bf16")
                    && std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512Bf16 => "AVX512-BF16",
            Self::Avx512 => "AVX-512F (bf16 widened to f32)",
            Self::Scalar => "scalar",
        }
    }
}

/// f32 → bf16 bits, rounded to nearest even (NaN stays NaN).
#[inline]
pub fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 bits → f32 (exact).
#[inline]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// An `nn.Linear` weight (n, k) in bf16, packed for the kernels.
pub struct Bf16Linear {
    pub n: usize,
    pub k: usize,
    /// `k` rounded up to a multiple of [`PAIR`].
    kp: usize,
    /// Tiles × pairs × [`TILE`] × [`PAIR`] bf16 values.
    packed: Vec<u16>,
}

impl Bf16Linear {
    /// Rounds and packs `w`, row-major (n, k) as `nn.Linear` stores it.
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k);
        Self::from_row_blocks(n, k, |first, dst| {
            dst.copy_from_slice(&w[first * k..first * k + dst.len()]);
            Ok(())
        })
        .expect("reading from a slice cannot fail")
    }

    /// Packs a weight whose rows `read(first, dst)` writes in f32, [`TILE`] rows (or the last
    /// few) at a time, in parallel: the loader reads each block straight from the checkpoint,
    /// so only a block of f32 rows per thread is ever held beside the packed weight.
    pub fn from_row_blocks(
        n: usize,
        k: usize,
        read: impl Fn(usize, &mut [f32]) -> anyhow::Result<()> + Sync,
    ) -> anyhow::Result<Self> {
        let kp = k.div_ceil(PAIR) * PAIR;
        let pairs = kp / PAIR;
        let tiles = n.div_ceil(TILE);
        let mut packed = vec![0u16; tiles * pairs * TILE * PAIR];
        if kp > 0 {
            packed
                .par_chunks_mut(pairs * TILE * PAIR)
                .enumerate()
                .try_for_each(|(t, tile)| -> anyhow::Result<()> {
                    let rows = TILE.min(n - t * TILE);
                    let mut block = vec![0f32; rows * k];
                    read(t * TILE, &mut block)?;
                    for (c, row) in block.chunks_exact(k).enumerate() {
                        for (kk, &v) in row.iter().enumerate() {
                            tile[((kk / PAIR) * TILE + c) * PAIR + kk % PAIR] = to_bf16(v);
                        }
                    }
                    Ok(())
                })?;
        }
        Ok(Self { n, k, kp, packed })
    }

    /// Packs the (n, k) matrix whose element (j, kk) is `at(j, kk)`, on this thread: the
    /// attention products pack each head's keys (n keys × k dims) and values transposed
    /// (n dims × k keys) this way, straight from the Q|K|V buffer.
    pub fn from_fn(n: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> Self {
        let kp = k.div_ceil(PAIR) * PAIR;
        let pairs = kp / PAIR;
        let tiles = n.div_ceil(TILE);
        let mut packed = vec![0u16; tiles * pairs * TILE * PAIR];
        for j in 0..n {
            let (t, c) = (j / TILE, j % TILE);
            let tile = &mut packed[t * pairs * TILE * PAIR..];
            for kk in 0..k {
                tile[((kk / PAIR) * TILE + c) * PAIR + kk % PAIR] = to_bf16(at(j, kk));
            }
        }
        Self { n, k, kp, packed }
    }

    fn pairs(&self) -> usize {
        self.kp / PAIR
    }

    /// The weight at (column j, k), from the packed layout (tests).
    #[cfg(test)]
    pub fn get(&self, j: usize, kk: usize) -> f32 {
        let (t, c, p, r) = (j / TILE, j % TILE, kk / PAIR, kk % PAIR);
        from_bf16(self.packed[((t * self.pairs() + p) * TILE + c) * PAIR + r])
    }

    /// Bytes held (tests).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.packed.len() * 2
    }
}

/// Activations of one GEMM in bf16: `rows` rows of `kp` values (padding columns and rows hold
/// zeros), the row count rounded up to [`ROWS`].
pub struct Bf16Rows {
    rows: usize,
    kp: usize,
    data: Vec<u16>,
}

impl Bf16Rows {
    /// Rounds `m` rows of `k` values, `stride` apart in `x`.
    pub fn new(x: &[f32], m: usize, k: usize, stride: usize) -> Self {
        let kp = k.div_ceil(PAIR) * PAIR;
        let padded = m.div_ceil(ROWS) * ROWS;
        let mut data = vec![0u16; padded * kp];
        if kp > 0 {
            data.par_chunks_mut(kp)
                .take(m)
                .enumerate()
                .for_each(|(i, dst)| {
                    for (d, &v) in dst.iter_mut().zip(&x[i * stride..i * stride + k]) {
                        *d = to_bf16(v);
                    }
                });
        }
        Self { rows: m, kp, data }
    }
}

/// `out[i·stride + j] += Σ_k x[i, k] · w[j, k]` in f32 from bf16 inputs, for every row of `x` and
/// column of `w` (`out` already holds the bias and residual, as in the f32 path), on rayon.
pub fn gemm_accumulate(
    x: &Bf16Rows,
    w: &Bf16Linear,
    out: &mut [f32],
    out_stride: usize,
    kernel: Kernel,
) {
    let Some((row_blocks, col_blocks)) = check(x, w, out, out_stride, kernel) else {
        return;
    };
    let out_ptr = SharedOut(out.as_mut_ptr());
    // Work items: (column block, row block), column-major so that one thread's consecutive
    // items reuse the same weight panel from its cache.
    (0..row_blocks * col_blocks)
        .into_par_iter()
        .for_each(|item| {
            let (cb, rb) = (item / row_blocks, item % row_blocks);
            // SAFETY: `check` bounded `out`; each item writes its own rows × columns.
            unsafe { block(x, w, rb, cb, out_ptr, out_stride, kernel) };
        });
}

/// As [`gemm_accumulate`], on the calling thread (the attention products, which run one task
/// per sequence and head on rayon already).
pub fn gemm_accumulate_serial(
    x: &Bf16Rows,
    w: &Bf16Linear,
    out: &mut [f32],
    out_stride: usize,
    kernel: Kernel,
) {
    let Some((row_blocks, col_blocks)) = check(x, w, out, out_stride, kernel) else {
        return;
    };
    let out_ptr = SharedOut(out.as_mut_ptr());
    for rb in 0..row_blocks {
        for cb in 0..col_blocks {
            // SAFETY: as above.
            unsafe { block(x, w, rb, cb, out_ptr, out_stride, kernel) };
        }
    }
}

/// Checks the shapes; (row blocks, column blocks), or `None` when there is nothing to do.
fn check(
    x: &Bf16Rows,
    w: &Bf16Linear,
    out: &[f32],
    out_stride: usize,
    kernel: Kernel,
) -> Option<(usize, usize)> {
    assert!(
        kernel.available(),
        "{kernel:?} is not available on this CPU"
    );
    assert_eq!(x.kp, w.kp);
    let (m, n) = (x.rows, w.n);
    if m == 0 || n == 0 {
        return None;
    }
    assert!(out.len() >= (m - 1) * out_stride + n && out_stride >= n);
    Some((m.div_ceil(ROWS), n.div_ceil(2 * TILE)))
}

/// Row block `rb` × column block `cb` (two tiles) of the product, added into `out`.
///
/// # Safety
/// `out` must hold the (x.rows × w.n) view with row stride `out_stride` (see [`check`]), and no
/// one else may touch this block meanwhile.
unsafe fn block(
    x: &Bf16Rows,
    w: &Bf16Linear,
    rb: usize,
    cb: usize,
    out: SharedOut,
    out_stride: usize,
    kernel: Kernel,
) {
    let (m, n, pairs) = (x.rows, w.n, w.pairs());
    let tiles = n.div_ceil(TILE);
    let mut acc = [[0f32; 2 * TILE]; ROWS];
    let xs = &x.data[rb * ROWS * x.kp..(rb + 1) * ROWS * x.kp];
    let tile = |t: usize| &w.packed[t * pairs * TILE * PAIR..(t + 1) * pairs * TILE * PAIR];
    let (w0, w1) = (tile(cb * 2), tile((cb * 2 + 1).min(tiles - 1)));
    // K in chunks of KC_PAIRS pairs, so that the rows' chunk (12 × 512 bf16: 12 KiB) stays in
    // L1 while the weight panel streams from L2.
    for p0 in (0..pairs).step_by(KC_PAIRS) {
        let np = KC_PAIRS.min(pairs - p0);
        let (a, b0, b1) = (&xs[2 * p0..], &w0[32 * p0..], &w1[32 * p0..]);
        micro_kernel(kernel, a, x.kp, np, b0, b1, &mut acc);
    }
    let rows = ROWS.min(m - rb * ROWS);
    let col0 = cb * 2 * TILE;
    let cols = (2 * TILE).min(n - col0);
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        let i = rb * ROWS + r;
        // SAFETY: row i, columns col0..col0+cols lie in the view (the caller's contract).
        let dst = unsafe { std::slice::from_raw_parts_mut(out.at(i * out_stride + col0), cols) };
        for (d, &a) in dst.iter_mut().zip(acc_row) {
            *d += a;
        }
    }
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the work items of `gemm_accumulate` write disjoint blocks of `out`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Dot products of [`ROWS`] rows of `xs` (row stride `kp`, `pairs` pairs from the start of
/// each row) with `pairs` pairs of the columns of two tiles (the second may repeat the first at
/// the edge; its sums are then not read), added to `acc`.
fn micro_kernel(
    kernel: Kernel,
    xs: &[u16],
    kp: usize,
    pairs: usize,
    w0: &[u16],
    w1: &[u16],
    acc: &mut [[f32; 2 * TILE]; ROWS],
) {
    assert!(xs.len() >= (ROWS - 1) * kp + 2 * pairs);
    assert!(w0.len() >= pairs * 32 && w1.len() >= pairs * 32);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` was checked by the caller; the slices are sized as asserted.
        Kernel::Avx512Bf16 => unsafe { avx512::dot_bf16(xs, kp, pairs, w0, w1, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx512 => unsafe { avx512::dot_widened(xs, kp, pairs, w0, w1, acc) },
        _ => scalar_kernel(xs, kp, pairs, w0, w1, acc),
    }
}

/// The reference: per lane and pair, `acc + x₁w₁ + x₀w₀` in f32 (each bf16 product is exact in
/// f32, so each step rounds once, as `vdpbf16ps` does).
fn scalar_kernel(
    xs: &[u16],
    kp: usize,
    pairs: usize,
    w0: &[u16],
    w1: &[u16],
    acc: &mut [[f32; 2 * TILE]; ROWS],
) {
    for (r, acc_row) in acc.iter_mut().enumerate() {
        let x = &xs[r * kp..r * kp + 2 * pairs];
        for p in 0..pairs {
            let (x0, x1) = (from_bf16(x[2 * p]), from_bf16(x[2 * p + 1]));
            for (half, w) in [w0, w1].into_iter().enumerate() {
                for c in 0..TILE {
                    let at = (p * TILE + c) * PAIR;
                    let a = &mut acc_row[half * TILE + c];
                    *a += x1 * from_bf16(w[at + 1]);
                    *a += x0 * from_bf16(w[at]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ROWS, TILE};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F and BF16; `xs` holds [`ROWS`] rows of `kp` values and `w0`,
    /// `w1` hold `pairs` × 32 values each.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dot_bf16(
        xs: &[u16],
        kp: usize,
        pairs: usize,
        w0: &[u16],
        w1: &[u16],
        acc: &mut [[f32; 2 * TILE]; ROWS],
    ) {
        let mut a = [[_mm512_setzero_ps(); 2]; ROWS];
        for (r, ar) in a.iter_mut().enumerate() {
            ar[0] = _mm512_loadu_ps(acc[r].as_ptr());
            ar[1] = _mm512_loadu_ps(acc[r].as_ptr().add(TILE));
        }
        let (xp, p0, p1) = (xs.as_ptr(), w0.as_ptr(), w1.as_ptr());
        for p in 0..pairs {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(p0.add(p * 32) as *const _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(p1.add(p * 32) as *const _));
            for (r, ar) in a.iter_mut().enumerate() {
                let v = (xp.add(r * kp + p * 2) as *const i32).read_unaligned();
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(v));
                ar[0] = _mm512_dpbf16_ps(ar[0], x, b0);
                ar[1] = _mm512_dpbf16_ps(ar[1], x, b1);
            }
        }
        for (r, ar) in a.iter().enumerate() {
            _mm512_storeu_ps(acc[r].as_mut_ptr(), ar[0]);
            _mm512_storeu_ps(acc[r].as_mut_ptr().add(TILE), ar[1]);
        }
    }

    /// bf16 pairs (k₀ in the low half of each 32-bit lane, k₁ in the high half) widened to two
    /// f32 vectors: (k₀, k₁).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn widen(v: __m512i) -> (__m512, __m512) {
        let lo = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
        let hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536)));
        (lo, hi)
    }

    /// # Safety
    /// The CPU must have AVX-512F; sizes as for [`dot_bf16`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_widened(
        xs: &[u16],
        kp: usize,
        pairs: usize,
        w0: &[u16],
        w1: &[u16],
        acc: &mut [[f32; 2 * TILE]; ROWS],
    ) {
        let mut a = [[_mm512_setzero_ps(); 2]; ROWS];
        for (r, ar) in a.iter_mut().enumerate() {
            ar[0] = _mm512_loadu_ps(acc[r].as_ptr());
            ar[1] = _mm512_loadu_ps(acc[r].as_ptr().add(TILE));
        }
        let (xp, p0, p1) = (xs.as_ptr(), w0.as_ptr(), w1.as_ptr());
        for p in 0..pairs {
            let (b00, b01) = widen(_mm512_loadu_si512(p0.add(p * 32) as *const _));
            let (b10, b11) = widen(_mm512_loadu_si512(p1.add(p * 32) as *const _));
            for (r, ar) in a.iter_mut().enumerate() {
                let v = (xp.add(r * kp + p * 2) as *const i32).read_unaligned();
                let (x0, x1) = widen(_mm512_set1_epi32(v));
                // The order of the reference: x₁w₁ first, then x₀w₀.
                ar[0] = _mm512_fmadd_ps(x0, b00, _mm512_fmadd_ps(x1, b01, ar[0]));
                ar[1] = _mm512_fmadd_ps(x0, b10, _mm512_fmadd_ps(x1, b11, ar[1]));
            }
        }
        for (r, ar) in a.iter().enumerate() {
            _mm512_storeu_ps(acc[r].as_mut_ptr(), ar[0]);
            _mm512_storeu_ps(acc[r].as_mut_ptr().add(TILE), ar[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `out` from `kernel` through the same blocking.
    fn run(kernel: Kernel, x: &[f32], m: usize, k: usize, w: &Bf16Linear) -> Vec<f32> {
        let rows = Bf16Rows::new(x, m, k, k);
        let mut out: Vec<f32> = (0..m * w.n).map(|i| (i % 7) as f32 * 0.25).collect();
        gemm_accumulate(&rows, w, &mut out, w.n, kernel);
        out
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 lies halfway between bf16 1.0 and 1 + 2^-7: ties go to the even (1.0).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), to_bf16(1.0));
        // 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: the even one is 1 + 2^-6.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        // Just above the tie rounds up.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20))),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        // The largest finite f32 overflows to infinity, as torch's rounding does.
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
    }

    #[test]
    fn packing_round_trips() {
        let (n, k) = (37, 23);
        let w = pseudo(n * k, 3);
        let p = Bf16Linear::new(&w, n, k);
        for j in 0..n {
            for kk in 0..k {
                assert_eq!(p.get(j, kk), from_bf16(to_bf16(w[j * k + kk])));
            }
        }
        assert_eq!(p.bytes(), n.div_ceil(TILE) * TILE * k.div_ceil(2) * 2 * 2);
    }

    /// Every available kernel gives the scalar reference's sums bit for bit, at odd sizes
    /// (edges of row blocks, tiles and pairs).
    #[test]
    fn kernels_match_the_reference_exactly() {
        for (m, k, n) in [
            (1, 1, 1),
            (13, 37, 33),
            (25, 64, 48),
            (12, 768, 32),
            (5, 130, 70),
        ] {
            let x = pseudo(m * k, 1 + m as u64);
            let w = Bf16Linear::new(&pseudo(n * k, 2 + n as u64), n, k);
            let reference = run(Kernel::Scalar, &x, m, k, &w);
            for kernel in [Kernel::Avx512Bf16, Kernel::Avx512] {
                if !kernel.available() {
                    eprintln!("{kernel:?}: not on this CPU, SKIPPED");
                    continue;
                }
                let got = run(kernel, &x, m, k, &w);
                for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        r.to_bits(),
                        "{kernel:?} ({m}, {k}, {n}) at {i}: {g} vs {r}"
                    );
                }
            }
        }
    }

    /// The serial entry and strided packing give what the parallel entry and row packing give.
    #[test]
    fn serial_and_strided_packing_agree() {
        let (m, k, n) = (30, 70, 50);
        let x = pseudo(m * k, 8);
        let w = pseudo(n * k, 9);
        let kernel = Kernel::detect().unwrap_or(Kernel::Scalar);
        let by_rows = Bf16Linear::new(&w, n, k);
        // The same matrix read transposed from a (k, n) layout.
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        let by_fn = Bf16Linear::from_fn(n, k, |j, kk| wt[kk * n + j]);
        assert_eq!(by_rows.packed, by_fn.packed);
        let rows = Bf16Rows::new(&x, m, k, k);
        let (mut a, mut b) = (vec![1f32; m * n], vec![1f32; m * n]);
        gemm_accumulate(&rows, &by_rows, &mut a, n, kernel);
        gemm_accumulate_serial(&rows, &by_fn, &mut b, n, kernel);
        assert_eq!(a, b);
        assert!(a.iter().any(|&v| v != 1.0));
    }

    /// The scalar reference is the product of the rounded inputs: within f32 summation error
    /// of an f64 dot product of the bf16 values (so a wrong pair or tile order fails).
    #[test]
    fn reference_is_the_rounded_product() {
        let (m, k, n) = (7, 300, 21);
        let x = pseudo(m * k, 5);
        let w = pseudo(n * k, 6);
        let p = Bf16Linear::new(&w, n, k);
        let got = run(Kernel::Scalar, &x, m, k, &p);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|kk| {
                        from_bf16(to_bf16(x[i * k + kk])) as f64
                            * from_bf16(to_bf16(w[j * k + kk])) as f64
                    })
                    .sum::<f64>()
                    + ((i * n + j) % 7) as f64 * 0.25;
                let g = got[i * n + j] as f64;
                assert!((g - exact).abs() < 1e-4, "({i}, {j}): {g} vs {exact}");
            }
        }
    }
}
