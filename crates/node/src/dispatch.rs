//! Running one command for one client: the checks Redis makes before a command runs
//! (known, arity, AUTH, pub/sub context, MULTI queueing), then the command itself.

use std::sync::Arc;

use bytes::Bytes;
use keyspace::{CmdError, Ctx, Run, Spec, flags};
use resp::{Protocol, ReplyBuf};

use crate::commands;
use crate::state::{BlockSlot, ReplyMode, State};

/// Redis's refusal of writes without the replicas `min-replicas-to-write` asks for.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// Commands one MULTI may queue. Redis has no bound but memory; here a transaction is
/// refused past it the way a queued command that fails its checks is (EXEC answers
/// EXECABORT), so the client learns why and nothing half-runs.
pub const MULTI_QUEUED_COMMANDS_MAX: usize = 1_000_000;
/// Bytes of arguments (plus [`MULTI_ARG_OVERHEAD_BYTES`] each) one MULTI may queue: as
/// much as one query buffer may hold by default (`client-query-buffer-limit`). The queue
/// also counts in `used_memory`, so under `maxmemory` queueing fails with OOM far sooner.
pub const MULTI_QUEUED_MAX_BYTES: usize = 1024 * 1024 * 1024;
/// What one queued argument costs beyond its bytes (the `Bytes` handle and its share).
pub const MULTI_ARG_OVERHEAD_BYTES: usize = 32;

/// What the connection does after a command.
pub enum Flow {
    Continue,
    /// Write what is buffered, then close (QUIT, CLIENT KILL of itself).
    Close,
    /// Wait for the slot to be filled, or answer "timed out" at the deadline.
    Block {
        slot: Arc<BlockSlot>,
        deadline_ms: Option<u64>,
    },
    /// Stop the whole node (SHUTDOWN).
    Shutdown,
    /// CLIENT PAUSE holds this command: run it again once the pause ends.
    Paused {
        args: Vec<Bytes>,
    },
}

/// Redis's reply to an unknown command, quoting (at most about 128 bytes of) its arguments.
pub fn unknown_command(args: &[Bytes]) -> CmdError {
    let name: String = String::from_utf8_lossy(&args[0])
        .chars()
        .take(128)
        .collect();
    let mut quoted = String::new();
    for a in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        let text: String = String::from_utf8_lossy(a).chars().take(room).collect();
        quoted.push_str(&format!("'{text}' "));
    }
    CmdError::UnknownCommand { name, args: quoted }
}

/// The commands Azure Cache for Redis blocks for its customers (they answer as unknown
/// commands there too), and cacheplane's own internals. DEBUG stays available where the
/// operator enabled it (fault injection in tests).
fn blocked_when_managed(name: &str, config: &crate::NodeConfig) -> bool {
    match name {
        "debug" => config.enable_debug_command == crate::config::DebugCommand::No,
        "acl" | "bgrewriteaof" | "bgsave" | "cluster" | "config" | "migrate" | "psync"
        | "replicaof" | "replconf" | "save" | "shutdown" | "slaveof" | "sync" | "cacheplane"
        | "module" => true,
        _ => false,
    }
}

/// Runs `args` for client `id`, writing the reply into `out` unless CLIENT REPLY turned
/// replies off for it.
pub fn dispatch(st: &mut State, id: u64, args: Vec<Bytes>, out: &mut ReplyBuf) -> Flow {
    let mark = out.len();
    let before = st.clients.get(&id).map_or(ReplyMode::On, |c| c.reply);
    // Subscription confirmations are pushed, and pushes reach even a client whose replies
    // are off, as in Redis.
    let pushes = before != ReplyMode::On
        && ["subscribe", "unsubscribe", "psubscribe", "punsubscribe"]
            .iter()
            .any(|n| args[0].eq_ignore_ascii_case(n.as_bytes()));
    let flow = checked(st, id, args, out);
    let Some(client) = st.clients.get_mut(&id) else {
        return flow;
    };
    let silent = match (before, client.reply) {
        (_, ReplyMode::Off) => true,
        // CLIENT REPLY SKIP itself is not answered; the next command is not either.
        (_, ReplyMode::SkipNext) => {
            client.reply = ReplyMode::Skip;
            true
        }
        (ReplyMode::Skip, ReplyMode::Skip) => {
            client.reply = ReplyMode::On;
            true
        }
        _ => false,
    };
    if silent && !pushes {
        out.truncate(mark);
    }
    flow
}

/// The checks, then the command.
fn checked(st: &mut State, id: u64, args: Vec<Bytes>, out: &mut ReplyBuf) -> Flow {
    let now = st.ks.now_ms();
    let requirepass = st.config.requirepass.is_some();
    st.stats.total_commands_processed += 1;
    let Some(client) = st.clients.get_mut(&id) else {
        return Flow::Close;
    };
    out.protocol = client.protocol;
    client.last_ms = now;
    client.query_buf_release_asked = false;
    let spec = keyspace::lookup(&args[0]).filter(|spec| {
        !(st.config.managed
            && client.key_used != Some(crate::state::KeyUsed::Admin)
            && blocked_when_managed(spec.name, &st.config))
    });
    let Some(spec) = spec else {
        if client.multi.is_some() {
            client.multi_error = true;
        }
        let e = unknown_command(&args).to_string();
        reject(st, None, &args, out, &e);
        return Flow::Continue;
    };
    if !spec.arity_ok(args.len()) {
        if client.multi.is_some() {
            client.multi_error = true;
        }
        let e = CmdError::WrongArity(spec.name.into()).to_string();
        reject(st, Some(spec), &args, out, &e);
        return Flow::Continue;
    }
    if requirepass && !client.authenticated && !spec.is(flags::NO_AUTH) {
        if client.multi.is_some() {
            client.multi_error = true;
        }
        reject(
            st,
            Some(spec),
            &args,
            out,
            "NOAUTH Authentication required.",
        );
        return Flow::Continue;
    }
    if let Some(name) = &client.user {
        let verdict = match st.users.get(name) {
            Some(user) if user.unrestricted() => Ok(()),
            Some(user) => user.check(spec, &args),
            // Deleted meanwhile: its sessions are being closed.
            None => Err(crate::acl::Denied::Command),
        };
        if let Err(denied) = verdict {
            if client.multi.is_some() {
                client.multi_error = true;
            }
            let mut buf = [0u8; crate::introspect::FULL_NAME_BYTES_MAX];
            let full = crate::introspect::subcommand_name(spec.name, &args, &mut buf)
                .unwrap_or(spec.name)
                .to_string();
            reject(st, Some(spec), &args, out, &denied.reply(&full));
            return Flow::Continue;
        }
    }
    if client.protocol == Protocol::Resp2
        && client.subscriptions() > 0
        && !spec.is(flags::PUBSUB_CONTEXT)
    {
        let e = format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        );
        reject(st, Some(spec), &args, out, &e);
        return Flow::Continue;
    }
    // (A busy script holds the state: other clients' commands never get here meanwhile.)
    let out_of_memory = st.maxmemory() > 0 && st.make_room();
    if st.ks.has_written() {
        crate::tracking::after_eviction(st, id, out);
    }
    if out_of_memory && refused_on_oom(st, spec, id, &args) {
        if let Some(c) = st.clients.get_mut(&id)
            && c.multi.is_some()
        {
            c.multi_error = true;
        }
        reject(st, Some(spec), &args, out, crate::memory::OOM);
        return Flow::Continue;
    }
    if spec.is(flags::WRITE) && st.no_good_replicas {
        reject(st, Some(spec), &args, out, NOREPLICAS);
        return Flow::Continue;
    }
    if spec.is(flags::WRITE) && st.ship.spool_full {
        reject(
            st,
            Some(spec),
            &args,
            out,
            "MISCONF the AOF backlog for the primary storage account exceeds aof-spool-max-bytes; writes are refused until it drains (INFO storage)",
        );
        return Flow::Continue;
    }
    let Some(client) = st.clients.get_mut(&id) else {
        return Flow::Close;
    };
    if let Some(queue) = client.multi.as_mut()
        && !matches!(
            spec.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        )
    {
        if spec.is(flags::NO_MULTI) {
            client.multi_error = true;
            reject(
                st,
                Some(spec),
                &args,
                out,
                "ERR Command not allowed inside a transaction",
            );
            return Flow::Continue;
        }
        if queue.is_empty() {
            client.multi_bytes = 0;
        }
        let bytes =
            args.iter().map(|a| a.len()).sum::<usize>() + args.len() * MULTI_ARG_OVERHEAD_BYTES;
        if queue.len() >= MULTI_QUEUED_COMMANDS_MAX
            || client.multi_bytes + bytes > MULTI_QUEUED_MAX_BYTES
        {
            // As for any command refused while queueing: EXEC will answer EXECABORT.
            client.multi_error = true;
            let e = format!(
                "ERR the transaction is over its limit ({MULTI_QUEUED_COMMANDS_MAX} commands or {MULTI_QUEUED_MAX_BYTES} bytes queued)"
            );
            reject(st, Some(spec), &args, out, &e);
            return Flow::Continue;
        }
        client.multi_bytes += bytes;
        queue.push(args);
        out.simple("QUEUED");
        return Flow::Continue;
    }
    if paused_for(st, spec, id, &args) {
        return Flow::Paused { args };
    }
    run(st, id, spec, args, out, false)
}

/// Whether `spec` is refused while memory is over `maxmemory` (Redis's `denyoom`
/// commands; EXEC of a transaction holding one; scripts that declare they may write and
/// not `allow-oom`; and, inside MULTI, anything queued, whose queue would grow unbounded).
fn refused_on_oom(st: &State, spec: &Spec, id: u64, args: &[Bytes]) -> bool {
    let Some(client) = st.clients.get(&id) else {
        return false;
    };
    match spec.name {
        "exec" => client
            .multi
            .iter()
            .flatten()
            .any(|q| keyspace::lookup(&q[0]).is_some_and(|s| s.is(flags::DENYOOM))),
        "discard" | "quit" | "reset" => false,
        _ if client.multi.is_some() => true,
        "eval" | "evalsha" | "fcall" => crate::scripting::refused_on_oom(st, spec.name, args),
        _ => spec.is(flags::DENYOOM),
    }
}

/// Whether CLIENT PAUSE holds `spec` now: every command (ALL), or writes (WRITE; EXEC of a
/// transaction with writes, scripts that may write, PUBLISH). Lapsed pauses are cleared.
fn paused_for(st: &mut State, spec: &Spec, id: u64, args: &[Bytes]) -> bool {
    let Some(pause) = st.pause else {
        return false;
    };
    if pause.until_ms <= st.ks.now_ms() {
        st.pause = None;
        return false;
    }
    if !pause.writes_only {
        return true;
    }
    match spec.name {
        // Scripts wait unless they declare they do not write.
        "eval" | "evalsha" | "fcall" => crate::scripting::may_write(st, spec.name, args),
        // Commands that reach replicas without the write flag.
        "publish" | "pfcount" => true,
        "exec" => st.clients.get(&id).is_some_and(|c| {
            c.multi
                .iter()
                .flatten()
                .any(|q| keyspace::lookup(&q[0]).is_some_and(|s| s.is(flags::WRITE)))
        }),
        _ => spec.is(flags::WRITE),
    }
}

/// Answers a command refused before it ran, counting the refusal as Redis does: a rejected
/// call of the command (when it is known) and an error reply.
fn reject(
    st: &mut State,
    spec: Option<&'static Spec>,
    args: &[Bytes],
    out: &mut ReplyBuf,
    e: &str,
) {
    if let Some(spec) = spec {
        st.intro.commands.entry(spec, args).rejected_calls += 1;
    }
    st.intro.errors.record(e.as_bytes());
    out.error(e);
}

/// Runs a command that passed the checks, then records it (statistics, latency monitor,
/// slow log). `in_exec`: inside EXEC or a script, where nothing blocks.
pub fn run(
    st: &mut State,
    id: u64,
    spec: &'static Spec,
    args: Vec<Bytes>,
    out: &mut ReplyBuf,
    in_exec: bool,
) -> Flow {
    // Nested runs (EXEC, scripts) move the clock on; this command's own start is kept.
    let started = st.intro.clock_us;
    let mark = out.len();
    // Scripts and functions show before the commands they run; others once they ran.
    let script = crate::scripting::runs_script(spec.name);
    let monitored = !st.monitors.is_empty() && !spec.is(flags::ADMIN);
    if monitored && script {
        monitor_feed(st, id, spec, &args);
    }
    let mut name_buf = [0u8; crate::introspect::FULL_NAME_BYTES_MAX];
    let subcommand = crate::introspect::subcommand_name(spec.name, &args, &mut name_buf);
    let flow = execute(st, id, spec, subcommand, &args, out, in_exec);
    if monitored && !script && !st.monitors.is_empty() {
        monitor_feed(st, id, spec, &args);
    }
    if st.ks.has_events() {
        st.publish_events();
    }
    if st.tracking.clients > 0 || st.ks.has_written() {
        crate::tracking::after_command(st, id, spec, &args, in_exec);
    }
    let now = crate::monotonic_us();
    st.intro.clock_us = now;
    let duration_us = now.saturating_sub(started);
    let error = out
        .as_bytes()
        .get(mark..)
        .filter(|r| r.first() == Some(&b'-'));
    record(
        st,
        id,
        spec,
        subcommand,
        &args,
        duration_us,
        error,
        matches!(flow, Flow::Block { .. }),
    );
    flow
}

fn monitor_feed(st: &mut State, id: u64, spec: &Spec, args: &[Bytes]) {
    let db = st.clients.get(&id).map_or(0, |c| c.db);
    crate::monitor::feed(st, id, db, spec.name, args);
}

/// The bookkeeping after a command: `subcommand` is its `command|subcommand` name, if it
/// has one; `error` is its reply when that is an error.
#[allow(clippy::too_many_arguments)]
fn record(
    st: &mut State,
    id: u64,
    spec: &'static Spec,
    subcommand: Option<&str>,
    args: &[Bytes],
    duration_us: u64,
    error: Option<&[u8]>,
    blocked: bool,
) {
    let tracking = st.intro.settings.latency_tracking;
    let unknown_sub = error.is_some_and(|e| e.starts_with(b"-ERR unknown subcommand"));
    let stat = st
        .intro
        .commands
        .entry_named(spec, subcommand.filter(|_| !unknown_sub));
    stat.calls += 1;
    stat.usec += duration_us;
    if tracking && !blocked {
        stat.histogram.record(duration_us);
    }
    if let Some(e) = error {
        stat.failed_calls += 1;
        st.intro.errors.record(&e[1..]);
    }
    let unix_secs = st.ks.now_ms() / 1000;
    let event = if spec.is(flags::FAST) {
        "fast-command"
    } else {
        "command"
    };
    st.intro
        .latency_sample(event, unix_secs, duration_us / 1000);
    // EXEC is not logged: the commands it ran are.
    if !blocked && spec.name != "exec" && st.intro.is_slow(duration_us) {
        st.log_slow(id, spec.name, args, duration_us);
    }
}

/// Runs a command that passed the checks (`subcommand`: its `command|subcommand` name, if
/// it has one). `in_exec`: inside EXEC, where nothing blocks.
fn execute(
    st: &mut State,
    id: u64,
    spec: &'static Spec,
    subcommand: Option<&str>,
    args: &[Bytes],
    out: &mut ReplyBuf,
    in_exec: bool,
) -> Flow {
    let Some(client) = st.clients.get_mut(&id) else {
        return Flow::Close;
    };
    let full = subcommand.unwrap_or(spec.name);
    if client.last_cmd != full {
        client.last_cmd.clear();
        client.last_cmd.push_str(full);
    }
    let db = client.db;
    match spec.run {
        Run::Data(_) => {
            let mut ctx = Ctx::new(&mut st.ks, db, out);
            ctx.in_multi = in_exec;
            ctx.in_script = id == crate::scripting::SCRIPT_CLIENT_ID;
            let result = keyspace::execute(spec, &mut ctx, args);
            let block = ctx.block.take();
            if let Err(e) = result {
                out.error(&e.to_string());
            }
            // Inside EXEC, blocked clients are served once the whole transaction ran, as in
            // Redis: they never see its intermediate states.
            if !in_exec && st.ks.has_touched() {
                st.handle_touched();
            }
            match block {
                Some(b) => {
                    let slot = st.block(id, db, args.to_vec(), b.args, &b.keys);
                    Flow::Block {
                        slot,
                        deadline_ms: b.deadline_ms,
                    }
                }
                None => Flow::Continue,
            }
        }
        Run::Node => match commands::run(st, id, spec, args, out, in_exec) {
            Ok(flow) => flow,
            Err(e) => {
                out.error(&e.to_string());
                Flow::Continue
            }
        },
    }
}

/// EXEC: runs the queued commands, or refuses if the queue or a watched key went bad.
pub fn exec(st: &mut State, id: u64, out: &mut ReplyBuf) -> Result<Flow, CmdError> {
    let client = st
        .clients
        .get_mut(&id)
        .expect("client of a running command");
    let Some(queue) = client.multi.take() else {
        return Err(CmdError::other("ERR EXEC without MULTI"));
    };
    let aborted = std::mem::take(&mut client.multi_error);
    let dirty = client.watch_dirty;
    st.unwatch_all(id);
    if aborted {
        return Err(CmdError::other(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    if dirty {
        out.null_array();
        return Ok(Flow::Continue);
    }
    out.array(queue.len());
    let mut flow = Flow::Continue;
    let feed_mark = st.ks.feed_len();
    for args in queue {
        let spec = keyspace::lookup(&args[0]).expect("queued commands were looked up");
        if let Flow::Shutdown = run(st, id, spec, args, out, true) {
            flow = Flow::Shutdown;
        }
    }
    st.ks.feed_wrap_transaction(feed_mark);
    if st.ks.has_touched() {
        st.handle_touched();
    }
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_quotes_args_like_redis() {
        let e = unknown_command(&[Bytes::from("foo"), Bytes::from("a"), Bytes::from("b c")]);
        assert_eq!(
            e.to_string(),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b c' "
        );
        let e = unknown_command(&[Bytes::from("x")]);
        assert_eq!(
            e.to_string(),
            "ERR unknown command 'x', with args beginning with: "
        );
    }

    fn run(st: &mut State, args: &[&str]) -> Vec<u8> {
        let mut out = ReplyBuf::default();
        let args = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        dispatch(st, 1, args, &mut out);
        out.take()
    }

    #[test]
    fn a_transaction_over_its_bound_is_refused_and_exec_aborts() {
        let now = 1_800_000_000_000;
        let mut st = State::new(crate::NodeConfig::default(), now);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let client =
            crate::state::Client::new(1, String::new(), String::new(), true, true, now, tx);
        st.clients.insert(1, client);
        assert_eq!(run(&mut st, &["MULTI"]), b"+OK\r\n");
        for _ in 0..MULTI_QUEUED_COMMANDS_MAX {
            assert_eq!(run(&mut st, &["INCR", "n"]), b"+QUEUED\r\n");
        }
        let refused = String::from_utf8(run(&mut st, &["INCR", "n"])).unwrap();
        assert!(
            refused.starts_with("-ERR the transaction is over its limit"),
            "{refused}"
        );
        let c = &st.clients[&1];
        assert!(c.multi_error);
        assert!(c.multi_bytes >= MULTI_QUEUED_COMMANDS_MAX * (5 + 2 * MULTI_ARG_OVERHEAD_BYTES));
        let exec = String::from_utf8(run(&mut st, &["EXEC"])).unwrap();
        assert!(exec.starts_with("-EXECABORT"), "{exec}");
        assert_eq!(run(&mut st, &["GET", "n"]), b"$-1\r\n");
    }
}
