//! The HTTP edge against the router itself (`oneshot`, no TLS, no socket): what is turned
//! away before the policy sees a byte, and what a panic costs.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use eargate_policy::{ReviewError, Reviewed, Webhook};
use tower::ServiceExt as _;

use super::{is_json, router};
use crate::dev_certs::{self, Validity};
use crate::handler::{AppState, PolicyReviewer, Reviewer};
use crate::metrics::Metrics;
use crate::tls::{self, CertStore};

const LIMIT: usize = 4096;

/// A DELETE of a Cluster: always allowed, so a 200 means the edge let it through.
const DELETE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"kubermatic.k8c.io","version":"v1","kind":"Cluster"},"resource":{"group":"kubermatic.k8c.io","version":"v1","resource":"clusters"},"name":"a","operation":"DELETE","userInfo":{"username":"alice"},"oldObject":{"apiVersion":"kubermatic.k8c.io/v1","kind":"Cluster","metadata":{"name":"a"},"spec":{}}}}"#;

/// Panics on a marker in the body, otherwise decides like the real policy.
struct PanicOnMarker(PolicyReviewer);

impl Reviewer for PanicOnMarker {
    fn review(&self, webhook: Webhook, body: &[u8]) -> Result<Reviewed, ReviewError> {
        if body.windows(12).any(|w| w == b"PANIC-MARKER") {
            panic!("injected fault");
        }
        self.0.review(webhook, body)
    }
}

fn state() -> Arc<AppState> {
    let certs = dev_certs::generate(&["localhost".into()], &[], Validity::default()).unwrap();
    let provider = tls::provider();
    let pair = tls::parse_pair(
        certs.cert_pem.as_bytes(),
        certs.key_pem.as_bytes(),
        "tls.crt".as_ref(),
        "tls.key".as_ref(),
        &provider,
    )
    .unwrap();
    Arc::new(AppState {
        reviewer: Arc::new(PanicOnMarker(PolicyReviewer::default())),
        metrics: Arc::new(Metrics::new()),
        store: Arc::new(CertStore::new(&pair)),
        shutting_down: AtomicBool::new(false),
        max_body_bytes: LIMIT,
        request_read_timeout: Duration::from_millis(200),
    })
}

/// Sends one request through a fresh router over `state`; the status and the body text.
async fn send(state: &Arc<AppState>, request: Request<Body>) -> (StatusCode, String) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn post(path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post(path);
    if let Some(ct) = content_type {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    request.body(body.into()).unwrap()
}

fn counted(state: &AppState, webhook: &str, code: u16) -> bool {
    state.metrics.encode().contains(&format!(
        r#"eargate_admission_rejected_requests_total{{webhook="{webhook}",code="{code}"}} 1"#
    ))
}

#[test]
fn content_type_accepts_json_with_parameters_only() {
    let mut h = HeaderMap::new();
    assert!(!is_json(&h));
    for (value, json) in [
        ("application/json", true),
        ("Application/JSON; charset=utf-8", true),
        ("application/yaml", false),
        ("text/plain", false),
        ("application/jsonx", false),
    ] {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        assert_eq!(is_json(&h), json, "{value}");
    }
}

#[tokio::test]
async fn a_review_passes_the_edge() {
    let state = state();
    for path in ["/mutate", "/validate"] {
        for ct in ["application/json", "application/json; charset=utf-8"] {
            let (status, body) = send(&state, post(path, Some(ct), DELETE)).await;
            assert_eq!(status, StatusCode::OK, "{path} {ct}: {body}");
            assert!(body.contains(r#""allowed":true"#), "{body}");
        }
    }
}

#[tokio::test]
async fn wrong_content_type_is_415_before_the_body_is_read() {
    let state = state();
    for ct in [Some("text/plain"), Some("application/yaml"), None] {
        let (status, body) = send(&state, post("/validate", ct, DELETE)).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert!(body.contains("Content-Type: application/json"), "{body}");
    }
    assert!(state
        .metrics
        .encode()
        .contains(r#"eargate_admission_rejected_requests_total{webhook="validate",code="415"} 3"#));
}

#[tokio::test]
async fn oversized_bodies_are_413_declared_or_streamed() {
    let state = state();
    let big = vec![b' '; LIMIT + 1];
    // Declared too large: refused from the header alone.
    let mut declared = post("/mutate", Some("application/json"), big.clone());
    declared.headers_mut().insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&(LIMIT + 1).to_string()).unwrap(),
    );
    let (status, body) = send(&state, declared).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains(&format!("limit of {LIMIT} bytes")), "{body}");
    assert!(counted(&state, "mutate", 413));
    // Without a length (chunked): stopped at the first chunk over the limit.
    let chunks = futures::stream::iter(
        big.chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let streamed = post(
        "/validate",
        Some("application/json"),
        Body::from_stream(chunks),
    );
    let (status, _) = send(&state, streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Exactly at the limit is read (and is then no review: 400).
    let (status, _) = send(
        &state,
        post("/validate", Some("application/json"), vec![b' '; LIMIT]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let state = state();
    let never = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let (status, body) = send(
        &state,
        post(
            "/mutate",
            Some("application/json"),
            Body::from_stream(never),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(counted(&state, "mutate", 408));
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let state = state();
    for path in ["/", "/mutate/x", "/metrics", "/validating"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let (status, body) = send(&state, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body.contains("POST /validate"), "{body}");
    }
    for (method, path) in [
        (Method::GET, "/mutate"),
        (Method::GET, "/validate"),
        (Method::PUT, "/validate"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/readyz"),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let (status, _) = send(&state, request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
}

#[tokio::test]
async fn bad_input_gets_400_with_a_short_message() {
    let state = state();
    let cases: [(&str, &[u8]); 5] = [
        ("not json", b"{this is not json"),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        ),
        (
            "wrong kind",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"1"}}"#,
        ),
        (
            "unknown version",
            br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"1"}}"#,
        ),
        ("empty", b""),
    ];
    for path in ["/mutate", "/validate"] {
        for (what, body) in cases {
            let (status, text) =
                send(&state, post(path, Some("application/json"), body.to_vec())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what} on {path}");
            assert!(
                !text.trim().is_empty() && text.len() < 300,
                "{what}: {text}"
            );
        }
    }
    assert!(state
        .metrics
        .encode()
        .contains(r#"eargate_admission_rejected_requests_total{webhook="mutate",code="400"} 5"#));
}

#[tokio::test]
async fn a_panic_is_a_500_and_the_next_request_is_served() {
    let state = state();
    let bad = DELETE.replace(r#""name":"a""#, r#""name":"PANIC-MARKER""#);
    for _ in 0..3 {
        let (status, body) = send(
            &state,
            post("/validate", Some("application/json"), bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "internal error", "the payload is not echoed");
        let (status, _) = send(&state, post("/validate", Some("application/json"), DELETE)).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(state
        .metrics
        .encode()
        .contains("eargate_admission_panics_total 3"));
}

#[tokio::test]
async fn readiness_turns_false_when_shutting_down_and_health_stays() {
    let state = state();
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(
        send(&state, get("/healthz")).await,
        (StatusCode::OK, "ok\n".into())
    );
    assert_eq!(
        send(&state, get("/readyz")).await,
        (StatusCode::OK, "ready\n".into())
    );
    state
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(
        send(&state, get("/readyz")).await,
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
    );
    assert_eq!(send(&state, get("/healthz")).await.0, StatusCode::OK);
}
