//! The validating webhook on its own: it judges `resources` exactly as
//! received, assuming only that a missing or empty list means `[secrets]`. What the mutating
//! webhook would rewrite (capitals, surrounding whitespace, duplicates) is denied by EAR005
//! with a pointer at the mutating webhook; the mutating webhook itself still normalises.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_policy::{normalize_resources, validate_resources};
use eargate_policy::{review_detailed, Detailed, PolicyConfig, Webhook};
use eargate_testkit::fixtures::Review;
use eargate_testkit::webhooks::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const CFG: &str = "/spec/encryptionConfiguration";

/// `/validate` alone, on the object as given.
fn validate_only(op: &str, old: Option<&Value>, new: &Value) -> Detailed {
    let body = Review::new(op, Some(new), old)
        .user("jane@example.com")
        .to_vec();
    review_detailed(Webhook::Validate, &body, &PolicyConfig::default()).unwrap()
}

fn with_resources(resources: Value) -> Value {
    with(active(), &[(&format!("{CFG}/resources"), resources)])
}

#[test]
fn what_the_mutating_webhook_fixes_is_denied_without_it() {
    for (resources, field, fix) in [
        (
            json!(["Secrets"]),
            "resources[0]",
            "writes this entry as \"secrets\"",
        ),
        (
            json!(["secrets", "secrets"]),
            "resources[1]",
            "drops this duplicate",
        ),
        (
            json!(["secrets\t"]),
            "resources[0]",
            "writes this entry as \"secrets\"",
        ),
        (
            json!(["configmaps", " Secrets "]),
            "resources[1]",
            "writes this entry as \"secrets\"",
        ),
        (
            json!(["secrets", " secrets"]),
            "resources[1]",
            "drops this duplicate",
        ),
    ] {
        let d = validate_only("CREATE", None, &with_resources(resources.clone()));
        assert!(!d.reviewed.summary.allowed, "{resources}");
        assert_eq!(d.reviewed.summary.rule_ids, ["EAR005"], "{resources}");
        let v = &d.decision.violations[0];
        assert_eq!(v.field, format!("spec.encryptionConfiguration.{field}"));
        assert!(
            v.message.contains(&format!(
                "the mutating webhook mutate.eargate.k8c.io normally {fix}"
            )) && v.message.contains("is it installed"),
            "{resources}: {}",
            v.message
        );
        // The mutating webhook still rewrites it, and then the list passes.
        let body = Review::create(&with_resources(resources.clone()))
            .user("jane@example.com")
            .to_vec();
        let m = review_detailed(Webhook::Mutate, &body, &PolicyConfig::default()).unwrap();
        assert!(
            m.reviewed.summary.allowed && m.patch.is_some(),
            "{resources}"
        );
    }
    // Every problem at once: fixing the capital alone would make [1] a duplicate.
    let d = validate_only(
        "CREATE",
        None,
        &with_resources(json!(["Secrets", "secrets"])),
    );
    let fields: Vec<&str> = d
        .decision
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.encryptionConfiguration.resources[0]",
            "spec.encryptionConfiguration.resources[1]"
        ],
        "{:?}",
        d.message
    );
    assert!(
        d.decision.violations[1]
            .message
            .starts_with("\"secrets\": duplicates resources[0] \"Secrets\" once that entry is written as it must be"),
        "{}",
        d.decision.violations[1].message
    );
    // A problem the mutating webhook does not fix gets no such pointer.
    let d = validate_only("CREATE", None, &with_resources(json!(["secrets", "*"])));
    assert!(!d.reviewed.summary.allowed);
    assert!(
        !d.decision.violations[0]
            .message
            .contains("mutating webhook"),
        "{}",
        d.decision.violations[0].message
    );

    // The one default the validating webhook assumes: no resources means [secrets].
    let mut missing = active();
    remove(&mut missing, &format!("{CFG}/resources"));
    for new in [missing, with_resources(json!([]))] {
        let d = validate_only("CREATE", None, &new);
        assert!(d.reviewed.summary.allowed, "{:?}", d.message);
        assert!(d.patch.is_none());
        // And as an UPDATE of a stored [secrets]: the same list, no EAR007.
        let d = validate_only("UPDATE", Some(&active()), &new);
        assert!(d.reviewed.summary.allowed, "{:?}", d.message);
    }
    // Disabled with no resources: nothing to judge.
    let mut disabled = with(active(), &[(&format!("{CFG}/enabled"), json!(false))]);
    remove(&mut disabled, &format!("{CFG}/resources"));
    assert!(
        validate_only("UPDATE", Some(&active()), &disabled)
            .reviewed
            .summary
            .allowed
    );
}

#[test]
fn a_respelled_list_is_not_also_a_change_of_resources_or_of_the_locked_config() {
    // Stored before eargate guarded the cluster, with a capital; the edit keeps it while a
    // rollout is in flight. Only EAR005 speaks: the meaning did not change, so neither
    // EAR006 (lock) nor EAR007 (resources fixed) applies.
    let stored = with(
        with_resources(json!(["Secrets"])),
        &[(
            "/status/encryption",
            status("EncryptionNeeded", "secretbox/encryption-key-2022-01"),
        )],
    );
    let mut edited = stored.clone();
    set(&mut edited, "/metadata/labels", json!({"team": "platform"}));
    let d = validate_only("UPDATE", Some(&stored), &edited);
    assert_eq!(d.reviewed.summary.rule_ids, ["EAR005"], "{:?}", d.message);
    // Respelling the stored list while enabled is not EAR007 either.
    let d = validate_only(
        "UPDATE",
        Some(&active()),
        &with_resources(json!(["SECRETS"])),
    );
    assert_eq!(d.reviewed.summary.rule_ids, ["EAR005"], "{:?}", d.message);
    // A real change still is.
    let d = validate_only(
        "UPDATE",
        Some(&active()),
        &with_resources(json!(["configmaps"])),
    );
    assert_eq!(d.reviewed.summary.rule_ids, ["EAR007"], "{:?}", d.message);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The validating webhook alone admits a list exactly when the mutating webhook would
    /// leave it as it is (or it is empty, read as `[secrets]`) and that list passes
    /// kube-apiserver's rules.
    #[test]
    fn validate_only_admits_exactly_the_canonical_lists(
        picks in prop::collection::vec(
            (
                prop::sample::select(&["secrets", "configmaps", "deployments.apps", "widgets.example.com", "*.apps", "*"][..]),
                prop::sample::select(&["", " ", "\t"][..]),
                any::<bool>(),
            ),
            0..4,
        ),
    ) {
        let resources: Vec<String> = picks
            .iter()
            .map(|(r, pad, upper)| {
                let r = if *upper { r.to_uppercase() } else { r.to_string() };
                format!("{pad}{r}{pad}")
            })
            .collect();
        let d = validate_only("CREATE", None, &with_resources(json!(resources)));
        let normalized = normalize_resources(&resources, true).resources;
        let canonical = resources.is_empty() || normalized == resources;
        let want = canonical && validate_resources(&normalized).is_empty();
        prop_assert_eq!(d.reviewed.summary.allowed, want, "{:?}: {:?}", resources, d.message);
    }
}
