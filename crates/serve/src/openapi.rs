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
    /// The cache's name: 1-63 letters, digits and single dashes, starting and ending with a
    /// letter or digit.
    #[param(pattern = "^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$", max_length = 63)]
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
            storageWarnings, storageReport, simulateFault, faultDrills and persistenceModel are cacheplane's extensions.",
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
        app::simulate_fault,
        app::list_drills,
        app::get_drill,
        app::persistence_model,
        app::get_operation,
        app::children::flush_cache,
        app::children::list_upgrade_notifications,
        app::children::list_private_link_resources,
        app::children::list_firewall_rules,
        app::children::get_firewall_rule,
        app::children::put_firewall_rule,
        app::children::delete_firewall_rule,
        app::children::list_patch_schedules,
        app::children::get_patch_schedule,
        app::children::put_patch_schedule,
        app::children::delete_patch_schedule,
        app::children::list_linked_servers,
        app::children::get_linked_server,
        app::children::put_linked_server,
        app::children::delete_linked_server,
        app::children::list_private_endpoint_connections,
        app::children::get_private_endpoint_connection,
        app::children::put_private_endpoint_connection,
        app::children::delete_private_endpoint_connection,
        app::children::list_access_policies,
        app::children::get_access_policy,
        app::children::put_access_policy,
        app::children::delete_access_policy,
        app::children::list_access_policy_assignments,
        app::children::get_access_policy_assignment,
        app::children::put_access_policy_assignment,
        app::children::delete_access_policy_assignment,
        app::children::check_name_availability,
        app::children::list_operations,
    ),
    modifiers(&BearerToken, &ArmConventions),
    security(("bearer" = [])),
    tags((name = "Redis", description = "Caches: Microsoft.Cache/redis"),
        (name = "FaultDrills", description = "cacheplane's extension: fault drills that measure data loss and recovery against what the cache's persistence predicts")),
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

/// What every ARM operation shares, stated once for the whole document: `api-version` is
/// one of [`app::API_VERSIONS`], and any other status comes with ARM's `ErrorResponse`
/// (ARM specifications describe errors as a `default` response the same way).
struct ArmConventions;

impl Modify for ArmConventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
        let versions = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(app::API_VERSIONS.iter().copied()))
            .build();
        let error = ResponseBuilder::new()
            .description("An ARM error: any other status, with its code and message")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name(
                        "ErrorResponse",
                    )))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for p in op.parameters.iter_mut().flatten() {
                    if p.name == "api-version" {
                        p.schema = Some(RefOr::T(versions.clone().into()));
                    }
                }
                op.responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| RefOr::T(error.clone()));
            }
        }
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
