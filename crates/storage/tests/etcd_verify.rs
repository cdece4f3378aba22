//! `verify` against a real etcd: every outcome, older plaintext revisions, compacted history,
//! paging, TLS.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod support;

use eargate_policy::apiserver_config::{EncryptionConfig, Provider, ProviderKey, ResourceConfig};
use eargate_storage::classify::{FailureReason, Outcome};
use eargate_storage::report::Report;
use eargate_storage::verify::{verify, VerifyOptions};
use eargate_storage::SecretboxKey;
use eargate_testkit::secrets::{assert_no_key_material, b64};
use etcd_client::{Client, CompactionOptions};

use support::{Etcd, EtcdExt as _};

/// Marker inside every plaintext we write: it must never show up in output.
pub const MARKER: &str = "TOPSECRET-PLAINTEXT-MARKER";

/// secrets: secretbox [key2 (primary), key1], identity. configmaps: identity only.
fn config() -> EncryptionConfig {
    EncryptionConfig::new(vec![ResourceConfig {
        resources: vec!["secrets".into()],
        providers: vec![
            Provider::secretbox(vec![
                ProviderKey {
                    name: "key2".into(),
                    secret: b64([2; 32]),
                },
                ProviderKey {
                    name: "key1".into(),
                    secret: b64([1; 32]),
                },
            ]),
            Provider::identity(),
        ],
    }])
}

fn proto_object(name: &str) -> Vec<u8> {
    let mut v = b"k8s\0\n\x0c\n\x02v1\x12\x06Secret".to_vec();
    v.extend_from_slice(format!("{name}:{MARKER}").as_bytes());
    v
}

fn json_object(name: &str) -> Vec<u8> {
    format!(r#"{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"{name}"}},"data":{{"x":"{MARKER}"}}}}"#).into_bytes()
}

fn key2() -> SecretboxKey {
    SecretboxKey::new("key2", &[2; 32])
}
fn key1() -> SecretboxKey {
    SecretboxKey::new("key1", &[1; 32])
}

async fn put(c: &mut Client, key: &str, value: Vec<u8>) -> i64 {
    c.put(key, value, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// Seeds one object per outcome (plus history), returns the plaintext revisions that must
/// be reported by `--history`.
async fn seed(c: &mut Client) -> (i64, Vec<i64>) {
    let p = "/registry/secrets";
    // Written before the compaction: must not be reported.
    put(
        c,
        &format!("{p}/default/compacted-away"),
        proto_object("compacted-away"),
    )
    .await;
    put(
        c,
        &format!("{p}/default/compacted-away"),
        key2().seal(&proto_object("compacted-away")),
    )
    .await;
    let compact_at = put(
        c,
        &format!("{p}/default/primary-proto"),
        key2().seal(&proto_object("a")),
    )
    .await;
    c.compact(compact_at, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();

    let mut plaintext_revs = Vec::new();
    // Rotated after the compaction: plaintext revision remains in history.
    plaintext_revs.push(put(c, &format!("{p}/default/rotated"), proto_object("rotated")).await);
    put(
        c,
        &format!("{p}/default/rotated"),
        key2().seal(&proto_object("rotated")),
    )
    .await;
    // Written in plaintext, then deleted: its plaintext revision remains too.
    plaintext_revs.push(put(c, &format!("{p}/gone-ns/deleted"), json_object("deleted")).await);
    c.delete(format!("{p}/gone-ns/deleted"), None)
        .await
        .unwrap();
    // An older revision sealed with the secondary key (reported, but not a failure).
    put(
        c,
        &format!("{p}/default/was-secondary"),
        key1().seal(&json_object("ws")),
    )
    .await;
    put(
        c,
        &format!("{p}/default/was-secondary"),
        key2().seal(&json_object("ws")),
    )
    .await;

    // Current objects, one per outcome.
    put(
        c,
        &format!("{p}/default/primary-json"),
        key2().seal(&json_object("b")),
    )
    .await;
    put(
        c,
        &format!("{p}/default/secondary"),
        key1().seal(&proto_object("c")),
    )
    .await;
    put(
        c,
        &format!("{p}/kube-system/unknown"),
        SecretboxKey::new("retired", &[7; 32]).seal(&proto_object("d")),
    )
    .await;
    put(
        c,
        &format!("{p}/default/wrong-material"),
        SecretboxKey::new("key1", &[9; 32]).seal(&proto_object("e")),
    )
    .await;
    put(
        c,
        &format!("{p}/default/not-an-object"),
        key2().seal(MARKER.as_bytes()),
    )
    .await;
    put(
        c,
        &format!("{p}/default/aescbc"),
        b"k8s:enc:aescbc:v1:k:0123456789abcdef0123456789abcdef".to_vec(),
    )
    .await;
    put(c, &format!("{p}/default/plain"), proto_object("plain")).await;
    // Outside the secrets range: must be ignored.
    put(c, "/registry/secretsx/default/decoy", proto_object("decoy")).await;
    put(c, "/registry/configmaps/default/cm", json_object("cm")).await;
    // A write elsewhere after everything, so the history replay must skip unrelated keys.
    put(c, "/registry/leases/kube-system/x", b"lease".to_vec()).await;
    (compact_at, plaintext_revs)
}

fn offender_outcome<'a>(report: &'a Report, path: &str) -> Option<&'a Outcome> {
    report
        .offenders
        .items
        .iter()
        .find(|o| format!("{}/{}", o.namespace.as_deref().unwrap_or(""), o.name) == path)
        .map(|o| &o.outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_history_and_compaction() {
    let Some(etcd) = Etcd::start(false) else {
        return;
    };
    let mut c = etcd.client().await;
    let (compact_at, plaintext_revs) = seed(&mut c).await;

    let opts = VerifyOptions {
        history: true,
        ..VerifyOptions::default()
    };
    let report = verify(&c, &config(), &opts).await.unwrap();
    let r = &report.resources[0];
    assert_eq!(r.etcd_prefix, "/registry/secrets/");
    assert_eq!(r.primary, "secretbox/key2");
    let counts = &r.counts;
    // primary: compacted-away, primary-proto, rotated, was-secondary, primary-json
    assert_eq!(counts.sealed_with_primary, 5, "{counts:?}");
    assert_eq!(counts.sealed_with_secondary, 1);
    assert_eq!(counts.sealed_with_unknown_key, 1);
    assert_eq!(counts.failed_to_open, 2);
    assert_eq!(counts.other_provider, 1);
    assert_eq!(counts.plaintext, 1);
    assert_eq!(counts.total(), 11);

    assert_eq!(
        offender_outcome(&report, "default/secondary"),
        Some(&Outcome::SealedWithSecondary { key: "key1".into() })
    );
    assert_eq!(
        offender_outcome(&report, "kube-system/unknown"),
        Some(&Outcome::SealedWithUnknownKey {
            key: "retired".into()
        })
    );
    assert_eq!(
        offender_outcome(&report, "default/wrong-material"),
        Some(&Outcome::FailedToOpen {
            key: "key1".into(),
            reason: FailureReason::Authentication
        })
    );
    assert_eq!(
        offender_outcome(&report, "default/not-an-object"),
        Some(&Outcome::FailedToOpen {
            key: "key2".into(),
            reason: FailureReason::NotAKubernetesObject
        })
    );
    assert_eq!(
        offender_outcome(&report, "default/aescbc"),
        Some(&Outcome::OtherProvider {
            provider: "aescbc/v1".into()
        })
    );
    assert_eq!(
        offender_outcome(&report, "default/plain"),
        Some(&Outcome::Plaintext)
    );
    assert_eq!(report.offenders.items.len(), 6);

    let h = report.history.as_ref().unwrap();
    assert_eq!(h.compaction_revision, Some(compact_at));
    assert_eq!(h.older_counts.plaintext, 2, "{h:?}");
    assert_eq!(h.older_counts.sealed_with_secondary, 1);
    let mut revs: Vec<i64> = h
        .offenders
        .items
        .iter()
        .filter(|o| o.outcome == Outcome::Plaintext)
        .map(|o| o.revision)
        .collect();
    revs.sort();
    assert_eq!(revs, plaintext_revs);
    let deleted = h
        .offenders
        .items
        .iter()
        .find(|o| o.name == "deleted")
        .unwrap();
    assert!(deleted.deleted && deleted.namespace.as_deref() == Some("gone-ns"));
    assert!(
        h.offenders.items.iter().all(|o| o.name != "compacted-away"),
        "compacted revisions are gone"
    );
    // State at the compaction revision (2 keys) + every secrets put since (5 history + 7 current).
    assert_eq!(h.revisions_scanned, 2 + 12);
    assert!(!report.ok);
    assert!(report
        .problems
        .iter()
        .any(|p| p.contains("older plaintext")));

    let text = report.to_text();
    let json = report.to_json();
    for out in [&text, &json] {
        assert!(!out.contains(MARKER), "output leaks plaintext:\n{out}");
    }
    assert_no_key_material(
        &[b64([2; 32]), b64([1; 32])],
        [("the text report", &text), ("the JSON report", &json)],
    );
    assert!(
        text.contains("default/plain") && text.contains("NOT VERIFIED"),
        "{text}"
    );
    assert!(text.contains("etcdctl compact"), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["totals"]["plaintext"], 1);
    assert_eq!(doc["history"]["compaction_revision"], compact_at);
    assert_eq!(doc["keys"]["retired"], 1);
    assert_eq!(doc["verdict"], "not-verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_store_verifies_and_history_clears_after_compaction() {
    let Some(etcd) = Etcd::start(false) else {
        return;
    };
    let mut c = etcd.client().await;
    // 1200 objects: several pages.
    for i in 0..1200 {
        put(
            &mut c,
            &format!("/registry/secrets/ns{}/s{i}", i % 7),
            key2().seal(&proto_object("x")),
        )
        .await;
    }
    // One object that used to be plaintext.
    put(
        &mut c,
        "/registry/secrets/default/late",
        json_object("late"),
    )
    .await;
    let last = put(
        &mut c,
        "/registry/secrets/default/late",
        key2().seal(&json_object("late")),
    )
    .await;

    let current = verify(&c, &config(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(current.ok, "{}", current.to_text());
    assert_eq!(current.totals.sealed_with_primary, 1201);
    assert!(current.history.is_none());

    let opts = VerifyOptions {
        history: true,
        ..VerifyOptions::default()
    };
    let before = verify(&c, &config(), &opts).await.unwrap();
    assert!(!before.ok);
    let h = before.history.as_ref().unwrap();
    assert_eq!(h.compaction_revision, None, "never compacted");
    assert_eq!(h.older_counts.plaintext, 1);
    assert_eq!(h.revisions_scanned, 1202);

    c.compact(last, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let after = verify(&c, &config(), &opts).await.unwrap();
    assert!(after.ok, "{}", after.to_text());
    assert_eq!(
        after.history.as_ref().unwrap().compaction_revision,
        Some(last)
    );
    assert!(after.to_text().contains("VERIFIED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_prefix_and_group_resources() {
    let Some(etcd) = Etcd::start(false) else {
        return;
    };
    let mut c = etcd.client().await;
    let mut cfg = config();
    cfg.resources[0]
        .resources
        .push("widgets.example.com".into());
    put(
        &mut c,
        "/kubernetes.io/secrets/a/b",
        key2().seal(&proto_object("b")),
    )
    .await;
    put(
        &mut c,
        "/kubernetes.io/example.com/widgets/a/w",
        json_object("w"),
    )
    .await;
    put(
        &mut c,
        "/registry/secrets/a/ignored",
        json_object("ignored"),
    )
    .await;
    let opts = VerifyOptions {
        prefix: "/kubernetes.io/".into(),
        ..VerifyOptions::default()
    };
    let report = verify(&c, &cfg, &opts).await.unwrap();
    assert_eq!(report.resources.len(), 2);
    assert_eq!(report.resources[0].counts.sealed_with_primary, 1);
    assert_eq!(
        report.resources[1].etcd_prefix,
        "/kubernetes.io/example.com/widgets/"
    );
    assert_eq!(report.resources[1].counts.plaintext, 1);
    assert_eq!(report.offenders.items[0].name, "w");

    // Only the resource asked for.
    let only = VerifyOptions {
        resources: vec!["secrets".into()],
        ..opts
    };
    assert!(verify(&c, &cfg, &only).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let Some(etcd) = Etcd::start(true) else {
        return;
    };
    let mut c = etcd.client().await;
    put(
        &mut c,
        "/registry/secrets/default/a",
        key2().seal(&proto_object("a")),
    )
    .await;
    let report = verify(
        &c,
        &config(),
        &VerifyOptions {
            history: true,
            ..VerifyOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.ok, "{}", report.to_text());

    // Without a client certificate etcd refuses the connection: a clear error, no panic.
    let mut target = etcd.target();
    target.cert_file = None;
    target.key_file = None;
    target.timeout = Some(std::time::Duration::from_secs(3));
    let err = eargate_storage::etcd::connect(&target)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("cannot reach etcd"), "{err}");
    // https without a CA is refused before connecting.
    target.ca_file = None;
    let err = eargate_storage::etcd::connect(&target)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("--cacert"), "{err}");
}

/// A config with one entry: `resources` sealed by secretbox [key2, key1], then identity.
fn config_for(resources: &[&str]) -> EncryptionConfig {
    let mut cfg = config();
    cfg.resources[0].resources = resources.iter().map(|r| r.to_string()).collect();
    cfg
}

fn checked(report: &Report) -> Vec<(&str, &str)> {
    report
        .resources
        .iter()
        .map(|r| (r.resource.as_str(), r.etcd_prefix.as_str()))
        .collect()
}

fn counts<'a>(report: &'a Report, resource: &str) -> &'a eargate_storage::report::Counts {
    &report
        .resources
        .iter()
        .find(|r| r.resource == resource)
        .unwrap_or_else(|| panic!("{resource} checked: {:?}", checked(report)))
        .counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_expand_from_the_etcd_keyspace() {
    let Some(etcd) = Etcd::start(false) else {
        return;
    };
    let mut c = etcd.client().await;
    let sealed = |name: &str| key2().seal(&proto_object(name));
    for (key, value) in [
        // Core resources, two of them under historic prefixes.
        ("/registry/secrets/default/s1", sealed("s1")),
        ("/registry/secrets/kube-system/s2", sealed("s2")),
        ("/registry/configmaps/default/c1", json_object("c1")),
        ("/registry/services/specs/default/svc", sealed("svc")),
        (
            "/registry/services/endpoints/default/svc",
            json_object("ep"),
        ),
        ("/registry/minions/node-1", sealed("node-1")),
        // Built-in group resources are stored under their plain name.
        ("/registry/deployments/default/d", sealed("d")),
        ("/registry/leases/kube-system/l", json_object("l")),
        // Custom resources under <group>/<resource>.
        ("/registry/example.com/widgets/w1", sealed("w1")),
        ("/registry/example.com/gadgets/default/g", json_object("g")),
        // No resources: allocation bitmaps, endpoint leases, a bare key.
        ("/registry/ranges/serviceips", json_object("range")),
        ("/registry/masterleases/10.0.0.1", json_object("lease")),
        ("/registry/health", json_object("health")),
        // A resource of a group this eargate does not know.
        ("/registry/somethingnew/x", json_object("x")),
        // Outside the prefix.
        ("/other/secrets/default/o", json_object("o")),
    ] {
        put(&mut c, key, value).await;
    }

    // `*.`: every core resource found, whatever its directory.
    let opts = VerifyOptions {
        history: true,
        ..VerifyOptions::default()
    };
    let report = verify(&c, &config_for(&["*."]), &opts).await.unwrap();
    assert_eq!(
        checked(&report),
        [
            ("configmaps", "/registry/configmaps/"),
            ("nodes", "/registry/minions/"),
            ("secrets", "/registry/secrets/"),
            ("endpoints", "/registry/services/endpoints/"),
            ("services", "/registry/services/specs/"),
        ]
    );
    assert_eq!(counts(&report, "secrets").sealed_with_primary, 2);
    assert_eq!(counts(&report, "configmaps").plaintext, 1);
    assert_eq!(counts(&report, "endpoints").plaintext, 1);
    assert_eq!(report.totals.total(), 6);
    assert!(!report.ok);
    assert!(report.history.is_some());
    let text = report.to_text();
    assert!(
        text.contains(
            "note: *. expanded from the etcd keyspace to: configmaps, nodes, secrets, endpoints, services"
        ),
        "{text}"
    );
    assert!(
        text.contains("not checked: /registry/somethingnew/"),
        "{text}"
    );
    assert!(!text.contains(MARKER) && !report.to_json().contains(MARKER));

    // `*.apps`: the built-in apps resources, stored under their plain names.
    let report = verify(&c, &config_for(&["*.apps"]), &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        checked(&report),
        [("deployments.apps", "/registry/deployments/")]
    );
    assert!(report.ok, "{}", report.to_text());

    // `*.<group>` of custom resources, next to a named resource.
    let report = verify(
        &c,
        &config_for(&["secrets", "*.example.com"]),
        &VerifyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        checked(&report),
        [
            ("secrets", "/registry/secrets/"),
            ("gadgets.example.com", "/registry/example.com/gadgets/"),
            ("widgets.example.com", "/registry/example.com/widgets/"),
        ]
    );
    assert_eq!(counts(&report, "gadgets.example.com").plaintext, 1);
    assert_eq!(
        counts(&report, "widgets.example.com").sealed_with_primary,
        1
    );

    // `*.*`: every resource, the unknown one included; never the bitmaps or leases.
    let report = verify(&c, &config_for(&["*.*"]), &VerifyOptions::default())
        .await
        .unwrap();
    let names: Vec<&str> = checked(&report).iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "configmaps",
            "deployments.apps",
            "gadgets.example.com",
            "widgets.example.com",
            "leases.coordination.k8s.io",
            "nodes",
            "secrets",
            "endpoints",
            "services",
            "somethingnew",
        ]
    );
    assert_eq!(report.totals.total(), 11);
    assert_eq!(report.totals.plaintext, 5);
    assert!(report.offenders.items.iter().all(|o| o.name != "serviceips"
        && o.name != "10.0.0.1"
        && o.name != "health"
        && o.name != "o"));

    // A wildcard given with --resources reaches only what the config covers.
    let only = VerifyOptions {
        resources: vec!["*.apps".into(), "secrets".into()],
        ..VerifyOptions::default()
    };
    let report = verify(&c, &config_for(&["secrets"]), &only).await.unwrap();
    assert_eq!(checked(&report), [("secrets", "/registry/secrets/")]);
    assert!(report.ok, "{}", report.to_text());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("does not cover them: deployments.apps")),
        "{:?}",
        report.notes
    );

    // A group with nothing stored: nothing to prove, and said so.
    let report = verify(&c, &config_for(&["*.batch"]), &opts).await.unwrap();
    assert!(report.resources.is_empty());
    assert!(report.ok);
    assert!(
        report.notes[0].contains("*.batch matched no resource stored under /registry/"),
        "{:?}",
        report.notes
    );

    // Under another prefix, the same layout is found there.
    let report = verify(
        &c,
        &config_for(&["*."]),
        &VerifyOptions {
            prefix: "/other".into(),
            ..VerifyOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(checked(&report), [("secrets", "/other/secrets/")]);

    // A wildcard kube-apiserver refuses is bad input, before any read.
    let err = verify(&c, &config_for(&["*"]), &VerifyOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not a wildcard kube-apiserver accepts"),
        "{err}"
    );
}
