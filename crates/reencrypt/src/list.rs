//! Listing one resource page by page, each object handed out exactly once to the writers
//! through a bounded channel, so that at most about two pages exist at any time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kube::api::ListParams;
use kube::core::Request;
use kube::Client;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::api::{parse_status, send};
use crate::resolve::Target;
use crate::retry::{retry_after, Attempts};
use crate::run::Options;
use crate::verdict::{already_handed_out, classify_list, failure_reason, object_key, ListVerdict};

/// One listed object, ready to be written back.
pub(crate) struct Item {
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    /// The object as listed (with `apiVersion`/`kind`, which list items may omit), or why it
    /// cannot be written back.
    pub(crate) body: Result<Vec<u8>, String>,
}

/// Counters the lister and the writers share with the progress lines.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) listed: AtomicU64,
    pub(crate) total: AtomicU64,
    pub(crate) done: AtomicU64,
}

/// How listing one resource ended.
pub(crate) struct ListResult {
    pub(crate) restarts: u32,
    pub(crate) error: Option<String>,
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
pub(crate) async fn list_all(
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
    let mut attempts = Attempts::new(&opts.retry);
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
        attempts.start();
        let (code, header, body) = match send(&client, request).await {
            Ok(response) => response,
            Err(err) => match attempts.wait_or_give_up(None, || err.to_string()).await {
                Ok(()) => continue,
                Err(gave_up) => return fail(restarts, gave_up),
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
                attempts.reset();
                continue;
            }
            ListVerdict::Retry => {
                let status = parse_status(&body);
                let after = retry_after(header.as_deref(), status.as_ref());
                match attempts
                    .wait_or_give_up(after, || failure_reason(code, status.as_ref()))
                    .await
                {
                    Ok(()) => continue,
                    Err(gave_up) => return fail(restarts, gave_up),
                }
            }
            ListVerdict::Failed => {
                return fail(restarts, failure_reason(code, parse_status(&body).as_ref()))
            }
        }
        attempts.reset();
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
