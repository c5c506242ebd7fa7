//! The management API's OpenAPI document, generated from the handlers' annotations and the
//! API's types (utoipa), served at `/openapi.json` with a Swagger UI page at `/docs`, and
//! committed as `api/openapi.json` (a test fails when that copy is stale).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

use crate::app;

/// A cache's path: `/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/
/// providers/Microsoft.Cache/redis/{name}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct CacheParams {
    subscriptionId: String,
    resourceGroupName: String,
    /// The cache's name.
    name: String,
}

/// A resource group's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct GroupParams {
    subscriptionId: String,
    resourceGroupName: String,
}

/// The query every request carries.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ApiVersion {
    /// One of the versions the Azure SDKs send (2024-11-01 and its neighbours).
    #[param(rename = "api-version")]
    api_version: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cacheplane management API",
        description = "Microsoft.Cache/redis as Azure Resource Manager serves it, for local caches. \
            Long-running operations answer 201/202 with an Azure-AsyncOperation header. \
            storageWarnings and storageReport are cacheplane's extensions.",
    ),
    paths(
        app::get_cache,
        app::put_cache,
        app::patch_cache,
        app::delete_cache,
        app::list_group,
        app::list_subscription,
        app::list_keys,
        app::regenerate_key,
        app::force_reboot,
        app::export,
        app::import,
        app::storage_report,
        app::accounts_report,
        app::get_operation,
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags((name = "Redis", description = "Caches: Microsoft.Cache/redis")),
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token `cacheplane serve --token` was given (development default: cacheplane-dev-token).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served and committed.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json()
        .expect("the OpenAPI document serializes")
        + "\n"
}

/// A Swagger UI page for the document (its scripts come from a CDN, so the page needs the
/// internet; the document itself does not).
pub const SWAGGER_UI_HTML: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>cacheplane management API</title>
  <link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js" crossorigin></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
  </script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_document_is_current() {
        let committed = include_str!("../../../api/openapi.json");
        assert!(
            committed == super::document(),
            "api/openapi.json is stale: run `cargo run -- openapi > api/openapi.json`"
        );
    }
}
