//! Typed access to JSON fields, with errors that name the field.

use serde_json::{Map, Value};

/// Why a field could not be read; the caller adds the location.
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

pub fn object(v: &Value) -> Result<&Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("expected a JSON object, found {}", kind(v)))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, FieldError> {
    obj.get(field).ok_or_else(|| err(field, "missing"))
}

pub fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    let v = get(obj, field)?;
    v.as_str()
        .ok_or_else(|| err(field, format!("expected a string, found {}", kind(v))))
}

/// A non-empty string (after trimming white space).
pub fn text<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    let s = string(obj, field)?;
    check_visible(s, field)?;
    Ok(s)
}

/// Characters that show nothing: white space, zero-width and joiner characters, direction
/// marks, the byte-order mark, soft hyphens.
fn invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
        )
}

/// A text a reader can see: not empty, not only white space or invisible characters.
pub fn check_visible(s: &str, field: &str) -> Result<(), FieldError> {
    if s.is_empty() {
        return Err(err(field, "is empty"));
    }
    if s.chars().all(invisible) {
        return Err(err(
            field,
            format!("is empty: only white space or invisible characters ({s:?})"),
        ));
    }
    Ok(())
}

pub fn array<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Vec<Value>, FieldError> {
    let v = get(obj, field)?;
    v.as_array()
        .ok_or_else(|| err(field, format!("expected an array, found {}", kind(v))))
}

/// A list of options: strings, at least two.
pub fn options(v: &Value, field: &str) -> Result<Vec<String>, FieldError> {
    let items = v.as_array().ok_or_else(|| {
        err(
            field,
            format!("expected an array of strings, found {}", kind(v)),
        )
    })?;
    let opts = items
        .iter()
        .enumerate()
        .map(|(i, o)| {
            o.as_str().map(str::to_string).ok_or_else(|| {
                err(
                    &format!("{field}[{i}]"),
                    format!("expected a string, found {}", kind(o)),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, o) in opts.iter().enumerate() {
        check_visible(o, &format!("{field}[{i}]"))?;
    }
    if opts.len() < 2 {
        return Err(err(
            field,
            format!("has {} option(s); a question needs at least 2", opts.len()),
        ));
    }
    Ok(opts)
}

/// An answer given as a letter (`"A"`, `"B"`, …) or a 0-based index, checked against the options.
pub fn answer(v: &Value, field: &str, n_options: usize) -> Result<usize, FieldError> {
    let last = (b'A' + n_options.min(26) as u8 - 1) as char;
    let index = match v {
        Value::String(s) => {
            let t = s.trim();
            let mut chars = t.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_uppercase() => (c as u8 - b'A') as usize,
                _ => {
                    return Err(err(
                        field,
                        format!("{s:?} is not an option letter A-{last}"),
                    ))
                }
            }
        }
        Value::Number(n) => match n.as_u64() {
            Some(i) => i as usize,
            None => return Err(err(field, format!("{n} is not an option index"))),
        },
        other => {
            return Err(err(
                field,
                format!("expected an option letter, found {}", kind(other)),
            ))
        }
    };
    if index >= n_options {
        return Err(err(
            field,
            format!(
                "answer {} is outside the {n_options} options (A-{last})",
                display_answer(v)
            ),
        ));
    }
    Ok(index)
}

fn display_answer(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}
