//! Every rule, both sides, over the real-sized fixtures in `examples/`. Each denied case
//! names the rules it must trigger (exactly); the case marked as the rule's example must
//! produce the example denial quoted in `rules.rs` (and so in docs/rules.md).
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_policy::rules;
use eargate_testkit::fixtures::{example, inline_key, key_ref, RECONCILER};
use eargate_testkit::webhooks::*;
use serde_json::{json, Value};

const CFG: &str = "/spec/encryptionConfiguration";
const KEYS: &str = "/spec/encryptionConfiguration/secretbox/keys";

struct Case {
    name: &'static str,
    op: &'static str,
    old: Option<Value>,
    new: Value,
    sub: Option<&'static str>,
    user: &'static str,
    /// Rules that must fire (empty: allowed).
    deny: &'static [&'static str],
    /// This case produces the table's example denial for this rule.
    example_of: Option<&'static str>,
}

fn upd(name: &'static str, old: Value, new: Value, deny: &'static [&'static str]) -> Case {
    Case {
        name,
        op: "UPDATE",
        old: Some(old),
        new,
        sub: None,
        user: "jane@example.com",
        deny,
        example_of: None,
    }
}

fn crt(name: &'static str, new: Value, deny: &'static [&'static str]) -> Case {
    Case {
        name,
        op: "CREATE",
        old: None,
        new,
        sub: None,
        user: "jane@example.com",
        deny,
        example_of: None,
    }
}

impl Case {
    fn example(mut self, rule: &'static str) -> Self {
        self.example_of = Some(rule);
        self
    }
    fn status_edit(mut self, user: &'static str) -> Self {
        self.sub = Some("status");
        self.user = user;
        self
    }
}

fn enabled_plain(keys: Value) -> Value {
    with(
        plain(),
        &[(
            CFG,
            json!({"enabled": true, "resources": ["secrets"], "secretbox": {"keys": keys}}),
        )],
    )
}

fn in_phase(phase: &str, active_key: &str) -> Value {
    with(
        active(),
        &[("/status/encryption", status(phase, active_key))],
    )
}

fn cases() -> Vec<Case> {
    let two_keys = json!([
        key_ref("encryption-key-2022-01", "encryption-key-2022-01", "key"),
        key_ref("encryption-key-2022-02", "encryption-key-2022-02", "key")
    ]);
    vec![
        // EAR000
        crt(
            "enabled is a string",
            with(active(), &[(&format!("{CFG}/enabled"), json!("yes"))]),
            &["EAR000"],
        )
        .example("EAR000"),
        crt(
            "value is an object",
            with(
                active(),
                &[(
                    &format!("{KEYS}/0"),
                    json!({"name": "k", "value": {"a": KEY_A}}),
                )],
            ),
            &["EAR000"],
        ),
        crt(
            "feature gate is a string",
            with(
                active(),
                &[("/spec/features/encryptionAtRest", json!("true"))],
            ),
            &["EAR000"],
        ),
        crt("well-typed fixture", active(), &[]),
        // EAR001
        crt(
            "enabled without feature gate",
            with(
                active(),
                &[("/spec/features/encryptionAtRest", json!(false))],
            ),
            &["EAR001"],
        )
        .example("EAR001"),
        crt(
            "enabled with feature gate",
            enabled_plain(json!([key_ref(
                "encryption-key-2022-01",
                "encryption-key-2022-01",
                "key"
            )])),
            &[],
        ),
        crt(
            "disabled without feature gate",
            with(
                plain(),
                &[
                    ("/spec/features/encryptionAtRest", json!(false)),
                    (CFG, json!({"enabled": false})),
                ],
            ),
            &[],
        ),
        // EAR002
        crt(
            "enabled without secretbox",
            with(
                plain(),
                &[(CFG, json!({"enabled": true, "resources": ["secrets"]}))],
            ),
            &["EAR002"],
        )
        .example("EAR002"),
        crt(
            "enabled with empty keys",
            enabled_plain(json!([])),
            &["EAR002"],
        ),
        crt(
            "disabled without secretbox",
            with(plain(), &[(CFG, json!({"enabled": false}))]),
            &[],
        ),
        // EAR003
        crt(
            "name with a colon",
            enabled_plain(json!([
                key_ref("encryption-key-2022-01", "encryption-key-2022-01", "key"),
                key_ref("encryption-key:2022-02", "encryption-key:2022-02", "key")
            ])),
            &["EAR003"],
        )
        .example("EAR003"),
        crt(
            "duplicate names",
            enabled_plain(json!([
                key_ref("k1", "k1", "key"),
                key_ref("k1", "k1", "key")
            ])),
            &["EAR003"],
        ),
        crt(
            "unnamed key",
            enabled_plain(json!([{"secretRef": {"name": "s", "key": "key"}}])),
            &["EAR003"],
        ),
        crt(
            "value and secretRef",
            enabled_plain(
                json!([{"name": "k1", "value": KEY_A, "secretRef": {"name": "s", "key": "key"}}]),
            ),
            &["EAR003"],
        ),
        crt(
            "neither value nor secretRef",
            enabled_plain(json!([{"name": "k1"}])),
            &["EAR003"],
        ),
        crt(
            "empty secretRef fields",
            enabled_plain(json!([{"name": "k1", "secretRef": {"name": "", "key": ""}}])),
            &["EAR003"],
        ),
        crt(
            "bad names in a disabled config",
            with(
                plain(),
                &[(
                    CFG,
                    json!({"enabled": false, "secretbox": {"keys": [{"name": "a:b", "secretRef": {"name": "s", "key": "key"}}]}}),
                )],
            ),
            &["EAR003"],
        ),
        crt(
            "names with dots and underscores",
            enabled_plain(json!([
                key_ref("key_2024.01", "key_2024.01", "key"),
                inline_key("Key-2", KEY_A)
            ])),
            &[],
        ),
        // EAR004
        crt(
            "16-byte value",
            enabled_plain(json!([inline_key("encryption-key-2022-01", KEY_16)])),
            &["EAR004"],
        )
        .example("EAR004"),
        crt(
            "unpadded value",
            enabled_plain(json!([inline_key("k1", KEY_A.trim_end_matches('='))])),
            &["EAR004"],
        ),
        crt(
            "url-safe alphabet",
            enabled_plain(json!([inline_key("k1", &KEY_A.replace('+', "-"))])),
            &["EAR004"],
        ),
        crt(
            "32-byte value with line breaks",
            enabled_plain(json!([inline_key(
                "k1",
                &format!("{}\n{}", &KEY_A[..10], &KEY_A[10..])
            )])),
            &[],
        ),
        // EAR005
        crt(
            "star resource",
            with(
                active(),
                &[(&format!("{CFG}/resources"), json!(["secrets", "*"]))],
            ),
            &["EAR005"],
        )
        .example("EAR005"),
        crt(
            "events.k8s.io group",
            with(
                active(),
                &[(&format!("{CFG}/resources"), json!(["events.events.k8s.io"]))],
            ),
            &["EAR005"],
        ),
        crt(
            "extensions group",
            with(
                active(),
                &[(
                    &format!("{CFG}/resources"),
                    json!(["deployments.extensions"]),
                )],
            ),
            &["EAR005"],
        ),
        crt(
            "resource across groups",
            with(
                active(),
                &[(&format!("{CFG}/resources"), json!(["secrets.*"]))],
            ),
            &["EAR005"],
        ),
        crt(
            "non-REST resource",
            with(
                active(),
                &[(&format!("{CFG}/resources"), json!(["serviceipallocations"]))],
            ),
            &["EAR005"],
        ),
        crt(
            "overlap *.apps",
            with(
                active(),
                &[(
                    &format!("{CFG}/resources"),
                    json!(["*.apps", "deployments.apps"]),
                )],
            ),
            &["EAR005"],
        ),
        crt(
            "overlap *.*",
            with(
                active(),
                &[(&format!("{CFG}/resources"), json!(["*.*", "secrets"]))],
            ),
            &["EAR005"],
        ),
        crt(
            "overlap *. and core",
            with(
                active(),
                &[(&format!("{CFG}/resources"), json!(["*.", "configmaps"]))],
            ),
            &["EAR005"],
        ),
        crt(
            "several resources",
            with(
                active(),
                &[(
                    &format!("{CFG}/resources"),
                    json!(["secrets", "configmaps", "widgets.example.com", "*.apps"]),
                )],
            ),
            &[],
        ),
        crt(
            "capitals are defaulted, not denied",
            with(
                active(),
                &[(&format!("{CFG}/resources"), json!([" Secrets", "secrets"]))],
            ),
            &[],
        ),
        // EAR006
        upd(
            "add a key while EncryptionNeeded",
            in_phase("EncryptionNeeded", "secretbox/encryption-key-2022-01"),
            with(
                in_phase("EncryptionNeeded", "secretbox/encryption-key-2022-01"),
                &[(KEYS, two_keys.clone())],
            ),
            &["EAR006"],
        )
        .example("EAR006"),
        upd(
            "disable while Pending",
            in_phase("Pending", "secretbox/encryption-key-2022-01"),
            with(
                in_phase("Pending", "secretbox/encryption-key-2022-01"),
                &[(&format!("{CFG}/enabled"), json!(false))],
            ),
            &["EAR006"],
        ),
        upd(
            "remove config while Pending",
            in_phase("Pending", "secretbox/encryption-key-2022-01"),
            {
                let mut c = in_phase("Pending", "secretbox/encryption-key-2022-01");
                remove(&mut c, CFG);
                c
            },
            &["EAR006"],
        ),
        upd(
            "feature gate off while EncryptionNeeded",
            in_phase("EncryptionNeeded", "identity"),
            with(
                in_phase("EncryptionNeeded", "identity"),
                &[
                    ("/spec/features/encryptionAtRest", json!(false)),
                    (&format!("{CFG}/enabled"), json!(false)),
                ],
            ),
            &["EAR006", "EAR012"],
        ),
        upd(
            "other fields while EncryptionNeeded",
            in_phase("EncryptionNeeded", "secretbox/encryption-key-2022-01"),
            with(
                in_phase("EncryptionNeeded", "secretbox/encryption-key-2022-01"),
                &[
                    ("/spec/version", json!("1.25.6")),
                    ("/spec/componentsOverride/apiserver/replicas", json!(3)),
                ],
            ),
            &[],
        ),
        // EAR007
        upd(
            "add a resource while enabled",
            active(),
            with(
                active(),
                &[(
                    &format!("{CFG}/resources"),
                    json!(["configmaps", "secrets"]),
                )],
            ),
            &["EAR007"],
        )
        .example("EAR007"),
        upd(
            "reorder resources",
            with(
                active(),
                &[(
                    &format!("{CFG}/resources"),
                    json!(["secrets", "configmaps"]),
                )],
            ),
            with(
                active(),
                &[(
                    &format!("{CFG}/resources"),
                    json!(["configmaps", "secrets"]),
                )],
            ),
            &[],
        ),
        upd(
            "change resources while disabling",
            active(),
            with(
                active(),
                &[
                    (&format!("{CFG}/enabled"), json!(false)),
                    (&format!("{CFG}/resources"), json!(["configmaps"])),
                ],
            ),
            &[],
        ),
        // EAR008
        upd(
            "change an inline value",
            enabled_plain_active(json!([inline_key("encryption-key-2022-01", KEY_A)])),
            enabled_plain_active(json!([inline_key("encryption-key-2022-01", KEY_B)])),
            &["EAR008"],
        )
        .example("EAR008"),
        upd(
            "change a secretRef",
            active(),
            with(
                active(),
                &[(&format!("{KEYS}/0/secretRef/name"), json!("other-secret"))],
            ),
            &["EAR008"],
        ),
        upd(
            "value to secretRef",
            enabled_plain_active(json!([inline_key("encryption-key-2022-01", KEY_A)])),
            enabled_plain_active(json!([key_ref(
                "encryption-key-2022-01",
                "encryption-key-2022-01",
                "key"
            )])),
            &["EAR008"],
        ),
        upd(
            "same value re-wrapped",
            enabled_plain_active(json!([inline_key("encryption-key-2022-01", KEY_A)])),
            enabled_plain_active(json!([inline_key(
                "encryption-key-2022-01",
                &format!("{}\r\n{}", &KEY_A[..20], &KEY_A[20..])
            )])),
            &[],
        ),
        // EAR009
        upd(
            "new key straight to primary",
            active(),
            example("rotation-2-promote.yaml"),
            &["EAR009"],
        )
        .example("EAR009"),
        upd(
            "promote a known secondary",
            example("rotation-1-add-secondary.yaml"),
            example("rotation-2-promote.yaml"),
            &[],
        ),
        upd(
            "first enablement",
            plain(),
            enabled_plain(json!([key_ref(
                "encryption-key-2022-01",
                "encryption-key-2022-01",
                "key"
            )])),
            &[],
        ),
        upd(
            "re-enable after full decryption with a new key",
            with(
                plain(),
                &[
                    ("/status/encryption", status("Active", "identity")),
                    (
                        CFG,
                        json!({"enabled": false, "secretbox": {"keys": [key_ref("encryption-key-2022-01", "encryption-key-2022-01", "key")]}}),
                    ),
                ],
            ),
            with(
                plain(),
                &[
                    ("/status/encryption", status("Active", "identity")),
                    (
                        CFG,
                        json!({"enabled": true, "resources": ["secrets"], "secretbox": {"keys": [key_ref("encryption-key-2023-01", "encryption-key-2023-01", "key")]}}),
                    ),
                ],
            ),
            &[],
        ),
        // EAR010
        upd(
            "swap the active key",
            active(),
            example("cluster-remove-active-key.yaml"),
            &["EAR009", "EAR010"],
        )
        .example("EAR010"),
        upd(
            "remove a secondary before Active",
            with(
                in_phase("Failed", "secretbox/encryption-key-2022-01"),
                &[(KEYS, two_keys.clone())],
            ),
            in_phase("Failed", "secretbox/encryption-key-2022-01"),
            &["EAR010"],
        ),
        upd(
            "remove a key with no status",
            with(
                plain(),
                &[(
                    CFG,
                    json!({"enabled": true, "resources": ["secrets"], "secretbox": {"keys": two_keys.clone()}}),
                )],
            ),
            enabled_plain(json!([key_ref(
                "encryption-key-2022-01",
                "encryption-key-2022-01",
                "key"
            )])),
            &["EAR010"],
        ),
        upd(
            "remove the active key while disabling",
            active(),
            with(
                active(),
                &[(CFG, json!({"enabled": false, "resources": ["secrets"]}))],
            ),
            &["EAR010"],
        ),
        upd(
            "remove the old key after rotation",
            example("rotation-2-done.yaml"),
            example("rotation-3-remove-old.yaml"),
            &[],
        ),
        // EAR011
        upd(
            "disable while Active",
            active(),
            with(active(), &[(&format!("{CFG}/enabled"), json!(false))]),
            &[],
        ),
        upd(
            "disable in Failed",
            in_phase("Failed", "secretbox/encryption-key-2022-01"),
            with(
                in_phase("Failed", "secretbox/encryption-key-2022-01"),
                &[(&format!("{CFG}/enabled"), json!(false))],
            ),
            &[],
        ),
        upd(
            "remove the whole configuration while Active",
            active(),
            {
                let mut c = active();
                remove(&mut c, CFG);
                c
            },
            &[],
        ),
        // EAR012
        upd(
            "feature gate off while active",
            with(active(), &[(&format!("{CFG}/enabled"), json!(false))]),
            with(
                active(),
                &[
                    (&format!("{CFG}/enabled"), json!(false)),
                    ("/spec/features/encryptionAtRest", json!(false)),
                ],
            ),
            &["EAR012"],
        )
        .example("EAR012"),
        upd(
            "feature gate removed while enabled",
            active(),
            {
                let mut c = active();
                remove(&mut c, "/spec/features/encryptionAtRest");
                c
            },
            &["EAR012"],
        ),
        upd(
            "feature gate off after full decryption",
            with(
                plain(),
                &[("/status/encryption", status("Active", "identity"))],
            ),
            with(
                plain(),
                &[
                    ("/status/encryption", status("Active", "identity")),
                    ("/spec/features/encryptionAtRest", json!(false)),
                ],
            ),
            &[],
        ),
        // EAR013
        upd(
            "Failed: add a key",
            in_phase("Failed", "secretbox/encryption-key-2022-01"),
            with(
                in_phase("Failed", "secretbox/encryption-key-2022-01"),
                &[(KEYS, two_keys.clone())],
            ),
            &[],
        ),
        upd(
            "Failed: change key material",
            in_phase("Failed", "secretbox/encryption-key-2022-01"),
            with(
                in_phase("Failed", "secretbox/encryption-key-2022-01"),
                &[(&format!("{KEYS}/0/secretRef/key"), json!("other"))],
            ),
            &["EAR008"],
        ),
        // EAR014
        upd(
            "user edits status.encryption",
            active(),
            with(active(), &[("/status/encryption/phase", json!("Pending"))]),
            &["EAR014"],
        )
        .status_edit("jane@example.com")
        .example("EAR014"),
        upd(
            "user edits EncryptionInitialized",
            active(),
            with(
                active(),
                &[(
                    "/status/conditions/EncryptionInitialized/status",
                    json!("False"),
                )],
            ),
            &["EAR014"],
        )
        .status_edit("jane@example.com"),
        upd(
            "reconciler edits status.encryption",
            active(),
            with(active(), &[("/status/encryption/phase", json!("Pending"))]),
            &[],
        )
        .status_edit(RECONCILER),
        upd(
            "user edits other status",
            active(),
            with(active(), &[("/status/phase", json!("Updating"))]),
            &[],
        )
        .status_edit("jane@example.com"),
        upd(
            "status subresource ignores spec rules",
            active(),
            with(active(), &[(&format!("{CFG}/enabled"), json!("yes"))]),
            &[],
        )
        .status_edit("jane@example.com"),
    ]
}

fn enabled_plain_active(keys: Value) -> Value {
    with(
        enabled_plain(keys),
        &[(
            "/status/encryption",
            status("Active", "secretbox/encryption-key-2022-01"),
        )],
    )
}

#[test]
fn every_rule_both_sides() {
    let mut failures = Vec::new();
    let mut examples_seen = Vec::new();
    for case in cases() {
        let r = run(
            case.op,
            case.old.as_ref(),
            Some(&case.new),
            case.sub,
            case.user,
        );
        let got = r.rules();
        if got != case.deny {
            failures.push(format!(
                "{}: want {:?}, got {:?}\n{}",
                case.name,
                case.deny,
                got,
                r.validated.message.as_deref().unwrap_or("(allowed)")
            ));
            continue;
        }
        assert_eq!(r.allowed(), case.deny.is_empty());
        if let Some(rule) = case.example_of {
            examples_seen.push(rule);
            let want = rules::by_id(rule)
                .unwrap()
                .example_denial
                .expect("an example");
            let v = r
                .validated
                .decision
                .violations
                .iter()
                .find(|v| v.rule.id == rule)
                .unwrap();
            let got = format!("{}: {}", v.field, v.message);
            if got != want {
                failures.push(format!(
                    "{}: example of {rule} differs:\n  table: {want}\n  real:  {got}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    for rule in rules::ALL {
        assert_eq!(
            rule.example_denial.is_some(),
            examples_seen.contains(&rule.id),
            "{}: every example denial must be produced by a case",
            rule.id
        );
    }
}

#[test]
fn every_rule_is_exercised_on_both_sides() {
    let cases = cases();
    for rule in rules::ALL {
        if rule.example_denial.is_none() {
            continue;
        }
        assert!(
            cases.iter().any(|c| c.deny.contains(&rule.id)),
            "{}: no denied case",
            rule.id
        );
    }
    assert!(cases.iter().filter(|c| c.deny.is_empty()).count() >= 20);
}

#[test]
fn violations_name_field_key_problem_and_next_step() {
    let r = update(&active(), &example("cluster-remove-active-key.yaml"));
    let v = &r.validated.decision.violations;
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].key.as_deref(), Some("encryption-key-2022-01"));
    assert!(v[1]
        .field
        .starts_with("spec.encryptionConfiguration.secretbox.keys"));
    assert!(v[1].message.contains("keep it until"), "{}", v[1].message);
    let msg = r.validated.message.as_deref().unwrap();
    assert!(
        msg.contains("[EAR009]") && msg.contains("[EAR010]"),
        "{msg}"
    );
}

#[test]
fn delete_and_connect_are_allowed() {
    for op in ["DELETE", "CONNECT"] {
        let r = run(op, Some(&active()), None, None, "jane@example.com");
        assert!(r.allowed(), "{op}");
        assert!(r.mutated.patch.is_none());
    }
}

#[test]
fn warnings_cover_inline_keys_enabling_rotation_and_disabling() {
    let r = create(&enabled_plain(json!([inline_key(
        "encryption-key-2022-01",
        KEY_A
    )])));
    assert!(r.allowed());
    let w = r.validated.warnings.join("\n");
    assert!(w.contains("inline") && w.contains("secretRef"), "{w}");
    assert!(
        w.contains("enabling encryption at rest") && w.contains("RBAC"),
        "{w}"
    );
    assert!(w.contains("etcd backups"), "{w}");

    let r = update(
        &example("rotation-1-add-secondary.yaml"),
        &example("rotation-2-promote.yaml"),
    );
    let w = r.validated.warnings.join("\n");
    assert!(
        w.contains("key rotation") && w.contains("re-written") && w.contains("etcd backups"),
        "{w}"
    );

    let r = update(
        &active(),
        &with(active(), &[(&format!("{CFG}/enabled"), json!(false))]),
    );
    let w = r.validated.warnings.join("\n");
    assert!(
        w.contains("disabling encryption at rest")
            && w.contains("plaintext")
            && w.contains("etcd backups"),
        "{w}"
    );

    let mut removed = active();
    remove(&mut removed, CFG);
    let r = update(&active(), &removed);
    assert!(r
        .validated
        .warnings
        .join("\n")
        .contains("spec.encryptionConfiguration removed"));
}

#[test]
fn mutation_defaults_resources_with_a_minimal_patch() {
    // Missing resources: add.
    let mut c = active();
    remove(&mut c, &format!("{CFG}/resources"));
    let r = create(&c);
    assert!(r.allowed());
    let patch = serde_json::to_value(r.mutated.patch.as_ref().unwrap()).unwrap();
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/spec/encryptionConfiguration/resources", "value": ["secrets"]}])
    );
    assert!(r
        .mutated
        .warnings
        .iter()
        .any(|w| w.contains("defaulted to [secrets]")));
    // Capitals, spaces, duplicates: replace, each change explained.
    let c = with(
        active(),
        &[(
            &format!("{CFG}/resources"),
            json!([" Secrets", "secrets", "ConfigMaps"]),
        )],
    );
    let r = create(&c);
    let patch = serde_json::to_value(r.mutated.patch.as_ref().unwrap()).unwrap();
    assert_eq!(
        patch,
        json!([{"op": "replace", "path": "/spec/encryptionConfiguration/resources", "value": ["secrets", "configmaps"]}])
    );
    assert_eq!(r.mutated.warnings.len(), 3, "{:?}", r.mutated.warnings);
    // The patched object differs from the original only there.
    let mut expected = c.clone();
    set(
        &mut expected,
        &format!("{CFG}/resources"),
        json!(["secrets", "configmaps"]),
    );
    assert_eq!(r.patched_object.as_ref(), Some(&expected));
    // Nothing to do: no patch, no patchType.
    let r = create(&active());
    assert!(r.mutated.patch.is_none());
    let body: Value = serde_json::from_slice(&r.mutated.reviewed.body).unwrap();
    assert!(body["response"].get("patch").is_none() && body["response"].get("patchType").is_none());
    // Mutation never denies, even a broken object.
    let r = create(&with(
        active(),
        &[(&format!("{CFG}/enabled"), json!("yes"))],
    ));
    assert!(r.mutated.reviewed.summary.allowed);
    assert!(!r.allowed());
}
