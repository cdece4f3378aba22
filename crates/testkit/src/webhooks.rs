//! The policy's two webhooks run in process on one edit, as `eargate serve` runs them:
//! `/mutate`, its patch applied, then `/validate`; and the example Cluster and JSON edits
//! the policy tests start from.

use eargate_policy::{review_detailed, Detailed, PolicyConfig, Webhook};
use serde_json::{json, Value};

use crate::fixtures::{example, Review};

/// A 32-byte secretbox key in base64.
pub const KEY_A: &str = "3q2+7wF9aZr8Xk1cQ4mV0pLsT6uYbN2eH5gJ8dK1fWo=";
/// Another 32-byte secretbox key in base64.
pub const KEY_B: &str = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpjb3JnZWdyYXVsdDE=";
/// A 16-byte key in base64: too short for secretbox.
pub const KEY_16: &str = "c2l4dGVlbi1ieXRlcy1rZQ==";

/// `examples/cluster-active.yaml`: Active, secretbox/encryption-key-2022-01, one secretRef key.
pub fn active() -> Value {
    example("cluster-active.yaml")
}

/// [`active`] with everything about encryption removed (no status, no config, gate on).
pub fn plain() -> Value {
    let mut c = active();
    remove(&mut c, "/spec/encryptionConfiguration");
    remove(&mut c, "/status/encryption");
    remove(&mut c, "/status/conditions/EncryptionInitialized");
    c
}

/// Sets the field at JSON pointer `pointer` (an object member or an array element) of
/// `obj`; its parent must exist.
pub fn set(obj: &mut Value, pointer: &str, value: Value) {
    let (parent, last) = pointer.rsplit_once('/').expect("a JSON pointer");
    let parent = if parent.is_empty() {
        &mut *obj
    } else {
        obj.pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent}"))
    };
    match parent {
        Value::Object(m) => {
            m.insert(last.to_owned(), value);
        }
        Value::Array(a) => {
            let i: usize = last.parse().expect("an array index");
            a[i] = value;
        }
        _ => panic!("{pointer}: parent is not a container"),
    }
}

/// Removes the object member at JSON pointer `pointer`, if it is there.
pub fn remove(obj: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("a JSON pointer");
    if let Some(Value::Object(m)) = obj.pointer_mut(parent) {
        m.remove(last);
    }
}

/// `obj` with each `(pointer, value)` of `edits` [`set`], in order.
pub fn with(mut obj: Value, edits: &[(&str, Value)]) -> Value {
    for (p, v) in edits {
        set(&mut obj, p, v.clone());
    }
    obj
}

/// `status.encryption` with this phase and `activeKey` as given, encrypting `secrets`.
pub fn status(phase: &str, active_key: &str) -> Value {
    json!({"phase": phase, "activeKey": active_key, "encryptedResources": ["secrets"]})
}

/// What `eargate serve` does for one edit: /mutate, patch applied, then /validate.
pub struct Run {
    /// The mutating webhook's answer.
    pub mutated: Detailed,
    /// The validating webhook's answer, on the patched object.
    pub validated: Detailed,
    /// The object after the mutating patch, when there was one.
    pub patched_object: Option<Value>,
}

/// Runs one `op` (`CREATE`, `UPDATE`, ...) of `user` on the object through both webhooks
/// with the default policy; `sub` is the subresource written, if any.
pub fn run(
    op: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    sub: Option<&str>,
    user: &str,
) -> Run {
    let config = PolicyConfig::default();
    let mut review = Review::new(op, new, old).user(user);
    if let Some(sub) = sub {
        review = review.subresource(sub);
    }
    let mut review = review.build();
    let body = serde_json::to_vec(&review).expect("a review serializes");
    let mutated = review_detailed(Webhook::Mutate, &body, &config).expect("mutate answers");
    let mut patched_object = None;
    if let Some(patch) = &mutated.patch {
        let obj = review
            .pointer_mut("/request/object")
            .expect("a request object");
        json_patch::patch(obj, patch).expect("the mutating patch applies");
        patched_object = Some(obj.clone());
    }
    let body = serde_json::to_vec(&review).expect("a review serializes");
    let validated = review_detailed(Webhook::Validate, &body, &config).expect("validate answers");
    Run {
        mutated,
        validated,
        patched_object,
    }
}

/// A user's `UPDATE` from `old` to `new`.
pub fn update(old: &Value, new: &Value) -> Run {
    run("UPDATE", Some(old), Some(new), None, "jane@example.com")
}

/// A user's `CREATE` of `new`.
pub fn create(new: &Value) -> Run {
    run("CREATE", None, Some(new), None, "jane@example.com")
}

impl Run {
    /// The validating webhook allowed the edit.
    pub fn allowed(&self) -> bool {
        self.validated.reviewed.summary.allowed
    }

    /// The ids of the rules the edit broke.
    pub fn rules(&self) -> Vec<&'static str> {
        self.validated.reviewed.summary.rule_ids.clone()
    }

    /// Everything both webhooks said (replies, warnings, messages, violations in `Display`
    /// and `Debug`), for the key-material check.
    pub fn all_text(&self) -> String {
        let mut s = String::new();
        for d in [&self.mutated, &self.validated] {
            s.push_str(&String::from_utf8_lossy(&d.reviewed.body));
            s.push('\n');
            for w in &d.warnings {
                s.push_str(w);
                s.push('\n');
            }
            s.push_str(d.message.as_deref().unwrap_or_default());
            for v in &d.decision.violations {
                s.push_str(&format!("{v} {v:?}\n"));
            }
        }
        s
    }
}
