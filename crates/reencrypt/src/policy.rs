//! Decisions about API responses, kept pure so they can be tested without a server:
//! what a status code means for a rewrite or a list page, when and how long to retry,
//! how a failure is described (without object contents), and where a restarted list
//! resumes.

use std::time::{Duration, SystemTime};

use kube::core::Status;

/// What a response to a PUT of an unchanged object means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutVerdict {
    /// Written: now stored under the current encryption configuration.
    Rewritten,
    /// 409: someone wrote the object after we listed it, so it is already re-encrypted.
    Conflicted,
    /// 404: deleted after we listed it; nothing left to re-encrypt.
    Gone,
    /// 429 or 5xx: the server is busy or failing transiently; try again later.
    Retry,
    /// Anything else will not get better by retrying.
    Failed,
}

/// Classifies the HTTP status of a PUT.
pub fn classify_put(status: u16) -> PutVerdict {
    match status {
        200..=299 => PutVerdict::Rewritten,
        409 => PutVerdict::Conflicted,
        404 => PutVerdict::Gone,
        429 | 500..=599 => PutVerdict::Retry,
        _ => PutVerdict::Failed,
    }
}

/// What a response to a LIST page request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListVerdict {
    Page,
    /// 410 on a continued list: the continue token expired; start over and skip what
    /// was already handed out.
    Restart,
    Retry,
    /// The list of this resource failed; never treated as an empty list.
    Failed,
}

/// Classifies the HTTP status of a LIST request; `continued` tells whether it carried a
/// continue token (a 410 without one cannot be cured by restarting).
pub fn classify_list(status: u16, continued: bool) -> ListVerdict {
    match status {
        200..=299 => ListVerdict::Page,
        410 if continued => ListVerdict::Restart,
        429 | 500..=599 => ListVerdict::Retry,
        _ => ListVerdict::Failed,
    }
}

/// Backoff for retried requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubles per attempt.
    pub base: Duration,
    /// Ceiling of the exponential delay.
    pub cap: Duration,
    /// Ceiling for a server's `Retry-After`, so a broken server cannot park us for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Delay before the next attempt after `attempt` (1-based) failed retryably, or `None`
    /// when attempts are used up. A server's `Retry-After` is honoured as given (capped);
    /// otherwise exponential backoff with `jitter` in `[0, 1)` spreading the delay over
    /// its upper half so that throttled workers do not retry in lockstep.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if let Some(after) = retry_after {
            return Some(after.min(self.max_retry_after));
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let jitter = jitter.clamp(0.0, 1.0);
        Some(exp.mul_f64(0.5 + 0.5 * jitter))
    }
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delta-seconds, the form kube-apiserver sends,
/// or an HTTP-date, which proxies and load balancers in front of it may send. Anything
/// else is `None` (backoff then applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

/// [`parse_retry_after`] with the current time given: an HTTP-date is the wait until then
/// (zero when it has passed). HTTP-dates are IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`); as RFC 9110 asks of recipients, the obsolete RFC 850
/// and asctime forms are accepted too.
pub fn parse_retry_after_at(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds: a huge value saturates (the policy caps it anyway).
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The server's hint from the header, else from the `Status` body.
pub fn retry_after(header: Option<&str>, status: Option<&Status>) -> Option<Duration> {
    header.and_then(parse_retry_after).or_else(|| {
        status
            .and_then(|s| s.details.as_ref())
            .map(|d| d.retry_after_seconds)
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(u64::from(s)))
    })
}

/// Describes a failed response for the summary: the status code, the API's machine
/// `reason` and the names of invalid fields. Deliberately not the `message`: a validation
/// message may quote field values, and object contents (Secret data) must never be printed.
pub fn failure_reason(code: u16, status: Option<&Status>) -> String {
    let mut out = format!("HTTP {code}");
    if let Some(s) = status {
        if !s.reason.is_empty() {
            out.push(' ');
            out.push_str(&sanitize(&s.reason));
        }
        let fields: Vec<String> = s
            .details
            .iter()
            .flat_map(|d| d.causes.iter())
            .filter(|c| !c.field.is_empty())
            .map(|c| sanitize(&c.field))
            .collect();
        if !fields.is_empty() {
            out.push_str(" (fields: ");
            out.push_str(&fields.join(", "));
            out.push(')');
        }
    }
    out
}

/// Keeps an identifier-like string printable and short.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// Storage order key of an object: `namespace/name`, or `name` when cluster-scoped.
/// kube-apiserver lists in etcd key order, which compares exactly like this string.
pub fn object_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// After a restarted list, objects up to and including the last one handed out were
/// already dealt with; skipping by key keeps memory flat (no set of done objects).
pub fn already_handed_out(key: &str, last_handed_out: Option<&str>) -> bool {
    last_handed_out.is_some_and(|last| key <= last)
}

#[cfg(test)]
mod tests {
    use kube::core::response::StatusDetails;

    use super::*;

    fn details(v: serde_json::Value) -> StatusDetails {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn put_classification() {
        assert_eq!(classify_put(200), PutVerdict::Rewritten);
        assert_eq!(classify_put(201), PutVerdict::Rewritten);
        assert_eq!(classify_put(409), PutVerdict::Conflicted);
        assert_eq!(classify_put(404), PutVerdict::Gone);
        for code in [429, 500, 502, 503, 504] {
            assert_eq!(classify_put(code), PutVerdict::Retry, "{code}");
        }
        for code in [400, 401, 403, 410, 415, 422] {
            assert_eq!(classify_put(code), PutVerdict::Failed, "{code}");
        }
    }

    #[test]
    fn list_classification() {
        assert_eq!(classify_list(200, false), ListVerdict::Page);
        assert_eq!(classify_list(410, true), ListVerdict::Restart);
        assert_eq!(classify_list(410, false), ListVerdict::Failed);
        assert_eq!(classify_list(429, true), ListVerdict::Retry);
        assert_eq!(classify_list(503, false), ListVerdict::Retry);
        assert_eq!(classify_list(403, false), ListVerdict::Failed);
        assert_eq!(classify_list(404, true), ListVerdict::Failed);
    }

    #[test]
    fn backoff_grows_caps_and_ends() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(10),
        };
        assert_eq!(p.delay(1, None, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, None, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.delay(3, None, 1.0), Some(Duration::from_millis(350)));
        assert_eq!(p.delay(2, None, 0.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(5, None, 1.0), None);
        // Retry-After wins over backoff, within its ceiling.
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), 0.3),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600)), 0.3),
            Some(Duration::from_secs(10))
        );
        assert_eq!(p.delay(5, Some(Duration::from_secs(1)), 0.3), None);
        // Huge attempt numbers do not overflow.
        let long = RetryPolicy {
            max_attempts: u32::MAX,
            ..p
        };
        assert_eq!(
            long.delay(1000, None, 1.0),
            Some(Duration::from_millis(350))
        );
    }

    #[test]
    fn retry_after_from_header_or_status() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "+3", "soon", "Wed, 21 Oct 2015 07:28:00"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
        let status = Status {
            details: Some(details(serde_json::json!({"retryAfterSeconds": 4}))),
            ..Default::default()
        };
        assert_eq!(
            retry_after(Some("1"), Some(&status)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_after(None, Some(&status)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(retry_after(Some("soon"), None), None);
        assert_eq!(retry_after(None, Some(&Status::default())), None);
    }

    #[test]
    fn retry_after_as_an_http_date() {
        // 1994-11-06T08:49:37Z, RFC 9110's example date.
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let before = |secs| date - Duration::from_secs(secs);
        // IMF-fixdate, and the two obsolete forms recipients must accept.
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after_at(form, before(7)),
                Some(Duration::from_secs(7)),
                "{form}"
            );
        }
        assert_eq!(
            parse_retry_after_at(" Sun, 06 Nov 1994 08:49:37 GMT ", before(90)),
            Some(Duration::from_secs(90))
        );
        // A date already passed: retry now, not never.
        assert_eq!(
            parse_retry_after_at(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date + Duration::from_secs(5)
            ),
            Some(Duration::ZERO)
        );
        // Sub-second "now": the wait is what is left until the date.
        assert_eq!(
            parse_retry_after_at(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date - Duration::from_millis(1500)
            ),
            Some(Duration::from_millis(1500))
        );
        // Not a date.
        assert_eq!(
            parse_retry_after_at("Sun, 32 Nov 1994 08:49:37 GMT", date),
            None
        );
        // Through the header path, and the policy's ceiling still applies.
        let now = SystemTime::now();
        let in_a_minute = httpdate::fmt_http_date(now + Duration::from_secs(61));
        let got = retry_after(Some(&in_a_minute), None).expect("a date is a hint");
        assert!(
            got > Duration::from_secs(55) && got <= Duration::from_secs(61),
            "{got:?}"
        );
        let p = RetryPolicy {
            max_retry_after: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1, Some(got), 0.5), Some(Duration::from_secs(10)));
    }

    #[test]
    fn failure_reason_names_fields_but_never_quotes_messages() {
        let status = Status {
            code: 422,
            reason: "Invalid".into(),
            message: "Secret \"db\" is invalid: data[password]: Invalid value: \"hunter2\"".into(),
            details: Some(details(serde_json::json!({"causes": [{
                "reason": "FieldValueInvalid",
                "message": "Invalid value: \"hunter2\"",
                "field": "data[password]",
            }]}))),
            ..Default::default()
        };
        let reason = failure_reason(422, Some(&status));
        assert_eq!(reason, "HTTP 422 Invalid (fields: data[password])");
        assert!(!reason.contains("hunter2"));
        assert_eq!(failure_reason(403, None), "HTTP 403");
    }

    #[test]
    fn keys_follow_storage_order_and_restart_skips_done() {
        assert_eq!(object_key(Some("ns"), "a"), "ns/a");
        assert_eq!(object_key(None, "a"), "a");
        assert_eq!(object_key(Some(""), "a"), "a");
        // etcd compares `/registry/secrets/a-b/y` < `/registry/secrets/a/x`; so do keys.
        assert!(object_key(Some("a-b"), "y") < object_key(Some("a"), "x"));
        assert!(already_handed_out("ns/a", Some("ns/b")));
        assert!(already_handed_out("ns/b", Some("ns/b")));
        assert!(!already_handed_out("ns/c", Some("ns/b")));
        assert!(!already_handed_out("ns/a", None));
    }
}
