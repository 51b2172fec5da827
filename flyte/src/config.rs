//! The deployment config: one YAML file describing one Flyte deployment.
//!
//! A file names the deployment, picks a cloud and a style, and may carry one
//! section per cloud (`aws`, `gcp`, `azure`) so the same file can target several
//! clouds; `--cloud` on the command line overrides `cloud:` through
//! [`Config::select_cloud`]. Everything else (database, storage, cluster, Flyte
//! release, state) has defaults.
//!
//! `style: sandbox` targets no cloud: its `sandbox:` section names a PostgreSQL server
//! and an S3-compatible object store that already run, `cloud:` may be left out (it is
//! then `sandbox`, and `cloud: sandbox` goes with `style: sandbox` only), and no cloud
//! section may be present, as such a file could never select it.
//!
//! Reading is done in three steps, each reporting `FILE:LINE:COLUMN`:
//!
//! 1. the text is checked for things YAML parsers report badly: size, invalid
//!    UTF-8, NUL and other control characters, empty or comment-only files;
//! 2. serde-saphyr deserializes it (`deny_unknown_fields` everywhere, duplicate
//!    keys rejected, depth and node budgets set) and its error locations are kept;
//! 3. [`Config::validate`] checks rules across fields, pointing at the offending
//!    value through a map from key paths to positions built from the YAML event
//!    stream ([`granit_parser`](serde_saphyr::granit_parser) markers).

mod cidr;
mod error;
mod model;
mod source;
mod validate;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cidr::{CidrParseError, Ipv4Cidr};
pub use error::{ConfigError, ConfigErrorKind, Position};
pub use model::{
    AwsConfig, AwsExisting, AwsKmsKey, AzureConfig, AzureExisting, AzurermState, Capabilities,
    Chart, Cloud, ClusterConfig, ControlPlaneConfig, DataPlaneConfig, DatabaseConfig,
    EncryptionConfig, FLYTE_CORE_STORAGE_COMPONENTS, FlyteConfig, GcpConfig, GcpExisting, GcsState,
    LeaseTtl, LocalState, NatGateways, NodeCounts, ObjectStore, ParseCloudError,
    ParseDurationError, PgTls, PlaneAws, PlaneAzure, PlaneGcp, PostgresState, S3State,
    SandboxConfig, SandboxPostgres, StateBackend, StateConfig, StorageConfig, Style, TaskTrust,
    Weight,
};

use source::SourceMap;

/// One Flyte deployment, as read from a config file.
///
/// Build one with [`Config::load`] or [`Config::parse`] (both validate), or in code
/// with [`Config::new`] and field assignments followed by [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "flyteinfra deployment config",
    description = "One Flyte deployment: its name, its cloud and everything flyteinfra provisions for it."
)]
pub struct Config {
    /// Deployment name: 3 to 30 characters, lowercase letters, digits and hyphens,
    /// starting with a letter and not ending with a hyphen. Cloud resource names
    /// are derived from it. Required.
    pub name: String,
    /// Cloud to deploy to: `aws`, `gcp` or `azure`, whose section must be present, or
    /// `sandbox`, which goes with `style: sandbox` only. The command line's `--cloud`
    /// overrides it. Required, except with `style: sandbox`, where it defaults to
    /// `sandbox`.
    #[serde(default = "model::defaults::sandbox_cloud")]
    pub cloud: Cloud,
    /// Deployment style: `single-cluster`; `multi-cluster` (one control-plane cluster and
    /// the `data_planes`, with `flyte-core`); or `sandbox` (no cloud: Flyte's database and
    /// buckets on the servers named in `sandbox`).
    #[serde(default)]
    pub style: Style,
    /// AWS settings, used when the selected cloud is `aws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsConfig>,
    /// GCP settings, used when the selected cloud is `gcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpConfig>,
    /// Azure settings, used when the selected cloud is `azure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureConfig>,
    /// `style: sandbox` only, and required there: the PostgreSQL server and the
    /// S3-compatible object store that already run. No cloud section may be present with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxConfig>,
    /// The PostgreSQL database.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Buckets (Azure: blob containers) for metadata and raw data.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The Kubernetes cluster.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The Flyte Helm release.
    #[serde(default)]
    pub flyte: FlyteConfig,
    /// Where flyteinfra keeps its state: `local` (a directory, the default) or `s3` (a
    /// bucket a team shares).
    #[serde(default)]
    pub state: StateConfig,
    /// `style: multi-cluster` only: how data planes reach the control plane. Required there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneConfig>,
    /// `style: multi-cluster` only: the data-plane clusters, at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_planes: Vec<DataPlaneConfig>,
    /// Where this config came from; not part of the file format.
    #[serde(skip)]
    #[schemars(skip)]
    origin: Origin,
}

/// The file a [`Config`] was read from and the positions of its keys and values.
///
/// Not part of a config's value: two configs with the same settings are equal
/// whichever files they came from.
#[derive(Clone, Debug)]
struct Origin {
    path: PathBuf,
    from_file: bool,
    map: SourceMap,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Origin {}

impl Default for Origin {
    fn default() -> Self {
        Self {
            path: PathBuf::from(IN_CODE),
            from_file: false,
            map: SourceMap::default(),
        }
    }
}

/// Path reported for configs built in code rather than read from a file.
const IN_CODE: &str = "<config>";

impl Config {
    /// A config for `name` on `cloud` with every other field at its default and no
    /// cloud section (add one before calling [`Config::validate`]).
    pub fn new(name: impl Into<String>, cloud: Cloud) -> Self {
        Self {
            name: name.into(),
            cloud,
            style: Style::default(),
            aws: None,
            gcp: None,
            azure: None,
            sandbox: None,
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
            cluster: ClusterConfig::default(),
            flyte: FlyteConfig::default(),
            state: StateConfig::default(),
            control_plane: None,
            data_planes: Vec::new(),
            origin: Origin::default(),
        }
    }

    /// Reads, parses and validates the config file at `path`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::Read`] if the file cannot be read; otherwise as
    /// [`Config::parse`], with `path` in every message.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = source::read_file(path)?;
        Self::parse(&text, path)
    }

    /// Parses and validates the bytes of a config file read from `source` (named in
    /// errors): what [`Config::load`] does once it has read the file.
    ///
    /// # Errors
    /// As [`Config::load`], except [`ConfigErrorKind::Read`].
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Config, ConfigError> {
        let text = source::text_of(bytes.to_vec(), source)?;
        Self::parse(&text, source)
    }

    /// Parses and validates `text`; `source` is the file name used in errors and the
    /// base directory for relative paths inside the config.
    ///
    /// # Errors
    /// A located [`ConfigError`] for text that is not a config (see
    /// [`ConfigErrorKind`]) and for any rule [`Config::validate`] checks.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let (mut config, map) = source::deserialize(text, source)?;
        // `cloud` has a default for `style: sandbox` only; elsewhere it is required, as
        // deserialization would have said.
        if config.style != Style::Sandbox && !map.has("cloud") {
            return Err(source::missing_key(&map, "cloud", source));
        }
        // Multi-cluster runs flyte-core; a file that names no chart gets it (one that names
        // flyte-binary is refused by validation).
        if config.style == Style::MultiCluster && !map.has("flyte.chart") {
            config.flyte.chart = Chart::FlyteCore;
        }
        // A sandbox server reached without TLS has none for Flyte either: a file that does
        // not say `database.require_ssl` gets `false` (one that says `true` is refused).
        if config.style == Style::Sandbox
            && !map.has("database.require_ssl")
            && config
                .sandbox
                .as_ref()
                .is_some_and(|s| s.postgres.tls == PgTls::Disable)
        {
            config.database.require_ssl = false;
        }
        config.origin = Origin {
            path: source.to_path_buf(),
            from_file: true,
            map,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules that span fields or go beyond types: name pattern, the
    /// `cloud:` section exists, CIDRs fit, zone counts, node counts, `existing`
    /// combinations, project and domain names, style and chart, the sandbox's servers.
    ///
    /// # Errors
    /// The first rule broken, located at the offending value when the config came
    /// from a file, else at `<config>:1:1`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// The cloud to deploy to: `override_cloud` (the command line's `--cloud`) if
    /// given, else `cloud:`. [`Cloud::Sandbox`] goes with `style: sandbox`, and only it.
    ///
    /// # Errors
    /// [`ConfigErrorKind::Invalid`] if the cloud and the style disagree (sandbox or not);
    /// [`ConfigErrorKind::MissingCloudSection`] if the file has no section for that
    /// cloud. Either is located at `cloud:` or, for an override, at 1:1.
    pub fn select_cloud(&self, override_cloud: Option<Cloud>) -> Result<Cloud, ConfigError> {
        let cloud = override_cloud.unwrap_or(self.cloud);
        let overridden = override_cloud.is_some_and(|o| o != self.cloud);
        if (cloud == Cloud::Sandbox) != (self.style == Style::Sandbox) {
            let style = self.style.as_str();
            let (position, message) = match (overridden, cloud) {
                (true, Cloud::Sandbox) => (
                    Position::START,
                    format!(
                        "`--cloud sandbox` selects the sandbox but `style` is `{style}`, expected \
                         `style: sandbox` with a `sandbox:` section, or another `--cloud`"
                    ),
                ),
                (true, _) => (
                    Position::START,
                    format!(
                        "`--cloud {cloud}` selects {cloud} but `style` is `sandbox`, which runs \
                         on no cloud, expected `--cloud sandbox` or no `--cloud`"
                    ),
                ),
                (false, _) => (
                    self.origin.map.value("cloud"),
                    format!(
                        "`cloud` is `{cloud}` but `style` is `{style}`, expected `cloud: sandbox` \
                         with `style: sandbox` and a cloud with any other style"
                    ),
                ),
            };
            return Err(ConfigError::at(
                self.path(),
                position,
                ConfigErrorKind::Invalid,
                message,
            ));
        }
        if self.has_section(cloud) {
            return Ok(cloud);
        }
        let (position, how) = match override_cloud {
            Some(o) if o != self.cloud => (Position::START, format!("`--cloud {o}` selects {o}")),
            _ => (
                self.origin.map.value("cloud"),
                format!("`cloud: {cloud}` selects {cloud}"),
            ),
        };
        Err(ConfigError::at(
            self.path(),
            position,
            ConfigErrorKind::MissingCloudSection,
            format!("{how} but the file has no `{cloud}` section, expected a `{cloud}:` mapping"),
        ))
    }

    /// Whether the file has a section for `cloud`.
    pub fn has_section(&self, cloud: Cloud) -> bool {
        match cloud {
            Cloud::Aws => self.aws.is_some(),
            Cloud::Gcp => self.gcp.is_some(),
            Cloud::Azure => self.azure.is_some(),
            Cloud::Sandbox => self.sandbox.is_some(),
        }
    }

    /// The file this config was read from (`<config>` for configs built in code).
    pub fn path(&self) -> &Path {
        &self.origin.path
    }

    /// The state directory: `state.local.path` resolved against the directory of the
    /// config file (the current directory for configs built in code); `None` when the
    /// state lives in a shared backend (`state.s3`, `state.postgres`, …).
    pub fn state_dir(&self) -> Option<PathBuf> {
        let StateBackend::Local(local) = self.state.backend() else {
            return None;
        };
        Some(self.beside_file(local.path))
    }

    /// `sandbox.postgres.ca_file` resolved against the directory of the config file (the
    /// current directory for configs built in code); `None` when it is not set.
    pub fn sandbox_ca_file(&self) -> Option<PathBuf> {
        let ca = self.sandbox.as_ref()?.postgres.ca_file.clone()?;
        Some(self.beside_file(ca))
    }

    /// `state.postgres.ca_file` resolved against the directory of the config file (the
    /// current directory for configs built in code); `None` when it is not set.
    pub fn state_postgres_ca_file(&self) -> Option<PathBuf> {
        let ca = self.state.postgres.as_ref()?.ca_file.clone()?;
        Some(self.beside_file(ca))
    }

    /// `path` resolved against the directory of the config file, if relative and the
    /// config came from a file.
    fn beside_file(&self, path: PathBuf) -> PathBuf {
        if path.is_absolute() || !self.origin.from_file {
            return path;
        }
        match self.origin.path.parent() {
            Some(dir) => dir.join(&path),
            None => path,
        }
    }

    /// Position of the value at `path` (`aws.vpc_cidr`, `flyte.projects[1]`), falling
    /// back to the nearest enclosing value, then 1:1.
    pub fn position_of(&self, path: &str) -> Position {
        self.origin.map.value(path)
    }
}

/// The JSON Schema (draft 2020-12) of the config file, pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Config);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => text,
        Err(e) => unreachable!("a JSON Schema always serializes: {e}"),
    }
}

/// A commented starter config for `cloud`, ready to edit (for [`Cloud::Sandbox`], one
/// with `style: sandbox`).
pub fn starter(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Aws => include_str!("../starters/aws.yaml"),
        Cloud::Gcp => include_str!("../starters/gcp.yaml"),
        Cloud::Azure => include_str!("../starters/azure.yaml"),
        Cloud::Sandbox => include_str!("../starters/sandbox.yaml"),
    }
}
