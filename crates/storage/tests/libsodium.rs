//! The seal format cross-checked with libsodium (PyNaCl): vectors sealed by libsodium open
//! in eargate, and values sealed by eargate open in libsodium.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::PathBuf;
use std::process::{Command, Stdio};

use eargate_storage::SecretboxKey;
use eargate_testkit::process::output_with_stdin;
use eargate_testkit::tools::{on_path, require_tool, workspace_root};

/// `$EARGATE_PYTHON` (set by `make test`), else the project venv, else `python3` — if it
/// can import nacl.
fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("EARGATE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace_root().join(".venv/bin/python")])
        .chain(on_path("python3"))
        .collect();
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import nacl.secret"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn script(python: &PathBuf, mode: &str, input: Option<&str>) -> serde_json::Value {
    let out = output_with_stdin(
        Command::new(python)
            .arg(workspace_root().join("scripts/secretbox_vectors.py"))
            .arg(mode)
            .stderr(Stdio::inherit()),
        input.unwrap_or("").as_bytes(),
    )
    .expect("run the libsodium script");
    assert!(out.status.success(), "secretbox_vectors.py {mode} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn libsodium_and_eargate_agree_both_ways() {
    let Some(python) = python() else {
        require_tool("python with PyNaCl (EARGATE_PYTHON or .venv)", false);
        return;
    };
    // libsodium seals, eargate opens — and eargate's seal with the same nonce is identical.
    let vectors = script(&python, "make", None);
    let vectors = vectors.as_array().unwrap();
    assert!(vectors.len() >= 10);
    let mut ours = Vec::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let key = SecretboxKey::from_base64(name, v["key_b64"].as_str().unwrap()).unwrap();
        let value = hex(v["value_hex"].as_str().unwrap());
        let plaintext = hex(v["plaintext_hex"].as_str().unwrap());
        assert_eq!(key.open(&value).unwrap(), plaintext, "vector {name}");
        let nonce: [u8; 24] = hex(v["nonce_hex"].as_str().unwrap()).try_into().unwrap();
        assert_eq!(
            key.seal_with_nonce(&plaintext, &nonce),
            value,
            "vector {name}"
        );
        // eargate seals with a fresh nonce; libsodium must open it.
        ours.push((
            serde_json::json!({"name": name, "key_b64": v["key_b64"], "value_hex": to_hex(&key.seal(&plaintext))}),
            plaintext,
        ));
    }
    // A value sealed with the wrong key must not open in libsodium either.
    let wrong = SecretboxKey::new("key-0", &[5; 32]).seal(b"k8s\0x");
    let mut input: Vec<serde_json::Value> = ours.iter().map(|(j, _)| j.clone()).collect();
    input.push(serde_json::json!({"name": "key-0", "key_b64": vectors[0]["key_b64"], "value_hex": to_hex(&wrong)}));
    let opened = script(
        &python,
        "open",
        Some(&serde_json::Value::Array(input).to_string()),
    );
    let opened = opened.as_array().unwrap();
    for ((_, plaintext), o) in ours.iter().zip(opened) {
        assert_eq!(
            o["plaintext_hex"].as_str().map(hex).as_deref(),
            Some(plaintext.as_slice())
        );
    }
    assert!(opened.last().unwrap()["plaintext_hex"].is_null());
}
