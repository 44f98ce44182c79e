//! The drafter's ranking-file parser (`RankedVocab::parse` in
//! common/src/model/vocab.rs, what `--draft-vocab FILE` reads) on arbitrary
//! text.
//!
//! Checks: parsing returns an error rather than panicking; a parsed ranking
//! holds as many distinct ids as it announced, all below its vocabulary;
//! its text form parses back to the same ranking; any prefix of it is a
//! subset of its vocabulary, sorted, that maps columns to ids and back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ouro_common::model::RankedVocab;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(r) = RankedVocab::parse(&text, "fuzz") else { return };
    assert!(!r.ids.is_empty());
    assert!(r.ids.iter().all(|&id| (id as usize) < r.vocab));
    let mut sorted = r.ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), r.ids.len(), "repeated ids");
    let back = RankedVocab::parse(&r.to_text(&["round trip".into()]), "again").expect("its own text parses");
    assert_eq!(back, r);
    assert!(r.check("fuzz", &r.tokenizer, r.vocab).is_ok());
    for top in [Some(1), Some(r.ids.len() / 2 + 1), None] {
        let s = r.subset(top, r.vocab).expect("a prefix is a subset");
        assert!(s.ids().windows(2).all(|w| w[0] < w[1]));
        for (i, &id) in s.ids().iter().enumerate() {
            assert_eq!((s.token(i), s.index_of(id)), (id, Some(i)));
        }
    }
});
