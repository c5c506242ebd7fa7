//! The command table: every command the node knows, with Redis's arity, flags and key
//! positions (reported by COMMAND), and who runs it.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::cmd::{
    bits as b, geo as g, hashes as h, hll as hl, keys as k, lists as l, sets as s, sort as so,
    streams as x, strings as st, zsets as z,
};
use crate::{CmdResult, Ctx};

pub type Handler = fn(&mut Ctx, &[Bytes]) -> CmdResult;

/// Who executes a command.
#[derive(Clone, Copy)]
pub enum Run {
    /// A data command, run against the keyspace.
    Data(Handler),
    /// A connection or server command (AUTH, MULTI, SUBSCRIBE, INFO, ...), run by the node.
    Node,
}

pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const FAST: u32 = 1 << 9;
    /// Allowed before AUTH.
    pub const NO_AUTH: u32 = 1 << 10;
    /// Refused inside MULTI (Redis: `no-multi`).
    pub const NO_MULTI: u32 = 1 << 11;
    /// Allowed in a RESP2 connection in subscribed state.
    pub const PUBSUB_CONTEXT: u32 = 1 << 12;
    /// Keys found by parsing the arguments (numkeys, STREAMS, STORE), not by position
    /// alone: [`crate::movable_key_positions`].
    pub const MOVABLE_KEYS: u32 = 1 << 13;

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (NO_MULTI, "no_multi"),
        (MOVABLE_KEYS, "movablekeys"),
    ];
}

use flags::*;

pub struct Spec {
    pub name: &'static str,
    /// Redis arity: positive = exact argument count (name included), negative = at least.
    pub arity: i32,
    pub flags: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub run: Run,
}

impl Spec {
    /// The positions of the keys in `args` (the command line), movable ones included.
    pub fn keys(&self, args: &[Bytes]) -> Vec<usize> {
        movable_key_positions(self.name, args).unwrap_or_else(|| self.key_positions(args.len()))
    }

    /// This command's place in the table (below [`commands`]`().len()`), for counters kept
    /// in arrays instead of maps keyed by name.
    pub fn index(&self) -> usize {
        let offset = (self as *const Spec as usize).wrapping_sub(TABLE.as_ptr() as usize)
            / std::mem::size_of::<Spec>();
        debug_assert!(TABLE.get(offset).is_some_and(|s| std::ptr::eq(s, self)));
        offset
    }

    pub fn is(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// The positions of the keys in `args`, as COMMAND GETKEYS reports them.
    pub fn key_positions(&self, argc: usize) -> Vec<usize> {
        if self.first_key <= 0 {
            return Vec::new();
        }
        let last = if self.last_key < 0 {
            argc as i32 + self.last_key
        } else {
            self.last_key
        };
        (self.first_key..=last.min(argc as i32 - 1))
            .step_by(self.step.max(1) as usize)
            .map(|i| i as usize)
            .collect()
    }
}

const fn spec(name: &'static str, arity: i32, flags: u32, keys: (i32, i32, i32), run: Run) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        run,
    }
}

const W: u32 = WRITE | DENYOOM;
const WF: u32 = WRITE | DENYOOM | FAST;
const D: u32 = WRITE; // writes that free memory (DEL, POP)
const DF: u32 = WRITE | FAST;
const R: u32 = READONLY;
const RF: u32 = READONLY | FAST;
const K1: (i32, i32, i32) = (1, 1, 1);
const K2: (i32, i32, i32) = (1, 2, 1);
const KALL: (i32, i32, i32) = (1, -1, 1);
const KNONE: (i32, i32, i32) = (0, 0, 0);
const NODE: Run = Run::Node;
const CONN: u32 = NOSCRIPT | LOADING | STALE | FAST;

use Run::Data as F;

static TABLE: &[Spec] = &[
    // strings
    spec("get", 2, RF, K1, F(st::get)),
    spec("set", -3, W, K1, F(st::set)),
    spec("setnx", 3, WF, K1, F(st::setnx)),
    spec("setex", 4, W, K1, F(st::setex)),
    spec("psetex", 4, W, K1, F(st::psetex)),
    spec("getset", 3, WF, K1, F(st::getset)),
    spec("getdel", 2, DF, K1, F(st::getdel)),
    spec("getex", -2, DF, K1, F(st::getex)),
    spec("mget", -2, RF, KALL, F(st::mget)),
    spec("mset", -3, W, (1, -1, 2), F(st::mset)),
    spec("msetnx", -3, W, (1, -1, 2), F(st::msetnx)),
    spec("incr", 2, WF, K1, F(st::incr)),
    spec("decr", 2, WF, K1, F(st::decr)),
    spec("incrby", 3, WF, K1, F(st::incrby)),
    spec("decrby", 3, WF, K1, F(st::decrby)),
    spec("incrbyfloat", 3, WF, K1, F(st::incrbyfloat)),
    spec("append", 3, WF, K1, F(st::append)),
    spec("strlen", 2, RF, K1, F(st::strlen)),
    spec("getrange", 4, R, K1, F(st::getrange)),
    spec("substr", 4, R, K1, F(st::getrange)),
    spec("setrange", 4, W, K1, F(st::setrange)),
    spec("setbit", 4, W, K1, F(b::setbit)),
    spec("getbit", 3, RF, K1, F(b::getbit)),
    spec("bitcount", -2, R, K1, F(b::bitcount)),
    spec("bitpos", -3, R, K1, F(b::bitpos)),
    spec("bitop", -4, W, (2, -1, 1), F(b::bitop)),
    spec("bitfield", -2, W, K1, F(b::bitfield)),
    spec("bitfield_ro", -2, RF, K1, F(b::bitfield_ro)),
    spec("lcs", -3, R, K2, F(st::lcs)),
    // keys
    spec("del", -2, D, KALL, F(k::del)),
    spec("unlink", -2, DF, KALL, F(k::del)),
    spec("exists", -2, RF, KALL, F(k::exists)),
    spec("touch", -2, RF, KALL, F(k::touch)),
    spec("type", 2, RF, K1, F(k::type_)),
    spec("expire", -3, DF, K1, F(k::expire)),
    spec("pexpire", -3, DF, K1, F(k::pexpire)),
    spec("expireat", -3, DF, K1, F(k::expireat)),
    spec("pexpireat", -3, DF, K1, F(k::pexpireat)),
    spec("ttl", 2, RF, K1, F(k::ttl)),
    spec("pttl", 2, RF, K1, F(k::pttl)),
    spec("expiretime", 2, RF, K1, F(k::expiretime)),
    spec("pexpiretime", 2, RF, K1, F(k::pexpiretime)),
    spec("persist", 2, DF, K1, F(k::persist)),
    spec("rename", 3, D, K2, F(k::rename)),
    spec("renamenx", 3, DF, K2, F(k::renamenx)),
    spec("keys", 2, R, KNONE, F(k::keys)),
    spec("scan", -2, R, KNONE, F(k::scan)),
    spec("randomkey", 1, R, KNONE, F(k::randomkey)),
    spec("dbsize", 1, RF, KNONE, F(k::dbsize)),
    spec("flushdb", -1, D, KNONE, F(k::flushdb)),
    spec("flushall", -1, D, KNONE, F(k::flushall)),
    spec("swapdb", 3, DF, KNONE, F(k::swapdb)),
    spec("move", 3, DF, K1, F(k::move_)),
    spec("copy", -3, W, K2, F(k::copy)),
    spec("object", -2, R, (2, 2, 1), F(k::object)),
    spec("sort", -2, W | MOVABLE_KEYS, K1, F(so::sort)),
    spec("dump", 2, R, K1, NODE),
    spec("restore", -4, W, K1, NODE),
    spec("sort_ro", -2, R | MOVABLE_KEYS, K1, F(so::sort_ro)),
    // hashes
    spec("hset", -4, WF, K1, F(h::hset)),
    spec("hmset", -4, WF, K1, F(h::hset)),
    spec("hsetnx", 4, WF, K1, F(h::hsetnx)),
    spec("hget", 3, RF, K1, F(h::hget)),
    spec("hmget", -3, RF, K1, F(h::hmget)),
    spec("hdel", -3, DF, K1, F(h::hdel)),
    spec("hlen", 2, RF, K1, F(h::hlen)),
    spec("hstrlen", 3, RF, K1, F(h::hstrlen)),
    spec("hexists", 3, RF, K1, F(h::hexists)),
    spec("hkeys", 2, R, K1, F(h::hkeys)),
    spec("hvals", 2, R, K1, F(h::hvals)),
    spec("hgetall", 2, R, K1, F(h::hgetall)),
    spec("hincrby", 4, WF, K1, F(h::hincrby)),
    spec("hincrbyfloat", 4, WF, K1, F(h::hincrbyfloat)),
    spec("hrandfield", -2, R, K1, F(h::hrandfield)),
    spec("hscan", -3, R, K1, F(h::hscan)),
    // lists
    spec("lpush", -3, WF, K1, F(l::lpush)),
    spec("rpush", -3, WF, K1, F(l::rpush)),
    spec("lpushx", -3, WF, K1, F(l::lpushx)),
    spec("rpushx", -3, WF, K1, F(l::rpushx)),
    spec("lpop", -2, DF, K1, F(l::lpop)),
    spec("rpop", -2, DF, K1, F(l::rpop)),
    spec("llen", 2, RF, K1, F(l::llen)),
    spec("lindex", 3, R, K1, F(l::lindex)),
    spec("lset", 4, W, K1, F(l::lset)),
    spec("lrange", 4, R, K1, F(l::lrange)),
    spec("ltrim", 4, D, K1, F(l::ltrim)),
    spec("lrem", 4, D, K1, F(l::lrem)),
    spec("linsert", 5, W, K1, F(l::linsert)),
    spec("lpos", -3, R, K1, F(l::lpos)),
    spec("lmove", 5, W, K2, F(l::lmove)),
    spec("rpoplpush", 3, W, K2, F(l::rpoplpush)),
    spec("lmpop", -4, D | MOVABLE_KEYS, KNONE, F(l::lmpop)),
    spec(
        "blpop",
        -3,
        D | BLOCKING | NOSCRIPT,
        (1, -2, 1),
        F(l::blpop),
    ),
    spec(
        "brpop",
        -3,
        D | BLOCKING | NOSCRIPT,
        (1, -2, 1),
        F(l::brpop),
    ),
    spec("blmove", 6, W | BLOCKING | NOSCRIPT, K2, F(l::blmove)),
    spec(
        "brpoplpush",
        4,
        W | BLOCKING | NOSCRIPT,
        K2,
        F(l::brpoplpush),
    ),
    spec(
        "blmpop",
        -5,
        D | BLOCKING | NOSCRIPT | MOVABLE_KEYS,
        KNONE,
        F(l::blmpop),
    ),
    // sets
    spec("sadd", -3, WF, K1, F(s::sadd)),
    spec("srem", -3, DF, K1, F(s::srem)),
    spec("smembers", 2, R, K1, F(s::smembers)),
    spec("sismember", 3, RF, K1, F(s::sismember)),
    spec("smismember", -3, RF, K1, F(s::smismember)),
    spec("scard", 2, RF, K1, F(s::scard)),
    spec("spop", -2, DF, K1, F(s::spop)),
    spec("srandmember", -2, R, K1, F(s::srandmember)),
    spec("smove", 4, DF, K2, F(s::smove)),
    spec("sinter", -2, R, KALL, F(s::sinter)),
    spec("sunion", -2, R, KALL, F(s::sunion)),
    spec("sdiff", -2, R, KALL, F(s::sdiff)),
    spec("sinterstore", -3, W, KALL, F(s::sinterstore)),
    spec("sunionstore", -3, W, KALL, F(s::sunionstore)),
    spec("sdiffstore", -3, W, KALL, F(s::sdiffstore)),
    spec("sintercard", -3, R | MOVABLE_KEYS, KNONE, F(s::sintercard)),
    spec("sscan", -3, R, K1, F(s::sscan)),
    // sorted sets
    spec("zadd", -4, WF, K1, F(z::zadd)),
    spec("zincrby", 4, WF, K1, F(z::zincrby)),
    spec("zrem", -3, DF, K1, F(z::zrem)),
    spec("zcard", 2, RF, K1, F(z::zcard)),
    spec("zscore", 3, RF, K1, F(z::zscore)),
    spec("zmscore", -3, RF, K1, F(z::zmscore)),
    spec("zrank", 3, RF, K1, F(z::zrank)),
    spec("zrevrank", 3, RF, K1, F(z::zrevrank)),
    spec("zcount", 4, RF, K1, F(z::zcount)),
    spec("zlexcount", 4, RF, K1, F(z::zlexcount)),
    spec("zrange", -4, R, K1, F(z::zrange)),
    spec("zrangestore", -5, W, K2, F(z::zrangestore)),
    spec("zrevrange", -4, R, K1, F(z::zrevrange)),
    spec("zrangebyscore", -4, R, K1, F(z::zrangebyscore)),
    spec("zrevrangebyscore", -4, R, K1, F(z::zrevrangebyscore)),
    spec("zrangebylex", -4, R, K1, F(z::zrangebylex)),
    spec("zrevrangebylex", -4, R, K1, F(z::zrevrangebylex)),
    spec("zremrangebyrank", 4, D, K1, F(z::zremrangebyrank)),
    spec("zremrangebyscore", 4, D, K1, F(z::zremrangebyscore)),
    spec("zremrangebylex", 4, D, K1, F(z::zremrangebylex)),
    spec("zpopmin", -2, DF, K1, F(z::zpopmin)),
    spec("zpopmax", -2, DF, K1, F(z::zpopmax)),
    spec(
        "bzpopmin",
        -3,
        DF | BLOCKING | NOSCRIPT,
        (1, -2, 1),
        F(z::bzpopmin),
    ),
    spec(
        "bzpopmax",
        -3,
        DF | BLOCKING | NOSCRIPT,
        (1, -2, 1),
        F(z::bzpopmax),
    ),
    spec("zmpop", -4, D | MOVABLE_KEYS, KNONE, F(z::zmpop)),
    spec(
        "bzmpop",
        -5,
        D | BLOCKING | NOSCRIPT | MOVABLE_KEYS,
        KNONE,
        F(z::bzmpop),
    ),
    spec("zunionstore", -4, W | MOVABLE_KEYS, K1, F(z::zunionstore)),
    spec("zinterstore", -4, W | MOVABLE_KEYS, K1, F(z::zinterstore)),
    spec("zdiffstore", -4, W | MOVABLE_KEYS, K1, F(z::zdiffstore)),
    spec("zunion", -3, R | MOVABLE_KEYS, KNONE, F(z::zunion)),
    spec("zinter", -3, R | MOVABLE_KEYS, KNONE, F(z::zinter)),
    spec("zdiff", -3, R | MOVABLE_KEYS, KNONE, F(z::zdiff)),
    spec("zintercard", -3, R | MOVABLE_KEYS, KNONE, F(z::zintercard)),
    spec("zrandmember", -2, R, K1, F(z::zrandmember)),
    spec("zscan", -3, R, K1, F(z::zscan)),
    // HyperLogLog (strings in Redis's sketch layout)
    spec("pfadd", -2, WF, K1, F(hl::pfadd)),
    spec("pfcount", -2, R, KALL, F(hl::pfcount)),
    spec("pfmerge", -2, W, KALL, F(hl::pfmerge)),
    spec("pfdebug", 3, W | ADMIN, (2, 2, 1), F(hl::pfdebug)),
    spec("pfselftest", 1, ADMIN, KNONE, F(hl::pfselftest)),
    // geo (sorted sets of geohash scores)
    spec("geoadd", -5, W, K1, F(g::geoadd)),
    spec("geodist", -4, R, K1, F(g::geodist)),
    spec("geohash", -2, R, K1, F(g::geohash)),
    spec("geopos", -2, R, K1, F(g::geopos)),
    spec("georadius", -6, W | MOVABLE_KEYS, K1, F(g::georadius)),
    spec("georadius_ro", -6, R, K1, F(g::georadius_ro)),
    spec(
        "georadiusbymember",
        -5,
        W | MOVABLE_KEYS,
        K1,
        F(g::georadiusbymember),
    ),
    spec(
        "georadiusbymember_ro",
        -5,
        R,
        K1,
        F(g::georadiusbymember_ro),
    ),
    spec("geosearch", -7, R, K1, F(g::geosearch)),
    spec("geosearchstore", -8, W, K2, F(g::geosearchstore)),
    // streams (XREAD and XREADGROUP name their keys after STREAMS: movable keys)
    spec("xadd", -5, WF, K1, F(x::xadd)),
    spec("xrange", -4, R, K1, F(x::xrange)),
    spec("xrevrange", -4, R, K1, F(x::xrevrange)),
    spec("xlen", 2, RF, K1, F(x::xlen)),
    spec("xdel", -3, DF, K1, F(x::xdel)),
    spec("xtrim", -4, D, K1, F(x::xtrim)),
    spec("xread", -4, R | BLOCKING | MOVABLE_KEYS, KNONE, F(x::xread)),
    spec(
        "xreadgroup",
        -7,
        D | BLOCKING | MOVABLE_KEYS,
        KNONE,
        F(x::xreadgroup),
    ),
    spec("xgroup", -2, W, (2, 2, 1), F(x::xgroup)),
    spec("xsetid", -3, WF, K1, F(x::xsetid)),
    spec("xack", -4, DF, K1, F(x::xack)),
    spec("xpending", -3, R, K1, F(x::xpending)),
    spec("xclaim", -6, DF, K1, F(x::xclaim)),
    spec("xautoclaim", -6, DF, K1, F(x::xautoclaim)),
    spec("xinfo", -2, R, (2, 2, 1), F(x::xinfo)),
    // connection and server: run by the node
    spec("ping", -1, FAST | STALE | PUBSUB_CONTEXT, KNONE, NODE),
    spec("echo", 2, FAST, KNONE, NODE),
    spec("auth", -2, CONN | NO_AUTH, KNONE, NODE),
    spec("hello", -1, CONN | NO_AUTH, KNONE, NODE),
    spec("quit", -1, CONN | NO_AUTH | PUBSUB_CONTEXT, KNONE, NODE),
    spec("reset", 1, CONN | NO_AUTH | PUBSUB_CONTEXT, KNONE, NODE),
    spec("select", 2, LOADING | STALE | FAST, KNONE, NODE),
    spec(
        "client",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        KNONE,
        NODE,
    ),
    spec("command", -1, LOADING | STALE, KNONE, NODE),
    spec("info", -1, LOADING | STALE, KNONE, NODE),
    spec(
        "config",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        KNONE,
        NODE,
    ),
    spec("time", 1, LOADING | STALE | FAST, KNONE, NODE),
    spec(
        "monitor",
        1,
        ADMIN | NOSCRIPT | LOADING | STALE,
        KNONE,
        NODE,
    ),
    spec("debug", -2, ADMIN | NOSCRIPT | LOADING | STALE, KNONE, NODE),
    spec("acl", -2, ADMIN | NOSCRIPT | LOADING | STALE, KNONE, NODE),
    spec("cluster", -2, ADMIN | NOSCRIPT | STALE, KNONE, NODE),
    // Known (COMMAND, key finding) but not served: a node moves no keys to another server.
    spec("migrate", -6, WRITE | MOVABLE_KEYS, (3, 3, 1), NODE),
    spec("save", 1, ADMIN | NOSCRIPT | NO_MULTI, KNONE, NODE),
    spec("bgsave", -1, ADMIN | NOSCRIPT, KNONE, NODE),
    spec("lastsave", 1, LOADING | STALE | FAST, KNONE, NODE),
    // Scripting (keys are movable: numkeys says where they end).
    spec("eval", -3, NOSCRIPT | STALE | MOVABLE_KEYS, KNONE, NODE),
    spec("evalsha", -3, NOSCRIPT | STALE | MOVABLE_KEYS, KNONE, NODE),
    spec(
        "eval_ro",
        -3,
        NOSCRIPT | STALE | READONLY | MOVABLE_KEYS,
        KNONE,
        NODE,
    ),
    spec(
        "evalsha_ro",
        -3,
        NOSCRIPT | STALE | READONLY | MOVABLE_KEYS,
        KNONE,
        NODE,
    ),
    spec("fcall", -3, NOSCRIPT | STALE | MOVABLE_KEYS, KNONE, NODE),
    spec(
        "fcall_ro",
        -3,
        NOSCRIPT | STALE | READONLY | MOVABLE_KEYS,
        KNONE,
        NODE,
    ),
    spec("script", -2, NOSCRIPT, KNONE, NODE),
    spec("function", -2, NOSCRIPT, KNONE, NODE),
    // cacheplane's own: CACHEPLANE BACKUP streams a snapshot into the RDB storage account.
    spec("cacheplane", -2, ADMIN | NOSCRIPT, KNONE, NODE),
    spec("bgrewriteaof", 1, ADMIN | NOSCRIPT, KNONE, NODE),
    spec(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI,
        KNONE,
        NODE,
    ),
    spec("multi", 1, NOSCRIPT | LOADING | STALE | FAST, KNONE, NODE),
    spec("exec", 1, NOSCRIPT | LOADING | STALE, KNONE, NODE),
    spec("discard", 1, NOSCRIPT | LOADING | STALE | FAST, KNONE, NODE),
    spec(
        "watch",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | NO_MULTI,
        KALL,
        NODE,
    ),
    spec("unwatch", 1, NOSCRIPT | LOADING | STALE | FAST, KNONE, NODE),
    spec(
        "subscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT,
        KNONE,
        NODE,
    ),
    spec(
        "psubscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT,
        KNONE,
        NODE,
    ),
    spec(
        "unsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT,
        KNONE,
        NODE,
    ),
    spec(
        "punsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT,
        KNONE,
        NODE,
    ),
    spec(
        "ssubscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT,
        KNONE,
        NODE,
    ),
    spec(
        "sunsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT,
        KNONE,
        NODE,
    ),
    spec("publish", 3, PUBSUB | LOADING | STALE | FAST, KNONE, NODE),
    spec("spublish", 3, PUBSUB | LOADING | STALE | FAST, KNONE, NODE),
    spec("pubsub", -2, PUBSUB | LOADING | STALE, KNONE, NODE),
    spec("memory", -2, READONLY, KNONE, NODE),
    spec("wait", 3, NOSCRIPT, KNONE, NODE),
    spec("readonly", 1, LOADING | STALE | FAST, KNONE, NODE),
    spec("readwrite", 1, LOADING | STALE | FAST, KNONE, NODE),
    spec("slowlog", -2, ADMIN | LOADING | STALE, KNONE, NODE),
    spec(
        "latency",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        KNONE,
        NODE,
    ),
];

/// Key positions of the commands whose keys move with their arguments (Redis's
/// "movablekeys"), as COMMAND GETKEYS reports them: a count of keys (`numkeys`), SORT's and
/// GEORADIUS's STORE and STOREDIST targets. `None` for the others, whose keys the spec's
/// first/last/step give ([`Spec::keys`]).
pub fn movable_key_positions(name: &str, args: &[Bytes]) -> Option<Vec<usize>> {
    let is = |i: usize, word: &str| args[i].eq_ignore_ascii_case(word.as_bytes());
    // `numkeys` at `count`, the keys right after it, and keys before it.
    let counted = |count: usize, before: &[usize]| -> Option<Vec<usize>> {
        let n = resp::parse_i64(args.get(count)?)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| count + 1 + n <= args.len())?;
        Some(
            before
                .iter()
                .copied()
                .chain(count + 1..count + 1 + n)
                .collect(),
        )
    };
    let mut store = None;
    match name {
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            return counted(1, &[]);
        }
        "zunionstore" | "zinterstore" | "zdiffstore" => return counted(2, &[1]),
        // The keys are the first half of what follows STREAMS.
        "xread" | "xreadgroup" => {
            let mut i = 1;
            let streams = loop {
                let arg = args.get(i)?;
                match arg.to_ascii_lowercase().as_slice() {
                    b"block" | b"count" => i += 2,
                    b"group" => i += 3,
                    b"noack" => i += 1,
                    b"streams" => break i,
                    _ => return None,
                }
            };
            let n = args.len() - streams - 1;
            return (n > 0 && n.is_multiple_of(2))
                .then(|| (streams + 1..streams + 1 + n / 2).collect());
        }
        // Subcommands that name one key after them.
        "memory" if args.len() > 2 && is(1, "usage") => return Some(vec![2]),
        // MIGRATE host port key|"" db timeout [... KEYS key...]
        "migrate" => {
            let keys = (6..args.len()).find(|&i| is(i, "keys"));
            return Some(match keys {
                Some(i) => (i + 1..args.len()).collect(),
                None if !args.get(3).is_some_and(|k| k.is_empty()) => vec![3],
                None => Vec::new(),
            });
        }
        "object" if args.len() > 2 && !is(1, "help") => return Some(vec![2]),
        "blmpop" | "bzmpop" | "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall"
        | "fcall_ro" => return counted(2, &[]),
        "sort" => {
            let mut i = 2;
            while i < args.len() {
                if is(i, "limit") {
                    i += 2;
                } else if is(i, "get") || is(i, "by") {
                    i += 1;
                } else if is(i, "store") && i + 1 < args.len() {
                    store = Some(i + 1);
                }
                i += 1;
            }
        }
        "georadius" | "georadiusbymember" => {
            // Redis's key specs: the first STORE, then the first STOREDIST, each searched
            // from the options on (a keyword in the last place names no key).
            let from = if name == "georadius" { 6 } else { 5 };
            let after = |word: &str| {
                (from..args.len().saturating_sub(1))
                    .find(|&i| is(i, word))
                    .map(|i| i + 1)
            };
            let keys = [Some(1), after("store"), after("storedist")];
            return Some(keys.into_iter().flatten().collect());
        }
        _ => return None,
    }
    Some(std::iter::once(1).chain(store).collect())
}

/// Every command, in table order.
pub fn commands() -> &'static [Spec] {
    TABLE
}

/// Command names are shorter than this.
const NAME_BYTES_MAX: usize = 32;

/// Looks a command up by name, ignoring case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    // The commands grouped by first letter and length, a handful each, compared ignoring
    // case: a lookup (one per command run) neither copies nor hashes the name.
    static INDEX: OnceLock<Vec<Vec<&'static Spec>>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index = vec![Vec::new(); 26 * NAME_BYTES_MAX];
        for spec in TABLE {
            let group = name_group(spec.name.as_bytes()).expect("command names are short words");
            index[group].push(spec);
        }
        index
    });
    index[name_group(name)?]
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
        .copied()
}

/// Where [`lookup`] keeps the commands that may be called `name`.
fn name_group(name: &[u8]) -> Option<usize> {
    let first = name.first()?.to_ascii_lowercase();
    if !first.is_ascii_lowercase() || name.len() >= NAME_BYTES_MAX {
        return None;
    }
    Some(usize::from(first - b'a') * NAME_BYTES_MAX + name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_names_are_unique() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuch").is_none());
        for probe in [&b""[..], b"g", b"GETX", b"1get", b"\xffget", &[b'g'; 40]] {
            assert!(lookup(probe).is_none());
        }
        for spec in TABLE {
            assert!(std::ptr::eq(lookup(spec.name.as_bytes()).unwrap(), spec));
            let upper = spec.name.to_ascii_uppercase();
            assert!(std::ptr::eq(lookup(upper.as_bytes()).unwrap(), spec));
        }
        let mut names: Vec<_> = TABLE.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
        for (i, spec) in TABLE.iter().enumerate() {
            assert_eq!(spec.index(), i);
        }
    }

    #[test]
    fn store_keys_are_found_where_redis_finds_them() {
        let args = |line: &str| -> Vec<Bytes> {
            line.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        let keys = |line: &str| {
            let a = args(line);
            movable_key_positions(
                &a[0]
                    .to_ascii_lowercase()
                    .iter()
                    .map(|&b| b as char)
                    .collect::<String>(),
                &a,
            )
        };
        assert_eq!(keys("sort abc store def"), Some(vec![1, 3]));
        assert_eq!(
            keys("sort abc store invalid store stillbad store def"),
            Some(vec![1, 7])
        );
        assert_eq!(keys("sort abc by store get store"), Some(vec![1]));
        assert_eq!(keys("sort abc limit store 1 store x"), Some(vec![1, 6]));
        assert_eq!(
            keys("georadius src 1 1 1 km storedist dst"),
            Some(vec![1, 7])
        );
        // redis-server 7.0.15 answers these so.
        assert_eq!(
            keys("georadius src 1 1 1 km storedist d2 store d1"),
            Some(vec![1, 9, 7])
        );
        assert_eq!(
            keys("georadius src 1 1 1 km store d1 store d2"),
            Some(vec![1, 7])
        );
        assert_eq!(
            keys("georadius src 1 1 1 store km store d1"),
            Some(vec![1, 8])
        );
        assert_eq!(keys("georadius src 1 1 1 km store"), Some(vec![1]));
        assert_eq!(keys("georadiusbymember src m 1 km"), Some(vec![1]));
        assert_eq!(keys("get k"), None);
    }

    #[test]
    fn key_positions() {
        assert_eq!(lookup(b"mset").unwrap().key_positions(5), vec![1, 3]);
        assert_eq!(lookup(b"blpop").unwrap().key_positions(4), vec![1, 2]);
        assert_eq!(lookup(b"get").unwrap().key_positions(2), vec![1]);
    }
}
