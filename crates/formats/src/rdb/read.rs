//! Reading RDB files of versions 1 to 11, as Redis 7.0 and 7.2 write them and older ones
//! that 7.0 still loads.

use std::io::BufRead;

use super::{RDB_VERSION_READ_MAX, encodings, kind, len, opcode};
use crate::FormatError;
use crate::crc64::Crc64;

/// Bytes reserved up front for a string, whatever length the file declares: the rest grows
/// as the bytes actually arrive, so a forged length costs nothing.
const STRING_RESERVE_MAX_BYTES: u64 = 64 * 1024;
/// Elements reserved up front for a collection, whatever count the file declares.
const ELEMENTS_RESERVE_MAX: u64 = 1024;
/// Most bytes one byte of LZF data can decompress to: a long back-reference is 3 bytes and
/// copies at most 264. An uncompressed length above `compressed × this` is a lie, refused
/// before the output buffer (which must be allocated whole) is.
const LZF_EXPANSION_MAX: u64 = 88;

/// Bounds on what a file may declare, checked before anything is read or allocated.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Largest string (Redis's `proto-max-bulk-len`).
    pub string_len_max_bytes: u64,
    /// Most elements a collection may declare.
    pub collection_len_max: u64,
    /// Verify the CRC-64 trailer (when the file has one).
    pub verify_checksum: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            string_len_max_bytes: 512 * 1024 * 1024,
            collection_len_max: u32::MAX as u64,
            verify_checksum: true,
        }
    }
}

/// A value as stored, without Redis's in-memory encodings.
#[derive(Debug, Clone, PartialEq)]
pub enum RdbValue {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    ZSet(Vec<(Vec<u8>, f64)>),
    Stream(Box<super::RdbStream>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RdbEntry {
    pub db: u64,
    pub key: Vec<u8>,
    pub value: RdbValue,
    pub expire_ms: Option<u64>,
}

/// What a whole file said besides its keys.
#[derive(Debug, Clone, Default)]
pub struct RdbSummary {
    pub version: u32,
    pub aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// The function libraries' code, in file order.
    pub functions: Vec<Vec<u8>>,
    pub keys: u64,
    /// The stored checksum; None when the file has none (version < 5, or zero).
    pub checksum: Option<u64>,
    /// Bytes read, trailer included.
    pub bytes: u64,
}

/// Why [`Reader::next_bytes`] stopped short.
enum NextError {
    /// The input ended after this many of the bytes asked for.
    End(u64),
    Io(std::io::Error),
}

/// The parser's view of its input. Bytes are parsed straight out of the input's own buffer
/// and handed back (`consume`) a whole buffer at a time, which is also when the CRC-64
/// takes them: one checksum update per buffer rather than per field. Nothing past the
/// last byte parsed is consumed, so commands after an RDB preamble stay for their reader.
pub(super) struct Reader<R> {
    inner: R,
    /// Bytes at the start of `inner`'s buffer already parsed, not yet consumed or hashed.
    parsed: usize,
    crc: Crc64,
    offset: u64,
    opts: ReadOptions,
}

impl<R: BufRead> Reader<R> {
    fn new(inner: R, opts: ReadOptions) -> Self {
        Reader {
            inner,
            parsed: 0,
            crc: Crc64::default(),
            offset: 0,
            opts,
        }
    }

    /// Hands the next `n` bytes to `sink`, in the pieces the input's buffer holds them.
    /// `Err(delivered)` when the input ends first.
    fn next_bytes(&mut self, n: u64, mut sink: impl FnMut(&[u8])) -> Result<(), NextError> {
        let mut left = n;
        while left > 0 {
            let buffered = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NextError::Io(e)),
            };
            let fresh = &buffered[self.parsed..];
            if fresh.is_empty() {
                if buffered.is_empty() {
                    return Err(NextError::End(n - left));
                }
                // The whole buffer is parsed: hash it and let the input refill it.
                self.crc.update(buffered);
                let len = buffered.len();
                self.inner.consume(len);
                self.parsed = 0;
                continue;
            }
            let k = fresh.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            sink(&fresh[..k]);
            self.parsed += k;
            self.offset += k as u64;
            left -= k as u64;
        }
        Ok(())
    }

    /// Hashes and consumes what was parsed: the CRC then covers every byte up to `offset`.
    fn release(&mut self) -> Result<(), FormatError> {
        if self.parsed > 0 {
            let buffered = self.inner.fill_buf()?;
            self.crc.update(&buffered[..self.parsed]);
            self.inner.consume(self.parsed);
            self.parsed = 0;
        }
        Ok(())
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), FormatError> {
        let start = self.offset;
        let mut filled = 0;
        self.next_bytes(buf.len() as u64, |piece| {
            buf[filled..filled + piece.len()].copy_from_slice(piece);
            filled += piece.len();
        })
        .map_err(|e| match e {
            NextError::End(_) => FormatError::Truncated { offset: start },
            NextError::Io(e) => FormatError::Io(e),
        })
    }

    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    pub(super) fn u8(&mut self) -> Result<u8, FormatError> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    pub(super) fn bytes<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut b = [0u8; N];
        self.exact(&mut b)?;
        Ok(b)
    }

    /// Reads `n` bytes, growing the buffer as data arrives rather than trusting `n`.
    pub(super) fn blob(&mut self, n: u64) -> Result<Vec<u8>, FormatError> {
        if n > self.opts.string_len_max_bytes {
            return Err(FormatError::TooLong {
                what: "string",
                len: n,
                max: self.opts.string_len_max_bytes,
            });
        }
        let mut out = Vec::with_capacity(n.min(STRING_RESERVE_MAX_BYTES) as usize);
        let start = self.offset;
        self.next_bytes(n, |piece| out.extend_from_slice(piece))
            .map_err(|e| match e {
                NextError::End(got) => FormatError::Truncated {
                    offset: start + got,
                },
                NextError::Io(e) => FormatError::Io(e),
            })?;
        Ok(out)
    }

    /// A length, or the special-encoding marker `Err(special)`.
    fn len_or_special(&mut self) -> Result<Result<u64, u8>, FormatError> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            len::BITS_6 => Ok((b & 0x3f) as u64),
            len::BITS_14 => Ok((((b & 0x3f) as u64) << 8) | self.u8()? as u64),
            len::SPECIAL => Err(b & 0x3f),
            _ => match b {
                len::BITS_32 => Ok(u32::from_be_bytes(self.bytes()?) as u64),
                len::BITS_64 => Ok(u64::from_be_bytes(self.bytes()?)),
                other => {
                    return Err(FormatError::corrupt(
                        self.offset - 1,
                        format!("bad length prefix {other:#04x}"),
                    ));
                }
            },
        })
    }

    pub(super) fn len(&mut self) -> Result<u64, FormatError> {
        let at = self.offset;
        self.len_or_special()?
            .map_err(|_| FormatError::corrupt(at, "encoded string where a length belongs"))
    }

    pub(super) fn count(&mut self, what: &'static str) -> Result<u64, FormatError> {
        let n = self.len()?;
        if n > self.opts.collection_len_max {
            return Err(FormatError::TooLong {
                what,
                len: n,
                max: self.opts.collection_len_max,
            });
        }
        Ok(n)
    }

    pub(super) fn string(&mut self) -> Result<Vec<u8>, FormatError> {
        let at = self.offset;
        match self.len_or_special()? {
            Ok(n) => self.blob(n),
            Err(len::INT8) => Ok(itoa::Buffer::new()
                .format(i8::from_le_bytes(self.bytes()?))
                .as_bytes()
                .to_vec()),
            Err(len::INT16) => Ok(itoa::Buffer::new()
                .format(i16::from_le_bytes(self.bytes()?))
                .as_bytes()
                .to_vec()),
            Err(len::INT32) => Ok(itoa::Buffer::new()
                .format(i32::from_le_bytes(self.bytes()?))
                .as_bytes()
                .to_vec()),
            Err(len::LZF) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if ulen > self.opts.string_len_max_bytes {
                    return Err(FormatError::TooLong {
                        what: "string",
                        len: ulen,
                        max: self.opts.string_len_max_bytes,
                    });
                }
                if ulen > clen.saturating_mul(LZF_EXPANSION_MAX) {
                    return Err(FormatError::corrupt(
                        at,
                        "lzf data is too short for its stated length",
                    ));
                }
                // Read first: the output is only allocated once the input that bounds it
                // has actually arrived.
                let packed = self.blob(clen)?;
                let mut out = vec![0u8; ulen as usize];
                match lzf_rust::decompress(&packed, &mut out) {
                    Ok(n) if n as u64 == ulen => Ok(out),
                    _ => Err(FormatError::corrupt(
                        at,
                        "lzf data does not decompress to its stated length",
                    )),
                }
            }
            Err(other) => Err(FormatError::corrupt(
                at,
                format!("unknown string encoding {other}"),
            )),
        }
    }

    fn collection<T>(
        &mut self,
        what: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, FormatError>,
    ) -> Result<Vec<T>, FormatError> {
        let n = self.count(what)?;
        let mut out = Vec::with_capacity(n.min(ELEMENTS_RESERVE_MAX) as usize);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// An old-style zset score: a length byte and ASCII (253 nan, 254 +inf, 255 -inf).
    fn ascii_double(&mut self) -> Result<f64, FormatError> {
        let at = self.offset;
        match self.u8()? {
            253 => Err(FormatError::corrupt(at, "nan score")),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let text = self.blob(n as u64)?;
                std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .ok_or_else(|| FormatError::corrupt(at, "bad score"))
            }
        }
    }

    /// A blob holding a compact encoding, decoded by `decode`.
    fn packed<T>(&mut self, decode: fn(&[u8]) -> Result<T, String>) -> Result<T, FormatError> {
        let at = self.offset;
        let blob = self.string()?;
        decode(&blob).map_err(|reason| FormatError::corrupt(at, reason))
    }

    fn value(&mut self, type_id: u8) -> Result<RdbValue, FormatError> {
        let at = self.offset;
        let pairs = |items: Vec<Vec<u8>>| -> Result<super::Pairs, FormatError> {
            if !items.len().is_multiple_of(2) {
                return Err(FormatError::corrupt(at, "odd number of hash entries"));
            }
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                out.push((f, v));
            }
            Ok(out)
        };
        let scored = |items: Vec<Vec<u8>>| -> Result<Vec<(Vec<u8>, f64)>, FormatError> {
            pairs(items)?
                .into_iter()
                .map(|(m, s)| {
                    let score = std::str::from_utf8(&s)
                        .ok()
                        .and_then(|t| t.parse::<f64>().ok());
                    score
                        .filter(|s| !s.is_nan())
                        .map(|s| (m, s))
                        .ok_or_else(|| FormatError::corrupt(at, "bad zset score"))
                })
                .collect()
        };
        Ok(match type_id {
            kind::STRING => RdbValue::String(self.string()?),
            kind::LIST => RdbValue::List(self.collection("list", |r| r.string())?),
            kind::SET => RdbValue::Set(self.collection("set", |r| r.string())?),
            kind::ZSET => {
                RdbValue::ZSet(self.collection("zset", |r| Ok((r.string()?, r.ascii_double()?)))?)
            }
            kind::ZSET_2 => RdbValue::ZSet(self.collection("zset", |r| {
                let m = r.string()?;
                let s = f64::from_le_bytes(r.bytes()?);
                if s.is_nan() {
                    return Err(FormatError::corrupt(r.offset, "nan score"));
                }
                Ok((m, s))
            })?),
            kind::HASH => {
                RdbValue::Hash(self.collection("hash", |r| Ok((r.string()?, r.string()?)))?)
            }
            kind::HASH_ZIPMAP => RdbValue::Hash(self.packed(encodings::zipmap)?),
            kind::LIST_ZIPLIST => RdbValue::List(self.packed(encodings::ziplist)?),
            kind::SET_INTSET => RdbValue::Set(self.packed(encodings::intset)?),
            kind::SET_LISTPACK => RdbValue::Set(self.packed(encodings::listpack)?),
            kind::ZSET_ZIPLIST => RdbValue::ZSet(scored(self.packed(encodings::ziplist)?)?),
            kind::ZSET_LISTPACK => RdbValue::ZSet(scored(self.packed(encodings::listpack)?)?),
            kind::HASH_ZIPLIST => RdbValue::Hash(pairs(self.packed(encodings::ziplist)?)?),
            kind::HASH_LISTPACK => RdbValue::Hash(pairs(self.packed(encodings::listpack)?)?),
            kind::LIST_QUICKLIST => {
                let nodes = self.collection("quicklist", |r| r.packed(encodings::ziplist))?;
                RdbValue::List(nodes.into_iter().flatten().collect())
            }
            kind::LIST_QUICKLIST_2 => {
                let nodes = self.collection("quicklist", |r| {
                    let at = r.offset;
                    match r.len()? {
                        1 => Ok(vec![r.string()?]),
                        2 => r.packed(encodings::listpack),
                        other => Err(FormatError::corrupt(
                            at,
                            format!("bad quicklist container {other}"),
                        )),
                    }
                })?;
                RdbValue::List(nodes.into_iter().flatten().collect())
            }
            kind::STREAM_LISTPACKS | kind::STREAM_LISTPACKS_2 | kind::STREAM_LISTPACKS_3 => {
                RdbValue::Stream(Box::new(self.stream(type_id)?))
            }
            kind::MODULE_PRE_GA | kind::MODULE_2 => {
                return Err(FormatError::Unsupported {
                    what: "value type (module)",
                    code: type_id,
                    offset: at,
                });
            }
            other => {
                return Err(FormatError::Unsupported {
                    what: "value type",
                    code: other,
                    offset: at,
                });
            }
        })
    }
}

/// The body of a DUMP payload once its trailer (RDB version, CRC-64) checks out.
fn dump_body(payload: &[u8]) -> Result<&[u8], FormatError> {
    const TRAILER_BYTES: usize = 10;
    let Some(body_len) = payload.len().checked_sub(TRAILER_BYTES) else {
        return Err(FormatError::BadDumpTrailer);
    };
    let trailer = &payload[body_len..];
    let version = u16::from_le_bytes([trailer[0], trailer[1]]);
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&trailer[2..]);
    if u32::from(version) > RDB_VERSION_READ_MAX
        || crate::crc64(&payload[..body_len + 2]) != u64::from_le_bytes(crc)
    {
        return Err(FormatError::BadDumpTrailer);
    }
    Ok(&payload[..body_len])
}

/// Reads a FUNCTION DUMP payload: the libraries' code, each behind opcode FUNCTION2.
pub fn read_function_dump(payload: &[u8]) -> Result<Vec<Vec<u8>>, FormatError> {
    let body = dump_body(payload)?;
    let mut r = Reader::new(body, ReadOptions::default());
    let mut codes = Vec::new();
    while r.offset < body.len() as u64 {
        let at = r.offset;
        match r.u8()? {
            opcode::FUNCTION2 => codes.push(r.string()?),
            other => {
                return Err(FormatError::Unsupported {
                    what: "type in a functions payload",
                    code: other,
                    offset: at,
                });
            }
        }
    }
    Ok(codes)
}

/// Reads a DUMP payload (one value, the RDB version that wrote it, a CRC-64 of both).
/// Refused when the version is newer than this reader knows or the checksum differs
/// ([`FormatError::BadDumpTrailer`]), or when the value does not fill the payload exactly.
pub fn read_dump(payload: &[u8], opts: ReadOptions) -> Result<RdbValue, FormatError> {
    const TRAILER_BYTES: usize = 10;
    let Some(body_len) = payload.len().checked_sub(TRAILER_BYTES) else {
        return Err(FormatError::BadDumpTrailer);
    };
    let (body, trailer) = payload.split_at(body_len);
    let version = u16::from_le_bytes([trailer[0], trailer[1]]);
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&trailer[2..]);
    let stored_crc = u64::from_le_bytes(crc);
    if u32::from(version) > RDB_VERSION_READ_MAX
        || crate::crc64(&payload[..body_len + 2]) != stored_crc
    {
        return Err(FormatError::BadDumpTrailer);
    }
    let mut r = Reader::new(body, opts);
    let type_id = r.u8()?;
    let value = r.value(type_id)?;
    if r.offset != body_len as u64 {
        return Err(FormatError::corrupt(r.offset, "bytes after the value"));
    }
    Ok(value)
}

/// Reads a whole RDB stream, handing each key to `each` in file order.
pub fn read<R: BufRead>(
    inner: R,
    opts: ReadOptions,
    each: impl FnMut(RdbEntry) -> Result<(), FormatError>,
) -> Result<RdbSummary, FormatError> {
    read_with_hints(inner, opts, |_, _| {}, each)
}

/// [`read`], also passing the RESIZEDB hints (database, keys it announces) to `resize`, so
/// a loader can size its tables once. Hints are unchecked claims of the file: bound them.
pub fn read_with_hints<R: BufRead>(
    inner: R,
    opts: ReadOptions,
    mut resize: impl FnMut(u64, u64),
    mut each: impl FnMut(RdbEntry) -> Result<(), FormatError>,
) -> Result<RdbSummary, FormatError> {
    let mut r = Reader::new(inner, opts);
    let magic: [u8; 9] = r.bytes().map_err(|e| match e {
        FormatError::Truncated { .. } => FormatError::BadMagic,
        other => other,
    })?;
    if &magic[..5] != b"REDIS" {
        return Err(FormatError::BadMagic);
    }
    let version: u32 = std::str::from_utf8(&magic[5..])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(FormatError::BadMagic)?;
    if version == 0 || version > RDB_VERSION_READ_MAX {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let mut summary = RdbSummary {
        version,
        ..Default::default()
    };
    let mut db = 0u64;
    let mut expire_ms = None;
    loop {
        let at = r.offset;
        let op = r.u8()?;
        match op {
            opcode::EXPIRETIME_MS => expire_ms = Some(u64::from_le_bytes(r.bytes()?)),
            opcode::EXPIRETIME => expire_ms = Some(u32::from_le_bytes(r.bytes()?) as u64 * 1000),
            opcode::FREQ => {
                r.u8()?;
            }
            opcode::IDLE => {
                r.len()?;
            }
            opcode::SELECTDB => db = r.len()?,
            opcode::RESIZEDB => {
                let keys = r.len()?;
                r.len()?;
                resize(db, keys);
            }
            opcode::AUX => {
                let k = r.string()?;
                let v = r.string()?;
                summary.aux.push((k, v));
            }
            opcode::FUNCTION2 => summary.functions.push(r.string()?),
            opcode::FUNCTION_PRE_GA => {
                return Err(FormatError::Unsupported {
                    what: "opcode (function library of a Redis 7.0 release candidate)",
                    code: op,
                    offset: at,
                });
            }
            opcode::MODULE_AUX => {
                return Err(FormatError::Unsupported {
                    what: "opcode (module aux data)",
                    code: op,
                    offset: at,
                });
            }
            opcode::EOF => {
                r.release()?;
                let computed = r.crc.value();
                summary.bytes = r.offset;
                if version >= 5 {
                    let stored = u64::from_le_bytes(r.bytes()?);
                    summary.bytes = r.offset;
                    if stored != 0 {
                        summary.checksum = Some(stored);
                        if opts.verify_checksum && stored != computed {
                            return Err(FormatError::BadChecksum { stored, computed });
                        }
                    }
                }
                // Whatever follows (an AOF's commands) is for the caller to read.
                r.release()?;
                return Ok(summary);
            }
            type_id => {
                let key = r.string()?;
                let value = r.value(type_id)?;
                summary.keys += 1;
                each(RdbEntry {
                    db,
                    key,
                    value,
                    expire_ms: expire_ms.take(),
                })?;
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn dump_payloads_of_redis_read_and_written() {
        // `DUMP` replies of redis-server 7.0.15 for "hello" and for the list [a, b, 1].
        let string = b"\x00\x05hello\n\x00cr\xdfve4 \n";
        let list = b"\x12\x01\x02\x0f\x0f\x00\x00\x00\x03\x00\x81a\x02\x81b\x02\x01\x01\xff\n\x00\xe0\x1b\xabJG\xceY\"";
        let opts = ReadOptions::default();
        assert_eq!(
            read_dump(string, opts).unwrap(),
            RdbValue::String(b"hello".to_vec())
        );
        assert_eq!(
            read_dump(list, opts).unwrap(),
            RdbValue::List(vec![b"a".to_vec(), b"b".to_vec(), b"1".to_vec()])
        );
        let mut w = RdbWriter::for_dump(Vec::new(), true);
        w.write_string(b"ignored", Some(5), b"hello").unwrap();
        assert_eq!(w.finish_dump().unwrap(), string);
        let mut damaged = string.to_vec();
        damaged[3] ^= 1;
        assert!(matches!(
            read_dump(&damaged, opts),
            Err(FormatError::BadDumpTrailer)
        ));
        assert!(matches!(
            read_dump(b"\x00", opts),
            Err(FormatError::BadDumpTrailer)
        ));
    }

    use proptest::prelude::*;

    use super::*;
    use crate::damage::Damage;
    use crate::rdb::{CollectionKind, PackLimits, RdbWriter, WriteOptions};

    fn write_all(entries: &[RdbEntry], opts: WriteOptions) -> Vec<u8> {
        let mut w = RdbWriter::new(Vec::new(), opts).unwrap();
        let mut current_db = None;
        for e in entries {
            if current_db != Some(e.db) {
                w.select_db(e.db, Some((0, 0))).unwrap();
                current_db = Some(e.db);
            }
            write_entry(&mut w, e);
        }
        w.finish().unwrap()
    }

    fn write_entry(w: &mut RdbWriter<Vec<u8>>, e: &RdbEntry) {
        match &e.value {
            RdbValue::String(s) => w.write_string(&e.key, e.expire_ms, s).unwrap(),
            RdbValue::List(items) | RdbValue::Set(items) => {
                let k = if matches!(e.value, RdbValue::List(_)) {
                    CollectionKind::List
                } else {
                    CollectionKind::Set
                };
                w.begin_collection(&e.key, e.expire_ms, k, items.len() as u64)
                    .unwrap();
                items.iter().for_each(|i| w.element(i).unwrap());
            }
            RdbValue::Hash(pairs) => {
                let len = pairs.len() as u64;
                w.begin_collection(&e.key, e.expire_ms, CollectionKind::Hash, len)
                    .unwrap();
                for (f, v) in pairs {
                    w.element(f).unwrap();
                    w.element(v).unwrap();
                }
            }
            RdbValue::Stream(st) => w.write_stream(&e.key, e.expire_ms, st).unwrap(),
            RdbValue::ZSet(members) => {
                let len = members.len() as u64;
                w.begin_collection(&e.key, e.expire_ms, CollectionKind::ZSet, len)
                    .unwrap();
                members
                    .iter()
                    .for_each(|(m, s)| w.zset_member(m, *s).unwrap());
            }
        }
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<RdbEntry>, FormatError> {
        let mut out = Vec::new();
        read(bytes, ReadOptions::default(), |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// The type a DUMP payload of `value` starts with, and whether it reads back equal.
    fn dumped_type(value: &RdbValue) -> (u8, bool) {
        let mut w = RdbWriter::for_dump(Vec::new(), true);
        let entry = RdbEntry {
            db: 0,
            key: Vec::new(),
            value: value.clone(),
            expire_ms: None,
        };
        write_entry(&mut w, &entry);
        let payload = w.finish_dump().unwrap();
        let back = read_dump(&payload, ReadOptions::default()).unwrap();
        let same = sets_sorted(vec![RdbEntry {
            value: back,
            ..entry.clone()
        }]) == sets_sorted(vec![entry]);
        (payload[0], same)
    }

    #[test]
    fn small_collections_are_packed_as_redis_packs_them_and_the_rest_written_plainly() {
        let items = |n: usize, len: usize| -> Vec<Vec<u8>> {
            (0..n).map(|i| format!("{i:0>len$}").into_bytes()).collect()
        };
        let pairs = |v: Vec<Vec<u8>>| v.iter().map(|f| (f.clone(), f.clone())).collect::<Vec<_>>();
        let scored = |v: Vec<Vec<u8>>| {
            v.into_iter()
                .enumerate()
                .map(|(i, m)| (m, i as f64 / 4.0))
                .collect::<Vec<_>>()
        };
        let ints = |v: &[i64]| {
            v.iter()
                .map(|i| i.to_string().into_bytes())
                .collect::<Vec<_>>()
        };
        for (value, type_id) in [
            (RdbValue::List(items(10, 5)), kind::LIST_QUICKLIST_2),
            // 100 × 100 bytes: over one 8 KB node.
            (RdbValue::List(items(100, 100)), kind::LIST),
            (RdbValue::Hash(pairs(items(512, 64))), kind::HASH_LISTPACK),
            (RdbValue::Hash(pairs(items(513, 2))), kind::HASH),
            (RdbValue::Hash(pairs(items(3, 65))), kind::HASH),
            (RdbValue::ZSet(scored(items(128, 64))), kind::ZSET_LISTPACK),
            (RdbValue::ZSet(scored(items(129, 2))), kind::ZSET_2),
            (RdbValue::ZSet(scored(items(3, 65))), kind::ZSET_2),
            (
                RdbValue::Set(ints(&[5, -70_000, 1 << 40])),
                kind::SET_INTSET,
            ),
            (
                RdbValue::Set(ints(&(0..513).collect::<Vec<_>>())),
                kind::SET,
            ),
            (
                RdbValue::Set(vec![b"1".to_vec(), b"01".to_vec()]),
                kind::SET,
            ),
        ] {
            let (written, same) = dumped_type(&value);
            assert_eq!(written, type_id, "{value:?}");
            assert!(same, "{value:?} read back different");
        }
        // A packed sorted set is in Redis's order, which loaders trust, whatever the
        // caller's: ascending scores, then members.
        let mut w = RdbWriter::for_dump(Vec::new(), false);
        w.begin_collection(b"", None, CollectionKind::ZSet, 3)
            .unwrap();
        for (m, score) in [("b", 2.0), ("a", 2.0), ("c", -1.0)] {
            w.zset_member(m.as_bytes(), score).unwrap();
        }
        let payload = w.finish_dump().unwrap();
        let RdbValue::ZSet(members) = read_dump(&payload, ReadOptions::default()).unwrap() else {
            panic!("not a sorted set");
        };
        let order: Vec<&[u8]> = members.iter().map(|(m, _)| &m[..]).collect();
        assert_eq!(order, [&b"c"[..], b"a", b"b"]);
    }

    /// The entries with every set's and sorted set's members in order: their order in
    /// a file is not part of them (intsets are sorted, listpack zsets by score).
    fn sets_sorted(mut entries: Vec<RdbEntry>) -> Vec<RdbEntry> {
        for e in &mut entries {
            match &mut e.value {
                RdbValue::Set(members) => members.sort(),
                RdbValue::ZSet(members) => {
                    members.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
                }
                _ => {}
            }
        }
        entries
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            // long and repetitive: exercises LZF
            (any::<u8>(), 21usize..300).prop_map(|(b, n)| vec![b; n]),
            "[a-c]{21,200}".prop_map(String::into_bytes),
        ]
    }

    fn arb_value() -> impl Strategy<Value = RdbValue> {
        prop_oneof![
            arb_bytes().prop_map(RdbValue::String),
            proptest::collection::vec(arb_bytes(), 1..10).prop_map(RdbValue::List),
            proptest::collection::vec(arb_bytes(), 1..10).prop_map(RdbValue::Set),
            proptest::collection::vec((arb_bytes(), arb_bytes()), 1..10).prop_map(RdbValue::Hash),
            proptest::collection::vec((arb_bytes(), -1e300f64..1e300), 1..10)
                .prop_map(RdbValue::ZSet),
        ]
    }

    /// A stream with increasing IDs, and groups whose pending entries each have an owner.
    fn arb_stream() -> impl Strategy<Value = crate::rdb::RdbStream> {
        use crate::rdb::{
            RdbConsumer, RdbGroup, RdbPending, RdbStream, RdbStreamEntry, RdbStreamId,
        };
        let entry = (
            0u64..3,
            0u64..3,
            proptest::collection::vec((arb_bytes(), arb_bytes()), 1..3),
        );
        // Small: the fuzz runs generate many files of every type.
        (
            proptest::collection::vec(entry, 0..8),
            0u64..u64::MAX / 4,
            proptest::collection::vec(
                (arb_bytes(), proptest::option::of(0u64..1000), 0usize..4),
                0..3,
            ),
        )
            .prop_map(|(raw, base, groups)| {
                let mut id = RdbStreamId { ms: base, seq: 0 };
                let mut entries = Vec::new();
                for (dms, dseq, pairs) in raw {
                    id = RdbStreamId {
                        ms: id.ms + dms,
                        seq: if dms == 0 { id.seq + 1 + dseq } else { dseq },
                    };
                    let fields = pairs.into_iter().flat_map(|(f, v)| [f, v]).collect();
                    entries.push(RdbStreamEntry { id, fields });
                }
                let last_id = entries
                    .last()
                    .map_or(RdbStreamId { ms: 1, seq: 1 }, |e| e.id);
                let mut gs: Vec<RdbGroup> = Vec::new();
                for (name, read, owners) in groups {
                    if gs.iter().any(|g| g.name == name) {
                        continue;
                    }
                    let pel: Vec<RdbPending> = entries
                        .iter()
                        .step_by(3)
                        .map(|e| RdbPending {
                            id: e.id,
                            delivery_time_ms: e.id.ms,
                            delivery_count: e.id.seq,
                        })
                        .collect();
                    let mut consumers: Vec<RdbConsumer> = (0..owners.max(1))
                        .map(|i| RdbConsumer {
                            name: format!("c{i}").into_bytes(),
                            seen_time_ms: i as u64,
                            active_time_ms: None,
                            pel: Vec::new(),
                        })
                        .collect();
                    let n = consumers.len();
                    for (i, p) in pel.iter().enumerate() {
                        consumers[i % n].pel.push(p.id);
                    }
                    gs.push(RdbGroup {
                        name,
                        last_id,
                        entries_read: read,
                        pel,
                        consumers,
                    });
                }
                gs.sort_by(|a, b| a.name.cmp(&b.name));
                RdbStream {
                    first_id: entries.first().map_or(RdbStreamId::default(), |e| e.id),
                    last_id,
                    max_deleted_id: RdbStreamId::default(),
                    entries_added: entries.len() as u64 + 3,
                    entries,
                    groups: gs,
                }
            })
    }

    fn arb_entries() -> impl Strategy<Value = Vec<RdbEntry>> {
        proptest::collection::vec(
            (
                0u64..3,
                arb_bytes(),
                arb_value(),
                proptest::option::of(1u64..u64::MAX / 2),
            ),
            0..20,
        )
        .prop_map(|mut v| {
            v.sort_by_key(|e| e.0);
            v.into_iter()
                .map(|(db, key, value, expire_ms)| RdbEntry {
                    db,
                    key,
                    value,
                    expire_ms,
                })
                .collect()
        })
    }

    /// RDB's length prefix in its shortest form.
    fn put_len(out: &mut Vec<u8>, n: u64) {
        match n {
            0..=0x3f => out.push(n as u8),
            0x40..=0x3fff => out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]),
            0x4000..=0xffff_ffff => {
                out.push(len::BITS_32);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(len::BITS_64);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    fn put_str(out: &mut Vec<u8>, s: &[u8]) {
        put_len(out, s.len() as u64);
        out.extend_from_slice(s);
    }

    /// A ziplist of short strings (under 64 bytes each).
    fn ziplist_of(items: &[Vec<u8>]) -> Vec<u8> {
        let mut zl = vec![0; 8];
        zl.extend_from_slice(&(items.len() as u16).to_le_bytes());
        let mut prev = 0u8;
        for i in items {
            zl.extend_from_slice(&[prev, i.len() as u8]);
            zl.extend_from_slice(i);
            prev = 2 + i.len() as u8;
        }
        zl.push(0xff);
        let total = zl.len() as u32;
        zl[..4].copy_from_slice(&total.to_le_bytes());
        zl
    }

    /// A listpack of short strings (under 64 bytes each).
    fn listpack_of(items: &[Vec<u8>]) -> Vec<u8> {
        let mut lp = vec![0; 4];
        lp.extend_from_slice(&(items.len() as u16).to_le_bytes());
        for i in items {
            lp.push(0x80 | i.len() as u8);
            lp.extend_from_slice(i);
            lp.push(1 + i.len() as u8);
        }
        lp.push(0xff);
        let total = lp.len() as u32;
        lp[..4].copy_from_slice(&total.to_le_bytes());
        lp
    }

    fn flat(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
        pairs
            .iter()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect()
    }

    /// A value in every encoding the reader knows (`which` picks one): its type id, its
    /// payload as a file stores it, and what the reader must make of it.
    fn encoded_value(which: u8, items: &[Vec<u8>], ints: &[i16]) -> (u8, Vec<u8>, RdbValue) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = items
            .iter()
            .zip(items.iter().rev())
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        let scored: Vec<(Vec<u8>, f64)> = items
            .iter()
            .zip(ints.iter().cycle())
            .map(|(m, &s)| (m.clone(), s as f64))
            .collect();
        let scored_flat: Vec<Vec<u8>> = scored
            .iter()
            .flat_map(|(m, s)| [m.clone(), s.to_string().into_bytes()])
            .collect();
        let mut p = Vec::new();
        let (id, value) = match which {
            0 => {
                put_str(&mut p, &items[0]);
                (kind::STRING, RdbValue::String(items[0].clone()))
            }
            1 | 2 => {
                put_len(&mut p, items.len() as u64);
                items.iter().for_each(|i| put_str(&mut p, i));
                if which == 1 {
                    (kind::LIST, RdbValue::List(items.to_vec()))
                } else {
                    (kind::SET, RdbValue::Set(items.to_vec()))
                }
            }
            3 => {
                put_len(&mut p, scored.len() as u64);
                for (m, s) in &scored {
                    put_str(&mut p, m);
                    let text = s.to_string();
                    p.push(text.len() as u8);
                    p.extend_from_slice(text.as_bytes());
                }
                (kind::ZSET, RdbValue::ZSet(scored.clone()))
            }
            4 => {
                put_len(&mut p, pairs.len() as u64);
                flat(&pairs).iter().for_each(|i| put_str(&mut p, i));
                (kind::HASH, RdbValue::Hash(pairs.clone()))
            }
            5 => {
                put_len(&mut p, scored.len() as u64);
                for (m, s) in &scored {
                    put_str(&mut p, m);
                    p.extend_from_slice(&s.to_le_bytes());
                }
                (kind::ZSET_2, RdbValue::ZSet(scored.clone()))
            }
            6 => {
                let mut zm = vec![pairs.len() as u8];
                for (k, v) in &pairs {
                    zm.push(k.len() as u8);
                    zm.extend_from_slice(k);
                    zm.extend_from_slice(&[v.len() as u8, 0]);
                    zm.extend_from_slice(v);
                }
                zm.push(0xff);
                put_str(&mut p, &zm);
                (kind::HASH_ZIPMAP, RdbValue::Hash(pairs.clone()))
            }
            7 => {
                put_str(&mut p, &ziplist_of(items));
                (kind::LIST_ZIPLIST, RdbValue::List(items.to_vec()))
            }
            8 => {
                let mut is = vec![2, 0, 0, 0];
                is.extend_from_slice(&(ints.len() as u32).to_le_bytes());
                ints.iter()
                    .for_each(|i| is.extend_from_slice(&i.to_le_bytes()));
                put_str(&mut p, &is);
                let set = ints.iter().map(|i| i.to_string().into_bytes()).collect();
                (kind::SET_INTSET, RdbValue::Set(set))
            }
            9 => {
                put_str(&mut p, &ziplist_of(&scored_flat));
                (kind::ZSET_ZIPLIST, RdbValue::ZSet(scored.clone()))
            }
            10 => {
                put_str(&mut p, &ziplist_of(&flat(&pairs)));
                (kind::HASH_ZIPLIST, RdbValue::Hash(pairs.clone()))
            }
            11 => {
                // Two quicklist nodes.
                let (a, b) = items.split_at(items.len() / 2);
                put_len(&mut p, 2);
                put_str(&mut p, &ziplist_of(a));
                put_str(&mut p, &ziplist_of(b));
                (kind::LIST_QUICKLIST, RdbValue::List(items.to_vec()))
            }
            12 => {
                put_str(&mut p, &listpack_of(&flat(&pairs)));
                (kind::HASH_LISTPACK, RdbValue::Hash(pairs.clone()))
            }
            13 => {
                put_str(&mut p, &listpack_of(&scored_flat));
                (kind::ZSET_LISTPACK, RdbValue::ZSet(scored.clone()))
            }
            14 => {
                // A plain node (container 1) then a packed one (container 2).
                put_len(&mut p, 2);
                put_len(&mut p, 1);
                put_str(&mut p, &items[0]);
                put_len(&mut p, 2);
                put_str(&mut p, &listpack_of(&items[1..]));
                (kind::LIST_QUICKLIST_2, RdbValue::List(items.to_vec()))
            }
            _ => {
                put_str(&mut p, &listpack_of(items));
                (kind::SET_LISTPACK, RdbValue::Set(items.to_vec()))
            }
        };
        (id, p, value)
    }

    /// Encodings `encoded_value` knows.
    const ENCODINGS: u8 = 16;

    /// A version 11 file with aux fields, a RESIZEDB hint and keys in every encoding, with
    /// the entries it holds. Its checksum is zero (not verified), so damage is found by the
    /// structure checks the fuzz tests are after, not by the trailer.
    fn file_of_every_type() -> impl Strategy<Value = (Vec<u8>, Vec<RdbEntry>)> {
        let items = proptest::collection::vec("[a-z0-9]{0,20}".prop_map(String::into_bytes), 1..6);
        let ints = proptest::collection::vec(any::<i16>(), 1..6);
        let value = (
            0..ENCODINGS,
            items,
            ints,
            proptest::option::of(any::<u64>()),
        );
        proptest::collection::vec(value, 1..4).prop_map(|values| {
            let mut f = b"REDIS0011".to_vec();
            f.push(opcode::AUX);
            put_str(&mut f, b"redis-ver");
            put_str(&mut f, b"7.2.0");
            f.push(opcode::SELECTDB);
            put_len(&mut f, 0);
            f.push(opcode::RESIZEDB);
            put_len(&mut f, values.len() as u64);
            put_len(&mut f, 0);
            let mut entries = Vec::new();
            for (i, (which, items, ints, expire_ms)) in values.into_iter().enumerate() {
                let (id, payload, value) = encoded_value(which, &items, &ints);
                if let Some(ms) = expire_ms {
                    f.push(opcode::EXPIRETIME_MS);
                    f.extend_from_slice(&ms.to_le_bytes());
                }
                let key = format!("key{i}").into_bytes();
                f.push(id);
                put_str(&mut f, &key);
                f.extend_from_slice(&payload);
                entries.push(RdbEntry {
                    db: 0,
                    key,
                    value,
                    expire_ms,
                });
            }
            f.push(opcode::EOF);
            f.extend_from_slice(&[0; 8]);
            (f, entries)
        })
    }

    /// Length prefixes (and LZF headers) declaring far more than any test file holds.
    const HUGE_LENGTHS: [&[u8]; 8] = [
        &[len::BITS_32, 0xff, 0xff, 0xff, 0xff],
        &[len::BITS_32, 0x20, 0x00, 0x00, 0x00],
        &[len::BITS_64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[len::BITS_64, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00],
        &[0x7f, 0xff],
        // LZF: 1 compressed byte claiming 512 MiB, then both lengths huge.
        &[0xc3, 0x01, len::BITS_32, 0x20, 0x00, 0x00, 0x00],
        &[
            0xc3,
            len::BITS_32,
            0x20,
            0x00,
            0x00,
            0x00,
            len::BITS_32,
            0x20,
            0x00,
            0x00,
            0x00,
        ],
        // A ziplist/listpack-style 32-bit little-endian total, where a blob's header is.
        &[0xff, 0xff, 0xff, 0x7f],
    ];

    fn arb_damage() -> impl Strategy<Value = Vec<Damage>> {
        crate::damage::arb_damage(HUGE_LENGTHS.len(), 3)
    }

    fn damage(data: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
        crate::damage::apply(data, damage, &HUGE_LENGTHS)
    }

    proptest! {
        #[test]
        fn files_of_every_type_read_back((file, entries) in file_of_every_type()) {
            prop_assert_eq!(read_all(&file).unwrap(), entries);
        }

        /// A save on several threads writes parts of a database as fragments and splices
        /// them: the file must be the one a single writer makes, checksum included.
        #[test]
        fn spliced_fragments_make_the_same_file(
            entries in arb_entries(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            compress in any::<bool>(),
        ) {
            let opts = WriteOptions { compress, ..Default::default() };
            let whole = write_all(&entries, opts.clone());
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(entries.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(entries.len());
            let mut w = RdbWriter::new(Vec::new(), opts.clone()).unwrap();
            let (mut from, mut current_db) = (0, None);
            for to in cuts {
                // Fragments hold keys only: SELECTDB stays with the file's writer.
                let mut piece_from = from;
                while piece_from < to {
                    let db = entries[piece_from].db;
                    let piece_to = (piece_from..to).find(|&i| entries[i].db != db).unwrap_or(to);
                    if current_db != Some(db) {
                        w.select_db(db, Some((0, 0))).unwrap();
                        current_db = Some(db);
                    }
                    let mut f = RdbWriter::fragment(Vec::new(), w.options());
                    entries[piece_from..piece_to].iter().for_each(|e| write_entry(&mut f, e));
                    w.splice(&f.into_fragment().unwrap()).unwrap();
                    piece_from = piece_to;
                }
                from = to;
            }
            prop_assert_eq!(w.finish().unwrap(), whole);
        }

        #[test]
        fn fuzz_damaged_files_of_every_type_never_panic(
            file in prop_oneof![
                file_of_every_type().prop_map(|(file, _)| file),
                // The writer's own output adds LZF and integer-encoded strings.
                (arb_entries(), any::<bool>()).prop_map(|(entries, compress)| {
                    write_all(&entries, WriteOptions { compress, ..Default::default() })
                }),
            ],
            damage_done in arb_damage(),
        ) {
            let _ = read_all(&damage(file, &damage_done));
        }

        /// Streams stay out of `arb_value`: generating them is slow, and the long fuzz run
        /// (`fuzz_*`) damages stream nodes and dumps in tests of its own.
        #[test]
        fn written_stream_files_read_back_equal(
            streams in proptest::collection::vec(arb_stream(), 1..4),
            compress in any::<bool>(),
        ) {
            let entries: Vec<RdbEntry> = streams
                .into_iter()
                .enumerate()
                .map(|(i, s)| RdbEntry {
                    db: 0,
                    key: format!("s{i}").into_bytes(),
                    value: RdbValue::Stream(Box::new(s)),
                    expire_ms: None,
                })
                .collect();
            let bytes = write_all(&entries, WriteOptions { compress, ..Default::default() });
            prop_assert_eq!(read_all(&bytes).unwrap(), entries);
        }

        #[test]
        fn written_files_read_back_equal(entries in arb_entries(), compress in any::<bool>()) {
            let bytes = write_all(&entries, WriteOptions { compress, ..Default::default() });
            // A set's order is not kept: an intset is sorted, as Redis's are.
            prop_assert_eq!(sets_sorted(read_all(&bytes).unwrap()), sets_sorted(entries));
        }

        /// Compact and plain encodings read back alike: the same entries written with
        /// nothing packed (every limit 0) and with everything small packed.
        #[test]
        fn packed_and_plain_files_read_back_alike(entries in arb_entries()) {
            let none = PackLimits {
                hash_max_listpack_entries: 0,
                set_max_intset_entries: 0,
                zset_max_listpack_entries: 0,
                ..PackLimits::default()
            };
            let plain = write_all(&entries, WriteOptions { pack: none, ..Default::default() });
            let packed = write_all(&entries, WriteOptions::default());
            prop_assert_eq!(
                sets_sorted(read_all(&plain).unwrap()),
                sets_sorted(read_all(&packed).unwrap())
            );
        }

        #[test]
        fn fuzz_damaged_files_are_refused_not_panicked_on(entries in arb_entries(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
            let bytes = write_all(&entries, WriteOptions::default());
            // Truncation anywhere is an error.
            let at = cut.index(bytes.len());
            prop_assert!(read_all(&bytes[..at]).is_err());
            // A flipped byte is caught (by structure or by the checksum).
            let mut damaged = bytes.clone();
            let at = cut.index(bytes.len());
            damaged[at] ^= flip.max(1);
            prop_assert!(read_all(&damaged).is_err());
        }

        #[test]
        fn fuzz_arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = b"REDIS0010".to_vec();
            bytes.extend(tail);
            let _ = read_all(&bytes);
        }
    }

    #[test]
    fn header_version_and_checksum_are_checked() {
        let bytes = write_all(&[], WriteOptions::default());
        assert!(bytes.starts_with(b"REDIS0010"));
        assert!(matches!(
            read_all(b"REDIS0012\xff"),
            Err(FormatError::UnsupportedVersion(12))
        ));
        assert!(matches!(read_all(b"NOTREDIS0"), Err(FormatError::BadMagic)));
        assert!(matches!(read_all(b"RED"), Err(FormatError::BadMagic)));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            read_all(&bad),
            Err(FormatError::BadChecksum { .. })
        ));
        // A zero checksum means "not computed" and is not verified.
        let unchecked = write_all(
            &[],
            WriteOptions {
                checksum: false,
                ..Default::default()
            },
        );
        assert!(unchecked.ends_with(&[0; 8]));
        assert!(read_all(&unchecked).is_ok());
    }

    #[test]
    fn huge_declared_lengths_allocate_nothing() {
        // A string claiming 400 MB in a 20-byte file: refused as truncated, not allocated.
        let mut bytes = b"REDIS0010\x00\x01k\x80".to_vec();
        bytes.extend_from_slice(&400_000_000u32.to_be_bytes());
        assert!(matches!(
            read_all(&bytes),
            Err(FormatError::Truncated { .. })
        ));
        let mut bytes = b"REDIS0010\x00\x01k\x81".to_vec();
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(read_all(&bytes), Err(FormatError::TooLong { .. })));
        // A list claiming 4 billion elements: the vector grows as elements arrive.
        let mut bytes = b"REDIS0010\x01\x01k\x80".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_all(&bytes),
            Err(FormatError::Truncated { .. })
        ));
        // LZF: one compressed byte claiming 512 MiB uncompressed is refused before the output
        // buffer (allocated whole) is; so is a claim the compressed bytes never back.
        let mut bytes = b"REDIS0010\x00\x01k\xc3\x01\x80".to_vec();
        bytes.extend_from_slice(&(512u32 << 20).to_be_bytes());
        bytes.push(0);
        let e = read_all(&bytes).unwrap_err().to_string();
        assert!(e.contains("lzf data is too short"), "{e}");
        let mut bytes = b"REDIS0010\x00\x01k\xc3\x80".to_vec();
        bytes.extend_from_slice(&(8u32 << 20).to_be_bytes());
        bytes.push(0x80);
        bytes.extend_from_slice(&(512u32 << 20).to_be_bytes());
        assert!(matches!(
            read_all(&bytes),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn modules_get_clear_errors() {
        let bytes = b"REDIS0010\x07\x01k";
        let err = read_all(bytes).unwrap_err().to_string();
        assert!(err.contains("module"), "{err}");
    }

    #[test]
    fn function_libraries_round_trip_in_files_and_dumps() {
        let code = b"#!lua name=lib\nredis.register_function('f', function() return 1 end)";
        let mut w =
            crate::rdb::RdbWriter::new(Vec::new(), crate::rdb::WriteOptions::default()).unwrap();
        w.function(code).unwrap();
        w.select_db(0, None).unwrap();
        w.write_string(b"k", None, b"v").unwrap();
        let file = w.finish().unwrap();
        let mut keys = 0;
        let summary = read(&file[..], ReadOptions::default(), |_| {
            keys += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.functions, vec![code.to_vec()]);
        assert_eq!(keys, 1);

        let mut d = crate::rdb::RdbWriter::for_dump(Vec::new(), false);
        d.function(code).unwrap();
        d.function(b"#!lua name=two\n").unwrap();
        let payload = d.finish_dump().unwrap();
        assert_eq!(read_function_dump(&payload).unwrap().len(), 2);
        let mut bad = payload.clone();
        bad[3] ^= 1;
        assert!(matches!(
            read_function_dump(&bad),
            Err(FormatError::BadDumpTrailer)
        ));
    }

    #[test]
    fn any_input_buffer_size_reads_the_same_and_leaves_what_follows() {
        let entries: Vec<RdbEntry> = (0..40)
            .map(|i| RdbEntry {
                db: i / 20,
                key: format!("key:{i}").into_bytes(),
                value: RdbValue::String(vec![b'x'; i as usize * 7]),
                expire_ms: (i % 3 == 0).then_some(1_000 + i),
            })
            .collect();
        let file = write_all(&entries, WriteOptions::default());
        // An AOF with an RDB preamble: commands follow the RDB's checksum.
        let commands = b"*1\r\n$4\r\nPING\r\n";
        let mut aof = file.clone();
        aof.extend_from_slice(commands);
        for capacity in [1, 2, 7, 64, 4096] {
            let mut input = std::io::BufReader::with_capacity(capacity, &aof[..]);
            let mut read_back = Vec::new();
            let summary = read(&mut input, ReadOptions::default(), |e| {
                read_back.push(e);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("buffer of {capacity}: {e}"));
            assert_eq!(read_back, entries, "buffer of {capacity}");
            assert_eq!(summary.bytes, file.len() as u64);
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut input, &mut rest).unwrap();
            assert_eq!(rest, commands, "buffer of {capacity}");
            // A changed byte is caught by the checksum across buffer boundaries.
            let mut damaged = file.clone();
            let at = damaged.windows(6).position(|w| w == b"key:25").unwrap() + 5;
            damaged[at] ^= 0x20;
            let input = std::io::BufReader::with_capacity(capacity, &damaged[..]);
            assert!(
                matches!(
                    read(input, ReadOptions::default(), |_| Ok(())),
                    Err(FormatError::BadChecksum { .. })
                ),
                "buffer of {capacity}"
            );
        }
    }
}
