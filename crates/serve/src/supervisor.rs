//! Starting and stopping caches' data-plane nodes (in-process tasks), with the node settings
//! a cache's resource means, and reading the retention policy of each node's accounts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use control::model::Cache;
use control::validate::Persistence;
use node::NodeConfig;
use node::config::{Durability, StorageConfig};

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

/// The nodes of running caches, by store key.
pub struct Supervisor {
    /// The address nodes listen on (`--node-bind`).
    bind: String,
    runtime: NodeRuntime,
    nodes: HashMap<String, Running>,
    /// What each cache's accounts reported about their retention, by store key and account
    /// display name.
    policies: Arc<Mutex<HashMap<String, HashMap<String, Found>>>>,
}

struct Running {
    node: Node,
    /// The policy reader runs while this lives.
    _alive: Arc<()>,
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

/// A short stable tag of a resource id, so two caches of the same name in different
/// resource groups never share a storage prefix or a directory.
fn id_tag(id: &str) -> String {
    // FNV-1a: stable across releases, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.to_ascii_lowercase().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{:08x}", h as u32)
}

/// The passwords the node takes: the cache's keys, unless `authnotrequired`.
fn auth_keys(cache: &Cache) -> (Option<String>, Option<String>) {
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

/// The node settings for `cache`.
pub fn node_config(cache: &Cache, data_dir: &Path, bind: &str) -> anyhow::Result<NodeConfig> {
    let persistence = control::validate::persistence(&cache.sku, &cache.redis_configuration)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let tag = format!(
        "{}-{}",
        cache.name.to_ascii_lowercase(),
        id_tag(&cache.id())
    );
    let dir = data_dir.join("caches").join(&tag);
    std::fs::create_dir_all(&dir)?;
    let default_account = blob::Account::Local {
        path: data_dir.join("storage"),
    };
    let mut cfg = NodeConfig {
        port: cache.port,
        bind: vec![bind.to_string()],
        dir,
        ..NodeConfig::default()
    };
    cfg.save = Vec::new();
    (cfg.requirepass, cfg.requirepass_secondary) = auth_keys(cache);
    if let Some(n) = cache
        .redis_configuration
        .get("maxclients")
        .and_then(|v| v.parse().ok())
    {
        cfg.maxclients = n;
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
    pub fn new(bind: String, runtime: NodeRuntime) -> Supervisor {
        Supervisor {
            bind,
            runtime,
            nodes: HashMap::new(),
            policies: Default::default(),
        }
    }

    /// Starts the node of `cache` (restoring from its accounts when it has persistence and
    /// no local files). `fresh_machine`: the node's local files are discarded first, as
    /// when a VM is replaced. Returns what was restored.
    pub async fn start(
        &mut self,
        key: &str,
        cache: &Cache,
        data_dir: &Path,
        fresh_machine: bool,
    ) -> anyhow::Result<Option<String>> {
        if fresh_machine {
            self.stop(key).await;
        } else {
            // A restart with new settings keeps the data, whatever the persistence was.
            self.stop_keeping_data(key).await;
        }
        let cfg = node_config(cache, data_dir, &self.bind)?;
        if fresh_machine {
            let _ = std::fs::remove_dir_all(&cfg.dir);
            std::fs::create_dir_all(&cfg.dir)?;
        }
        let storage = &cfg.storage;
        let accounts: Vec<blob::Account> = storage
            .rdb_account
            .iter()
            .chain(storage.aof_accounts.iter().flatten())
            .cloned()
            .collect();
        let prefix = storage.prefix.clone();
        let (node, restored) = match self.runtime {
            NodeRuntime::InProcess => {
                let handle = node::start(cfg).await?;
                let restored = handle.restored();
                (Node::InProcess(handle), restored)
            }
            NodeRuntime::Process => {
                let child = ChildNode::start(&cfg).await?;
                let restored = child.restored().await;
                (Node::Process(Box::new(child)), restored)
            }
        };
        let alive = Arc::new(());
        tokio::spawn(read_policies(
            key.to_string(),
            accounts,
            prefix,
            self.policies.clone(),
            Arc::downgrade(&alive),
        ));
        self.nodes.insert(
            key.to_string(),
            Running {
                node,
                _alive: alive,
            },
        );
        Ok(restored)
    }

    /// What the accounts of each running cache reported about their retention.
    pub fn policies(&self) -> HashMap<String, HashMap<String, Found>> {
        self.policies.lock().expect("policies lock").clone()
    }

    /// The object-store events each running node recorded since the last call.
    pub async fn drain_events(&self) -> Vec<(String, Vec<blob::BlobEvent>)> {
        let mut all = Vec::new();
        for (k, r) in &self.nodes {
            let events = match &r.node {
                Node::InProcess(h) => h.drain_events(),
                Node::Process(c) => c.drain_events().await,
            };
            if !events.is_empty() {
                all.push((k.clone(), events));
            }
        }
        all
    }

    /// Gives the running node of `key` its cache's current access keys, at once.
    pub async fn set_keys(&mut self, key: &str, cache: &Cache) -> anyhow::Result<()> {
        let Some(r) = self.nodes.get_mut(key) else {
            return Ok(());
        };
        let (primary, secondary) = auth_keys(cache);
        match &mut r.node {
            Node::InProcess(h) => h.set_passwords(primary, secondary),
            Node::Process(c) => c.set_passwords(primary, secondary).await?,
        }
        Ok(())
    }

    /// A handle for export and import on the running node of `key` (in-process nodes).
    pub fn control(&self, key: &str) -> Option<node::NodeControl> {
        match &self.nodes.get(key)?.node {
            Node::InProcess(h) => Some(h.control()),
            Node::Process(_) => None,
        }
    }

    async fn stop_keeping_data(&mut self, key: &str) {
        if let Some(r) = self.nodes.remove(key) {
            r.node.stop(true).await;
        }
        self.policies.lock().expect("policies lock").remove(key);
    }

    pub async fn stop(&mut self, key: &str) {
        if let Some(r) = self.nodes.remove(key) {
            r.node.stop(false).await;
        }
        self.policies.lock().expect("policies lock").remove(key);
    }

    /// Stops every node keeping its data: the control plane's restart is not the caches'.
    pub async fn stop_all(&mut self) {
        for (_, r) in self.nodes.drain() {
            r.node.stop(true).await;
        }
    }
}

/// A running node, in either runtime.
enum Node {
    InProcess(node::NodeHandle),
    Process(Box<ChildNode>),
}

impl Node {
    async fn stop(self, keep_data: bool) {
        match (self, keep_data) {
            (Node::InProcess(h), true) => h.stop_keeping_data().await,
            (Node::InProcess(h), false) => h.stop().await,
            (Node::Process(c), keep) => c.stop(keep).await,
        }
    }
}
