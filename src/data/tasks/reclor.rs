//! ReClor: `val.json` is a list of `{context, question, answers: [4], label, id_string}`; the
//! Hub's copy has the same columns, one row per question.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::build::{answer_index, string_list, Builder, Row};
use super::Task;
use crate::data::error::Location;
use crate::data::Dataset;

/// One question (`at` says where it was read).
fn question(b: &mut Builder, at: Location, row: &Value) {
    let get = |k: &str| row.get(k).and_then(Value::as_str);
    let Some(id) = get("id_string") else {
        return b.error(at.field_error("id_string", "missing or not a string"));
    };
    let at = Location {
        passage: Some(id.to_string()),
        ..at
    };
    let (Some(context), Some(question)) = (get("context"), get("question")) else {
        return b.error(at.field_error("context / question", "missing or not a string"));
    };
    let options = string_list(row.get("answers"));
    let Some(options) = options else {
        return b.error(at.field_error("answers", "missing or not a list of strings"));
    };
    let Some(label) = row.get("label").and_then(answer_index) else {
        return b.error(at.field_error("label", "missing or not an answer index"));
    };
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

pub fn load(file: &Path) -> Result<Dataset> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut b = Builder::new(Task::Reclor);
    match serde_json::from_str::<Vec<Value>>(&text) {
        Ok(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = Location::passage(file, Some(&format!("item {}", i + 1)));
                question(&mut b, at, item);
            }
        }
        Err(e) => b.error_at(
            file,
            Some(e.line()),
            None,
            None,
            format!("not a ReClor file (a JSON list of questions): {e}"),
        ),
    }
    Ok(b.finish(vec![file.to_path_buf()]))
}

/// One row of a parquet copy (same columns).
pub fn row(b: &mut Builder, file: &Path, line: usize, row: &Value) {
    question(b, Location::line(file, line), row);
}
