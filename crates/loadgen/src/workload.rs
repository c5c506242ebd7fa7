//! What one connection does: read-through (GET a Zipf-popular key; on a miss, SET it, as a
//! cache-aside client does after reading the source of truth), or a fill of a range of keys.

use std::ops::Range;
use std::time::Instant;

use resp::Frame;

use crate::conn::Conn;
use crate::keys::{self, KeyMap};
use crate::zipf::Zipf;

/// The workload every connection shares.
pub struct Workload {
    pub keys: KeyMap,
    pub zipf: Zipf,
    pub value: Vec<u8>,
    /// SET with `EX` this many seconds (volatile-* policies evict only keys with a TTL).
    pub ttl_secs: Option<u64>,
    /// Commands sent per write.
    pub pipeline: usize,
}

/// When a connection's phase ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this many operations.
    Operations(u64),
    /// At the first pipeline boundary after this instant.
    Deadline(Instant),
}

/// What a phase did. An operation is one GET and, on a miss, its SET.
#[derive(Debug, Default)]
pub struct Counts {
    pub operations: u64,
    pub hits: u64,
    pub misses: u64,
    /// Commands sent (GETs and SETs).
    pub commands: u64,
    /// Error replies (an OOM refusing a SET, say).
    pub errors: u64,
    /// The first error reply, to say what went wrong.
    pub first_error: Option<String>,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.operations += other.operations;
        self.hits += other.hits;
        self.misses += other.misses;
        self.commands += other.commands;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Counts an error reply, keeping the first one's message.
    pub fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

impl Workload {
    /// Read-through until `until`: a pipeline of GETs, then one of SETs for the keys that
    /// missed.
    pub async fn read_through(
        &self,
        conn: &mut Conn,
        rng: &mut fastrand::Rng,
        until: Until,
    ) -> anyhow::Result<Counts> {
        let mut counts = Counts::default();
        let mut batch = Vec::with_capacity(self.pipeline);
        let mut missed = Vec::with_capacity(self.pipeline);
        let mut name = Vec::new();
        loop {
            let size = match until {
                Until::Operations(total) => (total - counts.operations).min(self.pipeline as u64),
                Until::Deadline(at) if Instant::now() >= at => 0,
                Until::Deadline(_) => self.pipeline as u64,
            };
            if size == 0 {
                return Ok(counts);
            }
            batch.clear();
            for _ in 0..size {
                let id = self.keys.id(self.zipf.sample(rng));
                batch.push(id);
                name.clear();
                keys::write_name(id, &mut name);
                conn.queue(&[b"GET", &name]);
            }
            conn.send().await?;
            missed.clear();
            for &id in &batch {
                match conn.reply().await? {
                    Frame::Bulk(_) => counts.hits += 1,
                    Frame::Null => {
                        counts.misses += 1;
                        missed.push(id);
                    }
                    Frame::Error(message) => counts.error(message),
                    other => anyhow::bail!("unexpected reply to GET: {other:?}"),
                }
            }
            counts.operations += size;
            counts.commands += size;
            self.set(conn, &missed, &mut counts).await?;
        }
    }

    /// SETs every key of `ids`, a pipeline at a time.
    pub async fn fill(&self, conn: &mut Conn, ids: Range<u64>) -> anyhow::Result<Counts> {
        let mut counts = Counts::default();
        let ids: Vec<u64> = ids.collect();
        for chunk in ids.chunks(self.pipeline) {
            self.set(conn, chunk, &mut counts).await?;
            counts.operations += chunk.len() as u64;
        }
        Ok(counts)
    }

    async fn set(&self, conn: &mut Conn, ids: &[u64], counts: &mut Counts) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut name = Vec::new();
        let ttl = self.ttl_secs.map(|secs| secs.to_string());
        for &id in ids {
            name.clear();
            keys::write_name(id, &mut name);
            match &ttl {
                Some(secs) => conn.queue(&[b"SET", &name, &self.value, b"EX", secs.as_bytes()]),
                None => conn.queue(&[b"SET", &name, &self.value]),
            }
        }
        conn.send().await?;
        for _ in ids {
            match conn.reply().await? {
                Frame::Simple(ok) if ok == "OK" => {}
                Frame::Error(message) => counts.error(message),
                other => anyhow::bail!("unexpected reply to SET: {other:?}"),
            }
        }
        counts.commands += ids.len() as u64;
        Ok(())
    }
}
