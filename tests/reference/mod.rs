//! The reference files of tests/fixtures/reference (transformers' ids and f32 logits, made by
//! the scripts in scripts/) and where the fetched MiniLM lies: shared by the parity, MiniLM and
//! bf16 tests. Each test binary uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Deserialize)]
pub struct Reference {
    /// Absent in the ALBERT fixtures, which predate the other families.
    pub model_type: Option<String>,
    pub pad_token_id: Option<u32>,
    /// The MiniLM references: the weights and data they were made from.
    pub weights_sha256: Option<String>,
    pub data_sha256: Option<String>,
    pub settings: Vec<Setting>,
}

#[derive(Deserialize)]
pub struct Setting {
    pub max_seq_len: usize,
    pub max_qa_len: usize,
    pub questions: Vec<RefQuestion>,
}

#[derive(Deserialize)]
pub struct RefQuestion {
    pub id: String,
    pub question_index: usize,
    pub label: usize,
    /// In full, except for RACE text, whose ids are kept only as hashes and lengths.
    pub input_ids: Option<Vec<Vec<u32>>>,
    pub token_type_ids: Option<Vec<Vec<u32>>>,
    pub lengths: Option<Vec<usize>>,
    pub ids_sha256: Option<Vec<String>>,
    pub types_sha256: Option<Vec<String>>,
    pub logits: Vec<f32>,
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// tests/fixtures/reference/NAME.json.
pub fn read(name: &str) -> Reference {
    read_json(&format!("{name}.json"))
}

/// Any JSON file under tests/fixtures/reference.
pub fn read_json<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = root().join("tests/fixtures/reference").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The MiniLM folder `scripts/fetch_minilm.sh` fills (`RACE_EVAL_MINILM`, else
/// `${RACE_EVAL_CACHE:-~/.cache/race-eval}/models/all-MiniLM-L6-v2`), or `None`, with the
/// reason printed, when it has not been fetched.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RACE_EVAL_MINILM") {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("RACE_EVAL_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/race-eval"))
            })?
            .join("models/all-MiniLM-L6-v2"),
    };
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no MiniLM weights at {} (run `bash scripts/fetch_minilm.sh`)",
            dir.display()
        );
        None
    }
}

/// The seeded classifier the MiniLM references were made with.
pub fn minilm_head() -> PathBuf {
    root().join("tests/fixtures/minilm/head.safetensors")
}
