//! kube-apiserver's rules for the `resources` list of an EncryptionConfiguration entry
//! (`k8s.io/apiserver/pkg/apis/apiserver/validation`), and the defaults the mutating webhook
//! applies to `spec.encryptionConfiguration.resources`.
//!
//! A list kube-apiserver refuses makes it exit at start, so an accepted Cluster must never
//! carry one. Messages quote upstream's wording and add which entry is affected.
//!
//! The validating webhook judges the list exactly as it receives it: the normalisation below
//! is the mutating webhook's, and [`mutation_fix`] says what it would have done to an entry,
//! so a denial can tell that the mutating webhook did not run.

use crate::names::DEFAULT_RESOURCES;
use crate::policy::Warning;
use crate::rules;

const RESOURCES: &str = "spec.encryptionConfiguration.resources";

/// Upstream's explanations, word for word where upstream has one.
pub mod msg {
    pub const REQUIRED: &str = "at least one resource is required";
    pub const EMPTY_ENTRY: &str = "an empty entry names no resource; remove it";
    pub const CAPITAL: &str = "resource name should not contain capital letters";
    /// Not upstream's: kube-apiserver does not trim, so it loads such an entry but it names
    /// no resource, and the objects meant stay in plaintext without any error.
    pub const WHITESPACE: &str = "surrounding whitespace is part of the name for kube-apiserver, which does not trim it: the entry would name no resource and those objects would silently stay in plaintext";
    pub const STAR: &str =
        "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources";
    pub const NON_REST: &str = "resources which do not have REST API/s cannot be encrypted";
    pub const EVENTS: &str = "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file";
    pub const EXTENSIONS: &str =
        "'extensions' group has been removed and cannot be used for encryption";
    pub const ACROSS_GROUPS: &str = "encrypting the same resource across groups is not supported";
    pub const DUPLICATE: &str = "the same resource cannot be specified multiple times";
    pub const OVERLAP: &str = "using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked";
}

/// One problem with a resources list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceProblem {
    /// Index of the offending entry; `None` for a problem of the whole list.
    pub index: Option<usize>,
    /// The offending entry (resource names are not secret).
    pub resource: Option<String>,
    /// What is wrong, explained the way kube-apiserver explains it.
    pub message: String,
}

impl ResourceProblem {
    /// `resources[1]` or `resources`, relative to the list's parent.
    pub fn field_suffix(&self) -> String {
        match self.index {
            Some(i) => format!("[{i}]"),
            None => String::new(),
        }
    }
}

impl std::fmt::Display for ResourceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.resource {
            Some(r) => write!(
                f,
                "resources{}: {r:?}: {}",
                self.field_suffix(),
                self.message
            ),
            None => write!(f, "resources{}: {}", self.field_suffix(), self.message),
        }
    }
}

/// `schema.ParseGroupResource`: split at the first `.` into resource and group.
pub fn parse_group_resource(s: &str) -> (&str, &str) {
    match s.split_once('.') {
        Some((resource, group)) => (resource, group),
        None => (s, ""),
    }
}

/// Every problem kube-apiserver would find in this `resources` list, plus empty entries.
pub fn validate_resources(resources: &[String]) -> Vec<ResourceProblem> {
    let mut problems = Vec::new();
    if resources.is_empty() {
        problems.push(ResourceProblem {
            index: None,
            resource: None,
            message: msg::REQUIRED.into(),
        });
        return problems;
    }
    let entry = |i: usize, m: &str| ResourceProblem {
        index: Some(i),
        resource: Some(resources[i].clone()),
        message: m.to_owned(),
    };
    for (i, res) in resources.iter().enumerate() {
        let (resource, group) = parse_group_resource(res);
        let m = if res.is_empty() {
            msg::EMPTY_ENTRY
        } else if res.to_lowercase() != *res {
            msg::CAPITAL
        } else if res.trim() != res {
            msg::WHITESPACE
        } else if res == "*" {
            msg::STAR
        } else if matches!(
            res.as_str(),
            "apiserveripinfo" | "serviceipallocations" | "servicenodeportallocations"
        ) {
            msg::NON_REST
        } else if group == "events.k8s.io" {
            msg::EVENTS
        } else if group == "extensions" {
            msg::EXTENSIONS
        } else if group == "*" && resource != "*" {
            msg::ACROSS_GROUPS
        } else {
            continue;
        };
        problems.push(entry(i, m));
    }
    // Pairwise: report each duplicate or overlap once, on the later entry.
    for j in 1..resources.len() {
        let b = parse_group_resource(&resources[j]);
        for (i, earlier) in resources[..j].iter().enumerate() {
            let a = parse_group_resource(earlier);
            let m = if a == b {
                format!("duplicates resources[{i}]: {}", msg::DUPLICATE)
            } else if a == ("*", "*")
                || b == ("*", "*")
                || (a.1 == b.1 && (a.0 == "*" || b.0 == "*"))
            {
                format!(
                    "overlaps resources[{i}] {:?}: {}",
                    resources[i],
                    msg::OVERLAP
                )
            } else {
                continue;
            };
            problems.push(entry(j, &m));
            break;
        }
    }
    problems
}

/// The defaulted `resources` of an enabled configuration and one explanation per change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Normalized {
    /// The list after the defaults.
    pub resources: Vec<String>,
    /// One warning per change (EARW01 to EARW03), sent by the mutating webhook.
    pub changes: Vec<Warning>,
}

/// Defaults applied by the mutating webhook: enabled with no resources gets `[secrets]`;
/// entries are trimmed and lowercased and exact duplicates dropped (keeping the first).
pub fn normalize_resources(resources: &[String], enabled: bool) -> Normalized {
    let mut out = Normalized::default();
    if resources.is_empty() {
        if enabled {
            out.resources = DEFAULT_RESOURCES.iter().map(|s| s.to_string()).collect();
            out.changes.push(Warning::new(
                &rules::EARW01,
                RESOURCES,
                format!(
                    "{RESOURCES} was empty; defaulted to [{}]",
                    DEFAULT_RESOURCES.join(", ")
                ),
            ));
        }
        return out;
    }
    for (i, raw) in resources.iter().enumerate() {
        let cleaned = clean(raw);
        let field = || format!("{RESOURCES}[{i}]");
        if cleaned != *raw {
            let field = field();
            let message = format!(
                "{field}: {raw:?} written as {cleaned:?} (kube-apiserver needs plural, lowercase names without spaces)"
            );
            out.changes
                .push(Warning::new(&rules::EARW02, field, message));
        }
        if out.resources.contains(&cleaned) {
            let field = field();
            let message = format!("{field}: duplicate {cleaned:?} dropped (kept the first)");
            out.changes
                .push(Warning::new(&rules::EARW03, field, message));
            continue;
        }
        out.resources.push(cleaned);
    }
    out
}

/// The entry as the mutating webhook writes it: trimmed and lowercased.
fn clean(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// The earlier entry that `resources[index]` duplicates once both are trimmed and
/// lowercased (the mutating webhook drops it), e.g. `secrets` after `Secrets`.
pub fn duplicate_once_cleaned(resources: &[String], index: usize) -> Option<usize> {
    let cleaned = clean(resources.get(index)?);
    resources[..index].iter().position(|e| clean(e) == cleaned)
}

/// What the mutating webhook would do to `resources[index]`, for a denial by the validating
/// webhook when it did not run: `writes this entry as "secrets"` or `drops this duplicate`,
/// with what the user can write instead. `None` when it would keep the entry as it is.
pub fn mutation_fix(resources: &[String], index: usize) -> Option<(String, String)> {
    let raw = resources.get(index)?;
    let cleaned = clean(raw);
    if duplicate_once_cleaned(resources, index).is_some() {
        return Some((
            "drops this duplicate".to_owned(),
            "remove the entry".to_owned(),
        ));
    }
    (cleaned != *raw).then(|| {
        (
            format!("writes this entry as {cleaned:?}"),
            format!("write {cleaned:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn messages(list: &[&str]) -> Vec<String> {
        validate_resources(&v(list))
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn accepts_what_upstream_accepts() {
        for ok in [
            &["secrets"][..],
            &["secrets", "configmaps"],
            &["*."],
            &["*.*"],
            &["*.apps", "secrets"],
            &["deployments.apps", "configmaps", "widgets.example.com"],
            &["events"],
        ] {
            assert!(
                validate_resources(&v(ok)).is_empty(),
                "{ok:?}: {:?}",
                messages(ok)
            );
        }
    }

    #[test]
    fn refuses_what_upstream_refuses() {
        let cases: &[(&[&str], &str)] = &[
            (&[], msg::REQUIRED),
            (&[""], msg::EMPTY_ENTRY),
            (&["Secrets"], msg::CAPITAL),
            (&[" secrets"], msg::WHITESPACE),
            (&["secrets\n"], msg::WHITESPACE),
            (&["*"], msg::STAR),
            (&["apiserveripinfo"], msg::NON_REST),
            (&["serviceipallocations"], msg::NON_REST),
            (&["servicenodeportallocations"], msg::NON_REST),
            (&["events.events.k8s.io"], msg::EVENTS),
            (&["*.events.k8s.io"], msg::EVENTS),
            (&["deployments.extensions"], msg::EXTENSIONS),
            (&["secrets.*"], msg::ACROSS_GROUPS),
            (&["secrets", "secrets"], msg::DUPLICATE),
            (&["secrets", "secrets."], msg::DUPLICATE),
            (&["*.*", "secrets"], msg::OVERLAP),
            (&["secrets", "*.*"], msg::OVERLAP),
            (&["*.", "secrets"], msg::OVERLAP),
            (&["*.apps", "deployments.apps"], msg::OVERLAP),
        ];
        for (list, want) in cases {
            let got = messages(list);
            assert!(got.iter().any(|m| m.contains(want)), "{list:?}: {got:?}");
        }
    }

    #[test]
    fn normalizes_and_explains() {
        let n = normalize_resources(&v(&[" Secrets", "secrets", "configmaps"]), true);
        assert_eq!(n.resources, v(&["secrets", "configmaps"]));
        assert_eq!(n.changes.len(), 2);
        let n = normalize_resources(&[], true);
        assert_eq!(n.resources, v(&["secrets"]));
        assert!(normalize_resources(&[], false).resources.is_empty());
        let n = normalize_resources(&v(&["secrets"]), true);
        assert!(n.changes.is_empty());
    }

    #[test]
    fn mutation_fix_says_what_the_mutating_webhook_would_do() {
        let list = v(&["Secrets", "secrets", " configmaps", "configmaps", "*.apps"]);
        let fix = |i| mutation_fix(&list, i).map(|(what, _)| what);
        assert_eq!(fix(0).as_deref(), Some("writes this entry as \"secrets\""));
        assert_eq!(fix(1).as_deref(), Some("drops this duplicate"));
        assert_eq!(
            fix(2).as_deref(),
            Some("writes this entry as \"configmaps\"")
        );
        assert_eq!(fix(3).as_deref(), Some("drops this duplicate"));
        assert_eq!(fix(4), None);
        assert_eq!(fix(5), None);
        // `secrets.` is not an exact duplicate: the mutating webhook keeps it.
        assert_eq!(mutation_fix(&v(&["secrets", "secrets."]), 1), None);
    }
}
