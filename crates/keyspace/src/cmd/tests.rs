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
        assert_eq!(run(&mut ks, line), *want, "{line}");
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

#[test]
fn streams_add_range_trim_and_report_errors_like_redis() {
    check(&[
        ("xadd s 1-1 a 1", "\"1-1\""),
        ("xadd s 1-* b 2", "\"1-2\""),
        (
            "xadd s 1-1 c 3",
            "-ERR The ID specified in XADD is equal or smaller than the target stream top item",
        ),
        (
            "xadd s 0-0 c 3",
            "-ERR The ID specified in XADD must be greater than 0-0",
        ),
        (
            "xadd s nomkstream",
            "-ERR wrong number of arguments for 'xadd' command",
        ),
        ("xadd t nomkstream 5 a 1", "nil"),
        (
            "xadd s maxlen ~ 1 limit 5 minid 1 3 a 1",
            "-ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
        ),
        (
            "xadd s maxlen 1 limit 5 3 a 1",
            "-ERR syntax error, LIMIT cannot be used without the special ~ option",
        ),
        (
            "xadd s 2-x a 1",
            "-ERR Invalid stream ID specified as stream command argument",
        ),
        ("xadd s 3 c 3", "\"3-0\""),
        (
            "xrange s - + count 2",
            "[[\"1-1\" [\"a\" \"1\"]] [\"1-2\" [\"b\" \"2\"]]]",
        ),
        ("xrevrange s + (1-2", "[[\"3-0\" [\"c\" \"3\"]]]"),
        (
            "xrange s (18446744073709551615-18446744073709551615 +",
            "-ERR invalid start ID for the interval",
        ),
        ("xrange s - + count 0", "nil"),
        ("xlen s", ":3"),
        ("xdel s 1-2 9-9", ":1"),
        ("xtrim s minid 3", ":1"),
        ("xtrim s foo 1", "-ERR syntax error"),
        (
            "xinfo stream s",
            "[\"length\" :1 \"radix-tree-keys\" :1 \"radix-tree-nodes\" :2 \"last-generated-id\" \"3-0\" \"max-deleted-entry-id\" \"1-2\" \"entries-added\" :3 \"recorded-first-entry-id\" \"3-0\" \"groups\" :0 \"first-entry\" [\"3-0\" [\"c\" \"3\"]] \"last-entry\" [\"3-0\" [\"c\" \"3\"]]]",
        ),
        ("type s", "stream"),
        ("set str x", "OK"),
        (
            "xadd str * a 1",
            "-WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        (
            "xsetid s 2-0",
            "-ERR The ID specified in XSETID is smaller than the target stream top item",
        ),
        ("xsetid s 5-0 entriesadded 9 maxdeletedid 4-0", "OK"),
        (
            "xadd s 5-0 a 1",
            "-ERR The ID specified in XADD is equal or smaller than the target stream top item",
        ),
    ]);
}

#[test]
fn stream_groups_deliver_claim_and_acknowledge() {
    check(&[
        (
            "xgroup create s g $",
            "-ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ),
        ("xgroup create s g $ mkstream", "OK"),
        (
            "xgroup create s g $",
            "-BUSYGROUP Consumer Group name already exists",
        ),
        ("xadd s 1 f 1", "\"1-0\""),
        ("xadd s 2 f 2", "\"2-0\""),
        (
            "xreadgroup group g alice count 1 streams s >",
            "[[\"s\" [[\"1-0\" [\"f\" \"1\"]]]]]",
        ),
        (
            "xreadgroup group g bob streams s >",
            "[[\"s\" [[\"2-0\" [\"f\" \"2\"]]]]]",
        ),
        ("xreadgroup group g bob streams s >", "nil"),
        (
            "xreadgroup group g alice streams s 0",
            "[[\"s\" [[\"1-0\" [\"f\" \"1\"]]]]]",
        ),
        (
            "xreadgroup group nope alice streams s >",
            "-NOGROUP No such key 's' or consumer group 'nope' in XREADGROUP with GROUP option",
        ),
        (
            "xreadgroup group g alice streams s $",
            "-ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
        ),
        (
            "xpending s g",
            "[:2 \"1-0\" \"2-0\" [[\"alice\" \"1\"] [\"bob\" \"1\"]]]",
        ),
        ("xclaim s g carol 0 1-0 justid", "[\"1-0\"]"),
        ("xpending s g - + 10 carol", "[[\"1-0\" \"carol\" :0 :2]]"),
        (
            "xautoclaim s g dave 0 0 count 1",
            "[\"2-0\" [[\"1-0\" [\"f\" \"1\"]]] []]",
        ),
        ("xdel s 2-0", ":1"),
        (
            "xautoclaim s g dave 0 0",
            "[\"0-0\" [[\"1-0\" [\"f\" \"1\"]]] [\"2-0\"]]",
        ),
        ("xack s g 1-0 1-0", ":1"),
        ("xgroup delconsumer s g dave", ":0"),
        ("xgroup createconsumer s g erin", ":1"),
        (
            "xinfo groups s",
            "[[\"name\" \"g\" \"consumers\" :4 \"pending\" :0 \"last-delivered-id\" \"2-0\" \"entries-read\" :2 \"lag\" :0]]",
        ),
        ("xgroup destroy s g", ":1"),
        (
            "xgroup foo s g",
            "-ERR unknown subcommand 'foo'. Try XGROUP HELP.",
        ),
        (
            "xinfo stream s full count",
            "-ERR unknown subcommand or wrong number of arguments for 'stream'. Try XINFO HELP.",
        ),
    ]);
}

/// What reaches the feed (AOF, replicas) for each command.
fn feed_of(script: &[&str]) -> Vec<String> {
    let mut ks = Keyspace::new(1);
    ks.set_feed(true);
    ks.set_clock(1000);
    let mut logged = Vec::new();
    for line in script {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let spec = lookup(&args[0]).expect("known command");
        let mut out = ReplyBuf::new(Protocol::Resp2);
        let mut ctx = Ctx::new(&mut ks, 0, &mut out);
        let _ = crate::execute(spec, &mut ctx, &args);
        for (_, cmd) in ks.drain_feed() {
            let words: Vec<String> = cmd
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            logged.push(words.join(" "));
        }
    }
    logged
}

#[test]
fn stream_effects_are_logged_as_redis_propagates_them() {
    assert_eq!(
        feed_of(&[
            "xadd s maxlen ~ 5 * a 1",
            "xadd s 1000-* b 2",
            "xgroup create s g 0",
            "xreadgroup group g alice streams s >",
            "xreadgroup group g alice streams s 0",
            "xread streams s 0",
            "xadd s 2000 c 3",
            "xreadgroup group g bob noack streams s >",
        ]),
        vec![
            "xadd s maxlen = 1 1000-0 a 1",
            "xadd s 1000-1 b 2",
            "xgroup create s g 0",
            "MULTI",
            "XCLAIM s g alice 0 1000-0 TIME 1000 RETRYCOUNT 1 FORCE JUSTID LASTID 1000-0",
            "XCLAIM s g alice 0 1000-1 TIME 1000 RETRYCOUNT 1 FORCE JUSTID LASTID 1000-1",
            "EXEC",
            "xadd s 2000-0 c 3",
            "MULTI",
            "XGROUP CREATECONSUMER s g bob",
            "XGROUP SETID s g 2000-0 ENTRIESREAD 3",
            "EXEC",
        ]
    );
}

#[test]
fn replays_apply_logged_stream_effects_as_written() {
    let mut ks = Keyspace::new(1);
    for (line, want) in [
        // Redis logs LIMIT with the exact bound; only a replay accepts that.
        ("xadd s maxlen = 1 limit 100 5-0 a 1", "$3\r\n5-0\r\n"),
        ("xgroup create s g 0", "+OK\r\n"),
        // A logged delivery time later than the replay's clock stays as logged.
        (
            "xclaim s g c 0 5-0 time 1700000000000 retrycount 2 force justid lastid 5-0",
            "*1\r\n$3\r\n5-0\r\n",
        ),
        (
            "xpending s g - + 1",
            "*1\r\n*4\r\n$3\r\n5-0\r\n$1\r\nc\r\n:0\r\n:2\r\n",
        ),
    ] {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let mut out = ReplyBuf::new(Protocol::Resp2);
        let mut ctx = Ctx::new(&mut ks, 0, &mut out);
        ctx.replaying = true;
        ctx.in_multi = true;
        if let Err(e) = crate::execute(lookup(&args[0]).unwrap(), &mut ctx, &args) {
            out.error(&e.to_string());
        }
        assert_eq!(String::from_utf8_lossy(&out.take()), want, "{line}");
    }
    let Some(crate::Value::Stream(s)) = ks.lookup(0, b"s") else {
        panic!("stream")
    };
    let g = &s.groups[b"g".as_slice()];
    assert_eq!(
        g.pel[&crate::StreamId::new(5, 0)].delivery_time_ms,
        1_700_000_000_000
    );
}

/// Runs one command line (words split on spaces) against `ks`.
fn run(ks: &mut Keyspace, line: &str) -> String {
    let args: Vec<Bytes> = line
        .split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    let spec = lookup(&args[0]).unwrap_or_else(|| panic!("unknown command in {line}"));
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let mut ctx = Ctx::new(ks, 0, &mut out);
    if let Err(e) = crate::execute(spec, &mut ctx, &args) {
        out.error(&e.to_string());
    }
    let bytes = out.take();
    let (frame, _) = Frame::parse(&bytes, &Limits::default())
        .expect("well-formed reply")
        .expect("whole reply");
    render(&frame)
}

#[test]
fn memory_accounting_follows_every_kind_of_change() {
    let long = "x".repeat(100);
    let script = [
        "set s short".to_string(),
        format!("set s {long}"),
        format!("append s {long}"),
        "setrange s 500 y".into(),
        "incr n".into(),
        "incrbyfloat f 1.5".into(),
        "setbit b 10000 1".into(),
        "setbit b 5 1".into(),
        "setbit b 5 0".into(),
        // Changes nothing: the string must keep its form, or its size goes unmeasured.
        "set sb abc".into(),
        "setbit sb 0 0".into(),
        format!("set sh {long}"),
        "setbit sh 0 0".into(),
        "pfadd h a b c d e f".into(),
        format!("rpush l a b {long} {long} c"),
        format!("lpush l {long}"),
        "lpop l 2".into(),
        format!("lset l 0 {long}{long}"),
        "linsert l before c zz".into(),
        "ltrim l 0 2".into(),
        "rpoplpush l l2".into(),
        format!("hset hh f1 v1 f2 {long}"),
        format!("hset hh f1 {long}{long}"),
        "hincrby hh n 5".into(),
        "hdel hh f2".into(),
        format!("sadd st a b {long} 1 2 3"),
        "srem st a".into(),
        "spop st".into(),
        "sinterstore st2 st st".into(),
        format!("zadd z 1 a 2 {long} 3 c"),
        "zincrby z 5 a".into(),
        "zrem z c".into(),
        "zunionstore z2 1 z".into(),
        format!("xadd x 1-1 f {long} g v"),
        "xadd x 2-1 f v".into(),
        "xread count 1 streams x 0".into(),
        "xrange x - +".into(),
        "xgroup create x g 0".into(),
        "xreadgroup group g c count 1 streams x >".into(),
        "xdel x 1-1".into(),
        "xtrim x maxlen 0".into(),
        "geoadd geo 13.361389 38.115556 palermo".into(),
        "sort l alpha store sorted".into(),
        "rename s s2".into(),
        "copy s2 s3".into(),
        "expire s3 100".into(),
        "persist s3".into(),
        "getdel s3".into(),
        "move s2 0".into(),
        "del l l2 hh".into(),
        "unlink st st2".into(),
        "set s4 v ex 100".into(),
        format!("set s4 {long} keepttl"),
        "getex s4 persist".into(),
        "flushdb".into(),
        format!("set after {long}"),
    ];
    let mut ks = Keyspace::new(1);
    ks.set_clock(1_800_000_000_000);
    for line in &script {
        run(&mut ks, line);
        for (used, recomputed) in ks.audit_bytes() {
            assert_eq!(used, recomputed, "after {line}");
        }
    }
    assert!(ks.dataset_bytes() > 64 + 128);
}

#[test]
fn strings_changed_in_place_are_raw_as_in_redis() {
    let mut ks = Keyspace::new(1);
    run(&mut ks, "append a 12");
    assert_eq!(run(&mut ks, "object encoding a"), "\"int\"");
    for (line, reply) in [
        ("append a 3", ":3"),
        ("setrange b 0 x", ":1"),
        ("setbit c 0 0", ":0"),
        ("set d 12", "OK"),
        ("setbit d 0 1", ":0"),
    ] {
        assert_eq!(run(&mut ks, line), reply, "{line}");
    }
    assert_eq!(run(&mut ks, "get a"), "\"123\"");
    for key in ["a", "b", "c", "d"] {
        assert_eq!(run(&mut ks, &format!("object encoding {key}")), "\"raw\"");
    }
    // INCR stores a fresh integer again.
    assert_eq!(run(&mut ks, "incr a"), ":124");
    assert_eq!(run(&mut ks, "object encoding a"), "\"int\"");
}

#[test]
fn reads_count_nothing_and_leave_idle_keys_alone() {
    let mut ks = Keyspace::new(1);
    let t = 1_800_000_000_000;
    ks.set_clock(t);
    ks.eviction.policy = crate::memory::Policy::AllKeysLru;
    run(&mut ks, "set k v");
    let before = ks.dataset_bytes();
    ks.set_clock(t + 30_000);
    for line in ["ttl k", "type k", "exists k", "object encoding k"] {
        run(&mut ks, line);
    }
    assert_eq!(run(&mut ks, "object idletime k"), ":30");
    assert_eq!(run(&mut ks, "get k"), "\"v\"");
    assert_eq!(run(&mut ks, "object idletime k"), ":0");
    assert_eq!(ks.dataset_bytes(), before);
    assert!(run(&mut ks, "object freq k").starts_with("-ERR An LFU"));
}

/// A keyspace with `cold` keys set at `t` and `hot` keys read again 100 s later.
fn aged(policy: crate::memory::Policy, cold: usize, hot: usize, ttl: bool) -> Keyspace {
    let mut ks = Keyspace::new(1);
    let t = 1_800_000_000_000;
    ks.set_clock(t);
    ks.eviction.policy = policy;
    // Every read increments a hot key's LFU counter.
    ks.eviction.lfu_log_factor = 0;
    let ex = if ttl { " ex 1000" } else { "" };
    for i in 0..cold {
        run(&mut ks, &format!("set cold{i} v{ex}"));
    }
    for i in 0..hot {
        run(&mut ks, &format!("set hot{i} v{ex}"));
    }
    ks.set_clock(t + 100_000);
    for i in 0..hot {
        for _ in 0..20 {
            run(&mut ks, &format!("get hot{i}"));
        }
    }
    ks
}

#[test]
fn lru_and_lfu_evict_the_keys_not_used() {
    use crate::memory::Policy;
    for policy in [Policy::AllKeysLru, Policy::AllKeysLfu, Policy::VolatileLru] {
        let mut ks = aged(policy, 90, 10, true);
        ks.set_feed(true);
        let bytes = ks.dataset_bytes();
        assert_eq!(ks.evict(bytes / 5), crate::Evicted::Enough, "{policy:?}");
        let evicted = ks.stats.evicted_keys;
        assert!(evicted >= 15, "{policy:?}: {evicted}");
        for i in 0..10 {
            assert_eq!(run(&mut ks, &format!("exists hot{i}")), ":1", "{policy:?}");
        }
        // Each eviction is logged as a DEL for the AOF.
        let dels = ks.drain_feed().filter(|(_, a)| a[0] == "DEL").count();
        assert_eq!(dels as u64, evicted);
    }
}

#[test]
fn volatile_policies_keep_keys_without_a_deadline() {
    use crate::memory::Policy;
    for policy in [
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
    ] {
        let mut ks = aged(policy, 0, 0, false);
        for i in 0..20 {
            run(&mut ks, &format!("set keep{i} v"));
            run(&mut ks, &format!("set go{i} v px {}", 1000 + i));
        }
        assert_eq!(ks.evict(usize::MAX), crate::Evicted::Stuck, "{policy:?}");
        assert_eq!(ks.stats.evicted_keys, 20, "{policy:?}");
        assert_eq!(run(&mut ks, "dbsize"), ":20");
        assert_eq!(run(&mut ks, "exists keep0 keep19"), ":2");
    }
    let mut ks = aged(Policy::VolatileTtl, 0, 0, false);
    run(&mut ks, "set later v ex 500");
    run(&mut ks, "set sooner v ex 5");
    assert_eq!(ks.evict(1), crate::Evicted::Enough);
    assert_eq!(run(&mut ks, "exists sooner later"), ":1");
    assert_eq!(run(&mut ks, "exists later"), ":1");
    let mut ks = aged(Policy::NoEviction, 5, 0, false);
    assert_eq!(ks.evict(1), crate::Evicted::Stuck);
}

#[test]
fn deadlines_keep_their_value_whether_or_not_access_bits_fit() {
    let mut ks = Keyspace::new(1);
    let t = 1_800_000_000_000u64;
    ks.set_clock(t);
    ks.eviction.policy = crate::memory::Policy::AllKeysLru;
    for at in [
        t + 1,
        t + 86_400_000 * 365 * 20,
        (1u64 << 62) - 1,
        5_000_000_000_000,
    ] {
        run(&mut ks, "set k v");
        assert_eq!(run(&mut ks, &format!("pexpireat k {at}")), ":1");
        assert_eq!(run(&mut ks, "pexpiretime k"), format!(":{at}"));
        run(&mut ks, "persist k");
        assert_eq!(run(&mut ks, "pttl k"), ":-1");
    }
    run(&mut ks, "pexpireat k 9223372036854770000");
    assert_eq!(
        run(&mut ks, "pexpiretime k"),
        format!(":{}", crate::DEADLINE_MAX_MS)
    );
    // Access bits survive a deadline being set.
    run(&mut ks, "set a v");
    ks.set_clock(t + 7_000);
    run(&mut ks, "expire a 100");
    ks.set_clock(t + 9_000);
    assert_eq!(run(&mut ks, "object idletime a"), ":2");
}
