//! Writing RDB version 10, one key at a time.
//!
//! Small collections are written in the compact forms Redis 7.0 writes them in (hash and
//! zset listpacks, intsets, one-node quicklists); a collection is packed while its
//! elements arrive and written plainly (list 1, set 2, hash 4, zset 5) as soon as one
//! shows it does not fit, so a writer holds at most one small collection. Strings,
//! packed blobs included, are integer-encoded or LZF-compressed exactly when Redis would.

use std::io::Write;

use super::pack::{self, Listpack};
use super::{CollectionKind, RDB_VERSION, kind, len, opcode};
use crate::FormatError;
use crate::crc64::Crc64;

/// Bytes staged before they are checksummed and handed to the destination: the checksum
/// and the destination's write then run over large slices instead of one call per field.
const STAGED_BYTES_MAX: usize = 64 * 1024;

/// A list is written as one quicklist node when its listpack stays within this size
/// (Redis's default `list-max-listpack-size`, -2: 8 KB nodes); longer lists are written
/// plainly, which Redis loads into nodes of its own.
const LIST_NODE_BYTES_MAX: usize = 8 * 1024;
/// Quicklist node container: a listpack (`QUICKLIST_NODE_CONTAINER_PACKED`).
const QUICKLIST_PACKED: u64 = 2;

/// Up to which sizes collections are written compactly: Redis's settings of the same
/// names, whose defaults these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLimits {
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
}

impl Default for PackLimits {
    fn default() -> Self {
        PackLimits {
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
        }
    }
}

/// A compression buffer a long string grew is given back down to this.
const COMPRESSED_KEEP_BYTES: usize = 64 * 1024;

/// What the writer puts in the header.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `rdbcompression`: LZF for strings longer than 20 bytes when it saves space.
    pub compress: bool,
    /// `rdbchecksum`: write the CRC-64 trailer (else zeros, "no checksum").
    pub checksum: bool,
    /// AUX fields after the built-in ones (`redis-ver`, `redis-bits`, `ctime`, `used-mem`,
    /// `aof-base`).
    pub ctime_unix: u64,
    pub used_mem_bytes: u64,
    /// True for the base file of a multi-part AOF.
    pub aof_base: bool,
    pub pack: PackLimits,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compress: true,
            checksum: true,
            ctime_unix: 0,
            used_mem_bytes: 0,
            aof_base: false,
            pack: PackLimits::default(),
        }
    }
}

pub struct RdbWriter<W: Write> {
    inner: W,
    staged: Vec<u8>,
    crc: Crc64,
    /// False for a fragment ([`RdbWriter::fragment`]): its bytes are checksummed where
    /// they are spliced.
    checksummed: bool,
    /// Bytes handed to `inner` so far.
    flushed: u64,
    opts: WriteOptions,
    /// Elements still owed to the collection being written.
    owed: u64,
    /// A DUMP payload: one value, no header, key or expiry ([`RdbWriter::for_dump`]).
    bare: bool,
    packer: Packer,
    /// Made at the first string worth compressing; its output buffer is kept too.
    lzf: Option<crate::lzf::Compressor>,
    compressed: Vec<u8>,
}

/// The small collection being packed, and buffers kept from one collection to the next.
#[derive(Debug, Default)]
struct Packer {
    /// What is being packed; `None` between collections and for plain ones.
    open: Option<Packing>,
    key: Vec<u8>,
    listpack: Listpack,
    ints: Vec<i64>,
    /// A sorted set's scores and members (ranges of `members`): its listpack must be in
    /// Redis's order, which the caller's need not be.
    scored: Vec<(f64, std::ops::Range<usize>)>,
    members: Vec<u8>,
    blob: Vec<u8>,
    scratch: String,
}

/// A collection written compactly if it ends within the limits.
#[derive(Debug, Clone, Copy)]
struct Packing {
    kind: CollectionKind,
    expire_ms: Option<u64>,
    len: u64,
}

/// Encodes `n` with RDB's length encoding.
fn encode_len(n: u64, buf: &mut Vec<u8>) {
    if n < 1 << 6 {
        buf.push((len::BITS_6 << 6) | n as u8);
    } else if n < 1 << 14 {
        buf.push((len::BITS_14 << 6) | (n >> 8) as u8);
        buf.push(n as u8);
    } else if n <= u32::MAX as u64 {
        buf.push(len::BITS_32);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        buf.push(len::BITS_64);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

/// The integer a string holds, if Redis would store it integer-encoded: a canonical
/// decimal within i32.
fn as_small_int(s: &[u8]) -> Option<i32> {
    if s.len() > 11 {
        return None;
    }
    resp::parse_i64(s).and_then(|v| i32::try_from(v).ok())
}

impl<W: Write> RdbWriter<W> {
    /// Writes the header and AUX fields.
    pub fn new(inner: W, opts: WriteOptions) -> Result<Self, FormatError> {
        let mut w = RdbWriter {
            staged: Vec::with_capacity(STAGED_BYTES_MAX + 1024),
            checksummed: true,
            ..RdbWriter::fragment(inner, opts)
        };
        w.raw(format!("REDIS{RDB_VERSION:04}").as_bytes())?;
        w.aux(b"redis-ver", b"7.0.15")?;
        w.aux(b"redis-bits", b"64")?;
        let ctime = w.opts.ctime_unix.to_string();
        w.aux(b"ctime", ctime.as_bytes())?;
        let used = w.opts.used_mem_bytes.to_string();
        w.aux(b"used-mem", used.as_bytes())?;
        let base = if w.opts.aof_base { b"1" } else { b"0" };
        w.aux(b"aof-base", base)?;
        Ok(w)
    }

    /// A writer of keys only (no header, no checksum), to be spliced into a file's writer
    /// with [`RdbWriter::splice`]: how a save serializes parts of the keyspace on several
    /// threads.
    pub fn fragment(inner: W, opts: WriteOptions) -> Self {
        RdbWriter {
            inner,
            staged: Vec::new(),
            crc: Crc64::default(),
            checksummed: false,
            flushed: 0,
            opts,
            owed: 0,
            bare: false,
            packer: Packer::default(),
            lzf: None,
            compressed: Vec::new(),
        }
    }

    /// A writer of one DUMP payload: write one key as into a file (its name and expiry are
    /// left out), then [`RdbWriter::finish_dump`].
    pub fn for_dump(inner: W, compress: bool) -> Self {
        let opts = WriteOptions {
            compress,
            ..WriteOptions::default()
        };
        RdbWriter {
            checksummed: true,
            bare: true,
            ..RdbWriter::fragment(inner, opts)
        }
    }

    /// Ends a fragment and returns its bytes.
    pub fn into_fragment(mut self) -> Result<W, FormatError> {
        self.check_done()?;
        self.flush_staged()?;
        Ok(self.inner)
    }

    /// A function library (opcode FUNCTION2 and the library's whole code), as Redis 7.0
    /// writes each one after the AUX fields and before the databases, and alone in a
    /// FUNCTION DUMP payload.
    pub fn function(&mut self, code: &[u8]) -> Result<(), FormatError> {
        self.raw(&[opcode::FUNCTION2])?;
        self.string(code)
    }

    /// Ends a DUMP payload: the RDB version (2 bytes, little-endian), then the CRC-64 of
    /// everything before it (8 bytes, little-endian), as Redis's DUMP writes them.
    pub fn finish_dump(mut self) -> Result<W, FormatError> {
        self.check_done()?;
        self.raw(&(RDB_VERSION as u16).to_le_bytes())?;
        self.flush_staged()?;
        let crc = self.crc.value();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    pub(super) fn raw(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        self.staged.extend_from_slice(bytes);
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<(), FormatError> {
        if self.staged.len() >= STAGED_BYTES_MAX {
            self.flush_staged()?;
        }
        Ok(())
    }

    fn flush_staged(&mut self) -> Result<(), FormatError> {
        if self.checksummed {
            self.crc.update(&self.staged);
        }
        self.inner.write_all(&self.staged)?;
        self.flushed += self.staged.len() as u64;
        self.staged.clear();
        Ok(())
    }

    /// The options this writer writes with (for its fragments).
    pub fn options(&self) -> WriteOptions {
        self.opts.clone()
    }

    /// Appends a fragment's bytes (see [`RdbWriter::fragment`]) as if written here.
    pub fn splice(&mut self, fragment: &[u8]) -> Result<(), FormatError> {
        self.check_done()?;
        self.flush_staged()?;
        self.crc.update(fragment);
        self.inner.write_all(fragment)?;
        self.flushed += fragment.len() as u64;
        Ok(())
    }

    /// Offset of the next byte in the file.
    pub fn position(&self) -> u64 {
        self.flushed + self.staged.len() as u64
    }

    pub(super) fn len(&mut self, n: u64) -> Result<(), FormatError> {
        encode_len(n, &mut self.staged);
        self.flush_if_full()
    }

    pub(super) fn string(&mut self, s: &[u8]) -> Result<(), FormatError> {
        if let Some(v) = as_small_int(s) {
            let buf = &mut self.staged;
            if let Ok(b) = i8::try_from(v) {
                buf.push((len::SPECIAL << 6) | len::INT8);
                buf.extend_from_slice(&b.to_le_bytes());
            } else if let Ok(h) = i16::try_from(v) {
                buf.push((len::SPECIAL << 6) | len::INT16);
                buf.extend_from_slice(&h.to_le_bytes());
            } else {
                buf.push((len::SPECIAL << 6) | len::INT32);
                buf.extend_from_slice(&v.to_le_bytes());
            }
            return self.flush_if_full();
        }
        if self.opts.compress && s.len() > 20 {
            // Redis keeps the compressed form only when it saves at least 4 bytes.
            let lzf = self.lzf.get_or_insert_with(Default::default);
            if lzf.compress(s, &mut self.compressed, s.len() - 4) {
                self.staged.push((len::SPECIAL << 6) | len::LZF);
                encode_len(self.compressed.len() as u64, &mut self.staged);
                encode_len(s.len() as u64, &mut self.staged);
                let compressed = std::mem::take(&mut self.compressed);
                let result = self.raw(&compressed);
                self.compressed = compressed;
                self.compressed.shrink_to(COMPRESSED_KEEP_BYTES);
                return result;
            }
            self.compressed.shrink_to(COMPRESSED_KEEP_BYTES);
        }
        self.len(s.len() as u64)?;
        self.raw(s)
    }

    fn aux(&mut self, key: &[u8], value: &[u8]) -> Result<(), FormatError> {
        self.raw(&[opcode::AUX])?;
        self.string(key)?;
        self.string(value)
    }

    fn check_done(&self) -> Result<(), FormatError> {
        if self.owed != 0 {
            return Err(FormatError::corrupt(
                self.position(),
                format!("{} collection elements were never written", self.owed),
            ));
        }
        Ok(())
    }

    /// Switches to database `db`; `sizes` (keys, keys with an expiry) are hints for the
    /// loader. A file may select a database more than once.
    pub fn select_db(&mut self, db: u64, sizes: Option<(u64, u64)>) -> Result<(), FormatError> {
        self.check_done()?;
        self.raw(&[opcode::SELECTDB])?;
        self.len(db)?;
        if let Some((keys, expires)) = sizes {
            self.raw(&[opcode::RESIZEDB])?;
            self.len(keys)?;
            self.len(expires)?;
        }
        Ok(())
    }

    /// Hands every staged byte to the destination and returns it, for example to drain a
    /// `Vec<u8>` between steps of a background save (the checksum covers what was written,
    /// wherever it went since).
    pub fn flushed_inner(&mut self) -> Result<&mut W, FormatError> {
        self.flush_staged()?;
        Ok(&mut self.inner)
    }

    pub(super) fn key_header(
        &mut self,
        key: &[u8],
        expire_ms: Option<u64>,
        type_id: u8,
    ) -> Result<(), FormatError> {
        self.check_done()?;
        self.type_and_key(key, expire_ms, type_id)
    }

    /// The expiry, type and key that open every entry (the type alone in a DUMP payload).
    fn type_and_key(
        &mut self,
        key: &[u8],
        expire_ms: Option<u64>,
        type_id: u8,
    ) -> Result<(), FormatError> {
        if self.bare {
            return self.raw(&[type_id]);
        }
        if let Some(at) = expire_ms {
            self.raw(&[opcode::EXPIRETIME_MS])?;
            self.raw(&at.to_le_bytes())?;
        }
        self.raw(&[type_id])?;
        self.string(key)
    }

    pub fn write_string(
        &mut self,
        key: &[u8],
        expire_ms: Option<u64>,
        value: &[u8],
    ) -> Result<(), FormatError> {
        self.key_header(key, expire_ms, kind::STRING)?;
        self.string(value)
    }

    /// Starts a collection of `len` elements (pairs for a hash); follow with exactly that
    /// many [`RdbWriter::element`] (hash: 2 × len) or [`RdbWriter::zset_member`] calls.
    pub fn begin_collection(
        &mut self,
        key: &[u8],
        expire_ms: Option<u64>,
        k: CollectionKind,
        len: u64,
    ) -> Result<(), FormatError> {
        self.check_done()?;
        let limits = self.opts.pack;
        let entries_max = match k {
            // Every listpack entry takes two bytes at least.
            CollectionKind::List => LIST_NODE_BYTES_MAX / 2,
            CollectionKind::Set => limits.set_max_intset_entries,
            CollectionKind::Hash => limits.hash_max_listpack_entries,
            CollectionKind::ZSet => limits.zset_max_listpack_entries,
        };
        if len > 0 && len <= entries_max as u64 {
            let p = &mut self.packer;
            p.open = Some(Packing {
                kind: k,
                expire_ms,
                len,
            });
            p.key.clear();
            p.key.extend_from_slice(key);
            p.listpack.clear();
            p.ints.clear();
            p.scored.clear();
            p.members.clear();
        } else {
            self.plain_header(key, expire_ms, k, len)?;
        }
        self.owed = match k {
            CollectionKind::Hash => 2 * len,
            _ => len,
        };
        Ok(())
    }

    fn plain_header(
        &mut self,
        key: &[u8],
        expire_ms: Option<u64>,
        k: CollectionKind,
        len: u64,
    ) -> Result<(), FormatError> {
        let type_id = match k {
            CollectionKind::List => kind::LIST,
            CollectionKind::Set => kind::SET,
            CollectionKind::Hash => kind::HASH,
            CollectionKind::ZSet => kind::ZSET_2,
        };
        self.type_and_key(key, expire_ms, type_id)?;
        self.len(len)
    }

    fn count_element(&mut self) -> Result<(), FormatError> {
        self.owed = self
            .owed
            .checked_sub(1)
            .ok_or_else(|| FormatError::corrupt(self.position(), "more elements than announced"))?;
        Ok(())
    }

    pub fn element(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        self.count_element()?;
        let Some(packing) = self.packer.open else {
            return self.string(bytes);
        };
        let limits = self.opts.pack;
        let p = &mut self.packer;
        let packed = match packing.kind {
            CollectionKind::Set => resp::parse_i64(bytes).map(|v| p.ints.push(v)).is_some(),
            CollectionKind::Hash if bytes.len() > limits.hash_max_listpack_value => false,
            CollectionKind::Hash => {
                p.listpack.push(bytes);
                true
            }
            // A list too long for one node is written plainly, this element too; the
            // bound is checked first so that a large element is not copied in.
            CollectionKind::List
                if p.listpack.bytes() + pack::entry_bytes_max(bytes.len())
                    > LIST_NODE_BYTES_MAX =>
            {
                false
            }
            CollectionKind::List => {
                p.listpack.push(bytes);
                true
            }
            CollectionKind::ZSet => {
                return Err(FormatError::corrupt(
                    self.position(),
                    "a sorted set's members are written with their scores",
                ));
            }
        };
        if packed {
            return self.packed_if_complete();
        }
        self.unpack()?;
        self.string(bytes)
    }

    pub fn zset_member(&mut self, member: &[u8], score: f64) -> Result<(), FormatError> {
        self.count_element()?;
        if self.packer.open.is_some() {
            if member.len() <= self.opts.pack.zset_max_listpack_value {
                let p = &mut self.packer;
                let start = p.members.len();
                p.members.extend_from_slice(member);
                p.scored.push((score, start..p.members.len()));
                return self.packed_if_complete();
            }
            self.unpack()?;
        }
        self.string(member)?;
        self.raw(&score.to_le_bytes())
    }

    /// Writes the collection being packed once its last element is in.
    fn packed_if_complete(&mut self) -> Result<(), FormatError> {
        if self.owed > 0 {
            return Ok(());
        }
        let Some(packing) = self.packer.open.take() else {
            return Ok(());
        };
        let type_id = match packing.kind {
            CollectionKind::List => kind::LIST_QUICKLIST_2,
            CollectionKind::Set => kind::SET_INTSET,
            CollectionKind::Hash => kind::HASH_LISTPACK,
            CollectionKind::ZSet => kind::ZSET_LISTPACK,
        };
        // Taken out while the writer writes them, and put back for the next collection.
        let mut p = std::mem::take(&mut self.packer);
        let result = (|| {
            self.type_and_key(&p.key, packing.expire_ms, type_id)?;
            match packing.kind {
                CollectionKind::Set => {
                    pack::intset(&mut p.ints, &mut p.blob);
                    self.string(&p.blob)
                }
                CollectionKind::List => {
                    self.len(1)?;
                    self.len(QUICKLIST_PACKED)?;
                    self.string(p.listpack.finish())
                }
                CollectionKind::Hash => self.string(p.listpack.finish()),
                CollectionKind::ZSet => {
                    // Ascending by score, then member, as Redis keeps (and trusts) them.
                    let members = &p.members;
                    // Callers walking a skiplist tend to give them highest first: a
                    // reversed run is the slow case of a small sort.
                    if p.scored.windows(2).all(|w| w[0].0 >= w[1].0) {
                        p.scored.reverse();
                    }
                    p.scored.sort_unstable_by(|a, b| {
                        a.0.partial_cmp(&b.0)
                            .unwrap_or(std::cmp::Ordering::Equal)
                            .then_with(|| members[a.1.clone()].cmp(&members[b.1.clone()]))
                    });
                    for (score, member) in &p.scored {
                        p.listpack.push(&members[member.clone()]);
                        p.listpack.push_score(*score, &mut p.scratch);
                    }
                    self.string(p.listpack.finish())
                }
            }
        })();
        self.packer = p;
        result
    }

    /// Writes the collection being packed plainly after all (an element did not fit): its
    /// header and the elements so far; the rest follow one by one.
    fn unpack(&mut self) -> Result<(), FormatError> {
        let Some(packing) = self.packer.open.take() else {
            return Ok(());
        };
        let mut p = std::mem::take(&mut self.packer);
        let result = (|| {
            self.plain_header(&p.key, packing.expire_ms, packing.kind, packing.len)?;
            match packing.kind {
                CollectionKind::Set => {
                    let mut digits = itoa::Buffer::new();
                    p.ints
                        .iter()
                        .try_for_each(|&v| self.string(digits.format(v).as_bytes()))
                }
                CollectionKind::ZSet => p.scored.iter().try_for_each(|(score, member)| {
                    self.string(&p.members[member.clone()])?;
                    self.raw(&score.to_le_bytes())
                }),
                CollectionKind::List | CollectionKind::Hash => {
                    let items = super::encodings::listpack(p.listpack.finish())
                        .map_err(|e| FormatError::corrupt(self.position(), e))?;
                    items.iter().try_for_each(|i| self.string(i))
                }
            }
        })();
        self.packer = p;
        result
    }

    /// Writes EOF and the checksum; returns the inner writer (flushed).
    pub fn finish(mut self) -> Result<W, FormatError> {
        self.check_done()?;
        self.raw(&[opcode::EOF])?;
        self.flush_staged()?;
        let crc = if self.opts.checksum {
            self.crc.value()
        } else {
            0
        };
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}
