//! The process runtime (`--node-runtime process`): each cache's node is a child
//! `cacheplane node` process, so a crash is a real process death. A supervising task
//! restarts a node that exits on its own (with backoff); it comes back from its local files
//! or, with an empty disk, from its storage accounts. The settings reach the child through
//! a config file only its owner can read (connection strings and keys stay off command
//! lines), and later changes go over RESP on the control plane's own connection: it
//! authenticates with the node's admin key, which no customer holds (the commands it uses,
//! CACHEPLANE, CONFIG and SHUTDOWN, are unknown commands for customers). The actor probes
//! the child with a timeout; one that stops answering is killed and restarted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use node::NodeConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a started node may take to answer (loading a large dataset included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopping node may take to save and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Restart backoff: doubles from the first value up to the last.
const RESTART_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most bytes read of one reply (event lists are the longest: EVENTS_KEPT_MAX lines).
const REPLY_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// A node that has not answered PING in this long is considered hung.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest any one round trip to a child may take (event lists included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed probes in a row after which a node is killed and restarted.
const PROBE_FAILURES_MAX: u32 = 3;

/// Where the control plane reaches a child: its TLS port (always open; the plain one may
/// be closed), trusting the local CA.
#[derive(Clone)]
pub struct Endpoint {
    pub port: u16,
    pub tls: Arc<tls::rustls::ClientConfig>,
}

/// A node running as a child process, with its supervisor.
pub struct ChildNode {
    /// The node's settings as its config file holds them (passwords follow key changes).
    cfg: NodeConfig,
    at: Endpoint,
    stopping: watch::Sender<bool>,
    /// Tells the supervising task to kill the process (it is then restarted).
    kill: Arc<tokio::sync::Notify>,
    /// Probes failed in a row.
    probe_failures: u32,
    task: tokio::task::JoinHandle<()>,
}

impl ChildNode {
    /// Writes the node's config file, starts it and waits until it answers.
    pub async fn start(
        cfg: &NodeConfig,
        tls: Arc<tls::rustls::ClientConfig>,
    ) -> anyhow::Result<ChildNode> {
        let conf = conf_path(cfg);
        write_private(&conf, &config_file(cfg))?;
        let at = Endpoint {
            port: cfg.tls.port,
            tls,
        };
        let child = spawn(&conf, &cfg.dir, &at).await?;
        let (stopping, stop_rx) = watch::channel(false);
        let kill = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(supervise(
            child,
            conf,
            cfg.dir.clone(),
            at.clone(),
            stop_rx,
            kill.clone(),
        ));
        Ok(ChildNode {
            cfg: cfg.clone(),
            at,
            stopping,
            kill,
            probe_failures: 0,
            task,
        })
    }

    /// A command to the node on the control plane's own connection (the admin key).
    async fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        command(&self.at, self.cfg.admin_key.as_deref(), args).await
    }

    /// Stops the node (with a final snapshot when `save`) and waits for the process to end;
    /// says which AOF accounts were behind the log when it was asked to stop (the child
    /// drains before exiting, so this may overstate what it left behind, never understate).
    pub async fn stop(self, save: bool) -> node::StopReport {
        let mut report = match self.command(&["INFO", "storage"]).await {
            Ok(info) => unshipped_from_info(&info),
            Err(_) => node::StopReport::default(),
        };
        // The events of the stop itself stay in the child (a known gap of this runtime).
        report.events = self.drain_events().await;
        let _ = self.stopping.send(true);
        let how = if save { "SAVE" } else { "NOSAVE" };
        // SHUTDOWN answers nothing when it succeeds: the connection closes.
        if let Err(e) = self.command(&["SHUTDOWN", how]).await {
            tracing::debug!(port = self.at.port, error = %e, "SHUTDOWN");
        }
        let _ = self.task.await;
        report
    }

    /// Kills the process at once and waits until it is gone and reaped (no restart), so
    /// that its ports are free for whatever starts next.
    pub async fn kill(self) {
        let _ = self.stopping.send(true);
        self.kill.notify_one();
        let _ = self.task.await;
    }

    /// PINGs the node within [`PROBE_TIMEOUT`]; after [`PROBE_FAILURES_MAX`] failures in a
    /// row the process is killed (and restarted by its supervising task) and the failure
    /// is returned for the cache's status.
    pub async fn probe(&mut self) -> anyhow::Result<()> {
        let answered = tokio::time::timeout(PROBE_TIMEOUT, self.command(&["PING"])).await;
        match answered {
            // LOADING and BUSY (a script past busy-reply-threshold, which SCRIPT KILL can
            // stop) are a live node's answers, not a hung one's.
            Ok(Ok(reply))
                if reply == "+PONG"
                    || reply.starts_with("-LOADING")
                    || reply.starts_with("-BUSY") =>
            {
                self.probe_failures = 0;
                Ok(())
            }
            // Exited: the supervising task restarts it already.
            Ok(Err(_)) if self.task.is_finished() => Ok(()),
            other => {
                self.probe_failures += 1;
                if self.probe_failures < PROBE_FAILURES_MAX {
                    return Ok(());
                }
                self.probe_failures = 0;
                self.kill.notify_one();
                let why = match other {
                    Ok(Ok(reply)) => format!("answered PING with {reply}"),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => format!("no answer in {PROBE_TIMEOUT:?}"),
                };
                anyhow::bail!(
                    "the node process did not answer {PROBE_FAILURES_MAX} probes ({why}); it was killed and is being restarted"
                )
            }
        }
    }

    /// Gives the node new passwords at once, and its config file for later restarts.
    pub async fn set_passwords(
        &mut self,
        primary: Option<String>,
        secondary: Option<String>,
    ) -> anyhow::Result<()> {
        let p = primary.clone().unwrap_or_default();
        let s = secondary.clone().unwrap_or_default();
        let reply = self.command(&["CACHEPLANE", "SETKEYS", &p, &s]).await?;
        anyhow::ensure!(reply == "+OK", "CACHEPLANE SETKEYS answered {reply}");
        self.cfg.requirepass = primary;
        self.cfg.requirepass_secondary = secondary;
        write_private(&conf_path(&self.cfg), &config_file(&self.cfg))
    }

    /// Changes settings of the running node at once (one CONFIG SET on the control plane's
    /// own connection, so all or none apply), and in its config file for later restarts.
    pub async fn config_set(&mut self, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut args = vec!["CONFIG", "SET"];
        for (name, value) in settings {
            args.extend([*name, *value]);
        }
        let reply = self.command(&args).await?;
        anyhow::ensure!(reply == "+OK", "CONFIG SET answered {reply}");
        for (name, value) in settings {
            self.cfg
                .set(name, value)
                .map_err(|e| anyhow::anyhow!("node setting {name} {value}: {e}"))?;
        }
        write_private(&conf_path(&self.cfg), &config_file(&self.cfg))
    }

    /// FLUSHALL on the control plane's own connection.
    pub async fn flush_all(&self) -> anyhow::Result<()> {
        let reply = self.command(&["FLUSHALL"]).await?;
        anyhow::ensure!(reply == "+OK", "FLUSHALL answered {reply}");
        Ok(())
    }

    /// The object-store events the node recorded since the last call (CACHEPLANE EVENTS).
    pub async fn drain_events(&self) -> Vec<blob::BlobEvent> {
        // A node failing its probes is not asked: its events wait in it, and its actor
        // stays free to probe and restart it.
        if self.probe_failures > 0 {
            return Vec::new();
        }
        match self.command(&["CACHEPLANE", "EVENTS"]).await {
            Ok(text) => node::events_from_lines(&text),
            // Restarting: the events wait in the node for the next call.
            Err(_) => Vec::new(),
        }
    }

    /// What the node's start restored from a storage account (INFO's `restored_from`).
    pub async fn restored(&self) -> Option<String> {
        let info = self.command(&["INFO", "storage"]).await.ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("restored_from:"))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

async fn spawn(conf: &Path, dir: &Path, at: &Endpoint) -> anyhow::Result<Child> {
    let port = at.port;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("node")
        .arg(conf)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let started = tokio::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "the node exited with {status} while starting (see {})",
                dir.join("node.log").display()
            );
        }
        if answers(at).await {
            return Ok(child);
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill().await;
            anyhow::bail!("the node did not answer on port {port} in {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True once the node answers PING with anything but -LOADING (NOAUTH counts: it is up).
async fn answers(at: &Endpoint) -> bool {
    match command(at, None, &["PING"]).await {
        Ok(reply) => !reply.starts_with("-LOADING"),
        Err(_) => false,
    }
}

/// Restarts the node whenever it exits on its own (or is killed for not answering), until
/// told to stop.
async fn supervise(
    mut child: Child,
    conf: PathBuf,
    dir: PathBuf,
    at: Endpoint,
    mut stopping: watch::Receiver<bool>,
    kill: Arc<tokio::sync::Notify>,
) {
    let port = at.port;
    let mut backoff = RESTART_BACKOFF_FIRST;
    loop {
        tokio::select! {
            // A kill goes first: a stop that waits for the process to exit would wait on a
            // hung one for STOP_TIMEOUT.
            biased;
            _ = kill.notified() => {
                tracing::warn!(port, "killing a cache's node process that does not answer");
                let _ = child.kill().await;
                if *stopping.borrow() {
                    return;
                }
                // The exit is seen on the next turn, and the node restarted.
            }
            status = child.wait() => {
                if *stopping.borrow() {
                    return;
                }
                tracing::warn!(port, status = ?status.ok(), "a cache's node process exited; restarting it");
                loop {
                    tokio::time::sleep(backoff).await;
                    if *stopping.borrow() {
                        return;
                    }
                    match spawn(&conf, &dir, &at).await {
                        Ok(c) => {
                            tracing::info!(port, "the cache's node process is back");
                            child = c;
                            backoff = RESTART_BACKOFF_FIRST;
                            break;
                        }
                        Err(e) => {
                            tracing::error!(port, error = %e, "restarting a cache's node failed");
                            backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
                        }
                    }
                }
            }
            _ = stopping.changed() => {
                if tokio::time::timeout(STOP_TIMEOUT, child.wait()).await.is_err() {
                    tracing::warn!(port, "a cache's node did not stop in time; killing it");
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

/// Per AOF account, its backlog as INFO storage reports it
/// (`aof_target_<i>:account=...,backlog_bytes=N,...`).
fn unshipped_from_info(info: &str) -> node::StopReport {
    let unshipped = info
        .lines()
        .filter(|l| l.starts_with("aof_target_"))
        .filter_map(|l| {
            let fields = l.split_once(':')?.1;
            let field = |name: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let bytes: u64 = field("backlog_bytes")?.parse().ok()?;
            (bytes > 0).then(|| (field("account").unwrap_or("?").to_string(), bytes))
        })
        .collect();
    node::StopReport {
        unshipped,
        events: Vec::new(),
    }
}

/// Sends one command (after AUTH when a password is given) and returns the first line of
/// its reply, or the whole of a bulk reply; a node that does not answer within
/// [`COMMAND_TIMEOUT`] is an error (a hung child must not hang its actor).
async fn command(at: &Endpoint, password: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    tokio::time::timeout(COMMAND_TIMEOUT, command_now(at, password, args))
        .await
        .map_err(|_| anyhow::anyhow!("no answer in {COMMAND_TIMEOUT:?}"))?
}

async fn command_now(
    at: &Endpoint,
    password: Option<&str>,
    args: &[&str],
) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", at.port)).await?;
    let name = tls::rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let stream = tokio_rustls::TlsConnector::from(at.tls.clone())
        .connect(name, tcp)
        .await?;
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r.take(REPLY_MAX_BYTES));
    let mut send = Vec::new();
    if let Some(p) = password {
        encode(&mut send, &["AUTH", p]);
    }
    encode(&mut send, args);
    w.write_all(&send).await?;
    let mut line = String::new();
    if password.is_some() {
        r.read_line(&mut line).await?;
        anyhow::ensure!(line.starts_with("+OK"), "AUTH answered {}", line.trim());
        line.clear();
    }
    r.read_line(&mut line).await?;
    let line = line.trim_end().to_string();
    if let Some(len) = line.strip_prefix('$') {
        let len: i64 = len.parse()?;
        if len < 0 {
            return Ok(String::new());
        }
        let mut body = String::new();
        while body.len() < len as usize {
            if r.read_line(&mut body).await? == 0 {
                break;
            }
        }
        // The last line read may run into the reply's closing CRLF.
        body.truncate(len as usize);
        return Ok(body);
    }
    Ok(line)
}

fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}

/// A config-file value in double quotes, as redis-server's config reader takes them.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Where a child node's config file lives: in its own directory.
fn conf_path(cfg: &NodeConfig) -> PathBuf {
    cfg.dir.join("cacheplane-node.conf")
}

/// The settings serve gives a node, as a redis-server config file.
fn config_file(cfg: &NodeConfig) -> String {
    let s = &cfg.storage;
    let mut lines = vec![
        format!("port {}", cfg.port),
        format!("bind {}", cfg.bind.join(" ")),
        format!("dir {}", quote(&cfg.dir.display().to_string())),
        "save \"\"".to_string(),
        "exit-with-parent yes".to_string(),
        format!("maxclients {}", cfg.maxclients),
        format!("maxmemory {}", setting(cfg, "maxmemory")),
        format!("maxmemory-policy {}", setting(cfg, "maxmemory-policy")),
        format!("maxmemory-samples {}", setting(cfg, "maxmemory-samples")),
        format!("appendonly {}", if cfg.appendonly { "yes" } else { "no" }),
        format!(
            "requirepass {}",
            quote(cfg.requirepass.as_deref().unwrap_or(""))
        ),
        format!(
            "requirepass-secondary {}",
            quote(cfg.requirepass_secondary.as_deref().unwrap_or(""))
        ),
        format!("storage-prefix {}", quote(&s.prefix)),
        format!("tls-port {}", cfg.tls.port),
        format!("tls-cert-file {}", quote(&path_text(&cfg.tls.cert_file))),
        format!("tls-key-file {}", quote(&path_text(&cfg.tls.key_file))),
        "tls-auth-clients no".to_string(),
        format!("tls-protocols {}", quote(&cfg.tls.protocols)),
        format!(
            "cacheplane-managed {}",
            if cfg.managed { "yes" } else { "no" }
        ),
        format!(
            "cacheplane-admin-key {}",
            quote(cfg.admin_key.as_deref().unwrap_or(""))
        ),
        format!(
            "enable-debug-command {}",
            match cfg.enable_debug_command {
                node::DebugCommand::No => "no",
                node::DebugCommand::Yes => "yes",
                node::DebugCommand::Local => "local",
            }
        ),
        format!("time-scale {}", s.time_scale),
        format!(
            "aof-durability {}",
            match s.aof_durability {
                node::config::Durability::Local => "local",
                node::config::Durability::Store => "store",
            }
        ),
    ];
    if let Some(a) = &s.rdb_account {
        lines.push(format!(
            "rdb-storage-connection-string {}",
            quote(&a.connection_string())
        ));
    }
    if s.rdb_backup_enabled {
        lines.push("rdb-backup-enabled yes".into());
        lines.push(format!(
            "rdb-backup-frequency {}",
            s.rdb_backup_frequency_min
        ));
        lines.push(format!(
            "rdb-backup-max-snapshot-count {}",
            s.rdb_backup_max_snapshot_count
        ));
    }
    for (i, a) in s.aof_accounts.iter().enumerate() {
        if let Some(a) = a {
            lines.push(format!(
                "aof-storage-connection-string-{i} {}",
                quote(&a.connection_string())
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// A setting's value as CONFIG GET prints it (which the config file reads back).
fn setting(cfg: &NodeConfig, name: &str) -> String {
    cfg.get(name).unwrap_or_default()
}

fn path_text(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Writes `text` to `path` readable by its owner only (it holds keys and secrets).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("conf.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_file_reads_back_as_the_same_settings() {
        let mut cfg = node::NodeConfig {
            port: 7001,
            bind: vec!["127.0.0.1".into()],
            dir: std::env::temp_dir(),
            appendonly: true,
            requirepass: Some("k1/+=".into()),
            requirepass_secondary: Some("k2".into()),
            ..Default::default()
        };
        cfg.save = Vec::new();
        cfg.set("maxmemory", "104857600").unwrap();
        cfg.set("maxmemory-policy", "allkeys-lru").unwrap();
        cfg.set("maxmemory-samples", "3").unwrap();
        cfg.maxclients = 256;
        cfg.storage.prefix = "caches/x-1".into();
        cfg.storage.aof_accounts[0] = Some(
            blob::Account::parse("Provider=S3;Endpoint=http://127.0.0.1:9;Bucket=bkt;AccessKeyId=a;SecretAccessKey=s;Region=us-east-1").unwrap(),
        );
        let path = std::env::temp_dir().join(format!("cacheplane-conf-{}", std::process::id()));
        std::fs::write(&path, super::config_file(&cfg)).unwrap();
        let back = node::NodeConfig::from_args(&[path.display().to_string()]).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.port, 7001);
        assert!(back.appendonly);
        assert_eq!(back.requirepass.as_deref(), Some("k1/+="));
        assert_eq!(back.requirepass_secondary.as_deref(), Some("k2"));
        assert_eq!(back.storage.prefix, "caches/x-1");
        assert_eq!(back.storage.aof_accounts, cfg.storage.aof_accounts);
        assert!(back.save.is_empty());
        for (name, value) in [
            ("maxmemory", "104857600"),
            ("maxmemory-policy", "allkeys-lru"),
            ("maxmemory-samples", "3"),
            ("maxclients", "256"),
        ] {
            assert_eq!(back.get(name).as_deref(), Some(value), "{name}");
        }
    }
}
