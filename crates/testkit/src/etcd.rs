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
    make_tls_with(dir, &Ca::new("eargate test etcd CA"))
}

/// [`make_tls`] with certificates signed by `ca` (a cluster CA that signs other certificates
/// too, as Kubermatic's `ca` Secret does for a user cluster's etcd and API servers).
pub fn make_tls_with(dir: &Path, ca: &Ca) -> TlsFiles {
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
    /// With TLS, a CA of its own signs its certificates.
    pub fn start_in(with_tls: bool, parent: Option<&Path>) -> Option<Etcd> {
        let own = with_tls.then(|| Ca::new("eargate test etcd CA"));
        Self::start_with(own.as_ref(), parent)
    }

    /// etcd serving TLS and requiring client certificates (`--client-cert-auth`), both
    /// trusted from `ca`, as Kubermatic runs a user cluster's etcd: every certificate `ca`
    /// signs for client use gets in, any other is refused. [`Etcd::tls`] holds a client
    /// certificate for tests and `etcdctl`.
    pub fn start_tls_in(ca: &Ca, parent: Option<&Path>) -> Option<Etcd> {
        Self::start_with(Some(ca), parent)
    }

    fn start_with(ca: Option<&Ca>, parent: Option<&Path>) -> Option<Etcd> {
        let binary = require_binary("etcd")?;
        let _starting = starting();
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::spawn(&binary, ca, parent) {
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
    fn spawn(binary: &Path, ca: Option<&Ca>, parent: Option<&Path>) -> Result<Etcd, String> {
        let dir = match parent {
            Some(p) => tempfile::Builder::new().prefix("etcd-").tempdir_in(p),
            None => tempfile::Builder::new().prefix("eargate-etcd-").tempdir(),
        }
        .expect("a temporary etcd dir");
        let tls = ca.map(|ca| make_tls_with(dir.path(), ca));
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

    /// The flags `eargate verify` (and `etcdctl`) reach this etcd with: `--etcd-endpoints`,
    /// and with TLS `--cacert`, `--cert` and `--key` (the client certificate of
    /// [`Etcd::tls`]).
    pub fn client_flags(&self) -> Vec<String> {
        let mut flags = vec![format!("--etcd-endpoints={}", self.endpoint)];
        flags.extend(self.tls_flags());
        flags
    }

    /// `--cacert`, `--cert` and `--key` for [`Etcd::tls`]; nothing without TLS.
    pub fn tls_flags(&self) -> Vec<String> {
        self.tls
            .iter()
            .flat_map(|t| {
                [
                    format!("--cacert={}", t.ca.display()),
                    format!("--cert={}", t.client_cert.display()),
                    format!("--key={}", t.client_key.display()),
                ]
            })
            .collect()
    }

    /// The current revision of the keyspace (`etcdctl endpoint status`). Blocking.
    pub fn revision(&self) -> i64 {
        let out = self
            .etcdctl()
            .expect("etcdctl is built where etcd is")
            .args(["endpoint", "status", "--write-out=json"])
            .output()
            .expect("run etcdctl endpoint status");
        assert!(
            out.status.success(),
            "etcdctl endpoint status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("etcdctl prints JSON");
        status[0]["Status"]["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in etcdctl's status: {status}"))
    }

    /// Compacts the history up to `revision` (`etcdctl compact`): older revisions are gone,
    /// as after kube-apiserver's periodic compaction. Compacting to a revision that already
    /// is the compaction revision is not an error. Blocking.
    pub fn compact(&self, revision: i64) {
        let out = self
            .etcdctl()
            .expect("etcdctl is built where etcd is")
            .args(["compact", &revision.to_string()])
            .output()
            .expect("run etcdctl compact");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("required revision has been compacted"),
            "etcdctl compact {revision}: {stderr}"
        );
    }

    /// Compacts the history up to the current revision; returns that revision. Blocking.
    pub fn compact_to_current(&self) -> i64 {
        let revision = self.revision();
        self.compact(revision);
        revision
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
