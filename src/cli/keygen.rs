//! `eargate keygen`: print a fresh secretbox key, like `head -c 32 /dev/urandom | base64`.

use std::process::ExitCode;

use base64::Engine as _;
use eargate_policy::names::SECRETBOX_KEY_LEN;
use rand::TryRngCore as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also print a ready-to-apply Secret manifest with this name (for `secretRef`).
    #[arg(long)]
    pub secret_name: Option<String>,
    /// Namespace of the Secret manifest (the cluster's control-plane namespace).
    #[arg(long, requires = "secret_name")]
    pub namespace: Option<String>,
}

/// Returns a new key: standard base64 (with padding) of 32 bytes from the OS RNG.
pub fn generate_key() -> String {
    let mut key = [0u8; SECRETBOX_KEY_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .expect("the OS random number generator failed");
    base64::engine::general_purpose::STANDARD.encode(key)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = generate_key();
    match args.secret_name {
        None => println!("{key}"),
        Some(name) => {
            let namespace = args
                .namespace
                .map(|ns| format!("\n  namespace: {ns}"))
                .unwrap_or_default();
            println!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}{namespace}\ntype: Opaque\nstringData:\n  key: {key}"
            );
        }
    }
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
}
