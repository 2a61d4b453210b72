//! TLS on both legs, with rustls and the ring provider.
//!
//! Owns: the server configuration that terminates client TLS (certificate chains from
//! PEM, chosen by SNI with wildcards honoured, or a self-signed certificate made at
//! start when none is configured) and the two client configurations for target legs:
//! one that verifies target certificates against `[tls] target_ca`, one that does not
//! (PBXs usually present self-signed certificates; the README says what that risks).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use portico_control::config::Config;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One certificate chain with its key and the DER of its end-entity certificate.
#[derive(Debug)]
struct Chain {
    key: Arc<CertifiedKey>,
}

impl Chain {
    fn valid_for(&self, name: &str) -> bool {
        let Some(ee) = self.key.cert.first() else {
            return false;
        };
        let Ok(cert) = webpki::EndEntityCert::try_from(ee) else {
            return false;
        };
        let Ok(server_name) = ServerName::try_from(name) else {
            return false;
        };
        cert.verify_is_valid_for_subject_name(&server_name).is_ok()
    }
}

/// Chooses the chain whose names cover the client's SNI (first match in config
/// order, wildcards honoured); the first chain when there is no SNI or no match.
#[derive(Debug)]
struct SniResolver {
    chains: Vec<Chain>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            if let Some(chain) = self.chains.iter().find(|c| c.valid_for(sni)) {
                return Some(chain.key.clone());
            }
        }
        self.chains.first().map(|c| c.key.clone())
    }
}

fn load_chain(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Chain> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("{}: cannot read certificate chain", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        bail!(
            "{}: no CERTIFICATE block found; write the chain in PEM, leaf first",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: cannot read a PEM private key", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| anyhow!("{}: unusable private key: {e}", key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        anyhow!(
            "{} and {} do not belong together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Chain { key: Arc::new(ck) })
}

/// The host names a self-signed certificate should carry: every configured host
/// name that is a DNS name (not `domain/location` keys), plus `localhost`.
fn dns_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .hosts
        .iter()
        .map(|h| h.name.to_ascii_lowercase())
        .filter(|n| ServerName::try_from(n.as_str()).is_ok() && !n.contains('/'))
        .collect();
    names.push("localhost".into());
    names.sort();
    names.dedup();
    names
}

/// What [`server_config`] built.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// For SIPS and H.323 over TLS: asks for an optional client certificate
    /// verified against `[tls] client_ca` (Check Certificate).
    pub client_auth: Arc<ServerConfig>,
    /// Decides after the handshake whether a client certificate chains to
    /// `[tls] client_ca`; `None` without a trust list.
    pub client_trust: Option<Arc<dyn ClientCertVerifier>>,
    /// Set when a self-signed certificate was made: the message to print.
    pub self_signed_note: Option<String>,
}

/// Build the TLS server configuration for client legs.
pub fn server_config(config: &Config) -> Result<ServerTls> {
    let provider = provider();
    let mut chains = Vec::new();
    for pair in &config.tls.certificates {
        chains.push(load_chain(&pair.certificate, &pair.private_key, &provider)?);
    }
    let mut note = None;
    if chains.is_empty() {
        let names = dns_names(config);
        let made = rcgen::generate_simple_self_signed(names.clone())
            .context("cannot make a self-signed certificate")?;
        let key_der = PrivateKeyDer::try_from(made.key_pair.serialize_der())
            .map_err(|e| anyhow!("self-signed key: {e}"))?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| anyhow!("self-signed key: {e}"))?;
        let cert = made.cert.der().clone();
        let fp = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let fp: Vec<String> = fp.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        note = Some(format!(
            "no [tls] certificate configured: made a self-signed certificate for {} (SHA-256 {})",
            names.join(", "),
            fp.join(":")
        ));
        chains.push(Chain {
            key: Arc::new(CertifiedKey::new(vec![cert], signing)),
        });
    }
    let resolver = Arc::new(SniResolver { chains });
    let mut sc = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let sc = Arc::new(sc);
    // SIPS and H.323 over TLS ask for an optional client certificate, verified
    // against the trust list, for Check Certificate. HTTPS and LDAPS do not ask
    // (a browser would prompt its user to pick one).
    let client_auth = match &config.tls.client_ca {
        Some(path) => {
            let roots = load_roots(path, "client_ca")?;
            let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| anyhow!("{}: client_ca unusable: {e}", path.display()))?;
            let cc = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_client_cert_verifier(Arc::new(OptionalClientCert(webpki.clone())))
                .with_cert_resolver(resolver);
            (Arc::new(cc), Some(webpki))
        }
        None => {
            let mut cc = (*sc).clone();
            cc.alpn_protocols.clear();
            (Arc::new(cc), None)
        }
    };
    let (client_auth, client_trust) = client_auth;
    Ok(ServerTls {
        config: sc,
        client_auth,
        client_trust,
        self_signed_note: note,
    })
}

/// Asks for a client certificate and takes any that is offered; whether it is
/// trusted is decided after the handshake ([`client_identity`]), because an
/// untrusted certificate does not end the connection: Check Certificate then
/// forwards over plain TCP (seed: "If both is true, then the request will be
/// forwarded using TLS, otherwise it will be sent using TCP"). The handshake
/// signatures are still checked with the presented key.
#[derive(Debug)]
struct OptionalClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What a client's certificate says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chains to `[tls] client_ca`.
    pub trusted: bool,
    /// Subject CNs, SAN DNS names, SAN e-mail names, and SAN URIs (without a
    /// `sip:`/`sips:` scheme), lower-cased.
    pub names: Vec<String>,
}

/// The identity of the client of a TLS connection, when it sent a certificate.
pub fn client_identity(
    conn: &rustls::ServerConnection,
    trust: Option<&Arc<dyn ClientCertVerifier>>,
) -> Option<ClientIdentity> {
    let chain = conn.peer_certificates()?;
    let (ee, intermediates) = chain.split_first()?;
    let trusted = trust.is_some_and(|t| {
        t.verify_client_cert(ee, intermediates, UnixTime::now())
            .is_ok()
    });
    let mut names = Vec::new();
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(ee.as_ref()) {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                use x509_parser::extensions::GeneralName;
                let text = match name {
                    GeneralName::DNSName(s) | GeneralName::RFC822Name(s) => *s,
                    GeneralName::URI(s) => s
                        .strip_prefix("sips:")
                        .or_else(|| s.strip_prefix("sip:"))
                        .unwrap_or(s),
                    _ => continue,
                };
                names.push(text.to_ascii_lowercase());
            }
        }
    }
    Some(ClientIdentity { trusted, names })
}

/// Accepts any target certificate, but still checks that the handshake signatures
/// are made with the presented key (so the session keys are the target's).
#[derive(Debug)]
struct AcceptAnyTarget(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyTarget {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Client configurations for target legs.
pub struct TargetTls {
    /// Verifies against `[tls] target_ca`; `None` when no CA is configured.
    pub verified: Option<Arc<ClientConfig>>,
    /// Does not verify the target's certificate.
    pub unverified: Arc<ClientConfig>,
}

impl TargetTls {
    /// The configuration for a host: verifying when asked and possible.
    pub fn for_host(&self, verify: bool) -> &Arc<ClientConfig> {
        match (&self.verified, verify) {
            (Some(v), true) => v,
            _ => &self.unverified,
        }
    }
}

/// A root store from a PEM file of CA certificates (`what` names the config key).
fn load_roots(path: &Path, what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{}: cannot read {what}", path.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("{}: not PEM certificates", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        bail!("{}: no CA certificate found in {what}", path.display());
    }
    Ok(roots)
}

pub fn target_config(config: &Config) -> Result<TargetTls> {
    let provider = provider();
    let verified = match &config.tls.target_ca {
        Some(path) => {
            let roots = load_roots(path, "target_ca")?;
            let cc = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(cc))
        }
        None => None,
    };
    let unverified = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyTarget(provider)))
        .with_no_client_auth();
    Ok(TargetTls {
        verified,
        unverified: Arc::new(unverified),
    })
}

/// The name a target leg presents in SNI and verifies against: the host's name when
/// it is a DNS name, else the target's IP address.
pub fn target_server_name(host: &str, ip: std::net::IpAddr) -> ServerName<'static> {
    match ServerName::try_from(host.to_ascii_lowercase()) {
        Ok(name) if !host.contains('/') => name,
        _ => ServerName::IpAddress(ip.into()),
    }
}

/// Everything TLS for one configuration generation; replaced whole on reload, so a
/// changed certificate takes effect for new handshakes.
pub struct TlsSet {
    pub server: Arc<ServerConfig>,
    /// Server configuration asking for client certificates (SIPS, H.323 over TLS).
    pub client_auth: Arc<ServerConfig>,
    /// Decides after the handshake whether a client certificate chains to
    /// `[tls] client_ca`; `None` without a trust list.
    pub client_trust: Option<Arc<dyn ClientCertVerifier>>,
    pub targets: TargetTls,
    /// Set when a self-signed certificate was made: the message to print.
    pub self_signed_note: Option<String>,
}

impl TlsSet {
    pub fn from_config(config: &Config) -> Result<TlsSet> {
        let server = server_config(config)?;
        Ok(TlsSet {
            server: server.config,
            client_auth: server.client_auth,
            client_trust: server.client_trust,
            targets: target_config(config)?,
            self_signed_note: server.self_signed_note,
        })
    }
}
