//! Table tests of the planner, one per phase and path of the phase machine, driven through the
//! simulated control plane (`eargate_testkit::sim`). Every step also checks the no-data-loss invariants.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::time::Duration;

use eargate_policy::model::EncryptionPhase::{self, *};
use eargate_policy::names;
use eargate_policy::storage_scan::{KeySummary, KeyUse};
use eargate_reconciler::{
    plan, Action, KeySecret, ReloadMode, ScanState, CONDITION_CONFIG_LOADED,
    CONDITION_ENCRYPTION_RECONCILED, CONDITION_KEYS_RETAINED,
};
use eargate_testkit::secrets::{assert_no_key_material, b64};
use eargate_testkit::sim::*;

fn active_key(w: &World) -> String {
    w.status().map(|s| s.active_key.clone()).unwrap_or_default()
}

fn rendered_names(w: &World) -> Vec<String> {
    let cfg = w.rendered_config().unwrap();
    cfg.resources[0]
        .providers
        .iter()
        .map(|p| match &p.secretbox {
            Some(s) => s
                .keys
                .iter()
                .map(|k| k.name.clone())
                .collect::<Vec<_>>()
                .join("+"),
            None => p.kind_name().to_owned(),
        })
        .collect()
}

/// Reconciles, rolls every pod, runs Jobs, and records the phase after each reconcile.
fn run(w: &mut World) -> Vec<Option<EncryptionPhase>> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let before = w.fingerprint();
        w.reconcile();
        w.check_invariants();
        if seen.last() != Some(&w.phase()) {
            seen.push(w.phase());
        }
        w.roll_all();
        w.check_invariants();
        w.finish_jobs();
        w.check_invariants();
        if before == w.fingerprint() {
            break;
        }
    }
    seen
}

/// The Event and the Reconciled condition of a step into `reason`'s phase.
fn assert_transition(w: &World, reason: &str, note_start: &str, condition_start: &str) {
    let (_, note) = w
        .events
        .iter()
        .rev()
        .find(|(r, _)| r == reason)
        .unwrap_or_else(|| panic!("no {reason} Event in {:?}", w.events));
    assert!(note.starts_with(note_start), "{note:?}");
    let cond = w.condition(CONDITION_ENCRYPTION_RECONCILED).unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some(reason))
    );
    let message = cond.message.as_deref().unwrap_or_default();
    assert!(message.starts_with(condition_start), "{message:?}");
}

fn enabled_world() -> World {
    let mut w = World::new(3);
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    run(&mut w);
    assert_eq!(w.phase(), Some(Active));
    w
}

#[test]
fn enable_stages_the_key_as_reader_first_then_encrypts() {
    let mut w = World::new(3);
    assert!(
        w.reconcile().is_empty(),
        "nothing configured: nothing to do"
    );
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    w.reconcile();
    assert_eq!(w.phase(), Some(Pending));
    assert_transition(
        &w,
        "Pending",
        "(none) -> Pending: new encryption configuration ",
        "rolling out config ",
    );
    assert_eq!(
        w.condition(names::CONDITION_ENCRYPTION_INITIALIZED)
            .unwrap()
            .status,
        "True"
    );
    // First the key only decrypts: old API servers (no config) could not read it.
    assert_eq!(rendered_names(&w), ["identity", "key-1"]);
    // Half-way rollout: no promotion.
    w.roll_one();
    w.reconcile();
    assert_eq!(rendered_names(&w), ["identity", "key-1"]);
    w.roll_all();
    w.reconcile();
    assert_eq!(
        rendered_names(&w),
        ["key-1", "identity"],
        "promoted after the rollout made it readable everywhere"
    );
    assert_eq!(w.phase(), Some(Pending));
    w.roll_all();
    w.reconcile();
    assert_eq!(w.phase(), Some(EncryptionNeeded));
    assert_transition(
        &w,
        "EncryptionNeeded",
        "Pending -> EncryptionNeeded: stored data moves from identity to secretbox/key-1",
        "re-encrypting for config ",
    );
    assert_eq!(w.jobs.len(), 1);
    w.reconcile();
    assert_eq!(w.jobs.len(), 1, "one Job per config hash");
    w.finish_jobs();
    w.reconcile();
    assert_eq!(w.phase(), Some(Active));
    assert_eq!(active_key(&w), "secretbox/key-1");
    assert_eq!(w.status().unwrap().encrypted_resources, ["secrets"]);
    w.check_invariants();
    assert!(w.reconcile().is_empty(), "Active and stable: no actions");
}

#[test]
fn add_secondary_rolls_without_reencryption() {
    let mut w = enabled_world();
    let jobs = w.jobs_created;
    w.set_spec(Some(enc(true, &["secrets"], &[1, 2])));
    let phases = run(&mut w);
    assert_eq!(phases, [Some(Pending), Some(Active)]);
    assert_eq!(w.jobs_created, jobs, "no re-encryption for a secondary key");
    assert_eq!(rendered_names(&w), ["key-1+key-2", "identity"]);
    assert_eq!(active_key(&w), "secretbox/key-1");
}

#[test]
fn promote_reencrypts_then_remove_old_key() {
    let mut w = enabled_world();
    w.set_spec(Some(enc(true, &["secrets"], &[1, 2])));
    run(&mut w);
    w.set_spec(Some(enc(true, &["secrets"], &[2, 1])));
    let phases = run(&mut w);
    assert_eq!(
        phases,
        [Some(Pending), Some(EncryptionNeeded), Some(Active)]
    );
    assert_eq!(active_key(&w), "secretbox/key-2");
    assert!(w
        .store
        .iter()
        .filter(|o| o.resource == "secrets")
        .all(|o| o.seal.as_ref().unwrap().0 == "key-2"));
    let jobs = w.jobs_created;
    w.set_spec(Some(enc(true, &["secrets"], &[2])));
    // The rewrite left older revisions sealed with key-1 in etcd: the key stays (Active)
    // until etcd compacts them and a rescan finds nothing.
    assert_eq!(run(&mut w), [Some(Active)]);
    assert_eq!(rendered_names(&w), ["key-2+key-1", "identity"]);
    w.compact();
    w.tick(w.settings.scan.backoff);
    let phases = run(&mut w);
    assert_eq!(phases, [Some(Active), Some(Pending), Some(Active)]);
    assert_eq!(w.jobs_created, jobs, "dropping a key rewrites nothing");
    assert_eq!(rendered_names(&w), ["key-2", "identity"]);
}

#[test]
fn removed_key_is_retained_while_a_rotation_is_unfinished() {
    // A promotion whose Job failed: key-1 may still seal data, so it stays rendered even if
    // the spec (bypassing the policy) drops it.
    let mut w = enabled_world();
    w.set_spec(Some(enc(true, &["secrets"], &[1, 2])));
    run(&mut w);
    w.set_spec(Some(enc(true, &["secrets"], &[2, 1])));
    w.reconcile();
    w.roll_all();
    w.reconcile();
    assert_eq!(w.phase(), Some(EncryptionNeeded));
    w.job_step(0);
    w.fail_job();
    w.reconcile();
    assert_eq!(w.phase(), Some(Failed));
    w.set_spec(Some(enc(true, &["secrets"], &[2])));
    run(&mut w);
    assert!(
        rendered_names(&w).iter().any(|p| p.contains("key-1")),
        "{:?}",
        rendered_names(&w)
    );
}

#[test]
fn resource_change_via_disable_and_reenable() {
    let mut w = enabled_world();
    w.set_spec(Some(enc(false, &["secrets"], &[1])));
    let phases = run(&mut w);
    assert_eq!(phases, [Some(Pending), Some(EncryptionNeeded), None]);
    assert!(w.status().is_none());
    assert_eq!(
        w.condition(names::CONDITION_ENCRYPTION_INITIALIZED)
            .unwrap()
            .status,
        "False"
    );
    assert!(w.store.iter().all(|o| o.seal.is_none()));
    assert_eq!(
        rendered_names(&w),
        ["identity", "key-1"],
        "disabled: identity writes, keys still read"
    );
    w.set_spec(Some(enc(true, &["secrets", "configmaps"], &[1])));
    run(&mut w);
    assert_eq!(w.phase(), Some(Active));
    assert_eq!(
        w.status().unwrap().encrypted_resources,
        ["secrets", "configmaps"]
    );
    assert!(w
        .store
        .iter()
        .all(|o| o.seal.as_ref().unwrap().0 == "key-1"));
}

#[test]
fn remove_configuration_decrypts_with_retained_key_then_clears() {
    let mut w = enabled_world();
    w.set_spec(None);
    w.reconcile();
    assert_eq!(w.phase(), Some(Pending));
    assert_eq!(
        rendered_names(&w),
        ["identity", "key-1"],
        "material kept until decryption finished"
    );
    run(&mut w);
    assert!(w.status().is_none());
    assert_eq!(
        w.condition(names::CONDITION_ENCRYPTION_INITIALIZED)
            .unwrap()
            .status,
        "False"
    );
    assert!(w.store.iter().all(|o| o.seal.is_none()));
    assert!(w.reconcile().is_empty());
}

#[test]
fn job_failure_then_recovery_by_retry_annotation_and_by_spec_change() {
    let mut w = enabled_world();
    w.set_spec(Some(enc(true, &["secrets"], &[1, 2])));
    run(&mut w);
    w.set_spec(Some(enc(true, &["secrets"], &[2, 1])));
    w.reconcile();
    w.roll_all();
    w.reconcile();
    w.fail_job();
    w.reconcile();
    assert_eq!(w.phase(), Some(Failed));
    let cond = w.condition(CONDITION_ENCRYPTION_RECONCILED).unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("JobFailed"))
    );
    assert!(w.events.iter().any(|(r, _)| r == "Failed"));
    assert!(
        w.reconcile().is_empty(),
        "Failed holds without a new retry value or spec change"
    );
    assert!(w.rendered_config().is_some());
    assert_eq!(
        rendered_names(&w),
        ["key-2+key-1", "identity"],
        "keys of the failed attempt stay rendered"
    );
    w.set_retry("1");
    let jobs = w.jobs_created;
    let phases = run(&mut w);
    assert_eq!(phases.first(), Some(&Some(Pending)));
    assert_eq!(w.phase(), Some(Active));
    assert_eq!(w.jobs_created, jobs + 1, "a new attempt gets a new Job");
    assert_eq!(active_key(&w), "secretbox/key-2");

    // Recovery by a spec change: fail a disable, then re-enable.
    w.set_spec(Some(enc(false, &["secrets"], &[2])));
    w.reconcile();
    w.roll_all();
    w.reconcile();
    w.fail_job();
    w.reconcile();
    assert_eq!(w.phase(), Some(Failed));
    w.set_spec(Some(enc(true, &["secrets"], &[2])));
    run(&mut w);
    assert_eq!(w.phase(), Some(Active));
    assert_eq!(active_key(&w), "secretbox/key-2");
}

#[test]
fn rollout_timeout_fails_and_retry_restarts_the_clock() {
    let mut w = enabled_world();
    w.set_spec(Some(enc(true, &["secrets"], &[1, 2])));
    w.reconcile();
    w.roll_one();
    w.tick(Duration::from_secs(60));
    assert!(matches!(
        w.reconcile().last(),
        Some(Action::RequeueAfter(_))
    ));
    w.tick(w.settings.rollout_timeout);
    w.reconcile();
    assert_eq!(w.phase(), Some(Failed));
    assert_eq!(
        w.condition(CONDITION_ENCRYPTION_RECONCILED)
            .unwrap()
            .reason
            .as_deref(),
        Some("RolloutTimeout")
    );
    w.check_invariants();
    w.set_retry("again");
    w.reconcile();
    assert_eq!(w.phase(), Some(Pending));
    w.reconcile();
    assert_eq!(
        w.phase(),
        Some(Pending),
        "the clock restarted with the retry"
    );
    run(&mut w);
    assert_eq!(w.phase(), Some(Active));
}

#[test]
fn controller_restart_in_every_phase_converges_without_duplicate_jobs() {
    // For every reconcile of an enable + rotate scenario, crash after each prefix of its
    // actions; a fresh planner must pick up from the observed state alone.
    for crash_at in 0..8 {
        let mut w = World::new(3);
        w.set_spec(Some(enc(true, &["secrets"], &[1])));
        for step in 0..30 {
            if step == 12 {
                w.set_spec(Some(enc(true, &["secrets"], &[1, 3])));
            }
            if step == 20 && w.phase() == Some(Active) {
                w.set_spec(Some(enc(true, &["secrets"], &[3, 1])));
            }
            // Plans are deterministic: the same observation gives the same actions.
            assert_eq!(
                plan(&w.snapshot(), &w.settings),
                plan(&w.snapshot(), &w.settings)
            );
            w.reconcile_with(Some(crash_at));
            w.check_invariants();
            w.reconcile();
            w.check_invariants();
            w.roll_one();
            w.check_invariants();
            w.job_step(step);
            w.check_invariants();
        }
        w.settle();
        assert_eq!(w.phase(), Some(Active), "crash_at {crash_at}");
        assert_eq!(active_key(&w), "secretbox/key-3");
        let names: std::collections::BTreeSet<_> = w.jobs.keys().collect();
        assert_eq!(
            names.len(),
            w.jobs_created,
            "never two Jobs of the same name"
        );
        // Enabling and the promotion each need one; adding the secondary while the enable is
        // still unfinished may need one more (data of the unfinished attempt is rewritten).
        assert!((2..=3).contains(&w.jobs_created), "jobs {}", w.jobs_created);
    }
}

#[test]
fn missing_key_secret_is_reported_and_retried_never_silent() {
    let mut w = World::new(2);
    w.key_secrets.remove("key-1");
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    let actions = w.reconcile();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Backoff { reason } if reason == "KeySecretMissing")));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event { reason, .. } if reason == "KeySecretMissing")));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::WriteConfigSecret { .. })));
    let c = w.condition(CONDITION_ENCRYPTION_RECONCILED).unwrap();
    assert_eq!(c.status, "False");
    assert!(c.message.as_deref().unwrap().contains("key-1"));
    // Second time: same condition, no redundant status write, still an Event and a Backoff.
    let again = w.reconcile();
    assert!(!again
        .iter()
        .any(|a| matches!(a, Action::PatchStatus { .. })));
    assert!(again.iter().any(|a| matches!(a, Action::Backoff { .. })));
    // Invalid content.
    w.key_secrets.insert(
        "key-1".into(),
        KeySecret::Data([("key".to_owned(), b"c2hvcnQ=".to_vec())].into()),
    );
    let actions = w.reconcile();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Backoff { reason } if reason == "KeyInvalid")));
    // Fixed: proceeds.
    w.key_secrets.insert(
        "key-1".into(),
        KeySecret::Data([("key".to_owned(), B64_KEY1.as_bytes().to_vec())].into()),
    );
    run(&mut w);
    assert_eq!(w.phase(), Some(Active));
}

static B64_KEY1: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| b64(material(1)));

#[test]
fn missing_deployment_is_reported() {
    let mut w = World::new(1);
    w.deployment_missing = true;
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    let actions = w.reconcile();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Backoff { reason } if reason == "ApiServerMissing")));
}

#[test]
fn drifted_key_secret_keeps_rendered_material_and_reports() {
    let mut w = enabled_world();
    let before = w.config_secret.clone();
    w.key_secrets.insert(
        "key-1".into(),
        KeySecret::Data([("key".to_owned(), b64(material(5)).into_bytes())].into()),
    );
    let actions = w.reconcile();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::ReportDrift { key_name } if key_name == "key-1")));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event { reason, .. } if reason == "KeyDrift")));
    assert_eq!(
        w.config_secret, before,
        "rendered material never changes under the same name"
    );
    assert_eq!(
        w.condition(CONDITION_ENCRYPTION_RECONCILED)
            .unwrap()
            .reason
            .as_deref(),
        Some("KeyDrift")
    );
    w.check_invariants();
}

#[test]
fn unreadable_rendered_config_is_not_overwritten() {
    let mut w = enabled_world();
    w.config_secret.as_mut().unwrap().data = Some(b"apiVersion: v1\nkind: Nope\n".to_vec());
    let actions = w.reconcile();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Backoff { reason } if reason == "ConfigUnreadable")));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::WriteConfigSecret { .. })));
}

#[test]
fn no_key_material_in_events_conditions_status_or_jobs() {
    let mut w = enabled_world();
    w.set_spec(Some(enc(true, &["secrets"], &[1, 2])));
    run(&mut w);
    w.set_spec(Some(enc(true, &["secrets"], &[2, 1])));
    w.reconcile();
    w.roll_all();
    w.reconcile();
    w.fail_job();
    w.reconcile();
    w.key_secrets.remove("key-3");
    w.set_spec(Some(enc(true, &["secrets"], &[2, 1, 3])));
    w.reconcile();
    // And a key removal: the retained-key condition, Events, metrics and the scan Job.
    let (mut r, _) = key_1_removed();
    r.store[0].seal = Some(("key-1".into(), material(1)));
    r.finish_jobs();
    r.reconcile();
    r.scans.values_mut().next().unwrap().scan.state = ScanState::Failed {
        reason: "BackoffLimitExceeded".into(),
        at: r.now,
    };
    r.reconcile();
    assert!(r.texts().contains("EncryptionKeysRetained"));
    // Every pool key, as base64 and as hex (how a byte slice would show in a message).
    let keys: Vec<String> = (0..6)
        .flat_map(|i| [b64(material(i)), hex(&material(i))])
        .collect();
    assert_no_key_material(
        &keys,
        [
            ("an Event, condition, status or Job", w.texts()),
            ("the snapshot's Debug form", format!("{:?}", w.snapshot())),
            ("a key removal's Events, conditions and scan Job", r.texts()),
            ("its snapshot's Debug form", format!("{:?}", r.snapshot())),
        ],
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// What each replica reports it loaded gates every step.

fn loaded_condition(w: &World) -> (String, String, String) {
    let c = w.condition(CONDITION_CONFIG_LOADED).expect("the condition");
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

#[test]
fn a_replica_that_loaded_another_config_blocks_promotion_until_it_runs_the_secret() {
    let mut w = World::new(3);
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    w.reconcile();
    w.roll_all();
    // Replica 1 runs the right template with another file (a stale mount).
    w.pods[1].config = Some(b"kind: EncryptionConfiguration\n# another file\n".to_vec());
    let actions = w.reconcile();
    assert_eq!(rendered_names(&w), ["identity", "key-1"], "not promoted");
    let (status, reason, message) = loaded_condition(&w);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ReplicaNotProven")
    );
    assert!(
        message.starts_with("2 of 3 API server replicas report config ")
            && message.contains("; apiserver-1 has loaded another config (sha256:"),
        "{message}"
    );
    let (_, note) = w.events.last().unwrap();
    assert_eq!(w.events.last().unwrap().0, "ReplicaNotProven");
    assert_eq!(note, &message);
    assert!(
        matches!(actions.last(), Some(Action::RequeueAfter(_))),
        "waits and looks again: {actions:?}"
    );
    // Still held after the rollout timeout: a wrong replica is not a slow rollout.
    w.tick(Duration::from_secs(3600));
    w.reconcile();
    assert_eq!(rendered_names(&w), ["identity", "key-1"]);
    assert_eq!(w.phase(), Some(Pending));

    // The replica restarts with the Secret's file: promoted, then Active.
    w.restart_pod(1);
    w.reconcile();
    assert_eq!(rendered_names(&w), ["key-1", "identity"]);
    assert_eq!(w.settle(), Some(Active));
    let (status, reason, message) = loaded_condition(&w);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Proven"));
    assert!(
        message.starts_with("3 of 3 API server replicas report config ")
            && message.ends_with("loaded: apiserver-0, apiserver-1, apiserver-2"),
        "{message}"
    );
}

#[test]
fn an_unreachable_replica_blocks_the_job_and_the_finish() {
    let mut w = World::new(2);
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    for _ in 0..2 {
        w.reconcile();
        w.roll_all();
    }
    assert_eq!(rendered_names(&w), ["key-1", "identity"]);
    w.pods[0].unreachable = true;
    w.reconcile();
    assert!(w.jobs.is_empty(), "no Job while a replica cannot prove it");
    assert_eq!(w.phase(), Some(Pending));
    let (_, reason, message) = loaded_condition(&w);
    assert_eq!(reason, "ReplicaNotProven");
    assert!(
        message.contains("apiserver-0 cannot be reached (connection refused)"),
        "{message}"
    );
    w.pods[0].unreachable = false;
    w.reconcile();
    assert_eq!(w.jobs.len(), 1);
    w.finish_jobs();
    w.pods[1].unreachable = true;
    w.reconcile();
    assert_eq!(
        w.phase(),
        Some(EncryptionNeeded),
        "not called done unproven"
    );
    w.pods[1].unreachable = false;
    assert_eq!(w.settle(), Some(Active));
}

#[test]
fn versions_without_a_checked_hash_fall_back_to_readiness_and_say_so() {
    let mut w = World::new(2);
    w.minor = 33;
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    assert_eq!(w.settle(), Some(Active));
    let (status, reason, message) = loaded_condition(&w);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "ProofUnavailable")
    );
    assert!(
        message.contains(
            "kube-apiserver 1.33, which exports no loaded-config hash (1.34 and later do)"
        ) && message.ends_with("pod readiness gates instead"),
        "{message}"
    );
}

#[test]
fn hot_reload_writes_only_the_secret_and_waits_for_every_replica_to_prove_it() {
    let mut w = World::new(2);
    w.settings.reload = ReloadMode::HotReload;
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    // No file yet: the first config can only arrive by a restart.
    w.reconcile();
    let first_template = w.template.clone();
    assert!(
        first_template.is_some(),
        "the first config rolls the Deployment"
    );
    w.roll_all();
    let actions = w.reconcile();
    assert_eq!(rendered_names(&w), ["key-1", "identity"], "promoted");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::MarkReloadStarted { .. }))
            && !actions
                .iter()
                .any(|a| matches!(a, Action::RollApiServer { .. })),
        "a reload, not a restart: {actions:?}"
    );
    assert_eq!(w.template, first_template, "the pod template is untouched");
    // Until every replica reloaded the file, nothing moves.
    w.reconcile();
    assert_eq!(w.phase(), Some(Pending));
    assert!(w.jobs.is_empty());
    assert_eq!(loaded_condition(&w).1, "Loading");
    assert!(w.reload_one());
    w.reconcile();
    assert!(w.jobs.is_empty(), "one replica still runs the old file");
    assert!(w.reload_one());
    w.reconcile();
    assert_eq!(w.phase(), Some(EncryptionNeeded));
    w.finish_jobs();
    w.reconcile();
    assert_eq!(w.phase(), Some(Active));
    assert_eq!(loaded_condition(&w).1, "Proven");
    assert_eq!(w.template, first_template);
}

#[test]
fn hot_reload_that_never_happens_fails_after_the_timeout_naming_the_replicas() {
    let mut w = World::new(2);
    w.settings.reload = ReloadMode::HotReload;
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    w.reconcile();
    w.roll_all();
    w.reconcile();
    assert_eq!(rendered_names(&w), ["key-1", "identity"]);
    w.tick(w.settings.rollout_timeout + Duration::from_secs(1));
    w.reconcile();
    assert_eq!(w.phase(), Some(Failed));
    let c = w.condition(CONDITION_ENCRYPTION_RECONCILED).unwrap();
    assert_eq!(c.reason.as_deref(), Some("ReloadTimeout"));
    let message = c.message.as_deref().unwrap();
    assert!(
        message.contains("did not reload config")
            && message.contains("apiserver-0 has loaded another config")
            && message.contains("apiserver-1 has loaded another config"),
        "{message}"
    );
}

#[test]
fn hot_reload_cannot_work_without_a_checkable_hash() {
    let mut w = World::new(2);
    w.settings.reload = ReloadMode::HotReload;
    w.minor = 33;
    w.set_spec(Some(enc(true, &["secrets"], &[1])));
    w.reconcile();
    w.roll_all();
    w.reconcile();
    w.reconcile();
    let c = w.condition(CONDITION_ENCRYPTION_RECONCILED).unwrap();
    assert_eq!(c.reason.as_deref(), Some("ProofUnavailable"), "{c:?}");
    assert!(
        c.message.as_deref().unwrap().contains("--reload=restart"),
        "{c:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A removed key leaves only when a storage scan finds nothing sealed with it.

/// Active on key-2 after a clean rotation from key-1 (key-1 still in the spec).
fn rotated_world() -> World {
    let mut w = enabled_world();
    w.set_spec(Some(enc(true, &["secrets"], &[1, 2])));
    run(&mut w);
    w.set_spec(Some(enc(true, &["secrets"], &[2, 1])));
    run(&mut w);
    assert_eq!(active_key(&w), "secretbox/key-2");
    w
}

/// [`rotated_world`], compacted, key-1 removed from the spec: the first scan is running.
/// Returns the world and the scan Job's name.
fn key_1_removed() -> (World, String) {
    let mut w = rotated_world();
    w.compact();
    w.set_spec(Some(enc(true, &["secrets"], &[2])));
    w.reconcile(); // the Secret's memory: the spec it was rendered from
    w.reconcile();
    let name = w.scans.keys().next().expect("a scan").clone();
    (w, name)
}

fn retained_condition(w: &World) -> (String, String, String) {
    let c = w.condition(CONDITION_KEYS_RETAINED).expect("the condition");
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

fn scan_args(w: &World) -> Vec<String> {
    let job = w
        .all_actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::CreateJob { job }
                if job
                    .metadata
                    .name
                    .as_deref()
                    .unwrap()
                    .starts_with("eargate-scan-") =>
            {
                Some(job)
            }
            _ => None,
        })
        .expect("a scan Job");
    job_args(job)
}

#[test]
fn a_removed_key_stays_while_older_revisions_hold_it_and_goes_after_compaction() {
    let mut w = rotated_world();
    w.compact();
    // An older revision sealed with key-1, as a rewrite leaves behind.
    w.store[0].history.push(Some(("key-1".into(), material(1))));
    w.set_spec(Some(enc(true, &["secrets"], &[2])));
    w.reconcile(); // the Secret's memory: the spec it was rendered from
    w.reconcile();
    assert_eq!(
        w.phase(),
        Some(Active),
        "no data changes: the phase stays Active"
    );
    assert_eq!(rendered_names(&w), ["key-2+key-1", "identity"]);
    let (status, reason, message) = retained_condition(&w);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Scanning"),
        "{message}"
    );
    assert_eq!(w.scans_created, 1, "one scan Job");
    let args = scan_args(&w);
    assert_eq!(args[0], "verify");
    for flag in [
        "--history",
        "--verdict-exit-code=false",
        "--termination-message-path",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
    }
    // The scan finds the older revision: the key stays, the condition counts it, a Warning.
    w.finish_jobs();
    let actions = w.reconcile();
    let (status, reason, message) = retained_condition(&w);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "StillInUse"));
    assert!(
        message.starts_with("key-1: 0 object(s), 1 older revision(s) (storage scan eargate-scan-"),
        "{message}"
    );
    assert!(
        message.contains("kept in the config until a storage scan finds nothing sealed with them")
    );
    assert!(actions.contains(&Action::ReportRetained {
        key_name: "key-1".into(),
        objects: Some(0),
        older_revisions: Some(1),
    }));
    assert_eq!(
        w.events.iter().filter(|(r, _)| r == "KeysRetained").count(),
        1
    );
    assert!(
        matches!(actions.last(), Some(Action::RequeueAfter(d)) if *d == w.settings.scan.backoff),
        "{actions:?}"
    );
    // Nothing changes: no second Event, no new scan before the backoff.
    w.reconcile();
    assert_eq!(
        w.events.iter().filter(|(r, _)| r == "KeysRetained").count(),
        1
    );
    assert_eq!(w.scans_created, 1);
    // After the backoff a rescan; still there, so the next wait doubles.
    w.tick(w.settings.scan.backoff);
    w.reconcile();
    assert_eq!(w.scans_created, 2, "a rescan after the backoff");
    assert_eq!(w.scans.len(), 1, "the rescan's Job replaced the last one");
    assert!(w
        .all_actions
        .iter()
        .any(|a| matches!(a, Action::DeleteJob { name } if name.ends_with("-1"))));
    w.finish_jobs();
    let actions = w.reconcile();
    assert!(
        matches!(actions.last(), Some(Action::RequeueAfter(d)) if *d == 2 * w.settings.scan.backoff),
        "{actions:?}"
    );
    assert_eq!(rendered_names(&w), ["key-2+key-1", "identity"]);
    // etcd compacts; the third scan finds nothing and the key goes in one more rollout.
    w.compact();
    w.tick(2 * w.settings.scan.backoff);
    let phases = run(&mut w);
    assert_eq!(phases, [Some(Active), Some(Pending), Some(Active)]);
    assert_eq!(w.scans_created, 3);
    assert_eq!(rendered_names(&w), ["key-2", "identity"]);
    let dropped = w
        .events
        .iter()
        .find(|(r, _)| r == "KeysDropped")
        .expect("an Event");
    assert!(
        dropped.1.starts_with("storage scan eargate-scan-")
            && dropped.1.contains("found nothing sealed with [key-1]"),
        "{}",
        dropped.1
    );
    let (status, reason, _) = retained_condition(&w);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NoneRetained")
    );
    assert!(
        !w.reconcile()
            .iter()
            .any(|a| matches!(a, Action::ReportRetained { .. })),
        "no key is retained any more"
    );
}

#[test]
fn an_object_still_sealed_with_the_removed_key_keeps_it_until_rewritten() {
    let mut w = rotated_world();
    w.compact();
    // One object sealed with key-1 written straight into etcd (behind the planner's back,
    // so the "Active means sealed with activeKey" invariant is not checked here).
    w.store[0].seal = Some(("key-1".into(), material(1)));
    w.set_spec(Some(enc(true, &["secrets"], &[2])));
    for _ in 0..4 {
        w.reconcile();
        w.finish_jobs();
    }
    assert_eq!(w.phase(), Some(Active));
    let (_, reason, message) = retained_condition(&w);
    assert_eq!(reason, "StillInUse");
    assert!(
        message.starts_with("key-1: 1 object(s), 0 older revision(s)"),
        "{message}"
    );
    assert_eq!(rendered_names(&w), ["key-2+key-1", "identity"]);
    // Rewritten (through the API server: now sealed with key-2) and compacted: it goes.
    let old = w.store[0].seal.replace(("key-2".into(), material(2)));
    w.store[0].history.push(old);
    w.compact();
    w.tick(w.settings.scan.backoff);
    run(&mut w);
    assert_eq!(rendered_names(&w), ["key-2", "identity"]);
}

#[test]
fn a_scan_from_an_earlier_period_of_the_same_config_or_a_doubtful_one_never_drops_a_key() {
    let (mut w, name) = key_1_removed();
    let zero = KeyUse {
        objects: 0,
        older_revisions: Some(0),
    };
    let clean = KeySummary {
        ok: true,
        etcd_revision: 9,
        history: true,
        keys: [
            ("key-1".to_owned(), zero.clone()),
            ("key-2".to_owned(), zero),
        ]
        .into_iter()
        .collect(),
        truncated: false,
    };
    // A clean result, but from before the config was last written: it does not count.
    {
        let scan = &mut w.scans.get_mut(&name).unwrap().scan;
        scan.written = Some(w.now.checked_sub(Duration::from_secs(3600)).unwrap());
        scan.state = ScanState::Finished {
            summary: clean.clone(),
            at: w.now,
        };
    }
    w.reconcile();
    assert_eq!(rendered_names(&w), ["key-2+key-1", "identity"]);
    assert_eq!(w.scans_created, 2, "a new scan for this period");
    // Doubtful summaries: without older revisions, or truncated before the key.
    for summary in [
        KeySummary {
            history: false,
            ..clean.clone()
        },
        KeySummary {
            truncated: true,
            keys: clean
                .keys
                .iter()
                .filter(|(k, _)| *k != "key-1")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..clean.clone()
        },
    ] {
        let latest = w.latest_scan().unwrap().scan.job.clone();
        w.scans.get_mut(&latest).unwrap().scan.state = ScanState::Finished { summary, at: w.now };
        w.reconcile();
        let (_, reason, message) = retained_condition(&w);
        assert_eq!(reason, "ScanInconclusive", "{message}");
        assert!(message.starts_with("key-1: unknown ("), "{message}");
        assert_eq!(rendered_names(&w), ["key-2+key-1", "identity"]);
    }
}

#[test]
fn a_failed_scan_is_reported_and_retried_after_the_backoff() {
    let (mut w, name) = key_1_removed();
    w.scans.get_mut(&name).unwrap().scan.state = ScanState::Failed {
        reason: "BackoffLimitExceeded: error: cannot reach etcd at https://etcd-0.etcd.cluster-c1.svc.cluster.local:2379 (--etcd-endpoints)".into(),
        at: w.now,
    };
    w.reconcile();
    let (status, reason, message) = retained_condition(&w);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "ScanFailed"));
    assert!(
        message.contains("failed: BackoffLimitExceeded: error: cannot reach etcd"),
        "{message}"
    );
    assert!(w
        .events
        .iter()
        .any(|(r, n)| r == "KeysRetained" && n == &message));
    assert_eq!(w.scans_created, 1);
    w.tick(w.settings.scan.backoff);
    w.reconcile();
    assert_eq!(w.scans_created, 2, "rescanned after the backoff");
    w.finish_jobs();
    run(&mut w);
    assert_eq!(rendered_names(&w), ["key-2", "identity"]);
}
