//! Test helpers for training: a synthetic RACE-format task whose answer is recoverable from the
//! passage (the one option whose word appears in it), written as JSON lines.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use race_eval::features::TextEncoder;
use race_eval::model::seeded_dropout::SplitMix64;

pub const TINY: &str = "datasets/models/tiny-albert";

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Words of the model's tokenizer that are one token each (so every option is one token).
pub fn single_token_words(model: &Path) -> Vec<String> {
    let enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("tokenizer.json")).unwrap())
            .unwrap();
    let mut words: Vec<String> = json["model"]["vocab"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e[0].as_str())
        .filter_map(|p| p.strip_prefix('\u{2581}'))
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_lowercase()))
        .map(str::to_string)
        .filter(|w| enc.ids(w).map(|ids| ids.len() == 1).unwrap_or(false))
        .collect();
    words.sort();
    words.dedup();
    words
}

/// Writes `{split}.jsonl` with `n` questions: a passage of `passage_words` distinct words, and
/// four one-word options of which exactly the gold one appears in the passage.
pub fn write_split(
    dir: &Path,
    split: &str,
    n: usize,
    words: &[String],
    passage_words: usize,
    seed: u64,
) {
    assert!(words.len() >= passage_words + 3, "too few words");
    let mut rng = SplitMix64(seed);
    let mut f = std::fs::File::create(dir.join(format!("{split}.jsonl"))).unwrap();
    for q in 0..n {
        let mut pool: Vec<usize> = (0..words.len()).collect();
        for i in 0..passage_words + 3 {
            let j = i + rng.below(pool.len() - i);
            pool.swap(i, j);
        }
        let passage: Vec<&str> = pool[..passage_words]
            .iter()
            .map(|&i| words[i].as_str())
            .collect();
        let gold = passage[rng.below(passage_words)];
        let label = rng.below(4);
        let mut distractors = pool[passage_words..passage_words + 3]
            .iter()
            .map(|&i| words[i].as_str());
        let options: Vec<&str> = (0..4)
            .map(|k| {
                if k == label {
                    gold
                } else {
                    distractors.next().unwrap()
                }
            })
            .collect();
        let answer = ["A", "B", "C", "D"][label];
        let row = serde_json::json!({
            "example_id": format!("middle{q}.txt"),
            "article": passage.join(" ") + ".",
            "question": "which word is in the passage?",
            "options": options,
            "answer": answer,
        });
        writeln!(f, "{row}").unwrap();
    }
}

/// A folder with train.jsonl and dev.jsonl of the synthetic task: passages of three words drawn
/// from the tokenizer's first 16 one-token words (a small vocabulary, so that a tiny model learns
/// the matching within a few hundred steps).
pub fn synthetic_task(dir: &Path, model: &Path, train: usize, dev: usize) -> PathBuf {
    let words = single_token_words(model);
    let words = &words[..16];
    let data = dir.join("synthetic");
    std::fs::create_dir_all(&data).unwrap();
    write_split(&data, "train", train, words, 3, 1);
    write_split(&data, "dev", dev, words, 3, 2);
    data
}
