//! `eargate reconcile`: run the reconciler that rolls encryption at rest out on every
//! Cluster's control plane, with leader election and a metrics endpoint.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use eargate_policy::names;
use eargate_reconciler::{
    run_with_leader_election, Config, LeaderConfig, Metrics, ReloadMode, ScanSettings,
};
use eargate_runtime::{AdminServer, CancellationToken};
use tracing::{error, info};

pub use eargate_runtime::LogFormat;

/// The flags of `eargate reconcile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, default_value = names::DEFAULT_METRICS_LISTEN, value_parser = super::flags::parse_listen)]
    pub metrics_listen: SocketAddr,
    /// Image of the re-encryption Job (runs `eargate reencrypt`).
    #[arg(long, env = "EARGATE_JOB_IMAGE")]
    pub job_image: String,
    /// kube-apiserver Deployment in each control-plane namespace.
    #[arg(long, default_value = names::DEFAULT_APISERVER_DEPLOYMENT)]
    pub apiserver_deployment: String,
    /// Secret holding the rendered EncryptionConfiguration in each control-plane namespace.
    #[arg(long, default_value = names::DEFAULT_CONFIG_SECRET)]
    pub config_secret: String,
    /// Secret with the user cluster's admin kubeconfig, mounted into the re-encryption Job.
    #[arg(long, default_value = names::DEFAULT_ADMIN_KUBECONFIG_SECRET)]
    pub admin_kubeconfig_secret: String,
    /// How long an API server rollout may take before the phase turns Failed (e.g. 15m, 90s, 1h).
    #[arg(long, default_value = names::DEFAULT_ROLLOUT_TIMEOUT, value_parser = parse_duration)]
    pub rollout_timeout: Duration,
    /// How a new config reaches the API servers: `restart` rolls the Deployment; `hot` only
    /// writes the Secret, for API servers running with
    /// --encryption-provider-config-automatic-reload (kube-apiserver 1.34 or later).
    #[arg(long, value_enum, default_value_t = Reload::Restart)]
    pub reload: Reload,
    /// Container of the API server Pods whose port serves the API (scraped for the loaded
    /// config's hash).
    #[arg(long, default_value = names::DEFAULT_APISERVER_CONTAINER)]
    pub apiserver_container: String,
    /// Scrape every API server replica and require it to report the hash of the rendered
    /// config before going on. Turn off only where the seed cannot reach the API server Pods;
    /// pod readiness then gates, and the Cluster's EncryptionConfigLoaded condition says so.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub prove_loaded_config: bool,
    /// The user cluster's etcd, for the storage scan that must find nothing sealed with a
    /// removed key before it leaves the config; `{namespace}` is the control-plane namespace.
    /// Default: Kubermatic's etcd StatefulSet.
    #[arg(long, value_delimiter = ',', default_values = names::DEFAULT_ETCD_ENDPOINTS)]
    pub etcd_endpoints: Vec<String>,
    /// Secret with the API server's etcd client certificate, mounted into the storage scan.
    #[arg(long, default_value = names::DEFAULT_ETCD_CLIENT_SECRET)]
    pub etcd_client_secret: String,
    /// Data key of the client certificate in --etcd-client-secret.
    #[arg(long, default_value = names::DEFAULT_ETCD_CLIENT_CERT_KEY)]
    pub etcd_client_cert_key: String,
    /// Data key of the client private key in --etcd-client-secret.
    #[arg(long, default_value = names::DEFAULT_ETCD_CLIENT_KEY_KEY)]
    pub etcd_client_key_key: String,
    /// Secret with the CA of etcd's serving certificate (only its certificate is mounted).
    #[arg(long, default_value = names::DEFAULT_ETCD_CA_SECRET)]
    pub etcd_ca_secret: String,
    /// Data key of the CA certificate in --etcd-ca-secret.
    #[arg(long, default_value = names::DEFAULT_ETCD_CA_KEY)]
    pub etcd_ca_key: String,
    /// Wait before scanning again while a removed key still seals data; doubles per scan.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub scan_backoff: Duration,
    /// The longest wait between storage scans (kube-apiserver compacts etcd every 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub scan_backoff_max: Duration,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = names::DEFAULT_LEASE_NAMESPACE)]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = names::RECONCILER_NAME)]
    pub lease_name: String,
    /// Identity of this replica in the Lease (default: the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Reconcile without a Lease (a single replica only).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where the seed cluster's API server is (`--kubeconfig`, `--context`).
    #[command(flatten)]
    pub kube: super::kubeapi::KubeArgs,
}

/// `--reload`: how a new config reaches the API servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reload {
    /// Roll the API server Deployment (every replica restarts with the new file).
    Restart,
    /// Only write the Secret; the API servers reload the mounted file by themselves.
    Hot,
}

/// Durations read the same in every subcommand.
pub use super::flags::parse_duration;

fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("{}-{}", names::RECONCILER_NAME, std::process::id()))
}

/// Runs the reconciler until SIGTERM or Ctrl-C; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.job_image.trim().is_empty() {
        anyhow::bail!(
            "--job-image (or EARGATE_JOB_IMAGE) must name the image of the re-encryption Job"
        );
    }
    for (flag, value) in [
        ("--apiserver-deployment", &args.apiserver_deployment),
        ("--config-secret", &args.config_secret),
        ("--admin-kubeconfig-secret", &args.admin_kubeconfig_secret),
        ("--apiserver-container", &args.apiserver_container),
        ("--lease-namespace", &args.lease_namespace),
        ("--lease-name", &args.lease_name),
        ("--etcd-client-secret", &args.etcd_client_secret),
        ("--etcd-client-cert-key", &args.etcd_client_cert_key),
        ("--etcd-client-key-key", &args.etcd_client_key_key),
        ("--etcd-ca-secret", &args.etcd_ca_secret),
        ("--etcd-ca-key", &args.etcd_ca_key),
    ] {
        if value.trim().is_empty() {
            anyhow::bail!("{flag} must not be empty");
        }
    }
    if args.etcd_endpoints.iter().all(|e| e.trim().is_empty()) {
        anyhow::bail!("--etcd-endpoints must name at least one endpoint");
    }
    if args.scan_backoff.is_zero() || args.scan_backoff_max < args.scan_backoff {
        anyhow::bail!("--scan-backoff must be more than zero and at most --scan-backoff-max");
    }
    let _log_guard = eargate_runtime::init_logging(args.log_format);
    let identity = args
        .identity
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(default_identity);
    let config = Config {
        job_image: args.job_image.clone(),
        apiserver_deployment: args.apiserver_deployment.clone(),
        config_secret: args.config_secret.clone(),
        admin_kubeconfig_secret: args.admin_kubeconfig_secret.clone(),
        rollout_timeout: args.rollout_timeout,
        reload: match args.reload {
            Reload::Restart => ReloadMode::Restart,
            Reload::Hot => ReloadMode::HotReload,
        },
        apiserver_container: args.apiserver_container.clone(),
        prove_loaded: args.prove_loaded_config,
        scan: ScanSettings {
            etcd_endpoints: args.etcd_endpoints.clone(),
            client_secret: args.etcd_client_secret.clone(),
            client_cert_key: args.etcd_client_cert_key.clone(),
            client_key_key: args.etcd_client_key_key.clone(),
            ca_secret: args.etcd_ca_secret.clone(),
            ca_key: args.etcd_ca_key.clone(),
            backoff: args.scan_backoff,
            backoff_max: args.scan_backoff_max,
        },
        identity: identity.clone(),
    };
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let signals = eargate_runtime::Signals::listen()?;
        let client = args.kube.target().await?.client()?;
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let admin = AdminServer::start(args.metrics_listen, metrics.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (--metrics-listen)",
                    args.metrics_listen
                )
            })?;
        eargate_runtime::cancel_on_signal(signals, stop.clone());
        info!(identity = %identity, metrics = %admin.addr(), "starting the reconciler");
        let ctx = eargate_reconciler::Context::new(client.clone(), config, metrics.clone());
        metrics.set_ready(true);
        if args.no_leader_election {
            metrics.set_leader(true);
            tokio::select! {
                () = eargate_reconciler::run(ctx) => {}
                () = stop.cancelled() => {}
            }
        } else {
            let leader = LeaderConfig::new(args.lease_namespace, args.lease_name, identity);
            run_with_leader_election(client, leader, &metrics, stop.cancelled(), || {
                eargate_reconciler::run(ctx.clone())
            })
            .await?;
        }
        metrics.set_ready(false);
        if let Err(err) = admin.stop().await {
            error!(error = %err, "metrics server stopped");
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_defaults_match_the_chart() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            args: Args,
        }
        let t = T::try_parse_from(["x", "--job-image", "img:1"]).unwrap();
        assert_eq!(t.args.metrics_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(t.args.apiserver_deployment, "apiserver");
        assert_eq!(t.args.config_secret, "apiserver-encryption-configuration");
        assert_eq!(t.args.admin_kubeconfig_secret, "admin-kubeconfig");
        assert_eq!(t.args.rollout_timeout, Duration::from_secs(900));
        assert_eq!(t.args.lease_name, "eargate-reconciler");
        assert!(!t.args.no_leader_election);
        let t = T::try_parse_from([
            "x",
            "--job-image",
            "i",
            "--rollout-timeout",
            "2m",
            "--no-leader-election",
            "--log-format",
            "json",
            "--identity",
            "pod-1",
            "--lease-namespace",
            "ns",
        ])
        .unwrap();
        assert_eq!(t.args.rollout_timeout, Duration::from_secs(120));
        assert!(t.args.no_leader_election);
        assert_eq!(t.args.log_format, LogFormat::Json);
        assert_eq!(t.args.identity.as_deref(), Some("pod-1"));
        assert!(T::try_parse_from(["x", "--job-image", "i", "--rollout-timeout", "soon"]).is_err());
    }
}
