//! Encoders for the compact forms Redis 7.0 writes small collections in: listpacks
//! (hashes, sorted sets, quicklist nodes) and intsets (sets of integers). Byte for byte
//! what Redis's `lpAppend` and `intsetAdd` produce, so that files of many small
//! collections are as small as Redis's. The decoders are in `encodings`.

/// The most an element of `len` bytes takes in a listpack: the longest encoding header
/// (5 bytes), its bytes, the longest back-length (5 bytes).
pub fn entry_bytes_max(len: usize) -> usize {
    len.saturating_add(10)
}

/// Listpack header: total bytes (u32) and element count (u16), both little-endian.
const HEADER_BYTES: usize = 6;
const TERMINATOR: u8 = 0xff;
/// The count a listpack's header gives when it holds more elements than a u16 says.
const COUNT_UNKNOWN: u16 = u16::MAX;

/// A listpack built one element at a time; the buffer is kept between collections.
#[derive(Debug, Default)]
pub struct Listpack {
    buf: Vec<u8>,
    count: usize,
}

impl Listpack {
    /// An empty listpack.
    pub fn new() -> Listpack {
        let mut lp = Listpack::default();
        lp.clear();
        lp
    }

    /// The finished listpack's bytes.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.finish();
        self.buf
    }

    /// Empties it for the next collection.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(HEADER_BYTES, 0);
        self.count = 0;
    }

    /// Bytes it takes once finished.
    pub fn bytes(&self) -> usize {
        self.buf.len().max(HEADER_BYTES) + 1
    }

    /// Appends an element: an integer when `s` is one, else a string.
    pub fn push(&mut self, s: &[u8]) {
        match resp::parse_i64(s) {
            Some(v) => self.push_int(v),
            None => self.push_str(s),
        }
    }

    pub fn push_int(&mut self, v: i64) {
        let start = self.start_entry();
        let b = &mut self.buf;
        match v {
            0..=127 => b.push(v as u8),
            -4096..=4095 => {
                let u = (v as u16) & 0x1fff;
                b.extend_from_slice(&[0xc0 | (u >> 8) as u8, u as u8]);
            }
            -32_768..=32_767 => {
                b.push(0xf1);
                b.extend_from_slice(&(v as i16).to_le_bytes());
            }
            -8_388_608..=8_388_607 => {
                b.push(0xf2);
                b.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            _ if i32::try_from(v).is_ok() => {
                b.push(0xf3);
                b.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                b.push(0xf4);
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.end_entry(start);
    }

    fn push_str(&mut self, s: &[u8]) {
        let start = self.start_entry();
        let b = &mut self.buf;
        let n = s.len();
        if n < 64 {
            b.push(0x80 | n as u8);
        } else if n < 4096 {
            b.extend_from_slice(&[0xe0 | (n >> 8) as u8, n as u8]);
        } else {
            b.push(0xf0);
            // Elements come from a keyspace whose strings are bounded by proto-max-bulk-len
            // (at most 4 GiB): u32 holds every length a caller can pass.
            b.extend_from_slice(&(n as u32).to_le_bytes());
        }
        b.extend_from_slice(s);
        self.end_entry(start);
    }

    /// Appends a sorted-set score as Redis's `zzlInsertAt` does: an integer when the
    /// score is one within ±2^52, else its shortest decimal that reads back exactly.
    pub fn push_score(&mut self, score: f64, scratch: &mut String) {
        const INT_RANGE: f64 = 4_503_599_627_370_496.0; // 2^52
        if score.fract() == 0.0
            && score.abs() < INT_RANGE
            && !(score == 0.0 && score.is_sign_negative())
        {
            return self.push_int(score as i64);
        }
        use std::fmt::Write;
        scratch.clear();
        // `{:?}` is Rust's shortest round-trip form (`1e300`, `0.1`, `inf`, `-0.0`), which
        // Redis's strtod reads as the same double.
        let _ = write!(scratch, "{score:?}");
        self.push_str(scratch.as_bytes());
    }

    fn start_entry(&mut self) -> usize {
        if self.buf.len() < HEADER_BYTES {
            self.clear();
        }
        self.count += 1;
        self.buf.len()
    }

    fn end_entry(&mut self, start: usize) {
        let len = self.buf.len() - start;
        push_backlen(&mut self.buf, len);
    }

    /// The finished listpack (header filled in, terminator appended); the builder must be
    /// cleared before it is used again.
    pub fn finish(&mut self) -> &[u8] {
        if self.buf.len() < HEADER_BYTES {
            self.clear();
        }
        self.buf.push(TERMINATOR);
        let total = self.buf.len() as u32;
        let count = u16::try_from(self.count).unwrap_or(COUNT_UNKNOWN);
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        &self.buf
    }
}

/// Appends a listpack entry's back-length: the entry's size, 7 bits per byte, most
/// significant first, every byte but the first with its high bit set (`lpEncodeBacklen`).
fn push_backlen(buf: &mut Vec<u8>, len: usize) {
    let size = super::encodings::listpack_backlen_size(len);
    for i in (0..size).rev() {
        let bits = ((len >> (7 * i)) & 0x7f) as u8;
        buf.push(if i == size - 1 { bits } else { bits | 0x80 });
    }
}

/// Encodes an intset of `ints` (sorted here) into `out`: the narrowest width that holds
/// every value (2, 4 or 8 bytes), the count, then the values, all little-endian.
pub fn intset(ints: &mut [i64], out: &mut Vec<u8>) {
    ints.sort_unstable();
    let fits = |bits: u32| {
        let lo = -(1i64 << (bits - 1));
        let hi = (1i64 << (bits - 1)) - 1;
        ints.iter().all(|&v| (lo..=hi).contains(&v))
    };
    let width: usize = if fits(16) {
        2
    } else if fits(32) {
        4
    } else {
        8
    };
    out.clear();
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(ints.len() as u32).to_le_bytes());
    for &v in ints.iter() {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::encodings;

    #[test]
    fn every_entry_encoding_reads_back() {
        let long = vec![b'x'; 5000];
        let mid = vec![b'y'; 300];
        let items: Vec<Vec<u8>> = [
            &b"0"[..],
            b"127",
            b"128",
            b"-1",
            b"-4096",
            b"4095",
            b"4096",
            b"-32768",
            b"32767",
            b"-8388608",
            b"8388607",
            b"8388608",
            b"-2147483648",
            b"2147483647",
            b"2147483648",
            b"-9223372036854775808",
            b"9223372036854775807",
            b"",
            b"a",
            b"-0",
            b"007",
            &mid,
            &long,
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect();
        let mut lp = Listpack::default();
        lp.clear();
        items.iter().for_each(|i| lp.push(i));
        let bytes = lp.finish().to_vec();
        assert_eq!(
            lp.bytes() - 1,
            bytes.len(),
            "bytes() counted the terminator"
        );
        assert_eq!(encodings::listpack(&bytes).unwrap(), items);
    }

    #[test]
    fn back_lengths_as_redis_writes_them() {
        for (len, bytes) in [
            (5usize, vec![5u8]),
            (16_382, vec![127, 254]),
            (16_383, vec![0, 255, 255]),
            (2_097_151, vec![0, 255, 255, 255]),
        ] {
            let mut buf = Vec::new();
            push_backlen(&mut buf, len);
            assert_eq!(buf, bytes, "entry of {len} bytes");
        }
    }

    #[test]
    fn entries_take_the_bytes_redis_gives_them() {
        // (element, encoding + data + back-length)
        for (s, size) in [
            (&b"5"[..], 2),
            (b"-5", 3),
            (b"5000", 4),
            (b"100000", 5),
            (b"10000000", 6),
            (b"10000000000", 10),
            (b"abc", 5),
        ] {
            let mut lp = Listpack::default();
            lp.clear();
            lp.push(s);
            assert_eq!(lp.finish().len(), HEADER_BYTES + size + 1, "{s:?}");
        }
    }

    #[test]
    fn scores_read_back_exactly() {
        let scores = [
            0.0,
            -0.0,
            1.0,
            -3.0,
            0.1,
            1.5e300,
            -2.5e-300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            4_503_599_627_370_496.0,
            1e17,
        ];
        let mut lp = Listpack::default();
        lp.clear();
        let mut scratch = String::new();
        scores.iter().for_each(|&s| lp.push_score(s, &mut scratch));
        let back = encodings::listpack(lp.finish()).unwrap();
        for (s, b) in scores.iter().zip(back) {
            let v: f64 = std::str::from_utf8(&b).unwrap().parse().unwrap();
            assert_eq!(v.to_bits(), s.to_bits(), "{s} came back as {v}");
        }
    }

    #[test]
    fn intsets_take_the_narrowest_width() {
        let mut out = Vec::new();
        for (ints, width) in [
            (vec![3, -2, 1], 2),
            (vec![1, 70_000], 4),
            (vec![-1, 1 << 40], 8),
        ] {
            let mut ints = ints;
            intset(&mut ints, &mut out);
            assert_eq!(out[0] as usize, width);
            let mut sorted = ints.clone();
            sorted.sort();
            let back: Vec<Vec<u8>> = sorted.iter().map(|v| v.to_string().into_bytes()).collect();
            assert_eq!(encodings::intset(&out).unwrap(), back);
        }
    }
}
