//! `eargate reencrypt`: rewrite every stored object of the given resources through the API
//! so kube-apiserver stores it under the current encryption configuration. Progress goes
//! to stderr, the summary to stdout (one JSON or YAML document with `-o json|yaml`, whose
//! shape is documented on [`eargate_reencrypt::Summary`]). Exit 0 only if nothing failed,
//! 1 if objects or lists failed, 2 for bad input or when the API cannot be reached.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use eargate_reencrypt::{Options, ProgressSink};

use super::kubeapi::KubeArgs;
pub use super::Output;

/// The flags of `eargate reencrypt`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resources to rewrite, as in the EncryptionConfiguration: `secrets`, `deployments.apps`,
    /// `*.apps` (a whole group), `*.` (every core resource), `*.*` (everything). Comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    pub resources: Vec<String>,
    /// Where the API server is (`--kubeconfig`, `--context`).
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Writes in flight at once (over one client).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Objects per LIST page.
    #[arg(long, default_value_t = 500)]
    pub page_size: u32,
    /// Summary format on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Time between progress lines on stderr (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = super::flags::parse_duration, hide = true)]
    pub progress_interval: Duration,
}

/// Rewrites the resources' objects and prints the summary; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut options = Options::new(args.resources);
    options.concurrency = args.concurrency;
    options.page_size = args.page_size;
    options.progress_interval = args.progress_interval;
    options.check()?;
    // On a terminal: a bar per resource, updated often. Otherwise (a Job's log): the
    // periodic progress lines as they are.
    let progress: ProgressSink = if std::io::stderr().is_terminal() {
        options.progress_interval = options.progress_interval.min(Duration::from_millis(250));
        let bar = Bar::new();
        Arc::new(move |line: &str| bar.show(line))
    } else {
        Arc::new(|line: &str| eprintln!("{line}"))
    };
    let summary = super::runtime()?.block_on(async {
        let target = args.kube.target().await?;
        let mut config = target.config.clone();
        // kube's retry layer is off: the re-encryption retries on its own, honours
        // Retry-After and accounts for every attempt.
        config.default_retry = false;
        let client = kube::Client::try_from(config)
            .with_context(|| format!("cannot build a client for {}", target.describe))?;
        eargate_reencrypt::reencrypt(&client, &options, &progress)
            .await
            .with_context(|| format!("re-encryption through {} failed", target.describe))
    })?;
    match args.output {
        Output::Json => println!("{}", summary.to_json()),
        Output::Yaml => {
            let value: serde_json::Value = serde_json::from_str(&summary.to_json())?;
            Output::Yaml.print_value(&value)?;
        }
        Output::Text => print!("{}", summary.to_text()),
    }
    Ok(ExitCode::from(summary.exit_code()))
}

/// A progress line of the re-encryption: `reencrypt <resource>: <done>/<total> …`.
pub fn parse_progress(line: &str) -> Option<(&str, u64, u64)> {
    let rest = line.strip_prefix("reencrypt ")?;
    let (resource, rest) = rest.split_once(": ")?;
    let counts = rest.split([' ', ',']).next()?;
    let (done, total) = counts.split_once('/')?;
    Some((resource, done.parse().ok()?, total.parse().ok()?))
}

/// indicatif bars driven by the progress lines: count, rate and ETA per resource.
struct Bar {
    bars: indicatif::MultiProgress,
    current: Mutex<Option<(String, indicatif::ProgressBar)>>,
}

impl Bar {
    fn new() -> Self {
        Bar {
            bars: indicatif::MultiProgress::new(),
            current: Mutex::new(None),
        }
    }

    fn show(&self, line: &str) {
        let Some((resource, done, total)) = parse_progress(line) else {
            // Anything else (a warning) is printed above the bars.
            let _ = self.bars.println(line);
            return;
        };
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_none_or(|(r, _)| r != resource) {
            if let Some((_, done_bar)) = current.take() {
                done_bar.finish();
            }
            let bar = self.bars.add(indicatif::ProgressBar::new(total));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(resource.to_owned());
            *current = Some((resource.to_owned(), bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_length(total.max(done));
            bar.set_position(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_of_the_reencryption_parse() {
        // The line eargate_reencrypt writes every progress interval.
        let line = "reencrypt deployments.apps: 40/120 (33%), 10 objects/s, ETA 8s";
        assert_eq!(parse_progress(line), Some(("deployments.apps", 40, 120)));
        assert_eq!(parse_progress("reencrypt: warning: discovery failed"), None);
    }
}
