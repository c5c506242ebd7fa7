//! Persistence into storage accounts: RDB snapshots streamed into the RDB account on
//! schedule and on demand, AOF segments shipped to the primary account and mirrored to the
//! secondary, each account holding a Redis 7 manifest of its own; and the restore at start
//! from the newest complete state there.
//!
//! Store layout under the node's prefix:
//! - `rdb/<unix ms>.rdb`: complete, size-verified snapshots (multipart uploads only become
//!   visible whole); the newest is the latest. At most `rdb-backup-max-snapshot-count`.
//! - `aof/appendonly.aof.manifest` naming `aof/appendonly.aof.<g>.base.rdb` and segments
//!   `aof/appendonly.aof.<n>.incr.aof`: a directory redis-server itself can start from.
//! - `aof/tail/...`: the log past the manifest's last segment, one object per commit (see
//!   [`crate::tail`]), folded into the next segment once the chain is megabytes long.
//!
//! The secondary account holds the same under `secondary/` (it may be the same account).
//!
//! The local AOF is the spool: a commit is read from the local incr file when it is cut,
//! so an account that is down only delays its cursor. What is held in memory is the
//! chains not yet folded (at most about a segment each), so that a fold needs no reread.
//!
//! This module works on [`Shipping`], the log's hooks and the settings, not on the node:
//! the shippers and the backup uploads are workers that keep their status in shared
//! records of their own, and stop on the node's cancellation token.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blob::{BlobEvent, Store};
use bytes::Bytes;
use formats::aof::{self as aoff, AofFile, FileKind, Manifest};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::aof::{AofLog, BaseReady, Progress, ShipHooks};
use crate::config::{Durability, NodeConfig};
use crate::persist::{self, Job, Piece, RdbState};
use crate::tail;
use crate::workers::Workers;
use keyspace::Keyspace;

/// Where under the node's prefix the secondary AOF account keeps its files.
pub const SECONDARY_PREFIX: &str = "secondary";
/// Largest AOF segment object.
pub const SEGMENT_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// A segment is cut at least this often while bytes are pending (`aof-durability local`).
pub const SEGMENT_ROLL_INTERVAL: Duration = Duration::from_secs(1);
/// Backoff between attempts on a failing account: doubling from the first to the cap.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);
/// Events kept for INFO and for the control plane's accounting.
pub const EVENTS_KEPT_MAX: usize = 100_000;
/// Snapshot bytes queued between the saver thread and the upload.
const SNAPSHOT_CHUNKS_QUEUED_MAX: usize = 8;

/// The object-store events of this node, kept for INFO and for whoever accounts for them.
#[derive(Default)]
pub struct EventLog {
    pub recent: VecDeque<BlobEvent>,
    pub total: u64,
}

/// How one account is doing.
#[derive(Debug, Clone, Default)]
pub struct TargetStatus {
    pub account: String,
    pub ok: bool,
    pub last_error: Option<String>,
    /// Logical log offset shipped so far.
    pub shipped: u64,
    pub segments: u64,
    pub bases: u64,
}

/// Where a node's data came from at start, and what it took: a fault drill's "restored
/// from".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// "local disk", or the account restored from.
    pub source: String,
    /// Files read (downloaded, from an account).
    pub files: u64,
    pub bytes: u64,
    /// Microseconds downloading from the account (0 from the local disk). A snapshot
    /// loads while it downloads: this is until its last byte arrived.
    pub download_us: u64,
    /// Microseconds loading or replaying into memory; for a snapshot, what the load took
    /// after its last byte arrived.
    pub load_us: u64,
}

/// Blob persistence state kept in the node's state.
#[derive(Default)]
pub struct Shipping {
    pub events: Arc<Mutex<EventLog>>,
    pub rdb: Option<RdbBackups>,
    pub aof_targets: Vec<Arc<Mutex<TargetStatus>>>,
    /// What the start restored, for INFO and the logs.
    pub restored: Option<String>,
    /// Where the start's data came from and what loading it took.
    pub loaded: Option<LoadReport>,
    /// Set when the node stops: shippers cut what is pending at once.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The primary account lags more than `aof-spool-max-bytes`: writes are refused.
    pub spool_full: bool,
    /// Where the shippers and backup uploads run.
    pub workers: Arc<Workers>,
}

/// The cron's check of the spool bound: refuses writes while the primary account lags
/// more than `aof-spool-max-bytes` behind the log, and accepts them again once it caught
/// up to half of that.
pub fn check_spool(ship: &mut Shipping, log: Option<&AofLog>, config: &NodeConfig) {
    let Some(primary) = ship.aof_targets.first() else {
        return;
    };
    let appended = log.map_or(0, |a| a.appended);
    let backlog = appended.saturating_sub(primary.lock().expect("status lock").shipped);
    let max = config.storage.spool_max_bytes;
    if !ship.spool_full && backlog > max {
        ship.spool_full = true;
        tracing::error!(
            backlog,
            max,
            "the primary storage account is too far behind: refusing writes until it catches up"
        );
    } else if ship.spool_full && backlog <= max / 2 {
        ship.spool_full = false;
        tracing::info!(
            backlog,
            "the primary storage account caught up: accepting writes again"
        );
    }
}

/// Longest a stopping node waits for its AOF accounts to catch up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// On a graceful stop: lets every AOF account catch up with the log, within
/// [`DRAIN_TIMEOUT`]; returns (and logs) what is left behind: per account, the bytes of
/// the log it does not hold.
pub async fn drain(targets: Vec<Arc<Mutex<TargetStatus>>>, appended: u64) -> Vec<(String, u64)> {
    if targets.is_empty() {
        return Vec::new();
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let behind: Vec<(String, u64)> = targets
            .iter()
            .map(|t| t.lock().expect("status lock"))
            .filter(|t| t.shipped < appended)
            .map(|t| (t.account.clone(), appended - t.shipped))
            .collect();
        if behind.is_empty() {
            return behind;
        }
        if Instant::now() >= deadline {
            for (account, bytes) in &behind {
                tracing::warn!(
                    account,
                    bytes,
                    "stopping with AOF bytes not yet in the storage account (they stay in the local AOF)"
                );
            }
            return behind;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct RdbBackups {
    store: Store,
    every: Duration,
    keep: usize,
    /// Kept by the backups' uploads as they end.
    pub status: Arc<Mutex<BackupStatus>>,
}

impl RdbBackups {
    /// The RDB account's display name.
    pub fn account(&self) -> &str {
        self.store.account()
    }
}

/// How the RDB backups are doing.
#[derive(Debug, Clone)]
pub struct BackupStatus {
    /// When the last backup ended (or the node started): the next interval starts here.
    last_end: Instant,
    running: bool,
    pub ok_total: u64,
    pub last_ok: Option<bool>,
    pub last_key: Option<String>,
}

fn event_sink(log: &Arc<Mutex<EventLog>>) -> blob::EventSink {
    let log = log.clone();
    Arc::new(move |e: BlobEvent| {
        tracing::debug!(account = %e.account, key = %e.key, bytes = e.bytes, kind = ?e.kind, "blob event");
        let mut l = log.lock().expect("event log lock");
        l.total += 1;
        if l.recent.len() == EVENTS_KEPT_MAX {
            l.recent.pop_front();
        }
        l.recent.push_back(e);
    })
}

impl Shipping {
    /// Opens the configured accounts (nothing is contacted yet).
    pub fn new(config: &NodeConfig, workers: Arc<Workers>) -> anyhow::Result<Shipping> {
        let s = &config.storage;
        let mut ship = Shipping {
            workers,
            ..Shipping::default()
        };
        if s.rdb_backup_enabled
            && let Some(account) = &s.rdb_account
        {
            let store =
                Store::open(account, &s.prefix, event_sink(&ship.events))?.with_faults(&s.faults);
            let every =
                Duration::from_secs(s.rdb_backup_frequency_min * 60) / s.time_scale.max(1) as u32;
            ship.rdb = Some(RdbBackups {
                store,
                every,
                keep: s.rdb_backup_max_snapshot_count.max(1) as usize,
                status: Arc::new(Mutex::new(BackupStatus {
                    last_end: Instant::now(),
                    running: false,
                    ok_total: 0,
                    last_ok: None,
                    last_key: None,
                })),
            });
        }
        Ok(ship)
    }

    /// The AOF accounts, primary first. The secondary keeps its files under a prefix of
    /// its own: the two may be the same account (one local Azurite), and two shippers
    /// sharing a manifest would delete each other's files.
    pub fn stores_for_aof(&self, config: &NodeConfig) -> anyhow::Result<Vec<Store>> {
        let s = &config.storage;
        s.aof_accounts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, a.as_ref()?)))
            .map(|(i, a)| {
                let prefix = match i {
                    0 => s.prefix.clone(),
                    _ => format!("{}/{SECONDARY_PREFIX}", s.prefix),
                };
                Store::open(a, &prefix, event_sink(&self.events))
                    .map(|st| st.with_faults(&s.faults))
                    .map_err(Into::into)
            })
            .collect()
    }
}

fn backoff(attempt: u32) -> Duration {
    (RETRY_FIRST * 2u32.saturating_pow(attempt.min(16))).min(RETRY_CAP)
}

// ---------------------------------------------------------------------------------------
// RDB snapshots

/// The cron's check of the backup schedule: the next interval starts when the previous
/// backup ended, as in Azure.
pub fn cron(ship: &mut Shipping, ks: &mut Keyspace, rdb: &mut RdbState, config: &NodeConfig) {
    let due = ship.rdb.as_ref().is_some_and(|r| {
        let s = r.status.lock().expect("backup status lock");
        !s.running && s.last_end.elapsed() >= r.every
    });
    if due
        && rdb.job.is_none()
        && let Err(e) = backup_now(ship, ks, rdb, config)
    {
        tracing::warn!(error = %e, "could not start the scheduled RDB backup");
    }
}

/// Events as text lines of tab-separated `unix-ms kind bytes account key` (kind: write,
/// overwrite, delete; the key last), for CACHEPLANE EVENTS.
pub fn events_to_lines(events: &[blob::BlobEvent]) -> String {
    events
        .iter()
        .map(|e| {
            let kind = match e.kind {
                blob::EventKind::Write => "write",
                blob::EventKind::Overwrite => "overwrite",
                blob::EventKind::Delete => "delete",
            };
            format!(
                "{}\t{kind}\t{}\t{}\t{}\n",
                e.at_unix_ms, e.bytes, e.account, e.key
            )
        })
        .collect()
}

/// The inverse of [`events_to_lines`]; malformed lines are skipped.
pub fn events_from_lines(text: &str) -> Vec<blob::BlobEvent> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(5, '\t');
            let at_unix_ms = parts.next()?.parse().ok()?;
            let kind = match parts.next()? {
                "write" => blob::EventKind::Write,
                "overwrite" => blob::EventKind::Overwrite,
                "delete" => blob::EventKind::Delete,
                _ => return None,
            };
            let bytes = parts.next()?.parse().ok()?;
            let account = parts.next()?.to_string();
            let key = parts.next()?.to_string();
            Some(blob::BlobEvent {
                account,
                key,
                bytes,
                kind,
                at_unix_ms,
            })
        })
        .collect()
}

/// The time (ms since the epoch) a snapshot's data was taken, from its key.
pub fn snapshot_time_ms(key: &str) -> Option<u64> {
    key.strip_prefix("rdb/")?.strip_suffix(".rdb")?.parse().ok()
}

/// Starts a snapshot streamed into the RDB account; returns the key it will have.
pub fn backup_now(
    ship: &mut Shipping,
    ks: &mut Keyspace,
    snapshots: &mut RdbState,
    config: &NodeConfig,
) -> anyhow::Result<String> {
    let Some(backups) = ship.rdb.as_ref() else {
        anyhow::bail!(
            "no RDB storage account is configured (rdb-backup-enabled, rdb-storage-connection-string)"
        );
    };
    if backups.status.lock().expect("backup status lock").running {
        anyhow::bail!("an RDB backup is already running");
    }
    let store = backups.store.clone();
    let keep = backups.keep;
    let status = backups.status.clone();
    let key = format!("rdb/{:013}.rdb", crate::unix_time_ms());
    let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_CHUNKS_QUEUED_MAX);
    persist::begin_background(ks, snapshots, config, Job::Blob(tx))?;
    status.lock().expect("backup status lock").running = true;
    let k = key.clone();
    ship.workers.spawn("rdb-backup", async move {
        let result = upload_snapshot(&store, &k, rx, keep).await;
        let mut rdb = status.lock().expect("backup status lock");
        rdb.running = false;
        rdb.last_end = Instant::now();
        rdb.last_ok = Some(result.is_ok());
        match result {
            Ok(bytes) => {
                rdb.ok_total += 1;
                rdb.last_key = Some(k.clone());
                tracing::info!(account = store.account(), key = %k, bytes, "RDB snapshot stored");
            }
            Err(e) => {
                tracing::error!(account = store.account(), key = %k, error = %e, "RDB snapshot upload failed")
            }
        }
    });
    tracing::info!(key = %key, "RDB backup to the storage account started");
    Ok(key)
}

/// Uploads a snapshot to `key` as it is serialized, calling `progress` after each piece;
/// returns the bytes stored. A snapshot abandoned half-way is never visible.
pub(crate) async fn stream_snapshot(
    store: &Store,
    key: &str,
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
    mut progress: impl FnMut(),
) -> anyhow::Result<u64> {
    let mut up = store.upload(key).await?;
    loop {
        match rx.recv().await {
            Some(Piece::Data(b)) => up.put(Bytes::from(b)).await?,
            Some(Piece::End) => break,
            // The saver gave up: the partial upload is aborted, never visible.
            None => {
                up.abort().await;
                anyhow::bail!("the snapshot was abandoned before it was complete");
            }
        }
        progress();
    }
    Ok(up.finish().await?)
}

/// Uploads the snapshot as it is serialized; on success deletes snapshots beyond `keep`.
async fn upload_snapshot(
    store: &Store,
    key: &str,
    rx: tokio::sync::mpsc::Receiver<Piece>,
    keep: usize,
) -> anyhow::Result<u64> {
    let bytes = stream_snapshot(store, key, rx, || {}).await?;
    let mut snapshots: Vec<(String, u64)> = store
        .list("rdb")
        .await?
        .into_iter()
        .filter(|(k, _)| k.ends_with(".rdb"))
        .collect();
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(keep);
    for (old, size) in snapshots.into_iter().take(excess) {
        if old != key {
            store.delete(&old, size).await?;
        }
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------
// AOF shipping

/// Starts one shipper task per AOF account; returns the hooks for the flusher.
pub fn start_aof(ship: &mut Shipping, config: &NodeConfig) -> anyhow::Result<Option<ShipHooks>> {
    let stores = ship.stores_for_aof(config)?;
    if stores.is_empty() {
        return Ok(None);
    }
    let hooks = ShipHooks {
        progress: watch::channel(Progress::default()).0,
        bases: watch::channel(None).0,
        shipped: Arc::new(watch::channel(0).0),
    };
    let store_durability = config.storage.aof_durability == Durability::Store;
    for (i, store) in stores.into_iter().enumerate() {
        let status = Arc::new(Mutex::new(TargetStatus {
            account: store.account().to_string(),
            ok: true,
            ..Default::default()
        }));
        ship.aof_targets.push(status.clone());
        let target = Target {
            catalog: Some(Catalog {
                store: store.clone(),
                base_seq: 0,
                base_sum: (0, 0),
                segs: Vec::new(),
                manifest_version: None,
                sums_bytes: 0,
                committed_sums: String::new(),
            }),
            store,
            status,
            progress: hooks.progress.subscribe(),
            bases: hooks.bases.subscribe(),
            shipped: (i == 0).then(|| hooks.shipped.clone()),
            cut_eagerly: i == 0 && store_durability,
            draining: ship.draining.clone(),
            cancel: ship.workers.token(),
            base: None,
            next_seq: 1,
            last: tail::After::Base(0),
            open: None,
            sealed: VecDeque::new(),
            cursor: None,
            in_flight: FuturesOrdered::new(),
            wave: None,
            folding: None,
            retry: Retry::default(),
            pending_since: None,
        };
        let name = format!("aof-shipper {}", target.store.account());
        ship.workers.spawn(name, target.run());
    }
    Ok(Some(hooks))
}

/// Commits (tail objects) one account's shipper has in flight at once. Replies wait for
/// theirs under `aof-durability store`, so more in flight means more clients served per
/// store round trip; past this, the next commit waits and grows.
pub const COMMITS_IN_FLIGHT_MAX: usize = 8;
/// The least a commit carries to go up while another is in flight.
pub const COMMIT_ALONGSIDE_MIN_BYTES: u64 = 256 * 1024;
/// The longest a commit waits, after the one before it landed, for the writes of the
/// clients that one just answered (and never more than half its round trip).
pub const COMMIT_LINGER_MAX: Duration = Duration::from_millis(2);
/// A chain of tail objects is folded into one segment at this many objects (or at
/// [`SEGMENT_MAX_BYTES`]): the account holds few objects per megabyte of log.
pub const TAIL_OBJECTS_MAX: usize = 512;
/// Folded tail objects deleted per request, one request at a time: on the emulators, which
/// answer one request at a time, a commit that comes while one runs waits for it. Alone,
/// Azurite takes 2.8 ms per object in requests of 8 and 1.1 ms in requests of 64; but
/// among the commits of 50 unpipelined clients, requests of 64 cut the SETs per second
/// from 7-8k to 5k. They are deleted right after their fold: Azurite slows down as its
/// container holds more objects (a PUT from Python 30 % longer with 6,000 more), and a
/// trial that kept them for a pause in the writes showed no steady gain (see #17's notes).
const TAIL_DELETES_PER_REQUEST: usize = 8;
/// Tail objects a restore downloads at once.
const TAIL_DOWNLOADS_IN_FLIGHT_MAX: usize = 16;

/// A segment named in the manifest: its store name, the local file it came from, its size
/// and CRC-64.
struct Seg {
    name: String,
    seq: u64,
    file: PathBuf,
    size: u64,
    crc: u64,
}

/// A chain of tail objects being shipped: the incr file `seq` will be once folded.
struct Chain {
    seq: u64,
    after: tail::After,
    /// The local incr file its bytes come from (a chain never spans two).
    file: PathBuf,
    /// Every byte of its objects, uploaded or in flight (at most about
    /// [`SEGMENT_MAX_BYTES`]): the fold uploads them as the segment.
    bytes: Vec<u8>,
    /// Its objects' keys and sizes, deleted once the segment is named.
    objects: Vec<(String, u64)>,
}

impl Chain {
    fn full(&self) -> bool {
        self.bytes.len() as u64 >= SEGMENT_MAX_BYTES || self.objects.len() >= TAIL_OBJECTS_MAX
    }

    fn ends(&self) -> tail::After {
        tail::After::Incr {
            seq: self.seq,
            len: self.bytes.len() as u64,
        }
    }
}

/// What one account's manifest names, and the writes that change it. Owned by the fold
/// under way, so commits go on while a fold waits for the store.
struct Catalog {
    store: Store,
    /// The base the manifest starts from: its store name's sequence, size and CRC-64.
    base_seq: u64,
    base_sum: (u64, u64),
    /// Segments named after the base, in order.
    segs: Vec<Seg>,
    /// Version and size of the manifest this shipper last wrote.
    manifest_version: Option<(blob::Version, u64)>,
    /// Size of the checksum list last written.
    sums_bytes: u64,
    /// Checksum lines of the files the store's manifest names now. Every list written
    /// keeps them until a new manifest has replaced that one: a crash between the list
    /// and the manifest must not leave the manifest naming a file without a checksum.
    committed_sums: String,
}

/// A fold under way: the catalog and the chain come back with its result.
type Fold = BoxFuture<'static, (Box<Catalog>, Chain, anyhow::Result<()>)>;

/// A commit that landed.
struct Landed {
    /// The logical offset it made durable.
    logical: Option<u64>,
    bytes: u64,
    round_trip: Duration,
}

/// Under `aof-durability store`, the clients a landed commit answered send their next
/// writes at once; a commit started before they arrive carries the others' writes only,
/// and the clients fall into two groups that each wait for two round trips per write
/// (the store's requests per second, not its bytes, bound this mode). So the next commit
/// waits until about as many bytes as the last one carried are pending, or until `until`.
struct Wave {
    bytes: u64,
    until: Instant,
}

impl Wave {
    /// After a commit of `bytes` that took `round_trip`, landed `now`.
    fn after(bytes: u64, round_trip: Duration, now: Instant) -> Wave {
        Wave {
            bytes,
            until: now + (round_trip / 2).min(COMMIT_LINGER_MAX),
        }
    }

    /// Whether a commit of `pending` bytes may start `now`.
    fn back(&self, pending: u64, now: Instant) -> bool {
        pending >= self.bytes || self.ended(now)
    }

    /// Whether the wait is over whatever is pending.
    fn ended(&self, now: Instant) -> bool {
        now >= self.until
    }
}

/// Why a shipper's wait ended.
enum Woke {
    /// The oldest commit in flight landed.
    Committed(Landed),
    Folded(Box<Catalog>, Chain, anyhow::Result<()>),
    /// Something may be ready: look again.
    Look,
}

/// When a failed piece of work (a fold, a base switch) may be tried again.
#[derive(Default)]
struct Retry {
    attempt: u32,
    at: Option<Instant>,
}

impl Retry {
    fn due(&self) -> bool {
        self.at.is_none_or(|at| Instant::now() >= at)
    }

    fn failed(&mut self) {
        self.at = Some(Instant::now() + backoff(self.attempt));
        self.attempt += 1;
    }

    fn succeeded(&mut self) {
        *self = Retry::default();
    }
}

/// One account's shipper. Each commit (what the flusher wrote since the last one) goes
/// up as one tail object, several in flight, acknowledged in order; chains of them are
/// folded into segments that the manifest names (see [`tail`]).
struct Target {
    store: Store,
    status: Arc<Mutex<TargetStatus>>,
    progress: watch::Receiver<Progress>,
    bases: watch::Receiver<Option<BaseReady>>,
    shipped: Option<Arc<watch::Sender<u64>>>,
    /// Commit as soon as bytes are pending (replies wait for it).
    cut_eagerly: bool,
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Cancelled when the node has stopped: the shipper ends.
    cancel: tokio_util::sync::CancellationToken,
    /// None while a fold owns it.
    catalog: Option<Catalog>,
    /// The local base the account's manifest starts from.
    base: Option<BaseReady>,
    /// Sequence of the next chain (every incr file in the account has a new one).
    next_seq: u64,
    /// What the next chain continues.
    last: tail::After,
    open: Option<Chain>,
    /// Chains complete, waiting to be folded, in order.
    sealed: VecDeque<Chain>,
    /// Next local byte to ship: (incr file, offset).
    cursor: Option<(PathBuf, u64)>,
    /// Commits uploading, in log order.
    in_flight: FuturesOrdered<BoxFuture<'static, Landed>>,
    /// The clients the last commit answered, whose next writes the next commit waits for.
    wave: Option<Wave>,
    folding: Option<Fold>,
    retry: Retry,
    pending_since: Option<Instant>,
}

const MANIFEST_KEY: &str = "aof/appendonly.aof.manifest";
/// `<name> <bytes> <crc64 hex>` per file the manifest names: what a restore verifies.
const CHECKSUMS_KEY: &str = "aof/appendonly.aof.checksums";

impl Target {
    async fn run(mut self) {
        let cancel = self.cancel.clone();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let newest = self.bases.borrow_and_update().clone();
            let switch_due = newest.is_some() && newest != self.base;
            if switch_due {
                // A new base: once nothing is in flight, since its manifest replaces all.
                if self.in_flight.is_empty() && self.folding.is_none() && self.retry.due() {
                    let base = newest.expect("checked");
                    match self.switch_base(base).await {
                        Ok(()) => {
                            self.retry.succeeded();
                            self.mark_ok();
                        }
                        Err(e) => {
                            self.retry.failed();
                            self.fail(&e);
                        }
                    }
                    continue;
                }
            } else if self.base.is_some() {
                if let Err(e) = self.start_commits().await {
                    self.fail(&e);
                }
                self.start_fold();
            }
            // Wait for something to do. Flushes wake this loop only when a commit could
            // start on them: a base is named, no switch waits, there is room in flight, and
            // pending bytes are not merely waiting for their roll time (then the timer
            // wakes it: waking on every flush would cost the node CPU).
            let room = self.in_flight.len() < COMMITS_IN_FLIGHT_MAX;
            let watch_progress = room
                && !switch_due
                && self.base.is_some()
                && (self.cut_eagerly || self.pending_since.is_none());
            // A wave past its bound holds nothing back; kept, its deadline would wake
            // this loop again at once.
            self.wave.take_if(|w| w.ended(Instant::now()));
            let wake = [
                self.pending_since
                    .filter(|_| room)
                    .map(|t| t + SEGMENT_ROLL_INTERVAL),
                self.retry.at,
                self.wave.as_ref().map(|w| w.until),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let folding = &mut self.folding;
            let woke = tokio::select! {
                Some(landed) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    Woke::Committed(landed)
                }
                (catalog, chain, result) = async { folding.as_mut().expect("guarded").await },
                    if folding.is_some() => Woke::Folded(catalog, chain, result),
                _ = self.progress.changed(), if watch_progress => Woke::Look,
                _ = self.bases.changed() => Woke::Look,
                _ = tokio::time::sleep_until(wake.into()) => Woke::Look,
                _ = cancel.cancelled() => return,
            };
            match woke {
                Woke::Committed(landed) => {
                    self.publish(landed.logical);
                    if self.cut_eagerly && self.in_flight.is_empty() {
                        self.wave =
                            Some(Wave::after(landed.bytes, landed.round_trip, Instant::now()));
                    }
                }
                Woke::Folded(catalog, chain, result) => {
                    self.folding = None;
                    self.catalog = Some(*catalog);
                    match result {
                        Ok(()) => self.retry.succeeded(),
                        Err(e) => {
                            self.sealed.push_front(chain);
                            self.retry.failed();
                            self.fail(&e);
                        }
                    }
                }
                Woke::Look => {}
            }
        }
    }

    /// Starts uploading what the flusher wrote past the cursor, as many commits as there
    /// is room for.
    async fn start_commits(&mut self) -> anyhow::Result<()> {
        while self.in_flight.len() < COMMITS_IN_FLIGHT_MAX {
            let p = self.progress.borrow_and_update().clone();
            let Some((file, offset)) = self.cursor.clone() else {
                return Ok(());
            };
            // The flusher's file may be older than the cursor's (a rewrite switched files
            // and the flusher has not written since): then wait for it to catch up.
            if incr_seq(&p.file) < incr_seq(&file) {
                return Ok(());
            }
            let (end, logical_at_end) = if file == p.file {
                (p.len, Some(p.logical))
            } else {
                // The flusher moved on to a newer incr file: this one is complete.
                match tokio::fs::metadata(&file).await {
                    Ok(m) => (m.len(), None),
                    // Removed by a finished rewrite: the next base covers it.
                    Err(_) => return Ok(()),
                }
            };
            if offset >= end {
                if file != p.file && !p.file.as_os_str().is_empty() {
                    // A chain never spans two local files.
                    self.seal();
                    self.cursor = Some((p.file.clone(), 0));
                    continue;
                }
                self.pending_since = None;
                if self.in_flight.is_empty() {
                    self.publish(logical_at_end);
                }
                return Ok(());
            }
            let since = *self.pending_since.get_or_insert_with(Instant::now);
            let draining = self.draining.load(std::sync::atomic::Ordering::SeqCst);
            let ready = self.cut_eagerly
                || draining
                || end - offset >= SEGMENT_MAX_BYTES
                || since.elapsed() >= SEGMENT_ROLL_INTERVAL
                || file != p.file;
            // Another commit while one is in flight only when it is big: small ones wait and
            // join the next, since a store busy with many small requests answers each later.
            let alone = self.in_flight.is_empty() || end - offset >= COMMIT_ALONGSIDE_MIN_BYTES;
            let wave_back = self
                .wave
                .as_ref()
                .is_none_or(|w| w.back(end - offset, Instant::now()))
                || draining;
            if !ready || !alone || !wave_back {
                return Ok(());
            }
            self.wave = None;
            let (to, bytes) = read_segment(&file, offset, end).await?;
            let logical = logical_at_end.map(|l| l - (end - to));
            self.commit(&file, bytes, logical);
            self.cursor = Some((file, to));
            self.pending_since = None;
        }
        Ok(())
    }

    /// Adds `bytes` (whole commands of local `file`) to the open chain as one tail object
    /// and starts its upload, retried until it lands.
    fn commit(&mut self, file: &Path, bytes: Vec<u8>, logical: Option<u64>) {
        if self.open.as_ref().is_some_and(|c| c.file != file) {
            self.seal();
        }
        let chain = self.open.get_or_insert_with(|| {
            let chain = Chain {
                seq: self.next_seq,
                after: self.last,
                file: file.to_path_buf(),
                bytes: Vec::new(),
                objects: Vec::new(),
            };
            self.next_seq += 1;
            chain
        });
        let offset = chain.bytes.len() as u64;
        let key = tail::TailKey {
            seq: chain.seq,
            offset,
            len: bytes.len() as u64,
            crc: formats::crc64(&bytes),
            after: (offset == 0).then_some(chain.after),
        }
        .key();
        chain.bytes.extend_from_slice(&bytes);
        chain.objects.push((key.clone(), bytes.len() as u64));
        if chain.full() {
            self.seal();
        }
        let (store, status, cancel) =
            (self.store.clone(), self.status.clone(), self.cancel.clone());
        let payload = Bytes::from(bytes);
        let started = Instant::now();
        self.in_flight.push_back(Box::pin(async move {
            let landed = |logical| Landed {
                logical,
                bytes: payload.len() as u64,
                round_trip: started.elapsed(),
            };
            let mut attempt = 0;
            loop {
                // The key names the bytes (offset, length, CRC): a retry of an upload that
                // did land writes the same object again.
                match store.put_new(&key, payload.clone()).await {
                    Ok(()) => {
                        status.lock().expect("status lock").segments += 1;
                        ok_status(&status);
                        return landed(logical);
                    }
                    Err(e) => fail_status(&status, &anyhow::Error::from(e)),
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                    _ = cancel.cancelled() => return landed(None),
                }
                attempt += 1;
            }
        }));
    }

    /// Closes the open chain: the next commit starts a new one that continues it.
    fn seal(&mut self) {
        if let Some(chain) = self.open.take() {
            self.last = chain.ends();
            self.sealed.push_back(chain);
        }
    }

    /// Starts folding the oldest sealed chain into a segment, when none is under way.
    fn start_fold(&mut self) {
        if self.folding.is_some() || !self.retry.due() || self.sealed.is_empty() {
            return;
        }
        let Some(mut catalog) = self.catalog.take().map(Box::new) else {
            return;
        };
        let chain = self.sealed.pop_front().expect("checked");
        self.folding = Some(Box::pin(async move {
            let result = catalog.fold(&chain).await;
            (catalog, chain, result)
        }));
    }

    fn publish(&self, logical: Option<u64>) {
        let Some(l) = logical else { return };
        {
            let mut s = self.status.lock().expect("status lock");
            s.shipped = s.shipped.max(l);
        }
        if let Some(s) = &self.shipped {
            s.send_if_modified(|cur| {
                let grew = l > *cur;
                if grew {
                    *cur = l;
                }
                grew
            });
        }
    }

    fn mark_ok(&self) {
        ok_status(&self.status);
    }

    fn fail(&self, e: &anyhow::Error) {
        fail_status(&self.status, e);
    }

    /// Uploads a new base and names it, with the chains of its incr file already shipped
    /// folded into segments; deletes what the account's manifest no longer names.
    /// Nothing is in flight.
    async fn switch_base(&mut self, base: BaseReady) -> anyhow::Result<()> {
        let catalog = self.catalog.as_mut().expect("no fold under way");
        if catalog.base_seq == 0 {
            let next = catalog.adopt_existing().await?;
            self.next_seq = self.next_seq.max(next);
        }
        catalog.upload_base(&base.base).await?;
        let in_new_file = matches!(&self.cursor, Some((f, _)) if *f == base.incr);
        if in_new_file {
            self.seal();
        }
        let catalog = self.catalog.as_mut().expect("no fold under way");
        if in_new_file {
            // What was shipped of the new incr file stays named: its chains become segments.
            for chain in self.sealed.iter().filter(|c| c.file == base.incr) {
                catalog.upload_segment(chain).await?;
            }
            catalog.segs.retain(|s| s.file == base.incr);
        } else {
            // Behind (or starting): the incr file after the base is shipped from its start.
            catalog.segs.clear();
            self.cursor = Some((base.incr.clone(), 0));
        }
        self.sealed.clear();
        self.open = None;
        // Until the manifest names the base, the switch is still due (and retried): the
        // next chain must continue what the account's manifest names last.
        catalog.write_manifest().await?;
        self.base = Some(base);
        self.last = match catalog.segs.last() {
            Some(s) => tail::After::Incr {
                seq: s.seq,
                len: s.size,
            },
            None => tail::After::Base(catalog.base_seq),
        };
        self.status.lock().expect("status lock").bases += 1;
        if let Err(e) = catalog.delete_unnamed().await {
            tracing::warn!(account = self.store.account(), error = %e, "could not delete what the AOF manifest no longer names; the next base switch tries again");
        }
        Ok(())
    }
}

fn ok_status(status: &Mutex<TargetStatus>) {
    let mut s = status.lock().expect("status lock");
    if !s.ok {
        tracing::info!(account = %s.account, "AOF shipping recovered");
    }
    s.ok = true;
    s.last_error = None;
}

fn fail_status(status: &Mutex<TargetStatus>, e: &anyhow::Error) {
    let mut s = status.lock().expect("status lock");
    if s.ok {
        tracing::warn!(account = %s.account, error = %e, "AOF shipping failing; retrying with backoff");
    }
    s.ok = false;
    s.last_error = Some(e.to_string());
}

impl Catalog {
    /// Uploads `chain` as its segment, names it in the manifest, then deletes its tail
    /// objects.
    async fn fold(&mut self, chain: &Chain) -> anyhow::Result<()> {
        self.upload_segment(chain).await?;
        if let Err(e) = self.write_manifest().await {
            self.segs.pop();
            return Err(e);
        }
        // Left over, they are only garbage: the next base switch deletes them.
        for chunk in chain.objects.chunks(TAIL_DELETES_PER_REQUEST) {
            if let Err(e) = self.store.delete_many(chunk).await {
                tracing::warn!(account = self.store.account(), error = %e, "could not delete folded AOF tail objects");
                break;
            }
        }
        Ok(())
    }

    /// Uploads `chain` as a segment and adds it to the segments the next manifest names.
    async fn upload_segment(&mut self, chain: &Chain) -> anyhow::Result<()> {
        let name = aoff::incr_name("appendonly.aof", chain.seq);
        self.store
            .put_new(&format!("aof/{name}"), Bytes::copy_from_slice(&chain.bytes))
            .await?;
        self.segs.push(Seg {
            name,
            seq: chain.seq,
            file: chain.file.clone(),
            size: chain.bytes.len() as u64,
            crc: formats::crc64(&chain.bytes),
        });
        Ok(())
    }

    /// Streams the local base `path` up under the next base name.
    async fn upload_base(&mut self, path: &Path) -> anyhow::Result<()> {
        let seq = self.base_seq + 1;
        let name = aoff::base_name("appendonly.aof", seq, true);
        let mut up = self.store.upload(&format!("aof/{name}")).await?;
        let mut f = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut crc = formats::Crc64::default();
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            up.write(&buf[..n]).await?;
        }
        let size = up.finish().await?;
        self.base_sum = (size, crc.value());
        self.base_seq = seq;
        Ok(())
    }

    /// Reads what the account holds from an earlier run, so new names never collide and
    /// the manifest is replaced with a conditional write; returns the first free chain
    /// sequence.
    async fn adopt_existing(&mut self) -> anyhow::Result<u64> {
        if let Some((bytes, version)) = self.store.get(MANIFEST_KEY).await? {
            self.manifest_version = Some((version, bytes.len() as u64));
        }
        if let Some((bytes, _)) = self.store.get(CHECKSUMS_KEY).await? {
            self.sums_bytes = bytes.len() as u64;
            self.committed_sums = String::from_utf8_lossy(&bytes).into_owned();
        }
        let mut next_seq = 1;
        for (key, _) in self.store.list("aof").await? {
            if let Some(t) = tail::TailKey::parse(&key) {
                next_seq = next_seq.max(t.seq + 1);
                continue;
            }
            let name = key.trim_start_matches("aof/");
            if let Some(seq) = file_seq(name) {
                if name.contains(".base.") {
                    self.base_seq = self.base_seq.max(seq);
                } else {
                    next_seq = next_seq.max(seq + 1);
                }
            }
        }
        Ok(next_seq)
    }

    /// The checksum lines (`<name> <bytes> <crc64 hex>`) of the base and the segments the
    /// next manifest names, and the list to upload before it: those lines and the ones of
    /// the manifest it replaces.
    fn checksums(&self) -> (String, String) {
        let mut sums = format!(
            "{} {} {:016x}\n",
            aoff::base_name("appendonly.aof", self.base_seq, true),
            self.base_sum.0,
            self.base_sum.1
        );
        for s in &self.segs {
            sums.push_str(&format!("{} {} {:016x}\n", s.name, s.size, s.crc));
        }
        let upload = union_of_lines(&sums, &self.committed_sums);
        (sums, upload)
    }

    /// Writes the checksum list, then the manifest (the commit point, naming only files
    /// whose checksums are already stored).
    async fn write_manifest(&mut self) -> anyhow::Result<()> {
        let (sums, upload) = self.checksums();
        let upload_len = upload.len() as u64;
        self.store
            .put_over(CHECKSUMS_KEY, Bytes::from(upload), self.sums_bytes)
            .await?;
        self.sums_bytes = upload_len;
        let m = Manifest {
            base: Some(AofFile {
                name: aoff::base_name("appendonly.aof", self.base_seq, true),
                seq: self.base_seq,
                kind: FileKind::Base,
            }),
            history: Vec::new(),
            incrs: self
                .segs
                .iter()
                .map(|s| AofFile {
                    name: s.name.clone(),
                    seq: s.seq,
                    kind: FileKind::Incr,
                })
                .collect(),
        };
        let text = Bytes::from(m.to_text());
        let len = text.len() as u64;
        let result = self
            .store
            .put_if(MANIFEST_KEY, text.clone(), self.manifest_version.clone())
            .await;
        let version = match result {
            Ok(v) => v,
            // Created by an earlier run after we looked, or changed under us: take the current
            // version once (this node is the only writer of its prefix) and retry.
            Err(blob::BlobError::Conflict { .. }) => {
                let current = self
                    .store
                    .get(MANIFEST_KEY)
                    .await?
                    .map(|(b, v)| (v, b.len() as u64));
                self.store.put_if(MANIFEST_KEY, text, current).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.manifest_version = Some((version, len));
        self.committed_sums = sums;
        Ok(())
    }

    /// Deletes every AOF object the manifest does not name (old bases and segments, the
    /// tail objects), after a base switch.
    async fn delete_unnamed(&mut self) -> anyhow::Result<()> {
        let base = aoff::base_name("appendonly.aof", self.base_seq, true);
        let unnamed: Vec<(String, u64)> = self
            .store
            .list("aof")
            .await?
            .into_iter()
            .filter(|(key, _)| {
                let name = key.trim_start_matches("aof/");
                !(name == base
                    || name == "appendonly.aof.manifest"
                    || name == "appendonly.aof.checksums"
                    || self.segs.iter().any(|s| s.name == name))
            })
            .collect();
        Ok(self.store.delete_many(&unnamed).await?)
    }
}

/// The lines of `first`, then those of `second` that `first` lacks.
fn union_of_lines(first: &str, second: &str) -> String {
    let mut out = first.to_string();
    for line in second.lines().filter(|l| !l.is_empty()) {
        if !first.lines().any(|f| f == line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Size and CRC-64 of a file, read in bounded chunks.
async fn crc_of_file(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut crc) = (0u64, formats::Crc64::default());
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok((len, crc.value()));
        }
        crc.update(&buf[..n]);
        len += n as u64;
    }
}

/// The sequence number in an AOF file's name: `<appendfilename>.<seq>.incr.aof`,
/// `.base.rdb` or `.base.aof`.
fn file_seq(name: &str) -> Option<u64> {
    [".incr.aof", ".base.rdb", ".base.aof"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .and_then(|n| n.rsplit('.').next())
        .and_then(|n| n.parse().ok())
}

/// The sequence number of a local incr file (0 when the path names none).
fn incr_seq(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(file_seq)
        .unwrap_or(0)
}

/// The next segment of `file` from `offset` (a command boundary) up to `end`: at most
/// [`SEGMENT_MAX_BYTES`], cut after a whole command, so that each segment replays on its
/// own as an incr file (Redis's loader, and ours, refuse a command cut in two files); a
/// single command longer than that makes a longer segment. Returns its end and its bytes.
async fn read_segment(file: &Path, offset: u64, end: u64) -> anyhow::Result<(u64, Vec<u8>)> {
    let mut to = end.min(offset + SEGMENT_MAX_BYTES);
    loop {
        let mut bytes = read_range(file, offset, to).await?;
        if to == end {
            // The flusher's length: always after a whole command.
            return Ok((to, bytes));
        }
        let whole = aoff::whole_commands_len(&bytes)?;
        if whole > 0 {
            bytes.truncate(whole as usize);
            return Ok((offset + whole, bytes));
        }
        to = end.min(offset + (to - offset) * 2);
    }
}

async fn read_range(file: &Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(std::io::SeekFrom::Start(from)).await?;
    let mut buf = vec![0u8; (to - from) as usize];
    f.read_exact(&mut buf).await?;
    Ok(buf)
}

// ---------------------------------------------------------------------------------------
// Restore

/// At start, with an empty local directory: rebuilds the local AOF directory (or dump) from
/// the newest complete state in the accounts, primary first. Returns a description of what
/// was restored and what it took, or None when there was nothing to restore or local files
/// exist.
pub fn restore(
    config: &NodeConfig,
    ship: &Shipping,
    try_load: &mut dyn FnMut(Restoring) -> anyhow::Result<()>,
) -> anyhow::Result<Option<(String, LoadReport)>> {
    let rt = tokio::runtime::Handle::current();
    let aof_dir = crate::aof::dir(config);
    let local_manifest = crate::aof::manifest_file(config);
    if config.appendonly && config.storage.aof_accounts[0].is_some() {
        if local_manifest.exists() {
            return Ok(None);
        }
        let stores = ship.stores_for_aof(config)?;
        let mut errors = Vec::new();
        for store in &stores {
            tracing::info!(
                account = store.account(),
                "restoring the append only file from the storage account"
            );
            let started = Instant::now();
            match rt.block_on(download_aof(store, &aof_dir, &config.appendfilename)) {
                Ok(None) => errors.push(format!("{}: no AOF there", store.account())),
                Ok(Some((files, bytes))) => match timed_load(try_load, started) {
                    Ok((download_us, load_us)) => {
                        let report = LoadReport {
                            source: store.account().to_string(),
                            files,
                            bytes,
                            download_us,
                            load_us,
                        };
                        return Ok(Some((format!("aof from {}", store.account()), report)));
                    }
                    Err(e) => {
                        tracing::error!(account = store.account(), error = %e, "the stored AOF does not load; trying the next account");
                        errors.push(format!("{}: {e:#}", store.account()));
                        let _ = std::fs::remove_dir_all(&aof_dir);
                    }
                },
                Err(e) => {
                    tracing::error!(account = store.account(), error = %e, "could not restore from this account");
                    errors.push(format!("{}: {e:#}", store.account()));
                    let _ = std::fs::remove_dir_all(&aof_dir);
                }
            }
        }
        // Nothing stored yet is a first start, not a failure; anything else is refused.
        if errors.iter().all(|e| e.ends_with("no AOF there")) {
            return Ok(None);
        }
        anyhow::bail!("no account holds a loadable AOF: {}", errors.join("; "));
    }
    if let Some(rdb) = &ship.rdb {
        let dump = persist::dump_path(config);
        let listed = rt.block_on(rdb.store.list("rdb"));
        let mut snapshots = match listed {
            Ok(s) => s,
            // The local dump is better than no start at all.
            Err(e) if dump.exists() => {
                tracing::warn!(account = rdb.store.account(), error = %e, "could not list the stored snapshots; loading the local dump");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        snapshots.retain(|(k, _)| k.ends_with(".rdb"));
        snapshots.sort();
        // A local dump (left by a stop that kept the data) loads unless the account holds a
        // newer snapshot: after a crash, the dump is older than what the account kept.
        let newest = snapshots.last().and_then(|(k, _)| snapshot_time_ms(k));
        let dump_ms = std::fs::metadata(&dump)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64);
        match (dump_ms, newest) {
            (Some(local), Some(stored)) if stored > local => {
                tracing::info!(
                    account = rdb.store.account(),
                    "the account holds a snapshot newer than the local dump"
                );
            }
            (Some(_), _) => return Ok(None),
            (None, _) => {}
        }
        for (key, size) in snapshots.into_iter().rev() {
            tracing::info!(account = rdb.store.account(), key = %key, bytes = size, "restoring the RDB snapshot");
            let tmp = dump.with_extension("restore");
            let loaded =
                load_while_downloading(&rdb.store, &key, size, &tmp, try_load).and_then(|report| {
                    std::fs::rename(&tmp, &dump)?;
                    Ok(report)
                });
            match loaded {
                Ok(report) => {
                    let what = format!("rdb {key} from {}", rdb.store.account());
                    return Ok(Some((what, report)));
                }
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "this snapshot does not load; trying the previous one");
                    let _ = std::fs::remove_file(&tmp);
                    let _ = std::fs::remove_file(&dump);
                }
            }
        }
    }
    Ok(None)
}

/// The loader is handed a snapshot in pieces of about this size, not in the connection's
/// chunks of a few KiB: each handover may wake its thread.
const RESTORE_PIECE_BYTES: usize = 1024 * 1024;
/// Pieces downloaded ahead of the load: bounds what a restore holds outside the keyspace.
const RESTORE_PIECES_AHEAD: usize = 16;

/// Loads the snapshot `key` (`size` bytes) as it downloads, and writes it to `tmp` on the
/// way, so that it is the local dump once complete. The download's error comes first: a
/// load that fails because its input broke off reports why it broke off.
fn load_while_downloading(
    store: &Store,
    key: &str,
    size: u64,
    tmp: &Path,
    try_load: &mut dyn FnMut(Restoring) -> anyhow::Result<()>,
) -> anyhow::Result<LoadReport> {
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel(RESTORE_PIECES_AHEAD);
    let download = tokio::runtime::Handle::current().spawn(download_to_loader(
        store.clone(),
        key.to_string(),
        tmp.to_path_buf(),
        tx,
    ));
    let reader = ChunkReader {
        rx,
        chunk: Bytes::new(),
    };
    let loaded = try_load(Restoring::Rdb {
        reader: Box::new(reader),
        bytes: size,
    });
    let load_us = started.elapsed().as_micros() as u64;
    // A snapshot that does not load is not worth the rest of its download.
    if loaded.is_err() {
        download.abort();
    }
    let downloaded = tokio::runtime::Handle::current().block_on(download);
    let (n, download_us) = match (downloaded, loaded) {
        (Ok(Err(e)), _) => return Err(e),
        (_, Err(e)) => return Err(e),
        (Err(e), Ok(())) => anyhow::bail!("the download task failed: {e}"),
        (Ok(Ok(done)), Ok(())) => done,
    };
    anyhow::ensure!(n == size, "downloaded {n} bytes of {size}");
    Ok(LoadReport {
        source: store.account().to_string(),
        files: 1,
        bytes: size,
        download_us,
        load_us: load_us.saturating_sub(download_us),
    })
}

/// The download half of [`load_while_downloading`]: passes each chunk to the loader and
/// writes it to `file`, all of it even when the loader has stopped reading (a file may
/// have bytes after its end). Returns the bytes and the microseconds the download took.
async fn download_to_loader(
    store: Store,
    key: String,
    file: PathBuf,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> anyhow::Result<(u64, u64)> {
    let started = Instant::now();
    let mut out = tokio::io::BufWriter::with_capacity(
        1 << 20,
        tokio::fs::File::create(&file)
            .await
            .map_err(|e| anyhow::anyhow!("create {}: {e}", file.display()))?,
    );
    let mut chunks = store.chunks(&key).await?;
    let mut loader = Some(tx);
    let mut piece = bytes::BytesMut::new();
    let mut n = 0u64;
    loop {
        let chunk = match chunks.next().await.transpose() {
            Ok(c) => c,
            Err(e) => {
                // The loader sees the failure as its input's error, not as a short file.
                if let Some(tx) = &loader {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                }
                return Err(e.into());
            }
        };
        let end = chunk.is_none();
        if let Some(chunk) = chunk {
            n += chunk.len() as u64;
            out.write_all(&chunk).await?;
            if piece.is_empty() {
                piece.reserve(RESTORE_PIECE_BYTES.max(chunk.len()));
            }
            piece.extend_from_slice(&chunk);
        }
        if (end || piece.len() >= RESTORE_PIECE_BYTES)
            && let Some(tx) = &loader
            && tx.send(Ok(piece.split().freeze())).await.is_err()
        {
            loader = None;
        }
        if end {
            break;
        }
    }
    out.flush().await?;
    Ok((n, started.elapsed().as_micros() as u64))
}

/// A blocking reader of the pieces an async task sends: an `Err` is the reader's error,
/// the channel's end the input's end.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
}

impl std::io::BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.chunk, n);
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = std::io::BufRead::fill_buf(self)?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

/// What a restore hands the node to load.
pub enum Restoring {
    /// The AOF directory, downloaded in full.
    Aof,
    /// A snapshot of `bytes` bytes, read as it downloads.
    Rdb {
        reader: Box<dyn std::io::BufRead + Send>,
        bytes: u64,
    },
}

/// Loads the AOF a download that began at `started` brought; returns the microseconds of
/// the download and of the load.
fn timed_load(
    try_load: &mut dyn FnMut(Restoring) -> anyhow::Result<()>,
    started: Instant,
) -> anyhow::Result<(u64, u64)> {
    let download_us = started.elapsed().as_micros() as u64;
    let loading = Instant::now();
    try_load(Restoring::Aof)?;
    Ok((download_us, loading.elapsed().as_micros() as u64))
}

/// Downloads the account's AOF (manifest, base, segments) into `dir`; returns the files and
/// bytes downloaded, None when the account holds none.
async fn download_aof(
    store: &Store,
    dir: &Path,
    appendfilename: &str,
) -> anyhow::Result<Option<(u64, u64)>> {
    let Some((text, _)) = store.get(MANIFEST_KEY).await? else {
        return Ok(None);
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    let stored = Manifest::parse(std::str::from_utf8(&text)?)?;
    let sums: Vec<(String, u64, u64)> = match store.get(CHECKSUMS_KEY).await? {
        Some((b, _)) => aoff::parse_checksums(std::str::from_utf8(&b)?)?
            .into_iter()
            .map(|c| (c.name, c.bytes, c.crc64))
            .collect(),
        // A directory written by something else (redis-server's own, copied in): no sums.
        None => Vec::new(),
    };
    let _ = tokio::fs::remove_dir_all(dir).await;
    tokio::fs::create_dir_all(dir).await?;
    // Local names follow `appendfilename`; the stored ones are always `appendonly.aof.*`.
    let mut local = Manifest::default();
    let mut last = tail::After::Base(0);
    for f in stored.load_order() {
        let local_name = f.name.replacen("appendonly.aof", appendfilename, 1);
        let expected = store
            .size(&format!("aof/{}", f.name))
            .await?
            .ok_or_else(|| anyhow::anyhow!("{} is named in the manifest but missing", f.name))?;
        let mut out = tokio::fs::File::create(dir.join(&local_name)).await?;
        let n = store.download(&format!("aof/{}", f.name), &mut out).await?;
        tracing::info!(account = store.account(), file = %f.name, bytes = n, "restore: downloaded");
        anyhow::ensure!(
            n == expected,
            "{}: downloaded {n} of {expected} bytes",
            f.name
        );
        out.sync_all().await?;
        files += 1;
        bytes += n;
        if let Some((_, size, crc)) = sums.iter().find(|(name, _, _)| *name == f.name) {
            let (len, got) = crc_of_file(&dir.join(&local_name)).await?;
            anyhow::ensure!(
                len == *size && got == *crc,
                "{}: checksum mismatch ({len} bytes, crc64 {got:016x}; the checksum list says {size} bytes, {crc:016x})",
                f.name,
            );
        } else if !sums.is_empty() {
            anyhow::bail!("{} is named in the manifest but has no checksum", f.name);
        }
        let entry = AofFile {
            name: local_name,
            seq: f.seq,
            kind: f.kind,
        };
        match f.kind {
            FileKind::Base => {
                last = tail::After::Base(f.seq);
                local.base = Some(entry);
            }
            FileKind::Incr => {
                last = tail::After::Incr { seq: f.seq, len: n };
                local.incrs.push(entry);
            }
            FileKind::History => {}
        }
    }
    // The log past the manifest's last file: the chains of tail objects that continue it.
    let keys: Vec<tail::TailKey> = store
        .list(tail::DIR)
        .await?
        .iter()
        .filter_map(|(key, _)| tail::TailKey::parse(key))
        .collect();
    for chain in tail::chains(&keys, last) {
        let name = aoff::incr_name(appendfilename, chain.seq);
        let mut out = tokio::fs::File::create(dir.join(&name)).await?;
        let mut pieces = futures_util::stream::iter(chain.objects.iter())
            .map(|k| async move {
                let key = k.key();
                let (data, _) = store
                    .get(&key)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("{key} was listed but is gone"))?;
                let crc = formats::crc64(&data);
                anyhow::ensure!(
                    data.len() as u64 == k.len && crc == k.crc,
                    "{key}: checksum mismatch ({} bytes, crc64 {crc:016x})",
                    data.len(),
                );
                Ok(data)
            })
            .buffered(TAIL_DOWNLOADS_IN_FLIGHT_MAX);
        while let Some(data) = pieces.next().await {
            out.write_all(&data?).await?;
        }
        out.sync_all().await?;
        tracing::info!(account = store.account(), file = %name, objects = chain.objects.len(), bytes = chain.len(), "restore: downloaded the tail");
        files += chain.objects.len() as u64;
        bytes += chain.len();
        local.incrs.push(AofFile {
            name,
            seq: chain.seq,
            kind: FileKind::Incr,
        });
    }
    tokio::fs::write(
        dir.join(aoff::manifest_name(appendfilename)),
        local.to_text(),
    )
    .await?;
    Ok(Some((files, bytes)))
}

#[cfg(test)]
mod tests {
    use super::{COMMIT_LINGER_MAX, Wave};
    use std::time::{Duration, Instant};

    #[test]
    fn a_commit_waits_for_the_answered_clients_writes_but_not_past_its_bound() {
        let now = Instant::now();
        let wave = Wave::after(1_000, Duration::from_millis(3), now);
        assert!(!wave.back(999, now), "part of the wave is back");
        assert!(wave.back(1_000, now), "the whole wave is back");
        assert!(!wave.back(1, now + Duration::from_micros(1_499)));
        assert!(
            wave.back(1, now + Duration::from_micros(1_500)),
            "half the round trip"
        );
        // A slow store does not make the wait longer than the bound.
        let slow = Wave::after(1_000, Duration::from_secs(1), now);
        assert!(slow.back(1, now + COMMIT_LINGER_MAX));
        assert!(!slow.back(1, now + COMMIT_LINGER_MAX - Duration::from_micros(1)));
    }

    #[test]
    fn event_lines_read_back() {
        let events = vec![
            blob::BlobEvent {
                account: "local:/data dir/storage".into(),
                key: "caches/a b/aof/appendonly.aof.manifest".into(),
                bytes: 88,
                kind: blob::EventKind::Overwrite,
                at_unix_ms: 1_795_977_286_384,
            },
            blob::BlobEvent {
                account: "s3:bkt@http://127.0.0.1:9000".into(),
                key: "caches/x/rdb/1.rdb".into(),
                bytes: 0,
                kind: blob::EventKind::Delete,
                at_unix_ms: 1,
            },
        ];
        let text = super::events_to_lines(&events);
        assert_eq!(super::events_from_lines(&text), events);
        assert!(super::events_from_lines("garbage\n1\tnope\t1\ta\tb\n").is_empty());
    }

    #[test]
    fn a_checksum_list_keeps_the_replaced_manifests_files() {
        let committed = "appendonly.aof.4.base.rdb 10 0a\nappendonly.aof.9.incr.aof 5 05\n";
        let next = "appendonly.aof.5.base.rdb 12 0c\nappendonly.aof.9.incr.aof 5 05\n";
        assert_eq!(
            super::union_of_lines(next, committed),
            "appendonly.aof.5.base.rdb 12 0c\nappendonly.aof.9.incr.aof 5 05\nappendonly.aof.4.base.rdb 10 0a\n"
        );
        assert_eq!(super::union_of_lines(next, ""), next);
    }

    /// A local-folder account under a scratch directory, holding `object` at `rdb/1.rdb`.
    struct Account {
        dir: std::path::PathBuf,
        store: super::Store,
        rt: tokio::runtime::Runtime,
    }

    impl Account {
        fn with(name: &str, object: &[u8]) -> Account {
            let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let account = blob::Account::parse(&format!("file://{}", dir.display())).unwrap();
            let store = super::Store::open(&account, "cache", std::sync::Arc::new(|_| {})).unwrap();
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(store.put_new("rdb/1.rdb", object.to_vec().into()))
                .unwrap();
            Account { dir, store, rt }
        }

        /// Restores `rdb/1.rdb`, claimed `size` bytes long, into a keyspace.
        fn restore(
            &self,
            size: u64,
        ) -> (
            anyhow::Result<super::LoadReport>,
            keyspace::Keyspace,
            Vec<u8>,
        ) {
            let _entered = self.rt.enter();
            let tmp = self.dir.join("dump.restore");
            let mut ks = keyspace::Keyspace::new(16);
            let report =
                super::load_while_downloading(&self.store, "rdb/1.rdb", size, &tmp, &mut |r| {
                    let super::Restoring::Rdb { reader, bytes } = r else {
                        panic!("a snapshot restores as one")
                    };
                    crate::persist::load_rdb_sized(reader, bytes, &mut ks, 0).map(|_| ())
                });
            (report, ks, std::fs::read(&tmp).unwrap_or_default())
        }
    }

    impl Drop for Account {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// An RDB file of `keys` string keys, several of the local store's read chunks long.
    fn snapshot(keys: u64) -> Vec<u8> {
        let mut w = formats::rdb::RdbWriter::new(Vec::new(), Default::default()).unwrap();
        w.select_db(0, Some((keys, 0))).unwrap();
        for i in 0..keys {
            w.write_string(format!("key:{i}").as_bytes(), None, &[b'v'; 100])
                .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn a_snapshot_loads_as_it_downloads_and_becomes_the_local_dump() {
        let object = snapshot(50_000);
        let account = Account::with("restore-stream", &object);
        let (report, mut ks, dump) = account.restore(object.len() as u64);
        let report = report.unwrap();
        assert_eq!((report.files, report.bytes), (1, object.len() as u64));
        assert_eq!(ks.dbs_len_total(), 50_000);
        assert!(ks.get(0, b"key:49999").is_some());
        assert!(
            dump == object,
            "the local dump is the object, byte for byte"
        );
    }

    #[test]
    fn a_damaged_snapshot_is_refused_with_the_loaders_error() {
        let mut object = snapshot(50_000);
        let mid = object.len() / 2;
        object[mid] ^= 0x01;
        let account = Account::with("restore-damaged", &object);
        let (report, _, _) = account.restore(object.len() as u64);
        let e = format!("{:#}", report.unwrap_err());
        assert!(e.contains("corrupt rdb") || e.contains("checksum"), "{e}");
    }

    #[test]
    fn a_snapshot_shorter_than_listed_is_refused() {
        let object = snapshot(1_000);
        let account = Account::with("restore-short", &object);
        let (report, _, _) = account.restore(object.len() as u64 + 1);
        let e = format!("{:#}", report.unwrap_err());
        assert!(e.contains("downloaded"), "{e}");
    }

    #[test]
    fn a_missing_object_reports_the_download_error_not_a_short_file() {
        let account = Account::with("restore-missing", b"");
        let _entered = account.rt.enter();
        let mut called = false;
        let report = super::load_while_downloading(
            &account.store,
            "rdb/absent.rdb",
            10,
            &account.dir.join("dump.restore"),
            &mut |r| {
                called = true;
                let super::Restoring::Rdb { mut reader, .. } = r else {
                    panic!("a snapshot restores as one")
                };
                std::io::Read::read_to_end(&mut reader, &mut Vec::new())?;
                Ok(())
            },
        );
        assert!(called);
        let e = format!("{:#}", report.unwrap_err());
        assert!(e.contains("absent.rdb"), "{e}");
    }
}
