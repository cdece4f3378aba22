//! `eargate certs`: a development CA and a serving certificate for `make run` and local
//! tests. Keys are written with mode 0600; nothing is printed but the file names.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use eargate_admission::dev_certs::{self, Validity};
use serde_json::json;

use super::Output;

/// Names of the serving certificate when none are given: the local server (`make run`)
/// and the chart's webhook Service with its default release name and namespace.
pub const DEFAULT_DNS_NAMES: [&str; 2] = ["localhost", "eargate-webhook.eargate-system.svc"];
/// The loopback address, for clients that connect by IP.
pub const DEFAULT_IPS: [IpAddr; 1] = [IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];

/// The flags of `eargate certs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for ca.crt, ca.key, tls.crt and tls.key (created when missing).
    #[arg(long, default_value = "certs")]
    pub out_dir: PathBuf,
    /// DNS name of the serving certificate (repeatable), e.g. the webhook Service's
    /// `<service>.<namespace>.svc`. Without --dns-name and --ip: localhost, 127.0.0.1 and
    /// eargate-webhook.eargate-system.svc.
    #[arg(long = "dns-name")]
    pub dns_names: Vec<String>,
    /// IP address of the serving certificate (repeatable).
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// Validity of the serving certificate in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub days: i64,
    /// Replace existing files instead of refusing.
    #[arg(long)]
    pub force: bool,
    /// Output format of the summary: a line of text, or a JSON/YAML document.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

const FILES: [&str; 4] = ["ca.crt", "ca.key", "tls.crt", "tls.key"];

/// Writes the CA and the serving certificate; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.force {
        if let Some(existing) = FILES
            .iter()
            .map(|f| args.out_dir.join(f))
            .find(|p| p.exists())
        {
            anyhow::bail!(
                "{} already exists; pass --force to replace the development certificates",
                existing.display()
            );
        }
    }
    let (dns_names, ips) = if args.dns_names.is_empty() && args.ips.is_empty() {
        (
            DEFAULT_DNS_NAMES.iter().map(|n| n.to_string()).collect(),
            DEFAULT_IPS.to_vec(),
        )
    } else {
        (args.dns_names.clone(), args.ips.clone())
    };
    let certs = dev_certs::generate(
        &dns_names,
        &ips,
        Validity {
            serving_days: args.days,
            ca_days: args.days.max(3650),
        },
    )?;
    fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {} (--out-dir)", args.out_dir.display()))?;
    write(&args.out_dir.join("ca.crt"), &certs.ca_cert_pem, false)?;
    write(&args.out_dir.join("ca.key"), &certs.ca_key_pem, true)?;
    write(&args.out_dir.join("tls.crt"), &certs.cert_pem, false)?;
    write(&args.out_dir.join("tls.key"), &certs.key_pem, true)?;
    let names: Vec<String> = dns_names
        .iter()
        .cloned()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    if args.output != Output::Text {
        let dir = args.out_dir.display().to_string();
        let files: Vec<String> = FILES.iter().map(|f| format!("{dir}/{f}")).collect();
        args.output
            .print_value(&json!({"files": files, "names": names, "days": args.days}))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "wrote {dir}/ca.crt, {dir}/ca.key, {dir}/tls.crt, {dir}/tls.key (serving certificate for {names}, {days} days)",
        dir = args.out_dir.display(),
        names = names.join(", "),
        days = args.days,
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes through a temporary file and a rename, so a server polling the path never
/// sees half a file; private keys get mode 0600.
fn write(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
