//! The PKI end to end on real files: create, verify, break in each documented way, verify.

use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_security::pki::{
    self, CaKind, CertificateAuthorities, IdentityFiles, IssueOptions, Severity,
};
use ozone_security::{passphrase, Home, SecurityConfig};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

type R = Result<(), Box<dyn std::error::Error>>;

fn fresh() -> Result<(tempfile::TempDir, Home, SecurityConfig), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let home = Home::new(tmp.path().join("home"));
    home.create_layout()?;
    let cfg = SecurityConfig::load(&home, &[])?;
    pki::ensure(&home, &cfg)?;
    Ok((tmp, home, cfg))
}

fn errors(home: &Home) -> Vec<String> {
    pki::verify(home, Duration::from_secs(30 * 86_400))
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{}: {} (fix: {})", f.subject, f.problem, f.fix))
        .collect()
}

fn snapshot(home: &Home) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [home.ca_dir(), home.keys_dir(), home.certs_dir()] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.push((
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn a_fresh_pki_verifies_and_ensure_is_idempotent() -> R {
    let (_tmp, home, cfg) = fresh()?;
    assert_eq!(errors(&home), Vec::<String>::new());
    let before = snapshot(&home);
    assert!(before.len() > 20);
    let again = pki::ensure(&home, &cfg)?;
    assert_eq!(again, pki::EnsureReport::default());
    assert_eq!(snapshot(&home), before, "a second ensure changed a file");
    for (path, _) in before
        .iter()
        .filter(|(p, _)| p.ends_with(".key") || p.ends_with(".passphrase"))
    {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}");
    }
    Ok(())
}

#[test]
fn every_component_chains_to_the_root_through_the_ai_app_ca() -> R {
    let (_tmp, home, _cfg) = fresh()?;
    let cas = CertificateAuthorities::new(&home);
    let ai_app = std::fs::read_to_string(cas.cert_path(CaKind::AiApp))?;
    let root = std::fs::read_to_string(cas.cert_path(CaKind::Root))?;
    let ai_app_subject = x509_subject(&ai_app)?;
    for c in Component::ALL {
        let files = IdentityFiles::of(&home, &Identity::component(c));
        let chain = std::fs::read_to_string(&files.chain)?;
        assert!(
            chain.ends_with(&format!("{ai_app}{root}")),
            "{c}: chain is not leaf+ai-app+root"
        );
        let leaf = std::fs::read_to_string(&files.cert)?;
        assert_eq!(
            x509_issuer(&leaf)?,
            ai_app_subject,
            "{c} not issued by the AI-App CA"
        );
    }
    Ok(())
}

fn parse<T>(
    pem: &str,
    f: impl Fn(&x509_parser::certificate::X509Certificate) -> T,
) -> Result<T, Box<dyn std::error::Error>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())?;
    let cert = p.parse_x509()?;
    Ok(f(&cert))
}
fn x509_subject(pem: &str) -> Result<String, Box<dyn std::error::Error>> {
    parse(pem, |c| c.subject().to_string())
}
fn x509_issuer(pem: &str) -> Result<String, Box<dyn std::error::Error>> {
    parse(pem, |c| c.issuer().to_string())
}

#[test]
fn verify_names_a_tampered_certificate() -> R {
    let (_tmp, home, _cfg) = fresh()?;
    let files = IdentityFiles::of(&home, &Identity::component(Component::Forge));
    let pem = std::fs::read_to_string(&files.cert)?;
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())?;
    let mut der = p.contents.clone();
    // Flip a bit inside the subject name: still parses, no longer matches the signature.
    let pos = der
        .windows(5)
        .position(|w| w == b"forge")
        .ok_or("no name in cert")?;
    der[pos] ^= 0x01;
    let b64 = pem_encode(&der);
    std::fs::write(&files.cert, b64)?;
    let errs = errors(&home);
    assert!(
        errs.iter()
            .any(|e| e.contains("forge") && e.contains("signature does not verify")),
        "{errs:?}"
    );
    Ok(())
}

fn pem_encode(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

#[test]
fn verify_names_an_expired_certificate() -> R {
    let (_tmp, home, _cfg) = fresh()?;
    let pass = passphrase::resolve(&home, false)?;
    let id = Identity::new(IdentityKind::Device, "old-laptop")?;
    let mut opts = IssueOptions::valid_for(Duration::from_secs(86_400));
    opts.not_after = Some(time::OffsetDateTime::now_utc() - time::Duration::days(2));
    pki::issue(&home, &id, &opts, &pass)?;
    let errs = errors(&home);
    assert!(
        errs.iter()
            .any(|e| e.contains("old-laptop") && e.contains("expired")),
        "{errs:?}"
    );
    Ok(())
}

#[test]
fn verify_names_a_key_that_does_not_match() -> R {
    let (_tmp, home, _cfg) = fresh()?;
    let spark = IdentityFiles::of(&home, &Identity::component(Component::Spark));
    let zsei = IdentityFiles::of(&home, &Identity::component(Component::Zsei));
    std::fs::copy(&zsei.key, &spark.key)?;
    let errs = errors(&home);
    assert!(
        errs.iter()
            .any(|e| e.contains("spark") && e.contains("does not match")),
        "{errs:?}"
    );
    Ok(())
}

#[test]
fn verify_names_a_key_file_with_loose_permissions() -> R {
    let (_tmp, home, _cfg) = fresh()?;
    let files = IdentityFiles::of(&home, &Identity::component(Component::Nexus));
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644))?;
    let errs = errors(&home);
    assert!(
        errs.iter()
            .any(|e| e.contains("nexus.key") && e.contains("0644") && e.contains("chmod 600")),
        "{errs:?}"
    );
    Ok(())
}

#[test]
fn ca_keys_are_encrypted_and_need_the_passphrase() -> R {
    let (_tmp, home, _cfg) = fresh()?;
    let cas = CertificateAuthorities::new(&home);
    for kind in [CaKind::Root, CaKind::AiApp, CaKind::User] {
        let text = std::fs::read_to_string(cas.key_path(kind))?;
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{kind:?}"
        );
    }
    let err = ozone_security::keyfile::read_encrypted(
        &cas.key_path(CaKind::Root),
        b"not the passphrase at all",
    );
    assert!(err.is_err());
    Ok(())
}

#[test]
fn renew_reissues_only_what_expires_within_the_window_with_a_fresh_key() -> R {
    let (_tmp, home, cfg) = fresh()?;
    let pass = passphrase::resolve(&home, false)?;
    let id = Identity::new(IdentityKind::Device, "tablet")?;
    let old = pki::issue(
        &home,
        &id,
        &IssueOptions::valid_for(Duration::from_secs(10 * 86_400)),
        &pass,
    )?;
    let old_key = std::fs::read(&old.files.key)?;
    let components_before = snapshot(&home)
        .into_iter()
        .filter(|(p, _)| !p.contains("device-tablet"))
        .collect::<Vec<_>>();

    let renewed = pki::renew(&home, &cfg, Duration::from_secs(30 * 86_400))?;
    assert_eq!(renewed, vec!["device-tablet".to_string()]);
    let record = pki::Registry::load(&home)?
        .get(&id)
        .cloned()
        .ok_or("no record")?;
    assert_ne!(record.serial, old.record.serial);
    assert!(
        record.not_after > old.record.not_after + 300 * 86_400,
        "renewed for the configured validity"
    );
    assert_ne!(
        std::fs::read(&old.files.key)?,
        old_key,
        "renewal keeps the old key"
    );
    let after: Vec<_> = snapshot(&home)
        .into_iter()
        .filter(|(p, _)| !p.contains("device-tablet"))
        .collect();
    assert_eq!(
        after, components_before,
        "certificates far from expiry were touched"
    );
    assert_eq!(errors(&home), Vec::<String>::new());
    assert!(pki::renew(&home, &cfg, Duration::from_secs(30 * 86_400))?.is_empty());
    Ok(())
}
