//! A real etcd (the pinned 3.6 build) on loopback with a temporary data dir.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::pki::Ca;
use crate::process::{starting, Server};
use crate::tools::{free_port, require_binary};

/// TLS files for etcd and its client.
pub struct TlsFiles {
    /// The CA certificate's file.
    pub ca: PathBuf,
    /// etcd's serving certificate.
    pub server_cert: PathBuf,
    /// Its private key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
}

/// A CA, a serving certificate for 127.0.0.1/localhost and a client certificate, in `dir`.
pub fn make_tls(dir: &Path) -> TlsFiles {
    let ca = Ca::new("eargate test etcd CA");
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, &ca.cert_pem).expect("write the etcd CA");
    let (server_cert, server_key) = ca.server(&[]).write(dir, "server");
    let (client_cert, client_key) = ca.client("eargate-verify", &[]).write(dir, "client");
    TlsFiles {
        ca: ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A running etcd, stopped (and its data dir removed) on drop.
pub struct Etcd {
    server: Server,
    /// `http://127.0.0.1:<port>` or `https://…` with TLS.
    pub endpoint: String,
    /// Data dir, log and TLS files.
    pub dir: tempfile::TempDir,
    /// The TLS files, when started with TLS.
    pub tls: Option<TlsFiles>,
}

impl Etcd {
    /// Starts etcd, or returns `None` (after a loud skip) when it is not built. Retries with
    /// fresh ports when etcd exits at start (a port taken by another process).
    pub fn start(with_tls: bool) -> Option<Etcd> {
        Self::start_in(with_tls, None)
    }

    /// [`Etcd::start`] with the data dir and log under `parent` (kept after a failure).
    pub fn start_in(with_tls: bool, parent: Option<&Path>) -> Option<Etcd> {
        let binary = require_binary("etcd")?;
        let _starting = starting();
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::spawn(&binary, with_tls, parent) {
                Ok(etcd) => return Some(etcd),
                Err(log) if attempt < ATTEMPTS => {
                    eprintln!("etcd exited at start (attempt {attempt}), retrying; its log:\n{log}")
                }
                Err(log) => panic!("etcd did not start in {ATTEMPTS} attempts; its log:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics on its last attempt")
    }

    /// One start on fresh ports; `Err` carries etcd's log when it exited before serving.
    fn spawn(binary: &Path, with_tls: bool, parent: Option<&Path>) -> Result<Etcd, String> {
        let dir = match parent {
            Some(p) => tempfile::Builder::new().prefix("etcd-").tempdir_in(p),
            None => tempfile::Builder::new().prefix("eargate-etcd-").tempdir(),
        }
        .expect("a temporary etcd dir");
        let tls = with_tls.then(|| make_tls(dir.path()));
        let (client_port, peer_port) = (free_port(), free_port());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec![
            "--name=test".to_owned(),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={endpoint}"),
            format!("--advertise-client-urls={endpoint}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=test={peer}"),
            "--log-level=warn".to_owned(),
        ];
        if let Some(t) = &tls {
            args.push(format!("--cert-file={}", t.server_cert.display()));
            args.push(format!("--key-file={}", t.server_key.display()));
            args.push(format!("--trusted-ca-file={}", t.ca.display()));
            args.push("--client-cert-auth".to_owned());
        }
        let server = Server::spawn("etcd", binary, &args, &dir.path().join("etcd.log"));
        let mut etcd = Etcd {
            server,
            endpoint,
            dir,
            tls,
        };
        etcd.wait_ready(&[client_port, peer_port])?;
        Ok(etcd)
    }

    /// Waits until both ports answer and etcd is still running a moment later (it exits when
    /// a port it wants is taken, and the port may then answer for someone else).
    fn wait_ready(&mut self, ports: &[u16]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let answers = |port: &u16| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok();
        while Instant::now() < deadline {
            if self.server.exited() {
                return Err(self.server.log());
            }
            if ports.iter().all(answers) {
                // Give the single-member cluster a moment to elect itself.
                std::thread::sleep(Duration::from_millis(300));
                return if self.server.exited() {
                    Err(self.server.log())
                } else {
                    Ok(())
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "etcd did not start within 30s; its log ({}):\n{}",
            self.server.log_path().display(),
            self.server.log()
        );
    }

    /// etcd's log so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// An `etcdctl` command (the pinned build) aimed at this etcd.
    pub fn etcdctl(&self) -> Option<std::process::Command> {
        let binary = require_binary("etcdctl")?;
        let mut cmd = std::process::Command::new(binary);
        cmd.arg(format!("--endpoints={}", self.endpoint));
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.client_cert.display()))
                .arg(format!("--key={}", t.client_key.display()));
        }
        Some(cmd)
    }
}
