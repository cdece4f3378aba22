//! Properties of the policy over generated edits:
//! 1. any configuration the policy accepts renders an EncryptionConfiguration kube-apiserver loads;
//! 2. any accepted UPDATE keeps the key named by `activeKey` unless the configuration is removed;
//! 3. mutation output is accepted by the resource rules and its patch applies.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use eargate_policy::apiserver_config::{EncryptionConfig, Provider, ProviderKey, ResourceConfig};
use eargate_policy::validate_resources;
use eargate_testkit::fixtures::key_ref;
use eargate_testkit::fixtures::ClusterFixture;
use eargate_testkit::webhooks::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const RESOURCE_POOL: &[&str] = &[
    "secrets",
    "configmaps",
    "deployments.apps",
    "*.apps",
    "*.",
    "*.*",
    "*",
    "Secrets",
    " secrets ",
    "events",
    "events.events.k8s.io",
    "ingresses.extensions",
    "secrets.*",
    "serviceipallocations",
    "",
    "widgets.example.com",
];
const VALID_RESOURCES: &[&str] = &[
    "secrets",
    "configmaps",
    "deployments.apps",
    "widgets.example.com",
    " Secrets",
];
const NAME_POOL: &[&str] = &[
    "k1",
    "k2",
    "k3",
    "k4",
    "k5",
    "k6",
    "k7",
    "k8",
    "key-2024.01",
    "k_9",
    "a:b",
    "",
];
const VALUE_POOL: &[&str] = &[KEY_A, KEY_B, KEY_A, KEY_B, KEY_16, "not base64!", "QUJD"];

fn key_strategy() -> impl Strategy<Value = Value> {
    // Mostly well-formed keys, so that accepted configurations are common (see
    // `the_generators_reach_accepted_configurations`), with every kind of mistake mixed in.
    (
        prop::sample::select(NAME_POOL),
        0..10usize,
        prop::sample::select(VALUE_POOL),
    )
        .prop_map(|(name, kind, value)| match kind {
            0..=3 => json!({"name": name, "value": value}),
            4..=7 => {
                json!({"name": name, "secretRef": {"name": format!("s-{name}"), "key": "key"}})
            }
            8 => json!({"name": name, "value": value, "secretRef": {"name": "s", "key": "key"}}),
            _ => json!({"name": name, "secretRef": {"name": "", "key": "key"}}),
        })
}

/// Guards property 1 against passing vacuously: the generators must reach accepted,
/// enabled configurations often enough.
#[test]
fn the_generators_reach_accepted_configurations() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (prop::bool::weighted(0.8), config_strategy());
    let mut accepted = 0;
    for _ in 0..300 {
        let (feature, config) = strategy.new_tree(&mut runner).unwrap().current();
        let new = cluster(feature, config, None);
        let r = create(&new);
        let object = r.patched_object.clone().unwrap_or(new);
        if r.allowed() && object["spec"]["encryptionConfiguration"]["enabled"] == json!(true) {
            accepted += 1;
        }
    }
    assert!(
        accepted >= 20,
        "only {accepted} of 300 generated configurations were accepted and enabled"
    );
}

fn config_strategy() -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(
        0.9,
        (
            prop::bool::weighted(0.75),
            prop_oneof![
                3 => Just(None),
                3 => prop::collection::vec(prop::sample::select(VALID_RESOURCES), 1..3).prop_map(Some),
                4 => prop::collection::vec(prop::sample::select(RESOURCE_POOL), 0..4).prop_map(Some),
            ],
            prop::option::weighted(0.9, prop::collection::vec(key_strategy(), 1..4)),
        )
            .prop_map(|(enabled, resources, keys)| {
                let mut c = json!({"enabled": enabled});
                if let Some(r) = resources {
                    c["resources"] = json!(r);
                }
                if let Some(k) = keys {
                    c["secretbox"] = json!({"keys": k});
                }
                c
            }),
    )
}

fn cluster(feature: bool, config: Option<Value>, status: Option<Value>) -> Value {
    let mut c = ClusterFixture::from_value(plain()).feature_gate(feature);
    if let Some(cfg) = config {
        c = c.set("/spec/encryptionConfiguration", cfg);
    }
    if let Some(s) = status {
        c = c.set("/status/encryption", s);
    }
    c.build()
}

/// What the reconciler would render for an (already defaulted) enabled configuration.
/// Keys given by secretRef get placeholder material of the right size: the Secret's
/// content is checked by the reconciler when it reads it.
fn render(object: &Value) -> EncryptionConfig {
    let cfg = &object["spec"]["encryptionConfiguration"];
    let resources: Vec<String> =
        serde_json::from_value(cfg["resources"].clone()).unwrap_or_default();
    let keys = cfg["secretbox"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| ProviderKey {
            name: k["name"].as_str().unwrap().to_owned(),
            secret: k["value"].as_str().unwrap_or(KEY_B).to_owned(),
        })
        .collect();
    EncryptionConfig::new(vec![ResourceConfig {
        resources,
        providers: vec![Provider::secretbox(keys), Provider::identity()],
    }])
}

/// 300 cases, or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn accepted_configurations_load_in_kube_apiserver(feature in prop::bool::weighted(0.8), config in config_strategy()) {
        let new = cluster(feature, config, None);
        let r = create(&new);
        if r.allowed() {
            let object = r.patched_object.clone().unwrap_or(new);
            if object["spec"]["encryptionConfiguration"]["enabled"] == json!(true) {
                let rendered = render(&object);
                let problems = rendered.validate();
                prop_assert!(problems.is_empty(), "accepted but kube-apiserver refuses: {:?}", problems);
            }
        }
    }

    #[test]
    fn accepted_updates_keep_the_active_key(
        old_keys in prop::collection::vec(prop::sample::select(&["k1", "k2", "k3"][..]), 1..4),
        new_keys in prop::collection::vec(prop::sample::select(&["k1", "k2", "k3", "k4"][..]), 0..4),
        old_enabled in any::<bool>(),
        new_enabled in any::<bool>(),
        remove_config in prop::bool::weighted(0.15),
        phase in prop::sample::select(&["Pending", "EncryptionNeeded", "Active", "Failed", "Weird"][..]),
        active_index in 0..4usize,
        has_status in prop::bool::weighted(0.85),
    ) {
        let keys = |names: &[&str]| -> Value {
            let mut seen = Vec::new();
            Value::from(names.iter().filter(|n| { let fresh = !seen.contains(*n); seen.push(**n); fresh }).map(|n| key_ref(n, n, "key")).collect::<Vec<_>>())
        };
        let active_key = old_keys.get(active_index).map(|n| format!("secretbox/{n}")).unwrap_or_else(|| "identity".into());
        let status_v = has_status.then(|| status(phase, &active_key));
        let old = cluster(true, Some(json!({"enabled": old_enabled, "resources": ["secrets"], "secretbox": {"keys": keys(&old_keys)}})), status_v.clone());
        let new_cfg = (!remove_config).then(|| json!({"enabled": new_enabled, "resources": ["secrets"], "secretbox": {"keys": keys(&new_keys)}}));
        let new = cluster(true, new_cfg, status_v);
        let r = update(&old, &new);
        if r.allowed() && !remove_config {
            if let Some(name) = active_key.strip_prefix("secretbox/") {
                prop_assert!(new_keys.contains(&name), "accepted removal of the active key {}: {:?} -> {:?}", name, old_keys, new_keys);
            }
        }
    }

    #[test]
    fn mutation_output_passes_resource_rules_and_patch_applies(
        picks in prop::collection::vec((prop::sample::select(&["secrets", "configmaps", "deployments.apps", "widgets.example.com", "events", "leases.coordination.k8s.io"][..]), any::<bool>(), any::<bool>()), 0..6),
        omit in prop::bool::weighted(0.2),
    ) {
        let resources: Vec<String> = picks
            .iter()
            .map(|(r, upper, pad)| {
                let r = if *upper { r.to_uppercase() } else { r.to_string() };
                if *pad { format!("  {r} ") } else { r }
            })
            .collect();
        let mut cfg = json!({"enabled": true, "secretbox": {"keys": [key_ref("k1", "k1", "key")]}});
        if !omit {
            cfg["resources"] = json!(resources);
        }
        let new = cluster(true, Some(cfg), None);
        let r = create(&new);
        prop_assert!(r.mutated.reviewed.summary.allowed);
        let object = r.patched_object.clone().unwrap_or_else(|| new.clone());
        let out: Vec<String> = serde_json::from_value(object["spec"]["encryptionConfiguration"]["resources"].clone()).unwrap();
        prop_assert!(validate_resources(&out).is_empty(), "{:?} -> {:?}", resources, out);
        // The patch touches nothing outside spec.encryptionConfiguration.
        let mut outside_new = new.clone();
        let mut outside_obj = object.clone();
        remove(&mut outside_new, "/spec/encryptionConfiguration");
        remove(&mut outside_obj, "/spec/encryptionConfiguration");
        prop_assert_eq!(outside_new, outside_obj);
        prop_assert!(r.allowed(), "{:?}", r.validated.message);
    }
}
