//! Shared by the integration tests: a real server on an ephemeral port with freshly
//! generated certificates, a real TLS client, Cluster/AdmissionReview fixtures, the
//! checks kube-apiserver applies to a webhook reply, and log capture.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use eargate_admission::dev_certs::{self, DevCerts, Validity};
use eargate_admission::{PolicyReviewer, Reviewer, Running, ServeConfig};
use serde_json::{json, Value};

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";
pub const RECONCILER: &str = "system:serviceaccount:eargate-system:eargate-reconciler";

// ------------------------------------------------------------------ logs

/// Every log line of this test process, as the server wrote them.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global subscriber writing JSON lines into a buffer, like
/// `eargate serve --log-format json`.
pub fn logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .init();
        let _ = rustls::crypto::ring::default_provider().install_default();
        buffer
    })
    .clone()
}

// ------------------------------------------------------------------ server

pub struct TestServer {
    pub running: Option<Running>,
    pub base: String,
    pub metrics_url: String,
    pub client: reqwest::Client,
    pub certs: DevCerts,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Arc::new(PolicyReviewer::default()), |_| {}).await
    }

    /// Starts the real server with `reviewer` (fault injection) and a config tweak.
    pub async fn start_with(
        reviewer: Arc<dyn Reviewer>,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> TestServer {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs();
        let (cert, key) = write_pair(dir.path(), &certs);
        let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), cert, key);
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        tweak(&mut config);
        let running = eargate_admission::start(config, reviewer).await.unwrap();
        let base = format!("https://localhost:{}", running.addr.port());
        let metrics_url = format!("http://{}/metrics", running.metrics_addr.unwrap());
        let client = client(&[&certs.ca_cert_pem], false);
        TestServer {
            running: Some(running),
            base,
            metrics_url,
            client,
            certs,
            dir,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a review and returns the status and body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Vec<u8>) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    /// POSTs a review, asserts 200 and kube-apiserver's acceptance rules, returns the reply.
    pub async fn admit(&self, path: &str, review: &Value) -> Value {
        let (status, body) = self.post(path, review).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let reply: Value = serde_json::from_slice(&body).expect("reply is JSON");
        if let Err(err) = check_reply(review, &reply, path == "/mutate") {
            panic!("kube-apiserver would reject this reply: {err}\n{reply:#}");
        }
        reply
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(&self.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

pub fn make_certs() -> DevCerts {
    dev_certs::generate(
        &[
            "localhost".into(),
            "eargate-webhook.eargate-system.svc".into(),
        ],
        &["127.0.0.1".parse().unwrap()],
        Validity::default(),
    )
    .unwrap()
}

pub fn write_pair(dir: &Path, certs: &DevCerts) -> (PathBuf, PathBuf) {
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, &certs.cert_pem).unwrap();
    std::fs::write(&key, &certs.key_pem).unwrap();
    (cert, key)
}

/// A TLS client trusting only the given CAs; `fresh_connections` disables keep-alive
/// pooling so every request does a new handshake.
pub fn client(cas: &[&str], fresh_connections: bool) -> reqwest::Client {
    logs();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(std::time::Duration::from_secs(20));
    for ca in cas {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    if fresh_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().unwrap()
}

// ------------------------------------------------------------------ fixtures

/// Deterministic, random-looking 32-byte key, base64 (so substring checks mean something).
pub fn key_value(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = [0u8; 32];
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn inline_key(name: &str, seed: u64) -> Value {
    json!({"name": name, "value": key_value(seed)})
}

/// A real-sized Cluster (~6 KB of JSON with the usual unrelated fields).
pub fn cluster(name: &str, encryption: Option<Value>, status_encryption: Option<Value>) -> Value {
    let mut spec = json!({
        "humanReadableName": format!("{name} production"),
        "version": "1.31.4",
        "exposeStrategy": "NodePort",
        "enableUserSSHKeyAgent": true,
        "enableOperatingSystemManager": true,
        "kubernetesDashboard": {"enabled": true},
        "features": {"encryptionAtRest": true, "apiserverNetworkPolicy": true, "ccmClusterName": true, "externalCloudProvider": true},
        "cloud": {"dc": "europe-west3-c", "providerName": "gcp",
                  "gcp": {"network": "global/networks/default", "subnetwork": "", "nodePortsAllowedIPRanges": {"cidrBlocks": ["0.0.0.0/0"]},
                          "credentialsReference": {"name": "credential-gcp-abcdefgh", "namespace": "kubermatic", "key": "serviceAccount"}}},
        "clusterNetwork": {"ipFamily": "IPv4", "pods": {"cidrBlocks": ["172.25.0.0/16"]}, "services": {"cidrBlocks": ["10.240.16.0/20"]},
                           "dnsDomain": "cluster.local", "proxyMode": "ipvs", "ipvs": {"strictArp": true},
                           "nodeLocalDNSCacheEnabled": true, "konnectivityEnabled": true, "tunnelingAgentIP": "100.64.30.10"},
        "cniPlugin": {"type": "cilium", "version": "1.16.6"},
        "componentsOverride": {
            "apiserver": {"replicas": 2, "endpointReconcilingDisabled": false, "nodePortRange": "30000-32767",
                          "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "4Gi"}}},
            "controllerManager": {"replicas": 1, "leaderElection": {"leaseDurationSeconds": 15, "renewDeadlineSeconds": 10, "retryPeriodSeconds": 2},
                                  "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}},
            "scheduler": {"replicas": 1, "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
            "etcd": {"clusterSize": 3, "diskSize": "5Gi", "storageClass": "kubermatic-fast",
                     "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}},
            "prometheus": {"resources": {"requests": {"cpu": "100m", "memory": "400Mi"}}},
            "konnectivityProxy": {"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}
        },
        "oidc": {"issuerURL": "https://dex.example.com/dex", "clientID": "kubermatic", "usernameClaim": "email", "groupsClaim": "groups"},
        "auditLogging": {"enabled": true, "policyPreset": "metadata", "sidecar": {"resources": {"requests": {"cpu": "10m"}}}},
        "admissionPlugins": ["PodNodeSelector", "EventRateLimit", "PodSecurity"],
        "eventRateLimitConfig": {"server": {"qps": 50, "burst": 100}, "namespace": {"qps": 10, "burst": 20, "cacheSize": 4096}},
        "machineNetworks": [],
        "mla": {"monitoringEnabled": true, "loggingEnabled": true},
        "containerRuntime": "containerd",
        "apiServerAllowedIPRanges": {"cidrBlocks": ["10.0.0.0/8", "192.168.0.0/16"]},
        "debugLog": false
    });
    if let Some(enc) = encryption {
        spec["encryptionConfiguration"] = enc;
    }
    let mut conditions = json!({
        "ClusterControllerReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z", "lastTransitionTime": "2025-01-10T10:00:00Z"},
        "AddonControllerReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z"},
        "MachineDeploymentReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z"},
        "MonitoringControllerReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z"},
        "SeedResourcesUpToDate": {"status": "True", "kubermaticVersion": "v2.26.2", "reason": "Ready", "message": "All control plane components are up to date", "lastHeartbeatTime": "2025-01-10T10:00:00Z"}
    });
    let mut status = json!({
        "address": {"url": "https://abcdefgh.europe-west3-c.dev.example.com:30543", "port": 30543, "externalName": "abcdefgh.europe-west3-c.dev.example.com", "internalURL": "apiserver-external.cluster-abcdefgh.svc.cluster.local.", "ip": "34.159.1.2"},
        "namespaceName": format!("cluster-{name}"),
        "userEmail": "someone@example.com",
        "phase": "Running",
        "versions": {"controlPlane": "1.31.4", "apiserver": "1.31.4", "controllerManager": "1.31.4", "scheduler": "1.31.4"},
        "extendedHealth": {"apiserver": "HealthStatusUp", "scheduler": "HealthStatusUp", "controller": "HealthStatusUp", "machineController": "HealthStatusUp",
                           "etcd": "HealthStatusUp", "openvpn": "HealthStatusUp", "cloudProviderInfrastructure": "HealthStatusUp", "userClusterControllerManager": "HealthStatusUp",
                           "konnectivity": "HealthStatusUp", "mlaGateway": "HealthStatusUp", "operatingSystemManager": "HealthStatusUp", "kubernetesDashboard": "HealthStatusUp"},
        "lastProviderReconciliation": "2025-01-10T10:00:00Z",
        "resourceUsage": {"cpu": "8", "memory": "32Gi", "storage": "200Gi"}
    });
    if let Some(enc) = status_encryption {
        conditions["EncryptionInitialized"] = json!({"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z", "lastTransitionTime": "2025-01-10T10:00:00Z"});
        status["encryption"] = enc;
    }
    status["conditions"] = conditions;
    json!({
        "apiVersion": "kubermatic.k8c.io/v1",
        "kind": "Cluster",
        "metadata": {
            "name": name,
            "uid": "3f6c5f0e-3d6a-4d8e-9a39-4b2b9d1f7c11",
            "resourceVersion": "184467",
            "generation": 42,
            "creationTimestamp": "2025-01-10T09:00:00Z",
            "labels": {"project-id": "xyz123abc", "worker-name": "", "environment": "production", "team": "platform"},
            "annotations": {"kubermatic.io/initial-application-installations-request": "[]", "presetName": "", "user": "someone@example.com"},
            "finalizers": ["kubermatic.k8c.io/cleanup-credentials-secrets", "kubermatic.k8c.io/cleanup-namespace", "kubermatic.k8c.io/cleanup-usersshkeys-cluster-ids", "kubermatic.k8c.io/cleanup-etcdbackupconfig"],
            "ownerReferences": [{"apiVersion": "kubermatic.k8c.io/v1", "kind": "User", "name": "0123456789abcdef", "uid": "c6b1d2e0-1111-2222-3333-444455556666"}],
            "managedFields": [{"manager": "kubermatic-api", "operation": "Update", "apiVersion": "kubermatic.k8c.io/v1", "time": "2025-01-10T09:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:project-id": {}}}, "f:spec": {".": {}, "f:cloud": {}, "f:version": {}}}}]
        },
        "spec": spec,
        "status": status
    })
}

pub fn enc(keys: Vec<Value>, resources: Option<Vec<&str>>) -> Value {
    let mut e = json!({"enabled": true, "secretbox": {"keys": keys}});
    if let Some(r) = resources {
        e["resources"] = json!(r);
    }
    e
}

pub fn active(key: &str) -> Value {
    json!({"phase": "Active", "activeKey": format!("secretbox/{key}"), "encryptedResources": ["secrets"]})
}

static UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An AdmissionReview as kube-apiserver sends it for a Cluster.
pub fn review(
    version: &str,
    operation: &str,
    object: Option<&Value>,
    old: Option<&Value>,
    subresource: Option<&str>,
    user: &str,
    dry_run: bool,
) -> Value {
    let n = UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = object
        .or(old)
        .map(|o| o["metadata"]["name"].clone())
        .unwrap_or(json!("x"));
    let mut req = json!({
        "uid": format!("705ab4f5-6393-11e8-b7cc-{n:012x}"),
        "kind": {"group": "kubermatic.k8c.io", "version": "v1", "kind": "Cluster"},
        "resource": {"group": "kubermatic.k8c.io", "version": "v1", "resource": "clusters"},
        "requestKind": {"group": "kubermatic.k8c.io", "version": "v1", "kind": "Cluster"},
        "requestResource": {"group": "kubermatic.k8c.io", "version": "v1", "resource": "clusters"},
        "name": name,
        "operation": operation,
        "userInfo": {"username": user, "uid": "014fbff9a07c", "groups": ["system:authenticated", "kubermatic:project-xyz123abc"]},
        "object": object,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": if operation == "CREATE" { "CreateOptions" } else if operation == "DELETE" { "DeleteOptions" } else { "UpdateOptions" }}
    });
    if let Some(sub) = subresource {
        req["subResource"] = json!(sub);
        req["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": version, "kind": "AdmissionReview", "request": req})
}

// ------------------------------------------------------------------ kube-apiserver's rules

/// The checks kube-apiserver makes on a webhook reply before it uses it
/// (k8s.io/apiserver admission webhook `VerifyAdmissionResponse`), made strict for both
/// versions, plus eargate's own promises (403 Forbidden with a message on denial).
pub fn check_reply(request: &Value, reply: &Value, mutating: bool) -> Result<(), String> {
    let version = request["apiVersion"].as_str().unwrap();
    if reply["apiVersion"] != request["apiVersion"] {
        return Err(format!(
            "expected webhook response of {version}, got {}",
            reply["apiVersion"]
        ));
    }
    if reply["kind"] != "AdmissionReview" {
        return Err(format!(
            "expected kind AdmissionReview, got {}",
            reply["kind"]
        ));
    }
    let resp = reply
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    if resp["uid"] != request["request"]["uid"] {
        return Err(format!(
            "expected response.uid={}, got {}",
            request["request"]["uid"], resp["uid"]
        ));
    }
    let allowed = resp["allowed"]
        .as_bool()
        .ok_or("response.allowed missing or not a bool")?;
    let patch = resp.get("patch").filter(|p| !p.is_null());
    let patch_type = resp.get("patchType").filter(|p| !p.is_null());
    match (mutating, patch, patch_type) {
        (_, None, None) => {}
        (false, _, _) => {
            return Err(
                "validating webhook may not return response.patch or response.patchType".into(),
            )
        }
        (true, Some(_), None) => {
            return Err("webhook returned response.patch but not response.patchType".into())
        }
        (true, None, Some(_)) => {
            return Err("webhook returned response.patchType but not response.patch".into())
        }
        (true, Some(p), Some(t)) => {
            if t != "JSONPatch" {
                return Err(format!(
                    "webhook returned invalid response.patchType of {t}"
                ));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p.as_str().ok_or("patch is not a string")?)
                .map_err(|e| format!("patch is not base64: {e}"))?;
            serde_json::from_slice::<json_patch::Patch>(&raw)
                .map_err(|e| format!("patch is not RFC 6902: {e}"))?;
        }
    }
    if mutating && !allowed {
        return Err("the mutating webhook denied".into());
    }
    if !allowed {
        let status = &resp["status"];
        if status["code"] != 403 || status["reason"] != "Forbidden" {
            return Err(format!("denial without 403 Forbidden status: {status}"));
        }
        if status["message"].as_str().is_none_or(str::is_empty) {
            return Err("denial without a message".into());
        }
    }
    if let Some(w) = resp.get("warnings").filter(|w| !w.is_null()) {
        let all_strings = w.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !all_strings {
            return Err("warnings must be a list of strings".into());
        }
    }
    if let Some(a) = resp.get("auditAnnotations").filter(|a| !a.is_null()) {
        let map = a.as_object().ok_or("auditAnnotations must be a map")?;
        for (k, v) in map {
            let ok_key = !k.is_empty()
                && k.len() <= 63
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && k.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok_key || !v.is_string() {
                return Err(format!("invalid audit annotation {k}={v}"));
            }
        }
    }
    Ok(())
}

/// Applies a mutating reply's patch to the request object, as kube-apiserver does.
pub fn apply_patch(object: &Value, reply: &Value) -> Value {
    let mut out = object.clone();
    if let Some(p) = reply["response"]["patch"].as_str() {
        let raw = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
        json_patch::patch(&mut out, &patch).expect("the patch applies");
    }
    out
}

/// Fails when any 12-character piece of any secret appears in `haystack`: one pass over
/// the text with a set of every window, so megabytes of logs stay cheap to check.
pub fn assert_no_secret(what: &str, haystack: &str, secrets: &[String]) {
    let set: std::collections::HashSet<&[u8]> = secrets
        .iter()
        .flat_map(|s| s.as_bytes().windows(12.min(s.len())))
        .collect();
    if let Some(hit) = haystack.as_bytes().windows(12).find(|w| set.contains(w)) {
        panic!(
            "key material in {what}: {:?}",
            String::from_utf8_lossy(&hit[..4])
        );
    }
}

/// The base64 body of a PEM private key (what must never be logged).
pub fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}
