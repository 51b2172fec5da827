//! Moving state by hand: `state pull`, `state push` and `state migrate`.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use flyteinfra_flyte::{Config, EncryptionConfig, StateConfig};
use flyteinfra_state::{
    LockInfo, Object, Precondition, StateManager, decode, is_sealed, unsealed_error, write_private,
};

use crate::ExitStatus;
use crate::cli::LockArgs;
use crate::context::{Loaded, parse_duration};

/// `state pull`: the current document, with secrets shown as `(sensitive)`; with `out`,
/// the whole document, secrets included, into a private file (what `state push` takes),
/// sealed like the state when `state.encryption` is set.
pub fn pull(loaded: &Loaded, out: Option<&Path>) -> Result<ExitStatus> {
    let backend = loaded.state_backend()?;
    let location = backend.describe(Object::State);
    let Some(stored) = backend.get(Object::State)? else {
        bail!("there is no state at `{location}` yet");
    };
    match out {
        Some(path) => {
            // Checked whole first: a pulled file is what a later push trusts.
            decode(&stored.bytes, Path::new(&location))?;
            let (bytes, how) = match loaded.sealer()? {
                Some(sealer) => (
                    sealer.seal(&stored.bytes, path)?,
                    "sealed with the state's key",
                ),
                None => (stored.bytes, "mode 600; it holds the secrets"),
            };
            write_private(path, &bytes)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            eprintln!("Wrote state `{location}` to `{}` ({how}).", path.display());
        }
        None => {
            let doc = loaded.read_state()?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(ExitStatus::Success)
}

/// `state push FILE`: replaces the state with `file`, refusing another lineage, an older
/// serial, or the same serial with other contents, unless `force`.
pub fn push(loaded: &Loaded, file: &Path, force: bool, lock: &LockArgs) -> Result<ExitStatus> {
    let mut bytes =
        std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
    if is_sealed(&bytes) {
        bytes = match loaded.sealer()? {
            Some(sealer) => sealer.open(&bytes, file)?,
            None => return Err(unsealed_error(file, &bytes).into()),
        };
    }
    let mut doc = decode(&bytes, file)?;
    if doc.cloud != loaded.cloud.as_str() {
        bail!(
            "`{}` is the state of cloud `{}`, not `{}`: pick the cloud with `--cloud`",
            file.display(),
            doc.cloud,
            loaded.cloud
        );
    }
    let exists = loaded.state_backend()?.get(Object::State)?.is_some();
    let mut open =
        loaded.open_state("flyteinfra state push", parse_duration(&lock.lock_timeout)?)?;
    let current = &open.doc;
    let location = open.manager.describe();
    if exists && !force {
        let refusal = if doc.lineage != current.lineage {
            Some(format!(
                "it has lineage {}, the state has lineage {}: it is another deployment's state, or one that was replaced",
                doc.lineage, current.lineage
            ))
        } else if doc.serial < current.serial {
            Some(format!(
                "its serial {} is older than the state's {}: it would undo later changes",
                doc.serial, current.serial
            ))
        } else if doc.serial == current.serial && doc != *current {
            Some(format!(
                "it has the state's serial {} but other contents: the two have diverged",
                doc.serial
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            bail!(
                "refusing to push `{}` to state `{location}`: {why}; `--force` pushes it anyway",
                file.display()
            );
        }
    }
    open.manager.persist(&mut doc)?;
    eprintln!(
        "Pushed `{}` to state `{location}` (now serial {}).",
        file.display(),
        doc.serial
    );
    Ok(ExitStatus::Success)
}

/// `state migrate --to SPEC`: under the leases of both places, copies the state's bytes,
/// reads them back and compares; the source is left as it was, as a backup. The config
/// is switched only with `update_config`.
pub fn migrate(
    loaded: &Loaded,
    to: &str,
    update_config: bool,
    lock: &LockArgs,
) -> Result<ExitStatus> {
    let path = &loaded.config_path;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let section = state_section(to, &loaded.config.state)?;
    let new_text = replace_state_section(&text, &section);
    // The whole config with the new section must validate: bucket rules, a state bucket
    // that is not one of Flyte's, and so on.
    let target = Config::parse(&new_text, path).map_err(|e| anyhow!("`--to {to}`: {e}"))?;
    if target.state == loaded.config.state {
        bail!("`--to {to}` is where the state already is");
    }
    let timeout = parse_duration(&lock.lock_timeout)?;
    let command = "flyteinfra state migrate";

    let source = loaded.state_backend()?;
    let mut source_manager = StateManager::shared(source.clone());
    let acquiring = crate::signals::acquiring();
    let source_lease = source_manager.lock(
        LockInfo::new(command),
        loaded.config.state.lease_ttl(),
        timeout,
    )?;
    crate::signals::hold(source_lease.watch());
    let dest = loaded.backend_for(&target)?;
    let mut dest_manager = StateManager::shared(dest.clone());
    let acquiring_dest = crate::signals::acquiring();
    let dest_lease =
        dest_manager.lock(LockInfo::new(command), target.state.lease_ttl(), timeout)?;
    crate::signals::hold(dest_lease.watch());
    drop((acquiring, acquiring_dest));

    let (from, into) = (source.describe(Object::State), dest.describe(Object::State));
    let Some(stored) = source.get(Object::State)? else {
        bail!("there is no state at `{from}` to migrate");
    };
    let doc = decode(&stored.bytes, Path::new(&from))?;
    if dest.get(Object::State)?.is_some() {
        bail!(
            "`{into}` already holds a state: nothing was copied (move it away first, or `state push` a pulled copy with `--force`)"
        );
    }
    dest.put(Object::State, &stored.bytes, &Precondition::Absent)?;
    let back = dest
        .get(Object::State)?
        .ok_or_else(|| anyhow!("`{into}` is empty right after the copy: nothing was switched"))?;
    if back.bytes != stored.bytes {
        bail!("`{into}` does not read back what was written: nothing was switched");
    }
    eprintln!(
        "Copied state `{from}` (lineage {}, serial {}) to `{into}` and read it back: identical. `{from}` is kept as it was, as a backup.",
        doc.lineage, doc.serial
    );
    if update_config {
        write_private(path, new_text.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        eprintln!("`{}` now keeps state at `{into}`.", path.display());
    } else {
        eprintln!(
            "The config still names `{from}`: run again with `--update-config`, or set its `state:` section to:\n{section}"
        );
    }
    Ok(ExitStatus::Success)
}

/// The `state:` section for `to` (see [`EXPECTED_SPEC`]), keeping the current lease TTL
/// and encryption: the connection string stays in the environment, the key where it is.
fn state_section(to: &str, current: &StateConfig) -> Result<String> {
    let backend = backend_section(to, &lease_ttl_text(current))?;
    Ok(format!(
        "state:\n{backend}{}",
        encryption_section(current.encryption.as_ref())
    ))
}

/// The `--to` forms `state migrate` takes.
const EXPECTED_SPEC: &str = "expected `local:PATH`, `s3://BUCKET/PREFIX?region=REGION`, `postgres:CONN_ENV?schema=SCHEMA`, `gs://BUCKET/PREFIX` or `azurerm://ACCOUNT/CONTAINER/PREFIX`";

fn lease_ttl_text(current: &StateConfig) -> String {
    let ttl = current.lease_ttl();
    if ttl.subsec_millis() == 0 {
        format!("{}s", ttl.as_secs())
    } else {
        format!("{}ms", ttl.as_millis())
    }
}

/// The backend's lines of the `state:` section for `to`.
fn backend_section(to: &str, ttl: &str) -> Result<String> {
    let expected = EXPECTED_SPEC;
    let query_value = |query: &str, key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    if let Some(dir) = to.strip_prefix("local:") {
        if dir.is_empty() {
            bail!("`--to {to}` names no directory: {expected}");
        }
        return Ok(format!(
            "  local:\n    path: {}\n    lease_ttl: {ttl}\n",
            yaml_string(dir)
        ));
    }
    if let Some(rest) = to.strip_prefix("s3://") {
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let region = query_value(query, "region")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| anyhow!("`--to {to}` names no region: {expected}"))?;
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        return Ok(format!(
            "  s3:\n    bucket: {}\n    key_prefix: {}\n    region: {}\n    lease_ttl: {ttl}\n",
            yaml_string(bucket),
            yaml_string(prefix.trim_end_matches('/')),
            yaml_string(&region)
        ));
    }
    if let Some(rest) = to.strip_prefix("postgres:") {
        let (env, query) = rest.split_once('?').unwrap_or((rest, ""));
        if env.is_empty() {
            bail!("`--to {to}` names no environment variable: {expected}");
        }
        let schema = query_value(query, "schema").unwrap_or_else(|| "flyteinfra".to_owned());
        // `tls` and `ca_file` as `state.postgres` spells them (the config's validation
        // judges them): none means the default, `require`.
        let mut tls = String::new();
        if let Some(mode) = query_value(query, "tls") {
            tls += &format!("    tls: {}\n", yaml_string(&mode));
        }
        if let Some(ca) = query_value(query, "ca_file") {
            tls += &format!("    ca_file: {}\n", yaml_string(&ca));
        }
        return Ok(format!(
            "  postgres:\n    conn_env: {}\n    schema: {}\n{tls}    lease_ttl: {ttl}\n",
            yaml_string(env),
            yaml_string(&schema)
        ));
    }
    if let Some(rest) = to.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("`--to {to}` names no bucket: {expected}");
        }
        return Ok(format!(
            "  gcs:\n    bucket: {}\n    prefix: {}\n    lease_ttl: {ttl}\n",
            yaml_string(bucket),
            yaml_string(prefix.trim_end_matches('/'))
        ));
    }
    if let Some(rest) = to.strip_prefix("azurerm://") {
        let mut parts = rest.splitn(3, '/');
        let (account, container) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if account.is_empty() || container.is_empty() {
            bail!("`--to {to}` names no account and container: {expected}");
        }
        let prefix = parts.next().unwrap_or("");
        return Ok(format!(
            "  azurerm:\n    account: {}\n    container: {}\n    key_prefix: {}\n    lease_ttl: {ttl}\n",
            yaml_string(account),
            yaml_string(container),
            yaml_string(prefix.trim_end_matches('/'))
        ));
    }
    bail!("`--to {to}` is not a state location: {expected}")
}

/// The `encryption:` lines of a `state:` section (none when it is off).
fn encryption_section(enc: Option<&EncryptionConfig>) -> String {
    let Some(enc) = enc else {
        return String::new();
    };
    let mut out = String::from("  encryption:\n");
    if let Some(env) = &enc.passphrase_env {
        out += &format!("    passphrase_env: {}\n", yaml_string(env));
    }
    if let Some(kms) = &enc.aws_kms {
        out += &format!("    aws_kms:\n      key_id: {}\n", yaml_string(&kms.key_id));
        if !kms.region.is_empty() {
            out += &format!("      region: {}\n", yaml_string(&kms.region));
        }
    }
    out
}

/// A YAML double-quoted string.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string encodes")
}

/// `text` with its top-level `state:` block replaced by `section` (appended when there is
/// none). Comments inside the old block go with it.
fn replace_state_section(text: &str, section: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let top_level = |l: &str| {
        l.chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#')
    };
    let Some(start) = lines
        .iter()
        .position(|l| l.starts_with("state:") && top_level(l))
    else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(section);
        return out;
    };
    let mut end = lines[start + 1..]
        .iter()
        .position(|l| top_level(l))
        .map_or(lines.len(), |i| start + 1 + i);
    // Blank lines and comments just before the next section belong to it.
    while end > start + 1 && (lines[end - 1].trim().is_empty() || lines[end - 1].starts_with('#')) {
        end -= 1;
    }
    let mut out: String = lines[..start].concat();
    out.push_str(section);
    out.push_str(&lines[end..].concat());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_section_is_replaced_or_appended() {
        let text = "name: demo\nstate:\n  local:\n    path: .x # here\n\n# about aws\naws:\n  region: us-east-1\n";
        assert_eq!(
            replace_state_section(text, "state:\n  s3: {}\n"),
            "name: demo\nstate:\n  s3: {}\n\n# about aws\naws:\n  region: us-east-1\n"
        );
        assert_eq!(
            replace_state_section("name: demo", "state: x\n"),
            "name: demo\nstate: x\n"
        );
        // A `state:` key nested in another section is not the top-level one.
        let nested = "flyte:\n  state: 1\n";
        assert_eq!(
            replace_state_section(nested, "state: x\n"),
            "flyte:\n  state: 1\nstate: x\n"
        );
    }

    #[test]
    fn specs_become_sections_or_clear_errors() {
        let current = StateConfig::default();
        assert_eq!(
            state_section("s3://b/team/prod/?region=eu-west-1", &current).unwrap(),
            "state:\n  s3:\n    bucket: \"b\"\n    key_prefix: \"team/prod\"\n    region: \"eu-west-1\"\n    lease_ttl: 30s\n"
        );
        assert_eq!(
            state_section("local:.state", &current).unwrap(),
            "state:\n  local:\n    path: \".state\"\n    lease_ttl: 30s\n"
        );
        assert_eq!(
            state_section("postgres:STATE_PG?schema=team", &current).unwrap(),
            "state:\n  postgres:\n    conn_env: \"STATE_PG\"\n    schema: \"team\"\n    lease_ttl: 30s\n"
        );
        assert_eq!(
            state_section(
                "postgres:STATE_PG?schema=team&tls=verify-full&ca_file=certs/ca.pem",
                &current
            )
            .unwrap(),
            "state:\n  postgres:\n    conn_env: \"STATE_PG\"\n    schema: \"team\"\n    tls: \"verify-full\"\n    ca_file: \"certs/ca.pem\"\n    lease_ttl: 30s\n"
        );
        assert_eq!(
            state_section("gs://acme-state/team/prod", &current).unwrap(),
            "state:\n  gcs:\n    bucket: \"acme-state\"\n    prefix: \"team/prod\"\n    lease_ttl: 30s\n"
        );
        assert_eq!(
            state_section("azurerm://acme/tfstate/team", &current).unwrap(),
            "state:\n  azurerm:\n    account: \"acme\"\n    container: \"tfstate\"\n    key_prefix: \"team\"\n    lease_ttl: 30s\n"
        );
        // Encryption goes with the state.
        let sealed = StateConfig {
            encryption: Some(EncryptionConfig {
                passphrase_env: None,
                aws_kms: Some(flyteinfra_flyte::AwsKmsKey {
                    key_id: "alias/state".into(),
                    region: "eu-west-1".into(),
                }),
            }),
            ..StateConfig::default()
        };
        assert_eq!(
            state_section("local:.s", &sealed).unwrap(),
            "state:\n  local:\n    path: \".s\"\n    lease_ttl: 30s\n  encryption:\n    aws_kms:\n      key_id: \"alias/state\"\n      region: \"eu-west-1\"\n"
        );
        for bad in [
            "s3://b/p",
            "local:",
            "gs://",
            "azurerm://acme",
            "b",
            "postgres:",
        ] {
            let e = state_section(bad, &current).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`--to {bad}`")) && e.contains("expected"),
                "{e}"
            );
        }
    }
}
