//! RACE's original tree: `{middle,high}/*.txt`, each file one JSON object per passage with
//! `article`, `questions`, `options`, `answers` and `id`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;

use super::error::{DataError, Location};
use super::fields;
use super::{Dataset, Level, LevelFilter, Question};

/// `.txt` files of a folder in natural order (`2.txt` before `10.txt`).
fn passage_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort_by_key(|p| {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let digits: String = stem.chars().filter(|c| c.is_ascii_digit()).collect();
        (digits.len(), digits, stem)
    });
    Ok(files)
}

pub fn load(dir: &Path, filter: LevelFilter) -> Result<Dataset> {
    let mut questions = Vec::new();
    let mut skipped = Vec::new();
    let mut files = Vec::new();
    let mut ids = HashMap::new();
    for level in [Level::Middle, Level::High] {
        let sub = dir.join(level.as_str());
        if !filter.keeps(level) || !sub.is_dir() {
            continue;
        }
        for file in passage_files(&sub)? {
            load_passage(&file, level, &mut ids, &mut questions, &mut skipped)?;
            files.push(file);
        }
    }
    Ok(Dataset {
        questions,
        skipped,
        files,
        format: "race-tree",
    })
}

fn load_passage(
    file: &Path,
    level: Level,
    ids: &mut HashMap<String, PathBuf>,
    out: &mut Vec<Question>,
    skipped: &mut Vec<DataError>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let at = Location {
                line: Some(e.line()),
                ..Location::passage(file, None)
            };
            skipped.push(DataError::new(
                at,
                None,
                format!("malformed JSON at column {}: {e}", e.column()),
                1,
            ));
            return Ok(());
        }
    };
    let obj = match fields::object(&value) {
        Ok(o) => o,
        Err(m) => {
            skipped.push(DataError::new(Location::passage(file, None), None, m, 1));
            return Ok(());
        }
    };
    // RACE's ids are `middle123.txt`; a passage without one is named after its level and file.
    let id = match obj.get("id") {
        Some(_) => match fields::text(obj, "id") {
            Ok(id) => id.to_string(),
            Err(e) => {
                skipped.push(DataError::new(
                    Location::passage(file, None),
                    Some(&e.field),
                    e.message,
                    1,
                ));
                return Ok(());
            }
        },
        None => format!("{}{}", level.as_str(), file_name),
    };
    let at = Location::passage(file, Some(&id));
    if let Some(first) = ids.get(&id) {
        let n = obj
            .get("questions")
            .and_then(Value::as_array)
            .map_or(1, |q| q.len().max(1));
        skipped.push(DataError::new(
            at,
            Some("id"),
            format!(
                "`{id}` is also the id of {}: give each passage file its own id",
                first.display()
            ),
            n,
        ));
        return Ok(());
    }
    ids.insert(id.clone(), file.to_path_buf());
    // Passage-level fields: a problem here removes every question of the passage.
    let structure = (|| {
        let article = fields::text(obj, "article")?;
        let qs = fields::array(obj, "questions")?;
        let opts = fields::array(obj, "options")?;
        let answers = fields::array(obj, "answers")?;
        Ok::<_, fields::FieldError>((article, qs, opts, answers))
    })();
    let (article, qs, opts, answers) = match structure {
        Ok(s) => s,
        Err(e) => {
            let n = obj
                .get("questions")
                .and_then(Value::as_array)
                .map_or(1, |q| q.len().max(1));
            skipped.push(DataError::new(at, Some(&e.field), e.message, n));
            return Ok(());
        }
    };
    if qs.len() != opts.len() || qs.len() != answers.len() {
        let msg = format!(
            "`questions`, `options` and `answers` must line up, but have {}, {} and {} entries",
            qs.len(),
            opts.len(),
            answers.len()
        );
        let field = if qs.len() != opts.len() {
            "options"
        } else {
            "answers"
        };
        skipped.push(DataError::new(
            at,
            Some(field),
            msg,
            qs.len().max(opts.len()).max(answers.len()),
        ));
        return Ok(());
    }
    let article: Arc<str> = Arc::from(article);
    let mut seen: HashMap<(String, Vec<String>), usize> = HashMap::new();
    for (i, ((q, o), a)) in qs.iter().zip(opts).zip(answers).enumerate() {
        let at = at.clone().with_question(i);
        let field = format!("questions[{i}]");
        let question = match q.as_str().map(|q| (q, fields::check_visible(q, &field))) {
            Some((q, Ok(()))) => q.to_string(),
            Some((_, Err(e))) => {
                skipped.push(DataError::new(at, Some(&e.field), e.message, 1));
                continue;
            }
            None => {
                skipped.push(DataError::new(at, Some(&field), "expected a string", 1));
                continue;
            }
        };
        let parsed = fields::options(o, &format!("options[{i}]")).and_then(|options| {
            fields::answer(a, &format!("answers[{i}]"), options.len()).map(|l| (options, l))
        });
        let parsed = parsed.and_then(|(options, label)| {
            match seen.insert((question.clone(), options.clone()), i) {
                Some(first) => Err(fields::FieldError {
                    field: field.clone(),
                    message: format!(
                        "repeats question {} of this passage (same question and options): remove the duplicate",
                        first + 1
                    ),
                }),
                None => Ok((options, label)),
            }
        });
        match parsed {
            Ok((options, label)) => out.push(Question {
                id: Question::make_id(&id, i),
                passage_id: id.clone(),
                question_index: i,
                level,
                article: article.clone(),
                question,
                options,
                label,
                category: None,
            }),
            Err(e) => skipped.push(DataError::new(at, Some(&e.field), e.message, 1)),
        }
    }
    Ok(())
}
