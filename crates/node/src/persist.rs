//! RDB persistence of a node: SAVE, BGSAVE without fork, `save` rules, and loading the dump
//! at start.
//!
//! BGSAVE runs on the keyspace's point-in-time snapshot ([`keyspace::SnapshotSink`]): the
//! saver thread advances the snapshot in steps of at most [`BGSAVE_LOCK_HOLD_MAX`] under
//! the state lock, and writes the serialized bytes to the file with the lock released.
//! Writes that touch an entry the snapshot still owes hand it over first, so the file holds
//! the dataset as it was when BGSAVE began, and memory grows only by the bytes waiting to
//! be written.
//!
//! This module knows the keyspace, the settings and its own [`RdbState`], not the node:
//! the saver thread reaches the node through a [`SnapshotHost`], which also hears when a
//! job ends (an AOF rewrite's base, a backup) and tells its owner.

use std::any::Any;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use formats::FormatError;
use formats::rdb::{
    CollectionKind, RdbConsumer, RdbGroup, RdbPending, RdbStream, RdbStreamEntry, RdbStreamId,
    RdbSummary, RdbValue, RdbWriter, ReadOptions, WriteOptions,
};
use keyspace::{
    Consumer, Dict, Entry, Field, Group, Keyspace, Nack, SnapshotSink, Str, Stream, StreamId,
    Value, ZSet,
};

use crate::NodeConfig;
use crate::workers::Workers;

/// Longest a BGSAVE step holds the state lock: the bound on the pause writes see.
pub const BGSAVE_LOCK_HOLD_MAX: Duration = Duration::from_micros(250);
/// Longest the saver waits between steps for clients waiting on the lock to take it.
const BGSAVE_GIVE_WAY_MAX: Duration = Duration::from_millis(2);
/// How often the saver looks whether those clients are served.
const BGSAVE_GIVE_WAY_POLL: Duration = Duration::from_micros(20);
/// Entries serialized between looks at the clock and at waiting clients within one step:
/// a client that finds the lock taken waits for at most this many (about 10 µs).
const STEP_ENTRIES: usize = 32;
/// After a failed background save, automatic saves wait this long (Redis's
/// CONFIG_BGSAVE_RETRY_DELAY).
const BGSAVE_RETRY_DELAY: Duration = Duration::from_secs(5);

/// What INFO persistence reports, and the running background save.
pub struct RdbState {
    /// The background job writing a snapshot (BGSAVE or an AOF rewrite's base).
    pub job: Option<BgJob>,
    /// BGREWRITEAOF asked for while a BGSAVE ran: started when it ends.
    pub aof_rewrite_scheduled: bool,
    pub last_bgsave_ok: bool,
    pub last_bgsave_secs: Option<u64>,
    pub last_failure: Option<Instant>,
    pub saves: u64,
    pub last_load_keys_loaded: u64,
    pub last_load_keys_expired: u64,
    /// Tells the saver thread a background save began (its generation number).
    saver: Option<mpsc::Sender<u64>>,
    next_generation: u64,
    /// Set once the stopping node has made (or skipped) its final save.
    pub shutdown_saved: bool,
    /// Unix seconds of the last successful save (LASTSAVE).
    pub last_save_unix: u64,
    /// `ks.dirty` at the last successful save.
    pub dirty_at_last_save: u64,
    /// The node, for the saver thread (it must not keep the node alive: hosts hold it
    /// weakly).
    host: Option<Arc<dyn SnapshotHost>>,
    workers: Arc<Workers>,
}

/// The node as the saver thread reaches it.
pub trait SnapshotHost: Send + Sync {
    /// Runs `f` under the node's lock with its keyspace and RDB state; false when the node
    /// is gone.
    fn with(&self, f: &mut dyn FnMut(&mut Keyspace, &mut RdbState, &NodeConfig)) -> bool;
    /// A background job ended (called once `RdbState` recorded it, with the lock released
    /// in between): the owner of an AOF rewrite switches its manifest.
    fn ended(&self, ended: Ended);
    /// Whether clients are waiting for the lock: the saver gives way before its next step.
    fn contended(&self) -> bool {
        false
    }
}

/// A background job that ended, for its owner.
#[derive(Debug, Clone)]
pub struct Ended {
    pub generation: u64,
    pub kind: Job,
    pub ok: bool,
}

pub struct BgJob {
    generation: u64,
    pub kind: Job,
    pub started: Instant,
    /// `ks.dirty` when the snapshot began: what the file reflects.
    dirty_at_start: u64,
}

/// What a background snapshot is written for.
#[derive(Debug, Clone)]
pub enum Job {
    /// BGSAVE: the dump file.
    Rdb,
    /// An AOF rewrite: the new base file at this path.
    AofBase(PathBuf),
    /// A backup streamed into a storage account: the bytes go to the uploader.
    Blob(tokio::sync::mpsc::Sender<Piece>),
}

/// Snapshot bytes on their way to an upload; `End` marks a complete snapshot (a channel
/// closed without it means the snapshot was abandoned).
#[derive(Debug)]
pub enum Piece {
    Data(Vec<u8>),
    End,
}

/// Where the saver thread writes a snapshot.
enum Out {
    File(AtomicFile),
    /// To an upload, in pieces of at least [`CHUNK_BYTES`].
    Channel(tokio::sync::mpsc::Sender<Piece>),
}

/// Serialized bytes gathered before they are handed on (file write, upload piece): fewer,
/// larger hand-offs, and no piece is copied again to reach an upload's size.
const CHUNK_BYTES: usize = 1024 * 1024;

impl Out {
    fn write(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Out::File(f) => f.write(&bytes)?,
            Out::Channel(tx) => tx
                .blocking_send(Piece::Data(bytes))
                .map_err(|_| anyhow::anyhow!("the upload stopped"))?,
        }
        Ok(())
    }

    fn commit(self) -> anyhow::Result<()> {
        match self {
            Out::File(f) => f.commit()?,
            Out::Channel(tx) => tx
                .blocking_send(Piece::End)
                .map_err(|_| anyhow::anyhow!("the upload stopped"))?,
        }
        Ok(())
    }
}

impl RdbState {
    pub fn bgsave_in_progress(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| matches!(j.kind, Job::Rdb))
    }

    pub fn aof_rewrite_in_progress(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| matches!(j.kind, Job::AofBase(_)))
    }
}

impl RdbState {
    /// Gives the saver thread its way to the node, once the node exists.
    pub fn set_host(&mut self, host: Arc<dyn SnapshotHost>) {
        self.host = Some(host);
    }

    pub fn new(now_ms: u64, workers: Arc<Workers>) -> RdbState {
        RdbState {
            job: None,
            aof_rewrite_scheduled: false,
            last_bgsave_ok: true,
            last_bgsave_secs: None,
            last_failure: None,
            saves: 0,
            last_load_keys_loaded: 0,
            last_load_keys_expired: 0,
            saver: None,
            next_generation: 0,
            shutdown_saved: false,
            last_save_unix: now_ms / 1000,
            dirty_at_last_save: 0,
            host: None,
            workers,
        }
    }
}

/// Serializes snapshot entries into an in-memory RDB stream that the saver drains.
struct RdbSink {
    w: RdbWriter<Vec<u8>>,
    db: Option<usize>,
    /// Per database, its (keys, volatile keys) when the snapshot began, until the first
    /// SELECTDB of it carries them as the RESIZEDB hint.
    sizes: Vec<Option<(u64, u64)>>,
    /// The first failure; later entries are dropped and the save fails.
    error: Option<FormatError>,
    /// File offset up to which bytes were taken.
    taken: u64,
}

/// How far past [`CHUNK_BYTES`] the writer's destination may grow before it is taken: the
/// writer stages up to 64 KiB, and one entry may add more.
const STAGED_BYTES_SLACK: usize = 256 * 1024;

/// The sizes up to which collections are written compactly: the node's settings.
fn pack_limits(e: &keyspace::Encodings) -> formats::rdb::PackLimits {
    formats::rdb::PackLimits {
        hash_max_listpack_entries: e.hash_max_listpack_entries,
        hash_max_listpack_value: e.hash_max_listpack_value,
        set_max_intset_entries: e.set_max_intset_entries,
        zset_max_listpack_entries: e.zset_max_listpack_entries,
        zset_max_listpack_value: e.zset_max_listpack_value,
    }
}

impl RdbSink {
    fn new(ks: &Keyspace, config: &NodeConfig, aof_base: bool) -> Result<RdbSink, FormatError> {
        let opts = WriteOptions {
            compress: config.rdbcompression,
            checksum: config.rdbchecksum,
            ctime_unix: crate::unix_time_ms() / 1000,
            used_mem_bytes: crate::used_memory_bytes(),
            aof_base,
            pack: pack_limits(&ks.encodings),
        };
        let mut w = RdbWriter::new(Vec::with_capacity(64 * 1024), opts)?;
        for code in ks.function_codes() {
            w.function(code)?;
        }
        Ok(RdbSink {
            w,
            db: None,
            sizes: (0..ks.db_count())
                .map(|i| Some((ks.db(i).len() as u64, ks.db(i).volatile_len() as u64)))
                .collect(),
            error: None,
            taken: 0,
        })
    }

    /// Moves to `db` (SELECTDB, with its size hint the first time).
    fn select(&mut self, db: usize) -> Result<(), FormatError> {
        if self.db != Some(db) {
            let hint = self.sizes.get_mut(db).and_then(Option::take);
            self.w.select_db(db as u64, hint)?;
            self.db = Some(db);
        }
        Ok(())
    }

    fn write(&mut self, db: usize, e: &Entry) -> Result<(), FormatError> {
        self.select(db)?;
        write_entry(&mut self.w, e)
    }

    /// Appends a fragment of `db`'s keys, selecting the database first if need be.
    fn splice(&mut self, db: usize, fragment: &[u8]) -> Result<(), FormatError> {
        self.select(db)?;
        self.w.splice(fragment)
    }

    /// The bytes serialized since the last call, once there are at least `min_bytes`.
    fn take_bytes(&mut self, min_bytes: usize) -> Result<Option<Vec<u8>>, FormatError> {
        if self.w.position() - self.taken < min_bytes as u64 {
            return Ok(None);
        }
        self.taken = self.w.position();
        let inner = self.w.flushed_inner()?;
        Ok(Some(std::mem::replace(
            inner,
            Vec::with_capacity(CHUNK_BYTES + STAGED_BYTES_SLACK),
        )))
    }
}

impl SnapshotSink for RdbSink {
    fn entry(&mut self, db: usize, e: &Entry) {
        if self.error.is_none()
            && let Err(err) = self.write(db, e)
        {
            self.error = Some(err);
        }
    }
}

/// Writes one key (small collections packed as Redis packs them, see `RdbWriter`).
pub fn write_entry<W: Write>(w: &mut RdbWriter<W>, e: &Entry) -> Result<(), FormatError> {
    let (key, at) = (&e.key, e.expire_at_ms());
    match &e.value {
        Value::Str(s) => w.write_string(key, at, s),
        Value::List(l) => {
            w.begin_collection(key, at, CollectionKind::List, l.len() as u64)?;
            l.iter().try_for_each(|item| w.element(item))
        }
        Value::Set(s) => {
            w.begin_collection(key, at, CollectionKind::Set, s.len() as u64)?;
            s.iter().try_for_each(|m| w.element(m))
        }
        Value::Hash(h) => {
            w.begin_collection(key, at, CollectionKind::Hash, h.len() as u64)?;
            h.iter().try_for_each(|f| {
                w.element(&f.name)?;
                w.element(&f.value)
            })
        }
        Value::ZSet(z) => {
            w.begin_collection(key, at, CollectionKind::ZSet, z.len() as u64)?;
            // Highest first, as Redis writes them, so a loader appending in file order
            // builds its skiplist from the head.
            z.iter()
                .rev()
                .try_for_each(|(m, score)| w.zset_member(m, score))
        }
        Value::Stream(st) => w.write_stream(key, at, &to_rdb_stream(st)),
    }
}

/// The file being written: a temporary name in the target directory, renamed over the
/// target only once complete and on disk.
struct AtomicFile {
    file: File,
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    fn create(target: PathBuf) -> std::io::Result<AtomicFile> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            "temp-{}-{}-{name}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let file = File::create(&tmp)?;
        Ok(AtomicFile {
            file,
            tmp,
            target,
            committed: false,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)
    }

    fn commit(mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        // The rename itself must survive a crash.
        if let Some(dir) = self.target.parent() {
            File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })?
            .sync_all()?;
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub fn dump_path(config: &crate::NodeConfig) -> PathBuf {
    config.dir.join(&config.dbfilename)
}

/// Replaces `path` with `bytes`: a temporary file, fsynced, renamed, directory fsynced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path.to_path_buf())?;
    f.write(bytes)?;
    f.commit()
}

fn sink_of(ks: &mut Keyspace) -> &mut RdbSink {
    let sink: &mut dyn Any = ks.snapshot_sink().expect("a snapshot is running");
    sink.downcast_mut::<RdbSink>()
        .expect("node snapshots use the RDB sink")
}

/// Ends a finished snapshot and returns the file's trailer (EOF and checksum).
fn finish(ks: &mut Keyspace) -> Result<Vec<u8>, FormatError> {
    let sink: Box<dyn Any> = ks.snapshot_end().expect("the snapshot is finished");
    let mut sink = sink
        .downcast::<RdbSink>()
        .expect("node snapshots use the RDB sink");
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    sink.w.finish()
}

/// Abandons the running snapshot and finishes its marking at once.
fn abandon(ks: &mut Keyspace) {
    ks.snapshot_abandon();
    while !ks.snapshot_step(usize::MAX) {}
    ks.snapshot_end();
}

/// SAVE: writes the dump with the lock held, as Redis's SAVE blocks the server.
pub fn save(ks: &mut Keyspace, rdb: &mut RdbState, config: &NodeConfig) -> anyhow::Result<()> {
    let dirty = ks.dirty;
    let started = Instant::now();
    save_to(ks, config, &dump_path(config), false)?;
    rdb.saved(dirty);
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "DB saved on disk"
    );
    Ok(())
}

/// Writes a snapshot of the keyspace to `path` now, with the lock held: serialized on
/// several threads (see [`serialize_in_pieces`]), since nothing changes the keyspace
/// meanwhile.
pub fn save_to(
    ks: &mut Keyspace,
    config: &NodeConfig,
    path: &Path,
    aof_base: bool,
) -> anyhow::Result<()> {
    if ks.snapshot_in_progress() {
        anyhow::bail!("Background save already in progress");
    }
    let mut file = AtomicFile::create(path.to_path_buf())?;
    let mut sink = RdbSink::new(ks, config, aof_base)?;
    let pieces = ks.save_pieces(SAVE_PIECE_KEYS);
    serialize_in_pieces(ks, &pieces, &mut sink, |sink| {
        if let Some(bytes) = sink.take_bytes(CHUNK_BYTES)? {
            file.write(&bytes)?;
        }
        Ok(())
    })?;
    let tail = sink.w.finish()?;
    file.write(&tail)?;
    file.commit()?;
    Ok(())
}

/// Keys per piece a blocking save serializes on one thread.
const SAVE_PIECE_KEYS: usize = 16 * 1024;
/// Pieces serialized ahead of the one being written: bounds what a save holds besides
/// the keyspace.
const SAVE_PIECES_AHEAD: usize = 8;
/// Threads a blocking save serializes on, at most (fewer on fewer cores).
const SAVE_THREADS_MAX: usize = 4;

/// Serializes `pieces` (from [`Keyspace::save_pieces`]) on up to [`SAVE_THREADS_MAX`]
/// threads, each into a fragment, and splices them into `sink` in order, calling
/// `drain` after each so the bytes move on as they come.
fn serialize_in_pieces(
    ks: &Keyspace,
    pieces: &[(usize, std::ops::Range<usize>)],
    sink: &mut RdbSink,
    mut drain: impl FnMut(&mut RdbSink) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, SAVE_THREADS_MAX);
    let opts = sink.w.options();
    let dbs: Vec<&keyspace::Db> = (0..ks.db_count()).map(|i| ks.db(i)).collect();
    // (pieces claimed, pieces spliced, stopped): a thread claims piece i only while
    // i < spliced + SAVE_PIECES_AHEAD.
    let gate = std::sync::Mutex::new((0usize, 0usize, false));
    let moved = std::sync::Condvar::new();
    let (tx, rx) = mpsc::channel::<(usize, Result<Vec<u8>, FormatError>)>();
    let encode = |range: &std::ops::Range<usize>, db: &keyspace::Db| {
        let mut w = RdbWriter::fragment(Vec::new(), opts.clone());
        let mut failed = None;
        db.for_each_in(range.clone(), |e| {
            if failed.is_none() {
                failed = write_entry(&mut w, e).err();
            }
        });
        match failed {
            Some(e) => Err(e),
            None => w.into_fragment(),
        }
    };
    let claim = || {
        let mut g = gate.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (claimed, spliced, stopped) = *g;
            if stopped || claimed >= pieces.len() {
                return None;
            }
            if claimed < spliced + SAVE_PIECES_AHEAD {
                g.0 += 1;
                return Some(claimed);
            }
            g = moved.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    };
    std::thread::scope(|scope| {
        for n in 0..threads {
            let tx = tx.clone();
            let (claim, encode, dbs) = (&claim, &encode, &dbs);
            let spawned = std::thread::Builder::new()
                .name(format!("rdb-save-{n}"))
                .spawn_scoped(scope, move || {
                    while let Some(i) = claim() {
                        let (db, range) = &pieces[i];
                        if tx.send((i, encode(range, dbs[*db]))).is_err() {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                // The threads already running do the work; with none, nothing would.
                tracing::warn!(error = %e, "starting a save thread");
                if n == 0 {
                    return Err(anyhow::anyhow!("starting a save thread: {e}"));
                }
            }
        }
        drop(tx);
        let spliced = (|| -> anyhow::Result<()> {
            let mut done: std::collections::BTreeMap<usize, _> = Default::default();
            let mut next = 0;
            while next < pieces.len() {
                let Ok((i, bytes)) = rx.recv() else {
                    anyhow::bail!("the save threads stopped early");
                };
                done.insert(i, bytes);
                while let Some(bytes) = done.remove(&next) {
                    sink.splice(pieces[next].0, &bytes?)?;
                    drain(sink)?;
                    next += 1;
                    gate.lock().unwrap_or_else(|e| e.into_inner()).1 = next;
                    moved.notify_all();
                }
            }
            Ok(())
        })();
        // On failure the threads must not wait for pieces nobody splices.
        gate.lock().unwrap_or_else(|e| e.into_inner()).2 = true;
        moved.notify_all();
        drop(rx);
        spliced
    })
}

impl RdbState {
    /// Records a successful save of the dataset as it was at `dirty_at_start`.
    fn saved(&mut self, dirty_at_start: u64) {
        self.dirty_at_last_save = dirty_at_start;
        self.last_save_unix = crate::unix_time_ms() / 1000;
        self.saves += 1;
    }
}

/// BGSAVE: begins the snapshot now and lets the saver thread write it.
pub fn bgsave(ks: &mut Keyspace, rdb: &mut RdbState, config: &NodeConfig) -> anyhow::Result<()> {
    begin_background(ks, rdb, config, Job::Rdb)?;
    tracing::info!("background saving started");
    Ok(())
}

/// Begins a snapshot for `kind` and hands it to the saver thread; returns its generation.
pub fn begin_background(
    ks: &mut Keyspace,
    rdb: &mut RdbState,
    config: &NodeConfig,
    kind: Job,
) -> anyhow::Result<u64> {
    if rdb.job.is_some() {
        anyhow::bail!("Background save already in progress");
    }
    let Some(host) = rdb.host.clone() else {
        anyhow::bail!("the node is not running yet");
    };
    let sink = RdbSink::new(ks, config, matches!(kind, Job::AofBase(_)))?;
    if ks.snapshot_begin(Box::new(sink)).is_err() {
        anyhow::bail!("Background save already in progress");
    }
    rdb.next_generation += 1;
    let generation = rdb.next_generation;
    rdb.job = Some(BgJob {
        generation,
        kind,
        started: Instant::now(),
        dirty_at_start: ks.dirty,
    });
    if rdb.saver.is_none() {
        let (tx, rx) = mpsc::channel();
        let host = Arc::downgrade(&host);
        rdb.workers
            .spawn_thread("rdb-saver", move || saver_thread(rx, host))?;
        rdb.saver = Some(tx);
    }
    let saver = rdb.saver.as_ref().expect("started above");
    saver
        .send(generation)
        .map_err(|_| anyhow::anyhow!("the saver thread is gone"))?;
    Ok(generation)
}

/// Cancels a running background job (SHUTDOWN, a replaced dataset): its file is not
/// written. Returns the job, so that its owner (an AOF rewrite) can give it up too.
pub fn cancel_bgsave(ks: &mut Keyspace, rdb: &mut RdbState) -> Option<Ended> {
    let job = rdb.job.take()?;
    abandon(ks);
    tracing::info!("background saving cancelled");
    Some(Ended {
        generation: job.generation,
        kind: job.kind,
        ok: false,
    })
}

/// Runs one background job per generation number received, until the node is gone.
fn saver_thread(jobs: mpsc::Receiver<u64>, host: std::sync::Weak<dyn SnapshotHost>) {
    // Serving clients comes first: on a busy core the scheduler favours the connections
    // (Redis's fork child competes at full weight instead).
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::debug!(error = ?e, "could not lower the saver thread's priority");
    }
    while let Ok(generation) = jobs.recv() {
        let Some(host) = host.upgrade() else {
            return;
        };
        run_job(host.as_ref(), generation);
    }
}

fn run_job(host: &dyn SnapshotHost, generation: u64) {
    let mut target = None;
    let alive = host.with(&mut |_, rdb, config| {
        target = match rdb
            .job
            .as_ref()
            .filter(|j| j.generation == generation)
            .map(|j| j.kind.clone())
        {
            Some(Job::Rdb) => Some(Target::File(dump_path(config))),
            Some(Job::AofBase(path)) => Some(Target::File(path)),
            Some(Job::Blob(tx)) => Some(Target::Channel(tx)),
            None => None,
        }
    });
    let (true, Some(target)) = (alive, target) else {
        return;
    };
    enum Target {
        File(PathBuf),
        Channel(tokio::sync::mpsc::Sender<Piece>),
    }
    let started = Instant::now();
    let result = (|| -> anyhow::Result<Option<Out>> {
        let mut file = match target {
            Target::File(path) => Out::File(AtomicFile::create(path)?),
            Target::Channel(tx) => Out::Channel(tx),
        };
        loop {
            let mut step: Option<anyhow::Result<(Option<Vec<u8>>, bool)>> = None;
            host.with(&mut |ks, rdb, _| {
                if rdb.job.as_ref().is_none_or(|b| b.generation != generation) {
                    return;
                }
                // One step at least (progress under any load), then more until the time
                // is up or a client waits for the lock.
                let begun = Instant::now();
                let mut done = ks.snapshot_step(STEP_ENTRIES);
                while !done && begun.elapsed() < BGSAVE_LOCK_HOLD_MAX && !host.contended() {
                    done = ks.snapshot_step(STEP_ENTRIES);
                }
                let bytes = if done {
                    finish(ks).map(Some)
                } else {
                    sink_of(ks).take_bytes(CHUNK_BYTES)
                };
                step = Some(bytes.map(|b| (b, done)).map_err(Into::into));
            });
            // Cancelled, or the node is gone.
            let Some(step) = step else {
                return Ok(None);
            };
            let (bytes, done) = step?;
            if let Some(bytes) = bytes {
                file.write(bytes)?;
            }
            // The clients the release woke need a moment to get to the lock: taken again at
            // once (the saver on another core), it would rarely be free when they try.
            let giving_way = Instant::now();
            while host.contended() && giving_way.elapsed() < BGSAVE_GIVE_WAY_MAX {
                std::thread::sleep(BGSAVE_GIVE_WAY_POLL);
            }
            if done {
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "snapshot serialized"
                );
                return Ok(Some(file));
            }
        }
    })();
    // A snapshot streamed to an upload ends its job before the upload may complete: the
    // upload's end is when its owner may start the next one.
    let (result, upload_end) = match result {
        Ok(Some(upload @ Out::Channel(_))) => (Ok(Some(true)), Some(upload)),
        other => (
            other.and_then(|file| file.map(|f| f.commit().map(|_| true)).transpose()),
            None,
        ),
    };
    let mut ended = None;
    host.with(&mut |ks, rdb, _| {
        let Some(job) = rdb.job.take_if(|b| b.generation == generation) else {
            return;
        };
        let secs = job.started.elapsed().as_secs();
        let ok = matches!(result, Ok(Some(true)));
        if let Err(e) = &result {
            if ks.snapshot_in_progress() {
                abandon(ks);
            }
            rdb.last_failure = Some(Instant::now());
            tracing::error!(error = %e, "background saving failed");
        }
        if let Job::Rdb = job.kind {
            rdb.last_bgsave_ok = ok;
            if ok {
                rdb.saved(job.dirty_at_start);
                rdb.last_bgsave_secs = Some(secs);
                tracing::info!(secs, "background saving terminated with success");
            }
        }
        ended = Some(Ended {
            generation,
            kind: job.kind,
            ok,
        });
    });
    if let Some(upload) = upload_end
        && let Err(e) = upload.commit()
    {
        tracing::warn!(error = %e, "the snapshot's end did not reach its upload");
    }
    // The owner hears of it (an AOF rewrite switches its manifest; the uploader of a
    // backup reports its outcome itself).
    if let Some(ended) = ended {
        host.ended(ended);
    }
}

/// The cron's check of the `save` rules (a scheduled AOF rewrite goes first: the caller
/// starts it while no job runs).
pub fn cron(ks: &mut Keyspace, rdb: &mut RdbState, config: &NodeConfig) {
    if rdb.job.is_some() || rdb.aof_rewrite_scheduled {
        return;
    }
    if config.save.is_empty() {
        return;
    }
    let changes = ks.dirty - rdb.dirty_at_last_save;
    let elapsed = (crate::unix_time_ms() / 1000).saturating_sub(rdb.last_save_unix);
    let due = config
        .save
        .iter()
        .any(|&(secs, min)| changes >= min && elapsed >= secs);
    let retry_ok = rdb.last_bgsave_ok
        || rdb
            .last_failure
            .is_none_or(|t| t.elapsed() >= BGSAVE_RETRY_DELAY);
    if due && retry_ok {
        tracing::info!(changes, secs = elapsed, "save rule met, saving");
        if let Err(e) = bgsave(ks, rdb, config) {
            tracing::warn!(error = %e, "could not start the background save");
        }
    }
}

/// Keys a load read, for the log and INFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadSummary {
    pub keys_loaded: u64,
    pub keys_expired: u64,
    pub bytes: u64,
}

/// Loads an RDB file into `ks`, dropping keys already past their deadline (as a primary
/// does). Refuses files with more databases than `ks` has, and damaged ones.
pub fn load_rdb(path: &Path, ks: &mut Keyspace, now_ms: u64) -> anyhow::Result<LoadSummary> {
    let file = File::open(path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    let bytes = file.metadata().map_or(0, |m| m.len());
    load_rdb_sized(BufReader::with_capacity(1 << 20, file), bytes, ks, now_ms)
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
}

/// [`load_rdb`] from a reader of a file `bytes` long (an object-store stream).
pub fn load_rdb_sized(
    r: impl std::io::BufRead + Send,
    bytes: u64,
    ks: &mut Keyspace,
    now_ms: u64,
) -> anyhow::Result<LoadSummary> {
    // A key takes at least 4 bytes of file: bounds what RESIZEDB may make us allocate.
    load_rdb_bounded(r, ks, now_ms, bytes / 4)
}

/// [`load_rdb`] from a reader of unknown length (AOF bases).
pub fn load_rdb_from(
    r: impl std::io::BufRead + Send,
    ks: &mut Keyspace,
    now_ms: u64,
) -> anyhow::Result<LoadSummary> {
    load_rdb_bounded(r, ks, now_ms, PRESIZE_KEYS_MAX)
}

/// Most keys a RESIZEDB hint may pre-size a database for when the input's size is unknown.
const PRESIZE_KEYS_MAX: u64 = 1 << 20;

/// Entries the decoding thread hands the inserting one at a time.
const LOAD_BATCH_ENTRIES: usize = 512;
/// Batches decoded ahead of insertion: bounds what a load holds outside the keyspace.
const LOAD_BATCHES_AHEAD: usize = 16;

/// How many entries ahead of its insert the loader asks for a key's bucket
/// ([`Keyspace::prefetch`]): far enough for memory to answer in time, near enough for the
/// line to still be in the cache.
const INSERT_PREFETCH_AHEAD: usize = 8;

/// What the decoding thread passes on, in file order.
enum Loaded {
    /// RESIZEDB: the database's key count, already bounded.
    Presize { db: usize, keys: usize },
    Entry {
        db: usize,
        key: Str,
        value: RdbValue,
        expire_ms: Option<u64>,
    },
}

/// Loads on two threads: one reads, checks and decodes the file (checksum, decompression,
/// listpacks), the calling one builds the values and inserts them in file order (about
/// an even split of a load's work, page faults included). The decoder stops when the inserter gives up (a duplicate key) and the other way
/// round, and the first error in file order is the one reported.
fn load_rdb_bounded(
    r: impl std::io::BufRead + Send,
    ks: &mut Keyspace,
    now_ms: u64,
    keys_max: u64,
) -> anyhow::Result<LoadSummary> {
    let databases = ks.db_count() as u64;
    let (tx, rx) = mpsc::sync_channel::<Vec<Loaded>>(LOAD_BATCHES_AHEAD);
    let (decoded, inserted) = std::thread::scope(|scope| {
        let decoder = std::thread::Builder::new()
            .name("rdb-decode".into())
            .spawn_scoped(scope, move || decode(r, databases, now_ms, keys_max, tx))?;
        let inserted = insert_loaded(ks, rx);
        // A decoder blocked on a full channel wakes once `rx` is gone (dropped above).
        let decoded = decoder
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        std::io::Result::Ok((decoded, inserted))
    })
    .map_err(|e| anyhow::anyhow!("starting the rdb decoder thread: {e}"))?;
    // The inserter's error comes first in file order: the decoder's is then only that it
    // was stopped.
    let keys_loaded = inserted?;
    let (summary, mut s) = decoded?;
    s.keys_loaded = keys_loaded;
    ks.set_function_codes(
        summary
            .functions
            .into_iter()
            .map(bytes::Bytes::from)
            .collect(),
    );
    Ok(s)
}

/// The decoding half of a load: the file's summary, its size and the keys already past
/// their deadline (dropped, as a primary does).
fn decode(
    r: impl std::io::BufRead,
    databases: u64,
    now_ms: u64,
    keys_max: u64,
    tx: mpsc::SyncSender<Vec<Loaded>>,
) -> Result<(RdbSummary, LoadSummary), FormatError> {
    let gone = || FormatError::Invalid("the load stopped".into());
    let batch = std::cell::RefCell::new(Vec::with_capacity(LOAD_BATCH_ENTRIES));
    let mut s = LoadSummary::default();
    let summary = formats::rdb::read_with_hints(
        r,
        ReadOptions::default(),
        |db, keys| {
            if db < databases {
                batch.borrow_mut().push(Loaded::Presize {
                    db: db as usize,
                    keys: keys.min(keys_max) as usize,
                });
            }
        },
        |e| {
            if e.db >= databases {
                return Err(FormatError::Invalid(format!(
                    "the file uses database {} but this node has {databases} (--databases)",
                    e.db
                )));
            }
            if e.expire_ms.is_some_and(|at| at <= now_ms) {
                s.keys_expired += 1;
                return Ok(());
            }
            let mut b = batch.borrow_mut();
            b.push(Loaded::Entry {
                db: e.db as usize,
                key: Str::from_vec(e.key),
                value: e.value,
                expire_ms: e.expire_ms,
            });
            if b.len() >= LOAD_BATCH_ENTRIES {
                let full = std::mem::replace(&mut *b, Vec::with_capacity(LOAD_BATCH_ENTRIES));
                tx.send(full).map_err(|_| gone())?;
            }
            Ok(())
        },
    )?;
    tx.send(batch.into_inner()).map_err(|_| gone())?;
    s.bytes = summary.bytes;
    Ok((summary, s))
}

/// The inserting half of a load: applies batches until the decoder hangs up.
/// Returns how many keys it inserted (empty collections are skipped, as Redis does).
fn insert_loaded(ks: &mut Keyspace, rx: mpsc::Receiver<Vec<Loaded>>) -> Result<u64, FormatError> {
    let mut inserted = 0;
    for batch in rx {
        let mut batch = std::collections::VecDeque::from(batch);
        while let Some(loaded) = batch.pop_front() {
            if let Some(Loaded::Entry { db, key, .. }) = batch.get(2 * INSERT_PREFETCH_AHEAD) {
                ks.prefetch(*db, key);
            }
            if let Some(Loaded::Entry { db, key, .. }) = batch.get(INSERT_PREFETCH_AHEAD) {
                ks.prefetch_chain(*db, key);
            }
            match loaded {
                Loaded::Presize { db, keys } => ks.reserve(db, keys),
                Loaded::Entry {
                    db,
                    key,
                    value,
                    expire_ms,
                } => {
                    let Some(value) = to_value(value)? else {
                        continue;
                    };
                    if !ks.insert_new_entry(db, key, value, expire_ms) {
                        return Err(FormatError::Invalid(format!(
                            "duplicate key in database {db}"
                        )));
                    }
                    inserted += 1;
                }
            }
        }
    }
    Ok(inserted)
}

/// DUMP's payload for a value: its RDB encoding, the RDB version and a CRC-64.
pub fn dump_payload(e: &Entry, compress: bool) -> Result<Vec<u8>, FormatError> {
    let mut w = RdbWriter::for_dump(Vec::new(), compress);
    write_entry(&mut w, e)?;
    w.finish_dump()
}

/// Why RESTORE refuses a payload, in Redis's words.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("ERR DUMP payload version or checksum are wrong")]
    Trailer,
    #[error("ERR Bad data format")]
    Format,
}

/// The value a DUMP payload holds, checked as RESTORE checks it.
pub fn restore_payload(payload: &[u8], string_len_max_bytes: u64) -> Result<Value, RestoreError> {
    let opts = ReadOptions {
        string_len_max_bytes,
        ..ReadOptions::default()
    };
    let value = formats::rdb::read_dump(payload, opts).map_err(|e| match e {
        FormatError::BadDumpTrailer => RestoreError::Trailer,
        _ => RestoreError::Format,
    })?;
    match to_value(value) {
        Ok(Some(v)) => Ok(v),
        _ => Err(RestoreError::Format),
    }
}

/// The in-memory value of a loaded one; None for an empty collection (Redis skips those).
fn to_value(v: RdbValue) -> Result<Option<Value>, FormatError> {
    let dup = |what: &str| FormatError::Invalid(format!("duplicate {what} in a collection"));
    Ok(Some(match v {
        RdbValue::String(b) => Value::Str(Str::from_vec(b)),
        _ if is_empty(&v) => return Ok(None),
        RdbValue::List(items) => {
            Value::List(Box::new(items.into_iter().map(Str::from_vec).collect()))
        }
        RdbValue::Set(items) => {
            let mut d = Dict::new();
            for m in items {
                if d.insert(Str::from_vec(m)).is_some() {
                    return Err(dup("set member"));
                }
            }
            Value::Set(Box::new(d))
        }
        RdbValue::Hash(pairs) => {
            let mut d = Dict::new();
            for (name, value) in pairs {
                if d.insert(Field {
                    name: Str::from_vec(name),
                    value: Str::from_vec(value),
                })
                .is_some()
                {
                    return Err(dup("hash field"));
                }
            }
            Value::Hash(Box::new(d))
        }
        RdbValue::ZSet(pairs) => {
            let mut z = ZSet::default();
            for (m, score) in pairs {
                if score.is_nan() {
                    return Err(FormatError::Invalid(
                        "sorted set score is not a number".into(),
                    ));
                }
                if z.insert(&m, score).is_some() {
                    return Err(dup("sorted set member"));
                }
            }
            Value::ZSet(Box::new(z))
        }
        RdbValue::Stream(st) => Value::Stream(Box::new(from_rdb_stream(*st))),
    }))
}

fn rdb_id(id: StreamId) -> RdbStreamId {
    RdbStreamId {
        ms: id.ms,
        seq: id.seq,
    }
}

fn ks_id(id: RdbStreamId) -> StreamId {
    StreamId::new(id.ms, id.seq)
}

/// A stream as the RDB writer takes it (live entries, groups in name order).
fn to_rdb_stream(s: &Stream) -> RdbStream {
    let entries = s
        .range(StreamId::MIN, StreamId::MAX, false, 0)
        .into_iter()
        .map(|e| RdbStreamEntry {
            id: rdb_id(e.id),
            fields: e.fields.iter().map(|f| f.to_vec()).collect(),
        })
        .collect();
    let groups = s
        .groups
        .iter()
        .map(|(name, g)| RdbGroup {
            name: name.to_vec(),
            last_id: rdb_id(g.last_id),
            entries_read: g.entries_read,
            pel: g
                .pel
                .iter()
                .map(|(id, n)| RdbPending {
                    id: rdb_id(*id),
                    delivery_time_ms: n.delivery_time_ms,
                    delivery_count: n.delivery_count,
                })
                .collect(),
            consumers: g
                .consumers
                .iter()
                .map(|(cname, c)| RdbConsumer {
                    name: cname.to_vec(),
                    seen_time_ms: c.seen_time_ms,
                    active_time_ms: None,
                    pel: c.pel.iter().map(|id| rdb_id(*id)).collect(),
                })
                .collect(),
        })
        .collect();
    RdbStream {
        entries,
        last_id: rdb_id(s.last_id),
        first_id: rdb_id(s.first_id),
        max_deleted_id: rdb_id(s.max_deleted_id),
        entries_added: s.entries_added,
        groups,
    }
}

/// A loaded stream, its entries regrouped into nodes with Redis's default node limits.
fn from_rdb_stream(r: RdbStream) -> Stream {
    let mut s = Stream::default();
    let limits = keyspace::Encodings::default().stream_nodes();
    for e in r.entries {
        s.append(
            ks_id(e.id),
            e.fields.into_iter().map(Str::from_vec).collect(),
            limits,
        );
    }
    s.last_id = ks_id(r.last_id);
    s.first_id = ks_id(r.first_id);
    s.max_deleted_id = ks_id(r.max_deleted_id);
    s.entries_added = r.entries_added;
    for g in r.groups {
        let mut group = Group::new(ks_id(g.last_id), g.entries_read);
        let mut owner: std::collections::HashMap<RdbStreamId, Str> =
            std::collections::HashMap::new();
        for c in g.consumers {
            let name = Str::from_vec(c.name);
            let mut consumer = Consumer {
                seen_time_ms: c.seen_time_ms,
                ..Consumer::default()
            };
            for id in c.pel {
                owner.insert(id, name.clone());
                consumer.pel.insert(ks_id(id));
            }
            group.consumers.insert(name, consumer);
        }
        for p in g.pel {
            // The reader checked every pending entry has exactly one owner.
            let consumer = owner.remove(&p.id).unwrap_or_else(|| Str::new(b""));
            group.pel.insert(
                ks_id(p.id),
                Nack {
                    delivery_time_ms: p.delivery_time_ms,
                    delivery_count: p.delivery_count,
                    consumer,
                },
            );
        }
        s.groups.insert(Str::from_vec(g.name), group);
    }
    s
}

fn is_empty(v: &RdbValue) -> bool {
    match v {
        // An empty stream is a value of its own (its groups and IDs stay).
        RdbValue::Stream(_) => false,
        RdbValue::String(_) => false,
        RdbValue::List(l) | RdbValue::Set(l) => l.is_empty(),
        RdbValue::Hash(h) => h.is_empty(),
        RdbValue::ZSet(z) => z.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RDB of `keys` strings in database `db`, the key named `dup` written twice and
    /// the ones below `expired` already past their deadline; `cut` drops that many bytes
    /// off the end.
    fn rdb(db: u64, keys: u64, dup: Option<u64>, expired: u64, cut: usize) -> Vec<u8> {
        let mut w = RdbWriter::new(Vec::new(), WriteOptions::default()).unwrap();
        w.select_db(db, Some((keys, expired))).unwrap();
        for i in (0..keys).chain(dup) {
            let at = (i < expired).then_some(1_000);
            w.write_string(format!("k{i}").as_bytes(), at, b"v")
                .unwrap();
        }
        let mut bytes = w.finish().unwrap();
        bytes.truncate(bytes.len() - cut);
        bytes
    }

    // Enough keys that the decoder fills the channel and waits on the inserter.
    const KEYS: u64 = (LOAD_BATCH_ENTRIES * LOAD_BATCHES_AHEAD * 4) as u64;

    #[test]
    fn a_load_inserts_every_key_in_file_order_across_batches() {
        let mut ks = Keyspace::new(16);
        let s = load_rdb_from(&rdb(3, KEYS, None, 10, 0)[..], &mut ks, 2_000).unwrap();
        assert_eq!((s.keys_loaded, s.keys_expired), (KEYS - 10, 10));
        assert!(ks.get(3, b"k9").is_none(), "expired keys are dropped");
        assert!(ks.get(3, b"k10").is_some());
        assert!(ks.get(3, format!("k{}", KEYS - 1).as_bytes()).is_some());
    }

    #[test]
    fn a_save_on_several_threads_writes_every_key_once_in_a_file_that_loads() {
        // More pieces than may be ahead of the writer, in two databases, with collections
        // among the strings.
        let keys = SAVE_PIECE_KEYS * (SAVE_PIECES_AHEAD + 3);
        let mut ks = Keyspace::new(16);
        for i in 0..keys {
            let value = match i % 3 {
                0 => Value::Str(Str::from_vec(format!("value-{i}").into_bytes())),
                1 => Value::List(Box::new(
                    (0..3)
                        .map(|j| Str::from_vec(format!("{i}:{j}").into()))
                        .collect(),
                )),
                _ => {
                    let mut d = Dict::new();
                    d.insert(Str::from_vec(i.to_string().into_bytes()));
                    Value::Set(Box::new(d))
                }
            };
            let key = Str::from_vec(format!("key:{i}").into_bytes());
            assert!(ks.insert_new_entry(i % 2 * 5, key, value, None));
        }
        let dir = std::env::temp_dir().join(format!("save-pieces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dump.rdb");
        save_to(&mut ks, &NodeConfig::default(), &path, false).unwrap();
        let mut loaded = Keyspace::new(16);
        let s = load_rdb(&path, &mut loaded, 0).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.keys_loaded, keys as u64);
        for db in [0, 5] {
            assert_eq!(loaded.db(db).len(), ks.db(db).len());
        }
        for i in [0, 1, 2, keys / 2, keys - 1] {
            let key = format!("key:{i}");
            let (a, b) = (ks.db(i % 2 * 5), loaded.db(i % 2 * 5));
            let (a, b) = (a.dict().get(key.as_bytes()), b.dict().get(key.as_bytes()));
            assert_eq!(
                a.map(|e| dump_payload(e, false).unwrap()),
                b.map(|e| dump_payload(e, false).unwrap()),
                "{key}"
            );
        }
    }

    #[test]
    fn a_duplicate_key_stops_the_decoder_and_is_the_error_reported() {
        let mut ks = Keyspace::new(16);
        let e = load_rdb_from(&rdb(0, KEYS, Some(7), 0, 0)[..], &mut ks, 0).unwrap_err();
        assert!(e.to_string().contains("duplicate key in database 0"), "{e}");
    }

    #[test]
    fn a_database_beyond_the_nodes_count_is_refused() {
        let mut ks = Keyspace::new(2);
        let e = load_rdb_from(&rdb(5, 3, None, 0, 0)[..], &mut ks, 0).unwrap_err();
        assert!(
            e.to_string().contains("database 5 but this node has 2"),
            "{e}"
        );
    }

    #[test]
    fn a_truncated_file_after_many_keys_fails_without_hanging() {
        let mut ks = Keyspace::new(16);
        let e = load_rdb_from(&rdb(0, KEYS, None, 0, 5)[..], &mut ks, 0).unwrap_err();
        assert!(e.to_string().contains("unexpected end of file"), "{e}");
    }
}
