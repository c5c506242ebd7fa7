//! The `Microsoft.Cache/redis` resource in ARM's JSON shape: what PUT and PATCH take, what
//! GET returns, and the cache record the control plane keeps (secrets included, never
//! returned).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The resource type as ARM spells it in ids and `type`.
pub const RESOURCE_TYPE: &str = "Microsoft.Cache/Redis";
/// The Redis version caches report (major.minor, as Azure does).
pub const REDIS_VERSION: &str = "7.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
/// Read in any case, as ARM does (`az redis create --vm-size p1` sends family `p`).
pub enum SkuName {
    #[serde(alias = "basic", alias = "BASIC")]
    Basic,
    #[serde(alias = "standard", alias = "STANDARD")]
    Standard,
    #[serde(alias = "premium", alias = "PREMIUM")]
    Premium,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SkuFamily {
    #[serde(alias = "c")]
    C,
    #[serde(alias = "p")]
    P,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    pub name: SkuName,
    pub family: SkuFamily,
    pub capacity: i64,
}

/// PUT body (`RedisCreateParameters`). Unknown properties are ignored, as ARM does.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateParameters {
    #[schema(min_length = 1, pattern = "\\S")]
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub zones: Vec<String>,
    pub properties: CreateProperties,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProperties {
    pub sku: Sku,
    /// String values, as in ARM (numbers and booleans are read as their text).
    #[serde(default, deserialize_with = "settings")]
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
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateParameters {
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub properties: UpdateProperties,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProperties {
    pub sku: Option<Sku>,
    #[serde(default, deserialize_with = "optional_settings")]
    pub redis_configuration: Option<BTreeMap<String, String>>,
    pub enable_non_ssl_port: Option<bool>,
    pub minimum_tls_version: Option<String>,
    pub public_network_access: Option<String>,
    /// Checked as on create; caches keep running (and reporting) 7.0.
    pub redis_version: Option<String>,
}

/// `provisioningState` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// The node's plain port (`port`, open only with `enableNonSslPort`).
    pub port: u16,
    /// The node's TLS port (`sslPort`); 0 in records from before TLS (one is allocated
    /// when the control plane starts).
    #[serde(default)]
    pub ssl_port: u16,
    pub primary_key: String,
    pub secondary_key: String,
    /// A random id of this cache instance: its local directory and storage prefix are
    /// named by it, so a cache deleted and created again under the same name never finds
    /// the old one's data. Empty in records from before it existed (see `instance_tag`).
    #[serde(default)]
    pub uid: String,
    /// Firewall rules, the patch schedule and the other child resources.
    #[serde(default, skip_serializing_if = "crate::children::Children::is_empty")]
    pub children: crate::children::Children,
}

impl Cache {
    /// The ARM resource id.
    pub fn id(&self) -> String {
        resource_id(&self.subscription, &self.resource_group, &self.name)
    }

    /// The name of this cache instance's local directory and storage prefix.
    pub fn instance_tag(&self) -> String {
        let uid = if self.uid.is_empty() {
            legacy_tag(&self.id())
        } else {
            self.uid.clone()
        };
        format!("{}-{uid}", self.name.to_ascii_lowercase())
    }

    /// `listKeys`' answer.
    pub fn access_keys(&self) -> AccessKeys {
        AccessKeys {
            primary_key: self.primary_key.clone(),
            secondary_key: self.secondary_key.clone(),
        }
    }

    /// GET's body: ARM's `RedisResource`, without secrets (and without storage warnings,
    /// which the control plane adds).
    pub fn to_resource(&self, host: &str) -> RedisResource {
        let mut config: BTreeMap<String, String> = self
            .redis_configuration
            .iter()
            .filter(|(k, _)| !SECRET_CONFIG_KEYS.contains(&k.as_str()))
            .filter(|(k, _)| !crate::memory::READ_ONLY_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // The memory settings as they apply, defaults included, as Azure reports them (a
        // stored record was checked when it was written).
        if let Ok(memory) = crate::memory::resolve(&self.sku, &self.redis_configuration) {
            for (k, v) in memory.reported() {
                config.insert(k.to_string(), v);
            }
        }
        RedisResource {
            id: self.id(),
            name: self.name.clone(),
            kind: RESOURCE_TYPE.to_string(),
            location: self.location.clone(),
            tags: self.tags.clone(),
            zones: self.zones.clone(),
            properties: RedisProperties {
                provisioning_state: self.provisioning_state,
                redis_version: REDIS_VERSION.to_string(),
                sku: self.sku.clone(),
                enable_non_ssl_port: self.enable_non_ssl_port,
                redis_configuration: config,
                minimum_tls_version: self
                    .minimum_tls_version
                    .clone()
                    .unwrap_or_else(|| "1.2".into()),
                public_network_access: self
                    .public_network_access
                    .clone()
                    .unwrap_or_else(|| "Enabled".into()),
                host_name: host.to_string(),
                port: self.port,
                ssl_port: self.ssl_port,
                replicas_per_master: 0,
                replicas_per_primary: 0,
                linked_servers: self
                    .children
                    .linked_servers
                    .keys()
                    .map(|n| ResourceRef {
                        id: format!("{}/linkedServers/{n}", self.id()),
                    })
                    .collect(),
                instances: vec![RedisInstance {
                    ssl_port: self.ssl_port,
                    non_ssl_port: self.port,
                    is_master: true,
                    is_primary: true,
                }],
                private_endpoint_connections: self
                    .children
                    .private_endpoint_connections
                    .keys()
                    .map(|n| ResourceRef {
                        id: format!("{}/privateEndpointConnections/{n}", self.id()),
                    })
                    .collect(),
                access_keys: None,
                storage_warnings: Vec::new(),
                node_status: None,
            },
        }
    }
}

/// ARM's `RedisResource`, as GET, PUT, PATCH and lists return it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisResource {
    pub id: String,
    pub name: String,
    /// `Microsoft.Cache/Redis`.
    #[serde(rename = "type")]
    pub kind: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub zones: Vec<String>,
    pub properties: RedisProperties,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisProperties {
    pub provisioning_state: ProvisioningState,
    pub redis_version: String,
    pub sku: Sku,
    pub enable_non_ssl_port: bool,
    /// Settings as given, without the connection strings (write-only), with the memory
    /// settings as they apply: `maxclients` and the reservations (MB) as Azure reports
    /// them, and cacheplane's read-only `cacheplane-maxmemory-bytes`, the node's
    /// `maxmemory` after the reservations and `cacheplane-memory-scale`.
    pub redis_configuration: BTreeMap<String, String>,
    pub minimum_tls_version: String,
    pub public_network_access: String,
    pub host_name: String,
    pub port: u16,
    pub ssl_port: u16,
    pub replicas_per_master: u32,
    pub replicas_per_primary: u32,
    pub linked_servers: Vec<ResourceRef>,
    pub instances: Vec<RedisInstance>,
    pub private_endpoint_connections: Vec<ResourceRef>,
    /// Never present: keys come from `listKeys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_keys: Option<AccessKeys>,
    /// cacheplane's extension: what soft delete or versioning on the cache's storage
    /// accounts is costing, with numbers (empty when nothing is retained).
    pub storage_warnings: Vec<StorageWarning>,
    /// cacheplane's extension: the node as its supervisor sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_status: Option<NodeStatus>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisInstance {
    pub ssl_port: u16,
    pub non_ssl_port: u16,
    pub is_master: bool,
    pub is_primary: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceRef {
    pub id: String,
}

/// `listKeys` and `regenerateKey`'s answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeys {
    pub primary_key: String,
    pub secondary_key: String,
}

/// A soft-delete or versioning warning on one of the cache's storage accounts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageWarning {
    pub level: accounting::Level,
    pub code: String,
    /// What is happening and what to change.
    pub message: String,
    /// The account's display name (kind, account or bucket, endpoint; no secrets).
    pub account: String,
    pub policy: accounting::Policy,
    pub policy_source: accounting::PolicySource,
    /// Which store settings the policy was read from, or why it was not.
    pub policy_detail: String,
    pub live_bytes: u64,
    pub retained_bytes: u64,
    /// Retained bytes per live byte (null: retained bytes and nothing live).
    pub retained_ratio: Option<f64>,
    /// Retained bytes once expiry balances churn (null: grows without bound).
    pub projected_retained_bytes: Option<u64>,
    pub monthly_cost_retained_usd: f64,
}

/// A list of caches (`RedisListResult`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceList {
    pub value: Vec<RedisResource>,
    /// The next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// `regenerateKey`'s body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegenerateKeyParameters {
    /// `Primary` or `Secondary`.
    #[schema(pattern = "^(Primary|Secondary|primary|secondary)$")]
    pub key_type: String,
}

/// `forceReboot`'s body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebootParameters {
    /// `PrimaryNode`, `SecondaryNode` or `AllNodes`.
    #[schema(
        pattern = "^(PrimaryNode|SecondaryNode|AllNodes|primarynode|secondarynode|allnodes)$"
    )]
    pub reboot_type: String,
}

/// `export`'s body (`ExportRDBParameters`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportParameters {
    /// `RDB` (the default).
    pub format: Option<String>,
    /// The blob to write.
    pub prefix: String,
    /// The storage account to write to, as a connection string (Azure with
    /// `Container=name`, S3, a local folder).
    pub container: String,
}

/// `import`'s body (`ImportRDBParameters`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportParameters {
    /// `RDB` (the default).
    pub format: Option<String>,
    /// The RDB blobs to load, in order, replacing the cache's data.
    pub files: Vec<String>,
    /// The storage account holding them, as a connection string or container SAS URL;
    /// then `files` are blob names in it. Without it, `files` are blob SAS URLs of one
    /// container, as Azure takes them.
    #[serde(default)]
    pub container: Option<String>,
}

/// `forceReboot`'s answer: what happened to the data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebootResponse {
    pub message: String,
}

/// What the supervisor saw of a cache's node (cacheplane's extension): whether it runs,
/// and the last failure it recovered from.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// `Starting`, `Running`, `Restarting`, `Stopped` or `Failed`.
    pub state: String,
    /// Restarts after failures since the control plane started.
    pub restarts: u64,
    /// The last failure, in words, and what was done about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
}

/// An operation-status resource (`Azure-AsyncOperation`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    pub id: String,
    pub name: String,
    /// `InProgress`, `Succeeded` or `Failed`.
    pub status: String,
    pub percent_complete: f64,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

/// A new cache instance's uid: 16 hex digits from the operating system's random source.
pub fn new_uid() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tag of caches created before uids existed: a hash of the resource id, so their
/// directories and prefixes stay where they were.
fn legacy_tag(id: &str) -> String {
    // FNV-1a: stable across releases, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.to_ascii_lowercase().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{:08x}", h as u32)
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

/// `redisConfiguration`'s values are strings in ARM; a number or boolean is taken as its
/// text (`az redis update --set redisConfiguration.maxmemory-reserved=100` sends a
/// number), and null as not given.
fn settings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error;
    let raw: BTreeMap<String, serde_json::Value> = Deserialize::deserialize(d)?;
    raw.into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some(Ok((k, s))),
            serde_json::Value::Number(n) => Some(Ok((k, n.to_string()))),
            serde_json::Value::Bool(b) => Some(Ok((k, b.to_string()))),
            serde_json::Value::Null => None,
            other => Some(Err(D::Error::custom(format!(
                "redisConfiguration.{k} must be a string, not {other}"
            )))),
        })
        .collect()
}

fn optional_settings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "settings")] BTreeMap<String, String>);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}
