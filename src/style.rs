//! Colour for the text plan: only on a terminal, never with `NO_COLOR` (any non-empty
//! value, <https://no-color.org>) or `--no-color`. The plan's symbols (`+`, `~`, `-`,
//! `-/+`, `<=`) are always there, so logs and golden tests read the same without it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static NO_COLOR_FLAG: AtomicBool = AtomicBool::new(false);

/// Records `--no-color`.
pub fn set_no_color(no_color: bool) {
    NO_COLOR_FLAG.store(no_color, Ordering::Relaxed);
}

/// Whether text written to `stream` is coloured.
pub fn enabled(stream: &impl IsTerminal) -> bool {
    !NO_COLOR_FLAG.load(Ordering::Relaxed)
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && stream.is_terminal()
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

/// A rendered text plan with its action symbols coloured (create green, update yellow,
/// delete red, read cyan) and its headings bold; everything else as it was.
pub fn plan(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    // After `Notes:`, a leading `-` is a bullet, not a delete.
    let mut notes = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        notes |= body.starts_with("Notes:");
        if notes {
            out.push_str(line);
            continue;
        }
        let symbol = [
            ("-/+", None),
            ("<=", Some(CYAN)),
            ("+ ", Some(GREEN)),
            ("~ ", Some(YELLOW)),
            ("- ", Some(RED)),
        ]
        .into_iter()
        .find(|(s, _)| body.starts_with(s));
        match symbol {
            Some(("-/+", _)) => {
                out.push_str(&format!(
                    "{indent}{RED}-{RESET}/{GREEN}+{RESET}{}",
                    &body[3..]
                ));
            }
            Some((s, Some(colour))) => {
                let s = s.trim_end();
                out.push_str(&format!("{indent}{colour}{s}{RESET}{}", &body[s.len()..]));
            }
            _ if body.starts_with("# ") || body.starts_with("Plan:") => {
                let (text, newline) = body.strip_suffix('\n').map_or((body, ""), |b| (b, "\n"));
                out.push_str(&format!("{indent}{BOLD}{text}{RESET}{newline}"));
            }
            _ => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_coloured_and_the_text_is_kept() {
        let text = "  # a will be created\n  + resource \"t\" \"a\" {\n      + x = 1\n      ~ y = 1 -> 2\n    }\n-/+ resource \"t\" \"b\" {\n <= existing \"t\" \"c\" {\n  - resource \"t\" \"d\" {\n\nPlan: 1 to add.\n\nNotes:\n  - expected duration ~2 s\n";
        let coloured = plan(text);
        assert!(coloured.contains(&format!("  {GREEN}+{RESET} resource")));
        assert!(coloured.contains(&format!("      {YELLOW}~{RESET} y")));
        assert!(coloured.contains(&format!("{RED}-{RESET}/{GREEN}+{RESET} resource")));
        assert!(coloured.contains(&format!(" {CYAN}<={RESET} existing")));
        assert!(coloured.contains(&format!("  {RED}-{RESET} resource")));
        assert!(coloured.contains(&format!("{BOLD}Plan: 1 to add.{RESET}\n")));
        assert!(
            coloured.ends_with("Notes:\n  - expected duration ~2 s\n"),
            "{coloured}"
        );
        // Without the escapes it is the same text.
        let plain = coloured
            .replace(RESET, "")
            .replace(BOLD, "")
            .replace(RED, "")
            .replace(GREEN, "")
            .replace(YELLOW, "")
            .replace(CYAN, "");
        assert_eq!(plain, text);
    }
}
