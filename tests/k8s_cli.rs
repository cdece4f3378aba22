//! `eargate check` against a real kube-apiserver: the stored Cluster is read with a GET
//! (`--cluster`), the edit (`-f` or `--patch`) is judged against it, nothing is written;
//! and the same binary as kubectl's plugin (`kubectl eargate …`), run by the real kubectl.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eargate_testkit::chart;
use eargate_testkit::{ControlPlane, Identity};
use serde_json::{json, Value};

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const NAME: &str = "zt7q9h2mxk";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The control plane with the chart's CRD and `examples/cluster-active.yaml` stored (its
/// status written through the status subresource, as the reconciler would); and a
/// kubeconfig whose current context points nowhere, so that only `--context` reaches it.
struct World {
    cp: &'static ControlPlane,
    kubeconfig: PathBuf,
    context: String,
}

fn world() -> Option<World> {
    let cp = ControlPlane::shared()?;
    chart::install_crd_and_rbac(cp, "eargate", "eargate-system")?;
    let stored: Value = serde_yaml::from_str(
        &std::fs::read_to_string(examples().join("cluster-active.yaml")).unwrap(),
    )
    .unwrap();
    let mut object = stored.clone();
    let meta = object["metadata"].as_object_mut().unwrap();
    for field in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
        meta.remove(field);
    }
    object.as_object_mut().unwrap().remove("status");
    cp.apply(&[object]);
    let admin = Identity::admin();
    cp.kubectl_ok(
        &admin,
        &[
            "patch",
            "cluster",
            NAME,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": stored["status"]}).to_string(),
        ],
    );
    // The admin's kubeconfig, plus a current context that cannot be reached.
    let admin_kc = cp.kubeconfig(&admin);
    let mut kc: Value = serde_yaml::from_str(&std::fs::read_to_string(&admin_kc).unwrap()).unwrap();
    let context = kc["current-context"].as_str().unwrap().to_owned();
    kc["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}));
    let user = kc["contexts"][0]["context"]["user"].clone();
    kc["contexts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "nowhere", "context": {"cluster": "nowhere", "user": user}}));
    kc["current-context"] = "nowhere".into();
    let kubeconfig = cp.dir().join("kubeconfig-cli-two-contexts.yaml");
    std::fs::write(&kubeconfig, serde_yaml::to_string(&kc).unwrap()).unwrap();
    Some(World {
        cp,
        kubeconfig,
        context,
    })
}

fn resource_version(w: &World) -> String {
    let o = w.cp.kubectl_ok(
        &Identity::admin(),
        &[
            "get",
            "cluster",
            NAME,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The merge patch that replaces the key list (merge patches replace lists whole).
fn keys_patch(keys: Value) -> String {
    json!({"spec": {"encryptionConfiguration": {"secretbox": {"keys": keys}}}}).to_string()
}

fn key(name: &str) -> Value {
    json!({"name": name, "secretRef": {"name": name, "key": "key"}})
}

/// One test: the control plane is shared, and the checks read the same stored object.
#[test]
fn live_check_and_the_kubectl_plugin() {
    let Some(w) = world() else { return };
    let kc = w.kubeconfig.to_str().unwrap();
    let before = resource_version(&w);
    let eargate = |args: &[&str]| {
        Command::new(EARGATE)
            .arg("check")
            .args(args)
            .env_remove("KUBECONFIG")
            .current_dir(examples())
            .output()
            .unwrap()
    };
    let live = [
        "--kubeconfig",
        kc,
        "--context",
        &w.context,
        "--cluster",
        NAME,
    ];

    // The stored object is what --old would be: removing the active key is denied.
    let o = eargate(&[&live[..], &["-f", "cluster-remove-active-key.yaml"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("denied: update cluster.kubermatic.k8c.io/zt7q9h2mxk (offline check"),
        "{out}"
    );
    assert!(out.contains("[EAR010]"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("judged against the stored Cluster \"zt7q9h2mxk\" from https://127.0.0.1:")
            && err.contains(&format!("context {}", w.context))
            && err.contains("kubectl apply --dry-run=server"),
        "{err}"
    );

    // --patch: adding a secondary key is allowed, replacing the active one is denied.
    let add = keys_patch(json!([
        key("encryption-key-2022-01"),
        key("encryption-key-2022-02")
    ]));
    let o = eargate(&[&live[..], &["--patch", &add]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(
            "--patch of cluster zt7q9h2mxk: allowed: update cluster.kubermatic.k8c.io/zt7q9h2mxk"
        ),
        "{}",
        text(&o)
    );
    let replace = keys_patch(json!([key("encryption-key-2022-02")]));
    let o = eargate(&[&live[..], &["--patch", &replace, "-o", "json"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["results"][0]["rules"], json!(["EAR009", "EAR010"]));

    // A JSON patch too.
    let o = eargate(
        &[
            &live[..],
            &[
                "--patch-type",
                "json",
                "--patch",
                r#"[{"op":"replace","path":"/spec/encryptionConfiguration/enabled","value":false}]"#,
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Without --context the kubeconfig's current context is used: unreachable, named.
    let o = eargate(&["--kubeconfig", kc, "--cluster", NAME, "--patch", &add]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot read Cluster \"zt7q9h2mxk\" (--cluster) from https://127.0.0.1:1/")
            && err.contains("context nowhere"),
        "{err}"
    );
    // An unknown Cluster: the API server's answer, without Debug output.
    let o = eargate(&[
        "--kubeconfig",
        kc,
        "--context",
        &w.context,
        "--cluster",
        "nope",
        "--patch",
        &add,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the API server answered 404 NotFound"),
        "{err}"
    );
    assert!(
        !err.contains("Status {") && !err.contains("ErrorResponse"),
        "{err}"
    );

    // Nothing was written.
    assert_eq!(resource_version(&w), before);

    // The kubectl plugin: the same binary named kubectl-eargate on PATH, run by kubectl.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(EARGATE, bin.path().join("kubectl-eargate")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/kubectl");
    let plugin = |args: &[&str]| {
        Command::new(&kubectl)
            .args(args)
            .env("PATH", &path)
            .env_remove("KUBECONFIG")
            .env("HOME", bin.path())
            .current_dir(examples())
            .output()
            .unwrap()
    };
    let o = plugin(&["plugin", "list"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("kubectl-eargate"),
        "{}",
        text(&o)
    );
    let o = plugin(
        &[
            &["eargate", "check"],
            &live[..],
            &["-f", "cluster-remove-active-key.yaml"],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("[EAR010]"),
        "{}",
        text(&o)
    );
    let o = plugin(&[&["eargate", "check"], &live[..], &["--patch", &add]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Help and usage show the command as typed.
    let o = plugin(&["eargate", "check", "--help"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Usage: kubectl eargate check"),
        "{}",
        text(&o)
    );
    assert_eq!(resource_version(&w), before);
}
