//! A simulated cloud: one [`ResourceType`] implementation that serves any [`Schema`] from an
//! in-memory (optionally file-backed) object store.
//!
//! It is a test double, not a cloud, and never part of the shipped binary: engine tests, the
//! plan bench and the CLI's integration tests (through the test-only `flyteinfra-sim`
//! binary) use it to exercise the walker, the intent journal and the CLI without network
//! access. It can delay calls, make creates long-running, throttle, and fail chosen
//! resources. With a file, several processes share one simulated cloud (each operation is a
//! locked read-modify-write of the file, written atomically), which is what the kill -9 test
//! needs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use flyteinfra_core::{
    Address, Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse, Registry,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};

/// One simulated object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimObject {
    /// Its resource type.
    pub type_name: String,
    /// The address that created it (for assertions only; real clouds do not know it).
    pub address: Address,
    /// The token it was created with (think: a tag).
    pub token: String,
    /// Its attributes.
    pub attributes: Attributes,
    /// Polls left before a long-running create is ready.
    pub polls_left: u32,
}

/// The simulated cloud's contents.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SimStore {
    /// Objects by id.
    pub objects: BTreeMap<String, SimObject>,
    /// The next id number.
    pub next_id: u64,
    /// API calls by operation name (`create`, `read`, ...).
    pub calls: BTreeMap<String, u64>,
}

/// How the simulated cloud behaves.
#[derive(Clone, Debug, Default)]
pub struct SimBehavior {
    /// Latency of every API call.
    pub call_delay: Duration,
    /// Creates of these types (or all when `None` is a key) take this many polls to finish.
    pub create_polls: BTreeMap<String, u32>,
    /// Time between polls of a long-running create.
    pub poll_interval: Duration,
    /// Creates of these addresses fail with this message.
    pub fail_create: BTreeMap<Address, String>,
    /// Long-running creates of these addresses end in a terminal failure state with this reason.
    pub fail_wait: BTreeMap<Address, String>,
    /// The first N calls are throttled.
    pub throttle_first: u64,
    /// Creates of these addresses panic with this message (a provider bug, for the tests
    /// of panic isolation).
    pub panic_create: BTreeMap<Address, String>,
    /// Waits for long-running creates of these addresses panic with this message.
    pub panic_wait: BTreeMap<Address, String>,
}

/// The simulated cloud. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct SimCloud {
    store: Arc<Mutex<SimStore>>,
    file: Option<PathBuf>,
    behavior: Arc<Mutex<SimBehavior>>,
}

impl SimCloud {
    /// An empty in-memory cloud.
    pub fn new(behavior: SimBehavior) -> Self {
        SimCloud {
            store: Arc::new(Mutex::new(SimStore::default())),
            file: None,
            behavior: Arc::new(Mutex::new(behavior)),
        }
    }

    /// A cloud stored in `path` (created on first write), shared with other processes.
    pub fn with_file(path: &Path, behavior: SimBehavior) -> Self {
        SimCloud {
            file: Some(path.to_path_buf()),
            ..SimCloud::new(behavior)
        }
    }

    /// A registry serving every schema from this cloud.
    pub fn registry(&self, schemas: impl IntoIterator<Item = Schema>) -> Registry {
        let mut r = Registry::new();
        for schema in schemas {
            r.register(Arc::new(SimType {
                cloud: self.clone(),
                schema,
            }));
        }
        r
    }

    /// Changes the behavior (affects calls from now on).
    pub fn set_behavior(&self, f: impl FnOnce(&mut SimBehavior)) {
        f(&mut self.behavior.lock().expect("behavior lock"));
    }

    /// Runs `f` on the store; with a file, under an exclusive file lock with the newest
    /// contents, writing the result back atomically.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut SimStore) -> T) -> T {
        let mut store = self.store.lock().expect("store lock");
        let Some(path) = &self.file else {
            return f(&mut store);
        };
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("lock"))
            .expect("open the simulated cloud's lock file");
        lock.lock().expect("lock the simulated cloud");
        *store = match fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).expect("simulated cloud file is valid JSON"),
            Err(_) => SimStore::default(),
        };
        let out = f(&mut store);
        let bytes =
            flyteinfra_core::reveal_secrets(|| serde_json::to_vec(&*store)).expect("serialize");
        flyteinfra_state::write_private(path, &bytes).expect("write the simulated cloud");
        out
    }

    /// Every object, by id.
    pub fn objects(&self) -> BTreeMap<String, SimObject> {
        self.with_store(|s| s.objects.clone())
    }

    /// Calls made so far, by operation.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.with_store(|s| s.calls.clone())
    }

    /// Changes an attribute behind flyteinfra's back (drift).
    pub fn set_attribute(&self, id: &str, name: &str, value: Value) {
        self.with_store(|s| {
            if let Some(o) = s.objects.get_mut(id) {
                o.attributes.insert(name.to_string(), value);
            }
        });
    }

    /// Deletes an object behind flyteinfra's back.
    pub fn remove(&self, id: &str) {
        self.with_store(|s| s.objects.remove(id));
    }

    fn behavior(&self) -> SimBehavior {
        self.behavior.lock().expect("behavior lock").clone()
    }

    /// Counts a call, applies latency and throttling.
    async fn call(&self, op: &str) -> Result<(), ProviderError> {
        let b = self.behavior();
        if !b.call_delay.is_zero() {
            tokio::time::sleep(b.call_delay).await;
        }
        let n = self.with_store(|s| {
            let total: u64 = s.calls.values().sum();
            *s.calls.entry(op.to_string()).or_default() += 1;
            total
        });
        if n < b.throttle_first {
            return Err(ProviderError::new(ErrorKind::Throttled, "Rate exceeded"));
        }
        Ok(())
    }
}

struct SimType {
    cloud: SimCloud,
    schema: Schema,
}

impl SimType {
    fn computed(&self, id: &str, inputs: &Attributes) -> Attributes {
        let mut attrs = inputs.clone();
        for f in self.schema.fields.iter().filter(|f| f.flags.computed) {
            let v = if f.name == "id" {
                id.to_string()
            } else {
                format!("{}-of-{id}", f.name)
            };
            attrs.entry(f.name.to_string()).or_insert(Value::Str(v));
        }
        attrs
    }
}

#[async_trait]
impl ResourceType for SimType {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        self.cloud.call("read").await?;
        let attributes = self.cloud.with_store(|s| {
            s.objects
                .get(&req.id)
                .filter(|o| o.type_name == self.schema.type_name)
                .map(|o| o.attributes.clone())
        });
        Ok(ReadResponse { attributes })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        self.cloud.call("find").await?;
        let id = self.cloud.with_store(|s| {
            s.objects
                .iter()
                .find(|(_, o)| o.token == req.token && o.type_name == self.schema.type_name)
                .map(|(id, _)| id.clone())
        });
        Ok(FindResponse { id })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        self.cloud.call("create").await?;
        let b = self.cloud.behavior();
        if let Some(msg) = b.panic_create.get(&req.address) {
            panic!("{msg}");
        }
        if let Some(msg) = b.fail_create.get(&req.address) {
            return Err(ProviderError::new(ErrorKind::InvalidInput, msg.clone()));
        }
        let polls = b
            .create_polls
            .get(self.schema.type_name)
            .copied()
            .unwrap_or(0);
        let (id, attributes) = self.cloud.with_store(|s| {
            // Idempotent on the token, as a create with a client token is.
            if let Some((id, o)) = s.objects.iter().find(|(_, o)| o.token == req.token) {
                return (id.clone(), o.attributes.clone());
            }
            s.next_id += 1;
            let id = format!("sim-{}-{}", self.schema.type_name, s.next_id);
            let attributes = self.computed(&id, &req.inputs);
            s.objects.insert(
                id.clone(),
                SimObject {
                    type_name: self.schema.type_name.to_string(),
                    address: req.address.clone(),
                    token: req.token.clone(),
                    attributes: attributes.clone(),
                    polls_left: polls,
                },
            );
            (id, attributes)
        });
        let completion = if polls == 0 {
            Completion::Ready(attributes)
        } else {
            req.progress.status("creating");
            Completion::InProgress
        };
        Ok(CreateResponse { id, completion })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let b = self.cloud.behavior();
        if let Some(msg) = b.panic_wait.get(&req.address) {
            panic!("{msg}");
        }
        loop {
            self.cloud.call("read").await?;
            let obj = self.cloud.with_store(|s| {
                let o = s.objects.get_mut(&req.id)?;
                o.polls_left = o.polls_left.saturating_sub(1);
                Some(o.clone())
            });
            let Some(obj) = obj else {
                return Err(ProviderError::new(
                    ErrorKind::NotFound,
                    format!("`{}` disappeared while being created", req.address),
                ));
            };
            if let Some(reason) = b.fail_wait.get(&req.address) {
                req.progress.status("CREATE_FAILED");
                return Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!("CREATE_FAILED: {reason}"),
                ));
            }
            if obj.polls_left == 0 {
                req.progress.status("available");
                return Ok(obj.attributes);
            }
            req.progress
                .status(format!("creating ({} polls left)", obj.polls_left));
            tokio::time::sleep(b.poll_interval).await;
        }
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        self.cloud.call("update").await?;
        let attributes = self.cloud.with_store(|s| {
            let o = s.objects.get_mut(&req.id)?;
            for (k, v) in &req.inputs {
                o.attributes.insert(k.clone(), v.clone());
            }
            Some(o.attributes.clone())
        });
        attributes
            .map(|attributes| UpdateResponse { attributes })
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("{} not found", req.id)))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.cloud.call("delete").await?;
        self.cloud.with_store(|s| s.objects.remove(&req.id));
        Ok(DeleteResponse { done: true })
    }
}

/// Addresses of objects that exist in `cloud` but not among `known` ids: orphans.
pub fn orphans(cloud: &SimCloud, known: &BTreeSet<String>) -> Vec<Address> {
    cloud
        .objects()
        .into_iter()
        .filter(|(id, _)| !known.contains(id))
        .map(|(_, o)| o.address)
        .collect()
}
