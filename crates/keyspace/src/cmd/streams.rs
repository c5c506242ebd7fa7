//! Stream commands: XADD and the reads, consumer groups and their pending entries, XINFO.
//!
//! Replies, errors and what reaches the feed follow Redis 7.0: XADD logs the ID it chose
//! (and `=` with the exact bound for approximate trims), XREADGROUP, XCLAIM and XAUTOCLAIM
//! log one idempotent XCLAIM per entry delivered or claimed (plus XGROUP SETID where the
//! group moved without one), so a replay never depends on the clock or on what was read.

use bytes::Bytes;

use crate::ctx::{int, is, lossy};
use crate::notify::STREAM;
use crate::stream::{Consumer, Group, Nack, Stream, StreamEntry, StreamId, Trim};
use crate::{Block, CmdError, CmdResult, Ctx, LISTPACK_MAX_BYTES, Str};

fn invalid_id() -> CmdError {
    CmdError::other("ERR Invalid stream ID specified as stream command argument")
}

/// Redis's `string2ull`: a plain unsigned decimal.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parses `ms[-seq]`, `-` and `+` (not in `strict` mode). A missing sequence is
/// `missing_seq`; with `star_seq`, `ms-*` parses and reports the sequence as not given.
fn parse_id_full(
    arg: &[u8],
    missing_seq: u64,
    strict: bool,
    star_seq: bool,
) -> Result<(StreamId, bool), CmdError> {
    if arg.len() > 127 {
        return Err(invalid_id());
    }
    match arg {
        b"-" | b"+" if strict => return Err(invalid_id()),
        b"-" => return Ok((StreamId::MIN, true)),
        b"+" => return Ok((StreamId::MAX, true)),
        _ => {}
    }
    let (ms, seq) = match arg.iter().position(|&b| b == b'-') {
        Some(i) => (&arg[..i], Some(&arg[i + 1..])),
        None => (arg, None),
    };
    let ms = parse_u64(ms).ok_or_else(invalid_id)?;
    match seq {
        None => Ok((StreamId::new(ms, missing_seq), true)),
        Some(b"*") if star_seq => Ok((StreamId::new(ms, 0), false)),
        Some(s) => Ok((
            StreamId::new(ms, parse_u64(s).ok_or_else(invalid_id)?),
            true,
        )),
    }
}

fn parse_id(arg: &[u8], missing_seq: u64) -> Result<StreamId, CmdError> {
    parse_id_full(arg, missing_seq, false, false).map(|(id, _)| id)
}

fn parse_strict_id(arg: &[u8]) -> Result<StreamId, CmdError> {
    parse_id_full(arg, 0, true, false).map(|(id, _)| id)
}

/// A range bound: `(id` excludes it.
fn parse_interval(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), CmdError> {
    if arg.len() > 1 && arg[0] == b'(' {
        Ok((parse_id_full(&arg[1..], missing_seq, true, false)?.0, true))
    } else {
        Ok((parse_id(arg, missing_seq)?, false))
    }
}

fn start_bound(arg: &[u8]) -> Result<StreamId, CmdError> {
    match parse_interval(arg, 0)? {
        (id, true) => id
            .next()
            .ok_or_else(|| CmdError::other("ERR invalid start ID for the interval")),
        (id, false) => Ok(id),
    }
}

fn end_bound(arg: &[u8]) -> Result<StreamId, CmdError> {
    match parse_interval(arg, u64::MAX)? {
        (id, true) => id
            .prev()
            .ok_or_else(|| CmdError::other("ERR invalid end ID for the interval")),
        (id, false) => Ok(id),
    }
}

fn id_bytes(id: StreamId) -> Bytes {
    Bytes::from(id.to_string())
}

fn reply_id(c: &mut Ctx, id: StreamId) {
    c.out.bulk(id.to_string().as_bytes());
}

fn reply_entry(out: &mut resp::ReplyBuf, e: &StreamEntry) {
    out.array(2);
    out.bulk(e.id.to_string().as_bytes());
    out.array(e.fields.len());
    e.fields.iter().for_each(|f| out.bulk(f));
}

fn reply_entries(out: &mut resp::ReplyBuf, entries: &[&StreamEntry]) {
    out.array(entries.len());
    entries.iter().for_each(|e| reply_entry(out, e));
}

fn nogroup(key: &[u8], group: &[u8]) -> CmdError {
    CmdError::other(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        lossy(key),
        lossy(group)
    ))
}

fn subcommand_syntax(a: &[Bytes]) -> CmdError {
    CmdError::other(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        lossy(&a[1]),
        lossy(&a[0]).to_uppercase()
    ))
}

fn help(c: &mut Ctx, cmd: &str, lines: &[&str]) {
    c.out.array(lines.len() + 3);
    c.out.simple(&format!(
        "{cmd} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ));
    lines.iter().for_each(|l| c.out.simple(l));
    c.out.simple("HELP");
    c.out.simple("    Prints this help.");
}

/// XADD/XTRIM options.
struct TrimArgs {
    trim: Option<Trim>,
    /// Index of the MAXLEN/MINID value, for rewriting the logged command.
    trim_arg: usize,
    approx: bool,
    limit: u64,
    no_mkstream: bool,
    /// XADD's ID: None for `*`; the flag says whether the sequence was given.
    id: Option<(StreamId, bool)>,
    id_pos: usize,
}

fn parse_trim_args(c: &Ctx, a: &[Bytes], xadd: bool) -> Result<TrimArgs, CmdError> {
    let mut t = TrimArgs {
        trim: None,
        trim_arg: 0,
        approx: false,
        limit: 0,
        no_mkstream: false,
        id: None,
        id_pos: 0,
    };
    let mut limit_given = false;
    let both = || {
        CmdError::other(
            "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
        )
    };
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = &a[i];
        if xadd && opt.as_ref() == b"*" {
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if t.trim.is_some() {
                return Err(both());
            }
            t.approx = false;
            let next = a[i + 1].as_ref();
            if more >= 2 && next == b"~" {
                t.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            if is(opt, "maxlen") {
                let n = int(&a[i + 1])?;
                if n < 0 {
                    return Err(CmdError::other("ERR The MAXLEN argument must be >= 0."));
                }
                t.trim = Some(Trim::MaxLen(n as u64));
            } else {
                t.trim = Some(Trim::MinId(parse_strict_id(&a[i + 1])?));
            }
            i += 1;
            t.trim_arg = i;
        } else if is(opt, "limit") && more > 0 {
            let n = int(&a[i + 1])?;
            if n < 0 {
                return Err(CmdError::other("ERR The LIMIT argument must be >= 0."));
            }
            t.limit = n as u64;
            limit_given = true;
            i += 1;
        } else if xadd && is(opt, "nomkstream") {
            t.no_mkstream = true;
        } else if xadd {
            let (id, seq_given) = parse_id_full(opt, 0, true, true)?;
            t.id = Some((id, seq_given));
            break;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    t.id_pos = i;
    if t.limit != 0 && t.trim.is_none() {
        return Err(CmdError::other(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && t.trim.is_none() {
        return Err(CmdError::other(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if c.replaying {
        // The log holds the bound reached: trim to it whatever the work.
        t.limit = 0;
    } else if limit_given {
        if !t.approx {
            return Err(CmdError::other(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
    } else if t.approx {
        let per_node = c.ks.encodings.stream_node_max_entries as u64;
        t.limit = per_node.saturating_mul(100);
        if t.limit == 0 {
            t.limit = 10_000;
        }
        t.limit = t.limit.min(1_000_000);
    }
    Ok(t)
}

/// After an approximate trim, the exact bound it reached, so a replay trims the same.
fn rewrite_trim(args: &mut [Bytes], t: &TrimArgs, s: &Stream) {
    args[t.trim_arg - 1] = Bytes::from_static(b"=");
    args[t.trim_arg] = match t.trim {
        Some(Trim::MaxLen(_)) => Bytes::from(s.len().to_string()),
        _ => {
            let first = s
                .nodes()
                .values()
                .next()
                .and_then(|n| n.entries.first())
                .map_or(StreamId::MAX, |e| e.id);
            id_bytes(first)
        }
    };
}

pub fn xadd(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let t = parse_trim_args(c, a, true)?;
    let field_pos = t.id_pos + 1;
    if a.len() < field_pos + 2 || (a.len() - field_pos) % 2 == 1 {
        return Err(CmdError::WrongArity("xadd".into()));
    }
    if let Some((id, true)) = t.id
        && id.is_zero()
    {
        return Err(CmdError::other(
            "ERR The ID specified in XADD must be greater than 0-0",
        ));
    }
    let now = c.now_ms();
    let limits = c.ks.encodings.stream_nodes();
    let s = if t.no_mkstream {
        match c.ks.stream(c.db, &a[1])? {
            Some(s) => s,
            None => {
                c.out.null();
                return Ok(());
            }
        }
    } else {
        c.ks.stream_or_create(c.db, &a[1])?
    };
    if s.last_id == StreamId::MAX {
        return Err(CmdError::other(
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    let smaller = || {
        CmdError::other(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        )
    };
    let id = match t.id {
        None => {
            if now > s.last_id.ms {
                StreamId::new(now, 0)
            } else {
                s.last_id.next().ok_or_else(smaller)?
            }
        }
        Some((id, true)) => id,
        Some((id, false)) => {
            if s.last_id.ms == id.ms {
                if s.last_id.seq == u64::MAX {
                    return Err(smaller());
                }
                StreamId::new(id.ms, s.last_id.seq + 1)
            } else {
                id
            }
        }
    };
    if id <= s.last_id {
        return Err(smaller());
    }
    let total: usize = a[field_pos..].iter().map(|f| f.len()).sum();
    if total > LISTPACK_MAX_BYTES {
        return Err(CmdError::other("ERR Elements are too large to be stored"));
    }
    s.append(
        id,
        a[field_pos..].iter().map(|f| Str::new(f)).collect(),
        limits,
    );
    let mut logged = a.to_vec();
    let mut trimmed = false;
    if let Some(trim) = t.trim {
        trimmed = s.trim(trim, t.approx, t.limit) > 0;
        if t.approx {
            rewrite_trim(&mut logged, &t, s);
        }
    }
    logged[t.id_pos] = id_bytes(id);
    reply_id(c, id);
    c.changed(&a[1], STREAM, "xadd");
    if trimmed {
        c.notify(STREAM, "xtrim", &a[1]);
    }
    c.propagate(&logged);
    Ok(())
}

pub fn xtrim(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let t = parse_trim_args(c, a, false)?;
    let Some(s) = c.ks.stream(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let deleted = s.trim(t.trim.expect("checked by the parser"), t.approx, t.limit);
    let mut logged = a.to_vec();
    if deleted > 0 && t.approx {
        rewrite_trim(&mut logged, &t, s);
    }
    c.out.int(deleted as i64);
    if deleted > 0 {
        c.changed(&a[1], STREAM, "xtrim");
        c.ks.dirty += deleted - 1;
        c.propagate(&logged);
    }
    Ok(())
}

fn range_generic(c: &mut Ctx, a: &[Bytes], rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev { (&a[3], &a[2]) } else { (&a[2], &a[3]) };
    let start = start_bound(start_arg)?;
    let end = end_bound(end_arg)?;
    let mut count: Option<u64> = None;
    let mut j = 4;
    while j < a.len() {
        if is(&a[j], "count") && j + 1 < a.len() {
            count = Some(int(&a[j + 1])?.max(0) as u64);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let Some(s) = c.ks.stream_read(c.db, &a[1])? else {
        c.out.array(0);
        return Ok(());
    };
    if count == Some(0) {
        c.out.null_array();
        return Ok(());
    }
    let count = usize::try_from(count.unwrap_or(0)).unwrap_or(usize::MAX);
    let entries = s.range(start, end, rev, count);
    reply_entries(c.out, &entries);
    Ok(())
}

pub fn xrange(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    range_generic(c, a, false)
}

pub fn xrevrange(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    range_generic(c, a, true)
}

pub fn xlen(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n = c.ks.stream_read(c.db, &a[1])?.map_or(0, |s| s.len());
    c.out.int(n as i64);
    Ok(())
}

pub fn xdel(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let Some(s) = c.ks.stream(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let ids = a[2..]
        .iter()
        .map(|x| parse_strict_id(x))
        .collect::<Result<Vec<_>, _>>()?;
    let mut deleted = 0u64;
    let mut first = false;
    for id in ids {
        if s.delete(id) {
            first |= id == s.first_id;
            if id > s.max_deleted_id {
                s.max_deleted_id = id;
            }
            deleted += 1;
        }
    }
    if deleted > 0 {
        if s.is_empty() {
            s.first_id = StreamId::MIN;
        } else if first {
            s.refresh_first_id();
        }
    }
    c.out.int(deleted as i64);
    if deleted > 0 {
        c.changed(&a[1], STREAM, "xdel");
        c.ks.dirty += deleted - 1;
    }
    Ok(())
}

/// What XREAD/XREADGROUP wait for on one stream.
#[derive(Clone, Copy)]
enum ReadFrom {
    /// Entries after this ID.
    After(StreamId),
    /// XREADGROUP `>`: entries the group has not delivered yet.
    New,
}

/// Entries served to XREAD for blocked clients at most, when no COUNT was given (Redis's
/// `XREAD_BLOCKED_DEFAULT_COUNT`).
const XREAD_BLOCKED_COUNT_DEFAULT: &[u8] = b"1000";

fn read_generic(c: &mut Ctx, a: &[Bytes], with_group: bool) -> CmdResult {
    let mut deadline: Option<Option<u64>> = None;
    let mut count = 0u64;
    let mut count_given = false;
    let mut streams_arg = 0;
    let mut noack = false;
    let mut group: Option<(&Bytes, &Bytes)> = None;
    let mut i = 1;
    let name = lossy(&a[0]);
    while i < a.len() {
        let more = a.len() - i - 1;
        let o = &a[i];
        if is(o, "block") && more > 0 {
            if c.in_script {
                return Err(CmdError::other(format!(
                    "ERR {name} command is not allowed with BLOCK option from scripts"
                )));
            }
            i += 1;
            let ms = resp::parse_i64(&a[i])
                .ok_or_else(|| CmdError::other("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(CmdError::other("ERR timeout is negative"));
            }
            deadline = Some(if ms == 0 {
                None
            } else {
                Some(
                    (ms as u64)
                        .checked_add(c.now_ms())
                        .filter(|d| *d <= i64::MAX as u64)
                        .ok_or_else(|| CmdError::other("ERR timeout is out of range"))?,
                )
            });
        } else if is(o, "count") && more > 0 {
            i += 1;
            count = int(&a[i])?.max(0) as u64;
            count_given = true;
        } else if is(o, "streams") && more > 0 {
            streams_arg = i + 1;
            if !(a.len() - streams_arg).is_multiple_of(2) {
                return Err(CmdError::other(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            break;
        } else if is(o, "group") && more >= 2 {
            if !with_group {
                return Err(CmdError::other(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group = Some((&a[i + 1], &a[i + 2]));
            i += 2;
        } else if is(o, "noack") {
            if !with_group {
                return Err(CmdError::other(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if streams_arg == 0 {
        return Err(CmdError::Syntax);
    }
    if with_group && group.is_none() {
        return Err(CmdError::other("ERR Missing GROUP option for XREADGROUP"));
    }
    let n = (a.len() - streams_arg) / 2;
    let keys = &a[streams_arg..streams_arg + n];
    let mut from = Vec::with_capacity(n.min(a.len()));
    for (k, key) in keys.iter().enumerate() {
        let arg = &a[streams_arg + n + k];
        let s = c.ks.stream_read(c.db, key)?;
        if let Some((g, _)) = group
            && !s
                .as_ref()
                .is_some_and(|s| s.groups.contains_key(g.as_ref()))
        {
            return Err(CmdError::other(format!(
                "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                lossy(key),
                lossy(g)
            )));
        }
        if arg.as_ref() == b"$" {
            if with_group {
                return Err(CmdError::other(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            from.push(ReadFrom::After(s.map_or(StreamId::MIN, |s| s.last_id)));
        } else if arg.as_ref() == b">" {
            if !with_group {
                return Err(CmdError::other(
                    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            from.push(ReadFrom::New);
        } else {
            from.push(ReadFrom::After(parse_strict_id(arg)?));
        }
    }
    // Which streams have something: the reply's length comes first.
    let now = c.now_ms();
    let mut serve = vec![false; n];
    for (k, key) in keys.iter().enumerate() {
        let Some(s) = c.ks.stream_read(c.db, key)? else {
            continue;
        };
        let last = s.last_entry().map(|e| e.id);
        serve[k] = match (from[k], group) {
            (ReadFrom::After(_), Some(_)) => true,
            (ReadFrom::New, Some((g, _))) => {
                let g = s.groups.get(g.as_ref()).expect("checked above");
                last.is_some_and(|l| l > g.last_id)
            }
            (ReadFrom::After(id), None) => last.is_some_and(|l| l > id),
            (ReadFrom::New, None) => false,
        };
    }
    let served = serve.iter().filter(|x| **x).count();
    if with_group {
        // Only the XCLAIMs and SETIDs it logs reach the feed, never the command itself.
        c.propagated = true;
    }
    if served > 0 {
        let mark = c.ks.feed_len();
        if c.out.protocol == resp::Protocol::Resp3 {
            c.out.map(served);
        } else {
            c.out.array(served);
        }
        for k in (0..n).filter(|k| serve[*k]) {
            if !(c.out.protocol == resp::Protocol::Resp3) {
                c.out.array(2);
            }
            c.out.bulk(&keys[k]);
            match group {
                None => {
                    let ReadFrom::After(id) = from[k] else {
                        unreachable!("XREAD reads after an ID")
                    };
                    let s = c.ks.stream_read(c.db, &keys[k])?.expect("checked above");
                    let start = id.next().unwrap_or(StreamId::MAX);
                    let entries = s.range(start, StreamId::MAX, false, count as usize);
                    reply_entries(c.out, &entries);
                }
                Some((group, consumer)) => {
                    let read = GroupRead {
                        group,
                        consumer,
                        count,
                        ack: if noack { Ack::None } else { Ack::Pending },
                        now,
                    };
                    serve_group(c, &keys[k], from[k], &read)?;
                }
            }
        }
        wrap_logged(c, mark);
        return Ok(());
    }
    match deadline {
        Some(deadline_ms) if !c.in_multi => {
            // Waits for what is new as of now: `$` becomes the current last ID.
            let mut args = a.to_vec();
            for (k, f) in from.iter().enumerate() {
                if let ReadFrom::After(id) = f {
                    args[streams_arg + n + k] = id_bytes(*id);
                }
            }
            if !count_given {
                args.splice(
                    streams_arg - 1..streams_arg - 1,
                    [
                        Bytes::from_static(b"COUNT"),
                        Bytes::from_static(XREAD_BLOCKED_COUNT_DEFAULT),
                    ],
                );
            }
            c.block = Some(Block {
                keys: keys.to_vec(),
                deadline_ms,
                args: Some(args),
            });
        }
        _ => c.out.null_array(),
    }
    Ok(())
}

/// Whether XREADGROUP adds what it delivers to the group's PEL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ack {
    Pending,
    /// NOACK: delivered entries count as acknowledged.
    None,
}

/// One XREADGROUP's reader: its group and consumer, and how it reads.
struct GroupRead<'a> {
    group: &'a Bytes,
    consumer: &'a Bytes,
    /// Entries per stream at most (0: all).
    count: u64,
    ack: Ack,
    now: u64,
}

/// Serves one stream of an XREADGROUP: new entries (delivered and added to the PEL) or the
/// consumer's own pending history.
fn serve_group(c: &mut Ctx, key: &Bytes, from: ReadFrom, r: &GroupRead) -> CmdResult {
    let (gname, cname, count, now) = (r.group, r.consumer, r.count, r.now);
    let noack = r.ack == Ack::None;
    let s = c.ks.stream(c.db, key)?.expect("checked by the caller");
    let mut g = s
        .groups
        .remove(gname.as_ref())
        .expect("checked by the caller");
    let created = !g.consumers.contains_key(cname.as_ref());
    let consumer = g.consumers.entry(Str::new(cname)).or_default();
    consumer.seen_time_ms = now;
    let mut logs: Vec<Vec<Bytes>> = Vec::new();
    let mut dirty = 1u64 + created as u64;
    match from {
        ReadFrom::After(id) => {
            let start = id.next().unwrap_or(StreamId::MAX);
            let pending: Vec<StreamId> = consumer
                .pel
                .range(start..)
                .take(if count == 0 {
                    usize::MAX
                } else {
                    count as usize
                })
                .copied()
                .collect();
            c.out.array(pending.len());
            for id in pending {
                match s.get(id) {
                    Some(e) => {
                        reply_entry(c.out, e);
                        if let Some(n) = g.pel.get_mut(&id) {
                            n.delivery_time_ms = now;
                            n.delivery_count = n.delivery_count.saturating_add(1);
                        }
                    }
                    None => {
                        c.out.array(2);
                        c.out.bulk(id.to_string().as_bytes());
                        c.out.null_array();
                    }
                }
            }
        }
        ReadFrom::New => {
            if created && noack {
                logs.push(vec![
                    Bytes::from_static(b"XGROUP"),
                    Bytes::from_static(b"CREATECONSUMER"),
                    key.clone(),
                    gname.clone(),
                    cname.clone(),
                ]);
            }
            let start = g.last_id.next().unwrap_or(StreamId::MAX);
            let entries = s.range(start, StreamId::MAX, false, count as usize);
            c.out.array(entries.len());
            for e in &entries {
                s.mark_read(&mut g, e.id);
                reply_entry(c.out, e);
                if noack {
                    continue;
                }
                match g.pel.get_mut(&e.id) {
                    Some(n) => {
                        n.delivery_time_ms = now;
                        n.delivery_count = 1;
                    }
                    None => {
                        g.pel.insert(
                            e.id,
                            Nack {
                                delivery_time_ms: now,
                                delivery_count: 1,
                                consumer: Str::new(cname),
                            },
                        );
                    }
                }
                g.assign(e.id, cname);
                let n = &g.pel[&e.id];
                logs.push(xclaim_log(key, gname, e.id, n, g.last_id));
                dirty += 1;
            }
            if noack && !entries.is_empty() {
                logs.push(setid_log(key, gname, &g));
            }
        }
    }
    s.groups.insert(Str::new(gname), g);
    c.ks.dirty += dirty;
    if created {
        c.notify(STREAM, "xgroup-createconsumer", key);
    }
    for l in logs {
        c.propagate(&l);
    }
    Ok(())
}

/// Several logged effects of one command replay as one transaction, as Redis logs them
/// (inside MULTI or a script the whole transaction is wrapped instead).
fn wrap_logged(c: &mut Ctx, mark: usize) {
    if !c.in_multi {
        c.ks.feed_wrap_transaction(mark);
    }
}

/// The idempotent XCLAIM Redis logs for a delivered or claimed entry.
fn xclaim_log(key: &Bytes, group: &Bytes, id: StreamId, n: &Nack, last: StreamId) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XCLAIM"),
        key.clone(),
        group.clone(),
        Bytes::copy_from_slice(&n.consumer),
        Bytes::from_static(b"0"),
        id_bytes(id),
        Bytes::from_static(b"TIME"),
        Bytes::from(n.delivery_time_ms.to_string()),
        Bytes::from_static(b"RETRYCOUNT"),
        Bytes::from(n.delivery_count.to_string()),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        id_bytes(last),
    ]
}

fn setid_log(key: &Bytes, gname: &Bytes, g: &Group) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XGROUP"),
        Bytes::from_static(b"SETID"),
        key.clone(),
        gname.clone(),
        id_bytes(g.last_id),
        Bytes::from_static(b"ENTRIESREAD"),
        Bytes::from(g.entries_read.map_or(-1, |n| n as i64).to_string()),
    ]
}

pub fn xread(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    read_generic(c, a, false)
}

pub fn xreadgroup(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    read_generic(c, a, true)
}

fn entries_read_arg(arg: &[u8]) -> Result<Option<u64>, CmdError> {
    match int(arg)? {
        -1 => Ok(None),
        n if n < 0 => Err(CmdError::other(
            "ERR value for ENTRIESREAD must be positive or -1",
        )),
        n => Ok(Some(n as u64)),
    }
}

pub fn xgroup(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let sub = crate::ctx::subcommand(
        "xgroup",
        a,
        &[
            ("create", -5),
            ("setid", -5),
            ("destroy", 4),
            ("createconsumer", 5),
            ("delconsumer", 5),
            ("help", 2),
        ],
    )?;
    if sub == "help" {
        help(
            c,
            "XGROUP",
            &[
                "CREATE <key> <groupname> <id|$> [option]",
                "    Create a new consumer group. Options are:",
                "    * MKSTREAM",
                "      Create the empty stream if it does not exist.",
                "    * ENTRIESREAD entries_read",
                "      Set the group's entries_read counter (internal use).",
                "CREATECONSUMER <key> <groupname> <consumer>",
                "    Create a new consumer in the specified group.",
                "DELCONSUMER <key> <groupname> <consumer>",
                "    Remove the specified consumer.",
                "DESTROY <key> <groupname>",
                "    Remove the specified group.",
                "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                "    Set the current group ID and entries_read counter.",
            ],
        );
        return Ok(());
    }
    let mut mkstream = false;
    let mut entries_read: Option<u64> = None;
    let mut i = 5;
    while i < a.len() {
        if sub == "create" && is(&a[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if (sub == "create" || sub == "setid") && is(&a[i], "entriesread") && i + 1 < a.len()
        {
            entries_read = entries_read_arg(&a[i + 1])?;
            i += 2;
        } else {
            return Err(subcommand_syntax(a));
        }
    }
    let (key, gname) = (&a[2], &a[3]);
    let exists = c.ks.stream(c.db, key)?.is_some();
    if !exists && !mkstream {
        return Err(CmdError::other(
            "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ));
    }
    if exists {
        let s = c.ks.stream(c.db, key)?.expect("exists");
        if !s.groups.contains_key(gname.as_ref())
            && matches!(sub, "setid" | "createconsumer" | "delconsumer")
        {
            return Err(CmdError::other(format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                lossy(gname),
                lossy(key)
            )));
        }
    }
    let now = c.now_ms();
    match sub {
        "create" if a.len() <= 8 => {
            let id = if a[4].as_ref() == b"$" {
                None
            } else {
                Some(parse_strict_id(&a[4])?)
            };
            let s = c.ks.stream_or_create(c.db, key)?;
            let id = id.unwrap_or(s.last_id);
            if s.groups.contains_key(gname.as_ref()) {
                return Err(CmdError::other(
                    "BUSYGROUP Consumer Group name already exists",
                ));
            }
            s.groups
                .insert(Str::new(gname), Group::new(id, entries_read));
            c.out.ok();
            if exists {
                c.ks.dirty += 1;
            } else {
                c.modified(key);
            }
            c.notify(STREAM, "xgroup-create", key);
        }
        "setid" if a.len() == 5 || a.len() == 7 => {
            let s = c.ks.stream(c.db, key)?.expect("exists");
            let id = if a[4].as_ref() == b"$" {
                s.last_id
            } else {
                parse_id(&a[4], 0)?
            };
            let g = s.groups.get_mut(gname.as_ref()).expect("checked");
            g.last_id = id;
            g.entries_read = entries_read;
            c.out.ok();
            c.ks.dirty += 1;
            c.notify(STREAM, "xgroup-setid", key);
        }
        "destroy" => {
            let s = c.ks.stream(c.db, key)?.expect("exists");
            if s.groups.remove(gname.as_ref()).is_some() {
                c.out.int(1);
                // Wakes clients blocked in this group, to fail them.
                c.changed(key, STREAM, "xgroup-destroy");
            } else {
                c.out.int(0);
            }
        }
        "createconsumer" => {
            let s = c.ks.stream(c.db, key)?.expect("exists");
            let g = s.groups.get_mut(gname.as_ref()).expect("checked");
            if g.consumers.contains_key(a[4].as_ref()) {
                c.out.int(0);
            } else {
                g.consumers.insert(
                    Str::new(&a[4]),
                    Consumer {
                        seen_time_ms: now,
                        ..Consumer::default()
                    },
                );
                c.out.int(1);
                c.ks.dirty += 1;
                c.notify(STREAM, "xgroup-createconsumer", key);
            }
        }
        "delconsumer" => {
            let s = c.ks.stream(c.db, key)?.expect("exists");
            let g = s.groups.get_mut(gname.as_ref()).expect("checked");
            match g.consumers.remove(a[4].as_ref()) {
                Some(consumer) => {
                    for id in &consumer.pel {
                        g.pel.remove(id);
                    }
                    c.out.int(consumer.pel.len() as i64);
                    c.ks.dirty += 1;
                    c.notify(STREAM, "xgroup-delconsumer", key);
                }
                None => c.out.int(0),
            }
        }
        _ => return Err(subcommand_syntax(a)),
    }
    Ok(())
}

pub fn xsetid(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let id = parse_strict_id(&a[2])?;
    let mut entries_added: Option<u64> = None;
    let mut max_deleted = StreamId::MIN;
    let mut i = 3;
    while i < a.len() {
        let more = a.len() - 1 - i;
        if is(&a[i], "entriesadded") && more > 0 {
            let n = int(&a[i + 1])?;
            if n < 0 {
                return Err(CmdError::other("ERR entries_added must be positive"));
            }
            entries_added = Some(n as u64);
            i += 2;
        } else if is(&a[i], "maxdeletedid") && more > 0 {
            max_deleted = parse_strict_id(&a[i + 1])?;
            if id < max_deleted {
                return Err(CmdError::other(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let s = c.ks.stream(c.db, &a[1])?.ok_or(CmdError::NoSuchKey)?;
    if !s.is_empty() {
        let top = s.last_entry().map_or(StreamId::MIN, |e| e.id);
        if id < top {
            return Err(CmdError::other(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if entries_added.is_some_and(|n| s.len() > n) {
            return Err(CmdError::other(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    s.last_id = id;
    if let Some(n) = entries_added {
        s.entries_added = n;
    }
    if !max_deleted.is_zero() {
        s.max_deleted_id = max_deleted;
    }
    c.out.ok();
    c.ks.dirty += 1;
    c.notify(STREAM, "xsetid", &a[1]);
    Ok(())
}

pub fn xack(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let Some(s) = c.ks.stream(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let Some(g) = s.groups.get_mut(a[2].as_ref()) else {
        c.out.int(0);
        return Ok(());
    };
    let ids = a[3..]
        .iter()
        .map(|x| parse_strict_id(x))
        .collect::<Result<Vec<_>, _>>()?;
    let acked = ids.into_iter().filter(|id| g.ack(*id).is_some()).count();
    c.out.int(acked as i64);
    c.ks.dirty += acked as u64;
    Ok(())
}

pub fn xpending(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let summary = a.len() == 3;
    if a.len() != 3 && !(6..=9).contains(&a.len()) {
        return Err(CmdError::Syntax);
    }
    let (mut start, mut end, mut count, mut min_idle) = (StreamId::MIN, StreamId::MAX, 0i64, 0i64);
    let mut consumer: Option<&Bytes> = None;
    if !summary {
        let mut at = 3;
        if is(&a[3], "idle") {
            min_idle = int(&a[4])?;
            if a.len() < 8 {
                return Err(CmdError::Syntax);
            }
            at += 2;
        }
        count = int(&a[at + 2])?.max(0);
        start = start_bound(&a[at])?;
        end = end_bound(&a[at + 1])?;
        consumer = a.get(at + 3);
    }
    let now = c.now_ms();
    let s = c.ks.stream(c.db, &a[1])?;
    let Some(g) = s.and_then(|s| s.groups.get(a[2].as_ref())) else {
        return Err(nogroup(&a[1], &a[2]));
    };
    if summary {
        c.out.array(4);
        c.out.int(g.pel.len() as i64);
        match (g.pel.keys().next(), g.pel.keys().next_back()) {
            (Some(first), Some(last)) => {
                c.out.bulk(first.to_string().as_bytes());
                c.out.bulk(last.to_string().as_bytes());
                let owners: Vec<_> = g
                    .consumers
                    .iter()
                    .filter(|(_, c)| !c.pel.is_empty())
                    .collect();
                c.out.array(owners.len());
                for (name, cons) in owners {
                    c.out.array(2);
                    c.out.bulk(name);
                    c.out.bulk_int(cons.pel.len() as i64);
                }
            }
            _ => {
                c.out.null();
                c.out.null();
                c.out.null_array();
            }
        }
        return Ok(());
    }
    // Walked lazily: COUNT bounds the work, not the PEL's size.
    let ids: Box<dyn Iterator<Item = StreamId>> = match consumer {
        Some(name) => match g.consumers.get(name.as_ref()) {
            Some(cons) => Box::new(cons.pel.range(start..=end.max(start)).copied()),
            None => {
                c.out.array(0);
                return Ok(());
            }
        },
        None => Box::new(g.pel.range(start..=end.max(start)).map(|(k, _)| *k)),
    };
    let mut rows = Vec::new();
    for id in ids.filter(|id| *id <= end) {
        if rows.len() as i64 >= count {
            break;
        }
        let Some(n) = g.pel.get(&id) else { continue };
        let idle = idle_ms(now, n.delivery_time_ms);
        if min_idle != 0 && idle < min_idle {
            continue;
        }
        rows.push((id, n));
    }
    c.out.array(rows.len());
    for (id, n) in rows {
        c.out.array(4);
        c.out.bulk(id.to_string().as_bytes());
        c.out.bulk(&n.consumer);
        c.out.int(idle_ms(now, n.delivery_time_ms));
        c.out.int(n.delivery_count as i64);
    }
    Ok(())
}

/// Milliseconds since `then` (0 for a time in the future; times may come from files).
fn idle_ms(now: u64, then: u64) -> i64 {
    i64::try_from(now.saturating_sub(then)).unwrap_or(i64::MAX)
}

fn int_or(arg: &[u8], msg: &str) -> Result<i64, CmdError> {
    resp::parse_i64(arg).ok_or_else(|| CmdError::other(format!("ERR {msg}")))
}

pub fn xclaim(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (key, gname, cname) = (&a[1], &a[2], &a[3]);
    {
        let s = c.ks.stream(c.db, key)?;
        if !s.is_some_and(|s| s.groups.contains_key(gname.as_ref())) {
            return Err(nogroup(key, gname));
        }
    }
    let min_idle = int_or(&a[4], "Invalid min-idle-time argument for XCLAIM")?.max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < a.len() {
        match parse_strict_id(&a[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = c.now_ms();
    let (mut force, mut justid) = (false, false);
    let mut retry: Option<u64> = None;
    let mut time: Option<i64> = None;
    let mut last = StreamId::MIN;
    while j < a.len() {
        let more = a.len() - 1 - j;
        let o = &a[j];
        if is(o, "force") {
            force = true;
        } else if is(o, "justid") {
            justid = true;
        } else if is(o, "idle") && more > 0 {
            j += 1;
            let idle = int_or(&a[j], "Invalid IDLE option argument for XCLAIM")?;
            time = Some((now as i64).saturating_sub(idle));
        } else if is(o, "time") && more > 0 {
            j += 1;
            time = Some(int_or(&a[j], "Invalid TIME option argument for XCLAIM")?);
        } else if is(o, "retrycount") && more > 0 {
            j += 1;
            retry =
                Some(int_or(&a[j], "Invalid RETRYCOUNT option argument for XCLAIM")?.max(0) as u64);
        } else if is(o, "lastid") && more > 0 {
            j += 1;
            last = parse_strict_id(&a[j])?;
        } else {
            return Err(CmdError::other(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                lossy(o)
            )));
        }
        j += 1;
    }
    // A replay takes logged times as they are (its clock reads 0).
    let delivery = match time {
        Some(t) if c.replaying => t.max(0) as u64,
        Some(t) if t < 0 || t > now as i64 => now,
        Some(t) => t as u64,
        None => now,
    };
    let s = c.ks.stream(c.db, key)?.expect("checked above");
    let mut g = s.groups.remove(gname.as_ref()).expect("checked above");
    let mut set_last = false;
    if last > g.last_id {
        g.last_id = last;
        set_last = true;
    }
    let mut logs = Vec::new();
    let mut dirty = 0u64;
    let mut created = false;
    let mut claimed: Vec<StreamId> = Vec::new();
    for id in ids {
        let exists = s.get(id).is_some();
        if !exists {
            if let Some(n) = g.ack(id) {
                logs.push(xclaim_log(key, gname, id, &n, g.last_id));
                set_last = false;
                dirty += 1;
            }
            continue;
        }
        if force && !g.pel.contains_key(&id) {
            g.pel.insert(
                id,
                Nack {
                    delivery_time_ms: now,
                    delivery_count: 1,
                    consumer: Str::new(b""),
                },
            );
        } else if !g.pel.contains_key(&id) {
            continue;
        } else if min_idle > 0 {
            let n = &g.pel[&id];
            if idle_ms(now, n.delivery_time_ms) < min_idle {
                continue;
            }
        }
        if !g.consumers.contains_key(cname.as_ref()) {
            g.consumers.insert(
                Str::new(cname),
                Consumer {
                    seen_time_ms: now,
                    ..Consumer::default()
                },
            );
            dirty += 1;
            created = true;
        }
        if let Some(cons) = g.consumers.get_mut(cname.as_ref()) {
            cons.seen_time_ms = now;
        }
        g.assign(id, cname);
        let n = g.pel.get_mut(&id).expect("present");
        n.delivery_time_ms = delivery;
        match retry {
            Some(r) => n.delivery_count = r,
            None if !justid => n.delivery_count = n.delivery_count.saturating_add(1),
            None => {}
        }
        logs.push(xclaim_log(key, gname, id, n, g.last_id));
        set_last = false;
        dirty += 1;
        claimed.push(id);
    }
    if set_last {
        logs.push(setid_log(key, gname, &g));
        dirty += 1;
    }
    c.out.array(claimed.len());
    for id in &claimed {
        if justid {
            c.out.bulk(id.to_string().as_bytes());
        } else if let Some(e) = s.get(*id) {
            reply_entry(c.out, e);
        }
    }
    s.groups.insert(Str::new(gname), g);
    c.ks.dirty += dirty;
    c.propagated = true;
    if created {
        c.notify(STREAM, "xgroup-createconsumer", key);
    }
    let mark = c.ks.feed_len();
    for l in logs {
        c.propagate(&l);
    }
    wrap_logged(c, mark);
    Ok(())
}

/// Entries XAUTOCLAIM claims by default.
const XAUTOCLAIM_COUNT_DEFAULT: i64 = 100;
/// PEL entries XAUTOCLAIM looks at per entry it may claim.
const XAUTOCLAIM_ATTEMPTS_PER_COUNT: i64 = 10;

pub fn xautoclaim(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (key, gname, cname) = (&a[1], &a[2], &a[3]);
    let min_idle = int_or(&a[4], "Invalid min-idle-time argument for XAUTOCLAIM")?.max(0);
    let start = start_bound(&a[5])?;
    let mut count = XAUTOCLAIM_COUNT_DEFAULT;
    let mut justid = false;
    let mut j = 6;
    while j < a.len() {
        let more = a.len() - 1 - j;
        if is(&a[j], "count") && more > 0 {
            let max = i64::MAX / 16;
            count = resp::parse_i64(&a[j + 1])
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| CmdError::other("ERR COUNT must be > 0"))?;
            j += 1;
        } else if is(&a[j], "justid") {
            justid = true;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let now = c.now_ms();
    let s = c.ks.stream(c.db, key)?;
    let Some(s) = s.filter(|s| s.groups.contains_key(gname.as_ref())) else {
        return Err(nogroup(key, gname));
    };
    let mut g = s.groups.remove(gname.as_ref()).expect("checked above");
    let mut attempts = count.saturating_mul(XAUTOCLAIM_ATTEMPTS_PER_COUNT);
    let candidates: Vec<StreamId> = g
        .pel
        .range(start..)
        .map(|(k, _)| *k)
        .take(
            usize::try_from(attempts)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        )
        .collect();
    let mut idx = 0;
    let (mut claimed, mut deleted) = (Vec::new(), Vec::new());
    let mut logs = Vec::new();
    let mut dirty = 0u64;
    let mut created = false;
    while attempts > 0 && count > 0 && idx < candidates.len() {
        attempts -= 1;
        let id = candidates[idx];
        idx += 1;
        if s.get(id).is_none() {
            if let Some(n) = g.ack(id) {
                logs.push(xclaim_log(key, gname, id, &n, g.last_id));
            }
            dirty += 1;
            deleted.push(id);
            count -= 1;
            continue;
        }
        let n = &g.pel[&id];
        if min_idle > 0 && idle_ms(now, n.delivery_time_ms) < min_idle {
            continue;
        }
        if !g.consumers.contains_key(cname.as_ref()) {
            g.consumers.insert(Str::new(cname), Consumer::default());
            dirty += 1;
            created = true;
        }
        if let Some(cons) = g.consumers.get_mut(cname.as_ref()) {
            cons.seen_time_ms = now;
        }
        g.assign(id, cname);
        let n = g.pel.get_mut(&id).expect("present");
        n.delivery_time_ms = now;
        if !justid {
            n.delivery_count = n.delivery_count.saturating_add(1);
        }
        logs.push(xclaim_log(key, gname, id, n, g.last_id));
        dirty += 1;
        claimed.push(id);
        count -= 1;
    }
    let next = candidates.get(idx).copied().unwrap_or(StreamId::MIN);
    c.out.array(3);
    c.out.bulk(next.to_string().as_bytes());
    c.out.array(claimed.len());
    for id in &claimed {
        match s.get(*id) {
            Some(e) if !justid => reply_entry(c.out, e),
            _ => c.out.bulk(id.to_string().as_bytes()),
        }
    }
    c.out.array(deleted.len());
    for id in &deleted {
        c.out.bulk(id.to_string().as_bytes());
    }
    s.groups.insert(Str::new(gname), g);
    c.ks.dirty += dirty;
    c.propagated = true;
    if created {
        c.notify(STREAM, "xgroup-createconsumer", key);
    }
    let mark = c.ks.feed_len();
    for l in logs {
        c.propagate(&l);
    }
    wrap_logged(c, mark);
    Ok(())
}

pub fn xinfo(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let sub = crate::ctx::subcommand(
        "xinfo",
        a,
        &[("consumers", 4), ("groups", 3), ("stream", -3), ("help", 2)],
    )?;
    if sub == "help" {
        help(
            c,
            "XINFO",
            &[
                "CONSUMERS <key> <groupname>",
                "    Show consumers of <groupname>.",
                "GROUPS <key>",
                "    Show the stream consumer groups.",
                "STREAM <key> [FULL [COUNT <count>]",
                "    Show information about the stream.",
            ],
        );
        return Ok(());
    }
    let now = c.now_ms();
    let key = &a[2];
    let s = c.ks.stream(c.db, key)?.ok_or(CmdError::NoSuchKey)?;
    let out = &mut *c.out;
    match sub {
        "consumers" => {
            let Some(g) = s.groups.get(a[3].as_ref()) else {
                return Err(CmdError::other(format!(
                    "NOGROUP No such consumer group '{}' for key name '{}'",
                    lossy(&a[3]),
                    lossy(key)
                )));
            };
            out.array(g.consumers.len());
            for (name, cons) in &g.consumers {
                out.map(3);
                out.bulk(b"name");
                out.bulk(name);
                out.bulk(b"pending");
                out.int(cons.pel.len() as i64);
                out.bulk(b"idle");
                out.int(idle_ms(now, cons.seen_time_ms));
            }
        }
        "groups" => {
            out.array(s.groups.len());
            for (name, g) in &s.groups {
                out.map(6);
                out.bulk(b"name");
                out.bulk(name);
                out.bulk(b"consumers");
                out.int(g.consumers.len() as i64);
                out.bulk(b"pending");
                out.int(g.pel.len() as i64);
                out.bulk(b"last-delivered-id");
                out.bulk(g.last_id.to_string().as_bytes());
                reply_read_and_lag(out, s, g);
            }
        }
        _ => {
            let opts = &a[3..];
            let full = !opts.is_empty();
            let mut count = 10i64;
            if full {
                if (opts.len() != 1 && opts.len() != 3) || !is(&opts[0], "full") {
                    return Err(subcommand_syntax(a));
                }
                if opts.len() == 3 {
                    if !is(&opts[1], "count") {
                        return Err(subcommand_syntax(a));
                    }
                    count = int(&opts[2])?;
                    if count < 0 {
                        count = 10;
                    }
                }
            }
            out.map(if full { 9 } else { 10 });
            out.bulk(b"length");
            out.int(s.len() as i64);
            out.bulk(b"radix-tree-keys");
            out.int(s.nodes().len() as i64);
            out.bulk(b"radix-tree-nodes");
            out.int(s.radix_tree_nodes() as i64);
            out.bulk(b"last-generated-id");
            out.bulk(s.last_id.to_string().as_bytes());
            out.bulk(b"max-deleted-entry-id");
            out.bulk(s.max_deleted_id.to_string().as_bytes());
            out.bulk(b"entries-added");
            out.int(s.entries_added as i64);
            out.bulk(b"recorded-first-entry-id");
            out.bulk(s.first_id.to_string().as_bytes());
            if !full {
                out.bulk(b"groups");
                out.int(s.groups.len() as i64);
                out.bulk(b"first-entry");
                match s.first_entry() {
                    Some(e) => reply_entry(out, e),
                    None => out.null(),
                }
                out.bulk(b"last-entry");
                match s.last_entry() {
                    Some(e) => reply_entry(out, e),
                    None => out.null(),
                }
                return Ok(());
            }
            let limit = if count == 0 {
                usize::MAX
            } else {
                count as usize
            };
            out.bulk(b"entries");
            let entries = s.range(StreamId::MIN, StreamId::MAX, false, limit);
            reply_entries(out, &entries);
            out.bulk(b"groups");
            out.array(s.groups.len());
            for (name, g) in &s.groups {
                out.map(7);
                out.bulk(b"name");
                out.bulk(name);
                out.bulk(b"last-delivered-id");
                out.bulk(g.last_id.to_string().as_bytes());
                reply_read_and_lag(out, s, g);
                out.bulk(b"pel-count");
                out.int(g.pel.len() as i64);
                out.bulk(b"pending");
                let pel: Vec<_> = g.pel.iter().take(limit).collect();
                out.array(pel.len());
                for (id, n) in pel {
                    out.array(4);
                    out.bulk(id.to_string().as_bytes());
                    out.bulk(&n.consumer);
                    out.int(n.delivery_time_ms as i64);
                    out.int(n.delivery_count as i64);
                }
                out.bulk(b"consumers");
                out.array(g.consumers.len());
                for (cname, cons) in &g.consumers {
                    out.map(4);
                    out.bulk(b"name");
                    out.bulk(cname);
                    out.bulk(b"seen-time");
                    out.int(cons.seen_time_ms as i64);
                    out.bulk(b"pel-count");
                    out.int(cons.pel.len() as i64);
                    out.bulk(b"pending");
                    let ids: Vec<_> = cons.pel.iter().take(limit).collect();
                    out.array(ids.len());
                    for id in ids {
                        let n = g.pel.get(id);
                        out.array(3);
                        out.bulk(id.to_string().as_bytes());
                        out.int(n.map_or(0, |n| n.delivery_time_ms as i64));
                        out.int(n.map_or(0, |n| n.delivery_count as i64));
                    }
                }
            }
        }
    }
    Ok(())
}

fn reply_read_and_lag(out: &mut resp::ReplyBuf, s: &Stream, g: &Group) {
    out.bulk(b"entries-read");
    match g.entries_read {
        Some(n) => out.int(n as i64),
        None => out.null(),
    }
    out.bulk(b"lag");
    match s.lag(g) {
        Some(n) => out.int(n as i64),
        None => out.null(),
    }
}
