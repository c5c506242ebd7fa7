//! The Redis 7 multi-part append-only file of a node: logging changes, flushing them under
//! the `appendfsync` policy, rewriting, and replaying at start.
//!
//! Changes come from the keyspace's feed as commands. Connections append them to
//! [`AofLog`] under the state lock; the flusher task writes them out of the lock once the
//! ready connections have run (one write(2) for all, plus one fsync under `always`: group
//! commit) and publishes the offset written. Replies wait for it, as Redis writes the log
//! before replying. Under `everysec` a thread fsyncs once a second.
//!
//! A rewrite opens the next incr file at once (the manifest names it next to the old ones),
//! then writes the new base from a keyspace snapshot taken at that same moment; when the
//! base is on disk the manifest switches to new base + new incr and old files are removed.
//!
//! The log feeds the storage-account shippers through [`ShipHooks`] (what the flusher has
//! written, new bases). This module works on [`AofLog`], the keyspace and the settings, not
//! on the node: the flusher reaches the log through a [`LogHost`].

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use formats::aof::{self, CommandReader, LogEnd, Manifest};
use keyspace::{Ctx, Keyspace};
use resp::ReplyBuf;

use crate::NodeConfig;
use crate::config::Fsync;
use crate::persist::{self, RdbState, write_atomically};
use crate::workers::Workers;
use tokio::sync::watch;

/// How often `everysec` fsyncs.
const EVERYSEC: Duration = Duration::from_secs(1);
/// Pause before retrying a failed write.
const WRITE_RETRY: Duration = Duration::from_millis(100);

/// What the flusher does next, in log order.
enum Chunk {
    Bytes(Vec<u8>),
    /// Later bytes go to this (already created) incr file.
    SwitchTo(PathBuf),
}

/// The log as the connections see it.
pub struct AofLog {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pending: Vec<Chunk>,
    /// Database the log last selected.
    selected: Option<usize>,
    /// Bytes appended since start (a logical offset, across files).
    pub appended: u64,
    /// The offset that is on disk (fsynced under `always`), for waiting connections.
    durable: Arc<tokio::sync::watch::Sender<u64>>,
    /// Tells the flusher bytes are pending (once until it takes them).
    flusher: Option<Arc<tokio::sync::Notify>>,
    flusher_told: bool,
    /// Bytes in the incr files since the last rewrite, and the base's size then: the
    /// auto-rewrite rule compares them.
    pub incr_bytes: u64,
    pub base_bytes: u64,
    pub rewrite: Option<Rewrite>,
    pub last_rewrite_ok: bool,
    pub last_rewrite_secs: Option<u64>,
    pub last_write_ok: bool,
    /// Feeds the storage-account shippers, when AOF accounts are configured.
    pub ship: Option<ShipHooks>,
    /// Replies wait until the primary account holds their writes (`aof-durability store`).
    store_durability: bool,
    /// What of the log is fsynced, for a drill's simulated power loss.
    pub disk: Arc<DiskSync>,
}

/// How much of the current incr file is on disk for certain (fsynced): what survives the
/// machine losing power, which a fault drill simulates by cutting the file back to it
/// (killing the process alone would leave the page cache, and the writes, intact).
#[derive(Debug, Default)]
pub struct DiskSync {
    point: std::sync::Mutex<(PathBuf, u64)>,
    /// A deliberately broken node (`DEBUG AOF-FSYNC off`, for tests of the drills): fsyncs
    /// are skipped while replies still claim them.
    pub skip: std::sync::atomic::AtomicBool,
}

impl DiskSync {
    fn synced(&self, file: &Path, len: u64) {
        *self.point.lock().expect("disk sync lock") = (file.to_path_buf(), len);
    }

    fn skipped(&self) -> bool {
        self.skip.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Cuts the current incr file back to what was fsynced, as a power loss would; returns
    /// the bytes lost. Only for a node that no longer writes (a drill's crash).
    pub fn lose_unsynced(&self) -> std::io::Result<u64> {
        let (file, len) = self.point.lock().expect("disk sync lock").clone();
        if file.as_os_str().is_empty() {
            return Ok(0);
        }
        let f = OpenOptions::new().write(true).open(&file)?;
        let on_disk = f.metadata()?.len();
        if on_disk <= len {
            return Ok(0);
        }
        f.set_len(len)?;
        f.sync_all()?;
        Ok(on_disk - len)
    }
}

/// A rewrite in progress: the files it will switch the manifest to.
pub struct Rewrite {
    pub generation: u64,
    pub started: Instant,
    base: aof::AofFile,
    incr: aof::AofFile,
}

/// What the flusher has written: the local incr file, its length, and the logical offset
/// of the log at that point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub file: PathBuf,
    pub len: u64,
    pub logical: u64,
}

/// A new local base (after a rewrite) and the incr file that continues it.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseReady {
    pub base: PathBuf,
    pub incr: PathBuf,
}

/// The channels the AOF flusher and rewrites feed the shippers through.
pub struct ShipHooks {
    pub progress: watch::Sender<Progress>,
    pub bases: watch::Sender<Option<BaseReady>>,
    /// Logical offset in the primary account (`aof-durability store` waits on it).
    pub shipped: Arc<watch::Sender<u64>>,
}

/// The node as the flusher reaches its log.
pub trait LogHost: Send + Sync {
    /// Runs `f` on the log under the node's lock; false when the node or its log is gone.
    fn with_log(&self, f: &mut dyn FnMut(&mut AofLog)) -> bool;
}

impl AofLog {
    /// A receiver of the durable offset, to wait on outside the lock.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.subscribe()
    }
}

fn manifest_path(st_dir: &Path, appendfilename: &str) -> PathBuf {
    st_dir.join(aof::manifest_name(appendfilename))
}

/// The AOF directory (`dir`/`appenddirname`).
pub fn dir(config: &NodeConfig) -> PathBuf {
    config.dir.join(&config.appenddirname)
}

/// The local AOF manifest.
pub fn manifest_file(config: &NodeConfig) -> PathBuf {
    manifest_path(&dir(config), &config.appendfilename)
}

/// Opens the AOF directory at start: replays it into `ks` when it has a manifest, or
/// creates the first base (from `ks` as it is) and incr file when it has none.
pub fn open(ks: &mut Keyspace, config: &NodeConfig) -> anyhow::Result<AofLog> {
    let dir = dir(config);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("create {}: {e}", dir.display()))?;
    let name = config.appendfilename.clone();
    let mpath = manifest_file(config);
    let manifest = if mpath.exists() {
        let text = std::fs::read_to_string(&mpath)
            .map_err(|e| anyhow::anyhow!("read {}: {e}", mpath.display()))?;
        let mut m =
            Manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", mpath.display()))?;
        let started = Instant::now();
        let keys = replay(&dir, &m, ks, config.aof_load_truncated)?;
        tracing::info!(
            keys,
            ms = started.elapsed().as_millis() as u64,
            "DB loaded from append only file"
        );
        // A directory with only a base (or only history) gets the incr file appends go to.
        if m.incrs.is_empty() {
            let seq = m.next_incr_seq();
            let incr = aof::AofFile {
                name: aof::incr_name(&name, seq),
                seq,
                kind: aof::FileKind::Incr,
            };
            File::create(dir.join(&incr.name))?.sync_all()?;
            m.incrs.push(incr);
            write_atomically(&mpath, m.to_text().as_bytes())?;
        }
        m
    } else {
        let base = aof::AofFile {
            name: aof::base_name(&name, 1, true),
            seq: 1,
            kind: aof::FileKind::Base,
        };
        let incr = aof::AofFile {
            name: aof::incr_name(&name, 1),
            seq: 1,
            kind: aof::FileKind::Incr,
        };
        persist::save_to(ks, config, &dir.join(&base.name), true)?;
        File::create(dir.join(&incr.name))?.sync_all()?;
        let m = Manifest {
            base: Some(base),
            history: Vec::new(),
            incrs: vec![incr],
        };
        write_atomically(&mpath, m.to_text().as_bytes())?;
        tracing::info!(dir = %dir.display(), "created the append only file");
        m
    };
    let incr_bytes = m_incr_bytes(&dir, &manifest);
    let base_bytes = manifest
        .base
        .as_ref()
        .and_then(|b| std::fs::metadata(dir.join(&b.name)).ok())
        .map_or(0, |m| m.len());
    ks.set_feed(true);
    Ok(AofLog {
        dir,
        manifest,
        pending: Vec::new(),
        selected: None,
        appended: 0,
        durable: Arc::new(tokio::sync::watch::channel(0).0),
        flusher: None,
        flusher_told: false,
        incr_bytes,
        base_bytes,
        rewrite: None,
        last_rewrite_ok: true,
        last_rewrite_secs: None,
        last_write_ok: true,
        ship: None,
        store_durability: false,
        disk: Arc::new(DiskSync::default()),
    })
}

fn m_incr_bytes(dir: &Path, m: &Manifest) -> u64 {
    m.incrs
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(&f.name)).ok())
        .map(|m| m.len())
        .sum()
}

/// Starts the flusher once the node exists.
pub fn start_flusher(
    log: &mut AofLog,
    config: &NodeConfig,
    workers: &Arc<Workers>,
    host: Arc<dyn LogHost>,
    ship: Option<ShipHooks>,
) -> anyhow::Result<()> {
    let store_durability = config.storage.aof_durability == crate::config::Durability::Store;
    // A write acknowledged once the store holds it must be on the local disk too: a crash
    // that keeps the disk restarts from it, not from the store.
    let fsync = match store_durability {
        true => Fsync::Always,
        false => config.appendfsync,
    };
    let current = log.dir.join(
        &log.manifest
            .incrs
            .last()
            .ok_or_else(|| anyhow::anyhow!("the aof manifest names no incr file"))?
            .name,
    );
    let file = OpenOptions::new().append(true).open(&current)?;
    let durable = log.durable.clone();
    let mut out = Output::new(file, current.clone(), fsync, log.disk.clone())?;
    // What the file holds now was read back at start: it is what the disk has.
    log.disk.synced(&current, out.len);
    if let Some(hooks) = &ship {
        out.progress = Some(hooks.progress.clone());
        hooks.progress.send_replace(Progress {
            file: current,
            len: out.len,
            logical: log.appended,
        });
    }
    log.ship = ship;
    log.store_durability = store_durability && log.ship.is_some();
    let notify = Arc::new(tokio::sync::Notify::new());
    // Stopped with the node's other workers between rounds: a write under way finishes.
    workers.spawn(
        "aof-flusher",
        flush_task(host, out, durable, notify.clone()),
    );
    log.flusher = Some(notify);
    Ok(())
}

/// Moves the keyspace's feed into the log; returns what a reply must wait for (see
/// [`durable_target`]), None when nothing was logged.
pub fn feed(
    log: Option<&mut AofLog>,
    ks: &mut Keyspace,
) -> Option<(u64, tokio::sync::watch::Receiver<u64>)> {
    if !ks.feed_pending() {
        return None;
    }
    let log = log?;
    if !matches!(log.pending.last(), Some(Chunk::Bytes(_))) {
        log.pending
            .push(Chunk::Bytes(Vec::with_capacity(64 * 1024)));
    }
    let Some(Chunk::Bytes(buf)) = log.pending.last_mut() else {
        unreachable!("a byte chunk was just ensured")
    };
    let before = buf.len();
    for (db, args) in ks.drain_feed() {
        if log.selected != Some(db) {
            let db_text = itoa::Buffer::new().format(db).as_bytes().to_vec();
            aof::encode_command(&[b"SELECT".as_slice(), &db_text], buf);
            log.selected = Some(db);
        }
        aof::encode_command(&args, buf);
    }
    let added = (buf.len() - before) as u64;
    log.appended += added;
    log.incr_bytes += added;
    if !log.flusher_told
        && let Some(f) = &log.flusher
    {
        log.flusher_told = true;
        f.notify_one();
    }
    durable_target(Some(log))
}

/// The offset a reply sent now must wait for: everything logged so far.
pub fn durable_target(log: Option<&AofLog>) -> Option<(u64, tokio::sync::watch::Receiver<u64>)> {
    let log = log?;
    match &log.ship {
        Some(hooks) if log.store_durability => Some((log.appended, hooks.shipped.subscribe())),
        _ => Some((log.appended, log.durable())),
    }
}

/// Takes what connections appended; returns the logical offset it ends at. None once the
/// node or its log is gone.
fn take_pending(host: &dyn LogHost, backlog: &mut VecDeque<Chunk>) -> Option<u64> {
    let mut upto = None;
    host.with_log(&mut |log| {
        log.flusher_told = false;
        backlog.extend(std::mem::take(&mut log.pending));
        upto = Some(log.appended);
    });
    upto
}

/// Publishes a round's outcome: the written offset, and the write status on change.
fn report(
    host: &dyn LogHost,
    result: std::io::Result<()>,
    upto: u64,
    durable: &tokio::sync::watch::Sender<u64>,
    reported_ok: &mut bool,
) {
    let ok = result.is_ok();
    match result {
        Ok(()) => {
            durable.send_replace(upto);
        }
        // Replies keep waiting: nothing unlogged is acknowledged.
        Err(e) => tracing::error!(error = %e, "writing the append only file failed; retrying"),
    }
    if ok != *reported_ok {
        *reported_ok = ok;
        host.with_log(&mut |log| log.last_write_ok = ok);
    }
}

/// The flusher, Redis's "before sleep" step: a round runs once the connections that were
/// ready have run, so all their writes share one write(2) (and, under `always`, one
/// fsync). Their replies wait for the round, as Redis writes the log before replying:
/// an acknowledged write survives the process being killed under every policy, and an
/// OS crash under `always`. The write runs on the node's thread, as Redis's does.
async fn flush_task(
    host: Arc<dyn LogHost>,
    mut out: Output,
    durable: Arc<tokio::sync::watch::Sender<u64>>,
    notify: Arc<tokio::sync::Notify>,
) {
    let mut backlog = VecDeque::new();
    let mut reported_ok = true;
    loop {
        if backlog.is_empty() {
            notify.notified().await;
        } else {
            tokio::time::sleep(WRITE_RETRY).await;
        }
        tokio::task::yield_now().await;
        let Some(upto) = take_pending(host.as_ref(), &mut backlog) else {
            return;
        };
        let result = out.write(&mut backlog);
        if result.is_ok()
            && let Some(p) = &out.progress
        {
            p.send_replace(Progress {
                file: out.path.clone(),
                len: out.len,
                logical: upto,
            });
        }
        report(host.as_ref(), result, upto, &durable, &mut reported_ok);
    }
}

/// `everysec`: the current incr file (a second handle to it) and whether it has unsynced
/// bytes, for the thread that fsyncs once a second off the node's thread.
struct EverySec {
    file: std::sync::Mutex<Option<(File, PathBuf)>>,
    dirty: std::sync::atomic::AtomicBool,
    disk: Arc<DiskSync>,
}

fn everysec_thread(target: Weak<EverySec>) {
    use std::sync::atomic::Ordering;
    loop {
        std::thread::sleep(EVERYSEC);
        let Some(t) = target.upgrade() else {
            return;
        };
        if t.dirty.swap(false, Ordering::AcqRel) {
            let file = t.file.lock().expect("fsync target lock");
            let Some((f, path)) = file.as_ref() else {
                continue;
            };
            if t.disk.skipped() {
                continue;
            }
            // Bytes written after the length is read may be synced too; only these are
            // known to be.
            let len = f.metadata().map_or(0, |m| m.len());
            match f.sync_data() {
                Ok(()) => t.disk.synced(path, len),
                Err(e) => {
                    t.dirty.store(true, Ordering::Release);
                    tracing::error!(error = %e, "fsync of the append only file failed");
                }
            }
        }
    }
}

/// The incr file the flusher appends to.
struct Output {
    file: File,
    path: PathBuf,
    /// Tells the storage-account shippers what is written.
    progress: Option<watch::Sender<Progress>>,
    /// Its length: where a failed write is cut back to, so a retry never duplicates bytes.
    len: u64,
    fsync: Fsync,
    everysec: Option<Arc<EverySec>>,
    disk: Arc<DiskSync>,
}

impl Output {
    fn new(
        file: File,
        path: PathBuf,
        fsync: Fsync,
        disk: Arc<DiskSync>,
    ) -> std::io::Result<Output> {
        let everysec = match fsync {
            Fsync::EverySec => {
                let target = Arc::new(EverySec {
                    file: std::sync::Mutex::new(Some((file.try_clone()?, path.clone()))),
                    dirty: false.into(),
                    disk: disk.clone(),
                });
                let weak = Arc::downgrade(&target);
                std::thread::Builder::new()
                    .name("aof-fsync".into())
                    .spawn(move || everysec_thread(weak))?;
                Some(target)
            }
            _ => None,
        };
        Ok(Output {
            len: file.metadata().map_or(0, |m| m.len()),
            file,
            path,
            progress: None,
            fsync,
            everysec,
            disk,
        })
    }

    /// Writes chunks from the front of `chunks`, removing each once written, then fsyncs
    /// under `always`. On error the failed chunk stays at the front.
    fn write(&mut self, chunks: &mut VecDeque<Chunk>) -> std::io::Result<()> {
        let mut wrote = false;
        while let Some(chunk) = chunks.front() {
            match chunk {
                Chunk::Bytes(b) => {
                    if let Err(e) = self.file.write_all(b) {
                        let _ = self.file.set_len(self.len);
                        return Err(e);
                    }
                    self.len += b.len() as u64;
                    wrote = true;
                }
                Chunk::SwitchTo(path) => {
                    if !self.disk.skipped() {
                        self.file.sync_all()?;
                    }
                    self.file = OpenOptions::new().append(true).open(path)?;
                    self.path = path.clone();
                    self.len = self.file.metadata()?.len();
                    if !self.disk.skipped() {
                        self.disk.synced(&self.path, self.len);
                    }
                    if let Some(t) = &self.everysec {
                        *t.file.lock().expect("fsync target lock") =
                            Some((self.file.try_clone()?, self.path.clone()));
                    }
                }
            }
            chunks.pop_front();
        }
        if wrote {
            match (self.fsync, &self.everysec) {
                (Fsync::Always, _) if self.disk.skipped() => {}
                (Fsync::Always, _) => {
                    self.file.sync_data()?;
                    self.disk.synced(&self.path, self.len);
                }
                (_, Some(t)) => t.dirty.store(true, std::sync::atomic::Ordering::Release),
                _ => {}
            }
        }
        Ok(())
    }
}

/// BGREWRITEAOF: switches appends to a new incr file and writes a new base from a snapshot
/// of this moment in the background.
pub fn rewrite(
    log: &mut AofLog,
    ks: &mut Keyspace,
    rdb: &mut RdbState,
    config: &NodeConfig,
) -> anyhow::Result<()> {
    let name = config.appendfilename.clone();
    if log.rewrite.is_some() {
        anyhow::bail!("Background append only file rewriting already in progress");
    }
    let base_seq = log.manifest.base.as_ref().map_or(1, |b| b.seq + 1);
    let incr_seq = log.manifest.next_incr_seq();
    let base = aof::AofFile {
        name: aof::base_name(&name, base_seq, true),
        seq: base_seq,
        kind: aof::FileKind::Base,
    };
    let incr = aof::AofFile {
        name: aof::incr_name(&name, incr_seq),
        seq: incr_seq,
        kind: aof::FileKind::Incr,
    };
    let incr_path = log.dir.join(&incr.name);
    File::create(&incr_path)?.sync_all()?;
    // Until the new base exists, a restart replays old base, old incrs and the new incr.
    let mut during = log.manifest.clone();
    during.incrs.push(incr.clone());
    write_atomically(&manifest_path(&log.dir, &name), during.to_text().as_bytes())?;
    log.manifest = during;
    log.pending.push(Chunk::SwitchTo(incr_path));
    log.selected = None;
    log.incr_bytes = 0;
    let base_path = log.dir.join(&base.name);
    let generation = persist::begin_background(ks, rdb, config, persist::Job::AofBase(base_path))?;
    log.rewrite = Some(Rewrite {
        generation,
        started: Instant::now(),
        base,
        incr,
    });
    tracing::info!("background append only file rewriting started");
    Ok(())
}

/// Called by the saver when the new base is on disk (or failed): switches the manifest and
/// removes the files it no longer names.
pub fn rewrite_done(log: &mut AofLog, config: &NodeConfig, generation: u64, ok: bool) {
    let name = config.appendfilename.clone();
    let Some(rw) = log.rewrite.take_if(|r| r.generation == generation) else {
        return;
    };
    if !ok {
        log.last_rewrite_ok = false;
        let _ = std::fs::remove_file(log.dir.join(&rw.base.name));
        return;
    }
    let old = std::mem::replace(
        &mut log.manifest,
        Manifest {
            base: Some(rw.base.clone()),
            history: Vec::new(),
            incrs: vec![rw.incr.clone()],
        },
    );
    let switched = write_atomically(
        &manifest_path(&log.dir, &name),
        log.manifest.to_text().as_bytes(),
    );
    if let Err(e) = switched {
        tracing::error!(error = %e, "could not switch the aof manifest; keeping the old files");
        log.manifest = old;
        log.last_rewrite_ok = false;
        return;
    }
    for f in old.base.iter().chain(&old.history).chain(&old.incrs) {
        if f.name != rw.incr.name {
            let _ = std::fs::remove_file(log.dir.join(&f.name));
        }
    }
    log.base_bytes = std::fs::metadata(log.dir.join(&rw.base.name)).map_or(0, |m| m.len());
    log.last_rewrite_ok = true;
    log.last_rewrite_secs = Some(rw.started.elapsed().as_secs());
    if let Some(hooks) = &log.ship {
        hooks.bases.send_replace(Some(BaseReady {
            base: log.dir.join(&rw.base.name),
            incr: log.dir.join(&rw.incr.name),
        }));
    }
    tracing::info!(
        secs = rw.started.elapsed().as_secs(),
        "background AOF rewrite finished successfully"
    );
}

/// The cron's check of auto-aof-rewrite-percentage / -min-size.
pub fn cron(log: &mut AofLog, ks: &mut Keyspace, rdb: &mut RdbState, config: &NodeConfig) {
    if log.rewrite.is_some() || ks.snapshot_in_progress() || config.auto_aof_rewrite_percentage == 0
    {
        return;
    }
    let size = log.base_bytes + log.incr_bytes;
    let base = log.base_bytes.max(1);
    let growth_pct = (size.saturating_sub(base)) * 100 / base;
    if size >= config.auto_aof_rewrite_min_size_bytes
        && growth_pct >= config.auto_aof_rewrite_percentage
    {
        tracing::info!(growth_pct, "starting automatic rewriting of AOF");
        if let Err(e) = rewrite(log, ks, rdb, config) {
            tracing::warn!(error = %e, "could not start the AOF rewrite");
        }
    }
}

/// Replays base then incr files into `ks`; returns the number of keys after loading.
fn replay(
    dir: &Path,
    m: &Manifest,
    ks: &mut Keyspace,
    load_truncated: bool,
) -> anyhow::Result<usize> {
    // The log is history: nothing expires while it is replayed (deadlines are absolute).
    let now = ks.now_ms();
    ks.set_clock(0);
    let files: Vec<_> = m.load_order().cloned().collect();
    for (i, f) in files.iter().enumerate() {
        let path = dir.join(&f.name);
        let last = i + 1 == files.len();
        let file =
            File::open(&path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        if r.fill_buf()?.starts_with(b"REDIS") {
            persist::load_rdb_from(&mut r, ks, 0)
                .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
            // An RDB preamble may be followed by commands (single-file AOFs of Redis 4-6).
        }
        match replay_commands(r, ks)? {
            Replayed::Clean => {}
            Replayed::Truncated { offset, reason } => {
                if !(last && load_truncated) {
                    anyhow::bail!(
                        "Bad file format reading the append only file {}: {reason} at offset {offset}",
                        f.name
                    );
                }
                tracing::warn!(file = %f.name, offset, "!!! Warning: short read while loading the AOF file !!! truncating it to the last whole command");
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(offset)?;
            }
            Replayed::Corrupt(e) => anyhow::bail!(
                "Bad file format reading the append only file {}: {e}",
                f.name
            ),
        }
    }
    ks.set_clock(now);
    Ok(ks.dbs_len_total())
}

enum Replayed {
    Clean,
    Truncated { offset: u64, reason: &'static str },
    Corrupt(String),
}

/// Runs the commands of one file; an unfinished MULTI at the end counts as truncated there.
fn replay_commands(r: impl BufRead, ks: &mut Keyspace) -> anyhow::Result<Replayed> {
    let mut reader = CommandReader::new(r);
    let mut db = 0usize;
    let mut multi: Option<(u64, Vec<Vec<Bytes>>)> = None;
    let mut out = ReplyBuf::default();
    loop {
        let start = reader.offset();
        let args = match reader.next_or_end() {
            Ok(Ok(args)) => args.into_iter().map(Bytes::from).collect::<Vec<_>>(),
            Ok(Err(LogEnd::Clean)) => {
                return Ok(match multi {
                    Some((at, _)) => Replayed::Truncated {
                        offset: at,
                        reason: "unfinished MULTI",
                    },
                    None => Replayed::Clean,
                });
            }
            Ok(Err(LogEnd::Truncated { .. })) => {
                let offset = multi.as_ref().map_or(start, |(at, _)| *at);
                return Ok(Replayed::Truncated {
                    offset,
                    reason: "unexpected end of file",
                });
            }
            Err(e) => return Ok(Replayed::Corrupt(e.to_string())),
        };
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match name.as_str() {
            "select" => {
                db = args
                    .get(1)
                    .and_then(|d| resp::parse_i64(d))
                    .and_then(|d| usize::try_from(d).ok())
                    .filter(|&d| d < ks.db_count())
                    .ok_or_else(|| anyhow::anyhow!("bad SELECT at offset {start}"))?;
            }
            "multi" => multi = Some((start, Vec::new())),
            "exec" => {
                let (_, queued) = multi
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("EXEC without MULTI at offset {start}"))?;
                for cmd in queued {
                    run_logged(ks, db, &cmd, &mut out, start)?;
                }
            }
            _ => match &mut multi {
                Some((_, q)) => q.push(args),
                None => run_logged(ks, db, &args, &mut out, start)?,
            },
        }
        out.clear();
    }
}

fn run_logged(
    ks: &mut Keyspace,
    db: usize,
    args: &[Bytes],
    out: &mut ReplyBuf,
    offset: u64,
) -> anyhow::Result<()> {
    // RESTORE is a node command (it needs the RDB reader); the log holds it in one form:
    // RESTORE key <absolute ms, 0: none> payload REPLACE [ABSTTL].
    if args[0].eq_ignore_ascii_case(b"restore") && args.len() >= 4 {
        let at = resp::parse_i64(&args[2]).filter(|t| *t >= 0);
        let value = crate::persist::restore_payload(&args[3], u64::MAX);
        if let (Some(at), Ok(value)) = (at, value) {
            ks.set_with_expiry(db, &args[1], value, (at > 0).then_some(at as u64));
        }
        return Ok(());
    }
    if args[0].eq_ignore_ascii_case(b"function") {
        // Libraries are compiled by the node once the replay is done.
        ks.replayed_function_command(args.to_vec());
        return Ok(());
    }
    let spec = keyspace::lookup(&args[0])
        .filter(|s| s.arity_ok(args.len()) && matches!(s.run, keyspace::Run::Data(_)))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown command '{}' at offset {offset}",
                String::from_utf8_lossy(&args[0])
            )
        })?;
    let mut ctx = Ctx::new(ks, db, out);
    ctx.in_multi = true;
    ctx.replaying = true;
    // A command that fails on replay failed the same way when it ran: Redis goes on too.
    let _ = keyspace::execute(spec, &mut ctx, args);
    Ok(())
}

/// Bytes waiting to be written, for INFO.
pub fn pending_bytes(log: &AofLog) -> usize {
    log.pending
        .iter()
        .map(|c| if let Chunk::Bytes(b) = c { b.len() } else { 0 })
        .sum()
}
