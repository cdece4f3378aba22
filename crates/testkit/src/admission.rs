//! The admission server in process, for its tests: a real server on an ephemeral port with
//! freshly generated certificates, real TLS clients, and the checks kube-apiserver applies
//! to a webhook reply.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::logs::{capture_global_json, LogBuffer};
use crate::secrets::{unb64, B64};
use base64::Engine as _;
use eargate_admission::dev_certs::{self, DevCerts, Validity};
use eargate_admission::{PolicyReviewer, Reviewer, Running, ServeConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

/// Installs (once) a global subscriber writing JSON lines into a buffer, like
/// `eargate serve --log-format json`, and the TLS provider the clients use.
pub fn logs() -> LogBuffer {
    let buffer = capture_global_json();
    let _ = rustls::crypto::ring::default_provider().install_default();
    buffer
}

/// A running admission server with the real policy (or a test's reviewer).
pub struct TestServer {
    /// The server; `None` once a test took it to drain it.
    pub running: Option<Running>,
    /// `https://localhost:<port>`.
    pub base: String,
    /// `http://<admin address>/metrics`.
    pub metrics_url: String,
    /// A client trusting the server's CA.
    pub client: reqwest::Client,
    /// The CA and serving certificate it was started with.
    pub certs: DevCerts,
    /// Holds the certificate files.
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the real server with the real policy and the default config.
    pub async fn start() -> TestServer {
        Self::start_with(Arc::new(PolicyReviewer::default()), |_| {}).await
    }

    /// Starts the real server with the real policy and a config tweak.
    pub async fn start_configured(tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
        Self::start_with(Arc::new(PolicyReviewer::default()), tweak).await
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

    /// The running server (panics once a test took it).
    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// The HTTPS URL of `path`.
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

    /// Mutate, apply the patch, then validate the patched object, as kube-apiserver does:
    /// both replies.
    pub async fn mutate_then_validate(&self, review_in: &Value) -> (Value, Value) {
        let mutated = self.admit("/mutate", review_in).await;
        let mut second = review_in.clone();
        if let Some(object) = review_in["request"].get("object").filter(|o| !o.is_null()) {
            second["request"]["object"] = apply_patch(object, &mutated);
        }
        let validated = self.admit("/validate", &second).await;
        (mutated, validated)
    }

    /// The admin port's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(&self.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A development CA and a serving certificate for localhost, 127.0.0.1 and the chart's
/// webhook Service.
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

/// Writes the serving pair as `dir/tls.crt` and `dir/tls.key`; returns their paths.
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
            let raw = B64
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
        let raw = unb64(p);
        let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
        json_patch::patch(&mut out, &patch).expect("the patch applies");
    }
    out
}

/// A rustls client config trusting only the CAs in `ca_pems` (PEM), with the ring provider
/// eargate uses and no client certificate.
pub fn tls_client_config(ca_pems: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        roots
            .add(CertificateDer::from_pem_slice(pem).expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
