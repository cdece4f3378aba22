//! eargate's webhook as the real kube-apiserver calls it, and as the real kubectl shows it.
//!
//! One control plane (etcd + kube-apiserver, built from the pinned Go modules) for this test
//! binary. The chart is rendered by Helm's engine; its CRD, RBAC and both webhook
//! configurations are applied as they are, with one change: each webhook's `clientConfig`
//! names a locally running `eargate serve` by URL, with that server's CA as `caBundle`.
//! `eargate serve` runs with the arguments of the chart's webhook Deployment.
//!
//! Three gates run: `main` (the chart's configurations, matching every Cluster), and two
//! that only see Clusters labelled for them (`fail-closed`, `rotation`), so that stopping
//! or re-keying one does not disturb the other tests.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use eargate_testkit::chart;
use eargate_testkit::fixtures::{active, encryption_status, ClusterFixture};
use eargate_testkit::gate::{webhook_args, webhooks_pointed_at, Gate};
use eargate_testkit::rollout::kubectl_stdin;
use eargate_testkit::secrets::{assert_no_key_material, b64, test_key};
use eargate_testkit::{ControlPlane, Identity};
use serde_json::{json, Value};

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const RELEASE: &str = "eargate";
const NAMESPACE: &str = "eargate-system";
/// The label that routes a Cluster to one of the extra gates.
const GATE_LABEL: &str = "eargate.test/gate";

struct World {
    cp: &'static ControlPlane,
    main: Gate,
    /// Rendered with release `eargate-fc`; stopped by the fail-closed test.
    fail_closed: Mutex<Gate>,
    rotation: Gate,
    /// The chart's reconciler ServiceAccount, with a token from TokenRequest.
    reconciler: PathBuf,
}

/// A user allowed by RBAC to do anything with Clusters (and their status): whatever is
/// denied to her is denied by eargate.
fn jane() -> Identity {
    Identity::user("jane@example.com", &["platform-team"])
}

static WORLD: OnceLock<Option<World>> = OnceLock::new();

fn world() -> Option<&'static World> {
    WORLD.get_or_init(build_world).as_ref()
}

fn build_world() -> Option<World> {
    let cp = ControlPlane::shared()?;
    let began = Instant::now();
    let objects = chart::install_crd_and_rbac(cp, RELEASE, NAMESPACE)?;
    // Every other object the chart renders passes kube-apiserver's own validation.
    let rest: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
        .cloned()
        .collect();
    dry_run_apply(cp, &rest);

    // Jane may do anything with Clusters, so that her denials are eargate's.
    cp.apply(&[
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "cluster-editor"},
               "rules": [{"apiGroups": ["kubermatic.k8c.io"], "resources": ["clusters", "clusters/status"], "verbs": ["*"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "cluster-editor-platform-team"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-editor"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "platform-team"}]}),
    ]);

    let args = {
        let mut a = webhook_args(&objects);
        // Text stays JSON (the chart's default), read by the protocol test.
        a.retain(|x| !x.starts_with("--log-format"));
        a.push("--log-format=json".to_owned());
        a
    };
    let main = Gate::start(EARGATE.as_ref(), cp.dir(), "main", &args);
    cp.apply(&webhooks_pointed_at(&objects, &main));

    let gate_for = |name: &str, release: &str| {
        let values = json!({"webhook": {"objectSelector": {"matchLabels": {GATE_LABEL: name}}}});
        let objects = chart::render(&values, release, NAMESPACE).expect("chart rendered above");
        let gate = Gate::start(EARGATE.as_ref(), cp.dir(), name, &args);
        cp.apply(&webhooks_pointed_at(&objects, &gate));
        gate
    };
    let fail_closed = gate_for("fail-closed", "eargate-fc");
    let rotation = gate_for("rotation", "eargate-rot");

    let reconciler = cp.service_account_kubeconfig(NAMESPACE, "eargate-reconciler");
    let world = World {
        cp,
        main,
        fail_closed: Mutex::new(fail_closed),
        rotation,
        reconciler,
    };
    world.wait_until_gates_answer();
    eprintln!(
        "k8s_webhook: world ready in {:.1} s (control plane started in {:.1} s)",
        began.elapsed().as_secs_f64(),
        cp.started_in.as_secs_f64()
    );
    Some(world)
}

/// `kubectl apply --dry-run=server` of `objects`: kube-apiserver validates each one (its
/// schema, its admission) without storing it.
fn dry_run_apply(cp: &ControlPlane, objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = kubectl_stdin(
        cp.kubectl(&Identity::admin())
            .args(["apply", "--dry-run=server", "-f", "-"]),
        &list.to_string(),
    );
    assert!(
        out.status.success(),
        "kube-apiserver refused an object of the chart: {}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&out).lines().count(),
        objects.len(),
        "{}",
        stdout(&out)
    );
}

impl World {
    /// kube-apiserver learns new webhook configurations from a watch; wait until each gate
    /// judges a Cluster (a dry-run create that EAR001 denies).
    fn wait_until_gates_answer(&self) {
        for gate in ["main", "fail-closed", "rotation"] {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let probe = cluster(&format!("probe-{gate}"))
                    .label(GATE_LABEL, gate)
                    .without_feature_gate()
                    .key("k1", &test_key(1))
                    .build();
                let out = self.kubectl_stdin(
                    &Identity::admin(),
                    &["create", "--dry-run=server", "-f", "-"],
                    &probe,
                );
                if stderr(&out).contains("EAR001") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "gate {gate} never judged a Cluster: {}",
                    stderr(&out)
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    fn kubectl_stdin(&self, who: &Identity, args: &[&str], object: &Value) -> Output {
        kubectl_stdin(
            self.cp.kubectl(who).args(args),
            // JSON, not YAML: kubectl reads YAML 1.1, where a bare `yes` is a boolean.
            &object.to_string(),
        )
    }

    /// `kubectl apply -f -` as `who`.
    fn apply(&self, who: &Identity, object: &Value) -> Output {
        self.kubectl_stdin(who, &["apply", "-f", "-"], object)
    }

    /// Creates `object` as the admin (it must be allowed) and, when given, writes
    /// `status.encryption` as the reconciler's ServiceAccount.
    fn stored(&self, object: &Value, encryption: Option<Value>) {
        let out = self.apply(&Identity::admin(), object);
        assert!(out.status.success(), "create: {}", stderr(&out));
        if let Some(encryption) = encryption {
            let name = object["metadata"]["name"].as_str().expect("a name");
            let out = self.patch_status(&self.reconciler, name, json!({"encryption": encryption}));
            assert!(out.status.success(), "status: {}", stderr(&out));
        }
    }

    fn patch_status(&self, kubeconfig: &std::path::Path, name: &str, status: Value) -> Output {
        let patch = json!({ "status": status }).to_string();
        self.cp
            .kubectl_with(kubeconfig)
            .args([
                "patch",
                "cluster",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ])
            .output()
            .expect("run kubectl")
    }

    /// `kubectl patch cluster NAME --type=merge -p PATCH` as `who`.
    fn patch(&self, who: &Identity, name: &str, patch: Value) -> Output {
        self.cp
            .kubectl(who)
            .args([
                "patch",
                "cluster",
                name,
                "--type=merge",
                "-p",
                &patch.to_string(),
            ])
            .output()
            .expect("run kubectl")
    }

    /// `kubectl edit cluster NAME` as `who`, with an `EDITOR` that runs `sed -i -e SCRIPT`.
    fn edit(&self, who: &Identity, name: &str, sed: &str) -> Output {
        let editor = self.cp.dir().join(format!("editor-{name}.sh"));
        std::fs::write(
            &editor,
            format!("#!/bin/sh\nexec sed -i -e '{sed}' \"$1\"\n"),
        )
        .expect("write the editor script");
        let chmod = Command::new("chmod").arg("+x").arg(&editor).status();
        assert!(chmod.is_ok_and(|s| s.success()));
        self.cp
            .kubectl(who)
            .env("EDITOR", &editor)
            .args(["edit", "cluster", name, "--output=yaml"])
            .output()
            .expect("run kubectl")
    }

    fn get(&self, name: &str) -> Value {
        let out = self
            .cp
            .kubectl_ok(&Identity::admin(), &["get", "cluster", name, "-o", "json"]);
        serde_json::from_slice(&out.stdout).expect("kubectl prints JSON")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A Cluster of these tests: encryption enabled for secrets, no keys yet. The empty
/// `labels` stay: `kubectl apply` echoes the object in the denials kept in
/// `docs/kubectl-denials/`.
fn cluster(name: &str) -> ClusterFixture {
    ClusterFixture::new(name)
        .set("/metadata/labels", json!({}))
        .human_readable_name(&format!("{name} (eargate e2e)"))
        .version("1.33.2")
        .encryption(["secrets"])
}

/// kubectl's stderr for a denial, checked for what every denial must carry.
fn denied(out: &Output, rule: &str, must_contain: &[&str], keys: &[&str]) -> String {
    let text = stderr(out);
    assert!(
        !out.status.success(),
        "expected a denial by {rule}, kubectl succeeded: {}{text}",
        stdout(out)
    );
    assert!(
        text.contains("admission webhook \"validate.eargate.k8c.io\" denied the request")
            || text.contains("admission webhook \"mutate.eargate.k8c.io\" denied the request"),
        "not an eargate denial: {text}"
    );
    assert!(
        text.contains(&format!("[{rule}]")),
        "no [{rule}] in: {text}"
    );
    for part in must_contain {
        assert!(
            text.contains(part),
            "{part:?} missing from the denial: {text}"
        );
    }
    assert_no_key_material(keys, [("kubectl's denial", &text)]);
    record_denial(rule, &text);
    text
}

/// kubectl's real outputs, one per rule, kept in `docs/kubectl-denials/` (and shown in
/// `docs/rules.md`). `EARGATE_BLESS=1` rewrites them; otherwise they must match.
fn record_denial(rule: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/kubectl-denials")
        .join(format!("{rule}.txt"));
    let text = format!("$ {}\n{}", command_for(rule), stable(text.trim_end()));
    if std::env::var_os("EARGATE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the dir");
        std::fs::write(&path, format!("{text}\n")).expect("write the denial");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        want.trim_end(),
        text,
        "{} differs from what kubectl printed; rerun with EARGATE_BLESS=1 and commit it",
        path.display()
    );
}

/// `text` with what changes from run to run (kubectl edit's temporary file) made stable.
fn stable(text: &str) -> String {
    const EDIT_FILE: &str = "/tmp/kubectl-edit-";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(EDIT_FILE) {
        let after = &rest[at + EDIT_FILE.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&rest[..at]);
        out.push_str(EDIT_FILE);
        out.push_str("NNNN");
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The command each recorded denial came from, as a user would type it.
fn command_for(rule: &str) -> &'static str {
    match rule {
        "EAR000" => "kubectl apply -f cluster.yaml   # enabled: \"yes\"",
        "EAR001" => "kubectl apply -f cluster.yaml   # enabled: true, no spec.features.encryptionAtRest",
        "EAR002" => "kubectl apply -f cluster.yaml   # enabled: true, keys: []",
        "EAR003" => "kubectl apply -f cluster.yaml   # a key named encryption-key:2022-02",
        "EAR004" => "kubectl apply -f cluster.yaml   # a 16-byte key",
        "EAR005" => "kubectl apply -f cluster.yaml   # resources: [\"*\"]",
        "EAR006" => "kubectl patch cluster ear006-demo --type=merge -p '{\"spec\":{\"encryptionConfiguration\":{\"enabled\":false}}}'   # phase EncryptionNeeded",
        "EAR007" => "kubectl edit cluster ear007-demo   # resources: [secrets] -> [secrets, configmaps]",
        "EAR008" => "kubectl replace -f cluster.yaml   # encryption-key-2022-01 with new material",
        "EAR009" => "kubectl apply -f cluster.yaml   # new key encryption-key-2022-02 as keys[0]",
        "EAR010" => "kubectl edit cluster ear010-demo   # encryption-key-2022-01 (active) replaced by encryption-key-2022-02",
        "EAR012" => "kubectl patch cluster ear012-demo --type=merge -p '{\"spec\":{\"features\":{\"encryptionAtRest\":false}}}'",
        "EAR014" => "kubectl patch cluster ear014-demo --subresource=status --type=merge -p '{\"status\":{\"encryption\":{...}}}'   # as jane@example.com",
        _ => "kubectl apply -f cluster.yaml",
    }
}

const K1: &str = "encryption-key-2022-01";
const K2: &str = "encryption-key-2022-02";

/// EAR000 guards the fields' types. With the chart's CRD, whose structural schema declares
/// them, kube-apiserver refuses a wrong type itself, after the mutating webhook (which leaves
/// what it cannot read alone) and before the validating webhook: the user sees the schema's
/// message naming the field. EAR000 is eargate's own guard for a seed whose CRD is looser.
#[test]
fn ear000_a_field_of_the_wrong_type_is_refused_naming_it() {
    let Some(w) = world() else { return };
    let k = test_key(1);
    let c = cluster("ear000-demo")
        .key(K1, &k)
        .set("/spec/encryptionConfiguration/enabled", json!("yes"))
        .build();
    let out = w.apply(&jane(), &c);
    let text = stderr(&out);
    assert!(
        !out.status.success(),
        "a string `enabled` was stored: {}",
        stdout(&out)
    );
    assert!(
        text.contains("spec.encryptionConfiguration.enabled")
            && text.contains("must be of type boolean"),
        "{text}"
    );
    assert_no_key_material(&[&k], [("kubectl's error", &text)]);
    record_denial("EAR000", &text);
}

#[test]
fn ear001_enabling_without_the_feature_gate_is_denied() {
    let Some(w) = world() else { return };
    let k = test_key(2);
    let c = cluster("ear001-demo")
        .without_feature_gate()
        .key(K1, &k)
        .build();
    let out = w.apply(&jane(), &c);
    denied(
        &out,
        "EAR001",
        &["spec.features.encryptionAtRest: true"],
        &[&k],
    );
}

#[test]
fn ear002_enabling_without_a_key_is_denied() {
    let Some(w) = world() else { return };
    let out = w.apply(&jane(), &cluster("ear002-demo").build());
    denied(&out, "EAR002", &["secretbox.keys", "eargate keygen"], &[]);
}

#[test]
fn ear003_a_key_name_with_a_colon_is_denied() {
    let Some(w) = world() else { return };
    let k = test_key(3);
    let c = cluster("ear003-demo")
        .key("encryption-key:2022-02", &k)
        .build();
    let out = w.apply(&jane(), &c);
    denied(
        &out,
        "EAR003",
        &["keys[0].name", "encryption-key:2022-02", "rename"],
        &[&k],
    );
}

#[test]
fn ear004_a_short_key_is_denied_without_showing_it() {
    let Some(w) = world() else { return };
    let short = b64([7u8; 16]);
    let c = cluster("ear004-demo").key(K1, &short).build();
    let out = w.apply(&jane(), &c);
    denied(
        &out,
        "EAR004",
        &["keys[0].value", K1, "16 bytes", "eargate keygen"],
        &[&short],
    );
}

#[test]
fn ear005_a_resource_kube_apiserver_refuses_is_denied() {
    let Some(w) = world() else { return };
    let k = test_key(5);
    let c = cluster("ear005-demo")
        .key(K1, &k)
        .resources(json!(["*"]))
        .build();
    let out = w.apply(&jane(), &c);
    denied(&out, "EAR005", &["resources[0]", "'*.'"], &[&k]);
}

#[test]
fn ear006_the_configuration_is_locked_during_a_rollout() {
    let Some(w) = world() else { return };
    w.stored(
        &cluster("ear006-demo").key_ref(K1, K1, "key").build(),
        Some(encryption_status("EncryptionNeeded", K1)),
    );
    let out = w.patch(
        &jane(),
        "ear006-demo",
        json!({"spec": {"encryptionConfiguration": {"enabled": false}}}),
    );
    denied(
        &out,
        "EAR006",
        &["EncryptionNeeded", "kubectl get cluster ear006-demo"],
        &[],
    );
}

#[test]
fn ear007_the_resource_list_is_fixed_while_enabled() {
    let Some(w) = world() else { return };
    w.stored(
        &cluster("ear007-demo").key_ref(K1, K1, "key").build(),
        Some(active(K1)),
    );
    let out = w.edit(
        &jane(),
        "ear007-demo",
        "s/^    - secrets$/    - secrets\\n    - configmaps/",
    );
    let text = denied(
        &out,
        "EAR007",
        &["set enabled: false, wait until decryption has finished"],
        &[],
    );
    assert!(
        text.contains("kubectl replace -f"),
        "kubectl edit keeps the edit: {text}"
    );
}

#[test]
fn ear008_key_material_of_a_name_never_changes() {
    let Some(w) = world() else { return };
    let (old, new) = (test_key(8), test_key(9));
    w.stored(
        &cluster("ear008-demo").key(K1, &old).build(),
        Some(active(K1)),
    );
    // `kubectl replace`: `kubectl apply` would echo its whole patch, inline key included,
    // in its own error text (one more reason for secretRef).
    let c = cluster("ear008-demo").key(K1, &new).build();
    let out = w.kubectl_stdin(&jane(), &["replace", "-f", "-"], &c);
    denied(
        &out,
        "EAR008",
        &["keys[0].value", K1, "add a key with a new name"],
        &[&old, &new],
    );
}

#[test]
fn ear009_a_new_key_enters_as_secondary() {
    let Some(w) = world() else { return };
    w.stored(
        &cluster("ear009-demo").key_ref(K1, K1, "key").build(),
        Some(active(K1)),
    );
    let c = cluster("ear009-demo")
        .key_ref(K2, K2, "key")
        .key_ref(K1, K1, "key")
        .build();
    let out = w.apply(&jane(), &c);
    denied(
        &out,
        "EAR009",
        &["keys[0]", K2, "secondary key (keys[1]) first"],
        &[],
    );
}

#[test]
fn ear010_the_active_key_cannot_be_removed() {
    let Some(w) = world() else { return };
    w.stored(
        &cluster("ear010-demo").key_ref(K1, K1, "key").build(),
        Some(active(K1)),
    );
    let out = w.edit(&jane(), "ear010-demo", &format!("s/{K1}/{K2}/g"));
    denied(
        &out,
        "EAR010",
        &[K1, "it is the active key", "keep it"],
        &[],
    );
}

#[test]
fn ear011_and_ear013_disabling_and_fixing_a_failed_rollout_stay_allowed() {
    let Some(w) = world() else { return };
    // EAR011: disabling in Active is allowed, with a warning that says what happens next.
    w.stored(
        &cluster("ear011-demo").key_ref(K1, K1, "key").build(),
        Some(active(K1)),
    );
    let out = w.patch(
        &jane(),
        "ear011-demo",
        json!({"spec": {"encryptionConfiguration": {"enabled": false}}}),
    );
    assert!(
        out.status.success(),
        "disabling was refused: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Warning: disabling encryption at rest"),
        "{}",
        stderr(&out)
    );

    // EAR013: in Failed nothing is locked: the edit that fixes the cause goes through.
    w.stored(
        &cluster("ear013-demo")
            .key_ref(K1, K1, "key")
            .key_ref(K2, K2, "key")
            .build(),
        Some(encryption_status("Failed", K1)),
    );
    let fixed = cluster("ear013-demo")
        .key_ref(K1, K1, "key")
        .key_ref(K2, K2, "key")
        .key_ref("encryption-key-2022-03", "encryption-key-2022-03", "key")
        .build();
    let out = w.apply(&jane(), &fixed);
    assert!(
        out.status.success(),
        "a fix in Failed was refused: {}",
        stderr(&out)
    );
}

#[test]
fn ear012_the_feature_gate_stays_on_while_encrypted() {
    let Some(w) = world() else { return };
    w.stored(
        &cluster("ear012-demo").key_ref(K1, K1, "key").build(),
        Some(active(K1)),
    );
    let out = w.patch(
        &jane(),
        "ear012-demo",
        json!({"spec": {"features": {"encryptionAtRest": false}}}),
    );
    denied(
        &out,
        "EAR012",
        &["spec.features.encryptionAtRest", "disable encryption first"],
        &[],
    );
}

#[test]
fn ear014_only_the_reconciler_writes_encryption_status() {
    let Some(w) = world() else { return };
    w.stored(&cluster("ear014-demo").key_ref(K1, K1, "key").build(), None);
    let forged = json!({"encryption": active(K1)});
    // Jane's kubeconfig (RBAC allows her clusters/status): eargate denies.
    let out = w.patch_status(&w.cp.kubeconfig(&jane()), "ear014-demo", forged.clone());
    denied(
        &out,
        "EAR014",
        &[
            "status.encryption",
            "jane@example.com",
            "eargate-reconciler",
        ],
        &[],
    );
    // The reconciler's ServiceAccount, bound by the chart's own ClusterRole: allowed.
    let out = w.patch_status(&w.reconciler, "ear014-demo", forged);
    assert!(
        out.status.success(),
        "the reconciler was refused: {}",
        stderr(&out)
    );
    assert_eq!(
        w.get("ear014-demo")["status"]["encryption"]["phase"],
        "Active"
    );
    // Other status fields stay writable by anyone RBAC allows.
    let out = w.patch_status(
        &w.cp.kubeconfig(&jane()),
        "ear014-demo",
        json!({"userName": "Jane"}),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn allowed_edits_are_stored_mutated_and_warnings_reach_kubectl() {
    let Some(w) = world() else { return };
    let k = test_key(20);
    // No resources: defaulted to [secrets].
    let c = cluster("mutate-default")
        .key(K1, &k)
        .without_resources()
        .build();
    let out = w.apply(&jane(), &c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        w.get("mutate-default")["spec"]["encryptionConfiguration"]["resources"],
        json!(["secrets"])
    );
    let warnings = stderr(&out);
    assert!(warnings.contains("Warning: "), "no warning: {warnings}");
    assert!(
        warnings.contains("carries its key material inline"),
        "{warnings}"
    );
    assert!(
        warnings.contains("enabling encryption at rest"),
        "{warnings}"
    );
    assert_no_key_material(&[&k], [("kubectl's warnings", &warnings)]);

    // Capitals, blanks and duplicates: normalised, each change explained.
    let c = cluster("mutate-normalise")
        .key_ref(K1, K1, "key")
        .resources(json!([" Secrets ", "configmaps", "configmaps"]))
        .build();
    let out = w.apply(&jane(), &c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        w.get("mutate-normalise")["spec"]["encryptionConfiguration"]["resources"],
        json!(["secrets", "configmaps"])
    );
    assert!(
        stderr(&out).matches("Warning: ").count() >= 2,
        "{}",
        stderr(&out)
    );
}

#[test]
fn dry_run_is_judged_like_a_real_edit_and_stores_nothing() {
    let Some(w) = world() else { return };
    let k = test_key(30);
    let bad = cluster("dry-run-demo")
        .without_feature_gate()
        .key(K1, &k)
        .build();
    let real = w.apply(&jane(), &bad);
    let dry = w.kubectl_stdin(&jane(), &["apply", "--dry-run=server", "-f", "-"], &bad);
    assert!(!dry.status.success());
    assert_eq!(
        stderr(&real),
        stderr(&dry),
        "a dry run is judged as the real edit"
    );

    let good = cluster("dry-run-demo").key(K1, &k).build();
    let dry = w.kubectl_stdin(&jane(), &["apply", "--dry-run=server", "-f", "-"], &good);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("(server dry run)"),
        "{}",
        stdout(&dry)
    );
    let out =
        w.cp.kubectl(&Identity::admin())
            .args(["get", "cluster", "dry-run-demo"])
            .output()
            .expect("run kubectl");
    assert!(
        stderr(&out).contains("NotFound"),
        "a dry run stored the Cluster"
    );
    assert!(
        w.main.log().contains("\"dry_run\":true"),
        "eargate saw the dry-run flag"
    );
}

#[test]
fn kube_apiserver_negotiates_the_review_version() {
    let Some(w) = world() else { return };
    // The chart offers v1 and v1beta1; kube-apiserver picks v1 and sends it.
    let k = test_key(40);
    let c = cluster("protocol-v1").key(K1, &k).build();
    assert!(w.apply(&jane(), &c).status.success());
    let reviews = |name: &str| -> Vec<Value> {
        w.main
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["name"] == name || v["name"] == name)
            .collect()
    };
    let seen = reviews("protocol-v1");
    assert!(
        !seen.is_empty(),
        "no review logged for protocol-v1:\n{}",
        w.main.log()
    );
    for r in &seen {
        let version = r["fields"]["api_version"]
            .as_str()
            .or(r["api_version"].as_str());
        assert_eq!(version, Some("admission.k8s.io/v1"), "{r}");
    }

    // A configuration that offers only v1beta1 (an older API server's choice): the same
    // server answers in v1beta1, and kube-apiserver accepts the reply.
    let objects = chart::render(
        &json!({"webhook": {"objectSelector": {"matchLabels": {GATE_LABEL: "v1beta1"}}}}),
        "eargate-v1beta1",
        NAMESPACE,
    )
    .expect("the chart renders");
    let mut hooks = webhooks_pointed_at(&objects, &w.main);
    for config in &mut hooks {
        for hook in config["webhooks"].as_array_mut().expect("webhooks") {
            hook["admissionReviewVersions"] = json!(["v1beta1"]);
        }
    }
    w.cp.apply(&hooks);
    let deadline = Instant::now() + Duration::from_secs(60);
    let name = "protocol-v1beta1";
    loop {
        let c = cluster(name)
            .label(GATE_LABEL, "v1beta1")
            .without_feature_gate()
            .key(K1, &k)
            .build();
        let out = w.kubectl_stdin(&jane(), &["create", "--dry-run=server", "-f", "-"], &c);
        assert!(stderr(&out).contains("EAR001"), "{}", stderr(&out));
        let versions: Vec<String> = reviews(name)
            .iter()
            .filter_map(|r| {
                r["fields"]["api_version"]
                    .as_str()
                    .or(r["api_version"].as_str())
                    .map(str::to_owned)
            })
            .collect();
        if versions.iter().any(|v| v == "admission.k8s.io/v1beta1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no v1beta1 review arrived: {versions:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn with_the_gate_down_cluster_writes_fail_closed_and_other_writes_work() {
    let Some(w) = world() else { return };
    let mut gate = w.fail_closed.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster("fail-closed-demo")
        .label(GATE_LABEL, "fail-closed")
        .key_ref(K1, K1, "key")
        .build();
    let out = w.kubectl_stdin(&jane(), &["create", "--dry-run=server", "-f", "-"], &c);
    assert!(out.status.success(), "with the gate up: {}", stderr(&out));

    gate.stop();
    let out = w.apply(&jane(), &c);
    assert!(
        !out.status.success(),
        "a Cluster write passed with its gate down"
    );
    let text = stderr(&out);
    assert!(text.contains("failed calling webhook"), "{text}");
    assert!(text.contains("eargate.k8c.io"), "{text}");

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-a-cluster", "namespace": "default"}, "data": {"a": "b"}});
    let out = w.apply(&Identity::admin(), &cm);
    assert!(
        out.status.success(),
        "other resources are not gated: {}",
        stderr(&out)
    );
}

#[test]
fn the_serving_certificate_rotates_while_kube_apiserver_keeps_calling() {
    let Some(w) = world() else { return };
    let name = "rotation-demo";
    w.stored(
        &cluster(name)
            .label(GATE_LABEL, "rotation")
            .key_ref(K1, K1, "key")
            .build(),
        Some(active(K1)),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (edits, failures) = rt.block_on(async {
        let client = w.cp.client(&jane()).await;
        let api: kube::Api<kube::core::DynamicObject> = kube::Api::all_with(
            client,
            &kube::discovery::ApiResource {
                group: "kubermatic.k8c.io".into(),
                version: "v1".into(),
                api_version: "kubermatic.k8c.io/v1".into(),
                kind: "Cluster".into(),
                plural: "clusters".into(),
            },
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut edits, mut failures) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let patch = json!({"spec": {"humanReadableName": format!("edit {edits}")}});
                    match api
                        .patch(
                            name,
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(&patch),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(e) => failures.push(e.to_string()),
                    }
                    edits += 1;
                }
                (edits, failures)
            })
        };
        for round in 1..=3 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            w.rotation.rotate_certificate();
            let deadline = Instant::now() + Duration::from_secs(20);
            while w
                .rotation
                .log()
                .matches("serving certificate reloaded")
                .count()
                < round
            {
                assert!(
                    Instant::now() < deadline,
                    "no reload:\n{}",
                    w.rotation.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.await.expect("the writer task")
    });
    assert!(edits > 20, "only {edits} edits were sent");
    assert!(
        failures.is_empty(),
        "{} of {edits} edits failed: {failures:?}",
        failures.len()
    );
    eprintln!("rotation: {edits} edits across 3 certificate rotations, none failed");
}
