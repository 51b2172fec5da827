//! Engine tests: refresh → plan → apply against the simulated cloud, with state persisted
//! through a `StateManager` over a `MemoryBackend` after every transition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::retry::RetryPolicy;
use flyteinfra_core::walk::Interrupt;
use flyteinfra_core::{
    Address, Attributes, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ErrorKind,
    Event, EventKind, Expr, Field, FindRequest, FindResponse, Observer, Progress, ProviderError,
    ReadRequest, ReadResponse, Registry, ResourceSpec, ResourceType, Schema, UpdateRequest,
    UpdateResponse, Value, WaitRequest,
};
use flyteinfra_plans::{Action, Plan, PlanInput, Reason, render_text};
use flyteinfra_sim::{SimBehavior, SimCloud};
use flyteinfra_state::{Intent, MemoryBackend, Operation, StateDoc, StateManager, Status};

use crate::{
    ApplyOptions, ApplyReport, Journal, PersistFn, Reconciled, apply, reconcile_intents, refresh,
};

const PASSWORD: &str = "hunter2-PLANTED-secret";

fn a(s: &str) -> Address {
    s.parse().unwrap()
}

fn schema(
    type_name: &'static str,
    fields: Vec<Field>,
    holds_data: bool,
    expected_create: u64,
    deletion_protection: Option<&'static str>,
) -> Schema {
    Schema {
        type_name,
        doc: "test type",
        fields,
        holds_data,
        expected_create: Duration::from_secs(expected_create),
        deletion_protection,
    }
}

/// `vpc`, `subnet` (refers to `vpc.id`) and a slow `db` (refers to `subnet.id`; holds
/// data, deletion protection, a sensitive password).
fn schemas() -> Vec<Schema> {
    vec![
        schema(
            "vpc",
            vec![
                Field::input("cidr_block", "CIDR").required().force_new(),
                Field::computed("id", "id"),
            ],
            false,
            5,
            None,
        ),
        schema(
            "subnet",
            vec![
                Field::input("vpc_id", "VPC").required().force_new(),
                Field::input("cidr_block", "CIDR").required(),
                Field::computed("id", "id"),
            ],
            false,
            5,
            None,
        ),
        schema(
            "db",
            vec![
                Field::input("subnet_id", "subnet").required().force_new(),
                Field::input("password", "password").required().sensitive(),
                Field::input("deletion_protection", "protection"),
                Field::computed("id", "id"),
                Field::computed("endpoint", "endpoint"),
            ],
            true,
            600,
            Some("deletion_protection"),
        ),
    ]
}

/// vpc.main ← subnet.a ← db.main, vpc.main ← subnet.b, and an independent vpc.other.
fn desired(protect: bool) -> Vec<ResourceSpec> {
    let vpc = a("vpc.main");
    vec![
        ResourceSpec::managed(vpc.clone()).with("cidr_block", "10.0.0.0/16"),
        ResourceSpec::managed(a("vpc.other")).with("cidr_block", "10.1.0.0/16"),
        ResourceSpec::managed(a("subnet.a"))
            .with("vpc_id", Expr::reference(&vpc, "id"))
            .with("cidr_block", "10.0.1.0/24"),
        ResourceSpec::managed(a("subnet.b"))
            .with("vpc_id", Expr::reference(&vpc, "id"))
            .with("cidr_block", "10.0.2.0/24"),
        ResourceSpec::managed(a("db.main"))
            .with("subnet_id", Expr::reference(&a("subnet.a"), "id"))
            .with("password", PASSWORD)
            .with("deletion_protection", protect),
    ]
}

/// The db takes 3 polls, 30 s apart.
fn slow_db() -> SimBehavior {
    SimBehavior {
        create_polls: [("db".to_string(), 3)].into(),
        poll_interval: Duration::from_secs(30),
        ..SimBehavior::default()
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Observer for Events {
    fn on_event(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events {
    fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    fn finished(&self) -> Vec<Address> {
        self.all()
            .into_iter()
            .filter(|e| e.kind == EventKind::Finished)
            .map(|e| e.address)
            .collect()
    }
    fn count(&self, f: impl Fn(&EventKind) -> bool) -> usize {
        self.all().iter().filter(|e| f(&e.kind)).count()
    }
}

/// One simulated cloud, one state backend, one journal (one "run").
struct Env {
    sim: SimCloud,
    registry: Registry,
    backend: MemoryBackend,
    journal: Journal,
    /// The serial after every successful persist, in order.
    serials: Arc<Mutex<Vec<u64>>>,
    /// Journal transitions (calls of the persist function).
    transitions: Arc<AtomicUsize>,
    events: Arc<Events>,
    /// `ApplyOptions::create_settle` for this run.
    settle: Mutex<Duration>,
}

impl Env {
    fn new(behavior: SimBehavior) -> Env {
        Env::open(SimCloud::new(behavior), MemoryBackend::new(), None)
    }

    /// A run over `sim` and `backend`; with `fail_after`, puts fail once the backend holds
    /// that many writes.
    fn open(sim: SimCloud, backend: MemoryBackend, fail_after: Option<usize>) -> Env {
        let registry = sim.registry(schemas());
        let mut manager = StateManager::new(backend.clone());
        let doc = manager.load("test", "sim").unwrap();
        let serials = Arc::new(Mutex::new(Vec::new()));
        let transitions = Arc::new(AtomicUsize::new(0));
        let (b, s, t) = (backend.clone(), serials.clone(), transitions.clone());
        let persist: PersistFn = Box::new(move |d: &mut StateDoc| {
            t.fetch_add(1, Ordering::SeqCst);
            if fail_after.is_some_and(|n| b.writes() >= n) {
                b.fail_puts(true);
            }
            manager.persist(d)?;
            s.lock().unwrap().push(d.serial);
            Ok(())
        });
        Env {
            sim,
            registry,
            backend,
            journal: Journal::new(doc, persist),
            serials,
            transitions,
            events: Arc::new(Events::default()),
            settle: Mutex::new(Duration::ZERO),
        }
    }

    /// The next run: same cloud, same backend, state loaded afresh.
    fn reopen(&self) -> Env {
        Env::open(self.sim.clone(), self.backend.clone(), None)
    }

    async fn plan_with(&self, desired: &[ResourceSpec], destroy: bool) -> Plan {
        let state = self.journal.snapshot();
        let actual = refresh(&self.registry, &state, desired).await.unwrap();
        flyteinfra_plans::plan(PlanInput {
            desired,
            registry: &self.registry,
            state: &state,
            actual: &actual,
            targets: &[],
            destroy,
            replace: &[],
            refresh_only: false,
            disable_protection: false,
        })
        .unwrap()
    }

    async fn plan(&self, desired: &[ResourceSpec]) -> Plan {
        self.plan_with(desired, false).await
    }

    async fn apply_with(
        &self,
        plan: &Plan,
        desired: &[ResourceSpec],
        interrupt: Interrupt,
    ) -> ApplyReport {
        let options = ApplyOptions {
            parallelism: 4,
            retry: RetryPolicy::default(),
            observer: self.events.clone(),
            create_settle: *self.settle.lock().unwrap(),
        };
        apply(
            &self.registry,
            &self.journal,
            plan,
            desired,
            &options,
            interrupt,
        )
        .await
    }

    async fn apply(&self, plan: &Plan, desired: &[ResourceSpec]) -> ApplyReport {
        self.apply_with(plan, desired, Interrupt::new()).await
    }

    /// Plan and apply `desired`, asserting success.
    async fn converge(&self, desired: &[ResourceSpec]) {
        let plan = self.plan(desired).await;
        let report = self.apply(&plan, desired).await;
        assert!(report.is_success(), "{report:?}");
    }

    fn state(&self) -> StateDoc {
        self.journal.snapshot()
    }

    /// The state as stored in the backend (what the next run would load).
    fn stored(&self) -> StateDoc {
        StateManager::new(self.backend.clone())
            .load("test", "sim")
            .unwrap()
    }

    fn calls(&self, op: &str) -> u64 {
        self.sim.calls().get(op).copied().unwrap_or(0)
    }

    fn objects_of(&self, address: &str) -> usize {
        let address = a(address);
        self.sim
            .objects()
            .values()
            .filter(|o| o.address == address)
            .count()
    }
}

fn wanted(desired: &[ResourceSpec]) -> BTreeSet<Address> {
    desired.iter().map(|s| s.address.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<Address> {
    items.iter().map(|s| a(s)).collect()
}

fn actions(plan: &Plan) -> BTreeMap<Address, Action> {
    plan.changes
        .iter()
        .map(|c| (c.address.clone(), c.action))
        .collect()
}

const ALL: [&str; 5] = ["vpc.main", "vpc.other", "subnet.a", "subnet.b", "db.main"];

#[tokio::test(start_paused = true)]
async fn full_apply_creates_everything_once_and_replan_is_no_op() {
    let env = Env::new(slow_db());
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    assert!(plan.changes.iter().all(|c| c.action == Action::Create));
    assert!(!render_text(&plan).contains(PASSWORD));

    let report = env.apply(&plan, &desired).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(
        report.completed.iter().cloned().collect::<BTreeSet<_>>(),
        set(&ALL)
    );
    assert_eq!(report.completed.len(), 5);

    let objects = env.sim.objects();
    assert_eq!(objects.len(), 5);
    assert_eq!(env.calls("create"), 5);
    let state = env.state();
    assert!(state.intents.is_empty());
    assert_eq!(
        state.resources.keys().cloned().collect::<BTreeSet<_>>(),
        set(&ALL)
    );
    for (addr, rs) in &state.resources {
        assert_eq!(rs.status, Status::Ready, "{addr}");
        let obj = &objects[&rs.id];
        assert_eq!(&obj.address, addr);
        assert_eq!(rs.attributes, obj.attributes, "{addr}");
    }
    // References were resolved to the ids of what they refer to.
    let id = |x: &str| Value::Str(state.resources[&a(x)].id.clone());
    assert_eq!(
        state.resources[&a("subnet.a")].inputs["vpc_id"],
        id("vpc.main")
    );
    assert_eq!(
        state.resources[&a("db.main")].inputs["subnet_id"],
        id("subnet.a")
    );
    assert_eq!(
        state.resources[&a("db.main")].attributes["password"],
        Value::from(PASSWORD)
    );

    let again = env.plan(&desired).await;
    assert!(!again.has_changes(), "{again:?}");
    assert!(again.changes.iter().all(|c| c.action == Action::NoOp));
    assert_eq!(again.changes.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_reported_once_and_skips_only_its_dependents() {
    let msg = "InvalidSubnet.Range: The CIDR '10.0.1.0/24' is invalid.";
    let env = Env::new(SimBehavior {
        fail_create: [(a("subnet.a"), msg.to_string())].into(),
        ..slow_db()
    });
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    let report = env.apply(&plan, &desired).await;

    assert_eq!(report.failed, vec![(a("subnet.a"), msg.to_string())]);
    assert_eq!(report.skipped, vec![a("db.main")]);
    assert!(report.interrupted.is_empty());
    assert_eq!(
        report.completed.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["vpc.main", "vpc.other", "subnet.b"])
    );
    assert_eq!(
        env.events
            .count(|k| matches!(k, EventKind::Failed(m) if m == msg)),
        1
    );
    assert_eq!(env.events.count(|k| matches!(k, EventKind::Failed(_))), 1);

    // One failed create call, no object, nothing in state for it or the db. Its intent
    // stays (a failed create may still have made the object), token and all.
    assert_eq!(env.calls("create"), 4);
    assert_eq!(env.sim.objects().len(), 3);
    let state = env.state();
    let intent = state.intents[&a("subnet.a")].clone();
    assert_eq!(state.intents.len(), 1);
    assert_eq!(
        state.resources.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["vpc.main", "vpc.other", "subnet.b"])
    );
    assert_eq!(env.stored(), state);

    // Once the cause is gone, the next run sends the same create (same token) and
    // finishes with one object per resource and no intent left.
    env.sim.set_behavior(|b| b.fail_create.clear());
    let next = env.reopen();
    reconcile_intents(&next.registry, &next.journal, &wanted(&desired))
        .await
        .unwrap();
    next.converge(&desired).await;
    assert!(next.stored().intents.is_empty());
    let subnet = &next.sim.objects()[&next.state().resources[&a("subnet.a")].id];
    assert_eq!(subnet.token, intent.token);
    assert_eq!(next.sim.objects().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_create_fails_its_resource_not_the_apply() {
    let env = Env::new(SimBehavior {
        panic_create: [(
            a("subnet.a"),
            "index out of bounds: the len is 0".to_string(),
        )]
        .into(),
        ..slow_db()
    });
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    let report = env.apply(&plan, &desired).await;

    let msg = "internal error in provider for `subnet.a`: index out of bounds: the len is 0; \
               please report it";
    assert_eq!(report.failed, vec![(a("subnet.a"), msg.to_string())]);
    assert_eq!(report.skipped, vec![a("db.main")]);
    // The independent resources finished, and their state was persisted.
    assert_eq!(
        report.completed.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["vpc.main", "vpc.other", "subnet.b"])
    );
    let stored = env.stored();
    assert_eq!(
        stored.resources.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["vpc.main", "vpc.other", "subnet.b"])
    );
    assert!(
        stored
            .resources
            .values()
            .all(|rs| rs.status == Status::Ready)
    );
    // Not retried (it would panic again); the intent stays, as after any failed create.
    assert_eq!(env.calls("create"), 4);
    assert!(stored.intents.contains_key(&a("subnet.a")));
    assert_eq!(
        env.events
            .count(|k| matches!(k, EventKind::Failed(m) if m == msg)),
        1
    );

    // Fixed, the next run finishes the rest.
    env.sim.set_behavior(|b| b.panic_create.clear());
    let next = env.reopen();
    reconcile_intents(&next.registry, &next.journal, &wanted(&desired))
        .await
        .unwrap();
    next.converge(&desired).await;
    assert_eq!(next.sim.objects().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_wait_leaves_the_object_pending_not_tainted() {
    let env = Env::new(SimBehavior {
        panic_wait: [(a("db.main"), "unwrap on None".to_string())].into(),
        ..slow_db()
    });
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    let report = env.apply(&plan, &desired).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, a("db.main"));
    assert!(
        report.failed[0]
            .1
            .starts_with("internal error in provider for `db.main`: unwrap on None"),
        "{report:?}"
    );
    assert_eq!(report.completed.len(), 4);
    // The create was accepted; a bug while waiting says nothing about the object, so the
    // next run waits again instead of replacing it.
    let stored = env.stored();
    assert_eq!(stored.resources[&a("db.main")].status, Status::Pending);
    assert_eq!(stored.resources.len(), 5);

    env.sim.set_behavior(|b| b.panic_wait.clear());
    let next = env.reopen();
    let plan = next.plan(&desired).await;
    assert_eq!(actions(&plan)[&a("db.main")], Action::Create);
    let report = next.apply(&plan, &desired).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(next.calls("create"), 5, "the db was not created twice");
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_wait_resumes_without_a_second_create() {
    let env = Env::new(SimBehavior {
        create_polls: [("db".to_string(), 10)].into(),
        poll_interval: Duration::from_secs(60),
        ..SimBehavior::default()
    });
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    let interrupt = Interrupt::new();
    let trigger = interrupt.clone();
    // The db's create is accepted at t≈0 and needs ~9 minutes of polling.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(300)).await;
        trigger.trigger();
    });
    let report = env.apply_with(&plan, &desired, interrupt).await;
    assert_eq!(report.interrupted, vec![a("db.main")]);
    assert!(report.failed.is_empty() && report.skipped.is_empty());
    assert_eq!(report.completed.len(), 4);

    let creates = env.calls("create");
    assert_eq!(creates, 5);
    let objects = env.sim.objects();
    let (db_id, db_obj) = objects
        .iter()
        .find(|(_, o)| o.address == a("db.main"))
        .expect("the db was created");
    assert!(db_obj.polls_left > 0);
    let stored = env.stored();
    assert_eq!(stored, env.state());
    let rs = &stored.resources[&a("db.main")];
    assert_eq!((rs.status, &rs.id), (Status::Pending, db_id));
    assert!(stored.intents.is_empty());

    // The next run resumes.
    let next = env.reopen();
    let plan = next.plan(&desired).await;
    let mut expected: BTreeMap<Address, Action> =
        ALL.iter().map(|x| (a(x), Action::NoOp)).collect();
    expected.insert(a("db.main"), Action::Create);
    assert_eq!(actions(&plan), expected);
    let change = plan.change(&a("db.main")).unwrap();
    assert_eq!(change.action, Action::Create);
    assert_eq!(change.reasons, vec![Reason::ResumePending]);
    assert_eq!(plan.summary().add, 1);
    let report = next.apply(&plan, &desired).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(next.calls("create"), creates, "no second create");
    assert_eq!(next.objects_of("db.main"), 1);
    assert_eq!(next.sim.objects().len(), 5);
    let rs = &next.state().resources[&a("db.main")];
    assert_eq!((rs.status, &rs.id), (Status::Ready, db_id));
    assert_eq!(
        rs.attributes["endpoint"],
        Value::Str(format!("endpoint-of-{db_id}"))
    );
    assert!(!next.plan(&desired).await.has_changes());
}

fn create_intent(token: &str, inputs: Attributes) -> Intent {
    Intent {
        operation: Operation::Create,
        token: token.to_string(),
        inputs,
        id: None,
        dependencies: Vec::new(),
        sent_at: None,
    }
}

fn vpc_inputs() -> Attributes {
    [("cidr_block".to_string(), Value::from("10.0.0.0/16"))].into()
}

#[tokio::test(start_paused = true)]
async fn a_create_intent_whose_object_exists_is_adopted() {
    let env = Env::new(SimBehavior::default());
    let desired = vec![desired(false).remove(0)];
    let vpc = a("vpc.main");
    env.journal
        .transition(|d| {
            d.intents
                .insert(vpc.clone(), create_intent("fi-crashed-7", vpc_inputs()))
        })
        .unwrap();
    // The previous run's create reached the cloud; then it died.
    let created = env
        .registry
        .get("vpc")
        .unwrap()
        .create(CreateRequest {
            address: vpc.clone(),
            inputs: vpc_inputs(),
            token: "fi-crashed-7".into(),
            fresh: false,
            sent_at: Some(std::time::SystemTime::now()),
            progress: Progress::none(vpc.clone()),
        })
        .await
        .unwrap();

    let outcome = reconcile_intents(&env.registry, &env.journal, &wanted(&desired))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        vec![Reconciled::Adopted(vpc.clone(), created.id.clone())]
    );
    let stored = env.stored();
    // The intent (and its token) stays until a create is recorded.
    assert_eq!(stored.intents[&vpc].token, "fi-crashed-7");
    let rs = &stored.resources[&vpc];
    assert_eq!((rs.status, &rs.id), (Status::Pending, &created.id));

    let plan = env.plan(&desired).await;
    assert_eq!(plan.changes[0].reasons, vec![Reason::ResumePending]);
    let report = env.apply(&plan, &desired).await;
    assert!(report.is_success(), "{report:?}");
    // The create is sent again with the same token, so the provider finishes the object it
    // already has (settings the dead run never applied) instead of making another.
    assert_eq!(env.calls("create"), 2, "re-sent once with the same token");
    assert!(env.stored().intents.is_empty());
    assert_eq!(env.sim.objects().len(), 1);
    let rs = &env.state().resources[&vpc];
    assert_eq!((rs.status, &rs.id), (Status::Ready, &created.id));
    assert_eq!(rs.attributes["id"], Value::Str(created.id.clone()));
}

#[tokio::test(start_paused = true)]
async fn a_create_intent_not_in_the_cloud_is_resumed_or_dropped() {
    let env = Env::new(SimBehavior::default());
    let desired = vec![desired(false).remove(0)];
    let vpc = a("vpc.main");
    env.journal
        .transition(|d| {
            d.intents
                .insert(vpc.clone(), create_intent("fi-never-sent", vpc_inputs()))
        })
        .unwrap();

    // Still wanted: the intent stays, in case the dead run's create lands late; the apply
    // sends it again with the same token.
    let outcome = reconcile_intents(&env.registry, &env.journal, &wanted(&desired))
        .await
        .unwrap();
    assert_eq!(outcome, vec![Reconciled::Resumed(vpc.clone())]);
    let stored = env.stored();
    assert_eq!(stored.intents[&vpc].token, "fi-never-sent");
    assert!(stored.resources.is_empty());

    env.converge(&desired).await;
    assert_eq!(env.calls("create"), 1);
    assert_eq!(env.sim.objects().len(), 1);
    assert_eq!(
        env.sim.objects().values().next().unwrap().token,
        "fi-never-sent"
    );
    assert_eq!(env.state().resources[&vpc].status, Status::Ready);
    assert!(env.stored().intents.is_empty());

    // No longer wanted and not in the cloud: the intent is dropped.
    let other = Env::new(SimBehavior::default());
    other
        .journal
        .transition(|d| {
            d.intents
                .insert(vpc.clone(), create_intent("fi-gone", vpc_inputs()))
        })
        .unwrap();
    let outcome = reconcile_intents(&other.registry, &other.journal, &BTreeSet::new())
        .await
        .unwrap();
    assert_eq!(outcome, vec![Reconciled::Dropped(vpc.clone())]);
    assert!(other.stored().intents.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delete_intents_keep_or_remove_the_resource() {
    let env = Env::new(SimBehavior::default());
    let desired = vec![desired(false).remove(0)];
    let vpc = a("vpc.main");
    env.converge(&desired).await;
    let rs = env.state().resources[&vpc].clone();
    let delete_intent = Intent {
        operation: Operation::Delete,
        token: String::new(),
        inputs: rs.inputs.clone(),
        id: Some(rs.id.clone()),
        dependencies: Vec::new(),
        sent_at: None,
    };

    // The delete had not gone through: the resource stays.
    env.journal
        .transition(|d| d.intents.insert(vpc.clone(), delete_intent.clone()))
        .unwrap();
    let outcome = reconcile_intents(&env.registry, &env.journal, &wanted(&desired))
        .await
        .unwrap();
    assert_eq!(outcome, vec![Reconciled::Kept(vpc.clone())]);
    let stored = env.stored();
    assert!(stored.intents.is_empty());
    assert_eq!(stored.resources[&vpc], rs);

    // The delete had gone through: the resource leaves state.
    env.journal
        .transition(|d| d.intents.insert(vpc.clone(), delete_intent.clone()))
        .unwrap();
    env.sim.remove(&rs.id);
    let outcome = reconcile_intents(&env.registry, &env.journal, &wanted(&desired))
        .await
        .unwrap();
    assert_eq!(outcome, vec![Reconciled::Deleted(vpc.clone())]);
    let stored = env.stored();
    assert!(stored.intents.is_empty() && stored.resources.is_empty());
    assert_eq!(env.calls("delete"), 0);
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_persisted_in_order() {
    let env = Env::new(slow_db());
    let desired = desired(false);
    env.converge(&desired).await;

    // Four immediate creates (intent, result) and one long one (intent, pending, ready).
    let transitions = env.transitions.load(Ordering::SeqCst);
    assert_eq!(transitions, 4 * 2 + 3);
    assert!(env.backend.writes() >= transitions);
    assert_eq!(env.backend.writes(), transitions);
    let serials = env.serials.lock().unwrap().clone();
    assert_eq!(serials, (1..=transitions as u64).collect::<Vec<_>>());
    let stored = env.stored();
    assert_eq!(stored, env.state());
    assert_eq!(stored.serial, transitions as u64);
}

#[tokio::test(start_paused = true)]
async fn destroy_deletes_dependents_first() {
    let env = Env::new(slow_db());
    let desired = desired(false);
    env.converge(&desired).await;
    let events_before = env.events.finished().len();

    let plan = env.plan_with(&desired, true).await;
    assert!(plan.changes.iter().all(|c| c.action == Action::Delete));
    assert!(plan.change(&a("db.main")).unwrap().data_loss);
    let report = env.apply(&plan, &desired).await;
    assert!(report.is_success(), "{report:?}");

    let order: Vec<Address> = env.events.finished()[events_before..].to_vec();
    assert_eq!(order.len(), 5);
    let pos = |x: &str| order.iter().position(|y| *y == a(x)).unwrap();
    assert!(pos("db.main") < pos("subnet.a"), "{order:?}");
    assert!(pos("subnet.a") < pos("vpc.main"), "{order:?}");
    assert!(pos("subnet.b") < pos("vpc.main"), "{order:?}");
    assert!(env.sim.objects().is_empty());
    assert_eq!(env.calls("delete"), 5);
    let stored = env.stored();
    assert!(stored.resources.is_empty() && stored.intents.is_empty());
}

#[tokio::test(start_paused = true)]
async fn destroy_refuses_a_protected_db_and_keeps_what_it_needs() {
    let env = Env::new(slow_db());
    let desired = desired(true);
    env.converge(&desired).await;

    let plan = env.plan_with(&desired, true).await;
    let report = env.apply(&plan, &desired).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let (addr, msg) = &report.failed[0];
    assert_eq!(addr, &a("db.main"));
    assert!(msg.contains("`deletion_protection = true`"), "{msg}");
    assert_eq!(report.skipped, vec![a("subnet.a"), a("vpc.main")]);
    assert_eq!(
        report.completed.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["subnet.b", "vpc.other"])
    );

    assert_eq!(env.calls("delete"), 2);
    let left: BTreeSet<Address> = env
        .sim
        .objects()
        .values()
        .map(|o| o.address.clone())
        .collect();
    assert_eq!(left, set(&["db.main", "subnet.a", "vpc.main"]));
    let stored = env.stored();
    assert!(stored.intents.is_empty());
    assert_eq!(
        stored.resources.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["db.main", "subnet.a", "vpc.main"])
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_until_it_converges() {
    let env = Env::new(SimBehavior {
        throttle_first: 3,
        ..slow_db()
    });
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    let report = env.apply(&plan, &desired).await;
    assert!(report.is_success(), "{report:?}");
    let retries = env
        .events
        .count(|k| matches!(k, EventKind::Retrying(m) if m == "Rate exceeded"));
    assert_eq!(retries, 3);
    // The throttled calls were creates of the first resources; each is counted.
    assert_eq!(env.calls("create"), 5 + 3);
    assert_eq!(env.sim.objects().len(), 5);
    assert!(
        env.state()
            .resources
            .values()
            .all(|rs| rs.status == Status::Ready)
    );
    assert!(!env.plan(&desired).await.has_changes());
}

#[tokio::test(start_paused = true)]
async fn a_throttled_poll_does_not_taint_a_long_create() {
    let env = Env::new(SimBehavior {
        create_polls: [("db".to_string(), 5)].into(),
        poll_interval: Duration::from_secs(60),
        ..SimBehavior::default()
    });
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    let sim = env.sim.clone();
    // While the db is being polled, the cloud throttles the next two calls.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(90)).await;
        let total: u64 = sim.calls().values().sum();
        sim.set_behavior(|b| b.throttle_first = total + 2);
    });
    let report = env.apply(&plan, &desired).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.events.count(|k| matches!(k, EventKind::Retrying(_))), 2);
    let rs = &env.state().resources[&a("db.main")];
    assert_eq!(rs.status, Status::Ready);
    assert_eq!(env.calls("create"), 5);
    assert!(!env.plan(&desired).await.has_changes());
}

#[tokio::test(start_paused = true)]
async fn a_persist_failure_fails_the_visit_and_leaves_no_orphan() {
    let sim = SimCloud::new(slow_db());
    let backend = MemoryBackend::new();
    let env = Env::open(sim, backend, Some(3));
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    let report = env.apply(&plan, &desired).await;

    assert!(!report.is_success());
    assert!(!report.failed.is_empty(), "{report:?}");
    for (addr, msg) in &report.failed {
        assert!(
            msg.starts_with("could not persist state: could not write state")
                && msg.ends_with(": injected failure"),
            "{addr}: {msg}"
        );
    }
    let accounted = report.completed.len() + report.failed.len() + report.skipped.len();
    assert_eq!(accounted, 5, "{report:?}");
    assert_eq!(env.backend.writes(), 3);

    // Every object in the cloud is in the stored state, or announced by an intent there.
    let stored = env.stored();
    assert_eq!(stored.serial, 3);
    for (id, obj) in env.sim.objects() {
        let known = stored.resources.values().any(|rs| rs.id == id)
            || stored.intents.values().any(|i| i.token == obj.token);
        assert!(known, "orphan {} ({id})", obj.address);
    }

    // The next run (puts work again) reconciles and converges with no duplicates.
    env.backend.fail_puts(false);
    let next = env.reopen();
    reconcile_intents(&next.registry, &next.journal, &wanted(&desired))
        .await
        .unwrap();
    next.converge(&desired).await;
    for x in ALL {
        assert_eq!(next.objects_of(x), 1, "{x}");
    }
    assert!(next.stored().intents.is_empty());
}

/// A vpc type whose first create takes effect in the cloud but answers 503, and
/// interrupts the walk while the engine backs off.
struct LostResponse {
    inner: Arc<dyn ResourceType>,
    failed_once: AtomicBool,
    interrupt: Interrupt,
}

#[async_trait]
impl ResourceType for LostResponse {
    fn schema(&self) -> &Schema {
        self.inner.schema()
    }
    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        self.inner.read(req).await
    }
    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        self.inner.find(req).await
    }
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let resp = self.inner.create(req).await?;
        if self.failed_once.swap(true, Ordering::SeqCst) {
            return Ok(resp);
        }
        self.interrupt.trigger();
        Err(ProviderError::new(
            ErrorKind::Transient,
            "503 Service Unavailable",
        ))
    }
    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        self.inner.wait_ready(req).await
    }
    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        self.inner.update(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.inner.delete(req).await
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_after_a_lost_create_response_keeps_the_intent() {
    let mut env = Env::new(SimBehavior::default());
    let interrupt = Interrupt::new();
    let sim_registry = env.sim.registry(schemas());
    let mut registry = Registry::new();
    registry.register(Arc::new(LostResponse {
        inner: sim_registry.get("vpc").unwrap().clone(),
        failed_once: AtomicBool::new(false),
        interrupt: interrupt.clone(),
    }));
    env.registry = registry;
    let desired = vec![desired(false).remove(0)];
    let vpc = a("vpc.main");

    let plan = env.plan(&desired).await;
    let report = env.apply_with(&plan, &desired, interrupt).await;
    assert_eq!(report.interrupted, vec![vpc.clone()]);
    assert_eq!(env.sim.objects().len(), 1, "the 503'd create took effect");

    // The object must not be an orphan: the intent that announced it is still stored.
    let stored = env.stored();
    assert!(stored.intents.contains_key(&vpc), "{stored:?}");

    let next = env.reopen();
    let outcome = reconcile_intents(&next.registry, &next.journal, &wanted(&desired))
        .await
        .unwrap();
    assert!(
        matches!(&outcome[..], [Reconciled::Adopted(x, _)] if *x == vpc),
        "{outcome:?}"
    );
    next.converge(&desired).await;
    assert_eq!(next.sim.objects().len(), 1, "no duplicate");
    // The 503'd create, then the same create re-sent with its token.
    assert_eq!(next.calls("create"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_refresh_is_retried_not_fatal() {
    let env = Env::new(SimBehavior::default());
    let desired = desired(false);
    let plan = env.plan(&desired).await;
    assert!(env.apply(&plan, &desired).await.is_success());
    let reads_before = env.calls("read");
    // The next two calls are throttled: the refresh retries them and still sees everything.
    let total: u64 = env.sim.calls().values().sum();
    env.sim.set_behavior(|b| b.throttle_first = total + 2);
    let plan = env.plan(&desired).await;
    assert!(
        plan.changes.iter().all(|c| c.action == Action::NoOp),
        "{plan:?}"
    );
    assert!(env.calls("read") >= reads_before + 5 + 2);
}

#[tokio::test(start_paused = true)]
async fn a_create_from_a_dead_run_is_resent_only_after_the_settle_time() {
    let env = Env::new(SimBehavior::default());
    *env.settle.lock().unwrap() = Duration::from_secs(20);
    let desired = vec![desired(false).remove(0)];
    let vpc = a("vpc.main");
    let sent_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    env.journal
        .transition(|d| {
            let mut i = create_intent("fi-late-1", vpc_inputs());
            i.sent_at = Some(sent_at);
            d.intents.insert(vpc.clone(), i);
        })
        .unwrap();
    // The dead run's create lands 5 s later, after reconciliation looked.
    let rt = env.registry.get("vpc").unwrap().clone();
    let late_vpc = vpc.clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        rt.create(CreateRequest {
            address: late_vpc.clone(),
            inputs: vpc_inputs(),
            token: "fi-late-1".into(),
            fresh: false,
            sent_at: Some(std::time::SystemTime::now()),
            progress: Progress::none(late_vpc),
        })
        .await
        .unwrap()
    });
    let outcome = reconcile_intents(&env.registry, &env.journal, &wanted(&desired))
        .await
        .unwrap();
    assert_eq!(outcome, vec![Reconciled::Resumed(vpc.clone())]);
    let started = tokio::time::Instant::now();
    env.converge(&desired).await;
    assert!(
        started.elapsed() >= Duration::from_secs(19),
        "{:?}",
        started.elapsed()
    );
    let late = late.await.unwrap();
    assert_eq!(env.sim.objects().len(), 1, "no duplicate");
    assert_eq!(env.state().resources[&vpc].id, late.id);
}

/// Logs the `fresh` flag of every create it passes on.
struct FreshLog {
    inner: Arc<dyn ResourceType>,
    seen: Mutex<Vec<bool>>,
}

#[async_trait]
impl ResourceType for FreshLog {
    fn schema(&self) -> &Schema {
        self.inner.schema()
    }
    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        self.inner.read(req).await
    }
    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        self.inner.find(req).await
    }
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        self.seen.lock().unwrap().push(req.fresh);
        self.inner.create(req).await
    }
    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        self.inner.wait_ready(req).await
    }
    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        self.inner.update(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.inner.delete(req).await
    }
}

/// Only the first attempt of a token minted for the create is fresh (the provider may skip
/// its token lookup): a retry may follow an attempt that took effect, and a resumed intent
/// may follow a run that sent it.
#[tokio::test(start_paused = true)]
async fn only_the_first_attempt_of_a_new_token_is_fresh() {
    let desired = vec![desired(false).remove(0)];
    let logged = |env: &mut Env| {
        let log = Arc::new(FreshLog {
            inner: env.registry.get("vpc").unwrap().clone(),
            seen: Mutex::new(Vec::new()),
        });
        let mut registry = Registry::new();
        registry.register(log.clone());
        env.registry = registry;
        log
    };

    let mut env = Env::new(SimBehavior {
        throttle_first: 2,
        ..SimBehavior::default()
    });
    let log = logged(&mut env);
    env.converge(&desired).await;
    assert_eq!(*log.seen.lock().unwrap(), [true, false, false]);

    let mut env = Env::new(SimBehavior::default());
    let log = logged(&mut env);
    env.journal
        .transition(|d| {
            let i = create_intent("fi-dead-run-3", vpc_inputs());
            d.intents.insert(a("vpc.main"), i);
        })
        .unwrap();
    env.converge(&desired).await;
    assert_eq!(*log.seen.lock().unwrap(), [false]);
}
