//! SORT and SORT_RO: the elements of a list, set or sorted set, ordered by themselves or by
//! other keys (`BY`), with other keys fetched beside them (`GET`), optionally stored as a
//! list (`STORE`).

use std::cmp::Ordering;

use bytes::Bytes;

use crate::ctx::{int, is};
use crate::{CmdError, CmdResult, Ctx, Str, Value, notify};

/// What SORT was asked to do.
#[derive(Debug, Default)]
struct SortArgs<'a> {
    desc: bool,
    alpha: bool,
    /// `LIMIT offset count` (count < 0: to the end).
    limit: Option<(i64, i64)>,
    by: Option<&'a [u8]>,
    gets: Vec<&'a [u8]>,
    store: Option<&'a [u8]>,
}

/// Parses SORT's options in Redis's way: each option may repeat, the last wins.
fn parse(a: &[Bytes], readonly: bool) -> Result<SortArgs<'_>, CmdError> {
    let mut o = SortArgs::default();
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let arg = &a[j];
        if is(arg, "asc") {
            o.desc = false;
        } else if is(arg, "desc") {
            o.desc = true;
        } else if is(arg, "alpha") {
            o.alpha = true;
        } else if is(arg, "limit") && left >= 2 {
            o.limit = Some((int(&a[j + 1])?, int(&a[j + 2])?));
            j += 2;
        } else if !readonly && is(arg, "store") && left >= 1 {
            o.store = Some(&a[j + 1]);
            j += 1;
        } else if is(arg, "by") && left >= 1 {
            o.by = Some(&a[j + 1]);
            j += 1;
        } else if is(arg, "get") && left >= 1 {
            o.gets.push(&a[j + 1]);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

pub fn sort(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    sort_generic(c, a, false)
}

pub fn sort_ro(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    sort_generic(c, a, true)
}

/// Where the elements come from, which decides whether "no sort" keeps an order.
#[derive(PartialEq, Eq)]
enum Source {
    Ordered,
    Set,
}

fn sort_generic(c: &mut Ctx, a: &[Bytes], readonly: bool) -> CmdResult {
    let o = parse(a, readonly)?;
    // A BY pattern without '*' names one key for every element: nothing to sort by.
    let mut dont_sort = o.by.is_some_and(|p| !p.contains(&b'*'));
    let mut alpha = o.alpha;
    let mut by = o.by;
    let (source, mut elements): (Source, Vec<Str>) = match c.ks.lookup(c.db, &a[1]) {
        None => (Source::Ordered, Vec::new()),
        Some(Value::List(l)) => (Source::Ordered, l.iter().cloned().collect()),
        Some(Value::Set(s)) => (Source::Set, s.iter().cloned().collect()),
        Some(Value::ZSet(z)) => (Source::Ordered, z.iter().map(|(m, _)| m.clone()).collect()),
        Some(_) => return Err(CmdError::WrongType),
    };
    // A set's order is its hash order: a stored result or a script's must not depend on it
    // (replicas and the AOF replay them), so Redis sorts it alphabetically then.
    if dont_sort && source == Source::Set && (o.store.is_some() || c.in_script) {
        dont_sort = false;
        alpha = true;
        by = None;
    }
    if dont_sort && o.desc && source == Source::Ordered {
        elements.reverse();
    }
    let len = elements.len() as i64;
    let (offset, count) = o.limit.unwrap_or((0, -1));
    let start = offset.clamp(0, len);
    let count = count.clamp(-1, len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    let start = if start >= len {
        end = len - 2;
        len - 1
    } else {
        start
    };
    end = end.min(len - 1);

    if !dont_sort {
        let mut keyed = Vec::with_capacity(elements.len());
        for e in elements {
            let by_value = match by {
                Some(pattern) => lookup_by_pattern(c, pattern, &e),
                None => Some(e.as_bytes().to_vec()),
            };
            let key = if alpha {
                SortKey::Text(by.and(by_value))
            } else {
                let score = match by_value {
                    None => 0.0,
                    Some(v) => strtod(&v).ok_or_else(|| {
                        CmdError::other("ERR One or more scores can't be converted into double")
                    })?,
                };
                SortKey::Score(score)
            };
            keyed.push((key, e));
        }
        keyed.sort_by(|(ka, ea), (kb, eb)| {
            let ord = match (ka, kb) {
                (SortKey::Score(x), SortKey::Score(y)) => x
                    .partial_cmp(y)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| ea.as_bytes().cmp(eb.as_bytes())),
                (SortKey::Text(Some(x)), SortKey::Text(Some(y))) => x.cmp(y),
                (SortKey::Text(None), SortKey::Text(None)) => {
                    if by.is_some() {
                        Ordering::Equal
                    } else {
                        ea.as_bytes().cmp(eb.as_bytes())
                    }
                }
                (SortKey::Text(None), _) => Ordering::Less,
                (_, SortKey::Text(None)) => Ordering::Greater,
                _ => Ordering::Equal,
            };
            if o.desc { ord.reverse() } else { ord }
        });
        elements = keyed.into_iter().map(|(_, e)| e).collect();
    }

    let picked: &[Str] = if end >= start {
        &elements[start as usize..=end as usize]
    } else {
        &[]
    };
    // Each element, or what each GET pattern finds for it (None: nothing there).
    let mut rows: Vec<Option<Vec<u8>>> = Vec::new();
    for e in picked {
        if o.gets.is_empty() {
            rows.push(Some(e.as_bytes().to_vec()));
        }
        for pattern in &o.gets {
            rows.push(lookup_by_pattern(c, pattern, e));
        }
    }
    match o.store {
        None => {
            c.out.array(rows.len());
            for r in &rows {
                match r {
                    Some(v) => c.out.bulk(v),
                    None => c.out.null(),
                }
            }
        }
        Some(dst) => {
            let n = rows.len();
            if n == 0 {
                if c.ks.remove(c.db, dst).is_some() {
                    c.changed(dst, notify::GENERIC, "del");
                }
            } else {
                let list = rows
                    .into_iter()
                    .map(|r| Str::from_vec(r.unwrap_or_default()))
                    .collect();
                c.ks.set(c.db, dst, Value::List(Box::new(list)));
                c.changed(dst, notify::LIST, "sortstore");
            }
            c.out.int(n as i64);
        }
    }
    Ok(())
}

enum SortKey {
    Score(f64),
    /// ALPHA: the BY value (None: its key is missing, or no BY).
    Text(Option<Vec<u8>>),
}

/// Reads a score the way C's strtod does for SORT: leading spaces allowed, the whole text
/// must be a number, an empty text is 0; NaN and overflow are refused.
fn strtod(v: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(v).ok()?.trim_start();
    if text.is_empty() {
        return Some(0.0);
    }
    let n: f64 = text.parse().ok()?;
    let spelled_inf = text
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    (!n.is_nan() && (n.is_finite() || spelled_inf)).then_some(n)
}

/// What a BY or GET pattern finds for `element`: "#" is the element itself; otherwise the
/// first '*' is replaced by it, and a `->field` suffix reads that field of a hash. A pattern
/// without '*', a missing key or a key of another type finds nothing.
fn lookup_by_pattern(c: &mut Ctx, pattern: &[u8], element: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(element.to_vec());
    }
    let star = pattern.iter().position(|&b| b == b'*')?;
    let after = &pattern[star + 1..];
    let (postfix, field) = match after.windows(2).position(|w| w == b"->") {
        Some(arrow) if arrow + 2 < after.len() => (&after[..arrow], Some(&after[arrow + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(star + element.len() + postfix.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(postfix);
    match (c.ks.lookup(c.db, &key)?, field) {
        (Value::Str(s), None) => Some(s.as_bytes().to_vec()),
        (Value::Hash(h), Some(f)) => h.get(f).map(|f| f.value.as_bytes().to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_read_like_strtod() {
        for (text, want) in [
            ("1.5", Some(1.5)),
            ("  2", Some(2.0)),
            ("", Some(0.0)),
            ("-inf", Some(f64::NEG_INFINITY)),
            ("1e400", None),
            ("nan", None),
            ("3x", None),
            ("x", None),
        ] {
            assert_eq!(strtod(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn options_parse_like_redis() {
        let args = |s: &str| -> Vec<Bytes> {
            s.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        let a = args("sort k by w_* get # get h_*->f limit 1 2 desc alpha store d");
        let o = parse(&a, false).unwrap();
        assert!(o.desc && o.alpha);
        assert_eq!(o.limit, Some((1, 2)));
        assert_eq!(o.by, Some(b"w_*".as_slice()));
        assert_eq!(o.gets, vec![b"#".as_slice(), b"h_*->f".as_slice()]);
        assert_eq!(o.store, Some(b"d".as_slice()));
        assert!(matches!(
            parse(&args("sort k store d"), true),
            Err(CmdError::Syntax)
        ));
        assert!(matches!(
            parse(&args("sort k limit 1"), false),
            Err(CmdError::Syntax)
        ));
        assert!(matches!(
            parse(&args("sort k limit x 1"), false),
            Err(CmdError::NotInteger)
        ));
    }
}
