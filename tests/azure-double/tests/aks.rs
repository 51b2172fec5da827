//! The double's AKS clusters and agent pools, user-assigned managed identities with
//! their federated identity credentials, and role assignments, driven over HTTP as a
//! plain client sees them, with the ARM machinery (registration, locks, throttling,
//! lost responses, the group's resource list) applied to them as the wire contract
//! (`notes/azure-contract.md`, "AKS, identities, role assignments (Azure C)") promises.

use std::collections::BTreeSet;
use std::time::Duration;

use flyteinfra_azure_double::{AzureDouble, Knobs};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-0000000000s3";
const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
const RG_API: &str = "2021-04-01";
const NET_API: &str = "2024-05-01";
const LOCK_API: &str = "2020-05-01";
const AKS_API: &str = "2024-09-01";
const MI_API: &str = "2023-01-31";
const RA_API: &str = "2022-04-01";
const BLOB_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
const NETWORK_CONTRIBUTOR: &str = "4d97b98b-1d4f-4787-a291-c67834d212e7";
const RA1: &str = "11111111-1111-4111-8111-111111111111";
const RA2: &str = "22222222-2222-4222-8222-222222222222";

struct Api {
    d: AzureDouble,
    c: reqwest::Client,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    /// Asserts an ARM error of this status and code.
    fn is_error(&self, status: u16, code: &str) {
        let got = self.body["error"]["code"].as_str().unwrap_or("");
        assert_eq!((self.status, got), (status, code), "{self:?}");
        assert!(
            self.body["error"]["message"].is_string(),
            "ARM errors carry a message: {self:?}"
        );
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Api {
    fn new(knobs: Knobs) -> Api {
        let d = AzureDouble::start();
        d.shared().lock().knobs = knobs;
        Api {
            d,
            c: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, api: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}?api-version={api}", self.d.url());
        self.raw(method, &url, body).await
    }

    /// A call to a full URL (one the double handed out in a header).
    async fn raw(&self, method: Method, url: &str, body: Option<Value>) -> Answer {
        let mut req = self.c.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("send");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn put(&self, path: &str, api: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, api, Some(body)).await
    }

    async fn get(&self, path: &str, api: &str) -> Answer {
        self.call(Method::GET, path, api, None).await
    }

    async fn delete(&self, path: &str, api: &str) -> Answer {
        self.call(Method::DELETE, path, api, None).await
    }

    async fn group(&self, rg: &str) {
        let a = self
            .put(&rg_path(rg), RG_API, json!({"location": "eastus"}))
            .await;
        assert!(matches!(a.status, 200 | 201), "{a:?}");
    }

    /// Polls an `Azure-AsyncOperation` URL to its terminal status.
    async fn finish(&self, url: &str) -> Value {
        for _ in 0..10 {
            let s = self.raw(Method::GET, url, None).await;
            assert_eq!(s.status, 200, "{s:?}");
            if s.body["status"] != "InProgress" {
                return s.body;
            }
        }
        panic!("{url} never finished");
    }

    /// PUTs an async resource and polls its operation to success; the resource's GET.
    async fn ready(&self, path: &str, api: &str, body: Value) -> Value {
        let a = self.put(path, api, body).await;
        assert!(matches!(a.status, 200 | 201), "{a:?}");
        let status = self.finish(a.header("azure-asyncoperation")).await;
        assert_eq!(status["status"], "Succeeded", "{path}: {status}");
        let g = self.get(path, api).await;
        assert_eq!(g.status, 200, "{g:?}");
        g.body
    }

    /// A vnet (10.0.0.0/16) with subnet `aks` (10.0.0.0/22).
    async fn network(&self, rg: &str) {
        self.ready(
            &vnet(rg),
            NET_API,
            json!({"location": "eastus", "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}}),
        )
        .await;
        self.ready(
            &subnet(rg),
            NET_API,
            json!({"properties": {"addressPrefix": "10.0.0.0/22"}}),
        )
        .await;
    }

    async fn identity(&self, path: &str) -> Value {
        let a = self
            .put(
                path,
                MI_API,
                json!({"location": "eastus", "tags": {"app": "flyte"}}),
            )
            .await;
        assert!(matches!(a.status, 200 | 201), "{a:?}");
        a.body
    }

    /// The names in a `{"value":[…]}` list.
    async fn names(&self, path: &str, api: &str) -> Vec<String> {
        let l = self.get(path, api).await;
        assert_eq!(l.status, 200, "{l:?}");
        l.body["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|v| v["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn ids_of(&self, needle: &str) -> Vec<String> {
        self.d
            .shared()
            .lock()
            .resource_ids()
            .into_iter()
            .filter(|id| {
                id.to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase())
            })
            .collect()
    }
}

fn rg_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}

fn vnet(rg: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet",
        rg_path(rg)
    )
}

fn subnet(rg: &str) -> String {
    format!("{}/subnets/aks", vnet(rg))
}

fn cluster(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/{name}",
        rg_path(rg)
    )
}

fn pool(cluster: &str, name: &str) -> String {
    format!("{cluster}/agentPools/{name}")
}

fn identity(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        rg_path(rg)
    )
}

fn credential(identity: &str, name: &str) -> String {
    format!("{identity}/federatedIdentityCredentials/{name}")
}

fn assignment(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
}

fn role(guid: &str) -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

fn ra_body(role_guid: &str, principal: &Value) -> Value {
    json!({"properties": {"roleDefinitionId": role(role_guid), "principalId": principal,
        "principalType": "ServicePrincipal"}})
}

fn fic_body(subject: &str) -> Value {
    json!({"properties": {"issuer": "https://eastus.oic.prod-aks.azure.com/t/c/",
        "subject": subject, "audiences": ["api://AzureADTokenExchange"]}})
}

/// The contract's cluster body, its System pool in `subnet`.
fn cluster_body(subnet: &str) -> Value {
    json!({
        "location": "eastus",
        "tags": {"owner": "flyteinfra"},
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "kubernetesVersion": "1.33",
            "dnsPrefix": "flyte",
            "oidcIssuerProfile": {"enabled": true},
            "securityProfile": {"workloadIdentity": {"enabled": true}},
            "autoUpgradeProfile": {"upgradeChannel": "patch"},
            "networkProfile": {"networkPlugin": "azure", "networkPluginMode": "overlay",
                "podCidr": "192.168.0.0/16", "serviceCidr": "172.16.0.0/16",
                "dnsServiceIP": "172.16.0.10"},
            "agentPoolProfiles": [{"name": "system", "mode": "System", "count": 2,
                "vmSize": "Standard_D2s_v5", "vnetSubnetID": subnet, "osType": "Linux",
                "type": "VirtualMachineScaleSets"}],
        },
    })
}

fn user_pool_body(subnet: &str) -> Value {
    json!({"properties": {"mode": "User", "vmSize": "Standard_D4s_v5", "count": 2,
        "enableAutoScaling": true, "minCount": 2, "maxCount": 5, "vnetSubnetID": subnet,
        "osType": "Linux", "type": "VirtualMachineScaleSets", "orchestratorVersion": "1.33",
        "tags": {"pool": "workers"}, "nodeLabels": {"flyte.org/node-role": "worker"}}})
}

fn is_guid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 36
            && s.bytes().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    })
}

#[tokio::test]
async fn cluster_create_polls_to_succeeded_with_issuer_url_and_principal() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    api.network("rg").await;
    let path = cluster("rg", "flyte-aks");
    let a = api.put(&path, AKS_API, cluster_body(&subnet("rg"))).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["properties"]["provisioningState"], "Creating");
    assert_eq!(a.header("retry-after"), "0");
    let status_url = a.header("azure-asyncoperation").to_string();
    assert!(
        status_url.starts_with(api.d.url())
            && status_url.contains(&format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerService/locations/eastus/operations/"
            ))
            && status_url.ends_with("api-version=2024-09-01"),
        "{status_url}"
    );

    // A GET counts as a poll: Creating, then the status URL finishes it.
    let g = api.get(&path, AKS_API).await;
    assert_eq!(
        g.body["properties"]["provisioningState"], "Creating",
        "{g:?}"
    );
    assert_eq!(
        g.body["properties"]["agentPoolProfiles"][0]["provisioningState"],
        "Creating"
    );
    let s = api.raw(Method::GET, &status_url, None).await;
    assert_eq!(s.body["status"], "InProgress", "{s:?}");
    let s = api.raw(Method::GET, &status_url, None).await;
    assert_eq!(s.body["status"], "Succeeded", "{s:?}");

    let g = api.get(&path, AKS_API).await;
    let b = &g.body;
    assert_eq!(b["id"], path);
    assert_eq!(
        (&b["name"], &b["type"], &b["location"]),
        (
            &json!("flyte-aks"),
            &json!("Microsoft.ContainerService/managedClusters"),
            &json!("eastus")
        )
    );
    assert_eq!(b["tags"], json!({"owner": "flyteinfra"}));
    assert!(is_guid(&b["identity"]["principalId"]), "{b}");
    assert_eq!(b["identity"]["tenantId"], TENANT);
    let p = &b["properties"];
    assert_eq!(p["provisioningState"], "Succeeded");
    let issuer = p["oidcIssuerProfile"]["issuerURL"]
        .as_str()
        .expect("issuer");
    let guid = issuer
        .strip_prefix(&format!("https://eastus.oic.prod-aks.azure.com/{TENANT}/"))
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or_else(|| panic!("issuer URL {issuer}"));
    assert!(is_guid(&json!(guid)), "{issuer}");
    let fqdn = p["fqdn"].as_str().expect("fqdn");
    assert!(
        fqdn.starts_with("flyte-") && fqdn.ends_with(".hcp.eastus.azmk8s.io"),
        "{fqdn}"
    );
    assert!(
        p["currentKubernetesVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.33.")),
        "{p}"
    );
    assert_eq!(p["powerState"]["code"], "Running");
    assert_eq!(p["nodeResourceGroup"], "MC_rg_flyte-aks_eastus");
    assert_eq!(p["securityProfile"]["workloadIdentity"]["enabled"], true);
    assert_eq!(p["networkProfile"]["serviceCidr"], "172.16.0.0/16");
    assert!(is_guid(
        &p["identityProfile"]["kubeletidentity"]["objectId"]
    ));
    let profiles = p["agentPoolProfiles"].as_array().expect("profiles");
    assert_eq!(profiles.len(), 1, "{p}");
    assert_eq!(
        (
            &profiles[0]["name"],
            &profiles[0]["mode"],
            &profiles[0]["count"],
            &profiles[0]["vnetSubnetID"],
            &profiles[0]["provisioningState"]
        ),
        (
            &json!("system"),
            &json!("System"),
            &json!(2),
            &json!(subnet("rg")),
            &json!("Succeeded")
        )
    );
    let sys = api.get(&pool(&path, "system"), AKS_API).await;
    assert_eq!(sys.status, 200, "{sys:?}");
    assert_eq!(
        sys.body["type"],
        "Microsoft.ContainerService/managedClusters/agentPools"
    );

    // An update answers 200 and Updating; the principal and issuer URL stay the same.
    let mut again = cluster_body(&subnet("rg"));
    again["tags"] = json!({"owner": "someone-else"});
    let u = api.put(&path, AKS_API, again).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["properties"]["provisioningState"], "Updating");
    api.finish(u.header("azure-asyncoperation")).await;
    let g2 = api.get(&path, AKS_API).await.body;
    assert_eq!(g2["tags"], json!({"owner": "someone-else"}));
    assert_eq!(g2["identity"]["principalId"], b["identity"]["principalId"]);
    assert_eq!(g2["properties"]["oidcIssuerProfile"]["issuerURL"], issuer);
    assert_eq!(g2["properties"]["fqdn"], fqdn);

    // Once on, the OIDC issuer stays on.
    let mut off = cluster_body(&subnet("rg"));
    off["properties"]["oidcIssuerProfile"]["enabled"] = json!(false);
    off["properties"]["securityProfile"]["workloadIdentity"]["enabled"] = json!(false);
    api.put(&path, AKS_API, off)
        .await
        .is_error(400, "OIDCIssuerFeatureCannotBeDisabled");

    // Without OIDC there is no issuer URL; enabling it later brings one.
    let plain = cluster("rg", "plain");
    let mut body = cluster_body(&subnet("rg"));
    body["properties"]["dnsPrefix"] = json!("plain");
    body["properties"]["oidcIssuerProfile"]["enabled"] = json!(false);
    body["properties"]["securityProfile"]["workloadIdentity"]["enabled"] = json!(false);
    let g = api.ready(&plain, AKS_API, body.clone()).await;
    assert_eq!(
        g["properties"]["oidcIssuerProfile"],
        json!({"enabled": false})
    );
    assert_ne!(
        g["identity"]["principalId"], b["identity"]["principalId"],
        "a principal per cluster"
    );
    body["properties"]["oidcIssuerProfile"]["enabled"] = json!(true);
    let g = api.ready(&plain, AKS_API, body).await;
    let url = g["properties"]["oidcIssuerProfile"]["issuerURL"]
        .as_str()
        .expect("issuer once enabled");
    assert!(url.starts_with("https://eastus.oic.prod-aks.azure.com/") && url != issuer);
}

#[tokio::test]
async fn cluster_bodies_are_checked_and_refusals_leave_nothing() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    api.network("rg").await;
    let path = cluster("rg", "flyte-aks");
    let refuse = |edit: fn(&mut Value), status: u16, code: &'static str| {
        let mut body = cluster_body(&subnet("rg"));
        edit(&mut body);
        let api = &api;
        let path = &path;
        async move {
            let a = api.put(path, AKS_API, body).await;
            a.is_error(status, code);
            a
        }
    };
    let wi = refuse(
        |b| b["properties"]["oidcIssuerProfile"]["enabled"] = json!(false),
        400,
        "InvalidParameter",
    )
    .await;
    assert!(wi.message().contains("workload identity"), "{wi:?}");
    refuse(
        |b| b["properties"]["agentPoolProfiles"][0]["mode"] = json!("User"),
        400,
        "MustDefineAtLeastOneSystemPool",
    )
    .await;
    refuse(
        |b| b["properties"]["kubernetesVersion"] = json!("1.27"),
        400,
        "AgentPoolK8sVersionNotSupported",
    )
    .await;
    let missing = refuse(
        |b| {
            b["properties"]["agentPoolProfiles"][0]["vnetSubnetID"] =
                json!(format!("{}/subnets/absent", vnet("rg")))
        },
        400,
        "InvalidParameter",
    )
    .await;
    assert!(missing.message().contains("VnetSubnetID"), "{missing:?}");
    refuse(
        |b| {
            b["properties"]["networkProfile"]["serviceCidr"] = json!("10.0.0.0/16");
            b["properties"]["networkProfile"]["dnsServiceIP"] = json!("10.0.0.10");
        },
        400,
        "ServiceCidrOverlapExistingSubnetsCidr",
    )
    .await;
    refuse(
        |b| b["properties"]["networkProfile"]["dnsServiceIP"] = json!("172.17.0.10"),
        400,
        "InvalidParameter",
    )
    .await;
    refuse(
        |b| b["properties"]["networkProfile"]["podCidr"] = json!("192.168.0.0/33"),
        400,
        "InvalidParameter",
    )
    .await;
    refuse(
        |b| b["properties"]["agentPoolProfiles"][0]["name"] = json!("System-Pool"),
        400,
        "InvalidParameter",
    )
    .await;
    api.put(&path, "2023-01-01", cluster_body(&subnet("rg")))
        .await
        .is_error(400, "InvalidApiVersionParameter");
    api.put(
        &cluster("nogroup", "x"),
        AKS_API,
        cluster_body(&subnet("rg")),
    )
    .await
    .is_error(404, "ResourceGroupNotFound");
    assert!(
        api.ids_of("Microsoft.ContainerService").is_empty(),
        "refused PUTs leave nothing behind"
    );
}

#[tokio::test]
async fn agent_pools_create_list_delete_and_keep_a_system_pool() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    api.network("rg").await;
    let c = cluster("rg", "flyte-aks");
    api.ready(&c, AKS_API, cluster_body(&subnet("rg"))).await;

    let workers = pool(&c, "workers");
    let a = api
        .put(&workers, AKS_API, user_pool_body(&subnet("rg")))
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["properties"]["provisioningState"], "Creating");
    let done = api.finish(a.header("azure-asyncoperation")).await;
    assert_eq!(done["status"], "Succeeded");
    let g = api.get(&workers, AKS_API).await;
    let p = &g.body["properties"];
    assert_eq!(g.body["id"], workers);
    assert_eq!(
        (
            &p["provisioningState"],
            &p["count"],
            &p["minCount"],
            &p["maxCount"],
            &p["mode"],
            &p["powerState"]["code"]
        ),
        (
            &json!("Succeeded"),
            &json!(2),
            &json!(2),
            &json!(5),
            &json!("User"),
            &json!("Running")
        ),
        "{g:?}"
    );
    assert_eq!(p["nodeLabels"], json!({"flyte.org/node-role": "worker"}));
    assert_eq!(
        api.names(&format!("{c}/agentPools"), AKS_API).await,
        ["system", "workers"]
    );
    let profiles: Vec<Value> = api.get(&c, AKS_API).await.body["properties"]["agentPoolProfiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(profiles, [json!("system"), json!("workers")]);

    // A cluster PUT naming only the System pool leaves the other pools alone.
    let u = api.put(&c, AKS_API, cluster_body(&subnet("rg"))).await;
    assert_eq!(u.status, 200, "{u:?}");
    api.finish(u.header("azure-asyncoperation")).await;
    assert_eq!(api.get(&workers, AKS_API).await.status, 200);

    let mut bad = user_pool_body(&subnet("rg"));
    bad["properties"]["minCount"] = json!(3);
    api.put(&pool(&c, "other"), AKS_API, bad)
        .await
        .is_error(400, "InvalidParameter");
    api.put(
        &pool(&c, "TooLongPoolName1"),
        AKS_API,
        user_pool_body(&subnet("rg")),
    )
    .await
    .is_error(400, "InvalidParameter");
    api.put(
        &pool(&cluster("rg", "absent"), "workers"),
        AKS_API,
        user_pool_body(&subnet("rg")),
    )
    .await
    .is_error(404, "ResourceNotFound");
    api.get(&pool(&c, "other"), AKS_API)
        .await
        .is_error(404, "ResourceNotFound");

    // The last System pool can neither go nor turn into a User pool.
    let e = api.delete(&pool(&c, "system"), AKS_API).await;
    e.is_error(400, "OperationNotAllowed");
    let mut to_user = user_pool_body(&subnet("rg"));
    to_user["properties"]["enableAutoScaling"] = json!(false);
    api.put(&pool(&c, "system"), AKS_API, to_user)
        .await
        .is_error(400, "OperationNotAllowed");

    // A pool DELETE is async: 202, Deleting, Location 202 then 204, gone.
    let d = api.delete(&workers, AKS_API).await;
    assert_eq!((d.status, &d.body), (202, &Value::Null), "{d:?}");
    assert!(d.headers.get("azure-asyncoperation").is_some(), "{d:?}");
    let location = d.header("location").to_string();
    let g = api.get(&workers, AKS_API).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Deleting");
    assert_eq!(api.raw(Method::GET, &location, None).await.status, 202);
    assert_eq!(api.raw(Method::GET, &location, None).await.status, 204);
    api.get(&workers, AKS_API)
        .await
        .is_error(404, "ResourceNotFound");
    assert_eq!(
        api.names(&format!("{c}/agentPools"), AKS_API).await,
        ["system"]
    );
    assert_eq!(api.delete(&workers, AKS_API).await.status, 204);

    // A subnet that nodes sit in cannot be deleted.
    api.delete(&subnet("rg"), NET_API)
        .await
        .is_error(400, "InUseSubnetCannotBeDeleted");
}

#[tokio::test]
async fn cluster_delete_removes_its_pools() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    api.network("rg").await;
    let c = cluster("rg", "flyte-aks");
    api.ready(&c, AKS_API, cluster_body(&subnet("rg"))).await;
    api.ready(&pool(&c, "workers"), AKS_API, user_pool_body(&subnet("rg")))
        .await;
    assert_eq!(api.ids_of("agentPools").len(), 2);

    let d = api.delete(&c, AKS_API).await;
    assert_eq!(d.status, 202, "{d:?}");
    let status_url = d.header("azure-asyncoperation").to_string();
    let location = d.header("location").to_string();
    assert!(location.contains("/operationresults/"), "{location}");
    let g = api.get(&c, AKS_API).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Deleting");
    assert_eq!(api.finish(&status_url).await["status"], "Succeeded");
    assert_eq!(api.raw(Method::GET, &location, None).await.status, 204);
    api.get(&c, AKS_API).await.is_error(404, "ResourceNotFound");
    api.get(&pool(&c, "workers"), AKS_API)
        .await
        .is_error(404, "ResourceNotFound");
    assert!(
        api.ids_of("Microsoft.ContainerService").is_empty(),
        "{:?}",
        api.ids_of("Microsoft.ContainerService")
    );
    // The subnet is free again.
    assert_eq!(api.delete(&subnet("rg"), NET_API).await.status, 202);
}

#[tokio::test]
async fn identities_have_fixed_guids_and_at_most_20_credentials() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let mi = identity("rg", "flyte-backend");
    let a = api
        .put(
            &mi,
            MI_API,
            json!({"location": "eastus", "tags": {"app": "flyte"}}),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        (&a.body["id"], &a.body["name"], &a.body["type"]),
        (
            &json!(mi),
            &json!("flyte-backend"),
            &json!("Microsoft.ManagedIdentity/userAssignedIdentities")
        )
    );
    let p = &a.body["properties"];
    assert_eq!(p["tenantId"], TENANT);
    assert!(is_guid(&p["principalId"]) && is_guid(&p["clientId"]), "{p}");
    assert_ne!(p["principalId"], p["clientId"]);
    let again = api
        .put(&mi, MI_API, json!({"location": "eastus", "tags": {}}))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        (
            &again.body["properties"]["principalId"],
            &again.body["properties"]["clientId"]
        ),
        (&p["principalId"], &p["clientId"])
    );
    assert_eq!(again.body["tags"], json!({}));
    assert_eq!(api.get(&mi, MI_API).await.body, again.body);
    let other = api.identity(&identity("rg", "other")).await;
    assert_ne!(other["properties"]["principalId"], p["principalId"]);

    let fic = credential(&mi, "flyte-backend");
    let c = api
        .put(
            &fic,
            MI_API,
            fic_body("system:serviceaccount:flyte:flyte-backend"),
        )
        .await;
    assert_eq!(c.status, 201, "{c:?}");
    assert_eq!(
        c.body["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    );
    assert_eq!(
        c.body["properties"]["audiences"],
        json!(["api://AzureADTokenExchange"])
    );
    let c2 = api
        .put(
            &fic,
            MI_API,
            fic_body("system:serviceaccount:flyte:flyte-backend"),
        )
        .await;
    assert_eq!((c2.status, &c2.body), (200, &c.body));

    api.put(
        &credential(&mi, "twin"),
        MI_API,
        fic_body("system:serviceaccount:flyte:flyte-backend"),
    )
    .await
    .is_error(409, "FederatedIdentityCredentialAlreadyExists");
    let mut http = fic_body("system:serviceaccount:flyte:x");
    http["properties"]["issuer"] = json!("http://insecure.example/");
    api.put(&credential(&mi, "insecure"), MI_API, http)
        .await
        .is_error(400, "BadRequest");
    api.put(
        &credential(&identity("rg", "absent"), "fic"),
        MI_API,
        fic_body("s"),
    )
    .await
    .is_error(404, "ResourceNotFound");

    for i in 1..20 {
        let a = api
            .put(
                &credential(&mi, &format!("fic-{i:02}")),
                MI_API,
                fic_body(&format!("system:serviceaccount:ns:sa-{i}")),
            )
            .await;
        assert_eq!(a.status, 201, "credential {i}: {a:?}");
    }
    assert_eq!(
        api.names(&format!("{mi}/federatedIdentityCredentials"), MI_API)
            .await
            .len(),
        20
    );
    let e = api
        .put(
            &credential(&mi, "fic-21"),
            MI_API,
            fic_body("system:serviceaccount:ns:sa-21"),
        )
        .await;
    e.is_error(400, "BadRequest");
    assert!(e.message().contains("limit of 20"), "{e:?}");
    // At the cap an existing credential can still change.
    let u = api
        .put(
            &credential(&mi, "fic-01"),
            MI_API,
            fic_body("system:serviceaccount:ns:changed"),
        )
        .await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(
        api.delete(&credential(&mi, "fic-19"), MI_API).await.status,
        200
    );
    api.get(&credential(&mi, "fic-19"), MI_API)
        .await
        .is_error(404, "ResourceNotFound");
    assert_eq!(
        api.delete(&credential(&mi, "fic-19"), MI_API).await.status,
        204
    );
    let a = api
        .put(
            &credential(&mi, "fic-21"),
            MI_API,
            fic_body("system:serviceaccount:ns:sa-21"),
        )
        .await;
    assert_eq!(a.status, 201, "room again: {a:?}");

    // Deleting the identity takes its credentials along.
    assert_eq!(api.delete(&mi, MI_API).await.status, 200);
    api.get(&mi, MI_API).await.is_error(404, "ResourceNotFound");
    assert!(
        api.ids_of("/userAssignedIdentities/flyte-backend")
            .is_empty(),
        "{:?}",
        api.ids_of("/userAssignedIdentities/flyte-backend")
    );
    assert_eq!(api.delete(&mi, MI_API).await.status, 204);
}

#[tokio::test]
async fn concurrent_credential_writes_conflict_within_fic_busy_ms() {
    let api = Api::new(Knobs {
        fic_busy_ms: 400,
        ..Knobs::default()
    });
    api.group("rg").await;
    let mi = identity("rg", "flyte-backend");
    api.identity(&mi).await;
    let other = identity("rg", "other");
    api.identity(&other).await;

    let a = api
        .put(&credential(&mi, "fic-a"), MI_API, fic_body("sa-a"))
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let b = api
        .put(&credential(&mi, "fic-b"), MI_API, fic_body("sa-b"))
        .await;
    b.is_error(
        409,
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
    );
    api.get(&credential(&mi, "fic-b"), MI_API)
        .await
        .is_error(404, "ResourceNotFound");
    assert_eq!(
        api.get(&credential(&mi, "fic-a"), MI_API).await.status,
        200,
        "reads are never refused"
    );
    let o = api
        .put(&credential(&other, "fic-b"), MI_API, fic_body("sa-b"))
        .await;
    assert_eq!(o.status, 201, "another identity is not busy: {o:?}");

    tokio::time::sleep(Duration::from_millis(450)).await;
    let b = api
        .put(&credential(&mi, "fic-b"), MI_API, fic_body("sa-b"))
        .await;
    assert_eq!(b.status, 201, "{b:?}");
    api.delete(&credential(&mi, "fic-a"), MI_API)
        .await
        .is_error(
            409,
            "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
        );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        api.delete(&credential(&mi, "fic-a"), MI_API).await.status,
        200
    );

    // Two writes at once: one wins, one is refused.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (px, py) = (credential(&mi, "fic-x"), credential(&mi, "fic-y"));
    let (x, y) = tokio::join!(
        api.put(&px, MI_API, fic_body("sa-x")),
        api.put(&py, MI_API, fic_body("sa-y")),
    );
    let mut statuses = [x.status, y.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{x:?} {y:?}");

    // With the knob at 0 (the default) back-to-back writes are fine.
    api.d.shared().lock().knobs.fic_busy_ms = 0;
    tokio::time::sleep(Duration::from_millis(450)).await;
    for n in ["fic-p", "fic-q", "fic-r"] {
        let a = api.put(&credential(&other, n), MI_API, fic_body(n)).await;
        assert_eq!(a.status, 201, "{a:?}");
    }
}

#[tokio::test]
async fn role_assignments_are_idempotent_unique_and_name_known_principals() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let mi = identity("rg", "flyte-backend");
    let principal = api.identity(&mi).await["properties"]["principalId"].clone();
    let scope = rg_path("rg");
    let ra = assignment(&scope, RA1);

    let a = api
        .put(&ra, RA_API, ra_body(BLOB_CONTRIBUTOR, &principal))
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        (&a.body["id"], &a.body["name"], &a.body["type"]),
        (
            &json!(ra),
            &json!(RA1),
            &json!("Microsoft.Authorization/roleAssignments")
        )
    );
    let p = &a.body["properties"];
    assert_eq!(
        (
            &p["roleDefinitionId"],
            &p["principalId"],
            &p["principalType"],
            &p["scope"]
        ),
        (
            &json!(role(BLOB_CONTRIBUTOR)),
            &principal,
            &json!("ServicePrincipal"),
            &json!(scope)
        )
    );
    // The same PUT again: 201 with the same assignment.
    let again = api
        .put(&ra, RA_API, ra_body(BLOB_CONTRIBUTOR, &principal))
        .await;
    assert_eq!((again.status, &again.body), (201, &a.body));
    assert_eq!(api.get(&ra, RA_API).await.body, a.body);

    api.put(&ra, RA_API, ra_body(NETWORK_CONTRIBUTOR, &principal))
        .await
        .is_error(400, "RoleAssignmentUpdateNotPermitted");
    let dup = api
        .put(
            &assignment(&scope, RA2),
            RA_API,
            ra_body(BLOB_CONTRIBUTOR, &principal),
        )
        .await;
    dup.is_error(409, "RoleAssignmentExists");
    assert!(dup.message().contains(RA1), "{dup:?}");
    // The same role and principal at another scope is another assignment.
    let at_mi = assignment(&mi, RA2);
    let b = api
        .put(&at_mi, RA_API, ra_body(BLOB_CONTRIBUTOR, &principal))
        .await;
    assert_eq!(b.status, 201, "{b:?}");
    assert_eq!(b.body["properties"]["scope"], mi);

    api.put(
        &assignment(&scope, "not-a-guid"),
        RA_API,
        ra_body(BLOB_CONTRIBUTOR, &principal),
    )
    .await
    .is_error(400, "InvalidRoleAssignmentId");
    let stranger = json!("99999999-9999-4999-8999-999999999999");
    api.put(
        &assignment(&scope, RA2),
        RA_API,
        ra_body(BLOB_CONTRIBUTOR, &stranger),
    )
    .await
    .is_error(400, "PrincipalNotFound");
    api.put(
        &assignment(&rg_path("absent"), RA2),
        RA_API,
        ra_body(BLOB_CONTRIBUTOR, &principal),
    )
    .await
    .is_error(404, "ResourceGroupNotFound");
    api.put(
        &assignment(&identity("rg", "absent"), RA2),
        RA_API,
        ra_body(BLOB_CONTRIBUTOR, &principal),
    )
    .await
    .is_error(404, "ResourceNotFound");
    api.put(
        &assignment(&scope, RA2),
        "2020-04-01-preview",
        ra_body(BLOB_CONTRIBUTOR, &principal),
    )
    .await
    .is_error(400, "InvalidApiVersionParameter");

    // A caller without the right to assign roles: 403 on writes, reads still work.
    api.d.shared().lock().knobs.deny_role_assignments = true;
    let e = api
        .put(
            &assignment(&scope, RA2),
            RA_API,
            ra_body(NETWORK_CONTRIBUTOR, &principal),
        )
        .await;
    e.is_error(403, "AuthorizationFailed");
    assert!(
        e.message()
            .contains("'Microsoft.Authorization/roleAssignments/write'"),
        "{e:?}"
    );
    api.delete(&ra, RA_API)
        .await
        .is_error(403, "AuthorizationFailed");
    assert_eq!(api.get(&ra, RA_API).await.status, 200);
    api.d.shared().lock().knobs.deny_role_assignments = false;

    // Lists: at, above and below the scope; atScope() and principalId filters.
    let list = format!("{scope}/providers/Microsoft.Authorization/roleAssignments");
    let mut all = api.names(&list, RA_API).await;
    all.sort();
    assert_eq!(all, [RA1, RA2]);
    let at = api
        .raw(
            Method::GET,
            &format!(
                "{}{list}?api-version={RA_API}&$filter=atScope()",
                api.d.url()
            ),
            None,
        )
        .await;
    assert_eq!(at.body["value"].as_array().map(Vec::len), Some(1), "{at:?}");
    let mine = api
        .raw(
            Method::GET,
            &format!(
                "{}{mi}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}&$filter=principalId%20eq%20%27{}%27",
                api.d.url(),
                principal.as_str().unwrap_or("")
            ),
            None,
        )
        .await;
    assert_eq!(
        mine.body["value"].as_array().map(Vec::len),
        Some(2),
        "{mine:?}"
    );

    // Locks: CanNotDelete lets assignments in but not out; ReadOnly keeps them out.
    let lock = format!("{scope}/providers/Microsoft.Authorization/locks/keep");
    let l = api
        .put(
            &lock,
            LOCK_API,
            json!({"properties": {"level": "CanNotDelete"}}),
        )
        .await;
    assert_eq!(l.status, 201, "{l:?}");
    api.delete(&ra, RA_API).await.is_error(409, "ScopeLocked");
    let ro = format!("{scope}/providers/Microsoft.Authorization/locks/frozen");
    let l = api
        .put(&ro, LOCK_API, json!({"properties": {"level": "ReadOnly"}}))
        .await;
    assert_eq!(l.status, 201, "{l:?}");
    api.put(
        &assignment(&scope, RA2),
        RA_API,
        ra_body(NETWORK_CONTRIBUTOR, &principal),
    )
    .await
    .is_error(409, "ScopeLocked");
    assert_eq!(api.delete(&ro, LOCK_API).await.status, 200);
    let n = api
        .put(
            &assignment(&scope, RA2),
            RA_API,
            ra_body(NETWORK_CONTRIBUTOR, &principal),
        )
        .await;
    assert_eq!(n.status, 201, "CanNotDelete lets assignments in: {n:?}");
    assert_eq!(api.delete(&lock, LOCK_API).await.status, 200);

    let d = api.delete(&ra, RA_API).await;
    assert_eq!((d.status, &d.body), (200, &a.body), "{d:?}");
    api.get(&ra, RA_API)
        .await
        .is_error(404, "RoleAssignmentNotFound");
    assert_eq!(api.delete(&ra, RA_API).await.status, 204);

    // Deleting a scope removes the assignments on it.
    assert_eq!(api.delete(&mi, MI_API).await.status, 200);
    api.get(&at_mi, RA_API)
        .await
        .is_error(404, "RoleAssignmentNotFound");
    let left = api.ids_of("roleAssignments");
    assert_eq!(left, [assignment(&scope, RA2)], "{left:?}");
    // And the principal of a deleted identity is unknown again.
    api.put(
        &assignment(&scope, RA1),
        RA_API,
        ra_body(BLOB_CONTRIBUTOR, &principal),
    )
    .await
    .is_error(400, "PrincipalNotFound");
}

#[tokio::test]
async fn cluster_principals_take_roles_and_group_lists_only_top_level_resources() {
    let api = Api::new(Knobs {
        known_principals: vec!["aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa".into()],
        ..Knobs::default()
    });
    api.group("rg").await;
    api.network("rg").await;
    let c = cluster("rg", "flyte-aks");
    let body = api.ready(&c, AKS_API, cluster_body(&subnet("rg"))).await;
    api.ready(&pool(&c, "workers"), AKS_API, user_pool_body(&subnet("rg")))
        .await;
    let mi = identity("rg", "flyte-backend");
    api.identity(&mi).await;
    let fic = api
        .put(&credential(&mi, "flyte"), MI_API, fic_body("sa"))
        .await;
    assert_eq!(fic.status, 201, "{fic:?}");

    // The cluster's own principal on its subnet, its kubelet's on the group, and a
    // principal the knob lists.
    let principal = &body["identity"]["principalId"];
    let kubelet = &body["properties"]["identityProfile"]["kubeletidentity"]["objectId"];
    for (scope, name, who) in [
        (subnet("rg"), RA1, principal.clone()),
        (rg_path("rg"), RA1, kubelet.clone()),
        (
            rg_path("rg"),
            RA2,
            json!("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"),
        ),
    ] {
        let a = api
            .put(
                &assignment(&scope, name),
                RA_API,
                ra_body(NETWORK_CONTRIBUTOR, &who),
            )
            .await;
        assert_eq!(a.status, 201, "{scope}: {a:?}");
    }

    let listed = api
        .get(&format!("{}/resources", rg_path("rg")), RG_API)
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let ids: BTreeSet<&str> = listed.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([vnet("rg").as_str(), c.as_str(), mi.as_str()]),
        "clusters and identities, not pools, credentials or role assignments"
    );
    let item = listed.body["value"]
        .as_array()
        .and_then(|v| v.iter().find(|r| r["id"] == c.as_str()))
        .expect("cluster listed");
    assert_eq!(
        (&item["type"], &item["location"]),
        (
            &json!("Microsoft.ContainerService/managedClusters"),
            &json!("eastus")
        )
    );

    // The group's delete takes everything, role assignments included.
    let d = api.delete(&rg_path("rg"), RG_API).await;
    assert_eq!(d.status, 202, "{d:?}");
    let location = d.header("location").to_string();
    let mut last = api.raw(Method::GET, &location, None).await;
    while last.status == 202 {
        last = api.raw(Method::GET, &location, None).await;
    }
    assert_eq!(last.status, 200, "{last:?}");
    assert!(api.ids_of("/").is_empty(), "{:?}", api.ids_of("/"));
}

#[tokio::test]
async fn registration_throttling_lost_responses_and_failures_apply() {
    let api = Api::new(Knobs {
        unregistered: vec![
            "Microsoft.ContainerService".into(),
            "Microsoft.ManagedIdentity".into(),
        ],
        ..Knobs::default()
    });
    api.group("rg").await;
    api.network("rg").await;
    let c = cluster("rg", "flyte-aks");
    let mi = identity("rg", "flyte-backend");
    let e = api.put(&c, AKS_API, cluster_body(&subnet("rg"))).await;
    e.is_error(409, "MissingSubscriptionRegistration");
    assert!(e.message().contains("Microsoft.ContainerService"), "{e:?}");
    api.put(&mi, MI_API, json!({"location": "eastus"}))
        .await
        .is_error(409, "MissingSubscriptionRegistration");
    for ns in ["Microsoft.ContainerService", "Microsoft.ManagedIdentity"] {
        let provider = format!("/subscriptions/{SUB}/providers/{ns}");
        let r = api
            .call(Method::POST, &format!("{provider}/register"), RG_API, None)
            .await;
        assert_eq!(r.body["registrationState"], "Registering", "{r:?}");
        for _ in 0..3 {
            api.get(&provider, RG_API).await;
        }
    }
    let principal = api.identity(&mi).await["properties"]["principalId"].clone();
    api.ready(&c, AKS_API, cluster_body(&subnet("rg"))).await;

    // Role assignments go through Microsoft.Authorization.
    let other = Api::new(Knobs {
        unregistered: vec!["Microsoft.Authorization".into()],
        ..Knobs::default()
    });
    other
        .put(
            &assignment(&format!("/subscriptions/{SUB}"), RA1),
            RA_API,
            ra_body(BLOB_CONTRIBUTOR, &principal),
        )
        .await
        .is_error(409, "MissingSubscriptionRegistration");

    // Lost responses: the call took effect, the caller got a 500.
    {
        let mut w = api.d.shared().lock();
        w.knobs.lose_next_response = vec![
            ("PUT".into(), "federatedIdentityCredentials/lost".into()),
            ("PUT".into(), "roleAssignments/".into()),
            ("PUT".into(), "agentPools/lost".into()),
        ];
        w.knobs.fail_next = vec![("PUT".into(), "agentPools/failing".into())];
    }
    api.put(&credential(&mi, "lost"), MI_API, fic_body("sa"))
        .await
        .is_error(500, "InternalServerError");
    assert_eq!(api.get(&credential(&mi, "lost"), MI_API).await.status, 200);
    let ra = assignment(&rg_path("rg"), RA1);
    api.put(&ra, RA_API, ra_body(BLOB_CONTRIBUTOR, &principal))
        .await
        .is_error(500, "InternalServerError");
    let retry = api
        .put(&ra, RA_API, ra_body(BLOB_CONTRIBUTOR, &principal))
        .await;
    assert_eq!(retry.status, 201, "a retried PUT is idempotent: {retry:?}");
    api.put(&pool(&c, "lost"), AKS_API, user_pool_body(&subnet("rg")))
        .await
        .is_error(500, "InternalServerError");
    assert_eq!(
        api.get(&pool(&c, "lost"), AKS_API).await.body["properties"]["provisioningState"],
        "Creating"
    );

    // A failing pool operation ends Failed and leaves the pool Failed.
    let f = api
        .put(&pool(&c, "failing"), AKS_API, user_pool_body(&subnet("rg")))
        .await;
    assert_eq!(f.status, 201, "{f:?}");
    let end = api.finish(f.header("azure-asyncoperation")).await;
    assert_eq!(end["status"], "Failed", "{end}");
    assert_eq!(end["error"]["code"], "InternalServerError");
    assert_eq!(
        api.get(&pool(&c, "failing"), AKS_API).await.body["properties"]["provisioningState"],
        "Failed"
    );

    // Throttling counts the new routes like the others.
    {
        let mut w = api.d.shared().lock();
        let by_op = w.calls_by_op();
        assert_eq!(by_op.get("PUT managedClusters"), Some(&2), "{by_op:?}");
        assert_eq!(by_op.get("PUT roleAssignments"), Some(&2), "{by_op:?}");
        assert_eq!(by_op.get("PUT federatedIdentityCredentials"), Some(&1));
        assert!(
            by_op.get("GET operations").is_some_and(|n| *n >= 3),
            "{by_op:?}"
        );
        // The call after next is the Nth.
        w.knobs.throttle_every = u32::try_from(w.calls() + 2).expect("few calls");
    }
    let t1 = api.get(&c, AKS_API).await;
    assert_eq!(t1.status, 200, "{t1:?}");
    let t2 = api.get(&credential(&mi, "lost"), MI_API).await;
    t2.is_error(429, "TooManyRequests");
    assert_eq!(t2.header("retry-after"), "0");
    assert_eq!(api.get(&ra, RA_API).await.status, 200);
}
