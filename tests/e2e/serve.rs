//! The management API over HTTP against a real `cacheplane serve` process: ARM's shapes,
//! long-running operations, keys, reboots, restarts of the control plane, deletes, and the
//! refusals of bad input (each the right 4xx with ARM's error body, nothing created).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::Client;
use resp::Frame;
use serde_json::{Value, json};

use crate::harness::{CACHEPLANE, Conn, TempDir, bulk, free_port, ok, poll, wait_until};

pub(crate) const TOKEN: &str = "e2e-token";
pub(crate) const API: &str = "api-version=2024-11-01";

/// A `cacheplane serve` process, killed when dropped.
pub(crate) struct ControlPlane {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
    /// SIGTERM, as a service manager stops it, and wait for the exit.
    pub(crate) fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait for serve");
        assert!(exit.success(), "serve exited with {exit}");
    }

    pub(crate) fn start(data_dir: &std::path::Path, port: u16) -> ControlPlane {
        Self::start_with(data_dir, port, &[])
    }

    pub(crate) fn start_with(
        data_dir: &std::path::Path,
        port: u16,
        extra: &[&str],
    ) -> ControlPlane {
        let mut command = Command::new(CACHEPLANE);
        command.stdout(Stdio::null());
        Self::spawn(command, data_dir, port, extra)
    }

    /// Starts serve with its log (stdout) written to `log`, for tests that read it.
    pub(crate) fn start_logged(
        data_dir: &std::path::Path,
        port: u16,
        log: &std::path::Path,
    ) -> ControlPlane {
        let file = std::fs::File::create(log).expect("create the log file");
        let mut command = Command::new(CACHEPLANE);
        command.stdout(file);
        Self::spawn(command, data_dir, port, &[])
    }

    /// Starts serve with its open-files limit (soft and hard) set to `nofile`.
    pub(crate) fn start_with_nofile(
        data_dir: &std::path::Path,
        port: u16,
        nofile: u64,
    ) -> ControlPlane {
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
            CACHEPLANE,
        ]);
        sh.stdout(Stdio::null());
        Self::spawn(sh, data_dir, port, &[])
    }

    fn spawn(
        mut command: Command,
        data_dir: &std::path::Path,
        port: u16,
        extra: &[&str],
    ) -> ControlPlane {
        let child = command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--token",
                TOKEN,
            ])
            .args(extra)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cacheplane serve");
        let cp = ControlPlane {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_until("serve to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        cp
    }
}

pub(crate) fn cache_url(cp: &ControlPlane, name: &str) -> String {
    format!(
        "{}/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Cache/redis/{name}",
        cp.base
    )
}

pub(crate) fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub(crate) fn call(
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .request(method, format!("{url}?{API}"))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    (
        status,
        headers,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        },
    )
}

/// Follows `Azure-AsyncOperation` until the operation ends; returns its final status.
pub(crate) fn wait_operation(headers: &reqwest::header::HeaderMap) -> String {
    let url = headers
        .get("azure-asyncoperation")
        .expect("Azure-AsyncOperation header")
        .to_str()
        .unwrap()
        .to_string();
    poll("the operation to end", Duration::from_secs(60), || {
        let resp = client().get(&url).bearer_auth(TOKEN).send().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().unwrap();
        match v["status"].as_str().unwrap() {
            "InProgress" => Err(v.to_string()),
            ended => Ok(ended.to_string()),
        }
    })
}

pub(crate) fn premium(config: Value) -> Value {
    json!({"location": "westeurope", "tags": {"team": "e2e"}, "properties": {
        "sku": {"name": "Premium", "family": "P", "capacity": 1},
        "redisConfiguration": config,
        "enableNonSslPort": true
    }})
}

pub(crate) fn redis(port: u16, key: &str) -> Conn {
    let mut c = Conn::try_connect(port).unwrap();
    assert_eq!(c.cmd(&["AUTH", key]), ok());
    c
}

/// The access keys of a cache.
pub(crate) fn got_keys(cp: &ControlPlane, name: &str) -> Value {
    let (status, _, keys) = call(
        reqwest::Method::POST,
        &format!("{}/listKeys", cache_url(cp, name)),
        None,
    );
    assert_eq!(status, 200, "{keys}");
    keys
}

/// Makes an AOF cache's node write a new base, retiring the old base and segments in its
/// accounts: customers cannot send BGREWRITEAOF (Azure blocks it), but a restart with new
/// settings starts shipping from a fresh base.
pub(crate) fn rewrite_aof(cp: &ControlPlane, name: &str) {
    restart_with_new_settings(cp, name);
}

/// Restarts a cache's node by PATCHing a setting its listeners take at start (the minimum
/// TLS version, between 1.2 and 1.3); waits until the update succeeded.
pub(crate) fn restart_with_new_settings(cp: &ControlPlane, name: &str) {
    let (_, _, got) = call(reqwest::Method::GET, &cache_url(cp, name), None);
    let next = match got["properties"]["minimumTlsVersion"].as_str() {
        Some("1.3") => "1.2",
        _ => "1.3",
    };
    let (status, headers, body) = call(
        reqwest::Method::PATCH,
        &cache_url(cp, name),
        Some(json!({"properties": {"minimumTlsVersion": next}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_operation(&headers), "Succeeded");
}

/// Waits until the node on `port` (restarting) takes `key`, and returns the connection.
pub(crate) fn reconnect(port: u16, key: &str) -> Conn {
    poll(
        &format!("the node on port {port} to come back"),
        Duration::from_secs(30),
        || {
            if let Ok(mut c) = Conn::try_connect(port)
                && c.call(&["AUTH", key]) == Some(ok())
            {
                return Ok(c);
            }
            Err(String::new())
        },
    )
}

pub(crate) fn create(cp: &ControlPlane, name: &str, body: Value) -> (Value, String) {
    let (status, headers, created) = call(reqwest::Method::PUT, &cache_url(cp, name), Some(body));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["provisioningState"], "Creating");
    assert_eq!(wait_operation(&headers), "Succeeded");
    let (status, _, got) = call(reqwest::Method::GET, &cache_url(cp, name), None);
    assert_eq!(status, 200);
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    let (_, _, keys) = call(
        reqwest::Method::POST,
        &format!("{}/listKeys", cache_url(cp, name)),
        None,
    );
    (got, keys["primaryKey"].as_str().unwrap().to_string())
}

#[test]
fn caches_are_created_used_rebooted_survive_a_restart_and_are_deleted() {
    let data = TempDir::new("serve");
    let port = free_port();
    let mut cp = ControlPlane::start(data.path(), port);
    let (got, primary) = create(
        &cp,
        "orders",
        premium(json!({"aof-backup-enabled": "true"})),
    );
    assert_eq!(
        got["id"],
        "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Cache/Redis/orders"
    );
    assert_eq!(got["type"], "Microsoft.Cache/Redis");
    assert_eq!(got["tags"]["team"], "e2e");
    assert_eq!(got["properties"]["sku"]["name"], "Premium");
    assert_eq!(got["properties"]["redisVersion"], "7.0");
    let node_port = got["properties"]["port"].as_u64().unwrap() as u16;
    let mut c = redis(node_port, &primary);
    assert_eq!(c.cmd(&["SET", "order:1", "paid"]), ok());
    // Without the key: refused.
    let mut anon = Conn::try_connect(node_port).unwrap();
    assert!(matches!(anon.cmd(&["GET", "order:1"]), Frame::Error(e) if e.starts_with("NOAUTH")));
    // The secondary key works too.
    let (_, _, keys) = call(
        reqwest::Method::POST,
        &format!("{}/listKeys", cache_url(&cp, "orders")),
        None,
    );
    redis(node_port, keys["secondaryKey"].as_str().unwrap());

    let (status, _, reboot) = call(
        reqwest::Method::POST,
        &format!("{}/forceReboot", cache_url(&cp, "orders")),
        Some(json!({"rebootType": "AllNodes"})),
    );
    assert_eq!(status, 200, "{reboot}");
    assert_eq!(
        redis(node_port, &primary).cmd(&["GET", "order:1"]),
        bulk("paid")
    );

    // The control plane itself restarts: the cache and its data come back.
    drop(cp);
    cp = ControlPlane::start(data.path(), port);
    let (status, _, again) = call(reqwest::Method::GET, &cache_url(&cp, "orders"), None);
    assert_eq!(status, 200);
    assert_eq!(again["properties"]["port"], got["properties"]["port"]);
    let mut c = reconnect(node_port, &primary);
    assert_eq!(c.cmd(&["GET", "order:1"]), bulk("paid"));

    let (status, _, listed) = call(
        reqwest::Method::GET,
        &format!(
            "{}/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Cache/redis",
            cp.base
        ),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    let (status, _, listed) = call(
        reqwest::Method::GET,
        &format!(
            "{}/subscriptions/sub-1/providers/Microsoft.Cache/redis",
            cp.base
        ),
        None,
    );
    assert_eq!(
        (status, listed["value"].as_array().unwrap().len()),
        (200, 1)
    );

    let (status, headers, _) = call(reqwest::Method::DELETE, &cache_url(&cp, "orders"), None);
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Succeeded");
    let (status, _, gone) = call(reqwest::Method::GET, &cache_url(&cp, "orders"), None);
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["code"], "ResourceNotFound");
    assert!(
        Conn::try_connect(node_port).is_err()
            || Conn::try_connect(node_port)
                .unwrap()
                .call(&["PING"])
                .is_none()
    );
}

#[test]
fn bad_requests_get_arm_errors_and_create_nothing() {
    let data = TempDir::new("serve-bad");
    let cp = ControlPlane::start(data.path(), free_port());
    let url = cache_url(&cp, "bad");
    // No token, wrong token, no api-version.
    let resp = client().get(format!("{url}?{API}")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.json::<Value>().unwrap()["error"]["code"],
        "AuthenticationFailed"
    );
    let resp = client()
        .get(format!("{url}?{API}"))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client().get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.json::<Value>().unwrap()["error"]["code"],
        "MissingApiVersionParameter"
    );
    // Malformed JSON.
    let resp = client()
        .put(format!("{url}?{API}"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.json::<Value>().unwrap()["error"]["code"],
        "InvalidRequestContent"
    );
    let cases = [
        (
            json!({"location": "x", "properties": {"sku": {"name": "Premium", "family": "P", "capacity": "one"}}}),
            "InvalidRequestBody",
            "body",
        ),
        (
            json!({"location": "x", "properties": {"sku": {"name": "Mega", "family": "P", "capacity": 1}}}),
            "InvalidRequestBody",
            "body",
        ),
        (
            json!({"location": "x", "properties": {"sku": {"name": "Premium", "family": "C", "capacity": 1}}}),
            "InvalidSkuFamily",
            "properties.sku.family",
        ),
        (
            premium(json!({"rdb-backup-enabled": "true", "rdb-backup-frequency": "10"})),
            "InvalidRedisConfiguration",
            "properties.redisConfiguration.rdb-backup-frequency",
        ),
        (
            premium(json!({"rdb-backup-enabled": "true", "aof-backup-enabled": "true"})),
            "ConflictingPersistenceSettings",
            "properties.redisConfiguration.aof-backup-enabled",
        ),
        (
            premium(
                json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": "AccountName=acct"}),
            ),
            "InvalidStorageConnectionString",
            "properties.redisConfiguration.aof-storage-connection-string-0",
        ),
        (
            json!({"location": "x", "properties": {"sku": {"name": "Standard", "family": "C", "capacity": 1}, "redisConfiguration": {"aof-backup-enabled": "true"}}}),
            "PersistenceRequiresPremium",
            "properties.redisConfiguration.aof-backup-enabled",
        ),
        (
            json!({"location": "", "properties": {"sku": {"name": "Premium", "family": "P", "capacity": 1}}}),
            "LocationRequired",
            "location",
        ),
    ];
    for (body, code, target) in cases {
        let (status, _, err) = call(reqwest::Method::PUT, &url, Some(body.clone()));
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
        if target != "body" {
            assert_eq!(err["error"]["target"], target, "{body}: {err}");
        }
    }
    let (status, _, _) = call(reqwest::Method::GET, &url, None);
    assert_eq!(status, 404, "nothing was created");
    // Secrets are write-only.
    let conn = format!(
        "file://{}",
        data.path().join("storage").join("acct").display()
    );
    let (got, _) = create(
        &cp,
        "secret",
        premium(json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": conn})),
    );
    assert!(
        got["properties"]["redisConfiguration"]
            .get("aof-storage-connection-string-0")
            .is_none(),
        "{got}"
    );
    assert_eq!(
        got["properties"]["redisConfiguration"]["aof-backup-enabled"],
        "true"
    );
}

#[test]
fn persistence_modes_restore_from_azurite_and_s3_after_a_reboot() {
    let data = TempDir::new("serve-stores");
    let cp = ControlPlane::start(data.path(), free_port());
    let azurite = std::env::var("CACHEPLANE_TEST_AZURITE")
        .expect("CACHEPLANE_TEST_AZURITE: run scripts/test.sh");
    let s3 = std::env::var("CACHEPLANE_TEST_S3").expect("CACHEPLANE_TEST_S3: run scripts/test.sh");
    let cases = [
        (
            "rdb-local",
            json!({"rdb-backup-enabled": "true", "rdb-backup-frequency": "15", "cacheplane-time-scale": "900"}),
        ),
        (
            "rdb-s3",
            json!({"rdb-backup-enabled": "true", "rdb-backup-frequency": "15", "cacheplane-time-scale": "900", "rdb-storage-connection-string": s3}),
        ),
        (
            "aof-azurite",
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": azurite, "aof-storage-connection-string-1": s3}),
        ),
        ("aof-local", json!({"aof-backup-enabled": "true"})),
    ];
    for (name, config) in cases {
        let (got, primary) = create(&cp, name, premium(config));
        let node_port = got["properties"]["port"].as_u64().unwrap() as u16;
        let mut c = redis(node_port, &primary);
        assert_eq!(c.cmd(&["SET", "k", name]), ok());
        if name.starts_with("rdb") {
            // A snapshot after the write: at 900x, within about a second.
            wait_until(
                &format!("{name}: snapshots"),
                Duration::from_secs(30),
                || {
                    let Frame::Bulk(info) = c.cmd(&["INFO", "storage"]) else {
                        panic!("info")
                    };
                    String::from_utf8_lossy(&info).contains("rdb_backups_ok:2")
                },
            );
        }
        let (status, _, _) = call(
            reqwest::Method::POST,
            &format!("{}/forceReboot", cache_url(&cp, name)),
            Some(json!({"rebootType": "PrimaryNode"})),
        );
        assert_eq!(status, 200);
        assert_eq!(
            redis(node_port, &primary).cmd(&["GET", "k"]),
            bulk(name),
            "{name}: data back after the reboot"
        );
    }
}

fn storage_warnings(cp: &ControlPlane, name: &str) -> Vec<Value> {
    let (status, _, got) = call(reqwest::Method::GET, &cache_url(cp, name), None);
    assert_eq!(status, 200);
    got["properties"]["storageWarnings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn storage_report(cp: &ControlPlane, name: &str) -> Value {
    let (status, _, report) = call(
        reqwest::Method::GET,
        &format!("{}/storageReport", cache_url(cp, name)),
        None,
    );
    assert_eq!(status, 200, "{report}");
    report
}

/// Polls a cache's storage report until `ready` holds for its first account.
fn wait_report(cp: &ControlPlane, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    poll(&format!("{name}'s report"), Duration::from_secs(30), || {
        let report = storage_report(cp, name);
        let account = &report["accounts"][0];
        if ready(account) {
            Ok(account.clone())
        } else {
            Err(report.to_string())
        }
    })
}

/// Retention policies read from the stores themselves (Azurite's blob service properties,
/// the S3 server's bucket versioning and lifecycle): a cache with AOF on an account with
/// 7-day soft delete warns with numbers after writes and rewrites, the accounting survives
/// a restart of the control plane, and without soft delete nothing is retained or warned.
#[test]
fn soft_delete_read_from_the_store_warns_with_numbers_and_survives_a_restart() {
    let data = TempDir::new("serve-softdelete");
    let port = free_port();
    let mut cp = ControlPlane::start(data.path(), port);
    let soft = std::env::var("CACHEPLANE_TEST_AZURITE_SOFT_DELETE")
        .expect("CACHEPLANE_TEST_AZURITE_SOFT_DELETE: run scripts/test.sh");
    let lifecycle = std::env::var("CACHEPLANE_TEST_S3_LIFECYCLE")
        .expect("CACHEPLANE_TEST_S3_LIFECYCLE: run scripts/test.sh");
    // Names of this run's own: the stores outlive test runs when they are kept running, and
    // a cache of an earlier run's name would be restored from its objects.
    let run = std::process::id();
    let (costly_name, plain_name, versioned_name) = (
        format!("costly-{run}"),
        format!("plain-{run}"),
        format!("versioned-{run}"),
    );
    for (name, config) in [
        (
            costly_name.as_str(),
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": soft}),
        ),
        (plain_name.as_str(), json!({"aof-backup-enabled": "true"})),
        (
            versioned_name.as_str(),
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": lifecycle}),
        ),
    ] {
        let (got, primary) = create(&cp, name, premium(config));
        let mut c = redis(got["properties"]["port"].as_u64().unwrap() as u16, &primary);
        // Segments roll every second; each one rewrites the account's manifest and
        // checksum list, and the rewrite retires the old base and segments.
        for i in 0..200 {
            assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
        }
        std::thread::sleep(Duration::from_millis(1200));
        rewrite_aof(&cp, name);
    }
    let warning = poll(
        "a soft-delete warning on the cache",
        Duration::from_secs(30),
        || {
            storage_warnings(&cp, &costly_name)
                .into_iter()
                .find(|w| {
                    w["code"] == "RetentionOnPersistenceAccount"
                        && w["retainedBytes"].as_u64().unwrap_or(0) > 0
                })
                .ok_or_else(String::new)
        },
    );
    assert_eq!(warning["policy"]["kind"], "softDelete");
    assert_eq!(warning["policy"]["days"], 7);
    assert_eq!(warning["policySource"], "reported");
    assert!(
        warning["policyDetail"]
            .as_str()
            .unwrap()
            .contains("DeleteRetentionPolicy"),
        "{warning}"
    );
    assert!(warning["liveBytes"].as_u64().unwrap() > 0, "{warning}");
    assert!(
        warning["projectedRetainedBytes"].as_u64().unwrap() > 0,
        "{warning}"
    );
    let costly = storage_report(&cp, &costly_name)["accounts"][0].clone();
    let retained = costly["retainedBytes"].as_u64().unwrap();
    assert!(retained > 0, "{costly}");
    assert!(
        !costly["history"].as_array().unwrap().is_empty(),
        "{costly}"
    );

    // The S3 bucket's versioning and its lifecycle rule (noncurrent versions: 3 days).
    let versioned = wait_report(&cp, &versioned_name, |a| a["policySource"] == "reported");
    assert_eq!(
        versioned["policy"],
        json!({"kind": "versioning", "noncurrentExpiryDays": 3})
    );

    // Without soft delete (a local folder keeps nothing) the same traffic retains nothing
    // and warns about nothing.
    let plain = wait_report(&cp, &plain_name, |a| {
        a["liveBytes"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(plain["retainedBytes"], 0, "{plain}");
    assert_eq!(plain["policySource"], "assumed", "{plain}");
    assert_eq!(storage_warnings(&cp, &plain_name), Vec::<Value>::new());

    // The subscription's view per storage account: the soft-delete account holds the
    // costly cache's retained bytes; every account names the caches that use it.
    let (status, _, totals) = call(
        reqwest::Method::GET,
        &format!(
            "{}/subscriptions/sub-1/providers/Microsoft.Cache/storageReport",
            cp.base
        ),
        None,
    );
    assert_eq!(status, 200, "{totals}");
    let accounts = totals["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 3, "{totals}");
    let soft_account = accounts
        .iter()
        .find(|a| a["account"] == costly["account"])
        .expect("the soft-delete account");
    assert!(soft_account["retainedBytes"].as_u64().unwrap() >= retained);
    assert!(soft_account["warnings"].as_u64().unwrap() >= 1);
    assert_eq!(soft_account["caches"].as_array().unwrap().len(), 1);
    assert!(
        soft_account["caches"][0]["cache"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{costly_name}"))
    );

    // The control plane restarts: the accounting comes back with it.
    cp.stop();
    cp = ControlPlane::start(data.path(), port);
    let again = storage_report(&cp, &costly_name)["accounts"][0].clone();
    assert!(
        again["retainedBytes"].as_u64().unwrap() >= retained,
        "before the restart {retained}, after {again}"
    );
    assert_eq!(again["policySource"], "reported", "{again}");
}

/// Against an S3 bucket with versioning: after AOF traffic and rewrites, the retained bytes
/// the API reports equal the noncurrent version bytes the server itself lists.
#[test]
fn retained_bytes_match_the_s3_servers_own_version_listing() {
    let data = TempDir::new("serve-versions");
    let cp = ControlPlane::start(data.path(), free_port());
    let bucket = std::env::var("CACHEPLANE_TEST_S3_VERSIONED")
        .expect("CACHEPLANE_TEST_S3_VERSIONED: run scripts/test.sh");
    let python = std::env::var("CACHEPLANE_TEST_PYTHON")
        .expect("CACHEPLANE_TEST_PYTHON: run scripts/test.sh");
    let endpoint =
        std::env::var("CACHEPLANE_TEST_S3_ENDPOINT").expect("CACHEPLANE_TEST_S3_ENDPOINT");
    // A name of its own: the bucket outlives test runs when the servers are kept running,
    // and only this cache's objects (prefix `caches/{name}-`) are counted.
    let name = format!("versioned-{}", std::process::id());
    let (got, primary) = create(
        &cp,
        &name,
        premium(
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": bucket, "cacheplane-versioning-expiry-days": "none"}),
        ),
    );
    let mut c = redis(got["properties"]["port"].as_u64().unwrap() as u16, &primary);
    for round in 0..2 {
        for i in 0..100 {
            assert_eq!(c.cmd(&["SET", &format!("k{round}:{i}"), "v"]), ok());
        }
        std::thread::sleep(Duration::from_millis(1200));
        rewrite_aof(&cp, &name);
        c = reconnect(got["properties"]["port"].as_u64().unwrap() as u16, &primary);
    }
    // What moto keeps: the sizes of noncurrent versions (delete markers have none).
    let noncurrent = || -> u64 {
        let out = Command::new(&python)
            .args([
                "-c",
                "import sys, boto3\n\
                 s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n\
                 total = 0\n\
                 for page in s3.get_paginator('list_object_versions').paginate(Bucket='versioned', Prefix=sys.argv[2]):\n\
                 \x20   total += sum(v['Size'] for v in page.get('Versions', []) if not v['IsLatest'])\n\
                 print(total)",
                &endpoint,
                &format!("caches/{name}-"),
            ])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    poll(
        "the ledger to match the server's versions",
        Duration::from_secs(30),
        || {
            let reported = storage_report(&cp, &name)["accounts"][0]["retainedBytes"]
                .as_u64()
                .unwrap_or(0);
            let listed = noncurrent();
            if reported > 0 && reported == listed {
                Ok(())
            } else {
                Err(format!(
                    "the ledger says {reported}, the server lists {listed} noncurrent bytes"
                ))
            }
        },
    );
}

/// The OpenAPI document is served (without a token, as Azure's specifications are public)
/// and is the committed one; lists page with `nextLink` as ARM's do.
#[test]
fn openapi_is_served_and_lists_page_with_next_link() {
    let data = TempDir::new("serve-openapi");
    let cp = ControlPlane::start_with(data.path(), free_port(), &["--list-page-size", "2"]);
    let served = client()
        .get(format!("{}/openapi.json", cp.base))
        .send()
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
    let served: Value = served.json().unwrap();
    let committed: Value = serde_json::from_str(include_str!("../../api/openapi.json")).unwrap();
    assert_eq!(served, committed);
    assert!(
        served["components"]["schemas"]["RedisProperties"]["properties"]
            .get("storageWarnings")
            .is_some()
    );
    // Swagger UI (its assets served by serve itself) is pointed at the document.
    let docs = client().get(format!("{}/docs", cp.base)).send().unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().unwrap().contains("swagger-initializer.js"));
    let init = client()
        .get(format!("{}/docs/swagger-initializer.js", cp.base))
        .send()
        .unwrap();
    assert_eq!(init.status().as_u16(), 200);
    assert!(init.text().unwrap().contains("/openapi.json"));

    let basic = json!({"location": "westeurope", "properties": {
        "sku": {"name": "Basic", "family": "C", "capacity": 0}}});
    for name in ["page-a", "page-b", "page-c", "page-d", "page-e"] {
        create(&cp, name, basic.clone());
    }
    let mut url = format!(
        "{}/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Cache/redis?{API}",
        cp.base
    );
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page: Value = client()
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        pages += 1;
        let value = page["value"].as_array().unwrap();
        assert!(value.len() <= 2, "{page}");
        names.extend(
            value
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string()),
        );
        match page["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["page-a", "page-b", "page-c", "page-d", "page-e"]);
}

/// The official Azure SDK for Python (azure-mgmt-redis, from PyPI) drives the control plane
/// over HTTPS (serve --tls, trusting the local CA) end to end: create
/// (begin_create().result()), get, list, listKeys, redis-py SET/GET with the key on both
/// ports, update (which closes the non-TLS port, as the SDK sends enableNonSslPort false),
/// regenerateKey, force_reboot with the data back over TLS, a refusal, delete.
#[test]
fn the_azure_python_sdk_drives_the_control_plane() {
    let data = TempDir::new("serve-sdk");
    let port = free_port();
    let _cp = ControlPlane::start_with(data.path(), port, &["--tls"]);
    let ca = data.path().join("tls").join("ca.pem");
    let out = crate::harness::run_python(
        "azure_mgmt_redis.py",
        &[
            &format!("https://127.0.0.1:{port}"),
            TOKEN,
            ca.to_str().unwrap(),
        ],
    );
    assert_eq!(out.trim(), "sdk ok");
}

/// regenerateKey takes effect on the running node without a restart: sessions opened with
/// the replaced key end, those opened with the other key live on; PATCHing persistence on
/// restarts the node with its data; so does a graceful restart of the control plane, even
/// for a cache without persistence.
#[test]
fn keys_change_live_and_reconfiguration_keeps_the_data() {
    let data = TempDir::new("serve-live");
    let port = free_port();
    let mut cp = ControlPlane::start(data.path(), port);
    let (got, primary) = create(&cp, "live", premium(json!({})));
    let node_port = got["properties"]["port"].as_u64().unwrap() as u16;
    let mut open = redis(node_port, &primary);
    assert_eq!(open.cmd(&["SET", "k", "v1"]), ok());
    let secondary = got_keys(&cp, "live")["secondaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let mut open_secondary = redis(node_port, &secondary);

    let (status, _, keys) = call(
        reqwest::Method::POST,
        &format!("{}/regenerateKey", cache_url(&cp, "live")),
        Some(json!({"keyType": "Primary"})),
    );
    assert_eq!(status, 200, "{keys}");
    let new_primary = keys["primaryKey"].as_str().unwrap().to_string();
    assert_ne!(new_primary, primary);
    // The session opened with the replaced key is over; the node was not restarted, so
    // the one opened with the secondary key still works.
    assert_eq!(
        open.call(&["GET", "k"]),
        None,
        "the old key's session is closed"
    );
    assert_eq!(open_secondary.cmd(&["GET", "k"]), bulk("v1"));
    let mut old = Conn::try_connect(node_port).unwrap();
    assert!(matches!(old.cmd(&["AUTH", &primary]), Frame::Error(e) if e.starts_with("WRONGPASS")));
    let mut c = redis(node_port, &new_primary);

    // No persistence -> AOF: the node restarts with its data, and the AOF takes it.
    assert_eq!(c.cmd(&["SET", "k", "v2"]), ok());
    let (status, headers, patched) = call(
        reqwest::Method::PATCH,
        &cache_url(&cp, "live"),
        Some(json!({"properties": {"redisConfiguration": {"aof-backup-enabled": "true"}}})),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(wait_operation(&headers), "Succeeded");
    let mut c = redis(node_port, &new_primary);
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v2"));
    let Frame::Bulk(info) = c.cmd(&["INFO", "persistence"]) else {
        panic!("INFO is a bulk string")
    };
    assert!(String::from_utf8_lossy(&info).contains("aof_enabled:1"));

    // A graceful restart of the control plane keeps a cache without persistence whole.
    let (plain, plain_key) = create(&cp, "plain", premium(json!({})));
    let plain_port = plain["properties"]["port"].as_u64().unwrap() as u16;
    assert_eq!(redis(plain_port, &plain_key).cmd(&["SET", "p", "1"]), ok());
    cp.stop();
    cp = ControlPlane::start(data.path(), port);
    let mut c = reconnect(plain_port, &plain_key);
    assert_eq!(c.cmd(&["GET", "p"]), bulk("1"));
    drop(cp);
}

/// `--node-ports` confines the caches' nodes to a range (as a container publishes them):
/// caches take its ports in order, and a full range is a clear 409.
#[test]
fn node_ports_come_from_the_configured_range() {
    let data = TempDir::new("serve-ports");
    // Four consecutive free ports: two caches (a plain and a TLS port each).
    let first = poll(
        "four consecutive free ports",
        Duration::from_secs(10),
        || {
            let first = free_port();
            let all_free =
                (first..first + 4).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
            if all_free {
                Ok(first)
            } else {
                Err(String::new())
            }
        },
    );
    let last = first + 3;
    let range = format!("{first}-{last}");
    let cp = ControlPlane::start_with(data.path(), free_port(), &["--node-ports", &range]);
    let basic = json!({"location": "westeurope", "properties": {
        "sku": {"name": "Basic", "family": "C", "capacity": 0}}});
    let (a, _) = create(&cp, "port-a", basic.clone());
    let (b, _) = create(&cp, "port-b", basic.clone());
    assert_eq!(a["properties"]["port"], first);
    assert_eq!(a["properties"]["sslPort"], first + 1);
    assert_eq!(b["properties"]["port"], first + 2);
    assert_eq!(b["properties"]["sslPort"], last);
    let (status, _, full) = call(reqwest::Method::PUT, &cache_url(&cp, "port-c"), Some(basic));
    assert_eq!(status, 409, "{full}");
    assert!(
        full["error"]["message"].as_str().unwrap().contains(&range),
        "{full}"
    );
}

/// export streams a cache's snapshot into a storage account, import loads RDB blobs in
/// place of a cache's data; both are long-running operations with percentComplete, and a
/// bad container or format is refused before anything starts.
#[test]
fn export_and_import_move_data_between_caches_through_a_store() {
    let data = TempDir::new("serve-transfer");
    let cp = ControlPlane::start(data.path(), free_port());
    let azurite = std::env::var("CACHEPLANE_TEST_AZURITE")
        .expect("CACHEPLANE_TEST_AZURITE: run scripts/test.sh");
    let basic = json!({"location": "westeurope", "properties": {
        "sku": {"name": "Standard", "family": "C", "capacity": 1}, "enableNonSslPort": true}});
    let (source, source_key) = create(&cp, "source", basic.clone());
    let mut s = redis(
        source["properties"]["port"].as_u64().unwrap() as u16,
        &source_key,
    );
    for i in 0..1000 {
        assert_eq!(s.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]), ok());
    }
    assert_eq!(s.cmd(&["HSET", "h", "f", "1"]), Frame::Integer(1));
    let blob = format!("exports/{}/source.rdb", std::process::id());

    // Refusals first: nothing starts.
    for (body, target) in [
        (
            json!({"prefix": blob, "container": "AccountName=x"}),
            "container",
        ),
        (
            json!({"format": "AOF", "prefix": blob, "container": azurite}),
            "format",
        ),
        (json!({"prefix": "", "container": azurite}), "prefix"),
    ] {
        let (status, _, refused) = call(
            reqwest::Method::POST,
            &format!("{}/export", cache_url(&cp, "source")),
            Some(body),
        );
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["target"], target, "{refused}");
    }

    let (status, headers, _) = call(
        reqwest::Method::POST,
        &format!("{}/export", cache_url(&cp, "source")),
        Some(json!({"format": "RDB", "prefix": blob, "container": azurite})),
    );
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Succeeded");
    let op: Value = client()
        .get(headers["azure-asyncoperation"].to_str().unwrap())
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(op["percentComplete"], 100.0, "{op}");

    let (target, target_key) = create(&cp, "target", basic);
    let mut t = redis(
        target["properties"]["port"].as_u64().unwrap() as u16,
        &target_key,
    );
    assert_eq!(t.cmd(&["SET", "stale", "x"]), ok());
    let (status, headers, _) = call(
        reqwest::Method::POST,
        &format!("{}/import", cache_url(&cp, "target")),
        Some(json!({"files": [blob], "container": azurite})),
    );
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Succeeded");
    assert_eq!(t.cmd(&["DBSIZE"]), Frame::Integer(1001));
    assert_eq!(t.cmd(&["GET", "k999"]), bulk("v999"));
    assert_eq!(t.cmd(&["HGET", "h", "f"]), bulk("1"));
    assert_eq!(t.cmd(&["EXISTS", "stale"]), Frame::Integer(0));

    // A blob that is not there fails the operation with a message; the data stays.
    let (status, headers, _) = call(
        reqwest::Method::POST,
        &format!("{}/import", cache_url(&cp, "target")),
        Some(json!({"files": ["exports/none.rdb"], "container": azurite})),
    );
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Failed");
    assert_eq!(t.cmd(&["DBSIZE"]), Frame::Integer(1001));
}

/// `--node-runtime process`: each cache's node is a child process; killed with SIGKILL it
/// is restarted by the control plane and its data comes back from its AOF; key changes
/// reach it at once; deleting the cache ends the process.
#[test]
fn process_runtime_restarts_a_killed_node_with_its_data() {
    let data = TempDir::new("serve-process");
    let cp = ControlPlane::start_with(data.path(), free_port(), &["--node-runtime", "process"]);
    let (got, primary) = create(&cp, "proc", premium(json!({"aof-backup-enabled": "true"})));
    let port = got["properties"]["port"].as_u64().unwrap() as u16;
    let mut c = redis(port, &primary);
    assert_eq!(c.cmd(&["SET", "k", "before the crash"]), ok());
    let pid_of = |c: &mut Conn| -> u32 {
        let Frame::Bulk(info) = c.cmd(&["INFO", "server"]) else {
            panic!("INFO is a bulk string")
        };
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let pid = pid_of(&mut c);
    assert_ne!(pid, std::process::id());
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut c = reconnect(port, &primary);
    let restarted = pid_of(&mut c);
    assert_ne!(restarted, pid, "a new process serves the cache");
    assert_eq!(c.cmd(&["GET", "k"]), bulk("before the crash"));

    let (status, _, keys) = call(
        reqwest::Method::POST,
        &format!("{}/regenerateKey", cache_url(&cp, "proc")),
        Some(json!({"keyType": "Primary"})),
    );
    assert_eq!(status, 200, "{keys}");
    let new_primary = keys["primaryKey"].as_str().unwrap();
    // The session opened with the replaced key is over; the node was not restarted.
    assert_eq!(
        c.call(&["GET", "k"]),
        None,
        "the old key's session is closed"
    );
    let mut c = redis(port, new_primary);
    assert_eq!(pid_of(&mut c), restarted, "no restart");
    assert_eq!(c.cmd(&["GET", "k"]), bulk("before the crash"));
    let mut old = Conn::try_connect(port).unwrap();
    assert!(matches!(old.cmd(&["AUTH", &primary]), Frame::Error(_)));

    // The child's object-store events reach the control plane's accounting.
    wait_report(&cp, "proc", |a| a["liveBytes"].as_u64().unwrap_or(0) > 0);

    let (status, headers, _) = call(reqwest::Method::DELETE, &cache_url(&cp, "proc"), None);
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Succeeded");
    // The process ended (and was reaped) before the delete finished.
    assert!(!std::path::Path::new(&format!("/proc/{restarted}")).exists());
    assert!(Conn::try_connect(port).is_err());

    // A control plane killed outright leaves no node behind holding its port.
    let (got, key) = create(&cp, "orphan", premium(json!({})));
    let mut c = redis(got["properties"]["port"].as_u64().unwrap() as u16, &key);
    let orphan = pid_of(&mut c);
    drop(cp); // SIGKILL
    // Gone, or a zombie its adopter has not reaped yet.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|s| !s.starts_with('Z'))
        })
    };
    wait_until(
        &format!("node process {orphan} to end with its control plane"),
        Duration::from_secs(10),
        || !alive(orphan),
    );
}

/// schemathesis (from PyPI) generates requests from the served OpenAPI document, valid and
/// invalid, with the token, against a running serve: no 5xx, and every response as the
/// document describes it.
#[test]
fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let data = TempDir::new("serve-schema");
    let cp = ControlPlane::start(data.path(), free_port());
    let python = std::env::var("CACHEPLANE_TEST_PYTHON")
        .expect("CACHEPLANE_TEST_PYTHON: run scripts/test.sh");
    let schemathesis = std::path::Path::new(&python).with_file_name("schemathesis");
    let out = Command::new(&schemathesis)
        .args(["run", &format!("{}/openapi.json", cp.base)])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "20", "--seed", "1", "--no-color"])
        // Its example database and reports stay out of the source tree.
        .current_dir(data.path())
        .output()
        .expect("run schemathesis (installed by scripts/object-stores.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It ran: the summary counts the operations it tested.
    assert!(stdout.contains("passed"), "{stdout}");
}
