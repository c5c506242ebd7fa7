//! Soft-delete and versioning accounting: a pure ledger of what a persistence pipeline
//! wrote, overwrote and deleted per storage account, and what that keeps costing.
//!
//! No I/O and no clock: events and the time are passed in. Bytes and times are integers
//! (exact); only money is floating point. Retention follows each account's policy as it
//! was when the data was deleted or overwritten (Azure: a changed period applies to data
//! deleted afterwards).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Points kept in an account's history of retained bytes (one per `HISTORY_STEP_MS`).
pub const HISTORY_POINTS_MAX: usize = 1440;
pub const HISTORY_STEP_MS: u64 = 60 * 1000;

/// What an account keeps after a delete or an overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Policy {
    /// Nothing: deleted bytes stop costing at once.
    None,
    /// Azure blob soft delete: retained for this many days after the delete or overwrite.
    SoftDelete { days: u64 },
    /// S3 versioning: noncurrent versions kept until a lifecycle rule expires them
    /// (`NoncurrentVersionExpiration`, counted from the successor, rounded up to the next
    /// midnight UTC), or forever without one.
    Versioning { noncurrent_expiry_days: Option<u64> },
}

/// Where an account's policy came from, for the report.
impl Policy {
    /// The policy in words: "soft delete for 7 days".
    pub fn describe(self) -> String {
        match self {
            Policy::None => "no retention".into(),
            Policy::SoftDelete { days } => format!("soft delete for {days} days"),
            Policy::Versioning {
                noncurrent_expiry_days: Some(days),
            } => format!("versioning, old versions expire after {days} days"),
            Policy::Versioning {
                noncurrent_expiry_days: None,
            } => "versioning, old versions kept forever".into(),
        }
    }
}

/// An account's display name without its endpoint ("azure:acct/container",
/// "s3:bucket"): the name says which account it is; the URL only adds noise.
pub fn short_name(account: &str) -> &str {
    account.split_once('@').map_or(account, |(name, _)| name)
}

/// Bytes as a person reads them: "512 B", "3.2 MiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A monthly cost as a person reads it: "$0.01/month", "under $0.01/month".
pub fn human_usd_month(usd: f64) -> String {
    if usd > 0.0 && usd < 0.005 {
        "under $0.01/month".into()
    } else {
        format!("${usd:.2}/month")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum PolicySource {
    /// Read from the store (blob service properties, bucket versioning and lifecycle).
    Reported,
    /// Declared by configuration for a store that does not report it.
    Declared,
    /// Neither: assumed off.
    Assumed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Write,
    Overwrite,
    Delete,
}

/// One object-store event (the blob pipeline's `BlobEvent`, without its types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub account: &'a str,
    pub key: &'a str,
    pub bytes: u64,
    pub kind: EventKind,
    pub at_ms: u64,
}

/// Prices in USD (approximate defaults: Azure Hot LRS, first tier, read 2026-11).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    pub storage_per_gib_month: f64,
    pub writes_per_10k: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            storage_per_gib_month: 0.020,
            writes_per_10k: 0.055,
        }
    }
}

/// Bytes kept after deletes and overwrites, by when they expire, with running totals: an
/// event and an expiry cost O(log n) however much is retained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RetainedSet {
    /// Expiry time -> (bytes, objects) expiring then.
    expiring: BTreeMap<u64, (u64, u64)>,
    /// (bytes, objects) kept forever (versioning without an expiry rule).
    forever: (u64, u64),
    bytes: u64,
    objects: u64,
}

impl RetainedSet {
    fn add(&mut self, bytes: u64, until_ms: Option<u64>) {
        let slot = match until_ms {
            Some(u) => self.expiring.entry(u).or_default(),
            None => &mut self.forever,
        };
        slot.0 += bytes;
        slot.1 += 1;
        self.bytes += bytes;
        self.objects += 1;
    }

    /// Drops what expires at or before `now_ms`; true if anything did.
    fn expire(&mut self, now_ms: u64) -> bool {
        let mut any = false;
        while let Some(entry) = self.expiring.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            let (bytes, objects) = entry.remove();
            self.bytes -= bytes;
            self.objects -= objects;
            any = true;
        }
        any
    }

    fn next_expiry_ms(&self) -> Option<u64> {
        self.expiring.keys().next().copied()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountLedger {
    policy: Policy,
    source: PolicySource,
    live: BTreeMap<String, u64>,
    retained: RetainedSet,
    writes: u64,
    written_bytes: u64,
    /// Bytes that became retained, and when the first event came: the churn rate.
    churned_bytes: u64,
    first_ms: Option<u64>,
    history: VecDeque<(u64, u64)>,
    /// Live bytes at the same times (absent from ledgers saved before it existed).
    #[serde(default)]
    live_history: VecDeque<(u64, u64)>,
}

impl AccountLedger {
    fn new(policy: Policy, source: PolicySource) -> Self {
        AccountLedger {
            policy,
            source,
            live: BTreeMap::new(),
            retained: RetainedSet::default(),
            writes: 0,
            written_bytes: 0,
            churned_bytes: 0,
            first_ms: None,
            history: VecDeque::new(),
            live_history: VecDeque::new(),
        }
    }

    fn retain(&mut self, bytes: u64, at_ms: u64) {
        let until_ms = match self.policy {
            Policy::None => return,
            Policy::SoftDelete { days } => Some(at_ms + days * DAY_MS),
            Policy::Versioning {
                noncurrent_expiry_days: None,
            } => None,
            Policy::Versioning {
                noncurrent_expiry_days: Some(days),
            } => {
                // Rounded up to the next midnight UTC, as S3's lifecycle does.
                Some((at_ms + days * DAY_MS).div_ceil(DAY_MS) * DAY_MS)
            }
        };
        self.churned_bytes += bytes;
        self.retained.add(bytes, until_ms);
    }

    fn retained_bytes(&self) -> u64 {
        self.retained.bytes
    }

    fn sample(&mut self, at_ms: u64) {
        let retained = self.retained_bytes();
        let live = self.live.values().sum();
        record(&mut self.history, at_ms, retained);
        record(&mut self.live_history, at_ms, live);
    }
}

/// Records `bytes` at `at_ms` in `history`: one point per `HISTORY_STEP_MS`, the last
/// value of the step kept, at most `HISTORY_POINTS_MAX` points.
fn record(history: &mut VecDeque<(u64, u64)>, at_ms: u64, bytes: u64) {
    match history.back_mut() {
        Some((t, b)) if at_ms.saturating_sub(*t) < HISTORY_STEP_MS => *b = bytes,
        _ => {
            if history.len() == HISTORY_POINTS_MAX {
                history.pop_front();
            }
            history.push_back((at_ms, bytes));
        }
    }
}

/// The ledger of every account. It serializes whole (serde), so that it can be kept
/// across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    accounts: BTreeMap<String, AccountLedger>,
    pub prices: Prices,
}

/// Severity of a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    pub level: Level,
    pub code: &'static str,
    pub message: String,
}

/// What an account holds and costs now, and where it is heading.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub account: String,
    pub policy: Policy,
    pub policy_source: PolicySource,
    pub live_bytes: u64,
    pub live_objects: usize,
    pub retained_bytes: u64,
    pub retained_objects: u64,
    /// When the next retained bytes expire (None: nothing expires).
    pub next_expiry_ms: Option<u64>,
    /// Retained bytes per live byte.
    pub retained_ratio: f64,
    /// Bytes becoming retained per second, since the first event.
    pub churn_bytes_per_sec: f64,
    /// Retained bytes once expiry balances churn (None: grows without bound).
    pub projected_retained_bytes: Option<u64>,
    pub monthly_cost_live: f64,
    pub monthly_cost_retained: f64,
    pub monthly_cost_writes: f64,
    /// [time, retained bytes] pairs, oldest first.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub history: Vec<(u64, u64)>,
    /// [time, live bytes] pairs at the same times.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub live_history: Vec<(u64, u64)>,
    pub warnings: Vec<Warning>,
}

impl Ledger {
    pub fn new(prices: Prices) -> Ledger {
        Ledger {
            accounts: BTreeMap::new(),
            prices,
        }
    }

    /// Sets an account's policy from now on (data already retained keeps its expiry).
    pub fn set_policy(&mut self, account: &str, policy: Policy, source: PolicySource) {
        let a = self
            .accounts
            .entry(account.to_string())
            .or_insert_with(|| AccountLedger::new(policy, source));
        a.policy = policy;
        a.source = source;
    }

    /// Records an event; an unknown account starts with no retention (assumed).
    pub fn apply(&mut self, e: &Event) {
        self.advance(e.at_ms);
        let a = self
            .accounts
            .entry(e.account.to_string())
            .or_insert_with(|| AccountLedger::new(Policy::None, PolicySource::Assumed));
        a.first_ms.get_or_insert(e.at_ms);
        match e.kind {
            EventKind::Write => {
                // A write over an existing key is an overwrite even if not reported as one.
                if let Some(old) = a.live.insert(e.key.to_string(), e.bytes) {
                    a.retain(old, e.at_ms);
                }
                a.writes += 1;
                a.written_bytes += e.bytes;
            }
            // The pipeline reports the replaced object before the write that replaces it:
            // the write retains it (above), so this only needs the key to be known.
            EventKind::Overwrite => {
                a.live.entry(e.key.to_string()).or_insert(e.bytes);
            }
            EventKind::Delete => {
                let bytes = a.live.remove(e.key).unwrap_or(e.bytes);
                a.retain(bytes, e.at_ms);
            }
        }
        a.sample(e.at_ms);
    }

    /// Expires retained bytes whose time has come (at `until_ms` exactly they are gone).
    pub fn advance(&mut self, now_ms: u64) {
        for a in self.accounts.values_mut() {
            if a.retained.expire(now_ms) {
                a.sample(now_ms);
            }
        }
    }

    /// An account's policy and where it came from, if the account is known.
    pub fn policy(&self, account: &str) -> Option<(Policy, PolicySource)> {
        self.accounts.get(account).map(|a| (a.policy, a.source))
    }

    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }

    pub fn report(&self, account: &str, now_ms: u64) -> Option<Report> {
        let a = self.accounts.get(account)?;
        let live: u64 = a.live.values().sum();
        let retained = a.retained_bytes();
        let elapsed_s = a.first_ms.map_or(0, |f| now_ms.saturating_sub(f)) as f64 / 1000.0;
        let churn = if elapsed_s > 0.0 {
            a.churned_bytes as f64 / elapsed_s
        } else {
            0.0
        };
        let projected = match a.policy {
            Policy::None => Some(0),
            Policy::SoftDelete { days }
            | Policy::Versioning {
                noncurrent_expiry_days: Some(days),
            } => Some((churn * (days * DAY_MS) as f64 / 1000.0) as u64),
            Policy::Versioning {
                noncurrent_expiry_days: None,
            } => None,
        };
        let month = |bytes: u64| bytes as f64 / GIB * self.prices.storage_per_gib_month;
        let writes_per_month = if elapsed_s > 0.0 {
            a.writes as f64 / elapsed_s * 30.0 * 86400.0
        } else {
            0.0
        };
        let ratio = if live > 0 {
            retained as f64 / live as f64
        } else if retained > 0 {
            f64::INFINITY
        } else {
            0.0
        };
        let mut warnings = Vec::new();
        let name = short_name(account);
        let (retained_h, live_h) = (human_bytes(retained), human_bytes(live));
        let fix = "shorten the retention, add a lifecycle rule expiring noncurrent versions, or use an account without soft delete for persistence";
        if a.policy != Policy::None {
            warnings.push(Warning {
                level: Level::Info,
                code: "RetentionOnPersistenceAccount",
                message: format!("{name} keeps deleted and overwritten persistence files ({}); they are billed like live data.", a.policy.describe()),
            });
        }
        if matches!(
            a.policy,
            Policy::Versioning {
                noncurrent_expiry_days: None
            }
        ) {
            warnings.push(Warning {
                level: Level::Warning,
                code: "VersioningWithoutExpiry",
                message: format!("{name} keeps every noncurrent version forever: retained bytes grow without bound; {fix}."),
            });
        }
        if ratio > 1.0 {
            warnings.push(Warning {
                level: Level::Critical,
                code: "RetainedExceedsLive",
                message: match live {
                    0 => format!("{name}: {retained_h} retained with no live data left, {}; {fix}.", human_usd_month(month(retained))),
                    _ => format!("{name}: {retained_h} retained, {ratio:.1}x the {live_h} of live data, {}; {fix}.", human_usd_month(month(retained))),
                },
            });
        } else if ratio > 0.10 {
            warnings.push(Warning {
                level: Level::Warning,
                code: "RetainedBytesHigh",
                message: format!("{name}: {retained_h} retained, {:.0}% of the {live_h} of live data, {}; {fix}.", ratio * 100.0, human_usd_month(month(retained))),
            });
        }
        Some(Report {
            account: account.to_string(),
            policy: a.policy,
            policy_source: a.source,
            live_bytes: live,
            live_objects: a.live.len(),
            retained_bytes: retained,
            retained_objects: a.retained.objects,
            next_expiry_ms: a.retained.next_expiry_ms(),
            retained_ratio: ratio,
            churn_bytes_per_sec: churn,
            projected_retained_bytes: projected,
            monthly_cost_live: month(live),
            monthly_cost_retained: month(retained),
            monthly_cost_writes: writes_per_month / 10_000.0 * self.prices.writes_per_10k,
            history: a.history.iter().copied().collect(),
            live_history: a.live_history.iter().copied().collect(),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, bytes: u64, kind: EventKind, at_ms: u64) -> Event<'_> {
        Event {
            account: "acct",
            key,
            bytes,
            kind,
            at_ms,
        }
    }

    #[test]
    fn soft_delete_retains_overwrites_and_deletes_until_the_boundary() {
        let mut l = Ledger::new(Prices::default());
        l.set_policy(
            "acct",
            Policy::SoftDelete { days: 7 },
            PolicySource::Declared,
        );
        l.apply(&ev("aof/manifest", 100, EventKind::Write, 0));
        // An overwrite as the pipeline reports it: the replaced size, then the write.
        l.apply(&ev("aof/manifest", 100, EventKind::Overwrite, 1_000));
        l.apply(&ev("aof/manifest", 120, EventKind::Write, 1_000));
        l.apply(&ev("aof/seg.1", 5_000, EventKind::Write, 2_000));
        l.apply(&ev("aof/seg.1", 5_000, EventKind::Delete, 3_000));
        let r = l.report("acct", 3_000).unwrap();
        assert_eq!((r.live_bytes, r.live_objects), (120, 1));
        assert_eq!((r.retained_bytes, r.retained_objects), (5_100, 2));
        assert_eq!(r.next_expiry_ms, Some(1_000 + 7 * DAY_MS));
        // One millisecond before the first expiry nothing changes; at it, the 100 bytes go.
        l.advance(1_000 + 7 * DAY_MS - 1);
        assert_eq!(l.report("acct", 0).unwrap().retained_bytes, 5_100);
        l.advance(1_000 + 7 * DAY_MS);
        assert_eq!(l.report("acct", 0).unwrap().retained_bytes, 5_000);
        l.advance(3_000 + 7 * DAY_MS);
        let r = l.report("acct", 3_000 + 7 * DAY_MS).unwrap();
        assert_eq!(r.retained_bytes, 0);
        assert_eq!(r.next_expiry_ms, None);
    }

    #[test]
    fn policy_changes_apply_to_data_deleted_afterwards() {
        let mut l = Ledger::new(Prices::default());
        l.set_policy(
            "acct",
            Policy::SoftDelete { days: 7 },
            PolicySource::Reported,
        );
        l.apply(&ev("a", 10, EventKind::Write, 0));
        l.apply(&ev("a", 10, EventKind::Delete, 0));
        l.set_policy(
            "acct",
            Policy::SoftDelete { days: 1 },
            PolicySource::Reported,
        );
        l.apply(&ev("b", 20, EventKind::Write, 0));
        l.apply(&ev("b", 20, EventKind::Delete, 0));
        l.advance(DAY_MS);
        assert_eq!(
            l.report("acct", DAY_MS).unwrap().retained_bytes,
            10,
            "b expired after 1 day, a keeps 7"
        );
        l.set_policy("acct", Policy::None, PolicySource::Reported);
        l.apply(&ev("c", 30, EventKind::Write, DAY_MS));
        l.apply(&ev("c", 30, EventKind::Delete, DAY_MS));
        assert_eq!(
            l.report("acct", DAY_MS).unwrap().retained_bytes,
            10,
            "no retention for c"
        );
    }

    #[test]
    fn versioning_expiry_rounds_to_midnight_and_none_keeps_forever() {
        let mut l = Ledger::new(Prices::default());
        l.set_policy(
            "acct",
            Policy::Versioning {
                noncurrent_expiry_days: Some(1),
            },
            PolicySource::Reported,
        );
        l.apply(&ev("k", 10, EventKind::Write, 0));
        l.apply(&ev("k", 10, EventKind::Write, DAY_MS / 2));
        let r = l.report("acct", DAY_MS / 2).unwrap();
        assert_eq!(
            r.next_expiry_ms,
            Some(2 * DAY_MS),
            "noon + 1 day, rounded up to midnight"
        );
        l.set_policy(
            "acct",
            Policy::Versioning {
                noncurrent_expiry_days: None,
            },
            PolicySource::Reported,
        );
        l.apply(&ev("k", 10, EventKind::Delete, DAY_MS));
        l.advance(1000 * DAY_MS);
        let r = l.report("acct", 1000 * DAY_MS).unwrap();
        assert_eq!(r.retained_bytes, 10);
        assert_eq!(r.projected_retained_bytes, None);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.code == "VersioningWithoutExpiry")
        );
    }

    #[test]
    fn steady_state_cost_and_warnings() {
        let mut l = Ledger::new(Prices {
            storage_per_gib_month: 0.02,
            writes_per_10k: 0.055,
        });
        l.set_policy(
            "acct",
            Policy::SoftDelete { days: 7 },
            PolicySource::Declared,
        );
        // 1 MiB segments written and retired every second for 100 s: 1 MiB/s of churn.
        let mib = 1024 * 1024;
        for s in 0..100u64 {
            let key = format!("seg.{s}");
            l.apply(&Event {
                account: "acct",
                key: &key,
                bytes: mib,
                kind: EventKind::Write,
                at_ms: s * 1000,
            });
            l.apply(&Event {
                account: "acct",
                key: &key,
                bytes: mib,
                kind: EventKind::Delete,
                at_ms: s * 1000 + 500,
            });
        }
        let r = l.report("acct", 100_000).unwrap();
        assert_eq!(r.retained_bytes, 100 * mib);
        assert!((r.churn_bytes_per_sec - mib as f64).abs() < 1.0);
        // 1 MiB/s x 7 days = 590,625 MiB, the brief's ~577 GiB figure for one set.
        assert_eq!(r.projected_retained_bytes, Some(7 * 86_400 * mib));
        assert!((r.monthly_cost_retained - 100.0 / 1024.0 * 0.02).abs() < 1e-9);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.level == Level::Critical && w.code == "RetainedExceedsLive")
        );
        assert_eq!(r.policy_source, PolicySource::Declared);
        assert!(!r.history.is_empty());
        assert_eq!(r.live_history.len(), r.history.len());
        // No retention, no warnings.
        let mut l = Ledger::new(Prices::default());
        l.apply(&ev("x", 5, EventKind::Write, 0));
        l.apply(&ev("x", 5, EventKind::Delete, 1));
        let r = l.report("acct", 2).unwrap();
        assert_eq!((r.retained_bytes, r.warnings.len()), (0, 0));
    }

    #[test]
    fn warnings_read_as_plain_words_with_sizes_and_money() {
        let acct = "azure:acct/cache@http://127.0.0.1:10000/acct";
        let mut l = Ledger::new(Prices::default());
        l.set_policy(acct, Policy::SoftDelete { days: 7 }, PolicySource::Reported);
        let mib = 1024 * 1024;
        l.apply(&Event {
            account: acct,
            key: "live",
            bytes: mib,
            kind: EventKind::Write,
            at_ms: 0,
        });
        for (i, bytes) in [2 * mib, mib + mib / 5].into_iter().enumerate() {
            let key = format!("old.{i}");
            for kind in [EventKind::Write, EventKind::Delete] {
                l.apply(&Event {
                    account: acct,
                    key: &key,
                    bytes,
                    kind,
                    at_ms: 1,
                });
            }
        }
        let r = l.report(acct, 2).unwrap();
        let texts: Vec<&str> = r.warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(
            texts[0].starts_with("azure:acct/cache keeps deleted and overwritten persistence files (soft delete for 7 days)"),
            "{texts:?}"
        );
        assert!(
            texts[1].starts_with("azure:acct/cache: 3.2 MiB retained, 3.2x the 1.0 MiB of live data, under $0.01/month;"),
            "{texts:?}"
        );
        for t in texts {
            assert!(!t.contains("http") && !t.contains('{'), "{t}");
        }
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_usd_month(12.345), "$12.35/month");
        assert_eq!(short_name("s3:bucket@http://h:9000"), "s3:bucket");
        assert_eq!(short_name("local:/var/lib/x"), "local:/var/lib/x");
    }

    #[test]
    fn a_saved_ledger_comes_back_equal_and_keeps_expiring() {
        let mut l = Ledger::new(Prices::default());
        l.set_policy(
            "acct",
            Policy::SoftDelete { days: 1 },
            PolicySource::Reported,
        );
        l.apply(&ev("a", 10, EventKind::Write, 0));
        l.apply(&ev("a", 10, EventKind::Delete, 5));
        let text = serde_json::to_string(&l).unwrap();
        let mut back: Ledger = serde_json::from_str(&text).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.report("acct", 6).unwrap().retained_bytes, 10);
        back.advance(5 + DAY_MS);
        assert_eq!(back.report("acct", 5 + DAY_MS).unwrap().retained_bytes, 0);
    }
}
