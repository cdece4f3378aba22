//! `eargate verify`: read the objects of the encrypted resources straight from etcd and
//! prove which key sealed each one — optionally also every older revision etcd still keeps.
//!
//! Wildcard entries (`*.*`, `*.`, `*.<group>`) are expanded from the etcd keyspace itself:
//! the resources stored under the prefix are found by their directories (see
//! [`crate::resources::top_level`]), read at the same revision as everything else.

use std::collections::HashMap;

use eargate_policy::apiserver_config::EncryptionConfig;
use etcd_client::Client;

use crate::classify::{entry_for, split_resource, Keyring, KeyringError, Outcome, OutcomeKind};
use crate::etcd::{self, EtcdError};
use crate::report::{
    Counts, HistoryReport, KeyCounts, Offender, OffenderList, Report, ResourceReport,
};
use crate::resources::{
    normalise_prefix, parse_wildcard, prefix_range_end, resource_keys, top_level, under_group,
    under_services, ResourceError, ResourceKeys, StoredResource, TopLevel, Wildcard,
};

/// Offenders listed per section before the rest are only counted.
pub const DEFAULT_OFFENDER_LIMIT: usize = 1000;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Resources to check; empty means every resource named in the config. Wildcards
    /// (`*.*`, `*.`, `*.<group>`) are expanded from the etcd keyspace.
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
    /// A resource name that cannot be mapped to etcd keys.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// The config's keys for a resource are unusable.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The config names no resources.
    #[error("the encryption config names no resources to check")]
    NoResources,
    /// Reading etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// One resource to scan: its key range and keys.
#[derive(Debug)]
pub struct Plan {
    /// The resource and its key range.
    pub keys: ResourceKeys,
    /// The keys that may have sealed its values.
    pub keyring: Keyring,
}

/// The resources to check, resolved.
#[derive(Debug, Default)]
pub struct Planned {
    /// One plan per resource.
    pub plans: Vec<Plan>,
    /// The wildcards asked for, in order (empty when none).
    pub wildcards: Vec<Wildcard>,
    /// What the expansion of the wildcards did, for the report.
    pub notes: Vec<String>,
}

/// The resources asked for: `--resources`, else every entry of the config.
fn wanted(config: &EncryptionConfig, options: &VerifyOptions) -> Vec<String> {
    let names: Vec<String> = if options.resources.is_empty() {
        config
            .resources
            .iter()
            .flat_map(|e| e.resources.iter().cloned())
            .collect()
    } else {
        options.resources.clone()
    };
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The keyring of a resource found by a wildcard, or `None` when the config does not cover
/// it (a wildcard given with `--resources` may reach further than the config).
fn expanded_keyring(
    config: &EncryptionConfig,
    stored: &StoredResource,
) -> Result<Option<Keyring>, KeyringError> {
    let name = stored.name();
    let entry = match stored.group {
        Some(_) => entry_for(config, &name),
        // Of a group eargate does not know: only `*.*` is sure to cover it.
        None => config
            .resources
            .iter()
            .find(|e| e.resources.iter().any(|r| r.trim() == "*.*")),
    };
    entry
        .map(|entry| Keyring::from_entry(&name, entry))
        .transpose()
}

/// Resolves the resources to check into key ranges and keyrings (pure; no etcd).
///
/// `stored` is what the etcd keyspace holds (see [`stored_resources`]), used to expand the
/// wildcards. Without it the wildcards are only checked (this is how the command line checks
/// its input before connecting): every named resource maps to a key range, every wildcard is
/// one kube-apiserver accepts, and the key material of the entries involved decodes.
pub fn plan(
    config: &EncryptionConfig,
    options: &VerifyOptions,
    stored: Option<&[StoredResource]>,
) -> Result<Planned, VerifyError> {
    let names = wanted(config, options);
    if names.is_empty() {
        return Err(VerifyError::NoResources);
    }
    let prefix = normalise_prefix(&options.prefix)?;
    let mut planned = Planned::default();
    let push = |plans: &mut Vec<Plan>, keys: ResourceKeys, keyring: Keyring| {
        if !plans.iter().any(|p| p.keys.key_prefix == keys.key_prefix) {
            plans.push(Plan { keys, keyring });
        }
    };
    for name in &names {
        if let Some(wildcard) = parse_wildcard(name)? {
            // The entry's key material must decode whatever the keyspace holds.
            for entry in config
                .resources
                .iter()
                .filter(|e| e.resources.contains(name))
            {
                Keyring::from_entry(name, entry)?;
            }
            if !planned.wildcards.contains(&wildcard) {
                planned.wildcards.push(wildcard);
            }
            continue;
        }
        let keys = resource_keys(&prefix, name)?;
        // `secrets.` and `secrets` are the same resource.
        let canonical = match split_resource(name) {
            (r, "") => r.to_owned(),
            _ => name.clone(),
        };
        let keyring = Keyring::for_resource(config, &canonical)?;
        push(
            &mut planned.plans,
            ResourceKeys {
                resource: canonical,
                ..keys
            },
            keyring,
        );
    }
    let Some(stored) = stored else {
        return Ok(planned);
    };
    for wildcard in planned.wildcards.clone() {
        let mut found = Vec::new();
        let mut uncovered = Vec::new();
        for s in stored.iter().filter(|s| s.matches(&wildcard)) {
            match expanded_keyring(config, s)? {
                Some(keyring) => {
                    found.push(s.name());
                    push(
                        &mut planned.plans,
                        ResourceKeys {
                            resource: s.name(),
                            key_prefix: s.key_prefix.clone(),
                        },
                        keyring,
                    );
                }
                None => uncovered.push(s.name()),
            }
        }
        planned.notes.push(if found.is_empty() {
            format!("{wildcard} matched no resource stored under {prefix}/")
        } else {
            format!(
                "{wildcard} expanded from the etcd keyspace to: {}",
                found.join(", ")
            )
        });
        if !uncovered.is_empty() {
            planned.notes.push(format!(
                "{wildcard}: not checked, the encryption config does not cover them: {}",
                uncovered.join(", ")
            ));
        }
    }
    if !planned.wildcards.contains(&Wildcard::All) {
        let unknown: Vec<&str> = stored
            .iter()
            .filter(|s| s.group.is_none())
            .map(|s| s.key_prefix.as_str())
            .collect();
        if !planned.wildcards.is_empty() && !unknown.is_empty() {
            planned.notes.push(format!(
                "not checked: {} (resources of an API group this eargate does not know, so no wildcard but *.* is sure to cover them)",
                unknown.join(", ")
            ));
        }
    }
    Ok(planned)
}

/// The resources stored under the prefix, read from the keyspace's directories at
/// `revision` (0: the current one); returns them, in key order, and the revision read at.
pub async fn stored_resources(
    client: &Client,
    prefix: &str,
    revision: i64,
) -> Result<(Vec<StoredResource>, i64), VerifyError> {
    let prefix = normalise_prefix(prefix)?;
    let dir = |path: &str| format!("{prefix}/{path}").into_bytes();
    // Resource and group names are ASCII; a directory named otherwise is none of them.
    let names = |segments: Vec<Vec<u8>>| {
        segments
            .into_iter()
            .filter_map(|s| String::from_utf8(s).ok())
            .collect::<Vec<_>>()
    };
    let (top, revision) = etcd::child_directories(client, &dir(""), revision).await?;
    let mut out = Vec::new();
    for segment in names(top) {
        match top_level(&prefix, &segment) {
            TopLevel::Resource(r) => out.push(r),
            TopLevel::NotAResource => {}
            TopLevel::Services => {
                let (subs, _) =
                    etcd::child_directories(client, &dir("services/"), revision).await?;
                out.extend(
                    names(subs)
                        .iter()
                        .filter_map(|sub| under_services(&prefix, sub)),
                );
            }
            TopLevel::Group(group) => {
                let (subs, _) =
                    etcd::child_directories(client, &dir(&format!("{group}/")), revision).await?;
                out.extend(
                    names(subs)
                        .iter()
                        .map(|sub| under_group(&prefix, &group, sub)),
                );
            }
        }
    }
    Ok((out, revision))
}

/// Runs the check against etcd.
pub async fn verify(
    client: &Client,
    config: &EncryptionConfig,
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let mut revision = 0;
    let Planned { plans, notes, .. } = {
        let checked = plan(config, options, None)?;
        if checked.wildcards.is_empty() {
            checked
        } else {
            let (stored, read_at) = stored_resources(client, &options.prefix, 0).await?;
            // Every resource is then read at the revision the keyspace was read at.
            revision = read_at;
            plan(config, options, Some(&stored))?
        }
    };
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
        notes,
        problems: Vec::new(),
    };
    let mut scratch = Vec::new();
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
    // Any key will do to probe which revisions are readable.
    let probe: Vec<u8> = plans
        .first()
        .map(|p| p.keys.key_prefix.clone().into_bytes())
        .unwrap_or_else(|| b"/".to_vec());
    let oldest = etcd::oldest_readable_revision(client, &probe, current).await?;
    let mut scratch = Vec::new();
    let mut pending: HashMap<Vec<u8>, Pending> = HashMap::new();
    let mut scanned = 0u64;
    let mut older_counts = Counts::default();
    let mut older_keys = KeyCounts::default();
    let mut offenders = OffenderList::with_limit(offender_limit);

    let mut settle = |pending: &mut HashMap<Vec<u8>, Pending>, key: &[u8], deleted: bool| {
        if let Some(p) = pending.remove(key) {
            older_counts.add(p.outcome.kind());
            if let Some(name) = p.outcome.key_name() {
                older_keys.add(name);
            }
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
        older_keys,
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
