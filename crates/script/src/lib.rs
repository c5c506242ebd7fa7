//! Lua scripting as Redis 7.0 embeds it: EVAL scripts and FUNCTION libraries.
//!
//! The crate owns the Lua 5.1 interpreters (built from source by `mlua`, so no system Lua)
//! and everything Redis puts around them: the sandbox (read-only globals and libraries),
//! the `redis.*` API, the conversions between RESP replies and Lua values in both
//! directions, the `bit`, `cjson`, `cmsgpack` and `struct` libraries, script flags from
//! shebang lines, and the busy/kill watch a running script reports to.
//!
//! It does no I/O and knows no commands: a [`Host`] runs what a script calls (the node,
//! under its state lock) and answers with the reply as a [`resp::Frame`].

mod bit;
mod cjson;
mod convert;
mod engine;
mod functions;
mod msgpack;
mod structlib;
mod watch;

pub use engine::{CallCtx, Engine, Host, LogLevel, Run, ScriptFlags, parse_shebang, sha1_hex};
pub use functions::{FunctionInfo, Libraries, Library, LoadError, library_name};
pub use watch::{KillOutcome, RunKind, Watch};

/// Memory one interpreter may hold (tables, strings); past it an allocation fails and the
/// script gets "not enough memory" instead of growing the node without bound.
pub const LUA_MEMORY_MAX_BYTES: usize = 512 * 1024 * 1024;
/// VM instructions between two looks at the watch (Redis's count hook period).
pub const HOOK_INSTRUCTIONS: u32 = 100_000;
/// Nesting of a script's returned tables before the reply is cut with an error (Redis
/// stops at Lua's C stack limit the same way; converting recurses, on the caller's stack).
pub const REPLY_DEPTH_MAX: usize = 200;
