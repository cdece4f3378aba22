//! Reading a Cluster's encryption status: the helpers every part of eargate uses to answer
//! "is encryption active?" and "which key seals the data?" the same way.

use crate::model::{Cluster, EncryptionPhase};
use crate::names::{ACTIVE_KEY_SECRETBOX_PREFIX, CONDITION_ENCRYPTION_INITIALIZED};

/// `status.encryption` is present or the `EncryptionInitialized` condition is `"True"`.
pub fn is_encryption_active(cluster: &Cluster) -> bool {
    let Some(status) = &cluster.status else {
        return false;
    };
    status.encryption.is_some()
        || status
            .conditions
            .get(CONDITION_ENCRYPTION_INITIALIZED)
            .is_some_and(|c| c.status == "True")
}

/// `status.encryption.phase`, if reported.
pub fn phase(cluster: &Cluster) -> Option<EncryptionPhase> {
    cluster.status.as_ref()?.encryption.as_ref()?.phase
}

/// `status.encryption.activeKey` as reported (`secretbox/<name>` or `identity`).
pub fn active_key(cluster: &Cluster) -> Option<&str> {
    let key = cluster
        .status
        .as_ref()?
        .encryption
        .as_ref()?
        .active_key
        .as_str();
    (!key.is_empty()).then_some(key)
}

/// The secretbox key name inside an `activeKey` value, if it names one.
pub fn secretbox_key_name(active_key: &str) -> Option<&str> {
    active_key
        .strip_prefix(ACTIVE_KEY_SECRETBOX_PREFIX)
        .filter(|n| !n.is_empty())
}

/// The name of the secretbox key that currently seals the data, if any.
pub fn active_secretbox_key(cluster: &Cluster) -> Option<&str> {
    active_key(cluster).and_then(secretbox_key_name)
}

/// `activeKey` for a secretbox key name: `secretbox/<name>`.
pub fn secretbox_active_key(name: &str) -> String {
    format!("{ACTIVE_KEY_SECRETBOX_PREFIX}{name}")
}

/// A rollout is in flight: the configuration is locked (rule EAR006).
pub fn is_rollout_locked(phase: Option<EncryptionPhase>) -> bool {
    matches!(
        phase,
        Some(EncryptionPhase::Pending | EncryptionPhase::EncryptionNeeded)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterCondition, ClusterEncryptionStatus, ClusterSpec, ClusterStatus};

    #[test]
    fn active_by_status_or_condition() {
        let mut c = Cluster::new("c", ClusterSpec::default());
        assert!(!is_encryption_active(&c));
        let mut status = ClusterStatus::default();
        status.conditions.insert(
            CONDITION_ENCRYPTION_INITIALIZED.into(),
            ClusterCondition {
                status: "True".into(),
                ..Default::default()
            },
        );
        c.status = Some(status.clone());
        assert!(is_encryption_active(&c));
        assert_eq!(active_secretbox_key(&c), None);
        status.conditions.clear();
        status.encryption = Some(ClusterEncryptionStatus {
            phase: Some(EncryptionPhase::Active),
            active_key: "secretbox/k1".into(),
            encrypted_resources: vec!["secrets".into()],
        });
        c.status = Some(status);
        assert!(is_encryption_active(&c));
        assert_eq!(active_secretbox_key(&c), Some("k1"));
        assert_eq!(phase(&c), Some(EncryptionPhase::Active));
        assert_eq!(secretbox_key_name("identity"), None);
    }
}
