//! What the dataset costs in memory, and how keys are chosen for eviction.
//!
//! Several caches share one process under `serve`, so the allocator's process-wide count
//! cannot say what one node holds. Each key's cost is instead computed from its value's
//! shape ([`entry_bytes`]): the blocks the value allocates, rounded up to jemalloc's size
//! classes. The keyspace keeps the sum current by measuring a key when a command takes it
//! and again when the command is done (see `Keyspace::settle`), so the cost function only
//! has to be a function of the value's state, cheap (a few samples, never a walk of a
//! large collection), and close to what the allocator really holds (checked against
//! jemalloc in the node's tests).
//!
//! Eviction follows Redis's `evict.c`: approximated LRU and LFU by sampling
//! `maxmemory-samples` keys into a pool of the best candidates seen, the LFU counter as a
//! logarithmic 8-bit counter that decays with time (`lfu-log-factor`, `lfu-decay-time`).

use std::collections::VecDeque;

use crate::stream::Stream;
use crate::value::{Field, Member, Value, ZSet};
use crate::{Dict, Entry, Str};

/// The size jemalloc hands out for a request of `n` bytes (its size classes: 8, then
/// multiples of 16 up to 128, then four classes per doubling).
pub fn alloc_size(n: usize) -> usize {
    match n {
        0 => 0,
        1..=8 => 8,
        9..=128 => n.div_ceil(16) * 16,
        _ => {
            let lg = usize::BITS - 1 - (n - 1).leading_zeros();
            let step = 1usize << (lg - 2);
            n.div_ceil(step) * step
        }
    }
}

/// Heap bytes a stored string holds beyond its own 24 bytes.
fn str_bytes(s: &Str) -> usize {
    alloc_size(s.heap_bytes())
}

/// Elements a collection's cost is estimated from (Redis's MEMORY USAGE samples five).
const COST_SAMPLES: usize = 8;

/// `len` elements costing what the sampled ones do on average.
fn extrapolate(len: usize, samples: impl Iterator<Item = usize>) -> usize {
    let (mut n, mut sum) = (0usize, 0usize);
    for s in samples.take(COST_SAMPLES) {
        n += 1;
        sum += s;
    }
    (sum * len).checked_div(n).unwrap_or(0)
}

/// Bytes of a hash table's bucket array for `len` elements: the power of two the table
/// settles at (counted from the length, not the table, so a rehash step taken by a read
/// changes no cost).
fn buckets_bytes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        alloc_size(len.next_power_of_two() * std::mem::size_of::<usize>())
    }
}

fn dict_bytes<T: crate::DictEntry>(d: &Dict<T>) -> usize {
    alloc_size(std::mem::size_of::<Dict<T>>())
        + d.len() * alloc_size(Dict::<T>::NODE_BYTES)
        + buckets_bytes(d.len())
        + d.heap_bytes()
}

/// Per element of a B-tree set of (score, member): the element and its share of the
/// nodes (11 slots of which about two thirds are used, plus edges).
const BTREE_ELEMENT_BYTES: usize = 56;

fn list_bytes(l: &VecDeque<Str>) -> usize {
    let half = COST_SAMPLES / 2;
    let sample = l.iter().take(half).chain(l.iter().rev().take(half));
    alloc_size(std::mem::size_of::<VecDeque<Str>>())
        + alloc_size(l.capacity() * std::mem::size_of::<Str>())
        + extrapolate(l.len(), sample.map(str_bytes))
}

fn zset_bytes(z: &ZSet) -> usize {
    // The ordered set holds a second copy of every member's name.
    alloc_size(std::mem::size_of::<ZSet>())
        + dict_bytes(&z.members)
        + z.len() * BTREE_ELEMENT_BYTES
        + z.members.heap_bytes()
}

/// A stream's cost from its first and last nodes (nodes are filled alike), its groups'
/// pending entries and consumers.
fn stream_bytes(s: &Stream) -> usize {
    const NODE_OVERHEAD_BYTES: usize = 96;
    const NACK_BYTES: usize = 96;
    const CONSUMER_BYTES: usize = 128;
    let node_bytes = |n: &crate::StreamNode| {
        NODE_OVERHEAD_BYTES
            + n.master_fields
                .iter()
                .map(|f| 24 + str_bytes(f))
                .sum::<usize>()
            + alloc_size(n.entries.capacity() * std::mem::size_of::<crate::StreamEntry>())
            + n.entries
                .iter()
                .map(|e| {
                    alloc_size(e.fields.capacity() * std::mem::size_of::<Str>())
                        + e.fields.iter().map(str_bytes).sum::<usize>()
                })
                .sum::<usize>()
    };
    let nodes = s.nodes();
    let sample = nodes
        .values()
        .next()
        .into_iter()
        .chain(nodes.values().next_back().filter(|_| nodes.len() > 1))
        .map(node_bytes);
    let groups: usize = s
        .groups
        .values()
        .map(|g| {
            CONSUMER_BYTES
                + g.pel.len() * NACK_BYTES
                + g.consumers
                    .values()
                    .map(|c| CONSUMER_BYTES + c.pel.len() * 24)
                    .sum::<usize>()
        })
        .sum();
    alloc_size(std::mem::size_of::<Stream>()) + extrapolate(nodes.len(), sample) + groups
}

/// Bytes a value holds beyond the 24 bytes of the `Value` itself.
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Str(s) => str_bytes(s),
        Value::List(l) => list_bytes(l),
        Value::Hash(h) => dict_bytes(h),
        Value::Set(s) => dict_bytes(s),
        Value::ZSet(z) => zset_bytes(z),
        Value::Stream(s) => stream_bytes(s),
    }
}

/// What one key costs: its table node (entry included), its name's and value's blocks.
pub fn entry_bytes(e: &Entry) -> usize {
    alloc_size(Dict::<Entry>::NODE_BYTES) + str_bytes(&e.key) + value_bytes(&e.value)
}

/// Heap bytes of one hash field (name and value), for [`Dict`]'s running total.
pub(crate) fn field_heap_bytes(f: &Field) -> usize {
    str_bytes(&f.name) + str_bytes(&f.value)
}

pub(crate) fn member_heap_bytes(m: &Member) -> usize {
    str_bytes(&m.name)
}

pub(crate) fn str_heap_bytes(s: &Str) -> usize {
    str_bytes(s)
}

/// Per key in the expiry index (a B-tree of (deadline, key)), for the dataset's overhead.
pub const EXPIRES_ENTRY_BYTES: usize = 56;

/// Redis's `maxmemory-policy`: which keys may go when memory is over `maxmemory`, and by
/// what measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
        Policy::AllKeysLru,
        Policy::AllKeysLfu,
        Policy::AllKeysRandom,
        Policy::NoEviction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::AllKeysLfu => "allkeys-lfu",
            Policy::AllKeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    /// Whether access is counted by frequency (the key's access bits hold an LFU counter).
    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    /// Whether keys' access is tracked per value (LRU or LFU): then Redis stops sharing
    /// small integer values, each key needing its own object.
    pub fn tracks_access(self) -> bool {
        matches!(
            self,
            Policy::AllKeysLru | Policy::VolatileLru | Policy::AllKeysLfu | Policy::VolatileLfu
        )
    }

    /// Whether only keys with a deadline may be evicted.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// How the keyspace evicts (the node's `maxmemory-*` and `lfu-*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    pub policy: Policy,
    /// Keys sampled per database per round (`maxmemory-samples`).
    pub samples: usize,
    pub lfu_log_factor: u32,
    /// Idle minutes per decrement of a key's counter (`lfu-decay-time`; 0: never).
    pub lfu_decay_time_min: u32,
}

impl Default for Eviction {
    fn default() -> Self {
        Eviction {
            policy: Policy::NoEviction,
            samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time_min: 1,
        }
    }
}

/// Bits of access information each key carries: seconds of the LRU clock, or the LFU
/// counter (low 8 bits) with the minute it was last decremented (the bits above).
pub const ACCESS_BITS: u32 = 23;
pub const ACCESS_MAX: u64 = (1 << ACCESS_BITS) - 1;
const LFU_MINUTES_MAX: u64 = ACCESS_MAX >> 8;
/// A new key's LFU counter, so it is not evicted before it had a chance to be read
/// (Redis's `LFU_INIT_VAL`).
pub const LFU_INIT_VAL: u64 = 5;

/// The LRU clock: seconds, wrapping at the access bits.
pub fn lru_clock(now_ms: u64) -> u64 {
    (now_ms / 1000) & ACCESS_MAX
}

/// Milliseconds since a key stamped `lru` at the LRU clock was last accessed.
pub fn lru_idle_ms(lru: u64, now_ms: u64) -> u64 {
    let clock = lru_clock(now_ms);
    let secs = if clock >= lru {
        clock - lru
    } else {
        clock + (ACCESS_MAX - lru)
    };
    secs * 1000
}

fn lfu_minutes(now_ms: u64) -> u64 {
    (now_ms / 60_000) & LFU_MINUTES_MAX
}

/// The access bits of a new key under LFU.
pub fn lfu_new(now_ms: u64) -> u64 {
    (lfu_minutes(now_ms) << 8) | LFU_INIT_VAL
}

/// The counter of `access` after the decay its idle minutes call for.
pub fn lfu_decayed(access: u64, now_ms: u64, decay_time_min: u32) -> u64 {
    let (ldt, counter) = (access >> 8, access & 255);
    let now = lfu_minutes(now_ms);
    let elapsed = if now >= ldt {
        now - ldt
    } else {
        LFU_MINUTES_MAX - ldt + now
    };
    let periods = if decay_time_min == 0 {
        0
    } else {
        elapsed / u64::from(decay_time_min)
    };
    counter.saturating_sub(periods)
}

/// The access bits after one access: decayed, then incremented with probability
/// 1 / ((counter - LFU_INIT_VAL) * log_factor + 1) (`r` is uniform in [0, 1)).
pub fn lfu_touch(access: u64, now_ms: u64, ev: &Eviction, r: f64) -> u64 {
    let mut counter = lfu_decayed(access, now_ms, ev.lfu_decay_time_min);
    if counter < 255 {
        let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
        let p = 1.0 / (base * f64::from(ev.lfu_log_factor) + 1.0);
        if r < p {
            counter += 1;
        }
    }
    (lfu_minutes(now_ms) << 8) | counter
}

/// Candidates kept between eviction rounds (Redis's `EVPOOL_SIZE`).
pub const EVICTION_POOL_SIZE: usize = 16;

/// The best eviction candidates seen, by ascending score (higher: evict first).
#[derive(Default)]
pub struct Pool {
    slots: Vec<(u64, usize, Str)>,
}

impl Pool {
    /// Offers a sampled key; kept if the pool has room or it beats the worst kept. A key
    /// offered twice may hold two slots (checking costs more than the slot): the second
    /// pick finds it gone.
    pub fn offer(&mut self, score: u64, db: usize, key: &[u8]) {
        let at = self.slots.partition_point(|(s, _, _)| *s < score);
        if self.slots.len() == EVICTION_POOL_SIZE {
            if at == 0 {
                return;
            }
            self.slots.remove(0);
            self.slots.insert(at - 1, (score, db, Str::new(key)));
        } else {
            self.slots.insert(at, (score, db, Str::new(key)));
        }
    }

    /// The best candidate, taken out of the pool.
    pub fn take_best(&mut self) -> Option<(usize, Str)> {
        self.slots.pop().map(|(_, db, k)| (db, k))
    }

    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jemalloc_size_classes() {
        let classes = [
            (1, 8),
            (8, 8),
            (9, 16),
            (17, 32),
            (40, 48),
            (64, 64),
            (65, 80),
            (128, 128),
            (129, 160),
            (200, 224),
            (257, 320),
            (1000, 1024),
            (1025, 1280),
            (5000, 5120),
        ];
        for (n, size) in classes {
            assert_eq!(alloc_size(n), size, "{n} bytes");
        }
    }

    #[test]
    fn policies_by_name() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name()), Some(p));
        }
        assert_eq!(Policy::parse("ALLKEYS-LRU"), Some(Policy::AllKeysLru));
        assert_eq!(Policy::parse("lru"), None);
        assert!(Policy::VolatileTtl.volatile_only() && !Policy::AllKeysLfu.volatile_only());
    }

    #[test]
    fn lru_idle_time_wraps_with_the_clock() {
        let t = 1_000_000_000;
        assert_eq!(lru_idle_ms(lru_clock(t), t + 5_000), 5_000);
        // Stamped just before the clock wrapped.
        let before_wrap = (ACCESS_MAX - 1) * 1000;
        let after = before_wrap + 10_000;
        assert_eq!(lru_idle_ms(lru_clock(before_wrap), after), 9_000);
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let ev = Eviction::default();
        let t = 60_000 * 100;
        let mut a = lfu_new(t);
        assert_eq!(a & 255, LFU_INIT_VAL);
        // A certain increment (r = 0) up to the cap.
        for _ in 0..300 {
            a = lfu_touch(a, t, &ev, 0.0);
        }
        assert_eq!(a & 255, 255);
        // At the initial value an access always counts; above it, with probability
        // 1 / (10 (counter - 5) + 1): not with r just under 1.
        let b = lfu_touch(lfu_new(t), t, &ev, 0.999);
        assert_eq!(b & 255, LFU_INIT_VAL + 1);
        assert_eq!(lfu_touch(b, t, &ev, 0.999) & 255, LFU_INIT_VAL + 1);
        assert_eq!(lfu_touch(b, t, &ev, 0.05) & 255, LFU_INIT_VAL + 2);
        // 1 minute per decrement at the default decay time.
        assert_eq!(lfu_decayed(a, t + 10 * 60_000, 1), 245);
        assert_eq!(lfu_decayed(a, t + 10 * 60_000, 0), 255);
    }

    #[test]
    fn pool_keeps_the_best_candidates() {
        let mut pool = Pool::default();
        for i in 0..40u64 {
            pool.offer(i, 0, format!("k{i}").as_bytes());
        }
        let mut taken = Vec::new();
        while let Some((_, k)) = pool.take_best() {
            taken.push(String::from_utf8(k.as_bytes().to_vec()).unwrap());
        }
        assert_eq!(taken.len(), EVICTION_POOL_SIZE);
        assert_eq!(taken[0], "k39");
        assert_eq!(taken[15], "k24");
    }
}
