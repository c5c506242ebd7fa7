//! RDB persistence of a node: SAVE, BGSAVE without fork, `save` rules, and loading the dump
//! at start.
//!
//! BGSAVE runs on the keyspace's point-in-time snapshot ([`keyspace::SnapshotSink`]): the
//! saver thread advances the snapshot in steps of at most [`BGSAVE_LOCK_HOLD_MAX`] under
//! the state lock, and writes the serialized bytes to the file with the lock released.
//! Writes that touch an entry the snapshot still owes hand it over first, so the file holds
//! the dataset as it was when BGSAVE began, and memory grows only by the bytes waiting to
//! be written.

use std::any::Any;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use formats::FormatError;
use formats::rdb::{CollectionKind, RdbValue, RdbWriter, ReadOptions, WriteOptions};
use keyspace::{Dict, Entry, Field, Keyspace, SnapshotSink, Str, Value, ZSet};

use crate::Shared;
use crate::state::State;

/// Longest a BGSAVE step holds the state lock: the bound on the pause writes see.
pub const BGSAVE_LOCK_HOLD_MAX: Duration = Duration::from_micros(250);
/// Entries serialized between clock checks within one step.
const STEP_ENTRIES: usize = 256;
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
    /// The node, for the saver thread (weak: the thread must not keep the node alive).
    shared: Weak<Shared>,
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
    pub fn shared(&self) -> Weak<Shared> {
        self.shared.clone()
    }

    pub fn set_shared(&mut self, shared: Weak<Shared>) {
        self.shared = shared;
    }

    pub fn new(shared: Weak<Shared>) -> RdbState {
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
            shared,
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

impl RdbSink {
    fn new(st: &State, aof_base: bool) -> Result<RdbSink, FormatError> {
        let opts = WriteOptions {
            compress: st.config.rdbcompression,
            checksum: st.config.rdbchecksum,
            ctime_unix: crate::unix_time_ms() / 1000,
            used_mem_bytes: crate::used_memory_bytes(),
            aof_base,
        };
        Ok(RdbSink {
            w: RdbWriter::new(Vec::with_capacity(64 * 1024), opts)?,
            db: None,
            sizes: (0..st.ks.db_count())
                .map(|i| Some((st.ks.db(i).len() as u64, st.ks.db(i).volatile_len() as u64)))
                .collect(),
            error: None,
            taken: 0,
        })
    }

    fn write(&mut self, db: usize, e: &Entry) -> Result<(), FormatError> {
        if self.db != Some(db) {
            let hint = self.sizes.get_mut(db).and_then(Option::take);
            self.w.select_db(db as u64, hint)?;
            self.db = Some(db);
        }
        write_entry(&mut self.w, e)
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

/// Writes one key in the plain RDB encodings.
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
pub fn save(st: &mut State) -> anyhow::Result<()> {
    let dirty = st.ks.dirty;
    let started = Instant::now();
    save_to(st, &dump_path(&st.config), false)?;
    saved(st, dirty);
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "DB saved on disk"
    );
    Ok(())
}

/// Writes a snapshot of the keyspace to `path` now, with the lock held.
pub fn save_to(st: &mut State, path: &Path, aof_base: bool) -> anyhow::Result<()> {
    if st.ks.snapshot_in_progress() {
        anyhow::bail!("Background save already in progress");
    }
    let mut file = AtomicFile::create(path.to_path_buf())?;
    let sink = RdbSink::new(st, aof_base)?;
    if st.ks.snapshot_begin(Box::new(sink)).is_err() {
        anyhow::bail!("a snapshot is already running");
    }
    let written = (|| -> anyhow::Result<()> {
        loop {
            let done = st.ks.snapshot_step(64 * 1024);
            if done {
                break;
            }
            if let Some(bytes) = sink_of(&mut st.ks).take_bytes(CHUNK_BYTES)? {
                file.write(&bytes)?;
            }
        }
        let tail = finish(&mut st.ks)?;
        file.write(&tail)?;
        Ok(())
    })();
    if let Err(e) = written {
        if st.ks.snapshot_in_progress() {
            abandon(&mut st.ks);
        }
        return Err(e);
    }
    file.commit()?;
    Ok(())
}

fn saved(st: &mut State, dirty_at_start: u64) {
    st.dirty_at_last_save = dirty_at_start;
    st.last_save_unix = crate::unix_time_ms() / 1000;
    st.rdb.saves += 1;
}

/// BGSAVE: begins the snapshot now and lets the saver thread write it.
pub fn bgsave(st: &mut State) -> anyhow::Result<()> {
    begin_background(st, Job::Rdb)?;
    tracing::info!("background saving started");
    Ok(())
}

/// Begins a snapshot for `kind` and hands it to the saver thread; returns its generation.
pub fn begin_background(st: &mut State, kind: Job) -> anyhow::Result<u64> {
    if st.rdb.job.is_some() {
        anyhow::bail!("Background save already in progress");
    }
    let sink = RdbSink::new(st, matches!(kind, Job::AofBase(_)))?;
    if st.ks.snapshot_begin(Box::new(sink)).is_err() {
        anyhow::bail!("Background save already in progress");
    }
    st.rdb.next_generation += 1;
    let generation = st.rdb.next_generation;
    st.rdb.job = Some(BgJob {
        generation,
        kind,
        started: Instant::now(),
        dirty_at_start: st.ks.dirty,
    });
    let shared = st.rdb.shared.clone();
    if st.rdb.saver.is_none() {
        let (tx, rx) = mpsc::channel();
        st.workers
            .spawn_thread("rdb-saver", move || saver_thread(rx, shared))?;
        st.rdb.saver = Some(tx);
    }
    let saver = st.rdb.saver.as_ref().expect("started above");
    saver
        .send(generation)
        .map_err(|_| anyhow::anyhow!("the saver thread is gone"))?;
    Ok(generation)
}

/// Puts `ks` in place of the dataset (DEBUG RELOAD, import); a background job over the old
/// dataset is cancelled.
pub fn replace_dataset(st: &mut State, mut ks: Keyspace) {
    cancel_bgsave(st);
    ks.dirty = st.ks.dirty;
    ks.set_feed(st.ks.feed_enabled());
    st.ks = ks;
}

/// Cancels a running background job (SHUTDOWN): its file is not written.
pub fn cancel_bgsave(st: &mut State) {
    if let Some(job) = st.rdb.job.take() {
        abandon(&mut st.ks);
        if matches!(job.kind, Job::AofBase(_)) {
            crate::aof::rewrite_done(st, job.generation, false);
        }
        tracing::info!("background saving cancelled");
    }
}

/// The save a stopping node makes: with `save` rules (or SHUTDOWN SAVE) and not NOSAVE.
/// A background save in progress is cancelled first, as Redis kills its child.
pub fn save_on_shutdown(st: &mut State, nosave: bool, force_save: bool) -> anyhow::Result<()> {
    if st.rdb.shutdown_saved {
        return Ok(());
    }
    st.rdb.shutdown_saved = true;
    if nosave || (st.config.save.is_empty() && !force_save) {
        cancel_bgsave(st);
        return Ok(());
    }
    cancel_bgsave(st);
    tracing::info!("saving the final RDB snapshot before exiting");
    save(st).inspect_err(|_| st.rdb.shutdown_saved = false)
}

/// Runs one background job per generation number received, until the node is gone.
fn saver_thread(jobs: mpsc::Receiver<u64>, shared: Weak<Shared>) {
    // Serving clients comes first: on a busy core the scheduler favours the connections
    // (Redis's fork child competes at full weight instead).
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::debug!(error = ?e, "could not lower the saver thread's priority");
    }
    while let Ok(generation) = jobs.recv() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        run_job(&shared, generation);
    }
}

fn run_job(shared: &Arc<Shared>, generation: u64) {
    let lock = || shared.state.lock().expect("state lock");
    let current = |st: &State| {
        st.rdb
            .job
            .as_ref()
            .is_some_and(|b| b.generation == generation)
    };
    let target = {
        let st = lock();
        match st
            .rdb
            .job
            .as_ref()
            .filter(|j| j.generation == generation)
            .map(|j| j.kind.clone())
        {
            Some(Job::Rdb) => Target::File(dump_path(&st.config)),
            Some(Job::AofBase(path)) => Target::File(path),
            Some(Job::Blob(tx)) => Target::Channel(tx),
            None => return,
        }
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
            let (bytes, done) = {
                let mut st = lock();
                if !current(&st) {
                    return Ok(None);
                }
                let begun = Instant::now();
                let mut done = false;
                while !done && begun.elapsed() < BGSAVE_LOCK_HOLD_MAX {
                    done = st.ks.snapshot_step(STEP_ENTRIES);
                }
                let bytes = if done {
                    Some(finish(&mut st.ks)?)
                } else {
                    sink_of(&mut st.ks).take_bytes(CHUNK_BYTES)?
                };
                (bytes, done)
            };
            if let Some(bytes) = bytes {
                file.write(bytes)?;
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
    let result = result.and_then(|file| file.map(|f| f.commit().map(|_| true)).transpose());
    let mut st = lock();
    let Some(job) = st.rdb.job.take_if(|b| b.generation == generation) else {
        return;
    };
    let secs = job.started.elapsed().as_secs();
    let ok = matches!(result, Ok(Some(true)));
    if let Err(e) = &result {
        if st.ks.snapshot_in_progress() {
            abandon(&mut st.ks);
        }
        st.rdb.last_failure = Some(Instant::now());
        tracing::error!(error = %e, "background saving failed");
    }
    match job.kind {
        Job::Rdb => {
            st.rdb.last_bgsave_ok = ok;
            if ok {
                saved(&mut st, job.dirty_at_start);
                st.rdb.last_bgsave_secs = Some(secs);
                tracing::info!(secs, "background saving terminated with success");
            }
        }
        Job::AofBase(_) => crate::aof::rewrite_done(&mut st, job.generation, ok),
        // The uploader reports the backup's outcome itself.
        Job::Blob(_) => {}
    }
}

/// The cron's check of the `save` rules and of a scheduled AOF rewrite.
pub fn cron(st: &mut State) {
    if st.rdb.job.is_some() {
        return;
    }
    if std::mem::take(&mut st.rdb.aof_rewrite_scheduled) {
        if let Err(e) = crate::aof::rewrite(st) {
            tracing::warn!(error = %e, "could not start the scheduled AOF rewrite");
        }
        return;
    }
    if st.config.save.is_empty() {
        return;
    }
    let changes = st.ks.dirty - st.dirty_at_last_save;
    let elapsed = (crate::unix_time_ms() / 1000).saturating_sub(st.last_save_unix);
    let due = st
        .config
        .save
        .iter()
        .any(|&(secs, min)| changes >= min && elapsed >= secs);
    let retry_ok = st.rdb.last_bgsave_ok
        || st
            .rdb
            .last_failure
            .is_none_or(|t| t.elapsed() >= BGSAVE_RETRY_DELAY);
    if due && retry_ok {
        tracing::info!(changes, secs = elapsed, "save rule met, saving");
        if let Err(e) = bgsave(st) {
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
    // A key takes at least 4 bytes of file: bounds what RESIZEDB may make us allocate.
    let keys_max = file.metadata().map_or(0, |m| m.len() / 4);
    load_rdb_bounded(
        BufReader::with_capacity(1 << 20, file),
        ks,
        now_ms,
        keys_max,
    )
    .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
}

/// [`load_rdb`] from any reader (AOF bases, object-store streams).
pub fn load_rdb_from(
    r: impl std::io::Read,
    ks: &mut Keyspace,
    now_ms: u64,
) -> anyhow::Result<LoadSummary> {
    load_rdb_bounded(r, ks, now_ms, PRESIZE_KEYS_MAX)
}

/// Most keys a RESIZEDB hint may pre-size a database for when the input's size is unknown.
const PRESIZE_KEYS_MAX: u64 = 1 << 20;

fn load_rdb_bounded(
    r: impl std::io::Read,
    ks: &mut Keyspace,
    now_ms: u64,
    keys_max: u64,
) -> anyhow::Result<LoadSummary> {
    let mut s = LoadSummary::default();
    let databases = ks.db_count() as u64;
    // RESIZEDB comes before the keys it sizes: kept until the next key arrives.
    let hints = std::cell::RefCell::new(Vec::new());
    let summary = formats::rdb::read_with_hints(
        r,
        ReadOptions::default(),
        |db, keys| hints.borrow_mut().push((db, keys)),
        |e| {
            for (db, keys) in hints.borrow_mut().drain(..) {
                if db < databases {
                    ks.reserve(db as usize, keys.min(keys_max) as usize);
                }
            }
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
            let Some(value) = to_value(e.value)? else {
                return Ok(());
            };
            if !ks.insert_new_entry(e.db as usize, Str::from_vec(e.key), value, e.expire_ms) {
                return Err(FormatError::Invalid(format!(
                    "duplicate key in database {}",
                    e.db
                )));
            }
            s.keys_loaded += 1;
            Ok(())
        },
    )?;
    s.bytes = summary.bytes;
    Ok(s)
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
    }))
}

fn is_empty(v: &RdbValue) -> bool {
    match v {
        RdbValue::String(_) => false,
        RdbValue::List(l) | RdbValue::Set(l) => l.is_empty(),
        RdbValue::Hash(h) => h.is_empty(),
        RdbValue::ZSet(z) => z.is_empty(),
    }
}
