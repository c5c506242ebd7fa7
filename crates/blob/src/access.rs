//! What the operator lets API callers name as storage: local folders only under one root,
//! object-store endpoints only on hosts the operator allowed (loopback by default, for
//! Azurite and MinIO). A connection string that parses is not yet one a caller may use:
//! without this check, an export to `file:///home/me/.ssh` or a store at any address on
//! the operator's network would be the API caller's to choose.

use std::path::{Component, Path, PathBuf};

use crate::Account;

/// A refused account: where it points and why that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    #[error(
        "local folder {path} is outside the storage root {root} (local-folder accounts must be inside it)"
    )]
    OutsideRoot { path: PathBuf, root: PathBuf },
    #[error("local folder {0} has '..' components")]
    ParentComponents(PathBuf),
    #[error(
        "endpoint host '{0}' is not allowed (the operator allows hosts with --storage-endpoint-allow)"
    )]
    HostNotAllowed(String),
    #[error("endpoint '{0}' has no host")]
    NoHost(String),
}

/// The operator's rules for the accounts callers name.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    local_root: PathBuf,
    /// Exact host names, `*.suffix` patterns, or `*` for any host.
    allowed_hosts: Vec<String>,
}

impl AccessPolicy {
    /// `local_root`: the folder local accounts must be inside; `allowed_hosts`: endpoint
    /// hosts allowed besides loopback (`name`, `*.suffix` or `*`).
    pub fn new(local_root: PathBuf, allowed_hosts: Vec<String>) -> AccessPolicy {
        AccessPolicy {
            local_root: normalize(&local_root),
            allowed_hosts: allowed_hosts
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    pub fn local_root(&self) -> &Path {
        &self.local_root
    }

    /// Refuses an account outside what the operator allowed.
    pub fn check(&self, account: &Account) -> Result<(), AccessError> {
        match account {
            Account::Local { path } => {
                if path.components().any(|c| c == Component::ParentDir) {
                    return Err(AccessError::ParentComponents(path.clone()));
                }
                let path = normalize(path);
                if path.starts_with(&self.local_root) {
                    Ok(())
                } else {
                    Err(AccessError::OutsideRoot {
                        path,
                        root: self.local_root.clone(),
                    })
                }
            }
            Account::Azure { endpoint, .. } => self.check_endpoint(endpoint),
            Account::S3 {
                endpoint: Some(endpoint),
                ..
            } => self.check_endpoint(endpoint),
            Account::S3 {
                endpoint: None,
                region,
                ..
            } => self.check_host(&format!("s3.{region}.amazonaws.com")),
        }
    }

    fn check_endpoint(&self, url: &str) -> Result<(), AccessError> {
        let host = host_of(url).ok_or_else(|| AccessError::NoHost(url.to_string()))?;
        self.check_host(&host)
    }

    fn check_host(&self, host: &str) -> Result<(), AccessError> {
        let host = host.to_ascii_lowercase();
        let allowed = is_loopback(&host)
            || self.allowed_hosts.iter().any(|p| {
                p == "*"
                    || *p == host
                    || p.strip_prefix("*.")
                        .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")))
            });
        if allowed {
            Ok(())
        } else {
            Err(AccessError::HostNotAllowed(host))
        }
    }
}

/// The path with `.` components dropped (`..` is refused before this is used).
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

/// The host of an `http(s)://host[:port]/...` URL, without brackets for IPv6.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    // Credentials in a URL are not a host.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> AccessPolicy {
        AccessPolicy::new(
            PathBuf::from("/data/storage"),
            allow.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn check(p: &AccessPolicy, text: &str) -> Result<(), AccessError> {
        p.check(&Account::parse(text).expect("parses"))
    }

    #[test]
    fn local_folders_stay_under_the_root() {
        let p = policy(&[]);
        assert!(check(&p, "Provider=Local;Path=/data/storage").is_ok());
        assert!(check(&p, "file:///data/storage/./exports").is_ok());
        assert!(matches!(
            check(&p, "file:///tmp"),
            Err(AccessError::OutsideRoot { .. })
        ));
        assert!(matches!(
            check(&p, "file:///data/storage-other"),
            Err(AccessError::OutsideRoot { .. })
        ));
        assert!(matches!(
            check(&p, "Provider=Local;Path=/data/storage/../../etc"),
            Err(AccessError::ParentComponents(_))
        ));
    }

    #[test]
    fn endpoints_need_loopback_or_an_allowed_host() {
        let p = policy(&[]);
        assert!(check(&p, "UseDevelopmentStorage=true").is_ok());
        let s3 = |endpoint: &str| {
            format!(
                "Provider=S3;Bucket=bkt;Region=us-east-1;AccessKeyId=a;SecretAccessKey=s;Endpoint={endpoint}"
            )
        };
        assert!(check(&p, &s3("http://localhost:9000")).is_ok());
        assert!(check(&p, &s3("http://[::1]:9000")).is_ok());
        assert!(check(&p, &s3("http://127.0.0.2:9000")).is_ok());
        assert_eq!(
            check(&p, &s3("http://169.254.169.254/latest")),
            Err(AccessError::HostNotAllowed("169.254.169.254".into()))
        );
        assert_eq!(
            check(&p, &s3("http://user@10.0.0.1:9000")),
            Err(AccessError::HostNotAllowed("10.0.0.1".into()))
        );
        let azure = "AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net";
        assert!(matches!(
            check(&p, azure),
            Err(AccessError::HostNotAllowed(_))
        ));
        assert!(check(&policy(&["*.blob.core.windows.net"]), azure).is_ok());
        assert!(check(&policy(&["acct.blob.core.windows.net"]), azure).is_ok());
        assert!(check(&policy(&["*"]), azure).is_ok());
        assert!(check(&policy(&["*.windows.net.evil"]), azure).is_err());
        // AWS itself when no endpoint is given.
        let aws = "Provider=S3;Bucket=bkt;Region=eu-west-1;AccessKeyId=a;SecretAccessKey=s";
        assert!(check(&p, aws).is_err());
        assert!(check(&policy(&["*.amazonaws.com"]), aws).is_ok());
    }
}
