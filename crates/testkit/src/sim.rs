//! A simulated control plane for planner tests: the Cluster, key Secrets, the rendered Secret,
//! API server pods (each running the config it loaded when it started), re-encryption Jobs
//! that rewrite objects one by one, storage scans that count what each key seals, and a store
//! in which every object remembers the key it was sealed with — and the keys of its older
//! revisions until etcd compacts them. Actions from `plan()` are executed like the I/O layer
//! would.
//!
//! Shared by the reconciler's planner tests and its model-based property test.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use eargate_policy::apiserver_config::EncryptionConfig;
use eargate_policy::model::{
    Cluster, EncryptionConfiguration, EncryptionPhase, SecretKeyRef,
    SecretboxEncryptionConfiguration, SecretboxKey,
};
use eargate_policy::names;
use eargate_policy::storage_scan::{KeySummary, KeyUse, KeyVerdict};
use eargate_reconciler::{
    check_config, content_hash, control_plane_namespace, expected_hash, job_name_for, plan, Action,
    ClusterSnapshot, ConfigSecret, EncryptionStatusChange, JobState, KeySecret, Loaded, ReloadMode,
    ReplicaReport, Rollout, ScanState, Settings, StorageScan, ANNOTATION_ROLLOUT_STARTED,
    LABEL_SCAN_ATTEMPT,
};
use k8s_openapi::jiff::Timestamp;

use crate::fixtures::ClusterFixture;
use crate::secrets::{b64, unb64, B64};

/// Material of pool key `i` (deterministic, distinct).
pub fn material(i: usize) -> [u8; 32] {
    let mut m = [0u8; 32];
    for (j, b) in m.iter_mut().enumerate() {
        *b = (i as u8)
            .wrapping_mul(31)
            .wrapping_add(j as u8)
            .wrapping_mul(7)
            .wrapping_add(3);
    }
    m
}

/// The name of pool key `i`: `key-<i>`.
pub fn key_name(i: usize) -> String {
    format!("key-{i}")
}

/// Pool key `i`: even keys inline, odd keys by secretRef to Secret `key-<i>` data key `key`.
pub fn spec_key(i: usize) -> SecretboxKey {
    if i.is_multiple_of(2) {
        SecretboxKey {
            name: key_name(i),
            value: Some(b64(material(i))),
            secret_ref: None,
        }
    } else {
        SecretboxKey {
            name: key_name(i),
            value: None,
            secret_ref: Some(SecretKeyRef {
                name: key_name(i),
                key: "key".into(),
                optional: None,
            }),
        }
    }
}

/// A `spec.encryptionConfiguration` with these resources and pool keys (the first primary).
pub fn enc(enabled: bool, resources: &[&str], keys: &[usize]) -> EncryptionConfiguration {
    EncryptionConfiguration {
        enabled,
        resources: resources.iter().map(|s| s.to_string()).collect(),
        secretbox: Some(SecretboxEncryptionConfiguration {
            keys: keys.iter().map(|&i| spec_key(i)).collect(),
        }),
    }
}

/// Sealed with `(key name, material)`, or plaintext.
pub type Seal = Option<(String, [u8; 32])>;

/// One stored object.
#[derive(Clone, Debug)]
pub struct Obj {
    /// Its resource, e.g. `secrets`.
    pub resource: String,
    /// The key that sealed it, or plaintext.
    pub seal: Seal,
    /// The seals of its older revisions that etcd still holds (until compaction).
    pub history: Vec<Seal>,
}

/// One API server instance.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The pod template (config hash) it runs; `None` before the first rollout.
    pub template: Option<String>,
    /// The config file this API server instance loaded (None: no encryption config).
    pub config: Option<Vec<u8>>,
    /// Its `/metrics` cannot be reached (the reconciler cannot prove what it loaded).
    pub unreachable: bool,
}

/// One re-encryption Job.
#[derive(Clone, Debug)]
pub struct SimJob {
    /// The resources it rewrites.
    pub resources: Vec<String>,
    /// How many of their objects it has rewritten.
    pub next: usize,
    /// Running, succeeded or failed.
    pub state: JobState,
}

/// One storage-scan Job.
#[derive(Clone, Debug)]
pub struct SimScan {
    /// What the planner reads about it.
    pub scan: StorageScan,
}

/// The whole simulated control plane of one Cluster.
#[derive(Clone, Debug)]
pub struct World {
    /// The Cluster object.
    pub cluster: Cluster,
    /// The key Secrets, by name.
    pub key_secrets: BTreeMap<String, KeySecret>,
    /// The Secret with the rendered config, once written.
    pub config_secret: Option<ConfigSecret>,
    /// The API server Deployment's current pod template (config hash).
    pub template: Option<String>,
    /// When the current rollout started.
    pub started: Option<Timestamp>,
    /// The API server instances.
    pub pods: Vec<Pod>,
    /// The Jobs, by name.
    pub jobs: BTreeMap<String, SimJob>,
    /// How many Jobs were ever created.
    pub jobs_created: usize,
    /// The storage scans, by Job name (a deleted one is gone).
    pub scans: BTreeMap<String, SimScan>,
    /// How many storage scans were ever created.
    pub scans_created: usize,
    /// The stored objects.
    pub store: Vec<Obj>,
    /// The simulated clock.
    pub now: Timestamp,
    /// `(reason, note)` of every Event emitted.
    pub events: Vec<(String, String)>,
    /// Every action planned, in order.
    pub all_actions: Vec<Action>,
    /// The reconciler's settings.
    pub settings: Settings,
    /// The API server Deployment is absent.
    pub deployment_missing: bool,
    /// The minor version every simulated API server reports (37: a hash format eargate has
    /// checked against the real binary).
    pub minor: u32,
}

/// The resources the world stores objects of.
pub const RESOURCES: &[&str] = &["secrets", "configmaps"];

impl World {
    /// Cluster `c1` without encryption, `pods` API servers, pool keys 1, 3 and 5 as Secrets,
    /// and two plaintext objects of each of [`RESOURCES`].
    pub fn new(pods: usize) -> Self {
        let cluster = ClusterFixture::new("c1")
            .generation(1)
            .namespace_name("cluster-c1")
            .typed();
        let key_secrets = (0..6)
            .filter(|i| i % 2 == 1)
            .map(|i| {
                (
                    key_name(i),
                    KeySecret::Data(BTreeMap::from([(
                        "key".to_owned(),
                        b64(material(i)).into_bytes(),
                    )])),
                )
            })
            .collect();
        let mut w = Self {
            cluster,
            key_secrets,
            config_secret: None,
            template: None,
            started: None,
            pods: (0..pods)
                .map(|_| Pod {
                    template: None,
                    config: None,
                    unreachable: false,
                })
                .collect(),
            jobs: BTreeMap::new(),
            jobs_created: 0,
            scans: BTreeMap::new(),
            scans_created: 0,
            store: Vec::new(),
            now: Timestamp::from_second(1_800_000_000).unwrap(),
            events: Vec::new(),
            all_actions: Vec::new(),
            settings: Settings::default(),
            deployment_missing: false,
            minor: 37,
        };
        for (i, r) in RESOURCES.iter().enumerate() {
            for _ in 0..2 {
                w.user_write(r, i);
            }
        }
        w
    }

    /// Sets `spec.encryptionConfiguration` and bumps the generation, as a user's edit does.
    pub fn set_spec(&mut self, spec: Option<EncryptionConfiguration>) {
        self.cluster.spec.encryption_configuration = spec;
        self.cluster.metadata.generation = Some(self.cluster.metadata.generation.unwrap_or(1) + 1);
    }

    /// Sets the retry annotation to `value`.
    pub fn set_retry(&mut self, value: &str) {
        self.cluster
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(names::ANNOTATION_RETRY.to_owned(), value.to_owned());
    }

    /// `status.encryption`, if any.
    pub fn status(&self) -> Option<&eargate_policy::model::ClusterEncryptionStatus> {
        self.cluster
            .status
            .as_ref()
            .and_then(|s| s.encryption.as_ref())
    }

    /// `status.encryption.phase`, if any.
    pub fn phase(&self) -> Option<EncryptionPhase> {
        self.status().and_then(|s| s.phase)
    }

    /// The condition of type `t`, if any.
    pub fn condition(&self, t: &str) -> Option<&eargate_policy::model::ClusterCondition> {
        self.cluster
            .status
            .as_ref()
            .and_then(|s| s.conditions.get(t))
    }

    /// The config in the rendered Secret, parsed.
    pub fn rendered_config(&self) -> Option<EncryptionConfig> {
        self.config_secret
            .as_ref()
            .and_then(|r| r.data.as_ref())
            .map(|d| serde_yaml::from_slice(d).unwrap())
    }

    /// What the planner would read now.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let rollout = (!self.deployment_missing).then(|| {
            let n = self.pods.len() as i32;
            let updated = self
                .pods
                .iter()
                .filter(|p| p.template == self.template)
                .count() as i32;
            Rollout {
                template_hash: self.template.clone(),
                started: self.started,
                generation: 1,
                observed_generation: 1,
                desired: n,
                updated,
                available: n,
                ready: n,
                total: n,
            }
        });
        let job = self
            .config_secret
            .as_ref()
            .and_then(job_name_for)
            .and_then(|n| self.jobs.get(&n))
            .map(|j| j.state.clone());
        ClusterSnapshot {
            namespace: control_plane_namespace(&self.cluster),
            cluster: self.cluster.clone(),
            config_secret: self.config_secret.clone(),
            key_secrets: self.key_secrets.clone(),
            rollout,
            job,
            replicas: self.replica_reports(),
            scan: self.latest_scan().map(|s| s.scan.clone()),
            now: self.now,
        }
    }

    /// The storage scan with the highest number for the config in the Secret.
    pub fn latest_scan(&self) -> Option<&SimScan> {
        let hash = content_hash(self.secret_content()?.as_slice());
        self.scans
            .values()
            .filter(|s| s.scan.config_hash == hash)
            .max_by_key(|s| s.scan.attempt)
    }

    /// The running storage scan reads etcd now and hands back its summary: per key name of
    /// the mounted config (and any found in storage), current objects and older revisions.
    pub fn scan_step(&mut self) {
        let mut keys: BTreeMap<String, KeyUse> = self
            .rendered_key_names()
            .into_iter()
            .map(|k| {
                (
                    k,
                    KeyUse {
                        objects: 0,
                        older_revisions: Some(0),
                    },
                )
            })
            .collect();
        for o in &self.store {
            if let Some((name, _)) = &o.seal {
                keys.entry(name.clone()).or_default().objects += 1;
            }
            for (name, _) in o.history.iter().flatten() {
                *keys
                    .entry(name.clone())
                    .or_default()
                    .older_revisions
                    .get_or_insert(0) += 1;
            }
        }
        let now = self.now;
        let Some(scan) = self
            .scans
            .values_mut()
            .find(|s| s.scan.state == ScanState::Running)
        else {
            return;
        };
        scan.scan.state = ScanState::Finished {
            summary: KeySummary {
                ok: false,
                etcd_revision: 1,
                history: true,
                keys,
                truncated: false,
            },
            at: now,
        };
    }

    /// etcd compacts its history: older revisions are gone.
    pub fn compact(&mut self) {
        for o in &mut self.store {
            o.history.clear();
        }
    }

    /// The key names of the rendered config.
    pub fn rendered_key_names(&self) -> Vec<String> {
        self.rendered_config()
            .map(|c| c.secretbox_key_names().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// What each pod's API server reports it loaded: the hash of the bytes it loaded in
    /// kube-apiserver 1.37's format (proven in `tests/k8s_loaded_config.rs`), or unreachable
    /// when the test says so.
    pub fn replica_reports(&self) -> Vec<ReplicaReport> {
        if self.deployment_missing {
            return Vec::new();
        }
        self.pods
            .iter()
            .enumerate()
            .map(|(i, p)| ReplicaReport {
                pod: format!("apiserver-{i}"),
                loaded: if p.unreachable {
                    Loaded::Unreachable {
                        error: "connection refused".to_owned(),
                    }
                } else {
                    Loaded::Reported {
                        minor: self.minor,
                        hash: p.config.as_deref().and_then(|c| expected_hash(37, c)),
                    }
                },
            })
            .collect()
    }

    /// Hot reload of one pod whose loaded config differs from the Secret (kubelet updated the
    /// mount, the API server reloaded it); false when every pod runs the Secret's content.
    pub fn reload_one(&mut self) -> bool {
        let content = self.secret_content();
        let Some(pod) = self.pods.iter_mut().find(|p| p.config != content) else {
            return false;
        };
        pod.config = content;
        true
    }

    /// One reconcile: plan from scratch, execute the actions, stopping before action
    /// `fail_at` (an API error or a controller crash mid-way).
    pub fn reconcile_with(&mut self, fail_at: Option<usize>) -> Vec<Action> {
        let snapshot = self.snapshot();
        let actions = plan(&snapshot, &self.settings);
        self.check_drops(&snapshot, &actions);
        for (i, a) in actions.iter().enumerate() {
            if fail_at == Some(i) {
                break;
            }
            self.execute(a);
        }
        self.all_actions.extend(actions.iter().cloned());
        actions
    }

    /// One reconcile that carries out every action.
    pub fn reconcile(&mut self) -> Vec<Action> {
        self.reconcile_with(None)
    }

    /// Carries one action out, as the I/O layer would.
    pub fn execute(&mut self, a: &Action) {
        match a {
            Action::PatchStatus {
                encryption,
                conditions,
            } => {
                let st = self.cluster.status.get_or_insert_with(Default::default);
                match encryption {
                    EncryptionStatusChange::Keep => {}
                    EncryptionStatusChange::Set(e) => st.encryption = Some(e.clone()),
                    EncryptionStatusChange::Clear => st.encryption = None,
                }
                for (k, v) in conditions {
                    st.conditions.insert(k.clone(), v.clone());
                }
            }
            Action::WriteConfigSecret {
                yaml,
                hash,
                annotations,
            } => {
                self.config_secret = Some(ConfigSecret {
                    data: Some(yaml.clone().into_bytes()),
                    labels: BTreeMap::from([(names::LABEL_CONFIG_HASH.to_owned(), hash.clone())]),
                    annotations: annotations.clone(),
                });
            }
            Action::RollApiServer { hash, started } => {
                if self.template.as_deref() != Some(hash) {
                    self.template = Some(hash.clone());
                }
                self.started = Some(*started);
            }
            Action::CreateJob { job } => {
                let name = job.metadata.name.clone().unwrap();
                let args = job_args(job);
                if args[0] == "verify" {
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        self.scans.entry(name.clone())
                    {
                        let labels = job.metadata.labels.clone().unwrap_or_default();
                        let scan = StorageScan {
                            job: name.clone(),
                            attempt: labels[LABEL_SCAN_ATTEMPT].parse().unwrap(),
                            config_hash: labels[names::LABEL_CONFIG_HASH].clone(),
                            written: job
                                .metadata
                                .annotations
                                .as_ref()
                                .and_then(|a| a.get(ANNOTATION_ROLLOUT_STARTED))
                                .map(|v| v.parse().unwrap()),
                            state: ScanState::Running,
                        };
                        slot.insert(SimScan { scan });
                        self.scans_created += 1;
                    }
                    return;
                }
                if let std::collections::btree_map::Entry::Vacant(slot) = self.jobs.entry(name) {
                    let i = args.iter().position(|a| a == "--resources").unwrap();
                    let resources = args[i + 1].split(',').map(str::to_owned).collect();
                    slot.insert(SimJob {
                        resources,
                        next: 0,
                        state: JobState::Running,
                    });
                    self.jobs_created += 1;
                }
            }
            Action::DeleteJob { name } => {
                self.scans.remove(name);
                self.jobs.remove(name);
            }
            Action::Event { reason, note, .. } => self.events.push((reason.clone(), note.clone())),
            Action::MarkReloadStarted { started } => self.started = Some(*started),
            Action::ReportDrift { .. }
            | Action::ReportRetained { .. }
            | Action::RequeueAfter(_)
            | Action::Backoff { .. } => {}
        }
    }

    /// The current content of the rendered Secret (what a starting pod loads).
    fn secret_content(&self) -> Option<Vec<u8>> {
        self.config_secret.as_ref().and_then(|r| r.data.clone())
    }

    /// Replaces one pod of an old template with a new one; false when none is left.
    pub fn roll_one(&mut self) -> bool {
        let content = self.secret_content();
        let template = self.template.clone();
        match self.pods.iter_mut().find(|p| p.template != template) {
            Some(p) => {
                *p = Pod {
                    template,
                    config: content,
                    unreachable: false,
                };
                true
            }
            None => false,
        }
    }

    /// Rolls every API server to the current template.
    pub fn roll_all(&mut self) {
        while self.roll_one() {}
    }

    /// A pod restarts (or reloads its config file) with the current Secret content.
    pub fn restart_pod(&mut self, i: usize) {
        let n = self.pods.len();
        let content = self.secret_content();
        self.pods[i % n].config = content;
    }

    /// Advances the clock by `d`.
    pub fn tick(&mut self, d: Duration) {
        self.now = self.now.checked_add(d).unwrap();
    }

    /// A client writes an object of `resource` through pod `pod`.
    pub fn user_write(&mut self, resource: &str, pod: usize) {
        let n = self.pods.len();
        let seal = writer(self.pods[pod % n].config.as_deref(), resource);
        self.store.push(Obj {
            resource: resource.to_owned(),
            seal,
            history: Vec::new(),
        });
    }

    /// The running Job rewrites its next object through pod `pod` (read, then write back).
    pub fn job_step(&mut self, pod: usize) {
        let n = self.pods.len();
        let Some((_, job)) = self
            .jobs
            .iter_mut()
            .find(|(_, j)| j.state == JobState::Running)
        else {
            return;
        };
        let idx: Vec<usize> = (0..self.store.len())
            .filter(|&i| job.resources.contains(&self.store[i].resource))
            .collect();
        if job.next >= idx.len() {
            job.state = JobState::Succeeded;
            return;
        }
        let o = idx[job.next];
        let cfg = self.pods[pod % n].config.clone();
        if !readable(cfg.as_deref(), &self.store[o]) {
            job.state = JobState::Failed {
                reason: "object unreadable".into(),
            };
            return;
        }
        let old = self.store[o].seal.take();
        self.store[o].history.push(old);
        self.store[o].seal = writer(cfg.as_deref(), &self.store[o].resource.clone());
        job.next += 1;
    }

    /// Runs the Jobs and the storage scans to their end.
    pub fn finish_jobs(&mut self) {
        while self
            .scans
            .values()
            .any(|s| s.scan.state == ScanState::Running)
        {
            self.scan_step();
        }
        for i in 0..10_000 {
            if !self.jobs.values().any(|j| j.state == JobState::Running) {
                return;
            }
            self.job_step(i);
        }
    }

    /// Fails the running Job (backoff limit exceeded).
    pub fn fail_job(&mut self) {
        if let Some(j) = self
            .jobs
            .values_mut()
            .find(|j| j.state == JobState::Running)
        {
            j.state = JobState::Failed {
                reason: "BackoffLimitExceeded".into(),
            };
        }
    }

    /// Drives reconcile, rollout and Jobs until nothing changes; returns the phase.
    pub fn settle(&mut self) -> Option<EncryptionPhase> {
        for _ in 0..40 {
            let before = self.fingerprint();
            self.reconcile();
            self.roll_all();
            if self.settings.reload == ReloadMode::HotReload {
                while self.reload_one() {}
            }
            self.finish_jobs();
            self.check_invariants();
            if before == self.fingerprint() {
                self.reconcile();
                self.check_invariants();
                return self.phase();
            }
        }
        panic!("did not settle: phase {:?}", self.phase());
    }

    /// Everything a reconcile, rollout or Job step can change.
    pub fn fingerprint(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.cluster.status,
            self.config_secret,
            self.template,
            self.started,
            self.jobs,
            self.scans,
            self.pods
                .iter()
                .map(|p| (&p.template, p.config.as_ref().map(|c| content_hash(c))))
                .collect::<Vec<_>>(),
            self.sealed_with()
        )
    }

    /// The no-data-loss invariants, at any moment.
    pub fn check_invariants(&self) {
        for (i, o) in self.store.iter().enumerate() {
            for (p, pod) in self.pods.iter().enumerate() {
                assert!(
                    readable(pod.config.as_deref(), o),
                    "object {i} ({}, sealed with {:?}) unreadable by API server {p}",
                    o.resource,
                    o.seal.as_ref().map(|s| &s.0)
                );
            }
        }
        // No object, current or an older revision etcd still holds, is ever sealed with a key
        // that a serving API server does not hold.
        for (i, o) in self.store.iter().enumerate() {
            for (name, m) in o.history.iter().flatten() {
                for (p, pod) in self.pods.iter().enumerate() {
                    assert!(
                        holds_key(pod.config.as_deref(), name, m),
                        "an older revision of object {i} ({}) is sealed with {name}, which API server {p} does not hold",
                        o.resource
                    );
                }
            }
        }
        if let Some(st) = self.status() {
            if st.phase == Some(EncryptionPhase::Active)
                && st
                    .active_key
                    .starts_with(names::ACTIVE_KEY_SECRETBOX_PREFIX)
            {
                let key = &st.active_key[names::ACTIVE_KEY_SECRETBOX_PREFIX.len()..];
                for o in self
                    .store
                    .iter()
                    .filter(|o| st.encrypted_resources.contains(&o.resource))
                {
                    assert_eq!(
                        o.seal.as_ref().map(|s| s.0.as_str()),
                        Some(key),
                        "Active but a {} object is not sealed with {key}",
                        o.resource
                    );
                }
            }
        } else if self
            .condition(names::CONDITION_ENCRYPTION_INITIALIZED)
            .is_some_and(|c| c.status == "False")
        {
            assert!(
                self.store.iter().all(|o| o.seal.is_none()),
                "decrypted and cleared, but an object is still sealed"
            );
        }
        if let Some(cfg) = self.rendered_config() {
            check_config(&cfg).expect("rendered config passes kube-apiserver validation");
            for p in &cfg.resources[0].providers {
                for k in p.secretbox.iter().flat_map(|s| s.keys.iter()) {
                    let i: usize = k.name.strip_prefix("key-").unwrap().parse().unwrap();
                    assert_eq!(
                        unb64(&k.secret),
                        material(i).to_vec(),
                        "rendered material of {} is the spec's 32 bytes",
                        k.name
                    );
                }
            }
        }
    }

    /// The rule of key removal: a config that leaves out a key the Secret's config has may be
    /// written only when the current storage scan of that config (begun under the recorded
    /// rollout start) found nothing sealed with the key.
    fn check_drops(&self, snapshot: &ClusterSnapshot, actions: &[Action]) {
        let before = self.rendered_key_names();
        for a in actions {
            let Action::WriteConfigSecret { yaml, .. } = a else {
                continue;
            };
            let after: EncryptionConfig = serde_yaml::from_str(yaml).unwrap();
            let kept: Vec<&str> = after.secretbox_key_names().collect();
            for dropped in before.iter().filter(|k| !kept.contains(&k.as_str())) {
                let scan = snapshot
                    .scan
                    .as_ref()
                    .filter(|s| s.written == self.started)
                    .map(|s| &s.state);
                let Some(ScanState::Finished { summary, .. }) = scan else {
                    panic!(
                        "key {dropped} left the config without a finished storage scan ({scan:?})"
                    );
                };
                assert_eq!(
                    summary.use_of(dropped),
                    KeyVerdict::Unused,
                    "key {dropped} left the config while the scan still counted it"
                );
            }
        }
    }

    /// Every text the planner produced for humans or the API (events, conditions, status).
    pub fn texts(&self) -> String {
        let mut s = String::new();
        for (r, n) in &self.events {
            s.push_str(r);
            s.push_str(n);
        }
        s.push_str(&serde_json::to_string(&self.cluster.status).unwrap());
        for a in &self.all_actions {
            match a {
                Action::WriteConfigSecret {
                    hash, annotations, ..
                } => {
                    s.push_str(hash);
                    s.push_str(&format!("{annotations:?}"));
                }
                Action::CreateJob { job } => s.push_str(&serde_json::to_string(job).unwrap()),
                other => s.push_str(&format!("{other:?}")),
            }
        }
        s
    }

    /// The name of the key each stored object is sealed with (`None`: plaintext).
    pub fn sealed_with(&self) -> Vec<Option<String>> {
        self.store
            .iter()
            .map(|o| o.seal.as_ref().map(|s| s.0.clone()))
            .collect()
    }
}

/// The container arguments of a Job the planner built.
pub fn job_args(job: &k8s_openapi::api::batch::v1::Job) -> Vec<String> {
    job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
}

/// Whether an API server with `config` holds key `name` with material `m` (in any entry).
fn holds_key(config: Option<&[u8]>, name: &str, m: &[u8; 32]) -> bool {
    let Some(config) = config else {
        return false;
    };
    let cfg: EncryptionConfig = serde_yaml::from_slice(config).unwrap();
    cfg.resources
        .iter()
        .flat_map(|r| r.providers.iter())
        .filter_map(|p| p.secretbox.as_ref())
        .flat_map(|s| s.keys.iter())
        .any(|k| k.name == name && B64.decode(&k.secret).ok().as_deref() == Some(m.as_slice()))
}

/// The providers an API server with `config` uses for `resource` (None: not covered).
fn providers(
    config: Option<&[u8]>,
    resource: &str,
) -> Option<Vec<eargate_policy::apiserver_config::Provider>> {
    let cfg: EncryptionConfig = serde_yaml::from_slice(config?).unwrap();
    cfg.resources
        .into_iter()
        .find(|e| e.resources.iter().any(|r| r == resource))
        .map(|e| e.providers)
}

fn writer(config: Option<&[u8]>, resource: &str) -> Seal {
    let ps = providers(config, resource)?;
    let first = ps.first()?;
    let k = first.secretbox.as_ref()?.keys.first()?;
    Some((k.name.clone(), unb64(&k.secret).try_into().unwrap()))
}

/// Whether an API server with `config` can read `o`.
pub fn readable(config: Option<&[u8]>, o: &Obj) -> bool {
    match providers(config, &o.resource) {
        None => o.seal.is_none(),
        Some(ps) => match &o.seal {
            None => ps.iter().any(|p| p.identity.is_some()),
            Some((name, m)) => ps
                .iter()
                .filter_map(|p| p.secretbox.as_ref())
                .flat_map(|s| s.keys.iter())
                .any(|k| {
                    &k.name == name && B64.decode(&k.secret).ok().as_deref() == Some(m.as_slice())
                }),
        },
    }
}
