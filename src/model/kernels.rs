//! The element-wise and row-wise kernels of [`super::cpu_encoder`], the CPU f32 inference
//! path: GELU in both forms, masked softmax and LayerNorm, in place on slices. Their `exp`,
//! `tanh` and `erf` avoid libm calls so that the loops vectorise, and `simd_fn!` compiles
//! each kernel for AVX2 + FMA as well, picked at run time. Everything else (training, GPUs,
//! other dtypes) runs candle's ops; the parity tests hold both paths to transformers at 1e-4.

/// Elements per parallel work item.
pub(crate) const CHUNK: usize = 16 * 1024;

/// x rounded to the nearest integer n, as f32 and as i32, without libm or a float-to-int cast,
/// for |x| < 2^22: adding 1.5 · 2^23 leaves n in the low mantissa bits (the sum's ulp is 1).
/// Rust's saturating `as i32` does not vectorise and kept the loops over [`exp_fast`] scalar.
#[inline(always)]
fn round_split(x: f32) -> (f32, i32) {
    const ROUND: f32 = 12_582_912.0;
    let shifted = x + ROUND;
    (
        shifted - ROUND,
        shifted.to_bits() as i32 - ROUND.to_bits() as i32,
    )
}

/// e^x for f32 without a libm call, so loops over it vectorise: x = n ln 2 + r with |r| <= ln2/2,
/// e^r by its degree-6 Taylor polynomial (relative error below 2e-7 over that range), and 2^n
/// put straight into the exponent bits. Inputs are clamped to [-87, 88], where f32 e^x neither
/// overflows nor goes subnormal.
#[inline(always)]
fn exp_fast(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let (n, n_int) = round_split(x * LOG2_E);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// tanh(u) = 1 - 2 / (e^{2u} + 1): with [`exp_fast`], within 3e-7 of libm's tanhf and several
/// times faster.
#[inline(always)]
fn tanh_fast(u: f32) -> f32 {
    1.0 - 2.0 / (exp_fast(2.0 * u) + 1.0)
}

/// e^x, 16 lanes: x = n ln 2 + r (n rounded to nearest, |r| ≤ ln2 / 2), e^r by its degree-6
/// Taylor polynomial in FMA form and 2^n applied by `vscalefps` (which gives 0 and ∞ at the
/// ends instead of wrapping the exponent). Inputs are clamped to [-104, 89]: below, the result
/// is 0 or subnormal in f32 anyway. Relative error below 3e-7 where the result is normal.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-104.0)),
        _mm512_set1_ps(89.0),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// GELU, tanh form (`gelu_new`).
#[inline]
pub(crate) fn gelu_tanh_scalar(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh_fast(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
}

/// erf(z) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7) with [`exp_fast`]: no
/// libm call, so loops over it vectorise.
#[inline(always)]
fn erf_fast(z: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp_fast(-a * a);
    y.copysign(z)
}

/// GELU, exact (erf) form (`gelu`): 0.5 x (1 + erf(x / √2)).
#[inline]
pub(crate) fn gelu_erf_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_fast(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Defines a function whose body is compiled twice, for the crate's baseline target (SSE2 on
/// x86-64) and with AVX2 + FMA, and picks the second at run time when the CPU has them: the
/// loops below then vectorise 8 wide. The arithmetic is the same in both (no FMA contraction).
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Lanes for reductions written so that they vectorise (f32 sums do not reorder on their own).
const LANES: usize = 8;

#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let tail = chunks.remainder().iter().copied();
    acc.into_iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, f32::max)
}

#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    acc.iter().sum::<f32>() + tail
}

simd_fn! {
    /// softmax(row + mask) in place for each `len`-long row of `scores` (attention scores
    /// already scaled; `mask` additive, `len` long). Keys masked with the reference's
    /// `finfo.min` get exactly zero weight.
    pub(crate) fn masked_softmax_rows(scores: &mut [f32], len: usize, mask: &[f32]) {
        for row in scores.chunks_exact_mut(len) {
            for (v, &m) in row.iter_mut().zip(mask) {
                *v += m;
            }
            let max = lane_max(row);
            for v in row.iter_mut() {
                let d = *v - max;
                // exp_fast clamps at -87 (e^-87 = 1.6e-38); below that f32's e^d is 0 anyway.
                *v = if d < -87.0 { 0.0 } else { exp_fast(d) };
            }
            let inv = 1.0 / lane_sum(row, |v| v);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

simd_fn! {
    /// GELU, tanh form, in place, without AVX-512.
    fn gelu_tanh_in_place_simd(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = gelu_tanh_scalar(*v);
        }
    }
}

simd_fn! {
    /// GELU, erf form, in place, without AVX-512.
    fn gelu_erf_in_place_simd(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = gelu_erf_scalar(*v);
        }
    }
}

/// A pointer that parallel tasks may share, each writing its own disjoint region of the buffer
/// behind it (which outlives the tasks): attention's (rows, head columns) blocks in
/// [`super::cpu_encoder`], GEMM panels' columns in [`super::dequant`].
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: the users write disjoint regions only, as above.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Through a method, so closures capture the wrapper (Send) and not the bare pointer.
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Whether the AVX-512 element-wise kernels run here.
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// GELU, tanh form, in place: 16 lanes with [`exp512`] where the CPU has AVX-512F (within
/// 3e-6 of the exact value, relative, and of [`gelu_tanh_scalar`] within its rounding), else [`gelu_tanh_scalar`] 8 lanes wide.
pub(crate) fn gelu_tanh_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { x86::gelu_in_place::<true>(x) };
    }
    gelu_tanh_in_place_simd(x)
}

/// GELU, erf form, in place: 16 lanes where the CPU has AVX-512F (within 1e-6 of
/// [`gelu_erf_scalar`], relative, plus 2e-7), else [`gelu_erf_scalar`] 8 lanes wide.
pub(crate) fn gelu_erf_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { x86::gelu_in_place::<false>(x) };
    }
    gelu_erf_in_place_simd(x)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// GELU in place, tanh form (`TANH`) or erf form, 16 lanes at a time (masked at the end).
    ///
    /// - tanh form: 0.5 x (1 + tanh u) = x / (1 + e^{-2u}), u = √(2/π) (x + 0.044715 x³):
    ///   one exp and one division; e^{-2u} → ∞ gives -0 and → 0 gives x, as the scalar.
    /// - erf form: Abramowitz & Stegun 7.1.26 as [`super::erf_fast`].
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_in_place<const TANH: bool>(x: &mut [f32]) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let one = _mm512_set1_ps(1.0);
        let mut c = 0;
        while c < n {
            let left = (n - c).min(16);
            let m: __mmask16 = if left == 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            let v = _mm512_maskz_loadu_ps(m, p.add(c));
            let y = if TANH {
                let x3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
                let inner = _mm512_fmadd_ps(_mm512_set1_ps(0.044715), x3, v);
                let t = _mm512_mul_ps(inner, _mm512_set1_ps(-2.0 * 0.797_884_6));
                let e = super::exp512(t);
                _mm512_div_ps(v, _mm512_add_ps(one, e))
            } else {
                const P: f32 = 0.327_591_1;
                const A: [f32; 5] = [
                    0.254_829_6,
                    -0.284_496_72,
                    1.421_413_8,
                    -1.453_152_1,
                    1.061_405_4,
                ];
                let z = _mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
                let a = _mm512_abs_ps(z);
                let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(P), a, one));
                let mut poly = _mm512_set1_ps(A[4]);
                for &coef in A[..4].iter().rev() {
                    poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(coef));
                }
                poly = _mm512_mul_ps(poly, t);
                let e = super::exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a));
                let erf_abs = _mm512_fnmadd_ps(poly, e, one);
                // erf(z) carries z's sign: x · (1 + erf(z)) / 2.
                let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
                let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
                _mm512_mul_ps(
                    _mm512_mul_ps(_mm512_set1_ps(0.5), v),
                    _mm512_add_ps(one, erf),
                )
            };
            _mm512_mask_storeu_ps(p.add(c), m, y);
            c += 16;
        }
    }
}

simd_fn! {
    /// LayerNorm (biased variance, eps inside the root, as torch) over each `weight.len()`-long
    /// row of `x`, in place.
    pub(crate) fn layer_norm_rows(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let h = weight.len();
        for row in x.chunks_exact_mut(h) {
            let mean = lane_sum(row, |v| v) / h as f32;
            let var = lane_sum(row, |v| (v - mean) * (v - mean)) / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, &w), &b) in row.iter_mut().zip(weight).zip(bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>());
        d.expect("comparable tensors")
    }

    /// `kernel` applied to a copy of `x`'s values.
    fn in_place(x: &Tensor, kernel: fn(&mut [f32])) -> Tensor {
        let mut v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        kernel(&mut v);
        Tensor::from_vec(v, x.shape(), x.device()).unwrap()
    }

    /// The integer read from the rounding constant's bits is the rounded value itself (what
    /// `n as i32` gave before), over every input `exp_fast` passes and beyond.
    #[test]
    fn round_split_matches_the_cast() {
        let grid = (-400_000..=400_000).map(|i| i as f32 * 0.000_37);
        for x in grid.chain([-4e6, -127.5, -126.5, -0.5, 0.5, 127.5, 4e6]) {
            let (n, n_int) = round_split(x);
            assert_eq!(n_int, n as i32, "round_split({x})");
            assert!((x - n).abs() <= 0.5, "round_split({x}) = {n}");
        }
    }

    /// The AVX-512 exp against f64 over the range softmax and GELU use, and at the ends.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn exp_is_accurate() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("SKIPPED: no AVX-512F");
            return;
        }
        let xs: Vec<f32> = (-87_000..=88_000)
            .step_by(7)
            .map(|i| i as f32 * 0.001)
            .chain([
                -1000.0,
                -104.0,
                0.0,
                89.0,
                1000.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ])
            .collect();
        for c in xs.chunks(16) {
            let mut a = [0f32; 16];
            a[..c.len()].copy_from_slice(c);
            let mut out = [0f32; 16];
            // SAFETY: AVX-512F checked above.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), exp512(_mm512_loadu_ps(a.as_ptr()))) };
            for (&x, &e) in a.iter().zip(&out).take(c.len()) {
                let want = (x as f64).exp();
                if want > f32::MAX as f64 {
                    assert_eq!(e, f32::INFINITY, "exp({x})");
                } else if want < 1e-37 {
                    assert!((0.0..1e-37).contains(&e), "exp({x}) = {e}");
                } else {
                    assert!(
                        ((e as f64 - want) / want).abs() < 3e-7,
                        "exp({x}) = {e} vs {want}"
                    );
                }
            }
        }
    }

    /// The AVX-512 GELUs against the scalar forms, at lengths with a masked tail.
    #[test]
    fn avx512_gelu_matches_the_scalar() {
        if !avx512() {
            eprintln!("SKIPPED: no AVX-512F");
            return;
        }
        let xs: Vec<f32> = (-120_000..=120_000)
            .map(|i| i as f32 * 0.0001)
            .chain([-100.0, -30.0, 30.0, 100.0, 0.0])
            .collect();
        for len in [xs.len(), 37, 5] {
            let x = &xs[xs.len() - len..];
            let mut t = x.to_vec();
            gelu_tanh_in_place(&mut t);
            let mut e = x.to_vec();
            gelu_erf_in_place(&mut e);
            for ((&x, &t), &e) in x.iter().zip(&t).zip(&e) {
                // The tanh form against f64 (the scalar's 1 - 2 / (e^2u + 1) cancels to 0
                // below x ≈ -5, where the value is still -1e-7), and within the scalar's own rounding of it.
                let xd = x as f64;
                let u = 0.797_884_560_802_865_4 * (xd + 0.044715 * xd * xd * xd);
                let exact = 0.5 * xd * (1.0 + u.tanh());
                // Relative 3e-6: f32 rounding of u (~8 at the far left) moves e^{2u} by 2u · 6e-8.
                let rel = 3e-6 * exact.abs() + 1e-12;
                assert!(
                    (t as f64 - exact).abs() <= rel,
                    "tanh gelu({x}): {t} vs {exact}"
                );
                let wt = gelu_tanh_scalar(x);
                let slack = 1e-6 * wt.abs() + 1.2e-7 * x.abs().max(1.0);
                assert!((t - wt).abs() <= slack, "tanh gelu({x}): {t} vs {wt}");
                let we = gelu_erf_scalar(x);
                assert!(
                    (e - we).abs() <= 1e-6 * we.abs() + 2e-7,
                    "erf gelu({x}): {e} vs {we}"
                );
            }
        }
    }

    #[test]
    fn tanh_gelu_matches_candle_gelu() {
        let x = Tensor::randn(0f32, 3.0, (7, 1000), &Device::Cpu).unwrap();
        let diff = max_abs_diff(&in_place(&x, gelu_tanh_in_place), &x.gelu().unwrap());
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
        let mut big = [-100f32, -20.0, 0.0, 20.0, 100.0];
        gelu_tanh_in_place(&mut big);
        assert_eq!(big, [-0.0, -0.0, 0.0, 20.0, 100.0]);
    }

    #[test]
    fn erf_gelu_matches_candle_gelu_erf() {
        let x = Tensor::randn(0f32, 3.0, (7, 1000), &Device::Cpu).unwrap();
        let diff = max_abs_diff(&in_place(&x, gelu_erf_in_place), &x.gelu_erf().unwrap());
        assert!(diff < 1e-6, "{diff}");
        for (x, want) in [(-30f32, 0.0f32), (0.0, 0.0), (30.0, 30.0)] {
            assert_eq!(gelu_erf_scalar(x), want, "gelu({x})");
        }
    }

    #[test]
    fn masked_softmax_matches_candle_softmax() {
        let dev = Device::Cpu;
        // Rows of 13 (not a multiple of the 8 lanes, so the tail is exercised).
        let scores = Tensor::randn(0f32, 4.0, (5, 13), &dev).unwrap();
        let mask: Vec<f32> = (0..13)
            .map(|j| if j == 3 || j >= 11 { f32::MIN } else { 0.0 })
            .collect();
        let mask_t = Tensor::new(mask.as_slice(), &dev).unwrap();
        let reference =
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask_t).unwrap()).unwrap();
        let mut fast = scores.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        masked_softmax_rows(&mut fast, 13, &mask);
        let fast = Tensor::from_vec(fast, (5, 13), &dev).unwrap();
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff < 1e-6, "{diff}");
        // Masked keys get exactly no weight.
        for row in fast.to_vec2::<f32>().unwrap() {
            assert_eq!((row[3], row[11], row[12]), (0.0, 0.0, 0.0));
        }
    }

    #[test]
    fn layer_norm_matches_candle_layer_norm() {
        let dev = Device::Cpu;
        let x = Tensor::randn(1f32, 2.0, (6, 21), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.3, 21, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.3, 21, &dev).unwrap();
        let reference = candle_nn::ops::layer_norm_slow(&x, &w, &b, 1e-12).unwrap();
        let mut fast = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (wv, bv) = (w.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        layer_norm_rows(&mut fast, &wv, &bv, 1e-12);
        let fast = Tensor::from_vec(fast, (6, 21), &dev).unwrap();
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff < 2e-6, "{diff}");
    }
}
