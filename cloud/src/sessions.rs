//! The session table: one KV cache per session, a memory budget with
//! least-recently-used eviction, idle expiry, and ownership.
//!
//! A session's verifier state is checked out for the length of a round and
//! checked back in afterwards, so eviction only ever drops idle sessions and
//! never a round in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ouro_common::engine::VerifierSession;

use crate::auth::Owner;

/// A session's verifier state (its KV cache and committed tokens), moved
/// between the table and the batcher: one owner at a time.
pub type SessionState = Box<VerifierSession<'static>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} is unknown")]
    Unknown(String),
    #[error("session {id} was evicted ({reason}); re-open it with its committed tokens")]
    Evicted { id: String, reason: &'static str },
    #[error("session {0} belongs to another client")]
    NotOwner(String),
    #[error("session {0} was taken over by a newer stream of its client")]
    TakenOver(String),
    #[error("session {0} has a pass in flight; retry")]
    Busy(String),
    #[error("{open} sessions open, the limit is {max}")]
    TooMany { open: usize, max: usize },
    #[error("this token has {open} sessions open, its quota is {max}")]
    OverQuota { open: usize, max: usize },
    #[error("the memory budget is spent: {held} bytes held by sessions in use, {need} more needed, budget {budget}")]
    NoMemory { held: usize, need: usize, budget: usize },
}

/// Limits of the table.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    /// Sessions one token may hold at once (prefills included), so that one
    /// tenant cannot lock every other out.
    pub max_per_owner: usize,
    pub memory_budget_bytes: usize,
    pub idle_timeout: Duration,
    /// When the table (or a token's quota) is full, a session no stream
    /// holds and idle this long is dropped to make room. Its client re-opens
    /// it from its committed tokens, so nothing is lost but a prefill.
    pub reclaim_after: Duration,
}

struct Entry {
    owner: Owner,
    /// `None` while a round is in flight.
    verifier: Option<SessionState>,
    bytes: usize,
    last_used: Instant,
    last_round: u64,
    attached: bool,
    /// The number of the stream that holds it, one more at every attach:
    /// a stream whose number is no longer this was taken over.
    stream: u64,
}

/// Who checks a session out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A stream re-attaching (`Open.resume`). It takes the session over from
    /// any stream that holds it: that one's client is gone, or came back on
    /// another connection before the server saw the old one end (a link
    /// that died silently). The old stream ends at its next round or pass.
    Attach,
    /// The stream holding it, by the number its attach was given.
    Stream(u64),
}

/// What eviction removed, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub memory: usize,
    pub idle: usize,
}

pub struct SessionTable {
    limits: SessionLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Slots taken by sessions still prefilling, per token.
    reserved: HashMap<Owner, usize>,
    /// Bytes promised to work in flight: the caches prefills will fill and
    /// the activations of passes running now. They count against the budget
    /// like the caches do.
    inflight: usize,
    /// Recently dropped ids, so a late client hears why (bounded).
    tombstones: VecDeque<(String, &'static str)>,
}

const TOMBSTONES: usize = 4096;

impl Inner {
    fn open(&self) -> usize {
        self.entries.len() + self.reserved.values().sum::<usize>()
    }

    fn open_by(&self, owner: &Owner) -> usize {
        self.entries.values().filter(|e| &e.owner == owner).count() + self.reserved.get(owner).copied().unwrap_or(0)
    }

    /// The least recently used session that no stream holds, idle at least
    /// `min_idle` (of `owner` only, when given).
    fn reclaimable(&self, owner: Option<&Owner>, min_idle: Duration) -> Option<String> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|(_, e)| e.verifier.is_some() && !e.attached && now.duration_since(e.last_used) >= min_idle)
            .filter(|(_, e)| owner.is_none_or(|o| &e.owner == o))
            .min_by_key(|(_, e)| e.last_used)
            .map(|(id, _)| id.clone())
    }

    fn drop_session(&mut self, id: String, reason: &'static str) {
        self.entries.remove(&id);
        self.bury(id, reason);
    }

    fn unreserve(&mut self, owner: &Owner) {
        if let Some(n) = self.reserved.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.reserved.remove(owner);
            }
        }
    }

    fn bury(&mut self, id: String, reason: &'static str) {
        if self.tombstones.len() == TOMBSTONES {
            self.tombstones.pop_front();
        }
        self.tombstones.push_back((id, reason));
    }

    fn missing(&self, id: &str) -> SessionError {
        match self.tombstones.iter().rev().find(|(t, _)| t == id) {
            Some((_, reason)) => SessionError::Evicted { id: id.to_string(), reason },
            None => SessionError::Unknown(id.to_string()),
        }
    }

    fn cache_bytes(&self) -> usize {
        self.entries.values().map(|e| e.bytes).sum()
    }

    fn total_bytes(&self) -> usize {
        self.cache_bytes() + self.inflight
    }
}

impl SessionTable {
    pub fn new(limits: SessionLimits) -> Self {
        Self { limits, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take every session down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().open()
    }

    /// Bytes held by the sessions' KV caches.
    pub fn bytes(&self) -> usize {
        self.lock().cache_bytes()
    }

    /// Bytes promised to prefills and passes in flight.
    pub fn inflight_bytes(&self) -> usize {
        self.lock().inflight
    }

    /// Takes a slot for a session about to prefill, or refuses at once.
    /// `bytes` is what the session will hold once prefilled (its cache and
    /// the activations of its prefill); it counts against the memory budget
    /// from now on. When the table or the token's quota is full, the least
    /// recently used session no stream holds makes room (see
    /// [`SessionLimits::reclaim_after`]).
    pub fn reserve(&self, owner: &Owner, bytes: usize) -> Result<Reservation<'_>, (SessionError, Reclaimed)> {
        let mut inner = self.lock();
        let mut reclaimed = Reclaimed::default();
        let quota = self.limits.max_per_owner;
        if inner.open_by(owner) >= quota {
            match inner.reclaimable(Some(owner), self.limits.reclaim_after) {
                Some(id) => {
                    inner.drop_session(id, "reclaimed for a new session of the same token");
                    reclaimed.quota += 1;
                }
                None => return Err((SessionError::OverQuota { open: inner.open_by(owner), max: quota }, reclaimed)),
            }
        }
        if inner.open() >= self.limits.max_sessions {
            match inner.reclaimable(None, self.limits.reclaim_after) {
                Some(id) => {
                    inner.drop_session(id, "reclaimed under pressure for a new session");
                    reclaimed.pressure += 1;
                }
                None => {
                    let open = inner.open();
                    return Err((SessionError::TooMany { open, max: self.limits.max_sessions }, reclaimed));
                }
            }
        }
        inner.inflight += bytes;
        reclaimed.memory = self.enforce_budget(&mut inner, None).memory;
        // Refused only when the caches in use and the work in flight leave
        // no room; a session alone on the server is always served.
        let total = inner.total_bytes();
        if total > self.limits.memory_budget_bytes && total > bytes {
            inner.inflight -= bytes;
            let held = total - bytes;
            return Err((
                SessionError::NoMemory { held, need: bytes, budget: self.limits.memory_budget_bytes },
                reclaimed,
            ));
        }
        *inner.reserved.entry(owner.clone()).or_default() += 1;
        Ok(Reservation { table: self, owner: owner.clone(), bytes, done: false, reclaimed })
    }

    /// Counts the activations of a pass in flight against the budget until
    /// the returned guard drops; idle sessions are evicted to make room.
    pub fn charge(&self, bytes: usize) -> (Charge<'_>, Evicted) {
        let mut inner = self.lock();
        inner.inflight += bytes;
        let evicted = self.enforce_budget(&mut inner, None);
        (Charge { table: self, bytes }, evicted)
    }

    /// Checks out an existing session for a stream re-attaching, or for a
    /// round of the stream that holds it. Returns its state, the last round
    /// it answered and the holding stream's number. A stream taking over
    /// from one with a pass in flight is told to retry (`Busy`): the old
    /// stream gives the session back at the end of that pass and then stops.
    pub fn checkout(&self, id: &str, owner: &Owner, by: Holder) -> Result<(SessionState, u64, u64), SessionError> {
        let mut inner = self.lock();
        let missing = inner.missing(id);
        let entry = inner.entries.get_mut(id).ok_or(missing)?;
        if &entry.owner != owner {
            return Err(SessionError::NotOwner(id.to_string()));
        }
        match by {
            Holder::Stream(n) if n != entry.stream => return Err(SessionError::TakenOver(id.to_string())),
            Holder::Stream(_) => {}
            Holder::Attach => {
                entry.stream += 1;
                // Until this stream has it, none does: the one before stops
                // at its next round, and the session is free to resume (or
                // to reclaim) if this one never comes back.
                entry.attached = entry.verifier.is_some();
            }
        }
        let verifier = entry.verifier.take().ok_or_else(|| SessionError::Busy(id.to_string()))?;
        entry.last_used = Instant::now();
        Ok((verifier, entry.last_round, entry.stream))
    }

    /// Returns a session after a round, then enforces the memory budget.
    pub fn checkin(&self, id: &str, verifier: SessionState, last_round: u64) -> Evicted {
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.get_mut(id) {
            entry.bytes = verifier.cache_bytes();
            entry.verifier = Some(verifier);
            entry.last_used = Instant::now();
            entry.last_round = last_round;
        }
        self.enforce_budget(&mut inner, Some(id))
    }

    /// Stream `stream` ended; if it still held the session, the session
    /// stays for a resume until it idles out.
    pub fn detach(&self, id: &str, stream: u64) {
        if let Some(e) = self.lock().entries.get_mut(id).filter(|e| e.stream == stream) {
            e.attached = false;
            e.last_used = Instant::now();
        }
    }

    /// Closes a session for good.
    pub fn remove(&self, id: &str, owner: &Owner) -> Result<(), SessionError> {
        let mut inner = self.lock();
        let missing = inner.missing(id);
        match inner.entries.get(id) {
            None => Err(missing),
            Some(e) if &e.owner != owner => Err(SessionError::NotOwner(id.to_string())),
            Some(_) => {
                inner.entries.remove(id);
                Ok(())
            }
        }
    }

    /// Drops sessions idle past the timeout that no stream holds.
    pub fn expire_idle(&self) -> usize {
        let mut inner = self.lock();
        let now = Instant::now();
        let stale: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.verifier.is_some() && now.duration_since(e.last_used) > self.limits.idle_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            inner.entries.remove(id);
            inner.bury(id.clone(), "idle timeout");
        }
        stale.len()
    }

    /// Evicts the least recently used idle sessions until the caches fit the
    /// budget. The session just used (`keep`) goes last: evicting it would
    /// only make its client re-prefill at once.
    fn enforce_budget(&self, inner: &mut Inner, keep: Option<&str>) -> Evicted {
        let mut evicted = Evicted::default();
        while inner.total_bytes() > self.limits.memory_budget_bytes {
            let victim = inner
                .entries
                .iter()
                .filter(|(id, e)| e.verifier.is_some() && Some(id.as_str()) != keep)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone());
            let Some(id) = victim else { break };
            inner.entries.remove(&id);
            inner.bury(id, "memory budget");
            evicted.memory += 1;
        }
        evicted
    }

    /// Evicts one session on purpose (operators, and tests of the edge's
    /// re-open path). Returns whether it existed and was idle.
    pub fn evict(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let idle = inner.entries.get(id).is_some_and(|e| e.verifier.is_some());
        if idle {
            inner.entries.remove(id);
            inner.bury(id.to_string(), "evicted by the operator");
        }
        idle
    }
}

impl SessionTable {
    /// Evicts every session without a round in flight; returns how many.
    pub fn evict_all_idle(&self) -> usize {
        let mut inner = self.lock();
        let idle: Vec<String> =
            inner.entries.iter().filter(|(_, e)| e.verifier.is_some()).map(|(id, _)| id.clone()).collect();
        for id in &idle {
            inner.entries.remove(id);
            inner.bury(id.clone(), "evicted by the operator");
        }
        idle.len()
    }
}

/// Sessions dropped to make room for a new one, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reclaimed {
    /// The table was full.
    pub pressure: usize,
    /// The token's quota was full.
    pub quota: usize,
    /// The memory budget was spent.
    pub memory: usize,
}

/// Activation bytes of a pass in flight; released on drop.
pub struct Charge<'t> {
    table: &'t SessionTable,
    bytes: usize,
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.table.lock().inflight -= self.bytes;
    }
}

/// A slot taken for a session being prefilled; released if dropped unused.
pub struct Reservation<'t> {
    table: &'t SessionTable,
    owner: Owner,
    bytes: usize,
    done: bool,
    pub reclaimed: Reclaimed,
}

impl Reservation<'_> {
    /// Turns the slot into a live, attached session.
    pub fn insert(mut self, id: String, verifier: SessionState) -> Evicted {
        let owner = self.owner.clone();
        let mut inner = self.table.lock();
        inner.unreserve(&owner);
        inner.inflight -= self.bytes;
        self.done = true;
        let bytes = verifier.cache_bytes();
        inner.entries.insert(
            id.clone(),
            Entry {
                owner,
                verifier: Some(verifier),
                bytes,
                last_used: Instant::now(),
                last_round: 0,
                attached: true,
                stream: 0,
            },
        );
        self.table.enforce_budget(&mut inner, Some(&id))
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut inner = self.table.lock();
            inner.unreserve(&self.owner);
            inner.inflight -= self.bytes;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use super::*;
    use ouro_common::model::{Arch, CausalLm, KvCache, Logits, ModelConfig, Result as ModelResult, SeqInput};
    use ouro_common::sampling::SamplingParams;
    use ouro_common::tree::TreeLimits;

    /// A model-free stand-in: sessions only need a config and caches here.
    struct Null(ModelConfig);

    impl CausalLm for Null {
        fn config(&self) -> &ModelConfig {
            &self.0
        }
        fn new_cache(&self) -> KvCache {
            KvCache::new(1, 1, 4, self.0.max_context)
        }
        fn forward(&self, _: &mut [SeqInput<'_>]) -> ModelResult<Vec<Logits>> {
            unreachable!("the table never runs the model")
        }
    }

    /// The smallest valid config: one layer of width 4, ten tokens.
    pub(crate) fn tiny_config() -> ModelConfig {
        ModelConfig {
            arch: Arch::Llama,
            vocab_size: 10,
            hidden_size: 4,
            intermediate_size: 4,
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 4,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            max_context: 64,
            rope_interleaved: false,
            minicpm: None,
        }
    }

    fn model() -> &'static Null {
        static M: OnceLock<Null> = OnceLock::new();
        M.get_or_init(|| Null(tiny_config()))
    }

    fn verifier() -> SessionState {
        // A one-token prompt needs no prefill, so the null model is never run.
        Box::new(
            VerifierSession::open(model(), &[1], SamplingParams::greedy(), TreeLimits { max_nodes: 8, max_depth: 8 })
                .unwrap(),
        )
    }

    fn limits(max_sessions: usize) -> SessionLimits {
        SessionLimits {
            max_sessions,
            max_per_owner: max_sessions,
            memory_budget_bytes: usize::MAX,
            idle_timeout: Duration::from_secs(60),
            reclaim_after: Duration::from_secs(3600),
        }
    }

    fn table(max_sessions: usize) -> SessionTable {
        SessionTable::new(limits(max_sessions))
    }

    fn owner(s: &str) -> Owner {
        Owner(s.into())
    }

    #[test]
    fn sessions_belong_to_their_owner() {
        let t = table(4);
        t.reserve(&owner("a"), 0).unwrap().insert("s".into(), verifier());
        t.detach("s", 0);
        assert_eq!(t.checkout("s", &owner("b"), Holder::Attach).err(), Some(SessionError::NotOwner("s".into())));
        assert_eq!(t.remove("s", &owner("b")).unwrap_err(), SessionError::NotOwner("s".into()));
        let (v, round, stream) = t.checkout("s", &owner("a"), Holder::Attach).unwrap();
        assert_eq!((round, stream), (0, 1));
        assert!(matches!(t.checkout("s", &owner("a"), Holder::Stream(1)), Err(SessionError::Busy(_))));
        t.checkin("s", v, 3);
        assert_eq!(t.checkout("s", &owner("a"), Holder::Stream(1)).unwrap().1, 3);
    }

    #[test]
    fn a_stream_re_attaching_takes_the_session_over() {
        let t = table(4);
        t.reserve(&owner("a"), 0).unwrap().insert("s".into(), verifier());
        // Stream 0 holds it (its link died without the server noticing);
        // the client comes back on a new stream, which takes it over.
        let (v, _, stream) = t.checkout("s", &owner("a"), Holder::Attach).unwrap();
        assert_eq!(stream, 1);
        t.checkin("s", v, 0);
        assert_eq!(t.checkout("s", &owner("a"), Holder::Stream(0)).err(), Some(SessionError::TakenOver("s".into())));
        t.detach("s", 0);
        let (v, _, _) = t.checkout("s", &owner("a"), Holder::Stream(1)).expect("the old stream's end left it attached");
        // A take-over during a pass is told to retry, and the stream with
        // the pass stops at its next round; the session is then held by no
        // stream until the new one comes back.
        assert!(matches!(t.checkout("s", &owner("a"), Holder::Attach), Err(SessionError::Busy(_))));
        t.checkin("s", v, 1);
        assert_eq!(t.checkout("s", &owner("a"), Holder::Stream(1)).err(), Some(SessionError::TakenOver("s".into())));
        t.detach("s", 1);
        assert!(!t.lock().entries["s"].attached);
        assert_eq!(t.checkout("s", &owner("a"), Holder::Attach).unwrap().2, 3);
        assert!(t.lock().entries["s"].attached);
        // Another client's token takes nothing over.
        assert_eq!(t.checkout("s", &owner("b"), Holder::Attach).err(), Some(SessionError::NotOwner("s".into())));
    }

    #[test]
    fn the_session_limit_counts_prefills_too() {
        let t = table(2);
        let r1 = t.reserve(&owner("a"), 0).unwrap();
        let _r2 = t.reserve(&owner("b"), 0).unwrap();
        assert!(matches!(t.reserve(&owner("c"), 0), Err((SessionError::TooMany { open: 2, max: 2 }, _))));
        drop(r1);
        assert!(t.reserve(&owner("c"), 0).is_ok());
    }

    #[test]
    fn evicted_sessions_say_so() {
        let t = table(4);
        t.reserve(&owner("a"), 0).unwrap().insert("s".into(), verifier());
        assert!(t.evict("s"));
        assert!(matches!(t.checkout("s", &owner("a"), Holder::Attach), Err(SessionError::Evicted { .. })));
        assert!(matches!(t.checkout("zz", &owner("a"), Holder::Attach), Err(SessionError::Unknown(_))));
    }

    #[test]
    fn idle_sessions_expire_but_not_while_in_a_round() {
        let t = SessionTable::new(SessionLimits { idle_timeout: Duration::ZERO, ..limits(4) });
        t.reserve(&owner("a"), 0).unwrap().insert("idle".into(), verifier());
        t.reserve(&owner("a"), 0).unwrap().insert("busy".into(), verifier());
        let (_v, _, _) = t.checkout("busy", &owner("a"), Holder::Stream(0)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(t.expire_idle(), 1);
        assert!(matches!(t.checkout("idle", &owner("a"), Holder::Attach), Err(SessionError::Evicted { .. })));
    }

    #[test]
    fn one_token_cannot_take_every_slot() {
        let t = SessionTable::new(SessionLimits { max_per_owner: 2, ..limits(4) });
        let a = owner("a");
        t.reserve(&a, 0).unwrap().insert("a1".into(), verifier());
        let _r = t.reserve(&a, 0).unwrap();
        // Both of a's sessions are in use: its quota is full, the table is not.
        assert!(matches!(t.reserve(&a, 0), Err((SessionError::OverQuota { open: 2, max: 2 }, _))));
        assert!(t.reserve(&owner("b"), 0).is_ok(), "another token still gets a slot");
    }

    #[test]
    fn abandoned_sessions_are_reclaimed_when_the_table_is_full() {
        let t = SessionTable::new(SessionLimits { reclaim_after: Duration::ZERO, ..limits(2) });
        t.reserve(&owner("a"), 0).unwrap().insert("held".into(), verifier());
        t.reserve(&owner("a"), 0).unwrap().insert("left".into(), verifier());
        t.detach("left", 0);
        let r = t.reserve(&owner("b"), 0).expect("the abandoned session makes room");
        assert_eq!(r.reclaimed.pressure, 1);
        r.insert("b1".into(), verifier());
        assert!(matches!(t.checkout("left", &owner("a"), Holder::Attach), Err(SessionError::Evicted { .. })));
        // The one a stream still holds is never reclaimed.
        assert!(matches!(t.reserve(&owner("c"), 0), Err((SessionError::TooMany { .. }, _))));
        assert!(t.checkout("held", &owner("a"), Holder::Stream(0)).is_ok());
    }

    #[test]
    fn a_token_at_its_quota_reclaims_its_own_abandoned_session_first() {
        let t = SessionTable::new(SessionLimits { max_per_owner: 1, reclaim_after: Duration::ZERO, ..limits(4) });
        t.reserve(&owner("b"), 0).unwrap().insert("b1".into(), verifier());
        t.detach("b1", 0);
        t.reserve(&owner("a"), 0).unwrap().insert("a1".into(), verifier());
        t.detach("a1", 0);
        let r = t.reserve(&owner("a"), 0).unwrap();
        assert_eq!(r.reclaimed, Reclaimed { quota: 1, ..Reclaimed::default() });
        assert!(t.checkout("b1", &owner("b"), Holder::Attach).is_ok(), "another token's session is left alone");
    }

    #[test]
    fn work_in_flight_counts_against_the_memory_budget() {
        let t = SessionTable::new(SessionLimits { memory_budget_bytes: 1000, ..limits(8) });
        let idle = verifier().cache_bytes();
        assert!(idle < 1000);
        t.reserve(&owner("a"), 0).unwrap().insert("idle".into(), verifier());
        // A pass's activations push the idle session out.
        let (charge, evicted) = t.charge(1000);
        assert_eq!(evicted.memory, usize::from(idle > 0));
        assert_eq!(t.inflight_bytes(), 1000);
        // While they are in flight a new session that needs room is refused...
        let err = t.reserve(&owner("b"), 10).err().map(|(e, _)| e);
        assert!(matches!(err, Some(SessionError::NoMemory { need: 10, budget: 1000, .. })), "{err:?}");
        drop(charge);
        assert_eq!(t.inflight_bytes(), 0);
        // ...and served once they are done; even a session larger than the
        // whole budget, alone on the server.
        let r = t.reserve(&owner("b"), 5000).unwrap();
        assert_eq!(t.inflight_bytes(), 5000);
        drop(r);
        assert_eq!(t.inflight_bytes(), 0);
    }
}
