//! Fault drills, I/O-free: what a drill request may ask for, the data loss a cache's
//! persistence predicts for each kind of fault, what the probe writer's acknowledgements
//! and the writes found after recovery say was lost, and the verdict. The control plane
//! runs the drill (`serve::drills`); the numbers and the rules are here, tested with data.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ArmError;
use crate::model::Cache;
use crate::validate::Persistence;

/// A drill's fault lasts (or its probe writes before a crash) 1 to this many seconds.
pub const DRILL_SECONDS_MAX: u64 = 600;
pub const DRILL_SECONDS_DEFAULT: u64 = 3;
/// The probe writes at most this many writes per second.
pub const PROBE_WRITES_PER_SECOND_MAX: u32 = 10_000;
pub const PROBE_WRITES_PER_SECOND_DEFAULT: u32 = 500;
/// Latency `storageSlow` adds by default, and at most.
pub const SLOW_LATENCY_MS_DEFAULT: u64 = 500;
pub const SLOW_LATENCY_MS_MAX: u64 = 60_000;
/// Drills kept per cache (the oldest go first).
pub const DRILLS_KEPT_MAX: usize = 100;

/// Under `appendfsync everysec` a crash loses what was written since the last fsync: one
/// second between fsyncs, and up to one more while a slow fsync runs (Redis postpones
/// the next one for up to two seconds before it makes writes wait).
pub const EVERYSEC_LOSS_MS: u64 = 2_000;
/// Without `aof-durability store`, a lost machine loses what its accounts had not
/// received: a segment is cut each second (`node::SEGMENT_ROLL_INTERVAL`) and its upload
/// takes up to another on a healthy store.
pub const SHIPPING_LAG_MS: u64 = 2_000;

/// What a drill does to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DrillKind {
    /// The node dies without a graceful stop: memory and the page cache are gone, the
    /// local disk stays.
    NodeCrash,
    /// The node dies and its local disk is gone: it comes back from its accounts.
    MachineLoss,
    /// A storage account is unreachable for `durationSeconds` while the cache serves.
    StorageOutage,
    /// A storage account answers `latencyMs` late for `durationSeconds`.
    StorageSlow,
    /// The zone of the cache's node goes down (caches with zones only): the machine is
    /// lost; the storage accounts, zone-redundant, stay.
    ZoneOutage,
}

impl DrillKind {
    /// The node dies in this drill.
    pub fn kills_node(self) -> bool {
        matches!(
            self,
            DrillKind::NodeCrash | DrillKind::MachineLoss | DrillKind::ZoneOutage
        )
    }

    /// The node's local disk is lost too.
    pub fn loses_disk(self) -> bool {
        matches!(self, DrillKind::MachineLoss | DrillKind::ZoneOutage)
    }
}

/// The probe writer's settings in a request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeRequest {
    /// Off: the drill measures recovery only.
    #[serde(default)]
    pub enabled: Option<bool>,
    pub writes_per_second: Option<u32>,
}

/// `simulateFault`'s body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrillRequest {
    pub kind: DrillKind,
    /// How long the fault lasts (storage faults), or how long the probe writes before the
    /// node dies; 1 to 600, default 3.
    pub duration_seconds: Option<u64>,
    /// Probe writes during the drill: on by default, 500 writes per second.
    pub probe: Option<ProbeRequest>,
    /// Which account a storage fault hits: `primary` (default: the AOF primary or the RDB
    /// account), `secondary`, or `rdb`.
    pub account: Option<String>,
    /// `storageSlow`'s added latency per request, in milliseconds (default 500).
    pub latency_ms: Option<u64>,
}

/// Which of a cache's accounts a storage fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AccountRole {
    Primary,
    Secondary,
    Rdb,
}

/// A checked drill request.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillPlan {
    pub kind: DrillKind,
    pub duration_seconds: u64,
    /// None: no probe.
    pub probe_writes_per_second: Option<u32>,
    pub account: AccountRole,
    pub latency_ms: u64,
}

fn bad(target: &str, message: String) -> ArmError {
    ArmError::bad_request("InvalidRequestBody", target, message)
}

impl DrillRequest {
    /// Checks the request against `cache`: its bounds, and a fault the cache can have.
    pub fn plan(&self, cache: &Cache) -> Result<DrillPlan, ArmError> {
        let duration_seconds = self.duration_seconds.unwrap_or(DRILL_SECONDS_DEFAULT);
        if !(1..=DRILL_SECONDS_MAX).contains(&duration_seconds) {
            return Err(bad(
                "durationSeconds",
                format!("durationSeconds must be 1 to {DRILL_SECONDS_MAX}."),
            ));
        }
        let probe = self.probe.as_ref();
        let probe_writes_per_second = match probe.and_then(|p| p.enabled) {
            Some(false) => None,
            _ => {
                let rate = probe
                    .and_then(|p| p.writes_per_second)
                    .unwrap_or(PROBE_WRITES_PER_SECOND_DEFAULT);
                if !(1..=PROBE_WRITES_PER_SECOND_MAX).contains(&rate) {
                    return Err(bad(
                        "probe.writesPerSecond",
                        format!(
                            "probe.writesPerSecond must be 1 to {PROBE_WRITES_PER_SECOND_MAX}."
                        ),
                    ));
                }
                Some(rate)
            }
        };
        let latency_ms = self.latency_ms.unwrap_or(SLOW_LATENCY_MS_DEFAULT);
        if !(1..=SLOW_LATENCY_MS_MAX).contains(&latency_ms) {
            return Err(bad(
                "latencyMs",
                format!("latencyMs must be 1 to {SLOW_LATENCY_MS_MAX}."),
            ));
        }
        let persistence = crate::validate::persistence(&cache.sku, &cache.redis_configuration)?;
        let account = match self
            .account
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("primary") => match persistence {
                Persistence::Rdb { .. } => AccountRole::Rdb,
                _ => AccountRole::Primary,
            },
            Some("secondary") => AccountRole::Secondary,
            Some("rdb") => AccountRole::Rdb,
            Some(other) => {
                return Err(bad(
                    "account",
                    format!("account '{other}' is not one of primary, secondary, rdb."),
                ));
            }
        };
        let storage_fault = matches!(self.kind, DrillKind::StorageOutage | DrillKind::StorageSlow);
        if storage_fault {
            let has = match (&persistence, account) {
                (Persistence::Rdb { .. }, AccountRole::Rdb) => true,
                (Persistence::Aof { .. }, AccountRole::Primary) => true,
                (Persistence::Aof { secondary, .. }, AccountRole::Secondary) => secondary.is_some(),
                _ => false,
            };
            if !has {
                return Err(bad(
                    "account",
                    format!(
                        "the cache has no {} storage account to fault (its persistence: {}).",
                        role_name(account),
                        mode_of(cache).name()
                    ),
                ));
            }
        }
        if self.kind == DrillKind::ZoneOutage && cache.zones.is_empty() {
            return Err(bad(
                "kind",
                "zoneOutage needs a cache with zones; this cache has none.".into(),
            ));
        }
        Ok(DrillPlan {
            kind: self.kind,
            duration_seconds,
            probe_writes_per_second,
            account,
            latency_ms,
        })
    }
}

fn role_name(role: AccountRole) -> &'static str {
    match role {
        AccountRole::Primary => "primary",
        AccountRole::Secondary => "secondary",
        AccountRole::Rdb => "RDB",
    }
}

/// A cache's persistence as the loss rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    /// Snapshots every this many milliseconds of wall time (the frequency over the time scale).
    Rdb {
        every_ms: u64,
    },
    AofEverySec,
    AofAlways,
    /// `cacheplane-aof-durability store`: a write is acknowledged once the store holds it.
    AofStore,
}

impl Mode {
    /// The name drills and the model table report.
    pub fn name(self) -> String {
        match self {
            Mode::None => "none".into(),
            Mode::Rdb { every_ms } => format!("rdb every {}", human_ms(every_ms)),
            Mode::AofEverySec => "aof everysec".into(),
            Mode::AofAlways => "aof always".into(),
            Mode::AofStore => "aof to the store".into(),
        }
    }
}

/// `ms` as a person reads it: "250 ms", "3 s", "15 min", "6 h".
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 if ms.is_multiple_of(1_000) => format!("{} s", ms / 1_000),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

/// The `appendfsync` a cache's node runs with (`cacheplane-appendfsync`; everysec as Azure).
pub fn appendfsync(cache: &Cache) -> &str {
    match cache
        .redis_configuration
        .get(APPENDFSYNC)
        .map(String::as_str)
    {
        Some("always") => "always",
        _ => "everysec",
    }
}

/// cacheplane's key for the AOF fsync policy of a cache.
pub const APPENDFSYNC: &str = "cacheplane-appendfsync";

/// The schedules' speed-up (`cacheplane-time-scale`).
pub fn time_scale(cache: &Cache) -> u64 {
    cache
        .redis_configuration
        .get("cacheplane-time-scale")
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(1)
}

/// The persistence mode of `cache` (None when its settings do not validate).
pub fn mode_of(cache: &Cache) -> Mode {
    match crate::validate::persistence(&cache.sku, &cache.redis_configuration) {
        Ok(Persistence::Rdb { frequency_min, .. }) => Mode::Rdb {
            every_ms: frequency_min * 60_000 / time_scale(cache),
        },
        Ok(Persistence::Aof { .. }) => {
            let store = cache
                .redis_configuration
                .get("cacheplane-aof-durability")
                .is_some_and(|v| v == "store");
            match (store, appendfsync(cache)) {
                (true, _) => Mode::AofStore,
                (false, "always") => Mode::AofAlways,
                (false, _) => Mode::AofEverySec,
            }
        }
        _ => Mode::None,
    }
}

/// The loss a persistence mode predicts for a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    /// The most acknowledged probe writes the drill may lose (null: all of them).
    pub max_lost_writes: Option<u64>,
    /// Lost writes were acknowledged at most this long before the fault (null: any time).
    pub max_lost_window_ms: Option<u64>,
    /// Why, in words.
    pub basis: String,
}

/// What the node reported at the moment of the fault.
#[derive(Debug, Clone, Copy, Default)]
pub struct AtFault {
    pub at_ms: u64,
    /// Data time of the newest snapshot completed in the RDB account.
    pub last_snapshot_ms: Option<u64>,
}

/// The loss `mode` predicts for `kind`, given the probe's acknowledgement times (ms since
/// the epoch) and the node's state at the fault.
pub fn predict(mode: Mode, kind: DrillKind, fault: AtFault, acks_ms: &[u64]) -> Prediction {
    let (window, basis): (Option<u64>, String) = if !kind.kills_node() {
        (
            Some(0),
            "the node keeps running through a storage fault and keeps every write in memory and on its disk; nothing acknowledged may be lost".into(),
        )
    } else {
        match mode {
            Mode::None => (
                None,
                "no persistence: a node that dies loses all its data".into(),
            ),
            Mode::Rdb { every_ms } => match fault.last_snapshot_ms {
                Some(snap) => (
                    Some(fault.at_ms.saturating_sub(snap)),
                    format!(
                        "RDB every {}: the writes since the last completed snapshot ({} before the fault)",
                        human_ms(every_ms),
                        human_ms(fault.at_ms.saturating_sub(snap))
                    ),
                ),
                None => (
                    None,
                    format!(
                        "RDB every {}: no snapshot had completed yet, so every write since the node started",
                        human_ms(every_ms)
                    ),
                ),
            },
            Mode::AofEverySec if !kind.loses_disk() => (
                Some(EVERYSEC_LOSS_MS),
                format!(
                    "AOF everysec: the writes not yet fsynced, at most {}",
                    human_ms(EVERYSEC_LOSS_MS)
                ),
            ),
            Mode::AofAlways if !kind.loses_disk() => (
                Some(0),
                "AOF always: every acknowledged write was fsynced; none may be lost".into(),
            ),
            Mode::AofEverySec | Mode::AofAlways => (
                Some(SHIPPING_LAG_MS),
                format!(
                    "AOF shipped to the storage account: the local disk is gone, so the writes not yet in the account, at most {}",
                    human_ms(SHIPPING_LAG_MS)
                ),
            ),
            Mode::AofStore => (
                Some(0),
                "AOF with store durability: a write is acknowledged once the account holds it; none may be lost".into(),
            ),
        }
    };
    let max_lost_writes = window.map(|w| {
        let from = fault.at_ms.saturating_sub(w);
        match w {
            0 => 0,
            _ => acks_ms.iter().filter(|&&t| t >= from).count() as u64,
        }
    });
    Prediction {
        max_lost_writes,
        max_lost_window_ms: window,
        basis,
    }
}

/// What the probe measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    pub writes_per_second: u32,
    /// Writes the cache acknowledged.
    pub acknowledged: u64,
    /// Acknowledged writes missing after recovery.
    pub lost: u64,
    /// From the first lost write's acknowledgement to the last's (0 with none lost).
    pub lost_window_ms: u64,
    /// How long before the fault the first lost write was acknowledged (null: none lost).
    pub lost_before_fault_ms: Option<u64>,
    /// Writes refused or unanswered (the node down or refusing writes).
    pub failed: u64,
}

/// Measures the loss from the acknowledgement times of the probe's writes (by sequence
/// number) and which of them were found after recovery.
pub fn measure(
    writes_per_second: u32,
    acks_ms: &[u64],
    found: &[bool],
    fault_at_ms: u64,
    failed: u64,
) -> ProbeResult {
    let lost: Vec<u64> = acks_ms
        .iter()
        .zip(found)
        .filter(|(_, f)| !**f)
        .map(|(t, _)| *t)
        .collect();
    let first = lost.iter().min().copied();
    let last = lost.iter().max().copied();
    ProbeResult {
        writes_per_second,
        acknowledged: acks_ms.len() as u64,
        lost: lost.len() as u64,
        lost_window_ms: match (first, last) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        },
        lost_before_fault_ms: first.map(|t| fault_at_ms.saturating_sub(t)),
        failed,
    }
}

/// Whether the measured loss is what the prediction allows.
pub fn within(prediction: &Prediction, measured: &ProbeResult) -> bool {
    let count_ok = prediction
        .max_lost_writes
        .is_none_or(|max| measured.lost <= max);
    let window_ok = match (prediction.max_lost_window_ms, measured.lost_before_fault_ms) {
        (Some(w), Some(before)) => before <= w,
        _ => true,
    };
    count_ok && window_ok
}

/// A drill's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DrillStatus {
    Running,
    Succeeded,
    Failed,
}

/// Where the node's data came from after the fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredFrom {
    /// "local disk", or the storage account's display name.
    pub source: String,
    pub files: u64,
    pub bytes: u64,
    pub download_seconds: f64,
    pub replay_seconds: f64,
    pub keys: u64,
}

/// The storage backlog seen during a storage fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageBacklog {
    pub account: String,
    /// The most bytes of log the account lagged behind during the drill.
    pub max_bytes: u64,
    /// Seconds from the fault's end until the account had caught up (null: it had not by
    /// the drill's end).
    pub drained_seconds: Option<f64>,
}

/// A drill as `faultDrills` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillProperties {
    pub kind: DrillKind,
    pub status: DrillStatus,
    /// The cache's persistence during the drill.
    pub persistence: String,
    pub duration_seconds: u64,
    pub start_time: String,
    pub end_time: Option<String>,
    /// When the fault hit (RFC 3339).
    pub fault_time: Option<String>,
    pub probe: Option<ProbeResult>,
    pub predicted: Option<Prediction>,
    /// The measured loss is within the prediction (null until the drill ends, or without
    /// a probe).
    pub within_prediction: Option<bool>,
    /// Seconds from the fault to the node serving again (drills that kill the node).
    pub recovery_seconds: Option<f64>,
    pub restored_from: Option<RestoredFrom>,
    pub storage_backlog: Option<StorageBacklog>,
    /// Why the drill failed.
    pub error: Option<String>,
}

/// One drill: a resource under the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Drill {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub properties: DrillProperties,
}

/// The resource type of drills.
pub const DRILL_TYPE: &str = "Microsoft.Cache/redis/faultDrills";

/// `faultDrills`' answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DrillList {
    pub value: Vec<Drill>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(from: u64, n: u64, every: u64) -> Vec<u64> {
        (0..n).map(|i| from + i * every).collect()
    }

    #[test]
    fn a_crash_without_persistence_may_lose_everything() {
        let a = acks(1_000, 100, 10);
        let p = predict(
            Mode::None,
            DrillKind::NodeCrash,
            AtFault {
                at_ms: 2_000,
                last_snapshot_ms: None,
            },
            &a,
        );
        assert_eq!((p.max_lost_writes, p.max_lost_window_ms), (None, None));
        let m = measure(100, &a, &[false; 100], 2_000, 0);
        assert_eq!((m.lost, m.lost_window_ms), (100, 990));
        assert!(within(&p, &m));
    }

    #[test]
    fn rdb_predicts_the_writes_since_the_last_snapshot() {
        // Acknowledged at 1000, 1010, ... 1990; the snapshot's data is from 1500.
        let a = acks(1_000, 100, 10);
        let fault = AtFault {
            at_ms: 2_000,
            last_snapshot_ms: Some(1_500),
        };
        let p = predict(
            Mode::Rdb { every_ms: 1_000 },
            DrillKind::MachineLoss,
            fault,
            &a,
        );
        assert_eq!(p.max_lost_window_ms, Some(500));
        assert_eq!(p.max_lost_writes, Some(50));
        let mut found = vec![true; 100];
        found[60..].fill(false);
        let m = measure(100, &a, &found, 2_000, 0);
        assert_eq!((m.lost, m.lost_before_fault_ms), (40, Some(400)));
        assert!(within(&p, &m));
        // A write from before the snapshot missing is outside the window.
        found[10] = false;
        let m = measure(100, &a, &found, 2_000, 0);
        assert_eq!(m.lost_before_fault_ms, Some(900));
        assert!(!within(&p, &m));
    }

    #[test]
    fn aof_always_and_store_durability_allow_no_loss_on_a_crash() {
        let a = acks(1_000, 10, 10);
        let fault = AtFault {
            at_ms: 1_100,
            last_snapshot_ms: None,
        };
        for mode in [Mode::AofAlways, Mode::AofStore] {
            let p = predict(mode, DrillKind::NodeCrash, fault, &a);
            assert_eq!(p.max_lost_writes, Some(0));
            let mut found = vec![true; 10];
            assert!(within(&p, &measure(10, &a, &found, 1_100, 0)));
            found[9] = false;
            assert!(!within(&p, &measure(10, &a, &found, 1_100, 0)));
        }
        // A lost machine under `always` may lose the shipping lag, not under the store mode.
        let p = predict(Mode::AofAlways, DrillKind::MachineLoss, fault, &a);
        assert_eq!(p.max_lost_window_ms, Some(SHIPPING_LAG_MS));
        let p = predict(Mode::AofStore, DrillKind::ZoneOutage, fault, &a);
        assert_eq!(p.max_lost_window_ms, Some(0));
    }

    #[test]
    fn storage_faults_predict_no_loss_whatever_the_mode() {
        let p = predict(
            Mode::None,
            DrillKind::StorageOutage,
            AtFault::default(),
            &[1, 2, 3],
        );
        assert_eq!(p.max_lost_writes, Some(0));
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(human_ms(250), "250 ms");
        assert_eq!(human_ms(2_000), "2 s");
        assert_eq!(human_ms(1_500), "1.5 s");
        assert_eq!(human_ms(900_000), "15 min");
        assert_eq!(human_ms(21_600_000), "6 h");
    }
}
