//! Patch schedules, enforced: when a maintenance window of a cache's `default` schedule
//! opens on the cache's clock (`cacheplane-time-scale` times as fast as the wall clock,
//! counted from when this control plane first saw the schedule), the cache is rebooted as
//! Azure's patching reboots it — back from its storage accounts with persistence, empty
//! without — and the event is kept for `listUpgradeNotifications`.

use std::collections::HashMap;
use std::sync::Arc;

use control::children::{MAINTENANCE_EVENTS_KEPT, MaintenanceEvent};
use control::model::{Cache, ProvisioningState};
use control::store::key;

use super::{App, wall_ms};

/// How often schedules are looked at (wall clock).
pub(super) const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Each scheduled cache's clock: where its simulated time started and how far the
/// schedule was checked.
#[derive(Default)]
pub(super) struct Clocks {
    clocks: HashMap<String, Clock>,
}

struct Clock {
    origin_ms: i64,
    checked_ms: i64,
}

impl Clocks {
    /// The windows that opened since the last call, per cache: `(cache, window start ms on
    /// its clock)`. Caches without a schedule lose their clock (a new schedule starts one).
    fn due(&mut self, caches: &[Cache], now_ms: i64) -> Vec<(Cache, i64)> {
        let mut due = Vec::new();
        let mut seen = Vec::new();
        for cache in caches {
            let Some(schedule) = cache.children.patch_schedules.get("default") else {
                continue;
            };
            let k = key(&cache.id());
            seen.push(k.clone());
            let clock = self.clocks.entry(k).or_insert(Clock {
                origin_ms: now_ms,
                checked_ms: now_ms,
            });
            let scale = control::drill::time_scale(cache) as i64;
            let sim_now = clock
                .origin_ms
                .saturating_add((now_ms - clock.origin_ms).saturating_mul(scale));
            // However fast the clock runs, one reboot per check: windows that a long
            // pause skipped are not all replayed.
            if let Some((at, _)) = schedule.window_between(clock.checked_ms, sim_now)
                && cache.provisioning_state == ProvisioningState::Succeeded
            {
                due.push((cache.clone(), at));
            }
            clock.checked_ms = sim_now;
        }
        self.clocks.retain(|k, _| seen.contains(k));
        due
    }
}

impl App {
    /// Reboots every cache whose maintenance window opened since the last check.
    pub(super) async fn run_maintenance(self: &Arc<Self>) {
        let caches: Vec<Cache> = self
            .store
            .lock()
            .await
            .all()
            .filter(|c| !c.children.patch_schedules.is_empty())
            .cloned()
            .collect();
        let due = self
            .maintenance
            .lock()
            .expect("maintenance lock")
            .due(&caches, wall_ms() as i64);
        for (cache, window_ms) in due {
            let app = self.clone();
            tokio::spawn(async move { app.maintain(cache, window_ms).await });
        }
    }

    async fn maintain(&self, cache: Cache, window_ms: i64) {
        let id = cache.id();
        let k = key(&id);
        let window_start = chrono::DateTime::from_timestamp_millis(window_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let outcome = match self.claim(&k, &id) {
            // A change under way: Azure would wait for it; the window is missed here,
            // and the event says so.
            Err(_) => "skipped: another change of the cache was running".to_string(),
            Ok(_busy) => match self.reboot(&k, &cache).await {
                Ok(what) => format!("rebooted; {what}"),
                Err(e) => format!("the reboot failed: {}", e.0.message),
            },
        };
        tracing::info!(cache = %id, %window_start, %outcome, "maintenance window");
        let mut store = self.store.lock().await;
        let Some(mut current) = store.get(&id).cloned() else {
            return;
        };
        let events = &mut current.children.maintenance;
        events.push(MaintenanceEvent {
            window_start,
            rebooted_at: chrono::Utc::now().to_rfc3339(),
            outcome,
        });
        let excess = events.len().saturating_sub(MAINTENANCE_EVENTS_KEPT);
        events.drain(..excess);
        if let Err(e) = store.put(current) {
            tracing::error!(cache = %id, error = %e, "could not record the maintenance event");
        }
    }
}
