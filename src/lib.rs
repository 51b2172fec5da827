//! flyteinfra: the command-line glue that joins config, blueprint, plans, state, providers
//! and the apply walker. Output is this crate's job alone: data on stdout, diagnostics and
//! progress on stderr.
//!
//! The shipped binary (`src/main.rs`) is [`main`] with the real [`Providers`]. A library,
//! so that the test-only `flyteinfra-sim` binary can run the very same CLI over the
//! simulated cloud through the [`Connect`] seam; nothing here knows the simulated cloud.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod context;
mod progress;
mod signals;
mod style;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use cli::{Cli, Command, ModeArgs};
use commands::plan::{ApplyArgs, PlanKind};
pub use context::{Connect, Loaded, Providers, Session, all_schemas, schemas};

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done (for `plan --detailed-exitcode`: no changes).
    Success,
    /// `plan --detailed-exitcode` found changes.
    Changes,
    /// Something failed.
    Failure,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::Changes => 2,
            ExitStatus::Failure => 1,
        })
    }
}

/// Prints an error chain once: `error:`, then one `Caused by:` per source.
fn report(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  Caused by: {cause}");
    }
}

async fn run(cli: Cli, connect: Arc<dyn Connect>) -> anyhow::Result<ExitStatus> {
    let load = || Loaded::new(&cli.config, cli.cloud.as_deref(), connect.clone());
    match &cli.command {
        Command::Init { force } => commands::init(&cli.config, cli.cloud.as_deref(), *force),
        Command::Schema { plan } => commands::schema(*plan),
        Command::Completions { shell } => commands::completions(*shell),
        Command::Man => commands::man(),
        Command::Validate => commands::validate(&load()?),
        Command::Graph { format } => commands::graph(&load()?, *format),
        Command::Plan {
            args,
            mode,
            destroy,
            disable_protection,
            json,
            out,
            detailed_exitcode,
        } => {
            let out = commands::plan::PlanOutput {
                json: *json,
                out: out.as_deref(),
                detailed_exitcode: *detailed_exitcode,
            };
            let kind = PlanKind {
                destroy: *destroy,
                disable_protection: *disable_protection,
                mode,
            };
            commands::plan::plan(&load()?, args, kind, out).await
        }
        Command::Apply {
            plan_file,
            args,
            mode,
            approve,
            parallelism,
        } => {
            let a = ApplyArgs {
                plan_file: plan_file.as_deref(),
                args,
                kind: PlanKind {
                    destroy: false,
                    disable_protection: false,
                    mode,
                },
                approve,
                parallelism: *parallelism,
            };
            commands::plan::apply_cmd(&load()?, a).await
        }
        Command::Destroy {
            args,
            approve,
            disable_protection,
            parallelism,
        } => {
            let mode = ModeArgs::default();
            let a = ApplyArgs {
                plan_file: None,
                args,
                kind: PlanKind {
                    destroy: true,
                    disable_protection: *disable_protection,
                    mode: &mode,
                },
                approve,
                parallelism: *parallelism,
            };
            commands::plan::apply_cmd(&load()?, a).await
        }
        Command::Import { address, id, lock } => {
            commands::import(&load()?, address, id, lock).await
        }
        Command::State { command } => commands::state(&load()?, command),
        Command::Kubeconfig {
            out,
            merge,
            cluster,
        } => {
            commands::clusters::kubeconfig(&load()?, out.as_deref(), *merge, cluster.as_deref())
                .await
        }
        Command::ClusterCredentials { kubeconfig, out } => {
            commands::clusters::cluster_credentials(&load()?, kubeconfig, out).await
        }
        Command::Values {
            out,
            out_dir,
            secret_out,
        } => commands::values(
            &load()?,
            out.as_deref(),
            out_dir.as_deref(),
            secret_out.as_deref(),
        ),
        Command::Output { name, json } => commands::output(&load()?, name.as_deref(), *json),
    }
}

/// Runs the command line, connecting to clouds through `connect`.
pub fn main(connect: Arc<dyn Connect>) -> ExitCode {
    // Usage errors exit 1, never 2: 2 means "changes" under `--detailed-exitcode`.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    style::set_no_color(cli.no_color);
    // The Google clients' request futures are large; in debug builds they overflow
    // tokio's default 2 MiB worker stacks.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 * 1024 * 1024)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, connect)) {
        Ok(status) => status.into(),
        // The reader of stdout went away (`flyteinfra graph | head`): what it wanted it
        // has, so the command ends quietly, as `cat` or `rg` would.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::from(1)
        }
    }
}

/// Whether `err` comes from writing to a pipe whose reader has closed it.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
