//! Whole-PKI operations: create what is missing (init), renew what is near expiry, revoke.

use super::issue::{destroy_key, Signers};
use super::{
    CaKind, CertificateAuthorities, IdentityFiles, IssueOptions, PkiError, Registry, SERVER_STEM,
};
use crate::{passphrase, Home, SecurityConfig};
use ozone_bus_schemas::{Component, Identity, IdentityKind};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use std::time::Duration;

/// What `ensure` created; empty when everything already existed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnsureReport {
    pub created_cas: Vec<CaKind>,
    pub issued: Vec<String>,
}

/// The auditor identity `ozone audit tail` and `ozone up` use on this host.
pub const CONSOLE_AUDITOR: &str = "console";

/// Creates the CAs, the NATS server certificate, the eight component certificates and the
/// local audit console's where missing. Never replaces an existing file, so running it twice
/// changes nothing.
pub fn ensure(home: &Home, cfg: &SecurityConfig) -> Result<EnsureReport, PkiError> {
    let pass = passphrase::resolve(home, true)?;
    let mut report = EnsureReport {
        created_cas: CertificateAuthorities::new(home).ensure(&pass)?,
        ..EnsureReport::default()
    };
    let validity = cfg.certificate_authority.certificate_validity_duration;
    let mut signers = Signers::new(home, &pass);
    if !IdentityFiles::for_stem(home, SERVER_STEM).exist() {
        signers.issue_server(validity)?;
        report.issued.push(SERVER_STEM.to_string());
    }
    let mut registry = Registry::load(home)?;
    let console =
        Identity::new(IdentityKind::Auditor, CONSOLE_AUDITOR).map_err(|e| PkiError::Invalid {
            path: CONSOLE_AUDITOR.into(),
            detail: e.to_string(),
        })?;
    for id in Component::ALL
        .map(Identity::component)
        .into_iter()
        .chain([console])
    {
        let revoked = registry.get(&id).is_some_and(|r| !r.is_active());
        if revoked || (IdentityFiles::of(home, &id).exist() && registry.get(&id).is_some()) {
            continue;
        }
        signers.issue(&id, &IssueOptions::valid_for(validity), &mut registry)?;
        report.issued.push(id.file_stem());
    }
    if !report.issued.is_empty() {
        registry.save(home)?;
    }
    Ok(report)
}

fn expires_within(path: &std::path::Path, within: Duration) -> Result<bool, PkiError> {
    let der = CertificateDer::from_pem_file(path).map_err(|e| PkiError::Invalid {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Invalid {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let left =
        cert.validity().not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(left < within.as_secs() as i64)
}

/// Re-issues, with fresh keys, every active certificate (and the NATS server's) that expires
/// within `within`. Returns the file stems it renewed.
pub fn renew(home: &Home, cfg: &SecurityConfig, within: Duration) -> Result<Vec<String>, PkiError> {
    let pass = passphrase::resolve(home, false)?;
    let validity = cfg.certificate_authority.certificate_validity_duration;
    let mut signers = Signers::new(home, &pass);
    let mut renewed = Vec::new();
    let server = IdentityFiles::for_stem(home, SERVER_STEM);
    if !server.cert.exists() {
        return Err(PkiError::NoCa {
            path: server.cert.display().to_string(),
        });
    }
    if expires_within(&server.cert, within)? {
        signers.issue_server(validity)?;
        renewed.push(SERVER_STEM.to_string());
    }
    let mut registry = Registry::load(home)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let due: Vec<Identity> = registry
        .identities
        .iter()
        .filter(|r| r.is_active() && r.not_after - now < within.as_secs() as i64)
        .map(|r| r.identity.clone())
        .collect();
    for id in due {
        signers.issue(&id, &IssueOptions::valid_for(validity), &mut registry)?;
        renewed.push(id.file_stem());
    }
    registry.save(home)?;
    Ok(renewed)
}

/// Revokes an identity: marks it in the registry and destroys its private key and its
/// envelope key ring (a stolen ring's chain would derive every key the re-issued service
/// publishes). The caller regenerates the NATS configuration and reloads the server so live
/// connections are cut. Returns false when it was already revoked.
pub fn revoke(home: &Home, identity: &Identity) -> Result<bool, PkiError> {
    let mut registry = Registry::load(home)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let changed = registry.revoke(identity, now)?;
    registry.save(home)?;
    destroy_key(home, identity)?;
    crate::envelope::keyring_file::destroy(home, identity).map_err(super::io_err(
        &crate::envelope::keyring_file::path(home, identity),
    ))?;
    Ok(changed)
}
