//! Naming a field of a JSON file and finding it in the text, for errors about files a
//! user can edit (state, plan files): `resources["aws_vpc.main"].status` at 12:7.
//!
//! serde_json reports a line and column only while it parses. A value that parses but
//! breaks a rule checked afterwards (a lineage too short, a cycle) is found again in the
//! text by [`locate`], a small scanner over JSON that has already parsed.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// An object member: a struct field or a map key.
    Key(String),
    /// An array element.
    Index(usize),
}

/// Where a value sits in a JSON document, shown as `resources["aws_vpc.main"].status`,
/// `plan.changes[3].action`: identifier-like keys after a dot, other keys quoted in
/// brackets (an address has a dot of its own), indices in brackets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Step>);

impl FieldPath {
    /// The document itself.
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path followed by the member `key`.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.0.push(Step::Key(key.into()));
        self
    }

    /// This path followed by element `index`.
    #[must_use]
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Step::Index(index));
        self
    }

    /// The path serde_path_to_error tracked to a decoding error.
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        FieldPath(
            path.iter()
                .filter_map(|s| match s {
                    Segment::Seq { index } => Some(Step::Index(*index)),
                    Segment::Map { key } => Some(Step::Key(key.clone())),
                    // An enum variant is a key of its externally tagged form.
                    Segment::Enum { variant } => Some(Step::Key(variant.clone())),
                    Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

/// The fields of state and plan files that are maps with free-form keys.
const MAPS: &[&str] = &[
    "resources",
    "intents",
    "outputs",
    "inputs",
    "attributes",
    "planned_inputs",
];

fn is_identifier(key: &str) -> bool {
    key.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(the document)");
        }
        for (i, step) in self.0.iter().enumerate() {
            // Keys of the maps a user edits (addresses, attribute and output names) are
            // always bracketed, so `resources["aws_vpc"]` reads as a key, not a field.
            let in_map = i > 0
                && matches!(&self.0[i - 1], Step::Key(parent) if MAPS.contains(&parent.as_str()));
            match step {
                Step::Key(k) if is_identifier(k) && !in_map => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                // Quoted as JSON, so control characters and quotes stay visible and
                // a hostile key cannot fake the rest of the message.
                Step::Key(k) => write!(f, "[{}]", quoted(k, 80))?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// `s` as a JSON string, cut to `max` characters (with `…`) so a value pasted into a
/// file cannot flood the terminal.
pub fn quoted(s: &str, max: usize) -> String {
    let cut: String = s.chars().take(max).collect();
    let mut out = serde_json::to_string(&cut).unwrap_or_else(|_| "\"?\"".to_string());
    if cut.len() < s.len() {
        out.insert(out.len() - 1, '…');
    }
    out
}

/// The 1-based line and column (in characters) of `path` in `text`, a JSON document that
/// parses: of the member's key when the path ends at an object member (the key is where
/// an editor should jump, and for maps keyed by address it is the wrong part), of the
/// element otherwise. `None` if the path is not in the text. Never panics, whatever
/// `text` is.
pub fn locate(text: &str, path: &FieldPath) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    let last = path.0.len().checked_sub(1);
    for (i, step) in path.0.iter().enumerate() {
        pos = match (step, *b.get(pos)?) {
            (Step::Key(k), b'{') => {
                let (key, value) = find_member(text, pos, k)?;
                if Some(i) == last { key } else { value }
            }
            (Step::Index(n), b'[') => find_element(b, pos, *n)?,
            _ => return None,
        };
    }
    let before = text.get(..pos)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Some((line, column))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The index just after the string starting at `i` (a `"`).
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The index just after the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// The positions of the key and the value of member `want` of the object at `open`.
/// The last one wins, as for a decoded map.
fn find_member(text: &str, open: usize, want: &str) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut p = skip_ws(b, open + 1);
    let mut found = None;
    if b.get(p) == Some(&b'}') {
        return None;
    }
    loop {
        if b.get(p) != Some(&b'"') {
            return found;
        }
        let end = string_end(b, p)?;
        let key: String = serde_json::from_str(text.get(p..end)?).ok()?;
        let colon = skip_ws(b, end);
        if b.get(colon) != Some(&b':') {
            return found;
        }
        let value = skip_ws(b, colon + 1);
        if key == want {
            found = Some((p, value));
        }
        p = skip_ws(b, value_end(b, value)?);
        match b.get(p) {
            Some(b',') => p = skip_ws(b, p + 1),
            _ => return found,
        }
    }
}

/// The position of element `n` of the array at `open`.
fn find_element(b: &[u8], open: usize, n: usize) -> Option<usize> {
    let mut p = skip_ws(b, open + 1);
    if b.get(p) == Some(&b']') {
        return None;
    }
    for _ in 0..n {
        p = skip_ws(b, value_end(b, p)?);
        if b.get(p) != Some(&b',') {
            return None;
        }
        p = skip_ws(b, p + 1);
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "lineage": "x",
  "resources": {
    "aws_vpc.main": {"id": "vpc-1", "deps": ["a.b", {"k": "]}\","}, "c.d"]},
    "aws_vpc.main2": {"id": 7}
  },
  "esc\"aped": true
}"#;

    fn p(steps: &[Step]) -> FieldPath {
        FieldPath(steps.to_vec())
    }

    fn k(s: &str) -> Step {
        Step::Key(s.into())
    }

    #[test]
    fn shows_paths_unambiguously() {
        assert_eq!(FieldPath::root().to_string(), "(the document)");
        let path = FieldPath::root()
            .key("resources")
            .key("aws_vpc.main")
            .key("dependencies")
            .index(2);
        assert_eq!(
            path.to_string(),
            r#"resources["aws_vpc.main"].dependencies[2]"#
        );
        assert_eq!(FieldPath::root().key("a\"]b").to_string(), r#"["a\"]b"]"#);
        assert_eq!(quoted(&"x".repeat(100), 3), "\"xxx…\"");
        assert_eq!(quoted("é\u{1}", 10), "\"é\\u0001\"");
    }

    #[test]
    fn finds_keys_values_and_elements() {
        assert_eq!(locate(DOC, &p(&[k("lineage")])), Some((2, 3)));
        assert_eq!(
            locate(DOC, &p(&[k("resources"), k("aws_vpc.main2")])),
            Some((5, 5))
        );
        assert_eq!(
            locate(DOC, &p(&[k("resources"), k("aws_vpc.main2"), k("id")])),
            Some((5, 23))
        );
        // Past a string holding brackets, quotes and commas.
        assert_eq!(
            locate(
                DOC,
                &p(&[k("resources"), k("aws_vpc.main"), k("deps"), Step::Index(2)])
            ),
            Some((4, 69))
        );
        assert_eq!(locate(DOC, &p(&[k("esc\"aped")])), Some((7, 3)));
        assert_eq!(locate(DOC, &FieldPath::root()), Some((1, 1)));
    }

    #[test]
    fn missing_paths_and_garbage_give_none() {
        assert_eq!(locate(DOC, &p(&[k("nope")])), None);
        assert_eq!(locate(DOC, &p(&[k("lineage"), k("x")])), None);
        assert_eq!(
            locate(
                DOC,
                &p(&[k("resources"), k("aws_vpc.main"), k("deps"), Step::Index(9)])
            ),
            None
        );
        for text in ["", "{", "{\"a", "[1,", "{\"a\":[\"\\", "\u{FEFF}{}", "{]}"] {
            let _ = locate(text, &p(&[k("a"), Step::Index(0)]));
        }
    }
}
