//! A cache's memory as Azure sets it, seen through the management API and the cache's own
//! Redis connection, in both node runtimes: the node's maxmemory is the SKU's size less
//! its two reservations, times `cacheplane-memory-scale`; maxclients is the SKU's; the
//! policy is volatile-lru; PATCHes of the policy, a reservation and the SKU reach the
//! running node live (its connections stay open, a child keeps its process, and a child
//! restarted after a crash comes back with them); bad values are ARM's 400s naming the key.
//! A full cache evicts as Azure's does (volatile-lru: keys with a TTL go, the others stay,
//! and OOM answers when only those are left), and a node's count of its memory stays
//! close to what the allocator really holds.

use std::process::Command;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{
    Conn, Server, TempDir, bulk, err_text, free_port, info_field, ok, poll, wait_until,
};
use crate::serve::{ControlPlane, cache_url, call, create, reconnect, redis};

const MIB: u64 = 1024 * 1024;

fn cache(name: &str, capacity: i64, config: Value) -> Value {
    json!({"location": "westeurope", "properties": {
        "sku": {"name": name, "family": "C", "capacity": capacity},
        "redisConfiguration": config, "enableNonSslPort": true}})
}

fn patch(cp: &ControlPlane, name: &str, properties: Value) -> (u16, HeaderMap, Value) {
    call(
        reqwest::Method::PATCH,
        &cache_url(cp, name),
        Some(json!({ "properties": properties })),
    )
}

/// maxmemory, maxmemory_policy and maxclients as the node reports them in INFO.
fn node_memory(c: &mut Conn) -> (u64, String, u64) {
    (
        info_field(c, "memory", "maxmemory").parse().unwrap(),
        info_field(c, "memory", "maxmemory_policy"),
        info_field(c, "clients", "maxclients").parse().unwrap(),
    )
}

fn memory_follows_the_sku_and_changes_live(runtime: &[&str]) {
    let data = TempDir::new("serve-memory");
    let cp = ControlPlane::start_with(data.path(), free_port(), runtime);
    // C0: 250 MB less 25 MB reserved twice (Azure's 10% defaults), half of it.
    let (got, key) = create(
        &cp,
        "small",
        cache("Standard", 0, json!({"cacheplane-memory-scale": "0.5"})),
    );
    let config = &got["properties"]["redisConfiguration"];
    assert_eq!(config["maxclients"], "256", "{got}");
    assert_eq!(config["maxmemory-reserved"], "25", "{got}");
    assert_eq!(config["maxfragmentationmemory-reserved"], "25", "{got}");
    assert_eq!(config["maxmemory-delta"], "25", "{got}");
    assert_eq!(
        config["cacheplane-maxmemory-bytes"],
        (100 * MIB).to_string()
    );
    assert!(config.get("maxmemory-policy").is_none(), "only when given");
    let port = got["properties"]["port"].as_u64().unwrap() as u16;
    let mut c = redis(port, &key);
    assert_eq!(node_memory(&mut c), (100 * MIB, "volatile-lru".into(), 256));
    // Customers read it from INFO: CONFIG is blocked, as on Azure.
    let refused = c.cmd(&["CONFIG", "GET", "maxmemory"]);
    assert!(
        err_text(&refused).starts_with("ERR unknown command"),
        "{refused:?}"
    );
    let pid = info_field(&mut c, "server", "process_id");
    assert_eq!(c.cmd(&["SET", "kept", "in memory only"]), ok());

    // The policy and a reservation: answered at once, no operation to follow.
    let (status, headers, patched) = patch(
        &cp,
        "small",
        json!({"redisConfiguration": {"maxmemory-policy": "allkeys-lru", "maxmemory-reserved": "50"}}),
    );
    assert_eq!(status, 200, "{patched}");
    assert!(headers.get("azure-asyncoperation").is_none(), "{headers:?}");
    let config = &patched["properties"]["redisConfiguration"];
    assert_eq!(config["maxmemory-policy"], "allkeys-lru");
    assert_eq!(config["maxmemory-delta"], "50");
    let bytes = (250 - 50 - 25) * MIB / 2;
    assert_eq!(config["cacheplane-maxmemory-bytes"], bytes.to_string());
    // The connection opened before is still served: the node did not restart.
    assert_eq!(node_memory(&mut c), (bytes, "allkeys-lru".into(), 256));

    // Scaling to C1: the reservation scales with the size (50 * 1024 / 250) and the one
    // the request gives is ignored, as Azure does; maxclients follows the SKU.
    let (status, headers, patched) = patch(
        &cp,
        "small",
        json!({"sku": {"name": "Standard", "family": "C", "capacity": 1},
               "redisConfiguration": {"maxmemory-reserved": "900"}}),
    );
    assert_eq!(status, 200, "{patched}");
    assert!(headers.get("azure-asyncoperation").is_none(), "{headers:?}");
    let config = &patched["properties"]["redisConfiguration"];
    assert_eq!(config["maxmemory-reserved"], "204", "{patched}");
    assert_eq!(
        config["maxfragmentationmemory-reserved"], "102",
        "{patched}"
    );
    assert_eq!(config["maxclients"], "1000");
    let bytes = (1024 - 204 - 102) * MIB / 2;
    assert_eq!(config["cacheplane-maxmemory-bytes"], bytes.to_string());
    assert_eq!(node_memory(&mut c), (bytes, "allkeys-lru".into(), 1000));
    assert_eq!(c.cmd(&["GET", "kept"]), bulk("in memory only"));
    assert_eq!(info_field(&mut c, "server", "process_id"), pid);

    // Bad values: ARM's 400 naming the key, and nothing changes.
    let bad = [
        (
            json!({"maxmemory-policy": "lru-everything"}),
            "maxmemory-policy",
        ),
        (json!({"maxmemory-reserved": "a lot"}), "maxmemory-reserved"),
        (
            json!({"maxfragmentationmemory-reserved": "-1"}),
            "maxfragmentationmemory-reserved",
        ),
        (
            json!({"maxmemory-reserved": "600", "maxfragmentationmemory-reserved": "600"}),
            "maxfragmentationmemory-reserved",
        ),
        (
            json!({"maxmemory-delta": "300", "maxmemory-reserved": "200"}),
            "maxmemory-delta",
        ),
        (
            json!({"cacheplane-memory-scale": "0"}),
            "cacheplane-memory-scale",
        ),
        (
            json!({"cacheplane-memory-scale": "2"}),
            "cacheplane-memory-scale",
        ),
        (
            json!({"cacheplane-memory-scale": "half"}),
            "cacheplane-memory-scale",
        ),
    ];
    for (config, key) in bad {
        let (status, _, refused) = patch(&cp, "small", json!({ "redisConfiguration": config }));
        assert_eq!(status, 400, "{config}: {refused}");
        assert_eq!(refused["error"]["code"], "InvalidRedisConfiguration");
        assert_eq!(
            refused["error"]["target"],
            format!("properties.redisConfiguration.{key}"),
            "{config}: {refused}"
        );
    }
    assert_eq!(node_memory(&mut c), (bytes, "allkeys-lru".into(), 1000));
    let (_, _, got) = call(reqwest::Method::GET, &cache_url(&cp, "small"), None);
    assert_eq!(
        got["properties"]["redisConfiguration"]["cacheplane-maxmemory-bytes"],
        bytes.to_string()
    );
    // Refused creates create nothing; the reservations are Standard and Premium's.
    for (body, key) in [
        (
            cache("Standard", 0, json!({"cacheplane-memory-scale": "1.5"})),
            "cacheplane-memory-scale",
        ),
        (
            cache("Basic", 0, json!({"maxmemory-reserved": "50"})),
            "maxmemory-reserved",
        ),
    ] {
        let url = cache_url(&cp, "refused");
        let (status, _, refused) = call(reqwest::Method::PUT, &url, Some(body));
        assert_eq!(status, 400, "{refused}");
        assert_eq!(
            refused["error"]["target"],
            format!("properties.redisConfiguration.{key}")
        );
        assert_eq!(call(reqwest::Method::GET, &url, None).0, 404);
    }

    // A child process killed and restarted by its supervisor comes back with the settings
    // changed live (they were written to its config file too).
    if runtime.contains(&"process") {
        let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(killed.success());
        let mut c = reconnect(port, &key);
        assert_ne!(info_field(&mut c, "server", "process_id"), pid);
        assert_eq!(node_memory(&mut c), (bytes, "allkeys-lru".into(), 1000));
    }
}

#[test]
fn memory_follows_the_sku_and_changes_live_in_process() {
    memory_follows_the_sku_and_changes_live(&[]);
}

#[test]
fn memory_follows_the_sku_and_changes_live_in_a_child_process() {
    memory_follows_the_sku_and_changes_live(&["--node-runtime", "process"]);
}

/// Sends `lines` pipelined (one write per batch) and returns their replies.
fn pipeline(c: &mut Conn, lines: &[Vec<String>]) -> Vec<resp::Frame> {
    const BATCH: usize = 500;
    let mut replies = Vec::with_capacity(lines.len());
    for batch in lines.chunks(BATCH) {
        for args in batch {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.send(&args);
        }
        for _ in batch {
            replies.push(
                c.read()
                    .unwrap_or_else(|| panic!("no reply after {} replies", replies.len())),
            );
        }
    }
    replies
}

fn set_lines(prefix: &str, n: usize, value: &str, ttl: bool) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            let mut l = vec!["SET".into(), format!("{prefix}:{i}"), value.into()];
            if ttl {
                l.extend(["EX".into(), "3600".into()]);
            }
            l
        })
        .collect()
}

fn info_u64(c: &mut Conn, section: &str, field: &str) -> u64 {
    info_field(c, section, field).parse().unwrap()
}

#[test]
fn a_full_cache_evicts_keys_with_a_ttl_then_answers_oom() {
    let data = TempDir::new("serve-eviction");
    let cp = ControlPlane::start_with(data.path(), free_port(), &[]);
    // C0 at 1/100: 2 MiB.
    let (got, key) = create(
        &cp,
        "full",
        cache("Standard", 0, json!({"cacheplane-memory-scale": "0.01"})),
    );
    let port = got["properties"]["port"].as_u64().unwrap() as u16;
    let mut c = redis(port, &key);
    let max = info_u64(&mut c, "memory", "maxmemory");
    assert_eq!(max, 2 * MIB);
    let value = "v".repeat(100);
    // Keys without a TTL, well within the size; then ten times the size with a TTL.
    let kept = 2_000;
    for r in pipeline(&mut c, &set_lines("kept", kept, &value, false)) {
        assert_eq!(r, ok());
    }
    for r in pipeline(&mut c, &set_lines("cached", 80_000, &value, true)) {
        assert_eq!(r, ok(), "eviction makes room for every write");
    }
    let evicted = info_u64(&mut c, "stats", "evicted_keys");
    assert!(evicted > 40_000, "{evicted} keys evicted");
    assert!(info_u64(&mut c, "memory", "used_memory") <= max);
    let exists: Vec<String> = std::iter::once("EXISTS".to_string())
        .chain((0..kept).map(|i| format!("kept:{i}")))
        .collect();
    let exists: Vec<&str> = exists.iter().map(String::as_str).collect();
    assert_eq!(c.cmd(&exists), resp::Frame::Integer(kept as i64));

    // Only keys without a TTL left to evict: writes that grow memory get OOM, reads and
    // deletes still work, and a delete makes room again. One write at a time: the
    // client's own buffers count in used_memory, and a pipeline's read buffer, growing
    // and given back, would move the line by kilobytes between writes.
    let mut replies = Vec::new();
    let mut refusals = 0;
    for line in set_lines("more", 40_000, &value, false) {
        let args: Vec<&str> = line.iter().map(String::as_str).collect();
        let reply = c.cmd(&args);
        refusals += usize::from(reply != ok());
        replies.push(reply);
        // 500 writes from the first refusal on are enough to see none gets in.
        if refusals == 500 {
            break;
        }
    }
    let refused = replies
        .iter()
        .position(|r| *r != ok())
        .expect("some write refused");
    assert_eq!(
        err_text(&replies[refused]),
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert!(replies[refused..].iter().all(|r| *r != ok()));
    assert_eq!(c.cmd(&["GET", "kept:0"]), bulk(&value));
    assert_eq!(c.cmd(&["EXISTS", "more:0"]), resp::Frame::Integer(1));
    let deleted: Vec<String> = std::iter::once("DEL".to_string())
        .chain((0..refused).map(|i| format!("more:{i}")))
        .collect();
    let deleted: Vec<&str> = deleted.iter().map(String::as_str).collect();
    assert_eq!(c.cmd(&deleted), resp::Frame::Integer(refused as i64));
    assert_eq!(c.cmd(&["SET", "more:again", &value]), ok());
}

/// What a node counts as its memory follows what the allocator holds for it: keys of
/// every type, added and then deleted.
#[test]
fn used_memory_follows_the_allocator() {
    let node = Server::cacheplane(&["--save", "", "--appendonly", "no"]);
    let mut c = node.conn();
    let both = |c: &mut Conn| {
        (
            info_u64(c, "memory", "used_memory"),
            info_u64(c, "memory", "allocator_allocated"),
        )
    };
    let long = "x".repeat(60);
    let families: Vec<(&str, Vec<Vec<String>>)> = vec![
        ("short strings", set_lines("s", 50_000, "v", false)),
        (
            "long strings with a TTL",
            set_lines("t", 50_000, &long, true),
        ),
        (
            "hashes",
            (0..2_000)
                .flat_map(|k| {
                    (0..20).map(move |f| {
                        vec![
                            "HSET".into(),
                            format!("h:{k}"),
                            format!("field:{f}"),
                            format!("value-{f}-{k}"),
                        ]
                    })
                })
                .collect(),
        ),
        (
            "lists",
            (0..2_000)
                .map(|k| {
                    let mut l = vec!["RPUSH".to_string(), format!("l:{k}")];
                    l.extend((0..20).map(|i| format!("element-number-{i}-of-list-{k}")));
                    l
                })
                .collect(),
        ),
        (
            "sets and sorted sets",
            (0..2_000)
                .flat_map(|k| {
                    let mut s = vec!["SADD".to_string(), format!("set:{k}")];
                    s.extend((0..20).map(|i| format!("member-{i}")));
                    let mut z = vec!["ZADD".to_string(), format!("z:{k}")];
                    z.extend((0..20).flat_map(|i| [i.to_string(), format!("member-{i}")]));
                    [s, z]
                })
                .collect(),
        ),
    ];
    for (what, lines) in families {
        let (used0, alloc0) = both(&mut c);
        pipeline(&mut c, &lines);
        let (used1, alloc1) = both(&mut c);
        let (counted, held) = (used1 - used0, alloc1.saturating_sub(alloc0));
        let ratio = counted as f64 / held as f64;
        assert!(
            (0.75..1.33).contains(&ratio),
            "{what}: counted {counted} bytes, the allocator holds {held} more"
        );
    }
    assert_eq!(c.cmd(&["FLUSHALL"]), ok());
    // What is left is the clients' and Lua's share, not the dataset's.
    assert_eq!(info_u64(&mut c, "memory", "used_memory_dataset"), 0);
}

/// maxmemory set at run time: the node evicts down to it at once and answers OOM like
/// redis-server once nothing more may go.
#[test]
fn config_set_maxmemory_evicts_and_refuses_like_redis() {
    let redis = Server::redis(&["--save", "", "--appendonly", "no"]);
    let node = Server::cacheplane(&["--save", "", "--appendonly", "no"]);
    for (name, server) in [("redis-server", &redis), ("cacheplane", &node)] {
        let mut c = server.conn();
        let value = "v".repeat(200);
        pipeline(&mut c, &set_lines("volatile", 20_000, &value, true));
        let used = info_u64(&mut c, "memory", "used_memory");
        let target = (used / 2).to_string();
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]),
            ok()
        );
        assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", &target]), ok());
        // Eviction runs in time slices, the rest soon after.
        let mut last = 0;
        poll("memory down to maxmemory", Duration::from_secs(30), || {
            // redis-server counts the reply to INFO itself: a little over is as good.
            last = info_u64(&mut c, "memory", "used_memory");
            if last <= used / 2 + 64 * 1024 {
                Ok(())
            } else {
                Err(format!("{name}: used_memory {last}, maxmemory {target}"))
            }
        });
        assert!(info_u64(&mut c, "stats", "evicted_keys") > 0);
        assert_eq!(
            info_field(&mut c, "memory", "maxmemory_policy"),
            "volatile-lru"
        );
        assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", "1"]), ok());
        // Writes are let through while eviction is still running; once every volatile
        // key is gone, nothing more may go.
        wait_until(
            "every volatile key evicted",
            Duration::from_secs(30),
            || c.cmd(&["DBSIZE"]) == resp::Frame::Integer(0),
        );
        let refused = c.cmd(&["SET", "k", "v"]);
        assert_eq!(
            err_text(&refused),
            "OOM command not allowed when used memory > 'maxmemory'."
        );
        assert_eq!(c.cmd(&["GET", "k"]), resp::Frame::Null);
        c.cmd(&["MULTI"]);
        let queued = c.cmd(&["SET", "k", "v"]);
        assert!(err_text(&queued).starts_with("OOM"), "{queued:?}");
        assert!(err_text(&c.cmd(&["EXEC"])).starts_with("EXECABORT"));
        assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", "0"]), ok());
        assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    }
}
