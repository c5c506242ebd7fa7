//! The AOF tail in a storage account: the log past the last segment the manifest names,
//! one object per commit, so that a commit costs one store round trip. Shippers fold a
//! chain of them into a segment (and name it in the manifest) once it is megabytes long;
//! a restore appends the chains it finds after the manifest's last file.
//!
//! Everything a restore needs is in the object names, so one listing finds the tail:
//! `aof/tail/<seq>.<offset>.<len>.<crc64>[.<after>]`. `seq` is the incr file the chain will
//! become, `offset` where the object's bytes start in it, `crc64` their checksum. The first
//! object of a chain (offset 0) names what it continues: the base (`b<seq>`) or the chain
//! or segment before it (`i<seq>-<len>`). Chains are followed from the manifest's last file
//! while each next object is there: an object missing because its upload never finished
//! ends the tail, and nothing after it was acknowledged (commits are acknowledged in order).
//!
//! I/O-free: names and the choice of chains, tested with data.

/// The directory of tail objects, under the AOF's.
pub const DIR: &str = "aof/tail";

/// What a chain continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The base of this sequence number, with no incr file named after it.
    Base(u64),
    /// The incr file (segment or chain) of this sequence number and length.
    Incr { seq: u64, len: u64 },
}

/// One tail object, as its name describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailKey {
    pub seq: u64,
    pub offset: u64,
    pub len: u64,
    pub crc: u64,
    /// Set on a chain's first object (offset 0) only.
    pub after: Option<After>,
}

impl TailKey {
    /// The object's key, relative to the node's prefix.
    pub fn key(&self) -> String {
        let mut key = format!(
            "{DIR}/{:012}.{:016}.{}.{:016x}",
            self.seq, self.offset, self.len, self.crc
        );
        match self.after {
            Some(After::Base(b)) => key.push_str(&format!(".b{b}")),
            Some(After::Incr { seq, len }) => key.push_str(&format!(".i{seq}-{len}")),
            None => {}
        }
        key
    }

    /// Reads a key made by [`TailKey::key`]; None for anything else.
    pub fn parse(key: &str) -> Option<TailKey> {
        let name = key.strip_prefix(DIR)?.strip_prefix('/')?;
        let mut parts = name.split('.');
        let seq = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        let len = parts.next()?.parse().ok()?;
        let crc = u64::from_str_radix(parts.next()?, 16).ok()?;
        let after = match parts.next() {
            None => None,
            Some(a) => Some(match a.split_at_checked(1)? {
                ("b", b) => After::Base(b.parse().ok()?),
                ("i", rest) => {
                    let (seq, len) = rest.split_once('-')?;
                    After::Incr {
                        seq: seq.parse().ok()?,
                        len: len.parse().ok()?,
                    }
                }
                _ => return None,
            }),
        };
        if parts.next().is_some() || (offset == 0) != after.is_some() {
            return None;
        }
        Some(TailKey {
            seq,
            offset,
            len,
            crc,
            after,
        })
    }
}

/// A chain of tail objects that becomes one incr file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub seq: u64,
    /// Its objects in order, each starting where the one before ended.
    pub objects: Vec<TailKey>,
}

impl Chain {
    pub fn len(&self) -> u64 {
        self.objects.iter().map(|o| o.len).sum()
    }
}

/// The chains that continue `last` (what the manifest names last), in order, from the
/// tail objects `keys` (in any order; anything else among them is ignored). Each chain
/// ends at its first missing offset; the next one must continue it at exactly that length.
pub fn chains(keys: &[TailKey], last: After) -> Vec<Chain> {
    let mut out = Vec::new();
    let mut last = last;
    let mut min_seq = match last {
        After::Base(_) => 0,
        After::Incr { seq, .. } => seq + 1,
    };
    loop {
        let start = keys
            .iter()
            .filter(|k| k.offset == 0 && k.after == Some(last) && k.seq >= min_seq && k.len > 0)
            .min_by_key(|k| k.seq);
        let Some(start) = start else { return out };
        let mut chain = Chain {
            seq: start.seq,
            objects: vec![start.clone()],
        };
        let mut offset = start.len;
        while let Some(next) = keys
            .iter()
            .find(|k| k.seq == chain.seq && k.offset == offset && k.len > 0)
        {
            offset += next.len;
            chain.objects.push(next.clone());
        }
        last = After::Incr {
            seq: chain.seq,
            len: offset,
        };
        min_seq = chain.seq + 1;
        out.push(chain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(seq: u64, offset: u64, len: u64, after: Option<After>) -> TailKey {
        TailKey {
            seq,
            offset,
            len,
            crc: seq * 1000 + offset,
            after,
        }
    }

    #[test]
    fn names_read_back() {
        for key in [
            k(7, 0, 12, Some(After::Base(3))),
            k(7, 0, 12, Some(After::Incr { seq: 6, len: 99 })),
            k(7, 12, 40, None),
        ] {
            assert_eq!(
                TailKey::parse(&key.key()),
                Some(key.clone()),
                "{}",
                key.key()
            );
        }
        for bad in [
            "aof/tail/7.0.12.00ff",     // a first object must say what it follows
            "aof/tail/7.12.40.00ff.b3", // and only a first one does
            "aof/tail/7.0.12.zz.b3",
            "aof/tail/7.0.12.00ff.x3",
            "aof/tail/7.0.12.00ff.i6",
            "aof/tail/7.0.12.00ff.b3.more",
            "aof/appendonly.aof.7.incr.aof",
        ] {
            assert_eq!(TailKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn chains_follow_from_the_manifest_and_stop_at_a_gap() {
        let keys = vec![
            // Garbage of a chain the manifest has since named: ignored.
            k(4, 0, 10, Some(After::Base(2))),
            k(5, 0, 10, Some(After::Incr { seq: 4, len: 10 })),
            k(5, 10, 5, None),
            k(6, 0, 3, Some(After::Incr { seq: 5, len: 15 })),
            k(6, 3, 3, None),
            // 6 at offset 6 never landed: 6 ends at 6, and 7 (which continues 6 at 9) and
            // the rest of 6 are not part of the tail.
            k(6, 9, 3, None),
            k(7, 0, 3, Some(After::Incr { seq: 6, len: 12 })),
        ];
        let got = chains(&keys, After::Incr { seq: 4, len: 10 });
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].seq, got[0].len()), (5, 15));
        assert_eq!((got[1].seq, got[1].len()), (6, 6));
        assert!(chains(&keys, After::Incr { seq: 5, len: 14 }).is_empty());
        assert!(chains(&keys, After::Base(3)).is_empty());
        assert_eq!(chains(&keys, After::Base(2)).len(), 3);
    }

    #[test]
    fn a_chain_never_goes_back_to_an_older_sequence() {
        let keys = vec![
            k(9, 0, 4, Some(After::Incr { seq: 3, len: 1 })),
            k(2, 0, 4, Some(After::Incr { seq: 9, len: 4 })),
        ];
        let got = chains(&keys, After::Incr { seq: 3, len: 1 });
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].seq, 9);
    }
}
