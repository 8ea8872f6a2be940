//! MCScript: `SPLIT-data.xml` holds `<instance id scenario>` elements with a `<text>` and
//! `<questions>` of `<question id text type>`, each with two `<answer id text correct>`; the
//! question's `type` (`text` or `commonsense`) is kept as its category.

use std::path::Path;

use anyhow::{Context, Result};
use quick_xml::events::Event;

use super::build::{Builder, Row};
use super::xml::{attr, each_event, line_at, single_correct};
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
    let (mut instance, mut text, mut in_text) = (String::new(), String::new(), false);
    let mut question: Option<Pending> = None;
    each_event(&xml, file, &mut b, |event, pos, b| match event {
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
        Event::Text(t) if in_text => text.push_str(&t.unescape().unwrap_or_default()),
        Event::CData(t) if in_text => text.push_str(&String::from_utf8_lossy(&t)),
        Event::End(e) if e.name().as_ref() == b"text" => in_text = false,
        Event::End(e) if e.name().as_ref() == b"question" => {
            let Some(q) = question.take() else { return };
            let at = Location {
                passage: Some(instance.clone()),
                ..Location::line(file, q.line)
            };
            match single_correct(&q.answers) {
                Ok(label) => b.push(
                    at,
                    Row {
                        passage_id: &instance,
                        context: text.trim(),
                        question: &q.text,
                        options: q.answers.into_iter().map(|a| a.0).collect(),
                        label,
                        category: q.kind,
                        item_id: q.id,
                    },
                ),
                Err(msg) => b.error(at.field_error("answer@correct", msg)),
            }
        }
        _ => {}
    });
    Ok(b.finish(vec![file.to_path_buf()]))
}
