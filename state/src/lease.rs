//! Leases: the one-writer rule, written once over every backend's conditional writes.
//!
//! A lease is a record in the backend's [`Object::Lease`], created only where none exists.
//! Its holder renews it every TTL/3 (a conditional write over its own last version) and
//! stops its work when it cannot renew before the TTL runs out. A waiting command never
//! trusts another machine's clock: it takes a lease over only after it has itself seen
//! the same record, at the same version, for a full TTL, and then with a conditional
//! write over exactly that version, so two waiters cannot both win.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Object, Precondition, Stored, Version};
use crate::error::StateError;
use crate::lock::{LockInfo, rfc3339_utc};

/// The longest TTL a waiter honours from a lease record (a record claiming more is
/// treated as this), so that no lease is effectively infinite.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The lease record as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Who holds it; `holder.id` is the lease id.
    #[serde(flatten)]
    pub holder: LockInfo,
    /// The holder's time-to-live, in milliseconds.
    pub ttl_ms: u64,
    /// How many times the holder renewed it (every renewal changes the record).
    pub renewals: u64,
    /// When it was last renewed, by the holder's clock (for people; waiters never use it).
    pub renewed_at: String,
}

impl LeaseRecord {
    fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a lease record always encodes");
        v.push(b'\n');
        v
    }

    fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
        serde_json::from_slice(bytes).ok()
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms).min(MAX_TTL)
    }
}

/// What a lease holder shares with its renewal thread and its watchers.
#[derive(Debug)]
struct Shared {
    state: Mutex<Held>,
    wake: Condvar,
    stopping: AtomicBool,
}

#[derive(Debug)]
struct Held {
    version: Version,
    renewals: u64,
    /// Until when this holder may act: the send time of its last successful write plus
    /// 9/10 of the TTL (a waiter takes over only a full TTL after it saw that write).
    valid_until: Instant,
    lost: Option<String>,
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cheap handle on a held lease: whether it still holds, and until when.
#[derive(Clone)]
pub struct LeaseWatch {
    shared: Arc<Shared>,
    path: String,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for LeaseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseWatch")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LeaseWatch {
    /// `Ok` while the lease is held and not past its validity.
    ///
    /// # Errors
    /// [`StateError::LeaseLost`] once it was taken over, broken, or not renewed in time.
    pub fn check(&self) -> Result<(), StateError> {
        let held = self.shared.held();
        let reason = match &held.lost {
            Some(reason) => reason.clone(),
            None if Instant::now() >= held.valid_until => {
                "it was not renewed within its time-to-live (was this process stopped?)".into()
            }
            None => return Ok(()),
        };
        Err(StateError::LeaseLost {
            path: self.path.clone().into(),
            reason,
        })
    }

    /// The instant after which this holder must not act, as known now (renewals push it
    /// later).
    pub fn valid_until(&self) -> Instant {
        self.shared.held().valid_until
    }

    /// Gives the lease up now, from anywhere (a process about to exit without unwinding):
    /// the record is deleted if it is still this holder's, and nothing more may be written.
    pub fn release(&self) {
        let mut held = self.shared.held();
        if held.lost.is_none() {
            held.lost = Some("this command gave it up".into());
            let _ = self.backend.delete(Object::Lease, &held.version);
        }
    }
}

/// A held lease. Dropping it stops the renewals and deletes the record.
pub struct Lease {
    info: LockInfo,
    ttl: Duration,
    taken_over: Option<LockInfo>,
    watch: LeaseWatch,
    backend: Arc<dyn Backend>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("info", &self.info)
            .field("ttl", &self.ttl)
            .field("taken_over", &self.taken_over)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Takes the lease of `backend` for `info`'s holder with time-to-live `ttl`, waiting
    /// up to `timeout` for the current holder to release it or to stop renewing it.
    ///
    /// # Errors
    /// [`StateError::Locked`] naming the holder when `timeout` passes; as the backend's
    /// operations otherwise.
    pub fn acquire(
        backend: Arc<dyn Backend>,
        info: LockInfo,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Lease, StateError> {
        let ttl = ttl.min(MAX_TTL);
        let record = LeaseRecord {
            holder: info.clone(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            renewals: 0,
            renewed_at: rfc3339_utc(SystemTime::now()),
        };
        let bytes = record.encode();
        let poll = backend.poll_interval().min(ttl / 4);
        let start = Instant::now();
        // The record being waited on: its version and when this process first saw it.
        let mut watched: Option<(Version, Instant)> = None;
        loop {
            let sent = Instant::now();
            match backend.put(Object::Lease, &bytes, &Precondition::Absent) {
                Ok(version) => return Ok(Self::start(backend, record, version, sent, None)),
                Err(StateError::Moved { .. }) => {}
                Err(e) => return Err(e),
            }
            let Some(current) = backend.get(Object::Lease)? else {
                continue; // released meanwhile: create again at once
            };
            let found = LeaseRecord::decode(&current.bytes);
            if found.as_ref().is_some_and(|f| f.holder.id == info.id) {
                // Our own create, whose answer was lost.
                return Ok(Self::start(backend, record, current.version, sent, None));
            }
            let holder = found
                .as_ref()
                .map_or_else(LockInfo::unknown, |f| f.holder.clone());
            let held_ttl = found.as_ref().map_or(ttl, LeaseRecord::ttl);
            let now = Instant::now();
            // A backend with a trusted clock says when the record expired; otherwise this
            // waiter's own view of an unchanged record decides.
            let expired = match backend.lease_expired(&current.version, held_ttl)? {
                Some(expired) => expired,
                None => watched.as_ref().is_some_and(|(v, since)| {
                    *v == current.version && now.duration_since(*since) >= held_ttl
                }),
            };
            if expired {
                let sent = Instant::now();
                let over = Precondition::At(current.version.clone());
                match backend.put(Object::Lease, &bytes, &over) {
                    Ok(version) => {
                        return Ok(Self::start(backend, record, version, sent, Some(holder)));
                    }
                    // Renewed, released or taken by another waiter meanwhile.
                    Err(StateError::Moved { .. }) => {
                        watched = None;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if watched.as_ref().is_none_or(|(v, _)| *v != current.version) {
                watched = Some((current.version.clone(), now));
            }
            let elapsed = now.duration_since(start);
            if elapsed >= timeout {
                return Err(StateError::Locked {
                    path: backend.describe(Object::State).into(),
                    holder: Box::new(holder),
                    waited: timeout,
                    ttl: held_ttl,
                });
            }
            std::thread::sleep(poll.min(timeout - elapsed));
        }
    }

    fn start(
        backend: Arc<dyn Backend>,
        record: LeaseRecord,
        version: Version,
        sent: Instant,
        taken_over: Option<LockInfo>,
    ) -> Lease {
        let ttl = record.ttl();
        let shared = Arc::new(Shared {
            state: Mutex::new(Held {
                version,
                renewals: 0,
                valid_until: sent + ttl * 9 / 10,
                lost: None,
            }),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let watch = LeaseWatch {
            shared: Arc::clone(&shared),
            path: backend.describe(Object::State),
            backend: Arc::clone(&backend),
        };
        let renewer = {
            let backend = Arc::clone(&backend);
            let record = record.clone();
            std::thread::Builder::new()
                .name("lease-renewal".into())
                .spawn(move || renew(&*backend, &shared, record))
                .expect("spawn the lease renewal thread")
        };
        Lease {
            info: record.holder,
            ttl,
            taken_over,
            watch,
            backend,
            renewer: Some(renewer),
        }
    }

    /// This holder's record.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The lease id (`state unlock --force` takes it).
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The time-to-live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The holder whose lease this one took over, if it was taken over rather than
    /// created.
    pub fn taken_over_from(&self) -> Option<&LockInfo> {
        self.taken_over.as_ref()
    }

    /// A handle on whether this lease still holds.
    pub fn watch(&self) -> LeaseWatch {
        self.watch.clone()
    }

    /// Stops renewing and forgets the lease without deleting its record, as a killed
    /// process would: for tests of what others see.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.stop_renewing();
        self.watch.shared.held().lost = Some("abandoned".into());
    }

    fn stop_renewing(&mut self) {
        self.watch.shared.stopping.store(true, Ordering::SeqCst);
        self.watch.shared.wake.notify_all();
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
    }

    /// Deletes the lease record with id `lease_id`, whoever holds it, and returns its
    /// holder: the human override for a holder that is known to be gone.
    ///
    /// # Errors
    /// [`StateError::NotLocked`] when there is no lease; [`StateError::NotHolder`] naming
    /// the current holder when `lease_id` is not its id; as the backend otherwise.
    pub fn force_unlock(backend: &dyn Backend, lease_id: &str) -> Result<LockInfo, StateError> {
        let path = || backend.describe(Object::State).into();
        let Some(Stored { bytes, version }) = backend.get(Object::Lease)? else {
            return Err(StateError::NotLocked { path: path() });
        };
        let holder = LeaseRecord::decode(&bytes).map_or_else(LockInfo::unknown, |r| r.holder);
        // An unreadable record has no id to name: it is broken by the empty id.
        if holder.id != lease_id {
            return Err(StateError::NotHolder {
                path: path(),
                given: lease_id.to_string(),
                holder: Box::new(holder),
            });
        }
        backend.delete(Object::Lease, &version)?;
        Ok(holder)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.renewer.is_none() {
            return; // abandoned
        }
        self.stop_renewing();
        let held = self.watch.shared.held();
        if held.lost.is_none() {
            // Conditional: a lease taken over meanwhile is not ours to delete.
            let _ = self.backend.delete(Object::Lease, &held.version);
        }
    }
}

/// The renewal loop: every TTL/3, a conditional write over the last version; more often
/// after a failure, until the lease is lost or the holder stops.
fn renew(backend: &dyn Backend, shared: &Shared, mut record: LeaseRecord) {
    let ttl = record.ttl();
    let mut pause = ttl / 3;
    loop {
        {
            let held = shared.held();
            let (held, _) = shared
                .wake
                .wait_timeout_while(held, pause, |_| !shared.stopping.load(Ordering::SeqCst))
                .unwrap_or_else(PoisonError::into_inner);
            if shared.stopping.load(Ordering::SeqCst) || held.lost.is_some() {
                return;
            }
        }
        let (version, renewals) = {
            let held = shared.held();
            (held.version.clone(), held.renewals + 1)
        };
        record.renewals = renewals;
        record.renewed_at = rfc3339_utc(SystemTime::now());
        let sent = Instant::now();
        let result = backend.put(Object::Lease, &record.encode(), &Precondition::At(version));
        let mut held = shared.held();
        match result {
            Ok(v) => {
                held.version = v;
                held.renewals = renewals;
                // Never later than a watcher could have been told by an earlier write.
                held.valid_until = held.valid_until.max(sent + ttl * 9 / 10);
                pause = ttl / 3;
            }
            Err(StateError::Moved { .. }) => {
                // Our renewal may have landed with its answer lost: then the record is ours.
                drop(held);
                let mine = backend.get(Object::Lease).ok().flatten().and_then(|s| {
                    LeaseRecord::decode(&s.bytes)
                        .filter(|r| r.holder.id == record.holder.id && r.renewals == renewals)
                        .map(|_| s.version)
                });
                let mut held = shared.held();
                match mine {
                    Some(v) => {
                        held.version = v;
                        held.renewals = renewals;
                        held.valid_until = held.valid_until.max(sent + ttl * 9 / 10);
                    }
                    None => {
                        held.lost = Some(
                            "its lease record was replaced: another command took it over or it was broken with `state unlock --force`"
                                .into(),
                        );
                        drop(held);
                        shared.wake.notify_all();
                        return;
                    }
                }
            }
            Err(e) => {
                if Instant::now() >= held.valid_until {
                    held.lost = Some(format!("it could not be renewed in time: {e}"));
                    return;
                }
                pause = ttl / 10;
            }
        }
    }
}
