//! The planner: every decision of the reconciler, as a pure function of a [`ClusterSnapshot`].
//!
//! [`plan`] looks at one Cluster, its rendered `EncryptionConfiguration` Secret, the referenced
//! key Secrets, the API server Deployment and the re-encryption Job, and returns what to do
//! next. The I/O layer (`observe`, `execute`, `controller`) only gathers the snapshot and
//! carries the [`Action`]s out, **in order, stopping at the first error** (the next reconcile
//! plans again from scratch). Order matters: the status is moved to `Pending` before a new
//! config is written, so an observed `Active` always describes the config in the Secret.
//!
//! ```text
//! nothing ─► Pending ─(rollout complete, config stable)─► EncryptionNeeded ─(Job ok)─► Active
//!               │                                  └──(nothing to rewrite)──────────► Active
//!               └─(rollout timeout)─► Failed ◄─(Job failed)─┘
//! Failed ─(spec change | new retry annotation value)─► Pending
//! disabled/removed + fully decrypted ─► status.encryption cleared, EncryptionInitialized=False
//! ```
//!
//! How it reads: the snapshot's facts are derived once ([`Facts`]; then [`Target`], once the
//! next config is rendered), and exactly one transition runs — [`retry_failed`],
//! [`write_config`], [`refresh_memory`], [`stay_active`] (with [`keep_retained`]), [`start_rollout`] /
//! [`await_rollout`], [`reencrypt`] or [`finish`]. Each returns the actions of one step; the
//! status or object it writes triggers the next reconcile. Every transition emits an Event.
//!
//! Contract with the I/O layer:
//! - `cluster` and `config_secret` must be read fresh (a GET, not a possibly stale reflector
//!   cache): key retention trusts `status.encryption` to be at least as new as the last status
//!   this planner wrote.
//! - The config Secret carries the planner's durable memory as labels/annotations (content
//!   hash, the spec it was rendered from, the retry value it has acted upon), so a restarted
//!   controller resumes exactly where the previous one stopped. No key material is in them.
//! - The Job for the current config is looked up by [`crate::job::job_name_for`] of the config
//!   Secret; its name is derived from the config hash and the attempt, so it is created at most
//!   once per (config hash, attempt) and survives restarts.
//!
//! Safety argument (checked by `tests/model.rs`): a key becomes the *writer* (first provider)
//! of a rendered config only when every config that may still be serving can read it — i.e.
//! it is already a reader of the previous config **and** that config is loaded everywhere
//! (rollout complete and every serving replica reporting the hash of its bytes, see
//! `crate::proof`; in hot-reload mode the reports alone); otherwise the previous writer (or
//! `identity`, which every config reads) stays the writer. The same proof gates the Job and
//! `Active`.
//! A key leaves the rendered config only when phase `Active` vouches that no current object
//! needs it (a finished Job, or nothing to rewrite) **and** a storage scan of that very
//! config, begun after it was written, found nothing sealed with it — no current object and
//! no older revision etcd still holds ([`crate::retention`]). Until then it stays, and
//! condition `EncryptionKeysRetained` says why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eargate_policy::apiserver_config::EncryptionConfig;
use eargate_policy::model::{
    ClusterCondition, ClusterEncryptionStatus, EncryptionConfiguration, EncryptionPhase,
};
use eargate_policy::names;

use eargate_policy::storage_scan::KeyVerdict;

use crate::job;
use crate::model::{
    content_hash, Action, ClusterSnapshot, ConfigSecret, EncryptionStatusChange, EventType,
    JobState, ReloadMode, Rollout, ScanState, Settings, StorageScan, ANNOTATION_RETRY_SEEN,
    ANNOTATION_SPEC_HASH, ANNOTATION_WRITERS, CONDITION_CONFIG_LOADED,
    CONDITION_ENCRYPTION_RECONCILED, CONDITION_KEYS_RETAINED,
};
use crate::proof::{prove, Proof};
use crate::render::{self, DesiredConfig, PreviousConfig, RenderError, RenderInput, Writer};
use crate::retention;

/// Decides the next steps for one Cluster. Pure: same input, same output.
pub fn plan(snapshot: &ClusterSnapshot, settings: &Settings) -> Vec<Action> {
    let mut out = PlanBuilder::new(snapshot);
    let facts = match Facts::read(snapshot, settings) {
        Read::Untouched => return Vec::new(),
        Read::Blocked { reason, message } => return out.blocked(reason, &message),
        Read::Facts(facts) => facts,
    };
    if facts.phase == Some(EncryptionPhase::Failed) {
        return retry_failed(out, &facts);
    }
    let target = match Target::render(&facts) {
        Ok(Some(target)) => target,
        Ok(None) => return remove_encryption(out, &facts),
        Err(e) => return out.blocked(e.reason(), &e.to_string()),
    };
    report_drift(&mut out, &target);
    // The Secret must hold the target config, with the planner's memory up to date.
    if facts.previous_hash.as_deref() != Some(target.config.hash.as_str()) {
        return write_config(out, &facts, &target);
    }
    if target.memory_stale(&facts) {
        return refresh_memory(out, &facts, &target);
    }
    if facts.phase == Some(EncryptionPhase::Active) && target.reached {
        return stay_active(out, &facts, &target);
    }
    // Every API server must run it before stored data is touched, and each serving replica
    // must prove it by the hash of the bytes it loaded.
    match RolloutProgress::of(&facts, &target) {
        RolloutProgress::NotStarted => return start_rollout(out, &facts, &target),
        RolloutProgress::Running { elapsed } => {
            return await_rollout(out, &facts, &target, elapsed)
        }
        RolloutProgress::Unprovable { why } => return out.blocked("ProofUnavailable", &why),
        RolloutProgress::Complete => {}
    }
    if !prove_loaded(&mut out, &facts, &target) {
        return out.into_actions(Some(Action::RequeueAfter(facts.settings.poll_interval)));
    }
    // Then the data: nothing to rewrite, or a Job rewrites it.
    if target.reached {
        return finish(out, &facts, &target);
    }
    reencrypt(out, &facts, &target)
}

/// What the serving replicas have loaded, judged against the rendered Secret's bytes; `None`
/// when the Secret holds no file or there is no Deployment. The metrics read the same verdict.
pub(crate) fn proof_of(snapshot: &ClusterSnapshot, settings: &Settings) -> Option<Proof> {
    let data = snapshot.config_secret.as_ref()?.data.as_deref()?;
    let expected = usize::try_from(snapshot.rollout.as_ref()?.desired).unwrap_or(0);
    Some(if settings.prove_loaded {
        prove(&snapshot.replicas, data, expected)
    } else {
        Proof::Unavailable {
            why: "scraping the API servers is turned off (--prove-loaded-config=false)".to_owned(),
        }
    })
}

/// What the snapshot says, read once, before anything is rendered.
struct Facts<'a> {
    snapshot: &'a ClusterSnapshot,
    settings: &'a Settings,
    spec: Option<&'a EncryptionConfiguration>,
    /// `spec.encryptionConfiguration.enabled`.
    enabled: bool,
    /// `status.encryption`.
    status: Option<&'a ClusterEncryptionStatus>,
    phase: Option<EncryptionPhase>,
    /// `EncryptionInitialized` is `"True"`.
    initialized: bool,
    /// The config Secret, when it holds a rendered file.
    secret: Option<&'a ConfigSecret>,
    /// That file, parsed.
    previous: Option<PreviousConfig>,
    /// That file's content hash.
    previous_hash: Option<String>,
    /// The spec hash the Secret was rendered from ([`ANNOTATION_SPEC_HASH`], or empty).
    previous_spec_hash: String,
    /// The spec's hash now.
    spec_hash: String,
    /// The retry annotation's value on the Cluster (or empty).
    retry: String,
    /// The retry value last acted upon ([`ANNOTATION_RETRY_SEEN`], or empty).
    retry_seen: String,
    /// The retry value this state acts upon: a new value is taken up only while `Pending`
    /// (or before any status), so a running attempt keeps its Job name.
    attempt: String,
    rollout: &'a Rollout,
    /// What the serving replicas have loaded, judged against the Secret's bytes (`None` when
    /// the Secret holds no file).
    proof: Option<Proof>,
    /// The latest storage scan, if it counts for the Secret's config
    /// ([`retention::current_scan`]).
    scan: Option<&'a StorageScan>,
    /// Keys that scan found nothing sealed with.
    scanned_unused: BTreeSet<String>,
}

/// The outcome of reading a snapshot.
enum Read<'a> {
    /// Nothing configured and nothing encrypted: nothing to do.
    Untouched,
    /// Something outside the planner's reach is wrong.
    Blocked {
        reason: &'static str,
        message: String,
    },
    Facts(Box<Facts<'a>>),
}

impl<'a> Facts<'a> {
    fn read(snapshot: &'a ClusterSnapshot, settings: &'a Settings) -> Read<'a> {
        let cluster = &snapshot.cluster;
        let spec = cluster.spec.encryption_configuration.as_ref();
        let enabled = spec.is_some_and(|c| c.enabled);
        let status = cluster
            .status
            .as_ref()
            .and_then(|st| st.encryption.as_ref());
        let initialized = cluster
            .status
            .as_ref()
            .and_then(|st| st.conditions.get(names::CONDITION_ENCRYPTION_INITIALIZED))
            .is_some_and(|c| c.status == "True");
        if status.is_none() && !enabled && !initialized {
            return Read::Untouched;
        }

        let secret = snapshot.config_secret.as_ref().filter(|s| s.data.is_some());
        let data = secret.and_then(|s| s.data.as_deref());
        let previous = match data.map(PreviousConfig::parse).transpose() {
            Ok(p) => p,
            Err(e) => {
                return Read::Blocked {
                    reason: e.reason(),
                    message: e.to_string(),
                }
            }
        };
        let Some(rollout) = snapshot.rollout.as_ref() else {
            return Read::Blocked {
                reason: "ApiServerMissing",
                message: format!(
                    "API server Deployment {:?} not found in namespace {:?}",
                    settings.apiserver_deployment, snapshot.namespace
                ),
            };
        };

        let annotation = |k: &str| {
            secret
                .and_then(|s| s.annotations.get(k).cloned())
                .unwrap_or_default()
        };
        let retry = cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::ANNOTATION_RETRY).cloned())
            .unwrap_or_default();
        let retry_seen = annotation(ANNOTATION_RETRY_SEEN);
        let phase = status.and_then(|st| st.phase);
        let attempt = if phase == Some(EncryptionPhase::Pending) || status.is_none() {
            retry.clone()
        } else {
            retry_seen.clone()
        };
        let proof = proof_of(snapshot, settings);
        let previous_hash = data.map(content_hash);
        let scan = previous_hash
            .as_deref()
            .and_then(|hash| retention::current_scan(snapshot, hash));
        Read::Facts(Box::new(Facts {
            snapshot,
            settings,
            spec,
            enabled,
            status,
            phase,
            initialized,
            secret,
            previous,
            previous_hash,
            previous_spec_hash: annotation(ANNOTATION_SPEC_HASH),
            spec_hash: render::spec_hash(spec),
            retry,
            retry_seen,
            attempt,
            rollout,
            proof,
            scan,
            scanned_unused: retention::scanned_unused(scan),
        }))
    }

    /// The config with `hash` (the Secret's content) is what reached the replicas by
    /// restarting them: restart mode, or hot-reload mode when the pod template already points
    /// at it (the first config of a Deployment that ran without one).
    fn restarted_into(&self, hash: &str) -> bool {
        self.settings.reload == ReloadMode::Restart
            || self.rollout.template_hash.as_deref() == Some(hash)
    }

    /// Every serving replica runs the config with `hash` (the Secret's content): rolled out
    /// and not contradicted by any replica's own report, or — after a hot reload — proven by
    /// every replica's report.
    fn loaded_everywhere(&self, hash: &str) -> bool {
        let proof = self.proof.as_ref();
        if self.restarted_into(hash) {
            self.rollout.complete_for(hash) && proof.is_none_or(Proof::allows_progress)
        } else {
            matches!(proof, Some(Proof::Proven { .. }))
        }
    }

    /// A new config reaches the replicas by a restart: restart mode, or there is no file yet
    /// for a hot reload to pick up.
    fn restart_to_apply(&self) -> bool {
        self.settings.reload == ReloadMode::Restart || self.previous.is_none()
    }

    /// The planner's memory for the config Secret's annotations.
    fn memory(&self, retry_seen: &str, writers: &BTreeSet<String>) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ANNOTATION_SPEC_HASH.to_owned(), self.spec_hash.clone()),
            (ANNOTATION_RETRY_SEEN.to_owned(), retry_seen.to_owned()),
            (
                ANNOTATION_WRITERS.to_owned(),
                writers.iter().cloned().collect::<Vec<_>>().join(","),
            ),
        ])
    }
}

/// The next config and what follows from it, derived once.
struct Target {
    config: DesiredConfig,
    /// Writers of every config rendered since the status last vouched for the data, as the
    /// Secret records them ([`ANNOTATION_WRITERS`]).
    writers_since_active: BTreeSet<String>,
    /// The same once `config` is written.
    writers_after_write: BTreeSet<String>,
    /// The data state once a Job has rewritten everything with `config`.
    data: DataState,
    /// The data state the status describes now.
    current: DataState,
    /// The data is already in the state `config` asks for: nothing to rewrite.
    reached: bool,
    /// For Events and conditions: writer, resources and keys (names only).
    summary: String,
}

/// `(activeKey, encryptedResources)`; plaintext means no encrypted resources.
type DataState = (String, Vec<String>);

impl Target {
    /// Renders the next config from the facts; `Ok(None)` when none is needed any more.
    fn render(facts: &Facts<'_>) -> Result<Option<Self>, RenderError> {
        let previous_complete = match &facts.previous_hash {
            Some(h) => facts.loaded_everywhere(h),
            None => true,
        };
        let input = RenderInput {
            spec: facts.spec,
            key_secrets: &facts.snapshot.key_secrets,
            previous: facts.previous.as_ref(),
            previous_complete,
            status: facts.status,
            initialized: facts.initialized,
            scanned_unused: &facts.scanned_unused,
        };
        let Some(config) = render::render(&input)? else {
            return Ok(None);
        };

        // Every writer of every config rendered since the status last vouched for the data
        // ([`render::status_vouches`]) may have sealed some of it, so the status alone cannot
        // tell that no rewrite is needed.
        let vouched = render::status_vouches(&input);
        let previous_writer = facts.previous.iter().map(|p| p.writer.active_key());
        let writers_since_active: BTreeSet<String> = match facts
            .secret
            .and_then(|s| s.annotations.get(ANNOTATION_WRITERS))
        {
            Some(list) => list
                .split(',')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
            // Unknown history (no annotation): assume anything; a Job will settle it.
            None => previous_writer
                .clone()
                .chain(["unknown".to_owned()])
                .collect(),
        };
        let mut writers_after_write: BTreeSet<String> = if vouched {
            std::iter::once(data_state(facts.status).0)
                .chain(previous_writer)
                .collect()
        } else {
            writers_since_active
                .iter()
                .cloned()
                .chain(previous_writer)
                .collect()
        };
        writers_after_write.insert(config.writer.active_key());

        let data = config.target();
        let current = data_state(facts.status);
        let only_target_wrote = writers_since_active.iter().all(|w| *w == data.0);
        let reached =
            data.0 == current.0 && same_set(&data.1, &current.1) && (vouched || only_target_wrote);
        let summary = format!(
            "writer {}, resources [{}], keys [{}]",
            config.writer.active_key(),
            config.resources().join(", "),
            key_names(&config.config).join(", ")
        );
        Ok(Some(Self {
            config,
            writers_since_active,
            writers_after_write,
            data,
            current,
            reached,
            summary,
        }))
    }

    /// No key's referenced Secret differs from the material rendered under its name.
    fn drift_free(&self) -> bool {
        self.config.drift.is_empty()
    }

    /// The Secret holds this content but its memory annotations are out of date.
    fn memory_stale(&self, facts: &Facts<'_>) -> bool {
        let has_writers = facts
            .secret
            .is_some_and(|s| s.annotations.contains_key(ANNOTATION_WRITERS));
        facts.previous_spec_hash != facts.spec_hash
            || facts.retry_seen != facts.attempt
            || !has_writers
    }
}

/// Where the API server's rollout to the target config stands.
enum RolloutProgress {
    /// The Deployment does not roll to the target yet (or its start was not recorded).
    NotStarted,
    /// Some instance may still run an older config; started this long ago.
    Running { elapsed: Duration },
    /// Every instance runs the target (or the Job already started: a later scale-out or
    /// restart loads the same Secret).
    Complete,
    /// Hot-reload mode, but the replicas export no hash eargate can check, so a reload can
    /// never be confirmed.
    Unprovable { why: String },
}

impl RolloutProgress {
    fn of(facts: &Facts<'_>, target: &Target) -> Self {
        let rollout = facts.rollout;
        let hash = target.config.hash.as_str();
        let Some(started) = rollout.started else {
            return Self::NotStarted;
        };
        let reencrypting = facts.phase == Some(EncryptionPhase::EncryptionNeeded);
        if facts.restarted_into(hash) {
            if rollout.template_hash.as_deref() != Some(hash) {
                return Self::NotStarted;
            }
            if rollout.complete_for(hash) || reencrypting {
                return Self::Complete;
            }
        } else {
            match &facts.proof {
                Some(Proof::Proven { .. }) => return Self::Complete,
                _ if reencrypting => return Self::Complete,
                Some(Proof::Unavailable { why }) => {
                    return Self::Unprovable {
                        why: format!(
                            "hot-reload mode cannot confirm that the API servers reloaded config {hash}: {why}; run the reconciler with --reload=restart"
                        ),
                    }
                }
                Some(Proof::Blocked { .. }) | None => {}
            }
        }
        let elapsed =
            Duration::try_from(facts.snapshot.now.duration_since(started)).unwrap_or_default();
        Self::Running { elapsed }
    }
}

// ---------------------------------------------------------------------------------------
// Transitions: each returns the actions of one step.
// ---------------------------------------------------------------------------------------

/// `Failed` holds until the spec changes or the retry annotation gets a new value; then the
/// rollout starts again from `Pending` with the keys of the failed attempt still configured.
fn retry_failed(mut out: PlanBuilder<'_>, facts: &Facts<'_>) -> Vec<Action> {
    let spec_changed = facts.secret.is_some() && facts.spec_hash != facts.previous_spec_hash;
    let retried = facts.retry != facts.retry_seen;
    if !(spec_changed || retried) {
        return Vec::new();
    }
    let why = if retried {
        format!(
            "retry annotation {} set to a new value",
            names::ANNOTATION_RETRY
        )
    } else {
        "the encryption spec changed".to_owned()
    };
    // Restart the rollout clock first: a crash after it still recovers next time.
    if let Some(hash) = &facts.previous_hash {
        out.actions.push(if facts.restarted_into(hash) {
            Action::RollApiServer {
                hash: hash.clone(),
                started: facts.snapshot.now,
            }
        } else {
            Action::MarkReloadStarted {
                started: facts.snapshot.now,
            }
        });
    }
    out.condition(
        CONDITION_ENCRYPTION_RECONCILED,
        true,
        "Retrying",
        format!("starting again from Pending: {why}"),
    );
    out.status(EncryptionStatusChange::Set(with_phase(
        facts.status,
        EncryptionPhase::Pending,
    )));
    out.event(
        EventType::Normal,
        "Pending",
        format!("Failed -> Pending: {why}; keys of the failed attempt stay configured"),
    );
    out.into_actions(Some(Action::RequeueAfter(facts.settings.poll_interval)))
}

/// No resource needs any provider any more: fully plaintext, the status is cleared.
fn remove_encryption(mut out: PlanBuilder<'_>, facts: &Facts<'_>) -> Vec<Action> {
    out.condition(
        names::CONDITION_ENCRYPTION_INITIALIZED,
        false,
        "EncryptionRemoved",
        "no encryption configured and no encrypted data left".to_owned(),
    );
    out.condition(
        CONDITION_ENCRYPTION_RECONCILED,
        true,
        "Decrypted",
        "nothing is encrypted".to_owned(),
    );
    let change = if facts.status.is_some() {
        EncryptionStatusChange::Clear
    } else {
        EncryptionStatusChange::Keep
    };
    out.status(change);
    out.event(
        EventType::Normal,
        "EncryptionRemoved",
        "no encryption configured and nothing to decrypt: status.encryption cleared".to_owned(),
    );
    out.into_actions(None)
}

/// A referenced key Secret differs from the material already rendered under its name: the
/// rendered material is kept, and the drift is reported (metric, Warning Event, condition).
/// The plan goes on.
fn report_drift(out: &mut PlanBuilder<'_>, target: &Target) {
    let mut messages = Vec::new();
    for key in &target.config.drift {
        out.actions.push(Action::ReportDrift {
            key_name: key.clone(),
        });
        let msg = format!(
            "key {key:?}: the referenced Secret's content differs from the material already rendered under this name; the rendered material is kept (material under a name never changes: add a key with a new name to rotate)"
        );
        out.event(EventType::Warning, "KeyDrift", msg.clone());
        messages.push(msg);
    }
    if !messages.is_empty() {
        out.condition(
            CONDITION_ENCRYPTION_RECONCILED,
            false,
            "KeyDrift",
            messages.join("; "),
        );
    }
}

/// New content: `Pending` first (so `Active` always describes the Secret), then write the
/// config Secret and roll the API server to it.
fn write_config(mut out: PlanBuilder<'_>, facts: &Facts<'_>, target: &Target) -> Vec<Action> {
    let next = &target.config;
    // Keys a scan cleared leave with this config: say so first, it is why a rollout starts.
    let kept = key_names(&next.config);
    let dropped: Vec<&String> = facts
        .previous
        .iter()
        .flat_map(|p| p.keys.iter().map(|(name, _)| name))
        .filter(|name| !kept.contains(name) && facts.scanned_unused.contains(*name))
        .collect();
    if !dropped.is_empty() {
        let names = dropped
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let scan = facts.snapshot.scan.as_ref().map(|s| s.job.as_str());
        let message = format!(
            "storage scan {} found nothing sealed with [{names}]: the config without them is rolling out",
            scan.unwrap_or_default()
        );
        out.condition(CONDITION_KEYS_RETAINED, false, "Dropped", message.clone());
        out.event(EventType::Normal, "KeysDropped", message);
    }
    if facts.phase != Some(EncryptionPhase::Pending) {
        if !facts.initialized {
            out.condition(
                names::CONDITION_ENCRYPTION_INITIALIZED,
                true,
                "Pending",
                "encryption at rest is being configured".to_owned(),
            );
        }
        out.enter(
            facts.status,
            facts.phase,
            EncryptionPhase::Pending,
            target
                .drift_free()
                .then(|| format!("rolling out config {}", next.hash)),
            format!("new encryption configuration {}", next.hash),
        );
    }
    out.actions.push(Action::WriteConfigSecret {
        yaml: next.yaml.clone(),
        hash: next.hash.clone(),
        annotations: facts.memory(&facts.retry, &target.writers_after_write),
    });
    if facts.restart_to_apply() {
        out.actions.push(Action::RollApiServer {
            hash: next.hash.clone(),
            started: facts.snapshot.now,
        });
        out.event(
            EventType::Normal,
            "RolloutStarted",
            format!(
                "rolling API server {:?} to encryption config {} ({})",
                facts.settings.apiserver_deployment, next.hash, target.summary
            ),
        );
    } else {
        out.actions.push(Action::MarkReloadStarted {
            started: facts.snapshot.now,
        });
        out.event(
            EventType::Normal,
            "ReloadStarted",
            format!(
                "API server {:?} replicas are to reload encryption config {} ({})",
                facts.settings.apiserver_deployment, next.hash, target.summary
            ),
        );
    }
    out.into_actions(Some(Action::RequeueAfter(facts.settings.poll_interval)))
}

/// The content is current but the planner's memory on the Secret is not (metadata only).
/// The Job name depends on this memory, so the rest is decided on a fresh snapshot.
fn refresh_memory(mut out: PlanBuilder<'_>, facts: &Facts<'_>, target: &Target) -> Vec<Action> {
    out.actions.push(Action::WriteConfigSecret {
        yaml: target.config.yaml.clone(),
        hash: target.config.hash.clone(),
        annotations: facts.memory(&facts.attempt, &target.writers_since_active),
    });
    out.into_actions(Some(Action::RequeueAfter(Duration::from_secs(1))))
}

/// `Active`, and the data is what the config asks for: nothing to change — except keys the
/// spec no longer names, which stay until a storage scan finds nothing sealed with them.
fn stay_active(mut out: PlanBuilder<'_>, facts: &Facts<'_>, target: &Target) -> Vec<Action> {
    if target.drift_free() {
        out.condition(
            CONDITION_ENCRYPTION_RECONCILED,
            true,
            "Active",
            format!(
                "config {} is active ({})",
                target.config.hash, target.summary
            ),
        );
    }
    let spec_keys: BTreeSet<String> = facts
        .spec
        .and_then(|s| s.secretbox.as_ref())
        .map(|b| b.keys.iter().map(|k| k.name.clone()).collect())
        .unwrap_or_default();
    let writer = match &target.config.writer {
        Writer::Secretbox(name) => Some(name.as_str()),
        Writer::Identity => None,
    };
    let retained = retention::retained(
        facts.scan,
        &key_names(&target.config.config),
        &spec_keys,
        writer,
    );
    if retained.is_empty() {
        // Only Clusters that ever retained a key carry the condition.
        if out.has_condition(CONDITION_KEYS_RETAINED, "True")
            || out.has_condition(CONDITION_KEYS_RETAINED, "False")
        {
            out.condition(
                CONDITION_KEYS_RETAINED,
                false,
                "NoneRetained",
                "no removed key is left in the config: every key in it is named by the spec"
                    .to_owned(),
            );
        }
        return out.into_actions(None);
    }
    keep_retained(out, facts, target, &retained)
}

/// Keys the spec no longer names are still in the config: scan the user cluster's etcd (one
/// Job at a time, rescanning with backoff while something is still sealed with them) and say
/// so in a condition, an Event and the metrics. The phase stays `Active`: no data changes.
fn keep_retained(
    mut out: PlanBuilder<'_>,
    facts: &Facts<'_>,
    target: &Target,
    retained: &[retention::Retained],
) -> Vec<Action> {
    let snapshot = facts.snapshot;
    let settings = facts.settings;
    for r in retained {
        let (objects, older_revisions) = match r.verdict {
            Some(KeyVerdict::InUse {
                objects,
                older_revisions,
            }) => (Some(objects), Some(older_revisions)),
            Some(KeyVerdict::Unused) => (Some(0), Some(0)),
            Some(KeyVerdict::Unknown(_)) | None => (None, None),
        };
        out.actions.push(Action::ReportRetained {
            key_name: r.key.clone(),
            objects,
            older_revisions,
        });
    }
    let latest = snapshot.scan.as_ref();
    let current = facts.scan;
    // When the next scan is due: never while one runs; after the backoff when the current
    // one (which is the latest) ended; now when none counts (none yet, or one from before
    // the config was written).
    let due_in = if latest.is_some_and(|l| l.state == ScanState::Running) {
        Some(settings.poll_interval)
    } else {
        current
            .and_then(|c| Some((c.attempt, c.state.ended_at()?)))
            .map(|(attempt, at)| {
                retention::rescan_due_in(at, snapshot.now, settings.scan.rescan_after(attempt))
            })
            .filter(|wait| !wait.is_zero())
    };
    let (reason, message) = retention::describe(retained, current);
    if matches!(reason, "StillInUse" | "ScanInconclusive" | "ScanFailed")
        && !out.says(CONDITION_KEYS_RETAINED, "True", reason, &message)
    {
        out.event(EventType::Warning, "KeysRetained", message.clone());
    }
    out.condition(CONDITION_KEYS_RETAINED, true, reason, message);
    if let Some(wait) = due_in {
        return out.into_actions(Some(Action::RequeueAfter(wait)));
    }
    let attempt = latest.map_or(1, |l| l.attempt + 1);
    let cluster = snapshot
        .cluster
        .metadata
        .name
        .as_deref()
        .unwrap_or_default();
    let job = job::build_scan_job(
        cluster,
        &snapshot.namespace,
        &target.config.hash,
        attempt,
        facts.rollout.started,
        settings,
    );
    let names = retained
        .iter()
        .map(|r| r.key.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    out.event(
        EventType::Normal,
        "StorageScanStarted",
        format!(
            "Job {} scans etcd for data still sealed with [{names}]",
            job::scan_job_name(&target.config.hash, attempt)
        ),
    );
    out.actions.push(Action::CreateJob { job: Box::new(job) });
    // The new scan supersedes the last one (finished, or from an earlier period): its Job
    // and Pod go, so rescans leave one Job behind, not one per rescan.
    if let Some(previous) = latest.filter(|l| l.state != ScanState::Running) {
        out.actions.push(Action::DeleteJob {
            name: previous.job.clone(),
        });
    }
    out.into_actions(Some(Action::RequeueAfter(settings.poll_interval)))
}

/// The API server must run this config everywhere before anything is promoted: point its
/// pod template at the config (again, if the start was not recorded).
fn start_rollout(mut out: PlanBuilder<'_>, facts: &Facts<'_>, target: &Target) -> Vec<Action> {
    let hash = &target.config.hash;
    if !facts.restarted_into(hash) {
        out.actions.push(Action::MarkReloadStarted {
            started: facts.snapshot.now,
        });
        return out.into_actions(Some(Action::RequeueAfter(facts.settings.poll_interval)));
    }
    out.actions.push(Action::RollApiServer {
        hash: hash.clone(),
        started: facts.snapshot.now,
    });
    out.event(
        EventType::Normal,
        "RolloutStarted",
        format!(
            "rolling API server {:?} to encryption config {hash}",
            facts.settings.apiserver_deployment
        ),
    );
    out.into_actions(Some(Action::RequeueAfter(facts.settings.poll_interval)))
}

/// Wait for the rollout; past the timeout, `Failed`.
fn await_rollout(
    mut out: PlanBuilder<'_>,
    facts: &Facts<'_>,
    target: &Target,
    elapsed: Duration,
) -> Vec<Action> {
    let settings = facts.settings;
    let hash = target.config.hash.as_str();
    let proof = facts.proof.as_ref();
    if let Some(proof @ Proof::Blocked { .. }) = proof {
        out.condition(
            CONDITION_CONFIG_LOADED,
            false,
            "Loading",
            proof.message(hash),
        );
    }
    if elapsed <= settings.rollout_timeout {
        return out.into_actions(Some(Action::RequeueAfter(settings.poll_interval)));
    }
    if !facts.restarted_into(hash) {
        let msg = format!(
            "API server replicas did not reload config {hash} within {}s: {}",
            settings.rollout_timeout.as_secs(),
            proof.map(|p| p.message(hash)).unwrap_or_default()
        );
        return fail(out, facts, "ReloadTimeout", msg);
    }
    let r = facts.rollout;
    let msg = format!(
        "API server rollout to config {} did not finish within {}s ({} of {} replicas updated, {} available, {} ready, {} pods in total)",
        target.config.hash,
        settings.rollout_timeout.as_secs(),
        r.updated,
        r.desired,
        r.available,
        r.ready,
        r.total
    );
    fail(out, facts, "RolloutTimeout", msg)
}

/// The gate before a Job starts or a rollout is called done: every serving replica reports
/// the hash of the bytes in the Secret. `false` (after a condition and a Warning Event naming
/// the replicas) while one reports another config or cannot be reached; a version without a
/// checkable hash passes, and the condition says the proof is unavailable.
fn prove_loaded(out: &mut PlanBuilder<'_>, facts: &Facts<'_>, target: &Target) -> bool {
    let hash = target.config.hash.as_str();
    let Some(proof) = &facts.proof else {
        return true;
    };
    let message = proof.message(hash);
    match proof {
        Proof::Proven { .. } => {
            out.condition(CONDITION_CONFIG_LOADED, true, "Proven", message);
            true
        }
        Proof::Unavailable { .. } => {
            out.condition_status(
                CONDITION_CONFIG_LOADED,
                "Unknown",
                "ProofUnavailable",
                message,
            );
            true
        }
        Proof::Blocked { .. } => {
            out.condition(
                CONDITION_CONFIG_LOADED,
                false,
                "ReplicaNotProven",
                message.clone(),
            );
            out.event(EventType::Warning, "ReplicaNotProven", message);
            false
        }
    }
}

/// Stored data must be rewritten with the new writer: `EncryptionNeeded`, and one Job per
/// (config, attempt); its outcome decides between [`finish`] and `Failed`.
fn reencrypt(mut out: PlanBuilder<'_>, facts: &Facts<'_>, target: &Target) -> Vec<Action> {
    let next = &target.config;
    let poll = Action::RequeueAfter(facts.settings.poll_interval);
    if facts.phase != Some(EncryptionPhase::EncryptionNeeded) {
        out.enter(
            facts.status,
            facts.phase,
            EncryptionPhase::EncryptionNeeded,
            target
                .drift_free()
                .then(|| format!("re-encrypting for config {}", next.hash)),
            format!(
                "stored data moves from {} to {}",
                target.current.0, target.data.0
            ),
        );
    }
    let job_name = job::job_name(&next.hash, &facts.attempt);
    match &facts.snapshot.job {
        None => {
            let job = job::build_job(
                facts
                    .snapshot
                    .cluster
                    .metadata
                    .name
                    .as_deref()
                    .unwrap_or_default(),
                &facts.snapshot.namespace,
                &next.hash,
                &facts.attempt,
                next.resources(),
                facts.settings,
            );
            out.actions.push(Action::CreateJob { job: Box::new(job) });
            out.event(
                EventType::Normal,
                "ReencryptionStarted",
                format!(
                    "Job {job_name} re-encrypts [{}] with {}",
                    next.resources().join(", "),
                    target.data.0
                ),
            );
            out.into_actions(Some(poll))
        }
        Some(JobState::Running) => out.into_actions(Some(poll)),
        Some(JobState::Succeeded) => {
            out.event(
                EventType::Normal,
                "ReencryptionSucceeded",
                format!(
                    "Job {job_name} rewrote [{}] with {}",
                    next.resources().join(", "),
                    target.data.0
                ),
            );
            finish(out, facts, target)
        }
        Some(JobState::Failed { reason }) => {
            let msg = format!(
                "re-encryption Job {job_name} failed: {reason}; set annotation {}=<new value> or change the spec to retry",
                names::ANNOTATION_RETRY
            );
            fail(out, facts, "JobFailed", msg)
        }
    }
}

/// The config is rolled out and the data matches it: `Active`, or the status cleared after a
/// full decryption with encryption disabled or removed.
fn finish(mut out: PlanBuilder<'_>, facts: &Facts<'_>, target: &Target) -> Vec<Action> {
    let hash = &target.config.hash;
    let summary = &target.summary;
    let set_condition = target.drift_free();
    if !facts.enabled && target.config.writer == Writer::Identity {
        if facts.status.is_none() {
            return out.into_actions(None);
        }
        out.condition(
            names::CONDITION_ENCRYPTION_INITIALIZED,
            false,
            "Decrypted",
            "all data is stored in plaintext; encryption is disabled".to_owned(),
        );
        if set_condition {
            out.condition(
                CONDITION_ENCRYPTION_RECONCILED,
                true,
                "Decrypted",
                format!("config {hash} stores plaintext ({summary})"),
            );
        }
        out.status(EncryptionStatusChange::Clear);
        out.event(
            EventType::Normal,
            "Decrypted",
            format!(
                "{} -> (none): all data decrypted, status.encryption cleared",
                phase_name(facts.phase)
            ),
        );
        return out.into_actions(None);
    }
    let (active_key, encrypted_resources) = target.data.clone();
    if set_condition {
        out.condition(
            CONDITION_ENCRYPTION_RECONCILED,
            true,
            "Active",
            format!("config {hash} is active ({summary})"),
        );
    }
    out.condition(
        names::CONDITION_ENCRYPTION_INITIALIZED,
        true,
        "Active",
        "encryption at rest is configured".to_owned(),
    );
    out.status(EncryptionStatusChange::Set(ClusterEncryptionStatus {
        phase: Some(EncryptionPhase::Active),
        active_key: active_key.clone(),
        encrypted_resources,
    }));
    out.event(
        EventType::Normal,
        "Active",
        format!(
            "{} -> Active: stored data uses {active_key} ({summary})",
            phase_name(facts.phase)
        ),
    );
    out.into_actions(None)
}

/// `Failed` with a reason in the condition and a Warning Event.
fn fail(mut out: PlanBuilder<'_>, facts: &Facts<'_>, reason: &str, msg: String) -> Vec<Action> {
    out.condition(CONDITION_ENCRYPTION_RECONCILED, false, reason, msg.clone());
    out.status(EncryptionStatusChange::Set(with_phase(
        facts.status,
        EncryptionPhase::Failed,
    )));
    out.event(
        EventType::Warning,
        "Failed",
        format!("{} -> Failed ({reason}): {msg}", phase_name(facts.phase)),
    );
    out.into_actions(None)
}

// ---------------------------------------------------------------------------------------
// The actions of one plan, built in order.
// ---------------------------------------------------------------------------------------

/// Collects one plan's actions; condition changes are queued and written together with the
/// next status change, as one status patch.
struct PlanBuilder<'a> {
    snapshot: &'a ClusterSnapshot,
    actions: Vec<Action>,
    conditions: BTreeMap<String, ClusterCondition>,
}

impl<'a> PlanBuilder<'a> {
    fn new(snapshot: &'a ClusterSnapshot) -> Self {
        Self {
            snapshot,
            actions: Vec::new(),
            conditions: BTreeMap::new(),
        }
    }

    fn event(&mut self, type_: EventType, reason: &str, note: String) {
        self.actions.push(Action::Event {
            type_,
            reason: reason.to_owned(),
            note,
        });
    }

    /// Queues a condition write, unless the Cluster already says exactly that.
    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" };
        self.condition_status(type_, status, reason, message);
    }

    /// The Cluster's condition of this type, as observed.
    fn existing(&self, type_: &str) -> Option<&'a ClusterCondition> {
        self.snapshot
            .cluster
            .status
            .as_ref()
            .and_then(|s| s.conditions.get(type_))
    }

    /// The Cluster has a condition of this type with this status.
    fn has_condition(&self, type_: &str, status: &str) -> bool {
        self.existing(type_).is_some_and(|c| c.status == status)
    }

    /// The Cluster already says exactly this (so an Event about it would repeat itself).
    fn says(&self, type_: &str, status: &str, reason: &str, message: &str) -> bool {
        self.existing(type_).is_some_and(|c| {
            c.status == status
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        })
    }

    /// [`PlanBuilder::condition`] with the status spelled out (`"Unknown"` too).
    fn condition_status(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let now = self.snapshot.now;
        let existing = self.existing(type_);
        if self.says(type_, status, reason, &message) {
            return;
        }
        let transition = match existing {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(now.to_string()),
        };
        self.conditions.insert(
            type_.to_owned(),
            ClusterCondition {
                status: status.to_owned(),
                kubermatic_version: existing.and_then(|c| c.kubermatic_version.clone()),
                last_heartbeat_time: Some(now.to_string()),
                last_transition_time: transition,
                reason: Some(reason.to_owned()),
                message: Some(message),
            },
        );
    }

    /// Flushes queued conditions (and a status change) as one status patch.
    fn status(&mut self, encryption: EncryptionStatusChange) {
        let conditions = std::mem::take(&mut self.conditions);
        if encryption == EncryptionStatusChange::Keep && conditions.is_empty() {
            return;
        }
        self.actions.push(Action::PatchStatus {
            encryption,
            conditions,
        });
    }

    /// A step forward in the rollout: the phase `to` in status.encryption (data state kept),
    /// the Reconciled condition saying what is under way (`progress`, left out while a
    /// drift message owns the condition) and a Normal Event "`from` -> `to`: `why`".
    fn enter(
        &mut self,
        status: Option<&ClusterEncryptionStatus>,
        from: Option<EncryptionPhase>,
        to: EncryptionPhase,
        progress: Option<String>,
        why: String,
    ) {
        if let Some(progress) = progress {
            self.condition(CONDITION_ENCRYPTION_RECONCILED, true, to.as_str(), progress);
        }
        self.status(EncryptionStatusChange::Set(with_phase(status, to)));
        self.event(
            EventType::Normal,
            to.as_str(),
            format!("{} -> {}: {why}", phase_name(from), to.as_str()),
        );
    }

    /// A problem outside the planner's reach (missing key Secret or Deployment, unreadable
    /// config): condition, Warning Event, retry with the controller's backoff.
    fn blocked(mut self, reason: &str, msg: &str) -> Vec<Action> {
        self.condition(
            CONDITION_ENCRYPTION_RECONCILED,
            false,
            reason,
            msg.to_owned(),
        );
        self.status(EncryptionStatusChange::Keep);
        self.event(EventType::Warning, reason, msg.to_owned());
        self.into_actions(Some(Action::Backoff {
            reason: reason.to_owned(),
        }))
    }

    /// The actions, with queued conditions flushed and `tail` last.
    fn into_actions(mut self, tail: Option<Action>) -> Vec<Action> {
        self.status(EncryptionStatusChange::Keep);
        self.actions.extend(tail);
        self.actions
    }
}

/// The data state the status describes; no status means everything is plaintext.
fn data_state(status: Option<&ClusterEncryptionStatus>) -> DataState {
    match status {
        Some(s) if !s.active_key.is_empty() => {
            (s.active_key.clone(), s.encrypted_resources.clone())
        }
        Some(s) => (
            names::ACTIVE_KEY_IDENTITY.to_owned(),
            s.encrypted_resources.clone(),
        ),
        None => (names::ACTIVE_KEY_IDENTITY.to_owned(), Vec::new()),
    }
}

/// `status.encryption` with a new phase and the data state kept.
fn with_phase(
    status: Option<&ClusterEncryptionStatus>,
    phase: EncryptionPhase,
) -> ClusterEncryptionStatus {
    let (active_key, encrypted_resources) = data_state(status);
    ClusterEncryptionStatus {
        phase: Some(phase),
        active_key,
        encrypted_resources,
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

fn phase_name(p: Option<EncryptionPhase>) -> &'static str {
    p.map(|p| p.as_str()).unwrap_or("(none)")
}

fn key_names(c: &EncryptionConfig) -> Vec<String> {
    c.secretbox_key_names().map(str::to_owned).collect()
}
