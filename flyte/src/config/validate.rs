//! Rules beyond types, checked after deserialization, each error located at the
//! value that breaks the rule.

use std::collections::HashSet;
use std::path::Path;

use super::error::{ConfigError, ConfigErrorKind};
use super::model::{
    AwsConfig, AzureConfig, AzurermState, Chart, Cloud, ClusterConfig, DatabaseConfig,
    EncryptionConfig, FlyteConfig, GcpConfig, GcsState, LeaseTtl, NodeCounts, ObjectStore, PgTls,
    S3State, SandboxConfig, SandboxPostgres, StateBackend, StateConfig, StorageConfig, Style,
};
use super::{Config, Ipv4Cidr};

type Result<T = ()> = std::result::Result<T, ConfigError>;

/// Kubernetes namespace names (DNS labels) are at most this long.
const MAX_LABEL: usize = 63;
/// Helm release names are at most this long.
const MAX_RELEASE: usize = 53;
/// Data-plane names are at most this long (AKS node pool and derived names stay short).
const MAX_PLANE: usize = 10;
/// Secondary ranges Google allows on one subnetwork.
const MAX_SECONDARY_RANGES: usize = 30;
/// `<deployment>-<plane>` is at most this long: GKE's limit on cluster names.
const MAX_PLANE_CLUSTER: usize = 40;
/// An IPv4 address, or a range of /30 or larger, outside the private, shared, loopback
/// and link-local ranges: what a storage account's IP rules accept.
fn public_ipv4_range(text: &str) -> bool {
    let cidr = if text.contains('/') {
        match text.parse::<Ipv4Cidr>() {
            Ok(c) if c.prefix() <= 30 && c.prefix() >= 8 => c,
            _ => return false,
        }
    } else {
        match text.parse::<std::net::Ipv4Addr>() {
            Ok(a) => Ipv4Cidr::known(a.octets(), 32),
            Err(_) => return false,
        }
    };
    let reserved = [
        Ipv4Cidr::known([0, 0, 0, 0], 8),
        Ipv4Cidr::known([10, 0, 0, 0], 8),
        Ipv4Cidr::known([100, 64, 0, 0], 10),
        Ipv4Cidr::known([127, 0, 0, 0], 8),
        Ipv4Cidr::known([169, 254, 0, 0], 16),
        Ipv4Cidr::known([172, 16, 0, 0], 12),
        Ipv4Cidr::known([192, 168, 0, 0], 16),
        Ipv4Cidr::known([224, 0, 0, 0], 3),
    ];
    !reserved.iter().any(|r| r.overlaps(&cidr))
}

/// The storage sizes (GiB) Azure Database for PostgreSQL flexible server offers.
pub const AZURE_STORAGE_SIZES_GB: [u32; 10] =
    [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16_384];

/// Federated identity credentials Azure allows per managed identity.
const AZURE_MAX_FEDERATED: usize = 20;

pub(crate) fn validate(config: &Config) -> Result {
    let v = Checker { config };
    v.name()?;
    v.style()?;
    config.select_cloud(None)?;
    if let Some(aws) = &config.aws {
        v.aws(aws)?;
    }
    if let Some(gcp) = &config.gcp {
        v.gcp(gcp)?;
    }
    if let Some(azure) = &config.azure {
        v.azure(azure)?;
    }
    if let Some(sandbox) = &config.sandbox {
        v.sandbox(sandbox)?;
    }
    v.database(&config.database)?;
    v.storage(&config.storage)?;
    v.cluster(&config.cluster)?;
    v.flyte(&config.flyte)?;
    v.state(&config.state)?;
    Ok(())
}

struct Checker<'a> {
    config: &'a Config,
}

impl Checker<'_> {
    /// An error at the value of `path`.
    fn fail(&self, path: &str, kind: ConfigErrorKind, message: String) -> ConfigError {
        ConfigError::at(
            self.config.path(),
            self.config.origin.map.value(path),
            kind,
            message,
        )
    }

    fn invalid(&self, path: &str, message: String) -> Result {
        Err(self.fail(path, ConfigErrorKind::Invalid, message))
    }

    /// Fails unless `ok`, with "`path` is `value`, expected …".
    fn expect(&self, ok: bool, path: &str, value: &str, expected: &str) -> Result {
        if ok {
            Ok(())
        } else {
            self.invalid(path, format!("`{path}` is `{value}`, expected {expected}"))
        }
    }

    fn name(&self) -> Result {
        let name = &self.config.name;
        let ok = (3..=30).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        self.expect(
            ok,
            "name",
            name,
            "3 to 30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (pattern `^[a-z][a-z0-9-]{1,28}[a-z0-9]$`)",
        )
    }

    fn style(&self) -> Result {
        let c = self.config;
        match c.style {
            Style::SingleCluster => {
                self.not_sandbox()?;
                if !c.data_planes.is_empty() {
                    return self.invalid(
                        "data_planes",
                        "`data_planes` is set but `style` is `single-cluster`, expected `style: multi-cluster`".into(),
                    );
                }
                if c.control_plane.is_some() {
                    return self.invalid(
                        "control_plane",
                        "`control_plane` is set but `style` is `single-cluster`, expected `style: multi-cluster`".into(),
                    );
                }
                Ok(())
            }
            Style::MultiCluster => {
                self.not_sandbox()?;
                self.multi_cluster()
            }
            Style::Sandbox => self.sandbox_style(),
        }
    }

    /// A style other than `sandbox`: neither `cloud: sandbox` nor a `sandbox` section.
    fn not_sandbox(&self) -> Result {
        let c = self.config;
        let style = c.style.as_str();
        if c.cloud == Cloud::Sandbox {
            return self.invalid(
                "cloud",
                format!(
                    "`cloud` is `sandbox` but `style` is `{style}`, expected `style: sandbox` \
                     (with a `sandbox:` section) for the sandbox, or a cloud: `aws`, `gcp` or \
                     `azure`"
                ),
            );
        }
        if c.sandbox.is_some() {
            return self.invalid(
                "sandbox",
                format!(
                    "`sandbox` is set but `style` is `{style}`, expected `style: sandbox` or no \
                     `sandbox` section"
                ),
            );
        }
        Ok(())
    }

    /// `style: sandbox`: no cloud (`cloud: sandbox` or none), no cloud section, one
    /// cluster, and a `sandbox` section.
    fn sandbox_style(&self) -> Result {
        let c = self.config;
        if c.cloud != Cloud::Sandbox {
            return self.invalid(
                "cloud",
                format!(
                    "`cloud` is `{}` but `style` is `sandbox`, which runs on no cloud, expected \
                     `cloud: sandbox` or no `cloud`",
                    c.cloud
                ),
            );
        }
        // A file with `style: sandbox` can never select a cloud: its section would be
        // dead text that looks in force.
        if let Some(cloud) = Cloud::ALL.into_iter().find(|&cloud| c.has_section(cloud)) {
            return self.invalid(
                cloud.as_str(),
                format!(
                    "`{cloud}` is set but `style: sandbox` runs on no cloud, expected no \
                     `{cloud}` section (the sandbox's servers are in `sandbox`)"
                ),
            );
        }
        for (key, set) in [
            ("data_planes", !c.data_planes.is_empty()),
            ("control_plane", c.control_plane.is_some()),
        ] {
            if set {
                return self.invalid(
                    key,
                    format!(
                        "`{key}` is set but `style` is `sandbox`, expected `style: multi-cluster`"
                    ),
                );
            }
        }
        if c.flyte.chart == Chart::FlyteCore {
            return self.invalid(
                "flyte.chart",
                "`flyte.chart` is `flyte-core`, but `style: sandbox` installs one Flyte, expected \
                 `flyte-binary`"
                    .to_owned(),
            );
        }
        if c.sandbox.is_none() {
            let (at, what) = if c.origin.map.has("sandbox") {
                ("sandbox", "`sandbox` is empty")
            } else {
                ("style", "`style: sandbox` needs a `sandbox` section")
            };
            return self.invalid(
                at,
                format!(
                    "{what}, expected `sandbox: {{postgres: {{host, admin_password_env}}, \
                     object_store: {{endpoint, access_key_env, secret_key_env}}}}`: the \
                     PostgreSQL server and the S3-compatible object store that already run"
                ),
            );
        }
        Ok(())
    }

    /// The `sandbox` section: the PostgreSQL server and the object store.
    fn sandbox(&self, sandbox: &SandboxConfig) -> Result {
        self.sandbox_postgres(&sandbox.postgres)?;
        if !sandbox.object_store.path_style {
            // Flyte's stow addresses buckets in the path whenever an endpoint is set, and so
            // does flyteinfra: a store that only takes host-style names would half work.
            return self.invalid(
                "sandbox.object_store.path_style",
                "`sandbox.object_store.path_style` is false, but Flyte's storage client \
                 (stow) always puts the bucket in the path when an endpoint is set, expected \
                 `true` (a store must accept `http://host/bucket/key`)"
                    .to_owned(),
            );
        }
        self.object_store(&sandbox.object_store)
    }

    /// `sandbox.postgres`: a host, a port, an administrator other than Flyte's user, its
    /// password's variable (never echoed), and TLS that agrees with `database.require_ssl`.
    fn sandbox_postgres(&self, pg: &SandboxPostgres) -> Result {
        let host = &pg.host;
        let expected = "a host name or IP address such as `localhost` or \
                        `postgres.flyte.svc.cluster.local` (no scheme, no port: the port is \
                        `sandbox.postgres.port`)";
        if host.contains('@') {
            // Never echoed: `user:password@host` holds a password.
            return self.invalid(
                "sandbox.postgres.host",
                format!(
                    "`sandbox.postgres.host` has a `@` (a user or password?), expected {expected}; \
                     the password is read from `admin_password_env`"
                ),
            );
        }
        self.expect(is_host(host), "sandbox.postgres.host", host, expected)?;
        if let Some(cluster_host) = &pg.cluster_host {
            self.expect(
                is_host(cluster_host) && !cluster_host.contains('@'),
                "sandbox.postgres.cluster_host",
                cluster_host,
                "a host name or IP address as Flyte's pods reach the server, such as \
                 `postgres.db.svc.cluster.local` (no scheme, no port)",
            )?;
        }
        if pg.port == 0 {
            return self.invalid(
                "sandbox.postgres.port",
                "`sandbox.postgres.port` is 0, expected a port from 1 to 65535".to_owned(),
            );
        }
        self.expect(
            is_pg_name(&pg.admin_user),
            "sandbox.postgres.admin_user",
            &pg.admin_user,
            "a PostgreSQL role name: lowercase letters, digits and `_`, starting with a letter \
             or `_`, at most 63, not starting with `pg_`",
        )?;
        let db = &self.config.database;
        if pg.admin_user == db.username {
            return self.invalid(
                "sandbox.postgres.admin_user",
                format!(
                    "`sandbox.postgres.admin_user` is `{}`, the same as `database.username`, \
                     expected the administrator that makes Flyte's user, another role than that user",
                    pg.admin_user
                ),
            );
        }
        if !is_env_name(&pg.admin_password_env) {
            return self.invalid(
                "sandbox.postgres.admin_password_env",
                // Never echoed: a password written here by mistake must not be printed.
                "`sandbox.postgres.admin_password_env` is not an environment variable name, \
                 expected one such as `FLYTEINFRA_PG_ADMIN_PASSWORD` (uppercase letters, digits \
                 and `_`) whose value is the administrator's password: it is never written in \
                 the config"
                    .to_owned(),
            );
        }
        self.pg_ca_file("sandbox.postgres", pg.tls, pg.ca_file.as_deref())?;
        if pg.tls == PgTls::Disable && db.require_ssl {
            return self.invalid(
                "database.require_ssl",
                "`database.require_ssl` is true but `sandbox.postgres.tls` is `disable`: Flyte \
                 would connect with `sslmode=require` to a server flyteinfra reaches without \
                 TLS, expected `require_ssl: false` (or none) for a server without TLS, or \
                 `tls: require` or `verify-full`"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// `<section>.ca_file` (of `state.postgres` or `sandbox.postgres`): only with
    /// `tls: verify-full`, and not empty.
    fn pg_ca_file(&self, section: &str, tls: PgTls, ca_file: Option<&Path>) -> Result {
        let Some(ca) = ca_file else {
            return Ok(());
        };
        let path = format!("{section}.ca_file");
        if tls != PgTls::VerifyFull {
            return self.invalid(
                &path,
                format!(
                    "`{path}` is set but `{section}.tls` is `{}`, which verifies no certificate, \
                     expected `tls: verify-full` or no `ca_file`",
                    tls.as_str()
                ),
            );
        }
        if ca.as_os_str().is_empty() {
            return self.invalid(
                &path,
                format!(
                    "`{path}` is empty, expected a PEM file of CA certificates such as `ca.pem` \
                     (relative to this file)"
                ),
            );
        }
        Ok(())
    }

    /// `sandbox.object_store`: an `http(s)://host[:port]` endpoint, a region, two distinct
    /// variables for the keys (never echoed) and a `tls` that agrees with the scheme.
    fn object_store(&self, store: &ObjectStore) -> Result {
        if let Some(cluster) = &store.cluster_endpoint {
            self.store_endpoint("sandbox.object_store.cluster_endpoint", cluster)?;
        }
        let https = self.store_endpoint("sandbox.object_store.endpoint", &store.endpoint)?;
        self.object_store_rest(store, https)
    }

    /// An `http(s)://host[:port]` URL of an S3 API at `path`; whether it is https.
    fn store_endpoint(&self, path: &str, endpoint: &str) -> Result<bool> {
        let expected = "an `http://` or `https://` URL of the S3 API with a host and an optional \
                        port, no path, such as `http://localhost:30002`";
        let message = match endpoint_problem(endpoint) {
            Ok(https) => return Ok(https),
            // Never echoed: `user:password@` holds a secret.
            Err(EndpointProblem::Credentials) => format!(
                "`{path}` has a user or password in it, expected {expected}; the keys are read \
                 from `access_key_env` and `secret_key_env`"
            ),
            Err(EndpointProblem::Other(problem)) => {
                format!("`{path}` is `{endpoint}`, which {problem}, expected {expected}")
            }
        };
        Err(self.fail(path, ConfigErrorKind::Invalid, message))
    }

    /// `sandbox.object_store` beyond its endpoint (`https`: whether it is https).
    fn object_store_rest(&self, store: &ObjectStore, https: bool) -> Result {
        let region = &store.region;
        self.expect(
            (1..=64).contains(&region.len())
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "sandbox.object_store.region",
            region,
            "the region the store signs for, such as `us-east-1` (letters, digits, `-` and `_`)",
        )?;
        for (key, what) in [
            ("access_key_env", "the access key id"),
            ("secret_key_env", "the secret access key"),
        ] {
            let value = if key == "access_key_env" {
                &store.access_key_env
            } else {
                &store.secret_key_env
            };
            if !is_env_name(value) {
                let example = format!(
                    "FLYTEINFRA_S3_{}",
                    key.trim_end_matches("_env").to_uppercase()
                );
                return self.invalid(
                    &format!("sandbox.object_store.{key}"),
                    // Never echoed: a key written here by mistake must not be printed.
                    format!(
                        "`sandbox.object_store.{key}` is not an environment variable name, \
                         expected one such as `{example}` (uppercase letters, digits and `_`) \
                         whose value is {what}: it is never written in the config"
                    ),
                );
            }
        }
        if store.access_key_env == store.secret_key_env {
            return self.invalid(
                "sandbox.object_store.secret_key_env",
                format!(
                    "`sandbox.object_store.secret_key_env` names `{}`, as `access_key_env` does, \
                     expected two variables: one for the access key id, one for the secret key",
                    store.secret_key_env
                ),
            );
        }
        if let Some(tls) = store.tls
            && tls != https
        {
            let scheme = if https { "https" } else { "http" };
            return self.invalid(
                "sandbox.object_store.tls",
                format!(
                    "`sandbox.object_store.tls` is `{tls}` but `endpoint` is `{scheme}://`, \
                     expected `tls: {https}` or no `tls` (it follows the scheme), or an \
                     `{}://` endpoint",
                    if tls { "https" } else { "http" }
                ),
            );
        }
        Ok(())
    }

    /// `style: multi-cluster`: flyte-core, the control plane's endpoints, and data planes
    /// with unique names, labels whose weights sum to 1, and node settings that hold.
    fn multi_cluster(&self) -> Result {
        let c = self.config;
        if c.flyte.chart != Chart::FlyteCore {
            return self.invalid(
                "flyte.chart",
                format!(
                    "`flyte.chart` is `{}` but `style: multi-cluster` runs `flyte-core`, expected `flyte-core` or no `flyte.chart`",
                    c.flyte.chart.as_str()
                ),
            );
        }
        let Some(cp) = &c.control_plane else {
            return self.invalid(
                "style",
                "`style: multi-cluster` needs `control_plane`, expected `control_plane: {admin_endpoint, catalog_endpoint}`: the host:port data planes use to reach flyteadmin and datacatalog".into(),
            );
        };
        for (path, value) in [
            ("control_plane.admin_endpoint", &cp.admin_endpoint),
            ("control_plane.catalog_endpoint", &cp.catalog_endpoint),
        ] {
            self.expect(
                is_host_port(value),
                path,
                value,
                "`host:port` such as `flyteadmin.flyte.internal:81` (no scheme)",
            )?;
        }
        if c.data_planes.is_empty() {
            return self.invalid(
                "style",
                "`style: multi-cluster` needs `data_planes`, expected a list of at least one `{name: …}`"
                    .into(),
            );
        }
        let mut names = HashSet::new();
        for (i, plane) in c.data_planes.iter().enumerate() {
            let at = format!("data_planes[{i}]");
            let name = &plane.name;
            let path = format!("{at}.name");
            let ok = (1..=MAX_PLANE).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            self.expect(
                ok,
                &path,
                name,
                &format!("1 to {MAX_PLANE} lowercase letters and digits, starting with a letter"),
            )?;
            // GKE cluster names are at most 40 characters; the plane's is `<name>-<plane>`.
            let cluster = plane.cluster_name(&c.name);
            if cluster.len() > MAX_PLANE_CLUSTER {
                return self.invalid(
                    &path,
                    format!(
                        "`{path}` makes the cluster name `{cluster}` ({} characters), expected at most {MAX_PLANE_CLUSTER} with the deployment name: a shorter plane name",
                        cluster.len()
                    ),
                );
            }
            // `flyteinfra kubeconfig --cluster control` names the control plane.
            if name == "control" {
                return self.invalid(
                    &path,
                    format!("`{path}` is `control`, which names the control plane (`--cluster control`), expected another name"),
                );
            }
            if !names.insert(name.as_str()) {
                return self.invalid(
                    &path,
                    format!("`{path}` is `{name}`, which an earlier data plane has, expected unique names"),
                );
            }
            if let Some(label) = &plane.label {
                let path = format!("{at}.label");
                self.expect(
                    is_label(label) && label.len() <= MAX_LABEL,
                    &path,
                    label,
                    "a label: lowercase letters, digits and hyphens, starting and ending with a letter or digit",
                )?;
            }
            if let Some(w) = plane.weight {
                let path = format!("{at}.weight");
                self.expect(
                    w.0.is_finite() && w.0 > 0.0 && w.0 <= 1.0,
                    &path,
                    &w.0.to_string(),
                    "a number greater than 0 and at most 1",
                )?;
            }
            if let Some(existing) = &plane.existing {
                let path = format!("{at}.existing");
                self.expect(
                    !existing.is_empty() && !existing.contains(char::is_whitespace),
                    &path,
                    existing,
                    "the name of an existing cluster (on Azure, its resource ID)",
                )?;
                // Security-group references, firewall scope and subnets hold within one
                // network only, as for the control plane's `existing` cluster.
                let network = [
                    (
                        c.aws.as_ref().is_some_and(|a| a.existing.vpc_id.is_none()),
                        "aws.existing.vpc_id",
                    ),
                    (
                        c.gcp.as_ref().is_some_and(|g| g.existing.network.is_none()),
                        "gcp.existing.network",
                    ),
                    (
                        c.azure
                            .as_ref()
                            .is_some_and(|a| a.existing.vnet_id.is_none()),
                        "azure.existing.vnet_id",
                    ),
                ];
                if let Some((_, key)) = network.iter().find(|(missing, _)| *missing) {
                    return self.invalid(
                        &path,
                        format!("`{path}` names an existing cluster but `{key}` is not set, expected the network that cluster is in (all clusters share one)"),
                    );
                }
                for key in ["nodes", "aws", "gcp", "azure"] {
                    if self.config.origin.map.has(&format!("{at}.{key}")) {
                        return self.invalid(
                            &format!("{at}.{key}"),
                            format!("`{at}.{key}` is set but `{at}.existing` names a cluster flyteinfra only reads, expected one or the other"),
                        );
                    }
                }
            }
            if let Some(n) = plane.nodes {
                self.node_counts(&format!("{at}.nodes"), n)?;
            }
            if let Some(t) = plane
                .aws
                .as_ref()
                .and_then(|a| a.node_instance_type.as_ref())
            {
                self.expect(
                    is_dotted_type(t, None),
                    &format!("{at}.aws.node_instance_type"),
                    t,
                    "an EC2 instance type such as `m7i.xlarge`",
                )?;
            }
            if let Some(t) = plane.gcp.as_ref().and_then(|g| g.machine_type.as_ref()) {
                self.expect(
                    !t.is_empty() && !t.contains(char::is_whitespace),
                    &format!("{at}.gcp.machine_type"),
                    t,
                    "a machine type such as `e2-standard-4`",
                )?;
            }
            if let Some(t) = plane.azure.as_ref().and_then(|a| a.vm_size.as_ref()) {
                self.expect(
                    t.starts_with("Standard_"),
                    &format!("{at}.azure.vm_size"),
                    t,
                    "an Azure VM size such as `Standard_D4s_v5`",
                )?;
            }
        }
        self.label_weights()?;
        if let Some(gcp) = &c.gcp
            && gcp.existing.subnetwork.is_none()
        {
            self.plane_ranges(gcp)?;
        }
        Ok(())
    }

    /// The weights of the planes sharing a label sum to 1; the error points at the last
    /// plane of the label.
    fn label_weights(&self) -> Result {
        let planes = &self.config.data_planes;
        let mut seen = HashSet::new();
        for label in planes.iter().map(|p| p.label()) {
            if !seen.insert(label) {
                continue;
            }
            let members: Vec<usize> = (0..planes.len())
                .filter(|&i| planes[i].label() == label)
                .collect();
            let sum: f64 = members.iter().map(|&i| planes[i].weight()).sum();
            if (sum - 1.0).abs() > 1e-6 {
                let last = *members.last().expect("the label has a plane");
                let names: Vec<&str> = members.iter().map(|&i| planes[i].name.as_str()).collect();
                let path = if planes[last].weight.is_some() {
                    format!("data_planes[{last}].weight")
                } else {
                    format!("data_planes[{last}].label")
                };
                return self.invalid(
                    &path,
                    format!(
                        "the weights of label `{label}` (planes {}) sum to {sum}, expected 1 within 1e-6: give each plane of the label a `weight` (default 1)",
                        names.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }

    /// Every plane's GKE pod and service ranges are private, sized, and overlap nothing.
    fn plane_ranges(&self, gcp: &GcpConfig) -> Result {
        let planes = &self.config.data_planes;
        let mut paths = Vec::new();
        for (i, p) in planes.iter().enumerate() {
            if p.existing.is_some() {
                continue;
            }
            paths.push((
                format!("data_planes[{i}].gcp.pods_cidr"),
                p.gcp_pods_cidr(),
                21,
            ));
            paths.push((
                format!("data_planes[{i}].gcp.services_cidr"),
                p.gcp_services_cidr(),
                27,
            ));
        }
        // The subnetwork holds the control plane's two ranges and two per plane; Google
        // allows 30 secondary ranges per subnetwork.
        if paths.len() + 2 > MAX_SECONDARY_RANGES {
            return self.invalid(
                "data_planes",
                format!(
                    "{} data planes need {} secondary ranges on the subnetwork, expected at most {MAX_SECONDARY_RANGES} (at most 14 planes flyteinfra makes; more as `existing` clusters)",
                    paths.len() / 2,
                    paths.len() + 2
                ),
            );
        }
        for (path, cidr, max) in &paths {
            self.cidr_block(path, *cidr, 8, *max)?;
        }
        let mut blocks = vec![
            ("gcp.subnet_cidr", gcp.subnet_cidr),
            ("gcp.pods_cidr", gcp.pods_cidr),
            ("gcp.services_cidr", gcp.services_cidr),
        ];
        blocks.extend(paths.iter().map(|(p, c, _)| (p.as_str(), *c)));
        // A default range that collides is fixed by setting it: say so.
        self.disjoint_or(
            &blocks,
            ": set the plane's `gcp.pods_cidr` / `gcp.services_cidr` to free ranges (the defaults are picked by the plane's name)",
        )
    }

    fn aws(&self, aws: &AwsConfig) -> Result {
        self.expect(
            is_aws_region(&aws.region),
            "aws.region",
            &aws.region,
            "an AWS region such as `us-east-1`",
        )?;
        let zones = &aws.availability_zones;
        if !zones.is_empty() {
            if !(2..=3).contains(&zones.len()) {
                return self.invalid(
                    "aws.availability_zones",
                    format!(
                        "`aws.availability_zones` lists {} zones, expected 2 or 3",
                        zones.len()
                    ),
                );
            }
            let mut seen = HashSet::new();
            for (i, zone) in zones.iter().enumerate() {
                let path = format!("aws.availability_zones[{i}]");
                let suffix = zone.strip_prefix(aws.region.as_str());
                self.expect(
                    suffix
                        .is_some_and(|s| s.len() == 1 && s.bytes().all(|b| b.is_ascii_lowercase())),
                    &path,
                    zone,
                    &format!("a zone of `{}` such as `{}a`", aws.region, aws.region),
                )?;
                if !seen.insert(zone) {
                    return self.invalid(
                        &path,
                        format!("zone `{zone}` is listed twice, expected distinct zones"),
                    );
                }
            }
        }
        let existing = &aws.existing;
        if existing.vpc_id.is_none() {
            self.cidr_block("aws.vpc_cidr", aws.vpc_cidr, 16, 20)?;
        }
        if let Some(vpc) = &existing.vpc_id {
            self.expect(
                is_aws_id(vpc, "vpc-"),
                "aws.existing.vpc_id",
                vpc,
                "a VPC ID such as `vpc-0abc1234`",
            )?;
            for (list, ids) in [
                ("public_subnet_ids", &existing.public_subnet_ids),
                ("private_subnet_ids", &existing.private_subnet_ids),
            ] {
                if ids.len() < 2 {
                    return self.invalid(
                        "aws.existing.vpc_id",
                        format!(
                            "`aws.existing.vpc_id` is set but `aws.existing.{list}` lists {} subnets, expected at least 2 (one per zone)",
                            ids.len()
                        ),
                    );
                }
            }
        } else {
            for list in ["public_subnet_ids", "private_subnet_ids"] {
                let ids = if list == "public_subnet_ids" {
                    &existing.public_subnet_ids
                } else {
                    &existing.private_subnet_ids
                };
                if !ids.is_empty() {
                    return self.invalid(
                        &format!("aws.existing.{list}"),
                        format!("`aws.existing.{list}` is set without `aws.existing.vpc_id`, expected both or neither"),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        for (list, ids) in [
            ("public_subnet_ids", &existing.public_subnet_ids),
            ("private_subnet_ids", &existing.private_subnet_ids),
        ] {
            for (i, id) in ids.iter().enumerate() {
                let path = format!("aws.existing.{list}[{i}]");
                self.expect(
                    is_aws_id(id, "subnet-"),
                    &path,
                    id,
                    "a subnet ID such as `subnet-0abc1234`",
                )?;
                if !seen.insert(id) {
                    return self.invalid(
                        &path,
                        format!("subnet `{id}` is listed twice, expected distinct subnets"),
                    );
                }
            }
        }
        if let Some(cluster) = &existing.cluster_name {
            if existing.vpc_id.is_none() {
                return self.invalid(
                    "aws.existing.cluster_name",
                    "`aws.existing.cluster_name` is set without `aws.existing.vpc_id`, expected the cluster's VPC and subnets too (the database must be reachable from the cluster)".to_owned(),
                );
            }
            let ok = (1..=100).contains(&cluster.len())
                && cluster.starts_with(|c: char| c.is_ascii_alphanumeric())
                && cluster
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            self.expect(
                ok,
                "aws.existing.cluster_name",
                cluster,
                "an EKS cluster name (letters, digits, `-`, `_`, at most 100)",
            )?;
        }
        self.expect(
            is_dotted_type(&aws.node_instance_type, None),
            "aws.node_instance_type",
            &aws.node_instance_type,
            "an EC2 instance type such as `m7i.xlarge`",
        )?;
        self.expect(
            is_dotted_type(&aws.db_instance_class, Some("db.")),
            "aws.db_instance_class",
            &aws.db_instance_class,
            "an RDS instance class such as `db.t3.medium`",
        )?;
        // IAM's default quota, up to the most Service Quotas grants.
        self.range(
            "aws.trust_policy_limit",
            aws.trust_policy_limit,
            2048,
            4096,
            "characters",
        )
    }

    fn gcp(&self, gcp: &GcpConfig) -> Result {
        let p = &gcp.project;
        let ok = (6..=30).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && !p.ends_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        self.expect(
            ok,
            "gcp.project",
            p,
            "a project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter",
        )?;
        self.expect(
            is_gcp_region(&gcp.region),
            "gcp.region",
            &gcp.region,
            "a GCP region such as `us-central1` (a region, not a zone)",
        )?;
        if gcp.existing.subnetwork.is_none() {
            let ranges = [
                ("gcp.subnet_cidr", gcp.subnet_cidr, 8, 29),
                ("gcp.pods_cidr", gcp.pods_cidr, 8, 21),
                ("gcp.services_cidr", gcp.services_cidr, 8, 27),
            ];
            for (path, cidr, min, max) in ranges {
                self.cidr_block(path, cidr, min, max)?;
            }
            self.disjoint(&ranges.map(|(p, c, _, _)| (p, c)))?;
        }
        let existing = &gcp.existing;
        for (field, value) in [
            ("subnetwork", &existing.subnetwork),
            ("cluster", &existing.cluster),
        ] {
            if value.is_some() && existing.network.is_none() {
                return self.invalid(
                    &format!("gcp.existing.{field}"),
                    format!("`gcp.existing.{field}` is set without `gcp.existing.network`, expected the network it belongs to"),
                );
            }
        }
        for (field, value) in [
            ("network", &existing.network),
            ("subnetwork", &existing.subnetwork),
            ("cluster", &existing.cluster),
        ] {
            if let Some(value) = value {
                let path = format!("gcp.existing.{field}");
                self.expect(
                    is_gcp_name(value),
                    &path,
                    value,
                    "a resource name (lowercase letters, digits, hyphens, at most 63) or a `projects/…` path",
                )?;
            }
        }
        self.expect(
            !gcp.machine_type.is_empty() && !gcp.machine_type.contains(char::is_whitespace),
            "gcp.machine_type",
            &gcp.machine_type,
            "a machine type such as `e2-standard-4`",
        )?;
        self.expect(
            gcp.db_tier.starts_with("db-") && !gcp.db_tier.contains(char::is_whitespace),
            "gcp.db_tier",
            &gcp.db_tier,
            "a Cloud SQL tier such as `db-custom-1-3840`",
        )?;
        self.expect(
            ["RAPID", "REGULAR", "STABLE"].contains(&gcp.release_channel.as_str()),
            "gcp.release_channel",
            &gcp.release_channel,
            "a GKE release channel: `RAPID`, `REGULAR` or `STABLE`",
        )
    }

    fn azure(&self, azure: &AzureConfig) -> Result {
        self.expect(
            is_guid(&azure.subscription_id),
            "azure.subscription_id",
            &azure.subscription_id,
            "a subscription GUID such as `00000000-0000-0000-0000-000000000000`",
        )?;
        let loc = &azure.location;
        self.expect(
            !loc.is_empty()
                && loc
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "azure.location",
            loc,
            "an Azure location name such as `eastus` (lowercase, no spaces)",
        )?;
        let rg = &azure.resource_group;
        let ok = (1..=90).contains(&rg.chars().count())
            && !rg.ends_with('.')
            && rg
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
        self.expect(
            ok,
            "azure.resource_group",
            rg,
            "a resource group name: 1 to 90 letters, digits, `-`, `_`, `.`, `(`, `)`, not ending with `.`",
        )?;
        let existing = &azure.existing;
        if existing.vnet_id.is_none() {
            self.cidr_block("azure.vnet_cidr", azure.vnet_cidr, 8, 24)?;
            for (path, subnet, max) in [
                ("azure.node_subnet_cidr", azure.node_subnet_cidr, 24),
                ("azure.db_subnet_cidr", azure.db_subnet_cidr, 28),
            ] {
                if !azure.vnet_cidr.contains(&subnet) {
                    return self.invalid(
                        path,
                        format!(
                            "`{path}` is `{subnet}`, expected a block inside `azure.vnet_cidr` (`{}`)",
                            azure.vnet_cidr
                        ),
                    );
                }
                if subnet.prefix() > max {
                    return self.invalid(
                        path,
                        format!("`{path}` is `{subnet}`, expected a block of /{max} or larger"),
                    );
                }
            }
            self.disjoint(&[
                ("azure.node_subnet_cidr", azure.node_subnet_cidr),
                ("azure.db_subnet_cidr", azure.db_subnet_cidr),
            ])?;
        }
        for (field, value) in [
            ("subnet_id", &existing.subnet_id),
            ("cluster_id", &existing.cluster_id),
        ] {
            if value.is_some() && existing.vnet_id.is_none() {
                return self.invalid(
                    &format!("azure.existing.{field}"),
                    format!("`azure.existing.{field}` is set without `azure.existing.vnet_id`, expected the virtual network it belongs to"),
                );
            }
        }
        // The storage account admits the nodes' subnet: with the user's cluster, that is
        // the subnet its nodes run in, which must be named.
        if existing.cluster_id.is_some() && existing.subnet_id.is_none() {
            return self.invalid(
                "azure.existing.cluster_id",
                "`azure.existing.cluster_id` is set without `azure.existing.subnet_id`, expected \
                 the subnet its nodes run in (the storage account admits that subnet)"
                    .to_string(),
            );
        }
        for (field, value, segment) in [
            (
                "vnet_id",
                &existing.vnet_id,
                "/providers/microsoft.network/virtualnetworks/",
            ),
            ("subnet_id", &existing.subnet_id, "/subnets/"),
            (
                "cluster_id",
                &existing.cluster_id,
                "/providers/microsoft.containerservice/managedclusters/",
            ),
        ] {
            if let Some(value) = value {
                let lower = value.to_ascii_lowercase();
                let path = format!("azure.existing.{field}");
                self.expect(
                    lower.starts_with("/subscriptions/") && lower.contains(segment),
                    &path,
                    value,
                    &format!("an Azure resource ID starting with `/subscriptions/` and containing `{segment}`"),
                )?;
            }
        }
        self.expect(
            azure.vm_size.starts_with("Standard_"),
            "azure.vm_size",
            &azure.vm_size,
            "a VM size such as `Standard_D4s_v5`",
        )?;
        self.expect(
            azure.db_sku_parts().is_some(),
            "azure.db_sku",
            &azure.db_sku,
            "a Flexible Server SKU such as `GP_Standard_D2s_v3` (tier prefix `B_`, `GP_` or `MO_`)",
        )?;
        for (i, ip) in azure.storage_allow_ips.iter().enumerate() {
            self.expect(
                public_ipv4_range(ip),
                &format!("azure.storage_allow_ips[{i}]"),
                ip,
                "a public IPv4 address or range such as `203.0.113.7` or `203.0.113.0/24` \
                 (Azure storage admits no private range by IP, and no /31 or /32)",
            )?;
        }
        let size = self.config.database.storage_gb;
        if !AZURE_STORAGE_SIZES_GB.contains(&size) {
            return self.invalid(
                "database.storage_gb",
                format!(
                    "`database.storage_gb` is `{size}`, expected a size PostgreSQL flexible server \
                     accepts on Azure: {}",
                    AZURE_STORAGE_SIZES_GB.map(|s| s.to_string()).join(", ")
                ),
            );
        }
        // Overlay networking: pods and services live outside the virtual network, and
        // apart from it and from each other.
        let mut ranges = vec![
            ("azure.pod_cidr", azure.pod_cidr),
            ("azure.service_cidr", azure.service_cidr),
        ];
        if existing.vnet_id.is_none() {
            ranges.insert(0, ("azure.vnet_cidr", azure.vnet_cidr));
        }
        self.cidr_block("azure.pod_cidr", azure.pod_cidr, 8, 24)?;
        self.cidr_block("azure.service_cidr", azure.service_cidr, 8, 24)?;
        self.disjoint(&ranges)?;
        // Azure allows 20 federated credentials per identity. A task identity trusts each
        // cluster tasks run in (the one cluster, or every data plane): up to 20 cluster ×
        // project × domain triples share one; past that each domain gets its own, which
        // needs one credential per cluster and project. (flytepropeller's, one per data
        // plane, fits whenever these do.)
        let flyte = &self.config.flyte;
        let multi = self.config.style == Style::MultiCluster;
        let clusters = if multi {
            self.config.data_planes.len()
        } else {
            1
        };
        let per_domain = clusters * flyte.projects.len();
        let triples = per_domain * flyte.domains.len();
        if multi && triples > AZURE_MAX_FEDERATED && per_domain > AZURE_MAX_FEDERATED {
            return self.invalid(
                "data_planes",
                format!(
                    "{clusters} data planes × {} projects need {per_domain} federated credentials \
                     on each domain's task identity (one per plane and project), expected at most \
                     {AZURE_MAX_FEDERATED} (the Azure limit per managed identity): fewer data \
                     planes or projects",
                    flyte.projects.len()
                ),
            );
        }
        // The control plane's cluster is `<name>-aks`, a data plane's `<name>-<plane>`:
        // AKS names are unique in a resource group.
        if let Some(i) = self
            .config
            .data_planes
            .iter()
            .position(|p| p.name == "aks" && p.existing.is_none())
            .filter(|_| existing.cluster_id.is_none())
        {
            let path = format!("data_planes[{i}].name");
            return self.invalid(
                &path,
                format!(
                    "`{path}` is `aks`, which gives its cluster the control plane's name `{}-aks`, \
                     expected another name",
                    self.config.name
                ),
            );
        }
        if triples > AZURE_MAX_FEDERATED && per_domain > AZURE_MAX_FEDERATED {
            return self.invalid(
                "flyte.projects",
                format!(
                    "{} projects need {} federated credentials on each domain's task identity, \
                     expected at most {AZURE_MAX_FEDERATED} (the Azure limit per managed identity)",
                    flyte.projects.len(),
                    flyte.projects.len()
                ),
            );
        }
        Ok(())
    }

    /// A block with a prefix in `min..=max` inside a private address range.
    fn cidr_block(&self, path: &str, cidr: Ipv4Cidr, min: u8, max: u8) -> Result {
        if !(min..=max).contains(&cidr.prefix()) {
            return self.invalid(
                path,
                format!("`{path}` is `{cidr}`, expected a prefix from /{min} to /{max}"),
            );
        }
        let private = [
            Ipv4Cidr::known([10, 0, 0, 0], 8),
            Ipv4Cidr::known([172, 16, 0, 0], 12),
            Ipv4Cidr::known([192, 168, 0, 0], 16),
            Ipv4Cidr::known([100, 64, 0, 0], 10),
        ];
        if !private.iter().any(|p| p.contains(&cidr)) {
            return self.invalid(
                path,
                format!("`{path}` is `{cidr}`, expected a private range inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10"),
            );
        }
        Ok(())
    }

    /// No two blocks overlap; the error points at the later one.
    fn disjoint(&self, blocks: &[(&str, Ipv4Cidr)]) -> Result {
        self.disjoint_or(blocks, "")
    }

    /// As [`Checker::disjoint`], with `remedy` after the message.
    fn disjoint_or(&self, blocks: &[(&str, Ipv4Cidr)], remedy: &str) -> Result {
        for (i, (path, cidr)) in blocks.iter().enumerate() {
            for (other_path, other) in &blocks[..i] {
                if cidr.overlaps(other) {
                    return self.invalid(
                        path,
                        format!("`{path}` (`{cidr}`) overlaps `{other_path}` (`{other}`), expected disjoint ranges{remedy}"),
                    );
                }
            }
        }
        Ok(())
    }

    fn database(&self, db: &DatabaseConfig) -> Result {
        let v = &db.engine_version;
        self.expect(
            !v.is_empty()
                && v.len() <= 3
                && !v.starts_with('0')
                && v.bytes().all(|b| b.is_ascii_digit()),
            "database.engine_version",
            v,
            "a plain PostgreSQL major version such as `\"16\"` (no minor version)",
        )?;
        for (path, ident, what) in [
            ("database.name", &db.name, "database"),
            ("database.username", &db.username, "user"),
        ] {
            self.expect(
                is_pg_name(ident),
                path,
                ident,
                &format!("a PostgreSQL {what} name: lowercase letters, digits and `_`, starting with a letter, at most 63, not starting with `pg_`"),
            )?;
        }
        const RESERVED_DBS: [&str; 5] = [
            "postgres",
            "template0",
            "template1",
            "azure_maintenance",
            "azure_sys",
        ];
        if RESERVED_DBS.contains(&db.name.as_str()) {
            return self.invalid(
                "database.name",
                format!("`database.name` is `{}`, a database the cloud reserves, expected another name such as `flyte`", db.name),
            );
        }
        const RESERVED_USERS: [&str; 12] = [
            "postgres",
            "admin",
            "administrator",
            "root",
            "guest",
            "public",
            "azure_superuser",
            "azure_pg_admin",
            "rdsadmin",
            "rds_superuser",
            "cloudsqladmin",
            "cloudsqlsuperuser",
        ];
        if RESERVED_USERS.contains(&db.username.as_str()) {
            return self.invalid(
                "database.username",
                format!("`database.username` is `{}`, a name some clouds reserve, expected another name such as `flyte`", db.username),
            );
        }
        self.range(
            "database.storage_gb",
            db.storage_gb,
            32,
            16_384,
            "GiB (a range every cloud accepts)",
        )?;
        self.range(
            "database.backup_retention_days",
            db.backup_retention_days,
            7,
            35,
            "days (a range every cloud accepts)",
        )
    }

    fn range(&self, path: &str, value: u32, min: u32, max: u32, unit: &str) -> Result {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            self.invalid(
                path,
                format!("`{path}` is {value}, expected {min} to {max} {unit}"),
            )
        }
    }

    fn storage(&self, storage: &StorageConfig) -> Result {
        for (path, name) in [
            ("storage.metadata_bucket", &storage.metadata_bucket),
            ("storage.data_bucket", &storage.data_bucket),
        ] {
            // The sandbox's store speaks S3: S3's rules, dots allowed.
            if self.config.style == Style::Sandbox
                && let Some(name) = name
                && let Some(problem) = s3_bucket_problem(name)
            {
                return self.invalid(
                    path,
                    format!(
                        "`{path}` is `{name}`, which {problem}, expected an S3 bucket name for \
                         the sandbox's object store: 3 to 63 lowercase letters, digits, `.` or \
                         `-`, starting and ending with a letter or digit, not shaped like an IP \
                         address"
                    ),
                );
            }
            if let Some(name) = name
                && self.config.style != Style::Sandbox
            {
                let ok =
                    (3..=MAX_LABEL).contains(&name.len()) && is_label(name) && !name.contains("--");
                self.expect(
                    ok,
                    path,
                    name,
                    "3 to 63 lowercase letters, digits or single hyphens, starting and ending with a letter or digit (valid for S3, GCS and Azure containers)",
                )?;
            }
        }
        self.sandbox_derived_buckets(storage)?;
        if storage.data_bucket.is_some() && !storage.separate_data_bucket {
            return self.invalid(
                "storage.data_bucket",
                "`storage.data_bucket` is set but `storage.separate_data_bucket` is false, expected `separate_data_bucket: true` or no `data_bucket`".to_owned(),
            );
        }
        if storage.separate_data_bucket
            && storage.data_bucket.is_some()
            && storage.data_bucket == storage.metadata_bucket
        {
            return self.invalid(
                "storage.data_bucket",
                "`storage.data_bucket` equals `storage.metadata_bucket`, expected two different buckets (or `separate_data_bucket: false`)".to_owned(),
            );
        }
        if let Some(days) = storage.raw_data_expiry_days {
            self.range("storage.raw_data_expiry_days", days, 1, 36_500, "days")?;
        }
        Ok(())
    }

    /// On the sandbox, the bucket names derived from `name` (those `storage` does not
    /// choose) follow S3's rules: a `name` starting with a prefix S3 reserves would break them.
    fn sandbox_derived_buckets(&self, storage: &StorageConfig) -> Result {
        if self.config.style != Style::Sandbox {
            return Ok(());
        }
        let name = &self.config.name;
        let mut derived = vec![("metadata", &storage.metadata_bucket)];
        if storage.separate_data_bucket {
            derived.push(("data", &storage.data_bucket));
        }
        for (purpose, chosen) in derived {
            if chosen.is_some() {
                continue;
            }
            let bucket = crate::blueprint::sandbox_bucket_name(name, purpose);
            if let Some(problem) = s3_bucket_problem(&bucket) {
                return self.invalid(
                    "name",
                    format!(
                        "`name` is `{name}`, so the sandbox's {purpose} bucket would be \
                         `{bucket}`, which {problem}, expected another `name` or a valid S3 \
                         bucket name in `storage.{purpose}_bucket`"
                    ),
                );
            }
        }
        Ok(())
    }

    fn cluster(&self, cluster: &ClusterConfig) -> Result {
        let v = &cluster.version;
        let ok = v.strip_prefix("1.").is_some_and(|minor| {
            (1..=3).contains(&minor.len())
                && !minor.starts_with('0')
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
        self.expect(
            ok,
            "cluster.version",
            v,
            "a Kubernetes minor version such as `\"1.33\"`",
        )?;
        self.node_counts("cluster.nodes", cluster.nodes)?;
        Ok(())
    }

    /// `min <= desired <= max`, `1 <= max <= 1000`, at `path` (`cluster.nodes`).
    fn node_counts(&self, path: &str, n: NodeCounts) -> Result {
        if n.max == 0 || n.max > 1000 {
            return self.invalid(
                &format!("{path}.max"),
                format!("`{path}.max` is {}, expected 1 to 1000", n.max),
            );
        }
        if n.min > n.max {
            return self.invalid(
                &format!("{path}.min"),
                format!(
                    "`{path}.min` ({}) is greater than `{path}.max` ({}), expected min <= desired <= max",
                    n.min, n.max
                ),
            );
        }
        if let Some(desired) = n.desired
            && !(n.min..=n.max).contains(&desired)
        {
            return self.invalid(
                &format!("{path}.desired"),
                format!(
                    "`{path}.desired` ({desired}) is outside min {} to max {}, expected min <= desired <= max",
                    n.min, n.max
                ),
            );
        }
        Ok(())
    }

    fn flyte(&self, flyte: &FlyteConfig) -> Result {
        let cv = &flyte.chart_version;
        let major = cv
            .strip_prefix('v')
            .unwrap_or(cv)
            .split(['.', '-', '+'])
            .next()
            .unwrap_or("");
        self.expect(
            is_semver(cv),
            "flyte.chart_version",
            cv,
            "a pinned chart version such as `v1.16.8`",
        )?;
        self.expect(
            major == "1",
            "flyte.chart_version",
            cv,
            "a Flyte 1 chart version such as `v1.16.8` (the Flyte 2 charts take different values)",
        )?;
        let tag = &flyte.image_tag;
        let ok = (1..=128).contains(&tag.len())
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && tag != "latest";
        self.expect(
            ok,
            "flyte.image_tag",
            tag,
            "a pinned image tag such as `v1.16.8` (not `latest`)",
        )?;
        for (path, value, max) in [
            ("flyte.namespace", &flyte.namespace, MAX_LABEL),
            ("flyte.release", &flyte.release, MAX_RELEASE),
            ("flyte.service_account", &flyte.service_account, MAX_LABEL),
        ] {
            self.expect(
                is_label(value) && value.len() <= max,
                path,
                value,
                &format!("a DNS label: lowercase letters, digits and hyphens, starting and ending with a letter or digit, at most {max} characters"),
            )?;
        }
        for (list, names) in [("projects", &flyte.projects), ("domains", &flyte.domains)] {
            let path = format!("flyte.{list}");
            if names.is_empty() {
                return self.invalid(
                    &path,
                    format!("`{path}` is empty, expected at least one name"),
                );
            }
            let mut seen = HashSet::new();
            for (i, name) in names.iter().enumerate() {
                let item = format!("{path}[{i}]");
                self.expect(
                    is_label(name) && name.len() <= MAX_LABEL,
                    &item,
                    name,
                    "a DNS label: lowercase letters, digits and hyphens, starting and ending with a letter or digit",
                )?;
                if !seen.insert(name) {
                    return self.invalid(
                        &item,
                        format!("`{name}` is listed twice in `{path}`, expected distinct names"),
                    );
                }
            }
        }
        let longest_domain = flyte.domains.iter().map(String::len).max().unwrap_or(0);
        for (i, project) in flyte.projects.iter().enumerate() {
            if project.len() + 1 + longest_domain > MAX_LABEL {
                let domain = flyte
                    .domains
                    .iter()
                    .find(|d| d.len() == longest_domain)
                    .map_or("", String::as_str);
                let ns = format!("{project}-{domain}");
                return self.invalid(
                    &format!("flyte.projects[{i}]"),
                    format!(
                        "namespace `{ns}` is {} characters, expected at most {MAX_LABEL} (shorten the project or domain)",
                        ns.len()
                    ),
                );
            }
        }
        const SYSTEM: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];
        if SYSTEM.contains(&flyte.namespace.as_str()) {
            return self.invalid(
                "flyte.namespace",
                format!("`flyte.namespace` is `{}`, a Kubernetes system namespace, expected a namespace of its own such as `flyte`", flyte.namespace),
            );
        }
        for (i, project) in flyte.projects.iter().enumerate() {
            for domain in &flyte.domains {
                let ns = format!("{project}-{domain}");
                if ns == flyte.namespace || SYSTEM.contains(&ns.as_str()) {
                    return self.invalid(
                        &format!("flyte.projects[{i}]"),
                        format!("task namespace `{ns}` collides with the namespace `{ns}` used by {}, expected distinct namespaces", if ns == flyte.namespace { "the Flyte backend" } else { "Kubernetes" }),
                    );
                }
            }
        }
        Ok(())
    }

    fn state(&self, state: &StateConfig) -> Result {
        let named = state.backends_named();
        if let [first, second, ..] = named[..] {
            return self.invalid(
                &format!("state.{second}"),
                format!(
                    "`state` names both `{first}` and `{second}`, expected one backend: `local`, `s3`, `postgres`, `gcs` or `azurerm`"
                ),
            );
        }
        if let Some(enc) = &state.encryption {
            self.state_encryption(enc)?;
        }
        match state.backend() {
            StateBackend::Local(local) => {
                if local.path.as_os_str().is_empty() {
                    return self.invalid(
                        "state.local.path",
                        "`state.local.path` is empty, expected a directory such as `.flyteinfra`"
                            .to_owned(),
                    );
                }
                self.lease_ttl("state.local.lease_ttl", local.lease_ttl)
            }
            StateBackend::S3(s3) => self.state_s3(&s3),
            StateBackend::Gcs(gcs) => self.state_gcs(&gcs),
            StateBackend::Azurerm(az) => self.state_azurerm(&az),
            StateBackend::Postgres(pg) => {
                if !is_env_name(&pg.conn_env) {
                    return self.invalid(
                        "state.postgres.conn_env",
                        // Never echoed: a connection string written here holds a password.
                        "`state.postgres.conn_env` is not an environment variable name, expected one such as `FLYTEINFRA_STATE_PG` (uppercase letters, digits and `_`) whose value is the connection string: it holds a password, so it is never written in the config".to_owned(),
                    );
                }
                let schema = &pg.schema;
                let schema_ok = schema.len() <= 63
                    && !schema.starts_with("pg_")
                    && schema
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                    && schema
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !schema_ok {
                    return self.invalid(
                        "state.postgres.schema",
                        format!(
                            "`state.postgres.schema` is `{schema}`, expected lowercase letters, digits and `_`, not starting with a digit or `pg_`, at most 63 characters"
                        ),
                    );
                }
                self.pg_ca_file("state.postgres", pg.tls, pg.ca_file.as_deref())?;
                self.lease_ttl("state.postgres.lease_ttl", pg.lease_ttl)
            }
        }
    }

    /// `state.s3`: a valid bucket name that is none of Flyte's buckets, a clean key prefix,
    /// an AWS region and a lease in range.
    fn state_s3(&self, s3: &S3State) -> Result {
        let bucket = &s3.bucket;
        if let Some(problem) = s3_bucket_problem(bucket) {
            return self.invalid(
                "state.s3.bucket",
                format!(
                    "`state.s3.bucket` is `{bucket}`, which {problem}, expected an S3 bucket name: \
                     3 to 63 lowercase letters, digits, `.` or `-`, starting and ending with a \
                     letter or digit, not shaped like an IP address"
                ),
            );
        }
        if let Some((role, how)) = self.flyte_bucket(bucket) {
            return self.invalid(
                "state.s3.bucket",
                format!(
                    "`state.s3.bucket` is `{bucket}`, which this config manages as Flyte's {role} \
                     bucket{how}: state must live outside what it manages (a destroy would \
                     delete it), expected a separate bucket"
                ),
            );
        }
        self.state_prefix("state.s3.key_prefix", &s3.key_prefix, "S3 keys")?;
        self.expect(
            is_aws_region(&s3.region),
            "state.s3.region",
            &s3.region,
            "the AWS region of the bucket, such as `us-east-1`",
        )?;
        self.lease_ttl("state.s3.lease_ttl", s3.lease_ttl)
    }

    /// `state.gcs`: a valid bucket name that is none of Flyte's buckets, a clean prefix,
    /// a lease in range.
    fn state_gcs(&self, gcs: &GcsState) -> Result {
        let bucket = &gcs.bucket;
        if !is_gcs_bucket_name(bucket) {
            return self.invalid(
                "state.gcs.bucket",
                format!(
                    "`state.gcs.bucket` is `{bucket}`, expected a GCS bucket name: 3 to 63 \
                     lowercase letters, digits, `-`, `_` or `.`, starting and ending with a \
                     letter or digit, not starting with `goog`"
                ),
            );
        }
        if let Some((role, how)) = self.flyte_bucket(bucket) {
            return self.invalid(
                "state.gcs.bucket",
                format!(
                    "`state.gcs.bucket` is `{bucket}`, which this config manages as Flyte's {role} \
                     bucket{how}: state must live outside what it manages (a destroy would \
                     delete it), expected a separate bucket"
                ),
            );
        }
        self.state_prefix("state.gcs.prefix", &gcs.prefix, "GCS object names")?;
        self.lease_ttl("state.gcs.lease_ttl", gcs.lease_ttl)
    }

    /// `state.azurerm`: an account name, a container name that is none of Flyte's, a
    /// clean prefix, a lease in range.
    fn state_azurerm(&self, az: &AzurermState) -> Result {
        let account = &az.account;
        let account_ok = (3..=24).contains(&account.len())
            && account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !account_ok {
            return self.invalid(
                "state.azurerm.account",
                format!(
                    "`state.azurerm.account` is `{account}`, expected a storage account name: 3 to 24 lowercase letters and digits"
                ),
            );
        }
        let container = &az.container;
        if !is_container_name(container) {
            return self.invalid(
                "state.azurerm.container",
                format!(
                    "`state.azurerm.container` is `{container}`, expected a blob container name: \
                     3 to 63 lowercase letters, digits and single `-`, starting and ending with a \
                     letter or digit"
                ),
            );
        }
        if let Some((role, how)) = self.flyte_bucket(container) {
            return self.invalid(
                "state.azurerm.container",
                format!(
                    "`state.azurerm.container` is `{container}`, which this config manages as \
                     Flyte's {role} container{how}: state must live outside what it manages (a \
                     destroy would delete it), expected a separate container"
                ),
            );
        }
        self.state_prefix("state.azurerm.key_prefix", &az.key_prefix, "blob names")?;
        self.lease_ttl("state.azurerm.lease_ttl", az.lease_ttl)
    }

    /// `state.encryption`: exactly one key source, well formed.
    fn state_encryption(&self, enc: &EncryptionConfig) -> Result {
        match (&enc.passphrase_env, &enc.aws_kms) {
            (Some(_), Some(_)) => self.invalid(
                "state.encryption.aws_kms",
                "`state.encryption` sets both `passphrase_env` and `aws_kms`, expected one key source".to_owned(),
            ),
            (None, None) => self.invalid(
                "state.encryption",
                "`state.encryption` sets no key source, expected `passphrase_env: VARIABLE` or `aws_kms: {key_id: ...}`".to_owned(),
            ),
            (Some(env), None) => {
                if is_env_name(env) {
                    return Ok(());
                }
                self.invalid(
                    "state.encryption.passphrase_env",
                    // Never echoed: a passphrase written here by mistake must not be printed.
                    "`state.encryption.passphrase_env` is not an environment variable name, expected one such as `FLYTEINFRA_STATE_PASSPHRASE` (uppercase letters, digits and `_`) whose value is the passphrase: it is never written in the config".to_owned(),
                )
            }
            (None, Some(kms)) => {
                let id = &kms.key_id;
                let id_ok = !id.is_empty()
                    && id.len() <= 2048
                    && !id.chars().any(|c| c.is_whitespace() || c.is_control());
                if !id_ok {
                    return self.invalid(
                        "state.encryption.aws_kms.key_id",
                        format!(
                            "`state.encryption.aws_kms.key_id` is {}, expected a KMS key id, key ARN, alias name (`alias/flyteinfra-state`) or alias ARN",
                            if id.is_empty() { "empty".to_owned() } else { format!("`{}`", id.escape_debug()) }
                        ),
                    );
                }
                if kms.region.is_empty() {
                    return Ok(());
                }
                self.expect(
                    is_aws_region(&kms.region),
                    "state.encryption.aws_kms.region",
                    &kms.region,
                    "the AWS region of the key, such as `us-east-1`",
                )
            }
        }
    }

    /// A state prefix: no leading or trailing `/`, no empty segment, short enough for
    /// the backend's object names (`what`) with `/<cloud>.state.json.lock` after it.
    fn state_prefix(&self, path: &str, prefix: &str, what: &str) -> Result {
        let field = format!("`{path}`");
        let expected = format!(
            "a prefix such as `flyte/prod`: no leading or trailing `/`, no `//`, at most \
             {MAX_KEY_PREFIX} bytes ({what} end at 1024 bytes and `/<cloud>.state.json.lock` \
             follows the prefix)"
        );
        if prefix.len() > MAX_KEY_PREFIX {
            return self.invalid(
                path,
                format!(
                    "{field} is {} bytes long, expected {expected}",
                    prefix.len()
                ),
            );
        }
        let problem = if prefix.starts_with('/') {
            Some("starts with `/`")
        } else if prefix.ends_with('/') {
            Some("ends with `/`")
        } else if prefix.contains("//") {
            Some("has an empty segment (`//`)")
        } else {
            None
        };
        match problem {
            Some(problem) => self.invalid(
                path,
                format!("{field} is `{prefix}`, which {problem}, expected {expected}"),
            ),
            None => Ok(()),
        }
    }

    /// A state lease from [`LeaseTtl::MIN`] to [`LeaseTtl::MAX`].
    fn lease_ttl(&self, path: &str, ttl: LeaseTtl) -> Result {
        if (LeaseTtl::MIN..=LeaseTtl::MAX).contains(&ttl) {
            return Ok(());
        }
        let (min, max) = (LeaseTtl::MIN, LeaseTtl::MAX);
        let why = if ttl < min {
            format!(
                "the lease must outlive a renewal round trip to the state backend, so at least {min}"
            )
        } else {
            format!(
                "a run that stalls holding the lease blocks every other run for this long, so at most {max}"
            )
        };
        self.invalid(
            path,
            format!("`{path}` is `{ttl}`, expected {min} to {max}: {why}"),
        )
    }

    /// Whether `bucket` is a bucket (Azure: container) this config gives Flyte on any of its
    /// cloud sections: its role (`metadata`, `raw-data`) and where the name comes from.
    /// Derived AWS names hold the account id, unknown offline: any 12-digit account matches.
    fn flyte_bucket(&self, bucket: &str) -> Option<(&'static str, String)> {
        let c = self.config;
        let st = &c.storage;
        let mut purposes = vec![("metadata", "metadata", &st.metadata_bucket)];
        if st.separate_data_bucket {
            purposes.push(("data", "raw-data", &st.data_bucket));
        }
        let name = c.name.as_str();
        for (purpose, role, chosen) in purposes {
            if let Some(chosen) = chosen {
                if chosen == bucket {
                    return Some((role, format!(" (`storage.{purpose}_bucket`)")));
                }
                continue;
            }
            // Exact names first: AWS's are matched by shape, which a hashed GCP name fits too.
            if c.sandbox.is_some() && bucket == crate::blueprint::sandbox_bucket_name(name, purpose)
            {
                return Some((role, " (the name it derives on sandbox)".to_owned()));
            }
            if let Some(gcp) = &c.gcp
                && bucket == crate::blueprint::gcp_bucket_name(&gcp.project, name, purpose)
            {
                return Some((role, " (the name it derives on gcp)".to_owned()));
            }
            if c.azure.is_some() && bucket == format!("{name}-{purpose}") {
                return Some((role, " (the container name it derives on azure)".to_owned()));
            }
            if let Some(aws) = &c.aws
                && let Some(how) = aws_derived_bucket(bucket, name, &aws.region, purpose)
            {
                return Some((role, how));
            }
        }
        None
    }
}

/// A PostgreSQL database or role name as flyteinfra asks for them: lowercase letters,
/// digits and `_`, starting with a letter or `_`, at most 63, not `pg_…` (reserved).
fn is_pg_name(ident: &str) -> bool {
    (1..=MAX_LABEL).contains(&ident.len())
        && ident.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && ident
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !ident.starts_with("pg_")
}

/// A host as a PostgreSQL client takes it: a DNS name, an IPv4 or an IPv6 address.
fn is_host(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok() || is_dns_name(s)
}

/// Why an object store endpoint is refused.
enum EndpointProblem {
    /// It holds a user or password (`user:pw@host`): said without echoing the endpoint.
    Credentials,
    /// Anything else, as "which …" completes it.
    Other(&'static str),
}

/// Whether `endpoint` is `https://` (else `http://`), if it is a scheme, a host (DNS name,
/// IPv4, or bracketed IPv6) and an optional port, with at most a trailing `/`.
fn endpoint_problem(endpoint: &str) -> std::result::Result<bool, EndpointProblem> {
    let (https, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (false, rest)
    } else if endpoint.contains("://") {
        return Err(EndpointProblem::Other("has another scheme"));
    } else {
        return Err(EndpointProblem::Other("has no scheme"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(EndpointProblem::Credentials);
    }
    if authority.contains(['/', '?', '#']) {
        return Err(EndpointProblem::Other("has a path, query or fragment"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(EndpointProblem::Other("has an unclosed `[`"));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(EndpointProblem::Other("has no valid IPv6 address in `[…]`"));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(EndpointProblem::Other("has text after `]`")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host
        && !is_dns_name(host)
    {
        return Err(EndpointProblem::Other(if host.is_empty() {
            "has no host"
        } else {
            "has no valid host name or IPv4 address"
        }));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(EndpointProblem::Other(
            "has no port from 1 to 65535 after `:`",
        ));
    }
    Ok(https)
}

/// A DNS name (or an IPv4 address, which has its shape): dot-separated labels of letters,
/// digits and inner hyphens, at most 253 characters.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// An environment variable name as flyteinfra asks for them: uppercase letters, digits
/// and `_`, not starting with a digit.
fn is_env_name(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A GCS bucket name without dots' longer form: 3 to 63 of `[a-z0-9_.-]`, starting and
/// ending with a letter or digit, not `goog…`.
fn is_gcs_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter()
            .all(|&c| edge(c) || matches!(c, b'-' | b'_' | b'.'))
        && !name.starts_with("goog")
}

/// An Azure blob container name: 3 to 63 lowercase letters, digits and single `-`,
/// starting and ending with a letter or digit.
fn is_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|&c| edge(c) || c == b'-')
        && !name.contains("--")
}

/// Longest state prefix (`state.s3.key_prefix` and the like), in bytes: S3 keys, GCS
/// object names and blob names are at most 1024 bytes, and `/<cloud>.state.json.lock`
/// follows the prefix.
const MAX_KEY_PREFIX: usize = 900;

/// Which of S3's bucket naming rules `name` breaks, as "which …" completes it; `None` for a
/// valid name.
fn s3_bucket_problem(name: &str) -> Option<String> {
    let len = name.chars().count();
    if !(3..=63).contains(&len) {
        return Some(format!("is {len} characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')))
    {
        return Some(if c.is_uppercase() {
            format!("has the uppercase letter `{c}`")
        } else {
            format!("has `{c}`")
        });
    }
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if let Some(c) = name.chars().next().filter(|c| !edge(*c)) {
        return Some(format!("starts with `{c}`"));
    }
    if let Some(c) = name.chars().last().filter(|c| !edge(*c)) {
        return Some(format!("ends with `{c}`"));
    }
    if name.contains("..") {
        return Some("has two adjacent dots".to_owned());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("is shaped like an IP address".to_owned());
    }
    // Prefixes and suffixes S3 reserves for its own names (access points, directory
    // buckets, Object Lambda, table buckets, examples).
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Some(format!("starts with `{prefix}`, a prefix S3 reserves"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Some(format!("ends with `{suffix}`, a suffix S3 reserves"));
        }
    }
    None
}

/// Whether `bucket` is the name the AWS blueprint derives for deployment `name`'s `purpose`
/// bucket in `region` for some account, `<name>-<account>-<region>-<purpose>` (or past 63
/// characters `<name>-<8 hex digits>-<purpose>`, the hex a hash of account and region): if
/// so, where the name comes from, for messages. Mirrors `blueprint::aws::bucket_name`; a
/// test keeps them together.
fn aws_derived_bucket(bucket: &str, name: &str, region: &str, purpose: &str) -> Option<String> {
    const ACCOUNT_DIGITS: usize = 12;
    let middle = bucket
        .strip_prefix(name)?
        .strip_prefix('-')?
        .strip_suffix(purpose)?
        .strip_suffix('-')?;
    let full_len = name.len() + ACCOUNT_DIGITS + region.len() + purpose.len() + 3;
    if full_len <= 63 {
        let account = middle.strip_suffix(region)?.strip_suffix('-')?;
        (account.len() == ACCOUNT_DIGITS && account.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!(" (the name it derives on aws for account {account})"))
    } else {
        (middle.len() == 8
            && middle
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| " (the name it derives on aws, shortened with a hash)".to_owned())
    }
}

/// `host:port` with a DNS name or IPv4 address and a port from 1 to 65535, no scheme.
fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok_and(|p| p > 0) && is_dns_name(host)
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_aws_region(s: &str) -> bool {
    // `us-east-1`, `ap-southeast-2`, `us-gov-west-1`, `eu-central-2`.
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_gcp_region(s: &str) -> bool {
    // `us-central1`, `europe-west4`, `northamerica-northeast1`.
    let Some((area, rest)) = s.split_once('-') else {
        return false;
    };
    let digits = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && digits.len() < rest.len()
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_gcp_name(s: &str) -> bool {
    if s.starts_with("projects/") {
        return !s.contains(char::is_whitespace);
    }
    (1..=MAX_LABEL).contains(&s.len())
        && is_label(s)
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (8..=17).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// `m7i.xlarge`, or with `prefix` `db.t3.medium`.
fn is_dotted_type(s: &str, prefix: Option<&str>) -> bool {
    let rest = match prefix {
        Some(p) => match s.strip_prefix(p) {
            Some(r) => r,
            None => return false,
        },
        None => s,
    };
    let Some((family, size)) = rest.split_once('.') else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    ok(family) && ok(size)
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_semver(s: &str) -> bool {
    let core = s.strip_prefix('v').unwrap_or(s);
    let (core, pre) = match core.split_once(['-', '+']) {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_helpers() {
        assert!(is_aws_region("us-east-1"));
        assert!(is_aws_region("us-gov-west-1"));
        assert!(!is_aws_region("us-east"));
        assert!(!is_aws_region("US-east-1"));
        assert!(is_gcp_region("us-central1"));
        assert!(is_gcp_region("northamerica-northeast1"));
        assert!(!is_gcp_region("us-central1-a"));
        assert!(!is_gcp_region("uscentral1"));
        assert!(is_guid("00000000-0000-0000-0000-000000000000"));
        assert!(!is_guid("0000-0000"));
        assert!(is_semver("v1.16.8"));
        assert!(is_semver("1.16.8-rc.1"));
        assert!(!is_semver("v1.16"));
        assert!(is_aws_id("vpc-0abc1234", "vpc-"));
        assert!(!is_aws_id("vpc-XYZ", "vpc-"));
        assert!(is_dotted_type("db.t3.medium", Some("db.")));
        assert!(!is_dotted_type("t3.medium", Some("db.")));
        assert!(is_label("flyte-backend"));
        assert!(!is_label("-x"));
    }
}
