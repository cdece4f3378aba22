//! The I/O side: building the client, taking the discovery snapshot, and for each resource a
//! lister task feeding a bounded channel that at most `concurrency` PUTs drain. Memory stays
//! flat: at most about two pages of objects exist at any time, whatever the object count.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{Request, Status};
use kube::{Client, Config};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::policy::{
    already_handed_out, classify_list, classify_put, failure_reason, object_key, retry_after,
    ListVerdict, PutVerdict, RetryPolicy,
};
use crate::resolve::{
    parse_entries, resolve, DiscoveredResource, DiscoverySnapshot, ResolveError, Target,
};
use crate::summary::{progress_line, seconds, Failure, ResourceSummary, Summary};

/// Errors that stop the run before any object is touched (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no usable Kubernetes client configuration")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("API discovery failed")]
    Discovery(#[source] kube::Error),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
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
    pub retry: RetryPolicy,
    /// Restarts allowed per resource after expired continue tokens.
    pub max_list_restarts: u32,
}

impl Options {
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

/// One listed object, ready to be written back.
struct Item {
    namespace: Option<String>,
    name: String,
    /// The object as listed (with `apiVersion`/`kind`, which list items may omit), or why it
    /// cannot be written back.
    body: Result<Vec<u8>, String>,
}

#[derive(Default)]
struct Progress {
    listed: AtomicU64,
    total: AtomicU64,
    done: AtomicU64,
}

struct ListResult {
    restarts: u32,
    error: Option<String>,
}

enum Outcome {
    Rewritten,
    Conflicted,
    Gone,
    Failed(String),
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

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    remaining_item_count: Option<i64>,
}

/// Lists the resource page by page and hands each object out exactly once. On an expired
/// continue token it starts over and skips objects up to the last one handed out (the API
/// server lists in storage-key order).
async fn list_all(
    client: Client,
    target: Target,
    opts: Options,
    tx: mpsc::Sender<Item>,
    counters: Arc<Progress>,
) -> ListResult {
    let mut continue_token: Option<String> = None;
    let mut last_key: Option<String> = None;
    let mut restarted = false;
    let mut restarts = 0u32;
    let mut attempt = 0u32;
    let collection = Request::new(target.collection_path(None));
    let fail = |restarts, error: String| ListResult {
        restarts,
        error: Some(error),
    };
    loop {
        let params = ListParams {
            limit: Some(opts.page_size),
            continue_token: continue_token.clone(),
            ..Default::default()
        };
        let request = match collection.list(&params) {
            Ok(r) => r,
            Err(err) => return fail(restarts, format!("cannot build the list request: {err}")),
        };
        attempt += 1;
        let (code, header, body) = match send(&client, request).await {
            Ok(response) => response,
            Err(err) => match opts.retry.delay(attempt, None, jitter()) {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    continue;
                }
                None => return fail(restarts, format!("gave up after {attempt} attempts: {err}")),
            },
        };
        match classify_list(code, continue_token.is_some()) {
            ListVerdict::Page => {}
            ListVerdict::Restart => {
                restarts += 1;
                if restarts > opts.max_list_restarts {
                    return fail(
                        restarts,
                        format!("continue token expired {restarts} times; giving up"),
                    );
                }
                continue_token = None;
                restarted = true;
                attempt = 0;
                continue;
            }
            ListVerdict::Retry => {
                let status = parse_status(&body);
                match opts.retry.delay(
                    attempt,
                    retry_after(header.as_deref(), status.as_ref()),
                    jitter(),
                ) {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    None => {
                        let reason = failure_reason(code, status.as_ref());
                        return fail(
                            restarts,
                            format!("gave up after {attempt} attempts: {reason}"),
                        );
                    }
                }
            }
            ListVerdict::Failed => {
                return fail(restarts, failure_reason(code, parse_status(&body).as_ref()))
            }
        }
        attempt = 0;
        let page: ListPage = match serde_json::from_slice(&body) {
            Ok(page) => page,
            // The serde message could quote content; position and category only.
            Err(e) => {
                return fail(
                    restarts,
                    format!(
                        "list response is not a valid list ({:?} error at line {} column {})",
                        e.classify(),
                        e.line(),
                        e.column()
                    ),
                )
            }
        };
        drop(body);
        for mut object in page.items.unwrap_or_default() {
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let key = object_key(namespace.as_deref(), &name);
            if restarted && already_handed_out(&key, last_key.as_deref()) {
                continue;
            }
            let body = encode(&mut object, &target, &name);
            drop(object);
            last_key = Some(key);
            counters.listed.fetch_add(1, Ordering::Relaxed);
            if tx
                .send(Item {
                    namespace,
                    name,
                    body,
                })
                .await
                .is_err()
            {
                return fail(restarts, "the writers stopped early".into());
            }
        }
        let listed = counters.listed.load(Ordering::Relaxed);
        let remaining = page
            .metadata
            .remaining_item_count
            .map_or(0, |n| n.max(0) as u64);
        counters.total.store(listed + remaining, Ordering::Relaxed);
        match page.metadata.continue_token.filter(|t| !t.is_empty()) {
            Some(token) => continue_token = Some(token),
            None => {
                return ListResult {
                    restarts,
                    error: None,
                }
            }
        }
    }
}

/// Serializes a listed object for its PUT, unchanged except for the type fields list
/// items may lack. An object without name or resourceVersion is refused: writing it
/// without its resourceVersion could overwrite a newer version.
fn encode(object: &mut Value, target: &Target, name: &str) -> Result<Vec<u8>, String> {
    if name.is_empty() {
        return Err("listed object has no metadata.name".into());
    }
    let has_version = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty());
    if !has_version {
        return Err("listed object has no metadata.resourceVersion".into());
    }
    let Some(map) = object.as_object_mut() else {
        return Err("listed item is not an object".into());
    };
    map.entry("apiVersion")
        .or_insert_with(|| Value::String(target.api_version()));
    map.entry("kind")
        .or_insert_with(|| Value::String(target.kind.clone()));
    serde_json::to_vec(object)
        .map_err(|e| format!("cannot encode the object ({:?} error)", e.classify()))
}

/// Writes one object back, retrying what the policy says is transient.
async fn rewrite(
    client: &Client,
    target: &Target,
    item: &Item,
    body: &[u8],
    retry: &RetryPolicy,
) -> Outcome {
    let collection = Request::new(target.collection_path(item.namespace.as_deref()));
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let request = match collection.replace(&item.name, &PostParams::default(), body.to_vec()) {
            Ok(r) => r,
            Err(err) => return Outcome::Failed(format!("cannot build the request: {err}")),
        };
        let (code, header, response) = match send(client, request).await {
            Ok(r) => r,
            Err(err) => match retry.delay(attempt, None, jitter()) {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    continue;
                }
                None => return Outcome::Failed(format!("gave up after {attempt} attempts: {err}")),
            },
        };
        match classify_put(code) {
            PutVerdict::Rewritten => return Outcome::Rewritten,
            PutVerdict::Conflicted => return Outcome::Conflicted,
            PutVerdict::Gone => return Outcome::Gone,
            PutVerdict::Failed => {
                return Outcome::Failed(failure_reason(code, parse_status(&response).as_ref()))
            }
            PutVerdict::Retry => {
                let status = parse_status(&response);
                match retry.delay(
                    attempt,
                    retry_after(header.as_deref(), status.as_ref()),
                    jitter(),
                ) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => {
                        let reason = failure_reason(code, status.as_ref());
                        return Outcome::Failed(format!(
                            "gave up after {attempt} attempts: {reason}"
                        ));
                    }
                }
            }
        }
    }
}

/// Sends a request and reads the whole response: status, `Retry-After`, body.
async fn send(
    client: &Client,
    request: http::Request<Vec<u8>>,
) -> Result<(u16, Option<String>, Vec<u8>), kube::Error> {
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let code = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await?.to_bytes().into();
    Ok((code, retry_after, body))
}

fn parse_status(body: &[u8]) -> Option<Status> {
    serde_json::from_slice::<Status>(body)
        .ok()
        .filter(|s| s.code != 0 || !s.reason.is_empty())
}

/// Spreads retries of concurrent workers; no cryptographic quality needed.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}
