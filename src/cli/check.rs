//! `eargate check`: try Cluster edits offline. Builds the AdmissionReview kube-apiserver
//! would send, runs the same code as `eargate serve` (the mutating webhook, its patch
//! applied, then the validating webhook) and prints one verdict per object. Nothing is
//! ever written, and no webhook server is involved.
//!
//! Inputs:
//! - `-f` (repeatable): files, directories (recursively), multi-document YAML, `List`s and
//!   `-` for stdin: a whole GitOps repository in one run, each object judged as a CREATE;
//! - `--old STORED.yaml` with one `-f EDITED.yaml`: the edit as an UPDATE;
//! - `--cluster NAME` (with `--kubeconfig`/`--context`): the stored object is read from
//!   the API server, and the edit (`-f EDITED.yaml` or `--patch`) is judged against it;
//! - an AdmissionReview file, judged as it is.
//!
//! Anything eargate does not judge is refused (exit 2) with what to pass instead, never
//! "allowed": a Secret, a `kubermatic.k8s.io` object, a stored object given without its
//! stored version, an UPDATE review without `oldObject`.
//!
//! By default the edit is tried as a whole, the way a cluster with the chart's two webhooks
//! treats it: what kube-apiserver would store is the mutated object (the patch is printed).
//! `--validate-only` runs the validating webhook alone on the object exactly as written:
//! what happens when the mutating webhook is not installed, is skipped, or a later mutating
//! webhook changed the object, and a way to check in CI that a manifest is already what
//! would be stored (so a GitOps tool sees no drift).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use eargate_policy::names::{
    CLUSTER_GROUP, CLUSTER_KIND, CLUSTER_PLURAL, CLUSTER_VERSION, VALIDATING_WEBHOOK_NAME,
};
use eargate_policy::Warning;
use eargate_policy::{review_detailed, Detailed, PolicyConfig, Webhook};
use serde_json::{json, Value};

use super::input::{self, Doc};
use super::kubeapi::KubeArgs;
pub use super::Output;

/// `check --help` ends with the exit codes and where the real gate is.
pub const HELP_FOOTER: &str = "\
Exit codes (the worst verdict wins):
  0  every object allowed
  1  at least one object denied
  2  bad input: unreadable, not a kubermatic.k8c.io/v1 Cluster, a stored object without
     --old, an unreachable API server

Examples:
  eargate check -f clusters/                       # every Cluster in a repository
  cat clusters/*.yaml | eargate check -f -          # from stdin
  eargate check --old stored.yaml -f edited.yaml    # one edit, offline
  eargate check --cluster NAME -f edited.yaml       # one edit against the live object
  eargate check --cluster NAME --patch '{\"spec\":{\"encryptionConfiguration\":{\"enabled\":true}}}'

The real gate, through the API server and every webhook, without writing:
  kubectl apply --dry-run=server -f edited.yaml";

/// How `--patch` is applied to the stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PatchType {
    /// JSON merge patch (RFC 7386), what `kubectl patch --type merge` sends.
    Merge,
    /// JSON patch (RFC 6902), what `kubectl patch --type json` sends.
    Json,
}

/// The flags of `eargate check`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("edit").required(true).args(["filenames", "patch"])))]
pub struct Args {
    /// Clusters after the edit: a file, a directory (recursively: *.yaml, *.yml, *.json),
    /// multi-document YAML, a List, an AdmissionReview, or `-` for stdin. Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        alias = "new",
        value_name = "FILE|DIR|-"
    )]
    pub filenames: Vec<PathBuf>,
    /// The stored Cluster before the edit; makes the request an UPDATE of the one `-f` object.
    #[arg(long = "old", value_name = "OLD.yaml", conflicts_with = "cluster")]
    pub old: Option<PathBuf>,
    /// Live check: read the stored Cluster NAME from the API server and judge the edit
    /// (`-f` or `--patch`) against it. Nothing is written.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The edit as a patch of the stored Cluster (JSON or YAML), with --cluster.
    #[arg(
        long,
        value_name = "PATCH",
        requires = "cluster",
        conflicts_with = "filenames"
    )]
    pub patch: Option<String>,
    /// How --patch applies.
    #[arg(long, value_enum, default_value_t = PatchType::Merge)]
    pub patch_type: PatchType,
    /// Where a live Cluster is read from (`--kubeconfig`, `--context`).
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Judge the edit as made through this subresource (needs the stored object: --old or
    /// --cluster).
    #[arg(long, value_parser = ["status"])]
    pub subresource: Option<String>,
    /// The user making the edit (`request.userInfo.username`).
    #[arg(long, default_value = "kubernetes-admin")]
    pub user: String,
    /// Identities allowed to change status.encryption (default: the reconciler's ServiceAccount).
    #[arg(long = "status-writer", value_name = "USER")]
    pub status_writers: Vec<String>,
    /// Who rolls encryption configs out, as `eargate serve --rollout-by` (only the
    /// key-removal warning's text depends on it).
    #[arg(long, value_enum, default_value_t = super::flags::RolloutBy::Eargate)]
    pub rollout_by: super::flags::RolloutBy,
    /// Run only the validating webhook, on the object exactly as given (no defaults, no
    /// rewrite): as when the mutating webhook did not run.
    #[arg(long)]
    pub validate_only: bool,
    /// Output format: one verdict per object (text), or one document with every verdict.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// The apiVersion eargate judges.
fn cluster_api_version() -> String {
    format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}")
}

fn is_review(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("AdmissionReview")
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Refuses anything but a `kubermatic.k8c.io/v1` Cluster, saying what to pass instead.
fn ensure_cluster(v: &Value, role: &str) -> anyhow::Result<()> {
    let api = v.get("apiVersion").and_then(Value::as_str);
    let kind = v.get("kind").and_then(Value::as_str);
    let want = cluster_api_version();
    match (api, kind) {
        (Some(a), Some(CLUSTER_KIND)) if a == want => Ok(()),
        (_, Some("Secret")) => bail!(
            "{role} is a Secret, not a Cluster: eargate judges the Cluster that references it \
             (spec.encryptionConfiguration.secretbox.keys[].secretRef). Pass the Cluster with -f; \
             to see the key in use, run `eargate render -f CLUSTER.yaml --secret SECRET.yaml`"
        ),
        (Some(a), Some(CLUSTER_KIND)) if a.starts_with("kubermatic.k8s.io/") => bail!(
            "{role} has apiVersion {a}, Kubermatic's old API group: eargate guards {want} \
             Clusters (KKP 2.21 and later); write apiVersion: {want}"
        ),
        (Some(a), Some(CLUSTER_KIND)) => bail!(
            "{role} has apiVersion {a:?}, which eargate does not judge: write apiVersion: {want}"
        ),
        (None, Some(CLUSTER_KIND)) => bail!("{role} has no apiVersion: write apiVersion: {want}"),
        (_, Some(k)) if k.ends_with("List") => bail!(
            "{role} is a {k} of several objects: pass one Cluster (a List is only read by -f, \
             where each item is judged)"
        ),
        (_, Some("AdmissionReview")) => bail!(
            "{role} is an AdmissionReview: pass it alone with -f (it carries its own oldObject)"
        ),
        (a, Some(k)) => bail!(
            "{role} is a {k} ({}), which eargate does not judge: pass {want} Clusters \
             (or an AdmissionReview for one); nothing was checked",
            a.unwrap_or("no apiVersion")
        ),
        (_, None) => {
            bail!("{role} has no kind: pass {want} Clusters (kind: Cluster) or an AdmissionReview")
        }
    }
}

/// What makes an object a stored one: checked alone it would be judged as a CREATE, where
/// the rules that protect stored data (key removal, rotation order) do not apply.
fn stored_marks(v: &Value) -> Vec<&'static str> {
    let mut marks = Vec::new();
    if v.pointer("/metadata/resourceVersion")
        .is_some_and(|r| r.as_str().is_some_and(|s| !s.is_empty()))
    {
        marks.push("metadata.resourceVersion");
    }
    if v.pointer("/status/encryption")
        .is_some_and(|e| !e.is_null())
    {
        marks.push("status.encryption");
    }
    marks
}

/// Refuses an AdmissionReview that would be judged on less than kube-apiserver sends.
fn ensure_review(v: &Value) -> anyhow::Result<()> {
    let Some(request) = v.get("request").filter(|r| r.is_object()) else {
        bail!("the AdmissionReview has no request");
    };
    let group = request
        .pointer("/kind/group")
        .and_then(Value::as_str)
        .unwrap_or(CLUSTER_GROUP);
    let kind = request
        .pointer("/kind/kind")
        .and_then(Value::as_str)
        .unwrap_or(CLUSTER_KIND);
    if group != CLUSTER_GROUP || kind != CLUSTER_KIND {
        bail!(
            "the AdmissionReview is for {kind}.{group}: eargate judges only {CLUSTER_KIND}.{CLUSTER_GROUP}; nothing was checked"
        );
    }
    let operation = request
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !["CREATE", "UPDATE", "DELETE"].contains(&operation) {
        bail!(
            "the AdmissionReview's request.operation is {operation:?}: eargate judges CREATE, UPDATE and DELETE"
        );
    }
    let old_missing = request.get("oldObject").is_none_or(Value::is_null);
    if operation == "UPDATE" && old_missing {
        bail!(
            "the AdmissionReview is an UPDATE without request.oldObject: kube-apiserver always sends the stored object, and without it the rules that protect stored data cannot run; add request.oldObject (or pass -f EDITED.yaml --old STORED.yaml)"
        );
    }
    if let Some(sub) = request
        .get("subResource")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if sub != "status" {
            bail!("the AdmissionReview's request.subResource is {sub:?}: a Cluster has only the status subresource");
        }
    }
    Ok(())
}

/// The review kube-apiserver would send for this edit.
fn build_review(args: &Args, new: Value, old: Option<Value>) -> Value {
    let name = name_of(&new).to_owned();
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    let mut request = json!({
        "uid": "00000000-0000-0000-0000-eargatecheck",
        "kind": {"group": CLUSTER_GROUP, "version": CLUSTER_VERSION, "kind": CLUSTER_KIND},
        "resource": {"group": CLUSTER_GROUP, "version": CLUSTER_VERSION, "resource": CLUSTER_PLURAL},
        "name": name,
        "operation": operation,
        "userInfo": {"username": args.user},
        "object": new,
        "oldObject": old,
        "dryRun": true,
    });
    if let Some(sub) = &args.subresource {
        request["subResource"] = Value::from(sub.as_str());
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// What both webhooks decided for one object.
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

/// One object's verdict.
struct Verdict {
    origin: String,
    result: Result<Outcome, anyhow::Error>,
    /// The kind of an object skipped by a directory walk.
    skipped: Option<String>,
}

impl Verdict {
    fn exit_code(&self) -> u8 {
        match &self.result {
            _ if self.skipped.is_some() => 0,
            Ok(o) if o.validated.reviewed.summary.allowed => 0,
            Ok(_) => 1,
            Err(_) => super::EXIT_BAD_INPUT,
        }
    }

    fn word(&self) -> &'static str {
        if self.skipped.is_some() {
            return "skipped";
        }
        match self.exit_code() {
            0 => "allowed",
            1 => "denied",
            _ => "error",
        }
    }
}

/// A directory holds other kinds next to Clusters (their Secrets, for one): those are
/// skipped, not judged. Named on the command line, they are refused instead.
fn skipped_kind(doc: &Doc) -> Option<String> {
    let value = doc.value.as_ref().ok().filter(|_| doc.walked)?;
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object without kind");
    (kind != CLUSTER_KIND && kind != "AdmissionReview").then(|| kind.to_owned())
}

/// An object to judge: a review as given, or an edit (new, and the stored object if any).
enum Job {
    Review(Value),
    Edit { new: Value, old: Option<Value> },
}

/// The stored object read from the API server for `--cluster`.
struct Live {
    name: String,
    stored: Value,
    describe: String,
}

/// Judges every edit given; returns the worst exit code (0 allowed, 1 denied, 2 bad input).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kube_given = args.kube.kubeconfig.is_some() || args.kube.context.is_some();
    if kube_given && args.cluster.is_none() {
        bail!("--kubeconfig and --context are for a live check: also pass --cluster NAME (the stored Cluster the edit is judged against)");
    }
    if args.subresource.is_some() && args.old.is_none() && args.cluster.is_none() {
        bail!("--subresource status judges an UPDATE of a stored object: also pass it with --old STORED.yaml (or --cluster NAME)");
    }
    let live = match &args.cluster {
        Some(name) => Some(fetch(&args.kube, name)?),
        None => None,
    };
    let old = match &args.old {
        Some(path) => Some(read_old(path)?),
        None => None,
    };
    let mut jobs: Vec<(String, anyhow::Result<Job>)> = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    if let (Some(live), Some(patch)) = (&live, &args.patch) {
        let origin = format!("--patch of cluster {}", live.name);
        jobs.push((origin, patched(live, patch, args.patch_type, &args)));
    } else {
        let docs = input::load(&args.filenames);
        let paired = old.is_some() || live.is_some();
        if paired && docs.len() != 1 {
            let flag = if live.is_some() { "--cluster" } else { "--old" };
            bail!(
                "{flag} pairs with one edited object, but -f gave {} (pass one Cluster with -f)",
                docs.len()
            );
        }
        for doc in docs {
            if let Some(kind) = skipped_kind(&doc) {
                skipped.push((doc.origin, kind));
                continue;
            }
            let job = doc
                .value
                .map_err(anyhow::Error::msg)
                .and_then(|new| prepare(new, old.clone(), live.as_ref(), &args));
            jobs.push((doc.origin, job));
        }
    }
    let mut config = PolicyConfig {
        rollout_by: args.rollout_by.into(),
        ..PolicyConfig::default()
    };
    if !args.status_writers.is_empty() {
        config.status_writers = args.status_writers.clone();
    }
    let verdicts: Vec<Verdict> = jobs
        .into_iter()
        .map(|(origin, job)| {
            let result = job.and_then(|job| {
                let mut review = match job {
                    Job::Review(review) => review,
                    Job::Edit { new, old } => build_review(&args, new, old),
                };
                run_review(&mut review, &config, args.validate_only)
            });
            Verdict {
                origin,
                result,
                skipped: None,
            }
        })
        .chain(skipped.into_iter().map(|(origin, kind)| Verdict {
            origin,
            result: Err(anyhow::anyhow!("skipped")),
            skipped: Some(kind),
        }))
        .collect();
    if verdicts.iter().all(|v| v.skipped.is_some()) && !verdicts.is_empty() {
        bail!(
            "no Cluster found: the {} objects read are other kinds ({}); eargate checks {} Clusters",
            verdicts.len(),
            verdicts
                .iter()
                .filter_map(|v| v.skipped.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", "),
            cluster_api_version()
        );
    }
    let code = verdicts.iter().map(Verdict::exit_code).max().unwrap_or(0);
    match args.output {
        Output::Text => {
            use std::io::Write as _;
            for (err, out) in text(&verdicts) {
                eprint!("{err}");
                print!("{out}");
                // Keep the two streams in step on a terminal.
                let _ = std::io::stdout().flush();
            }
            if let Some(live) = &live {
                eprintln!(
                    "note: judged against the stored Cluster {:?} from {}; nothing was written. The real gate, without writing: kubectl apply --dry-run=server -f EDITED.yaml",
                    live.name, live.describe
                );
            }
        }
        format => format.print_value(&report(&verdicts, code))?,
    }
    Ok(ExitCode::from(code))
}

/// Reads `--old`: one stored Cluster.
fn read_old(path: &std::path::Path) -> anyhow::Result<Value> {
    let mut docs = input::load(std::slice::from_ref(&path.to_path_buf()));
    if docs.len() != 1 {
        bail!(
            "--old {} holds {} objects: pass the one stored Cluster the edit changes",
            path.display(),
            docs.len()
        );
    }
    let doc = docs.remove(0);
    let value = doc
        .value
        .map_err(|e| anyhow::anyhow!("--old {}: {e}", doc.origin))?;
    ensure_cluster(&value, &format!("--old {}", path.display()))?;
    Ok(value)
}

/// Turns one `-f` object into a job, refusing what would be judged on a false basis.
fn prepare(
    new: Value,
    old: Option<Value>,
    live: Option<&Live>,
    args: &Args,
) -> anyhow::Result<Job> {
    if is_review(&new) {
        if old.is_some() || live.is_some() {
            bail!(
                "an AdmissionReview carries its own oldObject: pass it without --old or --cluster"
            );
        }
        ensure_review(&new)?;
        return Ok(Job::Review(new));
    }
    ensure_cluster(&new, "the object")?;
    if let Some(live) = live {
        let mut new = new;
        let name = name_of(&new);
        if name.is_empty() {
            new["metadata"]["name"] = Value::from(live.name.as_str());
        } else if name != live.name {
            bail!(
                "-f is Cluster {name:?} but --cluster is {:?}: pass the edited version of the stored object",
                live.name
            );
        }
        as_the_api_server_would(&mut new, &live.stored, args.subresource.as_deref());
        return Ok(Job::Edit {
            new,
            old: Some(live.stored.clone()),
        });
    }
    if let Some(old) = &old {
        let (a, b) = (name_of(old), name_of(&new));
        if !a.is_empty() && !b.is_empty() && a != b {
            bail!(
                "--old is Cluster {a:?} but -f is Cluster {b:?}: --old must be the stored version of the object being edited"
            );
        }
        let uid = |v: &Value| {
            v.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if let (Some(x), Some(y)) = (uid(old), uid(&new)) {
            if x != y {
                bail!("--old and -f have different metadata.uid: --old must be the stored version of the object being edited (not a Cluster deleted and created again)");
            }
        }
        return Ok(Job::Edit {
            new,
            old: Some(old.clone()),
        });
    }
    let marks = stored_marks(&new);
    if !marks.is_empty() {
        let name = name_of(&new);
        bail!(
            "Cluster {name:?} is a stored object (it has {}): alone it would be judged as a CREATE, where the rules that protect stored data (key removal, rotation order) do not apply. Pass the stored object with --old and the edited one with -f, or check against the API server: eargate check --cluster {name} -f EDITED.yaml",
            marks.join(" and ")
        );
    }
    Ok(Job::Edit { new, old: None })
}

/// kube-apiserver keeps the stored status on an update of the main resource, and the
/// stored spec on an update of the status subresource, before any webhook sees the object.
fn as_the_api_server_would(new: &mut Value, stored: &Value, subresource: Option<&str>) {
    let keep = if subresource == Some("status") {
        "spec"
    } else {
        "status"
    };
    if let Some(object) = new.as_object_mut() {
        match stored.get(keep) {
            Some(v) => {
                object.insert(keep.to_owned(), v.clone());
            }
            None => {
                object.remove(keep);
            }
        }
    }
}

/// `--patch` applied to the stored object.
fn patched(live: &Live, patch: &str, kind: PatchType, args: &Args) -> anyhow::Result<Job> {
    let patch: Value = serde_yaml::from_str(patch).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at column {}", l.column()))
            .unwrap_or_default();
        anyhow::anyhow!("--patch is not JSON or YAML{at}")
    })?;
    let mut new = live.stored.clone();
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                bail!("--patch must be an object for a merge patch (for a JSON patch array, add --patch-type json)");
            }
            json_patch::merge(&mut new, &patch);
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
                anyhow::anyhow!(
                    "--patch is not a JSON patch (a list of {{op, path, value}}): {}",
                    input::scrub(&e.to_string())
                )
            })?;
            json_patch::patch(&mut new, &ops).map_err(|e| {
                anyhow::anyhow!("--patch does not apply to the stored Cluster: {e}")
            })?;
        }
    }
    ensure_cluster(&new, "the patched object")?;
    if name_of(&new) != live.name {
        bail!("--patch must not change metadata.name");
    }
    as_the_api_server_would(&mut new, &live.stored, args.subresource.as_deref());
    Ok(Job::Edit {
        new,
        old: Some(live.stored.clone()),
    })
}

/// Reads the stored Cluster from the API server (a GET; nothing is written).
fn fetch(kube: &KubeArgs, name: &str) -> anyhow::Result<Live> {
    super::runtime()?.block_on(async {
        let target = kube.target().await?;
        let client = target.client()?;
        let resource = kube::api::ApiResource {
            group: CLUSTER_GROUP.into(),
            version: CLUSTER_VERSION.into(),
            api_version: cluster_api_version(),
            kind: CLUSTER_KIND.into(),
            plural: CLUSTER_PLURAL.into(),
        };
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(client, &resource);
        let object = api.get(name).await.with_context(|| {
            format!(
                "cannot read Cluster {name:?} (--cluster) from {}",
                target.describe
            )
        })?;
        let mut stored = serde_json::to_value(object)?;
        if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        Ok(Live {
            name: name.to_owned(),
            stored,
            describe: target.describe,
        })
    })
}

/// Warnings of both webhooks, each once (both repeat what concerns the whole request).
fn warnings(o: &Outcome) -> Vec<(&'static str, &Warning)> {
    let mut out: Vec<(&'static str, &Warning)> = Vec::new();
    let from_mutate = o
        .mutated
        .iter()
        .flat_map(|m| m.warnings_detailed.iter())
        .map(|w| ("mutate", w));
    let from_validate = o
        .validated
        .warnings_detailed
        .iter()
        .map(|w| ("validate", w));
    for (webhook, w) in from_mutate.chain(from_validate) {
        if !out.iter().any(|(_, seen)| *seen == w) {
            out.push((webhook, w));
        }
    }
    out
}

fn patch(o: &Outcome) -> Option<&json_patch::Patch> {
    o.mutated.as_ref().and_then(|m| m.patch.as_ref())
}

/// Text: verdicts on stdout, warnings and input errors on stderr (as kubectl prints them);
/// one `(stderr, stdout)` pair per object, printed in turn so a terminal shows each
/// object's warnings next to its verdict.
fn text(verdicts: &[Verdict]) -> Vec<(String, String)> {
    let mut pieces = Vec::new();
    for v in verdicts {
        let mut out = String::new();
        let mut err = String::new();
        text_one(v, &mut out, &mut err);
        pieces.push((err, out));
    }
    if verdicts.len() > 1 {
        let count = |word| verdicts.iter().filter(|v| v.word() == word).count();
        let mut line = format!(
            "{} objects: {} allowed, {} denied, {} not checked (errors)",
            verdicts.len(),
            count("allowed"),
            count("denied"),
            count("error")
        );
        if count("skipped") > 0 {
            line.push_str(&format!(", {} skipped (not Clusters)", count("skipped")));
        }
        pieces.push((String::new(), format!("{line}\n")));
    }
    pieces
}

fn text_one(v: &Verdict, out: &mut String, err: &mut String) {
    if let Some(kind) = &v.skipped {
        err.push_str(&format!("skipped: {}: a {kind}, not a Cluster\n", v.origin));
        return;
    }
    let o = match &v.result {
        Ok(o) => o,
        Err(e) => {
            let lines = super::errors::all_lines(e);
            err.push_str(&format!("error: {}: {}\n", v.origin, lines[0]));
            for cause in &lines[1..] {
                err.push_str(&format!("  cause: {cause}\n"));
            }
            return;
        }
    };
    for (_, w) in warnings(o) {
        err.push_str(&format!("Warning: {}: {w}\n", v.origin));
    }
    let s = &o.validated.reviewed.summary;
    let what = format!(
        "{}{} cluster.{CLUSTER_GROUP}/{}",
        s.operation.to_lowercase(),
        s.subresource
            .as_deref()
            .map(|sub| format!(" {sub} of"))
            .unwrap_or_default(),
        s.name
    );
    let origin = &v.origin;
    let line = match &o.validated.message {
        Some(message) => format!(
            "{origin}: denied: {what} (offline check, as the webhook \"{VALIDATING_WEBHOOK_NAME}\" would deny it): {message}\n"
        ),
        None => format!("{origin}: allowed: {what} (all rules pass)\n"),
    };
    out.push_str(&line);
    if let Some(patch) = patch(o) {
        out.push_str(&format!(
            "  mutated (defaults): {}\n",
            serde_json::to_string(patch).unwrap_or_default()
        ));
    }
}

/// One document with every verdict.
fn report(verdicts: &[Verdict], code: u8) -> Value {
    let results: Vec<Value> = verdicts.iter().map(verdict_value).collect();
    let count = |word| verdicts.iter().filter(|v| v.word() == word).count();
    let worst = match code {
        0 => "allowed",
        1 => "denied",
        _ => "error",
    };
    json!({
        "verdict": worst,
        "exitCode": code,
        "counts": {"allowed": count("allowed"), "denied": count("denied"), "error": count("error"), "skipped": count("skipped")},
        "results": results,
    })
}

fn verdict_value(v: &Verdict) -> Value {
    if let Some(kind) = &v.skipped {
        return json!({"source": v.origin, "verdict": "skipped", "kind": kind});
    }
    let o = match &v.result {
        Ok(o) => o,
        Err(e) => {
            let lines = super::errors::all_lines(e);
            return json!({
                "source": v.origin,
                "verdict": "error",
                "error": {"message": lines[0], "causes": &lines[1..]},
            });
        }
    };
    let s = &o.validated.reviewed.summary;
    let violations: Vec<Value> = o
        .validated
        .decision
        .violations
        .iter()
        .map(|x| json!({"rule": x.rule.id, "title": x.rule.title, "field": x.field, "key": x.key, "message": x.message}))
        .collect();
    let warnings: Vec<Value> = warnings(o)
        .into_iter()
        .map(|(webhook, w)| json!({"webhook": webhook, "id": w.id(), "field": w.field, "message": w.message}))
        .collect();
    json!({
        "source": v.origin,
        "verdict": v.word(),
        "cluster": s.name,
        "operation": s.operation,
        "subresource": s.subresource,
        "rules": s.rule_ids,
        "violations": violations,
        "warnings": warnings,
        "webhooks": if o.mutated.is_some() { vec!["mutate", "validate"] } else { vec!["validate"] },
        "patch": patch(o),
        "message": o.validated.message,
    })
}
