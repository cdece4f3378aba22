//! The kube-runtime `Controller`: watches Clusters cluster-wide, and the Secrets, API server
//! Deployments and Jobs of their control planes (mapped back to their Cluster by namespace).
//! `reconcile` is thin: observe fresh, plan, execute.
//!
//! Secrets are watched by their metadata only (`PartialObjectMeta`, served by the API as
//! `PartialObjectMetadata`): a seed holds thousands of Secrets, many of them key-bearing, and
//! a change of any of them only has to wake the reconcile of its namespace's Cluster, which
//! then GETs the few it needs (see [`crate::observe`]). No Secret data is held in memory.

use std::sync::Arc;
use std::time::Instant;

use eargate_policy::model::Cluster;
use eargate_policy::names;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action as ControllerAction;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};
use tracing::{debug, info, warn};

use crate::context::{Context, Error, RESYNC};
use crate::execute::execute;
use crate::model::control_plane_namespace;
use crate::observe::observe;
use crate::plan::plan;

/// One reconcile of one Cluster.
pub async fn reconcile(
    cluster: Arc<Cluster>,
    ctx: Arc<Context>,
) -> Result<ControllerAction, Error> {
    let name = cluster.name_any();
    let started = Instant::now();
    let result = reconcile_inner(&name, &ctx).await;
    ctx.metrics.reconciled(started.elapsed());
    match &result {
        Ok(_) => ctx.reset_backoff(&name),
        Err(err) => ctx.metrics.reconcile_failed(err.metric_label()),
    }
    result
}

async fn reconcile_inner(name: &str, ctx: &Context) -> Result<ControllerAction, Error> {
    let Some(observation) = observe(&ctx.client, &ctx.settings, name).await? else {
        debug!(cluster = %name, "Cluster is gone");
        ctx.metrics.forget_cluster(name);
        return Ok(ControllerAction::await_change());
    };
    let actions = plan(&observation.snapshot, &ctx.settings);
    debug!(cluster = %name, actions = actions.len(), "planned");
    let outcome = execute(ctx, &observation, &actions).await?;
    ctx.metrics.set_phase(name, outcome.phase);
    Ok(ControllerAction::requeue(
        outcome.requeue_after.unwrap_or(RESYNC),
    ))
}

/// Retries with per-cluster exponential backoff; the error is logged with names only.
pub fn error_policy(cluster: Arc<Cluster>, err: &Error, ctx: Arc<Context>) -> ControllerAction {
    let name = cluster.name_any();
    let delay = ctx.next_backoff(&name);
    warn!(cluster = %name, error = %err, retry_in = ?delay, "reconcile failed");
    ControllerAction::requeue(delay)
}

/// The Cluster whose control plane lives in `namespace`: the one whose
/// `status.namespaceName` (or default `cluster-<name>`) is that namespace.
pub(crate) fn cluster_for_namespace(
    store: &Store<Cluster>,
    namespace: &str,
) -> Option<ObjectRef<Cluster>> {
    if let Some(found) = store
        .state()
        .iter()
        .find(|c| control_plane_namespace(c) == namespace)
    {
        return Some(ObjectRef::from_obj(found.as_ref()));
    }
    // Not in the cache yet: Kubermatic's naming still tells the Cluster.
    namespace
        .strip_prefix("cluster-")
        .filter(|n| !n.is_empty())
        .map(ObjectRef::new)
}

/// Runs the controller until its watch streams end (they do not, barring shutdown).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let clusters: Api<Cluster> = Api::all(client.clone());
    let controller = Controller::new(clusters, watcher::Config::default().any_semantic());
    let store = controller.store();
    let map = move |namespace: Option<String>| -> Option<ObjectRef<Cluster>> {
        cluster_for_namespace(&store, namespace.as_deref()?)
    };
    let (m1, m2, m3) = (map.clone(), map.clone(), map);
    let deployments = watcher::Config::default()
        .fields(&format!(
            "metadata.name={}",
            ctx.settings.apiserver_deployment
        ))
        .any_semantic();
    let jobs = watcher::Config::default()
        .labels(&format!(
            "{}={}",
            names::LABEL_MANAGED_BY,
            names::MANAGED_BY
        ))
        .any_semantic();
    info!("watching Clusters and their control planes");
    controller
        .watches(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            move |s: PartialObjectMeta<Secret>| m1(s.namespace()),
        )
        .watches(
            Api::<Deployment>::all(client.clone()),
            deployments,
            move |d: Deployment| m2(d.namespace()),
        )
        .watches(Api::<Job>::all(client), jobs, move |j: Job| {
            m3(j.namespace())
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(cluster = %obj.name, "reconciled"),
                Err(err) => debug!(error = %err, "controller event"),
            }
        })
        .await;
}
