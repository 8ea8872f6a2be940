//! Local files in the EleutherAI/race layout (what lm-evaluation-harness' `race` task reads):
//! one line per article with `article` and `problems`, a Python literal string as that dataset
//! stores it (or a JSON array); read as the same questions as the per-question layout.

use race_eval::data::{self, LevelFilter, LoadOptions};
use race_eval::features::harness::{self, Protocol};

fn load(text: &str) -> anyhow::Result<data::Dataset> {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("test.jsonl");
    std::fs::write(&path, text).unwrap();
    data::load(&path, &LoadOptions::default())
}

/// As Python's `str()` writes a list of problems: quotes chosen per string, escapes.
const PROBLEMS: &str = r#"[{'answer': 'C', 'options': ["Tom's dog", 'a "big" cat', 'a bird\\n', 'caf\xe9 \u200b'], 'question': 'What did Tom see?'}, {'answer': 'A', 'options': ['red', 'blue', 'green', 'grey'], 'question': 'The bird was  _  .'}, {'answer': 'D', 'options': ['1', '2', '3', '4'], 'question': 'How many?'}]"#;

fn article_line(id: Option<&str>, problems: serde_json::Value) -> String {
    let mut obj =
        serde_json::json!({"article": "Tom saw a bird.\nIt was red.", "problems": problems});
    if let Some(id) = id {
        obj["example_id"] = id.into();
    }
    obj.to_string()
}

#[test]
fn eleuther_layout_reads_as_questions() {
    let as_list = serde_json::json!([
        {"question": "Why?", "options": ["a", "b"], "answer": "B"}
    ]);
    let text = format!(
        "{}\n{}\n{}\n",
        article_line(Some("middle7.txt"), PROBLEMS.into()),
        article_line(None, as_list),
        // A per-question row may sit beside them.
        r#"{"example_id": "high3.txt", "article": "X.", "question": "Q?", "options": ["y", "z"], "answer": 0}"#
    );
    let ds = load(&text).unwrap();
    let qs = &ds.questions;
    assert_eq!(qs.len(), 5);
    assert_eq!(qs[0].id, "middle7.txt#0");
    assert_eq!(qs[0].level, data::Level::Middle);
    assert_eq!(&*qs[0].article, "Tom saw a bird.\nIt was red.");
    assert_eq!(
        qs[0].options,
        ["Tom's dog", "a \"big\" cat", "a bird\\n", "café \u{200b}"]
    );
    assert_eq!((qs[0].label, qs[1].label, qs[2].label), (2, 0, 3));
    assert_eq!(qs[1].question, "The bird was  _  .");
    assert_eq!(qs[2].question_index, 2);
    // No example_id: the passage is named by its line.
    assert_eq!(qs[3].passage_id, "line2");
    assert_eq!(qs[3].label, 1);
    assert_eq!(qs[4].id, "high3.txt#0");

    // The harness prompt of the article's last question, built as preprocess_race.doc_to_text.
    let docs = harness::documents(qs, Protocol::HarnessLast);
    assert_eq!(docs.len(), 3);
    assert_eq!(
        docs[0].context,
        "Article: Tom saw a bird.\nIt was red.\n\nQuestion: What did Tom see?\nAnswer: a bird\\n\nThe bird was red\nHow many?"
    );
    assert_eq!(docs[0].continuations, [" 1", " 2", " 3", " 4"]);
    let high = data::load(
        &{
            let dir = tempfile::tempdir().unwrap().keep();
            let p = dir.join("test.jsonl");
            std::fs::write(&p, &text).unwrap();
            p
        },
        &LoadOptions {
            level: LevelFilter::High,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(high.questions.len(), 1);
}

#[test]
fn bad_problems_are_errors_naming_line_and_field() {
    for (problems, parts) in [
        (
            serde_json::Value::from("[{'answer': 'A', 'options': ['x', 'y'], 'question': 'Q?'"),
            vec!["test.jsonl:1", "`problems`", "Python literal"],
        ),
        (
            serde_json::json!([{"answer": "E", "options": ["x", "y"], "question": "Q?"}]),
            vec!["test.jsonl:1", "problems[0].answer"],
        ),
        (
            serde_json::json!([{"answer": "A", "options": ["x", "y"]}]),
            vec!["problems[0].question", "missing"],
        ),
        (serde_json::json!([]), vec!["`problems`", "empty"]),
        (serde_json::json!({"a": 1}), vec!["`problems`", "list"]),
    ] {
        let e = format!(
            "{:#}",
            load(&format!("{}\n", article_line(Some("m1"), problems))).unwrap_err()
        );
        for p in &parts {
            assert!(e.contains(p), "{p:?} missing from: {e}");
        }
    }
}
