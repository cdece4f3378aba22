//! Resolving `--resources` entries against a discovery snapshot, with the meaning
//! kube-apiserver's `EncryptionConfiguration` gives them: `secrets` is the core group,
//! `deployments.apps` names a group, `*.apps` is every resource of a group, `*.` every core
//! resource and `*.*` everything. Pure: the snapshot is taken elsewhere.

use std::collections::HashSet;

use thiserror::Error;

/// One resource as API discovery lists it (at its group's preferred version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredResource {
    /// API group; empty for the core group.
    pub group: String,
    /// The group's preferred version.
    pub version: String,
    /// Plural resource name as used in URLs; contains `/` for subresources.
    pub plural: String,
    /// The kind of its objects.
    pub kind: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// The verbs it supports (`list`, `update`, ...).
    pub verbs: Vec<String>,
}

impl DiscoveredResource {
    fn is_subresource(&self) -> bool {
        self.plural.contains('/')
    }

    /// Re-encryption needs both: LIST to find the objects, UPDATE to write them back.
    pub fn supports_list_and_update(&self) -> bool {
        let has = |verb: &str| self.verbs.iter().any(|v| v == verb);
        has("list") && has("update")
    }
}

/// What discovery returned: the resources it found, and the groups it could not read
/// (typically an aggregated API whose backing service is down).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverySnapshot {
    /// Every resource found.
    pub resources: Vec<DiscoveredResource>,
    /// `(group, reason)` for every group whose discovery failed.
    pub failed_groups: Vec<(String, String)>,
}

/// A resource to re-encrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// API group; empty for the core group.
    pub group: String,
    /// The version to list and write at.
    pub version: String,
    /// Plural resource name as used in URLs.
    pub plural: String,
    /// The kind of its objects.
    pub kind: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

impl Target {
    /// `secrets` for the core group, `deployments.apps` otherwise — the spelling the
    /// encryption configuration uses.
    pub fn display_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// URL path of the collection, across namespaces when `namespace` is `None`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            "/api"
        } else {
            "/apis"
        };
        let ns = namespace
            .map(|ns| format!("namespaces/{ns}/"))
            .unwrap_or_default();
        format!("{root}/{}/{ns}{}", self.api_version(), self.plural)
    }
}

/// A parsed `--resources` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// One named resource of one group (`""` for core).
    Named { resource: String, group: String },
    /// `*.<group>`: every resource of a group (`*.` is the core group).
    Group(String),
    /// `*.*`: every resource.
    All,
}

/// Why `--resources` does not resolve to resources to rewrite.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    /// No entry was given.
    #[error("--resources is empty: name at least one resource (for example `secrets`)")]
    NoEntries,
    /// An entry breaks kube-apiserver's spelling rules.
    #[error("resource entry {entry:?} is not valid: {why}")]
    Invalid {
        /// The entry as given.
        entry: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// An entry names no resource the API server serves.
    #[error("resource entry {entry:?} matches no resource the API server serves")]
    NoMatch {
        /// The entry as given.
        entry: String,
    },
    /// An entry names a group whose discovery failed.
    #[error("resource entry {entry:?} matches no resource: discovery of group {group:?} failed ({reason})")]
    GroupUnavailable {
        /// The entry as given.
        entry: String,
        /// The group.
        group: String,
        /// Why its discovery failed.
        reason: String,
    },
    /// An entry names a resource that cannot be listed and updated.
    #[error("resource entry {entry:?} names {name}, which does not support both list and update")]
    NotRewritable {
        /// The entry as given.
        entry: String,
        /// The resource it names.
        name: String,
    },
}

/// Parses one entry with kube-apiserver's rules: the first `.` separates resource from
/// group; no dot means the core group; `*` may stand for the resource (`*.apps`, `*.`) or
/// for both (`*.*`), never for the group alone.
pub fn parse_entry(raw: &str) -> Result<Entry, ResolveError> {
    let entry = raw.trim();
    let invalid = |why| ResolveError::Invalid {
        entry: entry.to_string(),
        why,
    };
    if entry.is_empty() {
        return Err(invalid("empty entry"));
    }
    if entry == "*" {
        return Err(invalid(
            "use `*.` for every core resource or `*.*` for every resource",
        ));
    }
    if entry
        .chars()
        .any(|c| c.is_ascii_uppercase() || c.is_whitespace() || c == '/')
    {
        return Err(invalid(
            "resources are lowercase plural names like `secrets` or `widgets.example.com`",
        ));
    }
    let (resource, group) = entry.split_once('.').unwrap_or((entry, ""));
    match (resource, group) {
        ("*", "*") => Ok(Entry::All),
        (_, "*") => Err(invalid("a wildcard group is only allowed as `*.*`")),
        (_, group) if group.contains('*') => {
            Err(invalid("`*` may only replace a whole resource name"))
        }
        ("*", group) => Ok(Entry::Group(group.to_string())),
        ("", _) => Err(invalid("the resource name before the dot is missing")),
        (resource, _) if resource.contains('*') => {
            Err(invalid("`*` may only replace a whole resource name"))
        }
        (resource, group) => Ok(Entry::Named {
            resource: resource.to_string(),
            group: group.to_string(),
        }),
    }
}

/// Splits a comma-separated `--resources` value into parsed entries.
pub fn parse_entries(list: &[String]) -> Result<Vec<(String, Entry)>, ResolveError> {
    let mut out = Vec::new();
    for raw in list.iter().flat_map(|s| s.split(',')) {
        if raw.trim().is_empty() {
            continue;
        }
        out.push((raw.trim().to_string(), parse_entry(raw)?));
    }
    if out.is_empty() {
        return Err(ResolveError::NoEntries);
    }
    Ok(out)
}

/// Resolves entries to the resources to rewrite, each once, in the order first named.
/// Wildcards silently leave out subresources and resources without list+update; a named
/// resource without them, or any entry matching nothing, is an error naming the entry.
pub fn resolve(
    entries: &[(String, Entry)],
    snapshot: &DiscoverySnapshot,
) -> Result<Vec<Target>, ResolveError> {
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    let failed_group = |group: &str| snapshot.failed_groups.iter().find(|(g, _)| g == group);
    for (raw, entry) in entries {
        let candidates: Vec<&DiscoveredResource> = snapshot
            .resources
            .iter()
            .filter(|r| !r.is_subresource())
            .filter(|r| match entry {
                Entry::All => true,
                Entry::Group(group) => &r.group == group,
                Entry::Named { resource, group } => &r.plural == resource && &r.group == group,
            })
            .collect();
        let group_of_entry = match entry {
            Entry::All => None,
            Entry::Group(group) | Entry::Named { group, .. } => Some(group.as_str()),
        };
        if candidates.is_empty() {
            if let Some((group, reason)) = group_of_entry.and_then(failed_group) {
                return Err(ResolveError::GroupUnavailable {
                    entry: raw.clone(),
                    group: group.clone(),
                    reason: reason.clone(),
                });
            }
            return Err(ResolveError::NoMatch { entry: raw.clone() });
        }
        let rewritable: Vec<&DiscoveredResource> = candidates
            .iter()
            .copied()
            .filter(|r| r.supports_list_and_update())
            .collect();
        if rewritable.is_empty() {
            return match entry {
                Entry::Named { .. } => Err(ResolveError::NotRewritable {
                    entry: raw.clone(),
                    name: target_of(candidates[0]).display_name(),
                }),
                _ => Err(ResolveError::NoMatch { entry: raw.clone() }),
            };
        }
        for r in rewritable {
            if seen.insert((r.group.clone(), r.plural.clone())) {
                targets.push(target_of(r));
            }
        }
    }
    Ok(targets)
}

fn target_of(r: &DiscoveredResource) -> Target {
    Target {
        group: r.group.clone(),
        version: r.version.clone(),
        plural: r.plural.clone(),
        kind: r.kind.clone(),
        namespaced: r.namespaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, version: &str, plural: &str, verbs: &[&str]) -> DiscoveredResource {
        DiscoveredResource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: "K".into(),
            namespaced: true,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
        }
    }

    const RW: &[&str] = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];

    fn snapshot() -> DiscoverySnapshot {
        DiscoverySnapshot {
            resources: vec![
                res("", "v1", "secrets", RW),
                res("", "v1", "configmaps", RW),
                res("", "v1", "pods", RW),
                res("", "v1", "pods/status", &["get", "patch", "update"]),
                res("", "v1", "bindings", &["create"]),
                res("", "v1", "componentstatuses", &["get", "list"]),
                res("apps", "v1", "deployments", RW),
                res(
                    "apps",
                    "v1",
                    "deployments/scale",
                    &["get", "patch", "update"],
                ),
                res("apps", "v1", "statefulsets", RW),
                res("example.com", "v1", "widgets", RW),
                res("metrics.k8s.io", "v1beta1", "pods", &["get", "list"]),
            ],
            failed_groups: vec![("custom.metrics.k8s.io".into(), "HTTP 503".into())],
        }
    }

    fn names(list: &[&str]) -> Result<Vec<String>, ResolveError> {
        let entries = parse_entries(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(resolve(&entries, &snapshot())?
            .iter()
            .map(Target::display_name)
            .collect())
    }

    #[test]
    fn parses_entries_like_kube_apiserver() {
        assert_eq!(
            parse_entry("secrets"),
            Ok(Entry::Named {
                resource: "secrets".into(),
                group: "".into()
            })
        );
        assert_eq!(
            parse_entry("widgets.example.com"),
            Ok(Entry::Named {
                resource: "widgets".into(),
                group: "example.com".into()
            })
        );
        assert_eq!(parse_entry("*.apps"), Ok(Entry::Group("apps".into())));
        assert_eq!(parse_entry("*."), Ok(Entry::Group("".into())));
        assert_eq!(parse_entry("*.*"), Ok(Entry::All));
        for bad in [
            "*",
            "",
            "secrets.*",
            ".apps",
            "Secrets",
            "sec*ets",
            "pods/status",
            "*.ap*s",
        ] {
            assert!(
                matches!(parse_entry(bad), Err(ResolveError::Invalid { .. })),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn named_and_group_entries() {
        assert_eq!(names(&["secrets"]).unwrap(), ["secrets"]);
        assert_eq!(
            names(&["deployments.apps,widgets.example.com"]).unwrap(),
            ["deployments.apps", "widgets.example.com"]
        );
        assert_eq!(
            names(&["*.apps"]).unwrap(),
            ["deployments.apps", "statefulsets.apps"]
        );
    }

    #[test]
    fn core_wildcard_skips_subresources_and_read_only_resources() {
        assert_eq!(names(&["*."]).unwrap(), ["secrets", "configmaps", "pods"]);
    }

    #[test]
    fn everything_wildcard_skips_what_cannot_be_rewritten() {
        assert_eq!(
            names(&["*.*"]).unwrap(),
            [
                "secrets",
                "configmaps",
                "pods",
                "deployments.apps",
                "statefulsets.apps",
                "widgets.example.com"
            ]
        );
    }

    #[test]
    fn duplicates_are_rewritten_once_in_first_named_order() {
        assert_eq!(
            names(&["configmaps", "*.", "secrets"]).unwrap(),
            ["configmaps", "secrets", "pods"]
        );
    }

    #[test]
    fn entries_matching_nothing_are_errors_naming_them() {
        let err = names(&["secrets,gadgets.example.com"]).unwrap_err();
        assert_eq!(
            err,
            ResolveError::NoMatch {
                entry: "gadgets.example.com".into()
            }
        );
        assert!(err.to_string().contains("gadgets.example.com"));
        // `secrets.apps` is not `secrets`: the group is part of the name.
        assert_eq!(
            names(&["secrets.apps"]).unwrap_err(),
            ResolveError::NoMatch {
                entry: "secrets.apps".into()
            }
        );
        assert_eq!(
            names(&["*.nothing.io"]).unwrap_err(),
            ResolveError::NoMatch {
                entry: "*.nothing.io".into()
            }
        );
        // A group with only read-only resources matches nothing rewritable.
        assert_eq!(
            names(&["*.metrics.k8s.io"]).unwrap_err(),
            ResolveError::NoMatch {
                entry: "*.metrics.k8s.io".into()
            }
        );
        assert_eq!(names(&[" , "]).unwrap_err(), ResolveError::NoEntries);
    }

    #[test]
    fn named_resources_that_cannot_be_updated_are_errors() {
        let err = names(&["componentstatuses"]).unwrap_err();
        assert_eq!(
            err,
            ResolveError::NotRewritable {
                entry: "componentstatuses".into(),
                name: "componentstatuses".into()
            }
        );
        assert!(matches!(
            names(&["pods.metrics.k8s.io"]),
            Err(ResolveError::NotRewritable { .. })
        ));
    }

    #[test]
    fn failed_discovery_is_named_for_entries_of_that_group() {
        let err = names(&["*.custom.metrics.k8s.io"]).unwrap_err();
        assert!(
            matches!(err, ResolveError::GroupUnavailable { ref group, .. } if group == "custom.metrics.k8s.io")
        );
        // `*.*` does not fail on it: an aggregated API is not stored by kube-apiserver.
        assert!(names(&["*.*"]).is_ok());
    }

    #[test]
    fn target_paths() {
        let t = resolve(
            &parse_entries(&["deployments.apps".into()]).unwrap(),
            &snapshot(),
        )
        .unwrap()
        .remove(0);
        assert_eq!(t.collection_path(None), "/apis/apps/v1/deployments");
        assert_eq!(
            t.collection_path(Some("ns")),
            "/apis/apps/v1/namespaces/ns/deployments"
        );
        let s = resolve(&parse_entries(&["secrets".into()]).unwrap(), &snapshot())
            .unwrap()
            .remove(0);
        assert_eq!(
            s.collection_path(Some("kube-system")),
            "/api/v1/namespaces/kube-system/secrets"
        );
        assert_eq!(s.api_version(), "v1");
    }
}
