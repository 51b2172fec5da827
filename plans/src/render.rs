//! Human-readable plan text, in Terraform's layout; see [`render_text`].

use std::fmt::Write as _;

use flyteinfra_core::{Mode, Planned, Value};

use crate::plan::{Action, FieldChange, Note, Plan, Reason, ResourceChange};

const SENSITIVE: &str = "(sensitive)";
const UNKNOWN: &str = "(known after apply)";

/// Renders `plan` as human-readable text in Terraform's layout, ending with a newline.
///
/// ```text
/// flyteinfra will perform the following actions:
///
///   # aws_s3_bucket.data will be created
///   + resource "aws_s3_bucket" "data" {
///       + arn    = (known after apply)
///       + bucket = "demo-data"
///     }
///
/// Plan: 1 to add, 0 to change, 0 to destroy.
/// ```
///
/// No-ops are not shown. Every sensitive value, before and after, prints `(sensitive)`.
/// The text is for people and may change between versions; scripts should use
/// [`render_json`](crate::render_json).
pub fn render_text(plan: &Plan) -> String {
    if plan.refresh_only {
        return refresh_only(plan);
    }
    let mut out = if !plan.has_changes() {
        if plan.destroy {
            "No changes. No objects need to be destroyed.\n".to_string()
        } else {
            "No changes. Your infrastructure matches the configuration.\n".to_string()
        }
    } else {
        let mut out = String::from("flyteinfra will perform the following actions:\n");
        for change in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
            out.push('\n');
            resource(&mut out, change);
        }
        let s = plan.summary();
        let _ = writeln!(
            out,
            "\nPlan: {} to add, {} to change, {} to destroy.",
            s.add, s.change, s.destroy
        );
        out
    };
    notes(&mut out, plan);
    out
}

/// Plan-level notes, after the summary.
fn notes(out: &mut String, plan: &Plan) {
    let lines: Vec<String> = plan.notes.iter().filter_map(note_line).collect();
    if lines.is_empty() {
        return;
    }
    out.push_str("\nNotes:\n");
    for l in lines {
        let _ = writeln!(out, "  - {l}");
    }
}

fn note_line(n: &Note) -> Option<String> {
    Some(match n {
        Note::ReplaceRequested { address } => {
            format!("`{address}` will be replaced because you asked (`--replace`).")
        }
        Note::ReplaceNotNeeded { address } => format!(
            "`{address}` has no object yet, so `--replace` has nothing to replace: it will be created."
        ),
        Note::DeletionProtected { address, field } => format!(
            "`{address}` has deletion protection on (`{field} = true`): apply will refuse to delete it \
             (`flyteinfra destroy --disable-protection` turns it off first)."
        ),
        Note::NotEmpty {
            address,
            force_destroy: false,
        } => format!(
            "`{address}` is not empty (≥ 1 object): apply will refuse to delete it, unless its \
             contents may go too (force_destroy)."
        ),
        Note::NotEmpty {
            address,
            force_destroy: true,
        } => format!(
            "`{address}` is not empty (≥ 1 object): DATA LOSS, every object, version and \
             delete marker in it is deleted first (force_destroy)."
        ),
        Note::ProtectionDisabled {
            address,
            field,
            final_snapshot,
        } => {
            let snapshot = match final_snapshot {
                Some(name) => format!("; its final snapshot will be `{name}`"),
                None => String::new(),
            };
            format!(
                "`{address}`: deletion protection will be turned off (`{field} = false`), then the database deleted{snapshot}."
            )
        }
        Note::ExpectedDuration { seconds, chain } => {
            let chain: Vec<String> = chain.iter().map(ToString::to_string).collect();
            format!(
                "expected duration {}: {}",
                about(*seconds),
                chain.join(" → ")
            )
        }
        // Refresh-only notes are the body of a refresh-only plan.
        Note::DeletedOutside { .. } | Note::ChangedOutside { .. } => return None,
    })
}

/// A duration as people say it: `~40 s`, `~18 min`.
fn about(seconds: u64) -> String {
    if seconds < 90 {
        format!("~{seconds} s")
    } else {
        format!("~{} min", (seconds + 30) / 60)
    }
}

/// A refresh-only plan: what changed outside flyteinfra, which apply records in state.
fn refresh_only(plan: &Plan) -> String {
    let (mut changed, mut deleted) = (0, 0);
    let mut body = String::new();
    for n in &plan.notes {
        match n {
            Note::ChangedOutside { address, fields } => {
                changed += 1;
                let _ = writeln!(body, "\n  # {address} has changed outside flyteinfra");
                let _ = writeln!(
                    body,
                    "  ~ resource \"{}\" \"{}\" {{",
                    address.type_name(),
                    address.name()
                );
                let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
                for f in fields {
                    let (symbol, value) = match &f.before {
                        None => ("+", show(&f.after, f.sensitive)),
                        Some(_) if f.after == Planned::Known(Value::Null) => {
                            field(Action::Delete, f)
                        }
                        Some(_) => field(Action::Update, f),
                    };
                    let line = format!("      {symbol} {:<width$} = {value}", f.name);
                    let _ = writeln!(body, "{}", line.trim_end());
                }
                body.push_str("    }\n");
            }
            Note::DeletedOutside { address } => {
                deleted += 1;
                let _ = writeln!(
                    body,
                    "\n  # {address} has been deleted outside flyteinfra; apply removes it from state"
                );
            }
            _ => {}
        }
    }
    if changed + deleted == 0 {
        return "No changes. State matches what the cloud has.\n".to_string();
    }
    let mut out = String::from(
        "Refresh only: flyteinfra found these changes made outside it, and changes nothing in the cloud:\n",
    );
    out.push_str(&body);
    let _ = writeln!(
        out,
        "\nRefresh only: {changed} changed, {deleted} deleted outside flyteinfra; applying records this in state."
    );
    out
}

fn headline(c: &ResourceChange) -> String {
    let tainted = c.reasons.contains(&Reason::Tainted);
    let mut h = match c.action {
        Action::Create => "will be created".to_string(),
        Action::Update => "will be updated in-place".to_string(),
        Action::Replace if tainted => "is tainted, so must be replaced".to_string(),
        Action::Replace => "must be replaced".to_string(),
        Action::Delete => "will be destroyed".to_string(),
        Action::Read => "will be read".to_string(),
        Action::NoOp => "has no changes".to_string(),
    };
    if c.data_loss {
        h.push_str(" (DATA LOSS: deleting it destroys its data)");
    }
    h
}

fn reason_line(c: &ResourceChange, r: &Reason) -> Option<String> {
    match r {
        Reason::DeletedOutside => Some("(deleted outside flyteinfra)".to_string()),
        Reason::RemovedFromConfig => Some(format!(
            "(because {} is not in the configuration)",
            c.address
        )),
        Reason::ResumePending => Some(
            "(its creation was started by an earlier run; apply resumes waiting for it)"
                .to_string(),
        ),
        Reason::Drift => Some("(changed outside flyteinfra)".to_string()),
        Reason::Requested => Some("(because you asked: `--replace`)".to_string()),
        Reason::Destroy => None,
        // Shown elsewhere: in the headline or as `# forces replacement` on fields.
        Reason::ForcedBy(_) | Reason::Tainted | Reason::DesiredChanged => None,
    }
}

fn resource(out: &mut String, c: &ResourceChange) {
    let _ = writeln!(out, "  # {} {}", c.address, headline(c));
    for r in &c.reasons {
        if let Some(line) = reason_line(c, r) {
            let _ = writeln!(out, "  # {line}");
        }
    }
    if c.action == Action::Read && c.mode == Mode::Existing {
        let _ = writeln!(
            out,
            "  # (existing: read only, never changed by flyteinfra)"
        );
    }
    let keyword = match c.mode {
        Mode::Managed => "resource",
        Mode::Existing => "existing",
    };
    let _ = writeln!(
        out,
        "{:>3} {keyword} \"{}\" \"{}\" {{",
        c.action.symbol(),
        c.address.type_name(),
        c.address.name()
    );
    let width = c.fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &c.fields {
        let (symbol, value) = field(c.action, f);
        let mut line = format!("      {symbol} {:<width$} = {value}", f.name);
        if f.forces_replacement {
            line.push_str(" # forces replacement");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push_str("    }\n");
}

fn show(v: &Planned, sensitive: bool) -> String {
    match v {
        _ if sensitive => SENSITIVE.to_string(),
        Planned::Unknown => UNKNOWN.to_string(),
        Planned::Known(v) => v.to_string(),
    }
}

/// A string holding a JSON object or array (an IAM policy), parsed.
fn document(v: &Value) -> Option<serde_json::Value> {
    let s = v.as_str()?.trim();
    if !(s.starts_with('{') || s.starts_with('[')) {
        return None;
    }
    serde_json::from_str(s).ok()
}

/// Where the lines of a document start, under the field's name.
const DOC_INDENT: &str = "          ";

/// `doc` indented, each line marked with `mark` (`+`, `-` or a space).
fn document_lines(doc: &serde_json::Value, mark: char) -> String {
    let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
    let mut out = String::from("jsonencode(\n");
    for line in pretty.lines() {
        out.push_str(&format!("{DOC_INDENT}{mark} {line}\n"));
    }
    out.push_str(&format!("{DOC_INDENT}  )"));
    out
}

/// The change from one document to another as a line diff of their indented forms
/// (unchanged lines kept for context, as Terraform shows a policy change).
fn document_diff(before: &serde_json::Value, after: &serde_json::Value) -> String {
    let pretty = |d| serde_json::to_string_pretty(d).unwrap_or_default();
    let (b, a) = (pretty(before), pretty(after));
    let (b, a): (Vec<&str>, Vec<&str>) = (b.lines().collect(), a.lines().collect());
    let mut out = String::from("jsonencode(\n");
    let mut push = |mark: char, line: &str| out.push_str(&format!("{DOC_INDENT}{mark} {line}\n"));
    // Longest common subsequence of lines; documents are small, and a huge one is shown
    // as all removed and all added rather than spending quadratic time.
    if b.len().saturating_mul(a.len()) > 1_000_000 {
        b.iter().for_each(|l| push('-', l));
        a.iter().for_each(|l| push('+', l));
    } else {
        let mut lcs = vec![vec![0u32; a.len() + 1]; b.len() + 1];
        for i in (0..b.len()).rev() {
            for j in (0..a.len()).rev() {
                lcs[i][j] = if b[i] == a[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < b.len() || j < a.len() {
            if i < b.len() && j < a.len() && b[i] == a[j] {
                push(' ', b[i]);
                i += 1;
                j += 1;
            } else if i < b.len() && (j == a.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
                // Removed lines before added ones, as a diff reads.
                push('-', b[i]);
                i += 1;
            } else {
                push('+', a[j]);
                j += 1;
            }
        }
    }
    out.push_str(&format!("{DOC_INDENT}  )"));
    out
}

/// The field's symbol and its rendered `before -> after` (or single) value. JSON
/// documents held in strings (policies) are shown indented, and a change as a line diff.
fn field(action: Action, f: &FieldChange) -> (&'static str, String) {
    if !f.sensitive {
        let before = f.before.as_ref().and_then(document);
        let after = f.after.known().and_then(document);
        match (action, before, after) {
            (Action::Delete, Some(b), _) => {
                return ("-", format!("{} -> null", document_lines(&b, '-')));
            }
            (Action::Read, _, Some(a)) => return (" ", document_lines(&a, ' ')),
            (Action::Create | Action::Replace | Action::Update, None, Some(a))
                if f.before.is_none() =>
            {
                return ("+", document_lines(&a, '+'));
            }
            (Action::Replace | Action::Update, Some(b), Some(a)) => {
                return ("~", document_diff(&b, &a));
            }
            _ => {}
        }
    }
    let after = show(&f.after, f.sensitive);
    match (action, &f.before) {
        (Action::Read, _) => (" ", after),
        (Action::Delete, before) => {
            let before = show(
                &Planned::Known(before.clone().unwrap_or(Value::Null)),
                f.sensitive,
            );
            ("-", format!("{before} -> null"))
        }
        (_, None) => ("+", after),
        (_, Some(_)) if f.sensitive => ("~", after),
        (_, Some(before)) => ("~", format!("{before} -> {after}")),
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::ResourceSpec;
    use flyteinfra_state::Status;
    use insta::assert_snapshot;

    use super::*;
    use crate::testutil::*;

    #[test]
    fn mixed_plan() {
        assert_snapshot!(render_text(&mixed().plan()));
    }

    #[test]
    fn create_only() {
        let p = Fixture::new(vec![bucket()], state(vec![])).plan();
        assert_snapshot!(render_text(&p));
    }

    #[test]
    fn no_changes() {
        let st = state(vec![(
            "aws_s3_bucket.data",
            ready(attrs([("bucket", "demo-data".into())]), attrs([]), &[]),
        )]);
        let p = Fixture::new(vec![bucket()], st.clone()).plan();
        assert_eq!(
            render_text(&p),
            "No changes. Your infrastructure matches the configuration.\n"
        );
        let p = Fixture::new(vec![], state(vec![])).destroy().plan();
        assert_eq!(
            render_text(&p),
            "No changes. No objects need to be destroyed.\n"
        );
    }

    #[test]
    fn destroy_plan() {
        let st = state(vec![
            ("aws_db_instance.main", db_state("15", SECRET)),
            (
                "k8s_secret.db",
                ready(
                    attrs([("name", "db".into())]),
                    attrs([]),
                    &["aws_db_instance.main"],
                ),
            ),
        ]);
        let p = Fixture::new(vec![], st).destroy().plan();
        assert_snapshot!(render_text(&p));
    }

    #[test]
    fn protection_notes_name_the_flag_and_the_snapshot() {
        let mut db = db_state("16", SECRET);
        db.inputs
            .insert("deletion_protection".into(), Value::Bool(true));
        db.attributes.insert("created".into(), "20250101".into());
        let st = state(vec![("aws_db_instance.main", db)]);
        let refused = render_text(&Fixture::new(vec![], st.clone()).destroy().plan());
        assert!(
            refused.contains(
                "  - `aws_db_instance.main` has deletion protection on (`deletion_protection = true`): \
                 apply will refuse to delete it (`flyteinfra destroy --disable-protection` turns it off first)."
            ),
            "{refused}"
        );
        let off = render_text(
            &Fixture::new(vec![], st)
                .destroy()
                .disable_protection()
                .plan(),
        );
        assert!(
            off.contains(
                "  - `aws_db_instance.main`: deletion protection will be turned off \
                 (`deletion_protection = false`), then the database deleted; its final snapshot \
                 will be `id-1-final-20250101`."
            ),
            "{off}"
        );
        assert!(off.contains("will be destroyed"), "{off}");
    }

    /// Tainted, pending, deleted outside, drift, and a server-managed desired change.
    #[test]
    fn reasons() {
        let mut tainted = ready(
            attrs([("name", "tainted".into())]),
            attrs([("arn", "arn:aws:iam::role/tainted".into())]),
            &[],
        );
        tainted.status = Status::Tainted;
        let mut pending = ready(attrs([("bucket", "demo-data".into())]), attrs([]), &[]);
        pending.status = Status::Pending;
        let gone = ready(attrs([("name", "gone".into())]), attrs([]), &[]);
        let drifted = ready(
            attrs([("name", "drifted".into()), ("policy", "{}".into())]),
            attrs([]),
            &[],
        );
        let st = state(vec![
            ("aws_iam_role.tainted", tainted),
            ("aws_s3_bucket.data", pending),
            ("aws_iam_role.gone", gone),
            ("aws_iam_role.drifted", drifted),
            ("aws_db_instance.main", db_state("15", SECRET)),
        ]);
        let role = |n: &str| ResourceSpec::managed(a(&format!("aws_iam_role.{n}"))).with("name", n);
        let desired = vec![
            role("tainted"),
            bucket(),
            role("gone"),
            role("drifted").with("policy", "{}"),
            db("16", SECRET),
        ];
        let p = Fixture::new(desired, st)
            .actual("aws_iam_role.gone", None)
            .actual(
                "aws_iam_role.drifted",
                Some(attrs([
                    ("name", "drifted".into()),
                    ("policy", r#"{"added":"by hand"}"#.into()),
                ])),
            )
            .plan();
        assert_snapshot!(render_text(&p));
    }

    /// A policy (a JSON document in a string) is shown indented; its change as a line
    /// diff; a sensitive one not at all.
    #[test]
    fn documents_are_indented_and_diffed_by_line() {
        let doc = |actions: &[&str]| {
            Value::from(
                serde_json::json!({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
                })
                .to_string(),
            )
        };
        let fc = |before: Option<Value>, after: Value, sensitive| FieldChange {
            name: "policy".into(),
            before,
            after: Planned::Known(after),
            sensitive,
            forces_replacement: false,
        };
        let (symbol, created) = field(Action::Create, &fc(None, doc(&["s3:GetObject"]), false));
        assert_eq!(symbol, "+");
        assert!(created.starts_with("jsonencode(\n"), "{created}");
        assert!(
            created.contains("\n          +       \"Action\": [\n"),
            "{created}"
        );
        assert!(!created.contains("\\\""), "no escaped quotes: {created}");

        let (symbol, changed) = field(
            Action::Update,
            &fc(
                Some(doc(&["s3:GetObject"])),
                doc(&["s3:GetObject", "s3:PutObject"]),
                false,
            ),
        );
        assert_eq!(symbol, "~");
        let marked: Vec<&str> = changed
            .lines()
            .filter(|l| l.trim_start().starts_with(['+', '-']))
            .map(str::trim)
            .collect();
        assert_eq!(
            marked,
            [
                "-         \"s3:GetObject\"",
                "+         \"s3:GetObject\",",
                "+         \"s3:PutObject\""
            ],
            "{changed}"
        );
        assert!(
            changed.contains("            \"Version\": \"2012-10-17\""),
            "{changed}"
        );

        let (_, secret) = field(Action::Update, &fc(Some(doc(&["a"])), doc(&["b"]), true));
        assert_eq!(secret, SENSITIVE);
        // A string that merely starts with a brace is shown as a string.
        let (_, plain) = field(Action::Create, &fc(None, Value::from("{not json"), false));
        assert_eq!(plain, "\"{not json\"");
    }

    #[test]
    fn secrets_are_never_rendered() {
        // Created, changed (old and new), copied into a non-sensitive field, destroyed.
        let create = Fixture::new(vec![db("16", SECRET)], state(vec![])).plan();
        let destroy = Fixture::new(
            vec![],
            state(vec![("aws_db_instance.main", db_state("16", SECRET))]),
        )
        .destroy()
        .plan();
        for p in [mixed().plan(), create, destroy] {
            let text = render_text(&p);
            let json = crate::render_json(&p).to_string();
            let debug = format!("{p:?}");
            for out in [&text, &json, &debug] {
                assert!(!out.contains("s3cr3t"), "secret leaked:\n{out}");
            }
            assert!(text.contains("(sensitive)"), "{text}");
        }
    }
}
