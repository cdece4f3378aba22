//! Every warning of the table in `rules.rs` (`EARW01`…) is produced by a real input, with the
//! field it names and the example text the table (and so docs/rules.md) quotes. The texts
//! are what kube-apiserver relays and kubectl prints: a few are pinned here word for word,
//! as kubectl showed them before warnings had ids.
//!
//! Its own small helpers over the fixtures in `examples/`; the review is the test kit's.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_policy::rules::{self, WarningKind};
use eargate_policy::Warning;
use eargate_policy::{review_detailed, Detailed, PolicyConfig, Webhook};
use eargate_testkit::fixtures::{example, Review};
use eargate_testkit::secrets::assert_no_key_material;
use eargate_testkit::webhooks::{active, remove, set, KEY_A};
use serde_json::{json, Value};

const CFG: &str = "/spec/encryptionConfiguration";

/// A new Cluster (no status) with this encryption configuration.
fn fresh(config: Value) -> Value {
    let mut c = active();
    remove(&mut c, "/status");
    remove(&mut c, "/metadata/resourceVersion");
    set(&mut c, CFG, config);
    c
}

fn secret_ref_key(name: &str) -> Value {
    json!({"name": name, "secretRef": {"name": name, "key": "key"}})
}

/// A review of `op` by jane, with a fixed uid and name (the pinned texts name neither).
fn review(op: &str, old: Option<&Value>, new: Option<&Value>) -> Value {
    Review::new(op, new, old)
        .uid("c0ffee00-1111-2222-3333-444455556666")
        .name("zt7q9h2mxk")
        .build()
}

/// What the chart's two webhooks send for one review: /mutate, its patch applied, /validate.
fn both(review: Value) -> [Detailed; 2] {
    both_with(review, &PolicyConfig::default())
}

/// [`both`] with a policy configuration of the caller's.
fn both_with(mut review: Value, config: &PolicyConfig) -> [Detailed; 2] {
    let config = config.clone();
    let body = serde_json::to_vec(&review).unwrap();
    let mutated = review_detailed(Webhook::Mutate, &body, &config).unwrap();
    if let Some(patch) = &mutated.patch {
        json_patch::patch(review.pointer_mut("/request/object").unwrap(), patch).unwrap();
    }
    let body = serde_json::to_vec(&review).unwrap();
    let validated = review_detailed(Webhook::Validate, &body, &config).unwrap();
    [mutated, validated]
}

/// One input, the warning it must produce and the field that warning names.
struct Case {
    name: &'static str,
    review: Value,
    kind: &'static WarningKind,
    field: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |name, review, kind, field| Case {
        name,
        review,
        kind,
        field,
    };
    let enabled = |resources: Value, key: Value| {
        fresh(json!({"enabled": true, "resources": resources, "secretbox": {"keys": [key]}}))
    };
    let mut no_resources = enabled(json!([]), secret_ref_key("encryption-key-2022-01"));
    remove(&mut no_resources, &format!("{CFG}/resources"));
    let respelled = enabled(
        json!([" Secrets", "secrets"]),
        secret_ref_key("encryption-key-2022-01"),
    );
    let inline = enabled(
        json!(["secrets"]),
        json!({"name": "encryption-key-2022-01", "value": KEY_A}),
    );
    let mut disabled = active();
    set(&mut disabled, &format!("{CFG}/enabled"), json!(false));
    let mut removed = active();
    remove(&mut removed, CFG);
    let mut undecodable = active();
    set(&mut undecodable, &format!("{CFG}/enabled"), json!("yes"));
    let mut secret = review("CREATE", None, Some(&active()));
    secret["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Secret"});
    let mut patch = review("CREATE", None, Some(&active()));
    patch["request"]["operation"] = json!("PATCH");
    let update = |old: &str, new: &str| review("UPDATE", Some(&example(old)), Some(&example(new)));
    vec![
        case(
            "enabled without resources",
            review("CREATE", None, Some(&no_resources)),
            &rules::EARW01,
            "spec.encryptionConfiguration.resources",
        ),
        case(
            "a capital and a space",
            review("CREATE", None, Some(&respelled)),
            &rules::EARW02,
            "spec.encryptionConfiguration.resources[0]",
        ),
        case(
            "the same resource twice once cleaned",
            review("CREATE", None, Some(&respelled)),
            &rules::EARW03,
            "spec.encryptionConfiguration.resources[1]",
        ),
        case(
            "an inline key",
            review("CREATE", None, Some(&inline)),
            &rules::EARW04,
            "spec.encryptionConfiguration.secretbox.keys[0].value",
        ),
        case(
            "first enablement",
            review("CREATE", None, Some(&inline)),
            &rules::EARW05,
            "spec.encryptionConfiguration.enabled",
        ),
        case(
            "rotation step 2: promote",
            update("rotation-1-add-secondary.yaml", "rotation-2-promote.yaml"),
            &rules::EARW06,
            "spec.encryptionConfiguration.secretbox.keys[0]",
        ),
        case(
            "rotation step 1: add a secondary key",
            update("cluster-active.yaml", "rotation-1-add-secondary.yaml"),
            &rules::EARW07,
            "spec.encryptionConfiguration.secretbox.keys[1]",
        ),
        case(
            "rotation step 3: remove the old key",
            update("rotation-2-done.yaml", "rotation-3-remove-old.yaml"),
            &rules::EARW08,
            "spec.encryptionConfiguration.secretbox.keys",
        ),
        case(
            "enabled: false",
            review("UPDATE", Some(&active()), Some(&disabled)),
            &rules::EARW09,
            "spec.encryptionConfiguration.enabled",
        ),
        case(
            "the whole configuration removed",
            review("UPDATE", Some(&active()), Some(&removed)),
            &rules::EARW10,
            "spec.encryptionConfiguration",
        ),
        case(
            "a stored enabled: \"yes\"",
            review("UPDATE", Some(&undecodable), Some(&active())),
            &rules::EARW11,
            "spec.encryptionConfiguration.enabled",
        ),
        case(
            "a review for a Secret",
            secret,
            &rules::EARW12,
            "request.kind",
        ),
        case(
            "operation PATCH",
            patch,
            &rules::EARW13,
            "request.operation",
        ),
    ]
}

#[test]
fn every_warning_is_produced_with_its_field_and_the_tables_example() {
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for c in cases() {
        let sent: Vec<Warning> = both(c.review)
            .into_iter()
            .flat_map(|d| d.warnings_detailed)
            .collect();
        let Some(w) = sent.iter().find(|w| w.kind == c.kind) else {
            failures.push(format!("{}: no {} in {sent:#?}", c.name, c.kind.id));
            continue;
        };
        seen.push(c.kind.id);
        if w.field != c.field {
            failures.push(format!(
                "{}: {} names field {:?}, want {:?}",
                c.name, c.kind.id, w.field, c.field
            ));
        }
        if w.to_string() != c.kind.example {
            failures.push(format!(
                "{}: {} differs from the table's example:\n  table: {}\n  real:  {w}",
                c.name, c.kind.id, c.kind.example
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    for kind in rules::WARNINGS {
        assert!(seen.contains(&kind.id), "{}: no input produces it", kind.id);
    }
}

/// The texts as kubectl printed them before warnings had ids (docs/rules.md and
/// docs/rotation-example.md hold the same lines, recorded from real runs).
#[test]
fn the_texts_are_unchanged_word_for_word() {
    let pinned: &[(&WarningKind, &str)] = &[
        (
            &rules::EARW01,
            "spec.encryptionConfiguration.resources was empty; defaulted to [secrets]",
        ),
        (
            &rules::EARW04,
            "spec.encryptionConfiguration.secretbox.keys[0].value: key \"encryption-key-2022-01\" carries its key material inline: anyone who can read Clusters (or the git repository they come from) can read the key; prefer secretRef to a Secret in the control-plane namespace",
        ),
        (
            &rules::EARW06,
            "key rotation: key \"encryption-key-2022-02\" becomes the primary key; every object of [secrets] will be re-written sealed with it; keep \"encryption-key-2022-01\" in the list until the phase is Active again; etcd backups taken in the next minutes may still hold older revisions until kube-apiserver compacts them (every 5 minutes)",
        ),
        (
            &rules::EARW07,
            "key \"encryption-key-2022-02\" added as a secondary key: the API servers will be able to decrypt with it; once the phase is Active, move it to keys[0] to make it the primary key",
        ),
        (
            &rules::EARW08,
            "key \"encryption-key-2022-01\" removed from the configuration: eargate's reconciler drops it from the API servers' config only after a storage scan of etcd finds nothing sealed with it (no object, no older revision; condition EncryptionKeysRetained); from then on nothing sealed with it can be read, including etcd backups you might restore: keep a copy of the key material outside the cluster until those backups expire",
        ),
    ];
    let cases = cases();
    for (kind, text) in pinned {
        assert_eq!(kind.example, *text, "{}: the table's example", kind.id);
        let c = cases.iter().find(|c| c.kind == *kind).unwrap();
        let texts: Vec<String> = both(c.review.clone())
            .into_iter()
            .flat_map(|d| d.warnings)
            .collect();
        assert!(texts.iter().any(|t| t == text), "{}: {texts:#?}", kind.id);
    }
}

/// Where another controller rolls configs out (a gate-only install on a Kubermatic seed), the
/// key-removal warning promises no storage scan.
#[test]
fn the_key_removal_warning_follows_who_rolls_out() {
    let c = cases()
        .into_iter()
        .find(|c| c.kind == &rules::EARW08)
        .unwrap();
    let config = PolicyConfig {
        rollout_by: eargate_policy::RolloutBy::Other,
        ..PolicyConfig::default()
    };
    let texts: Vec<String> = both_with(c.review, &config)
        .into_iter()
        .flat_map(|d| d.warnings)
        .collect();
    assert!(
        texts.iter().any(|t| t == "key \"encryption-key-2022-01\" removed from the configuration: the API servers will no longer be able to read anything sealed with it once the next rollout drops it, including etcd backups you might restore: keep a copy of the key material outside the cluster until those backups expire"),
        "{texts:#?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("storage scan")),
        "{texts:#?}"
    );
}

#[test]
fn the_reply_carries_the_texts_without_ids_in_order() {
    for c in cases() {
        for d in both(c.review) {
            let reply: Value = serde_json::from_slice(&d.reviewed.body).unwrap();
            let on_wire: Vec<String> = reply["response"]["warnings"]
                .as_array()
                .map(|a| a.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            let shown: Vec<String> = d.warnings_detailed.iter().map(Warning::to_string).collect();
            assert_eq!(on_wire, shown, "{}", c.name);
            assert_eq!(d.warnings, shown, "{}", c.name);
            assert_eq!(d.reviewed.summary.warnings, shown.len(), "{}", c.name);
            for w in &d.warnings_detailed {
                assert!(!w.message.contains("EARW"), "{}: {w}", c.name);
                assert_eq!(w.id(), w.kind.id);
                // A text that starts with a field path starts with the warning's own field.
                if w.message.starts_with("spec.") {
                    assert!(w.message.starts_with(&w.field), "{}: {w:?}", c.name);
                }
            }
        }
    }
}

#[test]
fn an_inline_key_warning_never_quotes_the_key() {
    let c = cases()
        .into_iter()
        .find(|c| c.kind == &rules::EARW04)
        .unwrap();
    for d in both(c.review) {
        let body = String::from_utf8_lossy(&d.reviewed.body).into_owned();
        let warnings = format!("{:?}", d.warnings_detailed);
        assert_no_key_material(&[KEY_A], [("the reply", body), ("the warnings", warnings)]);
    }
}
