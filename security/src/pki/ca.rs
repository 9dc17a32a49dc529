//! The three certificate authorities and the trust bundle.

use super::{io_err, PkiError};
use crate::{keyfile, Home};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use std::fs;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

/// Which CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKind {
    Root,
    /// Issues ecosystem components and the NATS server (the seed's AI-APP-INTERMEDIATE-CA).
    AiApp,
    /// Issues people, devices and external tools (the seed's USER-INTERMEDIATE-CA).
    User,
}

impl CaKind {
    pub fn stem(self) -> &'static str {
        match self {
            CaKind::Root => "root-ca",
            CaKind::AiApp => "ai-app-ca",
            CaKind::User => "user-ca",
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            CaKind::Root => "OZONE STUDIO Root CA",
            CaKind::AiApp => "OZONE STUDIO AI App CA",
            CaKind::User => "OZONE STUDIO User CA",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            CaKind::Root => "Certificate Authority",
            CaKind::AiApp => "AI App Certificate Authority",
            CaKind::User => "User Certificate Authority",
        }
    }

    /// Root 10 years, intermediates 5 years, as in the seed.
    fn validity(self) -> Duration {
        match self {
            CaKind::Root => Duration::days(3650),
            CaKind::AiApp | CaKind::User => Duration::days(1825),
        }
    }
}

/// The CA files of a home.
#[derive(Debug, Clone)]
pub struct CertificateAuthorities {
    home: Home,
}

pub(crate) fn seed_dn(unit: &str, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "Digital");
    dn.push(DnType::LocalityName, "Ecosystem");
    dn.push(DnType::OrganizationName, "OZONE STUDIO");
    dn.push(DnType::OrganizationalUnitName, unit);
    dn.push(DnType::CommonName, common_name);
    dn
}

pub(crate) fn random_serial() -> Result<rcgen::SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Invalid {
            path: "serial number".into(),
            detail: "the system random generator failed".into(),
        })?;
    bytes[0] &= 0x7f; // positive, as RFC 5280 requires
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// The trust bundle's file name (in `security/ca`, and as a credential).
pub const TRUST_BUNDLE: &str = "trust-bundle.crt";

impl CertificateAuthorities {
    pub fn new(home: &Home) -> CertificateAuthorities {
        CertificateAuthorities { home: home.clone() }
    }

    pub fn cert_path(&self, kind: CaKind) -> PathBuf {
        self.home.ca_dir().join(format!("{}.crt", kind.stem()))
    }

    pub fn key_path(&self, kind: CaKind) -> PathBuf {
        self.home.ca_dir().join(format!("{}.key", kind.stem()))
    }

    /// Every root the ecosystem trusts. NATS and all clients load this file, never the root
    /// directly, so a root rollover only adds and later removes a certificate here.
    pub fn trust_bundle_path(&self) -> PathBuf {
        self.home.ca_dir().join(TRUST_BUNDLE)
    }

    /// The trust bundle a process reads: the one its service manager handed it
    /// ([`crate::credentials`]) if any, else the home's.
    pub fn trust_bundle_to_read(&self) -> PathBuf {
        crate::credentials::credential(TRUST_BUNDLE).unwrap_or_else(|| self.trust_bundle_path())
    }

    /// A CA's certificate as a process reads it: handed over (named as in `security/ca`) or
    /// the home's.
    pub fn cert_to_read(&self, kind: CaKind) -> PathBuf {
        crate::credentials::credential(&format!("{}.crt", kind.stem()))
            .unwrap_or_else(|| self.cert_path(kind))
    }

    /// The public CA files a component reads (credential name, file in the home): the trust
    /// bundle and the two intermediates (key-directory entries are checked against them).
    /// What a service manager hands a component that cannot read `security/ca`.
    pub fn component_trust_files(&self) -> Vec<(String, PathBuf)> {
        let mut files = vec![(TRUST_BUNDLE.to_string(), self.trust_bundle_path())];
        for kind in [CaKind::AiApp, CaKind::User] {
            files.push((format!("{}.crt", kind.stem()), self.cert_path(kind)));
        }
        files
    }

    /// Creates whichever CA is missing (root first); never touches an existing one. Returns
    /// the CAs it created.
    pub fn ensure(&self, passphrase: &[u8]) -> Result<Vec<CaKind>, PkiError> {
        let mut created = Vec::new();
        if !self.cert_path(CaKind::Root).exists() {
            self.create_root(passphrase)?;
            created.push(CaKind::Root);
        }
        for kind in [CaKind::AiApp, CaKind::User] {
            if !self.cert_path(kind).exists() {
                self.create_intermediate(kind, passphrase)?;
                created.push(kind);
            }
        }
        if !self.trust_bundle_path().exists() {
            let root = self.cert_path(CaKind::Root);
            fs::copy(&root, self.trust_bundle_path()).map_err(io_err(&root))?;
        }
        Ok(created)
    }

    fn params(kind: CaKind) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = seed_dn(kind.unit(), kind.common_name());
        params.is_ca = match kind {
            CaKind::Root => IsCa::Ca(BasicConstraints::Unconstrained),
            // An intermediate signs leaves only, never another CA.
            CaKind::AiApp | CaKind::User => IsCa::Ca(BasicConstraints::Constrained(0)),
        };
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + kind.validity();
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = kind != CaKind::Root;
        Ok(params)
    }

    fn create_root(&self, passphrase: &[u8]) -> Result<(), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = Self::params(CaKind::Root)?.self_signed(&key)?;
        self.write(CaKind::Root, &cert.pem(), &key, passphrase)
    }

    fn create_intermediate(&self, kind: CaKind, passphrase: &[u8]) -> Result<(), PkiError> {
        let root = self.issuer(CaKind::Root, passphrase)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = Self::params(kind)?.signed_by(&key, &root)?;
        self.write(kind, &cert.pem(), &key, passphrase)
    }

    fn write(
        &self,
        kind: CaKind,
        pem: &str,
        key: &KeyPair,
        passphrase: &[u8],
    ) -> Result<(), PkiError> {
        // Key first: a certificate without its key would make `ensure` skip the CA forever.
        keyfile::write_encrypted(&self.key_path(kind), key.serialized_der(), passphrase)?;
        let path = self.cert_path(kind);
        fs::write(&path, pem).map_err(io_err(&path))?;
        Ok(())
    }

    /// The CA's certificate as PEM.
    pub fn cert_pem(&self, kind: CaKind) -> Result<String, PkiError> {
        let path = self.cert_path(kind);
        if !path.exists() {
            return Err(PkiError::NoCa {
                path: path.display().to_string(),
            });
        }
        fs::read_to_string(&path).map_err(io_err(&path))
    }

    /// Loads a CA as an rcgen issuer (decrypting its key).
    pub(crate) fn issuer(
        &self,
        kind: CaKind,
        passphrase: &[u8],
    ) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let pem = self.cert_pem(kind)?;
        let der = keyfile::read_encrypted(&self.key_path(kind), passphrase)?;
        let key = KeyPair::try_from(der.as_slice())?;
        Ok(Issuer::from_ca_cert_pem(&pem, key)?)
    }
}
