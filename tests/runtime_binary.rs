//! What `eargate serve` and `eargate reconcile` share, on the real binary: the admin port
//! answers `/healthz`, `/readyz` and `/metrics` alike, text log lines escape control
//! characters (a value cannot start a forged line), and SIGTERM ends both with exit 0.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use eargate_testkit::cli;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
/// Written into a value both commands log at start-up.
const FORGED: &str = "x\nFORGED level=ERROR";

/// A command started with text logs; its stderr lines arrive on `lines`.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(command: &mut Command) -> Running {
        let mut child = command
            .args(["--log-format", "text"])
            .env_remove("EARGATE_LOG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line containing `needle` (waiting up to 30 s for it).
    fn line_with(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no line with {needle:?}:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    /// The admin address from the field `metrics=` of the start line.
    fn admin_addr(&mut self, start_line: &str) -> SocketAddr {
        let line = self.line_with(start_line);
        let value = line
            .split(' ')
            .find_map(|field| field.strip_prefix("metrics="))
            .unwrap_or_else(|| panic!("no metrics= in {line}"));
        let value = value
            .strip_prefix("Some(")
            .and_then(|v| v.strip_suffix(')'))
            .unwrap_or(value);
        value.parse().unwrap()
    }

    /// SIGTERM, then the exit code (within 30 s) and every line logged.
    fn terminate(mut self) -> (i32, String) {
        cli::signal(&self.child, "TERM");
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.iter());
                return (status.code().unwrap_or(-1), self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("did not exit after SIGTERM:\n{}", self.seen.join("\n"));
    }
}

/// A plain HTTP/1.1 GET: the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The three admin routes answer; `/metrics` carries `metric`.
fn assert_admin_port(addr: SocketAddr, metric: &str) {
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(addr, "/readyz"), (200, "ready\n".to_owned()));
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains(metric), "{metric} missing:\n{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
}

/// The line holds the forged value escaped, and nothing logged starts with it.
fn assert_escaped(line: &str, logs: &str) {
    assert!(line.contains(r"x\nFORGED level=ERROR"), "{line}");
    assert!(
        !logs.lines().any(|l| l.starts_with("FORGED")),
        "a value started a line:\n{logs}"
    );
}

#[test]
fn serve_answers_on_the_admin_port_and_escapes_its_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    // The certificate's path is logged at start-up: give it a newline.
    let certs = dir.path().join(FORGED);
    cli::certs(EARGATE, &certs);
    let mut serve =
        Running::start(cli::serve_command(EARGATE, &certs).args(["--shutdown-delay", "0s"]));
    let admin = serve.admin_addr("eargate admission server listening");
    assert_admin_port(admin, "eargate_tls_certificate_expiry_timestamp_seconds");
    let line = serve.line_with("eargate admission server listening");
    let (code, logs) = serve.terminate();
    assert_eq!(code, 0, "{logs}");
    assert_escaped(&line, &logs);
}

#[test]
fn reconcile_answers_on_the_admin_port_and_escapes_its_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the controller keeps retrying, which is all this test needs.
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, "https://127.0.0.1:9");
    let mut reconcile = Running::start(
        Command::new(EARGATE)
            .args([
                "reconcile",
                "--job-image",
                "eargate:test",
                "--no-leader-election",
            ])
            .args(["--metrics-listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&kubeconfig)
            // The identity is logged at start-up: give it a newline.
            .args(["--identity", FORGED]),
    );
    let admin = reconcile.admin_addr("starting the reconciler");
    assert_admin_port(admin, "eargate_leader 1");
    let line = reconcile.line_with("starting the reconciler");
    let (code, logs) = reconcile.terminate();
    assert_eq!(code, 0, "{logs}");
    assert_escaped(&line, &logs);
}

fn write_kubeconfig(path: &Path, server: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
        ),
    )
    .unwrap();
}
