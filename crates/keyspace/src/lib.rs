//! The in-memory dataset of a node and the data commands that act on it.
//!
//! No I/O and no clock: the node passes the time in with [`Keyspace::set_clock`] and runs
//! commands through [`execute`], which writes replies into a [`resp::ReplyBuf`].
//! Connection-level commands (AUTH, MULTI, SUBSCRIBE, INFO, ...) are listed in the same
//! command table but executed by the node.

mod cmd;
mod ctx;
mod dict;
mod error;
mod glob;
mod keyspace;
pub mod memory;
pub mod notify;
mod str;
mod stream;
mod table;
mod value;

pub use cmd::keys::clone_value;
pub use cmd::strings::STRING_LEN_MAX_BYTES;
pub use ctx::{Block, Ctx, check_subcommand_arity};
pub use dict::{Dict, DictEntry};
pub use error::{CmdError, CmdResult};
pub use glob::glob_match;
pub use keyspace::{
    DEADLINE_MAX_MS, Db, EVICTION_KEYS_PER_CALL_MAX, Entry, Evicted, Keyspace, SnapshotSink, Stats,
};
pub use str::Str;
pub use stream::{
    Consumer, Group, LISTPACK_MAX_BYTES, Nack, NodeLimits, Stream, StreamEntry, StreamId,
    StreamNode, Trim,
};
pub use table::{Run, Spec, commands, flags, lookup, movable_key_positions};
pub use value::{Encodings, Field, Kind, Member, Score, Value, ZSet};

use bytes::Bytes;

/// Runs a data command whose spec was found with [`lookup`] and whose arity was checked.
/// Errors are returned, not written: the caller decides how to report them (MULTI queues
/// differ from plain execution).
///
/// A command that changed the dataset is logged to the keyspace's feed (when enabled), as
/// written or as the effect it logged itself.
pub fn execute(spec: &Spec, ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match spec.run {
        Run::Data(handler) => {
            let dirty = ctx.ks.dirty;
            ctx.propagated = false;
            // Keys taken outside a command (by the node) are counted before this one's.
            ctx.ks.settle();
            let result = handler(ctx, args);
            if ctx.ks.dirty == dirty {
                ctx.ks.forget_taken();
            } else {
                ctx.ks.settle();
            }
            if ctx.ks.dirty != dirty && !ctx.propagated && ctx.ks.feed_enabled() {
                ctx.ks.feed_push(ctx.db, args.to_vec());
            }
            result
        }
        Run::Node => Err(CmdError::other(format!(
            "ERR '{}' is not a data command",
            spec.name
        ))),
    }
}
