//! Target: deciding a typical UPDATE review (~6 KB Cluster, old and new) including
//! JSON decode and encode costs no more than 2x a bare `serde_json::from_slice::<Value>` of
//! the same review. Run: `cargo bench -p eargate-policy --bench review`.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eargate_policy::{review, PolicyConfig, Webhook};
use serde_json::{json, Value};

fn example(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The review kube-apiserver sends when a user adds a secondary key (compact JSON, as sent).
fn update_review() -> Vec<u8> {
    let old = example("cluster-active.yaml");
    let new = example("rotation-1-add-secondary.yaml");
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "kubermatic.k8c.io", "version": "v1", "kind": "Cluster"},
            "resource": {"group": "kubermatic.k8c.io", "version": "v1", "resource": "clusters"},
            "name": "zt7q9h2mxk",
            "operation": "UPDATE",
            "userInfo": {"username": "jane@example.com", "groups": ["system:authenticated"]},
            "object": new,
            "oldObject": old,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
        }
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let body = update_review();
    let config = PolicyConfig::default();
    // Sanity: the benchmarked review is decided (allowed, with the secondary-key warning).
    let r = review(Webhook::Validate, &body, &config).unwrap();
    assert!(r.summary.allowed && r.summary.warnings > 0);

    let mut g = c.benchmark_group("update_review");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("baseline_from_slice_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&body)).unwrap()))
    });
    g.bench_function("validate", |b| {
        b.iter(|| black_box(review(Webhook::Validate, black_box(&body), &config).unwrap()))
    });
    g.bench_function("mutate", |b| {
        b.iter(|| black_box(review(Webhook::Mutate, black_box(&body), &config).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
