//! One client connection: read, decode, run a batch of commands under one lock, write.
//!
//! Every complete command already in the read buffer is run in the same critical section
//! and all replies go out in one write, which is what makes pipelining cheap. Between
//! batches the connection waits on just two things: its socket and its outbox (pub/sub
//! messages and close requests).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use resp::{Protocol, ReplyBuf, RequestDecoder};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::dispatch::{Flow, dispatch};
use crate::memory::ClientMemory;
use crate::state::{BlockSlot, Client, KillSwitch, Outbound};
use crate::{Shared, unix_time_ms};

/// Commands taken from the read buffer per critical section, so one client's long pipeline
/// cannot hold the lock against everyone else for long.
const BATCH_COMMANDS_MAX: usize = 1024;
/// Read buffer growth step (Redis's PROTO_IOBUF_LEN).
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// An idle connection's empty read buffer is given back after this long (Redis frees an
/// idle client's query buffer after 2 s too): the cron asks, through the outbox, so a
/// waiting connection arms no timer of its own.
pub(crate) const QUERY_BUF_IDLE_RELEASE_MS: u64 = 2000;
/// A read buffer above this size shrinks back once the peak of what it held over the
/// last [`QUERY_BUF_PEAK_WINDOW`] is under half of it (Redis's PROTO_RESIZE_THRESHOLD).
const QUERY_BUF_SHRINK_ABOVE_BYTES: usize = 32 * 1024;
const QUERY_BUF_PEAK_WINDOW: Duration = Duration::from_millis(100);
/// A batch stops running commands once its replies reach this size and writes them
/// first: a pipeline of large GETs holds one batch's replies, not 1024 of them, whatever
/// `client-output-buffer-limit` says (the client sees the same replies either way).
const BATCH_REPLY_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Output a client has not taken beyond which its connection stops reading (and so
/// running its commands) until it takes some, when no output limit closes it first:
/// Redis lets such a buffer grow without bound; several caches share this process.
const OUTPUT_BACKPRESSURE_BYTES: usize = 64 * 1024 * 1024;
/// How long a closing connection waits for its client to take what is left (the reply
/// to QUIT, an error) before it closes anyway.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply buffer that grew beyond this for a large reply is given back once written.
const REPLY_BUF_KEEP_BYTES: usize = 64 * 1024;
/// A connection that has not authenticated (when a password is required) this long after
/// it opened is closed, so sockets without the key cannot hold `maxclients` slots.
pub const UNAUTHENTICATED_TIMEOUT_SECS: u64 = 10;

/// A look at a client's socket from outside its connection task: whether its peer has
/// closed it. A connection notices its peer's close only when its task next runs, which on
/// a loaded machine can be after a newer client's command: client eviction asks the probe
/// first, so a client that is gone is let go instead of live ones being closed for the
/// memory it still seems to hold (Redis, one thread, always reads the close first).
#[derive(Debug, Clone)]
pub struct HangupProbe(Arc<std::sync::Mutex<Option<std::os::fd::RawFd>>>);

/// The connection's side of a [`HangupProbe`]: dropped before the socket (it is declared
/// before it in [`Connection`]), however the connection ends, panics included; from then on
/// the probe reports the client gone without touching the descriptor.
struct SocketGuard(Arc<std::sync::Mutex<Option<std::os::fd::RawFd>>>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

impl HangupProbe {
    fn new(socket: &impl std::os::fd::AsFd) -> (HangupProbe, SocketGuard) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket.as_fd());
        let slot = Arc::new(std::sync::Mutex::new(Some(fd)));
        (HangupProbe(slot.clone()), SocketGuard(slot))
    }

    /// Whether the peer closed the socket (or it failed, or the connection ended) and no
    /// input is left unread. Over TLS a peer's close_notify is input: such a client counts
    /// as open until its connection reads it.
    pub fn hung_up(&self) -> bool {
        use rustix::net::{RecvFlags, recv};
        let slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(raw) = *slot else {
            return true;
        };
        // SAFETY: the descriptor is open while the slot holds it: the connection's
        // `SocketGuard` empties the slot, under this lock, before the socket is dropped.
        // Peeking reads nothing the connection would miss.
        #[allow(unsafe_code)]
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        let mut byte = [0u8; 1];
        match recv(fd, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((_, 0)) => true,
            Ok(_) => false,
            Err(e) => e != rustix::io::Errno::AGAIN && e != rustix::io::Errno::INTR,
        }
    }
}

#[cfg(test)]
pub(crate) fn probe_for_test(socket: &std::net::TcpStream) -> (HangupProbe, impl Drop + use<>) {
    HangupProbe::new(socket)
}

/// A client's socket: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// Writes all of `bytes` out (over TLS, through rustls's buffer to the socket).
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await?;
        if let Stream::Tls(_) = self {
            self.flush().await?;
        }
        Ok(())
    }

    /// One attempt to write `bytes`, without waiting: how many went (over TLS, handed to
    /// rustls and flushed as far as the socket takes); None when the socket failed.
    fn poll_send_some(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Option<usize> {
        let mut written = 0;
        while written < bytes.len() {
            match Pin::new(&mut *self).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(n)) if n > 0 => written += n,
                Poll::Ready(_) => return None,
                Poll::Pending => break,
            }
        }
        if let Stream::Tls(_) = self
            && let Poll::Ready(Err(_)) = Pin::new(&mut *self).poll_flush(cx)
        {
            return None;
        }
        Some(written)
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    id: u64,
    /// Before `stream`: fields drop in order, and the guards must go first.
    _socket_guard: SocketGuard,
    _held_guard: Option<crate::held::HeldGuard>,
    stream: Stream,
    /// Where replies wait for the worker to sleep (plain TCP, when the runtime allows).
    held: Option<Arc<crate::held::Held>>,
    rbuf: BytesMut,
    outbox: mpsc::UnboundedReceiver<Outbound>,
    memory: Arc<ClientMemory>,
    /// Replies and pushes the socket has not taken yet (counted in `memory`): the client
    /// keeps being served meanwhile, as Redis does, until its output limits (or, without
    /// any, `OUTPUT_BACKPRESSURE_BYTES`) say otherwise.
    obuf: BytesMut,
    /// Where in `rbuf` a partly read large argument ends (from the decoder).
    argument_end: Option<usize>,
    killed: Arc<KillSwitch>,
    /// Bytes read since the last batch, added to the stats under the batch's lock.
    unaccounted_input_bytes: u64,
    /// The client's transaction while a busy script holds the state.
    busy_multi: crate::scripting::BusyMulti,
    /// The most the read buffer held since `peak_since` (shrinking it after a peak).
    query_buf_peak: usize,
    query_buf_peak_since: std::time::Instant,
    /// The client's `client-output-buffer-limit` class limit and `client-query-buffer-limit`,
    /// read from the state once per batch.
    output_limit: crate::config::OutputBufferLimit,
    query_buf_limit_bytes: usize,
    /// Since when (unix ms) unwritten replies have been over the soft output limit.
    output_soft_since_ms: Option<u64>,
}

/// What the socket or outbox produced.
enum Wake {
    /// Bytes read (0: the peer closed).
    Read {
        n: usize,
    },
    Outbox(Option<Outbound>),
}

/// What woke an idle or blocked connection.
enum Event {
    Input,
    Closed,
}

/// Serves one accepted connection; `fd_slot` is its share of the process's descriptors
/// (none left: the client is refused as over `maxclients`).
pub async fn handle(
    shared: Arc<Shared>,
    stream: Stream,
    peer: SocketAddr,
    fd_slot: Option<crate::fds::FdSlot>,
) {
    let _ = stream.tcp().set_nodelay(true);
    let laddr = stream
        .tcp()
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (outbox_tx, outbox) = mpsc::unbounded_channel();
    let killed = Arc::new(KillSwitch::default());
    let mut stream = stream;
    // Registering takes the state lock, which a busy script holds: until it ends, the new
    // client is answered as every other one is (BUSY, or the kill it asks for).
    let mut early = BytesMut::with_capacity(READ_CHUNK_BYTES);
    if !answer_busy_until_idle(&shared, &mut stream, &mut early).await {
        return;
    }
    let (probe, socket_guard) = HangupProbe::new(stream.tcp());
    let registered = {
        let mut st = shared.lock_when_idle().await;
        st.stats.total_connections_received += 1;
        if st.shutting_down || st.clients.len() >= st.config.maxclients || fd_slot.is_none() {
            st.stats.rejected_connections += 1;
            None
        } else {
            let id = st.next_client_id;
            st.next_client_id += 1;
            let now = unix_time_ms();
            let authenticated = st.config.requirepass.is_none();
            let mut client = Client::new(
                id,
                peer.to_string(),
                laddr,
                peer.ip().is_loopback(),
                authenticated,
                now,
                outbox_tx,
            );
            let memory = Arc::new(ClientMemory::new(st.memory.clients.clone()));
            memory.set_query_buf(early.capacity());
            client.memory = memory.clone();
            let held = match &stream {
                Stream::Plain(tcp) if crate::held::enabled() => {
                    Some(crate::held::Held::new(tcp, client.outbox.clone()))
                }
                _ => None,
            };
            client.killed = killed.clone();
            client.socket = Some(probe);
            st.clients.insert(id, client);
            Some((id, authenticated, st.config.clone(), memory, held))
        }
    };
    let Some((id, authenticated, config, memory, held)) = registered else {
        let _ = stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let (held, held_guard) = held.unzip();
    let mut conn = Connection {
        shared: shared.clone(),
        id,
        _socket_guard: socket_guard,
        _held_guard: held_guard,
        stream,
        held,
        rbuf: early,
        outbox,
        memory,
        obuf: BytesMut::new(),
        argument_end: None,
        killed,
        unaccounted_input_bytes: 0,
        busy_multi: Default::default(),
        query_buf_peak: 0,
        query_buf_peak_since: std::time::Instant::now(),
        output_limit: config.output_buffer_limits.normal,
        query_buf_limit_bytes: config.client_query_buffer_limit_bytes,
        output_soft_since_ms: None,
    };
    conn.serve(authenticated, &config).await;
    conn.flush_before_close().await;
    shared.lock_when_idle().await.remove_client(id);
}

impl Connection {
    async fn serve(&mut self, mut authenticated: bool, config: &crate::NodeConfig) {
        let limits = resp::Limits {
            bulk_len_max_bytes: config.proto_max_bulk_len_bytes,
            ..resp::Limits::default()
        };
        let mut decoder = RequestDecoder::new(limits);
        let mut out = ReplyBuf::default();
        let mut pending: VecDeque<Vec<Bytes>> = VecDeque::new();
        let idle = (config.timeout_secs > 0).then(|| Duration::from_secs(config.timeout_secs));
        let auth_deadline = (!authenticated)
            .then(|| Instant::now() + Duration::from_secs(UNAUTHENTICATED_TIMEOUT_SECS));
        loop {
            let mut protocol_error = None;
            while pending.len() < BATCH_COMMANDS_MAX && (authenticated || pending.is_empty()) {
                match decoder.decode(&mut self.rbuf, authenticated) {
                    Ok(Some(cmd)) => pending.push_back(cmd),
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                }
            }
            self.memory.set_query_unparsed(decoder.unparsed(&self.rbuf));
            self.memory.set_request_args(decoder.pending_bytes());
            self.argument_end = decoder.argument_end(&self.rbuf);
            if self.memory.node().over_limit()
                && self.shared.lock_when_idle().await.evict_clients(self.id)
            {
                return;
            }
            if !pending.is_empty() {
                let shared = self.shared.clone();
                let (flow, durable) = {
                    let st = shared.lock_unless_busy().await;
                    self.run_batch(st, &mut pending, &mut out, &mut authenticated)
                };
                // No reply before the log holds its writes (on disk under appendfsync always).
                if let Some(target) = durable
                    && !wait_durable(target).await
                {
                    return;
                }
                // Replies go out once every connection that was ready has run its commands,
                // as Redis writes them before it sleeps: a client that waits on many
                // connections then finds several replies at once and answers with several
                // requests, which the node reads in one wake-up instead of one each. Only
                // when this client has nothing more to run now (a long pipeline goes on
                // with its pushes in order) and the flow goes on as usual: after SHUTDOWN
                // no other client may run a write the final save missed.
                if matches!(flow, Flow::Continue)
                    && !out.is_empty()
                    && pending.is_empty()
                    && self.rbuf.is_empty()
                {
                    // Where the runtime writes held replies as its worker goes to sleep,
                    // the task need not wait for that itself.
                    match &self.held {
                        Some(held) if self.obuf.is_empty() && held.hand_over(out.as_bytes()) => {
                            out.clear()
                        }
                        _ => {
                            tokio::task::yield_now().await;
                            crate::held::flush_if_waiting();
                        }
                    }
                }
                if !self.write(&mut out).await {
                    return;
                }
                match flow {
                    Flow::Continue => {}
                    Flow::Close => return,
                    Flow::Shutdown => {
                        let _ = self.shared.shutdown.send(true);
                        return;
                    }
                    Flow::Paused { args } => {
                        pending.push_front(args);
                        if !self.wait_unpaused().await {
                            return;
                        }
                        continue;
                    }
                    Flow::Block { slot, deadline_ms } => {
                        match self.wait_blocked(&slot, deadline_ms).await {
                            Some(reply) => {
                                // Its write was logged by the batch that served it.
                                let durable = self
                                    .shared
                                    .state
                                    .lock()
                                    .expect("state lock")
                                    .durable_target();
                                if let Some(target) = durable
                                    && !wait_durable(target).await
                                {
                                    return;
                                }
                                out.raw(&reply);
                                if !self.write(&mut out).await {
                                    return;
                                }
                            }
                            None => return,
                        }
                    }
                }
                if protocol_error.is_none() {
                    continue;
                }
            }
            if let Some(e) = protocol_error {
                out.error(&format!("ERR {e}"));
                self.write(&mut out).await;
                tracing::debug!(client = self.id, error = %e, "closing connection after protocol error");
                return;
            }
            if self.query_buf_over_limit() {
                self.close_for_query_buf().await;
                return;
            }
            // Before AUTH the wait ends at the deadline counted from the connection's start.
            let wait = match auth_deadline {
                Some(d) if !authenticated => Some(d.saturating_duration_since(Instant::now())),
                _ => idle,
            };
            match wait {
                None => {
                    if let Event::Closed = self.next_event().await {
                        return;
                    }
                }
                Some(d) => match tokio::time::timeout(d, self.next_event()).await {
                    Ok(Event::Input) => {}
                    Ok(Event::Closed) => return,
                    Err(_) if !authenticated => {
                        tracing::debug!(
                            client = self.id,
                            "closing connection not authenticated in time"
                        );
                        return;
                    }
                    Err(_) => {
                        let st = self.shared.state.lock().expect("state lock");
                        // Subscribers idle by design; Redis does not time them out either.
                        if st
                            .clients
                            .get(&self.id)
                            .is_none_or(|c| c.subscriptions() == 0)
                        {
                            return;
                        }
                    }
                },
            }
        }
    }

    /// Runs queued commands under the lock `st`; without it (a busy script holds it),
    /// answers them as Redis does from inside the script's hook.
    fn run_batch(
        &mut self,
        st: Option<crate::lock::StateGuard<'_>>,
        pending: &mut VecDeque<Vec<Bytes>>,
        out: &mut ReplyBuf,
        authenticated: &mut bool,
    ) -> (Flow, Option<(u64, tokio::sync::watch::Receiver<u64>)>) {
        let Some(mut st) = st else {
            let mut flow = Flow::Continue;
            while let Some(cmd) = pending.pop_front() {
                flow = crate::scripting::answer_while_busy(
                    &self.shared.script_watch,
                    Some(&mut self.busy_multi),
                    &cmd,
                    out,
                );
            }
            return (flow, None);
        };
        // Evicted or killed while this batch waited for the lock: its record may be gone.
        if self.killed.is_killed() {
            pending.clear();
            return (Flow::Close, None);
        }
        self.apply_busy_multi(&mut st);
        st.ks.set_clock(unix_time_ms());
        // Each command's duration runs from the previous one's end (one clock read each).
        st.intro.clock_us = crate::monotonic_us();
        crate::held::flush_if_overdue(st.intro.clock_us);
        st.stats.total_net_input_bytes += std::mem::take(&mut self.unaccounted_input_bytes);
        let mut flow = Flow::Continue;
        // One comparison per command on the normal path: the smaller of the batch's reply
        // bound and the client's output limits.
        let check_at = [self.output_limit.hard_bytes, self.output_limit.soft_bytes]
            .into_iter()
            .filter(|&b| b > 0)
            .fold(BATCH_REPLY_MAX_BYTES, usize::min);
        // Beyond the hard limit the client is closed: a command that repeats without bound
        // stops there.
        out.stop_at(match self.output_limit.hard_bytes {
            0 => resp::REPLY_MAX_BYTES,
            hard => hard,
        });
        while let Some(cmd) = pending.pop_front() {
            flow = dispatch(&mut st, self.id, cmd, out);
            // Before AUTH, one command at a time: AUTH changes the limits for the next.
            if !matches!(flow, Flow::Continue) || !*authenticated {
                break;
            }
            // What waits from earlier batches counts too: the client's output buffer.
            let unwritten = out.len() + self.obuf.len();
            if unwritten >= check_at {
                if self.output_over_limit(&mut st, unwritten) || self.reply_too_large(&st, out) {
                    out.clear();
                    pending.clear();
                    return (Flow::Close, None);
                }
                if out.len() >= BATCH_REPLY_MAX_BYTES {
                    break;
                }
            }
        }
        let client = st.clients.get(&self.id);
        if let Some(c) = client {
            self.output_limit = st.config.output_buffer_limits.for_client(c.subscriptions());
            c.memory.set_records(c);
        }
        // The batch may have grown this client (a MULTI queue, subscriptions) or others
        // (pushes it published): past maxmemory-clients, the largest go.
        if self.memory.node().over_limit() && st.evict_clients(self.id) {
            out.clear();
            pending.clear();
            return (Flow::Close, None);
        }
        let client = st.clients.get(&self.id);
        self.query_buf_limit_bytes = st.config.client_query_buffer_limit_bytes;
        *authenticated = client.is_some_and(|c| c.authenticated);
        self.busy_multi.in_multi = client.is_some_and(|c| c.multi.is_some());
        if st.tracking.clients > 0 {
            crate::tracking::broadcast(&mut st);
        }
        st.stats.total_net_output_bytes += out.len() as u64;
        let durable = st.feed_aof();
        (flow, durable)
    }

    /// Waits until CLIENT PAUSE ends (its deadline or CLIENT UNPAUSE); false when the
    /// connection closed meanwhile. Input that arrives is buffered, as for a blocked client.
    async fn wait_unpaused(&mut self) -> bool {
        let (until_ms, unpaused) = {
            let mut st = self.shared.lock_when_idle().await;
            match st.pause {
                Some(p) => {
                    st.paused_clients += 1;
                    (p.until_ms, st.unpaused.clone())
                }
                None => return true,
            }
        };
        let open = self.wait_for_unpause(until_ms, &unpaused).await;
        self.shared.lock_when_idle().await.paused_clients -= 1;
        open
    }

    async fn wait_for_unpause(&mut self, until_ms: u64, unpaused: &tokio::sync::Notify) -> bool {
        let notified = unpaused.notified();
        tokio::pin!(notified);
        // Registered from here on; an UNPAUSE that came before is seen in the state.
        notified.as_mut().enable();
        if self.shared.lock_when_idle().await.pause.is_none() {
            return true;
        }
        let sleep = tokio::time::sleep(Duration::from_millis(
            until_ms.saturating_sub(unix_time_ms()),
        ));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut notified => return true,
                _ = &mut sleep => return true,
                woke = self.wake() => {
                    if let Event::Closed = self.handle_wake(woke).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Gives the client's state what its transaction went through while a script was busy.
    fn apply_busy_multi(&mut self, st: &mut crate::state::State) {
        use crate::scripting::MultiChange;
        for change in self.busy_multi.take_changes() {
            let Some(c) = st.clients.get_mut(&self.id) else {
                return;
            };
            match change {
                MultiChange::Begin => {
                    c.multi.get_or_insert_with(Vec::new);
                }
                MultiChange::Doom => c.multi_error |= c.multi.is_some(),
                MultiChange::Discard => {
                    c.multi = None;
                    c.multi_error = false;
                    st.unwatch_all(self.id);
                }
            }
        }
    }

    /// Whether `unwritten` reply bytes break the client's output buffer limit (then logged
    /// and counted as Redis does).
    fn output_over_limit(&mut self, st: &mut crate::state::State, unwritten: usize) -> bool {
        if !self.output_limit.reached(unwritten) {
            self.output_soft_since_ms = None;
            return false;
        }
        let over =
            self.output_limit
                .exceeded(unwritten, &mut self.output_soft_since_ms, unix_time_ms());
        if over {
            if let Some(c) = st.clients.get(&self.id) {
                crate::state::log_output_limit_close(c);
            }
            st.stats.client_output_buffer_limit_disconnections += 1;
        } else if let Some(c) = st.clients.get(&self.id) {
            // Over the soft limit: if the client sends nothing more, the cron closes it
            // when its seconds pass (pushes and replies share the one buffer and clock).
            let since = self.output_soft_since_ms.unwrap_or(0);
            c.push_soft_since_ms
                .store(since, std::sync::atomic::Ordering::Relaxed);
        }
        over
    }

    /// Whether a reply reached `REPLY_MAX_BYTES` (a client without a hard output limit
    /// asked for one without bound): logged; the client is closed.
    fn reply_too_large(&self, st: &crate::state::State, out: &ReplyBuf) -> bool {
        if out.len() < resp::REPLY_MAX_BYTES {
            return false;
        }
        let addr = st
            .clients
            .get(&self.id)
            .map(|c| c.addr.as_str())
            .unwrap_or("");
        tracing::warn!(
            "Closing client id={} addr={addr}: its reply reached {} bytes, the most one reply may hold",
            self.id,
            resp::REPLY_MAX_BYTES,
        );
        true
    }

    /// Whether the read buffer is over `client-query-buffer-limit`: checked after every
    /// read, also while the client is blocked or paused and its commands wait unparsed,
    /// as Redis checks after each read.
    fn query_buf_over_limit(&self) -> bool {
        self.rbuf.len() > self.query_buf_limit_bytes
    }

    /// Logs and counts a close for [`Self::query_buf_over_limit`].
    async fn close_for_query_buf(&self) {
        let mut st = self.shared.lock_when_idle().await;
        st.stats.client_query_buffer_limit_disconnections += 1;
        let addr = st
            .clients
            .get(&self.id)
            .map(|c| c.addr.clone())
            .unwrap_or_default();
        tracing::warn!(
            "Closing client that reached max query buffer length: id={} addr={addr} qbuf={} (client-query-buffer-limit {})",
            self.id,
            self.rbuf.len(),
            self.query_buf_limit_bytes,
        );
    }

    /// Sends the replies: what the socket takes now goes out, the rest waits in `obuf`
    /// while the client is served on (its limits were checked with the batch). Past
    /// `OUTPUT_BACKPRESSURE_BYTES` the connection stops reading until the client takes
    /// some: a client with no output limit cannot hold memory without bound. False when
    /// the connection must close.
    async fn write(&mut self, out: &mut ReplyBuf) -> bool {
        if out.is_empty() {
            return true;
        }
        let queued = self.queue_output(out.as_bytes()).await;
        if out.len() >= REPLY_BUF_KEEP_BYTES {
            // Give back what a large reply grew the buffer to (as Redis frees reply blocks).
            drop(out.take());
        } else {
            out.clear();
        }
        queued
            && (self.obuf.len() <= OUTPUT_BACKPRESSURE_BYTES
                || self.drain_to(OUTPUT_BACKPRESSURE_BYTES).await)
    }

    /// Writes what the socket takes of `bytes` without waiting (after what waits
    /// already) and keeps the rest in `obuf`; false when the socket failed.
    async fn queue_output(&mut self, bytes: &[u8]) -> bool {
        self.take_back_held();
        let mut written = 0;
        if self.obuf.is_empty() {
            match std::future::poll_fn(|cx| Poll::Ready(self.stream.poll_send_some(cx, bytes)))
                .await
            {
                Some(n) => written = n,
                None => return false,
            }
        }
        if written < bytes.len() {
            self.obuf.extend_from_slice(&bytes[written..]);
            self.memory.add_output(bytes.len() - written);
        }
        true
    }

    /// Moves what the runtime still holds of this client's replies into `obuf`, ahead of
    /// anything written after it.
    fn take_back_held(&mut self) {
        let Some(held) = &self.held else {
            return;
        };
        let bytes = held.take();
        if !bytes.is_empty() {
            // From now on it counts as the client's output.
            self.memory.add_output(bytes.len());
            let mut obuf = BytesMut::from(&bytes[..]);
            obuf.extend_from_slice(&self.obuf);
            self.obuf = obuf;
        }
    }

    /// Waits until at most `bytes` of output wait; false when the socket failed or the
    /// client was killed meanwhile.
    async fn drain_to(&mut self, bytes: usize) -> bool {
        if self.obuf.len() <= bytes {
            return true;
        }
        let killed = self.killed.clone();
        while self.obuf.len() > bytes {
            let progress = std::future::poll_fn(|cx| self.poll_drain(cx));
            let ok = tokio::select! {
                biased;
                ok = progress => ok,
                _ = killed.killed() => false,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Writes from `obuf` what the socket takes; ready once some went (true) or the socket
    /// failed (false), pending while it takes nothing (its writability then wakes the
    /// task). Over TLS, once `obuf` is empty, also pushes out what rustls still holds.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut progressed = false;
        while !self.obuf.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.obuf) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    let _ = self.obuf.split_to(n);
                    self.memory.sub_output(n);
                    progressed = true;
                }
                Poll::Ready(_) => return Poll::Ready(false),
                Poll::Pending => break,
            }
        }
        if self.obuf.is_empty() {
            // Nothing left: give back a buffer a large reply grew.
            if self.obuf.capacity() > REPLY_BUF_KEEP_BYTES {
                self.obuf = BytesMut::new();
            }
            if let Stream::Tls(_) = self.stream
                && let Poll::Ready(Err(_)) = Pin::new(&mut self.stream).poll_flush(cx)
            {
                return Poll::Ready(false);
            }
        }
        if progressed {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    }

    /// Before closing: what waits goes out first (an error reply, CLIENT KILL's own
    /// answer), unless the client is killed or does not take it in time.
    async fn flush_before_close(&mut self) {
        self.take_back_held();
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, self.drain_to(0)).await;
    }

    /// Waits for input or an outbox item; writes pub/sub messages as they come.
    async fn next_event(&mut self) -> Event {
        let woke = self.wake().await;
        self.handle_wake(woke).await
    }

    /// Waits on the socket and the outbox, writing waiting output as the socket takes it.
    /// Cancel-safe: each write is recorded in `obuf` as it happens, so a `select!` may
    /// drop it at any point.
    async fn wake(&mut self) -> Wake {
        self.shrink_query_buffer();
        loop {
            // Released while idle: no buffer until input comes (plain TCP tells readiness
            // without one; TLS reads through rustls, which needs it).
            if self.rbuf.capacity() == 0
                && self.obuf.is_empty()
                && let Stream::Plain(tcp) = &self.stream
            {
                tokio::select! {
                    ready = tcp.readable() => {
                        if ready.is_err() {
                            return Wake::Read { n: 0 };
                        }
                    }
                    item = self.outbox.recv() => return Wake::Outbox(item),
                }
            }
            self.reserve_read_room();
            self.memory.set_query_buf(self.rbuf.capacity());
            let woke = std::future::poll_fn(|cx| {
                if (!self.obuf.is_empty() || matches!(self.stream, Stream::Tls(_)))
                    && let Poll::Ready(false) = self.poll_drain(cx)
                {
                    return Poll::Ready(Wake::Read { n: 0 });
                }
                if let Poll::Ready(read) =
                    tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf)
                {
                    return Poll::Ready(Wake::Read {
                        n: read.unwrap_or(0),
                    });
                }
                self.outbox.poll_recv(cx).map(Wake::Outbox)
            })
            .await;
            match woke {
                Wake::Read { n } => {
                    self.query_buf_peak = self.query_buf_peak.max(self.rbuf.len());
                    self.memory.set_query_buf(self.rbuf.capacity());
                    return Wake::Read { n };
                }
                Wake::Outbox(Some(Outbound::ReleaseQueryBuffer)) => {
                    // Plain TCP tells readiness without a buffer; TLS reads through rustls.
                    if self.rbuf.is_empty() && matches!(self.stream, Stream::Plain(_)) {
                        self.rbuf = BytesMut::new();
                        self.memory.set_query_buf(0);
                    }
                }
                item => return item,
            }
        }
    }

    /// Makes room for the next read: a chunk; while a large argument arrives, room up to
    /// its end, growing at most twofold at a time (a claimed length alone reserves little)
    /// and never past it, so an argument of 220 KB holds about 220 KB, as in Redis.
    fn reserve_read_room(&mut self) {
        let len = self.rbuf.len();
        let room = self.rbuf.capacity() - len;
        match self.argument_end.filter(|&end| end > len) {
            // Room for a useful read (or for all the argument still lacks).
            Some(end) if room >= READ_CHUNK_BYTES.min(end - len) => {}
            Some(end) => {
                let target = end.min((2 * self.rbuf.capacity()).max(len + READ_CHUNK_BYTES));
                let mut grown = BytesMut::with_capacity(target);
                grown.extend_from_slice(&self.rbuf);
                self.rbuf = grown;
            }
            None => self.rbuf.reserve(READ_CHUNK_BYTES),
        }
    }

    /// Gives back most of a read buffer that grew for a large request, once the requests
    /// since have needed less than half of it.
    fn shrink_query_buffer(&mut self) {
        if !self.rbuf.is_empty() || self.rbuf.capacity() <= QUERY_BUF_SHRINK_ABOVE_BYTES {
            return;
        }
        let now = std::time::Instant::now();
        if now.duration_since(self.query_buf_peak_since) < QUERY_BUF_PEAK_WINDOW {
            return;
        }
        if self.query_buf_peak < self.rbuf.capacity() / 2 {
            self.rbuf = BytesMut::with_capacity(self.query_buf_peak.max(READ_CHUNK_BYTES));
        }
        self.query_buf_peak = 0;
        self.query_buf_peak_since = now;
    }

    async fn handle_wake(&mut self, woke: Wake) -> Event {
        match woke {
            Wake::Read { n: 0, .. } => Event::Closed,
            // No readiness is forgotten after a short read: the driver may have seen new
            // bytes arrive since, and clearing it then would leave them unread until the
            // peer sends more (a pipelining client that waits for replies never does).
            Wake::Read { n } => {
                self.unaccounted_input_bytes += n as u64;
                if self.query_buf_over_limit() {
                    self.close_for_query_buf().await;
                    return Event::Closed;
                }
                // A read that grew the clients past maxmemory-clients evicts the largest.
                if self.memory.node().over_limit()
                    && self.shared.lock_when_idle().await.evict_clients(self.id)
                {
                    return Event::Closed;
                }
                Event::Input
            }
            Wake::Outbox(item) => self.deliver(item).await,
        }
    }

    async fn deliver(&mut self, item: Option<Outbound>) -> Event {
        let mut batch = match item {
            Some(Outbound::Message(m)) if !self.killed.is_killed() => m,
            Some(Outbound::ReleaseQueryBuffer) => return Event::Input,
            // The runtime could not write it all: the rest goes out as the socket takes it
            // (the wait for input drains `obuf`).
            Some(Outbound::WriteHeld) => {
                self.take_back_held();
                return Event::Input;
            }
            _ => return Event::Closed,
        };
        while let Ok(more) = self.outbox.try_recv() {
            match more {
                Outbound::Message(m) => batch.extend_from_slice(&m),
                // Taken back by the write below, ahead of the batch.
                Outbound::ReleaseQueryBuffer | Outbound::WriteHeld => {}
                Outbound::Close => return Event::Closed,
            }
        }
        // Counted as output from the outbox on: what the socket does not take stays counted.
        self.memory.sub_output(batch.len());
        match self.queue_output(&batch).await && self.drain_to(OUTPUT_BACKPRESSURE_BYTES).await {
            true => Event::Input,
            false => Event::Closed,
        }
    }

    /// Waits until a blocked command is served or times out; `None` when the connection
    /// must close. Input that arrives meanwhile is buffered, not run, as in Redis.
    async fn wait_blocked(
        &mut self,
        slot: &Arc<BlockSlot>,
        deadline_ms: Option<u64>,
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
            tokio::select! {
                // A served command's reply goes out before the pushes it caused (an
                // invalidation of the key it wrote), as Redis orders them.
                biased;
                _ = slot.notify.notified() => {
                    if let Some(r) = slot.reply.lock().expect("slot lock").take() {
                        return Some(r);
                    }
                }
                _ = &mut sleep => {
                    let mut st = self.shared.state.lock().expect("state lock");
                    // Served at the last moment: the reply wins over the timeout.
                    if let Some(r) = slot.reply.lock().expect("slot lock").take() {
                        return Some(r);
                    }
                    st.unblock(self.id);
                    let protocol = st.clients.get(&self.id).map_or(Protocol::Resp2, |c| c.protocol);
                    let mut r = ReplyBuf::new(protocol);
                    r.null_array();
                    return Some(r.take());
                }
                woke = self.wake() => {
                    if let Event::Closed = self.handle_wake(woke).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// While a script is busy, answers what a connection that is not registered yet sends
/// (its bytes stay in `buf`); false when it closed meanwhile.
async fn answer_busy_until_idle(shared: &Shared, stream: &mut Stream, buf: &mut BytesMut) -> bool {
    let mut decoder = RequestDecoder::new(resp::Limits::default());
    while shared.script_watch.is_busy() {
        match tokio::time::timeout(crate::lock::BUSY_POLL, stream.read_buf(buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            // The script ended while we waited: the connection proper runs what came.
            Ok(Ok(_)) if !shared.script_watch.is_busy() => break,
            Ok(Ok(_)) => {
                let mut out = ReplyBuf::default();
                while let Ok(Some(cmd)) = decoder.decode(buf, false) {
                    crate::scripting::answer_while_busy(&shared.script_watch, None, &cmd, &mut out);
                }
                if stream.send(out.as_bytes()).await.is_err() {
                    return false;
                }
            }
        }
    }
    true
}

/// Waits until the log is durable up to `offset` (appendfsync always), as `on_disk` tells;
/// false if the log went away.
pub(crate) async fn wait_durable(
    (offset, mut on_disk): (u64, tokio::sync::watch::Receiver<u64>),
) -> bool {
    on_disk.wait_for(|&d| d >= offset).await.is_ok()
}
