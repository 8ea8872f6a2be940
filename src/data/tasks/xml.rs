//! Small helpers for the XML releases (MCScript, QuAIL).

use quick_xml::events::BytesStart;

/// The value of attribute `name`, unescaped.
pub fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name.as_bytes())
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// 1-based line of byte offset `pos` in `text`.
pub fn line_at(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The one answer marked correct (`correct="True"`) among `answers` (text, correct), or a
/// message for `field` saying how many were.
pub fn single_correct(answers: &[(String, bool)]) -> Result<usize, String> {
    let correct: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].1).collect();
    match correct[..] {
        [one] => Ok(one),
        _ => Err(format!(
            "{} answers are marked correct=\"True\"; exactly one must be",
            correct.len()
        )),
    }
}

/// Reads `xml` event by event, calling `on(event, byte offset)`; malformed XML is recorded in
/// `b` by line and ends the reading.
pub fn each_event(
    xml: &str,
    file: &std::path::Path,
    b: &mut super::build::Builder,
    mut on: impl FnMut(quick_xml::events::Event, usize, &mut super::build::Builder),
) {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        let pos = reader.buffer_position() as usize;
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(e) => on(e, pos, b),
            Err(e) => {
                let line = line_at(xml, reader.error_position() as usize);
                b.error_at(file, Some(line), None, None, format!("malformed XML: {e}"));
                break;
            }
        }
    }
}
