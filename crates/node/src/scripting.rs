//! EVAL, EVALSHA, SCRIPT, FCALL and FUNCTION: the node's side of Lua scripting.
//!
//! A script runs under the state lock like any command, as Redis runs it on its one
//! thread. Its `redis.call`s go through the same checks and command code as a client's,
//! as a separate script client (its own database selection and protocol). Its writes
//! reach the AOF as the commands it ran, wrapped in MULTI/EXEC when there are several.
//!
//! A script that runs past the busy threshold is reported on [`script::Watch`]: the node
//! hands its I/O to another thread (see [`on_busy`]) and connections answer BUSY without
//! the lock, except SCRIPT KILL / FUNCTION KILL / SHUTDOWN NOSAVE.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keyspace::{CmdError, flags};
use resp::{Frame, Protocol, ReplyBuf};
use script::{CallCtx, Engine, Host, Libraries, Run, RunKind, Watch};

use crate::dispatch::{self, Flow};
use crate::state::{Client, State};

/// The script client's id: never a connection's.
pub const SCRIPT_CLIENT_ID: u64 = u64::MAX;
/// How long a script that turned busy waits for another thread to take over the node's
/// I/O before it carries on regardless.
const HANDOFF_WAIT: Duration = Duration::from_millis(100);

pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// The interpreters and what they share with connections.
pub struct Scripting {
    pub watch: Arc<Watch>,
    /// The interpreters; taken out while a script runs in them (the script then has the
    /// interpreter and the state at once), and back in place as soon as it ends.
    eval: Option<Engine>,
    functions: Option<Libraries>,
    /// The client scripts run their commands as, parked here between runs.
    client: Option<Client>,
    /// The client whose script runs now (0 between runs).
    pub caller: u64,
    /// Where a script's commands write their replies, kept between calls (up to
    /// [`SCRIPT_REPLY_KEEP_BYTES`]) so that a call allocates none.
    reply: Vec<u8>,
}

/// A script command's reply buffer bigger than this is not kept for the next call.
const SCRIPT_REPLY_KEEP_BYTES: usize = 64 * 1024;

/// Runs on the script's thread when it turns busy: gives the async runtime's worker to
/// another thread, so connections keep being served (with BUSY) while the script runs on.
/// Waits until a task spawned now has run elsewhere, proof that the handoff happened.
fn on_busy() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    handle.spawn(async move {
        let _ = tx.send(());
    });
    tokio::task::block_in_place(|| {
        let _ = rx.recv_timeout(HANDOFF_WAIT);
    });
    tracing::warn!(
        "slow script detected: still running past busy-reply-threshold; other clients get BUSY"
    );
}

impl Scripting {
    pub fn new(script_client: Client) -> Scripting {
        let watch = Arc::new(Watch::default());
        let on_busy: Arc<dyn Fn() + Send + Sync> = Arc::new(on_busy);
        Scripting {
            eval: Some(
                Engine::new(watch.clone(), on_busy.clone()).expect("a Lua interpreter starts"),
            ),
            functions: Some(
                Libraries::new(watch.clone(), on_busy).expect("a Lua interpreter starts"),
            ),
            watch,
            client: Some(script_client),
            caller: 0,
            reply: Vec::new(),
        }
    }

    /// The EVAL interpreter (always there outside a script run: scripts cannot reach
    /// SCRIPT or FUNCTION, which are `noscript`).
    pub fn eval(&mut self) -> &mut Engine {
        self.eval.as_mut().expect("no script is running")
    }

    pub fn functions(&mut self) -> &mut Libraries {
        self.functions.as_mut().expect("no script is running")
    }

    pub fn functions_ref(&self) -> Option<&Libraries> {
        self.functions.as_ref()
    }

    pub fn eval_ref(&self) -> Option<&Engine> {
        self.eval.as_ref()
    }
}

/// A connection's transaction as it stands while a busy script holds the node's state:
/// MULTI and DISCARD are served meanwhile (Redis lets them through), a refused command
/// dooms an open transaction and EXEC discards it. The changes reach the client's state
/// when the connection next gets the lock ([`BusyMulti::take_changes`]).
#[derive(Debug, Default)]
pub struct BusyMulti {
    /// Whether the client is inside MULTI (as of its last command).
    pub in_multi: bool,
    changes: Vec<MultiChange>,
}

/// What happened to a transaction while the node was busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiChange {
    Begin,
    /// A command was refused: EXEC must abort.
    Doom,
    Discard,
}

impl BusyMulti {
    pub fn take_changes(&mut self) -> Vec<MultiChange> {
        std::mem::take(&mut self.changes)
    }

    /// Answers MULTI, DISCARD and EXEC; None for other commands.
    fn answer(&mut self, name: &[u8], busy: &str, out: &mut ReplyBuf) -> Option<()> {
        match (name, self.in_multi) {
            (b"multi", true) => out.error("ERR MULTI calls can not be nested"),
            (b"multi", false) => {
                self.in_multi = true;
                self.changes.push(MultiChange::Begin);
                out.ok();
            }
            (b"discard", false) => out.error("ERR DISCARD without MULTI"),
            (b"discard", true) => {
                self.in_multi = false;
                self.changes.push(MultiChange::Discard);
                out.ok();
            }
            (b"exec", true) => {
                self.in_multi = false;
                self.changes.push(MultiChange::Discard);
                out.error(&format!(
                    "EXECABORT Transaction discarded because of: {busy}"
                ));
            }
            _ => return None,
        }
        Some(())
    }
}

/// What a busy node answers a command, without its lock: BUSY, except for SCRIPT KILL,
/// FUNCTION KILL, FUNCTION STATS and SHUTDOWN NOSAVE, which act here, and the transaction
/// commands of a registered client (`multi`).
pub fn answer_while_busy(
    watch: &Watch,
    multi: Option<&mut BusyMulti>,
    args: &[Bytes],
    out: &mut ReplyBuf,
) -> Flow {
    let name = args[0].to_ascii_lowercase();
    let sub = args.get(1).map(|a| a.to_ascii_lowercase());
    let busy = match watch.running_kind() {
        Some(RunKind::Function) => BUSY_FUNCTION,
        _ => BUSY_EVAL,
    };
    if let (b"function", Some(b"stats")) = (name.as_slice(), sub.as_deref()) {
        function_stats(watch, out);
        return Flow::Continue;
    }
    let kill = match (name.as_slice(), sub.as_deref()) {
        (b"script", Some(b"kill")) => Some(RunKind::Eval),
        (b"function", Some(b"kill")) => Some(RunKind::Function),
        (b"shutdown", Some(b"nosave")) => {
            tracing::warn!("SHUTDOWN NOSAVE while a script runs: exiting");
            std::process::exit(0);
        }
        _ => None,
    };
    match (kill, multi) {
        (Some(kind), _) => kill_reply(watch, kind, out),
        (None, Some(m)) => {
            if m.answer(&name, busy, out).is_none() {
                if m.in_multi {
                    m.changes.push(MultiChange::Doom);
                }
                out.error(busy);
            }
        }
        (None, None) => out.error(busy),
    }
    Flow::Continue
}

/// FUNCTION STATS, from the watch alone: it is answered while a script runs too.
fn function_stats(watch: &Watch, out: &mut ReplyBuf) {
    out.map(2);
    out.bulk(b"running_script");
    match watch.running() {
        Some((name, command, ms)) => {
            out.map(3);
            out.bulk(b"name");
            out.bulk(name.as_bytes());
            out.bulk(b"command");
            out.array(command.len());
            for arg in &command {
                out.bulk(arg);
            }
            out.bulk(b"duration_ms");
            out.int(ms as i64);
        }
        None => out.null(),
    }
    let (libraries, functions) = watch.function_counts();
    out.bulk(b"engines");
    out.map(1);
    out.bulk(b"LUA");
    out.map(2);
    out.bulk(b"libraries_count");
    out.int(libraries as i64);
    out.bulk(b"functions_count");
    out.int(functions as i64);
}

fn kill_reply(watch: &Watch, kind: RunKind, out: &mut ReplyBuf) {
    match watch.kill(kind) {
        script::KillOutcome::Killing => out.ok(),
        script::KillOutcome::NotBusy => out.error("NOTBUSY No scripts in execution right now."),
        script::KillOutcome::Unkillable => out.error(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
        ),
        script::KillOutcome::WrongKind(RunKind::Function) => out.error(BUSY_FUNCTION),
        script::KillOutcome::WrongKind(RunKind::Eval) => out.error(BUSY_EVAL),
    }
}

/// The node as a script's `redis.call` sees it.
struct NodeHost<'a> {
    st: &'a mut State,
}

impl Host for NodeHost<'_> {
    fn call(&mut self, args: Vec<Bytes>, ctx: &CallCtx) -> Result<Frame, String> {
        let Some(spec) = keyspace::lookup(&args[0]) else {
            return Err("Unknown Redis command called from script".into());
        };
        if !spec.arity_ok(args.len()) {
            return Err("Wrong number of args calling Redis command from script".into());
        }
        if spec.is(flags::NOSCRIPT) {
            return Err("This Redis command is not allowed from script".into());
        }
        if let Err(denied) = self.caller_may(spec, &args) {
            return Err(format!(
                "The user executing the script {}",
                denied.script_text()
            ));
        }
        // Memory was over maxmemory when the script started: what may grow it fails,
        // unless the script declared allow-oom or has already written.
        if spec.is(flags::DENYOOM)
            && self.st.memory.out_of_memory
            && !ctx.flags.allow_oom
            && !self.st.scripting.watch.has_written()
        {
            return Err(format!("-{}", crate::memory::OOM));
        }
        if spec.is(flags::WRITE) {
            if self.st.no_good_replicas {
                return Err(format!("-{}", dispatch::NOREPLICAS));
            }
            if ctx.read_only {
                return Err("Write commands are not allowed from read-only scripts.".into());
            }
            self.st.scripting.watch.wrote();
        }
        let protocol = if ctx.resp3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        if let Some(c) = self.st.clients.get_mut(&SCRIPT_CLIENT_ID) {
            c.protocol = protocol;
        }
        let mut out = ReplyBuf::with_buffer(protocol, std::mem::take(&mut self.st.scripting.reply));
        let feed_mark = self.st.ks.feed_len();
        dispatch::run(self.st, SCRIPT_CLIENT_ID, spec, args, &mut out, true);
        if !ctx.propagate {
            self.st.ks.feed_truncate(feed_mark);
        }
        let reply = match Frame::parse(out.as_bytes(), &resp::Limits::default()) {
            Ok(Some((frame, _))) => Ok(frame),
            _ => Err("the command gave no reply".into()),
        };
        let mut buf = out.take();
        if buf.capacity() <= SCRIPT_REPLY_KEEP_BYTES {
            buf.clear();
            self.st.scripting.reply = buf;
        }
        reply
    }

    fn acl_check(&mut self, args: &[Bytes]) -> Option<bool> {
        let spec = keyspace::lookup(&args[0])?;
        Some(self.caller_may(spec, args).is_ok())
    }
}

impl NodeHost<'_> {
    /// The ACL check of a script's command, as the user of the client running the script.
    fn caller_may(&self, spec: &keyspace::Spec, args: &[Bytes]) -> Result<(), crate::acl::Denied> {
        let caller = self.st.scripting.caller;
        match self.st.clients.get(&caller).and_then(|c| c.user.as_deref()) {
            None => Ok(()),
            Some(name) => match self.st.users.get(name) {
                Some(user) => user.check(spec, args),
                None => Err(crate::acl::Denied::Command),
            },
        }
    }
}

/// Whether `command` runs a script or function (EVAL, EVALSHA, FCALL and their _RO forms):
/// MONITOR shows it before the commands it runs, tracking follows its declared keys, and it
/// may declare none.
pub fn runs_script(command: &str) -> bool {
    matches!(
        command,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// Whether the script EVAL, EVALSHA or FCALL `args` would run may write: anything but a
/// script or function flagged `no-writes` (unknown ones count as writing).
pub fn may_write(st: &State, command: &str, args: &[Bytes]) -> bool {
    script_flags(st, command, args).is_none_or(|f| f.compat || !f.no_writes)
}

/// The flags of the script or function EVAL, EVALSHA or FCALL `args` would run; None when
/// it is not known (yet).
fn script_flags(st: &State, command: &str, args: &[Bytes]) -> Option<script::ScriptFlags> {
    match command {
        "eval" => script::parse_shebang(&args[1]).ok().map(|(f, _)| f),
        "evalsha" => st
            .scripting
            .eval_ref()
            .and_then(|e| e.script_flags(&args[1])),
        "fcall" => st
            .scripting
            .functions_ref()
            .and_then(|f| f.function(&String::from_utf8_lossy(&args[1])))
            .map(|f| f.flags),
        _ => None,
    }
}

/// Whether the script EVAL, EVALSHA or FCALL `args` would run is refused while memory is
/// over `maxmemory`: one that declares flags, may write and is not `allow-oom`. Scripts
/// without flags run; their `redis.call`s of commands that may grow memory fail instead.
pub fn refused_on_oom(st: &State, command: &str, args: &[Bytes]) -> bool {
    script_flags(st, command, args).is_some_and(|f| !f.compat && !f.no_writes && !f.allow_oom)
}

/// numkeys of EVAL / FCALL: the keys and the arguments after it.
fn split_keys(a: &[Bytes], fcall: bool) -> Result<(&[Bytes], &[Bytes]), CmdError> {
    let numkeys = match resp::parse_i64(&a[2]) {
        Some(n) => n,
        None if fcall => return Err(CmdError::other("ERR Bad number of keys provided")),
        None => return Err(CmdError::NotInteger),
    };
    if numkeys > (a.len() - 3) as i64 {
        return Err(CmdError::other(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if numkeys < 0 {
        return Err(CmdError::other("ERR Number of keys can't be negative"));
    }
    let split = 3 + numkeys as usize;
    Ok((&a[3..split], &a[split..]))
}

/// Takes the settings scripts run under from the configuration (at start, after CONFIG SET).
pub fn apply_config(st: &mut State) {
    let busy_ms = st.config.standard.int("busy-reply-threshold").max(0) as u64;
    st.scripting.watch.set_busy_threshold_ms(busy_ms);
}

/// Puts the script client in place for a run started by `caller`; the feed mark to wrap.
fn begin(st: &mut State, caller: u64) -> usize {
    st.scripting.caller = caller;
    let db = st.clients.get(&caller).map_or(0, |c| c.db);
    if let Some(mut c) = st.scripting.client.take() {
        c.db = db;
        c.protocol = Protocol::Resp2;
        c.authenticated = true;
        st.clients.insert(SCRIPT_CLIENT_ID, c);
    }
    st.ks.feed_len()
}

fn end(st: &mut State, feed_mark: usize) {
    st.scripting.caller = 0;
    if let Some(c) = st.clients.remove(&SCRIPT_CLIENT_ID) {
        st.scripting.client = Some(c);
    }
    st.ks.feed_wrap_transaction(feed_mark);
    if st.ks.has_touched() {
        st.handle_touched();
    }
}

/// The checks Redis makes before a script with declared flags runs.
fn refuse_before_run(
    st: &State,
    flags: script::ScriptFlags,
    read_only_command: bool,
) -> Option<&'static str> {
    let may_write = !flags.compat && !flags.no_writes;
    if may_write && read_only_command {
        return Some("ERR Can not execute a script with write flag using *_ro command.");
    }
    if may_write && st.no_good_replicas {
        return Some(dispatch::NOREPLICAS);
    }
    if may_write && !flags.allow_oom && st.memory.out_of_memory {
        return Some(crate::memory::OOM);
    }
    None
}

/// EVAL, EVALSHA and their _RO forms.
pub fn eval(
    st: &mut State,
    id: u64,
    a: &[Bytes],
    out: &mut ReplyBuf,
    by_sha: bool,
    ro: bool,
) -> Result<Flow, CmdError> {
    let (keys, args) = split_keys(a, false)?;
    let noscript = || CmdError::other("NOSCRIPT No matching script. Please use EVAL.");
    // The sha names the script in errors, in lowercase as Redis prints it.
    let mut sha = [0u8; 40];
    if by_sha {
        if a[1].len() != sha.len() {
            return Err(noscript());
        }
        sha.copy_from_slice(&a[1]);
        sha.make_ascii_lowercase();
    } else {
        let loaded = st
            .scripting
            .eval()
            .load_script(&a[1])
            .map_err(CmdError::Other)?;
        sha.copy_from_slice(loaded.as_bytes());
    }
    let sha = std::str::from_utf8(&sha).map_err(|_| noscript())?;
    let flags = st
        .scripting
        .eval()
        .script_flags(sha.as_bytes())
        .ok_or_else(noscript)?;
    if let Some(refusal) = refuse_before_run(st, flags, ro) {
        return Err(CmdError::other(refusal));
    }
    let run = Run {
        name: sha,
        kind: RunKind::Eval,
        command: a,
        keys,
        args,
        read_only: ro || (!flags.compat && flags.no_writes),
        flags,
    };
    let mark = begin(st, id);
    let mut engine = st.scripting.eval.take().expect("no script is running");
    engine.eval(&run, &mut NodeHost { st }, out);
    st.scripting.eval = Some(engine);
    end(st, mark);
    Ok(Flow::Continue)
}

/// FCALL and FCALL_RO.
pub fn fcall(
    st: &mut State,
    id: u64,
    a: &[Bytes],
    out: &mut ReplyBuf,
    ro: bool,
) -> Result<Flow, CmdError> {
    let name = String::from_utf8_lossy(&a[1]).into_owned();
    let Some(flags) = st.scripting.functions().function(&name).map(|f| f.flags) else {
        return Err(CmdError::other("ERR Function not found"));
    };
    let (keys, args) = split_keys(a, true)?;
    if let Some(refusal) = refuse_before_run(st, flags, ro) {
        return Err(CmdError::other(refusal));
    }
    let run = Run {
        name: &name,
        kind: RunKind::Function,
        command: a,
        keys,
        args,
        read_only: ro || flags.no_writes,
        flags,
    };
    let mark = begin(st, id);
    let mut libs = st.scripting.functions.take().expect("no script is running");
    libs.call(&name, &run, &mut NodeHost { st }, out);
    st.scripting.functions = Some(libs);
    end(st, mark);
    Ok(Flow::Continue)
}

fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn flush_mode(a: &[Bytes], what: &str) -> Result<(), CmdError> {
    match a.get(2).map(|m| lower(m)) {
        None if a.len() == 2 => Ok(()),
        Some(m) if a.len() == 3 && (m == "sync" || m == "async") => Ok(()),
        _ => Err(CmdError::other(format!("ERR {what}"))),
    }
}

/// SCRIPT LOAD / EXISTS / FLUSH / KILL / HELP.
pub fn script_command(st: &mut State, a: &[Bytes], out: &mut ReplyBuf) -> Result<Flow, CmdError> {
    match lower(&a[1]).as_str() {
        "load" if a.len() == 3 => {
            let sha = st
                .scripting
                .eval()
                .load_script(&a[2])
                .map_err(CmdError::Other)?;
            out.bulk(sha.as_bytes());
        }
        "exists" if a.len() >= 3 => {
            out.array(a.len() - 2);
            for sha in &a[2..] {
                out.int(st.scripting.eval().has_script(sha) as i64);
            }
        }
        "flush" => {
            flush_mode(a, "SCRIPT FLUSH only support SYNC|ASYNC option")?;
            st.scripting
                .eval()
                .reset()
                .map_err(|e| CmdError::other(format!("ERR {e}")))?;
            out.ok();
        }
        "kill" if a.len() == 2 => kill_reply(&st.scripting.watch, RunKind::Eval, out),
        "debug" if a.len() == 3 => {
            return Err(CmdError::other(
                "ERR SCRIPT DEBUG is not supported by this server",
            ));
        }
        "help" if a.len() == 2 => crate::commands::help(
            out,
            &[
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Prints this help.",
            ],
        ),
        "load" | "exists" | "kill" | "debug" | "help" => {
            return Err(CmdError::WrongArity(format!("script|{}", lower(&a[1]))));
        }
        _ => {
            return Err(CmdError::other(format!(
                "ERR unknown subcommand '{}'. Try SCRIPT HELP.",
                String::from_utf8_lossy(&a[1])
            )));
        }
    }
    Ok(Flow::Continue)
}

/// After any change to the libraries: FUNCTION STATS's counts, and the code the keyspace
/// carries into RDB files.
fn functions_changed(st: &mut State) {
    let libs = st.scripting.functions();
    let (l, f) = (libs.libraries().count(), libs.function_count());
    let codes = libs.libraries().map(|lib| lib.code.clone()).collect();
    st.scripting.watch.set_function_counts(l, f);
    st.ks.set_function_codes(codes);
}

/// Compiles the libraries a load brought (an RDB's, then an AOF's FUNCTION commands in
/// order). Fails when an RDB's library does not compile, as redis-server refuses to start.
pub fn restore_functions(st: &mut State) -> anyhow::Result<()> {
    let codes = st.ks.function_codes().to_vec();
    st.scripting
        .functions()
        .replace_all(&codes)
        .map_err(|e| anyhow::anyhow!("a function library in the data does not load: {e}"))?;
    for args in st.ks.take_replayed_function_commands() {
        if let Err(e) = change_functions(st, &args) {
            tracing::warn!(error = %e, "a logged FUNCTION command failed again on replay");
        }
    }
    functions_changed(st);
    Ok(())
}

/// How FUNCTION RESTORE merges a payload with the loaded libraries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RestorePolicy {
    Flush,
    Append,
    Replace,
}

/// The state change of FUNCTION LOAD / DELETE / FLUSH / RESTORE, shared by the command and
/// the AOF replay; LOAD answers the library's name.
fn change_functions(st: &mut State, a: &[Bytes]) -> Result<Option<String>, CmdError> {
    let sub = lower(&a[1]);
    let result = match sub.as_str() {
        "load" if a.len() >= 3 => {
            let mut replace = false;
            for opt in &a[2..a.len() - 1] {
                if lower(opt) == "replace" {
                    replace = true;
                } else {
                    return Err(CmdError::other(format!(
                        "ERR Unknown option given: {}",
                        String::from_utf8_lossy(opt)
                    )));
                }
            }
            let name = st
                .scripting
                .functions()
                .load(&a[a.len() - 1], replace)
                .map_err(|e| CmdError::other(format!("ERR {e}")))?;
            Some(name)
        }
        "delete" if a.len() == 3 => {
            let name = String::from_utf8_lossy(&a[2]).into_owned();
            if !st.scripting.functions().delete(&name) {
                return Err(CmdError::other("ERR Library not found"));
            }
            None
        }
        "flush" if a.len() <= 3 => {
            flush_mode(a, "FUNCTION FLUSH only supports SYNC|ASYNC option")?;
            st.scripting
                .functions()
                .flush()
                .map_err(|e| CmdError::other(format!("ERR {e}")))?;
            None
        }
        "restore" if a.len() == 3 || a.len() == 4 => {
            let policy = match a.get(3).map(|p| lower(p)) {
                None => RestorePolicy::Append,
                Some(p) if p == "append" => RestorePolicy::Append,
                Some(p) if p == "replace" => RestorePolicy::Replace,
                Some(p) if p == "flush" => RestorePolicy::Flush,
                Some(_) => {
                    return Err(CmdError::other(
                        "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
                    ));
                }
            };
            let codes = formats::rdb::read_function_dump(&a[2]).map_err(|e| match e {
                formats::FormatError::BadDumpTrailer => {
                    CmdError::other("ERR DUMP payload version or checksum are wrong")
                }
                formats::FormatError::Unsupported { .. } => {
                    CmdError::other("ERR given type is not a function")
                }
                _ => CmdError::other("ERR failed loading the given functions payload"),
            })?;
            restore_libraries(st.scripting.functions(), codes, policy)?;
            None
        }
        _ => {
            return Err(CmdError::other(format!(
                "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try FUNCTION HELP."
            )));
        }
    };
    functions_changed(st);
    Ok(result)
}

/// Loads a payload's libraries under `policy`, all or none.
fn restore_libraries(
    libs: &mut Libraries,
    codes: Vec<Vec<u8>>,
    policy: RestorePolicy,
) -> Result<(), CmdError> {
    let codes: Vec<Bytes> = codes.into_iter().map(Bytes::from).collect();
    let current: Vec<Bytes> = libs.libraries().map(|l| l.code.clone()).collect();
    let merged: Vec<Bytes> = match policy {
        RestorePolicy::Flush => codes,
        RestorePolicy::Append => current.into_iter().chain(codes).collect(),
        RestorePolicy::Replace => {
            // The payload's libraries win over loaded ones of the same name.
            let mut by_name = std::collections::BTreeMap::new();
            for code in current.into_iter().chain(codes) {
                let name = script::library_name(&code).unwrap_or_default();
                by_name.insert(name, code);
            }
            by_name.into_values().collect()
        }
    };
    if policy == RestorePolicy::Append {
        let mut seen = std::collections::HashSet::new();
        for code in &merged {
            let name = script::library_name(code).unwrap_or_default();
            if !seen.insert(name.clone()) {
                return Err(CmdError::other(format!(
                    "ERR Library {name} already exists"
                )));
            }
        }
    }
    libs.replace_all(&merged)
        .map_err(|e| CmdError::other(format!("ERR {e}")))
}

/// FUNCTION DUMP's payload: every library's code, as redis-server writes it.
fn dump_libraries(libs: &Libraries) -> Result<Vec<u8>, CmdError> {
    let mut w = formats::rdb::RdbWriter::for_dump(Vec::new(), false);
    for lib in libs.libraries() {
        w.function(&lib.code)
            .map_err(|e| CmdError::other(format!("ERR {e}")))?;
    }
    w.finish_dump()
        .map_err(|e| CmdError::other(format!("ERR {e}")))
}

fn list_libraries(libs: &Libraries, a: &[Bytes], out: &mut ReplyBuf) -> Result<(), CmdError> {
    let (mut pattern, mut with_code) = (None, false);
    let mut i = 2;
    while i < a.len() {
        match lower(&a[i]).as_str() {
            "withcode" if !with_code => with_code = true,
            "libraryname" if pattern.is_none() => {
                i += 1;
                pattern =
                    Some(a.get(i).ok_or_else(|| {
                        CmdError::other("ERR library name argument was not given")
                    })?);
            }
            _ => {
                return Err(CmdError::other(format!(
                    "ERR Unknown argument {}",
                    String::from_utf8_lossy(&a[i])
                )));
            }
        }
        i += 1;
    }
    let chosen: Vec<_> = libs
        .libraries()
        .filter(|l| pattern.is_none_or(|p| keyspace::glob_match(p, l.name.as_bytes(), false)))
        .collect();
    out.array(chosen.len());
    for lib in chosen {
        out.map(3 + with_code as usize);
        out.bulk(b"library_name");
        out.bulk(lib.name.as_bytes());
        out.bulk(b"engine");
        out.bulk(b"LUA");
        out.bulk(b"functions");
        out.array(lib.functions.len());
        for f in lib.functions.values() {
            out.map(3);
            out.bulk(b"name");
            out.bulk(f.name.as_bytes());
            out.bulk(b"description");
            match &f.description {
                Some(d) => out.bulk(d.as_bytes()),
                None => out.null(),
            }
            out.bulk(b"flags");
            let names = f.flags.names();
            out.set(names.len());
            for n in names {
                out.bulk(n.as_bytes());
            }
        }
        if with_code {
            out.bulk(b"library_code");
            out.bulk(&lib.code);
        }
    }
    Ok(())
}

/// FUNCTION LOAD / DELETE / FLUSH / RESTORE / DUMP / LIST / STATS / KILL / HELP.
pub fn function_command(st: &mut State, a: &[Bytes], out: &mut ReplyBuf) -> Result<Flow, CmdError> {
    match lower(&a[1]).as_str() {
        "load" | "delete" | "flush" | "restore" => {
            let loaded = change_functions(st, a)?;
            // Libraries are part of the dataset: the AOF replays the change.
            st.ks.feed_push(0, a.to_vec());
            match loaded {
                Some(name) => out.bulk(name.as_bytes()),
                None => out.ok(),
            }
        }
        "dump" if a.len() == 2 => out.bulk(&dump_libraries(st.scripting.functions())?),
        "list" => list_libraries(st.scripting.functions(), a, out)?,
        "stats" if a.len() == 2 => function_stats(&st.scripting.watch, out),
        "kill" if a.len() == 2 => kill_reply(&st.scripting.watch, RunKind::Function, out),
        "help" if a.len() == 2 => crate::commands::help(
            out,
            &[
                "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "LOAD [REPLACE] <FUNCTION CODE>",
                "    Create a new library with the given library name and code.",
                "DELETE <LIBRARY NAME>",
                "    Delete the given library.",
                "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
                "    Return general information on all the libraries.",
                "FLUSH [ASYNC|SYNC]",
                "    Delete all the libraries.",
                "DUMP",
                "    Return a serialized payload representing the current libraries.",
                "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
                "    Restore the libraries represented by the given payload.",
                "STATS",
                "    Return information about the current function running.",
                "KILL",
                "    Kill the current running function.",
                "HELP",
                "    Prints this help.",
            ],
        ),
        "stats" | "kill" | "help" | "dump" => {
            return Err(CmdError::other(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
                lower(&a[1])
            )));
        }
        _ => {
            return Err(CmdError::other(format!(
                "ERR unknown subcommand '{}'. Try FUNCTION HELP.",
                String::from_utf8_lossy(&a[1])
            )));
        }
    }
    Ok(Flow::Continue)
}
