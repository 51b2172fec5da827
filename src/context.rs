//! What every command needs: the config, the chosen cloud, its providers and its state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use flyteinfra_core::builtin::RandomPassword;
use flyteinfra_core::sim::{SimBehavior, SimCloud};
use flyteinfra_core::{Graph, Registry, Schema};
use flyteinfra_flyte::{Blueprint, Cloud, Config, Facts, GCP_REQUIRED_APIS, StateConfig, expand};
use flyteinfra_provider_aws::{self as aws, AwsClients};
use flyteinfra_provider_gcp::{self as gcp, Endpoints, GcpClients};
use flyteinfra_state::{LocalBackend, LockGuard, LockInfo, StateDoc, StateManager};

/// The environment variable that points flyteinfra at the simulated cloud (a test double
/// for tests and the offline demo). Never set it against a real deployment.
pub const SIMULATE_ENV: &str = "FLYTEINFRA_SIMULATE";

/// A loaded config and the cloud chosen for this run.
pub struct Loaded {
    pub config: Config,
    pub config_path: PathBuf,
    pub cloud: Cloud,
}

impl Loaded {
    /// Loads and validates the config and selects the cloud.
    pub fn new(path: &Path, cloud: Option<&str>) -> Result<Loaded> {
        let over = cloud
            .map(|c| {
                c.parse::<Cloud>().map_err(|_| {
                    anyhow!("`--cloud {c}` is not a cloud: expected `aws`, `gcp` or `azure`")
                })
            })
            .transpose()?;
        let config = Config::load(path)?;
        let cloud = config.select_cloud(over)?;
        Ok(Loaded {
            config,
            config_path: path.to_path_buf(),
            cloud,
        })
    }

    /// The resources and outputs this deployment needs on the chosen cloud.
    pub fn blueprint(&self, facts: &Facts) -> Result<Blueprint> {
        Ok(expand(&self.config, self.cloud, facts)?)
    }

    /// The directory holding this deployment's state files.
    fn state_dir(&self) -> PathBuf {
        let StateConfig::Local(local) = &self.config.state;
        let base = self
            .config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        base.join(&local.path)
    }

    /// Opens the chosen cloud's state, taking its lock for the whole command.
    pub fn open_state(&self, command: &str, timeout: Duration) -> Result<OpenState> {
        let backend = LocalBackend::for_cloud(&self.state_dir(), self.cloud.as_str())?;
        let mut manager = StateManager::new(backend);
        let lock = manager.lock(LockInfo::new(command), timeout)?;
        let doc = manager.load(&self.config.name, self.cloud.as_str())?;
        Ok(OpenState { manager, doc, lock })
    }

    /// Reads the chosen cloud's state without locking (read-only commands).
    pub fn read_state(&self) -> Result<StateDoc> {
        let backend = LocalBackend::for_cloud(&self.state_dir(), self.cloud.as_str())?;
        let mut manager = StateManager::new(backend);
        Ok(manager.load(&self.config.name, self.cloud.as_str())?)
    }

    /// Connects to the chosen cloud: its resource types, and the facts the blueprint needs
    /// (for AWS, the account id from `sts:GetCallerIdentity`, which also checks the
    /// credentials before anything else happens).
    pub async fn session(&self) -> Result<Session> {
        self.check_region()?;
        if let Ok(path) = std::env::var(SIMULATE_ENV) {
            let sim = SimCloud::with_file(Path::new(&path), sim_behavior()?);
            let mut registry = sim.registry(schemas(self.cloud));
            registry.register(RandomPassword::resource_type());
            return Ok(Session {
                registry,
                facts: Facts {
                    account_id: "123456789012".to_string(),
                    project_number: "123456789012".to_string(),
                },
                aws: None,
                simulated: true,
            });
        }
        match self.cloud {
            Cloud::Aws => {
                let region = &self.aws()?.region;
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
                        project_number: String::new(),
                    },
                    aws: Some(clients),
                    simulated: false,
                })
            }
            Cloud::Gcp => {
                let cfg = self.gcp()?;
                let clients = gcp_clients(&cfg.project).await?;
                // Service Usage answers with the project number and proves the credentials
                // work, before anything else happens.
                let project_number = gcp::project_number(&clients)
                    .await
                    .context("cannot use the Google Cloud credentials")?;
                if !cfg.enable_apis {
                    self.require_apis(&clients).await?;
                }
                let mut registry = Registry::new();
                for rt in gcp::resource_types(&clients) {
                    registry.register(rt);
                }
                registry.register(RandomPassword::resource_type());
                Ok(Session {
                    registry,
                    facts: Facts {
                        account_id: String::new(),
                        project_number,
                    },
                    aws: None,
                    simulated: false,
                })
            }
            other => bail!(
                "deployments on {other} are not supported yet: only `aws` and `gcp` can be planned in this version"
            ),
        }
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

/// The schemas of a cloud's resource types.
pub fn schemas(cloud: Cloud) -> Vec<Schema> {
    match cloud {
        Cloud::Aws => flyteinfra_provider_aws::schemas(),
        Cloud::Gcp => flyteinfra_provider_gcp::schemas(),
        Cloud::Azure => Vec::new(),
    }
}

/// The simulated cloud's behavior from the environment: `FLYTEINFRA_SIMULATE_DELAY_MS`
/// (latency of each call), `FLYTEINFRA_SIMULATE_POLLS` (polls before a slow create — one
/// that usually takes over a minute — is ready) and `FLYTEINFRA_SIMULATE_POLL_MS`.
fn sim_behavior() -> Result<SimBehavior> {
    let num = |name: &str| -> Result<u64> {
        match std::env::var(name) {
            Ok(v) => v
                .parse()
                .with_context(|| format!("`{name}={v}` is not a whole number")),
            Err(_) => Ok(0),
        }
    };
    let polls = num("FLYTEINFRA_SIMULATE_POLLS")? as u32;
    let mut b = SimBehavior {
        call_delay: Duration::from_millis(num("FLYTEINFRA_SIMULATE_DELAY_MS")?),
        poll_interval: Duration::from_millis(num("FLYTEINFRA_SIMULATE_POLL_MS")?),
        ..SimBehavior::default()
    };
    if polls > 0 {
        for cloud in [Cloud::Aws, Cloud::Gcp, Cloud::Azure] {
            for s in schemas(cloud) {
                if s.expected_create > Duration::from_secs(60) {
                    b.create_polls.insert(s.type_name.to_string(), polls);
                }
            }
        }
    }
    Ok(b)
}

/// A connection to the chosen cloud for one command.
pub struct Session {
    /// Every resource type, talking to the cloud (or the simulated one).
    pub registry: Registry,
    /// What the blueprint needs to know about the account.
    pub facts: Facts,
    /// The AWS clients, when talking to AWS (for the call count).
    pub aws: Option<AwsClients>,
    /// Talking to the simulated cloud (`FLYTEINFRA_SIMULATE`), not a real provider.
    pub simulated: bool,
}

impl Session {
    /// Reports on stderr, when dropped, how many requests the command sent to the cloud.
    pub fn call_report(&self) -> CallReport {
        CallReport(self.aws.clone())
    }
}

/// Prints `API calls: N` when dropped (the command is over, whatever its outcome).
pub struct CallReport(Option<AwsClients>);

impl Drop for CallReport {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            eprintln!("AWS API calls: {}", c.calls());
            // `FLYTEINFRA_LOG_CALLS=1` adds the count per operation (for tuning refresh).
            if std::env::var_os("FLYTEINFRA_LOG_CALLS").is_some() {
                for (op, n) in c.calls_by_operation() {
                    eprintln!("  {n:>4}  {op}");
                }
            }
        }
    }
}

/// A locked, loaded state.
pub struct OpenState {
    pub manager: StateManager<LocalBackend>,
    pub doc: StateDoc,
    /// Held until the command ends; the kernel releases it if the process dies.
    pub lock: LockGuard,
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

/// Overrides Google's endpoints (the test double, a storage emulator): every API with no
/// emulator goes to this base URL, with anonymous credentials.
pub const GCP_ENDPOINT_ENV: &str = "FLYTEINFRA_GCP_ENDPOINT";
/// Overrides the GCS JSON API endpoint (a storage emulator).
pub const GCS_ENDPOINT_ENV: &str = "FLYTEINFRA_GCS_ENDPOINT";

/// Clients for `project`: Application Default Credentials and Google's endpoints, or the
/// loopback endpoints from the environment (tests and the demo).
async fn gcp_clients(project: &str) -> Result<GcpClients> {
    let apis = std::env::var(GCP_ENDPOINT_ENV).ok();
    let storage = std::env::var(GCS_ENDPOINT_ENV).ok();
    let clients = if apis.is_some() || storage.is_some() {
        let google = Endpoints::google();
        GcpClients::for_endpoints(
            project,
            Endpoints {
                apis,
                storage: storage.unwrap_or(google.storage),
            },
        )
        .await
    } else {
        GcpClients::from_env(project).await
    };
    clients.context("cannot set up the Google Cloud clients")
}
