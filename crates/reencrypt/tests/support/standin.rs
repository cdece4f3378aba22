//! An in-process stand-in of the Kubernetes API for `eargate reencrypt`: discovery,
//! paginated LIST with continue tokens (storage-key order, like etcd), PUT with
//! resourceVersion checks, and injectable faults (expired tokens, deletes and foreign
//! writes during the run, 429 with Retry-After, 500s, a permanent 422, forbidden lists,
//! failing discovery, added latency). Plain HTTP on a loopback port; shared by the tests
//! and the benchmark server (`examples/standin.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// A value that appears in every object's data and in the 422 message: it must never be
/// printed by the tool.
pub const SECRET_MARKER: &str = "hunter2-must-never-be-printed";

#[derive(Clone, Debug)]
pub struct ResDef {
    pub group: &'static str,
    /// Served versions, preferred first.
    pub versions: Vec<&'static str>,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: Vec<&'static str>,
}

impl ResDef {
    pub fn id(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[derive(Clone, Debug)]
pub struct Obj {
    pub namespace: Option<String>,
    pub name: String,
    pub rv: u64,
    pub data: Value,
}

/// `(resource id, object key)`, e.g. `("secrets", "ns-1/s-0003")`.
pub type ObjRef = (String, String);

pub fn obj_ref(resource: &str, key: &str) -> ObjRef {
    (resource.to_string(), key.to_string())
}

#[derive(Default, Debug)]
pub struct Faults {
    pub latency: Duration,
    /// The n-th (1-based) continued LIST of a resource gets 410 Gone, once.
    pub expire_continue: HashMap<String, usize>,
    /// Every continued LIST of these resources gets 410 Gone.
    pub expire_every_continue: HashSet<String>,
    /// Deleted right after the page listing them is served (PUT → 404).
    pub delete_after_listing: HashSet<ObjRef>,
    /// Written by "someone else" right after being listed (PUT → 409).
    pub bump_after_listing: HashSet<ObjRef>,
    /// This many PUTs answered 429 with `Retry-After: 1`.
    pub throttle: HashMap<ObjRef, u32>,
    /// This many PUTs answered 429 with `Retry-After` as an HTTP-date 2 s ahead (1 to 2 s
    /// of waiting once rounded down to the second, as the format requires).
    pub throttle_until_date: HashMap<ObjRef, u32>,
    /// This many PUTs answered 500.
    pub fail_500: HashMap<ObjRef, u32>,
    /// Every PUT answered 422 (message quoting the data, as validation messages may).
    pub invalid: HashSet<ObjRef>,
    /// LIST answered 403.
    pub forbid_list: HashSet<String>,
    /// The first LIST of these resources answered 503.
    pub list_503_once: HashSet<String>,
    /// Discovery of these groups answers 503.
    pub failing_groups: HashSet<String>,
}

#[derive(Default, Debug)]
pub struct World {
    pub defs: Vec<ResDef>,
    pub store: HashMap<String, BTreeMap<String, Obj>>,
    pub faults: Faults,
    pub next_rv: u64,
    /// Successful PUTs per object.
    pub writes: HashMap<ObjRef, u32>,
    /// Every PUT that was not a success: (when, object, status).
    pub rejected: Vec<(Instant, ObjRef, u16)>,
    /// PUTs of an object with a throttle fault, with when they arrived.
    pub attempts: HashMap<ObjRef, Vec<Instant>>,
    pub continue_requests: HashMap<String, usize>,
    pub list_requests: HashMap<String, usize>,
    pub expired_tokens: usize,
    pub puts: u64,
    /// Objects whose PUT body differed from the stored object (must stay empty).
    pub changed_bodies: Vec<ObjRef>,
    /// Record per-object attempt times (off in the benchmark to keep it lean).
    pub track_attempts: bool,
}

pub fn key_of(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

impl World {
    /// Standard resources: core secrets/configmaps (+ a subresource and read-only ones),
    /// apps deployments, and example.com widgets (cluster-scoped, two versions).
    pub fn standard() -> Self {
        let rw = vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        let defs = vec![
            ResDef {
                group: "",
                versions: vec!["v1"],
                plural: "secrets",
                kind: "Secret",
                namespaced: true,
                verbs: rw.clone(),
            },
            ResDef {
                group: "",
                versions: vec!["v1"],
                plural: "configmaps",
                kind: "ConfigMap",
                namespaced: true,
                verbs: rw.clone(),
            },
            ResDef {
                group: "",
                versions: vec!["v1"],
                plural: "secrets/status",
                kind: "Secret",
                namespaced: true,
                verbs: vec!["get", "update"],
            },
            ResDef {
                group: "",
                versions: vec!["v1"],
                plural: "componentstatuses",
                kind: "ComponentStatus",
                namespaced: false,
                verbs: vec!["get", "list"],
            },
            ResDef {
                group: "",
                versions: vec!["v1"],
                plural: "bindings",
                kind: "Binding",
                namespaced: true,
                verbs: vec!["create"],
            },
            ResDef {
                group: "apps",
                versions: vec!["v1"],
                plural: "deployments",
                kind: "Deployment",
                namespaced: true,
                verbs: rw.clone(),
            },
            ResDef {
                group: "apps",
                versions: vec!["v1"],
                plural: "deployments/scale",
                kind: "Scale",
                namespaced: true,
                verbs: vec!["get", "update"],
            },
            ResDef {
                group: "example.com",
                versions: vec!["v1", "v1beta1"],
                plural: "widgets",
                kind: "Widget",
                namespaced: false,
                verbs: rw.clone(),
            },
            ResDef {
                group: "metrics.example.io",
                versions: vec!["v1beta1"],
                plural: "usages",
                kind: "Usage",
                namespaced: false,
                verbs: vec!["get", "list"],
            },
        ];
        let mut world = World {
            defs,
            next_rv: 1000,
            track_attempts: true,
            ..Default::default()
        };
        for def in world.defs.clone() {
            if !def.plural.contains('/') {
                world.store.insert(def.id(), BTreeMap::new());
            }
        }
        world
    }

    pub fn add(&mut self, resource: &str, namespace: Option<&str>, name: &str) -> ObjRef {
        self.next_rv += 1;
        let obj = Obj {
            namespace: namespace.map(str::to_owned),
            name: name.to_string(),
            rv: self.next_rv,
            data: json!({ "password": SECRET_MARKER, "note": format!("object {name}") }),
        };
        let key = key_of(namespace, name);
        self.store
            .get_mut(resource)
            .expect("known resource")
            .insert(key.clone(), obj);
        obj_ref(resource, &key)
    }

    fn def_by_path(&self, group: &str, version: &str, plural: &str) -> Option<ResDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.plural == plural && d.versions.contains(&version))
            .cloned()
    }

    fn object_json(def: &ResDef, version: &str, obj: &Obj, with_type: bool) -> Value {
        let mut meta = json!({ "name": obj.name, "resourceVersion": obj.rv.to_string(), "uid": format!("uid-{}", obj.name) });
        if let Some(ns) = &obj.namespace {
            meta["namespace"] = json!(ns);
        }
        let mut v = json!({ "metadata": meta, "data": obj.data, "type": "Opaque" });
        if with_type {
            let api_version = if def.group.is_empty() {
                version.to_string()
            } else {
                format!("{}/{}", def.group, version)
            };
            v["apiVersion"] = json!(api_version);
            v["kind"] = json!(def.kind);
        }
        v
    }
}

pub struct StandIn {
    pub addr: SocketAddr,
    pub world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    pub async fn start(world: World) -> StandIn {
        let world = Arc::new(Mutex::new(world));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback(handle).with_state(world.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("stand-in server");
        });
        StandIn { addr, world, task }
    }

    /// Writes a kubeconfig pointing at this stand-in.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{}\nusers:\n- name: tester\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: tester\ncurrent-context: standin\n",
            self.addr
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message });
    (
        StatusCode::from_u16(code).expect("status code"),
        axum::Json(body),
    )
        .into_response()
}

async fn handle(
    State(world): State<Arc<Mutex<World>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let latency = world.lock().unwrap().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let query: HashMap<String, String> = uri.query().map(url_decode_pairs).unwrap_or_default();
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let mut w = world.lock().unwrap();
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["api"]) => axum::Json(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443" }]
        }))
        .into_response(),
        (Method::GET, ["api", version]) => resource_list(&w, "", version),
        (Method::GET, ["apis"]) => {
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for d in w.defs.iter().filter(|d| !d.group.is_empty()) {
                if !groups.iter().any(|(g, _)| *g == d.group) {
                    groups.push((d.group, d.versions.clone()));
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, versions)| {
                    let vs: Vec<Value> = versions.iter().map(|v| json!({ "groupVersion": format!("{g}/{v}"), "version": v })).collect();
                    json!({ "name": g, "versions": vs, "preferredVersion": vs[0] })
                })
                .collect();
            axum::Json(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })).into_response()
        }
        (Method::GET, ["apis", group, version]) => {
            if w.faults.failing_groups.contains(*group) {
                return status(503, "ServiceUnavailable", "the server is currently unable to handle the request");
            }
            resource_list(&w, group, version)
        }
        (Method::GET, ["api", version, plural]) => list(&mut w, "", version, plural, &query),
        (Method::GET, ["apis", group, version, plural]) => list(&mut w, group, version, plural, &query),
        (Method::PUT, ["api", version, "namespaces", ns, plural, name]) => put(&mut w, "", version, plural, Some(ns), name, &body),
        (Method::PUT, ["api", version, plural, name]) => put(&mut w, "", version, plural, None, name, &body),
        (Method::PUT, ["apis", group, version, "namespaces", ns, plural, name]) => {
            put(&mut w, group, version, plural, Some(ns), name, &body)
        }
        (Method::PUT, ["apis", group, version, plural, name]) => put(&mut w, group, version, plural, None, name, &body),
        _ => status(404, "NotFound", "the server could not find the requested resource"),
    }
}

fn url_decode_pairs(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.push(b'%'),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn resource_list(w: &World, group: &str, version: &str) -> Response {
    let resources: Vec<Value> = w
        .defs
        .iter()
        .filter(|d| d.group == group && d.versions.contains(&version))
        .map(|d| json!({ "name": d.plural, "singularName": "", "namespaced": d.namespaced, "kind": d.kind, "verbs": d.verbs }))
        .collect();
    if resources.is_empty() {
        return status(404, "NotFound", "no such group version");
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    axum::Json(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources })).into_response()
}

fn list(
    w: &mut World,
    group: &str,
    version: &str,
    plural: &str,
    query: &HashMap<String, String>,
) -> Response {
    let Some(def) = w.def_by_path(group, version, plural) else {
        return status(404, "NotFound", "no such resource");
    };
    let id = def.id();
    *w.list_requests.entry(id.clone()).or_default() += 1;
    if w.faults.forbid_list.contains(&id) {
        return status(403, "Forbidden", "cannot list this resource");
    }
    if w.faults.list_503_once.remove(&id) {
        return status(503, "ServiceUnavailable", "try again");
    }
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let after = query.get("continue").cloned().filter(|c| !c.is_empty());
    if after.is_some() {
        let n = {
            let c = w.continue_requests.entry(id.clone()).or_default();
            *c += 1;
            *c
        };
        if w.faults.expire_continue.get(&id) == Some(&n)
            || w.faults.expire_every_continue.contains(&id)
        {
            w.faults.expire_continue.remove(&id);
            w.expired_tokens += 1;
            return status(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result.",
            );
        }
    }
    let store = w.store.get(&id).expect("store");
    let range: Vec<(String, Obj)> = match &after {
        Some(token) => store
            .range::<String, _>((
                std::ops::Bound::Excluded(token.clone()),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, o)| (k.clone(), o.clone()))
            .take(limit.saturating_add(1))
            .collect(),
        None => store
            .iter()
            .map(|(k, o)| (k.clone(), o.clone()))
            .take(limit.saturating_add(1))
            .collect(),
    };
    let more = range.len() > limit;
    let page: Vec<(String, Obj)> = range.into_iter().take(limit).collect();
    let remaining = if more {
        let last = page.last().map(|(k, _)| k.clone()).unwrap_or_default();
        store
            .range::<String, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
            .count()
    } else {
        0
    };
    let items: Vec<Value> = page
        .iter()
        .map(|(_, o)| World::object_json(&def, version, o, false))
        .collect();
    let mut meta = json!({ "resourceVersion": w.next_rv.to_string() });
    if more {
        meta["continue"] = json!(page.last().map(|(k, _)| k.clone()).unwrap_or_default());
        meta["remainingItemCount"] = json!(remaining);
    }
    // Faults that happen "meanwhile": after the client has seen the page.
    for (key, _) in &page {
        let r = obj_ref(&id, key);
        if w.faults.delete_after_listing.contains(&r) {
            w.store.get_mut(&id).expect("store").remove(key);
        }
        if w.faults.bump_after_listing.contains(&r) {
            w.next_rv += 1;
            let rv = w.next_rv;
            if let Some(o) = w.store.get_mut(&id).expect("store").get_mut(key) {
                o.rv = rv;
            }
        }
    }
    let api_version = if def.group.is_empty() {
        version.to_string()
    } else {
        format!("{}/{}", def.group, version)
    };
    axum::Json(json!({ "kind": format!("{}List", def.kind), "apiVersion": api_version, "metadata": meta, "items": items }))
        .into_response()
}

fn put(
    w: &mut World,
    group: &str,
    version: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
    body: &[u8],
) -> Response {
    let Some(def) = w.def_by_path(group, version, plural) else {
        return status(404, "NotFound", "no such resource");
    };
    if !def.verbs.contains(&"update") {
        return status(405, "MethodNotAllowed", "update not allowed");
    }
    let id = def.id();
    let key = key_of(ns, name);
    let r = obj_ref(&id, &key);
    w.puts += 1;
    if w.track_attempts
        && (w.faults.throttle.contains_key(&r)
            || w.faults.throttle_until_date.contains_key(&r)
            || w.attempts.contains_key(&r))
    {
        w.attempts
            .entry(r.clone())
            .or_default()
            .push(Instant::now());
    }
    let reject = |w: &mut World, code: u16| w.rejected.push((Instant::now(), r.clone(), code));
    let Some(current) = w.store.get(&id).and_then(|s| s.get(&key)).cloned() else {
        reject(w, 404);
        return status(404, "NotFound", &format!("{plural} \"{name}\" not found"));
    };
    if w.faults.invalid.contains(&r) {
        reject(w, 422);
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
            "message": format!("{} \"{name}\" is invalid: data[password]: Invalid value: \"{SECRET_MARKER}\"", def.kind),
            "details": { "name": name, "kind": plural, "causes": [
                { "reason": "FieldValueInvalid", "message": format!("Invalid value: \"{SECRET_MARKER}\""), "field": "data[password]" }
            ]}
        });
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    }
    if let Some(n) = w.faults.throttle.get_mut(&r).filter(|n| **n > 0) {
        *n -= 1;
        reject(w, 429);
        let mut resp = status(
            429,
            "TooManyRequests",
            "too many requests, please try again later",
        );
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return resp;
    }
    if let Some(n) = w.faults.throttle_until_date.get_mut(&r).filter(|n| **n > 0) {
        *n -= 1;
        reject(w, 429);
        let mut resp = status(
            429,
            "TooManyRequests",
            "too many requests, please try again later",
        );
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
        resp.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&date).expect("an HTTP-date is a header value"),
        );
        return resp;
    }
    if let Some(n) = w.faults.fail_500.get_mut(&r).filter(|n| **n > 0) {
        *n -= 1;
        reject(w, 500);
        return status(500, "InternalError", "etcd hiccup");
    }
    let Ok(sent) = serde_json::from_slice::<Value>(body) else {
        reject(w, 400);
        return status(400, "BadRequest", "body is not JSON");
    };
    if sent["metadata"]["name"] != json!(name) || sent["metadata"]["namespace"].as_str() != ns {
        reject(w, 400);
        return status(
            400,
            "BadRequest",
            "name or namespace in body does not match the URL",
        );
    }
    let Some(rv) = sent["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        reject(w, 422);
        return status(
            422,
            "Invalid",
            "metadata.resourceVersion: must be specified for an update",
        );
    };
    if rv != current.rv {
        reject(w, 409);
        return status(409, "Conflict", &format!("Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified"));
    }
    let expected = World::object_json(&def, version, &current, true);
    if sent != expected {
        w.changed_bodies.push(r.clone());
        reject(w, 400);
        return status(400, "BadRequest", "stand-in: the object was changed");
    }
    w.next_rv += 1;
    let new_rv = w.next_rv;
    let stored = w
        .store
        .get_mut(&id)
        .expect("store")
        .get_mut(&key)
        .expect("object");
    stored.rv = new_rv;
    let reply = World::object_json(&def, version, stored, true);
    *w.writes.entry(r).or_default() += 1;
    axum::Json(reply).into_response()
}
