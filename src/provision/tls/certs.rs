//! Certificates for servers contend starts with `--tls`: a CA made for the
//! run and a server certificate it signs, for the names clients connect
//! by. PEM text only; where the files go and who owns them is the
//! backend's business.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The names a server contend starts is reached by: what its certificate
/// holds.
pub const LOCAL_SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A run's CA and a server certificate signed by it, PEM-encoded.
#[derive(Clone)]
pub struct ServerCertificates {
    /// The CA's certificate: what clients are given as `sslrootcert`.
    pub ca_cert_pem: String,
    /// The server's certificate (`ssl_cert_file`).
    pub server_cert_pem: String,
    /// The server's private key (`ssl_key_file`): mode 0600 on disk.
    pub server_key_pem: String,
}

impl std::fmt::Debug for ServerCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificates").finish_non_exhaustive()
    }
}

impl ServerCertificates {
    /// A new CA (ECDSA P-256, as rcgen makes by default) and a server
    /// certificate for `names` (DNS names or IP addresses) signed by it.
    pub fn generate(names: &[&str]) -> Result<ServerCertificates, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // A name of its own per run: another run's CA is then an unknown
        // issuer, not a namesake with a wrong signature.
        ca.distinguished_name = named(&format!(
            "contend run CA {}",
            &crate::provision::generate_password()[..12]
        ));
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        server.distinguished_name = named(names.first().copied().unwrap_or("localhost"));
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer)?;
        Ok(ServerCertificates {
            ca_cert_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
