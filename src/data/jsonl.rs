//! JSON lines with one question per line (`example_id`, `article`, `question`, `options`,
//! `answer`), as the rows of the Hub's RACE dataset are.

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
    let question = fields::string(obj, "question")?.to_string();
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

fn missing(field: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: "missing".into(),
    }
}

/// Turns rows into questions: numbers the questions of each passage in order and shares the
/// article text between consecutive rows of the same passage.
#[derive(Default)]
pub struct RowCollector {
    questions: Vec<Question>,
    last: Option<(String, Arc<str>, usize)>,
}

impl RowCollector {
    pub fn push(&mut self, row: Row) {
        let (article, index) = match &self.last {
            Some((id, art, n)) if *id == row.example_id && **art == *row.article => {
                (art.clone(), n + 1)
            }
            _ => (Arc::<str>::from(row.article.as_str()), 0),
        };
        self.last = Some((row.example_id.clone(), article.clone(), index));
        self.questions.push(Question {
            id: Question::make_id(&row.example_id, index),
            level: Level::from_id(&row.example_id),
            passage_id: row.example_id,
            question_index: index,
            article,
            question: row.question,
            options: row.options,
            label: row.label,
        });
    }

    pub fn finish(self) -> Vec<Question> {
        self.questions
    }
}

pub fn load(path: &Path) -> Result<Dataset> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = RowCollector::default();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = Location::line(path, i + 1);
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
        match parse_row(&value) {
            Ok(row) => rows.push(row),
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
