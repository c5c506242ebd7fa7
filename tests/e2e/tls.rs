//! TLS as Azure serves it: a cache's `sslPort` speaks TLS with a certificate of serve's
//! local CA, its non-TLS `port` is open only while `enableNonSslPort`, `minimumTlsVersion`
//! holds at the handshake; and `cacheplane node --tls-port` as redis-server's TLS, for
//! redis-cli, with clear failures for expired, wrong-name and untrusted certificates and a
//! time limit on a handshake that stalls.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, TempDir, free_port, run_python};
use crate::serve::{ControlPlane, cache_url, call, create, got_keys, wait_operation};

fn tls_client(mode: &str, port: u16, ca: &std::path::Path, password: Option<&str>) -> String {
    let port = port.to_string();
    let mut args = vec![mode, port.as_str(), ca.to_str().unwrap()];
    args.extend(password);
    run_python("tls_client.py", &args).trim().to_string()
}

fn ports(got: &Value) -> (u16, u16) {
    let p = |k: &str| got["properties"][k].as_u64().unwrap() as u16;
    (p("port"), p("sslPort"))
}

fn patch(cp: &ControlPlane, name: &str, properties: Value) {
    let (status, headers, body) = call(
        reqwest::Method::PATCH,
        &cache_url(cp, name),
        Some(json!({ "properties": properties })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_operation(&headers), "Succeeded");
}

#[test]
fn caches_speak_tls_on_the_ssl_port_and_plaintext_only_while_enabled() {
    let data = TempDir::new("tls-cache");
    let cp = ControlPlane::start(data.path(), free_port());
    let ca = data.path().join("tls").join("ca.pem");
    let body = json!({"location": "westeurope", "properties": {
        "sku": {"name": "Standard", "family": "C", "capacity": 1}}});
    let (got, key) = create(&cp, "secure", body);
    let (port, ssl_port) = ports(&got);
    assert_ne!(port, ssl_port);
    assert_eq!(got["properties"]["enableNonSslPort"], false);
    assert_eq!(got["properties"]["minimumTlsVersion"], "1.2");
    // The CA is one file and one call away.
    let served = reqwest::blocking::get(format!("{}/ca.pem", cp.base))
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(served, std::fs::read_to_string(&ca).unwrap());

    assert_eq!(tls_client("ping", ssl_port, &ca, Some(&key)), "pong");
    assert!(
        tls_client("plain", ssl_port, &ca, None).starts_with("no pong"),
        "plaintext on the TLS port"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "non-TLS port open"
    );

    // Opened and closed again by PATCH; the data stays through both restarts.
    patch(&cp, "secure", json!({"enableNonSslPort": true}));
    let mut plain = crate::serve::redis(port, &key);
    assert_eq!(plain.cmd(&["SET", "k", "v"]), crate::harness::ok());
    patch(&cp, "secure", json!({"enableNonSslPort": false}));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "non-TLS port open"
    );
    assert_eq!(tls_client("ping", ssl_port, &ca, Some(&key)), "pong");

    // TLS 1.3 only: a client that offers at most 1.2 is refused at the handshake.
    assert!(tls_client("tls12", ssl_port, &ca, None).starts_with("handshake TLSv1.2"));
    patch(&cp, "secure", json!({"minimumTlsVersion": "1.3"}));
    let refused = tls_client("tls12", ssl_port, &ca, None);
    assert!(refused.starts_with("refused"), "{refused}");
    assert_eq!(tls_client("ping", ssl_port, &ca, Some(&key)), "pong");
    let keys = got_keys(&cp, "secure");
    assert_eq!(keys["primaryKey"], key.as_str());

    // TLS 1.0 and 1.1 are refused as new Azure caches refuse them.
    for version in ["1.0", "1.1"] {
        let (status, _, err) = call(
            reqwest::Method::PATCH,
            &cache_url(&cp, "secure"),
            Some(json!({"properties": {"minimumTlsVersion": version}})),
        );
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["target"], "properties.minimumTlsVersion");
    }
}

/// `cacheplane node` with redis-server's TLS flags, reached by Redis's own redis-cli
/// (`--tls --cacert`), and the failures a client sees for bad certificates.
#[test]
fn redis_cli_speaks_tls_to_a_node_and_bad_certificates_fail_clearly() {
    let dir = TempDir::new("tls-node");
    run_python("make_certs.py", &[dir.path().to_str().unwrap()]);
    let file = |n: &str| dir.path().join(n).display().to_string();
    let node_with = |cert: &str, key: &str| {
        let tls_port = free_port();
        let node = Server::cacheplane(&[
            "--save",
            "",
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &file(cert),
            "--tls-key-file",
            &file(key),
            "--tls-auth-clients",
            "no",
        ]);
        (node, tls_port)
    };
    let cli = |port: u16, ca: &str, args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert", &file(ca), "-h", "127.0.0.1"])
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };

    let (node, port) = node_with("server.pem", "server-key.pem");
    assert_eq!(cli(port, "ca.pem", &["SET", "k", "over tls"]).trim(), "OK");
    assert_eq!(cli(port, "ca.pem", &["GET", "k"]).trim(), "over tls");
    // Plaintext keeps working on the plain port beside it.
    assert_eq!(
        node.conn().cmd(&["GET", "k"]),
        crate::harness::bulk("over tls")
    );
    let untrusted = cli(port, "other-ca.pem", &["PING"]);
    assert!(
        untrusted.contains("certificate verify failed"),
        "{untrusted}"
    );

    // A handshake that stalls is cut off, and costs others nothing meanwhile.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(cli(port, "ca.pem", &["PING"]).trim(), "PONG");
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        stalled.read(&mut buf).unwrap_or(0),
        0,
        "the stalled handshake is closed"
    );
    drop(node);

    // Each failure says what is wrong, to redis-cli and to Python's ssl alike.
    let (_expired, port) = node_with("expired.pem", "expired-key.pem");
    let expired = cli(port, "ca.pem", &["PING"]);
    assert!(expired.contains("certificate verify failed"), "{expired}");
    let ca = dir.path().join("ca.pem");
    let expired = tls_client("ping", port, &ca, None);
    assert!(expired.contains("certificate has expired"), "{expired}");
    let (_wrong, port) = node_with("wrongname.pem", "wrongname-key.pem");
    let wrong = tls_client("ping", port, &ca, None);
    assert!(wrong.contains("mismatch"), "{wrong}");
}
