//! Paired comparison of two runs on the same questions: accuracy difference and the exact
//! McNemar test on the questions exactly one of them gets right.

use anyhow::Result;
use serde::Serialize;

use super::{check_same_questions, Run};
use crate::stats::mcnemar_exact;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub run_a: String,
    pub run_b: String,
    pub questions: usize,
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    /// accuracy_a - accuracy_b (a fraction; ×100 for points).
    pub difference: f64,
    pub both_right: usize,
    pub only_a: usize,
    pub only_b: usize,
    pub both_wrong: usize,
    /// Exact two-sided McNemar p-value (binomial on only_a vs only_b).
    pub mcnemar_p: f64,
    /// Questions on which both runs chose the same option (right or wrong), e.g. a distilled
    /// student against its teacher; None where only outcomes were compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_answer: Option<usize>,
}

/// Compares the per-question outcomes of two runs; refuses runs that did not see the same
/// questions.
pub fn compare(a: &Run, b: &Run) -> Result<Comparison> {
    check_same_questions(a, b)?;
    let same = a
        .predictions
        .iter()
        .zip(&b.predictions)
        .filter(|(pa, pb)| pa.pred == pb.pred)
        .count();
    let mut c = compare_outcomes(
        a.id(),
        b.id(),
        a.predictions
            .iter()
            .zip(&b.predictions)
            .map(|(pa, pb)| (pa.pred == pa.label, pb.pred == pb.label)),
    );
    c.same_answer = Some(same);
    Ok(c)
}

/// The comparison of paired outcomes (A right?, B right?).
pub fn compare_outcomes(
    run_a: &str,
    run_b: &str,
    outcomes: impl IntoIterator<Item = (bool, bool)>,
) -> Comparison {
    let (mut both_right, mut only_a, mut only_b, mut both_wrong) = (0, 0, 0, 0);
    for (ra, rb) in outcomes {
        match (ra, rb) {
            (true, true) => both_right += 1,
            (true, false) => only_a += 1,
            (false, true) => only_b += 1,
            (false, false) => both_wrong += 1,
        }
    }
    let n = both_right + only_a + only_b + both_wrong;
    let frac = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Comparison {
        run_a: run_a.to_string(),
        run_b: run_b.to_string(),
        questions: n,
        accuracy_a: frac(both_right + only_a),
        accuracy_b: frac(both_right + only_b),
        difference: frac(both_right + only_a) - frac(both_right + only_b),
        both_right,
        only_a,
        only_b,
        both_wrong,
        mcnemar_p: mcnemar_exact(only_a, only_b),
        same_answer: None,
    }
}

/// A p-value for people: four decimals, or scientific notation below 0.0001.
pub fn format_p(p: f64) -> String {
    if p >= 1e-4 {
        format!("{p:.4}")
    } else {
        format!("{p:.2e}")
    }
}

impl Comparison {
    pub fn to_text(&self) -> String {
        let verdict = if self.mcnemar_p < 0.05 {
            "the difference is significant at the 5% level"
        } else {
            "the difference is not significant at the 5% level"
        };
        format!(
            "A: {}  {:.2}%\nB: {}  {:.2}%\n{} paired questions\n\
             difference A - B: {:+.2} points\n\
             only A right: {}   only B right: {}   both right: {}   both wrong: {}\n\
             exact McNemar test (two-sided, on the {} discordant questions): p = {}: {verdict}\n",
            self.run_a,
            100.0 * self.accuracy_a,
            self.run_b,
            100.0 * self.accuracy_b,
            self.questions,
            100.0 * self.difference,
            self.only_a,
            self.only_b,
            self.both_right,
            self.both_wrong,
            self.only_a + self.only_b,
            format_p(self.mcnemar_p)
        ) + &self
            .same_answer
            .map(|k| {
                format!(
                    "same answer (argmax agreement): {k} of {} ({:.2}%)\n",
                    self.questions,
                    100.0 * k as f64 / self.questions.max(1) as f64
                )
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        // 10 questions: 3 both right, 1 only A, 5 only B, 1 both wrong.
        let mut o = vec![(true, true); 3];
        o.push((true, false));
        o.extend(vec![(false, true); 5]);
        o.push((false, false));
        let c = compare_outcomes("a", "b", o);
        assert_eq!(
            (c.both_right, c.only_a, c.only_b, c.both_wrong),
            (3, 1, 5, 1)
        );
        assert!((c.accuracy_a - 0.4).abs() < 1e-12);
        assert!((c.accuracy_b - 0.8).abs() < 1e-12);
        assert!((c.difference + 0.4).abs() < 1e-12);
        // 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64
        assert!((c.mcnemar_p - 14.0 / 64.0).abs() < 1e-12);
    }

    #[test]
    fn small_p_values_are_not_printed_as_zero() {
        assert_eq!(format_p(0.21875), "0.2188");
        assert_eq!(format_p(1.0), "1.0000");
        assert_eq!(format_p(3.2e-10), "3.20e-10");
    }
}
