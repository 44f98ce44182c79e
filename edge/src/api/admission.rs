//! How many generations run at once, and how many wait.
//!
//! The device has a few cores and one drafter; generations beyond a handful
//! only slow each other down. A request past the running ones waits (on the
//! async runtime, first come first served) for a slot; once the queue is
//! full too, it is refused at once with 429 so the client can back off
//! instead of holding a connection open for minutes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// The `Retry-After` of a refusal. A generation takes seconds, but a client
/// that waits one second and finds the queue full again is told so cheaply.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max_queue: usize,
    queued: AtomicUsize,
}

/// The right to run one generation, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("ouro_edge_api_running").decrement(1.0);
    }
}

/// A place in the queue, given back when dropped: on admission, or when
/// the client goes away while waiting (its handler is dropped).
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("ouro_edge_api_queued").decrement(1.0);
    }
}

impl Admission {
    pub fn new(max_concurrent: usize, max_queue: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_concurrent.max(1))), max_queue, queued: AtomicUsize::new(0) }
    }

    /// A slot now, or after the requests queued before this one; an error at
    /// once when the queue is full.
    pub async fn admit(&self) -> Result<Slot, ApiError> {
        // The semaphore is fair: a free permit exists only when nobody
        // waits, so this cannot overtake the queue.
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(Self::running(permit));
        }
        let joined =
            self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| (q < self.max_queue).then_some(q + 1));
        if joined.is_err() {
            return Err(ApiError::RateLimited {
                message: format!(
                    "the server is busy: all generation slots are taken and {} requests are waiting; retry later",
                    self.max_queue
                ),
                retry_after: RETRY_AFTER,
            });
        }
        metrics::gauge!("ouro_edge_api_queued").increment(1.0);
        let _place = Place(&self.queued);
        match Arc::clone(&self.slots).acquire_owned().await {
            Ok(permit) => Ok(Self::running(permit)),
            // The semaphore is never closed.
            Err(_) => Err(ApiError::Unavailable("the server is shutting down".into())),
        }
    }

    fn running(permit: OwnedSemaphorePermit) -> Slot {
        metrics::gauge!("ouro_edge_api_running").increment(1.0);
        Slot { _permit: permit }
    }
}
