//! The AdmissionReview codec shared by `eargate serve` and `eargate check`.
//!
//! Decoding reads only what the policy needs with typed, borrowing serde structs: every
//! other field of the (large) Cluster object is skipped by the JSON parser without being
//! built. The reply follows kube-apiserver's rules: same apiVersion/kind as the request,
//! `uid` echoed, `patch` and `patchType` together or not at all (and never from the
//! validating webhook), a denial carries `status {code: 403, reason: Forbidden}`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::facts::ClusterFacts;
use crate::names::{
    AUDIT_DECISION, AUDIT_RULES, CLUSTER_GROUP, CLUSTER_KIND, CONDITION_ENCRYPTION_INITIALIZED,
};
pub use crate::policy::PolicyConfig;
use crate::policy::{self, Decision, Operation, Request};

/// Which webhook endpoint is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// Applies the defaults; never denies.
    Mutate,
    /// Applies the defaults in memory, then judges the result.
    Validate,
}

/// The encoded reply and what was decided.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub body: Vec<u8>,
    pub summary: ReviewSummary,
}

/// What the server logs and counts; no object contents, no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSummary {
    pub uid: String,
    pub api_version: &'static str,
    pub operation: String,
    pub subresource: Option<String>,
    pub name: String,
    pub allowed: bool,
    pub rule_ids: Vec<&'static str>,
    pub warnings: usize,
    pub patched: bool,
    pub dry_run: bool,
    /// The request was for a kind other than Cluster: allowed with a warning.
    pub foreign_kind: bool,
}

/// A body that is not an AdmissionReview eargate can answer (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not a JSON AdmissionReview: {0}")]
    NotJson(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("expected kind AdmissionReview, got {0:?}")]
    WrongKind(String),
    #[error("unsupported AdmissionReview apiVersion {0:?} (want admission.k8s.io/v1 or v1beta1)")]
    UnknownVersion(String),
}

/// Everything [`review_detailed`] learned, for `eargate check` and tests.
#[derive(Debug, Clone)]
pub struct Detailed {
    pub reviewed: Reviewed,
    /// The validation verdict (empty for the mutating webhook).
    pub decision: Decision,
    /// The JSON patch sent (mutating webhook only).
    pub patch: Option<json_patch::Patch>,
    /// Warnings sent, in order.
    pub warnings: Vec<String>,
    /// The denial message sent, if denied.
    pub message: Option<String>,
}

const V1: &str = "admission.k8s.io/v1";
const V1BETA1: &str = "admission.k8s.io/v1beta1";

// ---------------------------------------------------------------- decoding

#[derive(Deserialize)]
struct ReviewIn<'a> {
    #[serde(borrow, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    #[serde(borrow, default)]
    uid: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Option<GroupVersionKind<'a>>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    operation: Cow<'a, str>,
    #[serde(borrow, default)]
    user_info: Option<UserInfo<'a>>,
    #[serde(default)]
    object: Option<ObjectIn>,
    #[serde(default)]
    old_object: Option<ObjectIn>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize, Default)]
struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct UserInfo<'a> {
    #[serde(borrow, default)]
    username: Cow<'a, str>,
}

/// The parts of an object the policy reads. Every other field is skipped.
#[derive(Deserialize, Default)]
struct ObjectIn {
    #[serde(default)]
    metadata: Lenient<MetaIn>,
    #[serde(default)]
    spec: Lenient<SpecIn>,
    #[serde(default)]
    status: Lenient<StatusIn>,
}

#[derive(Deserialize, Default)]
struct MetaIn {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpecIn {
    #[serde(default)]
    features: Lenient<OneField<FeatureKey>>,
    #[serde(default)]
    encryption_configuration: Option<Value>,
}

#[derive(Deserialize, Default)]
struct StatusIn {
    #[serde(default)]
    encryption: Option<Value>,
    #[serde(default)]
    conditions: Lenient<OneField<ConditionKey>>,
}

/// A value that is kept when it is a JSON object and otherwise skipped: objects of other
/// kinds (or broken ones) must not turn into a decode error for the whole review.
#[derive(Default)]
enum Lenient<T> {
    #[default]
    Absent,
    Object(T),
}

impl<T> Lenient<T> {
    fn get(&self) -> Option<&T> {
        match self {
            Lenient::Object(t) => Some(t),
            Lenient::Absent => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Lenient::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::Absent)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Absent)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Absent)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Absent)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Absent)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Absent)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Absent)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Which single entry of a map to keep.
trait FieldName {
    const NAME: &'static str;
}
struct FeatureKey;
impl FieldName for FeatureKey {
    const NAME: &'static str = crate::names::FEATURE_ENCRYPTION_AT_REST;
}
struct ConditionKey;
impl FieldName for ConditionKey {
    const NAME: &'static str = CONDITION_ENCRYPTION_INITIALIZED;
}

/// A map of which only the entry named `K::NAME` is kept (as JSON); the rest is skipped.
struct OneField<K>(Option<Value>, std::marker::PhantomData<K>);

impl<K> Default for OneField<K> {
    fn default() -> Self {
        OneField(None, std::marker::PhantomData)
    }
}

impl<'de, K: FieldName> Deserialize<'de> for OneField<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(std::marker::PhantomData<K>);
        impl<'de, K: FieldName> Visitor<'de> for V<K> {
            type Value = OneField<K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == K::NAME {
                        out = Some(map.next_value::<Value>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(OneField(out, std::marker::PhantomData))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl ObjectIn {
    fn into_facts(self) -> ClusterFacts {
        let name = self
            .metadata
            .get()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        let (feature, config) = match self.spec {
            Lenient::Object(spec) => (
                spec.features.get().and_then(|f| f.0.clone()),
                spec.encryption_configuration,
            ),
            Lenient::Absent => (None, None),
        };
        let (enc, init) = match self.status {
            Lenient::Object(status) => (
                status.encryption,
                status.conditions.get().and_then(|c| c.0.clone()),
            ),
            Lenient::Absent => (None, None),
        };
        ClusterFacts::from_parts(&name, feature.as_ref(), config.as_ref(), enc, init)
    }
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
/// ([`Webhook::Mutate`]) or mutation-then-validation ([`Webhook::Validate`]: kube-apiserver
/// already applied the mutating patch, so the defaults are a no-op there and the object is
/// judged as received), and encodes the reply in the request's apiVersion.
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
    let input: ReviewIn<'_> = serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages name types and positions, not contents of strings.
        ReviewError::NotJson(format!(
            "{} at line {} column {}",
            classify(&e),
            e.line(),
            e.column()
        ))
    })?;
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
    let user = req
        .user_info
        .as_ref()
        .map(|u| u.username.as_ref())
        .unwrap_or_default();
    let foreign_kind = req
        .kind
        .as_ref()
        .is_some_and(|k| k.kind != CLUSTER_KIND || k.group != CLUSTER_GROUP);
    let dry_run = req.dry_run.unwrap_or(false);

    let mut new = req.object.map(ObjectIn::into_facts);
    let old = req.old_object.map(ObjectIn::into_facts);
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
        warnings.push(format!(
            "eargate only judges {CLUSTER_KIND}.{CLUSTER_GROUP}; this request was allowed unchecked (check the webhook's rules)"
        ));
    } else if let Some(op) = operation {
        // Defaults first, as kube-apiserver runs mutating before validating webhooks.
        if mutable {
            if let Some(new) = new.as_mut().filter(|n| n.problems.is_empty()) {
                let present = new.resources_present;
                let plan = new.normalized_resources();
                let changes = new.apply_defaults();
                if webhook == Webhook::Mutate {
                    if let Some(plan) = plan {
                        patch = Some(resources_patch(present, &plan.resources));
                    }
                    warnings.extend(changes);
                }
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
        warnings.push(format!(
            "unknown operation {:?}; allowed unchecked",
            truncate(&req.operation)
        ));
    }

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
            warnings: &warnings,
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
        warnings,
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

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected field type",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

/// Short, printable excerpt of a value from outside (never object contents).
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
