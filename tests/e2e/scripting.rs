//! Lua scripting against a running node: Redis's replies and errors, runaway scripts
//! stopped by SCRIPT KILL while others get BUSY, and a script's effects in the AOF that
//! redis-server replays.

use std::time::Duration;

use resp::Frame;

use crate::harness::{Conn, Server, TempDir, bulk, err_text, ok, wait_until};
use crate::persistence::{check_aof, check_rdb};

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

#[test]
fn scripts_reply_and_fail_as_redis_does() {
    let node = Server::cacheplane(&[]);
    let mut c = node.conn();
    assert_eq!(
        c.cmd(&["EVAL", "return {1, 'a', true, false, {ok='fine'}}", "0"]),
        Frame::Array(vec![
            int(1),
            bulk("a"),
            int(1),
            Frame::Null,
            Frame::Simple("fine".into())
        ])
    );
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])",
            "1",
            "k",
            "v"
        ]),
        bulk("v")
    );
    // The sha of the script above: EVALSHA runs it from the cache.
    let sha = "return redis.call('get', KEYS[1])";
    let Frame::Bulk(sha) = c.cmd(&["SCRIPT", "LOAD", sha]) else {
        panic!("SCRIPT LOAD answers the sha");
    };
    let sha = String::from_utf8(sha.to_vec()).unwrap();
    assert_eq!(
        c.cmd(&["EVALSHA", &sha.to_uppercase(), "1", "k"]),
        bulk("v")
    );
    assert_eq!(
        c.cmd(&["SCRIPT", "EXISTS", &sha, "ffff"]),
        Frame::Array(vec![int(1), int(0)])
    );
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH"]), ok());
    assert!(err_text(&c.cmd(&["EVALSHA", &sha, "0"])).starts_with("NOSCRIPT"));

    let e = c.cmd(&["EVAL", "return redis.call('incr', KEYS[1])", "1", "k"]);
    assert!(
        err_text(&e).starts_with("ERR value is not an integer"),
        "{e:?}"
    );
    let e = c.cmd(&["EVAL", "return redis.call('nosuch')", "0"]);
    assert!(
        err_text(&e).contains("Unknown Redis command called from script"),
        "{e:?}"
    );
    assert!(err_text(&e).ends_with("on @user_script:1."), "{e:?}");
    let e = c.cmd(&["EVAL", "x = 1", "0"]);
    assert!(
        err_text(&e).contains("Attempt to modify a readonly table"),
        "{e:?}"
    );
    let e = c.cmd(&["EVAL", "return (", "0"]);
    assert!(
        err_text(&e).starts_with("ERR Error compiling script"),
        "{e:?}"
    );
    let e = c.cmd(&["EVAL_RO", "return redis.call('set', 'k', 'w')", "0"]);
    assert!(
        err_text(&e).contains("Write commands are not allowed from read-only scripts"),
        "{e:?}"
    );
    // Bombs are bounded and the node stays up.
    let e = c.cmd(&["EVAL", "return string.rep('x', 2^30)", "0"]);
    assert!(err_text(&e).contains("not enough memory"), "{e:?}");
    let e = c.cmd(&[
        "EVAL",
        "local function f() return 1 + f() end return f()",
        "0",
    ]);
    assert!(err_text(&e).contains("stack overflow"), "{e:?}");
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));

    let lib = "#!lua name=mylib\nredis.register_function('hello', function(keys, args) return 'hi ' .. args[1] end)";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), bulk("mylib"));
    assert_eq!(c.cmd(&["FCALL", "hello", "0", "you"]), bulk("hi you"));
    assert_eq!(
        err_text(&c.cmd(&["FUNCTION", "LOAD", lib])),
        "ERR Library 'mylib' already exists"
    );
    assert_eq!(c.cmd(&["FUNCTION", "DELETE", "mylib"]), ok());
    assert_eq!(
        err_text(&c.cmd(&["FCALL", "hello", "0"])),
        "ERR Function not found"
    );
}

#[test]
fn a_runaway_script_is_killed_while_others_get_busy() {
    let node = Server::cacheplane(&[]);
    let mut c = node.conn();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "50"]),
        ok()
    );
    let mut runner = node.conn();
    runner.send(&["EVAL", "local i = 0 while true do i = i + 1 end", "0"]);
    wait_until(
        "a BUSY reply",
        Duration::from_secs(30),
        || matches!(c.cmd(&["PING"]), Frame::Error(e) if e.starts_with("BUSY")),
    );
    // A client that connects meanwhile is answered too.
    let mut fresh = node.conn();
    let e = fresh.cmd(&["PING"]);
    assert!(err_text(&e).starts_with("BUSY"), "{e:?}");
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), ok());
    let killed = runner.read().expect("the script's caller gets a reply");
    assert!(
        err_text(&killed).contains("Script killed by user"),
        "{killed:?}"
    );
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(runner.cmd(&["PING"]), Frame::Simple("PONG".into()));
    let e = c.cmd(&["SCRIPT", "KILL"]);
    assert!(err_text(&e).starts_with("NOTBUSY"), "{e:?}");
    assert_eq!(fresh.cmd(&["PING"]), Frame::Simple("PONG".into()));

    // The same for a function, stopped by FUNCTION KILL (SCRIPT KILL is refused for it).
    let lib = "#!lua name=spin\nredis.register_function('spin', function() while true do end end)";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), bulk("spin"));
    runner.send(&["FCALL", "spin", "0"]);
    wait_until(
        "a BUSY reply",
        Duration::from_secs(30),
        || matches!(c.cmd(&["PING"]), Frame::Error(e) if e.starts_with("BUSY")),
    );
    let e = c.cmd(&["SCRIPT", "KILL"]);
    assert!(err_text(&e).starts_with("BUSY"), "{e:?}");
    let Frame::Array(stats) = c.cmd(&["FUNCTION", "STATS"]) else {
        panic!("FUNCTION STATS answers while the function runs");
    };
    assert!(
        matches!(&stats[1], Frame::Array(running) if running[1] == bulk("spin")),
        "{stats:?}"
    );
    assert_eq!(c.cmd(&["FUNCTION", "KILL"]), ok());
    let killed = runner.read().expect("the function's caller gets a reply");
    assert!(
        err_text(&killed).contains("Script killed by user"),
        "{killed:?}"
    );
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn script_effects_and_libraries_reach_the_aof_and_load_in_redis_server() {
    let dir = TempDir::new("script-aof");
    {
        let node = Server::cacheplane_in(
            dir.path(),
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
        );
        let mut c: Conn = node.conn();
        let script = "redis.call('incrby', KEYS[1], 5)
            redis.call('rpush', KEYS[2], 'a', 'b')
            redis.set_repl(redis.REPL_NONE)
            redis.call('set', 'not-logged', '1')
            return redis.call('get', KEYS[1])";
        assert_eq!(c.cmd(&["EVAL", script, "2", "counter", "list"]), bulk("5"));
        let lib = "#!lua name=lib\nredis.register_function('bump', function(keys) return redis.call('incr', keys[1]) end)";
        assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), bulk("lib"));
        assert_eq!(c.cmd(&["FCALL", "bump", "1", "counter"]), int(6));
        // Dropped with SIGKILL: the log alone carries the data.
    }
    check_aof(dir.path());
    let incr = std::fs::read_to_string(
        dir.path()
            .join("appendonlydir")
            .join("appendonly.aof.1.incr.aof"),
    )
    .unwrap_or_default();
    assert!(
        incr.contains("MULTI") && incr.contains("EXEC"),
        "a script's writes are one transaction:\n{incr}"
    );
    assert!(
        !incr.contains("not-logged"),
        "REPL_NONE writes stay out of the log"
    );
    let redis = Server::redis_in(dir.path(), &["--appendonly", "yes"]);
    let mut r = redis.conn();
    assert_eq!(r.cmd(&["GET", "counter"]), bulk("6"));
    assert_eq!(
        r.cmd(&["LRANGE", "list", "0", "-1"]),
        Frame::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(r.cmd(&["EXISTS", "not-logged"]), int(0));
    assert_eq!(r.cmd(&["FCALL", "bump", "1", "counter"]), int(7));
    drop(redis);
    // And cacheplane replays the log it wrote: the library comes back with the data.
    let node = Server::cacheplane_in(dir.path(), &["--appendonly", "yes", "--save", ""]);
    let mut c = node.conn();
    assert_eq!(c.cmd(&["FCALL", "bump", "1", "counter"]), int(8));
}

#[test]
fn function_libraries_round_trip_in_rdb_files_with_redis_server() {
    let dir = TempDir::new("function-rdb");
    let ours = "#!lua name=ours\nredis.register_function{function_name='mine', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";
    {
        let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
        let mut c = node.conn();
        assert_eq!(c.cmd(&["FUNCTION", "LOAD", ours]), bulk("ours"));
        assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
        assert_eq!(c.cmd(&["SAVE"]), ok());
    }
    check_rdb(&dir.path().join("dump.rdb"));
    let theirs =
        "#!lua name=theirs\nredis.register_function('yours', function() return 'redis' end)";
    {
        let redis = Server::redis_in(dir.path(), &[]);
        let mut r = redis.conn();
        assert_eq!(r.cmd(&["FCALL_RO", "mine", "1", "k"]), bulk("v"));
        assert_eq!(r.cmd(&["FUNCTION", "LOAD", theirs]), bulk("theirs"));
        assert_eq!(r.cmd(&["SAVE"]), ok());
    }
    let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
    let mut c = node.conn();
    assert_eq!(c.cmd(&["FCALL_RO", "mine", "1", "k"]), bulk("v"));
    assert_eq!(c.cmd(&["FCALL", "yours", "0"]), bulk("redis"));
    // FUNCTION DUMP of ours restores in redis-server, and the reverse.
    let Frame::Bulk(payload) = c.cmd(&["FUNCTION", "DUMP"]) else {
        panic!("FUNCTION DUMP answers a payload");
    };
    let redis = Server::redis(&[]);
    let mut r = redis.conn();
    assert_eq!(r.cmd_bytes(&[b"FUNCTION", b"RESTORE", &payload]), ok());
    assert_eq!(r.cmd(&["FCALL", "yours", "0"]), bulk("redis"));
    let Frame::Bulk(back) = r.cmd(&["FUNCTION", "DUMP"]) else {
        panic!("FUNCTION DUMP answers a payload");
    };
    assert_eq!(
        c.cmd_bytes(&[b"FUNCTION", b"RESTORE", &back, b"REPLACE"]),
        ok()
    );
    let mut bad = back.to_vec();
    bad[0] ^= 0xff;
    let e = c.cmd_bytes(&[b"FUNCTION", b"RESTORE", &bad]);
    assert!(
        err_text(&e).contains("payload version or checksum are wrong"),
        "{e:?}"
    );
}
