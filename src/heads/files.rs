//! Writing files so that a failure half-way (disk full, interruption) never destroys the previous
//! good copy: write a temporary file next to the target, then rename it over the target.
//! Checkpoint folders are swapped the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Calls `write` with a temporary path next to `path`, then renames it to `path`. On error the
/// temporary file is removed and `path`, if it existed, is left as it was.
pub fn atomic_write(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "cannot save {} (disk full or not writable?); any previous copy is unchanged",
                path.display()
            )
        });
    }
    Ok(())
}

pub fn write_text(path: &Path, text: &str) -> Result<()> {
    atomic_write(path, |tmp| {
        std::fs::write(tmp, text).with_context(|| format!("cannot write {}", tmp.display()))
    })
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_text(path, &(serde_json::to_string_pretty(value)? + "\n"))
}

pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    atomic_write(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))
    })
}

pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}; the file is missing or damaged",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_the_previous_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("weights.bin");
        write_text(&path, "good")?;
        let err = atomic_write(&path, |tmp| {
            std::fs::write(tmp, "half")?;
            anyhow::bail!("No space left on device (os error 28)")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("previous copy is unchanged"));
        assert_eq!(std::fs::read_to_string(&path)?, "good");
        let left: Vec<_> = std::fs::read_dir(dir.path())?.collect();
        assert_eq!(left.len(), 1, "the temporary file is removed");
        Ok(())
    }
}
