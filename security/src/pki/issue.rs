//! Issuing leaf certificates: components, the NATS server, people, devices, auditors.

use super::ca::{random_serial, seed_dn};
use super::{
    io_err, CaKind, CertificateAuthorities, IdentityFiles, IdentityRecord, PkiError, Registry,
    SERVER_STEM,
};
use crate::{keyfile, Home};
use ozone_bus_schemas::{Identity, IdentityKind};
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
    PKCS_ECDSA_P256_SHA256,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use time::{Duration, OffsetDateTime};

/// Knobs of one issuance. Tests use `not_after` in the past and `client_auth: false` to make
/// certificates the server must refuse.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    pub validity: std::time::Duration,
    /// Overrides the end of validity (tests only make expired certificates this way).
    pub not_after: Option<OffsetDateTime>,
    pub client_auth: bool,
}

impl IssueOptions {
    pub fn valid_for(validity: std::time::Duration) -> IssueOptions {
        IssueOptions {
            validity,
            not_after: None,
            client_auth: true,
        }
    }
}

/// What an issuance produced.
#[derive(Debug, Clone)]
pub struct Issued {
    pub files: IdentityFiles,
    pub record: IdentityRecord,
}

fn ia5(s: String) -> Result<rcgen::string::Ia5String, PkiError> {
    Ok(rcgen::string::Ia5String::try_from(s)?)
}

fn loopback_sans() -> Vec<SanType> {
    vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

/// Subject, SANs and usages per kind. Every identity with a NATS user carries that user
/// (per issuance: [`Identity::nats_user`]) as a URI SAN. Components also carry the seed's
/// DNS name (`spark.local`), which the key directory checks; everyone else their URN.
///
/// Only the NATS server's certificate is good for serving TLS: a component's is for client
/// authentication only and names no host (no `localhost`, no loopback address), so a
/// component that binds the bus's port while nats-server restarts cannot pass as the server
/// — and clients check the server's own name besides (`crate::tls`).
fn leaf_params(
    identity: &Identity,
    serial_hex: &str,
    opts: &IssueOptions,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    match identity.as_component() {
        Some(c) => {
            params.distinguished_name = seed_dn(
                &format!("{} AI App", c.name().to_uppercase()),
                &c.dns_name(),
            );
            params.subject_alt_names = vec![SanType::DnsName(ia5(c.dns_name())?)];
        }
        None => {
            let unit = match identity.kind {
                IdentityKind::User => "Users",
                IdentityKind::Device => "Devices",
                IdentityKind::Operator => "Operators",
                _ => "External Tools",
            };
            params.distinguished_name = seed_dn(unit, &identity.name);
            params.subject_alt_names = vec![SanType::URI(ia5(identity.urn())?)];
        }
    }
    if let Some(user) = identity.nats_user(serial_hex) {
        params.subject_alt_names.push(SanType::URI(ia5(user)?));
    }
    params.extended_key_usages = vec![if opts.client_auth {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::EmailProtection
    }];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    Ok(params)
}

fn issuing_ca(kind: IdentityKind) -> CaKind {
    match kind {
        IdentityKind::Component => CaKind::AiApp,
        _ => CaKind::User,
    }
}

/// Signs `params` for a fresh key and writes key (0600), certificate and chain. The key is
/// replaced atomically, so renewing never leaves a half-written key behind.
fn sign_and_write(
    home: &Home,
    files: &IdentityFiles,
    mut params: CertificateParams,
    ca: CaKind,
    issuer: &Issuer<'static, KeyPair>,
    opts: &IssueOptions,
) -> Result<(String, i64), PkiError> {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = match opts.not_after {
        Some(t) => t,
        None => now + Duration::try_from(opts.validity).unwrap_or(Duration::days(365)),
    };
    if opts.not_after.is_some_and(|t| t <= params.not_before) {
        params.not_before = params.not_after - Duration::days(1);
    }
    let serial = match params.serial_number.take() {
        Some(serial) => serial,
        None => random_serial()?,
    };
    let serial_hex = hex::encode(serial.to_bytes());
    params.serial_number = Some(serial);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, issuer)?;
    let cas = CertificateAuthorities::new(home);
    let chain = format!(
        "{}{}{}",
        cert.pem(),
        cas.cert_pem(ca)?,
        cas.cert_pem(CaKind::Root)?
    );
    keyfile::write_secret(&files.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, cert.pem()).map_err(io_err(&files.cert))?;
    std::fs::write(&files.chain, chain).map_err(io_err(&files.chain))?;
    Ok((serial_hex, params.not_after.unix_timestamp()))
}

/// Issues (or re-issues, with a new key) an identity's certificate and records it.
pub fn issue(
    home: &Home,
    identity: &Identity,
    opts: &IssueOptions,
    passphrase: &[u8],
) -> Result<Issued, PkiError> {
    let mut signers = Signers::new(home, passphrase);
    let mut registry = Registry::load(home)?;
    if registry.get(identity).is_some_and(|r| !r.is_active()) {
        // Re-issued after a revocation: a fresh chain, even if the revoked process wrote its
        // ring back after `revoke` destroyed it (it rewrites the file when it rotates).
        let ring = crate::envelope::keyring_file::path(home, identity);
        crate::envelope::keyring_file::destroy(home, identity).map_err(io_err(&ring))?;
    }
    let issued = signers.issue(identity, opts, &mut registry)?;
    registry.save(home)?;
    Ok(issued)
}

/// Decrypts each intermediate CA key at most once (scrypt makes every decryption cost a
/// noticeable fraction of a second) while issuing several certificates.
pub(crate) struct Signers<'a> {
    home: &'a Home,
    passphrase: &'a [u8],
    ai_app: Option<Issuer<'static, KeyPair>>,
    user: Option<Issuer<'static, KeyPair>>,
}

impl<'a> Signers<'a> {
    pub(crate) fn new(home: &'a Home, passphrase: &'a [u8]) -> Signers<'a> {
        Signers {
            home,
            passphrase,
            ai_app: None,
            user: None,
        }
    }

    fn get(&mut self, ca: CaKind) -> Result<&Issuer<'static, KeyPair>, PkiError> {
        let slot = if ca == CaKind::User {
            &mut self.user
        } else {
            &mut self.ai_app
        };
        if slot.is_none() {
            *slot = Some(CertificateAuthorities::new(self.home).issuer(ca, self.passphrase)?);
        }
        slot.as_ref().ok_or_else(|| PkiError::NoCa {
            path: ca.stem().to_string(),
        })
    }

    /// Issues one identity and records it in `registry` (the caller saves the registry).
    pub(crate) fn issue(
        &mut self,
        identity: &Identity,
        opts: &IssueOptions,
        registry: &mut Registry,
    ) -> Result<Issued, PkiError> {
        let ca = issuing_ca(identity.kind);
        let home = self.home;
        let files = IdentityFiles::of(home, identity);
        // The serial is chosen first: the certificate names its NATS user after it.
        let serial = random_serial()?;
        let mut params = leaf_params(identity, &hex::encode(serial.to_bytes()), opts)?;
        params.serial_number = Some(serial);
        let issuer = self.get(ca)?;
        let (serial, not_after) = sign_and_write(home, &files, params, ca, issuer, opts)?;
        let record = IdentityRecord {
            identity: identity.clone(),
            serial,
            not_after,
            revoked_at: None,
            earlier_serials: Vec::new(),
        };
        registry.record(record.clone());
        Ok(Issued { files, record })
    }

    /// Issues the NATS server's certificate (server usage; loopback and `nats.local` names).
    pub(crate) fn issue_server(
        &mut self,
        validity: std::time::Duration,
    ) -> Result<IdentityFiles, PkiError> {
        let home = self.home;
        let files = IdentityFiles::for_stem(home, SERVER_STEM);
        let mut params = CertificateParams::default();
        params.distinguished_name = seed_dn("NATS", crate::tls::NATS_SERVER_NAME);
        params.subject_alt_names = vec![
            SanType::DnsName(ia5(crate::tls::NATS_SERVER_NAME.into())?),
            SanType::DnsName(ia5("localhost".into())?),
        ];
        params.subject_alt_names.extend(loopback_sans());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let opts = IssueOptions::valid_for(validity);
        let issuer = self.get(CaKind::AiApp)?;
        sign_and_write(home, &files, params, CaKind::AiApp, issuer, &opts)?;
        Ok(files)
    }
}

/// Removes the private key of a revoked identity: it can never be used again.
pub fn destroy_key(home: &Home, identity: &Identity) -> Result<(), PkiError> {
    let files = IdentityFiles::of(home, identity);
    match std::fs::remove_file(&files.key) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&files.key)(e)),
        _ => Ok(()),
    }
}
