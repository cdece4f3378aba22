//! eargate's two Jobs, named from the config hash so a restarted controller finds the Job its
//! predecessor created instead of starting another.
//!
//! - The re-encryption Job (one per cluster, config hash and attempt) runs `eargate reencrypt`
//!   against the user cluster's API through the mounted admin kubeconfig: every object of the
//!   listed resources is read and written back, so the API server re-seals it with the
//!   current writer.
//! - The storage-scan Job (one per config hash and scan number) runs `eargate verify
//!   --history` against the user cluster's etcd with the API server's etcd client
//!   certificate, and hands back per key name what is still sealed with it in its Pod's
//!   termination message; a removed key leaves the config only when that is nothing.
//!
//! Both are hardened: non-root, read-only root
//! filesystem, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, no
//! service-account token; bounded `backoffLimit`, `activeDeadlineSeconds` and a TTL.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use eargate_policy::names;

use crate::model::{
    content_hash, ConfigSecret, Settings, ANNOTATION_RETRY_SEEN, ANNOTATION_ROLLOUT_STARTED,
    LABEL_JOB_CONFIG_HASH,
};

/// Where the admin kubeconfig Secret is mounted in the Job's pod.
pub(crate) const KUBECONFIG_MOUNT_DIR: &str = "/etc/kubernetes/kubeconfig";
/// File name of the kubeconfig inside [`KUBECONFIG_MOUNT_DIR`].
pub(crate) const KUBECONFIG_FILE: &str = "kubeconfig";
/// Label on the Job naming the Cluster it works for.
pub(crate) const LABEL_JOB_CLUSTER: &str = "eargate.k8c.io/cluster";
/// Prefix of every re-encryption Job name.
pub(crate) const JOB_NAME_PREFIX: &str = "eargate-reencrypt-";

/// The Job name for a config hash and attempt token (the retry value acted upon; empty for
/// the first attempt). Stable across restarts; at most 63 characters.
pub(crate) fn job_name(config_hash: &str, attempt: &str) -> String {
    let short = short_hash(config_hash);
    if attempt.is_empty() {
        format!("{JOB_NAME_PREFIX}{short}")
    } else {
        let a = hex::encode(Sha256::digest(attempt.as_bytes()));
        format!("{JOB_NAME_PREFIX}{short}-{}", &a[..8])
    }
}

/// The Job name for the config currently in the Secret (its content hash and
/// [`ANNOTATION_RETRY_SEEN`]); `None` without rendered content. The observer looks this Job
/// up; the planner creates it under the same name.
pub fn job_name_for(secret: &ConfigSecret) -> Option<String> {
    let data = secret.data.as_ref()?;
    let hash = content_hash(data);
    let attempt = secret
        .annotations
        .get(ANNOTATION_RETRY_SEEN)
        .map(String::as_str)
        .unwrap_or_default();
    Some(job_name(&hash, attempt))
}

/// The container's arguments: `eargate reencrypt` over `resources` through the mounted admin
/// kubeconfig, with a JSON summary. The image's entrypoint is `eargate`, so the subcommand
/// comes first (the root package's contract test parses this with the real command line).
pub fn reencrypt_args(resources: &[String]) -> Vec<String> {
    vec![
        "reencrypt".to_owned(),
        "--kubeconfig".to_owned(),
        format!("{KUBECONFIG_MOUNT_DIR}/{KUBECONFIG_FILE}"),
        "--resources".to_owned(),
        resources.join(","),
        "--output".to_owned(),
        "json".to_owned(),
    ]
}

/// Builds the Job for `cluster` in `namespace`, re-encrypting `resources` for config `hash`.
pub fn build_job(
    cluster: &str,
    namespace: &str,
    hash: &str,
    attempt: &str,
    resources: &[String],
    settings: &Settings,
) -> Job {
    let kubeconfig = secret_volume(
        "kubeconfig",
        &settings.admin_kubeconfig_secret,
        &settings.admin_kubeconfig_key,
        KUBECONFIG_FILE,
    );
    hardened_job(
        JobParts {
            name: job_name(hash, attempt),
            namespace,
            labels: job_labels(cluster, hash),
            container: "reencrypt",
            args: reencrypt_args(resources),
            volumes: vec![(kubeconfig, KUBECONFIG_MOUNT_DIR)],
            backoff_limit: settings.job_backoff_limit,
        },
        settings,
    )
}

/// Where the storage scan finds the etcd client certificate and key.
pub(crate) const ETCD_CLIENT_MOUNT_DIR: &str = "/etc/etcd/client";
/// Where the storage scan finds the CA certificate of etcd's serving certificate.
pub(crate) const ETCD_CA_MOUNT_DIR: &str = "/etc/etcd/ca";
/// Where the storage scan finds the rendered config (to name and open each key).
pub(crate) const CONFIG_MOUNT_DIR: &str = "/etc/kubernetes/encryption-config";
/// Kubernetes' default `terminationMessagePath`: the scan's summary goes here.
pub(crate) const TERMINATION_LOG: &str = "/dev/termination-log";
/// Prefix of every storage-scan Job name.
pub(crate) const SCAN_JOB_NAME_PREFIX: &str = "eargate-scan-";
/// Label on a storage-scan Job: the scan's number for its config (1, 2, ... one per rescan).
pub const LABEL_SCAN_ATTEMPT: &str = "eargate.k8c.io/scan-attempt";
/// Label on eargate's Jobs: what the Job does ([`PURPOSE_REENCRYPT`], [`PURPOSE_SCAN`]).
pub const LABEL_JOB_PURPOSE: &str = "eargate.k8c.io/purpose";
/// [`LABEL_JOB_PURPOSE`] of a re-encryption Job.
pub const PURPOSE_REENCRYPT: &str = "reencrypt";
/// [`LABEL_JOB_PURPOSE`] of a storage-scan Job.
pub const PURPOSE_SCAN: &str = "storage-scan";
/// Label the job controller puts on a Job's Pods (Kubernetes 1.27 and later).
pub const LABEL_POD_JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// The storage-scan Job's name for a config hash and scan number. At most 63 characters.
pub fn scan_job_name(config_hash: &str, attempt: u32) -> String {
    format!(
        "{SCAN_JOB_NAME_PREFIX}{}-{attempt}",
        short_hash(config_hash)
    )
}

/// The label selector of every storage-scan Job for a config hash.
pub fn scan_job_selector(config_hash: &str) -> String {
    format!("{LABEL_JOB_PURPOSE}={PURPOSE_SCAN},{LABEL_JOB_CONFIG_HASH}={config_hash}")
}

/// The etcd endpoints of a control-plane namespace ([`names::NAMESPACE_PLACEHOLDER`]
/// replaced).
pub fn etcd_endpoints(settings: &Settings, namespace: &str) -> Vec<String> {
    settings
        .scan
        .etcd_endpoints
        .iter()
        .map(|e| e.replace(names::NAMESPACE_PLACEHOLDER, namespace))
        .collect()
}

/// The scan container's arguments: `eargate verify` over etcd with the mounted client
/// certificate and config, older revisions included, the per-key summary written to the
/// termination message, exiting 0 whenever etcd was read (the summary is the result).
pub fn scan_args(endpoints: &[String], settings: &Settings) -> Vec<String> {
    let scan = &settings.scan;
    [
        "verify",
        "--etcd-endpoints",
        &endpoints.join(","),
        "--cacert",
        &format!("{ETCD_CA_MOUNT_DIR}/{}", scan.ca_key),
        "--cert",
        &format!("{ETCD_CLIENT_MOUNT_DIR}/{}", scan.client_cert_key),
        "--key",
        &format!("{ETCD_CLIENT_MOUNT_DIR}/{}", scan.client_key_key),
        "--encryption-config",
        &format!("{CONFIG_MOUNT_DIR}/{}", settings.config_secret_key),
        "--history",
        "--output",
        "json",
        "--verdict-exit-code=false",
        "--termination-message-path",
        TERMINATION_LOG,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Builds storage scan number `attempt` for config `hash` of `cluster` in `namespace`: a Job
/// that reads the user cluster's etcd and reports, per key name, what is still sealed with
/// it. Only the CA's certificate is mounted, never its key. `written` (the rollout start the
/// config was written under) goes on the Job as [`ANNOTATION_ROLLOUT_STARTED`], so the scan
/// counts only for that period of the config.
pub fn build_scan_job(
    cluster: &str,
    namespace: &str,
    hash: &str,
    attempt: u32,
    written: Option<Timestamp>,
    settings: &Settings,
) -> Job {
    let scan = &settings.scan;
    let mut client = secret_volume(
        "etcd-client",
        &scan.client_secret,
        &scan.client_cert_key,
        &scan.client_cert_key,
    );
    if let Some(items) = client.secret.as_mut().and_then(|s| s.items.as_mut()) {
        items.push(KeyToPath {
            key: scan.client_key_key.clone(),
            path: scan.client_key_key.clone(),
            mode: None,
        });
    }
    let ca = secret_volume("etcd-ca", &scan.ca_secret, &scan.ca_key, &scan.ca_key);
    let config = secret_volume(
        "encryption-config",
        &settings.config_secret,
        &settings.config_secret_key,
        &settings.config_secret_key,
    );
    let mut labels = job_labels(cluster, hash);
    labels.insert(LABEL_JOB_PURPOSE.to_owned(), PURPOSE_SCAN.to_owned());
    labels.insert(LABEL_SCAN_ATTEMPT.to_owned(), attempt.to_string());
    let mut job = hardened_job(
        JobParts {
            name: scan_job_name(hash, attempt),
            namespace,
            labels,
            container: "scan",
            args: scan_args(&etcd_endpoints(settings, namespace), settings),
            volumes: vec![
                (client, ETCD_CLIENT_MOUNT_DIR),
                (ca, ETCD_CA_MOUNT_DIR),
                (config, CONFIG_MOUNT_DIR),
            ],
            // A failed scan is rescanned by the planner with its own backoff.
            backoff_limit: 1,
        },
        settings,
    );
    if let Some(written) = written {
        job.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_ROLLOUT_STARTED.to_owned(),
            written.to_string(),
        )]));
    }
    job
}

/// The labels every eargate Job carries.
fn job_labels(cluster: &str, hash: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            names::LABEL_MANAGED_BY.to_owned(),
            names::MANAGED_BY.to_owned(),
        ),
        (LABEL_JOB_CLUSTER.to_owned(), cluster.to_owned()),
        (LABEL_JOB_CONFIG_HASH.to_owned(), hash.to_owned()),
        (LABEL_JOB_PURPOSE.to_owned(), PURPOSE_REENCRYPT.to_owned()),
    ])
}

fn short_hash(config_hash: &str) -> String {
    config_hash
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect::<String>()
        .to_lowercase()
}

/// A read-only Secret volume with one item.
fn secret_volume(name: &str, secret: &str, key: &str, path: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: path.to_owned(),
                mode: None,
            }]),
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

/// What differs between eargate's Jobs.
struct JobParts<'a> {
    name: String,
    namespace: &'a str,
    labels: BTreeMap<String, String>,
    container: &'a str,
    args: Vec<String>,
    /// Each volume with its read-only mount path.
    volumes: Vec<(Volume, &'a str)>,
    backoff_limit: i32,
}

/// A Job running eargate's image once: non-root, read-only root filesystem, no privilege
/// escalation, all capabilities dropped, RuntimeDefault seccomp, no service-account token,
/// bounded by `activeDeadlineSeconds` and collected after a TTL.
fn hardened_job(parts: JobParts<'_>, settings: &Settings) -> Job {
    let container = Container {
        name: parts.container.to_owned(),
        image: Some(settings.job_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(parts.args),
        volume_mounts: Some(
            parts
                .volumes
                .iter()
                .map(|(v, path)| VolumeMount {
                    name: v.name.clone(),
                    mount_path: (*path).to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                })
                .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".to_owned())),
                ("memory".to_owned(), Quantity("64Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("256Mi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(parts.name),
            namespace: Some(parts.namespace.to_owned()),
            labels: Some(parts.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(parts.backoff_limit),
            ttl_seconds_after_finished: Some(settings.job_ttl_seconds_after_finished),
            active_deadline_seconds: Some(settings.job_active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(parts.labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(parts.volumes.into_iter().map(|(v, _)| v).collect()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_attempt_specific() {
        let h = content_hash(b"x");
        assert_eq!(job_name(&h, ""), job_name(&h, ""));
        assert_ne!(job_name(&h, ""), job_name(&h, "1"));
        assert_ne!(job_name(&h, "1"), job_name(&h, "2"));
        assert!(job_name(&h, "some retry value").len() <= 63);
        assert!(job_name(&h, "").starts_with(JOB_NAME_PREFIX));
    }

    #[test]
    fn job_is_hardened_bounded_and_runs_reencrypt_with_mounted_kubeconfig() {
        let s = Settings::default();
        let job = build_job(
            "c1",
            "cluster-c1",
            "abcdef0123456789abcdef",
            "",
            &["secrets".into(), "configmaps".into()],
            &s,
        );
        assert_eq!(job.metadata.namespace.as_deref(), Some("cluster-c1"));
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(3));
        assert!(
            spec.ttl_seconds_after_finished.is_some() && spec.active_deadline_seconds.is_some()
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        assert_eq!(
            c.args.clone().unwrap(),
            [
                "reencrypt",
                "--kubeconfig",
                "/etc/kubernetes/kubeconfig/kubeconfig",
                "--resources",
                "secrets,configmaps",
                "--output",
                "json"
            ]
        );
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        let vol = &pod.volumes.unwrap()[0];
        assert_eq!(
            vol.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("admin-kubeconfig")
        );
        assert_eq!(
            c.volume_mounts.as_ref().unwrap()[0].mount_path,
            KUBECONFIG_MOUNT_DIR
        );
    }

    #[test]
    fn scan_job_reads_etcd_with_the_client_certificate_and_mounts_no_ca_key() {
        let s = Settings::default();
        let written: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let job = build_scan_job(
            "c1",
            "cluster-c1",
            "abcdef0123456789abcdef",
            3,
            Some(written),
            &s,
        );
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("eargate-scan-abcdef0123456789-3")
        );
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_JOB_PURPOSE], PURPOSE_SCAN);
        assert_eq!(labels[LABEL_SCAN_ATTEMPT], "3");
        assert_eq!(labels[LABEL_JOB_CONFIG_HASH], "abcdef0123456789abcdef");
        assert_eq!(
            job.metadata.annotations.unwrap()[ANNOTATION_ROLLOUT_STARTED],
            "2026-12-01T10:00:00Z"
        );
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(1));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.clone().unwrap().join(" "),
            "verify --etcd-endpoints https://etcd-0.etcd.cluster-c1.svc.cluster.local:2379,https://etcd-1.etcd.cluster-c1.svc.cluster.local:2379,https://etcd-2.etcd.cluster-c1.svc.cluster.local:2379 \
             --cacert /etc/etcd/ca/ca.crt --cert /etc/etcd/client/apiserver-etcd-client.crt --key /etc/etcd/client/apiserver-etcd-client.key \
             --encryption-config /etc/kubernetes/encryption-config/encryption-configuration.yaml --history --output json \
             --verdict-exit-code=false --termination-message-path /dev/termination-log"
        );
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        let volumes = pod.volumes.unwrap();
        let items = |name: &str| {
            let v = volumes.iter().find(|v| v.name == name).unwrap();
            let secret = v.secret.as_ref().unwrap();
            (
                secret.secret_name.clone().unwrap(),
                secret
                    .items
                    .iter()
                    .flatten()
                    .map(|i| i.key.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            items("etcd-client"),
            (
                "apiserver-etcd-client-certificate".to_owned(),
                vec![
                    "apiserver-etcd-client.crt".to_owned(),
                    "apiserver-etcd-client.key".to_owned()
                ]
            )
        );
        assert_eq!(
            items("etcd-ca"),
            ("ca".to_owned(), vec!["ca.crt".to_owned()])
        );
        assert_eq!(
            items("encryption-config"),
            (
                "apiserver-encryption-configuration".to_owned(),
                vec!["encryption-configuration.yaml".to_owned()]
            )
        );
        assert!(c
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.read_only == Some(true)));
    }
}
