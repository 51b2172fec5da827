//! Interrupts of a command that holds a state lease: Ctrl-C (SIGINT) or a CI runner's
//! cancel (SIGTERM) must not leave the lease behind for others to wait out.
//!
//! Every held lease is registered here; on the first such signal the leases are given
//! up and the process exits (130 or 143) — unless a command handles interrupts itself
//! (`apply` and `destroy` finish what is in flight on the first Ctrl-C; see
//! `commands::plan::install_ctrl_c`), which it says with [`handle_interrupts_myself`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use flyteinfra_state::LeaseWatch;

static LEASES: Mutex<Vec<LeaseWatch>> = Mutex::new(Vec::new());
static GRACEFUL: AtomicBool = AtomicBool::new(false);
static LISTEN: Once = Once::new();

/// Registers a held lease, to be given up if the process is interrupted.
pub fn hold(lease: LeaseWatch) {
    LEASES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(lease);
    LISTEN.call_once(listen);
}

/// Gives up every registered lease (a process about to exit without unwinding).
pub fn release_all() {
    for lease in LEASES.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        lease.release();
    }
}

/// The caller handles SIGINT itself from now on; SIGTERM still ends the process here.
pub fn handle_interrupts_myself() {
    GRACEFUL.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
fn listen() {
    use tokio::signal::unix::{SignalKind, signal};
    // Commands run inside the runtime; a call outside one has nothing to interrupt.
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    handle.spawn(async move {
        loop {
            let code = tokio::select! {
                _ = int.recv() => {
                    if GRACEFUL.load(Ordering::SeqCst) {
                        continue;
                    }
                    130
                }
                _ = term.recv() => 143,
            };
            release_all();
            eprintln!("\nInterrupted: the state lease was given up; the next run reconciles anything in flight.");
            std::process::exit(code);
        }
    });
}

#[cfg(not(unix))]
fn listen() {}
