//! The Python literals that `repr` writes for lists, dicts and strings, read into JSON values:
//! the `problems` field of the EleutherAI/race layout is such a string (the harness reads it with
//! `ast.literal_eval`). Supported: lists and tuples, dicts, strings in single or double quotes
//! with Python's escapes (`\\ \' \" \n \r \t \xNN \uNNNN \UNNNNNNNN` and the rest of the
//! one-letter ones), integers, `True`, `False`, `None`. Nothing else (no byte strings, no
//! string prefixes, no implicit concatenation): an error says where.

use serde_json::{Map, Value};

/// Parses one literal filling all of `text` (surrounding white space allowed).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        at: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.at != p.s.len() {
        return Err(p.err("unexpected text after the literal"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
}

const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!(
            "Python literal: {what} at character {}",
            self.text[..self.at.min(self.s.len())].chars().count() + 1
        )
    }

    fn ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        match self.peek() {
            Some(b'[') => self.seq(b']', depth),
            Some(b'(') => self.seq(b')', depth),
            Some(b'{') => self.dict(depth),
            Some(b'\'' | b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.at += 1;
                }
                match &self.text[start..self.at] {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::Null),
                    w => {
                        self.at = start;
                        Err(self.err(&format!("`{w}` is not a literal this reader supports")))
                    }
                }
            }
            Some(_) => Err(self.err("expected a list, dict, string or number")),
            None => Err(self.err("unexpected end")),
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Value, String> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.at += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err(&format!("expected `,` or `{}`", close as char))),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Value, String> {
        self.at += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.at += 1;
                return Ok(Value::Object(map));
            }
            if !matches!(self.peek(), Some(b'\'' | b'"')) {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected `:`"));
            }
            self.at += 1;
            let v = self.value(depth + 1)?;
            map.insert(key, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected `,` or `}`")),
            }
        }
    }

    fn int(&mut self) -> Result<Value, String> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        self.text[start..self.at]
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| {
                self.at = start;
                self.err("not an integer")
            })
    }

    fn hex(&mut self, n: usize) -> Result<char, String> {
        let digits = self
            .text
            .get(self.at..self.at + n)
            .ok_or_else(|| self.err("short escape"))?;
        let code = u32::from_str_radix(digits, 16).map_err(|_| self.err("bad hex escape"))?;
        self.at += n;
        char::from_u32(code).ok_or_else(|| self.err("escape is not a character"))
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.s[self.at];
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(c) = rest.chars().next() else {
                return Err(self.err("unterminated string"));
            };
            self.at += c.len_utf8();
            match c {
                '\\' => {
                    let Some(e) = self.text[self.at..].chars().next() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.at += e.len_utf8();
                    match e {
                        '\\' | '\'' | '"' => out.push(e),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        '0' => out.push('\0'),
                        '\n' => {}
                        'x' => out.push(self.hex(2)?),
                        'u' => out.push(self.hex(4)?),
                        'U' => out.push(self.hex(8)?),
                        _ => {
                            // Python keeps an unknown escape as written.
                            out.push('\\');
                            out.push(e);
                        }
                    }
                }
                '\n' => return Err(self.err("newline inside a string")),
                c if c as u32 == quote as u32 => return Ok(out),
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_repr_writes() {
        // As Python 3 prints str([{...}]) for these values.
        let text = r#"[{'answer': 'B', 'options': ["Tom's", 'say "hi"', 'a\\b', 'tab\there\nnew\x7f\u200b\U0001f600é'], 'question': 'Why  _  .'}, (1, -2, True, False, None)]"#;
        let v = parse(text).unwrap();
        assert_eq!(
            v,
            json!([
                {"answer": "B", "options": ["Tom's", "say \"hi\"", "a\\b", "tab\there\nnew\u{7f}\u{200b}\u{1f600}é"], "question": "Why  _  ."},
                [1, -2, true, false, null]
            ])
        );
        assert_eq!(parse(" [ ] ").unwrap(), json!([]));
        assert_eq!(parse("{'a': [1,],}").unwrap(), json!({"a": [1]}));
    }

    #[test]
    fn errors_say_where() {
        for (bad, what) in [
            ("[1, 2", "expected `,` or `]`"),
            ("['abc", "unterminated"),
            ("[x]", "`x`"),
            ("{1: 2}", "string key"),
            ("[1] 2", "after the literal"),
            ("'\\x4'", "escape"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
            assert!(e.contains("at character"), "{e}");
        }
    }
}
