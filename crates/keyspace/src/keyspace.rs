//! The databases, expiry, and the bookkeeping that connections need from writes.
//!
//! Time is passed in ([`Keyspace::set_clock`]); nothing here reads the wall clock.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use crate::notify;
use crate::stream::Stream;
use crate::value::{Encodings, Field, ZSet};
use crate::{CmdError, Dict, DictEntry, Str, Value};

/// A key, its value and its absolute expiry in unix milliseconds.
pub struct Entry {
    pub key: Str,
    pub value: Value,
    /// The deadline (0: none) in the low 63 bits; the snapshot mark in the top bit, kept
    /// here so that marking costs no memory per key.
    expire_word: u64,
}

const MARK_BIT: u64 = 1 << 63;

impl Entry {
    fn new(key: Str, value: Value, deadline: u64, mark: bool) -> Entry {
        let mut e = Entry {
            key,
            value,
            expire_word: deadline,
        };
        e.set_mark(mark);
        e
    }

    pub fn expire_at_ms(&self) -> Option<u64> {
        let at = self.deadline();
        (at != 0).then_some(at)
    }

    fn deadline(&self) -> u64 {
        self.expire_word & !MARK_BIT
    }

    fn set_deadline(&mut self, at_ms: u64) {
        self.expire_word = (self.expire_word & MARK_BIT) | (at_ms & !MARK_BIT);
    }

    fn mark(&self) -> bool {
        self.expire_word & MARK_BIT != 0
    }

    fn set_mark(&mut self, mark: bool) {
        self.expire_word = if mark {
            self.expire_word | MARK_BIT
        } else {
            self.expire_word & !MARK_BIT
        };
    }
}

impl DictEntry for Entry {
    fn key(&self) -> &[u8] {
        &self.key
    }
}

/// One numbered database: the keys, and the volatile keys ordered by deadline so active
/// expiry can remove every overdue key, not just a random sample of them.
#[derive(Default)]
pub struct Db {
    pub(crate) dict: Dict<Entry>,
    pub(crate) expires: BTreeSet<(u64, Str)>,
    /// Progress of the running snapshot through this database; None when it holds no
    /// entry the snapshot still owes.
    snap: Option<DbSnap>,
}

/// Where a snapshot stands in one database.
struct DbSnap {
    /// The database number the entries had when the snapshot began (SWAPDB moves them).
    origin: usize,
    walk: Walk,
}

/// How a snapshot walks one database's dict.
#[derive(Clone, Copy)]
enum Walk {
    /// Buckets in index order (cache-friendly) while the table keeps this size.
    InOrder { next: usize, buckets: usize },
    /// SCAN's resize-proof cursor, from the start: taken when the table resized or was
    /// rehashing (entries already handed over carry the mark and are skipped).
    Cursor(u64),
}

impl Walk {
    fn start(dict: &Dict<Entry>) -> Walk {
        match dict.stable_buckets() {
            Some(buckets) => Walk::InOrder { next: 0, buckets },
            None => Walk::Cursor(0),
        }
    }
}

impl Db {
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    pub fn volatile_len(&self) -> usize {
        self.expires.len()
    }

    /// Every entry, expired ones included (callers filter with [`Entry::expire_at_ms`]).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.dict.iter()
    }

    pub fn dict(&self) -> &Dict<Entry> {
        &self.dict
    }
}

/// Counters reported by INFO stats.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub expired_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// Values UNLINK handed to Redis's background freeing (INFO `lazyfreed_objects`).
    pub lazyfreed_objects: u64,
}

pub struct Keyspace {
    dbs: Vec<Db>,
    now_ms: u64,
    /// Keys some connection waits on (WATCH, blocking pops), with how many interests each.
    interest: HashMap<(usize, Str), u32>,
    /// Interesting keys written since the last [`Keyspace::take_touched`].
    touched: Vec<(usize, Str)>,
    /// Writes since start, for save rules and INFO (`rdb_changes_since_last_save` uses deltas).
    pub dirty: u64,
    pub stats: Stats,
    /// The mark new entries get; a snapshot flips it, making every existing entry "owed".
    epoch_mark: bool,
    snapshot: Option<Snapshot>,
    /// Changes in the order they happened, as commands to replay (AOF); None when no one
    /// listens.
    feed: Option<Vec<(usize, Vec<Bytes>)>>,
    /// The thresholds OBJECT ENCODING judges values by (the node's `*-max-*` settings).
    pub encodings: Encodings,
    /// The function libraries' code: part of the dataset as Redis persists it (RDB files
    /// carry it), kept in step by the node, which compiles it.
    function_codes: Vec<Bytes>,
    /// FUNCTION commands met while replaying an AOF, for the node to apply in order.
    replayed_function_commands: Vec<Vec<Bytes>>,
    /// The enabled keyspace notification classes (`notify-keyspace-events`).
    pub notify_classes: notify::Classes,
    /// Events raised since the node last took them ([`Keyspace::take_events`]).
    events: Vec<notify::Event>,
    /// Whether every written key is recorded (some client tracks keys: CLIENT TRACKING).
    pub track_writes: bool,
    /// Keys written since [`Keyspace::take_written`], when `track_writes`.
    written: Vec<Str>,
    /// A database was emptied since [`Keyspace::take_written`].
    flushed: bool,
}

/// Appends an event to `events` when `enabled` includes its class.
fn push_event(
    events: &mut Vec<notify::Event>,
    enabled: notify::Classes,
    class: notify::Classes,
    name: &'static str,
    db: usize,
    key: &[u8],
) {
    if enabled & class != 0 {
        events.push(notify::Event {
            class,
            name,
            db,
            key: Str::new(key),
        });
    }
}

/// A point-in-time snapshot being taken without stopping writes: every entry that existed
/// when it began is handed to the sink exactly once, with its value at that moment. The
/// scan hands over entries in steps; a write to an entry not yet handed over hands it over
/// first (copy-on-write at entry granularity), so memory grows by the sink's buffer only.
struct Snapshot {
    sink: Box<dyn SnapshotSink>,
    /// Databases emptied by FLUSHDB/FLUSHALL before the scan reached all their entries.
    detached: Vec<Db>,
    entries: u64,
}

/// Receives the entries of a snapshot, each once, in no particular order of databases.
pub trait SnapshotSink: std::any::Any + Send {
    fn entry(&mut self, db: usize, entry: &Entry);
}

/// A sink that drops what it gets: used to finish the marking of an abandoned snapshot.
struct DiscardSink;

impl SnapshotSink for DiscardSink {
    fn entry(&mut self, _db: usize, _entry: &Entry) {}
}

impl Keyspace {
    pub fn new(databases: usize) -> Keyspace {
        Keyspace {
            dbs: (0..databases.max(1)).map(|_| Db::default()).collect(),
            now_ms: 0,
            interest: HashMap::new(),
            touched: Vec::new(),
            dirty: 0,
            stats: Stats::default(),
            epoch_mark: false,
            snapshot: None,
            feed: None,
            function_codes: Vec::new(),
            replayed_function_commands: Vec::new(),
            encodings: Encodings::default(),
            notify_classes: 0,
            events: Vec::new(),
            track_writes: false,
            written: Vec::new(),
            flushed: false,
        }
    }

    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Keys in all databases, expired ones not yet removed included.
    pub fn dbs_len_total(&self) -> usize {
        self.dbs.iter().map(Db::len).sum()
    }

    pub fn db_count(&self) -> usize {
        self.dbs.len()
    }

    pub fn db(&self, db: usize) -> &Db {
        &self.dbs[db]
    }

    fn is_expired(&self, e: &Entry) -> bool {
        let at = e.deadline();
        at != 0 && at <= self.now_ms
    }

    /// Deletes `key` if its deadline has passed; returns whether it did.
    fn expire_if_due(&mut self, db: usize, key: &[u8]) -> bool {
        // Nothing is overdue (active expiry keeps it so between cycles): skip the lookup.
        // Most datasets have no volatile keys at all.
        if self.dbs[db]
            .expires
            .first()
            .is_none_or(|(at, _)| *at > self.now_ms)
        {
            return false;
        }
        let due = match self.dbs[db].dict.get(key) {
            Some(e) => self.is_expired(e),
            None => false,
        };
        if due {
            self.remove(db, key);
            // A lazily expired key changed as much as an actively expired one (WATCH,
            // tracking), as in Redis.
            self.touch(db, key);
            self.feed_del(db, key);
            self.stats.expired_keys += 1;
            self.notify(notify::EXPIRED, "expired", db, key);
        }
        due
    }

    /// The live entry under `key`, after lazily expiring it.
    pub fn get(&mut self, db: usize, key: &[u8]) -> Option<&mut Entry> {
        self.capture(db, key);
        self.expire_if_due(db, key);
        self.dbs[db].dict.get_mut(key)
    }

    /// Like [`Keyspace::get`], counting a keyspace hit or miss for INFO.
    pub fn lookup(&mut self, db: usize, key: &[u8]) -> Option<&mut Value> {
        self.capture(db, key);
        self.expire_if_due(db, key);
        match self.dbs[db].dict.get_mut(key) {
            Some(e) => {
                self.stats.keyspace_hits += 1;
                Some(&mut e.value)
            }
            None => {
                self.stats.keyspace_misses += 1;
                // Field by field: the hit arm's borrow of the databases is still live here.
                push_event(
                    &mut self.events,
                    self.notify_classes,
                    notify::KEY_MISS,
                    "keymiss",
                    db,
                    key,
                );
                None
            }
        }
    }

    /// Read-only view of a live entry; never deletes (an expired entry reads as absent).
    pub fn peek(&self, db: usize, key: &[u8]) -> Option<&Entry> {
        self.dbs[db].dict.get(key).filter(|e| !self.is_expired(e))
    }

    pub fn contains(&mut self, db: usize, key: &[u8]) -> bool {
        self.get(db, key).is_some()
    }

    /// Stores `value` under `key`, dropping any previous value and expiry.
    pub fn set(&mut self, db: usize, key: &[u8], value: Value) {
        self.set_with_expiry(db, key, value, None);
    }

    /// Stores `value`, keeping the key's current expiry.
    pub fn set_keep_ttl(&mut self, db: usize, key: &[u8], value: Value) {
        match self.get(db, key) {
            Some(e) => e.value = value,
            None => self.set(db, key, value),
        }
    }

    pub fn set_with_expiry(
        &mut self,
        db: usize,
        key: &[u8],
        value: Value,
        expire_at_ms: Option<u64>,
    ) {
        self.capture(db, key);
        let d = &mut self.dbs[db];
        match d.dict.get_mut(key) {
            Some(e) => {
                if e.deadline() != 0 {
                    d.expires.remove(&(e.deadline(), e.key.clone()));
                }
                e.value = value;
                e.set_deadline(0);
            }
            None => {
                d.dict
                    .insert_new(Entry::new(Str::new(key), value, 0, self.epoch_mark));
                self.notify(notify::NEW, "new", db, key);
            }
        }
        if let Some(at) = expire_at_ms {
            self.set_expiry(db, key, at);
        }
    }

    /// Removes `key`, live or expired; returns its entry.
    pub fn remove(&mut self, db: usize, key: &[u8]) -> Option<Entry> {
        self.capture(db, key);
        let d = &mut self.dbs[db];
        let e = d.dict.remove(key)?;
        if e.deadline() != 0 {
            d.expires.remove(&(e.deadline(), e.key.clone()));
        }
        Some(e)
    }

    /// Sizes an empty database for `keys` keys (see [`Dict::reserve`]).
    pub fn reserve(&mut self, db: usize, keys: usize) {
        self.dbs[db].dict.reserve(keys);
    }

    /// Adds a key that must not exist yet (loading a dump); false if it does.
    pub fn insert_new_entry(
        &mut self,
        db: usize,
        key: Str,
        value: Value,
        expire_at_ms: Option<u64>,
    ) -> bool {
        let d = &mut self.dbs[db];
        if d.dict.contains(&key) {
            return false;
        }
        let at = expire_at_ms.map_or(0, |at| at.clamp(1, !MARK_BIT));
        if at != 0 {
            d.expires.insert((at, key.clone()));
        }
        d.dict
            .insert_new(Entry::new(key, value, at, self.epoch_mark));
        true
    }

    /// Inserts an entry moved from elsewhere (RENAME, MOVE, loaders), replacing any value.
    pub fn insert_entry(&mut self, db: usize, key: Str, value: Value, expire_at_ms: Option<u64>) {
        if self.remove(db, &key).is_none() {
            self.notify(notify::NEW, "new", db, &key);
        }
        let at = expire_at_ms.map_or(0, |at| at.clamp(1, !MARK_BIT));
        let d = &mut self.dbs[db];
        if at != 0 {
            d.expires.insert((at, key.clone()));
        }
        d.dict
            .insert_new(Entry::new(key, value, at, self.epoch_mark));
    }

    /// Sets the absolute deadline of an existing key; returns false when there is no such key.
    pub fn set_expiry(&mut self, db: usize, key: &[u8], at_ms: u64) -> bool {
        self.capture(db, key);
        let d = &mut self.dbs[db];
        let Some(e) = d.dict.get_mut(key) else {
            return false;
        };
        if e.deadline() != 0 {
            d.expires.remove(&(e.deadline(), e.key.clone()));
        }
        // A deadline of 0 would read as "no expiry"; 1 ms after the epoch is just as past.
        e.set_deadline(at_ms.clamp(1, !MARK_BIT));
        d.expires.insert((e.deadline(), e.key.clone()));
        true
    }

    /// Removes a key's deadline; returns whether it had one.
    pub fn persist(&mut self, db: usize, key: &[u8]) -> bool {
        self.capture(db, key);
        let d = &mut self.dbs[db];
        let Some(e) = d.dict.get_mut(key) else {
            return false;
        };
        if e.deadline() == 0 {
            return false;
        }
        d.expires.remove(&(e.deadline(), e.key.clone()));
        e.set_deadline(0);
        true
    }

    /// Deletes overdue keys in deadline order, at most `keys_max` of them; returns how many.
    /// The caller runs this every cycle, so no key outlives its deadline by more than a
    /// cycle while the number of keys falling due per cycle stays under `keys_max`.
    pub fn active_expire(&mut self, keys_max: usize) -> usize {
        let mut removed = 0;
        for db in 0..self.dbs.len() {
            while removed < keys_max {
                let Some((at, key)) = self.dbs[db].expires.first().cloned() else {
                    break;
                };
                if at > self.now_ms {
                    break;
                }
                self.remove(db, &key);
                self.feed_del(db, &key);
                self.touch(db, &key);
                self.stats.expired_keys += 1;
                self.notify(notify::EXPIRED, "expired", db, &key);
                removed += 1;
            }
        }
        for d in &mut self.dbs {
            d.dict.rehash(1);
        }
        removed
    }

    pub fn flush_db(&mut self, db: usize) {
        let old = std::mem::take(&mut self.dbs[db]);
        self.touch_db(db, |key| old.dict.contains(key));
        match &mut self.snapshot {
            // The snapshot still owes entries of the old contents: it keeps them.
            Some(snap) if old.snap.is_some() => snap.detached.push(old),
            _ => drop(old),
        }
    }

    pub fn flush_all(&mut self) {
        for db in 0..self.dbs.len() {
            self.flush_db(db);
        }
    }

    pub fn swap_db(&mut self, a: usize, b: usize) {
        self.dbs.swap(a, b);
        let (da, db) = (&self.dbs[a].dict, &self.dbs[b].dict);
        let present = |key: &Str| da.contains(key) || db.contains(key);
        let keys: Vec<_> = self
            .interest
            .keys()
            .filter(|(d, k)| (*d == a || *d == b) && present(k))
            .cloned()
            .collect();
        self.touched.extend(keys);
        self.flushed = true;
    }

    /// Starts (or stops) collecting changes as commands; see [`Keyspace::drain_feed`].
    pub fn set_feed(&mut self, on: bool) {
        self.feed = on.then(Vec::new);
    }

    pub fn feed_enabled(&self) -> bool {
        self.feed.is_some()
    }

    /// Appends a change to the feed, when enabled.
    pub fn feed_push(&mut self, db: usize, args: Vec<Bytes>) {
        if let Some(f) = &mut self.feed {
            f.push((db, args));
        }
    }

    /// A key removed because its deadline passed is logged as DEL, as Redis does, so a
    /// replay never depends on when it runs.
    fn feed_del(&mut self, db: usize, key: &[u8]) {
        if self.feed.is_some() {
            self.feed_push(
                db,
                vec![Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)],
            );
        }
    }

    /// The changes logged since the last call, with their databases; the feed keeps its
    /// allocation for the next ones.
    pub fn drain_feed(&mut self) -> impl Iterator<Item = (usize, Vec<Bytes>)> + '_ {
        self.feed.iter_mut().flat_map(|f| f.drain(..))
    }

    /// Entries in the feed, to mark where a transaction's changes begin.
    pub fn feed_len(&self) -> usize {
        self.feed.as_ref().map_or(0, Vec::len)
    }

    pub fn function_codes(&self) -> &[Bytes] {
        &self.function_codes
    }

    pub fn set_function_codes(&mut self, codes: Vec<Bytes>) {
        self.function_codes = codes;
    }

    /// An AOF's FUNCTION command, for the node to apply after the replay.
    pub fn replayed_function_command(&mut self, args: Vec<Bytes>) {
        self.replayed_function_commands.push(args);
    }

    pub fn take_replayed_function_commands(&mut self) -> Vec<Vec<Bytes>> {
        std::mem::take(&mut self.replayed_function_commands)
    }

    /// Drops the changes logged since `len` (a script's writes under redis.set_repl
    /// REPL_NONE stay out of the log).
    pub fn feed_truncate(&mut self, len: usize) {
        if let Some(f) = &mut self.feed {
            f.truncate(len);
        }
    }

    /// Wraps the changes logged since `from` in MULTI/EXEC when there are several, so a
    /// replay applies the transaction whole.
    pub fn feed_wrap_transaction(&mut self, from: usize) {
        let Some(f) = &mut self.feed else {
            return;
        };
        if f.len() > from + 1 {
            let (first_db, last_db) = (f[from].0, f[f.len() - 1].0);
            f.insert(from, (first_db, vec![Bytes::from_static(b"MULTI")]));
            f.push((last_db, vec![Bytes::from_static(b"EXEC")]));
        }
    }

    /// Whether changes are waiting in the feed.
    pub fn feed_pending(&self) -> bool {
        self.feed.as_ref().is_some_and(|f| !f.is_empty())
    }

    /// Records event `name` of `class` on `key`, when that class is enabled.
    pub fn notify(&mut self, class: notify::Classes, name: &'static str, db: usize, key: &[u8]) {
        push_event(&mut self.events, self.notify_classes, class, name, db, key);
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The events raised since the last call, in order.
    pub fn take_events(&mut self) -> Vec<notify::Event> {
        std::mem::take(&mut self.events)
    }

    /// Records a write to `key` for connections interested in it.
    pub fn touch(&mut self, db: usize, key: &[u8]) {
        if self.track_writes {
            self.written.push(Str::new(key));
        }
        if self.interest.is_empty() {
            return;
        }
        if let Some((k, _)) = self.interest.get_key_value(&(db, Str::new(key))) {
            self.touched.push(k.clone());
        }
    }

    /// The keys written since the last call, and whether a database was emptied.
    pub fn take_written(&mut self) -> (Vec<Str>, bool) {
        (
            std::mem::take(&mut self.written),
            std::mem::take(&mut self.flushed),
        )
    }

    pub fn has_written(&self) -> bool {
        !self.written.is_empty() || self.flushed
    }

    /// A database was emptied: the keys of interest it held (`existed`) changed, and
    /// tracking clients must drop everything. Watched keys it did not hold are untouched,
    /// as in Redis.
    fn touch_db(&mut self, db: usize, existed: impl Fn(&Str) -> bool) {
        // Noted even when no one tracks: the keys clients read before still are.
        self.flushed = true;
        let keys: Vec<_> = self
            .interest
            .keys()
            .filter(|(d, k)| *d == db && existed(k))
            .cloned()
            .collect();
        self.touched.extend(keys);
    }

    pub fn add_interest(&mut self, db: usize, key: &[u8]) {
        *self.interest.entry((db, Str::new(key))).or_insert(0) += 1;
    }

    pub fn remove_interest(&mut self, db: usize, key: &[u8]) {
        let k = (db, Str::new(key));
        if let Some(n) = self.interest.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.interest.remove(&k);
            }
        }
    }

    /// The interesting keys written since the last call.
    pub fn take_touched(&mut self) -> Vec<(usize, Str)> {
        std::mem::take(&mut self.touched)
    }

    pub fn has_touched(&self) -> bool {
        !self.touched.is_empty()
    }

    // Typed access used by the commands. `Ok(None)`: no such key; `Err`: another type.

    pub fn string(&mut self, db: usize, key: &[u8]) -> Result<Option<&Str>, CmdError> {
        match self.lookup(db, key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    pub fn list(&mut self, db: usize, key: &[u8]) -> Result<Option<&mut VecDeque<Str>>, CmdError> {
        match self.lookup(db, key) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    pub fn hash(&mut self, db: usize, key: &[u8]) -> Result<Option<&mut Dict<Field>>, CmdError> {
        match self.lookup(db, key) {
            None => Ok(None),
            Some(Value::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    pub fn set_members(
        &mut self,
        db: usize,
        key: &[u8],
    ) -> Result<Option<&mut Dict<Str>>, CmdError> {
        match self.lookup(db, key) {
            None => Ok(None),
            Some(Value::Set(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    pub fn zset(&mut self, db: usize, key: &[u8]) -> Result<Option<&mut ZSet>, CmdError> {
        match self.lookup(db, key) {
            None => Ok(None),
            Some(Value::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The value under `key`, created by `make` when absent; `Err` when it has another type
    /// (checked by `is_kind`).
    pub fn get_or_create(
        &mut self,
        db: usize,
        key: &[u8],
        is_kind: fn(&Value) -> bool,
        make: fn() -> Value,
    ) -> Result<&mut Value, CmdError> {
        self.capture(db, key);
        self.expire_if_due(db, key);
        let d = &mut self.dbs[db];
        let entry = if d.dict.contains(key) {
            d.dict.get_mut(key).expect("present")
        } else {
            push_event(
                &mut self.events,
                self.notify_classes,
                notify::NEW,
                "new",
                db,
                key,
            );
            d.dict
                .insert_new(Entry::new(Str::new(key), make(), 0, self.epoch_mark))
        };
        let v = &mut entry.value;
        if is_kind(v) {
            Ok(v)
        } else {
            Err(CmdError::WrongType)
        }
    }

    pub fn list_or_create(
        &mut self,
        db: usize,
        key: &[u8],
    ) -> Result<&mut VecDeque<Str>, CmdError> {
        match self.get_or_create(
            db,
            key,
            |v| matches!(v, Value::List(_)),
            || Value::List(Box::default()),
        )? {
            Value::List(l) => Ok(l),
            _ => unreachable!("kind checked"),
        }
    }

    pub fn hash_or_create(&mut self, db: usize, key: &[u8]) -> Result<&mut Dict<Field>, CmdError> {
        match self.get_or_create(
            db,
            key,
            |v| matches!(v, Value::Hash(_)),
            || Value::Hash(Box::default()),
        )? {
            Value::Hash(h) => Ok(h),
            _ => unreachable!("kind checked"),
        }
    }

    pub fn set_or_create(&mut self, db: usize, key: &[u8]) -> Result<&mut Dict<Str>, CmdError> {
        match self.get_or_create(
            db,
            key,
            |v| matches!(v, Value::Set(_)),
            || Value::Set(Box::default()),
        )? {
            Value::Set(s) => Ok(s),
            _ => unreachable!("kind checked"),
        }
    }

    pub fn zset_or_create(&mut self, db: usize, key: &[u8]) -> Result<&mut ZSet, CmdError> {
        match self.get_or_create(
            db,
            key,
            |v| matches!(v, Value::ZSet(_)),
            || Value::ZSet(Box::default()),
        )? {
            Value::ZSet(z) => Ok(z),
            _ => unreachable!("kind checked"),
        }
    }

    pub fn stream(&mut self, db: usize, key: &[u8]) -> Result<Option<&mut Stream>, CmdError> {
        match self.lookup(db, key) {
            None => Ok(None),
            Some(Value::Stream(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    pub fn stream_or_create(&mut self, db: usize, key: &[u8]) -> Result<&mut Stream, CmdError> {
        match self.get_or_create(
            db,
            key,
            |v| matches!(v, Value::Stream(_)),
            || Value::Stream(Box::default()),
        )? {
            Value::Stream(s) => Ok(s),
            _ => unreachable!("kind checked"),
        }
    }

    /// Deletes `key` if it holds an empty collection (Redis never keeps empty ones).
    pub fn remove_if_empty(&mut self, db: usize, key: &[u8]) {
        let empty = match self.dbs[db].dict.get(key).map(|e| &e.value) {
            Some(Value::List(l)) => l.is_empty(),
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::ZSet(z)) => z.is_empty(),
            _ => false,
        };
        if empty {
            self.remove(db, key);
            self.notify(notify::GENERIC, "del", db, key);
        }
    }

    /// A random live key of `db`.
    pub fn random_key(&mut self, db: usize) -> Option<Str> {
        // Bounded tries: a database of only expired keys yields none rather than spinning.
        for _ in 0..100 {
            let e = self.dbs[db].dict.random()?;
            let key = e.key.clone();
            if !self.expire_if_due(db, &key) {
                return Some(key);
            }
        }
        None
    }
}

// Snapshots (see [`Snapshot`]).
impl Keyspace {
    /// Hands `key`'s entry to the running snapshot if the snapshot still owes it: called
    /// before anything may change or remove the entry.
    #[inline]
    fn capture(&mut self, db: usize, key: &[u8]) {
        let Some(snap) = &mut self.snapshot else {
            return;
        };
        let d = &mut self.dbs[db];
        let Some(ds) = &d.snap else {
            return;
        };
        if let Some(e) = d.dict.get_mut(key)
            && e.mark() != self.epoch_mark
        {
            snap.sink.entry(ds.origin, e);
            snap.entries += 1;
            e.set_mark(self.epoch_mark);
        }
    }

    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Entries handed to the running snapshot so far.
    pub fn snapshot_entries(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.entries)
    }

    /// Begins a snapshot of the whole keyspace as it is now; O(databases). Returns the sink
    /// back if one is already running.
    pub fn snapshot_begin(
        &mut self,
        sink: Box<dyn SnapshotSink>,
    ) -> Result<(), Box<dyn SnapshotSink>> {
        if self.snapshot.is_some() {
            return Err(sink);
        }
        self.epoch_mark = !self.epoch_mark;
        for (i, d) in self.dbs.iter_mut().enumerate() {
            d.snap = (!d.dict.is_empty()).then(|| DbSnap {
                origin: i,
                walk: Walk::start(&d.dict),
            });
        }
        self.snapshot = Some(Snapshot {
            sink,
            detached: Vec::new(),
            entries: 0,
        });
        Ok(())
    }

    /// Advances the running snapshot by about `entries_max` entries; returns true when
    /// every owed entry has been handed over (then [`Keyspace::snapshot_end`] returns the sink).
    pub fn snapshot_step(&mut self, entries_max: usize) -> bool {
        let Some(snap) = &mut self.snapshot else {
            return true;
        };
        let mark = self.epoch_mark;
        let Snapshot {
            sink,
            detached,
            entries,
        } = snap;
        let mut visited = 0usize;
        while visited < entries_max {
            // Detached databases first: they are gone from the keyspace, nothing captures them.
            let from_detached = !detached.is_empty();
            let d = match detached.last_mut() {
                Some(d) => d,
                None => match self.dbs.iter_mut().find(|d| d.snap.is_some()) {
                    Some(d) => d,
                    None => return true,
                },
            };
            let ds = d
                .snap
                .as_mut()
                .expect("only databases with snapshot progress are picked");
            let origin = ds.origin;
            let mut hand_over = |e: &mut Entry| {
                visited += 1;
                if e.mark() != mark {
                    sink.entry(origin, e);
                    *entries += 1;
                    e.set_mark(mark);
                }
            };
            let finished = match ds.walk {
                Walk::InOrder { next, buckets } if d.dict.stable_buckets() == Some(buckets) => {
                    d.dict.bucket_mut(next, &mut hand_over);
                    ds.walk = Walk::InOrder {
                        next: next + 1,
                        buckets,
                    };
                    next + 1 >= buckets
                }
                // The table resized under the walk: start over with the cursor.
                Walk::InOrder { .. } => {
                    ds.walk = Walk::Cursor(0);
                    false
                }
                Walk::Cursor(c) => {
                    let next = d.dict.scan_mut(c, &mut hand_over);
                    ds.walk = Walk::Cursor(next);
                    next == 0
                }
            };
            // Empty buckets count too, so a sparse table still ends a step.
            visited += 1;
            if finished {
                d.snap = None;
                if from_detached {
                    detached.pop();
                }
            }
        }
        detached.is_empty() && self.dbs.iter().all(|d| d.snap.is_none())
    }

    /// Ends a finished snapshot, returning its sink; None (and nothing changes) while
    /// entries are still owed.
    pub fn snapshot_end(&mut self) -> Option<Box<dyn SnapshotSink>> {
        let done = self.dbs.iter().all(|d| d.snap.is_none())
            && self.snapshot.as_ref()?.detached.is_empty();
        if !done {
            return None;
        }
        self.snapshot.take().map(|s| s.sink)
    }

    /// Gives up the running snapshot's output: the sink is dropped and the remaining steps
    /// only finish the marking (every entry must carry the current mark before the next
    /// snapshot flips it).
    pub fn snapshot_abandon(&mut self) -> Option<Box<dyn SnapshotSink>> {
        let snap = self.snapshot.as_mut()?;
        Some(std::mem::replace(&mut snap.sink, Box::new(DiscardSink)))
    }

    /// The running snapshot's sink, for draining its output between steps.
    pub fn snapshot_sink(&mut self) -> Option<&mut dyn SnapshotSink> {
        self.snapshot.as_mut().map(|s| s.sink.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_and_active_expiry_follow_the_clock() {
        let mut ks = Keyspace::new(2);
        ks.set_clock(1_000);
        ks.set_with_expiry(0, b"a", Value::Str("1".into()), Some(1_500));
        ks.set_with_expiry(0, b"b", Value::Str("2".into()), Some(3_000));
        ks.set(1, b"c", Value::Str("3".into()));
        assert!(ks.contains(0, b"a"));
        ks.set_clock(1_500);
        assert!(ks.peek(0, b"a").is_none());
        assert!(!ks.contains(0, b"a"));
        assert_eq!(ks.stats.expired_keys, 1);
        ks.set_clock(3_000);
        assert_eq!(ks.active_expire(100), 1);
        assert_eq!(ks.db(0).len(), 0);
        assert_eq!(ks.db(0).volatile_len(), 0);
        assert_eq!(ks.db(1).len(), 1);
    }

    #[test]
    fn set_clears_ttl_and_keep_ttl_keeps_it() {
        let mut ks = Keyspace::new(1);
        ks.set_with_expiry(0, b"k", Value::Str("v".into()), Some(10));
        ks.set_keep_ttl(0, b"k", Value::Str("w".into()));
        assert_eq!(ks.peek(0, b"k").unwrap().expire_at_ms(), Some(10));
        ks.set(0, b"k", Value::Str("x".into()));
        assert_eq!(ks.peek(0, b"k").unwrap().expire_at_ms(), None);
        assert_eq!(ks.db(0).volatile_len(), 0);
    }

    #[test]
    fn touched_reports_only_interesting_keys() {
        let mut ks = Keyspace::new(1);
        ks.touch(0, b"x");
        ks.add_interest(0, b"w");
        ks.touch(0, b"x");
        ks.touch(0, b"w");
        assert_eq!(ks.take_touched(), vec![(0, Str::from("w"))]);
        ks.remove_interest(0, b"w");
        ks.touch(0, b"w");
        assert!(ks.take_touched().is_empty());
    }

    /// Collects what a snapshot hands over, as (db, key, value) with string values.
    type Row = (usize, Vec<u8>, Vec<u8>);
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<Row>>>);

    impl SnapshotSink for Collect {
        fn entry(&mut self, db: usize, e: &Entry) {
            let Value::Str(v) = &e.value else {
                panic!("test uses strings")
            };
            self.0
                .lock()
                .unwrap()
                .push((db, e.key.to_vec(), v.to_vec()));
        }
    }

    fn dataset(ks: &Keyspace) -> Vec<Row> {
        let mut all = Vec::new();
        for db in 0..ks.db_count() {
            for e in ks.db(db).entries() {
                let Value::Str(v) = &e.value else {
                    unreachable!()
                };
                all.push((db, e.key.to_vec(), v.to_vec()));
            }
        }
        all.sort();
        all
    }

    proptest::proptest! {
        /// Whatever writes run between the steps, the snapshot holds exactly the dataset
        /// as it was when the snapshot began, each entry once.
        #[test]
        fn snapshot_is_point_in_time_under_writes(
            keys in 1usize..400,
            ops in proptest::collection::vec((0u8..8, 0usize..500, 0usize..3), 0..300),
            step in 1usize..50,
            rounds in 1usize..3,
        ) {
            let mut ks = Keyspace::new(3);
            for i in 0..keys {
                ks.set(i % 3, format!("k{i}").as_bytes(), Value::Str(format!("v{i}").as_str().into()));
            }
            for _ in 0..rounds {
                let before = dataset(&ks);
                let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                ks.snapshot_begin(Box::new(Collect(got.clone()))).ok().unwrap();
                let mut ops = ops.iter();
                while !ks.snapshot_step(step) {
                    for &(op, k, db) in ops.by_ref().take(3) {
                        let key = format!("k{k}");
                        match op {
                            0 | 1 => ks.set(db, key.as_bytes(), Value::Str("new".into())),
                            2 => { ks.remove(db, key.as_bytes()); }
                            3 => { ks.set_expiry(db, key.as_bytes(), 1); }
                            4 => { ks.get(db, key.as_bytes()); }
                            5 => ks.flush_db(db),
                            6 => ks.swap_db(db, (db + 1) % 3),
                            _ => ks.set(db, format!("fresh{k}").as_bytes(), Value::Str("x".into())),
                        }
                    }
                }
                proptest::prop_assert!(ks.snapshot_end().is_some());
                let mut got = std::mem::take(&mut *got.lock().unwrap());
                got.sort();
                proptest::prop_assert_eq!(got, before);
            }
        }
    }
}
