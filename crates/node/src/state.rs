//! Everything connections share, behind one lock: the keyspace, the clients, who watches or
//! waits on which key, and pub/sub subscriptions.
//!
//! The lock is a std `Mutex`, held for one batch of commands and never across an `.await`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use keyspace::{Ctx, Keyspace, Str};
use resp::{Protocol, ReplyBuf};
use tokio::sync::{Notify, mpsc};

/// What the server pushes to a connection outside the request/reply flow.
pub enum Outbound {
    /// Encoded pub/sub messages to write.
    Message(Vec<u8>),
    /// Close the connection (CLIENT KILL, shutdown, a subscriber that does not read).
    Close,
    /// The client is idle: give its read buffer back if it holds nothing.
    ReleaseQueryBuffer,
    /// The runtime could not write all the replies it held for the client (`held`).
    WriteHeld,
}

use crate::config::{NodeConfig, OutputBufferLimits};

/// Where a blocked command's eventual reply is handed over to its connection.
#[derive(Default)]
pub struct BlockSlot {
    pub notify: Notify,
    pub reply: std::sync::Mutex<Option<Vec<u8>>>,
}

/// A command parked until one of its keys is written.
pub struct Blocked {
    /// The command as sent (for the slow log and statistics).
    pub args: Vec<Bytes>,
    /// The command to run when woken, when it differs from `args` (XREAD's `$` resolved).
    pub rerun: Option<Vec<Bytes>>,
    pub keys: Vec<Str>,
    pub db: usize,
    pub slot: Arc<BlockSlot>,
}

/// The password a client authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    Primary,
    Secondary,
    /// The control plane's own key (`cacheplane-admin-key`).
    Admin,
}

/// Whether a client gets replies (CLIENT REPLY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// CLIENT REPLY SKIP just ran: it and the next command get no reply.
    SkipNext,
    /// The command running now gets no reply; replies resume after it.
    Skip,
}

/// A connected client, as the server sees it.
pub struct Client {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    /// The peer is on loopback (for `enable-debug-command local`).
    pub local: bool,
    pub name: Option<Bytes>,
    pub db: usize,
    pub protocol: Protocol,
    pub authenticated: bool,
    /// Which password the client authenticated with: a regenerated key ends the sessions
    /// opened with the old one, and the admin key opens what a managed cache refuses.
    pub key_used: Option<KeyUsed>,
    pub created_ms: u64,
    pub last_ms: u64,
    pub last_cmd: String,
    pub reply: ReplyMode,
    /// Commands queued since MULTI.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// What the queued commands hold (arguments and their handles), for the queue's bound
    /// and `used_memory`; reset by the first command a new transaction queues.
    pub multi_bytes: usize,
    /// A command queued in MULTI was refused: EXEC must abort.
    pub multi_error: bool,
    pub watched: Vec<(usize, Str)>,
    pub watch_dirty: bool,
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    /// SSUBSCRIBE's channels: a namespace of their own (sharded pub/sub).
    pub shard_channels: HashSet<Bytes>,
    pub blocked: Option<Blocked>,
    /// Pub/sub messages and close requests for this client.
    pub outbox: mpsc::UnboundedSender<Outbound>,
    /// What the client holds: its connection's buffers, its output not written yet, its
    /// records.
    pub memory: Arc<crate::memory::ClientMemory>,
    /// CLIENT NO-EVICT: never closed to keep clients within `maxmemory-clients`.
    pub no_evict: bool,
    /// Set before a close request, so the connection stops without writing what is queued.
    pub killed: Arc<KillSwitch>,
    /// Its socket, to see whether the peer closed it before the connection does (`None`
    /// for the scripts' client).
    pub socket: Option<crate::conn::HangupProbe>,
    /// Since when (unix ms) the queued pushes have been over the class's soft output
    /// limit; 0 while under it.
    pub push_soft_since_ms: AtomicU64,
    /// CLIENT TRACKING's options, while tracking is on.
    pub tracking: Option<crate::tracking::Mode>,
    /// The cron asked the connection to release its read buffer since the last command.
    pub query_buf_release_asked: bool,
    /// The ACL user signed in as, when not `default`.
    pub user: Option<Box<str>>,
}

/// A client's close request, seen by its connection even in the middle of a write that
/// the client does not read (CLIENT KILL, an output buffer limit).
#[derive(Default)]
pub struct KillSwitch {
    flag: AtomicBool,
    notify: Notify,
}

impl KillSwitch {
    pub fn kill(&self) {
        self.flag.store(true, Ordering::Relaxed);
        // A stored permit: a connection not waiting yet sees it at its next wait.
        self.notify.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Resolves once the client is killed (at once if it already was).
    pub async fn killed(&self) {
        if self.is_killed() {
            return;
        }
        self.notify.notified().await;
    }
}

/// What became of bytes pushed to a client ([`Client::deliver`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// The connection is gone.
    Closed,
    /// The client had too much queued already and is being disconnected.
    Overflowed,
}

impl Client {
    /// A fresh client in database 0 speaking RESP2; `outbox` reaches its connection.
    pub fn new(
        id: u64,
        addr: String,
        laddr: String,
        local: bool,
        authenticated: bool,
        now_ms: u64,
        outbox: mpsc::UnboundedSender<Outbound>,
    ) -> Client {
        Client {
            id,
            addr,
            laddr,
            local,
            name: None,
            db: 0,
            protocol: Protocol::Resp2,
            authenticated,
            key_used: None,
            created_ms: now_ms,
            last_ms: now_ms,
            last_cmd: String::new(),
            reply: ReplyMode::On,
            multi: None,
            multi_bytes: 0,
            multi_error: false,
            watched: Vec::new(),
            watch_dirty: false,
            channels: Default::default(),
            patterns: Default::default(),
            shard_channels: Default::default(),
            blocked: None,
            outbox,
            memory: Arc::new(crate::memory::ClientMemory::detached()),
            no_evict: false,
            killed: Default::default(),
            socket: None,
            push_soft_since_ms: AtomicU64::new(0),
            tracking: None,
            query_buf_release_asked: false,
            user: None,
        }
    }

    /// The client scripts run their commands as: no connection behind it.
    pub fn script(now_ms: u64) -> Client {
        let (outbox, _) = mpsc::unbounded_channel();
        let id = crate::scripting::SCRIPT_CLIENT_ID;
        Client::new(id, String::new(), String::new(), true, true, now_ms, outbox)
    }

    /// Clients idle for `idle_ms` that still hold a read buffer are asked to give it back
    /// (once per idle spell): ten thousand idle clients then hold none.
    pub fn release_idle_query_buffers(
        clients: &mut HashMap<u64, Client, foldhash::fast::RandomState>,
        now_ms: u64,
        idle_ms: u64,
    ) {
        for c in clients.values_mut() {
            if !c.query_buf_release_asked
                && now_ms.saturating_sub(c.last_ms) >= idle_ms
                && c.memory.query_buf() > 0
            {
                c.query_buf_release_asked = true;
                let _ = c.outbox.send(Outbound::ReleaseQueryBuffer);
            }
        }
    }

    /// Asks the connection to close as soon as it looks at its outbox.
    pub fn kill(&self) {
        self.killed.kill();
        let _ = self.outbox.send(Outbound::Close);
    }

    /// Queues encoded pushes (pub/sub messages, invalidations, MONITOR lines) for the
    /// connection, which writes them outside the request/reply flow; a client whose unwritten
    /// pushes break its class's `client-output-buffer-limit` is disconnected rather than
    /// buffered forever, as Redis does.
    pub fn deliver(&self, bytes: Vec<u8>, limits: &OutputBufferLimits) -> Delivery {
        let queued = self.memory.add_output(bytes.len()) as usize;
        let limit = limits.for_client(self.subscriptions());
        if limit.reached(queued) {
            // The clock is read only over a limit.
            let stored = self.push_soft_since_ms.load(Ordering::Relaxed);
            let mut since = (stored > 0).then_some(stored);
            let over = limit.exceeded(queued, &mut since, crate::unix_time_ms());
            self.push_soft_since_ms
                .store(since.unwrap_or(0), Ordering::Relaxed);
            if over {
                self.memory.sub_output(bytes.len());
                return self.overflow();
            }
        } else if self.push_soft_since_ms.load(Ordering::Relaxed) != 0 {
            self.push_soft_since_ms.store(0, Ordering::Relaxed);
        }
        match self.outbox.send(Outbound::Message(bytes)) {
            Ok(()) => Delivery::Queued,
            Err(_) => Delivery::Closed,
        }
    }

    /// Closes the client when its unwritten pushes have stayed over its class's soft
    /// limit longer than the limit's seconds: the cron's check, for a client that no new
    /// push reaches (Redis checks idle clients in its cron too).
    pub fn soft_limit_expired(&self, limits: &OutputBufferLimits, now_ms: u64) -> bool {
        let since = self.push_soft_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            return false;
        }
        let mut since = Some(since);
        let queued = self.memory.output() as usize;
        let limit = limits.for_client(self.subscriptions());
        if !limit.exceeded(queued, &mut since, now_ms) {
            self.push_soft_since_ms
                .store(since.unwrap_or(0), Ordering::Relaxed);
            return false;
        }
        self.overflow() == Delivery::Overflowed
    }

    /// Closes a client that broke its output buffer limit, with Redis's log line.
    fn overflow(&self) -> Delivery {
        // Already on its way out: logged and counted once.
        if self.killed.is_killed() {
            return Delivery::Closed;
        }
        log_output_limit_close(self);
        self.kill();
        Delivery::Overflowed
    }
}

/// Redis's warning for a client closed over its output buffer limit.
pub fn log_output_limit_close(c: &Client) {
    tracing::warn!(
        "Client id={} addr={} laddr={} name={} scheduled to be closed ASAP for overcoming of output buffer limits.",
        c.id,
        c.addr,
        c.laddr,
        c.name
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default(),
    );
}

impl Client {
    /// All the client's subscriptions: any puts a RESP2 client in pub/sub context.
    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard_channels.len()
    }
}

/// Counters for INFO stats.
#[derive(Debug, Default, Clone)]
pub struct NodeStats {
    pub total_connections_received: u64,
    pub total_commands_processed: u64,
    pub rejected_connections: u64,
    pub total_net_input_bytes: u64,
    pub total_net_output_bytes: u64,
    pub pubsub_messages_dropped_clients: u64,
    /// Clients closed for breaking their `client-output-buffer-limit`.
    pub client_output_buffer_limit_disconnections: u64,
    /// Clients closed to keep the clients within `maxmemory-clients`.
    pub evicted_clients: u64,
    /// Clients closed for a query buffer over `client-query-buffer-limit`.
    pub client_query_buffer_limit_disconnections: u64,
}

pub struct State {
    pub ks: Keyspace,
    pub config: NodeConfig,
    pub clients: HashMap<u64, Client, foldhash::fast::RandomState>,
    pub next_client_id: u64,
    /// Blocked clients per key, first come first served.
    pub blocked: HashMap<(usize, Str), VecDeque<u64>>,
    pub watchers: HashMap<(usize, Str), Vec<u64>>,
    pub channels: HashMap<Bytes, HashSet<u64>>,
    pub patterns: HashMap<Bytes, HashSet<u64>>,
    pub shard_channels: HashMap<Bytes, HashSet<u64>>,
    pub stats: NodeStats,
    /// Set once the node is stopping: new connections are turned away.
    /// The owner asked for a final snapshot whatever the `save` rules (a restart that
    /// keeps the data).
    pub save_on_stop: bool,
    pub shutting_down: bool,
    pub started_unix_ms: u64,
    pub active_expire_enabled: bool,
    /// DEBUG PAUSE-CRON: the cron's work waits (tests that check what happens without it).
    pub cron_paused: bool,
    pub rdb: crate::persist::RdbState,
    /// The append-only file, when `appendonly yes`.
    pub aof: Option<crate::aof::AofLog>,
    /// Storage accounts: RDB backups, AOF shipping, events.
    pub ship: crate::ship::Shipping,
    /// The node's background workers (also reachable outside the lock, from `Shared`).
    pub workers: Arc<crate::workers::Workers>,
    /// The configured firewall, as the accept loop reads it (`Shared` holds it too).
    pub firewall: crate::firewall::FirewallGate,
    /// Lua: the EVAL and FUNCTION interpreters and the running script's watch.
    pub scripting: crate::scripting::Scripting,
    /// The slow log, the latency monitor, command and error statistics.
    pub intro: crate::introspect::Introspection,
    /// Client-side caching: who may hold which keys.
    pub tracking: crate::tracking::Tracking,
    /// Clients in MONITOR mode.
    pub monitors: Vec<u64>,
    /// ACL users.
    pub users: crate::acl::Users,
    /// `min-replicas-to-write` asks for replicas this node does not have: writes are refused.
    pub no_good_replicas: bool,
    /// CLIENT PAUSE in force, and the connections waiting for it to end.
    pub pause: Option<Pause>,
    pub unpaused: Arc<Notify>,
    /// Connections waiting for the pause to end (counted as blocked, as in Redis).
    pub paused_clients: usize,
    /// What counts toward `maxmemory`, and whether memory is over it.
    pub memory: crate::memory::Memory,
}

/// A CLIENT PAUSE: until when, and whether only writes wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub until_ms: u64,
    pub writes_only: bool,
}

impl State {
    pub fn new(config: NodeConfig, now_ms: u64) -> State {
        let workers: Arc<crate::workers::Workers> = Default::default();
        let mut st = State {
            intro: crate::introspect::Introspection::new(&config.standard),
            ks: {
                let mut ks = Keyspace::new(config.databases);
                config.configure(&mut ks);
                ks
            },
            config,
            clients: HashMap::default(),
            next_client_id: 1,
            blocked: HashMap::new(),
            watchers: HashMap::new(),
            channels: HashMap::new(),
            patterns: HashMap::new(),
            shard_channels: HashMap::new(),
            stats: NodeStats::default(),
            shutting_down: false,
            save_on_stop: false,
            started_unix_ms: now_ms,
            active_expire_enabled: true,
            cron_paused: false,
            rdb: crate::persist::RdbState::new(now_ms, workers.clone()),
            aof: None,
            ship: crate::ship::Shipping {
                workers: workers.clone(),
                ..Default::default()
            },
            workers,
            scripting: crate::scripting::Scripting::new(Client::script(now_ms)),
            tracking: Default::default(),
            monitors: Vec::new(),
            users: Default::default(),
            no_good_replicas: false,
            pause: None,
            unpaused: Default::default(),
            paused_clients: 0,
            memory: Default::default(),
            firewall: Default::default(),
        };
        st.apply_config();
        st
    }

    /// Takes what the running node derives from its configuration (at start and after
    /// CONFIG SET).
    pub fn apply_config(&mut self) {
        self.config.configure(&mut self.ks);
        self.intro.settings = crate::introspect::Settings::from_config(&self.config.standard);
        crate::scripting::apply_config(self);
        // No replicas here: asking for some refuses every write, as Redis does without them.
        self.no_good_replicas = self.config.standard.int("min-replicas-to-write") > 0;
        self.memory.max_bytes = u64::try_from(self.config.standard.int("maxmemory")).unwrap_or(0);
        self.apply_maxmemory_clients();
        // A lower maxmemory takes effect at once, as CONFIG SET maxmemory does in Redis.
        self.make_room();
        *self.firewall.write().unwrap_or_else(|e| e.into_inner()) = self.config.firewall.clone();
    }

    /// Replaces the access keys at once and ends the sessions opened with a key that
    /// changed (a regenerated key must lock out whoever held the old one).
    pub fn set_passwords(&mut self, primary: Option<String>, secondary: Option<String>) {
        let primary_changed = self.config.requirepass != primary;
        let secondary_changed = self.config.requirepass_secondary != secondary;
        self.config.requirepass = primary;
        self.config.requirepass_secondary = secondary;
        for c in self.clients.values() {
            let ended = match c.key_used {
                Some(KeyUsed::Primary) => primary_changed,
                Some(KeyUsed::Secondary) => secondary_changed,
                Some(KeyUsed::Admin) | None => false,
            };
            if ended {
                c.kill();
            }
        }
    }

    pub fn blocked_clients(&self) -> usize {
        self.clients
            .values()
            .filter(|c| c.blocked.is_some())
            .count()
            + self.paused_clients
    }

    /// Reacts to writes on keys someone cares about: marks WATCHers dirty and serves blocked
    /// clients, repeating while serving them writes further interesting keys.
    pub fn handle_touched(&mut self) {
        while self.ks.has_touched() {
            for (db, key) in self.ks.take_touched() {
                if let Some(ids) = self.watchers.get(&(db, key.clone())) {
                    for id in ids {
                        if let Some(c) = self.clients.get_mut(id) {
                            c.watch_dirty = true;
                        }
                    }
                }
                self.serve_blocked(db, &key);
            }
        }
        // What the served commands raised.
        if self.ks.has_events() {
            self.publish_events();
        }
    }

    /// Runs the commands of clients blocked on `key` in arrival order. List and sorted-set
    /// waiters stop at the first that finds nothing to take; stream readers each wait for
    /// IDs of their own, so every one of them is tried.
    fn serve_blocked(&mut self, db: usize, key: &Str) {
        let Some(queue) = self.blocked.get(&(db, key.clone())) else {
            return;
        };
        let ids: Vec<u64> = queue.iter().copied().collect();
        let mut pops_exhausted = false;
        for id in ids {
            let Some(client) = self.clients.get(&id) else {
                self.unblock(id);
                continue;
            };
            let Some(b) = client.blocked.as_ref() else {
                self.unblock(id);
                continue;
            };
            let spec = keyspace::lookup(&b.args[0]).expect("blocked commands are known");
            let mut out = ReplyBuf::new(client.protocol);
            let args = b.rerun.clone().unwrap_or_else(|| b.args.clone());
            let kind = self.ks.peek(db, key).map(|e| e.value.kind());
            let reads_stream = spec.name.starts_with('x');
            if reads_stream {
                if kind != Some(keyspace::Kind::Stream) {
                    // A group reader's stream is gone (deleted or replaced): its wait
                    // ends with an error, as in Redis; plain readers keep waiting.
                    if spec.name == "xreadgroup" {
                        out.error("UNBLOCKED the stream key no longer exists");
                        self.finish_blocked(id, spec, out);
                    }
                    continue;
                }
            } else {
                let waits_for = if spec.name.starts_with("bz") {
                    keyspace::Kind::ZSet
                } else {
                    keyspace::Kind::List
                };
                // Still nothing, or the key now holds another type: they stay queued.
                if pops_exhausted || kind != Some(waits_for) {
                    continue;
                }
            }
            let started = std::time::Instant::now();
            let mut ctx = Ctx::new(&mut self.ks, b.db, &mut out);
            let result = keyspace::execute(spec, &mut ctx, &args);
            if ctx.block.is_some() {
                pops_exhausted |= !reads_stream;
                continue;
            }
            // The command's own error (BLMOVE's destination holds another type) ends its
            // wait, as in Redis; the source keeps its elements for the next in line.
            if let Err(e) = result {
                if spec.name == "xreadgroup"
                    && matches!(&e, keyspace::CmdError::Other(m) if m.starts_with("NOGROUP"))
                {
                    out.error(
                        "NOGROUP the consumer group this client was blocked on no longer exists",
                    );
                } else {
                    out.error(&e.to_string());
                }
            }
            // Its latency is the run that served it, not the wait (as Redis measures it).
            if self.intro.settings.latency_tracking {
                let us = started.elapsed().as_micros() as u64;
                self.intro.commands.entry(spec, &args).histogram.record(us);
            }
            self.finish_blocked(id, spec, out);
        }
    }

    /// Hands a served blocked command's reply to its connection.
    fn finish_blocked(&mut self, id: u64, spec: &'static keyspace::Spec, mut out: ReplyBuf) {
        if let Some(b) = self.unblock(id) {
            // A wait that ends in an error counts as a failed call, as in Redis.
            if out.as_bytes().first() == Some(&b'-') {
                self.intro.commands.entry(spec, &b.args).failed_calls += 1;
                self.intro.errors.record(&out.as_bytes()[1..]);
            }
            // Logged when it is served, as Redis does, with the arguments it was sent with.
            if self.intro.is_slow(0) {
                self.log_slow(id, spec.name, &b.args, 0);
            }
            *b.slot.reply.lock().expect("slot lock") = Some(out.take());
            b.slot.notify.notify_one();
        }
    }

    /// Adds a command of client `id` to the slow log (secrets redacted).
    pub fn log_slow(&mut self, id: u64, name: &str, args: &[Bytes], duration_us: u64) {
        let max_len = self.intro.settings.slowlog_max_len;
        let unix_secs = self.ks.now_ms() / 1000;
        let redacted = crate::introspect::redacted(name, args);
        let args = redacted.as_deref().unwrap_or(args);
        let (addr, client_name) = self
            .clients
            .get(&id)
            .map_or((String::new(), Bytes::new()), |c| {
                (c.addr.clone(), c.name.clone().unwrap_or_default())
            });
        self.intro
            .slowlog
            .push(max_len, unix_secs, duration_us, args, &addr, &client_name);
    }

    /// Parks client `id` on `keys`.
    pub fn block(
        &mut self,
        id: u64,
        db: usize,
        args: Vec<Bytes>,
        rerun: Option<Vec<Bytes>>,
        keys: &[Bytes],
    ) -> Arc<BlockSlot> {
        let slot = Arc::new(BlockSlot::default());
        let keys: Vec<Str> = keys.iter().map(|k| Str::new(k)).collect();
        for k in &keys {
            let queue = self.blocked.entry((db, k.clone())).or_default();
            if !queue.contains(&id) {
                queue.push_back(id);
                self.ks.add_interest(db, k);
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.blocked = Some(Blocked {
                args,
                rerun,
                keys,
                db,
                slot: slot.clone(),
            });
        }
        slot
    }

    /// Takes client `id` off every queue it waits in.
    pub fn unblock(&mut self, id: u64) -> Option<Blocked> {
        let b = self.clients.get_mut(&id).and_then(|c| c.blocked.take());
        let (db, keys) = match &b {
            Some(b) => (b.db, b.keys.clone()),
            None => {
                // A stale id at the head of a queue: drop it wherever it is.
                for q in self.blocked.values_mut() {
                    q.retain(|x| *x != id);
                }
                self.blocked.retain(|_, q| !q.is_empty());
                return None;
            }
        };
        for k in keys {
            let entry = (db, k);
            if let Some(q) = self.blocked.get_mut(&entry) {
                if let Some(pos) = q.iter().position(|x| *x == id) {
                    q.remove(pos);
                    self.ks.remove_interest(entry.0, &entry.1);
                }
                if q.is_empty() {
                    self.blocked.remove(&entry);
                }
            }
        }
        b
    }

    pub fn watch(&mut self, id: u64, db: usize, key: &[u8]) {
        let k = (db, Str::new(key));
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.watched.contains(&k) {
            return;
        }
        c.watched.push(k.clone());
        self.ks.add_interest(db, key);
        self.watchers.entry(k).or_default().push(id);
    }

    pub fn unwatch_all(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let watched = std::mem::take(&mut c.watched);
        c.watch_dirty = false;
        for k in watched {
            self.ks.remove_interest(k.0, &k.1);
            if let Some(ids) = self.watchers.get_mut(&k) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.watchers.remove(&k);
                }
            }
        }
    }

    /// Forgets everything about a client that went away.
    pub fn remove_client(&mut self, id: u64) {
        self.unblock(id);
        self.unwatch_all(id);
        crate::tracking::disable(self, id);
        self.drop_subscriptions(id);
        self.clients.remove(&id);
    }

    /// Ends all of a client's subscriptions (it went, or RESET).
    pub fn drop_subscriptions(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let channels = std::mem::take(&mut c.channels);
        let patterns = std::mem::take(&mut c.patterns);
        let shard_channels = std::mem::take(&mut c.shard_channels);
        for (names, registry) in [
            (channels, &mut self.channels),
            (patterns, &mut self.patterns),
            (shard_channels, &mut self.shard_channels),
        ] {
            for name in names {
                remove_subscriber(registry, &name, id);
            }
        }
    }

    /// Publishes the keyspace events commands raised, on `__keyspace@<db>__:<key>` and
    /// `__keyevent@<db>__:<event>` as `notify-keyspace-events` asks.
    pub fn publish_events(&mut self) {
        let classes = self.ks.notify_classes;
        for e in self.ks.take_events() {
            let mut channel = Vec::with_capacity(24 + e.key.len());
            if classes & keyspace::notify::KEYSPACE != 0 {
                channel.extend_from_slice(format!("__keyspace@{}__:", e.db).as_bytes());
                channel.extend_from_slice(&e.key);
                self.publish(&channel, e.name.as_bytes());
            }
            if classes & keyspace::notify::KEYEVENT != 0 {
                channel.clear();
                channel.extend_from_slice(format!("__keyevent@{}__:{}", e.db, e.name).as_bytes());
                self.publish(&channel, &e.key);
            }
        }
    }

    /// Delivers a message to channel subscribers and matching pattern subscribers; returns
    /// how many received it.
    pub fn publish(&mut self, channel: &[u8], message: &[u8]) -> usize {
        let mut deliveries: Vec<(u64, Heard)> = Vec::new();
        if let Some(ids) = self.channels.get(channel) {
            deliveries.extend(ids.iter().map(|id| (*id, Heard::Channel)));
        }
        for (pattern, ids) in &self.patterns {
            if keyspace::glob_match(pattern, channel, false) {
                deliveries.extend(ids.iter().map(|id| (*id, Heard::Pattern(pattern.clone()))));
            }
        }
        self.deliver_message(deliveries, channel, message)
    }

    /// SPUBLISH: delivers to the shard channel's subscribers (no patterns there).
    pub fn spublish(&mut self, channel: &[u8], message: &[u8]) -> usize {
        let deliveries = self
            .shard_channels
            .get(channel)
            .map(|ids| ids.iter().map(|id| (*id, Heard::Shard)).collect())
            .unwrap_or_default();
        self.deliver_message(deliveries, channel, message)
    }

    fn deliver_message(
        &mut self,
        deliveries: Vec<(u64, Heard)>,
        channel: &[u8],
        message: &[u8],
    ) -> usize {
        let mut receivers = 0;
        for (id, heard) in deliveries {
            let Some(c) = self.clients.get(&id) else {
                continue;
            };
            let mut out = ReplyBuf::new(c.protocol);
            match &heard {
                Heard::Channel => {
                    out.push(3);
                    out.bulk(b"message");
                }
                Heard::Shard => {
                    out.push(3);
                    out.bulk(b"smessage");
                }
                Heard::Pattern(p) => {
                    out.push(4);
                    out.bulk(b"pmessage");
                    out.bulk(p);
                }
            }
            out.bulk(channel);
            out.bulk(message);
            match c.deliver(out.take(), &self.config.output_buffer_limits) {
                Delivery::Queued => receivers += 1,
                Delivery::Overflowed => {
                    self.stats.pubsub_messages_dropped_clients += 1;
                    self.stats.client_output_buffer_limit_disconnections += 1;
                }
                Delivery::Closed => {}
            }
        }
        receivers
    }
}

/// How a subscriber came to hear a message.
enum Heard {
    Channel,
    Pattern(Bytes),
    Shard,
}

pub fn remove_subscriber(map: &mut HashMap<Bytes, HashSet<u64>>, name: &[u8], id: u64) {
    if let Some(ids) = map.get_mut(name) {
        ids.remove(&id);
        if ids.is_empty() {
            map.remove(name);
        }
    }
}
