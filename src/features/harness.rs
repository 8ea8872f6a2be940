//! Zero-shot scoring prompts for decoder LMs, as lm-evaluation-harness builds them for its
//! `race` task (`lm_eval/tasks/race/race.yaml` and `preprocess_race.py`, task version 3.0).
//!
//! One document per article, its questions in order. The context of question k is
//!
//! ```text
//! "Article: " + article + "\n\n"
//! for each earlier question j < k, with its gold answer a_j:
//!     if q_j ends with "  _  .":  q_j without its last 5 characters + a_j + "\n"
//!     else:                       "Question: " + q_j + "\n" + "Answer: " + a_j + "\n"
//! + q_k                                         (the question's own text, nothing after it)
//! ```
//!
//! and each option o is the continuation " " + o (the harness' default `target_delimiter`),
//! scored by the summed log-probability of its tokens. The harness' `race` scores only the last
//! question of each article ([`Protocol::HarnessLast`]); [`Protocol::HarnessAll`] scores every
//! question, each with the earlier ones (and their gold answers) as context.
//!
//! Tokenisation as the harness' `_encode_pair` for causal models: trailing whitespace of the
//! context moves to the front of the continuation; the context's ids are `encode(context)` and
//! the continuation's ids are `encode(context + continuation)` minus as many leading ids.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::data::Question;

/// How a decoder LM is asked the questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Protocol {
    /// lm-evaluation-harness `race` (v3.0): the last question of each article.
    #[value(name = "harness-last")]
    #[serde(rename = "harness-last")]
    HarnessLast,
    /// Every question of each article, each with the earlier ones answered as context.
    #[value(name = "harness-all")]
    #[serde(rename = "harness-all")]
    HarnessAll,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::HarnessLast => "harness-last",
            Protocol::HarnessAll => "harness-all",
        }
    }
}

/// One scored question: its index in the data, its context and continuations.
#[derive(Debug, Clone, PartialEq)]
pub struct LmDoc {
    pub question: usize,
    pub context: String,
    pub continuations: Vec<String>,
}

/// The harness' context for `questions[k]` given the article and the earlier questions.
pub fn context(article: &str, earlier: &[&Question], last: &Question) -> String {
    let mut text = format!("Article: {article}\n\n");
    for q in earlier {
        let answer = &q.options[q.label];
        if q.question.ends_with("  _  .") {
            // The last 5 characters are ASCII (" _  ."), so a byte cut is a character cut.
            text += &q.question[..q.question.len() - 5];
            text += answer;
            text += "\n";
        } else {
            text += &format!("Question: {}\nAnswer: {answer}\n", q.question);
        }
    }
    text += &last.question;
    text
}

/// The documents to score, in data order of their articles' first questions: every article's
/// questions grouped by passage id and ordered by their index in the passage.
pub fn documents(questions: &[Question], protocol: Protocol) -> Vec<LmDoc> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_passage: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, q) in questions.iter().enumerate() {
        by_passage
            .entry(q.passage_id.as_str())
            .or_insert_with(|| {
                order.push(q.passage_id.as_str());
                Vec::new()
            })
            .push(i);
    }
    let mut docs = Vec::new();
    for pid in order {
        let mut idx = by_passage.remove(pid).unwrap_or_default();
        idx.sort_by_key(|&i| questions[i].question_index);
        let scored: Vec<usize> = match protocol {
            Protocol::HarnessLast => idx.len().checked_sub(1).into_iter().collect(),
            Protocol::HarnessAll => (0..idx.len()).collect(),
        };
        for k in scored {
            let earlier: Vec<&Question> = idx[..k].iter().map(|&i| &questions[i]).collect();
            let q = &questions[idx[k]];
            docs.push(LmDoc {
                question: idx[k],
                context: context(&q.article, &earlier, q),
                continuations: q.options.iter().map(|o| format!(" {o}")).collect(),
            });
        }
    }
    docs
}

/// A document's token ids: the context once, and each continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct LmIds {
    pub context: Vec<u32>,
    pub continuations: Vec<Vec<u32>>,
}

fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(text, true)
        .map_err(|e| anyhow::anyhow!("tokenising: {e}"))?
        .get_ids()
        .to_vec())
}

/// Tokenises a document as the harness' `_encode_pair` does (see the module's documentation).
pub fn encode_doc(tok: &Tokenizer, doc: &LmDoc) -> Result<LmIds> {
    let trimmed = doc.context.trim_end();
    let spaces = &doc.context[trimmed.len()..];
    if trimmed.is_empty() {
        bail!("an empty context cannot be scored");
    }
    let context = encode(tok, trimmed)?;
    let mut continuations = Vec::with_capacity(doc.continuations.len());
    for (o, c) in doc.continuations.iter().enumerate() {
        let whole = encode(tok, &format!("{trimmed}{spaces}{c}"))?;
        if whole.len() <= context.len() {
            bail!(
                "option {} tokenises to nothing after the context",
                (b'A' + o.min(25) as u8) as char
            );
        }
        continuations.push(whole[context.len()..].to_vec());
    }
    Ok(LmIds {
        context,
        continuations,
    })
}

/// The harness' left truncation at a model limit of `max_len` tokens: each option's input is
/// `(context + continuation)[-(max_len + 1):][:-1]`, so its context keeps its last
/// `max_len + 1 - len(continuation)` ids. `None` when every option fits (the common case: one
/// shared context).
pub fn truncated_contexts(ids: &LmIds, max_len: usize) -> Result<Option<Vec<Vec<u32>>>> {
    if ids
        .continuations
        .iter()
        .all(|c| ids.context.len() + c.len() <= max_len + 1)
    {
        return Ok(None);
    }
    ids.continuations
        .iter()
        .map(|c| {
            if c.len() > max_len {
                bail!(
                    "a continuation of {} tokens is longer than the model's context ({max_len})",
                    c.len()
                );
            }
            let keep = (max_len + 1 - c.len()).min(ids.context.len());
            Ok(ids.context[ids.context.len() - keep..].to_vec())
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The harness' `acc_norm` choice: argmax of log-likelihood / the option's length in
/// characters (`len(choice)` in Python, the option without the leading space).
pub fn argmax_norm(logprobs: &[f32], options: &[String]) -> usize {
    argmax(
        &logprobs
            .iter()
            .zip(options)
            .map(|(l, o)| l / o.chars().count().max(1) as f32)
            .collect::<Vec<_>>(),
    )
}

/// The first index of the largest value (numpy's argmax).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Level;
    use std::sync::Arc;

    fn q(pid: &str, idx: usize, question: &str, label: usize, article: &Arc<str>) -> Question {
        Question {
            id: Question::make_id(pid, idx),
            passage_id: pid.into(),
            question_index: idx,
            level: Level::Middle,
            article: article.clone(),
            question: question.into(),
            options: vec![
                "red".into(),
                "green".into(),
                "a blue one".into(),
                "none".into(),
            ],
            label,
            category: None,
        }
    }

    #[test]
    fn harness_context_strings() {
        let a: Arc<str> = Arc::from("A text.");
        let b: Arc<str> = Arc::from("Other.");
        // Input order: passage p's questions out of order, another passage between them.
        let qs = vec![
            q("p", 1, "The box is  _  .", 1, &a),
            q("r", 0, "Why?", 3, &b),
            q("p", 0, "What colour?", 0, &a),
            q("p", 2, "Which one?", 2, &a),
        ];
        let last = documents(&qs, Protocol::HarnessLast);
        assert_eq!(last.len(), 2);
        assert_eq!(last[0].question, 3);
        assert_eq!(
            last[0].context,
            "Article: A text.\n\nQuestion: What colour?\nAnswer: red\nThe box is green\nWhich one?"
        );
        assert_eq!(last[0].continuations[2], " a blue one");
        assert_eq!(last[1].context, "Article: Other.\n\nWhy?");
        let all = documents(&qs, Protocol::HarnessAll);
        let order: Vec<usize> = all.iter().map(|d| d.question).collect();
        assert_eq!(order, vec![2, 0, 3, 1]);
        assert_eq!(all[0].context, "Article: A text.\n\nWhat colour?");
        assert_eq!(
            all[1].context,
            "Article: A text.\n\nQuestion: What colour?\nAnswer: red\nThe box is  _  ."
        );
    }

    #[test]
    fn truncation_keeps_the_tail_per_option() {
        let ids = LmIds {
            context: (0..10).collect(),
            continuations: vec![vec![100], vec![100, 101, 102]],
        };
        assert_eq!(truncated_contexts(&ids, 12).unwrap(), None);
        let t = truncated_contexts(&ids, 10).unwrap().unwrap();
        // max_len + 1 - len(cont): 10 and 8 context ids.
        assert_eq!(t[0], (0..10).collect::<Vec<u32>>());
        assert_eq!(t[1], (2..10).collect::<Vec<u32>>());
        assert!(truncated_contexts(&ids, 2).is_err());
    }

    #[test]
    fn acc_norm_divides_by_characters() {
        let opts: Vec<String> = vec!["ab".into(), "abcdef".into()];
        // -4/2 = -2 vs -6/6 = -1: the longer option wins after normalisation.
        assert_eq!(argmax(&[-4.0, -6.0]), 0);
        assert_eq!(argmax_norm(&[-4.0, -6.0], &opts), 1);
        assert_eq!(argmax(&[1.0, 1.0]), 0);
    }
}
