//! The phase machine behind [`crate::plan::plan`] (issue 4, points 2, 3, 5, 6).
//!
//! ```text
//! nothing ─► Pending ─(rollout complete, config stable)─► EncryptionNeeded ─(Job ok)─► Active
//!               │                                  └──(nothing to rewrite)──────────► Active
//!               └─(rollout timeout)─► Failed ◄─(Job failed)─┘
//! Failed ─(spec change | new retry annotation value)─► Pending
//! disabled/removed + fully decrypted ─► status.encryption cleared, EncryptionInitialized=False
//! ```
//! Each step returns early with the actions of one transition; the status or object it writes
//! triggers the next reconcile. Every transition emits an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eargate_policy::model::{ClusterCondition, ClusterEncryptionStatus, EncryptionPhase};
use eargate_policy::names;

use crate::job;
use crate::plan::{
    Action, EncryptionStatusChange, EventType, Observed, Settings, ANNOTATION_RETRY_SEEN,
    ANNOTATION_SPEC_HASH, ANNOTATION_WRITERS, CONDITION_ENCRYPTION_RECONCILED,
};
use crate::render::{self, Previous, RenderInput, Writer};

/// Builder of one plan's actions.
struct Out<'a> {
    o: &'a Observed,
    actions: Vec<Action>,
    conditions: BTreeMap<String, ClusterCondition>,
}

impl<'a> Out<'a> {
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
        let existing = self
            .o
            .cluster
            .status
            .as_ref()
            .and_then(|s| s.conditions.get(type_));
        if existing.is_some_and(|c| {
            c.status == status
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(&message)
        }) {
            return;
        }
        let transition = match existing {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(self.o.now.to_string()),
        };
        self.conditions.insert(
            type_.to_owned(),
            ClusterCondition {
                status: status.to_owned(),
                kubermatic_version: existing.and_then(|c| c.kubermatic_version.clone()),
                last_heartbeat_time: Some(self.o.now.to_string()),
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

    fn finish(mut self, tail: Option<Action>) -> Vec<Action> {
        self.status(EncryptionStatusChange::Keep);
        self.actions.extend(tail);
        self.actions
    }
}

/// The data state the status describes: `(activeKey, encryptedResources)`; no status means
/// everything is plaintext.
fn data_state(status: Option<&ClusterEncryptionStatus>) -> (String, Vec<String>) {
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

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

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

/// See [`crate::plan::plan`].
pub fn plan(o: &Observed, s: &Settings) -> Vec<Action> {
    let mut out = Out {
        o,
        actions: Vec::new(),
        conditions: BTreeMap::new(),
    };
    let cluster_name = o.cluster.metadata.name.clone().unwrap_or_default();
    let spec = o.cluster.spec.encryption_configuration.as_ref();
    let enabled = spec.is_some_and(|c| c.enabled);
    let status = o
        .cluster
        .status
        .as_ref()
        .and_then(|st| st.encryption.as_ref());
    let phase = status.and_then(|st| st.phase);
    let initialized = o
        .cluster
        .status
        .as_ref()
        .and_then(|st| st.conditions.get(names::CONDITION_ENCRYPTION_INITIALIZED))
        .is_some_and(|c| c.status == "True");

    // Nothing configured and nothing encrypted: nothing to do.
    if status.is_none() && !enabled && !initialized {
        return Vec::new();
    }

    // The previous config, if eargate can read it.
    let rendered = o
        .rendered
        .as_ref()
        .and_then(|r| r.data.as_ref().map(|d| (r, d)));
    let previous = match rendered.map(|(_, d)| Previous::parse(d)).transpose() {
        Ok(p) => p,
        Err(e) => return blocked(out, &e.to_string(), e.reason(), s),
    };
    let prev_hash = rendered.map(|(_, d)| render::content_hash(d));
    let annotation = |k: &str| {
        rendered
            .and_then(|(r, _)| r.annotations.get(k).cloned())
            .unwrap_or_default()
    };
    let seen = annotation(ANNOTATION_RETRY_SEEN);
    let prev_spec_hash = annotation(ANNOTATION_SPEC_HASH);
    let retry = o
        .cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_RETRY).cloned())
        .unwrap_or_default();
    let spec_hash = render::spec_hash(spec);

    let Some(rollout) = o.rollout.as_ref() else {
        let msg = format!(
            "API server Deployment {:?} not found in namespace {:?}",
            s.apiserver_deployment, o.namespace
        );
        return blocked(out, &msg, "ApiServerMissing", s);
    };

    // Failed holds until the spec changes or the retry annotation gets a new value.
    if phase == Some(EncryptionPhase::Failed) {
        let spec_changed = rendered.is_some() && spec_hash != prev_spec_hash;
        let retried = retry != seen;
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
        if let Some(h) = &prev_hash {
            out.actions.push(Action::RollApiServer {
                hash: h.clone(),
                started: o.now,
            });
        }
        out.condition(
            CONDITION_ENCRYPTION_RECONCILED,
            true,
            "Retrying",
            format!("starting again from Pending: {why}"),
        );
        out.status(EncryptionStatusChange::Set(with_phase(
            status,
            EncryptionPhase::Pending,
        )));
        out.event(
            EventType::Normal,
            "Pending",
            format!("Failed -> Pending: {why}; keys of the failed attempt stay configured"),
        );
        return out.finish(Some(Action::RequeueAfter(s.poll_interval)));
    }

    let previous_complete = match &prev_hash {
        Some(h) => rollout.complete_for(h),
        None => true,
    };
    let input = RenderInput {
        spec,
        key_secrets: &o.key_secrets,
        previous: previous.as_ref(),
        previous_complete,
        status,
        initialized,
    };
    let next = match render::render(&input) {
        Ok(Some(n)) => n,
        Ok(None) => {
            // No resource needs any provider any more: fully plaintext.
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
            let change = if status.is_some() {
                EncryptionStatusChange::Clear
            } else {
                EncryptionStatusChange::Keep
            };
            out.status(change);
            out.event(
                EventType::Normal,
                "EncryptionRemoved",
                "no encryption configured and nothing to decrypt: status.encryption cleared"
                    .to_owned(),
            );
            return out.finish(None);
        }
        Err(e) => return blocked(out, &e.to_string(), e.reason(), s),
    };
    let mut drift_msgs = Vec::new();
    for key in &next.drift {
        out.actions.push(Action::ReportDrift {
            key_name: key.clone(),
        });
        let msg = format!(
            "key {key:?}: the referenced Secret's content differs from the material already rendered under this name; the rendered material is kept (material under a name never changes: add a key with a new name to rotate)"
        );
        out.event(EventType::Warning, "KeyDrift", msg.clone());
        drift_msgs.push(msg);
    }
    if !drift_msgs.is_empty() {
        out.condition(
            CONDITION_ENCRYPTION_RECONCILED,
            false,
            "KeyDrift",
            drift_msgs.join("; "),
        );
    }

    // Writers since the last vouched state: every writer of every config rendered since then
    // may have sealed data, so the status alone cannot tell that no rewrite is needed.
    let vouched = render::status_vouches(&input);
    let prev_writers: BTreeSet<String> =
        match rendered.and_then(|(r, _)| r.annotations.get(ANNOTATION_WRITERS)) {
            Some(list) => list
                .split(',')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
            // Unknown history (no annotation): assume anything; a Job will settle it.
            None => previous
                .iter()
                .map(|p| p.writer.active_key())
                .chain(["unknown".to_owned()])
                .collect(),
        };
    let writers_after_write: BTreeSet<String> = {
        let mut w: BTreeSet<String> = if vouched {
            std::iter::once(data_state(status).0)
                .chain(previous.iter().map(|p| p.writer.active_key()))
                .collect()
        } else {
            prev_writers
                .iter()
                .cloned()
                .chain(previous.iter().map(|p| p.writer.active_key()))
                .collect()
        };
        w.insert(next.writer.active_key());
        w
    };
    let annotations = |retry_seen: &str, writers: &BTreeSet<String>| {
        BTreeMap::from([
            (ANNOTATION_SPEC_HASH.to_owned(), spec_hash.clone()),
            (ANNOTATION_RETRY_SEEN.to_owned(), retry_seen.to_owned()),
            (
                ANNOTATION_WRITERS.to_owned(),
                writers.iter().cloned().collect::<Vec<_>>().join(","),
            ),
        ])
    };
    let summary = format!(
        "writer {}, resources [{}], keys [{}]",
        next.writer.active_key(),
        next.resources().join(", "),
        key_names(&next.config).join(", ")
    );

    // 1. New content: Pending first (so Active always describes the Secret), then write and roll.
    if prev_hash.as_deref() != Some(next.hash.as_str()) {
        if phase != Some(EncryptionPhase::Pending) {
            if !initialized {
                out.condition(
                    names::CONDITION_ENCRYPTION_INITIALIZED,
                    true,
                    "Pending",
                    "encryption at rest is being configured".to_owned(),
                );
            }
            out.enter(
                status,
                phase,
                EncryptionPhase::Pending,
                drift_msgs
                    .is_empty()
                    .then(|| format!("rolling out config {}", next.hash)),
                format!("new encryption configuration {}", next.hash),
            );
        }
        out.actions.push(Action::WriteConfigSecret {
            yaml: next.yaml.clone(),
            hash: next.hash.clone(),
            annotations: annotations(&retry, &writers_after_write),
        });
        out.actions.push(Action::RollApiServer {
            hash: next.hash.clone(),
            started: o.now,
        });
        out.event(
            EventType::Normal,
            "RolloutStarted",
            format!(
                "rolling API server {:?} to encryption config {} ({summary})",
                s.apiserver_deployment, next.hash
            ),
        );
        return out.finish(Some(Action::RequeueAfter(s.poll_interval)));
    }

    // Content is current. Keep the planner's memory on the Secret current (metadata only).
    let in_pending = phase == Some(EncryptionPhase::Pending) || status.is_none();
    let want_seen = if in_pending {
        retry.clone()
    } else {
        seen.clone()
    };
    let has_writers = rendered.is_some_and(|(r, _)| r.annotations.contains_key(ANNOTATION_WRITERS));
    if prev_spec_hash != spec_hash || seen != want_seen || !has_writers {
        out.actions.push(Action::WriteConfigSecret {
            yaml: next.yaml.clone(),
            hash: next.hash.clone(),
            annotations: annotations(&want_seen, &prev_writers),
        });
        // The Job name depends on this memory: decide the rest on a fresh observation.
        return out.finish(Some(Action::RequeueAfter(Duration::from_secs(1))));
    }

    // Stable and Active with nothing to change.
    let target = next.target();
    let current = data_state(status);
    let only_target_wrote = prev_writers.iter().all(|w| *w == target.0);
    let target_reached =
        target.0 == current.0 && same_set(&target.1, &current.1) && (vouched || only_target_wrote);
    if phase == Some(EncryptionPhase::Active) && target_reached {
        if drift_msgs.is_empty() {
            out.condition(
                CONDITION_ENCRYPTION_RECONCILED,
                true,
                "Active",
                format!("config {} is active ({summary})", next.hash),
            );
        }
        return out.finish(None);
    }

    // 2. The API server must run this config everywhere before anything is promoted.
    let started = rollout.started;
    if rollout.template_hash.as_deref() != Some(next.hash.as_str()) || started.is_none() {
        out.actions.push(Action::RollApiServer {
            hash: next.hash.clone(),
            started: o.now,
        });
        out.event(
            EventType::Normal,
            "RolloutStarted",
            format!(
                "rolling API server {:?} to encryption config {}",
                s.apiserver_deployment, next.hash
            ),
        );
        return out.finish(Some(Action::RequeueAfter(s.poll_interval)));
    }
    let waiting_ok = phase == Some(EncryptionPhase::EncryptionNeeded);
    if !rollout.complete_for(&next.hash) && !waiting_ok {
        let elapsed = started
            .map(|t| o.now.duration_since(t))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        if elapsed > s.rollout_timeout {
            let msg = format!(
                "API server rollout to config {} did not finish within {}s ({} of {} replicas updated, {} available, {} ready, {} pods in total)",
                next.hash,
                s.rollout_timeout.as_secs(),
                rollout.updated,
                rollout.desired,
                rollout.available,
                rollout.ready,
                rollout.total
            );
            return failed(out, status, phase, "RolloutTimeout", msg);
        }
        return out.finish(Some(Action::RequeueAfter(s.poll_interval)));
    }

    // 3. Rolled out everywhere. Nothing to rewrite: done.
    if target_reached {
        return done(
            out,
            status,
            phase,
            enabled,
            &next,
            &summary,
            drift_msgs.is_empty(),
        );
    }

    // 4. Stored data must be rewritten with the new writer.
    if phase != Some(EncryptionPhase::EncryptionNeeded) {
        out.enter(
            status,
            phase,
            EncryptionPhase::EncryptionNeeded,
            drift_msgs
                .is_empty()
                .then(|| format!("re-encrypting for config {}", next.hash)),
            format!("stored data moves from {} to {}", current.0, target.0),
        );
    }
    let job_name = job::job_name(&next.hash, &want_seen);
    match &o.job {
        None => {
            let j = job::build_job(
                &cluster_name,
                &o.namespace,
                &next.hash,
                &want_seen,
                next.resources(),
                s,
            );
            out.actions.push(Action::CreateJob { job: Box::new(j) });
            out.event(
                EventType::Normal,
                "ReencryptionStarted",
                format!(
                    "Job {job_name} re-encrypts [{}] with {}",
                    next.resources().join(", "),
                    target.0
                ),
            );
            out.finish(Some(Action::RequeueAfter(s.poll_interval)))
        }
        Some(crate::plan::JobState::Running) => {
            out.finish(Some(Action::RequeueAfter(s.poll_interval)))
        }
        Some(crate::plan::JobState::Succeeded) => {
            out.event(
                EventType::Normal,
                "ReencryptionSucceeded",
                format!(
                    "Job {job_name} rewrote [{}] with {}",
                    next.resources().join(", "),
                    target.0
                ),
            );
            done(
                out,
                status,
                phase,
                enabled,
                &next,
                &summary,
                drift_msgs.is_empty(),
            )
        }
        Some(crate::plan::JobState::Failed { reason }) => {
            let msg = format!("re-encryption Job {job_name} failed: {reason}; set annotation {}=<new value> or change the spec to retry", names::ANNOTATION_RETRY);
            failed(out, status, phase, "JobFailed", msg)
        }
    }
}

/// The config is rolled out and the data matches it: `Active`, or cleared after a full
/// decryption with encryption disabled or removed.
fn done(
    mut out: Out<'_>,
    status: Option<&ClusterEncryptionStatus>,
    phase: Option<EncryptionPhase>,
    enabled: bool,
    next: &render::RenderedConfig,
    summary: &str,
    set_condition: bool,
) -> Vec<Action> {
    let hash = &next.hash;
    if !enabled && next.writer == Writer::Identity {
        if status.is_none() {
            return out.finish(None);
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
                phase_name(phase)
            ),
        );
        return out.finish(None);
    }
    let (active_key, encrypted_resources) = next.target();
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
            phase_name(phase)
        ),
    );
    out.finish(None)
}

/// `Failed` with a reason in the condition and a Warning Event.
fn failed(
    mut out: Out<'_>,
    status: Option<&ClusterEncryptionStatus>,
    phase: Option<EncryptionPhase>,
    reason: &str,
    msg: String,
) -> Vec<Action> {
    out.condition(CONDITION_ENCRYPTION_RECONCILED, false, reason, msg.clone());
    out.status(EncryptionStatusChange::Set(with_phase(
        status,
        EncryptionPhase::Failed,
    )));
    out.event(
        EventType::Warning,
        "Failed",
        format!("{} -> Failed ({reason}): {msg}", phase_name(phase)),
    );
    out.finish(None)
}

/// A problem outside the planner's reach: condition, Warning Event, retry with backoff.
fn blocked(mut out: Out<'_>, msg: &str, reason: &str, _s: &Settings) -> Vec<Action> {
    out.condition(
        CONDITION_ENCRYPTION_RECONCILED,
        false,
        reason,
        msg.to_owned(),
    );
    out.status(EncryptionStatusChange::Keep);
    out.event(EventType::Warning, reason, msg.to_owned());
    out.finish(Some(Action::Backoff {
        reason: reason.to_owned(),
    }))
}

fn phase_name(p: Option<EncryptionPhase>) -> &'static str {
    p.map(|p| p.as_str()).unwrap_or("(none)")
}

fn key_names(c: &eargate_policy::apiserver_config::EncryptionConfig) -> Vec<String> {
    c.resources
        .iter()
        .flat_map(|r| r.providers.iter())
        .filter_map(|p| p.secretbox.as_ref())
        .flat_map(|s| s.keys.iter().map(|k| k.name.clone()))
        .collect()
}
