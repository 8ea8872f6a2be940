//! Statistics for comparing runs: Wilson score intervals for accuracies, the exact McNemar test
//! for paired comparisons, and softmax for ensembling. Pure functions, no I/O.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval (the 97.5th percentile of the standard normal).
pub const Z95: f64 = 1.959_963_984_540_054;

/// A closed interval of proportions, `lo <= hi`, both in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// The Wilson score interval for `correct` successes out of `total` at normal quantile `z`;
/// `None` when `total` is 0 (no questions, no interval). Unlike the normal ("Wald") interval it
/// stays inside [0, 1] and is sensible at 0% and 100%.
pub fn wilson(correct: usize, total: usize, z: f64) -> Option<Interval> {
    if total == 0 || correct > total {
        return None;
    }
    let n = total as f64;
    let p = correct as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
    })
}

/// The 95% Wilson interval.
pub fn wilson95(correct: usize, total: usize) -> Option<Interval> {
    wilson(correct, total, Z95)
}

/// ln(k!) for k = 0..=n.
fn ln_factorials(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    let mut acc = 0.0f64;
    out.push(0.0);
    for k in 1..=n {
        acc += (k as f64).ln();
        out.push(acc);
    }
    out
}

/// The exact (binomial) McNemar test: two-sided p-value for `b` pairs that only the first system
/// gets right and `c` that only the second does, under H0 that each discordant pair goes either
/// way with probability 1/2. `p = min(1, 2 * P[X <= min(b, c)])` with X ~ Binomial(b + c, 1/2);
/// 1 when there are no discordant pairs. Computed in log space, so it is accurate for the tens of
/// thousands of pairs a full RACE run can have.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let lf = ln_factorials(n);
    let ln_half_n = n as f64 * 0.5f64.ln();
    let terms: Vec<f64> = (0..=k)
        .map(|i| lf[n] - lf[i] - lf[n - i] + ln_half_n)
        .collect();
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// Softmax of logits in f64 (shifted by the maximum, so large logits do not overflow).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .map(|&v| v as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I:
        // 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605; 0/20 -> 0 to 0.1611;
        // 1/29 -> 0.0061 to 0.1718.
        let cases = [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ];
        for (k, n, lo, hi) in cases {
            let i = wilson95(k, n).unwrap();
            assert!(close(i.lo, lo, 5e-5), "{k}/{n}: lo {} vs {lo}", i.lo);
            assert!(close(i.hi, hi, 5e-5), "{k}/{n}: hi {} vs {hi}", i.hi);
        }
    }

    #[test]
    fn wilson_is_symmetric_and_bounded() {
        let a = wilson95(7, 10).unwrap();
        let b = wilson95(3, 10).unwrap();
        assert!(close(a.lo, 1.0 - b.hi, 1e-12) && close(a.hi, 1.0 - b.lo, 1e-12));
        let all = wilson95(10, 10).unwrap();
        assert!(all.hi <= 1.0 && all.lo > 0.6 && all.lo < 0.75, "{all:?}");
        assert!(wilson95(0, 0).is_none());
        assert!(wilson95(3, 2).is_none());
    }

    #[test]
    fn mcnemar_hand_computed() {
        // b = 1, c = 9: P[X <= 1] = (C(10,0) + C(10,1)) / 2^10 = 11/1024; two-sided 22/1024.
        assert!(close(mcnemar_exact(1, 9), 22.0 / 1024.0, 1e-12));
        assert!(close(mcnemar_exact(9, 1), 22.0 / 1024.0, 1e-12));
        // b = 2, c = 5: (1 + 7 + 21) / 128 * 2 = 58/128.
        assert!(close(mcnemar_exact(2, 5), 58.0 / 128.0, 1e-12));
        // balanced discordance is no evidence at all
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // 0 vs 6: 2 / 64
        assert!(close(mcnemar_exact(0, 6), 2.0 / 64.0, 1e-12));
    }

    #[test]
    fn mcnemar_large_counts_stay_finite() {
        let p = mcnemar_exact(10_000, 10_400);
        assert!(p > 0.0 && p < 0.01, "{p}");
        let q = mcnemar_exact(10_000, 10_010);
        assert!(q > 0.9 && q <= 1.0, "{q}");
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 1000.0, 0.0, -5.0]);
        assert!(close(p.iter().sum::<f64>(), 1.0, 1e-12));
        assert!(close(p[0], 0.5, 1e-12) && p[2] < 1e-100);
    }
}
