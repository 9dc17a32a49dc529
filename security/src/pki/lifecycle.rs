//! Whole-PKI operations: create what is missing (init), renew what is near expiry, revoke.

use super::issue::{destroy_key, Signers};
use super::{
    CaKind, CertificateAuthorities, IdentityFiles, IdentityRecord, IssueOptions, PkiError,
    Registry, SERVER_STEM,
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

/// The operator identity the `ozone` command speaks as on this host (`ozone ask`, `ozone
/// bench spark`): its own certificate, NATS user and key ring, never a component's.
pub const CONSOLE_OPERATOR: &str = "console";

/// Creates the CAs, the NATS server certificate, the eight component certificates and the
/// local console's (auditor and operator) where missing. Never replaces an existing file, so running it twice
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
    let console = |kind, name: &str| {
        Identity::new(kind, name).map_err(|e| PkiError::Invalid {
            path: name.into(),
            detail: e.to_string(),
        })
    };
    let consoles = [
        console(IdentityKind::Auditor, CONSOLE_AUDITOR)?,
        console(IdentityKind::Operator, CONSOLE_OPERATOR)?,
    ];
    for id in Component::ALL
        .map(Identity::component)
        .into_iter()
        .chain(consoles)
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

/// Reads a certificate file and hands the parsed certificate to `check`.
fn with_cert<T>(
    path: &std::path::Path,
    check: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T,
) -> Result<T, PkiError> {
    let invalid = |detail: String| PkiError::Invalid {
        path: path.display().to_string(),
        detail,
    };
    let der = CertificateDer::from_pem_file(path).map_err(|e| invalid(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| invalid(e.to_string()))?;
    Ok(check(&cert))
}

fn expires_within(path: &std::path::Path, within: Duration) -> Result<bool, PkiError> {
    with_cert(path, |cert| {
        let left = cert.validity().not_after.timestamp()
            - time::OffsetDateTime::now_utc().unix_timestamp();
        left < within.as_secs() as i64
    })
}

/// Whether an identity's certificate was issued under an earlier profile: without its
/// per-issuance NATS user (it could not connect any more), or good for serving TLS. Such a
/// certificate is re-issued by the next renewal, whatever its expiry.
fn outdated_profile(home: &Home, record: &IdentityRecord) -> Result<bool, PkiError> {
    let files = IdentityFiles::of(home, &record.identity);
    if !files.cert.exists() {
        return Ok(false);
    }
    let user = record.identity.nats_user(&record.serial);
    with_cert(&files.cert, |cert| {
        let names_user = user.as_deref().is_none_or(|user| {
            cert.subject_alternative_name()
                .ok()
                .flatten()
                .is_some_and(|san| {
                    san.value.general_names.iter().any(
                        |n| matches!(n, x509_parser::extensions::GeneralName::URI(u) if *u == user),
                    )
                })
        });
        let serves = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .is_some_and(|eku| eku.value.server_auth);
        !names_user || serves
    })
}

/// Re-issues, with fresh keys, every active certificate (and the NATS server's) that expires
/// within `within` or was issued under an earlier profile. Returns the file stems it renewed.
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
    let mut due = Vec::new();
    for r in registry.identities.iter().filter(|r| r.is_active()) {
        if r.not_after - now < within.as_secs() as i64 || outdated_profile(home, r)? {
            due.push(r.identity.clone());
        }
    }
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
