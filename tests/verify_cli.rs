//! `eargate verify` as a user runs it, against a real etcd: exit codes 0/1/2, text and JSON
//! output, and no plaintext or key material in anything it prints.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

#[path = "../crates/storage/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use eargate_storage::SecretboxKey;
use eargate_testkit::secrets::{assert_no_key_material, b64};
use support::{Etcd, EtcdExt as _};

const MARKER: &str = "TOPSECRET-PLAINTEXT-MARKER";

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("encryption-config.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
             - resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n\
             \x20     - name: key2\n        secret: {}\n      - name: key1\n        secret: {}\n  - identity: {{}}\n",
            b64([2; 32]),
            b64([1; 32])
        ),
    )
    .unwrap();
    path
}

fn eargate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eargate"))
        .arg("verify")
        .args(args)
        .output()
        .expect("run eargate")
}

/// Neither the plaintext nor any piece of the three keys in what `eargate verify` printed.
fn assert_no_leak(out: &Output) {
    let texts = [("stdout", &out.stdout), ("stderr", &out.stderr)]
        .map(|(what, bytes)| (what, String::from_utf8_lossy(bytes).into_owned()));
    for (_, text) in &texts {
        assert!(!text.contains(MARKER), "plaintext leaked:\n{text}");
    }
    assert_no_key_material(&[b64([1; 32]), b64([2; 32]), b64([3; 32])], texts);
}

#[test]
fn exit_codes_outputs_and_no_leaks() {
    let Some(etcd) = Etcd::start(false) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = etcd.client().await;
        let k2 = SecretboxKey::new("key2", &[2; 32]);
        let k1 = SecretboxKey::new("key1", &[1; 32]);
        let obj = format!(r#"{{"kind":"Secret","data":{{"a":"{MARKER}"}}}}"#);
        c.put(
            "/registry/secrets/default/ok",
            k2.seal(obj.as_bytes()),
            None,
        )
        .await
        .unwrap();
        c.put(
            "/registry/secrets/default/old-key",
            k1.seal(obj.as_bytes()),
            None,
        )
        .await
        .unwrap();
        c.put("/registry/secrets/default/plain", obj.clone(), None)
            .await
            .unwrap();
        c.put("/clean/secrets/default/plain-before", obj.clone(), None)
            .await
            .unwrap();
        c.put(
            "/clean/secrets/default/plain-before",
            k2.seal(obj.as_bytes()),
            None,
        )
        .await
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let config = config.to_str().unwrap();
    let ep = etcd.endpoint.as_str();

    // Not everything sealed with the primary key: exit 1, offenders by namespace/name.
    let out = eargate(&["--etcd-endpoints", ep, "--encryption-config", config]);
    assert_eq!(out.status.code(), Some(1));
    assert_no_leak(&out);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("secrets default/plain") && text.contains("plaintext"),
        "{text}"
    );
    assert!(text.contains("sealed-with-secondary (key1)"), "{text}");
    assert!(text.contains("NOT VERIFIED"), "{text}");

    // JSON with history.
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        config,
        "--history",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_no_leak(&out);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["totals"]["plaintext"], 1);
    assert_eq!(doc["totals"]["sealed-with-secondary"], 1);
    assert_eq!(
        doc["history"]["compaction_revision"],
        serde_json::Value::Null
    );

    // Another prefix where every current object is sealed with the primary key: exit 0,
    // but the older plaintext revision fails --history.
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        config,
        "--prefix",
        "/clean",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        config,
        "--prefix",
        "/clean",
        "--history",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("default/plain-before") && text.contains("etcdctl compact"),
        "{text}"
    );
    assert_no_leak(&out);

    // Unreachable etcd: exit 2 with a clear message.
    let out = eargate(&[
        "--etcd-endpoints",
        "http://127.0.0.1:1",
        "--encryption-config",
        config,
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: cannot reach etcd at http://127.0.0.1:1 (--etcd-endpoints)")
            && !err.contains("MetadataMap"),
        "{err}"
    );

    // Bad key material: exit 2, names the key, never shows the material.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: short\n        secret: {}\n",
            b64([3; 16])
        ),
    )
    .unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"short\"") && err.contains("32"), "{err}");
    assert_no_key_material(&[b64([3; 16])], [("stderr", &err)]);

    // Not YAML: exit 2, no echo of the file's content.
    std::fs::write(&bad, format!("resources: [{{secret: {}", b64([3; 32]))).unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_no_leak(&out);

    // A wildcard config is expanded from the etcd keyspace (no --resources needed): here
    // `*.*` with identity first finds the Secrets, which it would not seal.
    std::fs::write(&bad, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*.*']\n  providers:\n  - identity: {}\n").unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        ep,
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_leak(&out);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("note: *.* expanded from the etcd keyspace to: secrets"),
        "{text}"
    );
    assert!(
        text.contains("secrets: the config's first provider is identity"),
        "{text}"
    );

    // A wildcard kube-apiserver refuses is bad input: exit 2 before connecting.
    std::fs::write(&bad, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*']\n  providers:\n  - identity: {}\n").unwrap();
    let out = eargate(&[
        "--etcd-endpoints",
        "http://127.0.0.1:1",
        "--encryption-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a wildcard kube-apiserver accepts") && !err.contains("cannot reach"),
        "{err}"
    );
}

/// `--termination-message-path`: the per-key summary a storage-scan Job hands back — what
/// still needs each key, current objects and older revisions — within 4096 bytes, key names
/// only.
#[test]
fn termination_message_counts_what_each_key_still_seals() {
    let Some(etcd) = Etcd::start(false) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = etcd.client().await;
        let k2 = SecretboxKey::new("key2", &[2; 32]);
        let k1 = SecretboxKey::new("key1", &[1; 32]);
        let obj = format!(r#"{{"kind":"Secret","data":{{"a":"{MARKER}"}}}}"#);
        // Rewritten from key1 to key2: its older revision is still sealed with key1.
        c.put("/registry/secrets/default/a", k1.seal(obj.as_bytes()), None)
            .await
            .unwrap();
        c.put("/registry/secrets/default/a", k2.seal(obj.as_bytes()), None)
            .await
            .unwrap();
        // Still sealed with key1 now.
        c.put("/registry/secrets/default/b", k1.seal(obj.as_bytes()), None)
            .await
            .unwrap();
        c.put("/registry/secrets/default/c", k2.seal(obj.as_bytes()), None)
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let message = dir.path().join("termination-log");
    let run = |history: bool| {
        let mut args = vec![
            "--etcd-endpoints",
            etcd.endpoint.as_str(),
            "--encryption-config",
            config.to_str().unwrap(),
            "--termination-message-path",
            message.to_str().unwrap(),
        ];
        if history {
            args.push("--history");
        }
        let out = eargate(&args);
        assert_eq!(out.status.code(), Some(1), "key1 still seals data");
        assert_no_leak(&out);
        let text = std::fs::read_to_string(&message).unwrap();
        assert!(text.len() <= 4096, "{text}");
        assert_no_leak(&Output {
            status: out.status,
            stdout: text.clone().into_bytes(),
            stderr: Vec::new(),
        });
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let current = run(false);
    assert_eq!(current["history"], false);
    assert_eq!(current["keys"]["key1"], serde_json::json!({"objects": 1}));
    assert_eq!(current["keys"]["key2"], serde_json::json!({"objects": 2}));
    let with_history = run(true);
    assert_eq!(with_history["ok"], false);
    assert_eq!(with_history["history"], true);
    assert_eq!(
        with_history["keys"]["key1"],
        serde_json::json!({"objects": 1, "olderRevisions": 1})
    );
    assert_eq!(
        with_history["keys"]["key2"],
        serde_json::json!({"objects": 2, "olderRevisions": 0})
    );
    assert!(with_history["etcdRevision"].as_i64().unwrap() >= 4);
    // As a storage-scan Job runs it: the summary is the result, so it exits 0 once etcd was
    // read, whatever the verdict; an unreachable etcd is still 2.
    let mut args = vec![
        "--etcd-endpoints",
        etcd.endpoint.as_str(),
        "--encryption-config",
        config.to_str().unwrap(),
        "--history",
        "--verdict-exit-code=false",
        "--termination-message-path",
        message.to_str().unwrap(),
    ];
    let out = eargate(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = eargate_policy::storage_scan::KeySummary::parse(
        &std::fs::read_to_string(&message).unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary.use_of("key1"),
        eargate_policy::storage_scan::KeyVerdict::InUse {
            objects: 1,
            older_revisions: 1
        }
    );
    args[1] = "http://127.0.0.1:1";
    args.extend(["--timeout", "2s"]);
    assert_eq!(eargate(&args).status.code(), Some(2));
}
