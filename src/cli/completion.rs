//! `eargate completion bash|zsh|fish`: the shell completion script, generated from the
//! same command definition the binary parses with (so it never drifts). Install steps are
//! in docs/cli.md.

use std::process::ExitCode;

use clap::CommandFactory as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
    /// The command name the script completes (`kubectl-eargate` for the kubectl plugin).
    #[arg(long, default_value = "eargate")]
    pub name: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, &args.name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
