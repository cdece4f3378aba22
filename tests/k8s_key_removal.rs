//! A removed key leaves the rendered config only when etcd shows nothing sealed with it, on
//! real API servers and a real etcd.
//!
//! The world is the rollout tests' ([`eargate_testkit::rollout`]): a seed with the chart's CRD
//! and RBAC, a control-plane namespace whose `apiserver` Deployment has two replicas that are
//! real kube-apiserver processes on one user etcd (TLS with client certificates, as Kubermatic
//! runs it, and `--etcd-compaction-interval=0`, so history is compacted only when a test says
//! so), Kubermatic's etcd client certificate and CA Secrets, the node agent in kubelet's place
//! (it runs the storage-scan Job's `eargate verify` and writes its Pod's termination message),
//! and `eargate reconcile` as its own process with only the chart's RBAC.
//!
//! - **Key removal**: after a clean rotation and a compaction, removing `k1` starts a scan that
//!   finds nothing, and `k1` leaves the config. In a fresh rotation (`k2` to `k3`), one object
//!   sealed with `k2` is written straight into etcd: removing `k2` keeps it, the condition
//!   counts 1 object; rewriting that object through the API leaves 1 older revision, which
//!   keeps it too; after compaction the key goes.
//! - **Stale revisions**: right after a rotation, with compaction held off, the older
//!   revisions the re-encryption left behind keep the old key through several scans; after
//!   compaction it goes.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

#[path = "../crates/storage/tests/support/mod.rs"]
mod support;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use eargate_reconciler::CONDITION_KEYS_RETAINED;
use eargate_testkit::journey::{condition, key_names, phase, Journey};
use eargate_testkit::node_agent::job_termination_message;
use eargate_testkit::rollout::{create_data, runtime, DataSet, HostedCluster, Seed};
use eargate_testkit::ControlPlane;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use support::EtcdExt as _;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const NAMESPACE: &str = "eargate-system";
const DATA: DataSet = DataSet {
    namespaces: 2,
    secrets: 40,
    configmaps: 0,
};
/// Where the injected object lives in the user cluster.
const INJECTED: (&str, &str) = ("data-0", "sealed-behind-the-api");

/// The tests of this binary share the seed's single reconciler Lease: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

static SEED: OnceLock<Option<Seed>> = OnceLock::new();

fn seed() -> Option<&'static Seed> {
    SEED.get_or_init(|| Seed::install(ControlPlane::shared()?, EARGATE.as_ref(), NAMESPACE, false))
        .as_ref()
}

/// A hosted cluster with data, its reconciler rescanning every few seconds.
async fn journey(name: &str) -> Option<Journey> {
    let seed = seed()?;
    let hosted = HostedCluster::start(seed, name, 2).await;
    create_data(&hosted.user.client().await, DATA, &[]).await;
    let args = [
        "--rollout-timeout=10m".to_owned(),
        // Rescans close together: the test waits on compaction, not on the backoff.
        "--scan-backoff=3s".to_owned(),
        "--scan-backoff-max=6s".to_owned(),
    ];
    Some(Journey::start(seed, hosted, &args).await)
}

fn retained(c: &Value) -> &Value {
    condition(c, CONDITION_KEYS_RETAINED)
}

fn active_key(c: &Value) -> Option<&str> {
    c["status"]["encryption"]["activeKey"].as_str()
}

/// Applies `keys` and waits until the Cluster is `Active` with `keys[0]` active and the
/// rendered config holds exactly `expect_rendered`.
async fn step(w: &Journey, keys: &[&str], expect_rendered: &[&str]) {
    w.apply_cluster(keys);
    let active = format!("secretbox/{}", keys[0]);
    w.wait_cluster(&format!("Active on {active}"), |c| {
        phase(c) == Some("Active") && active_key(c) == Some(active.as_str())
    })
    .await;
    let deadline = std::time::Instant::now() + w.step_timeout;
    loop {
        let rendered = key_names(&w.rendered().await);
        let c = w.cluster().await;
        if rendered == expect_rendered && phase(&c) == Some("Active") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: the config holds {rendered:?}, not {expect_rendered:?}; status {}\nreconciler log: {}",
            w.name(),
            c["status"],
            w.reconciler.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The storage-scan Jobs of the control-plane namespace, oldest first.
async fn scan_jobs(w: &Journey) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(w.client.clone(), &w.hosted.namespace);
    let mut scans = jobs
        .list(&ListParams::default().labels("eargate.k8c.io/purpose=storage-scan"))
        .await
        .unwrap()
        .items;
    scans.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    scans
}

/// The termination message of the newest storage scan that has finished (what the
/// reconciler read last), waiting while the newest one still runs.
async fn last_scan_message(w: &Journey) -> Value {
    let deadline = std::time::Instant::now() + w.step_timeout;
    loop {
        for job in scan_jobs(w).await.iter().rev() {
            let name = job.metadata.name.clone().unwrap();
            if let Some(message) =
                job_termination_message(&w.client, &w.hosted.namespace, &name).await
            {
                return serde_json::from_str(&message).unwrap_or_else(|e| panic!("{message}: {e}"));
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no storage scan finished"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A Secret sealed with `key` (name, base64 material) by eargate's storage crate and written
/// straight into etcd, behind the API servers' back, as a restore or `etcdctl put` would.
async fn inject_sealed_secret(w: &Journey, key: (&str, &str)) {
    let sealer = eargate_storage::SecretboxKey::from_base64(key.0, key.1).expect("the key");
    let (namespace, name) = INJECTED;
    let value = json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace,
                     "uid": "00000000-0000-4000-8000-000000000002",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "type": "Opaque",
        "data": {"value": base64::engine::general_purpose::STANDARD.encode("written behind the API")}
    });
    w.hosted
        .user
        .etcd
        .client()
        .await
        .put(
            format!("/registry/secrets/{namespace}/{name}"),
            sealer.seal(value.to_string().as_bytes()),
            None,
        )
        .await
        .expect("write into etcd");
    // Both API servers read it (the key is still in their config).
    for i in 0..w.hosted.user.replica_count() {
        let (_, client) = w.hosted.user.replica_client(i).await.expect("a replica");
        Api::<Secret>::namespaced(client, namespace)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("replica {i} reads the injected Secret: {e}"));
    }
}

/// Waits until the retained-keys condition reads `reason` with a message starting `start`.
async fn wait_retained(w: &Journey, reason: &str, start: &str) -> String {
    let c = w
        .wait_cluster(
            &format!("{CONDITION_KEYS_RETAINED} {reason}: {start}"),
            |c| {
                retained(c)["reason"] == reason
                    && retained(c)["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(start))
            },
        )
        .await;
    assert_eq!(
        phase(&c),
        Some("Active"),
        "no data changes: the phase stays Active"
    );
    let message = retained(&c)["message"].as_str().unwrap().to_owned();
    eprintln!(
        "k8s_key_removal {}: {CONDITION_KEYS_RETAINED} {} {reason}: {message}",
        w.name(),
        retained(&c)["status"].as_str().unwrap_or_default()
    );
    message
}

#[test]
fn a_removed_key_goes_only_when_etcd_holds_nothing_sealed_with_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    runtime().block_on(async {
        let Some(mut w) = journey("removal").await else {
            return;
        };
        for k in ["k1", "k2", "k3"] {
            w.create_key(k);
        }
        let began = std::time::Instant::now();
        // A clean rotation from k1 to k2, then etcd compacts the rewrite's older revisions.
        step(&w, &["k1", "k2"], &["k1", "k2"]).await;
        step(&w, &["k2", "k1"], &["k2", "k1"]).await;
        let compacted = w.hosted.user.etcd.compact_to_current();
        eprintln!("k8s_key_removal removal: compacted etcd at revision {compacted}");
        // Removing k1: one scan finds nothing, and one more rollout drops it.
        step(&w, &["k2"], &["k2"]).await;
        let summary = last_scan_message(&w).await;
        eprintln!("k8s_key_removal removal: the scan's termination message: {summary}");
        assert_eq!(summary["history"], true);
        assert_eq!(
            summary["keys"]["k1"],
            json!({"objects": 0, "olderRevisions": 0}),
            "{summary}"
        );
        let dropped = w.events("KeysDropped").await;
        assert!(
            dropped
                .iter()
                .any(|n| n.contains("found nothing sealed with [k1]")),
            "{dropped:?}"
        );
        eprintln!(
            "k8s_key_removal removal: k1 dropped after {:.1?}: {}",
            began.elapsed(),
            dropped[0]
        );

        // A fresh rotation from k2 to k3, compacted; then one Secret sealed with k2 appears
        // in etcd behind the API servers' back.
        step(&w, &["k2", "k3"], &["k2", "k3"]).await;
        step(&w, &["k3", "k2"], &["k3", "k2"]).await;
        w.hosted.user.etcd.compact_to_current();
        let k2 = w.keys[1].clone();
        inject_sealed_secret(&w, ("k2", &k2)).await;
        w.apply_cluster(&["k3"]);
        let message = wait_retained(&w, "StillInUse", "k2: 1 object(s), 0 older revision(s)").await;
        assert!(message.contains("storage scan eargate-scan-"), "{message}");
        assert_eq!(key_names(&w.rendered().await), ["k3", "k2"], "k2 stays");
        let warnings = w.events("KeysRetained").await;
        assert!(warnings.contains(&message), "{warnings:?}");
        let metrics = w.metrics();
        for line in [
            r#"eargate_retained_keys{cluster="removal"} 1"#,
            r#"eargate_retained_key_sealed{cluster="removal",key="k2",revisions="Current"} 1"#,
            r#"eargate_retained_key_sealed{cluster="removal",key="k2",revisions="Older"} 0"#,
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }

        // Rewritten through the API (now sealed with k3): its older revision still is k2's.
        let user = w.hosted.user.client().await;
        Api::<Secret>::namespaced(user, INJECTED.0)
            .patch(
                INJECTED.1,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"rewritten": "yes"}}})),
            )
            .await
            .expect("rewrite the injected Secret");
        wait_retained(&w, "StillInUse", "k2: 0 object(s), 1 older revision(s)").await;
        assert_eq!(key_names(&w.rendered().await), ["k3", "k2"], "k2 stays");

        // etcd compacts; the next rescan finds nothing and k2 goes.
        w.hosted.user.etcd.compact_to_current();
        step(&w, &["k3"], &["k3"]).await;
        let c = w.cluster().await;
        assert_eq!(retained(&c)["status"], "False", "{}", retained(&c));
        assert!(
            !w.metrics()
                .contains(r#"eargate_retained_keys{cluster="removal"}"#),
            "no key retained any more"
        );
        let scans = w.events("StorageScanStarted").await;
        eprintln!(
            "k8s_key_removal removal: {} storage scans; k2 dropped after {:.1?} in all",
            scans.len(),
            began.elapsed()
        );
        w.assert_no_leak().await;
    });
}

#[test]
fn older_revisions_keep_the_old_key_until_etcd_compacts_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    runtime().block_on(async {
        let Some(mut w) = journey("stale").await else {
            return;
        };
        w.create_key("k1");
        w.create_key("k2");
        step(&w, &["k1", "k2"], &["k1", "k2"]).await;
        step(&w, &["k2", "k1"], &["k2", "k1"]).await;
        // No compaction: every Secret the re-encryption rewrote has an older revision on k1.
        w.apply_cluster(&["k2"]);
        let message = wait_retained(&w, "StillInUse", "k1: 0 object(s), ").await;
        let older: u64 = message["k1: 0 object(s), ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            older >= DATA.secrets as u64,
            "every rewritten Secret left an older revision on k1: {message}"
        );
        // Rescans (every few seconds here) keep finding them: the key stays.
        let before = w.events("StorageScanStarted").await.len();
        let deadline = std::time::Instant::now() + w.step_timeout;
        while w.events("StorageScanStarted").await.len() < before + 2 {
            assert!(std::time::Instant::now() < deadline, "no rescans");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(key_names(&w.rendered().await), ["k2", "k1"], "k1 stays");
        // Each rescan replaced the last scan's Job (and its Pod): not one Job per rescan.
        let scans = scan_jobs(&w).await.len();
        assert!(scans <= 2, "{scans} scan Jobs after {} scans", before + 2);
        let summary = last_scan_message(&w).await;
        assert_eq!(summary["keys"]["k1"]["objects"], 0, "{summary}");
        assert!(summary["keys"]["k1"]["olderRevisions"].as_u64().unwrap() >= older);
        // Compaction, as kube-apiserver does every 5 minutes: the key goes.
        w.hosted.user.etcd.compact_to_current();
        step(&w, &["k2"], &["k2"]).await;
        w.assert_no_leak().await;
    });
}
