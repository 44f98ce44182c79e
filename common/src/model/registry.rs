//! The pinned models ouro knows by name, and where `deploy/fetch-models.sh`
//! puts them. Keep this table and the script's in step.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ModelError, Result};

#[derive(Debug, Clone, Copy)]
pub struct PinnedModel {
    pub name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    pub description: &'static str,
}

pub const PINNED: &[PinnedModel] = &[
    PinnedModel {
        name: "smollm2-135m",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description: "SmolLM2-135M-Instruct, Llama architecture, tied embeddings, Q4_1",
    },
    PinnedModel {
        name: "qwen2.5-coder-0.5b",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description: "Qwen2.5-Coder-0.5B-Instruct (drafter), Q5_0/Q4_K_M",
    },
    PinnedModel {
        name: "qwen2.5-coder-1.5b",
        size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description: "Qwen2.5-Coder-1.5B-Instruct (verifier), Q4_K_M",
    },
];

/// `$OURO_MODEL_DIR`, default `~/.cache/ouro/models`.
pub fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OURO_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/ouro/models")
}

pub fn pinned(name: &str) -> Option<&'static PinnedModel> {
    PINNED.iter().find(|m| m.name == name)
}

/// Resolves a pinned model name to its cached file, or takes any other
/// argument as a path. A pinned file of the wrong size is refused: it is a
/// partial or foreign download.
pub fn resolve(name_or_path: &str) -> Result<PathBuf> {
    if let Some(m) = pinned(name_or_path) {
        let path = model_dir().join(format!("{}.gguf", m.name));
        let meta = std::fs::metadata(&path).map_err(|_| ModelError::BadFile {
            path: path.display().to_string(),
            reason: format!("model {} is not fetched: run `deploy/fetch-models.sh {}`", m.name, m.name),
        })?;
        if meta.len() != m.size {
            return Err(ModelError::BadFile {
                path: path.display().to_string(),
                reason: format!("expected {} bytes, found {}: re-run deploy/fetch-models.sh", m.size, meta.len()),
            });
        }
        return Ok(path);
    }
    let p = PathBuf::from(name_or_path);
    if p.exists() {
        Ok(p)
    } else {
        let known: Vec<_> = PINNED.iter().map(|m| m.name).collect();
        Err(ModelError::BadFile {
            path: name_or_path.into(),
            reason: format!("no such file, and not a pinned model name ({})", known.join(", ")),
        })
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| ModelError::Io { path: path.display().to_string(), source };
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
        Err(ModelError::HashMismatch { path: path.display().to_string(), expected: expected.into(), got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_hash_is_reported_with_both_values() {
        let dir = std::env::temp_dir().join(format!("ouro-reg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.bin");
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
