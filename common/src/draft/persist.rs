//! Warm start: the phrase pool on disk.
//!
//! The format is JSON with a magic string and a version number, checked before
//! the body is decoded, so a file from another tool or another version is a
//! typed error rather than a confusing field error (or a panic). JSON costs a
//! few MB for a full pool and is written once per session; being readable and
//! diffable was worth more than a compact binary here.
//!
//! Loading re-inserts the phrases oldest first through the normal insert path,
//! so the pool's invariants (bounds, no duplicate prefixes) hold even for a
//! hand-edited file, and recency order and hit counts carry over.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pool::{PhrasePool, PhraseSource, PoolConfig};

const MAGIC: &str = "ouro-phrase-pool";
const VERSION: u64 = 1;

/// Errors saving or loading a phrase pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("phrase pool {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("phrase pool {} is not valid JSON: {source}", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not an ouro phrase pool file", .path.display())]
    NotAPool { path: PathBuf },
    #[error("phrase pool {} has format version {found}; this build reads version {expected}", .path.display())]
    WrongVersion { path: PathBuf, found: u64, expected: u64 },
    #[error("phrase pool {} is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct PoolFile {
    magic: String,
    version: u64,
    config: PoolConfig,
    phrases: Vec<StoredPhrase>,
}

#[derive(Serialize, Deserialize)]
struct StoredPhrase {
    tokens: Vec<u32>,
    source: PhraseSource,
    hits: u32,
    /// Only the order matters; ticks are renumbered on load.
    tick: u64,
    protected: bool,
}

impl PhrasePool {
    /// Writes the pool (not the current context tail, which belongs to one
    /// request). Writes a fresh temporary file in the same directory and
    /// renames it over `path`, so a crash mid-write leaves the previous
    /// warm-start file intact, and concurrent saves never write into each
    /// other's half-written file: the last rename wins whole.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PoolError> {
        let path = path.as_ref();
        let io_err = |source| PoolError::Io { path: path.to_path_buf(), source };
        let mut phrases: Vec<StoredPhrase> = self
            .entries()
            .map(|e| StoredPhrase {
                tokens: e.tokens.clone(),
                source: e.source,
                hits: e.hits,
                tick: e.tick,
                protected: e.protected,
            })
            .collect();
        phrases.sort_by_key(|p| p.tick);
        let file = PoolFile { magic: MAGIC.to_owned(), version: VERSION, config: self.config(), phrases };

        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // Dropped on any error, which removes the temporary file.
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
        let mut out = BufWriter::new(tmp);
        serde_json::to_writer(&mut out, &file).map_err(|e| io_err(e.into()))?;
        let tmp = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(path).map_err(|e| io_err(e.error))?;
        Ok(())
    }

    /// Loads a pool with the config it was saved with. Every phrase must fit
    /// that config, otherwise the file is reported corrupt.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PoolError> {
        let path = path.as_ref();
        let file = read_file(path)?;
        let config = file.config;
        restore(path, file, config, true)
    }

    /// Loads a pool's phrases under a different config (say, a smaller
    /// budget). Phrases that do not fit are dropped or cut, and the bounds are
    /// enforced by the usual eviction, so the most recently used survive.
    pub fn load_with_config(path: impl AsRef<Path>, config: PoolConfig) -> Result<Self, PoolError> {
        let path = path.as_ref();
        let file = read_file(path)?;
        restore(path, file, config, false)
    }
}

fn read_file(path: &Path) -> Result<PoolFile, PoolError> {
    let reader = BufReader::new(File::open(path).map_err(|source| PoolError::Io { path: path.to_path_buf(), source })?);
    let value: serde_json::Value =
        serde_json::from_reader(reader).map_err(|source| PoolError::Parse { path: path.to_path_buf(), source })?;
    if value.get("magic").and_then(|m| m.as_str()) != Some(MAGIC) {
        return Err(PoolError::NotAPool { path: path.to_path_buf() });
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(VERSION) => {}
        found => {
            return Err(PoolError::WrongVersion {
                path: path.to_path_buf(),
                found: found.unwrap_or(0),
                expected: VERSION,
            })
        }
    }
    serde_json::from_value(value).map_err(|e| PoolError::Corrupt { path: path.to_path_buf(), reason: e.to_string() })
}

fn restore(path: &Path, mut file: PoolFile, config: PoolConfig, strict: bool) -> Result<PhrasePool, PoolError> {
    let mut pool = PhrasePool::new(config);
    let config = pool.config();
    if strict && config != file.config {
        return Err(PoolError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("invalid config {:?}", file.config),
        });
    }
    file.phrases.sort_by_key(|p| p.tick);
    for phrase in &file.phrases {
        let len = phrase.tokens.len();
        if strict && (len < config.min_len || len > config.max_len) {
            return Err(PoolError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("phrase of {len} tokens outside {}..={}", config.min_len, config.max_len),
            });
        }
        pool.insert(&phrase.tokens, phrase.source);
        let kept = &phrase.tokens[..len.min(config.max_len)];
        pool.restore_usage(kept, phrase.hits, phrase.protected);
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("ouro-pool-test-{}-{name}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sample_pool() -> PhrasePool {
        let mut p = PhrasePool::new(PoolConfig { max_phrases: 64, max_per_key: 4, min_len: 2, max_len: 6 });
        let text: Vec<u32> = (0..120u32).map(|i| (i * 31 + i / 5) % 17).collect();
        p.add_context(&text);
        p.add_phrase(&[500, 501, 502], PhraseSource::VerifierOutput);
        p.record_hit(&[500, 501]);
        p.record_hit(&[500, 501]);
        p.add_phrase(&[600, 601], PhraseSource::DrafterLookahead);
        p
    }

    #[test]
    fn save_load_roundtrip_keeps_phrases_order_and_hits() {
        let dir = TempDir::new("roundtrip");
        let path = dir.file("pool.json");
        let p = sample_pool();
        p.save(&path).unwrap();
        assert!(!dir.file("pool.json.tmp").exists());
        let q = PhrasePool::load(&path).unwrap();
        assert_eq!(q.config(), p.config());
        assert_eq!(q.stats(), p.stats());
        for key in [0u32, 3, 7, 16, 500, 600] {
            assert_eq!(q.candidates(key, 10), p.candidates(key, 10), "key {key}");
        }
        for suffix in [&[1u32, 2][..], &[5], &[500]] {
            assert_eq!(q.continuations(suffix, 10), p.continuations(suffix, 10));
        }
        let hit = q.entries().find(|e| e.tokens == [500, 501, 502]).unwrap();
        assert_eq!(hit.hits, 2);
        assert!(hit.protected);
    }

    #[test]
    fn load_with_smaller_config_enforces_bounds() {
        let dir = TempDir::new("smaller");
        let path = dir.file("pool.json");
        sample_pool().save(&path).unwrap();
        let small = PoolConfig { max_phrases: 5, max_per_key: 2, min_len: 2, max_len: 3 };
        let q = PhrasePool::load_with_config(&path, small).unwrap();
        assert_eq!(q.len(), 5);
        assert!(q.entries().all(|e| e.tokens.len() <= 3));
        // The most recently used phrases survive.
        assert_eq!(q.candidates(600, 1), vec![&[600, 601][..]]);
        assert_eq!(q.candidates(500, 1), vec![&[500, 501, 502][..]]);
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let dir = TempDir::new("corrupt");
        let good = dir.file("good.json");
        sample_pool().save(&good).unwrap();
        let text = fs::read_to_string(&good).unwrap();

        let missing = PhrasePool::load(dir.file("missing.json"));
        assert!(matches!(missing, Err(PoolError::Io { .. })), "{missing:?}");

        let truncated = dir.file("truncated.json");
        fs::write(&truncated, &text[..text.len() / 2]).unwrap();
        let err = PhrasePool::load(&truncated).unwrap_err();
        assert!(matches!(err, PoolError::Parse { .. }), "{err:?}");

        let garbage = dir.file("garbage.bin");
        fs::write(&garbage, [0xff, 0x00, 0x13, 0x37]).unwrap();
        assert!(matches!(PhrasePool::load(&garbage), Err(PoolError::Parse { .. })));

        let other = dir.file("other.json");
        fs::write(&other, r#"{"magic": "something-else", "version": 1}"#).unwrap();
        assert!(matches!(PhrasePool::load(&other), Err(PoolError::NotAPool { .. })));

        let future = dir.file("future.json");
        fs::write(&future, text.replacen(r#""version":1"#, r#""version":7"#, 1)).unwrap();
        let err = PhrasePool::load(&future).unwrap_err();
        assert!(matches!(err, PoolError::WrongVersion { found: 7, expected: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("version 7"));

        let bad_body = dir.file("bad_body.json");
        fs::write(&bad_body, r#"{"magic":"ouro-phrase-pool","version":1,"config":{"max_phrases":4},"phrases":[]}"#)
            .unwrap();
        assert!(matches!(PhrasePool::load(&bad_body), Err(PoolError::Corrupt { .. })));

        let bad_phrase = dir.file("bad_phrase.json");
        fs::write(
            &bad_phrase,
            r#"{"magic":"ouro-phrase-pool","version":1,
                "config":{"max_phrases":4,"max_per_key":2,"min_len":2,"max_len":3},
                "phrases":[{"tokens":[1],"source":"Context","hits":0,"tick":1,"protected":false}]}"#,
        )
        .unwrap();
        let err = PhrasePool::load(&bad_phrase).unwrap_err();
        assert!(matches!(err, PoolError::Corrupt { .. }), "{err:?}");

        let bad_config = dir.file("bad_config.json");
        fs::write(
            &bad_config,
            r#"{"magic":"ouro-phrase-pool","version":1,
                "config":{"max_phrases":0,"max_per_key":2,"min_len":2,"max_len":3},
                "phrases":[]}"#,
        )
        .unwrap();
        assert!(matches!(PhrasePool::load(&bad_config), Err(PoolError::Corrupt { .. })));
    }

    #[test]
    fn concurrent_saves_leave_one_whole_file_and_no_temporaries() {
        let dir = TempDir::new("concurrent");
        let path = dir.file("pool.json");
        let pools: Vec<PhrasePool> = (0..8u32)
            .map(|i| {
                let mut p = sample_pool();
                p.add_phrase(&[900 + i, 901 + i, 902 + i], PhraseSource::VerifierOutput);
                p
            })
            .collect();
        std::thread::scope(|s| {
            for p in &pools {
                for _ in 0..5 {
                    s.spawn(|| p.save(&path).unwrap());
                }
            }
        });
        let loaded = PhrasePool::load(&path).expect("a whole file");
        assert!(pools.iter().any(|p| p.len() == loaded.len()));
        let names: Vec<_> = fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["pool.json"], "temporary files left behind");
    }

    #[test]
    fn save_into_missing_directory_is_an_io_error() {
        let dir = TempDir::new("nodir");
        let err = sample_pool().save(dir.file("no/such/dir/pool.json")).unwrap_err();
        assert!(matches!(err, PoolError::Io { .. }), "{err:?}");
    }
}
