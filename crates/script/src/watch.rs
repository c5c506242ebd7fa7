//! What a running script tells the rest of the node without a lock: whether one runs,
//! since when, whether it is past the busy threshold, whether it wrote, and whether
//! SCRIPT KILL / FUNCTION KILL asked it to stop.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

/// Which command family started the running script (SCRIPT KILL stops only EVAL scripts,
/// FUNCTION KILL only functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Eval,
    Function,
}

/// Shared between the engine (which updates it while a script runs) and the connections
/// (which read it to answer BUSY and to kill).
pub struct Watch {
    epoch: Instant,
    /// Microseconds since `epoch` when the running script started; 0 when none runs.
    started_us: AtomicU64,
    /// Busy threshold in milliseconds (busy-reply-threshold / lua-time-limit); 0: never.
    busy_after_ms: AtomicU64,
    busy: AtomicBool,
    kill: AtomicBool,
    wrote: AtomicBool,
    kind: AtomicU8,
    /// The busy script's name (sha or function) and command, for FUNCTION STATS.
    /// Kept between runs (cleared, not dropped) so a run allocates nothing for it.
    running: Mutex<(String, Vec<bytes::Bytes>)>,
    /// Libraries and functions loaded (FUNCTION STATS, answered while a script runs).
    libraries: AtomicU64,
    functions: AtomicU64,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            epoch: Instant::now(),
            started_us: AtomicU64::new(0),
            busy_after_ms: AtomicU64::new(5_000),
            busy: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            kind: AtomicU8::new(0),
            running: Mutex::new((String::new(), Vec::new())),
            libraries: AtomicU64::new(0),
            functions: AtomicU64::new(0),
        }
    }
}

/// What SCRIPT KILL / FUNCTION KILL get.
#[derive(Debug, PartialEq, Eq)]
pub enum KillOutcome {
    Killing,
    NotBusy,
    /// The script wrote: stopping it halfway would break atomicity.
    Unkillable,
    /// SCRIPT KILL for a function or FUNCTION KILL for a script.
    WrongKind(RunKind),
}

impl Watch {
    pub fn set_busy_threshold_ms(&self, ms: u64) {
        self.busy_after_ms.store(ms, Ordering::Relaxed);
    }

    pub fn busy_threshold_ms(&self) -> u64 {
        self.busy_after_ms.load(Ordering::Relaxed)
    }

    /// Whether a script is running past the busy threshold (others get BUSY).
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    pub fn running_kind(&self) -> Option<RunKind> {
        if self.started_us.load(Ordering::Acquire) == 0 {
            return None;
        }
        Some(match self.kind.load(Ordering::Relaxed) {
            0 => RunKind::Eval,
            _ => RunKind::Function,
        })
    }

    pub fn set_function_counts(&self, libraries: usize, functions: usize) {
        self.libraries.store(libraries as u64, Ordering::Relaxed);
        self.functions.store(functions as u64, Ordering::Relaxed);
    }

    /// Libraries and functions loaded.
    pub fn function_counts(&self) -> (u64, u64) {
        (
            self.libraries.load(Ordering::Relaxed),
            self.functions.load(Ordering::Relaxed),
        )
    }

    /// Name, command line and milliseconds so far of the running script.
    pub fn running(&self) -> Option<(String, Vec<bytes::Bytes>, u64)> {
        let started = self.started_us.load(Ordering::Acquire);
        if started == 0 {
            return None;
        }
        let (name, command) = self.running.lock().ok()?.clone();
        Some((name, command, self.elapsed_ms(started)))
    }

    pub fn kill(&self, asked_by: RunKind) -> KillOutcome {
        let Some(kind) = self.running_kind() else {
            return KillOutcome::NotBusy;
        };
        if self.wrote.load(Ordering::Acquire) {
            return KillOutcome::Unkillable;
        }
        if kind != asked_by {
            return KillOutcome::WrongKind(kind);
        }
        self.kill.store(true, Ordering::Release);
        KillOutcome::Killing
    }

    pub(crate) fn kill_requested(&self) -> bool {
        self.kill.load(Ordering::Acquire)
    }

    /// Marks that the running script wrote (it can no longer be killed).
    pub fn wrote(&self) {
        self.wrote.store(true, Ordering::Release);
    }

    /// Whether the running script wrote.
    pub fn has_written(&self) -> bool {
        self.wrote.load(Ordering::Acquire)
    }

    fn now_us(&self) -> u64 {
        // Never 0, which means "nothing runs".
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    fn elapsed_ms(&self, started_us: u64) -> u64 {
        self.now_us().saturating_sub(started_us) / 1000
    }

    /// A run starts. Its name and command line are recorded only if it turns busy
    /// ([`Watch::record_running`]): only then can another client ask for them.
    pub(crate) fn start(&self, kind: RunKind) {
        self.kill.store(false, Ordering::Relaxed);
        self.wrote.store(false, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
        self.kind.store(
            match kind {
                RunKind::Eval => 0,
                RunKind::Function => 1,
            },
            Ordering::Relaxed,
        );
        self.started_us.store(self.now_us(), Ordering::Release);
    }

    /// The busy run's name and command line, for FUNCTION STATS.
    pub(crate) fn record_running(&self, name: &str, command: &[bytes::Bytes]) {
        if let Ok(mut r) = self.running.lock() {
            r.0.clear();
            r.0.push_str(name);
            r.1.clear();
            r.1.extend_from_slice(command);
        }
    }

    pub(crate) fn finish(&self) {
        let was_busy = self.busy.load(Ordering::Relaxed);
        self.started_us.store(0, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        self.kill.store(false, Ordering::Release);
        if was_busy && let Ok(mut r) = self.running.lock() {
            r.1.clear();
        }
    }

    /// From the count hook: true exactly once, when the running script crosses the busy
    /// threshold.
    pub(crate) fn check_busy(&self) -> bool {
        if self.busy.load(Ordering::Relaxed) {
            return false;
        }
        let threshold = self.busy_after_ms.load(Ordering::Relaxed);
        let started = self.started_us.load(Ordering::Acquire);
        if threshold == 0 || started == 0 || self.elapsed_ms(started) < threshold {
            return false;
        }
        self.busy.store(true, Ordering::Release);
        true
    }
}
