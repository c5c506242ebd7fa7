//! Replies held back until the runtime's worker is about to sleep, then written together,
//! as Redis writes its replies in `beforeSleep` rather than as each command ends.
//!
//! A client that waits on many connections then finds several replies at once and answers
//! with several requests, which the node reads in one wake-up instead of one each. The
//! connection task hands its reply over and goes back to waiting for input: no second
//! poll of the task per request, which is what yielding before the write cost.
//!
//! Only where [`install`] hooked the runtime's park (the `node` command's own runtime),
//! only for plain TCP and small replies; elsewhere connections yield before they write.
//! Whatever the hook cannot write at once goes back to its connection (through its outbox)
//! and out through the connection's own buffer, in order.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::UnboundedSender;

use crate::state::Outbound;

/// Most reply bytes a connection holds back; a larger reply (or more) is written by the
/// connection itself, after what it held.
pub const HELD_BYTES_MAX: usize = 16 * 1024;
/// Hand-overs after which the next one writes everything held without waiting for the
/// worker to sleep: a worker kept busy without pause (a flood of pub/sub, several caches
/// on a few threads) still answers the clients it served.
const HANDOVERS_BETWEEN_FLUSHES_MAX: usize = 256;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static WAITING: Mutex<Vec<Arc<Held>>> = Mutex::new(Vec::new());
/// Whether [`WAITING`] may hold anything (read without its lock).
static ANY_WAITING: AtomicBool = AtomicBool::new(false);
/// When a batch first saw replies waiting (monotonic µs; 0: none seen yet).
static WAITING_SEEN_US: AtomicU64 = AtomicU64::new(0);
/// How long replies may wait for the worker to sleep while other clients' batches keep it
/// busy; a round of every ready connection takes a fraction of this.
const HELD_US_MAX: u64 = 1000;
static HANDOVERS: AtomicUsize = AtomicUsize::new(0);

/// Writes held replies whenever one of `builder`'s workers is about to sleep, and lets
/// connections on it hold their replies.
pub fn install(builder: &mut tokio::runtime::Builder) {
    INSTALLED.store(true, Ordering::Relaxed);
    builder.on_thread_park(flush_all);
}

/// Whether connections may hold replies (a runtime was hooked by [`install`]).
pub fn enabled() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Writes what is held now, if anything. The park hook is the usual writer, but tokio's
/// worker skips it when it only polls for I/O before running tasks that yielded (or that
/// used up their budget): a connection that resumes from a yield, and the cron, call this
/// so held replies never wait on a worker that stays busy.
pub fn flush_if_waiting() {
    if ANY_WAITING.load(Ordering::Relaxed) {
        flush_all();
    }
}

/// Called with each batch's clock: writes what is held once batches have seen it wait for
/// [`HELD_US_MAX`], so a worker kept from sleeping by other clients still answers promptly.
pub fn flush_if_overdue(now_us: u64) {
    if !ANY_WAITING.load(Ordering::Relaxed) {
        return;
    }
    match WAITING_SEEN_US.load(Ordering::Relaxed) {
        0 => WAITING_SEEN_US.store(now_us.max(1), Ordering::Relaxed),
        seen if now_us.saturating_sub(seen) >= HELD_US_MAX => flush_all(),
        _ => {}
    }
}

/// Writes every held reply the socket takes; what it does not goes back to its connection.
fn flush_all() {
    HANDOVERS.store(0, Ordering::Relaxed);
    let waiting = {
        let mut waiting = lock(&WAITING);
        ANY_WAITING.store(false, Ordering::Relaxed);
        WAITING_SEEN_US.store(0, Ordering::Relaxed);
        std::mem::take(&mut *waiting)
    };
    for held in waiting {
        held.flush();
    }
}

/// One connection's held replies. Like the fixed reply buffer of a Redis client, they do
/// not count as its output memory (CLIENT LIST `omem`) until its socket refuses them and
/// the connection takes them back.
pub struct Held {
    inner: Mutex<Inner>,
    outbox: UnboundedSender<Outbound>,
}

struct Inner {
    bytes: Vec<u8>,
    /// In [`WAITING`].
    queued: bool,
    /// The socket, while it is open: cleared (by [`HeldGuard`]) before it closes.
    fd: Option<RawFd>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Held {
    /// A connection's holder for `socket`, and the guard that must drop before the socket.
    pub fn new(
        socket: &impl std::os::fd::AsRawFd,
        outbox: UnboundedSender<Outbound>,
    ) -> (Arc<Held>, HeldGuard) {
        let held = Arc::new(Held {
            inner: Mutex::new(Inner {
                bytes: Vec::new(),
                queued: false,
                fd: Some(socket.as_raw_fd()),
            }),
            outbox,
        });
        (held.clone(), HeldGuard(held))
    }

    /// Holds `reply` until the worker sleeps; false (nothing taken) when that would hold
    /// more than [`HELD_BYTES_MAX`]: the connection writes it, after [`Held::take`].
    pub fn hand_over(self: &Arc<Self>, reply: &[u8]) -> bool {
        {
            let mut inner = lock(&self.inner);
            if inner.bytes.len() + reply.len() > HELD_BYTES_MAX || inner.fd.is_none() {
                return false;
            }
            inner.bytes.extend_from_slice(reply);
            if !inner.queued {
                inner.queued = true;
                let mut waiting = lock(&WAITING);
                waiting.push(self.clone());
                ANY_WAITING.store(true, Ordering::Relaxed);
            }
        }
        if HANDOVERS.fetch_add(1, Ordering::Relaxed) >= HANDOVERS_BETWEEN_FLUSHES_MAX {
            flush_all();
        }
        true
    }

    /// Takes back what is still held, for the connection to write before anything newer.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut lock(&self.inner).bytes)
    }

    fn flush(&self) {
        let mut inner = lock(&self.inner);
        inner.queued = false;
        let Some(raw) = inner.fd else {
            return;
        };
        if inner.bytes.is_empty() {
            return;
        }
        // SAFETY: the descriptor is open while `fd` holds it: `HeldGuard` clears it, under
        // this lock, before the connection's socket is dropped.
        #[allow(unsafe_code)]
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        use rustix::net::{SendFlags, send};
        let sent = send(fd, &inner.bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL).unwrap_or(0);
        inner.bytes.drain(..sent);
        if !inner.bytes.is_empty() {
            // The socket is full or failed: the connection writes the rest (or finds out).
            let _ = self.outbox.send(Outbound::WriteHeld);
        }
    }
}

/// Declared before the socket in its connection, so it drops first: from then on the hook
/// no longer touches the descriptor, and nothing is held for it.
pub struct HeldGuard(Arc<Held>);

impl Drop for HeldGuard {
    fn drop(&mut self) {
        let mut inner = lock(&self.0.inner);
        inner.fd = None;
        inner.bytes = Vec::new();
    }
}
