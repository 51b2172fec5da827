//! `plan`, `apply`, `destroy`: refresh, diff, and carry out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use flyteinfra_apply::{
    ApplyOptions, Journal, Reconciled, apply, check_contents, protected_deletes, reconcile_intents,
    refresh, refresh_for_destroy,
};
use flyteinfra_core::retry::RetryPolicy;
use flyteinfra_core::walk::Interrupt;
use flyteinfra_core::{Address, Planned, Registry, ResourceSpec, Value};
use flyteinfra_flyte::OutputSpec;
use flyteinfra_plans::{Note, Plan, PlanInput, SavedPlan, Target, render_json, render_text};
use flyteinfra_state::{Output, StateDoc, check_plan_fresh};

use crate::ExitStatus;
use crate::cli::{ApproveArgs, ModeArgs, PlanArgs};
use crate::context::{Loaded, OpenState, parse_duration};
use crate::progress::Display;

/// Output options of `plan`.
pub struct PlanOutput<'a> {
    pub json: bool,
    pub out: Option<&'a Path>,
    pub detailed_exitcode: bool,
}

/// Which plan to make: the flags of `plan` and `apply` that shape it.
#[derive(Clone, Copy)]
pub struct PlanKind<'a> {
    /// Delete everything (`destroy`, `plan --destroy`).
    pub destroy: bool,
    /// `--disable-protection` (destroys only): turn deletion protection off, then delete.
    pub disable_protection: bool,
    /// `--replace` and `--refresh-only`.
    pub mode: &'a ModeArgs,
}

fn addresses(list: &[String]) -> Result<Vec<Address>> {
    list.iter()
        .map(|t| t.parse::<Address>().map_err(Into::into))
        .collect()
}

/// Usage errors of the plan-shaping flags, found before any call to the cloud.
fn check_flags(args: &PlanArgs, kind: PlanKind<'_>) -> Result<()> {
    if kind.mode.refresh_only && !args.refresh() {
        bail!("`--refresh-only` reads the cloud, so it cannot be combined with `--refresh=false`");
    }
    addresses(&args.targets)?;
    addresses(&kind.mode.replace)?;
    Ok(())
}

/// Reconciles intents in memory (plan) or durably (apply), then refreshes and diffs.
async fn make_plan(
    registry: &Registry,
    journal: &Journal,
    desired: &[ResourceSpec],
    args: &PlanArgs,
    kind: PlanKind<'_>,
) -> Result<Plan> {
    let wanted = desired.iter().map(|s| s.address.clone()).collect();
    for r in reconcile_intents(registry, journal, &wanted).await? {
        let line = match r {
            Reconciled::Adopted(a, id) => {
                format!("{a}: adopted `{id}`, created by an interrupted run")
            }
            Reconciled::Resumed(a) => format!(
                "{a}: an interrupted create is not in the cloud yet; apply sends it again with the same token"
            ),
            Reconciled::Dropped(a) => {
                format!("{a}: an interrupted create had not reached the cloud")
            }
            Reconciled::Deleted(a) => format!("{a}: an interrupted delete had finished"),
            Reconciled::Kept(a) => format!("{a}: an interrupted delete had not finished"),
        };
        eprintln!("note: {line}");
    }
    let state = journal.snapshot();
    let actual = if args.refresh() && kind.destroy {
        refresh_for_destroy(registry, &state).await?
    } else if args.refresh() {
        refresh(registry, &state, desired).await?
    } else {
        BTreeMap::new()
    };
    let targets = addresses(&args.targets)?;
    let replace = addresses(&kind.mode.replace)?;
    let mut plan = flyteinfra_plans::plan(PlanInput {
        desired,
        registry,
        state: &state,
        actual: &actual,
        targets: &targets,
        destroy: kind.destroy,
        replace: &replace,
        refresh_only: kind.mode.refresh_only,
        disable_protection: kind.disable_protection,
    })?;
    // Even without a refresh: this is what keeps a destroy from stopping half-way at a
    // bucket that still holds objects.
    check_contents(registry, &state, &mut plan, desired).await?;
    Ok(plan)
}

fn config_digest(path: &Path) -> String {
    // A cheap fingerprint so a saved plan can say which config it came from.
    let bytes = std::fs::read(path).unwrap_or_default();
    format!("fnv1a64:{:016x}", flyteinfra_core::fnv1a64(&bytes))
}

/// `flyteinfra plan`.
pub async fn plan(
    loaded: &Loaded,
    args: &PlanArgs,
    kind: PlanKind<'_>,
    out: PlanOutput<'_>,
) -> Result<ExitStatus> {
    check_flags(args, kind)?;
    let timeout = parse_duration(&args.lock.lock_timeout)?;
    let held = loaded.lock("flyteinfra plan", timeout)?;
    let session = loaded.session().await?;
    let _calls = session.call_report();
    let bp = loaded.blueprint(&session.facts)?;
    let registry = session.registry;
    let mut open = held.load(loaded, Some(&registry))?;
    if out.out.is_some() && open.doc.serial == 0 {
        // A saved plan names the state's lineage; a state never written has none on disk
        // yet, so write the empty document first to fix it.
        open.manager.persist(&mut open.doc)?;
    }
    // Plan never writes resources to state: reconciliation happens in memory only.
    let journal = Journal::new(open.doc.clone(), Box::new(|_| Ok(())));
    let plan = make_plan(&registry, &journal, &bp.resources, args, kind).await?;
    let mut stdout = std::io::stdout().lock();
    if out.json {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&render_json(&plan))?
        )?;
    } else {
        let text = render_text(&plan);
        if crate::style::enabled(&stdout) {
            write!(stdout, "{}", crate::style::plan(&text))?;
        } else {
            write!(stdout, "{text}")?;
        }
        write!(stdout, "{}", blueprint_notes(&bp.notes))?;
    }
    if let Some(path) = out.out {
        flyteinfra_plans::save(
            path,
            &SavedPlan {
                plan: plan.clone(),
                desired: bp.resources.clone(),
                config_digest: config_digest(&loaded.config_path),
            },
            loaded.sealer()?.as_ref(),
        )?;
        eprintln!(
            "Saved the plan to `{}`; apply it with `flyteinfra apply {}`.",
            path.display(),
            path.display()
        );
    }
    Ok(if out.detailed_exitcode && plan.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// What `apply` and `destroy` were asked to do.
pub struct ApplyArgs<'a> {
    /// A saved plan to carry out, instead of planning now.
    pub plan_file: Option<&'a Path>,
    /// Refresh, targets, lock.
    pub args: &'a PlanArgs,
    /// What kind of plan to make (when there is no plan file).
    pub kind: PlanKind<'a>,
    /// Whether to ask first.
    pub approve: &'a ApproveArgs,
    /// At most this many API calls in flight.
    pub parallelism: usize,
}

/// `apply PLANFILE` carries out exactly the saved plan: flags that would shape a new plan
/// are refused rather than silently ignored.
fn check_plan_file_flags(a: &ApplyArgs<'_>) -> Result<()> {
    let mut given = Vec::new();
    if !a.args.targets.is_empty() {
        given.push("--target");
    }
    if a.args.refresh.is_some() {
        given.push("--refresh");
    }
    if !a.kind.mode.replace.is_empty() {
        given.push("--replace");
    }
    if a.kind.mode.refresh_only {
        given.push("--refresh-only");
    }
    if !given.is_empty() {
        bail!(
            "usage: `flyteinfra apply PLANFILE` carries out the saved plan as it is and takes no {}; \
             pass them to `flyteinfra plan --out PLANFILE` instead",
            given.join(", ")
        );
    }
    Ok(())
}

/// What the blueprint left out and why (settings an S3-compatible store does not
/// support), one line each after the plan; empty when nothing was left out.
fn blueprint_notes(notes: &[String]) -> String {
    notes.iter().map(|n| format!("Note: {n}\n")).collect()
}

/// `flyteinfra apply [PLANFILE]` and `flyteinfra destroy`.
pub async fn apply_cmd(loaded: &Loaded, a: ApplyArgs<'_>) -> Result<ExitStatus> {
    if let Some(p) = a.plan_file {
        check_plan_file_flags(&a)?;
        // A plan file that cannot be used is reported before any cloud call (its types
        // and lineage are checked once the registry and the state are open).
        flyteinfra_plans::load(p, loaded.sealer()?.as_ref())?;
    } else {
        check_flags(a.args, a.kind)?;
    }
    let args = a.args;
    let timeout = parse_duration(&args.lock.lock_timeout)?;
    let command = if a.kind.destroy {
        "flyteinfra destroy"
    } else {
        "flyteinfra apply"
    };
    let held = loaded.lock(command, timeout)?;
    let session = loaded.session().await?;
    let _calls = session.call_report();
    let session_is_simulated = session.simulated;
    let bp = loaded.blueprint(&session.facts)?;
    let registry = session.registry;
    let OpenState {
        mut manager,
        doc,
        lock: lease,
    } = held.load(loaded, Some(&registry))?;
    let lease_watch = lease.watch();
    let saved = match a.plan_file {
        Some(p) => {
            // Checked whole before any provider call: a plan file is as editable as state.
            let target = Target {
                known_type: &|t| registry.get(t).is_some(),
                lineage: &doc.lineage,
            };
            let saved = flyteinfra_plans::load_for(p, &target, loaded.sealer()?.as_ref())?;
            check_plan_fresh(&doc, &saved.plan.lineage, saved.plan.serial)?;
            if saved.config_digest != config_digest(&loaded.config_path) {
                bail!(
                    "`{}` changed since the plan was saved; run `flyteinfra plan --out` again",
                    loaded.config_path.display()
                );
            }
            if saved.plan.cloud != loaded.cloud.as_str() {
                bail!(
                    "plan file `{}`, field `plan.cloud`: the saved plan is for {}, but this run is for {}",
                    p.display(),
                    flyteinfra_state::located::quoted(&saved.plan.cloud, 20),
                    loaded.cloud
                );
            }
            Some(saved)
        }
        None => None,
    };
    let journal = Journal::new(doc, Box::new(move |d| manager.persist(d)));
    let (plan, desired) = match saved {
        // The saved plan was the review: no question. Buckets may have filled since.
        Some(s) => {
            let mut plan = s.plan;
            check_contents(&registry, &journal.snapshot(), &mut plan, &s.desired).await?;
            (plan, s.desired)
        }
        None => {
            let plan = make_plan(&registry, &journal, &bp.resources, args, a.kind).await?;
            let text = render_text(&plan);
            if crate::style::enabled(&std::io::stderr()) {
                eprint!("{}", crate::style::plan(&text));
            } else {
                eprint!("{text}");
            }
            eprint!("{}", blueprint_notes(&bp.notes));
            (plan, bp.resources.clone())
        }
    };
    let destroy = plan.destroy;
    if !plan.has_changes() {
        write_outputs(&journal, &bp.outputs, destroy)?;
        return Ok(ExitStatus::Success);
    }

    // Refuse before asking or deleting anything, so a protected database does not leave a
    // half-destroyed deployment behind.
    let protected = protected_deletes(&plan);
    if !protected.is_empty() {
        let list: Vec<String> = protected
            .iter()
            .map(|(a, f)| format!("`{a}` (`{f} = true`)"))
            .collect();
        let how = if destroy {
            "`flyteinfra destroy --disable-protection` turns protection off, then deletes \
             (shown in the plan first); or set `database.deletion_protection: false`, run \
             `flyteinfra apply`, then try again"
        } else {
            "set `database.deletion_protection: false` and run `flyteinfra apply` first \
             (`flyteinfra destroy --disable-protection` turns it off as part of a destroy)"
        };
        bail!(
            "refusing to delete resources with deletion protection on: {}; {how}",
            list.join(", ")
        );
    }
    let not_empty = flyteinfra_plans::contents::refused(&plan);
    if !not_empty.is_empty() {
        let state = journal.snapshot();
        let list: Vec<String> = not_empty
            .iter()
            .map(|a| match state.resources.get(*a) {
                Some(rs) => format!("`{a}` (bucket `{}`)", rs.id),
                None => format!("`{a}`"),
            })
            .collect();
        bail!(
            "refusing to delete buckets that are not empty (≥ 1 object or object version): {}; \
             nothing was deleted. Empty them first, or set `storage.force_destroy: true` to \
             delete them with every object in them",
            list.join(", ")
        );
    }
    if a.plan_file.is_none() && !confirmed(a.approve, destroy)? {
        eprintln!("{} cancelled: nothing was changed.", verb(destroy, &plan));
        return Ok(ExitStatus::Failure);
    }
    if plan.refresh_only {
        let (changed, removed) = record_refresh(&journal, &plan)?;
        write_outputs(&journal, &bp.outputs, false)?;
        eprintln!(
            "Refresh complete: {changed} changed, {removed} removed from state; nothing in the cloud was changed."
        );
        return Ok(ExitStatus::Success);
    }

    // Past the lease's validity nothing more is called: another command may own it now.
    let watch = lease_watch.clone();
    let interrupt = Interrupt::with_deadline(move || watch.valid_until());
    install_ctrl_c(interrupt.clone());
    let options = ApplyOptions {
        parallelism: a.parallelism,
        retry: RetryPolicy::default(),
        observer: Arc::new(Display::for_stderr()),
        create_settle: create_settle(session_is_simulated)?,
    };
    let report = apply(&registry, &journal, &plan, &desired, &options, interrupt).await;
    // A lost lease ends the command here, whatever the walk reported: nothing more is
    // written, and the holder that took over carries on.
    lease_watch.check()?;
    write_outputs(&journal, &bp.outputs, destroy)?;

    let s = plan.summary();
    if report.is_success() && !destroy {
        write_values_files(loaded, &journal)?;
    }
    if report.is_success() {
        eprintln!(
            "{} complete: {} added, {} changed, {} destroyed.",
            verb(destroy, &plan),
            s.add,
            s.change,
            s.destroy
        );
        return Ok(ExitStatus::Success);
    }
    for (addr, msg) in &report.failed {
        eprintln!("error: `{addr}`: {msg}");
    }
    if !report.skipped.is_empty() {
        eprintln!(
            "skipped because something they depend on failed: {}",
            list(&report.skipped)
        );
    }
    if !report.interrupted.is_empty() {
        eprintln!(
            "interrupted: {}; run `flyteinfra {}` again to resume (creates already accepted by the cloud are waited for, not repeated)",
            list(&report.interrupted),
            if destroy { "destroy" } else { "apply" }
        );
    }
    Ok(ExitStatus::Failure)
}

fn verb(destroy: bool, plan: &Plan) -> &'static str {
    match (destroy, plan.refresh_only) {
        (true, _) => "Destroy",
        (false, true) => "Refresh",
        (false, false) => "Apply",
    }
}

/// Asks on the terminal whether to go ahead, after the plan was shown. Without a
/// terminal there is no one to ask: refused (before any change), unless `--auto-approve`.
fn confirmed(approve: &ApproveArgs, destroy: bool) -> Result<bool> {
    use std::io::{BufRead as _, IsTerminal as _};
    if approve.auto_approve {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to {} without confirmation: stdin is not a terminal; pass `--auto-approve`, \
             or save the plan with `flyteinfra plan{} --out FILE` and carry it out with `flyteinfra apply FILE`",
            if destroy { "destroy" } else { "apply" },
            if destroy { " --destroy" } else { "" },
        );
    }
    if destroy {
        eprintln!("\nflyteinfra will delete every resource above. There is no undo.");
    }
    eprint!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// Applies a refresh-only plan to state: objects gone from the cloud leave it, changed
/// attributes take the cloud's values. Returns (changed, removed).
fn record_refresh(journal: &Journal, plan: &Plan) -> Result<(usize, usize)> {
    let (mut changed, mut removed) = (0, 0);
    journal
        .transition(|d: &mut StateDoc| {
            for n in &plan.notes {
                match n {
                    Note::DeletedOutside { address } => {
                        removed += usize::from(d.resources.remove(address).is_some());
                    }
                    Note::ChangedOutside { address, fields } => {
                        let Some(rs) = d.resources.get_mut(address) else {
                            continue;
                        };
                        changed += 1;
                        for f in fields {
                            match &f.after {
                                Planned::Known(Value::Null) => {
                                    rs.attributes.remove(&f.name);
                                }
                                Planned::Known(v) => {
                                    rs.attributes.insert(f.name.clone(), v.clone());
                                }
                                Planned::Unknown => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        })
        .context("could not persist the refreshed state")?;
    Ok((changed, removed))
}

fn list(a: &[Address]) -> String {
    a.iter()
        .map(|x| format!("`{x}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ctrl-C once: stop starting things and finish what is in flight. Twice: exit now (the
/// intent journal keeps state consistent).
fn install_ctrl_c(interrupt: Interrupt) {
    let mut presses = match Presses::listen() {
        Ok(p) => p,
        Err(_) => return,
    };
    crate::signals::handle_interrupts_myself();
    tokio::spawn(async move {
        if !presses.next().await {
            return;
        }
        eprintln!(
            "\nInterrupt received: starting nothing new, finishing calls in flight. Press Ctrl-C again to exit at once."
        );
        interrupt.trigger();
        if presses.next().await {
            eprintln!("Second interrupt: exiting now. The next run reconciles what was in flight.");
            // Exiting skips destructors: give the lease up so the next run need not wait.
            crate::signals::release_all();
            std::process::exit(130);
        }
    });
}

/// Ctrl-C presses, heard from before the first: one listener for both, so a second press
/// that lands while the first is being handled is not lost (a listener made after a
/// signal never sees it).
#[cfg(unix)]
struct Presses(tokio::signal::unix::Signal);

#[cfg(unix)]
impl Presses {
    fn listen() -> std::io::Result<Presses> {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt()).map(Presses)
    }

    async fn next(&mut self) -> bool {
        self.0.recv().await.is_some()
    }
}

#[cfg(not(unix))]
struct Presses;

#[cfg(not(unix))]
impl Presses {
    fn listen() -> std::io::Result<Presses> {
        Ok(Presses)
    }

    async fn next(&mut self) -> bool {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

/// Computes outputs from state and persists them (all of them dropped on destroy).
fn write_outputs(journal: &Journal, outputs: &[OutputSpec], destroy: bool) -> Result<()> {
    journal
        .transition(|d: &mut StateDoc| {
            d.outputs.clear();
            if destroy {
                return;
            }
            for o in outputs {
                let v = o.value.resolve(&|r| {
                    d.resources
                        .get(&r.address)
                        .and_then(|rs| rs.attributes.get(&r.attribute).cloned())
                        .map_or(Planned::Unknown, Planned::Known)
                });
                if let Planned::Known(value) = v {
                    let sensitive = o.sensitive || value.is_secret();
                    d.outputs.insert(
                        o.name.clone(),
                        Output {
                            value: if sensitive {
                                value.into_secret()
                            } else {
                                value
                            },
                            sensitive,
                        },
                    );
                }
            }
        })
        .context("could not persist outputs")
}

/// The directory of the config file, where apply writes values and next steps.
fn config_dir(loaded: &Loaded) -> &Path {
    loaded
        .config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// After a successful apply: the Helm values and the password Secret, next to the config.
fn write_values_files(loaded: &Loaded, journal: &Journal) -> Result<()> {
    let doc = journal.snapshot();
    if loaded.config.style == flyteinfra_flyte::Style::MultiCluster {
        return write_multi_values_files(loaded, &doc);
    }
    let r = match super::render_values(loaded, &doc) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("note: no Helm values written: {e:#}");
            return Ok(());
        }
    };
    let dir = config_dir(loaded);
    let cloud = loaded.cloud;
    let values = dir.join(flyteinfra_flyte::values::file_name(r.model, cloud));
    let secret = dir.join(format!("flyte-db-secret-{cloud}.yaml"));
    super::write_private(&values, r.values.as_bytes())?;
    super::write_private(&secret, r.secret.as_bytes())?;
    let storage = super::write_storage_secret(
        loaded,
        &dir.join(format!("flyte-storage-secret-{cloud}.yaml")),
    )?;
    // The way from here to a running Flyte, printed and kept next to the values (one
    // file per cloud, as the values are).
    let steps_path = dir.join(format!("NEXT-STEPS-{cloud}.md"));
    let steps = flyteinfra_flyte::access::next_steps(
        &loaded.config,
        cloud,
        &values.display().to_string(),
        &secret.display().to_string(),
    );
    super::write_private(&steps_path, steps.as_bytes())?;
    eprintln!("Helm values:       `{}`", values.display());
    eprintln!(
        "Password Secret:   `{}` (mode 0600; `kubectl apply -f` it first)",
        secret.display()
    );
    if let Some(p) = storage {
        eprintln!(
            "Store keys Secret: `{}` (mode 0600; `kubectl apply -f` it first)",
            p.display()
        );
    }
    eprintln!("Next steps:        `{}`\n", steps_path.display());
    eprint!("{steps}");
    Ok(())
}

/// [`write_values_files`] of a multi-cluster deployment: every cluster's values, each data
/// plane's token Secret and the password Secret, next to the config, and the order to
/// install them in.
fn write_multi_values_files(loaded: &Loaded, doc: &StateDoc) -> Result<()> {
    let cloud = loaded.cloud;
    let r = match flyteinfra_flyte::values::multi_cluster(
        &loaded.config,
        cloud,
        &doc.output_values(),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("note: no Helm values written: {e:#}");
            return Ok(());
        }
    };
    let dir = config_dir(loaded);
    super::write_multi_values(loaded, &r, dir, &dir.join(&r.secret_file))?;
    let steps_path = dir.join(format!("NEXT-STEPS-{cloud}.md"));
    let steps = flyteinfra_flyte::access::next_steps_multi(&loaded.config, cloud, &r, dir);
    super::write_private(&steps_path, steps.as_bytes())?;
    eprintln!("Next steps:        `{}`\n", steps_path.display());
    eprint!("{steps}");
    Ok(())
}

/// How long a create an interrupted run sent may still take to land (see
/// `ApplyOptions::create_settle`): 20 s against a cloud, `FLYTEINFRA_CREATE_SETTLE_SECS` to
/// change it, none for the simulated cloud (its creates are atomic).
fn create_settle(simulated: bool) -> Result<Duration> {
    if simulated {
        return Ok(Duration::ZERO);
    }
    match std::env::var("FLYTEINFRA_CREATE_SETTLE_SECS") {
        Ok(v) => Ok(Duration::from_secs(v.parse().with_context(|| {
            format!("`FLYTEINFRA_CREATE_SETTLE_SECS={v}` is not a whole number of seconds")
        })?)),
        Err(_) => Ok(Duration::from_secs(20)),
    }
}
