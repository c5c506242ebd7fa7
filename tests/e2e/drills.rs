//! Fault drills through the management API against a real `cacheplane serve`: every kind of
//! fault on every persistence mode, with the accounts on Azurite and on the S3 server; the
//! measured loss of the probe's acknowledged writes must be within what the mode predicts,
//! and a node broken on purpose (fsyncs skipped while `always` claims them) must be reported
//! as outside it.
//!
//! `scripts/test.sh` starts Azurite and moto and sets CACHEPLANE_TEST_AZURITE and
//! CACHEPLANE_TEST_S3; without them these tests fail rather than skip.

use serde_json::{Value, json};

use crate::harness::{TempDir, free_port, ok};
use crate::serve::{ControlPlane, cache_url, call, create, reconnect, wait_operation};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/test.sh, which starts Azurite and the S3 server")
    })
}

/// A Premium cache in zone 1 with `config`.
fn zoned(config: Value) -> Value {
    json!({"location": "westeurope", "zones": ["1"], "properties": {
        "sku": {"name": "Premium", "family": "P", "capacity": 1},
        "redisConfiguration": config,
        "enableNonSslPort": true
    }})
}

/// Runs a drill of `kind` on the cache `name` and returns the drill as `faultDrills` lists it.
fn drill(cp: &ControlPlane, name: &str, body: Value) -> Value {
    let (status, headers, started) = call(
        reqwest::Method::POST,
        &format!("{}/simulateFault", cache_url(cp, name)),
        Some(body.clone()),
    );
    assert_eq!(status, 202, "{body}: {started}");
    assert_eq!(started["properties"]["status"], "Running");
    let drill_name = started["name"].as_str().unwrap().to_string();
    let ended = wait_operation(&headers);
    let (status, _, list) = call(
        reqwest::Method::GET,
        &format!("{}/faultDrills", cache_url(cp, name)),
        None,
    );
    assert_eq!(status, 200);
    let found = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == drill_name.as_str())
        .unwrap_or_else(|| panic!("{drill_name} is not in {list}"))
        .clone();
    assert_eq!(ended, "Succeeded", "{body}: {found}");
    found
}

/// Every drill kind on the cache `name`: each must end within its prediction, with the
/// probe's writes acknowledged and recovery reported for the kinds that kill the node.
fn every_kind(cp: &ControlPlane, name: &str, storage: bool) {
    let kinds: &[&str] = if storage {
        &[
            "nodeCrash",
            "machineLoss",
            "zoneOutage",
            "storageOutage",
            "storageSlow",
        ]
    } else {
        &["nodeCrash", "machineLoss", "zoneOutage"]
    };
    for kind in kinds {
        eprintln!("drill: {kind} on {name}");
        let d = drill(
            cp,
            name,
            json!({"kind": kind, "durationSeconds": 2, "probe": {"writesPerSecond": 200}, "latencyMs": 200}),
        );
        let p = &d["properties"];
        assert_eq!(p["status"], "Succeeded", "{name} {kind}: {d}");
        assert!(
            p["probe"]["acknowledged"].as_u64().unwrap() > 100,
            "{name} {kind}: the probe wrote: {d}"
        );
        assert_eq!(p["withinPrediction"], true, "{name} {kind}: {d}");
        if ["nodeCrash", "machineLoss", "zoneOutage"].contains(kind) {
            assert!(p["recoverySeconds"].as_f64().unwrap() > 0.0, "{d}");
            let source = p["restoredFrom"]["source"].as_str().unwrap();
            match (*kind, storage) {
                ("nodeCrash", _) if !name.contains("rdb") => {
                    assert_eq!(source, "local disk", "{d}")
                }
                // Without persistence nothing is stored: a new machine starts empty.
                (_, false) => assert_eq!(source, "local disk", "{d}"),
                _ => assert_ne!(
                    source, "local disk",
                    "{name} {kind} restores from its account: {d}"
                ),
            }
        } else {
            assert!(p["storageBacklog"]["account"].is_string(), "{d}");
            assert!(
                p["storageBacklog"]["drainedSeconds"].is_number(),
                "{name} {kind}: drained: {d}"
            );
        }
    }
}

/// The modes a cache can persist in, with the account at `conn`.
fn modes(conn: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "rdb",
            json!({"rdb-backup-enabled": "true", "rdb-backup-frequency": "15", "cacheplane-time-scale": "900", "rdb-storage-connection-string": conn}),
        ),
        (
            "aof-everysec",
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": conn}),
        ),
        (
            "aof-always",
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": conn, "cacheplane-appendfsync": "always"}),
        ),
        (
            "aof-store",
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": conn, "cacheplane-aof-durability": "store"}),
        ),
    ]
}

fn drills_on(store: &str, conn: &str) {
    let data = TempDir::new(&format!("drills-{store}"));
    let cp = ControlPlane::start(data.path(), free_port());
    for (mode, config) in modes(conn) {
        let name = format!("{mode}-{store}");
        create(&cp, &name, zoned(config));
        every_kind(&cp, &name, true);
        // The model table now knows this cache's restore speed from its drills.
        let (status, _, model) = call(
            reqwest::Method::GET,
            &format!("{}/persistenceModel", cache_url(&cp, &name)),
            None,
        );
        assert_eq!(status, 200, "{model}");
        assert!(
            model["restoreBytesPerSecond"].as_f64().unwrap() > 0.0,
            "{model}"
        );
        let rows = model["rows"].as_array().unwrap();
        let current: Vec<&Value> = rows.iter().filter(|r| r["current"] == true).collect();
        assert_eq!(current.len(), 1, "{model}");
        assert!(current[0]["recoverySecondsEstimate"].is_number(), "{model}");
        assert_eq!(rows[0]["persistence"], "none");
    }
}

#[test]
fn drills_on_azurite_stay_within_what_each_mode_predicts() {
    drills_on("azurite", &env("CACHEPLANE_TEST_AZURITE"));
}

#[test]
fn drills_on_the_s3_server_stay_within_what_each_mode_predicts() {
    drills_on("s3", &env("CACHEPLANE_TEST_S3"));
}

#[test]
fn without_persistence_a_crash_loses_everything_and_storage_drills_are_refused() {
    let data = TempDir::new("drills-none");
    let cp = ControlPlane::start(data.path(), free_port());
    create(&cp, "plain", zoned(json!({})));
    every_kind(&cp, "plain", false);
    let d = drill(
        &cp,
        "plain",
        json!({"kind": "nodeCrash", "durationSeconds": 1}),
    );
    let p = &d["properties"];
    assert_eq!(p["persistence"], "none");
    // Every write acknowledged before the crash is gone (those after it went to the new,
    // empty node).
    assert!(p["probe"]["lost"].as_u64().unwrap() > 0, "{d}");
    assert!(
        p["probe"]["lostBeforeFaultMs"].as_u64().unwrap() >= 500,
        "{d}"
    );
    assert_eq!(p["predicted"]["maxLostWrites"], Value::Null);
    for (body, target) in [
        (json!({"kind": "storageOutage"}), "account"),
        (
            json!({"kind": "nodeCrash", "durationSeconds": 0}),
            "durationSeconds",
        ),
        (
            json!({"kind": "nodeCrash", "probe": {"writesPerSecond": 100000}}),
            "probe.writesPerSecond",
        ),
        (json!({"kind": "meteorStrike"}), ""),
    ] {
        let (status, _, e) = call(
            reqwest::Method::POST,
            &format!("{}/simulateFault", cache_url(&cp, "plain")),
            Some(body.clone()),
        );
        assert_eq!(status, 400, "{body}: {e}");
        if !target.is_empty() {
            assert_eq!(e["error"]["target"], target, "{e}");
        }
    }
    // A cache without zones has no zone to lose.
    create(
        &cp,
        "unzoned",
        json!({"location": "westeurope", "properties": {"sku": {"name": "Premium", "family": "P", "capacity": 1}}}),
    );
    let (status, _, e) = call(
        reqwest::Method::POST,
        &format!("{}/simulateFault", cache_url(&cp, "unzoned")),
        Some(json!({"kind": "zoneOutage"})),
    );
    assert_eq!(
        (status, e["error"]["target"].as_str()),
        (400, Some("kind")),
        "{e}"
    );
}

#[test]
fn a_node_that_skips_its_fsyncs_is_reported_outside_its_prediction() {
    let data = TempDir::new("drills-broken");
    let cp = ControlPlane::start_with(data.path(), free_port(), &["--allow-debug-command"]);
    let (got, key) = create(
        &cp,
        "broken",
        zoned(json!({"aof-backup-enabled": "true", "cacheplane-appendfsync": "always"})),
    );
    let port = got["properties"]["port"].as_u64().unwrap() as u16;
    // Healthy first: `always` loses nothing on a crash.
    let d = drill(
        &cp,
        "broken",
        json!({"kind": "nodeCrash", "durationSeconds": 1}),
    );
    assert_eq!(d["properties"]["probe"]["lost"], 0, "{d}");
    assert_eq!(d["properties"]["withinPrediction"], true, "{d}");
    // Broken: replies still claim the fsync; the crash takes what the page cache held.
    let mut c = reconnect(port, &key);
    assert_eq!(c.cmd(&["DEBUG", "AOF-FSYNC", "off"]), ok());
    let d = drill(
        &cp,
        "broken",
        json!({"kind": "nodeCrash", "durationSeconds": 1}),
    );
    let p = &d["properties"];
    assert!(p["probe"]["lost"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(p["predicted"]["maxLostWrites"], 0, "{d}");
    assert_eq!(p["withinPrediction"], false, "{d}");
    // The record survives the control plane's restart.
    let port_api = cp.base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    cp.stop();
    let cp = ControlPlane::start_with(data.path(), port_api, &["--allow-debug-command"]);
    let (_, _, one) = call(
        reqwest::Method::GET,
        &format!(
            "{}/faultDrills/{}",
            cache_url(&cp, "broken"),
            d["name"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(one["properties"]["withinPrediction"], false, "{one}");
}
