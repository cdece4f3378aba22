//! A user cluster as a seed's control-plane namespace describes it: the replicas of its
//! `apiserver` Deployment are real kube-apiserver processes sharing one real etcd of their
//! own, and a Service address in front of them.
//!
//! - Every replica is started with the same [`Pki`], so one client certificate and one CA
//!   work against all of them; each replica gets a fresh port at every start, as a new pod
//!   gets a fresh IP.
//! - The Service is a loopback TCP forwarder (round robin over the replicas that passed
//!   `/readyz`), standing in for the Service and kube-proxy: the admin kubeconfig the seed
//!   hands to re-encryption Jobs points at it, and keeps working while replicas restart.
//! - Who starts and stops replicas, and with which encryption configuration, is up to the
//!   caller (the [`crate::node_agent`] does it as kubelet would).
//! - The etcd serves TLS only and requires client certificates, as Kubermatic runs it: one
//!   cluster CA (the [`Pki`]'s, Kubermatic's `ca` Secret) signs etcd's serving certificate,
//!   the API servers' certificates and every etcd client certificate. Each replica reaches
//!   etcd with `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`: the CA and
//!   [`UserCluster::etcd_client`] (Kubermatic's `apiserver-etcd-client-certificate`).
//!   Tests reach it with [`Etcd::client_flags`], [`Etcd::etcdctl`] or the files of
//!   [`Etcd::tls`].
//!
//! The user-cluster API servers run with `--etcd-compaction-interval=0`: etcd history is
//! compacted only when a test says so ([`Etcd::compact_to_current`]), so "older revisions
//! remain until compaction" is deterministic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::apiserver::{client_from, ApiServer, Identity, Pki};
use crate::etcd::Etcd;
use crate::process::starting;
use crate::tools::require_binary;

/// One replica of the user cluster's API server.
#[derive(Default)]
struct Replica {
    server: Option<ApiServer>,
    /// The encryption configuration file it was started with.
    encryption_config: Option<PathBuf>,
    /// How many times this replica has been started.
    starts: u32,
}

/// A user cluster: its etcd, its API server replicas and the Service in front of them.
pub struct UserCluster {
    /// The Cluster's name.
    pub name: String,
    dir: PathBuf,
    /// The CA and certificates every replica serves and trusts.
    pub pki: Pki,
    /// The user cluster's own etcd (TLS with client-certificate auth, trusting [`Pki::ca`]).
    pub etcd: Etcd,
    /// The API servers' etcd client certificate (common name `apiserver-etcd-client`,
    /// signed by [`Pki::ca`]): what Kubermatic keeps in the `apiserver-etcd-client-certificate`
    /// Secret.
    pub etcd_client: crate::pki::CertPair,
    /// [`UserCluster::etcd_client`]'s certificate and key files.
    etcd_client_files: (PathBuf, PathBuf),
    apiserver_bin: PathBuf,
    kubectl: PathBuf,
    admin: Identity,
    /// The admin's client certificate and key (PEM), shared by every kubeconfig.
    admin_cert: crate::pki::CertPair,
    replicas: Vec<Mutex<Replica>>,
    service: Service,
    /// Admin kubeconfig pointing at the Service.
    pub kubeconfig: PathBuf,
}

impl UserCluster {
    /// Creates the cluster's files under `parent/user-<name>/`, starts its etcd and its
    /// Service (with no endpoints yet). No API server runs until [`UserCluster::start_replica`].
    /// `None` after a loud skip when the binaries are missing.
    pub fn new(parent: &Path, name: &str, replicas: usize) -> Option<UserCluster> {
        let apiserver_bin = require_binary("kube-apiserver")?;
        let kubectl = require_binary("kubectl")?;
        let dir = parent.join(format!("user-{name}"));
        std::fs::create_dir_all(&dir).expect("create the user-cluster dir");
        let pki = Pki::new(&dir);
        let etcd = Etcd::start_tls_in(&pki.ca, Some(&dir))?;
        let etcd_client = pki.ca.client("apiserver-etcd-client", &[]);
        let etcd_client_files = etcd_client.write(&dir, "apiserver-etcd-client");
        let admin = Identity::admin();
        let groups: Vec<&str> = admin.groups.iter().map(String::as_str).collect();
        let admin_cert = pki.ca.client(&admin.user, &groups);
        let service = Service::start(replicas);
        let mut cluster = UserCluster {
            name: name.to_owned(),
            dir,
            pki,
            etcd,
            etcd_client,
            etcd_client_files,
            apiserver_bin,
            kubectl,
            admin,
            admin_cert,
            replicas: (0..replicas).map(|_| Mutex::default()).collect(),
            service,
            kubeconfig: PathBuf::new(),
        };
        cluster.kubeconfig = cluster.write_kubeconfig("service", &cluster.service_url());
        Some(cluster)
    }

    /// How many replicas the cluster has.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// The Service's URL (`https://127.0.0.1:<port>`).
    pub fn service_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.service.port)
    }

    /// The directory of this cluster's files (logs, kubeconfigs, mounted configs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin identity every kubeconfig of this cluster uses.
    pub fn admin(&self) -> &Identity {
        &self.admin
    }

    /// The admin kubeconfig (pointing at the Service) as text, for the seed's
    /// `admin-kubeconfig` Secret.
    pub fn kubeconfig_text(&self) -> String {
        std::fs::read_to_string(&self.kubeconfig).expect("read the user-cluster kubeconfig")
    }

    fn replica(&self, i: usize) -> MutexGuard<'_, Replica> {
        self.replicas[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts replica `i` (stopped first if it runs) with `--encryption-provider-config`
    /// when `encryption_config` is given, waits for its `/readyz`, then adds it to the
    /// Service. Blocking. Returns the replica's URL.
    pub fn start_replica(&self, i: usize, encryption_config: Option<&Path>) -> String {
        self.start_replica_with(i, encryption_config, &[])
    }

    /// [`UserCluster::start_replica`] with more kube-apiserver flags (such as
    /// `--encryption-provider-config-automatic-reload`).
    pub fn start_replica_with(
        &self,
        i: usize,
        encryption_config: Option<&Path>,
        extra_args: &[String],
    ) -> String {
        self.stop_replica(i);
        let mut replica = self.replica(i);
        replica.starts += 1;
        let name = format!("kube-apiserver-{i}.{}", replica.starts);
        let (cert, key) = &self.etcd_client_files;
        let mut args = vec![
            "--etcd-compaction-interval=0".to_owned(),
            format!("--etcd-cafile={}", self.pki.ca_file.display()),
            format!("--etcd-certfile={}", cert.display()),
            format!("--etcd-keyfile={}", key.display()),
        ];
        if let Some(path) = encryption_config {
            args.push(format!("--encryption-provider-config={}", path.display()));
        }
        args.extend(extra_args.iter().cloned());
        let mut server = {
            let _starting = starting();
            ApiServer::spawn(
                &name,
                &self.apiserver_bin,
                &self.pki,
                &self.etcd.endpoint,
                &self.dir,
                &args,
            )
        };
        let kubeconfig = self.write_kubeconfig(&format!("replica-{i}"), &server.url);
        server.wait_ready(&self.kubectl, &kubeconfig, Duration::from_secs(180));
        let url = server.url.clone();
        self.service.set_endpoint(i, Some(server.port));
        replica.server = Some(server);
        replica.encryption_config = encryption_config.map(Path::to_owned);
        url
    }

    /// Takes replica `i` out of the Service, then stops it (SIGTERM) and waits for it.
    pub fn stop_replica(&self, i: usize) {
        self.service.set_endpoint(i, None);
        let server = self.replica(i).server.take();
        if let Some(mut server) = server {
            server.stop();
        }
    }

    /// Connections the Service currently forwards to replica `i`.
    pub fn service_connections(&self, i: usize) -> usize {
        self.service.active[i].load(Ordering::SeqCst)
    }

    /// The URL of replica `i`, `None` while it is not running.
    pub fn replica_url(&self, i: usize) -> Option<String> {
        self.replica(i).server.as_ref().map(|s| s.url.clone())
    }

    /// The encryption configuration file replica `i` runs with.
    pub fn replica_encryption_config(&self, i: usize) -> Option<PathBuf> {
        self.replica(i).encryption_config.clone()
    }

    /// How many times replica `i` has been started.
    pub fn replica_starts(&self, i: usize) -> u32 {
        self.replica(i).starts
    }

    /// The log files of every API server started so far.
    pub fn apiserver_logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                            n.starts_with("kube-apiserver-") && n.ends_with(".log")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }

    /// A `kube::Client` through the Service.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// A `kube::Client` straight to replica `i`, `None` while it is not running.
    pub async fn replica_client(&self, i: usize) -> Option<(String, kube::Client)> {
        let url = self.replica_url(i)?;
        Some((url.clone(), self.client_for_url(&url).await))
    }

    /// A `kube::Client` for the admin at `url` (a replica's URL or the Service's).
    pub async fn client_for_url(&self, url: &str) -> kube::Client {
        let config = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml("admin", url))
            .expect("a kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            config,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("a client configuration");
        kube::Client::try_from(config).expect("a kube client")
    }

    /// `kubectl` aimed at the Service as the admin.
    pub fn kubectl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.kubectl);
        cmd.env_remove("KUBECONFIG")
            .env("HOME", &self.dir)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// A kubeconfig (text) pointing at the Service for `who`, a client certificate of this
    /// cluster's CA. What `who` may do is up to the RBAC of the user cluster.
    pub fn kubeconfig_text_for(&self, who: &Identity) -> String {
        let groups: Vec<&str> = who.groups.iter().map(String::as_str).collect();
        let pair = self.pki.ca.client(&who.user, &groups);
        self.kubeconfig_yaml_with(&pair, "user", &self.service_url())
    }

    fn kubeconfig_yaml(&self, stem: &str, url: &str) -> String {
        self.kubeconfig_yaml_with(&self.admin_cert, stem, url)
    }

    fn kubeconfig_yaml_with(&self, cert: &crate::pki::CertPair, stem: &str, url: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {
                "server": url, "certificate-authority-data": b64(&self.pki.ca.cert_pem)}}],
            "users": [{"name": stem, "user": {
                "client-certificate-data": b64(&cert.cert_pem),
                "client-key-data": b64(&cert.key_pem)}}],
            "contexts": [{"name": stem, "context": {"cluster": self.name, "user": stem}}],
            "current-context": stem,
        });
        serde_yaml::to_string(&config).expect("kubeconfig as YAML")
    }

    fn write_kubeconfig(&self, stem: &str, url: &str) -> PathBuf {
        let path = self.dir.join(format!("kubeconfig-{stem}.yaml"));
        std::fs::write(&path, self.kubeconfig_yaml(stem, url)).expect("write a kubeconfig");
        path
    }

    /// Waits until the Service answers `/readyz` through kubectl (some replica is up).
    pub fn wait_service_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self
                .kubectl()
                .args(["get", "--raw=/readyz", "--request-timeout=5s"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the user cluster {} did not answer through its Service within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for UserCluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.stop_replica(i);
        }
        self.service.stop();
    }
}

/// The Service: a TCP forwarder on loopback, round robin over the ready endpoints.
struct Service {
    port: u16,
    endpoints: Arc<Mutex<Vec<Option<u16>>>>,
    /// Open forwarded connections per endpoint.
    active: Arc<Vec<AtomicUsize>>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(replicas: usize) -> Service {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the Service");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("an address").port();
        let endpoints = Arc::new(Mutex::new(vec![None; replicas]));
        let active: Arc<Vec<AtomicUsize>> =
            Arc::new((0..replicas).map(|_| AtomicUsize::new(0)).collect());
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (eps, act) = (endpoints.clone(), active.clone());
        let thread = std::thread::Builder::new()
            .name("user-cluster-service".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the Service");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    let mut next = 0usize;
                    loop {
                        let accepted = tokio::select! {
                            a = listener.accept() => a,
                            _ = stopped.wait_for(|s| *s) => return,
                        };
                        let Ok((mut inbound, _)) = accepted else {
                            continue;
                        };
                        let ready: Vec<(usize, u16)> = eps
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .iter()
                            .enumerate()
                            .filter_map(|(i, p)| p.map(|p| (i, p)))
                            .collect();
                        if ready.is_empty() {
                            continue; // no endpoints: the connection is refused (dropped)
                        }
                        let (index, backend) = ready[next % ready.len()];
                        next = next.wrapping_add(1);
                        let act = act.clone();
                        tokio::spawn(async move {
                            if let Ok(mut outbound) =
                                tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                            {
                                act[index].fetch_add(1, Ordering::SeqCst);
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                                act[index].fetch_sub(1, Ordering::SeqCst);
                            }
                        });
                    }
                });
            })
            .expect("start the Service thread");
        Service {
            port,
            endpoints,
            active,
            stop,
            thread: Some(thread),
        }
    }

    fn set_endpoint(&self, i: usize, port: Option<u16>) {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())[i] = port;
    }

    fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
