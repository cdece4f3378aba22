//! The no-data-loss proof, as a model-based property test.
//!
//! Random sequences of user edits that the POLICY accepts (the webhook's own validation,
//! `eargate_policy::validate`, judged against the stored object), interleaved with
//! planner steps (sometimes crashing after a prefix of their actions: controller restarts and
//! API errors), partial API server rollouts (some instances on an older config), pods that
//! restart or reload and so pick up the current Secret, client writes through any instance,
//! Job progress (objects rewritten one by one through any instance), Job failures, storage
//! scans, etcd compaction, and time passing (rollout timeouts, rescan backoff). The simulated
//! store remembers the key that sealed each object and each older revision.
//!
//! Invariants at every step (see `eargate_testkit::sim::World::check_invariants`): every
//! stored object can be read by every serving API server instance; no object, current or an
//! older revision etcd still holds, is sealed with a key a serving API server does not hold;
//! a key leaves the rendered config only after a storage scan of that config found nothing
//! sealed with it; once `Active`, every object of an encrypted
//! resource is sealed with `activeKey`; after full decryption none is sealed; every rendered
//! config passes kube-apiserver's validation and its secretbox keys are the spec's 32 bytes.
//! At the end, left alone (retrying a `Failed` phase), the system reaches the spec's state.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::time::Duration;

use eargate_policy::model::{EncryptionConfiguration, EncryptionPhase};
use eargate_policy::ClusterFacts;
use eargate_policy::{validate, Operation, PolicyConfig, Request};
use eargate_reconciler::ReloadMode;
use eargate_testkit::sim::*;
use proptest::prelude::*;

const POOL: usize = 5;

#[derive(Clone, Debug)]
enum Edit {
    Enable { resources: u8, key: u8 },
    AddKey(u8),
    Promote(u8),
    RemoveKey(u8),
    Disable,
    RemoveConfig,
    Retry,
}

#[derive(Clone, Debug)]
enum Op {
    Edit(Edit),
    Reconcile {
        crash_after: Option<u8>,
    },
    RollOne,
    RestartPod(u8),
    ClientWrite {
        resource: u8,
        pod: u8,
    },
    JobStep {
        pod: u8,
    },
    JobFail,
    Tick {
        long: bool,
    },
    /// A replica's `/metrics` becomes unreachable, or reachable again.
    ToggleUnreachable(u8),
    /// Hot-reload mode: a replica reloads the Secret's current file (kubelet's volume sync).
    ReloadOne,
    /// The running storage scan reads etcd and hands back its per-key counts.
    ScanStep,
    /// etcd compacts its history: older revisions are gone.
    Compact,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0u8..3, 0u8..POOL as u8).prop_map(|(resources, key)| Edit::Enable { resources, key }),
        (0u8..POOL as u8).prop_map(Edit::AddKey),
        any::<u8>().prop_map(Edit::Promote),
        any::<u8>().prop_map(Edit::RemoveKey),
        Just(Edit::Disable),
        Just(Edit::RemoveConfig),
        Just(Edit::Retry),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => edit().prop_map(Op::Edit),
        6 => proptest::option::weighted(0.2, 0u8..6).prop_map(|crash_after| Op::Reconcile { crash_after }),
        4 => Just(Op::RollOne),
        1 => any::<u8>().prop_map(Op::RestartPod),
        2 => (0u8..2, any::<u8>()).prop_map(|(resource, pod)| Op::ClientWrite { resource, pod }),
        4 => any::<u8>().prop_map(|pod| Op::JobStep { pod }),
        1 => Just(Op::JobFail),
        1 => any::<bool>().prop_map(|long| Op::Tick { long }),
        1 => any::<u8>().prop_map(Op::ToggleUnreachable),
        3 => Just(Op::ReloadOne),
        2 => Just(Op::ScanStep),
        1 => Just(Op::Compact),
    ]
}

fn resources_for(sel: u8) -> Vec<&'static str> {
    match sel {
        0 => vec!["secrets"],
        1 => vec!["configmaps"],
        _ => vec!["secrets", "configmaps"],
    }
}

/// The spec the edit would produce, or `None` when it does not apply.
fn apply(
    cur: Option<&EncryptionConfiguration>,
    e: &Edit,
) -> Option<Option<EncryptionConfiguration>> {
    let keys: Vec<usize> = cur
        .and_then(|c| c.secretbox.as_ref())
        .map(|s| {
            s.keys
                .iter()
                .map(|k| k.name["key-".len()..].parse().unwrap())
                .collect()
        })
        .unwrap_or_default();
    let resources: Vec<String> = cur.map(|c| c.resources.clone()).unwrap_or_default();
    Some(match e {
        Edit::Enable { resources: r, key } => {
            let keys = if keys.is_empty() {
                vec![*key as usize]
            } else {
                keys
            };
            Some(enc(true, &resources_for(*r), &keys))
        }
        Edit::AddKey(k) => {
            let k = *k as usize;
            if keys.contains(&k) || cur.is_none() {
                return None;
            }
            let mut keys = keys;
            keys.push(k);
            Some(enc(cur?.enabled, &res(&resources), &keys))
        }
        Edit::Promote(i) => {
            if keys.len() < 2 {
                return None;
            }
            let mut keys = keys;
            let k = keys.remove(*i as usize % keys.len());
            keys.insert(0, k);
            Some(enc(cur?.enabled, &res(&resources), &keys))
        }
        Edit::RemoveKey(i) => {
            if keys.is_empty() {
                return None;
            }
            let mut keys = keys;
            keys.remove(*i as usize % keys.len());
            Some(enc(cur?.enabled, &res(&resources), &keys))
        }
        Edit::Disable => Some(enc(false, &res(&resources), &keys)),
        Edit::RemoveConfig => None,
        Edit::Retry => return None,
    })
}

fn res(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Applies the edit if the admission policy accepts it; returns whether it was accepted.
fn user_edit(w: &mut World, e: &Edit, retry_counter: &mut u32) -> bool {
    if let Edit::Retry = e {
        *retry_counter += 1;
        w.set_retry(&retry_counter.to_string());
        return true;
    }
    let Some(new_spec) = apply(w.cluster.spec.encryption_configuration.as_ref(), e) else {
        return false;
    };
    let mut new = w.cluster.clone();
    new.spec.encryption_configuration = new_spec.clone();
    let old_facts = ClusterFacts::from_cluster(&w.cluster);
    let mut new_facts = ClusterFacts::from_cluster(&new);
    new_facts.apply_defaults();
    let config = PolicyConfig::default();
    let decision = validate(&Request {
        operation: Operation::Update,
        subresource: None,
        user: "alice",
        old: Some(&old_facts),
        new: Some(&new_facts),
        config: &config,
    });
    if decision.allowed() {
        w.set_spec(new_facts.config.clone());
        true
    } else {
        false
    }
}

fn run_ops(ops: &[Op]) -> Result<(), TestCaseError> {
    run_ops_in(ReloadMode::Restart, ops)
}

/// Runs `ops` against the planner in `mode`. In restart mode replicas never reload a file
/// ([`Op::ReloadOne`] does nothing); in hot-reload mode they do, as kube-apiserver with
/// `--encryption-provider-config-automatic-reload` does.
fn run_ops_in(mode: ReloadMode, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = World::new(3);
    w.settings.reload = mode;
    let mut retry_counter = 0u32;
    let mut accepted = 0;
    for op in ops {
        match op {
            Op::Edit(e) => accepted += user_edit(&mut w, e, &mut retry_counter) as usize,
            Op::Reconcile { crash_after } => {
                w.reconcile_with(crash_after.map(usize::from));
            }
            Op::RollOne => {
                w.roll_one();
            }
            Op::RestartPod(i) => w.restart_pod(*i as usize),
            Op::ClientWrite { resource, pod } => {
                w.user_write(RESOURCES[*resource as usize % 2], *pod as usize)
            }
            Op::JobStep { pod } => w.job_step(*pod as usize),
            Op::JobFail => w.fail_job(),
            Op::Tick { long } => w.tick(if *long {
                w.settings.rollout_timeout + Duration::from_secs(1)
            } else {
                Duration::from_secs(30)
            }),
            Op::ToggleUnreachable(i) => {
                let i = *i as usize % w.pods.len();
                w.pods[i].unreachable = !w.pods[i].unreachable;
            }
            Op::ReloadOne => {
                if mode == ReloadMode::HotReload {
                    w.reload_one();
                }
            }
            Op::ScanStep => w.scan_step(),
            Op::Compact => w.compact(),
        }
        w.check_invariants();
    }
    // Every replica answers again (an unreachable one blocks progress by design).
    for p in &mut w.pods {
        p.unreachable = false;
    }
    // Left alone, the system reaches what the spec asks for (retrying Failed).
    for _ in 0..6 {
        if w.settle() == Some(EncryptionPhase::Failed) {
            retry_counter += 1;
            w.set_retry(&format!("final-{retry_counter}"));
        } else {
            break;
        }
    }
    let spec = w.cluster.spec.encryption_configuration.clone();
    match spec.filter(|c| c.enabled) {
        Some(c) => {
            prop_assert_eq!(
                w.phase(),
                Some(EncryptionPhase::Active),
                "edits accepted: {}",
                accepted
            );
            let st = w.status().unwrap();
            let primary = &c.secretbox.as_ref().unwrap().keys[0].name;
            prop_assert_eq!(&st.active_key, &format!("secretbox/{primary}"));
            // Every spec resource is encrypted. A resource an interrupted attempt may have
            // sealed stays in the config (and in encryptedResources) until a disable decrypts it.
            for r in &c.resources {
                prop_assert!(
                    st.encrypted_resources.contains(r),
                    "{} not encrypted: {:?}",
                    r,
                    st.encrypted_resources
                );
            }
            for o in w
                .store
                .iter()
                .filter(|o| st.encrypted_resources.contains(&o.resource))
            {
                prop_assert_eq!(o.seal.as_ref().map(|s| &s.0), Some(primary));
            }
            // Once etcd has compacted the older revisions, every key the spec no longer names
            // leaves the config: a rescan (after its backoff) finds nothing sealed with it.
            w.compact();
            w.tick(w.settings.scan.backoff_max);
            prop_assert_eq!(w.settle(), Some(EncryptionPhase::Active));
            let spec_keys: Vec<String> = c
                .secretbox
                .as_ref()
                .unwrap()
                .keys
                .iter()
                .map(|k| k.name.clone())
                .collect();
            let mut rendered = w.rendered_key_names();
            rendered.sort();
            let mut expected = spec_keys;
            expected.sort();
            prop_assert_eq!(rendered, expected, "removed keys left after compaction");
        }
        None => {
            prop_assert!(w.status().is_none(), "status {:?}", w.status());
            prop_assert!(w.store.iter().all(|o| o.seal.is_none()));
        }
    }
    Ok(())
}

/// Cases per run: 256, or `PROPTEST_CASES` when set (to run more before and after a change of
/// the planner). The explicit count would otherwise shadow proptest's own reading of it.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_data_loss_under_any_accepted_edit_sequence(ops in proptest::collection::vec(op(), 1..80)) {
        run_ops(&ops)?;
    }

    #[test]
    fn no_data_loss_with_hot_reload(ops in proptest::collection::vec(op(), 1..80)) {
        run_ops_in(ReloadMode::HotReload, &ops)?;
    }
}

/// A fixed sequence that exercises every edit kind at least once (quick regression).
#[test]
fn scripted_full_lifecycle() {
    use Edit::*;
    let ops: Vec<Op> = [
        Enable {
            resources: 0,
            key: 1,
        },
        AddKey(2),
        Promote(1),
        RemoveKey(1),
        Disable,
        Enable {
            resources: 2,
            key: 3,
        },
        AddKey(4),
        Promote(1),
        RemoveConfig,
    ]
    .into_iter()
    .flat_map(|e| {
        let mut v = vec![Op::Edit(e)];
        for _ in 0..12 {
            v.extend([
                Op::Reconcile { crash_after: None },
                Op::RollOne,
                Op::JobStep { pod: 1 },
                Op::ClientWrite {
                    resource: 0,
                    pod: 2,
                },
            ]);
        }
        v
    })
    .collect();
    run_ops(&ops).unwrap();
}
