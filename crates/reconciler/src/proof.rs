//! Whether every serving API server replica runs the config the reconciler wrote, judged from
//! what each replica reports about itself ([`ReplicaReport`]) — never from readiness alone.
//!
//! A replica proves a config when its `/metrics` carries the hash its version computes from
//! the exact bytes in the rendered Secret ([`crate::loaded::expected_hash`]). Versions that
//! export no such hash (before 1.34), or whose hash format eargate has not checked against the
//! real binary, leave the proof unavailable: the caller falls back to readiness gating and
//! says so.

use crate::loaded::{expected_hash, FIRST_MINOR_WITH_HASH};
use crate::model::{Loaded, ReplicaReport};

/// The verdict on what the serving replicas have loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Proof {
    /// At least `expected` replicas serve and each reports the hash of the rendered bytes.
    Proven {
        replicas: Vec<String>,
        expected: usize,
    },
    /// Some replica reports another config, none, or cannot be reached; or fewer replicas
    /// serve than the Deployment wants. Progress waits.
    Blocked {
        proven: usize,
        expected: usize,
        /// `(pod, what is wrong)` for each replica that is not proven, in Pod-name order.
        unproven: Vec<(String, String)>,
    },
    /// The API server version exports no hash eargate can check.
    Unavailable { why: String },
}

impl Proof {
    /// Progress may go on: proven, or no proof possible (readiness gates instead).
    pub(crate) fn allows_progress(&self) -> bool {
        !matches!(self, Proof::Blocked { .. })
    }

    /// `(proven, expected)` for the metrics; `None` when no proof is possible.
    pub(crate) fn counts(&self) -> Option<(usize, usize)> {
        match self {
            Proof::Proven { replicas, expected } => Some((replicas.len(), *expected)),
            Proof::Blocked {
                proven, expected, ..
            } => Some((*proven, *expected)),
            Proof::Unavailable { .. } => None,
        }
    }

    /// One line for a condition or an Event (pod names and short hashes, no key material).
    pub(crate) fn message(&self, config_hash: &str) -> String {
        match self {
            Proof::Proven { replicas, .. } => format!(
                "{n} of {n} API server replicas report config {config_hash} loaded: {}",
                replicas.join(", "),
                n = replicas.len()
            ),
            Proof::Blocked {
                proven,
                expected,
                unproven,
            } => {
                let who = unproven
                    .iter()
                    .map(|(pod, why)| format!("{pod} {why}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                format!(
                    "{proven} of {expected} API server replicas report config {config_hash} loaded; {who}"
                )
            }
            Proof::Unavailable { why } => {
                format!("the loaded config cannot be proven ({why}); pod readiness gates instead")
            }
        }
    }
}

/// Judges the replicas' reports against the rendered `config` bytes. `expected` is how many
/// replicas the Deployment wants; fewer serving replicas block.
pub(crate) fn prove(replicas: &[ReplicaReport], config: &[u8], expected: usize) -> Proof {
    let mut sorted: Vec<&ReplicaReport> = replicas.iter().collect();
    sorted.sort_by(|a, b| a.pod.cmp(&b.pod));
    let mut proven = Vec::new();
    let mut unproven = Vec::new();
    for replica in sorted {
        let why = match &replica.loaded {
            Loaded::Unreachable { error } => format!("cannot be reached ({error})"),
            Loaded::Reported { minor, hash } => {
                if *minor < FIRST_MINOR_WITH_HASH {
                    return Proof::Unavailable {
                        why: format!(
                            "replica {} runs kube-apiserver 1.{minor}, which exports no loaded-config hash (1.{FIRST_MINOR_WITH_HASH} and later do)",
                            replica.pod
                        ),
                    };
                }
                let Some(want) = expected_hash(*minor, config) else {
                    return Proof::Unavailable {
                        why: format!(
                            "replica {} runs kube-apiserver 1.{minor}, whose hash format eargate has not checked against that release",
                            replica.pod
                        ),
                    };
                };
                match hash {
                    Some(h) if *h == want => {
                        proven.push(replica.pod.clone());
                        continue;
                    }
                    Some(h) => format!("has loaded another config ({})", short(h)),
                    None => "reports no encryption config loaded".to_owned(),
                }
            }
        };
        unproven.push((replica.pod.clone(), why));
    }
    if unproven.is_empty() && proven.len() >= expected {
        return Proof::Proven {
            replicas: proven,
            expected,
        };
    }
    if proven.len() + unproven.len() < expected {
        unproven.push((
            "(missing)".to_owned(),
            format!(
                "only {} of {expected} replicas serve",
                proven.len() + unproven.len()
            ),
        ));
    }
    Proof::Blocked {
        proven: proven.len(),
        expected,
        unproven,
    }
}

/// A reported hash shortened for messages: `sha256:` and 12 hex digits.
fn short(hash: &str) -> String {
    let (prefix, hex) = hash.split_once(':').unwrap_or(("", hash));
    let hex: String = hex.chars().take(12).collect();
    if prefix.is_empty() {
        hex
    } else {
        format!("{prefix}:{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = b"kind: EncryptionConfiguration\n";

    fn reported(pod: &str, minor: u32, config: Option<&[u8]>) -> ReplicaReport {
        ReplicaReport {
            pod: pod.to_owned(),
            loaded: Loaded::Reported {
                minor,
                hash: config.map(|c| expected_hash(37, c).expect("37 is proven")),
            },
        }
    }

    #[test]
    fn every_replica_must_report_the_written_bytes() {
        let a = reported("apiserver-a", 37, Some(CONFIG));
        let b = reported("apiserver-b", 37, Some(CONFIG));
        assert_eq!(
            prove(&[b.clone(), a.clone()], CONFIG, 2),
            Proof::Proven {
                replicas: vec!["apiserver-a".into(), "apiserver-b".into()],
                expected: 2
            }
        );
        let stale = reported("apiserver-b", 37, Some(b"kind: other\n"));
        let p = prove(&[a.clone(), stale], CONFIG, 2);
        assert!(!p.allows_progress());
        let msg = p.message("abc");
        assert!(msg.starts_with("1 of 2 API server replicas report config abc loaded; apiserver-b has loaded another config (sha256:"), "{msg}");
        let none = reported("apiserver-b", 37, None);
        assert!(prove(&[a.clone(), none], CONFIG, 2)
            .message("abc")
            .contains("apiserver-b reports no encryption config loaded"));
        let down = ReplicaReport {
            pod: "apiserver-b".into(),
            loaded: Loaded::Unreachable {
                error: "connection refused".into(),
            },
        };
        assert!(prove(&[a.clone(), down], CONFIG, 2)
            .message("abc")
            .contains("apiserver-b cannot be reached (connection refused)"));
        // Too few serving replicas block, even when each one is proven.
        let few = prove(std::slice::from_ref(&a), CONFIG, 2);
        assert_eq!(few.counts(), Some((1, 2)));
        assert!(few.message("abc").contains("only 1 of 2 replicas serve"));
    }

    #[test]
    fn versions_without_a_checked_hash_fall_back_to_readiness() {
        let old = reported("apiserver-a", 33, None);
        let p = prove(&[old], CONFIG, 1);
        assert!(p.allows_progress());
        assert_eq!(p.counts(), None);
        assert!(p
            .message("abc")
            .contains("1.33, which exports no loaded-config hash"));
        let unchecked = reported("apiserver-a", 38, Some(CONFIG));
        assert!(prove(&[unchecked], CONFIG, 1)
            .message("abc")
            .contains("has not checked"));
    }
}
