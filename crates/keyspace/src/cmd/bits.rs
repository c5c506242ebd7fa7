//! Bit commands on strings: SETBIT, GETBIT, BITCOUNT. Bit 0 is the most significant bit of
//! the first byte, as in Redis.

use bytes::Bytes;

use super::strings::STRING_LEN_MAX_BYTES;
use crate::ctx::{int, is};
use crate::{CmdError, CmdResult, Ctx, Str, Value, notify};

/// A bit offset: non-negative and inside the longest string a key may hold.
fn bit_offset(arg: &[u8]) -> Result<u64, CmdError> {
    let invalid = || CmdError::other("ERR bit offset is not an integer or out of range");
    let n = int(arg).map_err(|_| invalid())?;
    if n < 0 || (n as u64 >> 3) >= STRING_LEN_MAX_BYTES as u64 {
        return Err(invalid());
    }
    Ok(n as u64)
}

fn bit_at(bytes: &[u8], offset: u64) -> u8 {
    let byte = (offset >> 3) as usize;
    bytes
        .get(byte)
        .map_or(0, |b| (b >> (7 - (offset & 7) as u8)) & 1)
}

pub fn setbit(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let offset = bit_offset(&a[2])?;
    let on = match a[3].as_ref() {
        b"1" => true,
        b"0" => false,
        _ => return Err(CmdError::other("ERR bit is not an integer or out of range")),
    };
    let mut v =
        c.ks.string(c.db, &a[1])?
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default();
    let old = bit_at(&v, offset);
    let byte = (offset >> 3) as usize;
    if v.len() <= byte {
        v.resize(byte + 1, 0);
    }
    let mask = 1u8 << (7 - (offset & 7) as u8);
    if on {
        v[byte] |= mask;
    } else {
        v[byte] &= !mask;
    }
    c.ks.set_keep_ttl(c.db, &a[1], Value::Str(Str::from_vec(v)));
    c.changed(&a[1], notify::STRING, "setbit");
    c.out.int(old as i64);
    Ok(())
}

pub fn getbit(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let offset = bit_offset(&a[2])?;
    let bit =
        c.ks.string(c.db, &a[1])?
            .map_or(0, |s| bit_at(s.as_bytes(), offset));
    c.out.int(bit as i64);
    Ok(())
}

pub fn bitcount(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let Some(s) = c.ks.string(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let bytes = s.as_bytes();
    let n = match a.len() {
        2 => count_ones(bytes, 0, bytes.len() as i64 * 8 - 1),
        4 | 5 => {
            let (start, end) = (int(&a[2])?, int(&a[3])?);
            if start < 0 && end < 0 && start > end {
                0
            } else {
                let in_bits = match a.get(4) {
                    None => false,
                    Some(u) if is(u, "bit") => true,
                    Some(u) if is(u, "byte") => false,
                    Some(_) => return Err(CmdError::Syntax),
                };
                let total = bytes.len() as i64 * if in_bits { 8 } else { 1 };
                let resolve = |i: i64| if i < 0 { (total + i).max(0) } else { i };
                let (start, end) = (resolve(start), resolve(end).min(total - 1));
                if in_bits {
                    count_ones(bytes, start, end)
                } else {
                    count_ones(bytes, start.saturating_mul(8), end.saturating_mul(8) + 7)
                }
            }
        }
        _ => return Err(CmdError::Syntax),
    };
    c.out.int(n as i64);
    Ok(())
}

/// Set bits from bit `start` to bit `end`, both included (none when start > end).
fn count_ones(bytes: &[u8], start: i64, end: i64) -> u64 {
    let end = end.min(bytes.len() as i64 * 8 - 1);
    if start > end {
        return 0;
    }
    let (first, last) = ((start >> 3) as usize, (end >> 3) as usize);
    let n: u64 = bytes[first..=last]
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    // Take out the bits of the edge bytes that lie outside the range.
    let head = bytes[first] & !(0xFFu8 >> (start & 7));
    let tail = bytes[last] & ((1u16 << (7 - (end & 7))) - 1) as u8;
    n - u64::from(head.count_ones()) - u64::from(tail.count_ones())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bit_ranges() {
        let v = b"\xff\xf0\x00\x0f";
        for (start, end, want) in [
            (0, 31, 16),
            (0, 7, 8),
            (4, 11, 8),
            (8, 11, 4),
            (12, 27, 0),
            (28, 31, 4),
            (3, 2, 0),
            (0, 1000, 16),
        ] {
            assert_eq!(count_ones(v, start, end), want, "{start}..={end}");
        }
        assert_eq!(count_ones(b"", 0, -1), 0);
    }

    #[test]
    fn bits_are_most_significant_first() {
        assert_eq!(bit_at(b"\x40", 1), 1);
        assert_eq!(bit_at(b"\x40", 0), 0);
        assert_eq!(bit_at(b"\x40", 100), 0);
        assert!(bit_offset(b"-1").is_err());
        assert!(bit_offset(b"4294967296").is_err());
        assert_eq!(bit_offset(b"4294967295").unwrap(), 4294967295);
    }
}
