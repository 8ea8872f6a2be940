//! Data errors that say where: file, line or passage, question, and field.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line, for line-oriented files.
    pub line: Option<usize>,
    pub passage: Option<String>,
    /// 0-based index of the question within its passage.
    pub question: Option<usize>,
}

impl Location {
    pub fn line(file: &std::path::Path, line: usize) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            passage: None,
            question: None,
        }
    }

    pub fn passage(file: &std::path::Path, passage: Option<&str>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            passage: passage.map(str::to_string),
            question: None,
        }
    }

    pub fn with_question(mut self, q: usize) -> Self {
        self.question = Some(q);
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    pub at: Location,
    /// The JSON field at fault, if one is.
    pub field: Option<String>,
    pub message: String,
    /// How many questions this problem removes when skipped.
    pub questions: usize,
}

impl DataError {
    pub fn new(
        at: Location,
        field: Option<&str>,
        message: impl Into<String>,
        questions: usize,
    ) -> Self {
        Self {
            at,
            field: field.map(str::to_string),
            message: message.into(),
            questions,
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.at.file.display())?;
        if let Some(line) = self.at.line {
            write!(f, ":{line}")?;
        }
        match (&self.at.passage, self.at.question) {
            (Some(p), Some(q)) => write!(f, " (passage {p}, question {})", q + 1)?,
            (Some(p), None) => write!(f, " (passage {p})")?,
            (None, Some(q)) => write!(f, " (question {})", q + 1)?,
            (None, None) => {}
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for DataError {}

impl Location {
    /// A problem in `field` here (one question).
    pub fn field_error(&self, field: &str, message: impl Into<String>) -> DataError {
        DataError::new(self.clone(), Some(field), message, 1)
    }
}
