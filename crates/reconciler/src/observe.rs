//! Builds the planner's [`ClusterSnapshot`] from the API, fresh (GETs, not the reflector cache).
//!
//! Reads, in this order: the Cluster; the rendered-config Secret; every Secret named by a
//! `secretRef`; the API server Deployment and its Pods; what each serving Pod's kube-apiserver
//! reports it has loaded (its own `/metrics`, reached at the pod IP with the user cluster's
//! admin credentials); the re-encryption Job of the current config; the latest storage scan of
//! the current config and the summary its Pod handed back. Nothing here decides anything.

use std::collections::BTreeMap;
use std::time::Duration;

use eargate_policy::model::Cluster;
use eargate_policy::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::context::Error;
use crate::job::{job_name_for, scan_job_selector, LABEL_POD_JOB_NAME, LABEL_SCAN_ATTEMPT};
use crate::loaded::parse_loaded_configs;
use crate::model::{
    content_hash, control_plane_namespace, ClusterSnapshot, ConfigSecret, JobState, KeySecret,
    Loaded, ReplicaReport, Rollout, ScanState, Settings, StorageScan, ANNOTATION_ROLLOUT_STARTED,
};
use eargate_policy::storage_scan::KeySummary;

/// What one observation found: the planner's whole input, plus what only the I/O layer
/// needs (the Job's run time, for its metric).
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    pub(crate) snapshot: ClusterSnapshot,
    /// How long the re-encryption Job of the current config ran, once it has finished.
    pub(crate) job_run_time: Option<std::time::Duration>,
}

/// Reads everything the planner needs about the Cluster `name`. `None` when it is gone.
pub(crate) async fn observe(
    client: &Client,
    settings: &Settings,
    name: &str,
) -> Result<Option<Observation>, Error> {
    let clusters: Api<Cluster> = Api::all(client.clone());
    let Some(cluster) = clusters
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading Cluster {name}"), e))?
    else {
        return Ok(None);
    };
    let namespace = control_plane_namespace(&cluster);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    let config_secret = secrets
        .get_opt(&settings.config_secret)
        .await
        .map_err(|e| {
            Error::kube_secret(
                format!("reading Secret {namespace}/{}", settings.config_secret),
                e,
            )
        })?
        .map(|s| config_secret_from(s, &settings.config_secret_key));

    let mut key_secrets = BTreeMap::new();
    for secret_name in referenced_secrets(&cluster) {
        let found = secrets.get_opt(&secret_name).await.map_err(|e| {
            Error::kube_secret(format!("reading key Secret {namespace}/{secret_name}"), e)
        })?;
        key_secrets.insert(secret_name, key_secret_from(found));
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let mut replicas = Vec::new();
    let rollout = match deployments
        .get_opt(&settings.apiserver_deployment)
        .await
        .map_err(|e| {
            Error::kube(
                format!(
                    "reading Deployment {namespace}/{}",
                    settings.apiserver_deployment
                ),
                e,
            )
        })? {
        None => None,
        Some(deployment) => {
            let pods = list_pods(client, &namespace, &deployment).await?;
            if settings.prove_loaded {
                replicas = scrape_replicas(client, settings, &namespace, &pods).await;
            }
            Some(rollout_from(&deployment, &pods))
        }
    };

    let job = match config_secret.as_ref().and_then(job_name_for) {
        None => None,
        Some(job_name) => {
            let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
            jobs.get_opt(&job_name)
                .await
                .map_err(|e| Error::kube(format!("reading Job {namespace}/{job_name}"), e))?
        }
    };

    let now = Timestamp::now();
    let scan = match config_secret.as_ref().and_then(|s| s.data.as_deref()) {
        None => None,
        Some(data) => latest_scan(client, &namespace, &content_hash(data), now).await?,
    };

    let snapshot = ClusterSnapshot {
        cluster,
        namespace,
        config_secret,
        key_secrets,
        rollout,
        job: job.as_ref().map(job_state),
        replicas,
        scan,
        now,
    };
    Ok(Some(Observation {
        snapshot,
        job_run_time: job.as_ref().and_then(job_run_time),
    }))
}

/// The storage scan with the highest number for config `hash`, with the summary its Pod
/// handed back once it finished.
async fn latest_scan(
    client: &Client,
    namespace: &str,
    hash: &str,
    now: Timestamp,
) -> Result<Option<StorageScan>, Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let selector = scan_job_selector(hash);
    let list = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(format!("listing Jobs in {namespace} ({selector})"), e))?;
    let Some((attempt, job)) = list
        .items
        .into_iter()
        .filter_map(|j| Some((j.labels().get(LABEL_SCAN_ATTEMPT)?.parse::<u32>().ok()?, j)))
        .max_by_key(|(attempt, _)| *attempt)
    else {
        return Ok(None);
    };
    let name = job.name_any();
    let ended = job_end(&job).unwrap_or(now);
    let state = match job_state(&job) {
        JobState::Running => ScanState::Running,
        JobState::Failed { reason } => {
            let pods = job_pods(client, namespace, &name).await?;
            let why = pods
                .iter()
                .filter_map(termination_message)
                .find_map(|m| failure_of(&m));
            ScanState::Failed {
                reason: match why {
                    Some(line) => format!("{reason}: {}", first_chars(&line, 300)),
                    None => reason,
                },
                at: ended,
            }
        }
        JobState::Succeeded => {
            let pods = job_pods(client, namespace, &name).await?;
            let message = pods
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
                .find_map(termination_message);
            match message.as_deref().map(KeySummary::parse) {
                Some(Ok(summary)) => ScanState::Finished { summary, at: ended },
                Some(Err(why)) => ScanState::Failed {
                    reason: why,
                    at: ended,
                },
                None => ScanState::Failed {
                    reason: format!(
                        "no Pod of Job {name} holds a termination message (garbage-collected?)"
                    ),
                    at: ended,
                },
            }
        }
    };
    Ok(Some(StorageScan {
        job: name,
        attempt,
        config_hash: hash.to_owned(),
        written: job
            .annotations()
            .get(ANNOTATION_ROLLOUT_STARTED)
            .and_then(|v| v.parse().ok()),
        state,
    }))
}

/// The Pods the job controller created for Job `name`.
async fn job_pods(client: &Client, namespace: &str, name: &str) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{LABEL_POD_JOB_NAME}={name}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .map_err(|e| Error::kube(format!("listing Pods in {namespace} ({selector})"), e))
}

/// The first container's termination message, if it has terminated with one.
pub(crate) fn termination_message(pod: &Pod) -> Option<String> {
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
        .filter(|m| !m.trim().is_empty())
}

/// When a Job ended: its completion time, else the time of its final condition.
fn job_end(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    if let Some(t) = &status.completion_time {
        return Some(t.0);
    }
    status
        .conditions
        .iter()
        .flatten()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .find_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// What a failed scan's message says went wrong: the error of `eargate verify -o json`
/// (`{"error":{"message":…,"causes":[…]}}`, kubelet's fallback to the log's tail), else the
/// first line that says anything.
pub(crate) fn failure_of(message: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(message.trim()) {
        let error = &v["error"];
        if let Some(text) = error["message"].as_str() {
            let causes = error["causes"].as_array().into_iter().flatten();
            let parts: Vec<&str> = std::iter::once(text)
                .chain(causes.filter_map(|c| c.as_str()))
                .collect();
            return Some(parts.join(": "));
        }
    }
    message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

fn first_chars(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Names of the Secrets the spec's `secretRef` keys point to, each once, in spec order.
pub(crate) fn referenced_secrets(cluster: &Cluster) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let keys = cluster
        .spec
        .encryption_configuration
        .as_ref()
        .and_then(|e| e.secretbox.as_ref())
        .map(|s| s.keys.as_slice())
        .unwrap_or_default();
    for key in keys {
        if let Some(r) = &key.secret_ref {
            if !r.name.is_empty() && !out.contains(&r.name) {
                out.push(r.name.clone());
            }
        }
    }
    out
}

/// The rendered-config Secret reduced to what the planner reads.
pub(crate) fn config_secret_from(secret: Secret, data_key: &str) -> ConfigSecret {
    let data = secret
        .data
        .and_then(|mut d| d.remove(data_key))
        .map(|bytes| bytes.0);
    ConfigSecret {
        data,
        labels: secret.metadata.labels.unwrap_or_default(),
        annotations: secret.metadata.annotations.unwrap_or_default(),
    }
}

/// A referenced key Secret: its data as raw bytes, or `Missing`. `stringData` is write-only
/// in the API, so only `data` is read.
pub(crate) fn key_secret_from(secret: Option<Secret>) -> KeySecret {
    match secret {
        None => KeySecret::Missing,
        Some(s) => KeySecret::Data(
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        ),
    }
}

/// Pods of the Deployment (by its selector's `matchLabels`), terminating ones included: a
/// terminating kube-apiserver still serves until it exits.
async fn list_pods(
    client: &Client,
    namespace: &str,
    deployment: &Deployment,
) -> Result<Vec<Pod>, Error> {
    let Some(labels) = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .filter(|l| !l.is_empty())
    else {
        // No usable selector: count no pods, the Deployment status alone then gates.
        return Ok(Vec::new());
    };
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(format!("listing Pods in {namespace} ({selector})"), e))?;
    Ok(list.items)
}

/// How long one replica may take to answer `/version` or `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every serving Pod's kube-apiserver reports it has loaded. Each is reached directly
/// at its pod IP and API port, authenticated as the admin kubeconfig's user, and its
/// certificate verified against that kubeconfig's CA and server name (the pod IP is not in
/// the certificate; the Service name the kubeconfig uses is).
async fn scrape_replicas(
    client: &Client,
    settings: &Settings,
    namespace: &str,
    pods: &[Pod],
) -> Vec<ReplicaReport> {
    let serving: Vec<&Pod> = pods.iter().filter(|p| serving(p)).collect();
    if serving.is_empty() {
        return Vec::new();
    }
    let base = match admin_config(client, settings, namespace).await {
        Ok(config) => config,
        Err(error) => {
            return serving
                .iter()
                .map(|p| ReplicaReport {
                    pod: p.name_any(),
                    loaded: Loaded::Unreachable {
                        error: error.clone(),
                    },
                })
                .collect()
        }
    };
    let scrapes = serving.iter().map(|pod| {
        let base = base.clone();
        async move {
            let loaded = match replica_url(pod, &settings.apiserver_container) {
                Err(error) => Loaded::Unreachable { error },
                Ok(url) => scrape(base, &url).await,
            };
            ReplicaReport {
                pod: pod.name_any(),
                loaded,
            }
        }
    });
    futures::future::join_all(scrapes).await
}

/// A Pod that serves: running, with an IP, and `Ready` (a terminating one that is still
/// ready still serves).
fn serving(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        && ready
}

/// `https://<pod IP>:<port>` of the API container: its port named
/// [`names::APISERVER_PORT_NAME`], else its first port.
pub(crate) fn replica_url(pod: &Pod, container: &str) -> Result<String, String> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .ok_or("the Pod has no IP")?;
    let spec = pod.spec.as_ref().ok_or("the Pod has no spec")?;
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .or(spec.containers.first())
        .ok_or("the Pod has no container")?;
    let ports = c.ports.as_deref().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(names::APISERVER_PORT_NAME))
        .or(ports.first())
        .ok_or_else(|| format!("container {:?} declares no port", c.name))?;
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    Ok(format!("https://{host}:{}", port.container_port))
}

/// The client configuration of the user cluster's admin kubeconfig (from its Secret in the
/// control-plane namespace), with the kubeconfig's server host kept as the TLS server name.
async fn admin_config(
    client: &Client,
    settings: &Settings,
    namespace: &str,
) -> Result<kube::Config, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = &settings.admin_kubeconfig_secret;
    let key = &settings.admin_kubeconfig_key;
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {namespace}/{name}: {}", short_error(&e)))?
        .ok_or_else(|| format!("admin kubeconfig Secret {namespace}/{name} not found"))?;
    let bytes = secret
        .data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))?;
    let text = String::from_utf8(bytes.0)
        .map_err(|_| format!("Secret {namespace}/{name} key {key:?} is not text"))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|_| format!("Secret {namespace}/{name} key {key:?} is not a kubeconfig"))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|_| format!("the kubeconfig in Secret {namespace}/{name} is unusable"))?;
    if config.tls_server_name.is_none() {
        config.tls_server_name = config.cluster_url.host().map(str::to_owned);
    }
    config.connect_timeout = Some(SCRAPE_TIMEOUT);
    config.read_timeout = Some(SCRAPE_TIMEOUT);
    config.write_timeout = Some(SCRAPE_TIMEOUT);
    Ok(config)
}

/// One replica's version and loaded-config hash.
async fn scrape(mut config: kube::Config, url: &str) -> Loaded {
    let unreachable = |error: String| Loaded::Unreachable { error };
    config.cluster_url = match url.parse() {
        Ok(u) => u,
        Err(_) => return unreachable(format!("{url} is not a URL")),
    };
    let client = match Client::try_from(config) {
        Ok(c) => c,
        Err(e) => return unreachable(short_error(&e)),
    };
    let get = |path: &str| {
        http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| e.to_string())
    };
    let version = match get("/version") {
        Ok(req) => client.request_text(req).await.map_err(|e| short_error(&e)),
        Err(e) => Err(e),
    };
    let minor = match version.map(|text| minor_version(&text)) {
        Ok(Some(minor)) => minor,
        Ok(None) => return unreachable(format!("{url}/version did not name a minor version")),
        Err(e) => return unreachable(e),
    };
    let metrics = match get("/metrics") {
        Ok(req) => client.request_text(req).await.map_err(|e| short_error(&e)),
        Err(e) => Err(e),
    };
    match metrics {
        Ok(text) => Loaded::Reported {
            minor,
            hash: parse_loaded_configs(&text).pop().map(|c| c.hash),
        },
        Err(e) => unreachable(e),
    }
}

/// The minor version from a `/version` answer (`"minor": "37"` or `"37+"`).
pub(crate) fn minor_version(text: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let minor = v.get("minor")?.as_str()?;
    minor.trim_end_matches('+').parse().ok()
}

/// A client error in one line: its innermost cause (connection refused, certificate not
/// valid for name, 403, ...). Client errors carry no key material.
fn short_error(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.chars().take(200).collect()
}

/// The rollout state of the API server Deployment.
///
/// `total` is `status.replicas`, raised to `updated + old pods` when Pods whose
/// [`names::ANNOTATION_CONFIG_HASH`] differs from the template's are still there — including
/// terminating ones, which `status.replicas` no longer counts but which still serve.
pub(crate) fn rollout_from(deployment: &Deployment, pods: &[Pod]) -> Rollout {
    let template_hash = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(names::ANNOTATION_CONFIG_HASH))
        .cloned();
    let started = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ROLLOUT_STARTED))
        .and_then(|t| t.parse::<Timestamp>().ok());
    let status = deployment.status.clone().unwrap_or_default();
    let old_pods = pods
        .iter()
        .filter(|p| {
            let pod_hash = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(names::ANNOTATION_CONFIG_HASH));
            pod_hash != template_hash.as_ref()
        })
        .count();
    let old_pods = i32::try_from(old_pods).unwrap_or(i32::MAX);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let total = if old_pods > 0 {
        replicas.max(updated.saturating_add(old_pods))
    } else {
        replicas
    };
    Rollout {
        template_hash,
        started,
        generation: deployment.metadata.generation.unwrap_or(0),
        observed_generation: status.observed_generation.unwrap_or(0),
        desired: deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1),
        updated,
        available: status.available_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        total,
    }
}

/// A Job's state from its final conditions (`Complete` / `Failed`).
pub(crate) fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for c in conditions {
        if c.status == "True" && c.type_ == "Complete" {
            return JobState::Succeeded;
        }
        if c.status == "True" && c.type_ == "Failed" {
            return JobState::Failed {
                reason: c.reason.clone().unwrap_or_else(|| "JobFailed".to_owned()),
            };
        }
    }
    JobState::Running
}

/// How long a finished Job ran (start to completion, or to its `Failed` condition).
pub(crate) fn job_run_time(job: &Job) -> Option<std::time::Duration> {
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    let span = job_end(job)?.duration_since(start);
    std::time::Duration::try_from(span).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(hash: &str, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "apiserver", "generation": 3,
                "annotations": {ANNOTATION_ROLLOUT_STARTED: "2025-01-01T00:00:00Z"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "apiserver"}},
                "template": {"metadata": {"annotations": {names::ANNOTATION_CONFIG_HASH: hash}}}},
            "status": status
        }))
        .unwrap()
    }

    fn pod(hash: Option<&str>) -> Pod {
        let mut p = Pod::default();
        if let Some(h) = hash {
            p.metadata.annotations =
                Some([(names::ANNOTATION_CONFIG_HASH.to_owned(), h.to_owned())].into());
        }
        p
    }

    #[test]
    fn rollout_counts_terminating_old_pods() {
        let d = deployment(
            "h2",
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                   "availableReplicas": 2, "readyReplicas": 2}),
        );
        let done = rollout_from(&d, &[pod(Some("h2")), pod(Some("h2"))]);
        assert!(done.complete_for("h2"), "{done:?}");
        assert_eq!(done.started, Some("2025-01-01T00:00:00Z".parse().unwrap()));
        // An old pod still terminating is not in status.replicas but still serves.
        let old = rollout_from(&d, &[pod(Some("h2")), pod(Some("h2")), pod(Some("h1"))]);
        assert_eq!(old.total, 3);
        assert!(!old.complete_for("h2"));
        let unannotated = rollout_from(&d, &[pod(Some("h2")), pod(None)]);
        assert!(!unannotated.complete_for("h2"));
    }

    #[test]
    fn a_failed_scan_says_what_went_wrong() {
        let json = r#"{"error":{"message":"cannot reach etcd at https://etcd-0.etcd.cluster-c1.svc.cluster.local:2379 (--etcd-endpoints)","causes":["transport error"]},"exitCode":2}"#;
        assert_eq!(
            failure_of(json).as_deref(),
            Some("cannot reach etcd at https://etcd-0.etcd.cluster-c1.svc.cluster.local:2379 (--etcd-endpoints): transport error")
        );
        assert_eq!(
            failure_of("\n  error: cannot read /etc/etcd/ca/ca.crt (--cacert)\ncaused by: x\n")
                .as_deref(),
            Some("error: cannot read /etc/etcd/ca/ca.crt (--cacert)")
        );
        assert_eq!(failure_of("  \n"), None);
    }

    #[test]
    fn job_state_and_run_time_from_conditions() {
        let job: Job = serde_json::from_value(json!({
            "status": {"startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:01:30Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(job_state(&job), JobState::Succeeded);
        assert_eq!(job_run_time(&job), Some(std::time::Duration::from_secs(90)));
        let failed: Job = serde_json::from_value(json!({
            "status": {"startTime": "2025-01-01T00:00:00Z",
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                "lastTransitionTime": "2025-01-01T00:00:10Z"}]}
        }))
        .unwrap();
        assert_eq!(
            job_state(&failed),
            JobState::Failed {
                reason: "BackoffLimitExceeded".into()
            }
        );
        assert_eq!(
            job_run_time(&failed),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(job_state(&Job::default()), JobState::Running);
    }
}
