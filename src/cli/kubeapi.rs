//! `--kubeconfig` and `--context`, as kubectl takes them, for every command that talks to
//! the Kubernetes API; and the client they give, with errors that name the kubeconfig,
//! the context and the server involved.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Which API server to talk to.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// ServiceAccount).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// A client and the words that name where it points, for error messages.
pub struct Target {
    /// The client configuration.
    pub config: kube::Config,
    /// E.g. `https://10.0.0.1:6443 (kubeconfig /home/me/.kube/config, context prod)`.
    pub describe: String,
}

impl Target {
    /// A client for the configuration; its error names the target.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        kube::Client::try_from(self.config.clone())
            .with_context(|| format!("cannot build a client for {}", self.describe))
    }
}

fn home_kubeconfig() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".kube").join("config"))
}

impl KubeArgs {
    /// Resolves the configuration the way kubectl does: `--kubeconfig`, else `KUBECONFIG`
    /// (several files merged), else `~/.kube/config`, else the pod's ServiceAccount.
    pub async fn target(&self) -> anyhow::Result<Target> {
        let (kubeconfig, source) = if let Some(path) = &self.kubeconfig {
            (
                Some(read(path, "--kubeconfig")?),
                format!("kubeconfig {}", path.display()),
            )
        } else if let Some(paths) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let shown = paths.to_string_lossy().into_owned();
            let merged = Kubeconfig::from_env()
                .map_err(|e| anyhow::anyhow!("{}", kubeconfig_error(&e)))
                .with_context(|| format!("cannot read the kubeconfig in KUBECONFIG={shown}"))?
                .context("KUBECONFIG is empty")?;
            (Some(merged), format!("kubeconfig KUBECONFIG={shown}"))
        } else if let Some(path) = home_kubeconfig().filter(|p| p.exists()) {
            (
                Some(read(&path, "~/.kube/config")?),
                format!("kubeconfig {}", path.display()),
            )
        } else {
            (None, String::new())
        };
        let Some(kubeconfig) = kubeconfig else {
            if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
                bail!(
                    "no Kubernetes API to talk to: pass --kubeconfig FILE, set KUBECONFIG, or create ~/.kube/config (in a pod, the ServiceAccount is used; KUBERNETES_SERVICE_HOST is not set here)"
                );
            }
            if let Some(context) = &self.context {
                bail!("--context {context:?} needs a kubeconfig (pass --kubeconfig FILE); in a pod without one, the ServiceAccount is used");
            }
            let config = kube::Config::incluster()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("cannot use the pod's ServiceAccount (in-cluster configuration)")?;
            let describe = format!("{} (in-cluster ServiceAccount)", config.cluster_url);
            return Ok(Target { config, describe });
        };
        let contexts: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let context = match &self.context {
            Some(c) => {
                if !contexts.contains(&c.as_str()) {
                    bail!(
                        "--context {c:?} is not in the {source} (its contexts: {})",
                        list(&contexts)
                    );
                }
                c.clone()
            }
            None => match kubeconfig.current_context.clone().filter(|c| !c.is_empty()) {
                Some(c) => c,
                None => bail!(
                    "the {source} has no current-context: pass --context (its contexts: {})",
                    list(&contexts)
                ),
            },
        };
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let where_ = format!("{source}, context {context}");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| anyhow::anyhow!("{}", kubeconfig_error(&e)))
            .with_context(|| format!("cannot use context {context:?} of the {source}"))?;
        let describe = format!("{} ({where_})", config.cluster_url);
        Ok(Target { config, describe })
    }
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Reads one kubeconfig file; a parse error says where, never what (tokens live there).
fn read(path: &std::path::Path, flag: &str) -> anyhow::Result<Kubeconfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the kubeconfig {} ({flag})", path.display()))?;
    Kubeconfig::from_yaml(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} ({flag}) is not a valid kubeconfig: {}",
            path.display(),
            kubeconfig_error(&e)
        )
    })
}

/// kube's kubeconfig errors, without the parser's quotation of the file.
fn kubeconfig_error(e: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as E;
    match e {
        E::Parse(_) => "it does not parse as YAML".to_owned(),
        E::ReadConfig(io, path) => format!("cannot read {}: {io}", path.display()),
        other => other.to_string(),
    }
}
