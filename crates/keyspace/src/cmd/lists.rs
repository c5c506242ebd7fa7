//! List commands, including the blocking pops.
//!
//! A blocking command that finds nothing sets [`Ctx::block`] and writes no reply; the node
//! parks the connection and runs the command again when one of the keys is written.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::ctx::{clamp_range, int, is, uint};
use crate::{Block, CmdError, CmdResult, Ctx, Str, notify};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Left,
    Right,
}

fn end_arg(arg: &[u8]) -> Result<End, CmdError> {
    if is(arg, "left") {
        Ok(End::Left)
    } else if is(arg, "right") {
        Ok(End::Right)
    } else {
        Err(CmdError::Syntax)
    }
}

fn pop(l: &mut VecDeque<Str>, end: End) -> Option<Str> {
    match end {
        End::Left => l.pop_front(),
        End::Right => l.pop_back(),
    }
}

/// The keyspace events of popping and pushing at `end`.
fn pop_event(end: End) -> &'static str {
    match end {
        End::Left => "lpop",
        End::Right => "rpop",
    }
}

fn push_event(end: End) -> &'static str {
    match end {
        End::Left => "lpush",
        End::Right => "rpush",
    }
}

fn push(l: &mut VecDeque<Str>, end: End, v: Str) {
    match end {
        End::Left => l.push_front(v),
        End::Right => l.push_back(v),
    }
}

fn push_generic(c: &mut Ctx, a: &[Bytes], end: End, only_existing: bool) -> CmdResult {
    let l = if only_existing {
        match c.ks.list(c.db, &a[1])? {
            Some(l) => l,
            None => {
                c.out.int(0);
                return Ok(());
            }
        }
    } else {
        c.ks.list_or_create(c.db, &a[1])?
    };
    for v in &a[2..] {
        push(l, end, Str::new(v));
    }
    let len = l.len();
    c.changed(&a[1], notify::LIST, push_event(end));
    c.out.int(len as i64);
    Ok(())
}

pub fn lpush(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    push_generic(c, a, End::Left, false)
}
pub fn rpush(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    push_generic(c, a, End::Right, false)
}
pub fn lpushx(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    push_generic(c, a, End::Left, true)
}
pub fn rpushx(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    push_generic(c, a, End::Right, true)
}

fn pop_generic(c: &mut Ctx, a: &[Bytes], end: End) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::WrongArity(
            crate::ctx::lossy(&a[0]).to_lowercase(),
        ));
    }
    let count = a.get(2).map(|n| uint(n)).transpose()?;
    let Some(l) = c.ks.list(c.db, &a[1])? else {
        if count.is_some() {
            c.out.null_array()
        } else {
            c.out.null()
        }
        return Ok(());
    };
    match count {
        None => {
            let v = pop(l, end).expect("lists are never empty");
            c.out.bulk(&v);
        }
        Some(n) => {
            let n = (n as usize).min(l.len());
            c.out.array(n);
            for _ in 0..n {
                let v = pop(l, end).expect("within length");
                c.out.bulk(&v);
            }
        }
    }
    c.changed(&a[1], notify::LIST, pop_event(end));
    c.ks.remove_if_empty(c.db, &a[1]);
    Ok(())
}

pub fn lpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    pop_generic(c, a, End::Left)
}
pub fn rpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    pop_generic(c, a, End::Right)
}

pub fn llen(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n = c.ks.list(c.db, &a[1])?.map_or(0, |l| l.len());
    c.out.int(n as i64);
    Ok(())
}

fn resolve_index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

pub fn lindex(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let i = int(&a[2])?;
    match c
        .ks
        .list(c.db, &a[1])?
        .and_then(|l| resolve_index(i, l.len()).map(|i| &l[i]))
    {
        Some(v) => c.out.bulk(v),
        None => c.out.null(),
    }
    Ok(())
}

pub fn lset(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let i = int(&a[2])?;
    let l = c.ks.list(c.db, &a[1])?.ok_or(CmdError::NoSuchKey)?;
    let i = resolve_index(i, l.len()).ok_or(CmdError::IndexOutOfRange)?;
    l[i] = Str::new(&a[3]);
    c.changed(&a[1], notify::LIST, "lset");
    c.out.ok();
    Ok(())
}

pub fn lrange(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (start, end) = (int(&a[2])?, int(&a[3])?);
    let Some(l) = c.ks.list(c.db, &a[1])? else {
        c.out.array(0);
        return Ok(());
    };
    match clamp_range(start, end, l.len()) {
        None => c.out.array(0),
        Some((from, to)) => {
            c.out.array(to - from + 1);
            for v in l.range(from..=to) {
                c.out.bulk(v);
            }
        }
    }
    Ok(())
}

pub fn ltrim(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (start, end) = (int(&a[2])?, int(&a[3])?);
    if let Some(l) = c.ks.list(c.db, &a[1])? {
        match clamp_range(start, end, l.len()) {
            None => l.clear(),
            Some((from, to)) => {
                l.truncate(to + 1);
                l.drain(..from);
            }
        }
        c.changed(&a[1], notify::LIST, "ltrim");
        c.ks.remove_if_empty(c.db, &a[1]);
    }
    c.out.ok();
    Ok(())
}

pub fn lrem(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let count = int(&a[2])?;
    let Some(l) = c.ks.list(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let target = &a[3];
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    if count >= 0 {
        let mut i = 0;
        while i < l.len() && removed < limit {
            if l[i].as_bytes() == target.as_ref() {
                l.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
    } else {
        let mut i = l.len();
        while i > 0 && removed < limit {
            i -= 1;
            if l[i].as_bytes() == target.as_ref() {
                l.remove(i);
                removed += 1;
            }
        }
    }
    if removed > 0 {
        c.changed(&a[1], notify::LIST, "lrem");
        c.ks.remove_if_empty(c.db, &a[1]);
    }
    c.out.int(removed as i64);
    Ok(())
}

pub fn linsert(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let after = if is(&a[2], "after") {
        true
    } else if is(&a[2], "before") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let Some(l) = c.ks.list(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    match l.iter().position(|v| v.as_bytes() == a[3].as_ref()) {
        None => c.out.int(-1),
        Some(i) => {
            l.insert(if after { i + 1 } else { i }, Str::new(&a[4]));
            let len = l.len();
            c.changed(&a[1], notify::LIST, "linsert");
            c.out.int(len as i64);
        }
    }
    Ok(())
}

pub fn lpos(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < a.len() {
        let Some(v) = a.get(i + 1) else {
            return Err(CmdError::Syntax);
        };
        if is(&a[i], "rank") {
            rank = int(v)?;
            if rank == 0 || rank == i64::MIN {
                return Err(CmdError::other(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(&a[i], "count") {
            count = Some(
                int(v)
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| CmdError::other("ERR COUNT can't be negative"))?,
            );
        } else if is(&a[i], "maxlen") {
            maxlen = int(v)
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| CmdError::other("ERR MAXLEN can't be negative"))?
                as usize;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let Some(l) = c.ks.list(c.db, &a[1])? else {
        if count.is_some() {
            c.out.array(0)
        } else {
            c.out.null()
        }
        return Ok(());
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n as usize,
        None => 1,
    };
    let len = l.len();
    let scan_max = if maxlen == 0 { len } else { maxlen.min(len) };
    let mut skip = rank.unsigned_abs() as usize - 1;
    let mut found = Vec::new();
    for step in 0..scan_max {
        let idx = if rank > 0 { step } else { len - 1 - step };
        if l[idx].as_bytes() == a[2].as_ref() {
            if skip > 0 {
                skip -= 1;
            } else {
                found.push(idx as i64);
                if found.len() == want {
                    break;
                }
            }
        }
    }
    match count {
        Some(_) => {
            c.out.array(found.len());
            found.iter().for_each(|&i| c.out.int(i));
        }
        None => match found.first() {
            Some(&i) => c.out.int(i),
            None => c.out.null(),
        },
    }
    Ok(())
}

/// Moves one element between lists; returns it, or None when `src` is empty.
fn move_element(
    c: &mut Ctx,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
) -> Result<Option<Str>, CmdError> {
    // As Redis: a missing source answers (or blocks) whatever the destination holds; the
    // destination is type-checked before popping, so a wrong type loses nothing.
    if c.ks.list(c.db, src)?.is_none() {
        return Ok(None);
    }
    c.ks.list(c.db, dst)?;
    let Some(l) = c.ks.list(c.db, src)? else {
        return Ok(None);
    };
    let v = pop(l, from).expect("lists are never empty");
    // Redis's order of events: the push, then the pop, then the source's deletion.
    let d = c.ks.list_or_create(c.db, dst)?;
    push(d, to, v.clone());
    c.changed(dst, notify::LIST, push_event(to));
    c.changed(src, notify::LIST, pop_event(from));
    c.ks.remove_if_empty(c.db, src);
    Ok(Some(v))
}

pub fn lmove(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (from, to) = (end_arg(&a[3])?, end_arg(&a[4])?);
    match move_element(c, &a[1], &a[2], from, to)? {
        Some(v) => c.out.bulk(&v),
        None => c.out.null(),
    }
    Ok(())
}

pub fn rpoplpush(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    match move_element(c, &a[1], &a[2], End::Right, End::Left)? {
        Some(v) => c.out.bulk(&v),
        None => c.out.null(),
    }
    Ok(())
}

/// Parses a blocking timeout (seconds, fractional allowed) into an absolute deadline.
pub(crate) fn timeout_arg(c: &Ctx, arg: &[u8]) -> Result<Option<u64>, CmdError> {
    let secs = resp::parse_f64(arg)
        .filter(|s| s.is_finite())
        .ok_or_else(|| CmdError::other("ERR timeout is not a float or out of range"))?;
    if secs < 0.0 {
        return Err(CmdError::other("ERR timeout is negative"));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    let ms = (secs * 1000.0).ceil();
    if ms > (i64::MAX / 2) as f64 {
        return Err(CmdError::other("ERR timeout is out of range"));
    }
    Ok(Some(c.now_ms() + ms as u64))
}

/// Either answers "timed out" (inside MULTI) or asks the node to block on `keys`.
pub(crate) fn block_or_null(c: &mut Ctx, keys: &[Bytes], deadline_ms: Option<u64>) {
    if c.in_multi {
        c.out.null_array();
    } else {
        c.block = Some(Block {
            keys: keys.to_vec(),
            deadline_ms,
            args: None,
        });
    }
}

fn bpop_generic(c: &mut Ctx, a: &[Bytes], end: End) -> CmdResult {
    let deadline = timeout_arg(c, &a[a.len() - 1])?;
    let keys = &a[1..a.len() - 1];
    for key in keys {
        if let Some(l) = c.ks.list(c.db, key)? {
            let v = pop(l, end).expect("lists are never empty");
            c.changed(key, notify::LIST, pop_event(end));
            c.ks.remove_if_empty(c.db, key);
            let name: &[u8] = if end == End::Left { b"LPOP" } else { b"RPOP" };
            c.propagate(&[name, key]);
            c.out.array(2);
            c.out.bulk(key);
            c.out.bulk(&v);
            return Ok(());
        }
    }
    block_or_null(c, keys, deadline);
    Ok(())
}

pub fn blpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    bpop_generic(c, a, End::Left)
}
pub fn brpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    bpop_generic(c, a, End::Right)
}

pub fn blmove(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (from, to) = (end_arg(&a[3])?, end_arg(&a[4])?);
    let deadline = timeout_arg(c, &a[5])?;
    match move_element(c, &a[1], &a[2], from, to)? {
        Some(v) => {
            c.propagate(&[b"LMOVE".as_slice(), &a[1], &a[2], &a[3], &a[4]]);
            c.out.bulk(&v)
        }
        None => block_or_null(c, &a[1..2], deadline),
    }
    Ok(())
}

pub fn brpoplpush(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let deadline = timeout_arg(c, &a[3])?;
    match move_element(c, &a[1], &a[2], End::Right, End::Left)? {
        Some(v) => {
            c.propagate(&[b"RPOPLPUSH".as_slice(), &a[1], &a[2]]);
            c.out.bulk(&v)
        }
        None => block_or_null(c, &a[1..2], deadline),
    }
    Ok(())
}

/// LMPOP/BLMPOP arguments after the optional timeout: `numkeys key... LEFT|RIGHT [COUNT n]`.
fn mpop_args(a: &[Bytes]) -> Result<(&[Bytes], End, usize), CmdError> {
    let n = int(&a[0])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CmdError::other("ERR numkeys should be greater than 0"))?
        as usize;
    if a.len() < n + 2 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[1..1 + n];
    let end = end_arg(&a[1 + n])?;
    let count = match &a[2 + n..] {
        [] => 1,
        [opt, v] if is(opt, "count") => int(v)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| CmdError::other("ERR count should be greater than 0"))?
            as usize,
        _ => return Err(CmdError::Syntax),
    };
    Ok((keys, end, count))
}

/// Pops up to `count` from the first non-empty list; returns whether it found one.
fn mpop(c: &mut Ctx, keys: &[Bytes], end: End, count: usize) -> Result<bool, CmdError> {
    for key in keys {
        if let Some(l) = c.ks.list(c.db, key)? {
            let n = count.min(l.len());
            let popped: Vec<Str> = (0..n).filter_map(|_| pop(l, end)).collect();
            c.changed(key, notify::LIST, pop_event(end));
            c.ks.remove_if_empty(c.db, key);
            c.out.array(2);
            c.out.bulk(key);
            c.out.array(popped.len());
            popped.iter().for_each(|v| c.out.bulk(v));
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn lmpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (keys, end, count) = mpop_args(&a[1..])?;
    if !mpop(c, keys, end, count)? {
        c.out.null_array();
    }
    Ok(())
}

pub fn blmpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let deadline = timeout_arg(c, &a[1])?;
    let (keys, end, count) = mpop_args(&a[2..])?;
    if mpop(c, keys, end, count)? {
        let mut lmpop: Vec<&[u8]> = vec![b"LMPOP"];
        lmpop.extend(a[2..].iter().map(|x| x.as_ref()));
        c.propagate(&lmpop);
    } else {
        block_or_null(c, keys, deadline);
    }
    Ok(())
}
