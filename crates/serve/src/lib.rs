//! `cacheplane serve`: the ARM-shaped management API for `Microsoft.Cache/redis` over HTTP,
//! the resource store behind it, and the supervisor of the caches' data-plane nodes
//! (in-process tasks).
//!
//! Long-running operations follow ARM: PUT answers 201 with `Azure-AsyncOperation`
//! pointing at an operation-status resource, the cache moves Creating → Succeeded (or
//! Failed), and the same for updates, deletes and reboots.

mod app;
mod drills;
mod fds;
mod https;
pub mod identity;
mod ledgers;
pub mod openapi;
mod process;
mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use app::API_VERSIONS;
pub use supervisor::NodeRuntime;

/// The documented development token (as Azurite has a well-known key): use `--token` for
/// anything shared.
pub const DEV_TOKEN: &str = "cacheplane-dev-token";

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub token: String,
    /// Host name caches report (`properties.hostName`).
    pub host: String,
    /// Address the caches' nodes listen on.
    pub node_bind: String,
    /// Ports the caches' nodes take (inclusive), e.g. to publish them from a container;
    /// None: any free port.
    pub node_ports: Option<(u16, u16)>,
    /// In-process tasks, or child processes restarted when they die.
    pub node_runtime: NodeRuntime,
    /// Caches per page of a list; the rest follows `nextLink`.
    pub list_page_size: usize,
    /// Local-folder accounts that callers name must be inside this folder.
    pub storage_root: PathBuf,
    /// Endpoint hosts callers may name besides loopback (`host`, `*.suffix`, `*`).
    pub storage_endpoint_allow: Vec<String>,
    /// Caches accept DEBUG (fault injection in tests); Azure blocks it.
    pub allow_debug_command: bool,
    /// HTTPS for the management API.
    pub api_tls: ApiTls,
}

/// How the management API is served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ApiTls {
    /// Plain HTTP (local use).
    #[default]
    Off,
    /// HTTPS with a certificate of the local CA for `--host`, 127.0.0.1 and localhost.
    LocalCa,
    /// HTTPS with the certificate and key in these files.
    Files { cert: PathBuf, key: PathBuf },
}

impl ServeConfig {
    /// `https` or `http`, for the URLs the API hands out.
    pub fn scheme(&self) -> &'static str {
        match self.api_tls {
            ApiTls::Off => "http",
            _ => "https",
        }
    }
}

/// The API's token: the one given, or the development token on a loopback address only
/// (it is published, so anyone who can reach the port would hold it).
pub fn api_token(listen: SocketAddr, given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(t) if t.is_empty() => anyhow::bail!("the API token must not be empty"),
        Some(t) if t == DEV_TOKEN && !listen.ip().is_loopback() => anyhow::bail!(
            "refusing to serve the public development token on {listen}: give a token of your own (--token or CACHEPLANE_TOKEN)"
        ),
        Some(t) => Ok(t),
        None if listen.ip().is_loopback() => Ok(DEV_TOKEN.into()),
        None => anyhow::bail!(
            "serve listens on {listen}, beyond this machine: give a token (--token or CACHEPLANE_TOKEN); the development token is public and only served on loopback"
        ),
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: PathBuf::from("cacheplane-data"),
            token: DEV_TOKEN.into(),
            host: "127.0.0.1".into(),
            node_bind: "127.0.0.1".into(),
            node_ports: None,
            node_runtime: NodeRuntime::InProcess,
            list_page_size: 100,
            storage_root: PathBuf::from("cacheplane-data").join("storage"),
            storage_endpoint_allow: Vec::new(),
            allow_debug_command: false,
            api_tls: ApiTls::Off,
        }
    }
}

/// A running control plane.
pub struct Handle {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Opens the store, brings every cache's node back, and serves the API in the background.
pub async fn start(config: ServeConfig) -> anyhow::Result<Handle> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("bind {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let api_tls = config.api_tls.clone();
    let scheme = config.scheme();
    let app = app::App::open(config).await?;
    // `az cloud register` joins its endpoint and `/metadata/endpoints` as strings: a
    // trailing slash in what the user typed must not make a 404.
    let router = tower::Layer::layer(
        &tower::util::MapRequestLayer::new(app::collapse_slashes),
        app::router(app.clone()),
    );
    let router = axum::ServiceExt::<axum::extract::Request>::into_make_service(router);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let served: futures_util::future::BoxFuture<'static, std::io::Result<()>> = match api_tls {
        ApiTls::Off => Box::pin(
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
        tls => {
            let settings = app.api_tls_settings(&tls)?;
            let acceptor = tokio_rustls::TlsAcceptor::from(::tls::server_config(&settings)?);
            let listener = https::TlsListener::new(listener, acceptor);
            Box::pin(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .into_future(),
            )
        }
    };
    let task = tokio::spawn(async move {
        if let Err(e) = served.await {
            tracing::error!(error = %e, "management API stopped");
        }
        app.shutdown().await;
    });
    tracing::info!(%addr, scheme, "management API ready");
    tracing::info!(
        "dashboard: {scheme}://{addr}/dashboard (give it the token as /dashboard#token=...); API docs: {scheme}://{addr}/docs/"
    );
    Ok(Handle { addr, stop, task })
}

/// Runs until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let handle = start(config).await?;
    shutdown.await;
    handle.stop().await;
    Ok(())
}
