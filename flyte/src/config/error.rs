//! [`ConfigError`]: every way a config file can be wrong, with its position.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the config file (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Line, starting at 1.
    pub line: u32,
    /// Column in characters, starting at 1.
    pub column: u32,
}

impl Position {
    /// The start of the file.
    pub const START: Position = Position { line: 1, column: 1 };

    /// A position; zero is raised to 1.
    pub fn new(line: u32, column: u32) -> Self {
        Self {
            line: line.max(1),
            column: column.max(1),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What kind of problem a [`ConfigError`] reports, for callers that pick hints or exit
/// codes; the message itself is in the error's `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read (missing, permission denied, …). Has no position.
    Read,
    /// The file is not text: invalid UTF-8, NUL or other control characters.
    Encoding,
    /// The file is too large, too deeply nested or has too many nodes.
    Limit,
    /// The text is not valid YAML (unclosed quote, bad indentation, tabs, duplicate key).
    Syntax,
    /// The file is empty or holds only comments.
    Empty,
    /// Valid YAML in the wrong shape: wrong type, unknown or missing key, unknown
    /// enum value.
    Shape,
    /// Well-formed, but a value breaks a rule (name pattern, CIDR layout, node counts, …).
    Invalid,
    /// The selected cloud has no section in the file.
    MissingCloudSection,
    /// A recognised value that flyteinfra does not support yet.
    Unsupported,
}

/// An error in a config file, always naming the file and, except for
/// [`ConfigErrorKind::Read`], the 1-based line and column.
///
/// `Display` is `FILE:LINE:COLUMN: <what is wrong>, expected <what was expected>`
/// (for read errors `FILE: cannot read the config file`, with the I/O error as
/// [`std::error::Error::source`]).
#[derive(Debug, thiserror::Error)]
#[error("{}", Rendered(self))]
#[non_exhaustive]
pub struct ConfigError {
    path: PathBuf,
    position: Option<Position>,
    kind: ConfigErrorKind,
    message: String,
    #[source]
    source: Option<io::Error>,
}

struct Rendered<'a>(&'a ConfigError);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        match e.position {
            Some(p) => write!(f, "{}:{}: {}", e.path.display(), p, e.message),
            None => write!(f, "{}: {}", e.path.display(), e.message),
        }
    }
}

impl ConfigError {
    pub(crate) fn at(
        path: &Path,
        position: Position,
        kind: ConfigErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            position: Some(position),
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn read(path: &Path, source: io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            position: None,
            kind: ConfigErrorKind::Read,
            message: "cannot read the config file".to_owned(),
            source: Some(source),
        }
    }

    /// The config file the error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The 1-based line, or `None` for [`ConfigErrorKind::Read`].
    pub fn line(&self) -> Option<u32> {
        self.position.map(|p| p.line)
    }

    /// The 1-based column in characters, or `None` for [`ConfigErrorKind::Read`].
    pub fn column(&self) -> Option<u32> {
        self.position.map(|p| p.column)
    }

    /// Line and column together, or `None` for [`ConfigErrorKind::Read`].
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The message without the `FILE:LINE:COLUMN: ` prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}
