//! Set commands.

use bytes::Bytes;
use resp::ReplyBuf;

use super::keys::{parse_scan, scan_dict, write_scan_reply};
use crate::ctx::{int, is, uint};
use crate::glob::glob_match;
use crate::{CmdError, CmdResult, Ctx, Dict, DictEntry, Str, Value, notify};

/// The count argument of SRANDMEMBER, HRANDFIELD and ZRANDMEMBER (negative: repeats allowed).
/// `pairs` (WITHVALUES, WITHSCORES) halves the range, as Redis does so that the reply's
/// length cannot overflow.
pub(crate) fn random_count(arg: &[u8], pairs: bool) -> Result<i64, CmdError> {
    let n = int(arg)?;
    if n == i64::MIN {
        return Err(CmdError::other(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    if pairs && n.unsigned_abs() > (i64::MAX / 2) as u64 {
        return Err(CmdError::other("ERR value is out of range"));
    }
    Ok(n)
}

/// Random elements as SRANDMEMBER/HRANDFIELD/ZRANDMEMBER choose them for a positive
/// count: distinct elements, at most all.
pub(crate) fn sample<T: DictEntry>(d: &Dict<T>, count: i64) -> Vec<&T> {
    let n = count.max(0) as usize;
    if n >= d.len() {
        return d.iter().collect();
    }
    // Few wanted: sample until distinct; many wanted: shuffle all and take.
    if n * 3 < d.len() {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let item = d.random().expect("non-empty");
            if seen.insert(item.key()) {
                out.push(item);
            }
        }
        out
    } else {
        let mut all: Vec<&T> = d.iter().collect();
        fastrand::shuffle(&mut all);
        all.truncate(n);
        all
    }
}

/// Writes `n` elements picked at random with repeats (a negative count) as they are
/// picked, each with `write`, after an array header of `n * per_pick` items; stops once
/// the reply is full (the client is closed then: Redis stops such a command mid-run).
pub(crate) fn write_repeated<T: DictEntry>(
    out: &mut ReplyBuf,
    d: Option<&Dict<T>>,
    n: u64,
    per_pick: usize,
    mut write: impl FnMut(&mut ReplyBuf, &T),
) {
    let Some(d) = d.filter(|d| !d.is_empty()) else {
        out.array(0);
        return;
    };
    out.array(n as usize * per_pick);
    for _ in 0..n {
        write(out, d.random().expect("non-empty"));
        if out.full() {
            return;
        }
    }
}

pub fn sadd(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let s = c.ks.set_or_create(c.db, &a[1])?;
    let mut added = 0;
    for m in &a[2..] {
        if !s.contains(m) {
            s.insert_new(Str::new(m));
            added += 1;
        }
    }
    if added > 0 {
        c.changed(&a[1], notify::SET, "sadd");
    }
    c.out.int(added);
    Ok(())
}

pub fn srem(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let Some(s) = c.ks.set_members(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let n = a[2..].iter().filter(|m| s.remove(m).is_some()).count();
    if n > 0 {
        c.changed(&a[1], notify::SET, "srem");
        c.ks.remove_if_empty(c.db, &a[1]);
    }
    c.out.int(n as i64);
    Ok(())
}

pub fn smembers(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    match c.ks.set_members(c.db, &a[1])? {
        None => c.out.set(0),
        Some(s) => {
            c.out.set(s.len());
            for m in s.iter() {
                c.out.bulk(m);
            }
        }
    }
    Ok(())
}

pub fn sismember(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let yes =
        c.ks.set_members(c.db, &a[1])?
            .is_some_and(|s| s.contains(&a[2]));
    c.out.int(yes as i64);
    Ok(())
}

pub fn smismember(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let s = c.ks.set_members(c.db, &a[1])?;
    c.out.array(a.len() - 2);
    for m in &a[2..] {
        c.out.int(s.as_ref().is_some_and(|s| s.contains(m)) as i64);
    }
    Ok(())
}

pub fn scard(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n = c.ks.set_members(c.db, &a[1])?.map_or(0, |s| s.len());
    c.out.int(n as i64);
    Ok(())
}

pub fn spop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let count = match a.get(2) {
        Some(n) => Some(uint(n)?),
        None => None,
    };
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let Some(s) = c.ks.set_members(c.db, &a[1])? else {
        if count.is_some() {
            c.out.set(0)
        } else {
            c.out.null()
        }
        return Ok(());
    };
    let picked: Vec<Str> = sample(s, count.unwrap_or(1) as i64)
        .into_iter()
        .cloned()
        .collect();
    for m in &picked {
        s.remove(m);
    }
    if !picked.is_empty() {
        c.changed(&a[1], notify::SET, "spop");
        c.ks.remove_if_empty(c.db, &a[1]);
        // The members were picked at random: log which.
        let mut srem: Vec<&[u8]> = vec![b"SREM", &a[1]];
        srem.extend(picked.iter().map(|m| m.as_bytes()));
        c.propagate(&srem);
    }
    match count {
        None => c.out.bulk(&picked[0]),
        Some(_) => {
            c.out.set(picked.len());
            picked.iter().for_each(|m| c.out.bulk(m));
        }
    }
    Ok(())
}

pub fn srandmember(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let count = a.get(2).map(|n| random_count(n, false)).transpose()?;
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let s = c.ks.set_members(c.db, &a[1])?;
    match count {
        None => match s.and_then(|s| s.random()) {
            Some(m) => c.out.bulk(m),
            None => c.out.null(),
        },
        Some(n) if n < 0 => {
            write_repeated(c.out, s.as_deref(), n.unsigned_abs(), 1, |out, m: &Str| {
                out.bulk(m)
            });
        }
        Some(n) => {
            let picked: Vec<Str> = s
                .map(|s| sample(s, n).into_iter().cloned().collect())
                .unwrap_or_default();
            c.out.array(picked.len());
            picked.iter().for_each(|m| c.out.bulk(m));
        }
    }
    Ok(())
}

pub fn smove(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (src, dst, m) = (&a[1], &a[2], &a[3]);
    // Type-check the destination first, as Redis does.
    c.ks.set_members(c.db, dst)?;
    let Some(s) = c.ks.set_members(c.db, src)? else {
        c.out.int(0);
        return Ok(());
    };
    if src == dst {
        let has = s.contains(m);
        c.out.int(has as i64);
        return Ok(());
    }
    if s.remove(m).is_none() {
        c.out.int(0);
        return Ok(());
    }
    c.changed(src, notify::SET, "srem");
    c.ks.remove_if_empty(c.db, src);
    let d = c.ks.set_or_create(c.db, dst)?;
    // The destination only counts as changed (WATCH) when the member is new to it.
    let added = !d.contains(m);
    if added {
        d.insert_new(Str::new(m));
        c.changed(dst, notify::SET, "sadd");
    }
    c.out.int(1);
    Ok(())
}

enum SetOp {
    Inter,
    Union,
    Diff,
}

/// Computes the set operation over `keys` (missing keys are empty sets).
fn combine(c: &mut Ctx, keys: &[Bytes], op: SetOp) -> Result<Vec<Str>, CmdError> {
    let mut sets: Vec<Option<&Dict<Str>>> = Vec::with_capacity(keys.len());
    // Type-check every key first (lookup needs &mut), then borrow them all shared.
    for k in keys {
        c.ks.set_members(c.db, k)?;
    }
    let db = c.ks.db(c.db);
    for k in keys {
        sets.push(match db.dict().get(k).map(|e| &e.value) {
            Some(Value::Set(s)) => Some(s),
            _ => None,
        });
    }
    let result = match op {
        SetOp::Inter => {
            if sets.iter().any(|s| s.is_none()) {
                return Ok(Vec::new());
            }
            let mut sets: Vec<&Dict<Str>> = sets.into_iter().flatten().collect();
            sets.sort_by_key(|s| s.len());
            sets[0]
                .iter()
                .filter(|m| sets[1..].iter().all(|s| s.contains(m)))
                .cloned()
                .collect()
        }
        SetOp::Union => {
            let mut seen = std::collections::HashSet::new();
            sets.iter()
                .flatten()
                .flat_map(|s| s.iter())
                .filter(|m| seen.insert(m.as_bytes()))
                .cloned()
                .collect()
        }
        SetOp::Diff => match sets[0] {
            None => Vec::new(),
            Some(first) => first
                .iter()
                .filter(|m| !sets[1..].iter().flatten().any(|s| s.contains(m)))
                .cloned()
                .collect(),
        },
    };
    Ok(result)
}

fn reply_members(c: &mut Ctx, members: &[Str]) {
    c.out.set(members.len());
    members.iter().for_each(|m| c.out.bulk(m));
}

/// Stores the result of SINTERSTORE and friends (`event`), deleting `dst` when it is empty.
fn store(c: &mut Ctx, dst: &[u8], members: Vec<Str>, event: &'static str) {
    let n = members.len();
    if n == 0 {
        if c.ks.remove(c.db, dst).is_some() {
            c.notify(notify::GENERIC, "del", dst);
        }
    } else {
        let mut d = Dict::new();
        for m in members {
            d.insert_new(m);
        }
        c.ks.set(c.db, dst, Value::Set(Box::new(d)));
        c.notify(notify::SET, event, dst);
    }
    c.modified(dst);
    c.out.int(n as i64);
}

pub fn sinter(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = combine(c, &a[1..], SetOp::Inter)?;
    reply_members(c, &r);
    Ok(())
}
pub fn sunion(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = combine(c, &a[1..], SetOp::Union)?;
    reply_members(c, &r);
    Ok(())
}
pub fn sdiff(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = combine(c, &a[1..], SetOp::Diff)?;
    reply_members(c, &r);
    Ok(())
}
pub fn sinterstore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = combine(c, &a[2..], SetOp::Inter)?;
    store(c, &a[1], r, "sinterstore");
    Ok(())
}
pub fn sunionstore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = combine(c, &a[2..], SetOp::Union)?;
    store(c, &a[1], r, "sunionstore");
    Ok(())
}
pub fn sdiffstore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = combine(c, &a[2..], SetOp::Diff)?;
    store(c, &a[1], r, "sdiffstore");
    Ok(())
}

/// Parses `numkeys key... [LIMIT n]` as SINTERCARD and ZINTERCARD take them.
pub(crate) fn numkeys_and_limit(a: &[Bytes]) -> Result<(&[Bytes], usize), CmdError> {
    let n = int(&a[1]).map_err(|_| CmdError::other("ERR numkeys should be greater than 0"))?;
    if n <= 0 {
        return Err(CmdError::other("ERR numkeys should be greater than 0"));
    }
    let n = n as usize;
    if n > a.len() - 2 {
        return Err(CmdError::other(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys = &a[2..2 + n];
    let mut limit = 0;
    let rest = &a[2 + n..];
    match rest {
        [] => {}
        [opt, v] if is(opt, "limit") => {
            limit = int(v)
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CmdError::other("ERR LIMIT can't be negative"))?
                as usize;
        }
        _ => return Err(CmdError::Syntax),
    }
    Ok((keys, limit))
}

pub fn sintercard(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (keys, limit) = numkeys_and_limit(a)?;
    let r = combine(c, keys, SetOp::Inter)?;
    let n = if limit > 0 {
        r.len().min(limit)
    } else {
        r.len()
    };
    c.out.int(n as i64);
    Ok(())
}

pub fn sscan(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let o = parse_scan(a, 2, false)?;
    let Some(s) = c.ks.set_members(c.db, &a[1])? else {
        write_scan_reply(c, 0, &[]);
        return Ok(());
    };
    let mut found = Vec::new();
    let next = scan_dict(s, &o, |m| {
        if o.pattern.as_ref().is_none_or(|p| glob_match(p, m, false)) {
            found.push(m.clone());
        }
    });
    write_scan_reply(c, next, &found);
    Ok(())
}
