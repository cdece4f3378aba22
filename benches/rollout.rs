//! Rollout benchmarks on real kube-apiserver and etcd (`make bench-rollout`; not a test).
//!
//! Parts, each selectable by name on the command line (`cargo bench --bench rollout --
//! reencrypt`), all by default:
//! - `reencrypt`: rewrite N Secrets (default 20,000) through one real kube-apiserver whose
//!   writer is secretbox, with `eargate reencrypt` and with the method upstream documents,
//!   `kubectl get secrets --all-namespaces -o json | kubectl replace -f -`, in alternating
//!   order over several rounds. Objects/s and peak RSS of each (GNU time), and the etcd
//!   revision delta, which proves each round rewrote every object.
//! - `enable`: the time from the enabling `kubectl apply` of a Cluster to phase `Active`
//!   (staged writer, two API server rollouts, the re-encryption Job), with a real user
//!   cluster of two kube-apiservers, for 2,000 and for 20,000 Secrets. The seed, gate,
//!   reconciler and node agent are the rollout test's (`eargate_testkit::rollout`).
//! - `verify`: `eargate verify` against `etcdctl get --prefix` over the Secrets that
//!   kube-apiserver sealed in the `enable` part.
//!
//! The machines are shared and noisy: the figures that matter are the ratios between
//! methods measured in the same run, and medians over rounds. A summary goes to stdout and
//! to `target/bench/rollout.md`; the diary is `docs/performance.md`.
//!
//! Knobs: `EARGATE_BENCH_SECRETS` (reencrypt part, default 20000), `EARGATE_BENCH_ROUNDS`
//! (default 3), `EARGATE_BENCH_KUBECTL_ROUNDS` (default 1), `EARGATE_BENCH_ENABLE_SIZES`
//! (default `2000,20000`).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use eargate_policy::names;
use eargate_testkit::rollout::{
    create_data, kubectl_stdin, random_key, DataSet, HostedCluster, Seed,
};
use eargate_testkit::secrets::B64;
use eargate_testkit::user_cluster::UserCluster;
use eargate_testkit::{ControlPlane, Identity};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::{json, Value};

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) runs this binary
    // without it, and a benchmark of many minutes has no place there.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "{}: a benchmark; run it with cargo bench (see the Makefile)",
            file!()
        );
        return;
    }
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |p: &str| parts.is_empty() || parts.iter().any(|a| a == p);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# eargate rollout benchmarks ({}; kube-apiserver and etcd from .tools/bin)\n",
        k8s_openapi::jiff::Timestamp::now()
    );
    if wants("reencrypt") {
        report += &runtime.block_on(reencrypt_part());
    }
    if wants("enable") || wants("verify") {
        report += &runtime.block_on(enable_and_verify_parts(wants("enable"), wants("verify")));
    }
    println!("\n{report}");
    let out = eargate_testkit::tools::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("rollout.md"), &report).expect("write the report");
    eprintln!("report written to {}", out.join("rollout.md").display());
}

// ---------------------------------------------------------------------------------------
// reencrypt vs kubectl get | kubectl replace

/// One timed run of a command: wall time and peak RSS of each process GNU time watched.
struct Run {
    seconds: f64,
    /// Peak RSS (KiB) per process, in pipeline order.
    rss_kib: Vec<u64>,
    /// etcd revisions the run made (each rewrite is one).
    revisions: u64,
}

/// Runs `script` under `bash -c` (for pipefail); `time_files` are the `/usr/bin/time -o` outputs it writes.
fn timed(script: &str, time_files: &[PathBuf], revision: &dyn Fn() -> u64) -> Run {
    let before = revision();
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    let seconds = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let rss_kib = time_files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no peak RSS in {}", f.display()))
        })
        .collect();
    Run {
        seconds,
        rss_kib,
        revisions: revision() - before,
    }
}

/// The current etcd revision of the user cluster.
fn etcd_revision(user: &UserCluster) -> u64 {
    let out = user
        .etcd
        .etcdctl()
        .expect("etcdctl")
        .args(["endpoint", "status", "--write-out=json"])
        .output()
        .expect("etcdctl endpoint status");
    let v: Value = serde_json::from_slice(&out.stdout).expect("etcdctl JSON");
    v[0]["Status"]["header"]["revision"]
        .as_u64()
        .expect("a revision")
}

/// Two EncryptionConfigurations for `secrets` over the same two fresh keys, one with `k1`
/// as the writer and one with `k2`: after a restart with the other one, every stored Secret
/// is stale (read with a key that is not the writer), so a rewrite really re-encrypts it.
/// (kube-apiserver skips the etcd write of an unchanged object that is not stale.)
fn secretbox_configs(dir: &Path) -> [PathBuf; 2] {
    let (k1, k2) = (B64.encode(random_key()), B64.encode(random_key()));
    let write = |file: &str, first: (&str, &str), second: (&str, &str)| {
        let path = dir.join(file);
        let yaml = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: {}\n        secret: {}\n      - name: {}\n        secret: {}\n  - identity: {{}}\n",
            first.0, first.1, second.0, second.1
        );
        std::fs::write(&path, yaml).expect("write the config");
        path
    };
    [
        write("config-k1.yaml", ("k1", &k1), ("k2", &k2)),
        write("config-k2.yaml", ("k2", &k2), ("k1", &k1)),
    ]
}

async fn reencrypt_part() -> String {
    let n = env_usize("EARGATE_BENCH_SECRETS", 20_000);
    let rounds = env_usize("EARGATE_BENCH_ROUNDS", 3);
    let dir = bench_dir("reencrypt");
    let user = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || UserCluster::new(&dir, "bench", 1))
            .await
            .expect("start")
            .expect("the binaries are there (make test-deps)")
    };
    let configs = secretbox_configs(user.dir());
    // The data is written in plaintext; each run re-encrypts it under the other writer.
    tokio::task::block_in_place(|| user.start_replica(0, None));
    let set = DataSet {
        namespaces: 10,
        secrets: n,
        configmaps: 0,
    };
    let took = create_data(&user.client().await, set, &[]).await;
    eprintln!(
        "bench reencrypt: {n} Secrets created in {:.1} s",
        took.as_secs_f64()
    );
    let kubeconfig = user.kubeconfig.clone();
    let kubectl = eargate_testkit::tools::binary("kubectl").expect("kubectl");
    let time = "/usr/bin/time";
    assert!(
        Path::new(time).exists(),
        "GNU time (/usr/bin/time) is needed for peak RSS"
    );
    let revision = || etcd_revision(&user);
    let mut eargate_runs = Vec::new();
    let mut kubectl_runs = Vec::new();
    // kubectl replaces about 20 objects a second (one object per request pair, client-side
    // rate limits): a round of it at 20,000 objects takes a quarter of an hour, so it runs
    // `kubectl_rounds` times (default 1) and eargate every round.
    let kubectl_rounds = env_usize("EARGATE_BENCH_KUBECTL_ROUNDS", 1);
    let mut runs_so_far = 0usize;
    for round in 0..rounds {
        let order: Vec<&str> = match (round < kubectl_rounds, round % 2 == 0) {
            (true, true) => vec!["eargate", "kubectl"],
            (true, false) => vec!["kubectl", "eargate"],
            (false, _) => vec!["eargate"],
        };
        for method in order {
            // The other writer than the last run's: every object is stale again.
            let config = &configs[runs_so_far % 2];
            runs_so_far += 1;
            tokio::task::block_in_place(|| user.start_replica(0, Some(config)));
            let run = tokio::task::block_in_place(|| {
                if method == "eargate" {
                    let tf = dir.join(format!("time-eargate-{round}"));
                    let summary = dir.join(format!("summary-{round}.json"));
                    let script = format!(
                        "{time} -f %M -o '{}' '{EARGATE}' reencrypt --resources=secrets --kubeconfig='{}' --output=json > '{}' 2> '{}'",
                        tf.display(),
                        kubeconfig.display(),
                        summary.display(),
                        dir.join(format!("progress-{round}.log")).display()
                    );
                    let run = timed(&script, &[tf], &revision);
                    let s: Value = serde_json::from_str(
                        &std::fs::read_to_string(&summary).expect("the summary"),
                    )
                    .expect("summary JSON");
                    assert_eq!(s["totals"]["rewritten"], n as u64, "eargate summary: {s}");
                    run
                } else {
                    let (tg, tr) = (
                        dir.join(format!("time-get-{round}")),
                        dir.join(format!("time-replace-{round}")),
                    );
                    let out = dir.join(format!("replace-{round}.out"));
                    let k = format!(
                        "'{}' --kubeconfig='{}'",
                        kubectl.display(),
                        kubeconfig.display()
                    );
                    let script = format!(
                        "set -o pipefail; {time} -f %M -o '{}' {k} get secrets --all-namespaces -o json | {time} -f %M -o '{}' {k} replace -f - > '{}'",
                        tg.display(),
                        tr.display(),
                        out.display()
                    );
                    let run = timed(&script, &[tg, tr], &revision);
                    let replaced = std::fs::read_to_string(&out)
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.ends_with(" replaced"))
                        .count();
                    assert!(replaced >= n, "kubectl replaced only {replaced} of {n}");
                    run
                }
            });
            assert!(
                run.revisions >= n as u64,
                "{method} round {round}: only {} etcd revisions for {n} objects",
                run.revisions
            );
            eprintln!(
                "bench reencrypt: round {round} {method}: {:.1} s ({:.0} objects/s), peak RSS {:?} KiB, {} etcd revisions",
                run.seconds,
                n as f64 / run.seconds,
                run.rss_kib,
                run.revisions
            );
            if method == "eargate" {
                eargate_runs.push(run);
            } else {
                kubectl_runs.push(run);
            }
        }
    }
    let rate = |runs: &[Run]| median(runs.iter().map(|r| n as f64 / r.seconds).collect());
    let secs = |runs: &[Run]| median(runs.iter().map(|r| r.seconds).collect());
    let rss_max = |runs: &[Run]| {
        median(
            runs.iter()
                .map(|r| *r.rss_kib.iter().max().unwrap_or(&0) as f64 / 1024.0)
                .collect(),
        )
    };
    let rss_sum = |runs: &[Run]| {
        median(
            runs.iter()
                .map(|r| r.rss_kib.iter().sum::<u64>() as f64 / 1024.0)
                .collect(),
        )
    };
    let (er, kr) = (rate(&eargate_runs), rate(&kubectl_runs));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Re-encrypt {n} Secrets through a real kube-apiserver: eargate {} runs, kubectl {} (alternating order)\n\nBefore each run the API server restarts with the other of two secretbox writers, so every Secret is stale and each rewrite is a real re-encryption (the etcd revision count proves it).\n",
        eargate_runs.len(),
        kubectl_runs.len()
    );
    let _ = writeln!(
        s,
        "| method | median time | median objects/s | median peak RSS |\n|---|---:|---:|---:|"
    );
    let _ = writeln!(
        s,
        "| `eargate reencrypt --resources=secrets` (16 in flight) | {:.1} s | {:.0} | {:.1} MiB |",
        secs(&eargate_runs),
        er,
        rss_max(&eargate_runs)
    );
    let _ = writeln!(
        s,
        "| `kubectl get secrets -A -o json \\| kubectl replace -f -` | {:.1} s | {:.0} | {:.1} MiB (largest of the two; both: {:.1} MiB) |",
        secs(&kubectl_runs),
        kr,
        rss_max(&kubectl_runs),
        rss_sum(&kubectl_runs)
    );
    let _ = writeln!(
        s,
        "\neargate / kubectl throughput: **{:.1}x** (goal: at least 2x); peak RSS eargate / largest kubectl: **{:.2}**\n",
        er / kr,
        rss_max(&eargate_runs) / rss_max(&kubectl_runs)
    );
    let _ = writeln!(
        s,
        "Every round rewrote every object: etcd revision deltas eargate {:?}, kubectl {:?}.\n",
        eargate_runs.iter().map(|r| r.revisions).collect::<Vec<_>>(),
        kubectl_runs.iter().map(|r| r.revisions).collect::<Vec<_>>()
    );
    eprintln!("{s}");
    s
}

fn bench_dir(part: &str) -> PathBuf {
    let dir = eargate_testkit::tools::workspace_root()
        .join("target/bench")
        .join(format!("{part}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the bench dir");
    dir
}

// ---------------------------------------------------------------------------------------
// enable -> Active, then verify vs etcdctl

const NAMESPACE: &str = "eargate-system";

async fn enable_and_verify_parts(enable: bool, verify: bool) -> String {
    let sizes: Vec<usize> = std::env::var("EARGATE_BENCH_ENABLE_SIZES")
        .unwrap_or_else(|_| "2000,20000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let cp = ControlPlane::shared().expect("the seed control plane (make test-deps)");
    let seed = tokio::task::block_in_place(|| Seed::install(cp, EARGATE.as_ref(), NAMESPACE, true))
        .expect("the chart installs");
    let mut reconciler = seed.start_reconciler("bench", &[]);
    let mut s = String::new();
    let mut enable_rows = Vec::new();
    let mut verify_rows = Vec::new();
    for &n in &sizes {
        let name = format!("bench{n}");
        let hosted = HostedCluster::start(&seed, &name, 2).await;
        let set = DataSet {
            namespaces: 10,
            secrets: n,
            configmaps: 0,
        };
        let took = create_data(&hosted.user.client().await, set, &[]).await;
        eprintln!(
            "bench enable: {name}: {n} Secrets created in {:.1} s",
            took.as_secs_f64()
        );
        hosted.create_key_secret(cp, "k1");
        let cluster = json!({
            "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {"humanReadableName": name, "version": "1.33.2",
                     "features": {"encryptionAtRest": true},
                     "encryptionConfiguration": {"enabled": true, "resources": ["secrets"],
                        "secretbox": {"keys": [{"name": "k1", "secretRef": {"name": "k1", "key": "key"}}]}}}
        });
        let t0 = Instant::now();
        let out = kubectl_stdin(
            cp.kubectl(&Identity::admin())
                .args(["apply", "--server-side", "-f", "-"]),
            &cluster.to_string(),
        );
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seed_client = cp.client(&Identity::admin()).await;
        let clusters: Api<eargate_policy::model::Cluster> = Api::all(seed_client.clone());
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut phases: Vec<String> = Vec::new();
        loop {
            let c = clusters.get(&name).await.expect("the Cluster");
            let enc = c.status.as_ref().and_then(|st| st.encryption.as_ref());
            let phase = enc
                .and_then(|e| e.phase)
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "(none)".to_owned());
            if phases.last() != Some(&phase) {
                eprintln!(
                    "bench enable: {name}: {phase} at {:.1} s",
                    t0.elapsed().as_secs_f64()
                );
                phases.push(phase.clone());
            }
            let active_key = enc.map(|e| e.active_key.clone());
            if phase == "Active" && active_key.as_deref() == Some("secretbox/k1") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: not Active within an hour: {phases:?}\n{}",
                reconciler.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let to_active = t0.elapsed();
        let runs = hosted.agent.state.job_runs();
        let job_seconds: f64 = runs.iter().map(|r| r.took.as_secs_f64()).sum();
        let rollouts = hosted.agent.state.rollouts();
        let rollout_seconds: f64 = rollouts.iter().skip(1).map(|r| r.took.as_secs_f64()).sum();
        eprintln!(
            "bench enable: {name}: Active in {:.1} s ({} rollouts {:.1} s, {} Job runs {:.1} s)",
            to_active.as_secs_f64(),
            rollouts.len() - 1,
            rollout_seconds,
            runs.len(),
            job_seconds
        );
        enable_rows.push(format!(
            "| {n} | {:.1} s | {} ({:.1} s) | {} ({:.1} s) | {} |",
            to_active.as_secs_f64(),
            rollouts.len() - 1,
            rollout_seconds,
            runs.len(),
            job_seconds,
            phases.join(" → ")
        ));
        // The config the replicas run, for verify.
        let config = hosted.user.dir().join("running-config.yaml");
        let secrets: Api<Secret> = Api::namespaced(seed_client.clone(), &hosted.namespace);
        let rendered = secrets
            .get(names::DEFAULT_CONFIG_SECRET)
            .await
            .expect("the rendered config")
            .data
            .and_then(|mut d| d.remove(names::DEFAULT_CONFIG_SECRET_KEY))
            .expect("the config key")
            .0;
        std::fs::write(&config, rendered).expect("write the config");
        // Correctness before speed: everything is sealed with k1.
        let etcd_flags = hosted.user.etcd.client_flags();
        let report = verify_json(&etcd_flags, &config);
        let counts = report["resources"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["resource"] == "secrets"))
            .map(|r| r["counts"].clone())
            .unwrap_or(Value::Null);
        assert_eq!(
            counts["sealed-with-primary"], n as u64,
            "{name}: verify {report}"
        );
        assert_eq!(counts["plaintext"], 0, "{name}: verify {report}");
        eprintln!("bench enable: {name}: verify: every Secret sealed with k1: {counts}");
        if verify {
            verify_rows.push(verify_vs_etcdctl(&hosted.user, &etcd_flags, &config, n));
        }
        drop(hosted);
    }
    reconciler.stop();
    if enable {
        let _ = writeln!(
            s,
            "## Enabling: the `kubectl apply` of an enabled Cluster to phase `Active` (2 user-cluster API servers, staged writer, re-encryption Job)\n"
        );
        let _ = writeln!(
            s,
            "| Secrets | apply → Active | API server rollouts (time) | Job runs (time) | phases seen |\n|---:|---:|---|---|---|"
        );
        for r in &enable_rows {
            let _ = writeln!(s, "{r}");
        }
        let _ = writeln!(
            s,
            "\nThe rollouts include the Deployment's `minReadySeconds: 3` per replica; the node agent stands in for kubelet.\n"
        );
    }
    if verify {
        let _ = writeln!(
            s,
            "## `eargate verify` vs `etcdctl get --prefix /registry/secrets/` over what kube-apiserver sealed (5 rounds, alternating)\n"
        );
        let _ = writeln!(
            s,
            "| Secrets | eargate verify (median) | etcdctl get --prefix (median) | ratio verify / etcdctl |\n|---:|---:|---:|---:|"
        );
        for r in &verify_rows {
            let _ = writeln!(s, "{r}");
        }
        s.push('\n');
    }
    eprintln!("{s}");
    s
}

fn verify_json(etcd_flags: &[String], config: &Path) -> Value {
    let out = Command::new(EARGATE)
        .arg("verify")
        .args(etcd_flags)
        .arg(format!("--encryption-config={}", config.display()))
        .arg("--output=json")
        .output()
        .expect("run eargate verify");
    assert!(
        out.status.success(),
        "verify: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("verify JSON")
}

fn verify_vs_etcdctl(user: &UserCluster, etcd_flags: &[String], config: &Path, n: usize) -> String {
    let mut v = Vec::new();
    let mut e = Vec::new();
    for round in 0..5 {
        for method in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let t0 = Instant::now();
            if method == 0 {
                let out = Command::new(EARGATE)
                    .arg("verify")
                    .args(etcd_flags)
                    .arg(format!("--encryption-config={}", config.display()))
                    .arg("--output=json")
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("run eargate verify");
                assert!(out.success());
                v.push(t0.elapsed().as_secs_f64());
            } else {
                let out = user
                    .etcd
                    .etcdctl()
                    .expect("etcdctl")
                    .args(["get", "--prefix", "/registry/secrets/"])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("run etcdctl");
                assert!(out.success());
                e.push(t0.elapsed().as_secs_f64());
            }
        }
    }
    let (mv, me) = (median(v), median(e));
    format!("| {n} | {mv:.2} s | {me:.2} s | {:.2} |", mv / me)
}
