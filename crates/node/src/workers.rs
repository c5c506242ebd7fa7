//! The node's background work as named workers: the cron, the AOF flusher and its fsync
//! thread, the RDB saver thread, one shipper per AOF account, RDB backups. Each has a name
//! and a status; a panic in one is caught and recorded (not lost with a detached task), so
//! the node's owner can see that the node is broken and restart it. One cancellation token,
//! cancelled when the node stops, ends the async workers.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Workers a node keeps records of (finished ones are pruned first): a bound, since RDB
/// backups start a worker each.
const WORKERS_KEPT_MAX: usize = 256;

/// What a worker is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Running,
    Stopped,
    /// It panicked; the message says where.
    Failed(String),
}

/// One worker's record.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    id: u64,
    pub name: String,
    pub status: Status,
}

/// The registry of a node's workers and the token that stops them.
#[derive(Default)]
pub struct Workers {
    list: Mutex<Vec<WorkerStatus>>,
    next_id: std::sync::atomic::AtomicU64,
    cancel: CancellationToken,
}

impl Workers {
    /// The token every async worker stops on.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops the async workers (they see the token cancelled).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Runs `work` as a task named `name`; a panic is recorded as its failure.
    pub fn spawn<F>(self: &Arc<Self>, name: impl Into<String>, work: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = self.register(name.into());
        // Every async worker ends with the node: a task left running after an abort (a
        // cron, a backup) would go on writing the dead node's data into its accounts.
        let stop = self.cancel.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = work => {}
                _ = stop.cancelled() => {}
            }
        });
        let abort = task.abort_handle();
        let me = self.clone();
        tokio::spawn(async move {
            let status = match task.await {
                Ok(()) => Status::Stopped,
                Err(e) if e.is_panic() => Status::Failed(panic_message(e.into_panic())),
                Err(_) => Status::Stopped,
            };
            me.finish(id, status);
        });
        abort
    }

    /// Runs `work` on an OS thread named `name`; a panic is recorded as its failure.
    pub fn spawn_thread<F>(self: &Arc<Self>, name: &str, work: F) -> std::io::Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        let id = self.register(name.to_string());
        let me = self.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let status = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                    Ok(()) => Status::Stopped,
                    Err(p) => Status::Failed(panic_message(p)),
                };
                me.finish(id, status);
            })?;
        Ok(())
    }

    /// Every worker's record, oldest first.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first worker that failed, and why.
    pub fn failure(&self) -> Option<(String, String)> {
        self.statuses().into_iter().find_map(|w| match w.status {
            Status::Failed(why) => Some((w.name, why)),
            _ => None,
        })
    }

    /// Records a new running worker; returns its id for [`Workers::finish`].
    fn register(&self, name: String) -> u64 {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= WORKERS_KEPT_MAX
            && let Some(i) = list.iter().position(|w| w.status == Status::Stopped)
        {
            list.remove(i);
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        list.push(WorkerStatus {
            id,
            name,
            status: Status::Running,
        });
        id
    }

    fn finish(&self, id: u64, status: Status) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = list.iter_mut().find(|w| w.id == id) {
            w.status = status;
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_worker_is_recorded_as_failed() {
        let w = Arc::new(Workers::default());
        w.spawn("fine", async {});
        w.spawn("broken", async { panic!("boom") });
        w.spawn_thread("thread", || panic!("thread boom")).unwrap();
        for _ in 0..1000 {
            if w.statuses().iter().all(|s| s.status != Status::Running) {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let by_name = |n: &str| {
            w.statuses()
                .into_iter()
                .find(|s| s.name == n)
                .unwrap()
                .status
        };
        assert_eq!(by_name("fine"), Status::Stopped);
        assert_eq!(by_name("broken"), Status::Failed("boom".into()));
        assert_eq!(by_name("thread"), Status::Failed("thread boom".into()));
        assert_eq!(w.failure().map(|f| f.0), Some("broken".into()));
    }
}
