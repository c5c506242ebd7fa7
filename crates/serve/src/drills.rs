//! Fault drills, run: the probe writer (sequence-numbered writes at a steady rate over
//! the cache's own endpoint, as an application would write), the fault itself (a crash or
//! a lost machine through the supervisor, an outage or slowness through the accounts'
//! fault switch), the check of which acknowledged writes survived, and the drill records
//! kept per cache. The loss rules and the verdict are `control::drill`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use control::drill::{
    AccountRole, AtFault, DRILLS_KEPT_MAX, Drill, DrillKind, DrillPlan, DrillProperties,
    DrillStatus, RestoredFrom, StorageBacklog,
};
use control::model::Cache;
use resp::Frame;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::supervisor::Supervisor;

/// The drills' file, next to the resources.
pub const DRILLS_FILE: &str = "drills.json";
/// A probe write not answered within this is counted as failed (a write under
/// `aof-durability store` waits out a storage outage).
const PROBE_REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A probe connection that is not up within this is counted as a failed write.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The probe keeps writing this long after the node serves again (or the fault ends),
/// so the history shows writes resuming.
const PROBE_AFTER_FAULT: Duration = Duration::from_secs(1);
/// Keys read back (and removed) per command.
const CHECK_BATCH_KEYS: usize = 1000;
/// How often the storage backlog is sampled during a storage fault.
const BACKLOG_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// How long the drill waits for an account to catch up after a storage fault.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(120);
/// The probe's replies are small; a reply larger than this is an error.
const PROBE_REPLY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Every cache's drills, oldest first; saved with the resources.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DrillBook {
    by_cache: BTreeMap<String, Vec<Drill>>,
}

impl DrillBook {
    /// A book read back at start: drills that were running when the control plane stopped
    /// failed with it.
    pub fn loaded(mut self) -> DrillBook {
        for d in self.by_cache.values_mut().flatten() {
            if d.properties.status == DrillStatus::Running {
                d.properties.status = DrillStatus::Failed;
                d.properties.error =
                    Some("the control plane stopped while the drill was running".into());
            }
        }
        self
    }

    /// The drills of a cache, oldest first.
    pub fn of(&self, cache_key: &str) -> &[Drill] {
        self.by_cache.get(cache_key).map_or(&[], Vec::as_slice)
    }

    /// Adds or replaces (by name) a drill of a cache, keeping the newest
    /// [`DRILLS_KEPT_MAX`].
    pub fn put(&mut self, cache_key: &str, drill: Drill) {
        let list = self.by_cache.entry(cache_key.to_string()).or_default();
        match list.iter_mut().find(|d| d.name == drill.name) {
            Some(d) => *d = drill,
            None => list.push(drill),
        }
        let excess = list.len().saturating_sub(DRILLS_KEPT_MAX);
        list.drain(..excess);
    }

    /// Forgets a deleted cache's drills.
    pub fn remove(&mut self, cache_key: &str) {
        self.by_cache.remove(cache_key);
    }
}

/// How the probe reaches the cache: its endpoint as an application uses it.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    /// TLS with this client configuration (the cache's `sslPort`), else plain.
    pub tls: Option<Arc<tls::rustls::ClientConfig>>,
    pub password: Option<String>,
}

impl Target {
    /// The endpoint of `cache`: its plain port when open, else its TLS port.
    pub fn of(cache: &Cache, ca_pem: &str) -> anyhow::Result<Target> {
        let password = crate::supervisor::auth_keys(cache).0;
        if cache.enable_non_ssl_port {
            return Ok(Target {
                port: cache.port,
                tls: None,
                password,
            });
        }
        Ok(Target {
            port: cache.ssl_port,
            tls: Some(tls::client_config(ca_pem.as_bytes())?),
            password,
        })
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = tls::rustls::pki_types::ServerName::IpAddress(
                    std::net::Ipv4Addr::LOCALHOST.into(),
                );
                Box::new(
                    tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await?,
                )
            }
        };
        let mut conn = Conn {
            io,
            buf: Vec::new(),
        };
        if let Some(p) = &self.password {
            match conn.call(&[b"AUTH", p.as_bytes()]).await? {
                Frame::Simple(s) if s == "OK" => {}
                other => anyhow::bail!("AUTH answered {other:?}"),
            }
        }
        Ok(conn)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One RESP connection to the cache.
struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Conn {
    async fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<Frame> {
        let mut out = Vec::new();
        Frame::Array(
            args.iter()
                .map(|a| Frame::Bulk(bytes::Bytes::copy_from_slice(a)))
                .collect(),
        )
        .encode(&mut out);
        self.io.write_all(&out).await?;
        let limits = resp::Limits::default();
        loop {
            if let Some((frame, used)) = Frame::parse(&self.buf, &limits)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            anyhow::ensure!(
                self.buf.len() < PROBE_REPLY_MAX_BYTES,
                "a reply of more than {PROBE_REPLY_MAX_BYTES} bytes"
            );
            let mut chunk = [0u8; 16 * 1024];
            let n = self.io.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the cache closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

fn probe_key(prefix: &str, seq: u64) -> String {
    format!("{prefix}{seq}")
}

/// What the probe writer did.
#[derive(Debug, Default)]
struct ProbeLog {
    /// Sequence numbers acknowledged, with the time of each acknowledgement.
    acked: Vec<(u64, u64)>,
    failed: u64,
}

/// Writes `prefix<seq>` keys at `rate` per second, one at a time, until `stop`.
async fn probe(
    target: Target,
    prefix: String,
    rate: u32,
    mut stop: watch::Receiver<bool>,
) -> ProbeLog {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = tokio::time::Instant::now();
    let mut log = ProbeLog::default();
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    while !*stop.borrow() {
        let due = started + period.mul_f64(seq as f64);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.changed() => break,
        }
        seq += 1;
        if conn.is_none() {
            conn = tokio::time::timeout(PROBE_CONNECT_TIMEOUT, target.connect())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some(c) = conn.as_mut() else {
            log.failed += 1;
            continue;
        };
        let key = probe_key(&prefix, seq);
        let value = now_ms().to_string();
        let args: [&[u8]; 3] = [b"SET", key.as_bytes(), value.as_bytes()];
        let write = tokio::time::timeout(PROBE_REPLY_TIMEOUT, c.call(&args));
        let answer = tokio::select! {
            a = write => a,
            // A write still waiting when the drill ends is not acknowledged.
            _ = stop.changed() => break,
        };
        match answer {
            Ok(Ok(Frame::Simple(s))) if s == "OK" => log.acked.push((seq, now_ms())),
            Ok(Ok(Frame::Error(_))) => log.failed += 1,
            _ => {
                log.failed += 1;
                conn = None;
            }
        }
    }
    log
}

/// Which of `seqs` the cache holds, then removes them.
async fn check_and_remove(
    target: &Target,
    prefix: &str,
    seqs: &[u64],
) -> anyhow::Result<Vec<bool>> {
    let mut conn = target.connect().await?;
    let mut found = Vec::with_capacity(seqs.len());
    for batch in seqs.chunks(CHECK_BATCH_KEYS) {
        let keys: Vec<String> = batch.iter().map(|s| probe_key(prefix, *s)).collect();
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        match conn.call(&args).await? {
            Frame::Array(items) if items.len() == batch.len() => {
                found.extend(items.iter().map(|f| matches!(f, Frame::Bulk(_))));
            }
            other => anyhow::bail!("MGET of the probe's keys answered {other:?}"),
        }
        args[0] = b"UNLINK";
        conn.call(&args).await?;
    }
    Ok(found)
}

/// Runs `plan` against the cache `cache_key` (whose node runs in-process); returns the
/// drill's properties once it has ended. `props` comes in as the running drill's.
pub async fn run(
    nodes: &Supervisor,
    cache_key: &str,
    cache: &Cache,
    target: Target,
    plan: DrillPlan,
    drill_name: &str,
    mut props: DrillProperties,
) -> DrillProperties {
    match run_steps(
        nodes, cache_key, cache, target, &plan, drill_name, &mut props,
    )
    .await
    {
        Ok(()) => props.status = DrillStatus::Succeeded,
        Err(e) => {
            tracing::error!(cache = cache_key, drill = drill_name, error = %format!("{e:#}"), "the fault drill failed");
            props.status = DrillStatus::Failed;
            props.error = Some(format!("{e:#}"));
        }
    }
    props.end_time = Some(chrono::Utc::now().to_rfc3339());
    props
}

async fn run_steps(
    nodes: &Supervisor,
    cache_key: &str,
    cache: &Cache,
    target: Target,
    plan: &DrillPlan,
    drill_name: &str,
    props: &mut DrillProperties,
) -> anyhow::Result<()> {
    let control = nodes
        .control(cache_key)
        .await
        .ok_or_else(|| anyhow::anyhow!("the cache has no node running in this control plane"))?;
    let prefix = format!("cacheplane:drill:{drill_name}:");
    let (stop, stopped) = watch::channel(false);
    let writer = plan
        .probe_writes_per_second
        .map(|rate| tokio::spawn(probe(target.clone(), prefix.clone(), rate, stopped)));
    let duration = Duration::from_secs(plan.duration_seconds);
    let mut fault = AtFault::default();
    let outcome: anyhow::Result<()> = async {
        if plan.kind.kills_node() {
            // The probe writes for the drill's duration; then the node dies.
            tokio::time::sleep(duration).await;
            let crashed = nodes.crash(cache_key, plan.kind.loses_disk()).await?;
            fault = AtFault {
                at_ms: crashed.at_ms,
                last_snapshot_ms: crashed.before.last_snapshot_ms,
            };
            props.recovery_seconds = Some(crashed.recovery.as_secs_f64());
            props.restored_from = crashed.after.loaded.map(|l| RestoredFrom {
                source: l.source,
                files: l.files,
                bytes: l.bytes,
                download_seconds: l.download_us as f64 / 1e6,
                replay_seconds: l.load_us as f64 / 1e6,
                keys: crashed.after.keys,
            });
        } else {
            // A second of writes first, so the fault meets a cache at work.
            tokio::time::sleep(duration.min(Duration::from_secs(1))).await;
            let facts = control.persistence_facts().await;
            let (account, shipper) = match plan.account {
                AccountRole::Rdb => (facts.rdb_account.clone(), None),
                AccountRole::Primary => (
                    facts.aof_targets.first().map(|t| t.account.clone()),
                    Some(0),
                ),
                AccountRole::Secondary => {
                    (facts.aof_targets.get(1).map(|t| t.account.clone()), Some(1))
                }
            };
            let account =
                account.ok_or_else(|| anyhow::anyhow!("the node has no such storage account"))?;
            let switch = nodes
                .faults(cache_key)
                .ok_or_else(|| anyhow::anyhow!("the cache has no node running"))?;
            let kind = match plan.kind {
                DrillKind::StorageSlow => blob::Fault::Slow(Duration::from_millis(plan.latency_ms)),
                _ => blob::Fault::Outage,
            };
            fault.at_ms = now_ms();
            switch.set(&account, kind, duration);
            let ends = tokio::time::Instant::now() + duration;
            let mut backlog = StorageBacklog {
                account: account.clone(),
                ..Default::default()
            };
            let target = |facts: &node::PersistenceFacts| {
                shipper
                    .and_then(|i| facts.aof_targets.get(i))
                    .map_or((0, u64::MAX), |t| (t.backlog_bytes, t.shipped))
            };
            while tokio::time::Instant::now() < ends {
                tokio::time::sleep(BACKLOG_SAMPLE_INTERVAL).await;
                backlog.max_bytes = backlog
                    .max_bytes
                    .max(target(&control.persistence_facts().await).0);
            }
            switch.clear(&account);
            // Caught up: the account holds everything logged by the fault's end (the probe
            // writes on, so the backlog itself need not reach zero).
            let upto = control.persistence_facts().await.appended;
            let cleared = tokio::time::Instant::now();
            while cleared.elapsed() < DRAIN_WAIT_MAX {
                let (behind, shipped) = target(&control.persistence_facts().await);
                backlog.max_bytes = backlog.max_bytes.max(behind);
                if shipped >= upto {
                    backlog.drained_seconds = Some(cleared.elapsed().as_secs_f64());
                    break;
                }
                tokio::time::sleep(BACKLOG_SAMPLE_INTERVAL).await;
            }
            props.storage_backlog = Some(backlog);
        }
        Ok(())
    }
    .await;
    props.fault_time = (fault.at_ms > 0).then(|| {
        chrono::DateTime::from_timestamp_millis(fault.at_ms as i64)
            .unwrap_or_default()
            .to_rfc3339()
    });
    if outcome.is_ok() {
        tokio::time::sleep(PROBE_AFTER_FAULT).await;
    }
    let _ = stop.send(true);
    let log = match writer {
        Some(w) => Some(w.await?),
        None => None,
    };
    outcome?;
    let Some(log) = log else {
        return Ok(());
    };
    let seqs: Vec<u64> = log.acked.iter().map(|(s, _)| *s).collect();
    let acks: Vec<u64> = log.acked.iter().map(|(_, t)| *t).collect();
    let found = check_and_remove(&target, &prefix, &seqs).await?;
    let measured = control::drill::measure(
        plan.probe_writes_per_second.unwrap_or(0),
        &acks,
        &found,
        fault.at_ms,
        log.failed,
    );
    let predicted =
        control::drill::predict(control::drill::mode_of(cache), plan.kind, fault, &acks);
    props.within_prediction = Some(control::drill::within(&predicted, &measured));
    props.probe = Some(measured);
    props.predicted = Some(predicted);
    Ok(())
}

/// The record of a drill just started.
pub fn started(cache: &Cache, plan: &DrillPlan, name: &str) -> Drill {
    Drill {
        id: format!("{}/faultDrills/{name}", cache.id()),
        name: name.to_string(),
        kind: control::drill::DRILL_TYPE.into(),
        properties: DrillProperties {
            kind: plan.kind,
            status: DrillStatus::Running,
            persistence: control::drill::mode_of(cache).name(),
            duration_seconds: plan.duration_seconds,
            start_time: chrono::Utc::now().to_rfc3339(),
            end_time: None,
            fault_time: None,
            probe: None,
            predicted: None,
            within_prediction: None,
            recovery_seconds: None,
            restored_from: None,
            storage_backlog: None,
            error: None,
        },
    }
}
