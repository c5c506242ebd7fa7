//! The node's memory: what counts toward `maxmemory`, and keeping under it.
//!
//! A node counts what it holds itself — its dataset (the keyspace keeps that sum), its
//! clients' buffers and records, its Lua interpreters — rather than asking the allocator,
//! which counts the whole process: under `serve` several caches share one, and each must
//! evict for its own data only. The allocator's figure is still reported
//! (`allocator_allocated`), so the two can be compared.

use std::time::{Duration, Instant};

use keyspace::Evicted;

use crate::state::State;

/// The reply to a command that may grow memory while memory is over `maxmemory` and
/// nothing more can be evicted (Redis's wording).
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// What one connected client holds beyond its buffers: its record, its task and its
/// socket's share.
pub const CLIENT_OVERHEAD_BYTES: u64 = 2048;

/// How long one call may evict for (Redis's default `maxmemory-eviction-tenacity` allows
/// 500 us); the cron continues where it stopped.
pub const EVICTION_TIME_SLICE: Duration = Duration::from_millis(1);

/// The node's memory figures.
#[derive(Debug, Default)]
pub struct Memory {
    /// `maxmemory` (0: no limit), taken from the configuration when it changes.
    pub max_bytes: u64,
    /// The clients' buffers and records, summed by the cron (summing them for every
    /// command would cost as many steps as there are clients).
    pub clients_bytes: u64,
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
        self.ks.dataset_bytes() as u64 + self.memory.clients_bytes + self.lua_memory()
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

    /// Sums the clients' buffers again (the cron calls this).
    pub fn refresh_clients_memory(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.memory.clients_bytes = self
            .clients
            .values()
            .map(|c| {
                CLIENT_OVERHEAD_BYTES
                    + c.query_buf_bytes.load(Relaxed) as u64
                    + c.outbox_bytes.load(Relaxed) as u64
                    + c.multi
                        .as_ref()
                        .map_or(0, |q| if q.is_empty() { 0 } else { c.multi_bytes })
                        as u64
            })
            .sum();
    }

    /// Evicts what the policy allows until used memory is within `maxmemory`; returns
    /// whether it still is over with nothing left to evict (then [`Memory::out_of_memory`]
    /// is set). Eviction that ran out of its time slice is not a failure: the cron carries
    /// on, as Redis's eviction does when its time limit ends.
    pub fn make_room(&mut self) -> bool {
        let max = self.maxmemory();
        self.ks.settle();
        let mut started = None;
        let mut clients_counted = false;
        self.memory.evicting = false;
        self.memory.out_of_memory = loop {
            let used = self.used_memory();
            self.memory.peak_bytes = self.memory.peak_bytes.max(used);
            if max == 0 || used <= max {
                break false;
            }
            let over = usize::try_from(used - max).unwrap_or(usize::MAX);
            match self.ks.evict(over) {
                // The clients' share is summed by the cron: before refusing writes, count
                // it afresh (clients that went or drained their buffers give it back).
                Evicted::Stuck if !clients_counted => {
                    self.refresh_clients_memory();
                    clients_counted = true;
                }
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
}
