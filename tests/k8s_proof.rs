//! The reconciler proves what every API server replica has loaded, on real API servers.
//!
//! The world is the rollout tests' ([`eargate_testkit::rollout`]): a seed control plane with
//! the chart's CRD and RBAC, a control-plane namespace whose `apiserver` Deployment has two
//! replicas that are real kube-apiserver processes of one user cluster, the node agent in
//! kubelet's place, and `eargate reconcile` as its own process with only the chart's RBAC.
//! The reconciler reaches each replica at its Pod's IP and port with the `admin-kubeconfig`
//! Secret's credentials, and reads `apiserver_encryption_config_controller_last_config_info`
//! from the replica's own `/metrics`.
//!
//! - **Hash proof**: a replica that starts with a config file other than the Secret's (a
//!   stale mount) blocks the rollout; the Cluster's `EncryptionConfigLoaded` condition and a
//!   Warning Event name it, and the writer is not promoted. Restarting that replica with the
//!   Secret's file lets the rollout reach `Active`.
//! - **Hot reload**: API servers provisioned with
//!   `--encryption-provider-config-automatic-reload` and a reconciler run with `--reload=hot`:
//!   enable, then rotate to a second key, with no API server restart; before each step every
//!   replica's hash is proven (kube-apiserver polls the file once a minute, so each reload
//!   takes up to a minute).
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use eargate_testkit::journey::{phase, writer, Journey};
use eargate_testkit::rollout::{
    create_data, runtime, DataSet, HostedCluster, Seed, IDENTITY_ONLY_CONFIG,
};
use eargate_testkit::ControlPlane;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use serde_json::Value;
use sha2::{Digest, Sha256};

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const NAMESPACE: &str = "eargate-system";
/// How long one step may take on a busy machine (a hot reload alone may take a minute).
const STEP_TIMEOUT: Duration = Duration::from_secs(600);
const DATA: DataSet = DataSet {
    namespaces: 2,
    secrets: 200,
    configmaps: 0,
};

/// The tests of this binary share the seed's single reconciler Lease: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

static SEED: OnceLock<Option<Seed>> = OnceLock::new();

fn seed() -> Option<&'static Seed> {
    SEED.get_or_init(|| Seed::install(ControlPlane::shared()?, EARGATE.as_ref(), NAMESPACE, false))
        .as_ref()
}

/// One hosted cluster with data and its reconciler ([`Journey`]), restart or hot-reload mode.
async fn world(name: &str, hot_reload: bool) -> Option<World> {
    let seed = seed()?;
    let hosted = HostedCluster::start_with(seed, name, 2, hot_reload).await;
    create_data(&hosted.user.client().await, DATA, &[]).await;
    let mut args = Vec::new();
    if hot_reload {
        args.push("--reload=hot".to_owned());
    }
    // Short polls: the steps wait on API servers, not on the reconciler.
    args.push("--rollout-timeout=10m".to_owned());
    let mut journey = Journey::start(seed, hosted, &args).await;
    journey.step_timeout = STEP_TIMEOUT;
    Some(World(journey))
}

/// A [`Journey`] plus what this test reads about each replica.
struct World(Journey);

impl std::ops::Deref for World {
    type Target = Journey;
    fn deref(&self) -> &Journey {
        &self.0
    }
}

impl std::ops::DerefMut for World {
    fn deref_mut(&mut self) -> &mut Journey {
        &mut self.0
    }
}

impl World {
    /// The names of the API server Pods, by replica port (the Pod's container port).
    async fn pod_of_replica(&self, i: usize) -> String {
        let url = self.hosted.user.replica_url(i).expect("the replica runs");
        let port: i32 = url.rsplit(':').next().unwrap().parse().unwrap();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.hosted.namespace);
        let list = pods.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|p| {
                p.spec.as_ref().unwrap().containers[0]
                    .ports
                    .iter()
                    .flatten()
                    .any(|cp| cp.container_port == port)
            })
            .and_then(|p| p.metadata.name)
            .unwrap_or_else(|| panic!("no Pod for replica {i} (port {port})"))
    }

    /// Each replica's own report of what it loaded, read straight from its `/metrics`.
    async fn loaded_hashes(&self) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for i in 0..self.hosted.user.replica_count() {
            let Some((_, client)) = self.hosted.user.replica_client(i).await else {
                out.push(None);
                continue;
            };
            let text = client
                .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
                .await
                .unwrap();
            out.push(
                eargate_reconciler::parse_loaded_configs(&text)
                    .pop()
                    .map(|c| c.hash),
            );
        }
        out
    }
}

fn sha256_label(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn loaded_condition(c: &Value) -> &Value {
    &c["status"]["conditions"][eargate_reconciler::CONDITION_CONFIG_LOADED]
}

#[test]
fn a_replica_with_another_config_blocks_the_rollout_until_it_is_fixed() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    runtime().block_on(async {
        let Some(mut w) = world("proof", false).await else {
            return;
        };
        // Replica 1's next start reads a file that is not the Secret's: a stale mount.
        w.hosted
            .agent
            .state
            .override_config(1, Some(IDENTITY_ONLY_CONFIG.as_bytes().to_vec()));
        w.create_key("k1");
        w.apply_cluster(&["k1"]);

        let blocked = w
            .wait_cluster("blocked by replica 1", |c| {
                loaded_condition(c)["reason"] == "ReplicaNotProven"
            })
            .await;
        let pod = w.pod_of_replica(1).await;
        let message = loaded_condition(&blocked)["message"]
            .as_str()
            .unwrap()
            .to_owned();
        eprintln!("k8s_proof: blocked: {message}");
        assert!(
            message.contains(&format!("{pod} has loaded another config")),
            "the condition names the replica: {message}"
        );
        assert!(
            message.starts_with("1 of 2 API server replicas"),
            "{message}"
        );
        assert_eq!(phase(&blocked), Some("Pending"));
        // The hashes the replicas report are what the condition says.
        let rendered = w.rendered().await;
        let hashes = w.loaded_hashes().await;
        assert_eq!(hashes[0].as_deref(), Some(sha256_label(&rendered).as_str()));
        assert_eq!(
            hashes[1].as_deref(),
            Some(sha256_label(IDENTITY_ONLY_CONFIG.as_bytes()).as_str())
        );
        // Held: k1 is a reader only, identity still writes, for as long as the replica is wrong.
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(writer(&w.rendered().await), "identity", "k1 was promoted");
        assert_eq!(phase(&w.cluster().await), Some("Pending"));
        let events = w.events("ReplicaNotProven").await;
        assert!(
            events.iter().any(|n| n.contains(&pod)),
            "a Warning Event names {pod}: {events:?}"
        );
        let metrics = w.metrics();
        assert!(
            metrics.contains(r#"eargate_apiserver_replicas_proven{cluster="proof"} 1"#)
                && metrics.contains(r#"eargate_apiserver_replicas_expected{cluster="proof"} 2"#),
            "{metrics}"
        );

        // Fixed: the replica restarts with the Secret's file.
        w.hosted.agent.state.override_config(1, None);
        w.hosted.agent.state.request_restart(1);
        let active = w
            .wait_cluster("Active with k1", |c| {
                phase(c) == Some("Active")
                    && c["status"]["encryption"]["activeKey"] == "secretbox/k1"
            })
            .await;
        let condition = loaded_condition(&active);
        eprintln!("k8s_proof: active: {condition}");
        assert_eq!(condition["status"], "True", "{condition}");
        assert_eq!(condition["reason"], "Proven");
        assert!(condition["message"]
            .as_str()
            .unwrap()
            .starts_with("2 of 2 API server replicas report config"));
        let rendered = w.rendered().await;
        assert_eq!(writer(&rendered), "k1");
        let want = sha256_label(&rendered);
        assert_eq!(
            w.loaded_hashes().await,
            vec![Some(want.clone()), Some(want)]
        );
        w.assert_no_leak().await;
    });
}

#[test]
fn hot_reload_enables_and_rotates_without_restarting_an_api_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    runtime().block_on(async {
        let Some(mut w) = world("hot", true).await else {
            return;
        };
        let starts = |w: &World| {
            (0..2)
                .map(|i| w.hosted.user.replica_starts(i))
                .collect::<Vec<_>>()
        };
        let before = starts(&w);
        let rollouts = w.hosted.agent.state.rollouts().len();
        let t = Instant::now();

        w.create_key("k1");
        w.apply_cluster(&["k1"]);
        let step = |key: &'static str| {
            move |c: &Value| {
                phase(c) == Some("Active")
                    && c["status"]["encryption"]["activeKey"] == format!("secretbox/{key}")
                    && loaded_condition(c)["reason"] == "Proven"
            }
        };
        w.wait_cluster("Active with k1", step("k1")).await;
        let enabled = t.elapsed();
        let rendered = w.rendered().await;
        assert_eq!(writer(&rendered), "k1");
        let want = sha256_label(&rendered);
        assert_eq!(w.loaded_hashes().await, vec![Some(want.clone()), Some(want)]);

        // Rotation as the seed describes it: add k2, then make it the primary.
        w.create_key("k2");
        w.apply_cluster(&["k1", "k2"]);
        w.wait_cluster("k2 configured", |c| {
            step("k1")(c) && c["status"]["conditions"]["EncryptionReconciled"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("k2"))
        })
        .await;
        w.apply_cluster(&["k2", "k1"]);
        w.wait_cluster("Active with k2", step("k2")).await;
        let rotated = t.elapsed();
        let rendered = w.rendered().await;
        assert_eq!(writer(&rendered), "k2");
        let want = sha256_label(&rendered);
        assert_eq!(w.loaded_hashes().await, vec![Some(want.clone()), Some(want)]);

        assert_eq!(starts(&w), before, "an API server restarted");
        // The Deployment's generation moves with the reload-start annotation (kube-apiserver
        // bumps it for any annotation change), but its pod template never points at a config.
        let template_hashes: Vec<Option<String>> = w.hosted.agent.state.rollouts()[rollouts..]
            .iter()
            .map(|r| r.config_hash.clone())
            .collect();
        assert!(
            template_hashes.iter().all(Option::is_none),
            "the pod template was pointed at a config: {template_hashes:?}"
        );
        let syncs = w
            .hosted
            .agent
            .state
            .volume_syncs
            .load(std::sync::atomic::Ordering::SeqCst);
        assert!(syncs >= 4, "the mounted files were updated {syncs} times");
        eprintln!(
            "k8s_proof: hot reload: Active with k1 after {:.1} s, with k2 after {:.1} s, {syncs} file updates, 0 restarts",
            enabled.as_secs_f64(),
            rotated.as_secs_f64()
        );
        let events = w.events("ReplicaNotProven").await;
        assert!(events.is_empty(), "no replica was ever wrong: {events:?}");
        w.assert_no_leak().await;
    });
}
