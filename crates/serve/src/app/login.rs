//! The routes that let the Azure CLI and the SDKs log in and find their way before they
//! reach a cache: the cloud metadata, Entra ID's discovery and token endpoints (public, as
//! Entra's are), and the few `Microsoft.Resources` reads `az login` makes (subscriptions,
//! tenants), behind the bearer token like the rest of ARM.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{App, Failure, json};
use crate::identity::{self, TokenRequest};
use control::ArmError;

/// `GET /metadata/endpoints`: what `az cloud register --endpoint-resource-manager` reads.
pub(super) async fn cloud_metadata(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    json(
        StatusCode::OK,
        &identity::cloud_metadata(&app.base_url(&headers)),
    )
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (and v1's path): MSAL's tenant
/// discovery.
pub(super) async fn openid_configuration(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !identity::is_tenant(&tenant) {
        return unknown_tenant(&tenant);
    }
    json(
        StatusCode::OK,
        &identity::openid_configuration(&app.base_url(&headers), &tenant),
    )
}

fn unknown_tenant(tenant: &str) -> Response {
    let e = identity::TokenError {
        status: 400,
        error: "invalid_tenant",
        description: format!(
            "tenant '{tenant}' not found: this server has the tenant {}",
            identity::TENANT_ID
        ),
    };
    (StatusCode::BAD_REQUEST, axum::Json(e.body())).into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token` and `/{tenant}/oauth2/token`: client credentials
/// (secret in the form, or HTTP Basic as RFC 6749 also allows) for an ARM access token.
pub(super) async fn token(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !identity::is_tenant(&tenant) {
        return unknown_tenant(&tenant);
    }
    let mut req: TokenRequest = match serde_urlencoded::from_bytes(&body) {
        Ok(r) => r,
        Err(e) => {
            let e = identity::TokenError {
                status: 400,
                error: "invalid_request",
                description: format!("the token request is not a valid form: {e}"),
            };
            return (StatusCode::BAD_REQUEST, axum::Json(e.body())).into_response();
        }
    };
    if let Some((id, secret)) = basic_credentials(&headers) {
        req.client_id = id;
        req.client_secret = secret;
    }
    let now = chrono::Utc::now().timestamp();
    let issuer = identity::issuer(&app.base_url(&headers));
    match app.identity.issue(&req, &issuer, now) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(body),
        )
            .into_response(),
        Err(e) => {
            tracing::info!(client = %req.client_id, error = e.error, "token request refused");
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, axum::Json(e.body())).into_response()
        }
    }
}

/// `Authorization: Basic base64(id:secret)`, when the client authenticates that way.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// The subscriptions a caller sees: the default one and every one holding a cache.
async fn subscriptions(app: &App) -> BTreeSet<String> {
    let mut subs: BTreeSet<String> = app
        .store
        .lock()
        .await
        .all()
        .map(|c| c.subscription.clone())
        .collect();
    subs.insert(identity::SUBSCRIPTION_ID.to_string());
    subs
}

/// `GET /subscriptions` (Subscriptions_List).
pub(super) async fn list_subscriptions(State(app): State<Arc<App>>) -> Response {
    let value: Vec<_> = subscriptions(&app)
        .await
        .iter()
        .map(|s| identity::subscription(s))
        .collect();
    json(StatusCode::OK, &json!({ "value": value }))
}

/// `GET /subscriptions/{sub}` (Subscriptions_Get): any subscription id is served, as
/// caches may be created under any.
pub(super) async fn get_subscription(Path(sub): Path<String>) -> Result<Response, Failure> {
    if uuid::Uuid::parse_str(&sub).is_err() {
        return Err(
            ArmError::not_found(format!("The subscription '{sub}' could not be found.")).into(),
        );
    }
    Ok(json(StatusCode::OK, &identity::subscription(&sub)))
}

/// `GET /tenants` (Tenants_List).
pub(super) async fn list_tenants() -> Response {
    json(StatusCode::OK, &json!({ "value": [identity::tenant()] }))
}
