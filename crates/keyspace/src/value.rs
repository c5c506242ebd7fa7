//! The value types a key can hold.

use std::collections::{BTreeSet, VecDeque};

use crate::stream::{NodeLimits, Stream};
use crate::{Dict, DictEntry, Str};

pub enum Value {
    Str(Str),
    List(Box<VecDeque<Str>>),
    Hash(Box<Dict<Field>>),
    Set(Box<Dict<Str>>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

/// Redis's names for the types (TYPE, SCAN TYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    List,
    Hash,
    Set,
    ZSet,
    Stream,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Stream => "stream",
        }
    }
}

impl Value {
    pub fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::String,
            Value::List(_) => Kind::List,
            Value::Hash(_) => Kind::Hash,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
            Value::Stream(_) => Kind::Stream,
        }
    }

    /// The encoding redis-server 7.0 would report for this value (OBJECT ENCODING), judged
    /// from its size against the thresholds Redis converts at. Redis never converts back to
    /// a compact form: a collection whose table outgrew the entries threshold stays
    /// converted ([`Dict::outgrew`]); one converted by a long or non-integer element that
    /// is gone again is not remembered (that would cost a check on every write).
    pub fn encoding(&self, limits: &Encodings) -> &'static str {
        match self {
            // Changed in place (APPEND, SETRANGE, SETBIT), as in Redis, whatever it holds.
            Value::Str(Str::Grown(_)) => "raw",
            Value::Str(s) => {
                if s.len() <= 20 && resp::parse_i64(s).is_some() {
                    "int"
                } else if s.len() <= EMBSTR_MAX_BYTES {
                    "embstr"
                } else {
                    "raw"
                }
            }
            // Redis 7.0 keeps every list in a quicklist of listpack nodes.
            Value::List(_) => "quicklist",
            Value::Hash(h) => {
                let small = h.len() <= limits.hash_max_listpack_entries
                    && !h.outgrew(limits.hash_max_listpack_entries)
                    && h.iter().all(|f| {
                        f.name.len() <= limits.hash_max_listpack_value
                            && f.value.len() <= limits.hash_max_listpack_value
                    });
                if small { "listpack" } else { "hashtable" }
            }
            Value::Set(s) => {
                if s.len() <= limits.set_max_intset_entries
                    && !s.outgrew(limits.set_max_intset_entries)
                    && s.iter().all(|m| resp::parse_i64(m).is_some())
                {
                    "intset"
                } else {
                    "hashtable"
                }
            }
            Value::ZSet(z) => {
                let small = z.len() <= limits.zset_max_listpack_entries
                    && !z.members.outgrew(limits.zset_max_listpack_entries)
                    && z.iter()
                        .all(|(m, _)| m.len() <= limits.zset_max_listpack_value);
                if small { "listpack" } else { "skiplist" }
            }
            Value::Stream(_) => "stream",
        }
    }
}

/// Values whose freeing takes more allocations than this are freed in the background by
/// Redis's UNLINK (`LAZYFREE_THRESHOLD`), which INFO counts as `lazyfreed_objects`.
pub const LAZYFREE_THRESHOLD_ALLOCATIONS: usize = 64;

/// Bytes of elements per quicklist node at Redis's default `list-max-listpack-size` (-2).
const QUICKLIST_NODE_BYTES: usize = 8192;

impl Value {
    /// About how many allocations freeing this value takes in Redis (its
    /// `lazyfreeGetFreeEffort`): nodes, table entries, or 1 for a compact encoding.
    pub fn free_effort(&self, limits: &Encodings) -> usize {
        match self {
            Value::Str(_) => 1,
            Value::List(l) => {
                let bytes: usize = l.iter().map(|v| v.len() + 2).sum();
                bytes.div_ceil(QUICKLIST_NODE_BYTES).max(1)
            }
            Value::Hash(h) if self.encoding(limits) == "hashtable" => h.len(),
            Value::Set(s) if self.encoding(limits) == "hashtable" => s.len(),
            Value::ZSet(z) if self.encoding(limits) == "skiplist" => z.len(),
            Value::Stream(s) => {
                // Redis estimates every group's PEL by the first one's.
                let pel = s.groups.values().next().map_or(0, |g| g.pel.len());
                s.radix_tree_nodes() + s.groups.len() * (1 + pel)
            }
            _ => 1,
        }
    }
}

/// Strings up to this long are allocated with their object in Redis ("embstr").
const EMBSTR_MAX_BYTES: usize = 44;

/// The sizes up to which Redis keeps a value in its compact encoding (the `*-max-*`
/// settings), for OBJECT ENCODING and the HyperLogLog commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encodings {
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
    pub stream_node_max_bytes: usize,
    pub stream_node_max_entries: usize,
    /// The size a sparse HyperLogLog may grow to before it turns dense.
    pub hll_sparse_max_bytes: usize,
}

impl Encodings {
    /// How new stream entries are grouped into nodes.
    pub fn stream_nodes(&self) -> NodeLimits {
        NodeLimits {
            max_bytes: self.stream_node_max_bytes,
            max_entries: self.stream_node_max_entries,
        }
    }
}

impl Default for Encodings {
    /// Redis's defaults.
    fn default() -> Self {
        Encodings {
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            hll_sparse_max_bytes: 3000,
            stream_node_max_bytes: 4096,
            stream_node_max_entries: 100,
        }
    }
}

/// A hash field and its value.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: Str,
    pub value: Str,
}

impl DictEntry for Field {
    fn key(&self) -> &[u8] {
        &self.name
    }
    fn heap_bytes(&self) -> usize {
        crate::memory::field_heap_bytes(self)
    }
}

/// A score with the total order Redis uses (scores are never NaN; -0 equals 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .partial_cmp(&other.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

/// A zset member and its score, as stored in the member index.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: Str,
    pub score: f64,
}

impl DictEntry for Member {
    fn key(&self) -> &[u8] {
        &self.name
    }
    fn heap_bytes(&self) -> usize {
        crate::memory::member_heap_bytes(self)
    }
}

/// A sorted set: a member index for O(1) score lookups and an ordered set of
/// (score, member) for ranges.
///
/// Rank queries walk the ordered set (O(rank)); an order-statistics tree would make them
/// O(log n) as Redis's skiplist does.
#[derive(Default)]
pub struct ZSet {
    pub members: Dict<Member>,
    pub order: BTreeSet<(Score, Str)>,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.members.get(member).map(|m| m.score)
    }

    /// Sets `member`'s score; returns the previous score.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        match self.members.get_mut(member) {
            Some(m) => {
                let old = m.score;
                if old != score || old.is_sign_negative() != score.is_sign_negative() {
                    m.score = score;
                    let name = m.name.clone();
                    self.order.remove(&(Score(old), name.clone()));
                    self.order.insert((Score(score), name));
                }
                Some(old)
            }
            None => {
                let name = Str::new(member);
                self.order.insert((Score(score), name.clone()));
                self.members.insert_new(Member { name, score });
                None
            }
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let m = self.members.remove(member)?;
        self.order.remove(&(Score(m.score), m.name));
        Some(m.score)
    }

    /// Members in ascending (score, member) order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Str, f64)> {
        self.order.iter().map(|(s, m)| (m, s.0))
    }

    /// 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let key = (Score(score), Str::new(member));
        Some(self.order.range(..key).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zset_orders_by_score_then_member() {
        let mut z = ZSet::default();
        z.insert(b"b", 1.0);
        z.insert(b"a", 1.0);
        z.insert(b"c", 0.5);
        assert_eq!(z.insert(b"c", 2.0), Some(0.5));
        let order: Vec<_> = z.iter().map(|(m, s)| (m.as_bytes().to_vec(), s)).collect();
        assert_eq!(
            order,
            vec![
                (b"a".to_vec(), 1.0),
                (b"b".to_vec(), 1.0),
                (b"c".to_vec(), 2.0)
            ]
        );
        assert_eq!(z.rank(b"c"), Some(2));
        assert_eq!(z.remove(b"a"), Some(1.0));
        assert_eq!(z.len(), 2);
        assert_eq!(z.order.len(), 2);
    }

    #[test]
    fn encodings_follow_thresholds_and_only_grow() {
        let limits = Encodings {
            set_max_intset_entries: 4,
            ..Encodings::default()
        };
        let mut d: Dict<Str> = Dict::new();
        for i in 0..4 {
            d.insert(Str::from_i64(i));
        }
        let mut set = Value::Set(Box::new(d));
        assert_eq!(set.encoding(&limits), "intset");
        let Value::Set(d) = &mut set else {
            unreachable!()
        };
        for i in 4..20 {
            d.insert(Str::from_i64(i));
        }
        assert_eq!(set.encoding(&limits), "hashtable");
        let Value::Set(d) = &mut set else {
            unreachable!()
        };
        for i in 4..20 {
            d.remove(Str::from_i64(i).as_bytes());
        }
        // Back to 4 members, as Redis it stays a hashtable.
        assert_eq!(d.len(), 4);
        assert_eq!(set.encoding(&limits), "hashtable");
        let mut small: Dict<Str> = Dict::new();
        small.insert(Str::new(b"a"));
        assert_eq!(Value::Set(Box::new(small)).encoding(&limits), "hashtable");
        assert_eq!(Value::Str(Str::new(b"12")).encoding(&limits), "int");
        assert_eq!(
            Value::Str(Str::new(&[b'x'; 44])).encoding(&limits),
            "embstr"
        );
        assert_eq!(Value::Str(Str::new(&[b'x'; 45])).encoding(&limits), "raw");
    }

    #[test]
    fn value_is_small() {
        assert!(
            std::mem::size_of::<Value>() <= 32,
            "{}",
            std::mem::size_of::<Value>()
        );
    }
}
