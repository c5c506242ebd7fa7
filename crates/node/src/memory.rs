//! The node's memory: what counts toward `maxmemory`, and keeping under it.
//!
//! A node counts what it holds itself — its dataset (the keyspace keeps that sum), its
//! clients' buffers and records, its Lua interpreters — rather than asking the allocator,
//! which counts the whole process: under `serve` several caches share one, and each must
//! evict for its own data only. The allocator's figure is still reported
//! (`allocator_allocated`), so the two can be compared.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use keyspace::Evicted;

use crate::state::{Client, State};

/// The reply to a command that may grow memory while memory is over `maxmemory` and
/// nothing more can be evicted (Redis's wording).
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// What one connected client holds beyond its buffers: its record, its task and its
/// socket's share.
pub const CLIENT_OVERHEAD_BYTES: u64 = 2048;
/// What a watched key costs its client (its entry in the client's list and the node's
/// watcher table), whatever the key's length, as Redis counts it.
pub const WATCHED_KEY_BYTES: u64 = 96;
/// What a channel or pattern subscription costs its client (both registries' entries).
pub const SUBSCRIPTION_BYTES: u64 = 96;
/// What a CLIENT TRACKING prefix costs its client.
pub const TRACKING_PREFIX_BYTES: u64 = 96;

/// How long one call may evict for (Redis's default `maxmemory-eviction-tenacity` allows
/// 500 us); the cron continues where it stopped.
pub const EVICTION_TIME_SLICE: Duration = Duration::from_millis(1);

/// The node's memory figures.
#[derive(Debug, Default)]
pub struct Memory {
    /// `maxmemory` (0: no limit), taken from the configuration when it changes.
    pub max_bytes: u64,
    /// What the clients hold together, kept as it changes, and their limit.
    pub clients: Arc<ClientsMemory>,
    /// Clients evicted (or found gone) whose connections have not let go of their memory
    /// yet: they no longer count against `maxmemory-clients`.
    pub evicted: Vec<Arc<ClientMemory>>,
    /// The most `used_memory` has been.
    pub peak_bytes: u64,
    /// Eviction stopped at the end of its time slice with memory still over.
    pub evicting: bool,
    /// Memory was over `maxmemory` at the last check and eviction could not bring it
    /// under: commands that may grow memory are refused, and scripts that started then
    /// may not run them.
    pub out_of_memory: bool,
}

impl State {
    /// `maxmemory` in bytes; 0 for no limit.
    pub fn maxmemory(&self) -> u64 {
        self.memory.max_bytes
    }

    /// Redis's `used_memory` for this node: dataset, clients and Lua.
    pub fn used_memory(&self) -> u64 {
        self.ks.dataset_bytes() as u64 + self.memory.clients.total() + self.lua_memory()
    }

    /// Bytes of the Lua interpreters (EVAL's and FUNCTION's).
    pub fn lua_memory(&self) -> u64 {
        let eval = self.scripting.eval_ref().map_or(0, |e| e.used_memory());
        let functions = self
            .scripting
            .functions_ref()
            .map_or(0, |f| f.engine().used_memory());
        (eval + functions) as u64
    }

    /// Whether the last [`State::make_room`] left memory over with keys still to evict.
    pub fn make_room_pending(&self) -> bool {
        self.memory.evicting
    }

    /// Evicts what the policy allows until used memory is within `maxmemory`; returns
    /// whether it still is over with nothing left to evict (then [`Memory::out_of_memory`]
    /// is set). Eviction that ran out of its time slice is not a failure: the cron carries
    /// on, as Redis's eviction does when its time limit ends.
    pub fn make_room(&mut self) -> bool {
        let max = self.maxmemory();
        self.ks.settle();
        let mut started = None;
        self.memory.evicting = false;
        self.memory.out_of_memory = loop {
            let used = self.used_memory();
            self.memory.peak_bytes = self.memory.peak_bytes.max(used);
            if max == 0 || used <= max {
                let headroom = if max == 0 { u64::MAX } else { max - used };
                self.ks
                    .set_growth_headroom(usize::try_from(headroom).unwrap_or(usize::MAX));
                break false;
            }
            let over = usize::try_from(used - max).unwrap_or(usize::MAX);
            match self.ks.evict(over) {
                Evicted::Stuck => break true,
                Evicted::Enough => {}
                // The clock is read only when a call could not evict enough: most calls
                // evict a key or two.
                Evicted::Running => {
                    let started = *started.get_or_insert_with(Instant::now);
                    if started.elapsed() >= EVICTION_TIME_SLICE {
                        self.memory.evicting = true;
                        break false;
                    }
                }
            }
        };
        self.memory.out_of_memory
    }
}

/// What a node's clients hold together, and `maxmemory-clients` in bytes: shared with
/// every connection, so the check after a read takes no lock.
#[derive(Debug, Default)]
pub struct ClientsMemory {
    total_bytes: AtomicU64,
    max_bytes: AtomicU64,
}

impl ClientsMemory {
    /// The clients' bytes, connections that are closing included.
    pub fn total(&self) -> u64 {
        self.total_bytes.load(Relaxed)
    }

    /// `maxmemory-clients` in bytes; 0: clients are not evicted.
    pub fn max(&self) -> u64 {
        self.max_bytes.load(Relaxed)
    }

    /// Whether clients must be evicted (the caller then takes the lock to choose whom).
    pub fn over_limit(&self) -> bool {
        let max = self.max();
        max > 0 && self.total() > max
    }

    fn moved(&self, old: u64, new: u64) {
        // Wrapping: the sum of every client's changes never goes below zero.
        self.total_bytes.fetch_add(new.wrapping_sub(old), Relaxed);
    }
}

/// What one client holds, kept where it changes: its connection sets the read buffer and
/// the output not written yet, the state its records (MULTI queue, watched keys,
/// subscriptions, tracking prefixes). Each change moves the node's total by the
/// difference, so `used_memory` and the `maxmemory-clients` check never walk the clients.
#[derive(Debug)]
pub struct ClientMemory {
    node: Arc<ClientsMemory>,
    query_buf: AtomicU64,
    /// The read buffer's bytes no request has taken yet (CLIENT LIST `qbuf`); part of
    /// `query_buf`, so not summed.
    query_unparsed: AtomicU64,
    request_args: AtomicU64,
    output: AtomicU64,
    records: AtomicU64,
}

impl ClientMemory {
    pub fn new(node: Arc<ClientsMemory>) -> ClientMemory {
        node.moved(0, CLIENT_OVERHEAD_BYTES);
        ClientMemory {
            node,
            query_buf: AtomicU64::new(0),
            query_unparsed: AtomicU64::new(0),
            request_args: AtomicU64::new(0),
            output: AtomicU64::new(0),
            records: AtomicU64::new(CLIENT_OVERHEAD_BYTES),
        }
    }

    /// A client with no node behind it (the script client).
    pub fn detached() -> ClientMemory {
        ClientMemory::new(Arc::default())
    }

    pub fn node(&self) -> &ClientsMemory {
        &self.node
    }

    /// All this client holds (CLIENT LIST `tot-mem`).
    pub fn total(&self) -> u64 {
        self.query_buf()
            + self.request_args.load(Relaxed)
            + self.output()
            + self.records.load(Relaxed)
    }

    pub fn query_buf(&self) -> u64 {
        self.query_buf.load(Relaxed)
    }

    pub fn query_unparsed(&self) -> u64 {
        self.query_unparsed.load(Relaxed)
    }

    pub fn output(&self) -> u64 {
        self.output.load(Relaxed)
    }

    /// The read buffer's capacity now.
    pub fn set_query_buf(&self, capacity: usize) {
        self.replace(&self.query_buf, capacity as u64);
    }

    /// The arguments of a request still arriving, taken out of the read buffer already.
    pub fn set_request_args(&self, bytes: usize) {
        self.replace(&self.request_args, bytes as u64);
    }

    /// Sets one of the summed figures. Each has one writer (the client's connection), so a
    /// load and a store do; and most requests change no figure, so the node's shared total
    /// is written only when one moved (several times per request otherwise).
    fn replace(&self, figure: &AtomicU64, new: u64) {
        let old = figure.load(Relaxed);
        if old != new {
            figure.store(new, Relaxed);
            self.node.moved(old, new);
        }
    }

    pub fn set_query_unparsed(&self, unparsed: usize) {
        self.query_unparsed.store(unparsed as u64, Relaxed);
    }

    /// `n` more bytes wait to be written; returns how many wait now.
    pub fn add_output(&self, n: usize) -> u64 {
        self.node.moved(0, n as u64);
        self.output.fetch_add(n as u64, Relaxed) + n as u64
    }

    /// `n` bytes were written (or dropped).
    pub fn sub_output(&self, n: usize) {
        self.node.moved(n as u64, 0);
        self.output.fetch_sub(n as u64, Relaxed);
    }

    /// Counts the client's records again after a command changed them.
    pub fn set_records(&self, c: &Client) {
        let subscriptions = c.subscriptions() as u64;
        let prefixes = c.tracking.as_ref().map_or(0, |m| m.prefixes.len()) as u64;
        let multi = match &c.multi {
            Some(q) if !q.is_empty() => c.multi_bytes as u64,
            _ => 0,
        };
        let bytes = CLIENT_OVERHEAD_BYTES
            + multi
            + c.watched.len() as u64 * WATCHED_KEY_BYTES
            + subscriptions * SUBSCRIPTION_BYTES
            + prefixes * TRACKING_PREFIX_BYTES;
        self.replace(&self.records, bytes);
    }
}

impl Drop for ClientMemory {
    /// A client that went gives back all it held.
    fn drop(&mut self) {
        self.node.moved(self.total(), 0);
    }
}

impl State {
    /// `maxmemory-clients` in bytes, from a byte amount or a percentage of `maxmemory`.
    pub fn apply_maxmemory_clients(&mut self) {
        let setting = self
            .config
            .standard
            .get("maxmemory-clients")
            .unwrap_or_default();
        let bytes = match setting.strip_suffix('%') {
            Some(p) => p.parse::<u64>().unwrap_or(0) * self.maxmemory() / 100,
            None => setting.parse().unwrap_or(0),
        };
        self.memory.clients.max_bytes.store(bytes, Relaxed);
    }

    /// What the clients hold that still counts: those evicted already are not counted
    /// again while their connections close.
    fn clients_counted_bytes(&self) -> u64 {
        let closing: u64 = self.memory.evicted.iter().map(|m| m.total()).sum();
        self.memory.clients.total().saturating_sub(closing)
    }

    /// Closes clients, those holding most first, until the clients together are within
    /// `maxmemory-clients` (Redis's client eviction; CLIENT NO-EVICT exempts a client).
    /// A client whose peer has closed its socket is let go first, not counted as evicted.
    /// Others are removed at once; returns whether `me` (the client whose command is
    /// running, 0 for none) was evicted, which its connection then closes.
    pub fn evict_clients(&mut self, me: u64) -> bool {
        // Connections that closed give their memory back when the last holder lets go:
        // let go of those first, whether or not eviction is still on (the cron calls
        // this), or a limit turned off after evicting would keep them counted.
        self.memory.evicted.retain(|m| Arc::strong_count(m) > 1);
        let max = self.memory.clients.max();
        if max == 0 {
            return false;
        }
        let mut total = self.clients_counted_bytes();
        if total <= max {
            return false;
        }
        let mut candidates: Vec<(u64, u64)> = self
            .clients
            .values()
            .filter(|c| !c.killed.is_killed() && c.id != crate::scripting::SCRIPT_CLIENT_ID)
            .map(|c| (c.memory.total(), c.id))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        // First those whose peers are gone, exempt or not, largest first: they hold nothing
        // a client still uses. Then live clients, largest first, exempt ones spared.
        let mut me_evicted = false;
        for pass_gone in [true, false] {
            for &(bytes, id) in &candidates {
                if total <= max {
                    return me_evicted;
                }
                let Some(c) = self.clients.get(&id) else {
                    continue;
                };
                if pass_gone {
                    if !c.socket.as_ref().is_some_and(|s| s.hung_up()) {
                        continue;
                    }
                } else if c.no_evict {
                    continue;
                } else {
                    tracing::info!(
                        "Evicting client: {}",
                        crate::commands::client_line(self, c, 0)
                    );
                    self.stats.evicted_clients += 1;
                }
                total = total.saturating_sub(bytes);
                self.memory.evicted.push(c.memory.clone());
                if id == me {
                    c.killed.kill();
                    me_evicted = true;
                } else {
                    c.kill();
                    self.remove_client(id);
                }
            }
        }
        me_evicted
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use resp::{Protocol, ReplyBuf};

    use super::*;
    use crate::NodeConfig;

    fn exec(st: &mut State, line: &str) -> Vec<u8> {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let spec = keyspace::lookup(&args[0]).expect("known command");
        let mut out = ReplyBuf::new(Protocol::Resp2);
        let mut ctx = keyspace::Ctx::new(&mut st.ks, 0, &mut out);
        if let Err(e) = keyspace::execute(spec, &mut ctx, &args) {
            out.error(&e.to_string());
        }
        out.take().to_vec()
    }

    #[test]
    fn eviction_brings_memory_under_maxmemory_or_reports_oom() {
        let mut st = State::new(NodeConfig::default(), 1_800_000_000_000);
        st.ks.set_clock(1_800_000_000_000);
        for i in 0..2000 {
            exec(&mut st, &format!("set key{i} {}", "v".repeat(100)));
        }
        let full = st.used_memory();
        assert!(!st.make_room(), "no maxmemory: never out of memory");
        st.config.set("maxmemory", &(full / 2).to_string()).unwrap();
        st.config.set("maxmemory-policy", "allkeys-lru").unwrap();
        st.apply_config();
        // Each call evicts for a bounded time; the cron calls again.
        while st.used_memory() > full / 2 {
            assert!(!st.make_room());
        }
        assert!(st.ks.stats.evicted_keys > 0);
        // Keys without a deadline cannot go under volatile-lru: out of memory.
        st.config.set("maxmemory-policy", "volatile-lru").unwrap();
        st.config.set("maxmemory", "1").unwrap();
        st.apply_config();
        assert!(st.make_room());
        assert!(st.memory.out_of_memory);
    }

    /// A client on one end of a loopback connection, holding `bytes` of query buffer;
    /// returns the other end, its peer.
    fn connected_client(
        st: &mut State,
        listener: &std::net::TcpListener,
        id: u64,
        bytes: usize,
    ) -> (std::net::TcpStream, impl Drop + use<>, std::net::TcpStream) {
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let (outbox, _) = tokio::sync::mpsc::unbounded_channel();
        let mut c = Client::new(id, "peer".into(), "local".into(), true, true, 0, outbox);
        c.memory = Arc::new(ClientMemory::new(st.memory.clients.clone()));
        c.memory.set_query_buf(bytes);
        let (probe, guard) = crate::conn::probe_for_test(&socket);
        c.socket = Some(probe);
        st.clients.insert(id, c);
        (peer, guard, socket)
    }

    #[test]
    fn a_client_whose_peer_closed_is_let_go_before_live_clients_are_evicted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut st = State::new(NodeConfig::default(), 1_800_000_000_000);
        st.config.set("maxmemory-clients", "1000000").unwrap();
        st.apply_config();
        // An exempt client over the limit by itself, and a small one running a command.
        let (_exempt_peer, _g1, _s1) = connected_client(&mut st, &listener, 1, 2_000_000);
        st.clients.get_mut(&1).unwrap().no_evict = true;
        let (_small_peer, _g2, _s2) = connected_client(&mut st, &listener, 2, 16_384);
        assert!(st.memory.clients.over_limit());
        // Its peer still there, the exempt client stays and the small one goes: Redis's rule.
        assert!(st.evict_clients(2));
        assert_eq!(st.stats.evicted_clients, 1);
        st.remove_client(2); // as its connection does on closing
        st.remove_client(1);

        // A live client larger than one whose peer has gone (its connection has not read
        // the close yet): letting go of the gone one is enough, and nobody is evicted.
        let (_live_peer, _g3, _s3) = connected_client(&mut st, &listener, 3, 600_000);
        let (gone_peer, _g4, gone_socket) = connected_client(&mut st, &listener, 4, 500_000);
        let (_me_peer, _g5, _s5) = connected_client(&mut st, &listener, 5, 16_384);
        drop(gone_peer);
        // Wait for the close to reach this end: a blocking peek returns 0 at end of input.
        assert_eq!(gone_socket.peek(&mut [0u8; 1]).unwrap(), 0);
        assert!(!st.evict_clients(5));
        assert!(st.clients.contains_key(&3) && st.clients.contains_key(&5));
        assert!(!st.clients.contains_key(&4));
        assert_eq!(
            st.stats.evicted_clients, 1,
            "a client that left is not evicted"
        );
        assert!(st.clients_counted_bytes() <= 1_000_000);
    }

    #[test]
    fn a_probe_outliving_its_connection_reports_the_client_gone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let (probe, guard) = crate::conn::probe_for_test(&socket);
        assert!(!probe.hung_up(), "peer connected, nothing sent");
        drop(guard);
        assert!(probe.hung_up());
    }
}
