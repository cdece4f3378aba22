//! The AdmissionReview codec shared by `eargate serve` and `eargate check`.
//!
//! Decoding reads only what the policy needs with typed, borrowing serde structs: every
//! other field of the (large) Cluster object is skipped by the JSON parser without being
//! built. The reply follows kube-apiserver's rules: same apiVersion/kind as the request,
//! `uid` echoed, `patch` and `patchType` together or not at all (and never from the
//! validating webhook), a denial carries `status {code: 403, reason: Forbidden}`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::facts::ClusterFacts;
use crate::names::{
    AUDIT_DECISION, AUDIT_RULES, CLUSTER_GROUP, CLUSTER_KIND, CONDITION_ENCRYPTION_INITIALIZED,
    FEATURE_ENCRYPTION_AT_REST,
};
use crate::policy::PolicyConfig;
use crate::policy::{self, Decision, Operation, Request, Warning};
use crate::rules;
use crate::scan::{ScanError, Scanner};

/// Which webhook endpoint is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// Applies the defaults; never denies.
    Mutate,
    /// Judges the object as received (see [`policy::validate`]): it never applies the
    /// mutating webhook's normalisation, and assumes only that no resources means
    /// `[secrets]`.
    Validate,
}

/// The encoded reply and what was decided.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// The AdmissionReview reply, JSON encoded.
    pub body: Vec<u8>,
    /// What was decided, for logs and metrics.
    pub summary: ReviewSummary,
}

/// What the server logs and counts; no object contents, no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSummary {
    /// `request.uid`, echoed in the reply.
    pub uid: String,
    /// The AdmissionReview version of request and reply.
    pub api_version: &'static str,
    /// `request.operation`, shortened if long.
    pub operation: String,
    /// `request.subResource`, if any.
    pub subresource: Option<String>,
    /// The Cluster's name.
    pub name: String,
    /// The verdict.
    pub allowed: bool,
    /// The ids of the rules broken, in table order.
    pub rule_ids: Vec<&'static str>,
    /// How many warnings the reply carries.
    pub warnings: usize,
    /// The reply carries a JSON patch.
    pub patched: bool,
    /// `request.dryRun`: nothing will be stored.
    pub dry_run: bool,
    /// The request was for a kind other than Cluster: allowed with a warning.
    pub foreign_kind: bool,
}

/// A body that is not an AdmissionReview eargate can answer (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The body does not parse as JSON (or is not the shape of an AdmissionReview).
    #[error("body is not a JSON AdmissionReview: {0}")]
    NotJson(String),
    /// No `request` in the review.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// `kind` is not `AdmissionReview`.
    #[error("expected kind AdmissionReview, got {0:?}")]
    WrongKind(String),
    /// `apiVersion` is neither `admission.k8s.io/v1` nor `v1beta1`.
    #[error("unsupported AdmissionReview apiVersion {0:?} (want admission.k8s.io/v1 or v1beta1)")]
    UnknownVersion(String),
}

/// Everything [`review_detailed`] learned, for `eargate check` and tests.
#[derive(Debug, Clone)]
pub struct Detailed {
    /// The encoded reply and its summary.
    pub reviewed: Reviewed,
    /// The validation verdict (empty for the mutating webhook).
    pub decision: Decision,
    /// The JSON patch sent (mutating webhook only).
    pub patch: Option<json_patch::Patch>,
    /// The warnings sent, in order, with their id and field.
    pub warnings_detailed: Vec<Warning>,
    /// Their texts, as sent (each the `Display` of the same warning in `warnings_detailed`).
    pub warnings: Vec<String>,
    /// The denial message sent, if denied.
    pub message: Option<String>,
}

const V1: &str = "admission.k8s.io/v1";
const V1BETA1: &str = "admission.k8s.io/v1beta1";

// ---------------------------------------------------------------- decoding
//
// The scanner ([`crate::scan`]) locates the few fields the policy reads and skips the rest
// of both Cluster objects without building or even tokenizing them through serde; each
// located field is then decoded (and fully checked) by serde_json into a borrowed type.

struct ReviewIn<'a> {
    api_version: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    request: Option<RequestIn<'a>>,
}

struct RequestIn<'a> {
    uid: Cow<'a, str>,
    kind: Option<GroupKind<'a>>,
    sub_resource: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    operation: Cow<'a, str>,
    user_info: Option<UserInfo<'a>>,
    object: Option<ObjectIn<'a>>,
    old_object: Option<ObjectIn<'a>>,
    dry_run: Option<bool>,
}

/// `request.kind`: the group and kind (the version does not matter to the policy).
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
pub struct GroupKind<'a> {
    /// The API group, empty for the core group.
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    /// The kind, e.g. `Cluster`.
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct UserInfo<'a> {
    #[serde(borrow, default)]
    username: Cow<'a, str>,
}

/// A string borrowed from the body when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The parts of an object the policy reads. `metadata`, `spec`, `status` and the maps in
/// them that are not objects count as absent (the policy then reports what is missing).
#[derive(Default)]
struct ObjectIn<'a> {
    name: Option<String>,
    feature: Option<Value>,
    /// `spec.encryptionConfiguration` as JSON text (decoded by the facts).
    config: Option<&'a str>,
    /// Checked JSON text (compared and read without building a tree).
    status_encryption: Option<&'a str>,
    initialized: Option<&'a str>,
}

impl From<ScanError> for ReviewError {
    fn from(e: ScanError) -> Self {
        ReviewError::NotJson(e.to_string())
    }
}

/// Decodes the value at the cursor; `null` is `None`. `field` names it in the error (never
/// its contents: a value could be key material).
fn typed<'a, T: Deserialize<'a>>(
    sc: &mut Scanner<'a>,
    field: &str,
) -> Result<Option<T>, ReviewError> {
    serde_json::from_str::<Option<T>>(sc.value_span()?)
        .map_err(|_| ReviewError::NotJson(format!("unexpected type of {field}")))
}

/// The text of the value at the cursor, checked against the whole JSON grammar (the
/// scanner's skip is lenient inside containers).
fn checked<'a>(sc: &mut Scanner<'a>, field: &str) -> Result<&'a str, ReviewError> {
    sc.checked_span()
        .map_err(|_| ReviewError::NotJson(format!("invalid JSON in {field}")))
}

fn text<'a>(sc: &mut Scanner<'a>, field: &str) -> Result<Option<Cow<'a, str>>, ReviewError> {
    Ok(typed::<Text<'a>>(sc, field)?.map(|t| t.0))
}

fn decode_review(body: &[u8]) -> Result<ReviewIn<'_>, ReviewError> {
    let mut sc = Scanner::new(body)?;
    let mut out = ReviewIn {
        api_version: None,
        kind: None,
        request: None,
    };
    let is_object = sc.object(["apiVersion", "kind", "request"], |i, sc| {
        match i {
            0 => out.api_version = text(sc, "apiVersion")?,
            1 => out.kind = text(sc, "kind")?,
            _ => out.request = decode_request(sc)?,
        }
        Ok::<_, ReviewError>(())
    })?;
    if !is_object {
        return Err(ReviewError::NotJson("not a JSON object".into()));
    }
    sc.end()?;
    Ok(out)
}

fn decode_request<'a>(sc: &mut Scanner<'a>) -> Result<Option<RequestIn<'a>>, ReviewError> {
    if sc.null() {
        return Ok(None);
    }
    let mut r = RequestIn {
        uid: Cow::Borrowed(""),
        kind: None,
        sub_resource: None,
        name: None,
        operation: Cow::Borrowed(""),
        user_info: None,
        object: None,
        old_object: None,
        dry_run: None,
    };
    let names = [
        "uid",
        "kind",
        "subResource",
        "name",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
    ];
    let is_object = sc.object(names, |i, sc| {
        match i {
            0 => r.uid = text(sc, "request.uid")?.unwrap_or_default(),
            1 => r.kind = typed(sc, "request.kind")?,
            2 => r.sub_resource = text(sc, "request.subResource")?,
            3 => r.name = text(sc, "request.name")?,
            4 => r.operation = text(sc, "request.operation")?.unwrap_or_default(),
            5 => r.user_info = typed(sc, "request.userInfo")?,
            6 => r.object = decode_object(sc, "request.object")?,
            7 => r.old_object = decode_object(sc, "request.oldObject")?,
            _ => r.dry_run = typed(sc, "request.dryRun")?,
        }
        Ok::<_, ReviewError>(())
    })?;
    if !is_object {
        return Err(ReviewError::NotJson(
            "unexpected type of request: not an object".into(),
        ));
    }
    Ok(Some(r))
}

/// One pass over a Cluster: descends into the few maps the policy reads, skips the rest.
fn decode_object<'a>(
    sc: &mut Scanner<'a>,
    field: &str,
) -> Result<Option<ObjectIn<'a>>, ReviewError> {
    if sc.null() {
        return Ok(None);
    }
    let mut out = ObjectIn::default();
    let is_object = sc.object(["metadata", "spec", "status"], |i, sc| {
        match i {
            0 => {
                sc.object(["name"], |_, sc| {
                    out.name = typed(sc, "metadata.name")?;
                    Ok::<_, ReviewError>(())
                })?;
            }
            1 => {
                sc.object(["features", "encryptionConfiguration"], |i, sc| {
                    if i == 0 {
                        sc.object([FEATURE_ENCRYPTION_AT_REST], |_, sc| {
                            out.feature = typed(sc, "spec.features")?;
                            Ok::<_, ReviewError>(())
                        })?;
                    } else {
                        out.config = Some(sc.value_span()?);
                    }
                    Ok::<_, ReviewError>(())
                })?;
            }
            _ => {
                sc.object(["encryption", "conditions"], |i, sc| {
                    if i == 0 {
                        out.status_encryption = Some(checked(sc, "status.encryption")?);
                    } else {
                        sc.object([CONDITION_ENCRYPTION_INITIALIZED], |_, sc| {
                            out.initialized = Some(checked(sc, "status.conditions")?);
                            Ok::<_, ReviewError>(())
                        })?;
                    }
                    Ok::<_, ReviewError>(())
                })?;
            }
        }
        Ok::<_, ReviewError>(())
    })?;
    if !is_object {
        return Err(ReviewError::NotJson(format!(
            "unexpected type of {field}: not an object"
        )));
    }
    Ok(Some(out))
}

impl ObjectIn<'_> {
    fn into_facts(self) -> Result<ClusterFacts, ReviewError> {
        let mut facts = ClusterFacts::from_parts(
            self.name.as_deref().unwrap_or_default(),
            self.feature.as_ref(),
            None,
            self.status_encryption,
            self.initialized,
        );
        if let Some(config) = self.config {
            facts.decode_config_text(config).map_err(|_| {
                ReviewError::NotJson("invalid JSON in spec.encryptionConfiguration".into())
            })?;
        }
        Ok(facts)
    }
}

/// An AdmissionReview as the policy reads it: the request's fields and each Cluster's
/// facts. [`decode`] builds it with the scanner; the tests build it with a plain
/// `serde_json::Value` decoder as a reference, and both go through the same [`judge`].
#[derive(Debug, Clone)]
pub struct DecodedReview<'a> {
    /// The review's `apiVersion`.
    pub api_version: Option<Cow<'a, str>>,
    /// The review's `kind`.
    pub kind: Option<Cow<'a, str>>,
    /// The request, absent in a malformed review.
    pub request: Option<DecodedRequest<'a>>,
}

/// The fields of `request` the policy reads.
#[derive(Debug, Clone)]
pub struct DecodedRequest<'a> {
    /// `request.uid`.
    pub uid: Cow<'a, str>,
    /// `request.kind`.
    pub kind: Option<GroupKind<'a>>,
    /// `request.subResource`.
    pub sub_resource: Option<Cow<'a, str>>,
    /// `request.name`.
    pub name: Option<Cow<'a, str>>,
    /// `request.operation`.
    pub operation: Cow<'a, str>,
    /// `userInfo.username` (`None` when `userInfo` is absent).
    pub username: Option<Cow<'a, str>>,
    /// The facts of `request.object`.
    pub object: Option<ClusterFacts>,
    /// The facts of `request.oldObject`.
    pub old_object: Option<ClusterFacts>,
    /// `request.dryRun`.
    pub dry_run: Option<bool>,
}

/// Decodes a review body with the field-locating scanner.
pub fn decode(body: &[u8]) -> Result<DecodedReview<'_>, ReviewError> {
    let input = decode_review(body)?;
    let request = match input.request {
        None => None,
        Some(r) => Some(DecodedRequest {
            uid: r.uid,
            kind: r.kind,
            sub_resource: r.sub_resource,
            name: r.name,
            operation: r.operation,
            username: r.user_info.map(|u| u.username),
            object: r.object.map(ObjectIn::into_facts).transpose()?,
            old_object: r.old_object.map(ObjectIn::into_facts).transpose()?,
            dry_run: r.dry_run,
        }),
    };
    Ok(DecodedReview {
        api_version: input.api_version,
        kind: input.kind,
        request,
    })
}

// ---------------------------------------------------------------- encoding

#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    audit_annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct StatusOut {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: String,
}

// ---------------------------------------------------------------- the review

/// Decodes an `admission.k8s.io/v1` or `v1beta1` AdmissionReview, runs mutation
/// ([`Webhook::Mutate`]) or validation ([`Webhook::Validate`]: of the object as received,
/// which kube-apiserver sends after applying the mutating patch when that webhook ran), and
/// encodes the reply in the request's apiVersion.
pub fn review(
    webhook: Webhook,
    body: &[u8],
    config: &PolicyConfig,
) -> Result<Reviewed, ReviewError> {
    review_detailed(webhook, body, config).map(|d| d.reviewed)
}

/// [`review`], also returning the decision, the patch and the texts sent.
pub fn review_detailed(
    webhook: Webhook,
    body: &[u8],
    config: &PolicyConfig,
) -> Result<Detailed, ReviewError> {
    judge(webhook, decode(body)?, config)
}

/// Everything after decoding: the version and kind checks, defaults, the policy, the reply.
pub fn judge(
    webhook: Webhook,
    input: DecodedReview<'_>,
    config: &PolicyConfig,
) -> Result<Detailed, ReviewError> {
    let api_version = match input.api_version.as_deref() {
        Some(V1) => V1,
        Some(V1BETA1) => V1BETA1,
        Some(other) => return Err(ReviewError::UnknownVersion(truncate(other))),
        None => return Err(ReviewError::UnknownVersion(String::new())),
    };
    match input.kind.as_deref() {
        Some("AdmissionReview") => {}
        other => return Err(ReviewError::WrongKind(truncate(other.unwrap_or_default()))),
    }
    let req = input.request.ok_or(ReviewError::MissingRequest)?;

    let operation = Operation::parse(&req.operation);
    let subresource = req
        .sub_resource
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let user = req.username.as_deref().unwrap_or_default();
    let foreign_kind = req
        .kind
        .as_ref()
        .is_some_and(|k| k.kind != CLUSTER_KIND || k.group != CLUSTER_GROUP);
    let dry_run = req.dry_run.unwrap_or(false);

    let mut new = req.object;
    let old = req.old_object;
    let name = req
        .name
        .as_deref()
        .map(str::to_owned)
        .filter(|n| !n.is_empty())
        .or_else(|| new.as_ref().map(|n| n.name.clone()))
        .or_else(|| old.as_ref().map(|o| o.name.clone()))
        .unwrap_or_default();

    let mut warnings = Vec::new();
    let mut decision = Decision::default();
    let mut patch = None;
    let on_main = subresource.is_none();
    let mutable = matches!(operation, Some(Operation::Create | Operation::Update)) && on_main;

    if foreign_kind {
        warnings.push(Warning::new(
            &rules::EARW12,
            "request.kind",
            format!(
                "eargate only judges {CLUSTER_KIND}.{CLUSTER_GROUP}; this request was allowed unchecked (check the webhook's rules)"
            ),
        ));
    } else if let Some(op) = operation {
        // The mutating webhook fills the defaults. The validating webhook judges the object
        // as received: when the mutating webhook did not run, what it would have fixed is
        // denied (the policy assumes only that no resources means [secrets]).
        if mutable && webhook == Webhook::Mutate {
            if let Some(new) = new.as_mut().filter(|n| n.problems.is_empty()) {
                let present = new.resources_present;
                if let Some(plan) = new.normalized_resources() {
                    patch = Some(resources_patch(present, &plan.resources));
                }
                warnings.extend(new.apply_defaults());
            }
        }
        if webhook == Webhook::Validate {
            decision = policy::validate(&Request {
                operation: op,
                subresource: subresource.as_deref(),
                user,
                old: old.as_ref(),
                new: new.as_ref(),
                config,
            });
            warnings.extend(decision.warnings.iter().cloned());
        }
    } else {
        warnings.push(Warning::new(
            &rules::EARW13,
            "request.operation",
            format!(
                "unknown operation {:?}; allowed unchecked",
                truncate(&req.operation)
            ),
        ));
    }

    let texts: Vec<String> = warnings.iter().map(Warning::to_string).collect();
    let allowed = decision.allowed();
    let rule_ids = decision.rule_ids();
    let message = (!allowed).then(|| decision.message(&name));
    let mut audit = BTreeMap::new();
    audit.insert(
        AUDIT_DECISION,
        if allowed { "allowed" } else { "denied" }.to_owned(),
    );
    if !rule_ids.is_empty() {
        audit.insert(AUDIT_RULES, rule_ids.join(","));
    }
    let patch_b64 = patch.as_ref().map(|p: &json_patch::Patch| {
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(p).expect("a JSON patch serializes"))
    });
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: &req.uid,
            allowed,
            status: message.clone().map(|message| StatusOut {
                status: "Failure",
                code: 403,
                reason: "Forbidden",
                message,
            }),
            patch_type: patch_b64.as_ref().map(|_| "JSONPatch"),
            patch: patch_b64,
            warnings: &texts,
            audit_annotations: audit,
        },
    };
    let body = serde_json::to_vec(&out).expect("the reply serializes");
    let summary = ReviewSummary {
        uid: req.uid.into_owned(),
        api_version,
        operation: truncate(&req.operation),
        subresource,
        name,
        allowed,
        rule_ids,
        warnings: warnings.len(),
        patched: patch.is_some(),
        dry_run,
        foreign_kind,
    };
    Ok(Detailed {
        reviewed: Reviewed { body, summary },
        decision,
        patch,
        warnings_detailed: warnings,
        warnings: texts,
        message,
    })
}

/// The minimal patch setting `spec.encryptionConfiguration.resources`.
fn resources_patch(present: bool, resources: &[String]) -> json_patch::Patch {
    let path = jsonptr::PointerBuf::parse("/spec/encryptionConfiguration/resources")
        .expect("a valid pointer");
    let value = Value::from(resources.to_vec());
    let op = if present {
        json_patch::PatchOperation::Replace(json_patch::ReplaceOperation { path, value })
    } else {
        json_patch::PatchOperation::Add(json_patch::AddOperation { path, value })
    };
    json_patch::Patch(vec![op])
}

/// Short, printable excerpt of a value from outside (never object contents).
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
