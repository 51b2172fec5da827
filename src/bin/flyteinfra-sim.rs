//! `flyteinfra-sim`: the flyteinfra CLI over the simulated cloud, for the integration tests
//! (the engine, the kill -9 crash loop, Ctrl-C) only. Built only with the `sim` feature,
//! which only tests and benches enable; the shipped `flyteinfra` binary has none of this.
//!
//! `FLYTEINFRA_SIMULATE=<file>` is the simulated cloud's file (shared by processes), and
//! `FLYTEINFRA_SIMULATE_DELAY_MS` (latency of each call), `FLYTEINFRA_SIMULATE_POLLS` (polls
//! before a slow create — one that usually takes over a minute — is ready) and
//! `FLYTEINFRA_SIMULATE_POLL_MS` tune it; `FLYTEINFRA_SIMULATE_PANIC=<address>` makes that
//! resource's create panic.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use async_trait::async_trait;
use flyteinfra::{Connect, Loaded, Session, schemas};
use flyteinfra_core::builtin::RandomPassword;
use flyteinfra_flyte::{Cloud, Facts};
use flyteinfra_sim::{SimBehavior, SimCloud};

/// The simulated cloud's file.
const SIMULATE_ENV: &str = "FLYTEINFRA_SIMULATE";

/// Every provider replaced by the simulated cloud in the file `FLYTEINFRA_SIMULATE` names.
struct Simulated;

#[async_trait]
impl Connect for Simulated {
    async fn connect(&self, loaded: &Loaded) -> Result<Session> {
        // No fallback to a real cloud: this binary exists to never reach one.
        let path = std::env::var_os(SIMULATE_ENV)
            .ok_or_else(|| anyhow!("`flyteinfra-sim` needs `{SIMULATE_ENV}=<file>`"))?;
        let sim = SimCloud::with_file(Path::new(&path), behavior()?);
        let mut registry = sim.registry(schemas(loaded.cloud));
        registry.register(RandomPassword::resource_type());
        Ok(Session {
            registry,
            facts: Facts {
                account_id: "123456789012".to_string(),
                project_number: "123456789012".to_string(),
                azure_existing_group: None,
            },
            aws: None,
            azure: None,
            // Its creates are atomic, so an interrupted run leaves nothing in flight to wait for.
            simulated: true,
        })
    }
}

/// The simulated cloud's behavior from the environment.
fn behavior() -> Result<SimBehavior> {
    let num = |name: &str| -> Result<u64> {
        match std::env::var(name) {
            Ok(v) => v
                .parse()
                .with_context(|| format!("`{name}={v}` is not a whole number")),
            Err(_) => Ok(0),
        }
    };
    let polls = u32::try_from(num("FLYTEINFRA_SIMULATE_POLLS")?)
        .context("`FLYTEINFRA_SIMULATE_POLLS` is too large")?;
    let mut b = SimBehavior {
        call_delay: Duration::from_millis(num("FLYTEINFRA_SIMULATE_DELAY_MS")?),
        poll_interval: Duration::from_millis(num("FLYTEINFRA_SIMULATE_POLL_MS")?),
        ..SimBehavior::default()
    };
    // A provider bug on demand: the create of this address panics (panic isolation tests).
    if let Ok(addr) = std::env::var("FLYTEINFRA_SIMULATE_PANIC") {
        let addr = addr
            .parse()
            .with_context(|| format!("`FLYTEINFRA_SIMULATE_PANIC={addr}`"))?;
        b.panic_create
            .insert(addr, "simulated provider bug".to_string());
    }
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

fn main() -> ExitCode {
    flyteinfra::main(Arc::new(Simulated))
}
