//! eargate-reconciler: renders kube-apiserver's `EncryptionConfiguration` for every
//! Kubermatic `Cluster`, rolls the API server to it, runs the re-encryption Job and moves
//! `status.encryption.phase` to `Active`.
//!
//! The modules form layers: each uses only modules on lower lines (`tests/module_dag.rs`
//! holds this, so the graph has no cycle).
//!
//! ```text
//! controller   the kube-runtime Controller: reconcile = observe, plan, execute
//! execute      carries the planned actions out, in order
//! observe      reads a fresh snapshot of one Cluster and its control plane
//! plan         the pure phase machine: snapshot -> actions     preview: `eargate render`
//! render, job  the EncryptionConfiguration; the Jobs; proof; retention   context, leader
//! model        the planner's input and output, settings, names  metrics, loaded
//! ```
#![forbid(unsafe_code)]

mod context;
mod controller;
mod execute;
mod job;
mod leader;
mod loaded;
mod metrics;
mod model;
mod observe;
mod plan;
mod preview;
mod proof;
mod render;
mod retention;

pub use context::{Config, Context, Error, RESYNC};
pub use controller::{error_policy, reconcile, run};
pub use job::{
    build_job, build_scan_job, job_name_for, reencrypt_args, scan_args, scan_job_name,
    scan_job_selector, LABEL_JOB_PURPOSE, LABEL_POD_JOB_NAME, LABEL_SCAN_ATTEMPT,
    PURPOSE_REENCRYPT, PURPOSE_SCAN,
};
pub use leader::{
    run_with_leader_election, LeaderConfig, LeaderError, LEASE_DURATION_SECONDS,
    LEASE_GRACE_SECONDS,
};
pub use loaded::{
    expected_hash, parse_loaded_configs, LoadedConfig, FIRST_MINOR_WITH_HASH, LAST_CONFIG_INFO,
    PROVEN_MINORS,
};
pub use metrics::{JobOutcome, Metrics, PhaseLabel, RetainedKey};
pub use model::{
    content_hash, control_plane_namespace, Action, ClusterSnapshot, ConfigSecret,
    EncryptionStatusChange, EventType, JobState, KeySecret, Loaded, ReloadMode, ReplicaReport,
    Rollout, ScanSettings, ScanState, Settings, StorageScan, ANNOTATION_RETRY_SEEN,
    ANNOTATION_ROLLOUT_STARTED, ANNOTATION_SPEC_HASH, ANNOTATION_WRITERS, CONDITION_CONFIG_LOADED,
    CONDITION_ENCRYPTION_RECONCILED, CONDITION_KEYS_RETAINED,
};
pub use plan::plan;
pub use preview::{parse_cluster, parse_previous, parse_secrets, preview, Preview, PreviewError};
pub use render::{check_config, DesiredConfig, RenderError, Writer};
