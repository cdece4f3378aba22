//! The serving certificate: loading a PEM pair, handing it to rustls for every new
//! handshake, and picking up a rotated pair from disk without a restart.
//!
//! A mounted Secret is updated by the kubelet swapping a `..data` symlink, so file-change
//! events are unreliable; instead the pair is re-read every few seconds and compared with
//! what was loaded last. A new pair is installed only when it parses and its key matches
//! its certificate; otherwise the old pair stays in use and the refusal is logged and
//! counted. Errors name files, never their contents.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::{Metrics, ReloadOutcome};

/// Why a certificate/key pair cannot be used. Never carries file contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text.
        reason: String,
    },
    /// The certificate file holds no PEM certificate.
    #[error("no PEM certificate in {0}")]
    NoCertificate(PathBuf),
    /// The first certificate does not parse as X.509.
    #[error("the first certificate in {0} is not a valid X.509 certificate")]
    BadCertificate(PathBuf),
    /// The key file holds no private key rustls can read.
    #[error("no readable PEM private key (PKCS#8, PKCS#1 or SEC1) in {0}")]
    NoKey(PathBuf),
    /// The key is of a type rustls cannot sign with.
    #[error("the private key in {0} is of a type rustls cannot sign with")]
    UnsupportedKey(PathBuf),
    /// The key does not match the certificate.
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The ring provider, the only one eargate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A checked certificate/key pair ready for rustls.
#[derive(Debug, Clone)]
pub struct LoadedPair {
    /// The certificate chain and signing key, as rustls takes them.
    pub certified: Arc<CertifiedKey>,
    /// `notAfter` of the serving (first) certificate, seconds since the Unix epoch.
    pub not_after: i64,
    /// Serial number of the serving certificate, hex, for logs.
    pub serial: String,
}

/// Parses and checks a PEM pair. `cert_path`/`key_path` only name the files in errors.
pub fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedPair, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(cert_path.to_owned()))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(cert_path.to_owned()));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|_| TlsError::BadCertificate(cert_path.to_owned()))?;
    let not_after = parsed.validity().not_after.timestamp();
    let serial = parsed.raw_serial_as_string();

    // The parser's own error could quote the input; report only which file failed.
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey(key_path.to_owned()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| TlsError::UnsupportedKey(key_path.to_owned()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // The key type cannot tell its public key: rustls accepts such pairs as well.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
    }
    Ok(LoadedPair {
        certified: Arc::new(certified),
        not_after,
        serial,
    })
}

/// Reads and checks the pair from disk (following symlinks, as a mounted Secret needs).
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedPair, TlsError> {
    let (cert, key) = read_files(cert_path, key_path)?;
    parse_pair(&cert, &key, cert_path, key_path, provider)
}

/// Reads both files (following symlinks).
pub fn read_files(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|err| TlsError::Read {
            path: path.to_owned(),
            reason: err.kind().to_string(),
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

/// Hands rustls the current pair on every handshake; swapped atomically on reload.
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertStore {
    /// A store holding `pair`.
    pub fn new(pair: &LoadedPair) -> Self {
        CertStore {
            current: RwLock::new(Some(pair.certified.clone())),
        }
    }

    /// Installs a new pair; handshakes from now on use it.
    pub fn install(&self, pair: &LoadedPair) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(pair.certified.clone());
    }

    /// True when a pair is loaded (part of readiness).
    pub fn has_cert(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// DER of the serving certificate in use.
    pub fn current_leaf(&self) -> Option<CertificateDer<'static>> {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().and_then(|c| c.cert.first().cloned())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// rustls settings for the admission port: TLS 1.3 and 1.2 only, ALPN h2 then
/// http/1.1, no client certificates, the certificate from `store`.
pub fn server_config(
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What one poll of the files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    Unchanged,
    Reloaded,
    Refused(TlsError),
}

/// Re-reads the pair and installs it when it changed and is valid.
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    store: Arc<CertStore>,
    metrics: Arc<Metrics>,
    provider: Arc<CryptoProvider>,
    /// Contents last looked at (installed or refused), so a refused pair is reported once.
    seen: Option<(Vec<u8>, Vec<u8>)>,
    last_read_error: Option<TlsError>,
}

impl CertReloader {
    /// `installed` holds the file contents the store's pair was made from, so a change
    /// between loading and the first poll is not missed.
    pub fn new(
        cert_path: PathBuf,
        key_path: PathBuf,
        store: Arc<CertStore>,
        metrics: Arc<Metrics>,
        provider: Arc<CryptoProvider>,
        installed: (Vec<u8>, Vec<u8>),
    ) -> Self {
        let seen = Some(installed);
        CertReloader {
            cert_path,
            key_path,
            store,
            metrics,
            provider,
            seen,
            last_read_error: None,
        }
    }

    /// Looks at the files once.
    pub fn poll(&mut self) -> PollOutcome {
        let (cert, key) = match read_files(&self.cert_path, &self.key_path) {
            Ok(pair) => {
                self.last_read_error = None;
                pair
            }
            Err(err) => {
                // During a symlink swap a file can be briefly missing; report a lasting
                // problem once, not every poll.
                if self.last_read_error.as_ref() != Some(&err) {
                    tracing::warn!(error = %err, "cannot re-read the serving certificate; keeping the one in use");
                    self.last_read_error = Some(err.clone());
                }
                return PollOutcome::Unchanged;
            }
        };
        if self
            .seen
            .as_ref()
            .is_some_and(|(c, k)| *c == cert && *k == key)
        {
            return PollOutcome::Unchanged;
        }
        let outcome = match parse_pair(&cert, &key, &self.cert_path, &self.key_path, &self.provider)
        {
            Ok(pair) => {
                self.store.install(&pair);
                self.metrics.record_reload(ReloadOutcome::Success);
                self.metrics.set_cert_expiry(pair.not_after);
                tracing::info!(
                    cert = %self.cert_path.display(),
                    serial = %pair.serial,
                    not_after = pair.not_after,
                    "serving certificate reloaded"
                );
                PollOutcome::Reloaded
            }
            Err(err) => {
                self.metrics.record_reload(ReloadOutcome::Failure);
                tracing::error!(error = %err, "refusing the new certificate pair; keeping the one in use");
                PollOutcome::Refused(err)
            }
        };
        self.seen = Some((cert, key));
        outcome
    }

    /// Polls every `interval` until the task is dropped.
    pub async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            // File reads are small but blocking; keep them off the async workers.
            match tokio::task::spawn_blocking(move || {
                self.poll();
                self
            })
            .await
            {
                Ok(back) => self = back,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev_certs::{generate, Validity};

    fn certs() -> crate::dev_certs::DevCerts {
        generate(&["localhost".into()], &[], Validity::default()).unwrap()
    }

    #[test]
    fn reloader_installs_good_pairs_and_refuses_broken_ones_once() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (a, b) = (certs(), certs());
        std::fs::write(&cert, &a.cert_pem).unwrap();
        std::fs::write(&key, &a.key_pem).unwrap();
        let provider = provider();
        let installed = read_files(&cert, &key).unwrap();
        let pair = parse_pair(&installed.0, &installed.1, &cert, &key, &provider).unwrap();
        let store = Arc::new(CertStore::new(&pair));
        let metrics = Arc::new(Metrics::new());
        let mut reloader = CertReloader::new(
            cert.clone(),
            key.clone(),
            store.clone(),
            metrics.clone(),
            provider.clone(),
            installed,
        );
        let leaf = |p: &crate::dev_certs::DevCerts| {
            CertificateDer::from_pem_slice(p.cert_pem.as_bytes()).unwrap()
        };
        assert_eq!(reloader.poll(), PollOutcome::Unchanged);

        // B's certificate with A's key: refused, A stays, reported once.
        std::fs::write(&cert, &b.cert_pem).unwrap();
        let refused = reloader.poll();
        assert!(
            matches!(refused, PollOutcome::Refused(TlsError::KeyMismatch { .. })),
            "{refused:?}"
        );
        assert_eq!(reloader.poll(), PollOutcome::Unchanged);
        assert_eq!(store.current_leaf().unwrap(), leaf(&a));

        // A missing file (mid-swap) keeps the pair in use.
        std::fs::remove_file(&key).unwrap();
        assert_eq!(reloader.poll(), PollOutcome::Unchanged);

        std::fs::write(&key, &b.key_pem).unwrap();
        assert_eq!(reloader.poll(), PollOutcome::Reloaded);
        assert_eq!(store.current_leaf().unwrap(), leaf(&b));

        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            reloader.poll(),
            PollOutcome::Refused(TlsError::NoKey(_))
        ));
        assert_eq!(store.current_leaf().unwrap(), leaf(&b));

        let text = metrics.encode();
        assert!(
            text.contains(r#"eargate_tls_certificate_reloads_total{outcome="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eargate_tls_certificate_reloads_total{outcome="failure"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn errors_name_files_never_contents() {
        let a = certs();
        let p = provider();
        let err = parse_pair(
            a.key_pem.as_bytes(),
            a.cert_pem.as_bytes(),
            "c.pem".as_ref(),
            "k.pem".as_ref(),
            &p,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("c.pem"), "{text}");
        let body: String = a
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!text.contains(&body[..12]));
    }

    #[test]
    fn server_config_offers_h2_then_http1_over_tls12_and_13() {
        let a = certs();
        let p = provider();
        let pair = parse_pair(
            a.cert_pem.as_bytes(),
            a.key_pem.as_bytes(),
            "c".as_ref(),
            "k".as_ref(),
            &p,
        )
        .unwrap();
        let config = server_config(Arc::new(CertStore::new(&pair)), p).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
