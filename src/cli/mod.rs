//! The `eargate` command line. Each subcommand lives in its own module with its `Args`
//! and a `run` function; this module only parses and dispatches.
//!
//! Exit codes shared by every subcommand: 0 success/allowed, 1 a negative verdict
//! (denied, not verified, failures), 2 bad input or usage errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod certs;
pub mod check;
pub mod crd;
pub mod keygen;
pub mod reconcile;
pub mod reencrypt;
pub mod render;
pub mod serve;
pub mod verify;

/// `--output` of the subcommands that print a report: text for people, JSON for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Exit code for bad input, usage and connection errors.
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "eargate",
    version,
    about = "Admission gate and reconciler for Kubernetes encryption at rest"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a fresh secretbox key (base64 of 32 random bytes).
    Keygen(keygen::Args),
    /// Run the reconciler: roll encryption at rest out on every Cluster's control plane.
    Reconcile(reconcile::Args),
    /// Try a Cluster edit offline: mutation then validation, exactly as the webhook runs them.
    Check(check::Args),
    /// Print the EncryptionConfiguration the reconciler would write for a Cluster (keys REDACTED).
    Render(render::Args),
    /// Read etcd and prove which objects (and older revisions) are sealed with which key.
    Verify(verify::Args),
    /// Rewrite every stored object of the given resources through the API (re-encrypt after key changes).
    Reencrypt(reencrypt::Args),
    /// Run the HTTPS admission server (POST /mutate, POST /validate) for kube-apiserver.
    Serve(serve::Args),
    /// Write a development CA and serving certificate (ca.crt, ca.key, tls.crt, tls.key).
    Certs(certs::Args),
    /// Print the clusters.kubermatic.k8c.io CustomResourceDefinition (YAML) generated from eargate's types.
    Crd(crd::Args),
}

/// Runs the parsed command line and turns errors into exit code 2 with a clear message.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Check(args) => check::run(args),
        Command::Render(args) => render::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Reencrypt(args) => reencrypt::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Crd(args) => crd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Builds the multi-threaded runtime used by the long-running and networked subcommands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
