//! What a stored value is: which provider and key sealed it, and whether that key opens it.
//! Pure and allocation-light: a scan classifies every value it reads.

use eargate_policy::apiserver_config::{EncryptionConfig, ResourceConfig};
use eargate_policy::names::{ENCRYPTED_VALUE_PREFIX, SECRETBOX_STORAGE_PREFIX};
use serde::Serialize;

use crate::secretbox::{KeyError, OpenError, SecretboxKey};

/// The longest key or provider name taken from a stored value into a report.
const MAX_REPORTED_NAME: usize = 64;

/// The verdict for one stored value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Sealed with the key that encrypts new writes.
    SealedWithPrimary {
        /// The key's name.
        key: String,
    },
    /// Sealed with another configured secretbox key (readable, should be rewritten).
    SealedWithSecondary {
        /// The key's name.
        key: String,
    },
    /// Sealed with a secretbox key the config does not name: kube-apiserver cannot read it.
    SealedWithUnknownKey {
        /// The name in the value's prefix.
        key: String,
    },
    /// The key is configured but the value does not open with it, or opens to something
    /// that is not a stored Kubernetes object.
    FailedToOpen {
        /// The key's name.
        key: String,
        /// Why it did not open.
        reason: FailureReason,
    },
    /// Another `k8s:enc:` provider (aescbc, aesgcm, kms, ...): eargate cannot judge it.
    OtherProvider {
        /// The provider's name from the prefix.
        provider: String,
    },
    /// Not encrypted at all.
    Plaintext,
}

/// Why a configured key failed to open a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureReason {
    /// Shorter than nonce and tag.
    Truncated,
    /// The tag did not verify.
    Authentication,
    /// Opened, but the plaintext is neither Kubernetes protobuf (`k8s\0`) nor JSON.
    NotAKubernetesObject,
    /// `k8s:enc:secretbox:v1:` without a `<name>:` after it.
    MalformedPrefix,
}

impl From<OpenError> for FailureReason {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::TooShort => FailureReason::Truncated,
            OpenError::Authentication => FailureReason::Authentication,
        }
    }
}

/// The six outcome classes, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    /// [`Outcome::SealedWithPrimary`].
    SealedWithPrimary,
    /// [`Outcome::SealedWithSecondary`].
    SealedWithSecondary,
    /// [`Outcome::SealedWithUnknownKey`].
    SealedWithUnknownKey,
    /// [`Outcome::FailedToOpen`].
    FailedToOpen,
    /// [`Outcome::OtherProvider`].
    OtherProvider,
    /// [`Outcome::Plaintext`].
    Plaintext,
}

impl OutcomeKind {
    /// Every kind, in report order.
    pub const ALL: [OutcomeKind; 6] = [
        OutcomeKind::SealedWithPrimary,
        OutcomeKind::SealedWithSecondary,
        OutcomeKind::SealedWithUnknownKey,
        OutcomeKind::FailedToOpen,
        OutcomeKind::OtherProvider,
        OutcomeKind::Plaintext,
    ];

    /// The kebab-case name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::SealedWithPrimary => "sealed-with-primary",
            OutcomeKind::SealedWithSecondary => "sealed-with-secondary",
            OutcomeKind::SealedWithUnknownKey => "sealed-with-unknown-key",
            OutcomeKind::FailedToOpen => "failed-to-open",
            OutcomeKind::OtherProvider => "other-provider",
            OutcomeKind::Plaintext => "plaintext",
        }
    }
}

impl Outcome {
    /// The class of this outcome.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::SealedWithPrimary { .. } => OutcomeKind::SealedWithPrimary,
            Outcome::SealedWithSecondary { .. } => OutcomeKind::SealedWithSecondary,
            Outcome::SealedWithUnknownKey { .. } => OutcomeKind::SealedWithUnknownKey,
            Outcome::FailedToOpen { .. } => OutcomeKind::FailedToOpen,
            Outcome::OtherProvider { .. } => OutcomeKind::OtherProvider,
            Outcome::Plaintext => OutcomeKind::Plaintext,
        }
    }

    /// The secretbox key name this outcome is about, if any.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Outcome::SealedWithPrimary { key }
            | Outcome::SealedWithSecondary { key }
            | Outcome::SealedWithUnknownKey { key }
            | Outcome::FailedToOpen { key, .. } => Some(key),
            Outcome::OtherProvider { .. } | Outcome::Plaintext => None,
        }
    }

    /// A short human description, e.g. `sealed-with-secondary (key1)`.
    pub fn describe(&self) -> String {
        match self {
            Outcome::SealedWithPrimary { key }
            | Outcome::SealedWithSecondary { key }
            | Outcome::SealedWithUnknownKey { key } => format!("{} ({key})", self.kind().as_str()),
            Outcome::FailedToOpen { key, reason } => {
                let reason = match reason {
                    FailureReason::Truncated => "truncated",
                    FailureReason::Authentication => "wrong key material or corrupt",
                    FailureReason::NotAKubernetesObject => "opened, but not a Kubernetes object",
                    FailureReason::MalformedPrefix => "malformed secretbox prefix",
                };
                format!("failed-to-open ({key}: {reason})")
            }
            Outcome::OtherProvider { provider } => format!("other-provider ({provider})"),
            Outcome::Plaintext => "plaintext".to_owned(),
        }
    }
}

/// What kube-apiserver writes new values with for a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Primary {
    /// A secretbox key (by name).
    Secretbox(String),
    /// Another provider kind (`identity`, `aescbc`, ...): new writes are not secretbox.
    Other(&'static str),
}

impl std::fmt::Display for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Primary::Secretbox(name) => write!(f, "secretbox/{name}"),
            Primary::Other(kind) => f.write_str(kind),
        }
    }
}

/// The secretbox keys that may have sealed a resource's values, in config order.
#[derive(Debug, Clone)]
pub struct Keyring {
    primary: Primary,
    /// Every secretbox key of the resource's entry, primary first when it is secretbox.
    keys: Vec<SecretboxKey>,
}

/// A resource the config does not cover, or bad key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The config has no entry for this resource.
    #[error("the encryption config has no entry for resource {0:?}")]
    NotConfigured(String),
    /// The resource's entry lists no providers.
    #[error("the encryption config entry for {0:?} has no providers")]
    NoProviders(String),
    /// A key's material is not a secretbox key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl Keyring {
    /// A keyring from explicit keys; the first one is primary.
    pub fn new(keys: Vec<SecretboxKey>) -> Self {
        let primary = match keys.first() {
            Some(k) => Primary::Secretbox(k.name().to_owned()),
            None => Primary::Other("identity"),
        };
        Self { primary, keys }
    }

    /// The keyring for one resource entry of an EncryptionConfiguration.
    pub fn from_entry(resource: &str, entry: &ResourceConfig) -> Result<Self, KeyringError> {
        let first = entry
            .providers
            .first()
            .ok_or_else(|| KeyringError::NoProviders(resource.to_owned()))?;
        let mut keys = Vec::new();
        for provider in &entry.providers {
            if let Some(sb) = &provider.secretbox {
                for k in &sb.keys {
                    keys.push(SecretboxKey::from_base64(&k.name, &k.secret)?);
                }
            }
        }
        let primary = match &first.secretbox {
            Some(sb) => match sb.keys.first() {
                Some(k) => Primary::Secretbox(k.name.clone()),
                None => Primary::Other("secretbox without keys"),
            },
            None => Primary::Other(first.kind_name()),
        };
        Ok(Self { primary, keys })
    }

    /// The keyring kube-apiserver would use for `resource` (`secrets`, `deployments.apps`).
    pub fn for_resource(config: &EncryptionConfig, resource: &str) -> Result<Self, KeyringError> {
        let entry = entry_for(config, resource)
            .ok_or_else(|| KeyringError::NotConfigured(resource.to_owned()))?;
        Self::from_entry(resource, entry)
    }

    /// What new writes are sealed with.
    pub fn primary(&self) -> &Primary {
        &self.primary
    }

    /// Names of the configured secretbox keys, in config order.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.name())
    }

    /// Classifies one stored value. `scratch` is reused for the opened plaintext, which is
    /// only inspected (never returned) and cleared before returning.
    pub fn classify(&self, value: &[u8], scratch: &mut Vec<u8>) -> Outcome {
        let outcome = self.classify_inner(value, scratch);
        // Do not leave plaintext lying around longer than needed.
        scratch.iter_mut().for_each(|b| *b = 0);
        scratch.clear();
        outcome
    }

    fn classify_inner(&self, value: &[u8], scratch: &mut Vec<u8>) -> Outcome {
        let Some(rest) = value.strip_prefix(ENCRYPTED_VALUE_PREFIX.as_bytes()) else {
            return Outcome::Plaintext;
        };
        if !value.starts_with(SECRETBOX_STORAGE_PREFIX.as_bytes()) {
            let provider = take_name(rest);
            let version = rest
                .get(provider.len() + 1..)
                .map(take_name)
                .filter(|v| !v.is_empty());
            return Outcome::OtherProvider {
                provider: match version {
                    Some(v) => format!("{}/{}", display_name(provider), display_name(v)),
                    None => display_name(provider),
                },
            };
        }
        // Like kube-apiserver's prefix transformers: every configured key whose prefix
        // matches is tried in order; the first that opens wins.
        let mut first_failure: Option<(&SecretboxKey, FailureReason)> = None;
        for (i, key) in self.keys.iter().enumerate() {
            let Some(sealed) = value.strip_prefix(key.prefix()) else {
                continue;
            };
            match key.open_box_into(sealed, scratch) {
                Ok(()) => {
                    if !looks_like_stored_object(scratch) {
                        first_failure.get_or_insert((key, FailureReason::NotAKubernetesObject));
                        continue;
                    }
                    let name = key.name().to_owned();
                    let is_primary =
                        i == 0 && matches!(&self.primary, Primary::Secretbox(p) if *p == name);
                    return if is_primary {
                        Outcome::SealedWithPrimary { key: name }
                    } else {
                        Outcome::SealedWithSecondary { key: name }
                    };
                }
                Err(e) => {
                    first_failure.get_or_insert((key, e.into()));
                }
            }
        }
        if let Some((key, reason)) = first_failure {
            return Outcome::FailedToOpen {
                key: key.name().to_owned(),
                reason,
            };
        }
        let after = &value[SECRETBOX_STORAGE_PREFIX.len()..];
        let name = take_name(after);
        if name.len() == after.len() || name.is_empty() {
            // No `<name>:` terminator: not something kube-apiserver wrote.
            return Outcome::FailedToOpen {
                key: display_name(name),
                reason: FailureReason::MalformedPrefix,
            };
        }
        Outcome::SealedWithUnknownKey {
            key: display_name(name),
        }
    }
}

/// The entry kube-apiserver uses for `resource`: an exact `resource.group` match wins, then
/// `*.group`, then `*.*`, as in upstream's encryptionconfig.
pub fn entry_for<'a>(config: &'a EncryptionConfig, resource: &str) -> Option<&'a ResourceConfig> {
    let (res, group) = split_resource(resource);
    let exact = |name: &str| {
        let (r, g) = split_resource(name);
        r == res && g == group
    };
    let group_wild = |name: &str| name == format!("*.{group}");
    let all = |name: &str| name == "*.*";
    for rule in [&exact as &dyn Fn(&str) -> bool, &group_wild, &all] {
        if let Some(entry) = config
            .resources
            .iter()
            .find(|e| e.resources.iter().any(|n| rule(n)))
        {
            return Some(entry);
        }
    }
    None
}

/// `deployments.apps` → (`deployments`, `apps`); `secrets` and `secrets.` → (`secrets`, ``).
pub fn split_resource(name: &str) -> (&str, &str) {
    match name.split_once('.') {
        Some((r, g)) => (r, g),
        None => (name, ""),
    }
}

/// Kubernetes protobuf (`k8s\0` magic) or a JSON object.
pub fn looks_like_stored_object(plaintext: &[u8]) -> bool {
    if plaintext.starts_with(b"k8s\0") {
        return true;
    }
    let trimmed = plaintext.trim_ascii();
    trimmed.first() == Some(&b'{') && trimmed.last() == Some(&b'}')
}

/// The bytes up to the next `:` (or all of them), capped.
fn take_name(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|b| *b == b':').unwrap_or(bytes.len());
    &bytes[..end]
}

/// A name from storage made safe to print: printable ASCII only, capped in length.
pub fn display_name(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(MAX_REPORTED_NAME) {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > MAX_REPORTED_NAME {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use eargate_policy::apiserver_config::{Provider, ProviderKey};

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn config(yaml_keys: &[(&str, u8)], identity_first: bool) -> EncryptionConfig {
        let keys = yaml_keys
            .iter()
            .map(|(n, b)| ProviderKey {
                name: (*n).to_owned(),
                secret: b64(&[*b; 32]),
            })
            .collect();
        let mut providers = vec![Provider::secretbox(keys), Provider::identity()];
        if identity_first {
            providers.reverse();
        }
        EncryptionConfig::new(vec![ResourceConfig {
            resources: vec!["secrets".into(), "widgets.example.com".into()],
            providers,
        }])
    }

    fn classify(ring: &Keyring, value: &[u8]) -> Outcome {
        ring.classify(value, &mut Vec::new())
    }

    #[test]
    fn every_outcome() {
        let cfg = config(&[("new", 1), ("old", 2)], false);
        let ring = Keyring::for_resource(&cfg, "secrets").unwrap();
        assert_eq!(ring.primary(), &Primary::Secretbox("new".into()));
        let obj = b"k8s\0\n\x0c\n\x02v1\x12\x06Secret";
        let new = SecretboxKey::new("new", &[1; 32]);
        let old = SecretboxKey::new("old", &[2; 32]);
        let gone = SecretboxKey::new("gone", &[3; 32]);
        let wrong_material = SecretboxKey::new("old", &[9; 32]);
        assert_eq!(
            classify(&ring, &new.seal(obj)),
            Outcome::SealedWithPrimary { key: "new".into() }
        );
        assert_eq!(
            classify(&ring, &old.seal(br#"{"kind":"Secret"}"#)),
            Outcome::SealedWithSecondary { key: "old".into() }
        );
        assert_eq!(
            classify(&ring, &gone.seal(obj)),
            Outcome::SealedWithUnknownKey { key: "gone".into() }
        );
        assert_eq!(
            classify(&ring, &wrong_material.seal(obj)),
            Outcome::FailedToOpen {
                key: "old".into(),
                reason: FailureReason::Authentication
            }
        );
        assert_eq!(
            classify(&ring, &new.seal(b"hello, not an object")),
            Outcome::FailedToOpen {
                key: "new".into(),
                reason: FailureReason::NotAKubernetesObject
            }
        );
        assert_eq!(
            classify(&ring, b"k8s:enc:secretbox:v1:new:short"),
            Outcome::FailedToOpen {
                key: "new".into(),
                reason: FailureReason::Truncated
            }
        );
        assert_eq!(
            classify(&ring, b"k8s:enc:secretbox:v1:no-terminator"),
            Outcome::FailedToOpen {
                key: "no-terminator".into(),
                reason: FailureReason::MalformedPrefix
            }
        );
        assert_eq!(
            classify(&ring, b"k8s:enc:aescbc:v1:key1:\x00\x01"),
            Outcome::OtherProvider {
                provider: "aescbc/v1".into()
            }
        );
        assert_eq!(
            classify(&ring, b"k8s:enc:kms:v2:vault:\x0a"),
            Outcome::OtherProvider {
                provider: "kms/v2".into()
            }
        );
        assert_eq!(classify(&ring, obj), Outcome::Plaintext);
        assert_eq!(classify(&ring, br#"{"kind":"Secret"}"#), Outcome::Plaintext);
        assert_eq!(classify(&ring, b""), Outcome::Plaintext);
    }

    #[test]
    fn secondary_key_listed_first_in_a_later_provider_is_not_primary_when_identity_leads() {
        let cfg = config(&[("k", 1)], true);
        let ring = Keyring::for_resource(&cfg, "secrets").unwrap();
        assert_eq!(ring.primary(), &Primary::Other("identity"));
        let sealed = SecretboxKey::new("k", &[1; 32]).seal(b"{}");
        assert_eq!(
            classify(&ring, &sealed),
            Outcome::SealedWithSecondary { key: "k".into() }
        );
    }

    #[test]
    fn resource_matching_follows_kube_apiserver() {
        let mut cfg = config(&[("k", 1)], false);
        assert!(entry_for(&cfg, "secrets").is_some());
        assert!(entry_for(&cfg, "widgets.example.com").is_some());
        assert!(entry_for(&cfg, "configmaps").is_none());
        cfg.resources.push(ResourceConfig {
            resources: vec!["*.apps".into()],
            providers: vec![Provider::identity()],
        });
        assert!(entry_for(&cfg, "deployments.apps").is_some());
        assert!(entry_for(&cfg, "deployments").is_none());
        assert!(matches!(
            Keyring::for_resource(&cfg, "configmaps"),
            Err(KeyringError::NotConfigured(_))
        ));
    }

    #[test]
    fn names_from_storage_are_sanitised() {
        assert_eq!(display_name(b"ok-name"), "ok-name");
        assert_eq!(display_name(b"a\x1b[31mb"), "a\\x1b[31mb");
        assert!(display_name(&[b'a'; 200]).chars().count() <= 65);
    }

    #[test]
    fn bad_key_material_is_named_not_shown() {
        let cfg = EncryptionConfig::new(vec![ResourceConfig {
            resources: vec!["secrets".into()],
            providers: vec![Provider::secretbox(vec![ProviderKey {
                name: "k1".into(),
                secret: "dG9vIHNob3J0".into(),
            }])],
        }]);
        let err = Keyring::for_resource(&cfg, "secrets")
            .unwrap_err()
            .to_string();
        assert!(err.contains("k1") && !err.contains("dG9vIHNob3J0"), "{err}");
    }
}
