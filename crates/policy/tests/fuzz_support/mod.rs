//! The decoder, held to a reference: shared by the `fuzz_review` test (a time-bounded
//! random round in `make test`) and the cargo-fuzz target in `crates/policy/fuzz` (the long,
//! coverage-guided runs).
//!
//! The reference is simple and obviously right: serde_json parses the whole body into a
//! `Value` (the last copy of a duplicate key wins, as in Kubernetes' own decoder), the
//! request's fields are read from it, and each Cluster's facts come from
//! [`ClusterFacts::from_object`]. Then the same [`judge`] that `review()` uses decides. The
//! property: for any bytes, `review()` gives the same facts, verdict, patch and warnings as
//! the reference, or a clean [`ReviewError`] (HTTP 400). It never panics and never allows
//! what the reference denies.
#![allow(dead_code)]

use std::borrow::Cow;

use eargate_policy::facts::ClusterFacts;
use eargate_policy::review::{
    decode, judge, DecodedRequest, DecodedReview, GroupKind, PolicyConfig, ReviewError, Webhook,
};
use serde_json::Value;

/// Why the reference could not decode a body.
#[derive(Debug)]
pub enum RefError {
    /// Not an AdmissionReview the policy can read (the codec must refuse it too).
    Invalid(String),
    /// Beyond what serde_json's `Value` can hold: nesting deeper than its recursion limit
    /// (128), or a number outside f64's range. The scanner, which neither recurses nor
    /// converts the numbers it skips, may still judge it; only "no panic" is checked then.
    TooDeep,
}

fn invalid(why: &str) -> RefError {
    RefError::Invalid(why.to_owned())
}

/// A string field: absent or `null` is `None`; any other non-string is an error.
fn text(v: Option<&Value>, field: &str) -> Result<Option<Cow<'static, str>>, RefError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(Cow::Owned(s.clone()))),
        Some(_) => Err(invalid(field)),
    }
}

/// The reference decoder.
pub fn reference_decode(body: &[u8]) -> Result<DecodedReview<'static>, RefError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| {
        let e = e.to_string();
        if e.contains("recursion limit") || e.contains("number out of range") {
            RefError::TooDeep
        } else {
            invalid("not JSON")
        }
    })?;
    let root = root.as_object().ok_or_else(|| invalid("not an object"))?;
    let api_version = text(root.get("apiVersion"), "apiVersion")?;
    let kind = text(root.get("kind"), "kind")?;
    let request = match root.get("request") {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => Some(reference_request(r)?),
        Some(_) => return Err(invalid("request")),
    };
    Ok(DecodedReview {
        api_version,
        kind,
        request,
    })
}

fn reference_request(
    r: &serde_json::Map<String, Value>,
) -> Result<DecodedRequest<'static>, RefError> {
    let kind = match r.get("kind") {
        None | Some(Value::Null) => None,
        Some(Value::Object(k)) => Some(GroupKind {
            group: text(k.get("group"), "request.kind.group")?.unwrap_or_default(),
            kind: text(k.get("kind"), "request.kind.kind")?.unwrap_or_default(),
        }),
        Some(_) => return Err(invalid("request.kind")),
    };
    let username = match r.get("userInfo") {
        None | Some(Value::Null) => None,
        Some(Value::Object(u)) => Some(text(u.get("username"), "username")?.unwrap_or_default()),
        Some(_) => return Err(invalid("request.userInfo")),
    };
    let dry_run = match r.get("dryRun") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(invalid("request.dryRun")),
    };
    Ok(DecodedRequest {
        uid: text(r.get("uid"), "uid")?.unwrap_or_default(),
        kind,
        sub_resource: text(r.get("subResource"), "subResource")?,
        name: text(r.get("name"), "name")?,
        operation: text(r.get("operation"), "operation")?.unwrap_or_default(),
        username,
        object: reference_object(r.get("object"))?,
        old_object: reference_object(r.get("oldObject"))?,
        dry_run,
    })
}

fn reference_object(v: Option<&Value>) -> Result<Option<ClusterFacts>, RefError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(o @ Value::Object(_)) => {
            if let Some(name) = o.pointer("/metadata/name") {
                if !name.is_string() && !name.is_null() {
                    return Err(invalid("metadata.name"));
                }
            }
            Ok(Some(ClusterFacts::from_object(o)))
        }
        Some(_) => Err(invalid("object")),
    }
}

/// The outcome compared between the two decoders.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub new: Option<ClusterFacts>,
    pub old: Option<ClusterFacts>,
    pub allowed: bool,
    pub rule_ids: Vec<&'static str>,
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
    pub message: Option<String>,
    pub reply: Value,
}

fn outcome(
    webhook: Webhook,
    decoded: DecodedReview<'_>,
    config: &PolicyConfig,
) -> Result<Outcome, ReviewError> {
    let new = decoded.request.as_ref().and_then(|r| r.object.clone());
    let old = decoded.request.as_ref().and_then(|r| r.old_object.clone());
    let d = judge(webhook, decoded, config)?;
    Ok(Outcome {
        new,
        old,
        allowed: d.reviewed.summary.allowed,
        rule_ids: d.reviewed.summary.rule_ids.clone(),
        patch: d.patch,
        warnings: d.warnings,
        message: d.message,
        reply: serde_json::from_slice(&d.reviewed.body).expect("the reply is JSON"),
    })
}

/// What one input showed.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Both decoders agreed on everything.
    Same,
    /// `review()` refused the body with a 400; the reference did not, or refused too.
    Refused,
    /// Too deep for the reference: only "no panic" was checked.
    Unjudged,
    /// Not JSON for the reference, judged by `review()` on the fields it read (malformed
    /// only inside a skipped container).
    Lenient,
}

/// The body, shortened for a message; the whole of it is saved under
/// `$TMPDIR/eargate-fuzz-failures/` so that it can be replayed and added to the corpus.
fn shown(body: &[u8]) -> String {
    let dir = std::env::temp_dir().join("eargate-fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let name = format!("{:016x}.json", fnv(body));
    let _ = std::fs::write(dir.join(&name), body);
    let text = String::from_utf8_lossy(body);
    let short: String = text.chars().take(600).collect();
    format!(
        "{short}… ({} bytes, saved as target/fuzz-failures/{name})",
        body.len()
    )
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The property, for one body and both webhooks. Panics on a disagreement.
pub fn check(body: &[u8]) -> Verdict {
    let config = PolicyConfig::default();
    let mut verdict = Verdict::Same;
    for webhook in [Webhook::Mutate, Webhook::Validate] {
        let ours = decode(body).and_then(|d| outcome(webhook, d, &config));
        let reference = reference_decode(body);
        match (ours, reference) {
            (_, Err(RefError::TooDeep)) => verdict = Verdict::Unjudged,
            (Err(_), _) => {
                if verdict == Verdict::Same {
                    verdict = Verdict::Refused;
                }
            }
            // Not JSON for serde_json, yet judged: the scanner checks everything it reads
            // against the whole grammar, but crosses the containers it skips by bracket
            // balance and string syntax only. kube-apiserver never sends such a body (it
            // serializes the object it decoded). Counted, and shown by the round.
            (Ok(_), Err(RefError::Invalid(_))) => verdict = Verdict::Lenient,
            (Ok(ours), Ok(reference)) => {
                match outcome(webhook, reference, &config) {
                    Err(e) => panic!(
                        "the reference's judgement failed ({e}) where review() answered\nbody: {}",
                        shown(body)
                    ),
                    Ok(theirs) => {
                        assert!(
                        !ours.allowed || theirs.allowed,
                        "review() ALLOWED what the reference denies ({:?}, {webhook:?})\nbody: {}",
                        theirs.rule_ids,
                        shown(body)
                    );
                        if ours != theirs {
                            let mut diff = String::new();
                            if ours.new != theirs.new {
                                diff += &format!(
                                    "\n new facts: {:?}\n      vs:  {:?}",
                                    ours.new, theirs.new
                                );
                            }
                            if ours.old != theirs.old {
                                diff += &format!(
                                    "\n old facts: {:?}\n      vs:  {:?}",
                                    ours.old, theirs.old
                                );
                            }
                            if ours.reply != theirs.reply {
                                diff +=
                                    &format!("\n reply: {}\n    vs: {}", ours.reply, theirs.reply);
                            }
                            panic!("review() and the reference disagree ({webhook:?}):{diff}\nbody: {}", shown(body));
                        }
                    }
                }
            }
        }
    }
    verdict
}

// ------------------------------------------------------------------- the generator

/// A small deterministic RNG (xorshift), so a failing round is replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const WS: &[&str] = &["", " ", "\n", "\t", "\r\n", "  \n\t "];

fn ws(rng: &mut Rng) -> &'static str {
    if rng.chance(80) {
        ""
    } else {
        rng.pick::<&str>(WS)
    }
}

/// A JSON string literal for `s`, escaped in one of several equivalent ways.
fn string(rng: &mut Rng, s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let escape = rng.chance(if c.is_ascii_alphanumeric() { 3 } else { 30 });
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if escape => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04X}", u));
                }
            }
            '/' if rng.chance(50) => out.push_str("\\/"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An arbitrary JSON value (for the fields eargate skips and for wrong types).
fn junk(rng: &mut Rng, depth: usize) -> String {
    let choice = if depth > 6 {
        rng.below(11)
    } else {
        rng.below(20)
    };
    match choice {
        0 | 1 => "null".into(),
        2 | 3 => rng.pick(&["true", "false"]).to_string(),
        4..=6 => {
            if rng.chance(5) {
                // Beyond f64: serde_json's Value refuses it, Kubernetes' decoder too.
                "1e400".to_owned()
            } else {
                rng.pick(&[
                    "0",
                    "-1",
                    "123456789012345678901234567890",
                    "-0.0e-5",
                    "3.14",
                ])
                .to_string()
            }
        }
        7..=9 => {
            let s = rng.pick(&[
                "",
                "Active",
                "secrets",
                "x\u{e9}\u{1F600}",
                "a\"b\\c",
                "\u{7f}\u{0}",
            ]);
            string(rng, s)
        }
        10 => {
            let long = "s".repeat(rng.below(5000));
            string(rng, &long)
        }
        11 => {
            // Deep nesting: arrays or objects, now and then past serde_json's limit.
            let n = *rng.pick(&[3usize, 40, 127, 130, 600]);
            if rng.chance(50) {
                format!("{}{}", "[".repeat(n), "]".repeat(n))
            } else {
                format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))
            }
        }
        12..=15 => {
            let n = rng.below(4);
            let items: Vec<String> = (0..n).map(|_| junk(rng, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let n = rng.below(4);
            let fields: Vec<(String, String)> = (0..n)
                .map(|_| {
                    let k = rng
                        .pick(&["a", "name", "phase", "keys", "\u{e9}"])
                        .to_string();
                    (k, junk(rng, depth + 1))
                })
                .collect();
            object(fields, rng)
        }
    }
}

/// An object from (key, value text) pairs, keys escaped at random, sometimes with a
/// duplicate of one field.
fn object(mut fields: Vec<(String, String)>, rng: &mut Rng) -> String {
    if !fields.is_empty() && rng.chance(2) {
        let i = rng.below(fields.len());
        let dup = (fields[i].0.clone(), junk(rng, 4));
        let at = rng.below(fields.len() + 1);
        fields.insert(at, dup);
    }
    let parts: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| {
            let key = string(rng, &k);
            format!("{}{key}{}:{}{v}{}", ws(rng), ws(rng), ws(rng), ws(rng))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// `value` most of the time, a value of another type sometimes.
fn or_junk(rng: &mut Rng, value: String) -> String {
    if rng.chance(3) {
        junk(rng, 3)
    } else {
        value
    }
}

fn maybe(rng: &mut Rng, fields: &mut Vec<(String, String)>, key: &str, value: String) {
    if rng.chance(85) {
        let v = or_junk(rng, value);
        fields.push((key.to_owned(), v));
    }
}

const KEY_32: &str = "3q2+7wF9aZr8Xk1cQ4mV0pLsT6uYbN2eH5gJ8dK1fWo=";
const KEY_16: &str = "c2l4dGVlbi1ieXRlcy1rZQ==";

fn key(rng: &mut Rng) -> String {
    let name = rng
        .pick(&["k1", "k2", "k3", "bad:name", "", "K1"])
        .to_string();
    let mut fields = Vec::new();
    let v = string(rng, &name);
    maybe(rng, &mut fields, "name", v);
    if rng.chance(50) {
        let v = rng.pick(&[KEY_32, KEY_16, "not base64", ""]).to_string();
        let v = string(rng, &v);
        maybe(rng, &mut fields, "value", v);
    } else {
        let inner = vec![
            ("name".to_owned(), string(rng, &name)),
            ("key".to_owned(), string(rng, "key")),
        ];
        let sr = object(inner, rng);
        maybe(rng, &mut fields, "secretRef", sr);
    }
    object(fields, rng)
}

fn cluster(rng: &mut Rng) -> String {
    let mut config = Vec::new();
    let enabled = rng.pick(&["true", "false"]).to_string();
    maybe(rng, &mut config, "enabled", enabled);
    let resources: Vec<String> = (0..rng.below(4))
        .map(|_| {
            let r = rng
                .pick(&[
                    "secrets",
                    "configmaps",
                    " Secrets",
                    "*.",
                    "*.*",
                    "*",
                    "secrets",
                ])
                .to_string();
            string(rng, &r)
        })
        .collect();
    maybe(
        rng,
        &mut config,
        "resources",
        format!("[{}]", resources.join(",")),
    );
    let keys: Vec<String> = (0..rng.below(4)).map(|_| key(rng)).collect();
    let keys = object(
        vec![("keys".to_owned(), format!("[{}]", keys.join(",")))],
        rng,
    );
    maybe(rng, &mut config, "secretbox", keys);

    let mut spec = Vec::new();
    let gate = rng.pick(&["true", "false", "\"true\""]).to_string();
    let features = object(
        vec![
            ("encryptionAtRest".to_owned(), gate),
            ("other".to_owned(), junk(rng, 2)),
        ],
        rng,
    );
    maybe(rng, &mut spec, "features", features);
    let cfg = object(config, rng);
    maybe(rng, &mut spec, "encryptionConfiguration", cfg);
    spec.push(("humanReadableName".to_owned(), junk(rng, 1)));

    let mut status = Vec::new();
    let phase = rng
        .pick(&["Active", "Pending", "EncryptionNeeded", "Failed", "Weird"])
        .to_string();
    let active = rng
        .pick(&["secretbox/k1", "secretbox/k2", "identity", ""])
        .to_string();
    let enc = object(
        vec![
            ("phase".to_owned(), string(rng, &phase)),
            ("activeKey".to_owned(), string(rng, &active)),
            ("encryptedResources".to_owned(), "[\"secrets\"]".to_owned()),
        ],
        rng,
    );
    maybe(rng, &mut status, "encryption", enc);
    let cond = object(vec![("status".to_owned(), string(rng, "True"))], rng);
    let conds = object(vec![("EncryptionInitialized".to_owned(), cond)], rng);
    maybe(rng, &mut status, "conditions", conds);

    let mut obj = Vec::new();
    let name = rng.pick(&["c1", "zt7q9h2mxk", ""]).to_string();
    let meta = object(
        vec![
            ("name".to_owned(), string(rng, &name)),
            ("labels".to_owned(), junk(rng, 2)),
        ],
        rng,
    );
    maybe(rng, &mut obj, "metadata", meta);
    let spec = object(spec, rng);
    maybe(rng, &mut obj, "spec", spec);
    let status = object(status, rng);
    maybe(rng, &mut obj, "status", status);
    obj.push(("apiVersion".to_owned(), string(rng, "kubermatic.k8c.io/v1")));
    object(obj, rng)
}

/// A Cluster-shaped AdmissionReview with escapes in keys and values (surrogate pairs
/// included), unicode, duplicate keys, deep nesting, long strings, huge numbers and every
/// kind of whitespace.
pub fn review_body(rng: &mut Rng) -> Vec<u8> {
    let mut req = Vec::new();
    let uid = "705ab4f5-6393-11e8-b7cc-42010a800002".to_string();
    let v = string(rng, &uid);
    maybe(rng, &mut req, "uid", v);
    let gk = if rng.chance(90) { "Cluster" } else { "Secret" };
    let kind = object(
        vec![
            ("group".to_owned(), string(rng, "kubermatic.k8c.io")),
            ("kind".to_owned(), string(rng, gk)),
        ],
        rng,
    );
    maybe(rng, &mut req, "kind", kind);
    let op = rng
        .pick(&["CREATE", "UPDATE", "DELETE", "CONNECT", "update"])
        .to_string();
    let v = string(rng, &op);
    maybe(rng, &mut req, "operation", v);
    if rng.chance(20) {
        let sub = rng.pick(&["status", "", "scale"]).to_string();
        req.push(("subResource".to_owned(), string(rng, &sub)));
    }
    let user = rng
        .pick(&[
            "jane",
            "system:serviceaccount:eargate-system:eargate-reconciler",
        ])
        .to_string();
    let ui = object(vec![("username".to_owned(), string(rng, &user))], rng);
    maybe(rng, &mut req, "userInfo", ui);
    let new = cluster(rng);
    maybe(rng, &mut req, "object", new);
    if rng.chance(70) {
        let old = cluster(rng);
        req.push(("oldObject".to_owned(), old));
    }
    if rng.chance(30) {
        let d = rng.pick(&["true", "false"]).to_string();
        req.push(("dryRun".to_owned(), d));
    }
    let version = rng
        .pick(&[
            "admission.k8s.io/v1",
            "admission.k8s.io/v1",
            "admission.k8s.io/v1beta1",
            "v2",
        ])
        .to_string();
    let mut top = Vec::new();
    top.push(("apiVersion".to_owned(), string(rng, &version)));
    top.push(("kind".to_owned(), string(rng, "AdmissionReview")));
    let r = object(req, rng);
    maybe(rng, &mut top, "request", r);
    let mut body = format!("{}{}{}", ws(rng), object(top, rng), ws(rng)).into_bytes();
    // Now and then, damage a byte.
    if rng.chance(5) && !body.is_empty() {
        let at = rng.below(body.len());
        body[at] = (rng.next() & 0xff) as u8;
    }
    body
}
