//! The structured generator of the `fuzz_review` round: random AdmissionReview bodies shaped
//! like real Cluster reviews (and broken in the ways a decoder must survive), from a seed
//! so that a failing round replays. The property they are checked against is
//! `fuzz_support`'s, which the cargo-fuzz target shares; this generator is the test's own.

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
