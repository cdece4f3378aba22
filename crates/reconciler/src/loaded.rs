//! Which EncryptionConfiguration a kube-apiserver has actually loaded, read from its own
//! metrics instead of inferred from pod readiness.
//!
//! kube-apiserver (1.34 and later) exports
//! `apiserver_encryption_config_controller_last_config_info{apiserver_id_hash, hash} 1`,
//! set when it loads `--encryption-provider-config` at start-up and on every automatic reload.
//! `hash` is derived from the file's exact bytes, so comparing it with the bytes the
//! reconciler wrote proves what a replica runs. Upstream gives the label's format no
//! stability guarantee, so it is pinned here per minor version, and only for the versions a
//! test has held against the real binary (`tests/k8s_loaded_config.rs`). For other versions
//! [`expected_hash`] says "unknown" and the caller must fall back to readiness gating and say
//! so.

use sha2::{Digest, Sha256};

/// The metric that carries the loaded config's hash.
pub const LAST_CONFIG_INFO: &str = "apiserver_encryption_config_controller_last_config_info";

/// The first kube-apiserver minor version that exports [`LAST_CONFIG_INFO`].
pub const FIRST_MINOR_WITH_HASH: u32 = 34;

/// The minor versions of kube-apiserver whose hash format has been checked against the real
/// binary: 1.37 (v1.37.2, `sha256:` and the hex SHA-256 of the file, as
/// `k8s.io/apiserver/pkg/server/options/encryptionconfig` computes it).
pub const PROVEN_MINORS: &[u32] = &[37];

/// The `hash` label a kube-apiserver of minor version `minor` reports after loading a config
/// file whose bytes are `config`; `None` when that version's format has not been proven.
pub fn expected_hash(minor: u32, config: &[u8]) -> Option<String> {
    PROVEN_MINORS
        .contains(&minor)
        .then(|| format!("sha256:{}", hex::encode(Sha256::digest(config))))
}

/// One series of [`LAST_CONFIG_INFO`]: a server identity (hashed by kube-apiserver) and the
/// hash of the config it last loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedConfig {
    /// The server's identity, hashed by kube-apiserver (`sha256:<hex>`).
    pub apiserver_id_hash: String,
    /// The loaded config's hash, in the format of the server's minor version.
    pub hash: String,
}

/// Every [`LAST_CONFIG_INFO`] series in a Prometheus text exposition (what `GET /metrics`
/// answers). Lines of other metrics, comments and malformed lines are skipped.
pub fn parse_loaded_configs(metrics: &str) -> Vec<LoadedConfig> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(LAST_CONFIG_INFO)?.strip_prefix('{')?;
            let (labels, _value) = rest.rsplit_once('}')?;
            let (mut id, mut hash) = (None, None);
            for (name, value) in label_pairs(labels) {
                match name {
                    "apiserver_id_hash" => id = Some(value),
                    "hash" => hash = Some(value),
                    _ => {}
                }
            }
            Some(LoadedConfig {
                apiserver_id_hash: id?,
                hash: hash?,
            })
        })
        .collect()
}

/// `name="value"` pairs of a label set, with the exposition format's escapes (`\\`, `\"`,
/// `\n`) undone.
fn label_pairs(labels: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = labels.trim_start_matches([',', ' ']);
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { break };
        out.push((name.trim(), value));
        rest = after[end + 1..].trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned_only_for_proven_minors() {
        let bytes = b"apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";
        let h = expected_hash(37, bytes).expect("1.37 is proven");
        assert_eq!(
            h,
            format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            "the hex SHA-256 of the exact bytes"
        );
        assert_ne!(expected_hash(37, b"other bytes"), Some(h));
        assert_eq!(expected_hash(33, bytes), None);
        assert_eq!(expected_hash(38, bytes), None);
    }

    #[test]
    fn series_are_read_from_the_exposition_format() {
        let text = "\
# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information about the last applied encryption configuration with hash as label, split by apiserver identity.
# TYPE apiserver_encryption_config_controller_last_config_info gauge
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"sha256:aa\",hash=\"sha256:bb\"} 1
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash=\"sha256:aa\",status=\"success\"} 2
apiserver_encryption_config_controller_last_config_info{hash=\"sha256:c\\\"d\",apiserver_id_hash=\"x\"} 1
apiserver_encryption_config_controller_last_config_info{hash=\"sha256:only\"} 1
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"broken
";
        assert_eq!(
            parse_loaded_configs(text),
            vec![
                LoadedConfig {
                    apiserver_id_hash: "sha256:aa".into(),
                    hash: "sha256:bb".into()
                },
                LoadedConfig {
                    apiserver_id_hash: "x".into(),
                    hash: "sha256:c\"d".into()
                },
            ]
        );
        assert!(parse_loaded_configs("").is_empty());
    }
}
