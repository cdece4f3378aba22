//! The `eargate` command line. Each subcommand lives in its own module with its `Args`
//! and a `run` function; this module only parses, dispatches and prints errors.
//!
//! Exit codes shared by every subcommand: 0 success/allowed, 1 a negative verdict
//! (denied, not verified, failures), 2 bad input, usage or connection errors.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

pub mod certs;
pub mod check;
pub mod completion;
pub mod crd;
pub mod errors;
pub mod flags;
pub mod input;
pub mod keygen;
pub mod kubeapi;
pub mod reconcile;
pub mod reencrypt;
pub mod render;
pub mod serve;
pub mod verify;

/// `-o/--output`: text for people, JSON or YAML for tools.
// The variants' names say it; a doc comment on one would become its help text in `--help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

impl Output {
    /// Prints a structured result in JSON or YAML (`Text` prints JSON too: callers only
    /// pass it when they have no text form of their own).
    pub fn print_value(self, value: &serde_json::Value) -> anyhow::Result<()> {
        match self {
            Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
            Output::Json | Output::Text => println!("{}", serde_json::to_string_pretty(value)?),
        }
        Ok(())
    }
}

/// Exit code for bad input, usage and connection errors.
pub const EXIT_BAD_INPUT: u8 = 2;

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success: allowed, verified, nothing failed
  1  a negative verdict: denied, not verified, objects failed
  2  bad input, usage error, or an API/etcd that cannot be reached";

/// The whole command line: one subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "eargate",
    version,
    about = "Admission gate and reconciler for Kubernetes encryption at rest",
    after_help = EXIT_CODES_HELP,
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a fresh secretbox key (base64 of 32 random bytes).
    #[command(after_help = EXIT_CODES_HELP)]
    Keygen(keygen::Args),
    /// Run the reconciler: roll encryption at rest out on every Cluster's control plane.
    #[command(after_help = EXIT_CODES_HELP)]
    Reconcile(Box<reconcile::Args>),
    /// Try Cluster edits offline (files, directories, stdin) or against a live Cluster:
    /// mutation then validation, exactly as the webhooks run them. Nothing is written.
    #[command(after_help = check::HELP_FOOTER)]
    Check(check::Args),
    /// Print the EncryptionConfiguration the reconciler would write for a Cluster (keys REDACTED).
    #[command(after_help = EXIT_CODES_HELP)]
    Render(render::Args),
    /// Read etcd and prove which objects (and older revisions) are sealed with which key.
    #[command(after_help = EXIT_CODES_HELP)]
    Verify(verify::Args),
    /// Rewrite every stored object of the given resources through the API (re-encrypt after key changes).
    #[command(after_help = EXIT_CODES_HELP)]
    Reencrypt(reencrypt::Args),
    /// Run the HTTPS admission server (POST /mutate, POST /validate) for kube-apiserver.
    #[command(after_help = EXIT_CODES_HELP)]
    Serve(serve::Args),
    /// Write a development CA and serving certificate (ca.crt, ca.key, tls.crt, tls.key).
    #[command(after_help = EXIT_CODES_HELP)]
    Certs(certs::Args),
    /// Print the clusters.kubermatic.k8c.io CustomResourceDefinition generated from eargate's types.
    #[command(after_help = EXIT_CODES_HELP)]
    Crd(crd::Args),
    /// Print a shell completion script (bash, zsh or fish); see docs/cli.md to install it.
    Completion(completion::Args),
}

impl Command {
    /// The `-o` of the command, where it has one: errors are printed in that format too.
    /// `render` and `crd` print YAML by default, a manifest: their errors stay on stderr
    /// unless JSON was asked for, so that nothing applies an error as a manifest.
    fn output(&self) -> Option<Output> {
        let json_only = |o: Output| (o == Output::Json).then_some(o);
        match self {
            Command::Check(a) => Some(a.output),
            Command::Render(a) => json_only(a.output),
            Command::Crd(a) => json_only(a.output),
            Command::Verify(a) => Some(a.output),
            Command::Reencrypt(a) => Some(a.output),
            Command::Keygen(a) => Some(a.output),
            Command::Certs(a) => Some(a.output),
            _ => None,
        }
    }
}

/// The name the binary was started as: `kubectl eargate` when kubectl runs it as its
/// `kubectl-eargate` plugin, so that help and usage show what the user typed.
pub fn display_name(argv0: Option<&std::ffi::OsStr>) -> &'static str {
    let base = argv0
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("eargate");
    if base.starts_with("kubectl-eargate") {
        "kubectl eargate"
    } else {
        "eargate"
    }
}

/// Parses the process's arguments (exits on usage errors and `--help`, as clap does).
pub fn parse_args() -> Cli {
    let argv0 = std::env::args_os().next();
    let name = display_name(argv0.as_deref());
    let mut command = Cli::command().bin_name(name);
    let matches = command.get_matches_mut();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
}

/// Runs the parsed command line; an error exits 2 with each cause once, on stderr (or as
/// one JSON/YAML document on stdout when the command was asked for `-o json|yaml`).
pub fn main(cli: Cli) -> ExitCode {
    let output = cli.command.output();
    let result = match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Reconcile(args) => reconcile::run(*args),
        Command::Check(args) => check::run(args),
        Command::Render(args) => render::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Reencrypt(args) => reencrypt::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Crd(args) => crd::run(args),
        Command::Completion(args) => completion::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            errors::report(&err, output);
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
