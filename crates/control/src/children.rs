//! A cache's child resources as ARM shapes them (`firewallRules`, `patchSchedules`,
//! `linkedServers`, `privateEndpointConnections`, `privateLinkResources`,
//! `accessPolicies`, `accessPolicyAssignments`): what is stored with the cache, the checks
//! Azure applies before storing it, and the bodies GET returns. Also the patch schedule's
//! clock: when its next maintenance window opens.
//!
//! Firewall rules and patch schedules are enforced by the control plane (a refused client
//! cannot connect; a window reboots the cache). What has no local counterpart (another
//! region, a private network, Entra ID logins to the cache) is stored and returned, and its
//! `properties.cacheplaneNotice` says what is not done.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use chrono::{Datelike, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ArmError;
use crate::model::RESOURCE_TYPE;

/// Most child resources of one kind per cache (Azure's own limits are lower).
pub const CHILDREN_PER_KIND_MAX: usize = 100;
/// Maintenance events a cache remembers (listUpgradeNotifications reports them).
pub const MAINTENANCE_EVENTS_KEPT: usize = 20;
/// Azure's shortest maintenance window.
pub const MAINTENANCE_WINDOW_MIN_SECS: u64 = 5 * 3600;
/// The window when a schedule entry does not give one.
pub const MAINTENANCE_WINDOW_DEFAULT: &str = "PT5H";

/// Everything stored under one cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Children {
    pub firewall_rules: BTreeMap<String, FirewallRuleProperties>,
    /// Only `default`, as Azure allows.
    pub patch_schedules: BTreeMap<String, PatchScheduleProperties>,
    pub linked_servers: BTreeMap<String, LinkedServerProperties>,
    pub private_endpoint_connections: BTreeMap<String, PrivateEndpointConnectionProperties>,
    /// Custom policies only; the built-in ones are always there.
    pub access_policies: BTreeMap<String, AccessPolicyProperties>,
    pub access_policy_assignments: BTreeMap<String, AccessPolicyAssignmentProperties>,
    /// Maintenance the patch schedule caused, oldest first.
    pub maintenance: Vec<MaintenanceEvent>,
}

impl Children {
    pub fn is_empty(&self) -> bool {
        *self == Children::default()
    }

    /// The node's `cacheplane-firewall` setting: every rule's range (empty: no rules,
    /// every address may connect, as in Azure).
    pub fn firewall_setting(&self) -> String {
        self.firewall_rules
            .values()
            .map(|r| format!("{}-{}", r.start_ip, r.end_ip))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The name under which `map` holds `name`, compared without case as ARM names are.
pub fn stored_name<V>(map: &BTreeMap<String, V>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Room for one more child in `map` (an existing `name` is replaced, not added).
pub fn check_room<V>(map: &BTreeMap<String, V>, name: &str, kind: &str) -> Result<(), ArmError> {
    if stored_name(map, name).is_none() && map.len() >= CHILDREN_PER_KIND_MAX {
        return Err(ArmError::bad_request(
            "LimitExceeded",
            kind,
            format!("A cache holds at most {CHILDREN_PER_KIND_MAX} {kind}."),
        ));
    }
    Ok(())
}

/// A child resource as ARM returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChildResource<P> {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub properties: P,
}

impl<P> ChildResource<P> {
    /// `kind` is the child's segment (`firewallRules`); ids keep it, types too.
    pub fn new(cache_id: &str, kind: &str, name: &str, properties: P) -> Self {
        ChildResource {
            id: format!("{cache_id}/{kind}/{name}"),
            name: name.to_string(),
            kind: format!("{RESOURCE_TYPE}/{kind}"),
            location: None,
            properties,
        }
    }
}

/// ARM's list of children (`{"value": [...]}`, never paged here).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChildList<P> {
    pub value: Vec<ChildResource<P>>,
}

fn invalid(target: &str, message: impl Into<String>) -> ArmError {
    ArmError::bad_request("InvalidParameter", target, message)
}

/// A child's name from a path: letters, digits, `_` and `-`, up to 80 (ARM's usual rule;
/// firewall rules are stricter, see [`check_rule_name`]).
pub fn check_child_name(name: &str) -> Result<(), ArmError> {
    if name.is_empty()
        || name.len() > 80
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            "name",
            format!("'{name}' is not a valid name: 1-80 letters, digits, '_' or '-'."),
        ));
    }
    Ok(())
}

// ---- firewall rules ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FirewallRuleProperties {
    /// First IPv4 address of the range.
    #[serde(rename = "startIP")]
    pub start_ip: String,
    /// Last IPv4 address of the range (inclusive).
    #[serde(rename = "endIP")]
    pub end_ip: String,
}

/// The body of `PUT .../firewallRules/{rule}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct FirewallRuleParameters {
    pub properties: FirewallRuleProperties,
}

/// Firewall rule names: letters, digits and underscores (Azure's rule).
pub fn check_rule_name(name: &str) -> Result<(), ArmError> {
    if name.is_empty()
        || name.len() > 80
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(invalid(
            "ruleName",
            format!(
                "'{name}' is not a valid firewall rule name: 1-80 letters, digits or underscores."
            ),
        ));
    }
    Ok(())
}

impl FirewallRuleProperties {
    /// Both ends IPv4, the start not after the end; written back canonically.
    pub fn checked(&self) -> Result<FirewallRuleProperties, ArmError> {
        let parse = |field: &str, v: &str| {
            v.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid(field, format!("'{v}' is not an IPv4 address.")))
        };
        let start = parse("properties.startIP", &self.start_ip)?;
        let end = parse("properties.endIP", &self.end_ip)?;
        if start > end {
            return Err(invalid(
                "properties.endIP",
                format!("The range {start} - {end} ends before it starts."),
            ));
        }
        Ok(FirewallRuleProperties {
            start_ip: start.to_string(),
            end_ip: end.to_string(),
        })
    }
}

// ---- patch schedules ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DayOfWeek {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
    Everyday,
    Weekend,
}

impl DayOfWeek {
    fn includes(self, day: chrono::Weekday) -> bool {
        use chrono::Weekday::*;
        match self {
            DayOfWeek::Everyday => true,
            DayOfWeek::Weekend => matches!(day, Sat | Sun),
            DayOfWeek::Monday => day == Mon,
            DayOfWeek::Tuesday => day == Tue,
            DayOfWeek::Wednesday => day == Wed,
            DayOfWeek::Thursday => day == Thu,
            DayOfWeek::Friday => day == Fri,
            DayOfWeek::Saturday => day == Sat,
            DayOfWeek::Sunday => day == Sun,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleEntry {
    pub day_of_week: DayOfWeek,
    /// Hour of the day (UTC) the window opens, 0-23.
    pub start_hour_utc: i64,
    /// ISO 8601 duration, at least `PT5H` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchScheduleProperties {
    pub schedule_entries: Vec<ScheduleEntry>,
}

/// The body of `PUT .../patchSchedules/default`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PatchScheduleParameters {
    pub properties: PatchScheduleProperties,
}

/// Seconds in an ISO 8601 duration of days, hours, minutes and seconds (`P1DT2H30M`).
pub fn duration_secs(text: &str) -> Option<u64> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total: u64 = 0;
    let mut read = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
            } else {
                let (_, secs) = units.iter().find(|(u, _)| *u == c)?;
                let n: u64 = number.parse().ok()?;
                total = total.checked_add(n.checked_mul(*secs)?)?;
                number.clear();
            }
        }
        number.is_empty().then_some(())
    };
    read(date, &[('W', 604_800), ('D', 86_400)])?;
    read(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
    (text.len() > 1 && !text.ends_with('T')).then_some(total)
}

impl PatchScheduleProperties {
    /// At least one entry, hours 0-23, windows of at least five hours; the default window
    /// written in.
    pub fn checked(&self) -> Result<PatchScheduleProperties, ArmError> {
        if self.schedule_entries.is_empty() {
            return Err(invalid(
                "properties.scheduleEntries",
                "A patch schedule needs at least one entry.",
            ));
        }
        if self.schedule_entries.len() > 7 * 24 {
            return Err(invalid(
                "properties.scheduleEntries",
                "A patch schedule has at most one entry per hour of the week.",
            ));
        }
        let mut entries = Vec::new();
        for (i, e) in self.schedule_entries.iter().enumerate() {
            if !(0..24).contains(&e.start_hour_utc) {
                return Err(invalid(
                    &format!("properties.scheduleEntries[{i}].startHourUtc"),
                    format!("{} is not an hour of the day (0-23).", e.start_hour_utc),
                ));
            }
            let window = e
                .maintenance_window
                .clone()
                .unwrap_or_else(|| MAINTENANCE_WINDOW_DEFAULT.into());
            match duration_secs(&window) {
                Some(s) if s >= MAINTENANCE_WINDOW_MIN_SECS => {}
                Some(_) => {
                    return Err(invalid(
                        &format!("properties.scheduleEntries[{i}].maintenanceWindow"),
                        format!(
                            "The maintenance window {window} is shorter than five hours (PT5H), Azure's minimum."
                        ),
                    ));
                }
                None => {
                    return Err(invalid(
                        &format!("properties.scheduleEntries[{i}].maintenanceWindow"),
                        format!("'{window}' is not an ISO 8601 duration such as PT5H."),
                    ));
                }
            }
            entries.push(ScheduleEntry {
                maintenance_window: Some(window),
                ..e.clone()
            });
        }
        Ok(PatchScheduleProperties {
            schedule_entries: entries,
        })
    }

    /// The first window opening after `after_ms` and no later than `until_ms` (ms since
    /// the epoch, UTC), with its entry.
    pub fn window_between(&self, after_ms: i64, until_ms: i64) -> Option<(i64, &ScheduleEntry)> {
        let start = chrono::Utc.timestamp_millis_opt(after_ms).single()?;
        // Windows open on the hour: the first whole hour strictly after `after_ms`, then
        // each hour for a week and a day (every entry comes round in a week).
        let mut hour =
            start.with_minute(0)?.with_second(0)?.with_nanosecond(0)? + chrono::Duration::hours(1);
        for _ in 0..(8 * 24) {
            let at = hour.timestamp_millis();
            if at > until_ms {
                return None;
            }
            if let Some(e) = self.schedule_entries.iter().find(|e| {
                e.start_hour_utc == i64::from(hour.hour()) && e.day_of_week.includes(hour.weekday())
            }) {
                return Some((at, e));
            }
            hour += chrono::Duration::hours(1);
        }
        None
    }
}

/// One maintenance reboot the patch schedule caused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceEvent {
    /// When the window opened, on the cache's clock (RFC 3339).
    pub window_start: String,
    /// When the reboot happened (RFC 3339, wall clock).
    pub rebooted_at: String,
    /// What the node restored from after the reboot, or why it failed.
    pub outcome: String,
}

/// One entry of `listUpgradeNotifications`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeNotification {
    pub name: String,
    pub timestamp: String,
    pub upsell_notification: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationList {
    pub value: Vec<UpgradeNotification>,
}

impl MaintenanceEvent {
    pub fn notification(&self) -> UpgradeNotification {
        UpgradeNotification {
            name: format!("Scheduled maintenance: {}", self.outcome),
            timestamp: self.rebooted_at.clone(),
            upsell_notification: BTreeMap::from([(
                "windowStart".to_string(),
                self.window_start.clone(),
            )]),
        }
    }
}

// ---- linked servers (geo-replication) ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ServerRole {
    Primary,
    Secondary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkedServerCreateProperties {
    pub linked_redis_cache_id: String,
    pub linked_redis_cache_location: String,
    pub server_role: ServerRole,
}

/// The body of `PUT .../linkedServers/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LinkedServerParameters {
    pub properties: LinkedServerCreateProperties,
}

/// What is stored of a link (the other cache's host names are read when returned).
pub type LinkedServerProperties = LinkedServerCreateProperties;

/// A link as GET returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkedServerView {
    pub linked_redis_cache_id: String,
    pub linked_redis_cache_location: String,
    pub server_role: ServerRole,
    pub provisioning_state: String,
    pub geo_replicated_primary_host_name: String,
    pub primary_host_name: String,
    pub cacheplane_notice: String,
}

pub const LINKED_SERVER_NOTICE: &str = "Recorded only: cacheplane does not replicate data between caches, so the linked cache does not receive this cache's writes.";

// ---- private endpoints ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionState {
    /// Pending, Approved or Rejected.
    pub status: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub actions_required: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivateEndpointRef {
    #[serde(default)]
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpointConnectionProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_endpoint: Option<PrivateEndpointRef>,
    pub private_link_service_connection_state: ConnectionState,
}

/// The body of `PUT .../privateEndpointConnections/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PrivateEndpointConnectionParameters {
    pub properties: PrivateEndpointConnectionProperties,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpointConnectionView {
    #[serde(flatten)]
    pub stored: PrivateEndpointConnectionProperties,
    pub provisioning_state: String,
    pub cacheplane_notice: String,
}

pub const PRIVATE_ENDPOINT_NOTICE: &str = "Recorded only: there is no private network locally; clients reach the cache on its public ports, under its firewall rules.";

impl PrivateEndpointConnectionProperties {
    pub fn checked(&self) -> Result<PrivateEndpointConnectionProperties, ArmError> {
        let status = &self.private_link_service_connection_state.status;
        let Some(canonical) = ["Pending", "Approved", "Rejected"]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(status))
        else {
            return Err(invalid(
                "properties.privateLinkServiceConnectionState.status",
                format!("'{status}' is not one of Pending, Approved, Rejected."),
            ));
        };
        let mut out = self.clone();
        out.private_link_service_connection_state.status = canonical.into();
        Ok(out)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateLinkResourceProperties {
    pub group_id: String,
    pub required_members: Vec<String>,
    pub required_zone_names: Vec<String>,
}

/// The one private link resource a cache has (`redisCache`).
pub fn private_link_resource(cache_id: &str) -> ChildResource<PrivateLinkResourceProperties> {
    ChildResource::new(
        cache_id,
        "privateLinkResources",
        "redisCache",
        PrivateLinkResourceProperties {
            group_id: "redisCache".into(),
            required_members: vec!["redisCache".into()],
            required_zone_names: vec!["privatelink.redis.cache.windows.net".into()],
        },
    )
}

// ---- access policies and assignments ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyProperties {
    /// Redis ACL rules (`+@read ~app:*`).
    pub permissions: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct AccessPolicyParameters {
    pub properties: AccessPolicyProperties,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyView {
    /// BuiltIn or Custom.
    #[serde(rename = "type")]
    pub kind: String,
    pub permissions: String,
    pub provisioning_state: String,
    pub cacheplane_notice: String,
}

/// Azure's built-in policies and their rules.
pub const BUILT_IN_POLICIES: [(&str, &str); 3] = [
    ("Data Owner", "+@all allkeys allchannels"),
    (
        "Data Contributor",
        "+@all -@dangerous +cluster|info +cluster|nodes +cluster|slots allkeys allchannels",
    ),
    (
        "Data Reader",
        "+@read +@connection +cluster|info +cluster|nodes +cluster|slots allkeys allchannels",
    ),
];

pub const ACCESS_POLICY_NOTICE: &str = "Recorded only: Microsoft Entra logins to the cache are not emulated; clients authenticate with the access keys.";

/// Rules in Redis's ACL syntax (the parts a policy may hold).
pub fn check_permissions(rules: &str) -> Result<(), ArmError> {
    let target = "properties.permissions";
    if rules.trim().is_empty() {
        return Err(invalid(target, "A policy needs at least one rule."));
    }
    for rule in rules.split_whitespace() {
        let ok = match rule {
            "allkeys" | "allchannels" | "allcommands" | "nocommands" | "resetkeys"
            | "resetchannels" => true,
            _ => {
                let (prefix, rest) = rule.split_at(1);
                match prefix {
                    "+" | "-" => {
                        !rest.is_empty()
                            && rest.chars().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '@' | '|' | '-' | '_')
                            })
                    }
                    "~" | "&" => !rest.is_empty(),
                    "%" => rest.contains('~'),
                    _ => false,
                }
            }
        };
        if !ok {
            return Err(invalid(
                target,
                format!(
                    "'{rule}' is not a Redis ACL rule (+@category, -command, ~pattern, &channel, allkeys, ...)."
                ),
            ));
        }
    }
    Ok(())
}

/// The policy named `name` (built-in or stored, without case), as `(its name as held,
/// type, permissions)`.
pub fn policy<'a>(children: &'a Children, name: &str) -> Option<(&'a str, &'static str, &'a str)> {
    if let Some((held, rules)) = BUILT_IN_POLICIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Some((held, "BuiltIn", rules));
    }
    let (held, stored) = children
        .access_policies
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    Some((held, "Custom", &stored.permissions))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyAssignmentProperties {
    /// The Entra object id the policy is given to.
    pub object_id: String,
    pub object_id_alias: String,
    pub access_policy_name: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct AccessPolicyAssignmentParameters {
    pub properties: AccessPolicyAssignmentProperties,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyAssignmentView {
    #[serde(flatten)]
    pub stored: AccessPolicyAssignmentProperties,
    pub provisioning_state: String,
    pub cacheplane_notice: String,
}

impl AccessPolicyAssignmentProperties {
    /// A GUID object id, an alias, and a policy the cache has.
    pub fn checked(&self, children: &Children) -> Result<(), ArmError> {
        if uuid::Uuid::parse_str(&self.object_id).is_err() {
            return Err(invalid(
                "properties.objectId",
                format!("'{}' is not an object id (a GUID).", self.object_id),
            ));
        }
        if self.object_id_alias.trim().is_empty() {
            return Err(invalid(
                "properties.objectIdAlias",
                "The object id's alias is required.",
            ));
        }
        if policy(children, &self.access_policy_name).is_none() {
            return Err(invalid(
                "properties.accessPolicyName",
                format!(
                    "The cache has no access policy '{}'.",
                    self.access_policy_name
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_rules_are_ipv4_ranges_in_order() {
        let ok = FirewallRuleProperties {
            start_ip: "10.0.0.1".into(),
            end_ip: " 10.0.0.9".into(),
        };
        assert_eq!(ok.checked().unwrap().end_ip, "10.0.0.9");
        for (s, e) in [
            ("10.0.0.9", "10.0.0.1"),
            ("::1", "::1"),
            ("10.0.0", "10.0.0.1"),
        ] {
            let r = FirewallRuleProperties {
                start_ip: s.into(),
                end_ip: e.into(),
            };
            assert_eq!(r.checked().unwrap_err().status, 400, "{s}-{e}");
        }
        assert!(check_rule_name("allow_office1").is_ok());
        assert!(check_rule_name("no-dashes").is_err() && check_rule_name("").is_err());
        let mut c = Children::default();
        c.firewall_rules.insert("a".into(), ok.checked().unwrap());
        c.firewall_rules.insert(
            "b".into(),
            FirewallRuleProperties {
                start_ip: "1.2.3.4".into(),
                end_ip: "1.2.3.4".into(),
            },
        );
        assert_eq!(c.firewall_setting(), "10.0.0.1-10.0.0.9 1.2.3.4-1.2.3.4");
        assert_eq!(stored_name(&c.firewall_rules, "A").as_deref(), Some("a"));
    }

    #[test]
    fn durations_read_as_iso_8601() {
        assert_eq!(duration_secs("PT5H"), Some(18_000));
        assert_eq!(duration_secs("P1DT2H30M"), Some(95_400));
        assert_eq!(duration_secs("PT90M"), Some(5_400));
        for bad in ["5H", "PT", "P", "PT5X", "PT5", ""] {
            assert_eq!(duration_secs(bad), None, "{bad}");
        }
    }

    fn schedule(entries: &[(DayOfWeek, i64, Option<&str>)]) -> PatchScheduleProperties {
        PatchScheduleProperties {
            schedule_entries: entries
                .iter()
                .map(|(d, h, w)| ScheduleEntry {
                    day_of_week: *d,
                    start_hour_utc: *h,
                    maintenance_window: w.map(String::from),
                })
                .collect(),
        }
    }

    #[test]
    fn schedules_are_checked_and_get_the_default_window() {
        let s = schedule(&[(DayOfWeek::Monday, 2, None)]).checked().unwrap();
        assert_eq!(
            s.schedule_entries[0].maintenance_window.as_deref(),
            Some("PT5H")
        );
        assert!(schedule(&[]).checked().is_err());
        assert!(
            schedule(&[(DayOfWeek::Monday, 24, None)])
                .checked()
                .is_err()
        );
        assert!(
            schedule(&[(DayOfWeek::Monday, 2, Some("PT4H"))])
                .checked()
                .is_err()
        );
        assert!(
            schedule(&[(DayOfWeek::Monday, 2, Some("five"))])
                .checked()
                .is_err()
        );
    }

    #[test]
    fn the_next_window_opens_on_its_day_and_hour() {
        let ms = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        // 2026-11-30 is a Monday.
        let s = schedule(&[
            (DayOfWeek::Tuesday, 3, None),
            (DayOfWeek::Weekend, 22, None),
        ]);
        let (at, e) = s
            .window_between(ms("2026-11-30T10:15:00Z"), ms("2026-12-31T00:00:00Z"))
            .unwrap();
        assert_eq!(at, ms("2026-12-01T03:00:00Z"));
        assert_eq!(e.day_of_week, DayOfWeek::Tuesday);
        // Strictly after: a window opening exactly at `after` is not found again.
        let (at2, e2) = s.window_between(at, ms("2026-12-31T00:00:00Z")).unwrap();
        assert_eq!(
            (at2, e2.day_of_week),
            (ms("2026-12-05T22:00:00Z"), DayOfWeek::Weekend)
        );
        // Nothing before `until`.
        assert!(
            s.window_between(ms("2026-11-30T10:15:00Z"), ms("2026-12-01T02:59:59Z"))
                .is_none()
        );
        let every = schedule(&[(DayOfWeek::Everyday, 0, None)]);
        assert_eq!(
            every
                .window_between(ms("2026-11-30T23:59:59Z"), ms("2026-12-01T00:00:00Z"))
                .unwrap()
                .0,
            ms("2026-12-01T00:00:00Z")
        );
    }

    #[test]
    fn policies_take_acl_rules_and_assignments_name_one() {
        assert!(check_permissions("+@read +get ~app:* %R~x &news allkeys").is_ok());
        for bad in ["", "read", "+", "%Rx", "@all"] {
            assert!(check_permissions(bad).is_err(), "{bad}");
        }
        let mut c = Children::default();
        assert_eq!(policy(&c, "data owner").unwrap().1, "BuiltIn");
        assert_eq!(policy(&c, "data owner").unwrap().0, "Data Owner");
        c.access_policies.insert(
            "readers".into(),
            AccessPolicyProperties {
                permissions: "+@read allkeys".into(),
            },
        );
        let a = AccessPolicyAssignmentProperties {
            object_id: "6497c918-11ad-41e7-1b0f-7c518a87d0b0".into(),
            object_id_alias: "app".into(),
            access_policy_name: "Readers".into(),
        };
        assert!(a.checked(&c).is_ok());
        let bad = AccessPolicyAssignmentProperties {
            access_policy_name: "nobody".into(),
            ..a.clone()
        };
        assert!(bad.checked(&c).is_err());
        let bad = AccessPolicyAssignmentProperties {
            object_id: "me".into(),
            ..a
        };
        assert!(bad.checked(&c).is_err());
    }

    #[test]
    fn private_endpoint_states_are_azures() {
        let p = PrivateEndpointConnectionProperties {
            private_endpoint: None,
            private_link_service_connection_state: ConnectionState {
                status: "approved".into(),
                description: String::new(),
                actions_required: String::new(),
            },
        };
        assert_eq!(
            p.checked()
                .unwrap()
                .private_link_service_connection_state
                .status,
            "Approved"
        );
        let mut bad = p;
        bad.private_link_service_connection_state.status = "Maybe".into();
        assert!(bad.checked().is_err());
    }
}
