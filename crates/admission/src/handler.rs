//! One review: the body the HTTP edge has accepted goes to the policy, the verdict comes
//! back as the reply, and every answer (a reply or a rejection) is counted and logged once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use eargate_policy::{review, PolicyConfig, ReviewError, Reviewed, Webhook};
use eargate_runtime::Probe;

use crate::metrics::{Metrics, WebhookLabel};
use crate::tls::CertStore;

/// Decides one review. The server calls the policy through this so tests can inject
/// faults (a panicking reviewer) without a test-only route in the real server.
pub trait Reviewer: Send + Sync + 'static {
    /// Answers one review body for `webhook`: the reply and its summary, or why the body is refused.
    fn review(&self, webhook: Webhook, body: &[u8]) -> Result<Reviewed, ReviewError>;
}

/// The real reviewer: eargate's policy with the configured status writers.
#[derive(Debug, Default)]
pub struct PolicyReviewer {
    /// Who may write `status.encryption`.
    pub config: PolicyConfig,
}

impl Reviewer for PolicyReviewer {
    fn review(&self, webhook: Webhook, body: &[u8]) -> Result<Reviewed, ReviewError> {
        review(webhook, body, &self.config)
    }
}

/// Shared by every request, on both ports.
pub(crate) struct AppState {
    pub(crate) reviewer: Arc<dyn Reviewer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Arc<CertStore>,
    /// Set on SIGTERM: `/readyz` answers 503 from then on (requests are still served).
    pub(crate) shutting_down: AtomicBool,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_read_timeout: Duration,
}

/// The admin port and the TLS port answer `/readyz` from this: 503 from SIGTERM on (the
/// server still answers reviews during the shutdown delay) and while no serving
/// certificate is loaded.
impl Probe for AppState {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn readiness(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            Err("shutting down")
        } else if !self.store.has_cert() {
            Err("no serving certificate")
        } else {
            Ok(())
        }
    }
}

pub(crate) fn webhook_label(webhook: &Webhook) -> WebhookLabel {
    match webhook {
        Webhook::Mutate => WebhookLabel::mutate,
        Webhook::Validate => WebhookLabel::validate,
    }
}

/// A request turned away before or instead of a verdict: counted, logged with `reason`,
/// answered with `text` as plain text.
pub(crate) fn reject(
    state: &AppState,
    label: WebhookLabel,
    started: Instant,
    code: StatusCode,
    reason: &str,
    mut text: String,
) -> Response {
    state.metrics.record_rejected(label, code.as_u16());
    tracing::warn!(
        webhook = ?label,
        status = code.as_u16(),
        reason,
        latency_us = started.elapsed().as_micros() as u64,
        "request rejected"
    );
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
}

/// Keeps a policy error message short and free of quoted input: a JSON parser's message
/// can quote a value from the request, and a value may be key material.
pub(crate) fn redact_message(message: &str) -> String {
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

/// Reviews an accepted body: the reply with the verdict, or 400 when the body is no
/// AdmissionReview the policy can read.
pub(crate) fn admit(state: &AppState, webhook: Webhook, started: Instant, body: &[u8]) -> Response {
    let label = webhook_label(&webhook);
    let reviewed = match state.reviewer.review(webhook, body) {
        Ok(reviewed) => reviewed,
        Err(err) => {
            let kind = review_error_kind(&err);
            return reject(
                state,
                label,
                started,
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

#[cfg(test)]
mod tests {
    use super::*;

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
