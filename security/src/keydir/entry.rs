//! Signed key-directory entries: a service publishes its current X25519 public key signed by
//! the private key of its CA-issued certificate, so nobody with write access to the directory
//! (the JetStream bucket, the broker's operator) can substitute a key.
//!
//! Signed bytes: `"ozone/keydir/v1" ‖ len(service):u8 ‖ service ‖ epoch:u64 ‖ not_after_ms:u64 ‖
//! public:32`, ECDSA P-256 with SHA-256 (ASN.1 DER signature).

use crate::envelope::EnvelopeError;
use serde::{Deserialize, Serialize};

/// One published key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub service: String,
    pub epoch: u64,
    /// After this instant (its epoch's end plus grace) the key opens nothing.
    pub not_after_ms: u64,
    #[serde(with = "serde_bytes")]
    pub public: [u8; 32],
    /// The service's leaf certificate (DER); its key made `signature`.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why an entry was ignored. Each is audited by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory entry for {0} carries no signature")]
    Unsigned(String),
    #[error("directory entry for {0}: the signature does not match the entry")]
    BadSignature(String),
    #[error("directory entry for {service}: certificate not trusted ({detail})")]
    UntrustedCertificate { service: String, detail: String },
    #[error("directory entry claims {claimed} but is certified for {certified:?}")]
    WrongService {
        claimed: String,
        certified: Vec<String>,
    },
    #[error("directory entry for {0} has expired")]
    Expired(String),
    #[error("directory entry for {service}: epoch {epoch} is not the clock's (epoch {current} now, at most one ahead accepted)")]
    EpochNotCurrent {
        service: String,
        epoch: u64,
        current: u64,
    },
    #[error("directory entry for {service}: expiry {not_after_ms} lies beyond {limit} ({what})")]
    ExpiryTooLate {
        service: String,
        not_after_ms: u64,
        limit: u64,
        what: &'static str,
    },
    #[error("directory entry for {service}: its certificate (serial {serial}) is revoked")]
    Revoked { service: String, serial: String },
    #[error("directory entry for {0}: {1}")]
    BadKey(String, EnvelopeError),
    #[error("cannot load signing material: {0}")]
    Load(String),
}

/// Prefix of operators' directory names.
pub(super) const OPERATOR_PREFIX: &str = "urn:ozone:operator:";

/// Prefix of auditors' directory names.
pub(super) const AUDITOR_PREFIX: &str = "urn:ozone:auditor:";

pub(super) fn signed_bytes(
    service: &str,
    epoch: u64,
    not_after_ms: u64,
    public: &[u8; 32],
) -> Vec<u8> {
    let mut b = b"ozone/keydir/v1".to_vec();
    b.push(service.len() as u8);
    b.extend_from_slice(service.as_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&not_after_ms.to_be_bytes());
    b.extend_from_slice(public);
    b
}
