//! The rules a decoded state document must meet before anything uses it: everything the
//! engine later slices, does arithmetic on or sends to a cloud is checked here, once, so
//! a hand-edited file gives a located error instead of a panic or a strange API call.

use flyteinfra_core::{Address, Graph, GraphError};

use crate::document::{Operation, StateDoc};
use crate::located::{FieldPath, quoted};

/// The largest serial accepted: the largest integer every JSON reader keeps exactly
/// (2^53 - 1). A real state gains one per transition, so it never gets near; a larger
/// one is an edit, and `serial + 1` must not overflow.
pub const MAX_SERIAL: u64 = (1 << 53) - 1;

/// The latest `sent_at` accepted: the end of year 9999 (seconds since the Unix epoch),
/// so adding it to the epoch cannot overflow a `SystemTime`.
pub const MAX_SENT_AT: u64 = 253_402_300_799;

/// The longest intent token: a GCP label value holds at most 63 characters.
const MAX_TOKEN: usize = 63;

/// Whether `s` is a lineage as [`new_lineage`](crate::new_lineage) makes them: a
/// lowercase UUID (`8-4-4-4-12` hex digits). Tokens sent to the cloud are built from its
/// first eight characters, which must be label-safe.
pub fn is_lineage(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Whether `s` can be an intent's token: it is sent as a client token, a tag and a GCP
/// label value, so 1 to 63 lowercase letters, digits, `-` or `_`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOKEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// What is wrong, and where.
#[derive(Debug)]
pub(crate) struct Problem {
    pub field: FieldPath,
    pub reason: String,
}

fn problem(field: FieldPath, reason: impl Into<String>) -> Problem {
    Problem {
        field,
        reason: reason.into(),
    }
}

/// The reason for a lineage that is not one.
pub fn lineage_problem(s: &str) -> String {
    format!(
        "{} is not a state lineage, expected the lowercase UUID flyteinfra wrote \
         (36 characters like `3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1b`)",
        quoted(s, 40)
    )
}

/// The reason for a serial over [`MAX_SERIAL`].
pub fn serial_problem(serial: u64) -> String {
    format!("{serial} is larger than any serial flyteinfra writes (at most {MAX_SERIAL})")
}

/// Checks `doc`; with `known_type`, also that every resource and intent has a type this
/// build's providers register (the binary passes its registry).
pub(crate) fn check(
    doc: &StateDoc,
    known_type: Option<&dyn Fn(&str) -> bool>,
) -> Result<(), Problem> {
    let root = FieldPath::root;
    if !is_lineage(&doc.lineage) {
        return Err(problem(
            root().key("lineage"),
            lineage_problem(&doc.lineage),
        ));
    }
    if doc.serial > MAX_SERIAL {
        return Err(problem(root().key("serial"), serial_problem(doc.serial)));
    }
    let unknown = |addr: &Address| known_type.is_some_and(|known| !known(addr.type_name()));
    let type_problem = |addr: &Address| {
        format!(
            "type `{}` is not a resource type this build of flyteinfra knows (written by \
             another version, or edited by hand?)",
            addr.type_name(),
        )
    };
    for addr in doc.resources.keys() {
        if unknown(addr) {
            return Err(problem(
                root().key("resources").key(addr.to_string()),
                format!(
                    "{}; `flyteinfra state rm {addr}` forgets the resource, leaving any \
                     cloud object alone",
                    type_problem(addr)
                ),
            ));
        }
    }
    for (addr, intent) in &doc.intents {
        let at = || root().key("intents").key(addr.to_string());
        if unknown(addr) {
            return Err(problem(at(), type_problem(addr)));
        }
        // A delete intent carries no token (flyteinfra writes an empty one).
        let token_ok = match intent.operation {
            Operation::Create => is_token(&intent.token),
            Operation::Delete => intent.token.is_empty() || is_token(&intent.token),
        };
        if !token_ok {
            return Err(problem(
                at().key("token"),
                format!(
                    "{} is not an intent token, expected the 1 to {MAX_TOKEN} lowercase \
                     letters, digits, `-` or `_` flyteinfra sent with the call",
                    quoted(&intent.token, 70)
                ),
            ));
        }
        if let Some(t) = intent.sent_at.filter(|t| *t > MAX_SENT_AT) {
            return Err(problem(
                at().key("sent_at"),
                format!("{t} is after the year 9999, expected seconds since 1970"),
            ));
        }
    }
    // Deletes of resources gone from the config are ordered by these; a cycle cannot be
    // ordered (dependencies on addresses not in state order nothing and are fine).
    let graph = Graph::build(doc.resources.iter().map(|(addr, rs)| {
        let deps = rs
            .dependencies
            .iter()
            .filter(|d| doc.resources.contains_key(*d))
            .cloned()
            .collect();
        (addr.clone(), deps)
    }));
    if let Err(GraphError::Cycle(cycle)) = graph {
        let first = cycle.first().map(ToString::to_string).unwrap_or_default();
        let shown: Vec<String> = cycle.iter().map(|a| format!("`{a}`")).collect();
        return Err(problem(
            root().key("resources").key(first).key("dependencies"),
            format!(
                "the recorded dependencies form a cycle ({}), which no order of deletes can follow",
                shown.join(" -> ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineages() {
        assert!(is_lineage(&crate::new_lineage()));
        assert!(is_lineage("3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1b"));
        for bad in [
            "",
            "3f2c",
            "3F2C9A1E-0B7D-4C1E-9A4F-5D6E7F809A1B",
            "3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1",
            "3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1bb",
            "3f2c9a1e00b7d-4c1e-9a4f-5d6e7f809a1b",
            "é2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1b",
            "3f2c9a1g-0b7d-4c1e-9a4f-5d6e7f809a1b",
        ] {
            assert!(!is_lineage(bad), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        for good in ["fi-3f2c9a1e-17", "tok_1", &"a".repeat(63)] {
            assert!(is_token(good), "{good}");
        }
        for bad in ["", "Fi-1", "fi 1", "fi-é", &"a".repeat(64), "a\"b"] {
            assert!(!is_token(bad), "{bad}");
        }
    }
}
