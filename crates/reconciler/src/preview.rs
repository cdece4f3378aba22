//! `eargate render`: the config the reconciler would write for a Cluster manifest, computed by
//! the same [`crate::render::render`], from files instead of the API (for review and GitOps).
//!
//! Inputs are YAML or JSON: the Cluster; optionally the previously rendered config (an
//! `EncryptionConfiguration`, or the Secret holding it); Secret manifests for `secretRef` keys
//! (several documents per file allowed). The rollout of the previous config is assumed complete,
//! i.e. the answer is what the reconciler writes once the API servers run the previous config.
//! Errors say which file and where, never echo file content (it may hold key material).

use std::collections::BTreeMap;

use base64::Engine as _;
use eargate_policy::model::Cluster;
use eargate_policy::names;
use serde::Deserialize;
use serde_json::Value;

use crate::model::KeySecret;
use crate::render::{self, DesiredConfig, PreviousConfig, RenderError, RenderInput};

/// Bad input to `eargate render`.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// A file could not be read or parsed.
    #[error("{file}: {message}")]
    Input {
        /// The file, as given on the command line.
        file: String,
        /// What is wrong, without the file's content.
        message: String,
    },
    /// The input was read but no config could be rendered from it.
    #[error("cannot render")]
    Render(#[from] RenderError),
}

fn input(file: &str, message: impl Into<String>) -> PreviewError {
    PreviewError::Input {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// Location of a YAML/JSON error, without any of the offending text.
fn where_(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!(
            "invalid YAML/JSON at line {} column {}",
            l.line(),
            l.column()
        ),
        None => "invalid YAML/JSON".to_owned(),
    }
}

fn documents(file: &str, text: &str) -> Result<Vec<Value>, PreviewError> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| input(file, where_(&e)))?;
        match v {
            Value::Null => {}
            Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                docs.extend(
                    o.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            other => docs.push(other),
        }
    }
    Ok(docs)
}

/// Parses a Cluster manifest.
pub fn parse_cluster(file: &str, text: &str) -> Result<Cluster, PreviewError> {
    let docs = documents(file, text)?;
    let [doc] = docs.as_slice() else {
        return Err(input(
            file,
            format!(
                "expected exactly one Cluster, found {} documents",
                docs.len()
            ),
        ));
    };
    if doc.get("kind").and_then(Value::as_str) != Some(names::CLUSTER_KIND) {
        return Err(input(file, "not a Cluster (kind must be Cluster)"));
    }
    serde_json::from_value(doc.clone()).map_err(|e| {
        input(
            file,
            format!(
                "not a valid Cluster: {}",
                eargate_policy::scrub_quoted(&e.to_string())
            ),
        )
    })
}

/// Parses Secret manifests into the referenced-Secret map (by Secret name).
pub fn parse_secrets(
    file: &str,
    text: &str,
    into: &mut BTreeMap<String, KeySecret>,
) -> Result<(), PreviewError> {
    for doc in documents(file, text)? {
        if doc.get("kind").and_then(Value::as_str) != Some("Secret") {
            return Err(input(file, "every document must be a Secret"));
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| input(file, "a Secret has no metadata.name"))?;
        let mut data = BTreeMap::new();
        if let Some(d) = doc.get("data").and_then(Value::as_object) {
            for (k, v) in d {
                let s = v.as_str().ok_or_else(|| {
                    input(file, format!("Secret {name:?} data.{k} is not a string"))
                })?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|_| input(file, format!("Secret {name:?} data.{k} is not base64 (use stringData for plain text)")))?;
                data.insert(k.clone(), bytes);
            }
        }
        if let Some(d) = doc.get("stringData").and_then(Value::as_object) {
            for (k, v) in d {
                let s = v.as_str().ok_or_else(|| {
                    input(
                        file,
                        format!("Secret {name:?} stringData.{k} is not a string"),
                    )
                })?;
                data.insert(k.clone(), s.as_bytes().to_vec());
            }
        }
        into.insert(name.to_owned(), KeySecret::Data(data));
    }
    Ok(())
}

/// Parses the previously rendered config: an EncryptionConfiguration, or a Secret holding it
/// under `config_key`.
pub fn parse_previous(file: &str, text: &str, config_key: &str) -> Result<Vec<u8>, PreviewError> {
    let docs = documents(file, text)?;
    let [doc] = docs.as_slice() else {
        return Err(input(
            file,
            format!("expected one document, found {}", docs.len()),
        ));
    };
    match doc.get("kind").and_then(Value::as_str) {
        Some("EncryptionConfiguration") => Ok(serde_yaml::to_string(doc)
            .map_err(|e| input(file, where_(&e)))?
            .into_bytes()),
        Some("Secret") => {
            if let Some(s) = doc
                .pointer(&format!("/stringData/{config_key}"))
                .and_then(Value::as_str)
            {
                return Ok(s.as_bytes().to_vec());
            }
            let s = doc
                .pointer(&format!("/data/{config_key}"))
                .and_then(Value::as_str)
                .ok_or_else(|| input(file, format!("the Secret has no data key {config_key:?}")))?;
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| input(file, format!("data key {config_key:?} is not base64")))
        }
        _ => Err(input(
            file,
            "expected an EncryptionConfiguration or the Secret holding it",
        )),
    }
}

/// The result of a preview.
#[derive(Debug)]
pub struct Preview {
    /// `None`: no config is needed (nothing configured, nothing to decrypt).
    pub rendered: Option<DesiredConfig>,
}

impl Preview {
    /// The YAML to print; key material as `REDACTED` unless `show_keys`.
    pub fn yaml(&self, show_keys: bool) -> Option<String> {
        let r = self.rendered.as_ref()?;
        if show_keys {
            Some(r.yaml.clone())
        } else {
            serde_yaml::to_string(&render::redacted(&r.config)).ok()
        }
    }
}

/// Renders from parsed inputs, exactly as the reconciler does with a completed rollout.
pub fn preview(
    cluster: &Cluster,
    previous: Option<(&str, &[u8])>,
    key_secrets: &BTreeMap<String, KeySecret>,
) -> Result<Preview, PreviewError> {
    let previous = previous
        .map(|(file, bytes)| PreviousConfig::parse(bytes).map_err(|e| input(file, e.to_string())))
        .transpose()?;
    let status = cluster.status.as_ref();
    // Offline there is no storage scan: a key the spec no longer names is shown retained, as
    // the reconciler keeps it until its scan finds nothing sealed with it.
    let scanned_unused = std::collections::BTreeSet::new();
    let input = RenderInput {
        spec: cluster.spec.encryption_configuration.as_ref(),
        key_secrets,
        previous: previous.as_ref(),
        previous_complete: true,
        status: status.and_then(|s| s.encryption.as_ref()),
        initialized: status
            .and_then(|s| s.conditions.get(names::CONDITION_ENCRYPTION_INITIALIZED))
            .is_some_and(|c| c.status == "True"),
        scanned_unused: &scanned_unused,
    };
    Ok(Preview {
        rendered: render::render(&input)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error and its causes, as the command line prints them.
    fn chain(err: &dyn std::error::Error) -> String {
        let mut out = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            out.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        out
    }

    const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

    fn cluster(keys: &str) -> String {
        format!(
            "apiVersion: kubermatic.k8c.io/v1\nkind: Cluster\nmetadata: {{name: c1}}\nspec:\n  features: {{encryptionAtRest: true}}\n  encryptionConfiguration:\n    enabled: true\n    resources: [secrets]\n    secretbox:\n      keys:\n{keys}"
        )
    }

    #[test]
    fn renders_secret_ref_keys_redacted_by_default() {
        let c = parse_cluster(
            "c.yaml",
            &cluster("      - name: k1\n        secretRef: {name: k1, key: key}\n"),
        )
        .unwrap();
        let mut secrets = BTreeMap::new();
        parse_secrets(
            "s.yaml",
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: k1}}\nstringData:\n  key: {KEY}\n"
            ),
            &mut secrets,
        )
        .unwrap();
        let p = preview(&c, None, &secrets).unwrap();
        let redacted = p.yaml(false).unwrap();
        assert!(
            redacted.contains("REDACTED") && !redacted.contains(KEY),
            "{redacted}"
        );
        // No previous config: the new key first only decrypts.
        let cfg = &p.rendered.as_ref().unwrap().config.resources[0];
        assert!(cfg.providers[0].identity.is_some());
        assert!(p.yaml(true).unwrap().contains(KEY));
        // With the previous config as input (rollout done): the key is promoted.
        let prev = p.yaml(true).unwrap();
        let p2 = preview(&c, Some(("prev.yaml", prev.as_bytes())), &secrets).unwrap();
        assert_eq!(
            p2.rendered.unwrap().config.resources[0].providers[0].kind_name(),
            "secretbox"
        );
    }

    #[test]
    fn bad_input_is_explained_without_echoing_content() {
        let c = parse_cluster(
            "c.yaml",
            &cluster("      - name: k1\n        secretRef: {name: k1, key: key}\n"),
        )
        .unwrap();
        let err = preview(&c, None, &BTreeMap::new()).unwrap_err();
        let err = chain(&err);
        assert!(
            err.contains("\"k1\"") && err.contains("does not exist"),
            "{err}"
        );
        let err = parse_cluster("c.yaml", "kind: Cluster\nspec: [")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.yaml: invalid YAML/JSON at line"),
            "{err}"
        );
        let bad = cluster(&format!("      - name: k1\n        value: 7{KEY}\n"));
        let c = parse_cluster("c.yaml", &bad).unwrap();
        let err = chain(&preview(&c, None, &BTreeMap::new()).unwrap_err());
        assert!(
            err.contains("key \"k1\"") && !err.contains(&KEY[..10]),
            "{err}"
        );
        let err = parse_cluster(
            "c.yaml",
            &bad.replace("value: 7", "value: [1]\n        x: "),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(!err.contains(&KEY[..10]), "{err}");
        let err = parse_secrets(
            "s.yaml",
            &format!("kind: Secret\nmetadata: {{name: k1}}\ndata: {{key: '{KEY}!'}}"),
            &mut BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains(&KEY[..10]), "{err}");
    }
}
