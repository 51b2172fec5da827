//! The apply walker: runs a callback for every vertex of a [`Graph`] once all of its
//! dependencies are done, in parallel, with bounded API concurrency.
//!
//! # Contract
//! - A vertex is visited only after every dependency inside the walk finished successfully.
//! - When a vertex fails, everything downstream is skipped ("upstream failed") and only the
//!   root cause is reported, once.
//! - At most `parallelism` API calls are in flight: a visitor takes a slot through
//!   [`VisitContext::call`] for each call and gives it back when the call returns. Waiting on
//!   the cloud (polling a long-running operation) happens outside a slot.
//! - Among visitors waiting for a slot, the one with the longest expected remaining chain
//!   (critical path) gets it first.
//! - After an [`Interrupt`], nothing new starts: calls already sent complete, visitors see the
//!   interrupt in their waits, and vertices not started are reported as such.
//!
//! The walker knows neither plans nor state; the visitor is the only code that does.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;

use crate::address::Address;
use crate::graph::Graph;

/// A one-way "stop starting things" flag, shared by the walker and every visitor, with an
/// optional deadline past which the walk must stop at once.
///
/// The deadline is how a command that holds an expiring state lease stops when it cannot
/// prove it still holds it: after it, no call starts, and a call or wait in flight is
/// dropped the next time it is polled, so a process that was stopped (SIGSTOP) past its
/// lease and resumed makes no further API call.
#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<(AtomicBool, Notify)>,
    deadline: Option<Arc<dyn Fn() -> Instant + Send + Sync>>,
}

impl Interrupt {
    /// A flag that is not set, without a deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag that is not set, also triggered once `Instant::now()` passes `deadline()`
    /// (asked again each time: it may move later).
    pub fn with_deadline(deadline: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Interrupt {
            inner: Arc::default(),
            deadline: Some(Arc::new(deadline)),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn trigger(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        self.inner.1.notify_waiters();
    }

    /// Whether the flag is set or the deadline has passed.
    pub fn is_triggered(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst) || self.is_expired()
    }

    /// Whether the deadline has passed: even calls in flight must stop.
    pub fn is_expired(&self) -> bool {
        self.deadline
            .as_ref()
            .is_some_and(|d| Instant::now() >= d())
    }

    /// Resolves once the flag is set or the deadline passes.
    pub async fn triggered(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.is_triggered() {
                return;
            }
            match &self.deadline {
                Some(d) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(d().into()) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// Polls `f` unless `stop` says otherwise, asked before every poll: a future resumed
/// after its owner should have stopped is dropped before it runs another step.
async fn unless<F: Future>(f: F, stop: impl Fn() -> bool) -> Result<F::Output, VisitError> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        if stop() {
            return Poll::Ready(Err(VisitError::Interrupted));
        }
        f.as_mut().poll(cx).map(Ok)
    })
    .await
}

/// A pool of API-call slots handed out by priority (longest remaining chain first).
#[derive(Clone)]
pub struct Slots {
    inner: Arc<Mutex<SlotsInner>>,
}

struct SlotsInner {
    free: usize,
    seq: u64,
    waiters: BinaryHeap<Waiter>,
}

struct Waiter {
    priority: Duration,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        self.priority == o.priority && self.seq == o.seq
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiter {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Highest priority first; among equals, first come first served.
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

/// An acquire in progress; if it is cancelled after being handed a slot, the slot goes back.
struct PendingAcquire {
    rx: Option<oneshot::Receiver<()>>,
    slots: Slots,
}

impl Drop for PendingAcquire {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

/// A held slot; dropping it gives the slot to the next waiter.
pub struct SlotPermit {
    slots: Slots,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl Slots {
    /// A pool of `n` slots (at least one).
    pub fn new(n: usize) -> Self {
        Slots {
            inner: Arc::new(Mutex::new(SlotsInner {
                free: n.max(1),
                seq: 0,
                waiters: BinaryHeap::new(),
            })),
        }
    }

    /// Waits for a slot. Vertices that ask in the same instant are served by priority.
    pub async fn acquire(&self, priority: Duration) -> SlotPermit {
        let rx = {
            let mut inner = self.inner.lock().expect("slots lock");
            let (tx, rx) = oneshot::channel();
            inner.seq += 1;
            let seq = inner.seq;
            inner.waiters.push(Waiter { priority, seq, tx });
            rx
        };
        // Give the other vertices made ready in this instant a chance to queue, so the
        // highest priority among them wins rather than whichever task ran first.
        let mut guard = PendingAcquire {
            rx: Some(rx),
            slots: self.clone(),
        };
        requeue().await;
        self.dispatch();
        let rx = guard.rx.as_mut().expect("receiver present");
        // The sender lives in the queue until it is handed a slot.
        let _ = rx.await;
        guard.rx = None;
        SlotPermit {
            slots: self.clone(),
        }
    }

    /// Hands free slots to the highest-priority waiters.
    fn dispatch(&self) {
        let mut inner = self.inner.lock().expect("slots lock");
        while inner.free > 0 {
            let Some(w) = inner.waiters.pop() else {
                break;
            };
            if w.tx.send(()).is_ok() {
                inner.free -= 1;
            }
            // else: that waiter was cancelled; try the next one.
        }
    }

    fn release(&self) {
        self.inner.lock().expect("slots lock").free += 1;
        self.dispatch();
    }

    /// Slots not held right now (for tests and progress displays).
    pub fn available(&self) -> usize {
        self.inner.lock().expect("slots lock").free
    }
}

/// Goes to the back of the run queue once: every task already queued (the other vertices
/// a completion just made ready) is polled before this one resumes. Not
/// `tokio::task::yield_now`, which on a multi-thread runtime waits until the worker has
/// nothing else to run and has polled its timers: a hop of the critical path paid up to
/// a millisecond for it.
fn requeue() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// What a visitor gets for one vertex.
#[derive(Clone)]
pub struct VisitContext {
    /// The API-call slots.
    pub slots: Slots,
    /// This vertex's expected remaining chain; its claim on slots.
    pub priority: Duration,
    /// The walk's interrupt flag.
    pub interrupt: Interrupt,
}

impl VisitContext {
    /// Runs one API call inside a slot. Returns [`VisitError::Interrupted`] without
    /// calling if the walk was interrupted before the slot was obtained.
    pub async fn call<T, F: Future<Output = T>>(&self, f: F) -> Result<T, VisitError> {
        if self.interrupt.is_triggered() {
            return Err(VisitError::Interrupted);
        }
        let _permit = self.slots.acquire(self.priority).await;
        if self.interrupt.is_triggered() {
            return Err(VisitError::Interrupted);
        }
        // A call in flight finishes after a plain interrupt, but not past the deadline.
        unless(f, || self.interrupt.is_expired()).await
    }

    /// Runs a wait (no slot held) that stops early when the walk is interrupted.
    pub async fn wait<T, F: Future<Output = T>>(&self, f: F) -> Result<T, VisitError> {
        tokio::select! {
            v = unless(f, || self.interrupt.is_triggered()) => v,
            _ = self.interrupt.triggered() => Err(VisitError::Interrupted),
        }
    }
}

/// Why a visit did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VisitError {
    /// The operation failed; the message is shown once, at the end.
    #[error("{0}")]
    Failed(String),
    /// The walk was interrupted before or during this vertex.
    #[error("interrupted")]
    Interrupted,
}

/// Does the work for one vertex.
#[async_trait]
pub trait Visitor: Send + Sync + 'static {
    /// Visits `address`; called once, after all its dependencies succeeded.
    async fn visit(&self, address: Address, ctx: VisitContext) -> Result<(), VisitError>;
}

/// Options of one walk.
#[derive(Clone, Debug)]
pub struct WalkOptions {
    /// At most this many API calls in flight.
    pub parallelism: usize,
    /// Expected remaining chain per vertex (see [`Graph::remaining_critical_path`]);
    /// missing vertices get zero.
    pub priorities: BTreeMap<Address, Duration>,
}

/// How a walk ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalkReport {
    /// Vertices visited successfully, in completion order.
    pub completed: Vec<Address>,
    /// Vertices whose visit failed, with the message, sorted by address.
    pub failed: Vec<(Address, String)>,
    /// Vertices skipped because something they depend on failed.
    pub skipped: Vec<Address>,
    /// Vertices interrupted or never started because of an interrupt.
    pub interrupted: Vec<Address>,
}

impl WalkReport {
    /// Whether every vertex completed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.interrupted.is_empty()
    }
}

/// Walks `selected` vertices of `graph` (vertices outside it count as already done).
///
/// There is no central loop: the task of a vertex, once its visit returns, records the
/// result and starts the dependents it made ready. A completion thus wakes no other task
/// or thread (on a multi-thread runtime the new task usually runs next on the same
/// worker): that hand-off is paid on every hop of the critical path. This future only
/// starts the roots and waits for the last vertex.
pub async fn walk<V: Visitor>(
    graph: &Graph,
    selected: &BTreeSet<Address>,
    visitor: Arc<V>,
    options: WalkOptions,
    interrupt: Interrupt,
) -> WalkReport {
    // Everything below works on indices into `selected` (so ties broken by index are
    // broken by address), prepared in linear time: this runs before the first vertex.
    let addrs: Vec<&Address> = selected.iter().collect();
    let (starts, list, pending) = graph.walk_adjacency(&addrs);
    let priority = merge_priorities(&addrs, &options.priorities);
    let n = addrs.len();
    let (done_tx, done_rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        visitor,
        slots: Slots::new(options.parallelism),
        interrupt,
        priority,
        starts,
        list,
        book: Mutex::new(Book {
            // Each is moved into its visit (vertex tasks outlive any borrow); the report
            // clones from `selected` instead.
            addrs: addrs.iter().map(|a| Some((*a).clone())).collect(),
            pending,
            blocked: vec![false; n],
            upstream_failed: vec![false; n],
            completed: Vec::with_capacity(n),
            failed: Vec::new(),
            skipped: Vec::new(),
            interrupted: Vec::new(),
            running: 0,
            tasks: JoinSet::new(),
            panic: None,
            closed: false,
            done: Some(done_tx),
        }),
    });
    drop(options);
    // Dropping this future (the walk is cancelled) aborts every vertex task.
    let guard = AbortOnDrop(shared.clone());
    {
        let mut book = shared.book.lock().expect("walk lock");
        let ready: Vec<u32> = (0..n as u32)
            .filter(|i| book.pending[*i as usize] == 0)
            .collect();
        shared.start(&mut book, ready, false);
        book.signal_if_done();
    }
    // The sender lives in the book until the last vertex settles or a visitor panics.
    let _ = done_rx.await;
    let (tasks, panic) = {
        let mut book = shared.book.lock().expect("walk lock");
        (std::mem::take(&mut book.tasks), book.panic.take())
    };
    if let Some(payload) = panic {
        drop(guard);
        drop(tasks);
        std::panic::resume_unwind(payload);
    }
    // The last tasks are returning: wait for them, so that no visit outlives the walk.
    let mut tasks = tasks;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    drop(guard);
    let mut book = shared.book.lock().expect("walk lock");
    let addr = |i: &u32| addrs[*i as usize].clone();
    let mut report = WalkReport {
        completed: book.completed.iter().map(addr).collect(),
        failed: std::mem::take(&mut book.failed)
            .into_iter()
            .map(|(i, msg)| (addr(&i), msg))
            .collect(),
        skipped: book.skipped.iter().map(addr).collect(),
        interrupted: book.interrupted.iter().map(addr).collect(),
    };
    report.failed.sort();
    report.skipped.sort();
    report.interrupted.sort();
    report
}

/// The priority of each of `addrs` (sorted), from `priorities` (sorted too): one merge
/// pass instead of a tree lookup per vertex.
fn merge_priorities(addrs: &[&Address], priorities: &BTreeMap<Address, Duration>) -> Vec<Duration> {
    let mut known = priorities.iter().peekable();
    addrs
        .iter()
        .map(|a| {
            while known.next_if(|(k, _)| *k < *a).is_some() {}
            known
                .next_if(|(k, _)| *k == *a)
                .map_or(Duration::ZERO, |(_, p)| *p)
        })
        .collect()
}

/// What every vertex task of one walk shares.
struct Shared<V> {
    visitor: Arc<V>,
    slots: Slots,
    interrupt: Interrupt,
    priority: Vec<Duration>,
    /// The dependents of vertex `i` are `list[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    list: Vec<u32>,
    book: Mutex<Book>,
}

/// The walk's mutable bookkeeping, changed only under its lock.
struct Book {
    addrs: Vec<Option<Address>>,
    /// Dependencies of each vertex not finished yet.
    pending: Vec<u32>,
    /// A dependency did not succeed: the vertex will not run.
    blocked: Vec<bool>,
    /// A dependency failed or was skipped (rather than interrupted).
    upstream_failed: Vec<bool>,
    completed: Vec<u32>,
    failed: Vec<(u32, String)>,
    skipped: Vec<u32>,
    interrupted: Vec<u32>,
    /// Vertex tasks started and not settled yet.
    running: usize,
    tasks: JoinSet<()>,
    /// The first panic of a visitor, re-raised by the walk.
    panic: Option<Box<dyn std::any::Any + Send>>,
    /// After a panic, or once the walk is dropped: start nothing more.
    closed: bool,
    done: Option<oneshot::Sender<()>>,
}

impl Book {
    /// Records that one dependency of `v` finished: succeeded (`ok`), or failed or was
    /// skipped (`failed`), or neither (interrupted). Returns whether `v` has none left.
    fn settle(&mut self, v: usize, ok: bool, failed: bool) -> bool {
        self.blocked[v] |= !ok;
        self.upstream_failed[v] |= failed;
        self.pending[v] -= 1;
        self.pending[v] == 0
    }

    fn signal_if_done(&mut self) {
        if (self.running == 0 || self.panic.is_some())
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}

impl<V: Visitor> Shared<V> {
    fn dependents(&self, i: usize) -> &[u32] {
        &self.list[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Starts `ready` vertices, longest chain first (they also queue for slots by priority).
    /// With `keep`, the first is not spawned but returned, for the calling task to run
    /// next: the hop of a chain then costs no spawn and no trip through the run queue.
    fn start(
        self: &Arc<Self>,
        book: &mut Book,
        mut ready: Vec<u32>,
        keep: bool,
    ) -> Option<(u32, Address)> {
        if book.closed {
            return None;
        }
        // Finished tasks stay in the set until reaped; reaping here keeps it small.
        while book.tasks.try_join_next().is_some() {}
        ready.sort_by(|a, b| {
            let (pa, pb) = (self.priority[*a as usize], self.priority[*b as usize]);
            pb.cmp(&pa).then(a.cmp(b))
        });
        let mut kept = None;
        for i in ready {
            if self.interrupt.is_triggered() {
                book.interrupted.push(i);
                continue;
            }
            let address = book.addrs[i as usize]
                .take()
                .expect("each vertex starts once");
            book.running += 1;
            if keep && kept.is_none() {
                kept = Some((i, address));
            } else {
                book.tasks.spawn(self.clone().visit(i, address));
            }
        }
        kept
    }

    /// One vertex's task: the visit, then its bookkeeping; then, while that made a vertex
    /// ready, the most urgent such vertex.
    async fn visit(self: Arc<Self>, i: u32, address: Address) {
        let mut next = Some((i, address));
        while let Some((i, address)) = next.take() {
            let result = self.visit_one(i, address).await;
            let mut book = self.book.lock().expect("walk lock");
            book.running -= 1;
            match result {
                Ok(result) => next = self.finish(&mut book, i as usize, result),
                Err(payload) => {
                    book.panic.get_or_insert(payload);
                    book.closed = true;
                }
            }
            book.signal_if_done();
        }
    }

    /// Visits vertex `i`, catching a panic so the walk can re-raise it (a spawned task's
    /// panic would otherwise only be seen by whoever joins it).
    async fn visit_one(
        &self,
        i: u32,
        address: Address,
    ) -> Result<Result<(), VisitError>, Box<dyn std::any::Any + Send>> {
        let ctx = VisitContext {
            slots: self.slots.clone(),
            priority: self.priority[i as usize],
            interrupt: self.interrupt.clone(),
        };
        match catch_unwind(AssertUnwindSafe(|| self.visitor.visit(address, ctx))) {
            Ok(mut visit) => {
                std::future::poll_fn(|cx| {
                    match catch_unwind(AssertUnwindSafe(|| visit.as_mut().poll(cx))) {
                        Ok(Poll::Pending) => Poll::Pending,
                        Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
                        Err(payload) => Poll::Ready(Err(payload)),
                    }
                })
                .await
            }
            Err(payload) => Err(payload),
        }
    }

    /// Records the result of vertex `i` and starts what it made ready, except the most
    /// urgent of those, which is returned for the calling task to run.
    fn finish(
        self: &Arc<Self>,
        book: &mut Book,
        i: usize,
        result: Result<(), VisitError>,
    ) -> Option<(u32, Address)> {
        let (ok, failed) = match result {
            Ok(()) => {
                book.completed.push(i as u32);
                (true, false)
            }
            Err(VisitError::Failed(msg)) => {
                book.failed.push((i as u32, msg));
                (false, true)
            }
            Err(VisitError::Interrupted) => {
                book.interrupted.push(i as u32);
                (false, false)
            }
        };
        let mut ready = Vec::new();
        let mut skip = Vec::new();
        for &d in self.dependents(i) {
            if book.settle(d as usize, ok, failed) {
                if book.blocked[d as usize] {
                    skip.push(d);
                } else {
                    ready.push(d);
                }
            }
        }
        // Everything downstream of a vertex that did not succeed is skipped (or, after an
        // interrupt with no failure upstream, reported as interrupted).
        while let Some(s) = skip.pop() {
            let skipped = !self.interrupt.is_triggered() || book.upstream_failed[s as usize];
            if skipped {
                book.skipped.push(s);
            } else {
                book.interrupted.push(s);
            }
            for &d in self.dependents(s as usize) {
                if book.settle(d as usize, false, skipped) {
                    skip.push(d);
                }
            }
        }
        if ready.is_empty() {
            return None;
        }
        self.start(book, ready, true)
    }
}

/// Aborts every vertex task still running when the walk is dropped.
struct AbortOnDrop<V>(Arc<Shared<V>>);

impl<V> Drop for AbortOnDrop<V> {
    fn drop(&mut self) {
        // Taken out first: aborting drops futures, which must not run under the lock.
        let mut book = match self.0.book.lock() {
            Ok(book) => book,
            Err(poisoned) => poisoned.into_inner(),
        };
        book.closed = true;
        let tasks = std::mem::take(&mut book.tasks);
        drop(book);
        drop(tasks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }

    /// Records call order and completion times; `waits` vertices wait (without a slot)
    /// after their call, `fails` vertices fail.
    struct Recorder {
        order: Mutex<Vec<(Address, Duration)>>,
        started: Instant,
        waits: BTreeMap<Address, Duration>,
        fails: BTreeSet<Address>,
        call_time: Duration,
    }

    impl Recorder {
        fn new(waits: &[(&str, u64)], fails: &[&str]) -> Self {
            Recorder {
                order: Mutex::new(Vec::new()),
                started: Instant::now(),
                waits: waits
                    .iter()
                    .map(|(x, s)| (a(x), Duration::from_secs(*s)))
                    .collect(),
                fails: fails.iter().map(|x| a(x)).collect(),
                call_time: Duration::from_secs(1),
            }
        }
        fn order(&self) -> Vec<Address> {
            self.order
                .lock()
                .unwrap()
                .iter()
                .map(|(x, _)| x.clone())
                .collect()
        }
        fn finished_at(&self, x: &str) -> Duration {
            self.order
                .lock()
                .unwrap()
                .iter()
                .find(|(y, _)| *y == a(x))
                .unwrap()
                .1
        }
    }

    #[async_trait]
    impl Visitor for Recorder {
        async fn visit(&self, address: Address, ctx: VisitContext) -> Result<(), VisitError> {
            let call_time = self.call_time;
            // An async block, so the sleep starts when the slot is obtained.
            ctx.call(async { tokio::time::sleep(call_time).await })
                .await?;
            if self.fails.contains(&address) {
                return Err(VisitError::Failed(format!("{address} broke")));
            }
            if let Some(w) = self.waits.get(&address) {
                ctx.wait(tokio::time::sleep(*w)).await?;
            }
            self.order
                .lock()
                .unwrap()
                .push((address, self.started.elapsed()));
            Ok(())
        }
    }

    fn graph() -> Graph {
        Graph::build([
            (a("t.vpc"), vec![]),
            (a("t.subnet"), vec![a("t.vpc")]),
            (a("t.eks"), vec![a("t.subnet")]),
            (a("t.nodes"), vec![a("t.eks")]),
            (a("t.bucket1"), vec![]),
            (a("t.bucket2"), vec![]),
            (a("t.bucket3"), vec![]),
        ])
        .unwrap()
    }

    fn all(g: &Graph) -> BTreeSet<Address> {
        g.addresses().into_iter().collect()
    }

    fn opts(parallelism: usize, g: &Graph, long: &[(&str, u64)]) -> WalkOptions {
        let long: BTreeMap<Address, u64> = long.iter().map(|(x, s)| (a(x), *s)).collect();
        WalkOptions {
            parallelism,
            priorities: g.remaining_critical_path(|x| {
                Duration::from_secs(long.get(x).copied().unwrap_or(1))
            }),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dependencies_finish_before_dependents() {
        let g = graph();
        let rec = Arc::new(Recorder::new(&[], &[]));
        let report = walk(
            &g,
            &all(&g),
            rec.clone(),
            opts(10, &g, &[]),
            Interrupt::new(),
        )
        .await;
        assert!(report.is_success(), "{report:?}");
        let order = rec.order();
        let pos = |x: &str| order.iter().position(|y| *y == a(x)).unwrap();
        assert!(pos("t.vpc") < pos("t.subnet"));
        assert!(pos("t.subnet") < pos("t.eks"));
        assert!(pos("t.eks") < pos("t.nodes"));
        assert_eq!(order.len(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_does_not_hold_a_slot() {
        // One slot. EKS "takes" 15 minutes of waiting; the buckets must not queue behind it.
        let g = Graph::build([
            (a("t.eks"), vec![]),
            (a("t.bucket1"), vec![]),
            (a("t.bucket2"), vec![]),
        ])
        .unwrap();
        let rec = Arc::new(Recorder::new(&[("t.eks", 900)], &[]));
        let report = walk(
            &g,
            &all(&g),
            rec.clone(),
            opts(1, &g, &[("t.eks", 900)]),
            Interrupt::new(),
        )
        .await;
        assert!(report.is_success());
        // EKS's call (1 s) goes first (longest chain), then each bucket's 1 s call.
        assert_eq!(rec.finished_at("t.bucket1"), Duration::from_secs(2));
        assert_eq!(rec.finished_at("t.bucket2"), Duration::from_secs(3));
        assert_eq!(rec.finished_at("t.eks"), Duration::from_secs(901));
    }

    #[tokio::test(start_paused = true)]
    async fn longest_chain_starts_first() {
        let g = graph();
        let rec = Arc::new(Recorder::new(&[], &[]));
        // With one slot, the vpc chain (vpc -> subnet -> eks(900) -> nodes) outranks buckets.
        walk(
            &g,
            &all(&g),
            rec.clone(),
            opts(1, &g, &[("t.eks", 900)]),
            Interrupt::new(),
        )
        .await;
        assert_eq!(rec.order()[0], a("t.vpc"));
        // The vpc's slot goes to a queued bucket before subnet is ready; once subnet
        // queues, it jumps ahead of the two buckets still waiting.
        assert_eq!(rec.order()[1], a("t.bucket1"));
        assert_eq!(rec.order()[2], a("t.subnet"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_stops_only_its_dependents() {
        let g = graph();
        let rec = Arc::new(Recorder::new(&[], &["t.subnet"]));
        let report = walk(
            &g,
            &all(&g),
            rec.clone(),
            opts(10, &g, &[]),
            Interrupt::new(),
        )
        .await;
        assert_eq!(
            report.failed,
            vec![(a("t.subnet"), "t.subnet broke".to_string())]
        );
        assert_eq!(report.skipped, vec![a("t.eks"), a("t.nodes")]);
        let done: BTreeSet<_> = report.completed.into_iter().collect();
        assert_eq!(
            done,
            [a("t.bucket1"), a("t.bucket2"), a("t.bucket3"), a("t.vpc")]
                .into_iter()
                .collect()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn interrupt_starts_nothing_new_and_stops_waits() {
        let g = graph();
        let rec = Arc::new(Recorder::new(&[("t.eks", 900)], &[]));
        let interrupt = Interrupt::new();
        let i2 = interrupt.clone();
        tokio::spawn(async move {
            // After vpc, subnet and eks's call (3 s), during eks's wait.
            tokio::time::sleep(Duration::from_millis(3500)).await;
            i2.trigger();
        });
        let report = walk(
            &g,
            &all(&g),
            rec.clone(),
            opts(1, &g, &[("t.eks", 900)]),
            interrupt,
        )
        .await;
        // eks was waiting: interrupted. nodes never started. The buckets queued behind the
        // chain were not started either.
        assert!(report.interrupted.contains(&a("t.eks")));
        assert!(report.interrupted.contains(&a("t.nodes")));
        assert!(report.completed.contains(&a("t.vpc")));
        assert!(!report.is_success());
        let total = report.completed.len() + report.interrupted.len() + report.skipped.len();
        assert_eq!(total, 7, "{report:?}");
    }

    struct Panics;

    #[async_trait]
    impl Visitor for Panics {
        async fn visit(&self, address: Address, _ctx: VisitContext) -> Result<(), VisitError> {
            if address == a("t.subnet") {
                panic!("visitor bug at {address}");
            }
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[should_panic(expected = "visitor bug at t.subnet")]
    async fn a_visitor_panic_reaches_the_caller() {
        let g = graph();
        walk(
            &g,
            &all(&g),
            Arc::new(Panics),
            opts(10, &g, &[]),
            Interrupt::new(),
        )
        .await;
    }

    #[tokio::test]
    async fn slots_go_to_the_highest_priority_waiter() {
        let slots = Slots::new(1);
        let held = slots.acquire(Duration::ZERO).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for p in [1u64, 5, 3] {
            let (s, o) = (slots.clone(), order.clone());
            handles.push(tokio::spawn(async move {
                let _p = s.acquire(Duration::from_secs(p)).await;
                o.lock().unwrap().push(p);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![5, 3, 1]);
        assert_eq!(slots.available(), 1);
    }

    /// A process stopped inside a call past its lease's deadline takes no further step
    /// once resumed, and a wait ends at the deadline.
    #[tokio::test]
    async fn past_the_deadline_nothing_takes_another_step() {
        use std::sync::atomic::AtomicUsize;
        let deadline = std::time::Instant::now() + Duration::from_millis(100);
        let ctx = VisitContext {
            slots: Slots::new(1),
            priority: Duration::ZERO,
            interrupt: Interrupt::with_deadline(move || deadline),
        };
        let steps = AtomicUsize::new(0);
        let r = ctx
            .call(async {
                steps.fetch_add(1, Ordering::SeqCst);
                // Blocks the thread, as SIGSTOP would, past the deadline.
                std::thread::sleep(Duration::from_millis(150));
                tokio::task::yield_now().await;
                steps.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        assert!(matches!(r, Err(VisitError::Interrupted)), "{r:?}");
        assert_eq!(steps.load(Ordering::SeqCst), 1);
        assert!(ctx.interrupt.is_triggered() && ctx.interrupt.is_expired());
        assert!(matches!(
            ctx.call(async {}).await,
            Err(VisitError::Interrupted)
        ));

        // Before its deadline, a wait runs; it ends when the deadline passes.
        let later = std::time::Instant::now() + Duration::from_millis(200);
        let ctx = VisitContext {
            interrupt: Interrupt::with_deadline(move || later),
            ..ctx
        };
        assert!(ctx.wait(async { 7 }).await.is_ok());
        let started = std::time::Instant::now();
        let r = ctx.wait(tokio::time::sleep(Duration::from_secs(30))).await;
        assert!(matches!(r, Err(VisitError::Interrupted)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
