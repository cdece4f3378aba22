//! Log lines of the long-running commands: one format flag, one filter variable, one
//! writer, and control characters escaped so that a value taken from a request or from the
//! cluster (a uid, a name) can never start a forged line.

use std::fmt::Write as _;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// The log filter (`EnvFilter` directives such as `info` or `eargate=debug,kube=warn`).
pub const LOG_FILTER_ENV: &str = "EARGATE_LOG";
/// Read when [`LOG_FILTER_ENV`] is unset or empty: the variable most Rust tools know.
pub const LOG_FILTER_FALLBACK_ENV: &str = "RUST_LOG";
/// The level when neither variable says otherwise.
const DEFAULT_FILTER: &str = "info";

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `level target: message name=value ...`, no colours.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Flushes the lines still queued when dropped: hold it until the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// Installs the process-wide subscriber (a second call keeps the first one, which is what
/// tests that run a command twice want).
///
/// Lines go through a writer thread that batches them while work keeps coming and flushes as
/// soon as it catches up: the admission server formats its one line per review and moves on
/// instead of taking the stderr lock for a write(2) per review (a fifth of its throughput
/// under load). Nothing is dropped (`lossy(false)`); the backlog is bounded (about 2 MiB of
/// lines), so a writer that falls behind slows the callers instead of growing the process.
pub fn init_logging(format: LogFormat) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(8192)
        .thread_name("eargate-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let (filter, bad_filter) = filter(
        std::env::var(LOG_FILTER_ENV).ok(),
        std::env::var(LOG_FILTER_FALLBACK_ENV).ok(),
    );
    if subscriber(format, filter, writer).try_init().is_ok() {
        if let Some((variable, error)) = bad_filter {
            tracing::warn!(variable, %error, "log filter not understood; logging at info");
        }
    }
    LogGuard(guard)
}

/// The subscriber [`init_logging`] installs, writing to `writer` (tests capture lines with it).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(false).fmt_fields(text_fields()).finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// The filter from `EARGATE_LOG`, else `RUST_LOG`, else `info`; a variable that does not
/// parse gives `info` and is returned with its error, to be logged once logging is up.
fn filter(
    eargate_log: Option<String>,
    rust_log: Option<String>,
) -> (EnvFilter, Option<(&'static str, String)>) {
    let chosen = [
        (LOG_FILTER_ENV, eargate_log),
        (LOG_FILTER_FALLBACK_ENV, rust_log),
    ]
    .into_iter()
    .find_map(|(name, value)| value.filter(|v| !v.trim().is_empty()).map(|v| (name, v)));
    match chosen {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some((name, value)) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(err) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some((name, err.to_string())),
            ),
        },
    }
}

/// Fields of a text line as `name=value`, the message bare. Written straight through
/// (tracing-subscriber's default visitor styles each field name even with ANSI off, a
/// tenth of a review's cost under load), with control characters escaped.
fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
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
            let Some(c) = rest[at..].chars().next() else {
                break;
            };
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eargate_log_wins_then_rust_log_then_info() {
        let shown = |e: Option<&str>, r: Option<&str>| {
            let (filter, bad) = filter(e.map(str::to_owned), r.map(str::to_owned));
            (filter.to_string(), bad.map(|(name, _)| name))
        };
        assert_eq!(shown(None, None), ("info".into(), None));
        assert_eq!(shown(Some("debug"), Some("warn")), ("debug".into(), None));
        assert_eq!(shown(None, Some("warn")), ("warn".into(), None));
        assert_eq!(shown(Some(" "), Some("warn")), ("warn".into(), None));
        assert_eq!(
            shown(Some("eargate=[[bad"), Some("warn")),
            ("info".into(), Some(LOG_FILTER_ENV))
        );
        assert_eq!(
            shown(None, Some("x=[[bad")),
            ("info".into(), Some(LOG_FILTER_FALLBACK_ENV))
        );
    }
}
