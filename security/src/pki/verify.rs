//! `ozone pki verify`: chains, expiry, key/certificate match and file permissions, each
//! problem reported with what is wrong and how to fix it.

use super::{CaKind, CertificateAuthorities, IdentityFiles, Registry, SERVER_STEM};
use crate::{keyfile, passphrase, Home};
use ozone_bus_schemas::{Identity, IdentityKind};
use rcgen::PublicKeyData;
use rustls_pki_types::{pem::PemObject, CertificateDer, UnixTime};
use std::path::Path;
use std::time::Duration;
use webpki::{EndEntityCert, KeyUsage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem: where, what is wrong, and what to run to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub subject: String,
    pub problem: String,
    pub fix: String,
}

struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, severity: Severity, subject: &str, problem: String, fix: String) {
        self.findings.push(Finding {
            severity,
            subject: subject.to_string(),
            problem,
            fix,
        });
    }
    fn error(&mut self, subject: &str, problem: String, fix: String) {
        self.add(Severity::Error, subject, problem, fix);
    }
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a certificate from {}: {e}", path.display()))
}

fn explain(err: &webpki::Error) -> String {
    use webpki::Error::*;
    match err {
        CertExpired { .. } => "the certificate has expired".into(),
        CertNotValidYet { .. } => "the certificate is not valid yet (check the clock)".into(),
        InvalidSignatureForPublicKey | SignatureAlgorithmMismatch => {
            "its signature does not verify: the file was modified or signed by another CA".into()
        }
        UnknownIssuer => "it was not issued by the expected CA".into(),
        RequiredEkuNotFoundContext(_) => "it lacks the extended key usage its role needs".into(),
        BadDer | BadDerTime | TrailingData(_) => {
            "it is not valid DER: the file is corrupt or was modified".into()
        }
        other => format!("it does not verify ({other:?})"),
    }
}

/// Days left until the certificate's notAfter (negative once expired).
fn days_left(der: &[u8], now: i64) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((cert.validity().not_after.timestamp() - now) / 86_400)
}

fn spki_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

fn check_mode(report: &mut Report, path: &Path, allowed: u32) {
    if let Ok(mode) = keyfile::mode_of(path) {
        if mode & !allowed != 0 {
            report.error(
                &path.display().to_string(),
                format!("permissions {mode:04o} are looser than {allowed:04o}: others could read secrets"),
                format!("chmod {allowed:o} {}", path.display()),
            );
        }
    }
}

/// What every leaf is checked against.
struct LeafCheck<'a> {
    anchors: &'a [rustls_pki_types::TrustAnchor<'a>],
    now: UnixTime,
    renew_within: Duration,
}

fn check_leaf(
    ctx: &LeafCheck<'_>,
    report: &mut Report,
    name: &str,
    files: &IdentityFiles,
    issuer: (&CertificateDer<'_>, KeyUsage),
    fix_reissue: &str,
) {
    let LeafCheck {
        anchors,
        now,
        renew_within,
    } = *ctx;
    let (intermediate, usage) = issuer;
    for path in [&files.cert, &files.key] {
        if !path.exists() {
            report.error(
                name,
                format!("{} is missing", path.display()),
                fix_reissue.to_string(),
            );
            return;
        }
    }
    let der = match read_cert(&files.cert) {
        Ok(d) => d,
        Err(e) => return report.error(name, e, fix_reissue.to_string()),
    };
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let verified = EndEntityCert::try_from(&der).and_then(|ee| {
        ee.verify_for_usage(
            algs,
            anchors,
            std::slice::from_ref(intermediate),
            now,
            usage,
            None,
            None,
        )
        .map(|_| ())
    });
    if let Err(e) = verified {
        report.error(
            name,
            format!("{}: {}", files.cert.display(), explain(&e)),
            fix_reissue.to_string(),
        );
    } else if let Some(days) = days_left(&der, now.as_secs() as i64) {
        if days * 86_400 < renew_within.as_secs() as i64 {
            report.add(
                Severity::Warning,
                name,
                format!("the certificate expires in {days} days"),
                "ozone pki renew (ozone up also renews automatically)".into(),
            );
        }
    }
    check_mode(report, &files.key, 0o600);
    let key = std::fs::read_to_string(&files.key)
        .ok()
        .and_then(|pem| rcgen::KeyPair::from_pem(&pem).ok());
    match (key, spki_of(&der)) {
        (None, _) => report.error(
            name,
            format!("{} is not a readable private key", files.key.display()),
            fix_reissue.to_string(),
        ),
        (Some(key), Some(spki)) if key.subject_public_key_info() != spki => report.error(
            name,
            format!(
                "{} does not match the public key in {}",
                files.key.display(),
                files.cert.display()
            ),
            fix_reissue.to_string(),
        ),
        _ => {}
    }
}

/// Checks the whole PKI of a home; an empty list means all is well.
pub fn verify(home: &Home, renew_within: Duration) -> Vec<Finding> {
    let mut report = Report {
        findings: Vec::new(),
    };
    let cas = CertificateAuthorities::new(home);
    let now = UnixTime::now();
    let root = match read_cert(&cas.cert_path(CaKind::Root)) {
        Ok(r) => r,
        Err(e) => {
            report.error("root CA", e, "ozone init".into());
            return report.findings;
        }
    };
    let anchor = match webpki::anchor_from_trusted_cert(&root) {
        Ok(a) => a.to_owned(),
        Err(e) => {
            report.error(
                "root CA",
                format!("cannot use the root certificate: {}", explain(&e)),
                "restore security/ca from a backup".into(),
            );
            return report.findings;
        }
    };
    if let Some(days) = days_left(&root, now.as_secs() as i64).filter(|d| *d < 365) {
        report.add(
            Severity::Warning,
            "root CA",
            format!("the root expires in {days} days"),
            "plan the root rollover described in docs/pki.md".into(),
        );
    }
    let anchors = [anchor];
    let passphrase = passphrase::resolve(home, false).ok();
    if passphrase.is_none() {
        report.add(
            Severity::Warning,
            "CA passphrase",
            "no CA passphrase available: CA keys were not test-decrypted".into(),
            format!("set {}", passphrase::ENV_PASSPHRASE_FILE),
        );
    }
    if let Some((path, _)) = passphrase::file_mode(home) {
        check_mode(&mut report, &path, 0o600);
    }
    for kind in [CaKind::Root, CaKind::AiApp, CaKind::User] {
        let key = cas.key_path(kind);
        let name = format!("{} CA", kind.stem());
        check_mode(&mut report, &key, 0o600);
        match keyfile::is_encrypted(&key) {
            Ok(true) => {}
            Ok(false) => report.error(
                &name,
                format!("{} is stored unencrypted", key.display()),
                "re-create the CA with ozone init on a new home".into(),
            ),
            Err(e) => report.error(
                &name,
                format!("{}: {e}", key.display()),
                "restore security/ca from a backup".into(),
            ),
        }
        if let (Some(pass), Ok(der)) = (&passphrase, read_cert(&cas.cert_path(kind))) {
            match keyfile::read_encrypted(&key, pass)
                .ok()
                .and_then(|k| rcgen::KeyPair::try_from(k.as_slice()).ok())
            {
                Some(k) if Some(k.subject_public_key_info()) != spki_of(&der) => report.error(
                    &name,
                    format!("{} does not match its certificate", key.display()),
                    "restore security/ca from a backup".into(),
                ),
                None => report.error(
                    &name,
                    format!(
                        "{} cannot be decrypted with the configured passphrase",
                        key.display()
                    ),
                    format!(
                        "set {} to the passphrase used at init",
                        passphrase::ENV_PASSPHRASE_FILE
                    ),
                ),
                _ => {}
            }
        }
    }
    for (dir, mode) in home.protected_dirs() {
        check_mode(&mut report, &dir, mode);
    }
    let intermediate = |kind| read_cert(&cas.cert_path(kind));
    let (ai_app, user) = match (intermediate(CaKind::AiApp), intermediate(CaKind::User)) {
        (Ok(a), Ok(u)) => (a, u),
        (Err(e), _) | (_, Err(e)) => {
            report.error("intermediate CA", e, "ozone init".into());
            return report.findings;
        }
    };
    // Intermediates' signatures are checked by every leaf chain below; expiry is named here
    // so the message points at the CA rather than at each leaf.
    for (kind, der) in [(CaKind::AiApp, &ai_app), (CaKind::User, &user)] {
        if days_left(der, now.as_secs() as i64).is_some_and(|d| d < 0) {
            report.error(
                &format!("{} CA", kind.stem()),
                "the intermediate CA has expired".into(),
                "ozone pki renew".into(),
            );
        }
    }
    let server = IdentityFiles::for_stem(home, SERVER_STEM);
    let ctx = LeafCheck {
        anchors: &anchors,
        now,
        renew_within,
    };
    check_leaf(
        &ctx,
        &mut report,
        SERVER_STEM,
        &server,
        (&ai_app, KeyUsage::server_auth()),
        "ozone pki renew --within 36500",
    );
    let registry = match Registry::load(home) {
        Ok(r) => r,
        Err(e) => {
            report.error(
                "identity registry",
                e.to_string(),
                "restore security/identities.json from a backup".into(),
            );
            return report.findings;
        }
    };
    for rec in registry.identities.iter().filter(|r| r.is_active()) {
        let id: &Identity = &rec.identity;
        let files = IdentityFiles::of(home, id);
        let ca_der = if id.kind == IdentityKind::Component {
            &ai_app
        } else {
            &user
        };
        let fix = format!("ozone pki issue {} {}", id.kind.as_str(), id.name);
        check_leaf(
            &ctx,
            &mut report,
            &id.to_string(),
            &files,
            (ca_der, KeyUsage::client_auth()),
            &fix,
        );
    }
    report.findings
}
