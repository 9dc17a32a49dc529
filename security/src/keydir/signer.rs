//! Signing this service's own directory entries with its certificate key.

use super::entry::*;
use super::trust::certified_names_and_serial;
use crate::envelope::PublicKey;
use crate::pki::IdentityFiles;
use crate::Home;
use ozone_bus_schemas::Identity;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A service's certificate and its signing key (read from `security/`, never exported).
pub struct ServiceSigner {
    service: String,
    certificate: Vec<u8>,
    /// When the certificate expires (Unix ms): no entry it signs outlives it.
    certificate_not_after_ms: u64,
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for ServiceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceSigner({}, key redacted)", self.service)
    }
}

impl ServiceSigner {
    pub fn load(home: &Home, identity: &Identity) -> Result<ServiceSigner, DirectoryError> {
        let files = IdentityFiles::own(home, identity);
        let load = |e: String| DirectoryError::Load(e);
        let cert = CertificateDer::from_pem_file(&files.cert)
            .map_err(|e| load(format!("{}: {e}", files.cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| load(format!("{}: {e}", files.key.display())))?;
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            key.secret_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| load(format!("{}: {e}", files.key.display())))?;
        let (_, _, certificate_not_after_ms) = certified_names_and_serial(&cert);
        Ok(ServiceSigner {
            service: identity.directory_name(),
            certificate: cert.to_vec(),
            certificate_not_after_ms,
            key,
        })
    }

    /// Signs `public` as the key of `epoch` until `not_after_ms`, or until the certificate
    /// expires if that comes first (receivers refuse an entry that outlives its certificate).
    pub fn sign(
        &self,
        epoch: u64,
        not_after_ms: u64,
        public: &PublicKey,
    ) -> Result<DirectoryEntry, DirectoryError> {
        let not_after_ms = not_after_ms.min(self.certificate_not_after_ms);
        let msg = signed_bytes(&self.service, epoch, not_after_ms, public.as_bytes());
        let sig = self
            .key
            .sign(&SystemRandom::new(), &msg)
            .map_err(|_| DirectoryError::Load("signing failed".into()))?;
        Ok(DirectoryEntry {
            service: self.service.clone(),
            epoch,
            not_after_ms,
            public: *public.as_bytes(),
            certificate: self.certificate.clone(),
            signature: sig.as_ref().to_vec(),
        })
    }
}
