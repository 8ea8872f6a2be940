//! DREAM: `SPLIT.json` is a list of dialogues, each `[turns, questions, id]` with questions
//! `{question, choice: [3 texts], answer: text of one choice}`; the Hub's copy has one row per
//! question (`dialogue_id`, `dialogue`, `question`, `choice`, `answer`).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::build::{answer_by_text, string_list, Builder, Row};
use super::Task;
use crate::data::error::Location;
use crate::data::Dataset;

fn question(b: &mut Builder, at: Location, id: &str, context: &str, q: &Value) {
    let Some(text) = q.get("question").and_then(Value::as_str) else {
        return b.error(at.field_error("question", "missing or not a string"));
    };
    let Some(options) = string_list(q.get("choice")) else {
        return b.error(at.field_error("choice", "missing or not a list of strings"));
    };
    let Some(answer) = q.get("answer").and_then(Value::as_str) else {
        return b.error(at.field_error("answer", "missing or not a string"));
    };
    let Some(label) = answer_by_text(&options, answer) else {
        return b.error(at.field_error(
            "answer",
            format!("{answer:?} is not one of its choices {options:?}"),
        ));
    };
    b.push(
        at,
        Row {
            passage_id: id,
            context,
            question: text,
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
    let mut b = Builder::new(Task::Dream);
    let items: Vec<Value> = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            b.error_at(
                file,
                Some(e.line()),
                None,
                None,
                format!("not a DREAM file (a JSON list of dialogues): {e}"),
            );
            return Ok(b.finish(vec![file.to_path_buf()]));
        }
    };
    for (i, item) in items.iter().enumerate() {
        let item_id = format!("item {}", i + 1);
        let parts = item.as_array().filter(|a| a.len() == 3);
        let Some(parts) = parts else {
            b.error_at(
                file,
                None,
                Some(&item_id),
                None,
                "expected [turns, questions, id]",
            );
            continue;
        };
        let id = parts[2].as_str().map_or(item_id.clone(), str::to_string);
        let at = Location::passage(file, Some(&id));
        let Some(turns) = string_list(Some(&parts[0])) else {
            b.error(at.field_error("turns", "expected a list of strings"));
            continue;
        };
        let context = turns.join("\n");
        let Some(qs) = parts[1].as_array() else {
            b.error(at.field_error("questions", "expected a list"));
            continue;
        };
        for (k, q) in qs.iter().enumerate() {
            question(&mut b, at.clone().with_question(k), &id, &context, q);
        }
    }
    Ok(b.finish(vec![file.to_path_buf()]))
}

/// One row of the Hub's copy.
pub fn hub_row(b: &mut Builder, file: &Path, line: usize, row: &Value) {
    let at = Location::line(file, line);
    let Some(id) = row.get("dialogue_id").and_then(Value::as_str) else {
        return b.error(at.field_error("dialogue_id", "missing or not a string"));
    };
    let Some(turns) = string_list(row.get("dialogue")) else {
        return b.error(at.field_error("dialogue", "missing or not a list of strings"));
    };
    question(b, at, id, &turns.join("\n"), row);
}
