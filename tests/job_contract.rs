//! Contract between the reconciler and the command line: the re-encryption Job the reconciler
//! builds runs the `eargate` image with its container arguments, so those arguments must
//! parse with the real `eargate` command line and mean what the reconciler intends.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use clap::Parser as _;
use eargate::cli::{Cli, Command, Output};
use eargate::reconciler::{build_job, Settings};

/// The container arguments of the Job the reconciler creates for `resources`.
fn job_args(resources: &[&str]) -> Vec<String> {
    let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
    let job = build_job(
        "c1",
        "cluster-c1",
        "0123456789abcdef0123456789abcdef",
        "",
        &resources,
        &Settings::default(),
    );
    let pod = job.spec.unwrap().template.spec.unwrap();
    pod.containers[0].args.clone().expect("container args")
}

fn parse(args: &[String]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("eargate".to_owned()).chain(args.iter().cloned()))
}

#[test]
fn the_jobs_reencrypt_arguments_parse_with_the_real_cli() {
    let args = job_args(&["secrets", "configmaps"]);
    let cli = parse(&args).unwrap_or_else(|e| panic!("{args:?} do not parse: {e}"));
    let Command::Reencrypt(reencrypt) = cli.command else {
        panic!("{args:?} is not `eargate reencrypt`");
    };
    assert_eq!(reencrypt.resources, ["secrets", "configmaps"]);
    assert_eq!(
        reencrypt.kube.kubeconfig.as_deref(),
        Some(std::path::Path::new(
            "/etc/kubernetes/kubeconfig/kubeconfig"
        )),
        "the kubeconfig is read from where the Job mounts the admin kubeconfig Secret"
    );
    assert_eq!(
        reencrypt.output,
        Output::Json,
        "the Job logs a JSON summary"
    );
    // Same vector as the reconciler's own builder of it.
    assert_eq!(
        args,
        eargate::reconciler::reencrypt_args(&["secrets".into(), "configmaps".into()])
    );
}

#[test]
fn a_changed_argument_would_be_caught() {
    let mut args = job_args(&["secrets"]);
    args.push("--no-such-flag".to_owned());
    assert!(parse(&args).is_err(), "{args:?} parsed");
}

#[test]
fn the_storage_scans_arguments_parse_with_the_real_cli() {
    let settings = Settings::default();
    let job = eargate::reconciler::build_scan_job(
        "c1",
        "cluster-c1",
        "0123456789abcdef0123456789abcdef",
        1,
        None,
        &settings,
    );
    let pod = job.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().expect("container args");
    let cli = parse(&args).unwrap_or_else(|e| panic!("{args:?} do not parse: {e}"));
    let Command::Verify(verify) = cli.command else {
        panic!("{args:?} is not `eargate verify`");
    };
    assert!(verify.history, "older revisions are counted");
    assert!(
        !verify.verdict_exit_code,
        "the summary is the result, not the exit code"
    );
    assert_eq!(
        verify.termination_message_path.as_deref(),
        Some(std::path::Path::new("/dev/termination-log")),
        "Kubernetes' default terminationMessagePath"
    );
    assert_eq!(
        verify.etcd_endpoints[0],
        "https://etcd-0.etcd.cluster-c1.svc.cluster.local:2379"
    );
    // Each file flag points into a mounted volume.
    let mounts: Vec<String> = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    for path in [
        verify.cacert.unwrap(),
        verify.cert.unwrap(),
        verify.key.unwrap(),
        verify.encryption_config,
    ] {
        assert!(
            mounts.iter().any(|m| path.starts_with(m)),
            "{} is not under a mount ({mounts:?})",
            path.display()
        );
    }
}
