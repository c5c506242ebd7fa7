//! Generic key commands: DEL, EXISTS, TYPE, expiry, RENAME, KEYS, SCAN, database management.

use bytes::Bytes;

use crate::ctx::{int, is, lossy};
use crate::glob::glob_match;
use crate::value::ZSet;
use crate::{CmdError, CmdResult, Ctx, Dict, DictEntry, Str, Value, memory, notify};

pub fn del(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let mut n = 0;
    let unlink = a[0].eq_ignore_ascii_case(b"unlink");
    for key in &a[1..] {
        if c.ks.get(c.db, key).is_some() {
            let removed = c.ks.remove(c.db, key);
            if unlink
                && removed.is_some_and(|e| {
                    e.value.free_effort(&c.ks.encodings)
                        > crate::value::LAZYFREE_THRESHOLD_ALLOCATIONS
                })
            {
                c.ks.stats.lazyfreed_objects += 1;
            }
            c.changed(key, notify::GENERIC, "del");
            n += 1;
        }
    }
    c.out.int(n);
    Ok(())
}

pub fn exists(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n = a[1..].iter().filter(|k| c.ks.contains(c.db, k)).count();
    c.out.int(n as i64);
    Ok(())
}

pub fn type_(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let name =
        c.ks.get_untouched(c.db, &a[1])
            .map_or("none", |e| e.value.kind().name());
    c.out.simple(name);
    Ok(())
}

fn expire_generic(c: &mut Ctx, a: &[Bytes], unit_ms: i64, absolute: bool) -> CmdResult {
    let name = lossy(&a[0]).to_lowercase();
    let amount = int(&a[2])?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &a[3..] {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            return Err(CmdError::other(format!(
                "ERR Unsupported option {}",
                lossy(opt)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::other(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CmdError::other(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let invalid = || CmdError::other(format!("ERR invalid expire time in '{name}' command"));
    let ms = amount.checked_mul(unit_ms).ok_or_else(invalid)?;
    let at = if absolute {
        ms
    } else {
        ms.checked_add(c.now_ms() as i64).ok_or_else(invalid)?
    };
    let Some(entry) = c.ks.get(c.db, &a[1]) else {
        c.out.int(0);
        return Ok(());
    };
    let current = entry.expire_at_ms();
    let refuse = match current {
        Some(cur) => nx || (gt && at <= cur as i64) || (lt && at >= cur as i64),
        // No expiry counts as an infinite one.
        None => xx || gt,
    };
    if refuse {
        c.out.int(0);
        return Ok(());
    }
    if at <= c.now_ms() as i64 {
        c.ks.remove(c.db, &a[1]);
        c.changed(&a[1], notify::GENERIC, "del");
        c.propagate(&[b"DEL".as_slice(), &a[1]]);
    } else {
        c.ks.set_expiry(c.db, &a[1], at as u64);
        c.changed(&a[1], notify::GENERIC, "expire");
        c.propagate(&[
            b"PEXPIREAT".as_slice(),
            &a[1],
            itoa::Buffer::new().format(at).as_bytes(),
        ]);
    }
    c.out.int(1);
    Ok(())
}

pub fn expire(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    expire_generic(c, a, 1000, false)
}
pub fn pexpire(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    expire_generic(c, a, 1, false)
}
pub fn expireat(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    expire_generic(c, a, 1000, true)
}
pub fn pexpireat(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    expire_generic(c, a, 1, true)
}

/// TTL family: -2 no key, -1 no expiry, else `f(deadline, now)`.
fn ttl_generic(c: &mut Ctx, key: &[u8], f: fn(u64, u64) -> i64) -> CmdResult {
    let now = c.now_ms();
    let reply = match c.ks.get_untouched(c.db, key) {
        None => -2,
        Some(e) => e.expire_at_ms().map_or(-1, |at| f(at, now)),
    };
    c.out.int(reply);
    Ok(())
}

pub fn ttl(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    ttl_generic(c, &a[1], |at, now| {
        ((at.saturating_sub(now) + 500) / 1000) as i64
    })
}
pub fn pttl(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    ttl_generic(c, &a[1], |at, now| at.saturating_sub(now) as i64)
}
pub fn expiretime(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    ttl_generic(c, &a[1], |at, _| ((at + 500) / 1000) as i64)
}
pub fn pexpiretime(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    ttl_generic(c, &a[1], |at, _| at as i64)
}

pub fn persist(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let done = c.ks.get(c.db, &a[1]).is_some() && c.ks.persist(c.db, &a[1]);
    if done {
        c.changed(&a[1], notify::GENERIC, "persist");
    }
    c.out.int(done as i64);
    Ok(())
}

fn rename_generic(c: &mut Ctx, a: &[Bytes], nx: bool) -> CmdResult {
    let (src, dst) = (&a[1], &a[2]);
    if c.ks.get(c.db, src).is_none() {
        return Err(CmdError::NoSuchKey);
    }
    if src == dst {
        if nx {
            c.out.int(0)
        } else {
            c.out.ok()
        }
        return Ok(());
    }
    if nx && c.ks.contains(c.db, dst) {
        c.out.int(0);
        return Ok(());
    }
    let e = c.ks.remove(c.db, src).expect("checked above");
    let at = e.expire_at_ms();
    c.ks.insert_entry(c.db, Str::new(dst), e.value, at);
    c.changed(src, notify::GENERIC, "rename_from");
    c.changed(dst, notify::GENERIC, "rename_to");
    if nx {
        c.out.int(1)
    } else {
        c.out.ok()
    }
    Ok(())
}

pub fn rename(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    rename_generic(c, a, false)
}
pub fn renamenx(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    rename_generic(c, a, true)
}

/// The integers whose objects Redis shares (`OBJ_SHARED_INTEGERS`).
const SHARED_INTEGERS: i64 = 10_000;

pub fn keys(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let now = c.now_ms();
    let all = a[1].as_ref() == b"*";
    let found: Vec<Str> =
        c.ks.db(c.db)
            .entries()
            .filter(|e| e.expire_at_ms().is_none_or(|at| at > now))
            .filter(|e| all || glob_match(&a[1], &e.key, false))
            .map(|e| e.key.clone())
            .collect();
    c.out.array(found.len());
    for k in &found {
        c.out.bulk(k);
    }
    Ok(())
}

/// Options shared by SCAN, SSCAN, HSCAN and ZSCAN.
pub(crate) struct ScanOpts {
    pub cursor: u64,
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub kind: Option<Bytes>,
}

pub(crate) fn parse_scan(
    a: &[Bytes],
    cursor_at: usize,
    allow_type: bool,
) -> Result<ScanOpts, CmdError> {
    let cursor = std::str::from_utf8(&a[cursor_at])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CmdError::other("ERR invalid cursor"))?;
    let mut o = ScanOpts {
        cursor,
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = cursor_at + 1;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(CmdError::Syntax);
        }
        if is(&a[i], "match") {
            o.pattern = Some(a[i + 1].clone()).filter(|p| p.as_ref() != b"*");
        } else if is(&a[i], "count") {
            let n = int(&a[i + 1])?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            o.count = n as usize;
        } else if allow_type && is(&a[i], "type") {
            o.kind = Some(a[i + 1].clone());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok(o)
}

/// Runs a cursor scan over `dict`, visiting about `count` elements; returns the next cursor.
pub(crate) fn scan_dict<T: DictEntry>(
    dict: &Dict<T>,
    o: &ScanOpts,
    mut each: impl FnMut(&T),
) -> u64 {
    let mut cursor = o.cursor;
    let mut visited = 0;
    let mut iterations = o.count.saturating_mul(10);
    loop {
        cursor = dict.scan(cursor, |item| {
            visited += 1;
            each(item)
        });
        iterations -= 1;
        if cursor == 0 || visited >= o.count || iterations == 0 {
            return cursor;
        }
    }
}

pub(crate) fn write_scan_reply(c: &mut Ctx, cursor: u64, items: &[Str]) {
    c.out.array(2);
    c.out.bulk(itoa::Buffer::new().format(cursor).as_bytes());
    c.out.array(items.len());
    for it in items {
        c.out.bulk(it);
    }
}

pub fn scan(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let o = parse_scan(a, 1, true)?;
    let now = c.now_ms();
    let mut found = Vec::new();
    let next = scan_dict(c.ks.db(c.db).dict(), &o, |e| {
        if e.expire_at_ms().is_some_and(|at| at <= now) {
            return;
        }
        if let Some(p) = &o.pattern
            && !glob_match(p, &e.key, false)
        {
            return;
        }
        if let Some(t) = &o.kind
            && !t.eq_ignore_ascii_case(e.value.kind().name().as_bytes())
        {
            return;
        }
        found.push(e.key.clone());
    });
    write_scan_reply(c, next, &found);
    Ok(())
}

pub fn randomkey(c: &mut Ctx, _a: &[Bytes]) -> CmdResult {
    match c.ks.random_key(c.db) {
        Some(k) => c.out.bulk(&k),
        None => c.out.null(),
    }
    Ok(())
}

pub fn dbsize(c: &mut Ctx, _a: &[Bytes]) -> CmdResult {
    c.out.int(c.ks.db(c.db).len() as i64);
    Ok(())
}

fn flush_mode(a: &[Bytes]) -> CmdResult {
    match a.get(1) {
        None => Ok(()),
        Some(m) if a.len() == 2 && (is(m, "async") || is(m, "sync")) => Ok(()),
        Some(_) => Err(CmdError::Syntax),
    }
}

pub fn flushdb(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    flush_mode(a)?;
    c.ks.flush_db(c.db);
    c.ks.dirty += 1;
    c.out.ok();
    Ok(())
}

pub fn flushall(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    flush_mode(a)?;
    c.ks.flush_all();
    c.ks.dirty += 1;
    c.out.ok();
    Ok(())
}

pub(crate) fn db_index(c: &Ctx, arg: &[u8], invalid: &str) -> Result<usize, CmdError> {
    let n = int(arg).map_err(|_| CmdError::other(invalid))?;
    if n < 0 || n as usize >= c.ks.db_count() {
        return Err(CmdError::DbIndexOutOfRange);
    }
    Ok(n as usize)
}

pub fn swapdb(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let x = db_index(c, &a[1], "ERR invalid first DB index")?;
    let y = db_index(c, &a[2], "ERR invalid second DB index")?;
    if x != y {
        c.ks.swap_db(x, y);
        c.ks.dirty += 1;
    }
    c.out.ok();
    Ok(())
}

pub fn move_(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let dst = db_index(c, &a[2], "ERR value is not an integer or out of range")?;
    if dst == c.db {
        return Err(CmdError::other(
            "ERR source and destination objects are the same",
        ));
    }
    if c.ks.get(c.db, &a[1]).is_none() || c.ks.contains(dst, &a[1]) {
        c.out.int(0);
        return Ok(());
    }
    let e = c.ks.remove(c.db, &a[1]).expect("checked above");
    let at = e.expire_at_ms();
    c.ks.insert_entry(dst, e.key, e.value, at);
    c.changed(&a[1], notify::GENERIC, "move_from");
    c.ks.touch(dst, &a[1]);
    c.ks.notify(notify::GENERIC, "move_to", dst, &a[1]);
    c.out.int(1);
    Ok(())
}

/// A deep copy of a value (COPY).
pub fn clone_value(v: &Value) -> Value {
    fn dict<T: DictEntry + Clone>(d: &Dict<T>) -> Dict<T> {
        let mut out = Dict::new();
        for item in d.iter() {
            out.insert_new(item.clone());
        }
        out
    }
    match v {
        Value::Str(s) => Value::Str(s.clone()),
        Value::List(l) => Value::List(l.clone()),
        Value::Hash(h) => Value::Hash(Box::new(dict(h))),
        Value::Set(s) => Value::Set(Box::new(dict(s))),
        Value::ZSet(z) => {
            let mut out = ZSet::default();
            for (m, s) in z.iter() {
                out.insert(m, s);
            }
            Value::ZSet(Box::new(out))
        }
        Value::Stream(s) => Value::Stream(s.clone()),
    }
}

pub fn copy(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let mut dst_db = c.db;
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if is(&a[i], "replace") {
            replace = true;
            i += 1;
        } else if is(&a[i], "db") && i + 1 < a.len() {
            dst_db = db_index(c, &a[i + 1], "ERR value is not an integer or out of range")?;
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if a[1] == a[2] && dst_db == c.db {
        return Err(CmdError::other(
            "ERR source and destination objects are the same",
        ));
    }
    let Some(src) = c.ks.get(c.db, &a[1]) else {
        c.out.int(0);
        return Ok(());
    };
    let (value, at) = (clone_value(&src.value), src.expire_at_ms());
    if c.ks.contains(dst_db, &a[2]) && !replace {
        c.out.int(0);
        return Ok(());
    }
    c.ks.insert_entry(dst_db, Str::new(&a[2]), value, at);
    c.ks.dirty += 1;
    c.ks.touch(dst_db, &a[2]);
    c.ks.notify(notify::GENERIC, "copy_to", dst_db, &a[2]);
    c.out.int(1);
    Ok(())
}

pub fn touch(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    exists(c, a)
}

pub fn object(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    crate::ctx::check_subcommand_arity(
        "object",
        a,
        &[
            ("encoding", 3),
            ("refcount", 3),
            ("idletime", 3),
            ("freq", 3),
            ("help", 2),
        ],
    )?;
    let sub = lossy(&a[1]).to_lowercase();
    if sub == "help" {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "IDLETIME <key>",
            "REFCOUNT <key>",
            "HELP",
            "    Prints this help.",
        ];
        c.out.array(lines.len());
        lines.iter().for_each(|l| c.out.simple(l));
        return Ok(());
    }
    if a.len() != 3 || !["encoding", "refcount", "idletime", "freq"].contains(&sub.as_str()) {
        return Err(CmdError::UnknownSubcommand {
            cmd: "OBJECT".into(),
            sub: lossy(&a[1]),
        });
    }
    let limits = c.ks.encodings;
    let ev = c.ks.eviction;
    let now = c.now_ms();
    let Some(e) = c.ks.get_untouched(c.db, &a[2]) else {
        c.out.null();
        return Ok(());
    };
    match sub.as_str() {
        "encoding" => {
            let enc = e.value.encoding(&limits);
            c.out.bulk(enc.as_bytes());
        }
        // Redis shares the objects of the integers 0..9999 (refcount INT_MAX) unless an
        // LRU/LFU policy needs each key's own.
        "refcount" => {
            let shared = !ev.policy.tracks_access()
                && matches!(&e.value, Value::Str(v)
                    if resp::parse_i64(v).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n)));
            c.out.int(if shared { i32::MAX as i64 } else { 1 })
        }
        "idletime" if ev.policy.is_lfu() => {
            return Err(CmdError::other(
                "ERR An LRU maxmemory policy is not selected, access time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        "idletime" => {
            let idle_ms = e.access().map_or(0, |a| memory::lru_idle_ms(a, now));
            c.out.int((idle_ms / 1000) as i64)
        }
        _ if !ev.policy.is_lfu() => {
            return Err(CmdError::other(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        _ => {
            let freq = e
                .access()
                .map_or(0, |a| memory::lfu_decayed(a, now, ev.lfu_decay_time_min));
            c.out.int(freq as i64)
        }
    }
    Ok(())
}
