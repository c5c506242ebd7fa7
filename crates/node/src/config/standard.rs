//! The rest of redis-server 7.0's settings: every parameter Redis accepts that the node has
//! no typed field for, with Redis's names, aliases, defaults, types and bounds. They are
//! checked and reported as Redis checks and reports them, so clients and Redis's own test
//! suite can set them; the node acts on the encoding thresholds (OBJECT ENCODING) and keeps
//! the others as settings without an effect here (replication, cluster, eviction, ...).
//!
//! Values are kept as the text CONFIG GET prints; a value is normalized when it is set, so
//! reading one back is a lookup.

use std::collections::BTreeMap;

use super::{ConfigError, parse_memory};

/// How a setting's value is read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Bool(bool),
    /// A whole number between the bounds, as Redis's integer settings.
    Int {
        default: i128,
        min: i128,
        max: i128,
    },
    /// A byte amount that takes units (`1kb`, `1mb`, ...), as Redis's memory settings.
    Memory {
        default: i128,
        min: i128,
        max: i128,
    },
    /// A byte amount, or a percentage of `maxmemory` (`maxmemory-clients`).
    MemoryOrPercent {
        default: i128,
        min: i128,
        max: i128,
    },
    /// Permission bits written in octal (`unixsocketperm`).
    Octal {
        default: i128,
        max: i128,
    },
    /// One of the names; with `multi`, one or more of them separated by spaces.
    Enum {
        values: &'static [&'static str],
        default: &'static str,
        multi: bool,
    },
    Text(&'static str),
    /// Parsed by its own rules (`special`).
    Special(&'static str),
}

/// Whether CONFIG SET may change a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Modifiable,
    /// Only at start (Redis's `IMMUTABLE_CONFIG`).
    Immutable,
    /// Modifiable, but left out of CONFIG GET patterns (Redis's `HIDDEN_CONFIG`).
    Hidden,
}

#[derive(Debug)]
pub(super) struct Setting {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub kind: Kind,
    pub change: Change,
}

const fn s(name: &'static str, alias: Option<&'static str>, change: Change, kind: Kind) -> Setting {
    Setting {
        name,
        alias,
        kind,
        change,
    }
}

use Change::{Hidden, Immutable, Modifiable};

const INT_MAX: i128 = i32::MAX as i128;
const INT_MIN: i128 = i32::MIN as i128;
const LONG_MAX: i128 = i64::MAX as i128;
const UINT_MAX: i128 = u32::MAX as i128;
const ULLONG_MAX: i128 = u64::MAX as i128;

const fn int(default: i128, min: i128, max: i128) -> Kind {
    Kind::Int { default, min, max }
}
const fn mem(default: i128, min: i128, max: i128) -> Kind {
    Kind::Memory { default, min, max }
}
const fn yes(default: bool) -> Kind {
    Kind::Bool(default)
}
const fn one_of(values: &'static [&'static str], default: &'static str) -> Kind {
    Kind::Enum {
        values,
        default,
        multi: false,
    }
}

const SHUTDOWN_FLAGS: &[&str] = &["default", "save", "nosave", "now", "force"];

/// Redis 7.0's settings beyond the node's typed ones (`NodeConfig`), in Redis's order.
pub(super) const SETTINGS: &[Setting] = &[
    s("io-threads-do-reads", None, Immutable, yes(false)),
    s("always-show-logo", None, Immutable, yes(false)),
    s("protected-mode", None, Modifiable, yes(true)),
    s("rdb-del-sync-files", None, Modifiable, yes(false)),
    s("activerehashing", None, Modifiable, yes(true)),
    s("stop-writes-on-bgsave-error", None, Modifiable, yes(true)),
    s("set-proc-title", None, Immutable, yes(true)),
    s("dynamic-hz", None, Modifiable, yes(true)),
    s("lazyfree-lazy-eviction", None, Modifiable, yes(false)),
    s("lazyfree-lazy-expire", None, Modifiable, yes(false)),
    s("lazyfree-lazy-server-del", None, Modifiable, yes(false)),
    s("lazyfree-lazy-user-del", None, Modifiable, yes(false)),
    s("lazyfree-lazy-user-flush", None, Modifiable, yes(false)),
    s("repl-disable-tcp-nodelay", None, Modifiable, yes(false)),
    s("repl-diskless-sync", None, Modifiable, yes(true)),
    s("aof-rewrite-incremental-fsync", None, Modifiable, yes(true)),
    s("no-appendfsync-on-rewrite", None, Modifiable, yes(false)),
    s("cluster-require-full-coverage", None, Modifiable, yes(true)),
    s("rdb-save-incremental-fsync", None, Modifiable, yes(true)),
    s("aof-use-rdb-preamble", None, Modifiable, yes(true)),
    s("aof-timestamp-enabled", None, Modifiable, yes(false)),
    s(
        "cluster-replica-no-failover",
        Some("cluster-slave-no-failover"),
        Modifiable,
        yes(false),
    ),
    s(
        "replica-lazy-flush",
        Some("slave-lazy-flush"),
        Modifiable,
        yes(false),
    ),
    s(
        "replica-serve-stale-data",
        Some("slave-serve-stale-data"),
        Modifiable,
        yes(true),
    ),
    s(
        "replica-read-only",
        Some("slave-read-only"),
        Modifiable,
        yes(true),
    ),
    s(
        "replica-ignore-maxmemory",
        Some("slave-ignore-maxmemory"),
        Modifiable,
        yes(true),
    ),
    s("jemalloc-bg-thread", None, Modifiable, yes(true)),
    s("activedefrag", None, Modifiable, yes(false)),
    s("syslog-enabled", None, Immutable, yes(false)),
    s("cluster-enabled", None, Immutable, yes(false)),
    s(
        "cluster-allow-reads-when-down",
        None,
        Modifiable,
        yes(false),
    ),
    s(
        "cluster-allow-pubsubshard-when-down",
        None,
        Modifiable,
        yes(true),
    ),
    s("crash-log-enabled", None, Modifiable, yes(true)),
    s("crash-memcheck-enabled", None, Modifiable, yes(true)),
    s("use-exit-on-panic", None, Hidden, yes(false)),
    s("disable-thp", None, Immutable, yes(true)),
    s(
        "cluster-allow-replica-migration",
        None,
        Modifiable,
        yes(true),
    ),
    s("replica-announced", None, Modifiable, yes(true)),
    s("latency-tracking", None, Modifiable, yes(true)),
    s("aof-disable-auto-gc", None, Modifiable, yes(false)),
    s(
        "replica-ignore-disk-write-errors",
        None,
        Modifiable,
        yes(false),
    ),
    s("aclfile", None, Immutable, Kind::Text("")),
    s("unixsocket", None, Immutable, Kind::Text("")),
    s("pidfile", None, Immutable, Kind::Text("")),
    s(
        "replica-announce-ip",
        Some("slave-announce-ip"),
        Modifiable,
        Kind::Text(""),
    ),
    s("masteruser", None, Modifiable, Kind::Text("")),
    s("cluster-announce-ip", None, Modifiable, Kind::Text("")),
    s(
        "cluster-config-file",
        None,
        Immutable,
        Kind::Text("nodes.conf"),
    ),
    s(
        "cluster-announce-hostname",
        None,
        Modifiable,
        Kind::Text(""),
    ),
    s("syslog-ident", None, Immutable, Kind::Text("redis")),
    s("server_cpulist", None, Immutable, Kind::Text("")),
    s("bio_cpulist", None, Immutable, Kind::Text("")),
    s("aof_rewrite_cpulist", None, Immutable, Kind::Text("")),
    s("bgsave_cpulist", None, Immutable, Kind::Text("")),
    s("ignore-warnings", None, Modifiable, Kind::Text("")),
    s(
        "proc-title-template",
        None,
        Modifiable,
        Kind::Text("{title} {listen-addr} {server-mode}"),
    ),
    s("bind-source-addr", None, Modifiable, Kind::Text("")),
    s("logfile", None, Immutable, Kind::Text("")),
    s("masterauth", None, Modifiable, Kind::Text("")),
    s(
        "supervised",
        None,
        Immutable,
        one_of(&["upstart", "systemd", "auto", "no"], "no"),
    ),
    s(
        "syslog-facility",
        None,
        Immutable,
        one_of(
            &[
                "user", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
                "local7",
            ],
            "local0",
        ),
    ),
    s(
        "repl-diskless-load",
        None,
        Modifiable,
        one_of(&["disabled", "on-empty-db", "swapdb"], "disabled"),
    ),
    s(
        "maxmemory-policy",
        None,
        Modifiable,
        one_of(
            &[
                "volatile-lru",
                "volatile-lfu",
                "volatile-random",
                "volatile-ttl",
                "allkeys-lru",
                "allkeys-lfu",
                "allkeys-random",
                "noeviction",
            ],
            "noeviction",
        ),
    ),
    s(
        "oom-score-adj",
        None,
        Modifiable,
        one_of(&["no", "yes", "relative", "absolute"], "no"),
    ),
    s(
        "acl-pubsub-default",
        None,
        Modifiable,
        one_of(&["allchannels", "resetchannels"], "resetchannels"),
    ),
    s(
        "sanitize-dump-payload",
        None,
        Modifiable,
        one_of(&["no", "yes", "clients"], "no"),
    ),
    s(
        "enable-module-command",
        None,
        Immutable,
        one_of(&["no", "yes", "local"], "no"),
    ),
    s(
        "cluster-preferred-endpoint-type",
        None,
        Modifiable,
        one_of(&["ip", "hostname", "unknown-endpoint"], "ip"),
    ),
    s(
        "propagation-error-behavior",
        None,
        Modifiable,
        one_of(&["ignore", "panic", "panic-on-replicas"], "ignore"),
    ),
    s(
        "shutdown-on-sigint",
        None,
        Modifiable,
        Kind::Enum {
            values: SHUTDOWN_FLAGS,
            default: "default",
            multi: true,
        },
    ),
    s(
        "shutdown-on-sigterm",
        None,
        Modifiable,
        Kind::Enum {
            values: SHUTDOWN_FLAGS,
            default: "default",
            multi: true,
        },
    ),
    s(
        "cluster-replica-validity-factor",
        Some("cluster-slave-validity-factor"),
        Modifiable,
        int(10, 0, INT_MAX),
    ),
    s(
        "list-max-listpack-size",
        Some("list-max-ziplist-size"),
        Modifiable,
        int(-2, INT_MIN, INT_MAX),
    ),
    s("tcp-keepalive", None, Modifiable, int(300, 0, INT_MAX)),
    s(
        "cluster-migration-barrier",
        None,
        Modifiable,
        int(1, 0, INT_MAX),
    ),
    s("active-defrag-cycle-min", None, Modifiable, int(1, 1, 99)),
    s("active-defrag-cycle-max", None, Modifiable, int(25, 1, 99)),
    s(
        "active-defrag-threshold-lower",
        None,
        Modifiable,
        int(10, 0, 1000),
    ),
    s(
        "active-defrag-threshold-upper",
        None,
        Modifiable,
        int(100, 0, 1000),
    ),
    s("lfu-log-factor", None, Modifiable, int(10, 0, INT_MAX)),
    s("lfu-decay-time", None, Modifiable, int(1, 0, INT_MAX)),
    s(
        "replica-priority",
        Some("slave-priority"),
        Modifiable,
        int(100, 0, INT_MAX),
    ),
    s(
        "repl-diskless-sync-delay",
        None,
        Modifiable,
        int(5, 0, INT_MAX),
    ),
    s("maxmemory-samples", None, Modifiable, int(5, 1, INT_MAX)),
    s(
        "maxmemory-eviction-tenacity",
        None,
        Modifiable,
        int(10, 0, 100),
    ),
    s(
        "replica-announce-port",
        Some("slave-announce-port"),
        Modifiable,
        int(0, 0, 65535),
    ),
    s("tcp-backlog", None, Immutable, int(511, 0, INT_MAX)),
    s("cluster-port", None, Immutable, int(0, 0, 65535)),
    s(
        "cluster-announce-bus-port",
        None,
        Modifiable,
        int(0, 0, 65535),
    ),
    s("cluster-announce-port", None, Modifiable, int(0, 0, 65535)),
    s(
        "cluster-announce-tls-port",
        None,
        Modifiable,
        int(0, 0, 65535),
    ),
    s("repl-timeout", None, Modifiable, int(60, 1, INT_MAX)),
    s(
        "repl-ping-replica-period",
        Some("repl-ping-slave-period"),
        Modifiable,
        int(10, 1, INT_MAX),
    ),
    s("list-compress-depth", None, Modifiable, int(0, 0, INT_MAX)),
    s("rdb-key-save-delay", None, Hidden, int(0, INT_MIN, INT_MAX)),
    s("key-load-delay", None, Hidden, int(0, INT_MIN, INT_MAX)),
    s("active-expire-effort", None, Modifiable, int(1, 1, 10)),
    s(
        "min-replicas-to-write",
        Some("min-slaves-to-write"),
        Modifiable,
        int(0, 0, INT_MAX),
    ),
    s(
        "min-replicas-max-lag",
        Some("min-slaves-max-lag"),
        Modifiable,
        int(10, 0, INT_MAX),
    ),
    s("watchdog-period", None, Hidden, int(0, 0, INT_MAX)),
    s("shutdown-timeout", None, Modifiable, int(10, 0, INT_MAX)),
    s(
        "repl-diskless-sync-max-replicas",
        None,
        Modifiable,
        int(0, 0, INT_MAX),
    ),
    s(
        "unixsocketperm",
        None,
        Immutable,
        Kind::Octal {
            default: 0,
            max: 0o777,
        },
    ),
    s("socket-mark-id", None, Immutable, int(0, 0, UINT_MAX)),
    s(
        "active-defrag-max-scan-fields",
        None,
        Modifiable,
        int(1000, 1, LONG_MAX),
    ),
    s("slowlog-max-len", None, Modifiable, int(128, 0, LONG_MAX)),
    s("acllog-max-len", None, Modifiable, int(128, 0, LONG_MAX)),
    s(
        "busy-reply-threshold",
        Some("lua-time-limit"),
        Modifiable,
        int(5000, 0, LONG_MAX),
    ),
    s(
        "cluster-node-timeout",
        None,
        Modifiable,
        int(15000, 0, LONG_MAX),
    ),
    s(
        "slowlog-log-slower-than",
        None,
        Modifiable,
        int(10000, -1, LONG_MAX),
    ),
    s(
        "latency-monitor-threshold",
        None,
        Modifiable,
        int(0, 0, LONG_MAX),
    ),
    s(
        "stream-node-max-entries",
        None,
        Modifiable,
        int(100, 0, LONG_MAX),
    ),
    s(
        "repl-backlog-size",
        None,
        Modifiable,
        mem(1024 * 1024, 1, LONG_MAX),
    ),
    s("maxmemory", None, Modifiable, mem(0, 0, ULLONG_MAX)),
    s(
        "cluster-link-sendbuf-limit",
        None,
        Modifiable,
        mem(0, 0, ULLONG_MAX),
    ),
    s(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        Modifiable,
        int(512, 0, LONG_MAX),
    ),
    s(
        "set-max-intset-entries",
        None,
        Modifiable,
        int(512, 0, LONG_MAX),
    ),
    s(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        Modifiable,
        int(128, 0, LONG_MAX),
    ),
    s(
        "active-defrag-ignore-bytes",
        None,
        Modifiable,
        mem(100 << 20, 1, LONG_MAX),
    ),
    s(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        Modifiable,
        mem(64, 0, LONG_MAX),
    ),
    s(
        "stream-node-max-bytes",
        None,
        Modifiable,
        mem(4096, 0, LONG_MAX),
    ),
    s(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        Modifiable,
        mem(64, 0, LONG_MAX),
    ),
    s(
        "hll-sparse-max-bytes",
        None,
        Modifiable,
        mem(3000, 0, LONG_MAX),
    ),
    s(
        "tracking-table-max-keys",
        None,
        Modifiable,
        int(1_000_000, 0, LONG_MAX),
    ),
    s(
        "maxmemory-clients",
        None,
        Modifiable,
        Kind::MemoryOrPercent {
            default: 0,
            min: -100,
            max: LONG_MAX,
        },
    ),
    s("repl-backlog-ttl", None, Modifiable, int(3600, 0, LONG_MAX)),
    s(
        "loading-process-events-interval-bytes",
        None,
        Hidden,
        int(2 * 1024 * 1024, 1024, INT_MAX),
    ),
    s("tls-cluster", None, Modifiable, yes(false)),
    s("tls-replication", None, Modifiable, yes(false)),
    s("tls-key-file-pass", None, Modifiable, Kind::Text("")),
    s("tls-client-cert-file", None, Modifiable, Kind::Text("")),
    s("tls-client-key-file", None, Modifiable, Kind::Text("")),
    s("tls-client-key-file-pass", None, Modifiable, Kind::Text("")),
    s("tls-dh-params-file", None, Modifiable, Kind::Text("")),
    s("tls-ca-cert-dir", None, Modifiable, Kind::Text("")),
    s(
        "client-output-buffer-limit",
        None,
        Modifiable,
        Kind::Special("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"),
    ),
    s(
        "oom-score-adj-values",
        None,
        Modifiable,
        Kind::Special("0 200 800"),
    ),
    s(
        "notify-keyspace-events",
        None,
        Modifiable,
        Kind::Special(""),
    ),
    s("replicaof", Some("slaveof"), Immutable, Kind::Special("")),
    s(
        "latency-tracking-info-percentiles",
        None,
        Modifiable,
        Kind::Special("50 99 99.9"),
    ),
];

/// Looks a setting up by its name or alias (lowercase).
pub(super) fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.name == name || s.alias == Some(name))
}

/// Every name CONFIG GET patterns match: names and aliases, hidden settings left out (Redis
/// shows those only when asked for by their exact name).
pub(super) fn listed_names() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(|s| s.change != Hidden)
        .flat_map(|s| std::iter::once(s.name).chain(s.alias))
}

/// The current values of these settings, by canonical name.
#[derive(Debug, Clone)]
pub struct Standard {
    values: BTreeMap<&'static str, String>,
}

impl Default for Standard {
    fn default() -> Self {
        let values = SETTINGS
            .iter()
            .map(|s| (s.name, default_text(s.kind)))
            .collect();
        Standard { values }
    }
}

fn default_text(kind: Kind) -> String {
    match kind {
        Kind::Bool(b) => yes_no_text(b).into(),
        Kind::Int { default, .. } | Kind::Memory { default, .. } => default.to_string(),
        Kind::MemoryOrPercent { default, .. } => percent_text(default),
        Kind::Octal { default, .. } => format!("{default:o}"),
        Kind::Enum { default, .. } => default.into(),
        Kind::Text(t) | Kind::Special(t) => t.into(),
    }
}

fn yes_no_text(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Redis keeps a percentage as a negative number and prints it back with `%`.
fn percent_text(n: i128) -> String {
    if n < 0 {
        format!("{}%", -n)
    } else {
        n.to_string()
    }
}

impl Standard {
    /// The value CONFIG GET prints for `name` (a name or an alias).
    pub fn get(&self, name: &str) -> Option<String> {
        let setting = find(name)?;
        self.values.get(setting.name).cloned()
    }

    /// Whether a yes/no setting is yes, by canonical name.
    pub fn yes(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| v == "yes")
    }

    /// An integer setting's value (the encoding thresholds), by canonical name.
    pub fn int(&self, name: &str) -> i64 {
        self.values
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Checks `value` against the setting's rules and stores it normalized. The caller has
    /// checked that the setting may change now.
    pub(super) fn set(&mut self, setting: &Setting, value: &str) -> Result<(), ConfigError> {
        let text = match setting.kind {
            Kind::Bool(_) => match value.to_ascii_lowercase().as_str() {
                "yes" => "yes".into(),
                "no" => "no".into(),
                _ => return Err(ConfigError::NotYesNo),
            },
            Kind::Int { min, max, .. } => {
                let n = resp::parse_i64(value.as_bytes()).ok_or(ConfigError::NotInteger)?;
                bounded(n as i128, min, max)?.to_string()
            }
            Kind::Memory { min, max, .. } => {
                let n = parse_memory(value)?;
                bounded(n as i128, min, max)?.to_string()
            }
            Kind::MemoryOrPercent { min, max, .. } => {
                let n = match parse_memory(value) {
                    Ok(n) => n as i128,
                    Err(_) => {
                        let percent = value
                            .strip_suffix('%')
                            .and_then(|p| resp::parse_i64(p.as_bytes()))
                            .filter(|p| *p >= 0)
                            .ok_or_else(|| {
                                ConfigError::Other(
                                    "argument must be a memory or percent value".into(),
                                )
                            })?;
                        -(percent as i128)
                    }
                };
                if n < min {
                    return Err(ConfigError::Other(format!(
                        "percentage argument must be less or equal to {}",
                        -min
                    )));
                }
                percent_text(bounded(n, min, max)?)
            }
            Kind::Octal { max, .. } => {
                let n = i128::from_str_radix(value, 8).map_err(|_| {
                    ConfigError::Other("argument couldn't be parsed as an octal number".into())
                })?;
                if !(0..=max).contains(&n) {
                    return Err(ConfigError::Other(format!(
                        "argument must be between 0 and {max:o} inclusive"
                    )));
                }
                format!("{n:o}")
            }
            Kind::Enum { values, multi, .. } => enum_value(values, multi, value)?,
            Kind::Text(_) => value.into(),
            Kind::Special(_) => special(setting.name, value, self.values[setting.name].as_str())?,
        };
        self.values.insert(setting.name, text);
        Ok(())
    }
}

fn bounded(n: i128, min: i128, max: i128) -> Result<i128, ConfigError> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ConfigError::OutOfRange { min, max })
    }
}

fn enum_value(values: &[&str], multi: bool, value: &str) -> Result<String, ConfigError> {
    let unknown = || {
        ConfigError::Other(format!(
            "argument(s) must be one of the following: {}",
            values.join(", ")
        ))
    };
    let mut words: Vec<String> = if multi {
        value
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect()
    } else {
        vec![value.to_ascii_lowercase()]
    };
    if words.is_empty() || words.iter().any(|w| !values.contains(&w.as_str())) {
        return Err(unknown());
    }
    if !multi {
        return Ok(words.swap_remove(0));
    }
    // Redis's shutdown flags: "default" alone, and never both save and nosave.
    let has = |w: &str| words.iter().any(|x| x == w);
    if has("save") && has("nosave") {
        return Err(ConfigError::Other(
            "shutdown can't have both 'save' and 'nosave' flags".into(),
        ));
    }
    let picked: Vec<&str> = values[1..].iter().copied().filter(|v| has(v)).collect();
    Ok(if picked.is_empty() {
        values[0].into()
    } else {
        picked.join(" ")
    })
}

/// The settings with rules of their own, each checked as Redis checks it.
fn special(name: &str, value: &str, current: &str) -> Result<String, ConfigError> {
    let other = |m: &str| ConfigError::Other(m.into());
    let words: Vec<&str> = value.split_whitespace().collect();
    match name {
        "notify-keyspace-events" => keyspace::notify::parse(value.as_bytes())
            .map(keyspace::notify::to_text)
            .ok_or_else(|| other("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")),
        "oom-score-adj-values" => {
            if words.len() != 3 {
                return Err(other("wrong number of arguments"));
            }
            let mut values = Vec::with_capacity(3);
            for w in &words {
                match w.parse::<i64>() {
                    Ok(v) if (-2000..=2000).contains(&v) => values.push(v.to_string()),
                    _ => {
                        return Err(other(
                            "Invalid oom-score-adj-values, elements must be between -2000 and 2000.",
                        ));
                    }
                }
            }
            Ok(values.join(" "))
        }
        "client-output-buffer-limit" => {
            if words.is_empty() || !words.len().is_multiple_of(4) {
                return Err(other(
                    "Wrong number of arguments in buffer limit configuration.",
                ));
            }
            let mut classes: Vec<Vec<String>> = current
                .split_whitespace()
                .collect::<Vec<_>>()
                .chunks(4)
                .map(|c| c.iter().map(|w| w.to_string()).collect())
                .collect();
            for group in words.chunks(4) {
                let class = match group[0].to_ascii_lowercase().as_str() {
                    "normal" => 0,
                    "slave" | "replica" => 1,
                    "pubsub" => 2,
                    _ => {
                        return Err(other(
                            "Invalid client class specified in buffer limit configuration.",
                        ));
                    }
                };
                let hard = parse_memory(group[1]);
                let soft = parse_memory(group[2]);
                let secs = group[3].parse::<i64>();
                let (Ok(hard), Ok(soft), Ok(secs)) = (hard, soft, secs) else {
                    return Err(other(
                        "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
                    ));
                };
                if secs < 0 {
                    return Err(other(
                        "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
                    ));
                }
                classes[class] = vec![
                    classes[class][0].clone(),
                    hard.to_string(),
                    soft.to_string(),
                    secs.to_string(),
                ];
            }
            Ok(classes.concat().join(" "))
        }
        "latency-tracking-info-percentiles" => {
            if value.is_empty() {
                return Ok(String::new());
            }
            let mut out = Vec::with_capacity(words.len());
            for w in &words {
                let p = resp::parse_f64(w.as_bytes())
                    .ok_or_else(|| other("Invalid latency-tracking-info-percentiles parameters"))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(other(
                        "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]",
                    ));
                }
                out.push(format!("{p}"));
            }
            Ok(out.join(" "))
        }
        // Immutable (replicaof): never reaches here at run time; at start only "no one".
        _ => {
            if value.eq_ignore_ascii_case("no one") || value.is_empty() {
                Ok(String::new())
            } else {
                Err(other("replication is not supported by this node"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(st: &mut Standard, name: &str, value: &str) -> Result<(), ConfigError> {
        st.set(find(name).unwrap(), value)
    }

    #[test]
    fn defaults_are_redis_defaults() {
        let st = Standard::default();
        for (name, value) in [
            ("list-max-ziplist-size", "-2"),
            ("list-max-listpack-size", "-2"),
            ("set-max-intset-entries", "512"),
            ("hash-max-ziplist-value", "64"),
            ("zset-max-listpack-entries", "128"),
            ("maxmemory-policy", "noeviction"),
            (
                "client-output-buffer-limit",
                "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
            ),
            ("unixsocketperm", "0"),
            ("shutdown-on-sigterm", "default"),
        ] {
            assert_eq!(st.get(name).as_deref(), Some(value), "{name}");
        }
    }

    #[test]
    fn values_are_checked_and_normalized() {
        let mut st = Standard::default();
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("list-max-ziplist-size", "4", Ok("4")),
            (
                "list-max-ziplist-size",
                "x",
                Err("argument couldn't be parsed into an integer"),
            ),
            (
                "set-max-intset-entries",
                "-1",
                Err("argument must be between 0 and 9223372036854775807 inclusive"),
            ),
            ("hash-max-ziplist-value", "1kb", Ok("1024")),
            (
                "hash-max-ziplist-value",
                "-1",
                Err("argument must be a memory value"),
            ),
            (
                "active-defrag-cycle-min",
                "100",
                Err("argument must be between 1 and 99 inclusive"),
            ),
            ("activerehashing", "No", Ok("no")),
            (
                "activerehashing",
                "maybe",
                Err("argument must be 'yes' or 'no'"),
            ),
            ("maxmemory-policy", "ALLKEYS-LRU", Ok("allkeys-lru")),
            ("maxmemory-clients", "10%", Ok("10%")),
            (
                "maxmemory-clients",
                "101%",
                Err("percentage argument must be less or equal to 100"),
            ),
            ("maxmemory-clients", "1mb", Ok("1048576")),
            ("notify-keyspace-events", "Elx", Ok("lxE")),
            ("notify-keyspace-events", "KA", Ok("AK")),
            (
                "notify-keyspace-events",
                "q",
                Err("Invalid event class character. Use 'Ag$lshzxeKEtmdn'."),
            ),
            ("shutdown-on-sigint", "nosave now", Ok("nosave now")),
            (
                "shutdown-on-sigint",
                "save nosave",
                Err("shutdown can't have both 'save' and 'nosave' flags"),
            ),
            (
                "client-output-buffer-limit",
                "pubsub 1mb 2 3",
                Ok("normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 2 3"),
            ),
            (
                "oom-score-adj-values",
                "1 2",
                Err("wrong number of arguments"),
            ),
            (
                "latency-tracking-info-percentiles",
                "50 99.9",
                Ok("50 99.9"),
            ),
        ];
        for (name, value, want) in cases {
            let got = set(&mut st, name, value).map(|()| st.get(name).unwrap());
            match want {
                Ok(text) => assert_eq!(got.as_deref(), Ok(*text), "{name} {value}"),
                Err(msg) => assert_eq!(got.unwrap_err().to_string(), *msg, "{name} {value}"),
            }
        }
    }

    #[test]
    fn aliases_share_one_value() {
        let mut st = Standard::default();
        set(&mut st, "zset-max-ziplist-entries", "3").unwrap();
        assert_eq!(st.get("zset-max-listpack-entries").as_deref(), Some("3"));
        assert_eq!(st.int("zset-max-listpack-entries"), 3);
        assert!(listed_names().any(|n| n == "zset-max-ziplist-entries"));
        assert!(!listed_names().any(|n| n == "rdb-key-save-delay"));
    }
}
