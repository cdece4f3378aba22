//! The run: building the client, taking the discovery snapshot, and for each resource a
//! lister task ([`crate::list`]) feeding a bounded channel that at most `concurrency`
//! rewrites ([`crate::rewrite`]) drain. Memory stays flat: at most about two pages of
//! objects exist at any time, whatever the object count.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::mpsc;

use crate::list::{list_all, Item, Progress};
use crate::resolve::{
    parse_entries, resolve, DiscoveredResource, DiscoverySnapshot, ResolveError, Target,
};
use crate::retry::RetryPolicy;
use crate::rewrite::{rewrite, Outcome};
use crate::summary::{progress_line, seconds, Failure, ResourceSummary, Summary};
use crate::verdict::failure_reason;

/// Errors that stop the run before any object is touched (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file could not be read.
    #[error("reading kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why it could not be read.
        source: kube::config::KubeconfigError,
    },
    /// No client configuration could be inferred (no kubeconfig, not in a cluster).
    #[error("no usable Kubernetes client configuration")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
    /// The API server's discovery failed.
    #[error("API discovery failed")]
    Discovery(#[source] kube::Error),
    /// `--resources` did not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    Options(String),
}

/// How a run behaves; [`Options::new`] gives the CLI's defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--resources` entries (each may be comma-separated).
    pub resources: Vec<String>,
    /// PUTs in flight at once.
    pub concurrency: usize,
    /// `limit` of each LIST page.
    pub page_size: u32,
    /// Least time between two progress lines.
    pub progress_interval: Duration,
    /// When to retry a write, and how long to wait.
    pub retry: RetryPolicy,
    /// Restarts allowed per resource after expired continue tokens.
    pub max_list_restarts: u32,
}

impl Options {
    /// The CLI's defaults for `resources`.
    pub fn new(resources: Vec<String>) -> Self {
        Self {
            resources,
            concurrency: 16,
            page_size: 500,
            progress_interval: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_list_restarts: 5,
        }
    }

    /// Checks options and entries without touching the network, so bad input is reported
    /// before any connection problem.
    pub fn check(&self) -> Result<(), Error> {
        self.validate()?;
        parse_entries(&self.resources)?;
        Ok(())
    }

    fn validate(&self) -> Result<(), Error> {
        if !(1..=1024).contains(&self.concurrency) {
            return Err(Error::Options(format!(
                "--concurrency must be 1..=1024, not {}",
                self.concurrency
            )));
        }
        if !(1..=10_000).contains(&self.page_size) {
            return Err(Error::Options(format!(
                "--page-size must be 1..=10000, not {}",
                self.page_size
            )));
        }
        if self.progress_interval.is_zero() {
            return Err(Error::Options(
                "the progress interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Where progress lines go (stderr in the CLI).
pub type ProgressSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A client from `--kubeconfig`, or the usual inference (KUBECONFIG, ~/.kube/config,
/// in-cluster). kube's built-in retry layer is switched off: our policy retries, honours
/// `Retry-After`, and accounts for every attempt.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc_err = |source| Error::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(kc_err)?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(kc_err)?
        }
        None => Config::infer().await?,
    };
    config.default_retry = false;
    Client::try_from(config).map_err(Error::Client)
}

/// Takes the discovery snapshot: core resources at `/api/v1`, and every group at its
/// preferred version. A group whose discovery fails (an aggregated API that is down) is
/// recorded, not fatal: it only matters if an entry names it.
pub async fn discover(client: &Client) -> Result<DiscoverySnapshot, Error> {
    let core = client
        .list_core_api_versions()
        .await
        .map_err(Error::Discovery)?;
    let core_version = core
        .versions
        .iter()
        .find(|v| *v == "v1")
        .or(core.versions.first())
        .cloned()
        .unwrap_or_else(|| "v1".into());
    let core_list = client
        .list_core_api_resources(&core_version)
        .await
        .map_err(Error::Discovery)?;
    let mut snapshot = DiscoverySnapshot::default();
    push_resources(&mut snapshot, "", &core_version, core_list.resources);

    let groups = client.list_api_groups().await.map_err(Error::Discovery)?;
    let wanted: Vec<(String, String)> = groups
        .groups
        .into_iter()
        .filter_map(|g| {
            let gv = g
                .preferred_version
                .or_else(|| g.versions.into_iter().next())?;
            Some((g.name, gv.group_version))
        })
        .collect();
    let lists = futures::stream::iter(wanted.iter())
        .map(|(_, gv)| client.list_api_group_resources(gv))
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
    for ((group, gv), list) in wanted.iter().zip(lists) {
        let version = gv.rsplit('/').next().unwrap_or(gv).to_string();
        match list {
            Ok(list) => push_resources(&mut snapshot, group, &version, list.resources),
            Err(err) => snapshot
                .failed_groups
                .push((group.clone(), discovery_reason(&err))),
        }
    }
    Ok(snapshot)
}

fn push_resources(
    snapshot: &mut DiscoverySnapshot,
    group: &str,
    version: &str,
    resources: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource>,
) {
    snapshot
        .resources
        .extend(resources.into_iter().map(|r| DiscoveredResource {
            group: r.group.unwrap_or_else(|| group.to_string()),
            version: r.version.unwrap_or_else(|| version.to_string()),
            plural: r.name,
            kind: r.kind,
            namespaced: r.namespaced,
            verbs: r.verbs,
        }));
}

fn discovery_reason(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => failure_reason(status.code, Some(status)),
        other => other.to_string(),
    }
}

/// Runs the whole re-encryption: resolve entries, then each resource in turn.
/// `Err` only for problems before any write (options, discovery, entries); everything
/// after that is accounted for in the [`Summary`].
pub async fn reencrypt(
    client: &Client,
    opts: &Options,
    progress: &ProgressSink,
) -> Result<Summary, Error> {
    opts.validate()?;
    let entries = parse_entries(&opts.resources)?;
    let snapshot = discover(client).await?;
    let targets = resolve(&entries, &snapshot)?;
    for (group, reason) in &snapshot.failed_groups {
        progress(&format!(
            "reencrypt: warning: discovery of API group {group} failed ({reason}); not rewritten"
        ));
    }
    let started = Instant::now();
    let mut results = Vec::with_capacity(targets.len());
    for target in &targets {
        results.push(process_resource(client, target, opts, progress).await);
    }
    Ok(Summary::new(results, started.elapsed()))
}

async fn process_resource(
    client: &Client,
    target: &Target,
    opts: &Options,
    progress: &ProgressSink,
) -> ResourceSummary {
    let started = Instant::now();
    let name = target.display_name();
    let mut summary = ResourceSummary::new(name.clone(), target.api_version());
    let counters = Arc::new(Progress::default());
    let (tx, mut rx) = mpsc::channel::<Item>(opts.page_size as usize);
    let lister = tokio::spawn(list_all(
        client.clone(),
        target.clone(),
        opts.clone(),
        tx,
        counters.clone(),
    ));

    let items = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let work = items
        .map(|item| async move {
            let outcome = match &item.body {
                Ok(body) => rewrite(client, target, &item, body, &opts.retry).await,
                Err(reason) => Outcome::Failed(reason.clone()),
            };
            (item.namespace, item.name, outcome)
        })
        .buffer_unordered(opts.concurrency)
        .fold(&mut summary, |summary, (namespace, name, outcome)| {
            match outcome {
                Outcome::Rewritten => summary.counts.rewritten += 1,
                Outcome::Conflicted => summary.counts.conflicted += 1,
                Outcome::Gone => summary.counts.gone += 1,
                Outcome::Failed(reason) => summary.record_failure(Failure {
                    namespace: namespace.unwrap_or_default(),
                    name,
                    reason,
                }),
            }
            counters.done.fetch_add(1, Ordering::Relaxed);
            futures::future::ready(summary)
        });
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.progress_interval,
        opts.progress_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut work => break,
            _ = ticker.tick() => progress(&progress_line(
                &name,
                counters.done.load(Ordering::Relaxed),
                counters.total.load(Ordering::Relaxed),
                started.elapsed(),
            )),
        }
    }
    let listed = match lister.await {
        Ok(result) => {
            summary.list_restarts = result.restarts;
            summary.list_error = result.error;
            counters.listed.load(Ordering::Relaxed)
        }
        Err(err) => {
            summary.list_error = Some(format!("lister task ended abnormally: {err}"));
            counters.listed.load(Ordering::Relaxed)
        }
    };
    summary.counts.listed = listed;
    summary.duration_seconds = seconds(started.elapsed());
    summary
}
