//! The stream value type: entries by ID in nodes shaped like Redis's listpacks, and the
//! consumer groups with their pending entries lists.
//!
//! Entries are grouped into nodes the way Redis groups them into listpacks (a node closes
//! at `stream-node-max-entries` entries, deleted ones included, or `stream-node-max-bytes`
//! of encoded size), because approximate trimming (`MAXLEN ~`) removes whole nodes only
//! and its results are part of Redis's observable behaviour. Deleted entries stay in their
//! node as tombstones until the whole node goes, as in Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::Str;

/// A stream entry ID: milliseconds and a sequence number, ordered as a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID, or None after the last possible one.
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous ID, or None before 0-0.
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// The 16-byte big-endian form Redis keys its radix trees with.
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One entry: its ID and its fields and values, interleaved.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<Str>,
    pub deleted: bool,
}

/// A run of consecutive entries, as Redis keeps them in one listpack.
#[derive(Debug, Clone)]
pub struct StreamNode {
    /// The fields of the node's first entry (Redis's master entry).
    pub master_fields: Vec<Str>,
    pub entries: Vec<StreamEntry>,
    pub live: usize,
    /// The size of Redis's listpack for this node, approximately.
    pub bytes: usize,
}

/// A pending entry of a consumer group: delivered to `consumer`, not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub delivery_time_ms: u64,
    pub delivery_count: u64,
    pub consumer: Str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    pub seen_time_ms: u64,
    /// The IDs this consumer owns in the group's PEL.
    pub pel: BTreeSet<StreamId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    /// How many entries the group has read; None when unknown (Redis's -1).
    pub entries_read: Option<u64>,
    pub pel: BTreeMap<StreamId, Nack>,
    pub consumers: BTreeMap<Str, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: Option<u64>) -> Group {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// Removes `id` from the PEL and from its owner's list; returns the entry it had.
    pub fn ack(&mut self, id: StreamId) -> Option<Nack> {
        let nack = self.pel.remove(&id)?;
        if let Some(c) = self.consumers.get_mut(nack.consumer.as_bytes()) {
            c.pel.remove(&id);
        }
        Some(nack)
    }

    /// Makes `consumer` the owner of pending entry `id` (which must be in the PEL).
    pub fn assign(&mut self, id: StreamId, consumer: &[u8]) {
        let Some(nack) = self.pel.get_mut(&id) else {
            return;
        };
        if nack.consumer.as_bytes() != consumer {
            if let Some(c) = self.consumers.get_mut(nack.consumer.as_bytes()) {
                c.pel.remove(&id);
            }
            nack.consumer = Str::new(consumer);
        }
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }
}

/// Where a trim stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// How streams group entries into nodes (`stream-node-max-bytes`, `-entries`; 0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    pub max_bytes: usize,
    pub max_entries: usize,
}

/// Redis never lets a listpack grow past 1 GiB.
pub const LISTPACK_MAX_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Nodes keyed by their first (master) entry's ID; changed only here, so the radix
    /// count's cache stays true.
    nodes: BTreeMap<StreamId, StreamNode>,
    /// Live entries.
    pub length: u64,
    pub last_id: StreamId,
    /// The first live entry's ID as last recorded (0-0 when empty).
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Str, Group>,
    /// [`Stream::radix_tree_nodes`] as last counted; None once the nodes changed.
    rax_nodes: CachedCount,
}

/// A count cached behind `&self`. Atomic, so a stream can be read from several threads
/// (a blocking save serializes on several).
#[derive(Debug)]
struct CachedCount(std::sync::atomic::AtomicUsize);

impl CachedCount {
    const UNKNOWN: usize = usize::MAX;

    fn get(&self) -> Option<usize> {
        let n = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (n != Self::UNKNOWN).then_some(n)
    }

    fn set(&self, n: Option<usize>) {
        self.0.store(
            n.unwrap_or(Self::UNKNOWN),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Default for CachedCount {
    fn default() -> Self {
        CachedCount(Self::UNKNOWN.into())
    }
}

impl Clone for CachedCount {
    fn clone(&self) -> Self {
        let copy = CachedCount::default();
        copy.set(self.get());
        copy
    }
}

impl Stream {
    /// The nodes, keyed by their first (master) entry's ID.
    pub fn nodes(&self) -> &BTreeMap<StreamId, StreamNode> {
        &self.nodes
    }

    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Appends an entry with an ID the caller checked is above `last_id`.
    pub fn append(&mut self, id: StreamId, fields: Vec<Str>, limits: NodeLimits) {
        let data_bytes: usize = fields.iter().map(|f| f.len()).sum();
        let max_bytes = match limits.max_bytes {
            0 => LISTPACK_MAX_BYTES,
            n => n.min(LISTPACK_MAX_BYTES),
        };
        let fits = self.nodes.values().next_back().is_some_and(|n| {
            n.bytes + data_bytes < max_bytes
                && (limits.max_entries == 0 || n.entries.len() < limits.max_entries)
        });
        if !fits {
            let names: Vec<Str> = fields.iter().step_by(2).cloned().collect();
            let mut bytes = LP_HEADER_BYTES + 1 + 3 * 2 + 2;
            bytes += names.iter().map(|f| lp_str_bytes(f)).sum::<usize>();
            self.rax_nodes.set(None);
            self.nodes.insert(
                id,
                StreamNode {
                    master_fields: names,
                    entries: Vec::new(),
                    live: 0,
                    bytes,
                },
            );
        }
        let (&master, node) = self
            .nodes
            .iter_mut()
            .next_back()
            .expect("node just ensured");
        let same = node.master_fields.len() * 2 == fields.len()
            && node
                .master_fields
                .iter()
                .zip(fields.iter().step_by(2))
                .all(|(a, b)| a == b);
        let mut bytes = lp_int_bytes(if same { 2 } else { 0 })
            + lp_int_bytes(id.ms.wrapping_sub(master.ms) as i64)
            + lp_int_bytes(id.seq.wrapping_sub(master.seq) as i64)
            + lp_int_bytes(fields.len() as i64);
        for (i, f) in fields.iter().enumerate() {
            if i % 2 == 1 || !same {
                bytes += lp_str_bytes(f);
            }
        }
        if !same {
            bytes += lp_int_bytes(fields.len() as i64 / 2);
        }
        node.bytes += bytes;
        node.entries.push(StreamEntry {
            id,
            fields,
            deleted: false,
        });
        node.live += 1;
        self.length += 1;
        self.last_id = id;
        self.entries_added = self.entries_added.saturating_add(1);
        if self.length == 1 {
            self.first_id = id;
        }
    }

    /// The live entry with this ID.
    pub fn get(&self, id: StreamId) -> Option<&StreamEntry> {
        let (_, node) = self.nodes.range(..=id).next_back()?;
        let i = node.entries.binary_search_by(|e| e.id.cmp(&id)).ok()?;
        Some(&node.entries[i]).filter(|e| !e.deleted)
    }

    /// Live entries with IDs in `start..=end`, at most `count` of them (0: all), from the
    /// end when `rev`.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        rev: bool,
        count: usize,
    ) -> Vec<&StreamEntry> {
        let mut out = Vec::new();
        if start > end {
            return out;
        }
        let from = self
            .nodes
            .range(..=start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        let nodes = self.nodes.range(from..=end);
        let want = |e: &&StreamEntry| !e.deleted && e.id >= start && e.id <= end;
        let full = |out: &Vec<&StreamEntry>| count != 0 && out.len() >= count;
        if rev {
            for (_, n) in nodes.rev() {
                for e in n.entries.iter().rev().filter(want) {
                    out.push(e);
                    if full(&out) {
                        return out;
                    }
                }
            }
        } else {
            for (_, n) in nodes {
                for e in n.entries.iter().filter(want) {
                    out.push(e);
                    if full(&out) {
                        return out;
                    }
                }
            }
        }
        out
    }

    pub fn first_entry(&self) -> Option<&StreamEntry> {
        self.nodes
            .values()
            .flat_map(|n| n.entries.iter())
            .find(|e| !e.deleted)
    }

    pub fn last_entry(&self) -> Option<&StreamEntry> {
        self.nodes
            .values()
            .rev()
            .flat_map(|n| n.entries.iter().rev())
            .find(|e| !e.deleted)
    }

    /// Marks entry `id` deleted; returns whether it was live. A node whose last live entry
    /// goes is removed.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some((&master, node)) = self.nodes.range_mut(..=id).next_back() else {
            return false;
        };
        let Ok(i) = node.entries.binary_search_by(|e| e.id.cmp(&id)) else {
            return false;
        };
        if node.entries[i].deleted {
            return false;
        }
        node.entries[i].deleted = true;
        node.live -= 1;
        if node.live == 0 {
            self.nodes.remove(&master);
            self.rax_nodes.set(None);
        }
        self.length -= 1;
        true
    }

    /// Records the first live entry's ID (after deletions at the head).
    pub fn refresh_first_id(&mut self) {
        self.first_id = self.first_entry().map_or(StreamId::MIN, |e| e.id);
    }

    /// Trims from the head as Redis's `streamTrim` does; returns how many entries went.
    /// `approx` removes whole nodes only; `limit` (0: none) bounds the entries removed.
    pub fn trim(&mut self, to: Trim, approx: bool, limit: u64) -> u64 {
        let mut deleted = 0u64;
        loop {
            if let Trim::MaxLen(max) = to
                && self.length <= max
            {
                break;
            }
            let Some((&master, node)) = self.nodes.iter_mut().next() else {
                break;
            };
            let live = node.live as u64;
            if limit != 0 && deleted + live > limit {
                break;
            }
            let remove_node = match to {
                Trim::MaxLen(max) => self.length - live >= max,
                Trim::MinId(min) => node.entries.last().is_some_and(|e| e.id < min),
            };
            if remove_node {
                self.nodes.remove(&master);
                self.rax_nodes.set(None);
                self.length -= live;
                deleted += live;
                continue;
            }
            if approx {
                break;
            }
            for e in node.entries.iter_mut() {
                let stop = match to {
                    Trim::MaxLen(max) => self.length <= max,
                    Trim::MinId(min) => e.id >= min,
                };
                if stop {
                    break;
                }
                if !e.deleted {
                    e.deleted = true;
                    node.live -= 1;
                    self.length -= 1;
                    deleted += 1;
                }
            }
            break;
        }
        if self.length == 0 {
            self.first_id = StreamId::MIN;
        } else if deleted > 0 {
            self.refresh_first_id();
        }
        deleted
    }

    /// Whether `start..=end` may hold a deleted entry (Redis's `streamRangeHasTombstones`).
    pub fn range_has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.length == 0 || self.max_deleted_id.is_zero() {
            return false;
        }
        if self.first_id > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id && self.max_deleted_id <= end
    }

    /// The logical read counter of `id` when it can be known (Redis's
    /// `streamEstimateDistanceFromFirstEverEntry`).
    pub fn estimate_distance(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.length == 0 && id <= self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        if self.max_deleted_id.is_zero() || self.max_deleted_id < self.first_id {
            if id < self.first_id {
                return Some(self.entries_added.saturating_sub(self.length));
            }
            if id == self.first_id {
                return Some(
                    self.entries_added
                        .saturating_sub(self.length)
                        .saturating_add(1),
                );
            }
        }
        None
    }

    /// How many entries `group` has yet to read, when that can be known.
    pub fn lag(&self, group: &Group) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if let Some(read) = group.entries_read
            && !self.range_has_tombstones(group.last_id, StreamId::MAX)
        {
            return Some(self.entries_added.saturating_sub(read));
        }
        self.estimate_distance(group.last_id)
            .map(|read| self.entries_added.saturating_sub(read))
    }

    /// Advances `group` past `id` as a delivery of `id` does.
    pub fn mark_read(&self, group: &mut Group, id: StreamId) {
        if id <= group.last_id {
            return;
        }
        if let Some(read) = group.entries_read
            && !self.range_has_tombstones(id, StreamId::MAX)
        {
            group.entries_read = Some(read.saturating_add(1));
        } else if self.entries_added != 0 {
            group.entries_read = self.estimate_distance(id);
        }
        group.last_id = id;
    }

    /// The node count of the radix tree Redis would key these nodes by (XINFO's
    /// `radix-tree-nodes`): a path-compressed trie of the 16-byte big-endian master IDs.
    /// Counted once per change of the node set (XINFO on a large stream stays cheap).
    pub fn radix_tree_nodes(&self) -> usize {
        if let Some(n) = self.rax_nodes.get() {
            return n;
        }
        let keys: Vec<[u8; 16]> = self.nodes.keys().map(|k| k.to_be_bytes()).collect();
        let n = rax_nodes(&keys, 0);
        self.rax_nodes.set(Some(n));
        n
    }
}

/// Nodes of a compressed trie over `keys` (sorted, equal length) from byte `depth` on:
/// one per branching point, one per compressed run, one per key.
fn rax_nodes(keys: &[[u8; 16]], depth: usize) -> usize {
    if keys.is_empty() || depth == 16 {
        return 1;
    }
    let shared = |d: usize| keys.iter().all(|k| k[d] == keys[0][d]);
    if shared(depth) {
        let mut d = depth;
        while d < 16 && shared(d) {
            d += 1;
        }
        return 1 + rax_nodes(keys, d);
    }
    let mut total = 1;
    let mut start = 0;
    for i in 1..=keys.len() {
        if i == keys.len() || keys[i][depth] != keys[start][depth] {
            total += rax_nodes(&keys[start..i], depth + 1);
            start = i;
        }
    }
    total
}

const LP_HEADER_BYTES: usize = 6;

/// Bytes a listpack element holding integer `v` takes.
fn lp_int_bytes(v: i64) -> usize {
    match v {
        0..=127 => 2,
        -4096..=4095 => 3,
        -32768..=32767 => 4,
        -8_388_608..=8_388_607 => 5,
        -2_147_483_648..=2_147_483_647 => 6,
        _ => 10,
    }
}

/// Bytes a listpack element holding `s` takes (integers are stored as integers).
fn lp_str_bytes(s: &[u8]) -> usize {
    if s.len() <= 20
        && let Some(v) = resp::parse_i64(s)
    {
        return lp_int_bytes(v);
    }
    let enc = match s.len() {
        0..=63 => 1 + s.len(),
        64..=4095 => 2 + s.len(),
        _ => 5 + s.len(),
    };
    let back = match enc {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    enc + back
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &[&str]) -> Vec<Str> {
        v.iter().map(|s| Str::from(*s)).collect()
    }

    const LIMITS: NodeLimits = NodeLimits {
        max_bytes: 4096,
        max_entries: 2,
    };

    #[test]
    fn nodes_split_and_ranges_cross_them() {
        let mut s = Stream::default();
        for i in 1..=5 {
            s.append(StreamId::new(i, 0), fields(&["f", "v"]), LIMITS);
        }
        assert_eq!(s.nodes.len(), 3);
        let ids: Vec<u64> = s
            .range(StreamId::new(2, 0), StreamId::MAX, false, 0)
            .iter()
            .map(|e| e.id.ms)
            .collect();
        assert_eq!(ids, vec![2, 3, 4, 5]);
        let ids: Vec<u64> = s
            .range(StreamId::MIN, StreamId::new(4, 0), true, 2)
            .iter()
            .map(|e| e.id.ms)
            .collect();
        assert_eq!(ids, vec![4, 3]);
        assert!(s.delete(StreamId::new(3, 0)));
        assert!(!s.delete(StreamId::new(3, 0)));
        assert!(s.get(StreamId::new(3, 0)).is_none());
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn approximate_trim_removes_whole_nodes_only() {
        let mut s = Stream::default();
        for i in 1..=5 {
            s.append(StreamId::new(i, 0), fields(&["f", "v"]), LIMITS);
        }
        assert_eq!(s.trim(Trim::MaxLen(2), true, 0), 2);
        assert_eq!(s.len(), 3);
        assert_eq!(s.trim(Trim::MaxLen(2), false, 0), 1);
        assert_eq!(s.first_id, StreamId::new(4, 0));
        assert_eq!(s.trim(Trim::MinId(StreamId::new(5, 0)), false, 0), 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn id_steps_saturate_at_the_ends() {
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(StreamId::MIN.prev(), None);
        assert_eq!(StreamId::new(1, u64::MAX).next(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::new(5, 3).to_string(), "5-3");
    }
}
