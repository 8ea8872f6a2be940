//! MCTest: `mcN.SPLIT.tsv` has one story per line (id, author and time, the story with
//! `\newline` markers, then four times: question with a `one:`/`multiple:` prefix and its four
//! answers); `mcN.SPLIT.ans` beside it has the four gold letters per story, tab-separated.
//! The Hub's copy has one row per question (`story`, `question`, `answer_options` A–D,
//! `answer`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::build::{answer_index, Builder, Row};
use super::Task;
use crate::data::error::Location;
use crate::data::Dataset;

/// The story as text: `\newline` markers become newlines (and MC500's few `\tab` markers
/// tabs).
pub fn story_text(raw: &str) -> String {
    raw.replace("\\newline", "\n").replace("\\tab", "\t")
}

/// `one: Who …?` → ("one", "Who …?"); no prefix → (None, the text).
pub fn split_prefix(q: &str) -> (Option<String>, String) {
    for p in ["one", "multiple"] {
        if let Some(rest) = q.strip_prefix(p).and_then(|r| r.strip_prefix(':')) {
            return (Some(p.to_string()), rest.trim().to_string());
        }
    }
    (None, q.trim().to_string())
}

fn answers_file(tsv: &Path) -> PathBuf {
    tsv.with_extension("ans")
}

pub fn load(task: Task, tsv: &Path) -> Result<Dataset> {
    let ans_path = answers_file(tsv);
    let text =
        std::fs::read_to_string(tsv).with_context(|| format!("cannot read {}", tsv.display()))?;
    let answers = std::fs::read_to_string(&ans_path).with_context(|| {
        format!(
            "cannot read {}: MCTest's gold answers are in the .ans file beside the .tsv",
            ans_path.display()
        )
    })?;
    let mut b = Builder::new(task);
    let stories: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let golds: Vec<&str> = answers.lines().filter(|l| !l.trim().is_empty()).collect();
    if stories.len() != golds.len() {
        b.error_at(
            &ans_path,
            None,
            None,
            None,
            format!(
                "{} has {} answer line(s) but {} has {} stories: the files do not belong together",
                ans_path.display(),
                golds.len(),
                tsv.display(),
                stories.len()
            ),
        );
        return Ok(b.finish(vec![tsv.to_path_buf(), ans_path]));
    }
    for (i, (line, gold)) in stories.iter().zip(&golds).enumerate() {
        let at = Location::line(tsv, i + 1);
        let cols: Vec<&str> = line.split('\t').collect();
        let letters: Vec<&str> = gold.split('\t').map(str::trim).collect();
        if cols.len() != 23 {
            b.error(at.field_error(
                "(line)",
                format!(
                    "has {} tab-separated columns; an MCTest story has 23 (id, author, story, 4 × question and 4 answers)",
                    cols.len()
                ),
            ));
            continue;
        }
        if letters.len() != 4 {
            let at = Location::line(&ans_path, i + 1);
            b.error(at.field_error(
                "(line)",
                format!("has {} answers; MCTest has 4 per story", letters.len()),
            ));
            continue;
        }
        let id = cols[0];
        let story = story_text(cols[2]);
        for k in 0..4 {
            let q = &cols[3 + 5 * k..8 + 5 * k];
            let (category, question) = split_prefix(q[0]);
            let options: Vec<String> = q[1..].iter().map(|s| s.to_string()).collect();
            let at = at.clone().with_question(k);
            let Some(label) = answer_index(&Value::String(letters[k].to_string())) else {
                let ans_at = Location::line(&ans_path, i + 1).with_question(k);
                b.error(ans_at.field_error(
                    "answer",
                    format!("{:?} is not an option letter A-D", letters[k]),
                ));
                continue;
            };
            b.push(
                at,
                Row {
                    passage_id: id,
                    context: &story,
                    question: &question,
                    options,
                    label,
                    category,
                    item_id: None,
                },
            );
        }
    }
    Ok(b.finish(vec![tsv.to_path_buf(), ans_path]))
}

/// One row of the Hub's copy.
pub fn hub_row(b: &mut Builder, file: &Path, line: usize, row: &Value) {
    let at = Location::line(file, line);
    let get = |k: &str| row.get(k).and_then(Value::as_str);
    let id = row
        .get("idx")
        .and_then(|i| i.get("story"))
        .and_then(Value::as_str)
        .or_else(|| get("story_id"));
    let (Some(id), Some(story), Some(q)) = (id, get("story"), get("question")) else {
        return b.error(at.field_error("idx.story / story / question", "missing or not a string"));
    };
    let opts = row.get("answer_options");
    let options: Option<Vec<String>> = match opts {
        Some(Value::Object(m)) => ["A", "B", "C", "D"]
            .iter()
            .map(|k| m.get(*k).and_then(Value::as_str).map(str::to_string))
            .collect(),
        Some(Value::Array(a)) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    };
    let Some(options) = options else {
        return b.error(at.field_error("answer_options", "expected A-D answers"));
    };
    let Some(label) = row.get("answer").and_then(answer_index) else {
        return b.error(at.field_error("answer", "missing or not an option letter"));
    };
    let (category, question) = split_prefix(q);
    b.push(
        at,
        Row {
            passage_id: id,
            context: &story_text(story),
            question: &question,
            options,
            label,
            category,
            item_id: None,
        },
    );
}
