//! Lease calls of leader election, asserted request by request.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eargate_reconciler::{run_with_leader_election, LeaderConfig, LeaderError, Metrics};
use eargate_testkit::mock_api::{mock_client, ApiServerVerifier};
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

const NS: &str = "eargate-system";
const NAME: &str = "eargate-reconciler";
const ID: &str = "reconciler-0";
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/eargate-system/leases/eargate-reconciler";

fn lease(holder: Option<&str>, duration: u64) -> Value {
    let mut spec = json!({});
    if let Some(h) = holder {
        let now = serde_json::to_value(MicroTime(Timestamp::now())).unwrap();
        spec = json!({
            "holderIdentity": h, "leaseDurationSeconds": duration,
            "acquireTime": now, "renewTime": now, "leaseTransitions": 1
        });
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "1"},
        "spec": spec
    })
}

/// Plays the API server from "no Lease" to "we hold it", asserting each call.
async fn acquire(api: &mut ApiServerVerifier, duration: u64) {
    api.expect(Method::GET, LEASE).await.not_found("leases");
    let create = api
        .expect(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/eargate-system/leases",
        )
        .await;
    assert_eq!(create.body["metadata"]["name"], NAME);
    create.created(&lease(None, duration));
    // The manager reads the (free) Lease, then takes it with a server-side apply.
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(None, duration));
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(None, duration));
    let take = api.expect(Method::PATCH, LEASE).await;
    assert_eq!(
        take.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        take.query("fieldManager").as_deref(),
        Some("eargate-reconciler-0")
    );
    assert_eq!(take.body["spec"]["holderIdentity"], ID);
    assert_eq!(take.body["spec"]["leaseDurationSeconds"], duration);
    take.ok(&lease(Some(ID), duration));
    let transitions = api.expect(Method::PATCH, LEASE).await;
    assert_eq!(
        transitions.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(transitions.body["spec"]["leaseTransitions"], 1);
    transitions.ok(&lease(Some(ID), duration));
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(Some(ID), duration));
}

#[tokio::test]
async fn acquires_runs_work_and_releases_the_lease_on_shutdown() {
    let (client, mut api) = mock_client();
    let (task, stop_tx, metrics) = leading_forever(client, &mut api).await;
    assert!(metrics.encode().contains("eargate_leader 1"));

    // SIGTERM: the holder clears the Lease so a standby need not wait for it to expire.
    stop_tx.send(()).unwrap();
    let release = api.expect(Method::PATCH, LEASE).await;
    assert_eq!(
        release.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(release.body["spec"]["holderIdentity"], Value::Null);
    assert!(release.body["spec"]
        .as_object()
        .unwrap()
        .contains_key("holderIdentity"));
    release.ok(&lease(None, 15));
    api.expect(Method::GET, LEASE).await.ok(&lease(None, 15));

    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("election loop did not stop")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(metrics.encode().contains("eargate_leader 0"));
}

/// The election loop with work that never ends, started and played up to "leading and
/// working" (so the next call is the release): the task, a stop switch and the metrics.
async fn leading_forever(
    client: kube::Client,
    api: &mut ApiServerVerifier,
) -> (
    tokio::task::JoinHandle<Result<(), LeaderError>>,
    tokio::sync::oneshot::Sender<()>,
    Arc<Metrics>,
) {
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let m = metrics.clone();
    let task = tokio::spawn(async move {
        run_with_leader_election(
            client,
            LeaderConfig::new(NS, NAME, ID),
            &m,
            async {
                let _ = stop_rx.await;
            },
            move || {
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(());
                }
                std::future::pending::<()>()
            },
        )
        .await
    });
    acquire(api, 15).await;
    tokio::time::timeout(Duration::from_secs(5), started_rx)
        .await
        .expect("work did not start after the Lease was acquired")
        .unwrap();
    (task, stop_tx, metrics)
}

#[tokio::test]
async fn a_conflict_while_releasing_ends_cleanly_and_leaves_the_lease_to_run_out() {
    let (client, mut api) = mock_client();
    let (task, stop_tx, metrics) = leading_forever(client, &mut api).await;
    stop_tx.send(()).unwrap();
    // Another writer changed the Lease between our read and our release.
    api.expect(Method::PATCH, LEASE).await.status_error(
        409,
        "Conflict",
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"eargate-reconciler\": the object has been modified",
    );
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("election loop did not stop")
        .expect("the election loop panicked on a 409 while releasing");
    assert!(result.is_ok(), "{result:?}");
    assert!(metrics.encode().contains("eargate_leader 0"));
}

#[tokio::test]
async fn an_api_error_while_releasing_is_reported() {
    let (client, mut api) = mock_client();
    let (task, stop_tx, _metrics) = leading_forever(client, &mut api).await;
    stop_tx.send(()).unwrap();
    api.expect(Method::PATCH, LEASE)
        .await
        .status_error(403, "Forbidden", "leases is forbidden");
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("election loop did not stop")
        .unwrap();
    assert!(
        matches!(result, Err(LeaderError::Release { .. })),
        "{result:?}"
    );
}

/// Dropped when the work future is cancelled.
struct CountDrop(Arc<AtomicUsize>);
impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn stops_work_when_the_lease_cannot_be_renewed_and_takes_it_again() {
    let (client, mut api) = mock_client();
    let metrics = Arc::new(Metrics::new());
    let starts = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (s, d, m) = (starts.clone(), drops.clone(), metrics.clone());
    let mut config = LeaderConfig::new(NS, NAME, ID);
    config.duration_seconds = 2;
    config.grace_seconds = 1;
    let task = tokio::spawn(async move {
        run_with_leader_election(
            client,
            config,
            &m,
            async {
                let _ = stop_rx.await;
            },
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                let guard = CountDrop(d.clone());
                async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                }
            },
        )
        .await
    });

    acquire(&mut api, 2).await;
    // About a second later the holder renews; the API server fails the renewal.
    let renew = api.expect(Method::PATCH, LEASE).await;
    assert_eq!(renew.body["spec"]["leaseDurationSeconds"], 2);
    assert!(renew.body["spec"]["renewTime"].is_string());
    renew.status_error(500, "InternalError", "etcd is unavailable");
    // Work is cancelled at once: a replica unsure of its Lease must not write.
    for _ in 0..50 {
        if drops.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1, "work was not stopped");
    assert!(metrics.encode().contains("eargate_leader 0"));

    // A fresh manager finds the Lease still ours and resumes.
    api.expect(Method::GET, LEASE).await.ok(&lease(Some(ID), 2));
    api.expect(Method::GET, LEASE).await.ok(&lease(Some(ID), 2));
    for _ in 0..50 {
        if starts.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(starts.load(Ordering::SeqCst), 2, "work did not resume");

    stop_tx.send(()).unwrap();
    let release = api.expect(Method::PATCH, LEASE).await;
    assert_eq!(release.body["spec"]["holderIdentity"], Value::Null);
    release.ok(&lease(None, 2));
    api.expect(Method::GET, LEASE).await.ok(&lease(None, 2));
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn rejects_bad_timings() {
    let (client, _api) = mock_client();
    let mut config = LeaderConfig::new(NS, NAME, ID);
    config.grace_seconds = 15;
    let err = run_with_leader_election(client, config, &Metrics::new(), async {}, || async {})
        .await
        .unwrap_err();
    assert!(matches!(err, LeaderError::Timing { .. }), "{err}");
}
