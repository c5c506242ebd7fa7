//! What neither an API caller nor a cache key holder can do, and what no control-plane
//! action loses: host files and hosts out of reach, Azure's blocked commands, the public
//! development token kept on loopback, owner-only secrets, acknowledged writes kept through
//! reboots with a store down and through machine-loss drills on one account named twice,
//! a deleted cache's data never coming back, operations settled after a crash, a panicking
//! node restarted, and a hung store holding up only its own cache.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use resp::Frame;
use serde_json::{Value, json};

use crate::harness::{
    CACHEPLANE, Link, Proxy, Server, TempDir, bulk, err_text, free_port, ok, poll, run_python,
    wait_until,
};
use crate::serve::{
    API, ControlPlane, TOKEN, cache_url, call, client, create, got_keys, premium, reconnect, redis,
    restart_with_new_settings, wait_operation,
};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test.sh"))
}

fn port_of(resource: &Value) -> u16 {
    resource["properties"]["port"].as_u64().unwrap() as u16
}

fn basic() -> Value {
    json!({"location": "westeurope", "properties": {
        "sku": {"name": "Standard", "family": "C", "capacity": 1}}})
}

/// Export and import name only containers the operator allows: no local folder outside the
/// storage root, no endpoint beyond loopback unless allowed; Azure's container SAS URL works.
/// The resource store and the data dir are readable by their owner only.
#[test]
fn callers_reach_no_host_files_and_no_other_hosts() {
    let data = TempDir::new("hard-host");
    let cp = ControlPlane::start(data.path(), free_port());
    let (_, _) = create(&cp, "src", basic());
    let blob = format!("exports/{}/src.rdb", std::process::id());
    for container in [
        "file:///tmp".to_string(),
        format!("Provider=Local;Path={}", data.path().display()),
        format!(
            "Provider=Local;Path={}/storage/../resources",
            data.path().display()
        ),
        "Provider=S3;Bucket=bkt;AccessKeyId=a;SecretAccessKey=s;Endpoint=http://169.254.169.254"
            .to_string(),
        "AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net".to_string(),
    ] {
        for op in ["export", "import"] {
            let body = json!({"prefix": blob, "files": [blob], "container": container});
            let (status, _, refused) = call(
                reqwest::Method::POST,
                &format!("{}/{op}", cache_url(&cp, "src")),
                Some(body),
            );
            assert_eq!(status, 400, "{op} to {container}: {refused}");
            assert_eq!(refused["error"]["target"], "container", "{refused}");
        }
    }
    assert!(!std::path::Path::new("/tmp").join(&blob).exists());
    // Persistence accounts follow the same rules.
    let (status, _, refused) = call(
        reqwest::Method::PUT,
        &cache_url(&cp, "outside"),
        Some(premium(
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": "file:///tmp/x"}),
        )),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["target"],
        "properties.redisConfiguration.aof-storage-connection-string-0"
    );

    // Azure's form: a container SAS URL (signed by the Azure SDK) on Azurite.
    let sas = run_python(
        "container_sas.py",
        &[&env("CACHEPLANE_TEST_AZURITE"), "cacheplane"],
    );
    let (status, headers, body) = call(
        reqwest::Method::POST,
        &format!("{}/export", cache_url(&cp, "src")),
        Some(json!({"prefix": blob, "container": sas.trim()})),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(wait_operation(&headers), "Succeeded");

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.path().join("resources.json")), 0o600);
    assert_eq!(mode(data.path()), 0o700);
}

/// A cache created by serve answers the commands Azure blocks as unknown commands, and
/// keeps serving; `cacheplane node` run by hand refuses CONFIG SET dir as redis-server 7.0
/// does (protected configs), with the same words.
#[test]
fn managed_caches_refuse_what_azure_blocks() {
    let data = TempDir::new("hard-blocked");
    let cp = ControlPlane::start(data.path(), free_port());
    let (got, key) = create(
        &cp,
        "locked",
        premium(json!({"aof-backup-enabled": "true"})),
    );
    let mut c = redis(port_of(&got), &key);
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    for cmd in [
        &["CONFIG", "SET", "dir", "/tmp"][..],
        &["CONFIG", "GET", "requirepass"],
        &["SAVE"],
        &["BGSAVE"],
        &["BGREWRITEAOF"],
        &["DEBUG", "SLEEP", "0"],
        &["SHUTDOWN", "NOSAVE"],
        &["REPLICAOF", "127.0.0.1", "1"],
        &["CACHEPLANE", "EVENTS"],
        &["CACHEPLANE", "SETKEYS", "a", "b"],
    ] {
        let reply = c.cmd(cmd);
        assert!(
            err_text(&reply).starts_with("ERR unknown command"),
            "{cmd:?}: {reply:?}"
        );
    }
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"), "still serving");

    // By hand, redis-server's behaviour: the same refusal from both.
    let ours = Server::cacheplane(&["--save", ""]);
    let theirs = Server::redis(&["--save", ""]);
    let refusal =
        |s: &Server| err_text(&s.conn().cmd(&["CONFIG", "SET", "dir", "/tmp"])).to_string();
    assert_eq!(refusal(&ours), refusal(&theirs));
    assert!(
        refusal(&ours).contains("protected config"),
        "{}",
        refusal(&ours)
    );
}

/// The published development token is for loopback only: serve refuses to start with it on
/// an address beyond this machine; with a token of its own it runs, and the development
/// token gets 401.
#[test]
fn the_development_token_stays_on_loopback() {
    let data = TempDir::new("hard-token");
    let port = free_port();
    // Refused at start: serve exits (a serve that runs instead is killed and fails the test).
    let refused = |token: &[&str]| -> String {
        let mut child = Command::new(CACHEPLANE)
            .args([
                "serve",
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--data-dir",
            ])
            .arg(data.path())
            .args(token)
            .env_remove("CACHEPLANE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let exited = poll("serve to refuse to start", Duration::from_secs(30), || {
            child.try_wait().unwrap().ok_or_else(String::new)
        });
        assert!(!exited.success());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        stderr
    };
    let stderr = refused(&[]);
    assert!(stderr.contains("give a token"), "{stderr}");
    let stderr = refused(&["--token", "cacheplane-dev-token"]);
    assert!(stderr.contains("development token"), "{stderr}");
    let child = Command::new(CACHEPLANE)
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .args(["--token", TOKEN, "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _cp = ControlPlane {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    wait_until("serve to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url =
        format!("http://127.0.0.1:{port}/subscriptions/s/providers/Microsoft.Cache/redis?{API}");
    let dev = client()
        .get(&url)
        .bearer_auth("cacheplane-dev-token")
        .send()
        .unwrap();
    assert_eq!(dev.status().as_u16(), 401);
    let own = client().get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(own.status().as_u16(), 200);
}

/// forceReboot of an AOF cache whose primary account is down keeps the local AOF that holds
/// the writes the account does not have: every acknowledged write is there after it.
#[test]
fn a_reboot_with_the_primary_store_down_loses_no_acknowledged_write() {
    let data = TempDir::new("hard-reboot");
    let cp = ControlPlane::start(data.path(), free_port());
    let (proxy, s3) = Proxy::in_front_of(
        &env("CACHEPLANE_TEST_S3"),
        &env("CACHEPLANE_TEST_S3_ENDPOINT"),
    );
    let name = format!("reboot{}", std::process::id());
    let (got, key) = create(
        &cp,
        &name,
        premium(json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": s3})),
    );
    let mut c = redis(port_of(&got), &key);
    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", &format!("before:{i}"), "v"]), ok());
    }
    proxy.set(Link::Down);
    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", &format!("during:{i}"), "v"]), ok());
    }
    let (status, _, reboot) = call(
        reqwest::Method::POST,
        &format!("{}/forceReboot", cache_url(&cp, &name)),
        Some(json!({"rebootType": "AllNodes"})),
    );
    assert_eq!(status, 200, "{reboot}");
    assert!(
        reboot["message"]
            .as_str()
            .unwrap()
            .contains("kept its local disk"),
        "{reboot}"
    );
    let mut c = reconnect(port_of(&got), &key);
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(200));
    assert_eq!(c.cmd(&["GET", "during:99"]), bulk("v"));
    proxy.set(Link::Up);
}

/// The same Azurite account named as both AOF accounts: each keeps its own files, and 20
/// machine-loss drills (forceReboot onto an empty disk, restore from the accounts) lose
/// nothing.
#[test]
fn one_account_named_twice_survives_machine_loss_drills() {
    let data = TempDir::new("hard-twice");
    let cp = ControlPlane::start(data.path(), free_port());
    let azurite = env("CACHEPLANE_TEST_AZURITE");
    let name = format!("twice{}", std::process::id());
    let (got, key) = create(
        &cp,
        &name,
        premium(json!({
            "aof-backup-enabled": "true",
            "aof-storage-connection-string-0": azurite,
            "aof-storage-connection-string-1": azurite,
        })),
    );
    let port = port_of(&got);
    let mut c = redis(port, &key);
    for drill in 0..20 {
        for i in 0..50 {
            assert_eq!(c.cmd(&["SET", &format!("d{drill}:{i}"), "v"]), ok());
        }
        let (status, _, reboot) = call(
            reqwest::Method::POST,
            &format!("{}/forceReboot", cache_url(&cp, &name)),
            Some(json!({"rebootType": "AllNodes"})),
        );
        assert_eq!(status, 200, "drill {drill}: {reboot}");
        assert!(
            reboot["message"].as_str().unwrap().contains("restored"),
            "drill {drill}: {reboot}"
        );
        c = reconnect(port, &key);
        assert_eq!(
            c.cmd(&["DBSIZE"]),
            Frame::Integer(50 * (drill + 1)),
            "drill {drill}"
        );
    }
}

/// A cache deleted and created again under the same name starts empty: its files went with
/// it, and the new one's directory and storage prefix are its own.
#[test]
fn a_deleted_cache_leaves_nothing_for_its_successor() {
    let data = TempDir::new("hard-recreate");
    let cp = ControlPlane::start(data.path(), free_port());
    let body = premium(json!({"aof-backup-enabled": "true"}));
    let (got, key) = create(&cp, "again", body.clone());
    assert_eq!(
        redis(port_of(&got), &key).cmd(&["SET", "secret", "old"]),
        ok()
    );
    let caches = data.path().join("caches");
    assert_eq!(caches.read_dir().unwrap().count(), 1);
    let (status, headers, _) = call(reqwest::Method::DELETE, &cache_url(&cp, "again"), None);
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Succeeded");
    assert_eq!(caches.read_dir().unwrap().count(), 0, "local files removed");
    let (got, key) = create(&cp, "again", body);
    let mut c = redis(port_of(&got), &key);
    assert_eq!(c.cmd(&["GET", "secret"]), Frame::Null);
    assert_eq!(c.cmd(&["DBSIZE"]), Frame::Integer(0));
}

/// Starts creating an AOF cache whose primary account is Azurite behind a proxy that holds
/// every connection silent; returns once the node's start waits on it (the cache stays
/// Creating until the proxy lets go), with the create's response headers.
fn create_on_a_held_store(cp: &ControlPlane, name: &str) -> (Proxy, reqwest::header::HeaderMap) {
    let (proxy, held) = Proxy::in_front_of(
        &env("CACHEPLANE_TEST_AZURITE"),
        &env("CACHEPLANE_TEST_AZURITE_ENDPOINT"),
    );
    proxy.set(Link::Hold);
    let (status, headers, created) = call(
        reqwest::Method::PUT,
        &cache_url(cp, name),
        Some(premium(
            json!({"aof-backup-enabled": "true", "aof-storage-connection-string-0": held}),
        )),
    );
    assert_eq!(status, 201, "{created}");
    wait_until(
        "the node's start to reach the store",
        Duration::from_secs(30),
        || proxy.held() > 0,
    );
    (proxy, headers)
}

/// serve killed while a create waits on a store: after the restart the cache is Succeeded
/// or Failed (never Creating forever) and the operation's URL answers with the outcome.
#[test]
fn serve_killed_mid_create_settles_the_cache_and_its_operation() {
    let data = TempDir::new("hard-midcreate");
    let port = free_port();
    let cp = ControlPlane::start(data.path(), port);
    let name = format!("mid{}", std::process::id());
    let (proxy, headers) = create_on_a_held_store(&cp, &name);
    drop(cp); // SIGKILL, mid-create
    proxy.set(Link::Up);
    let cp = ControlPlane::start(data.path(), port);
    let outcome = wait_operation(&headers);
    assert!(
        ["Succeeded", "Failed"].contains(&outcome.as_str()),
        "{outcome}"
    );
    let (status, _, got) = call(reqwest::Method::GET, &cache_url(&cp, &name), None);
    assert_eq!(status, 200);
    assert_eq!(got["properties"]["provisioningState"], outcome);
    if outcome == "Succeeded" {
        let key = got_keys(&cp, &name)["primaryKey"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            reconnect(port_of(&got), &key).cmd(&["PING"]),
            Frame::Simple("PONG".into())
        );
    }
}

/// A node that panics in a command (its state lock poisoned) is restarted by its actor from
/// its files: it answers again with its data, and the cache's status says what happened.
#[test]
fn a_node_that_panics_is_restarted_and_answers_again() {
    let data = TempDir::new("hard-panic");
    let cp = ControlPlane::start_with(data.path(), free_port(), &["--allow-debug-command"]);
    let (got, key) = create(
        &cp,
        "fragile",
        premium(json!({"aof-backup-enabled": "true"})),
    );
    let port = port_of(&got);
    let mut c = redis(port, &key);
    assert_eq!(c.cmd(&["SET", "k", "kept"]), ok());
    assert_eq!(
        c.call(&["DEBUG", "PANIC"]),
        None,
        "the connection dies with the command"
    );
    // The restart first: until the supervisor has noticed the panic, the dying node may
    // still take a connection, and then close it when it is replaced.
    let status = poll(
        "the restart in the cache's status",
        Duration::from_secs(30),
        || {
            let (_, _, got) = call(reqwest::Method::GET, &cache_url(&cp, "fragile"), None);
            let s = got["properties"]["nodeStatus"].clone();
            if s["restarts"] == 1 && s["state"] == "Running" {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    );
    assert!(
        status["lastFailure"].as_str().unwrap().contains("panicked"),
        "{status}"
    );
    let mut c = reconnect(port, &key);
    assert_eq!(c.cmd(&["GET", "k"]), bulk("kept"));
}

/// While one cache's node waits on a store that never answers (held so until the checks
/// are done), another cache's GET, PATCH (a restart) and listKeys complete.
#[test]
fn a_hung_store_holds_up_only_its_own_cache() {
    let data = TempDir::new("hard-hung");
    let cp = ControlPlane::start(data.path(), free_port());
    let (other, _) = create(&cp, "other", premium(json!({})));
    let name = format!("hung{}", std::process::id());
    let (proxy, _) = create_on_a_held_store(&cp, &name);

    let (status, _, got) = call(reqwest::Method::GET, &cache_url(&cp, "other"), None);
    assert_eq!(status, 200);
    assert_eq!(got["properties"]["port"], other["properties"]["port"]);
    restart_with_new_settings(&cp, "other");
    let key = got_keys(&cp, "other")["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        redis(port_of(&other), &key).cmd(&["PING"]),
        Frame::Simple("PONG".into())
    );

    // The held cache is still starting: the checks above ran while it hung.
    let (_, _, hung) = call(reqwest::Method::GET, &cache_url(&cp, &name), None);
    assert_eq!(
        hung["properties"]["provisioningState"], "Creating",
        "{hung}"
    );
    assert_eq!(
        hung["properties"]["nodeStatus"]["state"], "Starting",
        "{hung}"
    );
    assert!(proxy.held() > 0);
    proxy.set(Link::Up);
}

/// With `--node-runtime process`, a child node that stops answering (SIGSTOP: alive, but
/// silent) fails its actor's probes, which have a timeout; it is killed and restarted from
/// its files, and the cache's status says so.
#[test]
fn a_hung_child_node_is_probed_killed_and_restarted() {
    let data = TempDir::new("hard-probe");
    let cp = ControlPlane::start_with(data.path(), free_port(), &["--node-runtime", "process"]);
    let (got, key) = create(&cp, "stuck", premium(json!({"aof-backup-enabled": "true"})));
    let port = port_of(&got);
    let mut c = redis(port, &key);
    assert_eq!(c.cmd(&["SET", "k", "kept"]), ok());
    let Frame::Bulk(info) = c.cmd(&["INFO", "server"]) else {
        panic!("INFO is a bulk string")
    };
    let pid = String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_string();
    let stopped = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stopped.success());
    let status = poll(
        "the hung node's restart in the cache's status",
        Duration::from_secs(90),
        || {
            let (_, _, got) = call(reqwest::Method::GET, &cache_url(&cp, "stuck"), None);
            let s = got["properties"]["nodeStatus"].clone();
            if s["restarts"] == 1 {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    );
    assert!(
        status["lastFailure"].as_str().unwrap().contains("probes"),
        "{status}"
    );
    let mut c = reconnect(port, &key);
    assert_eq!(c.cmd(&["GET", "k"]), bulk("kept"));
    assert!(
        !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")),
        "the hung process is gone"
    );
}
