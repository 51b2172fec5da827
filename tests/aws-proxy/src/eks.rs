//! EKS's cluster security group, which moto neither makes nor reports.
//!
//! Real EKS, on CreateCluster, checks the subnets, makes a security group in their VPC
//! (`eks-cluster-sg-<cluster>-<suffix>`, tagged `aws:eks:cluster-name=<cluster>` and
//! `kubernetes.io/cluster/<cluster>=owned`), reports its id as
//! `cluster.resourcesVpcConfig.clusterSecurityGroupId` in every CreateCluster and
//! DescribeCluster answer, and deletes it with the cluster. The proxy does the same
//! through moto's EC2 API, so the provider reads the field exactly as on AWS and has no
//! emulator logic.
//!
//! moto also gives every cluster of a process the same OIDC issuer (its random id is drawn
//! once, at import), where EKS gives each cluster its own; the proxy answers with an issuer
//! id derived from the cluster's ARN and creation time, so two clusters never share an
//! IAM OIDC provider.
//!
//! The group is found again by its tag (DescribeTags), not only remembered, so several
//! proxies in front of one moto (one per test) and a cluster made straight in moto agree
//! on it; its name is derived from the cluster's, so two proxies racing to make it end up
//! with one.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;

use serde_json::Value;

use crate::{Message, Request, Shared, forward, tag_text};

/// The tag EKS puts on the cluster security group.
pub const CLUSTER_NAME_TAG: &str = "aws:eks:cluster-name";

/// Cluster security groups already looked up, by `<cluster ARN> <createdAt>` (a cluster
/// deleted and made again under its name is another key). One lock for all: the first
/// describe of a new cluster makes the group once even when several arrive together.
#[derive(Default)]
pub(crate) struct ClusterGroups(tokio::sync::Mutex<HashMap<String, String>>);

/// The EC2 Query API of moto, called with the credential scope (key, date, region) of the
/// EKS request being served, so the group lands in that account and region.
struct Ec2 {
    upstream: SocketAddr,
    authorization: String,
}

impl Ec2 {
    fn for_request(upstream: SocketAddr, req: &Request) -> Option<Ec2> {
        let auth = req.header("authorization")?;
        let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
        let [key, date, region, _service, _] = scope.split('/').collect::<Vec<_>>()[..] else {
            return None;
        };
        Some(Ec2 {
            upstream,
            // moto does not check signatures; the scope routes the request to EC2.
            authorization: format!(
                "AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/ec2/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        })
    }

    /// Sends `Action` with `params`; returns the HTTP status and the XML answer.
    async fn call(&self, action: &str, params: &[(String, String)]) -> io::Result<(u16, String)> {
        let mut body = format!("Action={action}&Version=2016-11-15");
        for (k, v) in params {
            body.push_str(&format!("&{}={}", url_encode(k), url_encode(v)));
        }
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded; \
             charset=utf-8\r\nAuthorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.upstream,
            self.authorization,
            body.len()
        );
        let msg = Message {
            head: head.into_bytes(),
            raw_body: body.clone().into_bytes(),
            body: body.into_bytes(),
            headers: Vec::new(),
            close_delimited: false,
        };
        let resp = forward(self.upstream, &msg, false).await?;
        Ok((
            status(&resp.head),
            String::from_utf8_lossy(&resp.body).into_owned(),
        ))
    }

    /// Like [`Ec2::call`], an error answer being an error.
    async fn ok(&self, action: &str, params: &[(String, String)]) -> io::Result<String> {
        match self.call(action, params).await? {
            (200, xml) => Ok(xml),
            (s, xml) => Err(io::Error::other(format!("EC2 {action}: {s} {xml}"))),
        }
    }

    /// The ids of the security groups tagged as cluster `name`'s.
    async fn groups_of(&self, name: &str) -> io::Result<Vec<String>> {
        let filters = [
            ("resource-type", "security-group"),
            ("key", CLUSTER_NAME_TAG),
            ("value", name),
        ];
        let mut params = Vec::new();
        for (i, (k, v)) in filters.iter().enumerate() {
            params.push((format!("Filter.{}.Name", i + 1), k.to_string()));
            params.push((format!("Filter.{}.Value.1", i + 1), v.to_string()));
        }
        let xml = self.ok("DescribeTags", &params).await?;
        Ok(all_tag_texts(&xml, "resourceId"))
    }

    /// The VPC of `subnets`, or the message EKS refuses the cluster with.
    async fn vpc_of(&self, subnets: &[String]) -> io::Result<Result<String, String>> {
        if subnets.is_empty() {
            return Ok(Err("Subnets are required".to_string()));
        }
        let params: Vec<(String, String)> = subnets
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("SubnetId.{}", i + 1), s.clone()))
            .collect();
        let (status, xml) = self.call("DescribeSubnets", &params).await?;
        if status != 200 {
            let code = tag_text(&xml, "Code").unwrap_or("");
            let message = tag_text(&xml, "Message").unwrap_or("");
            if status == 400 {
                // EKS's wording: the EC2 error, quoted.
                return Ok(Err(format!(
                    "{message} (Service: AmazonEC2; Status Code: 400; Error Code: {code})"
                )));
            }
            return Err(io::Error::other(format!(
                "EC2 DescribeSubnets: {status} {xml}"
            )));
        }
        let mut vpcs = all_tag_texts(&xml, "vpcId");
        vpcs.sort();
        vpcs.dedup();
        match &vpcs[..] {
            [vpc] => Ok(Ok(vpc.clone())),
            [] => Ok(Err(format!("Subnets {subnets:?} not found"))),
            _ => Ok(Err(format!(
                "Subnets specified must be in the same VPC: {subnets:?} are in {vpcs:?}"
            ))),
        }
    }

    /// Makes the cluster security group of cluster `name` in `vpc`, or finds the one a
    /// concurrent proxy made.
    async fn make_group(&self, name: &str, vpc: &str) -> io::Result<String> {
        let group = group_name(name);
        let owned = format!("kubernetes.io/cluster/{name}");
        let mut params = vec![
            ("GroupName".to_string(), group.clone()),
            (
                "GroupDescription".to_string(),
                "EKS created security group applied to ENI that is attached to EKS Control \
                 Plane master nodes, as well as any managed workloads."
                    .to_string(),
            ),
            ("VpcId".to_string(), vpc.to_string()),
            (
                "TagSpecification.1.ResourceType".to_string(),
                "security-group".to_string(),
            ),
        ];
        for (i, (k, v)) in [
            ("Name", group.as_str()),
            (CLUSTER_NAME_TAG, name),
            (owned.as_str(), "owned"),
        ]
        .iter()
        .enumerate()
        {
            params.push((
                format!("TagSpecification.1.Tag.{}.Key", i + 1),
                k.to_string(),
            ));
            params.push((
                format!("TagSpecification.1.Tag.{}.Value", i + 1),
                v.to_string(),
            ));
        }
        match self.call("CreateSecurityGroup", &params).await? {
            (200, xml) => tag_text(&xml, "groupId")
                .map(str::to_string)
                .ok_or_else(|| io::Error::other(format!("no groupId in {xml}"))),
            (_, xml) if xml.contains("InvalidGroup.Duplicate") => self
                .groups_of(name)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| io::Error::other(format!("`{group}` exists but is not tagged"))),
            (s, xml) => Err(io::Error::other(format!(
                "EC2 CreateSecurityGroup: {s} {xml}"
            ))),
        }
    }
}

/// `eks-cluster-sg-<cluster>-<10 digits>`, the digits fixed by the name.
fn group_name(cluster: &str) -> String {
    let mut h = std::hash::DefaultHasher::new();
    cluster.hash(&mut h);
    format!("eks-cluster-sg-{cluster}-{}", h.finish() % 10_000_000_000)
}

/// Before a CreateCluster is forwarded: EKS refuses subnets that do not exist or span
/// VPCs (moto takes any string). Returns the refusal to send instead, if any.
pub(crate) async fn check_create(upstream: SocketAddr, req: &Request) -> Option<Vec<u8>> {
    let ec2 = Ec2::for_request(upstream, req)?;
    let body: Value = serde_json::from_slice(&req.body).ok()?;
    let subnets: Vec<String> = body["resourcesVpcConfig"]["subnetIds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // An EC2 call that fails outright leaves the decision to moto.
    let message = ec2.vpc_of(&subnets).await.ok()?.err()?;
    let body = serde_json::json!({
        "message": message,
        "clusterName": body["name"],
    })
    .to_string();
    Some(
        format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             x-amzn-ErrorType: InvalidParameterException\r\n\
             x-amzn-RequestId: proxy-00000000-0000-0000-0000-000000000000\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// After moto answered `op` with `resp`: makes or deletes the cluster security group as
/// EKS would, and returns the answer's body with `clusterSecurityGroupId` filled in
/// (`None`: leave the answer as it is). Runs whatever then happens to the answer (lost,
/// delayed), as the cloud's own work does.
pub(crate) async fn complete(
    shared: &Shared,
    op: &str,
    req: &Request,
    resp: &Message,
) -> Option<Vec<u8>> {
    if !matches!(op, "CreateCluster" | "DescribeCluster" | "DeleteCluster")
        || status(&resp.head) != 200
    {
        return None;
    }
    let ec2 = Ec2::for_request(shared.upstream, req)?;
    let mut v: Value = serde_json::from_slice(&resp.body).ok()?;
    let cluster = v.get_mut("cluster")?;
    let name = cluster.get("name")?.as_str()?.to_string();
    let key = format!(
        "{} {}",
        cluster.get("arn").and_then(Value::as_str).unwrap_or(&name),
        cluster
            .get("createdAt")
            .map(Value::to_string)
            .unwrap_or_default()
    );
    if let Some(oidc) = cluster.pointer_mut("/identity/oidc")
        && let Some(issuer) = oidc.get("issuer").and_then(Value::as_str)
        && let Some((base, _)) = issuer.split_once("/id/")
    {
        let own = format!("{base}/id/{}", issuer_id(&key));
        oidc["issuer"] = Value::from(own);
    }
    let vpc_config = cluster.get_mut("resourcesVpcConfig")?.as_object_mut()?;
    let mut known = shared.clusters.0.lock().await;
    let group = if op == "DeleteCluster" {
        // moto removes the cluster at once; EKS deletes the group with it.
        known.remove(&key);
        let groups = ec2.groups_of(&name).await.ok()?;
        for g in &groups {
            let _ = ec2
                .ok("DeleteSecurityGroup", &[("GroupId".into(), g.clone())])
                .await;
        }
        groups.into_iter().next()?
    } else if let Some(g) = known.get(&key) {
        g.clone()
    } else {
        let g = match ec2.groups_of(&name).await.ok()?.into_iter().next() {
            Some(g) => g,
            None => {
                let subnets: Vec<String> = vpc_config
                    .get("subnetIds")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let vpc = ec2.vpc_of(&subnets).await.ok()?.ok()?;
                ec2.make_group(&name, &vpc).await.ok()?
            }
        };
        known.insert(key, g.clone());
        g
    };
    vpc_config.insert("clusterSecurityGroupId".into(), Value::from(group));
    serde_json::to_vec(&v).ok()
}

/// A cluster's own OIDC issuer id, as EKS shapes them (32 upper-case hex digits), the same
/// from every proxy (`DefaultHasher::new` has fixed keys).
fn issuer_id(cluster_key: &str) -> String {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        cluster_key.hash(&mut h);
        h.finish()
    };
    format!("{:016X}{:016X}", half(1), half(2))
}

fn status(head: &[u8]) -> u16 {
    String::from_utf8_lossy(head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The text of every `<tag>` in `xml`, in order.
fn all_tag_texts(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(len) = rest.find(&close) else {
            break;
        };
        out.push(rest[..len].to_string());
        rest = &rest[len..];
    }
    out
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_stable_and_look_like_eks() {
        let a = group_name("flyte");
        assert_eq!(a, group_name("flyte"));
        assert_ne!(a, group_name("flyte2"));
        let digits = a.strip_prefix("eks-cluster-sg-flyte-").unwrap();
        assert!(digits.chars().all(|c| c.is_ascii_digit()), "{a}");
    }

    #[test]
    fn xml_lists_and_encoding() {
        let xml = "<tagSet><item><resourceId>sg-1</resourceId></item>\
                   <item><resourceId>sg-2</resourceId></item></tagSet>";
        assert_eq!(all_tag_texts(xml, "resourceId"), ["sg-1", "sg-2"]);
        assert_eq!(
            url_encode("aws:eks:cluster-name"),
            "aws%3Aeks%3Acluster-name"
        );
        assert_eq!(status(b"HTTP/1.1 404 Not Found\r\n\r\n"), 404);
    }
}
