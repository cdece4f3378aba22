//! Certificates for the test servers and identities, from rcgen.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// A PEM certificate and its PEM (PKCS#8) private key.
#[derive(Clone)]
pub struct CertPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl CertPair {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write a test certificate");
        std::fs::write(&key, &self.key_pem).expect("write a test key");
        (cert, key)
    }
}

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA's private key, PEM (PKCS#8): what Kubermatic's `ca` Secret carries next to the
    /// certificate, so a test can check it is never mounted or shown.
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> Ca {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let key_pem = key.serialize_pem();
        Ca {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        }
    }

    /// A serving certificate (also usable as a client certificate, as etcd peers need) for
    /// `localhost` and 127.0.0.1 plus `dns_names`.
    pub fn server(&self, dns_names: &[&str]) -> CertPair {
        let mut names = vec!["localhost".to_owned()];
        names.extend(dns_names.iter().map(|n| n.to_string()));
        let mut params = CertificateParams::new(names).expect("server parameters");
        let loopback: IpAddr = "127.0.0.1".parse().expect("an IP");
        params.subject_alt_names.push(SanType::IpAddress(loopback));
        params
            .distinguished_name
            .push(DnType::CommonName, "eargate test server");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// A client certificate. kube-apiserver reads the user from the common name and the
    /// groups from the organizations.
    pub fn client(&self, common_name: &str, organizations: &[&str]) -> CertPair {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for org in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> CertPair {
        let key = KeyPair::generate().expect("generate a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign a certificate");
        CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A fresh signing key for service-account tokens: (private key PEM, public key PEM).
/// kube-apiserver reads the public half from `--service-account-key-file`.
pub fn signing_key_pem() -> (String, String) {
    let key = KeyPair::generate().expect("generate a signing key");
    (key.serialize_pem(), key.public_key_pem())
}
