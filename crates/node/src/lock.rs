//! The state lock as the node's tasks and threads take it.
//!
//! Async tasks never block their thread on the lock: a thread must stay free to answer
//! BUSY and SCRIPT KILL while a script holds it. A task that finds it taken counts itself
//! among the waiters and sleeps until a holder lets go: every guard handed out here wakes
//! the waiters when it is dropped, after the lock is free. A holder that takes the lock
//! some other way (a control path's blocking `state.lock()`) does not wake them; they look
//! again after [`LOCK_RETRY`] at the latest.
//!
//! Waking is what keeps a background thread from starving clients: the saver shares a core
//! with the connections in the benchmarks (and on a one-core host), and a waiter that spun
//! or slept on a timer kept the core from the very thread it waited for.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use crate::Shared;
use crate::state::State;

/// How often a task that needs the state lock looks again while a busy script holds it.
pub(crate) const BUSY_POLL: Duration = Duration::from_millis(5);
/// Longest a waiting task sleeps before it looks at the lock again without being woken.
const LOCK_RETRY: Duration = Duration::from_millis(1);

/// The tasks waiting for the state lock.
#[derive(Default)]
pub(crate) struct Waiters {
    count: AtomicUsize,
    released: tokio::sync::Notify,
}

impl Waiters {
    /// Whether tasks wait for the lock: a thread that takes it step after step (the saver)
    /// gives way while they do.
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Called with the lock just let go. The fence pairs with the waiter's count increment
    /// before its last try: either the waiter saw the lock free, or this sees the waiter.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::Relaxed) > 0 {
            self.released.notify_waiters();
        }
    }
}

/// A lock held; wakes the waiters once it is let go.
pub(crate) struct Guard<'a, T> {
    /// Always `Some` until dropped: taken out in `drop` to unlock before waking.
    guard: Option<MutexGuard<'a, T>>,
    waiters: &'a Waiters,
}

/// The state lock, held.
pub(crate) type StateGuard<'a> = Guard<'a, State>;

impl<'a, T> Guard<'a, T> {
    fn new(guard: MutexGuard<'a, T>, waiters: &'a Waiters) -> Self {
        Guard {
            guard: Some(guard),
            waiters,
        }
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("held until dropped")
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().expect("held until dropped")
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.waiters.wake();
    }
}

/// One task counted among the waiters while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `mutex` for a thread that may block on it; None when a panic poisoned it.
fn lock_blocking<'a, T>(mutex: &'a Mutex<T>, waiters: &'a Waiters) -> Option<Guard<'a, T>> {
    Some(Guard::new(mutex.lock().ok()?, waiters))
}

/// `mutex` without blocking the thread, or None as soon as `busy` says so.
async fn lock_unless<'a, T>(
    mutex: &'a Mutex<T>,
    waiters: &'a Waiters,
    busy: impl Fn() -> bool,
) -> Option<Guard<'a, T>> {
    let mut waiting = None;
    loop {
        if busy() {
            return None;
        }
        if let Some(guard) = try_lock(mutex, waiters) {
            return Some(guard);
        }
        waiting.get_or_insert_with(|| Waiting::new(&waiters.count));
        // Registered before the last try, so a release in between is not missed.
        let released = waiters.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if let Some(guard) = try_lock(mutex, waiters) {
            return Some(guard);
        }
        let _ = tokio::time::timeout(LOCK_RETRY, released).await;
    }
}

fn try_lock<'a, T>(mutex: &'a Mutex<T>, waiters: &'a Waiters) -> Option<Guard<'a, T>> {
    let guard = match mutex.try_lock() {
        Ok(guard) => guard,
        // A panic under the lock is the node's owner's to handle (it restarts the node);
        // the connections still answer meanwhile.
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    Some(Guard::new(guard, waiters))
}

impl Shared {
    /// The state lock for a thread that may block (a background worker); None when a
    /// panic poisoned it.
    pub(crate) fn lock_blocking(&self) -> Option<StateGuard<'_>> {
        lock_blocking(&self.state, &self.lock_queue)
    }

    /// The state lock, for async tasks, waiting out a busy script.
    pub(crate) async fn lock_when_idle(&self) -> StateGuard<'_> {
        loop {
            if let Some(guard) = self.lock_unless_busy().await {
                return guard;
            }
            tokio::time::sleep(BUSY_POLL).await;
        }
    }

    /// The state lock, or None as soon as a busy script holds it (a script that is not
    /// busy yet may hold it too: checking first and then blocking would race).
    pub(crate) async fn lock_unless_busy(&self) -> Option<StateGuard<'_>> {
        lock_unless(&self.state, &self.lock_queue, || {
            self.script_watch.is_busy()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    // The clock is paused: it moves only when the runtime has nothing to run but timers, so
    // a waiter served by its retry timer shows up as time gone by.
    #[tokio::test(start_paused = true)]
    async fn letting_go_wakes_the_waiting_task_at_once() {
        let mutex = std::sync::Arc::new(Mutex::new(0u32));
        let waiters = std::sync::Arc::new(Waiters::default());
        let held = try_lock(&mutex, &waiters).expect("free at first");
        let waiter = tokio::spawn({
            let (mutex, waiters) = (mutex.clone(), waiters.clone());
            async move {
                let mut guard = lock_unless(&mutex, &waiters, || false)
                    .await
                    .expect("not busy");
                *guard += 1;
            }
        });
        while !waiters.any() {
            tokio::task::yield_now().await;
        }
        let released_at = tokio::time::Instant::now();
        drop(held);
        waiter.await.expect("the waiter finishes");
        assert_eq!(tokio::time::Instant::now(), released_at);
        assert_eq!(*mutex.lock().unwrap(), 1);
        assert!(!waiters.any(), "a served task no longer counts as waiting");
    }

    #[tokio::test(start_paused = true)]
    #[expect(
        clippy::await_holding_lock,
        reason = "the test task is the holder that takes the Mutex directly and does not wake"
    )]
    async fn a_holder_that_does_not_wake_leaves_the_waiter_to_its_timer() {
        let mutex = std::sync::Arc::new(Mutex::new(0u32));
        let waiters = std::sync::Arc::new(Waiters::default());
        let held = mutex.lock().unwrap();
        let waiter = tokio::spawn({
            let (mutex, waiters) = (mutex.clone(), waiters.clone());
            async move { lock_unless(&mutex, &waiters, || false).await.is_some() }
        });
        while !waiters.any() {
            tokio::task::yield_now().await;
        }
        let released_at = tokio::time::Instant::now();
        drop(held);
        assert!(waiter.await.expect("the waiter finishes"));
        assert!(tokio::time::Instant::now() - released_at >= LOCK_RETRY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_holder_sends_the_waiter_away() {
        let mutex = Mutex::new(0u32);
        let waiters = Waiters::default();
        let busy = std::sync::atomic::AtomicBool::new(false);
        let held = lock_blocking(&mutex, &waiters).expect("not poisoned");
        let waiting = lock_unless(&mutex, &waiters, || busy.load(Ordering::Relaxed));
        tokio::pin!(waiting);
        // Waits while the holder is not busy yet; gives up once it is.
        assert!(waiting.as_mut().now_or_never().is_none());
        assert!(waiters.any());
        busy.store(true, Ordering::Relaxed);
        assert!(waiting.await.is_none());
        assert!(!waiters.any());
        drop(held);
    }
}
