//! What a storage account keeps after a delete or an overwrite, as the store itself
//! reports it: Azure's blob service properties (`DeleteRetentionPolicy`), S3's bucket
//! versioning and lifecycle rules (`NoncurrentVersionExpiration`).
//!
//! Requests are signed with object_store's own authorizers and sent with its HTTP client,
//! so this crate stays the only one that talks to object stores.

use std::time::Duration;

use object_store::ClientOptions;
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use serde::Deserialize;

use crate::Account;

/// A discovery that has not answered in this long is given up (the policy stays unknown).
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read: service properties and lifecycle documents are small.
const RESPONSE_MAX_BYTES: usize = 256 * 1024;

/// An account's retention of replaced and deleted objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    None,
    /// Azure blob soft delete, kept this many days.
    SoftDelete {
        days: u64,
    },
    /// S3 versioning; noncurrent versions expire after this many days by a lifecycle rule,
    /// or never.
    Versioning {
        noncurrent_expiry_days: Option<u64>,
    },
}

/// What the store said, and from which of its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub retention: Retention,
    /// The settings read, for the report: "blob service properties DeleteRetentionPolicy".
    pub from: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The store kind has no such setting (a local folder keeps nothing).
    #[error("{0} does not report a retention policy")]
    NotReported(String),
    #[error("{account}: {what}: {reason}")]
    Failed {
        account: String,
        what: &'static str,
        reason: String,
    },
}

/// Reads `account`'s retention policy. `prefix` is where the cache's objects live (an S3
/// lifecycle rule counts only if its prefix covers them).
pub async fn discover(account: &Account, prefix: &str) -> Result<Discovered, DiscoveryError> {
    match tokio::time::timeout(DISCOVERY_TIMEOUT, discover_now(account, prefix)).await {
        Ok(r) => r,
        Err(_) => Err(DiscoveryError::Failed {
            account: account.display_name(),
            what: "retention policy",
            reason: format!("no answer in {DISCOVERY_TIMEOUT:?}"),
        }),
    }
}

async fn discover_now(account: &Account, prefix: &str) -> Result<Discovered, DiscoveryError> {
    match account {
        Account::Local { .. } => Err(DiscoveryError::NotReported(account.display_name())),
        Account::Azure {
            account: name,
            key,
            endpoint,
            ..
        } => {
            let client = http_client(account)?;
            let url = format!(
                "{}/?restype=service&comp=properties",
                endpoint.trim_end_matches('/')
            );
            let what = "blob service properties";
            let crate::AzureKey::Shared(key) = key else {
                // A container SAS cannot read the account's service properties.
                return Err(DiscoveryError::NotReported(account.display_name()));
            };
            let body = get(&client, account, what, url, |req| {
                let key = object_store::azure::AzureAccessKey::try_new(key.expose())
                    .map_err(|e| e.to_string())?;
                let credential = object_store::azure::AzureCredential::AccessKey(key);
                object_store::azure::AzureAuthorizer::new(&credential, name)
                    .try_authorize(req)
                    .map_err(|e| e.to_string())
            })
            .await?
            .ok_or_else(|| failed(account, what, "not found".into()))?;
            let props: AzureServiceProperties =
                quick_xml::de::from_str(&body).map_err(|e| failed(account, what, e.to_string()))?;
            let retention = match props.delete_retention_policy {
                Some(AzureDeleteRetention {
                    enabled: true,
                    days: Some(days),
                }) => Retention::SoftDelete { days },
                _ => Retention::None,
            };
            Ok(Discovered {
                retention,
                from: "blob service properties (DeleteRetentionPolicy)",
            })
        }
        Account::S3 {
            endpoint,
            bucket,
            region,
            access_key_id,
            secret_access_key,
        } => {
            let client = http_client(account)?;
            let base = match endpoint {
                Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
                None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            };
            let credential = object_store::aws::AwsCredential {
                key_id: access_key_id.clone(),
                secret_key: secret_access_key.expose().to_string(),
                token: None,
            };
            let sign = |req: &mut object_store::client::HttpRequest| {
                object_store::aws::AwsAuthorizer::new(&credential, "s3", region)
                    .with_sign_payload(false)
                    .try_authorize(req, None)
                    .map_err(|e| e.to_string())
            };
            let what = "bucket versioning";
            let body = get(&client, account, what, format!("{base}/?versioning"), sign)
                .await?
                .ok_or_else(|| failed(account, what, "bucket not found".into()))?;
            let versioning: S3Versioning =
                quick_xml::de::from_str(&body).map_err(|e| failed(account, what, e.to_string()))?;
            if versioning.status.as_deref() != Some("Enabled") {
                return Ok(Discovered {
                    retention: Retention::None,
                    from: "bucket versioning",
                });
            }
            let what = "bucket lifecycle";
            // No lifecycle configuration is a 404 (NoSuchLifecycleConfiguration).
            let rules =
                match get(&client, account, what, format!("{base}/?lifecycle"), sign).await? {
                    Some(body) => {
                        quick_xml::de::from_str::<S3Lifecycle>(&body)
                            .map_err(|e| failed(account, what, e.to_string()))?
                            .rules
                    }
                    None => Vec::new(),
                };
            Ok(Discovered {
                retention: Retention::Versioning {
                    noncurrent_expiry_days: noncurrent_expiry(&rules, prefix),
                },
                from: "bucket versioning and lifecycle",
            })
        }
    }
}

fn failed(account: &Account, what: &'static str, reason: String) -> DiscoveryError {
    DiscoveryError::Failed {
        account: account.display_name(),
        what,
        reason,
    }
}

/// The client for one discovery's requests (they share its connections).
fn http_client(account: &Account) -> Result<HttpClient, DiscoveryError> {
    ReqwestConnector::default()
        .connect(
            &ClientOptions::new()
                .with_allow_http(true)
                .with_timeout(DISCOVERY_TIMEOUT),
        )
        .map_err(|e| failed(account, "retention policy", e.to_string()))
}

/// A signed GET; None for a 404.
async fn get(
    client: &HttpClient,
    account: &Account,
    what: &'static str,
    url: String,
    sign: impl FnOnce(&mut object_store::client::HttpRequest) -> Result<(), String>,
) -> Result<Option<String>, DiscoveryError> {
    let fail = |reason: String| failed(account, what, reason);
    let mut req = http::Request::get(url)
        .body(HttpRequestBody::empty())
        .map_err(|e| fail(e.to_string()))?;
    sign(&mut req).map_err(fail)?;
    let resp = client.execute(req).await.map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    if status == http::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    // Read through the bound: a store (or whatever answers at its address) must not make
    // us buffer an unbounded body.
    let mut body = Vec::new();
    let mut chunks = resp.into_body().bytes_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
        let chunk = chunk.map_err(|e| fail(e.to_string()))?;
        if body.len() + chunk.len() > RESPONSE_MAX_BYTES {
            return Err(fail(format!("response over {RESPONSE_MAX_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        // Only the store's error code goes into reports, never its body as it came.
        return Err(fail(match error_code(&text) {
            Some(code) => format!("HTTP {status} ({code})"),
            None => format!("HTTP {status}"),
        }));
    }
    Ok(Some(text))
}

/// The `<Code>` of an Azure or S3 XML error body, when it is a plain identifier.
fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let code = &body[start..start + body[start..].find("</Code>")?];
    let plain = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    plain.then_some(code)
}

/// The shortest noncurrent expiry among enabled rules that cover `prefix`.
fn noncurrent_expiry(rules: &[S3Rule], prefix: &str) -> Option<u64> {
    rules
        .iter()
        .filter(|r| r.status == "Enabled")
        .filter(|r| {
            let p = r
                .filter
                .as_ref()
                .and_then(|f| f.prefix.as_deref())
                .or(r.prefix.as_deref())
                .unwrap_or("");
            prefix.starts_with(p)
        })
        .filter_map(|r| r.noncurrent_version_expiration.as_ref()?.noncurrent_days)
        .min()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AzureServiceProperties {
    delete_retention_policy: Option<AzureDeleteRetention>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AzureDeleteRetention {
    enabled: bool,
    days: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Versioning {
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Lifecycle {
    #[serde(rename = "Rule", default)]
    rules: Vec<S3Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Rule {
    status: String,
    filter: Option<S3Filter>,
    prefix: Option<String>,
    noncurrent_version_expiration: Option<S3NoncurrentExpiration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Filter {
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3NoncurrentExpiration {
    noncurrent_days: Option<u64>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_error_bodies_give_only_their_code() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AuthorizationFailure</Code><Message>secret detail</Message></Error>";
        assert_eq!(error_code(body), Some("AuthorizationFailure"));
        assert_eq!(error_code("<Code><script>x</script></Code>"), None);
        assert_eq!(error_code("plain text"), None);
    }

    use super::*;

    #[test]
    fn azure_properties_with_and_without_soft_delete() {
        let on = r#"<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties><Logging><Version>1.0</Version></Logging><DeleteRetentionPolicy><Enabled>true</Enabled><Days>7</Days></DeleteRetentionPolicy></StorageServiceProperties>"#;
        let p: AzureServiceProperties = quick_xml::de::from_str(on).unwrap();
        let d = p.delete_retention_policy.unwrap();
        assert!(d.enabled);
        assert_eq!(d.days, Some(7));
        let off = r#"<StorageServiceProperties><DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy></StorageServiceProperties>"#;
        let p: AzureServiceProperties = quick_xml::de::from_str(off).unwrap();
        assert!(!p.delete_retention_policy.unwrap().enabled);
    }

    #[test]
    fn lifecycle_rules_pick_the_shortest_covering_expiry() {
        let xml = r#"<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
          <Rule><ID>a</ID><Filter><Prefix>caches/</Prefix></Filter><Status>Enabled</Status>
            <NoncurrentVersionExpiration><NoncurrentDays>30</NoncurrentDays></NoncurrentVersionExpiration></Rule>
          <Rule><ID>b</ID><Filter><Prefix>other/</Prefix></Filter><Status>Enabled</Status>
            <NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration></Rule>
          <Rule><ID>c</ID><Filter></Filter><Status>Disabled</Status>
            <NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays></NoncurrentVersionExpiration></Rule>
          <Rule><ID>d</ID><Prefix></Prefix><Status>Enabled</Status>
            <Expiration><Days>90</Days></Expiration></Rule>
        </LifecycleConfiguration>"#;
        let l: S3Lifecycle = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(l.rules.len(), 4);
        assert_eq!(noncurrent_expiry(&l.rules, "caches/c1"), Some(30));
        assert_eq!(noncurrent_expiry(&l.rules, "elsewhere/c1"), None);
        let v: S3Versioning = quick_xml::de::from_str(
            r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#,
        )
        .unwrap();
        assert_eq!(v.status.as_deref(), Some("Enabled"));
        let none: S3Versioning = quick_xml::de::from_str(
            r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>"#,
        )
        .unwrap();
        assert_eq!(none.status, None);
    }
}
