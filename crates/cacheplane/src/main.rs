//! `cacheplane`: the one binary. `serve` runs the management API and the caches' nodes;
//! `node` runs one data-plane node (a drop-in for redis-server).

use anyhow::Context;
use clap::{Parser, Subcommand};

// jemalloc, as redis-server uses: INFO's used_memory reports its allocated bytes.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc's default options for this binary: its memory in transparent huge pages. A
// snapshot walks every key in hash order, which on 4 KiB pages misses the TLB on nearly
// every key; huge pages cut a 5M-key snapshot by about a fifth. Redis advises against THP
// because a forked child copies whole huge pages on write; nodes never fork. The usual
// environment variable still overrides it (`_RJEM_MALLOC_CONF=thp:default`).
#[allow(unsafe_code)] // exporting a symbol jemalloc reads at start is an unsafe attribute
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 11] = b"thp:always\0";

#[derive(Parser)]
#[command(
    name = "cacheplane",
    version,
    about = "A local, cloud-style managed Redis service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the management API (Microsoft.Cache/redis, ARM-shaped) and the caches' nodes.
    ///
    /// The dashboard (caches, storage growth, fault drills) is at /dashboard: open
    /// http://127.0.0.1:8080/dashboard#token=<token>. The API's documentation is at /docs/
    /// and /openapi.json. Both work offline: every asset ships with the binary.
    Serve {
        /// Address of the management API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the resource store, the caches' files and the default storage account live.
        #[arg(long, default_value = "cacheplane-data")]
        data_dir: std::path::PathBuf,
        /// Bearer token the API requires. Without one, the documented development token,
        /// which serve refuses on an address beyond loopback (it is public).
        #[arg(long, env = "CACHEPLANE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Folder that local-folder storage accounts named by API callers must be inside
        /// (default: the data dir's `storage` folder, the embedded default account).
        #[arg(long)]
        storage_root: Option<std::path::PathBuf>,
        /// Object-store endpoint hosts API callers may name besides loopback (Azurite,
        /// MinIO on this machine): `host`, `*.suffix` or `*`; repeat or comma-separate.
        /// Example: `--storage-endpoint-allow '*.blob.core.windows.net'`.
        #[arg(long, value_delimiter = ',')]
        storage_endpoint_allow: Vec<String>,
        /// Let caches run DEBUG (for fault-injection tests; Azure blocks it for customers).
        #[arg(long)]
        allow_debug_command: bool,
        /// Serve the management API over HTTPS, with a certificate of the local CA
        /// (`<data dir>/tls/ca.pem`, also at GET /ca.pem) for --host, 127.0.0.1 and localhost.
        #[arg(long)]
        tls: bool,
        /// Serve HTTPS with this certificate (PEM) instead of one of the local CA's.
        #[arg(long, requires = "tls_key_file")]
        tls_cert_file: Option<std::path::PathBuf>,
        /// The key of --tls-cert-file (PEM).
        #[arg(long, requires = "tls_cert_file")]
        tls_key_file: Option<std::path::PathBuf>,
        /// Caches per page of a list (the rest follows `nextLink`, as ARM pages).
        #[arg(long, default_value_t = 100)]
        list_page_size: usize,
        /// Address the caches' nodes listen on (0.0.0.0 in a container).
        #[arg(long, default_value = "127.0.0.1")]
        node_bind: String,
        /// Host name the caches report (`properties.hostName`).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Ports the caches' nodes take, `FIRST-LAST` (to publish them from a container);
        /// by default any free port.
        #[arg(long, value_parser = parse_port_range)]
        node_ports: Option<(u16, u16)>,
        /// How caches' nodes run: `in-process` tasks, or child `process`es (a crash is a
        /// real process death; the control plane restarts them).
        #[arg(long, default_value = "in-process", value_parser = parse_node_runtime)]
        node_runtime: serve::NodeRuntime,
    },
    /// Run a data-plane node. Takes redis-server's flags: `--port 7000 --requirepass K
    /// --save "" --databases 16 ...`, optionally after a config file path.
    Node {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "REDIS-SERVER FLAGS"
        )]
        args: Vec<String>,
    },
    /// Print the management API's OpenAPI document (what `api/openapi.json` holds).
    Openapi,
}

/// `FIRST-LAST`, FIRST <= LAST.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected FIRST-LAST, got '{s}'"))?;
    let first: u16 = a.trim().parse().map_err(|e| format!("'{a}': {e}"))?;
    let last: u16 = b.trim().parse().map_err(|e| format!("'{b}': {e}"))?;
    if first == 0 || first > last {
        return Err(format!("'{s}' is not a range of ports"));
    }
    Ok((first, last))
}

fn parse_node_runtime(s: &str) -> Result<serve::NodeRuntime, String> {
    match s {
        "in-process" => Ok(serve::NodeRuntime::InProcess),
        "process" => Ok(serve::NodeRuntime::Process),
        _ => Err(format!("'{s}': expected in-process or process")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            token,
            storage_root,
            storage_endpoint_allow,
            allow_debug_command,
            tls,
            tls_cert_file,
            tls_key_file,
            list_page_size,
            node_bind,
            host,
            node_ports,
            node_runtime,
        } => {
            init_logging("notice");
            let token = serve::api_token(listen, token)?;
            let storage_root = storage_root.unwrap_or_else(|| data_dir.join("storage"));
            let api_tls = match (tls, tls_cert_file, tls_key_file) {
                (_, Some(cert), Some(key)) => serve::ApiTls::Files { cert, key },
                (true, _, _) => serve::ApiTls::LocalCa,
                _ => serve::ApiTls::Off,
            };
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            in_arrival_order(&mut builder);
            let runtime = builder
                .enable_all()
                .build()
                .context("start the async runtime")?;
            let config = serve::ServeConfig {
                listen,
                data_dir,
                token,
                list_page_size,
                node_bind,
                host,
                node_ports,
                node_runtime,
                storage_root,
                storage_endpoint_allow,
                allow_debug_command,
                api_tls,
            };
            runtime.block_on(serve::run(config, shutdown_signal()))
        }
        Command::Openapi => {
            print!("{}", serve::openapi::document());
            Ok(())
        }
        Command::Node { args } => {
            let config = match node::NodeConfig::from_args(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            };
            init_logging(&config.loglevel);
            // A multi-thread runtime even for one I/O thread (the default, as Redis): a
            // script that runs past busy-reply-threshold hands its worker to a new thread
            // (block_in_place), which keeps answering other clients with BUSY.
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(config.io_threads.max(1));
            in_arrival_order(&mut builder);
            // Replies go out as the worker goes to sleep, as Redis's `beforeSleep` writes
            // them. (Not under `serve`, whose workers host the API and many caches.)
            node::held::install(&mut builder);
            let runtime = builder
                .enable_all()
                .build()
                .context("start the async runtime")?;
            runtime.block_on(node::run(config, shutdown_signal()))
        }
    }
}

/// Maps Redis's log levels onto tracing's; `RUST_LOG` overrides.
fn init_logging(loglevel: &str) {
    let level = match loglevel {
        "debug" => "trace",
        "verbose" => "debug",
        "notice" => "info",
        "warning" => "warn",
        _ => "off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: log files and pipes get plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Connections made ready together run in the order their input arrived, as Redis serves
/// them: tokio's LIFO slot would run the last one woken first, so a command sent after
/// another on a second connection could overtake it (a write before a blocking read it
/// was meant to wake).
fn in_arrival_order(builder: &mut tokio::runtime::Builder) {
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    #[cfg(not(tokio_unstable))]
    let _ = builder;
}
