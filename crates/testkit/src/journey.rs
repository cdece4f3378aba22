//! One hosted cluster driven end to end by `eargate reconcile` on a shared seed, as the
//! control-plane tests drive it: a platform team's `kubectl apply` of the Cluster, waits on
//! its status, and what the reconciler said (Events, metrics, log) checked for key material.

use std::time::{Duration, Instant};

use eargate_policy::names;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::Api;
use serde_json::{json, Value};

use crate::rollout::{kubectl_stdin, HostedCluster, Reconciler, Seed};
use crate::secrets::assert_no_key_material;
use crate::Identity;

/// A hosted cluster, its reconciler and every key created for it.
pub struct Journey {
    /// The seed the Cluster lives on.
    pub seed: &'static Seed,
    /// The control-plane namespace, its user cluster and node agent.
    pub hosted: HostedCluster,
    /// `eargate reconcile`, its own process.
    pub reconciler: Reconciler,
    /// The seed's API as its admin.
    pub client: kube::Client,
    /// Every key's base64 text, to prove none of it leaks.
    pub keys: Vec<String>,
    /// How long one step may take on a busy machine.
    pub step_timeout: Duration,
}

impl Journey {
    /// Starts a reconciler (identity `<name>-r`, extra `args`) for `hosted`.
    pub async fn start(seed: &'static Seed, hosted: HostedCluster, args: &[String]) -> Journey {
        let reconciler = seed.start_reconciler(&format!("{}-r", hosted.name), args);
        let client = seed.cp.client(&Identity::admin()).await;
        Journey {
            seed,
            hosted,
            reconciler,
            client,
            keys: Vec::new(),
            step_timeout: Duration::from_secs(600),
        }
    }

    /// The Cluster's name.
    pub fn name(&self) -> &str {
        &self.hosted.name
    }

    /// A fresh key in Secret `secret` of the control-plane namespace (data key `key`).
    pub fn create_key(&mut self, secret: &str) {
        let text = self.hosted.create_key_secret(self.seed.cp, secret);
        self.keys.push(text);
    }

    /// `kubectl apply --server-side` of the Cluster encrypting `secrets` with these key
    /// Secrets (each by `secretRef`, the first primary), as a platform team applies it.
    pub fn apply_cluster(&self, keys: &[&str]) {
        let keyring: Vec<Value> = keys
            .iter()
            .map(|k| json!({"name": k, "secretRef": {"name": k, "key": "key"}}))
            .collect();
        let cluster = json!({
            "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
            "metadata": {"name": self.name()},
            "spec": {
                "humanReadableName": self.name(),
                "version": "1.37.2",
                "features": {"encryptionAtRest": true},
                "encryptionConfiguration": {"enabled": true, "resources": ["secrets"],
                    "secretbox": {"keys": keyring}}
            }
        });
        let out = kubectl_stdin(
            self.seed.cp.kubectl(&Identity::admin()).args([
                "apply",
                "--server-side",
                "--field-manager=platform-team",
                "-f",
                "-",
            ]),
            &cluster.to_string(),
        );
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The Cluster as JSON.
    pub async fn cluster(&self) -> Value {
        let api: Api<eargate_policy::model::Cluster> = Api::all(self.client.clone());
        serde_json::to_value(api.get(self.name()).await.expect("the Cluster")).expect("JSON")
    }

    /// Polls the Cluster until `check` holds; the failure names the logs to read.
    pub async fn wait_cluster(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + self.step_timeout;
        loop {
            let cluster = self.cluster().await;
            if check(&cluster) {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not {what} within {:?}; status {}\nnode agent:\n{}\nreconciler log: {}",
                self.name(),
                self.step_timeout,
                serde_json::to_string_pretty(&cluster["status"]).unwrap_or_default(),
                self.hosted.agent.state.journal().join("\n"),
                self.reconciler.log_path().display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The rendered config's bytes in the seed.
    pub async fn rendered(&self) -> Vec<u8> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.hosted.namespace);
        let s = secrets.get(names::DEFAULT_CONFIG_SECRET).await.unwrap();
        s.data.unwrap()[names::DEFAULT_CONFIG_SECRET_KEY].0.clone()
    }

    /// Every Event recorded about the Cluster.
    async fn cluster_events(&self) -> Vec<Event> {
        let events: Api<Event> = Api::all(self.client.clone());
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(self.name()))
            .collect()
    }

    /// The notes of the Events with `reason` on the Cluster, oldest first.
    pub async fn events(&self, reason: &str) -> Vec<String> {
        let mut found: Vec<(Option<String>, String)> = self
            .cluster_events()
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| {
                let at = e.event_time.as_ref().map(|t| t.0.to_string());
                Some((at, e.note?))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, note)| note).collect()
    }

    /// The reconciler's `/metrics`.
    pub fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.reconciler.metrics_port);
        let out = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Nothing the reconciler logged, wrote onto the Cluster, recorded as an Event about it, or
    /// exported holds key material.
    pub async fn assert_no_leak(&self) {
        let cluster = self.cluster().await.to_string();
        let notes: Vec<String> = self
            .cluster_events()
            .await
            .into_iter()
            .map(|e| format!("{:?} {:?}", e.reason, e.note))
            .collect();
        assert!(!notes.is_empty(), "the reconciler recorded Events");
        assert_no_key_material(
            &self.keys,
            [
                ("the reconciler log", self.reconciler.log()),
                ("the Cluster", cluster),
                ("the Events on the Cluster", notes.join("\n")),
                ("the reconciler metrics", self.metrics()),
            ],
        );
    }
}

/// `status.encryption.phase`.
pub fn phase(c: &Value) -> Option<&str> {
    c["status"]["encryption"]["phase"].as_str()
}

/// The Cluster's condition of type `type_` (`Null` when absent).
pub fn condition<'a>(c: &'a Value, type_: &str) -> &'a Value {
    &c["status"]["conditions"][type_]
}

/// The writer (first provider) of a rendered config: a key name or `identity`.
pub fn writer(config: &[u8]) -> String {
    let v: Value = serde_yaml::from_slice(config).unwrap();
    let p = &v["resources"][0]["providers"][0];
    match p["secretbox"]["keys"][0]["name"].as_str() {
        Some(k) => k.to_owned(),
        None => "identity".to_owned(),
    }
}

/// The secretbox key names of a rendered config, in provider order.
pub fn key_names(config: &[u8]) -> Vec<String> {
    let v: Value = serde_yaml::from_slice(config).unwrap();
    v["resources"][0]["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["secretbox"]["keys"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|k| k["name"].as_str().map(str::to_owned))
        .collect()
}
