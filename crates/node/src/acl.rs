//! Access control lists (ACL): users, their passwords and what each may run, read and
//! publish, with Redis 7.0's rule language (`on >secret ~app:* &news +@read -keys`).
//!
//! I/O-free: the node keeps the [`Users`] in its state, checks every command of a client
//! signed in as a user other than an unrestricted default ([`User::check`]), and runs the
//! ACL command here ([`acl_command`]). The `default` user's password is the node's
//! `requirepass` (managed caches: the access keys), so it is not kept here.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use keyspace::{CmdError, Spec, flags};
use resp::ReplyBuf;
use sha2::{Digest, Sha256};

/// Bytes ACL GENPASS draws by default (Redis's 256 bits).
const GENPASS_BITS_DEFAULT: u64 = 256;
/// The most ACL GENPASS hands out (Redis's limit).
const GENPASS_BITS_MAX: u64 = 4096;

/// The categories a command belongs to, from its flags and its group (ACL CAT, +@cat).
pub fn categories(spec: &Spec) -> Vec<&'static str> {
    let mut cats = vec![group(spec.name)];
    let by_flag = [
        (flags::WRITE, "write"),
        (flags::READONLY, "read"),
        (flags::ADMIN, "admin"),
        (flags::PUBSUB, "pubsub"),
        (flags::BLOCKING, "blocking"),
    ];
    cats.extend(by_flag.iter().filter(|(f, _)| spec.is(*f)).map(|(_, c)| *c));
    cats.push(if spec.is(flags::FAST) { "fast" } else { "slow" });
    let dangerous = matches!(
        spec.name,
        "keys" | "flushdb" | "flushall" | "sort" | "sort_ro" | "migrate" | "restore" | "swapdb"
    );
    if spec.is(flags::ADMIN) || dangerous {
        cats.push("dangerous");
    }
    cats.dedup();
    cats
}

/// Every category name (ACL CAT).
const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The data type or area a command belongs to.
fn group(name: &str) -> &'static str {
    match name {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" | "script"
        | "function" => "scripting",
        "multi" | "exec" | "discard" | "watch" | "unwatch" => "transaction",
        "auth" | "hello" | "ping" | "echo" | "select" | "quit" | "reset" | "client" => "connection",
        "publish" | "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "pubsub"
        | "spublish" | "ssubscribe" | "sunsubscribe" => "pubsub",
        "setbit" | "getbit" | "bitcount" | "bitpos" | "bitop" | "bitfield" | "bitfield_ro" => {
            "bitmap"
        }
        "get" | "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "getex" | "mget"
        | "mset" | "msetnx" | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" | "append"
        | "strlen" | "getrange" | "setrange" | "substr" | "lcs" => "string",
        "sadd" | "srem" | "smembers" | "sismember" | "smismember" | "scard" | "spop"
        | "srandmember" | "smove" | "sinter" | "sunion" | "sdiff" | "sinterstore"
        | "sunionstore" | "sdiffstore" | "sintercard" | "sscan" => "set",
        "lpush" | "rpush" | "lpushx" | "rpushx" | "lpop" | "rpop" | "llen" | "lindex" | "lset"
        | "lrange" | "ltrim" | "lrem" | "linsert" | "lpos" | "lmove" | "rpoplpush" | "blpop"
        | "brpop" | "blmove" | "brpoplpush" | "lmpop" | "blmpop" => "list",
        "del" | "unlink" | "exists" | "type" | "expire" | "pexpire" | "expireat" | "pexpireat"
        | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "persist" | "rename" | "renamenx"
        | "keys" | "scan" | "randomkey" | "dbsize" | "flushdb" | "flushall" | "swapdb" | "move"
        | "copy" | "touch" | "object" | "dump" | "restore" | "sort" | "sort_ro" => "keyspace",
        n if n.starts_with("geo") => "geo",
        n if n.starts_with("pf") => "hyperloglog",
        n if n.starts_with('x') => "stream",
        n if n.starts_with('z') || n.starts_with("bz") => "sortedset",
        n if n.starts_with('h') && n != "hello" => "hash",
        _ => "server",
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Command,
    /// The position of the key's argument.
    Key(usize),
    /// The position of the channel's argument.
    Channel(usize),
}

impl Denied {
    /// The reason inside a script's error ("The user executing the script ...").
    pub fn script_text(self) -> &'static str {
        match self {
            Denied::Command => "can't run this command or subcommand",
            Denied::Key(_) => {
                "can't access at least one of the keys mentioned in the command arguments"
            }
            Denied::Channel(_) => "can't publish to the channel mentioned in the command",
        }
    }

    /// The error reply, as Redis words it.
    pub fn reply(self, full_name: &str) -> String {
        match self {
            Denied::Command => {
                format!("NOPERM this user has no permissions to run the '{full_name}' command")
            }
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denied::Channel(_) => "NOPERM this user has no permissions to access one of the channels used as arguments".into(),
        }
    }
}

/// A key pattern and the access it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    glob: Bytes,
    read: bool,
    write: bool,
}

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    nopass: bool,
    /// SHA-256 of each password, hex.
    passwords: BTreeSet<String>,
    /// Commands allowed by name, and `command|subcommand` pairs allowed on their own.
    commands: BTreeSet<&'static str>,
    subcommands: BTreeSet<String>,
    /// The command rules as given (ACL LIST, GETUSER), compacted at +@all / -@all.
    command_rules: Vec<String>,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    all_channels: bool,
    channels: Vec<Bytes>,
}

impl User {
    /// A new user: off, no passwords, no commands, keys or channels.
    fn new(name: &str) -> User {
        User {
            name: name.into(),
            enabled: false,
            nopass: false,
            passwords: BTreeSet::new(),
            commands: BTreeSet::new(),
            subcommands: BTreeSet::new(),
            command_rules: vec!["-@all".into()],
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    /// The default user as Redis 7.0 starts it: on, nopass, ~* &* +@all.
    fn default_user() -> User {
        let mut u = User::new("default");
        for rule in ["on", "nopass", "allkeys", "allchannels", "+@all"] {
            u.apply(rule.as_bytes()).expect("valid built-in rules");
        }
        u
    }

    /// Whether the user may run anything on anything (the fast path: no checks).
    pub fn unrestricted(&self) -> bool {
        self.all_keys && self.all_channels && self.command_rules == ["+@all"]
    }

    /// Whether `password` opens this user (its own passwords; `default`'s is requirepass).
    pub fn accepts(&self, password: &[u8]) -> bool {
        self.enabled && (self.nopass || self.passwords.contains(&sha256_hex(password)))
    }

    /// Applies one ACL SETUSER rule.
    fn apply(&mut self, rule: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(rule).into_owned();
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" | "~*" => {
                self.all_keys = true;
                self.keys.clear();
            }
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            "allchannels" | "&*" => {
                self.all_channels = true;
                self.channels.clear();
            }
            "resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            "allcommands" | "+@all" => self.allow_all(true),
            "nocommands" | "-@all" => self.allow_all(false),
            "reset" => {
                *self = User::new(&self.name);
            }
            _ => return self.apply_prefixed(rule, &text),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &[u8], text: &str) -> Result<(), String> {
        let rest = &rule[1..];
        match rule[0] {
            b'>' => {
                self.passwords.insert(sha256_hex(rest));
                self.nopass = false;
            }
            b'<' => {
                if !self.passwords.remove(&sha256_hex(rest)) {
                    return Err("no such password".into());
                }
            }
            b'#' | b'!' => {
                let hash = String::from_utf8_lossy(rest).into_owned();
                let valid = hash.len() == 64
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !valid {
                    return Err("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters".into());
                }
                if rule[0] == b'#' {
                    self.passwords.insert(hash);
                    self.nopass = false;
                } else if !self.passwords.remove(&hash) {
                    return Err("no such password".into());
                }
            }
            b'~' => self.add_keys(rest, true, true),
            b'%' => {
                let (perms, glob) = match rest.iter().position(|&b| b == b'~') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => return Err("Syntax error".into()),
                };
                let (mut read, mut write) = (false, false);
                for p in perms {
                    match p.to_ascii_uppercase() {
                        b'R' => read = true,
                        b'W' => write = true,
                        _ => return Err("Syntax error".into()),
                    }
                }
                if perms.is_empty() {
                    return Err("Syntax error".into());
                }
                self.add_keys(glob, read, write);
            }
            b'&' => {
                if !self.all_channels {
                    self.channels.push(Bytes::copy_from_slice(rest));
                }
            }
            b'+' | b'-' => self.apply_command_rule(rule[0] == b'+', &text[1..])?,
            _ => return Err("Syntax error".into()),
        }
        Ok(())
    }

    fn add_keys(&mut self, glob: &[u8], read: bool, write: bool) {
        if glob == b"*" && read && write {
            self.all_keys = true;
            self.keys.clear();
        } else if !self.all_keys {
            self.keys.push(KeyPattern {
                glob: Bytes::copy_from_slice(glob),
                read,
                write,
            });
        }
    }

    fn allow_all(&mut self, allow: bool) {
        self.commands.clear();
        self.subcommands.clear();
        if allow {
            self.commands
                .extend(keyspace::commands().iter().map(|s| s.name));
        }
        self.command_rules = vec![if allow { "+@all" } else { "-@all" }.into()];
    }

    fn apply_command_rule(&mut self, allow: bool, what: &str) -> Result<(), String> {
        let what = what.to_ascii_lowercase();
        let sign = if allow { '+' } else { '-' };
        if let Some(cat) = what.strip_prefix('@') {
            if cat == "all" {
                self.allow_all(allow);
                return Ok(());
            }
            if !CATEGORIES.contains(&cat) {
                return Err("Unknown command or category name in ACL".into());
            }
            for spec in keyspace::commands() {
                if categories(spec).contains(&cat) {
                    self.set_command(spec.name, allow);
                }
            }
        } else if let Some((cmd, sub)) = what.split_once('|') {
            let spec = keyspace::lookup(cmd.as_bytes())
                .ok_or("Unknown command or category name in ACL")?;
            if !allow {
                return Err("Allowing first-arg of a subcommand is not supported".into());
            }
            self.subcommands.insert(format!("{}|{sub}", spec.name));
        } else {
            let spec = keyspace::lookup(what.as_bytes())
                .ok_or("Unknown command or category name in ACL")?;
            self.set_command(spec.name, allow);
            self.subcommands
                .retain(|s| s.split('|').next() != Some(spec.name));
        }
        self.command_rules.push(format!("{sign}{what}"));
        Ok(())
    }

    fn set_command(&mut self, name: &'static str, allow: bool) {
        if allow {
            self.commands.insert(name);
        } else {
            self.commands.remove(name);
        }
    }

    /// Whether the user may run `args` (command `spec`): its command, keys and channels.
    pub fn check(&self, spec: &Spec, args: &[Bytes]) -> Result<(), Denied> {
        if !spec.is(flags::NO_AUTH) && !self.commands.contains(spec.name) {
            let sub = args.get(1).map(|s| {
                format!(
                    "{}|{}",
                    spec.name,
                    String::from_utf8_lossy(s).to_lowercase()
                )
            });
            if !sub.is_some_and(|s| self.subcommands.contains(&s)) {
                return Err(Denied::Command);
            }
        }
        if !self.all_keys {
            let write = spec.is(flags::WRITE);
            let positions = crate::scripting::movable_key_positions(spec.name, args)
                .unwrap_or_else(|| spec.key_positions(args.len()));
            for p in positions {
                let ok = self.keys.iter().any(|k| {
                    (if write { k.write } else { k.read })
                        && keyspace::glob_match(&k.glob, &args[p], false)
                });
                if !ok {
                    return Err(Denied::Key(p));
                }
            }
        }
        if !self.all_channels && spec.is(flags::PUBSUB) {
            let channels = match spec.name {
                "publish" | "spublish" => 1..2,
                "subscribe" | "ssubscribe" | "psubscribe" => 1..args.len(),
                _ => 0..0,
            };
            let literal = spec.name == "psubscribe";
            for i in channels {
                let ch = &args[i];
                let ok = self.channels.iter().any(|p| {
                    if literal {
                        p == ch
                    } else {
                        keyspace::glob_match(p, ch, false)
                    }
                });
                if !ok {
                    return Err(Denied::Channel(i));
                }
            }
        }
        Ok(())
    }

    /// The user as ACL LIST prints it.
    fn describe(&self) -> String {
        let mut parts = vec![
            format!("user {}", self.name),
            if self.enabled { "on" } else { "off" }.to_string(),
        ];
        if self.nopass {
            parts.push("nopass".into());
        }
        parts.extend(self.passwords.iter().map(|p| format!("#{p}")));
        if self.all_keys {
            parts.push("~*".into());
        } else {
            parts.extend(self.keys.iter().map(key_rule));
        }
        if self.all_channels {
            parts.push("&*".into());
        } else {
            parts.push("resetchannels".into());
            parts.extend(
                self.channels
                    .iter()
                    .map(|c| format!("&{}", String::from_utf8_lossy(c))),
            );
        }
        parts.push(self.commands_text());
        parts.join(" ")
    }

    fn commands_text(&self) -> String {
        self.command_rules.join(" ")
    }
}

fn key_rule(k: &KeyPattern) -> String {
    let glob = String::from_utf8_lossy(&k.glob);
    match (k.read, k.write) {
        (true, true) => format!("~{glob}"),
        (true, false) => format!("%R~{glob}"),
        _ => format!("%W~{glob}"),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The node's users.
#[derive(Debug, Clone)]
pub struct Users {
    by_name: BTreeMap<String, User>,
}

impl Default for Users {
    fn default() -> Users {
        let mut by_name = BTreeMap::new();
        by_name.insert("default".to_string(), User::default_user());
        Users { by_name }
    }
}

impl Users {
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }
}

/// What an ACL command did to the users, for the node to act on (sessions of deleted or
/// changed users).
#[derive(Debug, Default)]
pub struct Changed {
    /// Users removed: their clients are disconnected, as in Redis.
    pub deleted: Vec<String>,
}

/// ACL <subcommand> ...: `whoami` is the client's user.
pub fn acl_command(
    users: &mut Users,
    whoami: &str,
    a: &[Bytes],
    out: &mut ReplyBuf,
) -> Result<Changed, CmdError> {
    let sub = String::from_utf8_lossy(&a[1]).to_ascii_lowercase();
    let err = |m: String| CmdError::other(format!("ERR {m}"));
    match (sub.as_str(), a.len()) {
        ("whoami", 2) => out.bulk(whoami.as_bytes()),
        ("users", 2) => {
            out.array(users.by_name.len());
            users.by_name.keys().for_each(|n| out.bulk(n.as_bytes()));
        }
        ("list", 2) => {
            out.array(users.by_name.len());
            users
                .by_name
                .values()
                .for_each(|u| out.bulk(u.describe().as_bytes()));
        }
        ("setuser", n) if n >= 3 => {
            let name = String::from_utf8_lossy(&a[2]).into_owned();
            if name.bytes().any(|b| b == b' ' || b == 0) {
                return Err(err(
                    "Usernames can't contain spaces or null characters".into()
                ));
            }
            let mut user = users
                .by_name
                .get(&name)
                .cloned()
                .unwrap_or_else(|| User::new(&name));
            for rule in &a[3..] {
                if rule.is_empty() {
                    return Err(err("Error in ACL SETUSER modifier '': Syntax error".into()));
                }
                user.apply(rule).map_err(|m| {
                    err(format!(
                        "Error in ACL SETUSER modifier '{}': {m}",
                        String::from_utf8_lossy(rule)
                    ))
                })?;
            }
            users.by_name.insert(name, user);
            out.ok();
        }
        ("getuser", 3) => {
            let name = String::from_utf8_lossy(&a[2]);
            let Some(u) = users.by_name.get(name.as_ref()) else {
                out.null();
                return Ok(Changed::default());
            };
            let mut flags = vec![if u.enabled { "on" } else { "off" }];
            if u.all_keys {
                flags.push("allkeys");
            }
            if u.all_channels {
                flags.push("allchannels");
            }
            if u.nopass {
                flags.push("nopass");
            }
            out.map(6);
            out.bulk(b"flags");
            out.array(flags.len());
            flags.iter().for_each(|f| out.bulk(f.as_bytes()));
            out.bulk(b"passwords");
            out.array(u.passwords.len());
            u.passwords.iter().for_each(|p| out.bulk(p.as_bytes()));
            out.bulk(b"commands");
            out.bulk(u.commands_text().as_bytes());
            out.bulk(b"keys");
            let keys = if u.all_keys {
                "~*".to_string()
            } else {
                u.keys.iter().map(key_rule).collect::<Vec<_>>().join(" ")
            };
            out.bulk(keys.as_bytes());
            out.bulk(b"channels");
            let channels = if u.all_channels {
                "&*".to_string()
            } else {
                u.channels
                    .iter()
                    .map(|c| format!("&{}", String::from_utf8_lossy(c)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.bulk(channels.as_bytes());
            out.bulk(b"selectors");
            out.array(0);
        }
        ("deluser", n) if n >= 3 => {
            let mut changed = Changed::default();
            for name in &a[2..] {
                let name = String::from_utf8_lossy(name).into_owned();
                if name == "default" {
                    return Err(err("The 'default' user cannot be removed".into()));
                }
                if users.by_name.remove(&name).is_some() {
                    changed.deleted.push(name);
                }
            }
            out.int(changed.deleted.len() as i64);
            return Ok(changed);
        }
        ("cat", 2) => {
            out.array(CATEGORIES.len());
            CATEGORIES.iter().for_each(|c| out.bulk(c.as_bytes()));
        }
        ("cat", 3) => {
            let cat = String::from_utf8_lossy(&a[2]).to_ascii_lowercase();
            if !CATEGORIES.contains(&cat.as_str()) {
                return Err(err(format!("Unknown category '{cat}'")));
            }
            let names: Vec<&str> = keyspace::commands()
                .iter()
                .filter(|s| categories(s).contains(&cat.as_str()))
                .map(|s| s.name)
                .collect();
            out.array(names.len());
            names.iter().for_each(|n| out.bulk(n.as_bytes()));
        }
        ("dryrun", n) if n >= 4 => {
            let name = String::from_utf8_lossy(&a[2]);
            let user = users
                .by_name
                .get(name.as_ref())
                .ok_or_else(|| err(format!("User '{name}' not found")))?;
            let spec = keyspace::lookup(&a[3]).ok_or_else(|| {
                err(format!(
                    "Command '{}' not found",
                    String::from_utf8_lossy(&a[3])
                ))
            })?;
            if !spec.arity_ok(a.len() - 3) {
                return Err(err(format!(
                    "wrong number of arguments for '{}' command",
                    spec.name
                )));
            }
            match user.check(spec, &a[3..]) {
                Ok(()) => out.ok(),
                Err(Denied::Command) => out.bulk(
                    format!(
                        "This user has no permissions to run the '{}' command",
                        spec.name
                    )
                    .as_bytes(),
                ),
                Err(Denied::Key(i)) => out.bulk(
                    format!(
                        "This user has no permissions to access the '{}' key",
                        String::from_utf8_lossy(&a[3 + i])
                    )
                    .as_bytes(),
                ),
                Err(Denied::Channel(i)) => out.bulk(
                    format!(
                        "This user has no permissions to access the '{}' channel",
                        String::from_utf8_lossy(&a[3 + i])
                    )
                    .as_bytes(),
                ),
            }
        }
        ("log", 2 | 3) => {
            if a.len() == 3 && a[2].eq_ignore_ascii_case(b"reset") {
                out.ok();
            } else {
                // Denials are not logged yet: the log is always empty.
                out.array(0);
            }
        }
        ("genpass", 2 | 3) => {
            let bits = match a.get(2) {
                Some(b) => resp::parse_i64(b)
                    .filter(|&b| b > 0 && b as u64 <= GENPASS_BITS_MAX)
                    .ok_or_else(|| {
                        err("ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096".into())
                    })? as u64,
                None => GENPASS_BITS_DEFAULT,
            };
            let mut bytes = vec![0u8; bits.div_ceil(8) as usize];
            getrandom::fill(&mut bytes).map_err(|e| err(format!("no randomness: {e}")))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            out.bulk(&hex.as_bytes()[..bits.div_ceil(4) as usize]);
        }
        ("save" | "load", 2) => {
            return Err(err(
                "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.".into(),
            ));
        }
        ("help", 2) => {
            let lines = [
                "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CAT [<category>]",
                "DELUSER <username> [<username> ...]",
                "DRYRUN <username> <command> [<arg> ...]",
                "GETUSER <username>",
                "LIST",
                "USERS",
                "SETUSER <username> <attribs> ...",
                "GENPASS [<bits>]",
                "LOG [<count> | RESET]",
                "WHOAMI",
                "HELP",
            ];
            out.array(lines.len());
            lines.iter().for_each(|l| out.simple(l));
        }
        _ => {
            return Err(CmdError::other(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
                String::from_utf8_lossy(&a[1])
            )));
        }
    }
    Ok(Changed::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut u = User::new("u");
        for r in rules {
            u.apply(r.as_bytes()).unwrap();
        }
        u
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn check(u: &User, words: &[&str]) -> Result<(), Denied> {
        let a = args(words);
        u.check(keyspace::lookup(&a[0]).unwrap(), &a)
    }

    #[test]
    fn rules_grant_commands_keys_and_channels() {
        let u = user(&["on", ">123", "+@scripting", "+set", "~x*"]);
        assert!(u.accepts(b"123") && !u.accepts(b"124"));
        assert_eq!(check(&u, &["set", "xx", "1"]), Ok(()));
        assert_eq!(check(&u, &["set", "yy", "1"]), Err(Denied::Key(1)));
        assert_eq!(check(&u, &["hset", "xx", "f", "1"]), Err(Denied::Command));
        assert_eq!(check(&u, &["eval", "return 1", "1", "xa"]), Ok(()));
        assert_eq!(
            check(&u, &["eval", "return 1", "1", "ya"]),
            Err(Denied::Key(3))
        );
        assert_eq!(check(&u, &["auth", "u", "123"]), Ok(()));
        assert_eq!(check(&u, &["publish", "ch", "m"]), Err(Denied::Command));
        let p = user(&["on", "nopass", "+@all", "allkeys", "&news.*"]);
        assert_eq!(check(&p, &["publish", "news.1", "m"]), Ok(()));
        assert_eq!(
            check(&p, &["publish", "sport", "m"]),
            Err(Denied::Channel(1))
        );
        let r = user(&["on", "+@all", "%R~r:*"]);
        assert_eq!(check(&r, &["get", "r:1"]), Ok(()));
        assert_eq!(check(&r, &["set", "r:1", "v"]), Err(Denied::Key(1)));
        let sub = user(&["on", "+client|id"]);
        assert_eq!(check(&sub, &["client", "id"]), Ok(()));
        assert_eq!(check(&sub, &["client", "kill", "x"]), Err(Denied::Command));
    }

    #[test]
    fn default_user_is_unrestricted_and_described_as_redis_does() {
        let d = User::default_user();
        assert!(d.unrestricted() && d.accepts(b"anything"));
        assert_eq!(d.describe(), "user default on nopass ~* &* +@all");
        let u = user(&[
            "on",
            "#a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3",
            "~k*",
            "+get",
        ]);
        assert_eq!(
            u.describe(),
            "user u on #a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3 ~k* resetchannels -@all +get"
        );
        assert!(u.accepts(b"123"));
        assert!(User::new("x").apply(b"bogus").is_err());
        assert!(User::new("x").apply(b"+nosuchcommand").is_err());
    }
}
