//! Data-driven tests of the data commands: scripts of commands and the replies Redis 7.0
//! gives, run against a keyspace with no I/O.

use bytes::Bytes;
use resp::{Frame, Limits, Protocol, ReplyBuf};

use crate::{Ctx, Keyspace, lookup};

/// A reply in a compact text form: `"text"`, `:n`, `nil`, `-ERR ...`, `[a b]`.
fn render(f: &Frame) -> String {
    match f {
        Frame::Simple(s) => s.clone(),
        Frame::Error(e) => format!("-{e}"),
        Frame::Integer(n) => format!(":{n}"),
        Frame::Bulk(b) => format!("\"{}\"", String::from_utf8_lossy(b)),
        Frame::Null => "nil".into(),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            let inner: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", inner.join(" "))
        }
        Frame::Map(pairs) => {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{} {}", render(k), render(v)))
                .collect();
            format!("{{{}}}", inner.join(" "))
        }
        other => format!("{other:?}"),
    }
}

/// Runs each command (words split on spaces) and compares its rendered reply.
fn check(script: &[(&str, &str)]) {
    let mut ks = Keyspace::new(1);
    for (line, want) in script {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let spec = lookup(&args[0]).unwrap_or_else(|| panic!("unknown command in {line}"));
        let mut out = ReplyBuf::new(Protocol::Resp2);
        let mut ctx = Ctx::new(&mut ks, 0, &mut out);
        if let Err(e) = crate::execute(spec, &mut ctx, &args) {
            out.error(&e.to_string());
        }
        let bytes = out.take();
        let (frame, _) = Frame::parse(&bytes, &Limits::default())
            .expect("well-formed reply")
            .expect("whole reply");
        assert_eq!(render(&frame), *want, "{line}");
    }
}

#[test]
fn sort_orders_numbers_strings_and_patterns() {
    check(&[
        ("rpush l 3 1 2 10", ":4"),
        ("sort l", "[\"1\" \"2\" \"3\" \"10\"]"),
        ("sort l desc limit 1 2", "[\"3\" \"2\"]"),
        ("sort l alpha", "[\"1\" \"10\" \"2\" \"3\"]"),
        ("mset w_1 40 w_2 30 w_3 20 w_10 10", "OK"),
        ("sort l by w_*", "[\"10\" \"3\" \"2\" \"1\"]"),
        ("sort l by nosort desc", "[\"10\" \"2\" \"1\" \"3\"]"),
        ("hset h_1 f a", ":1"),
        (
            "sort l get # get h_*->f limit 0 2",
            "[\"1\" \"a\" \"2\" nil]",
        ),
        ("sort l store dst", ":4"),
        ("lrange dst 0 -1", "[\"1\" \"2\" \"3\" \"10\"]"),
        ("sort_ro l store dst", "-ERR syntax error"),
        ("rpush bad x", ":1"),
        (
            "sort bad",
            "-ERR One or more scores can't be converted into double",
        ),
        ("sort missing store dst", ":0"),
        ("exists dst", ":0"),
        (
            "sort w_1",
            "-WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
    ]);
}

#[test]
fn bits_and_lcs() {
    check(&[
        ("setbit b 1 1", ":0"),
        ("setbit b 1 1", ":1"),
        ("getbit b 1", ":1"),
        ("getbit b 100", ":0"),
        ("get b", "\"@\""),
        (
            "setbit b -1 1",
            "-ERR bit offset is not an integer or out of range",
        ),
        ("setbit b 0 2", "-ERR bit is not an integer or out of range"),
        ("set s foobar", "OK"),
        ("bitcount s", ":26"),
        ("bitcount s 1 1", ":6"),
        ("bitcount s 5 30 bit", ":17"),
        ("bitcount s 0", "-ERR syntax error"),
        ("set a ohmytext", "OK"),
        ("set c mynewtext", "OK"),
        ("lcs a c", "\"mytext\""),
        ("lcs a c len", ":6"),
        (
            "lcs a c idx minmatchlen 4 withmatchlen",
            "[\"matches\" [[[:4 :7] [:5 :8] :4]] \"len\" :6]",
        ),
        (
            "lcs a c len idx",
            "-ERR If you want both the length and indexes, please just use IDX.",
        ),
        ("lcs a l", "\"\""),
        ("rpush l x", ":1"),
        (
            "lcs a l",
            "-ERR The specified keys must contain string values",
        ),
    ]);
}

#[test]
fn random_counts_and_moves_like_redis() {
    check(&[
        ("sadd s a", ":1"),
        (
            "srandmember s -9223372036854775808",
            "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ),
        ("hset h a 1", ":1"),
        (
            "hrandfield h -9223372036854770000 withvalues",
            "-ERR value is out of range",
        ),
        ("hrandfield h -2 withvalues", "[\"a\" \"1\" \"a\" \"1\"]"),
        ("hincrbyfloat h a +inf", "-ERR value is NaN or Infinity"),
        ("set str x", "OK"),
        ("lmove nolist str left left", "nil"),
        ("rpush src a", ":1"),
        (
            "lmove src str left left",
            "-WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        ("lrange src 0 -1", "[\"a\"]"),
        (
            "zintercard 0 k",
            "-ERR at least 1 input key is needed for 'zintercard' command",
        ),
    ]);
}
