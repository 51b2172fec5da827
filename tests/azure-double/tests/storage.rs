//! The double's Azure Storage management plane driven over HTTP as a plain client sees
//! it: storage accounts (created through `Location` polling, global names, network
//! rules), blob service settings, containers and lifecycle policies, with the ARM
//! machinery (registration, locks, the group's resource list, knobs) applied to them
//! as the wire contract (`notes/azure-contract.md`, "Storage (Azure B)") promises.

use std::collections::BTreeSet;

use flyteinfra_azure_double::{AzureDouble, Knobs};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-0000000000s2";
const RG_API: &str = "2021-04-01";
const NET_API: &str = "2024-05-01";
const LOCK_API: &str = "2020-05-01";
const ST_API: &str = "2023-05-01";

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

    async fn patch(&self, path: &str, api: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, api, Some(body)).await
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

    /// PUTs a network resource and polls its `Azure-AsyncOperation` to success.
    async fn ensure_net(&self, path: &str, body: Value) {
        let a = self.put(path, NET_API, body).await;
        assert!(matches!(a.status, 200 | 201), "{a:?}");
        let url = a.header("azure-asyncoperation").to_string();
        for _ in 0..10 {
            let s = self.raw(Method::GET, &url, None).await;
            match s.body["status"].as_str() {
                Some("InProgress") => continue,
                Some("Succeeded") => return,
                _ => panic!("{path}: {s:?}"),
            }
        }
        panic!("{path} never finished");
    }

    /// PUTs a new account and polls its `Location` to the final 200; the account body.
    async fn account_ready(&self, path: &str, body: Value) -> Value {
        let a = self.put(path, ST_API, body).await;
        assert_eq!(a.status, 202, "{a:?}");
        let url = a.header("location").to_string();
        for _ in 0..10 {
            let p = self.raw(Method::GET, &url, None).await;
            match p.status {
                202 => continue,
                200 => return p.body,
                _ => panic!("{path}: {p:?}"),
            }
        }
        panic!("{path} never finished");
    }
}

fn rg_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}

fn account(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{name}",
        rg_path(rg)
    )
}

fn vnet(rg: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet",
        rg_path(rg)
    )
}

fn subnet(rg: &str, name: &str) -> String {
    format!("{}/subnets/{name}", vnet(rg))
}

fn blob_service(acct: &str) -> String {
    format!("{acct}/blobServices/default")
}

fn container(acct: &str, name: &str) -> String {
    format!("{}/containers/{name}", blob_service(acct))
}

fn policy(acct: &str) -> String {
    format!("{acct}/managementPolicies/default")
}

/// The contract's account body, with these virtual network rules.
fn account_body(vnet_rules: Value) -> Value {
    json!({
        "sku": {"name": "Standard_LRS"},
        "kind": "StorageV2",
        "location": "eastus",
        "tags": {"owner": "flyteinfra"},
        "properties": {
            "supportsHttpsTrafficOnly": true,
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": false,
            "allowSharedKeyAccess": false,
            "networkAcls": {
                "bypass": "AzureServices",
                "defaultAction": "Deny",
                "virtualNetworkRules": vnet_rules,
                "ipRules": [{"value": "203.0.113.7", "action": "Allow"}],
            },
        },
    })
}

fn policy_body(rule_names: &[&str]) -> Value {
    let rules: Vec<Value> = rule_names
        .iter()
        .map(|n| {
            json!({"enabled": true, "name": n, "type": "Lifecycle", "definition": {
                "actions": {
                    "baseBlob": {"delete": {"daysAfterModificationGreaterThan": 30}},
                    "version": {"delete": {"daysAfterCreationGreaterThan": 30}}},
                "filters": {"blobTypes": ["blockBlob"], "prefixMatch": ["data/"]}}})
        })
        .collect();
    json!({"properties": {"policy": {"rules": rules}}})
}

/// A vnet (10.0.0.0/16) in the group.
async fn network(api: &Api, rg: &str) {
    api.ensure_net(
        &vnet(rg),
        json!({"location": "eastus", "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}}),
    )
    .await;
}

/// Subnet `data` (10.0.2.0/24) of the vnet, with or without the storage service endpoint.
async fn data_subnet(api: &Api, rg: &str, endpoint: bool) {
    let mut props = json!({"addressPrefix": "10.0.2.0/24"});
    if endpoint {
        props["serviceEndpoints"] = json!([{"service": "Microsoft.Storage"}]);
    }
    api.ensure_net(&subnet(rg, "data"), json!({ "properties": props }))
        .await;
}

#[tokio::test]
async fn account_create_polls_location_202s_then_200_with_the_body() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let path = account("rg", "flytedata01");
    let a = api.put(&path, ST_API, account_body(json!([]))).await;
    assert_eq!((a.status, &a.body), (202, &Value::Null), "{a:?}");
    assert!(
        a.headers.get("azure-asyncoperation").is_none(),
        "only a Location: {a:?}"
    );
    assert_eq!(a.header("retry-after"), "0");
    let location = a.header("location").to_string();
    assert!(location.starts_with(api.d.url()), "{location}");
    assert!(
        location.contains(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Storage/locations/eastus/asyncoperations/"
        )) && location.contains("monitor=true")
            && location.contains("api-version=2023-05-01"),
        "{location}"
    );

    // A GET of the account shows it coming, and counts as a poll (2 polls to finish).
    let g = api.get(&path, ST_API).await;
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.body["properties"]["provisioningState"], "Creating");
    let p = api.raw(Method::GET, &location, None).await;
    assert_eq!((p.status, &p.body), (202, &Value::Null), "{p:?}");
    assert_eq!(p.header("location"), location, "keeps pointing at itself");
    let done = api.raw(Method::GET, &location, None).await;
    assert_eq!(done.status, 200, "{done:?}");
    let b = &done.body;
    assert_eq!(b["id"], path);
    assert_eq!(b["name"], "flytedata01");
    assert_eq!(b["type"], "Microsoft.Storage/storageAccounts");
    assert_eq!(b["location"], "eastus");
    assert_eq!(b["tags"], json!({"owner": "flyteinfra"}));
    assert_eq!(
        b["sku"],
        json!({"name": "Standard_LRS", "tier": "Standard"})
    );
    assert_eq!(b["kind"], "StorageV2");
    let p = &b["properties"];
    assert_eq!(p["provisioningState"], "Succeeded");
    assert_eq!(
        p["primaryEndpoints"]["blob"],
        "https://flytedata01.blob.core.windows.net/"
    );
    assert!(
        p["creationTime"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{p}"
    );
    assert_eq!(
        (
            &p["minimumTlsVersion"],
            &p["allowSharedKeyAccess"],
            &p["allowBlobPublicAccess"]
        ),
        (&json!("TLS1_2"), &json!(false), &json!(false))
    );
    assert_eq!(p["networkAcls"]["defaultAction"], "Deny");
    assert_eq!(p["networkAcls"]["ipRules"][0]["value"], "203.0.113.7");
    assert_eq!(api.get(&path, ST_API).await.body, done.body);

    // An existing account's PUT and PATCH answer at once, with the body.
    let mut again = account_body(json!([]));
    again["tags"] = json!({"owner": "someone-else"});
    let u = api.put(&path, ST_API, again).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert!(u.headers.get("location").is_none(), "{u:?}");
    assert_eq!(u.body["tags"], json!({"owner": "someone-else"}));
    assert_eq!(u.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(u.body["properties"]["creationTime"], p["creationTime"]);
    let patched = api
        .patch(
            &path,
            ST_API,
            json!({"tags": {"env": "dev"}, "properties": {"minimumTlsVersion": "TLS1_1"}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["tags"], json!({"env": "dev"}));
    assert_eq!(patched.body["properties"]["minimumTlsVersion"], "TLS1_1");
    assert_eq!(
        patched.body["properties"]["networkAcls"]["defaultAction"], "Deny",
        "PATCH keeps what it does not name"
    );
    api.patch(
        &path,
        ST_API,
        json!({"properties": {"minimumTlsVersion": "TLS9"}}),
    )
    .await
    .is_error(400, "InvalidValuesForRequestParameters");

    // DELETE answers at once: 200, then 204 when absent.
    let del = api.delete(&path, ST_API).await;
    assert_eq!((del.status, &del.body), (200, &Value::Null), "{del:?}");
    api.get(&path, ST_API)
        .await
        .is_error(404, "ResourceNotFound");
    assert_eq!(api.delete(&path, ST_API).await.status, 204);
}

#[tokio::test]
async fn account_names_are_checked_and_global() {
    let api = Api::new(Knobs {
        taken_storage_names: vec!["takenbyother".into()],
        ..Knobs::default()
    });
    api.group("rg").await;
    api.group("rg2").await;
    let t = api
        .put(
            &account("rg", "takenbyother"),
            ST_API,
            account_body(json!([])),
        )
        .await;
    t.is_error(409, "StorageAccountAlreadyTaken");
    assert_eq!(
        t.message(),
        "The storage account named takenbyother is already taken."
    );
    for bad in ["Flyte", "flyte-data", "ab", "abcdefghijklmnopqrstuvwxy"] {
        api.put(&account("rg", bad), ST_API, account_body(json!([])))
            .await
            .is_error(400, "AccountNameInvalid");
    }

    // A name used in another group (or subscription) is taken; the same id is not.
    api.account_ready(&account("rg", "flyteshared"), account_body(json!([])))
        .await;
    api.put(
        &account("rg2", "flyteshared"),
        ST_API,
        account_body(json!([])),
    )
    .await
    .is_error(409, "StorageAccountAlreadyTaken");
    assert_eq!(
        api.put(
            &account("rg", "flyteshared"),
            ST_API,
            account_body(json!([]))
        )
        .await
        .status,
        200,
        "the same account again"
    );

    let mut bad = account_body(json!([]));
    bad["sku"] = json!({"name": "Standard_XYZ"});
    api.put(&account("rg", "flyteother"), ST_API, bad)
        .await
        .is_error(400, "InvalidAccountType");
    let mut bad = account_body(json!([]));
    bad["kind"] = json!("Floppy");
    api.put(&account("rg", "flyteother"), ST_API, bad)
        .await
        .is_error(400, "InvalidValuesForRequestParameters");
    api.put(
        &account("rg", "flyteother"),
        "2021-04-01",
        account_body(json!([])),
    )
    .await
    .is_error(400, "InvalidApiVersionParameter");
    api.put(
        &account("nogroup", "flyteother"),
        ST_API,
        account_body(json!([])),
    )
    .await
    .is_error(404, "ResourceGroupNotFound");
    assert!(
        api.d
            .shared()
            .lock()
            .resource(&account("rg", "flyteother"))
            .is_none(),
        "refused PUTs leave nothing behind"
    );
}

#[tokio::test]
async fn network_rules_need_a_subnet_with_the_storage_service_endpoint() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    network(&api, "rg").await;
    data_subnet(&api, "rg", false).await;
    let path = account("rg", "flytenet");
    let rule = json!([{"id": subnet("rg", "data"), "action": "Allow"}]);
    let e = api.put(&path, ST_API, account_body(rule.clone())).await;
    e.is_error(400, "NetworkAclsValidationFailure");
    assert!(
        e.message()
            .contains("SubnetsHaveNoServiceEndpointsConfigured")
            && e.message().contains("Microsoft.Storage"),
        "{e:?}"
    );
    api.put(
        &path,
        ST_API,
        account_body(json!([{"id": subnet("rg", "absent")}])),
    )
    .await
    .is_error(400, "NetworkAclsValidationFailure");
    let mut private_ip = account_body(json!([]));
    private_ip["properties"]["networkAcls"]["ipRules"] = json!([{"value": "10.1.2.3"}]);
    api.put(&path, ST_API, private_ip)
        .await
        .is_error(400, "NetworkAclsValidationFailure");
    api.get(&path, ST_API)
        .await
        .is_error(404, "ResourceNotFound");

    data_subnet(&api, "rg", true).await;
    let b = api.account_ready(&path, account_body(rule)).await;
    let rules = &b["properties"]["networkAcls"]["virtualNetworkRules"];
    assert_eq!(rules[0]["id"], subnet("rg", "data"), "{b}");
    assert_eq!(
        (&rules[0]["action"], &rules[0]["state"]),
        (&json!("Allow"), &json!("Succeeded"))
    );
}

#[tokio::test]
async fn blob_service_defaults_then_versioning_and_soft_delete() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let acct = account("rg", "flyteblobs");
    // Children wait for the account to be provisioned.
    let a = api.put(&acct, ST_API, account_body(json!([]))).await;
    assert_eq!(a.status, 202);
    api.get(&blob_service(&acct), ST_API)
        .await
        .is_error(409, "StorageAccountIsNotProvisioned");
    for _ in 0..3 {
        api.raw(Method::GET, a.header("location"), None).await;
    }

    let g = api.get(&blob_service(&acct), ST_API).await;
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.body["id"], blob_service(&acct));
    assert_eq!(
        (&g.body["name"], &g.body["type"]),
        (
            &json!("default"),
            &json!("Microsoft.Storage/storageAccounts/blobServices")
        )
    );
    let p = &g.body["properties"];
    assert_eq!(p["isVersioningEnabled"], false);
    assert_eq!(p["deleteRetentionPolicy"], json!({"enabled": false}));
    assert_eq!(
        p["containerDeleteRetentionPolicy"],
        json!({"enabled": false})
    );

    let set = api
        .put(
            &blob_service(&acct),
            ST_API,
            json!({"properties": {"isVersioningEnabled": true,
                "deleteRetentionPolicy": {"enabled": true, "days": 7}}}),
        )
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    assert!(set.headers.get("location").is_none());
    let p = &set.body["properties"];
    assert_eq!(p["isVersioningEnabled"], true);
    assert_eq!(
        p["deleteRetentionPolicy"],
        json!({"enabled": true, "days": 7})
    );
    assert_eq!(
        p["containerDeleteRetentionPolicy"],
        json!({"enabled": false}),
        "merged with what was there"
    );
    let set = api
        .put(
            &blob_service(&acct),
            ST_API,
            json!({"properties": {"containerDeleteRetentionPolicy": {"enabled": true, "days": 7}}}),
        )
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    for bad in [
        json!({"enabled": true, "days": 0}),
        json!({"enabled": true, "days": 366}),
        json!({"enabled": true}),
    ] {
        api.put(
            &blob_service(&acct),
            ST_API,
            json!({"properties": {"deleteRetentionPolicy": bad}}),
        )
        .await
        .is_error(400, "InvalidParameterValue");
    }
    let g = api.get(&blob_service(&acct), ST_API).await;
    let p = &g.body["properties"];
    assert_eq!(
        (
            &p["isVersioningEnabled"],
            &p["deleteRetentionPolicy"]["days"],
            &p["containerDeleteRetentionPolicy"]["enabled"]
        ),
        (&json!(true), &json!(7), &json!(true)),
        "{g:?}"
    );
    assert_eq!(api.delete(&blob_service(&acct), ST_API).await.status, 405);
}

#[tokio::test]
async fn containers_put_get_list_delete_and_refuse_public_access() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let acct = account("rg", "flytecontainers");
    api.account_ready(&acct, account_body(json!([]))).await;
    let raw = container(&acct, "raw");
    let c = api
        .put(
            &raw,
            ST_API,
            json!({"properties": {"publicAccess": "None", "metadata": {"k": "v"}}}),
        )
        .await;
    assert_eq!(c.status, 201, "{c:?}");
    assert_eq!(c.body["id"], raw);
    assert_eq!(
        c.body["type"],
        "Microsoft.Storage/storageAccounts/blobServices/containers"
    );
    let p = &c.body["properties"];
    assert_eq!(
        (&p["publicAccess"], &p["metadata"]),
        (&json!("None"), &json!({"k": "v"}))
    );
    assert_eq!(
        (&p["hasImmutabilityPolicy"], &p["hasLegalHold"]),
        (&json!(false), &json!(false))
    );
    assert!(p["lastModifiedTime"].is_string() && c.body["etag"].is_string());

    let again = api
        .put(
            &raw,
            ST_API,
            json!({"properties": {"metadata": {"a": "b"}}}),
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        again.body["properties"]["metadata"],
        json!({"a": "b"}),
        "metadata replaced"
    );
    assert_ne!(again.body["etag"], c.body["etag"]);
    let g = api.get(&raw, ST_API).await;
    assert_eq!((g.status, &g.body), (200, &again.body));

    let public = json!({"properties": {"publicAccess": "Blob"}});
    api.put(&container(&acct, "pub"), ST_API, public.clone())
        .await
        .is_error(409, "PublicAccessNotPermitted");
    api.get(&container(&acct, "pub"), ST_API)
        .await
        .is_error(404, "ContainerNotFound");
    api.put(&container(&acct, "Bad_Name"), ST_API, json!({}))
        .await
        .is_error(400, "InvalidContainerName");
    api.put(
        &container(&account("rg", "flyteabsent"), "raw"),
        ST_API,
        json!({}),
    )
    .await
    .is_error(404, "ParentResourceNotFound");

    let list = api
        .get(&format!("{}/containers", blob_service(&acct)), ST_API)
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    let names: Vec<&Value> = list.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("raw")]);

    // The refusal follows the account: allow public access and the same PUT succeeds.
    let a = api
        .patch(
            &acct,
            ST_API,
            json!({"properties": {"allowBlobPublicAccess": true}}),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        api.put(&container(&acct, "pub"), ST_API, public)
            .await
            .status,
        201
    );

    assert_eq!(api.delete(&raw, ST_API).await.status, 200);
    api.get(&raw, ST_API)
        .await
        .is_error(404, "ContainerNotFound");
    assert_eq!(api.delete(&raw, ST_API).await.status, 204);
}

#[tokio::test]
async fn management_policy_put_get_delete() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let acct = account("rg", "flytepolicy");
    api.account_ready(&acct, account_body(json!([]))).await;
    api.get(&policy(&acct), ST_API)
        .await
        .is_error(404, "ManagementPolicyNotFound");
    let sent = policy_body(&["raw-data-expiry"]);
    let p = api.put(&policy(&acct), ST_API, sent.clone()).await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.body["id"], policy(&acct));
    assert_eq!(
        (&p.body["name"], &p.body["type"]),
        (
            &json!("DefaultManagementPolicy"),
            &json!("Microsoft.Storage/storageAccounts/managementPolicies")
        )
    );
    assert_eq!(p.body["properties"]["policy"], sent["properties"]["policy"]);
    assert!(p.body["properties"]["lastModifiedTime"].is_string());
    assert_eq!(api.get(&policy(&acct), ST_API).await.body, p.body);

    api.put(&policy(&acct), ST_API, policy_body(&["a", "a"]))
        .await
        .is_error(400, "InvalidParameterValue");
    api.put(
        &policy(&acct),
        ST_API,
        json!({"properties": {"policy": {}}}),
    )
    .await
    .is_error(400, "InvalidParameterValue");

    assert_eq!(api.delete(&policy(&acct), ST_API).await.status, 200);
    api.get(&policy(&acct), ST_API)
        .await
        .is_error(404, "ManagementPolicyNotFound");
    assert_eq!(api.delete(&policy(&acct), ST_API).await.status, 204);
}

#[tokio::test]
async fn group_resources_list_accounts_but_not_their_children() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    network(&api, "rg").await;
    let acct = account("rg", "flytelisted");
    api.account_ready(&acct, account_body(json!([]))).await;
    for (path, body) in [
        (
            blob_service(&acct),
            json!({"properties": {"isVersioningEnabled": true}}),
        ),
        (container(&acct, "raw"), json!({})),
        (policy(&acct), policy_body(&["r"])),
    ] {
        let a = api.put(&path, ST_API, body).await;
        assert!(matches!(a.status, 200 | 201), "{a:?}");
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
    assert_eq!(ids, BTreeSet::from([acct.as_str(), vnet("rg").as_str()]));
    let item = listed.body["value"]
        .as_array()
        .and_then(|v| v.iter().find(|r| r["id"] == acct.as_str()))
        .expect("account listed");
    assert_eq!(
        (&item["type"], &item["location"]),
        (
            &json!("Microsoft.Storage/storageAccounts"),
            &json!("eastus")
        )
    );
}

#[tokio::test]
async fn locks_refuse_storage_deletes_with_scope_locked() {
    let api = Api::new(Knobs::default());
    api.group("rg").await;
    let acct = account("rg", "flytelocked");
    api.account_ready(&acct, account_body(json!([]))).await;
    let raw = container(&acct, "raw");
    assert_eq!(api.put(&raw, ST_API, json!({})).await.status, 201);
    assert_eq!(
        api.put(&policy(&acct), ST_API, policy_body(&["r"]))
            .await
            .status,
        200
    );
    let lock = format!("{acct}/providers/Microsoft.Authorization/locks/keep");
    let l = api
        .put(
            &lock,
            LOCK_API,
            json!({"properties": {"level": "CanNotDelete"}}),
        )
        .await;
    assert_eq!(l.status, 201, "{l:?}");

    for path in [&acct, &raw, &policy(&acct), &rg_path("rg")] {
        let api_version = if *path == rg_path("rg") {
            RG_API
        } else {
            ST_API
        };
        api.delete(path, api_version)
            .await
            .is_error(409, "ScopeLocked");
    }
    // CanNotDelete still lets writes through.
    assert_eq!(api.put(&raw, ST_API, json!({})).await.status, 200);

    let ro = format!("{acct}/providers/Microsoft.Authorization/locks/frozen");
    let l = api
        .put(&ro, LOCK_API, json!({"properties": {"level": "ReadOnly"}}))
        .await;
    assert_eq!(l.status, 201, "{l:?}");
    api.patch(&acct, ST_API, json!({"tags": {}}))
        .await
        .is_error(409, "ScopeLocked");

    assert_eq!(api.delete(&ro, LOCK_API).await.status, 200);
    assert_eq!(api.delete(&lock, LOCK_API).await.status, 200);
    assert_eq!(api.delete(&acct, ST_API).await.status, 200);
    let left: Vec<String> = api
        .d
        .shared()
        .lock()
        .resource_ids()
        .into_iter()
        .filter(|id| id.contains("Microsoft.Storage"))
        .collect();
    assert!(left.is_empty(), "the account's children went too: {left:?}");
}

#[tokio::test]
async fn unregistered_storage_namespace_answers_409_until_registered() {
    let api = Api::new(Knobs {
        unregistered: vec!["Microsoft.Storage".into()],
        ..Knobs::default()
    });
    api.group("rg").await;
    let acct = account("rg", "flytereg");
    let e = api.put(&acct, ST_API, account_body(json!([]))).await;
    e.is_error(409, "MissingSubscriptionRegistration");
    assert!(e.message().contains("Microsoft.Storage"), "{e:?}");
    api.get(&format!("{}/containers", blob_service(&acct)), ST_API)
        .await
        .is_error(409, "MissingSubscriptionRegistration");

    let provider = format!("/subscriptions/{SUB}/providers/Microsoft.Storage");
    let r = api
        .call(Method::POST, &format!("{provider}/register"), RG_API, None)
        .await;
    assert_eq!(r.body["registrationState"], "Registering", "{r:?}");
    for _ in 0..3 {
        api.get(&provider, RG_API).await;
    }
    assert_eq!(
        api.get(&provider, RG_API).await.body["registrationState"],
        "Registered"
    );
    api.account_ready(&acct, account_body(json!([]))).await;
}

#[tokio::test]
async fn knobs_throttle_lose_and_fail_storage_calls() {
    let api = Api::new(Knobs {
        throttle_every: 3,
        lose_next_response: vec![("PUT".into(), "storageAccounts/flytelost".into())],
        fail_next: vec![("PUT".into(), "storageAccounts/flytefail".into())],
        ..Knobs::default()
    });
    api.group("rg").await; // call 1
    let lost = account("rg", "flytelost");
    // Call 2: performed, but the answer is lost.
    api.put(&lost, ST_API, account_body(json!([])))
        .await
        .is_error(500, "InternalServerError");
    // Call 3: throttled before doing anything.
    let t = api.get(&lost, ST_API).await;
    t.is_error(429, "TooManyRequests");
    assert_eq!(t.header("retry-after"), "0");
    // A retried PUT finds the account being created and answers 200 with it.
    let retry = api.put(&lost, ST_API, account_body(json!([]))).await; // 4
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.body["properties"]["provisioningState"], "Creating");
    let g = api.get(&lost, ST_API).await; // 5
    assert_eq!(g.body["properties"]["provisioningState"], "Creating");
    api.get(&lost, ST_API)
        .await
        .is_error(429, "TooManyRequests"); // 6
    let g = api.get(&lost, ST_API).await; // 7
    assert_eq!(g.body["properties"]["provisioningState"], "Creating");
    let g = api.get(&lost, ST_API).await; // 8
    assert_eq!(g.body["properties"]["provisioningState"], "Succeeded");
    {
        let mut w = api.d.shared().lock();
        assert_eq!(w.calls_by_op().get("PUT storageAccounts"), Some(&2));
        w.knobs.throttle_every = 0;
    }

    // A failed creation ends in an error on the Location and a Failed account.
    let fail = account("rg", "flytefail");
    let a = api.put(&fail, ST_API, account_body(json!([]))).await;
    assert_eq!(a.status, 202, "{a:?}");
    let url = a.header("location").to_string();
    let mut last = api.raw(Method::GET, &url, None).await;
    while last.status == 202 {
        last = api.raw(Method::GET, &url, None).await;
    }
    last.is_error(500, "InternalServerError");
    assert_eq!(
        api.get(&fail, ST_API).await.body["properties"]["provisioningState"],
        "Failed"
    );
}
