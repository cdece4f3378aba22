//! `eargate verify`: read etcd and prove what is encrypted, with which key — including the
//! older revisions a backup would carry. Exit 0 verified, 1 not verified, 2 bad input or
//! etcd unreachable. Never prints values or key material.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use eargate_policy::apiserver_config::EncryptionConfig;
use eargate_storage::etcd::{connect, EtcdTarget};
use eargate_storage::verify::{verify, VerifyOptions, DEFAULT_OFFENDER_LIMIT};

pub use super::Output;

/// The flags of `eargate verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// etcd endpoints, comma separated (https://host:2379 needs --cacert).
    #[arg(long, value_delimiter = ',', required = true)]
    pub etcd_endpoints: Vec<String>,
    /// CA bundle that signed etcd's serving certificate.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Client certificate for etcd (with --key).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key for etcd (with --cert).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// kube-apiserver's EncryptionConfiguration (YAML or JSON).
    #[arg(long)]
    pub encryption_config: PathBuf,
    /// Resources to check (`secrets`, `configmaps`, `deployments.apps`, ...); default: those of
    /// the config. Wildcards (`*.*`, `*.`, `*.<group>`) are expanded from the etcd keyspace.
    #[arg(long, value_delimiter = ',')]
    pub resources: Vec<String>,
    /// kube-apiserver's --etcd-prefix.
    #[arg(long, default_value = eargate_policy::names::DEFAULT_ETCD_PREFIX)]
    pub prefix: String,
    /// Also read older revisions (down to the compaction revision) and report plaintext ones.
    #[arg(long)]
    pub history: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Offending objects listed per section before the rest are only counted.
    #[arg(long, default_value_t = DEFAULT_OFFENDER_LIMIT)]
    pub max_offenders: usize,
    /// Timeout for connecting and for each etcd request (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = super::flags::parse_duration)]
    pub timeout: Duration,
    /// Also write a short JSON summary here — per key name, current objects and (with
    /// --history) older revisions sealed with it — for a Job's Pod to hand back in its
    /// termination message (at most 4096 bytes). Kubernetes' default path is
    /// /dev/termination-log.
    #[arg(long)]
    pub termination_message_path: Option<PathBuf>,
    /// Exit 1 when the verdict is "not verified". A storage-scan Job passes
    /// --verdict-exit-code=false: its result is the summary, and it exits 0 whenever etcd was
    /// read (2 still means bad input or etcd unreachable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verdict_exit_code: bool,
}

/// Reads kube-apiserver's EncryptionConfiguration (YAML is a superset of JSON).
pub fn read_config(path: &std::path::Path) -> anyhow::Result<EncryptionConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (--encryption-config)", path.display()))?;
    super::render::refuse_redacted(path, "--encryption-config", &text)?;
    // serde_yaml's messages quote the offending input, which may be key material: keep
    // only the location.
    serde_yaml::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        anyhow::anyhow!(
            "{} is not a valid EncryptionConfiguration{at} (YAML or JSON with apiVersion, kind and resources)",
            path.display()
        )
    })
}

/// Reads etcd and prints the report; returns the exit code (0 verified, 1 not).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = read_config(&args.encryption_config)?;
    let options = VerifyOptions {
        resources: args.resources,
        prefix: args.prefix,
        history: args.history,
        offender_limit: args.max_offenders,
    };
    // Check the config and resources before touching the network.
    eargate_storage::verify::plan(&config, &options, None)?;
    let target = EtcdTarget {
        endpoints: args.etcd_endpoints,
        ca_file: args.cacert,
        cert_file: args.cert,
        key_file: args.key,
        timeout: Some(args.timeout),
    };
    let report = super::runtime()?.block_on(async {
        let client = connect(&target).await?;
        anyhow::Ok(verify(&client, &config, &options).await?)
    })?;
    if let Some(path) = &args.termination_message_path {
        let summary = report
            .key_summary(config.secretbox_key_names())
            .to_termination_message();
        std::fs::write(path, summary).with_context(|| {
            format!(
                "cannot write {} (--termination-message-path)",
                path.display()
            )
        })?;
    }
    match args.output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!("{}", report.to_json()),
        Output::Yaml => {
            let value: serde_json::Value = serde_json::from_str(&report.to_json())?;
            Output::Yaml.print_value(&value)?;
        }
    }
    Ok(if report.ok || !args.verdict_exit_code {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
