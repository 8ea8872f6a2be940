//! Accuracy broken down by article length, question kind and gold option position.

use serde::{Deserialize, Serialize};

use super::Prediction;
use super::Score;
use crate::metrics::Accuracy;

/// Article-length buckets in words: upper bounds (exclusive); the last is open.
pub const LENGTH_EDGES: [usize; 4] = [200, 300, 400, 500];

/// One bucket's name and score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub name: String,
    #[serde(flatten)]
    pub score: Score,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Breakdowns {
    /// By article length in words: `<200`, `200-299`, `300-399`, `400-499`, `500+`
    /// (`unknown` for predictions recorded without lengths). Every bucket is listed, empty ones
    /// with total 0, so runs line up.
    pub article_words: Vec<Bucket>,
    /// `cloze` (the question has a `_` blank) vs `question` (interrogative).
    pub question_kind: Vec<Bucket>,
    /// By the gold option's position: A, B, C, D, ….
    pub gold_option: Vec<Bucket>,
    /// By the task's own question category (QuAIL's question types, MCTest's one/multiple,
    /// MCScript's text/commonsense); empty when the task has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<Bucket>,
}

/// The length bucket name of an article of `words` words.
pub fn length_bucket(words: usize) -> String {
    let mut lo = 0;
    for hi in LENGTH_EDGES {
        if words < hi {
            return if lo == 0 {
                format!("<{hi}")
            } else {
                format!("{lo}-{}", hi - 1)
            };
        }
        lo = hi;
    }
    format!("{lo}+")
}

/// All length bucket names, in order.
pub fn length_bucket_names() -> Vec<String> {
    let mut names: Vec<String> = LENGTH_EDGES.iter().map(|&e| length_bucket(e - 1)).collect();
    names.push(length_bucket(usize::MAX));
    names
}

fn tally(names: Vec<String>, keys: impl Iterator<Item = (String, bool)>) -> Vec<Bucket> {
    let mut acc: Vec<(String, Accuracy)> = names
        .into_iter()
        .map(|n| (n, Accuracy::default()))
        .collect();
    for (key, right) in keys {
        match acc.iter_mut().find(|(n, _)| *n == key) {
            Some((_, a)) => a.add(right),
            None => {
                let mut a = Accuracy::default();
                a.add(right);
                acc.push((key, a));
            }
        }
    }
    acc.into_iter()
        .map(|(name, a)| Bucket {
            name,
            score: Score::new(&a),
        })
        .collect()
}

/// Option letter for a position: A, B, … Z, then `#27`, ….
pub fn option_letter(i: usize) -> String {
    if i < 26 {
        ((b'A' + i as u8) as char).to_string()
    } else {
        format!("#{}", i + 1)
    }
}

impl Breakdowns {
    pub fn new(preds: &[Prediction]) -> Self {
        let right = |p: &Prediction| p.pred == p.label;
        let article_words = tally(
            length_bucket_names(),
            preds.iter().map(|p| {
                let key = p
                    .article_words
                    .map(length_bucket)
                    .unwrap_or_else(|| "unknown".into());
                (key, right(p))
            }),
        );
        let question_kind = tally(
            vec!["cloze".into(), "question".into()],
            preds.iter().map(|p| {
                let key = match p.cloze {
                    Some(true) => "cloze",
                    Some(false) => "question",
                    None => "unknown",
                };
                (key.to_string(), right(p))
            }),
        );
        let options = preds.iter().map(|p| p.logits.len()).max().unwrap_or(4);
        let gold_option = tally(
            (0..options).map(option_letter).collect(),
            preds.iter().map(|p| (option_letter(p.label), right(p))),
        );
        let mut names: Vec<String> = preds.iter().filter_map(|p| p.category.clone()).collect();
        names.sort();
        names.dedup();
        let category = if names.is_empty() {
            Vec::new()
        } else {
            tally(
                names,
                preds.iter().map(|p| {
                    let key = p.category.clone().unwrap_or_else(|| "unknown".into());
                    (key, right(p))
                }),
            )
        };
        Breakdowns {
            article_words,
            question_kind,
            gold_option,
            category,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Level;

    fn pred(words: Option<usize>, cloze: Option<bool>, label: usize, pred: usize) -> Prediction {
        Prediction {
            pred_norm: None,
            id: "p#0".into(),
            passage_id: "p".into(),
            question_index: 0,
            level: Level::Middle,
            label,
            pred,
            logits: vec![0.0; 4],
            article_words: words,
            cloze,
            category: None,
        }
    }

    #[test]
    fn buckets_are_named_and_ordered() {
        assert_eq!(
            length_bucket_names(),
            ["<200", "200-299", "300-399", "400-499", "500+"]
        );
        assert_eq!(length_bucket(0), "<200");
        assert_eq!(length_bucket(200), "200-299");
        assert_eq!(length_bucket(499), "400-499");
        assert_eq!(length_bucket(500), "500+");
    }

    #[test]
    fn counts_land_in_their_buckets() {
        let preds = [
            pred(Some(150), Some(true), 0, 0),
            pred(Some(250), Some(false), 1, 0),
            pred(Some(260), Some(false), 1, 1),
            pred(None, None, 3, 3),
        ];
        let b = Breakdowns::new(&preds);
        let get = |v: &[Bucket], n: &str| {
            let s = v.iter().find(|b| b.name == n).unwrap().score;
            (s.correct, s.total)
        };
        assert_eq!(get(&b.article_words, "<200"), (1, 1));
        assert_eq!(get(&b.article_words, "200-299"), (1, 2));
        assert_eq!(get(&b.article_words, "500+"), (0, 0));
        assert_eq!(get(&b.article_words, "unknown"), (1, 1));
        assert_eq!(get(&b.question_kind, "cloze"), (1, 1));
        assert_eq!(get(&b.question_kind, "question"), (1, 2));
        assert_eq!(get(&b.gold_option, "A"), (1, 1));
        assert_eq!(get(&b.gold_option, "B"), (1, 2));
        assert_eq!(get(&b.gold_option, "C"), (0, 0));
        assert_eq!(get(&b.gold_option, "D"), (1, 1));
    }
}
