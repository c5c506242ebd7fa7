//! The process's file descriptors for client sockets, shared fairly by the nodes in it.
//!
//! Under `serve` every in-process cache accepts clients in one process with one
//! `RLIMIT_NOFILE`; `serve` keeps a reserve for the API and the store and gives the rest
//! to the caches ([`set_client_fd_budget`]). A socket is counted from accept (a TLS
//! handshake holds one too) until its connection ends. Each node may hold its fair part
//! (the budget over the nodes running), or what the others leave when one holds more (it
//! took it while alone); the total never exceeds the budget. A connection refused here is
//! answered as over
//! `maxclients`, so one cache full of clients never makes another cache's accept, or the
//! API's, fail with EMFILE. Without a budget (`cacheplane node`) nothing is counted
//! against anything but `maxclients`.
//!
//! The registry's lock is taken once per accepted connection, never per command.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

struct Registry {
    /// Client sockets all nodes together may hold; `None`: no budget.
    budget: Option<usize>,
    /// Each running node's count of client sockets.
    nodes: Vec<Weak<AtomicUsize>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    budget: None,
    nodes: Vec::new(),
});

/// Gives the nodes of this process, together, at most `fds` client sockets.
pub fn set_client_fd_budget(fds: usize) {
    REGISTRY.lock().expect("fd registry").budget = Some(fds);
}

/// A new node's count of client sockets, registered for the fair shares.
pub(crate) fn register_node() -> Arc<AtomicUsize> {
    let used = Arc::new(AtomicUsize::new(0));
    let mut r = REGISTRY.lock().expect("fd registry");
    r.nodes.retain(|n| n.strong_count() > 0);
    r.nodes.push(Arc::downgrade(&used));
    used
}

/// Whether a node holding `used` sockets may take one more: `others` are the other
/// nodes' counts, `budget` all of theirs together. Every other node is counted at its
/// fair part at least (what it may still take is kept free for it) and never less than it
/// holds, so the budget is never exceeded.
fn may_take(budget: usize, used: usize, others: &[usize]) -> bool {
    let fair = budget / (others.len() + 1);
    let kept: usize = others.iter().map(|&o| o.max(fair)).sum();
    used + kept < budget
}

/// One client socket of a node, counted until dropped.
pub(crate) struct FdSlot(Arc<AtomicUsize>);

impl FdSlot {
    /// A slot for `node`'s next client, or `None` when its share is spent.
    pub(crate) fn take(node: &Arc<AtomicUsize>) -> Option<FdSlot> {
        let r = REGISTRY.lock().expect("fd registry");
        if let Some(budget) = r.budget {
            let others: Vec<usize> = r
                .nodes
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|n| !Arc::ptr_eq(n, node))
                .map(|n| n.load(Ordering::Relaxed))
                .collect();
            if !may_take(budget, node.load(Ordering::Relaxed), &others) {
                return None;
            }
        }
        // Counted under the lock, so two accepts cannot both take the last slot.
        node.fetch_add(1, Ordering::Relaxed);
        Some(FdSlot(node.clone()))
    }
}

impl Drop for FdSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::may_take;

    #[test]
    fn each_node_keeps_its_fair_part_and_the_budget_holds() {
        // Alone: the whole budget.
        assert!(may_take(100, 99, &[]));
        assert!(!may_take(100, 100, &[]));
        // Two nodes, the other idle or busy within its part: half each.
        assert!(may_take(100, 49, &[0]));
        assert!(!may_take(100, 50, &[0]));
        assert!(!may_take(100, 50, &[10]));
        // The other took more while it was alone: this one gets what is left until it
        // gives some back.
        assert!(may_take(100, 19, &[80]));
        assert!(!may_take(100, 20, &[80]));
        // Three nodes: a third each.
        assert!(may_take(99, 32, &[0, 33]));
        assert!(!may_take(99, 33, &[0, 5]));
    }
}
