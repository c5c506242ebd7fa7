//! Keyspace notifications (`notify-keyspace-events`): the event classes, their letters as
//! CONFIG spells them, and the events the data commands raise.
//!
//! Commands record events in the keyspace ([`crate::Keyspace::notify`]) only when their
//! class is enabled; the node publishes them on `__keyspace@<db>__:<key>` and
//! `__keyevent@<db>__:<event>` after the command, so the keyspace stays free of pub/sub.

use crate::Str;

/// One class of events, or a set of them (bits).
pub type Classes = u16;

pub const KEYSPACE: Classes = 1 << 0;
pub const KEYEVENT: Classes = 1 << 1;
pub const GENERIC: Classes = 1 << 2;
pub const STRING: Classes = 1 << 3;
pub const LIST: Classes = 1 << 4;
pub const SET: Classes = 1 << 5;
pub const HASH: Classes = 1 << 6;
pub const ZSET: Classes = 1 << 7;
pub const EXPIRED: Classes = 1 << 8;
pub const EVICTED: Classes = 1 << 9;
pub const STREAM: Classes = 1 << 10;
pub const KEY_MISS: Classes = 1 << 11;
pub const MODULE: Classes = 1 << 12;
pub const NEW: Classes = 1 << 13;
/// What the letter `A` stands for (key misses and new keys are left out, as in Redis).
pub const ALL: Classes =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The letters in the order Redis prints them, after `A` (or the classes it covers).
const LETTERS: [(u8, Classes); 10] = [
    (b'g', GENERIC),
    (b'$', STRING),
    (b'l', LIST),
    (b's', SET),
    (b'h', HASH),
    (b'z', ZSET),
    (b'x', EXPIRED),
    (b'e', EVICTED),
    (b't', STREAM),
    (b'd', MODULE),
];

/// Parses a CONFIG value such as `KEA` or `Elg`; None for a letter that names no class.
pub fn parse(text: &[u8]) -> Option<Classes> {
    text.iter().try_fold(0, |acc, &c| {
        let class = match c {
            b'A' => ALL,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b'm' => KEY_MISS,
            b'n' => NEW,
            _ => LETTERS.iter().find(|(l, _)| *l == c)?.1,
        };
        Some(acc | class)
    })
}

/// The CONFIG GET spelling of `classes`, as Redis writes it (`AKE`, `gKE`, `$lshzxeKE`).
pub fn to_text(classes: Classes) -> String {
    let mut s = String::new();
    if classes & ALL == ALL {
        // Redis prints `n` only among the single letters, so after `A` it is not shown.
        s.push('A');
    } else {
        for (letter, class) in LETTERS.iter().chain(&[(b'n', NEW)]) {
            if classes & class != 0 {
                s.push(*letter as char);
            }
        }
    }
    for (letter, class) in [('K', KEYSPACE), ('E', KEYEVENT), ('m', KEY_MISS)] {
        if classes & class != 0 {
            s.push(letter);
        }
    }
    s
}

/// An event a command raised on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub class: Classes,
    pub name: &'static str,
    pub db: usize,
    pub key: Str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_as_redis_prints_them() {
        for (given, printed) in [
            ("gKE", "gKE"),
            ("$lshzxeKE", "$lshzxeKE"),
            ("KA", "AK"),
            ("EA", "AE"),
            ("", ""),
            ("Em", "Em"),
            ("En", "nE"),
        ] {
            assert_eq!(
                to_text(parse(given.as_bytes()).unwrap()),
                printed,
                "{given}"
            );
        }
        assert_eq!(parse(b"KEq"), None);
    }
}
