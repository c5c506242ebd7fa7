//! One Lua interpreter with Redis's sandbox, and running a script or function in it.
//!
//! Redis keeps two interpreters: one for EVAL scripts (reset by SCRIPT FLUSH) and one for
//! FUNCTION libraries. [`Engine`] is either; the node owns one of each.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};
use resp::{Frame, ReplyBuf};

use crate::convert::{error_table, frame_to_lua, write_reply};
use crate::watch::{RunKind, Watch};
use crate::{HOOK_INSTRUCTIONS, LUA_MEMORY_MAX_BYTES};

const PRELUDE: &str = include_str!("prelude.lua");

/// Flags a script declares in its shebang (`#!lua flags=no-writes,allow-oom`) or a function
/// at registration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptFlags {
    /// No shebang: an EVAL script of Redis before 7.0, run with the old rules.
    pub compat: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot_keys: bool,
}

impl ScriptFlags {
    /// Sets the flag Redis names `name`; false when there is none such.
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "no-writes" => self.no_writes = true,
            "allow-oom" => self.allow_oom = true,
            "allow-stale" => self.allow_stale = true,
            "no-cluster" => self.no_cluster = true,
            "allow-cross-slot-keys" => self.allow_cross_slot_keys = true,
            _ => return false,
        }
        true
    }

    /// The names set, in Redis's order (FUNCTION LIST).
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.no_writes, "no-writes"),
            (self.allow_oom, "allow-oom"),
            (self.allow_stale, "allow-stale"),
            (self.no_cluster, "no-cluster"),
            (self.allow_cross_slot_keys, "allow-cross-slot-keys"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Splits an EVAL body's shebang line off: its flags, and where the code starts (the
/// newline is kept so line numbers stay the user's).
pub fn parse_shebang(body: &[u8]) -> Result<(ScriptFlags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((
            ScriptFlags {
                compat: true,
                ..ScriptFlags::default()
            },
            0,
        ));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let Some(engine) = parts.next() else {
        return Err("Invalid engine in script shebang".into());
    };
    if engine != "#!lua" {
        return Err(format!("Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = ScriptFlags::default();
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("Unknown lua shebang option: {part}"));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            if !flags.set(flag) {
                return Err(format!("Unexpected flag in script shebang: {flag}"));
            }
        }
    }
    Ok((flags, end))
}

pub fn sha1_hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}

/// redis.log's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

/// How the running script wants its calls run.
#[derive(Debug, Clone, Copy)]
pub struct CallCtx {
    /// redis.setresp(3): replies come as RESP3.
    pub resp3: bool,
    /// EVAL_RO / FCALL_RO or a `no-writes` script: write commands are refused.
    pub read_only: bool,
    /// redis.set_repl: whether writes reach the AOF.
    pub propagate: bool,
    /// Declared flags (OOM and stale checks).
    pub flags: ScriptFlags,
}

/// What a script's `redis.call` reaches: the node.
pub trait Host {
    /// Runs one command. `Ok` holds its reply (errors as [`Frame::Error`]); `Err` a refusal
    /// before it ran, worded as Redis words it (no leading `-` unless it has its own code).
    fn call(&mut self, args: Vec<Bytes>, ctx: &CallCtx) -> Result<Frame, String>;

    /// redis.acl_check_cmd: whether the script's caller may run `args`; None for an
    /// unknown command.
    fn acl_check(&mut self, args: &[Bytes]) -> Option<bool>;
}

/// redis.log: Redis's levels onto tracing's (the node's loglevel filters them).
fn log(args: MultiValue) {
    let mut it = args.into_iter();
    let level = match it.next() {
        Some(Value::Integer(0)) => LogLevel::Debug,
        Some(Value::Integer(1)) => LogLevel::Verbose,
        Some(Value::Integer(2)) => LogLevel::Notice,
        _ => LogLevel::Warning,
    };
    let text = it
        .filter_map(|v| match v {
            Value::String(s) => Some(s.to_string_lossy()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ");
    match level {
        LogLevel::Debug => tracing::trace!(target: "script", "{text}"),
        LogLevel::Verbose => tracing::debug!(target: "script", "{text}"),
        LogLevel::Notice => tracing::info!(target: "script", "{text}"),
        LogLevel::Warning => tracing::warn!(target: "script", "{text}"),
    }
}

/// The run in progress, as the one `redis.call` function an interpreter keeps reaches it:
/// a pointer to a [`Lent`] on [`Engine::call_protected`]'s stack while the run lasts, null
/// otherwise. (Creating a scoped function per run instead cost a fifth of a small script's
/// time, in the closure and the garbage it leaves.)
#[derive(Default)]
struct RunSlot(AtomicPtr<()>);

/// What redis.call needs of the run: the node, and the run's fixed rules; and what the
/// count hook records when the run turns busy.
struct Lent<'a> {
    host: &'a mut dyn Host,
    read_only: bool,
    flags: ScriptFlags,
    name: &'a str,
    command: &'a [Bytes],
}

impl RunSlot {
    /// Runs `f` with `lent` reachable through [`RunSlot::with`]; the slot is cleared when
    /// `f` returns or unwinds.
    fn lend<R>(&self, lent: &mut Lent<'_>, f: impl FnOnce() -> R) -> R {
        struct Clear<'s>(&'s AtomicPtr<()>);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.store(std::ptr::null_mut(), Ordering::Release);
            }
        }
        self.0
            .store(lent as *mut Lent<'_> as *mut (), Ordering::Release);
        let _clear = Clear(&self.0);
        f()
    }

    /// Calls `f` with the lent run; None outside a run. The slot is empty meanwhile, so a
    /// call that re-entered it would find no run rather than a second mutable borrow.
    fn with<R>(&self, f: impl FnOnce(&mut Lent<'_>) -> R) -> Option<R> {
        let p = self.0.swap(std::ptr::null_mut(), Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` was stored by `lend` from a `&mut Lent` that lives until `lend`
        // returns, and `lend` clears the slot before that; the swap above gives this call
        // the only copy of the pointer until it is put back.
        #[allow(unsafe_code)]
        let lent = unsafe { &mut *(p as *mut Lent<'_>) };
        let result = f(lent);
        self.0.store(p, Ordering::Release);
        Some(result)
    }
}

/// A script or function to run.
pub struct Run<'a> {
    /// For error messages: the script's sha, or the function's name.
    pub name: &'a str,
    pub kind: RunKind,
    /// The command line that started it (FUNCTION STATS).
    pub command: &'a [Bytes],
    pub keys: &'a [Bytes],
    pub args: &'a [Bytes],
    pub read_only: bool,
    pub flags: ScriptFlags,
}

/// Redis's 48-bit linear congruential generator (rand48), so that math.random gives the
/// same sequence for the same seed everywhere.
pub(crate) struct Rand48(u64);

impl Rand48 {
    const MASK: u64 = (1 << 48) - 1;

    pub(crate) fn seed(&mut self, seed: i32) {
        self.0 = (((seed as u32 as u64) << 16) | 0x330e) & Self::MASK;
    }

    /// Like lrand48: 31 random bits.
    pub(crate) fn next(&mut self) -> i32 {
        self.0 = (self.0.wrapping_mul(0x5_deec_e66d).wrapping_add(0xb)) & Self::MASK;
        (self.0 >> 17) as i32
    }
}

pub struct Engine {
    pub(crate) lua: Lua,
    hidden: Table,
    pub(crate) api: Table,
    pub(crate) g_meta: Table,
    pub(crate) load_api: Table,
    pub(crate) watch: Arc<Watch>,
    on_busy: Arc<dyn Fn() + Send + Sync>,
    /// The prelude's protected runners (xpcall with Redis's error handler).
    run_eval: Function,
    run_function: Function,
    /// EVAL scripts by sha: the compiled chunk and its flags.
    scripts: HashMap<Sha, Script, foldhash::fast::RandomState>,
    scripts_body_bytes: usize,
    /// redis.setresp and redis.set_repl of the running script.
    flags: Arc<RunFlags>,
    /// The run redis.call (and the count hook) reach.
    slot: Arc<RunSlot>,
    /// Runs so far, for stepping the collector.
    runs: u64,
}

/// What redis.setresp and redis.set_repl change for the rest of a run.
#[derive(Default)]
struct RunFlags {
    resp3: AtomicBool,
    propagate: AtomicBool,
}

/// A script's SHA-1, the key of the script cache: parsed from the 40 hex digits EVALSHA
/// gives in either case, so a lookup neither allocates nor lowercases.
type Sha = [u8; 20];

fn parse_sha(hex: &[u8]) -> Option<Sha> {
    if hex.len() != 40 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut sha = [0u8; 20];
    for (byte, pair) in sha.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(sha)
}

/// A cached EVAL script.
struct Script {
    func: Function,
    flags: ScriptFlags,
}

/// Runs between two steps of the garbage collector (Redis's LUA_GC_CYCLE_PERIOD).
const GC_STEP_RUNS: u64 = 50;

impl Engine {
    /// A fresh interpreter. `on_busy` runs (on the script's thread) when a script first
    /// crosses the busy threshold, so the node can keep serving other clients.
    pub fn new(watch: Arc<Watch>, on_busy: Arc<dyn Fn() + Send + Sync>) -> mlua::Result<Engine> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG;
        // SAFETY: `debug` is what Redis's error handler uses to say where an error happened;
        // the prelude keeps it as a private upvalue and no script can reach it (it is not
        // among the globals scripts see), which is how Redis itself confines it.
        #[allow(unsafe_code)]
        let lua = unsafe { Lua::unsafe_new_with(libs, LuaOptions::default()) };
        // No limit while Rust code works on the interpreter: under a limit mlua protects
        // every allocating call (a pcall each), which doubled a small script's cost. The
        // limit is on while Lua code runs ([`Engine::call_protected`], library loads).
        lua.set_memory_limit(0)?;
        let hidden = lua.create_table()?;
        hidden.raw_set("bit", crate::bit::library(&lua)?)?;
        hidden.raw_set("cjson", crate::cjson::library(&lua)?)?;
        hidden.raw_set("cmsgpack", crate::msgpack::library(&lua)?)?;
        hidden.raw_set("struct", crate::structlib::library(&lua)?)?;
        hidden.raw_set(
            "errmsg",
            lua.create_function(|lua, v: Value| {
                let text = error_message(&v);
                match text.strip_prefix(RAISED_REPLY) {
                    Some(reply) => {
                        let t = error_table(lua, format!("-{reply}").as_bytes())?;
                        t.raw_set("ignore_error_stats_update", true)?;
                        Ok(Value::Table(t))
                    }
                    None => Ok(Value::String(lua.create_string(&text)?)),
                }
            })?,
        )?;
        hidden.raw_set(
            "error_table",
            lua.create_function(|lua, text: mlua::LuaString| error_table(lua, &text.as_bytes()))?,
        )?;
        hidden.raw_set(
            "sha1hex",
            lua.create_function(|lua, v: Value| {
                let data = match lua.coerce_string(v)? {
                    Some(s) => s.as_bytes().to_vec(),
                    None => Vec::new(),
                };
                Ok(sha1_hex(&data))
            })?,
        )?;
        let w = watch.clone();
        hidden.raw_set(
            "killed",
            lua.create_function(move |_, ()| Ok(w.kill_requested()))?,
        )?;
        let rng = Arc::new(std::sync::Mutex::new(Rand48(0x1234_abcd_330e)));
        let r = rng.clone();
        hidden.raw_set(
            "random",
            lua.create_function(move |_, args: MultiValue| {
                let x = r.lock().map(|mut g| g.next()).unwrap_or(0);
                let r = (x % i32::MAX) as f64 / i32::MAX as f64;
                let int = |v: &Value| -> mlua::Result<i64> {
                    match v {
                        Value::Integer(i) => Ok(*i),
                        Value::Number(n) => Ok(*n as i64),
                        _ => Err(mlua::Error::runtime(
                            "bad argument to 'random' (number expected)",
                        )),
                    }
                };
                match args.len() {
                    0 => Ok(r),
                    1 => {
                        let u = int(&args[0])?;
                        if u < 1 {
                            return Err(mlua::Error::runtime(
                                "bad argument #1 to 'random' (interval is empty)",
                            ));
                        }
                        Ok((r * u as f64).floor() + 1.0)
                    }
                    2 => {
                        let (l, u) = (int(&args[0])?, int(&args[1])?);
                        if l > u {
                            return Err(mlua::Error::runtime(
                                "bad argument #2 to 'random' (interval is empty)",
                            ));
                        }
                        Ok((r * (u - l + 1) as f64).floor() + l as f64)
                    }
                    _ => Err(mlua::Error::runtime("wrong number of arguments")),
                }
            })?,
        )?;
        hidden.raw_set(
            "randomseed",
            lua.create_function(move |_, seed: f64| {
                if let Ok(mut g) = rng.lock() {
                    g.seed(seed as i64 as i32);
                }
                Ok(())
            })?,
        )?;
        let flags = Arc::new(RunFlags::default());
        let f = flags.clone();
        hidden.raw_set(
            "setresp",
            lua.create_function(move |_, v: i64| {
                f.resp3.store(v == 3, Ordering::Relaxed);
                Ok(())
            })?,
        )?;
        let f = flags.clone();
        hidden.raw_set(
            "set_repl",
            lua.create_function(move |_, v: i64| {
                // REPL_AOF (1) is what reaches the log here; replicas have none.
                f.propagate.store(v & 1 != 0, Ordering::Relaxed);
                Ok(())
            })?,
        )?;
        let slot = Arc::new(RunSlot::default());
        let (s, f) = (slot.clone(), flags.clone());
        // A Rust function, not a Lua wrapper: a `return redis.call(...)` then keeps the
        // script's frame (a tail call replaces a Lua frame), so errors name its line.
        // redis.pcall is the prelude's protected call of it.
        let call = lua.create_function(move |lua, CommandLine(args)| {
            let result = s.with(|lent| {
                let ctx = CallCtx {
                    resp3: f.resp3.load(Ordering::Relaxed),
                    read_only: lent.read_only,
                    propagate: f.propagate.load(Ordering::Relaxed),
                    flags: lent.flags,
                };
                let _ = lua.set_memory_limit(0);
                let result = call_from_script(lua, &mut *lent.host, args, &ctx);
                let _ = lua.set_memory_limit(LUA_MEMORY_MAX_BYTES);
                result
            });
            match result {
                Some(Ok(Ok(v))) => Ok(v),
                Some(Ok(Err(text))) => {
                    Err(mlua::Error::RuntimeError(format!("{RAISED_REPLY}{text}")))
                }
                Some(Err(e)) => Err(e),
                None => Err(mlua::Error::runtime(
                    "redis.call is only available while a script runs",
                )),
            }
        })?;
        let s = slot.clone();
        hidden.raw_set(
            "acl_check",
            lua.create_function(move |_, CommandLine(args)| {
                let argv = match args {
                    Ok(argv) => argv,
                    Err(text) => return Err(mlua::Error::runtime(text)),
                };
                Ok(s.with(|lent| lent.host.acl_check(&argv)).flatten())
            })?,
        )?;
        hidden.raw_set(
            "log",
            lua.create_function(|_, args: MultiValue| {
                log(args);
                Ok(())
            })?,
        )?;
        lua.load(PRELUDE)
            .set_name("=cacheplane")
            .call::<()>(hidden.clone())?;
        let api: Table = hidden.raw_get("api")?;
        let g_meta: Table = hidden.raw_get("g_meta")?;
        let load_api: Table = hidden.raw_get("load_api")?;
        let redis: Table = hidden.raw_get("redis")?;
        // Installed for good: outside a run the slot is empty and the call says so (FUNCTION
        // LOAD's code sees another `redis` table, without call).
        redis.raw_set("call", &call)?;
        let run_eval: Function = hidden.raw_get("run")?;
        let run_function: Function = hidden.raw_get("run_function")?;
        Ok(Engine {
            run_eval,
            run_function,
            lua,
            hidden,
            api,
            g_meta,
            load_api,
            watch,
            on_busy,
            scripts: HashMap::default(),
            scripts_body_bytes: 0,
            flags,
            slot,
            runs: 0,
        })
        .and_then(|e| {
            e.install_run_hook()?;
            Ok(e)
        })
    }

    pub fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }

    /// Bytes the interpreter holds (INFO used_memory_lua).
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Number of cached EVAL scripts and the bytes of their bodies.
    pub fn scripts(&self) -> (usize, usize) {
        (self.scripts.len(), self.scripts_body_bytes)
    }

    /// Whether the script with this sha (hex, either case) is cached.
    pub fn has_script(&self, sha: &[u8]) -> bool {
        self.script(sha).is_some()
    }

    fn script(&self, sha: &[u8]) -> Option<&Script> {
        self.scripts.get(&parse_sha(sha)?)
    }

    /// Compiles and caches an EVAL script; its sha. Errors are Redis's whole replies.
    pub fn load_script(&mut self, body: &Bytes) -> Result<String, String> {
        let sha = sha1_hex(body);
        let key = parse_sha(sha.as_bytes()).expect("sha1_hex gives 40 hex digits");
        if self.scripts.contains_key(&key) {
            return Ok(sha);
        }
        let (flags, start) = parse_shebang(body).map_err(|e| format!("ERR {e}"))?;
        let func = self
            .lua
            .load(&body[start..])
            .set_name("@user_script")
            .into_function()
            .map_err(|e| {
                format!(
                    "ERR Error compiling script (new function): {}",
                    lua_error_text(&e)
                )
            })?;
        self.scripts_body_bytes += body.len();
        self.scripts.insert(key, Script { func, flags });
        Ok(sha)
    }

    /// A cached script's flags (sha in hex, either case).
    pub fn script_flags(&self, sha: &[u8]) -> Option<ScriptFlags> {
        self.script(sha).map(|s| s.flags)
    }

    /// Runs the cached EVAL script `run.name` (its sha) and writes its reply into `out`.
    pub fn eval(&mut self, run: &Run, host: &mut dyn Host, out: &mut ReplyBuf) {
        let Some(script) = self.script(run.name.as_bytes()) else {
            out.error("NOSCRIPT No matching script. Please use EVAL.");
            return;
        };
        let func = script.func.clone();
        if let Err(e) = self.set_keys_and_argv(run.keys, run.args) {
            out.error(&format!("ERR {}", lua_error_text(&e)));
            return;
        }
        let runner = self.run_eval.clone();
        self.call_protected(run, host, out, |_| runner.call::<MultiValue>(func));
    }

    /// Runs a function's callback with KEYS and ARGV as its two arguments.
    pub fn call_function(
        &mut self,
        callback: &Function,
        run: &Run,
        host: &mut dyn Host,
        out: &mut ReplyBuf,
    ) {
        let runner = self.run_function.clone();
        let (keys, args) = match self.byte_arrays(run.keys, run.args) {
            Ok(tables) => tables,
            Err(e) => {
                out.error(&format!("ERR {}", lua_error_text(&e)));
                return;
            }
        };
        let callback = callback.clone();
        self.call_protected(run, host, out, |_| {
            runner.call::<MultiValue>((callback, keys, args))
        });
    }

    /// Fresh KEYS and ARGV tables in the scripts' globals (`api`), as Redis makes them for
    /// every run. Built on the stack directly: through mlua's API each string and table
    /// would be a registry reference, and a protected call would add two closures; this is
    /// a fifth of a small script's run.
    fn set_keys_and_argv(&self, keys: &[Bytes], args: &[Bytes]) -> mlua::Result<()> {
        check_array_len(keys.len() + args.len())?;
        self.lua.exec_raw_lua(|raw| {
            // SAFETY: no memory limit is set outside a run's Lua code (`call_protected`
            // sets it only around it), so as in mlua's own unprotected path an allocation
            // failure is the allocator's abort, never a Lua error unwinding through here;
            // `api` has no metatable, so the raw sets run no Lua code. The stack is checked
            // for the four slots used and left as it was found.
            #[allow(unsafe_code)]
            unsafe {
                let state = raw.state();
                let top = mlua::ffi::lua_gettop(state);
                if mlua::ffi::lua_checkstack(state, 4) == 0 {
                    return Err(mlua::Error::StackError);
                }
                raw.push(&self.api)?;
                mlua::ffi::lua_pushlstring(state, c"KEYS".as_ptr(), 4);
                push_byte_array(state, keys);
                mlua::ffi::lua_rawset(state, -3);
                mlua::ffi::lua_pushlstring(state, c"ARGV".as_ptr(), 4);
                push_byte_array(state, args);
                mlua::ffi::lua_rawset(state, -3);
                mlua::ffi::lua_settop(state, top);
                Ok(())
            }
        })
    }

    /// A function's keys and arguments as two fresh tables.
    fn byte_arrays(&self, keys: &[Bytes], args: &[Bytes]) -> mlua::Result<(Table, Table)> {
        check_array_len(keys.len() + args.len())?;
        // SAFETY: as in `set_keys_and_argv`; the two tables are the closure's results.
        #[allow(unsafe_code)]
        unsafe {
            self.lua.exec_raw((), |state| {
                push_byte_array(state, keys);
                push_byte_array(state, args);
            })
        }
    }

    /// Lends the run to redis.call and the count hook, runs `body` (an xpcall in the
    /// prelude), and writes the reply or the error Redis would write. Everything a run
    /// needs (redis.call, the hook, the log, setresp, set_repl) is installed once per
    /// interpreter: a run creates no Lua function.
    fn call_protected(
        &mut self,
        run: &Run,
        host: &mut dyn Host,
        out: &mut ReplyBuf,
        body: impl FnOnce(&Lua) -> mlua::Result<MultiValue>,
    ) {
        self.flags.resp3.store(false, Ordering::Relaxed);
        self.flags.propagate.store(true, Ordering::Relaxed);
        self.watch.start(run.kind);
        let mut lent = Lent {
            host,
            read_only: run.read_only,
            flags: run.flags,
            name: run.name,
            command: run.command,
        };
        let slot = self.slot.clone();
        let outcome = slot.lend(&mut lent, || -> mlua::Result<()> {
            let _ = self.lua.set_memory_limit(LUA_MEMORY_MAX_BYTES);
            let values = body(&self.lua);
            let _ = self.lua.set_memory_limit(0);
            let values = values?;
            let mut values = values.into_iter();
            let ok = matches!(values.next(), Some(Value::Boolean(true)));
            let value = values.next().unwrap_or(Value::Nil);
            if ok {
                write_reply(out, &value, self.flags.resp3.load(Ordering::Relaxed), 0);
            } else {
                write_error(out, run.name, &value);
            }
            Ok(())
        });
        if let Err(e) = outcome {
            // Raised outside the script's own protection: memory exhausted while setting up.
            out.error(&format!(
                "ERR Error running script {}, {:.100}",
                run.name,
                lua_error_text(&e)
            ));
        }
        self.watch.finish();
        // Some collection work now and then, at a moment of our choosing (Redis steps the
        // collector every 50 calls).
        self.runs += 1;
        if self.runs.is_multiple_of(GC_STEP_RUNS) {
            let _ = self.lua.gc_step();
        }
    }

    /// The count hook every run has: marks the run busy past the threshold (handing the
    /// node's I/O over, `on_busy`) and stops it once SCRIPT KILL / FUNCTION KILL asked.
    pub(crate) fn install_run_hook(&self) -> mlua::Result<()> {
        let watch = self.watch.clone();
        let on_busy = self.on_busy.clone();
        let slot = self.slot.clone();
        self.lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTIONS),
            move |_, _| {
                if watch.check_busy() {
                    slot.with(|lent| watch.record_running(lent.name, lent.command));
                    on_busy();
                }
                if watch.kill_requested() {
                    return Err(mlua::Error::runtime(
                        "Script killed by user with SCRIPT KILL...",
                    ));
                }
                Ok(VmState::Continue)
            },
        )
    }

    /// SCRIPT FLUSH: a fresh interpreter (globals, cached scripts, memory).
    pub fn reset(&mut self) -> mlua::Result<()> {
        *self = Engine::new(self.watch.clone(), self.on_busy.clone())?;
        Ok(())
    }

    pub(crate) fn hidden(&self) -> &Table {
        &self.hidden
    }
}

/// Lua's table constructor counts in C ints.
fn check_array_len(len: usize) -> mlua::Result<()> {
    if len > i32::MAX as usize {
        return Err(mlua::Error::runtime("too many arguments for a script"));
    }
    Ok(())
}

/// Pushes a new array of `items` as Lua strings onto the stack (two slots at most).
/// `items.len()` fits a C int ([`check_array_len`]).
///
/// # Safety
/// `state` is a Lua state with two free stack slots where an allocation failure cannot
/// unwind through this frame (protected mode, or no memory limit).
#[allow(unsafe_code)]
unsafe fn push_byte_array(state: *mut mlua::ffi::lua_State, items: &[Bytes]) {
    // SAFETY: the caller's contract; every string is pushed with its length (no NUL rule).
    unsafe {
        mlua::ffi::lua_createtable(state, items.len() as i32, 0);
        for (i, item) in items.iter().enumerate() {
            mlua::ffi::lua_pushlstring(state, item.as_ptr().cast(), item.len());
            mlua::ffi::lua_rawseti_(state, -2, i as i32 + 1);
        }
    }
}

/// Marks an error raised by redis.call with a command's error reply: the error handler
/// turns it back into Redis's `{err = ...}` table.
pub(crate) const RAISED_REPLY: &str = "\u{1}redis-error-reply\u{1}";

/// redis.call / redis.pcall's common half: the reply as a Lua value, or the error text
/// ("CODE message") of an error reply or a refusal.
fn call_from_script(
    lua: &Lua,
    host: &mut dyn Host,
    args: Result<Vec<Bytes>, String>,
    ctx: &CallCtx,
) -> mlua::Result<Result<Value, String>> {
    let argv = match args {
        Ok(argv) => argv,
        Err(text) => return Ok(Err(text)),
    };
    match host.call(argv, ctx) {
        Ok(Frame::Error(e)) => Ok(Err(e)),
        Ok(frame) => Ok(Ok(frame_to_lua(lua, frame, ctx.resp3)?)),
        Err(refusal) if refusal.starts_with('-') => Ok(Err(refusal[1..].to_owned())),
        Err(refusal) => Ok(Err(format!("ERR {refusal}"))),
    }
}

/// A redis lib call's arguments as a command line, or the error Redis gives for them.
struct CommandLine(Result<Vec<Bytes>, String>);

const NO_ARGUMENTS: &str = "ERR Please specify at least one argument for this redis lib call";
const NOT_STRING_OR_INTEGER: &str =
    "ERR Lua redis lib command arguments must be strings or integers";

impl mlua::FromLuaMulti for CommandLine {
    fn from_lua_multi(args: MultiValue, _: &Lua) -> mlua::Result<Self> {
        if args.is_empty() {
            return Ok(CommandLine(Err(NO_ARGUMENTS.into())));
        }
        let argv = args.into_iter().map(|v| match v {
            Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(i) => Ok(integer_argument(i)),
            Value::Number(n) => Ok(number_argument(n)),
            _ => Err(NOT_STRING_OR_INTEGER.to_owned()),
        });
        Ok(CommandLine(argv.collect()))
    }

    /// The same, read straight off the stack: through [`MultiValue`] every argument
    /// would first become a registry reference.
    #[allow(unsafe_code)]
    unsafe fn from_stack_multi(
        nvals: std::ffi::c_int,
        lua: &mlua::state::RawLua,
    ) -> mlua::Result<Self> {
        if nvals <= 0 {
            return Ok(CommandLine(Err(NO_ARGUMENTS.into())));
        }
        let state = lua.state();
        let mut argv = Vec::with_capacity(nvals as usize);
        for idx in -nvals..0 {
            use mlua::ffi;
            // SAFETY: mlua calls this with the callback's `nvals` arguments on top of the
            // stack; the reads below neither push nor convert in place (the type is checked
            // first), and a string's pointer and length stay valid while it is on the stack.
            let arg = unsafe {
                match ffi::lua_type(state, idx) {
                    ffi::LUA_TSTRING => {
                        let mut len = 0;
                        let data = ffi::lua_tolstring(state, idx, &mut len);
                        Bytes::copy_from_slice(std::slice::from_raw_parts(data.cast(), len))
                    }
                    ffi::LUA_TNUMBER if ffi::lua_isinteger(state, idx) != 0 => {
                        integer_argument(ffi::lua_tointeger(state, idx))
                    }
                    ffi::LUA_TNUMBER => number_argument(ffi::lua_tonumber(state, idx)),
                    _ => return Ok(CommandLine(Err(NOT_STRING_OR_INTEGER.into()))),
                }
            };
            argv.push(arg);
        }
        Ok(CommandLine(Ok(argv)))
    }
}

fn integer_argument(i: i64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(i).as_bytes())
}

fn number_argument(n: f64) -> Bytes {
    let mut text = Vec::with_capacity(24);
    resp::format_double(n, &mut text);
    Bytes::from(text)
}

/// The reply for a failed run, as luaCallFunction writes it.
fn write_error(out: &mut ReplyBuf, name: &str, err: &Value) {
    match err {
        Value::Table(t) => {
            let msg: Option<mlua::LuaString> = t.raw_get("err").ok();
            let msg = msg.map_or_else(|| "ERR unknown error".to_owned(), |m| m.to_string_lossy());
            let source: Option<mlua::LuaString> = t.raw_get("source").ok();
            let line: Option<Value> = t.raw_get("line").ok();
            let line = match line {
                Some(Value::Integer(i)) => Some(i.to_string()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::String(s)) => Some(s.to_string_lossy()),
                _ => None,
            };
            match (source, line) {
                (Some(source), Some(line)) => out.error(&format!(
                    "{msg} script: {name}, on {}:{line}.",
                    source.to_string_lossy()
                )),
                _ => out.error(&msg),
            }
        }
        other => {
            let msg = match other {
                Value::String(s) => s.to_string_lossy(),
                _ => "execution failure".to_owned(),
            };
            out.error(&format!("ERR Error running script {name}, {msg:.100}"));
        }
    }
}

/// The message of an error raised from Rust code (an mlua error value), without mlua's
/// wrapping ("runtime error: ", callback tracebacks).
fn error_message(v: &Value) -> String {
    match v {
        Value::Error(e) => lua_error_text(e),
        Value::String(s) => s.to_string_lossy(),
        other => format!("{other:?}"),
    }
}

pub(crate) fn lua_error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_error_text(cause),
        mlua::Error::WithContext { cause, .. } => lua_error_text(cause),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs() {
        assert!(parse_shebang(b"return 1").unwrap().0.compat);
        let (f, at) = parse_shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(f.no_writes && f.allow_oom && !f.compat);
        assert_eq!(at, 31);
        assert_eq!(
            parse_shebang(b"#!lua").unwrap_err(),
            "Invalid script shebang"
        );
        assert_eq!(
            parse_shebang(b"#!py\n").unwrap_err(),
            "Unexpected engine in script shebang: #!py"
        );
        assert_eq!(
            parse_shebang(b"#!lua flags=bad\n").unwrap_err(),
            "Unexpected flag in script shebang: bad"
        );
        assert_eq!(
            parse_shebang(b"#!lua name=x\n").unwrap_err(),
            "Unknown lua shebang option: name=x"
        );
    }

    #[test]
    fn shas_are_read_in_either_case() {
        let sha = sha1_hex(b"return 1");
        let key = parse_sha(sha.as_bytes()).unwrap();
        assert_eq!(parse_sha(sha.to_ascii_uppercase().as_bytes()), Some(key));
        assert_eq!(key[0], u8::from_str_radix(&sha[..2], 16).unwrap());
        assert_eq!(parse_sha(&sha.as_bytes()[1..]), None);
        assert_eq!(parse_sha(b"zz00000000000000000000000000000000000000"), None);
    }

    #[test]
    fn rand48_matches_the_c_library() {
        // srand48(0); lrand48() twice, as glibc gives.
        let mut r = Rand48(0);
        r.seed(0);
        assert_eq!(r.next(), 366_850_414);
        assert_eq!(r.next(), 1_610_402_240);
    }
}
