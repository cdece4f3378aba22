//! Acceptance tests of `eargate reencrypt` against the in-process API stand-in: every object
//! is rewritten exactly once or accounted for, failures are named, nothing is printed
//! from object contents.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eargate_reencrypt::{
    client, reencrypt, Error, Options, ProgressSink, ResolveError, RetryPolicy, Summary,
};
use support::standin::{obj_ref, StandIn, World, SECRET_MARKER};

fn options(resources: &[&str]) -> Options {
    let mut opts = Options::new(resources.iter().map(|s| s.to_string()).collect());
    opts.concurrency = 8;
    opts.page_size = 25;
    opts.progress_interval = Duration::from_millis(50);
    opts.retry = RetryPolicy {
        max_attempts: 6,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    opts
}

fn sink() -> (ProgressSink, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let captured = lines.clone();
    (
        Arc::new(move |line: &str| captured.lock().unwrap().push(line.to_string())),
        lines,
    )
}

async fn run(standin: &StandIn, opts: &Options) -> (Result<Summary, Error>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig);
    let client = client(Some(&kubeconfig))
        .await
        .expect("client from kubeconfig");
    let (progress, lines) = sink();
    let result = reencrypt(&client, opts, &progress).await;
    let lines = lines.lock().unwrap().clone();
    (result, lines)
}

fn resource<'a>(summary: &'a Summary, name: &str) -> &'a eargate_reencrypt::ResourceSummary {
    summary
        .resources
        .iter()
        .find(|r| r.resource == name)
        .unwrap_or_else(|| panic!("{name} in summary"))
}

/// The resources of the run, in the order run.
fn resource_names(summary: &Summary) -> Vec<&str> {
    summary
        .resources
        .iter()
        .map(|r| r.resource.as_str())
        .collect()
}

fn populate(world: &mut World) {
    for ns in 0..3 {
        for i in 0..40 {
            world.add("secrets", Some(&format!("ns-{ns}")), &format!("s-{i:03}"));
        }
    }
    for i in 0..30 {
        world.add("configmaps", Some("ns-0"), &format!("c-{i:03}"));
    }
    for i in 0..10 {
        world.add("widgets.example.com", None, &format!("w-{i}"));
    }
    for i in 0..5 {
        world.add("deployments.apps", Some("apps"), &format!("d-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_rewritten_once_or_accounted_for() {
    let mut world = World::standard();
    populate(&mut world);
    let f = &mut world.faults;
    // Secrets come in 5 pages of 25; the 2nd continued page request finds its token expired.
    f.expire_continue.insert("secrets".into(), 2);
    f.delete_after_listing
        .insert(obj_ref("secrets", "ns-1/s-007"));
    f.delete_after_listing
        .insert(obj_ref("widgets.example.com", "w-3"));
    f.bump_after_listing
        .insert(obj_ref("secrets", "ns-2/s-010"));
    f.bump_after_listing
        .insert(obj_ref("configmaps", "ns-0/c-001"));
    f.throttle.insert(obj_ref("secrets", "ns-0/s-005"), 1);
    f.fail_500.insert(obj_ref("secrets", "ns-1/s-020"), 2);
    f.fail_500.insert(obj_ref("configmaps", "ns-0/c-004"), 1);
    f.invalid.insert(obj_ref("secrets", "ns-2/s-030"));
    f.list_503_once.insert("configmaps".into());
    let standin = StandIn::start(world).await;

    let opts = options(&["secrets,configmaps", "widgets.example.com", "*.apps"]);
    let (result, progress) = run(&standin, &opts).await;
    let summary = result.expect("run completes");

    assert!(!summary.ok, "one object failed permanently");
    assert_eq!(summary.exit_code(), 1);
    let names = resource_names(&summary);
    assert_eq!(
        names,
        [
            "secrets",
            "configmaps",
            "widgets.example.com",
            "deployments.apps"
        ]
    );

    let secrets = resource(&summary, "secrets");
    assert_eq!(secrets.api_version, "v1");
    assert_eq!(
        (
            secrets.counts.listed,
            secrets.counts.rewritten,
            secrets.counts.conflicted,
            secrets.counts.gone,
            secrets.counts.failed
        ),
        (120, 117, 1, 1, 1)
    );
    assert_eq!(secrets.list_restarts, 1);
    assert_eq!(secrets.list_error, None);
    assert_eq!(secrets.failures.len(), 1);
    assert_eq!(secrets.failures[0].namespace, "ns-2");
    assert_eq!(secrets.failures[0].name, "s-030");
    assert!(
        secrets.failures[0].reason.starts_with("HTTP 422 Invalid"),
        "{}",
        secrets.failures[0].reason
    );

    let configmaps = resource(&summary, "configmaps");
    assert_eq!(
        (
            configmaps.counts.listed,
            configmaps.counts.rewritten,
            configmaps.counts.conflicted
        ),
        (30, 29, 1)
    );
    assert!(
        configmaps.ok(),
        "a 503 on the list is retried, not a failure"
    );

    let widgets = resource(&summary, "widgets.example.com");
    assert_eq!(
        widgets.api_version, "example.com/v1",
        "the preferred version"
    );
    assert_eq!(
        (
            widgets.counts.listed,
            widgets.counts.rewritten,
            widgets.counts.gone
        ),
        (10, 9, 1)
    );

    let deployments = resource(&summary, "deployments.apps");
    assert_eq!(
        (deployments.counts.listed, deployments.counts.rewritten),
        (5, 5)
    );

    assert_eq!(summary.totals.listed, 165);
    assert_eq!(summary.totals.rewritten, 160);
    assert_eq!(summary.totals.listed, summary.totals.done());

    // The server's view: every remaining object written exactly once, except the one
    // someone else wrote meanwhile and the invalid one; nothing written twice.
    let w = standin.world.lock().unwrap();
    assert_eq!(w.expired_tokens, 1);
    assert!(
        w.changed_bodies.is_empty(),
        "objects must be written back unchanged: {:?}",
        w.changed_bodies
    );
    let not_written = [
        obj_ref("secrets", "ns-2/s-010"),
        obj_ref("configmaps", "ns-0/c-001"),
        obj_ref("secrets", "ns-2/s-030"),
    ];
    for (res, objects) in &w.store {
        for key in objects.keys() {
            let r = obj_ref(res, key);
            let writes = w.writes.get(&r).copied().unwrap_or(0);
            let expected = if not_written.contains(&r) { 0 } else { 1 };
            assert_eq!(writes, expected, "{res} {key} written {writes} times");
        }
    }
    assert!(w.writes.values().all(|&n| n == 1));
    // Retry-After: 1 was honoured before the throttled object was tried again.
    let attempts = &w.attempts[&obj_ref("secrets", "ns-0/s-005")];
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1] - attempts[0];
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before Retry-After"
    );
    // The 500s were retried: two failures, then one success.
    let rejected_500 = w
        .rejected
        .iter()
        .filter(|(_, r, c)| *c == 500 && r == &obj_ref("secrets", "ns-1/s-020"))
        .count();
    assert_eq!(rejected_500, 2);
    drop(w);

    // Progress was reported with done/total, rate and ETA; the run took > 1 s (Retry-After).
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("reencrypt secrets: ") && l.contains("objects/s, ETA")),
        "{progress:?}"
    );

    // Nothing printed carries object contents.
    let text = summary.to_text();
    let json = summary.to_json();
    assert!(
        text.contains("failed ns-2/s-030: HTTP 422 Invalid"),
        "{text}"
    );
    for out in [&text, &json].into_iter().chain(progress.iter()) {
        assert!(
            !out.contains(SECRET_MARKER),
            "object contents printed: {out}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(v["ok"], false);
    assert_eq!(v["totals"]["failed"], 1);
    assert_eq!(v["resources"][0]["failures"][0]["name"], "s-030");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_wildcard_rewrites_only_rewritable_resources_and_succeeds() {
    let mut world = World::standard();
    populate(&mut world);
    world
        .faults
        .failing_groups
        .insert("metrics.example.io".into());
    let standin = StandIn::start(world).await;

    let (result, progress) = run(&standin, &options(&["*."])).await;
    let summary = result.expect("run completes");
    assert!(summary.ok, "{}", summary.to_text());
    assert_eq!(summary.exit_code(), 0);
    let names = resource_names(&summary);
    assert_eq!(
        names,
        ["secrets", "configmaps"],
        "no subresources, no read-only resources"
    );
    assert_eq!(summary.totals.rewritten, 150);
    assert!(summary.to_text().starts_with("reencrypt finished"));

    // `*.*` tolerates a group whose discovery fails (an aggregated API that is down), with a warning.
    let (result, progress_all) = run(&standin, &options(&["*.*"])).await;
    let summary = result.expect("run completes");
    assert!(summary.ok);
    let names = resource_names(&summary);
    assert_eq!(
        names,
        [
            "secrets",
            "configmaps",
            "deployments.apps",
            "widgets.example.com"
        ]
    );
    assert!(
        progress_all
            .iter()
            .any(|l| l.contains("metrics.example.io") && l.contains("warning")),
        "{progress_all:?}"
    );
    let w = standin.world.lock().unwrap();
    for ((res, key), &n) in &w.writes {
        let runs = if res == "secrets" || res == "configmaps" {
            2
        } else {
            1
        };
        assert_eq!(n, runs, "{res} {key}: once per run that covered it");
    }
    assert_eq!(w.writes.len(), 165);
    drop(progress);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_list_fails_the_resource_never_an_empty_success() {
    let mut world = World::standard();
    populate(&mut world);
    world.faults.forbid_list.insert("secrets".into());
    let standin = StandIn::start(world).await;

    let (result, _) = run(&standin, &options(&["secrets", "configmaps"])).await;
    let summary = result.expect("run completes");
    assert!(!summary.ok);
    assert_eq!(summary.exit_code(), 1);
    let secrets = resource(&summary, "secrets");
    assert_eq!(secrets.counts.listed, 0);
    assert_eq!(secrets.list_error.as_deref(), Some("HTTP 403 Forbidden"));
    // Other resources still proceed.
    assert_eq!(resource(&summary, "configmaps").counts.rewritten, 30);
    assert!(summary
        .to_text()
        .contains("LIST FAILED: HTTP 403 Forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_keep_expiring_end_in_a_list_failure() {
    let mut world = World::standard();
    populate(&mut world);
    let standin = StandIn::start(world).await;
    let mut opts = options(&["secrets"]);
    opts.max_list_restarts = 2;
    standin
        .world
        .lock()
        .unwrap()
        .faults
        .expire_every_continue
        .insert("secrets".into());
    let (result, _) = run(&standin, &opts).await;
    let summary = result.expect("run completes");
    let secrets = resource(&summary, "secrets");
    assert!(!summary.ok);
    assert_eq!(secrets.list_restarts, 3);
    // The first page was handed out once; restarts skipped it.
    assert_eq!(secrets.counts.listed, 25);
    assert!(
        secrets
            .list_error
            .as_deref()
            .unwrap_or_default()
            .contains("expired"),
        "{:?}",
        secrets.list_error
    );
    // What was handed out before giving up was still written, each once.
    assert_eq!(secrets.counts.listed, secrets.counts.done());
    assert!(standin
        .world
        .lock()
        .unwrap()
        .writes
        .values()
        .all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_match_nothing_are_errors_before_any_write() {
    let mut world = World::standard();
    populate(&mut world);
    let standin = StandIn::start(world).await;

    let (result, _) = run(&standin, &options(&["secrets,gadgets.example.com"])).await;
    match result {
        Err(Error::Resolve(ResolveError::NoMatch { entry })) => {
            assert_eq!(entry, "gadgets.example.com")
        }
        other => panic!("expected a resolution error, got {other:?}"),
    }
    let (result, _) = run(&standin, &options(&["componentstatuses"])).await;
    assert!(
        matches!(
            result,
            Err(Error::Resolve(ResolveError::NotRewritable { .. }))
        ),
        "{result:?}"
    );
    let (result, _) = run(&standin, &options(&["*.metrics.example.io"])).await;
    assert!(
        matches!(result, Err(Error::Resolve(ResolveError::NoMatch { .. }))),
        "{result:?}"
    );
    assert_eq!(standin.world.lock().unwrap().puts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"),
    )
    .unwrap();
    let client = client(Some(&kubeconfig)).await.unwrap();
    let (progress, _) = sink();
    let result = reencrypt(&client, &options(&["secrets"]), &progress).await;
    assert!(matches!(result, Err(Error::Discovery(_))), "{result:?}");

    let missing = dir.path().join("missing");
    assert!(matches!(
        eargate_reencrypt::client(Some(&missing)).await,
        Err(Error::Kubeconfig { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_given_as_an_http_date_is_honoured() {
    let mut world = World::standard();
    for i in 0..3 {
        world.add("secrets", Some("ns-0"), &format!("s-{i}"));
    }
    // 429 with `Retry-After: <HTTP-date 2 s ahead>`, as a proxy in front of the API may send.
    world
        .faults
        .throttle_until_date
        .insert(obj_ref("secrets", "ns-0/s-1"), 1);
    let standin = StandIn::start(world).await;

    let (result, _) = run(&standin, &options(&["secrets"])).await;
    let summary = result.expect("run completes");
    assert!(summary.ok, "{}", summary.to_text());
    assert_eq!(summary.totals.rewritten, 3);
    let w = standin.world.lock().unwrap();
    let attempts = &w.attempts[&obj_ref("secrets", "ns-0/s-1")];
    assert_eq!(attempts.len(), 2, "one 429, then the successful retry");
    // The date has whole seconds, so the wait is 1 to 2 s; the backoff alone (5 ms here)
    // would have retried at once.
    let waited = attempts[1] - attempts[0];
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before the Retry-After date"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}
