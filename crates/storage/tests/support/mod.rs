//! Test support: a real etcd on a free loopback port with a temporary data dir, killed on
//! drop; TLS material from rcgen; the "tool missing" policy (fail under
//! `EARGATE_REQUIRE_TOOLS=1`, else a loud skip).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `true` when missing tools must fail the test (what `make test` sets).
pub fn tools_required() -> bool {
    std::env::var("EARGATE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Fails or loudly skips when a tool is missing; returns `false` to skip.
pub fn require_tool(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if tools_required() {
        panic!(
            "{what} is required (EARGATE_REQUIRE_TOOLS=1); run `bash scripts/install-test-deps.sh`"
        );
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {what} is not installed; this test did not run. \
         Run `bash scripts/install-test-deps.sh` (make test does). !!!!!!!!\n"
    );
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// TLS files for etcd and its client.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A CA, a serving certificate for 127.0.0.1/localhost and a client certificate, in `dir`.
pub fn make_tls(dir: &Path) -> TlsFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "eargate test etcd CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "eargate-verify");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();

    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    TlsFiles {
        ca: write("ca.crt", ca_cert.pem()),
        server_cert: write("server.crt", server_cert.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.crt", client_cert.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

/// A running etcd, killed (and its data dir removed) on drop.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    pub tls: Option<TlsFiles>,
}

/// Held while an etcd starts. Ports are picked by binding port 0 and letting go, so two
/// etcds started at once by parallel tests could be handed the same port: one would exit and
/// its test would talk to the other's listener. Serialized, a port is bound by its etcd
/// before the next test picks one.
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Etcd {
    /// Starts etcd, or returns `None` (after a loud skip) when it is not installed. Retries
    /// with fresh ports when etcd exits at start (a port taken by another process).
    pub fn start(with_tls: bool) -> Option<Etcd> {
        let binary = which("etcd");
        if !require_tool("etcd (Debian etcd-server)", binary.is_some()) {
            return None;
        }
        let binary = binary.unwrap();
        let _starting = STARTING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::spawn(&binary, with_tls) {
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
    fn spawn(binary: &Path, with_tls: bool) -> Result<Etcd, String> {
        let dir = tempfile::tempdir().unwrap();
        let tls = with_tls.then(|| make_tls(dir.path()));
        let (client_port, peer_port) = (free_port(), free_port());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(t) = &tls {
            cmd.arg(format!("--cert-file={}", t.server_cert.display()))
                .arg(format!("--key-file={}", t.server_key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd.spawn().expect("start etcd");
        let mut etcd = Etcd {
            child,
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
            if self.exited() {
                return Err(self.log());
            }
            if ports.iter().all(answers) {
                // Give the single-member cluster a moment to elect itself.
                std::thread::sleep(Duration::from_millis(300));
                return if self.exited() {
                    Err(self.log())
                } else {
                    Ok(())
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not start within 30s; its log:\n{}", self.log());
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// A target for eargate's client.
    pub fn target(&self) -> eargate_storage::etcd::EtcdTarget {
        eargate_storage::etcd::EtcdTarget {
            endpoints: vec![self.endpoint.clone()],
            ca_file: self.tls.as_ref().map(|t| t.ca.clone()),
            cert_file: self.tls.as_ref().map(|t| t.client_cert.clone()),
            key_file: self.tls.as_ref().map(|t| t.client_key.clone()),
            timeout: Some(Duration::from_secs(10)),
        }
    }

    /// A connected client (retrying while the member elects itself).
    pub async fn client(&self) -> eargate_storage::etcd_client::Client {
        let target = self.target();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match eargate_storage::etcd::connect(&target).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot connect to the test etcd: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
