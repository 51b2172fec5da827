//! Microsoft.Network rules: virtual networks (whose PUT replaces their subnet list),
//! subnets (ranges inside the network, no overlap), NSGs (rule priorities, default
//! rules), private DNS zones and their virtual network links.

use std::net::Ipv4Addr;

use axum::response::Response;
use serde_json::{Value, json};

use crate::http::error;
use crate::path::Res;
use crate::rules::{
    Built, LINK, NSG, POOL, SERVER, SUBNET, VNET, ZONE, location, name_of, props_in, props_mut,
    stored_id, stored_id_of, tags, type_of,
};
use crate::world::World;

pub(crate) fn build_vnet(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Built, Response> {
    let loc = location(body, existing, VNET, false)?;
    let mut props = props_in(body);
    let prefixes: Vec<&str> = body
        .pointer("/properties/addressSpace/addressPrefixes")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|p| p.as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    if prefixes.is_empty() {
        return Err(error(
            400,
            "InvalidAddressPrefixFormat",
            format!(
                "Virtual network {id} has no address prefix in properties.addressSpace.addressPrefixes."
            ),
        ));
    }
    let mut space = Vec::new();
    for p in &prefixes {
        let net = cidr(p).ok_or_else(|| bad_prefix(p, id))?;
        if let Some(o) = space
            .iter()
            .zip(&prefixes)
            .find(|(o, _)| overlaps(**o, net))
        {
            return Err(error(
                400,
                "VnetAddressSpacesOverlap",
                format!(
                    "Address prefixes {p} and {} of virtual network {id} overlap.",
                    o.1
                ),
            ));
        }
        space.push(net);
    }
    let key = id.to_ascii_lowercase();
    let given = props.remove("subnets").and_then(|s| s.as_array().cloned());
    let mut children: Vec<(String, Value)> = Vec::new();
    let mut siblings: Vec<(String, Vec<Net>)> = Vec::new();
    for s in given.unwrap_or_default() {
        let Some(name) = s.get("name").and_then(Value::as_str) else {
            return Err(error(
                400,
                "InvalidRequestFormat",
                format!("A subnet of virtual network {id} has no name."),
            ));
        };
        let sub_key = format!("{key}/subnets/{}", name.to_ascii_lowercase());
        let sub_id = match w.resources.get(&sub_key) {
            Some(old) => stored_id_of(old, &sub_key),
            None => format!("{id}/subnets/{name}"),
        };
        let sb = subnet_body(
            w,
            &sub_id,
            name,
            s.get("properties"),
            res.name(),
            &space,
            &siblings,
        )?;
        siblings.push((name.to_string(), subnet_nets(&sb)));
        children.push((sub_key, sb));
    }
    // ARM's PUT replaces the whole network: subnets it leaves out are deleted.
    let mut removed = Vec::new();
    for (k, _) in w.children(&key, "subnets") {
        if !children.iter().any(|(c, _)| c == k) {
            subnet_free(w, k)?;
            removed.push(k.clone());
        }
    }
    let guid = existing
        .and_then(|e| e.pointer("/properties/resourceGuid").cloned())
        .unwrap_or_else(|| json!(w.uuid()));
    props.insert("resourceGuid".into(), guid);
    let body = json!({
        "id": id,
        "name": res.name(),
        "type": VNET,
        "location": loc,
        "tags": tags(body),
        "etag": w.etag(),
        "properties": props,
    });
    Ok(Built {
        body,
        secret: None,
        children,
        removed,
    })
}

pub(crate) fn build_subnet(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
) -> Result<Value, Response> {
    let vnet = res.parent().unwrap_or_else(|| res.clone());
    let vnet_key = vnet.key();
    let space = vnet_space(w, &vnet_key);
    let me = id.to_ascii_lowercase();
    let siblings: Vec<(String, Vec<Net>)> = w
        .children(&vnet_key, "subnets")
        .into_iter()
        .filter(|(k, _)| **k != me)
        .map(|(_, s)| (name_of(s).to_string(), subnet_nets(s)))
        .collect();
    subnet_body(
        w,
        id,
        res.name(),
        body.get("properties"),
        vnet.name(),
        &space,
        &siblings,
    )
}

/// Validates one subnet against its network's address space and its siblings, and
/// builds it as ARM shows it.
fn subnet_body(
    w: &mut World,
    id: &str,
    name: &str,
    props: Option<&Value>,
    vnet: &str,
    space: &[Net],
    siblings: &[(String, Vec<Net>)],
) -> Result<Value, Response> {
    let mut p = props
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    p.remove("provisioningState");
    let prefixes: Vec<String> = match p.get("addressPrefix").and_then(Value::as_str) {
        Some(one) => vec![one.to_string()],
        None => p
            .get("addressPrefixes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default(),
    };
    if prefixes.is_empty() {
        return Err(error(
            400,
            "InvalidAddressPrefixFormat",
            format!("Subnet '{name}' has no address prefix."),
        ));
    }
    for prefix in &prefixes {
        let net = cidr(prefix).ok_or_else(|| bad_prefix(prefix, id))?;
        if !space.iter().any(|s| contains(*s, net)) {
            return Err(error(
                400,
                "NetcfgSubnetRangeOutsideVnet",
                format!(
                    "Subnet '{name}' is not valid because its IP address range {prefix} is outside the IP address range of virtual network '{vnet}'."
                ),
            ));
        }
        let clash = siblings.iter().find(|(n, nets)| {
            !n.eq_ignore_ascii_case(name) && nets.iter().any(|o| overlaps(*o, net))
        });
        if let Some((other, _)) = clash {
            return Err(error(
                400,
                "NetcfgSubnetRangesOverlap",
                format!(
                    "Subnet '{name}' is not valid because its IP address range {prefix} overlaps with that of an existing subnet '{other}' in virtual network '{vnet}'."
                ),
            ));
        }
    }
    if let Some(nsg) = p
        .get("networkSecurityGroup")
        .and_then(|n| n.get("id"))
        .and_then(Value::as_str)
    {
        let found = w
            .resources
            .get(&nsg.to_ascii_lowercase())
            .is_some_and(|v| type_of(v).eq_ignore_ascii_case(NSG));
        if !found {
            return Err(invalid_reference(nsg, id));
        }
    }
    if let Some(Value::Array(ds)) = p.get_mut("delegations") {
        for d in ds.iter_mut() {
            let dn = d
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(o) = d.as_object_mut() {
                o.insert("id".into(), json!(format!("{id}/delegations/{dn}")));
                o.insert(
                    "type".into(),
                    json!("Microsoft.Network/virtualNetworks/subnets/delegations"),
                );
            }
            props_mut(d).insert("provisioningState".into(), json!("Succeeded"));
        }
    }
    if let Some(Value::Array(es)) = p.get_mut("serviceEndpoints") {
        for e in es.iter_mut().filter(|e| e.is_object()) {
            e["provisioningState"] = json!("Succeeded");
        }
    }
    p.entry("privateEndpointNetworkPolicies")
        .or_insert(json!("Disabled"));
    p.entry("privateLinkServiceNetworkPolicies")
        .or_insert(json!("Enabled"));
    Ok(json!({
        "id": id,
        "name": name,
        "type": SUBNET,
        "etag": w.etag(),
        "properties": p,
    }))
}

pub(crate) fn build_nsg(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let loc = location(body, existing, NSG, false)?;
    let mut props = props_in(body);
    let mut rules = props
        .remove("securityRules")
        .and_then(|r| r.as_array().cloned())
        .unwrap_or_default();
    let mut seen: Vec<(String, i64, String)> = Vec::new();
    for r in &mut rules {
        let name = r
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let priority = r.pointer("/properties/priority").and_then(Value::as_i64);
        let direction = r
            .pointer("/properties/direction")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(priority) = priority.filter(|p| (100..=4096).contains(p)) else {
            return Err(error(
                400,
                "SecurityRuleInvalidPriority",
                format!(
                    "Security rule {name} has invalid priority. Value provided: {}. Allowed range 100-4096.",
                    r.pointer("/properties/priority").unwrap_or(&Value::Null)
                ),
            ));
        };
        if let Some((other, _, _)) = seen
            .iter()
            .find(|(_, p, d)| *p == priority && *d == direction)
        {
            return Err(error(
                400,
                "SecurityRuleConflict",
                format!(
                    "Security rule {name} conflicts with rule {other}. Rules cannot have the same Priority and Direction."
                ),
            ));
        }
        seen.push((name.clone(), priority, direction));
        let etag = w.etag();
        if let Some(o) = r.as_object_mut() {
            o.insert("id".into(), json!(format!("{id}/securityRules/{name}")));
            o.insert(
                "type".into(),
                json!("Microsoft.Network/networkSecurityGroups/securityRules"),
            );
            o.insert("etag".into(), json!(etag));
        }
        props_mut(r).insert("provisioningState".into(), json!("Succeeded"));
    }
    props.insert("securityRules".into(), Value::Array(rules));
    props.insert("defaultSecurityRules".into(), default_rules(id));
    let guid = existing
        .and_then(|e| e.pointer("/properties/resourceGuid").cloned())
        .unwrap_or_else(|| json!(w.uuid()));
    props.insert("resourceGuid".into(), guid);
    Ok(json!({
        "id": id,
        "name": res.name(),
        "type": NSG,
        "location": loc,
        "tags": tags(body),
        "etag": w.etag(),
        "properties": props,
    }))
}

/// The six rules Azure puts in every NSG.
fn default_rules(nsg: &str) -> Value {
    let rule = |name: &str, priority: u32, direction: &str, access: &str, src: &str, dst: &str| {
        json!({
            "id": format!("{nsg}/defaultSecurityRules/{name}"),
            "name": name,
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {
                "provisioningState": "Succeeded",
                "description": format!("Default rule {name}"),
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": src,
                "destinationAddressPrefix": dst,
                "access": access,
                "priority": priority,
                "direction": direction,
            }
        })
    };
    json!([
        rule(
            "AllowVnetInBound",
            65000,
            "Inbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork"
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            65001,
            "Inbound",
            "Allow",
            "AzureLoadBalancer",
            "*"
        ),
        rule("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*"),
        rule(
            "AllowVnetOutBound",
            65000,
            "Outbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork"
        ),
        rule(
            "AllowInternetOutBound",
            65001,
            "Outbound",
            "Allow",
            "*",
            "Internet"
        ),
        rule("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*"),
    ])
}

pub(crate) fn build_zone(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let loc = location(body, existing, ZONE, true)?;
    let mut props = props_in(body);
    let internal = existing
        .and_then(|e| e.pointer("/properties/internalId").cloned())
        .unwrap_or_else(|| json!(w.uuid()));
    props.insert("internalId".into(), internal);
    Ok(json!({
        "id": id,
        "name": res.name(),
        "type": ZONE,
        "location": loc,
        "tags": tags(body),
        "etag": w.uuid(),
        "properties": props,
    }))
}

pub(crate) fn build_link(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let loc = location(body, existing, LINK, true)?;
    let mut props = props_in(body);
    let vnet = props
        .get("virtualNetwork")
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let vnet_key = vnet.to_ascii_lowercase();
    let found = w
        .resources
        .get(&vnet_key)
        .is_some_and(|v| type_of(v).eq_ignore_ascii_case(VNET));
    if !found {
        return Err(invalid_reference(&vnet, id));
    }
    let zone_key = res.parent().map(|p| p.key()).unwrap_or_default();
    let me = id.to_ascii_lowercase();
    let twin = w
        .children(&zone_key, "virtualnetworklinks")
        .into_iter()
        .find(|(k, l)| **k != me && linked_vnet(l) == vnet_key)
        .map(|(_, l)| name_of(l).to_string());
    if let Some(twin) = twin {
        return Err(error(
            409,
            "Conflict",
            format!(
                "A virtual network cannot be linked to the same private DNS zone more than once: {vnet} is already linked by virtual network link '{twin}'."
            ),
        ));
    }
    props.entry("registrationEnabled").or_insert(json!(false));
    props.insert("virtualNetworkLinkState".into(), json!("Completed"));
    Ok(json!({
        "id": id,
        "name": res.name(),
        "type": LINK,
        "location": loc,
        "tags": tags(body),
        "etag": w.uuid(),
        "properties": props,
    }))
}

/// The address space of the virtual network at `vnet_key`.
pub(crate) fn vnet_space(w: &World, vnet_key: &str) -> Vec<Net> {
    w.resources
        .get(vnet_key)
        .and_then(|v| v.pointer("/properties/addressSpace/addressPrefixes"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|p| p.as_str().and_then(cidr)).collect())
        .unwrap_or_default()
}

/// Refuses the deletion of a subnet a flexible server or an AKS node pool sits in.
pub(crate) fn subnet_free(w: &World, subnet_key: &str) -> Result<(), Response> {
    let names = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case(subnet_key))
    };
    let user = w
        .of_type(SERVER)
        .into_iter()
        .find(|(_, v)| names(v, "/properties/network/delegatedSubnetResourceId"))
        .or_else(|| {
            w.of_type(POOL)
                .into_iter()
                .find(|(_, v)| names(v, "/properties/vnetSubnetID"))
        });
    match user {
        None => Ok(()),
        Some((k, v)) => Err(error(
            400,
            "InUseSubnetCannotBeDeleted",
            format!(
                "Subnet {} is in use by {} and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet.",
                stored_id(w, subnet_key),
                stored_id_of(v, k)
            ),
        )),
    }
}

/// Ids of the subnets that name NSG `key`.
pub(crate) fn nsg_users(w: &World, key: &str) -> Vec<String> {
    w.of_type(SUBNET)
        .into_iter()
        .filter(|(_, s)| {
            s.pointer("/properties/networkSecurityGroup/id")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(key))
        })
        .map(|(k, s)| stored_id_of(s, k))
        .collect()
}

pub(crate) fn linked_vnet(link: &Value) -> String {
    link.pointer("/properties/virtualNetwork/id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn invalid_reference(what: &str, by: &str) -> Response {
    error(
        400,
        "InvalidResourceReference",
        format!(
            "Resource {what} referenced by resource {by} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
        ),
    )
}

fn bad_prefix(prefix: &str, id: &str) -> Response {
    error(
        400,
        "InvalidAddressPrefixFormat",
        format!(
            "Address prefix {prefix} of resource {id} is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24."
        ),
    )
}

/// An IPv4 network: address and prefix length.
pub(crate) type Net = (u32, u8);

/// Parses `a.b.c.d/n` with no host bits set.
pub(crate) fn cidr(s: &str) -> Option<Net> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let a = u32::from(addr);
    (a & !mask(len) == 0).then_some((a, len))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// Whether `inner` lies within `outer`.
pub(crate) fn contains(outer: Net, inner: Net) -> bool {
    inner.1 >= outer.1 && inner.0 & mask(outer.1) == outer.0
}

pub(crate) fn overlaps(a: Net, b: Net) -> bool {
    contains(a, b) || contains(b, a)
}

fn subnet_nets(s: &Value) -> Vec<Net> {
    let p = s.get("properties");
    let one = p
        .and_then(|p| p.get("addressPrefix"))
        .and_then(Value::as_str);
    let many = p
        .and_then(|p| p.get("addressPrefixes"))
        .and_then(Value::as_array);
    one.into_iter()
        .chain(many.into_iter().flatten().filter_map(Value::as_str))
        .filter_map(cidr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_contain_and_overlap() {
        let vnet = cidr("10.0.0.0/16").unwrap();
        let a = cidr("10.0.1.0/24").unwrap();
        let b = cidr("10.0.1.128/25").unwrap();
        assert!(contains(vnet, a) && !contains(a, vnet));
        assert!(overlaps(a, b) && overlaps(b, a));
        assert!(!overlaps(a, cidr("10.0.2.0/24").unwrap()));
        assert!(!contains(vnet, cidr("10.1.0.0/24").unwrap()));
        assert_eq!(cidr("10.0.0.1/16"), None, "host bits set");
        assert_eq!(cidr("10.0.0.0/33"), None);
        assert_eq!(cidr("banana"), None);
        assert_eq!(cidr("0.0.0.0/0"), Some((0, 0)));
    }
}
