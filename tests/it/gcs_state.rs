//! The GCS state backend against fake-gcs-server, through the GCS test proxy (which checks
//! the delete preconditions the emulator ignores, as GCS does): the bucket checks on
//! connect, the object layout, the backends' conformance suite, use from inside a tokio
//! runtime, and retries.

use std::sync::{Arc, OnceLock};

use flyteinfra_gcp_double::gcs_proxy::{self, GcsProxy};
use flyteinfra_gcp_double::storage::{self, StorageEmulator};
use flyteinfra_state::{
    Backend, GcsAccess, GcsBackend, GcsLocation, Object, Precondition, StateError,
};

use crate::aws::{rt, unique_name};

/// This test binary's fake-gcs-server, started on first use.
fn emulator() -> &'static str {
    static EMULATOR: OnceLock<StorageEmulator> = OnceLock::new();
    &EMULATOR
        .get_or_init(|| storage::start_fake_gcs(&crate::util::workspace().join(".venv")))
        .url
}

/// The proxy every test but the fault tests talks through.
pub(crate) fn proxy() -> &'static GcsProxy {
    static PROXY: OnceLock<GcsProxy> = OnceLock::new();
    PROXY.get_or_init(|| gcs_proxy::start(emulator()))
}

/// A new bucket, with object versioning on or off.
pub(crate) fn bucket(versioning: bool) -> String {
    let name = format!("state-{}", unique_name());
    rt().block_on(gcs_proxy::create_bucket(emulator(), &name, versioning));
    name
}

fn location(bucket: &str, prefix: &str, cloud: &str) -> GcsLocation {
    GcsLocation {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        cloud: cloud.to_string(),
    }
}

fn at(endpoint: &str) -> GcsAccess {
    GcsAccess::Local {
        endpoint: endpoint.to_string(),
    }
}

fn connect(loc: GcsLocation) -> Result<GcsBackend, StateError> {
    GcsBackend::connect(loc, at(proxy().url()))
}

fn names(bucket: &str) -> Vec<String> {
    rt().block_on(gcs_proxy::object_names(emulator(), bucket))
}

#[track_caller]
fn setup_message(r: Result<GcsBackend, StateError>, bucket: &str) -> String {
    match r {
        Err(StateError::Setup { path, message }) => {
            assert_eq!(path.to_str().unwrap(), format!("gs://{bucket}"));
            message
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
}

#[track_caller]
fn assert_moved<T: std::fmt::Debug>(r: Result<T, StateError>) {
    assert!(matches!(r, Err(StateError::Moved { .. })), "{r:?}");
}

#[test]
fn a_missing_bucket_or_one_without_versioning_is_a_setup_error() {
    let missing = format!("state-{}-missing", unique_name());
    let m = setup_message(connect(location(&missing, "", "gcp")), &missing);
    assert!(
        m.contains(&format!("bucket `{missing}` does not exist")),
        "{m}"
    );
    assert!(
        m.contains(&format!("`gcloud storage buckets create gs://{missing}")),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "`gcloud storage buckets update gs://{missing} --versioning`"
        )),
        "{m}"
    );

    let plain = bucket(false);
    let m = setup_message(connect(location(&plain, "", "gcp")), &plain);
    assert!(
        m.contains(&format!("versioning is not enabled on bucket `{plain}`")),
        "{m}"
    );
    assert!(m.contains("rolled back"), "{m}");
    assert!(
        m.contains(&format!(
            "`gcloud storage buckets update gs://{plain} --versioning`"
        )),
        "{m}"
    );

    rt().block_on(gcs_proxy::set_versioning(emulator(), &plain, true));
    connect(location(&plain, "", "gcp")).unwrap();
    // Nothing was written by the checks.
    assert!(names(&plain).is_empty());
}

/// Anonymous access goes only to an emulator on this machine; nothing is sent elsewhere.
#[test]
fn a_local_endpoint_not_on_this_machine_is_refused() {
    for endpoint in ["http://192.0.2.7:4443", "https://storage.googleapis.com"] {
        let m = setup_message(
            GcsBackend::connect(location("b", "", "gcp"), at(endpoint)),
            "b",
        );
        assert!(
            m.contains(&format!("`{endpoint}` is not on this machine")),
            "{m}"
        );
        assert!(m.contains("Application Default Credentials"), "{m}");
    }
}

#[test]
fn each_cloud_has_a_state_and_a_lease_object_under_the_prefix() {
    let b = bucket(true);
    for cloud in ["aws", "gcp"] {
        let backend = connect(location(&b, "team/prod", cloud)).unwrap();
        backend
            .put(Object::State, b"{}", &Precondition::Absent)
            .unwrap();
        backend
            .put(Object::Lease, b"{}", &Precondition::Absent)
            .unwrap();
        assert_eq!(
            backend.describe(Object::Lease),
            format!("gs://{b}/team/prod/{cloud}.state.json.lock")
        );
    }
    assert_eq!(
        names(&b),
        [
            "team/prod/aws.state.json",
            "team/prod/aws.state.json.lock",
            "team/prod/gcp.state.json",
            "team/prod/gcp.state.json.lock",
        ]
    );

    let top = bucket(true);
    let backend = connect(location(&top, "", "gcp")).unwrap();
    for object in [Object::State, Object::Lease] {
        backend.put(object, b"{}", &Precondition::Absent).unwrap();
    }
    assert_eq!(names(&top), ["gcp.state.json", "gcp.state.json.lock"]);
}

#[test]
fn gcs_backend_passes_the_conformance_suite() {
    flyteinfra_state::conformance::run_all(&|| -> flyteinfra_state::conformance::Handles {
        let b = bucket(true);
        // Each handle connects on its own, as two processes would.
        Box::new(move || Arc::new(connect(location(&b, "team", "gcp")).unwrap()))
    });
}

/// Every write is kept as a generation; a deleted object becomes noncurrent, and a
/// create-only write succeeds over it.
#[test]
fn every_write_is_kept_as_a_generation() {
    let b = bucket(true);
    let backend = connect(location(&b, "", "gcp")).unwrap();
    let v1 = backend
        .put(Object::State, b"{\"serial\":1}", &Precondition::Absent)
        .unwrap();
    let v2 = backend
        .put(
            Object::State,
            b"{\"serial\":2}",
            &Precondition::At(v1.clone()),
        )
        .unwrap();
    assert_ne!(v1, v2);
    assert_moved(backend.delete(Object::State, &v1));
    backend.delete(Object::State, &v2).unwrap();
    assert!(backend.get(Object::State).unwrap().is_none());
    assert_moved(backend.delete(Object::State, &v2));
    assert_moved(backend.put(Object::State, b"{\"serial\":2}", &Precondition::At(v2)));
    backend
        .put(Object::State, b"{\"serial\":3}", &Precondition::Absent)
        .unwrap();
    assert_eq!(rt().block_on(gcs_proxy::generations(emulator(), &b)), 3);
}

/// fake-gcs-server deletes whatever generation a delete names; the proxy refuses a
/// delete at a generation that is not live, as GCS does, so the backend is tested
/// against GCS's behaviour.
#[test]
fn the_proxy_enforces_the_delete_preconditions_the_emulator_ignores() {
    let b = bucket(true);
    let direct = GcsBackend::connect(location(&b, "", "gcp"), at(emulator())).unwrap();
    let v1 = direct
        .put(Object::State, b"1", &Precondition::Absent)
        .unwrap();
    let v2 = direct
        .put(Object::State, b"2", &Precondition::At(v1.clone()))
        .unwrap();
    // The emulator's gap: a stale delete succeeds. Should this start failing, a newer
    // fake-gcs-server checks deletes itself and the proxy's check can go.
    direct.delete(Object::State, &v1).unwrap();
    assert!(direct.get(Object::State).unwrap().is_none(), "{v2:?}");

    let proxied = connect(location(&b, "", "gcp")).unwrap();
    let v1 = proxied
        .put(Object::State, b"1", &Precondition::Absent)
        .unwrap();
    let v2 = proxied
        .put(Object::State, b"2", &Precondition::At(v1.clone()))
        .unwrap();
    let checked = proxy().checked();
    assert_moved(proxied.delete(Object::State, &v1));
    let kept = proxied.get(Object::State).unwrap().unwrap();
    assert_eq!((kept.bytes.as_slice(), &kept.version), (&b"2"[..], &v2));
    assert_moved(proxied.delete(Object::Lease, &v2));
    assert!(proxy().checked() >= checked + 2);
    proxied.delete(Object::State, &v2).unwrap();
    assert!(proxied.get(Object::State).unwrap().is_none());
}

/// The CLI saves state from async code: connecting and every call work inside a runtime
/// (a `Runtime::block_on` there would panic), and each call is one request.
#[test]
fn the_backend_works_inside_a_tokio_runtime_one_request_per_call() {
    let b = bucket(true);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = connect(location(&b, "p", "gcp")).unwrap();
        assert_eq!(backend.calls(), 1, "the bucket check");
        let v = backend
            .put(Object::State, b"{}", &Precondition::Absent)
            .unwrap();
        let got = backend.get(Object::State).unwrap().unwrap();
        assert_eq!((got.bytes.as_slice(), &got.version), (&b"{}"[..], &v));
        backend.delete(Object::State, &v).unwrap();
        assert_eq!(backend.calls(), 4);
        // A clone shares the client and the count.
        let clone = backend.clone();
        drop(backend);
        assert!(clone.get(Object::State).unwrap().is_none());
        assert_eq!(clone.calls(), 5);
    });
}

/// 5xx and 429 are tried again, a bounded number of times; a failed precondition is not
/// (it is an answer). A failing GCS leaves the object unchanged.
#[test]
fn transient_failures_are_retried_a_bounded_number_of_times() {
    // Its own proxy: the failures it injects reach no other test.
    let faulty = gcs_proxy::start(emulator());
    let b = bucket(true);
    let backend = GcsBackend::connect(location(&b, "", "gcp"), at(faulty.url())).unwrap();
    let v = backend
        .put(Object::State, b"{}", &Precondition::Absent)
        .unwrap();

    let before = backend.calls();
    faulty.fail_next(503, 2);
    assert_eq!(backend.get(Object::State).unwrap().unwrap().version, v);
    assert_eq!(backend.calls() - before, 3);

    let before = backend.calls();
    faulty.fail_next(429, 1);
    assert_moved(backend.put(Object::State, b"{\"x\":1}", &Precondition::Absent));
    assert_eq!(backend.calls() - before, 2, "the 412 is not tried again");

    let before = backend.calls();
    faulty.fail_next(503, 100);
    let put = backend.put(Object::State, b"{\"x\":1}", &Precondition::At(v.clone()));
    assert_eq!(backend.calls() - before, 4);
    let Err(StateError::Write { path, source }) = put else {
        panic!("{put:?}")
    };
    assert_eq!(path.to_str().unwrap(), format!("gs://{b}/gcp.state.json"));
    let text = source.to_string();
    assert!(
        text.starts_with("storage.objects.insert: backendError: "),
        "{text}"
    );
    assert!(text.ends_with("(HTTP 503)"), "{text}");
    let read = backend.get(Object::State);
    assert!(matches!(read, Err(StateError::Read { .. })), "{read:?}");
    faulty.fail_next(503, 0);
    let now = backend.get(Object::State).unwrap().unwrap();
    assert_eq!((now.bytes.as_slice(), &now.version), (&b"{}"[..], &v));
}
