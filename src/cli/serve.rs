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
    /// Plain-HTTP address for GET /metrics (Prometheus), GET /healthz and GET /readyz.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// Identity allowed to change status.encryption (repeatable). Default: the
    /// reconciler's ServiceAccount.
    #[arg(long = "status-writer")]
    pub status_writers: Vec<String>,
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
    /// Seconds between checks of the certificate files for a rotated pair.
    #[arg(long, default_value_t = 2, hide = true)]
    pub cert_poll_seconds: u64,
}

/// `--shutdown-delay`: what [`super::reconcile::parse_duration`] reads, and zero as well
/// (`0s`, `0ms`, `0`: drain at once), which is a valid delay but not a valid timeout.
fn parse_shutdown_delay(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let all_zero = digits > 0 && trimmed[..digits].bytes().all(|b| b == b'0');
    if all_zero && ["", "ms", "s", "m", "h"].contains(&&trimmed[digits..]) {
        return Ok(Duration::ZERO);
    }
    super::reconcile::parse_duration(text)
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
        LogFormat::Text => builder
            .with_ansi(false)
            .fmt_fields(text_fields())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// Fields of a text line as `name=value`, the message bare. Written straight through
/// (tracing-subscriber's default visitor styles each field name even with ANSI off, a
/// tenth of a review's cost under load), and with control characters escaped, so a value
/// taken from a request (a uid, a name) can never start a forged line.
fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use std::fmt::Write as _;
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() != "message" {
            writer.write_str(field.name())?;
            writer.write_char('=')?;
        }
        write!(NoControl(writer), "{value:?}")
    })
    .delimited(" ")
}

/// Passes text through with control characters (newlines above all) escaped.
struct NoControl<W>(W);

impl<W: std::fmt::Write> std::fmt::Write for NoControl<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // C0 controls and DEL are single bytes; C1 controls are encoded 0xC2 0x80..=0x9F.
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
            return self.0.write_str(s);
        }
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..]
                .chars()
                .next()
                .expect("a char at a char boundary");
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
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
    config.cert_poll_interval = Duration::from_secs(args.cert_poll_seconds.max(1));
    config.shutdown_delay = args.shutdown_delay;
    let reviewer = Arc::new(PolicyReviewer {
        config: PolicyConfig { status_writers },
    });
    super::runtime()?.block_on(async move {
        let mut stop = StopSignals::new()?;
        let running = eargate_admission::start(config, reviewer).await?;
        stop.recv().await;
        // A second signal during the delay skips the rest of it (someone wants it gone now).
        running.shutdown(stop.recv()).await?;
        tracing::info!("drained; exiting");
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C), listened to from before the
/// server starts until it has drained, so that a second signal is seen too.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves on the next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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

    #[test]
    fn text_lines_escape_control_characters_in_values() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(text_fields())
            .with_writer(move || WriteTo(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let uid = "u-1\nFORGED verdict=allowed\r\u{7}\u{85}é";
            tracing::info!(uid = %uid, name = "c1", verdict = "denied", latency_us = 7u64, "review");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r#"review uid=u-1\nFORGED verdict=allowed\r\u{7}\u{85}é name="c1" verdict="denied" latency_us=7"#),
            "{text}"
        );
    }

    struct WriteTo(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for WriteTo {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
