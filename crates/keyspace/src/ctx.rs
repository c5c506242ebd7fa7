//! What a command runs with: the keyspace, the selected database, and the reply buffer.

use bytes::Bytes;
use resp::ReplyBuf;

use crate::{CmdError, Keyspace, notify};

/// A blocking command found nothing to pop: the connection should wait on these keys until
/// `deadline_ms` (None: forever) and then run the command again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub keys: Vec<Bytes>,
    pub deadline_ms: Option<u64>,
    /// The command to run again when woken, when it differs from the one sent (XREAD's
    /// `$` becomes the ID it stood for when the command blocked).
    pub args: Option<Vec<Bytes>>,
}

pub struct Ctx<'a> {
    pub ks: &'a mut Keyspace,
    pub db: usize,
    pub out: &'a mut ReplyBuf,
    /// Inside MULTI/EXEC blocking commands must not block: they answer as if timed out.
    pub in_multi: bool,
    /// Run by a script: results must not depend on hash order, and XREAD/XREADGROUP refuse
    /// BLOCK there, as in Redis.
    pub in_script: bool,
    /// Replaying a log (Redis's "must obey" clients): logged effects are applied as
    /// written, without the checks and limits put on clients (XADD's LIMIT, XCLAIM's TIME).
    pub replaying: bool,
    /// Set by a blocking command that has to wait.
    pub block: Option<Block>,
    /// Set when the command logged its effect itself ([`Ctx::propagate`]).
    pub propagated: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(ks: &'a mut Keyspace, db: usize, out: &'a mut ReplyBuf) -> Self {
        Ctx {
            ks,
            db,
            out,
            in_multi: false,
            in_script: false,
            replaying: false,
            block: None,
            propagated: false,
        }
    }

    /// Logs `args` to the keyspace's feed (AOF, replicas) as this command's effect, instead
    /// of the command as written: used where replaying the command itself could differ
    /// (relative expiries, random picks, blocking forms, float arithmetic).
    pub fn propagate<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.propagated = true;
        self.ks.feed_push(
            self.db,
            args.iter()
                .map(|a| Bytes::copy_from_slice(a.as_ref()))
                .collect(),
        );
    }

    pub fn now_ms(&self) -> u64 {
        self.ks.now_ms()
    }

    /// Records one change to `key`: counts toward save rules and wakes watchers and waiters.
    pub fn modified(&mut self, key: &[u8]) {
        self.ks.dirty += 1;
        self.ks.touch(self.db, key);
    }

    /// Raises keyspace event `name` of `class` on `key` (see [`crate::notify`]).
    pub fn notify(&mut self, class: notify::Classes, name: &'static str, key: &[u8]) {
        self.ks.notify(class, name, self.db, key);
    }

    /// A change to `key` that raises event `name`: [`Ctx::modified`] and [`Ctx::notify`].
    pub fn changed(&mut self, key: &[u8], class: notify::Classes, name: &'static str) {
        self.modified(key);
        self.notify(class, name, key);
    }
}

/// Case-insensitive comparison of an argument with an option name.
pub fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

pub fn int(arg: &[u8]) -> Result<i64, CmdError> {
    resp::parse_i64(arg).ok_or(CmdError::NotInteger)
}

/// A non-negative integer argument, such as a COUNT.
pub fn uint(arg: &[u8]) -> Result<u64, CmdError> {
    match int(arg)? {
        n if n < 0 => Err(CmdError::other(
            "ERR value is out of range, must be positive",
        )),
        n => Ok(n as u64),
    }
}

pub fn float(arg: &[u8]) -> Result<f64, CmdError> {
    resp::parse_f64(arg).ok_or(CmdError::NotFloat)
}

/// Text for an error message; arguments need not be UTF-8.
pub fn lossy(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Formats a float the way INCRBYFLOAT stores it: the shortest text that reads back the same.
pub fn float_to_str(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{v}");
    if s == "-0" { "0".into() } else { s }
}

/// Resolves Redis-style start/end indexes (negative from the end) against `len`; returns an
/// inclusive range, or None when it is empty.
pub fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as usize, end as usize))
}

/// The subcommand `a` names, one of `table`'s (lowercase), its arity checked as
/// [`check_subcommand_arity`] does; Redis's "unknown subcommand" error for any other.
pub fn subcommand<'t>(
    cmd: &str,
    a: &[Bytes],
    table: &'t [(&'t str, i32)],
) -> Result<&'t str, CmdError> {
    check_subcommand_arity(cmd, a, table)?;
    let sub = lossy(&a[1]).to_ascii_lowercase();
    match table.iter().find(|(name, _)| *name == sub) {
        Some(&(name, _)) => Ok(name),
        None => Err(CmdError::UnknownSubcommand {
            cmd: cmd.to_ascii_uppercase(),
            sub: lossy(&a[1]),
        }),
    }
}

/// Redis 7 checks a subcommand's arity like a command's and names it `cmd|sub`. Unknown
/// subcommands pass, so the command can give its own "unknown subcommand" reply.
pub fn check_subcommand_arity(
    cmd: &str,
    a: &[Bytes],
    table: &[(&str, i32)],
) -> Result<(), CmdError> {
    let sub = lossy(&a[1]).to_ascii_lowercase();
    match table.iter().find(|(name, _)| *name == sub) {
        Some(&(name, arity)) => {
            let n = a.len() as i32;
            let ok = if arity >= 0 { n == arity } else { n >= -arity };
            if ok {
                Ok(())
            } else {
                Err(CmdError::WrongArity(format!("{cmd}|{name}")))
            }
        }
        None => Ok(()),
    }
}
