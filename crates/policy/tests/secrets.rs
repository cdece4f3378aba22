//! No key material in any message, warning, denial, reply body or Debug output, not even
//! a part of it, whatever the edit does with the key.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_testkit::fixtures::{inline_key, key_ref};
use eargate_testkit::secrets::assert_no_key_material;
use eargate_testkit::webhooks::*;
use serde_json::json;

#[test]
fn no_key_material_anywhere() {
    const CFG: &str = "/spec/encryptionConfiguration";
    const KEYS: &str = "/spec/encryptionConfiguration/secretbox/keys";
    let values = [
        KEY_A,
        KEY_B,
        KEY_16,
        "c2VjcmV0LWtleS1tYXRlcmlhbC13aXRoLWJhZC1jaGFyJA$$",
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY",
    ];
    for value in values {
        let other = if value == KEY_B { KEY_A } else { KEY_B };
        let enabled = |keys: serde_json::Value| {
            with(
                active(),
                &[(
                    CFG,
                    json!({"enabled": true, "resources": ["secrets"], "secretbox": {"keys": keys}}),
                )],
            )
        };
        let runs = vec![
            (
                "create inline",
                create(&enabled(json!([inline_key("k1", value)]))),
            ),
            (
                "create value+secretRef",
                create(&enabled(
                    json!([{"name": "k1", "value": value, "secretRef": {"name": "", "key": ""}}]),
                )),
            ),
            (
                "create bad name",
                create(&enabled(json!([
                    inline_key("a:b", value),
                    inline_key("a:b", value)
                ]))),
            ),
            (
                "create no feature",
                create(&with(
                    enabled(json!([inline_key("k1", value)])),
                    &[("/spec/features/encryptionAtRest", json!(false))],
                )),
            ),
            (
                "change material",
                update(
                    &enabled(json!([inline_key("encryption-key-2022-01", other)])),
                    &enabled(json!([inline_key("encryption-key-2022-01", value)])),
                ),
            ),
            (
                "new primary",
                update(
                    &active(),
                    &enabled(json!([
                        inline_key("k9", value),
                        key_ref("encryption-key-2022-01", "encryption-key-2022-01", "key")
                    ])),
                ),
            ),
            (
                "remove",
                update(
                    &enabled(json!([inline_key("encryption-key-2022-01", value)])),
                    &enabled(json!([inline_key("k2", other)])),
                ),
            ),
            (
                "value typed wrong",
                create(&with(
                    active(),
                    &[(
                        &format!("{KEYS}/0"),
                        json!({"name": "k", "value": [value], "secretRef": {"name": value}}),
                    )],
                )),
            ),
            (
                "status edit",
                run(
                    "UPDATE",
                    Some(&enabled(json!([inline_key("k1", value)]))),
                    Some(&with(
                        enabled(json!([inline_key("k1", value)])),
                        &[("/status/encryption/activeKey", json!(value))],
                    )),
                    Some("status"),
                    "mallory",
                ),
            ),
        ];
        for (case, r) in runs {
            let summaries = format!(
                "{:?} {:?}",
                r.mutated.reviewed.summary, r.validated.reviewed.summary
            );
            assert_no_key_material(
                &[value],
                [
                    (format!("{case}: the replies"), r.all_text()),
                    (format!("{case}: the summaries"), summaries),
                ],
            );
        }
    }
}

#[test]
fn typed_debug_is_redacted() {
    let c: eargate_policy::model::Cluster = serde_json::from_value(with(
        active(),
        &[(
            "/spec/encryptionConfiguration/secretbox/keys/0",
            inline_key("k1", KEY_A),
        )],
    ))
    .unwrap();
    let f = eargate_policy::ClusterFacts::from_cluster(&c);
    assert_no_key_material(&[KEY_A], [("the Debug forms", format!("{c:?} {f:?}"))]);
}
