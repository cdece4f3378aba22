//! The scale run (`make scale`; not a test): one seed holding 300 Clusters and 10,000
//! unrelated Secrets, reconciled by one `eargate reconcile` process with the chart's RBAC.
//!
//! What it measures: the time from applying 300 enabled Clusters to all 300 in phase
//! `Pending` (the reconciler's first pass: config Secret written, rollout started), and to
//! all 300 `Active`; the reconciler's peak RSS before and after, against the bytes of Secret
//! data in the seed (16 KiB × 10,000 = 160 MiB): a reconciler that cached Secret data would
//! hold it all, eargate watches Secrets by metadata only.
//!
//! Simulated here, and only here: there are no user clusters. A controller stand-in does
//! what the deployment and job controllers and kubelet would report: it marks each
//! `apiserver` Deployment rolled out (status `observedGeneration`, `updatedReplicas`,
//! `readyReplicas`, `availableReplicas`) and each eargate Job complete, without running
//! anything. The rollout itself is proven on real API servers by `tests/k8s_rollout.rs`.
//!
//! Knobs: `EARGATE_SCALE_CLUSTERS` (300), `EARGATE_SCALE_SECRETS` (10000),
//! `EARGATE_SCALE_SECRET_BYTES` (16384). Report: stdout and `target/bench/scale.md`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use eargate_policy::names;
use eargate_testkit::rollout::{apiserver_deployment, random_key, Seed};
use eargate_testkit::secrets::B64;
use eargate_testkit::{ControlPlane, Identity};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const NAMESPACE: &str = "eargate-system";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) runs this binary
    // without it, and a benchmark of many minutes has no place there.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "{}: a benchmark; run it with cargo bench (see the Makefile)",
            file!()
        );
        return;
    }
    let clusters = env_usize("EARGATE_SCALE_CLUSTERS", 300);
    let secrets = env_usize("EARGATE_SCALE_SECRETS", 10_000);
    let secret_bytes = env_usize("EARGATE_SCALE_SECRET_BYTES", 16 * 1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let report = runtime.block_on(scale(clusters, secrets, secret_bytes));
    println!("\n{report}");
    let out = eargate_testkit::tools::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("scale.md"), &report).expect("write the report");
}

async fn scale(clusters: usize, secrets: usize, secret_bytes: usize) -> String {
    let cp = ControlPlane::shared().expect("the seed control plane (make test-deps)");
    let seed = tokio::task::block_in_place(|| Seed::install(cp, EARGATE.as_ref(), NAMESPACE, true))
        .expect("the chart installs");
    let admin = cp.client(&Identity::admin()).await;

    // 10,000 unrelated Secrets in 10 namespaces, labelled like an application's.
    let t = Instant::now();
    create_unrelated_secrets(&admin, secrets, secret_bytes).await;
    let data_mib = (secrets * secret_bytes) as f64 / 1048576.0;
    eprintln!(
        "scale: {secrets} unrelated Secrets ({data_mib:.0} MiB of data) created in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The control planes: namespace, apiserver Deployment, admin kubeconfig, key Secret.
    let t = Instant::now();
    let objects: Vec<Value> = (0..clusters).flat_map(control_plane_objects).collect();
    for chunk in objects.chunks(400) {
        tokio::task::block_in_place(|| cp.apply(chunk));
    }
    eprintln!(
        "scale: {clusters} control-plane namespaces created in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The stand-in runs no API servers, so there is nothing to scrape: readiness gates.
    let mut reconciler =
        seed.start_reconciler("scale", &["--prove-loaded-config=false".to_owned()]);
    let stop = Arc::new(AtomicBool::new(false));
    let stand_in = tokio::spawn(controllers_stand_in(admin.clone(), stop.clone()));
    // Idle with everything listed: the Secrets are watched (metadata only).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_rss = reconciler.peak_rss_kib().expect("the reconciler's RSS");
    eprintln!("scale: reconciler idle, peak RSS {} KiB", idle_rss);

    let t0 = Instant::now();
    let cluster_objects: Vec<Value> = (0..clusters).map(cluster_object).collect();
    for chunk in cluster_objects.chunks(100) {
        tokio::task::block_in_place(|| cp.apply(chunk));
    }
    let applied = t0.elapsed();
    eprintln!(
        "scale: {clusters} Clusters applied in {:.1} s",
        applied.as_secs_f64()
    );
    let api: Api<eargate_policy::model::Cluster> = Api::all(admin.clone());
    let mut first_pass: Option<Duration> = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut last_print = Instant::now();
    let all_active = loop {
        let list = api
            .list(&ListParams::default().labels("eargate-scale=true"))
            .await
            .expect("list Clusters");
        let mut by_phase: BTreeMap<String, usize> = BTreeMap::new();
        for c in &list.items {
            let phase = c
                .status
                .as_ref()
                .and_then(|s| s.encryption.as_ref())
                .and_then(|e| e.phase)
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "(none)".to_owned());
            *by_phase.entry(phase).or_default() += 1;
        }
        let touched = clusters - by_phase.get("(none)").copied().unwrap_or(0);
        if first_pass.is_none() && touched == clusters {
            first_pass = Some(t0.elapsed());
            eprintln!(
                "scale: every Cluster has a phase after {:.1} s: {by_phase:?}",
                t0.elapsed().as_secs_f64()
            );
        }
        if by_phase.get("Active").copied().unwrap_or(0) == clusters {
            break t0.elapsed();
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!("scale: {:.0} s: {by_phase:?}", t0.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "not all Active within an hour: {by_phase:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let peak_rss = reconciler.peak_rss_kib().expect("the reconciler's RSS");
    stop.store(true, Ordering::SeqCst);
    let (deployments, jobs) = stand_in.await.expect("the stand-in");
    let log = reconciler.log();
    reconciler.stop();
    let errors = log.matches("\"level\":\"ERROR\"").count();
    let peak_mib = peak_rss as f64 / 1024.0;
    assert!(
        peak_mib < data_mib / 2.0,
        "the reconciler's peak RSS ({peak_mib:.0} MiB) is not far below the Secret data it must not cache ({data_mib:.0} MiB)"
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Scale: {clusters} Clusters and {secrets} unrelated Secrets in one seed ({})\n",
        k8s_openapi::jiff::Timestamp::now()
    );
    let _ = writeln!(s, "| measure | value |\n|---|---:|");
    let _ = writeln!(
        s,
        "| unrelated Secret data in the seed | {data_mib:.0} MiB ({secrets} × {} KiB) |",
        secret_bytes / 1024
    );
    let _ = writeln!(
        s,
        "| reconciler peak RSS, idle with the Secrets listed | {:.1} MiB |",
        idle_rss as f64 / 1024.0
    );
    let _ = writeln!(
        s,
        "| reconciler peak RSS, after all {clusters} reached Active | {peak_mib:.1} MiB |"
    );
    let _ = writeln!(
        s,
        "| {clusters} Clusters applied (server-side apply through the gate) | {:.1} s |",
        applied.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| apply → every Cluster has a phase (first pass) | {:.1} s |",
        first_pass.unwrap_or_default().as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| apply → all {clusters} `Active` | {:.1} s |",
        all_active.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| Deployment generations / Jobs the stand-in reported done | {deployments} ({clusters} created, then {:.1} rollouts per Cluster) / {jobs} |",
        deployments.saturating_sub(clusters as u64) as f64 / clusters as f64
    );
    let _ = writeln!(s, "| ERROR lines in the reconciler log | {errors} |\n");
    let _ = writeln!(
        s,
        "Simulated: no user clusters; the controllers' reports (Deployment rolled out, Job complete) come from a stand-in. The rollout itself is proven on real API servers by `tests/k8s_rollout.rs`."
    );
    eprintln!("{s}");
    s
}

async fn create_unrelated_secrets(client: &Client, n: usize, bytes: usize) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..10 {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("app-{i}")}}))
                .expect("a Namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create a namespace");
    }
    let payload = B64.encode(vec![b'x'; bytes]);
    let mut set = tokio::task::JoinSet::new();
    const WORKERS: usize = 16;
    for w in 0..WORKERS {
        let (client, payload) = (client.clone(), payload.clone());
        set.spawn(async move {
            for i in (w..n).step_by(WORKERS) {
                let ns = format!("app-{}", i % 10);
                let s: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("app-secret-{i:05}"), "namespace": ns,
                                 "labels": {"app": "unrelated"}},
                    "data": {"blob": payload}
                }))
                .expect("a Secret");
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &s)
                    .await
                    .expect("create a Secret");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("a worker");
    }
}

fn cluster_name(i: usize) -> String {
    format!("scale-{i:03}")
}

fn control_plane_objects(i: usize) -> Vec<Value> {
    let ns = names::default_control_plane_namespace(&cluster_name(i));
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        apiserver_deployment(&ns, 2),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": names::DEFAULT_ADMIN_KUBECONFIG_SECRET, "namespace": ns},
               "data": {names::DEFAULT_ADMIN_KUBECONFIG_KEY: B64.encode("apiVersion: v1\nkind: Config\nclusters: []\n")}}),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "k1", "namespace": ns},
               "data": {"key": B64.encode(B64.encode(random_key()))}}),
    ]
}

fn cluster_object(i: usize) -> Value {
    let name = cluster_name(i);
    json!({
        "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "labels": {"eargate-scale": "true"}},
        "spec": {"humanReadableName": name, "version": "1.33.2",
                 "features": {"encryptionAtRest": true},
                 "encryptionConfiguration": {"enabled": true, "resources": ["secrets"],
                    "secretbox": {"keys": [{"name": "k1", "secretRef": {"name": "k1", "key": "key"}}]}}}
    })
}

/// Stands in for the deployment and job controllers and kubelet: reports every `apiserver`
/// Deployment rolled out and every eargate Job complete. Returns how many of each it did.
async fn controllers_stand_in(client: Client, stop: Arc<AtomicBool>) -> (u64, u64) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let (rolled, completed) = (AtomicU64::new(0), AtomicU64::new(0));
    while !stop.load(Ordering::SeqCst) {
        let lp = ListParams::default().fields(&format!(
            "metadata.name={}",
            names::DEFAULT_APISERVER_DEPLOYMENT
        ));
        if let Ok(list) = deployments.list(&lp).await {
            for d in list.items {
                let generation = d.metadata.generation.unwrap_or(0);
                let observed = d
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0);
                if observed >= generation {
                    continue;
                }
                let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let api: Api<Deployment> =
                    Api::namespaced(client.clone(), &d.namespace().unwrap_or_default());
                let status = json!({"status": {
                    "observedGeneration": generation, "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas}});
                if api
                    .patch_status(
                        &d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&status),
                    )
                    .await
                    .is_ok()
                {
                    rolled.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=eargate");
        if let Ok(list) = jobs.list(&lp).await {
            for j in list.items {
                let done = j
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| !c.is_empty());
                if done {
                    continue;
                }
                let api: Api<Job> =
                    Api::namespaced(client.clone(), &j.namespace().unwrap_or_default());
                let now = k8s_openapi::jiff::Timestamp::now()
                    .round(k8s_openapi::jiff::Unit::Second)
                    .expect("round")
                    .to_string();
                let started = json!({"status": {"startTime": now, "active": 1, "ready": 0}});
                let complete = json!({"status": {
                    "active": 0, "ready": 0, "succeeded": 1, "completionTime": now,
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods",
                         "lastProbeTime": now, "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods",
                         "lastProbeTime": now, "lastTransitionTime": now}]}});
                let name = j.name_any();
                let pp = PatchParams::default();
                if j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .is_none()
                    && api
                        .patch_status(&name, &pp, &Patch::Merge(&started))
                        .await
                        .is_err()
                {
                    continue;
                }
                if api
                    .patch_status(&name, &pp, &Patch::Merge(&complete))
                    .await
                    .is_ok()
                {
                    completed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (rolled.into_inner(), completed.into_inner())
}
