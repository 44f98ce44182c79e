//! The pinned models ouro knows by name, and where `deploy/fetch-models.sh`
//! puts them. The table is `deploy/models.tsv`, which the script reads too.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("model {name} is not fetched (no {path}): run `deploy/fetch-models.sh {name}`")]
    NotFetched { name: String, path: String },
    #[error(
        "{path}: expected {expected} bytes, found {got}: a partial or foreign download; re-run deploy/fetch-models.sh"
    )]
    WrongSize { path: String, expected: u64, got: u64 },
    #[error("{0}: no such file, and not a pinned model name ({known})", known = known_names())]
    Unknown(String),
    #[error("sha256 mismatch for {path}: expected {expected}, got {got}")]
    HashMismatch { path: String, expected: String, got: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = ModelsError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedModel {
    pub name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    pub description: &'static str,
}

const TABLE: &str = include_str!("../../deploy/models.tsv");

/// The rows of `deploy/models.tsv` (`#` lines are comments); `None` for a
/// malformed one, which the tests below refuse.
fn rows(table: &'static str) -> impl Iterator<Item = Option<PinnedModel>> {
    table.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(|l| {
        let f: Vec<&'static str> = l.split('\t').collect();
        let [name, _package, _version, _parts, _path, size, sha256, description] = f[..] else { return None };
        let sha_ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        Some(PinnedModel { name, size: size.parse().ok()?, sha256: sha_ok.then_some(sha256)?, description })
    })
}

/// Every pinned model, in the table's order.
pub fn pinned_models() -> &'static [PinnedModel] {
    static MODELS: OnceLock<Vec<PinnedModel>> = OnceLock::new();
    MODELS.get_or_init(|| rows(TABLE).flatten().collect())
}

fn known_names() -> String {
    pinned_models().iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// `$OURO_MODEL_DIR`, default `~/.cache/ouro/models`, as `deploy/fetch-models.sh` uses.
pub fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OURO_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/ouro/models")
}

/// Where a pinned model's file is cached, whether or not it is there.
pub fn cached_path(name: &str) -> PathBuf {
    model_dir().join(format!("{name}.gguf"))
}

pub fn pinned(name: &str) -> Option<&'static PinnedModel> {
    pinned_models().iter().find(|m| m.name == name)
}

/// Resolves a pinned model name to its cached file, or takes any other
/// argument as a path. A pinned file of the wrong size is refused: it is a
/// partial or foreign download.
pub fn resolve(name_or_path: &str) -> Result<PathBuf> {
    if let Some(m) = pinned(name_or_path) {
        let path = cached_path(m.name);
        let shown = path.display().to_string();
        let meta = std::fs::metadata(&path)
            .map_err(|_| ModelsError::NotFetched { name: m.name.into(), path: shown.clone() })?;
        if meta.len() != m.size {
            return Err(ModelsError::WrongSize { path: shown, expected: m.size, got: meta.len() });
        }
        return Ok(path);
    }
    let p = PathBuf::from(name_or_path);
    if p.exists() {
        Ok(p)
    } else {
        Err(ModelsError::Unknown(name_or_path.into()))
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| ModelsError::Io { path: path.display().to_string(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Checks a file against its expected sha256.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let got = sha256_file(path)?;
    if got.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ModelsError::HashMismatch { path: path.display().to_string(), expected: expected.into(), got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_whole() {
        let all: Vec<_> = rows(TABLE).collect();
        assert!(all.iter().all(Option::is_some), "a malformed row in deploy/models.tsv");
        assert_eq!(pinned_models().len(), all.len());
        let names: Vec<_> = pinned_models().iter().map(|m| m.name).collect();
        assert_eq!(names, ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]);
        let smol = pinned("smollm2-135m").unwrap();
        assert_eq!(smol.size, 98_362_432);
        assert_eq!(smol.sha256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    }

    #[test]
    fn malformed_rows_are_refused() {
        let bad = "# comment\nx\tp\t1\t0\tf\tnot-a-size\t00\td\nshort\trow\n";
        assert!(rows(bad).all(|r| r.is_none()));
        let sha = "0".repeat(64);
        let good: &'static str = format!("x\tp\t1\t0\tf\t12\t{sha}\td\n").leak();
        assert_eq!(rows(good).flatten().count(), 1);
    }

    #[test]
    fn wrong_hash_is_reported_with_both_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.bin");
        std::fs::write(&f, b"abc").unwrap();
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256(&f, good).unwrap();
        let err = verify_sha256(&f, &"0".repeat(64)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(good) && msg.contains(&"0".repeat(64)), "{msg}");
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let err = resolve("no-such-model-xyz").unwrap_err().to_string();
        assert!(err.contains("smollm2-135m"), "{err}");
    }
}
