//! Turning questions into model inputs exactly as ALBERT's own RACE recipe does
//! (google-research/albert `race_utils.py`, `read_examples` and `convert_single_example`):
//!
//! - the QA text is the question with every `_` replaced by the option, or, without `_`,
//!   question + " " + option;
//! - QA tokens keep their last `max_qa_len`; the article keeps its first
//!   `max_seq_len - 3 - len(qa)`;
//! - the sequence is `[CLS] article [SEP] qa [SEP]`, segment ids 0 then 1.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::data::Question;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatConfig {
    pub max_seq_len: usize,
    pub max_qa_len: usize,
}

impl Default for FormatConfig {
    fn default() -> Self {
        Self {
            max_seq_len: 512,
            max_qa_len: 128,
        }
    }
}

impl FormatConfig {
    /// Checks the lengths against each other and against the model's position table.
    pub fn validate(&self, max_positions: usize) -> Result<()> {
        if self.max_seq_len > max_positions {
            bail!(
                "--max-seq-len {} exceeds the model's max_position_embeddings ({max_positions})",
                self.max_seq_len
            );
        }
        if self.max_qa_len == 0 || self.max_qa_len + 3 >= self.max_seq_len {
            bail!(
                "--max-qa-len {} must be at least 1 and leave room for the article: below --max-seq-len {} minus 3",
                self.max_qa_len,
                self.max_seq_len
            );
        }
        Ok(())
    }
}

/// The QA text for one option (`race_utils.read_examples`).
pub fn qa_text(question: &str, option: &str) -> String {
    if question.contains('_') {
        question.replace('_', option)
    } else {
        format!("{question} {option}")
    }
}

/// Token ids of one question: one row per option.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub input_ids: Vec<Vec<u32>>,
    pub token_type_ids: Vec<Vec<u32>>,
}

impl Features {
    /// Length of the longest option sequence.
    pub fn max_len(&self) -> usize {
        self.input_ids.iter().map(Vec::len).max().unwrap_or(0)
    }

    pub fn choices(&self) -> usize {
        self.input_ids.len()
    }
}

/// A tokenizer with the special ids the RACE format needs.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    pub cls: u32,
    pub sep: u32,
}

impl TextEncoder {
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Self::new(tokenizer).with_context(|| format!("in tokenizer {}", path.display()))
    }

    pub fn new(tokenizer: Tokenizer) -> Result<Self> {
        let id = |tok: &str| {
            tokenizer.token_to_id(tok).with_context(|| {
                format!("the tokenizer has no {tok} token, which ALBERT's input format needs")
            })
        };
        Ok(Self {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            tokenizer,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text` without special tokens.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizer failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `[CLS] ctx [SEP] qa [SEP]` after ALBERT's truncation (`convert_single_example`).
    pub fn assemble(&self, ctx: &[u32], qa: &[u32], cfg: &FormatConfig) -> (Vec<u32>, Vec<u32>) {
        let qa = &qa[qa.len().saturating_sub(cfg.max_qa_len)..];
        let ctx = &ctx[..ctx.len().min(cfg.max_seq_len - 3 - qa.len())];
        let mut ids = Vec::with_capacity(ctx.len() + qa.len() + 3);
        ids.push(self.cls);
        ids.extend_from_slice(ctx);
        ids.push(self.sep);
        ids.extend_from_slice(qa);
        ids.push(self.sep);
        let mut types = vec![0u32; ctx.len() + 2];
        types.resize(ids.len(), 1);
        (ids, types)
    }

    /// Features for every question, in input order. Each distinct article is tokenised once
    /// (questions of a passage share it), and the work runs in parallel.
    pub fn encode_all(&self, questions: &[Question], cfg: &FormatConfig) -> Result<Vec<Features>> {
        let mut slot: HashMap<*const u8, usize> = HashMap::new();
        let mut articles: Vec<&str> = Vec::new();
        let article_of: Vec<usize> = questions
            .iter()
            .map(|q| {
                *slot.entry(q.article.as_ptr()).or_insert_with(|| {
                    articles.push(&q.article);
                    articles.len() - 1
                })
            })
            .collect();
        let article_ids = articles
            .par_iter()
            .map(|a| self.ids(a))
            .collect::<Result<Vec<_>>>()?;
        questions
            .par_iter()
            .zip(article_of.par_iter())
            .map(|(q, &a)| {
                let ctx = &article_ids[a];
                let mut f = Features {
                    input_ids: Vec::new(),
                    token_type_ids: Vec::new(),
                };
                for option in &q.options {
                    let qa = self.ids(&qa_text(&q.question, option))?;
                    let (ids, types) = self.assemble(ctx, &qa, cfg);
                    f.input_ids.push(ids);
                    f.token_type_ids.push(types);
                }
                Ok(f)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qa_text_follows_race_utils() {
        assert_eq!(
            qa_text("Where is Tom?", "At home."),
            "Where is Tom? At home."
        );
        assert_eq!(
            qa_text("Tom went _ because _ .", "out"),
            "Tom went out because out ."
        );
    }

    fn encoder() -> TextEncoder {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/datasets/models/tiny-albert/tokenizer.json"
        );
        TextEncoder::from_file(Path::new(path)).unwrap()
    }

    #[test]
    fn assemble_keeps_the_last_qa_tokens_and_the_first_article_tokens() {
        let enc = encoder();
        let ctx: Vec<u32> = (100..140).collect();
        let qa: Vec<u32> = (200..220).collect();
        let cfg = FormatConfig {
            max_seq_len: 32,
            max_qa_len: 8,
        };
        let (ids, types) = enc.assemble(&ctx, &qa, &cfg);
        assert_eq!(ids.len(), 32);
        assert_eq!(ids[0], enc.cls);
        assert_eq!(&ids[1..22], &ctx[..21]);
        assert_eq!(ids[22], enc.sep);
        assert_eq!(&ids[23..31], &qa[12..]);
        assert_eq!(ids[31], enc.sep);
        assert_eq!(types.iter().filter(|&&t| t == 0).count(), 23);
        assert!(types[23..].iter().all(|&t| t == 1));
        // Short inputs are not padded or cut.
        let (ids, _) = enc.assemble(&ctx[..3], &qa[..2], &cfg);
        assert_eq!(ids.len(), 3 + 2 + 3);
    }

    #[test]
    fn lengths_are_validated() {
        assert!(FormatConfig {
            max_seq_len: 512,
            max_qa_len: 128
        }
        .validate(512)
        .is_ok());
        assert!(FormatConfig {
            max_seq_len: 513,
            max_qa_len: 128
        }
        .validate(512)
        .is_err());
        assert!(FormatConfig {
            max_seq_len: 64,
            max_qa_len: 61
        }
        .validate(512)
        .is_err());
        assert!(FormatConfig {
            max_seq_len: 64,
            max_qa_len: 0
        }
        .validate(512)
        .is_err());
    }
}
