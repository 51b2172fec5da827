//! The behaviour every backend must show, run against each of them (memory and local
//! here; S3 in the integration tests, against moto). Test support: built for this
//! crate's tests and, with the `conformance` feature, for other crates' tests only.
//!
//! Each scenario gets a fresh, empty store and a way to open handles on it: two handles
//! stand for two processes sharing the same state.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Object, Precondition, Version};
use crate::document::StateDoc;
use crate::error::StateError;
use crate::lease::Lease;
use crate::lock::LockInfo;
use crate::manager::StateManager;

/// Opens a new handle on one store.
pub type Handles = Box<dyn Fn() -> Arc<dyn Backend>>;

/// The lease time-to-live the scenarios use.
pub const TTL: Duration = Duration::from_millis(1500);

/// Runs every scenario, each on a store `fresh` makes.
pub fn run_all(fresh: &dyn Fn() -> Handles) {
    objects(&fresh());
    races(&fresh());
    leases(&fresh());
    takeover_after_a_full_ttl(&fresh());
    fencing(&fresh());
    fencing_of_a_first_write(&fresh());
    force_unlock(&fresh());
}

fn is_moved<T: std::fmt::Debug>(r: Result<T, StateError>) -> bool {
    matches!(r, Err(StateError::Moved { .. }))
}

fn set_output(doc: &mut StateDoc, name: &str, value: &str) {
    doc.outputs.insert(
        name.into(),
        crate::Output {
            value: flyteinfra_core::Value::Str(value.into()),
            sensitive: false,
        },
    );
}

fn holder(command: &str, pid: u32) -> LockInfo {
    let mut info = LockInfo::new(command);
    info.pid = pid;
    info
}

/// Conditional writes and deletes of both objects.
pub fn objects(h: &Handles) {
    let b = h();
    assert!(
        b.get(Object::State).unwrap().is_none(),
        "a new store is empty"
    );
    assert!(b.get(Object::Lease).unwrap().is_none());
    assert_ne!(b.describe(Object::State), b.describe(Object::Lease));

    let v1 = b
        .put(Object::State, b"first", &Precondition::Absent)
        .unwrap();
    let got = b.get(Object::State).unwrap().unwrap();
    assert_eq!((got.bytes.as_slice(), &got.version), (&b"first"[..], &v1));
    assert!(is_moved(b.put(Object::State, b"x", &Precondition::Absent)));
    let nonsense = Precondition::At(Version::new("\"not-a-version\""));
    assert!(is_moved(b.put(Object::State, b"x", &nonsense)));

    let v2 = b
        .put(
            Object::State,
            b"second, longer",
            &Precondition::At(v1.clone()),
        )
        .unwrap();
    assert_ne!(v1, v2);
    assert!(
        is_moved(b.put(Object::State, b"stale", &Precondition::At(v1.clone()))),
        "a write over an old version is refused"
    );
    let v3 = b
        .put(Object::State, b"3", &Precondition::At(v2.clone()))
        .unwrap();
    let other = h();
    let got = other.get(Object::State).unwrap().unwrap();
    assert_eq!(got.bytes, b"3", "no stale tail, seen by another handle");
    assert_eq!(got.version, v3);

    // The two objects are independent.
    assert!(b.get(Object::Lease).unwrap().is_none());
    let lv = b
        .put(Object::Lease, b"lease", &Precondition::Absent)
        .unwrap();
    assert_eq!(b.get(Object::State).unwrap().unwrap().bytes, b"3");

    assert!(
        is_moved(b.delete(Object::State, &v2)),
        "delete of an old version"
    );
    b.delete(Object::State, &v3).unwrap();
    assert!(b.get(Object::State).unwrap().is_none());
    assert!(
        is_moved(b.delete(Object::State, &v3)),
        "delete of a missing object"
    );
    assert!(
        is_moved(b.put(Object::State, b"x", &Precondition::At(v3))),
        "a write over a deleted object"
    );
    b.put(Object::State, b"again", &Precondition::Absent)
        .unwrap();
    b.delete(Object::Lease, &lv).unwrap();
    assert!(b.get(Object::Lease).unwrap().is_none());
}

/// Racing writers on one precondition: exactly one wins.
pub fn races(h: &Handles) {
    const N: usize = 6;
    let race = |object: Object, expect: Precondition| -> Vec<Result<Version, StateError>> {
        let barrier = Arc::new(Barrier::new(N));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (b, barrier, expect) = (h(), Arc::clone(&barrier), expect.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    b.put(object, format!("writer {i}").as_bytes(), &expect)
                })
            })
            .collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    };
    let winners = |results: &[Result<Version, StateError>]| {
        for r in results {
            assert!(
                r.is_ok() || matches!(r, Err(StateError::Moved { .. })),
                "{r:?}"
            );
        }
        results.iter().filter(|r| r.is_ok()).count()
    };
    let creates = race(Object::Lease, Precondition::Absent);
    assert_eq!(winners(&creates), 1, "create-only: {creates:?}");

    let b = h();
    let v = b
        .put(Object::State, b"base", &Precondition::Absent)
        .unwrap();
    let swaps = race(Object::State, Precondition::At(v));
    assert_eq!(winners(&swaps), 1, "compare-and-swap: {swaps:?}");
    let i = swaps.iter().position(Result::is_ok).unwrap();
    assert_eq!(
        b.get(Object::State).unwrap().unwrap().bytes,
        format!("writer {i}").as_bytes()
    );
}

/// One holder at a time; waiting; renewals keep a live holder's lease; release.
pub fn leases(h: &Handles) {
    let a_info = holder("flyteinfra apply", 4242);
    let a = Lease::acquire(h(), a_info.clone(), TTL, Duration::ZERO).unwrap();
    assert_eq!(a.info(), &a_info);
    assert!(a.taken_over_from().is_none());

    let start = Instant::now();
    let wait = Duration::from_millis(250);
    let err = Lease::acquire(h(), holder("flyteinfra plan", 1), TTL, wait).unwrap_err();
    assert!(start.elapsed() >= wait, "it waited");
    let StateError::Locked {
        holder: found,
        waited,
        ttl,
        ..
    } = &err
    else {
        panic!("expected Locked, got {err:?}");
    };
    assert_eq!((&**found, *waited, *ttl), (&a_info, wait, TTL));
    let msg = err.to_string();
    let state = h().describe(Object::State);
    for part in [
        &format!("state `{state}` is locked by pid 4242 on host "),
        ", user ",
        "(`flyteinfra apply`) since ",
        "; waited 250ms (use `--lock-timeout` to wait longer",
        "not renewed for 1.5s is taken over",
        &format!("`flyteinfra state unlock --force {}`", a_info.id),
    ] {
        assert!(msg.contains(part), "`{part}` is not in: {msg}");
    }

    // A live holder renews: a waiter never sees its record unchanged for a full TTL.
    let start = Instant::now();
    let err = Lease::acquire(h(), holder("b", 2), TTL, TTL * 2).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    assert!(start.elapsed() >= TTL * 2);
    a.watch().check().unwrap();

    // Released: the next command gets it at once.
    drop(a);
    assert!(
        h().get(Object::Lease).unwrap().is_none(),
        "release deletes it"
    );
    let b = Lease::acquire(h(), holder("b", 2), TTL, Duration::ZERO).unwrap();
    assert!(b.taken_over_from().is_none());

    // A waiter gets it when the holder releases within the timeout.
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(b);
        });
        let c = Lease::acquire(h(), holder("c", 3), TTL, Duration::from_secs(10));
        assert!(c.is_ok(), "{c:?}");
    });
}

/// A holder that stops renewing (killed) is taken over after a full TTL, not before.
pub fn takeover_after_a_full_ttl(h: &Handles) {
    let a_info = holder("flyteinfra apply", 4242);
    let first = h();
    // Timed from the holder's last write: a backend with a server clock may take over a
    // TTL after it, a waiter timing the record itself only later.
    let start = Instant::now();
    Lease::acquire(first, a_info.clone(), TTL, Duration::ZERO)
        .unwrap()
        .abandon();

    let err = Lease::acquire(h(), holder("early", 1), TTL, TTL / 2).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");

    let b = Lease::acquire(h(), holder("flyteinfra apply", 2), TTL, TTL * 3).unwrap();
    assert!(
        start.elapsed() >= TTL,
        "taken over {:?} after the holder's last write, before a full TTL",
        start.elapsed()
    );
    assert_eq!(b.taken_over_from(), Some(&a_info));
    b.watch().check().unwrap();
}

/// The new holder of a taken-over lease writes state before anything else, so the
/// stalled holder's next write fails; and every write is conditional on the version its
/// writer last read.
pub fn fencing(h: &Handles) {
    let mut ma = StateManager::shared(h());
    let lease_a = ma.lock(holder("a", 1), TTL, Duration::ZERO).unwrap();
    let mut doc_a = ma.load("prod", "aws").unwrap();
    ma.persist(&mut doc_a).unwrap();
    assert_eq!(doc_a.serial, 1);
    let watch_a = lease_a.watch();
    // Stalled: no more renewals, but its manager still holds what it read.
    lease_a.abandon();

    let mut mb = StateManager::shared(h());
    let lease_b = mb.lock(holder("b", 2), TTL, TTL * 3).unwrap();
    assert!(lease_b.taken_over_from().is_some());
    let doc_b = mb.load("prod", "aws").unwrap();
    assert_eq!(
        (mb.found_serial(), doc_b.serial),
        (1, 2),
        "the fencing write bumps the serial at once"
    );

    set_output(&mut doc_a, "x", "from a");
    let e = ma.persist(&mut doc_a).unwrap_err();
    assert!(
        matches!(e, StateError::LeaseLost { .. } | StateError::Fenced { .. }),
        "{e:?}"
    );
    assert!(watch_a.check().is_err());

    // Versions alone fence too: a manager that read serial 2 cannot write over serial 3.
    let mut mc = StateManager::shared(h());
    let mut doc_c = mc.load("prod", "aws").unwrap();
    let mut doc_b = doc_b;
    set_output(&mut doc_b, "y", "from b");
    mb.persist(&mut doc_b).unwrap();
    doc_c.outputs.clear();
    set_output(&mut doc_c, "z", "from c");
    let e = mc.persist(&mut doc_c).unwrap_err();
    assert!(matches!(e, StateError::Fenced { .. }), "{e:?}");
    assert!(
        e.to_string().contains("was written by another command"),
        "{e}"
    );
    let stored = StateManager::shared(h()).load("prod", "aws").unwrap();
    assert_eq!(stored, doc_b, "the fenced writes changed nothing");
}

/// Two writers that both found no state: only the first write lands.
pub fn fencing_of_a_first_write(h: &Handles) {
    let mut mx = StateManager::shared(h());
    let mut my = StateManager::shared(h());
    let mut x = mx.load("prod", "aws").unwrap();
    let mut y = my.load("prod", "aws").unwrap();
    my.persist(&mut y).unwrap();
    let e = mx.persist(&mut x).unwrap_err();
    assert!(matches!(e, StateError::Fenced { .. }), "{e:?}");
    let stored: StateDoc = StateManager::shared(h()).load("prod", "aws").unwrap();
    assert_eq!(stored.lineage, y.lineage);
}

/// The human override names the holder it breaks, and the holder notices.
pub fn force_unlock(h: &Handles) {
    let a_info = holder("flyteinfra apply", 4242);
    let a = Lease::acquire(h(), a_info.clone(), TTL, Duration::ZERO).unwrap();

    let e = Lease::force_unlock(&*h(), "wrong-id").unwrap_err();
    assert!(matches!(&e, StateError::NotHolder { holder, .. } if **holder == a_info));
    assert!(
        e.to_string()
            .contains(&format!("under lease id `{}`", a_info.id))
            && e.to_string().contains("nothing was unlocked"),
        "{e}"
    );
    assert!(a.watch().check().is_ok());

    let broken = Lease::force_unlock(&*h(), &a_info.id).unwrap();
    assert_eq!(broken, a_info);
    let start = Instant::now();
    while a.watch().check().is_ok() {
        assert!(start.elapsed() < TTL * 2, "the holder never noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = a.watch().check().unwrap_err();
    assert!(e.to_string().contains("state unlock --force"), "{e}");

    let e = Lease::force_unlock(&*h(), &a_info.id).unwrap_err();
    assert!(matches!(e, StateError::NotLocked { .. }), "{e:?}");
    assert!(
        e.to_string().ends_with("is not locked: nothing to unlock"),
        "{e}"
    );

    // Another command can lease it now; the broken holder's drop leaves that alone.
    let b = Lease::acquire(h(), holder("b", 2), TTL, Duration::ZERO).unwrap();
    drop(a);
    assert!(h().get(Object::Lease).unwrap().is_some());
    drop(b);
    assert!(h().get(Object::Lease).unwrap().is_none());
}
