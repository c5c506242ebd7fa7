//! Accepting connections and the background cycle (active expiry, table maintenance).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::conn::Stream;
use crate::{Shared, conn, unix_time_ms};

/// A TLS handshake not finished in this long is dropped: a client that stalls in it holds
/// a socket and a task for this long at most, and no client slot.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node accepts connections on: plain TCP (`port`), TLS (`tls-port`), or both.
pub struct Listeners {
    pub plain: Option<TcpListener>,
    pub tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

/// The next connection from `l`, or never when there is no such listener.
async fn accept_on(
    l: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Longest the cron advances the tables' rehashing per cycle (Redis's `activerehashing`:
/// a millisecond per cycle).
const ACTIVE_REHASH_TIME_MAX: Duration = Duration::from_millis(1);
/// Buckets each table moves between clock checks while rehashing actively.
const ACTIVE_REHASH_STEPS: usize = 100;

/// Keys active expiry removes per cycle at most, so one cycle holds the lock briefly.
/// At the default 10 cycles a second this bounds expiry at 200,000 keys a second; keys
/// beyond that stay invisible (lazy expiry) until a later cycle removes them.
pub const ACTIVE_EXPIRE_KEYS_PER_CYCLE_MAX: usize = 20_000;

/// What a node's stop left behind.
#[derive(Debug, Clone, Default)]
pub struct StopReport {
    /// Per AOF account, the bytes of the log it did not get before the node stopped
    /// (they are in the local AOF only).
    pub unshipped: Vec<(String, u64)>,
    /// The object-store events recorded since the owner last took them, the stop's own
    /// included (for the accounting: a restart must not lose them).
    pub events: Vec<blob::BlobEvent>,
}

/// Serves connections from `listener` until `shutdown` resolves or a client sends SHUTDOWN.
pub async fn serve(
    listeners: Listeners,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) -> StopReport {
    let mut stop = shared.shutdown.subscribe();
    let cron = shared.workers.spawn("cron", cron(shared.clone()));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept_on(listeners.plain.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    if !admitted(&shared, peer) {
                        continue;
                    }
                    let slot = crate::fds::FdSlot::take(&shared.fds);
                    connections.spawn(conn::handle(shared.clone(), Stream::Plain(stream), peer, slot));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            accepted = accept_on(listeners.tls.as_ref().map(|(l, _)| l)) => match accepted {
                Ok((stream, peer)) => {
                    if !admitted(&shared, peer) {
                        continue;
                    }
                    // No descriptor to spare: closed before any handshake work.
                    let Some(slot) = crate::fds::FdSlot::take(&shared.fds) else {
                        continue;
                    };
                    let acceptor = listeners.tls.as_ref().expect("accepted on it").1.clone();
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => conn::handle(shared, Stream::Tls(Box::new(tls)), peer, Some(slot)).await,
                            Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
            _ = stop.changed() => break,
        }
    }
    let _ = shared.shutdown.send(true);
    cron.abort();
    // What the log holds reaches the storage accounts before the node goes.
    let (targets, appended) = shared.state.lock().expect("state lock").drain_targets();
    let unshipped = crate::ship::drain(targets, appended).await;
    {
        let mut st = shared.state.lock().expect("state lock");
        // Stopped by a signal or its owner rather than SHUTDOWN: save as SHUTDOWN would.
        let force = st.save_on_stop;
        if let Err(e) = st.save_on_shutdown(false, force) {
            tracing::error!(error = %e, "could not save the final RDB snapshot");
        }
        st.shutting_down = true;
        st.clients.values().for_each(|c| c.kill());
    }
    // Connections see the shutdown signal and finish their current write.
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                connections.abort_all();
                break;
            }
        }
    }
    shared.workers.cancel();
    release_dataset(&shared);
    StopReport {
        unshipped,
        events: Vec::new(),
    }
}

/// Frees the stopped node's dataset on a thread of its own: millions of keys take seconds
/// to free, and neither a process about to exit (as Redis, it need not free at all) nor
/// the control plane's actor should wait for that.
fn release_dataset(shared: &Shared) {
    let dataset = {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let databases = st.ks.db_count();
        std::mem::replace(&mut st.ks, keyspace::Keyspace::new(databases))
    };
    if let Err(e) = std::thread::Builder::new()
        .name("free-dataset".into())
        .spawn(move || drop(dataset))
    {
        tracing::warn!(error = %e, "freeing the dataset on this thread");
    }
}

/// Whether the firewall lets `peer` in; a refused connection is counted and closed (by
/// dropping it) before any handshake or command.
fn admitted(shared: &Shared, peer: std::net::SocketAddr) -> bool {
    let allowed = shared
        .firewall
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .allows(peer.ip());
    if !allowed {
        tracing::info!(%peer, "connection refused by the cache's firewall rules");
        if let Ok(mut st) = shared.state.try_lock() {
            st.stats.rejected_connections += 1;
        }
    }
    allowed
}

async fn cron(shared: Arc<Shared>) {
    let parent = std::os::unix::process::parent_id();
    loop {
        let hz = shared.lock_when_idle().await.config.hz.max(1);
        tokio::time::sleep(Duration::from_millis(1000 / hz as u64)).await;
        // However busy the worker stays, held replies go out within a cron tick.
        crate::held::flush_if_waiting();
        {
            let mut st = shared.lock_when_idle().await;
            // Orphaned (the parent died and another process adopted this one): stop, as the
            // parent would have stopped us.
            if st.config.exit_with_parent && std::os::unix::process::parent_id() != parent {
                tracing::warn!("the parent process is gone; stopping");
                let _ = shared.shutdown.send(true);
                return;
            }
            if st.cron_paused {
                continue;
            }
            st.ks.set_clock(unix_time_ms());
            if st.active_expire_enabled {
                let started = std::time::Instant::now();
                st.ks.active_expire(ACTIVE_EXPIRE_KEYS_PER_CYCLE_MAX);
                let ms = started.elapsed().as_millis() as u64;
                let now_secs = st.ks.now_ms() / 1000;
                st.intro.latency_sample("expire-cycle", now_secs, ms);
            }
            let steps = match st.config.standard.yes("activerehashing") {
                true => ACTIVE_REHASH_STEPS,
                false => 0,
            };
            let started = std::time::Instant::now();
            while st.ks.active_rehash(steps)
                && steps > 0
                && started.elapsed() < ACTIVE_REHASH_TIME_MAX
            {}
            let now = st.ks.now_ms();
            let limits = st.config.output_buffer_limits;
            let expired = st
                .clients
                .values()
                .filter(|c| c.soft_limit_expired(&limits, now))
                .count() as u64;
            st.stats.client_output_buffer_limit_disconnections += expired;
            st.evict_clients(0);
            after_background_changes(&mut st);
            crate::state::Client::release_idle_query_buffers(
                &mut st.clients,
                now,
                crate::conn::QUERY_BUF_IDLE_RELEASE_MS,
            );
            // Keys removed by active expiry are logged too.
            st.persistence_cron();
        }
        // Eviction that ran out of its time slice carries on, a slice at a time with
        // clients served in between (Redis's eviction timer).
        for slice in 0..EVICTION_SLICES_PER_CYCLE_MAX {
            {
                let mut st = shared.lock_when_idle().await;
                if st.maxmemory() == 0 || (slice > 0 && !st.make_room_pending()) {
                    break;
                }
                st.make_room();
                after_background_changes(&mut st);
                st.persistence_cron();
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Eviction slices the cron runs per cycle at most (each [`crate::memory::EVICTION_TIME_SLICE`]).
const EVICTION_SLICES_PER_CYCLE_MAX: usize = 100;

/// Tells watchers, subscribers and tracking clients about keys the node removed on its
/// own (expiry, eviction).
fn after_background_changes(st: &mut crate::state::State) {
    if st.ks.has_touched() {
        st.handle_touched();
    }
    if st.ks.has_events() {
        st.publish_events();
    }
    if st.tracking.clients > 0 || st.ks.has_written() {
        crate::tracking::after_expiry(st);
    }
}
