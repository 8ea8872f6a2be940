//! QuAIL: `dev.xml` holds `<text domain id>` elements with a `<text_body>` and `<questions>` of
//! `<q id type>question<a id correct>answer</a>…</q>`; `challenge.jsonl` (and the Hub's copy)
//! has one question per line: `id, context_id, context, question, question_type, answers,
//! correct_answer_id`. The question type is kept as the category.

use std::path::Path;

use anyhow::{Context, Result};
use quick_xml::events::Event;
use serde_json::Value;

use super::build::{answer_index, string_list, Builder, Row};
use super::xml::{attr, each_event, line_at, single_correct};
use super::Task;
use crate::data::error::Location;
use crate::data::Dataset;

pub fn load(file: &Path) -> Result<Dataset> {
    if file.extension().is_some_and(|e| e == "xml") {
        return load_xml(file);
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut b = Builder::new(Task::Quail);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => row(&mut b, file, i + 1, &v),
            Err(e) => b.error_at(
                file,
                Some(i + 1),
                None,
                None,
                format!("malformed JSON: {e}"),
            ),
        }
    }
    Ok(b.finish(vec![file.to_path_buf()]))
}

/// One question as JSON (a line of challenge.jsonl or a parquet row).
pub fn row(b: &mut Builder, file: &Path, line: usize, row: &Value) {
    let at = Location::line(file, line);
    let get = |k: &str| row.get(k).and_then(Value::as_str);
    let (Some(passage), Some(context), Some(question)) =
        (get("context_id"), get("context"), get("question"))
    else {
        return b
            .error(at.field_error("context_id / context / question", "missing or not a string"));
    };
    let options = string_list(row.get("answers"));
    let Some(options) = options else {
        return b.error(at.field_error("answers", "missing or not a list of strings"));
    };
    let Some(label) = row.get("correct_answer_id").and_then(answer_index) else {
        return b.error(at.field_error("correct_answer_id", "missing or not an index"));
    };
    b.push(
        at,
        Row {
            passage_id: passage,
            context,
            question,
            options,
            label,
            category: get("question_type").map(str::to_string),
            item_id: get("id").map(str::to_string),
        },
    );
}

struct Q {
    id: Option<String>,
    line: usize,
    kind: Option<String>,
    text: String,
    answers: Vec<(String, bool)>,
    in_answer: bool,
}

fn load_xml(file: &Path) -> Result<Dataset> {
    let xml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut b = Builder::new(Task::Quail);
    let (mut passage, mut body, mut in_body) = (String::new(), String::new(), false);
    let mut q: Option<Q> = None;
    each_event(&xml, file, &mut b, |event, pos, b| match event {
        Event::Start(e) => match e.name().as_ref() {
            b"text" => {
                passage = attr(&e, "id").unwrap_or_default();
                body.clear();
            }
            b"text_body" => in_body = true,
            b"q" => {
                q = Some(Q {
                    id: attr(&e, "id"),
                    line: line_at(&xml, pos),
                    kind: attr(&e, "type"),
                    text: String::new(),
                    answers: Vec::new(),
                    in_answer: false,
                })
            }
            b"a" => {
                if let Some(q) = q.as_mut() {
                    let correct = attr(&e, "correct").is_some_and(|c| c == "True");
                    q.answers.push((String::new(), correct));
                    q.in_answer = true;
                }
            }
            _ => {}
        },
        Event::Text(t) => {
            let t = t.unescape().unwrap_or_default();
            if in_body {
                body.push_str(&t);
            } else if let Some(q) = q.as_mut() {
                match q.answers.last_mut().filter(|_| q.in_answer) {
                    Some(a) => a.0.push_str(&t),
                    None => q.text.push_str(&t),
                }
            }
        }
        Event::End(e) => match e.name().as_ref() {
            b"text_body" => in_body = false,
            b"a" => {
                if let Some(q) = q.as_mut() {
                    q.in_answer = false;
                }
            }
            b"q" => {
                let Some(done) = q.take() else { return };
                let at = Location {
                    passage: Some(passage.clone()),
                    ..Location::line(file, done.line)
                };
                match single_correct(&done.answers) {
                    Ok(label) => b.push(
                        at,
                        Row {
                            passage_id: &passage,
                            context: body.trim(),
                            question: done.text.trim(),
                            options: done
                                .answers
                                .into_iter()
                                .map(|a| a.0.trim().to_string())
                                .collect(),
                            label,
                            category: done.kind,
                            item_id: done.id,
                        },
                    ),
                    Err(msg) => b.error(at.field_error("a@correct", msg)),
                }
            }
            _ => {}
        },
        _ => {}
    });
    Ok(b.finish(vec![file.to_path_buf()]))
}
