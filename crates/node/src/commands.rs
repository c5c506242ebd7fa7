//! Connection and server commands: AUTH, HELLO, SELECT, CLIENT, MULTI/EXEC, WATCH,
//! pub/sub, INFO, CONFIG, COMMAND, DEBUG, TIME and the persistence entry points.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use keyspace::{CmdError, Spec, Str, Value, flags};
use resp::{Protocol, ReplyBuf};

use crate::config::DebugCommand;
use crate::dispatch::{Flow, exec};
use crate::state::{KeyUsed, ReplyMode, State, remove_subscriber};
use crate::{info, persist};

type Result<T> = std::result::Result<T, CmdError>;

fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

fn save_failed(e: anyhow::Error) -> CmdError {
    tracing::warn!(error = %e, "save failed");
    CmdError::other(format!("ERR {e:#}"))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unknown_sub(cmd: &str, sub: &[u8]) -> CmdError {
    CmdError::UnknownSubcommand {
        cmd: cmd.into(),
        sub: lossy(sub),
    }
}

pub(crate) fn help(out: &mut ReplyBuf, lines: &[&str]) {
    out.array(lines.len());
    lines.iter().for_each(|l| out.simple(l));
}

pub fn run(
    st: &mut State,
    id: u64,
    spec: &'static Spec,
    a: &[Bytes],
    out: &mut ReplyBuf,
    in_exec: bool,
) -> Result<Flow> {
    match spec.name {
        "ping" => ping(st, id, a, out),
        "echo" => out.bulk(&a[1]),
        "slowlog" => {
            keyspace::check_subcommand_arity(
                "slowlog",
                a,
                &[("get", -2), ("len", 2), ("reset", 2), ("help", 2)],
            )?;
            crate::introspect_cmd::slowlog(st, a, out)?
        }
        "latency" => {
            keyspace::check_subcommand_arity(
                "latency",
                a,
                &[
                    ("doctor", 2),
                    ("graph", 3),
                    ("history", 3),
                    ("latest", 2),
                    ("reset", -2),
                    ("histogram", -2),
                    ("help", 2),
                ],
            )?;
            crate::introspect_cmd::latency(st, a, out)?
        }
        "auth" => auth(st, id, a, out)?,
        "hello" => hello(st, id, a, out)?,
        "quit" => {
            out.ok();
            return Ok(Flow::Close);
        }
        "reset" => reset(st, id, out),
        "select" => {
            let n = resp::parse_i64(&a[1]).ok_or(CmdError::NotInteger)?;
            if n < 0 || n as usize >= st.ks.db_count() {
                return Err(CmdError::DbIndexOutOfRange);
            }
            client(st, id).db = n as usize;
            out.ok();
        }
        "client" => {
            keyspace::check_subcommand_arity(
                "client",
                a,
                &[
                    ("id", 2),
                    ("getname", 2),
                    ("setname", 3),
                    ("info", 2),
                    ("list", -2),
                    ("kill", -3),
                    ("unblock", -3),
                    ("no-evict", 3),
                    ("reply", 3),
                    ("tracking", -3),
                    ("caching", 3),
                    ("getredir", 2),
                    ("pause", -3),
                    ("unpause", 2),
                    ("trackinginfo", 2),
                    ("help", 2),
                ],
            )?;
            return client_cmd(st, id, a, out);
        }
        "command" => {
            if a.len() > 1 {
                keyspace::check_subcommand_arity(
                    "command",
                    a,
                    &[
                        ("count", 2),
                        ("list", -2),
                        ("info", -2),
                        ("docs", -2),
                        ("getkeys", -4),
                        ("getkeysandflags", -4),
                        ("help", 2),
                    ],
                )?;
            }
            command(a, out)?
        }
        "info" => {
            let text = info::render(st, a.get(1..).unwrap_or_default());
            out.verbatim(text.as_bytes());
        }
        "config" => {
            keyspace::check_subcommand_arity(
                "config",
                a,
                &[
                    ("get", -3),
                    ("set", -4),
                    ("resetstat", 2),
                    ("rewrite", 2),
                    ("help", 2),
                ],
            )?;
            config(st, id, a, out)?;
            // A lower maxmemory-clients may have evicted the client that set it.
            if st.clients.get(&id).is_some_and(|c| c.killed.is_killed()) {
                return Ok(Flow::Close);
            }
        }
        "time" => {
            let now_us = crate::unix_time_us();
            out.array(2);
            out.bulk_int((now_us / 1_000_000) as i64);
            out.bulk_int((now_us % 1_000_000) as i64);
        }
        "debug" => debug(st, id, a, out)?,
        "cluster" => {
            return Err(CmdError::other(
                "ERR This instance has cluster support disabled",
            ));
        }
        "migrate" => {
            return Err(CmdError::other(
                "IOERR MIGRATE is not served: this node does not move keys to other servers",
            ));
        }
        "acl" => {
            let whoami = client(st, id).user.clone();
            let whoami = whoami.as_deref().unwrap_or("default");
            let changed = crate::acl::acl_command(&mut st.users, whoami, a, out)?;
            // Sessions of a deleted user end, as in Redis.
            for c in st.clients.values() {
                if c.user
                    .as_deref()
                    .is_some_and(|u| changed.deleted.iter().any(|d| d == u))
                {
                    c.kill();
                }
            }
        }
        "monitor" => {
            if in_exec {
                return Err(CmdError::other(
                    "ERR MONITOR isn't allowed for DENY BLOCKING client",
                ));
            }
            if !st.monitors.contains(&id) {
                st.monitors.push(id);
            }
            out.ok();
        }
        "dump" => {
            let db = client(st, id).db;
            let compress = st.config.rdbcompression;
            match st.ks.get(db, &a[1]) {
                Some(e) => {
                    let payload = persist::dump_payload(e, compress)
                        .map_err(|e| CmdError::other(format!("ERR {e}")))?;
                    out.bulk(&payload);
                }
                None => out.null(),
            }
        }
        "restore" => restore(st, id, a, out)?,
        "lastsave" => out.int(st.rdb.last_save_unix as i64),
        "eval" => return crate::scripting::eval(st, id, a, out, false, false),
        "evalsha" => return crate::scripting::eval(st, id, a, out, true, false),
        "eval_ro" => return crate::scripting::eval(st, id, a, out, false, true),
        "evalsha_ro" => return crate::scripting::eval(st, id, a, out, true, true),
        "fcall" => return crate::scripting::fcall(st, id, a, out, false),
        "fcall_ro" => return crate::scripting::fcall(st, id, a, out, true),
        "script" => return crate::scripting::script_command(st, a, out),
        "function" => return crate::scripting::function_command(st, a, out),
        "cacheplane" => {
            keyspace::check_subcommand_arity(
                "cacheplane",
                a,
                &[("backup", 2), ("events", 2), ("setkeys", 4), ("help", 2)],
            )?;
            match lossy(&a[1]).to_ascii_lowercase().as_str() {
                "backup" => {
                    let key = st.backup_now().map_err(save_failed)?;
                    out.bulk(key.as_bytes());
                }
                "setkeys" => {
                    let key = |b: &Bytes| (!b.is_empty()).then(|| lossy(b));
                    st.set_passwords(key(&a[2]), key(&a[3]));
                    out.ok();
                }
                "events" => {
                    // Drained: each event is handed out once, to whoever keeps the accounting.
                    let events: Vec<blob::BlobEvent> = st
                        .ship
                        .events
                        .lock()
                        .expect("event log lock")
                        .recent
                        .drain(..)
                        .collect();
                    out.bulk(crate::ship::events_to_lines(&events).as_bytes());
                }
                "help" => help(
                    out,
                    &[
                        "CACHEPLANE <subcommand>. Subcommands are:",
                        "BACKUP",
                        "    Stream a snapshot into the RDB storage account now; replies with its key.",
                        "EVENTS",
                        "    Take the object-store events recorded since the last call, one per line:",
                        "    unix-ms, kind, bytes, account, key, tab-separated (for the accounting).",
                        "SETKEYS <primary> <secondary>",
                        "    Replace the access keys; sessions opened with a replaced key are closed.",
                    ],
                ),
                _ => return Err(unknown_sub("cacheplane", &a[1])),
            }
        }
        "save" => {
            if st.rdb.job.is_some() {
                return Err(CmdError::other("ERR Background save already in progress"));
            }
            st.save().map_err(save_failed)?;
            out.ok();
        }
        "bgsave" => {
            if a.len() > 2 || a.get(1).is_some_and(|o| !is(o, "schedule")) {
                return Err(CmdError::Syntax);
            }
            if st.rdb.bgsave_in_progress() {
                return Err(CmdError::other("ERR Background save already in progress"));
            }
            if st.rdb.aof_rewrite_in_progress() {
                return Err(CmdError::other(
                    "ERR An AOF log rewriting in progress: can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
                ));
            }
            st.bgsave().map_err(save_failed)?;
            out.simple("Background saving started");
        }
        "bgrewriteaof" => {
            if st.rdb.aof_rewrite_in_progress() {
                return Err(CmdError::other(
                    "ERR Background append only file rewriting already in progress",
                ));
            }
            if st.aof.is_none() {
                // Redis rewrites a file it does not append to as well; this node keeps no
                // AOF without appendonly.
                return Err(CmdError::other(
                    "ERR the append only file is off (appendonly no)",
                ));
            }
            if st.rdb.job.is_some() {
                st.rdb.aof_rewrite_scheduled = true;
                out.simple("Background append only file rewriting scheduled");
            } else {
                st.rewrite_aof().map_err(save_failed)?;
                out.simple("Background append only file rewriting started");
            }
        }
        "shutdown" => {
            for opt in &a[1..] {
                if !["nosave", "save", "now", "force", "abort"]
                    .iter()
                    .any(|o| is(opt, o))
                {
                    return Err(CmdError::Syntax);
                }
            }
            if a[1..].iter().any(|o| is(o, "abort")) {
                return Err(CmdError::other("ERR No shutdown in progress."));
            }
            let nosave = a[1..].iter().any(|o| is(o, "nosave"));
            let force_save = a[1..].iter().any(|o| is(o, "save"));
            let force = a[1..].iter().any(|o| is(o, "force"));
            if let Err(e) = st.save_on_shutdown(nosave, force_save)
                && !force
            {
                tracing::warn!(error = %e, "error trying to save the DB, can't exit");
                return Err(CmdError::other(
                    "ERR Errors trying to SHUTDOWN. Check logs.",
                ));
            }
            return Ok(Flow::Shutdown);
        }
        "multi" => {
            let c = client(st, id);
            if c.multi.is_some() {
                return Err(CmdError::other("ERR MULTI calls can not be nested"));
            }
            c.multi = Some(Vec::new());
            c.multi_error = false;
            out.ok();
        }
        "exec" => return exec(st, id, out),
        "discard" => {
            let c = client(st, id);
            if c.multi.take().is_none() {
                return Err(CmdError::other("ERR DISCARD without MULTI"));
            }
            c.multi_error = false;
            st.unwatch_all(id);
            out.ok();
        }
        "watch" => {
            if client(st, id).multi.is_some() {
                return Err(CmdError::other("ERR WATCH inside MULTI is not allowed"));
            }
            let db = client(st, id).db;
            for key in &a[1..] {
                st.watch(id, db, key);
            }
            out.ok();
        }
        "unwatch" => {
            st.unwatch_all(id);
            out.ok();
        }
        "subscribe" => subscribe(st, id, a, out, Namespace::Channels),
        "psubscribe" => subscribe(st, id, a, out, Namespace::Patterns),
        "ssubscribe" => subscribe(st, id, a, out, Namespace::Shard),
        "unsubscribe" => unsubscribe(st, id, a, out, Namespace::Channels),
        "punsubscribe" => unsubscribe(st, id, a, out, Namespace::Patterns),
        "sunsubscribe" => unsubscribe(st, id, a, out, Namespace::Shard),
        "publish" => {
            let n = st.publish(&a[1], &a[2]);
            out.int(n as i64);
        }
        "spublish" => {
            let n = st.spublish(&a[1], &a[2]);
            out.int(n as i64);
        }
        "pubsub" => {
            keyspace::check_subcommand_arity(
                "pubsub",
                a,
                &[
                    ("channels", -2),
                    ("numsub", -2),
                    ("numpat", 2),
                    ("shardchannels", -2),
                    ("shardnumsub", -2),
                    ("help", 2),
                ],
            )?;
            pubsub(st, a, out)?
        }
        "memory" => {
            keyspace::check_subcommand_arity("memory", a, &[("usage", -3), ("help", 2)])?;
            memory(st, id, a, out)?
        }
        "wait" => {
            resp::parse_i64(&a[1]).ok_or(CmdError::NotInteger)?;
            resp::parse_i64(&a[2])
                .filter(|t| *t >= 0)
                .ok_or(CmdError::NotInteger)?;
            out.int(0);
        }
        "readonly" | "readwrite" => {
            return Err(CmdError::other(
                "ERR This instance has cluster support disabled",
            ));
        }
        other => return Err(CmdError::other(format!("ERR '{other}' is not implemented"))),
    }
    let _ = in_exec;
    Ok(Flow::Continue)
}

/// An `on`/`off` argument.
fn on_off(a: &[u8]) -> Result<bool> {
    if is(a, "on") {
        Ok(true)
    } else if is(a, "off") {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

fn client(st: &mut State, id: u64) -> &mut crate::state::Client {
    st.clients
        .get_mut(&id)
        .expect("client of a running command")
}

fn ping(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) {
    let c = client(st, id);
    if c.protocol == Protocol::Resp2 && c.subscriptions() > 0 {
        out.array(2);
        out.bulk(b"pong");
        out.bulk(a.get(1).map(|b| b.as_ref()).unwrap_or(b""));
        return;
    }
    match a.get(1) {
        Some(msg) if a.len() == 2 => out.bulk(msg),
        Some(_) => out.error(&CmdError::WrongArity("ping".into()).to_string()),
        None => out.simple("PONG"),
    }
}

/// Which of the node's passwords `pass` is, compared in constant time (a timing difference
/// must not tell an attacker how much of a key they guessed).
pub(crate) fn password_used(st: &State, user: &[u8], pass: &[u8]) -> Option<KeyUsed> {
    if !is(user, "default") {
        return None;
    }
    let matches = |p: &Option<String>| {
        p.as_deref()
            .is_some_and(|p| bool::from(subtle::ConstantTimeEq::ct_eq(p.as_bytes(), pass)))
    };
    // Every comparison runs, whichever matches.
    let admin = matches(&st.config.admin_key);
    let primary = matches(&st.config.requirepass);
    let secondary = st.config.requirepass.is_some() && matches(&st.config.requirepass_secondary);
    if admin {
        Some(KeyUsed::Admin)
    } else if primary {
        Some(KeyUsed::Primary)
    } else if secondary {
        Some(KeyUsed::Secondary)
    } else {
        None
    }
}

fn auth(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    let (user, pass) = match a.len() {
        2 => (&b"default"[..], &a[1]),
        3 => (a[1].as_ref(), &a[2]),
        _ => return Err(CmdError::Syntax),
    };
    if st.config.requirepass.is_none()
        && a.len() == 2
        && password_used(st, user, pass) != Some(KeyUsed::Admin)
    {
        return Err(CmdError::other(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    }
    sign_in(st, id, user, pass)?;
    out.ok();
    Ok(())
}

/// Signs client `id` in as `user` (AUTH, HELLO AUTH). The default user's password is
/// `requirepass` or its secondary (or the control plane's admin key), and without one it
/// accepts anything, as Redis's `nopass` default user does; other users are the ACL's.
fn sign_in(st: &mut State, id: u64, user: &[u8], pass: &[u8]) -> Result<()> {
    let wrongpass =
        || CmdError::other("WRONGPASS invalid username-password pair or user is disabled.");
    if !is(user, "default") {
        let name = lossy(user);
        if !st.users.get(&name).is_some_and(|u| u.accepts(pass)) {
            return Err(wrongpass());
        }
        let c = client(st, id);
        c.authenticated = true;
        c.key_used = None;
        c.user = Some(name.into());
        return Ok(());
    }
    let used = password_used(st, user, pass);
    if used.is_none() && st.config.requirepass.is_some() {
        return Err(wrongpass());
    }
    let c = client(st, id);
    c.authenticated = true;
    c.key_used = used;
    c.user = None;
    Ok(())
}

fn hello(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    let mut protocol = client(st, id).protocol;
    let mut i = 1;
    if let Some(v) = a.get(1) {
        protocol = match resp::parse_i64(v) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Err(CmdError::other("NOPROTO unsupported protocol version")),
            None => {
                return Err(CmdError::other(
                    "ERR Protocol version is not an integer or out of range",
                ));
            }
        };
        i = 2;
    }
    let mut name = None;
    while i < a.len() {
        if is(&a[i], "auth") && i + 2 < a.len() {
            sign_in(st, id, &a[i + 1], &a[i + 2])?;
            i += 3;
        } else if is(&a[i], "setname") && i + 1 < a.len() {
            name = Some(a[i + 1].clone());
            i += 2;
        } else {
            return Err(CmdError::other(format!(
                "ERR Syntax error in HELLO option '{}'",
                lossy(&a[i])
            )));
        }
    }
    let requirepass = st.config.requirepass.is_some();
    let c = client(st, id);
    if requirepass && !c.authenticated {
        return Err(CmdError::other(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(n) = name {
        c.name = Some(n);
    }
    c.protocol = protocol;
    out.protocol = protocol;
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(crate::REDIS_VERSION.as_bytes());
    out.bulk(b"proto");
    out.int(if protocol == Protocol::Resp3 { 3 } else { 2 });
    out.bulk(b"id");
    out.int(id as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(b"master");
    out.bulk(b"modules");
    out.array(0);
    Ok(())
}

fn reset(st: &mut State, id: u64, out: &mut ReplyBuf) {
    st.unwatch_all(id);
    crate::tracking::disable(st, id);
    st.monitors.retain(|m| *m != id);
    client(st, id).user = None;
    let requirepass = st.config.requirepass.is_some();
    let c = client(st, id);
    c.multi = None;
    c.multi_error = false;
    c.db = 0;
    c.protocol = Protocol::Resp2;
    c.name = None;
    c.authenticated = !requirepass;
    c.key_used = None;
    st.drop_subscriptions(id);
    out.protocol = Protocol::Resp2;
    out.simple("RESET");
}

/// One client's CLIENT LIST line; `running`: the size of the request it runs now (the
/// client asking: still in its query buffer, and its arguments' memory, as Redis shows).
pub(crate) fn client_line(st: &State, c: &crate::state::Client, running: usize) -> String {
    let now = st.ks.now_ms();
    let mut flags = String::new();
    for (on, flag) in [
        (c.subscriptions() > 0, 'P'),
        (c.multi.is_some(), 'x'),
        (c.blocked.is_some(), 'b'),
        (c.no_evict, 'e'),
    ] {
        if on {
            flags.push(flag);
        }
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let m = &c.memory;
    let qbuf = m.query_unparsed() as usize + running;
    let qbuf_free = (m.query_buf() as usize).saturating_sub(qbuf);
    let multi_mem = if c.multi.as_ref().is_some_and(|q| !q.is_empty()) {
        c.multi_bytes
    } else {
        0
    };
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={flags} db={} sub={} psub={} ssub={} multi={} qbuf={qbuf} qbuf-free={qbuf_free} argv-mem={running} multi-mem={multi_mem} rbs=0 rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r cmd={} user={} redir={} resp={}",
        c.id,
        c.addr,
        c.laddr,
        c.name.as_ref().map(|n| lossy(n)).unwrap_or_default(),
        now.saturating_sub(c.created_ms) / 1000,
        now.saturating_sub(c.last_ms) / 1000,
        c.db,
        c.channels.len(),
        c.patterns.len(),
        c.shard_channels.len(),
        c.multi.as_ref().map_or(-1, |q| q.len() as i64),
        m.output(),
        m.total() + running as u64,
        if c.last_cmd.is_empty() {
            "NULL"
        } else {
            &c.last_cmd
        },
        c.user.as_deref().unwrap_or("default"),
        crate::tracking::redirect_of(st, c.id),
        if c.protocol == Protocol::Resp3 { 3 } else { 2 },
    )
}

/// The size of `args` as a RESP request (what the query buffer held for it).
fn request_bytes(args: &[Bytes]) -> usize {
    let header = |n: usize| 3 + itoa::Buffer::new().format(n).len();
    header(args.len())
        + args
            .iter()
            .map(|a| header(a.len()) + a.len() + 2)
            .sum::<usize>()
}

fn client_cmd(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<Flow> {
    let sub = lossy(&a[1]).to_ascii_lowercase();
    match (sub.as_str(), a.len()) {
        ("id", 2) => out.int(id as i64),
        ("getname", 2) => match &client(st, id).name {
            Some(n) => out.bulk(n),
            None => out.null(),
        },
        ("setname", 3) => {
            if a[2].iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return Err(CmdError::other(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            client(st, id).name = (!a[2].is_empty()).then(|| a[2].clone());
            out.ok();
        }
        ("info", 2) => {
            let line = client_line(st, &st.clients[&id], request_bytes(a)) + "\n";
            out.verbatim(line.as_bytes());
        }
        ("list", _) => {
            let mut ids: Vec<u64> = st.clients.keys().copied().collect();
            let mut i = 2;
            while i < a.len() {
                if is(&a[i], "id") && i + 1 < a.len() {
                    let wanted: Vec<u64> = a[i + 1..]
                        .iter()
                        .map(|v| {
                            resp::parse_i64(v)
                                .filter(|n| *n > 0)
                                .map(|n| n as u64)
                                .ok_or(CmdError::other("ERR Invalid client ID"))
                        })
                        .collect::<Result<_>>()?;
                    ids.retain(|x| wanted.contains(x));
                    i = a.len();
                } else if is(&a[i], "type") && i + 1 < a.len() {
                    let t = lossy(&a[i + 1]).to_ascii_lowercase();
                    match t.as_str() {
                        "normal" => ids.retain(|x| st.clients[x].subscriptions() == 0),
                        "pubsub" => ids.retain(|x| st.clients[x].subscriptions() > 0),
                        "master" | "replica" | "slave" => ids.clear(),
                        _ => return Err(CmdError::other(format!("ERR Unknown client type '{t}'"))),
                    }
                    i += 2;
                } else {
                    return Err(CmdError::Syntax);
                }
            }
            ids.sort_unstable();
            let text: String = ids
                .iter()
                .map(|x| {
                    let qbuf = if *x == id { request_bytes(a) } else { 0 };
                    client_line(st, &st.clients[x], qbuf) + "\n"
                })
                .collect();
            out.verbatim(text.as_bytes());
        }
        ("kill", _) => return client_kill(st, id, a, out),
        ("unblock", 3 | 4) => {
            let target = resp::parse_i64(&a[2]).ok_or(CmdError::NotInteger)? as u64;
            let as_error = match a.get(3) {
                None => false,
                Some(m) if is(m, "timeout") => false,
                Some(m) if is(m, "error") => true,
                Some(_) => {
                    return Err(CmdError::other(
                        "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                    ));
                }
            };
            let protocol = st.clients.get(&target).map(|c| c.protocol);
            match (protocol, st.unblock(target)) {
                (Some(p), Some(b)) => {
                    let mut r = ReplyBuf::new(p);
                    if as_error {
                        const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";
                        // The blocked command failed: counted as Redis counts it.
                        if let Some(spec) = keyspace::lookup(&b.args[0]) {
                            st.intro.commands.entry(spec, &b.args).failed_calls += 1;
                        }
                        st.intro.errors.record(UNBLOCKED.as_bytes());
                        r.error(UNBLOCKED)
                    } else {
                        r.null_array()
                    }
                    *b.slot.reply.lock().expect("slot lock") = Some(r.take());
                    b.slot.notify.notify_one();
                    out.int(1);
                }
                _ => out.int(0),
            }
        }
        ("reply", 3) => {
            let mode = if is(&a[2], "on") {
                ReplyMode::On
            } else if is(&a[2], "off") {
                ReplyMode::Off
            } else if is(&a[2], "skip") {
                ReplyMode::SkipNext
            } else {
                return Err(CmdError::Syntax);
            };
            client(st, id).reply = mode;
            out.ok();
        }
        ("tracking", _) => {
            crate::tracking::tracking_command(st, id, a)?;
            out.ok();
        }
        ("caching", 3) => {
            crate::tracking::caching_command(st, id, a)?;
            out.ok();
        }
        ("getredir", 2) => out.int(crate::tracking::redirect_of(st, id)),
        ("pause", 3 | 4) => {
            let ms = resp::parse_i64(&a[2])
                .filter(|ms| *ms >= 0)
                .ok_or_else(|| CmdError::other("ERR timeout is not an integer or out of range"))?;
            let writes_only = match a.get(3) {
                None => false,
                Some(m) if is(m, "all") => false,
                Some(m) if is(m, "write") => true,
                Some(_) => return Err(CmdError::Syntax),
            };
            let until_ms = st.ks.now_ms().saturating_add(ms as u64);
            // A pause in force is only ever extended and widened, as in Redis.
            st.pause = Some(match st.pause {
                Some(p) => crate::state::Pause {
                    until_ms: p.until_ms.max(until_ms),
                    writes_only: p.writes_only && writes_only,
                },
                None => crate::state::Pause {
                    until_ms,
                    writes_only,
                },
            });
            out.ok();
        }
        ("unpause", 2) => {
            st.pause = None;
            st.unpaused.notify_waiters();
            out.ok();
        }
        ("trackinginfo", 2) => crate::tracking::info_reply(st, id, out),
        ("no-evict", 3) => {
            let on = on_off(&a[2])?;
            client(st, id).no_evict = on;
            // Turned off, the client counts again at once (Redis evicts it if it must).
            if !on && st.evict_clients(id) {
                return Ok(Flow::Close);
            }
            out.ok();
        }
        ("no-touch", 3) => {
            on_off(&a[2])?;
            out.ok();
        }
        ("help", 2) => help(
            out,
            &[
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "ID",
                "INFO",
                "KILL <ip:port> | ID <client-id> | ADDR <ip:port> | LADDR <ip:port> | TYPE <type> | SKIPME (YES|NO)",
                "LIST [TYPE <type>] [ID <client-id> [<client-id> ...]]",
                "SETNAME <name>",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "HELP",
            ],
        ),
        _ => return Err(unknown_sub("CLIENT", &a[1])),
    }
    Ok(Flow::Continue)
}

fn client_kill(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<Flow> {
    let old_form = a.len() == 3;
    let (mut by_id, mut addr, mut laddr, mut kind, mut skipme) = (None, None, None, None, true);
    if old_form {
        addr = Some(lossy(&a[2]));
        skipme = false;
    } else {
        if a.len() < 4 || !a.len().is_multiple_of(2) {
            return Err(CmdError::Syntax);
        }
        for pair in a[2..].chunks(2) {
            let v = lossy(&pair[1]);
            if is(&pair[0], "id") {
                by_id = Some(
                    resp::parse_i64(&pair[1])
                        .filter(|n| *n > 0)
                        .ok_or(CmdError::other("ERR client-id should be greater than 0"))?
                        as u64,
                );
            } else if is(&pair[0], "addr") {
                addr = Some(v);
            } else if is(&pair[0], "laddr") {
                laddr = Some(v);
            } else if is(&pair[0], "type") {
                let k = v.to_ascii_lowercase();
                if !matches!(
                    k.as_str(),
                    "normal" | "pubsub" | "master" | "replica" | "slave"
                ) {
                    return Err(CmdError::other(format!("ERR Unknown client type '{v}'")));
                }
                kind = Some(k);
            } else if is(&pair[0], "user") {
                if v != "default" {
                    return Err(CmdError::other(format!("ERR No such user '{v}'")));
                }
            } else if is(&pair[0], "skipme") {
                skipme = match v.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(CmdError::Syntax),
                };
            } else {
                return Err(CmdError::Syntax);
            }
        }
    }
    let victims: Vec<u64> = st
        .clients
        .values()
        .filter(|c| by_id.is_none_or(|x| c.id == x))
        .filter(|c| addr.as_ref().is_none_or(|x| &c.addr == x))
        .filter(|c| laddr.as_ref().is_none_or(|x| &c.laddr == x))
        .filter(|c| match kind.as_deref() {
            None => true,
            Some("normal") => c.subscriptions() == 0,
            Some("pubsub") => c.subscriptions() > 0,
            Some(_) => false,
        })
        .filter(|c| !(skipme && c.id == id))
        .map(|c| c.id)
        .collect();
    let mut close_self = false;
    for v in &victims {
        if *v == id {
            close_self = true;
        } else if let Some(c) = st.clients.get(v) {
            c.kill();
        }
    }
    if old_form {
        if victims.is_empty() {
            return Err(CmdError::other("ERR No such client"));
        }
        out.ok();
    } else {
        out.int(victims.len() as i64);
    }
    Ok(if close_self {
        Flow::Close
    } else {
        Flow::Continue
    })
}

/// What a command does with its `i`-th key (at argument `pos`), in Redis's key-spec flags
/// (COMMAND GETKEYSANDFLAGS): read-only access, removal, insertion, or overwrite, told from
/// the command's kind, as Redis's key specs tell them for the common shapes.
fn key_flags(spec: &Spec, i: usize, pos: usize) -> &'static [&'static str] {
    const RO: &[&str] = &["RO", "access"];
    const OVERWRITE: &[&str] = &["OW", "update"];
    if !spec.is(flags::WRITE) {
        return RO;
    }
    match spec.name {
        "del" | "unlink" | "getdel" => &["RM", "delete"],
        "set" | "mset" | "msetnx" | "setex" | "psetex" | "getset" => OVERWRITE,
        "lpush" | "rpush" | "lpushx" | "rpushx" | "sadd" | "linsert" => &["RW", "insert"],
        // Moves: the source gives an element up, the destination takes it.
        "lmove" | "rpoplpush" | "blmove" | "brpoplpush" | "smove" if i == 0 => {
            &["RW", "access", "delete"]
        }
        "lmove" | "rpoplpush" | "blmove" | "brpoplpush" | "smove" => &["RW", "insert"],
        // A stored result: the sources are read, the destination (first, or after STORE)
        // overwritten.
        "sort" | "georadius" | "georadiusbymember" if i > 0 => OVERWRITE,
        "sort" | "georadius" | "georadiusbymember" => RO,
        n if n.ends_with("store") && pos == 1 => OVERWRITE,
        n if n.ends_with("store") => RO,
        _ => &["RW", "access", "update"],
    }
}

/// The subcommands of container commands, as COMMAND LIST names them (`client|list`).
pub(crate) const SUBCOMMANDS: &[(&str, &[&str])] = &[
    (
        "acl",
        &[
            "cat", "deluser", "dryrun", "genpass", "getuser", "help", "list", "load", "log",
            "save", "setuser", "users", "whoami",
        ],
    ),
    (
        "client",
        &[
            "caching",
            "getname",
            "getredir",
            "help",
            "id",
            "info",
            "kill",
            "list",
            "no-evict",
            "pause",
            "reply",
            "setname",
            "tracking",
            "trackinginfo",
            "unblock",
            "unpause",
        ],
    ),
    (
        "cluster",
        &[
            "help", "info", "keyslot", "myid", "nodes", "reset", "shards", "slots",
        ],
    ),
    (
        "command",
        &[
            "count",
            "docs",
            "getkeys",
            "getkeysandflags",
            "help",
            "info",
            "list",
        ],
    ),
    ("config", &["get", "help", "resetstat", "rewrite", "set"]),
    (
        "function",
        &[
            "delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats",
        ],
    ),
    (
        "latency",
        &[
            "doctor",
            "graph",
            "help",
            "histogram",
            "history",
            "latest",
            "reset",
        ],
    ),
    (
        "memory",
        &["doctor", "help", "malloc-stats", "purge", "stats", "usage"],
    ),
    (
        "object",
        &["encoding", "freq", "help", "idletime", "refcount"],
    ),
    (
        "pubsub",
        &[
            "channels",
            "help",
            "numpat",
            "numsub",
            "shardchannels",
            "shardnumsub",
        ],
    ),
    (
        "script",
        &["debug", "exists", "flush", "help", "kill", "load"],
    ),
    ("slowlog", &["get", "help", "len", "reset"]),
    (
        "xgroup",
        &[
            "create",
            "createconsumer",
            "delconsumer",
            "destroy",
            "help",
            "setid",
        ],
    ),
    ("xinfo", &["consumers", "groups", "help", "stream"]),
];

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN glob]: commands and their
/// subcommands (`container|sub`), filtered.
fn command_list(a: &[Bytes]) -> Result<Vec<String>> {
    enum Filter<'a> {
        All,
        Module,
        Category(String),
        Pattern(&'a [u8]),
    }
    let filter = match &a[2..] {
        [] => Filter::All,
        [by, kind, value] if is(by, "filterby") => {
            if is(kind, "module") {
                Filter::Module
            } else if is(kind, "aclcat") {
                Filter::Category(lossy(value).to_ascii_lowercase())
            } else if is(kind, "pattern") {
                Filter::Pattern(value)
            } else {
                return Err(CmdError::Syntax);
            }
        }
        _ => return Err(CmdError::Syntax),
    };
    let mut names = Vec::new();
    for spec in keyspace::commands() {
        let subs = SUBCOMMANDS
            .iter()
            .find(|(c, _)| *c == spec.name)
            .map_or(&[][..], |(_, subs)| *subs);
        let full = std::iter::once(spec.name.to_string())
            .chain(subs.iter().map(|s| format!("{}|{s}", spec.name)));
        let keep = |name: &str| match &filter {
            Filter::All => true,
            // No modules here.
            Filter::Module => false,
            Filter::Category(c) => crate::acl::categories(spec).contains(&c.as_str()),
            Filter::Pattern(p) => keyspace::glob_match(p, name.as_bytes(), true),
        };
        names.extend(full.filter(|n| keep(n)));
    }
    Ok(names)
}

fn command(a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    let all = keyspace::commands();
    let info = |out: &mut ReplyBuf, s: &Spec| {
        out.array(10);
        out.bulk(s.name.as_bytes());
        out.int(s.arity as i64);
        let names: Vec<&str> = flags::NAMES
            .iter()
            .filter(|(f, _)| s.is(*f))
            .map(|(_, n)| *n)
            .collect();
        out.set(names.len());
        names.iter().for_each(|n| out.simple(n));
        out.int(s.first_key as i64);
        out.int(s.last_key as i64);
        out.int(s.step as i64);
        let categories = crate::acl::categories(s);
        out.set(categories.len());
        categories.iter().for_each(|c| out.simple(&format!("@{c}")));
        out.set(0);
        out.array(0);
        out.array(0);
    };
    let Some(sub) = a.get(1) else {
        out.array(all.len());
        all.iter().for_each(|s| info(out, s));
        return Ok(());
    };
    match lossy(sub).to_ascii_lowercase().as_str() {
        "count" => out.int(all.len() as i64),
        "info" => {
            let wanted: Vec<Option<&Spec>> = if a.len() == 2 {
                all.iter().map(Some).collect()
            } else {
                a[2..].iter().map(|n| keyspace::lookup(n)).collect()
            };
            out.array(wanted.len());
            for s in wanted {
                match s {
                    Some(s) => info(out, s),
                    None => out.null_array(),
                }
            }
        }
        "docs" => {
            let docs = crate::command_docs::docs();
            let names: Vec<String> = if a.len() == 2 {
                all.iter().map(|s| s.name.to_owned()).collect()
            } else {
                // Known commands, and subcommands by their `parent|sub` names, as Redis.
                a[2..]
                    .iter()
                    .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
                    .filter(|n| keyspace::lookup(n.as_bytes()).is_some() || docs.get(n).is_some())
                    .collect()
            };
            out.map(names.len());
            for n in names {
                out.bulk(n.as_bytes());
                docs.write(&n, out);
            }
        }
        "list" => {
            let names = command_list(a)?;
            out.array(names.len());
            names.iter().for_each(|n| out.bulk(n.as_bytes()));
        }
        sub @ ("getkeys" | "getkeysandflags") if a.len() >= 3 => {
            let spec = keyspace::lookup(&a[2])
                .ok_or_else(|| CmdError::other("ERR Invalid command specified"))?;
            if !spec.arity_ok(a.len() - 2) {
                return Err(CmdError::other(
                    "ERR Invalid number of arguments specified for command",
                ));
            }
            let pos = spec.keys(&a[2..]);
            // Scripts may declare no keys (Redis's no_mandatory_keys).
            if pos.is_empty() && !crate::scripting::runs_script(spec.name) {
                return Err(CmdError::other("ERR The command has no key arguments"));
            }
            out.array(pos.len());
            for (i, &p) in pos.iter().enumerate() {
                if sub == "getkeys" {
                    out.bulk(&a[2 + p]);
                    continue;
                }
                let flags = key_flags(spec, i, p);
                out.array(2);
                out.bulk(&a[2 + p]);
                out.set(flags.len());
                flags.iter().for_each(|f| out.simple(f));
            }
        }
        "help" => help(
            out,
            &[
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "COUNT",
                "DOCS",
                "GETKEYS",
                "INFO",
                "LIST",
                "HELP",
            ],
        ),
        _ => return Err(unknown_sub("COMMAND", sub)),
    }
    Ok(())
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]: a DUMP payload back
/// into a key. Access times are not tracked here, so IDLETIME and FREQ are checked only.
fn restore(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    let (mut replace, mut absolute) = (false, false);
    let mut j = 4;
    while j < a.len() {
        let opt = lossy(&a[j]).to_ascii_lowercase();
        let value = a.get(j + 1).map(|v| resp::parse_i64(v));
        match (opt.as_str(), value) {
            ("replace", _) => replace = true,
            ("absttl", _) => absolute = true,
            ("idletime", Some(v)) => {
                if v.ok_or(CmdError::NotInteger)? < 0 {
                    return Err(CmdError::other("ERR Invalid IDLETIME value, must be >= 0"));
                }
                j += 1;
            }
            ("freq", Some(v)) => {
                if !(0..=255).contains(&v.ok_or(CmdError::NotInteger)?) {
                    return Err(CmdError::other(
                        "ERR Invalid FREQ value, must be >= 0 and <= 255",
                    ));
                }
                j += 1;
            }
            _ => return Err(CmdError::Syntax),
        }
        j += 1;
    }
    let db = client(st, id).db;
    let key = &a[1];
    let ttl = resp::parse_i64(&a[2]).ok_or(CmdError::NotInteger)?;
    if !replace && st.ks.contains(db, key) {
        return Err(CmdError::other("BUSYKEY Target key name already exists."));
    }
    if ttl < 0 {
        return Err(CmdError::other("ERR Invalid TTL value, must be >= 0"));
    }
    let value = persist::restore_payload(&a[3], st.config.proto_max_bulk_len_bytes as u64)
        .map_err(|e| CmdError::other(e.to_string()))?;
    let now = st.ks.now_ms();
    let expire_at = match ttl {
        0 => None,
        t if absolute => Some(t as u64),
        t => Some(now.saturating_add(t as u64)),
    };
    let removed = replace && st.ks.remove(db, key).is_some();
    // A deadline already past: the key is gone at once (Redis replies OK all the same).
    if expire_at.is_some_and(|at| at <= now) {
        if removed {
            st.ks.dirty += 1;
            st.ks.touch(db, key);
            st.ks.notify(keyspace::notify::GENERIC, "del", db, key);
            st.ks
                .feed_push(db, vec![Bytes::from_static(b"DEL"), key.clone()]);
        }
        out.ok();
        return Ok(());
    }
    st.ks.set_with_expiry(db, key, value, expire_at);
    st.ks.dirty += 1;
    st.ks.touch(db, key);
    st.ks.notify(keyspace::notify::GENERIC, "restore", db, key);
    // Logged with an absolute deadline, so a replay later restores the same expiry.
    let mut logged = vec![
        Bytes::from_static(b"RESTORE"),
        key.clone(),
        Bytes::from(expire_at.unwrap_or(0).to_string()),
        a[3].clone(),
        Bytes::from_static(b"REPLACE"),
    ];
    if expire_at.is_some() {
        logged.push(Bytes::from_static(b"ABSTTL"));
    }
    st.ks.feed_push(db, logged);
    out.ok();
    Ok(())
}

fn config(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    let sub = lossy(&a[1]).to_ascii_lowercase();
    match sub.as_str() {
        "get" if a.len() >= 3 => {
            let mut found: Vec<(String, String)> = Vec::new();
            for pattern in &a[2..] {
                // A plain name is looked up (aliases and hidden settings too), as Redis does.
                if !pattern.iter().any(|b| b"[*?".contains(b)) {
                    let name = lossy(pattern).to_ascii_lowercase();
                    if let Some(value) = st.config.get(&name)
                        && !found.iter().any(|(n, _)| *n == name)
                    {
                        found.push((name, value));
                    }
                    continue;
                }
                for name in crate::config::parameters() {
                    if keyspace::glob_match(pattern, name.as_bytes(), true)
                        && !found.iter().any(|(n, _)| *n == name)
                    {
                        found.push((name.into(), st.config.get(name).unwrap_or_default()));
                    }
                }
            }
            out.map(found.len());
            for (n, v) in found {
                out.bulk(n.as_bytes());
                out.bulk(v.as_bytes());
            }
        }
        "set" if a.len() >= 4 && a.len().is_multiple_of(2) => {
            // All or nothing, as Redis 7 applies several parameters.
            let mut next = st.config.clone();
            let local = client(st, id).local;
            let mut seen: Vec<String> = Vec::new();
            for pair in a[2..].chunks(2) {
                let name = lossy(&pair[0]).to_ascii_lowercase();
                // A setting named twice is refused, as Redis does (a name and its alias
                // are two entries there, so that pair passes).
                if crate::config::is_known(&name) {
                    if seen.contains(&name) {
                        return Err(CmdError::other(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
                        )));
                    }
                    seen.push(name.clone());
                }
                if crate::config::is_protected(&name)
                    && !allowed(st.config.enable_protected_configs, local)
                {
                    return Err(CmdError::other(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - {}",
                        crate::config::ConfigError::Protected
                    )));
                }
                next.set(&name, &lossy(&pair[1])).map_err(|e| {
                    let reason = match e {
                        crate::config::ConfigError::UnknownDirective(_) => {
                            return CmdError::other(format!(
                                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                            ));
                        }
                        other => other.to_string(),
                    };
                    CmdError::other(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
                    ))
                })?;
            }
            // The log's file, directory and flusher are set up at start.
            let fixed = [
                ("appendonly", next.appendonly != st.config.appendonly),
                ("appendfsync", next.appendfsync != st.config.appendfsync),
                (
                    "appenddirname",
                    next.appenddirname != st.config.appenddirname,
                ),
                (
                    "appendfilename",
                    next.appendfilename != st.config.appendfilename,
                ),
                ("databases", next.databases != st.config.databases),
            ];
            if let Some((name, _)) = fixed.iter().find(|(_, changed)| *changed) {
                return Err(CmdError::other(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - can't change it at runtime on this node; restart it with the new value"
                )));
            }
            st.config = next;
            st.apply_config();
            st.intro.slowlog.trim(st.intro.settings.slowlog_max_len);
            // A lower maxmemory-clients (or maxmemory under a percentage) evicts at once.
            if st.evict_clients(id) {
                return Ok(());
            }
            out.ok();
        }
        "resetstat" if a.len() == 2 => {
            st.stats = Default::default();
            st.ks.stats = Default::default();
            st.intro.commands.reset();
            st.intro.errors.reset();
            out.ok();
        }
        "rewrite" if a.len() == 2 => {
            return Err(CmdError::other(
                "ERR The server is running without a config file",
            ));
        }
        "help" => help(
            out,
            &[
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "SET <directive> <value>",
                "RESETSTAT",
                "REWRITE",
                "HELP",
            ],
        ),
        _ => {
            return Err(CmdError::other(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                lossy(&a[1])
            )));
        }
    }
    Ok(())
}

/// The three pub/sub namespaces: channels, patterns, and sharded channels (SSUBSCRIBE).
#[derive(Clone, Copy, PartialEq)]
enum Namespace {
    Channels,
    Patterns,
    Shard,
}

impl Namespace {
    fn names(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Namespace::Channels => (b"subscribe", b"unsubscribe"),
            Namespace::Patterns => (b"psubscribe", b"punsubscribe"),
            Namespace::Shard => (b"ssubscribe", b"sunsubscribe"),
        }
    }

    fn of_client(self, c: &mut crate::state::Client) -> &mut HashSet<Bytes> {
        match self {
            Namespace::Channels => &mut c.channels,
            Namespace::Patterns => &mut c.patterns,
            Namespace::Shard => &mut c.shard_channels,
        }
    }

    fn registry(self, st: &mut State) -> &mut HashMap<Bytes, HashSet<u64>> {
        match self {
            Namespace::Channels => &mut st.channels,
            Namespace::Patterns => &mut st.patterns,
            Namespace::Shard => &mut st.shard_channels,
        }
    }

    /// The count a (un)subscribe reply carries: shard subscriptions are counted apart,
    /// as Redis does.
    fn count(self, c: &crate::state::Client) -> usize {
        match self {
            Namespace::Shard => c.shard_channels.len(),
            _ => c.channels.len() + c.patterns.len(),
        }
    }
}

fn subscribe(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf, ns: Namespace) {
    let (kind, _) = ns.names();
    for name in &a[1..] {
        let c = client(st, id);
        let added = ns.of_client(c).insert(name.clone());
        let count = ns.count(c);
        if added {
            ns.registry(st).entry(name.clone()).or_default().insert(id);
        }
        out.push(3);
        out.bulk(kind);
        out.bulk(name);
        out.int(count as i64);
    }
}

fn unsubscribe(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf, ns: Namespace) {
    let (_, kind) = ns.names();
    let names: Vec<Bytes> = if a.len() > 1 {
        a[1..].to_vec()
    } else {
        let mut all: Vec<Bytes> = ns.of_client(client(st, id)).iter().cloned().collect();
        all.sort();
        all
    };
    if names.is_empty() {
        let count = ns.count(client(st, id));
        out.push(3);
        out.bulk(kind);
        out.null();
        out.int(count as i64);
        return;
    }
    for name in names {
        let c = client(st, id);
        let removed = ns.of_client(c).remove(&name);
        let count = ns.count(c);
        if removed {
            remove_subscriber(ns.registry(st), &name, id);
        }
        out.push(3);
        out.bulk(kind);
        out.bulk(&name);
        out.int(count as i64);
    }
}

/// PUBSUB CHANNELS / SHARDCHANNELS: the registry's names matching the optional pattern.
fn channel_names(registry: &HashMap<Bytes, HashSet<u64>>, a: &[Bytes], out: &mut ReplyBuf) {
    let mut names: Vec<&Bytes> = registry
        .keys()
        .filter(|c| a.get(2).is_none_or(|p| keyspace::glob_match(p, c, false)))
        .collect();
    names.sort();
    out.array(names.len());
    names.iter().for_each(|n| out.bulk(n));
}

/// PUBSUB NUMSUB / SHARDNUMSUB: each named channel with its subscriber count.
fn subscriber_counts(registry: &HashMap<Bytes, HashSet<u64>>, a: &[Bytes], out: &mut ReplyBuf) {
    out.map(a.len() - 2);
    for ch in &a[2..] {
        out.bulk(ch);
        out.int(registry.get(ch).map_or(0, |s| s.len()) as i64);
    }
}

fn pubsub(st: &mut State, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    match lossy(&a[1]).to_ascii_lowercase().as_str() {
        "channels" if a.len() <= 3 => channel_names(&st.channels, a, out),
        "numsub" => subscriber_counts(&st.channels, a, out),
        "numpat" if a.len() == 2 => out.int(st.patterns.len() as i64),
        "shardchannels" if a.len() <= 3 => channel_names(&st.shard_channels, a, out),
        "shardnumsub" => subscriber_counts(&st.shard_channels, a, out),
        "help" => help(
            out,
            &[
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "NUMPAT",
                "NUMSUB [<channel> ...]",
                "SHARDCHANNELS [<pattern>]",
                "SHARDNUMSUB [<shardchannel> ...]",
                "HELP",
            ],
        ),
        _ => return Err(unknown_sub("PUBSUB", &a[1])),
    }
    Ok(())
}

fn memory(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    match lossy(&a[1]).to_ascii_lowercase().as_str() {
        "usage" if a.len() == 3 || a.len() == 5 => {
            let db = client(st, id).db;
            match st.ks.get(db, &a[2]) {
                Some(e) => {
                    // The same measure as used_memory counts the key by.
                    out.int(keyspace::memory::entry_bytes(e) as i64)
                }
                None => out.null(),
            }
        }
        "help" => help(
            out,
            &[
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "USAGE <key> [SAMPLES <count>]",
                "HELP",
            ],
        ),
        _ => return Err(unknown_sub("MEMORY", &a[1])),
    }
    Ok(())
}

/// An order-independent digest of the dataset (DEBUG DIGEST): equal datasets give equal
/// digests whatever their encodings; a TTL contributes only its presence, as in Redis.
/// The value is cacheplane's own, not comparable with redis-server's digest.
pub fn dataset_digest(st: &State) -> String {
    fn fnv(acc: &mut u64, bytes: &[u8]) {
        for &b in bytes {
            *acc ^= b as u64;
            *acc = acc.wrapping_mul(0x100000001b3);
        }
        *acc ^= 0xff;
        *acc = acc.wrapping_mul(0x100000001b3);
    }
    let (mut x, mut y) = (0u64, 0u64);
    for db in 0..st.ks.db_count() {
        for e in st.ks.db(db).entries() {
            let mut h = 0xcbf29ce484222325u64;
            fnv(&mut h, &db.to_le_bytes());
            fnv(&mut h, &e.key);
            fnv(&mut h, e.value.kind().name().as_bytes());
            // Collections are unordered: XOR their element hashes.
            let mut part = 0u64;
            let mut elem = |parts: &[&[u8]]| {
                let mut eh = 0xcbf29ce484222325u64;
                parts.iter().for_each(|p| fnv(&mut eh, p));
                part ^= eh;
            };
            match &e.value {
                Value::Str(s) => elem(&[s]),
                Value::List(l) => {
                    let mut lh = 0xcbf29ce484222325u64;
                    l.iter().for_each(|v| fnv(&mut lh, v));
                    part = lh;
                }
                Value::Hash(hm) => hm.iter().for_each(|f| elem(&[&f.name, &f.value])),
                Value::Set(s) => s.iter().for_each(|m| elem(&[m])),
                Value::ZSet(z) => z
                    .iter()
                    .for_each(|(m, sc)| elem(&[m, &sc.to_bits().to_le_bytes()])),
                Value::Stream(st) => {
                    // Entries in order, then the groups: a stream is ordered.
                    let mut sh = 0xcbf29ce484222325u64;
                    for e in st.range(keyspace::StreamId::MIN, keyspace::StreamId::MAX, false, 0) {
                        fnv(&mut sh, e.id.to_string().as_bytes());
                        e.fields.iter().for_each(|f| fnv(&mut sh, f));
                    }
                    fnv(&mut sh, st.last_id.to_string().as_bytes());
                    for (name, g) in &st.groups {
                        fnv(&mut sh, name);
                        fnv(&mut sh, g.last_id.to_string().as_bytes());
                        for (id, n) in &g.pel {
                            fnv(&mut sh, id.to_string().as_bytes());
                            fnv(&mut sh, &n.consumer);
                        }
                    }
                    part = sh;
                }
            }
            fnv(&mut h, &part.to_le_bytes());
            fnv(&mut h, &[e.expire_at_ms().is_some() as u8]);
            x ^= h;
            y = y.wrapping_add(h.rotate_left(17));
        }
    }
    if x == 0 && y == 0 {
        "0".repeat(40)
    } else {
        format!("{x:016x}{y:016x}{:08x}", (x ^ y) as u32)
    }
}

/// Whether a `yes|no|local` guard lets a client through.
fn allowed(guard: DebugCommand, local_client: bool) -> bool {
    match guard {
        DebugCommand::Yes => true,
        DebugCommand::Local => local_client,
        DebugCommand::No => false,
    }
}

fn debug(st: &mut State, id: u64, a: &[Bytes], out: &mut ReplyBuf) -> Result<()> {
    if !allowed(st.config.enable_debug_command, client(st, id).local) {
        return Err(CmdError::other(
            "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.",
        ));
    }
    let db = client(st, id).db;
    match lossy(&a[1]).to_ascii_lowercase().as_str() {
        "reload" => {
            // Save, empty the keyspace and load the file again: checks both directions.
            st.save().map_err(save_failed)?;
            let path = persist::dump_path(&st.config);
            let mut ks = keyspace::Keyspace::new(st.config.databases);
            let now = crate::unix_time_ms();
            ks.set_clock(now);
            persist::load_rdb(&path, &mut ks, now).map_err(|e| {
                CmdError::other(format!("ERR Error trying to load the RDB dump: {e}"))
            })?;
            st.replace_dataset(ks);
            out.ok();
        }
        "sleep" if a.len() == 3 => {
            let secs = resp::parse_f64(&a[2])
                .filter(|s| *s >= 0.0 && s.is_finite())
                .ok_or(CmdError::NotFloat)?;
            // Like Redis, the whole server stops for the duration: the lock is held.
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            out.ok();
        }
        "populate" if (3..=5).contains(&a.len()) => {
            let count = resp::parse_i64(&a[2])
                .filter(|n| *n >= 0)
                .ok_or(CmdError::NotInteger)?;
            let prefix = a.get(3).map(|p| p.as_ref()).unwrap_or(b"key");
            let size = match a.get(4) {
                Some(s) => Some(
                    resp::parse_i64(s)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| CmdError::other("ERR Invalid size"))?
                        as usize,
                ),
                None => None,
            };
            for j in 0..count {
                let mut key = prefix.to_vec();
                key.push(b':');
                key.extend_from_slice(itoa::Buffer::new().format(j).as_bytes());
                if st.ks.contains(db, &key) {
                    continue;
                }
                let mut val = format!("value:{j}").into_bytes();
                if let Some(size) = size {
                    val.resize(size, 0);
                }
                st.ks.set(db, &key, Value::Str(Str::from_vec(val)));
            }
            out.ok();
        }
        "digest" if a.len() == 2 => {
            let d = dataset_digest(st);
            out.simple(&d)
        }
        "object" if a.len() == 3 => match (st.ks.encodings, st.ks.get(db, &a[2])) {
            (limits, Some(e)) => {
                let line = format!(
                    "Value at:0x0 refcount:1 encoding:{} serializedlength:{} lru:0 lru_seconds_idle:0",
                    e.value.encoding(&limits),
                    keyspace::memory::value_bytes(&e.value)
                );
                out.simple(&line)
            }
            (_, None) => return Err(CmdError::NoSuchKey),
        },
        // cacheplane's own, for the fault drills' tests: a node that claims fsyncs it skips.
        "aof-fsync" if a.len() == 3 => {
            let skip = if is(&a[2], "off") {
                true
            } else if is(&a[2], "on") {
                false
            } else {
                return Err(CmdError::Syntax);
            };
            if let Some(log) = &st.aof {
                log.disk
                    .skip
                    .store(skip, std::sync::atomic::Ordering::Relaxed);
            }
            out.ok();
        }
        "pause-cron" if a.len() == 3 => {
            st.cron_paused = resp::parse_i64(&a[2]).ok_or(CmdError::NotInteger)? != 0;
            out.ok();
        }
        // Reply buffers here are one per batch, not resized blocks: nothing to switch.
        "replybuffer" if a.len() == 4 => {
            if !is(&a[2], "resizing") && !is(&a[2], "peak-reset-time") {
                return Err(CmdError::Syntax);
            }
            resp::parse_i64(&a[3]).ok_or(CmdError::NotInteger)?;
            out.ok();
        }
        "set-active-expire" if a.len() == 3 => {
            st.active_expire_enabled = resp::parse_i64(&a[2]).ok_or(CmdError::NotInteger)? != 0;
            out.ok();
        }
        "jmap" => out.ok(),
        // A panic in the middle of a command, with the state lock held (it is poisoned):
        // what a bug would do. The supervisor must notice and restart the node.
        "panic" => panic!("DEBUG PANIC"),
        "help" => help(
            out,
            &[
                "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DIGEST",
                "OBJECT <key>",
                "PANIC",
                "POPULATE <count> [<prefix>] [<size>]",
                "PAUSE-CRON <0|1>",
                "REPLYBUFFER RESIZING|PEAK-RESET-TIME <n>",
                "SET-ACTIVE-EXPIRE <0|1>",
                "SLEEP <seconds>",
                "HELP",
            ],
        ),
        _ => return Err(unknown_sub("DEBUG", &a[1])),
    }
    Ok(())
}
