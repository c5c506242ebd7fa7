//! Bit commands on strings: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and
//! BITFIELD_RO. Bit 0 is the most significant bit of the first byte, as in Redis.

use bytes::Bytes;

use super::strings::STRING_LEN_MAX_BYTES;
use crate::ctx::{int, is};
use crate::{CmdError, CmdResult, Ctx, Str, Value, notify};

/// A bit offset: non-negative and inside the longest string a key may hold.
fn bit_offset(arg: &[u8]) -> Result<u64, CmdError> {
    field_offset(arg, None)
}

/// A bit offset, or with `width` (BITFIELD) also `#n`: the n-th field of that width.
fn field_offset(arg: &[u8], width: Option<u32>) -> Result<u64, CmdError> {
    let invalid = || CmdError::other("ERR bit offset is not an integer or out of range");
    let (digits, scale) = match (arg, width) {
        ([b'#', rest @ ..], Some(w)) => (rest, i64::from(w)),
        _ => (arg, 1),
    };
    let n = int(digits)
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(invalid)?;
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
    let byte = (offset >> 3) as usize;
    let mask = 1u8 << (7 - (offset & 7) as u8);
    // In place: the string grows (with room for more, so setting bits in rising order
    // does not copy the bitmap each time) and the bit flips where it is stored.
    let (old, changed) = match c.ks.string_mut(c.db, &a[1])? {
        Some(s) => {
            let grown = byte >= s.len();
            let old = s.as_bytes().get(byte).is_some_and(|b| b & mask != 0);
            // A longer string is a change even when the bit keeps its value. A string
            // left as it was is left in its form too: the command then counts as no
            // change, and its size is not measured again.
            if grown || old != on {
                // Changed in place, the string is Redis's "raw" from now on.
                let v = s.growable((byte + 1).saturating_sub(s.len()));
                if grown {
                    v.resize(byte + 1, 0);
                }
                v[byte] = if on { v[byte] | mask } else { v[byte] & !mask };
            }
            (old, grown || old != on)
        }
        None => {
            let mut v = vec![0u8; byte + 1];
            if on {
                v[byte] = mask;
            }
            c.ks.set_keep_ttl(c.db, &a[1], Value::Str(Str::raw(v)));
            (false, true)
        }
    };
    if changed {
        c.changed(&a[1], notify::STRING, "setbit");
    }
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

pub fn bitpos(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let bit = match int(&a[2])? {
        0 => 0u8,
        1 => 1u8,
        _ => {
            return Err(CmdError::other("ERR The bit argument must be 1 or 0."));
        }
    };
    let Some(s) = c.ks.string(c.db, &a[1])? else {
        c.out.int(if bit == 1 { -1 } else { 0 });
        return Ok(());
    };
    let bytes = s.as_bytes();
    let len = bytes.len() as i64;
    let (first_bit, last_bit, end_given) = match a.len() {
        3 => (0, len * 8 - 1, false),
        4..=6 => {
            let start = int(&a[3])?;
            let in_bits = match a.get(5) {
                None => false,
                Some(u) if is(u, "bit") => true,
                Some(u) if is(u, "byte") => false,
                Some(_) => return Err(CmdError::Syntax),
            };
            let end = match a.get(4) {
                Some(e) => Some(int(e)?),
                None => None,
            };
            let total = if in_bits { len * 8 } else { len };
            let resolve = |i: i64| if i < 0 { (total + i).max(0) } else { i };
            let start = resolve(start);
            let end = resolve(end.unwrap_or(total - 1)).min(total - 1);
            if start > end {
                c.out.int(-1);
                return Ok(());
            }
            if in_bits {
                (start, end, a.len() >= 5)
            } else {
                (start * 8, end * 8 + 7, a.len() >= 5)
            }
        }
        _ => return Err(CmdError::Syntax),
    };
    let pos = if first_bit > last_bit {
        -1
    } else {
        match find_bit(bytes, first_bit as u64, last_bit as u64, bit) {
            Some(p) => p as i64,
            // Clear bits lie beyond the string's end, unless the range was bounded.
            None if bit == 0 && !end_given => last_bit + 1,
            None => -1,
        }
    };
    c.out.int(pos);
    Ok(())
}

/// The first bit equal to `bit` from `first` to `last` (both included, inside `bytes`).
fn find_bit(bytes: &[u8], first: u64, last: u64, bit: u8) -> Option<u64> {
    let skip = if bit == 1 { 0x00 } else { 0xff };
    let mut i = first;
    while i <= last {
        if i & 7 == 0 && i + 7 <= last && bytes[(i >> 3) as usize] == skip {
            i += 8;
            continue;
        }
        if bit_at(bytes, i) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

pub fn bitop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = [
        ("and", Op::And),
        ("or", Op::Or),
        ("xor", Op::Xor),
        ("not", Op::Not),
    ]
    .into_iter()
    .find(|(name, _)| is(&a[1], name))
    .map(|(_, op)| op)
    .ok_or(CmdError::Syntax)?;
    if op == Op::Not && a.len() != 4 {
        return Err(CmdError::other(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let mut sources: Vec<Vec<u8>> = Vec::with_capacity(a.len() - 3);
    for key in &a[3..] {
        sources.push(
            c.ks.string(c.db, key)?
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default(),
        );
    }
    let len = sources.iter().map(Vec::len).max().unwrap_or(0);
    let byte = |src: &Vec<u8>, i: usize| src.get(i).copied().unwrap_or(0);
    let result: Vec<u8> = (0..len)
        .map(|i| {
            let first = byte(&sources[0], i);
            let rest = sources[1..].iter().map(|s| byte(s, i));
            match op {
                Op::And => rest.fold(first, |x, b| x & b),
                Op::Or => rest.fold(first, |x, b| x | b),
                Op::Xor => rest.fold(first, |x, b| x ^ b),
                Op::Not => !first,
            }
        })
        .collect();
    let dst = &a[2];
    if len > 0 {
        c.ks.set(c.db, dst, Value::Str(Str::from_vec(result)));
        c.changed(dst, notify::STRING, "set");
    } else if c.ks.remove(c.db, dst).is_some() {
        c.changed(dst, notify::GENERIC, "del");
    }
    c.out.int(len as i64);
    Ok(())
}

/// What BITFIELD does when a SET or INCRBY leaves the field's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

/// One BITFIELD operation on a field: `signed` and `width` bits at `offset`.
#[derive(Debug, Clone, Copy)]
struct Field {
    op: FieldOp,
    signed: bool,
    width: u32,
    offset: u64,
    overflow: Overflow,
}

/// A field type: `i1`..`i64` or `u1`..`u63`.
fn field_type(arg: &[u8]) -> Result<(bool, u32), CmdError> {
    let invalid = || {
        CmdError::other(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        )
    };
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(invalid()),
    };
    let width = int(&arg[1..]).map_err(|_| invalid())?;
    let max = if signed { 64 } else { 63 };
    if !(1..=max).contains(&width) {
        return Err(invalid());
    }
    Ok((signed, width as u32))
}

fn read_field(bytes: &[u8], offset: u64, width: u32) -> u64 {
    (0..u64::from(width)).fold(0u64, |v, j| (v << 1) | u64::from(bit_at(bytes, offset + j)))
}

fn write_field(bytes: &mut [u8], offset: u64, width: u32, value: u64) {
    for j in 0..u64::from(width) {
        let on = (value >> (u64::from(width) - 1 - j)) & 1 == 1;
        let at = offset + j;
        let mask = 1u8 << (7 - (at & 7) as u8);
        if let Some(b) = bytes.get_mut((at >> 3) as usize) {
            if on {
                *b |= mask;
            } else {
                *b &= !mask;
            }
        }
    }
}

fn sign_extend(v: u64, width: u32) -> i64 {
    if width < 64 && v & (1 << (width - 1)) != 0 {
        (v | (u64::MAX << width)) as i64
    } else {
        v as i64
    }
}

/// Whether `value + incr` leaves an unsigned field of `width` bits, and the value the
/// policy gives instead (Redis's checks: a SET of a negative number counts as too large).
fn unsigned_overflow(value: u64, incr: i64, width: u32, policy: Overflow) -> Option<u64> {
    let max = (1u64 << width) - 1;
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrapped = value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > max_incr) {
        Some(if policy == Overflow::Sat {
            max
        } else {
            wrapped
        })
    } else if incr < 0 && incr < min_incr {
        Some(if policy == Overflow::Sat { 0 } else { wrapped })
    } else {
        None
    }
}

/// The signed counterpart of [`unsigned_overflow`].
fn signed_overflow(value: i64, incr: i64, width: u32, policy: Overflow) -> Option<i64> {
    let max = if width == 64 {
        i64::MAX
    } else {
        (1i64 << (width - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrapped = || {
        let sum = (value as u64).wrapping_add(incr as u64);
        sign_extend(
            if width < 64 {
                sum & ((1 << width) - 1)
            } else {
                sum
            },
            width,
        )
    };
    let narrow = width != 64;
    if value > max || (narrow && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr) {
        Some(if policy == Overflow::Sat {
            max
        } else {
            wrapped()
        })
    } else if value < min
        || (narrow && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        Some(if policy == Overflow::Sat {
            min
        } else {
            wrapped()
        })
    } else {
        None
    }
}

fn parse_fields(a: &[Bytes]) -> Result<Vec<Field>, CmdError> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let sub = &a[j];
        let op_kind = if is(sub, "get") && left >= 2 {
            0
        } else if is(sub, "set") && left >= 3 {
            1
        } else if is(sub, "incrby") && left >= 3 {
            2
        } else if is(sub, "overflow") && left >= 1 {
            overflow = [
                ("wrap", Overflow::Wrap),
                ("sat", Overflow::Sat),
                ("fail", Overflow::Fail),
            ]
            .into_iter()
            .find(|(name, _)| is(&a[j + 1], name))
            .map(|(_, o)| o)
            .ok_or_else(|| CmdError::other("ERR Invalid OVERFLOW type specified"))?;
            j += 2;
            continue;
        } else {
            return Err(CmdError::Syntax);
        };
        let (signed, width) = field_type(&a[j + 1])?;
        let offset = field_offset(&a[j + 2], Some(width))?;
        let op = match op_kind {
            0 => FieldOp::Get,
            1 => FieldOp::Set(int(&a[j + 3])?),
            _ => FieldOp::IncrBy(int(&a[j + 3])?),
        };
        fields.push(Field {
            op,
            signed,
            width,
            offset,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Ok(fields)
}

fn bitfield_generic(c: &mut Ctx, a: &[Bytes], read_only: bool) -> CmdResult {
    let fields = parse_fields(a)?;
    let writes = fields.iter().any(|f| f.op != FieldOp::Get);
    let key = &a[1];
    let mut bytes = if !writes {
        c.ks.string(c.db, key)?
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default()
    } else {
        if read_only {
            return Err(CmdError::other(
                "ERR BITFIELD_RO only supports the GET subcommand",
            ));
        }
        c.ks.string(c.db, key)?
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default()
    };
    let mut created = false;
    if writes {
        let existed = c.ks.contains(c.db, key);
        let highest = fields
            .iter()
            .filter(|f| f.op != FieldOp::Get)
            .map(|f| f.offset + u64::from(f.width) - 1)
            .max()
            .unwrap_or(0);
        let need = (highest >> 3) as usize + 1;
        if bytes.len() < need {
            bytes.resize(need, 0);
            created = true;
        } else if !existed {
            created = true;
        }
    }
    let mut changes = 0u64;
    c.out.array(fields.len());
    for f in &fields {
        let old_raw = read_field(&bytes, f.offset, f.width);
        let (incr, set_to) = match f.op {
            FieldOp::Get => {
                if f.signed {
                    c.out.int(sign_extend(old_raw, f.width));
                } else {
                    c.out.int(old_raw as i64);
                }
                continue;
            }
            FieldOp::Set(v) => (0, Some(v)),
            FieldOp::IncrBy(by) => (by, None),
        };
        let outcome: Option<(i64, u64)> = if f.signed {
            let old = sign_extend(old_raw, f.width);
            let (value, by) = match set_to {
                Some(v) => (v, 0),
                None => (old, incr),
            };
            match signed_overflow(value, by, f.width, f.overflow) {
                Some(_) if f.overflow == Overflow::Fail => None,
                Some(limited) => {
                    Some((if set_to.is_some() { old } else { limited }, limited as u64))
                }
                None => {
                    let new = value.wrapping_add(by);
                    Some((if set_to.is_some() { old } else { new }, new as u64))
                }
            }
        } else {
            let (value, by) = match set_to {
                Some(v) => (v as u64, 0),
                None => (old_raw, incr),
            };
            match unsigned_overflow(value, by, f.width, f.overflow) {
                Some(_) if f.overflow == Overflow::Fail => None,
                Some(limited) => Some((
                    if set_to.is_some() {
                        old_raw as i64
                    } else {
                        limited as i64
                    },
                    limited,
                )),
                None => {
                    let new = value.wrapping_add(by as u64);
                    Some((
                        if set_to.is_some() {
                            old_raw as i64
                        } else {
                            new as i64
                        },
                        new,
                    ))
                }
            }
        };
        match outcome {
            Some((reply, new_raw)) => {
                c.out.int(reply);
                let mask = if f.width == 64 {
                    u64::MAX
                } else {
                    (1u64 << f.width) - 1
                };
                write_field(&mut bytes, f.offset, f.width, new_raw & mask);
                if created || old_raw != new_raw & mask {
                    changes += 1;
                }
            }
            None => c.out.null(),
        }
    }
    if writes && (changes > 0 || created) {
        c.ks.set_keep_ttl(c.db, key, Value::Str(Str::from_vec(bytes)));
    }
    if changes > 0 {
        c.changed(key, notify::STRING, "setbit");
        c.ks.dirty += changes - 1;
    }
    Ok(())
}

pub fn bitfield(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    bitfield_generic(c, a, false)
}

pub fn bitfield_ro(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    bitfield_generic(c, a, true)
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
    fn field_overflow_follows_redis() {
        use Overflow::*;
        // BITFIELD k SET u8 0 255 INCRBY u8 0 10, under each policy.
        assert_eq!(unsigned_overflow(255, 10, 8, Wrap), Some(9));
        assert_eq!(unsigned_overflow(255, 10, 8, Sat), Some(255));
        assert_eq!(unsigned_overflow(5, -10, 8, Sat), Some(0));
        assert_eq!(unsigned_overflow(5, -10, 8, Wrap), Some(251));
        assert_eq!(unsigned_overflow(5, 10, 8, Wrap), None);
        // SET u8 with -1 under SAT saturates up, as redis-server answers (255).
        assert_eq!(unsigned_overflow(-1i64 as u64, 0, 8, Sat), Some(255));
        assert_eq!(signed_overflow(100, 100, 8, Wrap), Some(-56));
        assert_eq!(signed_overflow(100, 100, 8, Sat), Some(127));
        assert_eq!(signed_overflow(-100, -100, 8, Sat), Some(-128));
        assert_eq!(signed_overflow(i64::MIN, -1, 64, Wrap), Some(i64::MAX));
        assert_eq!(signed_overflow(i64::MIN, -1, 64, Sat), Some(i64::MIN));
        assert_eq!(signed_overflow(i64::MAX, 1, 64, Sat), Some(i64::MAX));
        assert_eq!(signed_overflow(-2, 1, 2, Fail), None);
        assert_eq!(signed_overflow(-3, 0, 2, Wrap), Some(1));
        assert_eq!(signed_overflow(1, 1, 2, Fail), Some(-2));
    }

    #[test]
    fn fields_read_and_write_most_significant_first() {
        let mut v = vec![0u8; 3];
        write_field(&mut v, 4, 8, 0xAB);
        assert_eq!(v, [0x0A, 0xB0, 0x00]);
        assert_eq!(read_field(&v, 4, 8), 0xAB);
        assert_eq!(sign_extend(read_field(&v, 4, 4), 4), -6);
        assert_eq!(read_field(&v, 20, 8), 0, "beyond the end reads zeros");
        assert_eq!(field_type(b"i64").unwrap(), (true, 64));
        assert_eq!(field_type(b"u63").unwrap(), (false, 63));
        for bad in [&b"u64"[..], b"i65", b"i0", b"x8", b"I8", b"", b"u"] {
            assert!(field_type(bad).is_err(), "{bad:?}");
        }
        assert_eq!(field_offset(b"#3", Some(8)).unwrap(), 24);
        assert!(field_offset(b"#3", None).is_err());
        assert!(field_offset(b"#-1", Some(8)).is_err());
    }

    #[test]
    fn bit_search_skips_whole_bytes() {
        let v = b"\xff\xf0\x00";
        assert_eq!(find_bit(v, 0, 23, 0), Some(12));
        assert_eq!(find_bit(v, 0, 23, 1), Some(0));
        assert_eq!(find_bit(v, 12, 23, 1), None);
        assert_eq!(find_bit(v, 3, 5, 0), None);
        assert_eq!(find_bit(b"\x00\x00\x01", 0, 23, 1), Some(23));
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
