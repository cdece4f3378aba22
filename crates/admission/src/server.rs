//! The HTTPS server kube-apiserver calls: routing, the strict HTTP edge (content type,
//! body limit, methods), the review handler, health, metrics, certificate reload and the
//! shutdown that loses no request: on SIGTERM readiness turns false while the server keeps
//! accepting for the shutdown delay (so that endpoints can update), then it drains.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use eargate_policy::review::{review, PolicyConfig, ReviewError, Reviewed, Webhook};
use futures::StreamExt as _;
use tower_http::catch_panic::CatchPanicLayer;

use crate::metrics::{Metrics, WebhookLabel};
use crate::tls::{self, CertReloader, CertStore, TlsError};

/// Default `--max-body-bytes`: room for an old and a new object of 3 MiB each plus the
/// review around them (etcd's default request limit is 1.5 MiB per object).
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How often the certificate files are re-read.
pub const DEFAULT_CERT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long in-flight requests may run once the drain has begun (the listener is closed).
/// The chart's `terminationGracePeriodSeconds` must cover the shutdown delay plus this.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server keeps accepting after SIGTERM, readiness false, before it drains:
/// time for the endpoints to drop the pod, so that no client is sent to a closed port.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers, and then its body: what
/// kube-apiserver waits for a webhook by default (the chart sets 5 s), so no real caller is
/// cut off, while a client that trickles bytes cannot hold a connection and its buffers.
pub const DEFAULT_REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Decides one review. The server calls the policy through this so tests can inject
/// faults (a panicking reviewer) without a test-only route in the real server.
pub trait Reviewer: Send + Sync + 'static {
    fn review(&self, webhook: Webhook, body: &[u8]) -> Result<Reviewed, ReviewError>;
}

/// The real reviewer: eargate's policy with the configured status writers.
#[derive(Debug, Default)]
pub struct PolicyReviewer {
    pub config: PolicyConfig,
}

impl Reviewer for PolicyReviewer {
    fn review(&self, webhook: Webhook, body: &[u8]) -> Result<Reviewed, ReviewError> {
        review(webhook, body, &self.config)
    }
}

/// Everything `eargate serve` is told on the command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Plain-HTTP `/metrics`; `None` serves no metrics port.
    pub metrics_listen: Option<SocketAddr>,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    pub max_body_bytes: usize,
    pub cert_poll_interval: Duration,
    /// After SIGTERM: readiness false, still accepting, for this long; then the drain.
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    /// Limit on reading a request's headers, and separately its body (HTTP/1.1 headers:
    /// the connection is closed; a body: 408).
    pub request_read_timeout: Duration,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, tls_cert_file: PathBuf, tls_key_file: PathBuf) -> Self {
        ServeConfig {
            listen,
            metrics_listen: None,
            tls_cert_file,
            tls_key_file,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cert_poll_interval: DEFAULT_CERT_POLL_INTERVAL,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            request_read_timeout: DEFAULT_REQUEST_READ_TIMEOUT,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serving certificate: {0}")]
    Tls(#[from] TlsError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admission server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("admission server task failed")]
    Join,
}

/// Shared by every request.
struct AppState {
    reviewer: Arc<dyn Reviewer>,
    metrics: Arc<Metrics>,
    store: Arc<CertStore>,
    /// Set on SIGTERM: `/readyz` answers 503 from then on (requests are still served).
    shutting_down: AtomicBool,
    max_body_bytes: usize,
    request_read_timeout: Duration,
}

/// The admission routes on the TLS port.
fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route(
            "/mutate",
            post(|State(s): State<Arc<AppState>>, req: Request| admit(s, Webhook::Mutate, req)),
        )
        .route(
            "/validate",
            post(|State(s): State<Arc<AppState>>, req: Request| admit(s, Webhook::Validate, req)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "not found: eargate serves POST /mutate, POST /validate, GET /healthz, GET /readyz",
            )
        })
        .with_state(state)
        // A bug must cost one request, not the process: answer 500, keep serving. The
        // panic payload is not echoed (it could quote the request).
        .layer(CatchPanicLayer::custom(
            move |_payload: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked; answered 500 and kept serving");
                metrics.record_panic();
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            },
        ))
}

/// `/readyz` on both ports: 503 from SIGTERM on (the server still answers reviews during
/// the shutdown delay) and while no serving certificate is loaded.
async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if s.shutting_down.load(Ordering::Acquire) {
        plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !s.store.has_cert() {
        plain(StatusCode::SERVICE_UNAVAILABLE, "no serving certificate")
    } else {
        plain(StatusCode::OK, "ready")
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

fn webhook_label(webhook: &Webhook) -> WebhookLabel {
    match webhook {
        Webhook::Mutate => WebhookLabel::mutate,
        Webhook::Validate => WebhookLabel::validate,
    }
}

/// True for `application/json` with or without parameters, as kube-apiserver sends it.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Why the body could not be read.
enum BodyError {
    TooLarge,
    Broken,
    TooSlow,
}

impl BodyError {
    /// The status, the metric/log reason and the text the client gets.
    fn reply(&self, state: &AppState) -> (StatusCode, &'static str, String) {
        match self {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "request body over the limit of {} bytes (--max-body-bytes)",
                    state.max_body_bytes
                ),
            ),
            BodyError::Broken => (
                StatusCode::BAD_REQUEST,
                "body_read",
                "could not read the request body".into(),
            ),
            BodyError::TooSlow => (
                StatusCode::REQUEST_TIMEOUT,
                "read_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    state.request_read_timeout.as_secs_f64()
                ),
            ),
        }
    }
}

/// Reads at most `max` bytes; stops at the first byte over the limit without reading on.
async fn read_body(body: Body, declared: Option<u64>, max: usize) -> Result<Vec<u8>, BodyError> {
    if declared.is_some_and(|len| len > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::with_capacity(declared.map_or(16 * 1024, |len| len as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if buf.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Keeps a policy error message short and free of quoted input: a JSON parser's message
/// can quote a value from the request, and a value may be key material.
pub fn redact_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(200));
    let mut in_quote = false;
    for ch in message.chars() {
        if ch == '"' || ch == '`' {
            if !in_quote {
                out.push_str("\"…\"");
            }
            in_quote = !in_quote;
            continue;
        }
        if !in_quote {
            out.push(ch);
        }
        if out.len() > 200 {
            out.push('…');
            break;
        }
    }
    out
}

fn review_error_kind(err: &ReviewError) -> &'static str {
    match err {
        ReviewError::NotJson(_) => "not_json",
        ReviewError::MissingRequest => "missing_request",
        ReviewError::WrongKind(_) => "wrong_kind",
        ReviewError::UnknownVersion(_) => "unknown_version",
    }
}

/// POST /mutate and /validate.
async fn admit(state: Arc<AppState>, webhook: Webhook, req: Request) -> Response {
    let started = Instant::now();
    let label = webhook_label(&webhook);
    let reject = |code: StatusCode, reason: &str, text: String| -> Response {
        state.metrics.record_rejected(label, code.as_u16());
        tracing::warn!(
            webhook = ?label,
            status = code.as_u16(),
            reason,
            latency_us = started.elapsed().as_micros() as u64,
            "request rejected"
        );
        let mut text = text;
        text.push('\n');
        (
            code,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            text,
        )
            .into_response()
    };

    if !is_json(req.headers()) {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            "an AdmissionReview must be sent as Content-Type: application/json".into(),
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let read = read_body(req.into_body(), declared, state.max_body_bytes);
    let body = match tokio::time::timeout(state.request_read_timeout, read)
        .await
        .unwrap_or(Err(BodyError::TooSlow))
    {
        Ok(body) => body,
        Err(err) => {
            let (code, reason, text) = err.reply(&state);
            return reject(code, reason, text);
        }
    };

    let reviewed = match state.reviewer.review(webhook, &body) {
        Ok(reviewed) => reviewed,
        Err(err) => {
            let kind = review_error_kind(&err);
            return reject(
                StatusCode::BAD_REQUEST,
                kind,
                redact_message(&err.to_string()),
            );
        }
    };
    let s = &reviewed.summary;
    let elapsed = started.elapsed();
    state.metrics.record_review(
        label,
        &s.operation,
        s.allowed,
        &s.rule_ids,
        s.foreign_kind,
        elapsed.as_secs_f64(),
    );
    let verdict = if s.allowed { "allowed" } else { "denied" };
    let rules = s.rule_ids.join(",");
    if s.foreign_kind {
        tracing::warn!(
            webhook = ?label,
            uid = %s.uid,
            operation = %s.operation,
            name = %s.name,
            verdict,
            latency_us = elapsed.as_micros() as u64,
            "review of a kind other than Cluster allowed: the webhook configuration matches more than Cluster"
        );
    } else {
        tracing::info!(
            webhook = ?label,
            uid = %s.uid,
            api_version = s.api_version,
            operation = %s.operation,
            subresource = s.subresource.as_deref().unwrap_or(""),
            name = %s.name,
            verdict,
            rules = %rules,
            warnings = s.warnings,
            patched = s.patched,
            dry_run = s.dry_run,
            latency_us = elapsed.as_micros() as u64,
            "review"
        );
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        reviewed.body,
    )
        .into_response()
}

/// A started server: its addresses and the means to drain it.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<CertStore>,
    state: Arc<AppState>,
    handle: axum_server::Handle<SocketAddr>,
    shutdown_delay: Duration,
    drain_timeout: Duration,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    metrics_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// What SIGTERM starts: readiness false at once while the server keeps accepting
    /// connections and answering requests for the shutdown delay, so that the endpoints
    /// can drop this pod before its port closes. Then the drain (see
    /// [`Running::begin_drain`]) and the wait for it. The delay ends early when
    /// `skip_delay` resolves (a second SIGTERM or Ctrl-C). Returns when the server stopped.
    pub async fn shutdown(self, skip_delay: impl Future<Output = ()>) -> Result<(), ServeError> {
        self.begin_shutdown();
        tokio::select! {
            _ = tokio::time::sleep(self.shutdown_delay) => {}
            _ = skip_delay => tracing::info!("shutdown delay cut short"),
        }
        self.begin_drain();
        self.wait().await
    }

    /// Readiness false; everything else goes on (new connections and requests are served).
    pub fn begin_shutdown(&self) {
        self.state.shutting_down.store(true, Ordering::Release);
        tracing::info!(
            delay_ms = self.shutdown_delay.as_millis() as u64,
            "shutting down: readiness false, still accepting until the shutdown delay is over"
        );
    }

    /// Readiness false, stop accepting, let in-flight requests finish (up to the drain
    /// timeout). Returns at once; `wait` returns when the drain is over.
    pub fn begin_drain(&self) {
        self.state.shutting_down.store(true, Ordering::Release);
        tracing::info!(
            timeout_s = self.drain_timeout.as_secs(),
            "draining: no new connections, in-flight requests finish"
        );
        self.handle.graceful_shutdown(Some(self.drain_timeout));
    }

    /// How long [`Running::shutdown`] keeps accepting before it drains.
    pub fn shutdown_delay(&self) -> Duration {
        self.shutdown_delay
    }

    /// Waits for the admission server to stop, then stops the metrics port and reloader.
    pub async fn wait(mut self) -> Result<(), ServeError> {
        let result = (&mut self.server).await;
        if let Some(tx) = self.metrics_shutdown.take() {
            let _ = tx.send(());
        }
        for task in self.background.drain(..) {
            task.abort();
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(ServeError::Io(err)),
            Err(_) => Err(ServeError::Join),
        }
    }

    /// Number of open client connections on the admission port.
    pub fn connection_count(&self) -> usize {
        self.handle.connection_count()
    }
}

fn bind_std(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(listener)
}

/// Loads the certificate, binds both ports and starts serving in the background.
/// Must be called inside a tokio runtime.
pub async fn start(
    config: ServeConfig,
    reviewer: Arc<dyn Reviewer>,
) -> Result<Running, ServeError> {
    let provider = tls::provider();
    let (cert_pem, key_pem) = tls::read_files(&config.tls_cert_file, &config.tls_key_file)?;
    let pair = tls::parse_pair(
        &cert_pem,
        &key_pem,
        &config.tls_cert_file,
        &config.tls_key_file,
        &provider,
    )?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_cert_expiry(pair.not_after);
    let store = Arc::new(CertStore::new(&pair));
    let rustls_config = tls::server_config(store.clone(), provider.clone())?;

    let state = Arc::new(AppState {
        reviewer,
        metrics: metrics.clone(),
        store: store.clone(),
        shutting_down: AtomicBool::new(false),
        max_body_bytes: config.max_body_bytes,
        request_read_timeout: config.request_read_timeout,
    });

    let listener = bind_std(config.listen)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(rustls_config)),
    )?
    .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(config.request_read_timeout));
    let app = router(state.clone());
    let server = tokio::spawn(async move { server.serve(app.into_make_service()).await });

    let mut background = Vec::new();
    let reloader = CertReloader::new(
        config.tls_cert_file.clone(),
        config.tls_key_file.clone(),
        store.clone(),
        metrics.clone(),
        provider,
        (cert_pem, key_pem),
    );
    background.push(tokio::spawn(reloader.run(config.cert_poll_interval)));

    let (metrics_addr, metrics_shutdown) = match config.metrics_listen {
        None => (None, None),
        Some(maddr) => {
            let listener = bind_std(maddr)?;
            let bound = listener.local_addr()?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let m = metrics.clone();
            // The same health and readiness as on the TLS port, in plain HTTP beside the
            // metrics (like the reconciler's), for probes and tools that do not speak TLS.
            let app = Router::new()
                .route(
                    "/metrics",
                    get(move || {
                        let m = m.clone();
                        async move {
                            (
                                [(
                                    header::CONTENT_TYPE,
                                    HeaderValue::from_static(
                                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                    ),
                                )],
                                m.encode(),
                            )
                        }
                    }),
                )
                .route("/healthz", get(|| async { "ok\n" }))
                .route("/readyz", get(readyz))
                .fallback(|| async {
                    plain(
                        StatusCode::NOT_FOUND,
                        "not found: this port serves GET /metrics, GET /healthz, GET /readyz",
                    )
                })
                .with_state(state.clone());
            background.push(tokio::spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = rx.await;
                });
                if let Err(err) = serve.await {
                    tracing::error!(error = %err, "metrics server stopped");
                }
            }));
            (Some(bound), Some(tx))
        }
    };

    tracing::info!(
        %addr,
        metrics = ?metrics_addr,
        cert = %config.tls_cert_file.display(),
        serial = %pair.serial,
        not_after = pair.not_after,
        max_body_bytes = config.max_body_bytes,
        "eargate admission server listening (TLS 1.2/1.3, h2 and http/1.1)"
    );
    Ok(Running {
        addr,
        metrics_addr,
        metrics,
        store,
        state,
        handle,
        shutdown_delay: config.shutdown_delay,
        drain_timeout: config.drain_timeout,
        server,
        background,
        metrics_shutdown,
    })
}

/// Replaces the default panic hook, which prints the payload (it could quote a request),
/// with a log line naming only where the panic happened.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_accepts_json_with_parameters_only() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        assert!(!is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }

    #[test]
    fn redaction_drops_quoted_input_and_caps_length() {
        let msg = r#"invalid type: string "c2VjcmV0LWtleS1tYXRlcmlhbA==", expected a boolean at line 1 column 9"#;
        let out = redact_message(msg);
        assert!(!out.contains("c2VjcmV0"), "{out}");
        assert!(out.contains("expected a boolean at line 1 column 9"));
        let long = "x".repeat(1000);
        assert!(redact_message(&long).chars().count() < 210);
    }
}
