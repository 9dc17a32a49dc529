//! The internal PKI: root CA → AI-App intermediate (components, the NATS server) and User
//! intermediate (people, devices, external tools); leaf certificates per identity.
//!
//! Every certificate is made here with rcgen; nothing shells out to openssl.

mod ca;
mod files;
mod issue;
mod lifecycle;
mod registry;
mod verify;

pub use ca::{CaKind, CertificateAuthorities, TRUST_BUNDLE};
pub use files::IdentityFiles;
pub use issue::{issue, IssueOptions, Issued};
pub use lifecycle::{ensure, renew, revoke, EnsureReport, CONSOLE_AUDITOR, CONSOLE_OPERATOR};
pub use registry::{IdentityRecord, Registry, RevokedSerial};
pub use verify::{verify, Finding, Severity};

use crate::keyfile::KeyFileError;
use crate::passphrase::PassphraseError;

/// The NATS server's own identity: issued by the AI-App CA, server usage only.
pub const SERVER_STEM: &str = "nats-server";

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
    #[error("the CA is missing ({path}); run `ozone init` first")]
    NoCa { path: String },
    #[error("{identity} is not registered; issue it first with `ozone pki issue`")]
    Unknown { identity: String },
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}
