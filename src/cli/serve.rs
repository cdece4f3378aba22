//! `eargate serve`: the HTTPS admission server kube-apiserver calls for every change of
//! a Cluster. Runs until SIGTERM or Ctrl-C, then drains and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use eargate_admission::{PolicyReviewer, ServeConfig, DEFAULT_MAX_BODY_BYTES};
use eargate_policy::names::DEFAULT_STATUS_WRITER;
use eargate_policy::review::PolicyConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// TLS address for POST /mutate, POST /validate, GET /healthz and GET /readyz.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain (re-read when it changes, e.g. a rotated Secret).
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    /// PEM private key matching --tls-cert-file.
    #[arg(long)]
    pub tls_key_file: PathBuf,
    /// Plain-HTTP address for GET /metrics (Prometheus).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// Identity allowed to change status.encryption (repeatable). Default: the
    /// reconciler's ServiceAccount.
    #[arg(long = "status-writer")]
    pub status_writers: Vec<String>,
    /// Largest AdmissionReview accepted; bigger bodies get 413 without being read.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds between checks of the certificate files for a rotated pair.
    #[arg(long, default_value_t = 2, hide = true)]
    pub cert_poll_seconds: u64,
}

/// Logs go through a writer thread that batches lines while requests keep coming and
/// flushes as soon as it catches up: the review path formats its one line and moves on
/// instead of taking the stderr lock for a write(2) per review (a fifth of the server's
/// throughput under load). Nothing is dropped (`lossy(false)`); the guard flushes at exit.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // Bounded backlog (about 2 MiB of lines): if the writer falls behind, reviews wait
        // for it rather than the backlog growing the process.
        .buffered_lines_limit(8192)
        .thread_name("eargate-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let filter = tracing_subscriber::EnvFilter::try_from_env("EARGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _log_guard = init_logging(args.log_format);
    eargate_admission::install_panic_hook();
    let status_writers = if args.status_writers.is_empty() {
        vec![DEFAULT_STATUS_WRITER.to_string()]
    } else {
        args.status_writers
    };
    let mut config = ServeConfig::new(args.listen, args.tls_cert_file, args.tls_key_file);
    config.metrics_listen = Some(args.metrics_listen);
    config.max_body_bytes = args.max_body_bytes;
    config.cert_poll_interval = std::time::Duration::from_secs(args.cert_poll_seconds.max(1));
    let reviewer = Arc::new(PolicyReviewer {
        config: PolicyConfig { status_writers },
    });
    super::runtime()?.block_on(async move {
        let running = eargate_admission::start(config, reviewer).await?;
        wait_for_stop_signal().await?;
        running.begin_drain();
        running.wait().await?;
        tracing::info!("drained; exiting");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
