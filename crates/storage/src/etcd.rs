//! Reading etcd with bounded memory: paged range reads at one revision, the oldest
//! revision etcd still keeps, and a replay of the history since then.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions, WatchOptions,
};
use tokio::sync::mpsc;

/// Responses are kept near this size: large enough to amortise round trips, small enough
/// that a scan's memory does not grow with the store.
const TARGET_PAGE_BYTES: usize = 4 << 20;
/// First page size, before the average value size is known.
const FIRST_PAGE_LIMIT: i64 = 500;
/// Page size bounds.
const MIN_PAGE_LIMIT: i64 = 16;
const MAX_PAGE_LIMIT: i64 = 10_000;
/// gRPC message ceiling: a page of [`MIN_PAGE_LIMIT`] objects at etcd's 1.5 MiB request
/// limit still fits.
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Pages fetched ahead of the consumer.
const PAGES_AHEAD: usize = 2;
/// How long a history replay may go without a message before giving up.
const WATCH_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Failures talking to etcd or preparing to. Messages never contain key material or values.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A TLS file could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// Only one of `--cert` and `--key` was given.
    #[error("--cert and --key must be given together")]
    CertWithoutKey,
    /// TLS files were given for an `http://` endpoint.
    #[error("endpoint {0:?}: TLS files were given, so the endpoint must be https://")]
    TlsNeedsHttps(String),
    /// An `https://` endpoint without `--cacert`.
    #[error("endpoint {0:?} is https:// but no --cacert was given to verify etcd's certificate")]
    HttpsNeedsCa(String),
    /// An endpoint that is neither `http://` nor `https://`.
    #[error("endpoint {0:?} must start with http:// or https://")]
    BadEndpoint(String),
    /// No endpoint was given.
    #[error("no etcd endpoints given")]
    NoEndpoints,
    /// etcd could not be reached, or did not answer a first read in time.
    #[error("cannot reach etcd at {endpoints}: {source}")]
    Connect {
        /// The endpoints tried.
        endpoints: String,
        /// Why the connection failed.
        source: etcd_client::Error,
    },
    /// A request to etcd failed.
    #[error("etcd request failed: {0}")]
    Request(#[source] etcd_client::Error),
    /// The revision being read was compacted away.
    #[error("revision {0} has been compacted while reading; run again")]
    Compacted(i64),
    /// etcd canceled the watch that replays the history.
    #[error("the history replay was canceled by etcd: {0}")]
    WatchCanceled(String),
    /// The history replay ended before it reached this revision.
    #[error("the history replay ended before revision {0}")]
    WatchEnded(i64),
    /// The history replay received nothing for this long.
    #[error("the history replay made no progress for {0:?}")]
    WatchStalled(Duration),
}

/// How to reach etcd.
#[derive(Debug, Clone, Default)]
pub struct EtcdTarget {
    /// `https://host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    /// CA bundle that signed etcd's serving certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// Per-request timeout (also bounds connecting).
    pub timeout: Option<Duration>,
}

fn read(path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Connects (TLS via rustls with ring when any TLS file is given) and checks that etcd
/// answers, so a wrong address fails here with a clear message.
pub async fn connect(target: &EtcdTarget) -> Result<Client, EtcdError> {
    if target.endpoints.is_empty() {
        return Err(EtcdError::NoEndpoints);
    }
    let tls_files =
        target.ca_file.is_some() || target.cert_file.is_some() || target.key_file.is_some();
    for e in &target.endpoints {
        if e.starts_with("https://") {
            if target.ca_file.is_none() {
                return Err(EtcdError::HttpsNeedsCa(e.clone()));
            }
        } else if e.starts_with("http://") {
            if tls_files {
                return Err(EtcdError::TlsNeedsHttps(e.clone()));
            }
        } else {
            return Err(EtcdError::BadEndpoint(e.clone()));
        }
    }
    let timeout = target.timeout.unwrap_or(Duration::from_secs(10));
    let mut options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(Duration::from_secs(30), timeout);
    if tls_files {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &target.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        match (&target.cert_file, &target.key_file) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => return Err(EtcdError::CertWithoutKey),
        }
        options = options.with_tls(tls);
    }
    let endpoints = target.endpoints.join(",");
    let mut client = Client::connect(&target.endpoints, Some(options))
        .await
        .map_err(|source| EtcdError::Connect {
            endpoints: endpoints.clone(),
            source,
        })?;
    // A cheap read proves the endpoint is etcd and we may read it.
    tokio::time::timeout(
        timeout,
        client.get("/", Some(GetOptions::new().with_keys_only().with_limit(1))),
    )
    .await
    .map_err(|_| EtcdError::Connect {
        endpoints: endpoints.clone(),
        source: etcd_client::Error::InvalidArgs(format!("no answer within {timeout:?}")),
    })?
    .map_err(|source| EtcdError::Connect { endpoints, source })?;
    Ok(client)
}

fn is_compacted(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision has been compacted"))
}

fn request_error(err: etcd_client::Error, revision: i64) -> EtcdError {
    if is_compacted(&err) {
        EtcdError::Compacted(revision)
    } else {
        EtcdError::Request(err)
    }
}

/// One page of a range read.
struct Page {
    kvs: Vec<KeyValue>,
    revision: i64,
}

/// Reads `[start, end)` at `revision` (0: the current one) page by page, fetching ahead while
/// `visit` runs, and returns the revision read at. Memory stays at a few pages.
pub async fn scan_range<F>(
    client: &Client,
    start: Vec<u8>,
    end: Vec<u8>,
    revision: i64,
    mut visit: F,
) -> Result<i64, EtcdError>
where
    F: FnMut(&KeyValue),
{
    let kv = client
        .kv_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, mut rx) = mpsc::channel::<Result<Page, EtcdError>>(PAGES_AHEAD);
    let producer = tokio::spawn(async move {
        let mut kv = kv;
        let mut from = start;
        let mut revision = revision;
        let mut limit = FIRST_PAGE_LIMIT;
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(limit);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = match kv.get(from.clone(), Some(opts)).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(request_error(e, revision))).await;
                    return;
                }
            };
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let mut resp = resp;
            let kvs = resp.take_kvs();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
                let bytes: usize = kvs.iter().map(|kv| kv.key().len() + kv.value().len()).sum();
                let avg = (bytes / kvs.len()).max(1);
                limit = ((TARGET_PAGE_BYTES / avg) as i64).clamp(MIN_PAGE_LIMIT, MAX_PAGE_LIMIT);
            }
            let done = !more || kvs.is_empty();
            if tx.send(Ok(Page { kvs, revision })).await.is_err() || done {
                return;
            }
        }
    });
    let mut read_at = revision;
    while let Some(page) = rx.recv().await {
        let page = page?;
        read_at = page.revision;
        for kv in &page.kvs {
            visit(kv);
        }
    }
    producer.await.map_err(|e| {
        EtcdError::Request(etcd_client::Error::InvalidArgs(format!(
            "range reader failed: {e}"
        )))
    })?;
    Ok(read_at)
}

/// The distinct "directories" directly below `dir` (which ends with `/`): the segments `x`
/// of the keys `<dir>x/…`, in key order, read at `revision` (0: the current one; the revision
/// read at is returned). Keys directly in `dir` (no further `/`) are skipped. Keys only, one
/// key per request: each answer is the first key of the next directory, and the read jumps
/// past that whole directory, so the cost is the number of directories, not of objects.
pub async fn child_directories(
    client: &Client,
    dir: &[u8],
    revision: i64,
) -> Result<(Vec<Vec<u8>>, i64), EtcdError> {
    let mut kv = client.kv_client();
    let end = crate::resources::prefix_range_end(dir);
    let mut revision = revision;
    let mut from = dir.to_vec();
    let mut out = Vec::new();
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_keys_only()
            .with_limit(1);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp = kv
            .get(from.clone(), Some(opts))
            .await
            .map_err(|e| request_error(e, revision))?;
        if revision == 0 {
            revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        let Some(key) = resp.kvs().first().map(|kv| kv.key().to_vec()) else {
            return Ok((out, revision));
        };
        let rest = key.get(dir.len()..).unwrap_or_default();
        match rest.iter().position(|b| *b == b'/') {
            Some(i) => {
                let mut sub = dir.to_vec();
                sub.extend_from_slice(&rest[..=i]);
                if i > 0 {
                    out.push(rest[..i].to_vec());
                }
                from = crate::resources::prefix_range_end(&sub);
            }
            None => {
                from = key;
                from.push(0);
            }
        }
    }
}

/// The oldest revision etcd can still read, i.e. the last compaction revision (1 when etcd
/// was never compacted). Binary search with point reads of `probe_key`, at most ~log2(current)
/// tiny requests.
pub async fn oldest_readable_revision(
    client: &Client,
    probe_key: &[u8],
    current: i64,
) -> Result<i64, EtcdError> {
    let mut kv = client.kv_client();
    let mut readable = async |rev: i64| -> Result<bool, EtcdError> {
        match kv
            .get(
                probe_key.to_vec(),
                Some(
                    GetOptions::new()
                        .with_revision(rev)
                        .with_keys_only()
                        .with_limit(1),
                ),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_compacted(&e) => Ok(false),
            Err(e) => Err(EtcdError::Request(e)),
        }
    };
    if current <= 1 || readable(1).await? {
        return Ok(1);
    }
    // Invariant: `lo` is compacted, `hi` is readable.
    let (mut lo, mut hi) = (1, current);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if readable(mid).await? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// One change in the history replay.
#[derive(Debug, Clone, Copy)]
pub struct HistoryEvent<'a> {
    /// The object's etcd key.
    pub key: &'a [u8],
    /// The revision of the change.
    pub revision: i64,
    /// `None` for a delete.
    pub value: Option<&'a [u8]>,
}

/// Replays every change of the whole keyspace with revision in `(after, upto]`, in revision
/// order, streaming (etcd sends the history in batches). The whole keyspace is watched so the
/// replay has a definite end: revision `upto` was produced by some change, so an event at
/// `upto` always arrives, whichever keys it touched.
pub async fn replay_history<F>(
    client: &Client,
    after: i64,
    upto: i64,
    mut visit: F,
) -> Result<(), EtcdError>
where
    F: FnMut(HistoryEvent<'_>),
{
    if after >= upto {
        return Ok(());
    }
    let mut watch = client
        .watch_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut stream = watch
        .watch(
            vec![0u8],
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(after + 1),
            ),
        )
        .await
        .map_err(|e| request_error(e, after + 1))?;
    loop {
        let msg = tokio::time::timeout(WATCH_IDLE_TIMEOUT, stream.message())
            .await
            .map_err(|_| EtcdError::WatchStalled(WATCH_IDLE_TIMEOUT))?
            .map_err(|e| request_error(e, after + 1))?;
        let Some(resp) = msg else {
            return Err(EtcdError::WatchEnded(upto));
        };
        if resp.compact_revision() > 0 {
            return Err(EtcdError::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            return Err(EtcdError::WatchCanceled(resp.cancel_reason().to_owned()));
        }
        let mut reached = false;
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            if revision > upto {
                reached = true;
                continue;
            }
            reached |= revision == upto;
            // A delete event carries the key with version 0 and no value.
            let value = (kv.version() > 0).then(|| kv.value());
            visit(HistoryEvent {
                key: kv.key(),
                revision,
                value,
            });
        }
        if reached {
            let id = resp.watch_id();
            let _ = stream.cancel(id).await;
            return Ok(());
        }
    }
}
