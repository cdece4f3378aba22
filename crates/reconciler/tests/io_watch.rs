//! What the controller's watches ask the API server for: Clusters in full,
//! API server Deployments by name, Jobs by label, and Secrets by their metadata only — a
//! seed holds thousands of key-bearing Secrets, and none of their data may be listed or
//! held in memory by the watch (the reconcile GETs the few Secrets it needs).
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::collections::BTreeMap;
use std::sync::Arc;

use eargate_reconciler::{run, Context, Metrics, Settings};
use eargate_testkit::mock_api::{mock_client, Call};
use http::Method;
use serde_json::json;

const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

const CLUSTERS: &str = "/apis/kubermatic.k8c.io/v1/clusters";
const SECRETS: &str = "/api/v1/secrets";
const DEPLOYMENTS: &str = "/apis/apps/v1/deployments";
const JOBS: &str = "/apis/batch/v1/jobs";

fn path(call: &Call) -> String {
    call.uri.split('?').next().unwrap_or_default().to_owned()
}

fn is_watch(call: &Call) -> bool {
    call.query("watch").as_deref() == Some("true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_watched_by_metadata_only() {
    let (client, mut api) = mock_client();
    let ctx = Context::with_settings(
        client,
        Settings::default(),
        "reconciler-0".into(),
        Arc::new(Metrics::new()),
    );
    let controller = tokio::spawn(run(ctx));

    // The four initial LISTs, in whatever order the controller sends them.
    let mut lists = BTreeMap::new();
    while lists.len() < 4 {
        let call = api.next().await;
        assert_eq!(call.method, Method::GET, "{}", call.uri);
        assert!(!is_watch(&call), "a watch before its list: {}", call.uri);
        let p = path(&call);
        assert!(
            [CLUSTERS, SECRETS, DEPLOYMENTS, JOBS].contains(&p.as_str()),
            "unexpected request {}",
            call.uri
        );
        assert!(lists.insert(p, call).is_none(), "listed twice");
    }

    let secrets = lists.remove(SECRETS).unwrap();
    assert_eq!(
        secrets.accept.as_deref(),
        Some(METADATA_LIST),
        "the Secret list must ask for metadata only: {}",
        secrets.uri
    );
    for (p, call) in &lists {
        assert!(
            !call
                .accept
                .as_deref()
                .is_some_and(|a| a.contains("PartialObjectMetadata")),
            "{p}: only Secrets are watched by metadata ({:?})",
            call.accept
        );
    }
    assert_eq!(
        lists[DEPLOYMENTS].query("fieldSelector").as_deref(),
        Some("metadata.name%3Dapiserver")
    );
    assert_eq!(
        lists[JOBS].query("labelSelector").as_deref(),
        Some("app.kubernetes.io%2Fmanaged-by%3Deargate")
    );

    // The API server answers the metadata list in kind; the watch that follows asks for
    // metadata only as well.
    secrets.ok(&json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "10"},
        "items": [{
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {"name": "key-secret", "namespace": "cluster-c1", "resourceVersion": "9"}
        }]
    }));
    let watch = loop {
        let call = api.next().await;
        if path(&call) == SECRETS {
            break call;
        }
        // Other lists or watches still in flight: leave them unanswered.
        drop(call);
    };
    assert!(is_watch(&watch), "{}", watch.uri);
    assert_eq!(watch.query("resourceVersion").as_deref(), Some("10"));
    assert_eq!(watch.accept.as_deref(), Some(METADATA), "{}", watch.uri);

    controller.abort();
    let _ = controller.await;
}
