//! The routes of a cache's child resources (`firewallRules`, `patchSchedules`,
//! `linkedServers`, `privateEndpointConnections`, `accessPolicies`,
//! `accessPolicyAssignments`) — one generic list/get/put/delete over [`Kind`], each kind
//! saying where its children live, how a body is checked and what GET shows — and the
//! cache's other reads and actions tools call: `privateLinkResources`,
//! `listUpgradeNotifications`, `flush`, `Operations_List` and `checkNameAvailability`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use control::ArmError;
use control::children::{self as ch, ChildList, ChildResource, Children};
use control::error::ErrorResponse;
use control::model::Cache;
use control::store::key;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{App, CachePath, Result, internal, json, not_found, parse_body, stored};
use crate::openapi::{ApiVersion, CacheParams};

/// One kind of child resource.
pub(super) trait Kind: 'static {
    /// The path segment and the last part of the resource type (`firewallRules`).
    const SEGMENT: &'static str;
    type Stored: Clone + serde::Serialize + DeserializeOwned + Send;
    type Body: DeserializeOwned;
    type View: serde::Serialize;
    fn map(c: &mut Children) -> &mut BTreeMap<String, Self::Stored>;
    fn check_name(name: &str) -> std::result::Result<(), ArmError> {
        ch::check_child_name(name)
    }
    /// What is stored of `body` for `cache`; `others` reads other caches (links).
    fn accept(
        body: Self::Body,
        cache: &Cache,
        others: &dyn Fn(&str) -> Option<Cache>,
    ) -> std::result::Result<Self::Stored, ArmError>;
    fn view(app: &App, cache: &Cache, stored: &Self::Stored) -> Self::View;
    /// Whether the running node takes the children at once (the firewall).
    const LIVE: bool = false;
    /// The child another cache gets (or loses) with this one, as `(its cache's id, name,
    /// value)`: a link's other end.
    fn counterpart(
        _cache: &Cache,
        _stored: &Self::Stored,
    ) -> Option<(String, String, Self::Stored)> {
        None
    }
}

/// Puts (`put`) or removes a child's counterpart in the other cache, if that cache exists.
fn mirror<K: Kind>(
    store: &mut control::store::ResourceStore,
    counterpart: Option<(String, String, K::Stored)>,
    put: bool,
) -> std::result::Result<(), super::Failure> {
    let Some((id, name, value)) = counterpart else {
        return Ok(());
    };
    let Some(mut other) = store.get(&id).cloned() else {
        return Ok(());
    };
    let map = K::map(&mut other.children);
    if put {
        map.insert(name, value);
    } else if let Some(n) = ch::stored_name(map, &name) {
        map.remove(&n);
    }
    store.put(other).map_err(internal)
}

#[derive(Deserialize)]
pub(super) struct ChildPath {
    #[serde(flatten)]
    cache: CachePath,
    child: String,
}

fn resource<K: Kind>(
    app: &App,
    cache: &Cache,
    name: &str,
    stored: &K::Stored,
) -> ChildResource<K::View> {
    ChildResource::new(&cache.id(), K::SEGMENT, name, K::view(app, cache, stored))
}

fn child_not_found<K: Kind>(p: &ChildPath) -> ArmError {
    ArmError::not_found(format!(
        "The Resource 'Microsoft.Cache/Redis/{}/{}/{}' under resource group '{}' was not found.",
        p.cache.name,
        K::SEGMENT,
        p.child,
        p.cache.rg
    ))
}

pub(super) async fn list<K: Kind>(app: &App, p: &CachePath) -> Result<Response> {
    let id = p.id()?;
    let cache = stored(app, &id, p).await?;
    let mut children = cache.children.clone();
    let value = K::map(&mut children)
        .iter()
        .map(|(name, s)| resource::<K>(app, &cache, name, s))
        .collect();
    Ok(json(StatusCode::OK, &ChildList { value }))
}

pub(super) async fn get<K: Kind>(app: &App, p: &ChildPath) -> Result<Response> {
    let id = p.cache.id()?;
    let cache = stored(app, &id, &p.cache).await?;
    let mut children = cache.children.clone();
    let map = K::map(&mut children);
    let name = ch::stored_name(map, &p.child).ok_or_else(|| child_not_found::<K>(p))?;
    Ok(json(
        StatusCode::OK,
        &resource::<K>(app, &cache, &name, &map[&name]),
    ))
}

pub(super) async fn put<K: Kind>(app: &App, p: &ChildPath, body: &Bytes) -> Result<Response> {
    let id = p.cache.id()?;
    K::check_name(&p.child)?;
    let body: K::Body = parse_body(body)?;
    let (cache, name, created) = {
        let mut store = app.store.lock().await;
        let mut cache = store.get(&id).cloned().ok_or_else(|| not_found(&p.cache))?;
        let others = |id: &str| store.get(id).cloned();
        let value = K::accept(body, &cache, &others)?;
        let map = K::map(&mut cache.children);
        ch::check_room(map, &p.child, K::SEGMENT)?;
        let existing = ch::stored_name(map, &p.child);
        let name = existing.clone().unwrap_or_else(|| p.child.clone());
        map.insert(name.clone(), value.clone());
        store.put(cache.clone()).map_err(internal)?;
        mirror::<K>(&mut store, K::counterpart(&cache, &value), true)?;
        (cache, name, existing.is_none())
    };
    apply_live::<K>(app, &cache).await;
    let mut children = cache.children.clone();
    let stored = &K::map(&mut children)[&name];
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &resource::<K>(app, &cache, &name, stored)))
}

pub(super) async fn delete<K: Kind>(app: &App, p: &ChildPath) -> Result<Response> {
    let id = p.cache.id()?;
    let (cache, removed) = {
        let mut store = app.store.lock().await;
        let mut cache = store.get(&id).cloned().ok_or_else(|| not_found(&p.cache))?;
        let map = K::map(&mut cache.children);
        let removed = ch::stored_name(map, &p.child).and_then(|n| map.remove(&n));
        if let Some(value) = &removed {
            store.put(cache.clone()).map_err(internal)?;
            mirror::<K>(&mut store, K::counterpart(&cache, value), false)?;
        }
        (cache, removed.is_some())
    };
    // ARM answers deletes with the status alone: 204 when there was nothing to delete.
    if !removed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    apply_live::<K>(app, &cache).await;
    Ok(StatusCode::OK.into_response())
}

/// The running node takes a live kind's change at once; the stored record is what the
/// next start uses if this fails.
async fn apply_live<K: Kind>(app: &App, cache: &Cache) {
    if K::LIVE
        && let Err(e) = app.nodes.set_live(&key(&cache.id()), cache).await
    {
        tracing::error!(cache = %cache.id(), error = %e, "the running node did not take the cache's new {}", K::SEGMENT);
    }
}

// ---- the kinds ----

pub(super) struct FirewallRules;

impl Kind for FirewallRules {
    const SEGMENT: &'static str = "firewallRules";
    const LIVE: bool = true;
    type Stored = ch::FirewallRuleProperties;
    type Body = ch::FirewallRuleParameters;
    type View = FirewallRuleView;
    fn map(c: &mut Children) -> &mut BTreeMap<String, Self::Stored> {
        &mut c.firewall_rules
    }
    fn check_name(name: &str) -> std::result::Result<(), ArmError> {
        ch::check_rule_name(name)
    }
    fn accept(
        body: Self::Body,
        _: &Cache,
        _: &dyn Fn(&str) -> Option<Cache>,
    ) -> std::result::Result<Self::Stored, ArmError> {
        body.properties.checked()
    }
    fn view(app: &App, _: &Cache, stored: &Self::Stored) -> FirewallRuleView {
        FirewallRuleView {
            rule: stored.clone(),
            cacheplane_notice: (app.config.node_runtime == crate::NodeRuntime::Process)
                .then(|| "With --node-runtime process, 127.0.0.1 and ::1 are always let in as well: the node's supervisor reaches it from this machine.".into()),
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct FirewallRuleView {
    #[serde(flatten)]
    rule: ch::FirewallRuleProperties,
    #[serde(skip_serializing_if = "Option::is_none")]
    cacheplane_notice: Option<String>,
}

pub(super) struct PatchSchedules;

impl Kind for PatchSchedules {
    const SEGMENT: &'static str = "patchSchedules";
    type Stored = ch::PatchScheduleProperties;
    type Body = ch::PatchScheduleParameters;
    type View = ch::PatchScheduleProperties;
    fn map(c: &mut Children) -> &mut BTreeMap<String, Self::Stored> {
        &mut c.patch_schedules
    }
    fn check_name(name: &str) -> std::result::Result<(), ArmError> {
        if name != "default" {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "default",
                format!("A cache's patch schedule is named 'default', not '{name}'."),
            ));
        }
        Ok(())
    }
    fn accept(
        body: Self::Body,
        cache: &Cache,
        _: &dyn Fn(&str) -> Option<Cache>,
    ) -> std::result::Result<Self::Stored, ArmError> {
        if cache.sku.name != control::model::SkuName::Premium {
            return Err(ArmError::bad_request(
                "FeatureNotSupportedForSku",
                "sku",
                "Patch schedules are a Premium feature.",
            ));
        }
        body.properties.checked()
    }
    fn view(_: &App, _: &Cache, stored: &Self::Stored) -> Self::View {
        stored.clone()
    }
}

pub(super) struct LinkedServers;

impl Kind for LinkedServers {
    const SEGMENT: &'static str = "linkedServers";
    type Stored = ch::LinkedServerProperties;
    type Body = ch::LinkedServerParameters;
    type View = ch::LinkedServerView;
    fn map(c: &mut Children) -> &mut BTreeMap<String, Self::Stored> {
        &mut c.linked_servers
    }
    fn accept(
        body: Self::Body,
        cache: &Cache,
        others: &dyn Fn(&str) -> Option<Cache>,
    ) -> std::result::Result<Self::Stored, ArmError> {
        let link = body.properties;
        let premium = |c: &Cache| c.sku.name == control::model::SkuName::Premium;
        let Some(other) = others(&link.linked_redis_cache_id) else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "properties.linkedRedisCacheId",
                format!("There is no cache '{}'.", link.linked_redis_cache_id),
            ));
        };
        if other.id() == cache.id() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "properties.linkedRedisCacheId",
                "A cache cannot be linked to itself.",
            ));
        }
        if !premium(cache) || !premium(&other) {
            return Err(ArmError::bad_request(
                "FeatureNotSupportedForSku",
                "sku",
                "Geo-replication links Premium caches only.",
            ));
        }
        Ok(ch::LinkedServerProperties {
            linked_redis_cache_id: other.id(),
            ..link
        })
    }
    /// The linked cache lists this one in the other role, as Azure shows both ends.
    fn counterpart(cache: &Cache, stored: &Self::Stored) -> Option<(String, String, Self::Stored)> {
        let role = match stored.server_role {
            ch::ServerRole::Primary => ch::ServerRole::Secondary,
            ch::ServerRole::Secondary => ch::ServerRole::Primary,
        };
        Some((
            stored.linked_redis_cache_id.clone(),
            cache.name.clone(),
            ch::LinkedServerProperties {
                linked_redis_cache_id: cache.id(),
                linked_redis_cache_location: cache.location.clone(),
                server_role: role,
            },
        ))
    }
    fn view(app: &App, _: &Cache, stored: &Self::Stored) -> Self::View {
        let host = app.config.host.clone();
        ch::LinkedServerView {
            linked_redis_cache_id: stored.linked_redis_cache_id.clone(),
            linked_redis_cache_location: stored.linked_redis_cache_location.clone(),
            server_role: stored.server_role,
            provisioning_state: "Succeeded".into(),
            geo_replicated_primary_host_name: host.clone(),
            primary_host_name: host,
            cacheplane_notice: ch::LINKED_SERVER_NOTICE.into(),
        }
    }
}

pub(super) struct PrivateEndpointConnections;

impl Kind for PrivateEndpointConnections {
    const SEGMENT: &'static str = "privateEndpointConnections";
    type Stored = ch::PrivateEndpointConnectionProperties;
    type Body = ch::PrivateEndpointConnectionParameters;
    type View = ch::PrivateEndpointConnectionView;
    fn map(c: &mut Children) -> &mut BTreeMap<String, Self::Stored> {
        &mut c.private_endpoint_connections
    }
    fn check_name(name: &str) -> std::result::Result<(), ArmError> {
        // Azure names connections after the endpoint, dots included.
        ch::check_child_name(&name.replace('.', "_"))
    }
    fn accept(
        body: Self::Body,
        _: &Cache,
        _: &dyn Fn(&str) -> Option<Cache>,
    ) -> std::result::Result<Self::Stored, ArmError> {
        body.properties.checked()
    }
    fn view(_: &App, _: &Cache, stored: &Self::Stored) -> Self::View {
        ch::PrivateEndpointConnectionView {
            stored: stored.clone(),
            provisioning_state: "Succeeded".into(),
            cacheplane_notice: ch::PRIVATE_ENDPOINT_NOTICE.into(),
        }
    }
}

pub(super) struct AccessPolicies;

impl Kind for AccessPolicies {
    const SEGMENT: &'static str = "accessPolicies";
    type Stored = ch::AccessPolicyProperties;
    type Body = ch::AccessPolicyParameters;
    type View = ch::AccessPolicyView;
    fn map(c: &mut Children) -> &mut BTreeMap<String, Self::Stored> {
        &mut c.access_policies
    }
    fn check_name(name: &str) -> std::result::Result<(), ArmError> {
        if ch::BUILT_IN_POLICIES
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "accessPolicyName",
                format!("'{name}' is a built-in policy; it cannot be changed."),
            ));
        }
        ch::check_child_name(name)
    }
    fn accept(
        body: Self::Body,
        _: &Cache,
        _: &dyn Fn(&str) -> Option<Cache>,
    ) -> std::result::Result<Self::Stored, ArmError> {
        ch::check_permissions(&body.properties.permissions)?;
        Ok(body.properties)
    }
    fn view(_: &App, _: &Cache, stored: &Self::Stored) -> Self::View {
        policy_view("Custom", &stored.permissions)
    }
}

fn policy_view(kind: &str, permissions: &str) -> ch::AccessPolicyView {
    ch::AccessPolicyView {
        kind: kind.into(),
        permissions: permissions.into(),
        provisioning_state: "Succeeded".into(),
        cacheplane_notice: ch::ACCESS_POLICY_NOTICE.into(),
    }
}

pub(super) struct AccessPolicyAssignments;

impl Kind for AccessPolicyAssignments {
    const SEGMENT: &'static str = "accessPolicyAssignments";
    type Stored = ch::AccessPolicyAssignmentProperties;
    type Body = ch::AccessPolicyAssignmentParameters;
    type View = ch::AccessPolicyAssignmentView;
    fn map(c: &mut Children) -> &mut BTreeMap<String, Self::Stored> {
        &mut c.access_policy_assignments
    }
    fn accept(
        body: Self::Body,
        cache: &Cache,
        _: &dyn Fn(&str) -> Option<Cache>,
    ) -> std::result::Result<Self::Stored, ArmError> {
        body.properties.checked(&cache.children)?;
        Ok(body.properties)
    }
    fn view(_: &App, _: &Cache, stored: &Self::Stored) -> Self::View {
        ch::AccessPolicyAssignmentView {
            stored: stored.clone(),
            provisioning_state: "Succeeded".into(),
            cacheplane_notice: ch::ACCESS_POLICY_NOTICE.into(),
        }
    }
}

/// The built-in access policies are children too: GET and list show them.
pub(super) async fn list_policies(app: &App, p: &CachePath) -> Result<Response> {
    let id = p.id()?;
    let cache = stored(app, &id, p).await?;
    let mut value: Vec<_> = ch::BUILT_IN_POLICIES
        .iter()
        .map(|(name, rules)| {
            ChildResource::new(&id, "accessPolicies", name, policy_view("BuiltIn", rules))
        })
        .collect();
    value.extend(cache.children.access_policies.iter().map(|(name, s)| {
        ChildResource::new(
            &id,
            "accessPolicies",
            name,
            policy_view("Custom", &s.permissions),
        )
    }));
    Ok(json(StatusCode::OK, &ChildList { value }))
}

pub(super) async fn get_policy(app: &App, p: &ChildPath) -> Result<Response> {
    let id = p.cache.id()?;
    let cache = stored(app, &id, &p.cache).await?;
    let Some((name, kind, rules)) = ch::policy(&cache.children, &p.child) else {
        return Err(child_not_found::<AccessPolicies>(p).into());
    };
    Ok(json(
        StatusCode::OK,
        &ChildResource::new(&id, "accessPolicies", name, policy_view(kind, rules)),
    ))
}

// ---- the cache's other reads and actions ----

/// `GET .../privateLinkResources`.
pub(super) async fn private_link_resources(app: &App, p: &CachePath) -> Result<Response> {
    let id = p.id()?;
    stored(app, &id, p).await?;
    Ok(json(
        StatusCode::OK,
        &ChildList {
            value: vec![ch::private_link_resource(&id)],
        },
    ))
}

/// `GET .../listUpgradeNotifications`: the maintenance the patch schedule caused.
pub(super) async fn upgrade_notifications(app: &App, p: &CachePath) -> Result<Response> {
    let id = p.id()?;
    let cache = stored(app, &id, p).await?;
    let value = cache
        .children
        .maintenance
        .iter()
        .map(ch::MaintenanceEvent::notification)
        .collect();
    Ok(json(StatusCode::OK, &ch::NotificationList { value }))
}

/// `POST .../flush`: every database emptied, as a long-running operation.
pub(super) async fn flush(app: Arc<App>, p: &CachePath, headers: &HeaderMap) -> Result<Response> {
    let id = p.id()?;
    let cache = stored(&app, &id, p).await?;
    let k = key(&id);
    let busy = app.claim(&k, &id)?;
    let (op, op_id) = app
        .new_operation(&cache.location, &p.sub, &k, "flush")
        .await?;
    let worker = app.clone();
    app.run_operation(op, busy, "FlushFailed", "flush", async move {
        worker.nodes.flush(&k).await
    });
    let mut response = json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"id": op_id, "status": "InProgress"}),
    );
    let headers_out = app.async_headers(headers, &op_id);
    let location = headers_out[0].1.clone();
    response.headers_mut().extend(headers_out);
    response
        .headers_mut()
        .insert(axum::http::header::LOCATION, location);
    Ok(response)
}

/// The names of the child-resource routes, annotated for the OpenAPI document. One macro
/// per kind: list, get, put, delete.
macro_rules! child_routes {
    ($kind:ty, $tag:literal, $list:ident, $get:ident, $put:ident, $delete:ident,
     $list_path:literal, $item_path:literal, $param:literal, $schema:ty, $body:ty,
     $list_op:literal, $get_op:literal, $put_op:literal, $delete_op:literal) => {
        #[utoipa::path(get, path = $list_path, tag = $tag, operation_id = $list_op,
            params(CacheParams, ApiVersion),
            responses((status = 200, description = "The cache's children", body = ChildList<$schema>),
                (status = 404, description = "No such cache", body = ErrorResponse)))]
        pub(super) async fn $list(State(app): State<Arc<App>>, Path(p): Path<CachePath>) -> Result<Response> {
            list::<$kind>(&app, &p).await
        }

        #[utoipa::path(get, path = $item_path, tag = $tag, operation_id = $get_op,
            params(CacheParams, ($param = String, Path), ApiVersion),
            responses((status = 200, description = "The child", body = ChildResource<$schema>),
                (status = 404, description = "No such cache or child", body = ErrorResponse)))]
        pub(super) async fn $get(State(app): State<Arc<App>>, Path(p): Path<ChildPath>) -> Result<Response> {
            get::<$kind>(&app, &p).await
        }

        #[utoipa::path(put, path = $item_path, tag = $tag, operation_id = $put_op,
            params(CacheParams, ($param = String, Path), ApiVersion), request_body = $body,
            responses((status = 200, description = "Replaced", body = ChildResource<$schema>),
                (status = 201, description = "Created", body = ChildResource<$schema>),
                (status = 400, description = "Invalid body or name", body = ErrorResponse),
                (status = 404, description = "No such cache", body = ErrorResponse)))]
        pub(super) async fn $put(State(app): State<Arc<App>>, Path(p): Path<ChildPath>, body: Bytes) -> Result<Response> {
            put::<$kind>(&app, &p, &body).await
        }

        #[utoipa::path(delete, path = $item_path, tag = $tag, operation_id = $delete_op,
            params(CacheParams, ($param = String, Path), ApiVersion),
            responses((status = 200, description = "Deleted"), (status = 204, description = "There was none"),
                (status = 404, description = "No such cache", body = ErrorResponse)))]
        pub(super) async fn $delete(State(app): State<Arc<App>>, Path(p): Path<ChildPath>) -> Result<Response> {
            delete::<$kind>(&app, &p).await
        }
    };
}

child_routes!(
    FirewallRules,
    "FirewallRules",
    list_firewall_rules,
    get_firewall_rule,
    put_firewall_rule,
    delete_firewall_rule,
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/firewallRules",
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/firewallRules/{ruleName}",
    "ruleName",
    FirewallRuleView,
    ch::FirewallRuleParameters,
    "FirewallRules_List",
    "FirewallRules_Get",
    "FirewallRules_CreateOrUpdate",
    "FirewallRules_Delete"
);

child_routes!(
    PatchSchedules,
    "PatchSchedules",
    list_patch_schedules,
    get_patch_schedule,
    put_patch_schedule,
    delete_patch_schedule,
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/patchSchedules",
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/patchSchedules/{default}",
    "default",
    ch::PatchScheduleProperties,
    ch::PatchScheduleParameters,
    "PatchSchedules_ListByRedisResource",
    "PatchSchedules_Get",
    "PatchSchedules_CreateOrUpdate",
    "PatchSchedules_Delete"
);

child_routes!(
    LinkedServers,
    "LinkedServer",
    list_linked_servers,
    get_linked_server,
    put_linked_server,
    delete_linked_server,
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/linkedServers",
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/linkedServers/{linkedServerName}",
    "linkedServerName",
    ch::LinkedServerView,
    ch::LinkedServerParameters,
    "LinkedServer_List",
    "LinkedServer_Get",
    "LinkedServer_Create",
    "LinkedServer_Delete"
);

child_routes!(
    PrivateEndpointConnections,
    "PrivateEndpointConnections",
    list_private_endpoint_connections,
    get_private_endpoint_connection,
    put_private_endpoint_connection,
    delete_private_endpoint_connection,
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/privateEndpointConnections",
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/privateEndpointConnections/{privateEndpointConnectionName}",
    "privateEndpointConnectionName",
    ch::PrivateEndpointConnectionView,
    ch::PrivateEndpointConnectionParameters,
    "PrivateEndpointConnections_List",
    "PrivateEndpointConnections_Get",
    "PrivateEndpointConnections_Put",
    "PrivateEndpointConnections_Delete"
);

child_routes!(
    AccessPolicyAssignments,
    "AccessPolicyAssignment",
    list_access_policy_assignments,
    get_access_policy_assignment,
    put_access_policy_assignment,
    delete_access_policy_assignment,
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/accessPolicyAssignments",
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/accessPolicyAssignments/{accessPolicyAssignmentName}",
    "accessPolicyAssignmentName",
    ch::AccessPolicyAssignmentView,
    ch::AccessPolicyAssignmentParameters,
    "AccessPolicyAssignment_List",
    "AccessPolicyAssignment_Get",
    "AccessPolicyAssignment_CreateUpdate",
    "AccessPolicyAssignment_Delete"
);

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/accessPolicies",
    tag = "AccessPolicy", operation_id = "AccessPolicy_List", params(CacheParams, ApiVersion),
    responses((status = 200, description = "The built-in and custom policies", body = ChildList<ch::AccessPolicyView>),
        (status = 404, description = "No such cache", body = ErrorResponse)))]
pub(super) async fn list_access_policies(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
) -> Result<Response> {
    list_policies(&app, &p).await
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/accessPolicies/{accessPolicyName}",
    tag = "AccessPolicy", operation_id = "AccessPolicy_Get", params(CacheParams, ("accessPolicyName" = String, Path), ApiVersion),
    responses((status = 200, description = "The policy", body = ChildResource<ch::AccessPolicyView>),
        (status = 404, description = "No such cache or policy", body = ErrorResponse)))]
pub(super) async fn get_access_policy(
    State(app): State<Arc<App>>,
    Path(p): Path<ChildPath>,
) -> Result<Response> {
    get_policy(&app, &p).await
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/accessPolicies/{accessPolicyName}",
    tag = "AccessPolicy", operation_id = "AccessPolicy_CreateUpdate", params(CacheParams, ("accessPolicyName" = String, Path), ApiVersion),
    request_body = ch::AccessPolicyParameters,
    responses((status = 200, description = "Replaced", body = ChildResource<ch::AccessPolicyView>),
        (status = 201, description = "Created", body = ChildResource<ch::AccessPolicyView>),
        (status = 400, description = "Invalid rules, or a built-in policy's name", body = ErrorResponse)))]
pub(super) async fn put_access_policy(
    State(app): State<Arc<App>>,
    Path(p): Path<ChildPath>,
    body: Bytes,
) -> Result<Response> {
    put::<AccessPolicies>(&app, &p, &body).await
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/accessPolicies/{accessPolicyName}",
    tag = "AccessPolicy", operation_id = "AccessPolicy_Delete", params(CacheParams, ("accessPolicyName" = String, Path), ApiVersion),
    responses((status = 200, description = "Deleted"), (status = 204, description = "There was none")))]
pub(super) async fn delete_access_policy(
    State(app): State<Arc<App>>,
    Path(p): Path<ChildPath>,
) -> Result<Response> {
    delete::<AccessPolicies>(&app, &p).await
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/privateLinkResources",
    tag = "PrivateLinkResources", operation_id = "PrivateLinkResources_ListByRedisCache", params(CacheParams, ApiVersion),
    responses((status = 200, description = "The cache's one private link resource", body = ChildList<ch::PrivateLinkResourceProperties>),
        (status = 404, description = "No such cache", body = ErrorResponse)))]
pub(super) async fn list_private_link_resources(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
) -> Result<Response> {
    private_link_resources(&app, &p).await
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/listUpgradeNotifications",
    tag = "Redis", operation_id = "Redis_ListUpgradeNotifications", params(CacheParams, ("history" = Option<f64>, Query), ApiVersion),
    responses((status = 200, description = "The maintenance the patch schedule caused", body = ch::NotificationList),
        (status = 404, description = "No such cache", body = ErrorResponse)))]
pub(super) async fn list_upgrade_notifications(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
) -> Result<Response> {
    upgrade_notifications(&app, &p).await
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Cache/redis/{name}/flush",
    tag = "Redis", operation_id = "Redis_FlushCache", params(CacheParams, ApiVersion),
    responses((status = 202, description = "Flushing: follow Azure-AsyncOperation or Location"),
        (status = 404, description = "No such cache", body = ErrorResponse),
        (status = 409, description = "Another change of the cache runs", body = ErrorResponse)))]
pub(super) async fn flush_cache(
    State(app): State<Arc<App>>,
    Path(p): Path<CachePath>,
    headers: HeaderMap,
) -> Result<Response> {
    flush(app, &p, &headers).await
}

// ---- the provider's own operations ----

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CheckNameParameters {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
pub(super) struct SubPath {
    sub: String,
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Cache/CheckNameAvailability",
    tag = "Redis", operation_id = "Redis_CheckNameAvailability",
    params(("subscriptionId" = String, Path), ApiVersion), request_body = CheckNameParameters,
    responses((status = 200, description = "The name is free"),
        (status = 400, description = "Not a valid cache name, or another resource type", body = ErrorResponse),
        (status = 409, description = "A cache has the name (names are global, as host names are)", body = ErrorResponse)))]
pub(super) async fn check_name_availability(
    State(app): State<Arc<App>>,
    Path(p): Path<SubPath>,
    body: Bytes,
) -> Result<Response> {
    let _ = p.sub;
    let req: CheckNameParameters = parse_body(&body)?;
    if !req.kind.eq_ignore_ascii_case("Microsoft.Cache/redis") {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            "type",
            format!("'{}' is not a resource type whose names are checked here: use Microsoft.Cache/redis.", req.kind),
        )
        .into());
    }
    control::validate::cache_name(&req.name)?;
    let taken = app
        .store
        .lock()
        .await
        .all()
        .any(|c| c.name.eq_ignore_ascii_case(&req.name));
    if taken {
        return Err(ArmError {
            status: 409,
            code: "NameNotAvailable",
            message: format!("The name '{}' is already in use.", req.name),
            target: Some("name".into()),
        }
        .into());
    }
    Ok((StatusCode::OK, ()).into_response())
}

/// One operation of the provider, as `Operations_List` describes it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ProviderOperation {
    name: String,
    display: OperationDisplay,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct OperationDisplay {
    provider: String,
    resource: String,
    operation: String,
    description: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OperationList {
    value: Vec<ProviderOperation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

/// What the provider serves, by resource and action (Azure RBAC's operation names).
const OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "redis",
        "read",
        "View the cache's settings and configuration",
    ),
    ("redis", "write", "Create or change a cache"),
    ("redis", "delete", "Delete a cache"),
    ("redis", "listKeys/action", "View the cache's access keys"),
    ("redis", "regenerateKey/action", "Regenerate an access key"),
    ("redis", "forceReboot/action", "Reboot the cache's nodes"),
    ("redis", "export/action", "Export the data to an RDB file"),
    ("redis", "import/action", "Import data from RDB files"),
    ("redis", "flush/action", "Delete every key of the cache"),
    (
        "redis",
        "listUpgradeNotifications/read",
        "List the cache's maintenance notifications",
    ),
    ("redis/firewallRules", "read", "View firewall rules"),
    (
        "redis/firewallRules",
        "write",
        "Create or change a firewall rule",
    ),
    ("redis/firewallRules", "delete", "Delete a firewall rule"),
    ("redis/patchSchedules", "read", "View the patch schedule"),
    ("redis/patchSchedules", "write", "Set the patch schedule"),
    (
        "redis/patchSchedules",
        "delete",
        "Delete the patch schedule",
    ),
    ("redis/linkedServers", "read", "View geo-replication links"),
    (
        "redis/linkedServers",
        "write",
        "Create a geo-replication link",
    ),
    (
        "redis/linkedServers",
        "delete",
        "Delete a geo-replication link",
    ),
    (
        "redis/privateEndpointConnections",
        "read",
        "View private endpoint connections",
    ),
    (
        "redis/privateEndpointConnections",
        "write",
        "Approve or reject a private endpoint connection",
    ),
    (
        "redis/privateEndpointConnections",
        "delete",
        "Delete a private endpoint connection",
    ),
    (
        "redis/privateLinkResources",
        "read",
        "View private link resources",
    ),
    ("redis/accessPolicies", "read", "View access policies"),
    (
        "redis/accessPolicies",
        "write",
        "Create or change an access policy",
    ),
    ("redis/accessPolicies", "delete", "Delete an access policy"),
    (
        "redis/accessPolicyAssignments",
        "read",
        "View access policy assignments",
    ),
    (
        "redis/accessPolicyAssignments",
        "write",
        "Assign an access policy",
    ),
    (
        "redis/accessPolicyAssignments",
        "delete",
        "Remove an access policy assignment",
    ),
    (
        "checkNameAvailability",
        "action",
        "Check whether a cache name is available",
    ),
    ("operations", "read", "List the provider's operations"),
];

#[utoipa::path(get, path = "/providers/Microsoft.Cache/operations", tag = "Operations", operation_id = "Operations_List",
    params(ApiVersion),
    responses((status = 200, description = "What the provider serves", body = OperationList)))]
pub(super) async fn list_operations() -> Response {
    let value = OPERATIONS
        .iter()
        .map(|(resource, action, description)| ProviderOperation {
            name: format!("Microsoft.Cache/{resource}/{action}"),
            display: OperationDisplay {
                provider: "Microsoft Cache".into(),
                resource: resource.to_string(),
                operation: description.to_string(),
                description: description.to_string(),
            },
        })
        .collect();
    json(
        StatusCode::OK,
        &OperationList {
            value,
            next_link: None,
        },
    )
}
