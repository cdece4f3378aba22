//! `reconcile` against a scripted API server, as named scenarios (the fixtures pattern of
//! kube-rs's controller-rs): each [`Scenario`] is the API conversation of one reconcile, and
//! [`FakeApiServer`] plays it with named steps that assert every request in order (method,
//! path, content type, body) and reply. The tests read as a sequence of scenarios, from
//! enabling encryption to `Active`, plus the error paths. Logs are captured at TRACE and
//! checked, with every Event, status write and Job, for key material.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::Arc;
use std::time::Duration;

use eargate_policy::model::Cluster;
use eargate_policy::names;
use eargate_reconciler::{
    error_policy, reconcile, Context, Error, Metrics, Settings, CONDITION_ENCRYPTION_RECONCILED,
    RESYNC,
};
use eargate_testkit::fixtures::ClusterFixture;
use eargate_testkit::logs;
use eargate_testkit::mock_api::{mock_client, ApiServerVerifier};
use eargate_testkit::secrets::{self, b64, unb64};
use http::Method;
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
const MERGE_PATCH: &str = "application/merge-patch+json";
const POLL: Duration = Duration::from_secs(10);

/// The key's raw bytes and the base64 text users put into the Secret.
const RAW_KEY: &[u8; 32] = b"0123456789abcdef0123456789ABCDEF";
fn key_b64() -> String {
    b64(RAW_KEY)
}

/// Fails if the key shows up in any of `texts`: as base64 (in the spec's form or a
/// Secret's), or as its raw bytes, which happen to be printable here.
fn assert_no_key_material<'a>(texts: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let raw = std::str::from_utf8(RAW_KEY).expect("printable");
    secrets::assert_no_key_material(&[key_b64().as_str(), raw], texts);
}

fn cluster(status: Value, rv: &str) -> Value {
    ClusterFixture::new("c1")
        .resource_version(rv)
        .generation(2)
        .uid("u-1")
        .human_readable_name("kept by the server, unknown to eargate")
        .encryption(["secrets"])
        .key_ref("k1", "key-secret", "key")
        .status(status)
        .build()
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
        // These scenarios assert the seed API calls; scraping the API server replicas (pod
        // IPs, not the seed) is the planner's and the real control plane's tests' subject.
        prove_loaded: false,
        ..Settings::default()
    };
    Context::with_settings(
        client,
        settings,
        "reconciler-0".into(),
        Arc::new(Metrics::new()),
    )
}

/// The Cluster's `status`, by phase, as the reconciler left it.
fn status_in(phase: &str) -> Value {
    json!({"namespaceName": NS,
        "encryption": {"phase": phase, "activeKey": "", "encryptedResources": []},
        "conditions": {names::CONDITION_ENCRYPTION_INITIALIZED: {"status": "True"}}})
}

// ---------------------------------------------------------------------------------------
// Scenarios: the API conversation of one reconcile each.
// ---------------------------------------------------------------------------------------

/// What one reconcile says to the API server, by what happens in it.
enum Scenario {
    /// A newly enabled Cluster, nothing rendered yet: `Pending`, the config Secret created
    /// (the new key only decrypts), the API server rolled to it.
    EnableFromNothing,
    /// Every API server reads the new key now: the config is re-rendered with it as the
    /// writer, the Secret patched in place (only because its content changed) and the API
    /// server rolled again. Same phase, so no status write.
    PromoteKeyAfterRollout,
    /// The rollout is complete everywhere: `EncryptionNeeded` and one Job; a 409 means the
    /// Job exists already, which is fine.
    StartReencryption,
    /// The Job succeeded: `Active` with the new `activeKey`.
    JobSucceeded,
    /// The referenced key Secret does not exist: a False condition and a Warning Event, the
    /// phase untouched.
    KeySecretMissing,
    /// Still missing: the same condition is not written again; the Event repeats as a series.
    KeySecretStillMissing,
    /// The key Secret holds `secret`, an invalid key: reported by key name only.
    KeyInvalid { secret: Value },
    /// The Cluster changed after it was read: its status write is refused (409) and nothing
    /// else is written.
    StatusConflict,
    /// The Cluster is gone.
    ClusterDeleted,
}

/// The scripted API server, and what earlier scenarios have shown it.
struct FakeApiServer {
    api: ApiServerVerifier,
    /// The config Secret as last written (`None`: it does not exist).
    config_secret: Option<Value>,
    /// The content hash of the config last written.
    hash: String,
    /// The re-encryption Job's name, once a Job was asked for.
    job_name: String,
    /// When the rollout the API server reports started (RFC 3339).
    rollout_started: String,
    /// Every Event, status write and Job body seen, to be checked for key material.
    texts: Vec<String>,
}

impl FakeApiServer {
    fn new(api: ApiServerVerifier) -> Self {
        Self {
            api,
            config_secret: None,
            hash: String::new(),
            job_name: String::new(),
            rollout_started: k8s_openapi::jiff::Timestamp::now().to_string(),
            texts: Vec::new(),
        }
    }

    /// Runs one reconcile of `cluster` while this server plays `scenario`.
    async fn reconcile(
        &mut self,
        ctx: &Arc<Context>,
        cluster: &Value,
        scenario: Scenario,
    ) -> Result<Action, Error> {
        let c: Cluster = serde_json::from_value(cluster.clone()).unwrap();
        let (result, ()) = tokio::join!(
            reconcile(Arc::new(c), ctx.clone()),
            self.play(cluster, scenario)
        );
        result
    }

    async fn play(&mut self, cluster: &Value, scenario: Scenario) {
        match scenario {
            Scenario::EnableFromNothing => self.enable_from_nothing(cluster).await,
            Scenario::PromoteKeyAfterRollout => self.promote_key_after_rollout(cluster).await,
            Scenario::StartReencryption => self.start_reencryption(cluster).await,
            Scenario::JobSucceeded => self.job_succeeded(cluster).await,
            Scenario::KeySecretMissing => self.key_secret_missing(cluster).await,
            Scenario::KeySecretStillMissing => self.key_secret_still_missing(cluster).await,
            Scenario::KeyInvalid { secret } => self.key_invalid(cluster, &secret).await,
            Scenario::StatusConflict => self.status_conflict(cluster).await,
            Scenario::ClusterDeleted => {
                self.api
                    .expect(Method::GET, CLUSTER)
                    .await
                    .not_found("clusters");
            }
        }
    }

    async fn enable_from_nothing(&mut self, cluster: &Value) {
        let key = key_secret();
        self.observation(cluster, Some(&key), &deployment(None, None), &pods(None))
            .await;
        let status = self.status_write("100", "101").await;
        assert_eq!(status["status"]["encryption"]["phase"], "Pending");
        assert_eq!(
            status["status"]["conditions"][names::CONDITION_ENCRYPTION_INITIALIZED]["status"],
            "True"
        );
        self.event("Normal", "Pending").await;
        self.config_secret_created().await;
        self.api_server_rolled("2025-01-01T00:00:00Z").await;
        self.event("Normal", "RolloutStarted").await;
    }

    async fn promote_key_after_rollout(&mut self, cluster: &Value) {
        let (key, first_hash) = (key_secret(), self.hash.clone());
        let rolled = deployment(Some(&first_hash), Some(&self.rollout_started));
        self.observation(cluster, Some(&key), &rolled, &pods(Some(&first_hash)))
            .await;
        self.job_lookup(None).await;
        self.config_secret_patched().await;
        assert_ne!(self.hash, first_hash);
        let started = self.rollout_started.clone();
        self.api_server_rolled(&started).await;
        self.event("Normal", "RolloutStarted").await;
    }

    async fn start_reencryption(&mut self, cluster: &Value) {
        let key = key_secret();
        let rolled = deployment(Some(&self.hash), Some(&self.rollout_started));
        self.observation(cluster, Some(&key), &rolled, &pods(Some(&self.hash)))
            .await;
        self.job_lookup(None).await;
        let status = self.status_write("101", "102").await;
        assert_eq!(status["status"]["encryption"]["phase"], "EncryptionNeeded");
        self.event("Normal", "EncryptionNeeded").await;
        self.job_created_already_exists().await;
        self.event("Normal", "ReencryptionStarted").await;
    }

    async fn job_succeeded(&mut self, cluster: &Value) {
        let key = key_secret();
        let rolled = deployment(Some(&self.hash), Some(&self.rollout_started));
        self.observation(cluster, Some(&key), &rolled, &pods(Some(&self.hash)))
            .await;
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": self.job_name, "namespace": NS},
            "status": {"startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:02:00Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let started_job = self.job_name.clone();
        self.job_lookup(Some(&job)).await;
        assert_eq!(
            self.job_name, started_job,
            "the Job started before is looked up"
        );
        self.event("Normal", "ReencryptionSucceeded").await;
        let status = self.status_write("102", "103").await;
        assert_eq!(
            status["status"]["encryption"],
            json!({"phase": "Active", "activeKey": "secretbox/k1", "encryptedResources": ["secrets"]})
        );
        self.event("Normal", "Active").await;
    }

    async fn key_secret_missing(&mut self, cluster: &Value) {
        self.observation(cluster, None, &deployment(None, None), &pods(None))
            .await;
        let status = self.status_write("100", "101").await;
        assert!(
            status["status"].get("encryption").is_none(),
            "phase untouched: {status}"
        );
        let cond = &status["status"]["conditions"][CONDITION_ENCRYPTION_RECONCILED];
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "KeySecretMissing");
        assert!(
            cond["message"].as_str().unwrap().contains("key-secret"),
            "{cond}"
        );
        self.event("Warning", "KeySecretMissing").await;
    }

    async fn key_secret_still_missing(&mut self, cluster: &Value) {
        self.observation(cluster, None, &deployment(None, None), &pods(None))
            .await;
        let series = self.api.next().await;
        assert_eq!(series.method, Method::PATCH, "{}", series.uri);
        assert!(series.uri.starts_with(EVENTS), "{}", series.uri);
        assert_eq!(series.body["series"]["count"], 2);
        self.texts.push(series.body.to_string());
        series.echo();
    }

    async fn key_invalid(&mut self, cluster: &Value, secret: &Value) {
        self.observation(cluster, Some(secret), &deployment(None, None), &pods(None))
            .await;
        let status = self.status_write("100", "101").await;
        let cond = &status["status"]["conditions"][CONDITION_ENCRYPTION_RECONCILED];
        assert_eq!(cond["reason"], "KeyInvalid");
        assert!(cond["message"].as_str().unwrap().contains("k1"), "{cond}");
        self.event("Warning", "KeyInvalid").await;
    }

    async fn status_conflict(&mut self, cluster: &Value) {
        let key = key_secret();
        self.observation(cluster, Some(&key), &deployment(None, None), &pods(None))
            .await;
        self.api.expect(Method::PATCH, STATUS).await.status_error(
            409,
            "Conflict",
            "the object has been modified",
        );
    }

    // -----------------------------------------------------------------------------------
    // Steps: one request each (an observation is five), asserted and answered.
    // -----------------------------------------------------------------------------------

    /// The fresh reads of one reconcile: the Cluster, the config Secret (as last written),
    /// the key Secret (`None`: 404), the API server Deployment and its Pods by selector.
    async fn observation(
        &mut self,
        cluster: &Value,
        key: Option<&Value>,
        deployment: &Value,
        pods: &Value,
    ) {
        let api = &mut self.api;
        api.expect(Method::GET, CLUSTER).await.ok(cluster);
        let call = api.expect(Method::GET, CONFIG_SECRET).await;
        match &self.config_secret {
            Some(s) => call.ok(s),
            None => call.not_found("secrets"),
        }
        let call = api.expect(Method::GET, KEY_SECRET).await;
        match key {
            Some(s) => call.ok(s),
            None => call.not_found("secrets"),
        }
        api.expect(Method::GET, DEPLOYMENT).await.ok(deployment);
        let list = api.expect(Method::GET, PODS).await;
        assert_eq!(
            list.query("labelSelector").as_deref(),
            Some("app%3Dapiserver"),
            "{}",
            list.uri
        );
        list.ok(pods);
    }

    /// The GET of the re-encryption Job of the config in the Secret, answered with `job` or
    /// 404, then the list of that config's storage scans by label (none). Remembers the Job's
    /// name.
    async fn job_lookup(&mut self, job: Option<&Value>) {
        let call = self.api.next().await;
        assert_eq!(call.method, Method::GET);
        assert!(
            call.uri.starts_with(&format!("{JOBS}/eargate-reencrypt-")),
            "{}",
            call.uri
        );
        self.job_name = call.uri.rsplit('/').next().unwrap().to_owned();
        match job {
            Some(job) => call.ok(job),
            None => call.not_found("jobs"),
        }
        let scans = self.api.expect(Method::GET, JOBS).await;
        let selector = scans.query("labelSelector").unwrap_or_default();
        assert!(
            selector.starts_with("eargate.k8c.io%2Fpurpose%3Dstorage-scan%2Ceargate.k8c.io%2Fencryption-config-hash%3D"),
            "{}",
            scans.uri
        );
        scans
            .ok(&json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": []}));
    }

    /// A status write: through `/status`, a merge patch naming only status fields,
    /// preconditioned on the resourceVersion the plan was made from. Replies with the Cluster
    /// at `new_rv`; returns the patch.
    async fn status_write(&mut self, from_rv: &str, new_rv: &str) -> Value {
        let call = self.api.expect(Method::PATCH, STATUS).await;
        assert_eq!(call.content_type.as_deref(), Some(MERGE_PATCH));
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
        self.texts.push(call.body.to_string());
        let body = call.body.clone();
        let mut reply = cluster(body["status"].clone(), new_rv);
        reply["metadata"]["resourceVersion"] = json!(new_rv);
        call.ok(&reply);
        body
    }

    /// An Event on the Cluster, reported by this reconciler instance.
    async fn event(&mut self, type_: &str, reason: &str) {
        let call = self.api.expect(Method::POST, EVENTS).await;
        assert_eq!(call.body["type"], type_, "{}", call.body);
        assert_eq!(call.body["reason"], reason, "{}", call.body);
        assert_eq!(call.body["regarding"]["kind"], "Cluster");
        assert_eq!(call.body["regarding"]["name"], "c1");
        assert_eq!(call.body["reportingController"], names::RECONCILER_NAME);
        assert_eq!(call.body["reportingInstance"], "reconciler-0");
        self.texts.push(call.body.to_string());
        let body = call.body.clone();
        call.created(&body);
    }

    /// The config Secret does not exist: created once, labelled with its content hash,
    /// holding the key under its name. Remembers the Secret and the hash.
    async fn config_secret_created(&mut self) {
        let create = self.api.expect(Method::POST, SECRETS).await;
        assert_eq!(
            create.body["metadata"]["name"],
            names::DEFAULT_CONFIG_SECRET
        );
        assert_eq!(
            create.body["metadata"]["labels"][names::LABEL_MANAGED_BY],
            names::MANAGED_BY
        );
        self.hash = create.body["metadata"]["labels"][names::LABEL_CONFIG_HASH]
            .as_str()
            .unwrap()
            .to_owned();
        let yaml = unb64(
            create.body["data"][names::DEFAULT_CONFIG_SECRET_KEY]
                .as_str()
                .unwrap(),
        );
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
        let mut secret = create.body.clone();
        secret["metadata"]["namespace"] = json!(NS);
        create.created(&secret);
        self.config_secret = Some(secret);
    }

    /// The config Secret exists: patched in place (merge patch of data, labels and
    /// annotations). Remembers the new content and hash.
    async fn config_secret_patched(&mut self) {
        let patch = self.api.expect(Method::PATCH, CONFIG_SECRET).await;
        assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
        self.hash = patch.body["metadata"]["labels"][names::LABEL_CONFIG_HASH]
            .as_str()
            .unwrap()
            .to_owned();
        let secret = self
            .config_secret
            .as_mut()
            .expect("a patched Secret exists");
        secret["data"] = patch.body["data"].clone();
        secret["metadata"]["labels"] = patch.body["metadata"]["labels"].clone();
        secret["metadata"]["annotations"] = patch.body["metadata"]["annotations"].clone();
        patch.ok(secret);
    }

    /// The API server rolled by a merge patch of two annotations: the pod template's config
    /// hash (the config last written) and the rollout's start. Replies with the Deployment
    /// pointing at that hash, started at `started`.
    async fn api_server_rolled(&mut self, started: &str) {
        let roll = self.api.expect(Method::PATCH, DEPLOYMENT).await;
        assert_eq!(roll.content_type.as_deref(), Some(MERGE_PATCH));
        assert_eq!(
            roll.body["spec"]["template"]["metadata"]["annotations"][names::ANNOTATION_CONFIG_HASH],
            json!(self.hash)
        );
        assert!(roll.body["metadata"]["annotations"]["eargate.k8c.io/rollout-started"].is_string());
        assert_eq!(roll.body.as_object().unwrap().len(), 2, "{}", roll.body);
        roll.ok(&deployment(Some(&self.hash), Some(started)));
    }

    /// The Job is created under the name looked up before, with the configured image; the
    /// server answers 409 (it exists already).
    async fn job_created_already_exists(&mut self) {
        let create = self.api.expect(Method::POST, JOBS).await;
        assert_eq!(create.body["metadata"]["name"], json!(self.job_name));
        assert_eq!(
            create.body["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/eargate:test"
        );
        self.texts.push(create.body.to_string());
        let message = format!("jobs.batch \"{}\" already exists", self.job_name);
        create.status_error(409, "AlreadyExists", &message);
    }

    /// Fails if any text seen so far holds key material.
    fn assert_no_key_material_seen(&self, what: &str) {
        assert_no_key_material(self.texts.iter().map(|t| (what, t.as_str())));
    }
}

// ---------------------------------------------------------------------------------------
// Tests: sequences of scenarios.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn rolls_encryption_out_from_nothing_to_active() {
    let (logs, _guard) = logs::capture();
    let (client, api) = mock_client();
    let ctx = context(client);
    let mut server = FakeApiServer::new(api);

    let new = cluster(json!({"namespaceName": NS}), "100");
    let result = server
        .reconcile(&ctx, &new, Scenario::EnableFromNothing)
        .await;
    assert_eq!(result.unwrap(), Action::requeue(POLL));

    let pending = cluster(status_in("Pending"), "101");
    let result = server
        .reconcile(&ctx, &pending, Scenario::PromoteKeyAfterRollout)
        .await;
    assert_eq!(result.unwrap(), Action::requeue(POLL));

    let result = server
        .reconcile(&ctx, &pending, Scenario::StartReencryption)
        .await;
    assert_eq!(result.unwrap(), Action::requeue(POLL));

    let needed = cluster(status_in("EncryptionNeeded"), "102");
    let result = server
        .reconcile(&ctx, &needed, Scenario::JobSucceeded)
        .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    server.api.expect_silence(Duration::from_millis(100)).await;

    // The Job's run time is recorded.
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

    server.assert_no_key_material_seen("an Event, status write or Job");
    assert_no_key_material([("metrics", metrics.as_str())]);
    let logs = logs.text();
    assert!(
        logs.contains("rendered config created"),
        "logs were not captured:\n{logs}"
    );
    assert_no_key_material([("the logs", logs.as_str())]);
}

#[tokio::test]
async fn missing_key_secret_sets_condition_emits_event_and_backs_off() {
    let (logs, _guard) = logs::capture();
    let (client, api) = mock_client();
    let ctx = context(client);
    let mut server = FakeApiServer::new(api);

    let new = cluster(json!({"namespaceName": NS}), "100");
    let result = server
        .reconcile(&ctx, &new, Scenario::KeySecretMissing)
        .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err}");
    assert_eq!(err.metric_label(), "blocked");
    // Backoff grows per consecutive error of the same cluster.
    let c: Arc<Cluster> = Arc::new(serde_json::from_value(new.clone()).unwrap());
    assert_eq!(
        error_policy(c.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(c.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    server.api.expect_silence(Duration::from_millis(100)).await;
    assert!(ctx
        .metrics
        .encode()
        .contains(r#"eargate_reconcile_errors_total{error="blocked"} 1"#));

    // The Cluster now carries the condition the first status write set.
    let written: Value = serde_json::from_str(&server.texts[0]).unwrap();
    let condition = written["status"]["conditions"][CONDITION_ENCRYPTION_RECONCILED].clone();
    let blocked = cluster(
        json!({"namespaceName": NS, "conditions": {CONDITION_ENCRYPTION_RECONCILED: condition}}),
        "101",
    );
    let result = server
        .reconcile(&ctx, &blocked, Scenario::KeySecretStillMissing)
        .await;
    assert!(matches!(result, Err(Error::Blocked { .. })));

    server.assert_no_key_material_seen("an Event or status write");
    let logs = logs.text();
    assert!(logs.contains("blocked; retrying with backoff"), "{logs}");
    assert_no_key_material([("the logs", logs.as_str())]);
}

#[tokio::test]
async fn invalid_key_material_is_reported_by_key_name_only() {
    let (logs, _guard) = logs::capture();
    let (client, api) = mock_client();
    let ctx = context(client);
    let mut server = FakeApiServer::new(api);
    // 31 bytes: the key is refused, and its content must not appear anywhere.
    let short = b64(&RAW_KEY[..31]);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key-secret", "namespace": NS},
        "data": {"key": b64(short.as_bytes())}});

    let new = cluster(json!({"namespaceName": NS}), "100");
    let result = server
        .reconcile(&ctx, &new, Scenario::KeyInvalid { secret })
        .await;
    let err = result.unwrap_err();
    server.texts.push(err.to_string());
    let logs = logs.text();
    let raw = std::str::from_utf8(&RAW_KEY[..31]).expect("printable");
    let seen = server
        .texts
        .iter()
        .map(|t| ("an Event, status write or the error", t.as_str()));
    secrets::assert_no_key_material(
        &[short.as_str(), raw],
        seen.chain([("the logs", logs.as_str())]),
    );
}

#[tokio::test]
async fn status_conflict_is_an_error_and_nothing_else_is_written() {
    let (client, api) = mock_client();
    let ctx = context(client);
    let mut server = FakeApiServer::new(api);
    let new = cluster(json!({"namespaceName": NS}), "100");
    let result = server.reconcile(&ctx, &new, Scenario::StatusConflict).await;
    let err = result.unwrap_err();
    assert_eq!(err.metric_label(), "conflict", "{err}");
    server.api.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_deleted_cluster_is_forgotten() {
    let (client, api) = mock_client();
    let ctx = context(client);
    ctx.metrics.set_phase("c1", None);
    let mut server = FakeApiServer::new(api);
    let gone = cluster(json!({}), "1");
    let result = server
        .reconcile(&ctx, &gone, Scenario::ClusterDeleted)
        .await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(!ctx.metrics.encode().contains(r#"cluster="c1""#));
}
