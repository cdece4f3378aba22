//! `/validate` judges the object it receives. When the mutating webhook did
//! not run — not installed, skipped, or a later mutating webhook re-added an entry —
//! `/validate` alone must deny a `resources` list kube-apiserver would refuse or silently
//! misread (capitals, duplicates, surrounding whitespace), and say that the mutating webhook
//! normally fixes it. Only a missing or empty list may be read as `[secrets]`.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_testkit::admission::*;
use eargate_testkit::fixtures::{ClusterFixture, Review};
use eargate_testkit::secrets::test_key;
use serde_json::{json, Value};

fn create_review(resources: Option<Vec<&str>>) -> Value {
    let object = ClusterFixture::new("abcdefgh").kubermatic();
    // No list at all: the mutating webhook's to fill.
    let object = match resources {
        Some(resources) => object.encryption(resources),
        None => object.encryption(["secrets"]).without_resources(),
    }
    .key("key-1", &test_key(1))
    .build();
    Review::create(&object).user("someone@example.com").build()
}

fn message(reply: &Value) -> String {
    reply["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_alone_denies_what_only_the_mutating_webhook_would_fix() {
    let server = TestServer::start().await;
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["Secrets"],
            "spec.encryptionConfiguration.resources[0]: \"Secrets\": resource name should not contain capital letters",
            "normally writes this entry as \"secrets\"",
        ),
        (
            &["secrets", "secrets"],
            "spec.encryptionConfiguration.resources[1]: \"secrets\": duplicates resources[0]: the same resource cannot be specified multiple times",
            "normally drops this duplicate",
        ),
        (
            &[" secrets"],
            "spec.encryptionConfiguration.resources[0]: \" secrets\": surrounding whitespace",
            "normally writes this entry as \"secrets\"",
        ),
        (
            &["configmaps", "secrets "],
            "spec.encryptionConfiguration.resources[1]: \"secrets \": surrounding whitespace",
            "normally writes this entry as \"secrets\"",
        ),
    ];
    for (resources, want, fix) in cases {
        let r = create_review(Some(resources.to_vec()));
        let reply = server.admit("/validate", &r).await;
        let resp = &reply["response"];
        assert_eq!(resp["allowed"], false, "{resources:?}: {reply:#}");
        assert_eq!(resp["status"]["code"], 403);
        assert_eq!(resp["auditAnnotations"]["rules"], "EAR005", "{reply:#}");
        let msg = message(&reply);
        assert!(msg.contains(&format!("- [EAR005] {want}")), "{msg}");
        assert!(msg.contains(fix), "{msg}");
        assert!(
            msg.contains("mutating webhook mutate.eargate.k8c.io")
                && msg.contains("is it installed"),
            "the denial must point at the missing mutating webhook: {msg}"
        );

        // With the mutating webhook in front, the same edit is rewritten and allowed.
        let (mutated, validated) = server.mutate_then_validate(&r).await;
        assert_eq!(mutated["response"]["patchType"], "JSONPatch", "{mutated:#}");
        let patched = apply_patch(&r["request"]["object"], &mutated);
        assert_eq!(
            patched["spec"]["encryptionConfiguration"]["resources"],
            json!(resources.iter().map(|s| s.trim().to_lowercase()).fold(
                Vec::<String>::new(),
                |mut v, s| {
                    if !v.contains(&s) {
                        v.push(s)
                    }
                    v
                }
            )),
        );
        assert_eq!(validated["response"]["allowed"], true, "{validated:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_alone_assumes_only_that_no_resources_means_secrets() {
    let server = TestServer::start().await;
    // Missing or empty: read as [secrets] (no EAR005 "at least one resource is required").
    for resources in [None, Some(vec![])] {
        let reply = server
            .admit("/validate", &create_review(resources.clone()))
            .await;
        assert_eq!(
            reply["response"]["allowed"], true,
            "{resources:?}: {reply:#}"
        );
    }
    // Already what the mutating webhook writes: allowed, nothing to say about it.
    let reply = server
        .admit(
            "/validate",
            &create_review(Some(vec!["secrets", "configmaps"])),
        )
        .await;
    assert_eq!(reply["response"]["allowed"], true, "{reply:#}");

    // An UPDATE that only respells the stored list is one EAR005 denial, not also an EAR007
    // "the encrypted resources cannot change": the meaning is the same list.
    let old = ClusterFixture::new("abcdefgh")
        .kubermatic()
        .encryption(["secrets"])
        .key("key-1", &test_key(1))
        .initialized()
        .active("key-1")
        .build();
    let new = ClusterFixture::new("abcdefgh")
        .kubermatic()
        .encryption(["secrets", "Secrets"])
        .key("key-1", &test_key(1))
        .initialized()
        .active("key-1")
        .build();
    let r = Review::update(&old, &new)
        .user("someone@example.com")
        .build();
    let reply = server.admit("/validate", &r).await;
    assert_eq!(reply["response"]["allowed"], false, "{reply:#}");
    assert_eq!(reply["response"]["auditAnnotations"]["rules"], "EAR005");
    let msg = message(&reply);
    assert!(msg.contains("1 problem"), "{msg}");
    assert!(
        msg.contains("resources[1]: \"Secrets\": resource name should not contain capital letters"),
        "{msg}"
    );
}
