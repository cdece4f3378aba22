//! The reconciler's vocabulary: what the planner reads ([`ClusterSnapshot`] and its parts),
//! what it decides ([`Action`]), its [`Settings`], and the names it writes onto objects.
//!
//! Everything else depends on this module and it depends on nothing else in the crate, so the
//! pure parts (`render`, `job`, `plan`) and the I/O parts (`observe`, `execute`) meet here.
//! Names shared with the admission webhook stay in [`eargate_policy::names`].

use std::collections::BTreeMap;
use std::time::Duration;

use eargate_policy::model::{Cluster, ClusterCondition, ClusterEncryptionStatus};
use eargate_policy::names;
use eargate_policy::storage_scan::KeySummary;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

/// Annotation on the rendered Secret: hash of the Cluster's encryption spec it was rendered
/// from (key names and references only). A different spec while `Failed` means "try again".
pub const ANNOTATION_SPEC_HASH: &str = "eargate.k8c.io/spec-hash";
/// Annotation on the rendered Secret: the value of [`names::ANNOTATION_RETRY`] the planner
/// last acted upon. It is also the attempt token of the re-encryption Job's name.
pub const ANNOTATION_RETRY_SEEN: &str = "eargate.k8c.io/retry-seen";
/// Annotation on the rendered Secret: the writers (`activeKey` spellings, comma-separated) of
/// every config rendered since the status last vouched for the data (phase `Active`). Data may
/// be sealed by any of them, so a re-encryption Job is skipped only when this is just the
/// target writer.
pub const ANNOTATION_WRITERS: &str = "eargate.k8c.io/writers-since-active";
/// Annotation on the API server Deployment: when the planner started the current rollout
/// (RFC 3339), or in hot-reload mode wrote the config the replicas are to reload. Durable, so
/// a rollout timeout survives controller restarts.
pub const ANNOTATION_ROLLOUT_STARTED: &str = "eargate.k8c.io/rollout-started";
/// eargate's own condition on the Cluster: `True` when the last reconcile made progress,
/// `False` with a reason (`KeySecretMissing`, `KeyInvalid`, `KeyDrift`, `JobFailed`,
/// `RolloutTimeout`, ...) otherwise. `EncryptionInitialized` keeps Kubermatic's meaning.
pub const CONDITION_ENCRYPTION_RECONCILED: &str = "EncryptionReconciled";
/// eargate's condition on the Cluster saying what every serving API server replica has
/// loaded: `True` (reason `Proven`) when each reports the hash of the bytes in the rendered
/// Secret, `False` (`ReplicaNotProven`) naming the replicas that report another config or
/// cannot be reached, `Unknown` (`ProofUnavailable`) when the API server version exports no
/// hash eargate can check and readiness gates instead.
pub const CONDITION_CONFIG_LOADED: &str = "EncryptionConfigLoaded";
/// eargate's condition on the Cluster saying which keys the spec no longer names are still
/// in the rendered config, and why: `True` (reason `Scanning`, `StillInUse`, `ScanFailed`
/// or `ScanInconclusive`) while a storage scan has not shown that nothing is sealed with
/// them, listing each key with its counts; `False` (`NoneRetained`) once none is left.
pub const CONDITION_KEYS_RETAINED: &str = "EncryptionKeysRetained";
/// Label on the re-encryption Job: the config hash it re-encrypts for.
pub(crate) const LABEL_JOB_CONFIG_HASH: &str = names::LABEL_CONFIG_HASH;

/// Configuration of the reconciler (defaults from [`eargate_policy::names`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Image of the re-encryption Job (runs `eargate reencrypt`).
    pub job_image: String,
    /// How long an API server rollout may take before the phase turns `Failed`.
    pub rollout_timeout: Duration,
    /// kube-apiserver Deployment in the control-plane namespace.
    pub apiserver_deployment: String,
    /// Secret holding the rendered EncryptionConfiguration.
    pub config_secret: String,
    /// Data key of the rendered file inside [`Settings::config_secret`].
    pub config_secret_key: String,
    /// Secret with a kubeconfig for the user cluster's API (mounted into the Job).
    pub admin_kubeconfig_secret: String,
    /// Data key of the kubeconfig inside [`Settings::admin_kubeconfig_secret`].
    pub admin_kubeconfig_key: String,
    /// Job `backoffLimit`: retries of the re-encryption Pod before the Job fails.
    pub job_backoff_limit: i32,
    /// Job `ttlSecondsAfterFinished`: finished Jobs are garbage-collected after this.
    pub job_ttl_seconds_after_finished: i32,
    /// Job `activeDeadlineSeconds`: a hung re-encryption fails instead of running forever.
    pub job_active_deadline_seconds: i64,
    /// How often to look again while waiting for a rollout or a Job.
    pub poll_interval: Duration,
    /// How a new config reaches the API servers: a rolling restart (default) or the API
    /// server's own automatic reload of the mounted file.
    pub reload: ReloadMode,
    /// Container of the API server Pods whose port serves the API (for scraping `/metrics`).
    pub apiserver_container: String,
    /// Scrape every serving replica and require it to report the rendered config's hash.
    /// Off only where the seed cannot reach the API server Pods; readiness then gates, and
    /// the condition says so.
    pub prove_loaded: bool,
    /// How the storage scan reaches the user cluster's etcd, and how often it rescans.
    pub scan: ScanSettings,
}

/// Where the storage-scan Job finds the user cluster's etcd and its credentials (defaults:
/// Kubermatic's, see [`eargate_policy::names::DEFAULT_ETCD_ENDPOINTS`]), and its rescan
/// backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanSettings {
    /// etcd client endpoints; [`names::NAMESPACE_PLACEHOLDER`] is the control-plane namespace.
    pub etcd_endpoints: Vec<String>,
    /// Secret with the etcd client certificate and key, in the control-plane namespace.
    pub client_secret: String,
    /// Data key of the client certificate.
    pub client_cert_key: String,
    /// Data key of the client private key.
    pub client_key_key: String,
    /// Secret with the CA certificate of etcd's serving certificate.
    pub ca_secret: String,
    /// Data key of the CA certificate (the only item mounted).
    pub ca_key: String,
    /// Wait after the first scan that still finds a removed key in use; doubles per rescan.
    pub backoff: Duration,
    /// The longest wait between rescans (kube-apiserver compacts etcd every 5 minutes).
    pub backoff_max: Duration,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            etcd_endpoints: names::DEFAULT_ETCD_ENDPOINTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
            client_secret: names::DEFAULT_ETCD_CLIENT_SECRET.to_owned(),
            client_cert_key: names::DEFAULT_ETCD_CLIENT_CERT_KEY.to_owned(),
            client_key_key: names::DEFAULT_ETCD_CLIENT_KEY_KEY.to_owned(),
            ca_secret: names::DEFAULT_ETCD_CA_SECRET.to_owned(),
            ca_key: names::DEFAULT_ETCD_CA_KEY.to_owned(),
            backoff: Duration::from_secs(30),
            backoff_max: Duration::from_secs(5 * 60),
        }
    }
}

impl ScanSettings {
    /// How long to wait after scan number `attempt` before the next one.
    pub fn rescan_after(&self, attempt: u32) -> Duration {
        let doubled = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        doubled.min(self.backoff_max)
    }
}

/// How a newly written `EncryptionConfiguration` reaches the API servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReloadMode {
    /// Patch the Deployment's pod template so every replica restarts with the new file.
    #[default]
    Restart,
    /// Only write the Secret: the replicas run with
    /// `--encryption-provider-config-automatic-reload` and load the file when kubelet
    /// updates the mount. Progress waits until every replica reports the new file's hash.
    HotReload,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            job_image: "ghcr.io/eargate/eargate:latest".to_owned(),
            rollout_timeout: Duration::from_secs(15 * 60),
            apiserver_deployment: names::DEFAULT_APISERVER_DEPLOYMENT.to_owned(),
            config_secret: names::DEFAULT_CONFIG_SECRET.to_owned(),
            config_secret_key: names::DEFAULT_CONFIG_SECRET_KEY.to_owned(),
            admin_kubeconfig_secret: names::DEFAULT_ADMIN_KUBECONFIG_SECRET.to_owned(),
            admin_kubeconfig_key: names::DEFAULT_ADMIN_KUBECONFIG_KEY.to_owned(),
            job_backoff_limit: 3,
            job_ttl_seconds_after_finished: 24 * 3600,
            job_active_deadline_seconds: 6 * 3600,
            poll_interval: Duration::from_secs(10),
            reload: ReloadMode::Restart,
            apiserver_container: names::DEFAULT_APISERVER_CONTAINER.to_owned(),
            prove_loaded: true,
            scan: ScanSettings::default(),
        }
    }
}

/// The Secret holding the rendered `EncryptionConfiguration`, as found in the control-plane
/// namespace (what the API servers load, plus the planner's memory in its metadata).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigSecret {
    /// Raw bytes of `data[settings.config_secret_key]` (`None` when the key is absent).
    pub data: Option<Vec<u8>>,
    /// Labels of the Secret (carries [`names::LABEL_CONFIG_HASH`]).
    pub labels: BTreeMap<String, String>,
    /// Annotations of the Secret ([`ANNOTATION_SPEC_HASH`], [`ANNOTATION_RETRY_SEEN`]).
    pub annotations: BTreeMap<String, String>,
}

impl std::fmt::Debug for ConfigSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSecret")
            .field(
                "data",
                &self
                    .data
                    .as_ref()
                    .map(|d| format!("<{} bytes redacted>", d.len())),
            )
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .finish()
    }
}

/// A Secret referenced by a `secretRef` key.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySecret {
    /// The Secret does not exist (404).
    Missing,
    /// The Secret's `data`, decoded from the API's base64 into raw bytes.
    Data(BTreeMap<String, Vec<u8>>),
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("Missing"),
            Self::Data(d) => f
                .debug_tuple("Data")
                .field(&d.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// The API server Deployment's rollout, reduced to what gating needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Pod-template annotation [`names::ANNOTATION_CONFIG_HASH`] (the config it rolls to).
    pub template_hash: Option<String>,
    /// Deployment annotation [`ANNOTATION_ROLLOUT_STARTED`], parsed.
    pub started: Option<Timestamp>,
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `spec.replicas` (desired).
    pub desired: i32,
    /// `status.updatedReplicas`.
    pub updated: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.replicas` (all pods, old and new; more than `updated` means old pods remain).
    pub total: i32,
}

impl Rollout {
    /// Every serving pod runs the template with `hash`: observed generation caught up,
    /// updated = available = ready = desired, and no old pods left.
    pub fn complete_for(&self, hash: &str) -> bool {
        self.template_hash.as_deref() == Some(hash)
            && self.observed_generation >= self.generation
            && self.updated == self.desired
            && self.available == self.desired
            && self.ready == self.desired
            && self.total == self.desired
    }
}

/// What one serving API server replica reports about the config it has loaded, scraped from
/// its own `/metrics` at its pod IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaReport {
    /// The Pod's name (how conditions and Events name the replica).
    pub pod: String,
    /// What the scrape found.
    pub loaded: Loaded,
}

/// The outcome of scraping one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// The replica answered. `minor` is its version's minor number (from `/version`);
    /// `hash` the `hash` label of [`crate::loaded::LAST_CONFIG_INFO`], `None` when it exports
    /// no such series (no config loaded, or a version without the metric).
    Reported {
        /// The minor version (`37` for v1.37.2).
        minor: u32,
        /// The loaded config's hash label, if the replica exports one.
        hash: Option<String>,
    },
    /// It could not be reached or did not answer as an API server would (why, without
    /// key material).
    Unreachable {
        /// Why, in one line.
        error: String,
    },
}

/// The re-encryption Job of the current config and attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Created, not finished.
    Running,
    /// Condition `Complete` is true.
    Succeeded,
    /// Condition `Failed` is true; the reason comes from the Job condition (no key material).
    Failed {
        /// The Job condition's reason (`BackoffLimitExceeded`, `DeadlineExceeded`, ...).
        reason: String,
    },
}

/// The latest storage scan of the config currently in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageScan {
    /// The Job's name.
    pub job: String,
    /// Its scan number for this config ([`crate::job::LABEL_SCAN_ATTEMPT`]).
    pub attempt: u32,
    /// The config hash it scans for (its [`names::LABEL_CONFIG_HASH`]).
    pub config_hash: String,
    /// The rollout start ([`ANNOTATION_ROLLOUT_STARTED`]) it was created under, from the same
    /// annotation on the Job. A scan counts only while that is still the rollout's start, so
    /// a scan from an earlier period of the same config is never trusted (and no two clocks
    /// are compared).
    pub written: Option<Timestamp>,
    /// Where it stands.
    pub state: ScanState,
}

/// Where a storage scan stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanState {
    /// Created, not finished.
    Running,
    /// Finished and handed back its summary (from its Pod's termination message).
    Finished {
        /// Per key name, what is still sealed with it.
        summary: KeySummary,
        /// When the Job completed.
        at: Timestamp,
    },
    /// Failed, or finished without a readable summary (why, without key material).
    Failed {
        /// The Job condition's reason, or what was wrong with the summary.
        reason: String,
        /// When this was seen to end.
        at: Timestamp,
    },
}

impl ScanState {
    /// When the scan ended (`None` while it runs).
    pub fn ended_at(&self) -> Option<Timestamp> {
        match self {
            ScanState::Running => None,
            ScanState::Finished { at, .. } | ScanState::Failed { at, .. } => Some(*at),
        }
    }
}

/// Everything the planner needs about one Cluster and its control plane, read fresh at one
/// moment: the planner's whole input.
#[derive(Clone, Debug)]
pub struct ClusterSnapshot {
    /// The Cluster (name, generation, annotations incl. [`names::ANNOTATION_RETRY`], spec, status).
    pub cluster: Cluster,
    /// Control-plane namespace: `status.namespaceName`, else `cluster-<name>`.
    pub namespace: String,
    /// The rendered-config Secret, `None` when it does not exist.
    pub config_secret: Option<ConfigSecret>,
    /// Every Secret named by a `secretRef` in the spec, by Secret name.
    pub key_secrets: BTreeMap<String, KeySecret>,
    /// The API server Deployment, `None` when it does not exist.
    pub rollout: Option<Rollout>,
    /// The Job named after the config Secret's content and attempt
    /// ([`crate::job::job_name_for`]), `None` when absent.
    pub job: Option<JobState>,
    /// What every serving replica of the API server Deployment reports it has loaded (empty
    /// when there are no serving Pods or no Deployment).
    pub replicas: Vec<ReplicaReport>,
    /// The latest storage scan of the config in the Secret (`None`: none yet).
    pub scan: Option<StorageScan>,
    /// The time of the observation.
    pub now: Timestamp,
}

/// The control-plane namespace of a Cluster: `status.namespaceName`, else Kubermatic's
/// `cluster-<name>`.
pub fn control_plane_namespace(cluster: &Cluster) -> String {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.namespace_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            names::default_control_plane_namespace(
                cluster.metadata.name.as_deref().unwrap_or_default(),
            )
        })
}

/// Kubernetes Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// A step of the rollout.
    Normal,
    /// Something needs attention (blocked, failed, drift, an unproven replica).
    Warning,
}

/// What to do with `status.encryption`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncryptionStatusChange {
    /// Leave it as it is.
    Keep,
    /// Set it to this value.
    Set(ClusterEncryptionStatus),
    /// Remove it (after a full decryption with the configuration disabled or removed).
    Clear,
}

/// One step for the I/O layer. Executed in order; stop at the first error.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Merge-patch the Cluster's status subresource: `status.encryption` as given and each
    /// listed condition (by type) replaced. Only the named fields are written.
    PatchStatus {
        /// What happens to `status.encryption`.
        encryption: EncryptionStatusChange,
        /// Conditions to write, by type.
        conditions: BTreeMap<String, ClusterCondition>,
    },
    /// Create or update the rendered-config Secret `settings.config_secret`: data key
    /// `settings.config_secret_key` = `yaml`, label [`names::LABEL_CONFIG_HASH`] = `hash`,
    /// label [`names::LABEL_MANAGED_BY`] = [`names::MANAGED_BY`], and these annotations.
    WriteConfigSecret {
        /// The rendered EncryptionConfiguration.
        yaml: String,
        /// Its [`content_hash`].
        hash: String,
        /// The planner's memory (spec hash, retry value, writers).
        annotations: BTreeMap<String, String>,
    },
    /// Patch the API server Deployment: pod-template annotation [`names::ANNOTATION_CONFIG_HASH`]
    /// = `hash` and Deployment annotation [`ANNOTATION_ROLLOUT_STARTED`] = `started`.
    RollApiServer {
        /// The config the pod template points at.
        hash: String,
        /// When the rollout started (for its timeout).
        started: Timestamp,
    },
    /// Hot-reload mode: record on the API server Deployment (annotation
    /// [`ANNOTATION_ROLLOUT_STARTED`] only; the pod template is left alone, so nothing
    /// restarts) when the replicas were asked to reload.
    MarkReloadStarted {
        /// When the new config was written (for the reload timeout).
        started: Timestamp,
    },
    /// Create this Job (HTTP 409 = it already exists = fine).
    CreateJob {
        /// The Job, built by [`crate::job::build_job`].
        job: Box<Job>,
    },
    /// Delete this Job of the control-plane namespace with its Pods (background propagation;
    /// HTTP 404 = already gone = fine): a storage scan that a newer one replaces, so a key
    /// that stays for days leaves one scan Job behind, not one per rescan.
    DeleteJob {
        /// The Job's name.
        name: String,
    },
    /// Emit a Kubernetes Event on the Cluster.
    Event {
        /// Normal or Warning.
        type_: EventType,
        /// A short CamelCase reason (`RolloutStarted`, `ReplicaNotProven`, ...).
        reason: String,
        /// The message (key names only, never material).
        note: String,
    },
    /// A referenced key Secret's content differs from the material already rendered under
    /// that key name; the rendered material is kept. For the drift metric (by key name).
    ReportDrift {
        /// The key's name in the spec.
        key_name: String,
    },
    /// A key the spec no longer names is still in the rendered config (phase `Active`), with
    /// what the last storage scan counted. For the retained-key metrics (by key name).
    ReportRetained {
        /// The key's name.
        key_name: String,
        /// Current objects sealed with it (`None`: not known yet).
        objects: Option<u64>,
        /// Older revisions sealed with it (`None`: not known yet).
        older_revisions: Option<u64>,
    },
    /// Nothing more to do now; look again after this long (waiting for a rollout or Job).
    RequeueAfter(Duration),
    /// Blocked by a problem outside the planner's reach (missing key Secret, missing
    /// Deployment, unreadable config): retry with the controller's exponential backoff.
    Backoff {
        /// The condition reason of the block.
        reason: String,
    },
}

/// Content hash of a rendered file: 32 hex digits of SHA-256 (fits a label value). It names
/// a config everywhere: the Secret's label, the API server's pod template, the Job.
/// A hash of 256-bit random keys reveals nothing about them.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..32].to_owned()
}
