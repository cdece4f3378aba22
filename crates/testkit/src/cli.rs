//! Running the `eargate` binary as a user does and reading what it printed. Only the test
//! crate knows where cargo built it (`env!("CARGO_BIN_EXE_eargate")`), so each helper takes
//! that path.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use crate::process::output_with_stdin;

/// `program args…` run in `dir` to its end, with the test process's environment.
pub fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run eargate")
}

/// [`run`] with `input` written to the program's stdin.
pub fn run_with_stdin(program: &str, args: &[&str], dir: &Path, input: &str) -> Output {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir).stderr(Stdio::piped());
    output_with_stdin(&mut command, input.as_bytes()).expect("run eargate")
}

/// What the program wrote to stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What the program wrote to stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `program certs` into `out_dir`: a CA, and a serving certificate for `localhost` and
/// 127.0.0.1 signed by it (`ca.crt`, `tls.crt`, `tls.key`).
pub fn certs(program: &str, out_dir: &Path) {
    let out = Command::new(program)
        .args(["certs", "--out-dir"])
        .arg(out_dir)
        .args(["--dns-name", "localhost", "--ip", "127.0.0.1"])
        .output()
        .expect("run eargate certs");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Sends the signal `name` (`TERM`, `INT`) to `child`, as `kill -<name>` does.
pub fn signal(child: &Child, name: &str) {
    let kill = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -{name} {}", child.id());
}

/// `program serve` on ephemeral loopback ports (HTTPS and admin) with the serving pair in
/// `certs` (`tls.crt`, `tls.key`, as [`certs`] writes them); add flags, then spawn it.
pub fn serve_command(program: &str, certs: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert-file")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(certs.join("tls.key"));
    command
}
