//! Microsoft.Storage rules: storage accounts (global names, SKUs, kinds, TLS, network
//! rules naming subnets that carry the `Microsoft.Storage` service endpoint), the
//! account's blob service settings (versioning, soft delete), its blob containers (no
//! public access unless the account allows it) and its lifecycle management policy.
//!
//! Storage answers unlike the other types: only an account's creation is asynchronous
//! (202, no body, a `Location` to poll); every other write answers at once (see
//! [`Kind::sync_put`]).

use std::net::Ipv4Addr;

use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::http::error;
use crate::path::Res;
use crate::rules::{
    BLOB_SERVICE, CONTAINER, Kind, POLICY, STORAGE_ACCOUNT, SUBNET, invalid_param, location,
    name_of, props_in, resource_not_found, tags, type_of,
};
use crate::world::{World, now};

const SKUS: [&str; 5] = [
    "Standard_LRS",
    "Standard_ZRS",
    "Standard_GRS",
    "Standard_RAGRS",
    "Premium_LRS",
];
const KINDS: [&str; 5] = [
    "Storage",
    "StorageV2",
    "BlobStorage",
    "FileStorage",
    "BlockBlobStorage",
];
const TLS_VERSIONS: [&str; 3] = ["TLS1_0", "TLS1_1", "TLS1_2"];
const PUBLIC_ACCESS: [&str; 3] = ["None", "Container", "Blob"];
const BYPASS: [&str; 4] = ["None", "Logging", "Metrics", "AzureServices"];
/// The service endpoints that let a subnet into an account's network rules.
const ENDPOINTS: [&str; 2] = ["Microsoft.Storage", "Microsoft.Storage.Global"];
/// The only name of an account's blob service and of its management policy.
const DEFAULT: &str = "default";
/// Fields of an account's `properties` that the service computes.
const COMPUTED: [&str; 5] = [
    "provisioningState",
    "creationTime",
    "primaryEndpoints",
    "primaryLocation",
    "statusOfPrimary",
];

pub(crate) fn build_account(
    w: &World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let name = res.name();
    if !valid_account_name(name) {
        return Err(error(
            400,
            "AccountNameInvalid",
            format!(
                "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
            ),
        ));
    }
    let key = id.to_ascii_lowercase();
    let taken = w
        .knobs
        .taken_storage_names
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
        || w.of_type(STORAGE_ACCOUNT)
            .iter()
            .any(|(k, v)| **k != key && name_of(v).eq_ignore_ascii_case(name));
    if taken {
        return Err(error(
            409,
            "StorageAccountAlreadyTaken",
            format!("The storage account named {name} is already taken."),
        ));
    }
    let loc = location(body, existing, STORAGE_ACCOUNT, false)?;
    let sku = sku(body
        .get("sku")
        .or_else(|| existing.and_then(|e| e.get("sku"))))?;
    let kind = kind(
        body.get("kind")
            .or_else(|| existing.and_then(|e| e.get("kind"))),
    )?;
    // A PUT on an existing account updates it: what the body leaves out is kept.
    let mut props = existing
        .and_then(|e| e.get("properties"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in props_in(body) {
        if !COMPUTED.contains(&k.as_str()) {
            props.insert(k, v);
        }
    }
    account_props(w, &mut props, kind.as_str().unwrap_or(""))?;
    let created = existing
        .and_then(|e| e.pointer("/properties/creationTime").cloned())
        .unwrap_or_else(|| json!(now()));
    props.insert("creationTime".into(), created);
    let endpoint = |svc: &str| format!("https://{name}.{svc}.core.windows.net/");
    props.insert(
        "primaryEndpoints".into(),
        json!({
            "blob": endpoint("blob"), "dfs": endpoint("dfs"), "file": endpoint("file"),
            "queue": endpoint("queue"), "table": endpoint("table"), "web": endpoint("z13.web"),
        }),
    );
    props.insert("primaryLocation".into(), json!(loc));
    props.insert("statusOfPrimary".into(), json!("available"));
    // An update answers at once; an account still being created stays so.
    let state = match existing.and_then(|e| e.pointer("/properties/provisioningState")) {
        Some(s) if s == "Creating" => s.clone(),
        _ => json!("Succeeded"),
    };
    props.insert("provisioningState".into(), state);
    Ok(json!({
        "id": id,
        "name": name,
        "type": STORAGE_ACCOUNT,
        "location": loc,
        "tags": tags(body),
        "sku": sku,
        "kind": kind,
        "properties": props,
    }))
}

/// A storage account PATCH: any of tags, sku, kind and `properties.*` (each property
/// given replaces the stored one), checked like a PUT.
pub(crate) fn patch_account(w: &World, existing: &Value, body: &Value) -> Result<Value, Response> {
    let mut v = existing.clone();
    if let Some(t) = body.get("tags") {
        v["tags"] = t.clone();
    }
    if let Some(s) = body.get("sku") {
        v["sku"] = sku(Some(s))?;
    }
    if let Some(k) = body.get("kind") {
        v["kind"] = kind(Some(k))?;
    }
    let kind = v["kind"].as_str().unwrap_or("StorageV2").to_string();
    let mut props = v
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, val) in props_in(body) {
        if !COMPUTED.contains(&k.as_str()) {
            props.insert(k, val);
        }
    }
    account_props(w, &mut props, &kind)?;
    v["properties"] = Value::Object(props);
    Ok(v)
}

/// `{"name", "tier"}` of a valid SKU.
fn sku(given: Option<&Value>) -> Result<Value, Response> {
    let name = given
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(name) = SKUS.iter().find(|s| s.eq_ignore_ascii_case(name)) else {
        return Err(error(
            400,
            "InvalidAccountType",
            format!(
                "The sku '{name}' is not valid. Valid sku names: {}.",
                SKUS.join(", ")
            ),
        ));
    };
    let tier = if name.starts_with("Premium") {
        "Premium"
    } else {
        "Standard"
    };
    Ok(json!({"name": name, "tier": tier}))
}

fn kind(given: Option<&Value>) -> Result<Value, Response> {
    let k = given.and_then(Value::as_str).unwrap_or("");
    KINDS
        .iter()
        .find(|x| x.eq_ignore_ascii_case(k))
        .map(|x| json!(x))
        .ok_or_else(|| invalid_values("kind"))
}

/// Checks an account's TLS version and network rules and fills in what ARM defaults.
fn account_props(w: &World, props: &mut Map<String, Value>, kind: &str) -> Result<(), Response> {
    if let Some(tls) = props.get("minimumTlsVersion")
        && !tls
            .as_str()
            .is_some_and(|t| TLS_VERSIONS.contains(&t.to_ascii_uppercase().as_str()))
    {
        return Err(invalid_values("minimumTlsVersion"));
    }
    for flag in [
        "supportsHttpsTrafficOnly",
        "allowBlobPublicAccess",
        "allowSharedKeyAccess",
    ] {
        if props.get(flag).is_some_and(|f| !f.is_boolean()) {
            return Err(invalid_values(flag));
        }
    }
    let acls = network_acls(w, props.get("networkAcls"))?;
    props.insert("networkAcls".into(), acls);
    props
        .entry("supportsHttpsTrafficOnly")
        .or_insert(json!(true));
    // Since 2023 new accounts refuse anonymous blob access unless told otherwise.
    props.entry("allowBlobPublicAccess").or_insert(json!(false));
    if matches!(kind, "StorageV2" | "BlobStorage") {
        props.entry("accessTier").or_insert(json!("Hot"));
    }
    let enabled = json!({"enabled": true, "keyType": "Account"});
    props.entry("encryption").or_insert(json!({
        "keySource": "Microsoft.Storage",
        "services": {"blob": enabled, "file": enabled},
    }));
    Ok(())
}

/// Validates `networkAcls` (every virtual network rule naming an existing subnet with
/// the storage service endpoint; IP rules public IPv4 addresses or ranges) and answers
/// it as ARM shows it, defaults included.
fn network_acls(w: &World, given: Option<&Value>) -> Result<Value, Response> {
    let mut acls = match given {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(invalid_values("networkAcls")),
    };
    let action = acls
        .get("defaultAction")
        .and_then(Value::as_str)
        .unwrap_or("Allow");
    let Some(action) = ["Allow", "Deny"]
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(action))
    else {
        return Err(invalid_values("networkAcls.defaultAction"));
    };
    acls.insert("defaultAction".into(), json!(action));
    let bypass = acls
        .get("bypass")
        .and_then(Value::as_str)
        .unwrap_or("AzureServices")
        .to_string();
    if !bypass
        .split(',')
        .all(|b| BYPASS.iter().any(|x| x.eq_ignore_ascii_case(b.trim())))
    {
        return Err(invalid_values("networkAcls.bypass"));
    }
    acls.insert("bypass".into(), json!(bypass));
    let mut vnet_rules = list(&acls, "virtualNetworkRules")?;
    for r in &mut vnet_rules {
        let subnet = r.get("id").and_then(Value::as_str).unwrap_or("");
        check_rule_subnet(w, subnet)?;
        let Some(o) = r.as_object_mut() else {
            return Err(invalid_values("networkAcls.virtualNetworkRules"));
        };
        o.entry("action").or_insert(json!("Allow"));
        o.insert("state".into(), json!("Succeeded"));
    }
    acls.insert("virtualNetworkRules".into(), Value::Array(vnet_rules));
    let mut ip_rules = list(&acls, "ipRules")?;
    for r in &mut ip_rules {
        let value = r.get("value").and_then(Value::as_str).unwrap_or("");
        check_ip_rule(value)?;
        if let Some(o) = r.as_object_mut() {
            o.entry("action").or_insert(json!("Allow"));
        }
    }
    acls.insert("ipRules".into(), Value::Array(ip_rules));
    Ok(Value::Object(acls))
}

/// The array `acls[field]` (`[]` when absent).
fn list(acls: &Map<String, Value>, field: &str) -> Result<Vec<Value>, Response> {
    match acls.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(_) => Err(invalid_values(&format!("networkAcls.{field}"))),
    }
}

fn check_rule_subnet(w: &World, subnet: &str) -> Result<(), Response> {
    let Some(s) = w
        .resources
        .get(&subnet.to_ascii_lowercase())
        .filter(|v| type_of(v).eq_ignore_ascii_case(SUBNET))
    else {
        return Err(acl_failure(format!(
            "SubnetsNotFound:Subnet {subnet} referenced by a virtual network rule was not found."
        )));
    };
    let has_endpoint = s
        .pointer("/properties/serviceEndpoints")
        .and_then(Value::as_array)
        .is_some_and(|es| {
            es.iter().any(|e| {
                e.get("service")
                    .and_then(Value::as_str)
                    .is_some_and(|n| ENDPOINTS.iter().any(|x| x.eq_ignore_ascii_case(n)))
            })
        });
    if has_endpoint {
        return Ok(());
    }
    let vnet = subnet.rsplit_once("/subnets/").map_or("", |(v, _)| v);
    Err(acl_failure(format!(
        "SubnetsHaveNoServiceEndpointsConfigured:Subnets {} of virtual network {vnet} do not have ServiceEndpoints for Microsoft.Storage resources configured. Add Microsoft.Storage to subnet's ServiceEndpoints collection before trying to ACL Microsoft.Storage resources to these subnets..",
        name_of(s)
    )))
}

/// An IP rule is a public IPv4 address or a public range no smaller than /30.
fn check_ip_rule(value: &str) -> Result<(), Response> {
    let (addr, len) = match value.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok().filter(|l| *l <= 30)),
        None => (value, Some(32)),
    };
    let Some(addr) = addr.parse::<Ipv4Addr>().ok().filter(|_| len.is_some()) else {
        return Err(acl_failure(format!(
            "InvalidIpRule:The IP rule value '{value}' is not a valid IPv4 address or CIDR range (prefixes /31 and /32 are not supported; use single addresses)."
        )));
    };
    if addr.is_private() || addr.is_loopback() || addr.is_link_local() {
        return Err(acl_failure(format!(
            "IpRulesIsPrivate:The IP rule value '{value}' is a private address. IP network rules only allow public internet addresses."
        )));
    }
    Ok(())
}

fn acl_failure(detail: String) -> Response {
    error(
        400,
        "NetworkAclsValidationFailure",
        format!("Validation of network acls failure: {detail}"),
    )
}

fn invalid_values(what: &str) -> Response {
    error(
        400,
        "InvalidValuesForRequestParameters",
        format!("Values for request parameters are invalid: {what}."),
    )
}

/// What a child of an account needs: the account, provisioned, and (a container) the
/// `default` blob service.
pub(crate) fn check_parent(w: &World, res: &Res) -> Result<(), Response> {
    let account = res.top();
    let Some(a) = w.resources.get(&account.key()) else {
        return Err(parent_not_found(account.name()));
    };
    if res.types.len() == 3 && !res.types[1].1.eq_ignore_ascii_case(DEFAULT) {
        return Err(parent_not_found(&format!(
            "{}/{}",
            account.name(),
            res.types[1].1
        )));
    }
    if a.pointer("/properties/provisioningState") == Some(&json!("Creating")) {
        return Err(error(
            409,
            "StorageAccountIsNotProvisioned",
            format!(
                "The storage account provisioning state must be 'Succeeded' before executing the operation. Storage account '{}' is still being created.",
                account.name()
            ),
        ));
    }
    Ok(())
}

fn parent_not_found(name: &str) -> Response {
    error(
        404,
        "ParentResourceNotFound",
        format!(
            "Can not perform requested operation on nested resource. Parent resource '{name}' not found."
        ),
    )
}

/// 404 for an absent blob service, container or policy, in the service's words.
pub(crate) fn not_found(w: &World, kind: Kind, res: &Res) -> Response {
    if let Err(r) = check_parent(w, res) {
        return r;
    }
    match kind {
        Kind::Container => error(
            404,
            "ContainerNotFound",
            "The specified container does not exist.",
        ),
        Kind::Policy => error(
            404,
            "ManagementPolicyNotFound",
            format!("No ManagementPolicy found for account {}", res.top().name()),
        ),
        _ => resource_not_found(res),
    }
}

/// An account's blob service as a GET shows it before anyone set it.
pub(crate) fn default_blob_service(w: &World, res: &Res) -> Option<Value> {
    if !res.name().eq_ignore_ascii_case(DEFAULT) {
        return None;
    }
    let account = w.resources.get(&res.top().key())?;
    Some(json!({
        "id": res.id(),
        "name": DEFAULT,
        "type": BLOB_SERVICE,
        "sku": account.get("sku").cloned().unwrap_or(Value::Null),
        "properties": {
            "cors": {"corsRules": []},
            "isVersioningEnabled": false,
            "deleteRetentionPolicy": {"enabled": false},
            "containerDeleteRetentionPolicy": {"enabled": false},
        },
    }))
}

/// A blob service PUT: the properties given replace the stored (or default) ones.
pub(crate) fn build_blob_service(
    w: &World,
    res: &Res,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let mut v = existing
        .cloned()
        .or_else(|| default_blob_service(w, res))
        .ok_or_else(|| invalid_param("The name of a blob service must be 'default'."))?;
    let mut props = v
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    props.extend(props_in(body));
    if props
        .get("isVersioningEnabled")
        .is_some_and(|b| !b.is_boolean())
    {
        return Err(invalid_param("isVersioningEnabled must be true or false."));
    }
    for policy in ["deleteRetentionPolicy", "containerDeleteRetentionPolicy"] {
        if let Some(p) = props.get(policy) {
            check_retention(policy, p)?;
        }
    }
    v["properties"] = Value::Object(props);
    Ok(v)
}

/// A soft-delete policy: `enabled`, and when enabled `days` from 1 to 365.
fn check_retention(name: &str, p: &Value) -> Result<(), Response> {
    let enabled = p.get("enabled").and_then(Value::as_bool);
    let days = p.get("days");
    let Some(enabled) = enabled else {
        return Err(invalid_param(format!(
            "{name}.enabled must be true or false."
        )));
    };
    let good_days = days
        .and_then(Value::as_i64)
        .is_some_and(|d| (1..=365).contains(&d));
    if (enabled || days.is_some()) && !good_days {
        return Err(invalid_param(format!(
            "{name}.days must be between 1 and 365 (it is required when the policy is enabled), not {}.",
            days.unwrap_or(&Value::Null)
        )));
    }
    Ok(())
}

pub(crate) fn build_container(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
) -> Result<Value, Response> {
    let name = res.name();
    if !valid_container_name(name) {
        return Err(error(
            400,
            "InvalidContainerName",
            format!(
                "The container name '{name}' is invalid: it must be 3 to 63 characters of lowercase letters, digits and single hyphens, starting with a letter or digit."
            ),
        ));
    }
    let mut props = props_in(body);
    let access = props
        .get("publicAccess")
        .and_then(Value::as_str)
        .unwrap_or("None");
    let Some(access) = PUBLIC_ACCESS
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(access))
    else {
        return Err(invalid_param(format!(
            "publicAccess '{access}' is not valid: one of None, Container, Blob."
        )));
    };
    let allowed = w
        .resources
        .get(&res.top().key())
        .and_then(|a| a.pointer("/properties/allowBlobPublicAccess"))
        == Some(&json!(true));
    if access != "None" && !allowed {
        return Err(error(
            409,
            "PublicAccessNotPermitted",
            "Public access is not permitted on this storage account.",
        ));
    }
    if props.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(invalid_param("metadata must be an object of strings."));
    }
    props.insert("publicAccess".into(), json!(access));
    props.entry("metadata").or_insert(json!({}));
    props.insert("lastModifiedTime".into(), json!(now()));
    for (k, v) in [
        ("leaseStatus", json!("Unlocked")),
        ("leaseState", json!("Available")),
        ("hasImmutabilityPolicy", json!(false)),
        ("hasLegalHold", json!(false)),
        ("defaultEncryptionScope", json!("$account-encryption-key")),
        ("denyEncryptionScopeOverride", json!(false)),
        ("deleted", json!(false)),
        ("remainingRetentionDays", json!(0)),
    ] {
        props.entry(k).or_insert(v);
    }
    Ok(json!({
        "id": id,
        "name": name,
        "type": CONTAINER,
        "etag": format!("\"0x8DC{:012X}\"", w.next_seq()),
        "properties": props,
    }))
}

pub(crate) fn build_policy(res: &Res, id: &str, body: &Value) -> Result<Value, Response> {
    if !res.name().eq_ignore_ascii_case(DEFAULT) {
        return Err(invalid_param(
            "The name of a management policy must be 'default'.",
        ));
    }
    let Some(policy) = body.pointer("/properties/policy").filter(|p| p.is_object()) else {
        return Err(invalid_param("properties.policy is required."));
    };
    let Some(rules) = policy.get("rules").and_then(Value::as_array) else {
        return Err(invalid_param("properties.policy.rules is required."));
    };
    let mut seen: Vec<&str> = Vec::new();
    for r in rules {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(invalid_param("Every management policy rule needs a name."));
        }
        if seen.contains(&name) {
            return Err(invalid_param(format!(
                "Rule names must be unique within a management policy: '{name}' appears twice."
            )));
        }
        seen.push(name);
        if r.get("type").and_then(Value::as_str) != Some("Lifecycle") {
            return Err(invalid_param(format!(
                "The type of rule '{name}' must be 'Lifecycle'."
            )));
        }
        if !r
            .pointer("/definition/actions")
            .is_some_and(Value::is_object)
        {
            return Err(invalid_param(format!(
                "Rule '{name}' needs definition.actions."
            )));
        }
        if let Some(filters) = r.pointer("/definition/filters")
            && filters
                .get("blobTypes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        {
            return Err(invalid_param(format!(
                "Rule '{name}' needs definition.filters.blobTypes."
            )));
        }
    }
    Ok(json!({
        "id": id,
        "name": "DefaultManagementPolicy",
        "type": POLICY,
        "properties": {"lastModifiedTime": now(), "policy": policy},
    }))
}

/// 3–24 lowercase letters and digits.
fn valid_account_name(n: &str) -> bool {
    (3..=24).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// 3–63 of `[a-z0-9-]`, starting with a letter or digit, no trailing or doubled hyphen.
fn valid_container_name(n: &str) -> bool {
    (3..=63).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
        && !n.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ip_rules() {
        assert!(valid_account_name("flytedata01"));
        for bad in ["ab", "Flyte", "flyte-data", "a".repeat(25).as_str()] {
            assert!(!valid_account_name(bad), "{bad}");
        }
        assert!(valid_container_name("raw-data"));
        for bad in ["ab", "Raw", "-raw", "raw-", "r--aw", "r_aw"] {
            assert!(!valid_container_name(bad), "{bad}");
        }
        assert!(check_ip_rule("203.0.113.7").is_ok());
        assert!(check_ip_rule("203.0.113.0/24").is_ok());
        for bad in [
            "10.1.2.3",
            "192.168.0.0/16",
            "203.0.113.0/31",
            "banana",
            "1.2.3.4/x",
        ] {
            assert!(check_ip_rule(bad).is_err(), "{bad}");
        }
    }
}
