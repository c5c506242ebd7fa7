//! The soft-delete accounting of every cache: its nodes' object-store events and its
//! accounts' retention policies go into one pure ledger per cache, on the cache's simulated
//! clock (`cacheplane-time-scale`). The whole set serializes, so the control plane keeps it
//! across restarts next to the resource store.

use std::collections::{BTreeMap, HashMap};

use control::model::Cache;
use serde::{Deserialize, Serialize};

use crate::supervisor::Found;

/// Every cache's ledger, by store key.
#[derive(Default, Serialize, Deserialize)]
pub struct Ledgers {
    caches: BTreeMap<String, CacheLedger>,
    /// Changed since [`Ledgers::take_changes`] last saved it.
    #[serde(skip)]
    dirty: bool,
}

/// A cache's ledger and its simulated clock.
#[derive(Serialize, Deserialize)]
struct CacheLedger {
    ledger: accounting::Ledger,
    origin_ms: u64,
    scale: u64,
    /// Per account, where its policy came from, in words (the report's `policyDetail`).
    #[serde(default)]
    details: BTreeMap<String, String>,
}

impl CacheLedger {
    fn new(cache: &Cache, now_ms: u64) -> CacheLedger {
        CacheLedger {
            ledger: accounting::Ledger::new(accounting::Prices::default()),
            origin_ms: now_ms,
            scale: cache
                .redis_configuration
                .get("cacheplane-time-scale")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
            details: BTreeMap::new(),
        }
    }

    fn sim_ms(&self, wall_ms: u64) -> u64 {
        self.origin_ms + wall_ms.saturating_sub(self.origin_ms) * self.scale
    }

    /// Sets an account's policy; true if it changed.
    fn set_policy(&mut self, account: &str, (policy, source, detail): Decided) -> bool {
        let changed = self.ledger.policy(account) != Some((policy, source))
            || self.details.get(account) != Some(&detail);
        if changed {
            self.ledger.set_policy(account, policy, source);
            self.details.insert(account.to_string(), detail);
        }
        changed
    }
}

type Decided = (accounting::Policy, accounting::PolicySource, String);

/// The retention a cache declares for its accounts (`cacheplane-soft-delete-days`,
/// `cacheplane-versioning-expiry-days`: a number or `none`).
fn declared(cache: &Cache) -> Option<(accounting::Policy, &'static str)> {
    let c = &cache.redis_configuration;
    if let Some(days) = c
        .get("cacheplane-soft-delete-days")
        .and_then(|d| d.parse().ok())
    {
        return Some((
            accounting::Policy::SoftDelete { days },
            "cacheplane-soft-delete-days",
        ));
    }
    c.get("cacheplane-versioning-expiry-days").map(|v| {
        (
            accounting::Policy::Versioning {
                noncurrent_expiry_days: v.parse().ok(),
            },
            "cacheplane-versioning-expiry-days",
        )
    })
}

fn policy_of(r: blob::Retention) -> accounting::Policy {
    match r {
        blob::Retention::None => accounting::Policy::None,
        blob::Retention::SoftDelete { days } => accounting::Policy::SoftDelete { days },
        blob::Retention::Versioning {
            noncurrent_expiry_days,
        } => accounting::Policy::Versioning {
            noncurrent_expiry_days,
        },
    }
}

/// An account's policy: what the cache declares overrides what the store reports; with
/// neither, retention is assumed off.
fn decide(cache: &Cache, found: Option<&Found>) -> Decided {
    let reported = match found {
        Some(Found {
            retention: Some(r),
            detail,
        }) => Some((policy_of(*r), detail.clone())),
        _ => None,
    };
    let why_not = found.map_or("not read from the store yet", |f| f.detail.as_str());
    match (declared(cache), reported) {
        (Some((p, key)), Some((r, detail))) => (
            p,
            accounting::PolicySource::Declared,
            format!("declared by redisConfiguration {key}; the store reports {r:?} ({detail})"),
        ),
        (Some((p, key)), None) => (
            p,
            accounting::PolicySource::Declared,
            format!("declared by redisConfiguration {key}; {why_not}"),
        ),
        (None, Some((r, detail))) => (r, accounting::PolicySource::Reported, detail),
        (None, None) => (
            accounting::Policy::None,
            accounting::PolicySource::Assumed,
            why_not.to_string(),
        ),
    }
}

impl Ledgers {
    /// Applies what the nodes reported since the last call: policies read from their
    /// accounts and object-store events; then moves every clock to `now_ms`.
    pub fn update(
        &mut self,
        caches: impl Fn(&str) -> Option<Cache>,
        policies: &HashMap<String, HashMap<String, Found>>,
        events: Vec<(String, Vec<blob::BlobEvent>)>,
        now_ms: u64,
    ) {
        let mut changed = false;
        let mut events: HashMap<String, Vec<blob::BlobEvent>> = events.into_iter().collect();
        let keys: std::collections::BTreeSet<String> =
            policies.keys().chain(events.keys()).cloned().collect();
        for k in keys {
            let Some(cache) = caches(&k) else { continue };
            let l = self
                .caches
                .entry(k.clone())
                .or_insert_with(|| CacheLedger::new(&cache, now_ms));
            let found = policies.get(&k);
            for (account, f) in found.into_iter().flatten() {
                changed |= l.set_policy(account, decide(&cache, Some(f)));
            }
            for e in events.remove(&k).unwrap_or_default() {
                if l.ledger.policy(&e.account).is_none() {
                    l.set_policy(&e.account, decide(&cache, None));
                }
                let kind = match e.kind {
                    blob::EventKind::Write => accounting::EventKind::Write,
                    blob::EventKind::Overwrite => accounting::EventKind::Overwrite,
                    blob::EventKind::Delete => accounting::EventKind::Delete,
                };
                let at_ms = l.sim_ms(e.at_unix_ms);
                l.ledger.apply(&accounting::Event {
                    account: &e.account,
                    key: &e.key,
                    bytes: e.bytes,
                    kind,
                    at_ms,
                });
                changed = true;
            }
        }
        for l in self.caches.values_mut() {
            let t = l.sim_ms(now_ms);
            l.ledger.advance(t);
        }
        self.dirty |= changed;
    }

    /// Forgets a deleted cache.
    pub fn remove(&mut self, key: &str) {
        self.dirty |= self.caches.remove(key).is_some();
    }

    /// The whole set as JSON, if it changed since the last call.
    pub fn take_changes(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.dirty)
            .then(|| serde_json::to_vec(self).expect("the ledgers serialize"))
    }

    /// The reports of a cache's accounts, as the API shows them.
    pub fn reports(&self, key: &str, now_ms: u64) -> Vec<AccountReport> {
        let Some(l) = self.caches.get(key) else {
            return Vec::new();
        };
        let now = l.sim_ms(now_ms);
        l.ledger
            .accounts()
            .filter_map(|a| l.ledger.report(a, now))
            .map(|report| AccountReport {
                policy_detail: l.details.get(&report.account).cloned().unwrap_or_default(),
                report,
            })
            .collect()
    }
}

/// One storage account across the caches of a subscription that persist into it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountTotal {
    pub account: String,
    pub caches: Vec<CacheShare>,
    pub live_bytes: u64,
    pub retained_bytes: u64,
    /// Sum of the caches' steady states (null: one of them grows without bound).
    pub projected_retained_bytes: Option<u64>,
    pub monthly_cost_live: f64,
    pub monthly_cost_retained: f64,
    pub monthly_cost_writes: f64,
    pub warnings: usize,
}

/// A cache's part of an account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheShare {
    /// The cache's resource id (lower case, as ARM compares ids).
    pub cache: String,
    pub policy: accounting::Policy,
    pub policy_source: accounting::PolicySource,
    pub live_bytes: u64,
    pub retained_bytes: u64,
}

/// The subscription-wide `storageReport` (cacheplane's extension): per storage account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountsReport {
    pub prices: accounting::Prices,
    pub accounts: Vec<AccountTotal>,
}

/// `storageReport`'s answer (cacheplane's extension): per account of the cache, what it
/// holds, retains and costs, with the history of retained bytes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StorageReport {
    pub prices: accounting::Prices,
    pub accounts: Vec<AccountReport>,
}

impl Ledgers {
    /// Per storage account, the sums over the caches whose key `in_scope` accepts.
    pub fn totals(&self, in_scope: impl Fn(&str) -> bool, now_ms: u64) -> Vec<AccountTotal> {
        let mut by_account: BTreeMap<String, AccountTotal> = BTreeMap::new();
        for (key, l) in self.caches.iter().filter(|(k, _)| in_scope(k)) {
            let now = l.sim_ms(now_ms);
            for r in l.ledger.accounts().filter_map(|a| l.ledger.report(a, now)) {
                let t = by_account
                    .entry(r.account.clone())
                    .or_insert_with(|| AccountTotal {
                        account: r.account.clone(),
                        caches: Vec::new(),
                        live_bytes: 0,
                        retained_bytes: 0,
                        projected_retained_bytes: Some(0),
                        monthly_cost_live: 0.0,
                        monthly_cost_retained: 0.0,
                        monthly_cost_writes: 0.0,
                        warnings: 0,
                    });
                t.live_bytes += r.live_bytes;
                t.retained_bytes += r.retained_bytes;
                t.projected_retained_bytes = t
                    .projected_retained_bytes
                    .zip(r.projected_retained_bytes)
                    .map(|(a, b)| a + b);
                t.monthly_cost_live += r.monthly_cost_live;
                t.monthly_cost_retained += r.monthly_cost_retained;
                t.monthly_cost_writes += r.monthly_cost_writes;
                t.warnings += r.warnings.len();
                t.caches.push(CacheShare {
                    cache: key.clone(),
                    policy: r.policy,
                    policy_source: r.policy_source,
                    live_bytes: r.live_bytes,
                    retained_bytes: r.retained_bytes,
                });
            }
        }
        by_account.into_values().collect()
    }
}

/// One account's report with where its policy came from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountReport {
    #[serde(flatten)]
    pub report: accounting::Report,
    pub policy_detail: String,
}
