//! Converting ALBERT's real `spiece.model` must give the tokenizer the Hub serves for
//! albert-*-v2: same structure, and the same ids on every article, question and option of the
//! real RACE-M test split. Uses ../shared when present (a user's clone has none) and says so
//! when it skips.

use std::collections::HashSet;
use std::path::PathBuf;

use race_eval::features::spiece::{self, SpModel, SpieceOptions};
use tokenizers::Tokenizer;

fn shared() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let needed = [
        "tokenizer/albert-spiece.model",
        "tokenizer/albert-base-v2-tokenizer.json",
        "data/race-m/test.jsonl",
    ];
    if needed.iter().all(|f| dir.join(f).is_file()) {
        Some(dir)
    } else {
        eprintln!("SKIPPED: ../shared (real tokenizer and RACE-M data) is not present");
        None
    }
}

#[test]
fn converted_spiece_matches_the_hub_tokenizer_json() {
    let Some(dir) = shared() else { return };
    let model = SpModel::from_file(&dir.join("tokenizer/albert-spiece.model")).unwrap();
    let ours = spiece::tokenizer_json(&model, SpieceOptions::default()).unwrap();
    let text =
        std::fs::read_to_string(dir.join("tokenizer/albert-base-v2-tokenizer.json")).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "added_tokens",
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
    ] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    assert_eq!(ours["model"]["unk_id"], theirs["model"]["unk_id"]);
    let (a, b) = (
        ours["model"]["vocab"].as_array().unwrap(),
        theirs["model"]["vocab"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x[0], y[0]);
        let (sx, sy) = (x[1].as_f64().unwrap(), y[1].as_f64().unwrap());
        assert!((sx - sy).abs() < 1e-9, "{x} vs {y}");
    }
    eprintln!(
        "tokenizer.json structure and {} vocabulary scores match",
        a.len()
    );
}

#[test]
fn converted_spiece_gives_the_same_ids_on_race_m_test() {
    let Some(dir) = shared() else { return };
    let ours = spiece::convert_file(
        &dir.join("tokenizer/albert-spiece.model"),
        SpieceOptions::default(),
    )
    .unwrap();
    let theirs = Tokenizer::from_file(dir.join("tokenizer/albert-base-v2-tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(dir.join("data/race-m/test.jsonl")).unwrap();
    let mut texts: Vec<String> = Vec::new();
    let mut seen_articles = HashSet::new();
    let mut counts = [0usize; 3];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let article = row["article"].as_str().unwrap().to_string();
        if seen_articles.insert(article.clone()) {
            texts.push(article);
            counts[0] += 1;
        }
        texts.push(row["question"].as_str().unwrap().to_string());
        counts[1] += 1;
        for o in row["options"].as_array().unwrap() {
            texts.push(o.as_str().unwrap().to_string());
            counts[2] += 1;
        }
    }
    let mut tokens = 0usize;
    for t in &texts {
        let a = ours.encode(t.as_str(), true).unwrap();
        let b = theirs.encode(t.as_str(), true).unwrap();
        assert_eq!(a.get_ids(), b.get_ids(), "ids differ on {t:?}");
        tokens += b.get_ids().len();
    }
    // A pair, as the RACE format builds it, through the post-processor.
    let a = ours
        .encode((texts[0].as_str(), texts[1].as_str()), true)
        .unwrap();
    let b = theirs
        .encode((texts[0].as_str(), texts[1].as_str()), true)
        .unwrap();
    assert_eq!(
        (a.get_ids(), a.get_type_ids()),
        (b.get_ids(), b.get_type_ids())
    );
    assert_eq!(
        counts,
        [362, 1436, 5744],
        "RACE-M test: passages, questions, options"
    );
    eprintln!(
        "identical ids on {} texts ({} articles, {} questions, {} options; {tokens} tokens)",
        texts.len(),
        counts[0],
        counts[1],
        counts[2]
    );
}
