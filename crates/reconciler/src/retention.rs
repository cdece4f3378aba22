//! Which removed keys the rendered config still carries, and what the storage scan says
//! about them. A key the spec no longer names stays in the config while phase `Active` until
//! a storage scan of the user cluster's etcd — begun after the config was last written, so
//! every API server already wrote with another key — finds nothing sealed with it: no
//! current object and no older revision etcd still holds.
//!
//! Pure: the planner uses it for the config and the condition, the metrics for the gauges.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use eargate_policy::storage_scan::{KeySummary, KeyVerdict};

use crate::model::{ClusterSnapshot, ScanState, StorageScan};

/// The latest scan, if it counts for the config whose content hash is `config_hash` (the
/// Secret's): a scan of that config, created since it was last written (under the rollout
/// start recorded now).
pub(crate) fn current_scan<'a>(
    snapshot: &'a ClusterSnapshot,
    config_hash: &str,
) -> Option<&'a StorageScan> {
    let scan = snapshot.scan.as_ref()?;
    let written = snapshot.rollout.as_ref()?.started;
    (scan.config_hash == config_hash && scan.written == written).then_some(scan)
}

/// The summary of `scan` (see [`current_scan`]) when it finished.
fn finished_summary(scan: Option<&StorageScan>) -> Option<&KeySummary> {
    match scan.map(|s| &s.state) {
        Some(ScanState::Finished { summary, .. }) => Some(summary),
        _ => None,
    }
}

/// Key names the current scan found unused.
pub(crate) fn scanned_unused(scan: Option<&StorageScan>) -> BTreeSet<String> {
    finished_summary(scan)
        .map(|summary| {
            summary
                .keys
                .keys()
                .filter(|k| summary.use_of(k) == KeyVerdict::Unused)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// A retained key and what the current scan says about it (`None`: no finished scan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Retained {
    pub(crate) key: String,
    pub(crate) verdict: Option<KeyVerdict>,
}

/// The keys of `config_keys` that the spec no longer names and that are not the writer,
/// each with the current scan's verdict.
pub(crate) fn retained(
    scan: Option<&StorageScan>,
    config_keys: &[String],
    spec_keys: &BTreeSet<String>,
    writer_key: Option<&str>,
) -> Vec<Retained> {
    let summary = finished_summary(scan);
    config_keys
        .iter()
        .filter(|k| !spec_keys.contains(*k) && Some(k.as_str()) != writer_key)
        .map(|k| Retained {
            key: k.clone(),
            verdict: summary.map(|s| s.use_of(k)),
        })
        .collect()
}

/// What the condition says: reason and message (key names and counts only).
pub(crate) fn describe(
    retained: &[Retained],
    scan: Option<&StorageScan>,
) -> (&'static str, String) {
    let mut keys = String::new();
    for (i, r) in retained.iter().enumerate() {
        if i > 0 {
            keys.push_str("; ");
        }
        let _ = write!(keys, "{}", r.key);
        match r.verdict {
            Some(KeyVerdict::InUse {
                objects,
                older_revisions,
            }) => {
                let _ = write!(
                    keys,
                    ": {objects} object(s), {older_revisions} older revision(s)"
                );
            }
            Some(KeyVerdict::Unknown(why)) => {
                let _ = write!(keys, ": unknown ({why})");
            }
            Some(KeyVerdict::Unused) => keys.push_str(": nothing left"),
            None => {}
        }
    }
    let kept = "kept in the config until a storage scan finds nothing sealed with them";
    match scan.map(|s| (s, &s.state)) {
        None => (
            "Scanning",
            format!("{keys}: {kept}; starting a storage scan"),
        ),
        Some((s, ScanState::Running)) => (
            "Scanning",
            format!("{keys}: {kept}; storage scan {} is running", s.job),
        ),
        Some((s, ScanState::Finished { summary, .. })) => {
            let unknown = retained
                .iter()
                .any(|r| matches!(r.verdict, Some(KeyVerdict::Unknown(_))));
            let reason = if unknown {
                "ScanInconclusive"
            } else {
                "StillInUse"
            };
            (
                reason,
                format!(
                    "{keys} (storage scan {} at etcd revision {}): {kept}; older revisions go when etcd compacts them, and stored objects when they are rewritten",
                    s.job, summary.etcd_revision
                ),
            )
        }
        Some((s, ScanState::Failed { reason, .. })) => (
            "ScanFailed",
            format!("{keys}: {kept}; storage scan {} failed: {reason}", s.job),
        ),
    }
}

/// How long until the next scan is due, when the last one ended at `at` and the wait after
/// it is `wait` (zero: due now).
pub(crate) fn rescan_due_in(
    at: k8s_openapi::jiff::Timestamp,
    now: k8s_openapi::jiff::Timestamp,
    wait: Duration,
) -> Duration {
    let elapsed = Duration::try_from(now.duration_since(at)).unwrap_or_default();
    wait.saturating_sub(elapsed)
}
