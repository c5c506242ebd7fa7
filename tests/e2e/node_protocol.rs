//! Malformed and oversize input: Redis's protocol errors, the connection closed, and
//! nothing else disturbed.

use resp::Frame;

use crate::harness::{Server, bulk, err_text, ok};

/// Sends `input` on a fresh connection and returns the error reply; the server must then
/// close that connection.
fn protocol_error(server: &Server, input: &[u8]) -> String {
    let mut c = server.conn();
    c.send_raw(input);
    let reply = c.read().expect("an error reply before the close");
    let text = err_text(&reply).to_string();
    assert!(c.is_closed(), "connection stays open after {text}");
    text
}

#[test]
fn malformed_requests_get_redis_protocol_errors_and_a_close() {
    let node = Server::cacheplane(&[]);
    let redis = Server::redis(&[]);
    let cases: &[&[u8]] = &[
        b"*x\r\n",
        b"*1\r\n+ok\r\n",
        b"*1\r\n$-3\r\n",
        b"*1\r\n$abc\r\n",
        b"*2\r\n$3\r\nget\r\n$999999999999\r\n",
        b"set \"unbalanced\r\n",
    ];
    for input in cases {
        assert_eq!(
            protocol_error(&node, input),
            protocol_error(&redis, input),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn oversize_inline_and_headers_are_refused() {
    let node = Server::cacheplane(&[]);
    let long_inline = vec![b'a'; 70 * 1024];
    assert_eq!(
        protocol_error(&node, &long_inline),
        "ERR Protocol error: too big inline request"
    );
    let mut long_header = b"*".to_vec();
    long_header.extend(vec![b'1'; 70 * 1024]);
    assert_eq!(
        protocol_error(&node, &long_header),
        "ERR Protocol error: too big mbulk count string"
    );
}

#[test]
fn proto_max_bulk_len_is_enforced() {
    let node = Server::cacheplane(&["--proto-max-bulk-len", "1mb"]);
    let err = protocol_error(&node, b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$2000000\r\n");
    assert_eq!(err, "ERR Protocol error: invalid bulk length");
    // A value just under the limit is stored whole.
    let mut c = node.conn();
    let value = "x".repeat(1024 * 1024 - 1);
    assert_eq!(c.cmd(&["SET", "k", &value]), ok());
    assert_eq!(c.cmd(&["STRLEN", "k"]), Frame::Integer(value.len() as i64));
}

#[test]
fn a_bad_client_does_not_disturb_others() {
    let node = Server::cacheplane(&[]);
    let mut good = node.conn();
    assert_eq!(good.cmd(&["SET", "k", "v"]), ok());
    protocol_error(&node, b"*1\r\n$-3\r\n");
    assert_eq!(good.cmd(&["GET", "k"]), bulk("v"));
}

#[test]
fn unauthenticated_clients_get_tight_limits() {
    let node = Server::cacheplane(&["--requirepass", "secret"]);
    let err = protocol_error(&node, b"*100\r\n");
    assert_eq!(err, "ERR Protocol error: unauthenticated multibulk length");
    let err = protocol_error(&node, b"*2\r\n$4\r\nAUTH\r\n$100000\r\n");
    assert_eq!(err, "ERR Protocol error: unauthenticated bulk length");
}

#[test]
fn pipelines_split_at_any_byte_are_served_in_order() {
    let node = Server::cacheplane(&[]);
    let mut c = node.conn();
    let mut input = Vec::new();
    for i in 0..200 {
        input.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$4\r\nk{i:03}\r\n$4\r\nv{i:03}\r\n").as_bytes(),
        );
    }
    input.extend_from_slice(b"DBSIZE\r\n");
    // Trickle it in small uneven pieces.
    for chunk in input.chunks(7) {
        c.send_raw(chunk);
    }
    for _ in 0..200 {
        assert_eq!(c.read(), Some(ok()));
    }
    assert_eq!(c.read(), Some(Frame::Integer(200)));
}
