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
    pub api_version: String,
    pub kind: String,
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
}

/// One `resources[]` entry: which resources, and the providers tried in order.
/// The first provider encrypts new writes; every provider is tried for reads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ResourceConfig {
    pub resources: Vec<String>,
    pub providers: Vec<Provider>,
}

/// One provider. Exactly one field is set, as in kube-apiserver's Go type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<KeysProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<KeysProvider>,
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
    #[serde(default)]
    pub keys: Vec<ProviderKey>,
}

/// A named key; `secret` is the base64 key material.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct ProviderKey {
    pub name: String,
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
}
