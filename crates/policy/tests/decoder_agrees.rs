//! What the fuzzing against the serde_json reference found (see `fuzz_support`), each
//! pinned by a test that failed before its fix.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_policy::{decode, review_detailed, PolicyConfig, Webhook};
use eargate_testkit::webhooks::{active, plain};
use serde_json::json;

fn review_text(object: &serde_json::Value, old: &serde_json::Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": "kubermatic.k8c.io", "version": "v1", "kind": "Cluster"},
            "operation": "UPDATE",
            "userInfo": {"username": "jane"},
            "object": object,
            "oldObject": old,
        }
    })
    .to_string()
}

/// `{"phase":"Active","phase":"Pending"}` in status.encryption: the last copy counts, as
/// in Kubernetes' decoder. The scanner used to stop at the duplicate, keeping the first
/// phase and losing `activeKey`.
#[test]
fn a_duplicate_field_in_status_encryption_counts_with_its_last_copy() {
    let c = active();
    let text = review_text(&c, &c).replacen(
        "\"phase\":\"Active\"",
        "\"phase\":\"Active\",\"phase\":\"EncryptionNeeded\"",
        1,
    );
    assert_ne!(text, review_text(&c, &c), "the fixture has phase Active");
    let decoded = decode(text.as_bytes()).expect("valid JSON");
    let new = decoded
        .request
        .expect("a request")
        .object
        .expect("an object");
    assert_eq!(new.phase_raw.as_deref(), Some("EncryptionNeeded"));
    assert_eq!(
        new.active_key.as_deref(),
        Some("secretbox/encryption-key-2022-01")
    );
}

/// serde's derived structs accept a list of their fields in order; the fast typed path
/// read `"secretbox": [[]]` as a secretbox without keys where the `Value` path (and
/// Kubernetes) see the wrong type.
#[test]
fn a_list_where_an_object_belongs_is_the_wrong_type_on_every_path() {
    let old = plain();
    let mut new = plain();
    new["spec"]["encryptionConfiguration"] = json!({"enabled": true, "secretbox": [[]]});
    let text = review_text(&new, &old);
    let d = review_detailed(Webhook::Validate, text.as_bytes(), &PolicyConfig::default())
        .expect("a review");
    assert!(!d.reviewed.summary.allowed);
    assert!(
        d.reviewed.summary.rule_ids.contains(&"EAR000"),
        "{:?}",
        d.reviewed.summary.rule_ids
    );
    let message = d.message.expect("a denial");
    assert!(
        message.contains("spec.encryptionConfiguration.secretbox"),
        "{message}"
    );
}

/// A raw control character inside a string the scanner skips (a label) is not JSON:
/// the body is refused (400) instead of judged.
#[test]
fn a_raw_control_character_in_a_skipped_string_is_refused() {
    let c = active();
    let text =
        review_text(&c, &c).replacen("\"team\":\"payments\"", "\"team\":\"pay\u{0f}ments\"", 1);
    assert!(text.contains('\u{0f}'));
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    let err = review_detailed(Webhook::Validate, text.as_bytes(), &PolicyConfig::default())
        .expect_err("not JSON");
    assert!(
        err.to_string().contains("not a JSON AdmissionReview"),
        "{err}"
    );
}
