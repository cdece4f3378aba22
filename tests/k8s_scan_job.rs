//! The storage-scan Job on a real control plane: `eargate verify` run as the reconciler's
//! Job runs it, against a user cluster's etcd that serves TLS only and requires client
//! certificates, as Kubermatic runs it.
//!
//! The world is the rollout tests' ([`eargate_testkit::rollout`]): a seed control plane, a
//! control-plane namespace with Kubermatic's etcd Secrets (`apiserver-etcd-client-certificate`,
//! `ca`) and the rendered-config Secret, one user-cluster API server on its own etcd, and
//! the node agent in place of the job controller and kubelet. The Jobs are the reconciler's
//! own (`eargate_reconciler::build_scan_job`): the client certificate Secret mounted at
//! `/etc/etcd/client`, only `ca.crt` of the `ca` Secret at `/etc/etcd/ca`, the rendered config
//! at `/etc/kubernetes/encryption-config`, Kubermatic's etcd endpoints, and the per-key
//! summary handed back in the Pod's termination message (`terminationMessagePolicy:
//! FallbackToLogsOnError`).
//!
//! - The scan completes; its Pod (job-name labels, owned by the Job) ends `Succeeded` with
//!   the summary as its message: with `--history`, current objects per key and the older
//!   revisions sealed with a key other than the primary (one, written straight into etcd
//!   with `k0` and overwritten with `k1`); after the etcd history is compacted, none.
//! - With a client certificate of another CA, etcd refuses the scan: the Job fails, and its
//!   Pod's message is the tail of its log (the error), as kubelet falls back to it.
//! - No key material (secretbox key, TLS keys) in any message, output, Pod or Job.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

#[path = "../crates/storage/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use eargate_policy::names;
use eargate_reconciler::{build_scan_job, Settings};
use eargate_testkit::node_agent::{
    job_pods, job_termination_message, pod_termination_message, JobRun, LABEL_CONTROLLER_UID,
    LABEL_JOB_NAME, LEGACY_LABEL_CONTROLLER_UID, LEGACY_LABEL_JOB_NAME,
};
use eargate_testkit::pki::Ca;
use eargate_testkit::rollout::{
    random_key, runtime, HostedCluster, Seed, CA_CERT_KEY, CA_SECRET, ETCD_CLIENT_CERT_KEY,
    ETCD_CLIENT_CERT_SECRET, ETCD_CLIENT_KEY_KEY,
};
use eargate_testkit::secrets::{assert_no_key_material, pem_body};
use eargate_testkit::{ControlPlane, Identity};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use support::EtcdExt as _;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
const NAMESPACE: &str = "eargate-system";
/// Secrets created through the user cluster's API server (each sealed with `k1` by it).
const SECRETS: u64 = 3;
/// Where the test writes a Secret into etcd itself: first sealed with `k0`, then with `k1`.
const DIRECT_KEY: &str = "/registry/secrets/default/sealed-twice";
const JOB_TIMEOUT: Duration = Duration::from_secs(180);

static B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// secretbox `k1` first (kube-apiserver seals every new Secret with it), `k0` to read what an
/// older key sealed, identity to read what was stored before: a store whose current objects
/// are all sealed with `k1` verifies.
fn config(k1: &str, k0: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k1\n        secret: {k1}\n      - name: k0\n        secret: {k0}\n  - identity: {{}}\n"
    )
}

/// A Secret as kube-apiserver stores it (JSON, which it reads as well as protobuf), sealed
/// with `key` (`(name, base64 secret)`).
fn sealed_secret(key: (&str, &str), value: &str) -> Vec<u8> {
    let sealer = eargate_storage::SecretboxKey::from_base64(key.0, key.1).expect("a key");
    let secret = json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": "sealed-twice", "namespace": "default",
                     "uid": "00000000-0000-4000-8000-000000000002",
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "type": "Opaque",
        "data": {"value": B64.encode(value)}
    });
    sealer.seal(secret.to_string().as_bytes())
}

/// The reconciler's own storage-scan Job ([`build_scan_job`]) under the name `name`, with
/// its client certificate from `client_secret`.
fn scan_job(name: &str, namespace: &str, client_secret: &str) -> Job {
    let mut settings = Settings {
        job_image: "eargate:test".to_owned(),
        ..Settings::default()
    };
    settings.scan.client_secret = client_secret.to_owned();
    let mut job = build_scan_job("scan", namespace, "0123456789abcdef", 1, None, &settings);
    job.metadata.name = Some(name.to_owned());
    job
}

/// Creates the Job and waits until it is `Complete` or `Failed`; returns it.
async fn run_job(seed_client: &kube::Client, namespace: &str, job: Job) -> Job {
    let jobs: Api<Job> = Api::namespaced(seed_client.clone(), namespace);
    let name = job.name_any();
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create the Job");
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let job = jobs.get(&name).await.expect("read the Job");
        let finished = job
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
        if finished {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "Job {name} did not finish within {JOB_TIMEOUT:?}: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn condition(job: &Job, type_: &str) -> bool {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The Pod of the Job's last attempt, `run` (one Pod per attempt: one when it succeeded at
/// once, two when its one retry failed too), checked to be the job controller's: labels,
/// owner, node. Found by name: the API lists Pods by name, and the names end in random
/// suffixes, so list order says nothing about which attempt came last.
async fn the_pod(seed_client: &kube::Client, namespace: &str, job: &Job, run: &JobRun) -> Pod {
    let name = job.name_any();
    let uid = job.metadata.uid.clone().expect("a uid");
    let pods = job_pods(seed_client, namespace, &name).await;
    let attempts = if condition(job, "Complete") { 1 } else { 2 };
    assert_eq!(pods.len(), attempts, "one Pod per attempt of Job {name}");
    let pod = pods
        .into_iter()
        .find(|p| p.name_any() == run.pod)
        .unwrap_or_else(|| {
            panic!(
                "the Pod {} of attempt {} of Job {name}",
                run.pod, run.attempt
            )
        });
    let pod_name = pod.name_any();
    let suffix = pod_name
        .strip_prefix(&format!("{name}-"))
        .unwrap_or_else(|| panic!("Pod {pod_name} is named after Job {name}"));
    assert!(
        suffix.len() == 5
            && suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "Pod {pod_name}: <job>-<5 lowercase alphanumerics>"
    );
    let labels = pod.labels();
    for (key, value) in [
        (LABEL_JOB_NAME, &name),
        (LEGACY_LABEL_JOB_NAME, &name),
        (LABEL_CONTROLLER_UID, &uid),
        (LEGACY_LABEL_CONTROLLER_UID, &uid),
        (names::LABEL_MANAGED_BY, &names::MANAGED_BY.to_owned()),
    ] {
        assert_eq!(labels.get(key), Some(value), "Pod {pod_name} label {key}");
    }
    let owners = pod.owner_references();
    assert_eq!(owners.len(), 1, "Pod {pod_name}: {owners:?}");
    let owner = &owners[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        ("batch/v1", "Job", name.as_str(), uid.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    let spec = pod.spec.as_ref().expect("a spec");
    assert_eq!(spec.node_name.as_deref(), Some("node-agent"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    pod
}

/// The terminated state of the Pod's container: (exit code, reason).
fn terminated(pod: &Pod) -> (i32, String) {
    let status = pod.status.as_ref().expect("a status");
    let c = &status
        .container_statuses
        .as_ref()
        .expect("container statuses")[0];
    assert_eq!(c.name, "scan");
    assert!(!c.ready && c.started == Some(false) && c.restart_count == 0);
    let t = c
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("the container terminated");
    assert!(t.started_at.is_some() && t.finished_at.is_some());
    (t.exit_code, t.reason.clone().unwrap_or_default())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// The agent's last run of `job`: a scan that reads etcd succeeds at once; one that cannot
/// is tried `backoffLimit + 1` times (the reconciler's scan Job allows one retry).
fn run_of(hosted: &HostedCluster, job: &str) -> JobRun {
    let runs: Vec<JobRun> = hosted
        .agent
        .state
        .job_runs()
        .into_iter()
        .filter(|r| r.job == job)
        .collect();
    let ok = runs.last().is_some_and(|r| r.exit_code == Some(0));
    assert_eq!(
        runs.len(),
        if ok { 1 } else { 2 },
        "attempts of {job}: {runs:#?}"
    );
    runs.into_iter().last().unwrap()
}

/// The argument after `flag` as the agent ran it.
fn arg_after<'a>(run: &'a JobRun, flag: &str) -> &'a str {
    let i = run
        .args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {:?}", run.args));
    &run.args[i + 1]
}

/// The summary a scan hands back, checked for its shape: `history` and a `keys` object.
fn summary(message: &str) -> Value {
    let summary: Value = serde_json::from_str(message)
        .unwrap_or_else(|e| panic!("the termination message is JSON ({e}): {message}"));
    assert_eq!(summary["history"], true, "{summary}");
    assert!(summary["keys"].is_object(), "{summary}");
    assert!(message.len() <= 4096);
    summary
}

#[test]
fn the_storage_scan_job_reads_the_user_etcd_over_tls_and_hands_back_its_summary() {
    runtime().block_on(async {
        let Some(cp) = ControlPlane::shared() else {
            return;
        };
        let Some(seed) = Seed::install(cp, EARGATE.as_ref(), NAMESPACE, false) else {
            return;
        };
        let (k1, k0) = (B64.encode(random_key()), B64.encode(random_key()));
        let hosted =
            HostedCluster::start_configured(&seed, "scan", 1, false, Some(&config(&k1, &k0))).await;
        let ns = hosted.namespace.clone();
        let seed_client = cp.client(&Identity::admin()).await;

        // Kubermatic's etcd Secrets are there, as the API servers use them.
        let secrets: Api<Secret> = Api::namespaced(seed_client.clone(), &ns);
        let client_secret = secrets.get(ETCD_CLIENT_CERT_SECRET).await.unwrap();
        let client_data = client_secret.data.clone().unwrap();
        assert_eq!(
            client_data[ETCD_CLIENT_CERT_KEY].0,
            hosted.user.etcd_client.cert_pem.as_bytes()
        );
        assert!(client_data.contains_key(ETCD_CLIENT_KEY_KEY));
        let ca_secret = secrets.get(CA_SECRET).await.unwrap();
        assert_eq!(
            ca_secret.data.unwrap()[CA_CERT_KEY].0,
            hosted.user.pki.ca.cert_pem.as_bytes()
        );

        // Secrets sealed with k1 by kube-apiserver; one updated: an older revision with k1.
        let user_secrets: Api<Secret> = Api::namespaced(hosted.user.client().await, "default");
        for i in 0..SECRETS {
            let s: Secret = serde_json::from_value(json!({
                "metadata": {"name": format!("s-{i}")},
                "data": {"value": B64.encode(format!("value {i}"))}
            }))
            .unwrap();
            user_secrets
                .create(&PostParams::default(), &s)
                .await
                .unwrap();
        }
        // One Secret written into etcd sealed with k0, then overwritten sealed with k1: an
        // older revision sealed with a key that is not the primary.
        let mut etcd = hosted.user.etcd.client().await;
        for (key, value) in [
            (("k0", k0.as_str()), "first"),
            (("k1", k1.as_str()), "second"),
        ] {
            etcd.put(DIRECT_KEY, sealed_secret(key, value), None)
                .await
                .expect("write into the user etcd");
        }
        drop(etcd);

        // 1. The scan completes and hands back its per-key summary.
        let job = run_job(
            &seed_client,
            &ns,
            scan_job("scan-1", &ns, ETCD_CLIENT_CERT_SECRET),
        )
        .await;
        let run = run_of(&hosted, "scan-1");
        assert!(
            condition(&job, "Complete"),
            "scan-1 completes: {:?}\nits output:\n{}\n{}",
            job.status,
            run.stdout,
            run.stderr
        );
        let pod = the_pod(&seed_client, &ns, &job, &run).await;
        assert_eq!(phase(&pod), Some("Succeeded"));
        assert_eq!(terminated(&pod), (0, "Completed".to_owned()));
        let message = job_termination_message(&seed_client, &ns, "scan-1")
            .await
            .expect("the succeeded Pod's termination message");
        assert_eq!(
            pod_termination_message(&pod).as_deref(),
            Some(message.as_str())
        );
        assert_eq!(run.termination_message, message);
        assert_eq!(run.pod, pod.name_any());
        let first = summary(&message);
        assert_eq!(first["ok"], true, "{first}");
        assert_eq!(first["keys"]["k1"]["objects"], SECRETS + 1, "{first}");
        assert_eq!(first["keys"]["k1"]["olderRevisions"], 0, "{first}");
        assert_eq!(first["keys"]["k0"]["objects"], 0, "{first}");
        assert_eq!(first["keys"]["k0"]["olderRevisions"], 1, "{first}");
        eprintln!("k8s_scan_job: scan-1 termination message: {message}");

        // It ran over TLS with the mounted files: Kubermatic's endpoints became the user
        // etcd's, the client certificate is the Secret's, and only ca.crt of the `ca`
        // Secret was mounted (not its key).
        assert_eq!(
            arg_after(&run, "--etcd-endpoints"),
            hosted.user.etcd.endpoint
        );
        assert!(hosted.user.etcd.endpoint.starts_with("https://"));
        let cert = std::path::Path::new(arg_after(&run, "--cert"));
        assert_eq!(
            std::fs::read(cert).unwrap(),
            hosted.user.etcd_client.cert_pem.as_bytes()
        );
        let cacert = std::path::Path::new(arg_after(&run, "--cacert"));
        let mounted: Vec<String> = std::fs::read_dir(cacert.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(mounted, vec![CA_CERT_KEY.to_owned()]);
        let message_file = arg_after(&run, "--termination-message-path");
        assert!(
            message_file.ends_with("/termination-log") && message_file != "/dev/termination-log",
            "{message_file}"
        );

        // 2. A client certificate of another CA: etcd refuses it, the scan fails, and the
        // Pod's message is the end of its log.
        let stranger = Ca::new("not the cluster CA").client("apiserver-etcd-client", &[]);
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "etcd-client-of-another-ca"},
                    "data": {
                        ETCD_CLIENT_CERT_KEY: B64.encode(&stranger.cert_pem),
                        ETCD_CLIENT_KEY_KEY: B64.encode(&stranger.key_pem),
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let job = run_job(
            &seed_client,
            &ns,
            scan_job("scan-wrong-cert", &ns, "etcd-client-of-another-ca"),
        )
        .await;
        let refused = run_of(&hosted, "scan-wrong-cert");
        assert!(
            condition(&job, "Failed"),
            "a certificate etcd does not trust fails the scan: {:?}",
            job.status
        );
        let pod = the_pod(&seed_client, &ns, &job, &refused).await;
        assert_eq!(phase(&pod), Some("Failed"));
        assert_eq!(terminated(&pod), (2, "Error".to_owned()));
        let fallback = pod_termination_message(&pod).expect("the log's tail as the message");
        assert!(
            fallback.contains("cannot reach etcd"),
            "the message is the error from the log: {fallback}"
        );
        // `--output json` prints the error as JSON on stdout; the log is all it printed.
        let printed = format!("{}{}", refused.stdout, refused.stderr);
        assert!(printed.ends_with(&fallback), "{printed}");
        assert_eq!(refused.termination_message, fallback);
        assert_eq!(
            job_termination_message(&seed_client, &ns, "scan-wrong-cert").await,
            None,
            "no Pod succeeded"
        );
        eprintln!("k8s_scan_job: scan-wrong-cert termination message: {fallback}");

        // 3. After compaction no older revision remains.
        let revision = {
            let user = hosted.user.clone();
            tokio::task::spawn_blocking(move || user.etcd.compact_to_current())
                .await
                .unwrap()
        };
        let job = run_job(
            &seed_client,
            &ns,
            scan_job("scan-2", &ns, ETCD_CLIENT_CERT_SECRET),
        )
        .await;
        assert!(condition(&job, "Complete"), "{:?}", job.status);
        the_pod(&seed_client, &ns, &job, &run_of(&hosted, "scan-2")).await;
        let message = job_termination_message(&seed_client, &ns, "scan-2")
            .await
            .expect("a message");
        let second = summary(&message);
        assert_eq!(second["ok"], true, "{second}");
        assert_eq!(second["keys"]["k1"]["objects"], SECRETS + 1, "{second}");
        assert_eq!(second["keys"]["k0"]["olderRevisions"], 0, "{second}");
        assert!(
            second["etcdRevision"].as_i64().unwrap() >= revision,
            "{second}"
        );

        // No key material anywhere: the secretbox key, the client keys, the CA's key.
        let keys = [
            k1.clone(),
            k0.clone(),
            pem_body(&hosted.user.etcd_client.key_pem),
            pem_body(&hosted.user.pki.ca.key_pem),
            pem_body(&stranger.key_pem),
        ];
        let mut texts: Vec<(String, String)> = Vec::new();
        for run in hosted.agent.state.job_runs() {
            texts.push((
                format!("Job {} output and message", run.job),
                format!(
                    "{}\n{}\n{}",
                    run.stdout, run.stderr, run.termination_message
                ),
            ));
        }
        texts.push((
            "node agent journal".to_owned(),
            hosted.agent.state.journal().join("\n"),
        ));
        for kind in ["pods", "jobs"] {
            let out = cp.kubectl_ok(&Identity::admin(), &["get", kind, "-n", &ns, "-o", "json"]);
            texts.push((
                format!("{kind} in {ns}"),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
        assert_no_key_material(&keys, texts);
    });
}
