//! `eargate verify`: read the objects of the encrypted resources straight from etcd and
//! prove which key sealed each one — optionally also every older revision etcd still keeps.

use std::collections::HashMap;

use eargate_policy::apiserver_config::EncryptionConfig;
use etcd_client::Client;

use crate::classify::{split_resource, Keyring, KeyringError, Outcome, OutcomeKind};
use crate::etcd::{self, EtcdError};
use crate::report::{
    Counts, HistoryReport, KeyCounts, Offender, OffenderList, Report, ResourceReport,
};
use crate::resources::{
    normalise_prefix, prefix_range_end, resource_keys, ResourceError, ResourceKeys,
};

/// Offenders listed per section before the rest are only counted.
pub const DEFAULT_OFFENDER_LIMIT: usize = 1000;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Resources to check; empty means every resource named in the config.
    pub resources: Vec<String>,
    /// kube-apiserver's `--etcd-prefix`.
    pub prefix: String,
    /// Also read older revisions down to the compaction revision.
    pub history: bool,
    /// Offenders listed per section.
    pub offender_limit: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            resources: Vec::new(),
            prefix: eargate_policy::names::DEFAULT_ETCD_PREFIX.to_owned(),
            history: false,
            offender_limit: DEFAULT_OFFENDER_LIMIT,
        }
    }
}

/// Bad input (exit 2) or etcd trouble (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("the encryption config names no resources to check")]
    NoResources,
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// One resource to scan: its key range and keys.
#[derive(Debug)]
pub struct Plan {
    pub keys: ResourceKeys,
    pub keyring: Keyring,
}

/// Resolves the resources to check into key ranges and keyrings (pure; no etcd).
pub fn plan(config: &EncryptionConfig, options: &VerifyOptions) -> Result<Vec<Plan>, VerifyError> {
    let names: Vec<String> = if options.resources.is_empty() {
        config
            .resources
            .iter()
            .flat_map(|e| e.resources.iter().cloned())
            .collect()
    } else {
        options.resources.clone()
    };
    let prefix = normalise_prefix(&options.prefix)?;
    let mut plans: Vec<Plan> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let keys = resource_keys(&prefix, name)?;
        if plans.iter().any(|p| p.keys.key_prefix == keys.key_prefix) {
            continue;
        }
        // `secrets.` and `secrets` are the same resource.
        let canonical = match split_resource(name) {
            (r, "") => r.to_owned(),
            _ => name.to_owned(),
        };
        let keyring = Keyring::for_resource(config, &canonical)?;
        plans.push(Plan {
            keys: ResourceKeys {
                resource: canonical,
                ..keys
            },
            keyring,
        });
    }
    if plans.is_empty() {
        return Err(VerifyError::NoResources);
    }
    Ok(plans)
}

/// Runs the check against etcd.
pub async fn verify(
    client: &Client,
    config: &EncryptionConfig,
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let plans = plan(config, options)?;
    let mut report = Report {
        ok: false,
        verdict: "not-verified",
        etcd_revision: 0,
        prefix: normalise_prefix(&options.prefix)?,
        resources: Vec::new(),
        totals: Counts::default(),
        keys: KeyCounts::default(),
        offenders: OffenderList::with_limit(options.offender_limit),
        history: None,
        problems: Vec::new(),
    };
    let mut scratch = Vec::new();
    let mut revision = 0;
    for plan in &plans {
        let mut counts = Counts::default();
        let prefix = plan.keys.key_prefix.as_bytes().to_vec();
        let end = prefix_range_end(&prefix);
        let read_at = etcd::scan_range(client, prefix, end, revision, |kv| {
            let outcome = plan.keyring.classify(kv.value(), &mut scratch);
            counts.add(outcome.kind());
            if let Some(name) = outcome.key_name() {
                report.keys.add(name);
            }
            if outcome.kind() != OutcomeKind::SealedWithPrimary {
                report.offenders.push(Offender::new(
                    &plan.keys.resource,
                    plan.keys.object_path(kv.key()),
                    kv.mod_revision(),
                    outcome,
                ));
            }
        })
        .await?;
        // Every later resource is read at the same revision: one consistent snapshot.
        revision = read_at;
        for kind in OutcomeKind::ALL {
            for _ in 0..counts.get(kind) {
                report.totals.add(kind);
            }
        }
        report.resources.push(ResourceReport {
            resource: plan.keys.resource.clone(),
            etcd_prefix: plan.keys.key_prefix.clone(),
            primary: plan.keyring.primary().to_string(),
            counts,
        });
    }
    report.etcd_revision = revision;
    if options.history {
        report.history = Some(history(client, &plans, revision, options.offender_limit).await?);
    }
    report.decide();
    Ok(report)
}

/// A non-primary value whose fate (overwritten, deleted or still current) is not known yet.
struct Pending {
    plan: usize,
    revision: i64,
    outcome: Outcome,
}

/// Reads the state at the oldest readable revision, then replays every change up to
/// `current`. A non-primary value becomes an older-revision offender once a later write or
/// delete of its key is seen; values still current at the end were reported by the main
/// scan. Memory: only keys whose latest value seen is not sealed with the primary key.
async fn history(
    client: &Client,
    plans: &[Plan],
    current: i64,
    offender_limit: usize,
) -> Result<HistoryReport, VerifyError> {
    let probe = plans[0].keys.key_prefix.as_bytes();
    let oldest = etcd::oldest_readable_revision(client, probe, current).await?;
    let mut scratch = Vec::new();
    let mut pending: HashMap<Vec<u8>, Pending> = HashMap::new();
    let mut scanned = 0u64;
    let mut older_counts = Counts::default();
    let mut offenders = OffenderList::with_limit(offender_limit);

    let mut settle = |pending: &mut HashMap<Vec<u8>, Pending>, key: &[u8], deleted: bool| {
        if let Some(p) = pending.remove(key) {
            older_counts.add(p.outcome.kind());
            let plan = &plans[p.plan];
            let mut o = Offender::new(
                &plan.keys.resource,
                plan.keys.object_path(key),
                p.revision,
                p.outcome,
            );
            o.deleted = deleted;
            offenders.push(o);
        }
    };
    let mut observe = |pending: &mut HashMap<Vec<u8>, Pending>,
                       plan: usize,
                       key: &[u8],
                       revision: i64,
                       value: &[u8]| {
        scanned += 1;
        let outcome = plans[plan].keyring.classify(value, &mut scratch);
        if outcome.kind() != OutcomeKind::SealedWithPrimary {
            pending.insert(
                key.to_vec(),
                Pending {
                    plan,
                    revision,
                    outcome,
                },
            );
        }
    };

    for (i, plan) in plans.iter().enumerate() {
        let prefix = plan.keys.key_prefix.as_bytes().to_vec();
        let end = prefix_range_end(&prefix);
        etcd::scan_range(client, prefix, end, oldest, |kv| {
            observe(&mut pending, i, kv.key(), kv.mod_revision(), kv.value());
        })
        .await?;
    }
    etcd::replay_history(client, oldest, current, |event| {
        let Some(plan) = plans
            .iter()
            .position(|p| event.key.starts_with(p.keys.key_prefix.as_bytes()))
        else {
            return;
        };
        match event.value {
            Some(value) => {
                settle(&mut pending, event.key, false);
                observe(&mut pending, plan, event.key, event.revision, value);
            }
            None => {
                settle(&mut pending, event.key, true);
            }
        }
    })
    .await?;
    // What is still pending is the current value of its key: the main scan reported it.
    drop(pending);
    Ok(HistoryReport {
        compaction_revision: (oldest > 1).then_some(oldest),
        from_revision: oldest,
        revisions_scanned: scanned,
        older_counts,
        offenders,
        remedy: format!(
            "etcd keeps overwritten values until it compacts its history. Wait for \
             kube-apiserver's periodic compaction (every 5 minutes by default) or run \
             `etcdctl compact {current}`, then `etcdctl defrag` on every member so the \
             space is really freed; then take fresh backups and delete older ones, which \
             still contain these values."
        ),
    })
}
