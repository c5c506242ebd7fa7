//! Node settings, read the way redis-server reads them: `--name value...` flags or a config
//! file of `name value...` lines, and changed at run time with CONFIG SET.

use std::path::PathBuf;

mod standard;

pub use standard::Standard;

/// How often `appendfsync` flushes the AOF to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

/// Whether DEBUG is allowed (`enable-debug-command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugCommand {
    No,
    Yes,
    /// Only from loopback connections.
    Local,
}

/// Every setting the node honours. Names and defaults are redis-server 7.0's.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub port: u16,
    pub bind: Vec<String>,
    pub dir: PathBuf,
    pub dbfilename: String,
    pub requirepass: Option<String>,
    /// Stop when the process that started this one is gone (a control plane's child node
    /// must not outlive it and keep its port).
    pub exit_with_parent: bool,
    /// A second password AUTH accepts (a managed cache's secondary access key); only with
    /// `requirepass`. Not a redis-server setting: set by the control plane.
    pub requirepass_secondary: Option<String>,
    pub databases: usize,
    pub maxclients: usize,
    /// Close connections idle this long (0: never).
    pub timeout_secs: u64,
    /// Background cycles (active expiry, rehash) per second.
    pub hz: u32,
    pub proto_max_bulk_len_bytes: usize,
    pub client_query_buffer_limit_bytes: usize,
    /// `client-output-buffer-limit` as numbers (the text CONFIG GET shows lives in
    /// `standard`; this copy is what connections check, kept in step by [`NodeConfig::set`]).
    pub output_buffer_limits: OutputBufferLimits,
    /// `save <seconds> <changes>` rules.
    pub save: Vec<(u64, u64)>,
    pub appendonly: bool,
    pub appendfsync: Fsync,
    pub appendfilename: String,
    pub appenddirname: String,
    pub auto_aof_rewrite_percentage: u64,
    pub auto_aof_rewrite_min_size_bytes: u64,
    pub aof_load_truncated: bool,
    pub rdbcompression: bool,
    pub rdbchecksum: bool,
    pub loglevel: String,
    pub enable_debug_command: DebugCommand,
    /// Whether CONFIG SET may change `dir` and `dbfilename` (`enable-protected-configs`,
    /// Redis 7.0's guard against the classic "SAVE onto any host path" attack).
    pub enable_protected_configs: DebugCommand,
    /// A cache run by the control plane: the commands Azure blocks for customers are
    /// unknown commands (`cacheplane-managed`), except on the admin connection.
    pub managed: bool,
    /// The password of the control plane's own connection (`cacheplane-admin-key`): it
    /// opens the commands a managed cache refuses, and no customer key opens them.
    pub admin_key: Option<String>,
    /// The addresses clients may connect from (`cacheplane-firewall`; empty: any).
    pub firewall: crate::firewall::Firewall,
    /// Worker threads serving connections (cacheplane's own setting).
    pub io_threads: usize,
    /// The TLS listener (`tls-*`); off while `tls-port` is 0.
    pub tls: TlsConfig,
    /// Where snapshots and AOF segments go beyond the local disk (cacheplane's settings,
    /// named like Azure Cache for Redis's `redisConfiguration` keys).
    pub storage: StorageConfig,
    /// Redis's other settings (encoding thresholds, eviction, replication, ...): checked,
    /// kept and reported as Redis does.
    pub standard: Standard,
}

/// redis-server's `tls-*` settings. `port 0` with a `tls-port` serves TLS only.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub port: u16,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_cert_file: Option<PathBuf>,
    pub auth_clients: tls::ClientAuth,
    /// "TLSv1.2 TLSv1.3" by default.
    pub protocols: String,
    pub ciphersuites: String,
    /// TLS 1.2 cipher list in OpenSSL's names: kept and reported (rustls chooses its own).
    pub ciphers: String,
    pub session_caching: bool,
    pub session_cache_size: usize,
    pub session_cache_timeout_secs: u64,
    pub prefer_server_ciphers: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            port: 0,
            cert_file: None,
            key_file: None,
            ca_cert_file: None,
            auth_clients: tls::ClientAuth::Yes,
            protocols: String::new(),
            ciphersuites: String::new(),
            ciphers: String::new(),
            session_caching: true,
            session_cache_size: 20480,
            session_cache_timeout_secs: 300,
            prefer_server_ciphers: false,
        }
    }
}

impl TlsConfig {
    /// The listener's rustls settings, once a certificate and key are named.
    pub fn server_settings(&self) -> Result<tls::ServerSettings, ConfigError> {
        let (Some(cert_file), Some(key_file)) = (&self.cert_file, &self.key_file) else {
            return Err(ConfigError::Other(
                "tls-port needs tls-cert-file and tls-key-file".into(),
            ));
        };
        Ok(tls::ServerSettings {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            ca_cert_file: self.ca_cert_file.clone(),
            auth_clients: self.auth_clients,
            protocols: self
                .protocols
                .split_whitespace()
                .map(String::from)
                .collect(),
            ciphersuites: self.ciphersuites.clone(),
            session_caching: self.session_caching,
            session_cache_size: self.session_cache_size,
        })
    }
}

/// One client class's `client-output-buffer-limit`; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputBufferLimit {
    /// Over this many unwritten bytes, the client is closed at once.
    pub hard_bytes: usize,
    /// Over this many for `soft_secs` in a row, the client is closed.
    pub soft_bytes: usize,
    pub soft_secs: u64,
}

impl OutputBufferLimit {
    /// Whether `bytes` unwritten break this limit, given since when (`over_soft_since_ms`,
    /// updated here) they have been over the soft limit: Redis's
    /// `checkClientOutputBufferLimits`.
    pub fn exceeded(
        &self,
        bytes: usize,
        over_soft_since_ms: &mut Option<u64>,
        now_ms: u64,
    ) -> bool {
        if self.hard_bytes > 0 && bytes >= self.hard_bytes {
            return true;
        }
        if self.soft_bytes > 0 && bytes >= self.soft_bytes {
            let since = *over_soft_since_ms.get_or_insert(now_ms);
            return now_ms.saturating_sub(since) > self.soft_secs * 1000;
        }
        *over_soft_since_ms = None;
        false
    }

    /// Whether `bytes` are at the hard or the soft limit (cheap: no clock).
    pub fn reached(&self, bytes: usize) -> bool {
        (self.hard_bytes > 0 && bytes >= self.hard_bytes)
            || (self.soft_bytes > 0 && bytes >= self.soft_bytes)
    }
}

/// `client-output-buffer-limit` per client class, Redis 7.0's defaults: none for normal
/// clients, `256mb 64mb 60` for replicas (kept and reported; this node has none),
/// `32mb 8mb 60` for pub/sub clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBufferLimits {
    pub normal: OutputBufferLimit,
    pub replica: OutputBufferLimit,
    pub pubsub: OutputBufferLimit,
}

impl Default for OutputBufferLimits {
    fn default() -> Self {
        OutputBufferLimits {
            normal: OutputBufferLimit::default(),
            replica: OutputBufferLimit {
                hard_bytes: 256 * 1024 * 1024,
                soft_bytes: 64 * 1024 * 1024,
                soft_secs: 60,
            },
            pubsub: OutputBufferLimit {
                hard_bytes: 32 * 1024 * 1024,
                soft_bytes: 8 * 1024 * 1024,
                soft_secs: 60,
            },
        }
    }
}

impl OutputBufferLimits {
    /// Reads the normalized text the standard table keeps (`normal 0 0 0 slave ...`, plain
    /// numbers: CONFIG SET has checked and converted the units).
    fn parse(text: &str) -> OutputBufferLimits {
        let mut limits = OutputBufferLimits::default();
        let words: Vec<&str> = text.split_whitespace().collect();
        for group in words.chunks_exact(4) {
            let n = |w: &str| w.parse::<u64>().unwrap_or(0);
            let limit = OutputBufferLimit {
                hard_bytes: usize::try_from(n(group[1])).unwrap_or(usize::MAX),
                soft_bytes: usize::try_from(n(group[2])).unwrap_or(usize::MAX),
                soft_secs: n(group[3]),
            };
            match group[0] {
                "normal" => limits.normal = limit,
                "slave" | "replica" => limits.replica = limit,
                "pubsub" => limits.pubsub = limit,
                _ => {}
            }
        }
        limits
    }

    /// The limit of a client: the pub/sub class while it has subscriptions (Redis's
    /// CLIENT_PUBSUB), else normal.
    pub fn for_client(&self, subscriptions: usize) -> OutputBufferLimit {
        if subscriptions > 0 {
            self.pubsub
        } else {
            self.normal
        }
    }
}

/// Blob persistence settings.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub rdb_backup_enabled: bool,
    /// Minutes between snapshots, on the node's clock sped up by `time_scale`.
    pub rdb_backup_frequency_min: u64,
    pub rdb_backup_max_snapshot_count: u64,
    pub rdb_account: Option<blob::Account>,
    /// Primary and secondary accounts for AOF segments.
    pub aof_accounts: [Option<blob::Account>; 2],
    /// Schedules run this many times faster than the wall clock (tests, demos).
    pub time_scale: u64,
    /// Every key this node writes lives under this prefix in its accounts.
    pub prefix: String,
    pub aof_durability: Durability,
    /// Bytes of AOF the primary account may lag behind before writes are refused
    /// (`aof-spool-max-bytes`): the local AOF is the spool, this is its bound.
    pub spool_max_bytes: u64,
    /// Faults a drill sets on the accounts (the control plane holds the other end).
    pub faults: blob::FaultSwitch,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            rdb_backup_enabled: false,
            rdb_backup_frequency_min: 60,
            rdb_backup_max_snapshot_count: 1,
            rdb_account: None,
            aof_accounts: [None, None],
            time_scale: 1,
            prefix: "cache".into(),
            aof_durability: Durability::Local,
            spool_max_bytes: 1024 * 1024 * 1024,
            faults: blob::FaultSwitch::default(),
        }
    }
}

/// When a write counts as durable for its reply (`aof-durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// As `appendfsync` says, on the local disk.
    Local,
    /// Only once the AOF segment holding it is in the primary storage account.
    Store,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            port: 6379,
            bind: vec!["127.0.0.1".into()],
            dir: PathBuf::from("."),
            dbfilename: "dump.rdb".into(),
            requirepass: None,
            requirepass_secondary: None,
            exit_with_parent: false,
            databases: 16,
            maxclients: 10_000,
            timeout_secs: 0,
            hz: 10,
            proto_max_bulk_len_bytes: 512 * 1024 * 1024,
            client_query_buffer_limit_bytes: 1024 * 1024 * 1024,
            output_buffer_limits: OutputBufferLimits::default(),
            save: vec![(3600, 1), (300, 100), (60, 10000)],
            appendonly: false,
            appendfsync: Fsync::EverySec,
            appendfilename: "appendonly.aof".into(),
            appenddirname: "appendonlydir".into(),
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size_bytes: 64 * 1024 * 1024,
            aof_load_truncated: true,
            rdbcompression: true,
            rdbchecksum: true,
            loglevel: "notice".into(),
            enable_debug_command: DebugCommand::No,
            enable_protected_configs: DebugCommand::No,
            managed: false,
            admin_key: None,
            firewall: Default::default(),
            io_threads: 1,
            tls: TlsConfig::default(),
            storage: StorageConfig::default(),
            standard: Standard::default(),
        }
    }
}

/// A refused setting, in the words CONFIG SET and the start-up check use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("Bad directive or wrong number of arguments")]
    UnknownDirective(String),
    #[error("argument couldn't be parsed into an integer")]
    NotInteger,
    #[error("argument must be 'yes' or 'no'")]
    NotYesNo,
    #[error("argument(s) must be one of the following: {0}")]
    NotOneOf(&'static str),
    #[error("argument must be a memory value")]
    NotMemory,
    #[error("argument must be between {min} and {max} inclusive")]
    OutOfRange { min: i128, max: i128 },
    #[error("Invalid save parameters")]
    InvalidSave,
    #[error("can't set immutable config")]
    Immutable,
    #[error("can't set protected config")]
    Protected,
    #[error("{0}")]
    Other(String),
}

/// Redis's parameters CONFIG GET lists, in this order.
const PARAMETERS: &[&str] = &[
    "port",
    "bind",
    "dir",
    "dbfilename",
    "requirepass",
    "databases",
    "maxclients",
    "timeout",
    "hz",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "save",
    "appendonly",
    "appendfsync",
    "appendfilename",
    "appenddirname",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "aof-load-truncated",
    "rdbcompression",
    "rdbchecksum",
    "loglevel",
    "enable-debug-command",
    "enable-protected-configs",
    "io-threads",
    "daemonize",
    "tls-port",
    "tls-cert-file",
    "tls-key-file",
    "tls-ca-cert-file",
    "tls-auth-clients",
    "tls-protocols",
    "tls-ciphersuites",
    "tls-ciphers",
    "tls-session-caching",
    "tls-session-cache-size",
    "tls-session-cache-timeout",
    "tls-prefer-server-ciphers",
];

/// cacheplane's own settings (a second password, the storage accounts): listed after
/// Redis's; the storage settings are fixed at start.
const STORAGE_PARAMETERS: &[&str] = &[
    "requirepass-secondary",
    "exit-with-parent",
    "rdb-backup-enabled",
    "rdb-backup-frequency",
    "rdb-backup-max-snapshot-count",
    "rdb-storage-connection-string",
    "aof-storage-connection-string-0",
    "aof-storage-connection-string-1",
    "time-scale",
    "storage-prefix",
    "aof-durability",
    "aof-spool-max-bytes",
    "cacheplane-managed",
    "cacheplane-admin-key",
    "cacheplane-firewall",
];

/// Every parameter CONFIG GET patterns match, in order: the node's, then Redis's others with
/// their aliases (hidden ones answer only to their exact name, [`NodeConfig::get`]).
pub fn parameters() -> impl Iterator<Item = &'static str> {
    PARAMETERS
        .iter()
        .chain(STORAGE_PARAMETERS)
        .copied()
        .chain(standard::listed_names())
}

/// Settings that only take effect at start.
const IMMUTABLE: &[&str] = &[
    "port",
    "bind",
    "databases",
    "daemonize",
    "io-threads",
    "appendfilename",
    "appenddirname",
    "enable-debug-command",
    "enable-protected-configs",
];

/// Whether `name` is fixed at start: the immutable ones, and every `tls-*` setting (the
/// TLS listener is set up at start).
fn immutable(name: &str) -> bool {
    IMMUTABLE.contains(&name) || name.starts_with("tls-")
}

/// Whether `name` names a setting (or an alias of one).
pub fn is_known(name: &str) -> bool {
    parameters().any(|p| p == name) || standard::find(name).is_some()
}

/// Whether CONFIG SET of `name` needs `enable-protected-configs`.
pub fn is_protected(name: &str) -> bool {
    PROTECTED.contains(&name)
}

/// Settings that point the node's files somewhere else: refused at run time unless
/// `enable-protected-configs` allows it (as Redis 7.0 does).
const PROTECTED: &[&str] = &["dir", "dbfilename"];

fn debug_command(v: &str) -> Result<DebugCommand, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "no" => Ok(DebugCommand::No),
        "yes" => Ok(DebugCommand::Yes),
        "local" => Ok(DebugCommand::Local),
        _ => Err(ConfigError::NotOneOf("no, yes, local")),
    }
}

fn debug_command_name(d: DebugCommand) -> &'static str {
    match d {
        DebugCommand::No => "no",
        DebugCommand::Yes => "yes",
        DebugCommand::Local => "local",
    }
}

fn path_value(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn path_text(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn yes_no(v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(ConfigError::NotYesNo),
    }
}

fn account(v: &str) -> Result<Option<blob::Account>, ConfigError> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    blob::Account::parse(v)
        .map(Some)
        .map_err(|e| ConfigError::Other(e.to_string()))
}

fn account_name(a: &Option<blob::Account>) -> String {
    a.as_ref().map(|a| a.display_name()).unwrap_or_default()
}

fn yn(v: bool) -> String {
    if v { "yes".into() } else { "no".into() }
}

fn integer(v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n: u64 = v.parse().map_err(|_| ConfigError::NotInteger)?;
    if !(min..=max).contains(&n) {
        return Err(ConfigError::OutOfRange {
            min: min.into(),
            max: max.into(),
        });
    }
    Ok(n)
}

/// Parses a memory amount as Redis does: `100`, `1k` (1000), `1kb` (1024), `mb`, `gb`.
pub fn parse_memory(v: &str) -> Result<u64, ConfigError> {
    let lower = v.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits.parse().map_err(|_| ConfigError::NotMemory)?;
    let mul = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(ConfigError::NotMemory),
    };
    n.checked_mul(mul).ok_or(ConfigError::NotMemory)
}

impl NodeConfig {
    /// Reads redis-server style arguments: an optional config file path, then `--name value...`.
    pub fn from_args(args: &[String]) -> Result<NodeConfig, String> {
        let mut cfg = NodeConfig::default();
        let mut lines: Vec<Vec<String>> = Vec::new();
        let mut rest = args;
        if let Some(first) = args.first().filter(|a| !a.starts_with("--")) {
            let text = std::fs::read_to_string(first)
                .map_err(|e| format!("can't open config file '{first}': {e}"))?;
            for line in text.lines() {
                let words = resp::split_inline_args(line.trim().as_bytes())
                    .map_err(|_| format!("unbalanced quotes in config file line '{line}'"))?;
                if words.is_empty() || words[0].starts_with(b"#") {
                    continue;
                }
                lines.push(
                    words
                        .iter()
                        .map(|w| String::from_utf8_lossy(w).into_owned())
                        .collect(),
                );
            }
            rest = &args[1..];
        }
        for arg in rest {
            match arg.strip_prefix("--") {
                Some(name) => lines.push(vec![name.to_string()]),
                None => match lines.last_mut() {
                    Some(line) => line.push(arg.clone()),
                    None => return Err(format!("unexpected argument '{arg}'")),
                },
            }
        }
        for (n, line) in lines.iter().enumerate() {
            let name = line[0].to_ascii_lowercase();
            let value = line[1..].join(" ");
            let applied = cfg.apply(&name, &value, true);
            // The line may hold a connection string: never echo it back.
            let line = if name.contains("connection-string") {
                vec![line[0].clone(), "***".into()]
            } else {
                line.clone()
            };
            if let Err(e) = applied {
                return Err(format!(
                    "\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nReading the configuration file, at line {}\n>>> '{}'\n{e}",
                    n + 1,
                    line.join(" ")
                ));
            }
        }
        cfg.check_storage()?;
        Ok(cfg)
    }

    /// Settings that only make sense together.
    fn check_storage(&self) -> Result<(), String> {
        let s = &self.storage;
        let fatal = |m: &str| {
            Err(format!(
                "\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n{m}"
            ))
        };
        if s.rdb_backup_enabled && s.rdb_account.is_none() {
            return fatal("rdb-backup-enabled yes needs rdb-storage-connection-string");
        }
        if s.aof_accounts[1].is_some() && s.aof_accounts[0].is_none() {
            return fatal("aof-storage-connection-string-1 needs aof-storage-connection-string-0");
        }
        if s.aof_accounts[0].is_some() && !self.appendonly {
            return fatal("aof-storage-connection-string-0 needs appendonly yes");
        }
        if s.aof_durability == Durability::Store && s.aof_accounts[0].is_none() {
            return fatal("aof-durability store needs aof-storage-connection-string-0");
        }
        Ok(())
    }

    /// Gives the keyspace what it takes from the configuration: the thresholds OBJECT
    /// ENCODING judges by, how keys are evicted and the keyspace notification classes.
    pub fn configure(&self, ks: &mut keyspace::Keyspace) {
        ks.encodings = self.encodings();
        let int = |name| u32::try_from(self.standard.int(name)).unwrap_or(u32::MAX);
        ks.eviction = keyspace::memory::Eviction {
            policy: self
                .standard
                .get("maxmemory-policy")
                .and_then(|p| keyspace::memory::Policy::parse(&p))
                .unwrap_or_default(),
            samples: int("maxmemory-samples") as usize,
            lfu_log_factor: int("lfu-log-factor"),
            lfu_decay_time_min: int("lfu-decay-time"),
        };
        ks.notify_classes = self
            .standard
            .get("notify-keyspace-events")
            .and_then(|v| keyspace::notify::parse(v.as_bytes()))
            .unwrap_or(0);
    }

    /// The thresholds OBJECT ENCODING reports conversions at.
    pub fn encodings(&self) -> keyspace::Encodings {
        let size = |name| usize::try_from(self.standard.int(name)).unwrap_or(usize::MAX);
        keyspace::Encodings {
            hash_max_listpack_entries: size("hash-max-listpack-entries"),
            hash_max_listpack_value: size("hash-max-listpack-value"),
            set_max_intset_entries: size("set-max-intset-entries"),
            zset_max_listpack_entries: size("zset-max-listpack-entries"),
            zset_max_listpack_value: size("zset-max-listpack-value"),
            hll_sparse_max_bytes: size("hll-sparse-max-bytes"),
            stream_node_max_bytes: size("stream-node-max-bytes"),
            stream_node_max_entries: size("stream-node-max-entries"),
        }
    }

    /// The current value of a parameter, as CONFIG GET prints it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "port" => self.port.to_string(),
            "bind" => self.bind.join(" "),
            "dir" => self.dir.display().to_string(),
            "dbfilename" => self.dbfilename.clone(),
            "requirepass" => self.requirepass.clone().unwrap_or_default(),
            "requirepass-secondary" => self.requirepass_secondary.clone().unwrap_or_default(),
            "exit-with-parent" => yn(self.exit_with_parent),
            "databases" => self.databases.to_string(),
            "maxclients" => self.maxclients.to_string(),
            "timeout" => self.timeout_secs.to_string(),
            "hz" => self.hz.to_string(),
            "proto-max-bulk-len" => self.proto_max_bulk_len_bytes.to_string(),
            "client-query-buffer-limit" => self.client_query_buffer_limit_bytes.to_string(),
            "save" => self
                .save
                .iter()
                .map(|(s, c)| format!("{s} {c}"))
                .collect::<Vec<_>>()
                .join(" "),
            "appendonly" => yn(self.appendonly),
            "appendfsync" => match self.appendfsync {
                Fsync::Always => "always",
                Fsync::EverySec => "everysec",
                Fsync::No => "no",
            }
            .into(),
            "appendfilename" => self.appendfilename.clone(),
            "appenddirname" => self.appenddirname.clone(),
            "auto-aof-rewrite-percentage" => self.auto_aof_rewrite_percentage.to_string(),
            "auto-aof-rewrite-min-size" => self.auto_aof_rewrite_min_size_bytes.to_string(),
            "aof-load-truncated" => yn(self.aof_load_truncated),
            "rdbcompression" => yn(self.rdbcompression),
            "rdbchecksum" => yn(self.rdbchecksum),
            "loglevel" => self.loglevel.clone(),
            "enable-debug-command" => debug_command_name(self.enable_debug_command).into(),
            "enable-protected-configs" => debug_command_name(self.enable_protected_configs).into(),
            "cacheplane-managed" => yn(self.managed),
            "tls-port" => self.tls.port.to_string(),
            "tls-cert-file" => path_text(&self.tls.cert_file),
            "tls-key-file" => path_text(&self.tls.key_file),
            "tls-ca-cert-file" => path_text(&self.tls.ca_cert_file),
            "tls-auth-clients" => match self.tls.auth_clients {
                tls::ClientAuth::No => "no",
                tls::ClientAuth::Yes => "yes",
                tls::ClientAuth::Optional => "optional",
            }
            .into(),
            "tls-protocols" => self.tls.protocols.clone(),
            "tls-ciphersuites" => self.tls.ciphersuites.clone(),
            "tls-ciphers" => self.tls.ciphers.clone(),
            "tls-session-caching" => yn(self.tls.session_caching),
            "tls-session-cache-size" => self.tls.session_cache_size.to_string(),
            "tls-session-cache-timeout" => self.tls.session_cache_timeout_secs.to_string(),
            "tls-prefer-server-ciphers" => yn(self.tls.prefer_server_ciphers),
            // A secret of the control plane's: never shown.
            "cacheplane-admin-key" => String::new(),
            "cacheplane-firewall" => self.firewall.render(),
            "io-threads" => self.io_threads.to_string(),
            "daemonize" => "no".into(),
            "rdb-backup-enabled" => yn(self.storage.rdb_backup_enabled),
            "rdb-backup-frequency" => self.storage.rdb_backup_frequency_min.to_string(),
            "rdb-backup-max-snapshot-count" => {
                self.storage.rdb_backup_max_snapshot_count.to_string()
            }
            // Connection strings are secrets: only the account's name is shown.
            "rdb-storage-connection-string" => account_name(&self.storage.rdb_account),
            "aof-storage-connection-string-0" => account_name(&self.storage.aof_accounts[0]),
            "aof-storage-connection-string-1" => account_name(&self.storage.aof_accounts[1]),
            "time-scale" => self.storage.time_scale.to_string(),
            "storage-prefix" => self.storage.prefix.clone(),
            "aof-spool-max-bytes" => self.storage.spool_max_bytes.to_string(),
            "aof-durability" => match self.storage.aof_durability {
                Durability::Local => "local",
                Durability::Store => "store",
            }
            .into(),
            _ => return self.standard.get(name),
        })
    }

    /// CONFIG SET: changes a parameter at run time. Setting one to the value CONFIG GET
    /// shows is a no-op that succeeds even where a change would be refused, as in Redis
    /// (clients write back what they read).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if self.get(name).is_some_and(|current| current == value) {
            return Ok(());
        }
        self.apply(name, value, false)
    }

    fn apply(&mut self, name: &str, v: &str, at_start: bool) -> Result<(), ConfigError> {
        if !PARAMETERS.contains(&name) && !STORAGE_PARAMETERS.contains(&name) {
            let setting =
                standard::find(name).ok_or_else(|| ConfigError::UnknownDirective(name.into()))?;
            if !at_start && setting.change == standard::Change::Immutable {
                return Err(ConfigError::Immutable);
            }
            self.standard.set(setting, v)?;
            if name == "client-output-buffer-limit"
                && let Some(text) = self.standard.get(name)
            {
                self.output_buffer_limits = OutputBufferLimits::parse(&text);
            }
            return Ok(());
        }
        let storage = STORAGE_PARAMETERS.contains(&name)
            && !["requirepass-secondary", "cacheplane-firewall"].contains(&name);
        if !at_start && (immutable(name) || storage) {
            return Err(ConfigError::Immutable);
        }
        match name {
            "port" => self.port = integer(v, 0, 65535)? as u16,
            "bind" => self.bind = v.split_whitespace().map(String::from).collect(),
            "dir" => {
                let dir = PathBuf::from(v);
                if !at_start && !dir.is_dir() {
                    return Err(ConfigError::Other(format!(
                        "No such file or directory: {v}"
                    )));
                }
                self.dir = dir;
            }
            "dbfilename" => {
                if v.contains('/') {
                    return Err(ConfigError::Other(
                        "dbfilename can't be a path, just a filename".into(),
                    ));
                }
                self.dbfilename = v.into();
            }
            "requirepass" => self.requirepass = (!v.is_empty()).then(|| v.to_string()),
            "requirepass-secondary" => {
                self.requirepass_secondary = (!v.is_empty()).then(|| v.to_string())
            }
            "exit-with-parent" => self.exit_with_parent = yes_no(v)?,
            "databases" => self.databases = integer(v, 1, 1 << 20)? as usize,
            "maxclients" => self.maxclients = integer(v, 1, 1 << 24)? as usize,
            "timeout" => self.timeout_secs = integer(v, 0, i32::MAX as u64)?,
            "hz" => self.hz = integer(v, 1, 500)? as u32,
            "proto-max-bulk-len" => {
                let n = parse_memory(v)?;
                if n < 1024 * 1024 {
                    return Err(ConfigError::OutOfRange {
                        min: 1024 * 1024,
                        max: i64::MAX.into(),
                    });
                }
                self.proto_max_bulk_len_bytes = n as usize
            }
            "client-query-buffer-limit" => {
                let n = parse_memory(v)?;
                if n < 1024 * 1024 {
                    return Err(ConfigError::OutOfRange {
                        min: 1024 * 1024,
                        max: i64::MAX.into(),
                    });
                }
                self.client_query_buffer_limit_bytes = n as usize
            }
            "save" => {
                let words: Vec<&str> = v.split_whitespace().collect();
                if !words.len().is_multiple_of(2) {
                    return Err(ConfigError::InvalidSave);
                }
                let mut rules = Vec::new();
                for pair in words.chunks(2) {
                    let secs = pair[0].parse().map_err(|_| ConfigError::InvalidSave)?;
                    let changes = pair[1].parse().map_err(|_| ConfigError::InvalidSave)?;
                    rules.push((secs, changes));
                }
                self.save = rules;
            }
            "appendonly" => self.appendonly = yes_no(v)?,
            "appendfsync" => {
                self.appendfsync = match v.to_ascii_lowercase().as_str() {
                    "always" => Fsync::Always,
                    "everysec" => Fsync::EverySec,
                    "no" => Fsync::No,
                    _ => return Err(ConfigError::NotOneOf("always, everysec, no")),
                }
            }
            "appendfilename" => {
                if v.is_empty() || v.contains('/') {
                    return Err(ConfigError::Other(
                        "appendfilename can't be a path, just a filename".into(),
                    ));
                }
                self.appendfilename = v.into()
            }
            "appenddirname" => {
                if v.is_empty() || v.contains('/') {
                    return Err(ConfigError::Other(
                        "appenddirname can't be a path, just a dirname".into(),
                    ));
                }
                self.appenddirname = v.into()
            }
            "auto-aof-rewrite-percentage" => {
                self.auto_aof_rewrite_percentage = integer(v, 0, i32::MAX as u64)?
            }
            "auto-aof-rewrite-min-size" => self.auto_aof_rewrite_min_size_bytes = parse_memory(v)?,
            "aof-load-truncated" => self.aof_load_truncated = yes_no(v)?,
            "rdbcompression" => self.rdbcompression = yes_no(v)?,
            "rdbchecksum" => self.rdbchecksum = yes_no(v)?,
            "loglevel" => {
                let level = v.to_ascii_lowercase();
                if !["debug", "verbose", "notice", "warning", "nothing"].contains(&level.as_str()) {
                    return Err(ConfigError::NotOneOf(
                        "debug, verbose, notice, warning, nothing",
                    ));
                }
                self.loglevel = level;
            }
            "enable-debug-command" => self.enable_debug_command = debug_command(v)?,
            "enable-protected-configs" => self.enable_protected_configs = debug_command(v)?,
            "cacheplane-managed" => self.managed = yes_no(v)?,
            "tls-port" => self.tls.port = integer(v, 0, 65535)? as u16,
            "tls-cert-file" => self.tls.cert_file = path_value(v),
            "tls-key-file" => self.tls.key_file = path_value(v),
            "tls-ca-cert-file" => self.tls.ca_cert_file = path_value(v),
            "tls-auth-clients" => {
                self.tls.auth_clients = match v.to_ascii_lowercase().as_str() {
                    "no" => tls::ClientAuth::No,
                    "yes" => tls::ClientAuth::Yes,
                    "optional" => tls::ClientAuth::Optional,
                    _ => return Err(ConfigError::NotOneOf("no, yes, optional")),
                }
            }
            "tls-protocols" => {
                for p in v.split_whitespace() {
                    if !["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"].contains(&p) {
                        return Err(ConfigError::Other(format!("Invalid protocol '{p}'")));
                    }
                    if p == "TLSv1" || p == "TLSv1.1" {
                        return Err(ConfigError::Other(format!(
                            "{p} is not supported (TLSv1.2 and TLSv1.3 are)"
                        )));
                    }
                }
                self.tls.protocols = v.into()
            }
            "tls-ciphersuites" => self.tls.ciphersuites = v.into(),
            "tls-ciphers" => self.tls.ciphers = v.into(),
            "tls-session-caching" => self.tls.session_caching = yes_no(v)?,
            "tls-session-cache-size" => {
                self.tls.session_cache_size = integer(v, 0, i32::MAX as u64)? as usize
            }
            "tls-session-cache-timeout" => {
                self.tls.session_cache_timeout_secs = integer(v, 0, i32::MAX as u64)?
            }
            "tls-prefer-server-ciphers" => self.tls.prefer_server_ciphers = yes_no(v)?,
            "cacheplane-admin-key" => self.admin_key = (!v.is_empty()).then(|| v.to_string()),
            "cacheplane-firewall" => {
                self.firewall = crate::firewall::Firewall::parse(v).map_err(ConfigError::Other)?
            }
            "io-threads" => self.io_threads = integer(v, 1, 128)? as usize,
            "daemonize" => {
                if yes_no(v)? {
                    return Err(ConfigError::Other(
                        "daemonize is not supported; run under a supervisor".into(),
                    ));
                }
            }
            "rdb-backup-enabled" => self.storage.rdb_backup_enabled = yes_no(v)?,
            "rdb-backup-frequency" => {
                self.storage.rdb_backup_frequency_min = integer(v, 1, 525_600)?
            }
            "rdb-backup-max-snapshot-count" => {
                self.storage.rdb_backup_max_snapshot_count = integer(v, 1, 1000)?
            }
            "rdb-storage-connection-string" => self.storage.rdb_account = account(v)?,
            "aof-storage-connection-string-0" => self.storage.aof_accounts[0] = account(v)?,
            "aof-storage-connection-string-1" => self.storage.aof_accounts[1] = account(v)?,
            "time-scale" => self.storage.time_scale = integer(v, 1, 1_000_000)?,
            "storage-prefix" => {
                let ok = !v.is_empty()
                    && v.len() <= 200
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
                    && !v.split('/').any(|p| p.is_empty() || p == "." || p == "..");
                if !ok {
                    return Err(ConfigError::Other(
                        "storage-prefix: use letters, digits, - _ . and / between non-empty parts"
                            .into(),
                    ));
                }
                self.storage.prefix = v.into();
            }
            "aof-spool-max-bytes" => {
                self.storage.spool_max_bytes = parse_memory(v)?.max(1024 * 1024)
            }
            "aof-durability" => {
                self.storage.aof_durability = match v.to_ascii_lowercase().as_str() {
                    "local" => Durability::Local,
                    "store" => Durability::Store,
                    _ => return Err(ConfigError::NotOneOf("local, store")),
                }
            }
            _ => unreachable!("listed in PARAMETERS"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn flags_like_redis_server() {
        let c = NodeConfig::from_args(&args(&[
            "--port",
            "7000",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--requirepass",
            "k",
        ]))
        .unwrap();
        assert_eq!(c.port, 7000);
        assert!(c.save.is_empty());
        assert!(c.appendonly);
        assert_eq!(c.requirepass.as_deref(), Some("k"));
        let c = NodeConfig::from_args(&args(&["--save", "900", "1", "300", "10"])).unwrap();
        assert_eq!(c.save, vec![(900, 1), (300, 10)]);
    }

    #[test]
    fn bad_flags_are_refused_like_redis_server() {
        let err = NodeConfig::from_args(&args(&["--port", "7000", "--nosuch", "x"])).unwrap_err();
        assert!(err.contains("FATAL CONFIG FILE ERROR"), "{err}");
        assert!(err.contains(">>> 'nosuch x'"), "{err}");
        assert!(err.contains("Bad directive"), "{err}");
        assert!(NodeConfig::from_args(&args(&["--appendfsync", "sometimes"])).is_err());
        assert!(NodeConfig::from_args(&args(&["--port", "99999"])).is_err());
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1kb").unwrap(), 1024);
        assert_eq!(parse_memory("1k").unwrap(), 1000);
        assert_eq!(parse_memory("2GB").unwrap(), 2 << 30);
        assert!(parse_memory("x").is_err());
    }

    #[test]
    fn config_set_respects_immutability() {
        let mut c = NodeConfig::default();
        assert_eq!(c.set("port", "1"), Err(ConfigError::Immutable));
        c.set("maxclients", "5").unwrap();
        assert_eq!(c.get("maxclients").unwrap(), "5");
    }

    #[test]
    fn output_buffer_limits_follow_config_set() {
        let mut c = NodeConfig::default();
        assert_eq!(c.output_buffer_limits, OutputBufferLimits::default());
        c.set(
            "client-output-buffer-limit",
            "normal 1mb 512kb 3 pubsub 0 0 0",
        )
        .unwrap();
        assert_eq!(
            c.get("client-output-buffer-limit").unwrap(),
            "normal 1048576 524288 3 slave 268435456 67108864 60 pubsub 0 0 0"
        );
        let normal = OutputBufferLimit {
            hard_bytes: 1 << 20,
            soft_bytes: 1 << 19,
            soft_secs: 3,
        };
        assert_eq!(c.output_buffer_limits.normal, normal);
        assert_eq!(
            c.output_buffer_limits.for_client(1),
            OutputBufferLimit::default()
        );
        // A refused value changes neither copy.
        assert!(c.set("client-output-buffer-limit", "normal 1mb").is_err());
        assert_eq!(c.output_buffer_limits.normal, normal);
    }

    #[test]
    fn output_limits_close_at_the_hard_limit_or_after_the_soft_seconds() {
        let limit = OutputBufferLimit {
            hard_bytes: 100,
            soft_bytes: 10,
            soft_secs: 2,
        };
        let mut since = None;
        assert!(!limit.exceeded(5, &mut since, 0));
        assert!(!limit.exceeded(10, &mut since, 1_000));
        assert_eq!(since, Some(1_000));
        assert!(!limit.exceeded(50, &mut since, 3_000));
        assert!(limit.exceeded(50, &mut since, 3_001));
        // Under the soft limit again: the time starts over.
        assert!(!limit.exceeded(9, &mut since, 3_002));
        assert_eq!(since, None);
        assert!(limit.exceeded(100, &mut since, 3_003));
    }
}
