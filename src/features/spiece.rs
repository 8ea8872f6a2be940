//! SentencePiece `spiece.model` → the fast tokenizer transformers' `AlbertConverter` builds.
//!
//! A repository without `tokenizer.json` still has ALBERT's SentencePiece model. The converted
//! tokenizer is, like the one the Hub serves for `albert-*-v2`:
//!
//! - model: Unigram over the model's pieces and scores; a piece ending in a digit and a comma
//!   (`▁1,`, `▁2010,`) has its score lowered by 100, every other score is kept;
//! - normalizer: `` and '' → ", then NFKD and accent stripping (unless `keep_accents`),
//!   lowercase (if `do_lower_case`), the model's precompiled charsmap, runs of spaces → one;
//! - Metaspace (`▁`, prepend always) as pre-tokenizer and decoder;
//! - added tokens: control pieces (`[CLS]`, `[SEP]`, …) as special tokens, user-defined pieces as
//!   plain ones, both matched before normalisation;
//! - post-processor `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`.
//!
//! The protobuf (`sentencepiece_model.proto`) is read by a minimal wire-format reader: only the
//! fields the conversion needs are decoded, everything else is skipped.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use tokenizers::Tokenizer;

/// `SentencePiece.Type` values.
const TYPE_NORMAL: u64 = 1;
const TYPE_UNKNOWN: u64 = 2;
const TYPE_CONTROL: u64 = 3;
const TYPE_USER_DEFINED: u64 = 4;
/// `TrainerSpec.ModelType.UNIGRAM`.
const MODEL_UNIGRAM: u64 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: u64,
}

/// The parts of a SentencePiece `ModelProto` the conversion uses.
#[derive(Debug, Clone, Default)]
pub struct SpModel {
    pub pieces: Vec<Piece>,
    /// `trainer_spec.model_type` (1 = Unigram, the default).
    pub model_type: u64,
    pub unk_id: Option<u64>,
    pub byte_fallback: bool,
    /// `normalizer_spec.precompiled_charsmap`.
    pub precompiled_charsmap: Vec<u8>,
}

/// Options of transformers' `AlbertTokenizer` that change the conversion
/// (from `tokenizer_config.json` when the repository has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpieceOptions {
    pub do_lower_case: bool,
    pub keep_accents: bool,
}

impl Default for SpieceOptions {
    fn default() -> Self {
        Self {
            do_lower_case: true,
            keep_accents: false,
        }
    }
}

impl SpieceOptions {
    /// Reads `do_lower_case` and `keep_accents` from a `tokenizer_config.json`; absent keys keep
    /// `AlbertTokenizer`'s defaults.
    pub fn from_tokenizer_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let mut o = Self::default();
        if let Some(b) = v.get("do_lower_case").and_then(Value::as_bool) {
            o.do_lower_case = b;
        }
        if let Some(b) = v.get("keep_accents").and_then(Value::as_bool) {
            o.keep_accents = b;
        }
        Ok(o)
    }
}

/// A cursor over protobuf wire format.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum WireValue<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| anyhow!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint longer than 10 bytes at byte {}", self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                anyhow!(
                    "field of {n} bytes at byte {} runs past the end ({} bytes)",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, WireValue<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                WireValue::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?)?;
                WireValue::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                WireValue::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            t => bail!("unsupported protobuf wire type {t} at byte {}", self.pos),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn parse_piece(buf: &[u8]) -> Result<Piece> {
    let mut w = Wire::new(buf);
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: TYPE_NORMAL,
    };
    while let Some((field, value)) = w.field()? {
        match (field, value) {
            (1, WireValue::Bytes(b)) => {
                p.piece = String::from_utf8(b.to_vec()).context("piece is not UTF-8")?
            }
            (2, WireValue::Fixed32(bits)) => p.score = f32::from_bits(bits),
            (3, WireValue::Varint(t)) => p.kind = t,
            _ => {}
        }
    }
    Ok(p)
}

impl SpModel {
    /// Parses a serialized `ModelProto`.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut m = SpModel {
            model_type: MODEL_UNIGRAM,
            ..Default::default()
        };
        let mut w = Wire::new(buf);
        while let Some((field, value)) = w.field()? {
            match (field, value) {
                (1, WireValue::Bytes(b)) => m
                    .pieces
                    .push(parse_piece(b).with_context(|| format!("in piece {}", m.pieces.len()))?),
                (2, WireValue::Bytes(b)) => {
                    // TrainerSpec
                    let mut t = Wire::new(b);
                    while let Some((f, v)) = t.field().context("in trainer_spec")? {
                        match (f, v) {
                            (3, WireValue::Varint(x)) => m.model_type = x,
                            (35, WireValue::Varint(x)) => m.byte_fallback = x != 0,
                            (40, WireValue::Varint(x)) => m.unk_id = Some(x),
                            _ => {}
                        }
                    }
                }
                (3, WireValue::Bytes(b)) => {
                    // NormalizerSpec
                    let mut n = Wire::new(b);
                    while let Some((f, v)) = n.field().context("in normalizer_spec")? {
                        if let (2, WireValue::Bytes(map)) = (f, v) {
                            m.precompiled_charsmap = map.to_vec();
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            bail!("no pieces: this is not a SentencePiece model");
        }
        Ok(m)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let buf = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&buf).with_context(|| {
            format!(
                "{} is not a valid SentencePiece model (corrupt or truncated?)",
                path.display()
            )
        })
    }

    /// The unknown piece's id: `trainer_spec.unk_id`, else the piece of type UNKNOWN.
    fn unk(&self) -> Result<usize> {
        let id = match self.unk_id {
            Some(id) => usize::try_from(id)?,
            None => self
                .pieces
                .iter()
                .position(|p| p.kind == TYPE_UNKNOWN)
                .unwrap_or(0),
        };
        if id >= self.pieces.len() {
            bail!(
                "unk_id {id} is outside the vocabulary ({} pieces)",
                self.pieces.len()
            );
        }
        Ok(id)
    }
}

/// `convert_slow_tokenizer.check_number_comma`: true unless the piece ends in a digit and a comma.
fn keeps_score(piece: &str) -> bool {
    let mut rev = piece.chars().rev();
    !(rev.next() == Some(',') && rev.next().is_some_and(|c| c.is_ascii_digit()))
}

/// The converted tokenizer as `tokenizer.json` would hold it.
pub fn tokenizer_json(model: &SpModel, opts: SpieceOptions) -> Result<Value> {
    if model.model_type != MODEL_UNIGRAM {
        bail!(
            "SentencePiece model type {} is not supported: only Unigram models (ALBERT's) can be converted; provide a tokenizer.json instead",
            model.model_type
        );
    }
    let vocab: Vec<Value> = model
        .pieces
        .iter()
        .map(|p| {
            let score = f64::from(p.score);
            let score = if keeps_score(&p.piece) {
                score
            } else {
                score - 100.0
            };
            json!([p.piece, score])
        })
        .collect();

    let mut normalizers = vec![
        json!({"type": "Replace", "pattern": {"String": "``"}, "content": "\""}),
        json!({"type": "Replace", "pattern": {"String": "''"}, "content": "\""}),
    ];
    if !opts.keep_accents {
        normalizers.push(json!({"type": "NFKD"}));
        normalizers.push(json!({"type": "StripAccents"}));
    }
    if opts.do_lower_case {
        normalizers.push(json!({"type": "Lowercase"}));
    }
    if !model.precompiled_charsmap.is_empty() {
        let map = base64::engine::general_purpose::STANDARD.encode(&model.precompiled_charsmap);
        normalizers.push(json!({"type": "Precompiled", "precompiled_charsmap": map}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}));

    let added: Vec<Value> = model
        .pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == TYPE_CONTROL || p.kind == TYPE_USER_DEFINED)
        .map(|(id, p)| {
            json!({
                "id": id, "content": p.piece, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": p.kind == TYPE_CONTROL
            })
        })
        .collect();

    let id_of = |tok: &str| {
        model
            .pieces
            .iter()
            .position(|p| p.piece == tok)
            .ok_or_else(|| {
                anyhow!(
                    "the SentencePiece model has no {tok} piece, which ALBERT's input format needs"
                )
            })
    };
    let (cls, sep) = (id_of("[CLS]")?, id_of("[SEP]")?);
    let metaspace = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true});
    let special =
        |name: &str, type_id: u32| json!({"SpecialToken": {"id": name, "type_id": type_id}});
    let seq = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});

    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}
            }
        },
        "decoder": metaspace,
        "model": {
            "type": "Unigram",
            "unk_id": model.unk()?,
            "vocab": vocab,
            "byte_fallback": model.byte_fallback
        }
    }))
}

/// Converts `spiece.model` into a fast tokenizer (in memory; nothing is written).
pub fn convert(model: &SpModel, opts: SpieceOptions) -> Result<Tokenizer> {
    let json = tokenizer_json(model, opts)?;
    let text = serde_json::to_string(&json)?;
    text.parse::<Tokenizer>()
        .map_err(|e| anyhow!("the converted tokenizer does not load: {e}"))
}

/// Reads and converts a `spiece.model` file.
pub fn convert_file(path: &Path, opts: SpieceOptions) -> Result<Tokenizer> {
    convert(&SpModel::from_file(path)?, opts)
        .with_context(|| format!("cannot convert {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made ModelProto: pieces, trainer_spec.unk_id, normalizer_spec (empty charsmap).
    fn encode_piece(piece: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut p = vec![0x0a, piece.len() as u8];
        p.extend_from_slice(piece.as_bytes());
        p.push(0x15);
        p.extend_from_slice(&score.to_le_bytes());
        p.extend_from_slice(&[0x18, kind as u8]);
        let mut out = vec![0x0a, p.len() as u8];
        out.extend(p);
        out
    }

    fn tiny_model() -> Vec<u8> {
        let mut buf = Vec::new();
        for (piece, score, kind) in [
            ("<pad>", 0.0, TYPE_CONTROL),
            ("<unk>", 0.0, TYPE_UNKNOWN),
            ("[CLS]", 0.0, TYPE_CONTROL),
            ("[SEP]", 0.0, TYPE_CONTROL),
            ("(", 0.0, TYPE_USER_DEFINED),
            ("\u{2581}", -2.0, TYPE_NORMAL),
            ("\u{2581}the", -3.0, TYPE_NORMAL),
            ("\u{2581}1,", -4.0, TYPE_NORMAL),
            ("a", -5.0, TYPE_NORMAL),
            ("t", -6.0, TYPE_NORMAL),
            ("h", -6.0, TYPE_NORMAL),
            ("e", -6.0, TYPE_NORMAL),
            ("1", -6.0, TYPE_NORMAL),
            (",", -6.0, TYPE_NORMAL),
        ] {
            buf.extend(encode_piece(piece, score, kind));
        }
        // trainer_spec { unk_id: 1 } : field 40 varint = key (40<<3)|0 = 320 = 0xc0 0x02
        buf.extend_from_slice(&[0x12, 0x03, 0xc0, 0x02, 0x01]);
        buf
    }

    #[test]
    fn parses_pieces_scores_types_and_unk() {
        let m = SpModel::parse(&tiny_model()).unwrap();
        assert_eq!(m.pieces.len(), 14);
        assert_eq!(m.pieces[6].piece, "\u{2581}the");
        assert_eq!(m.pieces[6].score, -3.0);
        assert_eq!(m.pieces[4].kind, TYPE_USER_DEFINED);
        assert_eq!(m.unk_id, Some(1));
        assert_eq!(m.model_type, MODEL_UNIGRAM);
    }

    #[test]
    fn number_comma_pieces_are_lowered_by_100_others_kept() {
        assert!(keeps_score("\u{2581}the"));
        assert!(keeps_score(","));
        assert!(keeps_score("a,"));
        assert!(!keeps_score("1,"));
        assert!(!keeps_score("\u{2581}2010,"));
        let m = SpModel::parse(&tiny_model()).unwrap();
        let j = tokenizer_json(&m, SpieceOptions::default()).unwrap();
        let vocab = j["model"]["vocab"].as_array().unwrap();
        assert_eq!(vocab[6], json!(["\u{2581}the", -3.0]));
        assert_eq!(vocab[7], json!(["\u{2581}1,", -104.0]));
        assert_eq!(j["model"]["unk_id"], json!(1));
    }

    #[test]
    fn converted_tokenizer_lowercases_adds_cls_sep_and_splits_user_pieces() {
        let m = SpModel::parse(&tiny_model()).unwrap();
        let tok = convert(&m, SpieceOptions::default()).unwrap();
        let enc = tok.encode("The (the", true).unwrap();
        // [CLS] ▁the ▁ ( ▁the [SEP]: "(" is a user-defined piece matched before normalisation.
        assert_eq!(enc.get_ids(), &[2, 6, 5, 4, 6, 3]);
        let keep = SpieceOptions {
            do_lower_case: false,
            keep_accents: false,
        };
        let enc = convert(&m, keep).unwrap().encode("The", false).unwrap();
        assert_ne!(
            enc.get_ids(),
            &[6],
            "without lowercasing `The` is not `▁the`"
        );
    }

    #[test]
    fn truncated_or_foreign_input_is_an_error_not_a_panic() {
        let buf = tiny_model();
        for cut in [1, 2, 5, buf.len() - 1] {
            assert!(SpModel::parse(&buf[..cut]).is_err(), "cut at {cut}");
        }
        assert!(SpModel::parse(b"{\"not\": \"protobuf\"}").is_err());
        assert!(SpModel::parse(&[]).is_err());
        let mut bpe = SpModel::parse(&buf).unwrap();
        bpe.model_type = 2;
        let err = tokenizer_json(&bpe, SpieceOptions::default()).unwrap_err();
        assert!(err.to_string().contains("Unigram"), "{err}");
    }
}
