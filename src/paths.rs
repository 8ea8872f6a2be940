//! Outputs never overwrite inputs: a file about to be written is compared with every file the
//! run read (by their canonical paths, so `./a/../b` and symbolic links count too).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The canonical form of `path`, also for a file that does not exist yet (its folder's).
fn canonical(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.canonicalize().ok()?,
        _ => std::env::current_dir().ok()?,
    };
    Some(parent.join(path.file_name()?))
}

/// Refuses to write `output` (given as `flag`) when it is one of `inputs`, or a folder that
/// holds one of them (with `folder`).
pub fn refuse_overwrite(output: &Path, flag: &str, inputs: &[PathBuf], folder: bool) -> Result<()> {
    let Some(out) = canonical(output) else {
        return Ok(());
    };
    for input in inputs {
        let Some(inp) = canonical(input) else {
            continue;
        };
        if inp == out || (folder && inp.starts_with(&out)) {
            bail!(
                "{flag} {} would overwrite {}, which this run reads: write to another path",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_that_is_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("test.jsonl");
        std::fs::write(&data, "{}").unwrap();
        let inputs = vec![data.clone()];
        let same = dir.path().join("sub/../test.jsonl");
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        let e = refuse_overwrite(&same, "--predictions", &inputs, false).unwrap_err();
        assert!(e.to_string().contains("--predictions"), "{e}");
        assert!(
            refuse_overwrite(&dir.path().join("p.jsonl"), "--predictions", &inputs, false).is_ok()
        );
        // A folder that holds an input, as an output folder.
        assert!(refuse_overwrite(dir.path(), "--output", &inputs, true).is_err());
        assert!(refuse_overwrite(dir.path(), "--output", &inputs, false).is_ok());
    }
}
