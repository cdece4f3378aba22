//! Prometheus metrics of the admission server, served on the separate plain-HTTP metrics
//! port. Label values come from fixed sets (webhook, verdict, rule ids from the policy,
//! known operations), so a caller cannot blow up the series count.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Which endpoint answered.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum WebhookLabel {
    mutate,
    validate,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub webhook: WebhookLabel,
    pub operation: &'static str,
    pub verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub webhook: WebhookLabel,
    pub rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub webhook: WebhookLabel,
    pub code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: WebhookLabel,
}

/// Result of trying to install a changed certificate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    Success,
    Failure,
}

impl ReloadOutcome {
    fn label(self) -> &'static str {
        match self {
            ReloadOutcome::Success => "success",
            ReloadOutcome::Failure => "failure",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub outcome: &'static str,
}

/// Latency buckets: a review takes tens of microseconds; kube-apiserver's default
/// webhook timeout is 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric of the server, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    foreign: Family<WebhookLabels, Counter>,
    latency: Family<WebhookLabels, Histogram, fn() -> Histogram>,
    panics: Counter,
    cert_expiry: Gauge,
    reloads: Family<ReloadLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Maps the request's operation onto the four kube-apiserver sends (bounded label values).
pub fn operation_label(operation: &str) -> &'static str {
    match operation {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        _ => "OTHER",
    }
}

impl Metrics {
    /// Every metric registered, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eargate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by webhook, operation and verdict",
            requests.clone(),
        );
        let denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "admission_denials",
            "Rule violations in denied reviews, by webhook and rule id",
            denials.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "admission_rejected_requests",
            "Requests answered with an HTTP error instead of a review (400, 413, 415, 500)",
            rejected.clone(),
        );
        let foreign = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "admission_foreign_kind",
            "Reviews of a kind other than Cluster (a webhook configuration that matches too much), allowed",
            foreign.clone(),
        );
        let latency = Family::<WebhookLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "admission_review_duration_seconds",
            "Time from request headers to the reply, including reading the body",
            latency.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "admission_panics",
            "Requests whose handler panicked, answered 500 while the server kept serving",
            panics.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, seconds since the Unix epoch",
            cert_expiry.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "tls_certificate_reloads",
            "Attempts to install a changed certificate pair, by outcome",
            reloads.clone(),
        );
        Metrics {
            registry,
            requests,
            denials,
            rejected,
            foreign,
            latency,
            panics,
            cert_expiry,
            reloads,
        }
    }

    /// Records one answered review.
    pub fn record_review(
        &self,
        webhook: WebhookLabel,
        operation: &str,
        allowed: bool,
        rule_ids: &[&'static str],
        foreign_kind: bool,
        seconds: f64,
    ) {
        let verdict = if allowed { "allowed" } else { "denied" };
        self.requests
            .get_or_create(&RequestLabels {
                webhook,
                operation: operation_label(operation),
                verdict,
            })
            .inc();
        if !allowed {
            for rule in rule_ids {
                self.denials
                    .get_or_create(&DenialLabels { webhook, rule })
                    .inc();
            }
        }
        if foreign_kind {
            self.foreign.get_or_create(&WebhookLabels { webhook }).inc();
        }
        self.latency
            .get_or_create(&WebhookLabels { webhook })
            .observe(seconds);
    }

    /// Records a request answered with an HTTP error status.
    pub fn record_rejected(&self, webhook: WebhookLabel, code: u16) {
        self.rejected
            .get_or_create(&RejectLabels { webhook, code })
            .inc();
    }

    /// Counts a request handler that panicked (answered 500).
    pub fn record_panic(&self) {
        self.panics.inc();
    }

    /// Counts a certificate reload by its outcome.
    pub fn record_reload(&self, outcome: ReloadOutcome) {
        self.reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Sets the serving certificate's `notAfter` (seconds since the Unix epoch).
    pub fn set_cert_expiry(&self, not_after: i64) {
        self.cert_expiry.set(not_after);
    }

    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family_with_bounded_labels() {
        let m = Metrics::new();
        m.record_review(
            WebhookLabel::validate,
            "UPDATE",
            false,
            &["EAR008", "EAR010"],
            false,
            0.0002,
        );
        m.record_review(
            WebhookLabel::mutate,
            "something-odd",
            true,
            &[],
            true,
            0.0001,
        );
        m.record_rejected(WebhookLabel::validate, 413);
        m.record_reload(ReloadOutcome::Failure);
        m.set_cert_expiry(1_900_000_000);
        let text = m.encode();
        for needle in [
            r#"eargate_admission_requests_total{webhook="validate",operation="UPDATE",verdict="denied"} 1"#,
            r#"eargate_admission_requests_total{webhook="mutate",operation="OTHER",verdict="allowed"} 1"#,
            r#"eargate_admission_denials_total{webhook="validate",rule="EAR008"} 1"#,
            r#"eargate_admission_denials_total{webhook="validate",rule="EAR010"} 1"#,
            r#"eargate_admission_rejected_requests_total{webhook="validate",code="413"} 1"#,
            r#"eargate_admission_foreign_kind_total{webhook="mutate"} 1"#,
            r#"eargate_admission_review_duration_seconds_bucket{le="0.00025",webhook="validate"} 1"#,
            r#"eargate_tls_certificate_expiry_timestamp_seconds 1900000000"#,
            r#"eargate_tls_certificate_reloads_total{outcome="failure"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
