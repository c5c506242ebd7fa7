//! The databases, expiry, and the bookkeeping that connections need from writes.
//!
//! Time is passed in ([`Keyspace::set_clock`]); nothing here reads the wall clock.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::value::{Field, ZSet};
use crate::{CmdError, Dict, DictEntry, Str, Value};

/// A key, its value and its absolute expiry in unix milliseconds (0: none).
pub struct Entry {
    pub key: Str,
    pub value: Value,
    expire_at_ms: u64,
}

impl Entry {
    pub fn expire_at_ms(&self) -> Option<u64> {
        (self.expire_at_ms != 0).then_some(self.expire_at_ms)
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
        }
    }

    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn db_count(&self) -> usize {
        self.dbs.len()
    }

    pub fn db(&self, db: usize) -> &Db {
        &self.dbs[db]
    }

    fn is_expired(&self, e: &Entry) -> bool {
        e.expire_at_ms != 0 && e.expire_at_ms <= self.now_ms
    }

    /// Deletes `key` if its deadline has passed; returns whether it did.
    fn expire_if_due(&mut self, db: usize, key: &[u8]) -> bool {
        // Most datasets have no volatile keys: skip the lookup then.
        if self.dbs[db].expires.is_empty() {
            return false;
        }
        let due = match self.dbs[db].dict.get(key) {
            Some(e) => self.is_expired(e),
            None => false,
        };
        if due {
            self.remove(db, key);
            self.stats.expired_keys += 1;
        }
        due
    }

    /// The live entry under `key`, after lazily expiring it.
    pub fn get(&mut self, db: usize, key: &[u8]) -> Option<&mut Entry> {
        self.expire_if_due(db, key);
        self.dbs[db].dict.get_mut(key)
    }

    /// Like [`Keyspace::get`], counting a keyspace hit or miss for INFO.
    pub fn lookup(&mut self, db: usize, key: &[u8]) -> Option<&mut Value> {
        self.expire_if_due(db, key);
        match self.dbs[db].dict.get_mut(key) {
            Some(e) => {
                self.stats.keyspace_hits += 1;
                Some(&mut e.value)
            }
            None => {
                self.stats.keyspace_misses += 1;
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
        let d = &mut self.dbs[db];
        match d.dict.get_mut(key) {
            Some(e) => {
                if e.expire_at_ms != 0 {
                    d.expires.remove(&(e.expire_at_ms, e.key.clone()));
                }
                e.value = value;
                e.expire_at_ms = 0;
            }
            None => {
                d.dict.insert_new(Entry {
                    key: Str::new(key),
                    value,
                    expire_at_ms: 0,
                });
            }
        }
        if let Some(at) = expire_at_ms {
            self.set_expiry(db, key, at);
        }
    }

    /// Removes `key`, live or expired; returns its entry.
    pub fn remove(&mut self, db: usize, key: &[u8]) -> Option<Entry> {
        let d = &mut self.dbs[db];
        let e = d.dict.remove(key)?;
        if e.expire_at_ms != 0 {
            d.expires.remove(&(e.expire_at_ms, e.key.clone()));
        }
        Some(e)
    }

    /// Inserts an entry moved from elsewhere (RENAME, MOVE, loaders), replacing any value.
    pub fn insert_entry(&mut self, db: usize, key: Str, value: Value, expire_at_ms: Option<u64>) {
        self.remove(db, &key);
        let at = expire_at_ms.unwrap_or(0);
        let d = &mut self.dbs[db];
        if at != 0 {
            d.expires.insert((at, key.clone()));
        }
        d.dict.insert_new(Entry {
            key,
            value,
            expire_at_ms: at,
        });
    }

    /// Sets the absolute deadline of an existing key; returns false when there is no such key.
    pub fn set_expiry(&mut self, db: usize, key: &[u8], at_ms: u64) -> bool {
        let d = &mut self.dbs[db];
        let Some(e) = d.dict.get_mut(key) else {
            return false;
        };
        if e.expire_at_ms != 0 {
            d.expires.remove(&(e.expire_at_ms, e.key.clone()));
        }
        // A deadline of 0 would read as "no expiry"; 1 ms after the epoch is just as past.
        e.expire_at_ms = at_ms.max(1);
        d.expires.insert((e.expire_at_ms, e.key.clone()));
        true
    }

    /// Removes a key's deadline; returns whether it had one.
    pub fn persist(&mut self, db: usize, key: &[u8]) -> bool {
        let d = &mut self.dbs[db];
        let Some(e) = d.dict.get_mut(key) else {
            return false;
        };
        if e.expire_at_ms == 0 {
            return false;
        }
        d.expires.remove(&(e.expire_at_ms, e.key.clone()));
        e.expire_at_ms = 0;
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
                self.touch(db, &key);
                self.stats.expired_keys += 1;
                removed += 1;
            }
        }
        for d in &mut self.dbs {
            d.dict.rehash(1);
        }
        removed
    }

    pub fn flush_db(&mut self, db: usize) {
        self.dbs[db] = Db::default();
        self.touch_db(db);
    }

    pub fn flush_all(&mut self) {
        for db in 0..self.dbs.len() {
            self.flush_db(db);
        }
    }

    pub fn swap_db(&mut self, a: usize, b: usize) {
        self.dbs.swap(a, b);
        self.touch_db(a);
        self.touch_db(b);
    }

    /// Records a write to `key` for connections interested in it.
    pub fn touch(&mut self, db: usize, key: &[u8]) {
        if self.interest.is_empty() {
            return;
        }
        if let Some((k, _)) = self.interest.get_key_value(&(db, Str::new(key))) {
            self.touched.push(k.clone());
        }
    }

    fn touch_db(&mut self, db: usize) {
        let keys: Vec<_> = self
            .interest
            .keys()
            .filter(|(d, _)| *d == db)
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
        self.expire_if_due(db, key);
        let d = &mut self.dbs[db];
        let entry = if d.dict.contains(key) {
            d.dict.get_mut(key).expect("present")
        } else {
            d.dict.insert_new(Entry {
                key: Str::new(key),
                value: make(),
                expire_at_ms: 0,
            })
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
}
