//! The Azure CLI (azure-cli from PyPI, unmodified) against `cacheplane serve` over HTTPS:
//! it registers serve as a cloud, logs in with the service principal at serve's token
//! endpoint, and runs the `az redis` commands people use, each checked on the CLI's JSON
//! output, with redis-cli reaching the cache over TLS with the key the CLI listed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{TempDir, free_port, run_python};
use crate::serve::{ControlPlane, TOKEN};

const TENANT: &str = serve::identity::TENANT_ID;
const SUBSCRIPTION: &str = serve::identity::SUBSCRIPTION_ID;

/// `az` with its own configuration directory, trusting serve's local CA.
struct Az {
    bin: String,
    config: PathBuf,
    ca: PathBuf,
}

impl Az {
    fn new(dir: &Path, ca: PathBuf) -> Az {
        Az {
            bin: std::env::var("CACHEPLANE_TEST_AZ")
                .expect("CACHEPLANE_TEST_AZ: run scripts/test.sh"),
            config: dir.join("az"),
            ca,
        }
    }

    /// Runs `az args -o json`; its output, or the failure with what it printed.
    fn try_run(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .args(["-o", "json", "--only-show-errors"])
            .env("AZURE_CONFIG_DIR", &self.config)
            .env("AZURE_CORE_INSTANCE_DISCOVERY", "false")
            .env("AZURE_CORE_COLLECT_TELEMETRY", "false")
            .env("AZURE_CORE_NO_COLOR", "true")
            .env("REQUESTS_CA_BUNDLE", &self.ca)
            .output()
            .expect("run az");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "az {} failed:\n{stdout}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout).map_err(|e| format!("az {}: {e}: {stdout}", args.join(" ")))
    }

    fn run(&self, args: &[&str]) -> Value {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// redis-cli over TLS with `key`: its exit status and output.
fn redis_cli(ca: &Path, port: u64, key: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", ca.to_str().unwrap(), "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-a", key, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("run redis-cli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn the_azure_cli_logs_in_and_manages_a_cache_over_https() {
    let data = TempDir::new("azure-cli");
    let port = free_port();
    let _cp = ControlPlane::start_with(data.path(), port, &["--tls"]);
    let ca = data.path().join("tls").join("ca.pem");
    let az = Az::new(data.path(), ca.clone());
    let azurite = std::env::var("CACHEPLANE_TEST_AZURITE")
        .expect("CACHEPLANE_TEST_AZURITE: run scripts/test.sh");

    // Log in: serve is the cloud's resource manager and its login endpoint.
    let endpoint = format!("https://127.0.0.1:{port}/");
    az.run(&[
        "cloud",
        "register",
        "-n",
        "cacheplane",
        "--endpoint-resource-manager",
        &endpoint,
    ]);
    az.run(&["cloud", "set", "-n", "cacheplane"]);
    let wrong = az.try_run(&[
        "login",
        "--service-principal",
        "-u",
        "cacheplane",
        "-p",
        "not-the-token",
        "--tenant",
        TENANT,
    ]);
    assert!(wrong.is_err(), "a wrong secret logged in: {wrong:?}");
    let accounts = az.run(&[
        "login",
        "--service-principal",
        "-u",
        "cacheplane",
        "-p",
        TOKEN,
        "--tenant",
        TENANT,
    ]);
    let account = accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == SUBSCRIPTION)
        .unwrap_or_else(|| panic!("{accounts}"));
    assert_eq!(account["tenantId"], TENANT);
    assert_eq!(account["user"]["type"], "servicePrincipal");

    // Create a Premium cache with RDB persistence to Azurite.
    let config = json!({
        "rdb-backup-enabled": "true",
        "rdb-backup-frequency": "15",
        "rdb-storage-connection-string": azurite,
    })
    .to_string();
    let g = ["-g", "rg-cli", "-n", "clicache"];
    let created = az.run(
        &[
            &["redis", "create"][..],
            &g,
            &[
                "-l",
                "westeurope",
                "--sku",
                "Premium",
                "--vm-size",
                "p1",
                "--redis-configuration",
                &config,
            ],
        ]
        .concat(),
    );
    assert_eq!(created["provisioningState"], "Succeeded", "{created}");
    assert_eq!(created["type"], "Microsoft.Cache/Redis");
    assert_eq!(created["sku"]["name"], "Premium");
    assert_eq!(created["redisConfiguration"]["rdbBackupEnabled"], "true");
    assert!(
        created["redisConfiguration"]["rdbStorageConnectionString"].is_null(),
        "secrets stay write-only"
    );

    let shown = az.run(&[&["redis", "show"][..], &g].concat());
    assert_eq!(shown["name"], "clicache");
    assert_eq!(shown["hostName"], "127.0.0.1");
    let ssl_port = shown["sslPort"].as_u64().unwrap();
    let listed = az.run(&["redis", "list", "-g", "rg-cli"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["name"], "clicache");

    let keys = az.run(&[&["redis", "list-keys"][..], &g].concat());
    let primary = keys["primaryKey"].as_str().unwrap().to_string();
    assert_eq!(
        redis_cli(&ca, ssl_port, &primary, &["SET", "greeting", "hello"]).1,
        "OK"
    );

    let regenerated = az.run(
        &[
            &["redis", "regenerate-keys"][..],
            &g,
            &["--key-type", "Primary"],
        ]
        .concat(),
    );
    let new_primary = regenerated["primaryKey"].as_str().unwrap().to_string();
    assert_ne!(new_primary, primary);
    assert_ne!(
        redis_cli(&ca, ssl_port, &primary, &["PING"]).1,
        "PONG",
        "the old key still opens the cache"
    );
    assert_eq!(
        redis_cli(&ca, ssl_port, &new_primary, &["GET", "greeting"]).1,
        "hello"
    );

    // `az redis update` is a GET, then a PATCH of what it read: without changes, nothing
    // changes.
    let before = az.run(&[&["redis", "show"][..], &g].concat());
    az.run(&[&["redis", "update"][..], &g].concat());
    let after = az.run(&[&["redis", "show"][..], &g].concat());
    assert_eq!(before, after, "a GET -> PATCH round trip changed the cache");
    az.run(
        &[
            &["redis", "update"][..],
            &g,
            &["--set", "redisConfiguration.maxmemory-policy=allkeys-lru"],
        ]
        .concat(),
    );
    let updated = az.run(&[&["redis", "show"][..], &g].concat());
    assert_eq!(
        updated["redisConfiguration"]["maxmemoryPolicy"], "allkeys-lru",
        "{updated}"
    );
    let (_, info) = redis_cli(&ca, ssl_port, &new_primary, &["INFO", "memory"]);
    assert!(info.contains("maxmemory_policy:allkeys-lru"), "{info}");

    let rebooted = az.run(
        &[
            &["redis", "force-reboot"][..],
            &g,
            &["--reboot-type", "AllNodes"],
        ]
        .concat(),
    );
    assert!(
        rebooted["message"]
            .as_str()
            .unwrap()
            .starts_with("Rebooted AllNodes"),
        "{rebooted}"
    );
    assert_eq!(redis_cli(&ca, ssl_port, &new_primary, &["PING"]).1, "PONG");

    // Firewall rules: one that leaves out 127.0.0.1 shuts redis-cli out; one that lets it
    // in, or removing the first, opens the cache again.
    let rule = az.run(
        &[
            &["redis", "firewall-rules", "create"][..],
            &g,
            &[
                "--rule-name",
                "office",
                "--start-ip",
                "10.0.0.1",
                "--end-ip",
                "10.0.0.255",
            ],
        ]
        .concat(),
    );
    assert_eq!(rule["startIp"], "10.0.0.1");
    assert_eq!(rule["type"], "Microsoft.Cache/Redis/firewallRules");
    let rules = az.run(&[&["redis", "firewall-rules", "list"][..], &g].concat());
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    let (ok, out) = redis_cli(&ca, ssl_port, &new_primary, &["PING"]);
    assert!(
        !ok && out != "PONG",
        "a client outside every rule got in: {out}"
    );
    az.run(
        &[
            &["redis", "firewall-rules", "create"][..],
            &g,
            &[
                "--rule-name",
                "local",
                "--start-ip",
                "127.0.0.1",
                "--end-ip",
                "127.0.0.1",
            ],
        ]
        .concat(),
    );
    assert_eq!(redis_cli(&ca, ssl_port, &new_primary, &["PING"]).1, "PONG");
    az.run(
        &[
            &["redis", "firewall-rules", "delete"][..],
            &g,
            &["--rule-name", "local"],
        ]
        .concat(),
    );
    assert_ne!(redis_cli(&ca, ssl_port, &new_primary, &["PING"]).1, "PONG");
    az.run(
        &[
            &["redis", "firewall-rules", "delete"][..],
            &g,
            &["--rule-name", "office"],
        ]
        .concat(),
    );
    assert_eq!(redis_cli(&ca, ssl_port, &new_primary, &["PING"]).1, "PONG");

    // The patch schedule (its windows reboot the cache: see the API test).
    let entries = r#"[{"dayOfWeek":"Sunday","startHourUtc":"3","maintenanceWindow":"PT6H"}]"#;
    let schedule = az.run(
        &[
            &["redis", "patch-schedule", "create"][..],
            &g,
            &["--schedule-entries", entries],
        ]
        .concat(),
    );
    assert_eq!(
        schedule["scheduleEntries"][0]["dayOfWeek"], "Sunday",
        "{schedule}"
    );
    let schedule = az.run(&[&["redis", "patch-schedule", "show"][..], &g].concat());
    assert_eq!(schedule["name"], "default");
    assert_eq!(schedule["scheduleEntries"][0]["startHourUtc"], 3);
    // The SDK reads the ISO 8601 duration as a time span.
    assert_eq!(
        schedule["scheduleEntries"][0]["maintenanceWindow"],
        "6:00:00"
    );

    // Export to a container SAS URL, import from a blob SAS URL, as Azure takes them.
    let container = run_python("container_sas.py", &[&azurite, "cacheplane"]);
    let container = container.trim();
    // (The reboot lost the data: no snapshot had been taken yet.)
    assert_eq!(
        redis_cli(&ca, ssl_port, &new_primary, &["SET", "greeting", "hello"]).1,
        "OK"
    );
    let prefix = format!("cli-export-{}", std::process::id());
    az.run(
        &[
            &["redis", "export"][..],
            &g,
            &["--prefix", &prefix, "--container", container],
        ]
        .concat(),
    );
    assert_eq!(
        redis_cli(&ca, ssl_port, &new_primary, &["SET", "greeting", "changed"]).1,
        "OK"
    );
    let (base, sas) = container.split_once('?').unwrap();
    let blob = format!("{base}/{prefix}?{sas}");
    az.run(&[&["redis", "import"][..], &g, &["--files", &blob, "--yes"]].concat());
    assert_eq!(
        redis_cli(&ca, ssl_port, &new_primary, &["GET", "greeting"]).1,
        "hello"
    );

    az.run(&[&["redis", "flush"][..], &g, &["--yes"]].concat());
    assert_eq!(redis_cli(&ca, ssl_port, &new_primary, &["DBSIZE"]).1, "0");

    az.run(&[&["redis", "delete"][..], &g, &["--yes"]].concat());
    let listed = az.run(&["redis", "list", "-g", "rg-cli"]);
    assert_eq!(listed, json!([]));
}

/// Azure's own recordings: every `x-ms-examples` request of the 2024-11-01 specification
/// (tests/fixtures/azure-rest-api-specs) is accepted, and every body served validates
/// against the operation's response schema there (tests/e2e/python/spec_examples.py; it
/// says what it adapts).
#[test]
fn the_specifications_examples_are_accepted_and_answered_in_its_schema() {
    let data = TempDir::new("spec-examples");
    let port = free_port();
    let _cp = ControlPlane::start(data.path(), port);
    let azurite = std::env::var("CACHEPLANE_TEST_AZURITE")
        .expect("CACHEPLANE_TEST_AZURITE: run scripts/test.sh");
    let container = run_python("container_sas.py", &[&azurite, "cacheplane"]);
    let specs = format!(
        "{}/../../tests/fixtures/azure-rest-api-specs",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = run_python(
        "spec_examples.py",
        &[
            &format!("http://127.0.0.1:{port}"),
            TOKEN,
            container.trim(),
            &specs,
        ],
    );
    assert!(out.contains("46 of 46 examples passed"), "{out}");
}

/// A maintenance window of the patch schedule reboots the cache when it opens on the
/// cache's clock (`cacheplane-time-scale`: a day a second here), with persistence's
/// consequences, and listUpgradeNotifications reports it; child resources refuse what
/// Azure refuses; tokens of the local token endpoint open the API, others do not.
#[test]
fn patch_windows_reboot_the_cache_and_child_resources_are_checked() {
    use crate::serve::{cache_url, call, create, premium, reconnect, redis, wait_operation};
    use reqwest::Method;

    let data = TempDir::new("patching");
    let cp = ControlPlane::start(data.path(), free_port());
    let (cache, key) = create(&cp, "patched", premium(json!({})));
    let url = cache_url(&cp, "patched");
    let port = cache["properties"]["port"].as_u64().unwrap() as u16;

    // Patch schedules: only `default`, hours of the day, windows of five hours or more.
    for (name, entry) in [
        ("weekly", json!({"dayOfWeek": "Monday", "startHourUtc": 1})),
        (
            "default",
            json!({"dayOfWeek": "Monday", "startHourUtc": 24}),
        ),
        (
            "default",
            json!({"dayOfWeek": "Someday", "startHourUtc": 1}),
        ),
        (
            "default",
            json!({"dayOfWeek": "Monday", "startHourUtc": 1, "maintenanceWindow": "PT1H"}),
        ),
    ] {
        let (status, _, body) = call(
            Method::PUT,
            &format!("{url}/patchSchedules/{name}"),
            Some(json!({"properties": {"scheduleEntries": [entry]}})),
        );
        assert_eq!(status, 400, "{name} {entry}: {body}");
    }
    let (status, _, schedule) = call(
        Method::PUT,
        &format!("{url}/patchSchedules/default"),
        Some(
            json!({"properties": {"scheduleEntries": [{"dayOfWeek": "Everyday", "startHourUtc": 0}]}}),
        ),
    );
    assert_eq!(status, 201, "{schedule}");
    assert_eq!(
        schedule["properties"]["scheduleEntries"][0]["maintenanceWindow"],
        "PT5H"
    );
    let (_, _, notes) = call(
        Method::GET,
        &format!("{url}/listUpgradeNotifications"),
        None,
    );
    assert_eq!(notes["value"], json!([]), "no window has opened yet");

    // A day a second: the next midnight comes within seconds, and reboots the cache.
    let (status, headers, body) = call(
        Method::PATCH,
        &url,
        Some(json!({"properties": {"redisConfiguration": {"cacheplane-time-scale": "86400"}}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_operation(&headers), "Succeeded");
    let mut conn = reconnect(port, &key);
    assert_eq!(
        conn.cmd(&["SET", "before-patching", "1"]),
        crate::harness::ok()
    );
    let notes = crate::harness::poll(
        "a maintenance window",
        std::time::Duration::from_secs(60),
        || {
            let (_, _, notes) = call(
                Method::GET,
                &format!("{url}/listUpgradeNotifications"),
                None,
            );
            match notes["value"].as_array() {
                Some(v) if !v.is_empty() => Ok(notes),
                _ => Err(notes.to_string()),
            }
        },
    );
    let name = notes["value"][0]["name"].as_str().unwrap();
    assert!(
        name.contains("no persistence, so its data was lost"),
        "{notes}"
    );
    assert!(
        notes["value"][0]["upsellNotification"]["windowStart"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00+00:00"),
        "{notes}"
    );
    let mut conn = redis(port, &key);
    assert_eq!(
        conn.cmd(&["EXISTS", "before-patching"]),
        resp::Frame::Integer(0)
    );
    let (status, _, _) = call(
        Method::DELETE,
        &format!("{url}/patchSchedules/default"),
        None,
    );
    assert_eq!(status, 200);

    // Firewall rules: IPv4 ranges in order, named with letters, digits and underscores.
    for (name, start, end) in [
        ("backwards", "10.0.0.9", "10.0.0.1"),
        ("ipv6", "fe80::1", "fe80::2"),
        ("dash-name", "10.0.0.1", "10.0.0.2"),
    ] {
        let (status, _, body) = call(
            Method::PUT,
            &format!("{url}/firewallRules/{name}"),
            Some(json!({"properties": {"startIP": start, "endIP": end}})),
        );
        assert_eq!(status, 400, "{name}: {body}");
    }
    let (status, _, _) = call(Method::DELETE, &format!("{url}/firewallRules/none"), None);
    assert_eq!(status, 204, "deleting what is not there");

    // Links need another Premium cache; policies their rules; assignments a policy.
    let self_id = cache["id"].as_str().unwrap();
    let (status, _, body) = call(
        Method::PUT,
        &format!("{url}/linkedServers/me"),
        Some(
            json!({"properties": {"linkedRedisCacheId": self_id, "linkedRedisCacheLocation": "westeurope", "serverRole": "Secondary"}}),
        ),
    );
    assert_eq!(status, 400, "{body}");
    // A link shows at both ends, and goes from both; so when its partner is deleted.
    let (partner, _) = create(&cp, "partner", premium(json!({})));
    let partner_url = cache_url(&cp, "partner");
    let link = json!({"properties": {"linkedRedisCacheId": partner["id"], "linkedRedisCacheLocation": "westeurope", "serverRole": "Secondary"}});
    let (status, _, body) = call(
        Method::PUT,
        &format!("{url}/linkedServers/partner"),
        Some(link.clone()),
    );
    assert_eq!(status, 201, "{body}");
    let (_, _, other_end) = call(Method::GET, &format!("{partner_url}/linkedServers"), None);
    assert_eq!(other_end["value"][0]["name"], "patched", "{other_end}");
    assert_eq!(other_end["value"][0]["properties"]["serverRole"], "Primary");
    let (status, _, _) = call(
        Method::DELETE,
        &format!("{url}/linkedServers/partner"),
        None,
    );
    assert_eq!(status, 200);
    let (_, _, other_end) = call(Method::GET, &format!("{partner_url}/linkedServers"), None);
    assert_eq!(other_end["value"], json!([]));
    let (status, _, _) = call(
        Method::PUT,
        &format!("{url}/linkedServers/partner"),
        Some(link),
    );
    assert_eq!(status, 201);
    let (status, headers, _) = call(Method::DELETE, &partner_url, None);
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Succeeded");
    let (_, _, links) = call(Method::GET, &format!("{url}/linkedServers"), None);
    assert_eq!(
        links["value"],
        json!([]),
        "a link to a deleted cache stayed"
    );

    let (status, _, body) = call(
        Method::PUT,
        &format!("{url}/accessPolicies/readers"),
        Some(json!({"properties": {"permissions": "read everything"}})),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = call(
        Method::PUT,
        &format!("{url}/accessPolicyAssignments/app1"),
        Some(
            json!({"properties": {"objectId": "6497c918-11ad-41e7-1b0f-7c518a87d0b0", "objectIdAlias": "app", "accessPolicyName": "nobody"}}),
        ),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = call(
        Method::PUT,
        &format!("{url}/accessPolicyAssignments/app1"),
        Some(
            json!({"properties": {"objectId": "6497c918-11ad-41e7-1b0f-7c518a87d0b0", "objectIdAlias": "app", "accessPolicyName": "Data Reader"}}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        body["properties"]["cacheplaneNotice"]
            .as_str()
            .unwrap()
            .contains("not emulated")
    );

    // checkNameAvailability: taken, free, invalid.
    let check = format!(
        "{}/subscriptions/sub-1/providers/Microsoft.Cache/CheckNameAvailability",
        cp.base
    );
    for (name, expected) in [("patched", 409), ("free-name", 200), ("-bad-", 400)] {
        let (status, _, body) = call(
            Method::POST,
            &check,
            Some(json!({"name": name, "type": "Microsoft.Cache/redis"})),
        );
        assert_eq!(status, expected, "{name}: {body}");
    }

    // The token endpoint: the service principal's secret is the management token.
    let token_url = format!("{}/{TENANT}/oauth2/v2.0/token", cp.base);
    let token = |secret: &str| {
        crate::serve::client()
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id=cacheplane&client_secret={secret}\
                 &scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
            ))
            .send()
            .unwrap()
    };
    assert_eq!(token("guess").status().as_u16(), 401);
    let issued: Value = token(TOKEN).json().unwrap();
    let access = issued["access_token"].as_str().unwrap();
    let list = format!(
        "{}/subscriptions/sub-1/providers/Microsoft.Cache/redis?api-version=2024-11-01",
        cp.base
    );
    let with = |t: &str| {
        crate::serve::client()
            .get(&list)
            .bearer_auth(t)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with(access), 200);
    let mut tampered = access.to_string();
    tampered.pop();
    assert_eq!(with(&tampered), 401);
}

/// Whether a client connecting from `source` (a loopback address: all of 127/8 is this
/// machine) to `port` is answered (`Some(first reply)`) or closed at once (`None`).
fn answered_from(source: &str, port: u16) -> Option<String> {
    let python = std::env::var("CACHEPLANE_TEST_PYTHON")
        .expect("CACHEPLANE_TEST_PYTHON: run scripts/test.sh");
    let script = "import socket, sys\n\
        s = socket.socket()\n\
        s.bind((sys.argv[1], 0))\n\
        s.connect(('127.0.0.1', int(sys.argv[2])))\n\
        s.settimeout(30)\n\
        try:\n    s.sendall(b'PING\\r\\n')\n    print(s.recv(100).decode())\n\
        except OSError:\n    print('')\n";
    let out = Command::new(python)
        .args(["-c", script, source, &port.to_string()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!reply.is_empty()).then_some(reply)
}

/// Firewall rules under both node runtimes: a client from outside every rule is closed at
/// accept; in the process runtime loopback (127.0.0.1) stays let in for the node's
/// supervisor, and the node stays healthy.
#[test]
fn firewall_rules_shut_out_other_addresses_under_both_runtimes() {
    use crate::serve::{cache_url, call, create, premium};
    use reqwest::Method;

    for runtime in ["in-process", "process"] {
        let data = TempDir::new("firewall");
        let cp = ControlPlane::start_with(data.path(), free_port(), &["--node-runtime", runtime]);
        let (cache, _) = create(&cp, "walled", premium(json!({})));
        let port = cache["properties"]["port"].as_u64().unwrap() as u16;
        let url = cache_url(&cp, "walled");
        assert!(
            answered_from("127.0.0.2", port).is_some(),
            "{runtime}: no rules, everyone in"
        );
        let (status, _, rule) = call(
            Method::PUT,
            &format!("{url}/firewallRules/office"),
            Some(json!({"properties": {"startIP": "10.0.0.1", "endIP": "10.0.0.255"}})),
        );
        assert_eq!(status, 201, "{rule}");
        assert_eq!(
            answered_from("127.0.0.2", port),
            None,
            "{runtime}: 127.0.0.2 is outside every rule"
        );
        let from_loopback = answered_from("127.0.0.1", port);
        match runtime {
            "process" => {
                assert!(
                    from_loopback.is_some(),
                    "the supervisor's address stays let in"
                );
                assert!(
                    rule["properties"]["cacheplaneNotice"]
                        .as_str()
                        .unwrap()
                        .contains("127.0.0.1")
                );
            }
            _ => assert_eq!(from_loopback, None),
        }
        let (status, _, _) = call(
            Method::PUT,
            &format!("{url}/firewallRules/lab"),
            Some(json!({"properties": {"startIP": "127.0.0.2", "endIP": "127.0.0.2"}})),
        );
        assert_eq!(status, 201);
        assert!(
            answered_from("127.0.0.2", port).is_some(),
            "{runtime}: a rule lets it in"
        );
        let (_, _, got) = call(Method::GET, &url, None);
        assert_eq!(
            got["properties"]["nodeStatus"]["state"], "Running",
            "{runtime}: {got}"
        );
    }
}
