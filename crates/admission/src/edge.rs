//! The strict HTTP edge of the TLS port: the routes and their methods, the content type,
//! the body limit and read timeout, and a panic costing one request instead of the
//! process. Only a body that passed all of it reaches the handler.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use eargate_policy::Webhook;
use eargate_runtime::Probe as _;
use futures::StreamExt as _;
use tower_http::catch_panic::CatchPanicLayer;

use crate::handler::{admit, reject, webhook_label, AppState};

/// The routes of the TLS port.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    AppState::probe_routes()
        .route(
            "/mutate",
            post(|State(s): State<Arc<AppState>>, req: Request| accept(s, Webhook::Mutate, req)),
        )
        .route(
            "/validate",
            post(|State(s): State<Arc<AppState>>, req: Request| accept(s, Webhook::Validate, req)),
        )
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

/// POST /mutate and /validate: the content type, then the body within its limit and time.
async fn accept(state: Arc<AppState>, webhook: Webhook, req: Request) -> Response {
    let started = Instant::now();
    let label = webhook_label(&webhook);
    if !is_json(req.headers()) {
        return reject(
            &state,
            label,
            started,
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
    match tokio::time::timeout(state.request_read_timeout, read)
        .await
        .unwrap_or(Err(BodyError::TooSlow))
    {
        Ok(body) => admit(&state, webhook, started, &body),
        Err(err) => {
            let (code, reason, text) = err.reply(&state);
            reject(&state, label, started, code, reason, text)
        }
    }
}

#[cfg(test)]
#[path = "edge_tests.rs"]
mod tests;
