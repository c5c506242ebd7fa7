//! What the Azure CLI and the Azure SDKs need to log in to `serve` and find its API, as
//! Entra ID and Azure Resource Manager publish it: the cloud metadata document
//! (`/metadata/endpoints`, read by `az cloud register`), the tenant discovery document
//! MSAL fetches (`/{tenant}/v2.0/.well-known/openid-configuration`), and a token endpoint
//! (`/{tenant}/oauth2/v2.0/token`, and v1's `/{tenant}/oauth2/token`) that gives one
//! service principal signed access tokens for the management API.
//!
//! The service principal is `client_id` with the management token as its secret, so a
//! token costs no more than the secret that already opens the API. Access tokens are JWTs
//! signed with HS256 keyed by the management token: changing the token revokes them. Their
//! audience is ARM's own (`https://management.core.windows.net/` or
//! `https://management.azure.com/`), so clients that default to the public cloud's scopes
//! work unchanged once their authority points here.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The one tenant served (a made-up GUID, as Entra names tenants).
pub const TENANT_ID: &str = "c0ffee00-cace-4e00-8000-000000000001";
/// The subscription `az login` finds (any other id in a path works too; those holding
/// caches are listed as well).
pub const SUBSCRIPTION_ID: &str = "c0ffee00-cace-4e00-8000-000000000002";
/// The service principal's application (client) id; its secret is the management token.
pub const CLIENT_ID: &str = "cacheplane";
/// The object id the service principal's tokens carry.
const OBJECT_ID: &str = "c0ffee00-cace-4e00-8000-000000000003";
/// How long an access token is valid, as Entra's default.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// ARM's audiences: the first is what `az` asks for, the second what the SDKs ask for.
pub const AUDIENCES: [&str; 2] = [
    "https://management.core.windows.net/",
    "https://management.azure.com/",
];

/// The claims of an access token (Entra ID's names).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub appid: String,
    pub azp: String,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    pub idtyp: String,
    pub ver: String,
}

/// Why the token endpoint refused, in OAuth 2.0's error shape.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl TokenError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        TokenError {
            status,
            error,
            description: description.into(),
        }
    }

    /// Entra's body: `error`, `error_description`, and when it happened.
    pub fn body(&self) -> Value {
        json!({
            "error": self.error,
            "error_description": self.description,
            "error_codes": [],
            "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        })
    }
}

/// A token request's form fields (v2's `scope` or v1's `resource`).
#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    #[serde(default)]
    pub grant_type: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// Issues and checks access tokens, keyed by the management token.
pub struct Identity {
    secret: String,
}

/// `aud` without its trailing slash, for comparing audiences written either way.
fn trimmed(aud: &str) -> &str {
    aud.trim_end_matches('/')
}

/// The ARM audience a scope (`<aud>/.default`, v2) or resource (v1) asks for.
fn audience_of(req: &TokenRequest) -> Result<&'static str, TokenError> {
    let asked = match (&req.scope, &req.resource) {
        (Some(scope), _) => scope
            .split_whitespace()
            .find_map(|s| s.strip_suffix("/.default"))
            .ok_or_else(|| {
                TokenError::new(
                    400,
                    "invalid_scope",
                    format!("the scope '{scope}' names no resource: ask for '<resource>/.default'"),
                )
            })?,
        (None, Some(resource)) => resource.as_str(),
        (None, None) => {
            return Err(TokenError::new(
                400,
                "invalid_request",
                "the request has neither 'scope' nor 'resource'",
            ));
        }
    };
    AUDIENCES
        .into_iter()
        .find(|a| trimmed(a) == trimmed(asked))
        .ok_or_else(|| {
            TokenError::new(
                400,
                "invalid_resource",
                format!(
                    "the resource '{asked}' is not served here; ask for one of: {}",
                    AUDIENCES.join(", ")
                ),
            )
        })
}

impl Identity {
    pub fn new(management_token: &str) -> Identity {
        Identity {
            secret: management_token.to_string(),
        }
    }

    /// The token endpoint's answer to a client-credentials request at `issuer`, at `now`
    /// (seconds since the epoch).
    pub fn issue(&self, req: &TokenRequest, issuer: &str, now: i64) -> Result<Value, TokenError> {
        if req.grant_type != "client_credentials" {
            return Err(TokenError::new(
                400,
                "unsupported_grant_type",
                format!(
                    "the grant type '{}' is not supported here: use client_credentials (a service principal with a secret)",
                    req.grant_type
                ),
            ));
        }
        let secret_ok = bool::from(subtle::ConstantTimeEq::ct_eq(
            req.client_secret.as_bytes(),
            self.secret.as_bytes(),
        ));
        if req.client_id != CLIENT_ID || !secret_ok {
            return Err(TokenError::new(
                401,
                "invalid_client",
                format!(
                    "invalid client credentials: the client id is '{CLIENT_ID}' and its secret is the management API's token"
                ),
            ));
        }
        let aud = audience_of(req)?;
        let claims = Claims {
            aud: aud.to_string(),
            iss: issuer.to_string(),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECS,
            appid: CLIENT_ID.into(),
            azp: CLIENT_ID.into(),
            oid: OBJECT_ID.into(),
            sub: OBJECT_ID.into(),
            tid: TENANT_ID.into(),
            idtyp: "app".into(),
            ver: "1.0".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .map_err(|e| TokenError::new(500, "server_error", e.to_string()))?;
        let mut body = json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECS,
            "ext_expires_in": TOKEN_LIFETIME_SECS,
            "access_token": token,
        });
        if req.resource.is_some() {
            // v1's answer also names the resource and the times as strings.
            body["resource"] = json!(aud);
            body["expires_on"] = json!((now + TOKEN_LIFETIME_SECS).to_string());
            body["not_before"] = json!(now.to_string());
        }
        Ok(body)
    }

    /// Whether `token` is an unexpired access token this identity issued for ARM.
    pub fn verify(&self, token: &str) -> bool {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&AUDIENCES);
        v.set_required_spec_claims(&["exp", "aud"]);
        v.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(self.secret.as_bytes()), &v)
            .is_ok_and(|t| t.claims.tid == TENANT_ID)
    }
}

/// The cloud metadata document of a `serve` at `base` (`https://host:port`), in ARM's
/// `/metadata/endpoints` shape: serve is both the resource manager and the login endpoint.
pub fn cloud_metadata(base: &str) -> Value {
    let base = format!("{}/", base.trim_end_matches('/'));
    json!({
        "name": "cacheplane",
        "portal": base,
        "resourceManager": base,
        "authentication": {
            "loginEndpoint": base,
            "audiences": AUDIENCES,
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "suffixes": {
            "storage": "core.windows.net",
            "redisCacheHostname": "redis.cache.windows.net",
        },
        "media": base,
        "graphAudience": base,
        "graph": base,
        "batch": base,
        "activeDirectoryDataLake": base,
        "sqlManagement": base,
        "gallery": base,
    })
}

/// The tenant discovery document (OpenID Connect) of `tenant` at `base`.
pub fn openid_configuration(base: &str, tenant: &str) -> Value {
    let base = base.trim_end_matches('/');
    let issuer = issuer(base);
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "response_types_supported": ["token"],
        "grant_types_supported": ["client_credentials"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["HS256"],
        "tenant_region_scope": "WW",
        "cloud_instance_name": "cacheplane",
    })
}

/// The issuer tokens of `serve` at `base` name.
pub fn issuer(base: &str) -> String {
    format!("{}/{TENANT_ID}/v2.0", base.trim_end_matches('/'))
}

/// A tenant name in a path is this tenant: its id, `common` or `organizations`.
pub fn is_tenant(name: &str) -> bool {
    name.eq_ignore_ascii_case(TENANT_ID)
        || name.eq_ignore_ascii_case("common")
        || name.eq_ignore_ascii_case("organizations")
}

/// One subscription in ARM's `Subscriptions_Get` shape.
pub fn subscription(id: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{id}"),
        "subscriptionId": id,
        "tenantId": TENANT_ID,
        "displayName": if id == SUBSCRIPTION_ID { "cacheplane".to_string() } else { format!("cacheplane {id}") },
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
    })
}

/// `Tenants_List`'s one tenant.
pub fn tenant() -> Value {
    json!({
        "id": format!("/tenants/{TENANT_ID}"),
        "tenantId": TENANT_ID,
        "tenantCategory": "Home",
        "displayName": "cacheplane",
        "defaultDomain": "cacheplane.local",
        "domains": ["cacheplane.local"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scope: &str) -> TokenRequest {
        TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: CLIENT_ID.into(),
            client_secret: "s3cret".into(),
            scope: Some(scope.into()),
            resource: None,
        }
    }

    #[test]
    fn issued_tokens_verify_for_arm_audiences_only_while_valid() {
        let id = Identity::new("s3cret");
        let now = chrono::Utc::now().timestamp();
        for scope in [
            "https://management.core.windows.net//.default",
            "https://management.azure.com/.default",
        ] {
            let body = id.issue(&request(scope), "https://x", now).unwrap();
            assert_eq!(body["token_type"], "Bearer");
            assert!(id.verify(body["access_token"].as_str().unwrap()), "{scope}");
        }
        // Expired an hour ago.
        let old = id
            .issue(
                &request("https://management.azure.com/.default"),
                "https://x",
                now - 2 * TOKEN_LIFETIME_SECS,
            )
            .unwrap();
        assert!(!id.verify(old["access_token"].as_str().unwrap()));
        // Another key (the management token changed) revokes them.
        let other = Identity::new("another");
        let fresh = id
            .issue(
                &request("https://management.azure.com/.default"),
                "https://x",
                now,
            )
            .unwrap();
        assert!(!other.verify(fresh["access_token"].as_str().unwrap()));
        assert!(!id.verify("s3cret"));
        assert!(!id.verify("a.b.c"));
    }

    #[test]
    fn wrong_secret_client_grant_or_resource_is_refused() {
        let id = Identity::new("s3cret");
        let mut r = request("https://management.azure.com/.default");
        r.client_secret = "guess".into();
        assert_eq!(id.issue(&r, "i", 0).unwrap_err().error, "invalid_client");
        let mut r = request("https://management.azure.com/.default");
        r.client_id = "someone".into();
        assert_eq!(id.issue(&r, "i", 0).unwrap_err().status, 401);
        let mut r = request("https://management.azure.com/.default");
        r.grant_type = "password".into();
        assert_eq!(
            id.issue(&r, "i", 0).unwrap_err().error,
            "unsupported_grant_type"
        );
        let r = request("https://vault.azure.net/.default");
        assert_eq!(id.issue(&r, "i", 0).unwrap_err().error, "invalid_resource");
        let r = request("openid profile");
        assert_eq!(id.issue(&r, "i", 0).unwrap_err().error, "invalid_scope");
    }

    #[test]
    fn v1_requests_name_the_resource() {
        let id = Identity::new("s3cret");
        let mut r = request("");
        r.scope = None;
        r.resource = Some("https://management.core.windows.net/".into());
        let body = id.issue(&r, "i", 100).unwrap();
        assert_eq!(body["resource"], "https://management.core.windows.net/");
        assert_eq!(body["expires_on"], (100 + TOKEN_LIFETIME_SECS).to_string());
    }

    #[test]
    fn the_metadata_has_what_az_cloud_register_reads() {
        let m = cloud_metadata("https://127.0.0.1:8443");
        assert_eq!(m["resourceManager"], "https://127.0.0.1:8443/");
        assert_eq!(
            m["authentication"]["loginEndpoint"],
            "https://127.0.0.1:8443/"
        );
        assert_eq!(m["authentication"]["audiences"][0], AUDIENCES[0]);
        assert!(m["suffixes"].is_object());
        let o = openid_configuration("https://h:1/", TENANT_ID);
        assert_eq!(
            o["token_endpoint"],
            format!("https://h:1/{TENANT_ID}/oauth2/v2.0/token")
        );
        assert!(is_tenant("COMMON") && is_tenant(TENANT_ID) && !is_tenant("contoso"));
    }
}
