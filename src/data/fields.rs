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
    if s.trim().is_empty() {
        return Err(err(field, "is empty"));
    }
    Ok(s)
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
