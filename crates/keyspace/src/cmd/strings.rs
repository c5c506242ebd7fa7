//! String commands: GET, SET and its variants, counters, ranges.

use bytes::Bytes;

use super::expire_at;
use crate::ctx::{float, float_to_str, int, is};
use crate::{CmdError, CmdResult, Ctx, Str, Value, notify};

/// Largest string a command may build (proto-max-bulk-len's default).
pub const STRING_LEN_MAX_BYTES: usize = 512 * 1024 * 1024;

pub fn get(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    match c.ks.string(c.db, &a[1])? {
        Some(s) => c.out.bulk(s),
        None => c.out.null(),
    }
    Ok(())
}

#[derive(Default)]
struct SetOpts {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    expire_at_ms: Option<u64>,
}

fn parse_set_opts(c: &Ctx, a: &[Bytes]) -> Result<SetOpts, CmdError> {
    let mut o = SetOpts::default();
    let mut i = 3;
    while i < a.len() {
        let opt = &a[i];
        let unit = if is(opt, "ex") {
            Some((1000, false))
        } else if is(opt, "px") {
            Some((1, false))
        } else if is(opt, "exat") {
            Some((1000, true))
        } else if is(opt, "pxat") {
            Some((1, true))
        } else {
            None
        };
        if let Some((unit_ms, absolute)) = unit {
            if o.keep_ttl || o.expire_at_ms.is_some() || i + 1 >= a.len() {
                return Err(CmdError::Syntax);
            }
            let n = int(&a[i + 1])?;
            o.expire_at_ms = Some(expire_at(c.now_ms(), n, unit_ms, absolute, "set")?);
            i += 2;
            continue;
        }
        if is(opt, "nx") && !o.xx {
            o.nx = true;
        } else if is(opt, "xx") && !o.nx {
            o.xx = true;
        } else if is(opt, "get") {
            o.get = true;
        } else if is(opt, "keepttl") && o.expire_at_ms.is_none() {
            o.keep_ttl = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

pub fn set(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let o = parse_set_opts(c, a)?;
    let (key, val) = (&a[1], &a[2]);
    let old = if o.get {
        Some(c.ks.string(c.db, key)?.map(|s| s.as_bytes().to_vec()))
    } else {
        None
    };
    if o.nx || o.xx {
        let exists = matches!(old, Some(Some(_))) || c.ks.contains(c.db, key);
        if o.nx == exists || (o.xx && !exists) {
            match old {
                Some(Some(v)) => c.out.bulk(&v),
                _ => c.out.null(),
            }
            return Ok(());
        }
    }
    let value = Value::Str(Str::new(val));
    if o.keep_ttl {
        c.ks.set_keep_ttl(c.db, key, value);
    } else {
        c.ks.set_with_expiry(c.db, key, value, o.expire_at_ms);
    }
    c.changed(key, notify::STRING, "set");
    if let Some(at) = o.expire_at_ms {
        c.notify(notify::GENERIC, "expire", key);
        // Relative expiries are logged as the absolute deadline they became.
        c.propagate(&[
            b"SET".as_slice(),
            key,
            val,
            b"PXAT",
            itoa::Buffer::new().format(at).as_bytes(),
        ]);
    }
    match old {
        Some(Some(v)) => c.out.bulk(&v),
        Some(None) => c.out.null(),
        None => c.out.ok(),
    }
    Ok(())
}

pub fn setnx(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    if c.ks.contains(c.db, &a[1]) {
        c.out.int(0);
    } else {
        c.ks.set(c.db, &a[1], Value::Str(Str::new(&a[2])));
        c.changed(&a[1], notify::STRING, "set");
        c.out.int(1);
    }
    Ok(())
}

fn setex_generic(c: &mut Ctx, a: &[Bytes], unit_ms: i64, name: &str) -> CmdResult {
    let at = expire_at(c.now_ms(), int(&a[2])?, unit_ms, false, name)?;
    c.ks.set_with_expiry(c.db, &a[1], Value::Str(Str::new(&a[3])), Some(at));
    c.changed(&a[1], notify::STRING, "set");
    c.notify(notify::GENERIC, "expire", &a[1]);
    c.propagate(&[
        b"SET".as_slice(),
        &a[1],
        &a[3],
        b"PXAT",
        itoa::Buffer::new().format(at).as_bytes(),
    ]);
    c.out.ok();
    Ok(())
}

pub fn setex(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    setex_generic(c, a, 1000, "setex")
}

pub fn psetex(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    setex_generic(c, a, 1, "psetex")
}

pub fn getset(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let old = c.ks.string(c.db, &a[1])?.map(|s| s.as_bytes().to_vec());
    c.ks.set(c.db, &a[1], Value::Str(Str::new(&a[2])));
    c.changed(&a[1], notify::STRING, "set");
    match old {
        Some(v) => c.out.bulk(&v),
        None => c.out.null(),
    }
    Ok(())
}

pub fn getdel(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    match c.ks.string(c.db, &a[1])?.map(|s| s.as_bytes().to_vec()) {
        Some(v) => {
            c.ks.remove(c.db, &a[1]);
            c.changed(&a[1], notify::GENERIC, "del");
            c.out.bulk(&v);
        }
        None => c.out.null(),
    }
    Ok(())
}

pub fn getex(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    enum Ttl {
        Keep,
        At(u64),
        Persist,
    }
    let mut ttl = Ttl::Keep;
    let mut i = 2;
    while i < a.len() {
        let unit = [
            ("ex", 1000, false),
            ("px", 1, false),
            ("exat", 1000, true),
            ("pxat", 1, true),
        ]
        .into_iter()
        .find(|(n, _, _)| is(&a[i], n));
        match unit {
            Some((_, unit_ms, absolute)) if matches!(ttl, Ttl::Keep) && i + 1 < a.len() => {
                ttl = Ttl::At(expire_at(
                    c.now_ms(),
                    int(&a[i + 1])?,
                    unit_ms,
                    absolute,
                    "getex",
                )?);
                i += 2;
            }
            None if is(&a[i], "persist") && matches!(ttl, Ttl::Keep) => {
                ttl = Ttl::Persist;
                i += 1;
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    let Some(v) = c.ks.string(c.db, &a[1])?.map(|s| s.as_bytes().to_vec()) else {
        c.out.null();
        return Ok(());
    };
    match ttl {
        Ttl::Keep => {}
        Ttl::At(at) if at <= c.now_ms() => {
            c.ks.remove(c.db, &a[1]);
            c.changed(&a[1], notify::GENERIC, "del");
            c.propagate(&[b"DEL".as_slice(), &a[1]]);
        }
        Ttl::At(at) => {
            c.ks.set_expiry(c.db, &a[1], at);
            c.changed(&a[1], notify::GENERIC, "expire");
            c.propagate(&[
                b"PEXPIREAT".as_slice(),
                &a[1],
                itoa::Buffer::new().format(at).as_bytes(),
            ]);
        }
        Ttl::Persist => {
            if c.ks.persist(c.db, &a[1]) {
                c.changed(&a[1], notify::GENERIC, "persist");
                c.propagate(&[b"PERSIST".as_slice(), &a[1]]);
            }
        }
    }
    c.out.bulk(&v);
    Ok(())
}

pub fn mget(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    c.out.array(a.len() - 1);
    for key in &a[1..] {
        match c.ks.lookup(c.db, key) {
            Some(Value::Str(s)) => c.out.bulk(s),
            _ => c.out.null(),
        }
    }
    Ok(())
}

/// MSET-style `key value [key value ...]` after the command name.
fn check_pairs(a: &[Bytes]) -> CmdResult {
    if a.len() % 2 == 1 {
        Ok(())
    } else {
        Err(CmdError::WrongArity(
            crate::ctx::lossy(&a[0]).to_lowercase(),
        ))
    }
}

pub fn mset(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    check_pairs(a)?;
    for kv in a[1..].chunks(2) {
        c.ks.set(c.db, &kv[0], Value::Str(Str::new(&kv[1])));
        c.changed(&kv[0], notify::STRING, "set");
    }
    c.out.ok();
    Ok(())
}

pub fn msetnx(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    check_pairs(a)?;
    if a[1..].chunks(2).any(|kv| c.ks.contains(c.db, &kv[0])) {
        c.out.int(0);
        return Ok(());
    }
    for kv in a[1..].chunks(2) {
        c.ks.set(c.db, &kv[0], Value::Str(Str::new(&kv[1])));
        c.changed(&kv[0], notify::STRING, "set");
    }
    c.out.int(1);
    Ok(())
}

fn incr_by(c: &mut Ctx, key: &[u8], delta: i64) -> CmdResult {
    // Changed in place: one lookup of the key.
    let n = match c.ks.lookup(c.db, key) {
        Some(Value::Str(s)) => {
            let current = resp::parse_i64(s).ok_or(CmdError::NotInteger)?;
            let n = current.checked_add(delta).ok_or(CmdError::Overflow)?;
            *s = Str::from_i64(n);
            n
        }
        Some(_) => return Err(CmdError::WrongType),
        None => {
            c.ks.set(c.db, key, Value::Str(Str::from_i64(delta)));
            delta
        }
    };
    c.changed(key, notify::STRING, "incrby");
    c.out.int(n);
    Ok(())
}

pub fn incr(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    incr_by(c, &a[1], 1)
}

pub fn decr(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    incr_by(c, &a[1], -1)
}

pub fn incrby(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    incr_by(c, &a[1], int(&a[2])?)
}

pub fn decrby(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let d = int(&a[2])?;
    incr_by(
        c,
        &a[1],
        d.checked_neg()
            .ok_or_else(|| CmdError::other("ERR decrement would overflow"))?,
    )
}

pub fn incrbyfloat(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let delta = float(&a[2])?;
    let current = match c.ks.string(c.db, &a[1])? {
        Some(s) => float(s)?,
        None => 0.0,
    };
    let n = current + delta;
    if !n.is_finite() {
        return Err(CmdError::other(
            "ERR increment would produce NaN or Infinity",
        ));
    }
    let text = float_to_str(n);
    c.ks.set_keep_ttl(c.db, &a[1], Value::Str(Str::new(text.as_bytes())));
    c.changed(&a[1], notify::STRING, "incrbyfloat");
    // Float arithmetic may differ between machines: log the result.
    c.propagate(&[b"SET".as_slice(), &a[1], text.as_bytes(), b"KEEPTTL"]);
    c.out.bulk(text.as_bytes());
    Ok(())
}

pub fn append(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let tail = &a[2];
    let len = match c.ks.string_mut(c.db, &a[1])? {
        Some(s) => {
            if s.len() + tail.len() > STRING_LEN_MAX_BYTES {
                return Err(CmdError::StringTooLong);
            }
            // In place, with room for more: a string built by APPENDs is copied
            // about log(n) times, not once per APPEND.
            let v = s.growable(tail.len());
            v.extend_from_slice(tail);
            v.len()
        }
        None => {
            c.ks.set_keep_ttl(c.db, &a[1], Value::Str(Str::new(tail)));
            tail.len()
        }
    };
    c.changed(&a[1], notify::STRING, "append");
    c.out.int(len as i64);
    Ok(())
}

pub fn strlen(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n = c.ks.string(c.db, &a[1])?.map_or(0, |s| s.len());
    c.out.int(n as i64);
    Ok(())
}

pub fn getrange(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (start, end) = (int(&a[2])?, int(&a[3])?);
    let s =
        c.ks.string(c.db, &a[1])?
            .map(|s| s.as_bytes())
            .unwrap_or_default();
    // Redis quirk: both negative and start > end is empty even after adjustment.
    if start < 0 && end < 0 && start > end {
        c.out.bulk(b"");
        return Ok(());
    }
    match crate::ctx::clamp_range(start, end, s.len()) {
        Some((from, to)) => {
            let slice = s[from..=to].to_vec();
            c.out.bulk(&slice)
        }
        None => c.out.bulk(b""),
    }
    Ok(())
}

pub fn setrange(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let offset = int(&a[2])?;
    if offset < 0 {
        return Err(CmdError::other("ERR offset is out of range"));
    }
    let offset = offset as usize;
    let patch = &a[3];
    // No overflow: the offset is below 2^63 and the patch below proto-max-bulk-len.
    let end = offset + patch.len();
    let too_long = end > STRING_LEN_MAX_BYTES;
    let len = match c.ks.string_mut(c.db, &a[1])? {
        Some(s) if patch.is_empty() => {
            c.out.int(s.len() as i64);
            return Ok(());
        }
        Some(_) if too_long => return Err(CmdError::StringTooLong),
        Some(s) => {
            let v = s.growable(end.saturating_sub(s.len()));
            if end > v.len() {
                v.resize(end, 0);
            }
            v[offset..end].copy_from_slice(patch);
            v.len()
        }
        None if patch.is_empty() => {
            c.out.int(0);
            return Ok(());
        }
        None if too_long => return Err(CmdError::StringTooLong),
        None => {
            let mut v = vec![0u8; end];
            v[offset..].copy_from_slice(patch);
            c.ks.set_keep_ttl(c.db, &a[1], Value::Str(Str::raw(v)));
            end
        }
    };
    c.changed(&a[1], notify::STRING, "setrange");
    c.out.int(len as i64);
    Ok(())
}

/// The LCS table (a u32 per pair of prefixes) may take at most this much transient memory,
/// Redis's default `proto-max-bulk-len`.
const LCS_TABLE_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// One run of common bytes LCS IDX reports: ranges in the first and second string.
#[derive(Debug, PartialEq, Eq)]
struct LcsMatch {
    a: (usize, usize),
    b: (usize, usize),
}

impl LcsMatch {
    fn len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

/// The longest common subsequence of `a` and `b`, and its runs of contiguous matches from
/// the end of the strings backwards, as Redis walks its table.
fn lcs_of(a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<LcsMatch>) {
    let width = b.len() + 1;
    let mut t = vec![0u32; (a.len() + 1) * width];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i * width + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * width + j - 1] + 1
            } else {
                t[(i - 1) * width + j].max(t[i * width + j - 1])
            };
        }
    }
    let mut common = Vec::with_capacity(t[a.len() * width + b.len()] as usize);
    let mut runs = Vec::new();
    let mut run: Option<LcsMatch> = None;
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            common.push(a[i - 1]);
            run = match run.take() {
                // Contiguous with the run so far in both strings: it grows backwards.
                Some(mut r) if r.a.0 == i && r.b.0 == j => {
                    r.a.0 -= 1;
                    r.b.0 -= 1;
                    Some(r)
                }
                Some(r) => {
                    runs.push(r);
                    Some(LcsMatch {
                        a: (i - 1, i - 1),
                        b: (j - 1, j - 1),
                    })
                }
                None => Some(LcsMatch {
                    a: (i - 1, i - 1),
                    b: (j - 1, j - 1),
                }),
            };
            i -= 1;
            j -= 1;
        } else {
            if t[(i - 1) * width + j] > t[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            runs.extend(run.take());
        }
    }
    runs.extend(run);
    common.reverse();
    (common, runs)
}

pub fn lcs(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let mut value = |key: &[u8]| -> Result<Vec<u8>, CmdError> {
        match c.ks.string(c.db, key) {
            Ok(s) => Ok(s.map(|s| s.as_bytes().to_vec()).unwrap_or_default()),
            Err(_) => Err(CmdError::other(
                "ERR The specified keys must contain string values",
            )),
        }
    };
    let (x, y) = (value(&a[1])?, value(&a[2])?);
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut j = 3;
    while j < a.len() {
        if is(&a[j], "idx") {
            idx = true;
        } else if is(&a[j], "len") {
            len_only = true;
        } else if is(&a[j], "withmatchlen") {
            with_len = true;
        } else if is(&a[j], "minmatchlen") && j + 1 < a.len() {
            min_len = int(&a[j + 1])?.max(0) as usize;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if len_only && idx {
        return Err(CmdError::other(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let table_bytes = (x.len() as u64 + 1) * (y.len() as u64 + 1) * 4;
    if table_bytes > LCS_TABLE_MAX_BYTES {
        return Err(CmdError::other(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let (common, runs) = lcs_of(&x, &y);
    if idx {
        let shown: Vec<&LcsMatch> = runs.iter().filter(|r| r.len() >= min_len).collect();
        c.out.map(2);
        c.out.bulk(b"matches");
        c.out.array(shown.len());
        for r in shown {
            c.out.array(2 + with_len as usize);
            for (from, to) in [r.a, r.b] {
                c.out.array(2);
                c.out.int(from as i64);
                c.out.int(to as i64);
            }
            if with_len {
                c.out.int(r.len() as i64);
            }
        }
        c.out.bulk(b"len");
        c.out.int(common.len() as i64);
    } else if len_only {
        c.out.int(common.len() as i64);
    } else {
        c.out.bulk(&common);
    }
    Ok(())
}
