//! What a storage scan hands back: per key name, how much stored data is still sealed with
//! it. `eargate verify --termination-message-path` writes a [`KeySummary`] into its Pod's
//! termination message; the reconciler reads it back and keeps a removed key in the
//! rendered config until [`KeySummary::use_of`] finds nothing left ([`KeyVerdict::Unused`]).
//! One type on both sides, so the writer and the reader cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most a container's termination message may hold (kubelet truncates beyond it).
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// How much one secretbox key is still used, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUse {
    /// Current objects sealed with the key.
    pub objects: u64,
    /// Older revisions etcd still holds that are sealed with it; `None` without `--history`
    /// (unknown, not zero).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub older_revisions: Option<u64>,
}

/// The short per-key summary a storage scan hands back in its Pod's termination message:
/// which keys still seal something. Key names only; never values or key material.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    /// The report's verdict (everything current, and with `--history` every older revision,
    /// sealed with the primary key).
    pub ok: bool,
    /// The etcd revision the current objects were read at.
    pub etcd_revision: i64,
    /// Older revisions were read (`--history`).
    pub history: bool,
    /// Every key name of the config or found in storage, with its use.
    pub keys: BTreeMap<String, KeyUse>,
    /// Key names were left out to stay within [`TERMINATION_MESSAGE_LIMIT`].
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub truncated: bool,
}

/// What a scan says about one key: whether it may leave the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    /// No current object and no older revision etcd still holds is sealed with it.
    Unused,
    /// Something is still sealed with it.
    InUse {
        /// Current objects.
        objects: u64,
        /// Older revisions (gone once etcd compacts them).
        older_revisions: u64,
    },
    /// The scan cannot tell (why, for a condition).
    Unknown(&'static str),
}

impl KeySummary {
    /// Compact JSON within [`TERMINATION_MESSAGE_LIMIT`] bytes: key names are dropped from the
    /// end (and `truncated` set) until it fits.
    pub fn to_termination_message(&self) -> String {
        let mut summary = self.clone();
        loop {
            let text = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".to_owned());
            if text.len() <= TERMINATION_MESSAGE_LIMIT || summary.keys.is_empty() {
                return text;
            }
            summary.keys.pop_last();
            summary.truncated = true;
        }
    }

    /// Reads a termination message; the error says what is wrong without quoting it.
    pub fn parse(message: &str) -> Result<Self, String> {
        serde_json::from_str(message).map_err(|e| {
            format!(
                "the storage scan's summary is not the expected JSON (line {} column {})",
                e.line(),
                e.column()
            )
        })
    }

    /// Whether `name` may leave the config: only a scan that read older revisions and names
    /// the key with zero current objects and zero older revisions says [`KeyVerdict::Unused`].
    /// A key the summary does not list is unknown, never unused: the summary may be truncated,
    /// or the scan may have read another config.
    pub fn use_of(&self, name: &str) -> KeyVerdict {
        if !self.history {
            return KeyVerdict::Unknown("the scan did not read older revisions (--history)");
        }
        let Some(u) = self.keys.get(name) else {
            return KeyVerdict::Unknown(if self.truncated {
                "the scan's summary was truncated before this key"
            } else {
                "the scan did not report this key"
            });
        };
        match u.older_revisions {
            None => KeyVerdict::Unknown("the scan did not count older revisions"),
            Some(0) if u.objects == 0 => KeyVerdict::Unused,
            Some(older_revisions) => KeyVerdict::InUse {
                objects: u.objects,
                older_revisions,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_fits_a_termination_message() {
        let mut keys = BTreeMap::new();
        for i in 0..500 {
            keys.insert(
                format!("a-rather-long-key-name-number-{i:04}"),
                KeyUse {
                    objects: 1,
                    older_revisions: Some(2),
                },
            );
        }
        let summary = KeySummary {
            ok: false,
            etcd_revision: 7,
            history: true,
            keys,
            truncated: false,
        };
        let text = summary.to_termination_message();
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        let back = KeySummary::parse(&text).expect("JSON");
        assert!(back.truncated);
        assert!(back.keys.len() > 50 && back.keys.len() < 500);
        assert!(back.keys.contains_key("a-rather-long-key-name-number-0000"));
        assert_eq!(
            back.use_of("a-rather-long-key-name-number-0499"),
            KeyVerdict::Unknown("the scan's summary was truncated before this key")
        );
        let small = KeySummary {
            keys: BTreeMap::from([("k1".to_owned(), KeyUse::default())]),
            ..KeySummary::default()
        };
        assert_eq!(
            small.to_termination_message(),
            r#"{"ok":false,"etcdRevision":0,"history":false,"keys":{"k1":{"objects":0}}}"#
        );
    }

    #[test]
    fn only_a_full_count_of_zero_lets_a_key_go() {
        let summary = KeySummary::parse(
            r#"{"ok":false,"etcdRevision":9,"history":true,"keys":{"k1":{"objects":0,"olderRevisions":0},"k2":{"objects":3,"olderRevisions":0},"k3":{"objects":0,"olderRevisions":2},"k4":{"objects":0}}}"#,
        )
        .expect("JSON");
        assert_eq!(summary.use_of("k1"), KeyVerdict::Unused);
        assert_eq!(
            summary.use_of("k2"),
            KeyVerdict::InUse {
                objects: 3,
                older_revisions: 0
            }
        );
        assert_eq!(
            summary.use_of("k3"),
            KeyVerdict::InUse {
                objects: 0,
                older_revisions: 2
            }
        );
        assert!(matches!(summary.use_of("k4"), KeyVerdict::Unknown(_)));
        assert!(matches!(summary.use_of("k5"), KeyVerdict::Unknown(_)));
        let no_history = KeySummary {
            history: false,
            ..summary
        };
        assert!(matches!(no_history.use_of("k1"), KeyVerdict::Unknown(_)));
        let err = KeySummary::parse("error: cannot reach etcd").unwrap_err();
        assert!(!err.contains("cannot reach"), "{err}");
    }
}
