//! `eargate check`: try a Cluster edit offline. Builds the AdmissionReview kube-apiserver
//! would send, runs the same code as `eargate serve` (the mutating webhook, its patch
//! applied, then the validating webhook) and prints the verdict like kubectl would.
//!
//! By default the edit is tried as a whole, the way a cluster with the chart's two webhooks
//! treats it: what kube-apiserver would store is the mutated object (the patch is printed).
//! `--validate-only` runs the validating webhook alone on the object exactly as written:
//! what happens when the mutating webhook is not installed, is skipped, or a later mutating
//! webhook changed the object, and a way to check in CI that a manifest is already what
//! would be stored (so a GitOps tool sees no drift).
//!
//! Exit codes: 0 allowed, 1 denied, 2 bad input (unreadable file, YAML/JSON error with its
//! line, not a Cluster or AdmissionReview).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use eargate_policy::names::{
    CLUSTER_GROUP, CLUSTER_KIND, CLUSTER_PLURAL, CLUSTER_VERSION, VALIDATING_WEBHOOK_NAME,
};
use eargate_policy::review::{review_detailed, Detailed, PolicyConfig, Webhook};
use serde_json::{json, Value};

pub use super::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Cluster after the edit (YAML or JSON), or a whole AdmissionReview.
    #[arg(long = "new", value_name = "NEW.yaml")]
    pub new: PathBuf,
    /// The stored Cluster before the edit; makes the request an UPDATE (else CREATE).
    #[arg(long = "old", value_name = "OLD.yaml")]
    pub old: Option<PathBuf>,
    /// Judge the edit as made through this subresource (e.g. `status`).
    #[arg(long)]
    pub subresource: Option<String>,
    /// The user making the edit (`request.userInfo.username`).
    #[arg(long, default_value = "kubernetes-admin")]
    pub user: String,
    /// Identities allowed to change status.encryption (default: the reconciler's ServiceAccount).
    #[arg(long = "status-writer", value_name = "USER")]
    pub status_writers: Vec<String>,
    /// Run only the validating webhook, on the object exactly as given (no defaults, no
    /// rewrite): as when the mutating webhook did not run.
    #[arg(long)]
    pub validate_only: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Reads a YAML or JSON file into JSON, with the line of a syntax error.
fn load(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid JSON at line {} column {}: {}",
                path.display(),
                e.line(),
                e.column(),
                json_reason(&e)
            )
        })?
    } else {
        serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow::anyhow!("{}: invalid YAML{at}: {}", path.display(), yaml_reason(&e))
        })?
    };
    if !value.is_object() {
        bail!(
            "{}: expected a Cluster or an AdmissionReview object, found {}",
            path.display(),
            kind_of(&value)
        );
    }
    Ok(value)
}

/// serde_json's reason without position (ours is added) and without echoing contents.
fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    s.split(" at line ").next().unwrap_or(&s).to_owned()
}

fn yaml_reason(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    s.split(" at line ").next().unwrap_or(&s).to_owned()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn is_review(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("AdmissionReview")
}

/// The review kube-apiserver would send for this edit.
fn build_review(args: &Args, new: Value, old: Option<Value>) -> Value {
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (group, version) = match new.get("apiVersion").and_then(Value::as_str) {
        Some(av) => match av.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), av.to_owned()),
        },
        None => (CLUSTER_GROUP.to_owned(), CLUSTER_VERSION.to_owned()),
    };
    let kind = new
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(CLUSTER_KIND)
        .to_owned();
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    let mut request = json!({
        "uid": "00000000-0000-0000-0000-eargatecheck",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": CLUSTER_PLURAL},
        "name": name,
        "operation": operation,
        "userInfo": {"username": args.user},
        "object": new,
        "oldObject": old,
        "dryRun": false,
    });
    if let Some(sub) = &args.subresource {
        request["subResource"] = Value::from(sub.as_str());
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// What `check` decided, for printing.
struct Outcome {
    /// `None` with `--validate-only`.
    mutated: Option<Detailed>,
    validated: Detailed,
}

fn run_review(
    review: &mut Value,
    config: &PolicyConfig,
    validate_only: bool,
) -> anyhow::Result<Outcome> {
    let mut mutated = None;
    if !validate_only {
        let body = serde_json::to_vec(review)?;
        let m = review_detailed(Webhook::Mutate, &body, config)
            .context("the AdmissionReview was refused")?;
        // Apply the mutating webhook's patch, as kube-apiserver does before validating.
        if let Some(patch) = &m.patch {
            if let Some(object) = review.pointer_mut("/request/object") {
                json_patch::patch(object, patch).context("the mutating patch does not apply")?;
            }
        }
        mutated = Some(m);
    }
    let body = serde_json::to_vec(review)?;
    let validated = review_detailed(Webhook::Validate, &body, config)
        .context("the AdmissionReview was refused")?;
    Ok(Outcome { mutated, validated })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let new = load(&args.new)?;
    let mut review = if is_review(&new) {
        if args.old.is_some() {
            bail!("--old cannot be combined with an AdmissionReview in --new (it carries its own oldObject)");
        }
        if new.get("request").is_none() {
            bail!("{}: the AdmissionReview has no request", args.new.display());
        }
        new
    } else {
        let old = args.old.as_deref().map(load).transpose()?;
        if old.as_ref().is_some_and(is_review) {
            bail!("--old must be a Cluster, not an AdmissionReview");
        }
        build_review(&args, new, old)
    };
    let config = if args.status_writers.is_empty() {
        PolicyConfig::default()
    } else {
        PolicyConfig {
            status_writers: args.status_writers.clone(),
        }
    };
    let outcome = run_review(&mut review, &config, args.validate_only)?;
    match args.output {
        Output::Text => print!("{}", text(&outcome)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&json_report(&outcome))?),
    }
    Ok(if outcome.validated.reviewed.summary.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn all_warnings(o: &Outcome) -> impl Iterator<Item = &String> {
    o.mutated
        .iter()
        .flat_map(|m| m.warnings.iter())
        .chain(o.validated.warnings.iter())
}

fn patch(o: &Outcome) -> Option<&json_patch::Patch> {
    o.mutated.as_ref().and_then(|m| m.patch.as_ref())
}

/// kubectl-like text: warnings first, then the verdict.
fn text(o: &Outcome) -> String {
    let mut out = String::new();
    for w in all_warnings(o) {
        out.push_str(&format!("Warning: {w}\n"));
    }
    let s = &o.validated.reviewed.summary;
    if let Some(patch) = patch(o) {
        out.push_str(&format!(
            "mutated (defaults): {}\n",
            serde_json::to_string(patch).unwrap_or_default()
        ));
    }
    match &o.validated.message {
        Some(message) => out.push_str(&format!(
            "Error from server (Forbidden): admission webhook \"{VALIDATING_WEBHOOK_NAME}\" denied the request: {message}\n"
        )),
        None => out.push_str(&format!(
            "allowed: {} cluster.{CLUSTER_GROUP}/{} ({})\n",
            s.operation.to_lowercase(),
            s.name,
            if s.foreign_kind { "not a Cluster, unchecked" } else { "all rules pass" }
        )),
    }
    out
}

fn json_report(o: &Outcome) -> Value {
    let s = &o.validated.reviewed.summary;
    let violations: Vec<Value> = o
        .validated
        .decision
        .violations
        .iter()
        .map(|v| json!({"rule": v.rule.id, "title": v.rule.title, "field": v.field, "key": v.key, "message": v.message}))
        .collect();
    json!({
        "verdict": if s.allowed { "allowed" } else { "denied" },
        "cluster": s.name,
        "operation": s.operation,
        "subresource": s.subresource,
        "rules": s.rule_ids,
        "violations": violations,
        "warnings": all_warnings(o).collect::<Vec<_>>(),
        "webhooks": if o.mutated.is_some() { vec!["mutate", "validate"] } else { vec!["validate"] },
        "patch": patch(o),
        "message": o.validated.message,
    })
}
