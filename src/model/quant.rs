//! Dynamic int8 quantisation of the linears for CPU inference (`--dtype int8`).
//!
//! - Weights: per output channel (row of `nn.Linear`'s (n, k) weight), symmetric:
//!   `w ≈ s_w[j] · q_w[j, k]` with `q_w` in [-127, 127], quantised once when the model loads.
//! - Activations: per row (token), computed on the fly before each GEMM, asymmetric (unsigned
//!   with a zero point per row): `x ≈ s_x[i] · (q_x[i, k] - z[i])` with `q_x` in [0, 255] spread
//!   over the row's own [min, max] (0 included). All 256 levels are used whatever the row's sign
//!   balance: GELU outputs (the feed-forward output's input) are nearly all ≥ -0.17, so a
//!   symmetric scheme would leave half the levels unused.
//! - Smoothing (SmoothQuant, Xiao et al. 2023): BERT-family activations have a few input
//!   channels whose values are 10-30× the others' (all-MiniLM-L6-v2: channel 99 of every
//!   LayerNorm output reaches 30 where the median channel's maximum is 1.9), and per-row scales
//!   then give the ordinary channels few levels. Per input channel factors
//!   `f[k] = max|x_k|^α / max|w_k|^(1-α)` (maxima from calibration, [`QuantLinear::observe`])
//!   move that range into the weights: `x W^T = (x / f)(W · f)^T`. `W · f` is quantised once;
//!   `1 / f` is applied as the rows are quantised (one multiply per value, in the same pass),
//!   so smoothing costs nothing at run time. Without calibration the factors are 1. Q, K and V
//!   read the same input and share one set of factors (from the maxima of all three weights, as
//!   SmoothQuant smooths them), so their input is quantised once for the three.
//! - `y[i, j] = s_x[i] · s_w[j] · (Σ_k q_x q_w - z[i] · Σ_k q_w[j, k])`, accumulated in i32: exact
//!   integer arithmetic, so no kernel can saturate (AVX-512 VNNI's `vpdpbusd` adds four u8 × i8
//!   products straight into i32 lanes; the AVX2 kernel widens to i16 and uses `vpmaddwd`, whose
//!   pair sums fit in i32).
//!
//! Why smoothing rather than keeping the outlier channels in f32 (LLM.int8()-style): measured
//! by emulation in scripts/int8_reference.py on real MiniLM (relative error of the pooled [CLS]
//! states against f32, first RACE-M test questions), asymmetric rows with smoothing (α = 0.65)
//! gave 0.027 and with the two largest outlier channels of each linear in f32 instead 0.025:
//! the same fidelity, but the f32 columns need a second GEMM and a gather per linear, while the
//! smoothing is free. (Symmetric rows: 0.068; asymmetric alone: 0.040; ONNX Runtime's dynamic
//! int8: 0.075.)
//!
//! Weights are packed for the kernels: tiles of 16 output columns, and within a tile groups of 4
//! consecutive k, so one 64-byte load holds 16 columns × 4 k and one broadcast 32-bit load of
//! the activations feeds all of them. Kernels are picked at run time ([`Kernel::detect`]):
//! AVX-512 VNNI, else AVX2, else none (the model then stays in f32). Every kernel is tested
//! against the scalar reference for exact integer equality.

use std::sync::Mutex;

use rayon::prelude::*;

/// Output columns per packed tile.
const TILE: usize = 16;
/// Consecutive k values per group (one 32-bit lane of `vpdpbusd`).
const GROUP: usize = 4;
/// Rows per micro-kernel call.
const ROWS: usize = 8;

/// Which integer kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 with VNNI (`vpdpbusd`).
    Vnni,
    /// AVX2: widened to i16, `vpmaddwd`.
    Avx2,
    /// Plain Rust (the reference; slow).
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU runs, or `None` when only the scalar reference would (int8
    /// would then be slower than f32).
    pub fn detect() -> Option<Self> {
        [Self::Vnni, Self::Avx2].into_iter().find(|k| k.available())
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Self::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Self::Vnni => {
                std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// An `nn.Linear` weight (n, k) quantised per output channel and packed for the kernels.
pub struct QuantLinear {
    pub n: usize,
    pub k: usize,
    /// `k` rounded up to a multiple of [`GROUP`].
    kp: usize,
    /// Tiles × groups × [`TILE`] × [`GROUP`] bytes.
    packed: Vec<i8>,
    /// Per output column: the weight scale, and Σ_k q_w (times a row's zero point: the
    /// zero-point correction).
    scale: Vec<f32>,
    colsum: Vec<i32>,
    /// Per input channel: 1 / the smoothing factor (all 1 without calibration).
    inv_smooth: Vec<f32>,
    /// Per input channel max |x| seen while observing ([`Self::observe`]).
    observed: Mutex<Option<Vec<f32>>>,
}

/// SmoothQuant's migration strength: α = 0.65 measured best on MiniLM among 0.5, 0.65, 0.75
/// and 0.8 (pooled [CLS] relative error 0.028, 0.027, 0.032, 0.031).
pub const SMOOTH_ALPHA: f32 = 0.65;

/// SmoothQuant factors `f[k] = max|x_k|^α / max|w_k|^(1-α)` for input maxima `x_max` and the
/// weights `ws` (each (·, k), row-major; `max|w_k|` over all of them); 1 where either maximum
/// is 0 or the factor is not finite.
fn smoothing_factors(x_max: &[f32], ws: &[&[f32]], k: usize) -> Vec<f32> {
    assert_eq!(x_max.len(), k);
    let mut w_max = vec![0f32; k];
    for w in ws {
        for row in w.chunks_exact(k.max(1)) {
            for (m, &v) in w_max.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
    }
    let mut factor = vec![1f32; k];
    for ((f, &xm), &wm) in factor.iter_mut().zip(x_max).zip(&w_max) {
        if xm > 0.0 && wm > 0.0 && xm.is_finite() {
            let v = xm.powf(SMOOTH_ALPHA) / wm.powf(1.0 - SMOOTH_ALPHA);
            if v.is_finite() && v > 1e-6 {
                *f = v;
            }
        }
    }
    factor
}

impl QuantLinear {
    /// Quantises `w`, row-major (n, k) as `nn.Linear` stores it.
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        Self::smoothed(w, n, k, None)
    }

    /// Quantises `w` (n, k) with SmoothQuant factors from `x_max`, the per input channel
    /// maxima of |x| ([`Self::observe`]), and strength [`SMOOTH_ALPHA`]; without maxima, as
    /// [`Self::new`]. A channel never seen non-zero (or a zero weight column) keeps factor 1.
    pub fn smoothed(w: &[f32], n: usize, k: usize, x_max: Option<&[f32]>) -> Self {
        let factor = x_max.map(|x_max| smoothing_factors(x_max, &[w], k));
        Self::with_factors(w, n, k, factor.as_deref())
    }

    /// Quantises linears that read the same input (Q, K and V) with one set of SmoothQuant
    /// factors, from `x_max` and the per channel maxima of all their weights (SmoothQuant's
    /// treatment of the three projections): their input is then quantised once for the three
    /// ([`Self::same_input`]). `ws`: each (n, k) weight, row-major.
    pub fn smoothed_together(ws: &[(&[f32], usize)], k: usize, x_max: &[f32]) -> Vec<Self> {
        let all: Vec<&[f32]> = ws.iter().map(|(w, _)| *w).collect();
        let factor = smoothing_factors(x_max, &all, k);
        ws.iter()
            .map(|&(w, n)| Self::with_factors(w, n, k, Some(&factor)))
            .collect()
    }

    /// Whether `self` and `other` quantise their input the same way (the same smoothing
    /// factors), so that one [`quantize_rows`] serves both.
    pub fn same_input(&self, other: &Self) -> bool {
        self.k == other.k && self.inv_smooth == other.inv_smooth
    }

    /// Quantises `w` (n, k) with `factor` (per input channel) multiplied in, if given.
    fn with_factors(w: &[f32], n: usize, k: usize, factor: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), n * k);
        let ones = vec![1f32; k];
        let smoothed: Vec<f32>;
        let (w, factor) = match factor {
            Some(factor) => {
                assert_eq!(factor.len(), k);
                smoothed = w
                    .chunks_exact(k.max(1))
                    .flat_map(|row| row.iter().zip(factor).map(|(&v, &f)| v * f))
                    .collect();
                (&smoothed[..], factor)
            }
            None => (w, &ones[..]),
        };
        let kp = k.div_ceil(GROUP) * GROUP;
        let tiles = n.div_ceil(TILE);
        let groups = kp / GROUP;
        let mut packed = vec![0i8; tiles * groups * TILE * GROUP];
        let mut scale = vec![0f32; n];
        let mut colsum = vec![0i32; n];
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            scale[j] = s;
            let (t, c) = (j / TILE, j % TILE);
            let mut sum = 0i32;
            for (kk, &v) in row.iter().enumerate() {
                let q = (v / s).round().clamp(-127.0, 127.0) as i8;
                sum += q as i32;
                let (g, r) = (kk / GROUP, kk % GROUP);
                packed[((t * groups + g) * TILE + c) * GROUP + r] = q;
            }
            colsum[j] = sum;
        }
        Self {
            n,
            k,
            kp,
            packed,
            scale,
            colsum,
            inv_smooth: factor.iter().map(|f| 1.0 / f).collect(),
            observed: Mutex::new(None),
        }
    }

    /// From now on, every quantisation of this layer's input also records the per input
    /// channel max |x| (calibration for [`Self::smoothed`]; the values are those before
    /// smoothing). [`Self::observed`] returns them.
    pub fn observe(&self) {
        *self.observed.lock().unwrap() = Some(vec![0f32; self.k]);
    }

    /// The maxima recorded since [`Self::observe`] (which stops observing), or `None`.
    pub fn observed(&self) -> Option<Vec<f32>> {
        self.observed.lock().unwrap().take()
    }

    fn groups(&self) -> usize {
        self.kp / GROUP
    }

    /// The quantised weight at (column j, k), from the packed layout (tests).
    #[cfg(test)]
    fn q(&self, j: usize, kk: usize) -> i8 {
        let (t, c, g, r) = (j / TILE, j % TILE, kk / GROUP, kk % GROUP);
        self.packed[((t * self.groups() + g) * TILE + c) * GROUP + r]
    }
}

/// Activations of one GEMM quantised per row: `rows` × `kp` bytes (padding columns hold 0,
/// padding rows the zero point 0), with each row's scale and zero point.
pub struct QuantRows {
    rows: usize,
    kp: usize,
    data: Vec<u8>,
    scale: Vec<f32>,
    zero: Vec<i32>,
}

/// Quantises one row (smoothed by `inv_smooth`) into `dst` over its own [min, max]: returns
/// (scale, zero point). With `avx512` the same arithmetic runs 16 lanes at a time (the same
/// bytes: each value is multiplied, scaled and offset in the same order, without FMA).
fn quantize_row(row: &[f32], inv_smooth: &[f32], dst: &mut [u8], avx512: bool) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: `avx512` is set only where the VNNI kernel's features (AVX-512F, BW) are.
        return unsafe { vnni::quantize_row(row, inv_smooth, dst) };
    }
    let _ = avx512;
    // Lane-wise min / max of the smoothed row first (vectorised), then a second pass quantises.
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    let mut rc = row.chunks_exact(16);
    let mut fc = inv_smooth.chunks_exact(16);
    for (c, f) in (&mut rc).zip(&mut fc) {
        for l in 0..16 {
            let v = c[l] * f[l];
            lo[l] = lo[l].min(v);
            hi[l] = hi[l].max(v);
        }
    }
    let (mut min, mut max) = (
        lo.iter().fold(0f32, |a, &b| a.min(b)),
        hi.iter().fold(0f32, |a, &b| a.max(b)),
    );
    for (&v, &f) in rc.remainder().iter().zip(fc.remainder()) {
        min = min.min(v * f);
        max = max.max(v * f);
    }
    let (s, zp) = row_scale(min, max);
    // v · inv lies in [-zp', 255 - zp'] with |zp - zp'| ≤ 0.5, so v · inv + zp + 0.5 ≥ 0 and
    // truncation rounds half up (clamped against rounding at the ends), without a call to
    // `round`.
    let (inv, add) = (1.0 / s, zp + 0.5);
    for ((d, &v), &f) in dst.iter_mut().zip(row).zip(inv_smooth) {
        *d = ((v * f) * inv + add).clamp(0.0, 255.0) as u8;
    }
    (s, zp as i32)
}

/// The scale and zero point of a row whose smoothed values span [min, max] (which holds 0, so
/// the zero point lies in [0, 255]).
fn row_scale(min: f32, max: f32) -> (f32, f32) {
    let range = max - min;
    let s = if range > 0.0 && range.is_finite() {
        range / 255.0
    } else {
        1.0
    };
    (s, (-min * (1.0 / s)).round().clamp(0.0, 255.0))
}

/// Quantises `m` rows of `k` values, `stride` apart in `x`, for a GEMM with `w` (whose
/// smoothing factors divide the values first).
pub fn quantize_rows(x: &[f32], m: usize, k: usize, stride: usize, w: &QuantLinear) -> QuantRows {
    assert!(m == 0 || x.len() >= (m - 1) * stride + k);
    let inv_smooth = &w.inv_smooth[..k];
    let avx512 = Kernel::Vnni.available();
    let q = QuantRows::quantize(m, k, w, |i, dst| {
        quantize_row(&x[i * stride..i * stride + k], inv_smooth, dst, avx512)
    });
    if let Some(seen) = w.observed.lock().unwrap().as_mut() {
        observe_rows(seen, x, m, k, stride);
    }
    q
}

/// As [`quantize_rows`], with `act` applied to each row of `x` in place first (the
/// feed-forward's activation, whose output only this quantisation reads): each row is
/// quantised while it is in L1, with no separate pass over the activations.
pub fn quantize_rows_activated(
    x: &mut [f32],
    m: usize,
    k: usize,
    stride: usize,
    w: &QuantLinear,
    act: fn(&mut [f32]),
) -> QuantRows {
    assert!(m == 0 || (x.len() >= (m - 1) * stride + k && stride >= k));
    let inv_smooth = &w.inv_smooth[..k];
    let avx512 = Kernel::Vnni.available();
    let rows = SharedOut(x.as_mut_ptr());
    let q = QuantRows::quantize(m, k, w, |i, dst| {
        // SAFETY: row i (k values at i · stride, within `x` as asserted) is read and written by
        // this call alone: `quantize` visits each row once.
        let row = unsafe { std::slice::from_raw_parts_mut(rows.at(i * stride), k) };
        act(row);
        quantize_row(row, inv_smooth, dst, avx512)
    });
    if let Some(seen) = w.observed.lock().unwrap().as_mut() {
        observe_rows(seen, x, m, k, stride);
    }
    q
}

fn observe_rows(seen: &mut [f32], x: &[f32], m: usize, k: usize, stride: usize) {
    for i in 0..m {
        for (s, &v) in seen.iter_mut().zip(&x[i * stride..i * stride + k]) {
            *s = s.max(v.abs());
        }
    }
}

thread_local! {
    /// Byte buffers of dropped [`QuantRows`], for the next ones: a fresh zeroed allocation of
    /// several MiB per GEMM cost page faults and a memset.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes rows of a [`QuantRows`] from several rayon tasks, each its own rows.
struct RowsWriter {
    data: *mut u8,
    scale: *mut f32,
    zero: *mut i32,
    kp: usize,
    rows: usize,
}
// SAFETY: the tasks write disjoint rows ([`RowsWriter::row`]'s contract).
unsafe impl Send for RowsWriter {}
unsafe impl Sync for RowsWriter {}

impl RowsWriter {
    /// Row i's bytes, scale and zero point.
    ///
    /// # Safety
    /// No one else may hold row i meanwhile, and the [`QuantRows`] must outlive the borrow.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, i: usize) -> (&mut [u8], &mut f32, &mut i32) {
        assert!(i < self.rows);
        // SAFETY: within the buffers (i < rows), exclusive by the contract.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.data.add(i * self.kp), self.kp),
                &mut *self.scale.add(i),
                &mut *self.zero.add(i),
            )
        }
    }
}

impl QuantRows {
    /// Room for `m` rows for `w` (from the spare buffers), padding rows zeroed; the rows
    /// themselves are left for the caller to write, padding columns included.
    fn alloc(m: usize, w: &QuantLinear) -> Self {
        let kp = w.kp;
        let padded = m.div_ceil(ROWS) * ROWS;
        let mut data = SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default();
        data.truncate(padded * kp);
        data.resize(padded * kp, 0);
        data[m * kp..].fill(0);
        Self {
            rows: m,
            kp,
            data,
            scale: vec![1f32; padded],
            zero: vec![0i32; padded],
        }
    }

    fn writer(&mut self) -> RowsWriter {
        RowsWriter {
            data: self.data.as_mut_ptr(),
            scale: self.scale.as_mut_ptr(),
            zero: self.zero.as_mut_ptr(),
            kp: self.kp,
            rows: self.rows,
        }
    }

    /// `m` rows for `w`, row i quantised into its first `k` bytes by `row(i, bytes)` (which
    /// returns the row's scale and zero point) on rayon; padding columns and rows hold 0.
    fn quantize(
        m: usize,
        k: usize,
        w: &QuantLinear,
        row: impl Fn(usize, &mut [u8]) -> (f32, i32) + Sync,
    ) -> Self {
        assert_eq!(k, w.k);
        let mut q = Self::alloc(m, w);
        // Every byte of the rows is written below: no need to clear what the buffer held.
        if q.kp > 0 {
            let kp = q.kp;
            q.data
                .par_chunks_mut(kp)
                .zip(q.scale.par_iter_mut().zip(q.zero.par_iter_mut()))
                .take(m)
                .enumerate()
                .for_each(|(i, (dst, (s, z)))| {
                    (*s, *z) = row(i, &mut dst[..k]);
                    dst[k..].fill(0);
                });
        }
        q
    }
}

impl Drop for QuantRows {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < 4 {
                s.push(data);
            }
        });
    }
}

/// `out[i·stride + j] += s_x[i] · s_w[j] · Σ_k (q_x - z[i]) q_w` for every row of `x` and column
/// of `w` (`out` already holds the bias and residual, as in the f32 path).
pub fn gemm_accumulate(
    x: &QuantRows,
    w: &QuantLinear,
    out: &mut [f32],
    out_stride: usize,
    kernel: Kernel,
) {
    gemm(x, w, out, out_stride, kernel, None, None)
}

/// As [`gemm_accumulate`], but `out` is overwritten with `(residual[i, j] + bias[j]) + …`
/// (`residual`: rows `stride` apart, if given): no pass first fills `out` with them.
pub fn gemm_bias(
    x: &QuantRows,
    w: &QuantLinear,
    bias: &[f32],
    residual: Option<(&[f32], usize)>,
    out: &mut [f32],
    out_stride: usize,
    kernel: Kernel,
) {
    check_bias(x, w, bias, residual);
    gemm(x, w, out, out_stride, kernel, Some((bias, residual)), None)
}

/// Asserts that `bias` has one value per output and `residual` (rows `stride` apart) covers
/// every row of the output.
fn check_bias(x: &QuantRows, w: &QuantLinear, bias: &[f32], residual: Option<(&[f32], usize)>) {
    assert_eq!(bias.len(), w.n);
    if let (Some((r, stride)), true) = (residual, x.rows > 0) {
        assert!(r.len() >= (x.rows - 1) * stride + w.n && stride >= w.n);
    }
}

/// As [`gemm_bias`], then each row of `out` goes through `post` in place (LayerNorm, the
/// activation) and, with `next` (the int8 linear that reads `out`), is quantised for it, each
/// chunk of rows as soon as the GEMM has finished it, while it is in cache: no separate pass
/// over `out` for either. Returns the quantised rows when `next` is given.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias_post(
    x: &QuantRows,
    w: &QuantLinear,
    bias: &[f32],
    residual: Option<(&[f32], usize)>,
    out: &mut [f32],
    out_stride: usize,
    kernel: Kernel,
    post: &(dyn Fn(&mut [f32]) + Sync),
    next: Option<&QuantLinear>,
) -> Option<QuantRows> {
    check_bias(x, w, bias, residual);
    let m = x.rows;
    let base = Some((bias, residual));
    let Some(next) = next else {
        gemm(
            x,
            w,
            out,
            out_stride,
            kernel,
            base,
            Some(&|_, row| post(row)),
        );
        return None;
    };
    assert_eq!(next.k, w.n);
    let k = w.n;
    let inv_smooth = &next.inv_smooth[..k];
    let avx512 = Kernel::Vnni.available();
    let mut q = QuantRows::alloc(m, next);
    let writer = q.writer();
    let hook = |i: usize, row: &mut [f32]| {
        post(row);
        // SAFETY: `gemm` hands each row to the hook once; `writer` covers `m` rows and `q`
        // outlives the call.
        let (dst, s, z) = unsafe { writer.row(i) };
        (*s, *z) = quantize_row(row, inv_smooth, &mut dst[..k], avx512);
        dst[k..].fill(0);
    };
    gemm(x, w, out, out_stride, kernel, base, Some(&hook));
    if let Some(seen) = next.observed.lock().unwrap().as_mut() {
        observe_rows(seen, out, m, k, out_stride);
    }
    Some(q)
}

/// What an output block starts from: the bias and residual, or `out`'s own values (`None`).
type Base<'a> = Option<(&'a [f32], Option<(&'a [f32], usize)>)>;

/// A hook run on each finished row of the output: (row index, its `n` values).
type Post<'a> = Option<&'a (dyn Fn(usize, &mut [f32]) + Sync)>;

/// Rows per work item when a [`Post`] hook runs: the chunk's outputs stay in L2 for it.
const POST_ROWS: usize = 4 * ROWS;

fn gemm(
    x: &QuantRows,
    w: &QuantLinear,
    out: &mut [f32],
    out_stride: usize,
    kernel: Kernel,
    base: Base,
    post: Post,
) {
    assert!(
        kernel.available(),
        "{kernel:?} is not available on this CPU"
    );
    assert_eq!(x.kp, w.kp);
    let (m, n) = (x.rows, w.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(out.len() >= (m - 1) * out_stride + n && out_stride >= n);
    let row_blocks = m.div_ceil(ROWS);
    let col_blocks = n.div_ceil(2 * TILE);
    // Work items: (panel of column blocks, row block), panel-major, each running the panel's
    // column blocks (pairs of tiles) for its rows: the row block's bytes stay in L1 across the
    // panel, and a thread's consecutive items reuse the panel's weights from its L2 instead of
    // streaming the whole weight matrix once per row block.
    let per_panel = (PANEL_BYTES / (2 * TILE * x.kp).max(1)).clamp(1, col_blocks);
    let panels = col_blocks.div_ceil(per_panel);
    let out_ptr = SharedOut(out.as_mut_ptr());
    if let Some(post) = post {
        // Work items: chunks of POST_ROWS rows over every column (panel by panel), then the
        // hook on the chunk's rows.
        let per_chunk = POST_ROWS / ROWS;
        (0..row_blocks.div_ceil(per_chunk))
            .into_par_iter()
            .for_each(|chunk| {
                let rbs = chunk * per_chunk..((chunk + 1) * per_chunk).min(row_blocks);
                for panel in 0..panels {
                    for rb in rbs.clone() {
                        for cb in panel * per_panel..((panel + 1) * per_panel).min(col_blocks) {
                            // SAFETY: as below.
                            unsafe { block(x, w, rb, cb, out_ptr, out_stride, kernel, base) };
                        }
                    }
                }
                for i in rbs.start * ROWS..(rbs.end * ROWS).min(m) {
                    // SAFETY: row i of the view (asserted above), finished, and this item's
                    // alone.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(out_ptr.at(i * out_stride), n) };
                    post(i, row);
                }
            });
        return;
    }
    (0..panels * row_blocks).into_par_iter().for_each(|item| {
        let (panel, rb) = (item / row_blocks, item % row_blocks);
        for cb in panel * per_panel..((panel + 1) * per_panel).min(col_blocks) {
            // SAFETY: `out` holds the (m × n) view with row stride `out_stride` (asserted
            // above); this item alone writes these rows × columns.
            unsafe { block(x, w, rb, cb, out_ptr, out_stride, kernel, base) };
        }
    });
}

/// Bytes of weights per panel of column blocks (a share of a core's L2).
const PANEL_BYTES: usize = 256 * 1024;

/// Rows `rb · ROWS…` × columns of column block `cb` (two tiles) of the product, with the
/// epilogue.
///
/// # Safety
/// `out` must hold the (x.rows × w.n) view with row stride `out_stride`, and no one else may
/// touch this block meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    x: &QuantRows,
    w: &QuantLinear,
    rb: usize,
    cb: usize,
    out: SharedOut,
    out_stride: usize,
    kernel: Kernel,
    base: Base,
) {
    let (m, n) = (x.rows, w.n);
    let xs = &x.data[rb * ROWS * x.kp..(rb + 1) * ROWS * x.kp];
    let tiles = (cb * 2, (cb * 2 + 1).min(w.n.div_ceil(TILE) - 1));
    let rows = ROWS.min(m - rb * ROWS);
    let col0 = cb * 2 * TILE;
    let cols = (2 * TILE).min(n - col0);
    let row0 = rb * ROWS;
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        let groups = w.groups();
        let tile = |t: usize| &w.packed[t * groups * TILE * GROUP..(t + 1) * groups * TILE * GROUP];
        let epi = vnni::Epilogue {
            rows,
            cols,
            sx: &x.scale[row0..row0 + ROWS],
            zx: &x.zero[row0..row0 + ROWS],
            scale: &w.scale[col0..col0 + cols],
            colsum: &w.colsum[col0..col0 + cols],
            bias: base.map(|(b, _)| &b[col0..col0 + cols]),
            residual: base.and_then(|(_, r)| r).map(|(r, stride)| {
                assert!(r.len() >= (row0 + rows - 1) * stride + col0 + cols);
                (r.as_ptr().wrapping_add(row0 * stride + col0), stride)
            }),
            out: out.at(row0 * out_stride + col0),
            out_stride,
        };
        // SAFETY: the VNNI kernel is available (checked by `gemm`); the epilogue's slices are
        // sized above, its pointers lie in `out` and the residual (the caller's contract).
        return unsafe {
            vnni::kernel_epilogue(xs, x.kp, groups, tile(tiles.0), tile(tiles.1), &epi)
        };
    }
    let mut acc = [[0i32; 2 * TILE]; ROWS];
    micro_kernel(kernel, xs, x.kp, w, tiles, &mut acc);
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        let i = row0 + r;
        // SAFETY: row i, columns col0..col0+cols of `out` are within the view (the caller's
        // contract) and belong to this block alone.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.at(i * out_stride + col0), cols) };
        let scale = &w.scale[col0..col0 + cols];
        let colsum = &w.colsum[col0..col0 + cols];
        let (sx, zx) = (x.scale[i], x.zero[i]);
        let base = base.map(|(b, res)| {
            let res = res.map(|(r, stride)| &r[i * stride + col0..i * stride + col0 + cols]);
            (&b[col0..col0 + cols], res)
        });
        epilogue(kernel, dst, &acc_row[..cols], sx, zx, scale, colsum, base);
    }
}

/// `dst[c] += sx · scale[c] · (acc[c] - zx · colsum[c])`.
/// `dst[c] = base[c] + sx · scale[c] · (acc[c] - zx · colsum[c])`, where `base` is
/// `residual[c] + bias[c]` (or `bias[c]`) if given, else `dst` itself.
#[allow(clippy::too_many_arguments)]
fn epilogue(
    kernel: Kernel,
    dst: &mut [f32],
    acc: &[i32],
    sx: f32,
    zx: i32,
    scale: &[f32],
    colsum: &[i32],
    base: Option<(&[f32], Option<&[f32]>)>,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        // SAFETY: the VNNI kernel runs only where AVX-512F is available.
        return unsafe { vnni::epilogue(dst, acc, sx, zx, scale, colsum, base) };
    }
    let _ = kernel;
    for (c, d) in dst.iter_mut().enumerate() {
        let from = match base {
            Some((b, Some(r))) => r[c] + b[c],
            Some((b, None)) => b[c],
            None => *d,
        };
        *d = from + sx * scale[c] * (acc[c] - zx * colsum[c]) as f32;
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

/// Integer dot products of [`ROWS`] rows of `xs` with the columns of two tiles (the second may
/// repeat the first at the edge; its sums are then not read).
fn micro_kernel(
    kernel: Kernel,
    xs: &[u8],
    kp: usize,
    w: &QuantLinear,
    tiles: (usize, usize),
    acc: &mut [[i32; 2 * TILE]; ROWS],
) {
    let groups = w.groups();
    let tile = |t: usize| &w.packed[t * groups * TILE * GROUP..(t + 1) * groups * TILE * GROUP];
    let (w0, w1) = (tile(tiles.0), tile(tiles.1));
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` was checked by the caller; slices are sized as the kernel reads.
        Kernel::Vnni => unsafe { vnni::kernel(xs, kp, groups, w0, w1, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { avx2::kernel(xs, kp, groups, w0, w1, acc) },
        _ => scalar_kernel(xs, kp, groups, w0, w1, acc),
    }
}

fn scalar_kernel(
    xs: &[u8],
    kp: usize,
    groups: usize,
    w0: &[i8],
    w1: &[i8],
    acc: &mut [[i32; 2 * TILE]; ROWS],
) {
    for (r, acc_row) in acc.iter_mut().enumerate() {
        let x = &xs[r * kp..(r + 1) * kp];
        for g in 0..groups {
            for (half, w) in [w0, w1].into_iter().enumerate() {
                for c in 0..TILE {
                    let mut s = 0i32;
                    for q in 0..GROUP {
                        s += x[g * GROUP + q] as i32 * w[(g * TILE + c) * GROUP + q] as i32;
                    }
                    acc_row[half * TILE + c] += s;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{GROUP, ROWS, TILE};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F, BW and VNNI; `xs` holds [`ROWS`] rows of `kp` bytes and `w0`,
    /// `w1` hold `groups` × 64 bytes each.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn kernel(
        xs: &[u8],
        kp: usize,
        groups: usize,
        w0: &[i8],
        w1: &[i8],
        acc: &mut [[i32; 2 * TILE]; ROWS],
    ) {
        assert!(xs.len() >= ROWS * kp && w0.len() >= groups * 64 && w1.len() >= groups * 64);
        let mut a = [[_mm512_setzero_si512(); 2]; ROWS];
        let (xp, p0, p1) = (xs.as_ptr(), w0.as_ptr(), w1.as_ptr());
        for g in 0..groups {
            let b0 = _mm512_loadu_si512(p0.add(g * 64) as *const _);
            let b1 = _mm512_loadu_si512(p1.add(g * 64) as *const _);
            for (r, ar) in a.iter_mut().enumerate() {
                let v = (xp.add(r * kp + g * GROUP) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(v);
                ar[0] = _mm512_dpbusd_epi32(ar[0], x, b0);
                ar[1] = _mm512_dpbusd_epi32(ar[1], x, b1);
            }
        }
        for (r, ar) in a.iter().enumerate() {
            _mm512_storeu_si512(acc[r].as_mut_ptr() as *mut _, ar[0]);
            _mm512_storeu_si512(acc[r].as_mut_ptr().add(TILE) as *mut _, ar[1]);
        }
    }

    /// What [`kernel_epilogue`] writes: `rows` × `cols` outputs at `out` (rows `out_stride`
    /// apart), each `base + sx[r] · scale[c] · (acc - zx[r] · colsum[c])` with `base` the bias
    /// (plus the residual, rows `stride` apart) or, without a bias, `out`'s own value.
    pub struct Epilogue<'a> {
        pub rows: usize,
        pub cols: usize,
        pub sx: &'a [f32],
        pub zx: &'a [i32],
        pub scale: &'a [f32],
        pub colsum: &'a [i32],
        pub bias: Option<&'a [f32]>,
        pub residual: Option<(*const f32, usize)>,
        pub out: *mut f32,
        pub out_stride: usize,
    }

    /// [`kernel`] with the epilogue ([`super::epilogue`]'s arithmetic, in the same order) applied
    /// to the sums in registers.
    ///
    /// # Safety
    /// As [`kernel`]; `e`'s slices hold `rows` / `cols` values (at most [`ROWS`] / 2 ·
    /// [`TILE`]), and its pointers `rows` rows of `cols` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn kernel_epilogue(
        xs: &[u8],
        kp: usize,
        groups: usize,
        w0: &[i8],
        w1: &[i8],
        e: &Epilogue,
    ) {
        assert!(xs.len() >= ROWS * kp && w0.len() >= groups * 64 && w1.len() >= groups * 64);
        assert!(e.rows <= ROWS && e.cols <= 2 * TILE && e.sx.len() >= e.rows);
        assert!(e.zx.len() >= e.rows && e.scale.len() >= e.cols && e.colsum.len() >= e.cols);
        assert!(e.bias.is_none_or(|b| b.len() >= e.cols));
        let mut a = [[_mm512_setzero_si512(); 2]; ROWS];
        let (xp, p0, p1) = (xs.as_ptr(), w0.as_ptr(), w1.as_ptr());
        for g in 0..groups {
            let b0 = _mm512_loadu_si512(p0.add(g * 64) as *const _);
            let b1 = _mm512_loadu_si512(p1.add(g * 64) as *const _);
            for (r, ar) in a.iter_mut().enumerate() {
                let v = (xp.add(r * kp + g * GROUP) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(v);
                ar[0] = _mm512_dpbusd_epi32(ar[0], x, b0);
                ar[1] = _mm512_dpbusd_epi32(ar[1], x, b1);
            }
        }
        let mask = |c0: usize| -> __mmask16 {
            let left = e.cols.saturating_sub(c0).min(16);
            ((1u32 << left) - 1) as __mmask16
        };
        let m = [mask(0), mask(16)];
        let s = [
            _mm512_maskz_loadu_ps(m[0], e.scale.as_ptr()),
            _mm512_maskz_loadu_ps(m[1], e.scale.as_ptr().wrapping_add(16)),
        ];
        let cs = [
            _mm512_maskz_loadu_epi32(m[0], e.colsum.as_ptr()),
            _mm512_maskz_loadu_epi32(m[1], e.colsum.as_ptr().wrapping_add(16)),
        ];
        let b = e.bias.map(|b| {
            [
                _mm512_maskz_loadu_ps(m[0], b.as_ptr()),
                _mm512_maskz_loadu_ps(m[1], b.as_ptr().wrapping_add(16)),
            ]
        });
        for (r, ar) in a.iter().enumerate().take(e.rows) {
            let sxv = _mm512_set1_ps(*e.sx.get_unchecked(r));
            let zv = _mm512_set1_epi32(*e.zx.get_unchecked(r));
            let o = e.out.add(r * e.out_stride);
            for h in 0..2 {
                if m[h] == 0 {
                    break;
                }
                let k = _mm512_mullo_epi32(zv, cs[h]);
                let d = match (b, e.residual) {
                    (Some(b), None) => b[h],
                    (Some(b), Some((res, stride))) => _mm512_add_ps(
                        _mm512_maskz_loadu_ps(m[h], res.add(r * stride + 16 * h)),
                        b[h],
                    ),
                    (None, _) => _mm512_maskz_loadu_ps(m[h], o.add(16 * h)),
                };
                let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(ar[h], k));
                let y = _mm512_fmadd_ps(_mm512_mul_ps(v, s[h]), sxv, d);
                _mm512_mask_storeu_ps(o.add(16 * h), m[h], y);
            }
        }
    }

    /// [`super::quantize_row`] 16 lanes at a time.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and BW; `inv_smooth` and `dst` hold `row.len()` values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantize_row(row: &[f32], inv_smooth: &[f32], dst: &mut [u8]) -> (f32, i32) {
        let k = row.len();
        assert!(inv_smooth.len() >= k && dst.len() >= k);
        let mask_of = |c: usize| -> __mmask16 {
            let left = (k - c).min(16);
            if left == 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            }
        };
        let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut c = 0;
        while c < k {
            let m = mask_of(c);
            let v = _mm512_mul_ps(
                _mm512_maskz_loadu_ps(m, row.as_ptr().add(c)),
                _mm512_maskz_loadu_ps(m, inv_smooth.as_ptr().add(c)),
            );
            // Masked-off lanes are 0, which [min, max] holds anyway.
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            c += 16;
        }
        let (min, max) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
        let (s, zp) = super::row_scale(min, max);
        let (inv, add) = (_mm512_set1_ps(1.0 / s), _mm512_set1_ps(zp + 0.5));
        let (zero, top) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let mut c = 0;
        while c < k {
            let m = mask_of(c);
            let v = _mm512_mul_ps(
                _mm512_maskz_loadu_ps(m, row.as_ptr().add(c)),
                _mm512_maskz_loadu_ps(m, inv_smooth.as_ptr().add(c)),
            );
            let t = _mm512_add_ps(_mm512_mul_ps(v, inv), add);
            let t = _mm512_min_ps(_mm512_max_ps(t, zero), top);
            let q = _mm512_cvttps_epi32(t);
            _mm512_mask_cvtusepi32_storeu_epi8(dst.as_mut_ptr().add(c) as *mut _, m, q);
            c += 16;
        }
        (s, zp as i32)
    }

    /// The epilogue 16 columns at a time, masked at the edge.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; all slices have `dst.len()` elements.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn epilogue(
        dst: &mut [f32],
        acc: &[i32],
        sx: f32,
        zx: i32,
        scale: &[f32],
        colsum: &[i32],
        base: Option<(&[f32], Option<&[f32]>)>,
    ) {
        let n = dst.len();
        assert!(acc.len() >= n && scale.len() >= n && colsum.len() >= n);
        assert!(base.is_none_or(|(b, r)| b.len() >= n && r.is_none_or(|r| r.len() >= n)));
        let sxv = _mm512_set1_ps(sx);
        let zv = _mm512_set1_epi32(zx);
        let mut c = 0;
        while c < n {
            let left = (n - c).min(16);
            let mask: __mmask16 = if left == 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            let a = _mm512_maskz_loadu_epi32(mask, acc.as_ptr().add(c));
            let k = _mm512_mullo_epi32(zv, _mm512_maskz_loadu_epi32(mask, colsum.as_ptr().add(c)));
            let s = _mm512_maskz_loadu_ps(mask, scale.as_ptr().add(c));
            let d = match base {
                Some((b, None)) => _mm512_maskz_loadu_ps(mask, b.as_ptr().add(c)),
                Some((b, Some(r))) => _mm512_add_ps(
                    _mm512_maskz_loadu_ps(mask, r.as_ptr().add(c)),
                    _mm512_maskz_loadu_ps(mask, b.as_ptr().add(c)),
                ),
                None => _mm512_maskz_loadu_ps(mask, dst.as_ptr().add(c)),
            };
            let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(a, k));
            let y = _mm512_fmadd_ps(_mm512_mul_ps(v, s), sxv, d);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(c), mask, y);
            c += 16;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{GROUP, ROWS, TILE};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2; sizes as for the VNNI kernel.
    #[target_feature(enable = "avx2")]
    pub unsafe fn kernel(
        xs: &[u8],
        kp: usize,
        groups: usize,
        w0: &[i8],
        w1: &[i8],
        acc: &mut [[i32; 2 * TILE]; ROWS],
    ) {
        assert!(xs.len() >= ROWS * kp && w0.len() >= groups * 64 && w1.len() >= groups * 64);
        // Four columns × four k per 16-byte quarter of a group; widened to i16, `vpmaddwd` sums
        // adjacent pairs into i32 (at most 2 · 255 · 127: no saturation), and `vphaddd` folds
        // the two pair sums of each column.
        for (half, w) in [w0, w1].into_iter().enumerate() {
            for quarter in 0..4 {
                let mut a = [_mm256_setzero_si256(); ROWS];
                for g in 0..groups {
                    let wb = _mm_loadu_si128(w.as_ptr().add(g * 64 + quarter * 16) as *const _);
                    let wv = _mm256_cvtepi8_epi16(wb);
                    for (r, ar) in a.iter_mut().enumerate() {
                        let v =
                            (xs.as_ptr().add(r * kp + g * GROUP) as *const i32).read_unaligned();
                        let xb = _mm_set1_epi32(v);
                        let xv = _mm256_cvtepu8_epi16(xb);
                        *ar = _mm256_add_epi32(*ar, _mm256_madd_epi16(xv, wv));
                    }
                }
                for (r, ar) in a.iter().enumerate() {
                    // Lanes: (c0: 2 pair sums), (c1: 2), (c2: 2), (c3: 2) in 128-bit halves.
                    let mut lanes = [0i32; 8];
                    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, *ar);
                    for c in 0..4 {
                        acc[r][half * TILE + quarter * 4 + c] += lanes[2 * c] + lanes[2 * c + 1];
                    }
                }
            }
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
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// Σ_k (q_x - z) q_w · scales, straight from the quantised values.
    fn reference(x: &QuantRows, w: &QuantLinear, i: usize, j: usize) -> f32 {
        let mut s = 0i32;
        for kk in 0..w.k {
            s += (x.data[i * x.kp + kk] as i32 - x.zero[i]) * w.q(j, kk) as i32;
        }
        x.scale[i] * w.scale[j] * s as f32
    }

    /// Every kernel this CPU has gives the scalar reference's integers exactly, at shapes with
    /// partial row blocks, partial tiles and k not a multiple of 4; and the quantised product is
    /// close to the f32 one.
    #[test]
    fn kernels_match_the_reference_exactly() {
        for (m, n, k) in [(1, 1, 1), (13, 37, 30), (8, 32, 64), (21, 70, 387)] {
            let x = pseudo(m * k, 1 + m as u64);
            let wf = pseudo(n * k, 2 + n as u64);
            let w = QuantLinear::new(&wf, n, k);
            let q = quantize_rows(&x, m, k, k, &w);
            for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Vnni] {
                if !kernel.available() {
                    eprintln!("{kernel:?}: not on this CPU");
                    continue;
                }
                let bias = 0.25f32;
                let mut out = vec![bias; m * n];
                gemm_accumulate(&q, &w, &mut out, n, kernel);
                for i in 0..m {
                    for j in 0..n {
                        let want = bias + reference(&q, &w, i, j);
                        let got = out[i * n + j];
                        assert!(
                            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{kernel:?} {m}x{n}x{k} at ({i},{j}): {got} vs {want}"
                        );
                        let exact: f32 = (0..k).map(|kk| x[i * k + kk] * wf[j * k + kk]).sum();
                        let scale = (k as f32).sqrt() * 2.0;
                        assert!(
                            (got - bias - exact).abs() < 0.05 * scale,
                            "{m}x{n}x{k} at ({i},{j}): int8 {got} vs f32 {exact}"
                        );
                    }
                }
            }
        }
    }

    /// The AVX-512 row quantisation gives the scalar one's bytes, scale and zero point.
    #[test]
    fn row_quantisation_is_the_same_at_any_width() {
        if !Kernel::Vnni.available() {
            eprintln!("no AVX-512 here, SKIPPED");
            return;
        }
        for k in [1, 15, 16, 17, 64, 387, 768] {
            let row: Vec<f32> = pseudo(k, k as u64).iter().map(|v| v * 3.0 + 0.4).collect();
            let smooth: Vec<f32> = pseudo(k, 99).iter().map(|v| 0.5 + v.abs()).collect();
            let (mut a, mut b) = (vec![0u8; k], vec![0u8; k]);
            let sa = quantize_row(&row, &smooth, &mut a, false);
            let sb = quantize_row(&row, &smooth, &mut b, true);
            assert_eq!(sa, sb, "k = {k}");
            assert_eq!(a, b, "k = {k}");
            assert!(
                k == 1 || a.iter().any(|&q| q != a[0]),
                "k = {k}: all bytes equal"
            );
        }
    }

    /// Overwriting with the bias gives what filling with the bias and accumulating gives, bit
    /// for bit, whatever `out` held before.
    #[test]
    fn bias_epilogue_equals_fill_then_accumulate() {
        let (m, n, k) = (19, 45, 70);
        let x = pseudo(m * k, 11);
        let w = QuantLinear::new(&pseudo(n * k, 12), n, k);
        let bias = pseudo(n, 13);
        let q = quantize_rows(&x, m, k, k, &w);
        for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Vnni] {
            if !kernel.available() {
                continue;
            }
            let mut filled: Vec<f32> = (0..m).flat_map(|_| bias.iter().copied()).collect();
            gemm_accumulate(&q, &w, &mut filled, n, kernel);
            let mut direct = vec![f32::NAN; m * n];
            gemm_bias(&q, &w, &bias, None, &mut direct, n, kernel);
            assert_eq!(filled, direct, "{kernel:?}");
            // With a residual (rows 2n apart): (residual + bias) first, as the fill pass adds.
            let res = pseudo(m * 2 * n, 14);
            let mut filled: Vec<f32> = (0..m * n)
                .map(|i| res[(i / n) * 2 * n + i % n] + bias[i % n])
                .collect();
            gemm_accumulate(&q, &w, &mut filled, n, kernel);
            let mut direct = vec![f32::NAN; m * n];
            gemm_bias(&q, &w, &bias, Some((&res, 2 * n)), &mut direct, n, kernel);
            assert_eq!(filled, direct, "{kernel:?} with a residual");
        }
    }

    /// The fused GEMM → post → quantisation gives, bit for bit, what the three passes give:
    /// the outputs (with the post applied) and the next linear's quantised rows, at a row
    /// count that ends inside a chunk and a row block, with a residual.
    #[test]
    fn post_and_quantise_equal_the_separate_passes() {
        let (m, n, k, n2) = (45, 70, 40, 33);
        let x = pseudo(m * k, 21);
        let w = QuantLinear::new(&pseudo(n * k, 22), n, k);
        let next = QuantLinear::new(&pseudo(n2 * n, 23), n2, n);
        let bias = pseudo(n, 24);
        let res = pseudo(m * n, 25);
        let q = quantize_rows(&x, m, k, k, &w);
        let post = |row: &mut [f32]| row.iter_mut().for_each(|v| *v = v.max(0.0) * 0.5 - 0.1);
        for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Vnni] {
            if !kernel.available() {
                continue;
            }
            let mut want = vec![0f32; m * n];
            gemm_bias(&q, &w, &bias, Some((&res, n)), &mut want, n, kernel);
            want.chunks_exact_mut(n).for_each(post);
            let want_q = quantize_rows(&want, m, n, n, &next);
            let mut got = vec![f32::NAN; m * n];
            let res = Some((&res[..], n));
            let got_q = gemm_bias_post(&q, &w, &bias, res, &mut got, n, kernel, &post, Some(&next))
                .expect("quantised rows");
            assert_eq!(got, want, "{kernel:?}");
            assert_eq!(got_q.data, want_q.data, "{kernel:?}");
            assert_eq!((&got_q.scale, &got_q.zero), (&want_q.scale, &want_q.zero));
            let mut only = vec![f32::NAN; m * n];
            assert!(
                gemm_bias_post(&q, &w, &bias, res, &mut only, n, kernel, &post, None).is_none()
            );
            assert_eq!(only, want, "{kernel:?} without quantising");
        }
    }

    /// Relative L2 error of the int8 product `x wᵀ` (m, k) · (n, k) against f32.
    fn int8_error(x: &[f32], wf: &[f32], w: &QuantLinear, m: usize, n: usize, k: usize) -> f32 {
        let kernel = Kernel::detect().unwrap_or(Kernel::Scalar);
        let q = quantize_rows(x, m, k, k, w);
        let mut out = vec![0f32; m * n];
        gemm_accumulate(&q, w, &mut out, n, kernel);
        let (mut err, mut norm) = (0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|kk| x[i * k + kk] * wf[j * k + kk]).sum();
                err += ((out[i * n + j] - exact) as f64).powi(2);
                norm += (exact as f64).powi(2);
            }
        }
        (err / norm).sqrt() as f32
    }

    /// Activations as BERT's LayerNorm outputs have them: most channels within ±2, three
    /// outlier channels 15-30× larger in every row. Smoothing calibrated on other rows of the
    /// same kind cuts the error of the product by more than half, and asymmetric rows beat
    /// symmetric ones on a one-sided (GELU-like) input.
    #[test]
    fn smoothing_beats_plain_int8_on_outlier_channels() {
        let (m, n, k) = (64, 48, 96);
        let outliers = [(7, 30.0), (40, -20.0), (77, 15.0)];
        let acts = |seed| {
            let mut x = pseudo(m * k, seed);
            for row in x.chunks_exact_mut(k) {
                for &(c, v) in &outliers {
                    row[c] = v * (1.0 + 0.1 * row[c]);
                }
            }
            x
        };
        let (calib, x) = (acts(11), acts(12));
        let wf: Vec<f32> = pseudo(n * k, 13).iter().map(|v| v * 0.05).collect();
        let plain = QuantLinear::new(&wf, n, k);
        plain.observe();
        let _ = quantize_rows(&calib, m, k, k, &plain);
        let x_max = plain.observed().expect("observing");
        assert!(plain.observed().is_none(), "observed() stops observing");
        for &(c, v) in &outliers {
            assert!(x_max[c] >= 0.8 * f32::abs(v), "channel {c}: {}", x_max[c]);
        }
        let smooth = QuantLinear::smoothed(&wf, n, k, Some(&x_max));
        let (e_plain, e_smooth) = (
            int8_error(&x, &wf, &plain, m, n, k),
            int8_error(&x, &wf, &smooth, m, n, k),
        );
        eprintln!("relative error: plain {e_plain:.5}, smoothed {e_smooth:.5}");
        assert!(e_smooth < 0.5 * e_plain, "{e_smooth} vs {e_plain}");

        // One-sided rows: GELU outputs lie in [-0.17, ∞).
        let gelu: Vec<f32> = pseudo(m * k, 14)
            .iter()
            .map(|&v| {
                let v = v * 1.5;
                0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v * v * v)).tanh())
            })
            .collect();
        let e = int8_error(&gelu, &wf, &plain, m, n, k);
        // The same rows quantised symmetrically (step max|x| / 127, the scheme before), with
        // the same int8 weights, as the reference for what asymmetric rows gain.
        let sym: Vec<f32> = gelu
            .chunks_exact(k)
            .flat_map(|row| {
                let s = row.iter().fold(0f32, |a, &b| a.max(b.abs())) / 127.0;
                row.iter().map(move |&v| (v / s).round() * s)
            })
            .collect();
        let wq: Vec<f32> = (0..n * k)
            .map(|i| plain.q(i / k, i % k) as f32 * plain.scale[i / k])
            .collect();
        let (mut err, mut norm) = (0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let dot = |a: &[f32], b: &[f32]| -> f32 {
                    (0..k).map(|kk| a[i * k + kk] * b[j * k + kk]).sum()
                };
                let exact = dot(&gelu, &wf);
                err += ((dot(&sym, &wq) - exact) as f64).powi(2);
                norm += (exact as f64).powi(2);
            }
        }
        let e_sym = (err / norm).sqrt() as f32;
        eprintln!("one-sided rows: relative error {e:.5} (symmetric rows: {e_sym:.5})");
        assert!(e < 0.8 * e_sym, "one-sided rows: {e} vs symmetric {e_sym}");
    }

    /// Extreme values: every activation and weight at the limits of its range, where a kernel
    /// that saturates (u8 × i8 pairs in i16) would be wrong.
    #[test]
    fn no_saturation_at_the_extremes() {
        let (m, n, k) = (8, 16, 256);
        let x = vec![1.0f32; m * k];
        let wf: Vec<f32> = (0..n * k)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.5 })
            .collect();
        let w = QuantLinear::new(&wf, n, k);
        let q = quantize_rows(&x, m, k, k, &w);
        for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Vnni] {
            if !kernel.available() {
                continue;
            }
            let mut out = vec![0f32; m * n];
            gemm_accumulate(&q, &w, &mut out, n, kernel);
            let want = 0.75 * k as f32;
            for v in &out {
                assert!((v - want).abs() < 0.01 * want, "{kernel:?}: {v} vs {want}");
            }
        }
    }
}
