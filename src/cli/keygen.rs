//! `eargate keygen`: print a fresh secretbox key, like `head -c 32 /dev/urandom | base64`,
//! or a ready-to-apply Secret holding one, with the `secretRef` that points at it.

use std::process::ExitCode;

use anyhow::bail;
use base64::Engine as _;
use eargate_policy::names::SECRETBOX_KEY_LEN;
use rand::TryRngCore as _;
use serde_json::json;

use super::Output;

/// The flags of `eargate keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also print a ready-to-apply Secret manifest with this name (for `secretRef`).
    #[arg(long)]
    pub secret_name: Option<String>,
    /// Namespace of the Secret manifest (the cluster's control-plane namespace).
    #[arg(long, requires = "secret_name")]
    pub namespace: Option<String>,
    /// Output format: the key (or the Secret as YAML) as text, or a JSON/YAML document.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Returns a new key: standard base64 (with padding) of 32 bytes from the OS RNG.
pub fn generate_key() -> String {
    let mut key = [0u8; SECRETBOX_KEY_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .expect("the OS random number generator failed");
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A DNS-1123 subdomain (what a Secret's name must be), or why not.
pub fn check_dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for label in name.split('.') {
        check_dns1123_label(label)?;
    }
    Ok(())
}

/// A DNS-1123 label (what a namespace's name must be), or why not.
pub fn check_dns1123_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 63 {
        return Err("each part between dots must be 1 to 63 characters".into());
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits, '-' and '.' are allowed".into());
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    Ok(())
}

/// Prints a fresh key, as a Secret manifest or a bare value; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.secret_name {
        if let Err(why) = check_dns1123_subdomain(name) {
            bail!(
                "--secret-name {name:?} is not a valid Secret name (a DNS-1123 subdomain): {why}"
            );
        }
    }
    if let Some(ns) = &args.namespace {
        if let Err(why) = check_dns1123_label(ns) {
            bail!("--namespace {ns:?} is not a valid namespace name (a DNS-1123 label): {why}");
        }
    }
    let key = generate_key();
    let Some(name) = args.secret_name else {
        match args.output {
            Output::Text => println!("{key}"),
            format => format.print_value(&json!({"key": key}))?,
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut metadata = json!({"name": name});
    if let Some(ns) = &args.namespace {
        metadata["namespace"] = ns.as_str().into();
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {"key": key},
    });
    match args.output {
        Output::Json => Output::Json.print_value(&secret)?,
        Output::Text | Output::Yaml => Output::Yaml.print_value(&secret)?,
    }
    // The snippet goes to stderr, so stdout stays a manifest for `kubectl apply -f -`.
    eprintln!(
        "# Reference it from the Cluster, under spec.encryptionConfiguration.secretbox.keys\n\
         # (keys[0] is the primary key; add a new key second, promote it once the phase is Active):\n\
         - name: {name}\n  secretRef:\n    name: {name}\n    key: key"
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_bytes_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), SECRETBOX_KEY_LEN);
    }

    #[test]
    fn secret_names_are_dns_1123_subdomains() {
        for good in ["k1", "encryption-key-2022-01", "a.b-c.d", &"a".repeat(63)] {
            assert!(check_dns1123_subdomain(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Key",
            "key_1",
            "-k",
            "k-",
            "a..b",
            "k 1",
            &"a".repeat(64),
        ] {
            assert!(check_dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }
}
