//! Attention's two products for one (sequence, head, block of queries) with AVX-512 register
//! blocking, for the int8 path (`--dtype int8`), where the linears are so fast that attention's
//! f32 products became the largest cost: `perf` at albert-base 1×4×512 put 38% of the int8 time
//! in the `gemm` crate's f32 micro-kernel (AVX2 FMA; its AVX-512 kernels need a nightly
//! feature), called on 64 × 512 × 64 blocks. ONNX Runtime's QAttention also keeps these products
//! in f32 (MLAS, AVX-512). Used where the CPU has AVX-512F but not AVX512-BF16 (with it, int8
//! layers take [`super::attention_bf16`]) and the head size is 16, 32, 48 or 64.
//!
//! - scores = scale · Q Kᵀ: Kᵀ is packed per block (head size × keys, keys padded to 32), the
//!   queries copied 8 rows at a time; 8 queries × 32 keys accumulate in 16 zmm registers.
//! - context = P V: V read in place (head size contiguous per key); 24 accumulators hold
//!   `ROWS` queries × the head's 16-wide column groups.

/// Whether the kernel can run here for head size `dh`.
pub fn available(dh: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        dh.is_multiple_of(16)
            && (16..=64).contains(&dh)
            && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = dh;
        false
    }
}

/// Scratch reused across heads by one worker.
#[derive(Default)]
pub struct Scratch {
    kt: Vec<f32>,
    v: Vec<f32>,
    q: Vec<f32>,
    scores: Vec<f32>,
}

/// Queries per block of scores (a block × keys stays in L2).
const BLOCK: usize = 64;

/// One head's attention for `nq` queries over `nk` keys: Kᵀ and V are packed once, then the
/// queries run in blocks of [`BLOCK`].
///
/// # Safety
/// [`available`]`(dh)` must hold. `q` points at the first query's head columns (rows `q_row`
/// apart), `k` and `v` at the first key's (rows `kv_row` apart), `ctx` at the first context
/// row's (rows `ctx_row` apart); all `nq` / `nk` rows of `dh` values must be valid, and `ctx`'s
/// rows must not be written by anyone else meanwhile. `mask` holds `nk` additive values.
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
    {
        let nkp = nk.div_ceil(32) * 32;
        s.kt.clear();
        s.kt.resize(dh * nkp, 0.0);
        s.v.clear();
        s.v.resize(nk * dh, 0.0);
        for j in 0..nk {
            let row = std::slice::from_raw_parts(k.add(j * kv_row), dh);
            for (d, &x) in row.iter().enumerate() {
                *s.kt.get_unchecked_mut(d * nkp + j) = x;
            }
            let row = std::slice::from_raw_parts(v.add(j * kv_row), dh);
            s.v[j * dh..(j + 1) * dh].copy_from_slice(row);
        }
        let mut t0 = 0;
        while t0 < nq {
            let bq = BLOCK.min(nq - t0);
            let bqp = bq.div_ceil(QROWS) * QROWS;
            s.q.clear();
            s.q.resize(bqp * dh, 0.0);
            for i in 0..bq {
                let row = std::slice::from_raw_parts(q.add((t0 + i) * q_row), dh);
                s.q[i * dh..(i + 1) * dh].copy_from_slice(row);
            }
            s.scores.clear();
            s.scores.resize(bqp * nkp, 0.0);
            x86::scores(&s.q, &s.kt, &mut s.scores, bqp, nkp, dh, scale);
            for i in 0..bq {
                let row = &mut s.scores[i * nkp..i * nkp + nk];
                super::kernels::masked_softmax_rows(row, nk, &mask[..nk]);
            }
            let c = ctx.add(t0 * ctx_row);
            let (p, vp) = (&s.scores[..], s.v.as_ptr());
            match dh / 16 {
                1 => x86::context::<1, 12>(p, nkp, bq, nk, vp, dh, c, ctx_row),
                2 => x86::context::<2, 12>(p, nkp, bq, nk, vp, dh, c, ctx_row),
                3 => x86::context::<3, 8>(p, nkp, bq, nk, vp, dh, c, ctx_row),
                _ => x86::context::<4, 6>(p, nkp, bq, nk, vp, dh, c, ctx_row),
            }
            t0 += bq;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (
            q, q_row, k, v, kv_row, ctx, ctx_row, nq, nk, dh, mask, scale, s,
        );
        unreachable!("attention512 runs on x86_64 only");
    }
}

/// Query rows per scores micro-kernel call.
const QROWS: usize = 8;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::QROWS;
    use std::arch::x86_64::*;

    /// scores (nqp × nkp) = scale · q (nqp × dh) · kt (dh × nkp).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scores(
        q: &[f32],
        kt: &[f32],
        out: &mut [f32],
        nqp: usize,
        nkp: usize,
        dh: usize,
        scale: f32,
    ) {
        assert!(q.len() >= nqp * dh && kt.len() >= dh * nkp && out.len() >= nqp * nkp);
        let sv = _mm512_set1_ps(scale);
        let (qp, kp, op) = (q.as_ptr(), kt.as_ptr(), out.as_mut_ptr());
        for i in (0..nqp).step_by(QROWS) {
            for j in (0..nkp).step_by(32) {
                let mut acc = [[_mm512_setzero_ps(); 2]; QROWS];
                for d in 0..dh {
                    let b0 = _mm512_loadu_ps(kp.add(d * nkp + j));
                    let b1 = _mm512_loadu_ps(kp.add(d * nkp + j + 16));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*qp.add((i + r) * dh + d));
                        a[0] = _mm512_fmadd_ps(x, b0, a[0]);
                        a[1] = _mm512_fmadd_ps(x, b1, a[1]);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    let o = op.add((i + r) * nkp + j);
                    _mm512_storeu_ps(o, _mm512_mul_ps(a[0], sv));
                    _mm512_storeu_ps(o.add(16), _mm512_mul_ps(a[1], sv));
                }
            }
        }
    }

    /// ctx rows (nq × 16·C, rows `ctx_row` apart) = p (rows `nkp` apart) · v (nk × 16·C, rows
    /// `kv_row` apart), `R` queries at a time.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn context<const C: usize, const R: usize>(
        p: &[f32],
        nkp: usize,
        nq: usize,
        nk: usize,
        v: *const f32,
        kv_row: usize,
        ctx: *mut f32,
        ctx_row: usize,
    ) {
        assert!(p.len() >= nq * nkp && nk <= nkp);
        let pp = p.as_ptr();
        let mut i = 0;
        while i < nq {
            let rows = R.min(nq - i);
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            for kk in 0..nk {
                let vr = v.add(kk * kv_row);
                let mut b = [_mm512_setzero_ps(); C];
                for (c, bc) in b.iter_mut().enumerate() {
                    *bc = _mm512_loadu_ps(vr.add(16 * c));
                }
                if rows == R {
                    for (r, a) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*pp.add((i + r) * nkp + kk));
                        for c in 0..C {
                            a[c] = _mm512_fmadd_ps(x, b[c], a[c]);
                        }
                    }
                } else {
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        let x = _mm512_set1_ps(*pp.add((i + r) * nkp + kk));
                        for c in 0..C {
                            a[c] = _mm512_fmadd_ps(x, b[c], a[c]);
                        }
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(rows) {
                let o = ctx.add((i + r) * ctx_row);
                for (c, ac) in a.iter().enumerate() {
                    _mm512_storeu_ps(o.add(16 * c), *ac);
                }
            }
            i += R;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain softmax(scale · q kᵀ + mask) v, at head sizes 16-64, with a query
    /// count that crosses a block and a partial row group, keys not a multiple of 32, strided
    /// rows and masked keys.
    #[test]
    fn matches_plain_attention() {
        let (nq, nk) = (70, 45);
        for dh in [16, 32, 48, 64] {
            if !available(dh) {
                eprintln!("SKIPPED: no AVX-512F");
                return;
            }
            let row = 3 * dh + 5;
            let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 1.5;
            let qkv: Vec<f32> = (0..nq.max(nk) * row).map(val).collect();
            let mask: Vec<f32> = (0..nk)
                .map(|j| if j % 7 == 3 { f32::MIN } else { 0.0 })
                .collect();
            let scale = 1.0 / (dh as f32).sqrt();
            let ctx_row = dh + 3;
            let mut ctx = vec![0f32; nq * ctx_row];
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
                let sc: Vec<f64> = (0..nk)
                    .map(|j| {
                        let d: f64 = (0..dh)
                            .map(|d| (qkv[i * row + d] * qkv[j * row + dh + d]) as f64)
                            .sum();
                        d * scale as f64 + mask[j] as f64
                    })
                    .collect();
                let max = sc.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = sc.iter().map(|v| (v - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..dh {
                    let want: f64 = (0..nk)
                        .map(|j| e[j] / z * qkv[j * row + 2 * dh + d] as f64)
                        .sum();
                    let got = ctx[i * ctx_row + d] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "dh {dh} ({i}, {d}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
