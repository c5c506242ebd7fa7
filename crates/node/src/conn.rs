//! One client connection: read, decode, run a batch of commands under one lock, write.
//!
//! Every complete command already in the read buffer is run in the same critical section
//! and all replies go out in one write, which is what makes pipelining cheap.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp::{Protocol, ReplyBuf, RequestDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};

use crate::dispatch::{Flow, dispatch};
use crate::state::{BlockSlot, Client};
use crate::{Shared, unix_time_ms};

/// Commands taken from the read buffer per critical section, so one client's long pipeline
/// cannot hold the lock against everyone else for long.
const BATCH_COMMANDS_MAX: usize = 1024;
/// Read buffer growth step (Redis's PROTO_IOBUF_LEN).
const READ_CHUNK_BYTES: usize = 16 * 1024;

enum Wake {
    Input,
    Closed,
}

pub async fn handle(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let laddr = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (outbox_tx, mut outbox_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let outbox_bytes = Arc::new(AtomicUsize::new(0));
    let kill = Arc::new(Notify::new());
    let registered = {
        let mut st = shared.state.lock().expect("state lock");
        st.stats.total_connections_received += 1;
        if st.clients.len() >= st.config.maxclients {
            st.stats.rejected_connections += 1;
            None
        } else {
            let id = st.next_client_id;
            st.next_client_id += 1;
            let now = unix_time_ms();
            let authenticated = st.config.requirepass.is_none();
            st.clients.insert(
                id,
                Client {
                    id,
                    addr: peer.to_string(),
                    laddr,
                    local: peer.ip().is_loopback(),
                    name: None,
                    db: 0,
                    protocol: Protocol::Resp2,
                    authenticated,
                    created_ms: now,
                    last_ms: now,
                    last_cmd: String::new(),
                    multi: None,
                    multi_error: false,
                    watched: Vec::new(),
                    watch_dirty: false,
                    channels: Default::default(),
                    patterns: Default::default(),
                    blocked: None,
                    outbox: outbox_tx,
                    outbox_bytes: outbox_bytes.clone(),
                    kill: kill.clone(),
                },
            );
            Some((id, authenticated, st.config.clone()))
        }
    };
    let Some((id, mut authenticated, config)) = registered else {
        let _ = stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let limits = resp::Limits {
        bulk_len_max_bytes: config.proto_max_bulk_len_bytes,
        ..resp::Limits::default()
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out = ReplyBuf::default();
    let mut pending: VecDeque<Vec<Bytes>> = VecDeque::new();
    let idle = (config.timeout_secs > 0).then(|| Duration::from_secs(config.timeout_secs));

    'conn: loop {
        let mut protocol_error = None;
        while pending.len() < BATCH_COMMANDS_MAX && (authenticated || pending.is_empty()) {
            match decoder.decode(&mut rbuf, authenticated) {
                Ok(Some(cmd)) => pending.push_back(cmd),
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            }
        }
        if !pending.is_empty() {
            let flow = {
                let mut st = shared.state.lock().expect("state lock");
                st.ks.set_clock(unix_time_ms());
                let mut flow = Flow::Continue;
                // Before AUTH, one command at a time: AUTH changes the limits for the next.
                while let Some(cmd) = pending.pop_front() {
                    flow = dispatch(&mut st, id, cmd, &mut out);
                    if !matches!(flow, Flow::Continue) || !authenticated {
                        break;
                    }
                }
                authenticated = st.clients.get(&id).is_some_and(|c| c.authenticated);
                st.stats.total_net_output_bytes += out.len() as u64;
                flow
            };
            if !out.is_empty() {
                if stream.write_all(out.as_bytes()).await.is_err() {
                    break 'conn;
                }
                out.clear();
            }
            match flow {
                Flow::Continue => {}
                Flow::Close => break 'conn,
                Flow::Shutdown => {
                    let _ = shared.shutdown.send(true);
                    break 'conn;
                }
                Flow::Block { slot, deadline_ms } => {
                    let reply = match wait_blocked(
                        &shared,
                        id,
                        &slot,
                        deadline_ms,
                        &mut stream,
                        &mut rbuf,
                        &kill,
                        &mut shutdown,
                    )
                    .await
                    {
                        Some(r) => r,
                        None => break 'conn,
                    };
                    if stream.write_all(&reply).await.is_err() {
                        break 'conn;
                    }
                }
            }
            if protocol_error.is_none() {
                continue;
            }
        }
        if let Some(e) = protocol_error {
            out.error(&format!("ERR {e}"));
            let _ = stream.write_all(out.as_bytes()).await;
            tracing::debug!(client = id, error = %e, "closing connection after protocol error");
            break;
        }
        if rbuf.len() > config.client_query_buffer_limit_bytes {
            tracing::warn!(
                client = id,
                bytes = rbuf.len(),
                "closing client that exceeded the query buffer limit"
            );
            break;
        }
        rbuf.reserve(READ_CHUNK_BYTES);
        let idle_timer = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = stream.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => shared.state.lock().expect("state lock").stats.total_net_input_bytes += n as u64,
            },
            Some(msg) = outbox_rx.recv() => {
                let mut batch = msg;
                while let Ok(more) = outbox_rx.try_recv() {
                    batch.extend_from_slice(&more);
                }
                outbox_bytes.fetch_sub(batch.len(), Ordering::Relaxed);
                if stream.write_all(&batch).await.is_err() {
                    break;
                }
            }
            _ = kill.notified() => break,
            _ = shutdown.changed() => break,
            _ = idle_timer => {
                let subscribed = shared.state.lock().expect("state lock").clients.get(&id).is_some_and(|c| c.subscriptions() > 0);
                if !subscribed {
                    break;
                }
            }
        }
    }
    shared.state.lock().expect("state lock").remove_client(id);
}

/// Waits until a blocked command is served, times out, or the connection must close
/// (`None`). Input that arrives meanwhile is buffered, not run, as in Redis.
#[allow(clippy::too_many_arguments)]
async fn wait_blocked(
    shared: &Shared,
    id: u64,
    slot: &Arc<BlockSlot>,
    deadline_ms: Option<u64>,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    kill: &Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Vec<u8>> {
    let timeout = deadline_ms.map(|d| Duration::from_millis(d.saturating_sub(unix_time_ms())));
    let sleep = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    loop {
        let wake = tokio::select! {
            _ = slot.notify.notified() => {
                if let Some(r) = slot.reply.lock().expect("slot lock").take() {
                    return Some(r);
                }
                continue;
            }
            _ = &mut sleep => {
                let mut st = shared.state.lock().expect("state lock");
                // Served at the last moment: the reply wins over the timeout.
                if let Some(r) = slot.reply.lock().expect("slot lock").take() {
                    return Some(r);
                }
                st.unblock(id);
                let protocol = st.clients.get(&id).map_or(Protocol::Resp2, |c| c.protocol);
                let mut r = ReplyBuf::new(protocol);
                r.null_array();
                return Some(r.take());
            }
            read = stream.read_buf(rbuf) => match read {
                Ok(0) | Err(_) => Wake::Closed,
                Ok(_) => Wake::Input,
            },
            _ = kill.notified() => Wake::Closed,
            _ = shutdown.changed() => Wake::Closed,
        };
        if let Wake::Closed = wake {
            return None;
        }
    }
}
