//! Parquet files with one question per row, as the Hub's RACE dataset (`ehovy/race`) stores
//! them: columns `example_id`, `article`, `question`, `options` (a list of strings) and `answer`.
//! Rows are read with parquet's record API and validated exactly as JSON lines are. Files in the
//! EleutherAI/race layout (columns `article` and `problems`, one row per article) are read too.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::{Map, Value};

use super::error::{DataError, Location};
use super::jsonl::{parse_article_row, parse_row, RowCollector};
use super::Dataset;

/// The columns a RACE row needs.
pub const COLUMNS: &[&str] = &["example_id", "article", "question", "options", "answer"];

/// True when `rel` (a path relative to a dataset folder, `/`-separated) holds parquet data of
/// `split`: `SPLIT.parquet`, `SPLIT-*.parquet` (the Hub's shards), or any parquet file in a
/// `SPLIT/` folder (the Hub's parquet conversion). `dev` and `validation` name the same split.
pub fn is_split_file(rel: &str, split: &str) -> bool {
    if !rel.ends_with(".parquet") {
        return false;
    }
    let names: &[&str] = match split {
        "dev" | "validation" => &["validation", "dev"],
        other => &[other],
    };
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    names.iter().any(|s| {
        (dir.is_empty() && (name == format!("{s}.parquet") || name.starts_with(&format!("{s}-"))))
            || dir == *s
    })
}

/// The parquet files of `split` in folder `dir`, sorted (empty when there are none).
pub fn split_files(dir: &Path, split: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut scan = |folder: &Path, prefix: &str| {
        if let Ok(entries) = std::fs::read_dir(folder) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_file() && is_split_file(&format!("{prefix}{name}"), split) {
                    out.push(e.path());
                }
            }
        }
    };
    scan(dir, "");
    for s in ["validation", "dev", split] {
        if is_split_file(&format!("{s}/x.parquet"), split) {
            scan(&dir.join(s), &format!("{s}/"));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn field_to_json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => Value::from(*v),
        Field::Short(v) => Value::from(*v),
        Field::Int(v) => Value::from(*v),
        Field::Long(v) => Value::from(*v),
        Field::UByte(v) => Value::from(*v),
        Field::UShort(v) => Value::from(*v),
        Field::UInt(v) => Value::from(*v),
        Field::ULong(v) => Value::from(*v),
        Field::Float(v) => Value::from(f64::from(*v)),
        Field::Double(v) => Value::from(*v),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => Value::Null,
        },
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(field_to_json).collect())
        }
        Field::Group(row) => {
            let mut obj = Map::new();
            for (name, f) in row.get_column_iter() {
                obj.insert(name.clone(), field_to_json(f));
            }
            Value::Object(obj)
        }
        other => Value::String(other.to_string()),
    }
}

fn open(path: &Path) -> Result<SerializedFileReader<std::fs::File>> {
    let file =
        std::fs::File::open(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    SerializedFileReader::new(file).map_err(|e| {
        anyhow!(
            "{} is not a readable parquet file ({e}); if it was downloaded, it may be truncated: delete it and download it again",
            path.display()
        )
    })
}

/// Every row of `files`, in order, as a JSON object: (file, 1-based row, row).
pub fn rows(files: &[PathBuf]) -> Result<Vec<(PathBuf, usize, Value)>> {
    let mut out = Vec::new();
    for path in files {
        let reader = open(path)?;
        let iter = reader
            .get_row_iter(None)
            .map_err(|e| anyhow!("cannot read the rows of {}: {e}", path.display()))?;
        for (i, row) in iter.enumerate() {
            let row = row.map_err(|e| {
                anyhow!(
                    "{}: row {} cannot be read ({e}); the file may be corrupt or use a compression this build lacks (only uncompressed and snappy are supported)",
                    path.display(),
                    i + 1
                )
            })?;
            let mut obj = Map::new();
            for (name, f) in row.get_column_iter() {
                obj.insert(name.clone(), field_to_json(f));
            }
            out.push((path.clone(), i + 1, Value::Object(obj)));
        }
    }
    Ok(out)
}

/// Loads the rows of `files` (RACE's columns), in order, as questions.
pub fn load(files: &[PathBuf]) -> Result<Dataset> {
    let mut collector = RowCollector::default();
    let mut skipped = Vec::new();
    for path in files {
        let reader = open(path)?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let have: Vec<String> = schema
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let article_rows = ["article", "problems"]
            .iter()
            .all(|c| have.iter().any(|h| h == c));
        let missing: Vec<&str> = COLUMNS
            .iter()
            .filter(|_| !article_rows)
            .copied()
            .filter(|c| !have.iter().any(|h| h == c))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}: missing column(s) {} (it has: {}); RACE data needs columns {} (or article and problems, one row per article)",
                path.display(),
                missing.join(", "),
                have.join(", "),
                COLUMNS.join(", ")
            );
        }
    }
    for (path, i, value) in rows(files)? {
        let parsed = if value.get("problems").is_some() && value.get("question").is_none() {
            parse_article_row(&value, i)
        } else {
            parse_row(&value).map(|r| vec![r])
        };
        match parsed {
            Ok(list) => {
                for r in list {
                    if let Err(e) = collector.push(r, Location::line(&path, i)) {
                        skipped.push(*e);
                    }
                }
            }
            Err(e) => {
                let mut at = Location::line(&path, i);
                at.passage = value
                    .get("example_id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                skipped.push(DataError::new(at, Some(&e.field), e.message, 1));
            }
        }
    }
    Ok(Dataset {
        questions: collector.finish(),
        skipped,
        files: files.to_vec(),
        format: "parquet",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_file_names() {
        assert!(is_split_file("test-00000-of-00001.parquet", "test"));
        assert!(is_split_file("test.parquet", "test"));
        assert!(is_split_file("validation-00000-of-00001.parquet", "dev"));
        assert!(is_split_file("test/0000.parquet", "test"));
        assert!(!is_split_file("train-00000-of-00001.parquet", "test"));
        assert!(!is_split_file("testing.parquet", "test"));
        assert!(!is_split_file("test.jsonl", "test"));
        assert!(!is_split_file("other/test.parquet", "test"));
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.parquet");
        std::fs::write(&p, b"PAR1 not really").unwrap();
        let e = load(std::slice::from_ref(&p)).unwrap_err().to_string();
        assert!(
            e.contains("test.parquet") && e.contains("not a readable parquet"),
            "{e}"
        );
        assert_eq!(split_files(dir.path(), "test"), vec![p]);
        assert!(split_files(dir.path(), "train").is_empty());
    }
}
