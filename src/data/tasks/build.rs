//! Turning a task's rows into validated questions: every text visible, at least two options,
//! the answer among them, a passage id used for one context only, no repeated row. Problems
//! are collected with their file, line or item, and field, as RACE's loaders do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::error::{DataError, Location};
use super::super::fields::check_visible;
use super::super::{Dataset, Level, Question};
use super::Task;

pub struct Builder {
    task: Task,
    questions: Vec<Question>,
    skipped: Vec<DataError>,
    passages: HashMap<String, (Arc<str>, usize, Location)>,
    rows: HashMap<(String, String, Vec<String>), Location>,
}

/// One question as a task's file gives it.
pub struct Row<'a> {
    pub passage_id: &'a str,
    pub context: &'a str,
    pub question: &'a str,
    pub options: Vec<String>,
    pub label: usize,
    pub category: Option<String>,
    /// The question's own id where the format gives one: then two items are duplicates only
    /// when their ids repeat (QuAIL's dev set has distinct items with identical text), else
    /// when question and options repeat.
    pub item_id: Option<String>,
}

impl Builder {
    pub fn new(task: Task) -> Self {
        Self {
            task,
            questions: Vec::new(),
            skipped: Vec::new(),
            passages: HashMap::new(),
            rows: HashMap::new(),
        }
    }

    /// A problem at `file` (line, passage, question) in `field`.
    pub fn error_at(
        &mut self,
        file: &Path,
        line: Option<usize>,
        passage: Option<&str>,
        field: Option<&str>,
        message: impl Into<String>,
    ) {
        let at = Location {
            file: file.to_path_buf(),
            line,
            passage: passage.map(str::to_string),
            question: None,
        };
        self.skipped.push(DataError::new(at, field, message, 1));
    }

    pub fn error(&mut self, e: DataError) {
        self.skipped.push(e);
    }

    /// Adds a question read at `at`, or records why it cannot be one.
    pub fn push(&mut self, at: Location, row: Row) {
        let at = Location {
            passage: Some(row.passage_id.to_string()),
            ..at
        };
        let fail = |b: &mut Self, field: &str, msg: String| {
            b.skipped
                .push(DataError::new(at.clone(), Some(field), msg, 1));
        };
        for (field, text) in [("context", row.context), ("question", row.question)] {
            if let Err(e) = check_visible(text, field) {
                return fail(self, &e.field, e.message);
            }
        }
        for (i, o) in row.options.iter().enumerate() {
            if let Err(e) = check_visible(o, &format!("options[{i}]")) {
                return fail(self, &e.field, e.message);
            }
        }
        if row.options.len() < 2 {
            let n = row.options.len();
            return fail(
                self,
                "options",
                format!("has {n} option(s); a question needs at least 2"),
            );
        }
        if row.label >= row.options.len() {
            return fail(
                self,
                "answer",
                format!(
                    "answer index {} is outside the {} options",
                    row.label,
                    row.options.len()
                ),
            );
        }
        let entry = self
            .passages
            .entry(row.passage_id.to_string())
            .or_insert_with(|| (Arc::from(row.context), 0, at.clone()));
        if *entry.0 != *row.context {
            let first = entry.2.clone();
            return fail(
                self,
                "id",
                format!(
                    "`{}` was already used for another context ({}): each passage needs its own id",
                    row.passage_id,
                    place(&first)
                ),
            );
        }
        let key = match &row.item_id {
            Some(id) => (row.passage_id.to_string(), format!("id {id}"), Vec::new()),
            None => (
                row.passage_id.to_string(),
                row.question.to_string(),
                row.options.clone(),
            ),
        };
        if let Some(first) = self.rows.get(&key) {
            let first = place(first);
            return fail(
                self,
                "question",
                match &row.item_id {
                    Some(id) => format!("question id {id} repeats {first}: remove the duplicate"),
                    None => format!(
                        "repeats {first} (same passage, question and options): remove the duplicate"
                    ),
                },
            );
        }
        self.rows.insert(key, at.clone());
        let (context, index) = (entry.0.clone(), entry.1);
        entry.1 += 1;
        self.questions.push(Question {
            id: Question::make_id(row.passage_id, index),
            passage_id: row.passage_id.to_string(),
            question_index: index,
            level: Level::Other,
            article: context,
            question: row.question.to_string(),
            options: row.options,
            label: row.label,
            category: row.category,
        });
    }

    pub fn finish(self, files: Vec<PathBuf>) -> Dataset {
        Dataset {
            questions: self.questions,
            skipped: self.skipped,
            files,
            format: self.task.name(),
        }
    }
}

fn place(at: &Location) -> String {
    match (at.line, &at.passage) {
        (Some(l), _) => format!("{}:{l}", at.file.display()),
        (None, Some(p)) => format!("{} (item {p})", at.file.display()),
        (None, None) => at.file.display().to_string(),
    }
}

/// Index of the answer given as the text of one of the options (DREAM).
pub fn answer_by_text(options: &[String], answer: &str) -> Option<usize> {
    options.iter().position(|o| o == answer)
}

/// `A`..`Z` or a 0-based index given as a number or a numeric string.
pub fn answer_index(v: &serde_json::Value) -> Option<usize> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|x| x as usize),
        serde_json::Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<usize>() {
                return Some(i);
            }
            let mut c = t.chars();
            match (c.next(), c.next()) {
                (Some(ch), None) if ch.is_ascii_uppercase() => Some((ch as u8 - b'A') as usize),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A JSON list of strings (`None` if it is missing or holds anything else).
pub fn string_list(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    v?.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
}
