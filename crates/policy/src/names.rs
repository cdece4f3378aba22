//! One place for every name eargate shares with Kubernetes, Kubermatic and itself:
//! API coordinates, condition types, annotation and label keys, storage prefixes and
//! defaults. Other crates import these instead of repeating the strings.

/// API group of the Cluster resource.
pub const CLUSTER_GROUP: &str = "kubermatic.k8c.io";
/// API version of the Cluster resource.
pub const CLUSTER_VERSION: &str = "v1";
/// Kind of the Cluster resource.
pub const CLUSTER_KIND: &str = "Cluster";
/// Plural resource name of the Cluster resource.
pub const CLUSTER_PLURAL: &str = "clusters";
/// The status subresource name, as it appears in `request.subResource`.
pub const STATUS_SUBRESOURCE: &str = "status";

/// Feature gate that must be on before encryption can be enabled.
pub const FEATURE_ENCRYPTION_AT_REST: &str = "encryptionAtRest";
/// Condition (in Kubermatic's condition map) that says encryption has been initialized.
pub const CONDITION_ENCRYPTION_INITIALIZED: &str = "EncryptionInitialized";

/// Prefix of `status.encryption.activeKey` for secretbox keys: `secretbox/<key name>`.
pub const ACTIVE_KEY_SECRETBOX_PREFIX: &str = "secretbox/";
/// `status.encryption.activeKey` when data is stored in plaintext.
pub const ACTIVE_KEY_IDENTITY: &str = "identity";

/// kube-apiserver's storage prefix for a secretbox-sealed value: `k8s:enc:secretbox:v1:<key name>:`.
pub const SECRETBOX_STORAGE_PREFIX: &str = "k8s:enc:secretbox:v1:";
/// Every kube-apiserver encryption provider writes values starting with this.
pub const ENCRYPTED_VALUE_PREFIX: &str = "k8s:enc:";
/// kube-apiserver's default `--etcd-prefix`: objects live under `/registry/<resource>/…`.
pub const DEFAULT_ETCD_PREFIX: &str = "/registry";
/// Secretbox keys are exactly this many bytes.
pub const SECRETBOX_KEY_LEN: usize = 32;

/// Default identity allowed to change `status.encryption` (the reconciler's ServiceAccount).
pub const DEFAULT_STATUS_WRITER: &str = "system:serviceaccount:eargate-system:eargate-reconciler";
/// Resources encrypted when the user enables encryption without naming any.
pub const DEFAULT_RESOURCES: &[&str] = &["secrets"];

/// Annotation on a Cluster: set to any new value to retry a `Failed` rollout.
pub const ANNOTATION_RETRY: &str = "eargate.k8c.io/retry";
/// Annotation on the API server's pod template carrying the rendered config's hash.
pub const ANNOTATION_CONFIG_HASH: &str = "eargate.k8c.io/encryption-config-hash";
/// Label on the rendered Secret carrying its content hash.
pub const LABEL_CONFIG_HASH: &str = "eargate.k8c.io/encryption-config-hash";
/// Label on objects eargate manages.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "eargate";

/// Default kube-apiserver Deployment in the control-plane namespace.
pub const DEFAULT_APISERVER_DEPLOYMENT: &str = "apiserver";
/// Container of the API server Pods that serves the API (Kubermatic names it like the
/// Deployment); its port named [`APISERVER_PORT_NAME`] (else its first port) is scraped.
pub const DEFAULT_APISERVER_CONTAINER: &str = "apiserver";
/// Name of the API server container's serving port.
pub const APISERVER_PORT_NAME: &str = "https";
/// Default Secret holding the rendered EncryptionConfiguration.
pub const DEFAULT_CONFIG_SECRET: &str = "apiserver-encryption-configuration";
/// Data key of the rendered EncryptionConfiguration inside its Secret.
pub const DEFAULT_CONFIG_SECRET_KEY: &str = "encryption-configuration.yaml";
/// Default Secret with a kubeconfig for the user cluster's API.
pub const DEFAULT_ADMIN_KUBECONFIG_SECRET: &str = "admin-kubeconfig";
/// Data key of the kubeconfig inside its Secret.
pub const DEFAULT_ADMIN_KUBECONFIG_KEY: &str = "kubeconfig";

// The storage scan reads the user cluster's etcd as its API server does. Defaults are
// Kubermatic's (kubermatic/kubermatic pkg/resources/resources.go and
// pkg/resources/etcd/etcdservices.go `GetClientEndpoints`).

/// Default etcd client endpoints; `{namespace}` is the control-plane namespace. Kubermatic
/// runs etcd as StatefulSet `etcd` (3 members) behind the headless Service `etcd`.
pub const DEFAULT_ETCD_ENDPOINTS: &[&str] = &[
    "https://etcd-0.etcd.{namespace}.svc.cluster.local:2379",
    "https://etcd-1.etcd.{namespace}.svc.cluster.local:2379",
    "https://etcd-2.etcd.{namespace}.svc.cluster.local:2379",
];
/// Placeholder for the control-plane namespace in [`DEFAULT_ETCD_ENDPOINTS`].
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";
/// Default Secret with the API server's etcd client certificate
/// (Kubermatic's `ApiserverEtcdClientCertificateSecretName`).
pub const DEFAULT_ETCD_CLIENT_SECRET: &str = "apiserver-etcd-client-certificate";
/// Data key of the client certificate (`ApiserverEtcdClientCertificateCertSecretKey`).
pub const DEFAULT_ETCD_CLIENT_CERT_KEY: &str = "apiserver-etcd-client.crt";
/// Data key of the client private key (`ApiserverEtcdClientCertificateKeySecretKey`).
pub const DEFAULT_ETCD_CLIENT_KEY_KEY: &str = "apiserver-etcd-client.key";
/// Default Secret with the CA that signed etcd's serving certificate (Kubermatic's cluster
/// CA, `CASecretName`). Only its certificate is mounted, never its key.
pub const DEFAULT_ETCD_CA_SECRET: &str = "ca";
/// Data key of the CA certificate (`CACertSecretKey`).
pub const DEFAULT_ETCD_CA_KEY: &str = "ca.crt";

/// Control-plane namespace when `status.namespaceName` is not set yet.
pub fn default_control_plane_namespace(cluster_name: &str) -> String {
    format!("cluster-{cluster_name}")
}

/// Name of the reconciler: its Lease, field manager and Event reporting controller.
pub const RECONCILER_NAME: &str = "eargate-reconciler";
/// Default namespace of the reconciler's leader Lease.
pub const DEFAULT_LEASE_NAMESPACE: &str = "eargate-system";
/// Default address of the reconciler's `/metrics`, `/healthz` and `/readyz`.
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9090";
/// Default time an API server rollout may take before the phase turns `Failed`.
pub const DEFAULT_ROLLOUT_TIMEOUT: &str = "15m";

/// Audit annotation key with the decision (`allowed`/`denied`). kube-apiserver prefixes
/// webhook audit keys with `<webhook name>/`, so the key itself must not contain a `/`.
pub const AUDIT_DECISION: &str = "decision";
/// Audit annotation key with the comma-separated rule ids of a denial.
pub const AUDIT_RULES: &str = "rules";

/// Name of the validating webhook (kube-apiserver quotes it in denials:
/// `admission webhook "validate.eargate.k8c.io" denied the request: …`).
pub const VALIDATING_WEBHOOK_NAME: &str = "validate.eargate.k8c.io";
/// Name of the mutating (defaulting) webhook.
pub const MUTATING_WEBHOOK_NAME: &str = "mutate.eargate.k8c.io";
