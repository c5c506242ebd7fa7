//! `Dict`: the hash table behind the keyspace, hashes and sets.
//!
//! A chained table with incremental rehashing, as Redis's `dict.c` is, because three things the
//! commands need are not offered by general-purpose maps:
//! - SCAN cursors that return every element present for the whole scan, even across resizes
//!   (reverse-binary cursor over power-of-two tables);
//! - fair random sampling (RANDOMKEY, SRANDMEMBER, SPOP) in O(1) expected time;
//! - no stop-the-world resize: a growing table moves a few buckets per operation.

use std::hash::BuildHasher;

/// Something stored in a [`Dict`], found by its key bytes.
pub trait DictEntry {
    fn key(&self) -> &[u8];

    /// Heap bytes the item holds, summed by the dict as items come and go
    /// ([`Dict::heap_bytes`]) for the memory accounting. Changes made through
    /// [`Dict::get_mut`] must not change it: replace the item with [`Dict::insert`].
    fn heap_bytes(&self) -> usize {
        0
    }
}

type Link<T> = Option<Box<Node<T>>>;

struct Node<T> {
    item: T,
    next: Link<T>,
}

struct Table<T> {
    buckets: Vec<Link<T>>,
    used: usize,
}

impl<T> Table<T> {
    fn with_buckets(n: usize) -> Self {
        let mut buckets = Vec::with_capacity(n);
        buckets.resize_with(n, || None);
        Table { buckets, used: 0 }
    }
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }
}

/// Buckets ahead of a walk (a snapshot's, a rehash's) whose slots are asked for.
const WALK_SLOTS_AHEAD: usize = 32;
/// Buckets ahead of a walk whose first chained item is asked for: its slot was asked for
/// earlier, so reading it does not wait.
const WALK_ITEMS_AHEAD: usize = 8;

/// Cache hints for a walk of `buckets` in order, at `idx`: the slots [`WALK_SLOTS_AHEAD`]
/// further on, and the first item chained [`WALK_ITEMS_AHEAD`] further on.
fn prefetch_ahead_of<T>(buckets: &[Link<T>], idx: usize) {
    if let Some(slot) = buckets.get(idx + WALK_SLOTS_AHEAD) {
        prefetch_read(slot);
    }
    prefetch_first(buckets.get(idx + WALK_ITEMS_AHEAD));
}

/// A cache hint for the first item chained in `bucket`.
fn prefetch_first<T>(bucket: Option<&Link<T>>) {
    if let Some(Some(node)) = bucket {
        prefetch_read(&**node);
    }
}

/// A cache hint for the line holding `value` (none on other architectures than x86_64).
#[inline]
fn prefetch_read<V>(value: &V) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 only hints the cache: it reads nothing the program sees and
    // cannot fault, whatever the address. SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(value).cast(),
        );
    }
}

/// Buckets visited at most per rehash step, so a step over an empty region stays cheap.
const REHASH_EMPTY_VISITS_MAX: usize = 10;
const INITIAL_BUCKETS: usize = 4;

pub struct Dict<T> {
    /// `tables[1]` is only non-empty while rehashing from `tables[0]` into it.
    tables: [Table<T>; 2],
    rehash_idx: Option<usize>,
    hasher: foldhash::fast::RandomState,
    /// The items' [`DictEntry::heap_bytes`], summed.
    heap: usize,
    /// How many bytes a larger table may take before memory passes `maxmemory`
    /// (`usize::MAX`: no limit); see [`Dict::set_growth_headroom`].
    growth_headroom: usize,
}

impl<T: DictEntry> Default for Dict<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DictEntry> Dict<T> {
    pub fn new() -> Self {
        Dict {
            tables: [Table::with_buckets(0), Table::with_buckets(0)],
            rehash_idx: None,
            growth_headroom: usize::MAX,
            hasher: foldhash::fast::RandomState::default(),
            heap: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.tables[0].used + self.tables[1].used
    }

    /// Whether the table is larger than the smallest one that holds `n` elements, that is,
    /// the dict held more than `n` since its table last shrank (which takes nine tenths of
    /// it gone): how OBJECT ENCODING tells a collection that grew out of its compact form.
    pub fn outgrew(&self, n: usize) -> bool {
        let slots = self.tables[0]
            .buckets
            .len()
            .max(self.tables[1].buckets.len());
        n.checked_next_power_of_two()
            .is_some_and(|fits| slots > fits.max(INITIAL_BUCKETS))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of one item's node (item and chain link), before the allocator rounds it.
    pub const NODE_BYTES: usize = std::mem::size_of::<Node<T>>();

    /// The heap bytes the items hold ([`DictEntry::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        self.heap
    }

    /// Number of buckets, for memory accounting.
    pub fn bucket_count(&self) -> usize {
        self.tables[0].buckets.len() + self.tables[1].buckets.len()
    }

    fn hash(&self, key: &[u8]) -> usize {
        self.hasher.hash_one(key) as usize
    }

    fn find_table(&self, key: &[u8], hash: usize) -> Option<usize> {
        let tables = if self.rehash_idx.is_some() { 2 } else { 1 };
        (0..tables).find(|&t| {
            let table = &self.tables[t];
            if table.buckets.is_empty() {
                return false;
            }
            let mut cur = table.buckets[hash & table.mask()].as_deref();
            while let Some(node) = cur {
                if node.item.key() == key {
                    return true;
                }
                cur = node.next.as_deref();
            }
            false
        })
    }

    /// Asks the CPU to bring `key`'s bucket into the cache. A loader inserting millions of
    /// keys calls it some keys ahead, so that each insert finds its bucket there instead of
    /// waiting on memory (most of a large load's time otherwise).
    pub fn prefetch(&self, key: &[u8]) {
        self.buckets_of(key, prefetch_read);
    }

    /// The second step after [`Dict::prefetch`], once the bucket is in the cache: asks for
    /// the first item chained there, whose key the insert compares.
    pub fn prefetch_chain(&self, key: &[u8]) {
        self.buckets_of(key, |bucket| prefetch_first(Some(bucket)));
    }

    /// For a walk in bucket order, at bucket `idx` of the single table (see
    /// [`Dict::stable_buckets`]): asks the CPU for the bucket slots
    /// [`WALK_SLOTS_AHEAD`] further on and for the first item chained
    /// [`WALK_ITEMS_AHEAD`] further on. The items sit wherever they were allocated, and a
    /// walk that does work between buckets leaves the hardware prefetcher behind.
    pub fn prefetch_walk(&self, idx: usize) {
        prefetch_ahead_of(&self.tables[0].buckets, idx);
    }

    /// Calls `f` with `key`'s bucket in each table a lookup searches.
    fn buckets_of(&self, key: &[u8], mut f: impl FnMut(&Link<T>)) {
        let hash = self.hash(key);
        let tables = if self.rehash_idx.is_some() { 2 } else { 1 };
        for table in &self.tables[..tables] {
            if let Some(bucket) = table.buckets.get(hash & table.mask()) {
                f(bucket);
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&T> {
        let hash = self.hash(key);
        let t = self.find_table(key, hash)?;
        let table = &self.tables[t];
        let mut cur = table.buckets[hash & table.mask()].as_deref();
        while let Some(node) = cur {
            if node.item.key() == key {
                return Some(&node.item);
            }
            cur = node.next.as_deref();
        }
        None
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut T> {
        self.rehash_step();
        let hash = self.hash(key);
        let t = self.find_table(key, hash)?;
        let table = &mut self.tables[t];
        let mask = table.mask();
        let mut cur = table.buckets[hash & mask].as_deref_mut();
        while let Some(node) = cur {
            if node.item.key() == key {
                return Some(&mut node.item);
            }
            cur = node.next.as_deref_mut();
        }
        None
    }

    /// Inserts `item`, which must not be present yet (check with [`Dict::get`] first).
    pub fn insert_new(&mut self, item: T) -> &mut T {
        self.rehash_step();
        self.expand_if_needed();
        let hash = self.hash(item.key());
        self.heap += item.heap_bytes();
        let t = if self.rehash_idx.is_some() { 1 } else { 0 };
        let table = &mut self.tables[t];
        let idx = hash & table.mask();
        let next = table.buckets[idx].take();
        table.used += 1;
        let node = table.buckets[idx].insert(Box::new(Node { item, next }));
        &mut node.item
    }

    /// Sizes an empty dict for `n` items at once, sparing the rehashes of growing into it
    /// (loading a dump whose size is known). No effect on a dict that holds items.
    pub fn reserve(&mut self, n: usize) {
        if self.is_empty() && self.rehash_idx.is_none() && n > self.tables[0].buckets.len() {
            self.tables[0] = Table::with_buckets(n.next_power_of_two().max(INITIAL_BUCKETS));
        }
    }

    /// Inserts or replaces; returns the replaced item.
    pub fn insert(&mut self, item: T) -> Option<T> {
        match self.get_mut(item.key()) {
            Some(slot) => {
                let added = item.heap_bytes();
                let old = std::mem::replace(slot, item);
                self.heap = self.heap + added - old.heap_bytes();
                Some(old)
            }
            None => {
                self.insert_new(item);
                None
            }
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<T> {
        self.rehash_step();
        let hash = self.hash(key);
        let t = self.find_table(key, hash)?;
        let table = &mut self.tables[t];
        let idx = hash & table.mask();
        let mut link = &mut table.buckets[idx];
        loop {
            if link.as_ref()?.item.key() == key {
                let node = link.take().expect("checked above");
                let Node { item, next } = *node;
                *link = next;
                table.used -= 1;
                self.heap -= item.heap_bytes();
                self.shrink_if_sparse();
                return Some(item);
            }
            link = &mut link.as_mut().expect("checked above").next;
        }
    }

    pub fn clear(&mut self) {
        self.tables = [Table::with_buckets(0), Table::with_buckets(0)];
        self.rehash_idx = None;
        self.heap = 0;
    }

    fn expand_if_needed(&mut self) {
        if self.rehash_idx.is_some() {
            return;
        }
        let size = self.tables[0].buckets.len();
        if size == 0 {
            self.tables[0] = Table::with_buckets(INITIAL_BUCKETS);
        } else if self.tables[0].used >= size && self.growth_allowed(size * 2) {
            self.start_rehash(size * 2);
        }
    }

    /// Memory left before `maxmemory`: a table that would pass it does not grow while the
    /// chains are not too long yet (Redis's `dictExpandAllowed`: growing would only make it
    /// evict keys to pay for the table).
    pub fn set_growth_headroom(&mut self, bytes: usize) {
        self.growth_headroom = bytes;
    }

    fn growth_allowed(&self, buckets: usize) -> bool {
        /// Redis's `HASHTABLE_MAX_LOAD_FACTOR`, in thousandths.
        const LOAD_FACTOR_MAX_PERMILLE: usize = 1618;
        let table_bytes = buckets * std::mem::size_of::<usize>();
        table_bytes <= self.growth_headroom
            || self.tables[0].used * 1000 > self.tables[0].buckets.len() * LOAD_FACTOR_MAX_PERMILLE
    }

    fn shrink_if_sparse(&mut self) {
        let size = self.tables[0].buckets.len();
        if self.rehash_idx.is_none() && size > INITIAL_BUCKETS && self.tables[0].used * 10 < size {
            let target = self.tables[0].used.max(INITIAL_BUCKETS).next_power_of_two();
            if target < size {
                self.start_rehash(target);
            }
        }
    }

    fn start_rehash(&mut self, buckets: usize) {
        self.tables[1] = Table::with_buckets(buckets);
        self.rehash_idx = Some(0);
    }

    /// Moves one bucket (visiting at most a few empty ones) from the old table to the new.
    fn rehash_step(&mut self) {
        let Some(mut idx) = self.rehash_idx else {
            return;
        };
        let [old, new] = &mut self.tables;
        let mut empty_visits = 0;
        while idx < old.buckets.len() && old.buckets[idx].is_none() {
            idx += 1;
            empty_visits += 1;
            if empty_visits == REHASH_EMPTY_VISITS_MAX {
                self.rehash_idx = Some(idx);
                return;
            }
        }
        if idx < old.buckets.len() {
            prefetch_ahead_of(&old.buckets, idx);
            let mut chain = old.buckets[idx].take();
            let mask = new.mask();
            while let Some(mut node) = chain {
                chain = node.next.take();
                let h = self.hasher.hash_one(node.item.key()) as usize & mask;
                node.next = new.buckets[h].take();
                new.buckets[h] = Some(node);
                old.used -= 1;
                new.used += 1;
            }
            idx += 1;
        }
        if old.used == 0 {
            self.tables.swap(0, 1);
            self.tables[1] = Table::with_buckets(0);
            self.rehash_idx = None;
            // Removals during the rehash may have left the new table sparse already.
            self.shrink_if_sparse();
        } else {
            self.rehash_idx = Some(idx);
        }
    }

    /// Background maintenance: starts a shrink when the table is sparse, then does up to
    /// `steps` rehash steps; returns whether rehashing is still under way.
    pub fn rehash(&mut self, steps: usize) -> bool {
        self.shrink_if_sparse();
        for _ in 0..steps {
            if self.rehash_idx.is_none() {
                break;
            }
            self.rehash_step();
        }
        self.rehash_idx.is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.tables
            .iter()
            .flat_map(|t| t.buckets.iter())
            .flat_map(|link| {
                let mut cur = link.as_deref();
                std::iter::from_fn(move || {
                    let node = cur?;
                    cur = node.next.as_deref();
                    Some(&node.item)
                })
            })
    }

    /// The buckets a scan step at `cursor` visits, as (table, index) pairs, then the next
    /// cursor (0 when the scan is complete).
    fn scan_buckets(&self, cursor: u64) -> ScanBuckets {
        let v = cursor as usize;
        if self.is_empty() {
            return ScanBuckets {
                v: 0,
                small: (0, 0),
                large: None,
                phase: ScanPhase::Done,
            };
        }
        if self.rehash_idx.is_none() {
            return ScanBuckets {
                v,
                small: (0, self.tables[0].mask()),
                large: None,
                phase: ScanPhase::Small,
            };
        }
        let (small, large) = if self.tables[0].buckets.len() <= self.tables[1].buckets.len() {
            (0, 1)
        } else {
            (1, 0)
        };
        ScanBuckets {
            v,
            small: (small, self.tables[small].mask()),
            large: Some((large, self.tables[large].mask())),
            phase: ScanPhase::Small,
        }
    }

    /// Calls `f` with the elements of the bucket(s) at `cursor` and returns the next cursor
    /// (0 when the scan is complete). Every element present during a whole scan is visited
    /// at least once, whatever resizes happen in between; some may be visited twice.
    pub fn scan(&self, cursor: u64, mut f: impl FnMut(&T)) -> u64 {
        let mut buckets = self.scan_buckets(cursor);
        for (t, idx) in buckets.by_ref() {
            let mut cur = self.tables[t].buckets[idx].as_deref();
            while let Some(node) = cur {
                f(&node.item);
                cur = node.next.as_deref();
            }
        }
        buckets.next_cursor()
    }

    /// [`Dict::scan`] with mutable access. `f` must not change an element's key.
    pub fn scan_mut(&mut self, cursor: u64, mut f: impl FnMut(&mut T)) -> u64 {
        let mut buckets = self.scan_buckets(cursor);
        for (t, idx) in buckets.by_ref() {
            let mut cur = self.tables[t].buckets[idx].as_deref_mut();
            while let Some(node) = cur {
                f(&mut node.item);
                cur = node.next.as_deref_mut();
            }
        }
        buckets.next_cursor()
    }

    /// The single table's bucket count while no rehash is under way; None while rehashing.
    pub fn stable_buckets(&self) -> Option<usize> {
        self.rehash_idx
            .is_none()
            .then(|| self.tables[0].buckets.len())
    }

    /// Calls `f` with the elements of bucket `idx` of the single table (see
    /// [`Dict::stable_buckets`]). Walking buckets in index order is cache-friendly, but only
    /// sees every element if the table does not change size meanwhile: callers check.
    pub fn bucket_mut(&mut self, idx: usize, mut f: impl FnMut(&mut T)) {
        if self.rehash_idx.is_some() {
            return;
        }
        let Some(link) = self.tables[0].buckets.get_mut(idx) else {
            return;
        };
        let mut cur = link.as_deref_mut();
        while let Some(node) = cur {
            f(&mut node.item);
            cur = node.next.as_deref_mut();
        }
    }

    /// Calls `f` with the elements of buckets `range` of the single table (see
    /// [`Dict::stable_buckets`]; nothing while rehashing).
    pub fn for_each_in_buckets(&self, range: std::ops::Range<usize>, mut f: impl FnMut(&T)) {
        if self.rehash_idx.is_some() {
            return;
        }
        for link in self.tables[0].buckets.get(range).unwrap_or_default() {
            let mut cur = link.as_deref();
            while let Some(node) = cur {
                f(&node.item);
                cur = node.next.as_deref();
            }
        }
    }

    /// Finishes a rehash under way at once (a blocking save walks a single table).
    pub fn finish_rehash(&mut self) {
        while self.rehash_idx.is_some() {
            self.rehash_step();
        }
    }

    /// Up to `count` items from consecutive buckets, starting at a random one (Redis's
    /// `dictGetSomeKeys`): far cheaper than `count` draws of [`Dict::random`], which walk
    /// a chain each, at the price of samples that are not independent; a run of empty
    /// buckets jumps elsewhere. Returns how many were given to `f`.
    pub fn sample_some(&self, count: usize, mut f: impl FnMut(&T)) -> usize {
        const EMPTY_RUN_MAX: usize = 5;
        let size = self.tables[0]
            .buckets
            .len()
            .max(self.tables[1].buckets.len());
        if self.is_empty() || count == 0 || size == 0 {
            return 0;
        }
        let tables = if self.rehash_idx.is_some() { 2 } else { 1 };
        let (mut at, mut taken, mut empty_run) = (fastrand::usize(..size), 0, 0);
        for _ in 0..count * 10 {
            for table in &self.tables[..tables] {
                // The smaller table while rehashing has no bucket at `at` beyond its size.
                let Some(head) = table.buckets.get(at) else {
                    continue;
                };
                let mut cur = head.as_deref();
                if cur.is_none() {
                    empty_run += 1;
                    if empty_run >= EMPTY_RUN_MAX && empty_run > count {
                        at = fastrand::usize(..size);
                        empty_run = 0;
                    }
                }
                while let Some(node) = cur {
                    empty_run = 0;
                    f(&node.item);
                    taken += 1;
                    if taken == count {
                        return taken;
                    }
                    cur = node.next.as_deref();
                }
            }
            at = (at + 1) & (size - 1);
        }
        taken
    }

    /// A random element, each with equal probability while no chain is longer than
    /// `RANDOM_CHAIN_SPAN` (always, at the load factors the table keeps): a bucket is drawn,
    /// then a slot in a span of that many, and a slot past the chain's end draws again, so an
    /// element in a long chain is not less likely than one alone in its bucket.
    pub fn random(&self) -> Option<&T> {
        if self.is_empty() {
            return None;
        }
        loop {
            // One draw over the buckets of both tables while rehashing: every slot is
            // equally likely, whichever table it is in.
            let first = self.tables[0].buckets.len();
            let mut slot = fastrand::usize(..first + self.tables[1].buckets.len());
            let table = if slot < first {
                &self.tables[0]
            } else {
                slot -= first;
                &self.tables[1]
            };
            let Some(head) = table.buckets[slot].as_deref() else {
                continue;
            };
            let mut chain_len = 0;
            let mut cur = Some(head);
            while let Some(n) = cur {
                chain_len += 1;
                cur = n.next.as_deref();
            }
            let mut pick = if chain_len > RANDOM_CHAIN_SPAN {
                fastrand::usize(..chain_len)
            } else {
                fastrand::usize(..RANDOM_CHAIN_SPAN)
            };
            if pick >= chain_len {
                continue;
            }
            let mut cur = head;
            while pick > 0 {
                cur = cur.next.as_deref().expect("within chain length");
                pick -= 1;
            }
            return Some(&cur.item);
        }
    }
}

/// Chain slots [`Dict::random`] draws from: chains up to this long are sampled fairly.
const RANDOM_CHAIN_SPAN: usize = 8;

/// Reverse-binary increment: counts with the bits of the masked cursor reversed, so buckets
/// that split on a grow (or merge on a shrink) are visited together.
/// The buckets one scan step visits: the cursor's bucket in the (smaller) table and, while
/// rehashing, every bucket of the larger table that expands from it. Holds only numbers, so
/// the tables can be borrowed mutably while it runs.
struct ScanBuckets {
    v: usize,
    /// (table, mask) of the table scanned first.
    small: (usize, usize),
    /// (table, mask) of the larger table while rehashing.
    large: Option<(usize, usize)>,
    phase: ScanPhase,
}

#[derive(Clone, Copy, PartialEq)]
enum ScanPhase {
    Small,
    Large,
    Done,
}

impl Iterator for ScanBuckets {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let (small, m0) = self.small;
        match (self.phase, self.large) {
            (ScanPhase::Done, _) => None,
            (ScanPhase::Small, None) => {
                let idx = self.v & m0;
                self.v = next_cursor(self.v, m0);
                self.phase = ScanPhase::Done;
                Some((small, idx))
            }
            (ScanPhase::Small, Some(_)) => {
                self.phase = ScanPhase::Large;
                Some((small, self.v & m0))
            }
            (ScanPhase::Large, Some((large, m1))) => {
                let idx = self.v & m1;
                self.v = next_cursor(self.v, m1);
                if self.v & (m0 ^ m1) == 0 {
                    self.phase = ScanPhase::Done;
                }
                Some((large, idx))
            }
            (ScanPhase::Large, None) => None,
        }
    }
}

impl ScanBuckets {
    /// The cursor after the step, once the iterator is exhausted.
    fn next_cursor(&self) -> u64 {
        self.v as u64
    }
}

fn next_cursor(v: usize, mask: usize) -> usize {
    let v = v | !mask;
    v.reverse_bits().wrapping_add(1).reverse_bits()
}

impl<T> Drop for Dict<T> {
    fn drop(&mut self) {
        // Unlink chains iteratively: a long chain dropped recursively could overflow the stack.
        for table in &mut self.tables {
            for link in &mut table.buckets {
                let mut cur = link.take();
                while let Some(mut node) = cur {
                    cur = node.next.take();
                }
            }
        }
    }
}

impl DictEntry for crate::Str {
    fn key(&self) -> &[u8] {
        self.as_bytes()
    }
    fn heap_bytes(&self) -> usize {
        crate::memory::str_heap_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Str;
    use std::collections::HashSet;

    #[test]
    fn insert_get_remove_through_resizes() {
        let mut d: Dict<Str> = Dict::new();
        for i in 0..10_000 {
            assert!(d.insert(Str::from_i64(i)).is_none());
        }
        assert_eq!(d.len(), 10_000);
        for i in 0..10_000 {
            assert!(d.contains(itoa::Buffer::new().format(i).as_bytes()));
        }
        for i in 0..9_990 {
            assert!(d.remove(itoa::Buffer::new().format(i).as_bytes()).is_some());
        }
        assert_eq!(d.len(), 10);
        assert_eq!(d.iter().count(), 10);
        while d.rehash(100) {}
        assert!(d.bucket_count() <= 64, "shrunk to {}", d.bucket_count());
    }

    #[test]
    fn prefetch_hints_change_nothing_empty_stable_or_rehashing() {
        let mut d: Dict<Str> = Dict::new();
        d.prefetch(b"absent");
        d.prefetch_chain(b"absent");
        for i in 0..1_000 {
            // Growing keeps a rehash under way at times: both tables are hinted then.
            d.prefetch(itoa::Buffer::new().format(i).as_bytes());
            d.prefetch_chain(itoa::Buffer::new().format(i).as_bytes());
            d.insert_new(Str::from_i64(i));
        }
        assert_eq!(d.len(), 1_000);
        assert!((0..1_000).all(|i| d.contains(itoa::Buffer::new().format(i).as_bytes())));
    }

    #[test]
    fn scan_sees_every_stable_element_while_the_table_changes() {
        let mut d: Dict<Str> = Dict::new();
        for i in 0..1000 {
            d.insert(Str::from_i64(i));
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = d.scan(cursor, |s| {
                seen.insert(s.as_bytes().to_vec());
            });
            // Grow, then shrink, the table under the scan.
            round += 1;
            if round < 50 {
                for j in 0..100 {
                    d.insert(Str::from_i64(100_000 + round * 100 + j));
                }
            } else {
                for j in 0..5000 {
                    d.remove(itoa::Buffer::new().format(100_000 + j).as_bytes());
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..1000i64 {
            assert!(
                seen.contains(itoa::Buffer::new().format(i).as_bytes()),
                "missed {i}"
            );
        }
    }

    #[test]
    fn random_covers_all_elements() {
        let mut d: Dict<Str> = Dict::new();
        for i in 0..8 {
            d.insert(Str::from_i64(i));
        }
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            seen.insert(d.random().unwrap().as_bytes().to_vec());
        }
        assert_eq!(seen.len(), 8);
    }
}

#[cfg(test)]
mod fairness {
    use super::*;
    use crate::Str;

    /// Every element of a small dict is drawn about as often (chi-square with 9 degrees of
    /// freedom under 40, as Redis's SRANDMEMBER test demands, over many draws).
    #[test]
    fn random_is_fair() {
        let mut d: Dict<Str> = Dict::new();
        for b in b"abcdefghij" {
            d.insert(Str::new(&[*b]));
        }
        let draws = 100_000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..draws {
            *counts
                .entry(d.random().unwrap().as_bytes().to_vec())
                .or_insert(0) += 1;
        }
        let p = draws as f64 / 10.0;
        let chi: f64 = counts.values().map(|&c| (c as f64 - p).powi(2) / p).sum();
        assert!(chi < 40.0, "{chi} {counts:?}");
    }
}
