//! The cost of a state transition: every transition is written before the next step, so
//! this is what each create, update and delete pays on top of its cloud call.
//!
//! For each backend, 200 transitions of one document through `StateManager::persist` (a
//! conditional write after the lease check), and 200 lease renewals (a conditional write
//! of the small lease record). The document is the AWS demo's final state when
//! `target/demo/aws` holds one (run `scripts/demo` first), whose serial is then the demo
//! stack's number of transitions; otherwise a synthetic one of the same shape.
//!
//! - `memory`: encoding only (the floor);
//! - `local`: the file backend in `target/` (digest, flock, temp file, fsync, rename,
//!   fsync of the directory, and the `.backup` copy);
//! - `s3` (with `--features s3`): S3 on moto over loopback, one `PutObject` with `If-Match`
//!   per transition. moto is Python on this machine, not S3: the number is a round trip to
//!   a local server, shown to prove one request per transition; S3's own PutObject latency
//!   is what a real deployment pays instead.
//!
//! Run with `cargo bench -p flyteinfra-benches --bench state` (add `--features s3`; the
//! SDK builds in release then, which takes a while on two cores).

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flyteinfra_benches::ms;
use flyteinfra_core::{Address, Attributes, Mode, Value};
use flyteinfra_state::{
    Backend, LocalBackend, LockInfo, MemoryBackend, Object, Output, Precondition, ResourceState,
    StateDoc, StateManager, Status, decode,
};

const TRANSITIONS: usize = 200;
const DEMO_STATE: &str = "target/demo/aws/.flyteinfra/aws.state.json";

/// The demo's final state and its serial, or a synthetic document of 60 resources.
fn document() -> (StateDoc, Option<u64>, &'static str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(DEMO_STATE);
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(doc) = decode(&bytes, &path)
    {
        let serial = doc.serial;
        return (doc, Some(serial), "the AWS demo's final state");
    }
    let mut doc = StateDoc::new("demo", "aws");
    for i in 0..60 {
        let mut attributes = Attributes::new();
        for f in 0..20 {
            attributes.insert(
                format!("field_{f}"),
                Value::Str(format!("value-{i}-{f}-{}", "x".repeat(32))),
            );
        }
        doc.resources.insert(
            Address::new("bench_type", format!("r{i}")),
            ResourceState {
                mode: Mode::Managed,
                id: format!("id-{i}"),
                status: Status::Ready,
                inputs: attributes.clone(),
                attributes,
                dependencies: vec![],
            },
        );
    }
    (
        doc,
        None,
        "a synthetic state of 60 resources (run `scripts/demo` for the real one)",
    )
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p95: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        mean: samples.iter().sum::<Duration>() / n as u32,
        p50: samples[n / 2],
        p95: samples[n * 95 / 100],
        max: samples[n - 1],
    }
}

/// `TRANSITIONS` persists of `doc`, each changing one output (as a transition changes one
/// resource), then `TRANSITIONS` lease renewals.
fn run(name: &str, backend: Arc<dyn Backend>, doc: &StateDoc, demo: Option<u64>) {
    let mut manager = StateManager::shared(Arc::clone(&backend));
    let lease = manager
        .lock(
            LockInfo::new("bench"),
            Duration::from_secs(600),
            Duration::ZERO,
        )
        .expect("lease");
    let mut doc = doc.clone();
    manager.persist(&mut doc).expect("first write");
    let mut samples = Vec::with_capacity(TRANSITIONS);
    for i in 0..TRANSITIONS {
        doc.outputs.insert(
            "bench_tick".into(),
            Output {
                value: Value::Int(i as i64),
                sensitive: false,
            },
        );
        let t = Instant::now();
        manager.persist(&mut doc).expect("persist");
        samples.push(t.elapsed());
    }
    let s = stats(samples);

    // A renewal is a conditional write of the lease record over its last version.
    let record = backend
        .get(Object::Lease)
        .expect("read the lease")
        .expect("the lease exists");
    let mut version = record.version;
    let mut renewals = Vec::with_capacity(TRANSITIONS);
    for i in 0..TRANSITIONS {
        let mut bytes = record.bytes.clone();
        bytes.extend(format!(" {i}").bytes());
        let t = Instant::now();
        version = backend
            .put(Object::Lease, &bytes, &Precondition::At(version))
            .expect("renew");
        renewals.push(t.elapsed());
    }
    let r = stats(renewals);
    // Put the record back as the lease wrote it, so that dropping the lease deletes it.
    backend
        .put(Object::Lease, &record.bytes, &Precondition::At(version))
        .expect("restore");
    drop(lease);

    let demo_total = demo.map_or(String::new(), |n| {
        format!(
            "  demo stack: {n} transitions × {:.2} ms = {:.0} ms",
            ms(s.mean),
            ms(s.mean) * n as f64
        )
    });
    println!(
        "{name:<7} transition mean {:>7.2} ms  p50 {:>7.2}  p95 {:>7.2}  max {:>7.2} | renewal mean {:>6.2} ms  p95 {:>6.2}{demo_total}",
        ms(s.mean),
        ms(s.p50),
        ms(s.p95),
        ms(s.max),
        ms(r.mean),
        ms(r.p95),
    );
}

fn main() {
    let (doc, demo, what) = document();
    let size = flyteinfra_state::encode(&doc).len();
    println!(
        "state: {what}: {} resources, {:.1} KB encoded; {TRANSITIONS} transitions per backend",
        doc.resources.len(),
        size as f64 / 1024.0
    );
    run("memory", Arc::new(MemoryBackend::new()), &doc, demo);

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-state");
    let _ = std::fs::remove_dir_all(&dir);
    let local = LocalBackend::for_cloud(&dir, "aws").expect("local backend");
    run("local", Arc::new(local), &doc, demo);
    let _ = std::fs::remove_dir_all(&dir);

    #[cfg(feature = "s3")]
    run("s3", s3::backend(), &doc, demo);
}

#[cfg(feature = "s3")]
mod s3 {
    use std::sync::Arc;

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    use flyteinfra_state::{Backend, S3Backend, S3Location};

    /// A versioned bucket on a fresh moto (the workspace's `.venv`, as the tests use it).
    pub(crate) fn backend() -> Arc<dyn Backend> {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(flyteinfra_aws_proxy::moto::upstream())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "bench", "bench", None, None, "static",
            )))
            .build();
        let admin = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            admin
                .create_bucket()
                .bucket("bench-state")
                .send()
                .await
                .expect("create the bucket");
            admin
                .put_bucket_versioning()
                .bucket("bench-state")
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("enable versioning");
        });
        let location = S3Location {
            bucket: "bench-state".into(),
            key_prefix: "bench".into(),
            region: "us-east-1".into(),
            cloud: "aws".into(),
        };
        Arc::new(S3Backend::with_sdk_config(location, &config).expect("S3 backend"))
    }
}
