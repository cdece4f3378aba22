//! kube-apiserver's `apiserver.config.k8s.io/v1` `EncryptionConfiguration`, the file given
//! to `--encryption-provider-config`. The reconciler renders it, `eargate render` prints it,
//! and `eargate verify` reads it to know which keys may have sealed a value.
//!
//! Secrets inside it are key material: `Debug` is written by hand to redact them.

use serde::{Deserialize, Serialize};

/// API version of the rendered file.
pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
/// Kind of the rendered file.
pub const KIND: &str = "EncryptionConfiguration";

/// The whole file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfig {
    /// Always [`API_VERSION`] in a file kube-apiserver reads.
    pub api_version: String,
    /// Always [`KIND`] in a file kube-apiserver reads.
    pub kind: String,
    /// The entries, each a set of resources and the providers for them.
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
}

impl EncryptionConfig {
    /// An empty file of the right apiVersion and kind.
    pub fn new(resources: Vec<ResourceConfig>) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            resources,
        }
    }

    /// The secretbox key names of every entry, in provider order (a name may repeat across
    /// entries).
    pub fn secretbox_key_names(&self) -> impl Iterator<Item = &str> {
        self.resources
            .iter()
            .flat_map(|r| r.providers.iter())
            .filter_map(|p| p.secretbox.as_ref())
            .flat_map(|s| s.keys.iter().map(|k| k.name.as_str()))
    }
}

impl EncryptionConfig {
    /// kube-apiserver's own validation of this file (`ValidateEncryptionConfiguration`), plus
    /// the key-name rules eargate relies on (unique per provider, no `:`). Each problem names
    /// its path in the file and never includes key material. Empty means kube-apiserver
    /// would load the file.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.api_version != API_VERSION {
            problems.push(format!(
                "apiVersion: must be {API_VERSION}, got {:?}",
                self.api_version
            ));
        }
        if self.kind != KIND {
            problems.push(format!("kind: must be {KIND}, got {:?}", self.kind));
        }
        if self.resources.is_empty() {
            problems.push("resources: at least one resources is required".to_owned());
            return problems;
        }
        let mut seen_resources: Vec<(usize, (&str, &str))> = Vec::new();
        for (i, entry) in self.resources.iter().enumerate() {
            let root = format!("resources[{i}]");
            if entry.resources.is_empty() {
                problems.push(format!(
                    "{root}.resources: at least one {root}.resources is required"
                ));
            }
            for p in crate::resources::validate_resources(&entry.resources) {
                if p.index.is_none() && entry.resources.is_empty() {
                    continue;
                }
                problems.push(format!("{root}.{p}"));
            }
            // The first entry that matches a resource wins; a later entry naming the same
            // resource would silently never apply.
            for (j, r) in entry.resources.iter().enumerate() {
                let gr = crate::resources::parse_group_resource(r);
                if let Some((k, _)) = seen_resources.iter().find(|(k, g)| *k != i && *g == gr) {
                    problems.push(format!(
                        "{root}.resources[{j}]: {r:?} is already listed in resources[{k}]; the later entry would never apply"
                    ));
                }
            }
            for r in &entry.resources {
                seen_resources.push((i, crate::resources::parse_group_resource(r)));
            }
            if entry.providers.is_empty() {
                problems.push(format!(
                    "{root}.providers: at least one {root}.providers is required"
                ));
            }
            for (j, provider) in entry.providers.iter().enumerate() {
                let path = format!("{root}.providers[{j}]");
                let found = [
                    provider.secretbox.is_some(),
                    provider.identity.is_some(),
                    provider.aescbc.is_some(),
                    provider.aesgcm.is_some(),
                    provider.kms.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if found == 0 {
                    problems.push(format!(
                        "{path}: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"
                    ));
                    continue;
                }
                if found > 1 {
                    problems.push(format!(
                        "{path}: more than one provider specified in a single element, should split into different list elements"
                    ));
                    continue;
                }
                let (kind, keys, sizes): (&str, &[ProviderKey], &[usize]) =
                    if let Some(p) = &provider.secretbox {
                        ("secretbox", &p.keys, &[32])
                    } else if let Some(p) = &provider.aescbc {
                        ("aescbc", &p.keys, &[16, 24, 32])
                    } else if let Some(p) = &provider.aesgcm {
                        ("aesgcm", &p.keys, &[16, 24, 32])
                    } else {
                        continue;
                    };
                let kpath = format!("{path}.{kind}.keys");
                if keys.is_empty() {
                    problems.push(format!("{kpath}: at least one keys is required"));
                }
                for (k, key) in keys.iter().enumerate() {
                    let kp = format!("{kpath}[{k}]");
                    if key.name.is_empty() {
                        problems.push(format!("{kp}.name: name is a mandatory field for a key"));
                    } else if key.name.contains(':') {
                        problems.push(format!(
                            "{kp}.name: key {:?}: must not contain ':' (the name is embedded in the storage prefix k8s:enc:{kind}:v1:<name>:)",
                            key.name
                        ));
                    }
                    if keys[..k].iter().any(|o| o.name == key.name) && !key.name.is_empty() {
                        problems.push(format!(
                            "{kp}.name: key {:?}: duplicate key name within the provider",
                            key.name
                        ));
                    }
                    if key.secret.is_empty() {
                        problems.push(format!(
                            "{kp}.secret: secret is a mandatory field for a key"
                        ));
                        continue;
                    }
                    match crate::keys::decode_go_std(&key.secret) {
                        Err(_) => problems.push(format!("{kp}.secret: key {:?}: secrets must be base64 encoded", key.name)),
                        Ok(b) if !sizes.contains(&b.len()) => problems.push(format!(
                            "{kp}.secret: key {:?}: secret is not of the expected length, got {}, expected one of {sizes:?}",
                            key.name,
                            b.len()
                        )),
                        Ok(_) => {}
                    }
                }
            }
        }
        problems
    }
}

/// One `resources[]` entry: which resources, and the providers tried in order.
/// The first provider encrypts new writes; every provider is tried for reads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ResourceConfig {
    /// The resources this entry covers (`secrets`, `configmaps`, `*.apps`, ...).
    pub resources: Vec<String>,
    /// The providers in order: the first writes, all are tried for reads.
    pub providers: Vec<Provider>,
}

/// One provider. Exactly one field is set, as in kube-apiserver's Go type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// XSalsa20-Poly1305 with the listed keys, the only one eargate renders with keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<KeysProvider>,
    /// No encryption: reads and writes plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Empty>,
    /// AES-CBC with the listed keys (read, never rendered by eargate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<KeysProvider>,
    /// AES-GCM with the listed keys (read, never rendered by eargate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<KeysProvider>,
    /// KMS providers are carried through but never rendered by eargate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<serde_json::Value>,
}

impl Provider {
    /// A secretbox provider with these keys (the first one encrypts).
    pub fn secretbox(keys: Vec<ProviderKey>) -> Self {
        Self {
            secretbox: Some(KeysProvider { keys }),
            ..Self::default()
        }
    }

    /// The identity provider (plaintext).
    pub fn identity() -> Self {
        Self {
            identity: Some(Empty {}),
            ..Self::default()
        }
    }

    /// The provider's name as it appears in storage prefixes (`secretbox`, `identity`, ...).
    pub fn kind_name(&self) -> &'static str {
        if self.secretbox.is_some() {
            "secretbox"
        } else if self.identity.is_some() {
            "identity"
        } else if self.aescbc.is_some() {
            "aescbc"
        } else if self.aesgcm.is_some() {
            "aesgcm"
        } else if self.kms.is_some() {
            "kms"
        } else {
            "unknown"
        }
    }
}

/// `{}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Empty {}

/// `{keys: [...]}` of secretbox, aescbc and aesgcm.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct KeysProvider {
    /// The keys, the first one encrypting.
    #[serde(default)]
    pub keys: Vec<ProviderKey>,
}

/// A named key; `secret` is the base64 key material.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct ProviderKey {
    /// The key's name, part of the storage prefix of what it seals.
    pub name: String,
    /// The key material, base64.
    pub secret: String,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_kube_apiserver_yaml_and_redacts_debug() {
        let yaml = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
      - name: key1
        secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IGl0IGlzIQ==
  - identity: {}
"#;
        let cfg: EncryptionConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(cfg.resources[0].providers[0].kind_name(), "secretbox");
        assert_eq!(cfg.resources[0].providers[1], Provider::identity());
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
        let again: EncryptionConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn validate_finds_what_kube_apiserver_refuses_without_echoing_secrets() {
        let short = "c2hvcnQ="; // "short"
        let cfg = EncryptionConfig::new(vec![
            ResourceConfig {
                resources: vec!["secrets".into(), "*.".into()],
                providers: vec![
                    Provider::secretbox(vec![
                        ProviderKey {
                            name: "a:b".into(),
                            secret: short.into(),
                        },
                        ProviderKey {
                            name: "a:b".into(),
                            secret: "!!".into(),
                        },
                    ]),
                    Provider {
                        identity: Some(Empty {}),
                        aescbc: Some(KeysProvider::default()),
                        ..Provider::default()
                    },
                    Provider::default(),
                ],
            },
            ResourceConfig {
                resources: vec!["secrets".into()],
                providers: vec![],
            },
        ]);
        let problems = cfg.validate();
        let all = problems.join("\n");
        for want in [
            "resources[0].resources[1]: \"*.\": overlaps",
            "resources[0].providers[0].secretbox.keys[0].name: key \"a:b\": must not contain ':'",
            "resources[0].providers[0].secretbox.keys[1].name: key \"a:b\": duplicate",
            "got 5, expected one of [32]",
            "secrets must be base64 encoded",
            "resources[0].providers[1]: more than one provider",
            "resources[0].providers[2]: provider does not contain any",
            "resources[1].resources[0]: \"secrets\" is already listed in resources[0]",
            "resources[1].providers: at least one",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
        assert!(!all.contains(short), "{all}");
    }
}
