//! The one error type of this crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::lock::LockInfo;

/// Why reading, writing or locking state failed.
///
/// Every variant names the state it concerns: for files, the path; for other backends,
/// what [`Backend::describe`](crate::Backend::describe) returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state file exists but holds nothing (or only whitespace).
    #[error("`{}` is empty: expected a flyteinfra state document", .path.display())]
    Empty {
        /// The state file.
        path: PathBuf,
    },

    /// The state file holds binary data: invalid UTF-8 or NUL bytes.
    #[error(
        "`{}` is not a flyteinfra state document: it holds binary data at {line}:{column} (byte offset {offset})",
        .path.display()
    )]
    NotText {
        /// The state file.
        path: PathBuf,
        /// The line of the first byte that is not text, from 1.
        line: usize,
        /// Its column (in characters), from 1.
        column: usize,
        /// The offset of the first byte that is not text.
        offset: usize,
    },

    /// The state file is not valid JSON.
    #[error("`{}` is not valid JSON at {line}:{column}", .path.display())]
    Syntax {
        /// The state file.
        path: PathBuf,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The state file ends in the middle of its JSON document (an interrupted copy).
    #[error("`{}` is truncated: the JSON ends early at {line}:{column}", .path.display())]
    Truncated {
        /// The state file.
        path: PathBuf,
        /// The line where the input ends.
        line: usize,
        /// The column where the input ends.
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The state file is JSON but not a state document: unknown or missing fields,
    /// wrong types, bad addresses.
    #[error(
        "`{}` is not a valid flyteinfra state document{}{}",
        .path.display(),
        location(*.line, *.column),
        field_part(.field)
    )]
    Invalid {
        /// The state file.
        path: PathBuf,
        /// The line of the error, from 1; 0 when unknown (after a format upgrade).
        line: usize,
        /// The column of the error, from 1; 0 when unknown.
        column: usize,
        /// The field the decoder was in (`resources["aws_vpc.main"].status`); empty at
        /// the top level.
        field: String,
        /// The decoder's error (`unknown field ...`, `missing field ...`).
        #[source]
        source: serde_json::Error,
    },

    /// The state file decodes, but a field holds what flyteinfra never writes: a lineage
    /// that is not a UUID, a serial out of range, an intent token that cannot be sent,
    /// a type no provider knows, dependencies in a cycle.
    #[error(
        "`{}` is not a valid flyteinfra state document{}: `{field}`: {reason}",
        .path.display(),
        location(*.line, *.column)
    )]
    BadField {
        /// The state file.
        path: PathBuf,
        /// The line of the field, from 1; 0 when unknown.
        line: usize,
        /// The column of the field, from 1; 0 when unknown.
        column: usize,
        /// The field (`lineage`, `intents["aws_vpc.main"].token`).
        field: String,
        /// What is wrong with it and what was expected.
        reason: String,
    },

    /// `format_version` is missing, zero or not a number.
    #[error(
        "`{}` has no valid `format_version`{}: {reason}",
        .path.display(),
        location(*.line, *.column)
    )]
    BadFormatVersion {
        /// The state file.
        path: PathBuf,
        /// The line of the field, from 1; 0 when it is missing.
        line: usize,
        /// The column of the field, from 1; 0 when it is missing.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// The state was written by a newer flyteinfra. The file is left untouched.
    #[error(
        "`{}` was written by a newer flyteinfra (state format {found}, `format_version`{}); this build reads formats up to {supported}: upgrade flyteinfra",
        .path.display(),
        location(*.line, *.column)
    )]
    NewerFormat {
        /// The state file.
        path: PathBuf,
        /// The line of `format_version`, from 1.
        line: usize,
        /// The column of `format_version`, from 1.
        column: usize,
        /// The format version found in the file.
        found: u64,
        /// The newest format this build reads ([`FORMAT_VERSION`](crate::FORMAT_VERSION)).
        supported: u32,
    },

    /// The state belongs to another cloud than the one asked for.
    #[error(
        "state `{}` belongs to cloud `{found}`, not `{expected}`: each cloud has its own state file",
        .path.display()
    )]
    CloudMismatch {
        /// The state file.
        path: PathBuf,
        /// The cloud the caller asked for.
        expected: String,
        /// The cloud recorded in the state.
        found: String,
    },

    /// A cloud name that cannot name a state file.
    #[error("`{cloud}` is not a cloud name: expected lowercase letters, digits, `_` or `-`")]
    InvalidCloud {
        /// The rejected name.
        cloud: String,
    },

    /// Another process holds the state lease and did not release it in time.
    #[error(
        "state `{}` is locked by {}; waited {} (use `--lock-timeout` to wait longer: a lease that is not renewed for {} is taken over by a waiting command; `flyteinfra state unlock --force {}` breaks it at once)",
        .path.display(),
        .holder.holder_description(),
        human_duration(*.waited),
        human_duration(*.ttl),
        lease_id(&.holder.id)
    )]
    Locked {
        /// The locked state.
        path: PathBuf,
        /// Who holds the lease, as its record says (boxed to keep the error small).
        holder: Box<LockInfo>,
        /// How long this process waited.
        waited: Duration,
        /// The holder's lease time-to-live.
        ttl: Duration,
    },

    /// A conditional write found the object at another version than expected.
    #[error("`{}` changed since this command read it: another command wrote it", .path.display())]
    Moved {
        /// The object.
        path: PathBuf,
    },

    /// The state was written by another command since this one read it: this command's
    /// lease was taken over. Nothing was written.
    #[error(
        "state `{}` was written by another command since this one read it (this command's lease was taken over): stopping without further changes; the command that took over carries on, run `flyteinfra plan` once it is done",
        .path.display()
    )]
    Fenced {
        /// The state.
        path: PathBuf,
    },

    /// This command's lease ended before its work did. Nothing more is written.
    #[error(
        "lost the lease on state `{}`: {reason}; stopping without further changes (run `flyteinfra plan` to see where things stand)",
        .path.display()
    )]
    LeaseLost {
        /// The state.
        path: PathBuf,
        /// Why: taken over, broken by hand, or not renewed in time.
        reason: String,
    },

    /// `state unlock --force` named a lease that is not the current one.
    #[error(
        "state `{}` is leased by {} under lease id `{}`, not `{given}`: nothing was unlocked",
        .path.display(),
        .holder.holder_description(),
        .holder.id
    )]
    NotHolder {
        /// The state.
        path: PathBuf,
        /// The lease id given.
        given: String,
        /// The current holder.
        holder: Box<LockInfo>,
    },

    /// `state unlock --force` found no lease.
    #[error("state `{}` is not locked: nothing to unlock", .path.display())]
    NotLocked {
        /// The state.
        path: PathBuf,
    },

    /// The backend cannot be used as configured: a missing bucket, versioning off,
    /// no credentials.
    #[error("state backend `{}`: {message}", .path.display())]
    Setup {
        /// The backend's location.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A saved plan was made for another version of the state.
    #[error("{}", stale_message(.plan_lineage, *.plan_serial, .state_lineage, *.state_serial))]
    StalePlan {
        /// The lineage the plan was made for.
        plan_lineage: String,
        /// The serial the plan was made for.
        plan_serial: u64,
        /// The lineage of the current state.
        state_lineage: String,
        /// The serial of the current state.
        state_serial: u64,
    },

    /// Reading the state failed.
    #[error("could not read state `{}`", .path.display())]
    Read {
        /// The file (or backend description).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// Writing the state (or its backup) failed. The previous state is still in place.
    #[error("could not write state `{}`", .path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// The state directory could not be created.
    #[error("could not create state directory `{}`", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// Opening or locking the lock file failed (other than being held by someone else).
    #[error("could not lock state `{}`", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// A sealed (encrypted) state or plan file does not open: a wrong passphrase or key, a
    /// missing key or configuration, or a changed file (AES-GCM cannot tell a wrong key
    /// from a changed file; the reason says what can be told).
    #[error("`{}` is encrypted with {provider} key `{key_id}`: {reason}", .path.display())]
    Sealed {
        /// The file (or backend description).
        path: PathBuf,
        /// The key provider the file records: `passphrase` or `aws_kms`.
        provider: String,
        /// The key id the file records: the passphrase's environment variable, or the KMS
        /// key id. Never the key.
        key_id: String,
        /// Why it does not open, and what to do.
        reason: String,
    },

    /// Sealing (encrypting) a document failed: nothing was written.
    #[error("could not encrypt `{}`: {reason}", .path.display())]
    Seal {
        /// The file (or backend description).
        path: PathBuf,
        /// Why, naming the key.
        reason: String,
    },
}

fn lease_id(id: &str) -> &str {
    if id.is_empty() { "<lease id>" } else { id }
}

fn field_part(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!(", field `{field}`")
    }
}

fn location(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at {line}:{column}")
    }
}

fn stale_message(
    plan_lineage: &str,
    plan_serial: u64,
    state_lineage: &str,
    state_serial: u64,
) -> String {
    if plan_lineage != state_lineage {
        format!(
            "saved plan is stale: it was made for state lineage {plan_lineage}, but the state now has lineage {state_lineage} (it was replaced or recreated); run `flyteinfra plan` again"
        )
    } else {
        format!(
            "saved plan is stale: it was made for state lineage {plan_lineage} serial {plan_serial}, but the state is now lineage {state_lineage} serial {state_serial}; run `flyteinfra plan` again"
        )
    }
}

/// `2s`, `1.5s`, `250ms`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{:.1}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches(".0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::ZERO), "0ms");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(2)), "2s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(120)), "120s");
    }
}
