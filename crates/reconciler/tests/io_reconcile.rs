//! `reconcile` against a scripted API server: every request asserted in order (method, path,
//! content type, body), from enabling encryption to `Active`, plus the error paths. Logs are
//! captured at TRACE and checked, with every Event and status write, for key material.

mod io_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use eargate_policy::model::Cluster;
use eargate_policy::names;
use eargate_reconciler::context::{Context, Error};
use eargate_reconciler::controller::{error_policy, reconcile};
use eargate_reconciler::metrics::Metrics;
use eargate_reconciler::plan::Settings;
use http::Method;
use io_support::{mock_client, ApiServerVerifier, Call};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

const NS: &str = "cluster-c1";
const CLUSTER: &str = "/apis/kubermatic.k8c.io/v1/clusters/c1";
const STATUS: &str = "/apis/kubermatic.k8c.io/v1/clusters/c1/status";
const CONFIG_SECRET: &str =
    "/api/v1/namespaces/cluster-c1/secrets/apiserver-encryption-configuration";
const SECRETS: &str = "/api/v1/namespaces/cluster-c1/secrets";
const KEY_SECRET: &str = "/api/v1/namespaces/cluster-c1/secrets/key-secret";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/cluster-c1/deployments/apiserver";
const PODS: &str = "/api/v1/namespaces/cluster-c1/pods";
const JOBS: &str = "/apis/batch/v1/namespaces/cluster-c1/jobs";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// The key's raw bytes and the base64 text users put into the Secret.
const RAW_KEY: &[u8; 32] = b"0123456789abcdef0123456789ABCDEF";
fn key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(RAW_KEY)
}
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Everything logged while a scenario runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// Fails if any form of the key shows up in `text`.
fn assert_no_key_material(what: &str, text: &str) {
    let b64_of_b64 = b64(key_b64().as_bytes());
    for needle in [
        key_b64().as_str(),
        &key_b64()[..16],
        "0123456789abcdef",
        &b64_of_b64[..24],
    ] {
        assert!(
            !text.contains(needle),
            "key material ({needle}) in {what}:\n{text}"
        );
    }
}

fn cluster(status: Value, rv: &str) -> Value {
    json!({
        "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
        "metadata": {"name": "c1", "resourceVersion": rv, "generation": 2, "uid": "u-1"},
        "spec": {
            "humanReadableName": "kept by the server, unknown to eargate",
            "features": {"encryptionAtRest": true},
            "encryptionConfiguration": {
                "enabled": true, "resources": ["secrets"],
                "secretbox": {"keys": [{"name": "k1", "secretRef": {"name": "key-secret", "key": "key"}}]}
            }
        },
        "status": status
    })
}

fn key_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "key-secret", "namespace": NS},
        "data": {"key": b64(key_b64().as_bytes())}})
}

fn deployment(template_hash: Option<&str>, started: Option<&str>) -> Value {
    let mut template_annotations = json!({});
    if let Some(h) = template_hash {
        template_annotations[names::ANNOTATION_CONFIG_HASH] = json!(h);
    }
    let mut annotations = json!({});
    if let Some(s) = started {
        annotations["eargate.k8c.io/rollout-started"] = json!(s);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "apiserver", "namespace": NS, "generation": 4, "annotations": annotations},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "apiserver"}},
            "template": {"metadata": {"labels": {"app": "apiserver"}, "annotations": template_annotations},
                "spec": {"containers": [{"name": "apiserver", "image": "k8s"}]}}},
        "status": {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2,
            "availableReplicas": 2, "readyReplicas": 2}})
}

fn pods(hash: Option<&str>) -> Value {
    let pod = |n: &str| {
        let mut annotations = json!({});
        if let Some(h) = hash {
            annotations[names::ANNOTATION_CONFIG_HASH] = json!(h);
        }
        json!({"metadata": {"name": n, "namespace": NS, "labels": {"app": "apiserver"}, "annotations": annotations}})
    };
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
        "items": [pod("apiserver-a"), pod("apiserver-b")]})
}

fn context(client: kube::Client) -> Arc<Context> {
    let settings = Settings {
        job_image: "registry.example/eargate:test".into(),
        ..Settings::default()
    };
    Context::with_settings(
        client,
        settings,
        "reconciler-0".into(),
        Arc::new(Metrics::new()),
    )
}

/// Runs one reconcile against the scripted server; returns its result.
async fn run_reconcile(
    ctx: &Arc<Context>,
    cluster_json: &Value,
    script: impl std::future::Future<Output = ()>,
) -> Result<Action, Error> {
    let c: Cluster = serde_json::from_value(cluster_json.clone()).unwrap();
    let (result, ()) = tokio::join!(reconcile(Arc::new(c), ctx.clone()), script);
    result
}

/// Observation of a Cluster whose rendered Secret, Deployment and pods are given.
async fn expect_observation(
    api: &mut ApiServerVerifier,
    cluster_json: &Value,
    rendered: Option<&Value>,
    key: Option<&Value>,
    deployment_json: &Value,
    pods_json: &Value,
) {
    api.expect(Method::GET, CLUSTER).await.ok(cluster_json);
    let call = api.expect(Method::GET, CONFIG_SECRET).await;
    match rendered {
        Some(s) => call.ok(s),
        None => call.not_found("secrets"),
    }
    let call = api.expect(Method::GET, KEY_SECRET).await;
    match key {
        Some(s) => call.ok(s),
        None => call.not_found("secrets"),
    }
    api.expect(Method::GET, DEPLOYMENT)
        .await
        .ok(deployment_json);
    let list = api.expect(Method::GET, PODS).await;
    assert_eq!(
        list.query("labelSelector").as_deref(),
        Some("app%3Dapiserver"),
        "{}",
        list.uri
    );
    list.ok(pods_json);
}

/// A status write: through `/status`, a merge patch naming only status fields, preconditioned
/// on the resourceVersion the plan was made from. Replies with the Cluster at `new_rv`.
fn check_status_write(call: Call, from_rv: &str, new_rv: &str, texts: &mut Vec<String>) -> Value {
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        call.body["metadata"],
        json!({"resourceVersion": from_rv}),
        "{}",
        call.body
    );
    let keys: Vec<&String> = call.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["metadata", "status"],
        "only status is written: {}",
        call.body
    );
    let status_keys: Vec<&String> = call.body["status"].as_object().unwrap().keys().collect();
    assert!(
        status_keys
            .iter()
            .all(|k| *k == "encryption" || *k == "conditions"),
        "{}",
        call.body
    );
    texts.push(call.body.to_string());
    let body = call.body.clone();
    let mut reply = cluster(body["status"].clone(), new_rv);
    reply["metadata"]["resourceVersion"] = json!(new_rv);
    call.ok(&reply);
    body
}

fn check_event(call: Call, type_: &str, reason: &str, texts: &mut Vec<String>) {
    assert_eq!(call.body["type"], type_, "{}", call.body);
    assert_eq!(call.body["reason"], reason, "{}", call.body);
    assert_eq!(call.body["regarding"]["kind"], "Cluster");
    assert_eq!(call.body["regarding"]["name"], "c1");
    assert_eq!(call.body["reportingController"], names::RECONCILER_NAME);
    assert_eq!(call.body["reportingInstance"], "reconciler-0");
    texts.push(call.body.to_string());
    let body = call.body.clone();
    call.created(&body);
}

#[tokio::test]
async fn rolls_encryption_out_from_nothing_to_active() {
    let (logs, _guard) = capture_logs();
    let (client, mut api) = mock_client();
    let ctx = context(client);
    let mut texts = Vec::new();

    // 1. Nothing yet: Pending, write the config Secret, roll the API server.
    let c0 = cluster(json!({"namespaceName": NS}), "100");
    let dep0 = deployment(None, None);
    let mut rendered_secret = Value::Null;
    let mut hash = String::new();
    let result = run_reconcile(&ctx, &c0, async {
        expect_observation(&mut api, &c0, None, Some(&key_secret()), &dep0, &pods(None)).await;
        let status = check_status_write(
            api.expect(Method::PATCH, STATUS).await,
            "100",
            "101",
            &mut texts,
        );
        assert_eq!(status["status"]["encryption"]["phase"], "Pending");
        assert_eq!(
            status["status"]["conditions"][names::CONDITION_ENCRYPTION_INITIALIZED]["status"],
            "True"
        );
        check_event(
            api.expect(Method::POST, EVENTS).await,
            "Normal",
            "Pending",
            &mut texts,
        );
        // The Secret does not exist: created once, labelled with its content hash.
        let create = api.expect(Method::POST, SECRETS).await;
        assert_eq!(
            create.body["metadata"]["name"],
            names::DEFAULT_CONFIG_SECRET
        );
        assert_eq!(
            create.body["metadata"]["labels"][names::LABEL_MANAGED_BY],
            names::MANAGED_BY
        );
        hash = create.body["metadata"]["labels"][names::LABEL_CONFIG_HASH]
            .as_str()
            .unwrap()
            .to_owned();
        let yaml = base64::engine::general_purpose::STANDARD
            .decode(
                create.body["data"][names::DEFAULT_CONFIG_SECRET_KEY]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        let yaml = String::from_utf8(yaml).unwrap();
        let config: eargate_policy::apiserver_config::EncryptionConfig =
            serde_yaml::from_str(&yaml).unwrap();
        let keys = &config.resources[0]
            .providers
            .iter()
            .find_map(|p| p.secretbox.clone())
            .unwrap()
            .keys;
        assert_eq!(
            (keys[0].name.as_str(), keys[0].secret.as_str()),
            ("k1", key_b64().as_str())
        );
        rendered_secret = create.body.clone();
        rendered_secret["metadata"]["namespace"] = json!(NS);
        create.created(&rendered_secret);
        // Then the API server is rolled by a pod-template annotation with that hash.
        let roll = api.expect(Method::PATCH, DEPLOYMENT).await;
        assert_eq!(
            roll.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(
            roll.body["spec"]["template"]["metadata"]["annotations"][names::ANNOTATION_CONFIG_HASH],
            json!(hash)
        );
        assert!(roll.body["metadata"]["annotations"]["eargate.k8c.io/rollout-started"].is_string());
        assert_eq!(roll.body.as_object().unwrap().len(), 2, "{}", roll.body);
        roll.ok(&deployment(Some(&hash), Some("2025-01-01T00:00:00Z")));
        check_event(
            api.expect(Method::POST, EVENTS).await,
            "Normal",
            "RolloutStarted",
            &mut texts,
        );
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));

    // 2. Every API server reads k1 now: promote it to writer (same phase, so no status write).
    //    The Secret exists: patched in place, only because its content changed.
    let pending = json!({"namespaceName": NS,
        "encryption": {"phase": "Pending", "activeKey": "", "encryptedResources": []},
        "conditions": {names::CONDITION_ENCRYPTION_INITIALIZED: {"status": "True"}}});
    let c1 = cluster(pending, "101");
    let started = k8s_openapi::jiff::Timestamp::now().to_string();
    let dep1 = deployment(Some(&hash), Some(&started));
    let first_hash = hash.clone();
    let result = run_reconcile(&ctx, &c1, async {
        expect_observation(
            &mut api,
            &c1,
            Some(&rendered_secret),
            Some(&key_secret()),
            &dep1,
            &pods(Some(&hash)),
        )
        .await;
        let get_job = api.next().await;
        assert_eq!(get_job.method, Method::GET);
        assert!(
            get_job
                .uri
                .starts_with(&format!("{JOBS}/eargate-reencrypt-")),
            "{}",
            get_job.uri
        );
        get_job.not_found("jobs");
        let patch = api.expect(Method::PATCH, CONFIG_SECRET).await;
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        hash = patch.body["metadata"]["labels"][names::LABEL_CONFIG_HASH]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(hash, first_hash);
        rendered_secret["data"] = patch.body["data"].clone();
        rendered_secret["metadata"]["labels"] = patch.body["metadata"]["labels"].clone();
        rendered_secret["metadata"]["annotations"] = patch.body["metadata"]["annotations"].clone();
        patch.ok(&rendered_secret);
        let roll = api.expect(Method::PATCH, DEPLOYMENT).await;
        assert_eq!(
            roll.body["spec"]["template"]["metadata"]["annotations"][names::ANNOTATION_CONFIG_HASH],
            json!(hash)
        );
        roll.ok(&deployment(Some(&hash), Some(&started)));
        check_event(
            api.expect(Method::POST, EVENTS).await,
            "Normal",
            "RolloutStarted",
            &mut texts,
        );
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));

    // 3. Rollout complete everywhere: EncryptionNeeded and one Job; 409 means it exists.
    let dep2 = deployment(Some(&hash), Some(&started));
    let mut job_name = String::new();
    let result = run_reconcile(&ctx, &c1, async {
        expect_observation(
            &mut api,
            &c1,
            Some(&rendered_secret),
            Some(&key_secret()),
            &dep2,
            &pods(Some(&hash)),
        )
        .await;
        let get_job = api.next().await;
        assert_eq!(get_job.method, Method::GET);
        job_name = get_job.uri.rsplit('/').next().unwrap().to_owned();
        assert!(
            job_name.starts_with("eargate-reencrypt-"),
            "{}",
            get_job.uri
        );
        get_job.not_found("jobs");
        let status = check_status_write(
            api.expect(Method::PATCH, STATUS).await,
            "101",
            "102",
            &mut texts,
        );
        assert_eq!(status["status"]["encryption"]["phase"], "EncryptionNeeded");
        check_event(
            api.expect(Method::POST, EVENTS).await,
            "Normal",
            "EncryptionNeeded",
            &mut texts,
        );
        let create = api.expect(Method::POST, JOBS).await;
        assert_eq!(create.body["metadata"]["name"], json!(job_name));
        assert_eq!(
            create.body["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/eargate:test"
        );
        texts.push(create.body.to_string());
        create.status_error(
            409,
            "AlreadyExists",
            &format!("jobs.batch \"{job_name}\" already exists"),
        );
        check_event(
            api.expect(Method::POST, EVENTS).await,
            "Normal",
            "ReencryptionStarted",
            &mut texts,
        );
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));

    // 3. The Job succeeded: Active with the new activeKey; the Job's run time is recorded.
    let needed = json!({"namespaceName": NS,
        "encryption": {"phase": "EncryptionNeeded", "activeKey": "", "encryptedResources": []},
        "conditions": {names::CONDITION_ENCRYPTION_INITIALIZED: {"status": "True"}}});
    let c2 = cluster(needed, "102");
    let result = run_reconcile(&ctx, &c2, async {
        expect_observation(&mut api, &c2, Some(&rendered_secret), Some(&key_secret()), &dep2, &pods(Some(&hash))).await;
        api.expect(Method::GET, &format!("{JOBS}/{job_name}")).await.ok(&json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job_name, "namespace": NS},
            "status": {"startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:02:00Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        }));
        check_event(api.expect(Method::POST, EVENTS).await, "Normal", "ReencryptionSucceeded", &mut texts);
        let status = check_status_write(api.expect(Method::PATCH, STATUS).await, "102", "103", &mut texts);
        assert_eq!(
            status["status"]["encryption"],
            json!({"phase": "Active", "activeKey": "secretbox/k1", "encryptedResources": ["secrets"]})
        );
        check_event(api.expect(Method::POST, EVENTS).await, "Normal", "Active", &mut texts);
    })
    .await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(eargate_reconciler::context::RESYNC)
    );
    api.expect_silence(Duration::from_millis(100)).await;

    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(r#"eargate_encryption_phase{cluster="c1",phase="Active"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"eargate_reencryption_jobs_total{outcome="Succeeded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"eargate_reencryption_job_duration_seconds_sum{outcome="Succeeded"} 120.0"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("eargate_reconciliations_total 4"),
        "{metrics}"
    );

    for text in &texts {
        assert_no_key_material("an Event, status write or Job", text);
    }
    assert_no_key_material("metrics", &metrics);
    let logs = logs.text();
    assert!(
        logs.contains("rendered config created"),
        "logs were not captured:\n{logs}"
    );
    assert_no_key_material("the logs", &logs);
}

#[tokio::test]
async fn missing_key_secret_sets_condition_emits_event_and_backs_off() {
    let (logs, _guard) = capture_logs();
    let (client, mut api) = mock_client();
    let ctx = context(client);
    let mut texts = Vec::new();
    let c0 = cluster(json!({"namespaceName": NS}), "100");
    let dep = deployment(None, None);

    let result = run_reconcile(&ctx, &c0, async {
        expect_observation(&mut api, &c0, None, None, &dep, &pods(None)).await;
        let status = check_status_write(
            api.expect(Method::PATCH, STATUS).await,
            "100",
            "101",
            &mut texts,
        );
        assert!(
            status["status"].get("encryption").is_none(),
            "phase untouched: {status}"
        );
        let cond = &status["status"]["conditions"]
            [eargate_reconciler::plan::CONDITION_ENCRYPTION_RECONCILED];
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "KeySecretMissing");
        assert!(
            cond["message"].as_str().unwrap().contains("key-secret"),
            "{cond}"
        );
        check_event(
            api.expect(Method::POST, EVENTS).await,
            "Warning",
            "KeySecretMissing",
            &mut texts,
        );
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err}");
    assert_eq!(err.metric_label(), "blocked");
    // Backoff grows per consecutive error of the same cluster.
    let c: Arc<Cluster> = Arc::new(serde_json::from_value(c0.clone()).unwrap());
    assert_eq!(
        error_policy(c.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(c.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    api.expect_silence(Duration::from_millis(100)).await;
    assert!(ctx
        .metrics
        .encode()
        .contains(r#"eargate_reconcile_errors_total{error="blocked"} 1"#));

    // Still missing: the same condition is not written again; the Event repeats as a series.
    let c1 = cluster(
        json!({"namespaceName": NS, "conditions": {
            eargate_reconciler::plan::CONDITION_ENCRYPTION_RECONCILED: texts_condition(&texts[0])}}),
        "101",
    );
    let result = run_reconcile(&ctx, &c1, async {
        expect_observation(&mut api, &c1, None, None, &dep, &pods(None)).await;
        let series = api.next().await;
        assert_eq!(series.method, Method::PATCH, "{}", series.uri);
        assert!(series.uri.starts_with(EVENTS), "{}", series.uri);
        assert_eq!(series.body["series"]["count"], 2);
        texts.push(series.body.to_string());
        series.echo();
    })
    .await;
    assert!(matches!(result, Err(Error::Blocked { .. })));

    for text in &texts {
        assert_no_key_material("an Event or status write", text);
    }
    let logs = logs.text();
    assert!(logs.contains("blocked; retrying with backoff"), "{logs}");
    assert_no_key_material("the logs", &logs);
}

/// The condition the first status write set (to feed it back as the Cluster's state).
fn texts_condition(status_write: &str) -> Value {
    let v: Value = serde_json::from_str(status_write).unwrap();
    v["status"]["conditions"][eargate_reconciler::plan::CONDITION_ENCRYPTION_RECONCILED].clone()
}

#[tokio::test]
async fn invalid_key_material_is_reported_by_key_name_only() {
    let (logs, _guard) = capture_logs();
    let (client, mut api) = mock_client();
    let ctx = context(client);
    let mut texts = Vec::new();
    let c0 = cluster(json!({"namespaceName": NS}), "100");
    let dep = deployment(None, None);
    // 31 bytes: the key is refused, and its content must not appear anywhere.
    let short = b64(&RAW_KEY[..31]);
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key-secret", "namespace": NS},
        "data": {"key": b64(short.as_bytes())}});
    let result = run_reconcile(&ctx, &c0, async {
        expect_observation(&mut api, &c0, None, Some(&bad), &dep, &pods(None)).await;
        let status = check_status_write(
            api.expect(Method::PATCH, STATUS).await,
            "100",
            "101",
            &mut texts,
        );
        let cond = &status["status"]["conditions"]
            [eargate_reconciler::plan::CONDITION_ENCRYPTION_RECONCILED];
        assert_eq!(cond["reason"], "KeyInvalid");
        assert!(cond["message"].as_str().unwrap().contains("k1"), "{cond}");
        check_event(
            api.expect(Method::POST, EVENTS).await,
            "Warning",
            "KeyInvalid",
            &mut texts,
        );
    })
    .await;
    let err = result.unwrap_err();
    texts.push(err.to_string());
    for text in &texts {
        assert!(!text.contains(&short[..12]), "key material in {text}");
        assert!(!text.contains("0123456789abcdef"), "key material in {text}");
    }
    let logs = logs.text();
    assert!(
        !logs.contains(&short[..12]) && !logs.contains("0123456789abcdef"),
        "{logs}"
    );
}

#[tokio::test]
async fn status_conflict_is_an_error_and_nothing_else_is_written() {
    let (client, mut api) = mock_client();
    let ctx = context(client);
    let c0 = cluster(json!({"namespaceName": NS}), "100");
    let dep = deployment(None, None);
    let result = run_reconcile(&ctx, &c0, async {
        expect_observation(&mut api, &c0, None, Some(&key_secret()), &dep, &pods(None)).await;
        // The Cluster changed after it was read: the plan made from it is refused.
        api.expect(Method::PATCH, STATUS).await.status_error(
            409,
            "Conflict",
            "the object has been modified",
        );
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.metric_label(), "conflict", "{err}");
    api.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_deleted_cluster_is_forgotten() {
    let (client, mut api) = mock_client();
    let ctx = context(client);
    ctx.metrics.set_phase("c1", None);
    let c0 = cluster(json!({}), "1");
    let result = run_reconcile(&ctx, &c0, async {
        api.expect(Method::GET, CLUSTER).await.not_found("clusters");
    })
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(!ctx.metrics.encode().contains(r#"cluster="c1""#));
}
