//! The tokenizer of a GGUF file, built from its metadata (`tokenizer.ggml.*`) with the
//! `tokenizers` crate, for files whose tokenizer is byte-level BPE (`tokenizer.ggml.model =
//! "gpt2"`: SmolLM, StarCoder, GPT-2 style vocabularies).
//!
//! - vocabulary: `tokenizer.ggml.tokens` (id = position), merges: `tokenizer.ggml.merges`
//!   (`"a b"`, highest priority first);
//! - tokens of type 3 (control, e.g. `<|im_start|>`) are special added tokens and type 4
//!   (user-defined) plain added tokens, matched in the text before BPE as transformers and
//!   llama.cpp (with special parsing) do;
//! - the pre-tokenizer follows `tokenizer.ggml.pre` as llama.cpp reads it: `default`/`gpt2` is
//!   GPT-2's split, `smollm` (and the other names llama.cpp gives the same regexes:
//!   `starcoder`, `refact`, `codeshell`, `command-r`) first isolates every digit (`\p{N}`), which
//!   is the `Digits(individual_digits)` + `ByteLevel` of SmolLM2's own tokenizer.json; any
//!   other name is refused rather than guessed;
//! - a BOS (`tokenizer.ggml.bos_token_id`) is prepended only when
//!   `tokenizer.ggml.add_bos_token` is true (SmolLM2's file says false). transformers 4.57's own
//!   GGUF conversion prepends it regardless; lm-evaluation-harness runs of such a file need
//!   `add_bos_token=False` to see what llama.cpp sees.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Map};
use tokenizers::Tokenizer;

/// `tokenizer.ggml.pre` values whose pre-tokenizer is GPT-2's regex after isolating digits.
const DIGITS_THEN_GPT2: &[&str] = &["smollm", "starcoder", "refact", "codeshell", "command-r"];

fn strings<'a>(c: &'a Content, key: &str) -> Result<Vec<&'a str>> {
    let v = c
        .metadata
        .get(key)
        .with_context(|| format!("the GGUF metadata has no `{key}`"))?;
    let arr = v.to_vec().map_err(|e| anyhow!("`{key}`: {e}"))?;
    arr.iter()
        .map(|v| {
            v.to_string()
                .map(|s| s.as_str())
                .map_err(|e| anyhow!("`{key}`: {e}"))
        })
        .collect()
}

fn id(c: &Content, key: &str) -> Result<Option<u32>> {
    match c.metadata.get(key) {
        None => Ok(None),
        Some(Value::U32(v)) => Ok(Some(*v)),
        Some(Value::I32(v)) if *v >= 0 => Ok(Some(*v as u32)),
        Some(v) => bail!("`{key}`: expected a token id, found {v:?}"),
    }
}

/// The tokenizer of the GGUF file at `path` (only the metadata is read).
pub fn from_gguf(path: &Path) -> Result<Tokenizer> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let content =
        Content::read(&mut f).with_context(|| format!("{}: not a GGUF file", path.display()))?;
    from_metadata(&content).with_context(|| format!("{}: its tokenizer", path.display()))
}

/// The tokenizer described by a GGUF file's metadata.
pub fn from_metadata(c: &Content) -> Result<Tokenizer> {
    let model = c
        .metadata
        .get("tokenizer.ggml.model")
        .context("the GGUF metadata has no `tokenizer.ggml.model`")?
        .to_string()
        .map_err(|e| anyhow!("`tokenizer.ggml.model`: {e}"))?;
    if model != "gpt2" {
        bail!("`tokenizer.ggml.model` = {model:?}: only byte-level BPE (\"gpt2\") is built from GGUF metadata");
    }
    let pre = match c.metadata.get("tokenizer.ggml.pre") {
        Some(v) => v
            .to_string()
            .map_err(|e| anyhow!("`tokenizer.ggml.pre`: {e}"))?
            .clone(),
        None => "default".into(),
    };
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = if pre == "default" || pre == "gpt2" {
        byte_level
    } else if DIGITS_THEN_GPT2.contains(&pre.as_str()) {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level
        ]})
    } else {
        bail!("`tokenizer.ggml.pre` = {pre:?}: this pre-tokenizer is not known here (known: default, gpt2, {})", DIGITS_THEN_GPT2.join(", "));
    };

    let tokens = strings(c, "tokenizer.ggml.tokens")?;
    let merges = strings(c, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match c.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| anyhow!("`tokenizer.ggml.token_type`: {e}"))?
            .iter()
            .map(|t| {
                t.to_i32()
                    .map_err(|e| anyhow!("`tokenizer.ggml.token_type`: {e}"))
            })
            .collect::<Result<_>>()?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        bail!(
            "`tokenizer.ggml.token_type` has {} entries for {} tokens",
            types.len(),
            tokens.len()
        );
    }
    let mut vocab = Map::new();
    for (i, t) in tokens.iter().enumerate() {
        if vocab.insert((*t).to_string(), json!(i)).is_some() {
            bail!("`tokenizer.ggml.tokens`: token {t:?} appears twice");
        }
    }
    let added: Vec<_> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == 3 || ty == 4)
        .map(|(i, (t, &ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": ty == 3})
        })
        .collect();
    let add_bos = matches!(
        c.metadata.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    let post_processor = match (add_bos, id(c, "tokenizer.ggml.bos_token_id")?) {
        (true, Some(bos)) => {
            let name = tokens
                .get(bos as usize)
                .with_context(|| format!("bos_token_id {bos} is not a token"))?;
            json!({"type": "TemplateProcessing",
                   "single": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                   "pair": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                            {"Sequence": {"id": "B", "type_id": 1}}],
                   "special_tokens": {*name: {"id": name, "ids": [bos], "tokens": [name]}}})
        }
        (true, None) => {
            bail!("`tokenizer.ggml.add_bos_token` is true but there is no bos_token_id")
        }
        (false, _) => serde_json::Value::Null,
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        }
    });
    let text = serde_json::to_string(&spec)?;
    text.parse::<Tokenizer>()
        .map_err(|e| anyhow!("building the tokenizer: {e}"))
}
