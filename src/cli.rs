//! Command-line arguments (what the user typed), before validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The version and the commit the binary was built from (`unknown` outside git).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FLYTEINFRA_COMMIT"),
    ")"
);

/// Provision every cloud prerequisite of a Flyte deployment and write Helm values that work.
#[derive(Parser, Debug)]
#[command(name = "flyteinfra", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        default_value = "flyteinfra.yaml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// Which cloud to work on; overrides `cloud:` in the config. Each cloud has its own state.
    #[arg(long, global = true, value_name = "aws|gcp|azure")]
    pub cloud: Option<String>,
    /// Never colour the plan (also with `NO_COLOR` set; colour is only ever used on a
    /// terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by commands that take the state lock.
#[derive(Args, Debug, Clone)]
pub struct LockArgs {
    /// How long to wait for the state lease held by another command (e.g. `30s`, `5m`).
    /// A lease its holder stopped renewing is taken over after the lease TTL
    /// (`state.<backend>.lease_ttl`, 30s by default) of waiting.
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub lock_timeout: String,
}

/// Options shared by plan, apply and destroy.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Read the cloud's actual state before diffing (`--refresh=false` to skip) [default: true].
    #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: Option<bool>,
    /// Limit to this resource and what it depends on (repeatable).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

impl PlanArgs {
    /// Whether to refresh (the default) or plan from state alone.
    pub fn refresh(&self) -> bool {
        self.refresh.unwrap_or(true)
    }
}

/// What kind of plan `plan` and `apply` make (not `destroy`, which is always a destroy).
#[derive(Args, Debug, Clone, Default)]
pub struct ModeArgs {
    /// Delete and re-create this resource even if nothing changed (repeatable); shown as a
    /// replace with the reason "requested".
    #[arg(long = "replace", value_name = "ADDR", conflicts_with = "refresh_only")]
    pub replace: Vec<String>,
    /// Only take what the cloud now has into state (objects deleted outside flyteinfra are
    /// dropped); change nothing in the cloud.
    #[arg(long)]
    pub refresh_only: bool,
}

/// Asking before changing anything.
#[derive(Args, Debug, Clone, Default)]
pub struct ApproveArgs {
    /// Do not ask `Do you want to perform these actions?`; needed when stdin is not a
    /// terminal (CI), unless a saved plan is applied.
    #[arg(long)]
    pub auto_approve: bool,
}

/// Every command.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a commented starter config for `--cloud` (default aws) to `--config`.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check the config without network access.
    Validate,
    /// Print the config's JSON Schema, or with `--plan` the schema of `plan --json`.
    Schema {
        /// The schema of the machine-readable plan (`plan --json`, format version 2).
        #[arg(long)]
        plan: bool,
    },
    /// Print a shell completion script (`source <(flyteinfra completions bash)`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `flyteinfra man | man -l -`).
    Man,
    /// Show what apply would change.
    Plan {
        #[command(flatten)]
        args: PlanArgs,
        #[command(flatten)]
        mode: ModeArgs,
        /// Plan the destroy of every resource flyteinfra manages for this cloud (review it,
        /// save it with `--out`, carry it out with `flyteinfra apply FILE`).
        #[arg(long, conflicts_with_all = ["replace", "refresh_only"])]
        destroy: bool,
        /// With `--destroy`: turn deletion protection off, then delete, for each protected database (RDS
        /// `deletion_protection`, Cloud SQL `deletionProtectionEnabled`) instead of refusing.
        /// The plan shows each one ("deletion protection will be turned off, then the
        /// database deleted", with the final snapshot's name where the type takes one)
        /// and asks first; protection is turned off (and recorded in state) just before
        /// that database's delete, never earlier.
        #[arg(long, requires = "destroy")]
        disable_protection: bool,
        /// Print the plan as versioned JSON (see ARCHITECTURE.md) instead of text.
        #[arg(long)]
        json: bool,
        /// Save the plan to FILE for `flyteinfra apply FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Create, update or delete resources to match the config. Shows the plan and asks
    /// first, unless `--auto-approve` or a saved plan (the saved plan was the review).
    Apply {
        /// A plan saved with `plan --out`; refused if the state moved since. Takes no
        /// `--target`, `--refresh`, `--replace` or `--refresh-only`: the plan fixed them.
        plan_file: Option<PathBuf>,
        #[command(flatten)]
        args: PlanArgs,
        #[command(flatten)]
        mode: ModeArgs,
        #[command(flatten)]
        approve: ApproveArgs,
        /// At most this many API calls in flight (waiting on the cloud does not count).
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
    },
    /// Delete every resource flyteinfra manages for this cloud. Shows the plan and asks
    /// first, unless `--auto-approve`; `plan --destroy --out FILE` saves it for review.
    /// Buckets that hold objects are refused unless `storage.force_destroy: true`.
    Destroy {
        #[command(flatten)]
        args: PlanArgs,
        #[command(flatten)]
        approve: ApproveArgs,
        /// Turn deletion protection off, then delete, for each protected database (RDS
        /// `deletion_protection`, Cloud SQL `deletionProtectionEnabled`) instead of refusing.
        /// The plan shows each one ("deletion protection will be turned off, then the
        /// database deleted", with the final snapshot's name where the type takes one)
        /// and asks first; protection is turned off (and recorded in state) just before
        /// that database's delete, never earlier.
        #[arg(long)]
        disable_protection: bool,
        /// At most this many API calls in flight.
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
    },
    /// Bring an existing cloud object under management as ADDR.
    Import {
        /// The resource address in the blueprint, e.g. `aws_s3_bucket.metadata`.
        address: String,
        /// The cloud id of the object.
        id: String,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Inspect or edit the state.
    State {
        /// What to do.
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Print outputs (sensitive ones redacted).
    Output {
        /// Just this output.
        name: Option<String>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write Helm values for the config's chart (`flyte.chart`: `flyte-binary` or
    /// `flyte-core`) from state, and the database password as a separate Kubernetes Secret
    /// manifest (mode 0600). `style: multi-cluster`: one values file per cluster and each
    /// data plane's `flyteadmin` token Secret manifest, all into `--out-dir`.
    Values {
        /// Write the values here instead of stdout.
        #[arg(long, value_name = "FILE", conflicts_with = "out_dir")]
        out: Option<PathBuf>,
        /// Write every file into DIR (mode 0600), named as apply names them next to the
        /// config; needed with `style: multi-cluster`.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Where to write the Secret manifest [default: `flyte-db-secret.yaml`, or
        /// `DIR/flyte-db-secret-<cloud>.yaml` with `--out-dir`].
        #[arg(long, value_name = "FILE")]
        secret_out: Option<PathBuf>,
    },
    /// A kubeconfig for the deployment's cluster (created or `existing:`), as the cloud's
    /// CLI writes one: an `exec` entry (`aws eks get-token`, `gke-gcloud-auth-plugin`), no
    /// secret in the file. Printed, or written with `--out`, or merged with `--merge`. AKS:
    /// the credential the cluster hands out (as `az aks get-credentials` writes it), which
    /// holds a key with local accounts, so it is only written, never printed.
    /// `style: multi-cluster`: every cluster (the control plane's context made current)
    /// with `--out` or `--merge`, or the one `--cluster` names.
    Kubeconfig {
        /// Write it to this file (mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE", conflicts_with = "merge")]
        out: Option<PathBuf>,
        /// Add it to `$KUBECONFIG` (its first file) or `~/.kube/config`, keeping every other
        /// entry, and make its context current.
        #[arg(long)]
        merge: bool,
        /// `style: multi-cluster`: only this cluster, `control` or a data plane's name.
        #[arg(long, value_name = "NAME")]
        cluster: Option<String>,
    },
    /// `style: multi-cluster`: read each data plane's `flyteadmin` token and CA (Secret
    /// `flyteadmin-token`, through the kubeconfig's context for that plane: the name
    /// `flyteinfra kubeconfig` gives it, or `<deployment>-<plane>`) and write the control
    /// plane's Secret `cluster-credentials` manifest (mode 0600). Run it after
    /// `helm install` and the token Secret in every data plane, before installing the
    /// control plane. Tokens are never printed.
    ClusterCredentials {
        /// The kubeconfig holding a context for every data plane.
        #[arg(long, value_name = "FILE")]
        kubeconfig: PathBuf,
        /// Where to write the Secret manifest.
        #[arg(long, value_name = "FILE", default_value = "cluster-credentials.yaml")]
        out: PathBuf,
    },
    /// Print the dependency graph.
    Graph {
        /// The format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
}

/// State subcommands.
#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// List resource addresses.
    List,
    /// Show one resource (sensitive values redacted).
    Show {
        /// The address.
        address: String,
    },
    /// Forget a resource without deleting it in the cloud.
    Rm {
        /// The address.
        address: String,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Print the current state document (secrets as `(sensitive)`); with `--out FILE`,
    /// write the whole document, secrets included, to a private file for `state push`
    /// (sealed with the state's key when `state.encryption` is set).
    Pull {
        /// The file to write (mode 600) instead of printing.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Replace the state with FILE (as written by `state pull --out`). Refuses another
    /// lineage, an older serial, or the same serial with other contents, unless `--force`.
    Push {
        /// The state document to push.
        file: PathBuf,
        /// Push even what would be refused.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Copy the state to another place, under the leases of both, read it back and
    /// compare; the source is kept as it was. `--update-config` then switches the
    /// config's `state:` section.
    Migrate {
        /// Where to: `local:PATH` (relative to the config),
        /// `s3://BUCKET/PREFIX?region=REGION`, `postgres:CONN_ENV?schema=SCHEMA` (the
        /// connection string in the environment variable CONN_ENV; `&tls=disable`,
        /// `require` (the default) or `verify-full`, and `&ca_file=PATH`, as in
        /// `state.postgres`), `gs://BUCKET/PREFIX`
        /// or `azurerm://ACCOUNT/CONTAINER/PREFIX`. The state's encryption setting goes
        /// with it.
        #[arg(long, value_name = "LOCATION")]
        to: String,
        /// Rewrite the config's `state:` section to the new place once the copy is checked.
        #[arg(long)]
        update_config: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Break the state lease of a command known to be gone, at once. A waiting command
    /// takes over a lease that is not renewed for its TTL by itself; this is the human
    /// override, and names the holder it breaks.
    Unlock {
        /// The lease id to break, as the "is locked by" message names it (the holder's
        /// next state write then fails, and it stops).
        #[arg(long, value_name = "LEASE_ID")]
        force: String,
    },
}

/// Graph output formats.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}
