//! A real kube-apiserver (the pinned build) on a real etcd, on loopback.
//!
//! [`ControlPlane::shared`] gives each test binary one control plane, started on first use
//! and shared by its tests (each test uses its own names). Identities are client
//! certificates signed by the control plane's CA: the user is the certificate's common name,
//! the groups its organizations, so RBAC and "another user" are real. Service accounts get
//! tokens from the real TokenRequest API.
//!
//! Everything lives under `target/testkit/<test binary>-<pid>/`: the kubeconfigs, the
//! certificates and the logs (`kube-apiserver.log`, `etcd-*/etcd.log`). The directory is kept
//! after the run so that a failure can be read, and removed by the next run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::etcd::Etcd;
use crate::pki::{signing_key_pem, Ca};
use crate::process::{starting, Server};
use crate::tools::{free_port, require_binary, workspace_root};

/// Who a kubeconfig, client or kubectl acts as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The user name, the client certificate's common name.
    pub user: String,
    /// The groups, the client certificate's organizations.
    pub groups: Vec<String>,
}

impl Identity {
    /// The cluster administrator (group `system:masters`).
    pub fn admin() -> Identity {
        Identity::user("eargate-test-admin", &["system:masters"])
    }

    /// A user with these groups; what it may do is up to the RBAC the test creates.
    pub fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.to_owned(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// The certificates every API server of one control plane shares: one CA signs the serving
/// certificates and the client certificates, and one key signs service-account tokens.
pub struct Pki {
    /// The CA that signs every certificate here.
    pub ca: Ca,
    /// The CA certificate's file.
    pub ca_file: PathBuf,
    /// The API servers' serving certificate.
    pub serving_cert: PathBuf,
    /// Its private key.
    pub serving_key: PathBuf,
    /// The key that signs service-account tokens.
    pub service_account_key: PathBuf,
    /// Its public half, which verifies them.
    pub service_account_pub: PathBuf,
}

impl Pki {
    /// A new CA, serving certificate and service-account key pair, written into `dir`.
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new("eargate testkit CA");
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, &ca.cert_pem).expect("write the CA");
        let (serving_cert, serving_key) = ca
            .server(&["kubernetes", "kubernetes.default", "kubernetes.default.svc"])
            .write(dir, "apiserver");
        let (private, public) = signing_key_pem();
        let service_account_key = dir.join("service-account.key");
        std::fs::write(&service_account_key, private).expect("write the SA key");
        let service_account_pub = dir.join("service-account.pub");
        std::fs::write(&service_account_pub, public).expect("write the SA public key");
        Pki {
            ca,
            ca_file,
            serving_cert,
            serving_key,
            service_account_key,
            service_account_pub,
        }
    }
}

/// One kube-apiserver process.
pub struct ApiServer {
    server: Server,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
}

impl ApiServer {
    /// Starts kube-apiserver on `etcd` with `extra_args` (for example
    /// `--encryption-provider-config=…`), logging to `<dir>/<name>.log`. It listens on a free
    /// loopback port, or on the one a `--secure-port=` in `extra_args` names. It is not
    /// waited for: see [`ApiServer::wait_ready`].
    pub fn spawn(
        name: &str,
        binary: &Path,
        pki: &Pki,
        etcd: &str,
        dir: &Path,
        extra_args: &[String],
    ) -> ApiServer {
        let asked = extra_args
            .iter()
            .find_map(|a| a.strip_prefix("--secure-port=")?.parse::<u16>().ok());
        let port = asked.unwrap_or_else(free_port);
        let mut args = vec![
            format!("--etcd-servers={etcd}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_file.display()),
            "--authorization-mode=RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            // Nothing here needs fairness queues; without them the server starts faster.
            "--enable-priority-and-fairness=false".to_owned(),
            "--profiling=false".to_owned(),
            // The default reconciler refuses a loopback advertise address.
            "--endpoint-reconciler-type=none".to_owned(),
        ];
        args.extend(
            extra_args
                .iter()
                .filter(|a| !a.starts_with("--secure-port="))
                .cloned(),
        );
        let server = Server::spawn(name, binary, &args, &dir.join(format!("{name}.log")));
        ApiServer {
            server,
            url: format!("https://127.0.0.1:{port}"),
            port,
        }
    }

    /// Waits until `/readyz` answers ok (asked with `kubeconfig`), up to `timeout`.
    pub fn wait_ready(&mut self, kubectl: &Path, kubeconfig: &Path, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if self.server.exited() {
                panic!(
                    "kube-apiserver exited at start; its log ({}):\n{}",
                    self.server.log_path().display(),
                    tail(&self.server.log(), 60)
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let out = Command::new(kubectl)
                    .env_remove("KUBECONFIG")
                    .arg(format!("--kubeconfig={}", kubeconfig.display()))
                    .args(["get", "--raw=/readyz", "--request-timeout=5s"])
                    .output()
                    .expect("run kubectl");
                if out.status.success() {
                    return;
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "kube-apiserver was not ready within {timeout:?} (last /readyz answer: {last}); its log: {}",
            self.server.log_path().display()
        );
    }

    /// Stops the process and waits for it.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// The path of this server's log.
    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// etcd plus one kube-apiserver, with identities.
pub struct ControlPlane {
    dir: PathBuf,
    /// The certificates.
    pub pki: Pki,
    /// The etcd it stores in.
    pub etcd: Etcd,
    /// The kube-apiserver.
    pub apiserver: ApiServer,
    kubectl: PathBuf,
    kubeconfigs: Mutex<HashMap<Identity, PathBuf>>,
    /// From the first process start to `/readyz` answering ok.
    pub started_in: Duration,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

impl ControlPlane {
    /// This test binary's control plane, started on first use. `None` after a loud skip
    /// when the binaries are missing (a failure under `EARGATE_REQUIRE_TOOLS=1`).
    pub fn shared() -> Option<&'static ControlPlane> {
        if let Some(cp) = SHARED.get() {
            return Some(cp);
        }
        // Checked before taking the lock, so a missing tool skips every test alike.
        require_binary("kube-apiserver")?;
        require_binary("kubectl")?;
        require_binary("etcd")?;
        // Started on a plain thread: tokio tests call this from inside a runtime.
        Some(SHARED.get_or_init(|| {
            let cp = std::thread::spawn(|| ControlPlane::start().expect("binaries checked above"))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            // Every failing test of this binary then says where the control plane's logs are.
            let logs = cp.logs();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                previous(info);
                eprintln!("testkit: {logs}");
            }));
            cp
        }))
    }

    /// A control plane of its own (stopped on drop), for a test that must not share one.
    pub fn start() -> Option<ControlPlane> {
        let apiserver_bin = require_binary("kube-apiserver")?;
        let kubectl = require_binary("kubectl")?;
        let dir = run_dir();
        let began = Instant::now();
        let pki = Pki::new(&dir);
        let etcd = Etcd::start_in(false, Some(&dir))?;
        let mut apiserver = {
            let _starting = starting();
            ApiServer::spawn(
                "kube-apiserver",
                &apiserver_bin,
                &pki,
                &etcd.endpoint,
                &dir,
                &[],
            )
        };
        let admin = Identity::admin();
        let admin_kubeconfig = client_cert_kubeconfig(&dir, &apiserver.url, &pki.ca, &admin);
        apiserver.wait_ready(&kubectl, &admin_kubeconfig, Duration::from_secs(120));
        let cp = ControlPlane {
            dir,
            pki,
            etcd,
            apiserver,
            kubectl,
            kubeconfigs: Mutex::new(HashMap::from([(admin, admin_kubeconfig)])),
            started_in: began.elapsed(),
        };
        eprintln!(
            "testkit: control plane ready in {:.1} s at {} (etcd {}); logs and kubeconfigs in {}",
            cp.started_in.as_secs_f64(),
            cp.apiserver.url,
            cp.etcd.endpoint,
            cp.dir.display()
        );
        Some(cp)
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        &self.apiserver.url
    }

    /// Where this control plane keeps its logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "control-plane logs in {} (kube-apiserver.log, etcd-*/etcd.log)",
            self.dir.display()
        )
    }

    /// The directory of this control plane's files; tests may put their own files here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kubeconfig file for `who` (a client certificate of the control plane's CA).
    pub fn kubeconfig(&self, who: &Identity) -> PathBuf {
        let mut known = self
            .kubeconfigs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(path) = known.get(who) {
            return path.clone();
        }
        let path = client_cert_kubeconfig(&self.dir, self.url(), &self.pki.ca, who);
        known.insert(who.clone(), path.clone());
        path
    }

    /// A kubeconfig file that authenticates with a bearer token.
    pub fn token_kubeconfig(&self, file_stem: &str, token: &str) -> PathBuf {
        write_kubeconfig(
            &self.dir,
            self.url(),
            &self.pki.ca.cert_pem,
            file_stem,
            serde_json::json!({ "token": token }),
        )
    }

    /// A kubeconfig with a fresh token of a service account (TokenRequest, one hour).
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let out = self.kubectl_ok(
            &Identity::admin(),
            &["create", "token", name, "-n", namespace, "--duration=1h"],
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        self.token_kubeconfig(&format!("sa-{namespace}-{name}"), &token)
    }

    /// A `kube::Client` acting as `who`. A new one per call: each tokio test has its own
    /// runtime, and a client's connections belong to the runtime that opened them.
    pub async fn client(&self, who: &Identity) -> kube::Client {
        client_from(&self.kubeconfig(who)).await
    }

    /// `kubectl --kubeconfig <who's kubeconfig>`, with `KUBECONFIG` and `EDITOR` cleared.
    pub fn kubectl(&self, who: &Identity) -> Command {
        self.kubectl_with(&self.kubeconfig(who))
    }

    /// `kubectl` with this kubeconfig.
    pub fn kubectl_with(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env_remove("KUBECONFIG")
            .env_remove("EDITOR")
            .env_remove("KUBE_EDITOR")
            .env("HOME", &self.dir)
            .arg(format!("--kubeconfig={}", kubeconfig.display()));
        cmd
    }

    /// Runs kubectl as `who` and panics (showing its output) unless it succeeds.
    pub fn kubectl_ok(&self, who: &Identity, args: &[&str]) -> Output {
        let out = self.kubectl(who).args(args).output().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        out
    }

    /// `kubectl apply -f -` of `objects` (JSON values) as the admin.
    pub fn apply(&self, objects: &[serde_json::Value]) -> Output {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let path = tempfile::Builder::new()
            .suffix(".json")
            .tempfile_in(&self.dir)
            .expect("a temporary manifest");
        std::fs::write(path.path(), list.to_string()).expect("write a manifest");
        self.kubectl_ok(
            &Identity::admin(),
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                &path.path().display().to_string(),
            ],
        )
    }
}

/// A kubeconfig in `dir` for `who`, with a client certificate signed by `ca`.
fn client_cert_kubeconfig(dir: &Path, url: &str, ca: &Ca, who: &Identity) -> PathBuf {
    let groups: Vec<&str> = who.groups.iter().map(String::as_str).collect();
    let pair = ca.client(&who.user, &groups);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let credentials = serde_json::json!({
        "client-certificate-data": b64(&pair.cert_pem),
        "client-key-data": b64(&pair.key_pem),
    });
    write_kubeconfig(dir, url, &ca.cert_pem, &file_safe(&who.user), credentials)
}

/// Writes `<dir>/kubeconfig-<stem>.yaml` for `url`, trusting `ca_pem`, with `credentials`
/// as its user.
fn write_kubeconfig(
    dir: &Path,
    url: &str,
    ca_pem: &str,
    stem: &str,
    credentials: serde_json::Value,
) -> PathBuf {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testkit", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [{"name": stem, "user": credentials}],
        "contexts": [{"name": stem, "context": {"cluster": "testkit", "user": stem}}],
        "current-context": stem,
    });
    let path = dir.join(format!("kubeconfig-{stem}.yaml"));
    let text = serde_yaml::to_string(&config).expect("kubeconfig as YAML");
    std::fs::write(&path, text).expect("write a kubeconfig");
    path
}

/// A `kube::Client` from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", kubeconfig.display()));
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .expect("a client configuration from the kubeconfig");
    kube::Client::try_from(config).expect("a kube client")
}

/// `target/testkit/<test binary>-<pid>`, after removing the directories of earlier runs
/// whose process is gone.
fn run_dir() -> PathBuf {
    let root = workspace_root().join("target/testkit");
    std::fs::create_dir_all(&root).expect("create target/testkit");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".to_owned());
    let base = format!(
        "{}-{}",
        exe.split('-').next().unwrap_or("test"),
        std::process::id()
    );
    // A second control plane in the same process gets its own directory.
    let mut dir = root.join(&base);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = root.join(format!("{base}.{n}-{}", std::process::id()));
    }
    std::fs::create_dir_all(&dir).expect("create the control-plane dir");
    dir
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
