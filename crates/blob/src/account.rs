//! Storage accounts from connection strings: Azure's own format (and Azurite's
//! `UseDevelopmentStorage=true`), an S3 form, and a local folder.
//!
//! Parsing is pure and checks everything it can before anything is created; secrets never
//! appear in `Debug` output, error messages or [`Account::display_name`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Azurite's well-known development account and key (published by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZURITE_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
/// The container (or bucket prefix root) used when the string names none.
pub const DEFAULT_CONTAINER: &str = "cacheplane";
/// Longest connection string accepted.
const CONNECTION_STRING_MAX_BYTES: usize = 4096;
/// Longest key an error message repeats. The format's keys are words of at most 26 letters;
/// anything else may be a secret that lost its `=` (`AccountKeyc2VjcmV0==`), so errors name
/// it by its position instead.
const KEY_SHOWN_MAX_BYTES: usize = 32;

/// A refused connection string, naming the missing or wrong part (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    #[error("connection string is empty")]
    Empty,
    #[error("connection string is longer than {CONNECTION_STRING_MAX_BYTES} bytes")]
    TooLong,
    /// The 1-based position of the offending `;`-separated part (its text may be a secret).
    #[error("connection string part {0} is not of the form Key=Value")]
    NotKeyValue(usize),
    #[error("connection string has '{0}' twice")]
    Duplicate(String),
    /// A repeated key that may be a secret (see [`AccountError::UnknownKeyAt`]).
    #[error("connection string part {0} repeats an earlier key")]
    DuplicateAt(usize),
    #[error("connection string is missing {0}")]
    Missing(&'static str),
    #[error("connection string has an invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("connection string has unknown key '{0}'")]
    UnknownKey(String),
    /// An unknown key that is not a plain word, so may be a secret: named by its 1-based
    /// part position only.
    #[error("connection string part {0} has an unknown key")]
    UnknownKeyAt(usize),
}

/// Where a storage account keeps its objects.
#[derive(Clone, PartialEq, Eq)]
pub enum Account {
    Azure {
        account: String,
        key: AzureKey,
        /// `BlobEndpoint`, or `https://{account}.blob.{suffix}`.
        endpoint: String,
        container: String,
    },
    S3 {
        /// None: AWS itself.
        endpoint: Option<String>,
        bucket: String,
        region: String,
        access_key_id: String,
        secret_access_key: Secret,
    },
    Local {
        path: PathBuf,
    },
}

/// How requests to an Azure account are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureKey {
    /// The account's shared key (`AccountKey`).
    Shared(Secret),
    /// A shared access signature (the query of a SAS URL, `sv=...&sig=...`), as Azure's
    /// export and import take a container.
    Sas(Secret),
}

/// A secret that prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_name())
    }
}

impl Account {
    /// Parses a connection string:
    /// - Azure: `DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k;EndpointSuffix=core.windows.net`
    ///   or with `BlobEndpoint=http://host:port/a`; `UseDevelopmentStorage=true` for Azurite.
    ///   `Container=name` (cacheplane's extension) picks the container, default `cacheplane`.
    /// - S3: `Provider=S3;Bucket=b;Region=r;AccessKeyId=id;SecretAccessKey=s[;Endpoint=http://host:port]`.
    /// - Local folder: `Provider=Local;Path=/abs/dir`, or `file:///abs/dir`.
    pub fn parse(text: &str) -> Result<Account, AccountError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AccountError::Empty);
        }
        if text.len() > CONNECTION_STRING_MAX_BYTES {
            return Err(AccountError::TooLong);
        }
        if let Some(path) = text.strip_prefix("file://") {
            return local(path);
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return sas_url(text);
        }
        let mut parts = Parts::split(text)?;
        let account = match parts
            .take("Provider")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("s3") => s3(&mut parts)?,
            Some("local") => local(&parts.take("Path").ok_or(AccountError::Missing("Path"))?)?,
            Some("azure") | None => azure(&mut parts)?,
            Some(_) => {
                return Err(AccountError::Invalid {
                    key: "Provider",
                    reason: "expected S3, Local or Azure".into(),
                });
            }
        };
        parts.finish()?;
        Ok(account)
    }

    /// The account as a connection string [`Account::parse`] reads back, secrets included:
    /// for handing it to a child process through a private file, never for logs.
    pub fn connection_string(&self) -> String {
        match self {
            Account::Azure {
                account,
                key,
                endpoint,
                container,
            } => {
                let key = match key {
                    AzureKey::Shared(k) => format!("AccountKey={}", k.expose()),
                    AzureKey::Sas(s) => format!("SharedAccessSignature={}", s.expose()),
                };
                format!("AccountName={account};{key};BlobEndpoint={endpoint};Container={container}")
            }
            Account::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key,
            } => {
                let endpoint = endpoint
                    .as_ref()
                    .map(|e| format!(";Endpoint={e}"))
                    .unwrap_or_default();
                format!(
                    "Provider=S3;Bucket={bucket};Region={region};AccessKeyId={access_key_id};SecretAccessKey={}{endpoint}",
                    secret_access_key.expose()
                )
            }
            // The URL form: a path may hold a `;`, which would end a `Path=` value.
            Account::Local { path } => format!("file://{}", path.display()),
        }
    }

    /// A name for logs and reports: kind, account or bucket, and endpoint; no secrets.
    pub fn display_name(&self) -> String {
        match self {
            Account::Azure {
                account,
                endpoint,
                container,
                ..
            } => format!("azure:{account}/{container}@{endpoint}"),
            Account::S3 {
                endpoint, bucket, ..
            } => {
                format!("s3:{bucket}@{}", endpoint.as_deref().unwrap_or("aws"))
            }
            Account::Local { path } => format!("local:{}", path.display()),
        }
    }
}

/// The `Key=Value` pairs of a connection string, keys compared case-insensitively: lowercase
/// key -> (key as written, value, 1-based part position).
struct Parts(BTreeMap<String, (String, String, usize)>);

/// Whether an error message may repeat `key`: only a plain word (see KEY_SHOWN_MAX_BYTES).
fn showable(key: &str) -> bool {
    key.len() <= KEY_SHOWN_MAX_BYTES && key.bytes().all(|b| b.is_ascii_alphabetic())
}

impl Parts {
    fn split(text: &str) -> Result<Parts, AccountError> {
        let mut map = BTreeMap::new();
        for (i, part) in text
            .split(';')
            .map(str::trim)
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
        {
            let (k, v) = part
                .split_once('=')
                .ok_or(AccountError::NotKeyValue(i + 1))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() {
                return Err(AccountError::NotKeyValue(i + 1));
            }
            if map
                .insert(
                    k.to_ascii_lowercase(),
                    (k.to_string(), v.to_string(), i + 1),
                )
                .is_some()
            {
                return Err(if showable(k) {
                    AccountError::Duplicate(k.to_string())
                } else {
                    AccountError::DuplicateAt(i + 1)
                });
            }
        }
        Ok(Parts(map))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(&key.to_ascii_lowercase()).map(|(_, v, _)| v)
    }

    fn require(&mut self, key: &'static str) -> Result<String, AccountError> {
        self.take(key)
            .filter(|v| !v.is_empty())
            .ok_or(AccountError::Missing(key))
    }

    /// Refuses keys nobody took.
    fn finish(self) -> Result<(), AccountError> {
        match self.0.into_values().next() {
            Some((k, _, _)) if showable(&k) => Err(AccountError::UnknownKey(k)),
            Some((_, _, at)) => Err(AccountError::UnknownKeyAt(at)),
            None => Ok(()),
        }
    }
}

fn local(path: &str) -> Result<Account, AccountError> {
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(AccountError::Invalid {
            key: "Path",
            reason: "must be an absolute path".into(),
        });
    }
    Ok(Account::Local { path })
}

fn check_url(key: &'static str, url: &str) -> Result<(), AccountError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| AccountError::Invalid {
            key,
            reason: "must start with http:// or https://".into(),
        })?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(AccountError::Invalid {
            key,
            reason: "has no host".into(),
        });
    }
    Ok(())
}

fn container_name(parts: &mut Parts) -> Result<String, AccountError> {
    check_container(
        parts
            .take("Container")
            .unwrap_or_else(|| DEFAULT_CONTAINER.into()),
    )
}

fn check_container(c: String) -> Result<String, AccountError> {
    // Azure's rule (3-63 lowercase letters, digits and single dashes) also suits S3 prefixes.
    let ok = (3..=63).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--");
    if !ok {
        return Err(AccountError::Invalid {
            key: "Container",
            reason: "use 3-63 lowercase letters, digits and dashes".into(),
        });
    }
    Ok(c)
}

fn azure(parts: &mut Parts) -> Result<Account, AccountError> {
    if let Some(dev) = parts.take("UseDevelopmentStorage") {
        if !dev.eq_ignore_ascii_case("true") {
            return Err(AccountError::Invalid {
                key: "UseDevelopmentStorage",
                reason: "only 'true' is meaningful".into(),
            });
        }
        let endpoint = match parts.take("DevelopmentStorageProxyUri") {
            Some(proxy) => {
                check_url("DevelopmentStorageProxyUri", &proxy)?;
                format!("{}/{AZURITE_ACCOUNT}", proxy.trim_end_matches('/'))
            }
            None => AZURITE_BLOB_ENDPOINT.to_string(),
        };
        let container = container_name(parts)?;
        return Ok(Account::Azure {
            account: AZURITE_ACCOUNT.into(),
            key: AzureKey::Shared(Secret(AZURITE_KEY.into())),
            endpoint,
            container,
        });
    }
    let account = parts.require("AccountName")?;
    if !(3..=24).contains(&account.len())
        || !account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(AccountError::Invalid {
            key: "AccountName",
            reason: "use 3-24 lowercase letters and digits".into(),
        });
    }
    let key = match parts.take("SharedAccessSignature") {
        Some(sas) => AzureKey::Sas(Secret(check_sas(&sas)?)),
        None => {
            let key = parts.require("AccountKey")?;
            let base64 = key.len().is_multiple_of(4)
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
            if !base64 {
                return Err(AccountError::Invalid {
                    key: "AccountKey",
                    reason: "is not base64".into(),
                });
            }
            AzureKey::Shared(Secret(key))
        }
    };
    let protocol = parts
        .take("DefaultEndpointsProtocol")
        .unwrap_or_else(|| "https".into())
        .to_ascii_lowercase();
    if protocol != "https" && protocol != "http" {
        return Err(AccountError::Invalid {
            key: "DefaultEndpointsProtocol",
            reason: "expected http or https".into(),
        });
    }
    let suffix = parts
        .take("EndpointSuffix")
        .unwrap_or_else(|| "core.windows.net".into());
    let endpoint = match parts.take("BlobEndpoint") {
        Some(e) => {
            check_url("BlobEndpoint", &e)?;
            e.trim_end_matches('/').to_string()
        }
        // The suffix ends the endpoint's host: refuse what BlobEndpoint would refuse, so that
        // the connection string this account writes (naming the endpoint) reads back.
        None if suffix.is_empty() || suffix.contains(|c: char| c == '/' || c.is_whitespace()) => {
            return Err(AccountError::Invalid {
                key: "EndpointSuffix",
                reason: "must be a host name suffix".into(),
            });
        }
        None => format!("{protocol}://{account}.blob.{suffix}"),
    };
    // Endpoints of the account's other services are part of Azure's format; unused here.
    for other in ["QueueEndpoint", "TableEndpoint", "FileEndpoint"] {
        parts.take(other);
    }
    let container = container_name(parts)?;
    Ok(Account::Azure {
        account,
        key,
        endpoint,
        container,
    })
}

/// The query of a SAS URL, checked to carry a signature (its text is a secret).
fn check_sas(query: &str) -> Result<String, AccountError> {
    let query = query.trim_start_matches('?');
    let signed = query.split('&').any(|kv| {
        kv.split_once('=')
            .is_some_and(|(k, v)| k == "sig" && !v.is_empty())
    });
    if !signed {
        return Err(AccountError::Invalid {
            key: "SharedAccessSignature",
            reason: "has no sig parameter".into(),
        });
    }
    Ok(query.to_string())
}

/// A container SAS URL, as Azure's export and import take it:
/// `https://{account}.blob.{suffix}/{container}?sv=...&sig=...`, or path-style as Azurite
/// serves it, `http://127.0.0.1:10000/{account}/{container}?...`.
fn sas_url(url: &str) -> Result<Account, AccountError> {
    let invalid = |reason: &str| AccountError::Invalid {
        key: "SAS URL",
        reason: reason.into(),
    };
    let (base, query) = url
        .split_once('?')
        .ok_or_else(|| invalid("has no signature (the part after '?')"))?;
    check_url("SAS URL", base)?;
    let (scheme, rest) = base.split_once("://").expect("checked by check_url");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let host_name = host.split(':').next().unwrap_or(host);
    let (account, container, endpoint) = match host_name.split_once(".blob.") {
        Some((account, _)) => match segments[..] {
            [container] => (account, container, format!("{scheme}://{host}")),
            _ => return Err(invalid("must name exactly one container after the host")),
        },
        None => match segments[..] {
            [account, container] => (account, container, format!("{scheme}://{host}/{account}")),
            _ => return Err(invalid("must name the account and one container")),
        },
    };
    let container = check_container(container.to_string())?;
    Ok(Account::Azure {
        account: account.to_string(),
        key: AzureKey::Sas(Secret(check_sas(query)?)),
        endpoint,
        container,
    })
}

/// A blob SAS URL, as Azure's import takes its files
/// (`https://{account}.blob.{suffix}/{container}/{blob}?sv=...&sig=...`, or path-style),
/// split into its container SAS URL and the blob's name.
pub fn split_blob_sas_url(url: &str) -> Result<(String, String), AccountError> {
    let invalid = |reason: &str| AccountError::Invalid {
        key: "blob SAS URL",
        reason: reason.into(),
    };
    let (base, query) = url
        .split_once('?')
        .ok_or_else(|| invalid("has no signature (the part after '?')"))?;
    check_url("blob SAS URL", base)?;
    let (scheme, rest) = base.split_once("://").expect("checked by check_url");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_name = host.split(':').next().unwrap_or(host);
    // Host-style names the container first; path-style the account, then the container.
    let before_blob = if host_name.contains(".blob.") { 1 } else { 2 };
    let mut segments = path.splitn(before_blob + 1, '/');
    let container_path: Vec<&str> = segments.by_ref().take(before_blob).collect();
    let blob = segments.next().unwrap_or("");
    if container_path.len() < before_blob || blob.is_empty() {
        return Err(invalid("must name the container and a blob in it"));
    }
    let container_url = format!("{scheme}://{host}/{}?{query}", container_path.join("/"));
    // The container part must read as a container SAS URL.
    sas_url(&container_url)?;
    Ok((container_url, blob.to_string()))
}

fn s3(parts: &mut Parts) -> Result<Account, AccountError> {
    let bucket = parts.require("Bucket")?;
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(AccountError::Invalid {
            key: "Bucket",
            reason: "use 3-63 lowercase letters, digits, dots and dashes".into(),
        });
    }
    let endpoint = parts.take("Endpoint");
    if let Some(e) = &endpoint {
        check_url("Endpoint", e)?;
    }
    let region = parts.take("Region").unwrap_or_else(|| "us-east-1".into());
    let access_key_id = parts.require("AccessKeyId")?;
    let secret_access_key = Secret(parts.require("SecretAccessKey")?);
    Ok(Account::S3 {
        endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
        bucket,
        region,
        access_key_id,
        secret_access_key,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn azure_forms_parse() {
        let a = Account::parse("UseDevelopmentStorage=true").unwrap();
        assert!(
            matches!(&a, Account::Azure { account, endpoint, container, .. }
            if account == "devstoreaccount1" && endpoint == "http://127.0.0.1:10000/devstoreaccount1" && container == "cacheplane")
        );
        let a = Account::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abcd1234;BlobEndpoint=http://127.0.0.1:10123/devstoreaccount1/;Container=backups",
        )
        .unwrap();
        assert!(matches!(&a, Account::Azure { endpoint, container, .. }
            if endpoint == "http://127.0.0.1:10123/devstoreaccount1" && container == "backups"));
        let a = Account::parse(
            "AccountName=prodacct;AccountKey=abcd;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert!(
            matches!(&a, Account::Azure { endpoint, .. } if endpoint == "https://prodacct.blob.core.chinacloudapi.cn")
        );
    }

    #[test]
    fn connection_strings_read_back_as_the_same_account() {
        for text in [
            "UseDevelopmentStorage=true",
            "AccountName=prodacct;AccountKey=abcd;EndpointSuffix=core.windows.net;Container=backups",
            "Provider=S3;Endpoint=http://127.0.0.1:9000;Bucket=caches;AccessKeyId=x;SecretAccessKey=y",
            "Provider=S3;Bucket=caches;Region=eu-west-1;AccessKeyId=x;SecretAccessKey=y",
            "Provider=Local;Path=/var/lib/cacheplane/storage",
            "https://prodacct.blob.core.windows.net/exports?sv=2022-11-02&sr=c&sp=rw&sig=abc%2B",
            "http://127.0.0.1:10000/devstoreaccount1/exports?sv=2022-11-02&sig=abc",
        ] {
            let a = Account::parse(text).unwrap();
            assert_eq!(Account::parse(&a.connection_string()).unwrap(), a, "{text}");
        }
    }

    #[test]
    fn blob_sas_urls_split_into_container_and_blob() {
        let (c, b) =
            split_blob_sas_url("https://acct.blob.core.windows.net/exports/x/y.rdb?sv=1&sig=z")
                .unwrap();
        assert_eq!(c, "https://acct.blob.core.windows.net/exports?sv=1&sig=z");
        assert_eq!(b, "x/y.rdb");
        let (c, b) =
            split_blob_sas_url("http://127.0.0.1:10000/devstoreaccount1/box/a.rdb?sig=z").unwrap();
        assert_eq!(c, "http://127.0.0.1:10000/devstoreaccount1/box?sig=z");
        assert_eq!(b, "a.rdb");
        for bad in [
            "https://acct.blob.core.windows.net/exports?sig=z",
            "https://acct.blob.core.windows.net/exports/a.rdb",
            "http://127.0.0.1:10000/devstoreaccount1/c1?sig=z",
        ] {
            assert!(split_blob_sas_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sas_urls_name_account_and_container() {
        let a =
            Account::parse("https://prodacct.blob.core.windows.net/exports?sv=1&sig=x").unwrap();
        assert!(
            matches!(&a, Account::Azure { account, endpoint, container, key: AzureKey::Sas(s) }
            if account == "prodacct" && endpoint == "https://prodacct.blob.core.windows.net"
                && container == "exports" && s.expose() == "sv=1&sig=x")
        );
        let a = Account::parse("http://127.0.0.1:10000/devstoreaccount1/exports?sig=x").unwrap();
        assert!(matches!(&a, Account::Azure { account, endpoint, .. }
            if account == "devstoreaccount1" && endpoint == "http://127.0.0.1:10000/devstoreaccount1"));
        for bad in [
            "https://acct.blob.core.windows.net/exports",
            "https://acct.blob.core.windows.net/exports?sv=1",
            "https://acct.blob.core.windows.net/?sig=x",
            "http://127.0.0.1:10000/exports?sig=x",
            "https://acct.blob.core.windows.net/Bad_Name?sig=x",
        ] {
            assert!(Account::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_and_local_forms_parse() {
        let a = Account::parse("Provider=S3;Endpoint=http://127.0.0.1:9000;Bucket=caches;AccessKeyId=x;SecretAccessKey=y").unwrap();
        assert!(
            matches!(&a, Account::S3 { region, bucket, .. } if region == "us-east-1" && bucket == "caches")
        );
        assert_eq!(
            Account::parse("file:///var/backups").unwrap(),
            Account::Local {
                path: "/var/backups".into()
            }
        );
        assert_eq!(
            Account::parse("Provider=Local;Path=/d").unwrap(),
            Account::Local { path: "/d".into() }
        );
    }

    #[test]
    fn refusals_name_the_part_and_never_the_secret() {
        let cases = [
            ("", "empty"),
            ("AccountName=acct", "missing AccountKey"),
            ("AccountKey=c2VjcmV0", "missing AccountName"),
            (
                "AccountName=acct;AccountKey=not base64!",
                "invalid AccountKey",
            ),
            (
                "AccountName=acct;AccountKey=abcd;BlobEndpoint=ftp://x",
                "invalid BlobEndpoint",
            ),
            (
                "AccountName=acct;AccountKey=abcd;Bogus=1",
                "unknown key 'Bogus'",
            ),
            ("AccountName=a;AccountName=b", "'AccountName' twice"),
            (
                "Provider=S3;Bucket=b1x;AccessKeyId=x",
                "missing SecretAccessKey",
            ),
            (
                "Provider=S3;Bucket=Bad_Bucket;AccessKeyId=x;SecretAccessKey=topsecret",
                "invalid Bucket",
            ),
            ("Provider=Gcs", "invalid Provider"),
            ("Provider=Local;Path=relative", "invalid Path"),
            ("garbage", "not of the form Key=Value"),
            (
                "UseDevelopmentStorage=true;Container=UPPER",
                "invalid Container",
            ),
            // A key whose `=` went missing is not repeated back, in whatever position.
            (
                "AccountName=acct;AccountKey=abcd;AccountKeyc2VjcmV0c2VjcmV0==",
                "part 3 has an unknown key",
            ),
            (
                "c2VjcmV0c2VjcmV0==;AccountName=acct;AccountKey=abcd",
                "part 1 has an unknown key",
            ),
            (
                "AccountName=acct;AccountKeyc2VjcmV0==;AccountKeyc2VjcmV0==",
                "part 3 repeats an earlier key",
            ),
            (
                "AccountName=acct;AccountKey=abcd;EndpointSuffix=core.windows.net/",
                "invalid EndpointSuffix",
            ),
        ];
        for (text, want) in cases {
            let e = Account::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("topsecret") && !e.contains("c2VjcmV0"), "{e}");
        }
        let a = Account::parse("Provider=S3;Bucket=b1x;AccessKeyId=x;SecretAccessKey=topsecret")
            .unwrap();
        assert!(!format!("{a:?}").contains("topsecret"));
        assert!(!a.display_name().contains("topsecret"));
    }

    /// Starts every generated secret; an uppercase letter and a digit, so it can't come from
    /// any other generated part, and it makes a key that lost its `=` not a plain word.
    const SECRET_MARK: &str = "Zz9Q";

    fn arb_url() -> impl Strategy<Value = String> {
        "https?://[a-z0-9][a-z0-9.-]{0,15}(:[0-9]{1,5})?(/[a-z0-9._-]{1,8}){0,2}/{0,2}"
    }

    /// A value as a connection string can carry it: no `;`, no whitespace at either end.
    fn arb_value() -> impl Strategy<Value = String> {
        "[!-:<-~]([ !-:<-~]{0,12}[!-:<-~])?"
    }

    fn arb_container() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-z0-9]{2,3}(-?[a-z0-9]{1,3}){1,15}")
    }

    fn kv(k: &str, v: impl Into<String>) -> (String, String) {
        (k.to_string(), v.into())
    }

    fn arb_azure() -> impl Strategy<Value = (Vec<(String, String)>, Account)> {
        let key = proptest::string::string_regex(&format!(
            "{SECRET_MARK}([A-Za-z0-9+/]{{4}}){{0,8}}([A-Za-z0-9+/]{{4}}|[A-Za-z0-9+/]{{3}}=|[A-Za-z0-9+/]{{2}}==)"
        ))
        .unwrap();
        (
            "[a-z0-9]{3,24}",
            key,
            arb_container(),
            proptest::option::of(prop::sample::select(vec!["https", "http", "HTTP"])),
            proptest::option::of("[a-z0-9-]{1,8}(\\.[a-z0-9-]{1,8}){0,3}"),
            proptest::option::of(arb_url()),
            proptest::option::of(arb_url()),
            any::<bool>(),
        )
            .prop_map(
                |(account, key, container, protocol, suffix, blob, queue, provider)| {
                    let mut parts = vec![kv("AccountName", &account), kv("AccountKey", &key)];
                    if provider {
                        parts.push(kv("Provider", "Azure"));
                    }
                    let endpoint = match &blob {
                        Some(url) => url.trim_end_matches('/').to_string(),
                        None => format!(
                            "{}://{account}.blob.{}",
                            protocol.unwrap_or("https").to_ascii_lowercase(),
                            suffix.as_deref().unwrap_or("core.windows.net")
                        ),
                    };
                    let optional = [
                        ("DefaultEndpointsProtocol", protocol.map(str::to_string)),
                        ("EndpointSuffix", suffix),
                        ("BlobEndpoint", blob),
                        ("QueueEndpoint", queue),
                        ("Container", container.clone()),
                    ];
                    parts.extend(optional.into_iter().filter_map(|(k, v)| Some(kv(k, v?))));
                    let account = Account::Azure {
                        account,
                        key: AzureKey::Shared(Secret(key)),
                        endpoint,
                        container: container.unwrap_or_else(|| DEFAULT_CONTAINER.into()),
                    };
                    (parts, account)
                },
            )
    }

    fn arb_azurite() -> impl Strategy<Value = (Vec<(String, String)>, Account)> {
        (
            prop::sample::select(vec!["true", "TRUE", "True"]),
            proptest::option::of(arb_url()),
            arb_container(),
        )
            .prop_map(|(dev, proxy, container)| {
                let mut parts = vec![kv("UseDevelopmentStorage", dev)];
                let endpoint = match &proxy {
                    Some(p) => format!("{}/{AZURITE_ACCOUNT}", p.trim_end_matches('/')),
                    None => AZURITE_BLOB_ENDPOINT.into(),
                };
                if let Some(p) = proxy {
                    parts.push(kv("DevelopmentStorageProxyUri", p));
                }
                if let Some(c) = &container {
                    parts.push(kv("Container", c));
                }
                let account = Account::Azure {
                    account: AZURITE_ACCOUNT.into(),
                    key: AzureKey::Shared(Secret(AZURITE_KEY.into())),
                    endpoint,
                    container: container.unwrap_or_else(|| DEFAULT_CONTAINER.into()),
                };
                (parts, account)
            })
    }

    fn arb_s3() -> impl Strategy<Value = (Vec<(String, String)>, Account)> {
        (
            prop::sample::select(vec!["S3", "s3"]),
            "[a-z0-9.-]{3,63}",
            proptest::option::of(arb_value()),
            "[A-Z0-9]{1,20}",
            arb_value().prop_map(|v| format!("{SECRET_MARK}{v}")),
            proptest::option::of(arb_url()),
        )
            .prop_map(|(provider, bucket, region, id, secret, endpoint)| {
                let mut parts = vec![
                    kv("Provider", provider),
                    kv("Bucket", &bucket),
                    kv("AccessKeyId", &id),
                    kv("SecretAccessKey", &secret),
                ];
                if let Some(r) = &region {
                    parts.push(kv("Region", r));
                }
                if let Some(e) = &endpoint {
                    parts.push(kv("Endpoint", e));
                }
                let account = Account::S3 {
                    endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
                    bucket,
                    region: region.unwrap_or_else(|| "us-east-1".into()),
                    access_key_id: id,
                    secret_access_key: Secret(secret),
                };
                (parts, account)
            })
    }

    fn arb_local() -> impl Strategy<Value = (Vec<(String, String)>, Account)> {
        (
            prop::sample::select(vec!["Local", "local"]),
            "/([ !-:<-~]{0,30}[!-:<-~])?",
        )
            .prop_map(|(provider, path)| {
                let account = Account::Local {
                    path: PathBuf::from(&path),
                };
                (vec![kv("Provider", provider), kv("Path", path)], account)
            })
    }

    /// Parts in any order, keys in any case, spaces around them and empty parts between:
    /// all of which the parser promises to ignore.
    fn render(parts: &[(String, String)], style: &[u8]) -> String {
        let mut out = String::new();
        for ((k, v), s) in parts.iter().zip(style) {
            let k = match s & 3 {
                0 => k.to_ascii_lowercase(),
                1 => k.to_ascii_uppercase(),
                _ => k.clone(),
            };
            let pad = |bit: u8| if s & bit != 0 { " " } else { "" };
            out.push_str(&format!(
                "{}{k}{}={}{v}{};",
                pad(4),
                pad(8),
                pad(8),
                pad(16)
            ));
            if s & 32 != 0 {
                out.push_str(" ;");
            }
        }
        out
    }

    /// A valid connection string and the account it means.
    fn arb_valid() -> impl Strategy<Value = (String, Account)> {
        prop_oneof![arb_azure(), arb_azurite(), arb_s3(), arb_local()]
            .prop_flat_map(|(parts, account)| {
                let n = parts.len();
                (
                    Just(parts).prop_shuffle(),
                    proptest::collection::vec(any::<u8>(), n),
                    Just(account),
                )
            })
            .prop_map(|(parts, style, account)| (render(&parts, &style), account))
    }

    /// Text made of the format's own words, to get past the first checks.
    fn arb_soup() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "(AccountName|AccountKey|BlobEndpoint|EndpointSuffix|Container|Provider)",
            "(UseDevelopmentStorage|DevelopmentStorageProxyUri|DefaultEndpointsProtocol)",
            "(Bucket|Region|AccessKeyId|SecretAccessKey|Endpoint|Path|file://)",
            "(S3|Local|Azure|true|https?://|Zz9Q)",
            "[=;]",
            "[ \t]{1,2}",
            "[a-z0-9/.:-]{1,10}",
            ".",
        ];
        proptest::collection::vec(word, 0..30).prop_map(|w| w.concat())
    }

    fn arb_edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, char)>> {
        let c = prop::sample::select(vec![
            ';', '=', ' ', '/', ':', '.', '-', 'a', 'A', '0', '\u{e9}',
        ]);
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), c), 1..4)
    }

    /// Edits at character boundaries: insert, delete or replace.
    fn mutate(text: &str, edits: &[(prop::sample::Index, u8, char)]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for (i, op, c) in edits {
            let at = i.index(chars.len() + 1);
            match op % 3 {
                0 => chars.insert(at, *c),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ if at < chars.len() => chars[at] = *c,
                _ => chars.push(*c),
            }
        }
        chars.into_iter().collect()
    }

    proptest! {
        #[test]
        fn valid_strings_parse_to_the_fields_given((text, account) in arb_valid()) {
            let parsed = Account::parse(&text).unwrap();
            prop_assert_eq!(&parsed, &account);
            prop_assert_eq!(Account::parse(&parsed.connection_string()).unwrap(), account);
            let debug = format!("{parsed:?}");
            prop_assert!(!debug.contains(SECRET_MARK));
            prop_assert!(!parsed.display_name().contains(SECRET_MARK));
        }

        #[test]
        fn file_urls_parse_to_their_path(path in "/([ -~]{0,30}[!-~])?") {
            let a = Account::parse(&format!("file://{path}")).unwrap();
            prop_assert_eq!(&a, &Account::Local { path: PathBuf::from(&path) });
            prop_assert_eq!(Account::parse(&a.connection_string()).unwrap(), a);
        }

        #[test]
        fn fuzz_account_text_never_panics(text in prop_oneof![any::<String>(), arb_soup()]) {
            if let Err(e) = Account::parse(&text) {
                prop_assert!(!e.to_string().contains(SECRET_MARK), "{}", e);
            }
        }

        #[test]
        fn fuzz_mutated_account_strings_never_panic((text, _) in arb_valid(), edits in arb_edits()) {
            match Account::parse(&mutate(&text, &edits)) {
                // Whatever is accepted still writes a connection string that reads back.
                Ok(a) => prop_assert_eq!(Account::parse(&a.connection_string()).unwrap(), a),
                Err(e) => prop_assert!(!e.to_string().contains(SECRET_MARK), "{}", e),
            }
        }
    }
}
