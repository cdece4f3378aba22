//! `eargate crd`: print the `clusters.kubermatic.k8c.io` CustomResourceDefinition that
//! eargate's Rust types describe, as YAML.
//!
//! The Helm chart ships a copy of this output (`charts/eargate/files/crd-clusters.yaml`);
//! `tests/crd.rs` keeps the two identical, so the chart's CRD never drifts from what the
//! code decodes. Regenerate the copy with `make crd`.

use std::process::ExitCode;

use anyhow::Context as _;
use eargate_policy::model::Cluster;
use kube::CustomResourceExt as _;
use serde_json::Value;

/// The flags of `eargate crd`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format: YAML (the chart's copy; `text` is the same) or JSON.
    #[arg(short = 'o', long, value_enum, default_value_t = super::Output::Yaml)]
    pub output: super::Output,
}

/// The Cluster CRD (a `CustomResourceDefinition` object) as the API server should receive it.
///
/// Two fixes on top of what the derive produces, both about how the API server treats
/// stored Clusters rather than about the Rust types:
/// - `default` values are removed. serde's `#[serde(default)]` makes schemars emit them,
///   but in a CRD they make the API server write fields nobody sent into every stored
///   Cluster (`enabled: false`, `keys: []`, `activeKey: ""`…). Kubermatic's own CRD has no
///   such defaults, and a standalone install must store the same objects a seed does.
/// - `null` is removed from `enum` lists (`Option<EncryptionPhase>` yields one): the node
///   stays `nullable: true`, which is how Kubernetes spells "may be null".
pub fn cluster_crd() -> anyhow::Result<Value> {
    let mut crd = serde_json::to_value(Cluster::crd()).context("encoding the generated CRD")?;
    let versions = crd
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
        .context("the generated CRD has no versions")?;
    for version in versions {
        if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
            clean_schema(schema);
        }
    }
    Ok(crd)
}

/// Removes `default` and `null` enum members from a schema node and everything under it.
fn clean_schema(node: &mut Value) {
    match node {
        Value::Object(map) => {
            map.remove("default");
            if let Some(Value::Array(members)) = map.get_mut("enum") {
                members.retain(|m| !m.is_null());
            }
            for (key, child) in map.iter_mut() {
                // `enum` and `example` hold data, not schemas; everything else may nest one.
                if key != "enum" && key != "example" {
                    clean_schema(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean_schema),
        _ => {}
    }
}

/// The CRD as the YAML document the chart carries (with a leading `---` separator).
pub fn crd_yaml() -> anyhow::Result<String> {
    let yaml = serde_yaml::to_string(&cluster_crd()?).context("serializing the CRD as YAML")?;
    Ok(format!("---\n{yaml}"))
}

/// Prints the CustomResourceDefinition; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.output {
        super::Output::Json => super::Output::Json.print_value(&cluster_crd()?)?,
        super::Output::Yaml | super::Output::Text => print!("{}", crd_yaml()?),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_removes_defaults_and_null_enum_members_only() {
        let mut schema = serde_json::json!({
            "type": "object",
            "properties": {
                "phase": {"type": "string", "nullable": true, "enum": ["A", null, "B"]},
                "enabled": {"type": "boolean", "default": false},
                "keys": {"type": "array", "default": [], "items": {"type": "string", "default": ""}},
                "features": {"type": "object", "additionalProperties": {"type": "boolean", "default": true}},
            }
        });
        clean_schema(&mut schema);
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "object",
                "properties": {
                    "phase": {"type": "string", "nullable": true, "enum": ["A", "B"]},
                    "enabled": {"type": "boolean"},
                    "keys": {"type": "array", "items": {"type": "string"}},
                    "features": {"type": "object", "additionalProperties": {"type": "boolean"}},
                }
            })
        );
    }

    #[test]
    fn the_cluster_crd_has_no_defaults_and_no_null_enum_members() {
        let yaml = crd_yaml().unwrap();
        assert!(!yaml.contains("default:"), "{yaml}");
        assert!(!yaml.contains("- null"), "{yaml}");
        assert!(yaml.contains("- EncryptionNeeded"));
        assert!(yaml.contains("x-kubernetes-preserve-unknown-fields: true"));
    }
}
