//! `eargate render`: print the `EncryptionConfiguration` the reconciler would write for a
//! Cluster, using the reconciler's own rendering code (`eargate_reconciler::preview`).
//! Key material is printed as `REDACTED` unless `--show-keys`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use eargate_policy::names;
use eargate_reconciler::preview;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Cluster manifest (YAML or JSON).
    #[arg(long)]
    pub cluster: PathBuf,
    /// The previously rendered config: an EncryptionConfiguration, or the Secret holding it.
    /// Keys stored data may still use are kept from it; its rollout is assumed complete.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// Secret manifests for `secretRef` keys (repeatable; several documents per file allowed).
    #[arg(long = "secret")]
    pub secrets: Vec<PathBuf>,
    /// Data key of the rendered config inside the `--previous` Secret.
    #[arg(long, default_value = names::DEFAULT_CONFIG_SECRET_KEY)]
    pub config_key: String,
    /// Print key material instead of `REDACTED` (handle the output as a secret).
    #[arg(long)]
    pub show_keys: bool,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cluster_file = args.cluster.display().to_string();
    let cluster = preview::parse_cluster(&cluster_file, &read(&args.cluster)?)?;
    let mut secrets = BTreeMap::new();
    for path in &args.secrets {
        preview::parse_secrets(&path.display().to_string(), &read(path)?, &mut secrets)?;
    }
    let previous = match &args.previous {
        Some(path) => {
            let file = path.display().to_string();
            Some((
                file.clone(),
                preview::parse_previous(&file, &read(path)?, &args.config_key)?,
            ))
        }
        None => None,
    };
    let result = preview::preview(
        &cluster,
        previous.as_ref().map(|(f, b)| (f.as_str(), b.as_slice())),
        &secrets,
    )?;
    match result.yaml(args.show_keys) {
        Some(yaml) => {
            if let Some(r) = &result.rendered {
                eprintln!("# writer: {}; content hash: {}", r.writer.active_key(), r.hash);
                for key in &r.drift {
                    eprintln!("warning: key {key:?}: the given Secret differs from the previously rendered material; the rendered material is kept");
                }
            }
            print!("{yaml}");
        }
        None => eprintln!("no EncryptionConfiguration needed: nothing is configured and nothing is left to decrypt"),
    }
    Ok(ExitCode::SUCCESS)
}
