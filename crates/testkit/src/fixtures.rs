//! Builders for the objects the tests send: a Kubermatic `Cluster` and the AdmissionReview
//! kube-apiserver wraps it in. Each test states only what matters to it; the builders fill
//! in the rest the way kube-apiserver and Kubermatic would.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::{json, Map, Value};

/// The repository's `examples/`: the Clusters, reviews and fleet the README walks through.
pub fn examples_dir() -> PathBuf {
    crate::tools::workspace_root().join("examples")
}

/// The file `examples/<name>` (YAML or JSON) as JSON.
pub fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(examples_dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `status.encryption` as the reconciler writes it: `phase`, `activeKey` naming a secretbox
/// key, and `encryptedResources: [secrets]`.
pub fn encryption_status(phase: &str, key: &str) -> Value {
    json!({"phase": phase, "activeKey": format!("secretbox/{key}"), "encryptedResources": ["secrets"]})
}

/// [`encryption_status`] in phase `Active`.
pub fn active(key: &str) -> Value {
    encryption_status("Active", key)
}

/// An inline secretbox key, as a user writes it into `spec.encryptionConfiguration`.
pub fn inline_key(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// A secretbox key by reference to `data[data_key]` of Secret `secret`.
pub fn key_ref(name: &str, secret: &str, data_key: &str) -> Value {
    json!({"name": name, "secretRef": {"name": secret, "key": data_key}})
}

/// A `kubermatic.k8c.io/v1` Cluster under construction.
///
/// [`ClusterFixture::new`] starts with the name and the feature gate on, nothing else:
/// ```
/// use eargate_testkit::fixtures::ClusterFixture;
/// let c = ClusterFixture::new("c1")
///     .encryption(["secrets"])
///     .key_ref("k1", "key-secret", "key")
///     .active("k1")
///     .build();
/// assert_eq!(c["status"]["encryption"]["activeKey"], "secretbox/k1");
/// ```
#[derive(Clone, Debug)]
pub struct ClusterFixture {
    object: Value,
}

const CONFIG: &str = "/spec/encryptionConfiguration";

impl ClusterFixture {
    /// A Cluster named `name` with `spec.features.encryptionAtRest: true`.
    pub fn new(name: &str) -> Self {
        Self {
            object: json!({
                "apiVersion": "kubermatic.k8c.io/v1",
                "kind": "Cluster",
                "metadata": {"name": name},
                "spec": {"features": {"encryptionAtRest": true}}
            }),
        }
    }

    /// Starts from an existing object (an example file, a Cluster read back).
    pub fn from_value(object: Value) -> Self {
        Self { object }
    }

    /// Sets the field at JSON pointer `pointer`, creating the objects on the way.
    pub fn set(mut self, pointer: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).expect("a JSON value");
        let mut at = &mut self.object;
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            if !at.is_object() {
                *at = Value::Object(Map::new());
            }
            at = at
                .as_object_mut()
                .expect("an object")
                .entry(token)
                .or_insert(Value::Null);
        }
        *at = value;
        self
    }

    /// Removes the field at JSON pointer `pointer`, if it is there.
    pub fn remove(mut self, pointer: &str) -> Self {
        let (parent, last) = pointer.rsplit_once('/').expect("a JSON pointer");
        if let Some(Value::Object(m)) = self.object.pointer_mut(parent) {
            m.remove(last);
        }
        self
    }

    /// Label `key` set to `value`.
    pub fn label(self, key: &str, value: &str) -> Self {
        let key = key.replace('~', "~0").replace('/', "~1");
        self.set(&format!("/metadata/labels/{key}"), value)
    }

    /// `metadata.resourceVersion`.
    pub fn resource_version(self, rv: &str) -> Self {
        self.set("/metadata/resourceVersion", rv)
    }

    /// `metadata.generation`.
    pub fn generation(self, generation: i64) -> Self {
        self.set("/metadata/generation", generation)
    }

    /// `metadata.uid`.
    pub fn uid(self, uid: &str) -> Self {
        self.set("/metadata/uid", uid)
    }

    /// `spec.humanReadableName`: a field eargate does not model, kept by the API server.
    pub fn human_readable_name(self, name: &str) -> Self {
        self.set("/spec/humanReadableName", name)
    }

    /// `spec.version`, the user cluster's Kubernetes version.
    pub fn version(self, version: &str) -> Self {
        self.set("/spec/version", version)
    }

    /// `spec.features.encryptionAtRest`.
    pub fn feature_gate(self, on: bool) -> Self {
        self.set("/spec/features/encryptionAtRest", on)
    }

    /// No feature gates at all (`spec.features: {}`), unlike `feature_gate(false)`.
    pub fn without_feature_gate(self) -> Self {
        self.set("/spec/features", json!({}))
    }

    /// `spec.encryptionConfiguration` enabled for `resources`, with no keys yet.
    pub fn encryption(self, resources: impl Serialize) -> Self {
        self.set(
            CONFIG,
            json!({"enabled": true, "resources": resources, "secretbox": {"keys": []}}),
        )
    }

    /// `spec.encryptionConfiguration.enabled`.
    pub fn enabled(self, enabled: impl Serialize) -> Self {
        self.set(&format!("{CONFIG}/enabled"), enabled)
    }

    /// `spec.encryptionConfiguration.resources`, any JSON (tests of wrong values too).
    pub fn resources(self, resources: impl Serialize) -> Self {
        self.set(&format!("{CONFIG}/resources"), resources)
    }

    /// No `spec.encryptionConfiguration.resources`: the mutating webhook fills `[secrets]`.
    pub fn without_resources(self) -> Self {
        self.remove(&format!("{CONFIG}/resources"))
    }

    /// Appends an inline key.
    pub fn key(self, name: &str, value: &str) -> Self {
        self.key_json(inline_key(name, value))
    }

    /// Appends a key given by `secretRef` to `data[data_key]` of Secret `secret`.
    pub fn key_ref(self, name: &str, secret: &str, data_key: &str) -> Self {
        self.key_json(key_ref(name, secret, data_key))
    }

    /// Appends any key object (tests of malformed keys).
    pub fn key_json(mut self, key: Value) -> Self {
        let keys = format!("{CONFIG}/secretbox/keys");
        if !self.object.pointer(&keys).is_some_and(Value::is_array) {
            self = self.set(&keys, json!([]));
        }
        self.object
            .pointer_mut(&keys)
            .and_then(Value::as_array_mut)
            .expect("the keys")
            .push(key);
        self
    }

    /// The whole `status`.
    pub fn status(self, status: Value) -> Self {
        self.set("/status", status)
    }

    /// `status.namespaceName`, the control-plane namespace Kubermatic assigned.
    pub fn namespace_name(self, namespace: &str) -> Self {
        self.set("/status/namespaceName", namespace)
    }

    /// `status.encryption` in `phase` with `key` active (see [`encryption_status`]).
    pub fn phase(self, phase: &str, key: &str) -> Self {
        self.set("/status/encryption", encryption_status(phase, key))
    }

    /// `status.encryption` `Active` with `key`.
    pub fn active(self, key: &str) -> Self {
        self.phase("Active", key)
    }

    /// What a real Kubermatic seed's Cluster carries besides encryption (about 6 KB of JSON):
    /// metadata with labels, finalizers and managed fields, cloud, network and component
    /// settings, Kubermatic's usual feature gates (encryption at rest on), and a status with
    /// health and conditions. Encryption settings made before are kept; `spec.features` and
    /// `status.conditions` are replaced, so gates and conditions are set after this.
    pub fn kubermatic(mut self) -> Self {
        let name = self.object["metadata"]["name"]
            .as_str()
            .unwrap_or("c1")
            .to_owned();
        let spec = json!({
            "humanReadableName": format!("{name} production"),
            "version": "1.31.4",
            "exposeStrategy": "NodePort",
            "enableUserSSHKeyAgent": true,
            "enableOperatingSystemManager": true,
            "kubernetesDashboard": {"enabled": true},
            "features": {"encryptionAtRest": true, "apiserverNetworkPolicy": true, "ccmClusterName": true, "externalCloudProvider": true},
            "cloud": {"dc": "europe-west3-c", "providerName": "gcp",
                      "gcp": {"network": "global/networks/default", "subnetwork": "", "nodePortsAllowedIPRanges": {"cidrBlocks": ["0.0.0.0/0"]},
                              "credentialsReference": {"name": "credential-gcp-abcdefgh", "namespace": "kubermatic", "key": "serviceAccount"}}},
            "clusterNetwork": {"ipFamily": "IPv4", "pods": {"cidrBlocks": ["172.25.0.0/16"]}, "services": {"cidrBlocks": ["10.240.16.0/20"]},
                               "dnsDomain": "cluster.local", "proxyMode": "ipvs", "ipvs": {"strictArp": true},
                               "nodeLocalDNSCacheEnabled": true, "konnectivityEnabled": true, "tunnelingAgentIP": "100.64.30.10"},
            "cniPlugin": {"type": "cilium", "version": "1.16.6"},
            "componentsOverride": {
                "apiserver": {"replicas": 2, "endpointReconcilingDisabled": false, "nodePortRange": "30000-32767",
                              "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "4Gi"}}},
                "controllerManager": {"replicas": 1, "leaderElection": {"leaseDurationSeconds": 15, "renewDeadlineSeconds": 10, "retryPeriodSeconds": 2},
                                      "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}},
                "scheduler": {"replicas": 1, "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
                "etcd": {"clusterSize": 3, "diskSize": "5Gi", "storageClass": "kubermatic-fast",
                         "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}},
                "prometheus": {"resources": {"requests": {"cpu": "100m", "memory": "400Mi"}}},
                "konnectivityProxy": {"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}
            },
            "oidc": {"issuerURL": "https://dex.example.com/dex", "clientID": "kubermatic", "usernameClaim": "email", "groupsClaim": "groups"},
            "auditLogging": {"enabled": true, "policyPreset": "metadata", "sidecar": {"resources": {"requests": {"cpu": "10m"}}}},
            "admissionPlugins": ["PodNodeSelector", "EventRateLimit", "PodSecurity"],
            "eventRateLimitConfig": {"server": {"qps": 50, "burst": 100}, "namespace": {"qps": 10, "burst": 20, "cacheSize": 4096}},
            "machineNetworks": [],
            "mla": {"monitoringEnabled": true, "loggingEnabled": true},
            "containerRuntime": "containerd",
            "apiServerAllowedIPRanges": {"cidrBlocks": ["10.0.0.0/8", "192.168.0.0/16"]},
            "debugLog": false
        });
        let conditions = json!({
            "ClusterControllerReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z", "lastTransitionTime": "2025-01-10T10:00:00Z"},
            "AddonControllerReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z"},
            "MachineDeploymentReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z"},
            "MonitoringControllerReconciledSuccessfully": {"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z"},
            "SeedResourcesUpToDate": {"status": "True", "kubermaticVersion": "v2.26.2", "reason": "Ready", "message": "All control plane components are up to date", "lastHeartbeatTime": "2025-01-10T10:00:00Z"}
        });
        let status = json!({
            "address": {"url": "https://abcdefgh.europe-west3-c.dev.example.com:30543", "port": 30543, "externalName": "abcdefgh.europe-west3-c.dev.example.com", "internalURL": "apiserver-external.cluster-abcdefgh.svc.cluster.local.", "ip": "34.159.1.2"},
            "namespaceName": format!("cluster-{name}"),
            "userEmail": "someone@example.com",
            "phase": "Running",
            "versions": {"controlPlane": "1.31.4", "apiserver": "1.31.4", "controllerManager": "1.31.4", "scheduler": "1.31.4"},
            "extendedHealth": {"apiserver": "HealthStatusUp", "scheduler": "HealthStatusUp", "controller": "HealthStatusUp", "machineController": "HealthStatusUp",
                               "etcd": "HealthStatusUp", "openvpn": "HealthStatusUp", "cloudProviderInfrastructure": "HealthStatusUp", "userClusterControllerManager": "HealthStatusUp",
                               "konnectivity": "HealthStatusUp", "mlaGateway": "HealthStatusUp", "operatingSystemManager": "HealthStatusUp", "kubernetesDashboard": "HealthStatusUp"},
            "lastProviderReconciliation": "2025-01-10T10:00:00Z",
            "resourceUsage": {"cpu": "8", "memory": "32Gi", "storage": "200Gi"}
        });
        let metadata = json!({
            "name": name,
            "uid": "3f6c5f0e-3d6a-4d8e-9a39-4b2b9d1f7c11",
            "resourceVersion": "184467",
            "generation": 42,
            "creationTimestamp": "2025-01-10T09:00:00Z",
            "labels": {"project-id": "xyz123abc", "worker-name": "", "environment": "production", "team": "platform"},
            "annotations": {"kubermatic.io/initial-application-installations-request": "[]", "presetName": "", "user": "someone@example.com"},
            "finalizers": ["kubermatic.k8c.io/cleanup-credentials-secrets", "kubermatic.k8c.io/cleanup-namespace", "kubermatic.k8c.io/cleanup-usersshkeys-cluster-ids", "kubermatic.k8c.io/cleanup-etcdbackupconfig"],
            "ownerReferences": [{"apiVersion": "kubermatic.k8c.io/v1", "kind": "User", "name": "0123456789abcdef", "uid": "c6b1d2e0-1111-2222-3333-444455556666"}],
            "managedFields": [{"manager": "kubermatic-api", "operation": "Update", "apiVersion": "kubermatic.k8c.io/v1", "time": "2025-01-10T09:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:project-id": {}}}, "f:spec": {".": {}, "f:cloud": {}, "f:version": {}}}}]
        });
        for (part, fields) in [("metadata", metadata), ("spec", spec), ("status", status)] {
            for (k, v) in fields.as_object().expect("an object") {
                self.object[part][k] = v.clone();
            }
        }
        self.object["status"]["conditions"] = conditions;
        self
    }

    /// The `EncryptionInitialized` condition, as Kubermatic sets it once encryption is set up.
    pub fn initialized(self) -> Self {
        self.set(
            "/status/conditions/EncryptionInitialized",
            json!({"status": "True", "kubermaticVersion": "v2.26.2", "lastHeartbeatTime": "2025-01-10T10:00:00Z", "lastTransitionTime": "2025-01-10T10:00:00Z"}),
        )
    }

    /// The Cluster as JSON.
    pub fn build(self) -> Value {
        self.object
    }

    /// The Cluster as eargate's typed model.
    pub fn typed(self) -> eargate_policy::model::Cluster {
        serde_json::from_value(self.object).expect("the fixture fits eargate's Cluster model")
    }
}

/// The `request.uid` of the next review: unique in the process, like kube-apiserver's.
fn next_uid() -> String {
    static UID: AtomicU64 = AtomicU64::new(1);
    let n = UID.fetch_add(1, Ordering::Relaxed);
    format!("705ab4f5-6393-11e8-b7cc-{n:012x}")
}

/// An AdmissionReview for a Cluster, as kube-apiserver sends it to a webhook.
///
/// ```
/// use eargate_testkit::fixtures::{ClusterFixture, Review};
/// let old = ClusterFixture::new("c1").build();
/// let new = ClusterFixture::new("c1").active("k1").build();
/// let r = Review::update(&old, &new).user("alice").status().v1beta1().build();
/// assert_eq!(r["request"]["subResource"], "status");
/// ```
#[derive(Clone, Debug)]
pub struct Review {
    api_version: String,
    operation: String,
    object: Option<Value>,
    old_object: Option<Value>,
    subresource: Option<String>,
    user: String,
    groups: Vec<String>,
    dry_run: bool,
    uid: Option<String>,
    name: Option<String>,
}

/// The reconciler's ServiceAccount, the only user that may write `status.encryption`.
pub const RECONCILER: &str = "system:serviceaccount:eargate-system:eargate-reconciler";

/// `admission.k8s.io/v1`, the version kube-apiserver prefers.
pub const V1: &str = "admission.k8s.io/v1";
/// `admission.k8s.io/v1beta1`, for older API servers.
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

impl Review {
    /// A review of `operation` with these objects (`None`: JSON `null`, as sent for a
    /// CREATE's old or a DELETE's new object).
    pub fn new(operation: &str, object: Option<&Value>, old_object: Option<&Value>) -> Self {
        Self {
            api_version: V1.to_owned(),
            operation: operation.to_owned(),
            object: object.cloned(),
            old_object: old_object.cloned(),
            subresource: None,
            user: "jane@example.com".to_owned(),
            groups: vec![
                "system:authenticated".to_owned(),
                "kubermatic:project-xyz123abc".to_owned(),
            ],
            dry_run: false,
            uid: None,
            name: None,
        }
    }

    /// A `CREATE` of `new`.
    pub fn create(new: &Value) -> Self {
        Self::new("CREATE", Some(new), None)
    }

    /// An UPDATE from `old` to `new` (in that order, like the edit itself).
    pub fn update(old: &Value, new: &Value) -> Self {
        Self::new("UPDATE", Some(new), Some(old))
    }

    /// A `DELETE` of `old`.
    pub fn delete(old: &Value) -> Self {
        Self::new("DELETE", None, Some(old))
    }

    /// `userInfo.username` (default `jane@example.com`).
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }

    /// `userInfo.groups` (default: authenticated, in one Kubermatic project).
    pub fn groups(mut self, groups: &[&str]) -> Self {
        self.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    /// A write through the `status` subresource.
    pub fn status(self) -> Self {
        self.subresource("status")
    }

    /// A write through `subresource` (`request.subResource`).
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(subresource.to_owned());
        self
    }

    /// `request.dryRun: true` (`kubectl --dry-run=server`).
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// `admission.k8s.io/v1beta1` instead of `v1`.
    pub fn v1beta1(self) -> Self {
        self.api_version(V1BETA1)
    }

    /// Any `apiVersion`, including ones a webhook must refuse.
    pub fn api_version(mut self, version: &str) -> Self {
        self.api_version = version.to_owned();
        self
    }

    /// A fixed `request.uid` (default: a new one per review).
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_owned());
        self
    }

    /// `request.name` (default: the object's name).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// The AdmissionReview as JSON.
    pub fn build(self) -> Value {
        let name = self.name.map(Value::from).unwrap_or_else(|| {
            self.object
                .as_ref()
                .or(self.old_object.as_ref())
                .map(|o| o["metadata"]["name"].clone())
                .unwrap_or(json!("x"))
        });
        let cluster = json!({"group": "kubermatic.k8c.io", "version": "v1", "kind": "Cluster"});
        let clusters =
            json!({"group": "kubermatic.k8c.io", "version": "v1", "resource": "clusters"});
        let options = match self.operation.as_str() {
            "CREATE" => "CreateOptions",
            "DELETE" => "DeleteOptions",
            _ => "UpdateOptions",
        };
        let mut request = json!({
            "uid": self.uid.unwrap_or_else(next_uid),
            "kind": cluster,
            "resource": clusters,
            "requestKind": cluster,
            "requestResource": clusters,
            "name": name,
            "operation": self.operation,
            "userInfo": {"username": self.user, "uid": "014fbff9a07c", "groups": self.groups},
            "object": self.object,
            "oldObject": self.old_object,
            "dryRun": self.dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options}
        });
        if let Some(sub) = self.subresource {
            request["subResource"] = json!(sub);
            request["requestSubResource"] = json!(sub);
        }
        json!({"apiVersion": self.api_version, "kind": "AdmissionReview", "request": request})
    }

    /// The AdmissionReview as the request body.
    pub fn to_vec(self) -> Vec<u8> {
        serde_json::to_vec(&self.build()).expect("JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_states_only_what_it_sets() {
        let c = ClusterFixture::new("c1")
            .label("eargate.test/gate", "main")
            .resource_version("7")
            .encryption(["secrets"])
            .key("k1", "AAAA")
            .key_ref("k2", "s", "key")
            .namespace_name("cluster-c1")
            .phase("EncryptionNeeded", "k1")
            .build();
        assert_eq!(
            c,
            json!({
                "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
                "metadata": {"name": "c1", "labels": {"eargate.test/gate": "main"}, "resourceVersion": "7"},
                "spec": {
                    "features": {"encryptionAtRest": true},
                    "encryptionConfiguration": {"enabled": true, "resources": ["secrets"],
                        "secretbox": {"keys": [{"name": "k1", "value": "AAAA"},
                                              {"name": "k2", "secretRef": {"name": "s", "key": "key"}}]}}
                },
                "status": {"namespaceName": "cluster-c1",
                    "encryption": {"phase": "EncryptionNeeded", "activeKey": "secretbox/k1", "encryptedResources": ["secrets"]}}
            })
        );
    }

    #[test]
    fn keys_without_a_configuration_create_one_and_gates_can_go() {
        let c = ClusterFixture::new("c1")
            .without_feature_gate()
            .key_ref("k1", "k1", "key")
            .remove("/metadata/name")
            .build();
        assert_eq!(c["spec"]["features"], json!({}));
        assert_eq!(
            c["spec"]["encryptionConfiguration"],
            json!({"secretbox": {"keys": [{"name": "k1", "secretRef": {"name": "k1", "key": "key"}}]}})
        );
        assert_eq!(c["metadata"], json!({}));
    }

    #[test]
    fn kubermatic_fields_keep_what_was_set_and_name_the_cluster() {
        let c = ClusterFixture::new("abc")
            .encryption(["secrets"])
            .kubermatic()
            .initialized()
            .active("k1")
            .build();
        assert_eq!(c["metadata"]["name"], "abc");
        assert_eq!(c["spec"]["humanReadableName"], "abc production");
        assert_eq!(
            c["spec"]["encryptionConfiguration"]["resources"],
            json!(["secrets"])
        );
        assert_eq!(c["spec"]["features"]["encryptionAtRest"], true);
        assert_eq!(c["status"]["namespaceName"], "cluster-abc");
        assert_eq!(
            c["status"]["conditions"]["EncryptionInitialized"]["status"],
            "True"
        );
        assert_eq!(c["status"]["encryption"]["phase"], "Active");
        assert!(serde_json::to_vec(&c).unwrap().len() > 5000);
    }

    #[test]
    fn the_typed_model_reads_the_fixture() {
        let c = ClusterFixture::new("c1")
            .encryption(["secrets"])
            .key("k1", "AAAA")
            .active("k1")
            .typed();
        let config = c.spec.encryption_configuration.expect("configured");
        assert!(config.enabled);
        assert_eq!(config.resources, ["secrets"]);
        assert_eq!(
            c.status.and_then(|s| s.encryption).map(|e| e.active_key),
            Some("secretbox/k1".to_owned())
        );
    }

    #[test]
    fn a_review_carries_old_and_new_in_their_places() {
        let old = ClusterFixture::new("c1").build();
        let new = ClusterFixture::new("c1").feature_gate(false).build();
        let r = Review::update(&old, &new)
            .user("alice")
            .groups(&["g"])
            .status()
            .dry_run()
            .v1beta1()
            .uid("u-1")
            .build();
        assert_eq!(r["apiVersion"], V1BETA1);
        let req = &r["request"];
        assert_eq!((&req["object"], &req["oldObject"]), (&new, &old));
        assert_eq!(req["operation"], "UPDATE");
        assert_eq!(req["name"], "c1");
        assert_eq!(req["uid"], "u-1");
        assert_eq!(req["userInfo"]["username"], "alice");
        assert_eq!(req["userInfo"]["groups"], json!(["g"]));
        assert_eq!(req["subResource"], "status");
        assert_eq!(req["dryRun"], true);
        assert_eq!(req["options"]["kind"], "UpdateOptions");
    }

    #[test]
    fn reviews_get_fresh_uids_and_a_delete_has_no_object() {
        let c = ClusterFixture::new("c1").build();
        let (a, b) = (Review::delete(&c).build(), Review::delete(&c).build());
        assert_ne!(a["request"]["uid"], b["request"]["uid"]);
        assert_eq!(a["request"]["object"], Value::Null);
        assert_eq!(a["request"]["options"]["kind"], "DeleteOptions");
        let created: Value = serde_json::from_slice(&Review::create(&c).to_vec()).unwrap();
        assert_eq!(created["request"]["oldObject"], Value::Null);
        assert_eq!(created["apiVersion"], V1);
    }
}
