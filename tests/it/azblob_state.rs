//! The Azure Blob state backend against Azurite: the container check on connect, the blob
//! layout, the backends' conformance suite, the native blob lease on the lock blob (finite,
//! fencing writes, broken by a takeover and by `state unlock --force`), the SAS kept out of
//! every message, and use from inside a tokio runtime (as the CLI does).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use flyteinfra_azure_double::azurite::{ACCOUNT, account_sas};
use flyteinfra_state::conformance::{Handles, TTL};
use flyteinfra_state::{
    AzBlobAccess, AzBlobBackend, AzBlobLocation, Backend, Lease, LockInfo, Object, Precondition,
    StateError,
};

use crate::azure::unique;

/// A new, empty container in Azurite (also for the team scenarios, `team_state.rs`).
pub(crate) fn container() -> String {
    let name = format!("state-{}", unique());
    crate::azurite::get().create_container(&name);
    name
}

fn location(container: &str, key_prefix: &str, cloud: &str) -> AzBlobLocation {
    AzBlobLocation {
        account: ACCOUNT.to_string(),
        container: container.to_string(),
        key_prefix: key_prefix.to_string(),
        cloud: cloud.to_string(),
    }
}

fn local() -> AzBlobAccess {
    AzBlobAccess::Local {
        endpoint_with_sas: crate::azurite::endpoint_with_sas(),
    }
}

fn connect(loc: AzBlobLocation) -> Result<AzBlobBackend, StateError> {
    AzBlobBackend::connect(loc, local())
}

fn holder(command: &str) -> LockInfo {
    LockInfo::new(command)
}

/// The signature of the tests' SAS, as sent (percent-encoded) and decoded.
fn signatures() -> [String; 2] {
    let sas = account_sas();
    let sent = sas.split_once("&sig=").unwrap().1.to_string();
    let decoded = sent
        .replace("%2F", "/")
        .replace("%2B", "+")
        .replace("%3D", "=");
    [sent, decoded]
}

/// `e` and its sources.
fn full_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[track_caller]
fn assert_no_sas(text: &str) {
    assert!(!text.contains(&account_sas()), "the SAS shows: {text}");
    for sig in signatures() {
        assert!(!text.contains(&sig), "the SAS signature shows: {text}");
    }
    assert!(!text.contains("sp=rwdxlacup"), "the SAS shows: {text}");
}

#[track_caller]
fn setup_message(r: Result<AzBlobBackend, StateError>) -> (String, String) {
    match r {
        Err(StateError::Setup { path, message }) => (path.to_str().unwrap().to_string(), message),
        other => panic!("expected a setup error, got {other:?}"),
    }
}

fn is_moved<T: std::fmt::Debug>(r: &Result<T, StateError>) -> bool {
    matches!(r, Err(StateError::Moved { .. }))
}

#[test]
fn azblob_backend_passes_the_conformance_suite() {
    flyteinfra_state::conformance::run_all(&|| -> Handles {
        let c = container();
        // Each handle connects on its own, as two processes would.
        Box::new(move || Arc::new(connect(location(&c, "team", "azure")).unwrap()))
    });
}

#[test]
fn azblob_each_cloud_has_a_state_and_a_lease_blob_under_the_key_prefix() {
    let c = container();
    for cloud in ["azure", "gcp"] {
        let backend = connect(location(&c, "team/prod", cloud)).unwrap();
        for object in [Object::State, Object::Lease] {
            backend.put(object, b"{}", &Precondition::Absent).unwrap();
        }
        assert_eq!(
            backend.describe(Object::Lease),
            format!(
                "https://{ACCOUNT}.blob.core.windows.net/{c}/team/prod/{cloud}.state.json.lock"
            )
        );
    }
    assert_eq!(
        crate::azurite::get().names(&c),
        [
            "team/prod/azure.state.json",
            "team/prod/azure.state.json.lock",
            "team/prod/gcp.state.json",
            "team/prod/gcp.state.json.lock",
        ]
    );

    let top = container();
    let backend = connect(location(&top, "", "azure")).unwrap();
    for object in [Object::State, Object::Lease] {
        backend.put(object, b"{}", &Precondition::Absent).unwrap();
    }
    assert_eq!(
        crate::azurite::get().names(&top),
        ["azure.state.json", "azure.state.json.lock"]
    );
}

#[test]
fn azblob_a_missing_container_is_a_setup_error_with_the_command_that_creates_it() {
    let missing = format!("state-{}-missing", unique());
    let (path, m) = setup_message(connect(location(&missing, "", "azure")));
    assert_eq!(
        path,
        format!("https://{ACCOUNT}.blob.core.windows.net/{missing}")
    );
    assert!(
        m.contains(&format!(
            "container `{missing}` does not exist in storage account `{ACCOUNT}`"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "`az storage container create --account-name {ACCOUNT} --name {missing} --auth-mode login`"
        )),
        "{m}"
    );
    assert!(m.contains("--enable-versioning true"), "{m}");
    assert_no_sas(&m);
    // Nothing was created by the check.
    connect(location(&missing, "", "azure")).unwrap_err();
}

#[test]
fn azblob_a_local_endpoint_off_this_machine_is_refused() {
    for endpoint in [
        format!("http://10.1.2.3:10000/{ACCOUNT}?{}", account_sas()),
        format!("https://{ACCOUNT}.blob.core.windows.net?{}", account_sas()),
    ] {
        let access = AzBlobAccess::Local {
            endpoint_with_sas: endpoint,
        };
        assert_no_sas(&format!("{access:?}"));
        let (_, m) = setup_message(AzBlobBackend::connect(
            location("state", "", "azure"),
            access,
        ));
        assert!(m.contains("not a loopback address"), "{m}");
        assert_no_sas(&m);
    }
}

/// The SAS is the account's key for as long as it lasts: no description, debug output or
/// error shows it, not even an error of the HTTP client that names the request's URL.
#[test]
fn azblob_the_sas_never_shows_in_descriptions_or_errors() {
    let c = container();
    let backend = connect(location(&c, "p", "azure")).unwrap();
    for object in [Object::State, Object::Lease] {
        let d = backend.describe(object);
        assert!(d.starts_with("https://"), "{d}");
        assert_no_sas(&d);
    }
    assert_no_sas(&format!("{backend:?}"));
    assert_no_sas(&format!("{:?}", local()));

    // Azurite refuses a wrong signature: the answer is shown, the SAS is not.
    let azurite = crate::azurite::get();
    let bad = AzBlobAccess::Local {
        endpoint_with_sas: format!(
            "{}?{}",
            azurite.url,
            account_sas().replace("&sig=", "&sig=AAAA")
        ),
    };
    let (_, m) = setup_message(AzBlobBackend::connect(location(&c, "", "azure"), bad));
    assert!(m.contains("HTTP 403"), "{m}");
    assert!(m.contains("Storage Blob Data Contributor"), "{m}");
    assert_no_sas(&m);
    assert!(!m.contains("AAAA"), "{m}");

    // A server that answers the container check, then drops every connection: the HTTP
    // client's error names the request URL, SAS and all, and the backend's never does.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            if i == 0 {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        }
    });
    let dropping = AzBlobAccess::Local {
        endpoint_with_sas: format!("http://127.0.0.1:{port}/{ACCOUNT}?{}", account_sas()),
    };
    let backend = AzBlobBackend::connect(location(&c, "", "azure"), dropping).unwrap();
    assert_eq!(backend.calls(), 1);
    let put = backend.put(Object::State, b"{}", &Precondition::Absent);
    // The first attempt and the SDK's two retries, no more.
    assert_eq!(backend.calls(), 4);
    let Err(e @ StateError::Write { .. }) = &put else {
        panic!("{put:?}")
    };
    let text = full_text(e);
    assert!(
        text.contains(&format!(
            "`https://{ACCOUNT}.blob.core.windows.net/{c}/azure.state.json`"
        )),
        "{text}"
    );
    assert!(text.contains("Put Blob: "), "{text}");
    assert_no_sas(&text);
    let got = backend.get(Object::Lease);
    let Err(e @ StateError::Read { .. }) = &got else {
        panic!("{got:?}")
    };
    assert_no_sas(&full_text(e));
}

/// The holder's lock blob carries a 60 s (fixed, not infinite) native lease: Azurite
/// itself refuses a write without its id; the holder's own writes renew it and keep it;
/// the lease changes no ETag; the state blob has none.
#[test]
fn azblob_the_lock_blob_carries_a_finite_native_lease_that_fences_writes() {
    let c = container();
    let azurite = crate::azurite::get();
    let b = connect(location(&c, "", "azure")).unwrap();
    let lock = "azure.state.json.lock";
    let v1 = b
        .put(Object::Lease, b"{\"n\":1}", &Precondition::Absent)
        .unwrap();
    assert_eq!(
        azurite.lease(&c, lock),
        ("leased".to_string(), Some("fixed".to_string()))
    );
    assert_eq!(b.get(Object::Lease).unwrap().unwrap().version, v1);
    assert_eq!(
        azurite.try_overwrite(&c, lock, b"intruder"),
        (412, Some("LeaseIdMissing".to_string()))
    );

    let v2 = b
        .put(Object::Lease, b"{\"n\":2}", &Precondition::At(v1.clone()))
        .unwrap();
    assert_ne!(v1, v2);
    let got = b.get(Object::Lease).unwrap().unwrap();
    assert_eq!(
        (got.bytes.as_slice(), &got.version),
        (&b"{\"n\":2}"[..], &v2)
    );
    assert_eq!(azurite.lease(&c, lock).0, "leased");
    assert_eq!(azurite.try_overwrite(&c, lock, b"intruder").0, 412);

    b.put(Object::State, b"{}", &Precondition::Absent).unwrap();
    assert_eq!(
        azurite.lease(&c, "azure.state.json"),
        ("available".to_string(), None)
    );

    b.delete(Object::Lease, &v2).unwrap();
    assert_eq!(azurite.names(&c), ["azure.state.json"]);
}

/// Another process taking the lease over after a full TTL breaks the stalled holder's
/// native lease and leases the blob itself; the stalled holder's next renewal is refused,
/// and a waiter that read an older version breaks nothing.
#[test]
fn azblob_a_takeover_breaks_the_stalled_holders_native_lease() {
    let c = container();
    let azurite = crate::azurite::get();
    let lock = "p/azure.state.json.lock";
    let a = Arc::new(connect(location(&c, "p", "azure")).unwrap());
    let a_info = holder("flyteinfra apply");
    Lease::acquire(a.clone(), a_info.clone(), TTL, Duration::ZERO)
        .unwrap()
        .abandon();
    let stalled = a.get(Object::Lease).unwrap().unwrap();
    assert_eq!(azurite.lease(&c, lock).0, "leased");

    let b = Arc::new(connect(location(&c, "p", "azure")).unwrap());
    let lease_b = Lease::acquire(b.clone(), holder("flyteinfra apply"), TTL, TTL * 3).unwrap();
    assert_eq!(lease_b.taken_over_from(), Some(&a_info));
    assert_eq!(
        azurite.lease(&c, lock),
        ("leased".to_string(), Some("fixed".to_string()))
    );
    assert_eq!(azurite.try_overwrite(&c, lock, b"intruder").0, 412);

    let renewal = a.put(
        Object::Lease,
        &stalled.bytes,
        &Precondition::At(stalled.version.clone()),
    );
    assert!(is_moved(&renewal), "{renewal:?}");

    // A waiter acting on the stalled holder's version: refused, and B's native lease holds
    // (its renewals, every TTL/3, go on).
    let late = connect(location(&c, "p", "azure")).unwrap();
    let stale = late.put(Object::Lease, b"{}", &Precondition::At(stalled.version));
    assert!(is_moved(&stale), "{stale:?}");
    assert_eq!(azurite.lease(&c, lock).0, "leased");
    std::thread::sleep(TTL);
    lease_b.watch().check().unwrap();

    drop(lease_b);
    assert!(b.get(Object::Lease).unwrap().is_none());
}

/// A broken native lease fences the holder even where the ETag alone would not: its next
/// renewal is `Moved` and writes nothing; a later writer over that version leases the blob
/// again.
#[test]
fn azblob_a_holder_whose_native_lease_was_broken_is_moved_at_its_own_version() {
    let c = container();
    let azurite = crate::azurite::get();
    let lock = "azure.state.json.lock";
    let a = connect(location(&c, "", "azure")).unwrap();
    let v = a
        .put(Object::Lease, b"{\"a\":1}", &Precondition::Absent)
        .unwrap();
    azurite.break_lease(&c, lock);
    assert_eq!(azurite.lease(&c, lock).0, "broken");

    let renewal = a.put(Object::Lease, b"{\"a\":2}", &Precondition::At(v.clone()));
    assert!(is_moved(&renewal), "{renewal:?}");
    let got = a.get(Object::Lease).unwrap().unwrap();
    assert_eq!(
        (got.bytes.as_slice(), &got.version),
        (&b"{\"a\":1}"[..], &v)
    );

    let b = connect(location(&c, "", "azure")).unwrap();
    let vb = b
        .put(Object::Lease, b"{\"b\":1}", &Precondition::At(v.clone()))
        .unwrap();
    assert_eq!(
        azurite.lease(&c, lock),
        ("leased".to_string(), Some("fixed".to_string()))
    );
    // The holder renews its own lease; the broken one gets nothing back.
    let vb2 = b
        .put(Object::Lease, b"{\"b\":2}", &Precondition::At(vb))
        .unwrap();
    let old = a.delete(Object::Lease, &v);
    assert!(is_moved(&old), "{old:?}");

    // `state unlock --force` from a third process: break, then delete at the version.
    let admin = connect(location(&c, "", "azure")).unwrap();
    admin.delete(Object::Lease, &vb2).unwrap();
    assert!(azurite.names(&c).is_empty());
    let after = b.put(Object::Lease, b"{\"b\":3}", &Precondition::At(vb2));
    assert!(is_moved(&after), "{after:?}");
}

/// The CLI saves state from async code: connecting and every call work inside a runtime
/// (a `Runtime::block_on` there would panic); a state call is one request, a lease write
/// with its native lease two or three.
#[test]
fn azblob_the_backend_works_inside_a_tokio_runtime() {
    let c = container();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = connect(location(&c, "p", "azure")).unwrap();
        assert_eq!(backend.calls(), 1, "the container check");
        let v = backend
            .put(Object::State, b"{}", &Precondition::Absent)
            .unwrap();
        let got = backend.get(Object::State).unwrap().unwrap();
        assert_eq!((got.bytes.as_slice(), &got.version), (&b"{}"[..], &v));
        backend.delete(Object::State, &v).unwrap();
        assert_eq!(backend.calls(), 4);

        // Create and acquire; renew and write; renew and delete.
        let l = backend
            .put(Object::Lease, b"{}", &Precondition::Absent)
            .unwrap();
        assert_eq!(backend.calls(), 6);
        let l = backend
            .put(Object::Lease, b"{\"n\":1}", &Precondition::At(l))
            .unwrap();
        assert_eq!(backend.calls(), 8);
        // A clone shares the client, the count and the native lease.
        let clone = backend.clone();
        drop(backend);
        clone.delete(Object::Lease, &l).unwrap();
        assert_eq!(clone.calls(), 10);
        assert!(clone.get(Object::Lease).unwrap().is_none());
    });
}
