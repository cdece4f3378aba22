//! The decision: every rule of a safe Cluster edit (see [`crate::rules`]) and the warnings.
//! Pure functions over [`ClusterFacts`]; the review codec and `eargate check` call them.

use std::collections::BTreeSet;

use crate::facts::ClusterFacts;
use crate::keys::decode_key;
use crate::model::{EncryptionConfiguration, EncryptionPhase, SecretboxKey};
use crate::names::{
    ACTIVE_KEY_IDENTITY, CONDITION_ENCRYPTION_INITIALIZED, DEFAULT_STATUS_WRITER,
    FEATURE_ENCRYPTION_AT_REST, MUTATING_WEBHOOK_NAME, SECRETBOX_STORAGE_PREFIX,
};
use crate::resources::{duplicate_once_cleaned, msg, mutation_fix, validate_resources};
use crate::rules::{self, Rule, WarningKind};
use crate::status::{is_rollout_locked, secretbox_active_key};

/// Policy settings that come from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Identities (`request.userInfo.username`) allowed to change `status.encryption`.
    pub status_writers: Vec<String>,
    /// Who rolls configs out to the API servers; the key-removal warning (EARW08) says what
    /// happens to a removed key accordingly.
    pub rollout_by: RolloutBy,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            status_writers: vec![DEFAULT_STATUS_WRITER.to_owned()],
            rollout_by: RolloutBy::default(),
        }
    }
}

/// Who rolls the rendered `EncryptionConfiguration` out to the API servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RolloutBy {
    /// eargate's reconciler: a removed key stays until a storage scan finds nothing sealed
    /// with it.
    #[default]
    Eargate,
    /// Another controller (Kubermatic's, in a gate-only install): a removed key leaves the
    /// API servers' config with its next rollout.
    Other,
}

/// Admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
}

impl Operation {
    /// Parses `request.operation`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CREATE" => Self::Create,
            "UPDATE" => Self::Update,
            "DELETE" => Self::Delete,
            "CONNECT" => Self::Connect,
            _ => return None,
        })
    }

    /// The operation as kube-apiserver spells it (`CREATE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// One broken rule: which, where, about which key, what is wrong and what to do.
/// Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub rule: &'static Rule,
    /// Field path, e.g. `spec.encryptionConfiguration.secretbox.keys[1].value`.
    pub field: String,
    /// The key concerned, by name.
    pub key: Option<String>,
    /// What is wrong and the next step.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.rule.id, self.field, self.message)
    }
}

/// One warning: which kind (an id of [`rules::WARNINGS`]), the field it is about, and the
/// text. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Which kind of warning, with its id.
    pub kind: &'static WarningKind,
    /// Field path, e.g. `spec.encryptionConfiguration.resources[0]`; `request.kind` or
    /// `request.operation` for a warning about the request itself.
    pub field: String,
    /// The whole text, exactly as sent to kube-apiserver and printed by kubectl after
    /// `Warning: ` (where it reads naturally, it starts with the field).
    pub message: String,
}

impl Warning {
    /// A warning of `kind` about `field`, with its whole text.
    pub fn new(
        kind: &'static WarningKind,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable id, e.g. `EARW04`.
    pub fn id(&self) -> &'static str {
        self.kind.id
    }
}

/// The text as sent: the id is not part of it, so kubectl's `Warning:` lines read as they
/// always have.
impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The verdict of the validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The rules broken, in the order found; none means allowed.
    pub violations: Vec<Violation>,
    /// The warnings to send with the verdict.
    pub warnings: Vec<Warning>,
}

impl Decision {
    /// `true` when no rule is broken.
    pub fn allowed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Distinct rule ids of the violations, in table order.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        let set: BTreeSet<&'static str> = self.violations.iter().map(|v| v.rule.id).collect();
        set.into_iter().collect()
    }

    /// The denial message, as kube-apiserver shows it after `admission webhook "…" denied the request: `.
    pub fn message(&self, cluster: &str) -> String {
        let n = self.violations.len();
        let mut out = format!(
            "Cluster {cluster:?}: {n} problem{} with the encryption configuration:",
            if n == 1 { "" } else { "s" }
        );
        for v in &self.violations {
            out.push_str("\n- ");
            out.push_str(&v.to_string());
        }
        out
    }
}

/// One admission request as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What is being done to the Cluster.
    pub operation: Operation,
    /// `request.subResource`, e.g. `status`.
    pub subresource: Option<&'a str>,
    /// `userInfo.username` of whoever makes the change.
    pub user: &'a str,
    /// The old object (UPDATE, DELETE).
    pub old: Option<&'a ClusterFacts>,
    /// The new object (CREATE, UPDATE), exactly as the validating webhook received it (after
    /// the mutating webhook's patch, when that webhook ran).
    pub new: Option<&'a ClusterFacts>,
    /// Who may write `status.encryption`.
    pub config: &'a PolicyConfig,
}

const CFG: &str = "spec.encryptionConfiguration";
const ENABLED: &str = "spec.encryptionConfiguration.enabled";
const KEYS: &str = "spec.encryptionConfiguration.secretbox.keys";
const KEYGEN_HINT: &str = "make a key with `head -c 32 /dev/urandom | base64` or `eargate keygen`";

fn v(
    rule: &'static Rule,
    field: impl Into<String>,
    key: Option<&str>,
    message: impl Into<String>,
) -> Violation {
    Violation {
        rule,
        field: field.into(),
        key: key.map(str::to_owned),
        message: message.into(),
    }
}

/// How a message names keys[i]: by its name, or by position when it has none. Formatted
/// only into a message, so admitting an edit allocates nothing for it.
struct Who<'a>(usize, &'a SecretboxKey);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Who(i, key) = self;
        if key.name.is_empty() {
            write!(f, "key #{i} (unnamed)")
        } else {
            write!(f, "key {:?}", key.name)
        }
    }
}

/// The field path of keys[i], formatted only into a violation.
struct KeyPath(usize);

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{KEYS}[{}]", self.0)
    }
}

fn valid_key_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn phase_text(f: &ClusterFacts) -> String {
    match (&f.phase, &f.phase_raw) {
        (Some(p), _) => format!("phase {p}"),
        (None, Some(raw)) => format!("unknown phase {raw:?}"),
        (None, None) => "no status.encryption reported yet".to_owned(),
    }
}

/// Validates one request.
///
/// `new` is judged as received: EAR005 reads its `resources` list as it is, so capitals,
/// surrounding whitespace and duplicates that the mutating webhook would have fixed are
/// denied when it did not run. The one default assumed is that a missing or empty list of
/// an enabled configuration means `[secrets]`. Every comparison with the stored object
/// (EAR006, EAR007) and the warnings read what the edit means, i.e. both objects as the
/// mutating webhook would leave them, so a respelled list is one EAR005 denial and not also
/// a change of the encrypted resources.
pub fn validate(req: &Request<'_>) -> Decision {
    let mut d = Decision::default();
    let Some(new) = req.new else { return d };
    match req.operation {
        Operation::Delete | Operation::Connect => return d,
        Operation::Create | Operation::Update => {}
    }
    match req.subresource {
        None | Some("") => {}
        Some(crate::names::STATUS_SUBRESOURCE) => {
            if req.operation == Operation::Update {
                ear014_status_writers(req, new, &mut d);
            }
            return d;
        }
        Some(_) => return d,
    }
    if !new.problems.is_empty() {
        d.violations.extend(new.problems.iter().cloned());
        return d;
    }
    let old_normalized;
    let old = match (req.operation, req.old) {
        // The stored object as the mutating webhook would have left it; copied only when
        // that changes something (an object stored before eargate guarded the cluster).
        (Operation::Update, Some(old)) if old.problems.is_empty() => {
            if old.normalized_resources().is_none() {
                Some(old)
            } else {
                let mut o = old.clone();
                o.apply_defaults();
                old_normalized = o;
                Some(&old_normalized)
            }
        }
        (Operation::Update, Some(old)) => {
            let field = old.problems.first().map_or(CFG, |p| p.field.as_str());
            d.warnings.push(Warning::new(
                &rules::EARW11,
                field,
                "the stored object's encryption fields do not decode; the edit was judged as if it had no encryption configuration",
            ));
            None
        }
        _ => None,
    };
    // What the edit means: the new object as the mutating webhook would leave it (copied
    // only when that changes something).
    let received: &[String] = new
        .config
        .as_ref()
        .map(|c| c.resources.as_slice())
        .unwrap_or_default();
    let new_meaning;
    let meaning = match new.normalized_resources() {
        None => new,
        Some(n) => {
            let mut m = new.clone();
            if let Some(cfg) = m.config.as_mut() {
                cfg.resources = n.resources;
            }
            m.resources_present = true;
            new_meaning = m;
            &new_meaning
        }
    };
    // EAR005 judges the list as received, unless it is empty: then the default it means.
    let judged = if received.is_empty() {
        meaning
            .config
            .as_ref()
            .map(|c| c.resources.as_slice())
            .unwrap_or_default()
    } else {
        received
    };
    static_rules(meaning, judged, old, &mut d);
    if let Some(old) = old {
        update_rules(meaning, old, &mut d);
    }
    inline_warnings(meaning, &mut d);
    // What an edit will set in motion is only worth saying when it is allowed.
    if d.violations.is_empty() {
        change_warnings(meaning, old, req.config.rollout_by, &mut d);
    }
    d
}

/// Rules 1–5: the new object on its own; `resources` is the list EAR005 judges.
fn static_rules(
    new: &ClusterFacts,
    resources: &[String],
    old: Option<&ClusterFacts>,
    d: &mut Decision,
) {
    let Some(cfg) = new.config.as_ref() else {
        return;
    };
    ear001_feature_gate(new, cfg, old, d);
    ear002_enabled_needs_a_key(new, cfg, d);
    // Per key, so that the violations of one key stay together.
    let keys = new.keys();
    for i in 0..keys.len() {
        ear003_key_name_and_source(keys, i, d);
        ear004_inline_key_material(keys, i, d);
    }
    ear005_resources(cfg, resources, d);
}

/// EAR001: enabled needs the feature gate (EAR012 speaks instead when this very edit
/// turned the gate off).
fn ear001_feature_gate(
    new: &ClusterFacts,
    cfg: &EncryptionConfiguration,
    old: Option<&ClusterFacts>,
    d: &mut Decision,
) {
    let gate_turned_off = old.is_some_and(|o| o.feature_gate) && !new.feature_gate;
    if cfg.enabled && !new.feature_gate && !gate_turned_off {
        d.violations.push(v(
            &rules::EAR001,
            format!("{CFG}.enabled"),
            None,
            format!("encryption is enabled but the feature gate spec.features.{FEATURE_ENCRYPTION_AT_REST} is not true; set spec.features.{FEATURE_ENCRYPTION_AT_REST}: true in the same edit"),
        ));
    }
}

/// EAR002: enabled needs at least one secretbox key.
fn ear002_enabled_needs_a_key(new: &ClusterFacts, cfg: &EncryptionConfiguration, d: &mut Decision) {
    if cfg.enabled && new.keys().is_empty() {
        d.violations.push(v(
            &rules::EAR002,
            KEYS,
            None,
            "encryption is enabled but no secretbox key is configured; add a key (name plus secretRef, or value from `eargate keygen`)",
        ));
    }
}

/// EAR003: keys[i] has a valid, unique name and exactly one complete source.
fn ear003_key_name_and_source(keys: &[SecretboxKey], i: usize, d: &mut Decision) {
    let key = &keys[i];
    let path = KeyPath(i);
    let name = (!key.name.is_empty()).then_some(key.name.as_str());
    let who = Who(i, key);
    // Names.
    if key.name.is_empty() {
        d.violations.push(v(
            &rules::EAR003,
            format!("{path}.name"),
            None,
            format!("{who} has no name; give every key a unique name such as encryption-key-2024-01 (kube-apiserver embeds it in the storage prefix {SECRETBOX_STORAGE_PREFIX}<name>:)"),
        ));
    } else if !valid_key_name(&key.name) {
        d.violations.push(v(
            &rules::EAR003,
            format!("{path}.name"),
            name,
            format!("{who}: the name may contain only letters, digits, '-', '_' and '.' because kube-apiserver embeds it in the storage prefix {SECRETBOX_STORAGE_PREFIX}<name>: (a ':' would make the prefix ambiguous); rename the key, e.g. {}", suggest_name(&key.name)),
        ));
    } else if let Some(j) = keys[..i].iter().position(|k| k.name == key.name) {
        d.violations.push(v(
            &rules::EAR003,
            format!("{path}.name"),
            name,
            format!("{who}: the name is already used by keys[{j}]; names must be unique because kube-apiserver picks the key for a stored value by the name in its prefix; give this key a new name"),
        ));
    }
    // Sources.
    match (&key.value, &key.secret_ref) {
        (Some(_), Some(_)) => d.violations.push(v(
            &rules::EAR003,
            path.to_string(),
            name,
            format!("{who}: has both value and secretRef; keep exactly one (secretRef is recommended)"),
        )),
        (None, None) => d.violations.push(v(
            &rules::EAR003,
            path.to_string(),
            name,
            format!("{who}: has neither value nor secretRef; set secretRef to a Secret in the control-plane namespace (or value, {KEYGEN_HINT})"),
        )),
        _ => {}
    }
    if let Some(r) = &key.secret_ref {
        if r.name.is_empty() {
            d.violations.push(v(
                &rules::EAR003,
                format!("{path}.secretRef.name"),
                name,
                format!("{who}: secretRef.name is empty; name the Secret in the cluster's control-plane namespace that holds the key"),
            ));
        }
        if r.key.is_empty() {
            d.violations.push(v(
                &rules::EAR003,
                format!("{path}.secretRef.key"),
                name,
                format!(
                    "{who}: secretRef.key is empty; name the data key inside the Secret (e.g. key)"
                ),
            ));
        }
    }
}

/// EAR004: an inline value is 32 bytes of standard base64.
fn ear004_inline_key_material(keys: &[SecretboxKey], i: usize, d: &mut Decision) {
    let key = &keys[i];
    if let Some(value) = &key.value {
        if let Err(err) = decode_key(value) {
            d.violations.push(v(
                &rules::EAR004,
                format!("{}.value", KeyPath(i)),
                (!key.name.is_empty()).then_some(key.name.as_str()),
                format!("{}: {err}; {KEYGEN_HINT}", Who(i, key)),
            ));
        }
    }
}

/// EAR005: `resources` as received follows kube-apiserver's rules.
fn ear005_resources(cfg: &EncryptionConfiguration, resources: &[String], d: &mut Decision) {
    if cfg.enabled || !resources.is_empty() {
        let mut problems = validate_resources(resources);
        // An entry that only duplicates another once that one is written as it must be
        // (`secrets` after `Secrets`): said now, so that fixing the other is not refused next.
        for i in 0..resources.len() {
            if problems.iter().any(|p| p.index == Some(i)) {
                continue;
            }
            if let Some(j) = duplicate_once_cleaned(resources, i) {
                problems.push(crate::resources::ResourceProblem {
                    index: Some(i),
                    resource: Some(resources[i].clone()),
                    message: format!(
                        "duplicates resources[{j}] {:?} once that entry is written as it must be: {}",
                        resources[j],
                        msg::DUPLICATE
                    ),
                });
            }
        }
        problems.sort_by_key(|p| p.index);
        for p in problems {
            let field = format!("{CFG}.resources{}", p.field_suffix());
            let mut message = match &p.resource {
                Some(r) => format!("{r:?}: {}", p.message),
                None => p.message.clone(),
            };
            if let Some((fix, instead)) = p.index.and_then(|i| mutation_fix(resources, i)) {
                message.push_str(&format!(
                    "; the mutating webhook {MUTATING_WEBHOOK_NAME} normally {fix} before validation: is it installed (kubectl get mutatingwebhookconfigurations)? Or {instead} yourself"
                ));
            }
            d.violations.push(v(&rules::EAR005, field, None, message));
        }
    }
}

/// A name with the refused characters replaced.
fn suggest_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if valid_key_name(&c.to_string()) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn material_differs(a: &SecretboxKey, b: &SecretboxKey) -> Option<&'static str> {
    match (&a.value, &b.value) {
        (Some(x), Some(y)) => {
            let same = match (decode_key(x), decode_key(y)) {
                (Ok(p), Ok(q)) => p == q,
                _ => x == y,
            };
            if !same {
                return Some("value");
            }
        }
        (None, None) => {}
        _ => return Some(""),
    }
    match (&a.secret_ref, &b.secret_ref) {
        (Some(x), Some(y)) if x.name != y.name || x.key != y.key => Some("secretRef"),
        (Some(_), None) | (None, Some(_)) => Some(""),
        _ => None,
    }
}

/// Rules 6–10 and 12: the edit judged against the stored object.
fn update_rules(new: &ClusterFacts, old: &ClusterFacts, d: &mut Decision) {
    ear006_rollout_lock(new, old, d);
    ear007_resources_fixed_while_enabled(new, old, d);
    ear008_key_material_immutable(new, old, d);
    ear009_new_keys_enter_as_secondary(new, old, d);
    ear010_safe_key_removal(new, old, d);
    ear012_feature_gate_stays_on(new, old, d);
}

/// EAR006: nothing of the configuration changes while a rollout runs.
fn ear006_rollout_lock(new: &ClusterFacts, old: &ClusterFacts, d: &mut Decision) {
    let name = &new.name;
    if is_rollout_locked(old.phase) {
        let watch = format!(
            "encryption is being rolled out ({}); the encryption configuration is locked until the phase is Active: watch it with `kubectl get cluster {name} -o jsonpath='{{.status.encryption.phase}}'`, then retry",
            phase_text(old)
        );
        if old.config != new.config {
            d.violations
                .push(v(&rules::EAR006, CFG, None, watch.clone()));
        }
        if old.feature_gate != new.feature_gate {
            d.violations.push(v(
                &rules::EAR006,
                format!("spec.features.{FEATURE_ENCRYPTION_AT_REST}"),
                None,
                watch,
            ));
        }
    }
}

/// EAR007: the encrypted resources stay fixed while encryption stays enabled.
fn ear007_resources_fixed_while_enabled(new: &ClusterFacts, old: &ClusterFacts, d: &mut Decision) {
    if let (Some(o), Some(n)) = (old.config.as_ref(), new.config.as_ref()) {
        if o.enabled && n.enabled {
            let a: BTreeSet<&String> = o.resources.iter().collect();
            let b: BTreeSet<&String> = n.resources.iter().collect();
            if a != b {
                d.violations.push(v(
                    &rules::EAR007,
                    format!("{CFG}.resources"),
                    None,
                    format!(
                        "the encrypted resources cannot change while encryption stays enabled (was {}, now {}); set enabled: false, wait until decryption has finished (status.encryption cleared, or phase Active with activeKey identity), then re-enable with the new list",
                        list(&o.resources),
                        list(&n.resources)
                    ),
                ));
            }
        }
    }
}

/// EAR008: the material of a key, by name, never changes.
fn ear008_key_material_immutable(new: &ClusterFacts, old: &ClusterFacts, d: &mut Decision) {
    let old_keys = old.keys();
    for (i, key) in new.keys().iter().enumerate() {
        if key.name.is_empty() {
            continue;
        }
        let Some(o) = old_keys.iter().find(|k| k.name == key.name) else {
            continue;
        };
        if let Some(what) = material_differs(o, key) {
            let field = if what.is_empty() {
                format!("{KEYS}[{i}]")
            } else {
                format!("{KEYS}[{i}].{what}")
            };
            d.violations.push(v(
                &rules::EAR008,
                field,
                Some(&key.name),
                format!("key {:?}: the key material of an existing key cannot change (data sealed with it would become unreadable); add a key with a new name as secondary and rotate instead", key.name),
            ));
        }
    }
}

/// EAR009: a key new to the list enters as a secondary while another key is active.
fn ear009_new_keys_enter_as_secondary(new: &ClusterFacts, old: &ClusterFacts, d: &mut Decision) {
    let old_keys = old.keys();
    if let (Some(primary), Some(active_name)) = (new.keys().first(), old.active_secretbox_key()) {
        if !primary.name.is_empty() && !old_keys.iter().any(|k| k.name == primary.name) {
            d.violations.push(v(
                &rules::EAR009,
                format!("{KEYS}[0]"),
                Some(&primary.name),
                format!(
                    "key {:?} is new and cannot be the primary key while {} is active; add it as a secondary key (keys[1]) first, wait for phase Active, then move it to keys[0]",
                    primary.name,
                    secretbox_active_key(active_name)
                ),
            ));
        }
    }
}

/// EAR010: a key leaves the list only when no stored data can still be sealed with it.
fn ear010_safe_key_removal(new: &ClusterFacts, old: &ClusterFacts, d: &mut Decision) {
    let (old_keys, new_keys) = (old.keys(), new.keys());
    let active = old.active_key.as_deref().unwrap_or_default();
    let active_name = old.active_secretbox_key();
    if new.config.is_some() {
        let mut seen = BTreeSet::new();
        for o in old_keys {
            if o.name.is_empty()
                || !seen.insert(o.name.as_str())
                || new_keys.iter().any(|k| k.name == o.name)
            {
                continue;
            }
            let message = if active_name == Some(o.name.as_str()) {
                format!("key {:?} was removed but it is the active key ({active}): stored data is sealed with it; keep it until another key is primary and the phase is Active again", o.name)
            } else if old.phase != Some(EncryptionPhase::Active) {
                let next = if old.phase == Some(EncryptionPhase::Failed) {
                    "fix the failure (see status.conditions) and wait for phase Active"
                } else {
                    "wait for phase Active"
                };
                format!(
                    "key {:?} was removed but keys may only be removed in phase Active ({}): data may still be sealed with it; keep it, {next}, then remove it",
                    o.name,
                    phase_text(old)
                )
            } else {
                continue;
            };
            d.violations
                .push(v(&rules::EAR010, KEYS, Some(&o.name), message));
        }
    }
}

/// EAR012: the feature gate stays on while encryption is enabled or still active.
fn ear012_feature_gate_stays_on(new: &ClusterFacts, old: &ClusterFacts, d: &mut Decision) {
    if old.feature_gate && !new.feature_gate && (new.enabled() || old.may_hold_sealed_data()) {
        let why = match old.active_key.as_deref() {
            _ if new.enabled() => "encryption is enabled in this object".to_owned(),
            Some(k) if old.phase == Some(EncryptionPhase::Active) => format!("active key {k}"),
            _ => phase_text(old),
        };
        d.violations.push(v(
            &rules::EAR012,
            format!("spec.features.{FEATURE_ENCRYPTION_AT_REST}"),
            None,
            format!("the feature gate cannot be turned off while encryption is enabled or still active ({why}); disable encryption first, wait until decryption has finished (status.encryption cleared, or phase Active with activeKey {ACTIVE_KEY_IDENTITY}), then remove the feature gate"),
        ));
    }
}

/// EAR014: only the configured status writers change the encryption status.
fn ear014_status_writers(req: &Request<'_>, new: &ClusterFacts, d: &mut Decision) {
    if req.config.status_writers.iter().any(|w| w == req.user) {
        return;
    }
    let Some(old) = req.old else { return };
    let writers = req.config.status_writers.join(", ");
    let deny = |field: String| {
        v(
            &rules::EAR014,
            field,
            None,
            format!(
                "only the eargate reconciler may change the encryption status; user {:?} is not one of the configured status writers ({writers})",
                req.user
            ),
        )
    };
    if old.status_encryption_raw != new.status_encryption_raw {
        d.violations.push(deny("status.encryption".to_owned()));
    }
    if old.initialized_raw != new.initialized_raw {
        d.violations.push(deny(format!(
            "status.conditions.{CONDITION_ENCRYPTION_INITIALIZED}"
        )));
    }
}

const BACKUP_NOTE: &str = "etcd backups taken in the next minutes may still hold older revisions until kube-apiserver compacts them (every 5 minutes)";

/// Inline key material is readable by anyone who reads the Cluster (or its git repository).
fn inline_warnings(new: &ClusterFacts, d: &mut Decision) {
    for (i, key) in new.keys().iter().enumerate() {
        if key.value.is_some() {
            let field = format!("{KEYS}[{i}].value");
            let message = format!(
                "{field}: {} carries its key material inline: anyone who can read Clusters (or the git repository they come from) can read the key; prefer secretRef to a Secret in the control-plane namespace",
                Who(i, key)
            );
            d.warnings
                .push(Warning::new(&rules::EARW04, field, message));
        }
    }
}

/// Enabling, rotation, new secondaries, key removal and disabling: what will happen next.
fn change_warnings(
    new: &ClusterFacts,
    old: Option<&ClusterFacts>,
    rollout_by: RolloutBy,
    d: &mut Decision,
) {
    let Some(cfg) = new.config.as_ref() else {
        if let Some(o) = old.filter(|o| o.enabled()) {
            d.warnings.push(Warning::new(&rules::EARW10, CFG, format!(
                "{CFG} removed: encryption at rest will be disabled and every object of {} re-written in plaintext; the reconciler keeps the keys it rendered until decryption has finished; {BACKUP_NOTE}",
                list(&o.config.as_ref().map(|c| c.resources.clone()).unwrap_or_default())
            )));
        }
        return;
    };
    let was_enabled = old.is_some_and(|o| o.enabled());
    let primary = new
        .keys()
        .first()
        .map(|k| k.name.as_str())
        .unwrap_or_default();
    if cfg.enabled && !was_enabled {
        d.warnings.push(Warning::new(&rules::EARW05, ENABLED, format!(
            "enabling encryption at rest: every object of {} will be re-written sealed with key {primary:?}; data is encrypted only at rest in etcd, anyone allowed by RBAC still reads it in plaintext through the API; {BACKUP_NOTE}; watch status.encryption.phase until Active",
            list(&cfg.resources)
        )));
    }
    if let Some(o) = old {
        let old_primary = o
            .keys()
            .first()
            .map(|k| k.name.as_str())
            .unwrap_or_default();
        if cfg.enabled && was_enabled && !primary.is_empty() && old_primary != primary {
            d.warnings.push(Warning::new(&rules::EARW06, KeyPath(0).to_string(), format!(
                "key rotation: key {primary:?} becomes the primary key; every object of {} will be re-written sealed with it; keep {old_primary:?} in the list until the phase is Active again; {BACKUP_NOTE}",
                list(&cfg.resources)
            )));
        }
        for (i, key) in new.keys().iter().enumerate().skip(1) {
            if !key.name.is_empty() && !o.keys().iter().any(|k| k.name == key.name) {
                d.warnings.push(Warning::new(&rules::EARW07, KeyPath(i).to_string(), format!(
                    "key {:?} added as a secondary key: the API servers will be able to decrypt with it; once the phase is Active, move it to keys[0] to make it the primary key",
                    key.name
                )));
            }
        }
        for k in o.keys() {
            if !k.name.is_empty() && !new.keys().iter().any(|n| n.name == k.name) {
                let when = match rollout_by {
                    RolloutBy::Eargate => "eargate's reconciler drops it from the API servers' config only after a storage scan of etcd finds nothing sealed with it (no object, no older revision; condition EncryptionKeysRetained); from then on nothing sealed with it can be read",
                    RolloutBy::Other => "the API servers will no longer be able to read anything sealed with it once the next rollout drops it",
                };
                d.warnings.push(Warning::new(&rules::EARW08, KEYS, format!(
                    "key {:?} removed from the configuration: {when}, including etcd backups you might restore: keep a copy of the key material outside the cluster until those backups expire",
                    k.name
                )));
            }
        }
        if was_enabled && !cfg.enabled {
            d.warnings.push(Warning::new(&rules::EARW09, ENABLED, format!(
                "disabling encryption at rest: every object of {} will be re-written in plaintext; keep the keys in the list until the phase is Active; {BACKUP_NOTE}",
                list(&o.config.as_ref().map(|c| c.resources.clone()).unwrap_or_default())
            )));
        }
    }
}
