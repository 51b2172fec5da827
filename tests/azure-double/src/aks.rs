//! Microsoft.ContainerService rules: managed clusters (Kubernetes versions, a System
//! pool, node subnets, service and pod ranges, the OIDC issuer and workload identity,
//! the cluster's and its kubelet's identities) and their agent pools.
//!
//! A cluster's `agentPoolProfiles` are its agent pools: a cluster PUT stores each
//! profile as an `agentPools/{name}` child (like a vnet's subnets), the agentPools
//! route adds more, and every GET of the cluster lists them all. A cluster PUT that
//! leaves a pool out does not delete it (AKS's behaviour); only a pool DELETE does.

use std::net::Ipv4Addr;

use axum::response::Response;
use serde_json::{Map, Value, json};

use base64::Engine as _;

use crate::http::{error, json_status};
use crate::network::{Net, cidr, contains, overlaps, vnet_space};
use crate::path::Res;
use crate::rules::{
    Built, CLUSTER, IDENTITY, POOL, SUBNET, TENANT, location, name_of, props_in, props_mut,
    stored_id, stored_id_of, tags, type_of,
};
use crate::world::World;

/// The Kubernetes minor versions (`1.N`) the double offers.
const MINORS: std::ops::RangeInclusive<u32> = 28..=34;
/// The patch a `1.N` version resolves to.
const PATCH: u32 = 5;
const DEFAULT_VERSION: &str = "1.31";
const NODE_IMAGE: &str = "AKSUbuntu-2204gen2containerd-202409.23.0";
const UPGRADE_CHANNELS: [&str; 5] = ["rapid", "stable", "patch", "node-image", "none"];
const PLUGINS: [&str; 3] = ["azure", "kubenet", "none"];
/// Fields of a cluster's `properties` that AKS computes.
const CLUSTER_COMPUTED: [&str; 8] = [
    "provisioningState",
    "powerState",
    "fqdn",
    "azurePortalFQDN",
    "currentKubernetesVersion",
    "maxAgentPools",
    "agentPoolProfiles",
    "resourceUID",
];
/// Fields of a pool's `properties` that AKS computes.
const POOL_COMPUTED: [&str; 4] = [
    "provisioningState",
    "powerState",
    "currentOrchestratorVersion",
    "nodeImageVersion",
];

fn invalid(message: impl Into<String>) -> Response {
    error(400, "InvalidParameter", message)
}

pub(crate) fn build_cluster(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Built, Response> {
    let name = res.name();
    if !valid_cluster_name(name) {
        return Err(invalid(format!(
            "The managed cluster name '{name}' is invalid: it must be 1 to 63 letters, digits, hyphens and underscores, starting and ending with a letter or digit."
        )));
    }
    let loc = location(body, existing, CLUSTER, false)?;
    let key = id.to_ascii_lowercase();
    let old = |p: &str| existing.and_then(|e| e.pointer(p)).cloned();
    // A PUT on an existing cluster updates it: what the body leaves out is kept.
    let mut props = existing
        .and_then(|e| e.get("properties"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let given = props_in(body);
    let profiles = match given.get("agentPoolProfiles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(invalid("agentPoolProfiles must be an array.")),
    };
    props.extend(given);
    for computed in CLUSTER_COMPUTED {
        props.remove(computed);
    }

    let version = str_prop(&props, "kubernetesVersion").unwrap_or(DEFAULT_VERSION.into());
    let current = k8s_version(&version)?;
    props.insert("kubernetesVersion".into(), json!(version));

    let prefix = str_prop(&props, "dnsPrefix").unwrap_or_else(|| {
        let base: String = name.chars().take(44).collect();
        format!("{}-dns", base.replace('_', "-").trim_matches('-'))
    });
    if let Some(was) = old("/properties/dnsPrefix")
        .as_ref()
        .and_then(Value::as_str)
        && was != prefix
    {
        return Err(error(
            400,
            "PropertyChangeNotAllowed",
            format!("Changing property 'dnsPrefix' is not allowed (from '{was}' to '{prefix}')."),
        ));
    }
    if !valid_dns_prefix(&prefix) {
        return Err(invalid(format!(
            "The DNS prefix '{prefix}' is invalid: it must be 1 to 54 letters, digits and hyphens, starting and ending with a letter or digit."
        )));
    }
    props.insert("dnsPrefix".into(), json!(prefix));

    // The OIDC issuer, once on, stays on; its URL is fixed from the moment it is.
    let was_oidc = old("/properties/oidcIssuerProfile/enabled") == Some(json!(true));
    let oidc = props
        .get("oidcIssuerProfile")
        .and_then(|o| o.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if was_oidc && !oidc {
        return Err(error(
            400,
            "OIDCIssuerFeatureCannotBeDisabled",
            "The OIDC issuer feature cannot be disabled once it has been enabled.",
        ));
    }
    let mut issuer = json!({ "enabled": oidc });
    if oidc {
        let url = old("/properties/oidcIssuerProfile/issuerURL").unwrap_or_else(|| {
            json!(format!(
                "https://{loc}.oic.prod-aks.azure.com/{TENANT}/{}/",
                w.uuid()
            ))
        });
        issuer["issuerURL"] = url;
    }
    props.insert("oidcIssuerProfile".into(), issuer);
    let workload = props
        .get("securityProfile")
        .and_then(|s| s.pointer("/workloadIdentity/enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if workload && !oidc {
        return Err(invalid(
            "Enabling workload identity (securityProfile.workloadIdentity.enabled) requires the OIDC issuer (oidcIssuerProfile.enabled) to be enabled.",
        ));
    }

    if let Some(channel) = props
        .get("autoUpgradeProfile")
        .and_then(|a| a.get("upgradeChannel"))
        .filter(|c| !c.is_null())
        && !channel
            .as_str()
            .is_some_and(|c| UPGRADE_CHANNELS.contains(&c))
    {
        return Err(invalid(format!(
            "autoUpgradeProfile.upgradeChannel {channel} is invalid: one of {}.",
            UPGRADE_CHANNELS.join(", ")
        )));
    }

    let (network, service) = network_profile(props.get("networkProfile"))?;
    props.insert("networkProfile".into(), network);

    // Pools: the profiles given (new or updating a pool), then the System pool and the
    // service range checked over every pool the cluster will have.
    let mut children: Vec<(String, Value)> = Vec::new();
    if existing.is_none() && profiles.is_empty() {
        return Err(no_system_pool());
    }
    let mode_given = profiles.iter().any(|p| p.get("mode").is_some());
    for (i, p) in profiles.iter().enumerate() {
        let Some(pool) = p.get("name").and_then(Value::as_str) else {
            return Err(invalid("Every agent pool profile needs a name."));
        };
        let pool_key = format!("{key}/agentpools/{}", pool.to_ascii_lowercase());
        if children.iter().any(|(k, _)| *k == pool_key) {
            return Err(invalid(format!(
                "The agent pool name '{pool}' appears twice in agentPoolProfiles."
            )));
        }
        let mut given = p.as_object().cloned().unwrap_or_default();
        given.remove("name");
        // Clients from before pool modes existed send none: the first pool is System.
        if existing.is_none() && !mode_given && i == 0 {
            given.insert("mode".into(), json!("System"));
        }
        let old_pool = w.resources.get(&pool_key);
        let pool_id = old_pool.map_or_else(
            || format!("{id}/agentPools/{pool}"),
            |o| stored_id_of(o, &pool_key),
        );
        let pp = pool_props(w, pool, given, old_pool, &version)?;
        children.push((pool_key, pool_body(&pool_id, pool, pp)));
    }
    let kept: Vec<Value> = w
        .children(&key, "agentpools")
        .into_iter()
        .filter(|(k, _)| !children.iter().any(|(c, _)| c == *k))
        .map(|(_, v)| v.clone())
        .collect();
    let all: Vec<&Value> = children.iter().map(|(_, v)| v).chain(&kept).collect();
    if !all.iter().any(|p| is_system(p)) {
        return Err(no_system_pool());
    }
    for p in &all {
        check_service_range(w, service, p)?;
    }

    // Identities: the cluster's (principalId fixed per cluster) and its kubelet's.
    let identity = cluster_identity(w, body.get("identity"), existing)?;
    let node_rg = str_prop(&props, "nodeResourceGroup")
        .unwrap_or_else(|| format!("MC_{}_{name}_{loc}", res.rg));
    props.insert("nodeResourceGroup".into(), json!(node_rg));
    let kubelet = kubelet_identity(w, &props, existing, &res.sub, &node_rg, name)?;
    props.insert(
        "identityProfile".into(),
        json!({ "kubeletidentity": kubelet }),
    );
    props.insert("servicePrincipalProfile".into(), json!({"clientId": "msi"}));

    let fqdn = old("/properties/fqdn").unwrap_or_else(|| {
        let hex: String = w.uuid().chars().filter(|c| *c != '-').take(8).collect();
        json!(format!("{prefix}-{hex}.hcp.{loc}.azmk8s.io"))
    });
    let portal = fqdn
        .as_str()
        .map(|f| f.replacen(".hcp.", ".portal.hcp.", 1));
    props.insert("fqdn".into(), fqdn);
    props.insert("azurePortalFQDN".into(), json!(portal));
    props.insert("currentKubernetesVersion".into(), json!(current));
    props.insert("powerState".into(), json!({"code": "Running"}));
    props.insert("maxAgentPools".into(), json!(100));
    props.entry("enableRBAC").or_insert(json!(true));
    props
        .entry("supportPlan")
        .or_insert(json!("KubernetesOfficial"));
    let sku = body
        .get("sku")
        .or_else(|| existing.and_then(|e| e.get("sku")))
        .cloned()
        .unwrap_or_else(|| json!({"name": "Base", "tier": "Free"}));
    let body = json!({
        "id": id,
        "name": name,
        "type": CLUSTER,
        "location": loc,
        "tags": tags(body),
        "sku": sku,
        "identity": identity,
        "properties": props,
    });
    Ok(Built {
        body,
        secret: None,
        children,
        removed: Vec::new(),
    })
}

/// A PUT through the agentPools route.
pub(crate) fn build_pool(
    w: &mut World,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let cluster_key = res.parent().map(|p| p.key()).unwrap_or_default();
    let cluster = w.resources.get(&cluster_key).cloned().unwrap_or_default();
    let version = cluster
        .pointer("/properties/kubernetesVersion")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_VERSION)
        .to_string();
    let props = pool_props(w, res.name(), props_in(body), existing, &version)?;
    let pool = pool_body(id, res.name(), props);
    if existing.is_some_and(is_system) && !is_system(&pool) {
        last_system_pool(w, &id.to_ascii_lowercase(), "change the mode of")?;
    }
    let service = cluster
        .pointer("/properties/networkProfile/serviceCidr")
        .and_then(Value::as_str)
        .and_then(cidr);
    check_service_range(w, service, &pool)?;
    Ok(pool)
}

/// Refuses to delete the last System pool of a cluster.
pub(crate) fn pool_deletable(w: &World, key: &str) -> Result<(), Response> {
    match w.resources.get(key) {
        Some(p) if is_system(p) => last_system_pool(w, key, "delete"),
        _ => Ok(()),
    }
}

/// A cluster as a GET shows it: the stored body plus its pools as `agentPoolProfiles`.
pub(crate) fn render_cluster(w: &World, key: &str, v: &mut Value) {
    let profiles: Vec<Value> = w
        .children(key, "agentpools")
        .into_iter()
        .map(|(_, p)| {
            let mut profile = Map::new();
            profile.insert("name".into(), json!(name_of(p)));
            if let Some(props) = p.get("properties").and_then(Value::as_object) {
                profile.extend(props.clone());
            }
            Value::Object(profile)
        })
        .collect();
    props_mut(v).insert("agentPoolProfiles".into(), Value::Array(profiles));
}

/// `POST {cluster}/listClusterUserCredential`: `{"kubeconfigs": [{"name": "clusterUser",
/// "value": <base64 kubeconfig>}]}`, the document `az aks get-credentials` writes. The
/// double's clusters have local accounts (no Entra ID integration), so, as from AKS, the
/// user entry holds a client certificate, its key and a token (made up here).
pub(crate) fn user_credential(w: &World, cluster: &Res) -> Response {
    let Some(v) = w.resources.get(&cluster.key()) else {
        return crate::rules::resource_not_found(cluster);
    };
    let name = cluster.name().to_string();
    let fqdn = v["properties"]["fqdn"].as_str().unwrap_or_default();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = format!("clusterUser_{}_{name}", cluster.rg);
    let kubeconfig = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://{fqdn}:443\n  name: {name}\ncontexts:\n- context:\n    cluster: {name}\n    user: {user}\n  name: {name}\ncurrent-context: {name}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n    token: {token}\n",
        ca = b64("-----BEGIN CERTIFICATE-----\nMIIdouble-ca\n-----END CERTIFICATE-----\n"),
        cert = b64("-----BEGIN CERTIFICATE-----\nMIIdouble-user\n-----END CERTIFICATE-----\n"),
        key =
            b64("-----BEGIN RSA PRIVATE KEY-----\nMIIdouble-key\n-----END RSA PRIVATE KEY-----\n"),
        token = "0123456789abcdef0123456789abcdefdoubletoken",
    );
    json_status(
        200,
        json!({ "kubeconfigs": [{ "name": "clusterUser", "value": b64(&kubeconfig) }] }),
    )
}

/// The principals a cluster brings to the directory: its own identity and its kubelet's.
pub(crate) fn cluster_principals(v: &Value) -> impl Iterator<Item = &str> {
    [
        "/identity/principalId",
        "/properties/identityProfile/kubeletidentity/objectId",
    ]
    .into_iter()
    .filter_map(|p| v.pointer(p).and_then(Value::as_str))
}

fn no_system_pool() -> Response {
    error(
        400,
        "MustDefineAtLeastOneSystemPool",
        "Must define at least one system pool: a managed cluster needs an agent pool with mode 'System'.",
    )
}

/// Refuses to take away `key`, a cluster's only System pool (one not being deleted).
fn last_system_pool(w: &World, key: &str, what: &str) -> Result<(), Response> {
    let cluster = key.rsplit_once("/agentpools/").map_or("", |(c, _)| c);
    let other = w
        .children(cluster, "agentpools")
        .into_iter()
        .any(|(k, p)| k != key && is_system(p) && !state_is(p, "Deleting"));
    if other {
        return Ok(());
    }
    Err(error(
        400,
        "OperationNotAllowed",
        format!(
            "Cannot {what} agent pool '{}': it is the last System pool of the cluster, and a cluster must have at least one System pool.",
            stored_id(w, key).rsplit('/').next().unwrap_or("")
        ),
    ))
}

fn is_system(pool: &Value) -> bool {
    pool.pointer("/properties/mode") == Some(&json!("System"))
}

fn state_is(v: &Value, state: &str) -> bool {
    v.pointer("/properties/provisioningState") == Some(&json!(state))
}

fn pool_body(id: &str, name: &str, props: Map<String, Value>) -> Value {
    json!({
        "id": id,
        "name": name,
        "type": POOL,
        "properties": props,
    })
}

/// Validates a pool's properties (given over what it had) and fills in what AKS does.
fn pool_props(
    w: &World,
    name: &str,
    given: Map<String, Value>,
    old: Option<&Value>,
    cluster_version: &str,
) -> Result<Map<String, Value>, Response> {
    if !valid_pool_name(name) {
        return Err(invalid(format!(
            "The agent pool name '{name}' is invalid: it must be 1 to 12 lowercase letters and digits, starting with a letter."
        )));
    }
    let mut p = old
        .and_then(|o| o.get("properties"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    p.extend(given);
    for computed in POOL_COMPUTED {
        p.remove(computed);
    }
    let mode = one_of(&p, "mode", &["System", "User"], "User")?;
    let os = one_of(&p, "osType", &["Linux", "Windows"], "Linux")?;
    if os == "Windows" && name.len() > 6 {
        return Err(invalid(format!(
            "The Windows agent pool name '{name}' is invalid: at most 6 characters."
        )));
    }
    let kind = one_of(
        &p,
        "type",
        &[
            "VirtualMachineScaleSets",
            "AvailabilitySet",
            "VirtualMachines",
        ],
        "VirtualMachineScaleSets",
    )?;
    let auto = match p.get("enableAutoScaling") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("enableAutoScaling must be true or false.")),
    };
    let int = |f: &str| match p.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{f} of agent pool '{name}' must be an integer."))),
    };
    let (count, min, max) = (int("count")?, int("minCount")?, int("maxCount")?);
    let floor = if mode == "System" { 1 } else { 0 };
    let count = count.or(min.filter(|_| auto)).unwrap_or(1);
    if !(floor..=1000).contains(&count) {
        return Err(invalid(format!(
            "The count {count} of {mode} agent pool '{name}' is invalid: it must be between {floor} and 1000."
        )));
    }
    if auto {
        let (Some(min), Some(max)) = (min, max) else {
            return Err(invalid(format!(
                "Agent pool '{name}' enables autoscaling: minCount and maxCount are required."
            )));
        };
        if min < floor || max > 1000 || !(min <= count && count <= max) {
            return Err(invalid(format!(
                "Agent pool '{name}' is invalid: autoscaling needs {floor} <= minCount ({min}) <= count ({count}) <= maxCount ({max}) <= 1000."
            )));
        }
    }
    if let Some(subnet) = p.get("vnetSubnetID").filter(|s| !s.is_null()) {
        let found = subnet.as_str().is_some_and(|s| {
            w.resources
                .get(&s.to_ascii_lowercase())
                .is_some_and(|v| type_of(v).eq_ignore_ascii_case(SUBNET))
        });
        if !found {
            return Err(invalid(format!(
                "VnetSubnetID {subnet} of agent pool '{name}' not found: the subnet must exist."
            )));
        }
    }
    let version = str_prop(&p, "orchestratorVersion").unwrap_or(cluster_version.into());
    let current = k8s_version(&version)?;
    p.insert("mode".into(), json!(mode));
    p.insert("osType".into(), json!(os));
    p.insert("type".into(), json!(kind));
    p.insert("count".into(), json!(count));
    p.insert("enableAutoScaling".into(), json!(auto));
    p.insert("orchestratorVersion".into(), json!(version));
    p.insert("currentOrchestratorVersion".into(), json!(current));
    p.entry("vmSize").or_insert(json!("Standard_D2s_v5"));
    p.entry("osDiskSizeGB").or_insert(json!(128));
    p.entry("osSKU").or_insert(json!(if os == "Linux" {
        "Ubuntu"
    } else {
        "Windows2022"
    }));
    p.entry("maxPods").or_insert(json!(110));
    p.entry("enableNodePublicIP").or_insert(json!(false));
    p.insert("nodeImageVersion".into(), json!(NODE_IMAGE));
    p.insert("powerState".into(), json!({"code": "Running"}));
    Ok(p)
}

/// `{"name":"System"}`-style enumerations: the canonical casing of `p[field]`, or `default`.
fn one_of(
    p: &Map<String, Value>,
    field: &str,
    allowed: &[&str],
    default: &str,
) -> Result<String, Response> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(v) => v
            .as_str()
            .and_then(|s| allowed.iter().find(|a| a.eq_ignore_ascii_case(s)))
            .map(|a| (*a).to_string())
            .ok_or_else(|| {
                invalid(format!(
                    "The value {v} of {field} is invalid: one of {}.",
                    allowed.join(", ")
                ))
            }),
    }
}

/// Checks the network profile and fills in AKS's defaults; the service range parsed.
fn network_profile(given: Option<&Value>) -> Result<(Value, Option<Net>), Response> {
    let mut n = given
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let plugin = str_prop(&n, "networkPlugin").unwrap_or("kubenet".into());
    if !PLUGINS.contains(&plugin.as_str()) {
        return Err(invalid(format!(
            "networkProfile.networkPlugin '{plugin}' is invalid: one of {}.",
            PLUGINS.join(", ")
        )));
    }
    let overlay = match str_prop(&n, "networkPluginMode") {
        None => false,
        Some(m) if m.eq_ignore_ascii_case("overlay") && plugin == "azure" => true,
        Some(m) => {
            return Err(invalid(format!(
                "networkProfile.networkPluginMode '{m}' is invalid: 'overlay' is the only mode, and only with networkPlugin 'azure'."
            )));
        }
    };
    let service_str = str_prop(&n, "serviceCidr").unwrap_or("10.0.0.0/16".into());
    let service = cidr(&service_str).ok_or_else(|| {
        invalid(format!(
            "networkProfile.serviceCidr '{service_str}' is not a valid CIDR."
        ))
    })?;
    let dns = str_prop(&n, "dnsServiceIP").unwrap_or_else(|| {
        Ipv4Addr::from(service.0 + 10).to_string() // AKS's default: the tenth address
    });
    let ip = dns.parse::<Ipv4Addr>().map(u32::from).map_err(|_| {
        invalid(format!(
            "networkProfile.dnsServiceIP '{dns}' is not a valid IPv4 address."
        ))
    })?;
    // The range's first two addresses are its network and kubernetes.default's.
    if !contains(service, (ip, 32)) || ip <= service.0 + 1 {
        return Err(invalid(format!(
            "networkProfile.dnsServiceIP '{dns}' must be within serviceCidr '{service_str}' and not its first or second address."
        )));
    }
    let pod_given = str_prop(&n, "podCidr");
    let pod = match (plugin.as_str(), overlay, pod_given) {
        ("azure", false, Some(p)) => {
            return Err(invalid(format!(
                "networkProfile.podCidr '{p}' is not allowed with networkPlugin 'azure' unless networkPluginMode is 'overlay'."
            )));
        }
        ("azure", false, None) | ("none", _, None) => None,
        (_, _, p) => Some(p.unwrap_or("10.244.0.0/16".into())),
    };
    if let Some(pod) = &pod {
        let net = cidr(pod).ok_or_else(|| {
            invalid(format!(
                "networkProfile.podCidr '{pod}' is not a valid CIDR."
            ))
        })?;
        if overlaps(net, service) {
            return Err(invalid(format!(
                "networkProfile.podCidr '{pod}' overlaps serviceCidr '{service_str}'."
            )));
        }
        n.insert("podCidr".into(), json!(pod));
    }
    n.insert("networkPlugin".into(), json!(plugin));
    if overlay {
        n.insert("networkPluginMode".into(), json!("overlay"));
    }
    n.insert("serviceCidr".into(), json!(service_str));
    n.insert("dnsServiceIP".into(), json!(dns));
    n.entry("outboundType").or_insert(json!("loadBalancer"));
    n.entry("loadBalancerSku").or_insert(json!("standard"));
    Ok((Value::Object(n), Some(service)))
}

/// The service range must not overlap the virtual network a pool's nodes sit in.
fn check_service_range(w: &World, service: Option<Net>, pool: &Value) -> Result<(), Response> {
    let (Some(service), Some(subnet)) = (
        service,
        pool.pointer("/properties/vnetSubnetID")
            .and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    let key = subnet.to_ascii_lowercase();
    let vnet = key.rsplit_once("/subnets/").map_or("", |(v, _)| v);
    if vnet_space(w, vnet)
        .into_iter()
        .any(|s| overlaps(s, service))
    {
        let (a, len) = service;
        return Err(error(
            400,
            "ServiceCidrOverlapExistingSubnetsCidr",
            format!(
                "The specified service CIDR {}/{len} is conflicted with an existing subnet CIDR of virtual network {}.",
                Ipv4Addr::from(a),
                stored_id(w, vnet)
            ),
        ));
    }
    Ok(())
}

/// The cluster's identity: SystemAssigned (a principal of its own, fixed per cluster)
/// or one existing user-assigned identity.
fn cluster_identity(
    w: &mut World,
    given: Option<&Value>,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let old = existing.and_then(|e| e.get("identity"));
    let ident = given
        .or(old)
        .cloned()
        .unwrap_or_else(|| json!({"type": "SystemAssigned"}));
    let ty = ident.get("type").and_then(Value::as_str).unwrap_or("");
    if ty.eq_ignore_ascii_case("SystemAssigned") {
        let principal = old
            .filter(|o| o.get("type") == Some(&json!("SystemAssigned")))
            .and_then(|o| o.get("principalId").cloned())
            .unwrap_or_else(|| json!(w.uuid()));
        return Ok(json!({
            "type": "SystemAssigned",
            "principalId": principal,
            "tenantId": TENANT,
        }));
    }
    if !ty.eq_ignore_ascii_case("UserAssigned") {
        return Err(invalid(format!(
            "The identity type '{ty}' is invalid: one of SystemAssigned, UserAssigned."
        )));
    }
    let ids = ident
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
        .filter(|m| m.len() == 1)
        .ok_or_else(|| {
            invalid("A UserAssigned cluster identity names exactly one identity in userAssignedIdentities.")
        })?;
    let mut out = Map::new();
    for id in ids.keys() {
        out.insert(id.clone(), user_identity(w, id)?);
    }
    Ok(json!({"type": "UserAssigned", "userAssignedIdentities": out}))
}

/// `{"principalId","clientId"}` of an existing user-assigned identity.
fn user_identity(w: &World, id: &str) -> Result<Value, Response> {
    let mi = w
        .resources
        .get(&id.to_ascii_lowercase())
        .filter(|v| type_of(v).eq_ignore_ascii_case(IDENTITY))
        .ok_or_else(|| invalid(format!("The user-assigned identity '{id}' was not found.")))?;
    Ok(json!({
        "principalId": mi.pointer("/properties/principalId"),
        "clientId": mi.pointer("/properties/clientId"),
    }))
}

/// The kubelet identity: a given user-assigned identity, or one AKS makes in the node
/// resource group (fixed per cluster).
fn kubelet_identity(
    w: &mut World,
    props: &Map<String, Value>,
    existing: Option<&Value>,
    sub: &str,
    node_rg: &str,
    name: &str,
) -> Result<Value, Response> {
    let given = props
        .get("identityProfile")
        .and_then(|p| p.pointer("/kubeletidentity/resourceId"))
        .and_then(Value::as_str);
    let old = existing.and_then(|e| e.pointer("/properties/identityProfile/kubeletidentity"));
    if let Some(id) = given
        && old
            .and_then(|o| o.get("resourceId"))
            .and_then(Value::as_str)
            != Some(id)
    {
        let mi = user_identity(w, id)?;
        return Ok(json!({
            "resourceId": id,
            "clientId": mi["clientId"],
            "objectId": mi["principalId"],
        }));
    }
    if let Some(old) = old {
        return Ok(old.clone());
    }
    Ok(json!({
        "resourceId": format!(
            "/subscriptions/{sub}/resourcegroups/{node_rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-agentpool"
        ),
        "clientId": w.uuid(),
        "objectId": w.uuid(),
    }))
}

/// `1.N` or `1.N.P` with N in [`MINORS`]; the full version it runs.
fn k8s_version(v: &str) -> Result<String, Response> {
    let parts: Vec<&str> = v.split('.').collect();
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let minor = match parts.as_slice() {
        ["1", m] | ["1", m, _] => num(m),
        _ => None,
    };
    let patch = parts.get(2).map(|p| num(p));
    match (minor, patch) {
        (Some(m), None) if MINORS.contains(&m) => Ok(format!("1.{m}.{PATCH}")),
        (Some(m), Some(Some(_))) if MINORS.contains(&m) => Ok(v.to_string()),
        _ => Err(error(
            400,
            "AgentPoolK8sVersionNotSupported",
            format!(
                "Version {v} is not supported in this region. Supported versions: 1.{}..1.{} (as 1.N or 1.N.P).",
                MINORS.start(),
                MINORS.end()
            ),
        )),
    }
}

fn str_prop(m: &Map<String, Value>, f: &str) -> Option<String> {
    m.get(f).and_then(Value::as_str).map(str::to_string)
}

/// `^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$`.
fn valid_cluster_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// `^[a-z][a-z0-9]{0,11}$`.
fn valid_pool_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=12).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// 1–54 letters, digits and hyphens, starting and ending with a letter or digit.
fn valid_dns_prefix(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=54).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(valid_cluster_name("flyte_aks-1"));
        for bad in ["", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(!valid_cluster_name(bad), "{bad}");
        }
        assert!(valid_pool_name("system") && valid_pool_name("gpu1"));
        for bad in ["", "1pool", "Pool", "user-pool", "abcdefghijklm"] {
            assert!(!valid_pool_name(bad), "{bad}");
        }
        assert_eq!(k8s_version("1.33").ok(), Some("1.33.5".into()));
        assert_eq!(k8s_version("1.28.9").ok(), Some("1.28.9".into()));
        for bad in ["1.27", "1.35", "2.30", "1.3x", "1.30.", "1.30.1.2", "v1.30"] {
            assert!(k8s_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_profiles() {
        let (n, s) = network_profile(None).expect("defaults");
        assert_eq!(n["serviceCidr"], "10.0.0.0/16");
        assert_eq!(n["dnsServiceIP"], "10.0.0.10");
        assert_eq!(n["podCidr"], "10.244.0.0/16");
        assert_eq!(s, cidr("10.0.0.0/16"));
        let ok = json!({"networkPlugin": "azure", "networkPluginMode": "overlay",
            "podCidr": "192.168.0.0/16", "serviceCidr": "172.16.0.0/16", "dnsServiceIP": "172.16.0.10"});
        assert!(network_profile(Some(&ok)).is_ok());
        for (field, bad) in [
            ("dnsServiceIP", json!("172.17.0.10")),
            ("dnsServiceIP", json!("172.16.0.1")),
            ("serviceCidr", json!("172.16.0.1/16")),
            ("podCidr", json!("172.16.0.0/12")),
            ("networkPluginMode", json!("bridge")),
        ] {
            let mut p = ok.clone();
            p[field] = bad;
            assert!(network_profile(Some(&p)).is_err(), "{p}");
        }
        let azure = json!({"networkPlugin": "azure", "podCidr": "192.168.0.0/16"});
        assert!(
            network_profile(Some(&azure)).is_err(),
            "podCidr needs overlay"
        );
    }
}
