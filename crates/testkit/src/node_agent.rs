//! The node agent: test code standing in for kubelet and kube-controller-manager in one
//! control-plane namespace of a seed, for a [`UserCluster`] whose API server replicas are the
//! `apiserver` Deployment's pods. What it does, and nothing else:
//!
//! - **Deployment rollout** (deployment + replicaset controllers, kubelet): when the pod
//!   template of the Deployment changes (a new template hash, or `metadata.generation` ahead of
//!   the status), it replaces the replicas one at a time (maxUnavailable 1, maxSurge 0). For each
//!   replica: the old Pod is deleted gracefully (it is terminating while its process stops),
//!   the process is stopped, the Pod is removed; the Pod's secret volumes are materialised
//!   from the seed's Secrets at that moment, exactly as kubelet mounts them, and
//!   kube-apiserver starts with `--encryption-provider-config=<mounted file>` when the mounted
//!   rendered-config Secret holds the config key; once `/readyz` answers, a Pod object (the
//!   template's labels and annotations plus `pod-template-hash`, owned by the template's
//!   ReplicaSet, bound to this node) is created and its status set Running and Ready; it
//!   counts as available, and the next replica is replaced, after the Deployment's
//!   `minReadySeconds`. After every step the Deployment status (`observedGeneration`, `replicas`, `updatedReplicas`,
//!   `readyReplicas`, `availableReplicas`, `unavailableReplicas`) is written through the
//!   status subresource, and the ReplicaSets are scaled.
//! - **Jobs** (job controller, kubelet): for every Job labelled
//!   `app.kubernetes.io/managed-by=eargate`, it sets `startTime`/`active` through the status
//!   subresource. Every attempt gets a Pod, created as the job controller creates it: named
//!   `<job>-<5 random characters>` (`generateName`), the template's labels and annotations
//!   plus `batch.kubernetes.io/job-name`, `job-name`, `batch.kubernetes.io/controller-uid` and
//!   `controller-uid`, owned by the Job (`controller` and `blockOwnerDeletion`), the
//!   template's spec bound to this node; without the `batch.kubernetes.io/job-tracking`
//!   finalizer, which nothing here would remove. Then, as kubelet, it materialises the Pod's
//!   secret volumes and runs the container's command as written in the Job spec (no `command`
//!   means the image's entrypoint, the `eargate` binary), with each mount path swapped for its
//!   materialised directory, the container's `terminationMessagePath` (default
//!   `/dev/termination-log`) for an empty file of the attempt (`<attempt dir>/termination-log`),
//!   and Kubermatic's etcd endpoints (`https://etcd-N.etcd.<namespace>.svc.cluster.local:2379`,
//!   see [`crate::rollout::kubermatic_etcd_endpoints`]) for the user cluster's etcd, as cluster
//!   DNS would resolve them. The Pod is `Running` while the process runs, then `Succeeded` or
//!   `Failed` with its container `terminated` (exit code, reason `Completed` or `Error`) and
//!   the termination message as kubelet reads it: the file's last 4096 bytes; with
//!   `terminationMessagePolicy: FallbackToLogsOnError`, a failed container whose file is empty
//!   gets the tail of its log instead (stdout and stderr lines in the order they came, the
//!   last 80 lines, at most 2048 bytes). Pod statuses go through the status subresource, as
//!   kubelet writes them. Failed attempts are retried up to `backoffLimit`; then the Job gets
//!   `SuccessCriteriaMet` + `Complete`, or `FailureTarget` + `Failed` (reason
//!   `BackoffLimitExceeded`), with `succeeded`/`failed` counts and `completionTime`.
//!   [`job_termination_message`] reads the message back as a controller does.
//! - It creates the namespace's `default` ServiceAccount (the serviceaccount controller's
//!   job), without which the seed refuses Pods.
//! - **Pod addresses**: every replica listens on loopback at a port of its own, so a Pod's
//!   `podIP` is 127.0.0.1 and its API container's port (named `https`) is that replica's
//!   port — where a real Pod has an IP of its own and the template's port.
//! - **Secret volume sync, for hot reload only** (kubelet's periodic volume update): when the
//!   template's API container runs with `--encryption-provider-config-automatic-reload`, the
//!   agent rewrites a running replica's mounted config file (write, then rename) about a
//!   second after the Secret changes; kube-apiserver then reloads it on its own (it polls the
//!   file once a minute). Pods without that flag keep the file they started with.
//! - **Faults a test asks for**: [`AgentState::override_config`] makes a replica start with
//!   a config file other than the mounted Secret's (a stale or hand-edited mount).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSpec, PodTemplateSpec, Secret, ServiceAccount,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::user_cluster::UserCluster;

/// What the agent works on.
#[derive(Clone, Debug)]
pub struct NodeAgentConfig {
    /// The control-plane namespace in the seed.
    pub namespace: String,
    /// The API server Deployment (its replicas are the user cluster's API servers).
    pub deployment: String,
    /// The Secret holding the rendered EncryptionConfiguration, and its data key.
    pub config_secret: String,
    /// The data key of the rendered file inside [`NodeAgentConfig::config_secret`].
    pub config_secret_key: String,
    /// The program a container runs when it names no `command` (the image's entrypoint).
    pub entrypoint: PathBuf,
    /// `spec.nodeName` of the Pods this agent runs.
    pub node_name: String,
    /// Where mounted volumes, Job outputs and the agent's files go.
    pub dir: PathBuf,
    /// The user cluster etcd's loopback endpoint: Kubermatic's etcd endpoints in a Job's
    /// arguments are swapped for it (`None`: left as written).
    pub etcd_endpoint: Option<String>,
}

/// One run of a Job's container.
#[derive(Clone, Debug)]
pub struct JobRun {
    /// The Job's name.
    pub job: String,
    /// Which attempt (1 first; retries up to `backoffLimit`).
    pub attempt: u32,
    /// The attempt's Pod.
    pub pod: String,
    /// The container's arguments as written in the Job spec.
    pub spec_args: Vec<String>,
    /// What was run: program and arguments after the mount paths, the termination message
    /// path and Kubermatic's etcd endpoints were swapped.
    pub program: PathBuf,
    /// The arguments as run.
    pub args: Vec<String>,
    /// The exit code (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    /// What the container printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
    /// The termination message written into the Pod's status (empty: none).
    pub termination_message: String,
}

/// One finished Deployment rollout.
#[derive(Clone, Debug)]
pub struct RolloutRecord {
    /// The Deployment generation it rolled to.
    pub generation: i64,
    /// The template's `eargate.k8c.io/encryption-config-hash` annotation.
    pub config_hash: Option<String>,
    /// Whether the replicas were started with an encryption configuration.
    pub with_encryption_config: bool,
    /// How long the whole rollout took.
    pub took: Duration,
}

/// What the agent did, shared with the test.
#[derive(Default)]
pub struct AgentState {
    journal: Mutex<Vec<String>>,
    job_runs: Mutex<Vec<JobRun>>,
    rollouts: Mutex<Vec<RolloutRecord>>,
    /// While set, a new Job is marked active but its container does not start yet.
    pub hold_jobs: AtomicBool,
    /// Jobs seen (marked active) so far.
    pub jobs_started: AtomicU32,
    /// Set while a rollout is replacing replicas.
    pub rolling: AtomicBool,
    /// Container restarts asked for by the test (replica indexes), as if the process died.
    restart_requests: Mutex<Vec<usize>>,
    /// Set while a requested container restart is under way.
    pub restarting: AtomicBool,
    /// Container restarts done.
    pub restarts_done: AtomicU32,
    /// Replica index -> config file content it starts with instead of the mounted Secret's.
    config_overrides: Mutex<HashMap<usize, Vec<u8>>>,
    /// Hot-reload file rewrites done (one per replica per Secret change).
    pub volume_syncs: AtomicU32,
}

impl AgentState {
    fn note(&self, line: String) {
        eprintln!("node-agent: {line}");
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Every line the agent logged.
    pub fn journal(&self) -> Vec<String> {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every Job container run so far.
    pub fn job_runs(&self) -> Vec<JobRun> {
        self.job_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks kubelet to restart the container of replica `i` (its process stops and starts
    /// again with the same mounted volumes; the Pod reports not ready meanwhile).
    pub fn request_restart(&self, i: usize) {
        self.restart_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(i);
    }

    /// From now on, replica `i` starts (or restarts) with a config file holding `content`
    /// instead of the mounted Secret's (`None` puts the Secret's file back for its next start).
    pub fn override_config(&self, i: usize, content: Option<Vec<u8>>) {
        let mut overrides = self
            .config_overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match content {
            Some(c) => overrides.insert(i, c),
            None => overrides.remove(&i),
        };
    }

    fn config_override(&self, i: usize) -> Option<Vec<u8>> {
        self.config_overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&i)
            .cloned()
    }

    /// Every finished rollout so far.
    pub fn rollouts(&self) -> Vec<RolloutRecord> {
        self.rollouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The running agent; dropping it stops it (after the step in progress).
pub struct NodeAgent {
    /// What the agent did, and the faults a test can ask of it.
    pub state: Arc<AgentState>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeAgent {
    /// Starts the agent on its own thread with `seed_kubeconfig` (an identity that may write
    /// Deployment, Pod, ReplicaSet and Job status in the namespace).
    pub fn start(
        config: NodeAgentConfig,
        seed_kubeconfig: PathBuf,
        user: Arc<UserCluster>,
    ) -> NodeAgent {
        std::fs::create_dir_all(&config.dir).expect("create the node agent dir");
        let state = Arc::new(AgentState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("node-agent-{}", config.namespace))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime for the node agent");
                runtime.block_on(async move {
                    let seed = crate::apiserver::client_from(&seed_kubeconfig).await;
                    let kubelet = Kubelet {
                        seed: seed.clone(),
                        user,
                        config: config.clone(),
                        state: st.clone(),
                        pods: Vec::new(),
                        replicasets: BTreeMap::new(),
                        pod_counter: 0,
                    };
                    let jobs = JobRunner {
                        seed,
                        config,
                        state: st,
                        handled: HashSet::new(),
                    };
                    let a = tokio::spawn(kubelet.run(sp.clone()));
                    let b = tokio::spawn(jobs.run(sp));
                    let _ = tokio::join!(a, b);
                });
            })
            .expect("start the node agent");
        NodeAgent {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the agent and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// RFC 3339 at second precision, as `metav1.Time` is written.
fn now_time() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .expect("a valid timestamp")
        .to_string()
}

/// A stable hash of the pod template (the role of the deployment controller's
/// `pod-template-hash`).
fn template_hash(template: &PodTemplateSpec) -> String {
    let text = serde_json::to_string(template).expect("the template serialises");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// Materialises the secret volumes `container` mounts under `root`, as kubelet would at
/// container start: each mount path becomes a directory holding the Secret's items (or all
/// its keys). A missing optional Secret gives an empty directory; a missing required one is
/// an error (the container would not start). Returns `(mount path, local directory)`,
/// longest mount path first.
async fn mount_secret_volumes(
    client: &Client,
    namespace: &str,
    pod: &PodSpec,
    container: &Container,
    root: &Path,
) -> Result<Vec<(String, PathBuf)>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = pod.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            return Err(format!("volume {:?} is not declared", mount.name));
        };
        let local = root.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&local).map_err(|e| format!("{}: {e}", local.display()))?;
        let Some(source) = &volume.secret else {
            mounts.push((mount.mount_path.clone(), local));
            continue;
        };
        let name = source.secret_name.clone().unwrap_or_default();
        let found = secrets
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))?;
        let Some(secret) = found else {
            if source.optional == Some(true) {
                mounts.push((mount.mount_path.clone(), local));
                continue;
            }
            return Err(format!(
                "Secret {namespace}/{name} not found (volume {:?})",
                volume.name
            ));
        };
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let items: Vec<(String, String, Option<i32>)> = match &source.items {
            Some(items) => items
                .iter()
                .map(|i| (i.key.clone(), i.path.clone(), i.mode))
                .collect(),
            None => data.keys().map(|k| (k.clone(), k.clone(), None)).collect(),
        };
        for (key, path, mode) in items {
            let Some(bytes) = data.get(&key) else {
                if source.optional == Some(true) {
                    continue;
                }
                return Err(format!("Secret {namespace}/{name} has no key {key:?}"));
            };
            let file = local.join(&path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let _ = std::fs::remove_file(&file);
            std::fs::write(&file, bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            let mode = mode.or(source.default_mode).unwrap_or(0o644) as u32;
            // The owner (this process) must keep read access, as the container's user has.
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode | 0o400))
                .map_err(|e| e.to_string())?;
        }
        mounts.push((mount.mount_path.clone(), local));
    }
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    Ok(mounts)
}

/// `arg` with every mount path swapped for its materialised directory.
fn swap_mounts(arg: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = arg.to_owned();
    for (mount, local) in mounts {
        if out.contains(mount.as_str()) {
            out = out.replace(mount.as_str(), &local.display().to_string());
            break;
        }
    }
    out
}

struct PodRecord {
    name: String,
    template_hash: String,
    restarts: u32,
    /// The mounted config file (the Secret's), when the Secret holds one.
    mounted_config: Option<PathBuf>,
    /// The replica reloads that file by itself (`--encryption-provider-config-automatic-reload`).
    hot_reload: bool,
    /// The port its Pod declares; a container restart listens there again, as a restarted
    /// container keeps its Pod's IP.
    port: u16,
}

/// The flag that makes kube-apiserver reload its encryption config file by itself.
const AUTOMATIC_RELOAD_FLAG: &str = "--encryption-provider-config-automatic-reload";

/// The template's API container runs with [`AUTOMATIC_RELOAD_FLAG`].
fn hot_reload_template(template: &PodTemplateSpec) -> bool {
    template
        .spec
        .iter()
        .flat_map(|s| s.containers.first())
        .flat_map(|c| c.args.iter().flatten())
        .any(|a| a == AUTOMATIC_RELOAD_FLAG || a == &format!("{AUTOMATIC_RELOAD_FLAG}=true"))
}

/// kubelet plus the deployment and replicaset controllers, for one Deployment.
struct Kubelet {
    seed: Client,
    user: Arc<UserCluster>,
    config: NodeAgentConfig,
    state: Arc<AgentState>,
    /// One slot per replica.
    pods: Vec<Option<PodRecord>>,
    /// Template hash -> (ReplicaSet name, uid).
    replicasets: BTreeMap<String, (String, String)>,
    pod_counter: u32,
}

impl Kubelet {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        ensure_default_service_account(&self.seed, &self.config.namespace, &self.state).await;
        while !stop.load(Ordering::SeqCst) {
            let requests: Vec<usize> = std::mem::take(
                &mut *self
                    .state
                    .restart_requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            for i in requests {
                self.state.restarting.store(true, Ordering::SeqCst);
                if let Err(e) = self.restart_container(i).await {
                    self.state
                        .note(format!("error: restarting replica {i}: {e}"));
                }
                self.state.restarting.store(false, Ordering::SeqCst);
            }
            if let Err(e) = self.sync().await {
                self.state.note(format!("error: deployment sync: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if let Err(e) = self.sync_volumes().await {
                self.state.note(format!("error: volume sync: {e}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Hot-reload pods: rewrites each mounted config file whose content differs from the
    /// Secret's (as kubelet's volume manager does), atomically.
    async fn sync_volumes(&self) -> Result<(), String> {
        let files: Vec<(usize, PathBuf)> = self
            .pods
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let p = p.as_ref()?;
                p.hot_reload.then_some((i, p.mounted_config.clone()?))
            })
            .collect();
        if files.is_empty() {
            return Ok(());
        }
        let secrets: Api<Secret> = Api::namespaced(self.seed.clone(), &self.config.namespace);
        let Some(secret) = secrets
            .get_opt(&self.config.config_secret)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let Some(content) = secret
            .data
            .and_then(|mut d| d.remove(&self.config.config_secret_key))
        else {
            return Ok(());
        };
        for (i, file) in files {
            if std::fs::read(&file).ok().as_deref() == Some(content.0.as_slice()) {
                continue;
            }
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, &content.0).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &file).map_err(|e| format!("{}: {e}", file.display()))?;
            self.state.volume_syncs.fetch_add(1, Ordering::SeqCst);
            self.state.note(format!(
                "replica {i}: mounted config file updated from the Secret (the API server reloads it by itself)"
            ));
        }
        Ok(())
    }

    /// The file replica `i` starts with: the test's override when one is set (written next to
    /// the pod's mounts), else the mounted Secret's.
    fn start_file(
        &self,
        i: usize,
        pod_dir: &Path,
        mounted: Option<&Path>,
    ) -> Result<Option<PathBuf>, String> {
        let Some(content) = self.state.config_override(i) else {
            return Ok(mounted.map(Path::to_owned));
        };
        let file = pod_dir.join("override-encryption-configuration.yaml");
        std::fs::write(&file, content).map_err(|e| format!("{}: {e}", file.display()))?;
        self.state.note(format!(
            "replica {i}: starting with an overridden config file instead of the mounted Secret's"
        ));
        Ok(Some(file))
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.seed.clone(), &self.config.namespace)
    }

    fn pod_api(&self) -> Api<Pod> {
        Api::namespaced(self.seed.clone(), &self.config.namespace)
    }

    async fn sync(&mut self) -> Result<(), String> {
        let Some(d) = self
            .deployments()
            .get_opt(&self.config.deployment)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let generation = d.metadata.generation.unwrap_or(0);
        let spec = d.spec.clone().unwrap_or_default();
        let desired = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let desired = desired.min(self.user.replica_count());
        if self.pods.len() < desired {
            self.pods.resize_with(desired, || None);
        }
        let template = spec.template.clone();
        let target = template_hash(&template);
        let observed = d
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        let stale: Vec<usize> = (0..desired)
            .filter(|i| {
                self.pods[*i]
                    .as_ref()
                    .is_none_or(|p| p.template_hash != target)
            })
            .collect();
        if stale.is_empty() && observed >= generation {
            return Ok(());
        }
        let began = Instant::now();
        let config_hash = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(eargate_config_hash_annotation()))
            .cloned();
        self.state.note(format!(
            "deployment {}/{} generation {generation}: rolling {} replica(s) to template {target} (config hash {})",
            self.config.namespace,
            self.config.deployment,
            stale.len(),
            config_hash.as_deref().unwrap_or("none")
        ));
        self.state.rolling.store(true, Ordering::SeqCst);
        let result = self
            .roll(&d, generation, &template, &target, desired, &stale)
            .await;
        self.state.rolling.store(false, Ordering::SeqCst);
        let with_config = result?;
        if let Some(with_encryption_config) = with_config {
            self.state
                .rollouts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RolloutRecord {
                    generation,
                    config_hash,
                    with_encryption_config,
                    took: began.elapsed(),
                });
            self.state.note(format!(
                "deployment generation {generation}: rollout complete in {:.1} s",
                began.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Replaces the stale replicas one at a time. `Some(with config)` when the rollout
    /// finished, `None` when the template changed meanwhile (the next sync goes on).
    async fn roll(
        &mut self,
        d: &Deployment,
        generation: i64,
        template: &PodTemplateSpec,
        target: &str,
        desired: usize,
        stale: &[usize],
    ) -> Result<Option<bool>, String> {
        self.ensure_replicaset(d, template, target).await?;
        self.write_status(generation, target, desired, 0).await?;
        let min_ready = d
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0);
        let mut with_config = true;
        for &i in stale {
            if let Some(old) = self.pods[i].take() {
                self.terminate(i, &old).await?;
                self.sync_replicasets().await?;
                self.write_status(generation, target, desired, 0).await?;
            }
            let pod_name = {
                self.pod_counter += 1;
                format!(
                    "{}-{target}-{:05x}",
                    self.config.deployment, self.pod_counter
                )
            };
            let mounted = self.mount_pod(template, &pod_name).await?;
            let pod_dir = self.config.dir.join("pods").join(&pod_name);
            let config_file = self.start_file(i, &pod_dir, mounted.as_deref())?;
            with_config &= config_file.is_some();
            let hot_reload = hot_reload_template(template) && config_file.is_some();
            let user = self.user.clone();
            let file = config_file.clone();
            let extra: Vec<String> = if hot_reload {
                vec![AUTOMATIC_RELOAD_FLAG.to_owned()]
            } else {
                Vec::new()
            };
            let url = tokio::task::spawn_blocking(move || {
                user.start_replica_with(i, file.as_deref(), &extra)
            })
            .await
            .map_err(|e| format!("starting replica {i}: {e}"))?;
            let port = replica_port(&url)?;
            self.create_pod(template, target, &pod_name, port).await?;
            self.pods[i] = Some(PodRecord {
                name: pod_name.clone(),
                template_hash: target.to_owned(),
                restarts: 0,
                mounted_config: mounted,
                hot_reload,
                port,
            });
            self.state.note(format!(
                "replica {i}: pod {pod_name} ready at {url} ({})",
                if config_file.is_some() {
                    "with --encryption-provider-config"
                } else {
                    "no encryption config mounted"
                }
            ));
            self.sync_replicasets().await?;
            // Available only after minReadySeconds, and only then the next replica goes.
            if min_ready > 0 {
                self.write_status(generation, target, desired, 1).await?;
                tokio::time::sleep(Duration::from_secs(min_ready)).await;
            }
            self.write_status(generation, target, desired, 0).await?;
            let now = self
                .deployments()
                .get(&self.config.deployment)
                .await
                .map_err(|e| e.to_string())?;
            if now.metadata.generation.unwrap_or(0) != generation {
                self.state.note(format!(
                    "deployment generation moved from {generation} to {} during the rollout",
                    now.metadata.generation.unwrap_or(0)
                ));
                return Ok(None);
            }
        }
        Ok(Some(with_config))
    }

    /// Materialises the apiserver container's volumes for a new pod; the path of the
    /// EncryptionConfiguration file when the mounted rendered-config Secret holds it.
    async fn mount_pod(
        &self,
        template: &PodTemplateSpec,
        pod_name: &str,
    ) -> Result<Option<PathBuf>, String> {
        let spec = template.spec.clone().unwrap_or_default();
        let Some(container) = spec.containers.first() else {
            return Err("the pod template has no container".to_owned());
        };
        let root = self.config.dir.join("pods").join(pod_name);
        let mounts =
            mount_secret_volumes(&self.seed, &self.config.namespace, &spec, container, &root)
                .await?;
        // The mount of the rendered-config Secret, if the template mounts it.
        let config_volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| {
                v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                    == Some(self.config.config_secret.as_str())
            })
            .map(|v| v.name.clone());
        let Some(volume) = config_volume else {
            return Ok(None);
        };
        let mount_path = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume)
            .map(|m| m.mount_path.clone());
        let local = mounts
            .iter()
            .find(|(m, _)| Some(m) == mount_path.as_ref())
            .map(|(_, l)| l.join(&self.config.config_secret_key));
        Ok(local.filter(|f| f.is_file()))
    }

    async fn create_pod(
        &self,
        template: &PodTemplateSpec,
        target: &str,
        pod_name: &str,
        port: u16,
    ) -> Result<(), String> {
        let meta = template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.clone().unwrap_or_default();
        labels.insert("pod-template-hash".to_owned(), target.to_owned());
        let (rs_name, rs_uid) = self
            .replicasets
            .get(target)
            .cloned()
            .ok_or("no ReplicaSet for the template")?;
        let mut spec = serde_json::to_value(template.spec.clone().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        spec["nodeName"] = json!(self.config.node_name);
        // This replica's loopback port stands in for the Pod's own IP (see the module docs).
        if let Some(container) = spec["containers"].get_mut(0) {
            container["ports"] =
                json!([{"name": "https", "containerPort": port, "protocol": "TCP"}]);
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": pod_name,
                "namespace": self.config.namespace,
                "labels": labels,
                "annotations": meta.annotations.clone().unwrap_or_default(),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": rs_name, "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": spec
        }))
        .map_err(|e| e.to_string())?;
        self.pod_api()
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| format!("creating Pod {pod_name}: {e}"))?;
        let now = now_time();
        let container_statuses: Vec<serde_json::Value> = template
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| {
                json!({"name": c.name, "ready": true, "started": true, "restartCount": 0,
                       "image": c.image, "imageID": "",
                       "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let conditions: Vec<serde_json::Value> =
            ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                .iter()
                .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
                .collect();
        let status = json!({"status": {
            "phase": "Running",
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": now,
            "conditions": conditions,
            "containerStatuses": container_statuses,
        }});
        self.pod_api()
            .patch_status(pod_name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(|e| format!("writing the status of Pod {pod_name}: {e}"))?;
        Ok(())
    }

    /// A container restart: the Pod turns not ready, the process stops and starts again with
    /// the same mounted files, the Pod turns ready with its restart count raised.
    async fn restart_container(&mut self, i: usize) -> Result<(), String> {
        let Some(pod) = self.pods.get_mut(i).and_then(Option::as_mut) else {
            return Err(format!("replica {i} has no pod"));
        };
        pod.restarts += 1;
        let (name, restarts) = (pod.name.clone(), pod.restarts);
        let (mounted, hot_reload, port) = (pod.mounted_config.clone(), pod.hot_reload, pod.port);
        let pod_dir = self.config.dir.join("pods").join(&name);
        let file = self.start_file(i, &pod_dir, mounted.as_deref())?;
        self.pod_ready(&name, false, restarts - 1).await?;
        self.write_ready(1).await?;
        self.state
            .note(format!("replica {i}: container of pod {name} restarting"));
        let user = self.user.clone();
        let mut extra = vec![format!("--secure-port={port}")];
        if hot_reload {
            extra.push(AUTOMATIC_RELOAD_FLAG.to_owned());
        }
        let url = tokio::task::spawn_blocking(move || {
            user.stop_replica(i);
            user.start_replica_with(i, file.as_deref(), &extra)
        })
        .await
        .map_err(|e| format!("restarting replica {i}: {e}"))?;
        self.pod_ready(&name, true, restarts).await?;
        self.write_ready(0).await?;
        self.state.restarts_done.fetch_add(1, Ordering::SeqCst);
        self.state.note(format!(
            "replica {i}: container of pod {name} restarted, ready at {url} (restart count {restarts})"
        ));
        Ok(())
    }

    async fn pod_ready(&self, name: &str, ready: bool, restarts: u32) -> Result<(), String> {
        let now = now_time();
        let status = if ready { "True" } else { "False" };
        let conditions: Vec<serde_json::Value> =
            ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                .iter()
                .map(|t| {
                    let s = if *t == "PodScheduled" || *t == "Initialized" {
                        "True"
                    } else {
                        status
                    };
                    json!({"type": t, "status": s, "lastTransitionTime": now})
                })
                .collect();
        let body = json!({"status": {"conditions": conditions}});
        self.pod_api()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(|e| format!("writing the status of Pod {name}: {e}"))?;
        // Container statuses are a list: rewrite it whole, as kubelet does.
        let pod = self
            .pod_api()
            .get(name)
            .await
            .map_err(|e| format!("reading Pod {name}: {e}"))?;
        let statuses: Vec<serde_json::Value> = pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let state = if ready {
                    json!({"running": {"startedAt": now}})
                } else {
                    json!({"waiting": {"reason": "ContainerCreating"}})
                };
                json!({"name": c.name, "ready": ready, "started": ready,
                       "restartCount": restarts, "image": c.image, "imageID": c.image_id,
                       "state": state})
            })
            .collect();
        self.pod_api()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"containerStatuses": statuses}})),
            )
            .await
            .map_err(|e| format!("writing the status of Pod {name}: {e}"))?;
        Ok(())
    }

    /// Ready and available counts with `down` replicas not ready.
    async fn write_ready(&self, down: usize) -> Result<(), String> {
        let n = self.pods.iter().flatten().count();
        let ready = n.saturating_sub(down);
        let body = json!({"status": {
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": self.pods.len().saturating_sub(ready),
        }});
        self.deployments()
            .patch_status(
                &self.config.deployment,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
            .map_err(|e| format!("writing the Deployment status: {e}"))?;
        Ok(())
    }

    /// Graceful deletion (the Pod is terminating while the process stops), then the final
    /// delete kubelet sends once the container is gone.
    async fn terminate(&self, i: usize, old: &PodRecord) -> Result<(), String> {
        let pods = self.pod_api();
        match pods.delete(&old.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(format!("deleting Pod {}: {e}", old.name)),
        }
        let user = self.user.clone();
        tokio::task::spawn_blocking(move || user.stop_replica(i))
            .await
            .map_err(|e| format!("stopping replica {i}: {e}"))?;
        let force = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        match pods.delete(&old.name, &force).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(format!("removing Pod {}: {e}", old.name)),
        }
        self.state
            .note(format!("replica {i}: pod {} stopped and removed", old.name));
        Ok(())
    }

    async fn ensure_replicaset(
        &mut self,
        d: &Deployment,
        template: &PodTemplateSpec,
        target: &str,
    ) -> Result<(), String> {
        if self.replicasets.contains_key(target) {
            return Ok(());
        }
        let name = format!("{}-{target}", self.config.deployment);
        let api: Api<ReplicaSet> = Api::namespaced(self.seed.clone(), &self.config.namespace);
        let mut selector = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        selector.insert("pod-template-hash".to_owned(), target.to_owned());
        let mut template = serde_json::to_value(template).map_err(|e| e.to_string())?;
        template["metadata"]["labels"]["pod-template-hash"] = json!(target);
        let rs = json!({
            "metadata": {
                "name": name,
                "labels": {"pod-template-hash": target},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": d.name_any(), "uid": d.metadata.uid, "controller": true,
                    "blockOwnerDeletion": true}]
            },
            "spec": {"replicas": 0, "selector": {"matchLabels": selector}, "template": template}
        });
        let rs: ReplicaSet = serde_json::from_value(rs).map_err(|e| e.to_string())?;
        let created = match api.create(&PostParams::default(), &rs).await {
            Ok(rs) => rs,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                api.get(&name).await.map_err(|e| e.to_string())?
            }
            Err(e) => return Err(format!("creating ReplicaSet {name}: {e}")),
        };
        self.replicasets.insert(
            target.to_owned(),
            (name, created.metadata.uid.unwrap_or_default()),
        );
        Ok(())
    }

    /// Each ReplicaSet's `spec.replicas` and status: the pods running its template.
    async fn sync_replicasets(&self) -> Result<(), String> {
        let api: Api<ReplicaSet> = Api::namespaced(self.seed.clone(), &self.config.namespace);
        let mut counts: HashMap<&str, i32> = HashMap::new();
        for p in self.pods.iter().flatten() {
            *counts.entry(p.template_hash.as_str()).or_default() += 1;
        }
        for (hash, (name, _)) in &self.replicasets {
            let n = counts.get(hash.as_str()).copied().unwrap_or(0);
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await
            .map_err(|e| format!("scaling ReplicaSet {name}: {e}"))?;
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"replicas": n, "fullyLabeledReplicas": n,
                    "readyReplicas": n, "availableReplicas": n}})),
            )
            .await
            .map_err(|e| format!("writing the status of ReplicaSet {name}: {e}"))?;
        }
        Ok(())
    }

    /// The Deployment status from the pods; `warming` ready pods have not been ready for
    /// `minReadySeconds` yet, so they do not count as available.
    async fn write_status(
        &self,
        generation: i64,
        target: &str,
        desired: usize,
        warming: usize,
    ) -> Result<(), String> {
        let running: Vec<&PodRecord> = self.pods.iter().flatten().collect();
        let replicas = running.len();
        let updated = running.iter().filter(|p| p.template_hash == target).count();
        let ready = replicas;
        let available = ready.saturating_sub(warming);
        let body = json!({"status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": desired.saturating_sub(available),
        }});
        self.deployments()
            .patch_status(
                &self.config.deployment,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
            .map_err(|e| format!("writing the Deployment status: {e}"))?;
        Ok(())
    }
}

/// The port of a replica URL (`https://127.0.0.1:<port>`).
fn replica_port(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in the replica URL {url}"))
}

fn eargate_config_hash_annotation() -> &'static str {
    "eargate.k8c.io/encryption-config-hash"
}

/// The namespace's `default` ServiceAccount (the serviceaccount controller's job), without
/// which the seed refuses Pods.
async fn ensure_default_service_account(seed: &Client, namespace: &str, state: &AgentState) {
    let sas: Api<ServiceAccount> = Api::namespaced(seed.clone(), namespace);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).expect("an SA");
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => state.note(format!("error: creating the default ServiceAccount: {e}")),
    }
}

/// The label the job controller puts on a Job's Pods, naming the Job.
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// Its older form, still set.
pub const LEGACY_LABEL_JOB_NAME: &str = "job-name";
/// The label naming the Job's uid.
pub const LABEL_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// Its older form, still set.
pub const LEGACY_LABEL_CONTROLLER_UID: &str = "controller-uid";
/// Where a container writes its termination message unless it says otherwise.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The `terminationMessagePolicy` that falls back to the log's tail.
const FALLBACK_TO_LOGS_ON_ERROR: &str = "FallbackToLogsOnError";
/// The most of a termination message file kubelet reports (its end):
/// `MaxContainerTerminationMessageLength`.
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;
/// The most of the log kubelet reports instead (its end): `MaxContainerTerminationMessageLogLength`.
pub const TERMINATION_LOG_MAX_BYTES: usize = 2048;
/// The most log lines kubelet reports instead: `MaxContainerTerminationMessageLogLines`.
pub const TERMINATION_LOG_MAX_LINES: usize = 80;

/// The Pods of Job `job`, found as a controller finds them (label
/// `batch.kubernetes.io/job-name=<job>`), oldest first.
pub async fn job_pods(client: &Client, namespace: &str, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels(&format!("{LABEL_JOB_NAME}={job}"));
    let mut items = pods
        .list(&lp)
        .await
        .unwrap_or_else(|e| panic!("listing the Pods of Job {namespace}/{job}: {e}"))
        .items;
    items.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.name_any(),
        )
    });
    items
}

/// The termination message of the Pod's first container
/// (`status.containerStatuses[0].state.terminated.message`), once it has one.
pub fn pod_termination_message(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .message
        .clone()
}

/// What a controller reads back from a Job (a storage scan's per-key summary): the
/// termination message of a Pod of the Job in phase `Succeeded`. `None` while no Pod
/// succeeded, or when it left no message.
pub async fn job_termination_message(
    client: &Client,
    namespace: &str,
    job: &str,
) -> Option<String> {
    job_pods(client, namespace, job)
        .await
        .iter()
        .rev()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .and_then(pod_termination_message)
}

/// What a container's arguments name that this node has elsewhere.
struct ArgSwaps<'a> {
    /// `(mount path, materialised directory)`, longest mount path first.
    mounts: &'a [(String, PathBuf)],
    /// `(terminationMessagePath, the attempt's file)`.
    termination_message: (&'a str, &'a Path),
    namespace: &'a str,
    /// The user etcd's loopback endpoint, for Kubermatic's etcd endpoints.
    etcd_endpoint: Option<&'a str>,
}

impl ArgSwaps<'_> {
    fn apply(&self, arg: &str) -> String {
        let arg = match self.etcd_endpoint {
            Some(endpoint) => swap_etcd_endpoints(arg, self.namespace, endpoint),
            None => arg.to_owned(),
        };
        let (path, file) = self.termination_message;
        if arg.contains(path) {
            return arg.replace(path, &file.display().to_string());
        }
        swap_mounts(&arg, self.mounts)
    }
}

/// `arg` with Kubermatic's etcd endpoints for `namespace` swapped for `endpoint` (in a
/// comma-separated list, once: the three members are one etcd here).
fn swap_etcd_endpoints(arg: &str, namespace: &str, endpoint: &str) -> String {
    let members = crate::rollout::kubermatic_etcd_endpoints(namespace);
    if !members.iter().any(|m| arg.contains(m.as_str())) {
        return arg.to_owned();
    }
    let (flag, value) = match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with('-') => (Some(flag), value),
        _ => (None, arg),
    };
    let mut out: Vec<&str> = Vec::new();
    for item in value.split(',') {
        let item = if members.iter().any(|m| m == item) {
            endpoint
        } else {
            item
        };
        if !out.contains(&item) {
            out.push(item);
        }
    }
    let value = out.join(",");
    match flag {
        Some(flag) => format!("{flag}={value}"),
        None => value,
    }
}

/// A container's process after it exited.
struct Exited {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// stdout and stderr lines in the order they came, as the container log holds them.
    log: Vec<u8>,
}

/// Runs `program` with `args` in `root` (also its `HOME`), no stdin, until it exits.
fn run_container(program: &Path, args: &[String], root: &Path) -> Result<Exited, String> {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(program)
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", root)
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let pump = |stream: Box<dyn std::io::Read + Send>| {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stream);
            let (mut own, mut line) = (Vec::new(), Vec::new());
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return own,
                    Ok(_) => {
                        own.extend_from_slice(&line);
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&line);
                    }
                }
            }
        })
    };
    let out = pump(Box::new(child.stdout.take().expect("a piped stdout")));
    let err = pump(Box::new(child.stderr.take().expect("a piped stderr")));
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let log = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Exited {
        status,
        stdout,
        stderr,
        log,
    })
}

/// The message kubelet reports for a terminated container: the end of the termination
/// message `file` (at most [`TERMINATION_MESSAGE_MAX_BYTES`]); when it is empty and
/// `fall_back_to_logs` (policy `FallbackToLogsOnError` and a non-zero exit), the end of the
/// container's `log` instead (its last [`TERMINATION_LOG_MAX_LINES`] lines, at most
/// [`TERMINATION_LOG_MAX_BYTES`]).
pub fn termination_message(file: &[u8], fall_back_to_logs: bool, log: &[u8]) -> String {
    let file = last_bytes(file, TERMINATION_MESSAGE_MAX_BYTES);
    if file.is_empty() && fall_back_to_logs {
        return String::from_utf8_lossy(log_tail(log)).into_owned();
    }
    String::from_utf8_lossy(file).into_owned()
}

fn last_bytes(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[bytes.len().saturating_sub(max)..]
}

/// The last [`TERMINATION_LOG_MAX_LINES`] lines of `log`, then at most its last
/// [`TERMINATION_LOG_MAX_BYTES`].
fn log_tail(log: &[u8]) -> &[u8] {
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    let mut start = 0;
    let mut newlines = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            newlines += 1;
            if newlines == TERMINATION_LOG_MAX_LINES {
                start = i + 1;
                break;
            }
        }
    }
    last_bytes(&log[start..], TERMINATION_LOG_MAX_BYTES)
}

/// The job controller plus kubelet, for eargate's Jobs.
struct JobRunner {
    seed: Client,
    config: NodeAgentConfig,
    state: Arc<AgentState>,
    handled: HashSet<String>,
}

impl JobRunner {
    fn api(&self) -> Api<Job> {
        Api::namespaced(self.seed.clone(), &self.config.namespace)
    }

    async fn run(mut self, stop: Arc<AtomicBool>) {
        // The seed refuses Pods until it exists; the deployment side creates it too.
        ensure_default_service_account(&self.seed, &self.config.namespace, &self.state).await;
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=eargate");
        while !stop.load(Ordering::SeqCst) {
            match self.api().list(&lp).await {
                Ok(list) => {
                    for job in list.items {
                        let uid = job.metadata.uid.clone().unwrap_or_default();
                        if self.handled.contains(&uid) {
                            continue;
                        }
                        self.handled.insert(uid);
                        let finished = job.status.as_ref().is_some_and(|s| {
                            s.conditions.iter().flatten().any(|c| {
                                (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                            })
                        });
                        if finished {
                            continue;
                        }
                        if let Err(e) = self.run_job(&job, &stop).await {
                            self.state
                                .note(format!("error: Job {}: {e}", job.name_any()));
                        }
                    }
                }
                Err(e) => self.state.note(format!("error: listing Jobs: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.seed.clone(), &self.config.namespace)
    }

    /// The attempt's Pod, as the job controller creates it; returns its name.
    async fn create_pod(&self, job: &Job, template: &PodTemplateSpec) -> Result<String, String> {
        let job_name = job.name_any();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let meta = template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.clone().unwrap_or_default();
        for key in [LABEL_JOB_NAME, LEGACY_LABEL_JOB_NAME] {
            labels.insert(key.to_owned(), job_name.clone());
        }
        for key in [LABEL_CONTROLLER_UID, LEGACY_LABEL_CONTROLLER_UID] {
            labels.insert(key.to_owned(), uid.clone());
        }
        let mut spec = serde_json::to_value(template.spec.clone().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        spec["nodeName"] = json!(self.config.node_name);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "generateName": format!("{job_name}-"),
                "namespace": self.config.namespace,
                "labels": labels,
                "annotations": meta.annotations.clone().unwrap_or_default(),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                    "name": job_name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": spec
        }))
        .map_err(|e| e.to_string())?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.pods().create(&PostParams::default(), &pod).await {
                Ok(created) => return Ok(created.name_any()),
                // A generated name that is taken: the job controller tries again.
                Err(kube::Error::Api(s)) if s.code == 409 && tries < 5 => {}
                Err(e) => return Err(format!("creating a Pod for Job {job_name}: {e}")),
            }
        }
    }

    async fn write_pod_status(&self, pod: &str, status: serde_json::Value) -> Result<(), String> {
        self.pods()
            .patch_status(
                pod,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("writing the status of Pod {pod}: {e}"))
    }

    /// The container started: the Pod runs, ready.
    async fn pod_running(&self, pod: &str, container: &Container, at: &str) -> Result<(), String> {
        let conditions: Vec<serde_json::Value> =
            ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                .iter()
                .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": at}))
                .collect();
        self.write_pod_status(
            pod,
            json!({
                "phase": "Running",
                "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": at,
                "conditions": conditions,
                "containerStatuses": [{
                    "name": container.name, "image": container.image, "imageID": "",
                    "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": at}}
                }]
            }),
        )
        .await
    }

    /// The container exited (restart policy `Never`): the Pod's phase is final, its container
    /// terminated with `exit_code` and `message`, as kubelet reports it.
    async fn pod_terminated(
        &self,
        pod: &str,
        container: &Container,
        exit_code: i32,
        message: &str,
        started_at: &str,
        finished_at: &str,
    ) -> Result<(), String> {
        let (phase, reason) = if exit_code == 0 {
            ("Succeeded", "Completed")
        } else {
            ("Failed", "Error")
        };
        let mut terminated = json!({"exitCode": exit_code, "reason": reason,
            "startedAt": started_at, "finishedAt": finished_at});
        if !message.is_empty() {
            terminated["message"] = json!(message);
        }
        let conditions: Vec<serde_json::Value> = [
            ("PodScheduled", "True"),
            ("Initialized", "True"),
            ("ContainersReady", "False"),
            ("Ready", "False"),
        ]
        .iter()
        .map(|(t, s)| {
            let mut c = json!({"type": t, "status": s, "lastTransitionTime": finished_at});
            if *t != "PodScheduled" {
                c["reason"] = json!("PodCompleted");
            }
            c
        })
        .collect();
        self.write_pod_status(
            pod,
            json!({
                "phase": phase,
                "conditions": conditions,
                "containerStatuses": [{
                    "name": container.name, "image": container.image, "imageID": "",
                    "ready": false, "started": false, "restartCount": 0,
                    "state": {"terminated": terminated}
                }]
            }),
        )
        .await
    }

    async fn patch_status(&self, name: &str, status: serde_json::Value) -> Result<(), String> {
        self.api()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("writing the status of Job {name}: {e}"))
    }

    async fn run_job(&mut self, job: &Job, stop: &AtomicBool) -> Result<(), String> {
        let name = job.name_any();
        let spec = job.spec.clone().unwrap_or_default();
        let pod = spec.template.spec.clone().unwrap_or_default();
        let container = pod
            .containers
            .first()
            .cloned()
            .ok_or("the Job's pod has no container")?;
        let start = now_time();
        self.patch_status(&name, json!({"startTime": start, "active": 1, "ready": 0}))
            .await?;
        self.state.jobs_started.fetch_add(1, Ordering::SeqCst);
        self.state.note(format!("job {name}: started"));
        while self.state.hold_jobs.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let backoff_limit = u32::try_from(spec.backoff_limit.unwrap_or(6)).unwrap_or(0);
        let message_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_owned());
        let fall_back_to_logs =
            container.termination_message_policy.as_deref() == Some(FALLBACK_TO_LOGS_ON_ERROR);
        let mut failed = 0u32;
        for attempt in 1.. {
            let root = self
                .config
                .dir
                .join("jobs")
                .join(&name)
                .join(attempt.to_string());
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            let pod_name = self.create_pod(job, &spec.template).await?;
            // A volume that cannot be mounted leaves the Pod pending (kubelet would retry).
            let mounts =
                mount_secret_volumes(&self.seed, &self.config.namespace, &pod, &container, &root)
                    .await?;
            // kubelet bind-mounts an empty file of the host at the container's path.
            let message_file = root.join("termination-log");
            std::fs::write(&message_file, b"")
                .map_err(|e| format!("{}: {e}", message_file.display()))?;
            let swaps = ArgSwaps {
                mounts: &mounts,
                termination_message: (&message_path, &message_file),
                namespace: &self.config.namespace,
                etcd_endpoint: self.config.etcd_endpoint.as_deref(),
            };
            let (program, mut args) = match &container.command {
                Some(cmd) if !cmd.is_empty() => (
                    PathBuf::from(swaps.apply(&cmd[0])),
                    cmd[1..].iter().map(|a| swaps.apply(a)).collect(),
                ),
                _ => (self.config.entrypoint.clone(), Vec::new()),
            };
            let spec_args = container.args.clone().unwrap_or_default();
            args.extend(spec_args.iter().map(|a| swaps.apply(a)));
            let started_at = now_time();
            self.pod_running(&pod_name, &container, &started_at).await?;
            let began = Instant::now();
            let out = {
                let (program, args, root) = (program.clone(), args.clone(), root.clone());
                tokio::task::spawn_blocking(move || run_container(&program, &args, &root))
                    .await
                    .map_err(|e| e.to_string())??
            };
            let took = began.elapsed();
            let finished_at = now_time();
            let exit_code = {
                use std::os::unix::process::ExitStatusExt as _;
                out.status
                    .code()
                    .or_else(|| out.status.signal().map(|s| 128 + s))
                    .unwrap_or(-1)
            };
            let file = std::fs::read(&message_file)
                .map_err(|e| format!("{}: {e}", message_file.display()))?;
            let message = termination_message(&file, fall_back_to_logs && exit_code != 0, &out.log);
            self.pod_terminated(
                &pod_name,
                &container,
                exit_code,
                &message,
                &started_at,
                &finished_at,
            )
            .await?;
            let run = JobRun {
                job: name.clone(),
                attempt,
                pod: pod_name.clone(),
                spec_args,
                program,
                args,
                exit_code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                took,
                termination_message: message,
            };
            std::fs::write(root.join("stdout"), &run.stdout).map_err(|e| e.to_string())?;
            std::fs::write(root.join("stderr"), &run.stderr).map_err(|e| e.to_string())?;
            self.state.note(format!(
                "job {name}: attempt {attempt} exited with {:?} after {:.1} s (pod {pod_name})",
                run.exit_code,
                run.took.as_secs_f64()
            ));
            let ok = out.status.success();
            self.state
                .job_runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(run);
            let now = now_time();
            if ok {
                return self
                    .patch_status(
                        &name,
                        json!({
                            "active": 0, "ready": 0, "succeeded": 1, "failed": failed,
                            "completionTime": now,
                            "conditions": [
                                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                                 "message": "Reached expected number of succeeded pods",
                                 "lastProbeTime": now, "lastTransitionTime": now},
                                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                                 "message": "Reached expected number of succeeded pods",
                                 "lastProbeTime": now, "lastTransitionTime": now}
                            ]
                        }),
                    )
                    .await;
            }
            failed += 1;
            if failed > backoff_limit {
                return self
                    .patch_status(
                        &name,
                        json!({
                            "active": 0, "ready": 0, "failed": failed,
                            "conditions": [
                                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                                 "message": "Job has reached the specified backoff limit",
                                 "lastProbeTime": now, "lastTransitionTime": now},
                                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                 "message": "Job has reached the specified backoff limit",
                                 "lastProbeTime": now, "lastTransitionTime": now}
                            ]
                        }),
                    )
                    .await;
            }
            self.patch_status(&name, json!({"failed": failed, "active": 1}))
                .await?;
            // The job controller's pod backoff, shortened.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        unreachable!("the loop returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_end_of_the_file_as_kubelet_reads_it() {
        assert_eq!(
            termination_message(b"{\"ok\":true}", true, b"log"),
            "{\"ok\":true}"
        );
        let long: Vec<u8> = (0..5000).map(|i| b'a' + (i % 26) as u8).collect();
        let message = termination_message(&long, false, b"");
        assert_eq!(message.len(), TERMINATION_MESSAGE_MAX_BYTES);
        assert!(long.ends_with(message.as_bytes()));
    }

    #[test]
    fn an_empty_file_falls_back_to_the_log_tail_only_when_asked() {
        assert_eq!(termination_message(b"", false, b"error: boom\n"), "");
        assert_eq!(
            termination_message(b"", true, b"error: boom\n"),
            "error: boom\n"
        );
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = termination_message(b"", true, log.as_bytes());
        assert!(tail.starts_with("line 20\n"), "{tail}");
        assert!(tail.ends_with("line 99\n"));
        assert_eq!(tail.lines().count(), TERMINATION_LOG_MAX_LINES);
        let wide: String = (0..10)
            .map(|i| format!("{i}{}\n", "x".repeat(500)))
            .collect();
        let tail = termination_message(b"", true, wide.as_bytes());
        assert_eq!(tail.len(), TERMINATION_LOG_MAX_BYTES);
        assert!(wide.ends_with(&tail));
    }

    #[test]
    fn kubermatic_etcd_endpoints_become_the_loopback_endpoint_once() {
        let ns = "cluster-a";
        let all = crate::rollout::kubermatic_etcd_endpoints(ns).join(",");
        let ep = "https://127.0.0.1:2379";
        assert_eq!(swap_etcd_endpoints(&all, ns, ep), ep);
        assert_eq!(
            swap_etcd_endpoints(&format!("--etcd-endpoints={all}"), ns, ep),
            format!("--etcd-endpoints={ep}")
        );
        assert_eq!(
            swap_etcd_endpoints(&format!("{all},https://other:2379"), ns, ep),
            format!("{ep},https://other:2379")
        );
        // Another namespace's etcd is not this one.
        let other = crate::rollout::kubermatic_etcd_endpoints("cluster-b").join(",");
        assert_eq!(swap_etcd_endpoints(&other, ns, ep), other);
        assert_eq!(swap_etcd_endpoints("--history", ns, ep), "--history");
    }

    #[test]
    fn paths_in_arguments_are_swapped_for_the_node_s_files() {
        let mounts = vec![
            (
                "/etc/etcd/client".to_owned(),
                PathBuf::from("/r/etc/etcd/client"),
            ),
            ("/etc/etcd/ca".to_owned(), PathBuf::from("/r/etc/etcd/ca")),
        ];
        let swaps = ArgSwaps {
            mounts: &mounts,
            termination_message: ("/dev/termination-log", Path::new("/r/termination-log")),
            namespace: "cluster-a",
            etcd_endpoint: Some("https://127.0.0.1:1"),
        };
        assert_eq!(swaps.apply("/dev/termination-log"), "/r/termination-log");
        assert_eq!(
            swaps.apply("--termination-message-path=/dev/termination-log"),
            "--termination-message-path=/r/termination-log"
        );
        assert_eq!(swaps.apply("/etc/etcd/ca/ca.crt"), "/r/etc/etcd/ca/ca.crt");
        assert_eq!(
            swaps.apply("/etc/etcd/client/apiserver-etcd-client.key"),
            "/r/etc/etcd/client/apiserver-etcd-client.key"
        );
        assert_eq!(
            swaps.apply("https://etcd-1.etcd.cluster-a.svc.cluster.local:2379"),
            "https://127.0.0.1:1"
        );
        assert_eq!(swaps.apply("json"), "json");
    }
}
