//! Microsoft.DBforPostgreSQL rules: flexible servers (global names, sizes, versions,
//! password complexity, private networking through a delegated subnet and a linked
//! private DNS zone; the password is kept apart), their databases and the
//! `require_secure_transport` configuration.

use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::http::error;
use crate::network::linked_vnet;
use crate::path::Res;
use crate::rules::{
    Built, CONFIG, DATABASE, SECURE_TRANSPORT, SERVER, SUBNET, ZONE, invalid_param, location,
    name_of, props_in, props_mut, resource_not_found, tags, type_of,
};
use crate::world::{World, now};

const STORAGE_SIZES: [i64; 10] = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const TIERS: [&str; 3] = ["Burstable", "GeneralPurpose", "MemoryOptimized"];
const DELEGATION: &str = "Microsoft.DBforPostgreSQL/flexibleServers";

pub(crate) fn build_server(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Built, Response> {
    let name = res.name();
    if !valid_server_name(name) {
        return Err(error(
            400,
            "InvalidServerName",
            format!(
                "Server name '{name}' is invalid: it must be 3 to 63 characters long, contain only lowercase letters, digits and hyphens, and must not start or end with a hyphen."
            ),
        ));
    }
    let key = id.to_ascii_lowercase();
    let taken = w
        .knobs
        .taken_server_names
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
        || w.of_type(SERVER)
            .iter()
            .any(|(k, v)| **k != key && name_of(v).eq_ignore_ascii_case(name));
    if taken {
        return Err(error(
            409,
            "ServerNameAlreadyExists",
            format!(
                "Specified server name '{name}' is already used. Please use a different name and try again."
            ),
        ));
    }
    let loc = location(body, existing, SERVER, false)?;
    // ARM PUT on an existing server is an update: what the body leaves out is kept.
    let mut props = existing
        .and_then(|e| e.get("properties"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    props.extend(props_in(body));
    let password = props
        .remove("administratorLoginPassword")
        .and_then(|p| p.as_str().map(str::to_string));
    for computed in ["createMode", "state", "fullyQualifiedDomainName"] {
        props.remove(computed);
    }
    let sku = body
        .get("sku")
        .or_else(|| existing.and_then(|e| e.get("sku")))
        .cloned()
        .ok_or_else(|| invalid_param("The sku (name and tier) of the server is required."))?;
    check_tier(&sku)?;
    let version = match props.get("version") {
        None => "16".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if !matches!(version.as_str(), "13" | "14" | "15" | "16" | "17") {
        return Err(invalid_param(format!(
            "Version '{version}' is not supported. Supported versions are 13, 14, 15, 16 and 17."
        )));
    }
    props.insert("version".into(), json!(version));
    let login = props
        .get("administratorLogin")
        .and_then(Value::as_str)
        .unwrap_or("");
    if login.is_empty() {
        return Err(invalid_param("administratorLogin is required."));
    }
    let reserved = [
        "azure_superuser",
        "azure_pg_admin",
        "admin",
        "administrator",
        "root",
        "guest",
        "public",
    ];
    if reserved.contains(&login.to_ascii_lowercase().as_str()) || login.starts_with("pg_") {
        return Err(invalid_param(format!(
            "The administrator login '{login}' is a reserved name. Please choose a different name."
        )));
    }
    match &password {
        Some(p) => check_password(p, login)?,
        None if existing.is_none() => {
            return Err(invalid_param("administratorLoginPassword is required."));
        }
        None => {}
    }
    let old_size = existing
        .and_then(|e| e.pointer("/properties/storage/storageSizeGB"))
        .and_then(Value::as_i64);
    let size = props
        .get("storage")
        .and_then(|s| s.get("storageSizeGB"))
        .and_then(Value::as_i64)
        .unwrap_or(32);
    check_storage(size, old_size)?;
    let mut storage = props
        .get("storage")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    storage.insert("storageSizeGB".into(), json!(size));
    storage.entry("autoGrow").or_insert(json!("Disabled"));
    props.insert("storage".into(), Value::Object(storage));
    let mut backup = props
        .get("backup")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let days = backup
        .get("backupRetentionDays")
        .and_then(Value::as_i64)
        .unwrap_or(7);
    check_retention(days)?;
    backup.insert("backupRetentionDays".into(), json!(days));
    backup
        .entry("geoRedundantBackup")
        .or_insert(json!("Disabled"));
    props.insert("backup".into(), Value::Object(backup));
    let mut network = props
        .get("network")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    check_server_network(w, &network)?;
    let private = network
        .get("delegatedSubnetResourceId")
        .is_some_and(|s| s.is_string());
    if private {
        network.insert("publicNetworkAccess".into(), json!("Disabled"));
    } else {
        network
            .entry("publicNetworkAccess")
            .or_insert(json!("Enabled"));
    }
    props.insert("network".into(), Value::Object(network));
    props
        .entry("highAvailability")
        .or_insert(json!({"mode": "Disabled"}));
    props.insert(
        "fullyQualifiedDomainName".into(),
        json!(format!(
            "{}.postgres.database.azure.com",
            name.to_ascii_lowercase()
        )),
    );
    let created = existing
        .and_then(|e| e.pointer("/systemData/createdAt").cloned())
        .unwrap_or_else(|| json!(now()));
    let body = json!({
        "id": id,
        "name": name,
        "type": SERVER,
        "location": loc,
        "tags": tags(body),
        "sku": sku,
        "systemData": {"createdAt": created, "lastModifiedAt": now()},
        "properties": props,
    });
    Ok(Built {
        body,
        secret: password,
        children: Vec::new(),
        removed: Vec::new(),
    })
}

/// A flexible server PATCH: any of sku, tags, password, storage size, retention.
pub(crate) fn patch_server(
    existing: &Value,
    body: &Value,
) -> Result<(Value, Option<String>), Response> {
    let mut v = existing.clone();
    if let Some(Value::Object(sku)) = body.get("sku") {
        let mut merged = v
            .get("sku")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        merged.extend(sku.clone());
        let merged = Value::Object(merged);
        check_tier(&merged)?;
        v["sku"] = merged;
    }
    if let Some(tags) = body.get("tags") {
        v["tags"] = tags.clone();
    }
    let mut secret = None;
    if let Some(p) = body
        .pointer("/properties/administratorLoginPassword")
        .and_then(Value::as_str)
    {
        let login = v
            .pointer("/properties/administratorLogin")
            .and_then(Value::as_str)
            .unwrap_or("");
        check_password(p, login)?;
        secret = Some(p.to_string());
    }
    if let Some(size) = body.pointer("/properties/storage/storageSizeGB") {
        let old = v
            .pointer("/properties/storage/storageSizeGB")
            .and_then(Value::as_i64);
        let size = size.as_i64().unwrap_or(0);
        check_storage(size, old)?;
        props_mut(&mut v).entry("storage").or_insert(json!({}))["storageSizeGB"] = json!(size);
    }
    if let Some(days) = body.pointer("/properties/backup/backupRetentionDays") {
        let days = days.as_i64().unwrap_or(0);
        check_retention(days)?;
        props_mut(&mut v).entry("backup").or_insert(json!({}))["backupRetentionDays"] = json!(days);
    }
    if v.get("systemData").is_some_and(Value::is_object) {
        v["systemData"]["lastModifiedAt"] = json!(now());
    }
    Ok((v, secret))
}

pub(crate) fn build_database(
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let p = props_in(body);
    let field = |f: &str, default: &str| {
        p.get(f)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    let (charset, collation) = (field("charset", "UTF8"), field("collation", "en_US.utf8"));
    if let Some(old) = existing {
        for (f, new) in [("charset", &charset), ("collation", &collation)] {
            let was = old
                .pointer(&format!("/properties/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !was.eq_ignore_ascii_case(new) {
                return Err(invalid_param(format!(
                    "The {f} of database '{}' cannot be changed from '{was}' to '{new}'.",
                    res.name()
                )));
            }
        }
    }
    Ok(json!({
        "id": id,
        "name": res.name(),
        "type": DATABASE,
        "properties": {"charset": charset, "collation": collation},
    }))
}

pub(crate) fn build_config(res: &Res, id: &str, body: &Value) -> Result<Value, Response> {
    if !res.name().eq_ignore_ascii_case(SECURE_TRANSPORT) {
        return Err(resource_not_found(res));
    }
    let value = body
        .pointer("/properties/value")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    if value != "on" && value != "off" {
        return Err(invalid_param(format!(
            "The value '{value}' for configuration '{}' is not valid. Allowed values: on, off.",
            res.name()
        )));
    }
    let source = body
        .pointer("/properties/source")
        .and_then(Value::as_str)
        .unwrap_or("user-override");
    Ok(config_body(id, res.name(), &value, source))
}

/// A server configuration as ARM shows it (`require_secure_transport` only).
pub(crate) fn config_body(id: &str, name: &str, value: &str, source: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "type": CONFIG,
        "properties": {
            "value": value,
            "defaultValue": "on",
            "source": source,
            "dataType": "Boolean",
            "allowedValues": "on,off",
            "description": "Whether client connections to the server are required to use some form of secure transport.",
            "isDynamicConfig": true,
            "isReadOnly": false,
            "isConfigPendingRestart": false,
        }
    })
}

fn check_server_network(w: &World, network: &Map<String, Value>) -> Result<(), Response> {
    let subnet = network
        .get("delegatedSubnetResourceId")
        .and_then(Value::as_str);
    let zone = network
        .get("privateDnsZoneArmResourceId")
        .and_then(Value::as_str);
    if let Some(subnet) = subnet {
        let Some(s) = w
            .resources
            .get(&subnet.to_ascii_lowercase())
            .filter(|v| type_of(v).eq_ignore_ascii_case(SUBNET))
        else {
            return Err(invalid_param(format!(
                "The subnet '{subnet}' does not exist."
            )));
        };
        let delegated = s
            .pointer("/properties/delegations")
            .and_then(Value::as_array)
            .is_some_and(|ds| {
                ds.iter().any(|d| {
                    d.pointer("/properties/serviceName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(DELEGATION))
                })
            });
        if !delegated {
            return Err(invalid_param(format!(
                "The subnet '{subnet}' is not delegated to '{DELEGATION}'. Delegate the subnet to the service before using it for a flexible server."
            )));
        }
    }
    if let Some(zone) = zone {
        let zkey = zone.to_ascii_lowercase();
        if !w
            .resources
            .get(&zkey)
            .is_some_and(|v| type_of(v).eq_ignore_ascii_case(ZONE))
        {
            return Err(invalid_param(format!(
                "The private DNS zone '{zone}' does not exist."
            )));
        }
        let zname = zkey.rsplit('/').next().unwrap_or("");
        if !zname.ends_with(".postgres.database.azure.com") {
            return Err(invalid_param(format!(
                "The private DNS zone '{zone}' is not valid for a flexible server: its name must end with '.postgres.database.azure.com'."
            )));
        }
        if let Some(subnet) = subnet {
            let skey = subnet.to_ascii_lowercase();
            let vnet = skey.rsplit_once("/subnets/").map_or("", |(v, _)| v);
            let linked = w
                .children(&zkey, "virtualnetworklinks")
                .iter()
                .any(|(_, l)| linked_vnet(l) == vnet);
            if !linked {
                return Err(invalid_param(format!(
                    "The private DNS zone '{zone}' is not linked to the virtual network of subnet '{subnet}'. Link the zone to the virtual network first."
                )));
            }
        }
    }
    Ok(())
}

fn check_tier(sku: &Value) -> Result<(), Response> {
    let tier = sku.get("tier").and_then(Value::as_str).unwrap_or("");
    if TIERS.iter().any(|t| t.eq_ignore_ascii_case(tier))
        && sku.get("name").is_some_and(Value::is_string)
    {
        return Ok(());
    }
    Err(invalid_param(format!(
        "The sku {sku} is not valid: a sku needs a name and a tier, one of {}.",
        TIERS.join(", ")
    )))
}

fn check_password(p: &str, login: &str) -> Result<(), Response> {
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    let ok = (8..=128).contains(&p.chars().count())
        && classes.iter().filter(|c| **c).count() >= 3
        && (login.is_empty() || !p.to_ascii_lowercase().contains(&login.to_ascii_lowercase()));
    if ok {
        return Ok(());
    }
    Err(error(
        400,
        "PasswordNotComplex",
        "The password does not meet the complexity requirements: 8 to 128 characters from at least three of uppercase letters, lowercase letters, digits and non-alphanumeric characters, and not containing the login name.",
    ))
}

fn check_storage(size: i64, old: Option<i64>) -> Result<(), Response> {
    if !STORAGE_SIZES.contains(&size) {
        return Err(error(
            400,
            "InvalidStorageSize",
            format!("Storage size {size} GB is not valid. Valid sizes (GB): {STORAGE_SIZES:?}."),
        ));
    }
    if let Some(old) = old.filter(|o| size < *o) {
        return Err(error(
            400,
            "InvalidStorageSize",
            format!("Storage size cannot be scaled down from {old} GB to {size} GB."),
        ));
    }
    Ok(())
}

fn check_retention(days: i64) -> Result<(), Response> {
    if (7..=35).contains(&days) {
        return Ok(());
    }
    Err(invalid_param(format!(
        "Backup retention days {days} is not valid: it must be between 7 and 35."
    )))
}

/// 3–63 of `[a-z0-9-]`, no leading, trailing or doubled hyphen (names are DNS labels).
fn valid_server_name(n: &str) -> bool {
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
    fn server_names_and_passwords() {
        assert!(valid_server_name("flyte-pg-1"));
        for bad in ["ab", "Flyte", "-a1", "a1-", "a--b", "a_b"] {
            assert!(!valid_server_name(bad), "{bad}");
        }
        assert!(check_password("Secr3t-pass", "flyteadmin").is_ok());
        assert!(check_password("short1A", "x").is_err());
        assert!(check_password("alllowercase", "x").is_err());
        assert!(check_password("Flyteadmin-1", "flyteadmin").is_err());
    }
}
