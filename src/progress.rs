//! Shows provider and walker events on stderr: one live line per in-flight resource on a
//! terminal (indicatif), plain timestamped lines otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flyteinfra_core::{Address, Event, EventKind, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The observer the binary installs.
pub enum Display {
    /// Live lines on a terminal.
    Live {
        bars: MultiProgress,
        lines: Mutex<HashMap<Address, ProgressBar>>,
    },
    /// Timestamped lines (CI logs, pipes).
    Plain { started: Instant },
}

impl Display {
    /// Live lines if stderr is a terminal, plain ones otherwise.
    pub fn for_stderr() -> Display {
        if std::io::stderr().is_terminal() {
            Display::Live {
                bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                lines: Mutex::new(HashMap::new()),
            }
        } else {
            Display::Plain {
                started: Instant::now(),
            }
        }
    }
}

fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::Started(op) => (*op).to_string(),
        EventKind::Status(s) => s.clone(),
        EventKind::Retrying(m) => format!("retrying after: {m}"),
        EventKind::Finished => "done".to_string(),
        EventKind::Failed(m) => format!("failed: {m}"),
        _ => "…".to_string(),
    }
}

impl Observer for Display {
    fn on_event(&self, event: Event) {
        match self {
            Display::Plain { started } => {
                let t = started.elapsed().as_secs_f64();
                let line = format!("[{t:>8.1}s] {}: {}\n", event.address, describe(&event.kind));
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Display::Live { bars, lines } => {
                let mut lines = lines.lock().expect("progress lock");
                let bar = lines.entry(event.address.clone()).or_insert_with(|| {
                    let b = bars.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("{spinner} [{elapsed:>4}] {prefix}: {msg}")
                            .expect("valid template"),
                    );
                    b.set_prefix(event.address.to_string());
                    b.enable_steady_tick(Duration::from_millis(200));
                    b
                });
                bar.set_message(describe(&event.kind));
                if matches!(event.kind, EventKind::Finished | EventKind::Failed(_)) {
                    bar.finish();
                    lines.remove(&event.address);
                }
            }
        }
    }
}
