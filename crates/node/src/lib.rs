//! The data-plane node: a Redis-protocol server over a [`keyspace::Keyspace`].
//!
//! This crate owns the sockets and the clock; the keyspace and the protocol codec stay
//! I/O-free. `cacheplane node` runs [`run`]; tests and the control plane use [`start`].

mod acl;
mod aof;
mod command_docs;
mod commands;
pub mod config;
mod conn;
mod dispatch;
mod durability;
mod fds;
pub mod firewall;
pub mod held;
mod info;
mod introspect;
mod introspect_cmd;
mod lock;
mod memory;
mod monitor;
mod persist;
mod scripting;
mod server;
mod ship;
mod state;
mod tail;
mod tracking;
mod transfer;
mod workers;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

pub use commands::dataset_digest;
pub use config::{ConfigError, DebugCommand, Fsync, NodeConfig};
pub use fds::set_client_fd_budget;
pub use info::used_memory_bytes;
pub use server::{ACTIVE_EXPIRE_KEYS_PER_CYCLE_MAX, StopReport};
pub use ship::{
    EVENTS_KEPT_MAX, LoadReport, SEGMENT_MAX_BYTES, SEGMENT_ROLL_INTERVAL, events_from_lines,
    events_to_lines,
};
pub use workers::{Status as WorkerState, WorkerStatus};

/// The Redis version the node reports and behaves as.
pub const REDIS_VERSION: &str = "7.0.15";

/// State shared by the connections and the background cycle of one node.
pub struct Shared {
    pub(crate) state: Mutex<state::State>,
    /// Set to true to stop the node (SHUTDOWN, or the owner).
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// The background workers, readable even when the state lock is poisoned.
    pub(crate) workers: Arc<workers::Workers>,
    /// The running script, readable while it holds the state lock (BUSY, SCRIPT KILL).
    pub(crate) script_watch: Arc<script::Watch>,
    /// This node's client sockets, counted in the process's descriptor budget.
    pub(crate) fds: Arc<AtomicUsize>,
    /// Who may connect, read at every accept without the state lock.
    pub(crate) firewall: firewall::FirewallGate,
    /// Who waits for the state lock, and their wake-up when it is let go.
    pub(crate) lock_queue: lock::Waiters,
}

/// How long a crash waits for the AOF flusher to finish a write under way.
const CRASH_FLUSHER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A running node.
pub struct NodeHandle {
    /// The plain listener's address (the TLS one's when there is only TLS).
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<StopReport>,
}

impl NodeHandle {
    /// Asks the node to stop and waits until it has; says what its AOF accounts did not
    /// get (a stop that gave up waiting on a store that is down).
    pub async fn stop(self) -> StopReport {
        let _ = self.shared.shutdown.send(true);
        let mut report = self.task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the node's task failed while stopping");
            StopReport::default()
        });
        report.events = take_events(&self.shared);
        report
    }

    /// Stops the node after a final snapshot to its local dump, whatever its `save` rules:
    /// a node started again on the same directory comes back with the same data (from the
    /// AOF if it keeps one, else from the dump).
    pub async fn stop_keeping_data(self) -> StopReport {
        if let Ok(mut st) = self.shared.state.lock() {
            st.save_on_stop = true;
        }
        self.stop().await
    }

    /// Why the node cannot serve, if it cannot: a command panicked (the state lock is
    /// poisoned), a worker failed, or the node stopped by itself.
    pub fn failure(&self) -> Option<String> {
        if self.shared.state.is_poisoned() {
            return Some("a command panicked; the node's state is poisoned".into());
        }
        if let Some((name, why)) = self.shared.workers.failure() {
            return Some(format!("its worker '{name}' failed: {why}"));
        }
        if self.task.is_finished() {
            return Some("the node stopped by itself".into());
        }
        None
    }

    /// The node's background workers and their states.
    pub fn workers(&self) -> Vec<WorkerStatus> {
        self.shared.workers.statuses()
    }

    /// Ends a broken node at once, without a final save or drain (its state cannot be
    /// trusted): its files stay as they are for the next start. Returns the object-store
    /// events it had recorded.
    pub async fn abort(self) -> Vec<blob::BlobEvent> {
        self.shared.workers.cancel();
        self.task.abort();
        let _ = self.task.await;
        take_events(&self.shared)
    }

    /// Ends the node as a machine losing power would: no final snapshot, no drain to the
    /// storage accounts, and its AOF cut back to what was fsynced (the page cache goes with
    /// the power; killing the process alone would keep it). Returns the object-store events
    /// it had recorded.
    pub async fn crash(self) -> Vec<blob::BlobEvent> {
        let disk = {
            let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.aof.as_ref().map(|log| log.disk.clone())
        };
        let workers = self.shared.workers.clone();
        let events = self.abort().await;
        // The flusher finishes a write under way before it stops; the cut comes after it.
        let flusher_stopped = || {
            !workers
                .statuses()
                .iter()
                .any(|w| w.name == "aof-flusher" && w.status == WorkerState::Running)
        };
        let deadline = tokio::time::Instant::now() + CRASH_FLUSHER_WAIT;
        while !flusher_stopped() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(lock::BUSY_POLL).await;
        }
        if let Some(disk) = disk {
            match disk.lose_unsynced() {
                Ok(bytes) => tracing::info!(bytes, "the crash lost the AOF bytes not yet fsynced"),
                Err(e) => {
                    tracing::error!(error = %e, "could not cut the AOF back to what was fsynced")
                }
            }
        }
        events
    }

    /// Replaces the passwords clients AUTH with, at once; connections authenticated with
    /// a key that changed are closed.
    pub fn set_passwords(&self, primary: Option<String>, secondary: Option<String>) {
        let mut st = self.shared.state.lock().expect("state lock");
        st.set_passwords(primary, secondary);
    }

    /// A handle for long operations on the running node (export, import) that does not
    /// keep the node from being stopped.
    pub fn control(&self) -> NodeControl {
        NodeControl {
            shared: self.shared.clone(),
        }
    }

    /// What the start restored from a storage account, if anything.
    pub fn restored(&self) -> Option<String> {
        self.shared
            .state
            .lock()
            .expect("state lock")
            .ship
            .restored
            .clone()
    }

    /// Takes the object-store events recorded since the last call (at most
    /// `EVENTS_KEPT_MAX` are kept between calls), for the soft-delete accounting.
    pub fn drain_events(&self) -> Vec<blob::BlobEvent> {
        take_events(&self.shared)
    }

    /// Waits until the node stops by itself (SHUTDOWN).
    pub async fn wait(self) -> StopReport {
        self.task.await.unwrap_or_default()
    }
}

/// Takes the node's recorded object-store events; a poisoned state still hands them over
/// (the event log is plain data, whatever a command left half done).
fn take_events(shared: &Shared) -> Vec<blob::BlobEvent> {
    let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut log = st.ship.events.lock().unwrap_or_else(|e| e.into_inner());
    log.recent.drain(..).collect()
}

/// Export, import and settings changes on a running node (see [`NodeHandle::control`]).
#[derive(Clone)]
pub struct NodeControl {
    shared: Arc<Shared>,
}

/// What a fault drill reads of a node's persistence at one moment.
#[derive(Debug, Clone, Default)]
pub struct PersistenceFacts {
    /// When the data of the newest snapshot completed in the RDB account was taken (ms
    /// since the epoch; the snapshot's key names it). None before the first of this run.
    pub last_snapshot_ms: Option<u64>,
    /// The RDB account's display name.
    pub rdb_account: Option<String>,
    /// Each AOF account, primary first.
    pub aof_targets: Vec<TargetFacts>,
    /// Bytes appended to the AOF since the node started (the offset accounts catch up to).
    pub appended: u64,
    /// Where the node's data came from at start.
    pub loaded: Option<ship::LoadReport>,
    pub keys: u64,
    /// Bytes of data in memory (INFO's `used_memory_dataset`).
    pub dataset_bytes: u64,
}

/// One AOF account as a drill sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    pub account: String,
    /// Its last request succeeded.
    pub ok: bool,
    /// Bytes of log it has not received yet.
    pub backlog_bytes: u64,
    /// The log offset it holds.
    pub shipped: u64,
    /// Segments it received since the node started.
    pub segments: u64,
}

impl NodeControl {
    /// The node's persistence as it stands.
    pub async fn persistence_facts(&self) -> PersistenceFacts {
        let st = self.shared.lock_when_idle().await;
        let appended = st.aof.as_ref().map_or(0, |a| a.appended);
        let last_snapshot_ms = st.ship.rdb.as_ref().and_then(|r| {
            let key = r
                .status
                .lock()
                .expect("backup status lock")
                .last_key
                .clone()?;
            ship::snapshot_time_ms(&key)
        });
        PersistenceFacts {
            last_snapshot_ms,
            rdb_account: st.ship.rdb.as_ref().map(|r| r.account().to_string()),
            aof_targets: st
                .ship
                .aof_targets
                .iter()
                .map(|t| {
                    let t = t.lock().expect("status lock");
                    TargetFacts {
                        account: t.account.clone(),
                        ok: t.ok,
                        backlog_bytes: appended.saturating_sub(t.shipped),
                        shipped: t.shipped,
                        segments: t.segments,
                    }
                })
                .collect(),
            appended,
            loaded: st.ship.loaded.clone(),
            keys: st.ks.dbs_len_total() as u64,
            dataset_bytes: st.ks.dataset_bytes() as u64,
        }
    }

    /// Changes settings at once, as one CONFIG SET of them all does: every one is checked
    /// before any applies, and the node takes what it derives from them (the control
    /// plane's live changes: memory limits, eviction policy, maxclients).
    pub async fn config_set(&self, settings: &[(&str, &str)]) -> Result<(), ConfigError> {
        let mut st = self.shared.lock_when_idle().await;
        let mut next = st.config.clone();
        for (name, value) in settings {
            next.set(name, value)?;
        }
        st.config = next;
        st.apply_config();
        Ok(())
    }

    /// FLUSHALL, as a client's runs (logged to the AOF, keyspace events and all); returns
    /// once it is as durable as a client's reply would be.
    pub async fn flush_all(&self) -> anyhow::Result<()> {
        let durable = {
            let mut st = self.shared.lock_when_idle().await;
            let spec = keyspace::lookup(b"flushall").expect("FLUSHALL is a command");
            let mut out = resp::ReplyBuf::default();
            let args = [bytes::Bytes::from_static(b"FLUSHALL")];
            // No client runs it: the keyspace does, logging it for the AOF as it logs a
            // client's.
            keyspace::execute(
                spec,
                &mut keyspace::Ctx::new(&mut st.ks, 0, &mut out),
                &args,
            )
            .map_err(|e| anyhow::anyhow!("FLUSHALL: {e}"))?;
            st.handle_touched();
            st.feed_aof()
        };
        if let Some(target) = durable {
            anyhow::ensure!(
                conn::wait_durable(target).await,
                "the AOF failed before the flush was durable"
            );
        }
        Ok(())
    }

    /// Streams a snapshot into `key` of `store`; returns the bytes stored.
    pub async fn export(
        &self,
        store: &blob::Store,
        key: &str,
        percent: &std::sync::atomic::AtomicU32,
    ) -> anyhow::Result<u64> {
        transfer::export(&self.shared, store, key, percent).await
    }

    /// Replaces the dataset with the RDB `files`; returns the keys loaded.
    pub async fn import(
        &self,
        files: Vec<std::path::PathBuf>,
        percent: Arc<std::sync::atomic::AtomicU32>,
    ) -> anyhow::Result<u64> {
        transfer::import(&self.shared, files, percent).await
    }
}

/// Binds the configured address and starts serving in the background.
pub async fn start(config: NodeConfig) -> anyhow::Result<NodeHandle> {
    let bind = config
        .bind
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let mut config = config;
    let tls_only = config.port == 0 && config.tls.port != 0;
    let listener = if tls_only {
        None
    } else {
        let l = tokio::net::TcpListener::bind((bind.as_str(), config.port))
            .await
            .map_err(|e| anyhow::anyhow!("bind {bind}:{}: {e}", config.port))?;
        config.port = l.local_addr()?.port();
        Some(l)
    };
    let tls = match config.tls.port {
        0 => None,
        port => {
            let settings = config.tls.server_settings()?;
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&settings)?);
            let l = tokio::net::TcpListener::bind((bind.as_str(), port))
                .await
                .map_err(|e| anyhow::anyhow!("bind {bind}:{port} (tls-port): {e}"))?;
            Some((l, acceptor))
        }
    };
    let addr = match (&listener, &tls) {
        (Some(l), _) => l.local_addr()?,
        (None, Some((l, _))) => l.local_addr()?,
        (None, None) => unreachable!("a plain listener unless tls-only"),
    };
    let tls_addr = tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let state = state::State::new(config, unix_time_ms());
    let mut state = load_at_start(state).await?;
    scripting::restore_functions(&mut state)?;
    let shared = Arc::new(Shared {
        workers: state.workers.clone(),
        script_watch: state.scripting.watch.clone(),
        firewall: state.firewall.clone(),
        state: Mutex::new(state),
        shutdown,
        fds: fds::register_node(),
        lock_queue: lock::Waiters::default(),
    });
    let host = Arc::new(durability::NodeHost(Arc::downgrade(&shared)));
    shared
        .state
        .lock()
        .expect("state lock")
        .start_persistence(host)?;
    let task = tokio::spawn(server::serve(
        server::Listeners {
            plain: listener,
            tls,
        },
        shared.clone(),
        std::future::pending(),
    ));
    // Redis's words: its test suite waits for them in a server's log.
    tracing::info!(%addr, tls = ?tls_addr, "Ready to accept connections");
    Ok(NodeHandle {
        addr,
        tls_addr,
        shared,
        task,
    })
}

/// Loads the data as redis-server does at start: from the append-only file when
/// `appendonly yes` (creating it when absent), else from the dump if there is one. Damaged
/// files stop the start. Runs off the async threads: a large dataset takes seconds.
async fn load_at_start(st: state::State) -> anyhow::Result<state::State> {
    tokio::task::spawn_blocking(move || {
        let mut st = st;
        st.ks.set_clock(unix_time_ms());
        let path = persist::dump_path(&st.config);
        st.ship = ship::Shipping::new(&st.config, st.workers.clone())?;
        let config = st.config.clone();
        let ship = std::mem::take(&mut st.ship);
        // A node with storage accounts and nothing local comes back from the accounts.
        let started = std::time::Instant::now();
        let restored = ship::restore(&config, &ship, &mut |source| {
            st.ks = keyspace::Keyspace::new(config.databases);
            config.configure(&mut st.ks);
            st.ks.set_clock(unix_time_ms());
            match source {
                ship::Restoring::Aof => st.open_aof(),
                // With `appendonly`, the snapshot becomes the new AOF's base below, as a
                // local dump would.
                ship::Restoring::Rdb { reader, bytes } => load_stream(&mut st, reader, bytes),
            }
        })?;
        st.ship = ship;
        if let Some((what, report)) = restored {
            tracing::info!(restored = %what, keys = st.ks.dbs_len_total(), "restored from the storage account");
            st.ship.restored = Some(what.clone());
            st.ship.loaded = Some(report);
            if what.starts_with("aof") {
                return Ok(st);
            }
        }
        let restored_dump = st.ship.restored.is_some();
        let manifest = aof::manifest_file(&st.config);
        // Without an AOF manifest yet, an existing dump seeds the new AOF's base.
        if path.exists() && !restored_dump && !(st.config.appendonly && manifest.exists()) {
            load_dump(&mut st, &path)?;
        }
        if st.config.appendonly {
            st.open_aof()?;
        }
        if st.ship.loaded.is_none() {
            let files = local_files(&st.config);
            st.ship.loaded = Some(ship::LoadReport {
                source: "local disk".into(),
                files: files.len() as u64,
                bytes: files.iter().map(|(_, b)| b).sum(),
                download_us: 0,
                load_us: started.elapsed().as_micros() as u64,
            });
        }
        Ok(st)
    })
    .await?
}

/// The data files a start reads from the local disk: the AOF directory's, else the dump.
fn local_files(config: &NodeConfig) -> Vec<(std::path::PathBuf, u64)> {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    if config.appendonly {
        let dir = aof::dir(config);
        return std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .map(|p| {
                let n = size(&p);
                (p, n)
            })
            .collect();
    }
    let dump = persist::dump_path(config);
    match dump.exists() {
        true => vec![(dump.clone(), size(&dump))],
        false => Vec::new(),
    }
}

fn load_dump(st: &mut state::State, path: &std::path::Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let summary = persist::load_rdb(path, &mut st.ks, unix_time_ms())?;
    record_load(st, summary, started, "from disk");
    Ok(())
}

/// Loads a snapshot of `bytes` bytes from `reader` into the (empty) keyspace.
fn load_stream(
    st: &mut state::State,
    reader: impl std::io::BufRead + Send,
    bytes: u64,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let summary = persist::load_rdb_sized(reader, bytes, &mut st.ks, unix_time_ms())?;
    record_load(st, summary, started, "from the storage account");
    Ok(())
}

/// Keeps a load's counts for INFO and logs them; `from` says where the data came from.
fn record_load(
    st: &mut state::State,
    summary: persist::LoadSummary,
    started: std::time::Instant,
    from: &str,
) {
    st.rdb.last_load_keys_loaded = summary.keys_loaded;
    st.rdb.last_load_keys_expired = summary.keys_expired;
    tracing::info!(
        keys = summary.keys_loaded,
        expired = summary.keys_expired,
        bytes = summary.bytes,
        ms = started.elapsed().as_millis() as u64,
        "DB loaded {from}"
    );
}

/// Runs a node until SHUTDOWN or `stop` resolves.
pub async fn run(
    config: NodeConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let handle = start(config).await?;
    let shared = handle.shared.clone();
    tokio::select! {
        _ = stop => { handle.stop().await; }
        _ = async { let mut rx = shared.shutdown.subscribe(); let _ = rx.wait_for(|v| *v).await; } => { handle.wait().await; }
    }
    tracing::info!("node stopped");
    Ok(())
}

// Both clocks are read with integer arithmetic only: the node reads them for every batch
// and command, and `Duration`'s checked, 128-bit conversions cost more than the read.
// Through libc, whose vDSO call profilers such as valgrind understand (rustix's own vDSO
// parser crashes under valgrind).
pub(crate) fn unix_time_us() -> u64 {
    clock_us(libc::CLOCK_REALTIME)
}

/// Microseconds on the monotonic clock, from an arbitrary start: command durations.
pub(crate) fn monotonic_us() -> u64 {
    clock_us(libc::CLOCK_MONOTONIC)
}

fn clock_us(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; both clocks exist on every Linux.
    #[allow(unsafe_code)]
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return 0;
    }
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000
}

pub(crate) fn unix_time_ms() -> u64 {
    unix_time_us() / 1000
}

/// A random 40-hex-digit id for this process, as Redis reports `run_id`.
pub(crate) fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        (0..40)
            .filter_map(|_| char::from_digit(fastrand::u32(..16), 16))
            .collect()
    })
}

/// User and system CPU seconds of this process, from /proc (zero where unavailable).
pub(crate) fn cpu_times() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0.0, 0.0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}
