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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";

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
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Runs `total` handshakes over `connections` concurrent clients against `addr`, checking
/// the certificate for `server_name`.
pub async fn run(
    addr: &str,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    connections: u64,
    total: u64,
) -> anyhow::Result<Handshakes> {
    let name = ServerName::try_from(server_name.to_string())
        .with_context(|| format!("--tls-server-name {server_name}"))?;
    let connector = TlsConnector::from(config);
    // Each client takes the next handshake from the shared count until none are left.
    let left = Arc::new(AtomicU64::new(total));
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (connector, name, left) = (connector.clone(), name.clone(), left.clone());
            let addr = addr.to_string();
            tokio::spawn(async move {
                let mut done = 0u64;
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    one(&connector, &name, &addr).await?;
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
async fn one(
    connector: &TlsConnector,
    name: &ServerName<'static>,
    addr: &str,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .context("TLS handshake")?;
    tls.write_all(PING).await?;
    let mut reply = [0u8; PONG.len()];
    tls.read_exact(&mut reply).await.context("read the PONG")?;
    anyhow::ensure!(
        reply == PONG,
        "unexpected reply {:?}",
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}
