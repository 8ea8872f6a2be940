//! RACE data: loading the original per-passage tree and JSON lines, validating every field, and
//! reporting bad input by file, line (or passage) and field. A task is data: nothing here knows
//! about tokenizers or models.

mod error;
mod fields;
pub mod hub_layout;
mod jsonl;
pub mod parquet;
mod pyliteral;
pub mod tasks;
mod tree;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub use error::{DataError, Location};
pub use tasks::Task;

/// RACE's two difficulty levels; `Other` for RACE-like data whose ids name neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Middle,
    High,
    Other,
}

impl Level {
    /// The level named by a passage id's prefix, as in `middle123.txt` or `high45.txt`.
    pub fn from_id(id: &str) -> Level {
        if id.starts_with("middle") {
            Level::Middle
        } else if id.starts_with("high") {
            Level::High
        } else {
            Level::Other
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Middle => "middle",
            Level::High => "high",
            Level::Other => "other",
        }
    }
}

/// Which levels to keep (`--level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelFilter {
    #[default]
    All,
    Middle,
    High,
}

impl LevelFilter {
    pub fn keeps(&self, level: Level) -> bool {
        match self {
            LevelFilter::All => true,
            LevelFilter::Middle => level == Level::Middle,
            LevelFilter::High => level == Level::High,
        }
    }
}

/// One multiple-choice question with its passage.
#[derive(Debug, Clone)]
pub struct Question {
    /// Unique id: `{passage_id}#{question_index}`.
    pub id: String,
    pub passage_id: String,
    /// Position of the question within its passage.
    pub question_index: usize,
    pub level: Level,
    /// Shared by every question of the passage, so the article is stored (and tokenised) once.
    pub article: Arc<str>,
    pub question: String,
    pub options: Vec<String>,
    /// Index of the gold option.
    pub label: usize,
    /// A task's own grouping for breakdowns (QuAIL's question type, MCTest's `one`/`multiple`,
    /// MCScript's `text`/`commonsense`); `None` for RACE.
    pub category: Option<String>,
}

impl Question {
    pub fn make_id(passage_id: &str, question_index: usize) -> String {
        format!("{passage_id}#{question_index}")
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub split: String,
    pub level: LevelFilter,
    pub skip_invalid: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            split: "test".into(),
            level: LevelFilter::All,
            skip_invalid: false,
        }
    }
}

/// A loaded data set: valid questions in input order, plus what was skipped and why.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub questions: Vec<Question>,
    pub skipped: Vec<DataError>,
    /// The files read, in order (for hashing and reporting).
    pub files: Vec<PathBuf>,
    /// `race-tree` or `jsonl`.
    pub format: &'static str,
}

impl Dataset {
    pub fn passages(&self) -> usize {
        let mut ids: Vec<&str> = self
            .questions
            .iter()
            .map(|q| q.passage_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Number of questions that `skipped` removed.
    pub fn skipped_questions(&self) -> usize {
        self.skipped.iter().map(|e| e.questions).sum()
    }
}

/// RACE's split names with the Hub's spelling folded in: `validation` is `dev`.
pub fn normalize_split(split: &str) -> String {
    match split {
        "validation" | "val" => "dev".into(),
        s => s.to_string(),
    }
}

/// Split names as RACE's tree spells them, with the Hub's spelling accepted too.
fn split_aliases(split: &str) -> Vec<String> {
    match split {
        "dev" | "validation" => vec!["dev".into(), "validation".into()],
        other => vec![other.to_string()],
    }
}

/// What `--data PATH` points at, for a given split.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A folder with `middle/` and/or `high/` holding one JSON passage per `.txt` file.
    Tree(PathBuf),
    /// One question per line.
    Jsonl(PathBuf),
    /// One question per row (the Hub's layout), possibly in several shards.
    Parquet(Vec<PathBuf>),
}

impl DataSource {
    pub fn resolve(path: &Path, split: &str) -> Result<DataSource> {
        if path.is_file() {
            if path.extension().is_some_and(|e| e == "parquet") {
                return Ok(DataSource::Parquet(vec![path.to_path_buf()]));
            }
            return Ok(DataSource::Jsonl(path.to_path_buf()));
        }
        if !path.is_dir() {
            bail!("--data {}: no such file or folder", path.display());
        }
        let has_levels = |d: &Path| d.join("middle").is_dir() || d.join("high").is_dir();
        for s in split_aliases(split) {
            for dir in [path.join("RACE").join(&s), path.join(&s)] {
                if has_levels(&dir) {
                    return Ok(DataSource::Tree(dir));
                }
            }
            for ext in ["jsonl", "json"] {
                let file = path.join(format!("{s}.{ext}"));
                if file.is_file() {
                    return Ok(DataSource::Jsonl(file));
                }
            }
        }
        let shards = parquet::split_files(path, split);
        if !shards.is_empty() {
            return Ok(DataSource::Parquet(shards));
        }
        if has_levels(path) {
            return Ok(DataSource::Tree(path.to_path_buf()));
        }
        bail!(
            "no RACE data for split `{split}` under {p}: expected {p}/RACE/{split}/{{middle,high}}/*.txt, {p}/{split}/{{middle,high}}/*.txt, {p}/{split}.jsonl or {p}/{split}[-*].parquet",
            p = path.display()
        )
    }
}

/// What every loader does last: the level filter (questions and their problems), then either
/// the problems as an error (without `skip_invalid`), or an error for an empty result.
pub(crate) fn finish_load(ds: &mut Dataset, opts: &LoadOptions, source: &Path) -> Result<()> {
    ds.questions.retain(|q| opts.level.keeps(q.level));
    // Problems are counted within the level filter too (where the row names its passage).
    if opts.level != LevelFilter::All {
        ds.skipped.retain(|e| {
            e.at.passage
                .as_deref()
                .is_none_or(|p| opts.level.keeps(Level::from_id(p)))
        });
    }
    if !ds.skipped.is_empty() && !opts.skip_invalid {
        return Err(InvalidData {
            problems: std::mem::take(&mut ds.skipped),
            source: source.to_path_buf(),
        }
        .into());
    }
    if ds.questions.is_empty() {
        bail!(
            "no questions found in {} (split `{}`, level `{:?}`)",
            source.display(),
            opts.split,
            opts.level
        );
    }
    Ok(())
}

/// Invalid questions in a data set loaded without `skip_invalid`: the first problem, and how
/// many more there are. The caller says what its command offers beyond fixing the data (eval's
/// `--skip-invalid`).
#[derive(Debug)]
pub struct InvalidData {
    pub problems: Vec<DataError>,
    /// The file or folder read.
    pub source: PathBuf,
}

impl std::fmt::Display for InvalidData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(first) = self.problems.first() {
            write!(f, "{first}")?;
        }
        if self.problems.len() > 1 {
            write!(
                f,
                " ({} more problems in {})",
                self.problems.len() - 1,
                self.source.display()
            )?;
        }
        write!(f, "\nFix the data")
    }
}

impl std::error::Error for InvalidData {}

/// Loads `path` (a RACE tree or a JSON-lines file) for the options' split and level.
///
/// Without `skip_invalid`, the first invalid question is an error naming file, line or passage,
/// and field; with it, invalid questions are collected in [`Dataset::skipped`].
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let (mut ds, source) = match DataSource::resolve(path, &opts.split)? {
        DataSource::Tree(dir) => (tree::load(&dir, opts.level)?, dir),
        DataSource::Jsonl(file) => (jsonl::load(&file)?, file),
        DataSource::Parquet(files) => {
            let source = match files.as_slice() {
                [one] => one.clone(),
                many => many[0].parent().unwrap_or(Path::new(".")).to_path_buf(),
            };
            (parquet::load(&files)?, source)
        }
    };
    finish_load(&mut ds, opts, &source)?;
    Ok(ds)
}
