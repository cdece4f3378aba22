//! Shared helpers: the real-sized fixtures from `examples/` and a way to run a review.
#![allow(dead_code)]

use std::path::PathBuf;

use eargate_policy::review::{review_detailed, Detailed, PolicyConfig, Webhook};
use eargate_testkit::fixtures::Review;
use serde_json::{json, Value};

pub const KEY_A: &str = "3q2+7wF9aZr8Xk1cQ4mV0pLsT6uYbN2eH5gJ8dK1fWo="; // 32 bytes
pub const KEY_B: &str = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpjb3JnZWdyYXVsdDE="; // 32 bytes
pub const KEY_16: &str = "c2l4dGVlbi1ieXRlcy1rZQ=="; // 16 bytes
pub const RECONCILER: &str = "system:serviceaccount:eargate-system:eargate-reconciler";

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// An example file as JSON.
pub fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(examples_dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `examples/cluster-active.yaml`: Active, secretbox/encryption-key-2022-01, one secretRef key.
pub fn active() -> Value {
    example("cluster-active.yaml")
}

/// A fixture with everything about encryption removed (no status, no config, gate on).
pub fn plain() -> Value {
    let mut c = active();
    remove(&mut c, "/spec/encryptionConfiguration");
    remove(&mut c, "/status/encryption");
    remove(&mut c, "/status/conditions/EncryptionInitialized");
    c
}

pub fn set(obj: &mut Value, pointer: &str, value: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
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
            let i: usize = last.parse().unwrap();
            a[i] = value;
        }
        _ => panic!("{pointer}: parent is not a container"),
    }
}

pub fn remove(obj: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    if let Some(Value::Object(m)) = obj.pointer_mut(parent) {
        m.remove(last);
    }
}

pub fn with(mut obj: Value, edits: &[(&str, Value)]) -> Value {
    for (p, v) in edits {
        set(&mut obj, p, v.clone());
    }
    obj
}

pub fn key_ref(name: &str) -> Value {
    json!({"name": name, "secretRef": {"name": name, "key": "key"}})
}

pub fn key_val(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

pub fn status(phase: &str, active_key: &str) -> Value {
    json!({"phase": phase, "activeKey": active_key, "encryptedResources": ["secrets"]})
}

/// What `eargate serve` does for one edit: /mutate, patch applied, then /validate.
pub struct Run {
    pub mutated: Detailed,
    pub validated: Detailed,
    pub patched_object: Option<Value>,
}

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
    let body = serde_json::to_vec(&review).unwrap();
    let mutated = review_detailed(Webhook::Mutate, &body, &config).unwrap();
    let mut patched_object = None;
    if let Some(patch) = &mutated.patch {
        let obj = review.pointer_mut("/request/object").unwrap();
        json_patch::patch(obj, patch).expect("the mutating patch applies");
        patched_object = Some(obj.clone());
    }
    let body = serde_json::to_vec(&review).unwrap();
    let validated = review_detailed(Webhook::Validate, &body, &config).unwrap();
    Run {
        mutated,
        validated,
        patched_object,
    }
}

pub fn update(old: &Value, new: &Value) -> Run {
    run("UPDATE", Some(old), Some(new), None, "jane@example.com")
}

pub fn create(new: &Value) -> Run {
    run("CREATE", None, Some(new), None, "jane@example.com")
}

impl Run {
    pub fn allowed(&self) -> bool {
        self.validated.reviewed.summary.allowed
    }
    pub fn rules(&self) -> Vec<&'static str> {
        self.validated.reviewed.summary.rule_ids.clone()
    }
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
