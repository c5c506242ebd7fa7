//! Sorted-set commands.

use std::ops::Bound;

use bytes::Bytes;

use super::keys::{parse_scan, scan_dict, write_scan_reply};
use super::lists::{block_or_null, timeout_arg};
use crate::ctx::{clamp_range, float, int, is, lossy, uint};
use crate::glob::glob_match;
use crate::value::{Score, ZSet};
use crate::{CmdError, CmdResult, Ctx, Str, Value, notify};

pub fn zadd(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if is(o, "nx") {
            nx = true;
        } else if is(o, "xx") {
            xx = true;
        } else if is(o, "gt") {
            gt = true;
        } else if is(o, "lt") {
            lt = true;
        } else if is(o, "ch") {
            ch = true;
        } else if is(o, "incr") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &a[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    if nx && xx {
        return Err(CmdError::other(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if [gt, lt, nx].into_iter().filter(|&on| on).count() > 1 {
        return Err(CmdError::other(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && pairs.len() > 2 {
        return Err(CmdError::other(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let scores: Vec<f64> = pairs
        .chunks(2)
        .map(|p| float(&p[0]))
        .collect::<Result<_, _>>()?;
    if xx && c.ks.zset(c.db, &a[1])?.is_none() {
        c.ks.zset(c.db, &a[1])?;
        if incr {
            c.out.null()
        } else {
            c.out.int(0)
        }
        return Ok(());
    }
    let z = c.ks.zset_or_create(c.db, &a[1])?;
    let (mut added, mut changed) = (0, 0);
    let mut incr_result = None;
    for (p, &score) in pairs.chunks(2).zip(&scores) {
        let member = &p[1];
        let current = z.score(member);
        match current {
            None if xx => continue,
            None => {
                z.insert(member, score);
                added += 1;
                incr_result = Some(score);
            }
            Some(_) if nx => continue,
            Some(old) => {
                let new = if incr { old + score } else { score };
                if new.is_nan() {
                    c.ks.remove_if_empty(c.db, &a[1]);
                    return Err(CmdError::other("ERR resulting score is not a number (NaN)"));
                }
                if (gt && new <= old) || (lt && new >= old) {
                    continue;
                }
                incr_result = Some(new);
                if new != old {
                    z.insert(member, new);
                    changed += 1;
                }
            }
        }
    }
    c.ks.remove_if_empty(c.db, &a[1]);
    if added + changed > 0 {
        c.changed(&a[1], notify::ZSET, if incr { "zincr" } else { "zadd" });
    }
    if incr {
        match incr_result {
            Some(s) => c.out.double(s),
            None => c.out.null(),
        }
    } else {
        c.out.int(if ch { added + changed } else { added });
    }
    Ok(())
}

pub fn zincrby(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let delta = float(&a[2])?;
    let z = c.ks.zset_or_create(c.db, &a[1])?;
    let new = z.score(&a[3]).unwrap_or(0.0) + delta;
    if new.is_nan() {
        c.ks.remove_if_empty(c.db, &a[1]);
        return Err(CmdError::other("ERR resulting score is not a number (NaN)"));
    }
    z.insert(&a[3], new);
    c.changed(&a[1], notify::ZSET, "zincr");
    c.out.double(new);
    Ok(())
}

pub fn zrem(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let Some(z) = c.ks.zset(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let n = a[2..].iter().filter(|m| z.remove(m).is_some()).count();
    if n > 0 {
        c.changed(&a[1], notify::ZSET, "zrem");
        c.ks.remove_if_empty(c.db, &a[1]);
    }
    c.out.int(n as i64);
    Ok(())
}

pub fn zcard(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let n = c.ks.zset(c.db, &a[1])?.map_or(0, |z| z.len());
    c.out.int(n as i64);
    Ok(())
}

pub fn zscore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    match c.ks.zset(c.db, &a[1])?.and_then(|z| z.score(&a[2])) {
        Some(s) => c.out.double(s),
        None => c.out.null(),
    }
    Ok(())
}

pub fn zmscore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let z = c.ks.zset(c.db, &a[1])?;
    let scores: Vec<Option<f64>> = a[2..]
        .iter()
        .map(|m| z.as_ref().and_then(|z| z.score(m)))
        .collect();
    c.out.array(scores.len());
    for s in scores {
        match s {
            Some(s) => c.out.double(s),
            None => c.out.null(),
        }
    }
    Ok(())
}

fn rank_generic(c: &mut Ctx, a: &[Bytes], rev: bool) -> CmdResult {
    match c
        .ks
        .zset(c.db, &a[1])?
        .and_then(|z| z.rank(&a[2]).map(|r| (r, z.len())))
    {
        Some((r, len)) => c.out.int(if rev { len - 1 - r } else { r } as i64),
        None => c.out.null(),
    }
    Ok(())
}

pub fn zrank(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    rank_generic(c, a, false)
}
pub fn zrevrank(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    rank_generic(c, a, true)
}

/// A score range end: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
#[derive(Clone, Copy)]
struct ScoreBound {
    value: f64,
    exclusive: bool,
}

fn score_bound(arg: &[u8]) -> Result<ScoreBound, CmdError> {
    let bad = || CmdError::other("ERR min or max is not a float");
    let (exclusive, text) = match arg.first() {
        Some(b'(') => (true, &arg[1..]),
        _ => (false, arg),
    };
    let value = resp::parse_f64(text).ok_or_else(bad)?;
    Ok(ScoreBound { value, exclusive })
}

struct ScoreRange {
    min: ScoreBound,
    max: ScoreBound,
}

impl ScoreRange {
    /// The members in range, in ascending or descending order, using the tree's order.
    fn iter<'z>(&self, z: &'z ZSet, rev: bool) -> Box<dyn Iterator<Item = (&'z Str, f64)> + 'z> {
        let lo_score = if self.min.exclusive {
            self.min.value.next_up()
        } else {
            self.min.value
        };
        let lower: Bound<(Score, Str)> = if lo_score == f64::NEG_INFINITY {
            Bound::Unbounded
        } else {
            Bound::Included((Score(lo_score), Str::new(b"")))
        };
        let hi_score = if self.max.exclusive {
            self.max.value
        } else {
            self.max.value.next_up()
        };
        let upper: Bound<(Score, Str)> = if hi_score == f64::INFINITY && !self.max.exclusive {
            Bound::Unbounded
        } else {
            Bound::Excluded((Score(hi_score), Str::new(b"")))
        };
        if self.min.value > self.max.value || lo_score > hi_score {
            return Box::new(std::iter::empty());
        }
        let it = z.order.range((lower, upper)).map(|(s, m)| (m, s.0));
        if rev {
            Box::new(it.rev())
        } else {
            Box::new(it)
        }
    }
}

/// A lex range end: `-`, `+`, `[x` (inclusive), `(x` (exclusive).
#[derive(Clone)]
enum LexBound {
    Min,
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

fn lex_bound(arg: &Bytes) -> Result<LexBound, CmdError> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if arg.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::Incl(arg.slice(1..))),
        Some(b'(') => Ok(LexBound::Excl(arg.slice(1..))),
        _ => Err(CmdError::other(
            "ERR min or max not valid string range item",
        )),
    }
}

struct LexRange {
    min: LexBound,
    max: LexBound,
}

impl LexRange {
    fn contains(&self, m: &[u8]) -> bool {
        let above = match &self.min {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Incl(b) => m >= b.as_ref(),
            LexBound::Excl(b) => m > b.as_ref(),
        };
        let below = match &self.max {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Incl(b) => m <= b.as_ref(),
            LexBound::Excl(b) => m < b.as_ref(),
        };
        above && below
    }
}

enum RangeBy {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

struct RangeQuery {
    by: RangeBy,
    rev: bool,
    offset: i64,
    count: i64,
    with_scores: bool,
}

/// The members a range query selects.
fn run_range(z: &ZSet, q: &RangeQuery) -> Vec<(Str, f64)> {
    if q.offset < 0 {
        return Vec::new();
    }
    let take = if q.count < 0 {
        usize::MAX
    } else {
        q.count as usize
    };
    let skip = q.offset as usize;
    match &q.by {
        RangeBy::Rank(start, end) => match clamp_range(*start, *end, z.len()) {
            None => Vec::new(),
            Some((from, to)) => {
                let n = to - from + 1;
                if q.rev {
                    z.iter()
                        .rev()
                        .skip(from)
                        .take(n)
                        .map(|(m, s)| (m.clone(), s))
                        .collect()
                } else {
                    z.iter()
                        .skip(from)
                        .take(n)
                        .map(|(m, s)| (m.clone(), s))
                        .collect()
                }
            }
        },
        RangeBy::Score(r) => r
            .iter(z, q.rev)
            .skip(skip)
            .take(take)
            .map(|(m, s)| (m.clone(), s))
            .collect(),
        RangeBy::Lex(r) => {
            let it: Box<dyn Iterator<Item = (&Str, f64)>> = if q.rev {
                Box::new(z.iter().rev())
            } else {
                Box::new(z.iter())
            };
            it.filter(|(m, _)| r.contains(m))
                .skip(skip)
                .take(take)
                .map(|(m, s)| (m.clone(), s))
                .collect()
        }
    }
}

fn reply_scored(c: &mut Ctx, items: &[(Str, f64)], with_scores: bool) {
    if !with_scores {
        c.out.array(items.len());
        items.iter().for_each(|(m, _)| c.out.bulk(m));
    } else if c.out.protocol == resp::Protocol::Resp3 {
        c.out.array(items.len());
        for (m, s) in items {
            c.out.array(2);
            c.out.bulk(m);
            c.out.double(*s);
        }
    } else {
        c.out.array(items.len() * 2);
        for (m, s) in items {
            c.out.bulk(m);
            c.out.double(*s);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// ZRANGE / ZRANGESTORE: `min max [BYSCORE|BYLEX] [REV] [LIMIT o c] [WITHSCORES]`.
    Unified,
    Rank {
        rev: bool,
    },
    Score {
        rev: bool,
    },
    Lex {
        rev: bool,
    },
}

/// Parses range arguments starting at `a[0]` = min (or start) in the given style.
fn parse_range(a: &[Bytes], style: Style, allow_scores: bool) -> Result<RangeQuery, CmdError> {
    let (mut by_score, mut by_lex, mut rev) = (false, false, false);
    match style {
        Style::Unified => {}
        Style::Rank { rev: r } => rev = r,
        Style::Score { rev: r } => (by_score, rev) = (true, r),
        Style::Lex { rev: r } => (by_lex, rev) = (true, r),
    }
    let (mut offset, mut count, mut with_scores, mut limit) = (0i64, -1i64, false, false);
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if allow_scores && is(o, "withscores") && !matches!(style, Style::Lex { .. }) {
            with_scores = true;
        } else if is(o, "limit") && i + 2 < a.len() && !matches!(style, Style::Rank { .. }) {
            offset = int(&a[i + 1])?;
            count = int(&a[i + 2])?;
            limit = true;
            i += 2;
        } else if style == Style::Unified && is(o, "byscore") && !by_lex {
            by_score = true;
        } else if style == Style::Unified && is(o, "bylex") && !by_score {
            by_lex = true;
        } else if style == Style::Unified && is(o, "rev") {
            rev = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if limit && !by_score && !by_lex {
        return Err(CmdError::other(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && by_lex {
        return Err(CmdError::other(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // With REV in the unified form, and in the ZREV* forms, the first bound is the maximum.
    let (lo, hi) = if rev && (by_score || by_lex) {
        (&a[1], &a[0])
    } else {
        (&a[0], &a[1])
    };
    let by = if by_score {
        RangeBy::Score(ScoreRange {
            min: score_bound(lo)?,
            max: score_bound(hi)?,
        })
    } else if by_lex {
        RangeBy::Lex(LexRange {
            min: lex_bound(lo)?,
            max: lex_bound(hi)?,
        })
    } else {
        RangeBy::Rank(int(&a[0])?, int(&a[1])?)
    };
    Ok(RangeQuery {
        by,
        rev,
        offset,
        count,
        with_scores,
    })
}

fn range_reply(c: &mut Ctx, key: &[u8], q: RangeQuery) -> CmdResult {
    let items = match c.ks.zset(c.db, key)? {
        Some(z) => run_range(z, &q),
        None => Vec::new(),
    };
    reply_scored(c, &items, q.with_scores);
    Ok(())
}

pub fn zrange(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let q = parse_range(&a[2..], Style::Unified, true)?;
    range_reply(c, &a[1], q)
}
pub fn zrevrange(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let q = parse_range(&a[2..], Style::Rank { rev: true }, true)?;
    range_reply(c, &a[1], q)
}
pub fn zrangebyscore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let q = parse_range(&a[2..], Style::Score { rev: false }, true)?;
    range_reply(c, &a[1], q)
}
pub fn zrevrangebyscore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let q = parse_range(&a[2..], Style::Score { rev: true }, true)?;
    range_reply(c, &a[1], q)
}
pub fn zrangebylex(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let q = parse_range(&a[2..], Style::Lex { rev: false }, false)?;
    range_reply(c, &a[1], q)
}
pub fn zrevrangebylex(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let q = parse_range(&a[2..], Style::Lex { rev: true }, false)?;
    range_reply(c, &a[1], q)
}

/// Stores the result of ZUNIONSTORE and friends (`event`), deleting `dst` when it is empty.
fn store_zset(
    c: &mut Ctx,
    dst: &[u8],
    items: impl IntoIterator<Item = (Str, f64)>,
    event: &'static str,
) -> usize {
    let mut z = ZSet::default();
    for (m, s) in items {
        z.insert(&m, s);
    }
    let n = z.len();
    if n == 0 {
        if c.ks.remove(c.db, dst).is_some() {
            c.notify(notify::GENERIC, "del", dst);
        }
    } else {
        c.ks.set(c.db, dst, Value::ZSet(Box::new(z)));
        c.notify(notify::ZSET, event, dst);
    }
    c.modified(dst);
    n
}

pub fn zrangestore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let q = parse_range(&a[3..], Style::Unified, false)?;
    let items = match c.ks.zset(c.db, &a[2])? {
        Some(z) => run_range(z, &q),
        None => Vec::new(),
    };
    let n = store_zset(c, &a[1], items, "zrangestore");
    c.out.int(n as i64);
    Ok(())
}

pub fn zcount(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = ScoreRange {
        min: score_bound(&a[2])?,
        max: score_bound(&a[3])?,
    };
    let n =
        c.ks.zset(c.db, &a[1])?
            .map_or(0, |z| r.iter(z, false).count());
    c.out.int(n as i64);
    Ok(())
}

pub fn zlexcount(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let r = LexRange {
        min: lex_bound(&a[2])?,
        max: lex_bound(&a[3])?,
    };
    let n =
        c.ks.zset(c.db, &a[1])?
            .map_or(0, |z| z.iter().filter(|(m, _)| r.contains(m)).count());
    c.out.int(n as i64);
    Ok(())
}

fn remrange(c: &mut Ctx, a: &[Bytes], by: RangeBy) -> CmdResult {
    let q = RangeQuery {
        by,
        rev: false,
        offset: 0,
        count: -1,
        with_scores: false,
    };
    let Some(z) = c.ks.zset(c.db, &a[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let doomed = run_range(z, &q);
    for (m, _) in &doomed {
        z.remove(m);
    }
    if !doomed.is_empty() {
        let event = match q.by {
            RangeBy::Rank(..) => "zremrangebyrank",
            RangeBy::Score(_) => "zremrangebyscore",
            RangeBy::Lex(_) => "zremrangebylex",
        };
        c.changed(&a[1], notify::ZSET, event);
        c.ks.remove_if_empty(c.db, &a[1]);
    }
    c.out.int(doomed.len() as i64);
    Ok(())
}

pub fn zremrangebyrank(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let by = RangeBy::Rank(int(&a[2])?, int(&a[3])?);
    remrange(c, a, by)
}
pub fn zremrangebyscore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let by = RangeBy::Score(ScoreRange {
        min: score_bound(&a[2])?,
        max: score_bound(&a[3])?,
    });
    remrange(c, a, by)
}
pub fn zremrangebylex(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let by = RangeBy::Lex(LexRange {
        min: lex_bound(&a[2])?,
        max: lex_bound(&a[3])?,
    });
    remrange(c, a, by)
}

/// Pops up to `count` lowest (or highest) members of the zset at `key`.
fn pop_members(
    c: &mut Ctx,
    key: &[u8],
    max: bool,
    count: usize,
) -> Result<Vec<(Str, f64)>, CmdError> {
    let Some(z) = c.ks.zset(c.db, key)? else {
        return Ok(Vec::new());
    };
    let picked: Vec<(Str, f64)> = if max {
        z.iter()
            .rev()
            .take(count)
            .map(|(m, s)| (m.clone(), s))
            .collect()
    } else {
        z.iter().take(count).map(|(m, s)| (m.clone(), s)).collect()
    };
    for (m, _) in &picked {
        z.remove(m);
    }
    if !picked.is_empty() {
        c.changed(key, notify::ZSET, if max { "zpopmax" } else { "zpopmin" });
        c.ks.remove_if_empty(c.db, key);
    }
    Ok(picked)
}

fn zpop_generic(c: &mut Ctx, a: &[Bytes], max: bool) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = a.get(2).map(|n| uint(n)).transpose()?;
    let picked = pop_members(c, &a[1], max, count.unwrap_or(1) as usize)?;
    if count.is_some() && c.out.protocol == resp::Protocol::Resp3 {
        reply_scored(c, &picked, true);
    } else {
        c.out.array(picked.len() * 2);
        for (m, s) in &picked {
            c.out.bulk(m);
            c.out.double(*s);
        }
    }
    Ok(())
}

pub fn zpopmin(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    zpop_generic(c, a, false)
}
pub fn zpopmax(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    zpop_generic(c, a, true)
}

fn bzpop_generic(c: &mut Ctx, a: &[Bytes], max: bool) -> CmdResult {
    let deadline = timeout_arg(c, &a[a.len() - 1])?;
    let keys = &a[1..a.len() - 1];
    for key in keys {
        let picked = pop_members(c, key, max, 1)?;
        if let Some((m, s)) = picked.first() {
            let name: &[u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
            c.propagate(&[name, key]);
            c.out.array(3);
            c.out.bulk(key);
            c.out.bulk(m);
            c.out.double(*s);
            return Ok(());
        }
    }
    block_or_null(c, keys, deadline);
    Ok(())
}

pub fn bzpopmin(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    bzpop_generic(c, a, false)
}
pub fn bzpopmax(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    bzpop_generic(c, a, true)
}

fn zmpop_args(a: &[Bytes]) -> Result<(&[Bytes], bool, usize), CmdError> {
    let n = int(&a[0])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CmdError::other("ERR numkeys should be greater than 0"))?
        as usize;
    if a.len() < n + 2 {
        return Err(CmdError::Syntax);
    }
    let max = if is(&a[1 + n], "max") {
        true
    } else if is(&a[1 + n], "min") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let count = match &a[2 + n..] {
        [] => 1,
        [o, v] if is(o, "count") => int(v)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| CmdError::other("ERR count should be greater than 0"))?
            as usize,
        _ => return Err(CmdError::Syntax),
    };
    Ok((&a[1..1 + n], max, count))
}

fn zmpop_run(c: &mut Ctx, keys: &[Bytes], max: bool, count: usize) -> Result<bool, CmdError> {
    for key in keys {
        let picked = pop_members(c, key, max, count)?;
        if !picked.is_empty() {
            c.out.array(2);
            c.out.bulk(key);
            c.out.array(picked.len());
            for (m, s) in &picked {
                c.out.array(2);
                c.out.bulk(m);
                c.out.double(*s);
            }
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn zmpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let (keys, max, count) = zmpop_args(&a[1..])?;
    if !zmpop_run(c, keys, max, count)? {
        c.out.null_array();
    }
    Ok(())
}

pub fn bzmpop(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let deadline = timeout_arg(c, &a[1])?;
    let (keys, max, count) = zmpop_args(&a[2..])?;
    if zmpop_run(c, keys, max, count)? {
        let mut zmpop: Vec<&[u8]> = vec![b"ZMPOP"];
        zmpop.extend(a[2..].iter().map(|x| x.as_ref()));
        c.propagate(&zmpop);
    } else {
        block_or_null(c, keys, deadline);
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(agg: Aggregate, a: f64, b: f64) -> f64 {
    match agg {
        // inf + -inf is NaN; Redis stores 0 then.
        Aggregate::Sum => {
            let s = a + b;
            if s.is_nan() { 0.0 } else { s }
        }
        Aggregate::Min => a.min(b),
        Aggregate::Max => a.max(b),
    }
}

/// Reads the members of a zset or set (scores 1) under `key`.
fn source_members(c: &mut Ctx, key: &[u8]) -> Result<Option<Vec<(Str, f64)>>, CmdError> {
    Ok(match c.ks.lookup(c.db, key) {
        None => None,
        Some(Value::ZSet(z)) => Some(z.iter().map(|(m, s)| (m.clone(), s)).collect()),
        Some(Value::Set(s)) => Some(s.iter().map(|m| (m.clone(), 1.0)).collect()),
        Some(_) => return Err(CmdError::WrongType),
    })
}

/// ZUNION/ZINTER/ZDIFF and their STORE forms: `a` starts at numkeys.
fn combine(
    c: &mut Ctx,
    a: &[Bytes],
    op: SetOp,
    cmd: &str,
    allow_scores: bool,
) -> Result<(Vec<(Str, f64)>, bool), CmdError> {
    let n = int(&a[0])?;
    if n <= 0 {
        return Err(CmdError::other(format!(
            "ERR at least 1 input key is needed for '{cmd}' command"
        )));
    }
    let n = n as usize;
    if n > a.len() - 1 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[1..1 + n];
    let mut weights = vec![1.0; n];
    let mut agg = Aggregate::Sum;
    let mut with_scores = false;
    let mut i = 1 + n;
    while i < a.len() {
        if op != SetOp::Diff && is(&a[i], "weights") && i + n < a.len() {
            for (j, w) in weights.iter_mut().enumerate() {
                *w = resp::parse_f64(&a[i + 1 + j])
                    .ok_or_else(|| CmdError::other("ERR weight value is not a float"))?;
            }
            i += n + 1;
        } else if op != SetOp::Diff && is(&a[i], "aggregate") && i + 1 < a.len() {
            let v = &a[i + 1];
            agg = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            i += 2;
        } else if allow_scores && is(&a[i], "withscores") {
            with_scores = true;
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let mut sources = Vec::with_capacity(n);
    for k in keys {
        sources.push(source_members(c, k)?);
    }
    let weighted = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() { 0.0 } else { v }
    };
    let mut acc: std::collections::HashMap<Str, f64> = std::collections::HashMap::new();
    match op {
        SetOp::Union => {
            for (src, &w) in sources.iter().zip(&weights) {
                for (m, s) in src.iter().flatten() {
                    let v = weighted(*s, w);
                    acc.entry(m.clone())
                        .and_modify(|cur| *cur = aggregate(agg, *cur, v))
                        .or_insert(v);
                }
            }
        }
        SetOp::Inter => {
            if sources.iter().all(|s| s.is_some()) {
                let maps: Vec<std::collections::HashMap<&Str, f64>> = sources
                    .iter()
                    .map(|s| s.iter().flatten().map(|(m, s)| (m, *s)).collect())
                    .collect();
                for (m, s) in sources[0].iter().flatten() {
                    let mut v = weighted(*s, weights[0]);
                    let mut everywhere = true;
                    for (j, map) in maps.iter().enumerate().skip(1) {
                        match map.get(m) {
                            Some(&o) => v = aggregate(agg, v, weighted(o, weights[j])),
                            None => {
                                everywhere = false;
                                break;
                            }
                        }
                    }
                    if everywhere {
                        acc.insert(m.clone(), v);
                    }
                }
            }
        }
        SetOp::Diff => {
            if let Some(first) = &sources[0] {
                let others: std::collections::HashSet<&Str> = sources[1..]
                    .iter()
                    .flatten()
                    .flat_map(|s| s.iter().map(|(m, _)| m))
                    .collect();
                for (m, s) in first {
                    if !others.contains(m) {
                        acc.insert(m.clone(), *s);
                    }
                }
            }
        }
    }
    let mut out: Vec<(Str, f64)> = acc.into_iter().collect();
    out.sort_by(|x, y| Score(x.1).cmp(&Score(y.1)).then_with(|| x.0.cmp(&y.0)));
    Ok((out, with_scores))
}

fn store_generic(c: &mut Ctx, a: &[Bytes], op: SetOp) -> CmdResult {
    let cmd = lossy(&a[0]).to_lowercase();
    let (items, _) = combine(c, &a[2..], op, &cmd, false)?;
    let event = match op {
        SetOp::Union => "zunionstore",
        SetOp::Inter => "zinterstore",
        SetOp::Diff => "zdiffstore",
    };
    let n = store_zset(c, &a[1], items, event);
    c.out.int(n as i64);
    Ok(())
}

fn read_generic(c: &mut Ctx, a: &[Bytes], op: SetOp) -> CmdResult {
    let cmd = lossy(&a[0]).to_lowercase();
    let (items, with_scores) = combine(c, &a[1..], op, &cmd, true)?;
    reply_scored(c, &items, with_scores);
    Ok(())
}

pub fn zunionstore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    store_generic(c, a, SetOp::Union)
}
pub fn zinterstore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    store_generic(c, a, SetOp::Inter)
}
pub fn zdiffstore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    store_generic(c, a, SetOp::Diff)
}
pub fn zunion(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    read_generic(c, a, SetOp::Union)
}
pub fn zinter(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    read_generic(c, a, SetOp::Inter)
}
pub fn zdiff(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    read_generic(c, a, SetOp::Diff)
}

pub fn zintercard(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    // Redis words this like the other ZUNION/ZINTER family commands (SINTERCARD differs).
    if int(&a[1])? < 1 {
        return Err(CmdError::other(
            "ERR at least 1 input key is needed for 'zintercard' command",
        ));
    }
    let (keys, limit) = super::sets::numkeys_and_limit(a)?;
    let mut args = vec![Bytes::from(keys.len().to_string())];
    args.extend(keys.iter().cloned());
    let (items, _) = combine(c, &args, SetOp::Inter, "zintercard", false)?;
    let n = if limit > 0 {
        items.len().min(limit)
    } else {
        items.len()
    };
    c.out.int(n as i64);
    Ok(())
}

pub fn zrandmember(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let count = a
        .get(2)
        .map(|n| super::sets::random_count(n, false))
        .transpose()?;
    let with_scores = match a.get(3) {
        None => false,
        Some(o) if is(o, "withscores") && a.len() == 4 => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    if with_scores {
        super::sets::random_count(&a[2], true)?;
    }
    let z = c.ks.zset(c.db, &a[1])?;
    let Some(count) = count else {
        match z.and_then(|z| z.members.random()) {
            Some(m) => c.out.bulk(&m.name),
            None => c.out.null(),
        }
        return Ok(());
    };
    if count < 0 {
        let resp3_pairs = with_scores && c.out.protocol == resp::Protocol::Resp3;
        let per_pick = if with_scores && !resp3_pairs { 2 } else { 1 };
        let members = z.map(|z| &z.members);
        super::sets::write_repeated(c.out, members, count.unsigned_abs(), per_pick, |out, m| {
            if resp3_pairs {
                out.array(2);
            }
            out.bulk(&m.name);
            if with_scores {
                out.double(m.score);
            }
        });
        return Ok(());
    }
    let picked: Vec<(Str, f64)> = match z {
        None => Vec::new(),
        Some(z) => super::sets::sample(&z.members, count)
            .into_iter()
            .map(|m| (m.name.clone(), m.score))
            .collect(),
    };
    reply_scored(c, &picked, with_scores);
    Ok(())
}

pub fn zscan(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let o = parse_scan(a, 2, false)?;
    let Some(z) = c.ks.zset(c.db, &a[1])? else {
        write_scan_reply(c, 0, &[]);
        return Ok(());
    };
    let mut found = Vec::new();
    let next = scan_dict(&z.members, &o, |m| {
        if o.pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, &m.name, false))
        {
            found.push(m.name.clone());
            let mut text = Vec::new();
            resp::format_double(m.score, &mut text);
            found.push(Str::from_vec(text));
        }
    });
    write_scan_reply(c, next, &found);
    Ok(())
}
