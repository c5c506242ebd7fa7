//! The caches' data-plane nodes: one actor (a task with an inbox) per cache owns its node
//! and does everything to it in order — start, restart with new settings, reboot onto a
//! fresh machine, stop, key changes — so a slow start (a restore from a store that does
//! not answer) holds up that cache alone, never the API or another cache. The actor also
//! watches its node: a node that panicked, lost a worker or stopped answering is restarted
//! from its files and the cache's status says what happened. The node settings a cache's
//! resource means, and reading the retention policy of each node's accounts, live here too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use control::model::{Cache, NodeStatus};
use control::validate::Persistence;
use node::NodeConfig;
use node::config::{Durability, StorageConfig};
use tokio::sync::{mpsc, oneshot};

use crate::process::ChildNode;

/// How caches' nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeRuntime {
    /// Tasks inside the control plane (the default: fast to start, light).
    #[default]
    InProcess,
    /// Child `cacheplane node` processes, restarted when they die.
    Process,
}

/// How the supervisor runs nodes.
#[derive(Clone)]
pub struct NodeSettings {
    /// The address nodes listen on (`--node-bind`).
    pub bind: String,
    /// The host name caches report: their certificates name it.
    pub host: String,
    /// Issues each cache's certificate.
    pub ca: Arc<tls::LocalCa>,
    pub runtime: NodeRuntime,
    pub data_dir: PathBuf,
    /// Caches accept DEBUG (fault injection in tests); Azure blocks it.
    pub allow_debug_command: bool,
}

/// The actors of the caches, by store key.
pub struct Supervisor {
    settings: Arc<NodeSettings>,
    /// Held only to find or add an actor, never across an `.await`.
    actors: Mutex<HashMap<String, Actor>>,
    /// What each cache's accounts reported about their retention, by store key and account
    /// display name.
    policies: Arc<Mutex<HashMap<String, HashMap<String, Found>>>>,
}

/// A cache's actor, as the supervisor reaches it.
struct Actor {
    inbox: mpsc::Sender<Msg>,
    status: Arc<Mutex<NodeStatus>>,
    /// Faults drills set on the cache's storage accounts.
    faults: blob::FaultSwitch,
}

/// Messages an actor waits for at most this many of (a handler's send waits beyond it).
const ACTOR_INBOX_MAX: usize = 16;
/// How often an actor checks on its node.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a question to a busy actor (events for the accounting) may wait for its answer.
const ACTOR_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a start does with the node's local files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Keep them (new settings, a control-plane restart): the data comes back from them.
    KeepData,
    /// A fresh machine (forceReboot): the local disk is discarded and the node comes back
    /// from its storage accounts, unless an account is behind the local AOF, in which case
    /// the local files are kept so that no acknowledged write is lost.
    FreshMachine,
}

/// What a start did.
#[derive(Debug, Clone, Default)]
pub struct Started {
    /// What the node restored from a storage account.
    pub restored: Option<String>,
    /// Why the local files were kept on a fresh-machine start.
    pub kept_local: Option<String>,
}

enum Msg {
    Start {
        cache: Box<Cache>,
        mode: StartMode,
        reply: oneshot::Sender<anyhow::Result<Started>>,
    },
    /// Stops the node; `delete`: without a final snapshot (the cache is being deleted;
    /// its owner removes the files).
    Stop {
        delete: bool,
        reply: oneshot::Sender<()>,
    },
    SetKeys {
        cache: Box<Cache>,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    /// Gives the running node the cache's memory settings and firewall without a restart.
    SetLive {
        cache: Box<Cache>,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    Control {
        reply: oneshot::Sender<Option<node::NodeControl>>,
    },
    /// Empties every database of the running node (FLUSHALL).
    Flush {
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    Events {
        reply: oneshot::Sender<Vec<blob::BlobEvent>>,
    },
    /// A fault drill: the node dies as a machine losing power would (and, `lose_disk`,
    /// its local disk with it) and starts again.
    Crash {
        lose_disk: bool,
        reply: oneshot::Sender<anyhow::Result<Crashed>>,
    },
}

/// What a drill's crash did.
#[derive(Debug, Clone)]
pub struct Crashed {
    /// When the node died (ms since the epoch).
    pub at_ms: u64,
    /// Its persistence the moment before.
    pub before: node::PersistenceFacts,
    /// From the crash until the node served again.
    pub recovery: Duration,
    /// Its persistence once it served again.
    pub after: node::PersistenceFacts,
}

/// An account's retention as its store reported it, or why it could not.
#[derive(Debug, Clone)]
pub struct Found {
    pub retention: Option<blob::Retention>,
    /// Which settings were read, or why none could be.
    pub detail: String,
}

/// How often a running cache's accounts are asked for their retention again (a policy
/// changed in the store shows up within this).
const POLICY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Reads the retention of `accounts` now and every [`POLICY_REFRESH_INTERVAL`] while
/// `alive` lives.
async fn read_policies(
    key: String,
    accounts: Vec<blob::Account>,
    prefix: String,
    policies: Arc<Mutex<HashMap<String, HashMap<String, Found>>>>,
    alive: Weak<()>,
) {
    while alive.strong_count() > 0 {
        let mut found = HashMap::new();
        for a in &accounts {
            let f = match blob::discover(a, &prefix).await {
                Ok(d) => Found {
                    retention: Some(d.retention),
                    detail: format!("read from the store's {}", d.from),
                },
                Err(e) => {
                    if !matches!(e, blob::DiscoveryError::NotReported(_)) {
                        tracing::warn!(cache = %key, error = %e, "could not read an account's retention policy");
                    }
                    Found {
                        retention: None,
                        detail: e.to_string(),
                    }
                }
            };
            found.insert(a.display_name(), f);
        }
        {
            // Checked under the lock that `stop` removes under: a stopped cache's entry
            // is never put back.
            let mut policies = policies.lock().expect("policies lock");
            if alive.strong_count() == 0 {
                return;
            }
            policies.insert(key.clone(), found);
        }
        tokio::time::sleep(POLICY_REFRESH_INTERVAL).await;
    }
}

/// The passwords the node takes: the cache's keys, unless `authnotrequired`.
pub(crate) fn auth_keys(cache: &Cache) -> (Option<String>, Option<String>) {
    let authnotrequired = cache
        .redis_configuration
        .get("authnotrequired")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if authnotrequired {
        (None, None)
    } else {
        (
            Some(cache.primary_key.clone()),
            Some(cache.secondary_key.clone()),
        )
    }
}

/// The node settings a running node takes without a restart: what `cache`'s memory
/// settings come to (maxmemory, its policy and samples, maxclients) and its firewall
/// rules; at start, and live when they change.
fn live_settings(
    cache: &Cache,
    runtime: NodeRuntime,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let memory = control::memory::resolve(&cache.sku, &cache.redis_configuration)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut settings = memory.node_settings();
    let mut firewall = cache.children.firewall_setting();
    // A child process is probed and managed over its own ports, from this machine: with
    // rules, loopback stays let in, or its supervisor would be shut out too (the API says
    // so).
    if runtime == NodeRuntime::Process && !firewall.is_empty() {
        firewall.push_str(" 127.0.0.1 ::1");
    }
    settings.push(("cacheplane-firewall", firewall));
    Ok(settings)
}

/// The local directory of a cache's node.
pub fn cache_dir(cache: &Cache, data_dir: &Path) -> PathBuf {
    data_dir.join("caches").join(cache.instance_tag())
}

/// Issues (or renews, within its last 30 days) the certificate of `cache`'s node; returns
/// its files and whether a new one was issued.
fn renew_certificate(
    cache: &Cache,
    settings: &NodeSettings,
) -> anyhow::Result<((PathBuf, PathBuf), bool)> {
    let dir = cache_dir(cache, &settings.data_dir).join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let issued = settings
        .ca
        .ensure(&cert, &key, &tls::server_names(&settings.host))?;
    Ok(((cert, key), issued))
}

/// How often a running node's certificate is checked for renewal.
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// cacheplane's redisConfiguration keys that set a node setting (client limits, the AOF's
/// fsync policy), and the node setting each is.
const NODE_SETTING_KEYS: &[(&str, &str)] = &[
    (control::drill::APPENDFSYNC, "appendfsync"),
    (
        "cacheplane-client-output-buffer-limit",
        "client-output-buffer-limit",
    ),
    (
        "cacheplane-client-query-buffer-limit",
        "client-query-buffer-limit",
    ),
];

/// Checks cacheplane's node setting keys of a `redisConfiguration` as the node takes
/// them: ARM's 400 naming the key, instead of a cache that fails to start.
pub fn check_node_settings(
    config: &std::collections::BTreeMap<String, String>,
) -> Result<(), control::ArmError> {
    if let Some(v) = config.get(control::drill::APPENDFSYNC)
        && v != "always"
        && v != "everysec"
    {
        let key = control::drill::APPENDFSYNC;
        return Err(control::ArmError::bad_request(
            "InvalidRedisConfiguration",
            format!("properties.redisConfiguration.{key}"),
            format!("{key} '{v}' is not one of always, everysec."),
        ));
    }
    let mut node = NodeConfig::default();
    for (key, name) in NODE_SETTING_KEYS {
        if let Some(value) = config.get(*key) {
            node.set(name, value).map_err(|e| {
                control::ArmError::bad_request(
                    "InvalidRedisConfiguration",
                    format!("properties.redisConfiguration.{key}"),
                    format!("{key} '{value}': {e}"),
                )
            })?;
        }
    }
    Ok(())
}

/// The node settings for `cache`.
pub fn node_config(cache: &Cache, settings: &NodeSettings) -> anyhow::Result<NodeConfig> {
    let data_dir = &settings.data_dir;
    let persistence = control::validate::persistence(&cache.sku, &cache.redis_configuration)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let tag = cache.instance_tag();
    let dir = cache_dir(cache, data_dir);
    control::store::create_private_dir(&dir)?;
    let default_account = blob::Account::Local {
        path: data_dir.join("storage"),
    };
    // TLS always, on sslPort, with a certificate of the local CA for the names clients use;
    // the plain port only while enableNonSslPort.
    let (cert, key) = renew_certificate(cache, settings)?.0;
    let tls = node::config::TlsConfig {
        port: cache.ssl_port,
        cert_file: Some(cert),
        key_file: Some(key),
        auth_clients: tls::ClientAuth::No,
        protocols: match cache.minimum_tls_version.as_deref() {
            Some("1.3") => "TLSv1.3".into(),
            _ => "TLSv1.2 TLSv1.3".into(),
        },
        ..Default::default()
    };
    let mut cfg = NodeConfig {
        port: if cache.enable_non_ssl_port {
            cache.port
        } else {
            0
        },
        tls,
        bind: vec![settings.bind.clone()],
        dir,
        managed: true,
        // The control plane's own key for its connection to a child node: random per
        // start, never a customer's.
        admin_key: Some(control::model::new_access_key()),
        ..NodeConfig::default()
    };
    if settings.allow_debug_command {
        cfg.enable_debug_command = node::DebugCommand::Yes;
    }
    cfg.save = Vec::new();
    (cfg.requirepass, cfg.requirepass_secondary) = auth_keys(cache);
    // maxclients is the SKU's (read-only in Azure's redisConfiguration); maxmemory is the
    // SKU's size less maxmemory-reserved and maxfragmentationmemory-reserved, both
    // unavailable for data in Azure, times cacheplane-memory-scale (control::memory).
    for (name, value) in live_settings(cache, settings.runtime)? {
        cfg.set(name, &value)
            .map_err(|e| anyhow::anyhow!("node setting {name} {value}: {e}"))?;
    }
    // What a customer may set beyond Azure's keys (the per-client bounds, the fsync
    // policy): Redis's format and units, checked by the node's own CONFIG rules.
    for (key, name) in NODE_SETTING_KEYS {
        if let Some(value) = cache.redis_configuration.get(*key) {
            cfg.set(name, value)
                .map_err(|e| anyhow::anyhow!("{key} {value}: {e}"))?;
        }
    }
    let mut storage = StorageConfig {
        prefix: format!("caches/{tag}"),
        ..StorageConfig::default()
    };
    match persistence {
        Persistence::None => {}
        Persistence::Rdb {
            frequency_min,
            max_snapshot_count,
            account,
        } => {
            storage.rdb_backup_enabled = true;
            storage.rdb_backup_frequency_min = frequency_min;
            storage.rdb_backup_max_snapshot_count = max_snapshot_count;
            storage.rdb_account = Some(account.unwrap_or(default_account));
        }
        Persistence::Aof { primary, secondary } => {
            cfg.appendonly = true;
            storage.aof_accounts = [Some(primary.unwrap_or(default_account)), secondary];
            if cache
                .redis_configuration
                .get("cacheplane-aof-durability")
                .is_some_and(|v| v == "store")
            {
                storage.aof_durability = Durability::Store;
            }
        }
    }
    if let Some(scale) = cache
        .redis_configuration
        .get("cacheplane-time-scale")
        .and_then(|v| v.parse().ok())
    {
        storage.time_scale = scale;
    }
    cfg.storage = storage;
    Ok(cfg)
}

impl Supervisor {
    pub fn new(settings: NodeSettings) -> Supervisor {
        Supervisor {
            settings: Arc::new(settings),
            actors: Mutex::new(HashMap::new()),
            policies: Default::default(),
        }
    }

    /// The inbox of `key`'s actor, started if there is none.
    fn inbox(&self, key: &str) -> mpsc::Sender<Msg> {
        let mut actors = self.actors.lock().expect("actors lock");
        if let Some(a) = actors.get(key)
            && !a.inbox.is_closed()
        {
            return a.inbox.clone();
        }
        let (tx, rx) = mpsc::channel(ACTOR_INBOX_MAX);
        let status = Arc::new(Mutex::new(NodeStatus {
            state: "Stopped".into(),
            ..Default::default()
        }));
        let faults = blob::FaultSwitch::default();
        let actor = CacheActor {
            faults: faults.clone(),
            key: key.to_string(),
            settings: self.settings.clone(),
            policies: self.policies.clone(),
            status: status.clone(),
            node: None,
            cache: None,
            alive: None,
            leftover_events: Vec::new(),
        };
        tokio::spawn(actor.run(rx));
        actors.insert(
            key.to_string(),
            Actor {
                inbox: tx.clone(),
                status,
                faults,
            },
        );
        tx
    }

    /// The inbox of `key`'s actor if it has one.
    fn existing(&self, key: &str) -> Option<mpsc::Sender<Msg>> {
        self.actors
            .lock()
            .expect("actors lock")
            .get(key)
            .map(|a| a.inbox.clone())
    }

    /// Starts (or restarts) the node of `cache`; returns what was restored.
    pub async fn start(
        &self,
        key: &str,
        cache: &Cache,
        mode: StartMode,
    ) -> anyhow::Result<Started> {
        let (reply, answer) = oneshot::channel();
        self.inbox(key)
            .send(Msg::Start {
                cache: Box::new(cache.clone()),
                mode,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the cache's actor is gone"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the cache's actor stopped while starting the node"))?
    }

    /// Stops the node of `key` (with a final snapshot unless `delete`) and ends its actor.
    pub async fn stop(&self, key: &str, delete: bool) {
        if let Some(inbox) = self.existing(key) {
            let (reply, answer) = oneshot::channel();
            if inbox.send(Msg::Stop { delete, reply }).await.is_ok() {
                let _ = answer.await;
            }
        }
        self.actors.lock().expect("actors lock").remove(key);
        self.policies.lock().expect("policies lock").remove(key);
    }

    /// Stops every node keeping its data: the control plane's restart is not the caches'.
    pub async fn stop_all(&self) {
        let keys: Vec<String> = self
            .actors
            .lock()
            .expect("actors lock")
            .keys()
            .cloned()
            .collect();
        let stops = keys.iter().map(|k| self.stop(k, false));
        futures_util::future::join_all(stops).await;
    }

    /// What the accounts of each running cache reported about their retention.
    pub fn policies(&self) -> HashMap<String, HashMap<String, Found>> {
        self.policies.lock().expect("policies lock").clone()
    }

    /// What the supervisor knows of `key`'s node.
    pub fn status(&self, key: &str) -> Option<NodeStatus> {
        let actors = self.actors.lock().expect("actors lock");
        Some(actors.get(key)?.status.lock().expect("status lock").clone())
    }

    /// The object-store events each node recorded since the last call. An actor busy
    /// with a long start answers later: its events wait in its node.
    pub async fn drain_events(&self) -> Vec<(String, Vec<blob::BlobEvent>)> {
        let inboxes: Vec<(String, mpsc::Sender<Msg>)> = self
            .actors
            .lock()
            .expect("actors lock")
            .iter()
            .map(|(k, a)| (k.clone(), a.inbox.clone()))
            .collect();
        let asks = inboxes.into_iter().map(|(k, inbox)| async move {
            let (reply, answer) = oneshot::channel();
            let asked = async {
                inbox.send(Msg::Events { reply }).await.ok()?;
                answer.await.ok()
            };
            let events = tokio::time::timeout(ACTOR_ANSWER_TIMEOUT, asked)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            (k, events)
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .filter(|(_, e)| !e.is_empty())
            .collect()
    }

    /// Gives the running node of `key` its cache's current access keys, at once.
    pub async fn set_keys(&self, key: &str, cache: &Cache) -> anyhow::Result<()> {
        let cache = Box::new(cache.clone());
        self.ask(key, |reply| Msg::SetKeys { cache, reply }).await
    }

    /// Gives the running node of `key` its cache's memory settings (maxmemory, its policy,
    /// maxclients), at once and keeping its data.
    pub async fn set_live(&self, key: &str, cache: &Cache) -> anyhow::Result<()> {
        let cache = Box::new(cache.clone());
        self.ask(key, |reply| Msg::SetLive { cache, reply }).await
    }

    /// Sends the actor of `key` the message `msg` builds around its reply channel and
    /// waits for the answer; Ok when no actor runs (nothing to change).
    async fn ask(
        &self,
        key: &str,
        msg: impl FnOnce(oneshot::Sender<anyhow::Result<()>>) -> Msg,
    ) -> anyhow::Result<()> {
        let Some(inbox) = self.existing(key) else {
            return Ok(());
        };
        let gone = || anyhow::anyhow!("the cache's actor is gone");
        let (reply, answer) = oneshot::channel();
        inbox.send(msg(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Empties every database of the running node of `key`, as FLUSHALL does.
    pub async fn flush(&self, key: &str) -> anyhow::Result<()> {
        self.existing(key)
            .ok_or_else(|| anyhow::anyhow!("the cache has no running node"))?;
        self.ask(key, |reply| Msg::Flush { reply }).await
    }

    /// The fault switch of `key`'s storage accounts, while it has an actor.
    pub fn faults(&self, key: &str) -> Option<blob::FaultSwitch> {
        let actors = self.actors.lock().expect("actors lock");
        Some(actors.get(key)?.faults.clone())
    }

    /// Crashes the node of `key` for a drill and waits until it serves again.
    pub async fn crash(&self, key: &str, lose_disk: bool) -> anyhow::Result<Crashed> {
        let inbox = self
            .existing(key)
            .ok_or_else(|| anyhow::anyhow!("the cache has no running node"))?;
        let gone = || anyhow::anyhow!("the cache's actor is gone");
        let (reply, answer) = oneshot::channel();
        inbox
            .send(Msg::Crash { lose_disk, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// A handle for export and import on the running node of `key` (in-process nodes).
    pub async fn control(&self, key: &str) -> Option<node::NodeControl> {
        let inbox = self.existing(key)?;
        let (reply, answer) = oneshot::channel();
        inbox.send(Msg::Control { reply }).await.ok()?;
        answer.await.ok().flatten()
    }
}

/// One cache's actor: owns its node.
struct CacheActor {
    key: String,
    /// Given to each node it starts.
    faults: blob::FaultSwitch,
    settings: Arc<NodeSettings>,
    policies: Arc<Mutex<HashMap<String, HashMap<String, Found>>>>,
    status: Arc<Mutex<NodeStatus>>,
    node: Option<Node>,
    /// The settings the node runs with, for restarts after a failure.
    cache: Option<Cache>,
    /// The policy reader runs while this lives.
    alive: Option<Arc<()>>,
    /// Events of nodes stopped since the accounting last asked (a restart's own events).
    leftover_events: Vec<blob::BlobEvent>,
}

impl CacheActor {
    async fn run(mut self, mut inbox: mpsc::Receiver<Msg>) {
        let mut health = tokio::time::interval(HEALTH_INTERVAL);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut certs = tokio::time::interval(CERT_CHECK_INTERVAL);
        certs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = certs.tick() => self.renew_certificate().await,
                msg = inbox.recv() => match msg {
                    Some(Msg::Stop { delete, reply }) => {
                        self.stop(delete).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(msg) => self.handle(msg).await,
                    None => {
                        self.stop(false).await;
                        return;
                    }
                },
                _ = health.tick() => self.check_health().await,
            }
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Start { cache, mode, reply } => {
                let started = self.start(*cache, mode).await;
                let _ = reply.send(started);
            }
            Msg::Stop { .. } => unreachable!("handled by run"),
            Msg::SetKeys { cache, reply } => {
                let (primary, secondary) = auth_keys(&cache);
                let result = match &mut self.node {
                    Some(Node::InProcess(h)) => {
                        h.set_passwords(primary, secondary);
                        Ok(())
                    }
                    Some(Node::Process(c)) => c.set_passwords(primary, secondary).await,
                    None => Ok(()),
                };
                if result.is_ok() {
                    self.cache = Some(*cache);
                }
                let _ = reply.send(result);
            }
            Msg::SetLive { cache, reply } => {
                let result = self.set_live(&cache).await;
                if result.is_ok() {
                    // A restart after a failure starts with them too.
                    self.cache = Some(*cache);
                }
                let _ = reply.send(result);
            }
            Msg::Control { reply } => {
                let control = match &self.node {
                    Some(Node::InProcess(h)) => Some(h.control()),
                    _ => None,
                };
                let _ = reply.send(control);
            }
            Msg::Flush { reply } => {
                let result = match &mut self.node {
                    Some(Node::InProcess(h)) => h.control().flush_all().await,
                    Some(Node::Process(c)) => c.flush_all().await,
                    None => Err(anyhow::anyhow!("the cache's node is not running")),
                };
                let _ = reply.send(result);
            }
            Msg::Crash { lose_disk, reply } => {
                let _ = reply.send(self.crash(lose_disk).await);
            }
            Msg::Events { reply } => {
                let mut events = std::mem::take(&mut self.leftover_events);
                events.extend(match &self.node {
                    Some(Node::InProcess(h)) => h.drain_events(),
                    Some(Node::Process(c)) => c.drain_events().await,
                    None => Vec::new(),
                });
                let _ = reply.send(events);
            }
        }
    }

    async fn set_live(&mut self, cache: &Cache) -> anyhow::Result<()> {
        let settings = live_settings(cache, self.settings.runtime)?;
        let settings: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
        match &mut self.node {
            Some(Node::InProcess(h)) => h
                .control()
                .config_set(&settings)
                .await
                .map_err(|e| anyhow::anyhow!("set the node's live settings: {e}")),
            Some(Node::Process(c)) => c.config_set(&settings).await,
            None => Ok(()),
        }
    }

    fn set_state(&self, state: &str) {
        self.status.lock().expect("status lock").state = state.into();
    }

    async fn start(&mut self, cache: Cache, mode: StartMode) -> anyhow::Result<Started> {
        self.set_state("Starting");
        let dir = cache_dir(&cache, &self.settings.data_dir);
        let mut started = Started::default();
        let report = match self.node.take() {
            Some(node) => node.stop(mode == StartMode::KeepData).await,
            None => node::StopReport::default(),
        };
        self.leftover_events.extend(report.events);
        if mode == StartMode::FreshMachine {
            if report.unshipped.is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                let behind: Vec<String> = report
                    .unshipped
                    .iter()
                    .map(|(account, bytes)| format!("{account} lacks {bytes} bytes"))
                    .collect();
                let why = format!(
                    "its storage accounts were behind the local AOF ({}), so the node kept its local disk and lost no acknowledged write",
                    behind.join(", ")
                );
                tracing::warn!(cache = %self.key, "{why}");
                started.kept_local = Some(why);
            }
        }
        self.alive = None;
        self.policies
            .lock()
            .expect("policies lock")
            .remove(&self.key);
        let result = self.start_node(&cache).await;
        self.cache = Some(cache);
        match result {
            Ok(restored) => {
                started.restored = restored;
                self.set_state("Running");
                Ok(started)
            }
            Err(e) => {
                self.set_state("Failed");
                Err(e)
            }
        }
    }

    /// A drill's crash: the node dies without a stop (and its disk, `lose_disk`), then
    /// starts again from what survived.
    async fn crash(&mut self, lose_disk: bool) -> anyhow::Result<Crashed> {
        let (Some(Node::InProcess(handle)), Some(cache)) = (self.node.take(), self.cache.clone())
        else {
            anyhow::bail!("fault drills need a running node in the in-process runtime");
        };
        let before = handle.control().persistence_facts().await;
        let at_ms = chrono::Utc::now().timestamp_millis() as u64;
        let started = std::time::Instant::now();
        self.set_state("Restarting");
        let events = handle.crash().await;
        self.leftover_events.extend(events);
        self.alive = None;
        if lose_disk {
            let dir = cache_dir(&cache, &self.settings.data_dir);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(cache = %self.key, error = %e, "could not remove the lost machine's disk");
            }
        }
        if let Err(e) = self.start_node(&cache).await {
            self.set_state("Failed");
            return Err(e.context("the node did not come back after the drill's crash"));
        }
        let recovery = started.elapsed();
        self.set_state("Running");
        let after = match &self.node {
            Some(Node::InProcess(h)) => h.control().persistence_facts().await,
            _ => node::PersistenceFacts::default(),
        };
        Ok(Crashed {
            at_ms,
            before,
            recovery,
            after,
        })
    }

    async fn start_node(&mut self, cache: &Cache) -> anyhow::Result<Option<String>> {
        let mut cfg = node_config(cache, &self.settings)?;
        cfg.storage.faults = self.faults.clone();
        let storage = &cfg.storage;
        let accounts: Vec<blob::Account> = storage
            .rdb_account
            .iter()
            .chain(storage.aof_accounts.iter().flatten())
            .cloned()
            .collect();
        let prefix = storage.prefix.clone();
        let (node, restored) = match self.settings.runtime {
            NodeRuntime::InProcess => {
                let handle = node::start(cfg).await?;
                let restored = handle.restored();
                (Node::InProcess(handle), restored)
            }
            NodeRuntime::Process => {
                let client = tls::client_config(self.settings.ca.cert_pem().as_bytes())?;
                let child = ChildNode::start(&cfg, client).await?;
                let restored = child.restored().await;
                (Node::Process(Box::new(child)), restored)
            }
        };
        self.node = Some(node);
        let alive = Arc::new(());
        tokio::spawn(read_policies(
            self.key.clone(),
            accounts,
            prefix,
            self.policies.clone(),
            Arc::downgrade(&alive),
        ));
        self.alive = Some(alive);
        Ok(restored)
    }

    async fn stop(&mut self, delete: bool) {
        if let Some(node) = self.node.take() {
            node.stop(!delete).await;
        }
        self.alive = None;
        self.set_state("Stopped");
    }

    /// A running node whose certificate is near its end gets a new one: the node restarts
    /// with its data to serve it.
    async fn renew_certificate(&mut self) {
        let (Some(cache), Some(_)) = (self.cache.clone(), self.node.as_ref()) else {
            return;
        };
        match renew_certificate(&cache, &self.settings) {
            Ok((_, true)) => {
                tracing::info!(cache = %self.key, "restarting the node with its renewed certificate");
                if let Err(e) = self.start(cache, StartMode::KeepData).await {
                    tracing::error!(cache = %self.key, error = %e, "could not restart the node after renewing its certificate");
                }
            }
            Ok((_, false)) => {}
            Err(e) => {
                tracing::error!(cache = %self.key, error = %e, "could not renew the node's certificate")
            }
        }
    }

    /// Restarts a node that cannot serve any more, from its files.
    async fn check_health(&mut self) {
        let failure = match &mut self.node {
            Some(Node::InProcess(h)) => h.failure(),
            Some(Node::Process(c)) => c.probe().await.err().map(|e| format!("{e:#}")),
            None => None,
        };
        let (Some(failure), Some(cache)) = (failure, self.cache.clone()) else {
            return;
        };
        tracing::error!(cache = %self.key, failure, "the cache's node failed; restarting it from its files");
        self.set_state("Restarting");
        if let Some(node) = self.node.take() {
            let events = node.abort().await;
            self.leftover_events.extend(events);
        }
        let outcome = match self.start_node(&cache).await {
            Ok(_) => {
                self.set_state("Running");
                "restarted from its files".to_string()
            }
            Err(e) => {
                self.set_state("Failed");
                format!("could not be restarted: {e:#}")
            }
        };
        let mut status = self.status.lock().expect("status lock");
        status.restarts += 1;
        status.last_failure = Some(format!("{failure}; the node {outcome}"));
        status.last_failure_time = Some(chrono::Utc::now().to_rfc3339());
    }
}

/// A running node, in either runtime.
enum Node {
    InProcess(node::NodeHandle),
    Process(Box<ChildNode>),
}

impl Node {
    /// Stops the node (after a final snapshot when `keep_data`); says what its accounts
    /// did not get.
    async fn stop(self, keep_data: bool) -> node::StopReport {
        match (self, keep_data) {
            (Node::InProcess(h), true) => h.stop_keeping_data().await,
            (Node::InProcess(h), false) => h.stop().await,
            (Node::Process(c), keep) => c.stop(keep).await,
        }
    }

    /// Ends a broken node at once; returns the events it had recorded.
    async fn abort(self) -> Vec<blob::BlobEvent> {
        match self {
            Node::InProcess(h) => h.abort().await,
            Node::Process(c) => {
                c.kill().await;
                Vec::new()
            }
        }
    }
}
