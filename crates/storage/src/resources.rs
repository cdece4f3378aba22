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
//!
//! Wildcard entries (`*.*`, `*.`, `*.<group>`) are expanded from the keyspace: the
//! top-level directories under the prefix are read back into resources (the reverse of the
//! mapping above, with a table of the resources built into kube-apiserver for their groups),
//! and every directory `<group>/<resource>` is a resource of that group.

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
    "lifecycle.k8s.io",
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

/// The resources built into kube-apiserver (v1.37) that are stored under their plain name,
/// by group: how a top-level directory of the keyspace is read back into a resource.
/// Resources with a historic prefix are in [`SPECIAL_PREFIXES`]. `events` holds the
/// `events.k8s.io` Events too (the same storage); `deployments`, `daemonsets`,
/// `replicasets` and `networkpolicies` once had `extensions` twins stored with them.
const BUILT_IN_RESOURCES: &[(&str, &str)] = &[
    ("", "configmaps"),
    ("", "events"),
    ("", "limitranges"),
    ("", "namespaces"),
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("", "pods"),
    ("", "podtemplates"),
    ("", "resourcequotas"),
    ("", "secrets"),
    ("", "serviceaccounts"),
    ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
    (
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    ("apps", "controllerrevisions"),
    ("apps", "daemonsets"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("batch", "cronjobs"),
    ("batch", "jobs"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("certificates.k8s.io", "clustertrustbundles"),
    ("certificates.k8s.io", "podcertificaterequests"),
    ("coordination.k8s.io", "leasecandidates"),
    ("coordination.k8s.io", "leases"),
    ("discovery.k8s.io", "endpointslices"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    (
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    ),
    ("internal.apiserver.k8s.io", "storageversions"),
    ("lifecycle.k8s.io", "evictionrequests"),
    ("lifecycle.k8s.io", "evictions"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ipaddresses"),
    ("networking.k8s.io", "networkpolicies"),
    ("networking.k8s.io", "servicecidrs"),
    ("node.k8s.io", "runtimeclasses"),
    ("policy", "poddisruptionbudgets"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "roles"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "devicetaintrules"),
    ("resource.k8s.io", "resourceclaims"),
    ("resource.k8s.io", "resourceclaimtemplates"),
    ("resource.k8s.io", "resourcepoolstatusrequests"),
    ("resource.k8s.io", "resourceslices"),
    ("scheduling.k8s.io", "compositepodgroups"),
    ("scheduling.k8s.io", "podgroups"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("scheduling.k8s.io", "workloads"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "csistoragecapacities"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
    ("storagemigration.k8s.io", "storageversionmigrations"),
];

/// Top-level directories that hold no REST resource (kube-apiserver's IP and port
/// allocation bitmaps, `serviceipallocations` and `servicenodeportallocations`, and its
/// endpoint leases, `apiserveripinfo`): they cannot be encrypted.
const NOT_RESOURCES: &[&str] = &["ranges", "masterleases"];

/// A resource name that cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// A wildcard where one resource is needed.
    #[error("resource {0:?} is a wildcard, which names no single key range")]
    Wildcard(String),
    /// A wildcard kube-apiserver does not accept.
    #[error("resource {0:?} is not a wildcard kube-apiserver accepts (use *.* for all resources, *. for the core group, *.<group> for one group)")]
    BadWildcard(String),
    /// Not a resource name.
    #[error("resource {0:?} is not a valid resource name (lowercase plural, optionally .group)")]
    Invalid(String),
    /// An etcd prefix that does not start with `/`.
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

/// A wildcard entry of an EncryptionConfiguration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wildcard {
    /// `*.*`: every resource.
    All,
    /// `*.<group>`; `*.` is the core group (`""`).
    Group(String),
}

impl std::fmt::Display for Wildcard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wildcard::All => f.write_str("*.*"),
            Wildcard::Group(g) => write!(f, "*.{g}"),
        }
    }
}

/// `Some` when `resource` is a wildcard, an error when it is one kube-apiserver refuses
/// (`*`, `secrets.*`, `*.Apps`); `None` for a plain resource name.
pub fn parse_wildcard(resource: &str) -> Result<Option<Wildcard>, ResourceError> {
    if !resource.contains('*') {
        return Ok(None);
    }
    let bad = || ResourceError::BadWildcard(resource.to_owned());
    let group = resource.strip_prefix("*.").ok_or_else(bad)?;
    if group == "*" {
        return Ok(Some(Wildcard::All));
    }
    let valid = group
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid || group.starts_with('.') {
        return Err(bad());
    }
    Ok(Some(Wildcard::Group(group.to_owned())))
}

/// One resource found in the etcd keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    /// The API group (`""` for core); `None` for a top-level directory that is no resource
    /// eargate knows to be built into kube-apiserver: only `*.*` covers it for sure.
    pub group: Option<String>,
    /// The plural resource name.
    pub resource: String,
    /// Every key of the resource starts with this; it ends with `/`.
    pub key_prefix: String,
}

impl StoredResource {
    /// `secrets`, `deployments.apps`, `widgets.example.com` (the bare directory name when
    /// the group is unknown).
    pub fn name(&self) -> String {
        match self.group.as_deref() {
            None | Some("") => self.resource.clone(),
            Some(g) => format!("{}.{g}", self.resource),
        }
    }

    /// Whether the wildcard covers this resource.
    pub fn matches(&self, wildcard: &Wildcard) -> bool {
        match wildcard {
            Wildcard::All => true,
            Wildcard::Group(g) => self.group.as_deref() == Some(g.as_str()),
        }
    }
}

/// What a top-level directory `<prefix>/<segment>/` of the keyspace holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopLevel {
    /// One resource stored under its plain name (or a historic one).
    Resource(StoredResource),
    /// `<group>/<resource>/…`: the directories below are the group's resources.
    Group(String),
    /// `services/specs/` and `services/endpoints/`.
    Services,
    /// Allocation bitmaps and endpoint leases: no resource.
    NotAResource,
}

/// Reads a top-level directory name of the keyspace back into what it holds. `prefix` is
/// normalised (see [`normalise_prefix`]).
pub fn top_level(prefix: &str, segment: &str) -> TopLevel {
    if segment == "services" {
        return TopLevel::Services;
    }
    if NOT_RESOURCES.contains(&segment) {
        return TopLevel::NotAResource;
    }
    if segment.contains('.') {
        return TopLevel::Group(segment.to_owned());
    }
    let (group, resource) = if let Some((g, r, _)) = SPECIAL_PREFIXES
        .iter()
        .find(|(g, _, p)| *p == segment && *g != "extensions")
    {
        (Some(*g), *r)
    } else if let Some((g, r)) = BUILT_IN_RESOURCES.iter().find(|(_, r)| *r == segment) {
        (Some(*g), *r)
    } else {
        (None, segment)
    };
    TopLevel::Resource(StoredResource {
        group: group.map(str::to_owned),
        resource: resource.to_owned(),
        key_prefix: format!("{prefix}/{segment}/"),
    })
}

/// The resource stored under `<prefix>/services/<segment>/` (`specs`, `endpoints`).
pub fn under_services(prefix: &str, segment: &str) -> Option<StoredResource> {
    let resource = match segment {
        "specs" => "services",
        "endpoints" => "endpoints",
        _ => return None,
    };
    Some(StoredResource {
        group: Some(String::new()),
        resource: resource.to_owned(),
        key_prefix: format!("{prefix}/services/{segment}/"),
    })
}

/// The resource stored under `<prefix>/<group>/<segment>/`.
pub fn under_group(prefix: &str, group: &str, segment: &str) -> StoredResource {
    StoredResource {
        group: Some(group.to_owned()),
        resource: segment.to_owned(),
        key_prefix: format!("{prefix}/{group}/{segment}/"),
    }
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
    fn wildcards_parse_like_kube_apiserver_accepts_them() {
        assert_eq!(parse_wildcard("secrets"), Ok(None));
        assert_eq!(parse_wildcard("*.*"), Ok(Some(Wildcard::All)));
        assert_eq!(
            parse_wildcard("*."),
            Ok(Some(Wildcard::Group(String::new())))
        );
        assert_eq!(
            parse_wildcard("*.apps"),
            Ok(Some(Wildcard::Group("apps".into())))
        );
        for bad in ["*", "secrets.*", "*.Apps", "*..apps", "**.apps", "*.a/b"] {
            assert!(
                matches!(parse_wildcard(bad), Err(ResourceError::BadWildcard(_))),
                "{bad}"
            );
        }
        assert_eq!(Wildcard::Group(String::new()).to_string(), "*.");
    }

    #[test]
    fn top_level_directories_read_back_into_resources() {
        let res = |seg: &str| match top_level("/registry", seg) {
            TopLevel::Resource(r) => (r.name(), r.group, r.key_prefix),
            other => panic!("{seg}: {other:?}"),
        };
        assert_eq!(
            res("secrets"),
            (
                "secrets".into(),
                Some(String::new()),
                "/registry/secrets/".into()
            )
        );
        assert_eq!(res("deployments").0, "deployments.apps");
        assert_eq!(res("minions").0, "nodes");
        assert_eq!(res("controllers").0, "replicationcontrollers");
        assert_eq!(res("ingress").0, "ingresses.networking.k8s.io");
        assert_eq!(res("podsecuritypolicy").0, "podsecuritypolicies.policy");
        assert_eq!(
            res("clusterroles").0,
            "clusterroles.rbac.authorization.k8s.io"
        );
        assert_eq!(res("leases").0, "leases.coordination.k8s.io");
        assert_eq!(res("somethingnew").1, None);
        assert_eq!(top_level("/registry", "services"), TopLevel::Services);
        assert_eq!(top_level("/registry", "ranges"), TopLevel::NotAResource);
        assert_eq!(
            top_level("/registry", "masterleases"),
            TopLevel::NotAResource
        );
        assert_eq!(
            top_level("/registry", "example.com"),
            TopLevel::Group("example.com".into())
        );
        assert_eq!(
            under_services("/registry", "endpoints").unwrap().key_prefix,
            "/registry/services/endpoints/"
        );
        // Every built-in resource maps back to the directory resource_keys names for it.
        for (group, resource) in BUILT_IN_RESOURCES {
            let name = if group.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}.{group}")
            };
            let keys = resource_keys("/registry", &name).unwrap();
            let segment = keys
                .key_prefix
                .strip_prefix("/registry/")
                .unwrap()
                .trim_end_matches('/');
            assert_eq!(res(segment).0, name, "{name}");
        }
        for (group, resource, special) in SPECIAL_PREFIXES {
            let name = if group.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}.{group}")
            };
            let stored = match special.split_once('/') {
                Some(("services", sub)) => under_services("/registry", sub).unwrap(),
                _ => match top_level("/registry", special) {
                    TopLevel::Resource(r) => r,
                    other => panic!("{special}: {other:?}"),
                },
            };
            assert_eq!(
                stored.key_prefix,
                resource_keys("/registry", &name).unwrap().key_prefix
            );
            if *group != "extensions" {
                assert_eq!(stored.name(), name);
            }
        }
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
