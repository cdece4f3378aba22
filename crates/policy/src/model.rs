//! The parts of `kubermatic.k8c.io/v1` `Cluster` that eargate reads and writes.
//!
//! Field names and shapes follow Kubermatic's Go types exactly so eargate can guard a real
//! Kubermatic seed. Only the encryption-related fields are declared: when decoding, serde
//! skips every other field without building it (that is what keeps the webhook fast), and
//! the CRD marks `spec` and `status` with `x-kubernetes-preserve-unknown-fields` so the API
//! server keeps them. Because undeclared fields are dropped on decode, code must never
//! write a whole `Cluster` back (no PUT of a decoded object): write status through the
//! status subresource with a patch that names only the fields it changes.
//!
//! Doc comments here are the CRD's descriptions (`eargate crd`, the chart, `kubectl
//! explain`): the fields and variants without one are allowed to stay undocumented
//! (`#[allow(missing_docs)]`), since documenting them would change the published CRD.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec` of a Cluster, reduced to what encryption at rest depends on.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubermatic.k8c.io",
    version = "v1",
    kind = "Cluster",
    plural = "clusters",
    status = "ClusterStatus",
    doc = "A Kubermatic user cluster. eargate reads spec.features.encryptionAtRest and spec.encryptionConfiguration (encryption at rest of the cluster's etcd data) and writes status.encryption; every other field is Kubermatic's and kept as is.",
    printcolumn = r#"{"name":"Encryption","type":"string","jsonPath":".status.encryption.phase"}"#,
    printcolumn = r#"{"name":"Active key","type":"string","jsonPath":".status.encryption.activeKey"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ClusterSpec {
    /// Feature gates of the cluster, by name. Encryption needs `encryptionAtRest: true`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, bool>,
    /// Absent means "no encryption configured" (or: being removed, see the policy rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
}

/// `spec.encryptionConfiguration`.
#[allow(missing_docs)] // a doc comment would become a CRD description
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    #[serde(default)]
    pub enabled: bool,
    /// Resources to encrypt: plural, lowercase, as in kube-apiserver's config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<SecretboxEncryptionConfiguration>,
}

/// `spec.encryptionConfiguration.secretbox`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretboxEncryptionConfiguration {
    /// `keys[0]` is the primary key (used for writes); the others only decrypt.
    #[serde(default)]
    pub keys: Vec<SecretboxKey>,
}

/// One secretbox key: material given inline (`value`) or by reference (`secretRef`).
///
/// `Debug` is written by hand so that key material can never reach a log line by accident.
#[allow(missing_docs)] // a doc comment would become a CRD description
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretboxKey {
    #[serde(default)]
    pub name: String,
    /// Base64 (Go `StdEncoding`) of exactly 32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A Secret in the cluster's control-plane namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

impl std::fmt::Debug for SecretboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretboxKey")
            .field("name", &self.name)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("secret_ref", &self.secret_ref)
            .finish()
    }
}

/// A `corev1.SecretKeySelector`: Secret name and the data key inside it.
#[allow(missing_docs)] // a doc comment would become a CRD description
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// `status` of a Cluster, reduced to what encryption at rest depends on.
#[allow(missing_docs)] // a doc comment would become a CRD description
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ClusterStatus {
    /// The control-plane namespace (`cluster-<name>` on Kubermatic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ClusterEncryptionStatus>,
    /// Kubermatic keeps conditions as a map keyed by condition type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: BTreeMap<String, ClusterCondition>,
}

/// `status.encryption`.
#[allow(missing_docs)] // a doc comment would become a CRD description
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEncryptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<EncryptionPhase>,
    /// `secretbox/<key name>`, or `identity` for data stored in plaintext.
    #[serde(default)]
    pub active_key: String,
    #[serde(default)]
    pub encrypted_resources: Vec<String>,
}

/// `status.encryption.phase`.
#[allow(missing_docs)] // a doc comment would become a CRD description
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum EncryptionPhase {
    Pending,
    EncryptionNeeded,
    Active,
    Failed,
}

impl EncryptionPhase {
    /// The phase as written in `status.encryption.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::EncryptionNeeded => "EncryptionNeeded",
            Self::Active => "Active",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for EncryptionPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of Kubermatic's condition map.
#[allow(missing_docs)] // a doc comment would become a CRD description
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCondition {
    /// `"True"`, `"False"` or `"Unknown"`.
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubermatic_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
