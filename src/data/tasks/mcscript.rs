//! MCScript: `SPLIT-data.xml` holds `<instance id scenario>` elements with a `<text>` and
//! `<questions>` of `<question id text type>`, each with two `<answer id text correct>`; the
//! question's `type` (`text` or `commonsense`) is kept as its category.

use std::path::Path;

use anyhow::{Context, Result};
use quick_xml::events::Event;
use quick_xml::Reader;

use super::build::{Builder, Row};
use super::xml::{attr, line_at};
use super::Task;
use crate::data::error::Location;
use crate::data::Dataset;

struct Pending {
    id: Option<String>,
    line: usize,
    text: String,
    kind: Option<String>,
    answers: Vec<(String, bool)>,
}

pub fn load(file: &Path) -> Result<Dataset> {
    let xml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut b = Builder::new(Task::Mcscript);
    let mut reader = Reader::from_str(&xml);
    let (mut instance, mut text, mut in_text) = (String::new(), String::new(), false);
    let mut question: Option<Pending> = None;
    loop {
        let pos = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let line = line_at(&xml, reader.error_position() as usize);
                b.error_at(file, Some(line), None, None, format!("malformed XML: {e}"));
                break;
            }
        };
        match event {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"instance" => {
                    instance = format!("instance {}", attr(&e, "id").unwrap_or_default());
                    text.clear();
                }
                b"text" => in_text = true,
                b"question" => {
                    question = Some(Pending {
                        id: attr(&e, "id"),
                        line: line_at(&xml, pos),
                        text: attr(&e, "text").unwrap_or_default(),
                        kind: attr(&e, "type"),
                        answers: Vec::new(),
                    })
                }
                b"answer" => {
                    if let Some(q) = question.as_mut() {
                        let correct = attr(&e, "correct").is_some_and(|c| c == "True");
                        q.answers
                            .push((attr(&e, "text").unwrap_or_default(), correct));
                    }
                }
                _ => {}
            },
            Event::Text(t) if in_text => {
                text.push_str(&t.unescape().unwrap_or_default());
            }
            Event::CData(t) if in_text => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::End(e) => match e.name().as_ref() {
                b"text" => in_text = false,
                b"question" => {
                    if let Some(q) = question.take() {
                        let at = Location {
                            passage: Some(instance.clone()),
                            ..Location::line(file, q.line)
                        };
                        let correct: Vec<usize> =
                            (0..q.answers.len()).filter(|&i| q.answers[i].1).collect();
                        if correct.len() != 1 {
                            b.error(at.field_error(
                                "answer@correct",
                                format!(
                                    "{} answers are marked correct=\"True\"; exactly one must be",
                                    correct.len()
                                ),
                            ));
                            continue;
                        }
                        b.push(
                            at,
                            Row {
                                passage_id: &instance,
                                context: text.trim(),
                                question: &q.text,
                                options: q.answers.into_iter().map(|a| a.0).collect(),
                                label: correct[0],
                                category: q.kind,
                                item_id: q.id,
                            },
                        );
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(b.finish(vec![file.to_path_buf()]))
}
