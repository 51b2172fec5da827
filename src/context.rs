//! What every command needs: the config, the chosen cloud, its providers and its state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use async_trait::async_trait;
use flyteinfra_core::builtin::RandomPassword;
use flyteinfra_core::{Graph, Registry, Schema};
use flyteinfra_flyte::{
    AZURE_REQUIRED_PROVIDERS, Blueprint, Cloud, Config, Facts, GCP_REQUIRED_APIS, PgTls,
    StateBackend, expand,
};
use flyteinfra_provider_aws::{self as aws, AwsClients};
use flyteinfra_provider_azure::{self as azure, ArmClient};
use flyteinfra_provider_gcp::{self as gcp, Endpoints, GcpClients};
use flyteinfra_provider_postgres::{PgServer, TlsMode};
use flyteinfra_state::{
    AzBlobAccess, AzBlobBackend, AzBlobLocation, Backend, GcsAccess, GcsBackend, GcsLocation,
    KeySource, Lease, LocalBackend, LockInfo, Object, PostgresBackend, PostgresLocation, S3Backend,
    S3Location, Sealer, Sealing, StateDoc, StateManager,
};

/// How a command connects to a cloud: the real providers ([`Providers`], the only ones the
/// shipped binary has), or a test double (the test-only `flyteinfra-sim` binary).
#[async_trait]
pub trait Connect: Send + Sync {
    /// The chosen cloud's resource types and the facts the blueprint needs.
    async fn connect(&self, loaded: &Loaded) -> Result<Session>;
}

/// A loaded config and the cloud chosen for this run.
pub struct Loaded {
    /// The parsed, validated config.
    pub config: Config,
    /// Where it was read from (errors name it; state lives next to it).
    pub config_path: PathBuf,
    /// The cloud this run works on.
    pub cloud: Cloud,
    connect: Arc<dyn Connect>,
    backend: std::sync::OnceLock<Arc<dyn Backend>>,
    sealer: std::sync::OnceLock<Option<Sealer>>,
}

impl Loaded {
    /// Loads and validates the config and selects the cloud; `connect` makes the session.
    pub fn new(path: &Path, cloud: Option<&str>, connect: Arc<dyn Connect>) -> Result<Loaded> {
        let over = cloud
            .map(|c| {
                c.parse::<Cloud>().map_err(|_| {
                    anyhow!(
                        "`--cloud {c}` is not a cloud: expected `aws`, `gcp`, `azure` or `sandbox`"
                    )
                })
            })
            .transpose()?;
        let config = Config::load(path)?;
        let cloud = config.select_cloud(over)?;
        Ok(Loaded {
            config,
            config_path: path.to_path_buf(),
            cloud,
            connect,
            backend: std::sync::OnceLock::new(),
            sealer: std::sync::OnceLock::new(),
        })
    }

    /// The resources and outputs this deployment needs on the chosen cloud.
    pub fn blueprint(&self, facts: &Facts) -> Result<Blueprint> {
        Ok(expand(&self.config, self.cloud, facts)?)
    }

    /// The chosen cloud's state backend, made once per command (for S3 this checks the
    /// bucket, its versioning and the credentials).
    pub fn state_backend(&self) -> Result<Arc<dyn Backend>> {
        if let Some(b) = self.backend.get() {
            return Ok(Arc::clone(b));
        }
        let backend = self.backend_for(&self.config)?;
        Ok(Arc::clone(self.backend.get_or_init(|| backend)))
    }

    /// The chosen cloud's state backend as `config` names it, sealing the state with the
    /// key `state.encryption` names (see [`Sealing`]).
    pub fn backend_for(&self, config: &Config) -> Result<Arc<dyn Backend>> {
        let cloud = self.cloud.as_str();
        let store: Arc<dyn Backend> = match config.state.backend() {
            StateBackend::Local(_) => {
                let dir = config.state_dir().expect("a local state has a directory");
                Arc::new(LocalBackend::for_cloud(&dir, cloud)?)
            }
            StateBackend::S3(s3) => Arc::new(S3Backend::connect(S3Location {
                bucket: s3.bucket,
                key_prefix: s3.key_prefix,
                region: s3.region,
                cloud: cloud.to_string(),
            })?),
            StateBackend::Postgres(pg) => {
                let conn = std::env::var(&pg.conn_env).map_err(|_| {
                    anyhow!(
                        "{}:{}: `state.postgres.conn_env` names `{}`, which is not set: set it to the connection string of the state database",
                        config.path().display(),
                        config.position_of("state.postgres.conn_env"),
                        pg.conn_env
                    )
                })?;
                Arc::new(PostgresBackend::connect(PostgresLocation {
                    conn,
                    schema: pg.schema,
                    deployment: config.name.clone(),
                    cloud: cloud.to_string(),
                    tls: match pg.tls {
                        PgTls::Disable => TlsMode::Disable,
                        PgTls::Require => TlsMode::Require,
                        PgTls::VerifyFull => TlsMode::VerifyFull {
                            ca_file: config.state_postgres_ca_file(),
                        },
                    },
                })?)
            }
            StateBackend::Gcs(gcs) => Arc::new(GcsBackend::connect(
                GcsLocation {
                    bucket: gcs.bucket,
                    prefix: gcs.prefix,
                    cloud: cloud.to_string(),
                },
                gcs_state_access()?,
            )?),
            StateBackend::Azurerm(az) => Arc::new(AzBlobBackend::connect(
                AzBlobLocation {
                    account: az.account,
                    container: az.container,
                    key_prefix: az.key_prefix,
                    cloud: cloud.to_string(),
                },
                azure_state_access()?,
            )?),
        };
        let sealer = if config.state.encryption == self.config.state.encryption {
            self.sealer()?
        } else {
            sealer_for(config)?
        };
        Ok(Arc::new(Sealing::new(store, sealer)))
    }

    /// The key that seals this config's state and plan files (`state.encryption`), made
    /// once per command; `None` when encryption is off.
    pub fn sealer(&self) -> Result<Option<Sealer>> {
        if let Some(s) = self.sealer.get() {
            return Ok(s.clone());
        }
        let sealer = sealer_for(&self.config)?;
        Ok(self.sealer.get_or_init(|| sealer).clone())
    }

    /// Takes the chosen cloud's state lease for the whole command, before any cloud call.
    /// A lease taken over from a holder that stopped renewing is fenced at once: the state
    /// is written back with a new serial, so that holder's next write fails.
    pub fn lock(&self, command: &str, timeout: Duration) -> Result<Held> {
        // Bad input is reported before the lease is written: nothing changes on error.
        self.preflight()?;
        let mut manager = StateManager::shared(self.state_backend()?);
        let acquiring = crate::signals::acquiring();
        let lease = manager.lock(
            LockInfo::new(command),
            self.config.state.lease_ttl(),
            timeout,
        )?;
        crate::signals::hold(lease.watch());
        drop(acquiring);
        if let Some(old) = lease.taken_over_from() {
            manager.load(&self.config.name, self.cloud.as_str())?;
            eprintln!(
                "Took over the state lease of {} (lease `{}`): it was not renewed for {}.",
                old.holder_description(),
                old.id,
                human(lease.ttl())
            );
        }
        Ok(Held { manager, lease })
    }

    /// Opens the chosen cloud's state, taking its lease for the whole command.
    pub fn open_state(&self, command: &str, timeout: Duration) -> Result<OpenState> {
        self.lock(command, timeout)?.load(self, None)
    }

    /// Reads the chosen cloud's state without locking (read-only commands).
    pub fn read_state(&self) -> Result<StateDoc> {
        let mut manager = StateManager::shared(self.state_backend()?);
        let mut doc = manager.load(&self.config.name, self.cloud.as_str())?;
        self.mark_sensitive(&mut doc);
        Ok(doc)
    }

    /// Breaks the lease `lease_id` by hand and names the holder it broke.
    pub fn force_unlock(&self, lease_id: &str) -> Result<LockInfo> {
        Ok(Lease::force_unlock(&*self.state_backend()?, lease_id)?)
    }

    /// Where the chosen cloud's state is stored, for messages.
    pub fn state_location(&self) -> Result<String> {
        Ok(self.state_backend()?.describe(Object::State))
    }

    /// A state that cannot be used is reported before any cloud call (the resource types
    /// are checked later, against the session's registry). Reads only: nothing is created
    /// when there is no state yet.
    fn check_state_file(&self) -> Result<()> {
        let backend = self.state_backend()?;
        if let Some(stored) = backend.get(Object::State)? {
            flyteinfra_state::decode(&stored.bytes, Path::new(&backend.describe(Object::State)))?;
        }
        Ok(())
    }

    /// Marks the secrets of a state loaded from disk by the schemas (a file written before
    /// secrets were marked in it holds them as plain strings).
    fn mark_sensitive(&self, doc: &mut StateDoc) {
        let schemas = all_schemas(self.cloud);
        doc.mark_sensitive(|t| schemas.iter().find(|s| s.type_name == t));
    }

    /// Connects to the chosen cloud: its resource types, and the facts the blueprint needs
    /// (for AWS, the account id from `sts:GetCallerIdentity`, which also checks the
    /// credentials before anything else happens).
    pub async fn session(&self) -> Result<Session> {
        self.preflight()?;
        self.connect.connect(self).await
    }

    /// The checks that need no cloud call: the region, and a state that can be used.
    fn preflight(&self) -> Result<()> {
        self.check_region()?;
        self.check_state_file()
    }

    fn gcp(&self) -> Result<&flyteinfra_flyte::GcpConfig> {
        self.config
            .gcp
            .as_ref()
            .ok_or_else(|| anyhow!("the config has no `gcp:` section"))
    }

    /// With `gcp.enable_apis: false` flyteinfra enables nothing, so it checks first that
    /// every API the deployment calls is on, and names all that are not.
    async fn require_apis(&self, clients: &GcpClients) -> Result<()> {
        let disabled = gcp::disabled_services(clients, &GCP_REQUIRED_APIS)
            .await
            .context("cannot list the project's enabled APIs")?;
        if disabled.is_empty() {
            return Ok(());
        }
        let project = &clients.project;
        bail!(
            "{}:{}: `gcp.enable_apis` is false and {} API(s) the deployment needs are disabled in \
             project `{project}`: {}. Enable them with `gcloud services enable {} --project {project}`, \
             or set `gcp.enable_apis: true` to let flyteinfra enable them",
            self.config_path.display(),
            self.config.position_of("gcp.enable_apis"),
            disabled.len(),
            disabled.join(", "),
            disabled.join(" "),
        )
    }

    fn azure(&self) -> Result<&flyteinfra_flyte::AzureConfig> {
        self.config
            .azure
            .as_ref()
            .ok_or_else(|| anyhow!("the config has no `azure:` section"))
    }

    /// `azure.location` must be one of the subscription's locations (its format is
    /// checked offline by `validate`).
    async fn check_location(&self, client: &ArmClient) -> Result<()> {
        let location = &self.azure()?.location;
        let known = azure::locations(client)
            .await
            .context("cannot list the subscription's locations")?;
        if known.iter().any(|l| l == location) {
            return Ok(());
        }
        bail!(
            "{}:{}: `azure.location` is `{location}`, which is not a location of subscription \
             `{}`, expected one of {}",
            self.config_path.display(),
            self.config.position_of("azure.location"),
            client.subscription(),
            known.join(", ")
        )
    }

    /// The storage account admits the node subnet through its `Microsoft.Storage` service
    /// endpoint; an `existing:` subnet is never changed, so it must have one already.
    async fn check_existing_subnet(&self, client: &ArmClient) -> Result<()> {
        let Some(id) = &self.azure()?.existing.subnet_id else {
            return Ok(());
        };
        let path = format!(
            "{}:{}",
            self.config_path.display(),
            self.config.position_of("azure.existing.subnet_id")
        );
        let endpoints = azure::service_endpoints(client, id)
            .await
            .context("cannot read `azure.existing.subnet_id`")?;
        match endpoints {
            None => bail!(
                "{path}: `azure.existing.subnet_id` is `{id}`, which does not exist, expected \
                 an existing subnet of `azure.existing.vnet_id`"
            ),
            Some(e) if e.iter().any(|s| s.starts_with("Microsoft.Storage")) => Ok(()),
            Some(_) => bail!(
                "{path}: the subnet `azure.existing.subnet_id` has no `Microsoft.Storage` \
                 service endpoint, which the storage account needs to admit the nodes; \
                 flyteinfra never changes an existing subnet. Add it with `az network vnet \
                 subnet update --ids {id} --service-endpoints Microsoft.Storage` (keeping the \
                 subnet's other endpoints)"
            ),
        }
    }

    /// An `existing:` cluster is read, never changed: it must have the OIDC issuer and
    /// Workload Identity on already, or the identities could never be used.
    async fn check_existing_cluster(&self, client: &ArmClient) -> Result<()> {
        let Some(id) = &self.azure()?.existing.cluster_id else {
            return Ok(());
        };
        let path = format!(
            "{}:{}",
            self.config_path.display(),
            self.config.position_of("azure.existing.cluster_id")
        );
        let got = azure::cluster_workload_identity(client, id)
            .await
            .context("cannot read `azure.existing.cluster_id`")?;
        match got {
            None => bail!(
                "{path}: `azure.existing.cluster_id` is `{id}`, which does not exist, expected \
                 an existing AKS cluster"
            ),
            Some(w) if w.oidc_issuer && w.workload_identity => Ok(()),
            Some(w) => {
                let mut flags = Vec::new();
                if !w.oidc_issuer {
                    flags.push("--enable-oidc-issuer");
                }
                if !w.workload_identity {
                    flags.push("--enable-workload-identity");
                }
                bail!(
                    "{path}: the cluster `azure.existing.cluster_id` does not have {} on, which \
                     Flyte's identities need; flyteinfra never changes an existing cluster. \
                     Turn it on with `az aks update --ids {id} {}`",
                    if flags.len() == 2 {
                        "the OIDC issuer and Workload Identity"
                    } else if w.oidc_issuer {
                        "Workload Identity"
                    } else {
                        "the OIDC issuer"
                    },
                    flags.join(" ")
                )
            }
        }
    }

    /// With `azure.register_providers: false` flyteinfra registers nothing, so it checks
    /// first that every resource provider the deployment calls is registered, and names
    /// all that are not.
    async fn require_providers(&self, client: &ArmClient) -> Result<()> {
        let missing = azure::unregistered(client, &AZURE_REQUIRED_PROVIDERS)
            .await
            .context("cannot read the subscription's resource providers")?;
        if missing.is_empty() {
            return Ok(());
        }
        let commands: Vec<String> = missing
            .iter()
            .map(|ns| format!("`az provider register --namespace {ns}`"))
            .collect();
        bail!(
            "{}:{}: `azure.register_providers` is false and {} resource provider(s) the \
             deployment needs are not registered in subscription `{}`: {}. Register them with \
             {}, or set `azure.register_providers: true` to let flyteinfra register them",
            self.config_path.display(),
            self.config.position_of("azure.register_providers"),
            missing.len(),
            client.subscription(),
            missing.join(", "),
            commands.join(", "),
        )
    }

    fn aws(&self) -> Result<&flyteinfra_flyte::AwsConfig> {
        self.config
            .aws
            .as_ref()
            .ok_or_else(|| anyhow!("the config has no `aws:` section"))
    }

    /// An unknown region is a config error, found before any API call (an SDK would try to
    /// resolve a host name that does not exist).
    fn check_region(&self) -> Result<()> {
        if self.cloud != Cloud::Aws {
            return Ok(());
        }
        let region = &self.aws()?.region;
        if !aws::REGIONS.contains(&region.as_str()) {
            bail!(
                "{}:{}: `aws.region` is `{region}`, which is not an AWS region, expected one of {}",
                self.config_path.display(),
                self.config.position_of("aws.region"),
                aws::REGIONS.join(", ")
            );
        }
        Ok(())
    }

    /// The graph of the blueprint (for `flyteinfra graph`).
    pub fn graph(&self) -> Result<Graph> {
        let bp = self.blueprint(&Facts::offline())?;
        Graph::build(
            bp.resources
                .iter()
                .map(|r| (r.address.clone(), r.dependencies())),
        )
        .context("the blueprint's resources do not form a valid graph")
    }
}

/// The real providers: the AWS and GCP SDKs with the standard credentials.
pub struct Providers;

#[async_trait]
impl Connect for Providers {
    async fn connect(&self, loaded: &Loaded) -> Result<Session> {
        match loaded.cloud {
            Cloud::Aws => {
                let region = &loaded.aws()?.region;
                let clients = AwsClients::from_env(region).await?;
                let (account_id, _) = aws::caller_identity(&clients)
                    .await
                    .context("cannot use the AWS credentials")?;
                let mut registry = Registry::new();
                for rt in aws::resource_types(&clients) {
                    registry.register(rt);
                }
                registry.register(RandomPassword::resource_type());
                Ok(Session {
                    registry,
                    facts: Facts {
                        account_id,
                        ..Facts::offline()
                    },
                    aws: Some(clients),
                    azure: None,
                    simulated: false,
                })
            }
            Cloud::Gcp => {
                let cfg = loaded.gcp()?;
                let clients = gcp_clients(&cfg.project).await?;
                // Service Usage answers with the project number and proves the credentials
                // work, before anything else happens.
                let project_number = gcp::project_number(&clients)
                    .await
                    .context("cannot use the Google Cloud credentials")?;
                if !cfg.enable_apis {
                    loaded.require_apis(&clients).await?;
                }
                let mut registry = Registry::new();
                for rt in gcp::resource_types(&clients) {
                    registry.register(rt);
                }
                registry.register(RandomPassword::resource_type());
                Ok(Session {
                    registry,
                    facts: Facts {
                        project_number,
                        ..Facts::offline()
                    },
                    aws: None,
                    azure: None,
                    simulated: false,
                })
            }
            Cloud::Azure => {
                let cfg = loaded.azure()?;
                let client = azure_client(&cfg.subscription_id)?;
                // One read that proves the credentials work and see the subscription.
                azure::subscription(&client)
                    .await
                    .context("cannot use the Azure credentials")?;
                loaded.check_location(&client).await?;
                if !cfg.register_providers {
                    loaded.require_providers(&client).await?;
                }
                loaded.check_existing_subnet(&client).await?;
                loaded.check_existing_cluster(&client).await?;
                let azure_existing_group = azure::foreign_group(&client, &cfg.resource_group)
                    .await
                    .context("cannot read the resource group")?;
                let mut registry = Registry::new();
                for rt in azure::resource_types(&client) {
                    registry.register(rt);
                }
                registry.register(RandomPassword::resource_type());
                Ok(Session {
                    registry,
                    facts: Facts {
                        azure_existing_group,
                        ..Facts::offline()
                    },
                    aws: None,
                    azure: Some(client),
                    simulated: false,
                })
            }
            Cloud::Sandbox => {
                let (server, clients) = loaded.sandbox_servers().await?;
                let mut registry = Registry::new();
                for rt in flyteinfra_provider_postgres::resource_types(server) {
                    registry.register(rt);
                }
                // Of AWS's types only the bucket, on the S3-compatible endpoint.
                for rt in aws::resource_types(&clients) {
                    if SANDBOX_AWS_TYPES.contains(&rt.schema().type_name) {
                        registry.register(rt);
                    }
                }
                registry.register(RandomPassword::resource_type());
                Ok(Session {
                    registry,
                    facts: Facts::offline(),
                    aws: Some(clients),
                    azure: None,
                    simulated: false,
                })
            }
        }
    }
}

/// The value of the environment variable `var` that the config key `key` names, or a
/// located error saying to set it to `what`.
fn sandbox_env(config: &Config, key: &str, var: &str, what: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!(
            "{}:{}: `{key}` names `{var}`, which is not set: set it to {what}",
            config.path().display(),
            config.position_of(key),
        ),
    }
}

/// The AWS resource types the sandbox style uses, on its S3-compatible store.
const SANDBOX_AWS_TYPES: &[&str] = &["aws_s3_bucket"];

impl Loaded {
    /// The sandbox store's access key id and secret key, from the environment variables
    /// the config names; `None` for a cloud deployment.
    pub fn sandbox_store_keys(&self) -> Result<Option<(String, String)>> {
        let Some(sandbox) = &self.config.sandbox else {
            return Ok(None);
        };
        let store = &sandbox.object_store;
        let key = sandbox_env(
            &self.config,
            "sandbox.object_store.access_key_env",
            &store.access_key_env,
            "the store's access key id",
        )?;
        let secret = sandbox_env(
            &self.config,
            "sandbox.object_store.secret_key_env",
            &store.secret_key_env,
            "the store's secret key",
        )?;
        Ok(Some((key, secret)))
    }

    /// The sandbox's PostgreSQL server (its administrator logged in once, so a wrong
    /// password is one clear error before anything else) and clients for its S3-compatible
    /// store. Every secret comes from the environment variable the config names.
    async fn sandbox_servers(&self) -> Result<(PgServer, AwsClients)> {
        let config = &self.config;
        let sandbox = config
            .sandbox
            .as_ref()
            .ok_or_else(|| anyhow!("the config has no `sandbox:` section"))?;
        let pg = &sandbox.postgres;
        let password = sandbox_env(
            config,
            "sandbox.postgres.admin_password_env",
            &pg.admin_password_env,
            "the administrator's password",
        )?;
        let store = &sandbox.object_store;
        let (key, secret) = self
            .sandbox_store_keys()?
            .expect("a sandbox config has an object store");
        let server = PgServer {
            host: pg.host.clone(),
            port: pg.port,
            admin_user: pg.admin_user.clone(),
            admin_password: flyteinfra_core::Sensitive::new(password),
            admin_database: PgServer::DEFAULT_DATABASE.to_string(),
            tls: match pg.tls {
                PgTls::Disable => TlsMode::Disable,
                PgTls::Require => TlsMode::Require,
                PgTls::VerifyFull => TlsMode::VerifyFull {
                    ca_file: config.sandbox_ca_file(),
                },
            },
        };
        flyteinfra_provider_postgres::connect(&server)
            .await
            .with_context(|| {
                format!(
                    "cannot log in to PostgreSQL at {} as `{}`",
                    server.address(),
                    server.admin_user
                )
            })?;
        let clients = AwsClients::for_endpoint(&store.region, &store.endpoint, &key, &secret).await;
        Ok((server, clients))
    }
}

/// The schemas of a cloud's resource types (its provider's, not the built-in ones).
pub fn schemas(cloud: Cloud) -> Vec<Schema> {
    match cloud {
        Cloud::Aws => flyteinfra_provider_aws::schemas(),
        Cloud::Gcp => flyteinfra_provider_gcp::schemas(),
        Cloud::Azure => flyteinfra_provider_azure::schemas(),
        Cloud::Sandbox => {
            let mut all = flyteinfra_provider_postgres::schemas();
            all.extend(
                flyteinfra_provider_aws::schemas()
                    .into_iter()
                    .filter(|s| SANDBOX_AWS_TYPES.contains(&s.type_name)),
            );
            all
        }
    }
}

/// The schemas of every type a deployment on `cloud` registers: its provider's and the
/// built-in ones (which have schemas like any other).
pub fn all_schemas(cloud: Cloud) -> Vec<Schema> {
    let mut all = schemas(cloud);
    all.push(RandomPassword::schema());
    all
}

/// A connection to the chosen cloud for one command.
pub struct Session {
    /// Every resource type, talking to the cloud (or the simulated one).
    pub registry: Registry,
    /// What the blueprint needs to know about the account.
    pub facts: Facts,
    /// The AWS clients, when talking to AWS (for the call count).
    pub aws: Option<AwsClients>,
    /// The Resource Manager client, when talking to Azure (for the call count).
    pub azure: Option<ArmClient>,
    /// Talking to a simulated cloud (only in the test-only `flyteinfra-sim` binary), whose
    /// creates are atomic: nothing from an interrupted run can still land, so no settle time.
    pub simulated: bool,
}

impl Session {
    /// Reports on stderr, when dropped, how many requests the command sent to the cloud.
    pub fn call_report(&self) -> CallReport {
        CallReport(self.aws.clone(), self.azure.clone())
    }
}

/// Prints `API calls: N` when dropped (the command is over, whatever its outcome).
pub struct CallReport(Option<AwsClients>, Option<ArmClient>);

impl Drop for CallReport {
    fn drop(&mut self) {
        let counts = match (&self.0, &self.1) {
            (Some(c), _) => Some(("AWS", c.calls(), c.calls_by_operation())),
            (None, Some(c)) => Some(("Azure", c.calls(), c.calls_by_operation())),
            (None, None) => None,
        };
        if let Some((cloud, total, by_op)) = counts {
            eprintln!("{cloud} API calls: {total}");
            // `FLYTEINFRA_LOG_CALLS=1` adds the count per operation (for tuning refresh).
            if std::env::var_os("FLYTEINFRA_LOG_CALLS").is_some() {
                for (op, n) in by_op {
                    eprintln!("  {n:>4}  {op}");
                }
            }
        }
    }
}

/// A held state lease, before the state is loaded.
pub struct Held {
    manager: StateManager,
    lease: Lease,
}

impl Held {
    /// Loads the state under this lease; with `registry`, every resource and intent in it
    /// must have a type the registry knows (checked before any provider is called:
    /// refresh and reconciliation would otherwise meet it half-way).
    pub fn load(mut self, loaded: &Loaded, registry: Option<&Registry>) -> Result<OpenState> {
        let (deployment, cloud) = (&loaded.config.name, loaded.cloud.as_str());
        let mut doc = match registry {
            Some(r) => self
                .manager
                .load_with_types(deployment, cloud, &|t| r.get(t).is_some())?,
            None => self.manager.load(deployment, cloud)?,
        };
        loaded.mark_sensitive(&mut doc);
        Ok(OpenState {
            manager: self.manager,
            doc,
            lock: self.lease,
        })
    }
}

/// A leased, loaded state.
pub struct OpenState {
    pub manager: StateManager,
    pub doc: StateDoc,
    /// Held until the command ends: renewed in the background, released on drop, and
    /// taken over by others if this process stops renewing it.
    pub lock: Lease,
}

/// `30s`, `1500ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses `30s`, `5m`, `250ms`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a duration: expected e.g. `30s`, `5m`, `250ms`"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!("`{s}` is not a duration: expected e.g. `30s`, `5m`, `250ms`"),
    })
}

/// The sealer `config`'s `state.encryption` names, or `None`. A passphrase variable that
/// is unset or empty is a located error here, before anything is read or written.
fn sealer_for(config: &Config) -> Result<Option<Sealer>> {
    let Some(enc) = &config.state.encryption else {
        return Ok(None);
    };
    let source = match (&enc.passphrase_env, &enc.aws_kms) {
        (Some(env), _) => {
            if std::env::var_os(env).is_none_or(|v| v.is_empty()) {
                bail!(
                    "{}:{}: `state.encryption.passphrase_env` names `{env}`, which is not set: set it to the passphrase the state is sealed with",
                    config.path().display(),
                    config.position_of("state.encryption.passphrase_env"),
                );
            }
            KeySource::passphrase_from_env(env.clone())
        }
        (None, Some(kms)) => KeySource::AwsKms {
            key_id: kms.key_id.clone(),
            region: kms.region.clone(),
        },
        (None, None) => bail!("`state.encryption` names no key source"),
    };
    Ok(Some(Sealer::new(source)?))
}

/// Overrides Google's endpoints (the test double, a storage emulator): every API with no
/// emulator goes to this base URL, with anonymous credentials.
pub const GCP_ENDPOINT_ENV: &str = "FLYTEINFRA_GCP_ENDPOINT";
/// Overrides the GCS JSON API endpoint (a storage emulator).
pub const GCS_ENDPOINT_ENV: &str = "FLYTEINFRA_GCS_ENDPOINT";

/// Overrides Azure Resource Manager's endpoint (the Azure test double): a loopback URL,
/// called with no credentials.
pub const AZURE_ENDPOINT_ENV: &str = "FLYTEINFRA_AZURE_ENDPOINT";
/// Overrides the blob data-plane endpoint (Azurite): a loopback URL standing for every
/// storage account, with a SAS query string; called with no token. Must be set together
/// with [`AZURE_ENDPOINT_ENV`].
pub const AZURE_BLOB_ENDPOINT_ENV: &str = "FLYTEINFRA_AZURE_BLOB_ENDPOINT";
/// Sets a fixed poll interval in milliseconds for every Azure wait (the test double
/// finishes operations after a few polls); unset, each wait's adaptive schedule.
pub const AZURE_POLL_ENV: &str = "FLYTEINFRA_AZURE_POLL_MS";

/// The Resource Manager client for `subscription`: Azure's endpoint with the credential
/// chain, or the loopback endpoint from the environment with none (tests and the demo). A
/// non-loopback override is refused: no token is ever sent to it, and none is safe there.
pub(crate) fn azure_client(subscription: &str) -> Result<ArmClient> {
    let poll =
        flyteinfra_core::interval_from_env(AZURE_POLL_ENV, std::env::var_os(AZURE_POLL_ENV))?;
    let arm = std::env::var(AZURE_ENDPOINT_ENV).ok();
    let blob = std::env::var(AZURE_BLOB_ENDPOINT_ENV).ok();
    let client = match (arm, blob) {
        (None, None) => azure::azure_client(subscription),
        (Some(arm), Some(blob)) if is_loopback_url(&arm) && is_loopback_url(&blob) => {
            ArmClient::new(&arm, subscription, None)
                .with_blob_plane(azure::BlobPlane::local(&blob)?)
        }
        (arm, blob) => {
            // Without the query: the blob endpoint's carries a SAS.
            let show = |v: Option<String>| {
                v.map_or("unset".to_string(), |v| {
                    format!("`{}`", v.split('?').next().unwrap_or_default())
                })
            };
            bail!(
                "`{AZURE_ENDPOINT_ENV}` and `{AZURE_BLOB_ENDPOINT_ENV}` must both be set to \
                 loopback URLs (127.0.0.0/8, localhost, [::1]), which are called with no \
                 credentials; they are {} and {}. Unset both to use Azure with your credentials",
                show(arm),
                show(blob)
            )
        }
    };
    Ok(match poll {
        Some(interval) => client.with_poll_interval(interval),
        None => client,
    })
}

/// How the GCS state backend reaches Cloud Storage: Application Default Credentials, or
/// the loopback storage emulator `FLYTEINFRA_GCS_ENDPOINT` names (anonymous).
fn gcs_state_access() -> Result<GcsAccess> {
    match std::env::var(GCS_ENDPOINT_ENV).ok() {
        None => Ok(GcsAccess::Adc),
        Some(endpoint) if is_loopback_url(&endpoint) => Ok(GcsAccess::Local { endpoint }),
        Some(endpoint) => bail!(
            "`{GCS_ENDPOINT_ENV}` must be a loopback URL (127.0.0.0/8, localhost, [::1]), which is called with anonymous credentials; it is `{endpoint}`. Unset it to use Google with Application Default Credentials"
        ),
    }
}

/// How the Azure Blob state backend reaches storage: the Azure credential chain, or the
/// loopback blob endpoint with a SAS that `FLYTEINFRA_AZURE_BLOB_ENDPOINT` names (Azurite).
fn azure_state_access() -> Result<AzBlobAccess> {
    match std::env::var(AZURE_BLOB_ENDPOINT_ENV).ok() {
        None => Ok(AzBlobAccess::Token(Arc::new(
            azure::ChainCredential::from_env(),
        ))),
        Some(url) if is_loopback_url(&url) => Ok(AzBlobAccess::Local {
            endpoint_with_sas: url,
        }),
        // Never echoed: the value carries a SAS.
        Some(_) => bail!(
            "`{AZURE_BLOB_ENDPOINT_ENV}` must be a loopback URL (127.0.0.0/8, localhost, [::1]) with a SAS query; it is not. Unset it to use Azure with your credentials"
        ),
    }
}

/// Clients for `project`: Application Default Credentials and Google's endpoints, or the
/// loopback endpoints from the environment (tests and the demo).
async fn gcp_clients(project: &str) -> Result<GcpClients> {
    let apis = std::env::var(GCP_ENDPOINT_ENV).ok();
    let storage = std::env::var(GCS_ENDPOINT_ENV).ok();
    let clients = match local_endpoints(apis, storage)? {
        Some(endpoints) => GcpClients::for_endpoints(project, endpoints).await,
        None => GcpClients::from_env(project).await,
    };
    clients.context("cannot set up the Google Cloud clients")
}

/// The endpoint overrides, checked before any call. Anonymous credentials are only safe when
/// no call can reach Google, so both variables must be set and both must be loopback;
/// anything else (one of them, or a remote host) is refused, naming both.
fn local_endpoints(apis: Option<String>, storage: Option<String>) -> Result<Option<Endpoints>> {
    let (apis, storage) = match (apis, storage) {
        (None, None) => return Ok(None),
        (Some(apis), Some(storage)) if is_loopback_url(&apis) && is_loopback_url(&storage) => {
            (apis, storage)
        }
        (apis, storage) => {
            let show = |v: Option<String>| v.map_or("unset".to_string(), |v| format!("`{v}`"));
            bail!(
                "`{GCP_ENDPOINT_ENV}` and `{GCS_ENDPOINT_ENV}` must both be set to loopback URLs \
                 (127.0.0.0/8, localhost, [::1]), which are called with anonymous credentials; \
                 they are {} and {}. Unset both to use Google with Application Default Credentials",
                show(apis),
                show(storage)
            )
        }
    };
    Ok(Some(Endpoints {
        apis: Some(apis),
        storage,
    }))
}

/// `http(s)://host[:port][/path]` whose host is 127.0.0.0/8, `localhost` or `[::1]`.
fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo would make `http://127.0.0.1@example.com` look local.
    if authority.contains('@') {
        return false;
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, port)) = v6.split_once(']') else {
            return false;
        };
        return (port.is_empty() || port.starts_with(':'))
            && host
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|ip| ip.is_loopback());
    }
    let host = authority.split(':').next().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn anonymous_credentials_only_when_both_google_endpoints_are_loopback() {
        assert!(
            local_endpoints(None, None).unwrap().is_none(),
            "Google, ADC"
        );
        let ep = local_endpoints(s("http://127.0.0.1:8080"), s("http://localhost:9023/"))
            .unwrap()
            .unwrap();
        assert_eq!(ep.apis.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(ep.storage, "http://localhost:9023/");
        assert!(local_endpoints(s("http://[::1]:1"), s("https://127.8.9.10")).is_ok());

        let refused = [
            (None, s("http://127.0.0.1:9023")),
            (s("http://127.0.0.1:8080"), None),
            (
                s("http://127.0.0.1:8080"),
                s("https://storage.googleapis.com"),
            ),
            (s("http://10.0.0.1:8080"), s("http://127.0.0.1:9023")),
        ];
        for (apis, storage) in refused {
            let err = local_endpoints(apis.clone(), storage.clone())
                .expect_err(&format!("{apis:?} {storage:?}"))
                .to_string();
            assert!(
                err.contains(GCP_ENDPOINT_ENV) && err.contains(GCS_ENDPOINT_ENV),
                "{err}"
            );
        }
    }

    #[test]
    fn loopback_urls() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.255.0.3/x",
            "https://localhost",
            "http://LOCALHOST:1/",
            "http://[::1]:9023",
            "http://[::1]",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://storage.googleapis.com",
            "http://128.0.0.1",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1@example.com",
            "http://[::2]:1",
            "127.0.0.1:8080",
            "ftp://127.0.0.1",
            "",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
