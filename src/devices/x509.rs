//! Client certificates on the device endpoint, as IoT Hub's X.509
//! thumbprint authentication: the TLS handshake asks every device for a
//! certificate (none is fine: SAS devices send none), checks that the
//! device holds the certificate's private key (the handshake signature),
//! and the session compares the certificate's SHA-256 thumbprint with the
//! device identity's at CONNECT.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Takes any client certificate (or none); proof of its private key is the
/// handshake's signature, which it verifies.
#[derive(Debug)]
pub struct AnyClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl AnyClientCert {
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> AnyClientCert {
        AnyClientCert { provider }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Who it is is decided at CONNECT, by its thumbprint.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate authority devices' certificates may chain to (a root or
/// an intermediate): one of `devices.ca_certificates`, or an enrollment
/// group's.
#[derive(Debug, Clone)]
pub struct Authority {
    der: CertificateDer<'static>,
    /// Its subject's common name (or empty).
    pub subject: String,
    pub thumbprint: String,
}

impl Authority {
    /// The certificates of a PEM text (at least one), each a CA: basic
    /// constraints say so.
    pub fn from_pem(pem: &str) -> Result<Vec<Authority>, String> {
        use rustls::pki_types::pem::PemObject as _;
        let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if ders.is_empty() {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
        }
        ders.into_iter()
            .map(|der| {
                let cert = decode(&der)?;
                if !is_ca(&cert) {
                    return Err(format!(
                        "the certificate {:?} is not a CA certificate (basic constraints CA:TRUE)",
                        common_name_of(&cert).unwrap_or_default()
                    ));
                }
                webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| format!("the certificate cannot anchor a chain: {e}"))?;
                Ok(Authority {
                    subject: common_name_of(&cert).unwrap_or_default(),
                    thumbprint: thumbprint(&der),
                    der,
                })
            })
            .collect()
    }
}

/// The certificate chain a device presented in its TLS handshake (its
/// own first).
#[derive(Debug, Clone)]
pub struct ClientChain {
    chain: Vec<CertificateDer<'static>>,
    /// The device certificate's SHA-256 thumbprint.
    pub thumbprint: String,
}

impl ClientChain {
    pub fn new(chain: &[CertificateDer<'_>]) -> Option<ClientChain> {
        let first = chain.first()?;
        Some(ClientChain {
            thumbprint: thumbprint(first),
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
        })
    }

    /// The device certificate's subject common name: a CA-signed device's id.
    pub fn common_name(&self) -> Option<String> {
        decode(&self.chain[0]).ok().and_then(|c| common_name_of(&c))
    }

    /// Checks that the chain leads to one of `cas`, is valid at `now`
    /// (Unix seconds) and may authenticate a client; the authority it
    /// leads to.
    pub fn issued_by<'a>(&self, cas: &'a [Authority], now: i64) -> Result<&'a Authority, String> {
        if cas.is_empty() {
            return Err("the server trusts no certificate authority".into());
        }
        let anchors: Vec<_> = cas
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(&c.der).ok())
            .collect();
        let device = webpki::EndEntityCert::try_from(&self.chain[0])
            .map_err(|e| format!("the device certificate cannot be read: {e}"))?;
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or_default(),
        ));
        let path = device
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &self.chain[1..],
                time,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| format!("the certificate chain is not trusted: {e}"))?;
        let anchor = path.anchor();
        cas.iter()
            .zip(&anchors)
            .find(|(_, a)| {
                a.subject == anchor.subject
                    && a.subject_public_key_info == anchor.subject_public_key_info
            })
            .map(|(c, _)| c)
            .ok_or_else(|| "the certificate chain leads to no known authority".to_owned())
    }
}

fn decode(der: &[u8]) -> Result<x509_cert::Certificate, String> {
    use x509_cert::der::Decode as _;
    x509_cert::Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))
}

fn is_ca(cert: &x509_cert::Certificate) -> bool {
    use x509_cert::der::Decode as _;
    use x509_cert::ext::pkix::BasicConstraints;
    let basic = x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.29.19");
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == basic)
        .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|b| b.ca))
}

/// The subject's (last) common name.
fn common_name_of(cert: &x509_cert::Certificate) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    let cn = x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .rev()
        .flat_map(|rdn| rdn.0.iter().rev())
        .filter(|a| a.oid == cn)
        .filter_map(|a| {
            let v = &a.value;
            v.decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    v.decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .or_else(|_| {
                    v.decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
        .next()
}

/// A certificate's SHA-256 thumbprint: 64 upper-case hex digits, as IoT Hub
/// shows them.
pub fn thumbprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(pem: &str) -> ClientChain {
        use rustls::pki_types::pem::PemObject as _;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("PEM");
        ClientChain::new(&certs).expect("a chain")
    }

    #[test]
    fn chains_verify_to_their_authority_and_name_their_device() {
        let root =
            Authority::from_pem(include_str!("../../tests/keys/device-ca.crt")).expect("a CA");
        let ica =
            Authority::from_pem(include_str!("../../tests/keys/device-ica.crt")).expect("a CA");
        let device = chain(include_str!("../../tests/keys/ca-pump-1.crt"));
        let rogue = chain(include_str!("../../tests/keys/ca-rogue.crt"));
        // 2027-01-15: within every test certificate's validity.
        let now = 1_800_000_000;
        assert_eq!(device.common_name().as_deref(), Some("ca-pump-1"));
        assert_eq!(rogue.common_name().as_deref(), Some("ca-pump-1"));
        assert_eq!(
            device.issued_by(&root, now).map(|a| a.subject.clone()),
            Ok("twingraph device test root CA".to_owned())
        );
        assert!(
            device.issued_by(&ica, now).is_ok(),
            "an intermediate anchors too"
        );
        let refused = rogue.issued_by(&root, now).expect_err("another root");
        assert!(refused.contains("not trusted"), "{refused}");
        assert!(device.issued_by(&[], now).is_err());
        // Before the certificates were issued.
        assert!(device.issued_by(&root, 1_000_000_000).is_err());
    }

    #[test]
    fn only_ca_certificates_are_authorities() {
        let leaf = Authority::from_pem(include_str!("../../tests/keys/ca-pump-2.crt"))
            .expect_err("a device certificate is no authority");
        assert!(leaf.contains("not a CA certificate"), "{leaf}");
        assert!(Authority::from_pem("hello").is_err());
        assert!(Authority::from_pem("").is_err());
    }

    #[test]
    fn thumbprints_are_sha256_in_upper_hex() {
        // SHA-256 of the empty input.
        assert_eq!(
            thumbprint(b""),
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        );
    }
}
