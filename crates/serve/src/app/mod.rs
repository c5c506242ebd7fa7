//! The HTTP routes, ARM's conventions (api-version, bearer token, error bodies,
//! long-running operations) and the handlers of caches; `login` has the routes that come
//! before them (cloud metadata, tokens, subscriptions).

pub(crate) mod children;
mod login;
mod maintenance;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use control::ArmError;
use control::error::ErrorResponse;
use control::model::{
    AccessKeys, Cache, CreateParameters, OperationStatus, ProvisioningState, RebootResponse,
    RedisResource, ResourceList, StorageWarning, UpdateParameters, new_access_key, new_uid,
    resource_id,
};
use control::model::{
    ExportParameters, ImportParameters, RebootParameters, RegenerateKeyParameters,
};
use control::store::{ResourceStore, StoredOperation, key};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::ServeConfig;
use crate::drills::{DRILLS_FILE, DrillBook};
use crate::ledgers::{AccountReport, AccountsReport, Ledgers, StorageReport};
use crate::openapi::{ApiVersion, CacheParams, GroupParams};
use crate::supervisor::{NodeSettings, StartMode, Supervisor};

/// api-version values accepted, as the Azure SDKs send them.
pub const API_VERSIONS: &[&str] = &[
    "2024-11-01",
    "2024-04-01-preview",
    "2024-03-01",
    "2023-08-01",
    "2023-04-01",
];
/// Largest request body accepted.
const BODY_MAX_BYTES: usize = 1024 * 1024;

pub struct App {
    config: ServeConfig,
    /// The local certificate authority (caches' and the API's certificates).
    pub(crate) ca: Arc<tls::LocalCa>,
    /// Held for reads and writes of the store only, never across a node's start or stop.
    store: Mutex<ResourceStore>,
    /// One actor per cache; no lock around it.
    nodes: Supervisor,
    /// What callers may name as storage.
    access: blob::AccessPolicy,
    /// percentComplete of the running operations that know it (export, import).
    progress: std::sync::Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Caches with a change in progress: another change gets 409 until it ends.
    busy: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Soft-delete accounting per cache, fed by its node's object-store events.
    ledgers: std::sync::Mutex<Ledgers>,
    /// Every cache's fault drills.
    drills: std::sync::Mutex<DrillBook>,
    /// The local token endpoint's signer, and the check of its tokens.
    identity: crate::identity::Identity,
    /// The patch schedules' clocks.
    maintenance: std::sync::Mutex<maintenance::Clocks>,
}

/// A cache's claim on changing it; dropped when the change ends.
struct Busy {
    set: Arc<std::sync::Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.set.lock().expect("busy lock").remove(&self.key);
    }
}

/// How long `serve` waits at start for its caches' nodes before it serves the API anyway
/// (the rest come up in the background; their status says Starting).
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The soft-delete accounting's file, next to the resources.
const ACCOUNTING_FILE: &str = "accounting.json";

/// How often node events reach the ledgers.
const ACCOUNTING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// How often changed ledgers are written to disk (and at shutdown): a crash loses at most
/// this much accounting, never a cache.
const ACCOUNTING_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Failure(ArmError);

impl From<ArmError> for Failure {
    fn from(e: ArmError) -> Self {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.0.body(),
        )
            .into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure(ArmError {
        status: 500,
        code: "InternalServerError",
        message: e.to_string(),
        target: None,
    })
}

type Result<T> = std::result::Result<T, Failure>;

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        to_json(body),
    )
        .into_response()
}

fn to_json(body: &impl serde::Serialize) -> String {
    serde_json::to_string(body).expect("API bodies serialize")
}

impl App {
    pub async fn open(config: ServeConfig) -> anyhow::Result<Arc<App>> {
        let store = ResourceStore::open(&config.data_dir)?;
        // Child processes inherit the raised limit; in-process caches share this one.
        let nofile = crate::fds::raise_nofile_limit();
        if config.node_runtime == crate::NodeRuntime::InProcess {
            let maxclients_total = store
                .all()
                .filter_map(|c| control::memory::resolve(&c.sku, &c.redis_configuration).ok())
                .map(|m| u64::from(m.maxclients))
                .sum();
            crate::fds::share(nofile, maxclients_total);
        }
        // The accounting is derived data: a damaged file is reported and replaced, it does
        // not keep the caches from starting.
        let ledgers = match store.load_side(ACCOUNTING_FILE)? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the saved soft-delete accounting is damaged; starting it afresh");
                Ledgers::default()
            }),
            None => Ledgers::default(),
        };
        let drills = match store.load_side(DRILLS_FILE)? {
            Some(bytes) => serde_json::from_slice::<DrillBook>(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", DRILLS_FILE))?
                .loaded(),
            None => DrillBook::default(),
        };
        let ca = Arc::new(tls::LocalCa::load_or_create(&config.data_dir.join("tls"))?);
        let nodes = Supervisor::new(NodeSettings {
            bind: config.node_bind.clone(),
            host: config.host.clone(),
            runtime: config.node_runtime,
            data_dir: config.data_dir.clone(),
            allow_debug_command: config.allow_debug_command,
            ca: ca.clone(),
        });
        let access = blob::AccessPolicy::new(
            config.storage_root.clone(),
            config.storage_endpoint_allow.clone(),
        );
        let app = Arc::new(App {
            identity: crate::identity::Identity::new(&config.token),
            maintenance: Default::default(),
            config,
            ca,
            store: Mutex::new(store),
            nodes,
            access,
            progress: Default::default(),
            busy: Default::default(),
            ledgers: std::sync::Mutex::new(ledgers),
            drills: std::sync::Mutex::new(drills),
        });
        let weak = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut saved = std::time::Instant::now();
            loop {
                tokio::time::sleep(ACCOUNTING_INTERVAL).await;
                let Some(app) = weak.upgrade() else { return };
                app.account_events().await;
                if saved.elapsed() >= ACCOUNTING_SAVE_INTERVAL {
                    app.save_accounting().await;
                    saved = std::time::Instant::now();
                }
            }
        });
        let weak = Arc::downgrade(&app);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(maintenance::CHECK_INTERVAL).await;
                let Some(app) = weak.upgrade() else { return };
                app.run_maintenance().await;
            }
        });
        let starts = app.clone().recover().await;
        // Serve once every node is up, or after STARTUP_WAIT: one cache whose store does not
        // answer must not keep the API from the others.
        let _ = tokio::time::timeout(STARTUP_WAIT, futures_util::future::join_all(starts)).await;
        Ok(app)
    }

    /// After a restart (or a crash) of the control plane: brings every cache's node back,
    /// finishes what was interrupted — a create or update resumes, a delete completes —
    /// and settles every operation left in progress. Returns the starts under way.
    async fn recover(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let (caches, pending): (Vec<Cache>, Vec<StoredOperation>) = {
            let mut store = self.store.lock().await;
            // Caches from before TLS get their TLS port now.
            let without: Vec<Cache> = store.all().filter(|c| c.ssl_port == 0).cloned().collect();
            for mut c in without {
                match free_ports(&self.config, &store) {
                    Ok((_, tls)) => {
                        c.ssl_port = tls;
                        if let Err(e) = store.put(c) {
                            tracing::error!(error = %e, "could not record a cache's TLS port");
                        }
                    }
                    Err(e) => tracing::error!(error = %e.0.message, "no TLS port for a cache"),
                }
            }
            (
                store.all().cloned().collect(),
                store
                    .operations()
                    .filter(|o| o.status.status == "InProgress")
                    .cloned()
                    .collect(),
            )
        };
        let mut starts = Vec::new();
        let mut settled: HashSet<String> = HashSet::new();
        for cache in caches {
            let k = key(&cache.id());
            let ops: Vec<String> = pending
                .iter()
                .filter(|o| {
                    o.cache == k && matches!(o.kind.as_str(), "create" | "update" | "delete")
                })
                .map(|o| o.status.name.clone())
                .collect();
            settled.extend(ops.iter().cloned());
            let Ok(busy) = self.claim(&k, &cache.id()) else {
                continue;
            };
            let app = self.clone();
            match cache.provisioning_state {
                ProvisioningState::Deleting => {
                    starts.push(tokio::spawn(async move { app.delete(k, ops, busy).await }));
                }
                ProvisioningState::Creating | ProvisioningState::Updating => {
                    tracing::info!(cache = %cache.id(), "resuming the cache's interrupted provisioning");
                    starts.push(tokio::spawn(async move { app.provision(k, ops, busy).await }));
                }
                _ => starts.push(tokio::spawn(async move {
                    if let Err(e) = app.nodes.start(&k, &cache, StartMode::KeepData).await {
                        tracing::error!(cache = %cache.id(), error = %e, "could not start the cache's node");
                    }
                    drop(busy);
                })),
            }
        }
        for op in pending.iter().filter(|o| !settled.contains(&o.status.name)) {
            self.finish_operation(
                &op.status.name,
                Some(ArmError {
                    status: 500,
                    code: "OperationInterrupted",
                    message: "The control plane restarted while this operation ran; it did not complete. Retry it.".into(),
                    target: None,
                }),
            )
            .await;
        }
        starts
    }

    /// The management API's TLS settings: a certificate of the local CA for `--host`,
    /// 127.0.0.1 and localhost (issued or renewed now), or the files given.
    pub fn api_tls_settings(&self, api_tls: &crate::ApiTls) -> anyhow::Result<tls::ServerSettings> {
        let (cert_file, key_file) = match api_tls {
            crate::ApiTls::Files { cert, key } => (cert.clone(), key.clone()),
            _ => {
                let dir = self.config.data_dir.join("tls");
                let (cert, key) = (dir.join("api.pem"), dir.join("api-key.pem"));
                self.ca
                    .ensure(&cert, &key, &tls::server_names(&self.config.host))?;
                (cert, key)
            }
        };
        Ok(tls::ServerSettings {
            cert_file,
            key_file,
            ca_cert_file: None,
            auth_clients: tls::ClientAuth::No,
            protocols: Vec::new(),
            ciphersuites: String::new(),
            session_caching: true,
            session_cache_size: 1024,
        })
    }

    /// Records `drill` of the cache `k` (None: forgets the cache's drills) and saves the
    /// drills.
    async fn record_drill(&self, k: &str, drill: Option<control::drill::Drill>) {
        let bytes = {
            let mut book = self.drills.lock().expect("drills lock");
            match drill {
                Some(d) => book.put(k, d),
                None => book.remove(k),
            }
            serde_json::to_vec(&*book).expect("drills serialize")
        };
        if let Err(e) = self.store.lock().await.save_side(DRILLS_FILE, &bytes) {
            tracing::error!(error = %e, "could not save the fault drills");
        }
    }

    /// Restarts the node of `cache` as a reboot in Azure does: on a fresh machine, from its
    /// storage accounts with persistence, empty without. Says what came back.
    async fn reboot(&self, k: &str, cache: &Cache) -> Result<String> {
        let persistent = !matches!(
            control::validate::persistence(&cache.sku, &cache.redis_configuration),
            Ok(control::validate::Persistence::None)
        );
        let started = self
            .nodes
            .start(k, cache, StartMode::FreshMachine)
            .await
            .map_err(internal)?;
        Ok(match (persistent, started.restored) {
            _ if let Some(why) = started.kept_local => why,
            (_, Some(what)) => format!("restored the {what}"),
            (true, None) => "its storage accounts held no data yet".into(),
            (false, None) => "the cache has no persistence, so its data was lost".into(),
        })
    }

    /// Claims `k` for a change; 409 with Azure's text while another change of it runs.
    fn claim(&self, k: &str, id: &str) -> Result<Busy> {
        let mut busy = self.busy.lock().expect("busy lock");
        if !busy.insert(k.to_string()) {
            return Err(ArmError::busy(id).into());
        }
        Ok(Busy {
            set: self.busy.clone(),
            key: k.to_string(),
        })
    }

    /// Moves the nodes' object-store events and their accounts' policies into the caches'
    /// ledgers.
    async fn account_events(&self) {
        let events = self.nodes.drain_events().await;
        let policies = self.nodes.policies();
        let store = self.store.lock().await;
        self.ledgers.lock().expect("ledgers lock").update(
            |k| store.get(k).cloned(),
            &policies,
            events,
            wall_ms(),
        );
    }

    /// Writes the accounting next to the resource store if it changed.
    async fn save_accounting(&self) {
        let Some(bytes) = self.ledgers.lock().expect("ledgers lock").take_changes() else {
            return;
        };
        if let Err(e) = self.store.lock().await.save_side(ACCOUNTING_FILE, &bytes) {
            tracing::error!(error = %e, "could not save the soft-delete accounting");
        }
    }

    /// The storage reports of a cache's accounts.
    fn storage_reports(&self, k: &str) -> Vec<AccountReport> {
        self.ledgers
            .lock()
            .expect("ledgers lock")
            .reports(k, wall_ms())
    }

    /// `properties.storageWarnings` (cacheplane's extension): every warning with its numbers.
    fn storage_warnings(&self, k: &str) -> Vec<StorageWarning> {
        self.storage_reports(k)
            .into_iter()
            .flat_map(
                |AccountReport {
                     report: r,
                     policy_detail,
                 }| {
                    r.warnings
                        .iter()
                        .map(|w| StorageWarning {
                            level: w.level,
                            code: w.code.to_string(),
                            message: w.message.clone(),
                            account: r.account.clone(),
                            policy: r.policy,
                            policy_source: r.policy_source,
                            policy_detail: policy_detail.clone(),
                            live_bytes: r.live_bytes,
                            retained_bytes: r.retained_bytes,
                            retained_ratio: r
                                .retained_ratio
                                .is_finite()
                                .then_some(r.retained_ratio),
                            projected_retained_bytes: r.projected_retained_bytes,
                            monthly_cost_retained_usd: r.monthly_cost_retained,
                        })
                        .collect::<Vec<_>>()
                },
            )
            .collect()
    }

    /// GET's body of a cache, with the storage warnings and the node's status.
    fn resource(&self, cache: &Cache) -> RedisResource {
        let mut r = cache.to_resource(&self.config.host);
        let k = key(&cache.id());
        r.properties.storage_warnings = self.storage_warnings(&k);
        r.properties.node_status = self.nodes.status(&k);
        r
    }

    pub async fn shutdown(&self) {
        self.account_events().await;
        self.save_accounting().await;
        self.nodes.stop_all().await;
    }

    /// Records a new operation on the cache `cache_key` (persisted: its URL answers after
    /// a restart) and returns its name and id.
    async fn new_operation(
        &self,
        location: &str,
        subscription: &str,
        cache_key: &str,
        kind: &str,
    ) -> Result<(String, String)> {
        let name = uuid::Uuid::new_v4().to_string();
        let id = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Cache/locations/{location}/asyncOperations/{name}"
        );
        let op = StoredOperation {
            status: OperationStatus {
                id: id.clone(),
                name: name.clone(),
                status: "InProgress".into(),
                percent_complete: 0.0,
                start_time: chrono::Utc::now().to_rfc3339(),
                end_time: None,
                error: None,
            },
            cache: cache_key.to_string(),
            kind: kind.to_string(),
        };
        self.store
            .lock()
            .await
            .put_operation(op)
            .map_err(internal)?;
        Ok((name, id))
    }

    /// Gives an operation a progress the status reports as percentComplete.
    fn track_progress(&self, name: &str) -> Arc<AtomicU32> {
        let p = Arc::new(AtomicU32::new(0));
        self.progress
            .lock()
            .expect("progress lock")
            .insert(name.to_string(), p.clone());
        p
    }

    async fn finish_operation(&self, name: &str, error: Option<ArmError>) {
        self.progress.lock().expect("progress lock").remove(name);
        let mut store = self.store.lock().await;
        let Some(mut op) = store.operation(name).cloned() else {
            return;
        };
        op.status.status = if error.is_some() {
            "Failed"
        } else {
            "Succeeded"
        }
        .into();
        op.status.percent_complete = 100.0;
        op.status.end_time = Some(chrono::Utc::now().to_rfc3339());
        op.status.error = error.as_ref().map(ArmError::detail);
        if let Err(e) = store.put_operation(op) {
            tracing::error!(operation = name, error = %e, "could not record the operation's end");
        }
    }

    /// `https://host:port` as the caller reached this server.
    fn base_url(&self, headers: &HeaderMap) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        format!("{}://{host}", self.config.scheme())
    }

    /// Runs `work` as the operation `op` in the background: its error (`code`, "The
    /// {what} failed: ...") or success settles the operation, then the cache's claim goes.
    fn run_operation(
        self: &Arc<Self>,
        op: String,
        busy: Busy,
        code: &'static str,
        what: &'static str,
        work: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let app = self.clone();
        tokio::spawn(async move {
            let error = work.await.err().map(|e| ArmError {
                status: 500,
                code,
                message: format!("The {what} failed: {e:#}"),
                target: None,
            });
            app.finish_operation(&op, error).await;
            drop(busy);
        });
    }

    fn async_headers(
        &self,
        headers: &HeaderMap,
        op_id: &str,
    ) -> [(header::HeaderName, HeaderValue); 1] {
        let url = format!(
            "{}{op_id}?api-version={}",
            self.base_url(headers),
            API_VERSIONS[0]
        );
        [(
            header::HeaderName::from_static("azure-asyncoperation"),
            HeaderValue::from_str(&url).unwrap_or(HeaderValue::from_static("")),
        )]
    }
}

pub fn router(app: Arc<App>) -> Router {
    let cache = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Cache/{kind}/{name}";
    Router::new()
        .route(
            cache,
            get(get_cache)
                .put(put_cache)
                .patch(patch_cache)
                .delete(delete_cache),
        )
        .route(&format!("{cache}/listKeys"), post(list_keys))
        .route(&format!("{cache}/regenerateKey"), post(regenerate_key))
        .route(&format!("{cache}/forceReboot"), post(force_reboot))
        .route(&format!("{cache}/export"), post(export))
        .route(&format!("{cache}/import"), post(import))
        .route(&format!("{cache}/storageReport"), get(storage_report))
        .route(&format!("{cache}/simulateFault"), post(simulate_fault))
        .route(&format!("{cache}/faultDrills"), get(list_drills))
        .route(&format!("{cache}/persistenceModel"), get(persistence_model))
        .route(&format!("{cache}/faultDrills/{{drill}}"), get(get_drill))
        .route(&format!("{cache}/flush"), post(children::flush_cache))
        .route(
            &format!("{cache}/listUpgradeNotifications"),
            get(children::list_upgrade_notifications),
        )
        .route(
            &format!("{cache}/privateLinkResources"),
            get(children::list_private_link_resources),
        )
        .merge(child_routes(
            cache,
            "firewallRules",
            get(children::list_firewall_rules),
            get(children::get_firewall_rule)
                .put(children::put_firewall_rule)
                .delete(children::delete_firewall_rule),
        ))
        .merge(child_routes(
            cache,
            "patchSchedules",
            get(children::list_patch_schedules),
            get(children::get_patch_schedule)
                .put(children::put_patch_schedule)
                .delete(children::delete_patch_schedule),
        ))
        .merge(child_routes(
            cache,
            "linkedServers",
            get(children::list_linked_servers),
            get(children::get_linked_server)
                .put(children::put_linked_server)
                .delete(children::delete_linked_server),
        ))
        .merge(child_routes(
            cache,
            "privateEndpointConnections",
            get(children::list_private_endpoint_connections),
            get(children::get_private_endpoint_connection)
                .put(children::put_private_endpoint_connection)
                .delete(children::delete_private_endpoint_connection),
        ))
        .merge(child_routes(
            cache,
            "accessPolicies",
            get(children::list_access_policies),
            get(children::get_access_policy)
                .put(children::put_access_policy)
                .delete(children::delete_access_policy),
        ))
        .merge(child_routes(
            cache,
            "accessPolicyAssignments",
            get(children::list_access_policy_assignments),
            get(children::get_access_policy_assignment)
                .put(children::put_access_policy_assignment)
                .delete(children::delete_access_policy_assignment),
        ))
        .route(
            "/subscriptions/{sub}/providers/Microsoft.Cache/CheckNameAvailability",
            post(children::check_name_availability),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.Cache/checkNameAvailability",
            post(children::check_name_availability),
        )
        .route(
            "/providers/Microsoft.Cache/operations",
            get(children::list_operations),
        )
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Cache/{kind}",
            get(list_group),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.Cache/{kind}",
            get(list_subscription),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.Cache/storageReport",
            get(accounts_report),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.Cache/locations/{loc}/asyncOperations/{op}",
            get(get_operation),
        )
        .route("/providers/Cacheplane/dashboard", get(dashboard_data))
        .layer(middleware::from_fn_with_state(app.clone(), arm_checks))
        .merge(
            Router::new()
                .route("/subscriptions", get(login::list_subscriptions))
                .route("/subscriptions/{sub}", get(login::get_subscription))
                .route("/tenants", get(login::list_tenants))
                .layer(middleware::from_fn_with_state(
                    app.clone(),
                    resources_checks,
                )),
        )
        .layer(axum::extract::DefaultBodyLimit::max(BODY_MAX_BYTES))
        // The API's description is public, as Azure's specifications are; so is the
        // certificate of the local CA that caches' and the API's certificates chain to.
        .route("/openapi.json", get(openapi_json))
        .route("/ca.pem", get(ca_pem))
        .route("/dashboard", get(dashboard_page))
        // What logging in needs is public, as Entra ID's and ARM's metadata are.
        .route("/metadata/endpoints", get(login::cloud_metadata))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(login::openid_configuration),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(login::openid_configuration),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(login::token))
        .route("/{tenant}/oauth2/token", post(login::token))
        .with_state(app)
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
}

/// A kind of child resource's two routes: its list, and one child by name.
fn child_routes(
    cache: &str,
    segment: &str,
    list: axum::routing::MethodRouter<Arc<App>>,
    item: axum::routing::MethodRouter<Arc<App>>,
) -> Router<Arc<App>> {
    Router::new()
        .route(&format!("{cache}/{segment}"), list)
        .route(&format!("{cache}/{segment}/{{child}}"), item)
}

/// The request with runs of `/` in its path made one, as ARM's front door does.
pub fn collapse_slashes(mut req: Request) -> Request {
    let path = req.uri().path();
    if !path.contains("//") {
        return req;
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    if let Some(q) = req.uri().query() {
        collapsed.push('?');
        collapsed.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = collapsed.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

/// The local CA's certificate, for clients to trust (also `<data dir>/tls/ca.pem`).
async fn ca_pem(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        app.ca.cert_pem().to_string(),
    )
        .into_response()
}

/// What the dashboard page shows (behind the bearer token, as the rest of the API): every
/// cache with its persistence, its accounts' state and soft-delete history, its warnings
/// and its drills.
async fn dashboard_data(State(app): State<Arc<App>>) -> Result<Response> {
    use serde_json::json;
    let caches: Vec<Cache> = app.store.lock().await.all().cloned().collect();
    let mut out = Vec::new();
    for cache in caches {
        let k = key(&cache.id());
        let facts = match app.nodes.control(&k).await {
            Some(c) => Some(c.persistence_facts().await),
            None => None,
        };
        let accounts: Vec<_> = app
            .storage_reports(&k)
            .into_iter()
            .map(|AccountReport { report: r, .. }| {
                json!({
                    "account": accounting::short_name(&r.account),
                    "policy": r.policy.describe(),
                    "liveBytes": r.live_bytes,
                    "retainedBytes": r.retained_bytes,
                    "projectedRetainedBytes": r.projected_retained_bytes,
                    "monthlyCostUsd": r.monthly_cost_live + r.monthly_cost_retained + r.monthly_cost_writes,
                    "history": r.history,
                    "liveHistory": r.live_history,
                    "warnings": r.warnings.iter().map(|w| json!({"level": w.level, "message": w.message})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let shipping: Vec<_> = facts
            .iter()
            .flat_map(|f| &f.aof_targets)
            .map(|t| {
                json!({
                    "account": accounting::short_name(&t.account),
                    "ok": t.ok,
                    "backlogBytes": t.backlog_bytes,
                    "segments": t.segments,
                })
            })
            .collect();
        let drills: Vec<_> = app
            .drills
            .lock()
            .expect("drills lock")
            .of(&k)
            .iter()
            .rev()
            .take(DASHBOARD_DRILLS_MAX)
            .map(|d| {
                let p = &d.properties;
                json!({
                    "name": d.name,
                    "kind": p.kind,
                    "status": p.status,
                    "startTime": p.start_time,
                    "acknowledged": p.probe.as_ref().map(|x| x.acknowledged),
                    "lost": p.probe.as_ref().map(|x| x.lost),
                    "lostBeforeFaultMs": p.probe.as_ref().and_then(|x| x.lost_before_fault_ms),
                    "predictedMaxLostWrites": p.predicted.as_ref().and_then(|x| x.max_lost_writes),
                    "predictedWindowMs": p.predicted.as_ref().and_then(|x| x.max_lost_window_ms),
                    "withinPrediction": p.within_prediction,
                    "recoverySeconds": p.recovery_seconds,
                })
            })
            .collect();
        out.push(json!({
            "id": cache.id(),
            "name": cache.name,
            "resourceGroup": cache.resource_group,
            "sku": format!("{:?} {:?}{}", cache.sku.name, cache.sku.family, cache.sku.capacity),
            "persistence": control::drill::mode_of(&cache).name(),
            // The ledgers' history runs on the cache's simulated clock.
            "timeScale": control::drill::time_scale(&cache),
            "state": app.nodes.status(&k).map(|s| s.state),
            "keys": facts.as_ref().map(|f| f.keys),
            "lastSnapshot": facts.as_ref().and_then(|f| f.last_snapshot_ms).and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64)).map(|t| t.to_rfc3339()),
            "shipping": shipping,
            "accounts": accounts,
            "drills": drills,
        }));
    }
    Ok(json(StatusCode::OK, &json!({ "caches": out })))
}

/// Drills the dashboard shows per cache (the newest).
const DASHBOARD_DRILLS_MAX: usize = 20;

async fn dashboard_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../dashboard.html"))
}

/// The bearer token and `api-version`, checked before any handler runs.
/// The caller holds the management token, or an access token the local token endpoint
/// issued for it.
fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant time: how long the comparison takes must not tell how much of the token a
    // caller guessed.
    bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        app.config.token.as_bytes(),
    )) || app.identity.verify(given)
}

/// Azure Resource Manager's own reads (`Microsoft.Resources`: subscriptions, tenants) take
/// their own api-versions, any of which is served the same way here.
async fn resources_checks(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !authorized(&app, req.headers()) {
        return Failure(ArmError::unauthorized()).into_response();
    }
    next.run(req).await
}

async fn arm_checks(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !authorized(&app, req.headers()) {
        return Failure(ArmError::unauthorized()).into_response();
    }
    // Decoded as any query is (`2024%2D11%2D01` is `2024-11-01`).
    let version = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "api-version"))
        .map(|(_, v)| v);
    match version {
        None => Failure(ArmError::bad_request(
            "MissingApiVersionParameter",
            "api-version",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ))
        .into_response(),
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => Failure(ArmError::bad_request(
            "InvalidApiVersionParameter",
            "api-version",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                API_VERSIONS.join(",")
            ),
        ))
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

#[derive(Deserialize)]
struct CachePath {
    sub: String,
    rg: String,
    kind: String,
    name: String,
}

impl CachePath {
    /// The cache's resource id, once the path names the resource type served here.
    fn id(&self) -> Result<String> {
        check_kind(&self.kind)?;
        Ok(resource_id(&self.sub, &self.rg, &self.name))
    }
}

fn check_kind(kind: &str) -> Result<()> {
    if kind.eq_ignore_ascii_case("redis") {
        Ok(())
    } else {
        Err(ArmError::not_found(format!(
            "The resource type 'Microsoft.Cache/{kind}' is not served here."
        ))
        .into())
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "InvalidRequestContent"
        } else {
            "InvalidRequestBody"
        };
        Failure(ArmError::bad_request(
            code,
            "body",
            format!("The request content was invalid and could not be deserialized: {e}."),
        ))
    })
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}", tag = "Redis", operation_id = "Redis_Get",
    params(CacheParams, ApiVersion),
    responses((status = 200, description = "The cache", body = RedisResource), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn get_cache(State(app): State<Arc<App>>, Path(p): Path<CachePath>) -> Result<Response> {
    let id = p.id()?;
    let store = app.store.lock().await;
    let cache = store.get(&id).ok_or_else(|| not_found(&p))?;
    Ok(json(StatusCode::OK, &app.resource(cache)))
}

/// cacheplane's extension: the full soft-delete report of a cache, per account, with the
/// history of retained bytes.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/storageReport", tag = "Redis", operation_id = "Redis_StorageReport",
    params(CacheParams, ApiVersion),
    responses((status = 200, description = "The soft-delete report of the cache's accounts", body = StorageReport), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn storage_report(State(app): State<Arc<App>>, Path(p): Path<CachePath>) -> Result<Response> {
    let id = p.id()?;
    stored(&app, &id, &p).await?;
    let reports = app.storage_reports(&key(&id));
    Ok(json(
        StatusCode::OK,
        &StorageReport {
            prices: accounting::Prices::default(),
            accounts: reports,
        },
    ))
}

/// cacheplane's extension: a fault drill on the cache, as a long-running operation.
#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/simulateFault", tag = "FaultDrills", operation_id = "Redis_SimulateFault",
    params(CacheParams, ApiVersion), request_body = control::drill::DrillRequest,
    responses((status = 202, description = "The drill runs: follow Azure-AsyncOperation; the drill's record is in the body and under faultDrills", body = control::drill::Drill),
        (status = 400, description = "Bad kind, duration, rate or account", body = ErrorResponse),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse),
        (status = 409, description = "Another change of the cache runs, or its node does not run in this control plane", body = ErrorResponse)))]
async fn simulate_fault(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let id = p.id()?;
    let req: control::drill::DrillRequest = parse_body(&body)?;
    let (cache, _) = node_of(&app, &id, &p).await?;
    let plan = req.plan(&cache)?;
    let k = key(&id);
    let busy = app.claim(&k, &id)?;
    let target = crate::drills::Target::of(&cache, app.ca.cert_pem()).map_err(internal)?;
    let (op, op_id) = app
        .new_operation(&cache.location, &p.sub, &k, "simulateFault")
        .await?;
    let name = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        &op[..8]
    );
    let drill = crate::drills::started(&cache, &plan, &name);
    app.record_drill(&k, Some(drill.clone())).await;
    let worker = app.clone();
    let running = drill.clone();
    tokio::spawn(async move {
        let props = crate::drills::run(
            &worker.nodes,
            &k,
            &cache,
            target,
            plan,
            &running.name,
            running.properties.clone(),
        )
        .await;
        let error = props.error.as_ref().map(|e| ArmError {
            status: 500,
            code: "DrillFailed",
            message: format!("The fault drill failed: {e}"),
            target: None,
        });
        worker
            .record_drill(
                &k,
                Some(control::drill::Drill {
                    properties: props,
                    ..running
                }),
            )
            .await;
        worker.finish_operation(&op, error).await;
        drop(busy);
    });
    let mut response = json(StatusCode::ACCEPTED, &drill);
    response
        .headers_mut()
        .extend(app.async_headers(&headers, &op_id));
    Ok(response)
}

/// cacheplane's extension: the cache's fault drills, oldest first.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/faultDrills", tag = "FaultDrills", operation_id = "FaultDrills_List",
    params(CacheParams, ApiVersion),
    responses((status = 200, description = "The cache's drills, measured against what its persistence predicts", body = control::drill::DrillList), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn list_drills(State(app): State<Arc<App>>, Path(p): Path<CachePath>) -> Result<Response> {
    let id = p.id()?;
    stored(&app, &id, &p).await?;
    let value = app
        .drills
        .lock()
        .expect("drills lock")
        .of(&key(&id))
        .to_vec();
    Ok(json(StatusCode::OK, &control::drill::DrillList { value }))
}

/// cacheplane's extension: what each persistence choice would lose, take to restore and
/// cost for this cache's data.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/persistenceModel", tag = "FaultDrills", operation_id = "Redis_PersistenceModel",
    params(CacheParams, ApiVersion),
    responses((status = 200, description = "Loss window, recovery estimate and monthly storage cost per persistence choice", body = control::projection::PersistenceModel), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn persistence_model(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
) -> Result<Response> {
    use control::projection::{Inputs, restore_speed, table};
    let id = p.id()?;
    let cache = stored(&app, &id, &p).await?;
    let k = key(&id);
    let facts = match app.nodes.control(&k).await {
        Some(c) => c.persistence_facts().await,
        None => node::PersistenceFacts::default(),
    };
    // The newest restore from an account this cache made: a drill's, else its own start's.
    let from_drill = app
        .drills
        .lock()
        .expect("drills lock")
        .of(&k)
        .iter()
        .rev()
        .filter_map(|d| d.properties.restored_from.clone())
        .find(|r| r.source != "local disk")
        .and_then(|r| {
            restore_speed(r.bytes, r.download_seconds, r.replay_seconds).map(|s| {
                (
                    s,
                    format!(
                        "a drill's restore from {}",
                        accounting::short_name(&r.source)
                    ),
                )
            })
        });
    let from_start = facts
        .loaded
        .as_ref()
        .filter(|l| l.source != "local disk")
        .and_then(|l| {
            restore_speed(l.bytes, l.download_us as f64 / 1e6, l.load_us as f64 / 1e6).map(|s| {
                (
                    s,
                    format!(
                        "the node's start from {}",
                        accounting::short_name(&l.source)
                    ),
                )
            })
        });
    let reports = app.storage_reports(&k);
    let prices = accounting::Prices::default();
    let retention_days = reports.iter().find_map(|r| match r.report.policy {
        accounting::Policy::None => None,
        accounting::Policy::SoftDelete { days }
        | accounting::Policy::Versioning {
            noncurrent_expiry_days: Some(days),
        } => Some(days),
        accounting::Policy::Versioning {
            noncurrent_expiry_days: None,
        } => Some(u64::MAX),
    });
    let current = control::drill::mode_of(&cache);
    let aof = matches!(
        current,
        control::drill::Mode::AofEverySec
            | control::drill::Mode::AofAlways
            | control::drill::Mode::AofStore
    );
    let current_monthly_usd = (!reports.is_empty())
        .then(|| {
            reports.iter().try_fold(0.0, |sum, r| {
                let retained = r.report.projected_retained_bytes? as f64
                    / (1024.0 * 1024.0 * 1024.0)
                    * prices.storage_per_gib_month;
                Some(sum + r.report.monthly_cost_live + retained + r.report.monthly_cost_writes)
            })
        })
        .flatten();
    let snapshots_kept =
        match control::validate::persistence(&cache.sku, &cache.redis_configuration) {
            Ok(control::validate::Persistence::Rdb {
                max_snapshot_count, ..
            }) => max_snapshot_count,
            _ => 1,
        };
    let model = table(&Inputs {
        current: Some(current),
        dataset_bytes: facts.dataset_bytes,
        keys: facts.keys,
        restore: from_drill.or(from_start),
        snapshots_kept,
        retention_days,
        price_per_gib_month: prices.storage_per_gib_month,
        aof_bytes_per_sec: aof.then(|| reports.iter().map(|r| r.report.churn_bytes_per_sec).sum()),
        current_monthly_usd,
    });
    Ok(json(StatusCode::OK, &model))
}

#[derive(Deserialize)]
struct DrillPath {
    #[serde(flatten)]
    cache: CachePath,
    drill: String,
}

/// cacheplane's extension: one fault drill.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/faultDrills/{drillName}", tag = "FaultDrills", operation_id = "FaultDrills_Get",
    params(CacheParams, ("drillName" = String, Path, description = "The drill's name"), ApiVersion),
    responses((status = 200, description = "The drill", body = control::drill::Drill), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache or drill", body = ErrorResponse)))]
async fn get_drill(State(app): State<Arc<App>>, Path(p): Path<DrillPath>) -> Result<Response> {
    let id = p.cache.id()?;
    stored(&app, &id, &p.cache).await?;
    let drill = app
        .drills
        .lock()
        .expect("drills lock")
        .of(&key(&id))
        .iter()
        .find(|d| d.name == p.drill)
        .cloned();
    match drill {
        Some(d) => Ok(json(StatusCode::OK, &d)),
        None => Err(ArmError::not_found(format!(
            "The fault drill '{}' of '{}' was not found.",
            p.drill, p.cache.name
        ))
        .into()),
    }
}

#[derive(Deserialize)]
struct SubscriptionPath {
    sub: String,
}

/// cacheplane's extension: per storage account, what every cache of the subscription keeps
/// in it and what that costs.
#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Cache/storageReport",
    tag = "Redis", operation_id = "StorageAccounts_Report",
    params(("subscriptionId" = String, Path), ApiVersion),
    responses((status = 200, description = "Per storage account, summed over the subscription's caches", body = AccountsReport),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse)))]
async fn accounts_report(
    State(app): State<Arc<App>>,
    Path(p): Path<SubscriptionPath>,
) -> Result<Response> {
    let prefix = key(&format!("/subscriptions/{}/", p.sub));
    let accounts = app
        .ledgers
        .lock()
        .expect("ledgers lock")
        .totals(|k| k.starts_with(&prefix), wall_ms());
    Ok(json(
        StatusCode::OK,
        &AccountsReport {
            prices: accounting::Prices::default(),
            accounts,
        },
    ))
}

/// Claims the cache at `id` for a change: 404 when there is none (before 409 when busy).
async fn claim_existing(app: &App, id: &str, p: &CachePath) -> Result<Busy> {
    stored(app, id, p).await?;
    app.claim(&key(id), id)
}

/// The stored cache at `id`, or ARM's 404 naming it.
async fn stored(app: &App, id: &str, p: &CachePath) -> Result<Cache> {
    app.store
        .lock()
        .await
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(p))
}

fn not_found(p: &CachePath) -> Failure {
    Failure(ArmError::not_found(format!(
        "The Resource 'Microsoft.Cache/Redis/{}' under resource group '{}' was not found.",
        p.name, p.rg
    )))
}

/// Two ports for a cache's node (plain, TLS): with `--node-ports`, the lowest ones of the
/// range that no cache holds and that can be bound; else ones the system picks.
fn free_ports(config: &ServeConfig, store: &ResourceStore) -> Result<(u16, u16)> {
    let bindable = |port: u16| std::net::TcpListener::bind((config.node_bind.as_str(), port));
    let Some((first, last)) = config.node_ports else {
        // Both held at once, so the system hands out two different ports.
        let (a, b) = (
            bindable(0).map_err(internal)?,
            bindable(0).map_err(internal)?,
        );
        return Ok((
            a.local_addr().map_err(internal)?.port(),
            b.local_addr().map_err(internal)?.port(),
        ));
    };
    let taken: std::collections::HashSet<u16> =
        store.all().flat_map(|c| [c.port, c.ssl_port]).collect();
    let mut free = (first..=last).filter(|p| !taken.contains(p) && bindable(*p).is_ok());
    match (free.next(), free.next()) {
        (Some(plain), Some(tls)) => Ok((plain, tls)),
        _ => Err(Failure(ArmError::conflict(format!(
            "Every node port in {first}-{last} is taken (--node-ports; a cache takes two)."
        )))),
    }
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}", tag = "Redis", operation_id = "Redis_Create",
    params(CacheParams, ApiVersion), request_body = CreateParameters,
    responses(
        (status = 201, description = "Creating: follow Azure-AsyncOperation", body = RedisResource),
        (status = 200, description = "Updated", body = RedisResource),
        (status = 400, description = "Refused, naming the property", body = ErrorResponse),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse)))]
async fn put_cache(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let id = p.id()?;
    control::validate::cache_name(&p.name)?;
    let mut params: CreateParameters = parse_body(&body)?;
    control::validate::location(&params.location)?;
    control::validate::minimum_tls_version(params.properties.minimum_tls_version.as_deref())?;
    control::validate::redis_version(params.properties.redis_version.as_deref())?;
    control::validate::sku(&params.properties.sku)?;
    control::memory::accept(&mut params.properties.redis_configuration)?;
    control::memory::settle(
        &params.properties.sku,
        &mut params.properties.redis_configuration,
    )?;
    control::validate::persistence(
        &params.properties.sku,
        &params.properties.redis_configuration,
    )?;
    control::validate::storage_access(&params.properties.redis_configuration, &app.access)?;
    crate::supervisor::check_node_settings(&params.properties.redis_configuration)?;
    let k = key(&id);
    let busy = app.claim(&k, &id)?;
    let mut store = app.store.lock().await;
    let existing = store.get(&id).cloned();
    let (cache, created) = match existing {
        Some(old) => {
            if matches!(
                old.provisioning_state,
                ProvisioningState::Creating
                    | ProvisioningState::Updating
                    | ProvisioningState::Deleting
            ) {
                return Err(ArmError::busy(&id).into());
            }
            let mut c = old;
            c.location = params.location;
            c.tags = params.tags;
            c.sku = params.properties.sku;
            c.redis_configuration = params.properties.redis_configuration;
            c.enable_non_ssl_port = params.properties.enable_non_ssl_port;
            c.minimum_tls_version = params.properties.minimum_tls_version;
            c.public_network_access = params.properties.public_network_access;
            c.provisioning_state = ProvisioningState::Updating;
            (c, false)
        }
        None => {
            if store.len() >= control::store::CACHES_MAX {
                return Err(ArmError::conflict(format!(
                    "This control plane already holds {} caches.",
                    control::store::CACHES_MAX
                ))
                .into());
            }
            let (port, ssl_port) = free_ports(&app.config, &store)?;
            let cache = Cache {
                subscription: p.sub.clone(),
                resource_group: p.rg.clone(),
                name: p.name.clone(),
                location: params.location,
                tags: params.tags,
                zones: params.zones,
                sku: params.properties.sku,
                redis_configuration: params.properties.redis_configuration,
                enable_non_ssl_port: params.properties.enable_non_ssl_port,
                minimum_tls_version: params.properties.minimum_tls_version,
                public_network_access: params.properties.public_network_access,
                provisioning_state: ProvisioningState::Creating,
                port,
                ssl_port,
                primary_key: new_access_key(),
                secondary_key: new_access_key(),
                uid: new_uid(),
                children: Default::default(),
            };
            (cache, true)
        }
    };
    store.put(cache.clone()).map_err(internal)?;
    drop(store);
    let kind = if created { "create" } else { "update" };
    let (op, op_id) = app.new_operation(&cache.location, &p.sub, &k, kind).await?;
    let body = app.resource(&cache);
    let worker = app.clone();
    tokio::spawn(async move { worker.provision(k, vec![op], busy).await });
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        app.async_headers(&headers, &op_id),
        [(header::CONTENT_TYPE, "application/json")],
        to_json(&body),
    )
        .into_response())
}

impl App {
    /// Starts (or restarts) the cache's node and settles its provisioning state and the
    /// operations `ops`.
    async fn provision(self: Arc<Self>, k: String, ops: Vec<String>, busy: Busy) {
        let Some(cache) = self.store.lock().await.get(&k).cloned() else {
            return;
        };
        let started = self.nodes.start(&k, &cache, StartMode::KeepData).await;
        let mut store = self.store.lock().await;
        let Some(mut cache) = store.get(&k).cloned() else {
            return;
        };
        let error = started.err().map(|e| {
            tracing::error!(cache = %cache.id(), error = %e, "provisioning failed");
            ArmError {
                status: 500,
                code: "ProvisioningFailed",
                message: format!("The cache's node could not start: {e:#}"),
                target: None,
            }
        });
        cache.provisioning_state = if error.is_some() {
            ProvisioningState::Failed
        } else {
            ProvisioningState::Succeeded
        };
        if let Err(e) = store.put(cache) {
            tracing::error!(error = %e, "could not record the provisioning state");
        }
        drop(store);
        for op in ops {
            self.finish_operation(&op, error.clone()).await;
        }
        drop(busy);
    }

    /// Stops the cache's node, removes its local files, its accounting and the cache
    /// itself, and settles the operations `ops`.
    async fn delete(self: Arc<Self>, k: String, ops: Vec<String>, busy: Busy) {
        self.nodes.stop(&k, true).await;
        // The cache's files go with it (also for a delete resumed after a crash, whose node
        // never ran in this process): the next cache of this name must not find them.
        let cache = self.store.lock().await.get(&k).cloned();
        if let Some(cache) = &cache {
            let dir = crate::supervisor::cache_dir(cache, &self.config.data_dir);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(cache = %k, dir = %dir.display(), error = %e, "could not remove a deleted cache's files");
            }
        }
        self.ledgers.lock().expect("ledgers lock").remove(&k);
        self.record_drill(&k, None).await;
        let removed = {
            let mut store = self.store.lock().await;
            let removed = store.remove(&k);
            // Links to it go too: a partner must not name a cache that is gone.
            let partners: Vec<Cache> = store
                .all()
                .filter(|c| {
                    c.children
                        .linked_servers
                        .values()
                        .any(|l| key(&l.linked_redis_cache_id) == k)
                })
                .cloned()
                .collect();
            for mut partner in partners {
                partner
                    .children
                    .linked_servers
                    .retain(|_, l| key(&l.linked_redis_cache_id) != k);
                if let Err(e) = store.put(partner) {
                    tracing::error!(error = %e, "could not remove a link to a deleted cache");
                }
            }
            removed
        };
        let error = removed.err().map(|e| ArmError {
            status: 500,
            code: "DeleteFailed",
            message: e.to_string(),
            target: None,
        });
        for op in ops {
            self.finish_operation(&op, error.clone()).await;
        }
        drop(busy);
    }
}

#[utoipa::path(patch, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}", tag = "Redis", operation_id = "Redis_Update",
    params(CacheParams, ApiVersion), request_body = UpdateParameters,
    responses(
        (status = 200, description = "Updated (with Azure-AsyncOperation when the node restarts)", body = RedisResource),
        (status = 400, description = "Refused, naming the property", body = ErrorResponse), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn patch_cache(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let id = p.id()?;
    let params: UpdateParameters = parse_body(&body)?;
    let k = key(&id);
    let busy = claim_existing(&app, &id, &p).await?;
    let mut store = app.store.lock().await;
    let mut cache = store.get(&id).cloned().ok_or_else(|| not_found(&p))?;
    if let Some(tags) = params.tags {
        cache.tags = tags;
    }
    let props = params.properties;
    control::validate::minimum_tls_version(props.minimum_tls_version.as_deref())?;
    control::validate::redis_version(props.redis_version.as_deref())?;
    let before = cache.clone();
    let mut given = props.redis_configuration.unwrap_or_default();
    control::memory::accept(&mut given)?;
    if let Some(sku) = props.sku {
        control::validate::sku(&sku)?;
        if sku != cache.sku {
            control::memory::rescale(&mut given, &mut cache.redis_configuration, &cache.sku, &sku);
        }
        cache.sku = sku;
    }
    // As ARM merges redisConfiguration: given keys replace, others stay.
    cache.redis_configuration.extend(given);
    let memory = control::memory::settle(&cache.sku, &mut cache.redis_configuration)?;
    control::validate::persistence(&cache.sku, &cache.redis_configuration)?;
    // The node's listeners and persistence change with these: it restarts (keeping its
    // data). The SKU and the memory settings reach the running node live.
    let restart =
        control::memory::restarts(&before.redis_configuration, &cache.redis_configuration)
            || props
                .enable_non_ssl_port
                .is_some_and(|v| v != cache.enable_non_ssl_port)
            || props
                .minimum_tls_version
                .as_ref()
                .is_some_and(|v| Some(v) != cache.minimum_tls_version.as_ref());
    let live = !restart
        && control::memory::resolve(&before.sku, &before.redis_configuration).ok() != Some(memory);
    control::validate::storage_access(&cache.redis_configuration, &app.access)?;
    crate::supervisor::check_node_settings(&cache.redis_configuration)?;
    if let Some(v) = props.enable_non_ssl_port {
        cache.enable_non_ssl_port = v;
    }
    if props.minimum_tls_version.is_some() {
        cache.minimum_tls_version = props.minimum_tls_version;
    }
    if props.public_network_access.is_some() {
        cache.public_network_access = props.public_network_access;
    }
    if restart {
        cache.provisioning_state = ProvisioningState::Updating;
    }
    store.put(cache.clone()).map_err(internal)?;
    drop(store);
    let body = app.resource(&cache);
    if restart {
        let (op, op_id) = app
            .new_operation(&cache.location, &p.sub, &k, "update")
            .await?;
        let worker = app.clone();
        tokio::spawn(async move { worker.provision(k, vec![op], busy).await });
        return Ok((
            StatusCode::OK,
            app.async_headers(&headers, &op_id),
            [(header::CONTENT_TYPE, "application/json")],
            to_json(&body),
        )
            .into_response());
    }
    if live {
        app.nodes.set_live(&k, &cache).await.map_err(internal)?;
    }
    drop(busy);
    Ok(json(StatusCode::OK, &body))
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}", tag = "Redis", operation_id = "Redis_Delete",
    params(CacheParams, ApiVersion),
    responses(
        (status = 202, description = "Deleting: follow Azure-AsyncOperation"),
        (status = 204, description = "No such cache (already gone)"),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse)))]
async fn delete_cache(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    headers: HeaderMap,
) -> Result<Response> {
    let id = p.id()?;
    let k = key(&id);
    if app.store.lock().await.get(&id).is_none() {
        // ARM answers 204 for a resource that is already gone.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let busy = app.claim(&k, &id)?;
    let mut store = app.store.lock().await;
    let Some(mut cache) = store.get(&id).cloned() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    cache.provisioning_state = ProvisioningState::Deleting;
    store.put(cache.clone()).map_err(internal)?;
    drop(store);
    let (op, op_id) = app
        .new_operation(&cache.location, &p.sub, &k, "delete")
        .await?;
    let worker = app.clone();
    tokio::spawn(async move { worker.delete(k, vec![op], busy).await });
    Ok((StatusCode::ACCEPTED, app.async_headers(&headers, &op_id)).into_response())
}

/// The query of a list request: `$skipToken` comes from a previous page's `nextLink`.
#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "$skipToken")]
    skip_token: Option<String>,
}

/// One page of the caches that `matches`, in id order.
async fn list(
    app: &App,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    query: &ListQuery,
    matches: impl Fn(&Cache) -> bool,
) -> Result<Response> {
    let skip: usize = match &query.skip_token {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            ArmError::bad_request(
                "InvalidSkipToken",
                "$skipToken",
                "The $skipToken is not one this service issued.",
            )
        })?,
    };
    let store = app.store.lock().await;
    let mut page = store.all().filter(|c| matches(c)).skip(skip);
    let value: Vec<RedisResource> = page
        .by_ref()
        .take(app.config.list_page_size.max(1))
        .map(|c| app.resource(c))
        .collect();
    let next_link = page.next().is_some().then(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        format!(
            "{}://{host}{}?api-version={}&$skipToken={}",
            app.config.scheme(),
            uri.path(),
            API_VERSIONS[0],
            skip + value.len()
        )
    });
    Ok(json(StatusCode::OK, &ResourceList { value, next_link }))
}

#[derive(Deserialize)]
struct GroupPath {
    sub: String,
    rg: String,
    kind: String,
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis",
    tag = "Redis", operation_id = "Redis_ListByResourceGroup",
    params(GroupParams, ApiVersion, ("$skipToken" = Option<String>, Query, description = "From a previous page's nextLink")),
    responses((status = 200, description = "A page of caches", body = ResourceList),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse)))]
async fn list_group(
    State(app): State<Arc<App>>,
    Path(p): Path<GroupPath>,
    Query(q): Query<ListQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response> {
    check_kind(&p.kind)?;
    list(&app, &uri, &headers, &q, |c| {
        c.subscription.eq_ignore_ascii_case(&p.sub) && c.resource_group.eq_ignore_ascii_case(&p.rg)
    })
    .await
}

#[derive(Deserialize)]
struct SubPath {
    sub: String,
    kind: String,
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Cache/redis",
    tag = "Redis", operation_id = "Redis_ListBySubscription",
    params(("subscriptionId" = String, Path), ApiVersion, ("$skipToken" = Option<String>, Query, description = "From a previous page's nextLink")),
    responses((status = 200, description = "A page of caches", body = ResourceList),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse)))]
async fn list_subscription(
    State(app): State<Arc<App>>,
    Path(p): Path<SubPath>,
    Query(q): Query<ListQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response> {
    check_kind(&p.kind)?;
    list(&app, &uri, &headers, &q, |c| {
        c.subscription.eq_ignore_ascii_case(&p.sub)
    })
    .await
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/listKeys", tag = "Redis", operation_id = "Redis_ListKeys",
    params(CacheParams, ApiVersion),
    responses((status = 200, description = "The access keys", body = AccessKeys), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn list_keys(State(app): State<Arc<App>>, Path(p): Path<CachePath>) -> Result<Response> {
    let id = p.id()?;
    let store = app.store.lock().await;
    let cache = store.get(&id).ok_or_else(|| not_found(&p))?;
    Ok(json(StatusCode::OK, &cache.access_keys()))
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/regenerateKey", tag = "Redis", operation_id = "Redis_RegenerateKey",
    params(CacheParams, ApiVersion), request_body = RegenerateKeyParameters,
    responses((status = 200, description = "The new keys (the node takes them at once)", body = AccessKeys),
        (status = 400, description = "Bad keyType", body = ErrorResponse), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn regenerate_key(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    body: Bytes,
) -> Result<Response> {
    let id = p.id()?;
    let req: RegenerateKeyParameters = parse_body(&body)?;
    let k = key(&id);
    let _busy = claim_existing(&app, &id, &p).await?;
    let mut store = app.store.lock().await;
    let mut cache = store.get(&id).cloned().ok_or_else(|| not_found(&p))?;
    match req.key_type.to_ascii_lowercase().as_str() {
        "primary" => cache.primary_key = new_access_key(),
        "secondary" => cache.secondary_key = new_access_key(),
        _ => {
            return Err(ArmError::bad_request(
                "InvalidRequestBody",
                "keyType",
                "keyType must be 'Primary' or 'Secondary'.",
            )
            .into());
        }
    }
    store.put(cache.clone()).map_err(internal)?;
    drop(store);
    // The running node takes the new keys at once.
    app.nodes.set_keys(&k, &cache).await.map_err(internal)?;
    Ok(json(StatusCode::OK, &cache.access_keys()))
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/forceReboot", tag = "Redis", operation_id = "Redis_ForceReboot",
    params(CacheParams, ApiVersion), request_body = RebootParameters,
    responses((status = 200, description = "Rebooted; says what was restored", body = RebootResponse),
        (status = 400, description = "Bad rebootType", body = ErrorResponse), (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn force_reboot(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    body: Bytes,
) -> Result<Response> {
    let id = p.id()?;
    let req: RebootParameters = parse_body(&body)?;
    if !["primarynode", "secondarynode", "allnodes"]
        .contains(&req.reboot_type.to_ascii_lowercase().as_str())
    {
        return Err(ArmError::bad_request(
            "InvalidRequestBody",
            "rebootType",
            "rebootType must be 'PrimaryNode', 'SecondaryNode' or 'AllNodes'.",
        )
        .into());
    }
    let cache = stored(&app, &id, &p).await?;
    let k = key(&id);
    let _busy = app.claim(&k, &id)?;
    let message = format!(
        "Rebooted {} of '{}'; {}.",
        req.reboot_type,
        p.name,
        app.reboot(&k, &cache).await?
    );
    Ok(json(StatusCode::OK, &RebootResponse { message }))
}

/// A storage account named in an export or import body (a container SAS URL, or a
/// connection string for S3 and Azurite), parsed and checked against what the operator
/// allows before anything starts.
fn transfer_account(app: &App, container: &str) -> Result<blob::Account> {
    let account = blob::Account::parse(container).map_err(|e| {
        Failure(ArmError::bad_request(
            "InvalidRequestBody",
            "container",
            format!(
                "container is not a usable container SAS URL or storage connection string: {e}."
            ),
        ))
    })?;
    app.access.check(&account).map_err(|e| {
        Failure(ArmError::bad_request(
            "InvalidRequestBody",
            "container",
            format!("container names a storage account this service may not use: {e}."),
        ))
    })?;
    Ok(account)
}

fn check_format(format: &Option<String>) -> Result<()> {
    match format.as_deref() {
        None => Ok(()),
        Some(f) if f.eq_ignore_ascii_case("rdb") => Ok(()),
        Some(f) => Err(ArmError::bad_request(
            "InvalidRequestBody",
            "format",
            format!("format '{f}' is not supported; use RDB."),
        )
        .into()),
    }
}

/// The running node of a cache, for a long operation.
async fn node_of(app: &App, id: &str, p: &CachePath) -> Result<(Cache, node::NodeControl)> {
    let cache = stored(app, id, p).await?;
    let control = app.nodes.control(&key(id)).await.ok_or_else(|| {
        Failure(ArmError::conflict(format!(
            "The cache '{}' is not running in this control plane (provisioningState {:?}; export, import and fault drills need the in-process node runtime).",
            p.name, cache.provisioning_state
        )))
    })?;
    Ok((cache, control))
}

/// What an export or import works with.
struct Transfer {
    control: node::NodeControl,
    store: blob::Store,
    percent: Arc<AtomicU32>,
    /// The operation's name (unique).
    operation: String,
}

/// Starts an export or import of the cache at `id` as a long-running operation whose
/// percentComplete follows `job`'s progress; answers 202 with `Azure-AsyncOperation`.
async fn start_transfer<F>(
    app: &Arc<App>,
    id: &str,
    p: &CachePath,
    headers: &HeaderMap,
    account: &blob::Account,
    what: &'static str,
    job: impl FnOnce(Transfer) -> F,
) -> Result<Response>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let k = key(id);
    let (cache, control) = node_of(app, id, p).await?;
    let busy = app.claim(&k, id)?;
    let store = blob::Store::open(account, "", Arc::new(|_| {})).map_err(internal)?;
    let (op, op_id) = app.new_operation(&cache.location, &p.sub, &k, what).await?;
    let percent = app.track_progress(&op);
    let work = job(Transfer {
        control,
        store,
        percent,
        operation: op.clone(),
    });
    app.run_operation(op, busy, "OperationFailed", what, work);
    Ok((StatusCode::ACCEPTED, app.async_headers(headers, &op_id)).into_response())
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/export", tag = "Redis", operation_id = "Redis_ExportData",
    params(CacheParams, ApiVersion), request_body = ExportParameters,
    responses((status = 202, description = "Exporting: follow Azure-AsyncOperation (percentComplete follows the keys written)"),
        (status = 400, description = "Bad format or container", body = ErrorResponse),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn export(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let id = p.id()?;
    let req: ExportParameters = parse_body(&body)?;
    check_format(&req.format)?;
    let account = transfer_account(&app, &req.container)?;
    if req.prefix.trim_matches('/').is_empty() {
        return Err(ArmError::bad_request(
            "InvalidRequestBody",
            "prefix",
            "prefix names the blob to write and must not be empty.",
        )
        .into());
    }
    start_transfer(
        &app,
        &id,
        &p,
        &headers,
        &account,
        "export",
        |t| async move {
            t.control.export(&t.store, &req.prefix, &t.percent).await?;
            Ok(())
        },
    )
    .await
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/import", tag = "Redis", operation_id = "Redis_ImportData",
    params(CacheParams, ApiVersion), request_body = ImportParameters,
    responses((status = 202, description = "Importing: follow Azure-AsyncOperation (percentComplete follows the files loaded)"),
        (status = 400, description = "Bad format, container or files", body = ErrorResponse),
        (status = 401, description = "No or wrong bearer token", body = ErrorResponse), (status = 404, description = "No such cache", body = ErrorResponse)))]
async fn import(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let id = p.id()?;
    let req: ImportParameters = parse_body(&body)?;
    check_format(&req.format)?;
    if req.files.is_empty() || req.files.len() > IMPORT_FILES_MAX {
        return Err(ArmError::bad_request(
            "InvalidRequestBody",
            "files",
            format!("files names 1 to {IMPORT_FILES_MAX} RDB blobs to load."),
        )
        .into());
    }
    let (container, files) = import_source(&req)?;
    let account = transfer_account(&app, &container)?;
    let imports = app.config.data_dir.join("imports");
    start_transfer(
        &app,
        &id,
        &p,
        &headers,
        &account,
        "import",
        |t| async move {
            let dir = imports.join(&t.operation);
            let result = async {
                tokio::fs::create_dir_all(&dir).await?;
                let mut paths = Vec::new();
                for (i, f) in files.iter().enumerate() {
                    let path = dir.join(format!("{i}.rdb"));
                    let mut file = tokio::fs::File::create(&path).await?;
                    t.store.download(f, &mut file).await?;
                    paths.push(path);
                }
                t.control.import(paths, t.percent).await
            }
            .await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            result.map(|_| ())
        },
    )
    .await
}

/// Where an import's files are: the account named, or the one container their blob SAS
/// URLs share (Azure's shape).
fn import_source(req: &ImportParameters) -> Result<(String, Vec<String>)> {
    if let Some(container) = &req.container {
        return Ok((container.clone(), req.files.clone()));
    }
    let mut container = None;
    let mut files = Vec::new();
    for f in &req.files {
        let (c, blob) = blob::split_blob_sas_url(f).map_err(|e| {
            Failure(ArmError::bad_request(
                "InvalidRequestBody",
                "files",
                format!("Without a container, files are blob SAS URLs: {e}."),
            ))
        })?;
        if container.get_or_insert_with(|| c.clone()) != &c {
            return Err(ArmError::bad_request(
                "InvalidRequestBody",
                "files",
                "The files of one import are blobs of one container.",
            )
            .into());
        }
        files.push(blob);
    }
    Ok((container.unwrap_or_default(), files))
}

/// Most RDB blobs one import loads.
const IMPORT_FILES_MAX: usize = 64;

#[derive(Deserialize)]
struct OpPath {
    #[allow(dead_code)]
    sub: String,
    #[allow(dead_code)]
    loc: String,
    op: String,
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Cache/locations/{location}/asyncOperations/{operationId}",
    tag = "Redis", operation_id = "AsyncOperationStatus_Get",
    params(("subscriptionId" = String, Path), ("location" = String, Path), ("operationId" = String, Path), ApiVersion),
    responses((status = 200, description = "The operation's status", body = OperationStatus),
        (status = 404, description = "No such operation", body = ErrorResponse)))]
async fn get_operation(
    State(app): State<Arc<App>>,
    Path(p): Path<OpPath>,
    Query(_): Query<HashMap<String, String>>,
) -> Result<Response> {
    let op = app.store.lock().await.operation(&p.op).cloned();
    let mut op = op.ok_or_else(|| {
        Failure(ArmError::not_found(format!(
            "The operation '{}' was not found.",
            p.op
        )))
    })?;
    if let Some(p) = app.progress.lock().expect("progress lock").get(&p.op) {
        op.status.percent_complete = f64::from(p.load(Ordering::Relaxed));
    }
    Ok(json(StatusCode::OK, &op.status))
}
