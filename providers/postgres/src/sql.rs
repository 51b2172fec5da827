//! Quoting for the statements that take no bind parameters (`CREATE ROLE`, `COMMENT ON`,
//! `CREATE DATABASE`, ...), name checks, and the ownership mark.

use flyteinfra_core::{ErrorKind, ProviderError};

/// What a comment starts with on an object flyteinfra made: `flyteinfra:<create token>`.
pub(crate) const MARK: &str = "flyteinfra:";

/// PostgreSQL's longest identifier in bytes (`NAMEDATALEN - 1`): a longer one is silently
/// truncated, and the object would not be found by the name it was made with.
const MAX_NAME: usize = 63;

/// The comment that proves a create with `token` made an object.
pub(crate) fn mark(token: &str) -> String {
    format!("{MARK}{token}")
}

/// `name` as a quoted identifier (`"a""b"`): any characters, case kept.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `s` as an escape string literal (`E'it''s \\ x'`): right whatever
/// `standard_conforming_strings` is, as libpq's `PQescapeLiteral`.
pub(crate) fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Checks a role or database name: not empty, at most 63 bytes, no NUL.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ProviderError> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME {
        "is longer than PostgreSQL's 63 bytes"
    } else if name.contains('\0') {
        "contains a NUL character"
    } else {
        return Ok(());
    };
    Err(ProviderError::new(
        ErrorKind::InvalidInput,
        format!("the {what} `{}` {problem}", name.replace('\0', "\\0")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(ident("flyte"), "\"flyte\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("Robert'); DROP"), "\"Robert'); DROP\"");
        assert_eq!(literal("plain"), "E'plain'");
        assert_eq!(literal("it's"), "E'it''s'");
        assert_eq!(literal("a\\'b"), "E'a\\\\''b'");
        assert_eq!(mark("t1"), "flyteinfra:t1");
    }

    #[test]
    fn names_postgresql_would_change_are_refused() {
        assert!(check_name("role", "flyte").is_ok());
        assert!(check_name("role", &"é".repeat(31)).is_ok());
        for bad in ["", "a\0b", &"x".repeat(64), &"é".repeat(32)] {
            let e = check_name("role", bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
        }
    }
}
