//! Streams in RDB files: the radix tree of listpacks (each a master entry and delta-encoded
//! entries), then the stream's IDs and counters, then the consumer groups with their
//! pending entries lists and consumers.
//!
//! Written as type 19 (`STREAM_LISTPACKS_2`, Redis 7.0); read as 15 (Redis 5 and 6), 19
//! and 21 (Redis 7.2, which adds each consumer's active time). Tombstones are not kept:
//! a read stream holds its live entries, and a written one has no deleted entries.

use std::io::{BufRead, Write};

use super::pack::Listpack;
use super::read::Reader;
use super::write::RdbWriter;
use super::{encodings, kind};
use crate::FormatError;
use resp::parse_i64 as lp_int;

/// A stream entry ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RdbStreamId {
    pub ms: u64,
    pub seq: u64,
}

impl RdbStreamId {
    fn from_be(b: &[u8]) -> Option<RdbStreamId> {
        let ms = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        Some(RdbStreamId { ms, seq })
    }

    fn to_be(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbStreamEntry {
    pub id: RdbStreamId,
    /// Fields and values, interleaved.
    pub fields: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbPending {
    pub id: RdbStreamId,
    pub delivery_time_ms: u64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbConsumer {
    pub name: Vec<u8>,
    pub seen_time_ms: u64,
    /// Redis 7.2's last successful interaction (type 21 only).
    pub active_time_ms: Option<u64>,
    /// The IDs this consumer owns in its group's PEL.
    pub pel: Vec<RdbStreamId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbGroup {
    pub name: Vec<u8>,
    pub last_id: RdbStreamId,
    /// None: unknown (Redis's -1).
    pub entries_read: Option<u64>,
    pub pel: Vec<RdbPending>,
    pub consumers: Vec<RdbConsumer>,
}

/// A stream as stored: its live entries in ID order and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RdbStream {
    pub entries: Vec<RdbStreamEntry>,
    pub last_id: RdbStreamId,
    pub first_id: RdbStreamId,
    pub max_deleted_id: RdbStreamId,
    pub entries_added: u64,
    pub groups: Vec<RdbGroup>,
}

/// Entry flags inside a stream listpack.
const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

/// Entries per written listpack (Redis's default `stream-node-max-entries`).
const NODE_ENTRIES_MAX: usize = 100;
/// Bytes per written listpack before a new one starts (Redis's `stream-node-max-bytes`).
const NODE_BYTES_MAX: usize = 4096;
/// Elements a stream listpack may hold; a corrupt count cannot make the reader loop on.
const NODE_ELEMENTS_MAX: u64 = u32::MAX as u64;

/// Encodes `entries` as one stream node listpack (the first entry's fields as master).
fn encode_node(entries: &[RdbStreamEntry]) -> Vec<u8> {
    let master = entries[0].id;
    let names: Vec<&[u8]> = entries[0]
        .fields
        .iter()
        .step_by(2)
        .map(|f| &f[..])
        .collect();
    let mut lp = Listpack::new();
    lp.push_int(entries.len() as i64);
    lp.push_int(0);
    lp.push_int(names.len() as i64);
    names.iter().for_each(|n| lp.push(n));
    lp.push_int(0);
    for e in entries {
        let same = e.fields.len() == names.len() * 2
            && e.fields.iter().step_by(2).zip(&names).all(|(a, b)| a == b);
        lp.push_int(if same { FLAG_SAMEFIELDS } else { 0 });
        lp.push_int(e.id.ms.wrapping_sub(master.ms) as i64);
        lp.push_int(e.id.seq.wrapping_sub(master.seq) as i64);
        let pairs = e.fields.len() / 2;
        if same {
            e.fields.iter().skip(1).step_by(2).for_each(|v| lp.push(v));
            lp.push_int(pairs as i64 + 3);
        } else {
            lp.push_int(pairs as i64);
            e.fields.iter().for_each(|f| lp.push(f));
            lp.push_int(2 * pairs as i64 + 4);
        }
    }
    lp.into_vec()
}

/// Splits entries into nodes as Redis would with its default node limits.
fn nodes(entries: &[RdbStreamEntry]) -> Vec<&[RdbStreamEntry]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let size: usize = e.fields.iter().map(|f| f.len() + 2).sum::<usize>() + 8;
        if i > start && (i - start >= NODE_ENTRIES_MAX || bytes + size >= NODE_BYTES_MAX) {
            out.push(&entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

impl<W: Write> RdbWriter<W> {
    /// Writes a stream as Redis 7.0 does (type 19).
    pub fn write_stream(
        &mut self,
        key: &[u8],
        expire_ms: Option<u64>,
        s: &RdbStream,
    ) -> Result<(), FormatError> {
        self.write_stream_as(key, expire_ms, s, kind::STREAM_LISTPACKS_2)
    }

    /// Type 15 (Redis 5 and 6) leaves out the first and max-deleted IDs, entries-added and
    /// the groups' entries-read; type 19 has them.
    fn write_stream_as(
        &mut self,
        key: &[u8],
        expire_ms: Option<u64>,
        s: &RdbStream,
        type_id: u8,
    ) -> Result<(), FormatError> {
        let v1 = type_id == kind::STREAM_LISTPACKS;
        self.key_header(key, expire_ms, type_id)?;
        let nodes = nodes(&s.entries);
        self.len(nodes.len() as u64)?;
        for n in nodes {
            self.string(&n[0].id.to_be())?;
            self.string(&encode_node(n))?;
        }
        self.len(s.entries.len() as u64)?;
        self.len(s.last_id.ms)?;
        self.len(s.last_id.seq)?;
        if !v1 {
            for v in [
                s.first_id.ms,
                s.first_id.seq,
                s.max_deleted_id.ms,
                s.max_deleted_id.seq,
                s.entries_added,
            ] {
                self.len(v)?;
            }
        }
        self.len(s.groups.len() as u64)?;
        for g in &s.groups {
            self.string(&g.name)?;
            self.len(g.last_id.ms)?;
            self.len(g.last_id.seq)?;
            if !v1 {
                self.len(g.entries_read.unwrap_or(u64::MAX))?;
            }
            self.len(g.pel.len() as u64)?;
            for p in &g.pel {
                self.raw(&p.id.to_be())?;
                self.raw(&p.delivery_time_ms.to_le_bytes())?;
                self.len(p.delivery_count)?;
            }
            self.len(g.consumers.len() as u64)?;
            for c in &g.consumers {
                self.string(&c.name)?;
                self.raw(&c.seen_time_ms.to_le_bytes())?;
                self.len(c.pel.len() as u64)?;
                for id in &c.pel {
                    self.raw(&id.to_be())?;
                }
            }
        }
        Ok(())
    }
}

/// Decodes one node: its live entries, appended to `out` in order.
fn decode_node(
    master: RdbStreamId,
    lp: &[u8],
    out: &mut Vec<RdbStreamEntry>,
) -> Result<(), String> {
    let items = encodings::listpack(lp)?;
    let mut it = items.into_iter();
    let mut next = || {
        it.next()
            .ok_or_else(|| "stream listpack ends early".to_string())
    };
    let int = |v: Vec<u8>| lp_int(&v).ok_or_else(|| "stream listpack integer expected".to_string());
    let live = int(next()?)?;
    let deleted = int(next()?)?;
    let nfields = int(next()?)?;
    let total = live.checked_add(deleted).unwrap_or(-1);
    if live < 0 || deleted < 0 || nfields < 0 || total < 0 || total as u64 > NODE_ELEMENTS_MAX {
        return Err("bad stream listpack counts".into());
    }
    if live == 0 {
        return Err("stream listpack without live entries".into());
    }
    let mut names = Vec::new();
    for _ in 0..nfields {
        names.push(next()?);
    }
    if int(next()?)? != 0 {
        return Err("stream master entry without terminator".into());
    }
    let mut seen_live = 0;
    for _ in 0..total {
        let flags = int(next()?)?;
        let ms = master.ms.wrapping_add(int(next()?)? as u64);
        let seq = master.seq.wrapping_add(int(next()?)? as u64);
        let (fields, extra) = if flags & FLAG_SAMEFIELDS != 0 {
            let mut f = Vec::with_capacity(names.len() * 2);
            for n in &names {
                f.push(n.clone());
                f.push(next()?);
            }
            (f, 3)
        } else {
            let n = int(next()?)?;
            if n < 0 || n as u64 > NODE_ELEMENTS_MAX {
                return Err("bad stream entry field count".into());
            }
            let mut f = Vec::new();
            for _ in 0..2 * n {
                f.push(next()?);
            }
            (f, 4 + n)
        };
        let pairs = fields.len() as i64 / 2;
        let want = if flags & FLAG_SAMEFIELDS != 0 {
            pairs + extra
        } else {
            2 * pairs + 4
        };
        if int(next()?)? != want {
            return Err("stream entry lp-count mismatch".into());
        }
        if flags & FLAG_DELETED != 0 {
            continue;
        }
        let id = RdbStreamId { ms, seq };
        if out.last().is_some_and(|e| e.id >= id) || id < master {
            return Err("stream entry ids out of order".into());
        }
        seen_live += 1;
        out.push(RdbStreamEntry { id, fields });
    }
    if seen_live != live {
        return Err("stream listpack live count mismatch".into());
    }
    if it.next().is_some() {
        return Err("stream listpack has trailing elements".into());
    }
    Ok(())
}

impl<R: BufRead> Reader<R> {
    fn stream_id(&mut self) -> Result<RdbStreamId, FormatError> {
        Ok(RdbStreamId {
            ms: self.len()?,
            seq: self.len()?,
        })
    }

    fn raw_id(&mut self) -> Result<RdbStreamId, FormatError> {
        let b: [u8; 16] = self.bytes()?;
        Ok(RdbStreamId::from_be(&b).unwrap_or_default())
    }

    /// Reads a stream of type 15, 19 or 21.
    pub(super) fn stream(&mut self, type_id: u8) -> Result<RdbStream, FormatError> {
        let v1 = type_id == kind::STREAM_LISTPACKS;
        let v3 = type_id == kind::STREAM_LISTPACKS_3;
        let mut s = RdbStream::default();
        let nodes = self.count("stream listpacks")?;
        for _ in 0..nodes {
            let at = self.offset();
            let key = self.string()?;
            let master = RdbStreamId::from_be(&key)
                .filter(|_| key.len() == 16)
                .ok_or_else(|| FormatError::corrupt(at, "stream node key is not a stream id"))?;
            let at = self.offset();
            let lp = self.string()?;
            if s.entries.last().is_some_and(|e| e.id >= master) {
                return Err(FormatError::corrupt(at, "stream nodes out of order"));
            }
            decode_node(master, &lp, &mut s.entries).map_err(|r| FormatError::corrupt(at, r))?;
        }
        let at = self.offset();
        let length = self.len()?;
        if length != s.entries.len() as u64 {
            return Err(FormatError::corrupt(
                at,
                "stream length differs from its entries",
            ));
        }
        s.last_id = self.stream_id()?;
        if s.entries.last().is_some_and(|e| e.id > s.last_id) {
            return Err(FormatError::corrupt(at, "stream entry above its last id"));
        }
        if v1 {
            s.first_id = s
                .entries
                .first()
                .map_or_else(RdbStreamId::default, |e| e.id);
            s.entries_added = length;
        } else {
            s.first_id = self.stream_id()?;
            s.max_deleted_id = self.stream_id()?;
            s.entries_added = self.len()?;
        }
        let groups = self.count("stream consumer groups")?;
        for _ in 0..groups {
            let at = self.offset();
            let name = self.string()?;
            if s.groups.iter().any(|g| g.name == name) {
                return Err(FormatError::corrupt(at, "duplicate consumer group"));
            }
            let last_id = self.stream_id()?;
            let entries_read = if v1 {
                estimate_distance(&s, last_id)
            } else {
                Some(self.len()?).filter(|n| *n != u64::MAX)
            };
            let mut g = RdbGroup {
                name,
                last_id,
                entries_read,
                pel: Vec::new(),
                consumers: Vec::new(),
            };
            let pel = self.count("stream pending entries")?;
            for _ in 0..pel {
                let at = self.offset();
                let id = self.raw_id()?;
                let delivery_time_ms = u64::from_le_bytes(self.bytes()?);
                let delivery_count = self.len()?;
                if g.pel.last().is_some_and(|p| p.id >= id) {
                    return Err(FormatError::corrupt(at, "stream pel out of order"));
                }
                g.pel.push(RdbPending {
                    id,
                    delivery_time_ms,
                    delivery_count,
                });
            }
            let mut owned = vec![false; g.pel.len()];
            let consumers = self.count("stream consumers")?;
            for _ in 0..consumers {
                let at = self.offset();
                let name = self.string()?;
                if g.consumers.iter().any(|c| c.name == name) {
                    return Err(FormatError::corrupt(at, "duplicate stream consumer"));
                }
                let seen_time_ms = u64::from_le_bytes(self.bytes()?);
                let active_time_ms = if v3 {
                    Some(u64::from_le_bytes(self.bytes()?))
                } else {
                    None
                };
                let n = self.count("stream consumer pending entries")?;
                let mut pel = Vec::new();
                for _ in 0..n {
                    let at = self.offset();
                    let id = self.raw_id()?;
                    let i = g.pel.binary_search_by(|p| p.id.cmp(&id)).map_err(|_| {
                        FormatError::corrupt(at, "consumer entry not found in group pel")
                    })?;
                    if std::mem::replace(&mut owned[i], true) {
                        return Err(FormatError::corrupt(at, "pending entry owned twice"));
                    }
                    pel.push(id);
                }
                pel.sort();
                g.consumers.push(RdbConsumer {
                    name,
                    seen_time_ms,
                    active_time_ms,
                    pel,
                });
            }
            if owned.iter().any(|o| !o) {
                return Err(FormatError::corrupt(at, "pending entry without a consumer"));
            }
            s.groups.push(g);
        }
        s.groups.sort_by(|a, b| a.name.cmp(&b.name));
        for g in &mut s.groups {
            g.consumers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(s)
    }
}

/// What Redis estimates a group has read when the file does not say (type 15).
fn estimate_distance(s: &RdbStream, id: RdbStreamId) -> Option<u64> {
    let len = s.entries.len() as u64;
    if s.entries_added == 0 {
        return Some(0);
    }
    if len == 0 && id <= s.last_id {
        return Some(s.entries_added);
    }
    if id == s.last_id {
        return Some(s.entries_added);
    }
    if id > s.last_id {
        return None;
    }
    let no_tombstones = s.max_deleted_id == RdbStreamId::default() || s.max_deleted_id < s.first_id;
    if no_tombstones {
        if id < s.first_id {
            return Some(s.entries_added.saturating_sub(len));
        }
        if id == s.first_id {
            return Some(s.entries_added.saturating_sub(len).saturating_add(1));
        }
    }
    None
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    use crate::damage::{apply, arb_damage};

    /// Listpack headers and element encodings claiming far more than there is.
    const HUGE: [&[u8]; 4] = [
        &[0xff, 0xff, 0xff, 0x7f],
        &[0xf0, 0xff, 0xff, 0xff, 0x7f],
        &[0xf4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        &[0x81, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff],
    ];

    proptest! {
        #[test]
        fn fuzz_damaged_stream_nodes_are_refused_not_panicked_on(damage in arb_damage(HUGE.len(), 2)) {
            // Small, so that a long fuzz run stays quick.
            let s = sample_of(12);
            let node = nodes(&s.entries)[0];
            let lp = apply(encode_node(node), &damage, &HUGE);
            let mut out = Vec::new();
            let _ = decode_node(node[0].id, &lp, &mut out);
        }

        #[test]
        fn fuzz_damaged_stream_dumps_never_panic(damage in arb_damage(HUGE.len(), 2)) {
            let mut w = RdbWriter::for_dump(Vec::new(), false);
            w.write_stream(b"", None, &sample_of(12)).unwrap();
            let payload = w.finish_dump().unwrap();
            // Damage the body and keep the trailer valid, so the stream parser sees it.
            let body = apply(payload[..payload.len() - 10].to_vec(), &damage, &HUGE);
            let mut fixed = body.clone();
            fixed.extend_from_slice(&payload[payload.len() - 10..payload.len() - 8]);
            let crc = crate::crc64(&fixed);
            fixed.extend_from_slice(&crc.to_le_bytes());
            let _ = super::super::read_dump(&fixed, super::super::ReadOptions::default());
        }
    }

    #[test]
    fn stream_dumps_round_trip_and_forged_counts_are_refused() {
        let mut w = RdbWriter::for_dump(Vec::new(), true);
        w.write_stream(b"", None, &sample()).unwrap();
        let payload = w.finish_dump().unwrap();
        let back = super::super::read_dump(&payload, super::super::ReadOptions::default()).unwrap();
        assert_eq!(back, super::super::RdbValue::Stream(Box::new(sample())));
        // A node whose master entry claims 2^62 entries.
        let mut lp = Listpack::new();
        lp.push_int(1 << 61);
        lp.push_int(1 << 61);
        lp.push_int(0);
        lp.push_int(0);
        let err = decode_node(RdbStreamId::default(), lp.finish(), &mut Vec::new()).unwrap_err();
        assert!(err.contains("counts"), "{err}");
    }

    fn id(ms: u64, seq: u64) -> RdbStreamId {
        RdbStreamId { ms, seq }
    }

    pub(crate) fn sample() -> RdbStream {
        sample_of(250)
    }

    /// A stream of `n` entries (at least 3) with a group, two consumers and pending entries.
    pub(crate) fn sample_of(n: u64) -> RdbStream {
        let mut entries = Vec::new();
        for i in 0..n {
            let fields: Vec<Vec<u8>> = if i % 7 == 0 {
                vec![b"other".to_vec(), i.to_string().into_bytes()]
            } else {
                vec![
                    b"f".to_vec(),
                    format!("value-{i}").into_bytes(),
                    b"n".to_vec(),
                    (i as i64 * -1000).to_string().into_bytes(),
                ]
            };
            entries.push(RdbStreamEntry {
                id: id(1_700_000_000_000 + i / 3, i % 3),
                fields,
            });
        }
        let last = entries.last().unwrap().id;
        RdbStream {
            first_id: entries[0].id,
            last_id: last,
            max_deleted_id: id(1, 1),
            entries_added: n + 10,
            entries,
            groups: vec![RdbGroup {
                name: b"g".to_vec(),
                last_id: last,
                entries_read: Some(n + 10),
                pel: vec![
                    RdbPending {
                        id: id(1_700_000_000_000, 1),
                        delivery_time_ms: 1_700_000_000_123,
                        delivery_count: 2,
                    },
                    RdbPending {
                        id: id(1_700_000_000_001, 0),
                        delivery_time_ms: 5,
                        delivery_count: 1,
                    },
                ],
                consumers: vec![
                    RdbConsumer {
                        name: b"alice".to_vec(),
                        seen_time_ms: 99,
                        active_time_ms: None,
                        pel: vec![id(1_700_000_000_000, 1), id(1_700_000_000_001, 0)],
                    },
                    RdbConsumer {
                        name: b"bob".to_vec(),
                        seen_time_ms: 7,
                        active_time_ms: None,
                        pel: vec![],
                    },
                ],
            }],
        }
    }

    #[test]
    fn nodes_decode_to_what_was_encoded() {
        let s = sample();
        let mut out = Vec::new();
        for n in nodes(&s.entries) {
            decode_node(n[0].id, &encode_node(n), &mut out).unwrap();
        }
        assert_eq!(out, s.entries);
    }

    #[test]
    fn listpack_integers_use_every_width() {
        let mut lp = Listpack::new();
        let values = [
            0i64,
            127,
            128,
            -1,
            -4096,
            4095,
            30000,
            -8_000_000,
            2_000_000_000,
            i64::MIN,
        ];
        values.iter().for_each(|v| lp.push_int(*v));
        let items = encodings::listpack(lp.finish()).unwrap();
        let back: Vec<i64> = items.iter().map(|b| lp_int(b).unwrap()).collect();
        assert_eq!(back, values);
        assert_eq!(lp_int(b"007"), None);
        assert_eq!(lp_int(b"-0"), None);
    }
}

#[cfg(test)]
mod other_versions {
    use super::*;

    /// Redis 5 and 6 (type 15) streams: what the file lacks is derived as Redis does.
    #[test]
    fn redis_6_streams_read_with_derived_counters() {
        let mut s = tests::sample();
        let mut w = RdbWriter::for_dump(Vec::new(), false);
        w.write_stream_as(b"", None, &s, kind::STREAM_LISTPACKS)
            .unwrap();
        let payload = w.finish_dump().unwrap();
        let back = super::super::read_dump(&payload, super::super::ReadOptions::default()).unwrap();
        s.first_id = s.entries[0].id;
        s.max_deleted_id = RdbStreamId::default();
        s.entries_added = s.entries.len() as u64;
        // The group read up to the last ID: all that was ever added.
        s.groups[0].entries_read = Some(s.entries_added);
        assert_eq!(back, super::super::RdbValue::Stream(Box::new(s)));
    }

    /// Redis 7.2 (type 21) adds each consumer's active time after its seen time.
    #[test]
    fn redis_7_2_streams_read_with_consumer_active_times() {
        let seen = 0x1122_3344_5566_7788u64;
        let mut s = RdbStream::default();
        s.entries.push(RdbStreamEntry {
            id: RdbStreamId { ms: 5, seq: 0 },
            fields: vec![b"f".to_vec(), b"v".to_vec()],
        });
        s.last_id = RdbStreamId { ms: 5, seq: 0 };
        s.first_id = s.last_id;
        s.entries_added = 1;
        s.groups.push(RdbGroup {
            name: b"g".to_vec(),
            last_id: s.last_id,
            entries_read: Some(1),
            pel: vec![],
            consumers: vec![RdbConsumer {
                name: b"c".to_vec(),
                seen_time_ms: seen,
                active_time_ms: None,
                pel: vec![],
            }],
        });
        let mut w = RdbWriter::for_dump(Vec::new(), false);
        w.write_stream(b"", None, &s).unwrap();
        let payload = w.finish_dump().unwrap();
        let mut body = payload[..payload.len() - 10].to_vec();
        assert_eq!(body[0], kind::STREAM_LISTPACKS_2);
        body[0] = kind::STREAM_LISTPACKS_3;
        let at = body
            .windows(8)
            .position(|w| w == seen.to_le_bytes())
            .unwrap()
            + 8;
        body.splice(at..at, 42u64.to_le_bytes());
        body.extend_from_slice(&11u16.to_le_bytes());
        let crc = crate::crc64(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let back = super::super::read_dump(&body, super::super::ReadOptions::default()).unwrap();
        s.groups[0].consumers[0].active_time_ms = Some(42);
        assert_eq!(back, super::super::RdbValue::Stream(Box::new(s)));
    }
}
