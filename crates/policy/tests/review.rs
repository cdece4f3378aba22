//! kube-apiserver's reply rules for the AdmissionReview codec.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_policy::{review, PolicyConfig, ReviewError, Webhook};
use eargate_testkit::fixtures::Review;
use eargate_testkit::fixtures::{example, examples_dir};
use eargate_testkit::secrets::{assert_no_key_material, unb64};
use eargate_testkit::webhooks::*;
use serde_json::{json, Value};

fn reply(webhook: Webhook, review_json: &Value) -> (Value, eargate_policy::ReviewSummary) {
    let r = review(
        webhook,
        &serde_json::to_vec(review_json).unwrap(),
        &PolicyConfig::default(),
    )
    .unwrap();
    (serde_json::from_slice(&r.body).unwrap(), r.summary)
}

#[test]
fn denial_follows_kube_apiserver_reply_rules() {
    let review_json: Value = serde_json::from_str(
        &std::fs::read_to_string(examples_dir().join("review-remove-active-key.json")).unwrap(),
    )
    .unwrap();
    let (body, summary) = reply(Webhook::Validate, &review_json);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    let resp = &body["response"];
    assert_eq!(resp["uid"], review_json["request"]["uid"]);
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    assert_eq!(resp["status"]["reason"], "Forbidden");
    assert!(resp["status"]["message"]
        .as_str()
        .unwrap()
        .contains("[EAR010]"));
    assert!(
        resp.get("patch").is_none() && resp.get("patchType").is_none(),
        "validating replies never patch"
    );
    assert_eq!(resp["auditAnnotations"]["decision"], "denied");
    assert_eq!(resp["auditAnnotations"]["rules"], "EAR009,EAR010");
    assert_eq!(summary.rule_ids, ["EAR009", "EAR010"]);
    assert_eq!(summary.operation, "UPDATE");
    assert_eq!(summary.name, "zt7q9h2mxk");
    assert!(!summary.allowed && !summary.patched && !summary.foreign_kind && !summary.dry_run);
    // Audit keys are prefixed by kube-apiserver with "<webhook>/": they must not contain '/'.
    for k in resp["auditAnnotations"].as_object().unwrap().keys() {
        assert!(!k.contains('/'), "{k}");
    }
}

#[test]
fn v1beta1_is_answered_in_v1beta1_and_dry_run_gets_the_same_verdict() {
    let r = Review::update(&active(), &example("cluster-remove-active-key.yaml"))
        .user("u")
        .v1beta1()
        .dry_run()
        .build();
    let (body, summary) = reply(Webhook::Validate, &r);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(summary.api_version, "admission.k8s.io/v1beta1");
    assert_eq!(body["response"]["allowed"], false);
    assert!(summary.dry_run);
}

#[test]
fn mutating_reply_carries_patch_and_patch_type_together() {
    let mut c = active();
    remove(&mut c, "/spec/encryptionConfiguration/resources");
    let (body, summary) = reply(Webhook::Mutate, &Review::create(&c).user("u").build());
    let resp = &body["response"];
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch = unb64(resp["patch"].as_str().unwrap());
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(patch[0]["path"], "/spec/encryptionConfiguration/resources");
    assert!(summary.patched && summary.warnings == 1);
    assert!(resp["warnings"].as_array().unwrap()[0]
        .as_str()
        .unwrap()
        .contains("defaulted"));
    assert_eq!(resp["auditAnnotations"]["decision"], "allowed");
}

#[test]
fn foreign_kinds_are_allowed_with_a_warning() {
    let mut r = Review::update(
        &json!({"spec": [1, 2]}),
        &json!({"metadata": {"name": "x"}, "spec": "s", "status": {"conditions": [{"type": "Ready"}]}}),
    )
    .user("u")
    .build();
    r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Secret"});
    let (body, summary) = reply(Webhook::Validate, &r);
    assert_eq!(body["response"]["allowed"], true);
    assert!(summary.foreign_kind);
    assert_eq!(summary.warnings, 1);
}

#[test]
fn bad_bodies_are_errors_with_short_messages() {
    let cfg = PolicyConfig::default();
    let err = review(Webhook::Validate, b"{not json", &cfg).unwrap_err();
    assert!(matches!(err, ReviewError::NotJson(_)), "{err}");
    let err = review(
        Webhook::Validate,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        &cfg,
    )
    .unwrap_err();
    assert_eq!(err, ReviewError::MissingRequest);
    let err = review(
        Webhook::Validate,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{}}"#,
        &cfg,
    )
    .unwrap_err();
    assert!(matches!(err, ReviewError::WrongKind(_)));
    let err = review(
        Webhook::Validate,
        br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{}}"#,
        &cfg,
    )
    .unwrap_err();
    assert!(matches!(err, ReviewError::UnknownVersion(_)));
    let err = review(Webhook::Validate, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE","object":{"spec":{"encryptionConfiguration":{"secretbox":{"keys":[{"name":"k","value":"c2VjcmV0LWtleS1tYXRlcmlhbA"#, &cfg).unwrap_err();
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
}

#[test]
fn undecodable_encryption_fields_are_a_denial_naming_the_field() {
    let c = with(
        active(),
        &[("/spec/encryptionConfiguration/enabled", json!("yes"))],
    );
    let (body, summary) = reply(
        Webhook::Validate,
        &Review::update(&active(), &c).user("u").build(),
    );
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(summary.rule_ids, ["EAR000"]);
    assert!(body["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("spec.encryptionConfiguration.enabled"));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let cfg = PolicyConfig::default();
    let base = active_update().into_bytes();
    for cut in (0..base.len()).step_by(97) {
        let _ = review(Webhook::Validate, &base[..cut], &cfg);
        let _ = review(Webhook::Mutate, &base[..cut], &cfg);
    }
}

/// A no-op UPDATE of the active example, as compact JSON (as kube-apiserver sends it).
fn active_update() -> String {
    // One uid for every copy, so that replies to spliced copies compare equal.
    let review = Review::update(&active(), &active())
        .user("u")
        .uid("c0ffee00-1111-2222-3333-444455556666")
        .build();
    serde_json::to_string(&review).unwrap()
}

/// [`active_update`] with the first of the two occurrences of `needle` (new object, then old
/// object) replaced by `with`.
fn spliced(needle: &str, with: &str) -> Vec<u8> {
    let text = active_update();
    assert_eq!(
        text.matches(needle).count(),
        2,
        "{needle} (old and new object)"
    );
    text.replacen(needle, with, 1).into_bytes()
}

#[test]
fn deep_nesting_is_skipped_or_refused_never_a_crash() {
    let cfg = PolicyConfig::default();
    let abyss = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    // In a field the policy never reads: skipped without recursion, the review is decided.
    let body = spliced(
        r#""humanReadableName":"#,
        &format!(r#""deep":{abyss},"humanReadableName":"#),
    );
    let r = review(Webhook::Validate, &body, &cfg).unwrap();
    assert!(r.summary.allowed);
    // An unknown field inside a decoded object: serde_json skips it without recursing.
    let body = spliced(
        r#""encryptionConfiguration":{"#,
        &format!(r#""encryptionConfiguration":{{"deep":{abyss},"#),
    );
    assert!(
        review(Webhook::Validate, &body, &cfg)
            .unwrap()
            .summary
            .allowed
    );
    // A field it decodes: refused by serde_json's recursion limit, as a 400.
    let body = spliced(
        r#""encryptionConfiguration":{"#,
        &format!(r#""encryptionConfiguration":{{"resources":{abyss},"#),
    );
    let body = String::from_utf8(body)
        .unwrap()
        .replacen(r#""resources":["secrets"],"#, "", 1)
        .into_bytes();
    let err = review(Webhook::Validate, &body, &cfg).unwrap_err();
    assert!(matches!(err, ReviewError::NotJson(_)), "{err}");
}

#[test]
fn a_field_given_twice_is_refused_and_escaped_names_are_read() {
    let cfg = PolicyConfig::default();
    // Two copies of the configuration: which one counts would be ambiguous.
    let body = spliced(
        r#""encryptionConfiguration":"#,
        r#""encryptionConfiguration":null,"encryptionConfiguration":"#,
    );
    let err = review(Webhook::Validate, &body, &cfg).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    // An escaped spelling of the same name is the same field.
    let body = spliced(
        r#""encryptionConfiguration":"#,
        r#""encryptionConfiguration":null,"encryption\u0043onfiguration":"#,
    );
    assert!(review(Webhook::Validate, &body, &cfg).is_err());
    let body = spliced(
        r#""encryptionConfiguration":"#,
        r#""encryption\u0043onfiguration":"#,
    );
    let escaped = review(Webhook::Validate, &body, &cfg).unwrap();
    let plain = review(
        Webhook::Validate,
        &spliced(
            r#""encryptionConfiguration":"#,
            r#""encryptionConfiguration":"#,
        ),
        &cfg,
    )
    .unwrap();
    assert_eq!(escaped.summary, plain.summary);
}

#[test]
fn decode_errors_and_denials_from_the_scanner_paths_never_quote_key_material() {
    let cfg = PolicyConfig::default();
    let key = "c2VjcmV0LWtleS1tYXRlcmlhbC1mb3ItdGVzdHMtMDE=";
    let bodies = [
        // Broken JSON right after the key: refused by the configuration decoder.
        spliced(
            r#""encryptionConfiguration":{"#,
            &format!(
                r#""encryptionConfiguration":{{"secretbox":{{"keys":[{{"name":"k","value":"{key}" x}}]}},"#
            ),
        ),
        // The key where a boolean belongs: the lenient path's EAR000 denial.
        spliced(
            r#""encryptionConfiguration":{"#,
            &format!(r#""encryptionConfiguration":{{"enabled":"{key}","#),
        ),
        // Given twice: refused by the scanner.
        spliced(
            r#""encryptionConfiguration":"#,
            &format!(r#""encryptionConfiguration":{{"k":"{key}"}},"encryptionConfiguration":"#),
        ),
        // Broken grammar inside status.encryption, which the strict walk checks: a raw
        // control character after the key, and a missing comma next to it.
        spliced(
            r#""encryption":{"#,
            &format!("\"encryption\":{{\"activeKey\":\"{key}\u{1}\","),
        ),
        spliced(
            r#""encryption":{"#,
            &format!(r#""encryption":{{"encryptedResources":["{key}" "x"],"#),
        ),
        // Not UTF-8 next to the key.
        {
            let mut b = spliced(
                r#""encryptionConfiguration":{"#,
                &format!(r#""encryptionConfiguration":{{"x":"{key}?","#),
            );
            let at = b.iter().position(|&c| c == b'?').unwrap();
            b[at] = 0xff;
            b
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let text = match review(Webhook::Validate, &body, &cfg) {
            Ok(r) => String::from_utf8(r.body).unwrap() + &format!("{:?}", r.summary),
            Err(e) => format!("{e} {e:?}"),
        };
        if matches!(i, 3 | 4) {
            assert!(text.contains("invalid JSON in status.encryption"), "{text}");
        }
        assert_no_key_material(&[key], [(format!("body {i}"), text)]);
    }
}
