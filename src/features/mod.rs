//! Turning questions into model inputs exactly as ALBERT's own RACE recipe does
//! (google-research/albert `race_utils.py`, `read_examples` and `convert_single_example`):
//!
//! - the QA text is the question with every `_` replaced by the option, or, without `_`,
//!   question + " " + option;
//! - QA tokens keep their last `max_qa_len`; the article keeps its first
//!   `max_seq_len - 3 - len(qa)`;
//! - the sequence is `[CLS] article [SEP] qa [SEP]`, segment ids 0 then 1.
//!
//! Other families keep these rules but lay the pair out as their tokenizer's post-processor
//! does (tokenizer.json's `post_processor`: RoBERTa's `<s> A </s></s> B </s>` with type ids 0,
//! BERT's template, …): [`PairTemplate`] reads that layout off the post-processor itself, and
//! the article's budget is `max_seq_len` minus the template's special tokens minus the QA.
//!
//! Loading a tokenizer is here too: [`tokenizer`] (which file a model folder has) and
//! [`spiece`] (SentencePiece models converted as transformers' `AlbertConverter` does).

pub mod gguf_tokenizer;
pub mod harness;
pub mod spiece;
pub mod tokenizer;

pub use tokenizer::TokenizerFile;

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
                "--max-seq-len {} exceeds the longest input the model's position table allows ({max_positions})",
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

/// One piece of a pair layout: a special token, or where sequence A or B goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Special(u32),
    A,
    B,
}

/// How the tokenizer lays out a pair (A = article, B = question + option): each piece with its
/// token type id, as the tokenizer's post-processor produces them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairTemplate {
    pieces: Vec<(Piece, u32)>,
}

/// Stand-in ids for the two sequences while reading a post-processor's layout.
const SENTINEL_A: u32 = u32::MAX - 1;
const SENTINEL_B: u32 = u32::MAX - 2;

impl PairTemplate {
    /// ALBERT's `[CLS] A [SEP] B [SEP]`, types 0 0 0 1 1.
    pub fn cls_sep(cls: u32, sep: u32) -> Self {
        Self {
            pieces: vec![
                (Piece::Special(cls), 0),
                (Piece::A, 0),
                (Piece::Special(sep), 0),
                (Piece::B, 1),
                (Piece::Special(sep), 1),
            ],
        }
    }

    /// The layout the tokenizer's post-processor gives a pair: it is run once on two one-token
    /// sequences and the result read back. Without a post-processor, ALBERT's layout with the
    /// tokenizer's `[CLS]` and `[SEP]`.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Result<Self> {
        if tokenizer.get_post_processor().is_none() {
            let id = |tok: &str| {
                tokenizer.token_to_id(tok).with_context(|| {
                    format!("the tokenizer has no post-processor and no {tok} token, so the input layout is unknown")
                })
            };
            return Ok(Self::cls_sep(id("[CLS]")?, id("[SEP]")?));
        }
        let one = |id: u32, type_id: u32| {
            tokenizers::Encoding::from_tokens(
                vec![tokenizers::Token::new(id, String::new(), (0, 0))],
                type_id,
            )
        };
        let pair = tokenizer
            .post_process(one(SENTINEL_A, 0), Some(one(SENTINEL_B, 1)), true)
            .map_err(|e| anyhow!("the tokenizer's post-processor failed on a pair: {e}"))?;
        let pieces: Vec<(Piece, u32)> = pair
            .get_ids()
            .iter()
            .zip(pair.get_type_ids())
            .map(|(&id, &t)| {
                let piece = match id {
                    SENTINEL_A => Piece::A,
                    SENTINEL_B => Piece::B,
                    id => Piece::Special(id),
                };
                (piece, t)
            })
            .collect();
        let count = |p: Piece| pieces.iter().filter(|(q, _)| *q == p).count();
        let at = |p: Piece| pieces.iter().position(|(q, _)| *q == p);
        if count(Piece::A) != 1 || count(Piece::B) != 1 || at(Piece::A) > at(Piece::B) {
            bail!(
                "the tokenizer's post-processor does not lay out a pair of sequences as one first sequence then one second (got {} pieces)",
                pieces.len()
            );
        }
        Ok(Self { pieces })
    }

    /// Special tokens the layout adds to a pair.
    pub fn specials(&self) -> usize {
        self.pieces
            .iter()
            .filter(|(p, _)| matches!(p, Piece::Special(_)))
            .count()
    }

    /// `a` and `b` laid out: (ids, type ids).
    fn lay_out(&self, a: &[u32], b: &[u32]) -> (Vec<u32>, Vec<u32>) {
        let n = a.len() + b.len() + self.specials();
        let (mut ids, mut types) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for &(piece, t) in &self.pieces {
            match piece {
                Piece::Special(id) => ids.push(id),
                Piece::A => ids.extend_from_slice(a),
                Piece::B => ids.extend_from_slice(b),
            }
            types.resize(ids.len(), t);
        }
        (ids, types)
    }
}

/// A tokenizer with the pair layout the RACE format needs.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    template: PairTemplate,
}

impl TextEncoder {
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Self::new(tokenizer).with_context(|| format!("in tokenizer {}", path.display()))
    }

    /// The tokenizer's own truncation and padding settings are switched off (sentence-embedding
    /// tokenizers ship with `max_length` 128, say): the RACE rules below do the truncating.
    pub fn new(mut tokenizer: Tokenizer) -> Result<Self> {
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("cannot switch the tokenizer's truncation off: {e}"))?;
        tokenizer.with_padding(None);
        Ok(Self {
            template: PairTemplate::from_tokenizer(&tokenizer)?,
            tokenizer,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn template(&self) -> &PairTemplate {
        &self.template
    }

    /// Token ids of `text` without special tokens.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizer failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The pair laid out after ALBERT's truncation (`convert_single_example`): the QA keeps its
    /// last `max_qa_len` tokens, the article its first `max_seq_len - specials - len(qa)`.
    pub fn assemble(&self, ctx: &[u32], qa: &[u32], cfg: &FormatConfig) -> (Vec<u32>, Vec<u32>) {
        let qa = &qa[qa.len().saturating_sub(cfg.max_qa_len)..];
        let budget = cfg
            .max_seq_len
            .saturating_sub(self.template.specials() + qa.len());
        let ctx = &ctx[..ctx.len().min(budget)];
        self.template.lay_out(ctx, qa)
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
        let (cls, sep) = (2, 3);
        assert_eq!(enc.template(), &PairTemplate::cls_sep(cls, sep));
        assert_eq!(ids[0], cls);
        assert_eq!(&ids[1..22], &ctx[..21]);
        assert_eq!(ids[22], sep);
        assert_eq!(&ids[23..31], &qa[12..]);
        assert_eq!(ids[31], sep);
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
