//! The result of `eargate verify`: counts, offenders and the verdict, rendered as text or as
//! one JSON document. Holds names and revisions only — never values or key material.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::classify::{display_name, Outcome, OutcomeKind};

/// Distinct key names counted per key before the rest are lumped together (names can come
/// from storage, so the map must not grow without bound).
const MAX_KEY_NAMES: usize = 100;
/// The bucket for key names beyond [`MAX_KEY_NAMES`].
const OTHER_KEYS: &str = "(other keys)";

/// Counts per outcome class, serialised with kebab-case names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Values sealed with the primary key.
    #[serde(rename = "sealed-with-primary")]
    pub sealed_with_primary: u64,
    /// Values sealed with a secondary key.
    #[serde(rename = "sealed-with-secondary")]
    pub sealed_with_secondary: u64,
    /// Values sealed with a key the config does not name.
    #[serde(rename = "sealed-with-unknown-key")]
    pub sealed_with_unknown_key: u64,
    /// Values a configured key did not open.
    #[serde(rename = "failed-to-open")]
    pub failed_to_open: u64,
    /// Values of another provider.
    #[serde(rename = "other-provider")]
    pub other_provider: u64,
    /// Plaintext values.
    pub plaintext: u64,
}

impl Counts {
    /// Adds one value of this class.
    pub fn add(&mut self, kind: OutcomeKind) {
        *self.slot(kind) += 1;
    }

    /// The count of one class.
    pub fn get(&self, kind: OutcomeKind) -> u64 {
        match kind {
            OutcomeKind::SealedWithPrimary => self.sealed_with_primary,
            OutcomeKind::SealedWithSecondary => self.sealed_with_secondary,
            OutcomeKind::SealedWithUnknownKey => self.sealed_with_unknown_key,
            OutcomeKind::FailedToOpen => self.failed_to_open,
            OutcomeKind::OtherProvider => self.other_provider,
            OutcomeKind::Plaintext => self.plaintext,
        }
    }

    fn slot(&mut self, kind: OutcomeKind) -> &mut u64 {
        match kind {
            OutcomeKind::SealedWithPrimary => &mut self.sealed_with_primary,
            OutcomeKind::SealedWithSecondary => &mut self.sealed_with_secondary,
            OutcomeKind::SealedWithUnknownKey => &mut self.sealed_with_unknown_key,
            OutcomeKind::FailedToOpen => &mut self.failed_to_open,
            OutcomeKind::OtherProvider => &mut self.other_provider,
            OutcomeKind::Plaintext => &mut self.plaintext,
        }
    }

    /// Every value counted.
    pub fn total(&self) -> u64 {
        OutcomeKind::ALL.iter().map(|k| self.get(*k)).sum()
    }

    /// Values not sealed with the primary key.
    pub fn not_primary(&self) -> u64 {
        self.total() - self.sealed_with_primary
    }
}

/// Values per secretbox key name (configured or found in storage), bounded in size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KeyCounts(BTreeMap<String, u64>);

impl KeyCounts {
    /// Counts one value sealed with `name`.
    pub fn add(&mut self, name: &str) {
        if let Some(n) = self.0.get_mut(name) {
            *n += 1;
        } else if self.0.len() < MAX_KEY_NAMES {
            self.0.insert(name.to_owned(), 1);
        } else {
            *self.0.entry(OTHER_KEYS.to_owned()).or_default() += 1;
        }
    }

    /// `(name, count)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// An object (or an older revision of one) that is not sealed with the primary key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offender {
    /// The resource, as the config names it.
    pub resource: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// The revision that wrote this value.
    pub revision: i64,
    /// How the value is stored.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// History only: the object was deleted later (only its old revisions remain).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Offender {
    /// From the part of the etcd key after the resource prefix (`ns/name` or `name`).
    pub fn new(resource: &str, object_path: &[u8], revision: i64, outcome: Outcome) -> Self {
        let (namespace, name) = match object_path.iter().position(|b| *b == b'/') {
            Some(i) => (
                Some(display_name(&object_path[..i])),
                display_name(&object_path[i + 1..]),
            ),
            None => (None, display_name(object_path)),
        };
        Self {
            resource: resource.to_owned(),
            namespace,
            name,
            revision,
            outcome,
            deleted: false,
        }
    }

    fn path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A bounded list of offenders: the first `limit` are kept, the rest only counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OffenderList {
    /// The offenders kept, in the order found.
    pub items: Vec<Offender>,
    /// Offenders beyond the limit, counted but not listed.
    pub omitted: u64,
    /// How many are kept at most.
    #[serde(skip)]
    pub limit: usize,
}

impl OffenderList {
    /// An empty list keeping at most `limit` entries.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Keeps the offender if there is room, else counts it.
    pub fn push(&mut self, offender: Offender) {
        if self.items.len() < self.limit {
            self.items.push(offender);
        } else {
            self.omitted += 1;
        }
    }
}

/// Results for one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceReport {
    /// The resource, as the config names it.
    pub resource: String,
    /// The etcd key prefix scanned.
    pub etcd_prefix: String,
    /// What the config writes new values with (`secretbox/<name>`, `identity`, ...).
    pub primary: String,
    /// Current objects per outcome.
    pub counts: Counts,
}

/// Results of `--history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryReport {
    /// etcd's last compaction revision (the oldest revision still readable); `null` when
    /// etcd was never compacted.
    pub compaction_revision: Option<i64>,
    /// The oldest revision read (the compaction revision, or 1).
    pub from_revision: i64,
    /// Values read for the scanned resources: the state at `from_revision` plus every
    /// write since, current values included.
    pub revisions_scanned: u64,
    /// Older (overwritten or deleted) revisions not sealed with the primary key, per outcome.
    pub older_counts: Counts,
    /// The same revisions per secretbox key name they are sealed with (a key about to be
    /// removed is never the primary, so this is what still needs it).
    pub older_keys: KeyCounts,
    /// Those revisions, by object.
    pub offenders: OffenderList,
    /// How to get rid of them.
    pub remedy: String,
}

/// The whole result. This is the documented JSON output of `eargate verify --output json`:
///
/// - `ok` (bool) and `verdict` (`verified` / `not-verified`): exit code 0 / 1;
/// - `etcd_revision`: the revision every current object was read at;
/// - `prefix`: the etcd prefix;
/// - `resources[]`: `resource`, `etcd_prefix`, `primary`, `counts` per outcome;
/// - `totals`: counts per outcome over all resources;
/// - `keys`: current values per secretbox key name;
/// - `offenders`: `{items: [{resource, namespace, name, revision, outcome, key?, reason?,
///   provider?}], omitted}` — current objects not sealed with the primary key;
/// - `history` (with `--history`, else `null`): `compaction_revision`, `from_revision`,
///   `revisions_scanned`, `older_counts`, `older_keys` (those revisions per secretbox key
///   name), `offenders` (items carry `deleted: true` when the object no longer exists),
///   `remedy`;
/// - `notes`: human sentences on what was checked: how wildcard entries (`*.*`, `*.`,
///   `*.<group>`) were expanded from the etcd keyspace, and what they left out;
/// - `problems`: human sentences explaining a negative verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Everything is sealed with the primary key (exit code 0).
    pub ok: bool,
    /// `verified` or `not-verified`.
    pub verdict: &'static str,
    /// The revision every current object was read at.
    pub etcd_revision: i64,
    /// The etcd prefix.
    pub prefix: String,
    /// One report per resource.
    pub resources: Vec<ResourceReport>,
    /// Counts per outcome over all resources.
    pub totals: Counts,
    /// Current values per secretbox key name.
    pub keys: KeyCounts,
    /// Current objects not sealed with the primary key.
    pub offenders: OffenderList,
    /// Older revisions, with `--history`.
    pub history: Option<HistoryReport>,
    /// What was checked, in sentences (wildcard expansion).
    pub notes: Vec<String>,
    /// Why the verdict is negative, in sentences.
    pub problems: Vec<String>,
}

pub use eargate_policy::storage_scan::{KeySummary, KeyUse, TERMINATION_MESSAGE_LIMIT};

impl Report {
    /// Per key name (those of `configured`, plus any found in storage): current objects and,
    /// with `--history`, older revisions sealed with it.
    pub fn key_summary<'a>(&self, configured: impl IntoIterator<Item = &'a str>) -> KeySummary {
        let history = self.history.as_ref();
        let mut keys: BTreeMap<String, KeyUse> = configured
            .into_iter()
            .map(|name| {
                let use_ = KeyUse {
                    objects: 0,
                    older_revisions: history.map(|_| 0),
                };
                (name.to_owned(), use_)
            })
            .collect();
        for (name, n) in self.keys.iter() {
            let entry = keys.entry(name.to_owned()).or_insert(KeyUse {
                objects: 0,
                older_revisions: history.map(|_| 0),
            });
            entry.objects = n;
        }
        if let Some(h) = history {
            for (name, n) in h.older_keys.iter() {
                keys.entry(name.to_owned()).or_default().older_revisions = Some(n);
            }
        }
        KeySummary {
            ok: self.ok,
            etcd_revision: self.etcd_revision,
            history: history.is_some(),
            keys,
            truncated: false,
        }
    }

    /// Fills in `ok`, `verdict` and `problems` from the counts.
    pub fn decide(&mut self) {
        let mut problems = Vec::new();
        for r in &self.resources {
            if !r.primary.starts_with("secretbox/") {
                problems.push(format!(
                    "{}: the config's first provider is {}, so new writes are not sealed with secretbox",
                    r.resource, r.primary
                ));
            }
            let c = &r.counts;
            for (kind, what) in [
                (OutcomeKind::Plaintext, "stored in plaintext"),
                (
                    OutcomeKind::SealedWithSecondary,
                    "sealed with a secondary key (rewrite them)",
                ),
                (
                    OutcomeKind::SealedWithUnknownKey,
                    "sealed with a key the config does not have (unreadable!)",
                ),
                (
                    OutcomeKind::FailedToOpen,
                    "not opened by the configured key (wrong key material or corrupt)",
                ),
                (OutcomeKind::OtherProvider, "sealed by another provider"),
            ] {
                let n = c.get(kind);
                if n > 0 {
                    problems.push(format!("{}: {n} object(s) {what}", r.resource));
                }
            }
        }
        if let Some(h) = &self.history {
            if h.older_counts.plaintext > 0 {
                problems.push(format!(
                    "{} older plaintext revision(s) remain in etcd's history",
                    h.older_counts.plaintext
                ));
            }
        }
        self.ok = problems.is_empty();
        self.verdict = if self.ok { "verified" } else { "not-verified" };
        self.problems = problems;
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }

    /// A summary table, then the offending objects by namespace/name.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "etcd revision {}, prefix {}",
            self.etcd_revision, self.prefix
        );
        let header = [
            "RESOURCE",
            "PRIMARY",
            "OBJECTS",
            "PRIMARY-KEY",
            "SECONDARY",
            "UNKNOWN-KEY",
            "FAILED",
            "OTHER-PROVIDER",
            "PLAINTEXT",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for r in &self.resources {
            rows.push(count_row(&r.resource, &r.primary, &r.counts));
        }
        if self.resources.len() > 1 {
            rows.push(count_row("TOTAL", "", &self.totals));
        }
        table(&mut out, &rows);
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let keys: Vec<String> = self.keys.iter().map(|(k, n)| format!("{k}={n}")).collect();
        if !keys.is_empty() {
            let _ = writeln!(out, "values per key: {}", keys.join(", "));
        }
        offender_lines(
            &mut out,
            "objects not sealed with the primary key",
            &self.offenders,
        );
        if let Some(h) = &self.history {
            let _ = writeln!(out);
            match h.compaction_revision {
                Some(c) => {
                    let _ = writeln!(out, "history: compaction revision {c}, {} value(s) read from revision {c} to {}", h.revisions_scanned, self.etcd_revision);
                }
                None => {
                    let _ = writeln!(out, "history: etcd was never compacted, {} value(s) read from revision {} to {}", h.revisions_scanned, h.from_revision, self.etcd_revision);
                }
            }
            let c = &h.older_counts;
            let _ = writeln!(
                out,
                "older revisions not sealed with the primary key: plaintext={} secondary={} unknown-key={} failed={} other-provider={}",
                c.plaintext, c.sealed_with_secondary, c.sealed_with_unknown_key, c.failed_to_open, c.other_provider
            );
            offender_lines(&mut out, "older revisions", &h.offenders);
            if h.older_counts.total() > 0 {
                let _ = writeln!(out, "how to remove them: {}", h.remedy);
            }
        }
        let _ = writeln!(out);
        if self.ok {
            let _ = writeln!(
                out,
                "VERIFIED: every current object is sealed with the primary key{}",
                if self.history.is_some() {
                    " and no plaintext revision remains"
                } else {
                    ""
                }
            );
        } else {
            let _ = writeln!(out, "NOT VERIFIED:");
            for p in &self.problems {
                let _ = writeln!(out, "  - {p}");
            }
        }
        out
    }
}

fn count_row(name: &str, primary: &str, c: &Counts) -> Vec<String> {
    let mut row = vec![name.to_owned(), primary.to_owned(), c.total().to_string()];
    row.extend(OutcomeKind::ALL.iter().map(|k| c.get(*k).to_string()));
    row
}

fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

fn offender_lines(out: &mut String, title: &str, list: &OffenderList) {
    if list.items.is_empty() && list.omitted == 0 {
        return;
    }
    let _ = writeln!(out, "{title} ({}):", list.items.len() as u64 + list.omitted);
    let mut items: Vec<&Offender> = list.items.iter().collect();
    items.sort_by(|a, b| {
        (&a.resource, &a.namespace, &a.name, a.revision).cmp(&(
            &b.resource,
            &b.namespace,
            &b.name,
            b.revision,
        ))
    });
    for o in items {
        let _ = writeln!(
            out,
            "  {} {}  {}  revision {}{}",
            o.resource,
            o.path(),
            o.outcome.describe(),
            o.revision,
            if o.deleted {
                " (object deleted since)"
            } else {
                ""
            }
        );
    }
    if list.omitted > 0 {
        let _ = writeln!(out, "  … and {} more (not listed)", list.omitted);
    }
}
