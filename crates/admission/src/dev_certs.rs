//! Development certificates: a throw-away CA and a serving certificate signed by it, so
//! `make run` and the tests talk real TLS with verification on. Production clusters use
//! cert-manager or their own CA; nothing here is meant to be long-lived.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Why development certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    /// The serving certificate needs at least one DNS name or IP address.
    #[error("the serving certificate needs at least one --dns-name or --ip")]
    NoNames,
    /// A DNS name rcgen refused (not IA5 text).
    #[error("invalid DNS name {0:?}")]
    BadDnsName(String),
    /// rcgen failed to build or sign a certificate.
    #[error("could not create a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// PEM text of a development CA and a serving certificate signed by it.
pub struct DevCerts {
    /// The CA's certificate: what clients trust (the webhook's `caBundle`).
    pub ca_cert_pem: String,
    /// The CA's private key.
    pub ca_key_pem: String,
    /// The serving certificate, signed by the CA.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for DevCerts {
    /// Never prints the private keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCerts").finish_non_exhaustive()
    }
}

/// How long the serving certificate and the CA are valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Days the serving certificate is valid from now.
    pub serving_days: i64,
    /// Days the CA is valid from now.
    pub ca_days: i64,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            serving_days: 365,
            ca_days: 3650,
        }
    }
}

/// Makes a fresh CA (ECDSA P-256) and a serving certificate for `dns_names` and `ips`,
/// usable for TLS server authentication only.
pub fn generate(
    dns_names: &[String],
    ips: &[IpAddr],
    validity: Validity,
) -> Result<DevCerts, DevCertError> {
    if dns_names.is_empty() && ips.is_empty() {
        return Err(DevCertError::NoNames);
    }
    // Backdate a little so a slightly skewed clock does not reject a fresh certificate.
    let now = OffsetDateTime::now_utc() - Duration::minutes(5);

    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "eargate development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now;
    ca_params.not_after = now + Duration::days(validity.ca_days);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_cert_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let common_name = dns_names
        .first()
        .cloned()
        .unwrap_or_else(|| ips[0].to_string());
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    for name in dns_names {
        let ia5 = name
            .clone()
            .try_into()
            .map_err(|_| DevCertError::BadDnsName(name.clone()))?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now;
    params.not_after = now + Duration::days(validity.serving_days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    Ok(DevCerts {
        ca_cert_pem,
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_a_name() {
        assert!(matches!(
            generate(&[], &[], Validity::default()),
            Err(DevCertError::NoNames)
        ));
    }

    #[test]
    fn serving_cert_is_signed_by_the_ca_and_names_every_san() {
        let certs = generate(
            &[
                "localhost".into(),
                "eargate-webhook.eargate-system.svc".into(),
            ],
            &["127.0.0.1".parse().unwrap()],
            Validity::default(),
        )
        .unwrap();
        let pem = x509_parser::pem::parse_x509_pem(certs.cert_pem.as_bytes())
            .unwrap()
            .1;
        let cert = pem.parse_x509().unwrap();
        let ca_pem = x509_parser::pem::parse_x509_pem(certs.ca_cert_pem.as_bytes())
            .unwrap()
            .1;
        let ca = ca_pem.parse_x509().unwrap();
        assert_eq!(cert.issuer(), ca.subject());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let text = format!("{:?}", san.value.general_names);
        assert!(text.contains("localhost"));
        assert!(text.contains("eargate-webhook.eargate-system.svc"));
        assert!(text.contains("127.0.0.1") || text.contains("[127, 0, 0, 1]"));
        assert!(ca.is_ca());
        assert!(!cert.is_ca());
        assert!(certs.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{certs:?}").contains("PRIVATE"));
    }
}
