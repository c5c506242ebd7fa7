//! The persistence model table, I/O-free: for a cache's data and the persistence choices
//! Azure offers (none, RDB every 15/60/360 minutes, AOF) plus cacheplane's stricter ones,
//! what a crash and a lost machine would lose, how long a restore would take at the speed
//! restores of this cache were measured at, and what the storage would cost a month.
//! Numbers that cannot be known yet are null, with the reason in `basis`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::drill::{EVERYSEC_LOSS_MS, Mode, SHIPPING_LAG_MS, human_ms};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What the table is computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The cache's persistence now.
    pub current: Option<Mode>,
    /// Bytes of data in the cache (what a snapshot or a rewritten AOF holds, about).
    pub dataset_bytes: u64,
    pub keys: u64,
    /// Restore speed measured on this cache (bytes per second, download and replay), and
    /// where it was measured.
    pub restore: Option<(f64, String)>,
    /// Snapshots kept (`rdb-backup-max-snapshot-count`).
    pub snapshots_kept: u64,
    /// Days the account retains deleted and replaced objects (None: nothing; u64::MAX:
    /// forever, versioning without expiry).
    pub retention_days: Option<u64>,
    pub price_per_gib_month: f64,
    /// The current AOF's bytes shipped per second, from the accounting (AOF caches only).
    pub aof_bytes_per_sec: Option<f64>,
    /// What the accounting projects the current persistence to cost a month.
    pub current_monthly_usd: Option<f64>,
}

/// One row: one persistence choice.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub persistence: String,
    /// The cache's persistence now.
    pub current: bool,
    /// Writes a crash of the node may lose: acknowledged up to this long before it (null:
    /// all data).
    pub crash_loss_window_ms: Option<u64>,
    /// The same for a lost machine (the node's local disk gone too).
    pub machine_loss_window_ms: Option<u64>,
    /// The loss in words.
    pub loss: String,
    /// Seconds a restore of the data would take at the measured speed (null: no restore
    /// measured yet, or nothing to restore).
    pub recovery_seconds_estimate: Option<f64>,
    /// Monthly storage cost, live and retained (null: not known yet; see `basis`).
    pub monthly_storage_usd: Option<f64>,
    /// How the numbers were found.
    pub basis: String,
}

/// The table's answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceModel {
    pub dataset_bytes: u64,
    pub keys: u64,
    /// Restore speed this table assumes (null: none measured).
    pub restore_bytes_per_second: Option<f64>,
    pub rows: Vec<Row>,
}

/// The choices the table compares.
fn choices() -> Vec<Mode> {
    vec![
        Mode::None,
        Mode::Rdb {
            every_ms: 15 * 60_000,
        },
        Mode::Rdb {
            every_ms: 60 * 60_000,
        },
        Mode::Rdb {
            every_ms: 360 * 60_000,
        },
        Mode::AofEverySec,
        Mode::AofAlways,
        Mode::AofStore,
    ]
}

/// The table for `inputs`; the current persistence is always one of its rows.
pub fn table(inputs: &Inputs) -> PersistenceModel {
    let mut modes = choices();
    if let Some(m) = inputs.current
        && !modes.contains(&m)
    {
        modes.push(m);
    }
    let speed = inputs
        .restore
        .as_ref()
        .map(|(s, _)| *s)
        .filter(|s| *s > 0.0);
    let rows = modes
        .into_iter()
        .map(|mode| row(inputs, mode, speed))
        .collect();
    PersistenceModel {
        dataset_bytes: inputs.dataset_bytes,
        keys: inputs.keys,
        restore_bytes_per_second: speed,
        rows,
    }
}

fn row(inputs: &Inputs, mode: Mode, speed: Option<f64>) -> Row {
    let current = inputs.current == Some(mode);
    let (crash, machine, loss) = match mode {
        Mode::None => (None, None, "all data, on any restart".to_string()),
        Mode::Rdb { every_ms } => (
            Some(every_ms),
            Some(every_ms),
            format!(
                "up to {} of writes (since the last snapshot)",
                human_ms(every_ms)
            ),
        ),
        Mode::AofEverySec => (
            Some(EVERYSEC_LOSS_MS),
            Some(SHIPPING_LAG_MS),
            format!(
                "up to {} of writes (not yet fsynced, or not yet shipped)",
                human_ms(EVERYSEC_LOSS_MS.max(SHIPPING_LAG_MS))
            ),
        ),
        Mode::AofAlways => (
            Some(0),
            Some(SHIPPING_LAG_MS),
            format!(
                "none on a crash; up to {} of writes with the machine (not yet shipped)",
                human_ms(SHIPPING_LAG_MS)
            ),
        ),
        Mode::AofStore => (Some(0), Some(0), "none".to_string()),
    };
    let gib_month = |bytes: f64| bytes / GIB * inputs.price_per_gib_month;
    let mut basis = Vec::new();
    let recovery_seconds_estimate = match (mode, speed) {
        (Mode::None, _) => None,
        (_, Some(s)) => Some(inputs.dataset_bytes as f64 / s),
        (_, None) => {
            basis.push("no restore of this cache measured yet: run a machineLoss drill");
            None
        }
    };
    let monthly_storage_usd = match mode {
        _ if current && inputs.current_monthly_usd.is_some() => {
            basis.push("cost: the accounting's projection of this cache's own traffic");
            inputs.current_monthly_usd
        }
        Mode::None => Some(0.0),
        Mode::Rdb { every_ms } => {
            // Kept snapshots are live; each replaced one is retained for the account's
            // retention days.
            let snapshot = inputs.dataset_bytes as f64;
            let live = snapshot * inputs.snapshots_kept.max(1) as f64;
            let retained = match inputs.retention_days {
                None => Some(0.0),
                Some(u64::MAX) => None,
                Some(days) => Some(snapshot * (days as f64 * 86_400_000.0 / every_ms as f64)),
            };
            basis.push("cost: snapshots of the data's size, replaced on schedule");
            retained.map(|r| gib_month(live + r))
        }
        Mode::AofEverySec | Mode::AofAlways | Mode::AofStore => match inputs.aof_bytes_per_sec {
            Some(rate) => {
                // A base of the data's size, and the log's bytes retained as segments are
                // retired by rewrites.
                let retained = match inputs.retention_days {
                    None => Some(0.0),
                    Some(u64::MAX) => None,
                    Some(days) => Some(rate * days as f64 * 86_400.0),
                };
                basis.push("cost: the AOF's measured write rate");
                retained.map(|r| gib_month(inputs.dataset_bytes as f64 * 2.0 + r))
            }
            None => {
                basis.push(
                    "cost: needs the AOF's write rate, measured while the cache runs with AOF",
                );
                None
            }
        },
    };
    let monthly_storage_usd = monthly_storage_usd.map(|u| (u * 100.0).round() / 100.0);
    if matches!(inputs.retention_days, Some(u64::MAX)) && monthly_storage_usd.is_none() {
        basis.push("the account keeps old versions forever: the cost grows without bound");
    }
    Row {
        persistence: mode.name(),
        current,
        crash_loss_window_ms: crash,
        machine_loss_window_ms: machine,
        loss,
        recovery_seconds_estimate,
        monthly_storage_usd,
        basis: basis.join("; "),
    }
}

/// Bytes per second a restore ran at.
pub fn restore_speed(bytes: u64, download_seconds: f64, replay_seconds: f64) -> Option<f64> {
    let secs = download_seconds + replay_seconds;
    (bytes > 0 && secs > 0.0).then(|| bytes as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            current: Some(Mode::Rdb {
                every_ms: 60 * 60_000,
            }),
            dataset_bytes: 1024 * 1024 * 1024,
            keys: 1_000_000,
            restore: Some((100.0 * 1024.0 * 1024.0, "drill".into())),
            snapshots_kept: 1,
            retention_days: Some(7),
            price_per_gib_month: 0.02,
            aof_bytes_per_sec: None,
            current_monthly_usd: None,
        }
    }

    #[test]
    fn rdb_rows_compare_loss_and_cost_across_frequencies() {
        let t = table(&inputs());
        let names: Vec<&str> = t.rows.iter().map(|r| r.persistence.as_str()).collect();
        assert_eq!(
            names,
            [
                "none",
                "rdb every 15 min",
                "rdb every 1 h",
                "rdb every 6 h",
                "aof everysec",
                "aof always",
                "aof to the store"
            ]
        );
        let hourly = &t.rows[2];
        assert!(hourly.current);
        assert_eq!(hourly.crash_loss_window_ms, Some(3_600_000));
        // 1 GiB at 100 MiB/s.
        assert_eq!(hourly.recovery_seconds_estimate, Some(10.24));
        // One live snapshot and 7 days x 24 replaced ones retained: 169 GiB at $0.02.
        assert_eq!(hourly.monthly_storage_usd, Some(3.38));
        // Every 15 minutes retains four times as many.
        assert_eq!(t.rows[1].monthly_storage_usd, Some(13.46));
        assert_eq!(t.rows[0].crash_loss_window_ms, None);
        assert_eq!(t.rows[6].machine_loss_window_ms, Some(0));
        assert_eq!(t.rows[4].monthly_storage_usd, None);
        assert!(t.rows[4].basis.contains("write rate"));
    }

    #[test]
    fn without_a_measured_restore_the_estimate_says_how_to_get_one() {
        let mut i = inputs();
        i.restore = None;
        i.retention_days = Some(u64::MAX);
        let t = table(&i);
        assert_eq!(t.rows[1].recovery_seconds_estimate, None);
        assert!(
            t.rows[1].basis.contains("machineLoss drill"),
            "{}",
            t.rows[1].basis
        );
        assert!(t.rows[1].basis.contains("forever"));
        assert_eq!(restore_speed(100, 0.5, 0.5), Some(100.0));
        assert_eq!(restore_speed(0, 1.0, 0.0), None);
    }
}
