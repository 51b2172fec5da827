//! One module per command family; each returns an [`ExitStatus`].

pub mod clusters;
pub mod plan;
mod state_move;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use flyteinfra_core::{Address, Attributes, ReadRequest, Value};
use flyteinfra_flyte::{Cloud, json_schema, starter};
use flyteinfra_state::{ResourceState, Status};

use crate::ExitStatus;
use crate::cli::{GraphFormat, LockArgs, StateCommand};
use crate::context::{Loaded, all_schemas, parse_duration};

/// `flyteinfra init`.
pub fn init(path: &Path, cloud: Option<&str>, force: bool) -> Result<ExitStatus> {
    let cloud: Cloud = cloud
        .unwrap_or("aws")
        .parse()
        .map_err(|_| anyhow!("`--cloud` expects `aws`, `gcp`, `azure` or `sandbox`"))?;
    if path.exists() && !force {
        bail!(
            "`{}` already exists; pass `--force` to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, starter(cloud))?;
    eprintln!(
        "Wrote a starter {cloud} config to `{}`; edit it, then run `flyteinfra plan`.",
        path.display()
    );
    Ok(ExitStatus::Success)
}

/// `flyteinfra validate`: parse, validate and expand, with no network access.
pub fn validate(loaded: &Loaded) -> Result<ExitStatus> {
    let graph = loaded.graph()?;
    eprintln!(
        "`{}` is valid: {} resources on {}.",
        loaded.config_path.display(),
        graph.len(),
        loaded.cloud
    );
    Ok(ExitStatus::Success)
}

/// `flyteinfra schema [--plan]`.
pub fn schema(plan: bool) -> Result<ExitStatus> {
    if plan {
        write!(std::io::stdout(), "{}", flyteinfra_plans::PLAN_JSON_SCHEMA)?;
    } else {
        writeln!(std::io::stdout(), "{}", json_schema())?;
    }
    Ok(ExitStatus::Success)
}

/// `flyteinfra completions SHELL`: the script, from the same definition the parser uses.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitStatus> {
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "flyteinfra", &mut out);
    std::io::stdout().write_all(&out)?;
    Ok(ExitStatus::Success)
}

/// `flyteinfra man`: the manual page in roff.
pub fn man() -> Result<ExitStatus> {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    std::io::stdout().write_all(&out)?;
    Ok(ExitStatus::Success)
}

/// `flyteinfra graph`.
pub fn graph(loaded: &Loaded, format: GraphFormat) -> Result<ExitStatus> {
    let g = loaded.graph()?;
    let text = match format {
        GraphFormat::Dot => g.to_dot(),
        GraphFormat::Mermaid => g.to_mermaid(),
    };
    write!(std::io::stdout(), "{text}")?;
    Ok(ExitStatus::Success)
}

/// Renders attributes with sensitive values redacted.
fn redacted(loaded: &Loaded, addr: &Address, attrs: &Attributes) -> serde_json::Value {
    let schema = all_schemas(loaded.cloud)
        .into_iter()
        .find(|s| s.type_name == addr.type_name());
    let sensitive = |k: &str| schema.as_ref().is_some_and(|s| s.is_sensitive(k));
    serde_json::Value::Object(
        attrs
            .iter()
            .map(|(k, v)| {
                let v = if sensitive(k) {
                    serde_json::Value::String("(sensitive)".into())
                } else {
                    v.to_json()
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

/// `flyteinfra state ...`.
pub fn state(loaded: &Loaded, cmd: &StateCommand) -> Result<ExitStatus> {
    let mut out = std::io::stdout().lock();
    match cmd {
        StateCommand::List => {
            for a in loaded.read_state()?.resources.keys() {
                writeln!(out, "{a}")?;
            }
        }
        StateCommand::Show { address } => {
            let addr: Address = address.parse()?;
            let doc = loaded.read_state()?;
            let rs = doc
                .resources
                .get(&addr)
                .ok_or_else(|| anyhow!("`{addr}` is not in the {} state", loaded.cloud))?;
            let v = serde_json::json!({
                "address": addr.to_string(),
                "mode": rs.mode,
                "id": rs.id,
                "status": rs.status,
                "attributes": redacted(loaded, &addr, &rs.attributes),
                "dependencies": rs.dependencies,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        StateCommand::Rm { address, lock } => {
            let addr: Address = address.parse()?;
            let mut open =
                loaded.open_state("flyteinfra state rm", parse_duration(&lock.lock_timeout)?)?;
            if open.doc.resources.remove(&addr).is_none() {
                bail!("`{addr}` is not in the {} state", loaded.cloud);
            }
            open.manager.persist(&mut open.doc)?;
            eprintln!("Removed `{addr}` from state; the cloud object was not touched.");
        }
        StateCommand::Pull { out } => return state_move::pull(loaded, out.as_deref()),
        StateCommand::Push { file, force, lock } => {
            return state_move::push(loaded, file, *force, lock);
        }
        StateCommand::Migrate {
            to,
            update_config,
            lock,
        } => return state_move::migrate(loaded, to, *update_config, lock),
        StateCommand::Unlock { force } => {
            let broken = loaded.force_unlock(force)?;
            eprintln!(
                "Broke lease `{force}` on state `{}`, held by {}. Its holder stops at its next state write.",
                loaded.state_location()?,
                broken.holder_description()
            );
        }
    }
    Ok(ExitStatus::Success)
}

/// `flyteinfra output`.
pub fn output(loaded: &Loaded, name: Option<&str>, json: bool) -> Result<ExitStatus> {
    let doc = loaded.read_state()?;
    let show = |o: &flyteinfra_state::Output| -> serde_json::Value {
        if o.sensitive {
            serde_json::Value::String("(sensitive)".into())
        } else {
            o.value.to_json()
        }
    };
    let mut out = std::io::stdout().lock();
    if let Some(n) = name {
        let o = doc.outputs.get(n).ok_or_else(|| {
            anyhow!("no output `{n}`; run `flyteinfra apply` first or check the name")
        })?;
        match (&o.value, json, o.sensitive) {
            (Value::Str(s), false, false) => writeln!(out, "{s}")?,
            _ => writeln!(out, "{}", show(o))?,
        }
        return Ok(ExitStatus::Success);
    }
    if json {
        let m: serde_json::Map<String, serde_json::Value> = doc
            .outputs
            .iter()
            .map(|(k, o)| {
                (
                    k.clone(),
                    serde_json::json!({"value": show(o), "sensitive": o.sensitive}),
                )
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&m)?)?;
    } else {
        for (k, o) in &doc.outputs {
            writeln!(out, "{k} = {}", show(o))?;
        }
    }
    Ok(ExitStatus::Success)
}

/// `flyteinfra import ADDR ID`.
pub async fn import(
    loaded: &Loaded,
    address: &str,
    id: &str,
    lock: &LockArgs,
) -> Result<ExitStatus> {
    let addr: Address = address.parse()?;
    let held = loaded.lock("flyteinfra import", parse_duration(&lock.lock_timeout)?)?;
    let session = loaded.session().await?;
    let _calls = session.call_report();
    let bp = loaded.blueprint(&session.facts)?;
    let spec = bp
        .resources
        .iter()
        .find(|r| r.address == addr)
        .ok_or_else(|| {
            anyhow!("`{addr}` is not a resource of this deployment; see `flyteinfra graph`")
        })?;
    if spec.mode != flyteinfra_core::Mode::Managed {
        bail!("`{addr}` is declared `existing:`; it is read, not imported");
    }
    let registry = session.registry;
    let mut open = held.load(loaded, Some(&registry))?;
    if open.doc.resources.contains_key(&addr) {
        bail!("`{addr}` is already managed; `flyteinfra state rm {addr}` first to re-import");
    }
    let rt = registry
        .get(addr.type_name())
        .ok_or_else(|| anyhow!("unknown resource type `{}`", addr.type_name()))?;
    // The config's own values (those known now) guide the read as last-applied inputs
    // would: list order, document layout, which optional settings are managed. Server-managed
    // fields are left out so the provider reports what a config can match, and sensitive ones
    // (unreadable passwords) so an unknown secret is never taken as already applied.
    let prior_inputs: Attributes = flyteinfra_core::resolve_attributes(spec, &|r| {
        open.doc
            .resources
            .get(&r.address)
            .and_then(|rs| rs.attributes.get(&r.attribute).cloned())
            .map_or(
                flyteinfra_core::Planned::Unknown,
                flyteinfra_core::Planned::Known,
            )
    })
    .into_iter()
    .filter(|(k, _)| {
        !rt.schema()
            .field(k)
            .is_some_and(|f| f.flags.server_managed || f.flags.sensitive)
    })
    .filter_map(|(k, v)| v.known().cloned().map(|v| (k, v)))
    .collect();
    let read = flyteinfra_core::isolate::isolate(
        &addr,
        rt.read(ReadRequest {
            address: addr.clone(),
            id: id.to_string(),
            prior_inputs,
            prior_attributes: Attributes::new(),
        }),
    )
    .await?;
    let attributes = read
        .attributes
        .ok_or_else(|| anyhow!("no {} object with id `{id}` was found", addr.type_name()))?;
    // The imported object's own values become the last-applied inputs, so the next plan
    // shows exactly where it differs from the config.
    let inputs: Attributes = attributes
        .iter()
        .filter(|(k, _)| rt.schema().field(k).is_some_and(|f| f.flags.input))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A create refused because this object was not provably flyteinfra's left its intent:
    // the user has now said it is, so there is nothing left to create or look for.
    if open
        .doc
        .intents
        .get(&addr)
        .is_some_and(|i| i.operation == flyteinfra_state::Operation::Create)
    {
        open.doc.intents.remove(&addr);
    }
    open.doc.resources.insert(
        addr.clone(),
        ResourceState {
            mode: flyteinfra_core::Mode::Managed,
            id: id.to_string(),
            status: Status::Ready,
            inputs,
            attributes,
            dependencies: spec.dependencies(),
        },
    );
    open.manager.persist(&mut open.doc)?;
    eprintln!(
        "Imported `{id}` as `{addr}`; run `flyteinfra plan` to see how it differs from the config."
    );
    Ok(ExitStatus::Success)
}

/// Writes `bytes` to `path` atomically with mode 0600 (the file may hold a secret).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    flyteinfra_state::write_private(path, bytes)
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Renders values and the Secret from the state's outputs.
pub fn render_values(
    loaded: &Loaded,
    doc: &flyteinfra_state::StateDoc,
) -> Result<flyteinfra_flyte::values::Rendered<flyteinfra_flyte::Chart>> {
    let outputs = doc.output_values();
    Ok(flyteinfra_flyte::values::render(
        &loaded.config,
        loaded.cloud,
        &outputs,
    )?)
}

/// For `style: sandbox`: writes the Secret with the store's keys (mode 0600) that the
/// values' `inlineSecretRef` names, at `path`; `None` for a cloud deployment, which needs
/// none. The keys come from the environment, as for `apply`.
pub fn write_storage_secret(loaded: &Loaded, path: &Path) -> Result<Option<PathBuf>> {
    let Some((key, secret)) = loaded.sandbox_store_keys()? else {
        return Ok(None);
    };
    let config = &loaded.config;
    let manifest = flyteinfra_flyte::values::sandbox_storage_secret(
        config,
        &config.flyte.namespace,
        &key,
        &secret,
    );
    write_private(path, manifest.as_bytes())?;
    Ok(Some(path.to_path_buf()))
}

/// `flyteinfra values`: to stdout or `--out`, or every file into `--out-dir` (the only way
/// for a multi-cluster deployment, which has a file per cluster).
pub fn values(
    loaded: &Loaded,
    out: Option<&Path>,
    out_dir: Option<&Path>,
    secret_out: Option<&Path>,
) -> Result<ExitStatus> {
    let doc = loaded.read_state()?;
    let cloud = loaded.cloud;
    if loaded.config.style == flyteinfra_flyte::Style::MultiCluster {
        let Some(dir) = out_dir else {
            bail!(
                "a multi-cluster deployment has a values file per cluster and a token Secret per \
                 data plane: write them all with `flyteinfra values --out-dir DIR`"
            );
        };
        let r =
            flyteinfra_flyte::values::multi_cluster(&loaded.config, cloud, &doc.output_values())?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let secret = secret_out.map_or_else(|| dir.join(&r.secret_file), Path::to_path_buf);
        write_multi_values(loaded, &r, dir, &secret)?;
        return Ok(ExitStatus::Success);
    }
    let r = render_values(loaded, &doc)?;
    // With a directory: the names apply gives them next to the config.
    let (out, secret_out) = match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
            (
                Some(dir.join(flyteinfra_flyte::values::file_name(r.model, cloud))),
                secret_out.map_or_else(
                    || dir.join(format!("flyte-db-secret-{cloud}.yaml")),
                    Path::to_path_buf,
                ),
            )
        }
        None => (
            out.map(Path::to_path_buf),
            secret_out
                .unwrap_or(Path::new("flyte-db-secret.yaml"))
                .to_path_buf(),
        ),
    };
    let (out, secret_out) = (out.as_deref(), secret_out.as_path());
    write_private(secret_out, r.secret.as_bytes())?;
    let storage = secret_out.with_file_name(format!("flyte-storage-secret-{cloud}.yaml"));
    if let Some(p) = write_storage_secret(loaded, &storage)? {
        eprintln!(
            "Wrote the object store's keys Secret to `{}` (mode 0600): `kubectl apply -f {}` before installing.",
            p.display(),
            p.display()
        );
    }
    match out {
        Some(p) => {
            write_private(p, r.values.as_bytes())?;
            eprintln!("Wrote Helm values to `{}`.", p.display());
        }
        None => write!(std::io::stdout(), "{}", r.values)?,
    }
    eprintln!(
        "Wrote the database password Secret to `{}` (mode 0600): `kubectl apply -f {}` before installing.",
        secret_out.display(),
        secret_out.display()
    );
    match out {
        Some(p) => eprintln!(
            "Install: {}",
            flyteinfra_flyte::values::helm_command(&loaded.config, &p.display().to_string())
        ),
        None => eprintln!("Install: {}", r.helm_command),
    }
    Ok(ExitStatus::Success)
}

/// Writes a multi-cluster deployment's files into `dir` (mode 0600): each cluster's values,
/// each data plane's token Secret, and the password Secret at `secret`; then says how each
/// is installed, cluster by cluster, in order.
pub fn write_multi_values(
    loaded: &Loaded,
    r: &flyteinfra_flyte::values::MultiRendered,
    dir: &Path,
    secret: &Path,
) -> Result<()> {
    for c in r.clusters() {
        write_private(&dir.join(&c.values_file), c.values.as_bytes())?;
        if let Some((file, manifest)) = &c.token {
            write_private(&dir.join(file), manifest.as_bytes())?;
        }
    }
    write_private(secret, r.secret.as_bytes())?;
    let helm = |c: &flyteinfra_flyte::values::ClusterFiles| {
        flyteinfra_flyte::values::helm_command(
            &loaded.config,
            &dir.join(&c.values_file).display().to_string(),
        )
    };
    eprintln!(
        "Wrote Helm values for {} clusters into `{}`; install them in this order, each with \
         kubectl and helm pointed at its cluster:",
        r.planes.len() + 1,
        dir.display()
    );
    for p in &r.planes {
        let plane = p.plane.as_deref().unwrap_or_default();
        eprintln!("# data plane `{plane}`, cluster `{}`", p.cluster);
        eprintln!("{}", helm(p));
        if let Some((file, _)) = &p.token {
            eprintln!("kubectl apply -f {}", dir.join(file).display());
        }
    }
    eprintln!(
        "# control plane, cluster `{}`: first `kubectl apply -f {}` (the database password, \
         mode 0600) and the Secret `flyteinfra cluster-credentials` writes",
        r.control.cluster,
        secret.display()
    );
    eprintln!("{}", helm(&r.control));
    Ok(())
}
