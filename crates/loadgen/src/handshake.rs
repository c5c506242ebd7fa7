//! `--mode handshake`: new TLS connections, one PING each, as fast as the server takes
//! them. redis-benchmark's `-k 0` does the same through OpenSSL 3.0, whose client spends
//! more CPU per handshake (about 1.3 ms here) than either server does, so it measures
//! itself; rustls with one shared client configuration costs a fraction of that, which
//! leaves the server's core as the bottleneck. Every connection is a full handshake: the
//! client keeps no sessions to resume.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use resp::Frame;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::conn::{Conn, Target};

/// How a handshake run went.
pub struct Handshakes {
    pub done: u64,
    pub elapsed: Duration,
}

/// A client configuration trusting only the certificates in `ca_file` (PEM), with session
/// resumption off.
pub fn client_config(ca_file: &std::path::Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("read {}", ca_file.display()))?
    {
        roots
            .add(cert.with_context(|| format!("parse {}", ca_file.display()))?)
            .context("trust the CA certificate")?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{} holds no PEM certificate",
        ca_file.display()
    );
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Runs `total` handshakes over `connections` concurrent clients against `target` (a TLS
/// one: the caller checks).
pub async fn run(target: &Target, connections: u64, total: u64) -> anyhow::Result<Handshakes> {
    // Each client takes the next handshake from the shared count until none are left.
    let left = Arc::new(AtomicU64::new(total));
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (target, left) = (target.clone(), left.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    one(&target).await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += task.await.context("handshake task")??;
    }
    Ok(Handshakes {
        done,
        elapsed: start.elapsed(),
    })
}

/// One connection: connect, handshake, PING, read PONG, close.
async fn one(target: &Target) -> anyhow::Result<()> {
    let mut conn = Conn::connect(target).await?;
    conn.queue(&[b"PING"]);
    conn.send().await?;
    match conn.reply().await? {
        Frame::Simple(pong) if pong == "PONG" => Ok(()),
        other => anyhow::bail!("unexpected reply to PING: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("loadgen-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client_config(&empty).unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e:#}");
        let missing = client_config(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.to_string().starts_with("read "), "{missing:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
