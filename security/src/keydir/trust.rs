//! What a directory entry must prove: a certificate chained to our CAs that names the
//! service, not revoked in the identity registry, and an epoch and expiry the clock, the
//! rotation and the certificate allow.

use super::entry::*;
use crate::envelope::{PublicKey, Rotation};
use crate::pki::{CaKind, CertificateAuthorities, Registry};
use crate::Home;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

/// What entries are checked against: the trusted roots, the AI-App intermediate (services),
/// the User intermediate (auditors), and the serials `ozone pki revoke` has revoked (read from
/// the identity registry, and re-read when it changes: see
/// [`DirectoryTrust::refresh_revocations`]).
#[derive(Debug, Clone)]
pub struct DirectoryTrust {
    anchors: Vec<TrustAnchor<'static>>,
    intermediate: CertificateDer<'static>,
    user_intermediate: CertificateDer<'static>,
    /// Where the identity registry is (`Registry::path`).
    home: Home,
    /// Revoked certificate serials (as `serial_key`) → when, in Unix milliseconds.
    revoked: HashMap<String, u64>,
    /// The registry file's identity when `revoked` was read (`None`: no registry).
    registry_stamp: Option<FileStamp>,
    /// The ecosystem's key rotation, when known (a live follower): a service's entry must
    /// then name an epoch the clock allows and expire within that epoch's window
    /// ([`DirectoryTrust::with_rotation`]).
    rotation: Option<Rotation>,
}

/// A serial as compared here: lowercase hex without leading zero bytes (DER may add one to
/// keep an integer positive; the registry writes the bytes as issued). Works on the text, so
/// a malformed registry serial is compared as written rather than skipped.
pub(super) fn serial_key(hex_text: &str) -> String {
    let mut s = hex_text.trim().to_ascii_lowercase();
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    s
}

/// Tells one version of the registry file from the next. The registry is replaced by a
/// rename on every save, so the inode changes even when two saves fall in the same tick of
/// the file system's clock (which a modification time alone would miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    modified_ns: i128,
    len: u64,
}

fn stamp_of(path: &std::path::Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: m.ino(),
        modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        len: m.len(),
    })
}

/// The revoked serials in `home`'s registry with when each was revoked (Unix ms).
fn read_revoked(home: &Home) -> Result<HashMap<String, u64>, DirectoryError> {
    let registry = Registry::load(home).map_err(|e| DirectoryError::Load(e.to_string()))?;
    let mut revoked = HashMap::new();
    for (serial, at_s) in registry.revoked() {
        let at_ms = u64::try_from(at_s).unwrap_or(0).saturating_mul(1000);
        let earliest = revoked.entry(serial_key(serial)).or_insert(at_ms);
        *earliest = (*earliest).min(at_ms);
    }
    Ok(revoked)
}

impl DirectoryTrust {
    pub fn load(home: &Home) -> Result<DirectoryTrust, DirectoryError> {
        let cas = CertificateAuthorities::new(home);
        let bundle = cas.trust_bundle_to_read();
        let load = |e: String| DirectoryError::Load(e);
        let mut anchors = Vec::new();
        let at = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |e: rustls_pki_types::pem::Error| load(format!("{path}: {e}"))
        };
        for cert in CertificateDer::pem_file_iter(&bundle).map_err(at(&bundle))? {
            let cert = cert.map_err(at(&bundle))?;
            anchors.push(
                webpki::anchor_from_trusted_cert(&cert)
                    .map_err(|e| load(format!("{e:?}")))?
                    .to_owned(),
            );
        }
        let (ai_app, user) = (
            cas.cert_to_read(CaKind::AiApp),
            cas.cert_to_read(CaKind::User),
        );
        let intermediate = CertificateDer::from_pem_file(&ai_app).map_err(at(&ai_app))?;
        let user_intermediate = CertificateDer::from_pem_file(&user).map_err(at(&user))?;
        let registry = Registry::path(home);
        // The stamp is taken first: a change racing the read is seen by the next refresh.
        let registry_stamp = stamp_of(&registry);
        let revoked = read_revoked(home)?;
        Ok(DirectoryTrust {
            anchors,
            intermediate,
            user_intermediate,
            home: home.clone(),
            revoked,
            registry_stamp,
            rotation: None,
        })
    }

    /// Also judges every service entry's epoch and expiry against `rotation` (the one every
    /// service of the ecosystem rotates by): the epoch may be at most one ahead of the clock's
    /// (a sender whose clock runs a little ahead rotates first) and the entry must expire by
    /// the end of that epoch's grace window. Without it a stolen certificate key could publish
    /// epoch 2^63 with a far-future expiry, and every sender would seal to that key (the
    /// newest epoch wins) until the certificate is revoked. Readers of the audit archive,
    /// which judge entries at their publication time, need no rotation: they never seal.
    pub fn with_rotation(mut self, rotation: Rotation) -> DirectoryTrust {
        self.rotation = Some(rotation);
        self
    }

    /// Re-reads the revoked serials if the identity registry changed since the last read;
    /// true when the set changed (the caller then drops entries it no longer trusts: see
    /// [`Directory::drop_revoked`]). A registry that cannot be read, or that vanished after
    /// it was seen, keeps the set as it was and is reported once, then read again when it
    /// next changes.
    pub fn refresh_revocations(&mut self) -> Result<bool, DirectoryError> {
        let path = Registry::path(&self.home);
        let now = stamp_of(&path);
        if now == self.registry_stamp {
            return Ok(false);
        }
        let seen_before = self.registry_stamp.is_some();
        self.registry_stamp = now;
        if now.is_none() && seen_before {
            return Err(DirectoryError::Load(format!(
                "{} is gone; the revocations read before are kept",
                path.display()
            )));
        }
        let revoked = read_revoked(&self.home)?;
        let changed = revoked != self.revoked;
        self.revoked = revoked;
        Ok(changed)
    }

    /// Whether the certificate with this serial was revoked at or before `at_ms`. Entries
    /// published before a revocation stay verifiable when read back from the audit stream's
    /// archive (`at_ms` = when they were published); live use passes the current time.
    pub(super) fn is_revoked(&self, serial: &str, at_ms: u64) -> bool {
        self.revoked.get(serial).is_some_and(|&when| when <= at_ms)
    }

    /// Checks an entry; returns its key only if every check passes. A service's entry must be
    /// certified by the AI-App CA for `<service>.local`; an auditor's or an operator's
    /// (`urn:ozone:auditor:…`, `urn:ozone:operator:…`) by the User CA for exactly that URN.
    pub fn verify(&self, entry: &DirectoryEntry, now_ms: u64) -> Result<PublicKey, DirectoryError> {
        self.verify_entry(entry, now_ms).map(|(key, _)| key)
    }

    /// [`DirectoryTrust::verify`], also giving the certificate's serial (as `serial_key`).
    pub(super) fn verify_entry(
        &self,
        entry: &DirectoryEntry,
        now_ms: u64,
    ) -> Result<(PublicKey, String), DirectoryError> {
        let service = entry.service.clone();
        if entry.signature.is_empty() {
            return Err(DirectoryError::Unsigned(service));
        }
        if entry.not_after_ms <= now_ms {
            return Err(DirectoryError::Expired(service));
        }
        let untrusted = |detail: String| DirectoryError::UntrustedCertificate {
            service: service.clone(),
            detail,
        };
        let der = CertificateDer::from(entry.certificate.as_slice());
        let ee = webpki::EndEntityCert::try_from(&der).map_err(|e| untrusted(format!("{e:?}")))?;
        let algs = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_millis(now_ms));
        // A component's entry is certified by the AI-App CA for `<name>.local`; anyone else's
        // (auditors, operators: a URN) by the User CA for exactly that URN. Devices hold
        // User-CA certificates too but publish no keys: their URNs are nobody's entry.
        let auditor = entry.service.starts_with(AUDITOR_PREFIX);
        let person = auditor || entry.service.starts_with(OPERATOR_PREFIX);
        let intermediate = if person {
            &self.user_intermediate
        } else {
            &self.intermediate
        };
        ee.verify_for_usage(
            algs,
            &self.anchors,
            std::slice::from_ref(intermediate),
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| untrusted(format!("{e:?}")))?;
        let (certified, serial, cert_not_after_ms) = certified_names_and_serial(&entry.certificate);
        if self.is_revoked(&serial, now_ms) {
            return Err(DirectoryError::Revoked { service, serial });
        }
        let expected = if person {
            entry.service.clone()
        } else {
            format!("{}.local", entry.service)
        };
        if !certified.contains(&expected) {
            return Err(DirectoryError::WrongService {
                claimed: service,
                certified,
            });
        }
        let msg = signed_bytes(
            &entry.service,
            entry.epoch,
            entry.not_after_ms,
            &entry.public,
        );
        ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, &msg, &entry.signature)
            .map_err(|_| DirectoryError::BadSignature(service.clone()))?;
        // Judged after the signature: an unsigned or substituted entry is reported as such.
        self.check_lifetime(entry, auditor, cert_not_after_ms, now_ms)?;
        let key =
            PublicKey::from_bytes(entry.public).map_err(|e| DirectoryError::BadKey(service, e))?;
        Ok((key, serial))
    }
}

impl DirectoryTrust {
    /// An entry's epoch and expiry must be ones its signer could honestly publish now: the
    /// key expires no later than the certificate vouching for it, and (with the rotation
    /// known) a service's epoch is at most one ahead of the clock's and its expiry within
    /// that epoch's grace window.
    fn check_lifetime(
        &self,
        entry: &DirectoryEntry,
        auditor: bool,
        cert_not_after_ms: u64,
        now_ms: u64,
    ) -> Result<(), DirectoryError> {
        let too_late = |limit: u64, what: &'static str| DirectoryError::ExpiryTooLate {
            service: entry.service.clone(),
            not_after_ms: entry.not_after_ms,
            limit,
            what,
        };
        if entry.not_after_ms > cert_not_after_ms {
            return Err(too_late(cert_not_after_ms, "its certificate's expiry"));
        }
        let Some(rotation) = self.rotation.filter(|_| !auditor) else {
            return Ok(());
        };
        let current = rotation.epoch_at(now_ms);
        if entry.epoch > current.saturating_add(1) {
            return Err(DirectoryError::EpochNotCurrent {
                service: entry.service.clone(),
                epoch: entry.epoch,
                current,
            });
        }
        // No overflow: the epoch is at most one past the clock's.
        let window_end = rotation.retire_at(entry.epoch);
        if entry.not_after_ms > window_end {
            return Err(too_late(window_end, "the end of its epoch's grace window"));
        }
        Ok(())
    }
}

/// DNS names and URIs in the certificate's subjectAltName, its serial (as `serial_key`), and
/// when it expires (Unix ms; 0 if it cannot be read, which then refuses every expiry).
pub(super) fn certified_names_and_serial(der: &[u8]) -> (Vec<String>, String, u64) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return (Vec::new(), String::new(), 0);
    };
    let serial = serial_key(&hex::encode(cert.tbs_certificate.raw_serial()));
    let not_after_ms = u64::try_from(cert.validity().not_after.timestamp())
        .unwrap_or(0)
        .saturating_mul(1000);
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return (Vec::new(), serial, not_after_ms);
    };
    let names = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    (names, serial, not_after_ms)
}
