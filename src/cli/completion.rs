//! `eargate completion bash|zsh|fish`: the shell completion script, generated from the
//! same command definition the binary parses with (so it never drifts). Install steps are
//! in docs/cli.md.

use std::process::ExitCode;

use clap::CommandFactory as _;

/// The flags of `eargate completion`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
    /// The command name the script completes (`kubectl-eargate` for the kubectl plugin).
    #[arg(long, default_value = "eargate")]
    pub name: String,
}

/// Prints the completion script for the shell; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, &args.name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
