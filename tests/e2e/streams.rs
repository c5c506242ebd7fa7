//! Streams exchanged with real Redis 7.0: a stream with tombstones, consumer groups, pending
//! entries and consumers, written by cacheplane (RDB, AOF, DUMP), passes redis-check-rdb /
//! redis-check-aof and reads back in redis-server with the same XINFO STREAM FULL, and the
//! other way round.

use resp::Frame;

use crate::harness::{Conn, Server, TempDir, ok};
use crate::persistence::{check_aof, check_rdb};

const KEYS: [&str; 3] = ["s", "few", "empty"];

fn run(c: &mut Conn, args: &[&str]) -> Frame {
    let reply = c.cmd(args);
    assert!(!matches!(reply, Frame::Error(_)), "{args:?}: {reply:?}");
    reply
}

/// Streams with several nodes, deleted entries, two groups with pending entries owned by
/// several consumers (delivered, claimed, auto-claimed, acknowledged), a NOACK read, and an
/// empty stream that only has a group.
fn fill(c: &mut Conn) {
    for i in 0..330 {
        let (f, v) = if i % 9 == 0 {
            ("other", format!("{i}"))
        } else {
            ("field", format!("value-{i}"))
        };
        run(
            c,
            &[
                "XADD",
                "s",
                &format!("{}-{}", 1000 + i / 4, i % 4),
                f,
                &v,
                "n",
                &i.to_string(),
            ],
        );
    }
    run(c, &["XDEL", "s", "1000-1", "1050-2", "1081-3"]);
    run(c, &["XTRIM", "s", "MINID", "1000-3"]);
    run(c, &["XGROUP", "CREATE", "s", "g1", "0"]);
    run(
        c,
        &["XGROUP", "CREATE", "s", "g2", "1040-0", "ENTRIESREAD", "7"],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "5",
            "STREAMS",
            "s",
            ">",
        ],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "bob",
            "COUNT",
            "4",
            "STREAMS",
            "s",
            ">",
        ],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g2",
            "carol",
            "NOACK",
            "COUNT",
            "3",
            "STREAMS",
            "s",
            ">",
        ],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g2",
            "dave",
            "COUNT",
            "2",
            "STREAMS",
            "s",
            ">",
        ],
    );
    run(
        c,
        &["XCLAIM", "s", "g1", "bob", "0", "1001-0", "RETRYCOUNT", "5"],
    );
    run(
        c,
        &["XAUTOCLAIM", "s", "g1", "erin", "0", "1001-2", "COUNT", "2"],
    );
    run(c, &["XACK", "s", "g1", "1002-0"]);
    run(c, &["XGROUP", "CREATECONSUMER", "s", "g1", "idle"]);
    run(c, &["XADD", "few", "MAXLEN", "~", "10", "*", "a", "1"]);
    run(c, &["XADD", "few", "*", "b", "2", "c", "3"]);
    run(c, &["XGROUP", "CREATE", "empty", "g", "$", "MKSTREAM"]);
    run(
        c,
        &[
            "XSETID",
            "empty",
            "77-7",
            "ENTRIESADDED",
            "12",
            "MAXDELETEDID",
            "70-0",
        ],
    );
}

fn wait_rewrite(c: &mut Conn) {
    crate::harness::wait_until("aof rewrite", std::time::Duration::from_secs(30), || {
        let Frame::Bulk(info) = c.cmd(&["INFO", "persistence"]) else {
            return false;
        };
        let info = String::from_utf8_lossy(&info).into_owned();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    });
}

/// The leaves of a reply in order, as text.
fn leaves(f: &Frame, out: &mut Vec<String>) {
    match f {
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            out.push(format!("[{}]", items.len()));
            items.iter().for_each(|i| leaves(i, out));
        }
        Frame::Map(pairs) => {
            out.push(format!("{{{}}}", pairs.len()));
            for (k, v) in pairs {
                leaves(k, out);
                leaves(v, out);
            }
        }
        Frame::Bulk(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        other => out.push(format!("{other:?}")),
    }
}

/// XINFO STREAM FULL of every key, as comparable text. `mask_seen`: consumers' seen-times
/// (set to the load time when an AOF is replayed) are left out; so is the node layout
/// (`radix-tree-*`), which depends on how each side split entries into listpacks.
fn full_info(c: &mut Conn, mask_seen: bool) -> Vec<String> {
    let mut out = Vec::new();
    for key in KEYS {
        let mut l = Vec::new();
        leaves(
            &run(c, &["XINFO", "STREAM", key, "FULL", "COUNT", "0"]),
            &mut l,
        );
        let mut i = 0;
        while i < l.len() {
            let masked = l[i].starts_with("radix-tree-") || (mask_seen && l[i] == "seen-time");
            out.push(l[i].clone());
            if masked {
                i += 1;
            }
            i += 1;
        }
        out.push(format!("XLEN {:?}", c.cmd(&["XLEN", key])));
    }
    out
}

#[test]
fn streams_in_cacheplane_dumps_load_in_redis_server_and_back() {
    let dir = TempDir::new("streams-rdb");
    let expected = {
        let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
        let mut c = node.conn();
        fill(&mut c);
        assert_eq!(c.cmd(&["SAVE"]), ok());
        full_info(&mut c, false)
    };
    check_rdb(&dir.path().join("dump.rdb"));
    let redis = Server::redis_in(dir.path(), &[]);
    let mut r = redis.conn();
    assert_eq!(full_info(&mut r, false), expected);
    // redis-server's own dump of the same data reads back here the same.
    assert_eq!(r.cmd(&["SAVE"]), ok());
    drop(redis);
    let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
    assert_eq!(full_info(&mut node.conn(), false), expected);
}

#[test]
fn stream_dump_payloads_restore_both_ways() {
    let node = Server::cacheplane(&["--save", ""]);
    let redis = Server::redis(&[]);
    let (mut c, mut r) = (node.conn(), redis.conn());
    fill(&mut c);
    fill(&mut r);
    for redis_to_node in [false, true] {
        let (from, to) = if redis_to_node {
            (&mut r, &mut c)
        } else {
            (&mut c, &mut r)
        };
        for key in KEYS {
            let Frame::Bulk(payload) = from.cmd(&["DUMP", key]) else {
                panic!("no dump of {key}")
            };
            let copy = format!("{key}-copy");
            let reply = to.cmd_bytes(&[b"RESTORE", copy.as_bytes(), b"0", &payload]);
            assert_eq!(reply, ok(), "{key}");
            let mut a = Vec::new();
            leaves(&run(from, &["XINFO", "STREAM", key, "FULL"]), &mut a);
            let mut b = Vec::new();
            leaves(&run(to, &["XINFO", "STREAM", &copy, "FULL"]), &mut b);
            // The node layout aside (radix-tree-keys and -nodes, names and values).
            a.drain(3..7);
            b.drain(3..7);
            assert_eq!(a, b, "{key}");
            run(to, &["DEL", &copy]);
        }
    }
}

#[test]
fn stream_effects_in_cacheplane_aof_replay_the_same_in_redis_server() {
    let dir = TempDir::new("streams-aof");
    let aof = ["--appendonly", "yes", "--save", ""];
    let expected = {
        let node = Server::cacheplane_in(dir.path(), &aof);
        let mut c = node.conn();
        fill(&mut c);
        // A rewrite: the streams go into the new RDB base, later effects into the log.
        run(&mut c, &["BGREWRITEAOF"]);
        wait_rewrite(&mut c);
        run(
            &mut c,
            &[
                "XREADGROUP",
                "GROUP",
                "g1",
                "zoe",
                "COUNT",
                "2",
                "STREAMS",
                "s",
                ">",
            ],
        );
        // An auto-generated ID and an approximate trim: logged as the ID and bound chosen.
        run(&mut c, &["XADD", "few", "MAXLEN", "~", "1", "*", "d", "4"]);
        full_info(&mut c, true)
    };
    check_aof(dir.path());
    let redis = Server::redis_in(dir.path(), &["--appendonly", "yes"]);
    assert_eq!(full_info(&mut redis.conn(), true), expected);
    drop(redis);
    let node = Server::cacheplane_in(dir.path(), &aof);
    assert_eq!(full_info(&mut node.conn(), true), expected);
}

#[test]
fn stream_effects_in_redis_server_aof_replay_the_same_here() {
    for preamble in ["yes", "no"] {
        redis_aof_replays_here(preamble);
    }
}

/// redis-server's log, rewritten once (into an RDB base, or with `preamble` no into the
/// commands Redis rewrites a stream as: XADD, XSETID, XGROUP CREATE, XCLAIM ...).
fn redis_aof_replays_here(preamble: &str) {
    let dir = TempDir::new("streams-redis-aof");
    let expected = {
        // Under everysec redis-server may postpone a write past the reply while a
        // background fsync runs; the test kills it, so every write must be on disk.
        let redis = Server::redis_in(
            dir.path(),
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--aof-use-rdb-preamble",
                preamble,
            ],
        );
        let mut r = redis.conn();
        fill(&mut r);
        run(&mut r, &["BGREWRITEAOF"]);
        wait_rewrite(&mut r);
        run(&mut r, &["XADD", "s", "*", "after", "rewrite"]);
        run(&mut r, &["XADD", "few", "MAXLEN", "~", "1", "*", "d", "4"]);
        full_info(&mut r, true)
    };
    let node = Server::cacheplane_in(dir.path(), &["--appendonly", "yes", "--save", ""]);
    assert_eq!(full_info(&mut node.conn(), true), expected);
}

fn blocked_clients(c: &mut Conn) -> usize {
    let Frame::Bulk(info) = c.cmd(&["INFO", "clients"]) else {
        panic!("INFO clients")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("blocked_clients in INFO")
}

fn wait_blocked(c: &mut Conn, n: usize) {
    crate::harness::wait_until(
        "clients to block",
        std::time::Duration::from_secs(10),
        || blocked_clients(c) == n,
    );
}

/// Blocked readers are served in arrival order, each from the ID it waits after (`$` as
/// it stood when it blocked); group readers fail when their group or stream goes.
#[test]
fn blocked_stream_readers_are_served_and_failed_as_in_redis() {
    let node = Server::cacheplane(&["--save", ""]);
    let mut c = node.conn();
    run(&mut c, &["XADD", "s", "1-0", "f", "old"]);
    run(&mut c, &["XGROUP", "CREATE", "s", "g", "$"]);
    let mut reader = node.conn();
    reader.send(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    wait_blocked(&mut c, 1);
    let mut group_a = node.conn();
    group_a.send(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "a",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    wait_blocked(&mut c, 2);
    let mut group_b = node.conn();
    group_b.send(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "b",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    wait_blocked(&mut c, 3);
    run(&mut c, &["XADD", "s", "2-0", "f", "new"]);
    let render = |f: Frame| {
        let mut l = Vec::new();
        leaves(&f, &mut l);
        l.join(" ")
    };
    let expected = render(Frame::Array(vec![Frame::Array(vec![
        Frame::Bulk("s".into()),
        Frame::Array(vec![Frame::Array(vec![
            Frame::Bulk("2-0".into()),
            Frame::Array(vec![Frame::Bulk("f".into()), Frame::Bulk("new".into())]),
        ])]),
    ])]));
    assert_eq!(render(reader.read().unwrap()), expected);
    // The first group reader gets the entry; the second keeps waiting for the next one.
    assert_eq!(render(group_a.read().unwrap()), expected);
    assert_eq!(blocked_clients(&mut c), 1);
    run(&mut c, &["XGROUP", "DESTROY", "s", "g"]);
    let Some(Frame::Error(e)) = group_b.read() else {
        panic!("group reader not failed")
    };
    assert!(e.starts_with("NOGROUP"), "{e}");
    run(&mut c, &["XGROUP", "CREATE", "s", "g", "$"]);
    group_b.send(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "b",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    wait_blocked(&mut c, 1);
    run(&mut c, &["DEL", "s"]);
    assert_eq!(
        group_b.read(),
        Some(Frame::Error(
            "UNBLOCKED the stream key no longer exists".into()
        ))
    );
    // Inside MULTI a blocking read answers at once.
    run(&mut c, &["MULTI"]);
    c.cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    let Frame::Array(replies) = c.cmd(&["EXEC"]) else {
        panic!("EXEC")
    };
    assert_eq!(replies, vec![Frame::Null]);
}
