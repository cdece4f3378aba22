//! The Helm chart, rendered by the same Helm engine as the chart tests
//! (`scripts/render-chart.py` over `tests/chart/conftest.py`).

use std::process::{Command, Stdio};

use crate::process::output_with_stdin;
use crate::tools::{python, require_tool, workspace_root};

/// Renders `charts/eargate` as `helm install <release> -n <namespace>` would, with `values`;
/// every object, NOTES.txt excluded. `None` after a loud skip when the venv is missing.
pub fn render(
    values: &serde_json::Value,
    release: &str,
    namespace: &str,
) -> Option<Vec<serde_json::Value>> {
    let python = python();
    if !require_tool(
        "the project venv with helm-python-sdk (.venv, or $EARGATE_PYTHON)",
        python.is_some(),
    ) {
        return None;
    }
    let script = workspace_root().join("scripts/render-chart.py");
    let out = output_with_stdin(
        Command::new(python?)
            .arg(&script)
            .args(["--release", release, "--namespace", namespace])
            .stderr(Stdio::piped()),
        values.to_string().as_bytes(),
    )
    .expect("run scripts/render-chart.py");
    assert!(
        out.status.success(),
        "render-chart.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("render-chart.py prints a JSON list"))
}

/// The objects of `kind` (and `name`, when given).
pub fn find<'a>(
    objects: &'a [serde_json::Value],
    kind: &str,
    name: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .collect()
}

/// The objects of any of these kinds.
pub fn of_kinds(objects: &[serde_json::Value], kinds: &[&str]) -> Vec<serde_json::Value> {
    objects
        .iter()
        .filter(|o| kinds.contains(&o["kind"].as_str().unwrap_or_default()))
        .cloned()
        .collect()
}

/// The kinds of the chart's RBAC.
pub const RBAC_KINDS: &[&str] = &[
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Creates `namespace`, renders the chart as release `release` in it, and applies its CRD
/// (waiting until it is established) and its RBAC to `cp`, as the admin. Returns every
/// rendered object, for the caller to apply more of them; `None` after a loud skip when the
/// venv is missing.
pub fn install_crd_and_rbac(
    cp: &crate::ControlPlane,
    release: &str,
    namespace: &str,
) -> Option<Vec<serde_json::Value>> {
    let admin = crate::Identity::admin();
    cp.kubectl_ok(&admin, &["create", "namespace", namespace]);
    let objects = render(&serde_json::json!({}), release, namespace)?;
    let crds = of_kinds(&objects, &["CustomResourceDefinition"]);
    cp.apply(&crds);
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().expect("a CRD name");
        cp.kubectl_ok(
            &admin,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{name}"),
            ],
        );
    }
    let rbac = of_kinds(&objects, RBAC_KINDS);
    assert!(rbac.len() >= 5, "the chart renders its RBAC: {rbac:?}");
    cp.apply(&rbac);
    Some(objects)
}
