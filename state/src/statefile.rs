//! The versioned on-disk format of a [`StateDoc`]: pretty JSON with a `format_version`.
//!
//! Decoding reads `format_version` before anything else. A newer format is refused (and
//! never rewritten, since nothing is returned to write back); an older one goes through
//! one upgrade function per version, `upgrade_v{N}` turning format N into N+1, listed in
//! [`UPGRADES`]. Format 1 is the first, so the list is empty for now.
//!
//! A valid document of the current format is parsed once, straight into a [`StateDoc`];
//! only a document that fails that (or is older) is parsed again as a JSON tree to find
//! out why, so the errors are the same as when the version was always read first.

use std::path::Path;

use serde_json::error::Category;

use crate::document::{FORMAT_VERSION, StateDoc};
use crate::error::StateError;

/// Turns a document of format N into one of format N+1 (including its `format_version`).
/// Anything it leaves malformed is reported by the final decode as
/// [`StateError::Invalid`].
type Upgrade = fn(serde_json::Value) -> serde_json::Value;

/// `UPGRADES[N - 1]` is `upgrade_v{N}`. When `FORMAT_VERSION` goes up, add the function
/// here (and a `testdata/roundtrip` fixture of the old format).
const UPGRADES: &[Upgrade] = &[];

const _: () = assert!(
    UPGRADES.len() + 1 == FORMAT_VERSION as usize,
    "every old state format needs its upgrade function"
);

/// Decodes a state document read from `source` (used only in error messages).
///
/// # Errors
/// [`StateError::Empty`], [`StateError::NotText`], [`StateError::Syntax`],
/// [`StateError::Truncated`], [`StateError::BadFormatVersion`],
/// [`StateError::NewerFormat`] or [`StateError::Invalid`]; each names `source` and, where
/// the JSON parser knows it, the line and column. Never panics.
pub fn decode(bytes: &[u8], source: &Path) -> Result<StateDoc, StateError> {
    let path = || source.to_path_buf();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty { path: path() });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| StateError::NotText {
        path: path(),
        offset: e.valid_up_to(),
    })?;
    if let Some(offset) = text.find('\0') {
        return Err(StateError::NotText {
            path: path(),
            offset,
        });
    }
    // The common case, parsed once: a well-formed object of a format this build reads
    // without upgrading. Anything else (an error to report, an older format) takes the
    // path below, which looks at `format_version` before the fields.
    if text.trim_start().starts_with('{')
        && let Ok(doc) = serde_json::from_str::<StateDoc>(text)
        && doc.format_version == FORMAT_VERSION
    {
        return Ok(doc);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| syntax(e, source))?;
    let Some(object) = value.as_object() else {
        // Let the typed decoder say what it expected, with a location.
        return Err(decode_current(text, source).err().unwrap_or_else(|| {
            StateError::BadFormatVersion {
                path: path(),
                reason: "the document is not a JSON object".to_string(),
            }
        }));
    };
    let version = match object.get("format_version") {
        None => {
            return Err(StateError::BadFormatVersion {
                path: path(),
                reason: "the field is missing".to_string(),
            });
        }
        Some(v) => v.as_u64().ok_or_else(|| StateError::BadFormatVersion {
            path: path(),
            reason: format!("expected a positive integer, found `{v}`"),
        })?,
    };
    if version == 0 {
        return Err(StateError::BadFormatVersion {
            path: path(),
            reason: "0 is not a state format".to_string(),
        });
    }
    if version > u64::from(FORMAT_VERSION) {
        return Err(StateError::NewerFormat {
            path: path(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == u64::from(FORMAT_VERSION) {
        // Decode from the text, not the value, so errors carry line and column.
        return decode_current(text, source);
    }
    let upgraded = UPGRADES[(version - 1) as usize..]
        .iter()
        .fold(value, |v, upgrade| upgrade(v));
    serde_json::from_value(upgraded).map_err(|e| invalid(e, source))
}

fn decode_current(text: &str, source: &Path) -> Result<StateDoc, StateError> {
    serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Data => invalid(e, source),
        _ => syntax(e, source),
    })
}

fn syntax(e: serde_json::Error, source: &Path) -> StateError {
    let (path, line, column) = (source.to_path_buf(), e.line(), e.column());
    match e.classify() {
        Category::Eof => StateError::Truncated {
            path,
            line,
            column,
            source: e,
        },
        Category::Io => StateError::Read {
            path,
            source: e.into(),
        },
        _ => StateError::Syntax {
            path,
            line,
            column,
            source: e,
        },
    }
}

fn invalid(e: serde_json::Error, source: &Path) -> StateError {
    StateError::Invalid {
        path: source.to_path_buf(),
        line: e.line(),
        column: e.column(),
        source: e,
    }
}

/// Encodes a state document as pretty JSON with a trailing newline.
///
/// # Panics
/// Never: every part of a [`StateDoc`] has string map keys and no floats.
pub fn encode(doc: &StateDoc) -> Vec<u8> {
    // State is the one place secrets are kept (a 0600 file): written as their value.
    let mut bytes = flyteinfra_core::reveal_secrets(|| serde_json::to_vec_pretty(doc))
        .expect("a state document always encodes");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::{Address, Mode, Value};

    use super::*;
    use crate::document::{Intent, Operation, Output, ResourceState, Status};

    fn path() -> &'static Path {
        Path::new("/tmp/x/aws.state.json")
    }

    pub(crate) fn sample() -> StateDoc {
        let mut doc = StateDoc::new("prod", "aws");
        doc.serial = 7;
        let addr = Address::new("aws_s3_bucket", "metadata");
        doc.resources.insert(
            addr.clone(),
            ResourceState {
                mode: Mode::Managed,
                id: "flyte-prod-metadata".into(),
                status: Status::Ready,
                inputs: [("name".to_string(), Value::Str("flyte-prod-metadata".into()))].into(),
                attributes: [
                    ("name".to_string(), Value::Str("flyte-prod-metadata".into())),
                    ("versioning".to_string(), Value::Bool(true)),
                    ("size".to_string(), Value::Int(3)),
                    ("tags".to_string(), Value::List(vec![Value::Null])),
                ]
                .into(),
                dependencies: vec![Address::new("aws_iam_role", "flyte")],
            },
        );
        doc.outputs.insert(
            "bucket".into(),
            Output {
                value: Value::Str("flyte-prod-metadata".into()),
                sensitive: false,
            },
        );
        doc.intents.insert(
            Address::new("aws_db_instance", "db"),
            Intent {
                operation: Operation::Create,
                token: "tok-1".into(),
                inputs: Default::default(),
                id: None,
                dependencies: vec![addr],
                sent_at: Some(1_764_000_000),
            },
        );
        doc
    }

    fn text_with(format_version: &str) -> String {
        String::from_utf8(encode(&sample())).unwrap().replace(
            "\"format_version\": 1",
            &format!("\"format_version\": {format_version}"),
        )
    }

    #[test]
    fn round_trip() {
        let doc = sample();
        let bytes = encode(&doc);
        assert!(bytes.ends_with(b"}\n"));
        assert!(String::from_utf8_lossy(&bytes).contains("\n  \"format_version\": 1,\n"));
        assert_eq!(decode(&bytes, path()).unwrap(), doc);
        assert_eq!(encode(&decode(&bytes, path()).unwrap()), bytes);
        let fresh = StateDoc::new("dev", "gcp");
        assert_eq!(decode(&encode(&fresh), path()).unwrap(), fresh);
    }

    #[test]
    fn optional_sections_may_be_absent() {
        let text =
            r#"{"format_version":1,"lineage":"l","serial":2,"deployment":"d","cloud":"aws"}"#;
        let doc = decode(text.as_bytes(), path()).unwrap();
        assert_eq!(doc.serial, 2);
        assert!(doc.resources.is_empty());
    }

    fn err(bytes: &[u8]) -> (StateError, String) {
        let e = decode(bytes, path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`/tmp/x/aws.state.json"), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
        (e, msg)
    }

    #[test]
    fn empty_file() {
        for bytes in [&b""[..], b"  \n\t"] {
            let (e, msg) = err(bytes);
            assert!(matches!(e, StateError::Empty { .. }), "{e:?}");
            assert_eq!(
                msg,
                "`/tmp/x/aws.state.json` is empty: expected a flyteinfra state document"
            );
        }
    }

    #[test]
    fn binary_file() {
        let (e, msg) = err(b"{\"a\xff\xfe\x00\x01");
        assert!(matches!(e, StateError::NotText { offset: 3, .. }), "{e:?}");
        assert!(msg.contains("binary data (byte offset 3)"), "{msg}");
        let (e, _) = err(b"\x00\x00\x00\x00");
        assert!(matches!(e, StateError::NotText { offset: 0, .. }), "{e:?}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let (e, msg) = err(b"{\n  \"format_version\": 1,\n  \"lineage\": x\n}\n");
        assert!(matches!(e, StateError::Syntax { line: 3, .. }), "{e:?}");
        assert!(msg.contains(" is not valid JSON at 3:"), "{msg}");
        let (e, msg) = err(b"{\"format_version\": 1} trailing");
        assert!(matches!(e, StateError::Syntax { .. }), "{e:?}");
        assert!(msg.contains("at 1:"), "{msg}");
    }

    #[test]
    fn truncated_file() {
        let full = encode(&sample());
        let cut = &full[..full.len() / 2];
        let (e, msg) = err(cut);
        assert!(matches!(e, StateError::Truncated { .. }), "{e:?}");
        assert!(
            msg.contains("is truncated: the JSON ends early at "),
            "{msg}"
        );
        let StateError::Truncated { line, column, .. } = e else {
            unreachable!()
        };
        assert!(msg.contains(&format!("{line}:{column}")), "{msg}");
        assert!(line > 1);
    }

    #[test]
    fn unknown_field() {
        let text = text_with("1").replacen("\"serial\"", "\"colour\": 1,\n  \"serial\"", 1);
        let (e, msg) = err(text.as_bytes());
        assert!(matches!(e, StateError::Invalid { line: 4, .. }), "{e:?}");
        assert!(
            msg.contains("is not a valid flyteinfra state document at 4:"),
            "{msg}"
        );
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("unknown field `colour`"), "{cause}");

        // Also inside a nested struct.
        let text = text_with("1").replacen("\"mode\"", "\"modes\"", 1);
        let (e, _) = err(text.as_bytes());
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("unknown field `modes`"), "{cause}");
    }

    #[test]
    fn missing_field() {
        let text = r#"{"format_version": 1, "serial": 1, "deployment": "d", "cloud": "aws"}"#;
        let (e, msg) = err(text.as_bytes());
        assert!(matches!(e, StateError::Invalid { line: 1, .. }), "{e:?}");
        assert!(msg.contains("at 1:"), "{msg}");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("missing field `lineage`"), "{cause}");
    }

    #[test]
    fn wrong_types_and_bad_addresses() {
        let text = text_with("1").replacen("\"serial\": 7", "\"serial\": \"7\"", 1);
        assert!(matches!(err(text.as_bytes()).0, StateError::Invalid { .. }));
        let text = text_with("1").replacen("aws_s3_bucket.metadata", "not an address", 1);
        assert!(matches!(err(text.as_bytes()).0, StateError::Invalid { .. }));
        let (e, _) = err(b"[1, 2]");
        assert!(matches!(e, StateError::Invalid { line: 1, .. }), "{e:?}");
    }

    #[test]
    fn newer_format_is_refused() {
        let (e, msg) = err(text_with("7").as_bytes());
        assert!(
            matches!(
                e,
                StateError::NewerFormat {
                    found: 7,
                    supported: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            msg,
            "`/tmp/x/aws.state.json` was written by a newer flyteinfra (state format 7); this build reads formats up to 1: upgrade flyteinfra"
        );
        // The version is checked before the fields: a newer format may have new ones.
        let text = text_with("7").replacen("\"serial\"", "\"novel\": {},\n  \"serial\"", 1);
        assert!(matches!(
            err(text.as_bytes()).0,
            StateError::NewerFormat { .. }
        ));
        let (e, _) = err(text_with("99999999999").as_bytes());
        assert!(matches!(
            e,
            StateError::NewerFormat {
                found: 99_999_999_999,
                ..
            }
        ));
    }

    #[test]
    fn bad_format_versions() {
        for (v, needle) in [
            ("0", "0 is not a state format"),
            ("-1", "expected a positive integer, found `-1`"),
            ("\"1\"", "expected a positive integer"),
            ("1.5", "expected a positive integer"),
        ] {
            let (e, msg) = err(text_with(v).as_bytes());
            assert!(
                matches!(e, StateError::BadFormatVersion { .. }),
                "{v}: {e:?}"
            );
            assert!(msg.contains(needle), "{msg}");
        }
        let text = text_with("1").replacen("\"format_version\": 1,", "", 1);
        let (e, msg) = err(text.as_bytes());
        assert!(matches!(e, StateError::BadFormatVersion { .. }), "{e:?}");
        assert!(
            msg.contains("has no valid `format_version`: the field is missing"),
            "{msg}"
        );
    }
}
