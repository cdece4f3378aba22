//! `eargate serve`: the HTTPS admission server kube-apiserver calls for every change of
//! a Cluster. Runs until SIGTERM or Ctrl-C. Then `/readyz` turns false while the server
//! keeps accepting for `--shutdown-delay` (the endpoints drop the pod meanwhile; a second
//! SIGTERM or Ctrl-C skips the rest of the delay), drains and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use eargate_admission::{PolicyReviewer, ServeConfig, DEFAULT_MAX_BODY_BYTES};
use eargate_policy::names::DEFAULT_STATUS_WRITER;
use eargate_policy::PolicyConfig;

pub use eargate_runtime::LogFormat;

/// The flags of `eargate serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TLS address for POST /mutate, POST /validate, GET /healthz and GET /readyz.
    #[arg(long, default_value = ":8443", value_parser = super::flags::parse_listen)]
    pub listen: SocketAddr,
    /// PEM certificate chain (re-read when it changes, e.g. a rotated Secret).
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    /// PEM private key matching --tls-cert-file.
    #[arg(long)]
    pub tls_key_file: PathBuf,
    /// Plain-HTTP address for GET /metrics (Prometheus), GET /healthz and GET /readyz.
    #[arg(long, default_value = "127.0.0.1:9090", value_parser = super::flags::parse_listen)]
    pub metrics_listen: SocketAddr,
    /// Identity allowed to change status.encryption (repeatable). Default: the
    /// reconciler's ServiceAccount.
    #[arg(long = "status-writer")]
    pub status_writers: Vec<String>,
    /// Who rolls encryption configs out to the API servers: eargate's reconciler, or another
    /// controller (Kubermatic's, in a gate-only install). Only the key-removal warning's text
    /// depends on it.
    #[arg(long, value_enum, default_value_t = super::flags::RolloutBy::Eargate)]
    pub rollout_by: super::flags::RolloutBy,
    /// Largest AdmissionReview accepted; bigger bodies get 413 without being read.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// After SIGTERM: /readyz answers 503 while the server keeps accepting connections and
    /// serving requests for this long (5s, 500ms, 0s), so that kube-apiserver stops sending
    /// to this pod before its port closes; then the drain (in-flight requests get up to
    /// 10 s). A second SIGTERM or Ctrl-C skips the rest of the delay.
    #[arg(long, default_value = "5s", value_parser = parse_shutdown_delay)]
    pub shutdown_delay: Duration,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Time between checks of the certificate files for a rotated pair (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = super::flags::parse_duration, hide = true)]
    pub cert_poll_interval: Duration,
}

/// `--shutdown-delay`: a duration, and zero as well (`0s`: drain at once).
fn parse_shutdown_delay(text: &str) -> Result<Duration, String> {
    super::flags::parse_duration_or_zero(text)
}

/// Serves the webhooks until SIGTERM or Ctrl-C; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _log_guard = eargate_runtime::init_logging(args.log_format);
    eargate_admission::install_panic_hook();
    let status_writers = if args.status_writers.is_empty() {
        vec![DEFAULT_STATUS_WRITER.to_string()]
    } else {
        args.status_writers
    };
    // The flags an error can be about, so that it names the one to fix.
    let flags = [
        ("--listen", args.listen.to_string()),
        ("--metrics-listen", args.metrics_listen.to_string()),
        ("--tls-cert-file", args.tls_cert_file.display().to_string()),
        ("--tls-key-file", args.tls_key_file.display().to_string()),
    ];
    let mut config = ServeConfig::new(args.listen, args.tls_cert_file, args.tls_key_file);
    config.metrics_listen = Some(args.metrics_listen);
    config.max_body_bytes = args.max_body_bytes;
    config.cert_poll_interval = args.cert_poll_interval;
    config.shutdown_delay = args.shutdown_delay;
    let reviewer = Arc::new(PolicyReviewer {
        config: PolicyConfig {
            status_writers,
            rollout_by: args.rollout_by.into(),
        },
    });
    super::runtime()?.block_on(async move {
        let mut stop = eargate_runtime::Signals::listen()?;
        let running = eargate_admission::start(config, reviewer)
            .await
            .map_err(|e| name_flags(anyhow::Error::from(e), &flags))?;
        stop.recv().await;
        // A second signal during the delay skips the rest of it (someone wants it gone now).
        running
            .shutdown(async move {
                stop.recv().await;
            })
            .await?;
        tracing::info!("drained; exiting");
        Ok(ExitCode::SUCCESS)
    })
}

/// Adds the flags whose values the error mentions ("cannot start the admission server
/// (--listen 127.0.0.1:8443)"), so the message says what to change.
fn name_flags(err: anyhow::Error, flags: &[(&str, String)]) -> anyhow::Error {
    let text = super::errors::lines(&err).join("\n");
    let named: Vec<String> = flags
        .iter()
        .filter(|(_, value)| text.contains(value.as_str()))
        .map(|(flag, value)| format!("{flag} {value}"))
        .collect();
    if named.is_empty() {
        err.context("cannot start the admission server")
    } else {
        err.context(format!(
            "cannot start the admission server ({})",
            named.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_delay_takes_durations_and_zero() {
        for (text, want) in [
            ("5s", Duration::from_secs(5)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("7", Duration::from_secs(7)),
            ("0s", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("0", Duration::ZERO),
            ("00s", Duration::ZERO),
        ] {
            assert_eq!(parse_shutdown_delay(text), Ok(want), "{text}");
        }
        for bad in ["", "s", "0x", "-1s", "1.5s", "5 seconds", "0s5"] {
            assert!(parse_shutdown_delay(bad).is_err(), "{bad}");
        }
        use clap::Parser as _;
        let cli = |extra: &[&str]| {
            let mut argv = vec!["eargate", "serve", "--tls-cert-file=c", "--tls-key-file=k"];
            argv.extend_from_slice(extra);
            match crate::cli::Cli::try_parse_from(argv).unwrap().command {
                crate::cli::Command::Serve(args) => args.shutdown_delay,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(cli(&[]), Duration::from_secs(5));
        assert_eq!(cli(&["--shutdown-delay=0s"]), Duration::ZERO);
        assert_eq!(
            cli(&["--shutdown-delay", "250ms"]),
            Duration::from_millis(250)
        );
    }
}
