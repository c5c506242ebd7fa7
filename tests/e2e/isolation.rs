//! One client cannot starve the others: output buffer limits (a pipeline never read, a
//! subscriber that does not read), the query buffer limit while a client is blocked,
//! side by side with redis-server; and through `serve`, a hostile client of one cache is
//! cut off while another cache and the management API keep answering, and sockets that
//! never authenticate are closed so they cannot hold a cache's `maxclients`.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use resp::Frame;
use serde_json::json;

use crate::harness::{
    Conn, Server, TempDir, bulk, err_text, free_port, info_field, ok, wait_until,
};
use crate::serve::{ControlPlane, cache_url, call, create, redis};

/// Reads (and drops) whatever the server still sends, until it closes the connection;
/// false if it is still open after the read timeout.
fn drained_to_close(c: &mut Conn) -> bool {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Writes `bytes` without reading, stopping quietly once the server has closed.
fn send_ignoring_close(c: &mut Conn, bytes: &[u8]) {
    let _ = c.stream.write_all(bytes);
}

/// The id of `c`'s connection (`CLIENT ID`).
fn client_id(c: &mut Conn) -> i64 {
    match c.cmd(&["CLIENT", "ID"]) {
        Frame::Integer(id) => id,
        other => panic!("CLIENT ID answered {other:?}"),
    }
}

/// Whether client `id` is still connected, as `admin` sees in CLIENT LIST.
fn connected(admin: &mut Conn, id: i64) -> bool {
    let Frame::Bulk(list) = admin.cmd(&["CLIENT", "LIST"]) else {
        panic!("CLIENT LIST is not a bulk string")
    };
    String::from_utf8_lossy(&list)
        .lines()
        .any(|l| l.starts_with(&format!("id={id} ")))
}

fn gets(key: &str, n: usize) -> Vec<u8> {
    let one = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    one.repeat(n).into_bytes()
}

/// A client that pipelines GETs of a 64 KiB value and never reads: over a `normal` soft
/// limit of 256 KiB for a second, it is closed (what the server had written before stays
/// in the socket; then EOF).
fn pipeline_never_read_is_closed(admin: &mut Conn, port: u16) {
    let value = "v".repeat(64 * 1024);
    assert_eq!(admin.cmd(&["SET", "big", &value]), ok());
    let mut hostile = Conn::try_connect(port).unwrap();
    let id = client_id(&mut hostile);
    // 400 replies of 64 KiB: 25 MiB, far more than loopback's socket buffers hold.
    send_ignoring_close(&mut hostile, &gets("big", 400));
    wait_until(
        "the non-reading client to be closed",
        Duration::from_secs(30),
        || !connected(admin, id),
    );
    assert!(drained_to_close(&mut hostile));
}

#[test]
fn output_buffer_limits_close_clients_as_redis_does() {
    let redis_server = Server::redis(&[]);
    let node = Server::cacheplane(&["--save", "", "--appendonly", "no"]);
    for server in [&redis_server, &node] {
        let mut admin = server.conn();
        // The format and units of CONFIG SET and GET.
        assert_eq!(
            admin.cmd(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "normal 1mb 0 0"
            ]),
            ok()
        );
        assert_eq!(
            admin.cmd(&["CONFIG", "GET", "client-output-buffer-limit"]),
            Frame::Array(vec![
                bulk("client-output-buffer-limit"),
                bulk("normal 1048576 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"),
            ])
        );
        let refused = admin.cmd(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 1mb 0",
        ]);
        assert!(err_text(&refused).starts_with("ERR"), "{refused:?}");

        // Hard limit: one reply over it closes the client, which gets nothing.
        let two_mib = "x".repeat(2 * 1024 * 1024);
        assert_eq!(admin.cmd(&["SET", "huge", &two_mib]), ok());
        let mut reader = server.conn();
        assert_eq!(reader.call(&["GET", "huge"]), None);
        assert_eq!(
            admin.cmd(&["STRLEN", "huge"]),
            Frame::Integer(2 * 1024 * 1024)
        );

        // Soft limit: over 256 KiB unread for more than a second.
        assert_eq!(
            admin.cmd(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "normal 0 256kb 1"
            ]),
            ok()
        );
        pipeline_never_read_is_closed(&mut admin, server.port);

        // Pub/sub class: a subscriber that stops reading.
        assert_eq!(
            admin.cmd(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "pubsub 256kb 0 0"
            ]),
            ok()
        );
        let mut subscriber = server.conn();
        subscriber.send(&["SUBSCRIBE", "news"]);
        assert!(subscriber.read().is_some());
        let message = "m".repeat(1024);
        let mut sent = 0;
        while admin.cmd(&["PUBSUB", "NUMSUB", "news"])
            != Frame::Array(vec![bulk("news"), Frame::Integer(0)])
        {
            for _ in 0..1000 {
                admin.cmd(&["PUBLISH", "news", &message]);
            }
            sent += 1000;
            assert!(sent < 200_000, "the subscriber was never closed");
        }
        assert!(drained_to_close(&mut subscriber));
        // Back to Redis's defaults.
        assert_eq!(
            admin.cmd(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "normal 0 0 0 pubsub 32mb 8mb 60"
            ]),
            ok()
        );
    }
    let mut c = node.conn();
    let closed: u64 = info_field(&mut c, "stats", "client_output_buffer_limit_disconnections")
        .parse()
        .unwrap();
    assert_eq!(closed, 3);
}

/// A client blocked in BLPOP whose socket keeps sending is closed once its unread input
/// passes `client-query-buffer-limit`, as Redis checks after every read.
fn blocked_client_streaming_is_closed(admin: &mut Conn, port: u16, key: Option<&str>) {
    let mut blocked = Conn::try_connect(port).unwrap();
    if let Some(key) = key {
        assert_eq!(blocked.cmd(&["AUTH", key]), ok());
    }
    let id = client_id(&mut blocked);
    blocked.send(&["BLPOP", "nothing", "0"]);
    wait_until("the client to block", Duration::from_secs(10), || {
        info_field(admin, "clients", "blocked_clients") == "1"
    });
    send_ignoring_close(
        &mut blocked,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n",
    );
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        send_ignoring_close(&mut blocked, &chunk);
    }
    wait_until(
        "the streaming blocked client to be closed",
        Duration::from_secs(30),
        || !connected(admin, id),
    );
    assert!(drained_to_close(&mut blocked));
    assert_eq!(info_field(admin, "clients", "blocked_clients"), "0");
}

#[test]
fn a_blocked_client_over_the_query_buffer_limit_is_closed_as_redis_does() {
    let redis_server = Server::redis(&[]);
    let node = Server::cacheplane(&["--save", "", "--appendonly", "no"]);
    for server in [&redis_server, &node] {
        let mut admin = server.conn();
        assert_eq!(
            admin.cmd(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"]),
            ok()
        );
        blocked_client_streaming_is_closed(&mut admin, server.port, None);
        assert_eq!(admin.cmd(&["PING"]), Frame::Simple("PONG".into()));
    }
    let mut c = node.conn();
    assert_eq!(
        info_field(&mut c, "stats", "client_query_buffer_limit_disconnections"),
        "1"
    );
}

#[test]
fn a_hostile_client_of_one_cache_starves_neither_another_cache_nor_the_api() {
    let data = TempDir::new("serve-isolation");
    let log = data.path().join("serve.log");
    let cp = ControlPlane::start_logged(data.path(), free_port(), &log);
    // Cache A: Basic C0 (maxclients 256), with tight client limits of cacheplane's keys.
    let (a, key_a) = create(
        &cp,
        "hostile",
        json!({"location": "westeurope", "properties": {
            "sku": {"name": "Basic", "family": "C", "capacity": 0},
            "redisConfiguration": {
                "cacheplane-client-output-buffer-limit": "normal 0 256kb 1",
                "cacheplane-client-query-buffer-limit": "1mb"
            },
            "enableNonSslPort": true}}),
    );
    let port_a = a["properties"]["port"].as_u64().unwrap() as u16;
    // The keys are checked as the node takes them: ARM's 400 naming the key.
    let (status, _, refused) = call(
        reqwest::Method::PUT,
        &cache_url(&cp, "refused"),
        Some(crate::serve::premium(
            json!({"cacheplane-client-output-buffer-limit": "normal 1mb"}),
        )),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["target"],
        "properties.redisConfiguration.cacheplane-client-output-buffer-limit"
    );
    let (b, key_b) = create(&cp, "quiet", crate::serve::premium(json!({})));
    let port_b = b["properties"]["port"].as_u64().unwrap() as u16;
    let mut quiet = redis(port_b, &key_b);
    assert_eq!(quiet.cmd(&["SET", "k", "v"]), ok());
    let b_answers = |quiet: &mut Conn| {
        assert_eq!(quiet.cmd(&["GET", "k"]), bulk("v"));
        let (status, _, _) = call(reqwest::Method::GET, &cache_url(&cp, "quiet"), None);
        assert_eq!(status, 200);
    };

    let mut admin = redis(port_a, &key_a);
    // A pipeline of GETs never read.
    let value = "v".repeat(64 * 1024);
    assert_eq!(admin.cmd(&["SET", "big", &value]), ok());
    let mut hostile = redis(port_a, &key_a);
    send_ignoring_close(&mut hostile, &gets("big", 400));
    b_answers(&mut quiet);
    wait_until(
        "the non-reading client to be closed",
        Duration::from_secs(30),
        || {
            info_field(
                &mut admin,
                "stats",
                "client_output_buffer_limit_disconnections",
            ) == "1"
        },
    );
    assert!(drained_to_close(&mut hostile));

    // A blocked client that keeps streaming bytes.
    blocked_client_streaming_is_closed(&mut admin, port_a, Some(&key_a));
    assert_eq!(
        info_field(
            &mut admin,
            "stats",
            "client_query_buffer_limit_disconnections"
        ),
        "1"
    );
    b_answers(&mut quiet);

    // More idle sockets without the key than A's maxclients: they fill it, then are
    // closed for not authenticating in time, and A takes clients again.
    drop(admin);
    let mut idle: Vec<Conn> = (0..300)
        .map(|_| Conn::try_connect(port_a).unwrap())
        .collect();
    b_answers(&mut quiet);
    let mut late = Conn::try_connect(port_a).unwrap();
    let refused = late.call(&["AUTH", &key_a]);
    assert!(
        match &refused {
            None => true,
            Some(Frame::Error(e)) => e.contains("max number of clients"),
            Some(_) => false,
        },
        "{refused:?}"
    );
    for c in &mut idle {
        assert!(drained_to_close(c));
    }
    let mut admin = redis(port_a, &key_a);
    assert_eq!(admin.cmd(&["GET", "big"]), bulk(&value));
    b_answers(&mut quiet);
    // Each was cut off with Redis's own log line.
    let logged = std::fs::read_to_string(&log).unwrap();
    for line in [
        "scheduled to be closed ASAP for overcoming of output buffer limits.",
        "Closing client that reached max query buffer length",
    ] {
        assert!(
            logged.contains(line),
            "no {line:?} in serve's log:\n{logged}"
        );
    }
}

/// serve under a small open-files limit: its caches share what is left after the reserve
/// (`FD_RESERVE`, 1,024), half each for two caches; a cache that fills its half answers
/// `max number of clients reached`, while the other cache still takes clients and the API
/// still writes its store.
#[test]
fn caches_share_the_process_descriptors_and_the_api_keeps_its_reserve() {
    let data = TempDir::new("serve-fds");
    // 1,224 descriptors: 200 for clients, 100 for each of the two caches.
    let cp = ControlPlane::start_with_nofile(data.path(), free_port(), 1224);
    let (a, key_a) = create(&cp, "greedy", crate::serve::premium(json!({})));
    let (b, key_b) = create(&cp, "modest", crate::serve::premium(json!({})));
    let port_a = a["properties"]["port"].as_u64().unwrap() as u16;
    let port_b = b["properties"]["port"].as_u64().unwrap() as u16;
    let mut held = Vec::new();
    let refused = loop {
        assert!(held.len() < 150, "cache A took more than its share");
        let mut c = Conn::try_connect(port_a).unwrap();
        match c.call(&["AUTH", &key_a]) {
            Some(f) if f == ok() => held.push(c),
            other => break other,
        }
    };
    assert!(
        matches!(&refused, Some(Frame::Error(e)) if e == "ERR max number of clients reached"),
        "{refused:?}"
    );
    assert!((95..=100).contains(&held.len()), "{}", held.len());
    // Cache B takes clients; the API writes its store.
    let mut quiet = redis(port_b, &key_b);
    assert_eq!(quiet.cmd(&["SET", "k", "v"]), ok());
    let (status, _, body) = call(
        reqwest::Method::PATCH,
        &cache_url(&cp, "modest"),
        Some(json!({"tags": {"still": "writable"}})),
    );
    assert_eq!(status, 200, "{body}");
    // A's clients work, and a slot comes back when one leaves.
    assert_eq!(held[0].cmd(&["PING"]), Frame::Simple("PONG".into()));
    drop(held.pop());
    wait_until(
        "a slot of cache A to come back",
        Duration::from_secs(10),
        || {
            Conn::try_connect(port_a)
                .ok()
                .and_then(|mut c| c.call(&["AUTH", &key_a]))
                == Some(ok())
        },
    );
}
