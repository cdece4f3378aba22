//! Prometheus metrics of the reconciler, and its readiness: what `eargate-runtime`'s admin
//! port serves as `/metrics` and `/readyz`.
//!
//! Labels carry cluster names, phases, outcomes and key *names* only — never key material.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use eargate_policy::model::EncryptionPhase;
use eargate_runtime::Probe;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `status.encryption.phase` as a label value; `None` when the cluster has no encryption status.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum PhaseLabel {
    /// No `status.encryption`.
    None,
    /// `Pending`: a config is being rolled out.
    Pending,
    /// `EncryptionNeeded`: stored data is being rewritten.
    EncryptionNeeded,
    /// `Active`: the data is what the config asks for.
    Active,
    /// `Failed`: a rollout or Job failed; waits for a retry.
    Failed,
}

impl PhaseLabel {
    const ALL: [PhaseLabel; 5] = [
        PhaseLabel::None,
        PhaseLabel::Pending,
        PhaseLabel::EncryptionNeeded,
        PhaseLabel::Active,
        PhaseLabel::Failed,
    ];
}

impl From<Option<EncryptionPhase>> for PhaseLabel {
    fn from(phase: Option<EncryptionPhase>) -> Self {
        match phase {
            None => PhaseLabel::None,
            Some(EncryptionPhase::Pending) => PhaseLabel::Pending,
            Some(EncryptionPhase::EncryptionNeeded) => PhaseLabel::EncryptionNeeded,
            Some(EncryptionPhase::Active) => PhaseLabel::Active,
            Some(EncryptionPhase::Failed) => PhaseLabel::Failed,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    cluster: String,
    phase: PhaseLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// A short, fixed error kind (see `Error::metric_label`).
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: JobOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    cluster: String,
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SealedLabels {
    cluster: String,
    key: String,
    revisions: Revisions,
}

/// Which stored data a retained key's count is about.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum Revisions {
    /// Current objects.
    Current,
    /// Older revisions etcd still holds.
    Older,
}

/// A key the spec no longer names that is still in a Cluster's config, with what the last
/// storage scan counted (`None`: not known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedKey {
    /// The key's name.
    pub key: String,
    /// Current objects sealed with it.
    pub objects: Option<u64>,
    /// Older revisions sealed with it.
    pub older_revisions: Option<u64>,
}

/// How a re-encryption Job ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum JobOutcome {
    /// The Job's `Complete` condition is true.
    Succeeded,
    /// The Job's `Failed` condition is true.
    Failed,
}

/// Every metric the reconciler exports, plus readiness.
pub struct Metrics {
    registry: Registry,
    phase: Family<PhaseLabels, Gauge>,
    reconciles: Counter,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    jobs: Family<OutcomeLabels, Counter>,
    job_duration: JobDurationFamily,
    key_drift: Family<DriftLabels, Gauge>,
    drifted: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    leader: Gauge,
    replicas_proven: Family<ClusterLabels, Gauge>,
    replicas_expected: Family<ClusterLabels, Gauge>,
    retained_keys: Family<ClusterLabels, Gauge>,
    retained_sealed: Family<SealedLabels, Gauge>,
    retained: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero; not ready.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eargate");
        let phase = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "encryption_phase",
            "1 for the current status.encryption.phase of each Cluster, 0 for the others",
            phase.clone(),
        );
        let reconciles = Counter::default();
        registry.register(
            "reconciliations",
            "Reconciliations started",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that ended in an error, by error kind",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            reconcile_duration.clone(),
        );
        let jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reencryption_jobs",
            "Re-encryption Jobs finished, by outcome",
            jobs.clone(),
        );
        let job_duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(1.0, 2.0, 14))) as fn() -> Histogram,
        );
        registry.register(
            "reencryption_job_duration_seconds",
            "Run time of finished re-encryption Jobs (start to completion), by outcome",
            job_duration.clone(),
        );
        let key_drift = Family::<DriftLabels, Gauge>::default();
        registry.register(
            "key_drift",
            "1 while a referenced key Secret differs from the key material already rendered under that name",
            key_drift.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let replicas_proven = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "apiserver_replicas_proven",
            "Serving API server replicas whose own metrics report the hash of the rendered config",
            replicas_proven.clone(),
        );
        let replicas_expected = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "apiserver_replicas_expected",
            "API server replicas the Deployment wants (what apiserver_replicas_proven must reach)",
            replicas_expected.clone(),
        );
        let retained_keys = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "retained_keys",
            "Keys the spec no longer names that stay in the rendered config until a storage scan finds nothing sealed with them",
            retained_keys.clone(),
        );
        let retained_sealed = Family::<SealedLabels, Gauge>::default();
        registry.register(
            "retained_key_sealed",
            "Stored data the last storage scan found sealed with a retained key: current objects or older revisions",
            retained_sealed.clone(),
        );
        Self {
            registry,
            replicas_proven,
            replicas_expected,
            retained_keys,
            retained_sealed,
            retained: Mutex::default(),
            phase,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            jobs,
            job_duration,
            key_drift,
            drifted: Mutex::default(),
            leader,
            ready: AtomicBool::new(false),
        }
    }

    /// Counts a reconciliation and its duration.
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts a failed reconciliation by a short fixed error kind.
    pub fn reconcile_failed(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: kind.to_owned(),
            })
            .inc();
    }

    /// Records the cluster's phase (one gauge set to 1, the other phases to 0).
    pub fn set_phase(&self, cluster: &str, phase: Option<EncryptionPhase>) {
        let current = PhaseLabel::from(phase);
        for p in PhaseLabel::ALL {
            let labels = PhaseLabels {
                cluster: cluster.to_owned(),
                phase: p,
            };
            self.phase
                .get_or_create(&labels)
                .set(i64::from(p == current));
        }
    }

    /// Forgets everything about a deleted cluster.
    pub fn forget_cluster(&self, cluster: &str) {
        for p in PhaseLabel::ALL {
            self.phase.remove(&PhaseLabels {
                cluster: cluster.to_owned(),
                phase: p,
            });
        }
        self.set_key_drift(cluster, &[]);
        self.forget_proof(cluster);
        self.set_retained_keys(cluster, &[]);
    }

    /// Records a cluster's retained keys and their counts; keys no longer retained (and
    /// counts no longer known) are dropped.
    pub fn set_retained_keys(&self, cluster: &str, keys: &[RetainedKey]) {
        let mut retained = self.retained.lock().unwrap_or_else(|e| e.into_inner());
        let labels = |key: &str, revisions| SealedLabels {
            cluster: cluster.to_owned(),
            key: key.to_owned(),
            revisions,
        };
        for key in retained.remove(cluster).unwrap_or_default() {
            for r in [Revisions::Current, Revisions::Older] {
                self.retained_sealed.remove(&labels(&key, r));
            }
        }
        let cluster_labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        if keys.is_empty() {
            self.retained_keys.remove(&cluster_labels);
            return;
        }
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.retained_keys
            .get_or_create(&cluster_labels)
            .set(gauge(keys.len() as u64));
        for k in keys {
            for (r, n) in [
                (Revisions::Current, k.objects),
                (Revisions::Older, k.older_revisions),
            ] {
                if let Some(n) = n {
                    self.retained_sealed
                        .get_or_create(&labels(&k.key, r))
                        .set(gauge(n));
                }
            }
        }
        retained.insert(
            cluster.to_owned(),
            keys.iter().map(|k| k.key.clone()).collect(),
        );
    }

    /// Records how many API server replicas of a cluster are proven to run its rendered
    /// config, of how many are expected.
    pub fn set_proof(&self, cluster: &str, proven: usize, expected: usize) {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.replicas_proven
            .get_or_create(&labels)
            .set(gauge(proven));
        self.replicas_expected
            .get_or_create(&labels)
            .set(gauge(expected));
    }

    /// Drops a cluster's proof gauges (no proof is possible or the cluster is gone).
    pub fn forget_proof(&self, cluster: &str) {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        self.replicas_proven.remove(&labels);
        self.replicas_expected.remove(&labels);
    }

    /// Records which keys (by name) of a cluster currently drift; keys no longer listed are cleared.
    pub fn set_key_drift(&self, cluster: &str, keys: &[String]) {
        let mut drifted = self.drifted.lock().unwrap_or_else(|e| e.into_inner());
        let before = drifted.remove(cluster).unwrap_or_default();
        for key in &before {
            if !keys.contains(key) {
                self.key_drift.remove(&DriftLabels {
                    cluster: cluster.to_owned(),
                    key: key.clone(),
                });
            }
        }
        for key in keys {
            self.key_drift
                .get_or_create(&DriftLabels {
                    cluster: cluster.to_owned(),
                    key: key.clone(),
                })
                .set(1);
        }
        if !keys.is_empty() {
            drifted.insert(cluster.to_owned(), keys.to_vec());
        }
    }

    /// Records a finished re-encryption Job.
    pub fn job_finished(&self, outcome: JobOutcome, ran_for: Option<Duration>) {
        let labels = OutcomeLabels { outcome };
        self.jobs.get_or_create(&labels).inc();
        if let Some(d) = ran_for {
            self.job_duration
                .get_or_create(&labels)
                .observe(d.as_secs_f64());
        }
    }

    /// Whether this replica holds the leader Lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Ready once the controller runs (as leader or as a healthy standby).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// What `/readyz` answers.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

type JobDurationFamily = Family<OutcomeLabels, Histogram, fn() -> Histogram>;

/// The admin port's view: ready once the controller runs (as leader or as a healthy
/// standby) and until it stops.
impl Probe for Metrics {
    fn metrics(&self) -> String {
        self.encode()
    }

    fn readiness(&self) -> Result<(), &'static str> {
        if self.is_ready() {
            Ok(())
        } else {
            Err("not ready: the controller is not running")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_gauge_marks_exactly_the_current_phase() {
        let m = Metrics::new();
        m.set_phase("c1", Some(EncryptionPhase::Pending));
        m.set_phase("c1", Some(EncryptionPhase::Active));
        let text = m.encode();
        assert!(
            text.contains(r#"eargate_encryption_phase{cluster="c1",phase="Active"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eargate_encryption_phase{cluster="c1",phase="Pending"} 0"#),
            "{text}"
        );
        m.forget_cluster("c1");
        assert!(!m.encode().contains(r#"cluster="c1""#));
    }

    #[test]
    fn key_drift_is_set_and_cleared_by_key_name() {
        let m = Metrics::new();
        m.set_key_drift("c1", &["k1".into(), "k2".into()]);
        let text = m.encode();
        assert!(
            text.contains(r#"eargate_key_drift{cluster="c1",key="k1"} 1"#),
            "{text}"
        );
        m.set_key_drift("c1", &["k2".into()]);
        let text = m.encode();
        assert!(!text.contains(r#"key="k1""#), "{text}");
        assert!(text.contains(r#"key="k2""#), "{text}");
    }

    #[test]
    fn proof_gauges_per_cluster() {
        let m = Metrics::new();
        m.set_proof("c1", 1, 2);
        let text = m.encode();
        assert!(
            text.contains(r#"eargate_apiserver_replicas_proven{cluster="c1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eargate_apiserver_replicas_expected{cluster="c1"} 2"#),
            "{text}"
        );
        m.forget_cluster("c1");
        assert!(!m.encode().contains(r#"cluster="c1""#));
    }

    #[test]
    fn counts_reconciles_errors_and_jobs() {
        let m = Metrics::new();
        m.reconciled(Duration::from_millis(20));
        m.reconcile_failed("kube");
        m.job_finished(JobOutcome::Succeeded, Some(Duration::from_secs(30)));
        m.job_finished(JobOutcome::Failed, None);
        let text = m.encode();
        assert!(text.contains("eargate_reconciliations_total 1"), "{text}");
        assert!(
            text.contains(r#"eargate_reconcile_errors_total{error="kube"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eargate_reencryption_jobs_total{outcome="Succeeded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eargate_reencryption_jobs_total{outcome="Failed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                "eargate_reencryption_job_duration_seconds_count{outcome=\"Succeeded\"} 1"
            ),
            "{text}"
        );
    }
}
