//! The phrase-pool warm-start file loader (`PhrasePool::load` and
//! `load_with_config` in common/src/draft/persist.rs) on a file of arbitrary
//! bytes.
//!
//! Checks: loading returns an error rather than panicking; a loaded pool
//! keeps its bounds; it saves and loads back to a pool of the same size.

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use ouro_common::draft::{PhrasePool, PoolConfig};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ouro-fuzz-pool-{}-{name}.json", std::process::id()))
}

fn check(pool: &PhrasePool) {
    let config = pool.config();
    assert!(pool.len() <= config.max_phrases, "{} phrases over a bound of {}", pool.len(), config.max_phrases);
    let stats = pool.stats();
    assert_eq!(stats.phrases, pool.len());
    assert!(stats.protected <= stats.phrases);
}

fuzz_target!(|data: &[u8]| {
    let path = scratch("in");
    std::fs::write(&path, data).expect("scratch file");
    if let Ok(pool) = PhrasePool::load(&path) {
        check(&pool);
        let saved = scratch("saved");
        pool.save(&saved).expect("a loaded pool saves");
        let back = PhrasePool::load(&saved).expect("a saved pool loads");
        assert_eq!(back.len(), pool.len());
        assert_eq!(back.config(), pool.config());
    }
    let small = PoolConfig { max_phrases: 8, max_per_key: 2, min_len: 2, max_len: 4 };
    if let Ok(pool) = PhrasePool::load_with_config(&path, small) {
        check(&pool);
    }
});
