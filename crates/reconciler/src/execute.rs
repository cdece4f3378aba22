//! Carries out the planner's [`Action`]s, in order, stopping at the first error.
//!
//! Every write names only what it changes: the Cluster is never replaced (its typed model
//! drops unknown fields), status goes through the `/status` subresource as a merge patch
//! holding `status.encryption` and the listed conditions, preconditioned on the
//! resourceVersion the plan was made from, so a plan made from a Cluster that has changed
//! since is refused (409) and made again.

use std::collections::BTreeMap;
use std::time::Duration;

use eargate_policy::model::{Cluster, ClusterCondition, EncryptionPhase};
use eargate_policy::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType as KubeEventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::{json, Map, Value};
use tracing::{debug, info, warn};

use crate::context::{Context, Error};
use crate::metrics::{JobOutcome, RetainedKey};
use crate::model::{
    Action, ConfigSecret, EncryptionStatusChange, EventType, JobState, ANNOTATION_ROLLOUT_STARTED,
};
use crate::observe::Observation;
use crate::plan::proof_of;

/// Field manager of every write.
pub(crate) const FIELD_MANAGER: &str = names::RECONCILER_NAME;

/// What the controller does after a successful run of the actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The planner asked to look again after this long.
    pub(crate) requeue_after: Option<Duration>,
    /// The phase after the actions ran (for the phase metric).
    pub(crate) phase: Option<EncryptionPhase>,
}

/// Runs `actions` for the observed Cluster.
pub(crate) async fn execute(
    ctx: &Context,
    observation: &Observation,
    actions: &[Action],
) -> Result<Outcome, Error> {
    let snapshot = &observation.snapshot;
    let cluster = &snapshot.cluster;
    let name = cluster.name_any();
    let namespace = snapshot.namespace.as_str();
    let before = cluster
        .status
        .as_ref()
        .and_then(|s| s.encryption.as_ref())
        .and_then(|e| e.phase);

    // Drift is reported even when the plan then blocks.
    let drift: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ReportDrift { key_name } => Some(key_name.clone()),
            _ => None,
        })
        .collect();
    ctx.metrics.set_key_drift(&name, &drift);
    // Removed keys still in the config, with the last scan's counts (only while Active).
    let retained: Vec<RetainedKey> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ReportRetained {
                key_name,
                objects,
                older_revisions,
            } => Some(RetainedKey {
                key: key_name.clone(),
                objects: *objects,
                older_revisions: *older_revisions,
            }),
            _ => None,
        })
        .collect();
    ctx.metrics.set_retained_keys(&name, &retained);
    // So is what the API servers proved; where no proof is possible the gauges go.
    match proof_of(snapshot, &ctx.settings).and_then(|p| p.counts()) {
        Some((proven, expected)) => ctx.metrics.set_proof(&name, proven, expected),
        None => ctx.metrics.forget_proof(&name),
    }

    let mut outcome = Outcome {
        requeue_after: None,
        phase: before,
    };
    let mut resource_version = cluster.resource_version();
    for action in actions {
        match action {
            Action::PatchStatus {
                encryption,
                conditions,
            } => {
                let Some(body) = status_patch(resource_version.as_deref(), encryption, conditions)
                else {
                    continue;
                };
                let clusters: Api<Cluster> = Api::all(ctx.client.clone());
                let updated = clusters
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map_err(|e| Error::kube(format!("patching status of Cluster {name}"), e))?;
                resource_version = updated.resource_version();
                let after = match encryption {
                    EncryptionStatusChange::Keep => outcome.phase,
                    EncryptionStatusChange::Set(s) => s.phase,
                    EncryptionStatusChange::Clear => None,
                };
                info!(cluster = %name, from = ?outcome.phase, to = ?after, conditions = ?conditions.keys().collect::<Vec<_>>(), "status written");
                if outcome.phase == Some(EncryptionPhase::EncryptionNeeded)
                    && after != outcome.phase
                {
                    record_job(ctx, observation);
                }
                outcome.phase = after;
            }
            Action::WriteConfigSecret {
                yaml,
                hash,
                annotations,
            } => {
                write_config_secret(
                    ctx,
                    snapshot.config_secret.as_ref(),
                    namespace,
                    yaml,
                    hash,
                    annotations,
                )
                .await?;
            }
            Action::RollApiServer { hash, started } => {
                let body = json!({
                    "metadata": {"annotations": {ANNOTATION_ROLLOUT_STARTED: started.to_string()}},
                    "spec": {"template": {"metadata": {"annotations": {names::ANNOTATION_CONFIG_HASH: hash}}}}
                });
                patch_apiserver(ctx, namespace, &body).await?;
                info!(cluster = %name, namespace, deployment = %ctx.settings.apiserver_deployment, config_hash = %hash, "rolling the API server to the new config");
            }
            Action::MarkReloadStarted { started } => {
                let body = json!({
                    "metadata": {"annotations": {ANNOTATION_ROLLOUT_STARTED: started.to_string()}}
                });
                patch_apiserver(ctx, namespace, &body).await?;
                info!(cluster = %name, namespace, deployment = %ctx.settings.apiserver_deployment, "waiting for the API server replicas to reload the new config");
            }
            Action::CreateJob { job } => create_job(ctx, namespace, job).await?,
            Action::DeleteJob { name } => delete_job(ctx, namespace, name).await?,
            Action::Event {
                type_,
                reason,
                note,
            } => publish_event(ctx, cluster, *type_, reason, note).await,
            Action::ReportDrift { key_name } => {
                warn!(cluster = %name, key = %key_name, "referenced key Secret differs from the key material already rendered under this name; keeping the rendered material");
            }
            Action::ReportRetained { .. } => {}
            Action::RequeueAfter(after) => outcome.requeue_after = Some(*after),
            Action::Backoff { reason } => {
                warn!(cluster = %name, reason = %reason, "blocked; retrying with backoff");
                return Err(Error::Blocked {
                    reason: reason.clone(),
                });
            }
        }
    }
    Ok(outcome)
}

/// The merge patch for the status subresource; `None` when it would change nothing.
///
/// Each listed condition is written whole (absent fields as `null`) so it replaces the old
/// entry instead of merging into it; other conditions and other status fields are untouched.
pub(crate) fn status_patch(
    resource_version: Option<&str>,
    encryption: &EncryptionStatusChange,
    conditions: &BTreeMap<String, ClusterCondition>,
) -> Option<Value> {
    let mut status = Map::new();
    match encryption {
        EncryptionStatusChange::Keep => {}
        EncryptionStatusChange::Clear => {
            status.insert("encryption".into(), Value::Null);
        }
        EncryptionStatusChange::Set(e) => {
            status.insert(
                "encryption".into(),
                json!({
                    "phase": e.phase.map(|p| p.as_str()),
                    "activeKey": e.active_key,
                    "encryptedResources": e.encrypted_resources,
                }),
            );
        }
    }
    if !conditions.is_empty() {
        let mut map = Map::new();
        for (type_, c) in conditions {
            map.insert(
                type_.clone(),
                json!({
                    "status": c.status,
                    "kubermaticVersion": c.kubermatic_version,
                    "lastHeartbeatTime": c.last_heartbeat_time,
                    "lastTransitionTime": c.last_transition_time,
                    "reason": c.reason,
                    "message": c.message,
                }),
            );
        }
        status.insert("conditions".into(), Value::Object(map));
    }
    if status.is_empty() {
        return None;
    }
    let mut patch = json!({ "status": status });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    Some(patch)
}

/// True when the observed Secret already holds exactly this content, hash and annotations.
fn config_secret_current(
    current: &ConfigSecret,
    yaml: &str,
    hash: &str,
    annotations: &BTreeMap<String, String>,
) -> bool {
    current.data.as_deref() == Some(yaml.as_bytes())
        && current
            .labels
            .get(names::LABEL_CONFIG_HASH)
            .map(String::as_str)
            == Some(hash)
        && current
            .labels
            .get(names::LABEL_MANAGED_BY)
            .map(String::as_str)
            == Some(names::MANAGED_BY)
        && annotations
            .iter()
            .all(|(k, v)| current.annotations.get(k) == Some(v))
}

async fn write_config_secret(
    ctx: &Context,
    existing: Option<&ConfigSecret>,
    namespace: &str,
    yaml: &str,
    hash: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let name = &ctx.settings.config_secret;
    if let Some(current) = existing {
        if config_secret_current(current, yaml, hash, annotations) {
            debug!(namespace, secret = %name, config_hash = %hash, "rendered config unchanged; not writing");
            return Ok(());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let labels: BTreeMap<String, String> = [
        (names::LABEL_CONFIG_HASH.to_owned(), hash.to_owned()),
        (
            names::LABEL_MANAGED_BY.to_owned(),
            names::MANAGED_BY.to_owned(),
        ),
    ]
    .into();
    let data: BTreeMap<String, ByteString> = [(
        ctx.settings.config_secret_key.clone(),
        ByteString(yaml.as_bytes().to_vec()),
    )]
    .into();
    if existing.is_none() {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_owned()),
                labels: Some(labels.clone()),
                annotations: Some(annotations.clone()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data.clone()),
            ..Secret::default()
        };
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match secrets.create(&pp, &secret).await {
            Ok(_) => {
                info!(namespace, secret = %name, config_hash = %hash, "rendered config created");
                return Ok(());
            }
            // Created meanwhile (by an earlier run whose answer was lost): patch it below.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(Error::kube_secret(
                    format!("creating Secret {namespace}/{name}"),
                    e,
                ))
            }
        }
    }
    let body = json!({
        "metadata": {"labels": labels, "annotations": annotations},
        "data": data,
    });
    secrets
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map_err(|e| Error::kube_secret(format!("patching Secret {namespace}/{name}"), e))?;
    info!(namespace, secret = %name, config_hash = %hash, "rendered config updated");
    Ok(())
}

/// Creates the Job; one that already exists (409) is the same Job, by its name.
/// Merge-patches the API server Deployment of `namespace`.
async fn patch_apiserver(ctx: &Context, namespace: &str, body: &Value) -> Result<(), Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let deployment = &ctx.settings.apiserver_deployment;
    deployments
        .patch(deployment, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map_err(|e| Error::kube(format!("patching Deployment {namespace}/{deployment}"), e))?;
    Ok(())
}

async fn delete_job(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            info!(namespace, job = %name, "Job deleted");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("deleting Job {namespace}/{name}"), e)),
    }
}

async fn create_job(ctx: &Context, namespace: &str, job: &Job) -> Result<(), Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let job_name = job.name_any();
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match jobs.create(&pp, job).await {
        Ok(_) => {
            info!(namespace, job = %job_name, "Job created");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            info!(namespace, job = %job_name, "Job already exists");
            Ok(())
        }
        Err(e) => Err(Error::kube(
            format!("creating Job {namespace}/{job_name}"),
            e,
        )),
    }
}

/// Publishes an Event on the Cluster. A failed Event is logged, not fatal: the status and
/// the log carry the same information.
async fn publish_event(
    ctx: &Context,
    cluster: &Cluster,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: match type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: event_action(note),
        secondary: None,
    };
    let reference = cluster.object_ref(&());
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        warn!(cluster = %cluster.name_any(), reason, error = %err, "cannot publish Event");
    }
    match type_ {
        EventType::Normal => info!(cluster = %cluster.name_any(), reason, note, "event"),
        EventType::Warning => warn!(cluster = %cluster.name_any(), reason, note, "event"),
    }
}

/// The Event's `action`. kube's Recorder folds Events with the same type, reason and action
/// into one series and keeps the *first* note; a digest of the note in the action keeps a
/// repeated identical Event folded but gives a changed note (a new hash, a new reason text)
/// an Event of its own.
pub(crate) fn event_action(note: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(note.as_bytes());
    format!("Reconcile-{}", hex::encode(&digest[..4]))
}

fn record_job(ctx: &Context, observation: &Observation) {
    let outcome = match &observation.snapshot.job {
        Some(JobState::Succeeded) => JobOutcome::Succeeded,
        Some(JobState::Failed { .. }) => JobOutcome::Failed,
        _ => return,
    };
    ctx.metrics.job_finished(outcome, observation.job_run_time);
}

#[cfg(test)]
mod tests {
    use super::*;
    use eargate_policy::model::ClusterEncryptionStatus;

    #[test]
    fn status_patch_names_only_encryption_and_listed_conditions() {
        let cond = ClusterCondition {
            status: "True".into(),
            reason: Some("Initialized".into()),
            ..ClusterCondition::default()
        };
        let patch = status_patch(
            Some("42"),
            &EncryptionStatusChange::Set(ClusterEncryptionStatus {
                phase: Some(EncryptionPhase::Pending),
                active_key: String::new(),
                encrypted_resources: vec![],
            }),
            &[("EncryptionInitialized".to_owned(), cond)].into(),
        )
        .unwrap();
        assert_eq!(
            patch,
            json!({
                "metadata": {"resourceVersion": "42"},
                "status": {
                    "encryption": {"phase": "Pending", "activeKey": "", "encryptedResources": []},
                    "conditions": {"EncryptionInitialized": {
                        "status": "True", "kubermaticVersion": null, "lastHeartbeatTime": null,
                        "lastTransitionTime": null, "reason": "Initialized", "message": null}}
                }
            })
        );
        assert_eq!(
            status_patch(None, &EncryptionStatusChange::Clear, &BTreeMap::new()).unwrap(),
            json!({"status": {"encryption": null}})
        );
        assert!(status_patch(Some("1"), &EncryptionStatusChange::Keep, &BTreeMap::new()).is_none());
    }
}
