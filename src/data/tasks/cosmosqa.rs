//! Cosmos QA: `valid.csv` with columns `id, context, question, answer0..answer3, label` (fields
//! may hold newlines and quotes); the Hub's copy has the same columns.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use super::build::{answer_index, Builder, Row};
use super::Task;
use crate::data::error::Location;
use crate::data::Dataset;

const COLUMNS: &[&str] = &[
    "id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label",
];

pub fn load(file: &Path) -> Result<Dataset> {
    let mut b = Builder::new(Task::Cosmosqa);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: no CSV header", file.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !header.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{}:1: missing column(s) {} (it has: {}); Cosmos QA needs {}",
            file.display(),
            missing.join(", "),
            header.join(", "),
            COLUMNS.join(", ")
        );
    }
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize);
                b.error_at(file, line, None, None, format!("malformed CSV: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut obj = Map::new();
        for (h, v) in header.iter().zip(record.iter()) {
            obj.insert(h.clone(), Value::String(v.to_string()));
        }
        row(&mut b, file, line, &Value::Object(obj));
    }
    Ok(b.finish(vec![file.to_path_buf()]))
}

/// One row (a CSV record or a parquet row, as JSON).
pub fn row(b: &mut Builder, file: &Path, line: usize, row: &Value) {
    let at = Location::line(file, line);
    let get = |k: &str| row.get(k).and_then(Value::as_str);
    let Some(id) = get("id") else {
        return b.error(at.field_error("id", "missing"));
    };
    let (Some(context), Some(question)) = (get("context"), get("question")) else {
        return b.error(at.field_error("context / question", "missing or not a string"));
    };
    let mut options = Vec::new();
    for k in 0..4 {
        match get(&format!("answer{k}")) {
            Some(a) => options.push(a.to_string()),
            None => return b.error(at.field_error(&format!("answer{k}"), "missing")),
        }
    }
    let Some(label) = row.get("label").and_then(answer_index) else {
        return b.error(at.field_error("label", "missing or not 0-3"));
    };
    // Each row is its own question; its id names it (the context repeats across rows).
    b.push(
        at,
        Row {
            passage_id: id,
            context,
            question,
            options,
            label,
            category: None,
            item_id: None,
        },
    );
}
