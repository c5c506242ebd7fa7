//! A cache's memory as Azure sets it, seen through the management API and the cache's own
//! Redis connection, in both node runtimes: the node's maxmemory is the SKU's size less
//! its two reservations, times `cacheplane-memory-scale`; maxclients is the SKU's; the
//! policy is volatile-lru; PATCHes of the policy, a reservation and the SKU reach the
//! running node live (its connections stay open, a child keeps its process, and a child
//! restarted after a crash comes back with them); bad values are ARM's 400s naming the key.
//! Eviction itself is the node's, tested with it.

use std::process::Command;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{Conn, TempDir, bulk, err_text, free_port, info_field, ok};
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
