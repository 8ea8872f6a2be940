//! Bad input is reported by file, line (or passage) and field, and never silently dropped.

use std::path::{Path, PathBuf};

use race_eval::data::{self, LevelFilter, LoadOptions};

fn good_row(id: &str) -> String {
    format!(
        r#"{{"example_id": "{id}", "article": "A cat sat on the mat.", "question": "Where did the cat sit?", "options": ["mat", "hat", "bed", "car"], "answer": "A"}}"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Loads `bad` as line 2 of a JSON-lines file between two good rows; returns the error text.
fn jsonl_error(bad: &str) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let text = format!(
        "{}\n{bad}\n{}\n",
        good_row("middle1.txt"),
        good_row("high2.txt")
    );
    let path = write(&dir, "test.jsonl", &text);
    let err = data::load(&path, &LoadOptions::default()).unwrap_err();
    (format!("{err:#}"), path)
}

fn assert_names(msg: &str, path: &Path, parts: &[&str]) {
    assert!(
        msg.contains(&path.display().to_string()),
        "file missing from: {msg}"
    );
    for p in parts {
        assert!(msg.contains(p), "{p:?} missing from: {msg}");
    }
}

#[test]
fn malformed_json_line() {
    let (msg, path) = jsonl_error(r#"{"example_id": "middle3.txt", "article": "#);
    assert_names(&msg, &path, &[":2:", "malformed JSON"]);
}

#[test]
fn missing_field() {
    let (msg, path) = jsonl_error(
        r#"{"example_id": "middle3.txt", "article": "Text.", "options": ["a", "b"], "answer": "A"}"#,
    );
    assert_names(&msg, &path, &[":2", "field `question`", "missing"]);
}

#[test]
fn answer_outside_the_options() {
    let row = good_row("middle3.txt").replace(r#""answer": "A""#, r#""answer": "E""#);
    let (msg, path) = jsonl_error(&row);
    assert_names(
        &msg,
        &path,
        &[":2", "field `answer`", "\"E\"", "outside the 4 options"],
    );
}

#[test]
fn answer_that_is_not_a_letter() {
    let row = good_row("middle3.txt").replace(r#""answer": "A""#, r#""answer": "maybe""#);
    let (msg, path) = jsonl_error(&row);
    assert_names(
        &msg,
        &path,
        &[":2", "field `answer`", "not an option letter"],
    );
}

#[test]
fn empty_article() {
    let row = good_row("middle3.txt").replace("A cat sat on the mat.", "  ");
    let (msg, path) = jsonl_error(&row);
    assert_names(&msg, &path, &[":2", "field `article`", "empty"]);
}

#[test]
fn option_of_the_wrong_type() {
    let row = good_row("middle3.txt").replace(r#""hat""#, "7");
    let (msg, path) = jsonl_error(&row);
    assert_names(
        &msg,
        &path,
        &[":2", "field `options[1]`", "expected a string"],
    );
}

#[test]
fn skip_invalid_keeps_the_rest_and_counts_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        good_row("middle1.txt"),
        "not json".into(),
        good_row("middle1.txt").replace(r#""answer": "A""#, r#""answer": "Z""#),
        good_row("high2.txt"),
    ]
    .join("\n");
    let path = write(dir.path(), "test.jsonl", &text);
    let opts = LoadOptions {
        skip_invalid: true,
        ..LoadOptions::default()
    };
    let ds = data::load(&path, &opts).unwrap();
    assert_eq!(ds.questions.len(), 2);
    assert_eq!(ds.skipped_questions(), 2);
    let lines: Vec<Option<usize>> = ds.skipped.iter().map(|e| e.at.line).collect();
    assert_eq!(lines, vec![Some(2), Some(3)]);
    // Without skip_invalid the same file is an error that points at the first problem and
    // says to fix the data (the command adds what else it offers: eval's --skip-invalid).
    let err = format!(
        "{:#}",
        data::load(&path, &LoadOptions::default()).unwrap_err()
    );
    assert!(
        err.contains(":2:") && err.contains("1 more problems") && err.contains("Fix the data"),
        "{err}"
    );
}

fn tree_passage(dir: &Path, level: &str, file: &str, json: &str) -> PathBuf {
    write(dir, &format!("RACE/test/{level}/{file}"), json)
}

const GOOD_PASSAGE: &str = r#"{"id": "middle7.txt", "article": "Tom has a red kite. He flies it on windy days.", "questions": ["What colour is the kite?", "Tom flies it on _ days."], "options": [["red", "blue", "green", "black"], ["rainy", "windy", "hot", "cold"]], "answers": ["A", "B"]}"#;

#[test]
fn tree_options_and_answers_that_do_not_line_up() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD_PASSAGE.replace(r#""answers": ["A", "B"]"#, r#""answers": ["A"]"#);
    let path = tree_passage(dir.path(), "middle", "7.txt", &bad);
    let err = format!(
        "{:#}",
        data::load(dir.path(), &LoadOptions::default()).unwrap_err()
    );
    assert_names(
        &err,
        &path,
        &[
            "passage middle7.txt",
            "field `answers`",
            "2, 2 and 1 entries",
        ],
    );
    // Skipping drops both questions of the passage and says so.
    let opts = LoadOptions {
        skip_invalid: true,
        ..LoadOptions::default()
    };
    tree_passage(
        dir.path(),
        "high",
        "1.txt",
        &GOOD_PASSAGE.replace("middle7", "high1"),
    );
    let ds = data::load(dir.path(), &opts).unwrap();
    assert_eq!((ds.questions.len(), ds.skipped_questions()), (2, 2));
}

#[test]
fn tree_answer_outside_the_options_names_the_question() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD_PASSAGE.replace(r#""answers": ["A", "B"]"#, r#""answers": ["A", "F"]"#);
    let path = tree_passage(dir.path(), "middle", "7.txt", &bad);
    let err = format!(
        "{:#}",
        data::load(dir.path(), &LoadOptions::default()).unwrap_err()
    );
    assert_names(
        &err,
        &path,
        &[
            "passage middle7.txt, question 2",
            "field `answers[1]`",
            "outside the 4 options",
        ],
    );
}

#[test]
fn tree_empty_article_and_malformed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = tree_passage(
        dir.path(),
        "middle",
        "7.txt",
        &GOOD_PASSAGE.replace("Tom has a red kite. He flies it on windy days.", ""),
    );
    let err = format!(
        "{:#}",
        data::load(dir.path(), &LoadOptions::default()).unwrap_err()
    );
    assert_names(
        &err,
        &path,
        &["passage middle7.txt", "field `article`", "empty"],
    );

    let dir = tempfile::tempdir().unwrap();
    let path = tree_passage(
        dir.path(),
        "high",
        "3.txt",
        "{\"id\": \"high3.txt\",\n \"article\": ",
    );
    let err = format!(
        "{:#}",
        data::load(dir.path(), &LoadOptions::default()).unwrap_err()
    );
    assert_names(&err, &path, &["malformed JSON", ":2"]);
}

#[test]
fn tree_levels_split_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    tree_passage(dir.path(), "middle", "7.txt", GOOD_PASSAGE);
    tree_passage(
        dir.path(),
        "high",
        "1.txt",
        &GOOD_PASSAGE.replace("middle7", "high1"),
    );
    let all = data::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(all.questions.len(), 4);
    assert_eq!(all.passages(), 2);
    let high = data::load(
        dir.path(),
        &LoadOptions {
            level: LevelFilter::High,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(high.questions.iter().all(|q| q.level == data::Level::High));
    assert_eq!(high.questions.len(), 2);
    // There is no dev split in this tree: the error says what was looked for.
    let err = data::load(
        dir.path(),
        &LoadOptions {
            split: "dev".into(),
            ..LoadOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("RACE/dev/{middle,high}"),
        "{err:#}"
    );
}

#[test]
fn jsonl_level_comes_from_the_id_and_questions_share_their_article() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        good_row("middle1.txt"),
        good_row("middle1.txt").replace("Where did the cat sit?", "What sat on the mat?"),
        good_row("high2.txt"),
        good_row("other9"),
    ]
    .join("\n");
    let path = write(dir.path(), "x.jsonl", &text);
    let ds = data::load(&path, &LoadOptions::default()).unwrap();
    let ids: Vec<&str> = ds.questions.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(
        ids,
        ["middle1.txt#0", "middle1.txt#1", "high2.txt#0", "other9#0"]
    );
    let levels: Vec<&str> = ds.questions.iter().map(|q| q.level.as_str()).collect();
    assert_eq!(levels, ["middle", "middle", "high", "other"]);
    assert!(std::sync::Arc::ptr_eq(
        &ds.questions[0].article,
        &ds.questions[1].article
    ));
    assert!(!std::sync::Arc::ptr_eq(
        &ds.questions[1].article,
        &ds.questions[2].article
    ));
}
