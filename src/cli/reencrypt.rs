//! `eargate reencrypt`: rewrite every stored object of the given resources through the API
//! so kube-apiserver stores it under the current encryption configuration. Progress goes
//! to stderr, the summary to stdout (one JSON object with `--output json`, whose shape is
//! documented on [`eargate_reencrypt::Summary`]). Exit 0 only if nothing failed, 1 if
//! objects or lists failed, 2 for bad input or when the API cannot be reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use eargate_reencrypt::{Options, ProgressSink};

pub use super::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resources to rewrite, as in the EncryptionConfiguration: `secrets`, `deployments.apps`,
    /// `*.apps` (a whole group), `*.` (every core resource), `*.*` (everything). Comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    pub resources: Vec<String>,
    /// Kubeconfig to use; default: KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Writes in flight at once (over one client).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Objects per LIST page.
    #[arg(long, default_value_t = 500)]
    pub page_size: u32,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 5, hide = true)]
    pub progress_seconds: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut options = Options::new(args.resources);
    options.concurrency = args.concurrency;
    options.page_size = args.page_size;
    options.progress_interval = Duration::from_secs(args.progress_seconds.max(1));
    options.check()?;
    let progress: ProgressSink = Arc::new(|line: &str| eprintln!("{line}"));
    let summary = super::runtime()?.block_on(async {
        let client = eargate_reencrypt::client(args.kubeconfig.as_deref()).await?;
        eargate_reencrypt::reencrypt(&client, &options, &progress).await
    })?;
    match args.output {
        Output::Json => println!("{}", summary.to_json()),
        Output::Text => print!("{}", summary.to_text()),
    }
    Ok(ExitCode::from(summary.exit_code()))
}
