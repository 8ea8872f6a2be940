//! JSON lines with one question per line (`example_id`, `article`, `question`, `options`,
//! `answer`), as the rows of the Hub's RACE dataset are; or with one article per line in the
//! EleutherAI/race layout that lm-evaluation-harness reads (`article`, and `problems`: a list of
//! `{question, options, answer}`, as a Python literal string as that dataset has it or as a JSON
//! array; an optional `example_id` names the passage, else it is `line<N>`). Both kinds of line
//! may be mixed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;

use super::error::{DataError, Location};
use super::fields::{self, FieldError};
use super::{Dataset, Level, Question};

/// One row of the Hub's RACE layout, already validated.
pub struct Row {
    pub example_id: String,
    pub article: String,
    pub question: String,
    pub options: Vec<String>,
    pub label: usize,
}

pub(super) fn parse_row(value: &Value) -> Result<Row, FieldError> {
    let obj = fields::object(value).map_err(|m| FieldError {
        field: "(line)".into(),
        message: m,
    })?;
    let example_id = fields::text(obj, "example_id")?.to_string();
    let article = fields::text(obj, "article")?.to_string();
    let question = fields::text(obj, "question")?.to_string();
    let options = fields::options(
        obj.get("options").ok_or_else(|| missing("options"))?,
        "options",
    )?;
    let label = fields::answer(
        obj.get("answer").ok_or_else(|| missing("answer"))?,
        "answer",
        options.len(),
    )?;
    Ok(Row {
        example_id,
        article,
        question,
        options,
        label,
    })
}

/// The questions of one line in the EleutherAI/race layout (`article`, `problems`), in order.
pub(super) fn parse_article_row(value: &Value, line: usize) -> Result<Vec<Row>, FieldError> {
    let obj = fields::object(value).map_err(|m| FieldError {
        field: "(line)".into(),
        message: m,
    })?;
    let example_id = match obj.get("example_id") {
        Some(_) => fields::text(obj, "example_id")?.to_string(),
        None => format!("line{line}"),
    };
    let article = fields::text(obj, "article")?.to_string();
    let problems = obj.get("problems").ok_or_else(|| missing("problems"))?;
    let parsed;
    let list = match problems {
        Value::String(s) => {
            parsed = super::pyliteral::parse(s).map_err(|m| FieldError {
                field: "problems".into(),
                message: m,
            })?;
            &parsed
        }
        v => v,
    };
    let items = list.as_array().ok_or_else(|| FieldError {
        field: "problems".into(),
        message: "expected a list of {question, options, answer}".into(),
    })?;
    if items.is_empty() {
        return Err(FieldError {
            field: "problems".into(),
            message: "is empty".into(),
        });
    }
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let named = |e: FieldError| FieldError {
            field: format!("problems[{i}].{}", e.field),
            message: e.message,
        };
        let p = fields::object(item).map_err(|m| FieldError {
            field: format!("problems[{i}]"),
            message: m,
        })?;
        let question = fields::text(p, "question").map_err(named)?.to_string();
        let options = fields::options(
            p.get("options").ok_or_else(|| named(missing("options")))?,
            "options",
        )
        .map_err(named)?;
        let label = fields::answer(
            p.get("answer").ok_or_else(|| named(missing("answer")))?,
            "answer",
            options.len(),
        )
        .map_err(named)?;
        rows.push(Row {
            example_id: example_id.clone(),
            article: article.clone(),
            question,
            options,
            label,
        });
    }
    Ok(rows)
}

fn missing(field: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: "missing".into(),
    }
}

/// Turns rows into questions: numbers the questions of each passage in order and shares the
/// article text between consecutive rows of the same passage.
/// Rows in file order become questions: rows with one `example_id` are the questions of one
/// passage (numbered in the order they come), which must share one article. An id reused for
/// another article, or a row repeated (same passage, question and options), is an error naming
/// both places.
#[derive(Default)]
pub struct RowCollector {
    questions: Vec<Question>,
    passages: HashMap<String, Passage>,
}

struct Passage {
    article: Arc<str>,
    next_index: usize,
    first: Location,
    /// (question, options) of each row so far, with where it was.
    rows: HashMap<(String, Vec<String>), Location>,
}

impl RowCollector {
    /// Adds `row`, read at `at`; an error (for the caller to report or skip) leaves it out.
    pub fn push(&mut self, row: Row, at: Location) -> Result<(), Box<DataError>> {
        let at = Location {
            passage: Some(row.example_id.clone()),
            ..at
        };
        let passage = self
            .passages
            .entry(row.example_id.clone())
            .or_insert_with(|| Passage {
                article: Arc::from(row.article.as_str()),
                next_index: 0,
                first: at.clone(),
                rows: HashMap::new(),
            });
        if *passage.article != *row.article {
            return Err(Box::new(DataError::new(
                at,
                Some("example_id"),
                format!(
                    "`{}` was already used for another article ({}): give each passage its own example_id",
                    row.example_id,
                    where_(&passage.first)
                ),
                1,
            )));
        }
        let key = (row.question.clone(), row.options.clone());
        if let Some(first) = passage.rows.get(&key) {
            return Err(Box::new(DataError::new(
                at,
                None,
                format!(
                    "this row repeats {} (same example_id, question and options): remove the duplicate",
                    where_(first)
                ),
                1,
            )));
        }
        passage.rows.insert(key, at.clone());
        let index = passage.next_index;
        passage.next_index += 1;
        self.questions.push(Question {
            id: Question::make_id(&row.example_id, index),
            level: Level::from_id(&row.example_id),
            passage_id: row.example_id,
            question_index: index,
            article: passage.article.clone(),
            question: row.question,
            options: row.options,
            label: row.label,
            category: None,
        });
        Ok(())
    }

    pub fn finish(self) -> Vec<Question> {
        self.questions
    }
}

/// `line 12` or `row 12` of the same file, for messages about an earlier row.
fn where_(at: &Location) -> String {
    match at.line {
        Some(l) => format!("{}:{l}", at.file.display()),
        None => at.file.display().to_string(),
    }
}

pub fn load(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = RowCollector::default();
    let mut skipped = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = Location::line(path, i + 1);
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l.strip_suffix('\r').unwrap_or(l),
            Err(e) => {
                skipped.push(DataError::new(
                    at,
                    None,
                    format!(
                        "not valid UTF-8 at byte {} of the line: save the file as UTF-8",
                        e.valid_up_to() + 1
                    ),
                    1,
                ));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                skipped.push(DataError::new(
                    at,
                    None,
                    format!("malformed JSON at column {}: {e}", e.column()),
                    1,
                ));
                continue;
            }
        };
        let parsed = if value.get("problems").is_some() && value.get("question").is_none() {
            parse_article_row(&value, i + 1)
        } else {
            parse_row(&value).map(|r| vec![r])
        };
        match parsed {
            Ok(list) => {
                for row in list {
                    if let Err(e) = rows.push(row, at.clone()) {
                        skipped.push(*e);
                    }
                }
            }
            Err(e) => {
                let at = match value.get("example_id").and_then(Value::as_str) {
                    Some(id) => Location {
                        passage: Some(id.to_string()),
                        ..at
                    },
                    None => at,
                };
                skipped.push(DataError::new(at, Some(&e.field), e.message, 1));
            }
        }
    }
    Ok(Dataset {
        questions: rows.finish(),
        skipped,
        files: vec![path.to_path_buf()],
        format: "jsonl",
    })
}
