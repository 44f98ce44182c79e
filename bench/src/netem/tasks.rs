//! Every task of one proxy in one place, so stopping the proxy stops its
//! connections too, and `shutdown` can wait until their sockets are closed.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::JoinSet;

#[derive(Debug, Default)]
struct Inner {
    set: JoinSet<()>,
    /// Set once the proxy stops, so a task that was mid-accept cannot spawn
    /// a connection that outlives it.
    closed: bool,
}

#[derive(Debug, Clone, Default)]
pub(super) struct ProxyTasks(Arc<Mutex<Inner>>);

impl ProxyTasks {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave a JoinSet half-updated, so the
        // poisoned state is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        // Reap finished connections so a long run does not accumulate them.
        while inner.set.try_join_next().is_some() {}
        inner.set.spawn(task);
    }

    /// Aborts everything without waiting, for `Drop`.
    pub fn abort(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.set.abort_all();
    }

    /// Aborts everything and waits until the tasks, and so their sockets,
    /// are gone.
    pub async fn shutdown(&self) {
        let mut set = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.set)
        };
        set.shutdown().await;
    }
}
