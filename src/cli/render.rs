//! `eargate render`: print the `EncryptionConfiguration` the reconciler would write for a
//! Cluster, using the reconciler's own rendering code (`eargate_reconciler::preview`).
//! Key material is printed as `REDACTED` unless `--show-keys`.
//!
//! The output says, in the YAML itself, when it is the first step of a staged change (the
//! writer stays what it was until every API server can decrypt with the new key), so a
//! reviewer reading only the file sees it too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use eargate_policy::apiserver_config::EncryptionConfig;
use eargate_policy::model::Cluster;
use eargate_policy::names;
use eargate_reconciler::{PreviewError, RenderError, Writer};

use super::Output;

/// What render's default output puts where key material was: such a file cannot be used
/// as a real config.
pub const REDACTED: &str = "REDACTED";

/// The flags of `eargate render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Cluster manifest (YAML or JSON); the same input as `check -f`.
    #[arg(
        short = 'f',
        long = "filename",
        alias = "cluster",
        value_name = "CLUSTER.yaml"
    )]
    pub cluster: PathBuf,
    /// The previously rendered config: an EncryptionConfiguration, or the Secret holding it.
    /// Keys stored data may still use are kept from it; its rollout is assumed complete.
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    /// Secret manifests for `secretRef` keys (repeatable; several documents per file allowed).
    #[arg(long = "secret", value_name = "FILE")]
    pub secrets: Vec<PathBuf>,
    /// Data key of the rendered config inside the `--previous` Secret.
    #[arg(long, default_value = names::DEFAULT_CONFIG_SECRET_KEY)]
    pub config_key: String,
    /// Print key material instead of `REDACTED` (handle the output as a secret).
    #[arg(long)]
    pub show_keys: bool,
    /// Output format: the EncryptionConfiguration as YAML (with comments; `text` is the
    /// same) or as JSON (kube-apiserver reads both).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
}

fn read(path: &Path, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} ({flag})", path.display()))
}

/// A redacted render output given back as a real config: say what to pass instead.
pub fn refuse_redacted(path: &Path, flag: &str, text: &str) -> anyhow::Result<()> {
    if text.contains(REDACTED) {
        bail!(
            "{} ({flag}) holds REDACTED key material (eargate render's default output): pass the config the API servers run instead, i.e. the Secret (kubectl get secret {} -n NAMESPACE -o yaml) or `eargate render --show-keys` output",
            path.display(),
            names::DEFAULT_CONFIG_SECRET
        );
    }
    Ok(())
}

/// Every key name of a config, in every provider that has keys.
fn key_names(config: &EncryptionConfig) -> Vec<String> {
    config
        .resources
        .iter()
        .flat_map(|r| r.providers.iter())
        .flat_map(|p| [&p.secretbox, &p.aescbc, &p.aesgcm])
        .flatten()
        .flat_map(|k| k.keys.iter().map(|k| k.name.clone()))
        .collect()
}

/// A `--previous` that lacks the key the Cluster's status says data is written with
/// contradicts the Cluster: it is not the config the API servers run.
fn refuse_contradiction(cluster: &Cluster, file: &str, previous: &[u8]) -> anyhow::Result<()> {
    let Some(active) = cluster
        .status
        .as_ref()
        .and_then(|s| s.encryption.as_ref())
        .map(|e| e.active_key.as_str())
        .filter(|a| !a.is_empty())
    else {
        return Ok(());
    };
    let Some(Writer::Secretbox(key)) = Writer::from_active_key(active) else {
        return Ok(());
    };
    let Ok(config) = serde_yaml::from_slice::<EncryptionConfig>(previous) else {
        // Unreadable: the renderer says why.
        return Ok(());
    };
    if !key_names(&config).contains(&key) {
        bail!(
            "{file} (--previous) has no key {key:?}, but the Cluster's status.encryption.activeKey is {active:?}: data is written with that key, so this is not the config the API servers run; pass the current one (kubectl get secret {} -n NAMESPACE -o yaml)",
            names::DEFAULT_CONFIG_SECRET
        );
    }
    Ok(())
}

/// The render error, with the `--secret` to add when a referenced Secret was not given.
fn explain(err: PreviewError, cluster: &Cluster) -> anyhow::Error {
    if let PreviewError::Render(RenderError::KeySecretMissing { key, secret }) = &err {
        let namespace = eargate_reconciler::control_plane_namespace(cluster);
        return anyhow::anyhow!(
            "key {key:?} references Secret {secret:?} (secretRef), which was not given: add --secret {secret}.yaml, written by `kubectl get secret {secret} -n {namespace} -o yaml > {secret}.yaml`"
        );
    }
    anyhow::Error::new(err)
}

/// Prints the EncryptionConfiguration the reconciler would write; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cluster_file = args.cluster.display().to_string();
    let cluster = eargate_reconciler::parse_cluster(&cluster_file, &read(&args.cluster, "-f")?)?;
    let mut secrets = BTreeMap::new();
    for path in &args.secrets {
        eargate_reconciler::parse_secrets(
            &path.display().to_string(),
            &read(path, "--secret")?,
            &mut secrets,
        )?;
    }
    let previous = match &args.previous {
        Some(path) => {
            let file = path.display().to_string();
            let text = read(path, "--previous")?;
            refuse_redacted(path, "--previous", &text)?;
            let bytes = eargate_reconciler::parse_previous(&file, &text, &args.config_key)?;
            refuse_redacted(path, "--previous", &String::from_utf8_lossy(&bytes))?;
            refuse_contradiction(&cluster, &file, &bytes)?;
            Some((file, bytes))
        }
        None => None,
    };
    let result = eargate_reconciler::preview(
        &cluster,
        previous.as_ref().map(|(f, b)| (f.as_str(), b.as_slice())),
        &secrets,
    )
    .map_err(|e| explain(e, &cluster))?;
    let Some(rendered) = &result.rendered else {
        eprintln!("no EncryptionConfiguration needed: nothing is configured and nothing is left to decrypt");
        return Ok(ExitCode::SUCCESS);
    };
    for key in &rendered.drift {
        eprintln!("Warning: key {key:?}: the given Secret differs from the previously rendered material; the rendered material is kept");
    }
    let notes: Vec<String> = [
        staged_note(&cluster, &rendered.writer),
        retained_note(&cluster, &rendered.config),
    ]
    .into_iter()
    .flatten()
    .collect();
    match args.output {
        Output::Json => {
            let yaml = result.yaml(args.show_keys).unwrap_or_default();
            let value: serde_json::Value = serde_yaml::from_str(&yaml)?;
            for note in &notes {
                eprintln!("note: {note}");
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Yaml | Output::Text => {
            let mut head = format!(
                "# writer: {}; content hash: {}\n",
                rendered.writer.active_key(),
                rendered.hash
            );
            for note in &notes {
                head.push_str(&format!("# {note}\n"));
            }
            print!("{head}{}", result.yaml(args.show_keys).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Keys the rendered config keeps although the spec no longer names them, said in words: the
/// reconciler drops such a key only after its storage scan, which `render` cannot run.
fn retained_note(cluster: &Cluster, rendered: &EncryptionConfig) -> Option<String> {
    let spec: Vec<&str> = cluster
        .spec
        .encryption_configuration
        .as_ref()
        .and_then(|c| c.secretbox.as_ref())
        .map(|b| b.keys.iter().map(|k| k.name.as_str()).collect())
        .unwrap_or_default();
    let kept: Vec<String> = rendered
        .secretbox_key_names()
        .filter(|k| !spec.contains(k))
        .map(|k| format!("{k:?}"))
        .collect();
    if kept.is_empty() {
        return None;
    }
    Some(format!(
        "kept: {} no longer in the spec: the reconciler drops a removed key only when the phase is Active and a storage scan of etcd finds nothing sealed with it (render does not scan)",
        if kept.len() == 1 {
            format!("key {} is", kept[0])
        } else {
            format!("keys {} are", kept.join(", "))
        }
    ))
}

/// When the rendered writer is not yet the Cluster's first key: the first step of a staged
/// change, said in words a reviewer understands.
fn staged_note(cluster: &Cluster, writer: &Writer) -> Option<String> {
    let config = cluster.spec.encryption_configuration.as_ref()?;
    if !config.enabled {
        return None;
    }
    let primary = config.secretbox.as_ref()?.keys.first()?.name.clone();
    if matches!(writer, Writer::Secretbox(k) if *k == primary) {
        return None;
    }
    Some(format!(
        "step 1 of 2: the writer stays {}, so every API server learns key {primary:?} before anything is written with it; once all of them run this config, render again with it as --previous for step 2 (writes with {primary:?})",
        writer.active_key()
    ))
}
