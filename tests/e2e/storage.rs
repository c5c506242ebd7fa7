//! Persistence into storage accounts, the same on a local folder, Azurite and an S3 server
//! (moto): scheduled RDB snapshots with retention, AOF segments mirrored to two accounts,
//! a node that lost its machine coming back from them, an account going away mid-run, and
//! a corrupt object refused in favour of the next complete state.
//!
//! `scripts/test.sh` starts Azurite and moto and sets CACHEPLANE_TEST_AZURITE and
//! CACHEPLANE_TEST_S3; without them these tests fail rather than skip.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use blob::{Account, Store};
use resp::Frame;

use crate::harness::{Conn, Link, Proxy, Server, TempDir, bulk, info_field, ok, wait_until};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/test.sh, which starts Azurite and the S3 server")
    })
}

/// Connection strings of the three kinds of account, each with a local folder of its own.
fn accounts(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "local",
            format!("file://{}", dir.join("local-account").display()),
        ),
        ("azurite", env("CACHEPLANE_TEST_AZURITE")),
        ("s3", env("CACHEPLANE_TEST_S3")),
    ]
}

fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("e2e/{tag}-{}-{nanos}", std::process::id())
}

fn store(conn: &str, prefix: &str) -> Store {
    Store::open(&Account::parse(conn).unwrap(), prefix, Arc::new(|_| {})).unwrap()
}

fn list(conn: &str, prefix: &str, dir: &str) -> Vec<(String, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store(conn, prefix).list(dir)).unwrap()
}

fn info(c: &mut Conn, field: &str) -> String {
    let Frame::Bulk(text) = c.cmd(&["INFO", "everything"]) else {
        panic!("info")
    };
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
        .unwrap_or_else(|| panic!("INFO has no {field}"))
}

fn target_field(c: &mut Conn, target: usize, key: &str) -> String {
    let line = info(c, &format!("aof_target_{target}"));
    line.split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string()
}

#[test]
fn rdb_snapshots_land_on_schedule_keep_the_newest_and_restore_a_lost_machine() {
    let dir = TempDir::new("rdb-blob");
    for (kind, conn) in accounts(dir.path()) {
        let prefix = unique_prefix("rdb");
        // 15 minutes at 900x: one snapshot a second.
        let flags = [
            "--save",
            "",
            "--enable-debug-command",
            "yes",
            "--rdb-backup-enabled",
            "yes",
            "--rdb-backup-frequency",
            "15",
            "--time-scale",
            "900",
            "--rdb-backup-max-snapshot-count",
            "2",
            "--rdb-storage-connection-string",
            &conn,
            "--storage-prefix",
            &prefix,
        ];
        let local = TempDir::new("rdb-node");
        {
            let node = Server::cacheplane_in(local.path(), &flags);
            let mut c = node.conn();
            assert_eq!(c.cmd(&["DEBUG", "POPULATE", "5000"]), ok());
            assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), Frame::Integer(1));
            wait_until("three snapshots", Duration::from_secs(30), || {
                info(&mut c, "rdb_backups_ok").parse::<u64>().unwrap() >= 3
            });
            // On demand too: the reply names the new snapshot.
            let key = match c.cmd(&["CACHEPLANE", "BACKUP"]) {
                Frame::Bulk(key) => key,
                other => panic!("{kind}: backup: {other:?}"),
            };
            let key = String::from_utf8(key.to_vec()).unwrap();
            wait_until("the on-demand snapshot", Duration::from_secs(30), || {
                info(&mut c, "rdb_last_backup_key") == key
            });
            let snapshots = list(&conn, &prefix, "rdb");
            assert_eq!(
                snapshots.len(),
                2,
                "{kind}: retention keeps 2: {snapshots:?}"
            );
            assert_eq!(snapshots[1].0, key, "{kind}");
            assert!(
                snapshots.iter().all(|(_, size)| *size > 50_000),
                "{kind}: {snapshots:?}"
            );
        }
        // The machine is gone: a new node with an empty directory on the same account.
        let fresh = TempDir::new("rdb-node2");
        let node = Server::cacheplane_in(fresh.path(), &flags);
        let mut c = node.conn();
        assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(5001), "{kind}");
        assert_eq!(c.cmd(&["HGET", "h", "f"]), bulk("v"), "{kind}");
        assert!(
            info(&mut c, "restored_from").starts_with("rdb rdb/"),
            "{kind}"
        );
    }
}

/// Writers that record every acknowledged key, until the connection breaks; `acks`
/// counts them as they come.
fn writers(
    port: u16,
    n: usize,
    acks: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..n)
        .map(|w| {
            let acks = acks.clone();
            std::thread::spawn(move || {
                let mut c = Conn::try_connect(port).unwrap();
                let mut acked = Vec::new();
                for i in 0.. {
                    let key = format!("w{w}:{i}");
                    match c.call(&["SET", &key, "v"]) {
                        Some(f) if f == ok() => {
                            acked.push(key);
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return acked,
                    }
                }
                unreachable!()
            })
        })
        .collect()
}

#[test]
fn aof_segments_mirror_to_two_accounts_and_store_durability_loses_nothing_acknowledged() {
    let dir = TempDir::new("aof-blob");
    let secondary = format!("file://{}", dir.path().join("secondary").display());
    for (kind, primary) in accounts(dir.path()) {
        let prefix = unique_prefix("aof");
        let flags = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--aof-durability",
            "store",
            "--aof-storage-connection-string-0",
            &primary,
            "--aof-storage-connection-string-1",
            &secondary,
            "--storage-prefix",
            &prefix,
        ];
        let local = TempDir::new("aof-node");
        let node = Server::cacheplane_in(local.path(), &flags);
        let mut c = node.conn();
        assert_eq!(c.cmd(&["RPUSH", "list", "a", "b"]), Frame::Integer(2));
        let acks = Arc::new(AtomicUsize::new(0));
        let handles = writers(node.port, 4, acks.clone());
        wait_until("acknowledged writes", Duration::from_secs(60), || {
            acks.load(Ordering::SeqCst) > 300
        });
        drop(node); // SIGKILL, and the local disk is lost with the machine:
        drop(local);
        let acked: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(acked.len() > 300, "{kind}");

        // The account holds a Redis 7 AOF directory that redis-check-aof accepts (what
        // the manifest names; the tail past it is cacheplane's own, checked below).
        let copy = TempDir::new("aof-copy");
        let (names, tail): (Vec<_>, Vec<_>) = list(&primary, &prefix, "aof")
            .into_iter()
            .partition(|(n, _)| !n.starts_with("aof/tail/"));
        assert!(
            names
                .iter()
                .any(|(n, _)| n == "aof/appendonly.aof.manifest"),
            "{kind}: {names:?} (tail: {tail:?})"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = store(&primary, &prefix);
        for (name, _) in &names {
            let mut f = tokio::fs::File::from_std(
                std::fs::File::create(copy.path().join(name.trim_start_matches("aof/"))).unwrap(),
            );
            rt.block_on(s.download(name, &mut f)).unwrap();
        }
        let out = Command::new("redis-check-aof")
            .arg(copy.path().join("appendonly.aof.manifest"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stdout)
        );

        let fresh = TempDir::new("aof-node2");
        let node = Server::cacheplane_in(fresh.path(), &flags);
        let mut c = node.conn();
        assert!(
            info(&mut c, "restored_from").starts_with("aof from"),
            "{kind}"
        );
        assert_eq!(
            c.cmd(&["LRANGE", "list", "0", "-1"]),
            Frame::Array(vec![bulk("a"), bulk("b")]),
            "{kind}"
        );
        for key in &acked {
            assert_eq!(
                c.cmd(&["EXISTS", key]),
                Frame::Integer(1),
                "{kind}: acknowledged {key} lost"
            );
        }
        // Both accounts caught up and name the same files.
        wait_until("the secondary to catch up", Duration::from_secs(30), || {
            target_field(&mut c, 1, "backlog_bytes") == "0"
        });
        drop(node);
    }
}

/// A node on a fresh machine (empty directory) with `flags` restores its AOF from the
/// account `conn`, with `keys` keys.
fn assert_restores_from(flags: &[&str], conn: &str, keys: i64) {
    let fresh = TempDir::new("restored-node");
    let node = Server::cacheplane_in(fresh.path(), flags);
    let mut c = node.conn();
    let account = Account::parse(conn).unwrap().display_name();
    assert_eq!(info(&mut c, "restored_from"), format!("aof from {account}"));
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(keys));
}

/// A proxy in front of the S3 server, and the account's connection string through it.
fn s3_behind_a_proxy() -> (Proxy, String) {
    Proxy::in_front_of(
        &env("CACHEPLANE_TEST_S3"),
        &env("CACHEPLANE_TEST_S3_ENDPOINT"),
    )
}

#[test]
fn an_unreachable_primary_delays_shipping_but_loses_nothing() {
    let dir = TempDir::new("outage");
    let (proxy, primary) = s3_behind_a_proxy();
    let secondary = format!("file://{}", dir.path().join("secondary").display());
    let prefix = unique_prefix("outage");
    let flags = [
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--aof-storage-connection-string-0",
        &primary,
        "--aof-storage-connection-string-1",
        &secondary,
        "--storage-prefix",
        &prefix,
        "--aof-spool-max-bytes",
        "1mb",
    ];
    let local = TempDir::new("outage-node");
    let node = Server::cacheplane_in(local.path(), &flags);
    let mut c = node.conn();
    wait_until(
        "the first base in the primary",
        Duration::from_secs(30),
        || target_field(&mut c, 0, "bases") == "1",
    );
    proxy.set(Link::Down);
    for i in 0..500 {
        assert_eq!(
            c.cmd(&["SET", &format!("during:{i}"), "v"]),
            ok(),
            "writes go on while the primary is down"
        );
    }
    wait_until(
        "the primary to be reported failing",
        Duration::from_secs(30),
        || target_field(&mut c, 0, "status") == "err",
    );
    assert_ne!(target_field(&mut c, 0, "backlog_bytes"), "0");
    wait_until("the secondary to keep up", Duration::from_secs(30), || {
        target_field(&mut c, 1, "backlog_bytes") == "0"
    });
    // Past the spool bound, writes are refused (reads go on) until the primary catches up.
    let big = "x".repeat(64 * 1024);
    let mut accepted = 0;
    wait_until(
        "writes refused at the spool bound",
        Duration::from_secs(60),
        || match c.cmd(&["SET", &format!("big:{accepted}"), &big]) {
            Frame::Error(e) if e.starts_with("MISCONF") => true,
            f => {
                assert_eq!(f, ok());
                accepted += 1;
                false
            }
        },
    );
    assert_eq!(c.cmd(&["GET", "during:0"]), bulk("v"));
    proxy.set(Link::Up);
    wait_until("the backlog to drain", Duration::from_secs(60), || {
        target_field(&mut c, 0, "backlog_bytes") == "0"
    });
    assert_eq!(target_field(&mut c, 0, "status"), "ok");
    wait_until("writes accepted again", Duration::from_secs(10), || {
        c.cmd(&["SET", "after", "v"]) == ok()
    });
    wait_until(
        "the last write in the primary",
        Duration::from_secs(30),
        || target_field(&mut c, 0, "backlog_bytes") == "0",
    );
    drop(node);
    drop(local);
    assert_restores_from(&flags, &primary, 500 + accepted + 1);
}

/// A base switch whose manifest cannot be written is retried until it is, and nothing is
/// shipped as if the account named the new base meanwhile. The writes just before the
/// rewrite are likely still waiting for their commit when it ends (they are cut once a
/// second), so the switch skips them and ships the new incr file from its start: counted as
/// done without its manifest, its chain would continue the old file's shipped part, and a
/// restore would miss the skipped writes.
#[test]
fn a_base_switch_whose_manifest_write_fails_is_retried_and_loses_nothing() {
    let (proxy, primary) = s3_behind_a_proxy();
    let prefix = unique_prefix("switch");
    let flags = [
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--aof-storage-connection-string-0",
        &primary,
        "--storage-prefix",
        &prefix,
    ];
    let local = TempDir::new("switch-node");
    let node = Server::cacheplane_in(local.path(), &flags);
    let mut c = node.conn();
    let set_all = |c: &mut Conn, tag: &str| {
        for i in 0..100 {
            assert_eq!(c.cmd(&["SET", &format!("{tag}:{i}"), "v"]), ok());
        }
    };
    wait_until("the first base", Duration::from_secs(30), || {
        target_field(&mut c, 0, "bases") == "1"
    });
    set_all(&mut c, "shipped");
    wait_until("the first writes shipped", Duration::from_secs(30), || {
        target_field(&mut c, 0, "backlog_bytes") == "0"
    });
    // The new base uploads, its checksums and the commits too, but not the manifest.
    proxy.set(Link::Refuse {
        method: "PUT",
        path_contains: "appendonly.aof.manifest",
    });
    set_all(&mut c, "before");
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]),
        Frame::Simple("Background append only file rewriting started".into())
    );
    wait_until("a manifest write refused", Duration::from_secs(30), || {
        proxy.refused() > 0
    });
    set_all(&mut c, "after");
    // One attempt is a request and the store client's two retries: past three, a second.
    wait_until("the switch retried", Duration::from_secs(30), || {
        proxy.refused() > 3
    });
    assert_eq!(target_field(&mut c, 0, "bases"), "1");
    assert_eq!(target_field(&mut c, 0, "status"), "err");
    proxy.set(Link::Up);
    wait_until("the switch done", Duration::from_secs(30), || {
        target_field(&mut c, 0, "bases") == "2"
    });
    wait_until("every write shipped", Duration::from_secs(30), || {
        target_field(&mut c, 0, "backlog_bytes") == "0"
    });
    assert_eq!(target_field(&mut c, 0, "status"), "ok");
    drop(node);
    drop(local);
    assert_restores_from(&flags, &primary, 300);
}

#[test]
fn a_corrupt_object_is_refused_and_the_secondary_restores() {
    let dir = TempDir::new("corrupt");
    let primary = format!("file://{}", dir.path().join("primary").display());
    let secondary = env("CACHEPLANE_TEST_AZURITE");
    let prefix = unique_prefix("corrupt");
    let flags = [
        "--save",
        "",
        "--appendonly",
        "yes",
        "--aof-storage-connection-string-0",
        &primary,
        "--aof-storage-connection-string-1",
        &secondary,
        "--storage-prefix",
        &prefix,
    ];
    let local = TempDir::new("corrupt-node");
    let node = Server::cacheplane_in(local.path(), &flags);
    let mut c = node.conn();
    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
    }
    wait_until("both accounts to catch up", Duration::from_secs(30), || {
        target_field(&mut c, 0, "backlog_bytes") == "0"
            && target_field(&mut c, 1, "backlog_bytes") == "0"
    });
    drop(node);
    drop(local);
    // Flip a byte in the log the primary holds past its base: a segment, or an object of
    // the tail that has not been folded into one yet.
    let aof_dir = dir.path().join("primary").join(&prefix).join("aof");
    let seg = std::fs::read_dir(&aof_dir)
        .unwrap()
        .chain(std::fs::read_dir(aof_dir.join("tail")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof") || p.starts_with(aof_dir.join("tail")))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(&seg, bytes).unwrap();
    assert_restores_from(&flags, &secondary, 100);
}

#[test]
fn a_corrupt_newest_snapshot_falls_back_to_the_previous_one() {
    let dir = TempDir::new("rdb-corrupt");
    let account = format!("file://{}", dir.path().join("account").display());
    let prefix = unique_prefix("rdbc");
    let flags = [
        "--save",
        "",
        "--rdb-backup-enabled",
        "yes",
        "--rdb-backup-frequency",
        "1440",
        "--rdb-backup-max-snapshot-count",
        "3",
        "--rdb-storage-connection-string",
        &account,
        "--storage-prefix",
        &prefix,
    ];
    let local = TempDir::new("rdbc-node");
    let mut keys = Vec::new();
    {
        let node = Server::cacheplane_in(local.path(), &flags);
        let mut c = node.conn();
        for generation in ["1", "2"] {
            assert_eq!(c.cmd(&["SET", "generation", generation]), ok());
            let Frame::Bulk(key) = c.cmd(&["CACHEPLANE", "BACKUP"]) else {
                panic!("backup")
            };
            let key = String::from_utf8(key.to_vec()).unwrap();
            wait_until("the snapshot", Duration::from_secs(30), || {
                info(&mut c, "rdb_last_backup_key") == key
            });
            keys.push(key);
        }
    }
    let newest = dir.path().join("account").join(&prefix).join(&keys[1]);
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&newest, bytes).unwrap();
    let fresh = TempDir::new("rdbc-node2");
    let node = Server::cacheplane_in(fresh.path(), &flags);
    let mut c = node.conn();
    assert_eq!(c.cmd(&["GET", "generation"]), bulk("1"));
    assert!(info(&mut c, "restored_from").contains(&keys[0]));
}

#[test]
fn a_snapshot_restored_into_an_append_only_node_becomes_its_base() {
    let dir = TempDir::new("rdb-aof");
    let account = format!("file://{}", dir.path().join("account").display());
    let prefix = unique_prefix("rdba");
    let flags = [
        "--save",
        "",
        "--appendonly",
        "yes",
        "--rdb-backup-enabled",
        "yes",
        "--rdb-backup-frequency",
        "1440",
        "--rdb-storage-connection-string",
        &account,
        "--storage-prefix",
        &prefix,
    ];
    let local = TempDir::new("rdba-node");
    {
        let node = Server::cacheplane_in(local.path(), &flags);
        let mut c = node.conn();
        assert_eq!(c.cmd(&["SET", "kept", "yes"]), ok());
        let Frame::Bulk(key) = c.cmd(&["CACHEPLANE", "BACKUP"]) else {
            panic!("backup")
        };
        let key = String::from_utf8(key.to_vec()).unwrap();
        wait_until("the snapshot", Duration::from_secs(30), || {
            info(&mut c, "rdb_last_backup_key") == key
        });
    }
    // The machine is gone; the new one restores the snapshot, logs on from it, and a
    // restart of that machine finds it in its own append-only file.
    let fresh = TempDir::new("rdba-node2");
    {
        let node = Server::cacheplane_in(fresh.path(), &flags);
        let mut c = node.conn();
        assert!(info(&mut c, "restored_from").starts_with("rdb rdb/"));
        assert_eq!(c.cmd(&["GET", "kept"]), bulk("yes"));
        assert_eq!(c.cmd(&["SET", "after", "1"]), ok());
    }
    let node = Server::cacheplane_in(fresh.path(), &flags);
    let mut c = node.conn();
    assert_eq!(info(&mut c, "restored_from"), "");
    assert_eq!(c.cmd(&["GET", "kept"]), bulk("yes"));
    assert_eq!(c.cmd(&["GET", "after"]), bulk("1"));
}

#[test]
fn a_log_longer_than_a_segment_is_cut_between_commands_and_restores() {
    let dir = TempDir::new("long-log");
    let account = format!("file://{}", dir.path().join("account").display());
    let prefix = unique_prefix("long-log");
    let flags = [
        "--save",
        "",
        "--appendonly",
        "yes",
        "--aof-storage-connection-string-0",
        &account,
        "--storage-prefix",
        &prefix,
    ];
    let local = TempDir::new("long-log-node");
    let node = Server::cacheplane_in(local.path(), &flags);
    let mut c = node.conn();
    // 12 MB of log: more than one 8 MiB segment, cut where no command ends.
    let value = "v".repeat(100_003);
    for i in 0..120 {
        assert_eq!(c.cmd(&["SET", &format!("big:{i}"), &value]), ok());
    }
    wait_until("the log in the account", Duration::from_secs(60), || {
        target_field(&mut c, 0, "backlog_bytes") == "0"
    });
    assert!(target_field(&mut c, 0, "segments").parse::<u64>().unwrap() >= 2);
    let digest = c.cmd(&["DEBUG", "DIGEST"]);
    drop(node);
    drop(local);
    // Each stored segment replays on its own: a fresh machine restores all of it.
    let fresh = TempDir::new("long-log-restored");
    let node = Server::cacheplane_in(fresh.path(), &flags);
    let mut c = node.conn();
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(120));
    assert_eq!(c.cmd(&["DEBUG", "DIGEST"]), digest);
}

#[test]
fn zero_loss_commits_fold_into_segments_and_a_lost_machine_restores_them() {
    let dir = TempDir::new("fold");
    let account = format!("file://{}", dir.path().join("account").display());
    let prefix = unique_prefix("fold");
    let flags = [
        "--save",
        "",
        "--appendonly",
        "yes",
        "--aof-durability",
        "store",
        "--aof-storage-connection-string-0",
        &account,
        "--storage-prefix",
        &prefix,
    ];
    let local = TempDir::new("fold-node");
    let node = Server::cacheplane_in(local.path(), &flags);
    let mut c = node.conn();
    wait_until("the first base", Duration::from_secs(30), || {
        target_field(&mut c, 0, "bases") == "1"
    });
    // One client, one write at a time: every write is a commit of its own, one tail object.
    for i in 0..1500 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
    }
    // Idle after them, the shipper sleeps: the wait a commit makes for the clients the one
    // before answered must not, once past, wake it again and again (a core spun here).
    let cpu = |c: &mut Conn| -> f64 {
        ["used_cpu_user", "used_cpu_sys"]
            .iter()
            .map(|f| info_field(c, "cpu", f).parse::<f64>().expect("cpu seconds"))
            .sum()
    };
    let before = cpu(&mut c);
    std::thread::sleep(Duration::from_secs(1));
    let idle_cpu = cpu(&mut c) - before;
    assert!(idle_cpu < 0.5, "{idle_cpu} s of CPU in 1 s idle");
    // A rewrite in the middle: the new base's manifest keeps what the new incr file shipped.
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]),
        Frame::Simple("Background append only file rewriting started".into())
    );
    for i in 1500..3000 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), &i.to_string()]), ok());
    }
    wait_until("the rewrite's base", Duration::from_secs(30), || {
        target_field(&mut c, 0, "bases") == "2"
    });
    for i in 3000..4500 {
        assert_eq!(c.cmd(&["INCR", &format!("k{i}")]), Frame::Integer(1));
    }
    let digest = c.cmd(&["DEBUG", "DIGEST"]);
    // Chains of 512 commits fold into segments: the account holds at most the open chain
    // and one being folded, not an object per commit.
    let objects = list(&account, &prefix, "aof");
    let tail = objects
        .iter()
        .filter(|(n, _)| n.starts_with("aof/tail/"))
        .count();
    let segments = objects
        .iter()
        .filter(|(n, _)| n.ends_with(".incr.aof"))
        .count();
    assert!(tail <= 2 * 512, "{tail} tail objects");
    assert!(segments >= 1, "{segments} segments: {objects:?}");
    drop(node); // SIGKILL, and the local disk is lost with the machine:
    drop(local);
    let fresh = TempDir::new("fold-restored");
    let node = Server::cacheplane_in(fresh.path(), &flags);
    let mut c = node.conn();
    assert!(info(&mut c, "restored_from").starts_with("aof from"));
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(4500));
    assert_eq!(c.cmd(&["DEBUG", "DIGEST"]), digest);
}
