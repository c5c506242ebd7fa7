//! The node's persistence as one whole: the RDB snapshots (`persist`), the append-only
//! log (`aof`) and the storage accounts (`ship`) each work on their own state, the
//! keyspace and the settings; this module is where they meet the node. It holds the
//! operations that involve more than one of them (SAVE, BGREWRITEAOF, a job that ended, the
//! cron, a stop's final save) as methods of [`State`], and [`NodeHost`], the way the saver
//! thread and the AOF flusher reach the node under its lock without owning it.
//!
//! Dependencies point one way: `persist` ← `aof` ← `ship` ← `state` ← here.

use std::sync::{Arc, Mutex, Weak};

use keyspace::Keyspace;

use crate::persist::{Ended, Job, RdbState};
use crate::ship::TargetStatus;
use crate::state::State;
use crate::{NodeConfig, Shared, aof, persist, ship};

/// The node as its persistence workers see it: held weakly, so that a worker never keeps a
/// stopped node alive; every call takes the state lock.
pub struct NodeHost(pub Weak<Shared>);

impl NodeHost {
    fn with_state(&self, f: impl FnOnce(&mut State)) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        // A poisoned node is restarted by its owner; its workers stop here.
        let Some(mut st) = shared.lock_blocking() else {
            return false;
        };
        f(&mut st);
        true
    }
}

impl persist::SnapshotHost for NodeHost {
    fn with(&self, f: &mut dyn FnMut(&mut Keyspace, &mut RdbState, &NodeConfig)) -> bool {
        self.with_state(|st| f(&mut st.ks, &mut st.rdb, &st.config))
    }

    fn ended(&self, ended: Ended) {
        self.with_state(|st| st.job_ended(ended));
    }

    fn contended(&self) -> bool {
        self.0.upgrade().is_some_and(|s| s.lock_queue.any())
    }
}

impl aof::LogHost for NodeHost {
    fn with_log(&self, f: &mut dyn FnMut(&mut aof::AofLog)) -> bool {
        let mut found = false;
        self.with_state(|st| {
            if let Some(log) = st.aof.as_mut() {
                f(log);
                found = true;
            }
        });
        found
    }
}

impl State {
    /// Starts the persistence workers once the node exists: the saver's way back to it,
    /// the shippers, and the AOF flusher feeding them. With storage accounts, the log
    /// starts a new base at once, so the accounts begin from this moment.
    pub fn start_persistence(&mut self, host: Arc<NodeHost>) -> anyhow::Result<()> {
        self.rdb.set_host(host.clone());
        let hooks = ship::start_aof(&mut self.ship, &self.config)?;
        let shipping = hooks.is_some();
        if let Some(log) = self.aof.as_mut() {
            aof::start_flusher(log, &self.config, &self.workers, host, hooks)?;
        }
        if shipping {
            self.rewrite_aof()?;
        }
        Ok(())
    }

    /// Opens (or creates) the append-only file, replaying it into the keyspace.
    pub fn open_aof(&mut self) -> anyhow::Result<()> {
        self.aof = Some(aof::open(&mut self.ks, &self.config)?);
        Ok(())
    }

    /// SAVE, with the lock held.
    pub fn save(&mut self) -> anyhow::Result<()> {
        persist::save(&mut self.ks, &mut self.rdb, &self.config)
    }

    /// BGSAVE.
    pub fn bgsave(&mut self) -> anyhow::Result<()> {
        persist::bgsave(&mut self.ks, &mut self.rdb, &self.config)
    }

    /// BGREWRITEAOF.
    pub fn rewrite_aof(&mut self) -> anyhow::Result<()> {
        let Some(log) = self.aof.as_mut() else {
            anyhow::bail!("the append only file is off");
        };
        aof::rewrite(log, &mut self.ks, &mut self.rdb, &self.config)
    }

    /// A snapshot streamed into the RDB account now (CACHEPLANE BACKUP); returns its key.
    pub fn backup_now(&mut self) -> anyhow::Result<String> {
        ship::backup_now(&mut self.ship, &mut self.ks, &mut self.rdb, &self.config)
    }

    /// Moves the keyspace's feed into the log; returns what a reply must wait for.
    pub fn feed_aof(&mut self) -> Option<(u64, tokio::sync::watch::Receiver<u64>)> {
        aof::feed(self.aof.as_mut(), &mut self.ks)
    }

    /// What a reply sent now must wait for: everything logged so far.
    pub fn durable_target(&self) -> Option<(u64, tokio::sync::watch::Receiver<u64>)> {
        aof::durable_target(self.aof.as_ref())
    }

    /// A background snapshot ended: an AOF rewrite's base switches the log's manifest.
    pub fn job_ended(&mut self, ended: Ended) {
        if let Job::AofBase(_) = ended.kind
            && let Some(log) = self.aof.as_mut()
        {
            aof::rewrite_done(log, &self.config, ended.generation, ended.ok);
        }
    }

    /// Cancels a running background snapshot (and the rewrite it was for).
    pub fn cancel_bgsave(&mut self) {
        if let Some(ended) = persist::cancel_bgsave(&mut self.ks, &mut self.rdb) {
            self.job_ended(ended);
        }
    }

    /// Puts `ks` in place of the dataset (DEBUG RELOAD, import); a background job over the
    /// old dataset is cancelled.
    pub fn replace_dataset(&mut self, mut ks: Keyspace) {
        self.cancel_bgsave();
        ks.dirty = self.ks.dirty;
        ks.set_feed(self.ks.feed_enabled());
        ks.encodings = self.ks.encodings;
        ks.notify_classes = self.ks.notify_classes;
        self.ks = ks;
        // The libraries came with the data.
        if let Err(e) = crate::scripting::restore_functions(self) {
            tracing::warn!(error = %e, "the loaded function libraries could not be compiled");
        }
    }

    /// The save a stopping node makes: with `save` rules (or SHUTDOWN SAVE) and not NOSAVE.
    /// A background save in progress is cancelled first, as Redis kills its child.
    pub fn save_on_shutdown(&mut self, nosave: bool, force_save: bool) -> anyhow::Result<()> {
        if self.rdb.shutdown_saved {
            return Ok(());
        }
        self.rdb.shutdown_saved = true;
        self.cancel_bgsave();
        if nosave || (self.config.save.is_empty() && !force_save) {
            return Ok(());
        }
        tracing::info!("saving the final RDB snapshot before exiting");
        self.save().inspect_err(|_| self.rdb.shutdown_saved = false)
    }

    /// The persistence part of the node's background cycle: a scheduled AOF rewrite, the
    /// `save` rules, the auto-rewrite rule, the backup schedule, the spool bound, and the
    /// log of keys active expiry removed.
    pub fn persistence_cron(&mut self) {
        if self.rdb.job.is_none() && std::mem::take(&mut self.rdb.aof_rewrite_scheduled) {
            if let Err(e) = self.rewrite_aof() {
                tracing::warn!(error = %e, "could not start the scheduled AOF rewrite");
            }
        } else {
            persist::cron(&mut self.ks, &mut self.rdb, &self.config);
        }
        if let Some(log) = self.aof.as_mut() {
            aof::cron(log, &mut self.ks, &mut self.rdb, &self.config);
        }
        ship::cron(&mut self.ship, &mut self.ks, &mut self.rdb, &self.config);
        ship::check_spool(&mut self.ship, self.aof.as_ref(), &self.config);
        self.feed_aof();
    }

    /// For a stop: the AOF accounts' statuses and the log's end, with the shippers told to
    /// cut what is pending at once.
    pub fn drain_targets(&self) -> (Vec<Arc<Mutex<TargetStatus>>>, u64) {
        self.ship
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        (
            self.ship.aof_targets.clone(),
            self.aof.as_ref().map_or(0, |a| a.appended),
        )
    }
}
