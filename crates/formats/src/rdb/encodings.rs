//! Decoders for the compact encodings older and current Redis versions store inside RDB
//! strings: ziplist, listpack, intset and zipmap. Every read is bounds-checked: a corrupt
//! blob yields an error, never a panic.

/// An element of a ziplist or listpack: Redis stores small integers as integers.
fn int_bytes(v: i64) -> Vec<u8> {
    itoa::Buffer::new().format(v).as_bytes().to_vec()
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("element runs past the end")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn le(&mut self, n: usize) -> Result<u64, String> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
    fn be(&mut self, n: usize) -> Result<u64, String> {
        let b = self.take(n)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
}

/// Sign-extends the low `bits` of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Decodes a ziplist (RDB types 10, 12, 13 and quicklist v1 nodes).
pub fn ziplist(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut c = Cursor { data, pos: 0 };
    let total = c.le(4)? as usize;
    if total != data.len() {
        return Err(format!(
            "ziplist header says {total} bytes, blob has {}",
            data.len()
        ));
    }
    c.le(4)?; // tail offset
    c.le(2)?; // count (65535: unknown)
    let mut out = Vec::new();
    loop {
        let first = *data.get(c.pos).ok_or("ziplist without terminator")?;
        if first == 0xff {
            return Ok(out);
        }
        // previous entry length: 1 byte, or 0xFE and 4 bytes
        if c.u8()? == 0xfe {
            c.take(4)?;
        }
        let enc = c.u8()?;
        let value = match enc >> 6 {
            0 => c.take((enc & 0x3f) as usize)?.to_vec(),
            1 => {
                let len = (((enc & 0x3f) as usize) << 8) | c.u8()? as usize;
                c.take(len)?.to_vec()
            }
            2 => {
                let len = c.be(4)? as usize;
                c.take(len)?.to_vec()
            }
            _ => int_bytes(match enc {
                0xc0 => signed(c.le(2)?, 16),
                0xd0 => signed(c.le(4)?, 32),
                0xe0 => c.le(8)? as i64,
                0xf0 => signed(c.le(3)?, 24),
                0xfe => signed(c.le(1)?, 8),
                0xf1..=0xfd => (enc & 0x0f) as i64 - 1,
                other => return Err(format!("bad ziplist entry encoding {other:#04x}")),
            }),
        };
        out.push(value);
    }
}

/// Decodes a listpack (RDB types 16, 17, 20 and quicklist v2 packed nodes).
pub fn listpack(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut c = Cursor { data, pos: 0 };
    let total = c.le(4)? as usize;
    if total != data.len() {
        return Err(format!(
            "listpack header says {total} bytes, blob has {}",
            data.len()
        ));
    }
    c.le(2)?; // count (65535: unknown)
    let mut out = Vec::new();
    loop {
        let start = c.pos;
        let enc = c.u8()?;
        let value = if enc == 0xff {
            if c.pos != data.len() {
                return Err("bytes after the listpack terminator".into());
            }
            return Ok(out);
        } else if enc & 0x80 == 0 {
            int_bytes((enc & 0x7f) as i64)
        } else if enc & 0xc0 == 0x80 {
            c.take((enc & 0x3f) as usize)?.to_vec()
        } else if enc & 0xe0 == 0xc0 {
            let v = (((enc & 0x1f) as u64) << 8) | c.u8()? as u64;
            int_bytes(signed(v, 13))
        } else if enc & 0xf0 == 0xe0 {
            let len = (((enc & 0x0f) as usize) << 8) | c.u8()? as usize;
            c.take(len)?.to_vec()
        } else {
            match enc {
                0xf0 => {
                    let len = c.le(4)? as usize;
                    c.take(len)?.to_vec()
                }
                0xf1 => int_bytes(signed(c.le(2)?, 16)),
                0xf2 => int_bytes(signed(c.le(3)?, 24)),
                0xf3 => int_bytes(signed(c.le(4)?, 32)),
                0xf4 => int_bytes(c.le(8)? as i64),
                other => return Err(format!("bad listpack entry encoding {other:#04x}")),
            }
        };
        // The back-length covers encoding and data; it takes 1 to 5 bytes.
        let entry = c.pos - start;
        c.take(listpack_backlen_size(entry))?;
        out.push(value);
    }
}

/// How many bytes a listpack entry's back-length takes for an entry of `len` bytes
/// (encoding and data): 7 bits per byte, with Redis's bounds (`lpEncodeBacklen`), which
/// stop one short of each power of 128.
pub fn listpack_backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Decodes an intset (RDB type 11).
pub fn intset(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut c = Cursor { data, pos: 0 };
    let width = c.le(4)? as usize;
    if ![2, 4, 8].contains(&width) {
        return Err(format!("bad intset width {width}"));
    }
    let count = c.le(4)? as usize;
    if count.checked_mul(width) != Some(data.len() - 8) {
        return Err(format!(
            "intset of {count} x {width} bytes does not fit its {} byte blob",
            data.len()
        ));
    }
    (0..count)
        .map(|_| Ok(int_bytes(signed(c.le(width)?, 8 * width as u32))))
        .collect()
}

/// Decodes a zipmap (RDB type 9, hashes from Redis 2.x) into field/value pairs.
pub fn zipmap(data: &[u8]) -> Result<super::Pairs, String> {
    let mut c = Cursor { data, pos: 0 };
    c.u8()?; // count (254+: unknown)
    let mut out = Vec::new();
    let len = |c: &mut Cursor| -> Result<Option<usize>, String> {
        match c.u8()? {
            0xff => Ok(None),
            254 => Ok(Some(c.le(4)? as usize)),
            n => Ok(Some(n as usize)),
        }
    };
    loop {
        let Some(klen) = len(&mut c)? else {
            return Ok(out);
        };
        let key = c.take(klen)?.to_vec();
        let vlen = len(&mut c)?.ok_or("zipmap ends between a field and its value")?;
        let free = c.u8()? as usize;
        let value = c.take(vlen)?.to_vec();
        c.take(free)?;
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpack_back_lengths_at_redis_bounds() {
        for (len, size) in [
            (127, 1),
            (128, 2),
            (16_382, 2),
            (16_383, 3),
            (2_097_150, 3),
            (2_097_151, 4),
            (268_435_454, 4),
            (268_435_455, 5),
        ] {
            assert_eq!(listpack_backlen_size(len), size, "entry of {len} bytes");
        }
        // A 32-bit-length string whose entry is exactly 16383 bytes has a 3-byte
        // back-length in Redis's files; the entry after it must still be found.
        let data = vec![b'x'; 16_383 - 5];
        let mut lp = vec![0, 0, 0, 0, 2, 0, 0xf0];
        lp.extend_from_slice(&(data.len() as u32).to_le_bytes());
        lp.extend_from_slice(&data);
        lp.extend_from_slice(&[0x00, 0xff, 0xff]);
        lp.extend_from_slice(&[0x07, 1, 0xff]);
        let total = lp.len() as u32;
        lp[..4].copy_from_slice(&total.to_le_bytes());
        let items = listpack(&lp).unwrap();
        assert_eq!(items, vec![data, b"7".to_vec()]);
    }

    #[test]
    fn listpack_with_every_encoding() {
        // Built by hand: count 4, entries: uint7 5, str "ab", int16 -2, int13 -100.
        let mut lp = vec![0, 0, 0, 0, 4, 0];
        lp.extend_from_slice(&[0x05, 1]);
        lp.extend_from_slice(&[0x82, b'a', b'b', 3]);
        lp.extend_from_slice(&[0xf1, 0xfe, 0xff, 3]);
        let v13 = (-100i64 as u64) & 0x1fff;
        lp.extend_from_slice(&[0xc0 | (v13 >> 8) as u8, v13 as u8, 2]);
        lp.push(0xff);
        let total = lp.len() as u32;
        lp[..4].copy_from_slice(&total.to_le_bytes());
        let items = listpack(&lp).unwrap();
        assert_eq!(
            items,
            vec![
                b"5".to_vec(),
                b"ab".to_vec(),
                b"-2".to_vec(),
                b"-100".to_vec()
            ]
        );
    }

    #[test]
    fn intset_widths() {
        let mut is = vec![4, 0, 0, 0, 2, 0, 0, 0];
        is.extend_from_slice(&(-7i32).to_le_bytes());
        is.extend_from_slice(&70000i32.to_le_bytes());
        assert_eq!(
            intset(&is).unwrap(),
            vec![b"-7".to_vec(), b"70000".to_vec()]
        );
        assert!(intset(&is[..10]).is_err());
    }

    #[test]
    fn corrupt_blobs_are_errors() {
        for blob in [
            &[][..],
            &[1, 2, 3],
            &[255; 20],
            &[10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let _ = ziplist(blob);
            let _ = listpack(blob);
            let _ = intset(blob);
            let _ = zipmap(blob);
        }
        assert!(listpack(&[7, 0, 0, 0, 1, 0, 0x90]).is_err());
    }
}
