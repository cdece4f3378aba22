//! The whole rollout on real API servers: enable, rotate, change the resource list
//! and disable, proven in the etcd that kube-apiserver wrote.
//!
//! The world:
//! - **Seed**: this test binary's control plane (etcd + kube-apiserver). It holds the chart's
//!   CRD and RBAC, the chart's webhooks pointed at a local `eargate serve` (so every edit of
//!   the journey passes the real gate), the control-plane namespace `cluster-<name>` with the
//!   Deployment `apiserver` (2 replicas), the Secret `admin-kubeconfig` (pointing at the user
//!   cluster) and the key Secrets.
//! - **User cluster**: two kube-apiserver processes (the Deployment's two replicas) sharing
//!   one etcd of their own, behind a Service address ([`eargate_testkit::user_cluster`]).
//! - **Node agent** ([`eargate_testkit::node_agent`]): stands in for kubelet and
//!   kube-controller-manager. It rolls the user cluster's API servers one at a time when the
//!   pod template changes, each with `--encryption-provider-config` set to the Secret's
//!   content as a pod mounts it, writes the Deployment status, the Pods and ReplicaSets; it
//!   runs each Job's container command (`eargate reencrypt …`, the real binary) with the
//!   mounted kubeconfig and writes the Job status.
//! - **Reconciler**: `eargate reconcile`, its own process, with a TokenRequest token of the
//!   chart's ServiceAccount and only the chart's RBAC.
//!
//! Nothing else is simulated. `eargate verify` (the real binary) reads the user cluster's etcd.
//! A writer keeps creating and updating Secrets through both API servers during every
//! rollout, and a reader lists every Secret and ConfigMap through both while they roll.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

#[path = "../crates/storage/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use eargate_policy::names;
use eargate_testkit::node_agent::NodeAgent;
use eargate_testkit::rollout::{
    configmap_name, configmap_value, create_data, kubectl_stdin, runtime, secret_name,
    secret_value, DataSet, HostedCluster, Reconciler, Seed,
};
use eargate_testkit::user_cluster::UserCluster;
use eargate_testkit::{ControlPlane, Identity};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use support::EtcdExt as _;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const NAMESPACE: &str = "eargate-system";
const SECRETS: usize = 2000;
const CONFIGMAPS: usize = 500;
/// The objects seeded into the user cluster before enabling.
const DATA: DataSet = DataSet {
    namespaces: 5,
    secrets: SECRETS,
    configmaps: CONFIGMAPS,
};
const WRITER_NAMESPACE: &str = "writer";
/// How long one step of the journey may take on a busy machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(900);

static B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The tests of this binary share the seed's single reconciler Lease: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// The seed: CRD, RBAC, gate ([`eargate_testkit::rollout`]).

static SEED: OnceLock<Option<Seed>> = OnceLock::new();

fn seed() -> Option<&'static Seed> {
    SEED.get_or_init(|| Seed::install(ControlPlane::shared()?, EARGATE.as_ref(), NAMESPACE, true))
        .as_ref()
}

// ---------------------------------------------------------------------------------------
// Observing the Cluster.

/// Phase changes with the time they were seen (`None`: status.encryption absent).
type PhaseChanges = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// Polls the Cluster's `status.encryption.phase` every 100 ms and keeps every change.
struct PhaseRecorder {
    changes: PhaseChanges,
    stop: Arc<AtomicBool>,
}

impl PhaseRecorder {
    fn start(client: kube::Client, name: String) -> PhaseRecorder {
        let changes: PhaseChanges = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (changes.clone(), stop.clone());
        tokio::spawn(async move {
            let api: Api<eargate_policy::model::Cluster> = Api::all(client);
            let mut last: Option<Option<String>> = None;
            while !s.load(Ordering::SeqCst) {
                if let Ok(cluster) = api.get(&name).await {
                    let phase = cluster
                        .status
                        .as_ref()
                        .and_then(|st| st.encryption.as_ref())
                        .and_then(|e| e.phase)
                        .map(|p| p.as_str().to_owned());
                    if last.as_ref() != Some(&phase) {
                        c.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((Instant::now(), phase.clone()));
                        last = Some(phase);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        PhaseRecorder { changes, stop }
    }

    /// The phases entered since `t`, once the recorder has seen `last` (it polls, so it may
    /// trail whoever saw the Cluster reach `last` first); up to 10 s.
    async fn settled(&self, t: Instant, last: &str) -> Vec<Option<String>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let phases = self.since(t);
            let reached = phases.last().is_some_and(|p| p.as_deref() == Some(last));
            if reached || Instant::now() > deadline {
                return phases;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The phases entered since `t` (`None`: status.encryption absent).
    fn since(&self, t: Instant) -> Vec<Option<String>> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

impl Drop for PhaseRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug)]
struct Ev {
    time: Timestamp,
    type_: String,
    reason: String,
    note: String,
    count: i32,
}

// ---------------------------------------------------------------------------------------
// Traffic in the user cluster: a writer and a reader, through both API servers.

/// Whether a failed request is the connection to a restarting API server (retry elsewhere)
/// rather than an answer of a running one.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 503 | 504),
        _ => true,
    }
}

#[derive(Default)]
struct Traffic {
    /// Writer: `writer/<name>` -> the last value written.
    written: Mutex<BTreeMap<String, u64>>,
    writes: AtomicU64,
    creates: AtomicU64,
    /// Writes per replica index.
    writes_by_replica: [AtomicU64; 2],
    /// Reader: full lists per replica index.
    lists_by_replica: [AtomicU64; 2],
    /// Lists made while the two replicas ran different encryption configurations.
    mixed_lists: AtomicU64,
    /// Lists made while a rollout was in progress.
    rollout_lists: AtomicU64,
    /// Answers of running API servers that were errors.
    errors: Mutex<Vec<String>>,
    /// The fewest Secrets a list may show (what existed when the step began).
    floor_secrets: AtomicU64,
    floor_configmaps: AtomicU64,
    paused: AtomicBool,
    /// Held by the writer for each operation; the pauser takes it to wait for in-flight work.
    in_flight: tokio::sync::Mutex<()>,
    stop: AtomicBool,
}

impl Traffic {
    fn error(&self, what: String) {
        eprintln!("traffic: ERROR {what}");
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }

    async fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        drop(self.in_flight.lock().await);
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Clients per replica URL (a replica gets a new URL at every start).
struct Clients {
    user: Arc<UserCluster>,
    cache: BTreeMap<String, kube::Client>,
}

impl Clients {
    async fn replica(&mut self, i: usize) -> Option<kube::Client> {
        let url = self.user.replica_url(i)?;
        if !self.cache.contains_key(&url) {
            let client = self.user.client_for_url(&url).await;
            self.cache.insert(url.clone(), client);
        }
        self.cache.get(&url).cloned()
    }
}

async fn writer(user: Arc<UserCluster>, t: Arc<Traffic>) {
    let mut clients = Clients {
        user: user.clone(),
        cache: BTreeMap::new(),
    };
    let mut n: u64 = 0;
    while !t.stop.load(Ordering::SeqCst) {
        if t.paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let guard = t.in_flight.lock().await;
        if t.paused.load(Ordering::SeqCst) {
            continue;
        }
        n += 1;
        let created = t.written.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        // Every third operation creates a Secret, the others update an existing one.
        let (name, create) = if n % 3 == 1 || created == 0 {
            (format!("w-{created:06}"), true)
        } else {
            (format!("w-{:06}", (n * 7919) % created), false)
        };
        let value = n;
        let mut done = false;
        for attempt in 0..40u64 {
            let i = ((n + attempt) % 2) as usize;
            let Some(client) = clients.replica(i).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let api: Api<Secret> = Api::namespaced(client, WRITER_NAMESPACE);
            let data = json!({"value": B64.encode(format!("writer value {value}"))});
            let result = if create {
                let s: Secret = serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": WRITER_NAMESPACE},
                    "data": data
                }))
                .expect("a Secret");
                match api.create(&PostParams::default(), &s).await {
                    // A retry of a create whose answer was lost: it is there; write the value.
                    Err(kube::Error::Api(s)) if s.code == 409 && attempt > 0 => api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"data": data})),
                        )
                        .await
                        .map(|_| ()),
                    r => r.map(|_| ()),
                }
            } else {
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": data})),
                )
                .await
                .map(|_| ())
            };
            match result {
                Ok(()) => {
                    t.writes_by_replica[i].fetch_add(1, Ordering::SeqCst);
                    done = true;
                    break;
                }
                Err(e) if transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    t.error(format!(
                        "writer: {} {name} through replica {i}: {e}",
                        if create { "create" } else { "update" }
                    ));
                    break;
                }
            }
        }
        if done {
            t.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, value);
            t.writes.fetch_add(1, Ordering::SeqCst);
            if create {
                t.creates.fetch_add(1, Ordering::SeqCst);
            }
        }
        drop(guard);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reader(
    user: Arc<UserCluster>,
    agent_rolling: Arc<eargate_testkit::node_agent::AgentState>,
    t: Arc<Traffic>,
) {
    let mut clients = Clients {
        user: user.clone(),
        cache: BTreeMap::new(),
    };
    while !t.stop.load(Ordering::SeqCst) {
        for i in 0..2 {
            let Some(client) = clients.replica(i).await else {
                continue;
            };
            let mixed = match (
                user.replica_url(0)
                    .and(user.replica_encryption_config(0).map(content)),
                user.replica_url(1)
                    .and(user.replica_encryption_config(1).map(content)),
            ) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            };
            let rolling = agent_rolling.rolling.load(Ordering::SeqCst);
            let secrets: Api<Secret> = Api::all(client.clone());
            let configmaps: Api<ConfigMap> = Api::all(client);
            // Whole objects: a value the API server cannot decrypt fails the list (or, from
            // its watch cache, is missing from it, which the floor catches).
            let lp = ListParams::default();
            let s = secrets.list(&lp).await;
            let c = configmaps.list(&lp).await;
            match (s, c) {
                (Ok(s), Ok(c)) => {
                    let floor_s = t.floor_secrets.load(Ordering::SeqCst) as usize;
                    let floor_c = t.floor_configmaps.load(Ordering::SeqCst) as usize;
                    if s.items.len() < floor_s || c.items.len() < floor_c {
                        t.error(format!(
                            "reader: replica {i} listed {} Secrets and {} ConfigMaps, fewer than the {floor_s} and {floor_c} that exist",
                            s.items.len(),
                            c.items.len()
                        ));
                    }
                    t.lists_by_replica[i].fetch_add(1, Ordering::SeqCst);
                    if mixed {
                        t.mixed_lists.fetch_add(1, Ordering::SeqCst);
                    }
                    if rolling {
                        t.rollout_lists.fetch_add(1, Ordering::SeqCst);
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    if !transient(&e) {
                        t.error(format!("reader: list through replica {i}: {e}"));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The content of a mounted config file (empty when unreadable).
fn content(path: PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The world of one Cluster.

struct World {
    seed: &'static Seed,
    name: String,
    ns: String,
    user: Arc<UserCluster>,
    agent: NodeAgent,
    reconcilers: Vec<Reconciler>,
    seed_client: kube::Client,
    recorder: PhaseRecorder,
    traffic: Arc<Traffic>,
    /// Every key's base64 text (what a config file or a Cluster holds).
    keys: Vec<String>,
    /// Everything the test printed or read from eargate, scanned for key material at the end.
    outputs: Vec<(String, String)>,
    /// README material.
    report: String,
    /// The Cluster's encryption spec as last applied.
    spec: Value,
    /// When the world was built.
    began: Instant,
}

/// What one step observed.
struct StepResult {
    phases: Vec<Option<String>>,
    events: Vec<Ev>,
    jobs: u32,
    rollouts: usize,
    took: Duration,
    cluster: Value,
}

impl World {
    async fn new(seed: &'static Seed, name: &str) -> World {
        let cp = seed.cp;
        let began = Instant::now();
        let HostedCluster {
            namespace: ns,
            user,
            agent,
            ..
        } = HostedCluster::start(seed, name, 2).await;
        let seed_client = cp.client(&Identity::admin()).await;
        let recorder = PhaseRecorder::start(seed_client.clone(), name.to_owned());
        let mut world = World {
            seed,
            name: name.to_owned(),
            ns,
            user,
            agent,
            reconcilers: Vec::new(),
            seed_client,
            recorder,
            traffic: Arc::default(),
            keys: Vec::new(),
            outputs: Vec::new(),
            report: String::new(),
            spec: Value::Null,
            began,
        };
        world.apply_cluster(None, true);
        eprintln!(
            "k8s_rollout: world {name} ready in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        world
    }

    /// [`World::new`], then the data seeded and checked, the reconciler started and the
    /// traffic started (paused until the first edit).
    async fn ready(seed: &'static Seed, name: &str) -> World {
        let mut w = World::new(seed, name).await;
        let seeded_in = create_data(&w.user.client().await, DATA, &[WRITER_NAMESPACE]).await;
        eprintln!(
            "k8s_rollout {name}: {SECRETS} Secrets and {CONFIGMAPS} ConfigMaps created in {:.1} s",
            seeded_in.as_secs_f64()
        );
        w.check_objects("before enabling").await;
        w.start_reconciler(&format!("{name}-1"));
        w.traffic.pause().await;
        w.start_traffic();
        w
    }

    fn cp(&self) -> &'static ControlPlane {
        self.seed.cp
    }

    /// Polls the Cluster until `check` holds.
    async fn wait_cluster(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let cluster = self.cluster().await;
            if check(&cluster) {
                return cluster;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: not {what} within {STEP_TIMEOUT:?}; cluster status {}\nnode agent:\n{}\nreconciler log:\n{}",
                    self.name,
                    serde_json::to_string_pretty(&cluster["status"]).unwrap_or_default(),
                    self.agent.state.journal().join("\n"),
                    self.reconciler_logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `check` holds for the node agent.
    async fn wait_agent(&self, what: &str, check: impl Fn(&NodeAgent) -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !check(&self.agent) {
            assert!(
                Instant::now() < deadline,
                "{}: not {what} within {STEP_TIMEOUT:?}; node agent:\n{}\nreconciler log:\n{}",
                self.name,
                self.agent.state.journal().join("\n"),
                self.reconciler_logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Verifies that every Secret and ConfigMap is sealed with `key` and that both API
    /// servers serve them all; returns the verify report.
    async fn assert_all_on(&mut self, label: &str, key: &str) -> Value {
        self.traffic.pause().await;
        let (secrets, configmaps) = self.check_objects(label).await;
        let config = self.running_config(label).await;
        let (code, report) = self.verify(label, &config, &[]).await;
        assert_eq!(code, 0, "{label}: {report}");
        assert_sealed(&report, "secrets", key, secrets, label);
        assert_sealed(&report, "configmaps", key, configmaps, label);
        report
    }

    fn job_names(&self) -> Vec<String> {
        let out = self.cp().kubectl_ok(
            &Identity::admin(),
            &["get", "jobs", "-n", &self.ns, "-o", "json"],
        );
        let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|j| j["metadata"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn start_reconciler(&mut self, identity: &str) {
        let r = self.seed.start_reconciler(identity, &[]);
        self.reconcilers.push(r);
    }

    /// A fresh key in a Secret `<key name>` (data key `key`) of the control-plane namespace.
    fn create_key(&mut self, name: &str) {
        let key_text = B64.encode(rand::random::<[u8; 32]>());
        self.cp().apply(&[json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": self.ns},
            "data": {"key": B64.encode(&key_text)}
        })]);
        self.keys.push(key_text);
    }

    fn cluster_object(&self, encryption: Option<&Value>, gate: bool) -> Value {
        let mut spec = json!({
            "humanReadableName": format!("{} (eargate rollout e2e)", self.name),
            "version": "1.33.2",
            "features": {"encryptionAtRest": gate},
        });
        if let Some(e) = encryption {
            spec["encryptionConfiguration"] = e.clone();
        }
        json!({"apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
               "metadata": {"name": self.name}, "spec": spec})
    }

    /// `kubectl apply` of the Cluster as a user would (through the gate).
    fn apply_cluster(&mut self, encryption: Option<&Value>, gate: bool) {
        let object = self.cluster_object(encryption, gate);
        let out = self.kubectl_apply(&object);
        assert!(
            out.status.success(),
            "kubectl apply of Cluster {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        self.spec = encryption.cloned().unwrap_or(Value::Null);
    }

    fn kubectl_apply(&self, object: &Value) -> std::process::Output {
        kubectl_stdin(
            self.cp().kubectl(&Identity::admin()).args([
                "apply",
                "--server-side",
                "--field-manager=platform-team",
                "-f",
                "-",
            ]),
            &object.to_string(),
        )
    }

    async fn cluster(&self) -> Value {
        let api: Api<eargate_policy::model::Cluster> = Api::all(self.seed_client.clone());
        let c = api.get(&self.name).await.expect("the Cluster");
        serde_json::to_value(&c).expect("JSON")
    }

    async fn events_since(&self, since: Timestamp) -> Vec<Ev> {
        let api: Api<Event> = Api::all(self.seed_client.clone());
        let list = api.list(&ListParams::default()).await.expect("list Events");
        let mut out: Vec<Ev> = list
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Cluster")
                        && r.name.as_deref() == Some(self.name.as_str())
                })
            })
            .filter_map(|e| {
                // A repeated Event (same reason and note) is one Event with a series: its
                // last observation is what happened in this step.
                let first = e.event_time.as_ref()?.0;
                let time = e
                    .series
                    .as_ref()
                    .map(|s| s.last_observed_time.0.max(first))
                    .unwrap_or(first);
                (time >= since).then(|| Ev {
                    time,
                    type_: e.type_.clone().unwrap_or_default(),
                    reason: e.reason.clone().unwrap_or_default(),
                    note: e.note.clone().unwrap_or_default(),
                    count: e.series.as_ref().map(|s| s.count).unwrap_or(1),
                })
            })
            .collect();
        out.sort_by_key(|e| e.time);
        out
    }

    /// Applies `encryption` (and the feature gate), lets the traffic run, and waits until
    /// `done` holds for the Cluster after the reconciler has picked the edit up (a phase
    /// change seen since the edit).
    async fn step(
        &mut self,
        label: &str,
        encryption: Option<Value>,
        gate: bool,
        done: impl Fn(&Value) -> bool,
    ) -> StepResult {
        eprintln!(
            "\n===== k8s_rollout {}: {label} (at {:.0} s) =====",
            self.name,
            self.began.elapsed().as_secs_f64()
        );
        let t0 = Instant::now();
        let since = Timestamp::now() - std::time::Duration::from_secs(1);
        let jobs_before = self.agent.state.jobs_started.load(Ordering::SeqCst);
        let rollouts_before = self.agent.state.rollouts().len();
        self.traffic.resume();
        self.apply_cluster(encryption.as_ref(), gate);
        let deadline = Instant::now() + STEP_TIMEOUT;
        let cluster = loop {
            let phases = self.recorder.since(t0);
            let cluster = self.cluster().await;
            if !phases.is_empty() && done(&cluster) {
                break cluster;
            }
            if Instant::now() > deadline {
                panic!(
                    "{label}: not done within {STEP_TIMEOUT:?}; phases {phases:?}; cluster status {}\nnode agent:\n{}\nreconciler log:\n{}",
                    serde_json::to_string_pretty(&cluster["status"]).unwrap_or_default(),
                    self.agent.state.journal().join("\n"),
                    self.reconciler_logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // Let the reconciler finish its last actions (the Event after the status).
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.traffic.pause().await;
        let result = StepResult {
            phases: self.recorder.since(t0),
            events: self.events_since(since).await,
            jobs: self.agent.state.jobs_started.load(Ordering::SeqCst) - jobs_before,
            rollouts: self.agent.state.rollouts().len() - rollouts_before,
            took: t0.elapsed(),
            cluster,
        };
        eprintln!(
            "k8s_rollout {}: {label} done in {:.1} s: phases {:?}, {} rollout(s), {} Job(s), events {:?}",
            self.name,
            result.took.as_secs_f64(),
            result.phases,
            result.rollouts,
            result.jobs,
            result.events.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>()
        );
        let events = serde_json::to_string(
            &result
                .events
                .iter()
                .map(|e| json!([e.type_, e.reason, e.note]))
                .collect::<Vec<_>>(),
        )
        .expect("JSON");
        self.outputs.push((format!("{label}: Events"), events));
        self.outputs.push((
            format!("{label}: Cluster status"),
            result.cluster["status"].to_string(),
        ));
        self.report_step(label, &result);
        result
    }

    fn report_step(&mut self, label: &str, r: &StepResult) {
        use std::fmt::Write as _;
        let status = &r.cluster["status"];
        let _ = writeln!(
            self.report,
            "\n### {label}\n\n{:.1} s, {} API server rollout(s), {} re-encryption Job(s); phases seen: {}\n",
            r.took.as_secs_f64(),
            r.rollouts,
            r.jobs,
            r.phases
                .iter()
                .map(|p| p.as_deref().unwrap_or("(none)"))
                .collect::<Vec<_>>()
                .join(" -> ")
        );
        let _ = writeln!(self.report, "```console\n$ kubectl get cluster {} -o jsonpath='{{.status}}' | jq '{{encryption, conditions: .conditions | {{EncryptionInitialized, EncryptionReconciled}}}}'", self.name);
        let _ = writeln!(
            self.report,
            "{}",
            serde_json::to_string_pretty(&json!({
                "encryption": status["encryption"],
                "conditions": {
                    "EncryptionInitialized": status["conditions"]["EncryptionInitialized"],
                    "EncryptionReconciled": status["conditions"]["EncryptionReconciled"],
                }
            }))
            .unwrap_or_default()
        );
        let _ = writeln!(self.report, "```\n\nEvents on the Cluster during the step:\n\n```text\nTYPE     REASON                  COUNT  MESSAGE");
        for e in &r.events {
            let _ = writeln!(
                self.report,
                "{:<8} {:<23} {:<6} {}",
                e.type_, e.reason, e.count, e.note
            );
        }
        let _ = writeln!(self.report, "```");
    }

    fn reconciler_logs(&self) -> String {
        self.reconcilers
            .iter()
            .map(|r| {
                let log = r.log();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "--- {} (last 60 lines)\n{}",
                    r.identity,
                    lines[lines.len().saturating_sub(60)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The rendered config both replicas run (asserted identical to the Secret), written to a
    /// file for `eargate verify`.
    async fn running_config(&self, label: &str) -> PathBuf {
        let secrets: Api<Secret> = Api::namespaced(self.seed_client.clone(), &self.ns);
        let secret = secrets
            .get(names::DEFAULT_CONFIG_SECRET)
            .await
            .expect("the rendered config Secret");
        let rendered = secret
            .data
            .and_then(|mut d| d.remove(names::DEFAULT_CONFIG_SECRET_KEY))
            .expect("the rendered config")
            .0;
        for i in 0..self.user.replica_count() {
            let file = self.user.replica_encryption_config(i).unwrap_or_else(|| {
                panic!("{label}: replica {i} runs without an encryption config")
            });
            assert_eq!(
                std::fs::read(&file).expect("the mounted config"),
                rendered,
                "{label}: replica {i} runs another config than the Secret holds"
            );
        }
        let path = self.user.dir().join(format!(
            "verify-config-{}.yaml",
            label.split(':').next().unwrap_or(label).replace(' ', "-")
        ));
        std::fs::write(&path, &rendered).expect("write the config for verify");
        path
    }

    /// `eargate verify` against the user cluster's etcd: (exit code, JSON report).
    async fn verify(&mut self, label: &str, config: &Path, extra: &[&str]) -> (i32, Value) {
        let out = self.verify_raw(config, extra, "json").await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.outputs
            .push((format!("{label}: verify {extra:?}"), text.clone() + &stderr));
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "{label}: eargate verify failed to run ({code}): {stderr}"
        );
        let report: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{label}: verify prints JSON ({e}): {text}"));
        (code, report)
    }

    /// The text report, kept for the README.
    async fn verify_text(&mut self, label: &str, config: &Path, extra: &[&str]) -> String {
        let mut extra: Vec<&str> = extra.to_vec();
        if !extra.iter().any(|a| a.starts_with("--max-offenders")) {
            extra.push("--max-offenders=5");
        }
        let extra = extra.as_slice();
        let out = self.verify_raw(config, extra, "text").await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        self.outputs.push((
            format!("{label}: verify text {extra:?}"),
            text.clone() + &String::from_utf8_lossy(&out.stderr),
        ));
        use std::fmt::Write as _;
        let mut shown = vec![
            "eargate verify".to_owned(),
            "--etcd-endpoints".to_owned(),
            "$ETCD".to_owned(),
            "--cacert".to_owned(),
            "ca.crt".to_owned(),
            "--cert".to_owned(),
            "client.crt".to_owned(),
            "--key".to_owned(),
            "client.key".to_owned(),
            "--encryption-config".to_owned(),
            "encryption-configuration.yaml".to_owned(),
        ];
        shown.extend(extra.iter().map(|s| s.to_string()));
        let _ = writeln!(
            self.report,
            "\n`eargate verify` ({label}):\n\n```console\n$ {}\n{}$ echo $?\n{}\n```",
            shown.join(" "),
            text,
            out.status.code().unwrap_or(-1)
        );
        text
    }

    async fn verify_raw(
        &self,
        config: &Path,
        extra: &[&str],
        output: &str,
    ) -> std::process::Output {
        let mut cmd = Command::new(EARGATE);
        cmd.arg("verify")
            .args(self.user.etcd.client_flags())
            .arg(format!("--encryption-config={}", config.display()))
            .arg(format!("--output={output}"))
            .args(extra);
        tokio::task::spawn_blocking(move || cmd.output().expect("run eargate verify"))
            .await
            .expect("verify ran")
    }

    /// Reads every Secret and ConfigMap through both API servers: same objects, same
    /// values, every seeded and written object present with its last value. Returns the
    /// number of Secrets and ConfigMaps in the user cluster.
    async fn check_objects(&mut self, label: &str) -> (u64, u64) {
        let errors = self.traffic.errors();
        assert!(
            errors.is_empty(),
            "{label}: the API servers answered the traffic with errors: {errors:#?}"
        );
        let mut seen: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)> = Vec::new();
        for i in 0..self.user.replica_count() {
            let (url, client) = self
                .user
                .replica_client(i)
                .await
                .unwrap_or_else(|| panic!("{label}: replica {i} is not running"));
            let lp = ListParams::default();
            let secrets: Api<Secret> = Api::all(client.clone());
            let configmaps: Api<ConfigMap> = Api::all(client);
            let s = secrets.list(&lp).await.unwrap_or_else(|e| {
                panic!("{label}: list Secrets through replica {i} ({url}): {e}")
            });
            let c = configmaps.list(&lp).await.unwrap_or_else(|e| {
                panic!("{label}: list ConfigMaps through replica {i} ({url}): {e}")
            });
            let s: BTreeMap<String, String> = s
                .items
                .into_iter()
                .map(|o| {
                    let key = format!(
                        "{}/{}",
                        o.metadata.namespace.unwrap_or_default(),
                        o.metadata.name.unwrap_or_default()
                    );
                    let value = o
                        .data
                        .unwrap_or_default()
                        .get("value")
                        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                        .unwrap_or_default();
                    (key, value)
                })
                .collect();
            let c: BTreeMap<String, String> = c
                .items
                .into_iter()
                .map(|o| {
                    let key = format!(
                        "{}/{}",
                        o.metadata.namespace.unwrap_or_default(),
                        o.metadata.name.unwrap_or_default()
                    );
                    let value = o
                        .data
                        .unwrap_or_default()
                        .get("value")
                        .cloned()
                        .unwrap_or_default();
                    (key, value)
                })
                .collect();
            seen.push((s, c));
        }
        assert!(
            seen[0] == seen[1],
            "{label}: the two API servers return different objects ({} vs {} Secrets, {} vs {} ConfigMaps)",
            seen[0].0.len(),
            seen[1].0.len(),
            seen[0].1.len(),
            seen[1].1.len()
        );
        let (secrets, configmaps) = &seen[0];
        for i in 0..SECRETS {
            let key = format!("{}/{}", DATA.namespace_of(i), secret_name(i));
            assert_eq!(
                secrets.get(&key).map(String::as_str),
                Some(secret_value(i).as_str()),
                "{label}: Secret {key}"
            );
        }
        for i in 0..CONFIGMAPS {
            let key = format!("{}/{}", DATA.namespace_of(i), configmap_name(i));
            assert_eq!(
                configmaps.get(&key).map(String::as_str),
                Some(configmap_value(i).as_str()),
                "{label}: ConfigMap {key}"
            );
        }
        let written = self
            .traffic
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, value) in &written {
            let key = format!("{WRITER_NAMESPACE}/{name}");
            assert_eq!(
                secrets.get(&key).map(String::as_str),
                Some(format!("writer value {value}").as_str()),
                "{label}: the writer's Secret {key} lost its last write"
            );
        }
        let ours = secrets
            .keys()
            .filter(|k| k.starts_with("data-") || k.starts_with(&format!("{WRITER_NAMESPACE}/")))
            .count();
        assert_eq!(
            ours,
            SECRETS + written.len(),
            "{label}: Secrets appeared that nobody created"
        );
        self.traffic
            .floor_secrets
            .store(secrets.len() as u64, Ordering::SeqCst);
        self.traffic
            .floor_configmaps
            .store(configmaps.len() as u64, Ordering::SeqCst);
        eprintln!(
            "k8s_rollout {}: {label}: both API servers serve the same {} Secrets ({} written by the writer so far) and {} ConfigMaps",
            self.name,
            secrets.len(),
            written.len(),
            configmaps.len()
        );
        (secrets.len() as u64, configmaps.len() as u64)
    }

    /// No key material in anything the test saw.
    fn assert_no_key_material(&mut self) {
        let mut texts = std::mem::take(&mut self.outputs);
        for r in &self.reconcilers {
            texts.push((format!("reconciler log {}", r.identity), r.log()));
        }
        texts.push((
            "node agent journal".to_owned(),
            self.agent.state.journal().join("\n"),
        ));
        for run in self.agent.state.job_runs() {
            texts.push((
                format!("Job {} attempt {} output", run.job, run.attempt),
                format!("{}\n{}", run.stdout, run.stderr),
            ));
        }
        for log in self.user.apiserver_logs() {
            texts.push((
                format!("user-cluster log {}", log.display()),
                std::fs::read_to_string(&log).unwrap_or_default(),
            ));
        }
        texts.push((
            "seed kube-apiserver log".to_owned(),
            std::fs::read_to_string(self.cp().dir().join("kube-apiserver.log")).unwrap_or_default(),
        ));
        texts.push((
            "gate log".to_owned(),
            self.seed
                .gate_log()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default(),
        ));
        for kind in ["deployment", "pods", "jobs", "replicasets"] {
            let out = self.cp().kubectl_ok(
                &Identity::admin(),
                &["get", kind, "-n", &self.ns, "-o", "json"],
            );
            texts.push((
                format!("{kind} in {}", self.ns),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
        let mut needles: Vec<String> = Vec::new();
        for key in &self.keys {
            for form in [key.clone(), B64.encode(key)] {
                for w in form.as_bytes().windows(12) {
                    needles.push(String::from_utf8_lossy(w).into_owned());
                }
            }
        }
        let mut scanned = 0usize;
        for (what, text) in &texts {
            scanned += text.len();
            for n in &needles {
                assert!(!text.contains(n.as_str()), "key material ({n}…) in {what}");
            }
        }
        eprintln!(
            "k8s_rollout {}: no key material in {} texts ({} bytes): logs, Events, status, outputs",
            self.name,
            texts.len(),
            scanned
        );
        self.outputs = texts;
    }

    fn start_traffic(&self) {
        let (u, t) = (self.user.clone(), self.traffic.clone());
        tokio::spawn(writer(u, t));
        let (u, s, t) = (
            self.user.clone(),
            self.agent.state.clone(),
            self.traffic.clone(),
        );
        tokio::spawn(reader(u, s, t));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.traffic.stop.store(true, Ordering::SeqCst);
        self.agent.stop();
        for r in &mut self.reconcilers {
            r.stop();
        }
        // The next test's reconciler need not look at this Cluster any more.
        let _ = self
            .cp()
            .kubectl(&Identity::admin())
            .args(["delete", "cluster", &self.name, "--wait=false"])
            .output();
    }
}

fn phase(c: &Value) -> Option<&str> {
    c["status"]["encryption"]["phase"].as_str()
}

fn active_with(key: &'static str) -> impl Fn(&Value) -> bool {
    move |c| phase(c) == Some("Active") && c["status"]["encryption"]["activeKey"] == key
}

fn decrypted(c: &Value) -> bool {
    c["status"]["encryption"].is_null()
        && c["status"]["conditions"]["EncryptionInitialized"]["status"] == "False"
}

fn reasons(events: &[Ev]) -> Vec<&str> {
    events.iter().map(|e| e.reason.as_str()).collect()
}

/// `want` appears in `got` in this order (other items may come between).
fn in_order(got: &[&str], want: &[&str]) -> bool {
    let mut it = got.iter();
    want.iter().all(|w| it.any(|g| g == w))
}

fn dedup(phases: &[Option<String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in phases {
        let p = p.clone().unwrap_or_else(|| "(none)".to_owned());
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    out
}

fn counts<'a>(report: &'a Value, resource: &str) -> &'a Value {
    report["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["resource"] == resource))
        .map(|r| &r["counts"])
        .unwrap_or_else(|| panic!("verify reports {resource}: {report}"))
}

fn keyring(secret_ref: &[&str]) -> Value {
    json!({"keys": secret_ref.iter().map(|k| json!({"name": k, "secretRef": {"name": k, "key": "key"}})).collect::<Vec<_>>()})
}

fn encryption(enabled: bool, resources: &[&str], keys: &[&str]) -> Value {
    json!({"enabled": enabled, "resources": resources, "secretbox": keyring(keys)})
}

/// Every current object of `resource` sealed with `key` (the primary), nothing else.
fn assert_sealed(report: &Value, resource: &str, key: &str, total: u64, label: &str) {
    let c = counts(report, resource);
    assert_eq!(
        c["sealed-with-primary"], total,
        "{label}: {resource} sealed with {key}: {report}"
    );
    for other in [
        "sealed-with-secondary",
        "sealed-with-unknown-key",
        "failed-to-open",
        "other-provider",
        "plaintext",
    ] {
        assert_eq!(c[other], 0, "{label}: {resource} {other}: {report}");
    }
}

fn assert_plaintext(report: &Value, resource: &str, total: u64, label: &str) {
    let c = counts(report, resource);
    assert_eq!(
        c["plaintext"], total,
        "{label}: {resource} plaintext: {report}"
    );
    for other in [
        "sealed-with-primary",
        "sealed-with-secondary",
        "sealed-with-unknown-key",
        "failed-to-open",
        "other-provider",
    ] {
        assert_eq!(c[other], 0, "{label}: {resource} {other}: {report}");
    }
}

#[test]
fn enable_rotate_change_the_resources_and_disable_on_real_api_servers() {
    let _serial = serial();
    let Some(seed) = seed() else {
        return;
    };
    let began = Instant::now();
    runtime().block_on(journey(seed));
    eprintln!(
        "k8s_rollout: the journey took {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

async fn journey(seed: &'static Seed) {
    let name = format!("journey-{}", std::process::id());
    let mut w = World::ready(seed, &name).await;
    w.create_key("k1");

    // 1. Enable secrets and configmaps with k1.
    let label = "1. enable [secrets, configmaps] with k1";
    let r = w
        .step(
            label,
            Some(encryption(true, &["secrets", "configmaps"], &["k1"])),
            true,
            active_with("secretbox/k1"),
        )
        .await;
    assert_eq!(
        dedup(&r.phases),
        ["Pending", "EncryptionNeeded", "Active"],
        "{label}"
    );
    let rs = reasons(&r.events);
    assert!(
        in_order(
            &rs,
            &[
                "Pending",
                "RolloutStarted",
                "EncryptionNeeded",
                "ReencryptionStarted",
                "ReencryptionSucceeded",
                "Active"
            ]
        ),
        "{label}: Events {rs:?}"
    );
    assert!(
        r.events.iter().all(|e| e.type_ == "Normal"),
        "{label}: {:?}",
        r.events
    );
    assert_eq!(r.jobs, 1, "{label}: one re-encryption Job");
    assert!(
        r.rollouts >= 2,
        "{label}: identity-first config, then k1 as writer: {}",
        r.rollouts
    );
    assert_eq!(
        r.cluster["status"]["encryption"]["encryptedResources"],
        json!(["secrets", "configmaps"])
    );
    let (secrets, configmaps) = w.check_objects(label).await;
    let config = w.running_config(label).await;
    let (code, report) = w.verify(label, &config, &[]).await;
    assert_eq!(code, 0, "{label}: {report}");
    assert_sealed(&report, "secrets", "k1", secrets, label);
    assert_sealed(&report, "configmaps", "k1", configmaps, label);
    assert_eq!(
        report["keys"],
        json!({"k1": secrets + configmaps}),
        "{label}"
    );
    w.verify_text(label, &config, &[]).await;
    // The plaintext each object had before its re-encryption is still in etcd's history.
    let (code, report) = w.verify(label, &config, &["--history"]).await;
    assert_eq!(
        code, 1,
        "{label}: older plaintext revisions remain: {report}"
    );
    let older = report["history"]["older_counts"]["plaintext"]
        .as_u64()
        .expect("history counts");
    assert!(
        older >= (SECRETS + CONFIGMAPS) as u64,
        "{label}: every seeded object has an older plaintext revision: {older}"
    );
    w.verify_text(label, &config, &["--history", "--max-offenders=3"])
        .await;
    // Until compaction.
    let revision = report["etcd_revision"].as_i64().expect("a revision");
    w.user.etcd.compact(revision);
    let (code, report) = w.verify(label, &config, &["--history"]).await;
    assert_eq!(code, 0, "{label}: after compaction: {report}");
    assert_eq!(report["history"]["older_counts"]["plaintext"], 0);
    w.verify_text(
        &format!("{label}, after `etcdctl compact {revision}`"),
        &config,
        &["--history"],
    )
    .await;

    // 2a. Add k2 by secretRef as a secondary key: Active again without a Job.
    w.create_key("k2");
    let label = "2a. add k2 as a secondary key";
    let r = w
        .step(
            label,
            Some(encryption(true, &["secrets", "configmaps"], &["k1", "k2"])),
            true,
            active_with("secretbox/k1"),
        )
        .await;
    assert_eq!(dedup(&r.phases), ["Pending", "Active"], "{label}");
    assert_eq!(r.jobs, 0, "{label}: no re-encryption Job");
    assert_eq!(r.rollouts, 1, "{label}");
    let rs = reasons(&r.events);
    assert!(!rs.contains(&"ReencryptionStarted"), "{label}: {rs:?}");
    assert!(
        in_order(&rs, &["Pending", "RolloutStarted", "Active"]),
        "{label}: {rs:?}"
    );
    let (secrets, configmaps) = w.check_objects(label).await;
    let config = w.running_config(label).await;
    let (code, report) = w.verify(label, &config, &[]).await;
    assert_eq!(code, 0, "{label}: {report}");
    assert_sealed(&report, "secrets", "k1", secrets, label);
    assert_sealed(&report, "configmaps", "k1", configmaps, label);

    // 2b. Promote k2: re-encryption, everything on k2.
    let label = "2b. promote k2";
    let r = w
        .step(
            label,
            Some(encryption(true, &["secrets", "configmaps"], &["k2", "k1"])),
            true,
            active_with("secretbox/k2"),
        )
        .await;
    assert_eq!(
        dedup(&r.phases),
        ["Pending", "EncryptionNeeded", "Active"],
        "{label}"
    );
    assert_eq!(r.jobs, 1, "{label}");
    let rs = reasons(&r.events);
    assert!(
        in_order(
            &rs,
            &[
                "Pending",
                "RolloutStarted",
                "EncryptionNeeded",
                "ReencryptionStarted",
                "ReencryptionSucceeded",
                "Active"
            ]
        ),
        "{label}: {rs:?}"
    );
    let (secrets, configmaps) = w.check_objects(label).await;
    let config = w.running_config(label).await;
    let (code, report) = w.verify(label, &config, &[]).await;
    assert_eq!(code, 0, "{label}: {report}");
    assert_sealed(&report, "secrets", "k2", secrets, label);
    assert_sealed(&report, "configmaps", "k2", configmaps, label);
    assert_eq!(
        report["keys"],
        json!({"k2": secrets + configmaps}),
        "{label}"
    );
    w.verify_text(label, &config, &[]).await;

    // Independent implementations agree: a value sealed by eargate's storage crate with k2
    // and written straight into etcd is served by both kube-apiservers.
    sealed_by_eargate_served_by_kube_apiserver(&mut w, &config, label).await;

    // 2c. Remove k1: nothing is on k1. The re-encryption left an older revision of every
    // object on k1; etcd compacts them first (kube-apiserver does every 5 minutes; the user
    // cluster here runs with --etcd-compaction-interval=0), so the storage scan finds nothing
    // and one more rollout drops k1. (tests/k8s_key_removal.rs covers the key that stays.)
    let compacted = w.user.etcd.compact_to_current();
    eprintln!(
        "k8s_rollout {}: etcd compacted at revision {compacted}",
        w.name
    );
    let label = "2c. remove k1";
    let r = w
        .step(
            label,
            Some(encryption(true, &["secrets", "configmaps"], &["k2"])),
            true,
            active_with("secretbox/k2"),
        )
        .await;
    assert_eq!(dedup(&r.phases), ["Pending", "Active"], "{label}");
    assert_eq!(r.jobs, 1, "{label}: one storage scan, no re-encryption");
    let rs = reasons(&r.events);
    assert!(
        in_order(
            &rs,
            &["StorageScanStarted", "KeysDropped", "Pending", "Active"]
        ),
        "{label}: {rs:?}"
    );
    let (secrets, configmaps) = w.check_objects(label).await;
    let config = w.running_config(label).await;
    let text = std::fs::read_to_string(&config).expect("the config");
    assert!(!text.contains("name: k1"), "{label}: k1 left the config");
    let (code, report) = w.verify(label, &config, &[]).await;
    assert_eq!(code, 0, "{label}: {report}");
    assert_sealed(&report, "secrets", "k2", secrets, label);
    assert_sealed(&report, "configmaps", "k2", configmaps, label);
    assert_eq!(
        report["keys"],
        json!({"k2": secrets + configmaps}),
        "{label}: nothing on k1"
    );

    // 3. Change the resource list the documented way. Changing it while enabled is refused…
    let label = "3. change the resource list";
    let denied =
        w.kubectl_apply(&w.cluster_object(Some(&encryption(true, &["secrets"], &["k2"])), true));
    let stderr = String::from_utf8_lossy(&denied.stderr).into_owned();
    assert!(
        !denied.status.success() && stderr.contains("EAR007"),
        "{label}: the gate refuses a new list while enabled: {stderr}"
    );
    w.outputs.push((format!("{label}: denial"), stderr.clone()));
    w.report.push_str(&format!(
        "\n### {label} while enabled: refused\n\n```console\n$ kubectl apply --server-side -f cluster.yaml   # resources: [secrets]\n{stderr}```\n"
    ));
    // …so: disable (everything is decrypted)…
    let label = "3a. disable (to change the resource list)";
    let r = w
        .step(
            label,
            Some(encryption(false, &["secrets", "configmaps"], &["k2"])),
            true,
            decrypted,
        )
        .await;
    assert_eq!(
        dedup(&r.phases),
        ["Pending", "EncryptionNeeded", "(none)"],
        "{label}"
    );
    assert_eq!(r.jobs, 1, "{label}");
    let rs = reasons(&r.events);
    assert!(
        in_order(
            &rs,
            &[
                "Pending",
                "EncryptionNeeded",
                "ReencryptionStarted",
                "ReencryptionSucceeded",
                "Decrypted"
            ]
        ),
        "{label}: {rs:?}"
    );
    let (secrets, configmaps) = w.check_objects(label).await;
    let config = w.running_config(label).await;
    let (code, report) = w
        .verify(label, &config, &["--resources=secrets,configmaps"])
        .await;
    assert_eq!(code, 1, "{label}: identity is not secretbox: {report}");
    assert_plaintext(&report, "secrets", secrets, label);
    assert_plaintext(&report, "configmaps", configmaps, label);
    // …then re-enable with the new list.
    let label = "3b. re-enable with [secrets]";
    let r = w
        .step(
            label,
            Some(encryption(true, &["secrets"], &["k2"])),
            true,
            active_with("secretbox/k2"),
        )
        .await;
    assert_eq!(
        dedup(&r.phases),
        ["Pending", "EncryptionNeeded", "Active"],
        "{label}"
    );
    assert_eq!(r.jobs, 1, "{label}");
    assert_eq!(
        r.cluster["status"]["encryption"]["encryptedResources"],
        json!(["secrets"])
    );
    let (secrets, configmaps) = w.check_objects(label).await;
    let config = w.running_config(label).await;
    let (code, report) = w.verify(label, &config, &[]).await;
    assert_eq!(code, 0, "{label}: {report}");
    assert_sealed(&report, "secrets", "k2", secrets, label);
    // ConfigMaps left the config; `verify` checks resources of the config only, so etcd is
    // read directly: every ConfigMap is stored as plain protobuf.
    assert_etcd_plaintext(&w, "configmaps", configmaps, label).await;

    // 4. Disable: decryption, everything identity; then the feature gate goes.
    let label = "4. disable";
    // The feature gate cannot go while encrypted.
    let denied =
        w.kubectl_apply(&w.cluster_object(Some(&encryption(false, &["secrets"], &["k2"])), false));
    let stderr = String::from_utf8_lossy(&denied.stderr).into_owned();
    assert!(
        !denied.status.success() && stderr.contains("EAR012"),
        "{label}: the gate keeps the feature gate while encrypted: {stderr}"
    );
    let r = w
        .step(
            label,
            Some(encryption(false, &["secrets"], &["k2"])),
            true,
            decrypted,
        )
        .await;
    assert_eq!(
        dedup(&r.phases),
        ["Pending", "EncryptionNeeded", "(none)"],
        "{label}"
    );
    assert_eq!(r.jobs, 1, "{label}");
    let rs = reasons(&r.events);
    assert!(
        in_order(
            &rs,
            &[
                "Pending",
                "EncryptionNeeded",
                "ReencryptionStarted",
                "ReencryptionSucceeded",
                "Decrypted"
            ]
        ),
        "{label}: {rs:?}"
    );
    let (secrets, configmaps) = w.check_objects(label).await;
    let config = w.running_config(label).await;
    let (code, report) = w.verify(label, &config, &[]).await;
    assert_eq!(code, 1, "{label}: {report}");
    assert_plaintext(&report, "secrets", secrets, label);
    assert_eq!(report["keys"], json!({}), "{label}");
    w.verify_text(label, &config, &[]).await;
    assert_etcd_plaintext(&w, "configmaps", configmaps, label).await;
    assert_etcd_plaintext(&w, "secrets", secrets, label).await;
    // Now the feature gate may go; nothing rolls.
    let rollouts = w.agent.state.rollouts().len();
    let jobs = w.agent.state.jobs_started.load(Ordering::SeqCst);
    let since = Timestamp::now();
    w.apply_cluster(Some(&encryption(false, &["secrets"], &["k2"])), false);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let cluster = w.cluster().await;
    assert_eq!(cluster["spec"]["features"]["encryptionAtRest"], false);
    assert!(decrypted(&cluster), "{cluster}");
    assert_eq!(
        w.agent.state.rollouts().len(),
        rollouts,
        "no rollout after removing the gate"
    );
    assert_eq!(w.agent.state.jobs_started.load(Ordering::SeqCst), jobs);
    let after = w.events_since(since).await;
    assert!(
        after.is_empty(),
        "no Events after removing the gate: {after:?}"
    );
    w.check_objects("4. feature gate removed").await;

    // During the rollouts, both API servers were read (also while they ran different
    // configs) and written through.
    let t = &w.traffic;
    let (l0, l1) = (
        t.lists_by_replica[0].load(Ordering::SeqCst),
        t.lists_by_replica[1].load(Ordering::SeqCst),
    );
    let (w0, w1) = (
        t.writes_by_replica[0].load(Ordering::SeqCst),
        t.writes_by_replica[1].load(Ordering::SeqCst),
    );
    let mixed = t.mixed_lists.load(Ordering::SeqCst);
    let during = t.rollout_lists.load(Ordering::SeqCst);
    eprintln!(
        "k8s_rollout {name}: reader: {l0} + {l1} full lists through the two API servers ({during} during rollouts, {mixed} while they ran different configs); writer: {} writes ({} creates), {w0} + {w1} through each",
        t.writes.load(Ordering::SeqCst),
        t.creates.load(Ordering::SeqCst)
    );
    assert!(l0 > 0 && l1 > 0 && w0 > 0 && w1 > 0);
    assert!(during > 0, "the reader read during rollouts");
    assert!(
        mixed > 0,
        "the reader read while the replicas ran different configs"
    );
    assert!(t.errors().is_empty(), "{:#?}", t.errors());

    w.assert_no_key_material();
    let rollouts = w.agent.state.rollouts();
    let runs = w.agent.state.job_runs();
    let mut summary = format!(
        "\n## k8s_rollout journey {name}: {:.1} s in total; {} API server rollouts ({}), {} Job runs ({})\n",
        w.began.elapsed().as_secs_f64(),
        rollouts.len(),
        rollouts
            .iter()
            .map(|r| format!("{:.1} s", r.took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        runs.len(),
        runs.iter()
            .map(|r| format!("{:.1} s", r.took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(run) = runs.first() {
        summary.push_str(&format!(
            "\nThe first Job's container, as the node agent ran it:\n\n```console\n$ eargate {}\n{}```\n",
            run.spec_args.join(" "),
            run.stdout
        ));
    }
    let report = summary + &w.report;
    let path = w.cp().dir().join(format!("rollout-report-{name}.md"));
    std::fs::write(&path, &report).expect("write the report");
    eprintln!(
        "{report}\n(k8s_rollout: report written to {})",
        path.display()
    );
}

/// Every value under `/registry/<resource>/` in the user cluster's etcd is kube-apiserver's
/// plain protobuf (`k8s\0`), none carries an encryption prefix (`k8s:enc:`).
async fn assert_etcd_plaintext(w: &World, resource: &str, total: u64, label: &str) {
    let mut etcd = w.user.etcd.client().await;
    let prefix = format!("/registry/{resource}/");
    let got = etcd
        .get(
            prefix.as_str(),
            Some(eargate_storage::etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("read etcd");
    let kvs = got.kvs();
    assert_eq!(kvs.len() as u64, total, "{label}: {resource} in etcd");
    for kv in kvs {
        assert!(
            kv.value().starts_with(b"k8s\0") && !kv.value().starts_with(b"k8s:enc:"),
            "{label}: {} is not stored as plaintext protobuf",
            String::from_utf8_lossy(kv.key())
        );
    }
    eprintln!(
        "k8s_rollout {}: {label}: all {total} {resource} in etcd are plaintext protobuf",
        w.name
    );
}

/// A Secret sealed by eargate's storage crate with the primary key of `config`, written
/// straight into etcd as kube-apiserver would store it, is served back by both API servers.
async fn sealed_by_eargate_served_by_kube_apiserver(w: &mut World, config: &Path, label: &str) {
    let parsed: eargate_policy::apiserver_config::EncryptionConfig =
        serde_yaml::from_str(&std::fs::read_to_string(config).expect("the config"))
            .expect("a config");
    let key = parsed.resources[0].providers[0]
        .secretbox
        .as_ref()
        .expect("secretbox first")
        .keys[0]
        .clone();
    let sealer =
        eargate_storage::SecretboxKey::from_base64(&key.name, &key.secret).expect("the key");
    let value = json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": "sealed-by-eargate", "namespace": "data-0",
                     "uid": "00000000-0000-4000-8000-000000000001",
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "type": "Opaque",
        "data": {"value": B64.encode("sealed by eargate's storage crate")}
    });
    let sealed = sealer.seal(value.to_string().as_bytes());
    let mut etcd = w.user.etcd.client().await;
    etcd.put("/registry/secrets/data-0/sealed-by-eargate", sealed, None)
        .await
        .expect("write into etcd");
    for i in 0..w.user.replica_count() {
        let (_, client) = w.user.replica_client(i).await.expect("a running replica");
        let s = Api::<Secret>::namespaced(client, "data-0")
            .get("sealed-by-eargate")
            .await
            .unwrap_or_else(|e| {
                panic!("{label}: replica {i} serves the value eargate sealed: {e}")
            });
        let data = s.data.expect("data");
        assert_eq!(
            data["value"].0.as_slice(),
            &b"sealed by eargate's storage crate"[..],
            "{label}: replica {i}"
        );
    }
    // Gone again, so the counts stay those of the journey.
    etcd.delete("/registry/secrets/data-0/sealed-by-eargate", None)
        .await
        .expect("delete from etcd");
    eprintln!(
        "k8s_rollout {}: {label}: a Secret sealed by eargate's storage crate with {} and put into etcd is served by both kube-apiservers",
        w.name, key.name
    );
}

// ---------------------------------------------------------------------------------------
// Faults. Each ends with nothing lost: every object served by both API servers with its
// last value, every one sealed with the key the status names.

/// One fault scenario: the seed and a unique Cluster name in, a future to run out.
type Fault = fn(&'static Seed, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

fn run_fault(prefix: &str, body: Fault) {
    let _serial = serial();
    let Some(seed) = seed() else {
        return;
    };
    let began = Instant::now();
    let name = format!("{prefix}-{}", std::process::id());
    runtime().block_on(body(seed, name.clone()));
    eprintln!(
        "k8s_rollout: {name} took {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

/// Enables encryption with `k1` on a ready world with its first Job held by the node agent;
/// returns once the Job is marked active (phase `EncryptionNeeded`).
async fn enable_with_held_job(w: &mut World) {
    w.create_key("k1");
    w.agent.state.hold_jobs.store(true, Ordering::SeqCst);
    w.traffic.resume();
    w.apply_cluster(
        Some(&encryption(true, &["secrets", "configmaps"], &["k1"])),
        true,
    );
    w.wait_agent("a re-encryption Job", |a| {
        a.state.jobs_started.load(Ordering::SeqCst) == 1
    })
    .await;
    let c = w.cluster().await;
    assert_eq!(phase(&c), Some("EncryptionNeeded"), "{c}");
}

#[test]
fn fault_the_reconciler_is_killed_during_reencryption_and_a_second_one_resumes() {
    run_fault("fault-kill", |seed, name| {
        Box::pin(async move {
            let mut w = World::ready(seed, &name).await;
            enable_with_held_job(&mut w).await;
            let t0 = Instant::now();
            // SIGKILL while the Job is running: the Lease is not released.
            w.reconcilers[0].kill();
            w.start_reconciler(&format!("{name}-2"));
            w.agent.state.hold_jobs.store(false, Ordering::SeqCst);
            let second = format!("{name}-2");
            let cluster = w
                .wait_cluster("Active with k1", active_with("secretbox/k1"))
                .await;
            eprintln!(
                "k8s_rollout {name}: Active {:.1} s after the kill",
                t0.elapsed().as_secs_f64()
            );
            let lease = w.cp().kubectl_ok(
                &Identity::admin(),
                &[
                    "get",
                    "lease",
                    names::RECONCILER_NAME,
                    "-n",
                    NAMESPACE,
                    "-o",
                    "json",
                ],
            );
            let lease: Value = serde_json::from_slice(&lease.stdout).expect("JSON");
            assert_eq!(lease["spec"]["holderIdentity"], second.as_str(), "{lease}");
            assert!(
                w.reconcilers[1].log().contains("acquired the leader Lease"),
                "{}",
                w.reconcilers[1].log()
            );
            // The second reconciler found the first one's Job by its name: one Job, one run.
            assert_eq!(w.job_names().len(), 1, "{:?}", w.job_names());
            assert_eq!(w.agent.state.job_runs().len(), 1);
            assert_eq!(
                cluster["status"]["conditions"]["EncryptionReconciled"]["reason"],
                "Active"
            );
            let events = w
                .events_since(Timestamp::now() - Duration::from_secs(3600))
                .await;
            let rs = reasons(&events);
            assert!(
                in_order(
                    &rs,
                    &[
                        "EncryptionNeeded",
                        "ReencryptionStarted",
                        "ReencryptionSucceeded",
                        "Active"
                    ]
                ),
                "{rs:?}"
            );
            w.assert_all_on("after the takeover", "k1").await;
            w.assert_no_key_material();
        })
    });
}

#[test]
fn fault_the_job_fails_once_then_the_retry_annotation_leads_to_active() {
    run_fault("fault-job", |seed, name| {
        Box::pin(async move {
            let mut w = World::ready(seed, &name).await;
            // The Job's kubeconfig names a user the user cluster knows but allows nothing
            // except reading /metrics (so the reconciler can still prove what each API server
            // loaded): every attempt of `eargate reencrypt` is refused (403) for real.
            let good = w.user.kubeconfig_text();
            let nobody = w.user.kubeconfig_text_for(&Identity::user("nobody", &[]));
            for args in [
                &[
                    "create",
                    "clusterrole",
                    "metrics-reader",
                    "--verb=get",
                    "--non-resource-url=/metrics",
                ][..],
                &[
                    "create",
                    "clusterrolebinding",
                    "nobody-reads-metrics",
                    "--clusterrole=metrics-reader",
                    "--user=nobody",
                ][..],
            ] {
                let out = w.user.kubectl().args(args).output().expect("kubectl");
                assert!(
                    out.status.success(),
                    "kubectl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let set_kubeconfig = |w: &World, text: &str| {
                w.cp().apply(&[json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": names::DEFAULT_ADMIN_KUBECONFIG_SECRET, "namespace": w.ns},
                    "data": {names::DEFAULT_ADMIN_KUBECONFIG_KEY: B64.encode(text)}
                })]);
            };
            set_kubeconfig(&w, &nobody);
            w.create_key("k1");
            let since = Timestamp::now() - Duration::from_secs(1);
            w.traffic.resume();
            w.apply_cluster(
                Some(&encryption(true, &["secrets", "configmaps"], &["k1"])),
                true,
            );
            let failed = w
                .wait_cluster("Failed", |c| phase(c) == Some("Failed"))
                .await;
            let condition = &failed["status"]["conditions"]["EncryptionReconciled"];
            assert_eq!(condition["status"], "False", "{condition}");
            assert_eq!(condition["reason"], "JobFailed", "{condition}");
            let message = condition["message"].as_str().unwrap_or_default().to_owned();
            assert!(
                message.contains("BackoffLimitExceeded")
                    && message.contains(names::ANNOTATION_RETRY),
                "{message}"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            let events = w.events_since(since).await;
            let warning = events
                .iter()
                .find(|e| e.type_ == "Warning" && e.reason == "Failed")
                .unwrap_or_else(|| panic!("a Warning Event Failed: {events:?}"));
            assert!(
                warning.note.contains("JobFailed") && warning.note.contains("BackoffLimitExceeded"),
                "{warning:?}"
            );
            let runs = w.agent.state.job_runs();
            assert_eq!(runs.len(), 4, "backoffLimit 3: four attempts");
            for run in &runs {
                assert_ne!(run.exit_code, Some(0), "{run:?}");
                assert!(
                    run.stdout.contains("403"),
                    "the API refused the list: {}",
                    run.stdout
                );
            }
            w.report.push_str(&format!(
                "\n### Fault: the Job fails\n\n```console\n$ kubectl get cluster {name} -o jsonpath='{{.status.conditions.EncryptionReconciled}}'\n{}\n```\n\nWarning Event: `{}: {}`\n\nThe Job's container (attempt 4):\n\n```console\n$ eargate {}\n{}$ echo $?\n{}\n```\n",
                serde_json::to_string_pretty(condition).unwrap_or_default(),
                warning.reason,
                warning.note,
                runs[3].spec_args.join(" "),
                runs[3].stdout,
                runs[3].exit_code.unwrap_or(-1)
            ));
            w.outputs
                .push(("fault-job: Events".to_owned(), format!("{events:?}")));
            w.outputs
                .push(("fault-job: status".to_owned(), failed["status"].to_string()));
            // The cause fixed, the retry annotation starts again from Pending.
            set_kubeconfig(&w, &good);
            let t0 = Instant::now();
            let out = w.cp().kubectl_ok(
                &Identity::admin(),
                &[
                    "annotate",
                    "cluster",
                    &name,
                    &format!("{}=1", names::ANNOTATION_RETRY),
                ],
            );
            w.outputs.push((
                "annotate".to_owned(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
            w.wait_cluster("Active with k1", active_with("secretbox/k1"))
                .await;
            assert_eq!(
                dedup(&w.recorder.settled(t0, "Active").await),
                ["Pending", "EncryptionNeeded", "Active"]
            );
            let jobs = w.job_names();
            assert_eq!(jobs.len(), 2, "a new Job for the new attempt: {jobs:?}");
            let last = w.agent.state.job_runs().pop().expect("a run");
            assert_eq!(last.exit_code, Some(0), "{last:?}");
            w.assert_all_on("after the retry", "k1").await;
            w.assert_no_key_material();
            eprintln!("{}", w.report);
        })
    });
}

#[test]
fn fault_a_user_cluster_api_server_restarts_during_reencryption() {
    run_fault("fault-restart", |seed, name| {
        Box::pin(async move {
            let mut w = World::ready(seed, &name).await;
            enable_with_held_job(&mut w).await;
            w.agent.state.hold_jobs.store(false, Ordering::SeqCst);
            // The replica the Job talks to (through the Service) restarts under it.
            let deadline = Instant::now() + Duration::from_secs(30);
            let target = loop {
                if let Some(i) = (0..2).find(|i| w.user.service_connections(*i) > 0) {
                    break i;
                }
                assert!(Instant::now() < deadline, "the Job never connected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            w.agent.state.request_restart(target);
            w.wait_agent("the restart", |a| {
                a.state.restarts_done.load(Ordering::SeqCst) == 1
            })
            .await;
            w.wait_cluster("Active with k1", active_with("secretbox/k1"))
                .await;
            let journal = w.agent.state.journal();
            let restarting = journal
                .iter()
                .position(|l| l.contains("restarting"))
                .expect("the restart is in the journal");
            let first_exit = journal
                .iter()
                .position(|l| l.contains("attempt 1 exited"))
                .expect("the Job ran");
            assert!(
                restarting < first_exit,
                "the restart began while the Job ran: {journal:#?}"
            );
            let runs = w.agent.state.job_runs();
            eprintln!(
                "k8s_rollout {name}: replica {target} restarted during the Job; the Job took {} attempt(s): {}",
                runs.len(),
                runs.iter().map(|r| r.stdout.trim().replace('\n', " ")).collect::<Vec<_>>().join(" | ")
            );
            assert_eq!(runs.last().and_then(|r| r.exit_code), Some(0));
            w.assert_all_on("after the restart", "k1").await;
            w.assert_no_key_material();
        })
    });
}

#[test]
fn fault_a_missing_key_secret_blocks_until_it_is_created() {
    run_fault("fault-missing", |seed, name| {
        Box::pin(async move {
            let mut w = World::ready(seed, &name).await;
            let rollouts = w.agent.state.rollouts().len();
            let since = Timestamp::now() - Duration::from_secs(1);
            w.traffic.resume();
            // k1 is referenced, its Secret does not exist yet.
            w.apply_cluster(
                Some(&encryption(true, &["secrets", "configmaps"], &["k1"])),
                true,
            );
            let blocked = w
                .wait_cluster("blocked on the missing Secret", |c| {
                    c["status"]["conditions"]["EncryptionReconciled"]["reason"]
                        == "KeySecretMissing"
                })
                .await;
            let condition = &blocked["status"]["conditions"]["EncryptionReconciled"];
            assert_eq!(condition["status"], "False");
            let message = condition["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("\"k1\"") && message.contains("does not exist"),
                "{message}"
            );
            // No rollout: nothing rendered, the API servers untouched, for a while.
            tokio::time::sleep(Duration::from_secs(15)).await;
            let c = w.cluster().await;
            assert!(c["status"]["encryption"].is_null(), "{c}");
            assert_eq!(w.agent.state.rollouts().len(), rollouts);
            let secret = w
                .cp()
                .kubectl(&Identity::admin())
                .args(["get", "secret", names::DEFAULT_CONFIG_SECRET, "-n", &w.ns])
                .output()
                .expect("kubectl");
            assert!(!secret.status.success(), "no config was rendered");
            let events = w.events_since(since).await;
            let warning = events
                .iter()
                .find(|e| e.type_ == "Warning" && e.reason == "KeySecretMissing")
                .unwrap_or_else(|| panic!("a Warning Event: {events:?}"));
            w.report.push_str(&format!(
                "\n### Fault: a referenced key Secret is missing\n\n```console\n$ kubectl get cluster {name} -o jsonpath='{{.status.conditions.EncryptionReconciled}}'\n{}\n```\n\nWarning Event: `{}: {}` (count {})\n",
                serde_json::to_string_pretty(condition).unwrap_or_default(),
                warning.reason,
                warning.note,
                warning.count
            ));
            w.outputs
                .push(("fault-missing: Events".to_owned(), format!("{events:?}")));
            // Created: the rollout continues by itself.
            let t0 = Instant::now();
            w.create_key("k1");
            w.wait_cluster("Active with k1", active_with("secretbox/k1"))
                .await;
            eprintln!(
                "k8s_rollout {name}: Active {:.1} s after the Secret was created",
                t0.elapsed().as_secs_f64()
            );
            assert_eq!(
                dedup(&w.recorder.settled(t0, "Active").await),
                ["Pending", "EncryptionNeeded", "Active"]
            );
            w.assert_all_on("after the Secret was created", "k1").await;
            w.assert_no_key_material();
            eprintln!("{}", w.report);
        })
    });
}
