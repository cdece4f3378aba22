//! The seed side of a rollout, shared by the rollout tests (`tests/k8s_rollout.rs`,
//! `tests/k8s_reconcile.rs`), the scale run and the rollout benchmarks (`benches/`):
//!
//! - [`Seed`]: the chart's CRD and RBAC installed on a [`ControlPlane`], and optionally the
//!   chart's webhooks pointed at a local `eargate serve`, so every edit passes the real gate.
//! - [`Reconciler`]: `eargate reconcile` as its own process, authenticated with a
//!   TokenRequest token of the chart's ServiceAccount (so only the chart's RBAC applies).
//! - [`HostedCluster`]: one Cluster's control-plane namespace as Kubermatic keeps it (the
//!   `apiserver` Deployment, the `admin-kubeconfig` Secret, the etcd client certificate and
//!   CA Secrets), a [`UserCluster`] whose API server replicas are that Deployment's pods,
//!   and the [`NodeAgent`] that rolls them.
//! - [`create_data`]: Secrets and ConfigMaps in a user cluster, with values a check can
//!   recompute ([`secret_value`], [`configmap_value`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use eargate_policy::names;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use crate::apiserver::{ControlPlane, Identity};
use crate::chart;
use crate::gate::{webhook_args, webhooks_pointed_at, Gate};
use crate::node_agent::{NodeAgent, NodeAgentConfig};
use crate::process::Server;
use crate::tools::free_port;
use crate::user_cluster::UserCluster;

static B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The seed: a control plane with the chart's CRD and RBAC, and the gate if asked for.
pub struct Seed {
    /// The seed's control plane.
    pub cp: &'static ControlPlane,
    /// The namespace the chart is installed in (its ServiceAccount, the reconciler's Lease).
    pub namespace: String,
    /// The `eargate` binary everything runs.
    pub eargate: PathBuf,
    gate: Option<Gate>,
}

impl Seed {
    /// Installs the chart's CRD and RBAC into `namespace`; with `with_gate`, starts
    /// `eargate serve` with the chart's arguments, points the chart's webhooks at it and waits
    /// until kube-apiserver calls it. `None` after a loud skip when tools are missing.
    pub fn install(
        cp: &'static ControlPlane,
        eargate: &Path,
        namespace: &str,
        with_gate: bool,
    ) -> Option<Seed> {
        let objects = chart::install_crd_and_rbac(cp, "eargate", namespace)?;
        let gate = with_gate.then(|| {
            let gate = Gate::start(eargate, cp.dir(), "main", &webhook_args(&objects));
            cp.apply(&webhooks_pointed_at(&objects, &gate));
            wait_for_the_gate(cp);
            gate
        });
        Some(Seed {
            cp,
            namespace: namespace.to_owned(),
            eargate: eargate.to_owned(),
            gate,
        })
    }

    /// The gate's log file (`None` without a gate).
    pub fn gate_log(&self) -> Option<PathBuf> {
        self.gate.as_ref().map(|g| g.dir().join("serve.log"))
    }

    /// Starts a reconciler named `identity` with the chart's ServiceAccount.
    pub fn start_reconciler(&self, identity: &str, extra_args: &[String]) -> Reconciler {
        Reconciler::start(self, identity, extra_args)
    }
}

/// kube-apiserver learns webhook configurations from a watch: waits until a Cluster create
/// (a server-side dry run with a key but no feature gate) is judged by the gate (EAR001).
fn wait_for_the_gate(cp: &ControlPlane) {
    let probe = json!({
        "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
        "metadata": {"name": "probe-gate"},
        "spec": {"humanReadableName": "probe", "version": "1.33.2",
                 "encryptionConfiguration": {"enabled": true, "resources": ["secrets"],
                    "secretbox": {"keys": [{"name": "k", "value": B64.encode([7u8; 32])}]}}}
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = kubectl_stdin(
            cp.kubectl(&Identity::admin())
                .args(["create", "--dry-run=server", "-f", "-"]),
            &probe.to_string(),
        );
        if String::from_utf8_lossy(&out.stderr).contains("EAR001") {
            return;
        }
        assert!(Instant::now() < deadline, "the gate never judged a Cluster");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `cmd` with `input` on its standard input; returns what it printed.
pub fn kubectl_stdin(cmd: &mut Command, input: &str) -> Output {
    crate::process::output_with_stdin(cmd.stderr(Stdio::piped()), input.as_bytes())
        .expect("run kubectl")
}

/// `eargate reconcile`, its own process, with a token of the chart's ServiceAccount.
pub struct Reconciler {
    server: Server,
    log: PathBuf,
    pid_file: PathBuf,
    /// `--identity`: its name in the Lease and in Events.
    pub identity: String,
    /// The loopback port of its admin server (`/metrics`, `/readyz`).
    pub metrics_port: u16,
}

impl Reconciler {
    fn start(seed: &Seed, identity: &str, extra_args: &[String]) -> Reconciler {
        let cp = seed.cp;
        let kubeconfig = cp.service_account_kubeconfig(&seed.namespace, "eargate-reconciler");
        let log = cp.dir().join(format!("reconcile-{identity}.log"));
        let pid_file = cp.dir().join(format!("reconcile-{identity}.pid"));
        let wrapper = cp.dir().join(format!("reconcile-{identity}.sh"));
        // The wrapper records the pid of the reconciler itself (exec keeps it), for kill -9
        // and for reading its memory; KUBECONFIG is how the chart's Deployment authenticates
        // too (in-cluster config aside).
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho $$ > '{}'\nKUBECONFIG='{}' exec '{}' \"$@\"\n",
                pid_file.display(),
                kubeconfig.display(),
                seed.eargate.display()
            ),
        )
        .expect("write the wrapper");
        assert!(Command::new("chmod")
            .arg("+x")
            .arg(&wrapper)
            .status()
            .is_ok_and(|s| s.success()));
        let metrics_port = free_port();
        let mut args: Vec<String> = vec![
            "reconcile".to_owned(),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            "--job-image=eargate:test".to_owned(),
            format!("--lease-namespace={}", seed.namespace),
            format!("--identity={identity}"),
            "--log-format=json".to_owned(),
        ];
        args.extend(extra_args.iter().cloned());
        let server = Server::spawn(
            &format!("eargate reconcile ({identity})"),
            &wrapper,
            &args,
            &log,
        );
        Reconciler {
            server,
            log,
            pid_file,
            identity: identity.to_owned(),
            metrics_port,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The reconciler's own pid (not the guard's), once it has started.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    /// Its peak resident set so far, in KiB (`VmHWM` of /proc/PID/status).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// SIGKILL: no Lease release, no goodbye.
    pub fn kill(&mut self) {
        let pid = self.pid().expect("the reconciler's pid");
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success()),
            "kill -KILL {pid}"
        );
        self.server.stop();
    }

    /// Stops it (SIGTERM through the process guard).
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

// Kubermatic's names, written here on purpose apart from eargate's defaults
// (`eargate_policy::names::DEFAULT_ETCD_*`): the test world is a Kubermatic seed, so a scan
// that works with the reconciler's defaults proves those defaults match Kubermatic's.

/// Kubermatic's Secret holding the API servers' etcd client certificate, in the
/// control-plane namespace (kubermatic/kubermatic `pkg/resources/resources.go`:
/// `ApiserverEtcdClientCertificateSecretName`).
pub const ETCD_CLIENT_CERT_SECRET: &str = "apiserver-etcd-client-certificate";
/// Its certificate's data key (`ApiserverEtcdClientCertificateCertSecretKey`).
pub const ETCD_CLIENT_CERT_KEY: &str = "apiserver-etcd-client.crt";
/// Its private key's data key (`ApiserverEtcdClientCertificateKeySecretKey`).
pub const ETCD_CLIENT_KEY_KEY: &str = "apiserver-etcd-client.key";
/// Kubermatic's cluster CA Secret (`CASecretName`): the CA that etcd trusts and that signed
/// etcd's serving certificate.
pub const CA_SECRET: &str = "ca";
/// The CA certificate's data key (`CACertSecretKey`).
pub const CA_CERT_KEY: &str = "ca.crt";
/// The CA private key's data key (`CAKeySecretKey`): in the Secret, so a Pod that needs only
/// the certificate mounts it with `items`.
pub const CA_KEY_KEY: &str = "ca.key";

/// Kubermatic's etcd client endpoints for a control-plane namespace: the three members of the
/// `etcd` StatefulSet by their Pod DNS names, `https://etcd-N.etcd.<namespace>.svc.cluster.local:2379`
/// (kubermatic/kubermatic `pkg/resources/etcd/etcdservices.go`, `GetClientEndpoints`). The
/// user cluster's etcd is one member on loopback; the [`NodeAgent`] swaps these names in a
/// Job's arguments for its endpoint, as cluster DNS would resolve them.
pub fn kubermatic_etcd_endpoints(namespace: &str) -> Vec<String> {
    (0..3)
        .map(|i| format!("https://etcd-{i}.etcd.{namespace}.svc.cluster.local:2379"))
        .collect()
}

/// One Cluster's control plane as the seed holds it, with a real user cluster behind it.
pub struct HostedCluster {
    /// The Cluster's name.
    pub name: String,
    /// Its control-plane namespace in the seed (`cluster-<name>`).
    pub namespace: String,
    /// The user cluster whose API servers the Deployment's Pods are.
    pub user: Arc<UserCluster>,
    /// The node agent that runs them.
    pub agent: NodeAgent,
}

impl HostedCluster {
    /// Creates the namespace `cluster-<name>`, starts the user cluster (its etcd and Service),
    /// writes the `admin-kubeconfig` Secret, Kubermatic's etcd Secrets
    /// ([`ETCD_CLIENT_CERT_SECRET`] with the API servers' etcd client certificate,
    /// [`CA_SECRET`] with the cluster CA that etcd trusts) and the `apiserver` Deployment with
    /// `replicas` replicas, starts the node agent, and waits until it has started every
    /// replica.
    pub async fn start(seed: &Seed, name: &str, replicas: usize) -> HostedCluster {
        Self::start_with(seed, name, replicas, false).await
    }

    /// [`HostedCluster::start`]; with `hot_reload`, the platform provisions the API servers
    /// for hot reload: the rendered-config Secret starts out holding an identity-only
    /// configuration and every replica runs with `--encryption-provider-config-automatic-reload`,
    /// so no config change ever needs a restart.
    pub async fn start_with(
        seed: &Seed,
        name: &str,
        replicas: usize,
        hot_reload: bool,
    ) -> HostedCluster {
        let config = hot_reload.then_some(IDENTITY_ONLY_CONFIG);
        Self::start_configured(seed, name, replicas, hot_reload, config).await
    }

    /// [`HostedCluster::start_with`] with the rendered-config Secret holding
    /// `initial_config` before the first replica starts (`None`: no Secret), so the API
    /// servers start with it (and, with `hot_reload`, reload it by themselves).
    pub async fn start_configured(
        seed: &Seed,
        name: &str,
        replicas: usize,
        hot_reload: bool,
        initial_config: Option<&str>,
    ) -> HostedCluster {
        let cp = seed.cp;
        let admin = Identity::admin();
        let namespace = names::default_control_plane_namespace(name);
        cp.kubectl_ok(&admin, &["create", "namespace", &namespace]);
        let user = {
            let (dir, n) = (cp.dir().to_owned(), name.to_owned());
            tokio::task::spawn_blocking(move || UserCluster::new(&dir, &n, replicas))
                .await
                .expect("the user cluster starts")
                .expect("the binaries are there")
        };
        let user = Arc::new(user);
        // The admin kubeconfig Secret, as Kubermatic keeps it in the control-plane namespace.
        cp.apply(&[json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": names::DEFAULT_ADMIN_KUBECONFIG_SECRET, "namespace": namespace},
            "data": {names::DEFAULT_ADMIN_KUBECONFIG_KEY: B64.encode(user.kubeconfig_text())}
        })]);
        // Kubermatic's etcd client certificate and cluster CA Secrets (with the CA's key, as
        // Kubermatic keeps it).
        cp.apply(&[
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": ETCD_CLIENT_CERT_SECRET, "namespace": namespace},
                "data": {
                    ETCD_CLIENT_CERT_KEY: B64.encode(&user.etcd_client.cert_pem),
                    ETCD_CLIENT_KEY_KEY: B64.encode(&user.etcd_client.key_pem),
                }
            }),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": CA_SECRET, "namespace": namespace},
                "data": {
                    CA_CERT_KEY: B64.encode(&user.pki.ca.cert_pem),
                    CA_KEY_KEY: B64.encode(&user.pki.ca.key_pem),
                }
            }),
        ]);
        if let Some(config) = initial_config {
            cp.apply(&[json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": names::DEFAULT_CONFIG_SECRET, "namespace": namespace},
                "data": {names::DEFAULT_CONFIG_SECRET_KEY: B64.encode(config)}
            })]);
        }
        cp.apply(&[apiserver_deployment_with(&namespace, replicas, hot_reload)]);
        let agent = NodeAgent::start(
            NodeAgentConfig {
                namespace: namespace.clone(),
                deployment: names::DEFAULT_APISERVER_DEPLOYMENT.to_owned(),
                config_secret: names::DEFAULT_CONFIG_SECRET.to_owned(),
                config_secret_key: names::DEFAULT_CONFIG_SECRET_KEY.to_owned(),
                entrypoint: seed.eargate.clone(),
                node_name: "node-agent".to_owned(),
                dir: user.dir().join("node"),
                etcd_endpoint: Some(user.etcd.endpoint.clone()),
            },
            cp.kubeconfig(&admin),
            user.clone(),
        );
        let deadline = Instant::now() + Duration::from_secs(300);
        while agent.state.rollouts().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the node agent did not start the user cluster: {:#?}",
                agent.state.journal()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        HostedCluster {
            name: name.to_owned(),
            namespace,
            user,
            agent,
        }
    }

    /// A fresh random key in a Secret `secret_name` (data key `key`) of the control-plane
    /// namespace, for a `secretRef`; returns the key's base64 text (to look for in outputs).
    pub fn create_key_secret(&self, cp: &ControlPlane, secret_name: &str) -> String {
        let key_text = B64.encode(random_key());
        cp.apply(&[json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": self.namespace},
            "data": {"key": B64.encode(&key_text)}
        })]);
        key_text
    }
}

/// 32 bytes from the OS's random source (a test key; never printed).
pub fn random_key() -> [u8; 32] {
    use std::io::Read as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("read /dev/urandom");
    key
}

/// The runtime the control-plane tests run their worlds in (4 workers: the node agent,
/// traffic and the test's own polling run side by side).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// What a platform provisions for hot reload before encryption is enabled: Secrets stored in
/// plaintext, from a file the API servers can reload later.
pub const IDENTITY_ONLY_CONFIG: &str = "\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources:
  - secrets
  providers:
  - identity: {}
";

/// The API server Deployment of a control-plane namespace (restart mode) as the seed holds
/// it: it mounts the rendered config Secret (optional until the reconciler writes it).
pub fn apiserver_deployment(namespace: &str, replicas: usize) -> Value {
    apiserver_deployment_with(namespace, replicas, false)
}

/// The API server Deployment; with `hot_reload`, its container runs with
/// `--encryption-provider-config-automatic-reload`.
pub fn apiserver_deployment_with(namespace: &str, replicas: usize, hot_reload: bool) -> Value {
    let args: Vec<&str> = if hot_reload {
        vec!["--encryption-provider-config=/etc/kubernetes/encryption-configuration/encryption-configuration.yaml",
             "--encryption-provider-config-automatic-reload"]
    } else {
        Vec::new()
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": names::DEFAULT_APISERVER_DEPLOYMENT, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            // Each new replica serves this long before the next one is replaced: the
            // replicas run different configs meanwhile.
            "minReadySeconds": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "selector": {"matchLabels": {"app": "apiserver"}},
            "template": {
                "metadata": {"labels": {"app": "apiserver"}},
                "spec": {
                    "containers": [{
                        "name": "apiserver",
                        "image": "registry.k8s.io/kube-apiserver:v1.37.2",
                        "args": args,
                        "ports": [{"name": "https", "containerPort": 6443, "protocol": "TCP"}],
                        "volumeMounts": [{"name": "encryption-configuration",
                            "mountPath": "/etc/kubernetes/encryption-configuration", "readOnly": true}]
                    }],
                    "volumes": [{"name": "encryption-configuration", "secret": {
                        "secretName": names::DEFAULT_CONFIG_SECRET, "optional": true}}]
                }
            }
        }
    })
}

/// How many objects [`create_data`] creates, and where.
#[derive(Clone, Copy, Debug)]
pub struct DataSet {
    /// Namespaces `data-0` … `data-<n-1>`; object `i` goes to `data-<i mod n>`.
    pub namespaces: usize,
    /// Secrets `s-<i>` with [`secret_value`]`(i)`.
    pub secrets: usize,
    /// ConfigMaps `c-<i>` with [`configmap_value`]`(i)`.
    pub configmaps: usize,
}

impl DataSet {
    /// Where object `i` lives.
    pub fn namespace_of(&self, i: usize) -> String {
        format!("data-{}", i % self.namespaces)
    }
}

/// The value (key `value`) of the seeded Secret `i`.
pub fn secret_value(i: usize) -> String {
    format!("secret value {i}")
}

/// The value (key `value`) of the seeded ConfigMap `i`.
pub fn configmap_value(i: usize) -> String {
    format!("config value {i}")
}

/// The name of the seeded Secret `i`.
pub fn secret_name(i: usize) -> String {
    format!("s-{i:05}")
}

/// The name of the seeded ConfigMap `i`.
pub fn configmap_name(i: usize) -> String {
    format!("c-{i:05}")
}

/// Creates the data namespaces (and `extra_namespaces`), then the Secrets and ConfigMaps of
/// `set`, 16 requests at a time, through `client`. Returns how long it took.
pub async fn create_data(
    client: &kube::Client,
    set: DataSet,
    extra_namespaces: &[&str],
) -> Duration {
    let began = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in (0..set.namespaces)
        .map(|i| format!("data-{i}"))
        .chain(extra_namespaces.iter().map(|s| s.to_string()))
    {
        let object: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("a Namespace");
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .expect("create a namespace");
    }
    const WORKERS: usize = 16;
    let mut set_ = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let client = client.clone();
        set_.spawn(async move {
            for i in (w..set.secrets).step_by(WORKERS) {
                let ns = set.namespace_of(i);
                let s: Secret = serde_json::from_value(json!({
                    "metadata": {"name": secret_name(i), "namespace": ns},
                    "data": {"value": B64.encode(secret_value(i))}
                }))
                .expect("a Secret");
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &s)
                    .await
                    .expect("create a Secret");
            }
            for i in (w..set.configmaps).step_by(WORKERS) {
                let ns = set.namespace_of(i);
                let c: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": configmap_name(i), "namespace": ns},
                    "data": {"value": configmap_value(i)}
                }))
                .expect("a ConfigMap");
                Api::<ConfigMap>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &c)
                    .await
                    .expect("create a ConfigMap");
            }
        });
    }
    while let Some(r) = set_.join_next().await {
        r.expect("a seeding worker");
    }
    began.elapsed()
}
