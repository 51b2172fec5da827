//! Plan throughput: a random DAG of 10,000 resources (mean out-degree 3) through
//! config load → state load → refresh (simulated cloud) → diff → render, each phase timed,
//! with the peak RSS. Target: under 1 s and 200 MB in total.
//!
//! - config load: the specs serialized to JSON and parsed back with serde (the stand-in
//!   for reading a blueprint);
//! - state load: a state where the first half of the resources exist (`ready`), encoded
//!   and decoded with the real state-file codec;
//! - refresh: `flyteinfra_apply::refresh` against a `SimCloud` holding those 5,000
//!   objects (5% drifted in place, 1% drifted in a force-new field);
//! - diff: `flyteinfra_plans::plan`;
//! - render: `render_text` and `render_json` (streamed into a string, no JSON tree).
//!
//! Run with `cargo bench --bench plan`.

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use flyteinfra_benches::{Rng, ms, peak_rss_mb, rss_mb};
use flyteinfra_core::{Address, Attributes, Expr, Field, Mode, ResourceSpec, Schema, Value};
use flyteinfra_plans::{PlanInput, render_json, render_text};
use flyteinfra_sim::{SimBehavior, SimCloud, SimObject};
use flyteinfra_state::{ResourceState, StateDoc, Status, decode, encode};

const RESOURCES: usize = 10_000;
const EXISTING: usize = RESOURCES / 2;
const MAX_DEPS: usize = 3;
const TYPES: [&str; 4] = ["net", "subnet", "role", "store"];

fn schemas() -> Vec<Schema> {
    TYPES
        .iter()
        .map(|&type_name| {
            let mut fields = vec![
                Field::input("name", "name").required().force_new(),
                Field::input("size", "size"),
                Field::input("tags", "tags"),
                Field::input("links", "ids of what it uses"),
                Field::computed("id", "id"),
                Field::computed("arn", "arn"),
            ];
            if type_name == "role" {
                fields.push(Field::input("secret", "a secret").sensitive());
            }
            Schema {
                type_name,
                doc: "bench type",
                fields,
                holds_data: type_name == "store",
                expected_create: Duration::from_secs(10),
                deletion_protection: None,
            }
        })
        .collect()
}

fn address(i: usize) -> Address {
    Address::new(TYPES[i % TYPES.len()], format!("r{i:05}"))
}

fn id(i: usize) -> String {
    format!("id-{i:05}")
}

fn tags(i: usize) -> Value {
    Value::Map(
        [
            ("env".to_string(), Value::from("prod")),
            ("team".to_string(), Value::Str(format!("team-{}", i % 10))),
        ]
        .into(),
    )
}

/// The desired resources; each refers to the `id` of up to three random earlier ones.
fn specs(rng: &mut Rng) -> (Vec<ResourceSpec>, Vec<Vec<usize>>) {
    let mut all_deps = Vec::with_capacity(RESOURCES);
    let specs = (0..RESOURCES)
        .map(|i| {
            let mut deps = BTreeSet::new();
            for _ in 0..MAX_DEPS.min(i) {
                while !deps.insert(rng.below(i as u64) as usize) {}
            }
            let deps: Vec<usize> = deps.into_iter().collect();
            let links = Expr::List(
                deps.iter()
                    .map(|d| Expr::reference(&address(*d), "id"))
                    .collect(),
            );
            let mut spec = ResourceSpec::managed(address(i))
                .with("name", format!("r{i}"))
                .with("size", (i % 7) as i64)
                .with("tags", tags(i))
                .with("links", links);
            if i % TYPES.len() == 2 {
                spec = spec.with("secret", format!("s3cr3t-{i}"));
            }
            all_deps.push(deps);
            spec
        })
        .collect();
    (specs, all_deps)
}

/// What was last applied to resource `i` (all of its references resolved to ids).
fn applied_inputs(i: usize, deps: &[usize]) -> Attributes {
    let mut a: Attributes = [
        ("name".to_string(), Value::Str(format!("r{i}"))),
        ("size".to_string(), Value::Int((i % 7) as i64)),
        ("tags".to_string(), tags(i)),
        (
            "links".to_string(),
            Value::List(deps.iter().map(|d| Value::Str(id(*d))).collect()),
        ),
    ]
    .into();
    if i % TYPES.len() == 2 {
        a.insert("secret".into(), Value::Str(format!("s3cr3t-{i}")));
    }
    a
}

fn with_computed(i: usize, mut a: Attributes) -> Attributes {
    a.insert("id".into(), Value::Str(id(i)));
    a.insert("arn".into(), Value::Str(format!("arn:bench:{}", id(i))));
    a
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);

    // Setup (not timed): the desired resources, the stored state and the cloud.
    let (desired, deps) = specs(&mut rng);
    let sim = SimCloud::new(SimBehavior::default());
    let registry = sim.registry(schemas());
    let mut state = StateDoc::new("bench", "sim");
    for (i, deps) in deps.iter().enumerate().take(EXISTING) {
        let inputs = applied_inputs(i, deps);
        let attributes = with_computed(i, inputs.clone());
        let mut actual = attributes.clone();
        if i % 20 == 0 {
            actual.insert("size".into(), Value::Int(100)); // drift: update in place
        }
        if i % 100 == 1 {
            actual.insert("name".into(), Value::Str(format!("renamed-{i}"))); // replace
        }
        state.resources.insert(
            address(i),
            ResourceState {
                mode: Mode::Managed,
                id: id(i),
                status: Status::Ready,
                inputs,
                attributes,
                dependencies: deps.iter().map(|d| address(*d)).collect(),
            },
        );
        sim.with_store(|s| {
            s.objects.insert(
                id(i),
                SimObject {
                    type_name: TYPES[i % TYPES.len()].to_string(),
                    address: address(i),
                    token: format!("tok-{i}"),
                    attributes: actual,
                    polls_left: 0,
                },
            )
        });
    }
    let state_bytes = encode(&state);
    drop(state);
    let edges: usize = deps.iter().map(Vec::len).sum();
    drop(deps);
    println!(
        "plan bench: {RESOURCES} resources ({EXISTING} exist), {edges} references \
         (mean out-degree {:.2}), state file {:.1} MB",
        edges as f64 / RESOURCES as f64,
        state_bytes.len() as f64 / 1e6
    );

    let mut mem = vec![("setup", rss_mb(), peak_rss_mb())];
    let start = Instant::now();
    let t = Instant::now();
    let json = serde_json::to_vec(&desired).expect("specs serialize");
    let serialize = t.elapsed();
    let t = Instant::now();
    // From here on only what a real run holds: the parsed config, not the generated one.
    drop(desired);
    let desired: Vec<ResourceSpec> = serde_json::from_slice(&json).expect("specs parse");
    let json_len = json.len();
    drop(json);
    let parse = t.elapsed();
    mem.push(("config load", rss_mb(), peak_rss_mb()));

    let t = Instant::now();
    let state = decode(&state_bytes, Path::new("bench.state")).expect("state decodes");

    drop(state_bytes);
    let state_load = t.elapsed();
    mem.push(("state load", rss_mb(), peak_rss_mb()));

    let t = Instant::now();
    let actual: BTreeMap<Address, Option<Attributes>> = rt
        .block_on(flyteinfra_apply::refresh(&registry, &state, &desired))
        .expect("refresh");
    let refresh = t.elapsed();
    // The simulated cloud keeps its objects in this process; a real cloud keeps them on
    // its side. Empty it so peak RSS measures flyteinfra, not the test double.
    sim.with_store(|s| s.objects.clear());
    mem.push(("refresh", rss_mb(), peak_rss_mb()));

    let t = Instant::now();
    let plan = flyteinfra_plans::plan(PlanInput {
        desired: &desired,
        registry: &registry,
        state: &state,
        actual: &actual,
        targets: &[],
        destroy: false,
        replace: &[],
        refresh_only: false,
        disable_protection: false,
    })
    .expect("a plan");
    let diff = t.elapsed();
    assert_eq!(actual.len(), EXISTING);
    // As in `flyteinfra plan`, where the state snapshot and the refresh result are local
    // to planning: only the plan lives on into rendering.
    drop(actual);
    drop(state);
    mem.push(("diff", rss_mb(), peak_rss_mb()));

    let t = Instant::now();
    let text = render_text(&plan);
    let render_txt = t.elapsed();
    let t = Instant::now();
    // Streamed into the string as `plan --json` streams it to stdout: no JSON tree.
    let rendered_json = serde_json::to_string(&render_json(&plan)).expect("json");
    let render_js = t.elapsed();
    mem.push(("render", rss_mb(), peak_rss_mb()));
    let total = start.elapsed();

    let s = plan.summary();
    assert!(!text.contains("s3cr3t-") && !rendered_json.contains("s3cr3t-"));
    println!(
        "  plan: {} to add, {} to change, {} to destroy ({} changes considered)",
        s.add,
        s.change,
        s.destroy,
        plan.changes.len()
    );
    println!(
        "  config load:   {:8.1} ms  (serialize {:.1} ms + parse {:.1} ms of {:.1} MB JSON)",
        ms(serialize + parse),
        ms(serialize),
        ms(parse),
        json_len as f64 / 1e6
    );
    println!("  state load:    {:8.1} ms", ms(state_load));
    println!(
        "  refresh:       {:8.1} ms  ({} reads from the simulated cloud)",
        ms(refresh),
        sim.calls().get("read").copied().unwrap_or(0)
    );
    println!("  diff:          {:8.1} ms", ms(diff));
    println!(
        "  render:        {:8.1} ms  (text {:.1} ms, {:.1} MB; json {:.1} ms, {:.1} MB, \
         streamed)",
        ms(render_txt + render_js),
        ms(render_txt),
        text.len() as f64 / 1e6,
        ms(render_js),
        rendered_json.len() as f64 / 1e6
    );
    for (phase, rss, hwm) in &mem {
        println!("  memory after {phase:<12} RSS {rss:6.1} MB, peak {hwm:6.1} MB");
    }
    let rss = peak_rss_mb();
    println!(
        "  total:         {:8.1} ms  (target < 1000 ms: {})",
        ms(total),
        if total < Duration::from_secs(1) {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!(
        "  peak RSS (VmHWM): {rss:.1} MB  (target < 200 MB: {})",
        if rss < 200.0 { "ok" } else { "MISSED" }
    );
}
