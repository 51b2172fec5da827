//! The double driven over HTTP as a plain client sees it: the ARM paths, api-versions,
//! status codes, async headers and error codes the wire contract
//! (`notes/azure-contract.md`) promises the Azure provider.

use flyteinfra_azure_double::{AzureDouble, Knobs};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-0000000000s1";
const RG_API: &str = "2021-04-01";
const NET_API: &str = "2024-05-01";
const DNS_API: &str = "2024-06-01";
const PG_API: &str = "2024-08-01";
const LOCK_API: &str = "2020-05-01";
const PASSWORD: &str = "Fly-te-Pa55word";

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

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts an ARM error of this status and code.
    fn is_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{self:?}");
        assert!(
            self.body["error"]["message"].is_string(),
            "ARM errors carry a message: {self:?}"
        );
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

    /// A call to `path` (relative to the double) with `?api-version=api` ("" for none).
    async fn call(&self, method: Method, path: &str, api: &str, body: Option<Value>) -> Answer {
        let q = if api.is_empty() {
            String::new()
        } else {
            format!("?api-version={api}")
        };
        self.raw(method, &format!("{}{path}{q}", self.d.url()), body)
            .await
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

    /// Polls the answer's `Azure-AsyncOperation` URL to its terminal status.
    async fn finish(&self, a: &Answer) -> Value {
        let url = a.header("azure-asyncoperation").to_string();
        for _ in 0..10 {
            let s = self.raw(Method::GET, &url, None).await;
            assert_eq!(s.status, 200, "{s:?}");
            if s.body["status"] != "InProgress" {
                return s.body;
            }
        }
        panic!("operation {url} never ended");
    }

    /// PUTs and waits for the operation to succeed.
    async fn ensure(&self, path: &str, api: &str, body: Value) -> Value {
        let a = self.put(path, api, body).await;
        assert!((200..=202).contains(&a.status), "{a:?}");
        let s = self.finish(&a).await;
        assert_eq!(s["status"], "Succeeded", "{s}");
        self.get(path, api).await.body
    }

    async fn group(&self, rg: &str) {
        let a = self
            .put(&rg_path(rg), RG_API, json!({"location": "eastus"}))
            .await;
        assert!(matches!(a.status, 200 | 201), "{a:?}");
    }

    /// A group with a vnet, a subnet delegated to flexible servers, and a private DNS
    /// zone linked to the vnet: what a private flexible server needs.
    async fn private_network(&self, rg: &str) {
        self.group(rg).await;
        self.ensure(&net(rg, "virtualNetworks/vnet"), NET_API, vnet_body(&[]))
            .await;
        self.ensure(&subnet(rg, "pg"), NET_API, pg_subnet("10.0.1.0/24"))
            .await;
        self.ensure(&zone(rg), DNS_API, json!({"location": "global"}))
            .await;
        let link = json!({"location": "global", "properties": {
            "virtualNetwork": {"id": id(&net(rg, "virtualNetworks/vnet"))},
            "registrationEnabled": false}});
        self.ensure(
            &format!("{}/virtualNetworkLinks/link", zone(rg)),
            DNS_API,
            link,
        )
        .await;
    }
}

fn rg_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourcegroups/{rg}")
}

fn net(rg: &str, rest: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/{rest}")
}

fn subnet(rg: &str, name: &str) -> String {
    net(rg, &format!("virtualNetworks/vnet/subnets/{name}"))
}

fn zone(rg: &str) -> String {
    net(rg, "privateDnsZones/flyte.postgres.database.azure.com")
}

fn server(rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name}"
    )
}

/// The resource id a path names (paths here already use ARM's casing).
fn id(path: &str) -> String {
    path.to_string()
}

fn vnet_body(subnets: &[Value]) -> Value {
    json!({"location": "eastus", "tags": {"owner": "flyteinfra"}, "properties": {
        "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
        "subnets": subnets}})
}

fn pg_subnet(prefix: &str) -> Value {
    json!({"properties": {"addressPrefix": prefix, "delegations": [
        {"name": "pg", "properties": {"serviceName": "Microsoft.DBforPostgreSQL/flexibleServers"}}]}})
}

fn server_body(rg: &str) -> Value {
    json!({
        "location": "eastus",
        "tags": {"owner": "flyteinfra"},
        "sku": {"name": "Standard_D2s_v3", "tier": "GeneralPurpose"},
        "properties": {
            "version": "16",
            "administratorLogin": "flyteadmin",
            "administratorLoginPassword": PASSWORD,
            "storage": {"storageSizeGB": 32},
            "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
            "network": {
                "delegatedSubnetResourceId": id(&subnet(rg, "pg")),
                "privateDnsZoneArmResourceId": id(&zone(rg)),
                "publicNetworkAccess": "Disabled",
            },
            "highAvailability": {"mode": "Disabled"},
            "createMode": "Create",
        }
    })
}

#[tokio::test]
async fn resource_group_create_get_delete_via_location_polling() {
    let api = Api::new(Knobs::default());
    let a = api
        .put(
            &rg_path("rg1"),
            RG_API,
            json!({"location": "eastus", "tags": {"a": "1"}}),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        a.body["id"],
        format!("/subscriptions/{SUB}/resourceGroups/rg1")
    );
    assert_eq!(a.body["type"], "Microsoft.Resources/resourceGroups");
    assert_eq!(a.body["properties"]["provisioningState"], "Succeeded");
    let again = api
        .put(
            &rg_path("rg1"),
            RG_API,
            json!({"location": "eastus", "tags": {"b": "2"}}),
        )
        .await;
    assert_eq!(
        (again.status, &again.body["tags"]),
        (200, &json!({"b": "2"}))
    );
    api.put(&rg_path("rg1"), RG_API, json!({"location": "westus2"}))
        .await
        .is_error(409, "InvalidResourceGroupLocation");
    assert_eq!(
        api.call(Method::HEAD, &rg_path("rg1"), RG_API, None)
            .await
            .status,
        204
    );
    api.ensure(&net("rg1", "virtualNetworks/vnet"), NET_API, vnet_body(&[]))
        .await;

    let del = api.delete(&rg_path("rg1"), RG_API).await;
    assert_eq!((del.status, &del.body), (202, &Value::Null), "{del:?}");
    assert_eq!(del.header("retry-after"), "0");
    let location = del.header("location").to_string();
    assert!(location.starts_with(api.d.url()), "{location}");
    // A GET of the group shows it going, and counts as a poll.
    let g = api.get(&rg_path("rg1"), RG_API).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Deleting");
    let p = api.raw(Method::GET, &location, None).await;
    assert_eq!(p.status, 202, "{p:?}");
    let done = api.raw(Method::GET, &location, None).await;
    assert_eq!((done.status, &done.body), (200, &Value::Null), "{done:?}");

    api.get(&rg_path("rg1"), RG_API)
        .await
        .is_error(404, "ResourceGroupNotFound");
    assert_eq!(
        api.call(Method::HEAD, &rg_path("rg1"), RG_API, None)
            .await
            .status,
        404
    );
    assert!(
        api.d.shared().lock().resource_ids().is_empty(),
        "the vnet went too"
    );
    api.delete(&rg_path("rg1"), RG_API)
        .await
        .is_error(404, "ResourceGroupNotFound");
}

#[tokio::test]
async fn vnet_put_without_subnets_deletes_the_subnet() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let v = api
        .put(&net("rg", "virtualNetworks/vnet"), NET_API, vnet_body(&[]))
        .await;
    assert_eq!(v.status, 201, "{v:?}");
    assert_eq!(v.body["properties"]["provisioningState"], "Accepted");
    assert!(
        v.header("azure-asyncoperation")
            .contains("api-version=2024-05-01")
    );
    assert_eq!(api.finish(&v).await["status"], "Succeeded");

    let s = api
        .put(&subnet("rg", "pg"), NET_API, pg_subnet("10.0.1.0/24"))
        .await;
    assert_eq!(s.status, 201, "{s:?}");
    assert_eq!(s.body["type"], "Microsoft.Network/virtualNetworks/subnets");
    assert_eq!(
        s.body["properties"]["delegations"][0]["properties"]["serviceName"],
        "Microsoft.DBforPostgreSQL/flexibleServers"
    );
    api.finish(&s).await;
    let got = api.get(&net("rg", "virtualNetworks/vnet"), NET_API).await;
    assert_eq!(got.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        got.body["properties"]["subnets"][0]["name"], "pg",
        "{got:?}"
    );

    // ARM's PUT replaces the whole network: no subnets in the body, no subnets after.
    let again = api
        .put(&net("rg", "virtualNetworks/vnet"), NET_API, vnet_body(&[]))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(api.finish(&again).await["status"], "Succeeded");
    api.get(&subnet("rg", "pg"), NET_API)
        .await
        .is_error(404, "ResourceNotFound");
    let got = api.get(&net("rg", "virtualNetworks/vnet"), NET_API).await;
    assert_eq!(got.body["properties"]["subnets"], json!([]));

    // A vnet PUT carrying subnets creates them as resources of their own.
    let with = json!({"name": "a", "properties": {"addressPrefix": "10.0.2.0/24"}});
    api.ensure(
        &net("rg", "virtualNetworks/vnet"),
        NET_API,
        vnet_body(&[with]),
    )
    .await;
    let a = api.get(&subnet("rg", "a"), NET_API).await;
    assert_eq!(
        (a.status, &a.body["properties"]["addressPrefix"]),
        (200, &json!("10.0.2.0/24"))
    );
}

#[tokio::test]
async fn subnet_outside_range_overlapping_or_malformed_is_refused() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    api.put(&subnet("rg", "x"), NET_API, pg_subnet("10.0.1.0/24"))
        .await
        .is_error(404, "NotFound");
    api.ensure(&net("rg", "virtualNetworks/vnet"), NET_API, vnet_body(&[]))
        .await;
    api.ensure(&subnet("rg", "pg"), NET_API, pg_subnet("10.0.1.0/24"))
        .await;
    api.put(&subnet("rg", "out"), NET_API, pg_subnet("10.1.0.0/24"))
        .await
        .is_error(400, "NetcfgSubnetRangeOutsideVnet");
    api.put(&subnet("rg", "over"), NET_API, pg_subnet("10.0.1.128/25"))
        .await
        .is_error(400, "NetcfgSubnetRangesOverlap");
    api.put(&subnet("rg", "bad"), NET_API, pg_subnet("10.0.300.0/24"))
        .await
        .is_error(400, "InvalidAddressPrefixFormat");
    let nsg = json!({"properties": {"addressPrefix": "10.0.2.0/24",
        "networkSecurityGroup": {"id": id(&net("rg", "networkSecurityGroups/none"))}}});
    api.put(&subnet("rg", "nsg"), NET_API, nsg)
        .await
        .is_error(400, "InvalidResourceReference");
    // The same subnet may be PUT again (its own range is no overlap).
    api.ensure(&subnet("rg", "pg"), NET_API, pg_subnet("10.0.1.0/24"))
        .await;
    let bad_vnet = json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/99"]}}});
    api.put(&net("rg", "virtualNetworks/v2"), NET_API, bad_vnet)
        .await
        .is_error(400, "InvalidAddressPrefixFormat");
}

#[tokio::test]
async fn flexible_server_provisions_over_polls_and_never_shows_the_password() {
    let api = Api::new(Knobs::default());
    api.private_network("rg").await;
    let path = server("rg", "flyte-pg");
    let a = api.put(&path, PG_API, server_body("rg")).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["properties"]["provisioningState"], "Accepted");
    assert_eq!(a.body["properties"]["state"], "Provisioning");
    assert_eq!(a.header("retry-after"), "0");
    let status_url = a.header("azure-asyncoperation").to_string();
    assert!(
        status_url
            .contains("/providers/Microsoft.DBforPostgreSQL/locations/eastus/operationStatuses/"),
        "{status_url}"
    );

    for _ in 0..2 {
        let s = api.raw(Method::GET, &status_url, None).await;
        assert_eq!(s.body["status"], "InProgress", "{s:?}");
    }
    let s = api.raw(Method::GET, &status_url, None).await;
    assert_eq!(s.body["status"], "Succeeded", "{s:?}");
    assert!(s.body["startTime"].is_string() && s.body.get("error").is_none());

    let g = api.get(&path, PG_API).await;
    assert_eq!(g.status, 200);
    let p = &g.body["properties"];
    assert_eq!(p["state"], "Ready");
    assert_eq!(
        p["fullyQualifiedDomainName"],
        "flyte-pg.postgres.database.azure.com"
    );
    assert_eq!(p["administratorLogin"], "flyteadmin");
    assert_eq!(p["storage"]["storageSizeGB"], 32);
    assert_eq!(p["network"]["publicNetworkAccess"], "Disabled");
    assert!(
        g.body["systemData"]["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    for answer in [&a.body, &g.body] {
        let text = answer.to_string();
        assert!(
            !text.contains("administratorLoginPassword") && !text.contains(PASSWORD),
            "{text}"
        );
    }
    assert_eq!(api.d.shared().lock().admin_password(&path), Some(PASSWORD));

    // A GET of the resource drives provisioning too.
    let other = server("rg", "flyte-pg-2");
    api.put(&other, PG_API, server_body("rg")).await;
    let states: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(api.get(&other, PG_API).await.body["properties"]["state"].clone());
        }
        v
    };
    assert_eq!(
        states,
        [json!("Provisioning"), json!("Provisioning"), json!("Ready")]
    );

    // The subnet it sits in cannot go, neither by DELETE nor by a vnet PUT without it.
    api.delete(&subnet("rg", "pg"), NET_API)
        .await
        .is_error(400, "InUseSubnetCannotBeDeleted");
    api.put(&net("rg", "virtualNetworks/vnet"), NET_API, vnet_body(&[]))
        .await
        .is_error(400, "InUseSubnetCannotBeDeleted");
    // Nor the zone while linked.
    api.delete(&zone("rg"), DNS_API)
        .await
        .is_error(409, "PreconditionFailed");
}

#[tokio::test]
async fn server_validation_names_storage_password_and_network() {
    let api = Api::new(Knobs {
        taken_server_names: vec!["someone-elses".into()],
        ..Knobs::default()
    });
    api.private_network("rg").await;
    api.put(&server("rg", "someone-elses"), PG_API, server_body("rg"))
        .await
        .is_error(409, "ServerNameAlreadyExists");
    // A server of the same name in another subscription and group holds the name too.
    let foreign = "/subscriptions/other/resourceGroups/x/providers/Microsoft.DBforPostgreSQL/flexibleServers/shared";
    api.d.shared().lock().put_raw(
        foreign,
        json!({"name": "shared", "type": "Microsoft.DBforPostgreSQL/flexibleServers", "location": "westus2"}),
    );
    api.put(&server("rg", "shared"), PG_API, server_body("rg"))
        .await
        .is_error(409, "ServerNameAlreadyExists");
    api.put(&server("rg", "Bad_Name"), PG_API, server_body("rg"))
        .await
        .is_error(400, "InvalidServerName");
    let mut b = server_body("rg");
    b["properties"]["storage"]["storageSizeGB"] = json!(33);
    api.put(&server("rg", "pg1"), PG_API, b)
        .await
        .is_error(400, "InvalidStorageSize");
    let mut b = server_body("rg");
    b["properties"]["administratorLoginPassword"] = json!("password");
    api.put(&server("rg", "pg1"), PG_API, b)
        .await
        .is_error(400, "PasswordNotComplex");
    let mut b = server_body("rg");
    b["properties"]["version"] = json!("12");
    api.put(&server("rg", "pg1"), PG_API, b)
        .await
        .is_error(400, "InvalidParameterValue");
    // A subnet without the delegation is refused.
    api.ensure(
        &subnet("rg", "plain"),
        NET_API,
        json!({"properties": {"addressPrefix": "10.0.2.0/24"}}),
    )
    .await;
    let mut b = server_body("rg");
    b["properties"]["network"]["delegatedSubnetResourceId"] = json!(id(&subnet("rg", "plain")));
    let e = api.put(&server("rg", "pg1"), PG_API, b).await;
    e.is_error(400, "InvalidParameterValue");
    assert!(
        e.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not delegated"),
        "{e:?}"
    );
    assert!(
        api.d
            .shared()
            .lock()
            .resource(&server("rg", "pg1"))
            .is_none(),
        "nothing stored"
    );
}

#[tokio::test]
async fn server_patch_databases_and_configuration() {
    let api = Api::new(Knobs::default());
    api.private_network("rg").await;
    let path = server("rg", "pg-main");
    api.ensure(&path, PG_API, server_body("rg")).await;

    let grow = json!({"properties": {"storage": {"storageSizeGB": 64}, "administratorLoginPassword": "N3w-Passw0rd"}});
    let shrink = json!({"properties": {"storage": {"storageSizeGB": 16}}});
    api.call(Method::PATCH, &path, PG_API, Some(shrink))
        .await
        .is_error(400, "InvalidStorageSize");
    let p = api.call(Method::PATCH, &path, PG_API, Some(grow)).await;
    assert_eq!(p.status, 202, "{p:?}");
    assert!(!p.header("location").is_empty());
    assert_eq!(p.body["properties"]["state"], "Updating");
    assert_eq!(api.finish(&p).await["status"], "Succeeded");
    let g = api.get(&path, PG_API).await;
    assert_eq!(
        (
            &g.body["properties"]["state"],
            &g.body["properties"]["storage"]["storageSizeGB"]
        ),
        (&json!("Ready"), &json!(64))
    );
    assert_eq!(
        api.d.shared().lock().admin_password(&path),
        Some("N3w-Passw0rd")
    );

    let cfg = format!("{path}/configurations/require_secure_transport");
    let c = api.get(&cfg, PG_API).await;
    assert_eq!(
        (
            c.body["properties"]["value"].as_str(),
            c.body["properties"]["source"].as_str()
        ),
        (Some("on"), Some("system-default"))
    );
    let c = api
        .put(
            &cfg,
            PG_API,
            json!({"properties": {"value": "off", "source": "user-override"}}),
        )
        .await;
    assert_eq!(c.status, 202, "{c:?}");
    api.finish(&c).await;
    assert_eq!(
        api.get(&cfg, PG_API).await.body["properties"]["value"],
        "off"
    );
    api.put(&cfg, PG_API, json!({"properties": {"value": "maybe"}}))
        .await
        .is_error(400, "InvalidParameterValue");
    assert_eq!(
        api.get(&format!("{path}/configurations/work_mem"), PG_API)
            .await
            .status,
        404
    );

    let db = format!("{path}/databases/flyte");
    let d = api
        .ensure(
            &db,
            PG_API,
            json!({"properties": {"charset": "UTF8", "collation": "en_US.utf8"}}),
        )
        .await;
    assert_eq!(
        d["type"],
        "Microsoft.DBforPostgreSQL/flexibleServers/databases"
    );
    api.put(
        &db,
        PG_API,
        json!({"properties": {"charset": "LATIN1", "collation": "en_US.utf8"}}),
    )
    .await
    .is_error(400, "InvalidParameterValue");
    api.put(
        &format!("{}/databases/flyte", server("rg", "absent")),
        PG_API,
        json!({}),
    )
    .await
    .is_error(404, "ResourceNotFound");

    // Deleting the server takes its databases along (Location: 202 until done, then 204).
    let del = api.delete(&path, PG_API).await;
    assert_eq!(del.status, 202);
    assert_eq!(
        api.get(&path, PG_API).await.body["properties"]["state"],
        "Dropping"
    );
    let location = del.header("location").to_string();
    assert_eq!(api.raw(Method::GET, &location, None).await.status, 202);
    assert_eq!(api.raw(Method::GET, &location, None).await.status, 204);
    api.get(&path, PG_API)
        .await
        .is_error(404, "ResourceNotFound");
    assert!(api.d.shared().lock().resource(&db).is_none());
    assert_eq!(api.delete(&path, PG_API).await.status, 204, "absent: 204");
}

#[tokio::test]
async fn lock_refuses_delete_until_removed() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let nsg = net("rg", "networkSecurityGroups/nsg");
    api.ensure(&nsg, NET_API, json!({"location": "eastus"}))
        .await;
    let lock = format!("{nsg}/providers/Microsoft.Authorization/locks/keep");
    let l = api
        .put(
            &lock,
            LOCK_API,
            json!({"properties": {"level": "CanNotDelete", "notes": "keep it"}}),
        )
        .await;
    assert_eq!(l.status, 201, "{l:?}");
    assert_eq!(l.body["type"], "Microsoft.Authorization/locks");
    assert_eq!(l.body["properties"]["owners"], json!([]));
    let list = api
        .get(
            &format!("{nsg}/providers/Microsoft.Authorization/locks"),
            LOCK_API,
        )
        .await;
    assert_eq!(list.body["value"].as_array().map(Vec::len), Some(1));

    api.delete(&nsg, NET_API).await.is_error(409, "ScopeLocked");
    api.delete(&rg_path("rg"), RG_API)
        .await
        .is_error(409, "ScopeLocked");
    // The lock is no resource of the group.
    let listed = api
        .get(&format!("{}/resources", rg_path("rg")), RG_API)
        .await;
    assert_eq!(
        listed.body["value"].as_array().map(Vec::len),
        Some(1),
        "{listed:?}"
    );

    assert_eq!(api.delete(&lock, LOCK_API).await.status, 200);
    api.get(&lock, LOCK_API).await.is_error(404, "LockNotFound");
    assert_eq!(api.delete(&lock, LOCK_API).await.status, 204);
    let del = api.delete(&nsg, NET_API).await;
    assert_eq!(del.status, 202, "{del:?}");
    assert_eq!(api.finish(&del).await["status"], "Succeeded");
    api.get(&nsg, NET_API)
        .await
        .is_error(404, "ResourceNotFound");
    // A lock needs an existing scope.
    api.put(
        &lock,
        LOCK_API,
        json!({"properties": {"level": "CanNotDelete"}}),
    )
    .await
    .is_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn unregistered_namespace_answers_409_until_registered() {
    let api = Api::new(Knobs {
        unregistered: vec!["Microsoft.DBforPostgreSQL".into()],
        ..Knobs::default()
    });
    api.private_network("rg").await;
    let provider = format!("/subscriptions/{SUB}/providers/Microsoft.DBforPostgreSQL");
    assert_eq!(
        api.get(&provider, RG_API).await.body["registrationState"],
        "NotRegistered"
    );
    let e = api
        .put(&server("rg", "pg-main"), PG_API, server_body("rg"))
        .await;
    e.is_error(409, "MissingSubscriptionRegistration");
    assert!(
        e.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Microsoft.DBforPostgreSQL")
    );

    let r = api
        .call(Method::POST, &format!("{provider}/register"), RG_API, None)
        .await;
    assert_eq!(
        (r.status, &r.body["registrationState"]),
        (200, &json!("Registering")),
        "{r:?}"
    );
    api.put(&server("rg", "pg-main"), PG_API, server_body("rg"))
        .await
        .is_error(409, "MissingSubscriptionRegistration");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(api.get(&provider, RG_API).await.body["registrationState"].clone());
    }
    assert_eq!(
        seen,
        [
            json!("Registering"),
            json!("Registering"),
            json!("Registered")
        ]
    );
    assert_eq!(
        api.put(&server("rg", "pg-main"), PG_API, server_body("rg"))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn throttle_every_third_call_answers_429_with_retry_after() {
    let api = Api::new(Knobs {
        throttle_every: 3,
        retry_after_secs: 7,
        ..Knobs::default()
    });
    let sub = format!("/subscriptions/{SUB}");
    assert_eq!(api.get(&sub, "2022-12-01").await.status, 200);
    assert_eq!(
        api.get(&format!("{sub}/locations"), "2022-12-01")
            .await
            .status,
        200
    );
    let t = api
        .put(&rg_path("rg"), RG_API, json!({"location": "eastus"}))
        .await;
    t.is_error(429, "TooManyRequests");
    assert_eq!(t.header("retry-after"), "7");
    assert!(
        api.d.shared().lock().resource(&rg_path("rg")).is_none(),
        "throttled before acting"
    );
    assert_eq!(
        api.put(&rg_path("rg"), RG_API, json!({"location": "eastus"}))
            .await
            .status,
        201
    );
    assert_eq!(api.get(&rg_path("rg"), RG_API).await.status, 200);
    api.get(&rg_path("rg"), RG_API)
        .await
        .is_error(429, "TooManyRequests");
    let w = api.d.shared().lock();
    assert_eq!(w.calls(), 6);
    assert_eq!(w.calls_by_op().get("PUT resourceGroups"), Some(&2));
}

#[tokio::test]
async fn lose_next_response_performs_the_effect_and_answers_500() {
    let api = Api::new(Knobs {
        lose_next_response: vec![("PUT".into(), "resourcegroups/lost".into())],
        ..Knobs::default()
    });
    api.put(&rg_path("lost"), RG_API, json!({"location": "eastus"}))
        .await
        .is_error(500, "InternalServerError");
    let g = api.get(&rg_path("lost"), RG_API).await;
    assert_eq!(g.status, 200, "the PUT took effect: {g:?}");
    // Only the next matching call is lost.
    assert_eq!(
        api.put(&rg_path("lost"), RG_API, json!({"location": "eastus"}))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn failed_operation_ends_failed_and_leaves_the_resource_failed() {
    let api = Api::new(Knobs {
        fail_next: vec![("PUT".into(), "networkSecurityGroups/bad".into())],
        ..Knobs::default()
    });
    api.group("rg").await;
    let path = net("rg", "networkSecurityGroups/bad");
    let a = api.put(&path, NET_API, json!({"location": "eastus"})).await;
    assert_eq!(a.status, 201);
    let s = api.finish(&a).await;
    assert_eq!(
        (&s["status"], &s["error"]["code"]),
        (&json!("Failed"), &json!("InternalServerError")),
        "{s}"
    );
    let g = api.get(&path, NET_API).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Failed");
    assert!(
        api.ensure(&path, NET_API, json!({"location": "eastus"}))
            .await
            .is_object(),
        "a retry succeeds"
    );
}

#[tokio::test]
async fn api_version_missing_or_wrong_is_400_and_unknown_routes_404() {
    let api = Api::new(Knobs::default());
    api.get(&rg_path("rg"), "")
        .await
        .is_error(400, "MissingApiVersionParameter");
    api.get(&rg_path("rg"), NET_API)
        .await
        .is_error(400, "InvalidApiVersionParameter");
    api.put(&net("rg", "virtualNetworks/v"), RG_API, vnet_body(&[]))
        .await
        .is_error(400, "InvalidApiVersionParameter");
    let e = api.get("/nothing/here", RG_API).await;
    e.is_error(404, "NotFound");
    assert!(
        e.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("serves no route")
    );
    api.get(&format!("/subscriptions/{SUB}/bogus/x/y"), RG_API)
        .await
        .is_error(404, "NotFound");
    let unknown = Api::new(Knobs {
        unknown_subscriptions: vec![SUB.into()],
        ..Knobs::default()
    });
    unknown
        .get(&format!("/subscriptions/{SUB}"), "2022-12-01")
        .await
        .is_error(404, "SubscriptionNotFound");
    api.put(
        &net("nogroup", "virtualNetworks/v"),
        NET_API,
        vnet_body(&[]),
    )
    .await
    .is_error(404, "ResourceGroupNotFound");
}

#[tokio::test]
async fn paths_are_case_insensitive_and_keep_the_first_casing() {
    let api = Api::new(Knobs::default());
    api.group("MyGroup").await;
    let g = api
        .get(
            &format!("/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/mygroup"),
            RG_API,
        )
        .await;
    assert_eq!(
        g.body["id"],
        format!("/subscriptions/{SUB}/resourceGroups/MyGroup")
    );
    let lower = format!(
        "/subscriptions/{SUB}/resourcegroups/mygroup/providers/microsoft.network/virtualnetworks/VNet"
    );
    api.ensure(&lower, NET_API, vnet_body(&[])).await;
    let v = api
        .get(&net("MyGroup", "virtualNetworks/vnet"), NET_API)
        .await;
    assert_eq!(
        v.body["id"],
        format!(
            "/subscriptions/{SUB}/resourceGroups/mygroup/providers/Microsoft.Network/virtualNetworks/VNet"
        )
    );
    assert_eq!(v.body["type"], "Microsoft.Network/virtualNetworks");
}

#[tokio::test]
async fn dns_links_and_nsg_rules_follow_their_rules() {
    let api = Api::new(Knobs::default());
    api.private_network("rg").await;
    let z = api.get(&zone("rg"), DNS_API).await;
    assert_eq!(z.body["properties"]["numberOfVirtualNetworkLinks"], 1);
    let twin = json!({"location": "global", "properties": {"virtualNetwork": {"id": id(&net("rg", "virtualNetworks/vnet"))}}});
    api.put(
        &format!("{}/virtualNetworkLinks/twin", zone("rg")),
        DNS_API,
        twin,
    )
    .await
    .is_error(409, "Conflict");
    api.put(
        &net("rg", "privateDnsZones/z.example"),
        DNS_API,
        json!({"location": "eastus"}),
    )
    .await
    .is_error(400, "InvalidLocation");

    let rule = |name: &str, priority: u32| {
        json!({"name": name, "properties": {"priority": priority,
        "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": "10.0.0.0/22",
        "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "5432"}})
    };
    let nsg = net("rg", "networkSecurityGroups/nsg");
    api.put(&nsg, NET_API, json!({"location": "eastus", "properties": {"securityRules": [rule("a", 100), rule("b", 100)]}}))
        .await
        .is_error(400, "SecurityRuleConflict");
    api.put(
        &nsg,
        NET_API,
        json!({"location": "eastus", "properties": {"securityRules": [rule("a", 99)]}}),
    )
    .await
    .is_error(400, "SecurityRuleInvalidPriority");
    let n = api
        .ensure(
            &nsg,
            NET_API,
            json!({"location": "eastus", "properties": {"securityRules": [rule("a", 100)]}}),
        )
        .await;
    assert_eq!(
        n["properties"]["defaultSecurityRules"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );
    assert_eq!(
        n["properties"]["securityRules"][0]["properties"]["provisioningState"],
        "Succeeded"
    );
    let with_nsg = json!({"properties": {"addressPrefix": "10.0.3.0/24", "networkSecurityGroup": {"id": id(&nsg)}}});
    api.ensure(&subnet("rg", "guarded"), NET_API, with_nsg)
        .await;
    api.delete(&nsg, NET_API)
        .await
        .is_error(400, "InUseNetworkSecurityGroupCannotBeDeleted");
}

#[tokio::test]
async fn control_routes_merge_knobs_count_calls_and_list_resources() {
    let api = Api::new(Knobs::default());
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", api.d.url());
    let k: Value = c
        .post(url("/_double/knobs"))
        .json(&json!({"taken_server_names": ["x"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&k["taken_server_names"], &k["polls_to_finish"]),
        (&json!(["x"]), &json!(2)),
        "merged: {k}"
    );
    api.group("rg").await;
    api.get(&rg_path("rg"), RG_API).await;
    let calls: Value = c
        .get(url("/_double/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        calls,
        json!({"total": 2, "by_op": {"GET resourceGroups": 1, "PUT resourceGroups": 1}})
    );
    let ids: Value = c
        .get(url("/_double/resources"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ids,
        json!([format!("/subscriptions/{SUB}/resourceGroups/rg")])
    );
    c.post(url("/_double/reset")).send().await.unwrap();
    assert!(api.d.shared().lock().resource_ids().is_empty());
    assert_eq!(api.d.shared().lock().calls(), 0);
}
