//! The admission server end to end: a real server on an ephemeral port, real TLS, every
//! reply checked with kube-apiserver's acceptance rules.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::Arc;
use std::time::Duration;

use eargate_admission::{PolicyReviewer, Reviewer};
use eargate_policy::{ReviewError, Reviewed, Webhook};
use eargate_testkit::admission::*;
use eargate_testkit::fixtures::{ClusterFixture, Review, RECONCILER, V1, V1BETA1};
use eargate_testkit::secrets::{assert_no_key_material, pem_body, test_key};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A DELETE of a plain Cluster: always allowed, the request of the transport tests.
fn delete_review() -> Value {
    Review::delete(&ClusterFixture::new("a").kubermatic().build())
        .user("u")
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_defaults_is_patched_then_allowed_in_both_versions() {
    let server = TestServer::start().await;
    for version in [V1, V1BETA1] {
        // No resources: the mutating webhook fills ["secrets"].
        let object = ClusterFixture::new("abcdefgh")
            .kubermatic()
            .encryption(["secrets"])
            .without_resources()
            .key("key-1", &test_key(1))
            .build();
        let r = Review::create(&object)
            .api_version(version)
            .user("someone@example.com")
            .build();
        let (mutated, validated) = server.mutate_then_validate(&r).await;
        assert_eq!(mutated["response"]["patchType"], "JSONPatch", "{mutated:#}");
        let patched = apply_patch(&object, &mutated);
        assert_eq!(
            patched["spec"]["encryptionConfiguration"]["resources"],
            json!(["secrets"])
        );
        // Nothing outside spec.encryptionConfiguration changed.
        let mut a = patched.clone();
        let mut b = object.clone();
        a["spec"]
            .as_object_mut()
            .unwrap()
            .remove("encryptionConfiguration");
        b["spec"]
            .as_object_mut()
            .unwrap()
            .remove("encryptionConfiguration");
        assert_eq!(a, b);
        assert_eq!(validated["response"]["allowed"], true, "{validated:#}");
        // Inline keys earn a warning.
        assert!(validated["response"]["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty()));

        // Already normal: no patch at all (patch and patchType both absent).
        let object = ClusterFixture::new("abcdefgh")
            .kubermatic()
            .encryption(["secrets"])
            .key("key-1", &test_key(1))
            .build();
        let r = Review::create(&object)
            .api_version(version)
            .user("someone@example.com")
            .build();
        let (mutated, validated) = server.mutate_then_validate(&r).await;
        assert!(
            mutated["response"].get("patch").is_none_or(Value::is_null),
            "{mutated:#}"
        );
        assert_eq!(validated["response"]["allowed"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_active_key_is_denied_with_403_in_both_versions() {
    let server = TestServer::start().await;
    for version in [V1, V1BETA1] {
        let old = ClusterFixture::new("abcdefgh")
            .kubermatic()
            .encryption(["secrets"])
            .key("key-1", &test_key(1))
            .key("key-2", &test_key(2))
            .initialized()
            .active("key-1")
            .build();
        let new = ClusterFixture::new("abcdefgh")
            .kubermatic()
            .encryption(["secrets"])
            .key("key-2", &test_key(2))
            .initialized()
            .active("key-1")
            .build();
        let r = Review::update(&old, &new)
            .api_version(version)
            .user("someone@example.com")
            .build();
        let (_, validated) = server.mutate_then_validate(&r).await;
        let resp = &validated["response"];
        assert_eq!(resp["allowed"], false, "{validated:#}");
        assert_eq!(resp["status"]["code"], 403);
        assert_eq!(resp["status"]["reason"], "Forbidden");
        let message = resp["status"]["message"].as_str().unwrap();
        assert!(message.contains("key-1"), "{message}");
        let audit = resp["auditAnnotations"]
            .as_object()
            .expect("audit annotations");
        assert!(
            audit.values().any(|v| v.as_str().unwrap().contains("EAR")),
            "{audit:?}"
        );

        // dryRun gets the same verdict.
        let r = Review::update(&old, &new)
            .api_version(version)
            .user("someone@example.com")
            .dry_run()
            .build();
        let dry = server.admit("/validate", &r).await;
        assert_eq!(dry["response"]["allowed"], false);
        assert_eq!(
            dry["response"]["status"]["message"],
            resp["status"]["message"]
        );
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"eargate_admission_requests_total{webhook="validate",operation="UPDATE",verdict="denied"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"eargate_admission_denials_total{webhook="validate",rule="EAR"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_only_the_reconciler_changes_encryption_status() {
    let server = TestServer::start().await;
    let cluster = || {
        ClusterFixture::new("abcdefgh")
            .kubermatic()
            .encryption(["secrets"])
            .key("key-1", &test_key(1))
            .key("key-2", &test_key(2))
            .initialized()
    };
    let old = cluster().active("key-1").build();
    let new = cluster().active("key-2").build();
    for version in [V1, V1BETA1] {
        let r = Review::update(&old, &new)
            .api_version(version)
            .status()
            .user("someone@example.com")
            .build();
        let (_, v) = server.mutate_then_validate(&r).await;
        assert_eq!(v["response"]["allowed"], false, "{v:#}");
        let r = Review::update(&old, &new)
            .api_version(version)
            .status()
            .user(RECONCILER)
            .build();
        let (_, v) = server.mutate_then_validate(&r).await;
        assert_eq!(v["response"]["allowed"], true, "{v:#}");
        // Other status edits stay allowed for anyone.
        let mut other = old.clone();
        other["status"]["phase"] = json!("Updating");
        let r = Review::update(&old, &other)
            .api_version(version)
            .status()
            .user("kubermatic-controller")
            .build();
        let (_, v) = server.mutate_then_validate(&r).await;
        assert_eq!(v["response"]["allowed"], true, "{v:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_allowed() {
    let server = TestServer::start().await;
    let old = ClusterFixture::new("abcdefgh")
        .kubermatic()
        .encryption(["secrets"])
        .key("key-1", &test_key(1))
        .initialized()
        .active("key-1")
        .build();
    for version in [V1, V1BETA1] {
        for dry_run in [false, true] {
            let r = {
                let r = Review::delete(&old)
                    .api_version(version)
                    .user("someone@example.com");
                if dry_run {
                    r.dry_run()
                } else {
                    r
                }
            }
            .build();
            let (m, v) = server.mutate_then_validate(&r).await;
            assert_eq!(m["response"]["allowed"], true);
            assert_eq!(v["response"]["allowed"], true);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_kind_is_allowed_with_a_warning() {
    let server = TestServer::start().await;
    let mut r = Review::create(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
    )
    .user("u")
    .build();
    r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    r["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "configmaps"});
    for path in ["/mutate", "/validate"] {
        let reply = server.admit(path, &r).await;
        assert_eq!(reply["response"]["allowed"], true);
        assert!(
            reply["response"]["warnings"]
                .as_array()
                .is_some_and(|w| !w.is_empty()),
            "{reply:#}"
        );
    }
    assert!(server
        .metrics()
        .await
        .contains("eargate_admission_foreign_kind_total"));
}

/// A raw TLS connection (HTTP/1.1 by hand) to control exactly what is sent.
async fn raw_tls(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = tls_client_config(&[server.certs.ca_cert_pem.as_bytes()]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

use rustls::pki_types::pem::PemObject as _;

/// A raw TLS connection on which `head` (and whatever of a body it holds) has been sent.
async fn raw_request(
    server: &TestServer,
    head: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = raw_tls(server).await;
    tls.write_all(head).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// What the server sends on `tls` until it has sent a whole head, closed, or `wait` passed.
async fn read_head(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    wait: Duration,
) -> (String, bool) {
    let mut got = Vec::new();
    let mut closed = false;
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 1024];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_trickle_a_request_are_cut_off() {
    let server =
        TestServer::start_configured(|c| c.request_read_timeout = Duration::from_millis(500)).await;

    // Headers that never end: the connection is closed, with nothing answered.
    let mut tls = raw_request(&server, b"POST /validate HTTP/1.1\r\nhost: localhost\r\n").await;
    let started = std::time::Instant::now();
    let (text, closed) = read_head(&mut tls, Duration::from_secs(5)).await;
    assert!(closed, "still open after {:?}: {text:?}", started.elapsed());
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");

    // A body that stops short of its length: 408, within the limit.
    let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"apiVersion\":";
    let mut tls = raw_request(&server, head.as_bytes()).await;
    let started = std::time::Instant::now();
    let (text, _) = read_head(&mut tls, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"code="408""#),
        "the 408 is counted:\n{metrics}"
    );

    // A client that keeps its pace is not affected.
    let (status, _) = server.post("/validate", &json!({"kind": "x"})).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_without_reading_the_rest() {
    let server = TestServer::start_configured(|c| c.max_body_bytes = 64 * 1024).await;

    // Declared too large: answered before any of the body is sent.
    let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n";
    let mut tls = raw_request(&server, head.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("413 comes without the body being sent")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    // Chunked (no length): cut off at the limit, answered while the client still sends.
    let mut tls = raw_tls(&server).await;
    let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
    for _ in 0..9 {
        // 72 KiB: over the limit, far from done (a real sender would go on).
        if tls.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tls.flush().await;
    let (text, _) = read_head(&mut tls, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    // Just under the limit is read and judged (400: it is not a review).
    let under = vec![b' '; 60 * 1024];
    let resp = server
        .client
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(under)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(server
        .metrics()
        .await
        .contains(r#"eargate_admission_rejected_requests_total{webhook="validate",code="413"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_over_tls_1_2_and_1_3() {
    let server = TestServer::start().await;
    let r = delete_review();
    // ALPN picks h2 for a client offering it.
    let resp = server
        .client
        .post(server.url("/validate"))
        .json(&r)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server.certs.ca_cert_pem.as_bytes()).unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    let resp = h1
        .post(server.url("/validate"))
        .json(&r)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status().as_u16(), 200);

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                rustls::pki_types::CertificateDer::from_pem_slice(
                    server.certs.ca_cert_pem.as_bytes(),
                )
                .unwrap(),
            )
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(server.running().addr)
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;
    let get = |p: &str| server.client.get(server.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    let r = delete_review();
    server.admit("/mutate", &r).await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("eargate_tls_certificate_expiry_timestamp_seconds"),
        "{metrics}"
    );
    let expiry: i64 = metrics
        .lines()
        .find(|l| l.starts_with("eargate_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|l| l.split(' ').nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        expiry > now + 300 * 86400 && expiry < now + 400 * 86400,
        "{expiry}"
    );
    assert!(
        metrics.contains(r#"eargate_admission_review_duration_seconds_count{webhook="mutate"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"eargate_admission_requests_total{webhook="mutate",operation="DELETE",verdict="allowed"} 1"#));
    let other = reqwest::get(server.metrics_url.replace("/metrics", "/other"))
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
}

/// Slow reviewer: holds the request so a drain can start while it is in flight.
struct Slow(PolicyReviewer, Duration);

impl Reviewer for Slow {
    fn review(&self, webhook: Webhook, body: &[u8]) -> Result<Reviewed, ReviewError> {
        std::thread::sleep(self.1);
        self.0.review(webhook, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_finishes_in_flight_requests_and_refuses_new_connections() {
    let mut server = TestServer::start_with(
        Arc::new(Slow(PolicyReviewer::default(), Duration::from_millis(1500))),
        |_| {},
    )
    .await;
    let r = delete_review();
    let in_flight = {
        let client = server.client.clone();
        let url = server.url("/validate");
        let body = r.clone();
        tokio::spawn(async move { client.post(url).json(&body).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readyz_client = client(&[&server.certs.ca_cert_pem], true);
    let started = std::time::Instant::now();
    server.running().begin_drain();
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(resp.status().as_u16(), 200);
    let reply: Value = resp.json().await.unwrap();
    check_reply(&r, &reply, false).unwrap();
    // New connections are refused once draining.
    let refused = readyz_client.get(server.url("/readyz")).send().await;
    assert!(refused.is_err() || refused.unwrap().status().as_u16() == 503);
    let running = server.running.take().unwrap();
    tokio::time::timeout(Duration::from_secs(11), running.wait())
        .await
        .expect("drain ends within the timeout")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_have_one_line_per_review_and_no_key_material() {
    let logs = logs();
    let server = TestServer::start().await;
    let secret_seeds = [101u64, 102, 103];
    let old = ClusterFixture::new("leakcheck")
        .kubermatic()
        .encryption(["secrets"])
        .key("key-a", &test_key(101))
        .key("key-b", &test_key(102))
        .initialized()
        .active("key-a")
        .build();
    // Changes key-a's value (denied: key material is immutable) and adds key-c.
    let new = ClusterFixture::new("leakcheck")
        .kubermatic()
        .encryption(["Secrets"])
        .key("key-a", &test_key(103))
        .key("key-b", &test_key(102))
        .initialized()
        .active("key-a")
        .build();
    let r = Review::update(&old, &new)
        .user("someone@example.com")
        .build();
    let uid = r["request"]["uid"].as_str().unwrap().to_string();
    let (_, v) = server.mutate_then_validate(&r).await;
    assert_eq!(v["response"]["allowed"], false, "{v:#}");
    let reply_text = v.to_string();

    // A body that makes a JSON parser quote a key value back.
    let mut bad = r.clone();
    bad["request"]["dryRun"] = json!(test_key(103));
    let (status, body) = server.post("/validate", &bad).await;
    assert_eq!(status, 400);
    let body = String::from_utf8_lossy(&body).into_owned();

    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&uid) && l.contains("\"message\":\"review\""))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one line per review (mutate + validate):\n{text}"
    );
    let line: Value = serde_json::from_str(lines[1]).unwrap();
    for field in ["uid", "operation", "name", "verdict", "rules", "latency_us"] {
        assert!(line.get(field).is_some(), "log line lacks {field}: {line}");
    }
    assert_eq!(line["verdict"], "denied");
    assert!(line["rules"].as_str().unwrap().contains("EAR"));

    let mut secrets: Vec<String> = secret_seeds.iter().map(|s| test_key(*s)).collect();
    secrets.push(pem_body(&server.certs.key_pem));
    secrets.push(pem_body(&server.certs.ca_key_pem));
    assert_no_key_material(
        &secrets,
        [
            ("the logs", &text),
            ("a 400 body", &body),
            ("the reply", &reply_text),
        ],
    );
    // The Display of the loaded certificate state must not leak either.
    assert!(!format!("{:?}", server.certs).contains("PRIVATE"));
}

/// An HTTP/2-only client (ALPN offers h2 alone, no HTTP/1.1 fallback), as kube-apiserver's
/// webhook client talks to a server that offers h2.
fn h2_client(server: &TestServer) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server.certs.ca_cert_pem.as_bytes()).unwrap(),
        )
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// 400, 413 and 415 over HTTP/2 are whole HTTP responses with a body that explains, not
/// stream resets: also when the server answers before the client has sent all of a body
/// bigger than HTTP/2's flow-control window, and with more requests on the same connection
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bad_requests_get_real_400_413_415_responses() {
    let server = TestServer::start_configured(|c| c.max_body_bytes = 64 * 1024).await;
    let h2 = h2_client(&server);
    let good = delete_review();
    let good = serde_json::to_vec(&good).unwrap();
    // Valid JSON text up to the limit and beyond: an array of numbers.
    let json_of = |len: usize| {
        let mut v = b"[0".to_vec();
        while v.len() < len - 1 {
            v.extend_from_slice(b",0");
        }
        v.push(b']');
        v
    };
    let mut malformed_big = b"{\"apiVersion\":".to_vec();
    malformed_big.resize(60 * 1024, b' ');
    let cases = vec![
        (
            "malformed JSON",
            Some("application/json"),
            b"{this is not json".to_vec(),
            400,
            "not a JSON AdmissionReview",
        ),
        (
            "truncated JSON near the limit",
            Some("application/json"),
            malformed_big,
            400,
            "not a JSON AdmissionReview",
        ),
        (
            "not a review",
            Some("application/json"),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"1"}}"#.to_vec(),
            400,
            "expected kind AdmissionReview",
        ),
        (
            "wrong content type, small",
            Some("text/plain"),
            good.clone(),
            415,
            "Content-Type: application/json",
        ),
        (
            "wrong content type, 1 MiB",
            Some("application/yaml"),
            json_of(1024 * 1024),
            415,
            "Content-Type: application/json",
        ),
        (
            "no content type, 1 MiB",
            None,
            json_of(1024 * 1024),
            415,
            "Content-Type: application/json",
        ),
        (
            "just over the limit",
            Some("application/json"),
            json_of(64 * 1024 + 1),
            413,
            "--max-body-bytes",
        ),
        (
            "1 MiB over the limit",
            Some("application/json"),
            json_of(1024 * 1024),
            413,
            "--max-body-bytes",
        ),
        (
            "8 MiB over the limit",
            Some("application/json"),
            json_of(8 * 1024 * 1024),
            413,
            "--max-body-bytes",
        ),
    ];
    for round in 0..2 {
        for path in ["/validate", "/mutate"] {
            for (what, content_type, body, code, explains) in &cases {
                let mut req = h2.post(server.url(path)).body(body.clone());
                if let Some(ct) = content_type {
                    req = req.header("content-type", *ct);
                }
                let resp = match req.send().await {
                    Ok(resp) => resp,
                    Err(err) => {
                        panic!("{what} on {path} (round {round}): no HTTP response: {err:?}")
                    }
                };
                assert_eq!(resp.version(), reqwest::Version::HTTP_2, "{what}");
                assert_eq!(resp.status().as_u16(), *code, "{what} on {path}");
                let text = match resp.text().await {
                    Ok(text) => text,
                    Err(err) => panic!("{what} on {path}: the body was cut off: {err:?}"),
                };
                assert!(
                    text.contains(explains) && text.len() < 300,
                    "{what} on {path}: {text:?}"
                );
                // The connection is still good for a real review.
                let ok = h2
                    .post(server.url(path))
                    .header("content-type", "application/json")
                    .body(good.clone())
                    .send()
                    .await
                    .unwrap_or_else(|err| panic!("after {what} on {path}: {err:?}"));
                assert_eq!(ok.status().as_u16(), 200, "after {what} on {path}");
            }
        }
    }
    let metrics = server.metrics().await;
    for code in ["400", "413", "415"] {
        assert!(
            metrics.contains(&format!(
                r#"eargate_admission_rejected_requests_total{{webhook="validate",code="{code}"}}"#
            )),
            "{metrics}"
        );
    }
}

/// One HTTP/2 frame as read off the wire.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends one request on a fresh HTTP/2 connection, frame by frame (HPACK literals without
/// indexing), with `body` in DATA frames that do NOT end the stream: the client is still
/// sending when the server answers. Returns every frame the server sent on stream 1 (and
/// GOAWAY) within a second after the last one.
async fn h2_raw_request(server: &TestServer, headers: &[(&str, &str)], body: &[u8]) -> Vec<Frame> {
    let mut config = tls_client_config(&[server.certs.ca_cert_pem.as_bytes()]);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[])); // SETTINGS
    let mut block = Vec::new();
    for (name, value) in headers {
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0); // literal without indexing, new name
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    out.extend(h2_frame(HEADERS, 0x4, 1, &block)); // END_HEADERS
                                                   // Within the initial 64 KiB flow-control window.
    for chunk in body.chunks(16 * 1024) {
        out.extend(h2_frame(DATA, 0, 1, chunk));
    }
    tls.write_all(&out).await.unwrap();
    tls.flush().await.unwrap();
    let mut wire = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&buf[..n]);
    }
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= wire.len() {
        let len = (usize::from(wire[at]) << 16)
            | (usize::from(wire[at + 1]) << 8)
            | usize::from(wire[at + 2]);
        let stream = u32::from_be_bytes(wire[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        let frame = Frame {
            kind: wire[at + 3],
            flags: wire[at + 4],
            stream,
            payload: wire[at + 9..(at + 9 + len).min(wire.len())].to_vec(),
        };
        if frame.stream == 1 || frame.kind == GOAWAY {
            frames.push(frame);
        }
        at += 9 + len;
    }
    frames
}

/// At the frame level: the 413 and 415 that the server sends while the client is still
/// sending its body are a HEADERS frame and DATA ending the stream, with the explanation;
/// only after that whole response may the server ask the client to stop sending, and only
/// with RST_STREAM(NO_ERROR) (RFC 9113 §8.1), never a reset instead of the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_early_replies_end_the_stream_before_any_reset() {
    let server = TestServer::start_configured(|c| c.max_body_bytes = 1024).await;
    let base = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/validate"),
        (":authority", "localhost"),
    ];
    let body = vec![b' '; 40 * 1024];
    let cases = vec![
        (
            "wrong content type",
            vec![("content-type", "text/plain"), ("content-length", "40960")],
            "Content-Type: application/json",
        ),
        (
            "declared over the limit",
            vec![
                ("content-type", "application/json"),
                ("content-length", "104857600"),
            ],
            "--max-body-bytes",
        ),
        (
            "no length, over the limit",
            vec![("content-type", "application/json")],
            "--max-body-bytes",
        ),
    ];
    for (what, extra, explains) in cases {
        let headers: Vec<(&str, &str)> = base.iter().copied().chain(extra).collect();
        let frames = h2_raw_request(&server, &headers, &body).await;
        let ends = frames
            .iter()
            .position(|f| (f.kind == DATA || f.kind == HEADERS) && f.flags & END_STREAM != 0)
            .unwrap_or_else(|| panic!("{what}: the response never ended the stream: {frames:?}"));
        let before = &frames[..=ends];
        assert!(
            before
                .iter()
                .all(|f| f.kind != RST_STREAM && f.kind != GOAWAY),
            "{what}: reset before the response: {frames:?}"
        );
        assert_eq!(before[0].kind, HEADERS, "{what}: {frames:?}");
        let text: Vec<u8> = before
            .iter()
            .filter(|f| f.kind == DATA)
            .flat_map(|f| f.payload.clone())
            .collect();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains(explains), "{what}: {text:?}");
        for f in &frames[ends + 1..] {
            assert!(
                f.kind == RST_STREAM && f.payload == [0, 0, 0, 0],
                "{what}: after the response only RST_STREAM(NO_ERROR) may follow: {f:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_on_the_metrics_port_too() {
    let server = TestServer::start().await;
    let metrics_base = server.metrics_url.trim_end_matches("/metrics").to_string();
    let get = |path: &str| reqwest::get(format!("{metrics_base}{path}"));
    let healthz = get("/healthz").await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
    assert_eq!(healthz.text().await.unwrap().trim(), "ok");
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    let other = get("/other").await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    assert!(other.text().await.unwrap().contains("/readyz"));
    // Readiness follows the admission port's: false once shutting down, health stays.
    server.running().begin_drain();
    let readyz = get("/readyz").await.unwrap();
    assert_eq!(readyz.status().as_u16(), 503);
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
}

/// The shutdown sequence in process: readiness false at once on both ports, new
/// connections and requests still served for the whole delay, then the port closes and
/// `shutdown` returns once drained. A resolved `skip_delay` ends the delay early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_serving_for_the_delay_then_drains() {
    let delay = Duration::from_secs(3);
    let mut server = TestServer::start_configured(|c| c.shutdown_delay = delay).await;
    assert_eq!(server.running().shutdown_delay(), delay);
    let r = delete_review();
    // A kept HTTP/2 connection, and a client with a new connection for every request.
    let kept = server.client.clone();
    let fresh = client(&[&server.certs.ca_cert_pem], true);
    assert_eq!(
        kept.post(server.url("/validate"))
            .json(&r)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let readyz_metrics = server.metrics_url.replace("/metrics", "/readyz");
    let running = server.running.take().unwrap();
    let started = std::time::Instant::now();
    let shutdown = tokio::spawn(running.shutdown(std::future::pending()));
    let mut served = 0;
    while started.elapsed() < delay - Duration::from_secs(1) {
        for c in [&kept, &fresh] {
            let resp = c.post(server.url("/validate")).json(&r).send().await;
            let resp = resp.unwrap_or_else(|e| panic!("failed during the delay: {e:?}"));
            assert_eq!(resp.status(), 200);
            check_reply(&r, &resp.json().await.unwrap(), false).unwrap();
            served += 1;
        }
        let ready = fresh.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 503);
        assert_eq!(ready.text().await.unwrap(), "shutting down\n");
        let ready = reqwest::get(&readyz_metrics).await.unwrap();
        assert_eq!(ready.status().as_u16(), 503);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 0);
    tokio::time::timeout(Duration::from_secs(15), shutdown)
        .await
        .expect("the drain ends within its timeout")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= delay);
    assert!(fresh.get(server.url("/healthz")).send().await.is_err());

    // skip_delay cuts a long delay short.
    let mut server =
        TestServer::start_configured(|c| c.shutdown_delay = Duration::from_secs(600)).await;
    let running = server.running.take().unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        running.shutdown(tokio::time::sleep(Duration::from_millis(200))),
    )
    .await
    .expect("the delay was skipped")
    .unwrap();
}
