//! The chart's CRD (`charts/eargate/files/crd-clusters.yaml`) is exactly what `eargate crd`
//! generates from the Rust types, and that CRD is one the API server accepts: a structural
//! schema (Kubernetes' rules for `apiextensions.k8s.io/v1`) whose printer columns point at
//! fields it declares. Regenerate the chart's copy with `make crd`.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const CHART_CRD: &str = "charts/eargate/files/crd-clusters.yaml";

fn yaml_to_json(text: &str) -> Value {
    let value: serde_yaml::Value = serde_yaml::from_str(text).expect("valid YAML");
    serde_json::to_value(value).expect("YAML that maps to JSON")
}

fn generated() -> Value {
    yaml_to_json(&eargate::cli::crd::crd_yaml().expect("the CRD generates"))
}

#[test]
fn chart_copy_equals_the_generated_crd() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHART_CRD);
    let committed = std::fs::read_to_string(&path).expect("the chart's CRD file exists");
    assert_eq!(
        yaml_to_json(&committed),
        generated(),
        "{CHART_CRD} is out of date with the Rust types: run `make crd` and commit the result"
    );
}

#[test]
fn eargate_crd_prints_the_generated_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_eargate"))
        .arg("crd")
        .output()
        .expect("eargate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        text.starts_with(
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        ),
        "{text}"
    );
    assert_eq!(yaml_to_json(&text), generated());
}

/// Kubernetes' structural-schema rules, as `apiextensions-apiserver` applies them to a v1
/// CRD: every node has a type (unless it preserves unknown fields or is int-or-string),
/// `properties` and `additionalProperties` are not mixed, the forbidden keywords are absent,
/// and `enum` members match the node's type (no `null`).
fn structural_violations(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        out.push(format!("{path}: not an object"));
        return;
    };
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let ty = map.get("type").and_then(Value::as_str);
    match ty {
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        Some(other) => out.push(format!("{path}: unknown type {other:?}")),
        None if preserves || int_or_string => {}
        None => out.push(format!("{path}: no type")),
    }
    for forbidden in [
        "$ref",
        "definitions",
        "dependencies",
        "patternProperties",
        "additionalItems",
        "id",
        "$schema",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
    ] {
        if map.contains_key(forbidden) {
            out.push(format!(
                "{path}: uses {forbidden} (a generated schema must be plain)"
            ));
        }
    }
    if map.contains_key("default") {
        out.push(format!(
            "{path}: has a default (the API server would write it into stored Clusters)"
        ));
    }
    if map.get("uniqueItems") == Some(&Value::Bool(true)) {
        out.push(format!("{path}: uniqueItems: true is forbidden"));
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if let Some(members) = map.get("enum").and_then(Value::as_array) {
        for m in members {
            let fits = match ty {
                Some("string") => m.is_string(),
                Some("boolean") => m.is_boolean(),
                Some("integer") => m.is_i64() || m.is_u64(),
                Some("number") => m.is_number(),
                _ => true,
            };
            if !fits {
                out.push(format!(
                    "{path}: enum member {m} does not match type {ty:?}"
                ));
            }
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            structural_violations(child, &format!("{path}.{name}"), out);
        }
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(false)) => {
            out.push(format!("{path}: additionalProperties: false is forbidden"))
        }
        Some(child @ Value::Object(_)) => structural_violations(child, &format!("{path}[*]"), out),
        _ => {}
    }
    if let Some(items) = map.get("items") {
        structural_violations(items, &format!("{path}[]"), out);
    }
}

/// The schema node a printer column's simple JSONPath (`.a.b.c`) points at.
fn schema_at<'a>(root: &'a Value, json_path: &str) -> Option<&'a Value> {
    json_path
        .trim_start_matches('.')
        .split('.')
        .try_fold(root, |node, field| node.get("properties")?.get(field))
}

#[test]
fn generated_crd_is_a_valid_structural_kubermatic_cluster_crd() {
    let crd = generated();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["metadata"]["name"], "clusters.kubermatic.k8c.io");
    assert_eq!(crd["spec"]["group"], "kubermatic.k8c.io");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["kind"], "Cluster");
    assert_eq!(crd["spec"]["names"]["plural"], "clusters");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    let v1 = &versions[0];
    assert_eq!(v1["name"], "v1");
    assert_eq!(v1["served"], true);
    assert_eq!(v1["storage"], true);
    assert_eq!(v1["subresources"], serde_json::json!({"status": {}}));

    let schema = &v1["schema"]["openAPIV3Schema"];
    let mut violations = Vec::new();
    structural_violations(schema, "", &mut violations);
    assert!(
        violations.is_empty(),
        "not a structural schema:\n{}",
        violations.join("\n")
    );
    // Only the encryption fields are typed; the API server keeps every other field.
    for part in ["spec", "status"] {
        assert_eq!(
            schema["properties"][part]["x-kubernetes-preserve-unknown-fields"], true,
            "{part}"
        );
    }
    assert!(schema_at(schema, ".spec.encryptionConfiguration.secretbox.keys").is_some());
    assert_eq!(
        schema_at(schema, ".status.encryption.phase").expect("phase")["enum"],
        serde_json::json!(["Pending", "EncryptionNeeded", "Active", "Failed"])
    );

    let columns = v1["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns");
    let paths: Vec<&str> = columns
        .iter()
        .filter_map(|c| c["jsonPath"].as_str())
        .collect();
    assert!(paths.contains(&".status.encryption.phase"), "{paths:?}");
    assert!(paths.contains(&".status.encryption.activeKey"), "{paths:?}");
    for column in columns {
        let path = column["jsonPath"].as_str().expect("jsonPath");
        let ty = column["type"].as_str().expect("type");
        assert!(
            ["integer", "number", "string", "boolean", "date"].contains(&ty),
            "{path}: {ty}"
        );
        if !path.starts_with(".metadata.") {
            let node = schema_at(schema, path)
                .unwrap_or_else(|| panic!("printer column {path} names no schema field"));
            assert_eq!(node["type"], "string", "{path}");
        }
    }
}

#[test]
fn the_structural_check_catches_what_the_api_server_rejects() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "phase": {"type": "string", "nullable": true, "enum": ["Active", null]},
            "mixed": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "union": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "defaulted": {"type": "boolean", "default": false},
        }
    });
    let mut violations = Vec::new();
    structural_violations(&bad, "", &mut violations);
    for expected in [
        ".untyped: no type",
        ".phase: enum member null",
        ".mixed: properties and additionalProperties",
        ".union: uses anyOf",
        ".defaulted: has a default",
    ] {
        assert!(
            violations.iter().any(|v| v.starts_with(expected)),
            "missing {expected:?} in {violations:?}"
        );
    }
}

#[test]
fn kubectl_explain_and_get_read_well() {
    let crd = generated();
    let text = crd.to_string();
    // kube-derive's placeholder would be what `kubectl explain clusters` shows.
    assert!(!text.contains("Auto-generated derived type"), "{text}");
    let version = &crd["spec"]["versions"][0];
    let description = version["schema"]["openAPIV3Schema"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.starts_with("A Kubermatic user cluster."),
        "{description}"
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["jsonPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            ".status.encryption.phase",
            ".status.encryption.activeKey",
            ".metadata.creationTimestamp"
        ]
    );
    // `-o json` prints the same CRD.
    let out = Command::new(env!("CARGO_BIN_EXE_eargate"))
        .args(["crd", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, crd);
}
