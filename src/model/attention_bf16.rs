//! Attention's two products for one (sequence, head) with AVX512-BF16's `vdpbf16ps`, for the
//! int8 path (`--dtype int8`): Q Kᵀ and P V take bf16 inputs with f32 sums (as the bf16 path's
//! attention does, and PyTorch's CPU autocast), twice the f32 FMA rate; the scale, mask and
//! softmax stay f32. Used where the CPU has AVX512-BF16 and the head size is a multiple of 16
//! (at most 128); elsewhere int8 layers keep [`super::attention512`]'s f32 kernels.
//!
//! Per head, K and V are rounded and packed once: Kᵀ in tiles of 16 keys × pairs of head
//! columns, V in tiles of 16 head columns × pairs of keys, the layout of
//! [`super::bf16`]'s weights (one 32-bit lane holds a pair, and a broadcast pair of the other
//! operand feeds 16 lanes). Then per block of [`BLOCK`] queries:
//!
//! - scores = scale · Q Kᵀ + mask, 12 queries × 32 keys in 24 registers, scaled and masked in
//!   registers before the one store;
//! - per row: the max, then `e = exp(s - max)` (AVX-512, [`super::kernels::exp512`]) summed in f32 and stored
//!   as bf16 (unnormalised);
//! - context = (e V) / Σ e: the division is applied to the head-size outputs, not the keys.

use super::bf16;

/// Queries per block: the rows of the scores micro-kernel.
const BLOCK: usize = 12;
/// Keys per scores micro-kernel call (two tiles of 16).
const KEYS: usize = 32;

/// Whether the kernel can run here for head size `dh`.
pub fn available(dh: usize) -> bool {
    dh.is_multiple_of(16)
        && (16..=128).contains(&dh)
        && bf16::Kernel::Avx512Bf16.available()
        && cfg!(target_arch = "x86_64")
}

/// Scratch reused across heads by one worker.
#[derive(Default)]
pub struct Scratch {
    /// Packed Kᵀ: (keys / 16) tiles × (dh / 2) pairs × 16 keys × 2.
    k: Vec<u16>,
    /// Packed V: (dh / 16) tiles × (keys / 2) pairs × 16 columns × 2.
    v: Vec<u16>,
    /// The block's queries in bf16, [`BLOCK`] rows of `dh`.
    q: Vec<u16>,
    /// The block's scores, [`BLOCK`] rows of the padded key count.
    scores: Vec<f32>,
    /// exp(s - max) in bf16, [`BLOCK`] rows of the padded key count (padding 0).
    p: Vec<u16>,
    /// The mask padded with -∞ to the padded key count.
    mask: Vec<f32>,
}

/// One head's attention for `nq` queries over `nk` keys, written to `ctx`.
///
/// # Safety
/// [`available`]`(dh)` must hold. `q` points at the first query's head columns (rows `q_row`
/// apart), `k` and `v` at the first key's (rows `kv_row` apart), `ctx` at the first context
/// row's (rows `ctx_row` apart); all `nq` / `nk` rows of `dh` values must be valid, and `ctx`'s
/// rows must not be touched by anyone else meanwhile. `mask` holds `nk` additive values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn head(
    q: *const f32,
    q_row: usize,
    k: *const f32,
    v: *const f32,
    kv_row: usize,
    ctx: *mut f32,
    ctx_row: usize,
    nq: usize,
    nk: usize,
    dh: usize,
    mask: &[f32],
    scale: f32,
    s: &mut Scratch,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        x86::head(
            q, q_row, k, v, kv_row, ctx, ctx_row, nq, nk, dh, mask, scale, s,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (
            q, q_row, k, v, kv_row, ctx, ctx_row, nq, nk, dh, mask, scale, s,
        );
        unreachable!("attention_bf16 runs on x86_64 only");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::kernels;
    use super::{Scratch, BLOCK, KEYS};
    use std::arch::x86_64::*;

    /// 16 f32 → 16 bf16 (round to nearest even), as 16 bits in each 32-bit lane's low half.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn bf16_lanes(v: __m512) -> __m512i {
        let h: __m256i = unsafe { std::mem::transmute(_mm512_cvtneps_pbh(v)) };
        _mm512_cvtepu16_epi32(h)
    }

    /// Lanes of 16 bits, `lo` in the low half of each 32-bit lane and `hi` in the high half.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn pairs(lo: __m512, hi: __m512) -> __m512i {
        _mm512_or_si512(bf16_lanes(lo), _mm512_slli_epi32::<16>(bf16_lanes(hi)))
    }

    /// f32 values at `src` (`n` of them, `n` ≤ 16) in bf16 at `dst` (16 values; 0 past `n`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn round16(src: *const f32, n: usize, dst: *mut u16) {
        let m: __mmask16 = if n >= 16 { 0xffff } else { (1u16 << n) - 1 };
        let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src)));
        _mm256_storeu_si256(dst as *mut __m256i, h);
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn head(
        q: *const f32,
        q_row: usize,
        k: *const f32,
        v: *const f32,
        kv_row: usize,
        ctx: *mut f32,
        ctx_row: usize,
        nq: usize,
        nk: usize,
        dh: usize,
        mask: &[f32],
        scale: f32,
        s: &mut Scratch,
    ) {
        assert!(mask.len() >= nk && dh.is_multiple_of(16) && dh <= 128);
        if nq == 0 || nk == 0 {
            return;
        }
        let nkp = nk.div_ceil(KEYS) * KEYS;
        let dpairs = dh / 2;
        // Kᵀ: tile t of 16 keys, pair p of columns, key c: lane (t · dpairs + p) · 16 + c.
        s.k.clear();
        s.k.resize(nkp * dh, 0);
        let kl = s.k.as_mut_ptr() as *mut u32;
        let mut row = [0u16; 128];
        for j in 0..nk {
            let src = k.add(j * kv_row);
            for c in (0..dh).step_by(16) {
                round16(src.add(c), 16, row.as_mut_ptr().add(c));
            }
            let rp = row.as_ptr() as *const u32;
            let base = kl.add((j / 16) * dpairs * 16 + j % 16);
            for p in 0..dpairs {
                *base.add(p * 16) = *rp.add(p);
            }
        }
        // V: tile t of 16 columns, pair kk of keys, column c: lane (t · kpairs + kk) · 16 + c.
        let kpairs = nkp / 2;
        s.v.clear();
        s.v.resize(nkp * dh, 0);
        let vl = s.v.as_mut_ptr() as *mut __m512i;
        for kk in 0..nk.div_ceil(2) {
            let (r0, r1) = (v.add(2 * kk * kv_row), v.add((2 * kk + 1) * kv_row));
            let second = 2 * kk + 1 < nk;
            for t in 0..dh / 16 {
                let lo = _mm512_loadu_ps(r0.add(16 * t));
                let hi = if second {
                    _mm512_loadu_ps(r1.add(16 * t))
                } else {
                    _mm512_setzero_ps()
                };
                _mm512_storeu_si512(vl.add(t * kpairs + kk), pairs(lo, hi));
            }
        }
        s.mask.clear();
        s.mask.extend_from_slice(&mask[..nk]);
        s.mask.resize(nkp, f32::NEG_INFINITY);
        s.q.clear();
        s.q.resize(BLOCK * dh, 0);
        s.scores.clear();
        s.scores.resize(BLOCK * nkp, 0.0);
        s.p.clear();
        s.p.resize(BLOCK * nkp, 0);
        let mut inv = [0f32; BLOCK];
        let mut t0 = 0;
        while t0 < nq {
            let rows = BLOCK.min(nq - t0);
            for i in 0..rows {
                let src = q.add((t0 + i) * q_row);
                for c in (0..dh).step_by(16) {
                    round16(src.add(c), 16, s.q.as_mut_ptr().add(i * dh + c));
                }
            }
            for j in (0..nkp).step_by(KEYS) {
                scores(&s.q, dh, &s.k, j, &s.mask, scale, &mut s.scores, nkp);
            }
            for (i, inv) in inv.iter_mut().enumerate().take(rows) {
                let sc = s.scores.as_ptr().add(i * nkp);
                let p = s.p.as_mut_ptr().add(i * nkp);
                *inv = 1.0 / softmax_row(sc, p, nkp);
            }
            let c = ctx.add(t0 * ctx_row);
            match dh / 16 {
                1 => context::<1, 12>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
                2 => context::<2, 12>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
                3 => context::<3, 6>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
                4 => context::<4, 6>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
                5 => context::<5, 4>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
                6 => context::<6, 3>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
                7 => context::<7, 3>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
                _ => context::<8, 3>(&s.p, nkp, rows, &s.v, c, ctx_row, &inv),
            }
            t0 += rows;
        }
    }

    /// Scores of the [`BLOCK`] query rows against keys j..j + 32: scale · q kᵀ + mask, stored
    /// at `out` (rows `nkp` apart).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn scores(
        q: &[u16],
        dh: usize,
        kt: &[u16],
        j: usize,
        mask: &[f32],
        scale: f32,
        out: &mut [f32],
        nkp: usize,
    ) {
        let dpairs = dh / 2;
        assert!(q.len() >= BLOCK * dh && kt.len() >= (j + KEYS) * dh);
        assert!(mask.len() >= j + KEYS && out.len() >= (BLOCK - 1) * nkp + j + KEYS);
        let qp = q.as_ptr() as *const i32;
        let k0 = kt.as_ptr().add(j * dh) as *const __m512i;
        let k1 = k0.add(dpairs);
        let mut acc = [[_mm512_setzero_ps(); 2]; BLOCK];
        for p in 0..dpairs {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(k0.add(p)));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(k1.add(p)));
            for (r, a) in acc.iter_mut().enumerate() {
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*qp.add(r * dpairs + p)));
                a[0] = _mm512_dpbf16_ps(a[0], x, b0);
                a[1] = _mm512_dpbf16_ps(a[1], x, b1);
            }
        }
        let sv = _mm512_set1_ps(scale);
        let m0 = _mm512_loadu_ps(mask.as_ptr().add(j));
        let m1 = _mm512_loadu_ps(mask.as_ptr().add(j + 16));
        for (r, a) in acc.iter().enumerate() {
            let o = out.as_mut_ptr().add(r * nkp + j);
            _mm512_storeu_ps(o, _mm512_fmadd_ps(a[0], sv, m0));
            _mm512_storeu_ps(o.add(16), _mm512_fmadd_ps(a[1], sv, m1));
        }
    }

    /// exp(s - max s) over one row of `n` scores (a multiple of 32) into `p` in bf16; returns
    /// the sum of the f32 values. Scores more than 87 below the max get exactly 0 (as the f32
    /// kernels: e^-87 is 1.6e-38), masked and padded keys among them.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn softmax_row(s: *const f32, p: *mut u16, n: usize) -> f32 {
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        for c in (0..n).step_by(16) {
            mx = _mm512_max_ps(mx, _mm512_loadu_ps(s.add(c)));
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        let floor = _mm512_set1_ps(-87.0);
        let mut sum = _mm512_setzero_ps();
        for c in (0..n).step_by(32) {
            let d0 = _mm512_sub_ps(_mm512_loadu_ps(s.add(c)), max);
            let d1 = _mm512_sub_ps(_mm512_loadu_ps(s.add(c + 16)), max);
            let e0 = _mm512_maskz_mov_ps(
                _mm512_cmp_ps_mask::<_CMP_GE_OQ>(d0, floor),
                kernels::exp512(d0),
            );
            let e1 = _mm512_maskz_mov_ps(
                _mm512_cmp_ps_mask::<_CMP_GE_OQ>(d1, floor),
                kernels::exp512(d1),
            );
            sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
            let b: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(e1, e0));
            _mm512_storeu_si512(p.add(c) as *mut __m512i, b);
        }
        _mm512_reduce_add_ps(sum)
    }

    /// ctx rows (`rows` × 16·C, `ctx_row` apart) = (p V) · inv per row, `R` rows at a time:
    /// p rows of `nkp` bf16 (pairs of keys broadcast), V packed as `head` packs it.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn context<const C: usize, const R: usize>(
        p: &[u16],
        nkp: usize,
        rows: usize,
        v: &[u16],
        ctx: *mut f32,
        ctx_row: usize,
        inv: &[f32; BLOCK],
    ) {
        const { assert!(BLOCK.is_multiple_of(R)) };
        let kpairs = nkp / 2;
        assert!(rows <= BLOCK && p.len() >= BLOCK * nkp && v.len() >= C * kpairs * 32);
        let pp = p.as_ptr() as *const i32;
        let vp = v.as_ptr() as *const __m512i;
        let mut i = 0;
        while i < rows {
            let n = R.min(rows - i);
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            for kk in 0..kpairs {
                let mut b: [__m512bh; C] = std::mem::transmute_copy(&[_mm512_setzero_ps(); C]);
                for (c, bc) in b.iter_mut().enumerate() {
                    *bc = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        vp.add(c * kpairs + kk),
                    ));
                }
                // Rows past `rows` (within the block: R divides BLOCK) read the block's zero
                // padding or stale values, and are not stored.
                for (r, a) in acc.iter_mut().enumerate() {
                    let x: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*pp.add((i + r) * kpairs + kk)));
                    for c in 0..C {
                        a[c] = _mm512_dpbf16_ps(a[c], x, b[c]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(n) {
                let o = ctx.add((i + r) * ctx_row);
                let sv = _mm512_set1_ps(inv[i + r]);
                for (c, ac) in a.iter().enumerate() {
                    _mm512_storeu_ps(o.add(16 * c), _mm512_mul_ps(*ac, sv));
                }
            }
            i += R;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bf16::{from_bf16, to_bf16};

    fn round(v: f32) -> f64 {
        from_bf16(to_bf16(v)) as f64
    }

    /// Against softmax(scale · q kᵀ + mask) v in f64 from the bf16-rounded q, k and v, with
    /// exp(s - max) rounded to bf16 as the kernel rounds it (within 2e-3: a weight whose
    /// rounding goes the other way moves its term by 2^-9 of itself), and against the f32
    /// inputs unrounded within 2e-2; at head sizes 16-128, query counts that cross blocks,
    /// odd key counts (padding within a tile and a pair), strided rows and masked keys.
    #[test]
    fn matches_attention_of_the_rounded_inputs() {
        if !available(64) {
            eprintln!("SKIPPED: no AVX512-BF16");
            return;
        }
        for (dh, nq, nk) in [
            (64, 70, 45),
            (32, 13, 31),
            (16, 1, 1),
            (48, 25, 64),
            (128, 12, 33),
        ] {
            let row = 3 * dh + 5;
            let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 1.5;
            let qkv: Vec<f32> = (0..nq.max(nk) * row).map(val).collect();
            let mask: Vec<f32> = (0..nk)
                .map(|j| if j % 7 == 3 { f32::MIN } else { 0.0 })
                .collect();
            let scale = 1.0 / (dh as f32).sqrt();
            let ctx_row = dh + 3;
            let mut ctx = vec![f32::NAN; nq * ctx_row];
            let mut s = Scratch::default();
            // SAFETY: every row read or written lies within qkv / ctx.
            unsafe {
                head(
                    qkv.as_ptr(),
                    row,
                    qkv.as_ptr().add(dh),
                    qkv.as_ptr().add(2 * dh),
                    row,
                    ctx.as_mut_ptr(),
                    ctx_row,
                    nq,
                    nk,
                    dh,
                    &mask,
                    scale,
                    &mut s,
                );
            }
            for i in 0..nq {
                let scores = |r: fn(f32) -> f64| -> Vec<f64> {
                    (0..nk)
                        .map(|j| {
                            let d: f64 = (0..dh)
                                .map(|d| r(qkv[i * row + d]) * r(qkv[j * row + dh + d]))
                                .sum();
                            d * scale as f64 + mask[j] as f64
                        })
                        .collect()
                };
                let (rounded, exact) = (scores(round), scores(|v| v as f64));
                let weights = |sc: &[f64], r: fn(f32) -> f64| -> Vec<f64> {
                    let max = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = sc.iter().map(|v| (v - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    e.iter().map(|&e| r(e as f32) / z).collect()
                };
                let (pr, pe) = (weights(&rounded, round), weights(&exact, |v| v as f64));
                for d in 0..dh {
                    let got = ctx[i * ctx_row + d] as f64;
                    let want: f64 = (0..nk)
                        .map(|j| pr[j] * round(qkv[j * row + 2 * dh + d]))
                        .sum();
                    assert!(
                        (got - want).abs() < 2e-3,
                        "dh {dh} ({i}, {d}): {got} vs {want}"
                    );
                    let want: f64 = (0..nk)
                        .map(|j| pe[j] * qkv[j * row + 2 * dh + d] as f64)
                        .sum();
                    assert!(
                        (got - want).abs() < 2e-2,
                        "dh {dh} ({i}, {d}): {got} vs unrounded {want}"
                    );
                }
            }
        }
    }
}
