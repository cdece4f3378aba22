//! What the policy knows about one Cluster object: only the fields it reads, decoded
//! leniently so that a field of the wrong type becomes a clear violation (rule EAR000)
//! naming the field instead of a decode error for the whole request.
//!
//! Facts are built from the small JSON subtrees the review codec captures
//! (`spec.features.encryptionAtRest`, `spec.encryptionConfiguration`, `status.encryption`
//! and the `EncryptionInitialized` condition), or from a typed [`Cluster`].

use serde_json::Value;

use crate::model::{
    Cluster, EncryptionConfiguration, EncryptionPhase, SecretKeyRef,
    SecretboxEncryptionConfiguration, SecretboxKey,
};
use crate::names::{
    ACTIVE_KEY_IDENTITY, CONDITION_ENCRYPTION_INITIALIZED, FEATURE_ENCRYPTION_AT_REST,
};
use crate::resources::{normalize_resources, Normalized};
use crate::rules;
use crate::scan::{ScanError, Scanner};
use crate::status::secretbox_key_name;
use crate::{Violation, Warning};

/// The encryption-related facts of one Cluster object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFacts {
    /// `metadata.name`.
    pub name: String,
    /// `spec.features.encryptionAtRest == true`.
    pub feature_gate: bool,
    /// `spec.encryptionConfiguration` (absent or `null` is `None`).
    pub config: Option<EncryptionConfiguration>,
    /// Whether `spec.encryptionConfiguration.resources` was written at all (for the patch).
    pub resources_present: bool,
    /// `status.encryption` is present.
    pub status_present: bool,
    /// `status.encryption.phase`, when it is one of the known phases.
    pub phase: Option<EncryptionPhase>,
    /// `status.encryption.phase` as written (for messages about unknown phases).
    pub phase_raw: Option<String>,
    /// `status.encryption.activeKey`, when set.
    pub active_key: Option<String>,
    /// The `EncryptionInitialized` condition is `"True"`.
    pub initialized: bool,
    /// `status.encryption` as JSON (rule EAR014 compares it).
    pub status_encryption_raw: Option<RawJson>,
    /// The `EncryptionInitialized` condition as JSON (rule EAR014 compares it).
    pub initialized_raw: Option<RawJson>,
    /// Fields of the wrong type (rule EAR000).
    pub problems: Vec<Violation>,
}

const CFG: &str = "spec.encryptionConfiguration";

/// A JSON value kept as its compact text and compared by meaning: the same text is equal
/// (the usual case, both copies written by kube-apiserver's serializer); different texts
/// are parsed and compared as values. Keeping the text spares building a tree for every
/// review just to compare two copies that almost always match.
#[derive(Debug, Clone)]
pub struct RawJson(String);

impl RawJson {
    pub fn new(text: &str) -> Self {
        RawJson(text.to_owned())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
            || matches!(
                (
                    serde_json::from_str::<Value>(&self.0),
                    serde_json::from_str::<Value>(&other.0),
                ),
                (Ok(a), Ok(b)) if a == b
            )
    }
}

/// The string fields `names` of the JSON object `text` (other types and shapes: `None`).
/// A field given twice counts with its last copy, as in Kubernetes' own decoder (the scanner
/// refuses duplicates, so that case is read through a `Value`).
fn string_fields<const N: usize>(text: &str, names: [&str; N]) -> [Option<String>; N] {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    let scanned = Scanner::over(text).object(names, |i, sc| {
        out[i] = serde_json::from_str::<String>(sc.value_span()?).ok();
        Ok::<_, ScanError>(())
    });
    if scanned.is_err() {
        let object = serde_json::from_str::<Value>(text).ok();
        let object = object.as_ref().and_then(Value::as_object);
        out = std::array::from_fn(|i| {
            object
                .and_then(|o| o.get(names[i]))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn problem(field: String, message: String) -> Violation {
    Violation {
        rule: &rules::EAR000,
        field,
        key: None,
        message,
    }
}

impl ClusterFacts {
    /// Builds facts from the captured JSON parts of an object.
    pub fn from_parts(
        name: &str,
        feature: Option<&Value>,
        config: Option<&Value>,
        status_encryption: Option<&str>,
        initialized: Option<&str>,
    ) -> Self {
        let mut facts = ClusterFacts {
            name: name.to_owned(),
            ..Default::default()
        };
        match feature {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => facts.feature_gate = *b,
            Some(other) => facts.problems.push(problem(
                format!("spec.features.{FEATURE_ENCRYPTION_AT_REST}"),
                format!("must be a boolean (true or false), got {}; write `{FEATURE_ENCRYPTION_AT_REST}: true` without quotes", type_name(other)),
            )),
        }
        if let Some(cfg) = config {
            facts.decode_config(cfg);
        }
        // `status.encryption` and the condition arrive as JSON text (checked JSON: the
        // review codec and the callers below hand over what serde_json accepted).
        let status_encryption = status_encryption.filter(|t| *t != "null");
        let initialized = initialized.filter(|t| *t != "null");
        if let Some(enc) = status_encryption {
            // Present even when of the wrong shape: be conservative.
            facts.status_present = true;
            let [phase, active_key] = string_fields(enc, ["phase", "activeKey"]);
            if let Some(p) = phase {
                facts.phase = match p.as_str() {
                    "Pending" => Some(EncryptionPhase::Pending),
                    "EncryptionNeeded" => Some(EncryptionPhase::EncryptionNeeded),
                    "Active" => Some(EncryptionPhase::Active),
                    "Failed" => Some(EncryptionPhase::Failed),
                    _ => None,
                };
                facts.phase_raw = Some(p);
            }
            facts.active_key = active_key.filter(|k| !k.is_empty());
        }
        if let Some(init) = initialized {
            let [status] = string_fields(init, ["status"]);
            facts.initialized = status.as_deref() == Some("True");
        }
        facts.status_encryption_raw = status_encryption.map(RawJson::new);
        facts.initialized_raw = initialized.map(RawJson::new);
        facts
    }

    /// Builds facts from a typed Cluster (used by the reconciler and in tests).
    pub fn from_cluster(cluster: &Cluster) -> Self {
        let feature = cluster
            .spec
            .features
            .get(FEATURE_ENCRYPTION_AT_REST)
            .map(|b| Value::Bool(*b));
        let config = cluster
            .spec
            .encryption_configuration
            .as_ref()
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null));
        let status = cluster.status.as_ref();
        let enc = status
            .and_then(|s| s.encryption.as_ref())
            .and_then(|e| serde_json::to_string(e).ok());
        let init = status
            .and_then(|s| s.conditions.get(CONDITION_ENCRYPTION_INITIALIZED))
            .and_then(|c| serde_json::to_string(c).ok());
        let mut facts = Self::from_parts(
            cluster.metadata.name.as_deref().unwrap_or_default(),
            feature.as_ref(),
            config.as_ref(),
            enc.as_deref(),
            init.as_deref(),
        );
        // `resources` is skipped when empty on serialize; the typed value knows nothing more.
        facts.resources_present = cluster
            .spec
            .encryption_configuration
            .as_ref()
            .is_some_and(|c| !c.resources.is_empty());
        facts
    }

    /// Builds facts from a whole Cluster object as JSON.
    pub fn from_object(object: &Value) -> Self {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Self::from_parts(
            name,
            object.pointer("/spec/features/encryptionAtRest"),
            object.pointer("/spec/encryptionConfiguration"),
            object
                .pointer("/status/encryption")
                .map(Value::to_string)
                .as_deref(),
            object
                .pointer("/status/conditions")
                .and_then(|c| c.as_object())
                .and_then(|c| c.get(CONDITION_ENCRYPTION_INITIALIZED))
                .map(Value::to_string)
                .as_deref(),
        )
    }

    /// `spec.encryptionConfiguration` given as JSON text (the review codec's path). Well-typed
    /// text, by far the usual case, is decoded straight into the model without building a
    /// `Value` tree; anything else takes the lenient `Value` path that names each wrong field.
    /// Both give the same facts for well-typed input (tested below). Errors only when the
    /// text is not JSON at all.
    pub fn decode_config_text(&mut self, text: &str) -> Result<(), serde_json::Error> {
        if let Ok(typed) = serde_json::from_str::<Option<MapOnly<ConfigIn>>>(text) {
            if let Some(MapOnly(c)) = typed {
                self.resources_present = c.resources.is_some();
                self.config = Some(c.into_model());
            }
            return Ok(());
        }
        let v: Value = serde_json::from_str(text)?;
        self.decode_config(&v);
        Ok(())
    }

    fn decode_config(&mut self, v: &Value) {
        let map = match v {
            Value::Null => return,
            Value::Object(map) => map,
            other => {
                self.problems.push(problem(
                    CFG.into(),
                    format!("must be an object, got {}", type_name(other)),
                ));
                return;
            }
        };
        let mut cfg = EncryptionConfiguration::default();
        match map.get("enabled") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => cfg.enabled = *b,
            Some(other) => self.problems.push(problem(
                format!("{CFG}.enabled"),
                format!("must be a boolean (true or false), got {}; write `enabled: true` without quotes", type_name(other)),
            )),
        }
        match map.get("resources") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                self.resources_present = true;
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => cfg.resources.push(s.clone()),
                        other => self.problems.push(problem(
                            format!("{CFG}.resources[{i}]"),
                            format!("must be a string (a plural, lowercase resource name such as secrets), got {}", type_name(other)),
                        )),
                    }
                }
            }
            Some(other) => self.problems.push(problem(
                format!("{CFG}.resources"),
                format!(
                    "must be a list of resource names such as [secrets], got {}",
                    type_name(other)
                ),
            )),
        }
        match map.get("secretbox") {
            None | Some(Value::Null) => {}
            Some(Value::Object(sb)) => {
                let mut secretbox = SecretboxEncryptionConfiguration::default();
                match sb.get("keys") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(keys)) => {
                        for (i, key) in keys.iter().enumerate() {
                            if let Some(k) = self.decode_key(i, key) {
                                secretbox.keys.push(k);
                            }
                        }
                    }
                    Some(other) => self.problems.push(problem(
                        format!("{CFG}.secretbox.keys"),
                        format!("must be a list of keys, got {}", type_name(other)),
                    )),
                }
                cfg.secretbox = Some(secretbox);
            }
            Some(other) => self.problems.push(problem(
                format!("{CFG}.secretbox"),
                format!(
                    "must be an object with a keys list, got {}",
                    type_name(other)
                ),
            )),
        }
        self.config = Some(cfg);
    }

    fn decode_key(&mut self, i: usize, v: &Value) -> Option<SecretboxKey> {
        let path = format!("{CFG}.secretbox.keys[{i}]");
        let Value::Object(map) = v else {
            self.problems.push(problem(
                path,
                format!(
                    "must be an object with name and value or secretRef, got {}",
                    type_name(v)
                ),
            ));
            return None;
        };
        let mut key = SecretboxKey::default();
        let mut ok = true;
        match map.get("name") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => key.name = s.clone(),
            Some(other) => {
                ok = false;
                self.problems.push(problem(
                    format!("{path}.name"),
                    format!("must be a string, got {}", type_name(other)),
                ));
            }
        }
        let who = if key.name.is_empty() {
            format!("key #{i}")
        } else {
            format!("key {:?}", key.name)
        };
        match map.get("value") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => key.value = Some(s.clone()),
            Some(other) => {
                ok = false;
                // Never echo the value, whatever its type.
                self.problems.push(problem(
                    format!("{path}.value"),
                    format!(
                        "{who}: must be a string (base64 of 32 bytes), got {}",
                        type_name(other)
                    ),
                ));
            }
        }
        match map.get("secretRef") {
            None | Some(Value::Null) => {}
            Some(Value::Object(r)) => {
                let mut sr = SecretKeyRef::default();
                for (field, slot) in [("name", &mut sr.name), ("key", &mut sr.key)] {
                    match r.get(field) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) => *slot = s.clone(),
                        Some(other) => {
                            ok = false;
                            self.problems.push(problem(
                                format!("{path}.secretRef.{field}"),
                                format!("{who}: must be a string, got {}", type_name(other)),
                            ));
                        }
                    }
                }
                match r.get("optional") {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(b)) => sr.optional = Some(*b),
                    Some(other) => {
                        ok = false;
                        self.problems.push(problem(
                            format!("{path}.secretRef.optional"),
                            format!("{who}: must be a boolean, got {}", type_name(other)),
                        ));
                    }
                }
                key.secret_ref = Some(sr);
            }
            Some(other) => {
                ok = false;
                self.problems.push(problem(
                    format!("{path}.secretRef"),
                    format!(
                        "{who}: must be an object {{name, key}}, got {}",
                        type_name(other)
                    ),
                ));
            }
        }
        ok.then_some(key)
    }

    /// `spec.encryptionConfiguration.enabled`.
    pub fn enabled(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.enabled)
    }

    /// The secretbox keys (empty when none).
    pub fn keys(&self) -> &[SecretboxKey] {
        self.config
            .as_ref()
            .and_then(|c| c.secretbox.as_ref())
            .map(|s| s.keys.as_slice())
            .unwrap_or_default()
    }

    /// Encryption is active: `status.encryption` present or `EncryptionInitialized` is True.
    pub fn is_active(&self) -> bool {
        self.status_present || self.initialized
    }

    /// The secretbox key named by `status.encryption.activeKey`.
    pub fn active_secretbox_key(&self) -> Option<&str> {
        self.active_key.as_deref().and_then(secretbox_key_name)
    }

    /// Data may still be sealed: active, unless fully decrypted (phase `Active` with
    /// `activeKey: identity`).
    pub fn may_hold_sealed_data(&self) -> bool {
        self.is_active()
            && !(self.phase == Some(EncryptionPhase::Active)
                && self.active_key.as_deref() == Some(ACTIVE_KEY_IDENTITY))
    }

    /// The mutating webhook's defaults for this object (`None` when nothing to do).
    pub fn normalized_resources(&self) -> Option<Normalized> {
        let cfg = self.config.as_ref()?;
        let n = normalize_resources(&cfg.resources, cfg.enabled);
        (n.resources != cfg.resources).then_some(n)
    }

    /// Applies the defaults in place (what kube-apiserver stores after the mutating webhook)
    /// and returns one warning per change.
    pub fn apply_defaults(&mut self) -> Vec<Warning> {
        match self.normalized_resources() {
            Some(n) => {
                if let Some(cfg) = self.config.as_mut() {
                    cfg.resources = n.resources;
                }
                self.resources_present = true;
                n.changes
            }
            None => Vec::new(),
        }
    }
}

/// `spec.encryptionConfiguration` when every field has its type (`null` counts as absent,
/// unknown fields are ignored), as [`ClusterFacts::decode_config`] reads it.
#[derive(serde::Deserialize)]
struct ConfigIn {
    enabled: Option<bool>,
    resources: Option<Vec<String>>,
    secretbox: Option<MapOnly<SecretboxIn>>,
}

#[derive(serde::Deserialize)]
struct SecretboxIn {
    keys: Option<Vec<MapOnly<KeyIn>>>,
}

#[derive(serde::Deserialize)]
struct KeyIn {
    name: Option<String>,
    value: Option<String>,
    #[serde(rename = "secretRef")]
    secret_ref: Option<MapOnly<KeyRefIn>>,
}

/// `T` decoded from a JSON object only. serde's derived structs also accept a list of
/// their fields in order (`"secretbox": [[]]`), which the `Value` path, like Kubernetes,
/// reports as the wrong type: the fast path must not read more kindly than the slow one.
struct MapOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
            .map(MapOnly)
    }
}

#[derive(serde::Deserialize)]
struct KeyRefIn {
    name: Option<String>,
    key: Option<String>,
    optional: Option<bool>,
}

impl ConfigIn {
    fn into_model(self) -> EncryptionConfiguration {
        EncryptionConfiguration {
            enabled: self.enabled.unwrap_or_default(),
            resources: self.resources.unwrap_or_default(),
            secretbox: self
                .secretbox
                .map(|MapOnly(sb)| SecretboxEncryptionConfiguration {
                    keys: sb
                        .keys
                        .unwrap_or_default()
                        .into_iter()
                        .map(|MapOnly(k)| SecretboxKey {
                            name: k.name.unwrap_or_default(),
                            value: k.value,
                            secret_ref: k.secret_ref.map(|MapOnly(r)| SecretKeyRef {
                                name: r.name.unwrap_or_default(),
                                key: r.key.unwrap_or_default(),
                                optional: r.optional,
                            }),
                        })
                        .collect(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_are_problems_naming_the_field_without_contents() {
        let obj = json!({
            "metadata": {"name": "c"},
            "spec": {
                "features": {"encryptionAtRest": "yes"},
                "encryptionConfiguration": {
                    "enabled": "yes",
                    "resources": ["secrets", 3],
                    "secretbox": {"keys": [{"name": "k", "value": {"sneaky": "c2VjcmV0"}}, "x"]}
                }
            }
        });
        let f = ClusterFacts::from_object(&obj);
        let fields: Vec<_> = f.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.features.encryptionAtRest",
                "spec.encryptionConfiguration.enabled",
                "spec.encryptionConfiguration.resources[1]",
                "spec.encryptionConfiguration.secretbox.keys[0].value",
                "spec.encryptionConfiguration.secretbox.keys[1]",
            ]
        );
        let all: String = f.problems.iter().map(|p| p.to_string()).collect();
        assert!(!all.contains("c2VjcmV0"), "{all}");
        assert!(!all.contains("yes"), "{all}");
    }

    #[test]
    fn reads_status_and_condition() {
        let obj = json!({
            "metadata": {"name": "c"},
            "status": {
                "encryption": {"phase": "Active", "activeKey": "secretbox/k1"},
                "conditions": {"EncryptionInitialized": {"status": "True"}}
            }
        });
        let f = ClusterFacts::from_object(&obj);
        assert!(f.is_active() && f.initialized);
        assert_eq!(f.phase, Some(EncryptionPhase::Active));
        assert_eq!(f.active_secretbox_key(), Some("k1"));
        assert!(f.config.is_none());
    }

    #[test]
    fn typed_and_lenient_config_decoding_agree() {
        let cases = [
            json!(null),
            json!({}),
            json!({"enabled": null, "resources": null, "secretbox": null}),
            json!({"enabled": true, "resources": [], "secretbox": {}}),
            json!({"enabled": true, "resources": ["secrets", "configmaps"], "secretbox": {"keys": null}}),
            json!({"enabled": false, "extra": {"x": [1]}, "secretbox": {"keys": [
                {"name": "a", "value": "c2VjcmV0"},
                {"name": null, "value": null, "secretRef": null},
                {"name": "b", "secretRef": {"name": "s", "key": "k", "optional": true}},
                {"secretRef": {"name": null, "key": null, "optional": null}, "unknown": 1}
            ]}}),
            // Wrong types: the lenient path, with its problems.
            json!({"enabled": "yes", "resources": ["secrets", 3]}),
            json!({"secretbox": {"keys": [{"name": 1, "value": {"x": 1}}, "x"]}}),
            json!({"secretbox": {"keys": [{"secretRef": {"optional": "no"}}]}}),
            json!("not an object"),
        ];
        for case in cases {
            let text = case.to_string();
            let mut fast = ClusterFacts::default();
            fast.decode_config_text(&text).unwrap();
            let mut lenient = ClusterFacts::default();
            if !case.is_null() {
                lenient.decode_config(&case);
            }
            assert_eq!(fast, lenient, "{text}");
        }
        assert!(ClusterFacts::default()
            .decode_config_text("{\"enabled\":")
            .is_err());
    }
}
