//! Server behaviour: AUTH, transactions, pub/sub, blocking pops, expiry, clients, limits.

use std::time::{Duration, Instant};

use resp::Frame;

use crate::harness::{Conn, Server, bulk, err_text, ok};

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn arr(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

#[test]
fn requirepass_refuses_everything_but_auth_hello_quit() {
    let node = Server::cacheplane(&["--requirepass", "secret"]);
    let mut c = node.conn();
    assert_eq!(
        err_text(&c.cmd(&["GET", "k"])),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        err_text(&c.cmd(&["AUTH", "wrong"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(c.cmd(&["AUTH", "secret"]), ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    let mut h = node.conn();
    assert!(matches!(
        h.cmd(&["HELLO", "3", "AUTH", "default", "secret"]),
        Frame::Map(_)
    ));
    assert_eq!(h.cmd(&["GET", "k"]), bulk("v"));
    let mut q = node.conn();
    assert_eq!(q.cmd(&["QUIT"]), ok());
    assert!(q.is_closed());
}

#[test]
fn multi_exec_and_watch() {
    let node = Server::cacheplane(&[]);
    let mut a = node.conn();
    let mut b = node.conn();
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["SET", "x", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(a.cmd(&["INCR", "x"]), Frame::Simple("QUEUED".into()));
    assert_eq!(a.cmd(&["EXEC"]), arr(vec![ok(), int(2)]));
    // A watched key written by someone else aborts the transaction.
    assert_eq!(a.cmd(&["WATCH", "x"]), ok());
    assert_eq!(b.cmd(&["SET", "x", "changed"]), ok());
    a.cmd(&["MULTI"]);
    a.cmd(&["SET", "x", "mine"]);
    assert_eq!(a.cmd(&["EXEC"]), Frame::Null);
    assert_eq!(a.cmd(&["GET", "x"]), bulk("changed"));
    // Untouched watch: runs.
    a.cmd(&["WATCH", "x"]);
    a.cmd(&["MULTI"]);
    a.cmd(&["SET", "x", "mine"]);
    assert_eq!(a.cmd(&["EXEC"]), arr(vec![ok()]));
    // A blocking pop inside MULTI answers at once.
    a.cmd(&["MULTI"]);
    a.cmd(&["BLPOP", "nolist", "0"]);
    assert_eq!(a.cmd(&["EXEC"]), arr(vec![Frame::Null]));
}

#[test]
fn pubsub_delivers_to_channels_and_patterns() {
    let node = Server::cacheplane(&[]);
    let mut sub = node.conn();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "news"]),
        arr(vec![bulk("subscribe"), bulk("news"), int(1)])
    );
    sub.send(&["PSUBSCRIBE", "n*"]);
    assert_eq!(
        sub.read(),
        Some(arr(vec![bulk("psubscribe"), bulk("n*"), int(2)]))
    );
    assert_eq!(
        err_text(&sub.cmd(&["GET", "k"])),
        "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    );
    let mut publisher = node.conn();
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "hello"]), int(2));
    let mut got = vec![sub.read().unwrap(), sub.read().unwrap()];
    got.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(
        got,
        vec![
            arr(vec![bulk("message"), bulk("news"), bulk("hello")]),
            arr(vec![
                bulk("pmessage"),
                bulk("n*"),
                bulk("news"),
                bulk("hello")
            ]),
        ]
    );
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "news"]),
        arr(vec![bulk("news"), int(1)])
    );
    sub.cmd(&["UNSUBSCRIBE"]);
    sub.send(&["PUNSUBSCRIBE"]);
    assert_eq!(
        sub.read(),
        Some(arr(vec![bulk("punsubscribe"), bulk("n*"), int(0)]))
    );
    assert_eq!(sub.cmd(&["SET", "k", "v"]), ok());
}

#[test]
fn blocked_clients_are_served_first_come_first_served() {
    let node = Server::cacheplane(&[]);
    let mut first = node.conn();
    let mut second = node.conn();
    let mut pusher = node.conn();
    first.send(&["BLPOP", "q", "0"]);
    wait_for_blocked(&mut pusher, 1);
    second.send(&["BRPOP", "q", "other", "0"]);
    wait_for_blocked(&mut pusher, 2);
    assert_eq!(pusher.cmd(&["RPUSH", "q", "a", "b"]), int(2));
    assert_eq!(first.read(), Some(arr(vec![bulk("q"), bulk("a")])));
    assert_eq!(second.read(), Some(arr(vec![bulk("q"), bulk("b")])));
    assert_eq!(pusher.cmd(&["EXISTS", "q"]), int(0));
    // BLMOVE wakes a waiter on the destination.
    first.send(&["BLPOP", "dst", "0"]);
    wait_for_blocked(&mut pusher, 1);
    second.send(&["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"]);
    wait_for_blocked(&mut pusher, 2);
    pusher.cmd(&["RPUSH", "src", "x"]);
    assert_eq!(second.read(), Some(bulk("x")));
    assert_eq!(first.read(), Some(arr(vec![bulk("dst"), bulk("x")])));
    // Sorted sets too.
    first.send(&["BZPOPMIN", "z", "0"]);
    wait_for_blocked(&mut pusher, 1);
    pusher.cmd(&["ZADD", "z", "2", "b", "1", "a"]);
    assert_eq!(
        first.read(),
        Some(arr(vec![bulk("z"), bulk("a"), bulk("1")]))
    );
}

fn wait_for_blocked(c: &mut Conn, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let Frame::Bulk(info) = c.cmd(&["INFO", "clients"]) else {
            panic!("INFO is a bulk string")
        };
        if String::from_utf8_lossy(&info).contains(&format!("blocked_clients:{n}\r\n")) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {n} blocked clients");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn blocking_timeouts_and_unblock() {
    let node = Server::cacheplane(&[]);
    let mut c = node.conn();
    let start = Instant::now();
    assert_eq!(c.cmd(&["BLPOP", "none", "0.2"]), Frame::Null);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "waited {waited:?}"
    );
    let mut blocked = node.conn();
    let Frame::Integer(id) = blocked.cmd(&["CLIENT", "ID"]) else {
        panic!()
    };
    blocked.send(&["BLPOP", "none", "0"]);
    wait_for_blocked(&mut c, 1);
    assert_eq!(
        c.cmd(&["CLIENT", "UNBLOCK", &id.to_string(), "ERROR"]),
        int(1)
    );
    assert_eq!(
        err_text(&blocked.read().unwrap()),
        "UNBLOCKED client unblocked via CLIENT UNBLOCK"
    );
    assert_eq!(blocked.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn active_expiry_removes_keys_without_access() {
    let node = Server::cacheplane(&["--hz", "10"]);
    let mut c = node.conn();
    for i in 0..100 {
        c.cmd(&["SET", &format!("k{i}"), "v", "PX", "100"]);
    }
    c.cmd(&["SET", "keep", "v"]);
    let start = Instant::now();
    // Poll only DBSIZE, which never touches keys, so only active expiry can remove them.
    loop {
        if c.cmd(&["DBSIZE"]) == int(1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "keys outlived their deadline by more than the cycle bound"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Deadline 100 ms, one cycle 100 ms: gone within about 200 ms plus scheduling slack.
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "took {:?}",
        start.elapsed()
    );
    let Frame::Bulk(info) = c.cmd(&["INFO", "stats"]) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&info).contains("expired_keys:100\r\n"));
}

#[test]
fn client_list_setname_and_kill() {
    let node = Server::cacheplane(&[]);
    let mut a = node.conn();
    let mut b = node.conn();
    assert_eq!(b.cmd(&["CLIENT", "SETNAME", "victim"]), ok());
    let Frame::Bulk(list) = a.cmd(&["CLIENT", "LIST"]) else {
        panic!()
    };
    let list = String::from_utf8_lossy(&list).to_string();
    assert_eq!(list.lines().count(), 2, "{list}");
    let line = list
        .lines()
        .find(|l| l.contains("name=victim"))
        .expect("named client listed");
    let addr = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap();
    assert_eq!(a.cmd(&["CLIENT", "KILL", addr]), ok());
    assert!(b.is_closed());
    assert_eq!(
        err_text(&a.cmd(&["CLIENT", "KILL", addr])),
        "ERR No such client"
    );
}

#[test]
fn maxclients_refuses_extra_connections() {
    let node = Server::cacheplane(&["--maxclients", "2"]);
    let mut a = node.conn();
    let _b = node.conn();
    a.cmd(&["PING"]);
    let mut c = Conn::try_connect(node.port).unwrap();
    assert_eq!(
        err_text(&c.read().unwrap()),
        "ERR max number of clients reached"
    );
    let Frame::Bulk(info) = a.cmd(&["INFO", "stats"]) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&info).contains("rejected_connections:1\r\n"));
}

#[test]
fn config_set_takes_effect() {
    let node = Server::cacheplane(&[]);
    let mut c = node.conn();
    assert_eq!(c.cmd(&["CONFIG", "SET", "requirepass", "pw"]), ok());
    let mut fresh = node.conn();
    assert_eq!(
        err_text(&fresh.cmd(&["GET", "x"])),
        "NOAUTH Authentication required."
    );
    assert_eq!(fresh.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "requirepass"]),
        arr(vec![bulk("requirepass"), bulk("pw")])
    );
    assert!(
        err_text(&c.cmd(&["CONFIG", "SET", "port", "1"])).contains("can't set immutable config")
    );
}

#[test]
fn idle_clients_are_closed_after_timeout() {
    let node = Server::cacheplane(&["--timeout", "1"]);
    let mut c = node.conn();
    c.cmd(&["PING"]);
    let start = Instant::now();
    assert!(c.is_closed());
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[test]
fn shutdown_stops_the_process() {
    let mut node = Server::cacheplane(&[]);
    let mut c = node.conn();
    c.send(&["SHUTDOWN", "NOSAVE"]);
    assert!(c.is_closed());
    assert!(
        node.wait_exit(Duration::from_secs(10)),
        "node still running after SHUTDOWN"
    );
}

#[test]
fn bad_flags_exit_with_redis_style_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cacheplane"))
        .args(["node", "--port", "0", "--nosuchflag", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FATAL CONFIG FILE ERROR") && err.contains("Bad directive"),
        "{err}"
    );
}

#[test]
fn info_has_redis_sections_and_fields() {
    let node = Server::cacheplane(&[]);
    let mut c = node.conn();
    c.cmd(&["SET", "a", "1"]);
    c.cmd(&["SET", "b", "2", "EX", "100"]);
    let Frame::Bulk(info) = c.cmd(&["INFO"]) else {
        panic!()
    };
    let info = String::from_utf8_lossy(&info);
    for field in [
        "# Server\r\n",
        "redis_version:7.0.15\r\n",
        "# Clients\r\nconnected_clients:1\r\n",
        "# Memory\r\nused_memory:",
        "# Persistence\r\nloading:0\r\n",
        "rdb_changes_since_last_save:2\r\n",
        "# Stats\r\n",
        "# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n",
    ] {
        assert!(info.contains(field), "INFO lacks {field:?}:\n{info}");
    }
    // jemalloc counts real allocations: a megabyte value shows up in used_memory.
    let used = |c: &mut Conn| -> u64 {
        let Frame::Bulk(m) = c.cmd(&["INFO", "memory"]) else {
            panic!()
        };
        let m = String::from_utf8_lossy(&m).to_string();
        m.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = used(&mut c);
    c.cmd(&["SET", "big", &"x".repeat(1 << 20)]);
    assert!(
        used(&mut c) >= before + (1 << 20),
        "used_memory did not grow"
    );
}

#[test]
fn replies_a_client_does_not_read_arrive_whole_and_in_order() {
    // The node holds small replies until its worker goes to sleep and writes them then
    // (node::held); once the client's socket is full, the rest goes back to the
    // connection's own buffer. Ten megabytes of 10 KB replies, one command at a time,
    // none read until the end: they must all arrive, in order, byte for byte.
    const REPLIES: usize = 1000;
    let node = Server::cacheplane(&[]);
    let mut probe = node.conn();
    let value = |i: usize| format!("{i:05}").repeat(2000);
    for i in 0..REPLIES {
        assert_eq!(probe.cmd(&["SET", &format!("k{i}"), &value(i)]), ok());
    }
    let mut reader = node.conn();
    let Frame::Integer(id) = reader.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is an integer")
    };
    for i in 0..REPLIES {
        let key = format!("k{i}");
        reader.send(&["GETDEL", &key]);
        // Each its own batch: the command ran (its key is gone) before the next is sent.
        crate::harness::wait_until("the GETDEL ran", Duration::from_secs(30), || {
            probe.cmd(&["EXISTS", &key]) == int(0)
        });
    }
    let Frame::Bulk(list) = probe.cmd(&["CLIENT", "LIST", "ID", &id.to_string()]) else {
        panic!("CLIENT LIST is a bulk string")
    };
    let list = String::from_utf8_lossy(&list);
    let omem: usize = list
        .split_whitespace()
        .find_map(|f| f.strip_prefix("omem="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no omem in {list}"));
    assert!(omem > 0, "the socket took all ten megabytes: {list}");
    for i in 0..REPLIES {
        assert_eq!(reader.read(), Some(bulk(&value(i))), "reply {i}");
    }
}
