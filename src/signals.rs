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
/// A lease is being taken: its record may be written but not registered yet.
static ACQUIRING: AtomicBool = AtomicBool::new(false);

/// Marks a lease being taken, from before its record can be written until it is
/// registered with [`hold`] (or the attempt failed): a signal in between waits briefly
/// for the registration, so the lease it would otherwise leave behind is given up too.
pub struct Acquiring(());

/// Listens for interrupts from now on, and marks a lease being taken until the returned
/// guard is dropped.
pub fn acquiring() -> Acquiring {
    LISTEN.call_once(listen);
    ACQUIRING.store(true, Ordering::SeqCst);
    Acquiring(())
}

impl Drop for Acquiring {
    fn drop(&mut self) {
        ACQUIRING.store(false, Ordering::SeqCst);
    }
}

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
            // A lease whose record was just written is registered within microseconds;
            // one still waiting for another holder is not ours, so the wait is short.
            for _ in 0..20 {
                if !ACQUIRING.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            release_all();
            eprintln!("\nInterrupted: the state lease was given up; the next run reconciles anything in flight.");
            std::process::exit(code);
        }
    });
}

#[cfg(not(unix))]
fn listen() {}
