//! Differential tests: the same commands against real redis-server 7.0 and a cacheplane
//! node must get the same replies, errors included, byte for byte after parsing.

use resp::Frame;

use crate::harness::Server;

/// Commands whose reply order is unspecified: replies are compared sorted.
const UNORDERED: &[&str] = &[
    "smembers",
    "sunion",
    "sinter",
    "sdiff",
    "keys",
    "hkeys",
    "hvals",
    "srandmember",
];
/// Replies that are flat field/value pairs in unspecified order.
const UNORDERED_PAIRS: &[&str] = &["hgetall"];

fn normalize(cmd: &str, f: Frame) -> Frame {
    let cmd = cmd.to_ascii_lowercase();
    match f {
        Frame::Array(mut items) | Frame::Set(mut items) if UNORDERED.contains(&cmd.as_str()) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Frame::Array(items)
        }
        Frame::Array(items) if UNORDERED_PAIRS.contains(&cmd.as_str()) => {
            let mut pairs: Vec<Vec<Frame>> = items.chunks(2).map(|c| c.to_vec()).collect();
            pairs.sort_by_key(|p| format!("{p:?}"));
            Frame::Array(pairs.into_iter().flatten().collect())
        }
        Frame::Map(mut pairs) if UNORDERED_PAIRS.contains(&cmd.as_str()) => {
            pairs.sort_by_key(|p| format!("{p:?}"));
            Frame::Map(pairs)
        }
        other => other,
    }
}

fn words(line: &str) -> Vec<String> {
    resp::split_inline_args(line.as_bytes())
        .expect("valid script line")
        .iter()
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect()
}

/// Runs `script` (one inline command per line, `#` comments) on both servers and returns
/// the differences.
fn differences(script: &str, protocol3: bool) -> Vec<String> {
    let redis = Server::redis(&[]);
    let node = Server::cacheplane(&[]);
    let mut r = redis.conn();
    let mut n = node.conn();
    if protocol3 {
        r.cmd(&["HELLO", "3"]);
        n.cmd(&["HELLO", "3"]);
    }
    let mut diffs = Vec::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let args = words(line);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let want = normalize(&args[0], r.cmd(&refs));
        let got = normalize(&args[0], n.cmd(&refs));
        if want != got {
            diffs.push(format!(
                "{line}\n    redis:      {want:?}\n    cacheplane: {got:?}"
            ));
        }
    }
    diffs
}

fn assert_same(script: &str, protocol3: bool) {
    let diffs = differences(script, protocol3);
    assert!(
        diffs.is_empty(),
        "{} replies differ from redis-server:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

const STRINGS: &str = r#"
set k v
get k
get missing
set k v2 nx
set k v3 xx
get k
set n 10
incr n
incrby n 5
decr n
decrby n 3
incrby n notanumber
incr k
set big 9223372036854775807
incr big
decrby n -9223372036854775808
incrbyfloat f 1.5
incrbyfloat f 0.1
incrbyfloat f abc
append s hello
append s " world"
strlen s
strlen missing
getrange s 0 4
getrange s -5 -1
getrange s 5 1
getrange s -1 -5
getrange s 0 1000
setrange s 6 WORLD
get s
setrange pad 5 x
get pad
setrange s -1 x
getset s new
getdel s
getdel s
mset a 1 b 2 c 3
mget a b missing c
msetnx a 1 z 26
msetnx y 25 z 26
mset a
setnx a 1
setnx fresh 1
set e v ex 0
set e v px -5
set e v ex 10 px 10
set e v nx xx
set e v keepttl ex 10
set e v bogus
setex e 0 v
setex e notint v
psetex e 100000 v
set g old
set g new get
set nog new get
sadd aset m
set aset v get
get aset
set t v ex 100
ttl t
set t v2 keepttl
ttl t
set t v3
ttl t
getex t ex 100
ttl t
getex t persist
ttl t
getex t ex 10 px 10
getex missing
substr s 0 1
"#;

const KEYS: &str = r#"
mset a 1 b 2 c 3
del a b missing
exists a c c missing
type c
type missing
lpush l x
type l
expire c 100
ttl c
pttl missing
ttl l
expire c 100 nx
expire c 200 xx
expire c 50 gt
expire c 500 gt
expire c 1000 lt
expire c 10 lt
expire l 10 xx
expire l 10 gt
expire c 10 nx xx
expire c 10 gt lt
expire c 10 bogus
expire c notint
persist c
persist c
ttl c
expire c -1
exists c
expireat l 1
exists l
set e v
pexpireat e 99999999999999
expiretime e
pexpiretime e
expiretime missing
set r1 v
rename r1 r2
get r2
rename missing x
rename r2 r2
set r3 v
renamenx r2 r3
renamenx r2 r4
mset k1 1 k2 2 k3 3 other 4
keys k*
keys *1
keys nomatch*
keys k[12]
dbsize
select 1
set indb1 v
dbsize
select 0
move k1 1
move k1 1
move k2 0
move k2 99
select 1
get k1
select 16
select x
swapdb 0 1
dbsize
swapdb 0 99
swapdb x 1
copy k1 kc
get kc
copy k1 kc
copy k1 kc replace
copy k1 k1
copy missing kx
copy k1 kdb db 2
copy k1 kdb db 99
flushdb bogus
flushdb async
dbsize
unlink other missing
touch other
object encoding missing
set num 12345
object encoding num
set str abc
object encoding str
set long aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
object encoding long
rpush ol a
object encoding ol
sadd os 1 2 3
object encoding os
sadd os2 a
object encoding os2
hset oh f v
object encoding oh
zadd oz 1 a
object encoding oz
object bogus x
object encoding
flushall
dbsize
randomkey
scan notacursor
scan 0 count 0
scan 0 match
"#;

const HASHES: &str = r#"
hset h f1 v1 f2 v2
hset h f1 x
hget h f1
hget h nope
hget nohash f
hmset h f3 v3
hmget h f1 nope f3
hlen h
hlen missing
hstrlen h f1
hexists h f1
hexists h nope
hdel h f1 nope
hdel h f2 f3
exists h
hsetnx h a 1
hsetnx h a 2
hget h a
hincrby h a 10
hincrby h a x
hset h s str
hincrby h s 1
hincrbyfloat h fl 1.5
hincrbyfloat h fl 2.25
hincrbyfloat h s 1
hkeys h
hvals h
hgetall h
hgetall missing
hset h odd
set str v
hget str f
hset str f v
hrandfield missing
hrandfield missing 3
hincrby h big 9223372036854775807
hincrby h big 1
"#;

const LISTS: &str = r#"
rpush l a b c
lpush l z
lrange l 0 -1
lrange l 1 2
lrange l -2 -1
lrange l 5 10
lrange missing 0 -1
llen l
llen missing
lindex l 0
lindex l -1
lindex l 99
lset l 0 Z
lset l 99 x
lset missing 0 x
lpop l
rpop l
lpop l 5
exists l
lpop missing
lpop missing 2
rpop missing 0
lpop l -1
rpush l 1 2 3 1 2 3 1
lrem l 2 1
lrange l 0 -1
lrem l -1 3
lrange l 0 -1
lrem l 0 2
lrange l 0 -1
linsert l before 3 x
linsert l after 3 y
linsert l after nope y
linsert missing after 3 y
linsert l middle 3 y
lrange l 0 -1
ltrim l 1 -1
lrange l 0 -1
ltrim l 5 10
exists l
rpush p a b c a b c
lpos p a
lpos p a rank 2
lpos p a rank -1
lpos p a count 0
lpos p a count 1 rank 2
lpos p c maxlen 2
lpos p x
lpos p x count 2
lpos p a rank 0
lpos missing a
lpushx missing a
rpushx missing a
rpushx p d
rpush src 1 2 3
lmove src dst left right
lmove src dst right left
lmove src dst middle left
rpoplpush src dst
rpoplpush src dst
lrange dst 0 -1
exists src
lmpop 2 missing dst left count 2
lmpop 1 missing left
lmpop 0 x left
blpop dst 0.01
blpop missing 0.01
brpop missing -1
blpop missing notfloat
set s v
lpush s x
lrange s 0 -1
rpush dst2 x
lmove dst2 s left left
lrange dst2 0 -1
"#;

const SETS: &str = r#"
sadd s a b c
sadd s a d
scard s
scard missing
sismember s a
sismember s z
smismember s a z b
srem s a z
smembers s
smembers missing
sadd t c d e
sinter s t
sunion s t
sdiff s t
sinter s missing
sdiff missing s
sinterstore dest s t
smembers dest
sunionstore dest s t
sdiffstore dest s t
sinterstore dest s missing
exists dest
sintercard 2 s t
sintercard 2 s t limit 1
sintercard 0 s
sintercard 3 s t
smove s t b
smove s t nope
smove missing t a
smembers t
spop missing
spop missing 2
srandmember missing
srandmember missing 5
sadd one x
spop one
exists one
set str v
sadd str a
smembers str
sinter s str
sadd ints 3 1 2
srandmember ints 10
spop ints 0
"#;

const ZSETS: &str = r#"
zadd z 1 a 2 b 3 c
zadd z 1.5 a
zadd z nx 9 a 4 d
zadd z xx 9 a 5 e
zadd z ch 10 a 2 b
zadd z gt 1 a
zadd z lt 1 a
zadd z incr 2 a
zadd z incr 1 a 2 b
zadd z nx xx 1 a
zadd z gt lt 1 a
zadd z gt nx 1 a
zadd z x a
zadd z 1
zadd missing xx 1 a
exists missing
zadd z nx incr 1 a
zcard z
zscore z a
zscore z nope
zmscore z a nope b
zincrby z 0.5 b
zincrby z x b
zrank z a
zrank z nope
zrevrank z a
zrange z 0 -1
zrange z 0 -1 withscores
zrange z -2 -1 withscores
zrange z 0 -1 rev
zrange z (1 3 byscore
zrange z 3 (1 byscore rev withscores
zrange z -inf +inf byscore limit 1 2
zrange z 0 -1 limit 1 2
zrange z 0 -1 bylex withscores
zrevrange z 0 1 withscores
zrangebyscore z 2 3
zrangebyscore z (2 3 withscores
zrangebyscore z -inf +inf limit 0 2
zrangebyscore z x 1
zrevrangebyscore z +inf -inf
zrevrangebyscore z 3 2 withscores limit 0 1
zcount z -inf +inf
zcount z (2 3
zadd lex 0 a 0 b 0 c 0 d 0 e
zrangebylex lex - +
zrangebylex lex [b (d
zrangebylex lex (a [c limit 1 1
zrevrangebylex lex + -
zrevrangebylex lex [d (a
zrangebylex lex a b
zlexcount lex - +
zlexcount lex [b [c
zrangestore dst z 0 1
zrange dst 0 -1 withscores
zrangestore dst z 10 20
exists dst
zrem z a nope
zremrangebyrank lex 0 1
zrange lex 0 -1
zremrangebyscore z 2 2
zremrangebylex lex [c [d
zrange lex 0 -1
zadd p 1 a 2 b 3 c 4 d
zpopmin p
zpopmax p
zpopmin p 5
zpopmin missing
zpopmax missing 2
zpopmin p -1
zadd u1 1 a 2 b
zadd u2 2 b 3 c
sadd su b c
zunionstore out 2 u1 u2
zrange out 0 -1 withscores
zunionstore out 2 u1 u2 weights 2 3
zrange out 0 -1 withscores
zunionstore out 2 u1 u2 aggregate max
zrange out 0 -1 withscores
zinterstore out 2 u1 u2 aggregate min
zrange out 0 -1 withscores
zinterstore out 2 u1 su
zrange out 0 -1 withscores
zdiffstore out 2 u1 u2
zrange out 0 -1 withscores
zunion 2 u1 u2 withscores
zinter 2 u1 u2
zdiff 2 u1 u2 withscores
zintercard 2 u1 u2
zunionstore out 0 u1
zunionstore out 2 u1 u2 weights 1
zunionstore out 2 u1 u2 aggregate avg
zinterstore out 2 u1 missing
exists out
zmpop 1 u1 min
zmpop 2 missing u2 max count 5
zmpop 1 missing min
zrandmember missing
zrandmember missing 2
set str v
zadd str 1 a
zscore str a
zunionstore out 1 str
zadd inf 1 a
zincrby inf +inf a
zincrby inf -inf a
zadd big 1.1 a 0.3 b 1e20 c
zrange big 0 -1 withscores
zscore big a
zadd scores 0.1 x
zincrby scores 0.2 x
"#;

const SERVER: &str = r#"
ping
ping hello
echo hi
echo
dbsize extra
nosuchcommand a b
GET
multi
set a 1
get a
exec
exec
discard
multi
set a
nosuch
exec
multi
multi
discard
watch a
multi
watch b
discard
unwatch
select 0
auth pass
auth user pass
client getname
client setname "bad name"
client setname good
client getname
client bogus
config get maxclients
config set maxclients notanumber
config get nosuchparam
config set nosuchparam 1
time extra
lastsave extra
command count extra
debug sleep 0
publish ch msg
pubsub numsub ch
pubsub numpat
pubsub channels
"#;

#[test]
fn strings_match_redis() {
    assert_same(STRINGS, false);
}

#[test]
fn keys_match_redis() {
    assert_same(KEYS, false);
}

#[test]
fn hashes_match_redis() {
    assert_same(HASHES, false);
}

#[test]
fn lists_match_redis() {
    assert_same(LISTS, false);
}

#[test]
fn sets_match_redis() {
    assert_same(SETS, false);
}

#[test]
fn zsets_match_redis() {
    assert_same(ZSETS, false);
}

#[test]
fn zsets_match_redis_over_resp3() {
    assert_same(ZSETS, true);
}

#[test]
fn hashes_and_sets_match_redis_over_resp3() {
    assert_same(HASHES, true);
    assert_same(SETS, true);
}

#[test]
fn server_commands_match_redis() {
    assert_same(SERVER, false);
}

const GEO: &str = r#"
geoadd Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
geoadd Sicily nx 13.361389 38.115556 Palermo 12.758489 38.788135 edge1
geoadd Sicily xx ch 12 38 Palermo 1 1 nope
geoadd Sicily nx xx 1 1 a
geoadd Sicily 1 1
geoadd Sicily 200 100 bad
geoadd Sicily 1 notafloat bad
zscore Sicily Catania
geopos Sicily Palermo Catania missing
geopos missing a b
geohash Sicily Palermo Catania missing
geodist Sicily Palermo Catania
geodist Sicily Palermo Catania km
geodist Sicily Palermo Catania mi
geodist Sicily Palermo Catania ft
geodist Sicily Palermo Catania parsec
geodist Sicily Palermo missing
geodist missing a b
geodist Sicily a b km extra
geoadd Sicily 15.087269 37.502669 Catania 13.583333 37.316667 Agrigento 14.015482 37.513889 x1 15.2 37.6 x2 -0.1 51.5 London
geosearch Sicily fromlonlat 15 37 byradius 200 km asc
geosearch Sicily fromlonlat 15 37 byradius 200 km desc withcoord withdist withhash
geosearch Sicily fromlonlat 15 37 byradius 200 km
geosearch Sicily frommember Palermo bybox 400 400 km asc withdist
geosearch Sicily frommember Palermo byradius 100 km count 2 asc
geosearch Sicily frommember Palermo byradius 500 km count 2 any
geosearch Sicily frommember Palermo byradius 500 km any
geosearch Sicily frommember nosuch byradius 500 km
geosearch Sicily fromlonlat 15 37 frommember Palermo byradius 10 km
geosearch Sicily fromlonlat 15 37 byradius 10 km bybox 1 1 km
geosearch Sicily byradius 10 km
geosearch Sicily fromlonlat 15 37
geosearch Sicily fromlonlat 15 37 byradius -1 km
geosearch Sicily fromlonlat 15 37 byradius 1 lightyears
geosearch Sicily fromlonlat 15 37 bybox 1 -1 km
geosearch Sicily fromlonlat 15 37 byradius 200 km count 0
geosearch Sicily fromlonlat 15 37 byradius 200 km store dst
geosearch missing fromlonlat 15 37 byradius 200 km
geosearchstore dst Sicily fromlonlat 15 37 byradius 200 km asc count 3
zrange dst 0 -1 withscores
geosearchstore dst Sicily fromlonlat 15 37 byradius 200 km storedist
zrange dst 0 -1 withscores
geosearchstore dst Sicily fromlonlat 15 37 byradius 200 km withdist
geosearchstore dst missing fromlonlat 15 37 byradius 200 km
exists dst
georadius Sicily 15 37 200 km withdist asc
georadius Sicily 15 37 3000 km withcoord desc count 3
georadius Sicily 15 37 200 km store dst2
zrange dst2 0 -1 withscores
georadius Sicily 15 37 200 km storedist dst2
zrange dst2 0 -1 withscores
georadius_ro Sicily 15 37 200 km store dst3
georadiusbymember Sicily Palermo 200 km withdist
georadiusbymember Sicily nosuch 200 km
georadiusbymember_ro Sicily Agrigento 100 km withhash
georadiusbymember missing Palermo 200 km store dst4
set str x
geoadd str 1 1 a
geopos str a
geosearch str fromlonlat 1 1 byradius 1 km
"#;

const HLL: &str = r#"
pfadd h a b c foo bar
pfadd h a
pfcount h
get h
pfadd h2 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20
pfcount h h2
pfcount h missing
pfmerge h3 h h2
pfcount h3
pfdebug encoding h3
pfdebug decode h
pfdebug getreg missing
pfdebug nosuch h
pfdebug todense h
pfdebug todense h
pfdebug encoding h
pfdebug decode h
pfcount h
pfadd empty
pfcount empty
get empty
set s notanhll
pfadd s a
pfcount s
pfmerge s h
lpush l a
pfadd l a
pfcount l
set bad HYLL
pfcount bad
"#;

const BITS: &str = r#"
set s foobar
bitcount s
bitcount s 1 1
bitcount s 1 -2
bitcount s 5 30 bit
bitcount s -10 -3 bit
bitcount s 0 -1 nope
bitcount s 1
bitpos s 1
bitpos s 0
bitpos s 1 2
bitpos s 0 2 -1
bitpos s 1 7 15 bit
bitpos s 0 7 15 bit
bitpos s 1 100
bitpos s 2
bitpos s 1 0 -1 nope
bitpos missing 1
bitpos missing 0
bitfield ones set u24 0 16777215
bitpos ones 0
bitpos ones 0 0 -1
bitpos ones 0 0 -1 bit
bitpos ones 1 -1
set a abc
set b ?O
bitop and d a b
get d
bitop or d a b missing
get d
bitop xor d a b
get d
bitop not d a
get d
bitop not d a b
bitop nand d a b
bitop and d missing missing2
exists d
lpush l x
bitop or d a l
bitfield bf set i8 0 100 get i8 0 incrby i8 0 100
bitfield bf overflow sat incrby i8 0 100 overflow fail incrby i8 0 100 overflow wrap incrby i8 0 1
bitfield bf set u8 #1 255 get u8 #1 incrby u8 #1 10
bitfield bf overflow sat set u8 #2 -1 get u8 #2
bitfield bf overflow fail set u4 0 16 get u4 0
bitfield bf get i64 0 set i64 0 -9223372036854775808 incrby i64 0 -1
bitfield bf overflow sat incrby i64 0 -1 overflow sat incrby u63 64 -1 get u63 64
bitfield bf get u64 0
bitfield bf get i65 0
bitfield bf get x8 0
bitfield bf get u8 -1
bitfield bf get u8 4294967296
bitfield bf overflow nope get u8 0
bitfield bf incrby u8 0
bitfield bf bogus
bitfield bf
bitfield missing get u8 0
get bf
bitfield_ro bf get i8 0 get u16 3
bitfield_ro bf set i8 0 1
bitfield l get u8 0
setbit bits 7 1
bitfield bits incrby u2 100 1 overflow sat incrby u2 102 5
get bits
"#;

#[test]
fn geo_matches_redis() {
    assert_same(GEO, false);
}

#[test]
fn geo_matches_redis_over_resp3() {
    assert_same(GEO, true);
}

#[test]
fn hyperloglog_matches_redis() {
    assert_same(HLL, false);
}

#[test]
fn bit_commands_match_redis() {
    assert_same(BITS, false);
}

fn bytes_of(f: Frame) -> Vec<u8> {
    match f {
        Frame::Bulk(b) => b.to_vec(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

/// HyperLogLogs are strings in Redis's own layout: one built by either server counts the
/// same on the other (moved with DUMP/RESTORE), and the same PFADDs build the same bytes.
#[test]
fn hyperloglogs_move_between_redis_and_cacheplane() {
    let redis = Server::redis(&[]);
    let node = Server::cacheplane(&[]);
    let mut r = redis.conn();
    let mut n = node.conn();
    let sparse: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
    let dense: Vec<String> = (0..20_000).map(|i| format!("d{i}")).collect();
    for (key, members) in [("sparse", &sparse), ("dense", &dense)] {
        for chunk in members.chunks(1000) {
            let mut args = vec!["pfadd", key];
            args.extend(chunk.iter().map(String::as_str));
            r.cmd(&args);
            n.cmd(&args);
        }
        assert_eq!(
            bytes_of(r.cmd(&["get", key])),
            bytes_of(n.cmd(&["get", key])),
            "{key}: the same PFADDs build the same sketch"
        );
        let want = r.cmd(&["pfcount", key]);
        assert_eq!(n.cmd(&["pfcount", key]), want, "{key}");
        // Both ways through DUMP/RESTORE, then counted and extended on the other side.
        let from_redis = bytes_of(r.cmd(&["dump", key]));
        let moved = format!("{key}-from-redis");
        assert_eq!(
            n.cmd_bytes(&[b"restore", moved.as_bytes(), b"0", &from_redis]),
            Frame::Simple("OK".into())
        );
        assert_eq!(n.cmd(&["pfcount", &moved]), want, "{moved}");
        let from_node = bytes_of(n.cmd(&["dump", key]));
        let moved = format!("{key}-from-cacheplane");
        assert_eq!(
            r.cmd_bytes(&[b"restore", moved.as_bytes(), b"0", &from_node]),
            Frame::Simple("OK".into())
        );
        assert_eq!(r.cmd(&["pfcount", &moved]), want, "{moved}");
        for c in [&mut r, &mut n] {
            c.cmd(&["pfadd", key, "extra-1", "extra-2", "extra-3"]);
        }
        assert_eq!(
            bytes_of(r.cmd(&["get", key])),
            bytes_of(n.cmd(&["get", key]))
        );
    }
    for c in [&mut r, &mut n] {
        c.cmd(&["pfmerge", "union", "sparse", "dense"]);
    }
    assert_eq!(r.cmd(&["pfcount", "union"]), n.cmd(&["pfcount", "union"]));
    assert_eq!(
        bytes_of(r.cmd(&["get", "union"])),
        bytes_of(n.cmd(&["get", "union"]))
    );
}
