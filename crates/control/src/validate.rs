//! The checks Azure makes before it creates or changes a cache, each refusal naming the
//! property at fault; and the persistence plan a valid configuration means. The memory
//! settings' checks live with the SKU table they depend on, in `crate::memory`.

use std::collections::BTreeMap;

use blob::Account;

use crate::ArmError;
use crate::model::{Sku, SkuFamily, SkuName};

/// `rdb-backup-frequency` values Azure accepts, in minutes.
pub const RDB_BACKUP_FREQUENCIES_MIN: &[u64] = &[15, 30, 60, 360, 720, 1440];
/// Names of caches: Azure's rule (1-63 letters, digits and single dashes, not at the ends).
const NAME_LEN_MAX: usize = 63;

/// What a cache persists, and where.
#[derive(Debug, Clone, PartialEq)]
pub enum Persistence {
    None,
    Rdb {
        frequency_min: u64,
        max_snapshot_count: u64,
        account: Option<Account>,
    },
    /// Accounts left out use the control plane's default account.
    Aof {
        primary: Option<Account>,
        secondary: Option<Account>,
    },
}

fn config_target(key: &str) -> String {
    format!("properties.redisConfiguration.{key}")
}

/// Refuses connection strings in `config` that point where the operator does not allow
/// (a local folder outside the storage root, an endpoint host not allowed).
pub fn storage_access(
    config: &BTreeMap<String, String>,
    policy: &blob::AccessPolicy,
) -> Result<(), ArmError> {
    for key in crate::model::SECRET_CONFIG_KEYS {
        let Some(Ok(account)) = config
            .get(*key)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Account::parse(v))
        else {
            continue;
        };
        policy.check(&account).map_err(|e| {
            ArmError::bad_request(
                "InvalidStorageConnectionString",
                config_target(key),
                format!(
                    "The value of '{key}' names a storage account this service may not use: {e}."
                ),
            )
        })?;
    }
    Ok(())
}

/// TLS versions a cache may require of its clients: 1.2 (the default) or 1.3. 1.0 and 1.1
/// are refused, as new Azure caches refuse them since their retirement.
pub fn minimum_tls_version(v: Option<&str>) -> Result<(), ArmError> {
    match v {
        None | Some("1.2") | Some("1.3") => Ok(()),
        Some(old @ ("1.0" | "1.1")) => Err(ArmError::bad_request(
            "InvalidMinimumTlsVersion",
            "properties.minimumTlsVersion",
            format!(
                "minimumTlsVersion '{old}' is not supported: TLS 1.0 and 1.1 are retired for Azure Cache for Redis. Use '1.2' or '1.3'."
            ),
        )),
        Some(other) => Err(ArmError::bad_request(
            "InvalidMinimumTlsVersion",
            "properties.minimumTlsVersion",
            format!("minimumTlsVersion '{other}' is not one of '1.2', '1.3'."),
        )),
    }
}

/// `redisVersion` as Azure takes it: `latest`, or `major[.minor]`. Every cache runs Redis
/// 7.0 and reports it; asking for an older version (Azure's 4 and 6) is accepted and
/// served by 7.0, which speaks their protocol; a newer one is refused.
pub fn redis_version(v: Option<&str>) -> Result<(), ArmError> {
    let Some(v) = v else { return Ok(()) };
    if v.eq_ignore_ascii_case("latest") {
        return Ok(());
    }
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    let number = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !number(major) || !number(minor) {
        return Err(ArmError::bad_request(
            "InvalidRedisVersion",
            "properties.redisVersion",
            format!("redisVersion '{v}' is not 'latest' or a version such as '6' or '7.0'."),
        ));
    }
    let asked = (
        major.parse::<u32>().unwrap_or(0),
        minor.parse::<u32>().unwrap_or(0),
    );
    if asked > (7, 0) {
        return Err(ArmError::bad_request(
            "InvalidRedisVersion",
            "properties.redisVersion",
            format!("redisVersion '{v}' is not available: caches here run Redis 7.0."),
        ));
    }
    Ok(())
}

pub fn cache_name(name: &str) -> Result<(), ArmError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidResourceName",
            "name",
            format!(
                "The cache name '{name}' is invalid: use 1-63 letters, digits and single dashes, not at the start or end."
            ),
        ))
    }
}

pub fn location(location: &str) -> Result<(), ArmError> {
    if location.trim().is_empty() {
        return Err(ArmError::bad_request(
            "LocationRequired",
            "location",
            "The location property is required for this definition.",
        ));
    }
    Ok(())
}

pub fn sku(sku: &Sku) -> Result<(), ArmError> {
    let (family, capacities) = match sku.name {
        SkuName::Basic | SkuName::Standard => (SkuFamily::C, 0..=6),
        SkuName::Premium => (SkuFamily::P, 1..=5),
    };
    if sku.family != family {
        return Err(ArmError::bad_request(
            "InvalidSkuFamily",
            "properties.sku.family",
            format!(
                "The SKU family '{:?}' is not valid for SKU '{:?}'; use '{family:?}'.",
                sku.family, sku.name
            ),
        ));
    }
    if !capacities.contains(&sku.capacity) {
        return Err(ArmError::bad_request(
            "InvalidSkuCapacity",
            "properties.sku.capacity",
            format!(
                "The capacity {} is not valid for SKU '{:?}'; use {} to {}.",
                sku.capacity,
                sku.name,
                capacities.start(),
                capacities.end()
            ),
        ));
    }
    Ok(())
}

fn flag(config: &BTreeMap<String, String>, key: &str) -> Result<bool, ArmError> {
    match config.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(_) => Err(ArmError::bad_request(
            "InvalidRedisConfiguration",
            config_target(key),
            format!("The value of '{key}' must be 'true' or 'false'."),
        )),
    }
}

fn account(config: &BTreeMap<String, String>, key: &str) -> Result<Option<Account>, ArmError> {
    match config.get(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => Account::parse(v).map(Some).map_err(|e| {
            ArmError::bad_request(
                "InvalidStorageConnectionString",
                config_target(key),
                format!("The value of '{key}' is not a usable storage connection string: {e}."),
            )
        }),
    }
}

/// Checks `redisConfiguration` for a cache of `sku` and says what it persists.
pub fn persistence(sku: &Sku, config: &BTreeMap<String, String>) -> Result<Persistence, ArmError> {
    let rdb = flag(config, "rdb-backup-enabled")?;
    let aof = flag(config, "aof-backup-enabled")?;
    if (rdb || aof) && sku.name != SkuName::Premium {
        let key = if rdb {
            "rdb-backup-enabled"
        } else {
            "aof-backup-enabled"
        };
        return Err(ArmError::bad_request(
            "PersistenceRequiresPremium",
            config_target(key),
            "Data persistence is only available for Premium caches.",
        ));
    }
    if rdb && aof {
        return Err(ArmError::bad_request(
            "ConflictingPersistenceSettings",
            config_target("aof-backup-enabled"),
            "RDB and AOF persistence cannot both be enabled; enable one of 'rdb-backup-enabled' and 'aof-backup-enabled'.",
        ));
    }
    // Connection strings are checked whenever they are given, so nothing is created with a
    // string that would fail later.
    let rdb_account = account(config, "rdb-storage-connection-string")?;
    let primary = account(config, "aof-storage-connection-string-0")?;
    let secondary = account(config, "aof-storage-connection-string-1")?;
    if rdb {
        let frequency_min = match config.get("rdb-backup-frequency") {
            None => 60,
            Some(v) => v.parse::<u64>().ok().filter(|f| RDB_BACKUP_FREQUENCIES_MIN.contains(f)).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidRedisConfiguration",
                    config_target("rdb-backup-frequency"),
                    format!("The value '{v}' of 'rdb-backup-frequency' is invalid; use one of 15, 30, 60, 360, 720, 1440 (minutes)."),
                )
            })?,
        };
        let max_snapshot_count = match config.get("rdb-backup-max-snapshot-count") {
            None => 1,
            Some(v) => v.parse::<u64>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidRedisConfiguration",
                    config_target("rdb-backup-max-snapshot-count"),
                    format!("The value '{v}' of 'rdb-backup-max-snapshot-count' is invalid; use 1 to 100."),
                )
            })?,
        };
        return Ok(Persistence::Rdb {
            frequency_min,
            max_snapshot_count,
            account: rdb_account,
        });
    }
    if aof {
        if secondary.is_some() && primary.is_none() {
            return Err(ArmError::bad_request(
                "InvalidRedisConfiguration",
                config_target("aof-storage-connection-string-0"),
                "'aof-storage-connection-string-1' needs 'aof-storage-connection-string-0'.",
            ));
        }
        return Ok(Persistence::Aof { primary, secondary });
    }
    Ok(Persistence::None)
}

#[cfg(test)]
pub(crate) mod tests {

    #[test]
    fn redis_versions_up_to_the_one_served_are_taken() {
        for ok in [
            None,
            Some("latest"),
            Some("Latest"),
            Some("4"),
            Some("6"),
            Some("6.0"),
            Some("7.0"),
        ] {
            assert!(redis_version(ok).is_ok(), "{ok:?}");
        }
        for bad in ["7.2", "8", "six", "", "6.", "7.0.15"] {
            assert!(redis_version(Some(bad)).is_err(), "{bad}");
        }
    }
    use super::*;

    fn premium() -> Sku {
        Sku {
            name: SkuName::Premium,
            family: SkuFamily::P,
            capacity: 1,
        }
    }

    /// A `redisConfiguration` from pairs (the memory checks' tests use it too).
    pub(crate) fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn skus_follow_azure() {
        assert!(
            sku(&Sku {
                name: SkuName::Basic,
                family: SkuFamily::C,
                capacity: 0
            })
            .is_ok()
        );
        assert!(sku(&premium()).is_ok());
        let e = sku(&Sku {
            name: SkuName::Premium,
            family: SkuFamily::C,
            capacity: 1,
        })
        .unwrap_err();
        assert_eq!(e.target.as_deref(), Some("properties.sku.family"));
        let e = sku(&Sku {
            name: SkuName::Standard,
            family: SkuFamily::C,
            capacity: 7,
        })
        .unwrap_err();
        assert_eq!(e.target.as_deref(), Some("properties.sku.capacity"));
        let e = sku(&Sku {
            name: SkuName::Premium,
            family: SkuFamily::P,
            capacity: 0,
        })
        .unwrap_err();
        assert_eq!((e.status, e.code), (400, "InvalidSkuCapacity"));
    }

    #[test]
    fn persistence_rules_name_the_key() {
        assert_eq!(
            persistence(&premium(), &config(&[])).unwrap(),
            Persistence::None
        );
        let rdb = persistence(
            &premium(),
            &config(&[
                ("rdb-backup-enabled", "true"),
                ("rdb-backup-frequency", "15"),
            ]),
        )
        .unwrap();
        assert_eq!(
            rdb,
            Persistence::Rdb {
                frequency_min: 15,
                max_snapshot_count: 1,
                account: None
            }
        );
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("rdb-backup-enabled", "yes")],
                "rdb-backup-enabled",
                "InvalidRedisConfiguration",
            ),
            (
                &[
                    ("rdb-backup-enabled", "true"),
                    ("rdb-backup-frequency", "10"),
                ],
                "rdb-backup-frequency",
                "InvalidRedisConfiguration",
            ),
            (
                &[
                    ("rdb-backup-enabled", "true"),
                    ("aof-backup-enabled", "true"),
                ],
                "aof-backup-enabled",
                "ConflictingPersistenceSettings",
            ),
            (
                &[
                    ("aof-backup-enabled", "true"),
                    ("aof-storage-connection-string-0", "AccountName=x"),
                ],
                "aof-storage-connection-string-0",
                "InvalidStorageConnectionString",
            ),
            (
                &[
                    ("aof-backup-enabled", "true"),
                    ("aof-storage-connection-string-1", "file:///x"),
                ],
                "aof-storage-connection-string-0",
                "InvalidRedisConfiguration",
            ),
        ];
        for (pairs, key, code) in cases {
            let e = persistence(&premium(), &config(pairs)).unwrap_err();
            assert_eq!(
                e.target.as_deref(),
                Some(format!("properties.redisConfiguration.{key}").as_str()),
                "{pairs:?}"
            );
            assert_eq!(e.code, *code, "{pairs:?}");
        }
        let standard = Sku {
            name: SkuName::Standard,
            family: SkuFamily::C,
            capacity: 1,
        };
        let e = persistence(&standard, &config(&[("aof-backup-enabled", "true")])).unwrap_err();
        assert_eq!(e.code, "PersistenceRequiresPremium");
        // A secret in a refused string never reaches the message.
        let e = persistence(
            &premium(),
            &config(&[
                ("aof-backup-enabled", "true"),
                (
                    "aof-storage-connection-string-0",
                    "Provider=S3;Bucket=b1x;AccessKeyId=x;SecretAccessKey=s3cr3t;Oops=1",
                ),
            ]),
        )
        .unwrap_err();
        assert!(!e.message.contains("s3cr3t"), "{}", e.message);
    }

    #[test]
    fn names_follow_azure() {
        assert!(cache_name("my-cache-1").is_ok());
        for bad in ["", "-a", "a-", "a--b", "a_b", &"x".repeat(64)] {
            assert_eq!(
                cache_name(bad).unwrap_err().code,
                "InvalidResourceName",
                "{bad}"
            );
        }
    }
}
