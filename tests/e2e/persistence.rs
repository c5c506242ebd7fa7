//! Persistence files exchanged with real Redis 7.0: cacheplane's dumps and AOF directories
//! pass redis-check-rdb / redis-check-aof and load in redis-server, redis-server's load in
//! cacheplane, with the same data key by key; BGSAVE is point-in-time under writes; damaged
//! files are refused, torn AOF tails trimmed; acknowledged writes survive SIGKILL under
//! `appendfsync always`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use resp::Frame;

use crate::harness::{CACHEPLANE, Conn, Server, TempDir, free_port, info_field, ok};

/// Databases the test dataset uses.
const DBS: [usize; 3] = [0, 5, 15];

/// Writes every type in small and large encodings (listpack, intset, quicklist, hashtable,
/// skiplist), integers of every width, compressible and incompressible strings, binary
/// data, expiries, across several databases.
fn fill(c: &mut Conn) {
    let mut run = |args: Vec<Vec<u8>>| {
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let reply = c.cmd_bytes(&refs);
        assert!(
            !matches!(reply, Frame::Error(_)),
            "{reply:?} for {:?}",
            String::from_utf8_lossy(&args[0])
        );
    };
    let v = |s: &str| s.as_bytes().to_vec();
    let binary: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
    for &db in &DBS {
        run(vec![v("SELECT"), db.to_string().into_bytes()]);
        for (k, val) in [
            ("s:int8", "7"),
            ("s:int16", "-1234"),
            ("s:int32", "1234567"),
            ("s:int64", "-9223372036854775808"),
            ("s:notint", "007"),
            ("s:float", "3.14"),
            ("s:empty", ""),
            ("s:short", "hello world"),
        ] {
            run(vec![v("SET"), v(k), v(val)]);
        }
        run(vec![v("SET"), v("s:compressible"), vec![b'a'; 5000]]);
        run(vec![v("SET"), v("s:binary"), binary.clone()]);
        run(vec![v("SET"), v("s:ttl"), v("soon"), v("EX"), v("100000")]);
        run(vec![v("SET"), binary[..40].to_vec(), v("binary key")]);

        let mut small_list = vec![v("RPUSH"), v("l:small")];
        small_list.extend(["a", "1", "-5", "300000", "x y"].map(v));
        run(small_list);
        let mut big_list = vec![v("RPUSH"), v("l:big")];
        big_list.extend(
            (0..2000).map(|i| format!("element-{i:04}-{}", "p".repeat(i % 60)).into_bytes()),
        );
        run(big_list);

        let mut intset = vec![v("SADD"), v("set:ints")];
        intset.extend((0..100).map(|i| (i * 1_000_003 - 40_000_000i64).to_string().into_bytes()));
        run(intset);
        let mut bigints = vec![v("SADD"), v("set:bigints")];
        bigints.extend((0..700).map(|i| i.to_string().into_bytes()));
        run(bigints);
        run(vec![v("SADD"), v("set:small"), v("a"), v("b"), v("c")]);
        let mut bigset = vec![v("SADD"), v("set:big")];
        bigset.extend((0..300).map(|i| format!("member-{i}").into_bytes()));
        run(bigset);

        let mut hsmall = vec![v("HSET"), v("h:small")];
        hsmall.extend((0..10).flat_map(|i| {
            [
                format!("f{i}").into_bytes(),
                format!("{}", i * 11).into_bytes(),
            ]
        }));
        run(hsmall);
        let mut hbig = vec![v("HSET"), v("h:big")];
        hbig.extend((0..300).flat_map(|i| {
            [
                format!("field-{i}").into_bytes(),
                format!("value-{i}").into_bytes(),
            ]
        }));
        run(hbig);
        run(vec![v("HSET"), v("h:longval"), v("f"), vec![b'z'; 100]]);

        let mut zsmall = vec![v("ZADD"), v("z:small")];
        zsmall.extend(
            [
                "1.5", "a", "-2", "b", "0", "c", "inf", "d", "-inf", "e", "1e-300", "f",
            ]
            .map(v),
        );
        run(zsmall);
        let mut zbig = vec![v("ZADD"), v("z:big")];
        zbig.extend((0..300).flat_map(|i| {
            [
                format!("{}", i as f64 / 7.0).into_bytes(),
                format!("m{i}").into_bytes(),
            ]
        }));
        run(zbig);
        run(vec![v("ZADD"), v("z:longmember"), v("42"), vec![b'q'; 100]]);
    }
    run(vec![v("SELECT"), v("0")]);
}

/// Everything a server holds in the test databases, as comparable text: per key its type,
/// its contents (members sorted where order is not part of the type) and whether it has a
/// TTL.
fn dataset(c: &mut Conn) -> BTreeMap<(usize, Vec<u8>), String> {
    let mut all = BTreeMap::new();
    for &db in &DBS {
        assert_eq!(c.cmd(&["SELECT", &db.to_string()]), ok());
        let mut cursor = "0".to_string();
        loop {
            let Frame::Array(reply) = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]) else {
                panic!("scan")
            };
            cursor = text(&reply[0]);
            let Frame::Array(keys) = &reply[1] else {
                panic!("scan keys")
            };
            for k in keys {
                let Frame::Bulk(key) = k else { panic!("key") };
                let kind = match c.cmd_bytes(&[b"TYPE", key]) {
                    Frame::Simple(s) => s,
                    other => panic!("{other:?}"),
                };
                let contents = match kind.as_str() {
                    "string" => format!("{:?}", c.cmd_bytes(&[b"GET", key])),
                    "list" => format!("{:?}", c.cmd_bytes(&[b"LRANGE", key, b"0", b"-1"])),
                    "set" => sorted(c.cmd_bytes(&[b"SMEMBERS", key]), 1),
                    "hash" => sorted(c.cmd_bytes(&[b"HGETALL", key]), 2),
                    "zset" => format!(
                        "{:?}",
                        c.cmd_bytes(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])
                    ),
                    other => panic!("unexpected type {other}"),
                };
                let ttl = match c.cmd_bytes(&[b"PTTL", key]) {
                    Frame::Integer(-1) => "persistent",
                    Frame::Integer(n) if n > 0 => "volatile",
                    other => panic!("pttl {other:?}"),
                };
                all.insert((db, key.to_vec()), format!("{kind} {ttl} {contents}"));
            }
            if cursor == "0" {
                break;
            }
        }
    }
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    all
}

/// Fails naming the keys whose contents differ (a whole dataset is too long to read).
#[track_caller]
fn assert_same_dataset(
    actual: BTreeMap<(usize, Vec<u8>), String>,
    expected: &BTreeMap<(usize, Vec<u8>), String>,
    context: &str,
) {
    let short = |v: Option<&String>| v.map(|s| s.chars().take(300).collect::<String>());
    let differing: Vec<String> = expected
        .keys()
        .chain(actual.keys())
        .filter(|k| actual.get(*k) != expected.get(*k))
        .take(5)
        .map(|k| {
            format!(
                "db {} key {:?}: {:?} where {:?} was expected",
                k.0,
                String::from_utf8_lossy(&k.1),
                short(actual.get(k)),
                short(expected.get(k)),
            )
        })
        .collect();
    assert!(differing.is_empty(), "{context}:\n{}", differing.join("\n"));
}

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) => s.clone(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The elements of an array reply in groups of `group`, sorted.
fn sorted(f: Frame, group: usize) -> String {
    let Frame::Array(items) = f else {
        panic!("array")
    };
    let mut groups: Vec<String> = items.chunks(group).map(|g| format!("{g:?}")).collect();
    groups.sort();
    groups.join(",")
}

/// Waits for a background save to finish; fails the test after `timeout`.
fn wait_bgsave(c: &mut Conn, timeout: Duration) {
    let start = Instant::now();
    while info_field(c, "persistence", "rdb_bgsave_in_progress") != "0" {
        assert!(
            start.elapsed() < timeout,
            "BGSAVE did not finish within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn check_rdb(path: &Path) {
    let out = Command::new("redis-check-rdb")
        .arg(path)
        .output()
        .expect("run redis-check-rdb");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && log.contains("RDB looks OK"),
        "redis-check-rdb refused {}:\n{log}",
        path.display()
    );
}

#[test]
fn cacheplane_dump_passes_redis_check_rdb_and_loads_in_redis_server() {
    let dir = TempDir::new("rdb-to-redis");
    let expected = {
        let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
        let mut c = node.conn();
        fill(&mut c);
        assert_eq!(c.cmd(&["SAVE"]), ok());
        dataset(&mut c)
    };
    assert!(expected.len() > 60, "dataset too small: {}", expected.len());
    check_rdb(&dir.path().join("dump.rdb"));
    let redis = Server::redis_in(dir.path(), &[]);
    let mut r = redis.conn();
    assert_same_dataset(dataset(&mut r), &expected, "redis-server");
}

/// Many small collections of every kind, the same on every server: what Redis keeps
/// (and writes) as listpacks and intsets.
fn fill_small_collections(c: &mut Conn) {
    for i in 0..1500u64 {
        let n = |j: u64| (i * 7919 + j * 104_729) % 1_000_003;
        let (hash, zset, set, list) = (
            format!("user:{i}"),
            format!("board:{i}"),
            format!("ids:{i}"),
            format!("queue:{i}"),
        );
        let mut h = vec!["HSET".to_string(), hash];
        let mut z = vec!["ZADD".to_string(), zset];
        let mut s = vec!["SADD".to_string(), set];
        let mut l = vec!["RPUSH".to_string(), list];
        for j in 0..8 {
            h.extend([format!("field:{j}"), format!("value-{}", n(j))]);
            z.extend([(n(j) % 1000).to_string(), format!("member-{}", n(j))]);
            s.push((n(j) % 30_000).to_string());
            l.push(format!("job-{}", n(j)));
        }
        for args in [h, z, s, l] {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let reply = c.cmd(&refs);
            assert!(!matches!(reply, Frame::Error(_)), "{reply:?}");
        }
    }
}

#[test]
fn a_dump_of_small_collections_is_no_bigger_than_redis_servers() {
    let size = |dir: &TempDir| {
        std::fs::metadata(dir.path().join("dump.rdb"))
            .unwrap()
            .len()
    };
    let ours = TempDir::new("small-collections-cacheplane");
    {
        let node = Server::cacheplane_in(ours.path(), &["--save", ""]);
        let mut c = node.conn();
        fill_small_collections(&mut c);
        assert_eq!(c.cmd(&["SAVE"]), ok());
    }
    let theirs = TempDir::new("small-collections-redis");
    {
        let redis = Server::redis_in(theirs.path(), &["--save", ""]);
        let mut r = redis.conn();
        fill_small_collections(&mut r);
        assert_eq!(r.cmd(&["SAVE"]), ok());
    }
    check_rdb(&ours.path().join("dump.rdb"));
    // Written plainly, the same dump is a third bigger (the listpacks' LZF is the gain).
    let (ours, theirs) = (size(&ours), size(&theirs));
    assert!(
        ours * 100 <= theirs * 110,
        "our dump is {ours} bytes, redis-server's {theirs}"
    );
}

#[test]
fn redis_server_dumps_load_in_cacheplane_with_and_without_compression() {
    for compression in ["yes", "no"] {
        let dir = TempDir::new("redis-to-rdb");
        let expected = {
            let redis = Server::redis_in(dir.path(), &["--rdbcompression", compression]);
            let mut r = redis.conn();
            fill(&mut r);
            assert_eq!(r.cmd(&["SAVE"]), ok());
            dataset(&mut r)
        };
        let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
        let mut c = node.conn();
        assert_same_dataset(
            dataset(&mut c),
            &expected,
            &format!("rdbcompression {compression}"),
        );
        assert_eq!(
            info_field(&mut c, "persistence", "rdb_last_load_keys_loaded"),
            expected.len().to_string()
        );
    }
}

#[test]
fn bgsave_holds_the_dataset_as_it_was_when_it_began() {
    const KEYS: usize = 200_000;
    let dir = TempDir::new("bgsave");
    let node = Server::cacheplane_in(dir.path(), &["--save", "", "--enable-debug-command", "yes"]);
    let mut c = node.conn();
    assert_eq!(
        c.cmd(&["DEBUG", "POPULATE", &KEYS.to_string(), "key", "10"]),
        ok()
    );
    assert_eq!(c.cmd(&["RPUSH", "list", "before"]), Frame::Integer(1));
    // BGSAVE, then at once rewrite every key from a pipelined client while the save runs.
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Frame::Simple("Background saving started".into())
    );
    let mut w = node.conn();
    for i in 0..KEYS {
        w.send(&["SET", &format!("key:{i}"), "after"]);
    }
    w.send(&["DEL", "list"]);
    w.send(&["SET", "new-key", "after"]);
    w.send(&["FLUSHDB"]);
    for _ in 0..KEYS + 3 {
        assert!(!matches!(w.read().expect("reply"), Frame::Error(_)));
    }
    wait_bgsave(&mut c, Duration::from_secs(60));
    assert_eq!(
        info_field(&mut c, "persistence", "rdb_last_bgsave_status"),
        "ok"
    );
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(0));
    check_rdb(&dir.path().join("dump.rdb"));
    drop(node);

    let redis = Server::redis_in(dir.path(), &[]);
    let mut r = redis.conn();
    assert_eq!(r.cmd(&["DBSIZE"]), Frame::Integer(KEYS as i64 + 1));
    assert_eq!(r.cmd(&["EXISTS", "new-key"]), Frame::Integer(0));
    assert_eq!(text(&r.cmd(&["LINDEX", "list", "0"])), "before");
    for i in (0..KEYS).step_by(997) {
        let v = text(&r.cmd(&["GET", &format!("key:{i}")]));
        assert!(
            v.starts_with("value:"),
            "key:{i} holds {v:?}, written after BGSAVE began"
        );
    }
}

#[test]
fn save_rules_shutdown_and_restart_keep_the_data() {
    let dir = TempDir::new("rules");
    {
        let node = Server::cacheplane_in(dir.path(), &["--save", "1 1"]);
        let mut c = node.conn();
        assert_eq!(c.cmd(&["SET", "k", "v1"]), ok());
        // The rule fires within a cron cycle after a second.
        let start = Instant::now();
        while info_field(&mut c, "persistence", "rdb_saves") == "0" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "save rule never fired"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            info_field(&mut c, "persistence", "rdb_changes_since_last_save"),
            "0"
        );
        assert!(matches!(c.cmd(&["LASTSAVE"]), Frame::Integer(n) if n > 1_700_000_000));
        assert_eq!(c.cmd(&["SET", "k", "v2"]), ok());
        // SHUTDOWN with save rules writes the final snapshot.
        assert!(
            c.call(&["SHUTDOWN"])
                .is_none_or(|f| !matches!(f, Frame::Error(_)))
        );
    }
    {
        let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
        let mut c = node.conn();
        assert_eq!(c.cmd(&["GET", "k"]), crate::harness::bulk("v2"));
        assert_eq!(c.cmd(&["SET", "k", "v3"]), ok());
        assert!(c.call(&["SHUTDOWN", "NOSAVE"]).is_none());
    }
    let node = Server::cacheplane_in(dir.path(), &[]);
    assert_eq!(node.conn().cmd(&["GET", "k"]), crate::harness::bulk("v2"));
}

/// Starts a node on `dir` expecting it to refuse; returns what it printed.
fn start_refused(dir: &Path) -> String {
    start_refused_with(dir, &[])
}

fn start_refused_with(dir: &Path, flags: &[&str]) -> String {
    let mut child = Command::new(CACHEPLANE)
        .args([
            "node",
            "--port",
            &free_port().to_string(),
            "--dir",
            dir.to_str().unwrap(),
        ])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cacheplane");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the node started on a damaged dump");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn damaged_dumps_stop_the_start_with_a_clear_error() {
    let dir = TempDir::new("damaged");
    {
        let node = Server::cacheplane_in(dir.path(), &["--save", ""]);
        let mut c = node.conn();
        fill(&mut c);
        assert_eq!(c.cmd(&["SAVE"]), ok());
    }
    let path = dir.path().join("dump.rdb");
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "truncated",
            good[..good.len() - 100].to_vec(),
            "unexpected end of file",
        ),
        ("bit flip", flipped, "dump.rdb"),
        ("not rdb", b"hello world, not a dump".to_vec(), "bad magic"),
    ];
    for (what, bytes, expect) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let log = start_refused(dir.path());
        assert!(
            log.contains(expect) && log.contains("dump.rdb"),
            "{what}: {log}"
        );
        // Nothing was overwritten.
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}");
    }
}

/// Commands whose logged form must differ from what was sent (relative expiries, random
/// picks, floats, blocking pops, transactions), so replaying the log elsewhere gives the
/// same data.
fn nondeterministic_writes(c: &mut Conn) {
    for cmd in [
        &["SET", "nd:ex", "v", "EX", "100000"][..],
        &["SETEX", "nd:setex", "100000", "v"],
        &["SET", "nd:persist", "v", "PX", "100000000"],
        &["PERSIST", "nd:persist"],
        &["SET", "nd:exp", "v"],
        &["EXPIRE", "nd:exp", "100000"],
        &["GETEX", "nd:exp", "PX", "200000000"],
        &["INCRBYFLOAT", "nd:float", "10.5"],
        &["INCRBYFLOAT", "nd:float", "0.1"],
        &["HINCRBYFLOAT", "nd:hash", "f", "2.5"],
        &["SADD", "nd:set", "a", "b", "c", "d", "e"],
        &["SPOP", "nd:set"],
        &["SPOP", "nd:set", "2"],
        &["RPUSH", "nd:list", "x", "y", "z"],
        &["BLPOP", "nd:list", "0"],
        &["BLMOVE", "nd:list", "nd:list2", "RIGHT", "LEFT", "0"],
        &["ZADD", "nd:z", "1", "a", "2", "b"],
        &["BZPOPMIN", "nd:z", "0"],
        &["SET", "nd:gone", "v", "PX", "1"],
    ] {
        assert!(!matches!(c.cmd(cmd), Frame::Error(_)), "{cmd:?}");
    }
    assert_eq!(c.cmd(&["MULTI"]), ok());
    c.cmd(&["INCR", "nd:tx"]);
    c.cmd(&["SPOP", "nd:set"]);
    assert!(matches!(c.cmd(&["EXEC"]), Frame::Array(_)));
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(c.cmd(&["EXISTS", "nd:gone"]), Frame::Integer(0));
}

pub(crate) fn check_aof(dir: &Path) {
    let manifest = dir.join("appendonlydir").join("appendonly.aof.manifest");
    let out = Command::new("redis-check-aof")
        .arg(&manifest)
        .output()
        .expect("run redis-check-aof");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && log.contains("are valid"),
        "redis-check-aof refused {}:\n{log}",
        manifest.display()
    );
}

fn wait_rewrite(c: &mut Conn) {
    let start = Instant::now();
    while info_field(c, "persistence", "aof_rewrite_in_progress") != "0" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "AOF rewrite did not finish"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn cacheplane_aof_dir_passes_redis_check_aof_and_loads_in_redis_server() {
    let dir = TempDir::new("aof-to-redis");
    let aof = ["--appendonly", "yes", "--save", ""];
    let expected = {
        let node = Server::cacheplane_in(dir.path(), &aof);
        let mut c = node.conn();
        fill(&mut c);
        nondeterministic_writes(&mut c);
        // A rewrite in the middle: the new base plus the commands after it.
        assert_eq!(
            text(&c.cmd(&["BGREWRITEAOF"])),
            "Background append only file rewriting started"
        );
        c.cmd(&["SET", "during", "rewrite"]);
        wait_rewrite(&mut c);
        assert_eq!(
            info_field(&mut c, "persistence", "aof_last_bgrewrite_status"),
            "ok"
        );
        c.cmd(&["RPUSH", "l:big", "after", "rewrite"]);
        c.cmd(&["SELECT", "5"]);
        c.cmd(&["DEL", "h:small"]);
        dataset(&mut c)
        // Dropped: SIGKILL, no shutdown save; the AOF alone carries the data.
    };
    check_aof(dir.path());
    let names: Vec<String> = std::fs::read_dir(dir.path().join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"appendonly.aof.2.base.rdb".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"appendonly.aof.1.incr.aof".to_string()),
        "old incr kept: {names:?}"
    );
    let redis = Server::redis_in(dir.path(), &["--appendonly", "yes"]);
    let mut r = redis.conn();
    assert_same_dataset(dataset(&mut r), &expected, "redis-server");
    drop(redis);
    // And back: cacheplane replays the same directory to the same data.
    let node = Server::cacheplane_in(dir.path(), &aof);
    assert_same_dataset(dataset(&mut node.conn()), &expected, "cacheplane");
}

#[test]
fn redis_server_aof_dir_loads_in_cacheplane() {
    let dir = TempDir::new("redis-aof");
    let expected = {
        let redis = Server::redis_in(
            dir.path(),
            &["--appendonly", "yes", "--appendfsync", "always"],
        );
        let mut r = redis.conn();
        fill(&mut r);
        assert_eq!(
            text(&r.cmd(&["BGREWRITEAOF"])),
            "Background append only file rewriting started"
        );
        wait_rewrite(&mut r);
        nondeterministic_writes(&mut r);
        dataset(&mut r)
    };
    let node = Server::cacheplane_in(dir.path(), &["--appendonly", "yes", "--save", ""]);
    let mut c = node.conn();
    assert_same_dataset(dataset(&mut c), &expected, "cacheplane");
}

fn last_incr(dir: &Path) -> std::path::PathBuf {
    let manifest =
        std::fs::read_to_string(dir.join("appendonlydir/appendonly.aof.manifest")).unwrap();
    let name = manifest
        .lines()
        .rfind(|l| l.contains("type i"))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    dir.join("appendonlydir").join(name)
}

#[test]
fn torn_aof_tails_are_trimmed_and_corruption_refused() {
    let dir = TempDir::new("aof-torn");
    let aof = [
        "--appendonly",
        "yes",
        "--save",
        "",
        "--appendfsync",
        "always",
    ];
    {
        let node = Server::cacheplane_in(dir.path(), &aof);
        let mut c = node.conn();
        for i in 0..100 {
            assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
        }
    }
    let incr = last_incr(dir.path());
    let whole = std::fs::read(&incr).unwrap();
    // A write torn by a crash: half a command at the end.
    let mut torn = whole.clone();
    torn.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$4\r\nk100\r\n$5\r\nval");
    std::fs::write(&incr, &torn).unwrap();
    {
        let node = Server::cacheplane_in(dir.path(), &aof);
        let mut c = node.conn();
        assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(100));
        assert_eq!(c.cmd(&["EXISTS", "k100"]), Frame::Integer(0));
    }
    assert_eq!(
        std::fs::read(&incr).unwrap(),
        whole,
        "the torn tail is cut off the file"
    );
    check_aof(dir.path());

    // With aof-load-truncated no, the same tail refuses the start.
    std::fs::write(&incr, &torn).unwrap();
    let log = start_refused_with(
        dir.path(),
        &["--appendonly", "yes", "--aof-load-truncated", "no"],
    );
    assert!(
        log.contains("appendonly.aof.1.incr.aof") && log.contains("offset"),
        "{log}"
    );

    // Garbage in the middle is corruption: refused, naming the file and the offset.
    let mut bad = whole.clone();
    let at = whole.len() / 2;
    bad[at..at + 4].copy_from_slice(b"!!!!");
    std::fs::write(&incr, &bad).unwrap();
    let log = start_refused_with(dir.path(), &["--appendonly", "yes"]);
    assert!(
        log.contains("Bad file format")
            && log.contains("appendonly.aof.1.incr.aof")
            && log.contains("offset"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&incr).unwrap(),
        bad,
        "a refused file is left as it was"
    );
}

/// Acknowledged writes survive SIGKILL: clients record every reply they got, the node is
/// killed mid-stream, and a new node on the same directory has every acknowledged key.
/// Under `always` that holds for an OS crash too (fsync before reply); under `everysec`
/// for a process crash, as in Redis (write(2) before reply).
#[test]
fn acknowledged_writes_survive_sigkill_under_appendfsync_always() {
    sigkill_keeps_acknowledged_writes("always");
}

#[test]
fn acknowledged_writes_survive_sigkill_under_appendfsync_everysec() {
    sigkill_keeps_acknowledged_writes("everysec");
}

fn sigkill_keeps_acknowledged_writes(policy: &str) {
    let dir = TempDir::new(&format!("aof-crash-{policy}"));
    let aof = ["--appendonly", "yes", "--save", "", "--appendfsync", policy];
    let node = Server::cacheplane_in(dir.path(), &aof);
    let port = node.port;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Conn::try_connect(port).unwrap();
                let mut acked = Vec::new();
                for i in 0.. {
                    let key = format!("w{w}:{i}");
                    // Pipelined pairs: both replies count only once both arrived. The
                    // node is killed under the writers: a write may find it gone.
                    let sent = c.try_send(&["SET", &key, "v"]).is_ok()
                        && c.try_send(&["INCR", &format!("w{w}:count")]).is_ok();
                    if !sent {
                        return acked;
                    }
                    match (c.read(), c.read()) {
                        (Some(a), Some(Frame::Integer(n))) if a == ok() => acked.push((key, n)),
                        _ => return acked,
                    }
                }
                unreachable!()
            })
        })
        .collect();
    // Let the writers get going, then kill the node while they write.
    let mut probe = node.conn();
    let start = Instant::now();
    while !matches!(probe.cmd(&["DBSIZE"]), Frame::Integer(n) if n > 2000) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "writers made no progress"
        );
    }
    drop(node);
    let acked: Vec<Vec<(String, i64)>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let node = Server::cacheplane_in(dir.path(), &aof);
    let mut c = node.conn();
    for (w, keys) in acked.iter().enumerate() {
        assert!(
            keys.len() > 100,
            "writer {w} got only {} replies",
            keys.len()
        );
        for (key, _) in keys {
            assert_eq!(
                c.cmd(&["EXISTS", key]),
                Frame::Integer(1),
                "acknowledged {key} lost"
            );
        }
        let last = keys.last().unwrap().1;
        let Frame::Bulk(count) = c.cmd(&["GET", &format!("w{w}:count")]) else {
            panic!("count")
        };
        let count: i64 = String::from_utf8_lossy(&count).parse().unwrap();
        assert!(
            count >= last,
            "writer {w}: counter {count} behind acknowledged {last}"
        );
    }
}

/// Writes made while a rewrite runs land in the new incr file and survive the switch:
/// after a SIGKILL, a new node has the dataset of before, during and after the rewrite.
#[test]
fn writes_during_an_aof_rewrite_are_kept() {
    const KEYS: usize = 200_000;
    let dir = TempDir::new("aof-rewrite");
    let aof = [
        "--appendonly",
        "yes",
        "--save",
        "",
        "--enable-debug-command",
        "yes",
    ];
    let node = Server::cacheplane_in(dir.path(), &aof);
    let mut c = node.conn();
    // DEBUG POPULATE is not logged (as in Redis): log the same keys with MSET batches.
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut args = vec!["MSET".to_string()];
        for i in chunk {
            args.push(format!("key:{i}"));
            args.push("before".into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(c.cmd(&refs), ok());
    }
    assert_eq!(
        text(&c.cmd(&["BGREWRITEAOF"])),
        "Background append only file rewriting started"
    );
    let mut w = node.conn();
    for i in (0..KEYS).step_by(2) {
        w.send(&["SET", &format!("key:{i}"), "during"]);
    }
    for _ in (0..KEYS).step_by(2) {
        assert_eq!(w.read(), Some(ok()));
    }
    wait_rewrite(&mut c);
    assert_eq!(
        info_field(&mut c, "persistence", "aof_last_bgrewrite_status"),
        "ok"
    );
    assert_eq!(c.cmd(&["SET", "after", "rewrite"]), ok());
    drop(node);
    check_aof(dir.path());
    let node = Server::cacheplane_in(dir.path(), &aof);
    let mut c = node.conn();
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(KEYS as i64 + 1));
    assert_eq!(text(&c.cmd(&["GET", "after"])), "rewrite");
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("key:{i}")).collect();
        let mut args = vec!["MGET"];
        args.extend(keys.iter().map(String::as_str));
        let Frame::Array(values) = c.cmd(&args) else {
            panic!("mget")
        };
        for (i, v) in chunk.iter().zip(values) {
            let want = if i % 2 == 0 { "during" } else { "before" };
            assert_eq!(v, crate::harness::bulk(want), "key:{i}");
        }
    }
}

/// Geo, HyperLogLog and bitfield writes reach the AOF as Redis logs them (GEOADD as the
/// ZADD it became) and replay in redis-server to the same values, sketches byte for byte.
#[test]
fn geo_hll_and_bitfield_writes_replay_in_redis_server() {
    let dir = TempDir::new("aof-geo-hll");
    let (sketch, merged, field, score) = {
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
        let mut c = node.conn();
        c.cmd(&["GEOADD", "Sicily", "13.361389", "38.115556", "Palermo"]);
        c.cmd(&["GEOADD", "Sicily", "15.087269", "37.502669", "Catania"]);
        c.cmd(&[
            "GEOSEARCHSTORE",
            "near",
            "Sicily",
            "FROMLONLAT",
            "15",
            "37",
            "BYRADIUS",
            "200",
            "km",
            "STOREDIST",
        ]);
        let members: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
        let mut args = vec!["PFADD", "hll"];
        args.extend(members.iter().map(String::as_str));
        c.cmd(&args);
        c.cmd(&["PFADD", "small", "a", "b", "c"]);
        c.cmd(&["PFCOUNT", "hll"]);
        c.cmd(&["PFMERGE", "both", "hll", "small"]);
        c.cmd(&[
            "BITFIELD", "bf", "SET", "i8", "0", "-100", "INCRBY", "u4", "#3", "7",
        ]);
        c.cmd(&["BITOP", "NOT", "inverted", "bf"]);
        let get = |c: &mut Conn, key: &str| c.cmd(&["GET", key]);
        (
            get(&mut c, "hll"),
            get(&mut c, "both"),
            get(&mut c, "inverted"),
            c.cmd(&["ZSCORE", "near", "Catania"]),
        )
    };
    check_aof(dir.path());
    let log = std::fs::read(last_incr(dir.path())).unwrap();
    let log = String::from_utf8_lossy(&log).to_ascii_lowercase();
    assert!(!log.contains("geoadd") && log.contains("zadd"), "{log}");
    let redis = Server::redis_in(dir.path(), &["--appendonly", "yes"]);
    let mut r = redis.conn();
    assert_eq!(r.cmd(&["GET", "hll"]), sketch);
    assert_eq!(r.cmd(&["GET", "both"]), merged);
    assert_eq!(r.cmd(&["GET", "inverted"]), field);
    assert_eq!(r.cmd(&["ZSCORE", "near", "Catania"]), score);
    assert_eq!(
        r.cmd(&["GEOPOS", "Sicily", "Palermo"]),
        Frame::Array(vec![Frame::Array(vec![
            crate::harness::bulk("13.36138933897018433"),
            crate::harness::bulk("38.11555639549629859"),
        ])])
    );
}
