//! Where kube-apiserver keeps a resource in etcd.
//!
//! Keys are `<etcd prefix>/<resource prefix>/<namespace>/<name>` (cluster-scoped objects
//! have no namespace segment). The resource prefix follows upstream's storage factory:
//! - a few core resources have historic names (`SpecialDefaultResourcePrefixes` in
//!   `pkg/kubeapiserver/default_storage_factory_builder.go`): services live under
//!   `services/specs`, endpoints under `services/endpoints`, nodes under `minions`,
//!   replicationcontrollers under `controllers`, ingresses under `ingress`;
//! - resources built into kube-apiserver are stored under the plain resource name, whatever
//!   their group (`/registry/deployments`, `/registry/clusterroles`);
//! - custom resources, CRDs themselves (`apiextensions.k8s.io`) and APIServices
//!   (`apiregistration.k8s.io`) are stored under `<group>/<resource>`.

use eargate_policy::names::DEFAULT_ETCD_PREFIX;

/// API groups served by kube-apiserver's own storage (not CRDs or aggregated APIs).
const BUILT_IN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apps",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Historic storage prefixes of built-in resources, by (group, resource).
const SPECIAL_PREFIXES: &[(&str, &str, &str)] = &[
    ("", "replicationcontrollers", "controllers"),
    ("", "endpoints", "services/endpoints"),
    ("", "nodes", "minions"),
    ("", "services", "services/specs"),
    ("extensions", "ingresses", "ingress"),
    ("networking.k8s.io", "ingresses", "ingress"),
    ("extensions", "podsecuritypolicies", "podsecuritypolicy"),
    ("policy", "podsecuritypolicies", "podsecuritypolicy"),
];

/// A resource name that cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource {0:?} is a wildcard; name the resources to check with --resources")]
    Wildcard(String),
    #[error("resource {0:?} is not a valid resource name (lowercase plural, optionally .group)")]
    Invalid(String),
    #[error("etcd prefix {0:?} must start with '/'")]
    BadPrefix(String),
}

/// One resource to scan and its key range in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceKeys {
    /// As given (`secrets`, `deployments.apps`).
    pub resource: String,
    /// Every key of the resource starts with this; it ends with `/`.
    pub key_prefix: String,
}

impl ResourceKeys {
    /// `ns/name` (or `name` for cluster-scoped objects) of a key in this range.
    pub fn object_path<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        key.strip_prefix(self.key_prefix.as_bytes()).unwrap_or(key)
    }
}

/// Normalises kube-apiserver's `--etcd-prefix` (default `/registry`): leading `/`, no
/// trailing `/`.
pub fn normalise_prefix(prefix: &str) -> Result<String, ResourceError> {
    let prefix = if prefix.is_empty() {
        DEFAULT_ETCD_PREFIX
    } else {
        prefix
    };
    if !prefix.starts_with('/') {
        return Err(ResourceError::BadPrefix(prefix.to_owned()));
    }
    Ok(prefix.trim_end_matches('/').to_owned())
}

/// The key range of `resource` (`secrets`, `configmaps`, `deployments.apps`,
/// `widgets.example.com`) under the etcd prefix.
pub fn resource_keys(etcd_prefix: &str, resource: &str) -> Result<ResourceKeys, ResourceError> {
    if resource.contains('*') {
        return Err(ResourceError::Wildcard(resource.to_owned()));
    }
    let (name, group) = match resource.split_once('.') {
        Some((n, g)) => (n, g),
        None => (resource, ""),
    };
    let valid = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if name.is_empty() || !valid(name) || !valid(group) || group.starts_with('.') {
        return Err(ResourceError::Invalid(resource.to_owned()));
    }
    let base = normalise_prefix(etcd_prefix)?;
    let rel = if let Some((_, _, special)) = SPECIAL_PREFIXES
        .iter()
        .find(|(g, r, _)| *g == group && *r == name)
    {
        (*special).to_owned()
    } else if BUILT_IN_GROUPS.contains(&group) {
        name.to_owned()
    } else {
        format!("{group}/{name}")
    };
    Ok(ResourceKeys {
        resource: resource.to_owned(),
        key_prefix: format!("{base}/{rel}/"),
    })
}

/// The end of the etcd range covering every key that starts with `prefix`
/// (etcd's `clientv3.GetPrefixRangeEnd`).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the keyspace.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(resource: &str) -> String {
        resource_keys("/registry", resource).unwrap().key_prefix
    }

    #[test]
    fn maps_like_kube_apiserver() {
        assert_eq!(key("secrets"), "/registry/secrets/");
        assert_eq!(key("secrets."), "/registry/secrets/");
        assert_eq!(key("configmaps"), "/registry/configmaps/");
        assert_eq!(key("services"), "/registry/services/specs/");
        assert_eq!(key("endpoints"), "/registry/services/endpoints/");
        assert_eq!(key("nodes"), "/registry/minions/");
        assert_eq!(key("replicationcontrollers"), "/registry/controllers/");
        assert_eq!(key("ingresses.networking.k8s.io"), "/registry/ingress/");
        assert_eq!(key("deployments.apps"), "/registry/deployments/");
        assert_eq!(
            key("clusterroles.rbac.authorization.k8s.io"),
            "/registry/clusterroles/"
        );
        assert_eq!(
            key("customresourcedefinitions.apiextensions.k8s.io"),
            "/registry/apiextensions.k8s.io/customresourcedefinitions/"
        );
        assert_eq!(
            key("apiservices.apiregistration.k8s.io"),
            "/registry/apiregistration.k8s.io/apiservices/"
        );
        assert_eq!(
            key("clusters.kubermatic.k8c.io"),
            "/registry/kubermatic.k8c.io/clusters/"
        );
        assert_eq!(
            key("volumesnapshots.snapshot.storage.k8s.io"),
            "/registry/snapshot.storage.k8s.io/volumesnapshots/"
        );
    }

    #[test]
    fn custom_prefix_and_bad_input() {
        assert_eq!(
            resource_keys("/kubernetes.io/", "secrets")
                .unwrap()
                .key_prefix,
            "/kubernetes.io/secrets/"
        );
        assert_eq!(
            resource_keys("", "secrets").unwrap().key_prefix,
            "/registry/secrets/"
        );
        assert!(matches!(
            resource_keys("registry", "secrets"),
            Err(ResourceError::BadPrefix(_))
        ));
        assert!(matches!(
            resource_keys("/registry", "*.*"),
            Err(ResourceError::Wildcard(_))
        ));
        assert!(matches!(
            resource_keys("/registry", "Secrets"),
            Err(ResourceError::Invalid(_))
        ));
        assert!(matches!(
            resource_keys("/registry", "a/b"),
            Err(ResourceError::Invalid(_))
        ));
        assert!(matches!(
            resource_keys("/registry", ""),
            Err(ResourceError::Invalid(_))
        ));
    }

    #[test]
    fn object_path_and_range_end() {
        let keys = resource_keys("/registry", "secrets").unwrap();
        assert_eq!(keys.object_path(b"/registry/secrets/ns/name"), b"ns/name");
        assert_eq!(
            prefix_range_end(b"/registry/secrets/"),
            b"/registry/secrets0"
        );
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    }
}
