//! `eargate reconcile` against the real kube-apiserver: its watches start, it takes, renews
//! and releases a `coordination.k8s.io` Lease, writes status through `/status` and records
//! Events, and moves a new Cluster from nothing to `Pending`.
//!
//! It runs as its own process with a token of the chart's ServiceAccount (TokenRequest) and
//! only the chart's RBAC, so every call it makes is one the chart allows: the chart grants
//! `patch` on `clusters/status` but not on `clusters`, so a status that lands was written
//! through the status subresource.
//!
//! No kubelet or controller manager runs: the `apiserver` Deployment is stored, never
//! scheduled. The whole rollout (a node agent standing in for them) is another test.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::time::{Duration, Instant};

use eargate_policy::names;
use eargate_testkit::rollout::Seed;
use eargate_testkit::{ControlPlane, Identity};
use serde_json::{json, Value};

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const NAMESPACE: &str = "eargate-system";

fn get_json(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let out = cp
        .kubectl(&Identity::admin())
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("run kubectl");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("kubectl prints JSON"))
}

/// Polls `check` every 200 ms until it gives `Some`, up to `timeout`.
fn eventually<T>(
    what: &str,
    timeout: Duration,
    logs: &dyn Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; the reconciler's log:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP/1.1 GET on loopback: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    tcp.read_to_string(&mut text).expect("read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_reconciler_leads_watches_and_moves_a_new_cluster_to_pending() {
    let Some(cp) = ControlPlane::shared() else {
        return;
    };
    let admin = Identity::admin();
    let Some(seed) = Seed::install(cp, EARGATE.as_ref(), NAMESPACE, false) else {
        return;
    };

    // The user cluster's control plane as the seed holds it.
    let name = "live1";
    let cp_ns = format!("cluster-{name}");
    cp.kubectl_ok(&admin, &["create", "namespace", &cp_ns]);
    cp.apply(&[json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "apiserver", "namespace": cp_ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "apiserver"}},
            "template": {
                "metadata": {"labels": {"app": "apiserver"}},
                "spec": {"containers": [{"name": "apiserver", "image": "registry.k8s.io/kube-apiserver:v1.37.2"}]}
            }
        }
    })]);

    // The reconciler, as the chart's ServiceAccount.
    let mut reconciler = seed.start_reconciler("reconciler-test-1", &[]);
    let metrics_port = reconciler.metrics_port;
    let log = reconciler.log_path().to_owned();
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    eventually(
        "the watches to start",
        Duration::from_secs(30),
        &logs,
        || {
            logs()
                .contains("watching Clusters and their control planes")
                .then_some(())
        },
    );

    // The Lease, created through the real coordination.k8s.io API, and renewed.
    let lease_name = "eargate-reconciler";
    let first = eventually("the Lease", Duration::from_secs(30), &logs, || {
        let lease = get_json(cp, &["get", "lease", lease_name, "-n", NAMESPACE])?;
        (lease["spec"]["holderIdentity"] == "reconciler-test-1").then_some(lease)
    });
    let first_renew = first["spec"]["renewTime"].clone();
    eventually(
        "a renewal of the Lease",
        Duration::from_secs(30),
        &logs,
        || {
            let lease = get_json(cp, &["get", "lease", lease_name, "-n", NAMESPACE])?;
            (lease["spec"]["renewTime"] != first_renew
                && lease["spec"]["holderIdentity"] == "reconciler-test-1")
                .then_some(())
        },
    );

    // The key Secret first, then a new Cluster: nothing -> Pending, through /status, with
    // Events.
    use base64::Engine as _;
    // Secret data is base64 of the key, whose text is itself base64 of 32 bytes.
    let key_text = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(&key_text);
    cp.apply(&[json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "k1", "namespace": cp_ns},
        "data": {"key": key_b64}
    })]);
    cp.apply(&[json!({
        "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {
            "humanReadableName": "live",
            "features": {"encryptionAtRest": true},
            "encryptionConfiguration": {
                "enabled": true, "resources": ["secrets"],
                "secretbox": {"keys": [{"name": "k1", "secretRef": {"name": "k1", "key": "key"}}]}
            }
        }
    })]);
    let cluster = eventually("phase Pending", Duration::from_secs(60), &logs, || {
        let c = get_json(cp, &["get", "cluster", name])?;
        (c["status"]["encryption"]["phase"] == "Pending").then_some(c)
    });
    assert!(
        cluster["status"]["conditions"]["EncryptionInitialized"].is_object(),
        "{cluster}"
    );
    let secret = eventually(
        "the rendered config Secret",
        Duration::from_secs(30),
        &logs,
        || {
            get_json(
                cp,
                &["get", "secret", names::DEFAULT_CONFIG_SECRET, "-n", &cp_ns],
            )
        },
    );
    assert!(
        secret["data"][names::DEFAULT_CONFIG_SECRET_KEY].is_string(),
        "{secret}"
    );
    let deployment = get_json(
        cp,
        &[
            "get",
            "deployment",
            names::DEFAULT_APISERVER_DEPLOYMENT,
            "-n",
            &cp_ns,
        ],
    )
    .expect("the Deployment");
    let template_annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert!(
        template_annotations
            .as_object()
            .is_some_and(|a| a.keys().any(|k| k.contains("eargate"))),
        "the reconciler rolls the API server through its pod template: {template_annotations}"
    );
    let events = eventually(
        "an Event about the Cluster",
        Duration::from_secs(30),
        &logs,
        || {
            let all = get_json(cp, &["get", "events", "-A"])?;
            let mine: Vec<Value> = all["items"]
                .as_array()?
                .iter()
                .filter(|e| e["involvedObject"]["name"] == name || e["regarding"]["name"] == name)
                .cloned()
                .collect();
            (!mine.is_empty()).then_some(mine)
        },
    );
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"RolloutStarted"), "{reasons:?}");

    // Readiness and the phase metric on the admin port.
    let (status, _) = http_get(metrics_port, "/readyz");
    assert_eq!(status, 200, "readyz of the leader");
    let (status, body) = http_get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("eargate_"), "{body}");

    // SIGTERM: the Lease is released through the API, so a successor need not wait it out.
    reconciler.stop();
    let released = get_json(cp, &["get", "lease", lease_name, "-n", NAMESPACE]).expect("the Lease");
    assert!(
        released["spec"]["holderIdentity"]
            .as_str()
            .is_none_or(|h| h.is_empty()),
        "the Lease is still held after shutdown: {released}\n{}",
        logs()
    );
    assert!(logs().contains("released the leader Lease"), "{}", logs());

    // No key material in the log, the Events or the status.
    let status =
        get_json(cp, &["get", "cluster", name]).expect("the Cluster")["status"].to_string();
    let events = serde_json::to_string(&events).expect("JSON");
    for text in [logs(), status, events] {
        for part in key_text.as_bytes().windows(8) {
            let part = std::str::from_utf8(part).expect("ASCII");
            assert!(!text.contains(part), "key material ({part}…) in: {text}");
        }
    }
}
