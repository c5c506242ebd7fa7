//! The databases, expiry, and the bookkeeping that connections need from writes.
//!
//! Time is passed in ([`Keyspace::set_clock`]); nothing here reads the wall clock.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use crate::memory::{self, Eviction};
use crate::notify;
use crate::stream::Stream;
use crate::value::{Encodings, Field, ZSet};
use crate::{CmdError, Dict, DictEntry, Str, Value};

/// A key, its value, its absolute expiry in unix milliseconds and how it was last used.
pub struct Entry {
    pub key: Str,
    pub value: Value,
    /// Packed so that a key's table node stays within its allocation size class: the
    /// snapshot mark in the top bit, then either ("wide", bit 62 set) a deadline of any
    /// size in the low 62 bits, or the key's access bits (LRU clock or LFU counter,
    /// [`memory::ACCESS_BITS`]) above a deadline counted from [`DEADLINE_BASE_MS`]
    /// in the low 39 bits. Keys whose deadline does not fit (before 2023, after 2041)
    /// carry no access information: eviction sees them as just used.
    word: u64,
}

const MARK_BIT: u64 = 1 << 63;
const WIDE_BIT: u64 = 1 << 62;
const WIDE_DEADLINE_MAX_MS: u64 = WIDE_BIT - 1;
const DEADLINE_BITS: u32 = 39;
const DEADLINE_MASK: u64 = (1 << DEADLINE_BITS) - 1;
const ACCESS_SHIFT: u32 = DEADLINE_BITS;
/// The origin of compact deadlines (2023-11-14); they reach 2^39 ms (17 years) beyond.
const DEADLINE_BASE_MS: u64 = 1_700_000_000_000;
/// The latest deadline a key can have; later ones are kept as this (4.6e18 ms, some
/// 146 million years: no difference a client can see before then).
pub const DEADLINE_MAX_MS: u64 = WIDE_DEADLINE_MAX_MS;

impl Entry {
    fn new(key: Str, value: Value, deadline: u64, mark: bool, access: u64) -> Entry {
        let mut e = Entry {
            key,
            value,
            word: access << ACCESS_SHIFT,
        };
        e.set_deadline(deadline);
        e.set_mark(mark);
        e
    }

    pub fn expire_at_ms(&self) -> Option<u64> {
        let at = self.deadline();
        (at != 0).then_some(at)
    }

    fn is_wide(&self) -> bool {
        self.word & WIDE_BIT != 0
    }

    fn deadline(&self) -> u64 {
        if self.is_wide() {
            return self.word & WIDE_DEADLINE_MAX_MS;
        }
        match self.word & DEADLINE_MASK {
            0 => 0,
            code => DEADLINE_BASE_MS + code - 1,
        }
    }

    /// Sets the deadline (0: none), keeping the mark, and the access bits when both fit.
    fn set_deadline(&mut self, at_ms: u64) {
        let mark = self.word & MARK_BIT;
        let access = self.access().unwrap_or(0);
        let compact = match at_ms {
            0 => Some(0),
            _ => at_ms
                .checked_sub(DEADLINE_BASE_MS)
                .map(|d| d + 1)
                .filter(|code| *code <= DEADLINE_MASK),
        };
        self.word = match compact {
            Some(code) => mark | (access << ACCESS_SHIFT) | code,
            None => mark | WIDE_BIT | at_ms.min(WIDE_DEADLINE_MAX_MS),
        };
    }

    /// The access bits (LRU clock or LFU counter); None for a key with a wide deadline.
    pub fn access(&self) -> Option<u64> {
        (!self.is_wide()).then_some((self.word >> ACCESS_SHIFT) & memory::ACCESS_MAX)
    }

    fn set_access(&mut self, access: u64) {
        if !self.is_wide() {
            let field = memory::ACCESS_MAX << ACCESS_SHIFT;
            self.word = (self.word & !field) | ((access & memory::ACCESS_MAX) << ACCESS_SHIFT);
        }
    }

    fn mark(&self) -> bool {
        self.word & MARK_BIT != 0
    }

    fn set_mark(&mut self, mark: bool) {
        self.word = if mark {
            self.word | MARK_BIT
        } else {
            self.word & !MARK_BIT
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
    /// What the entries cost ([`memory::entry_bytes`]), summed: kept current by the
    /// keyspace, except for the one key a command has taken and not yet given back.
    used: usize,
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
    /// SCAN's resize-proof cursor, from the start: taken when the table resized under an
    /// in-order walk (entries already handed over carry the mark and are skipped).
    Cursor(u64),
    /// Nothing walked yet, the table still rehashing: the steps finish the rehash first,
    /// then walk in order. A cursor walk over two tables reads buckets in bit-reversed
    /// order, a cache miss each, and took three times as long as rehash plus in-order walk.
    Rehash,
}

impl Walk {
    fn start(dict: &Dict<Entry>) -> Walk {
        match dict.stable_buckets() {
            Some(buckets) => Walk::InOrder { next: 0, buckets },
            None => Walk::Rehash,
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

    /// Calls `f` with the entries in buckets `range` of the table (expired ones included);
    /// see [`Keyspace::save_pieces`].
    pub fn for_each_in(&self, range: std::ops::Range<usize>, f: impl FnMut(&Entry)) {
        self.dict.for_each_in_buckets(range, f)
    }

    /// A random key that has a deadline. Drawn from the whole table when
    /// volatile keys are common; otherwise from the deadline index at a random deadline
    /// (uniform over deadlines rather than keys: the index cannot be sampled otherwise).
    fn random_volatile(&self) -> Option<&Entry> {
        const TABLE_DRAWS_MAX: usize = 16;
        let d = self;
        if d.expires.is_empty() {
            return None;
        }
        if d.expires.len() * 4 >= d.dict.len() {
            for _ in 0..TABLE_DRAWS_MAX {
                if let Some(e) = d.dict.random()
                    && e.deadline() != 0
                {
                    return Some(e);
                }
            }
        }
        let (lo, hi) = (d.expires.first()?.0, d.expires.last()?.0);
        let at = fastrand::u64(lo..=hi);
        let (_, key) = d.expires.range((at, Str::new(b""))..).next()?;
        d.dict.get(key)
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
    /// Keys removed to bring memory under `maxmemory` (INFO `evicted_keys`).
    pub evicted_keys: u64,
}

/// A key a command has taken for changes (see [`Keyspace::settle`]), with what it cost
/// when taken.
struct Pending {
    db: usize,
    key: Str,
    before: usize,
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
    /// How keys are chosen for eviction, and which access bits they carry.
    pub eviction: Eviction,
    /// The best eviction candidates of earlier rounds.
    pool: memory::Pool,
    pending: Option<Pending>,
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
            eviction: Eviction::default(),
            pool: memory::Pool::default(),
            pending: None,
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

    /// The databases split into pieces of about `entries` keys each, as (database, bucket
    /// range) in file order, for a blocking save to serialize on several threads
    /// ([`Db::for_each_in`]). Finishes any rehash first: the ranges hold while the
    /// keyspace is not changed.
    pub fn save_pieces(&mut self, entries: usize) -> Vec<(usize, std::ops::Range<usize>)> {
        self.settle();
        let mut pieces = Vec::new();
        for (i, d) in self.dbs.iter_mut().enumerate() {
            if d.dict.is_empty() {
                continue;
            }
            d.dict.finish_rehash();
            let buckets = d.dict.stable_buckets().unwrap_or(0);
            let n = d.dict.len().div_ceil(entries.max(1));
            let per_piece = buckets.div_ceil(n).max(1);
            pieces.extend(
                (0..buckets)
                    .step_by(per_piece)
                    .map(|from| (i, from..(from + per_piece).min(buckets))),
            );
        }
        pieces
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
        self.settle_other(db, key);
        let e = self.dbs[db].dict.get_mut(key)?;
        take(&mut self.pending, db, e);
        touch_access(e, self.now_ms, &self.eviction);
        Some(e)
    }

    /// Like [`Keyspace::get`] for reading only, without counting as an access (TTL, TYPE,
    /// EXISTS and OBJECT leave the key's idle time alone, as in Redis).
    pub fn get_untouched(&mut self, db: usize, key: &[u8]) -> Option<&Entry> {
        self.expire_if_due(db, key);
        self.dbs[db].dict.get(key)
    }

    /// Like [`Keyspace::get`], counting a keyspace hit or miss for INFO.
    pub fn lookup(&mut self, db: usize, key: &[u8]) -> Option<&mut Value> {
        self.capture(db, key);
        self.expire_if_due(db, key);
        self.settle_other(db, key);
        self.find_counted(db, key, true).map(|e| &mut e.value)
    }

    /// Like [`Keyspace::lookup`] for a command that only reads the value: no copy for a
    /// snapshot under way, and no measuring of it (a stream's measure walks two nodes).
    pub fn lookup_read(&mut self, db: usize, key: &[u8]) -> Option<&Value> {
        self.expire_if_due(db, key);
        self.find_counted(db, key, false).map(|e| &e.value)
    }

    /// The live entry, counted as a keyspace hit (and an access) or a miss; `take`: to be
    /// measured again when the command settles, as it may change.
    fn find_counted(&mut self, db: usize, key: &[u8], take_it: bool) -> Option<&mut Entry> {
        match self.dbs[db].dict.get_mut(key) {
            Some(e) => {
                self.stats.keyspace_hits += 1;
                if take_it {
                    take(&mut self.pending, db, e);
                }
                touch_access(e, self.now_ms, &self.eviction);
                Some(e)
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
        self.get_untouched(db, key).is_some()
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
        self.settle_other(db, key);
        let counted_later = self.pending.is_some();
        let access = self.new_access();
        let d = &mut self.dbs[db];
        match d.dict.get_mut(key) {
            Some(e) => {
                let before = memory::entry_bytes(e);
                if e.deadline() != 0 {
                    d.expires.remove(&(e.deadline(), e.key.clone()));
                }
                e.value = value;
                e.set_deadline(0);
                // An overwritten key keeps its LFU counter (one more access), as in Redis.
                if self.eviction.policy.is_lfu() {
                    touch_access(e, self.now_ms, &self.eviction);
                } else {
                    e.set_access(access);
                }
                if !counted_later {
                    d.used = d.used + memory::entry_bytes(e) - before.min(d.used);
                }
            }
            None => {
                let e =
                    d.dict
                        .insert_new(Entry::new(Str::new(key), value, 0, self.epoch_mark, access));
                if !counted_later {
                    d.used += memory::entry_bytes(e);
                }
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
        self.settle_other(db, key);
        let counted_later = self.pending.is_some();
        let d = &mut self.dbs[db];
        let e = d.dict.remove(key)?;
        if !counted_later {
            d.used = uncount(d.used, memory::entry_bytes(&e));
        }
        if e.deadline() != 0 {
            d.expires.remove(&(e.deadline(), e.key.clone()));
        }
        Some(e)
    }

    /// Sizes an empty database for `keys` keys (see [`Dict::reserve`]).
    pub fn reserve(&mut self, db: usize, keys: usize) {
        self.dbs[db].dict.reserve(keys);
    }

    /// Warms the cache for a coming [`Keyspace::insert_new_entry`] of `key` ([`Dict::prefetch`]).
    pub fn prefetch(&self, db: usize, key: &[u8]) {
        if let Some(d) = self.dbs.get(db) {
            d.dict.prefetch(key);
        }
    }

    /// The second step of [`Keyspace::prefetch`] ([`Dict::prefetch_chain`]).
    pub fn prefetch_chain(&self, db: usize, key: &[u8]) {
        if let Some(d) = self.dbs.get(db) {
            d.dict.prefetch_chain(key);
        }
    }

    /// Adds a key that must not exist yet (loading a dump); false if it does.
    pub fn insert_new_entry(
        &mut self,
        db: usize,
        key: Str,
        value: Value,
        expire_at_ms: Option<u64>,
    ) -> bool {
        self.settle();
        let access = self.new_access();
        let d = &mut self.dbs[db];
        if d.dict.contains(&key) {
            return false;
        }
        let at = expire_at_ms.map_or(0, |at| at.clamp(1, DEADLINE_MAX_MS));
        if at != 0 {
            d.expires.insert((at, key.clone()));
        }
        let e = d
            .dict
            .insert_new(Entry::new(key, value, at, self.epoch_mark, access));
        d.used += memory::entry_bytes(e);
        true
    }

    /// Inserts an entry moved from elsewhere (RENAME, MOVE, loaders), replacing any value.
    pub fn insert_entry(&mut self, db: usize, key: Str, value: Value, expire_at_ms: Option<u64>) {
        if self.remove(db, &key).is_none() {
            self.notify(notify::NEW, "new", db, &key);
        }
        // `remove` settled any other key taken: a pending one is this key.
        let counted_later = self.pending.is_some();
        let access = self.new_access();
        let at = expire_at_ms.map_or(0, |at| at.clamp(1, DEADLINE_MAX_MS));
        let d = &mut self.dbs[db];
        if at != 0 {
            d.expires.insert((at, key.clone()));
        }
        let e = d
            .dict
            .insert_new(Entry::new(key, value, at, self.epoch_mark, access));
        if !counted_later {
            d.used += memory::entry_bytes(e);
        }
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
        e.set_deadline(at_ms.clamp(1, DEADLINE_MAX_MS));
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
        removed
    }

    /// The tables' upkeep Redis's cron does: starts shrinking the tables that mostly
    /// emptied, and advances every rehash under way by up to `steps` buckets (zero without
    /// `activerehashing`), so a table that grew or shrank does not keep two tables' memory
    /// while writes are few. Returns whether a rehash is still under way.
    pub fn active_rehash(&mut self, steps: usize) -> bool {
        let mut pending = false;
        for d in &mut self.dbs {
            pending |= d.dict.rehash(steps);
        }
        pending
    }

    pub fn flush_db(&mut self, db: usize) {
        self.settle();
        self.pool.clear();
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
        self.settle();
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

    /// A string to read. A command that then replaces it goes through [`Keyspace::get`] or
    /// a setter, which copy and measure it before the change.
    pub fn string(&mut self, db: usize, key: &[u8]) -> Result<Option<&Str>, CmdError> {
        match self.lookup_read(db, key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// A string to change in place: overwritten within its length or lengthened with room
    /// to spare (APPEND, SETRANGE, SETBIT). The caller reports the change (`changed`).
    pub fn string_mut(&mut self, db: usize, key: &[u8]) -> Result<Option<&mut Str>, CmdError> {
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
        self.settle_other(db, key);
        let access = self.new_access();
        let d = &mut self.dbs[db];
        let entry = if d.dict.contains(key) {
            let e = d.dict.get_mut(key).expect("present");
            take(&mut self.pending, db, e);
            touch_access(e, self.now_ms, &self.eviction);
            e
        } else {
            push_event(
                &mut self.events,
                self.notify_classes,
                notify::NEW,
                "new",
                db,
                key,
            );
            // Counted when the command is done: it is about to fill the new value.
            self.pending.get_or_insert_with(|| Pending {
                db,
                key: Str::new(key),
                before: 0,
            });
            d.dict.insert_new(Entry::new(
                Str::new(key),
                make(),
                0,
                self.epoch_mark,
                access,
            ))
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

    /// A stream to read only (see [`Keyspace::lookup_read`]).
    pub fn stream_read(&mut self, db: usize, key: &[u8]) -> Result<Option<&Stream>, CmdError> {
        match self.lookup_read(db, key) {
            None => Ok(None),
            Some(Value::Stream(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
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

/// Remembers what `e` costs as the command takes it for changes, unless it was taken
/// already (then the older measure stands: the changes since are not counted yet).
fn take(pending: &mut Option<Pending>, db: usize, e: &Entry) {
    if pending.is_none() {
        *pending = Some(Pending {
            db,
            key: e.key.clone(),
            before: memory::entry_bytes(e),
        });
    }
}

/// Counts an access to `e` in its access bits: the LRU clock, or one more (probable) LFU
/// increment.
fn touch_access(e: &mut Entry, now_ms: u64, ev: &Eviction) {
    let Some(access) = e.access() else {
        return;
    };
    let next = if ev.policy.is_lfu() {
        memory::lfu_touch(access, now_ms, ev, fastrand::f64())
    } else {
        memory::lru_clock(now_ms)
    };
    e.set_access(next);
}

/// `used` less `bytes`; never below zero (a miscount shows in tests, not as a wrap).
fn uncount(used: usize, bytes: usize) -> usize {
    debug_assert!(bytes <= used, "uncounting {bytes} of {used} bytes");
    used.saturating_sub(bytes)
}

/// Keys evicted per call at most, so that one command's wait stays short; the cron
/// carries on when more must go.
pub const EVICTION_KEYS_PER_CALL_MAX: usize = 512;

/// What an eviction call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// Enough was freed (or nothing had to be).
    Enough,
    /// Keys went, more must: the per-call bound was reached.
    Running,
    /// Nothing more can go under the policy (noeviction, or no volatile key left).
    Stuck,
}

// Memory accounting and eviction (see [`memory`]).
impl Keyspace {
    /// The access bits a key gets when it is created.
    fn new_access(&self) -> u64 {
        if self.eviction.policy.is_lfu() {
            memory::lfu_new(self.now_ms)
        } else {
            memory::lru_clock(self.now_ms)
        }
    }

    /// Counts the change to the key taken last (what it costs now against what it cost
    /// when taken). The reference handed out for it is gone by the time anything else
    /// runs on the keyspace (it borrowed the keyspace mutably).
    pub fn settle(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let d = &mut self.dbs[p.db];
        let after = d.dict.get(&p.key).map_or(0, memory::entry_bytes);
        d.used = uncount(d.used + after, p.before);
    }

    /// Settles the key taken last unless it is `key`.
    #[inline]
    fn settle_other(&mut self, db: usize, key: &[u8]) {
        if let Some(p) = &self.pending
            && (p.db != db || p.key.as_bytes() != key)
        {
            self.settle();
        }
    }

    /// Drops the key taken last without measuring it again: for a command that changed
    /// nothing (its dirty count did not move), so it costs what it did.
    pub fn forget_taken(&mut self) {
        self.pending = None;
    }

    /// Bytes the dataset holds: the entries, the tables' bucket arrays, the expiry index
    /// (a key taken by a command counts as it was until [`Keyspace::settle`]).
    /// Bytes left before `maxmemory` (`usize::MAX`: none set): the key tables do not grow
    /// past it while they can hold on (see [`Dict::set_growth_headroom`]).
    pub fn set_growth_headroom(&mut self, bytes: usize) {
        for d in &mut self.dbs {
            d.dict.set_growth_headroom(bytes);
        }
    }

    pub fn dataset_bytes(&self) -> usize {
        let slot = std::mem::size_of::<usize>();
        self.dbs
            .iter()
            .map(|d| {
                d.used
                    + memory::alloc_size(d.dict.bucket_count() * slot)
                    + d.expires.len() * memory::EXPIRES_ENTRY_BYTES
            })
            .sum()
    }

    /// Recomputes what the entries cost from scratch, per database (tests compare it
    /// with the running sums).
    pub fn audit_bytes(&mut self) -> Vec<(usize, usize)> {
        self.settle();
        self.dbs
            .iter()
            .map(|d| (d.used, d.dict.iter().map(memory::entry_bytes).sum()))
            .collect()
    }

    /// Evicts keys under the policy until `bytes` are freed, at most
    /// [`EVICTION_KEYS_PER_CALL_MAX`] of them. Each goes as an expired key does: logged
    /// as DEL, watchers and tracking told, an `evicted` event raised.
    pub fn evict(&mut self, bytes: usize) -> Evicted {
        self.settle();
        // Counted per key from its database's figures (the bucket arrays shrink rarely
        // and late: leaving them out only makes eviction free a little more).
        let held = |d: &Db| d.used + d.expires.len() * memory::EXPIRES_ENTRY_BYTES;
        let mut freed = 0;
        for _ in 0..EVICTION_KEYS_PER_CALL_MAX {
            if freed >= bytes {
                return Evicted::Enough;
            }
            let Some((db, key)) = self.victim() else {
                return Evicted::Stuck;
            };
            let before = held(&self.dbs[db]);
            self.remove(db, &key);
            freed += before.saturating_sub(held(&self.dbs[db]));
            self.feed_del(db, &key);
            self.touch(db, &key);
            self.stats.evicted_keys += 1;
            self.notify(notify::EVICTED, "evicted", db, &key);
        }
        if freed >= bytes {
            Evicted::Enough
        } else {
            Evicted::Running
        }
    }

    /// The key the policy would evict next.
    fn victim(&mut self) -> Option<(usize, Str)> {
        use memory::Policy::*;
        let policy = self.eviction.policy;
        match policy {
            NoEviction => None,
            AllKeysRandom | VolatileRandom => {
                let start = fastrand::usize(..self.dbs.len());
                (0..self.dbs.len())
                    .map(|i| (start + i) % self.dbs.len())
                    .find_map(|db| {
                        let e = if policy.volatile_only() {
                            self.dbs[db].random_volatile()
                        } else {
                            self.dbs[db].dict.random()
                        };
                        e.map(|e| (db, e.key.clone()))
                    })
            }
            // The soonest deadline, exactly (the index is ordered; Redis samples).
            VolatileTtl => self
                .dbs
                .iter()
                .enumerate()
                .filter_map(|(db, d)| d.expires.first().map(|(at, k)| (*at, db, k)))
                .min_by_key(|(at, _, _)| *at)
                .map(|(_, db, k)| (db, k.clone())),
            AllKeysLru | AllKeysLfu | VolatileLru | VolatileLfu => {
                // Rounds until a candidate still exists (pooled keys may have gone since).
                for _ in 0..memory::EVICTION_POOL_SIZE {
                    let mut any = false;
                    for db in 0..self.dbs.len() {
                        if !self.dbs[db].dict.is_empty() {
                            any |= self.sample_into_pool(db);
                        }
                    }
                    while let Some((db, key)) = self.pool.take_best() {
                        if self.dbs[db].dict.contains(&key) {
                            return Some((db, key));
                        }
                    }
                    if !any {
                        return None;
                    }
                }
                None
            }
        }
    }

    /// Offers `maxmemory-samples` keys of `db` to the eviction pool; false when `db` has
    /// no key the policy may evict.
    fn sample_into_pool(&mut self, db: usize) -> bool {
        let ev = self.eviction;
        let now = self.now_ms;
        // Higher: evict sooner. A key without access bits counts as just used.
        let score = |e: &Entry| match e.access() {
            None => 0,
            Some(a) if ev.policy.is_lfu() => {
                255 - memory::lfu_decayed(a, now, ev.lfu_decay_time_min)
            }
            Some(a) => memory::lru_idle_ms(a, now),
        };
        let (d, pool) = (&self.dbs[db], &mut self.pool);
        let volatile = ev.policy.volatile_only();
        // Consecutive buckets, as Redis samples; volatile keys among them when they are
        // common, else drawn from the deadline index.
        let mut offered = 0;
        if !volatile || d.expires.len() * 4 >= d.dict.len() {
            d.dict.sample_some(ev.samples, |e| {
                if !volatile || e.deadline() != 0 {
                    pool.offer(score(e), db, &e.key);
                    offered += 1;
                }
            });
        }
        if volatile && offered == 0 {
            for _ in 0..ev.samples {
                let Some(e) = d.random_volatile() else {
                    break;
                };
                pool.offer(score(e), db, &e.key);
                offered += 1;
            }
        }
        offered > 0
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
                    d.dict.prefetch_walk(next);
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
                // Moving entries between tables is harmless: none was handed over yet, and
                // a write captures what it changes whatever the walk's state.
                Walk::Rehash => {
                    if !d.dict.rehash(1) {
                        ds.walk = Walk::start(&d.dict);
                    }
                    false
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
    fn idle_tables_finish_rehashing_and_shrink_through_active_rehash() {
        let mut ks = Keyspace::new(1);
        // 1,025 keys grow the table from 1,024 buckets to 2,048: a rehash under way.
        for i in 0..1025 {
            ks.set(0, format!("k{i}").as_bytes(), Value::Str("v".into()));
        }
        assert!(ks.db(0).dict().stable_buckets().is_none());
        let mut cycles = 0;
        while ks.active_rehash(100) {
            cycles += 1;
        }
        assert!(cycles > 0);
        assert_eq!(ks.db(0).dict().stable_buckets(), Some(2048));
        // Nine tenths gone: the next upkeep starts a shrink, which only steps advance.
        for i in 0..1000 {
            ks.remove(0, format!("k{i}").as_bytes());
        }
        ks.active_rehash(0);
        assert!(ks.db(0).dict().stable_buckets().is_none());
        while ks.active_rehash(100) {}
        assert_eq!(ks.db(0).dict().stable_buckets(), Some(32));
        assert_eq!(ks.db(0).len(), 25);
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
