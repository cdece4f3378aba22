//! What a response means, kept pure so it can be tested without a server: a status code
//! for a rewrite or a list page, how a failure is described (without object contents),
//! and where a restarted list resumes.

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
