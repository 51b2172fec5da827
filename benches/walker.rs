//! Walker overhead: a 10,000-vertex random DAG walked by `flyteinfra_core::walk::walk`
//! with parallelism 10 on a multi-thread runtime, in real time. Each vertex makes one
//! API call through its slot and then waits (outside any slot) for 0–5 ms.
//!
//! The wall time is compared with the critical path (the longest dependency chain by
//! durations), the lower bound no scheduler can beat. Two critical paths are reported:
//! - *nominal*: the durations asked for;
//! - *measured*: the time each vertex's wait and call actually took (tokio's timer has
//!   1 ms granularity and rounds deadlines up, so a 3 ms sleep takes 3–4 ms). The overhead
//!   against it is the walker's own: spawning, dependency bookkeeping, slot hand-off.
//!
//! When calls take time, the slots are a second lower bound: the sum of call times divided
//! by the parallelism. The overhead is reported against the larger of the two bounds.
//!
//! Run with `cargo bench --bench walker`.

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flyteinfra_benches::{Rng, ms, peak_rss_mb};
use flyteinfra_core::walk::{Interrupt, VisitContext, VisitError, Visitor, WalkOptions, walk};
use flyteinfra_core::{Address, Graph};

const NODES: usize = 10_000;
const MAX_DEPS: usize = 3;
const PARALLELISM: usize = 10;
const MAX_WAIT_MS: u64 = 5;
const RUNS: usize = 3;

struct Node {
    deps: Vec<usize>,
    wait: Duration,
    call: Duration,
}

/// Each vertex depends on up to three distinct random earlier vertices (out-degree ≈ 3).
fn random_dag(rng: &mut Rng, max_wait_ms: u64, max_call_ms: u64) -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            let mut deps = BTreeSet::new();
            for _ in 0..MAX_DEPS.min(i) {
                // Retry collisions so the out-degree stays at 3 (min(i, 3)).
                loop {
                    let d = rng.below(i as u64) as usize;
                    if deps.insert(d) {
                        break;
                    }
                }
            }
            Node {
                deps: deps.into_iter().collect(),
                wait: Duration::from_millis(rng.below(max_wait_ms + 1)),
                call: Duration::from_millis(rng.below(max_call_ms + 1)),
            }
        })
        .collect()
}

/// The longest chain by `dur`; vertices are numbered in topological order.
fn critical_path(nodes: &[Node], dur: impl Fn(usize) -> Duration) -> Duration {
    let mut finish = vec![Duration::ZERO; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let start = n.deps.iter().map(|d| finish[*d]).max().unwrap_or_default();
        finish[i] = start + dur(i);
    }
    finish.into_iter().max().unwrap_or_default()
}

fn address(i: usize) -> Address {
    Address::new("node", format!("n{i:05}"))
}

struct Bench {
    index: HashMap<Address, usize>,
    nodes: Vec<Node>,
    /// Nanoseconds each vertex actually spent waiting.
    waited: Vec<AtomicU64>,
    /// Nanoseconds each vertex actually spent in its call (slot held).
    called: Vec<AtomicU64>,
}

impl Bench {
    async fn run(&self, address: Address, ctx: VisitContext) -> Result<(), VisitError> {
        let i = self.index[&address];
        let node = &self.nodes[i];
        let call = node.call;
        // The call's time is measured from when the slot is held.
        let called = ctx
            .call(async move {
                let t = Instant::now();
                if !call.is_zero() {
                    tokio::time::sleep(call).await;
                }
                t.elapsed()
            })
            .await?;
        let t = Instant::now();
        if !node.wait.is_zero() {
            ctx.wait(tokio::time::sleep(node.wait)).await?;
        }
        let waited = t.elapsed();
        self.called[i].store(called.as_nanos() as u64, Ordering::Relaxed);
        self.waited[i].store(waited.as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }
}

// `Visitor` is an `#[async_trait]` trait; this is the signature the macro produces (the
// root package does not depend on `async-trait` itself).
impl Visitor for Bench {
    fn visit<'life0, 'async_trait>(
        &'life0 self,
        address: Address,
        ctx: VisitContext,
    ) -> Pin<Box<dyn Future<Output = Result<(), VisitError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.run(address, ctx))
    }
}

fn pct(wall: Duration, cp: Duration) -> f64 {
    (wall.as_secs_f64() - cp.as_secs_f64()) / cp.as_secs_f64() * 100.0
}

/// One timed walk of every vertex; every vertex must complete.
fn walk_once(
    rt: &tokio::runtime::Runtime,
    graph: &Graph,
    selected: &BTreeSet<Address>,
    bench: &Arc<Bench>,
    priorities: &BTreeMap<Address, Duration>,
) -> Duration {
    let options = WalkOptions {
        parallelism: PARALLELISM,
        priorities: priorities.clone(),
    };
    let t = Instant::now();
    let report = rt.block_on(walk(
        graph,
        selected,
        bench.clone(),
        options,
        Interrupt::new(),
    ));
    let wall = t.elapsed();
    assert!(report.is_success() && report.completed.len() == NODES);
    wall
}

fn scenario(rt: &tokio::runtime::Runtime, name: &str, max_wait_ms: u64, max_call_ms: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let nodes = random_dag(&mut rng, max_wait_ms, max_call_ms);
    let edges: usize = nodes.iter().map(|n| n.deps.len()).sum();
    let nominal = critical_path(&nodes, |i| nodes[i].wait + nodes[i].call);
    let total_call: Duration = nodes.iter().map(|n| n.call).sum();
    let slot_bound = total_call / PARALLELISM as u32;

    let t = Instant::now();
    let graph = Graph::build(
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (address(i), n.deps.iter().map(|d| address(*d)).collect())),
    )
    .expect("a DAG");
    let selected: BTreeSet<Address> = graph.addresses().into_iter().collect();
    let priorities = graph.remaining_critical_path(|a| {
        let n = &nodes[a.name()[1..].parse::<usize>().expect("n<index>")];
        n.wait + n.call
    });
    let setup = t.elapsed();

    println!(
        "{name}: {NODES} vertices, {edges} edges (mean out-degree {:.2}), waits 0-{max_wait_ms} ms, \
         calls 0-{max_call_ms} ms, parallelism {PARALLELISM}",
        edges as f64 / NODES as f64
    );
    println!(
        "  graph build + priorities: {:.1} ms; nominal critical path {:.1} ms; \
         nominal slot bound (sum of calls / parallelism) {:.1} ms",
        ms(setup),
        ms(nominal),
        ms(slot_bound)
    );

    let index: HashMap<Address, usize> = (0..NODES).map(|i| (address(i), i)).collect();
    let bench = Arc::new(Bench {
        index,
        nodes,
        waited: (0..NODES).map(|_| AtomicU64::new(0)).collect(),
        called: (0..NODES).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut overheads = Vec::new();
    for run in 1..=RUNS {
        let wall = walk_once(rt, &graph, &selected, &bench, &priorities);
        let nanos = |v: &[AtomicU64], i: usize| Duration::from_nanos(v[i].load(Ordering::Relaxed));
        let measured = critical_path(&bench.nodes, |i| {
            nanos(&bench.waited, i) + nanos(&bench.called, i)
        });
        let measured_slots = (0..NODES)
            .map(|i| nanos(&bench.called, i))
            .sum::<Duration>()
            / PARALLELISM as u32;
        let bound = measured.max(measured_slots);
        overheads.push(pct(wall, bound));
        println!(
            "  run {run}: wall {:.1} ms | measured: critical path {:.1} ms, slot bound {:.1} ms \
             -> overhead {:+.1}% | vs nominal critical path {:+.1}%",
            ms(wall),
            ms(measured),
            ms(measured_slots),
            pct(wall, bound),
            pct(wall, nominal)
        );
    }
    overheads.sort_by(f64::total_cmp);
    println!(
        "  median overhead vs max(measured critical path, measured slot bound): {:+.1}%",
        overheads[overheads.len() / 2]
    );
}

fn zero_cost(rt: &tokio::runtime::Runtime) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let nodes = random_dag(&mut rng, 0, 0);
    let graph = Graph::build(
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (address(i), n.deps.iter().map(|d| address(*d)).collect())),
    )
    .expect("a DAG");
    let selected: BTreeSet<Address> = graph.addresses().into_iter().collect();
    let priorities = graph.remaining_critical_path(|_| Duration::from_secs(1));
    let bench = Arc::new(Bench {
        index: (0..NODES).map(|i| (address(i), i)).collect(),
        nodes,
        waited: (0..NODES).map(|_| AtomicU64::new(0)).collect(),
        called: (0..NODES).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut walls = Vec::new();
    for _ in 0..RUNS {
        walls.push(walk_once(rt, &graph, &selected, &bench, &priorities));
    }
    walls.sort();
    let median = walls[walls.len() / 2];
    println!(
        "C (no waits, 0 ms calls): pure walker cost {:.1} ms for {NODES} vertices = {:.1} us per vertex",
        ms(median),
        median.as_secs_f64() * 1e6 / NODES as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "walker bench ({} worker threads)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Calls of 0 ms: every vertex still takes and gives back a slot (through the priority
    // queue), but slots cannot become the bottleneck. With 0-1 ms calls, 10,000 calls of
    // ~0.5 ms (really ~1 ms: tokio's timer rounds up to the next millisecond) through 10
    // slots need 0.5-1 s, several times the ~0.1-0.2 s critical path, so that scenario
    // measures slot throughput rather than walker overhead; it is run second, for
    // reference, and compared with the slot bound as well.
    scenario(&rt, "A (calls 0 ms)", MAX_WAIT_MS, 0);
    scenario(&rt, "B (calls 0-1 ms)", MAX_WAIT_MS, 1);
    // Ten times longer waits: the same fixed per-hop cost against a longer critical path,
    // which separates the walker's overhead from timer rounding on tiny sleeps.
    scenario(&rt, "D (calls 0 ms, waits 0-50 ms)", MAX_WAIT_MS * 10, 0);
    // The walker's fixed cost per vertex (spawn, slot hand-off, bookkeeping), which is what
    // A's overhead is made of.
    zero_cost(&rt);
    println!("peak RSS (VmHWM): {:.1} MB", peak_rss_mb());
}
