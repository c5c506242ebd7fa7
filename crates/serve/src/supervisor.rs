//! Starting and stopping caches' data-plane nodes (in-process tasks), with the node settings
//! a cache's resource means.

use std::collections::HashMap;
use std::path::Path;

use control::model::Cache;
use control::validate::Persistence;
use node::NodeConfig;
use node::config::{Durability, StorageConfig};

/// The nodes of running caches, by store key.
#[derive(Default)]
pub struct Supervisor {
    nodes: HashMap<String, node::NodeHandle>,
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

/// The node settings for `cache`.
pub fn node_config(cache: &Cache, data_dir: &Path) -> anyhow::Result<NodeConfig> {
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
        bind: vec!["127.0.0.1".into()],
        dir,
        ..NodeConfig::default()
    };
    cfg.save = Vec::new();
    let authnotrequired = cache
        .redis_configuration
        .get("authnotrequired")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !authnotrequired {
        cfg.requirepass = Some(cache.primary_key.clone());
        cfg.requirepass_secondary = Some(cache.secondary_key.clone());
    }
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
        self.stop(key).await;
        let cfg = node_config(cache, data_dir)?;
        if fresh_machine {
            let _ = std::fs::remove_dir_all(&cfg.dir);
            std::fs::create_dir_all(&cfg.dir)?;
        }
        let handle = node::start(cfg).await?;
        let restored = handle.restored();
        self.nodes.insert(key.to_string(), handle);
        Ok(restored)
    }

    /// The object-store events each running node recorded since the last call.
    pub fn drain_events(&self) -> Vec<(String, Vec<blob::BlobEvent>)> {
        self.nodes
            .iter()
            .map(|(k, h)| (k.clone(), h.drain_events()))
            .filter(|(_, e)| !e.is_empty())
            .collect()
    }

    pub async fn stop(&mut self, key: &str) {
        if let Some(h) = self.nodes.remove(key) {
            h.stop().await;
        }
    }

    pub async fn stop_all(&mut self) {
        for (_, h) in self.nodes.drain() {
            h.stop().await;
        }
    }
}
