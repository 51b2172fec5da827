//! The per-type rules on top of the generic store, keyed by the resource type path
//! (`microsoft.network/virtualnetworks/subnets`): dispatch to the network, PostgreSQL,
//! storage, AKS and managed identity rules, what a GET computes, provisioning states, parents, in-use checks
//! before a delete, locks, regions. Shared helpers for the type modules live here too.

use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::aks;
use crate::http::error;
use crate::identity;
use crate::network;
use crate::path::Res;
use crate::postgres;
use crate::storage;
use crate::world::World;

pub(crate) const GROUP: &str = "Microsoft.Resources/resourceGroups";
pub(crate) const VNET: &str = "Microsoft.Network/virtualNetworks";
pub(crate) const SUBNET: &str = "Microsoft.Network/virtualNetworks/subnets";
pub(crate) const NSG: &str = "Microsoft.Network/networkSecurityGroups";
pub(crate) const ZONE: &str = "Microsoft.Network/privateDnsZones";
pub(crate) const LINK: &str = "Microsoft.Network/privateDnsZones/virtualNetworkLinks";
pub(crate) const SERVER: &str = "Microsoft.DBforPostgreSQL/flexibleServers";
pub(crate) const DATABASE: &str = "Microsoft.DBforPostgreSQL/flexibleServers/databases";
pub(crate) const CONFIG: &str = "Microsoft.DBforPostgreSQL/flexibleServers/configurations";
pub(crate) const STORAGE_ACCOUNT: &str = "Microsoft.Storage/storageAccounts";
pub(crate) const BLOB_SERVICE: &str = "Microsoft.Storage/storageAccounts/blobServices";
pub(crate) const CONTAINER: &str = "Microsoft.Storage/storageAccounts/blobServices/containers";
pub(crate) const POLICY: &str = "Microsoft.Storage/storageAccounts/managementPolicies";
pub(crate) const CLUSTER: &str = "Microsoft.ContainerService/managedClusters";
pub(crate) const POOL: &str = "Microsoft.ContainerService/managedClusters/agentPools";
pub(crate) const IDENTITY: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
pub(crate) const CREDENTIAL: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";
pub(crate) const LOCK: &str = "Microsoft.Authorization/locks";
pub(crate) const ROLE_ASSIGNMENT: &str = "Microsoft.Authorization/roleAssignments";
/// What follows a scope in a lock id (lowercase).
pub(crate) const LOCK_MARK: &str = "/providers/microsoft.authorization/locks/";

/// The tenant of every subscription, identity and cluster of the double.
pub(crate) const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";

/// The one server configuration the double knows.
pub(crate) const SECURE_TRANSPORT: &str = "require_secure_transport";

/// `(name, displayName, regionalDisplayName)` of the regions the double offers.
pub(crate) const REGIONS: &[(&str, &str, &str)] = &[
    ("eastus", "East US", "(US) East US"),
    ("eastus2", "East US 2", "(US) East US 2"),
    ("westus2", "West US 2", "(US) West US 2"),
    ("westus3", "West US 3", "(US) West US 3"),
    ("centralus", "Central US", "(US) Central US"),
    ("northeurope", "North Europe", "(Europe) North Europe"),
    ("westeurope", "West Europe", "(Europe) West Europe"),
    ("uksouth", "UK South", "(Europe) UK South"),
    (
        "southeastasia",
        "Southeast Asia",
        "(Asia Pacific) Southeast Asia",
    ),
    ("japaneast", "Japan East", "(Asia Pacific) Japan East"),
    (
        "australiaeast",
        "Australia East",
        "(Asia Pacific) Australia East",
    ),
    (
        "germanywestcentral",
        "Germany West Central",
        "(Europe) Germany West Central",
    ),
];

/// The resource types the double serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Vnet,
    Subnet,
    Nsg,
    Zone,
    Link,
    Server,
    Database,
    Config,
    /// A storage account.
    Account,
    /// An account's blob service (`default` only).
    BlobService,
    /// A blob container.
    Container,
    /// An account's lifecycle management policy (`default` only).
    Policy,
    /// An AKS managed cluster.
    Cluster,
    /// An AKS cluster's agent (node) pool.
    Pool,
    /// A user-assigned managed identity.
    Identity,
    /// A managed identity's federated identity credential.
    Credential,
    /// Any other type: only what tests planted with `put_raw` is served (GET, DELETE).
    Other,
}

impl Kind {
    /// The kind of a lowercased type path.
    pub fn of(type_key: &str) -> Kind {
        [
            (VNET, Kind::Vnet),
            (SUBNET, Kind::Subnet),
            (NSG, Kind::Nsg),
            (ZONE, Kind::Zone),
            (LINK, Kind::Link),
            (SERVER, Kind::Server),
            (DATABASE, Kind::Database),
            (CONFIG, Kind::Config),
            (STORAGE_ACCOUNT, Kind::Account),
            (BLOB_SERVICE, Kind::BlobService),
            (CONTAINER, Kind::Container),
            (POLICY, Kind::Policy),
            (CLUSTER, Kind::Cluster),
            (POOL, Kind::Pool),
            (IDENTITY, Kind::Identity),
            (CREDENTIAL, Kind::Credential),
        ]
        .into_iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(type_key))
        .map_or(Kind::Other, |(_, k)| k)
    }

    /// The one api-version the double accepts for the type.
    pub fn api_version(self) -> Option<&'static str> {
        match self {
            Kind::Vnet | Kind::Subnet | Kind::Nsg => Some("2024-05-01"),
            Kind::Zone | Kind::Link => Some("2024-06-01"),
            Kind::Server | Kind::Database | Kind::Config => Some("2024-08-01"),
            Kind::Account | Kind::BlobService | Kind::Container | Kind::Policy => {
                Some("2023-05-01")
            }
            Kind::Cluster | Kind::Pool => Some("2024-09-01"),
            Kind::Identity | Kind::Credential => Some("2023-01-31"),
            Kind::Other => None,
        }
    }

    /// The status of a PUT the type answers at once, with no operation (storage: all
    /// but an account's creation; managed identities and their credentials); `None`
    /// when the PUT starts an async operation.
    pub fn sync_put(self, update: bool) -> Option<u16> {
        match self {
            Kind::Account if update => Some(200),
            Kind::BlobService | Kind::Policy => Some(200),
            Kind::Container | Kind::Identity | Kind::Credential => {
                Some(if update { 200 } else { 201 })
            }
            _ => None,
        }
    }

    /// Whether a DELETE answers 200 at once, with no operation (storage, identities).
    pub fn sync_delete(self) -> bool {
        matches!(
            self,
            Kind::Account | Kind::Container | Kind::Policy | Kind::Identity | Kind::Credential
        )
    }

    /// Whether `GET {parent}/{type}` lists the parent's children of this type.
    pub fn listable(self) -> bool {
        matches!(self, Kind::Container | Kind::Pool | Kind::Credential)
    }

    /// The children of a storage account, which need it provisioned.
    fn storage_child(self) -> bool {
        matches!(self, Kind::BlobService | Kind::Container | Kind::Policy)
    }
}

/// What a PUT stores: the resource, its secret, and (vnet) the subnets it carries and
/// the ones it drops.
pub(crate) struct Built {
    pub body: Value,
    pub secret: Option<String>,
    pub children: Vec<(String, Value)>,
    pub removed: Vec<String>,
}

impl Built {
    fn plain(body: Value) -> Built {
        Built {
            body,
            secret: None,
            children: Vec::new(),
            removed: Vec::new(),
        }
    }
}

/// Validates a PUT of `res` (stored id `id`) and builds what to store.
pub(crate) fn build(
    w: &mut World,
    kind: Kind,
    res: &Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Built, Response> {
    match kind {
        Kind::Vnet => network::build_vnet(w, res, id, body, existing),
        Kind::Subnet => network::build_subnet(w, res, id, body).map(Built::plain),
        Kind::Nsg => network::build_nsg(w, res, id, body, existing).map(Built::plain),
        Kind::Zone => network::build_zone(w, res, id, body, existing).map(Built::plain),
        Kind::Link => network::build_link(w, res, id, body, existing).map(Built::plain),
        Kind::Server => postgres::build_server(w, res, id, body, existing),
        Kind::Database => postgres::build_database(res, id, body, existing).map(Built::plain),
        Kind::Config => postgres::build_config(res, id, body).map(Built::plain),
        Kind::Account => storage::build_account(w, res, id, body, existing).map(Built::plain),
        Kind::BlobService => storage::build_blob_service(w, res, body, existing).map(Built::plain),
        Kind::Container => storage::build_container(w, res, id, body).map(Built::plain),
        Kind::Policy => storage::build_policy(res, id, body).map(Built::plain),
        Kind::Cluster => aks::build_cluster(w, res, id, body, existing),
        Kind::Pool => aks::build_pool(w, res, id, body, existing).map(Built::plain),
        Kind::Identity => identity::build_identity(w, res, id, body, existing).map(Built::plain),
        Kind::Credential => identity::build_credential(w, res, id, body).map(Built::plain),
        Kind::Other => Err(error(400, "InvalidResourceType", "unsupported type")),
    }
}

/// The resource at `key` as a GET shows it: the stored body plus what ARM computes.
pub(crate) fn render(w: &World, key: &str) -> Option<Value> {
    let mut v = w.resources.get(key)?.clone();
    let ty = type_of(&v).to_string();
    if ty.eq_ignore_ascii_case(VNET) {
        let subnets: Vec<Value> = w
            .children(key, "subnets")
            .into_iter()
            .map(|(_, s)| s.clone())
            .collect();
        props_mut(&mut v).insert("subnets".into(), Value::Array(subnets));
    } else if ty.eq_ignore_ascii_case(NSG) {
        let users: Vec<Value> = network::nsg_users(w, key)
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        if !users.is_empty() {
            props_mut(&mut v).insert("subnets".into(), Value::Array(users));
        }
    } else if ty.eq_ignore_ascii_case(ZONE) {
        let links = w.children(key, "virtualnetworklinks");
        let registering = links
            .iter()
            .filter(|(_, l)| l.pointer("/properties/registrationEnabled") == Some(&json!(true)))
            .count();
        let p = props_mut(&mut v);
        p.insert("numberOfRecordSets".into(), json!(1));
        p.insert("numberOfVirtualNetworkLinks".into(), json!(links.len()));
        p.insert(
            "numberOfVirtualNetworkLinksWithRegistration".into(),
            json!(registering),
        );
        p.insert("maxNumberOfRecordSets".into(), json!(25_000));
        p.insert("maxNumberOfVirtualNetworkLinks".into(), json!(1000));
        p.insert(
            "maxNumberOfVirtualNetworkLinksWithRegistration".into(),
            json!(100),
        );
    } else if ty.eq_ignore_ascii_case(CLUSTER) {
        aks::render_cluster(w, key, &mut v);
    }
    Some(v)
}

/// Sets `properties.provisioningState` (and a flexible server's `properties.state`,
/// which follows it: Provisioning, Updating, Dropping, Ready).
pub(crate) fn set_state(v: &mut Value, state: &str) {
    if !v.is_object() {
        return;
    }
    let server = type_of(v).eq_ignore_ascii_case(SERVER);
    let p = props_mut(v);
    p.insert("provisioningState".into(), json!(state));
    if server {
        let s = match state {
            "Accepted" | "Creating" => "Provisioning",
            "Updating" => "Updating",
            "Deleting" => "Dropping",
            "Succeeded" => "Ready",
            _ => return, // a failed operation leaves the server's state as it was
        };
        p.insert("state".into(), json!(s));
    }
}

/// A parent a child resource needs: its absence is a 404 in the type's own words.
pub(crate) fn check_parent(w: &World, kind: Kind, res: &Res) -> Result<(), Response> {
    if kind.storage_child() {
        return storage::check_parent(w, res);
    }
    let Some(parent) = res.parent() else {
        return Ok(());
    };
    if w.resources.contains_key(&parent.key()) {
        return Ok(());
    }
    Err(match kind {
        Kind::Subnet => error(
            404,
            "NotFound",
            format!("Resource {} not found.", parent.id()),
        ),
        Kind::Link => error(
            404,
            "ParentResourceNotFound",
            format!(
                "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                parent.name()
            ),
        ),
        _ => resource_not_found(&parent),
    })
}

/// 404 for an absent resource of `kind`, in its service's words.
pub(crate) fn not_found(w: &World, kind: Kind, res: &Res) -> Response {
    if kind.storage_child() {
        return storage::not_found(w, kind, res);
    }
    resource_not_found(res)
}

/// 404 `ResourceNotFound` in ARM's words.
pub(crate) fn resource_not_found(res: &Res) -> Response {
    let mut what = res.ns.clone();
    for (t, n) in &res.types {
        what.push_str(&format!("/{t}/{n}"));
    }
    error(
        404,
        "ResourceNotFound",
        format!(
            "The Resource '{what}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            res.rg
        ),
    )
}

/// What refuses a DELETE of `key` besides locks: resources still using it.
pub(crate) fn check_delete(w: &World, kind: Kind, key: &str) -> Result<(), Response> {
    match kind {
        Kind::Subnet => network::subnet_free(w, key),
        Kind::Vnet => w
            .children(key, "subnets")
            .into_iter()
            .try_for_each(|(k, _)| network::subnet_free(w, k)),
        Kind::Nsg => {
            let users = network::nsg_users(w, key);
            if users.is_empty() {
                return Ok(());
            }
            Err(error(
                400,
                "InUseNetworkSecurityGroupCannotBeDeleted",
                format!(
                    "Network security group {} cannot be deleted because it is in use by the following resources: {}. In order to delete the Network security group, remove the association with the resource(s).",
                    stored_id(w, key),
                    users.join(", ")
                ),
            ))
        }
        Kind::Pool => aks::pool_deletable(w, key),
        Kind::Zone if !w.children(key, "virtualnetworklinks").is_empty() => Err(error(
            409,
            "PreconditionFailed",
            format!(
                "Cannot delete the Private DNS zone {} because it has virtual network links. Delete the links first.",
                stored_id(w, key)
            ),
        )),
        _ => Ok(()),
    }
}

/// The id of a lock that refuses a change to `key`: for a delete, any lock on it, above
/// it or below it (a delete takes the children along); for a write, a `ReadOnly` lock on
/// it or above it.
pub(crate) fn lock_blocking(w: &World, key: &str, delete: bool) -> Option<String> {
    w.resources.iter().find_map(|(k, v)| {
        let (scope, name) = k.rsplit_once(LOCK_MARK)?;
        if name.contains('/') || !type_of(v).eq_ignore_ascii_case(LOCK) {
            return None;
        }
        let above = key == scope || key.starts_with(&format!("{scope}/"));
        let below = scope.starts_with(&format!("{key}/"));
        let read_only = v
            .pointer("/properties/level")
            .and_then(Value::as_str)
            .is_some_and(|l| l.eq_ignore_ascii_case("ReadOnly"));
        let blocks = if delete {
            above || below
        } else {
            above && read_only
        };
        // The scope with the casing of the lock's id (lowercasing keeps byte offsets).
        blocks.then(|| stored_id(w, k)[..scope.len()].to_string())
    })
}

/// 409 `ScopeLocked` for a change to `id` refused by a lock on `scope`.
pub(crate) fn scope_locked(id: &str, scope: &str, delete: bool) -> Response {
    let op = if delete { "delete" } else { "write" };
    error(
        409,
        "ScopeLocked",
        format!(
            "The scope '{id}' cannot perform {op} operation because following scope(s) are locked: '{scope}'. Please remove the lock and try again."
        ),
    )
}

/// Checks a region for a tracked resource of type `ty`: required, one the double offers
/// (or `global` for private DNS), and unchanged on an update.
pub(crate) fn location(
    body: &Value,
    existing: Option<&Value>,
    ty: &str,
    global: bool,
) -> Result<String, Response> {
    let Some(given) = body.get("location").and_then(Value::as_str) else {
        return Err(error(
            400,
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    };
    let loc = norm_location(given);
    if global && loc != "global" {
        return Err(error(
            400,
            "InvalidLocation",
            format!(
                "The location '{given}' is not valid for resource type '{ty}': private DNS resources must be in location 'global'."
            ),
        ));
    }
    if !global && !REGIONS.iter().any(|(r, _, _)| *r == loc) {
        return Err(error(
            400,
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{given}' is not available for resource type '{ty}'. List of available regions for the resource type is '{}'.",
                REGIONS.iter().map(|r| r.0).collect::<Vec<_>>().join(",")
            ),
        ));
    }
    if let Some(old) = existing
        .and_then(|e| e.get("location"))
        .and_then(Value::as_str)
        && norm_location(old) != loc
    {
        return Err(error(
            409,
            "InvalidResourceLocation",
            format!(
                "The resource already exists in location '{old}'. A resource with the same name cannot be created in location '{given}'. Please select a new resource name."
            ),
        ));
    }
    Ok(loc)
}

/// `East US` and `eastus` are the same region to ARM.
pub(crate) fn norm_location(l: &str) -> String {
    l.to_ascii_lowercase().replace(' ', "")
}

pub(crate) fn invalid_param(message: impl Into<String>) -> Response {
    error(400, "InvalidParameterValue", message)
}

/// The `properties` of a request body, minus what ARM computes.
pub(crate) fn props_in(body: &Value) -> Map<String, Value> {
    let mut p = body
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    p.remove("provisioningState");
    p
}

/// `v.properties` as a map, created when absent.
pub(crate) fn props_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("properties").is_some_and(Value::is_object) {
        v["properties"] = json!({});
    }
    match v.get_mut("properties") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("properties was just made an object"),
    }
}

/// The request's tags (`{}` when none).
pub(crate) fn tags(body: &Value) -> Value {
    body.get("tags")
        .filter(|t| t.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}))
}

pub(crate) fn type_of(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The id of the stored resource at `key`, with its own casing.
pub(crate) fn stored_id(w: &World, key: &str) -> String {
    w.resources
        .get(key)
        .map_or_else(|| key.to_string(), |v| stored_id_of(v, key))
}

pub(crate) fn stored_id_of(v: &Value, key: &str) -> String {
    v.get("id")
        .and_then(Value::as_str)
        .filter(|id| id.len() == key.len())
        .unwrap_or(key)
        .to_string()
}
