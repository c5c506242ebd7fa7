//! A cache's memory and connection limits as Azure Cache for Redis sets them: each SKU's
//! size and `maxclients`, the memory settings a customer may give in `redisConfiguration`
//! (`maxmemory-policy`, `maxmemory-reserved`, `maxfragmentationmemory-reserved` and its
//! older twin `maxmemory-delta`), and the `maxmemory` the cache's node gets from them.
//! cacheplane adds `cacheplane-memory-scale`, which shrinks that size so a laptop can run a
//! P5, and reports the bytes the node actually got as `cacheplane-maxmemory-bytes`.
//!
//! Azure's rules, from Microsoft's docs (azure-docs `cache-configure.md` and
//! `cache-best-practices-memory-management.md`, 2025-04):
//! - the reservations are MB per node, 10% of the cache size each by default; values below
//!   10% or above 60% "are reevaluated and set to the 10% minimum and 60% maximum" (clamped,
//!   not refused); both only for Standard and Premium caches;
//! - both are unavailable for data: "a 53-GB cache with the reserved values set to the 10%
//!   minimums" has "approximately 42 GB" for data, so the node's `maxmemory` is the size
//!   less both reservations;
//! - scaling the SKU scales the reservations in proportion, and a scaling request's own
//!   reservation values are ignored;
//! - `maxclients` is the SKU's and read-only; `maxmemory-policy` defaults to `volatile-lru`
//!   and `maxmemory-samples` is 3.

use std::collections::BTreeMap;

use crate::ArmError;
use crate::model::{Sku, SkuFamily, SkuName};

pub const MIB_BYTES: u64 = 1024 * 1024;

/// `redisConfiguration` keys.
pub const POLICY: &str = "maxmemory-policy";
pub const RESERVED: &str = "maxmemory-reserved";
pub const FRAGMENTATION_RESERVED: &str = "maxfragmentationmemory-reserved";
/// Azure's older name of `maxmemory-reserved` (the REST spec describes both alike, and
/// Azure's GET reports them equal): accepted as it, reported with its value.
pub const DELTA: &str = "maxmemory-delta";
/// Read-only: the SKU's.
pub const MAXCLIENTS: &str = "maxclients";
/// cacheplane's: the share of the SKU's memory the node gets (0 < scale <= 1).
pub const SCALE: &str = "cacheplane-memory-scale";
/// cacheplane's, read-only: the node's `maxmemory` in bytes, reservations and scale applied.
pub const MAXMEMORY_BYTES: &str = "cacheplane-maxmemory-bytes";

/// Keys GET reports that a request cannot set: given ones are ignored, as ARM ignores
/// read-only properties (a GET body sent back must not fail).
pub const READ_ONLY_KEYS: &[&str] = &[MAXCLIENTS, MAXMEMORY_BYTES];
/// Keys a running node takes without a restart.
pub const LIVE_KEYS: &[&str] = &[
    POLICY,
    RESERVED,
    FRAGMENTATION_RESERVED,
    DELTA,
    SCALE,
    MAXCLIENTS,
    MAXMEMORY_BYTES,
];

/// The eviction policies Azure offers (Redis's eight).
pub const POLICIES: &[&str] = &[
    "volatile-lru",
    "allkeys-lru",
    "volatile-lfu",
    "allkeys-lfu",
    "volatile-random",
    "allkeys-random",
    "volatile-ttl",
    "noeviction",
];
pub const POLICY_DEFAULT: &str = "volatile-lru";
/// Keys the eviction samples per choice: Azure's default (Redis's is 5).
pub const SAMPLES: u32 = 3;

/// Each reservation's default and lower bound, in percent of the cache size.
const RESERVED_MIN_PERCENT: u64 = 10;
/// Each reservation's upper bound, in percent of the cache size.
const RESERVED_MAX_PERCENT: u64 = 60;
/// The smallest `maxmemory` a node may get: below it a node holds next to nothing, and a
/// scale that rounds to 0 would mean "no limit" to Redis.
pub const MAXMEMORY_MIN_BYTES: u64 = MIB_BYTES;

/// One size of cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkuLimits {
    /// The size Azure sells, in MB of 2^20 bytes (Redis's `mb`).
    pub memory_mb: u64,
    pub maxclients: u32,
}

const fn limits(memory_mb: u64, maxclients: u32) -> SkuLimits {
    SkuLimits {
        memory_mb,
        maxclients,
    }
}

/// Azure's table (cache-configure.md): C sizes for Basic and Standard, P for Premium.
const SKUS: &[(SkuFamily, i64, SkuLimits)] = &[
    (SkuFamily::C, 0, limits(250, 256)),
    (SkuFamily::C, 1, limits(1024, 1_000)),
    (SkuFamily::C, 2, limits(2560, 2_000)),
    (SkuFamily::C, 3, limits(6 * 1024, 5_000)),
    (SkuFamily::C, 4, limits(13 * 1024, 10_000)),
    (SkuFamily::C, 5, limits(26 * 1024, 15_000)),
    (SkuFamily::C, 6, limits(53 * 1024, 20_000)),
    (SkuFamily::P, 1, limits(6 * 1024, 7_500)),
    (SkuFamily::P, 2, limits(13 * 1024, 15_000)),
    (SkuFamily::P, 3, limits(26 * 1024, 30_000)),
    (SkuFamily::P, 4, limits(53 * 1024, 40_000)),
    (SkuFamily::P, 5, limits(120 * 1024, 40_000)),
];

/// The size and client limit of `sku` (None for a family and capacity Azure does not sell).
pub fn sku_limits(sku: &Sku) -> Option<SkuLimits> {
    SKUS.iter()
        .find(|(family, capacity, _)| *family == sku.family && *capacity == sku.capacity)
        .map(|(_, _, l)| *l)
}

/// What a cache's memory settings come to.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// The SKU's size.
    pub size_mb: u64,
    /// `maxmemory-reserved` after Azure's bounds.
    pub reserved_mb: u64,
    /// `maxfragmentationmemory-reserved` after Azure's bounds.
    pub fragmentation_reserved_mb: u64,
    /// `cacheplane-memory-scale` (1 without it).
    pub scale: f64,
    /// The node's `maxmemory`: (size - both reservations) * scale.
    pub maxmemory_bytes: u64,
    pub policy: String,
    pub maxclients: u32,
}

impl Memory {
    /// The node settings (CONFIG SET names and values) these come to.
    pub fn node_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("maxmemory", self.maxmemory_bytes.to_string()),
            ("maxmemory-policy", self.policy.clone()),
            ("maxmemory-samples", SAMPLES.to_string()),
            ("maxclients", self.maxclients.to_string()),
        ]
    }

    /// What GET adds to `redisConfiguration`: Azure's reported values (`maxmemory-policy`
    /// only when given, as Azure) and the bytes the node got.
    pub fn reported(&self) -> Vec<(&'static str, String)> {
        vec![
            (MAXCLIENTS, self.maxclients.to_string()),
            (RESERVED, self.reserved_mb.to_string()),
            (DELTA, self.reserved_mb.to_string()),
            (
                FRAGMENTATION_RESERVED,
                self.fragmentation_reserved_mb.to_string(),
            ),
            (MAXMEMORY_BYTES, self.maxmemory_bytes.to_string()),
        ]
    }
}

fn target(key: &str) -> String {
    format!("properties.redisConfiguration.{key}")
}

fn invalid(key: &str, message: String) -> ArmError {
    ArmError::bad_request("InvalidRedisConfiguration", target(key), message)
}

/// Takes the memory keys of a request's `redisConfiguration` as Azure does: read-only keys
/// are dropped, and `maxmemory-delta` is stored as `maxmemory-reserved` (the two differing
/// is refused: which one was meant?).
pub fn accept(given: &mut BTreeMap<String, String>) -> Result<(), ArmError> {
    for key in READ_ONLY_KEYS {
        given.remove(*key);
    }
    if let Some(delta) = given.remove(DELTA) {
        match given.get(RESERVED) {
            None => {
                given.insert(RESERVED.to_string(), delta);
            }
            Some(reserved) if *reserved == delta => {}
            Some(reserved) => {
                return Err(invalid(
                    DELTA,
                    format!(
                        "'{DELTA}' is another name for '{RESERVED}'; they were given different values ('{delta}' and '{reserved}'). Give one of them."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A scaling request (a PATCH of the SKU from `from` to `to`): the reservations it gives
/// are ignored, and those the cache has scale with its size (Basic has none to keep).
pub fn rescale(
    given: &mut BTreeMap<String, String>,
    config: &mut BTreeMap<String, String>,
    from: &Sku,
    to: &Sku,
) {
    given.remove(RESERVED);
    given.remove(FRAGMENTATION_RESERVED);
    let (Some(old), Some(new)) = (sku_limits(from), sku_limits(to)) else {
        return;
    };
    for key in [RESERVED, FRAGMENTATION_RESERVED] {
        if to.name == SkuName::Basic {
            config.remove(key);
            continue;
        }
        if let Some(mb) = config.get(key).and_then(|v| v.parse::<u64>().ok()) {
            let scaled = mb * new.memory_mb / old.memory_mb;
            config.insert(key.to_string(), scaled.to_string());
        }
    }
}

/// Whether changing `redisConfiguration` from `old` to `new` needs the node restarted: any
/// change outside the memory settings, which a running node takes live.
pub fn restarts(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> bool {
    old.keys()
        .chain(new.keys())
        .filter(|k| !LIVE_KEYS.contains(&k.as_str()))
        .any(|k| old.get(k) != new.get(k))
}

/// Checks the memory settings of a cache of `sku` and stores the reservations as Azure
/// settles them (within 10-60% of the size), so GET reports what applies.
pub fn settle(sku: &Sku, config: &mut BTreeMap<String, String>) -> Result<Memory, ArmError> {
    let memory = resolve(sku, config)?;
    for (key, mb) in [
        (RESERVED, memory.reserved_mb),
        (FRAGMENTATION_RESERVED, memory.fragmentation_reserved_mb),
    ] {
        if config.contains_key(key) {
            config.insert(key.to_string(), mb.to_string());
        }
    }
    Ok(memory)
}

/// What the memory settings of a cache of `sku` come to, or the refusal of the first bad one.
pub fn resolve(sku: &Sku, config: &BTreeMap<String, String>) -> Result<Memory, ArmError> {
    let limits = sku_limits(sku).ok_or_else(|| {
        ArmError::bad_request(
            "InvalidSkuCapacity",
            "properties.sku.capacity",
            format!(
                "The capacity {} is not valid for SKU family '{:?}'.",
                sku.capacity, sku.family
            ),
        )
    })?;
    let size_mb = limits.memory_mb;
    let policy = match config.get(POLICY) {
        None => POLICY_DEFAULT.to_string(),
        Some(p) if POLICIES.contains(&p.as_str()) => p.clone(),
        Some(p) => {
            return Err(invalid(
                POLICY,
                format!(
                    "The value '{p}' of '{POLICY}' is invalid; use one of {}.",
                    POLICIES.join(", ")
                ),
            ));
        }
    };
    let bounds_mb = (
        size_mb * RESERVED_MIN_PERCENT / 100,
        size_mb * RESERVED_MAX_PERCENT / 100,
    );
    // Records from before `accept` may hold the older name only.
    let reserved = config.get(RESERVED).or_else(|| config.get(DELTA));
    let reserved_mb = reservation(sku, RESERVED, reserved, bounds_mb)?;
    let fragmentation_reserved_mb = reservation(
        sku,
        FRAGMENTATION_RESERVED,
        config.get(FRAGMENTATION_RESERVED),
        bounds_mb,
    )?;
    if reserved_mb + fragmentation_reserved_mb >= size_mb {
        return Err(invalid(
            FRAGMENTATION_RESERVED,
            format!(
                "'{RESERVED}' ({reserved_mb} MB) and '{FRAGMENTATION_RESERVED}' ({fragmentation_reserved_mb} MB) together leave no memory for data in a {size_mb} MB cache."
            ),
        ));
    }
    let scale = match config.get(SCALE) {
        None => 1.0,
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1.0)
            .ok_or_else(|| {
                invalid(
                    SCALE,
                    format!(
                        "The value '{v}' of '{SCALE}' is invalid; use a number above 0 and at most 1 (the share of the SKU's memory the cache gets, e.g. '0.001')."
                    ),
                )
            })?,
    };
    let data_bytes = (size_mb - reserved_mb - fragmentation_reserved_mb) * MIB_BYTES;
    let maxmemory_bytes = (data_bytes as f64 * scale).floor() as u64;
    if maxmemory_bytes < MAXMEMORY_MIN_BYTES {
        return Err(invalid(
            SCALE,
            format!(
                "'{SCALE}' {scale} leaves the cache {maxmemory_bytes} bytes; it needs at least {MAXMEMORY_MIN_BYTES}."
            ),
        ));
    }
    Ok(Memory {
        size_mb,
        reserved_mb,
        fragmentation_reserved_mb,
        scale,
        maxmemory_bytes,
        policy,
        maxclients: limits.maxclients,
    })
}

/// One reservation in MB: the default without a value, else the value within `bounds_mb`.
fn reservation(
    sku: &Sku,
    key: &str,
    value: Option<&String>,
    (min_mb, max_mb): (u64, u64),
) -> Result<u64, ArmError> {
    let Some(v) = value else {
        return Ok(min_mb);
    };
    let mb = v.trim().parse::<u64>().map_err(|_| {
        invalid(
            key,
            format!("The value '{v}' of '{key}' is invalid; use a whole number of MB."),
        )
    })?;
    // A Basic cache's GET body sent back carries the defaults: that is no change.
    if sku.name == SkuName::Basic && mb != min_mb {
        return Err(invalid(
            key,
            format!("'{key}' can only be set on Standard and Premium caches."),
        ));
    }
    Ok(mb.clamp(min_mb, max_mb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::config;

    fn sku(name: SkuName, capacity: i64) -> Sku {
        let family = match name {
            SkuName::Premium => SkuFamily::P,
            _ => SkuFamily::C,
        };
        Sku {
            name,
            family,
            capacity,
        }
    }

    #[test]
    fn the_sku_table_is_azures() {
        // (name, capacity, MB, maxclients)
        let table: &[(SkuName, i64, u64, u32)] = &[
            (SkuName::Basic, 0, 250, 256),
            (SkuName::Standard, 1, 1024, 1_000),
            (SkuName::Standard, 2, 2560, 2_000),
            (SkuName::Basic, 3, 6144, 5_000),
            (SkuName::Standard, 4, 13312, 10_000),
            (SkuName::Standard, 5, 26624, 15_000),
            (SkuName::Standard, 6, 54272, 20_000),
            (SkuName::Premium, 1, 6144, 7_500),
            (SkuName::Premium, 2, 13312, 15_000),
            (SkuName::Premium, 3, 26624, 30_000),
            (SkuName::Premium, 4, 54272, 40_000),
            (SkuName::Premium, 5, 122880, 40_000),
        ];
        for &(name, capacity, mb, clients) in table {
            let s = sku(name, capacity);
            assert_eq!(sku_limits(&s), Some(limits(mb, clients)), "{s:?}");
            let m = resolve(&s, &BTreeMap::new()).unwrap();
            let reserved = mb / 10;
            assert_eq!(
                (m.reserved_mb, m.fragmentation_reserved_mb),
                (reserved, reserved)
            );
            assert_eq!(m.maxmemory_bytes, (mb - 2 * reserved) * MIB_BYTES, "{s:?}");
            assert_eq!(m.policy, "volatile-lru");
            assert_eq!(m.maxclients, clients);
        }
        assert_eq!(sku_limits(&sku(SkuName::Premium, 6)), None);
        assert_eq!(sku_limits(&sku(SkuName::Standard, 7)), None);
    }

    #[test]
    fn memory_settings_follow_azures_rules() {
        let p1 = sku(SkuName::Premium, 1); // 6144 MB: reservations 614..=3686
        let c0 = sku(SkuName::Standard, 0); // 250 MB: reservations 25..=150
        // (sku, settings, reserved, fragmentation reserved, maxmemory bytes, policy)
        type Case<'a> = (&'a Sku, &'a [(&'a str, &'a str)], u64, u64, u64, &'a str);
        let ok: &[Case] = &[
            (&c0, &[], 25, 25, 200 * MIB_BYTES, "volatile-lru"),
            (
                &c0,
                &[("maxmemory-policy", "allkeys-lru")],
                25,
                25,
                200 * MIB_BYTES,
                "allkeys-lru",
            ),
            (
                &c0,
                &[("maxmemory-reserved", "50")],
                50,
                25,
                175 * MIB_BYTES,
                "volatile-lru",
            ),
            // Outside 10-60%: clamped, as Azure "reevaluates" them.
            (
                &c0,
                &[("maxmemory-reserved", "1")],
                25,
                25,
                200 * MIB_BYTES,
                "volatile-lru",
            ),
            (
                &c0,
                &[("maxfragmentationmemory-reserved", "1000")],
                25,
                150,
                75 * MIB_BYTES,
                "volatile-lru",
            ),
            // Records from before maxmemory-delta was folded in.
            (
                &p1,
                &[("maxmemory-delta", "1000")],
                1000,
                614,
                4530 * MIB_BYTES,
                "volatile-lru",
            ),
            (
                &c0,
                &[("cacheplane-memory-scale", "0.5")],
                25,
                25,
                100 * MIB_BYTES,
                "volatile-lru",
            ),
            (
                &p1,
                &[("cacheplane-memory-scale", "0.001")],
                614,
                614,
                ((6144 - 1228) * MIB_BYTES) / 1000,
                "volatile-lru",
            ),
        ];
        for &(s, pairs, reserved, frag, bytes, policy) in ok {
            let m = resolve(s, &config(pairs)).unwrap();
            assert_eq!(
                (
                    m.reserved_mb,
                    m.fragmentation_reserved_mb,
                    m.maxmemory_bytes,
                    m.policy.as_str()
                ),
                (reserved, frag, bytes, policy),
                "{pairs:?}"
            );
        }
        let basic = sku(SkuName::Basic, 0);
        // Refused, naming the key.
        // (sku, settings, the key named)
        type Bad<'a> = (&'a Sku, &'a [(&'a str, &'a str)], &'a str);
        let bad: &[Bad] = &[
            (&c0, &[("maxmemory-policy", "lru")], "maxmemory-policy"),
            (
                &c0,
                &[("maxmemory-policy", "ALLKEYS-LRU")],
                "maxmemory-policy",
            ),
            (&c0, &[("maxmemory-reserved", "lots")], "maxmemory-reserved"),
            (&c0, &[("maxmemory-reserved", "-5")], "maxmemory-reserved"),
            (
                &c0,
                &[("maxfragmentationmemory-reserved", "12.5")],
                "maxfragmentationmemory-reserved",
            ),
            (
                &c0,
                &[
                    ("maxmemory-reserved", "150"),
                    ("maxfragmentationmemory-reserved", "100"),
                ],
                "maxfragmentationmemory-reserved",
            ),
            (
                &basic,
                &[("maxmemory-reserved", "50")],
                "maxmemory-reserved",
            ),
            (
                &c0,
                &[("cacheplane-memory-scale", "0")],
                "cacheplane-memory-scale",
            ),
            (
                &c0,
                &[("cacheplane-memory-scale", "1.5")],
                "cacheplane-memory-scale",
            ),
            (
                &c0,
                &[("cacheplane-memory-scale", "-1")],
                "cacheplane-memory-scale",
            ),
            (
                &c0,
                &[("cacheplane-memory-scale", "NaN")],
                "cacheplane-memory-scale",
            ),
            (
                &c0,
                &[("cacheplane-memory-scale", "half")],
                "cacheplane-memory-scale",
            ),
            // 200 MB * 0.000001 is 209 bytes: too small to be a cache.
            (
                &c0,
                &[("cacheplane-memory-scale", "0.000001")],
                "cacheplane-memory-scale",
            ),
        ];
        for &(s, pairs, key) in bad {
            let e = resolve(s, &config(pairs)).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.target.as_deref()),
                (
                    400,
                    "InvalidRedisConfiguration",
                    Some(format!("properties.redisConfiguration.{key}").as_str())
                ),
                "{pairs:?}: {}",
                e.message
            );
        }
        // A Basic cache's GET body sent back (the defaults) is no change.
        assert!(resolve(&basic, &config(&[("maxmemory-reserved", "25")])).is_ok());
    }

    #[test]
    fn settle_stores_what_applies_and_get_reports_it() {
        let c1 = sku(SkuName::Standard, 1);
        let mut c = config(&[
            ("maxmemory-reserved", "5"),
            ("maxmemory-policy", "noeviction"),
        ]);
        let m = settle(&c1, &mut c).unwrap();
        assert_eq!(c["maxmemory-reserved"], "102", "clamped to 10% of 1024 MB");
        assert!(!c.contains_key("maxfragmentationmemory-reserved"));
        let reported: BTreeMap<_, _> = m.reported().into_iter().collect();
        assert_eq!(reported["maxclients"], "1000");
        assert_eq!(reported["maxmemory-delta"], "102");
        assert_eq!(reported["maxfragmentationmemory-reserved"], "102");
        assert_eq!(
            reported["cacheplane-maxmemory-bytes"],
            ((1024 - 204) * MIB_BYTES).to_string()
        );
        let node: BTreeMap<_, _> = m.node_settings().into_iter().collect();
        assert_eq!(node["maxmemory-policy"], "noeviction");
        assert_eq!(node["maxmemory-samples"], "3");
        assert_eq!(node["maxclients"], "1000");
    }

    #[test]
    fn requests_drop_read_only_keys_and_fold_the_delta() {
        let mut given = config(&[
            ("maxclients", "50000"),
            ("cacheplane-maxmemory-bytes", "1"),
            ("maxmemory-delta", "300"),
        ]);
        accept(&mut given).unwrap();
        assert_eq!(given, config(&[("maxmemory-reserved", "300")]));
        let mut same = config(&[("maxmemory-delta", "300"), ("maxmemory-reserved", "300")]);
        accept(&mut same).unwrap();
        assert_eq!(same, config(&[("maxmemory-reserved", "300")]));
        let mut differ = config(&[("maxmemory-delta", "300"), ("maxmemory-reserved", "200")]);
        let e = accept(&mut differ).unwrap_err();
        assert_eq!(
            e.target.as_deref(),
            Some("properties.redisConfiguration.maxmemory-delta")
        );
    }

    #[test]
    fn scaling_scales_the_reservations_and_ignores_the_requests() {
        let (c0, c1) = (sku(SkuName::Standard, 0), sku(SkuName::Standard, 1));
        let mut given = config(&[
            ("maxmemory-reserved", "999"),
            ("maxmemory-policy", "noeviction"),
        ]);
        let mut stored = config(&[("maxmemory-reserved", "50")]);
        rescale(&mut given, &mut stored, &c0, &c1);
        assert_eq!(given, config(&[("maxmemory-policy", "noeviction")]));
        assert_eq!(
            stored,
            config(&[("maxmemory-reserved", "204")]),
            "50 * 1024 / 250"
        );
        let mut to_basic = config(&[("maxfragmentationmemory-reserved", "204")]);
        rescale(
            &mut BTreeMap::new(),
            &mut to_basic,
            &c1,
            &sku(SkuName::Basic, 1),
        );
        assert!(to_basic.is_empty());
    }

    #[test]
    fn only_changes_outside_the_memory_settings_restart() {
        let old = config(&[
            ("maxmemory-policy", "allkeys-lru"),
            ("aof-backup-enabled", "false"),
        ]);
        let live = config(&[
            ("maxmemory-policy", "noeviction"),
            ("maxmemory-reserved", "50"),
            ("cacheplane-memory-scale", "0.5"),
            ("aof-backup-enabled", "false"),
        ]);
        assert!(!restarts(&old, &live));
        assert!(!restarts(&old, &old));
        let aof = config(&[
            ("maxmemory-policy", "allkeys-lru"),
            ("aof-backup-enabled", "true"),
        ]);
        assert!(restarts(&old, &aof));
        let removed = config(&[("maxmemory-policy", "allkeys-lru")]);
        assert!(restarts(&old, &removed));
    }
}
