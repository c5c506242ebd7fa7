//! Writing RDB version 10, one key at a time.
//!
//! Collections use the plain encodings (list 1, set 2, hash 4, zset 5) that Redis 7.0 loads
//! and converts to its compact forms; strings are integer-encoded or LZF-compressed exactly
//! when Redis would do it.

use std::io::Write;

use super::{CollectionKind, RDB_VERSION, kind, len, opcode};
use crate::FormatError;
use crate::crc64::Crc64;

/// Bytes staged before they are checksummed and handed to the destination: the checksum
/// and the destination's write then run over large slices instead of one call per field.
const STAGED_BYTES_MAX: usize = 64 * 1024;

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
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compress: true,
            checksum: true,
            ctime_unix: 0,
            used_mem_bytes: 0,
            aof_base: false,
        }
    }
}

pub struct RdbWriter<W: Write> {
    inner: W,
    staged: Vec<u8>,
    crc: Crc64,
    /// Bytes handed to `inner` so far.
    flushed: u64,
    opts: WriteOptions,
    /// Elements still owed to the collection being written.
    owed: u64,
    /// A DUMP payload: one value, no header, key or expiry ([`RdbWriter::for_dump`]).
    bare: bool,
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

/// The integer a string holds, if Redis would store it integer-encoded: a canonical decimal
/// of at most 11 characters within i32.
fn as_small_int(s: &[u8]) -> Option<i32> {
    if s.is_empty() || s.len() > 11 {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let v: i64 = text.parse().ok()?;
    if itoa::Buffer::new().format(v).as_bytes() != s {
        return None;
    }
    i32::try_from(v).ok()
}

impl<W: Write> RdbWriter<W> {
    /// Writes the header and AUX fields.
    pub fn new(inner: W, opts: WriteOptions) -> Result<Self, FormatError> {
        let mut w = RdbWriter {
            inner,
            staged: Vec::with_capacity(STAGED_BYTES_MAX + 1024),
            crc: Crc64::default(),
            flushed: 0,
            opts,
            owed: 0,
            bare: false,
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

    /// A writer of one DUMP payload: write one key as into a file (its name and expiry are
    /// left out), then [`RdbWriter::finish_dump`].
    pub fn for_dump(inner: W, compress: bool) -> Self {
        RdbWriter {
            inner,
            staged: Vec::new(),
            crc: Crc64::default(),
            flushed: 0,
            opts: WriteOptions {
                compress,
                ..WriteOptions::default()
            },
            owed: 0,
            bare: true,
        }
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
        self.crc.update(&self.staged);
        self.inner.write_all(&self.staged)?;
        self.flushed += self.staged.len() as u64;
        self.staged.clear();
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
            let mut out = vec![0u8; s.len() - 4];
            if let Ok(n) = lzf_rust::compress(s, &mut out)
                && n > 0
            {
                self.staged.push((len::SPECIAL << 6) | len::LZF);
                encode_len(n as u64, &mut self.staged);
                encode_len(s.len() as u64, &mut self.staged);
                return self.raw(&out[..n]);
            }
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
        let type_id = match k {
            CollectionKind::List => kind::LIST,
            CollectionKind::Set => kind::SET,
            CollectionKind::Hash => kind::HASH,
            CollectionKind::ZSet => kind::ZSET_2,
        };
        self.key_header(key, expire_ms, type_id)?;
        self.len(len)?;
        self.owed = if k == CollectionKind::Hash {
            2 * len
        } else {
            len
        };
        Ok(())
    }

    pub fn element(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        self.owed = self
            .owed
            .checked_sub(1)
            .ok_or_else(|| FormatError::corrupt(self.position(), "more elements than announced"))?;
        self.string(bytes)
    }

    pub fn zset_member(&mut self, member: &[u8], score: f64) -> Result<(), FormatError> {
        self.element(member)?;
        self.raw(&score.to_le_bytes())
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
