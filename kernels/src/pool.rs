//! A persistent worker pool for the forward pass's parallel loops.
//!
//! A token's forward pass runs about 200 short parallel loops (matmuls and
//! attention). Handing each to rayon wakes a sleeping thread through the
//! kernel every time; here workers spin briefly between loops and park only
//! when the model is idle, so a hand-off costs a cache-line write.
//!
//! The number of parts a loop is split into is `rayon::current_num_threads()`
//! (so `RAYON_NUM_THREADS`, `--threads` and a rayon pool's `install` keep
//! working as the thread setting). Results never depend on the split: every
//! caller partitions output columns or rows, never a sum.
//!
//! One loop runs on the pool at a time. A caller that finds it busy (another
//! model in the same process) runs its parts itself, in order.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

/// Spins before a worker parks: long enough to bridge the serial work between
/// two loops of one pass (norms, RoPE, quantization), short enough not to
/// burn a core for long once the pass is over.
const SPIN: u32 = 1 << 16;

type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Slot {
    /// Bumped for every job handed to this worker.
    seq: AtomicUsize,
    /// Set to `seq` once the job ran.
    done: AtomicUsize,
    part: AtomicUsize,
    /// A `*const Job` living on the caller's stack until `done == seq`.
    job: AtomicPtr<()>,
    sleeping: AtomicBool,
    panicked: AtomicBool,
    thread: OnceLock<Thread>,
}

struct Pool {
    slots: Vec<Arc<Slot>>,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool { slots: Vec::new() }))
}

fn worker(slot: Arc<Slot>) {
    let mut seen = 0;
    loop {
        let mut spins = 0u32;
        let seq = loop {
            let seq = slot.seq.load(Ordering::Acquire);
            if seq != seen {
                break seq;
            }
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            slot.sleeping.store(true, Ordering::SeqCst);
            if slot.seq.load(Ordering::SeqCst) == seen {
                std::thread::park();
            }
            slot.sleeping.store(false, Ordering::SeqCst);
        };
        seen = seq;
        let job = slot.job.load(Ordering::Acquire) as *const Job<'_>;
        let part = slot.part.load(Ordering::Acquire);
        // SAFETY: the caller keeps the job alive until it sees `done == seq`.
        let ran = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(part) }));
        if ran.is_err() {
            slot.panicked.store(true, Ordering::Release);
        }
        slot.done.store(seq, Ordering::Release);
    }
}

impl Pool {
    fn grow(&mut self, workers: usize) {
        while self.slots.len() < workers {
            let slot = Arc::new(Slot {
                seq: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                part: AtomicUsize::new(0),
                job: AtomicPtr::new(std::ptr::null_mut()),
                sleeping: AtomicBool::new(false),
                panicked: AtomicBool::new(false),
                thread: OnceLock::new(),
            });
            let for_worker = slot.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ouro-kernel-{}", self.slots.len() + 1))
                .spawn(move || worker(for_worker))
                .expect("spawn a kernel worker thread");
            let _ = slot.thread.set(handle.thread().clone());
            self.slots.push(slot);
        }
    }
}

/// How many parts a parallel loop is split into here.
pub fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Runs `f(0)`, …, `f(parts - 1)`, in parallel where the pool is free.
/// A panic in any part is re-raised here once every part has finished.
pub fn run(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        if parts == 1 {
            f(0);
        }
        return;
    }
    let Ok(mut pool) = pool().try_lock() else {
        (0..parts).for_each(f);
        return;
    };
    pool.grow(parts - 1);
    let job: Job<'_> = f;
    let job_ptr = &job as *const Job<'_> as *mut ();
    let slots = &pool.slots[..parts - 1];
    let mut seqs = Vec::with_capacity(slots.len());
    for (i, slot) in slots.iter().enumerate() {
        slot.job.store(job_ptr, Ordering::Release);
        slot.part.store(i + 1, Ordering::Release);
        let seq = slot.seq.load(Ordering::Relaxed) + 1;
        slot.seq.store(seq, Ordering::SeqCst);
        if slot.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = slot.thread.get() {
                t.unpark();
            }
        }
        seqs.push(seq);
    }
    let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
    for (slot, seq) in slots.iter().zip(seqs) {
        while slot.done.load(Ordering::Acquire) != seq {
            std::hint::spin_loop();
        }
    }
    let theirs = slots.iter().any(|s| s.panicked.swap(false, Ordering::AcqRel));
    drop(pool);
    if let Err(p) = mine {
        std::panic::resume_unwind(p);
    }
    assert!(!theirs, "a kernel worker panicked");
}

/// Splits `data` into up to [`threads`] contiguous pieces of whole `unit`s
/// and runs `f(first_unit, piece)` on each in parallel. Loops whose result
/// per unit does not depend on the split (rows, heads, elements) use this.
pub fn for_pieces<T: Send>(data: &mut [T], unit: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    let units = data.len() / unit.max(1);
    let parts = threads().clamp(1, units.max(1));
    if parts == 1 {
        return f(0, data);
    }
    let mut pieces = Vec::with_capacity(parts);
    let mut rest = data;
    for p in 0..parts {
        let (lo, hi) = (units * p / parts, units * (p + 1) / parts);
        let (mine, tail) = rest.split_at_mut((hi - lo) * unit);
        pieces.push(Mutex::new((lo, mine)));
        rest = tail;
    }
    run(parts, &|p| {
        let mut piece = pieces[p].lock().expect("one part per piece");
        let (first, ref mut slice) = *piece;
        f(first, slice);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_on_any_split() {
        for parts in [0, 1, 2, 3, 7] {
            let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..100 {
                run(parts, &|p| {
                    hits[p].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 100), "parts = {parts}");
        }
    }

    #[test]
    fn pieces_cover_the_slice_once_in_whole_units() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let mut v = vec![0usize; 7 * 5];
        pool.install(|| {
            for_pieces(&mut v, 5, &|first, piece| {
                assert_eq!(piece.len() % 5, 0);
                for (i, x) in piece.iter_mut().enumerate() {
                    *x += first * 5 + i + 1;
                }
            })
        });
        assert_eq!(v, (1..=35).collect::<Vec<_>>());
    }

    #[test]
    fn concurrent_callers_all_finish() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        run(3, &|_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 200 * 3);
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_and_the_pool_still_works() {
        let r = catch_unwind(|| run(2, &|p| assert!(p != 1, "boom")));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        run(2, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }
}
