//! Rendering kube-apiserver's `EncryptionConfiguration` from a Cluster's spec, the previously
//! rendered config and the observed status — the single rendering code used by the reconciler
//! and by `eargate render`.
//!
//! Rules, and why:
//! - One `resources` entry: the spec's resources plus every resource whose stored data may
//!   still be encrypted (`status.encryptedResources`, and the previous config's resources when
//!   no finished Job vouches for the data), so the API server can still decrypt them.
//! - Secretbox keys: the spec's keys in spec order, then keys of the previous config that
//!   stored data may still be encrypted with (retained; see [`RenderInput`]): every one while
//!   the status does not vouch for the data, the active one always, and any other until a
//!   storage scan finds nothing sealed with it. Material already
//!   rendered under a name is never changed: a differing referenced Secret is *drift*, reported
//!   by key name, and the rendered material is kept.
//! - The writer (first provider) is the spec's primary key only when every config that may
//!   still be serving can already read it; otherwise the previous writer stays, or `identity`,
//!   which every rendered config reads. Disabling (or removing the configuration) makes
//!   `identity` the writer and keeps the secretbox keys for reading.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use eargate_policy::apiserver_config::{EncryptionConfig, Provider, ProviderKey, ResourceConfig};
use eargate_policy::model::{ClusterEncryptionStatus, EncryptionConfiguration, EncryptionPhase};
use eargate_policy::names;
use eargate_policy::{decode_key, KeyError};
use sha2::{Digest, Sha256};

use crate::model::{content_hash, KeySecret};

/// Which provider encrypts new writes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Writer {
    /// Plaintext.
    Identity,
    /// `secretbox` with this key name.
    Secretbox(String),
}

impl Writer {
    /// The `status.encryption.activeKey` spelling: `identity` or `secretbox/<name>`.
    pub fn active_key(&self) -> String {
        match self {
            Self::Identity => names::ACTIVE_KEY_IDENTITY.to_owned(),
            Self::Secretbox(n) => format!("{}{n}", names::ACTIVE_KEY_SECRETBOX_PREFIX),
        }
    }

    /// Parses an `activeKey` value; anything unknown is `None`.
    pub fn from_active_key(s: &str) -> Option<Self> {
        if s == names::ACTIVE_KEY_IDENTITY {
            Some(Self::Identity)
        } else {
            s.strip_prefix(names::ACTIVE_KEY_SECRETBOX_PREFIX)
                .filter(|n| !n.is_empty())
                .map(|n| Self::Secretbox(n.to_owned()))
        }
    }
}

/// The config currently in the Secret (rendered by an earlier reconcile), reduced to what
/// rendering needs. Only configs of eargate's
/// own shape are understood (one resources entry; `secretbox` and `identity` providers):
/// anything else is refused rather than overwritten, since keys could be lost.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PreviousConfig {
    pub(crate) resources: Vec<String>,
    pub(crate) writer: Writer,
    /// Secretbox keys in provider order: (name, base64 material as rendered).
    pub(crate) keys: Vec<(String, String)>,
    pub(crate) has_identity: bool,
}

impl std::fmt::Debug for PreviousConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousConfig")
            .field("resources", &self.resources)
            .field("writer", &self.writer)
            .field(
                "keys",
                &self.keys.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("has_identity", &self.has_identity)
            .finish()
    }
}

impl PreviousConfig {
    /// Reads a rendered file. Errors name the problem, never the content.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, RenderError> {
        let config: EncryptionConfig =
            serde_yaml::from_slice(bytes).map_err(|e| RenderError::PreviousUnreadable {
                reason: format!("not an EncryptionConfiguration ({})", redact_yaml_error(&e)),
            })?;
        Self::from_config(&config)
    }

    /// Reduces a parsed config (see the type's doc for what is understood).
    pub(crate) fn from_config(config: &EncryptionConfig) -> Result<Self, RenderError> {
        let unreadable = |reason: &str| RenderError::PreviousUnreadable {
            reason: reason.to_owned(),
        };
        if config.kind != eargate_policy::apiserver_config::KIND {
            return Err(unreadable("kind is not EncryptionConfiguration"));
        }
        let [entry] = config.resources.as_slice() else {
            return Err(unreadable("it does not have exactly one resources entry"));
        };
        let mut keys = Vec::new();
        let mut has_identity = false;
        let mut writer = None;
        for p in &entry.providers {
            match p.kind_name() {
                "identity" => {
                    has_identity = true;
                    writer.get_or_insert(Writer::Identity);
                }
                "secretbox" => {
                    for k in &p
                        .secretbox
                        .as_ref()
                        .map(|s| s.keys.clone())
                        .unwrap_or_default()
                    {
                        writer.get_or_insert_with(|| Writer::Secretbox(k.name.clone()));
                        keys.push((k.name.clone(), k.secret.clone()));
                    }
                }
                other => {
                    return Err(RenderError::PreviousUnreadable {
                        reason: format!(
                            "it uses the {other} provider, which eargate does not render"
                        ),
                    })
                }
            }
        }
        Ok(Self {
            resources: entry.resources.clone(),
            writer: writer.ok_or_else(|| unreadable("it has no providers"))?,
            keys,
            has_identity,
        })
    }

    /// Can an API server running this config read `resource` written by `writer`?
    /// A resource the config does not list is only read as plaintext.
    pub(crate) fn can_read(&self, resource: &str, writer: &Writer) -> bool {
        if !self.resources.iter().any(|r| r == resource) {
            return *writer == Writer::Identity;
        }
        match writer {
            Writer::Identity => self.has_identity,
            Writer::Secretbox(n) => self.keys.iter().any(|(k, _)| k == n),
        }
    }

    fn material(&self, name: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, s)| s.as_str())
    }
}

/// What rendering needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RenderInput<'a> {
    /// `spec.encryptionConfiguration` (`None`: removed).
    pub(crate) spec: Option<&'a EncryptionConfiguration>,
    /// Referenced key Secrets by Secret name.
    pub(crate) key_secrets: &'a BTreeMap<String, KeySecret>,
    /// The config currently in the Secret.
    pub(crate) previous: Option<&'a PreviousConfig>,
    /// Every serving API server runs `previous` (its rollout completed). With no previous
    /// config this should be `true`: serving API servers then read plaintext only.
    pub(crate) previous_complete: bool,
    /// `status.encryption`.
    pub(crate) status: Option<&'a ClusterEncryptionStatus>,
    /// `EncryptionInitialized` is `"True"`.
    pub(crate) initialized: bool,
    /// Key names a storage scan of the config in the Secret, begun after it was written,
    /// found nothing sealed with ([`crate::retention`]); only these may leave the config.
    pub(crate) scanned_unused: &'a BTreeSet<String>,
}

/// The config the spec, the previous config and the status call for: what the Secret should
/// hold next, ready to be written.
#[derive(Clone, PartialEq, Eq)]
pub struct DesiredConfig {
    /// The config itself.
    pub config: EncryptionConfig,
    /// The exact file content written to the Secret.
    pub yaml: String,
    /// Content hash of `yaml` ([`content_hash`]).
    pub hash: String,
    /// Which provider encrypts new writes under it.
    pub writer: Writer,
    /// Names of spec keys whose referenced material differs from the rendered one.
    pub drift: Vec<String>,
}

impl std::fmt::Debug for DesiredConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredConfig")
            .field("config", &self.config)
            .field("hash", &self.hash)
            .field("writer", &self.writer)
            .field("drift", &self.drift)
            .finish()
    }
}

impl DesiredConfig {
    /// Resources entry of the rendered config.
    pub fn resources(&self) -> &[String] {
        &self.config.resources[0].resources
    }

    /// The data state once a Job has rewritten everything with this config: `(activeKey,
    /// encryptedResources)`; plaintext means no encrypted resources.
    pub fn target(&self) -> (String, Vec<String>) {
        let resources = match self.writer {
            Writer::Identity => Vec::new(),
            Writer::Secretbox(_) => self.resources().to_vec(),
        };
        (self.writer.active_key(), resources)
    }
}

/// Why no config could be rendered. Messages name keys and Secrets, never material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A key names a Secret that does not exist.
    #[error("key {key:?}: Secret {secret:?} referenced by secretRef does not exist in the control-plane namespace")]
    KeySecretMissing {
        /// The key, by name.
        key: String,
        /// The Secret it references.
        secret: String,
    },
    /// A key's Secret has no such data key.
    #[error("key {key:?}: Secret {secret:?} has no data key {data_key:?}")]
    KeySecretKeyMissing {
        /// The key, by name.
        key: String,
        /// The Secret it references.
        secret: String,
        /// The data key it names.
        data_key: String,
    },
    /// A key's material is not a valid secretbox key.
    #[error("key {key:?}: {reason}")]
    KeyInvalid {
        /// The key, by name.
        key: String,
        /// Why (never the material).
        reason: String,
    },
    /// Encryption is enabled with no keys.
    #[error("encryption is enabled but spec.encryptionConfiguration.secretbox has no keys")]
    NoKeys,
    /// The config in the Secret now cannot be parsed.
    #[error("the current rendered configuration cannot be read: {reason}; eargate will not overwrite it")]
    PreviousUnreadable {
        /// Why.
        reason: String,
    },
    /// The rendered config breaks a rule of kube-apiserver.
    #[error("the rendered configuration would not pass kube-apiserver's validation: {problems}")]
    Invalid {
        /// The problems found, joined.
        problems: String,
    },
}

impl RenderError {
    /// Short CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KeySecretMissing { .. } | Self::KeySecretKeyMissing { .. } => "KeySecretMissing",
            Self::KeyInvalid { .. } | Self::NoKeys => "KeyInvalid",
            Self::PreviousUnreadable { .. } => "ConfigUnreadable",
            Self::Invalid { .. } => "ConfigInvalid",
        }
    }
}

/// Hash of the encryption spec by key names and references only (no material): it changes
/// with every edit the policy allows, since material under a name is immutable.
pub(crate) fn spec_hash(spec: Option<&EncryptionConfiguration>) -> String {
    let view = spec.map(|s| {
        serde_json::json!({
            "enabled": s.enabled,
            "resources": s.resources,
            "keys": s.secretbox.as_ref().map(|b| b.keys.iter().map(|k| serde_json::json!({
                "name": k.name,
                "inline": k.value.is_some(),
                "ref": k.secret_ref.as_ref().map(|r| (r.name.clone(), r.key.clone())),
            })).collect::<Vec<_>>()),
        })
    });
    hex::encode(Sha256::digest(
        view.map(|v| v.to_string()).unwrap_or_default().as_bytes(),
    ))[..16]
        .to_owned()
}

/// Whether the observed status proves that no stored object uses a key other than
/// `activeKey` and that only `encryptedResources` hold encrypted data: phase `Active` (a
/// finished Job, or nothing to rewrite), or no encryption status at all with a plaintext
/// writer. Otherwise a rotation may have been interrupted and every rendered key is kept.
pub(crate) fn status_vouches(input: &RenderInput<'_>) -> bool {
    match input.status {
        Some(s) => s.phase == Some(EncryptionPhase::Active),
        None => !input.initialized && input.previous.is_none_or(|p| p.writer == Writer::Identity),
    }
}

/// Renders the config; `Ok(None)` when no config is needed (nothing configured, nothing to
/// decrypt).
pub(crate) fn render(input: &RenderInput<'_>) -> Result<Option<DesiredConfig>, RenderError> {
    let enabled = input.spec.is_some_and(|s| s.enabled);
    let spec_keys = input
        .spec
        .and_then(|s| s.secretbox.as_ref())
        .map(|b| b.keys.as_slice())
        .unwrap_or_default();
    let vouched = status_vouches(input);

    // Keys: spec order, material kept from the previous config under the same name.
    let mut keys: Vec<ProviderKey> = Vec::new();
    let mut drift = Vec::new();
    for key in spec_keys {
        if keys.iter().any(|k| k.name == key.name) {
            continue; // duplicate name: policy refuses it; the first one wins
        }
        let kept = input.previous.and_then(|p| p.material(&key.name));
        let resolved = resolve(key, input.key_secrets);
        let secret = match (kept, resolved) {
            (Some(kept), Ok(fresh)) => {
                if decode_key(kept).ok() != Some(fresh) {
                    drift.push(key.name.clone());
                }
                kept.to_owned()
            }
            // Already rendered: the Secret may be gone or broken now; the material is kept.
            (Some(kept), Err(_)) => kept.to_owned(),
            (None, Ok(fresh)) => base64::engine::general_purpose::STANDARD.encode(fresh),
            (None, Err(e)) => return Err(e),
        };
        keys.push(ProviderKey {
            name: key.name.clone(),
            secret,
        });
    }
    // Retained keys: what stored data may still be encrypted with.
    let status_active = input
        .status
        .and_then(|s| Writer::from_active_key(&s.active_key));
    if let Some(prev) = input.previous {
        for (name, secret) in &prev.keys {
            if keys.iter().any(|k| &k.name == name) {
                continue;
            }
            let needed = !vouched
                || status_active.as_ref() == Some(&Writer::Secretbox(name.clone()))
                || !input.scanned_unused.contains(name);
            if needed {
                keys.push(ProviderKey {
                    name: name.clone(),
                    secret: secret.clone(),
                });
            }
        }
    }

    // Resources: spec's, then those whose data may still be encrypted.
    let mut resources: Vec<String> = Vec::new();
    let mut add = |r: &String| {
        if !resources.contains(r) {
            resources.push(r.clone());
        }
    };
    input
        .spec
        .into_iter()
        .flat_map(|s| s.resources.iter())
        .for_each(&mut add);
    input
        .status
        .into_iter()
        .flat_map(|s| s.encrypted_resources.iter())
        .for_each(&mut add);
    if let Some(prev) = input.previous {
        if !vouched && !prev.keys.is_empty() {
            prev.resources.iter().for_each(&mut add);
        }
    }
    if resources.is_empty() {
        return Ok(None);
    }

    // The writer: the spec's wish, if it is safe; else the previous writer; else identity.
    let wish = if enabled {
        Writer::Secretbox(spec_keys.first().ok_or(RenderError::NoKeys)?.name.clone())
    } else {
        Writer::Identity
    };
    let readable_everywhere = |w: &Writer| match input.previous {
        None => *w == Writer::Identity,
        Some(p) => resources.iter().all(|r| p.can_read(r, w)),
    };
    let present = |w: &Writer| match w {
        Writer::Identity => true,
        Writer::Secretbox(n) => keys.iter().any(|k| &k.name == n),
    };
    let mut candidates = Vec::new();
    if input.previous_complete || input.previous.is_none() {
        candidates.push(wish.clone());
    }
    if let Some(p) = input.previous {
        candidates.push(p.writer.clone());
    }
    let writer = candidates
        .into_iter()
        .find(|w| present(w) && readable_everywhere(w))
        .unwrap_or(Writer::Identity);

    let providers = match &writer {
        Writer::Identity => {
            let mut v = vec![Provider::identity()];
            if !keys.is_empty() {
                v.push(Provider::secretbox(keys));
            }
            v
        }
        Writer::Secretbox(name) => {
            let pos = keys.iter().position(|k| &k.name == name).unwrap_or(0);
            let first = keys.remove(pos);
            keys.insert(0, first);
            vec![Provider::secretbox(keys), Provider::identity()]
        }
    };
    let config = EncryptionConfig::new(vec![ResourceConfig {
        resources,
        providers,
    }]);
    check_config(&config)?;
    let yaml = serde_yaml::to_string(&config).map_err(|e| RenderError::Invalid {
        problems: e.to_string(),
    })?;
    let hash = content_hash(yaml.as_bytes());
    Ok(Some(DesiredConfig {
        config,
        yaml,
        hash,
        writer,
        drift,
    }))
}

/// The key material a spec key refers to, decoded as kube-apiserver decodes it.
fn resolve(
    key: &eargate_policy::model::SecretboxKey,
    secrets: &BTreeMap<String, KeySecret>,
) -> Result<[u8; 32], RenderError> {
    let invalid = |e: KeyError| RenderError::KeyInvalid {
        key: key.name.clone(),
        reason: e.to_string(),
    };
    if let Some(value) = &key.value {
        return decode_key(value).map_err(invalid);
    }
    let Some(r) = &key.secret_ref else {
        return Err(RenderError::KeyInvalid {
            key: key.name.clone(),
            reason: "neither value nor secretRef is set".to_owned(),
        });
    };
    let data = match secrets.get(&r.name) {
        None | Some(KeySecret::Missing) => {
            return Err(RenderError::KeySecretMissing {
                key: key.name.clone(),
                secret: r.name.clone(),
            })
        }
        Some(KeySecret::Data(d)) => d,
    };
    let bytes = data
        .get(&r.key)
        .ok_or_else(|| RenderError::KeySecretKeyMissing {
            key: key.name.clone(),
            secret: r.name.clone(),
            data_key: r.key.clone(),
        })?;
    let text = std::str::from_utf8(bytes).map_err(|_| RenderError::KeyInvalid {
        key: key.name.clone(),
        reason: format!(
            "Secret {:?} data key {:?} is not base64 text",
            r.name, r.key
        ),
    })?;
    decode_key(text.trim_end_matches([' ', '\t'])).map_err(|e| RenderError::KeyInvalid {
        key: key.name.clone(),
        reason: format!("Secret {:?} data key {:?}: {e}", r.name, r.key),
    })
}

/// kube-apiserver's validation of the rendered file ([`EncryptionConfig::validate`]), plus
/// what eargate renders by construction: secretbox keys that decode to exactly 32 bytes.
pub fn check_config(config: &EncryptionConfig) -> Result<(), RenderError> {
    // kube-apiserver's rules as the policy crate implements them, then eargate's own.
    let mut problems = config.validate();
    if config.resources.is_empty() {
        problems.push("resources: at least one entry is required".to_owned());
    }
    for (i, entry) in config.resources.iter().enumerate() {
        for p in eargate_policy::validate_resources(&entry.resources) {
            problems.push(format!("resources[{i}].{p}"));
        }
        if entry.providers.is_empty() {
            problems.push(format!(
                "resources[{i}].providers: at least one provider is required"
            ));
        }
        for (j, p) in entry.providers.iter().enumerate() {
            let Some(sb) = &p.secretbox else { continue };
            if sb.keys.is_empty() {
                problems.push(format!(
                    "resources[{i}].providers[{j}].secretbox.keys: at least one key is required"
                ));
            }
            let mut seen = BTreeSet::new();
            for (k, key) in sb.keys.iter().enumerate() {
                let field = format!("resources[{i}].providers[{j}].secretbox.keys[{k}]");
                if key.name.is_empty() || key.name.contains(':') {
                    problems.push(format!(
                        "{field}.name: must be non-empty and contain no ':'"
                    ));
                }
                if !seen.insert(key.name.as_str()) {
                    problems.push(format!("{field}.name: duplicate key name {:?}", key.name));
                }
                if let Err(e) = decode_key(&key.secret) {
                    problems.push(format!("{field}.secret (key {:?}): {e}", key.name));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RenderError::Invalid {
            problems: problems.join("; "),
        })
    }
}

/// A YAML error's location without the offending text (which may be key material).
fn redact_yaml_error(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!("YAML error at line {} column {}", l.line(), l.column()),
        None => "YAML error".to_owned(),
    }
}

/// A copy of the config with every secret replaced by `REDACTED` (for `eargate render`).
pub(crate) fn redacted(config: &EncryptionConfig) -> EncryptionConfig {
    let mut c = config.clone();
    for entry in &mut c.resources {
        for p in &mut entry.providers {
            for kp in [&mut p.secretbox, &mut p.aescbc, &mut p.aesgcm]
                .into_iter()
                .flatten()
            {
                for k in &mut kp.keys {
                    k.secret = "REDACTED".to_owned();
                }
            }
        }
    }
    c
}
