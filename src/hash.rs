//! The one content hash race-eval records: SHA-256 in hex. Weights and data files are hashed
//! by [`sha256_files`] everywhere (run records, head metadata, feature caches), so a model's
//! hash in `summary.json` is the one its heads were checked against; for one file it is the
//! file's plain `sha256sum` (the Hub's ETag for large files).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// SHA-256 over the bytes of `files`, in order.
pub fn sha256_files(files: &[PathBuf]) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("cannot open {} to hash it", path.display()))?;
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("cannot read {} to hash it", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of a string.
pub fn sha256_str(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// SHA-256 over several strings, each prefixed by its length (so `["ab", "c"]` and
/// `["a", "bc"]` differ): cache keys and fingerprints made of several parts.
pub fn sha256_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_content_and_match_sha256sum() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a");
        std::fs::write(&a, "hello\n")?;
        let h1 = sha256_files(std::slice::from_ref(&a))?;
        // `printf 'hello\n' | sha256sum`
        assert_eq!(
            h1,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(h1, sha256_str("hello\n"));
        std::fs::write(&a, "y")?;
        assert_ne!(h1, sha256_files(&[a])?);
        assert_ne!(sha256_parts(&["ab", "c"]), sha256_parts(&["a", "bc"]));
        Ok(())
    }
}
