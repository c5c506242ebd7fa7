//! The `Microsoft.Cache/redis` resource in ARM's JSON shape: what PUT and PATCH take, what
//! GET returns, and the cache record the control plane keeps (secrets included, never
//! returned).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The resource type as ARM spells it in ids and `type`.
pub const RESOURCE_TYPE: &str = "Microsoft.Cache/Redis";
/// The Redis version caches report (major.minor, as Azure does).
pub const REDIS_VERSION: &str = "7.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkuName {
    Basic,
    Standard,
    Premium,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkuFamily {
    C,
    P,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    pub name: SkuName,
    pub family: SkuFamily,
    pub capacity: i64,
}

/// PUT body (`RedisCreateParameters`). Unknown properties are ignored, as ARM does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateParameters {
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub zones: Vec<String>,
    pub properties: CreateProperties,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateProperties {
    pub sku: Sku,
    /// String values only, as in ARM.
    #[serde(default)]
    pub redis_configuration: BTreeMap<String, String>,
    #[serde(default)]
    pub enable_non_ssl_port: bool,
    pub redis_version: Option<String>,
    pub minimum_tls_version: Option<String>,
    pub public_network_access: Option<String>,
    pub shard_count: Option<i64>,
    pub replicas_per_master: Option<i64>,
    pub replicas_per_primary: Option<i64>,
}

/// PATCH body (`RedisUpdateParameters`): what is given replaces what the cache has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateParameters {
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub properties: UpdateProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProperties {
    pub sku: Option<Sku>,
    pub redis_configuration: Option<BTreeMap<String, String>>,
    pub enable_non_ssl_port: Option<bool>,
    pub minimum_tls_version: Option<String>,
    pub public_network_access: Option<String>,
}

/// `provisioningState` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisioningState {
    Creating,
    Updating,
    Deleting,
    Succeeded,
    Failed,
}

/// Keys of `redisConfiguration` that hold secrets: accepted on write, never returned.
pub const SECRET_CONFIG_KEYS: &[&str] = &[
    "rdb-storage-connection-string",
    "aof-storage-connection-string-0",
    "aof-storage-connection-string-1",
];

/// A cache as the control plane keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cache {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub zones: Vec<String>,
    pub sku: Sku,
    /// As given, secrets included.
    pub redis_configuration: BTreeMap<String, String>,
    pub enable_non_ssl_port: bool,
    pub minimum_tls_version: Option<String>,
    pub public_network_access: Option<String>,
    pub provisioning_state: ProvisioningState,
    /// The node's port on 127.0.0.1.
    pub port: u16,
    pub primary_key: String,
    pub secondary_key: String,
}

impl Cache {
    /// The ARM resource id.
    pub fn id(&self) -> String {
        resource_id(&self.subscription, &self.resource_group, &self.name)
    }

    /// GET's body: ARM's `RedisResource`, without secrets.
    pub fn to_resource(&self, host: &str) -> serde_json::Value {
        let config: BTreeMap<&str, &str> = self
            .redis_configuration
            .iter()
            .filter(|(k, _)| !SECRET_CONFIG_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(
                [("maxclients", "10000")]
                    .into_iter()
                    .filter(|(k, _)| !self.redis_configuration.contains_key(*k)),
            )
            .collect();
        serde_json::json!({
            "id": self.id(),
            "name": self.name,
            "type": RESOURCE_TYPE,
            "location": self.location,
            "tags": self.tags,
            "zones": self.zones,
            "properties": {
                "provisioningState": self.provisioning_state,
                "redisVersion": REDIS_VERSION,
                "sku": self.sku,
                "enableNonSslPort": self.enable_non_ssl_port,
                "redisConfiguration": config,
                "minimumTlsVersion": self.minimum_tls_version.as_deref().unwrap_or("1.2"),
                "publicNetworkAccess": self.public_network_access.as_deref().unwrap_or("Enabled"),
                "hostName": host,
                "port": self.port,
                // No TLS listener here: both ports name the plain one.
                "sslPort": self.port,
                "replicasPerMaster": 0,
                "replicasPerPrimary": 0,
                "linkedServers": [],
                "instances": [{"sslPort": self.port, "nonSslPort": self.port, "isMaster": true, "isPrimary": true}],
                "privateEndpointConnections": [],
                "accessKeys": null,
            }
        })
    }
}

pub fn resource_id(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{RESOURCE_TYPE}/{name}"
    )
}

/// A new access key: 32 bytes from the operating system's secure random source, in
/// base64, as Azure's keys look.
pub fn new_access_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
