//! The re-encryption Job: one per (cluster, config hash, attempt), named from the hash so a
//! restarted controller finds the Job its predecessor created instead of starting another.
//!
//! It runs `eargate reencrypt` against the user cluster's API through the mounted admin
//! kubeconfig: every object of the listed resources is read and written back, so the API
//! server re-seals it with the current writer. Hardened: non-root, read-only root
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
use sha2::{Digest, Sha256};

use eargate_policy::names;

use crate::model::{
    content_hash, ConfigSecret, Settings, ANNOTATION_RETRY_SEEN, LABEL_JOB_CONFIG_HASH,
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
    let short: String = config_hash
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect::<String>()
        .to_lowercase();
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
    let labels = BTreeMap::from([
        (
            names::LABEL_MANAGED_BY.to_owned(),
            names::MANAGED_BY.to_owned(),
        ),
        (LABEL_JOB_CLUSTER.to_owned(), cluster.to_owned()),
        (LABEL_JOB_CONFIG_HASH.to_owned(), hash.to_owned()),
    ]);
    let container = Container {
        name: "reencrypt".to_owned(),
        image: Some(settings.job_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(reencrypt_args(resources)),
        volume_mounts: Some(vec![VolumeMount {
            name: "kubeconfig".to_owned(),
            mount_path: KUBECONFIG_MOUNT_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
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
            name: Some(job_name(hash, attempt)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(settings.job_backoff_limit),
            ttl_seconds_after_finished: Some(settings.job_ttl_seconds_after_finished),
            active_deadline_seconds: Some(settings.job_active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
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
                    volumes: Some(vec![Volume {
                        name: "kubeconfig".to_owned(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(settings.admin_kubeconfig_secret.clone()),
                            items: Some(vec![KeyToPath {
                                key: settings.admin_kubeconfig_key.clone(),
                                path: KUBECONFIG_FILE.to_owned(),
                                mode: None,
                            }]),
                            default_mode: Some(0o440),
                            optional: Some(false),
                        }),
                        ..Volume::default()
                    }]),
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
}
