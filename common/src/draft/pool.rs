//! The phrase pool: token n-grams keyed by their first token.
//!
//! # Storage and dedupe
//!
//! Phrases live in one small vector per key token. Within a key no phrase is a
//! prefix of another: adding a prefix of a stored phrase only refreshes the
//! stored one, and adding an extension of a stored phrase replaces it (keeping
//! its hits). Every lookup can cut a phrase short, so a prefix adds nothing a
//! longer phrase does not already offer, and this keeps the ~7 n-grams per
//! context position (lengths 2..=8) down to about one stored phrase. It is also
//! what makes [`PhrasePool::extend_context`] incremental: the n-grams cut short
//! at the old end of the text simply grow when new tokens arrive.
//!
//! # Eviction: segmented LRU
//!
//! Entries are either *probationary* (never hit) or *protected* (hit at least
//! once by an accepted draft). The victim is always the least recently used
//! probationary entry, and only if there is none the least recently used
//! protected one. Protected entries may fill at most 80% of the pool; promoting
//! one beyond that demotes the least recently used protected entry back to
//! probation. The same order picks the victim when one key is full.
//!
//! Why: feeding the prompt is a scan of thousands of n-grams, almost all of
//! which will never be hit. Plain LRU would let every long prompt flush the
//! phrases that actually got accepted; plain LFU would keep phrases that were
//! hot an hour ago forever and never let new text in. SLRU protects the useful
//! ones from scans while still ageing them, and the 20% probation floor
//! guarantees new text always has room to prove itself.
//!
//! Recency is a logical clock bumped on every add, refresh and hit, so it is
//! unique per touch and deterministic (no wall-clock time).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The longest draft suffix [`PhrasePool::continuations`] tries to match.
/// Longer matches are more specific but rarer; three tokens is where Ouroboros
/// and lookahead decoding found the hit rate to flatten.
pub const MAX_SUFFIX_MATCH: usize = 3;

/// Size bounds of a [`PhrasePool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    /// Total phrases kept across all keys.
    pub max_phrases: usize,
    /// Phrases kept per key token; bounds the lookup cost and stops frequent
    /// tokens ("the", ",") from owning the whole pool.
    pub max_per_key: usize,
    /// Shortest phrase kept (key plus at least one continuation token).
    pub min_len: usize,
    /// Longest phrase kept.
    pub max_len: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { max_phrases: 16_384, max_per_key: 16, min_len: 2, max_len: 8 }
    }
}

impl PoolConfig {
    /// The config actually used: a phrase needs a key and one more token,
    /// `max_len` is at least `min_len`, and every bound at least 1. Fixing up
    /// rather than failing keeps [`PhrasePool::new`] total.
    pub fn normalized(self) -> Self {
        let min_len = self.min_len.max(2);
        Self {
            max_phrases: self.max_phrases.max(1),
            max_per_key: self.max_per_key.max(1),
            min_len,
            max_len: self.max_len.max(min_len),
        }
    }
}

/// Where a phrase came from. Kept for statistics and persisted; lookups rank
/// by observed usefulness, not by source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PhraseSource {
    /// The prompt or committed text.
    Context,
    /// Tokens the drafter produced beyond what was verified.
    DrafterLookahead,
    /// The verifier's argmax along a rejected branch: mostly right tokens that
    /// were conditioned on a wrong prefix, hence likely to recur shortly.
    VerifierOutput,
}

/// What [`PhrasePool::add_phrase`] did with one phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored as a new phrase.
    Added,
    /// A stored phrase was a prefix of it and now is the whole phrase.
    Extended,
    /// It equals or prefixes a stored phrase, which was marked recently used.
    Refreshed,
    /// Shorter than `min_len`; nothing stored.
    Rejected,
}

/// See [`PhrasePool::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolMark(u64);

/// Counts for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub phrases: usize,
    pub keys: usize,
    pub protected: usize,
    pub from_context: usize,
    pub from_drafter: usize,
    pub from_verifier: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) tokens: Vec<u32>,
    pub(super) source: PhraseSource,
    pub(super) hits: u32,
    /// Logical time of the last add, refresh or hit; unique across the pool.
    pub(super) tick: u64,
    pub(super) protected: bool,
}

/// Bounded n-gram pool; see the module docs for the dedupe and eviction rules.
#[derive(Debug, Clone)]
pub struct PhrasePool {
    config: PoolConfig,
    by_key: HashMap<u32, Vec<Entry>>,
    /// Eviction order: `(protected, tick) -> key`. The first element is the
    /// next victim because probationary (`false`) sorts before protected.
    order: BTreeMap<(bool, u64), u32>,
    protected: usize,
    clock: u64,
    /// The last `max_len - 1` context tokens: n-grams starting there are
    /// still cut short by the end of the text and grow on the next extend.
    tail: Vec<u32>,
}

impl Default for PhrasePool {
    fn default() -> Self {
        Self::new(PoolConfig::default())
    }
}

impl PhrasePool {
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config: config.normalized(),
            by_key: HashMap::new(),
            order: BTreeMap::new(),
            protected: 0,
            clock: 0,
            tail: Vec::new(),
        }
    }

    pub fn config(&self) -> PoolConfig {
        self.config
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats {
            phrases: self.len(),
            keys: self.by_key.len(),
            protected: self.protected,
            ..PoolStats::default()
        };
        for entry in self.by_key.values().flatten() {
            match entry.source {
                PhraseSource::Context => stats.from_context += 1,
                PhraseSource::DrafterLookahead => stats.from_drafter += 1,
                PhraseSource::VerifierOutput => stats.from_verifier += 1,
            }
        }
        stats
    }

    /// Drops every phrase and the context tail.
    pub fn clear(&mut self) {
        *self = Self::new(self.config);
    }

    /// Starts a new text (a new request's prompt) and adds its n-grams.
    /// N-grams never span the previous text and this one.
    pub fn add_context(&mut self, tokens: &[u32]) {
        self.reset_context();
        self.extend_context(tokens);
    }

    /// Forgets where the current text ends, so the next
    /// [`extend_context`](Self::extend_context) starts a new text. Phrases stay.
    pub fn reset_context(&mut self) {
        self.tail.clear();
    }

    /// Appends newly committed tokens to the current text. Only n-grams that
    /// contain a new token are touched, so feeding a text piecewise costs the
    /// same as feeding it at once: O(new tokens × max_len).
    pub fn extend_context(&mut self, new_tokens: &[u32]) {
        if new_tokens.is_empty() {
            return;
        }
        let old = self.tail.len();
        let mut text = std::mem::take(&mut self.tail);
        text.extend_from_slice(new_tokens);
        let max_len = self.config.max_len;
        for start in 0..text.len() {
            let end = (start + max_len).min(text.len());
            // Windows ending inside the old tail were added by earlier calls.
            if end > old {
                self.insert(&text[start..end], PhraseSource::Context);
            }
        }
        let keep = max_len - 1;
        let cut = text.len().saturating_sub(keep);
        text.drain(..cut);
        self.tail = text;
    }

    /// Adds one phrase. A phrase longer than `max_len` is stored as all its
    /// `max_len` windows so none of it is lost. Returns the strongest outcome
    /// (`Added` over `Extended` over `Refreshed` over `Rejected`).
    pub fn add_phrase(&mut self, tokens: &[u32], source: PhraseSource) -> InsertOutcome {
        if tokens.len() <= self.config.max_len {
            return self.insert(tokens, source);
        }
        let mut best = InsertOutcome::Rejected;
        for window in tokens.windows(self.config.max_len) {
            let outcome = self.insert(window, source);
            if rank(outcome) > rank(best) {
                best = outcome;
            }
        }
        best
    }

    /// Credits the stored phrases that agree with `tokens` (key token first,
    /// then the accepted continuation; at least two tokens): those starting
    /// with `tokens`, and a phrase that was accepted in full and then some
    /// (`tokens` starts with it). Hit phrases rank first in lookups and are
    /// protected from scan eviction. Returns how many phrases were credited.
    pub fn record_hit(&mut self, tokens: &[u32]) -> usize {
        if tokens.len() < 2 {
            return 0;
        }
        let key = tokens[0];
        let ticks: Vec<u64> = match self.by_key.get(&key) {
            Some(entries) => entries
                .iter()
                .filter(|e| e.tokens.starts_with(tokens) || tokens.starts_with(&e.tokens))
                .map(|e| e.tick)
                .collect(),
            None => return 0,
        };
        for &tick in &ticks {
            let new_tick = self.touch(key, tick);
            if let Some(entry) = self.entry_mut(key, new_tick) {
                entry.hits = entry.hits.saturating_add(1);
            }
            self.promote(key, new_tick);
        }
        ticks.len()
    }

    /// Up to `max` phrases starting with `key`, best first: most hits, then
    /// most recently used, then longest. Each phrase includes the key token.
    pub fn candidates(&self, key: u32, max: usize) -> Vec<&[u32]> {
        let mut found = self.ranked(key);
        found.truncate(max);
        found.into_iter().map(|e| e.tokens.as_slice()).collect()
    }

    /// Up to `max` continuations of `suffix` (the end of the current draft):
    /// the longest suffix (up to [`MAX_SUFFIX_MATCH`] tokens) that starts a
    /// stored phrase is tried first, then shorter ones. Each result is the
    /// part of a phrase after the matched tokens. A continuation that is a
    /// prefix of an earlier result is skipped, since a tree would merge it.
    ///
    /// To credit an accepted continuation, call
    /// [`record_hit`](Self::record_hit) with the matched suffix followed by the
    /// accepted tokens.
    pub fn continuations(&self, suffix: &[u32], max: usize) -> Vec<&[u32]> {
        self.continuations_matching(suffix, max, 1)
    }

    /// [`continuations`](Self::continuations) whose phrase matched at least
    /// `min_match` tokens of `suffix`: a phrase that shares only the last
    /// token with the text is a weak guess, worth a branch but not a round
    /// of its own.
    pub fn continuations_matching(&self, suffix: &[u32], max: usize, min_match: usize) -> Vec<&[u32]> {
        self.matches(suffix, max, min_match).into_iter().map(|(_, c)| c).collect()
    }

    /// [`continuations`](Self::continuations), each with the number of
    /// `suffix` tokens it matched on.
    pub fn continuations_with_match(&self, suffix: &[u32], max: usize) -> Vec<(usize, &[u32])> {
        self.matches(suffix, max, 1)
    }

    /// The best continuation of `suffix` with at least `min_match` matched
    /// tokens, and the matched tokens themselves (what
    /// [`record_hit`](Self::record_hit) wants in front of the accepted ones).
    pub fn best_continuation<'s>(&'s self, suffix: &'s [u32], min_match: usize) -> Option<(&'s [u32], &'s [u32])> {
        self.matches(suffix, 1, min_match).pop().map(|(m, c)| (&suffix[suffix.len() - m..], c))
    }

    /// Continuations with the number of suffix tokens each matched.
    fn matches(&self, suffix: &[u32], max: usize, min_match: usize) -> Vec<(usize, &[u32])> {
        let mut out: Vec<(usize, &[u32])> = Vec::new();
        if max == 0 {
            return out;
        }
        let longest = suffix.len().min(MAX_SUFFIX_MATCH);
        for m in (min_match.max(1)..=longest).rev() {
            let probe = &suffix[suffix.len() - m..];
            for entry in self.ranked(probe[0]) {
                if entry.tokens.len() <= m || !entry.tokens.starts_with(probe) {
                    continue;
                }
                let cont = &entry.tokens[m..];
                if out.iter().any(|(_, o)| o.starts_with(cont)) {
                    continue;
                }
                out.push((m, cont));
                if out.len() == max {
                    return out;
                }
            }
        }
        out
    }

    fn ranked(&self, key: u32) -> Vec<&Entry> {
        let mut found: Vec<&Entry> = self.by_key.get(&key).map(|v| v.iter().collect()).unwrap_or_default();
        found.sort_by(|a, b| b.hits.cmp(&a.hits).then(b.tick.cmp(&a.tick)).then(b.tokens.len().cmp(&a.tokens.len())));
        found
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.by_key.values().flatten()
    }

    /// Stores a phrase under the dedupe rules; `tokens` longer than `max_len`
    /// are cut to `max_len`.
    pub(super) fn insert(&mut self, tokens: &[u32], source: PhraseSource) -> InsertOutcome {
        if tokens.len() < self.config.min_len {
            return InsertOutcome::Rejected;
        }
        let tokens = &tokens[..tokens.len().min(self.config.max_len)];
        let key = tokens[0];
        let entries = self.by_key.entry(key).or_default();
        // Invariant: no stored phrase prefixes another of the same key, so at
        // most one entry can relate to `tokens` either way.
        if let Some(e) = entries.iter().find(|e| e.tokens.starts_with(tokens)) {
            let tick = e.tick;
            self.touch(key, tick);
            return InsertOutcome::Refreshed;
        }
        if let Some(e) = entries.iter_mut().find(|e| tokens.starts_with(&e.tokens)) {
            e.tokens = tokens.to_vec();
            let tick = e.tick;
            self.touch(key, tick);
            return InsertOutcome::Extended;
        }
        if entries.len() >= self.config.max_per_key {
            if let Some(victim) = entries.iter().map(|e| (e.protected, e.tick)).min() {
                self.remove(key, victim);
            }
        }
        let tick = self.next_tick();
        self.by_key.entry(key).or_default().push(Entry {
            tokens: tokens.to_vec(),
            source,
            hits: 0,
            tick,
            protected: false,
        });
        self.order.insert((false, tick), key);
        while self.order.len() > self.config.max_phrases {
            let Some((&victim, &victim_key)) = self.order.iter().next() else {
                break;
            };
            self.remove(victim_key, victim);
        }
        InsertOutcome::Added
    }

    /// A point in this pool's history: a copy taken now can later give back
    /// what it learned after it ([`merge_since`](Self::merge_since)).
    pub fn mark(&self) -> PoolMark {
        PoolMark(self.clock)
    }

    /// Takes in what `copy` (a clone of this pool made at `since`) learned
    /// after that: phrases it added, refreshed or hit, oldest first so their
    /// recency order carries over, with their hits. Requests that each work
    /// on a copy of one shared pool merge back this way without losing each
    /// other's phrases.
    pub fn merge_since(&mut self, copy: &PhrasePool, since: PoolMark) {
        let mut learned: Vec<&Entry> = copy.entries().filter(|e| e.tick > since.0).collect();
        learned.sort_by_key(|e| e.tick);
        for e in learned {
            self.insert(&e.tokens, e.source);
            self.restore_usage(&e.tokens, e.hits, e.protected);
        }
    }

    /// Restores persisted usefulness onto a just-inserted phrase.
    pub(super) fn restore_usage(&mut self, tokens: &[u32], hits: u32, protected: bool) {
        let Some(&key) = tokens.first() else {
            return;
        };
        let tick = self
            .by_key
            .get(&key)
            .and_then(|entries| entries.iter().find(|e| e.tokens.starts_with(tokens)).map(|e| e.tick));
        let Some(tick) = tick else {
            return;
        };
        if let Some(entry) = self.entry_mut(key, tick) {
            entry.hits = entry.hits.max(hits);
        }
        if protected {
            self.promote(key, tick);
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn entry_mut(&mut self, key: u32, tick: u64) -> Option<&mut Entry> {
        self.by_key.get_mut(&key)?.iter_mut().find(|e| e.tick == tick)
    }

    /// Marks an entry most recently used; returns its new tick.
    fn touch(&mut self, key: u32, tick: u64) -> u64 {
        let new_tick = self.next_tick();
        let Some(entry) = self.entry_mut(key, tick) else {
            return tick;
        };
        entry.tick = new_tick;
        let protected = entry.protected;
        self.order.remove(&(protected, tick));
        self.order.insert((protected, new_tick), key);
        new_tick
    }

    fn promote(&mut self, key: u32, tick: u64) {
        let Some(entry) = self.entry_mut(key, tick) else {
            return;
        };
        if entry.protected {
            return;
        }
        entry.protected = true;
        self.order.remove(&(false, tick));
        self.order.insert((true, tick), key);
        self.protected += 1;
        while self.protected > self.protected_capacity() {
            let Some((&(_, old), &old_key)) = self.order.range((true, 0)..).next() else {
                break;
            };
            if let Some(e) = self.entry_mut(old_key, old) {
                e.protected = false;
            }
            self.order.remove(&(true, old));
            self.order.insert((false, old), old_key);
            self.protected -= 1;
        }
    }

    fn protected_capacity(&self) -> usize {
        let probation_floor = (self.config.max_phrases / 5).max(1);
        self.config.max_phrases.saturating_sub(probation_floor)
    }

    fn remove(&mut self, key: u32, (protected, tick): (bool, u64)) {
        if let Some(entries) = self.by_key.get_mut(&key) {
            if let Some(i) = entries.iter().position(|e| e.tick == tick) {
                entries.swap_remove(i);
            }
            if entries.is_empty() {
                self.by_key.remove(&key);
            }
        }
        if self.order.remove(&(protected, tick)).is_some() && protected {
            self.protected -= 1;
        }
    }
}

fn rank(outcome: InsertOutcome) -> u8 {
    match outcome {
        InsertOutcome::Rejected => 0,
        InsertOutcome::Refreshed => 1,
        InsertOutcome::Extended => 2,
        InsertOutcome::Added => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_phrases: usize, max_per_key: usize) -> PhrasePool {
        PhrasePool::new(PoolConfig { max_phrases, max_per_key, min_len: 2, max_len: 8 })
    }

    /// Checks the bookkeeping the eviction order relies on.
    fn assert_consistent(p: &PhrasePool) {
        let entries: Vec<&Entry> = p.entries().collect();
        assert_eq!(entries.len(), p.order.len());
        assert_eq!(entries.iter().filter(|e| e.protected).count(), p.protected);
        for e in &entries {
            assert_eq!(p.order.get(&(e.protected, e.tick)), Some(&e.tokens[0]));
            assert!(e.tokens.len() >= p.config.min_len && e.tokens.len() <= p.config.max_len);
        }
        for (key, list) in &p.by_key {
            assert!(!list.is_empty() && list.len() <= p.config.max_per_key);
            for a in list {
                assert_eq!(a.tokens[0], *key);
                for b in list {
                    if a.tick != b.tick {
                        assert!(!b.tokens.starts_with(&a.tokens), "{a:?} prefixes {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn copies_merged_back_keep_each_others_phrases_and_hits() {
        let mut shared = pool(64, 8);
        shared.add_phrase(&[1, 2, 3], PhraseSource::Context);
        let mark = shared.mark();
        let (mut a, mut b) = (shared.clone(), shared.clone());
        a.add_phrase(&[10, 11, 12], PhraseSource::VerifierOutput);
        a.record_hit(&[1, 2, 3]);
        b.add_phrase(&[20, 21], PhraseSource::DrafterLookahead);
        shared.merge_since(&a, mark);
        shared.merge_since(&b, mark);
        assert_consistent(&shared);
        assert_eq!(shared.candidates(10, 4), [&[10, 11, 12][..]]);
        assert_eq!(shared.candidates(20, 4), [&[20, 21][..]]);
        assert_eq!(shared.len(), 3);
        let hit = shared.entries().find(|e| e.tokens == [1, 2, 3]).unwrap();
        assert_eq!((hit.hits, hit.protected), (1, true));
        // A copy that learned nothing changes nothing.
        let before: Vec<Vec<u32>> = shared.entries().map(|e| e.tokens.clone()).collect();
        let mark = shared.mark();
        let idle = shared.clone();
        shared.merge_since(&idle, mark);
        assert_eq!(shared.entries().map(|e| e.tokens.clone()).collect::<Vec<_>>(), before);
    }

    #[test]
    fn context_ngrams_are_found_and_deduped() {
        let mut p = pool(1000, 16);
        p.add_context(&[1, 2, 3, 4, 5]);
        // One phrase per start position with at least two tokens; the shorter
        // n-grams are prefixes of these and are not stored separately.
        assert_eq!(p.len(), 4);
        assert_eq!(p.candidates(1, 10), vec![&[1, 2, 3, 4, 5][..]]);
        assert_eq!(p.candidates(4, 10), vec![&[4, 5][..]]);
        assert!(p.candidates(5, 10).is_empty());

        // Same text again: nothing new.
        p.add_context(&[1, 2, 3, 4, 5]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.add_phrase(&[2, 3], PhraseSource::VerifierOutput), InsertOutcome::Refreshed);
        assert_eq!(p.add_phrase(&[2, 3, 4, 5, 6], PhraseSource::VerifierOutput), InsertOutcome::Extended);
        assert_eq!(p.candidates(2, 10), vec![&[2, 3, 4, 5, 6][..]]);
        assert_eq!(p.add_phrase(&[9], PhraseSource::Context), InsertOutcome::Rejected);
        assert_consistent(&p);
    }

    #[test]
    fn long_phrases_are_windowed_to_max_len() {
        let mut p = pool(1000, 16);
        let long: Vec<u32> = (0..12).collect();
        assert_eq!(p.add_phrase(&long, PhraseSource::DrafterLookahead), InsertOutcome::Added);
        assert_eq!(p.len(), 5);
        assert_eq!(p.candidates(4, 1), vec![&long[4..12]]);
        assert_eq!(p.stats().from_drafter, 5);
        assert_consistent(&p);
    }

    #[test]
    fn extend_context_matches_feeding_at_once() {
        let text: Vec<u32> = (0..200).map(|i| (i * 7 + i / 3) % 23).collect();
        let mut whole = pool(10_000, 64);
        whole.add_context(&text);
        let mut pieces = pool(10_000, 64);
        pieces.add_context(&text[..5]);
        for chunk in text[5..].chunks(3) {
            pieces.extend_context(chunk);
        }
        let set = |p: &PhrasePool| {
            let mut v: Vec<Vec<u32>> = p.entries().map(|e| e.tokens.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(set(&whole), set(&pieces));
        assert!(pieces.tail.len() < 8);
        assert_consistent(&pieces);
    }

    #[test]
    fn add_context_does_not_join_texts() {
        let mut p = pool(1000, 16);
        p.add_context(&[1, 2]);
        p.add_context(&[3, 4]);
        assert_eq!(p.candidates(2, 10), Vec::<&[u32]>::new());
        p.extend_context(&[5]);
        assert_eq!(p.candidates(3, 10), vec![&[3, 4, 5][..]]);
    }

    #[test]
    fn bounds_hold_under_heavy_feeding() {
        let mut p = pool(50, 3);
        let text: Vec<u32> = (0..5000u32).map(|i| i.wrapping_mul(2_654_435_761) % 97).collect();
        p.add_context(&text);
        assert_eq!(p.len(), 50);
        assert_consistent(&p);
        for e in p.entries() {
            assert!(e.tokens.len() <= 8);
        }
    }

    #[test]
    fn per_key_cap_evicts_least_recent_unhit_phrase() {
        let mut p = pool(100, 2);
        p.add_phrase(&[1, 10], PhraseSource::Context);
        p.add_phrase(&[1, 11], PhraseSource::Context);
        p.record_hit(&[1, 10]);
        p.add_phrase(&[1, 12], PhraseSource::Context);
        // [1, 11] was unhit and least recent; [1, 10] is protected.
        assert_eq!(p.candidates(1, 10), vec![&[1, 10][..], &[1, 12][..]]);
        p.add_phrase(&[1, 13], PhraseSource::Context);
        assert_eq!(p.candidates(1, 10), vec![&[1, 10][..], &[1, 13][..]]);
        assert_consistent(&p);
    }

    #[test]
    fn hit_phrases_survive_a_context_scan() {
        let mut p = pool(100, 16);
        p.add_phrase(&[1000, 1001, 1002], PhraseSource::VerifierOutput);
        assert_eq!(p.record_hit(&[1000, 1001]), 1);
        let scan: Vec<u32> = (0..1000).collect();
        p.add_context(&scan);
        assert_eq!(p.len(), 100);
        assert_eq!(p.candidates(1000, 1), vec![&[1000, 1001, 1002][..]]);
        // Unhit phrases are evicted oldest first.
        assert!(p.candidates(0, 1).is_empty());
        assert_eq!(p.candidates(990, 1), vec![&[990, 991, 992, 993, 994, 995, 996, 997][..]]);
        assert_consistent(&p);
    }

    #[test]
    fn protected_segment_is_capped() {
        let mut p = pool(10, 16);
        for k in 0..10u32 {
            p.add_phrase(&[k, k + 100], PhraseSource::Context);
            p.record_hit(&[k, k + 100]);
        }
        assert_eq!(p.stats().protected, 8);
        // New text still gets in; the phrases demoted first (hit longest ago)
        // are the ones that go.
        p.add_phrase(&[50, 51], PhraseSource::Context);
        p.add_phrase(&[60, 61], PhraseSource::Context);
        assert_eq!(p.candidates(50, 1).len(), 1);
        assert_eq!(p.candidates(60, 1).len(), 1);
        assert!(p.candidates(0, 1).is_empty());
        assert!(p.candidates(1, 1).is_empty());
        assert_eq!(p.candidates(9, 1).len(), 1);
        assert_consistent(&p);
    }

    #[test]
    fn candidates_rank_by_hits_then_recency() {
        let mut p = pool(100, 16);
        p.add_phrase(&[1, 2], PhraseSource::Context);
        p.add_phrase(&[1, 3, 4], PhraseSource::Context);
        p.add_phrase(&[1, 5], PhraseSource::Context);
        assert_eq!(p.candidates(1, 3), vec![&[1, 5][..], &[1, 3, 4][..], &[1, 2][..]]);
        p.record_hit(&[1, 2]);
        p.record_hit(&[1, 2]);
        p.record_hit(&[1, 3]);
        assert_eq!(p.candidates(1, 3), vec![&[1, 2][..], &[1, 3, 4][..], &[1, 5][..]]);
        assert_eq!(p.candidates(1, 1), vec![&[1, 2][..]]);
        assert_eq!(p.candidates(1, 0), Vec::<&[u32]>::new());
        assert_eq!(p.record_hit(&[1]), 0);
        assert_eq!(p.record_hit(&[7, 8]), 0);
        // Accepted in full plus a bonus token still credits the phrase.
        assert_eq!(p.record_hit(&[1, 5, 9]), 1);
        assert_eq!(p.candidates(1, 1), vec![&[1, 2][..]]);
        // Equal hits: the more recently used wins.
        assert_eq!(p.record_hit(&[1, 5, 9]), 1);
        assert_eq!(p.candidates(1, 1), vec![&[1, 5][..]]);
    }

    #[test]
    fn continuations_prefer_longer_suffix_matches() {
        let mut p = pool(100, 16);
        p.add_phrase(&[3, 9, 9], PhraseSource::Context);
        p.add_phrase(&[2, 3, 7, 7], PhraseSource::Context);
        p.add_phrase(&[1, 2, 3, 5, 6], PhraseSource::Context);
        p.add_phrase(&[3, 7, 7, 8], PhraseSource::Context);
        let got = p.continuations(&[0, 1, 2, 3], 10);
        // 3-token match first, then the 2-token one, then the 1-token ones.
        // [7, 7, 8] extends the earlier [7, 7] rather than repeating it, so
        // it stays.
        assert_eq!(got, vec![&[5, 6][..], &[7, 7][..], &[7, 7, 8][..], &[9, 9][..]]);
        assert_eq!(p.continuations(&[0, 1, 2, 3], 2), vec![&[5, 6][..], &[7, 7][..]]);
        assert!(p.continuations(&[], 5).is_empty());
        assert!(p.continuations(&[42], 5).is_empty());
        // Two matched tokens at least: the 1-token matches drop out.
        assert_eq!(p.continuations_matching(&[0, 1, 2, 3], 10, 2), vec![&[5, 6][..], &[7, 7][..]]);
        assert_eq!(p.continuations_matching(&[0, 1, 2, 3], 10, 3), vec![&[5, 6][..]]);
        assert!(p.continuations_matching(&[0, 1, 2, 3], 10, 4).is_empty());
        assert!(p.continuations_matching(&[9, 3], 10, 2).is_empty());
        assert_eq!(p.best_continuation(&[0, 1, 2, 3], 2), Some((&[1, 2, 3][..], &[5, 6][..])));
        assert_eq!(p.best_continuation(&[7, 2, 3], 2), Some((&[2, 3][..], &[7, 7][..])));
        assert_eq!(p.best_continuation(&[7, 2, 3], 3), None);

        // A continuation already covered by an earlier one is dropped.
        let mut r = pool(100, 16);
        r.add_phrase(&[2, 3, 7, 8], PhraseSource::Context);
        r.add_phrase(&[3, 7], PhraseSource::Context);
        assert_eq!(r.continuations(&[2, 3], 5), vec![&[7, 8][..]]);
    }

    #[test]
    fn normalized_config_never_panics() {
        let mut p = PhrasePool::new(PoolConfig { max_phrases: 0, max_per_key: 0, min_len: 0, max_len: 0 });
        assert_eq!(p.config().min_len, 2);
        assert_eq!(p.config().max_len, 2);
        p.add_context(&[1, 2, 3, 4]);
        assert_eq!(p.len(), 1);
        p.record_hit(&[3, 4]);
        p.add_phrase(&[5, 6], PhraseSource::Context);
        assert_eq!(p.len(), 1);
        assert_consistent(&p);
    }
}
