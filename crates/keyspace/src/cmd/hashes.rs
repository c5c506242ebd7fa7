//! Hash commands.

use bytes::Bytes;

use super::keys::{parse_scan, scan_dict};
use crate::ctx::{float, float_to_str, int, is};
use crate::glob::glob_match;
use crate::value::Field;
use crate::{CmdError, CmdResult, Ctx, Str, notify};

pub fn hset(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    if !a.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity(
            crate::ctx::lossy(&a[0]).to_lowercase(),
        ));
    }
    let h = c.ks.hash_or_create(c.db, &a[1])?;
    let mut added = 0;
    for fv in a[2..].chunks(2) {
        let field = Field {
            name: Str::new(&fv[0]),
            value: Str::new(&fv[1]),
        };
        if h.insert(field).is_none() {
            added += 1;
        }
    }
    c.changed(&a[1], notify::HASH, "hset");
    if crate::ctx::is(&a[0], "hmset") {
        c.out.ok()
    } else {
        c.out.int(added)
    }
    Ok(())
}

pub fn hsetnx(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let h = c.ks.hash_or_create(c.db, &a[1])?;
    if h.contains(&a[2]) {
        c.out.int(0);
    } else {
        h.insert_new(Field {
            name: Str::new(&a[2]),
            value: Str::new(&a[3]),
        });
        c.changed(&a[1], notify::HASH, "hset");
        c.out.int(1);
    }
    Ok(())
}

pub fn hget(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    match c.ks.hash(c.db, &a[1])?.and_then(|h| h.get(&a[2])) {
        Some(f) => c.out.bulk(&f.value),
        None => c.out.null(),
    }
    Ok(())
}

pub fn hmget(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let h = c.ks.hash(c.db, &a[1])?;
    c.out.array(a.len() - 2);
    for name in &a[2..] {
        match h.as_ref().and_then(|h| h.get(name)) {
            Some(f) => c.out.bulk(&f.value),
            None => c.out.null(),
        }
    }
    Ok(())
}

pub fn hdel(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let Some(h) = c.ks.hash(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let n = a[2..].iter().filter(|f| h.remove(f).is_some()).count();
    if n > 0 {
        c.changed(&a[1], notify::HASH, "hdel");
        c.ks.remove_if_empty(c.db, &a[1]);
    }
    c.out.int(n as i64);
    Ok(())
}

pub fn hlen(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n = c.ks.hash(c.db, &a[1])?.map_or(0, |h| h.len());
    c.out.int(n as i64);
    Ok(())
}

pub fn hstrlen(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n =
        c.ks.hash(c.db, &a[1])?
            .and_then(|h| h.get(&a[2]))
            .map_or(0, |f| f.value.len());
    c.out.int(n as i64);
    Ok(())
}

pub fn hexists(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let yes = c.ks.hash(c.db, &a[1])?.is_some_and(|h| h.contains(&a[2]));
    c.out.int(yes as i64);
    Ok(())
}

fn hgetall_generic(c: &mut Ctx, a: &[Bytes], names: bool, values: bool) -> CmdResult {
    let Some(h) = c.ks.hash(c.db, &a[1])? else {
        if names && values {
            c.out.map(0)
        } else {
            c.out.array(0)
        }
        return Ok(());
    };
    if names && values {
        c.out.map(h.len());
    } else {
        c.out.array(h.len());
    }
    for f in h.iter() {
        if names {
            c.out.bulk(&f.name);
        }
        if values {
            c.out.bulk(&f.value);
        }
    }
    Ok(())
}

pub fn hkeys(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    hgetall_generic(c, a, true, false)
}
pub fn hvals(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    hgetall_generic(c, a, false, true)
}
pub fn hgetall(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    hgetall_generic(c, a, true, true)
}

pub fn hincrby(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let delta = int(&a[3])?;
    let h = c.ks.hash_or_create(c.db, &a[1])?;
    let current = match h.get(&a[2]) {
        Some(f) => resp::parse_i64(&f.value)
            .ok_or_else(|| CmdError::other("ERR hash value is not an integer"))?,
        None => 0,
    };
    let n = current.checked_add(delta).ok_or(CmdError::Overflow)?;
    h.insert(Field {
        name: Str::new(&a[2]),
        value: Str::from_i64(n),
    });
    c.changed(&a[1], notify::HASH, "hincrby");
    c.out.int(n);
    Ok(())
}

pub fn hincrbyfloat(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let delta = float(&a[3])?;
    if !delta.is_finite() {
        return Err(CmdError::other("ERR value is NaN or Infinity"));
    }
    let h = c.ks.hash_or_create(c.db, &a[1])?;
    let current = match h.get(&a[2]) {
        Some(f) => resp::parse_f64(&f.value)
            .ok_or_else(|| CmdError::other("ERR hash value is not a float"))?,
        None => 0.0,
    };
    let n = current + delta;
    if !n.is_finite() {
        c.ks.remove_if_empty(c.db, &a[1]);
        return Err(CmdError::other(
            "ERR increment would produce NaN or Infinity",
        ));
    }
    let text = float_to_str(n);
    h.insert(Field {
        name: Str::new(&a[2]),
        value: Str::new(text.as_bytes()),
    });
    c.changed(&a[1], notify::HASH, "hincrbyfloat");
    c.propagate(&[b"HSET".as_slice(), &a[1], &a[2], text.as_bytes()]);
    c.out.bulk(text.as_bytes());
    Ok(())
}

pub fn hrandfield(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let count = a
        .get(2)
        .map(|n| super::sets::random_count(n, false))
        .transpose()?;
    let with_values = match a.get(3) {
        None => false,
        Some(o) if is(o, "withvalues") && a.len() == 4 => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    if with_values {
        super::sets::random_count(&a[2], true)?;
    }
    let h = c.ks.hash(c.db, &a[1])?;
    let Some(count) = count else {
        match h.and_then(|h| h.random()) {
            Some(f) => c.out.bulk(&f.name),
            None => c.out.null(),
        }
        return Ok(());
    };
    if count < 0 {
        let resp3_pairs = with_values && c.out.protocol == resp::Protocol::Resp3;
        let per_pick = if with_values && !resp3_pairs { 2 } else { 1 };
        super::sets::write_repeated(
            c.out,
            h.as_deref(),
            count.unsigned_abs(),
            per_pick,
            |out, f: &Field| {
                if resp3_pairs {
                    out.array(2);
                }
                out.bulk(&f.name);
                if with_values {
                    out.bulk(&f.value);
                }
            },
        );
        return Ok(());
    }
    let picked: Vec<Field> = match h {
        None => Vec::new(),
        Some(h) => super::sets::sample(h, count).into_iter().cloned().collect(),
    };
    if with_values && c.out.protocol == resp::Protocol::Resp3 {
        c.out.array(picked.len());
        for f in &picked {
            c.out.array(2);
            c.out.bulk(&f.name);
            c.out.bulk(&f.value);
        }
    } else {
        c.out.array(picked.len() * if with_values { 2 } else { 1 });
        for f in &picked {
            c.out.bulk(&f.name);
            if with_values {
                c.out.bulk(&f.value);
            }
        }
    }
    Ok(())
}

pub fn hscan(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let o = parse_scan(a, 2, false)?;
    let Some(h) = c.ks.hash(c.db, &a[1])? else {
        super::keys::write_scan_reply(c, 0, &[]);
        return Ok(());
    };
    let mut found = Vec::new();
    let next = scan_dict(h, &o, |f| {
        if o.pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, &f.name, false))
        {
            found.push(f.name.clone());
            found.push(f.value.clone());
        }
    });
    super::keys::write_scan_reply(c, next, &found);
    Ok(())
}
