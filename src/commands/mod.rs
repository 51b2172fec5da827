//! One module per command family; each returns an [`ExitStatus`].

pub mod plan;

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
        .map_err(|_| anyhow!("`--cloud` expects `aws`, `gcp` or `azure`"))?;
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
    let mut open = loaded.open_state_for(
        "flyteinfra import",
        parse_duration(&lock.lock_timeout)?,
        &registry,
    )?;
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

/// `flyteinfra kubeconfig`. AKS puts the API server's CA only in the credential it hands
/// out, so on Azure this asks for that (one ARM call) and takes its entries, as
/// `az aks get-credentials` does; a credential holding a key is never printed.
pub async fn kubeconfig(loaded: &Loaded, out: Option<&Path>, merge: bool) -> Result<ExitStatus> {
    use flyteinfra_flyte::access;
    let doc = loaded.read_state()?;
    let outputs = doc.output_values();
    let access = if loaded.cloud == Cloud::Azure {
        let (subscription, cluster) = access::aks_cluster(&outputs)?;
        let client = crate::context::azure_client(subscription)?;
        let text = flyteinfra_provider_azure::cluster_user_kubeconfig(&client, cluster)
            .await
            .map_err(|e| anyhow!("cannot get the credential of `{cluster}`: {e}"))?;
        let handed_out: serde_json::Value = serde_saphyr::from_str(&text)
            .map_err(|_| anyhow!("the credential AKS handed out for `{cluster}` is not YAML"))?;
        access::aks_access(&outputs, &handed_out)?
    } else {
        access::cluster_access(loaded.cloud, &outputs)?
    };
    if access.holds_secret() && out.is_none() && !merge {
        bail!(
            "the credential AKS hands out for `{}` holds a client key (the cluster has local \
             accounts), so it is not printed: write it with `--out FILE` (mode 0600) or `--merge`",
            access.name
        );
    }
    if merge {
        let path = kubeconfig_path()?;
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => serde_saphyr::from_str(&text)
                .with_context(|| format!("`{}` is not a kubeconfig file", path.display()))?,
            Ok(_) => serde_json::Value::Null,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        };
        let merged = access.merge_into(existing);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        write_private(&path, serde_saphyr::to_string(&merged)?.as_bytes())?;
        eprintln!(
            "Merged `{}` into `{}` and made it the current context.",
            access.name,
            path.display()
        );
        return Ok(ExitStatus::Success);
    }
    let text = serde_saphyr::to_string(&access.document())?;
    match out {
        Some(p) => {
            write_private(p, text.as_bytes())?;
            eprintln!(
                "Wrote `{}`: `export KUBECONFIG={}`, then `kubectl get nodes`.",
                p.display(),
                p.display()
            );
        }
        None => write!(std::io::stdout(), "{text}")?,
    }
    Ok(ExitStatus::Success)
}

/// The kubeconfig kubectl uses: the first file in `$KUBECONFIG`, else `~/.kube/config`.
fn kubeconfig_path() -> Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("neither `KUBECONFIG` nor `HOME` is set: use `--out FILE`"))?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// `flyteinfra values`.
pub fn values(loaded: &Loaded, out: Option<&Path>, secret_out: &Path) -> Result<ExitStatus> {
    let doc = loaded.read_state()?;
    let r = render_values(loaded, &doc)?;
    write_private(secret_out, r.secret.as_bytes())?;
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
    eprintln!("Install: {}", r.helm_command);
    Ok(ExitStatus::Success)
}
