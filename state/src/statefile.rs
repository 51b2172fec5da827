//! The versioned on-disk format of a [`StateDoc`]: pretty JSON with a `format_version`.
//!
//! Decoding reads `format_version` before anything else. A newer format is refused (and
//! never rewritten, since nothing is returned to write back); an older one goes through
//! one upgrade function per version, `upgrade_v{N}` turning format N into N+1, listed in
//! [`UPGRADES`].
//!
//! - Format 2: secrets are written as `{"$sensitive": "…"}` (see
//!   `flyteinfra_core::reveal_secrets`), which a format-1 reader would take for a map.
//!
//! A valid document of the current format is parsed once, straight into a [`StateDoc`];
//! only a document that fails that (or is older) is parsed again as a JSON tree to find
//! out why, so the errors are the same as when the version was always read first.

use std::path::Path;

use serde_json::error::Category;

use crate::document::{FORMAT_VERSION, StateDoc};
use crate::error::StateError;
use crate::located::{FieldPath, locate};
use crate::validate;

/// Turns a document of format N into one of format N+1 (including its `format_version`).
/// Anything it leaves malformed is reported by the final decode as
/// [`StateError::Invalid`].
type Upgrade = fn(serde_json::Value) -> serde_json::Value;

/// `UPGRADES[N - 1]` is `upgrade_v{N}`. When `FORMAT_VERSION` goes up, add the function
/// here (and a `testdata/roundtrip` fixture of the old format).
const UPGRADES: &[Upgrade] = &[upgrade_v1];

/// Format 1 → 2: nothing moves. Format 1 held secrets as plain strings, which still decode;
/// the binary marks them by the schemas when it loads state.
fn upgrade_v1(mut doc: serde_json::Value) -> serde_json::Value {
    doc["format_version"] = serde_json::Value::from(2);
    doc
}

const _: () = assert!(
    UPGRADES.len() + 1 == FORMAT_VERSION as usize,
    "every old state format needs its upgrade function"
);

/// Decodes a state document read from `source` (used only in error messages), and checks
/// what the engine later relies on (see [`decode_with_types`]) except the resource types.
///
/// # Errors
/// [`StateError::Empty`], [`StateError::NotText`], [`StateError::Syntax`],
/// [`StateError::Truncated`], [`StateError::BadFormatVersion`],
/// [`StateError::NewerFormat`], [`StateError::Invalid`] or [`StateError::BadField`]; each
/// names `source` and, where it can be found, the line, column and field. Never panics.
pub fn decode(bytes: &[u8], source: &Path) -> Result<StateDoc, StateError> {
    decode_checked(bytes, source, None)
}

/// [`decode`], and every resource and intent must have a type `known_type` accepts (the
/// binary passes its provider registry, before any provider is called). Checked: the
/// lineage is a UUID as flyteinfra makes them, the serial is at most
/// [`MAX_SERIAL`](crate::MAX_SERIAL), intent tokens can be sent to a cloud, `sent_at` is a
/// time, recorded dependencies form no cycle.
///
/// # Errors
/// As [`decode`]; an unknown type is a [`StateError::BadField`] naming the resource.
pub fn decode_with_types(
    bytes: &[u8],
    source: &Path,
    known_type: &dyn Fn(&str) -> bool,
) -> Result<StateDoc, StateError> {
    decode_checked(bytes, source, Some(known_type))
}

fn decode_checked(
    bytes: &[u8],
    source: &Path,
    known_type: Option<&dyn Fn(&str) -> bool>,
) -> Result<StateDoc, StateError> {
    let (doc, text) = parse(bytes, source)?;
    validate::check(&doc, known_type).map_err(|p| {
        let (line, column) = locate(text, &p.field).unwrap_or((0, 0));
        StateError::BadField {
            path: source.to_path_buf(),
            line,
            column,
            field: p.field.to_string(),
            reason: p.reason,
        }
    })?;
    Ok(doc)
}

/// The document and its text, decoded and upgraded but not yet checked.
fn parse<'t>(bytes: &'t [u8], source: &Path) -> Result<(StateDoc, &'t str), StateError> {
    let path = || source.to_path_buf();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty { path: path() });
    }
    let not_text = |offset: usize| {
        // The bytes before the first bad one are text, so they have lines and columns.
        let before = String::from_utf8_lossy(bytes.get(..offset).unwrap_or_default());
        let (line, column) = end_of(&before);
        StateError::NotText {
            path: path(),
            line,
            column,
            offset,
        }
    };
    let text = std::str::from_utf8(bytes).map_err(|e| not_text(e.valid_up_to()))?;
    if let Some(offset) = text.find('\0') {
        return Err(not_text(offset));
    }
    // The common case, parsed once: a well-formed object of a format this build reads
    // without upgrading. Anything else (an error to report, an older format) takes the
    // path below, which looks at `format_version` before the fields.
    if text.trim_start().starts_with('{')
        && let Ok(doc) = serde_json::from_str::<StateDoc>(text)
        && doc.format_version == FORMAT_VERSION
    {
        return Ok((doc, text));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| syntax(e, source))?;
    let Some(object) = value.as_object() else {
        // Let the typed decoder say what it expected, with a location.
        return Err(decode_current(text, source).err().unwrap_or_else(|| {
            StateError::BadFormatVersion {
                path: path(),
                line: 1,
                column: 1,
                reason: "the document is not a JSON object".to_string(),
            }
        }));
    };
    let (line, column) = locate(text, &FieldPath::root().key("format_version")).unwrap_or((0, 0));
    let bad_version = |reason: String| StateError::BadFormatVersion {
        path: path(),
        line,
        column,
        reason,
    };
    let version = match object.get("format_version") {
        None => return Err(bad_version("the field is missing".to_string())),
        Some(v) => v.as_u64().ok_or_else(|| {
            bad_version(format!("expected a positive integer, found `{}`", shown(v)))
        })?,
    };
    if version == 0 {
        return Err(bad_version("0 is not a state format".to_string()));
    }
    if version > u64::from(FORMAT_VERSION) {
        return Err(StateError::NewerFormat {
            path: path(),
            line,
            column,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == u64::from(FORMAT_VERSION) {
        // Decode from the text, not the value, so errors carry line and column.
        return Ok((decode_current(text, source)?, text));
    }
    let upgraded = UPGRADES
        .get(usize::try_from(version - 1).unwrap_or(usize::MAX)..)
        .unwrap_or_default()
        .iter()
        .fold(value, |v, upgrade| upgrade(v));
    let doc = serde_json::from_value(upgraded).map_err(|e| invalid(e, String::new(), source))?;
    Ok((doc, text))
}

/// The line and column (from 1, in characters) just after `text`.
fn end_of(text: &str) -> (usize, usize) {
    let line = text.matches('\n').count() + 1;
    let column = text.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// A JSON value for a message: compact, and cut short (a file may hold anything there).
fn shown(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// Decodes `text`, which is known to be valid JSON: every error is about its shape (some,
/// like a number where an enum's name belongs, serde_json calls syntax errors).
fn decode_current(text: &str, source: &Path) -> Result<StateDoc, StateError> {
    serde_json::from_str(text).map_err(|e| invalid(e, failing_field(text), source))
}

/// The field a decoding error is in: decodes again, tracking the path (errors only, so the
/// common case pays nothing for it). Empty at the top level.
fn failing_field(text: &str) -> String {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, StateDoc>(&mut de) {
        Err(e) if e.path().iter().next().is_some() => FieldPath::from_serde(e.path()).to_string(),
        _ => String::new(),
    }
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

fn invalid(e: serde_json::Error, field: String, source: &Path) -> StateError {
    StateError::Invalid {
        path: source.to_path_buf(),
        line: e.line(),
        column: e.column(),
        field,
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
    use crate::validate::{MAX_SENT_AT, MAX_SERIAL};

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
            "\"format_version\": 2",
            &format!("\"format_version\": {format_version}"),
        )
    }

    #[test]
    fn round_trip() {
        let doc = sample();
        let bytes = encode(&doc);
        assert!(bytes.ends_with(b"}\n"));
        assert!(String::from_utf8_lossy(&bytes).contains("\n  \"format_version\": 2,\n"));
        assert_eq!(decode(&bytes, path()).unwrap(), doc);
        assert_eq!(encode(&decode(&bytes, path()).unwrap()), bytes);
        let fresh = StateDoc::new("dev", "gcp");
        assert_eq!(decode(&encode(&fresh), path()).unwrap(), fresh);
    }

    /// Format 1 held secrets as plain strings: it still decodes (the binary marks them by
    /// the schemas), and is written back as format 2.
    #[test]
    fn format_1_is_upgraded() {
        let text = r#"{"format_version":1,"lineage":"3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1b","serial":2,"deployment":"d","cloud":"aws","resources":{"random_password.db":{"mode":"managed","id":"generated","status":"ready","attributes":{"result":"plain-old-secret"}}}}"#;
        let doc = decode(text.as_bytes(), path()).unwrap();
        assert_eq!(doc.format_version, 2);
        let a: Address = "random_password.db".parse().unwrap();
        assert_eq!(
            doc.resources[&a].attributes["result"].expose_str(),
            Some("plain-old-secret")
        );
        let again = String::from_utf8(encode(&doc)).unwrap();
        assert!(again.contains("\"format_version\": 2,"), "{again}");
    }

    #[test]
    fn optional_sections_may_be_absent() {
        let text = r#"{"format_version":1,"lineage":"3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1b","serial":2,"deployment":"d","cloud":"aws"}"#;
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
        assert!(msg.contains("binary data at 1:4 (byte offset 3)"), "{msg}");
        let (e, _) = err(b"{\n  \"a\": \"\xc3\"");
        assert!(
            matches!(
                e,
                StateError::NotText {
                    line: 2,
                    column: 9,
                    offset: 10,
                    ..
                }
            ),
            "{e:?}"
        );
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
        let text = text_with("2").replacen("\"serial\"", "\"colour\": 1,\n  \"serial\"", 1);
        let (e, msg) = err(text.as_bytes());
        assert!(matches!(e, StateError::Invalid { line: 4, .. }), "{e:?}");
        assert!(
            msg.contains("is not a valid flyteinfra state document at 4:"),
            "{msg}"
        );
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("unknown field `colour`"), "{cause}");

        // Also inside a nested struct.
        let text = text_with("2").replacen("\"mode\"", "\"modes\"", 1);
        let (e, _) = err(text.as_bytes());
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("unknown field `modes`"), "{cause}");
    }

    #[test]
    fn missing_field() {
        let text = r#"{"format_version": 2, "serial": 1, "deployment": "d", "cloud": "aws"}"#;
        let (e, msg) = err(text.as_bytes());
        assert!(matches!(e, StateError::Invalid { line: 1, .. }), "{e:?}");
        assert!(msg.contains("at 1:"), "{msg}");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("missing field `lineage`"), "{cause}");
    }

    #[test]
    fn wrong_types_and_bad_addresses() {
        let text = text_with("2").replacen("\"serial\": 7", "\"serial\": \"7\"", 1);
        assert!(matches!(err(text.as_bytes()).0, StateError::Invalid { .. }));
        let text = text_with("2").replacen("aws_s3_bucket.metadata", "not an address", 1);
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
                    supported: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            msg,
            "`/tmp/x/aws.state.json` was written by a newer flyteinfra (state format 7, `format_version` at 2:3); this build reads formats up to 2: upgrade flyteinfra"
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
                matches!(
                    e,
                    StateError::BadFormatVersion {
                        line: 2,
                        column: 3,
                        ..
                    }
                ),
                "{v}: {e:?}"
            );
            assert!(
                msg.contains("has no valid `format_version` at 2:3: "),
                "{msg}"
            );
            assert!(msg.contains(needle), "{msg}");
        }
        let text = text_with("2").replacen("\"format_version\": 2,", "", 1);
        let (e, msg) = err(text.as_bytes());
        assert!(matches!(e, StateError::BadFormatVersion { .. }), "{e:?}");
        assert!(
            msg.contains("has no valid `format_version`: the field is missing"),
            "{msg}"
        );
    }

    /// The message of a semantic error: located, naming the field.
    fn bad_field(text: &str, field: &str) -> String {
        let (e, msg) = err(text.as_bytes());
        let StateError::BadField {
            field: f,
            line,
            column,
            ..
        } = &e
        else {
            panic!("{field}: expected BadField, got {e:?}")
        };
        assert_eq!(f, field, "{msg}");
        assert!(*line > 0 && *column > 0, "{msg}");
        assert!(
            msg.contains(&format!(" at {line}:{column}: `{field}`: ")),
            "{msg}"
        );
        msg
    }

    fn with_lineage(lineage: &str) -> String {
        let doc = sample();
        String::from_utf8(encode(&doc))
            .unwrap()
            .replacen(&doc.lineage, lineage, 1)
    }

    #[test]
    fn lineages_that_tokens_cannot_be_made_of_are_refused() {
        for lineage in [
            "",
            "3f2c",
            "é3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1",
            "ééééééééé",
            "3F2C9A1E-0B7D-4C1E-9A4F-5D6E7F809A1B",
            "3f2c9a1e 0b7d-4c1e-9a4f-5d6e7f809a1b",
        ] {
            let msg = bad_field(&with_lineage(lineage), "lineage");
            assert!(msg.contains(" at 3:3: "), "{msg}");
            assert!(msg.contains("is not a state lineage"), "{msg}");
        }
        // A huge value is cut short in the message.
        let msg = bad_field(&with_lineage(&"x".repeat(10_000)), "lineage");
        assert!(msg.len() < 400, "{msg}");
    }

    #[test]
    fn serials_out_of_range() {
        let doc = sample();
        let text = String::from_utf8(encode(&doc)).unwrap();
        let huge = text.replacen("\"serial\": 7", &format!("\"serial\": {}", u64::MAX), 1);
        let msg = bad_field(&huge, "serial");
        assert!(msg.contains("18446744073709551615 is larger than"), "{msg}");
        let max = text.replacen("\"serial\": 7", &format!("\"serial\": {MAX_SERIAL}"), 1);
        assert_eq!(decode(max.as_bytes(), path()).unwrap().serial, MAX_SERIAL);
        // Not a u64 at all: the decoder's error, naming the field.
        for v in ["-1", "1e30", "\"7\"", "null"] {
            let bad = text.replacen("\"serial\": 7", &format!("\"serial\": {v}"), 1);
            let (e, msg) = err(bad.as_bytes());
            assert!(
                matches!(e, StateError::Invalid { line: 4, .. }),
                "{v}: {e:?}"
            );
            assert!(msg.ends_with(", field `serial`"), "{v}: {msg}");
        }
    }

    #[test]
    fn intents_are_checked() {
        let text = String::from_utf8(encode(&sample())).unwrap();
        for token in ["", "TOK", "tok 1", "tök", &"t".repeat(64)] {
            let bad = text.replacen("\"tok-1\"", &serde_json::to_string(token).unwrap(), 1);
            let msg = bad_field(&bad, r#"intents["aws_db_instance.db"].token"#);
            assert!(msg.contains("is not an intent token"), "{msg}");
        }
        // A delete intent has no token.
        let delete = text
            .replacen("\"operation\": \"create\"", "\"operation\": \"delete\"", 1)
            .replacen("\"tok-1\"", "\"\"", 1);
        decode(delete.as_bytes(), path()).unwrap();

        let bad = text.replacen("\"operation\": \"create\"", "\"operation\": \"explode\"", 1);
        let (e, msg) = err(bad.as_bytes());
        assert!(matches!(e, StateError::Invalid { .. }), "{e:?}");
        assert!(
            msg.ends_with(r#", field `intents["aws_db_instance.db"].operation`"#),
            "{msg}"
        );
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("unknown variant `explode`"), "{cause}");

        let bad = text.replacen("1764000000", &u64::MAX.to_string(), 1);
        let msg = bad_field(&bad, r#"intents["aws_db_instance.db"].sent_at"#);
        assert!(msg.contains("after the year 9999"), "{msg}");
        let last = text.replacen("1764000000", &MAX_SENT_AT.to_string(), 1);
        decode(last.as_bytes(), path()).unwrap();
    }

    #[test]
    fn dependency_cycles_are_refused() {
        let mut doc = sample();
        let bucket = Address::new("aws_s3_bucket", "metadata");
        let role = Address::new("aws_iam_role", "flyte");
        let mut rs = doc.resources[&bucket].clone();
        rs.dependencies = vec![bucket.clone()];
        doc.resources.insert(role.clone(), rs);
        let text = String::from_utf8(encode(&doc)).unwrap();
        let msg = bad_field(&text, r#"resources["aws_iam_role.flyte"].dependencies"#);
        assert!(
            msg.contains(
                "`aws_iam_role.flyte` -> `aws_s3_bucket.metadata` -> `aws_iam_role.flyte`"
            ),
            "{msg}"
        );
        // Depending on itself is a cycle too.
        doc.resources.get_mut(&role).unwrap().dependencies = vec![role.clone()];
        let text = String::from_utf8(encode(&doc)).unwrap();
        bad_field(&text, r#"resources["aws_iam_role.flyte"].dependencies"#);
    }

    #[test]
    fn unknown_types_are_refused_only_when_asked() {
        let bytes = encode(&sample());
        let all = |_: &str| true;
        assert_eq!(
            decode_with_types(&bytes, path(), &all).unwrap(),
            sample_like(&bytes)
        );
        let no_buckets = |t: &str| t != "aws_s3_bucket";
        let e = decode_with_types(&bytes, path(), &no_buckets).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(r#"`resources["aws_s3_bucket.metadata"]`: type `aws_s3_bucket` is not a resource type"#),
            "{msg}"
        );
        assert!(
            msg.contains("flyteinfra state rm aws_s3_bucket.metadata"),
            "{msg}"
        );
        let no_db = |t: &str| t != "aws_db_instance";
        let msg = decode_with_types(&bytes, path(), &no_db)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(r#"`intents["aws_db_instance.db"]`: type `aws_db_instance`"#),
            "{msg}"
        );
        // Without a registry (`state list`, `state rm`), the type is not judged.
        decode(&bytes, path()).unwrap();
    }

    fn sample_like(bytes: &[u8]) -> StateDoc {
        decode(bytes, path()).unwrap()
    }

    #[test]
    fn decoding_errors_name_the_field() {
        let text = text_with("2").replacen("\"mode\"", "\"modes\"", 1);
        let (_, msg) = err(text.as_bytes());
        assert!(
            msg.contains(r#", field `resources["aws_s3_bucket.metadata"]"#),
            "{msg}"
        );
        let text = text_with("2").replacen("\"status\": \"ready\"", "\"status\": 3", 1);
        let (_, msg) = err(text.as_bytes());
        assert!(
            msg.ends_with(r#", field `resources["aws_s3_bucket.metadata"].status`"#),
            "{msg}"
        );
    }
}
