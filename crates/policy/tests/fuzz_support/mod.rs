//! The decoder, held to a reference: shared by the `fuzz_review` test (a time-bounded
//! random round in `make test`) and the cargo-fuzz target in `crates/policy/fuzz` (the long,
//! coverage-guided runs).
//!
//! The reference is simple and obviously right: serde_json parses the whole body into a
//! `Value` (the last copy of a duplicate key wins, as in Kubernetes' own decoder), the
//! request's fields are read from it, and each Cluster's facts come from
//! [`ClusterFacts::from_object`]. Then the same [`judge`] that `review()` uses decides. The
//! property: for any bytes, `review()` gives the same facts, verdict, patch and warnings as
//! the reference, or a clean [`ReviewError`] (HTTP 400). It never panics and never allows
//! what the reference denies.

use std::borrow::Cow;

use eargate_policy::ClusterFacts;
use eargate_policy::{
    decode, judge, DecodedRequest, DecodedReview, GroupKind, PolicyConfig, ReviewError, Webhook,
};
use serde_json::Value;

/// Why the reference could not decode a body.
#[derive(Debug)]
pub enum RefError {
    /// Not an AdmissionReview the policy can read (the codec must refuse it too).
    Invalid,
    /// Beyond what serde_json's `Value` can hold: nesting deeper than its recursion limit
    /// (128), or a number outside f64's range. The scanner, which neither recurses nor
    /// converts the numbers it skips, may still judge it; only "no panic" is checked then.
    TooDeep,
}

/// A string field: absent or `null` is `None`; any other non-string is an error.
fn text(v: Option<&Value>) -> Result<Option<Cow<'static, str>>, RefError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(Cow::Owned(s.clone()))),
        Some(_) => Err(RefError::Invalid),
    }
}

/// The reference decoder.
pub fn reference_decode(body: &[u8]) -> Result<DecodedReview<'static>, RefError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| {
        let e = e.to_string();
        if e.contains("recursion limit") || e.contains("number out of range") {
            RefError::TooDeep
        } else {
            RefError::Invalid
        }
    })?;
    let root = root.as_object().ok_or(RefError::Invalid)?;
    let api_version = text(root.get("apiVersion"))?;
    let kind = text(root.get("kind"))?;
    let request = match root.get("request") {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => Some(reference_request(r)?),
        Some(_) => return Err(RefError::Invalid),
    };
    Ok(DecodedReview {
        api_version,
        kind,
        request,
    })
}

fn reference_request(
    r: &serde_json::Map<String, Value>,
) -> Result<DecodedRequest<'static>, RefError> {
    let kind = match r.get("kind") {
        None | Some(Value::Null) => None,
        Some(Value::Object(k)) => Some(GroupKind {
            group: text(k.get("group"))?.unwrap_or_default(),
            kind: text(k.get("kind"))?.unwrap_or_default(),
        }),
        Some(_) => return Err(RefError::Invalid),
    };
    let username = match r.get("userInfo") {
        None | Some(Value::Null) => None,
        Some(Value::Object(u)) => Some(text(u.get("username"))?.unwrap_or_default()),
        Some(_) => return Err(RefError::Invalid),
    };
    let dry_run = match r.get("dryRun") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(RefError::Invalid),
    };
    Ok(DecodedRequest {
        uid: text(r.get("uid"))?.unwrap_or_default(),
        kind,
        sub_resource: text(r.get("subResource"))?,
        name: text(r.get("name"))?,
        operation: text(r.get("operation"))?.unwrap_or_default(),
        username,
        object: reference_object(r.get("object"))?,
        old_object: reference_object(r.get("oldObject"))?,
        dry_run,
    })
}

fn reference_object(v: Option<&Value>) -> Result<Option<ClusterFacts>, RefError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(o @ Value::Object(_)) => {
            if let Some(name) = o.pointer("/metadata/name") {
                if !name.is_string() && !name.is_null() {
                    return Err(RefError::Invalid);
                }
            }
            Ok(Some(ClusterFacts::from_object(o)))
        }
        Some(_) => Err(RefError::Invalid),
    }
}

/// The outcome compared between the two decoders.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub new: Option<ClusterFacts>,
    pub old: Option<ClusterFacts>,
    pub allowed: bool,
    pub rule_ids: Vec<&'static str>,
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
    pub message: Option<String>,
    pub reply: Value,
}

fn outcome(
    webhook: Webhook,
    decoded: DecodedReview<'_>,
    config: &PolicyConfig,
) -> Result<Outcome, ReviewError> {
    let new = decoded.request.as_ref().and_then(|r| r.object.clone());
    let old = decoded.request.as_ref().and_then(|r| r.old_object.clone());
    let d = judge(webhook, decoded, config)?;
    Ok(Outcome {
        new,
        old,
        allowed: d.reviewed.summary.allowed,
        rule_ids: d.reviewed.summary.rule_ids.clone(),
        patch: d.patch,
        warnings: d.warnings,
        message: d.message,
        reply: serde_json::from_slice(&d.reviewed.body).expect("the reply is JSON"),
    })
}

/// What one input showed.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Both decoders agreed on everything.
    Same,
    /// `review()` refused the body with a 400; the reference did not, or refused too.
    Refused,
    /// Too deep for the reference: only "no panic" was checked.
    Unjudged,
    /// Not JSON for the reference, judged by `review()` on the fields it read (malformed
    /// only inside a skipped container).
    Lenient,
}

/// The body, shortened for a message; the whole of it is saved under
/// `$TMPDIR/eargate-fuzz-failures/` so that it can be replayed and added to the corpus.
fn shown(body: &[u8]) -> String {
    let dir = std::env::temp_dir().join("eargate-fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let name = format!("{:016x}.json", fnv(body));
    let _ = std::fs::write(dir.join(&name), body);
    let text = String::from_utf8_lossy(body);
    let short: String = text.chars().take(600).collect();
    format!(
        "{short}… ({} bytes, saved as target/fuzz-failures/{name})",
        body.len()
    )
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The property, for one body and both webhooks. Panics on a disagreement.
pub fn check(body: &[u8]) -> Verdict {
    let config = PolicyConfig::default();
    let mut verdict = Verdict::Same;
    for webhook in [Webhook::Mutate, Webhook::Validate] {
        let ours = decode(body).and_then(|d| outcome(webhook, d, &config));
        let reference = reference_decode(body);
        match (ours, reference) {
            (_, Err(RefError::TooDeep)) => verdict = Verdict::Unjudged,
            (Err(_), _) => {
                if verdict == Verdict::Same {
                    verdict = Verdict::Refused;
                }
            }
            // Not JSON for serde_json, yet judged: the scanner checks everything it reads
            // against the whole grammar, but crosses the containers it skips by bracket
            // balance and string syntax only. kube-apiserver never sends such a body (it
            // serializes the object it decoded). Counted, and shown by the round.
            (Ok(_), Err(RefError::Invalid)) => verdict = Verdict::Lenient,
            (Ok(ours), Ok(reference)) => {
                match outcome(webhook, reference, &config) {
                    Err(e) => panic!(
                        "the reference's judgement failed ({e}) where review() answered\nbody: {}",
                        shown(body)
                    ),
                    Ok(theirs) => {
                        assert!(
                        !ours.allowed || theirs.allowed,
                        "review() ALLOWED what the reference denies ({:?}, {webhook:?})\nbody: {}",
                        theirs.rule_ids,
                        shown(body)
                    );
                        if ours != theirs {
                            let mut diff = String::new();
                            if ours.new != theirs.new {
                                diff += &format!(
                                    "\n new facts: {:?}\n      vs:  {:?}",
                                    ours.new, theirs.new
                                );
                            }
                            if ours.old != theirs.old {
                                diff += &format!(
                                    "\n old facts: {:?}\n      vs:  {:?}",
                                    ours.old, theirs.old
                                );
                            }
                            if ours.reply != theirs.reply {
                                diff +=
                                    &format!("\n reply: {}\n    vs: {}", ours.reply, theirs.reply);
                            }
                            panic!("review() and the reference disagree ({webhook:?}):{diff}\nbody: {}", shown(body));
                        }
                    }
                }
            }
        }
    }
    verdict
}
