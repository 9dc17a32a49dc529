//! An auditor's recipient key. Audit events are sealed to every auditor's X25519 key, so an
//! external tool can open what the audit stream keeps.
//!
//! Unlike service keys, it does not rotate daily: the audit stream retains events for 90 days
//! and an auditor must be able to open all of them, so its key lives as long as the auditor's
//! identity (revoking the identity deletes it). It is stored as PKCS#8 PEM (`X25519`, RFC
//! 8410), 0600, at `security/keys/<stem>.x25519.pem`, so tools in any language can load it.

use super::{EnvelopeError, SecretKeyPair};
use crate::keydir::{DirectoryEntry, DirectoryError, ServiceSigner};
use crate::keyfile::{write_secret, KeyFileError};
use crate::Home;
use ozone_bus_schemas::Identity;
use pkcs8::der::asn1::OctetStringRef;
use pkcs8::der::pem::LineEnding;
use pkcs8::der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, ObjectIdentifier, PrivateKeyInfo};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// id-X25519 (RFC 8410).
const X25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");

#[derive(Debug, thiserror::Error)]
pub enum AuditorKeyError {
    #[error("{path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error(transparent)]
    Write(#[from] KeyFileError),
    #[error(transparent)]
    Key(#[from] EnvelopeError),
    #[error(transparent)]
    Sign(#[from] DirectoryError),
    #[error("cannot encode the key: {0}")]
    Encode(String),
    #[error("{0} is not an auditor")]
    NotAnAuditor(String),
}

pub fn path(home: &Home, identity: &Identity) -> PathBuf {
    home.keys_dir()
        .join(format!("{}.x25519.pem", identity.file_stem()))
}

fn encode_pem(key: &SecretKeyPair) -> Result<Zeroizing<String>, AuditorKeyError> {
    let err = |e: pkcs8::der::Error| AuditorKeyError::Encode(e.to_string());
    // CurvePrivateKey ::= OCTET STRING, itself inside PrivateKeyInfo's privateKey.
    let inner = Zeroizing::new(
        OctetStringRef::new(key.secret_bytes())
            .map_err(err)?
            .to_der()
            .map_err(err)?,
    );
    let info = PrivateKeyInfo::new(
        AlgorithmIdentifierRef {
            oid: X25519_OID,
            parameters: None,
        },
        &inner,
    );
    let der = Zeroizing::new(info.to_der().map_err(err)?);
    pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
        .map(Zeroizing::new)
        .map_err(|e| AuditorKeyError::Encode(e.to_string()))
}

fn decode_pem(text: &str) -> Result<SecretKeyPair, String> {
    let (label, der) = pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|e| e.to_string())?;
    let der = Zeroizing::new(der);
    if label != "PRIVATE KEY" {
        return Err(format!("expected a PRIVATE KEY, found {label}"));
    }
    let info = PrivateKeyInfo::from_der(&der).map_err(|e| e.to_string())?;
    if info.algorithm.oid != X25519_OID {
        return Err(format!("not an X25519 key ({})", info.algorithm.oid));
    }
    let inner = OctetStringRef::from_der(info.private_key).map_err(|e| e.to_string())?;
    let secret: [u8; 32] = inner
        .as_bytes()
        .try_into()
        .map_err(|_| "an X25519 key is 32 bytes".to_string())?;
    SecretKeyPair::from_secret(secret).map_err(|e| e.to_string())
}

/// Reads the auditor's key.
pub fn load(home: &Home, identity: &Identity) -> Result<SecretKeyPair, AuditorKeyError> {
    let path = path(home, identity);
    let text =
        Zeroizing::new(
            std::fs::read_to_string(&path).map_err(|e| AuditorKeyError::Read {
                path: path.clone(),
                detail: e.to_string(),
            })?,
        );
    decode_pem(&text).map_err(|detail| AuditorKeyError::Read { path, detail })
}

/// Reads the auditor's key, creating it on first use.
pub fn load_or_create(home: &Home, identity: &Identity) -> Result<SecretKeyPair, AuditorKeyError> {
    if identity.kind != ozone_bus_schemas::IdentityKind::Auditor {
        return Err(AuditorKeyError::NotAnAuditor(identity.to_string()));
    }
    if path(home, identity).exists() {
        return load(home, identity);
    }
    let key = SecretKeyPair::generate()?;
    write_secret(&path(home, identity), encode_pem(&key)?.as_bytes())?;
    Ok(key)
}

/// The auditor's directory entry, signed by its certificate key, valid until the certificate
/// expires.
pub fn directory_entry(
    home: &Home,
    identity: &Identity,
    certificate_not_after_ms: u64,
) -> Result<DirectoryEntry, AuditorKeyError> {
    let key = load_or_create(home, identity)?;
    Ok(ServiceSigner::load(home, identity)?.sign(0, certificate_not_after_ms, key.public())?)
}

/// Erases the key (when the auditor is revoked).
pub fn remove(home: &Home, identity: &Identity) -> std::io::Result<()> {
    match std::fs::remove_file(path(home, identity)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_matches_rfc_8410_layout() {
        let key = SecretKeyPair::from_secret([7u8; 32]).unwrap();
        let pem = encode_pem(&key).unwrap();
        let (_, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
        // RFC 8410 §10.3's fixed prefix for an X25519 private key.
        assert_eq!(
            der[..16],
            [
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22,
                0x04, 0x20
            ]
        );
        let back = decode_pem(&pem).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(
            decode_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
    }
}
