//! A loopback HTTP proxy in front of moto: a TEST DOUBLE that every path talking to moto
//! goes through (the integration tests, the AWS provider's own tests, and `scripts/demo`
//! through the `moto-proxy` binary), so the provider only ever sees answers shaped like
//! AWS's.
//!
//! It does three jobs:
//! - **What EKS does and moto does not** ([`eks`]): EKS makes a cluster security group
//!   in the cluster's VPC and reports it as `clusterSecurityGroupId`; moto does neither.
//!   The proxy makes the group through moto's EC2 API when a cluster is created, fills in
//!   the field in CreateCluster/DescribeCluster answers, and deletes the group with the
//!   cluster. Always on.
//! - **S3's regions** (`s3`): a request for a bucket signed for another region than the
//!   bucket's is refused with `301 PermanentRedirect`, as on AWS; moto serves it. Always on.
//! - **Faults**, by rules a test changes at any time ([`Proxy::rules`]); none by default.
//!
//! It listens on `127.0.0.1:0` in a background thread with its own tokio runtime and
//! forwards every request to moto, byte for byte: headers and body are passed through
//! untouched (SigV4 signs the `Host` header; the client signs for the proxy's host:port
//! and moto does not check signatures). Client connections are kept alive; each forwarded
//! request uses a fresh loopback connection to moto. It never connects anywhere but
//! loopback.
//!
//! The rules can:
//! - delay chosen operations (by AWS operation name, see [`operation`]), half before
//!   forwarding and half after (so a kill can land on either side of the call), or hold
//!   them before forwarding; a request whose client died meanwhile is still forwarded, as
//!   AWS carries out a call whose caller is gone ([`Proxy::in_flight`]);
//! - answer with the service's throttling error or a 500 instead of forwarding, with a
//!   probability, from a seeded generator;
//! - lose the response of a forwarded call (it took effect; the client sees the connection
//!   closed, or a 500), with a probability;
//! - rewrite describe answers so an RDS instance walks through `creating → backing-up →
//!   available`, or an EKS node group goes `CREATING → CREATE_FAILED` with a health issue.
//!
//! Requests are counted by operation, with the faults injected ([`Proxy::take_stats`]);
//! the proxy's own EC2 calls for the cluster security group are not counted.

pub mod eks;
pub mod moto;
mod s3;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A small seeded generator (splitmix64): fault injection is reproducible per seed (up to
/// the order in which concurrent requests arrive).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A fraction in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A whole number in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }
}

/// Make the RDS instance whose identifier starts with `prefix` walk through `statuses`:
/// its CreateDBInstance answer says `statuses[0]`, and the n-th DescribeDBInstances that
/// shows it (once created through the proxy) says `statuses[n]`; after the list, moto's
/// own status shows. Only an instance moto calls `available` is rewritten.
#[derive(Clone, Debug)]
pub struct RdsWalk {
    /// The instance identifier's prefix.
    pub prefix: String,
    /// The statuses to show, in order.
    pub statuses: Vec<String>,
    created: bool,
    served: usize,
}

impl RdsWalk {
    /// A walk through `statuses` for the instance whose identifier starts with `prefix`.
    pub fn new(prefix: &str, statuses: &[&str]) -> RdsWalk {
        RdsWalk {
            prefix: prefix.to_string(),
            statuses: statuses.iter().map(|s| s.to_string()).collect(),
            created: false,
            served: 0,
        }
    }
}

/// Make the EKS node group `name` fail: CreateNodegroup answers `CREATING`, the first
/// `creating_describes` DescribeNodegroup answers say `CREATING`, every later one
/// `CREATE_FAILED` with the health issue `NodeCreationFailure: Unhealthy nodes in the
/// kubernetes cluster`.
#[derive(Clone, Debug)]
pub struct NodeGroupFailure {
    /// The node group's name.
    pub name: String,
    /// DescribeNodegroup answers that still say `CREATING`.
    pub creating_describes: u32,
    served: u32,
}

impl NodeGroupFailure {
    /// Node group `name` fails after `creating_describes` describes.
    pub fn new(name: &str, creating_describes: u32) -> NodeGroupFailure {
        NodeGroupFailure {
            name: name.to_string(),
            creating_describes,
            served: 0,
        }
    }
}

/// What the proxy does to traffic. All probabilities are per request.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Operations delayed, with the delay range in ms (split before/after forwarding).
    pub delays: BTreeMap<String, (u64, u64)>,
    /// Operations held this many ms before they are forwarded (on top of `delays`).
    pub hold: BTreeMap<String, u64>,
    /// Chance of a throttling error instead of forwarding.
    pub throttle: f64,
    /// Chance of a 500 instead of forwarding.
    pub server_error: f64,
    /// Chance that a forwarded call's response is lost (the call took effect).
    pub lose_response: f64,
    /// The generator behind every chance and delay.
    pub rng: Rng,
    /// RDS statuses to walk through, if any.
    pub rds_walk: Option<RdsWalk>,
    /// A node group to fail, if any.
    pub node_group_failure: Option<NodeGroupFailure>,
    /// S3 operations answered `501 NotImplemented`, as an S3-compatible store without
    /// that API answers them (MinIO's public-access block, for one).
    pub unsupported: std::collections::BTreeSet<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            delays: BTreeMap::new(),
            hold: BTreeMap::new(),
            throttle: 0.0,
            server_error: 0.0,
            lose_response: 0.0,
            rng: Rng::new(0),
            rds_walk: None,
            node_group_failure: None,
            unsupported: std::collections::BTreeSet::new(),
        }
    }
}

impl Rules {
    /// No faults, no delays, no rewrites (a plain pass-through).
    pub fn clear(&mut self) {
        *self = Rules {
            rng: self.rng.clone(),
            ..Rules::default()
        };
    }
}

/// Counts for one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Requests received.
    pub calls: u64,
    /// Answered with an injected throttling error.
    pub throttled: u64,
    /// Answered with an injected 500.
    pub server_errors: u64,
    /// Forwarded, then the response was lost.
    pub lost: u64,
    /// Delayed.
    pub delayed: u64,
    /// Answered with a rewritten body.
    pub rewritten: u64,
}

impl OpStats {
    fn add(&mut self, o: &OpStats) {
        self.calls += o.calls;
        self.throttled += o.throttled;
        self.server_errors += o.server_errors;
        self.lost += o.lost;
        self.delayed += o.delayed;
        self.rewritten += o.rewritten;
    }

    /// Faults injected (throttling, 500s, lost responses).
    pub fn faults(&self) -> u64 {
        self.throttled + self.server_errors + self.lost
    }
}

/// Requests by operation name.
#[derive(Clone, Debug, Default)]
pub struct Stats(pub BTreeMap<String, OpStats>);

impl Stats {
    /// All operations together.
    pub fn total(&self) -> OpStats {
        let mut t = OpStats::default();
        for s in self.0.values() {
            t.add(s);
        }
        t
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.total();
        writeln!(
            f,
            "{} calls; injected {} throttled, {} 5xx, {} lost responses; {} delayed; {} rewritten",
            t.calls, t.throttled, t.server_errors, t.lost, t.delayed, t.rewritten
        )?;
        for (op, s) in &self.0 {
            write!(f, "  {:>4}  {op}", s.calls)?;
            if s.faults() > 0 {
                write!(
                    f,
                    "  (throttled {}, 5xx {}, lost {})",
                    s.throttled, s.server_errors, s.lost
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

struct Shared {
    upstream: SocketAddr,
    /// Requests received and not yet answered (or dropped).
    in_flight: AtomicUsize,
    rules: Arc<Mutex<Rules>>,
    stats: Mutex<Stats>,
    /// The cluster security groups this proxy has seen.
    clusters: eks::ClusterGroups,
    /// The region of each bucket created through this proxy.
    buckets: s3::BucketRegions,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; stops (and closes every connection) when dropped.
pub struct Proxy {
    url: String,
    rules: Arc<Mutex<Rules>>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A pass-through proxy in front of `upstream` (an `http://127.0.0.1:port` URL), on a
    /// free loopback port.
    pub fn start(upstream: &str) -> Proxy {
        Proxy::start_on(upstream, 0).expect("bind the proxy")
    }

    /// The same on loopback port `port` (0: any free one).
    pub fn start_on(upstream: &str, port: u16) -> io::Result<Proxy> {
        let addr: SocketAddr = upstream
            .strip_prefix("http://")
            .and_then(|a| a.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("upstream `{upstream}` is not http://<ip>:<port>"));
        assert!(
            addr.ip().is_loopback(),
            "the proxy only forwards to loopback, not {addr}"
        );
        let rules = Arc::new(Mutex::new(Rules::default()));
        let shared = Arc::new(Shared {
            upstream: addr,
            in_flight: AtomicUsize::new(0),
            rules: rules.clone(),
            stats: Mutex::new(Stats::default()),
            clusters: eks::ClusterGroups::default(),
            buckets: s3::BucketRegions::default(),
        });
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("aws-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let accept = async {
                        loop {
                            if let Ok((conn, _)) = listener.accept().await {
                                tokio::spawn(connection(conn, s.clone()));
                            }
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels every connection task.
            })
            .expect("start the proxy thread");
        Ok(Proxy {
            url,
            rules,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The proxy's endpoint, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The rules, to change at any time.
    pub fn rules(&self) -> MutexGuard<'_, Rules> {
        lock(&self.rules)
    }

    /// Requests received and not yet answered: a request whose client died is still
    /// forwarded (as AWS still carries out a call whose caller is gone).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The counts so far (since the last [`Proxy::take_stats`]).
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// The counts since the last call (or the start), which are reset.
    pub fn take_stats(&self) -> Stats {
        std::mem::take(&mut *lock(&self.shared.stats))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request as the proxy sees it (the body decoded from any chunked framing).
#[derive(Clone, Debug)]
pub struct Request {
    /// The HTTP method.
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from any chunked framing.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (the first, by case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string, without `?`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The signing service from the SigV4 credential scope (`.../us-east-1/s3/aws4_request`).
    pub fn service(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
        scope.split('/').nth(3)
    }

    /// A form (Query API) or query-string parameter, URL-decoded.
    pub fn param(&self, key: &str) -> Option<String> {
        let form = std::str::from_utf8(&self.body).unwrap_or("");
        let form = if self
            .header("content-type")
            .is_some_and(|c| c.contains("x-www-form-urlencoded"))
        {
            form
        } else {
            ""
        };
        [form, self.query()].iter().find_map(|s| {
            s.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (url_decode(k) == key).then(|| url_decode(v))
            })
        })
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The AWS operation a request calls: the `Action` parameter for Query APIs (EC2, RDS,
/// IAM, STS), the `X-Amz-Target` header for JSON APIs, and method + path for REST APIs
/// (S3 by bucket path and sub-resource, EKS by its resource paths).
pub fn operation(req: &Request) -> String {
    if let Some(t) = req.header("x-amz-target") {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    if let Some(a) = req.param("Action") {
        return a;
    }
    let segs: Vec<&str> = req.path().split('/').filter(|s| !s.is_empty()).collect();
    let m = req.method.as_str();
    match req.service() {
        Some("eks") => eks_operation(m, &segs),
        Some("s3") => s3_operation(m, &segs, req.query()),
        _ => format!("{m} {}", req.path()),
    }
}

fn eks_operation(m: &str, segs: &[&str]) -> String {
    let op = match (m, segs) {
        ("POST", ["clusters"]) => "CreateCluster",
        ("GET", ["clusters"]) => "ListClusters",
        ("GET", ["clusters", _]) => "DescribeCluster",
        ("DELETE", ["clusters", _]) => "DeleteCluster",
        ("POST", ["clusters", _, "update-config"]) => "UpdateClusterConfig",
        ("POST", ["clusters", _, "updates"]) => "UpdateClusterVersion",
        ("GET", ["clusters", _, "updates", _]) => "DescribeUpdate",
        ("POST", ["clusters", _, "node-groups"]) => "CreateNodegroup",
        ("GET", ["clusters", _, "node-groups"]) => "ListNodegroups",
        ("GET", ["clusters", _, "node-groups", _]) => "DescribeNodegroup",
        ("DELETE", ["clusters", _, "node-groups", _]) => "DeleteNodegroup",
        ("POST", ["clusters", _, "node-groups", _, "update-config"]) => "UpdateNodegroupConfig",
        ("POST", ["clusters", _, "node-groups", _, "update-version"]) => "UpdateNodegroupVersion",
        ("POST", ["tags", ..]) => "TagResource",
        ("DELETE", ["tags", ..]) => "UntagResource",
        ("GET", ["tags", ..]) => "ListTagsForResource",
        _ => return format!("eks {m} /{}", segs.join("/")),
    };
    op.to_string()
}

/// S3 sub-resources and the name of their operation (`Put`/`Get`/`Delete` + this).
const S3_SUBRESOURCES: &[(&str, &str)] = &[
    ("tagging", "BucketTagging"),
    ("policy", "BucketPolicy"),
    ("versioning", "BucketVersioning"),
    ("encryption", "BucketEncryption"),
    ("publicAccessBlock", "PublicAccessBlock"),
    ("lifecycle", "BucketLifecycleConfiguration"),
    ("ownershipControls", "BucketOwnershipControls"),
    ("location", "BucketLocation"),
    ("acl", "BucketAcl"),
    ("cors", "BucketCors"),
    ("logging", "BucketLogging"),
];

fn s3_operation(m: &str, segs: &[&str], query: &str) -> String {
    let keys: Vec<&str> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split('=').next().unwrap_or(kv))
        .collect();
    let has = |k: &str| keys.contains(&k);
    let verb = match m {
        "PUT" => "Put",
        "GET" => "Get",
        "DELETE" => "Delete",
        "HEAD" => "Head",
        "POST" => "Post",
        other => other,
    };
    match segs {
        [] if m == "GET" => "ListBuckets".to_string(),
        [_] => {
            if let Some((_, name)) = S3_SUBRESOURCES.iter().find(|(k, _)| has(k)) {
                if *name == "BucketLifecycleConfiguration" && m == "DELETE" {
                    return "DeleteBucketLifecycle".to_string();
                }
                return format!("{verb}{name}");
            }
            match m {
                "PUT" => "CreateBucket".to_string(),
                "DELETE" => "DeleteBucket".to_string(),
                "HEAD" => "HeadBucket".to_string(),
                "POST" if has("delete") => "DeleteObjects".to_string(),
                "GET" if has("versions") => "ListObjectVersions".to_string(),
                "GET" if has("list-type") => "ListObjectsV2".to_string(),
                "GET" if has("uploads") => "ListMultipartUploads".to_string(),
                "GET" => "ListObjects".to_string(),
                _ => format!("s3 {m} bucket"),
            }
        }
        [_, ..] => format!("{verb}Object"),
        _ => format!("s3 {m} /"),
    }
}

/// S3's answer for an API a store does not implement (MinIO's, for one).
fn not_implemented(op: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NotImplemented</Code><Message>\
         A header you provided implies functionality that is not implemented ({op})</Message>\
         <RequestId>proxy-unsupported</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 501 Not Implemented\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The error body of an injected fault, in the service's protocol.
fn fault_response(req: &Request, throttle: bool) -> Vec<u8> {
    let id = "proxy-00000000-0000-0000-0000-000000000000";
    let service = req.service().unwrap_or("");
    let (status, ctype, extra, body): (u16, &str, String, String) = match (service, throttle) {
        ("ec2", true) => (
            // EC2 answers throttling with 503 and this code.
            503,
            "text/xml",
            String::new(),
            format!(
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request \
                 limit exceeded.</Message></Error></Errors><RequestID>{id}</RequestID></Response>"
            ),
        ),
        ("ec2", false) => (
            500,
            "text/xml",
            String::new(),
            format!(
                "<Response><Errors><Error><Code>InternalError</Code><Message>An internal \
                 error has occurred</Message></Error></Errors><RequestID>{id}</RequestID></Response>"
            ),
        ),
        ("s3", true) => (
            503,
            "application/xml",
            String::new(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>\
                 Please reduce your request rate.</Message><RequestId>{id}</RequestId></Error>"
            ),
        ),
        ("s3", false) => (
            500,
            "application/xml",
            String::new(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
                 <Message>We encountered an internal error. Please try again.</Message>\
                 <RequestId>{id}</RequestId></Error>"
            ),
        ),
        ("eks", t) => {
            let (status, code, msg) = if t {
                (429, "ThrottlingException", "Rate exceeded")
            } else {
                (500, "ServerException", "An internal error occurred")
            };
            (
                status,
                "application/json",
                format!("x-amzn-ErrorType: {code}\r\n"),
                format!("{{\"__type\":\"{code}\",\"message\":\"{msg}\"}}"),
            )
        }
        (_, t) => {
            // Query APIs (RDS, IAM, STS).
            let (status, kind, code, msg) = if t {
                (400, "Sender", "Throttling", "Rate exceeded")
            } else {
                (
                    500,
                    "Receiver",
                    "InternalFailure",
                    "An internal error occurred",
                )
            };
            (
                status,
                "text/xml",
                String::new(),
                format!(
                    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{msg}\
                     </Message></Error><RequestId>{id}</RequestId></ErrorResponse>"
                ),
            )
        }
    };
    let reason = match status {
        400 => "Bad Request",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    // A HEAD answer has no body (the client would read it as the next response).
    let body = if req.method == "HEAD" {
        String::new()
    } else {
        body
    };
    let len = if req.method == "HEAD" { 0 } else { body.len() };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\
         x-amzn-RequestId: {id}\r\n{extra}\r\n{body}"
    )
    .into_bytes()
}

/// What to do with one request, decided up front under the rules' lock.
#[derive(Debug, Default)]
struct Decision {
    delay_before: Duration,
    delay_after: Duration,
    /// `Some(throttle?)`: answer with a fault instead of forwarding.
    inject: Option<bool>,
    /// Lose the response: `Some(true)` closes the connection, `Some(false)` answers 500.
    lose: Option<bool>,
    /// Answer `501 NotImplemented` (an API the store lacks).
    unsupported: bool,
}

impl Shared {
    fn decide(&self, op: &str) -> Decision {
        let mut rules = lock(&self.rules);
        let mut d = Decision::default();
        if let Some(&(lo, hi)) = rules.delays.get(op) {
            let ms = rules.rng.range(lo, hi);
            d.delay_before = Duration::from_millis(ms / 2);
            d.delay_after = Duration::from_millis(ms - ms / 2);
        }
        if let Some(&ms) = rules.hold.get(op) {
            d.delay_before += Duration::from_millis(ms);
        }
        d.unsupported = rules.unsupported.contains(op);
        let (t, e, l) = (rules.throttle, rules.server_error, rules.lose_response);
        if rules.rng.chance(t) {
            d.inject = Some(true);
        } else if rules.rng.chance(e) {
            d.inject = Some(false);
        } else if rules.rng.chance(l) {
            d.lose = Some(rules.rng.chance(0.5));
        }
        let mut stats = lock(&self.stats);
        let s = stats.0.entry(op.to_string()).or_default();
        s.calls += 1;
        s.delayed += u64::from(!(d.delay_before + d.delay_after).is_zero());
        match d.inject {
            Some(true) => s.throttled += 1,
            Some(false) => s.server_errors += 1,
            None => s.lost += u64::from(d.lose.is_some()),
        }
        d
    }

    fn count_rewrite(&self, op: &str) {
        lock(&self.stats)
            .0
            .entry(op.to_string())
            .or_default()
            .rewritten += 1;
    }
}

/// A message's head and body as received, and the body decoded.
struct Message {
    head: Vec<u8>,
    raw_body: Vec<u8>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    /// The body ended with the connection (no length, no chunks).
    close_delimited: bool,
}

async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head == b"\r\n" || head == b"\n" {
            // Tolerated blank lines between messages.
            head.clear();
            continue;
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
        if head.len() > 1 << 20 {
            return Err(io::Error::other("head too large"));
        }
    }
}

fn parsed_headers(hs: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    hs.iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Reads a body framed by `headers` (chunked, a length, or, if `to_eof`, the connection's
/// end), returning (raw, decoded, close-delimited).
async fn read_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<(Vec<u8>, Vec<u8>, bool)> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut raw = Vec::new();
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let size = text.trim().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size `{size}`")))?;
            if size == 0 {
                loop {
                    let mut t = Vec::new();
                    let n = r.read_until(b'\n', &mut t).await?;
                    raw.extend_from_slice(&t);
                    if n == 0 || t == b"\r\n" || t == b"\n" {
                        return Ok((raw, data, false));
                    }
                }
            }
            let mut buf = vec![0; size + 2];
            r.read_exact(&mut buf).await?;
            raw.extend_from_slice(&buf);
            data.extend_from_slice(&buf[..size]);
        }
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| io::Error::other("bad content-length"))?;
        let mut buf = vec![0; len];
        r.read_exact(&mut buf).await?;
        return Ok((buf.clone(), buf, false));
    }
    if to_eof {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).await?;
        return Ok((buf.clone(), buf, true));
    }
    Ok((Vec::new(), Vec::new(), false))
}

async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
) -> io::Result<Option<(Request, Message)>> {
    let Some(head) = read_head(r).await? else {
        return Ok(None);
    };
    let mut hs = [httparse::EMPTY_HEADER; 128];
    let mut p = httparse::Request::new(&mut hs);
    if !p.parse(&head).map_err(io::Error::other)?.is_complete() {
        return Err(io::Error::other("incomplete request head"));
    }
    let method = p.method.unwrap_or("").to_string();
    let target = p.path.unwrap_or("").to_string();
    let headers = parsed_headers(p.headers);
    if header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let (raw_body, body, _) = read_body(r, &headers, false).await?;
    let req = Request {
        method,
        target,
        headers: headers.clone(),
        body: body.clone(),
    };
    Ok(Some((
        req,
        Message {
            head,
            raw_body,
            body,
            headers,
            close_delimited: false,
        },
    )))
}

/// Sends `msg` to moto on a fresh connection and reads the final answer.
async fn forward(upstream: SocketAddr, msg: &Message, head_only: bool) -> io::Result<Message> {
    let conn = TcpStream::connect(upstream).await?;
    let (r, mut w) = conn.into_split();
    w.write_all(&msg.head).await?;
    w.write_all(&msg.raw_body).await?;
    w.flush().await?;
    let mut r = BufReader::new(r);
    loop {
        let head = read_head(&mut r)
            .await?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut hs = [httparse::EMPTY_HEADER; 128];
        let mut p = httparse::Response::new(&mut hs);
        if !p.parse(&head).map_err(io::Error::other)?.is_complete() {
            return Err(io::Error::other("incomplete response head"));
        }
        let status = p.code.unwrap_or(0);
        let headers = parsed_headers(p.headers);
        if (100..200).contains(&status) {
            // Interim answers (100 Continue): the client had its own.
            continue;
        }
        let (raw_body, body, close_delimited) = if head_only || status == 204 || status == 304 {
            (Vec::new(), Vec::new(), false)
        } else {
            read_body(&mut r, &headers, true).await?
        };
        return Ok(Message {
            head,
            raw_body,
            body,
            headers,
            close_delimited,
        });
    }
}

/// The response with `body` instead of its own (length framing, other headers kept).
fn with_body(resp: &Message, body: Vec<u8>) -> Message {
    let text = String::from_utf8_lossy(&resp.head);
    let mut lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    lines.retain(|l| {
        let name = l.split(':').next().unwrap_or("").trim();
        !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
    });
    let mut head = lines.join("\r\n");
    head.push_str(&format!("\r\nContent-Length: {}\r\n\r\n", body.len()));
    Message {
        head: head.into_bytes(),
        raw_body: body.clone(),
        body,
        headers: resp.headers.clone(),
        close_delimited: false,
    }
}

/// Replaces the text of every `<tag>` in `xml` for which `f` (given the current text)
/// returns a replacement.
fn replace_tag(xml: &str, tag: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let start = i + open.len();
        let Some(len) = rest[start..].find(&close) else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = &rest[start..start + len];
        out.push_str(&f(inner).unwrap_or_else(|| inner.to_string()));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

fn tag_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

/// Applies the rewrite rules (d) to a successful answer; `None` leaves it untouched.
fn rewrite(shared: &Shared, op: &str, resp: &Message) -> Option<Vec<u8>> {
    let status_ok =
        resp.head.starts_with(b"HTTP/1.1 200") || resp.head.starts_with(b"HTTP/1.0 200");
    if !status_ok {
        return None;
    }
    let mut rules = lock(&shared.rules);
    match op {
        "CreateDBInstance" | "DescribeDBInstances" => {
            let walk = rules.rds_walk.as_mut()?;
            let body = std::str::from_utf8(&resp.body).ok()?;
            let mut changed = false;
            let out = replace_tag(body, "DBInstance", |inst| {
                let id = tag_text(inst, "DBInstanceIdentifier")?;
                if !id.starts_with(&walk.prefix)
                    || tag_text(inst, "DBInstanceStatus") != Some("available")
                {
                    return None;
                }
                let status = if op == "CreateDBInstance" {
                    walk.created = true;
                    walk.served = 0;
                    walk.statuses.first()?.clone()
                } else {
                    if !walk.created || walk.served >= walk.statuses.len() {
                        return None;
                    }
                    walk.served += 1;
                    walk.statuses[walk.served - 1].clone()
                };
                changed = true;
                Some(replace_tag(inst, "DBInstanceStatus", |_| {
                    Some(status.clone())
                }))
            });
            changed.then(|| out.into_bytes())
        }
        "CreateNodegroup" | "DescribeNodegroup" => {
            let fail = rules.node_group_failure.as_mut()?;
            let mut v: Value = serde_json::from_slice(&resp.body).ok()?;
            let ng = v.get_mut("nodegroup")?;
            if ng.get("nodegroupName")?.as_str()? != fail.name {
                return None;
            }
            let creating = op == "CreateNodegroup" || fail.served < fail.creating_describes;
            if op == "DescribeNodegroup" {
                fail.served += 1;
            }
            if creating {
                ng["status"] = "CREATING".into();
            } else {
                ng["status"] = "CREATE_FAILED".into();
                ng["health"] = serde_json::json!({"issues": [{
                    "code": "NodeCreationFailure",
                    "message": "Unhealthy nodes in the kubernetes cluster",
                    "resourceIds": ["i-0123456789abcdef0"],
                }]});
            }
            serde_json::to_vec(&v).ok()
        }
        _ => None,
    }
}

/// Counts a request in flight while alive.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> InFlight<'a> {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one client connection: requests in order, kept alive until either side closes.
async fn connection(conn: TcpStream, shared: Arc<Shared>) {
    let _ = conn.set_nodelay(true);
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let (req, msg) = match read_request(&mut r, &mut w).await {
            Ok(Some(x)) => x,
            _ => return,
        };
        let op = operation(&req);
        let _in_flight = InFlight::new(&shared);
        let d = shared.decide(&op);
        if !d.delay_before.is_zero() {
            tokio::time::sleep(d.delay_before).await;
        }
        let client_close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if d.unsupported {
            if w.write_all(&not_implemented(&op)).await.is_err() || client_close {
                return;
            }
            continue;
        }
        if let Some(throttle) = d.inject {
            if w.write_all(&fault_response(&req, throttle)).await.is_err() || client_close {
                return;
            }
            continue;
        }
        if op == "CreateCluster"
            && let Some(refusal) = eks::check_create(shared.upstream, &req).await
        {
            if w.write_all(&refusal).await.is_err() || client_close {
                return;
            }
            continue;
        }
        if let Some(redirect) = shared.buckets.redirect(&op, &req) {
            if w.write_all(&redirect).await.is_err() || client_close {
                return;
            }
            continue;
        }
        let resp = match forward(shared.upstream, &msg, req.method == "HEAD").await {
            Ok(r) => r,
            Err(_) => {
                // moto unreachable: the client sees a closed connection.
                return;
            }
        };
        shared.buckets.created(&op, &req, &resp);
        shared.buckets.deleted(&op, &req, &resp);
        // The cloud's side of the call, done whatever then happens to its answer.
        let resp = match eks::complete(&shared, &op, &req, &resp).await {
            Some(body) => with_body(&resp, body),
            None => resp,
        };
        if !d.delay_after.is_zero() {
            tokio::time::sleep(d.delay_after).await;
        }
        match d.lose {
            // The call took effect; its answer never arrives.
            Some(true) => return,
            Some(false) => {
                let _ = w.write_all(&fault_response(&req, false)).await;
                if client_close {
                    return;
                }
                continue;
            }
            None => {}
        }
        let resp = match rewrite(&shared, &op, &resp) {
            Some(body) => {
                shared.count_rewrite(&op);
                with_body(&resp, body)
            }
            None => resp,
        };
        if w.write_all(&resp.head).await.is_err() || w.write_all(&resp.raw_body).await.is_err() {
            return;
        }
        let server_close =
            header(&resp.headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if client_close || server_close || resp.close_delimited {
            let _ = w.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, service: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: vec![
                (
                    "Authorization".into(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=x"
                    ),
                ),
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn operations_are_named_like_aws() {
        let cases = [
            (
                req(
                    "POST",
                    "/",
                    "rds",
                    "Action=CreateDBInstance&Version=2014-10-31",
                ),
                "CreateDBInstance",
            ),
            (
                req("POST", "/", "ec2", "Action=CreateNatGateway&X=1"),
                "CreateNatGateway",
            ),
            (req("POST", "/clusters", "eks", ""), "CreateCluster"),
            (
                req("POST", "/clusters/c/node-groups", "eks", ""),
                "CreateNodegroup",
            ),
            (
                req("GET", "/clusters/c/node-groups/ng", "eks", ""),
                "DescribeNodegroup",
            ),
            (req("PUT", "/b", "s3", ""), "CreateBucket"),
            (req("PUT", "/b?tagging", "s3", ""), "PutBucketTagging"),
            (req("GET", "/b?policy", "s3", ""), "GetBucketPolicy"),
            (req("HEAD", "/b", "s3", ""), "HeadBucket"),
            (req("GET", "/", "s3", ""), "ListBuckets"),
            (req("GET", "/b?list-type=2", "s3", ""), "ListObjectsV2"),
        ];
        for (r, want) in cases {
            assert_eq!(operation(&r), want, "{} {}", r.method, r.target);
        }
        let mut j = req("POST", "/", "kms", "{}");
        j.headers
            .push(("X-Amz-Target".into(), "TrentService.CreateKey".into()));
        assert_eq!(operation(&j), "CreateKey");
        assert_eq!(
            req("POST", "/", "rds", "A=1&DBInstanceIdentifier=x%2Dy").param("DBInstanceIdentifier"),
            Some("x-y".to_string())
        );
    }

    #[test]
    fn rds_statuses_are_rewritten_in_order() {
        let xml = "<DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>d-db\
                   </DBInstanceIdentifier><DBInstanceStatus>available</DBInstanceStatus>\
                   </DBInstance></DBInstances></DescribeDBInstancesResult>";
        let got = replace_tag(xml, "DBInstance", |inst| {
            Some(replace_tag(inst, "DBInstanceStatus", |_| {
                Some("creating".into())
            }))
        });
        assert!(
            got.contains("<DBInstanceStatus>creating</DBInstanceStatus>"),
            "{got}"
        );
        assert!(got.contains("<DBInstances>"), "{got}");
    }
}
