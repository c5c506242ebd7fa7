//! Real client software against the node: the `redis` crate and redis-cli.

use std::process::Command;

use redis::AsyncCommands;

use crate::harness::Server;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn redis_crate_commands_pipelines_and_transactions() {
    let node = Server::cacheplane(&[]);
    runtime().block_on(async {
        let client = redis::Client::open(node.url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = con.set("greeting", "hello").await.unwrap();
        let v: String = con.get("greeting").await.unwrap();
        assert_eq!(v, "hello");
        let n: i64 = con.incr("counter", 5).await.unwrap();
        assert_eq!(n, 5);
        let _: () = con
            .hset_multiple("h", &[("a", "1"), ("b", "2")])
            .await
            .unwrap();
        let h: std::collections::HashMap<String, String> = con.hgetall("h").await.unwrap();
        assert_eq!(h.len(), 2);
        let _: () = con
            .zadd_multiple("z", &[(2.5, "b"), (1.0, "a")])
            .await
            .unwrap();
        let z: Vec<(String, f64)> = con.zrange_withscores("z", 0, -1).await.unwrap();
        assert_eq!(z, vec![("a".to_string(), 1.0), ("b".to_string(), 2.5)]);
        let (a, b): (i64, String) = redis::pipe()
            .incr("counter", 1)
            .get("greeting")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!((a, b.as_str()), (6, "hello"));
        let (x,): (i64,) = redis::pipe()
            .atomic()
            .incr("counter", 10)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(x, 16);
        let missing: Option<String> = con.get("nope").await.unwrap();
        assert_eq!(missing, None);
        let err = con.incr::<_, _, i64>("greeting", 1).await.unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");
    });
}

#[test]
fn redis_crate_resp3_and_pubsub() {
    let node = Server::cacheplane(&[]);
    runtime().block_on(async {
        let url = format!("{}?protocol=resp3", node.url());
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = con.sadd("s", &["x", "y"]).await.unwrap();
        let members: std::collections::HashSet<String> = con.smembers("s").await.unwrap();
        assert_eq!(members.len(), 2);
        let score: f64 = con.zincr("z", "m", 1.5).await.unwrap();
        assert_eq!(score, 1.5);

        let plain = redis::Client::open(node.url()).unwrap();
        let mut pubsub = plain.get_async_pubsub().await.unwrap();
        pubsub.subscribe("events").await.unwrap();
        let received: i64 = con.publish("events", "payload").await.unwrap();
        assert_eq!(received, 1);
        let msg = futures_next(&mut pubsub).await;
        assert_eq!(msg, "payload");
    });
}

async fn futures_next(pubsub: &mut redis::aio::PubSub) -> String {
    use futures_util::StreamExt;
    let msg = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        pubsub.on_message().next(),
    )
    .await
    .expect("message within 5s")
    .expect("stream open");
    msg.get_payload().unwrap()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed (run the README's test command)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn redis_cli_prints_the_same_as_for_redis_server() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let script: &[&[&str]] = &[
        &["set", "k", "v"],
        &["get", "k"],
        &["get", "missing"],
        &["rpush", "l", "a", "b", "c"],
        &["lrange", "l", "0", "-1"],
        &["lrange", "missing", "0", "-1"],
        &["zadd", "z", "1.5", "m", "2", "n"],
        &["zrange", "z", "0", "-1", "withscores"],
        &["incr", "k"],
        &["nosuch", "cmd"],
        &["hset", "h", "f", "v"],
        &["hgetall", "h"],
        &["exists", "k", "l"],
        &["ttl", "k"],
        &["ping"],
        &["type", "z"],
        &["--no-raw", "get", "k"],
        &["-3", "hgetall", "h"],
        &["-3", "zscore", "z", "m"],
        &["-3", "smembers", "missing"],
    ];
    for args in script {
        assert_eq!(
            cli(node.port, args),
            cli(redis.port, args),
            "redis-cli {args:?}"
        );
    }
}

#[test]
fn redis_cli_sees_command_count_and_info() {
    let node = Server::cacheplane(&[]);
    let count: usize = cli(node.port, &["command", "count"])
        .trim()
        .parse()
        .unwrap();
    assert!(count > 150, "{count}");
    assert!(cli(node.port, &["info", "server"]).contains("redis_version:7.0.15"));
}
