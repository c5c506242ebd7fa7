//! What clients observe besides replies — keyspace notifications, client-side caching
//! invalidations, MONITOR lines — compared side by side with redis-server 7.0: the same
//! commands against both servers must deliver the same messages in the same order.

use resp::Frame;

use crate::harness::{Conn, Server, bulk, ok};

/// Reads pushed frames until one whose text contains `marker`; returns those before it.
fn read_until(c: &mut Conn, marker: &str) -> Vec<Frame> {
    let mut seen = Vec::new();
    loop {
        let f = c.read().expect("a pushed message before the marker");
        if format!("{f:?}").contains(marker) {
            return seen;
        }
        seen.push(f);
    }
}

/// Runs a write workload with every event class enabled; returns what a `PSUBSCRIBE *`
/// subscriber received.
fn keyspace_events(server: &Server) -> Vec<Frame> {
    let mut c = server.conn();
    let mut sub = server.conn();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
        ok()
    );
    sub.send(&["PSUBSCRIBE", "*"]);
    sub.read().expect("subscription confirmed");
    let workload: &[&[&str]] = &[
        &["SET", "k", "v", "EX", "100"],
        &["APPEND", "k", "w"],
        &["INCRBY", "n", "5"],
        &["RENAME", "k", "k2"],
        &["PERSIST", "k2"],
        &["DEL", "k2", "missing"],
        &["RPUSH", "l", "a", "b"],
        &["LMOVE", "l", "l2", "LEFT", "RIGHT"],
        &["LPOP", "l"],
        &["LPOP", "l"],
        &["HSET", "h", "f", "1"],
        &["HINCRBYFLOAT", "h", "f", "0.5"],
        &["HDEL", "h", "f"],
        &["SADD", "s", "a", "b"],
        &["SMOVE", "s", "s2", "a"],
        &["SINTERSTORE", "d", "s", "s2"],
        &["ZADD", "z", "1", "a", "2", "b"],
        &["ZINCRBY", "z", "1", "a"],
        &["ZPOPMIN", "z"],
        &["ZREMRANGEBYSCORE", "z", "0", "10"],
        &["EXPIRE", "l2", "0"],
        &["COPY", "n", "n2"],
        &["SETBIT", "b", "3", "1"],
        &["SETBIT", "b", "3", "1"],
        &["BITFIELD", "b", "SET", "u8", "8", "7", "GET", "u8", "0"],
        &["BITOP", "NOT", "b2", "b"],
        &["BITOP", "AND", "b2", "missing"],
        &["PFADD", "hll", "a", "b"],
        &["PFADD", "hll", "a"],
        &["PFCOUNT", "hll"],
        &["PFMERGE", "hll2", "hll"],
        &["GEOADD", "g", "13.361389", "38.115556", "Palermo"],
        &[
            "GEOSEARCHSTORE",
            "g2",
            "g",
            "FROMLONLAT",
            "13",
            "38",
            "BYRADIUS",
            "100",
            "km",
        ],
        &["GEORADIUS", "g", "13", "38", "100", "km", "STORE", "g3"],
        &["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "g3"],
        &["XADD", "x", "1-1", "f", "v"],
        &["XADD", "x", "MAXLEN", "1", "2-1", "f", "v"],
        &["XGROUP", "CREATE", "x", "g", "0"],
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "x", ">"],
        &["XCLAIM", "x", "g", "d", "0", "2-1"],
        &["XDEL", "x", "2-1"],
        &["XSETID", "x", "5-0"],
        &["XGROUP", "DESTROY", "x", "g"],
        &["PUBLISH", "sentinel", "end"],
    ];
    for cmd in workload {
        c.cmd(cmd);
    }
    read_until(&mut sub, "sentinel")
}

#[test]
fn keyspace_notifications_match_redis() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let ours = keyspace_events(&node);
    assert!(ours.len() > 40, "too few events: {ours:?}");
    assert_eq!(ours, keyspace_events(&redis));
}

/// A RESP3 client caching keys, a RESP2 client redirecting BCAST invalidations to a
/// subscriber, and a writer; returns what the two receivers got.
fn invalidations(server: &Server) -> (Vec<Frame>, Vec<Frame>) {
    let mut writer = server.conn();
    let mut cached = server.conn();
    cached.cmd(&["HELLO", "3"]);
    assert_eq!(cached.cmd(&["CLIENT", "TRACKING", "on"]), ok());
    cached.cmd(&["MGET", "a", "b", "c"]);
    cached.cmd(&["GET", "user:1"]);
    cached.cmd(&["XREAD", "STREAMS", "xs", "0"]);

    let mut listener = server.conn();
    let Frame::Integer(listener_id) = listener.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is an integer");
    };
    listener.cmd(&["SUBSCRIBE", "__redis__:invalidate"]);
    let mut bcast = server.conn();
    let id = listener_id.to_string();
    let tracking = [
        "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "user:", "REDIRECT", &id,
    ];
    assert_eq!(bcast.cmd(&tracking), ok());

    writer.cmd(&["SET", "a", "1"]);
    // Invalidated once: the key left the table until read again.
    writer.cmd(&["SET", "a", "2"]);
    writer.cmd(&["MSET", "b", "1", "user:1", "x", "other", "y"]);
    writer.cmd(&["DEL", "user:2"]);
    writer.cmd(&["SET", "user:3", "z"]);
    writer.cmd(&["XADD", "xs", "1-1", "f", "v"]);
    writer.cmd(&["FLUSHALL"]);
    writer.cmd(&["PUBLISH", "__redis__:invalidate", "sentinel"]);
    // The pushes arrived before PING's reply (sent after every write was answered).
    cached.send(&["PING", "sentinel"]);
    let mut pushed = Vec::new();
    loop {
        match cached.read().expect("reply") {
            f @ Frame::Push(_) => pushed.push(f),
            reply => {
                assert_eq!(reply, bulk("sentinel"));
                break;
            }
        }
    }
    (pushed, read_until(&mut listener, "sentinel"))
}

#[test]
fn tracking_invalidations_match_redis() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let (pushed, redirected) = invalidations(&node);
    assert!(!pushed.is_empty() && !redirected.is_empty());
    assert_eq!((pushed, redirected), invalidations(&redis));
}

/// MONITOR lines of a few commands, a transaction and a script, without the timestamp and
/// the client's address.
fn monitor_lines(server: &Server) -> Vec<String> {
    let mut mon = server.conn();
    assert_eq!(mon.cmd(&["MONITOR"]), ok());
    let mut c = server.conn();
    c.cmd(&["SET", "k", "a \"quoted\"\nvalue"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "n"]);
    c.cmd(&["EXEC"]);
    c.cmd(&["EVAL", "return redis.call('get', KEYS[1])", "1", "k"]);
    c.cmd(&["AUTH", "not-a-password"]);
    c.cmd(&["ECHO", "sentinel"]);
    let mut lines = Vec::new();
    loop {
        let Some(Frame::Simple(line)) = mon.read() else {
            panic!("MONITOR lines are simple strings");
        };
        // "<secs>.<micros> [<db> <addr>] args": keep the db and what follows the address.
        let (_, rest) = line.split_once(" [").expect("a client part");
        let (client, args) = rest.split_once("] ").expect("arguments");
        let db_and_kind = match client.split_once(' ') {
            Some((db, "lua")) => format!("{db} lua"),
            Some((db, _)) => db.to_string(),
            None => client.to_string(),
        };
        let done = args.contains("sentinel");
        lines.push(format!("[{db_and_kind}] {args}"));
        if done {
            return lines;
        }
    }
}

#[test]
fn monitor_lines_match_redis() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let ours = monitor_lines(&node);
    assert!(ours.iter().any(|l| l.contains("(redacted)")), "{ours:?}");
    assert_eq!(ours, monitor_lines(&redis));
}

/// A user with a password, a command category, one command and a key pattern: what its
/// session may do, and what ACL reports of it.
fn acl_session(server: &Server) -> Vec<Frame> {
    let mut admin = server.conn();
    let setuser = [
        "ACL",
        "SETUSER",
        "bob",
        "on",
        ">123",
        "+@scripting",
        "+get",
        "+set",
        "~x*",
    ];
    assert_eq!(admin.cmd(&setuser), ok());
    let mut bob = server.conn();
    let script =
        "return {redis.acl_check_cmd('set','xa',1), redis.acl_check_cmd('hset','xa','f',1)}";
    let steps: &[&[&str]] = &[
        &["AUTH", "bob", "124"],
        &["AUTH", "bob", "123"],
        &["ACL", "WHOAMI"],
        &["SET", "xa", "1"],
        &["SET", "ya", "1"],
        &["GET", "xa"],
        &["HSET", "xa", "f", "1"],
        &["EVAL", script, "0"],
        &["EVAL", "return redis.call('set', KEYS[1], 1)", "1", "yb"],
        &["CLIENT", "ID"],
    ];
    let mut seen: Vec<Frame> = steps.iter().map(|s| bob.cmd(s)).collect();
    // The client id differs between servers; whether it was refused does not.
    seen.pop();
    seen.push(admin.cmd(&["ACL", "USERS"]));
    seen.push(admin.cmd(&["ACL", "DRYRUN", "bob", "get", "yy"]));
    seen.push(admin.cmd(&["ACL", "DELUSER", "bob"]));
    seen
}

#[test]
fn acl_users_are_checked_as_redis_checks_them() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let ours = acl_session(&node);
    assert!(
        ours.iter().any(|f| format!("{f:?}").contains("NOPERM")),
        "{ours:?}"
    );
    assert_eq!(ours, acl_session(&redis));
}

/// COMMAND DOCS with the prose left out (summary, complexity, replaced_by and history are
/// written in our own words, or omitted): what stays is the syntax a client builds hints
/// from, which must be Redis's. Subcommands come out as entries of their own (a node
/// documents only those it serves: CLUSTER's are a few).
fn docs_syntax(server: &Server) -> Vec<(String, Frame)> {
    const PROSE: [&str; 4] = ["summary", "complexity", "replaced_by", "history"];
    fn is(k: &Frame, names: &[&str]) -> bool {
        matches!(k, Frame::Bulk(b) if names.iter().any(|n| n.as_bytes() == b.as_ref()))
    }
    fn strip(f: Frame) -> Frame {
        match f {
            Frame::Map(pairs) => Frame::Map(
                pairs
                    .into_iter()
                    .filter(|(k, _)| !is(k, &PROSE))
                    .map(|(k, v)| (k, strip(v)))
                    .collect(),
            ),
            Frame::Array(items) => Frame::Array(items.into_iter().map(strip).collect()),
            other => other,
        }
    }
    fn flatten(name: Frame, doc: Frame, into: &mut Vec<(String, Frame)>) {
        let Frame::Map(fields) = doc else {
            panic!("{name:?}: {doc:?}")
        };
        let (subs, fields): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .partition(|(k, _)| is(k, &["subcommands"]));
        into.push((format!("{name:?}"), strip(Frame::Map(fields))));
        for (_, subs) in subs {
            let Frame::Map(subs) = subs else {
                panic!("{subs:?}")
            };
            for (sub, doc) in subs {
                flatten(sub, doc, into);
            }
        }
    }
    let mut c = server.conn();
    c.cmd(&["HELLO", "3"]);
    let mut docs = Vec::new();
    match c.cmd(&["COMMAND", "DOCS"]) {
        Frame::Map(all) => all
            .into_iter()
            .for_each(|(name, doc)| flatten(name, doc, &mut docs)),
        other => panic!("COMMAND DOCS answered {other:?}"),
    }
    docs
}

#[test]
fn command_docs_give_redis_syntax_for_every_command() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let ours = docs_syntax(&node);
    let theirs: std::collections::HashMap<_, _> = docs_syntax(&redis).into_iter().collect();
    let mut compared = 0;
    for (name, doc) in &ours {
        let Frame::Map(fields) = doc else {
            panic!("{name:?}: {doc:?}")
        };
        let has = |field: &str| fields.iter().any(|(k, _)| *k == bulk(field));
        assert!(
            has("since") && has("group"),
            "{name:?} has no docs: {doc:?}"
        );
        if let Some(reference) = theirs.get(name) {
            assert_eq!(doc, reference, "{name:?}");
            compared += 1;
        }
    }
    assert!(compared > 300, "only {compared} commands compared");
    // The prose is there too, in our words.
    let mut c = node.conn();
    let get = c.cmd(&["COMMAND", "DOCS", "get"]);
    assert!(format!("{get:?}").contains("summary"), "{get:?}");
}

/// Each command's arity and legacy key range (first key, last key, step) from COMMAND.
fn command_ranges(server: &Server) -> std::collections::HashMap<String, Vec<Frame>> {
    match server.conn().cmd(&["COMMAND"]) {
        Frame::Array(commands) => commands
            .into_iter()
            .filter_map(|c| match c {
                Frame::Array(info) if info.len() >= 6 => Some((
                    format!("{:?}", info[0]),
                    vec![
                        info[1].clone(),
                        info[3].clone(),
                        info[4].clone(),
                        info[5].clone(),
                    ],
                )),
                _ => None,
            })
            .collect(),
        other => panic!("COMMAND answered {other:?}"),
    }
}

#[test]
fn command_info_gives_redis_arity_and_key_range() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let theirs = command_ranges(&redis);
    // Where the node's range is the one it finds keys with and Redis's differs: OBJECT,
    // XGROUP and XINFO name their key after the subcommand (Redis: 0 0 0); the shard
    // channel commands' channels are not keys to the node (Redis: 1 1 1 and 1 -1 1).
    let differs = [
        "object",
        "xgroup",
        "xinfo",
        "spublish",
        "ssubscribe",
        "sunsubscribe",
    ]
    .map(|n| format!("{:?}", bulk(n)));
    let mut compared = 0;
    for (name, ours) in command_ranges(&node) {
        if let Some(reference) = theirs.get(&name)
            && !differs.contains(&name)
        {
            assert_eq!(&ours, reference, "{name}");
            compared += 1;
        }
    }
    assert!(compared > 200, "only {compared} commands compared");
}
