//! `eargate reconcile`: run the reconciler that rolls encryption at rest out on every
//! Cluster's control plane, with leader election and a metrics endpoint.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use eargate_policy::names;
use eargate_reconciler::context::Config;
use eargate_reconciler::leader::{run_with_leader_election, LeaderConfig};
use eargate_reconciler::metrics::{self, Metrics};
use tracing::{error, info};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, default_value = names::DEFAULT_METRICS_LISTEN)]
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
}

/// Parses `15m`, `90s`, `1h30m`, `500ms`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number before a unit"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            unit => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)"
                ))
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("invalid duration {text:?}: must be above zero"));
    }
    Ok(total)
}

fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("{}-{}", names::RECONCILER_NAME, std::process::id()))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves when SIGTERM or Ctrl-C arrives.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(err) => {
                error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the reconciler");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

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
        ("--lease-namespace", &args.lease_namespace),
        ("--lease-name", &args.lease_name),
    ] {
        if value.trim().is_empty() {
            anyhow::bail!("{flag} must not be empty");
        }
    }
    init_logging(args.log_format);
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
        identity: identity.clone(),
    };
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
        let metrics = Arc::new(Metrics::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("binding the metrics server to {}", args.metrics_listen))?;
        let server = tokio::spawn(metrics::serve_on(listener, metrics.clone(), stopped()));
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            let _ = stop_tx.send(true);
        });
        info!(identity = %identity, metrics = %args.metrics_listen, "starting the reconciler");
        let ctx =
            eargate_reconciler::context::Context::new(client.clone(), config, metrics.clone());
        metrics.set_ready(true);
        if args.no_leader_election {
            metrics.set_leader(true);
            tokio::select! {
                () = eargate_reconciler::controller::run(ctx) => {}
                () = stopped() => {}
            }
        } else {
            let leader = LeaderConfig::new(args.lease_namespace, args.lease_name, identity);
            run_with_leader_election(client, leader, &metrics, stopped(), || {
                eargate_reconciler::controller::run(ctx.clone())
            })
            .await?;
        }
        metrics.set_ready(false);
        let _ = server.await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        for bad in ["", "m", "15x", "0s", "-1m", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
