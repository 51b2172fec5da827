//! From bytes to a [`Config`]: pre-checks, serde-saphyr, and positions.
//!
//! serde-saphyr reports a [`Location`](serde_saphyr::Location) for every error but
//! its messages name Rust types (`invalid u32`, `expected mapping start`). We keep
//! its location and rewrite the message using a [`SourceMap`]: a map from key paths
//! (`aws.vpc_cidr`, `flyte.projects[1]`) to the key and value positions of each
//! node, built from the YAML event stream of the same text. The same map lets
//! [`Config::validate`](super::Config::validate) point at values after parsing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::{self, Event, ScalarStyle};
use serde_saphyr::{Error as YamlError, ExternalMessageSource, MessageFormatter};

use super::Config;
use super::error::{ConfigError, ConfigErrorKind, Position};

/// Largest config file accepted, in bytes.
pub(crate) const MAX_BYTES: usize = 1 << 20;
/// Deepest nesting of mappings and sequences accepted (the schema needs four).
pub(crate) const MAX_DEPTH: usize = 32;
/// Most YAML nodes accepted.
const MAX_NODES: usize = 50_000;

const EXPECTED_ROOT: &str = "expected a mapping with at least `name` and `cloud`";

/// Reads a config file, refusing files over [`MAX_BYTES`] and text that is not UTF-8.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigError> {
    let file = File::open(path).map_err(|e| ConfigError::read(path, e))?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::read(path, e))?;
    text_of(bytes, path)
}

/// The text of a config file's `bytes` (read from `path`), refusing more than
/// [`MAX_BYTES`] and bytes that are not UTF-8, located.
pub(crate) fn text_of(bytes: Vec<u8>, path: &Path) -> Result<String, ConfigError> {
    if bytes.len() > MAX_BYTES {
        let prefix = String::from_utf8_lossy(&bytes[..MAX_BYTES]);
        return Err(too_large(path, &prefix));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            if let Some(nul) = bytes[..at].iter().position(|&b| b == 0) {
                let prefix = String::from_utf8_lossy(&bytes[..nul]);
                return Err(nul_error(path, end_position(&prefix)));
            }
            let prefix = String::from_utf8_lossy(&bytes[..at]);
            Err(ConfigError::at(
                path,
                end_position(&prefix),
                ConfigErrorKind::Encoding,
                format!(
                    "invalid UTF-8 (byte 0x{:02X}), expected UTF-8 text (is this a binary file?)",
                    bytes[at]
                ),
            ))
        }
    }
}

fn nul_error(path: &Path, at: Position) -> ConfigError {
    ConfigError::at(
        path,
        at,
        ConfigErrorKind::Encoding,
        "NUL byte (U+0000), expected text (is this a binary file?)",
    )
}

fn too_large(path: &Path, prefix: &str) -> ConfigError {
    ConfigError::at(
        path,
        end_position(prefix),
        ConfigErrorKind::Limit,
        format!(
            "the file is larger than {} KiB, expected a config file of at most {MAX_BYTES} bytes",
            MAX_BYTES / 1024
        ),
    )
}

/// The position just after `prefix` (where the next character would be).
fn end_position(prefix: &str) -> Position {
    let line = prefix.matches('\n').count() + 1;
    let last_line = prefix.rsplit('\n').next().unwrap_or("");
    let column = last_line.chars().count() + 1;
    Position::new(to_u32(line), to_u32(column))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Checks what YAML parsers report badly: size, control characters, emptiness.
fn check_text(text: &str, path: &Path) -> Result<(), ConfigError> {
    if text.len() > MAX_BYTES {
        let mut cut = MAX_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(too_large(path, &text[..cut]));
    }
    let (mut line, mut column) = (1u32, 1u32);
    for c in text.chars() {
        if is_forbidden_control(c) {
            let at = Position::new(line, column);
            if c == '\0' {
                return Err(nul_error(path, at));
            }
            return Err(ConfigError::at(
                path,
                at,
                ConfigErrorKind::Encoding,
                format!(
                    "control character U+{:04X}, expected printable text",
                    u32::from(c)
                ),
            ));
        }
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    let mut lines = text
        .trim_start_matches('\u{FEFF}')
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if lines.clone().next().is_none() {
        return Err(ConfigError::at(
            path,
            Position::START,
            ConfigErrorKind::Empty,
            format!("empty file, {EXPECTED_ROOT}"),
        ));
    }
    if lines.all(|l| l.starts_with('#')) {
        return Err(ConfigError::at(
            path,
            Position::START,
            ConfigErrorKind::Empty,
            format!("empty file (only comments), {EXPECTED_ROOT}"),
        ));
    }
    Ok(())
}

/// Characters YAML does not allow in a stream (outside `c-printable`).
fn is_forbidden_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}')
        || (('\u{80}'..='\u{9F}').contains(&c) && c != '\u{85}')
        || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Deserializes `text` into a [`Config`] (not yet validated) and maps its positions.
pub(crate) fn deserialize(text: &str, path: &Path) -> Result<(Config, SourceMap), ConfigError> {
    check_text(text, path)?;
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: 4 * MAX_NODES,
            max_documents: 1,
            max_aliases: 1_000,
            max_anchors: 1_000,
        },
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Config>(text, options) {
        Ok(config) => Ok((config, SourceMap::scan(text))),
        Err(e) => Err(translate(&e, text, path)),
    }
}

/// Turns a serde-saphyr error into a [`ConfigError`] at the same position, naming the
/// key path and the YAML that was found instead of Rust types.
fn translate(err: &YamlError, text: &str, path: &Path) -> ConfigError {
    let err = err.without_snippet();
    let position = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Position::new(to_u32_64(l.line()), to_u32_64(l.column())))
        .unwrap_or(Position::START);
    let map = || SourceMap::scan(text);
    let (kind, position, message) = match err {
        YamlError::ExternalMessage { source, msg, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan) => syntax_message(scan.kind(), msg, text, position),
            _ => (ConfigErrorKind::Syntax, position, msg.clone()),
        },
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let map = map();
            let parent = map.key_path_at(position).map(parent_of).unwrap_or("");
            (
                ConfigErrorKind::Shape,
                position,
                format!(
                    "unknown key `{field}` {}, expected one of {}",
                    in_section(parent),
                    quote_list(expected)
                ),
            )
        }
        YamlError::SerdeMissingField { field, .. } => missing_field(&map(), field, position),
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let map = map();
            let target = map
                .value_path_at(position)
                .map(str::to_owned)
                .or_else(|| map.key_path_at(position).map(|p| parent_of(p).to_owned()))
                .unwrap_or_default();
            (
                ConfigErrorKind::Shape,
                position,
                format!(
                    "unknown value `{variant}` for {}, expected one of {}",
                    describe_path(&target),
                    quote_list(expected)
                ),
            )
        }
        YamlError::DuplicateMappingKey { key, .. } => {
            let map = map();
            let parent = map.key_path_at(position).map(parent_of).unwrap_or("");
            let key = key.as_deref().unwrap_or("?");
            (
                ConfigErrorKind::Syntax,
                position,
                format!(
                    "duplicate key `{key}` {}, expected each key at most once",
                    in_section(parent)
                ),
            )
        }
        YamlError::MultipleDocuments { .. } => (
            ConfigErrorKind::Syntax,
            position,
            "a second YAML document starts here, expected exactly one document".to_owned(),
        ),
        YamlError::Budget { breach, .. } => {
            let kind = match breach {
                BudgetBreach::Documents { .. } => ConfigErrorKind::Syntax,
                _ => ConfigErrorKind::Limit,
            };
            (kind, position, budget_message(breach))
        }
        YamlError::IOError { cause } => (
            ConfigErrorKind::Encoding,
            position,
            format!("cannot decode the text ({cause}), expected UTF-8 text"),
        ),
        YamlError::Message { msg, .. } => {
            let map = map();
            match map.value_path_at(position) {
                Some(p) => (
                    ConfigErrorKind::Shape,
                    position,
                    format!("invalid {}: {msg}", describe_path(p)),
                ),
                None => (ConfigErrorKind::Shape, position, msg.clone()),
            }
        }
        YamlError::InvalidScalar { ty, .. } => {
            type_message(&map(), position, expected_for_scalar(ty))
        }
        YamlError::Unexpected { expected, .. } => {
            type_message(&map(), position, expected_for_event(expected))
        }
        YamlError::NullIntoString { .. } => type_message(&map(), position, "a string".into()),
        YamlError::InvalidBooleanStrict { .. } => {
            type_message(&map(), position, "`true` or `false`".into())
        }
        YamlError::SerdeInvalidType { expected, .. }
        | YamlError::SerdeInvalidValue { expected, .. } => {
            type_message(&map(), position, expected.clone())
        }
        YamlError::UnknownAnchor { .. } => (
            ConfigErrorKind::Syntax,
            position,
            "alias refers to an unknown anchor, expected an `&anchor` defined earlier".to_owned(),
        ),
        other => (
            ConfigErrorKind::Shape,
            position,
            serde_saphyr::UserMessageFormatter
                .format_message(other)
                .into_owned(),
        ),
    };
    ConfigError::at(path, position, kind, message)
}

/// The error for a required key `field` the file lacks, located at the section that lacks
/// it (`fallback` when that cannot be told).
fn missing_field(
    map: &SourceMap,
    field: &str,
    fallback: Position,
) -> (ConfigErrorKind, Position, String) {
    let (section, at) = map.missing_field_section(field, fallback);
    let message = if section.is_empty() {
        format!("missing required key `{field}` at the top level, {EXPECTED_ROOT}")
    } else {
        format!(
            "missing required key `{field}` in `{section}`, expected a `{field}:` entry (it has no default)"
        )
    };
    (ConfigErrorKind::Shape, at, message)
}

/// [`missing_field`] as an error, for a key that deserialization left to a default but
/// the rest of the file makes required (`cloud` outside `style: sandbox`).
pub(crate) fn missing_key(map: &SourceMap, field: &str, path: &Path) -> ConfigError {
    let (kind, position, message) = missing_field(map, field, Position::START);
    ConfigError::at(path, position, kind, message)
}

fn to_u32_64(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn parent_of(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

fn in_section(parent: &str) -> String {
    if parent.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in `{parent}`")
    }
}

fn describe_path(path: &str) -> String {
    if path.is_empty() {
        "the document".to_owned()
    } else {
        format!("`{path}`")
    }
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn expected_for_scalar(ty: &str) -> String {
    match ty {
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u8" | "u32" | "u64" | "usize" => "a whole number, zero or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "bool" | "boolean" => "`true` or `false`".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        other => format!("a value of type {other}"),
    }
}

fn expected_for_event(expected: &str) -> String {
    match expected {
        "mapping start" | "empty mapping start" => "a mapping".to_owned(),
        "sequence start" => "a sequence".to_owned(),
        "string scalar" | "scalar" => "a single value (string, number or boolean)".to_owned(),
        other => other.to_owned(),
    }
}

/// "`database.storage_gb` is `lots`, expected a whole number", naming what was found.
fn type_message(
    map: &SourceMap,
    position: Position,
    expected: String,
) -> (ConfigErrorKind, Position, String) {
    let found = map.node_at_value(position);
    let message = match found {
        Some(("", node)) => match node.kind {
            NodeKind::Null => format!("the document is empty, {EXPECTED_ROOT}"),
            _ => format!("the document is {}, {EXPECTED_ROOT}", node.describe()),
        },
        Some((path, node)) => format!("`{path}` is {}, expected {expected}", node.describe()),
        None => format!("wrong type, expected {expected}"),
    };
    (ConfigErrorKind::Shape, position, message)
}

fn budget_message(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => format!(
            "nesting is deeper than {MAX_DEPTH} levels, expected a config nested a few levels deep"
        ),
        BudgetBreach::Documents { .. } => {
            "a second YAML document starts here, expected exactly one document".to_owned()
        }
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
            format!("the YAML has more than {MAX_NODES} nodes, expected a config of ordinary size")
        }
        other => format!(
            "the YAML exceeds a safety limit ({other:?}), expected a config of ordinary size"
        ),
    }
}

fn syntax_message(
    kind: &granit_parser::ErrorKind,
    msg: &str,
    text: &str,
    position: Position,
) -> (ConfigErrorKind, Position, String) {
    use granit_parser::ErrorKind as K;
    let syntax = ConfigErrorKind::Syntax;
    match kind {
        K::RecursionLimitExceeded => (
            ConfigErrorKind::Limit,
            position,
            format!(
                "nesting is deeper than {MAX_DEPTH} levels, expected a config nested a few levels deep"
            ),
        ),
        K::TabNotAllowed | K::TabInBlockIndentation | K::TabInIndentation | K::TabAtBlockScalarStart => {
            (syntax, first_indent_tab(text).unwrap_or(position), tab_message())
        }
        K::UnclosedQuotedScalar => (
            syntax,
            position,
            "unclosed quote, expected a closing quote before the end of the value".to_owned(),
        ),
        _ if msg.contains("tab") => {
            (syntax, first_indent_tab(text).unwrap_or(position), tab_message())
        }
        K::MappingValueNotAllowed => (
            syntax,
            position,
            "unexpected `:` here, expected each key at the indentation of its siblings (is this line indented too far, or does a value containing `: ` need quotes?)".to_owned(),
        ),
        K::BlockSequenceEntryNotAllowed => (
            syntax,
            position,
            "unexpected `- ` here, expected sequence items on their own lines, indented under their key".to_owned(),
        ),
        K::MismatchedFlowCollectionEnd { open, close } => (
            syntax,
            position,
            format!("bracket `{open}` closed by `{close}`, expected `{}`", closing(*open)),
        ),
        K::UnclosedFlowCollection { open } => (
            syntax,
            position,
            format!("unclosed bracket `{open}`, expected a matching `{}`", closing(*open)),
        ),
        K::ExpectedBlockMappingKey | K::InvalidIndentation => (
            syntax,
            position,
            format!("{msg}, expected keys of one mapping to be indented equally"),
        ),
        K::InvalidSimpleKey | K::SimpleKeyExpected => (
            syntax,
            position,
            format!("{msg}, expected `key: value` at consistent indentation (is this line indented too far, or is a value missing quotes?)"),
        ),
        _ if msg.contains("expected") => (syntax, position, msg.to_owned()),
        _ => (syntax, position, format!("{msg}, expected valid YAML")),
    }
}

fn closing(open: char) -> char {
    match open {
        '[' => ']',
        '{' => '}',
        other => other,
    }
}

fn tab_message() -> String {
    "tab character in indentation, expected spaces (YAML does not allow tabs for indentation)"
        .to_owned()
}

/// The first tab in the leading whitespace of a line, if any.
fn first_indent_tab(text: &str) -> Option<Position> {
    for (i, line) in text.lines().enumerate() {
        for (j, c) in line.chars().enumerate() {
            match c {
                ' ' => continue,
                '\t' => return Some(Position::new(to_u32(i + 1), to_u32(j + 1))),
                _ => break,
            }
        }
    }
    None
}

/// What a node is, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Null,
    Scalar,
    Sequence,
    Mapping,
    Alias,
}

/// One node of the document: where its key and value are and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    /// Position of the key, for mapping entries.
    pub(crate) key: Option<Position>,
    /// Position of the value.
    pub(crate) value: Position,
    pub(crate) kind: NodeKind,
    /// Scalar text, shortened for messages.
    text: String,
}

impl Node {
    fn describe(&self) -> String {
        match self.kind {
            NodeKind::Null => "empty (null)".to_owned(),
            NodeKind::Scalar => format!("`{}`", self.text),
            NodeKind::Sequence => "a sequence".to_owned(),
            NodeKind::Mapping => "a mapping".to_owned(),
            NodeKind::Alias => "an alias".to_owned(),
        }
    }
}

/// Key and value positions of every node, by key path (`""` is the document,
/// `aws.vpc_cidr` a key, `flyte.projects[1]` a sequence item).
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceMap {
    nodes: BTreeMap<String, Node>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

fn is_null(text: &str, style: ScalarStyle) -> bool {
    style == ScalarStyle::Plain && matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

impl SourceMap {
    /// Maps every node of the first document of `text`, stopping quietly at the
    /// first syntax error (the nodes before it are kept). Iterative: deep input
    /// costs memory for the path stack, never call-stack depth.
    pub(crate) fn scan(text: &str) -> SourceMap {
        let mut options = granit_parser::Options::default();
        options.set_emit_comments(false);
        options.flow_nesting_limit = MAX_DEPTH;
        options.block_nesting_limit = MAX_DEPTH;
        let parser = granit_parser::Parser::new_from_str_with_options(text, options);
        let mut map = SourceMap::default();
        let mut stack: Vec<Frame> = Vec::new();
        // A key currently being read as a complex (collection) key: its depth.
        let mut complex_key_depth: Option<usize> = None;
        for item in parser {
            let Ok((event, span)) = item else { break };
            let at = Position::new(
                to_u32(span.start.line()),
                to_u32(span.start.col().saturating_add(1)),
            );
            let (kind, text) = match &event {
                Event::Scalar(value, style, _, _) => {
                    if is_null(value, *style) {
                        (NodeKind::Null, String::new())
                    } else {
                        (NodeKind::Scalar, shorten(value))
                    }
                }
                Event::SequenceStart(..) => (NodeKind::Sequence, String::new()),
                Event::MappingStart(..) => (NodeKind::Mapping, String::new()),
                Event::Alias(_) => (NodeKind::Alias, String::new()),
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                    if complex_key_depth == Some(stack.len()) {
                        complex_key_depth = None;
                    }
                    continue;
                }
                Event::DocumentEnd => break,
                _ => continue,
            };
            let opens = matches!(kind, NodeKind::Sequence | NodeKind::Mapping);
            if complex_key_depth.is_some() {
                // Inside a collection used as a key: not addressable, only track depth.
                if opens {
                    stack.push(Frame::Seq {
                        path: String::new(),
                        next: 0,
                    });
                }
                continue;
            }
            // Decide the role of this node from the innermost open collection.
            let path = match stack.last_mut() {
                None => String::new(),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    p
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => join(path, &k),
                    None => {
                        // This node is a key.
                        let name = match kind {
                            NodeKind::Scalar | NodeKind::Null => text.clone(),
                            _ => "?".to_owned(),
                        };
                        let full = join(path, &name);
                        *key = Some(name);
                        map.nodes
                            .entry(full)
                            .and_modify(|n| n.key = Some(at))
                            .or_insert(Node {
                                key: Some(at),
                                value: at,
                                kind: NodeKind::Null,
                                text: String::new(),
                            });
                        if opens {
                            complex_key_depth = Some(stack.len());
                            stack.push(Frame::Seq {
                                path: String::new(),
                                next: 0,
                            });
                        }
                        continue;
                    }
                },
            };
            let key = map.nodes.get(&path).and_then(|n| n.key);
            map.nodes.insert(
                path.clone(),
                Node {
                    key,
                    value: at,
                    kind,
                    text,
                },
            );
            match kind {
                NodeKind::Mapping => stack.push(Frame::Map { path, key: None }),
                NodeKind::Sequence => stack.push(Frame::Seq { path, next: 0 }),
                _ => {}
            }
        }
        map
    }

    /// Position of the value at `path`, else of the nearest enclosing value, else 1:1.
    pub(crate) fn value(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return n.value;
            }
            if p.is_empty() {
                return Position::START;
            }
            p = parent_of(p);
        }
    }

    /// Whether the file wrote `path`.
    pub(crate) fn has(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// Position of the key of `path`, else as [`SourceMap::value`].
    pub(crate) fn key(&self, path: &str) -> Position {
        match self.nodes.get(path).and_then(|n| n.key) {
            Some(k) => k,
            None => self.value(path),
        }
    }

    /// The path of the entry whose key starts at `at`.
    fn key_path_at(&self, at: Position) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, n)| n.key == Some(at))
            .map(|(p, _)| p.as_str())
    }

    /// The path of the node whose value starts at `at`, preferring the innermost.
    fn value_path_at(&self, at: Position) -> Option<&str> {
        self.node_at_value(at).map(|(p, _)| p)
    }

    fn node_at_value(&self, at: Position) -> Option<(&str, &Node)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.value == at)
            .max_by_key(|(p, _)| p.len())
            .map(|(p, n)| (p.as_str(), n))
    }

    /// For a missing required `field`: which section lacks it and where to point
    /// (the section's key, or the document start for top-level fields).
    fn missing_field_section(&self, field: &str, fallback: Position) -> (String, Position) {
        let candidates: &[&str] = match field {
            "region" => &["aws", "gcp", "state.s3"],
            "bucket" => &["state.s3", "state.gcs"],
            "account" | "container" => &["state.azurerm"],
            "conn_env" => &["state.postgres"],
            "key_id" => &["state.encryption.aws_kms"],
            "postgres" | "object_store" => &["sandbox"],
            "host" | "admin_password_env" => &["sandbox.postgres"],
            "endpoint" | "access_key_env" | "secret_key_env" => &["sandbox.object_store"],
            "project" => &["gcp"],
            "subscription_id" | "location" | "resource_group" => &["azure"],
            _ => &[""],
        };
        let lacking = candidates
            .iter()
            .filter(|section| {
                self.nodes
                    .get(**section)
                    .is_some_and(|n| n.kind == NodeKind::Mapping)
                    && !self.nodes.contains_key(&join(section, field))
            })
            .min_by_key(|section| self.value(section));
        match lacking {
            Some(&"") => ("".to_owned(), self.value("")),
            Some(section) => ((*section).to_owned(), self.key(section)),
            None if candidates == [""] => ("".to_owned(), fallback),
            None => (candidates[0].to_owned(), fallback),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keys_values_and_items() {
        let text = "name: demo\naws:\n  region: us-east-1\nflyte:\n  projects: [a, b]\n  domains:\n    - dev\n";
        let map = SourceMap::scan(text);
        assert_eq!(map.value(""), Position::new(1, 1));
        assert_eq!(map.value("name"), Position::new(1, 7));
        assert_eq!(map.key("aws.region"), Position::new(3, 3));
        assert_eq!(map.value("aws.region"), Position::new(3, 11));
        assert_eq!(map.value("flyte.projects[1]"), Position::new(5, 17));
        assert_eq!(map.value("flyte.domains[0]"), Position::new(7, 7));
        // Missing paths fall back to the nearest ancestor.
        assert_eq!(map.value("aws.vpc_cidr"), map.value("aws"));
        assert_eq!(map.value("gcp.region"), Position::START);
    }

    #[test]
    fn survives_complex_keys_and_errors() {
        let map = SourceMap::scan("? [a, b]\n: 1\nc: 2\n");
        assert_eq!(map.value("c"), Position::new(3, 4));
        let map = SourceMap::scan("a: 1\nb: [\n");
        assert_eq!(map.value("a"), Position::new(1, 4));
        let deep = "[".repeat(100_000);
        let _ = SourceMap::scan(&deep);
    }

    #[test]
    fn end_position_counts_characters() {
        assert_eq!(end_position(""), Position::new(1, 1));
        assert_eq!(end_position("ab\ncé"), Position::new(2, 3));
    }
}
