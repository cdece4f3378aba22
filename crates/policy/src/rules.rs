//! Every rule of the policy in ONE table: id, title, why, and an example denial. Messages
//! (each [`crate::Violation`] carries its rule), metrics (the server labels by rule id) and
//! `docs/rules.md` (generated from this table by a test) all read from here.
//!
//! The check of rule `EARnnn` is the function `earnnn_…` in `policy.rs` (EAR000, the
//! decoding of the fields, is in `facts.rs`). EAR011 and EAR013 have no check of their
//! own: they say which edits the other rules always allow, and tests hold them to it.
//!
//! Warnings have a table of their own, [`WARNINGS`], in the same style: ids `EARW01`…
//! (`W` for warning, two digits), never renumbered, each with a title, what it tells the
//! user and a real example. A warning never denies: it says what the mutating webhook
//! changed or what an allowed edit sets in motion. Its text, as kubectl prints it after
//! `Warning: `, does not carry the id (the wire text is kept as it always was);
//! `eargate check -o json` lists the id and the field with each warning.

/// One rule of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Stable id, `EAR000`…`EAR014`. Never renumber: ids appear in metrics and alerts.
    pub id: &'static str,
    /// What the rule protects, in a few words.
    pub title: &'static str,
    /// When the rule applies (operation and subresource).
    pub applies_to: &'static str,
    /// Why the rule exists and what it checks.
    pub explanation: &'static str,
    /// A real violation message produced by the policy (kept true by a test), or, for the
    /// rules that only guarantee an edit is allowed, `None`.
    pub example_denial: Option<&'static str>,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

macro_rules! rules {
    ($($name:ident = { id: $id:literal, title: $title:literal, applies_to: $applies:literal, explanation: $expl:literal, example: $ex:expr $(,)? };)*) => {
        $(#[doc = concat!("Rule ", $id, ": ", $title)]
        pub const $name: Rule = Rule { id: $id, title: $title, applies_to: $applies, explanation: $expl, example_denial: $ex };)*
        /// Every rule, in id order.
        pub const ALL: &[Rule] = &[$($name),*];
    };
}

rules! {
    EAR000 = {
        id: "EAR000",
        title: "Encryption fields must decode",
        applies_to: "CREATE, UPDATE",
        explanation: "The fields eargate reads (`spec.features.encryptionAtRest`, `spec.encryptionConfiguration` and everything below it) must have the types Kubermatic's API declares: `enabled` a boolean, `resources` a list of strings, keys objects with string `name`/`value` and a `secretRef` object. A field of the wrong type is denied naming the field, so a typo such as `enabled: \"yes\"` can never be read as \"disabled\".",
        example: Some("spec.encryptionConfiguration.enabled: must be a boolean (true or false), got a string; write `enabled: true` without quotes"),
    };
    EAR001 = {
        id: "EAR001",
        title: "Feature gate",
        applies_to: "CREATE, UPDATE",
        explanation: "`spec.encryptionConfiguration.enabled: true` requires the cluster feature gate `spec.features.encryptionAtRest: true`, as Kubermatic does: encryption at rest is a preview feature that must be switched on explicitly.",
        example: Some("spec.encryptionConfiguration.enabled: encryption is enabled but the feature gate spec.features.encryptionAtRest is not true; set spec.features.encryptionAtRest: true in the same edit"),
    };
    EAR002 = {
        id: "EAR002",
        title: "Enabled needs a secretbox key",
        applies_to: "CREATE, UPDATE",
        explanation: "With `enabled: true`, `spec.encryptionConfiguration.secretbox.keys` must hold at least one key: secretbox is the only provider, and `keys[0]` is the key new writes are sealed with.",
        example: Some("spec.encryptionConfiguration.secretbox.keys: encryption is enabled but no secretbox key is configured; add a key (name plus secretRef, or value from `eargate keygen`)"),
    };
    EAR003 = {
        id: "EAR003",
        title: "Key names and key sources",
        applies_to: "CREATE, UPDATE",
        explanation: "Every key (enabled or not) needs a `name`, unique in the list (the later duplicate is reported), made of letters, digits, `-`, `_` and `.` only: kube-apiserver embeds the name in the storage prefix `k8s:enc:secretbox:v1:<name>:` of every value it seals, so a `:` would make the prefix ambiguous. Each key has exactly one of `value` and `secretRef`, and a `secretRef` names both the Secret (`name`) and the data key inside it (`key`).",
        example: Some("spec.encryptionConfiguration.secretbox.keys[1].name: key \"encryption-key:2022-02\": the name may contain only letters, digits, '-', '_' and '.' because kube-apiserver embeds it in the storage prefix k8s:enc:secretbox:v1:<name>: (a ':' would make the prefix ambiguous); rename the key, e.g. encryption-key-2022-02"),
    };
    EAR004 = {
        id: "EAR004",
        title: "Inline key material is 32 bytes of standard base64",
        applies_to: "CREATE, UPDATE",
        explanation: "A `value` is decoded exactly as kube-apiserver decodes it (Go `base64.StdEncoding`: standard alphabet, padding required, `\\r` and `\\n` ignored, anything else invalid) and must give exactly 32 bytes. The message says how many bytes it decoded to, never any part of the value.",
        example: Some("spec.encryptionConfiguration.secretbox.keys[0].value: key \"encryption-key-2022-01\": the value decodes to 16 bytes, secretbox needs exactly 32; make a key with `head -c 32 /dev/urandom | base64` or `eargate keygen`"),
    };
    EAR005 = {
        id: "EAR005",
        title: "Resources follow kube-apiserver's rules",
        applies_to: "CREATE, UPDATE",
        explanation: "`resources` is copied into kube-apiserver's EncryptionConfiguration, which kube-apiserver validates at start: a list it refuses crash-loops the API server. So the list must be non-empty, lowercase, not `*` (use `*.` for all core resources or `*.*` for all), not `apiserveripinfo`, `serviceipallocations` or `servicenodeportallocations` (no REST API), not in the `events.k8s.io` group (stored as `events`) or the removed `extensions` group, not `<resource>.*`, without duplicates and without overlapping entries (`*.*` with anything, `*.` with a core resource, `*.apps` with `deployments.apps`), and without surrounding whitespace (kube-apiserver does not trim: it would load such an entry, which then names no resource, so those objects would silently stay in plaintext). The validating webhook judges the list exactly as it receives it. The mutating webhook normally trims, lowercases and drops exact duplicates first; when it did not run (not installed, skipped, or a later mutating webhook re-added an entry) capitals, whitespace and duplicates are denied here, by this rule, with a message saying the mutating webhook normally fixes them: they are part of EAR005 because the stored list is what kube-apiserver loads, whichever webhook should have fixed it. The one default validation assumes is that a missing or empty `resources` of an enabled configuration means `[secrets]`.",
        example: Some("spec.encryptionConfiguration.resources[1]: \"*\": use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources"),
    };
    EAR006 = {
        id: "EAR006",
        title: "Rollout lock",
        applies_to: "UPDATE",
        explanation: "While `status.encryption.phase` is `Pending` or `EncryptionNeeded` a rollout is in flight: the API servers are being reconfigured or data is being re-written. No change to `spec.encryptionConfiguration` or `spec.features.encryptionAtRest` is accepted until the phase is `Active` (or `Failed`); edits to other fields stay allowed.",
        example: Some("spec.encryptionConfiguration: encryption is being rolled out (phase EncryptionNeeded); the encryption configuration is locked until the phase is Active: watch it with `kubectl get cluster zt7q9h2mxk -o jsonpath='{.status.encryption.phase}'`, then retry"),
    };
    EAR007 = {
        id: "EAR007",
        title: "Resources are fixed while enabled",
        applies_to: "UPDATE",
        explanation: "The list of encrypted resources cannot change while encryption stays enabled (a reorder is not a change): objects of a dropped resource would stay sealed with no provider configured to read them. Disable encryption, wait until decryption has finished, then re-enable with the new list.",
        example: Some("spec.encryptionConfiguration.resources: the encrypted resources cannot change while encryption stays enabled (was [secrets], now [configmaps, secrets]); set enabled: false, wait until decryption has finished (status.encryption cleared, or phase Active with activeKey identity), then re-enable with the new list"),
    };
    EAR008 = {
        id: "EAR008",
        title: "Key material is immutable",
        applies_to: "UPDATE",
        explanation: "A key name always means the same key material: kube-apiserver picks the key by the name in the storage prefix. Changing `value` or `secretRef` of an existing name would make everything sealed with the old material unreadable. Add a key with a new name and rotate instead.",
        example: Some("spec.encryptionConfiguration.secretbox.keys[0].value: key \"encryption-key-2022-01\": the key material of an existing key cannot change (data sealed with it would become unreadable); add a key with a new name as secondary and rotate instead"),
    };
    EAR009 = {
        id: "EAR009",
        title: "New keys enter as secondary",
        applies_to: "UPDATE",
        explanation: "While a secretbox key is active, a key that was not in the old list may not become `keys[0]`: some API server replicas would seal with a key the others cannot read yet. Add it as a secondary key, wait for `Active`, then move it to `keys[0]`. The first enablement and re-enabling after full decryption are not rotations.",
        example: Some("spec.encryptionConfiguration.secretbox.keys[0]: key \"encryption-key-2022-02\" is new and cannot be the primary key while secretbox/encryption-key-2022-01 is active; add it as a secondary key (keys[1]) first, wait for phase Active, then move it to keys[0]"),
    };
    EAR010 = {
        id: "EAR010",
        title: "Safe key removal",
        applies_to: "UPDATE",
        explanation: "While the new object keeps a `spec.encryptionConfiguration`, a key may leave the list only when the phase is `Active` and it is not the key named by `status.encryption.activeKey`: data sealed with it would otherwise become unreadable. With no status yet, or in `Failed`, no key may be removed.",
        example: Some("spec.encryptionConfiguration.secretbox.keys: key \"encryption-key-2022-01\" was removed but it is the active key (secretbox/encryption-key-2022-01): stored data is sealed with it; keep it until another key is primary and the phase is Active again"),
    };
    EAR011 = {
        id: "EAR011",
        title: "Disabling is always a way out",
        applies_to: "UPDATE",
        explanation: "Disabling (`enabled: false`, or removing `spec.encryptionConfiguration`) is allowed whenever the rollout lock (EAR006) does not hold, including in `Failed`. With `enabled: false` the keys still needed stay in the list (EAR010); when the whole configuration is removed, the reconciler keeps the key material it already rendered until decryption has finished. This rule never denies; it guarantees the exit.",
        example: None,
    };
    EAR012 = {
        id: "EAR012",
        title: "Feature gate stays on while encrypted",
        applies_to: "UPDATE",
        explanation: "`spec.features.encryptionAtRest` cannot become false or absent while encryption is enabled in the new object, or while stored data may still be sealed: `status.encryption` is present or `EncryptionInitialized` is `True`, and the status does not report full decryption. Kubermatic would stop managing the encryption configuration of a cluster whose data is sealed. Full decryption is shown either way: eargate's reconciler clears `status.encryption` (and sets `EncryptionInitialized` to `False`, reason `Decrypted`); another controller may report phase `Active` with `activeKey: identity`. From then on the gate may be removed. So: disable encryption, wait until decryption has finished, then remove the gate.",
        example: Some("spec.features.encryptionAtRest: the feature gate cannot be turned off while encryption is enabled or still active (active key secretbox/encryption-key-2022-01); disable encryption first, wait until decryption has finished (status.encryption cleared, or phase Active with activeKey identity), then remove the feature gate"),
    };
    EAR013 = {
        id: "EAR013",
        title: "Failed is recoverable, never lossy",
        applies_to: "UPDATE",
        explanation: "In phase `Failed` the configuration is not locked: any edit that fixes the cause is allowed. Rules EAR008 to EAR010 still hold, so no edit made in `Failed` can lose access to data. This rule never denies by itself.",
        example: None,
    };
    EAR014 = {
        id: "EAR014",
        title: "Only the reconciler writes encryption status",
        applies_to: "UPDATE of the status subresource",
        explanation: "`status.encryption` and the `EncryptionInitialized` condition drive every other rule (the lock, which key is active). Only the configured identities (default `system:serviceaccount:eargate-system:eargate-reconciler`) may change them; other status edits stay allowed.",
        example: Some("status.encryption: only the eargate reconciler may change the encryption status; user \"jane@example.com\" is not one of the configured status writers (system:serviceaccount:eargate-system:eargate-reconciler)"),
    };
}

/// The rule with this id.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.iter().find(|r| r.id == id)
}

/// One kind of warning: the edit is allowed, and the user should know something about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WarningKind {
    /// Stable id, `EARW01`…. Never renumber: scripts read it from `eargate check -o json`.
    pub id: &'static str,
    /// What the warning is about, in a few words.
    pub title: &'static str,
    /// Which webhook sends it.
    pub sent_by: &'static str,
    /// What it tells the user, and what to do about it.
    pub explanation: &'static str,
    /// A real warning text produced by the policy (kept true by a test), as kubectl
    /// prints it after `Warning: `.
    pub example: &'static str,
}

impl std::fmt::Display for WarningKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

macro_rules! warnings {
    ($($name:ident = { id: $id:literal, title: $title:literal, sent_by: $by:literal, explanation: $expl:literal, example: $ex:literal $(,)? };)*) => {
        $(#[doc = concat!("Warning ", $id, ": ", $title)]
        pub const $name: WarningKind = WarningKind { id: $id, title: $title, sent_by: $by, explanation: $expl, example: $ex };)*
        /// Every kind of warning, in id order.
        pub const WARNINGS: &[WarningKind] = &[$($name),*];
    };
}

warnings! {
    EARW01 = {
        id: "EARW01",
        title: "Resources defaulted",
        sent_by: "the mutating webhook",
        explanation: "An enabled configuration without `resources` (or with an empty list) encrypts `secrets`: the mutating webhook writes `resources: [secrets]` into the object, so what is stored says what is encrypted.",
        example: "spec.encryptionConfiguration.resources was empty; defaulted to [secrets]",
    };
    EARW02 = {
        id: "EARW02",
        title: "Resource entry rewritten",
        sent_by: "the mutating webhook",
        explanation: "kube-apiserver matches resources by their exact lowercase plural name and does not trim: the mutating webhook trims and lowercases each entry and names the entry it rewrote. Write it that way in the manifest, or a GitOps tool will see a difference with what is stored.",
        example: "spec.encryptionConfiguration.resources[0]: \" Secrets\" written as \"secrets\" (kube-apiserver needs plural, lowercase names without spaces)",
    };
    EARW03 = {
        id: "EARW03",
        title: "Duplicate resource dropped",
        sent_by: "the mutating webhook",
        explanation: "kube-apiserver refuses a list that names a resource twice: the mutating webhook keeps the first entry and drops the later one (after trimming and lowercasing). Remove it from the manifest.",
        example: "spec.encryptionConfiguration.resources[1]: duplicate \"secrets\" dropped (kept the first)",
    };
    EARW04 = {
        id: "EARW04",
        title: "Inline key material",
        sent_by: "the validating webhook",
        explanation: "A key given as `value` is readable by anyone who can read Clusters, and by anyone who reads the repository the manifest comes from. A `secretRef` to a Secret in the control-plane namespace keeps it out of both. Sent for every inline key, whether the edit is allowed or denied.",
        example: "spec.encryptionConfiguration.secretbox.keys[0].value: key \"encryption-key-2022-01\" carries its key material inline: anyone who can read Clusters (or the git repository they come from) can read the key; prefer secretRef to a Secret in the control-plane namespace",
    };
    EARW05 = {
        id: "EARW05",
        title: "Encryption is being enabled",
        sent_by: "the validating webhook",
        explanation: "The edit turns encryption on: every object of the listed resources will be re-written sealed with `keys[0]`. Encryption at rest protects etcd and its backups, not the API: RBAC still decides who reads the objects. Backups taken just after may still hold plaintext revisions until kube-apiserver compacts them. Sent with allowed edits only, as are EARW06 to EARW10.",
        example: "enabling encryption at rest: every object of [secrets] will be re-written sealed with key \"encryption-key-2022-01\"; data is encrypted only at rest in etcd, anyone allowed by RBAC still reads it in plaintext through the API; etcd backups taken in the next minutes may still hold older revisions until kube-apiserver compacts them (every 5 minutes); watch status.encryption.phase until Active",
    };
    EARW06 = {
        id: "EARW06",
        title: "Key rotation",
        sent_by: "the validating webhook",
        explanation: "A key already known to the API servers becomes `keys[0]`: everything is re-written sealed with it. The old primary key must stay in the list until the phase is `Active` again (EAR010 holds the edit that removes it too early).",
        example: "key rotation: key \"encryption-key-2022-02\" becomes the primary key; every object of [secrets] will be re-written sealed with it; keep \"encryption-key-2022-01\" in the list until the phase is Active again; etcd backups taken in the next minutes may still hold older revisions until kube-apiserver compacts them (every 5 minutes)",
    };
    EARW07 = {
        id: "EARW07",
        title: "New secondary key",
        sent_by: "the validating webhook",
        explanation: "A key that was not in the list enters as a secondary key, the first step of a rotation (EAR009): the API servers learn it before anything is sealed with it. Once the phase is `Active`, move it to `keys[0]`.",
        example: "key \"encryption-key-2022-02\" added as a secondary key: the API servers will be able to decrypt with it; once the phase is Active, move it to keys[0] to make it the primary key",
    };
    EARW08 = {
        id: "EARW08",
        title: "Key removed",
        sent_by: "the validating webhook",
        explanation: "A key leaves the list (allowed by EAR010: the phase is `Active` and it is not the active key). eargate's reconciler keeps it in the rendered config until a storage scan of the user cluster's etcd finds nothing sealed with it, neither a current object nor an older revision etcd still holds (condition `EncryptionKeysRetained`), then drops it in one more rollout. Where another controller rolls configs out (a gate-only install, `eargate serve --rollout-by=other`), the warning says the key goes with the next rollout instead. etcd backups taken while it was in use are still sealed with it: keep a copy of the key material outside the cluster until those backups expire.",
        example: "key \"encryption-key-2022-01\" removed from the configuration: eargate's reconciler drops it from the API servers' config only after a storage scan of etcd finds nothing sealed with it (no object, no older revision; condition EncryptionKeysRetained); from then on nothing sealed with it can be read, including etcd backups you might restore: keep a copy of the key material outside the cluster until those backups expire",
    };
    EARW09 = {
        id: "EARW09",
        title: "Encryption is being disabled",
        sent_by: "the validating webhook",
        explanation: "`enabled: false` re-writes every object of the listed resources in plaintext. The keys must stay in the list until the phase is `Active` (EAR010), so that what is still sealed can be read.",
        example: "disabling encryption at rest: every object of [secrets] will be re-written in plaintext; keep the keys in the list until the phase is Active; etcd backups taken in the next minutes may still hold older revisions until kube-apiserver compacts them (every 5 minutes)",
    };
    EARW10 = {
        id: "EARW10",
        title: "Encryption configuration removed",
        sent_by: "the validating webhook",
        explanation: "Removing `spec.encryptionConfiguration` of an enabled cluster disables encryption: every object is re-written in plaintext. The key material is gone from the object, so the reconciler keeps the keys it already rendered until decryption has finished.",
        example: "spec.encryptionConfiguration removed: encryption at rest will be disabled and every object of [secrets] re-written in plaintext; the reconciler keeps the keys it rendered until decryption has finished; etcd backups taken in the next minutes may still hold older revisions until kube-apiserver compacts them (every 5 minutes)",
    };
    EARW11 = {
        id: "EARW11",
        title: "Stored object does not decode",
        sent_by: "the validating webhook",
        explanation: "The stored object (stored before eargate guarded the cluster, or while its validating webhook did not run) has encryption fields of the wrong type, so the rules that compare the edit with it cannot run: the edit is judged as a new configuration. The warning's field is the first stored field that does not decode.",
        example: "the stored object's encryption fields do not decode; the edit was judged as if it had no encryption configuration",
    };
    EARW12 = {
        id: "EARW12",
        title: "Not a Cluster",
        sent_by: "both webhooks",
        explanation: "The webhook was sent a request for another kind: its configuration's `rules` match more than `clusters.kubermatic.k8c.io`. The request is allowed unchecked; fix the webhook configuration (the chart's is right).",
        example: "eargate only judges Cluster.kubermatic.k8c.io; this request was allowed unchecked (check the webhook's rules)",
    };
    EARW13 = {
        id: "EARW13",
        title: "Unknown operation",
        sent_by: "both webhooks",
        explanation: "The request's operation is none of CREATE, UPDATE, DELETE and CONNECT: the request is allowed unchecked. kube-apiserver sends only those four, so the review was made by hand or broken on the way.",
        example: "unknown operation \"PATCH\"; allowed unchecked",
    };
}

/// The kind of warning with this id.
pub fn warning_by_id(id: &str) -> Option<&'static WarningKind> {
    WARNINGS.iter().find(|w| w.id == id)
}

/// `docs/rules.md`, generated from the table. `kubectl_output(rule)` gives what the real
/// kubectl printed for a denial by that rule (recorded by the end-to-end tests against a real
/// kube-apiserver, kept in `docs/kubectl-denials/`); the policy's own message is shown where
/// there is none.
pub fn markdown(kubectl_output: impl Fn(&Rule) -> Option<String>) -> String {
    let mut out = String::from(
        "# eargate rules\n\n<!-- Generated from crates/policy/src/rules.rs by a test. Do not edit by hand:\n     run `EARGATE_BLESS=1 cargo test -p eargate-policy --test docs` to regenerate. -->\n\n\
Every denial names the rule id, the field path, the key by its name, what is wrong and the next step.\n\
All violations of one edit are reported together. The mutating webhook runs first, as in kube-apiserver:\n\
with `enabled: true` and no `resources`, `resources` becomes `[secrets]`; entries are trimmed,\n\
lowercased and exact duplicates dropped, each change explained in a warning. The validating webhook\n\
judges the object exactly as it receives it: if the mutating webhook did not run, what it would have\n\
fixed is denied (EAR005); the one default it assumes is that no `resources` means `[secrets]`.\n\
DELETE is always allowed.\n\n\
| id | rule | applies to |\n| --- | --- | --- |\n",
    );
    for r in ALL {
        out.push_str(&format!(
            "| [{}](#{}) | {} | {} |\n",
            r.id,
            r.id.to_lowercase(),
            r.title,
            r.applies_to
        ));
    }
    for r in ALL {
        out.push_str(&format!(
            "\n## {}\n\n**{}** ({})\n\n{}\n\n",
            r.id, r.title, r.applies_to, r.explanation
        ));
        match (r.example_denial, kubectl_output(r)) {
            (_, Some(real)) => out.push_str(&format!(
                "What kubectl prints (recorded against a real kube-apiserver by `tests/k8s_webhook.rs`):\n\n```text\n{}\n```\n",
                real.trim_end()
            )),
            (Some(ex), None) => out.push_str(&format!(
                "Example denial:\n\n```text\n[{}] {}\n```\n",
                r.id, ex
            )),
            (None, None) => out.push_str("This rule never denies an edit by itself.\n"),
        }
    }
    out.push_str(
        "\n## Warnings\n\n\
An edit can carry warnings, allowed or not: kube-apiserver relays them and kubectl prints each on a\n\
`Warning: ` line, in the text shown below. A warning never denies. `eargate check -o json` lists each\n\
with its id and the field it is about.\n\n\
| id | warning | sent by |\n| --- | --- | --- |\n",
    );
    for w in WARNINGS {
        out.push_str(&format!(
            "| [{}](#{}) | {} | {} |\n",
            w.id,
            w.id.to_lowercase(),
            w.title,
            w.sent_by
        ));
    }
    for w in WARNINGS {
        out.push_str(&format!(
            "\n### {}\n\n**{}** (sent by {})\n\n{}\n\nExample:\n\n```text\nWarning: {}\n```\n",
            w.id, w.title, w.sent_by, w.explanation, w.example
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        for (i, r) in ALL.iter().enumerate() {
            assert_eq!(r.id, format!("EAR{i:03}"));
            assert_eq!(by_id(r.id), Some(r));
        }
    }

    #[test]
    fn warning_ids_are_unique_and_ordered() {
        for (i, w) in WARNINGS.iter().enumerate() {
            assert_eq!(w.id, format!("EARW{:02}", i + 1));
            assert_eq!(warning_by_id(w.id), Some(w));
            assert_eq!(by_id(w.id), None);
        }
    }
}
