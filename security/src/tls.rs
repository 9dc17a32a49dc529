//! TLS identities: the rustls client configuration a component (or tool) connects with.
//!
//! Only this crate opens private-key files; other crates receive a ready `ClientConfig`.

use crate::pki::{CertificateAuthorities, IdentityFiles};
use crate::{Home, SecurityConfig};
use ozone_bus_schemas::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;

/// Why a TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}; run `ozone pki verify` to see what is wrong")]
    Read { path: String, detail: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read_err(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Read {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// The ring provider restricted to the configured TLS 1.3 suites.
fn provider(cfg: &SecurityConfig) -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    let wanted = &cfg.network_security.cipher_suites;
    p.cipher_suites.retain(|s| {
        s.version() == &rustls::version::TLS13
            // rustls spells them TLS13_AES_…, the IANA registry (and our config) TLS_AES_….
            && s.suite()
                .as_str()
                .map(|name| name.replacen("TLS13_", "TLS_", 1))
                .is_some_and(|name| wanted.contains(&name))
    });
    Arc::new(p)
}

/// Roots from the trust bundle (every root the ecosystem currently trusts).
pub fn trust_roots(home: &Home) -> Result<RootCertStore, TlsError> {
    let path = CertificateAuthorities::new(home).trust_bundle_to_read();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&path).map_err(read_err(&path))? {
        roots.add(cert.map_err(read_err(&path))?)?;
    }
    Ok(roots)
}

/// A TLS 1.3-only client configuration presenting `files` (chain + key), trusting the bundle.
pub fn client_config_from_files(
    home: &Home,
    cfg: &SecurityConfig,
    files: &IdentityFiles,
) -> Result<ClientConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.chain)
        .map_err(read_err(&files.chain))?
        .collect::<Result<_, _>>()
        .map_err(read_err(&files.chain))?;
    // Send leaf and intermediate; the root is the server's to have.
    let chain: Vec<_> = chain.into_iter().take(2).collect();
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(read_err(&files.key))?;
    let provider = provider(cfg);
    let server =
        WebPkiServerVerifier::builder_with_provider(Arc::new(trust_roots(home)?), provider.clone())
            .build()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NatsServerName { inner: server }))
        .with_client_auth_cert(chain, key)?)
}

/// The name every client requires in the server's certificate, whatever host the URL names:
/// only the NATS server's certificate carries it (`pki::issue`).
pub const NATS_SERVER_NAME: &str = "nats.local";

/// Verifies the server's certificate with webpki as usual — chain to our roots, validity,
/// the serverAuth usage — but for the name [`NATS_SERVER_NAME`] rather than the URL's host.
/// A URL of `tls://127.0.0.1:4222` would otherwise accept any certificate of ours that names
/// 127.0.0.1; pinning the server's own name means no other identity's certificate can serve
/// the bus, even one that was issued with loopback names before component certificates
/// became client-only.
#[derive(Debug)]
struct NatsServerName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for NatsServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = ServerName::try_from(NATS_SERVER_NAME)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &pinned, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client configuration of a registered identity.
pub fn client_config(
    home: &Home,
    cfg: &SecurityConfig,
    identity: &Identity,
) -> Result<ClientConfig, TlsError> {
    client_config_from_files(home, cfg, &IdentityFiles::own(home, identity))
}
