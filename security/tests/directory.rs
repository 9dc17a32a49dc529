//! Key substitution: only entries signed by the named service's certificate key get into the
//! directory; everything else is refused with the reason (which the bus audits).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::{Component, Identity};
use ozone_security::envelope::{EnvelopeError, PublicKey, Rotation, SecretKeyPair, SenderKeys};
use ozone_security::keydir::{
    Directory, DirectoryEntry, DirectoryError, DirectoryTrust, ServiceSigner,
};
use ozone_security::pki::{self, IdentityFiles};
use ozone_security::{Home, SecurityConfig};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::{pem::PemObject, PrivateKeyDer};

mod common;

const NOW: u64 = 1_800_000_000_000;
const LATER: u64 = NOW + 25 * 3600 * 1000;

fn fresh_home() -> (tempfile::TempDir, Home) {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::new(tmp.path().join("h"));
    home.create_layout().unwrap();
    let cfg = SecurityConfig::load(&home, &[]).unwrap();
    pki::ensure(&home, &cfg).unwrap();
    (tmp, home)
}

fn signer(home: &Home, c: Component) -> ServiceSigner {
    ServiceSigner::load(home, &Identity::component(c)).unwrap()
}

/// Signs arbitrary bytes as docs/envelope.md specifies, bypassing the product's typed API
/// (which cannot even express a low-order key): what a hostile or buggy peer could publish.
fn sign_raw(home: &Home, c: Component, service: &str, public: [u8; 32]) -> DirectoryEntry {
    let files = IdentityFiles::of(home, &Identity::component(c));
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.secret_der(), &rng).unwrap();
    let mut msg = b"ozone/keydir/v1".to_vec();
    msg.push(service.len() as u8);
    msg.extend_from_slice(service.as_bytes());
    msg.extend_from_slice(&0u64.to_be_bytes());
    msg.extend_from_slice(&LATER.to_be_bytes());
    msg.extend_from_slice(&public);
    let cert = rustls_pki_types::CertificateDer::from_pem_file(&files.cert).unwrap();
    DirectoryEntry {
        service: service.into(),
        epoch: 0,
        not_after_ms: LATER,
        public,
        certificate: cert.to_vec(),
        signature: pair.sign(&rng, &msg).unwrap().as_ref().to_vec(),
    }
}

#[test]
fn a_properly_signed_entry_is_accepted_and_used() {
    let (_t, home) = fresh_home();
    let trust = DirectoryTrust::load(&home).unwrap();
    let key = SecretKeyPair::generate().unwrap();
    let entry = signer(&home, Component::Spark)
        .sign(0, LATER, key.public())
        .unwrap();
    let mut dir = Directory::default();
    let kid = dir.insert(&trust, &entry, NOW).unwrap();
    assert_eq!(kid, key.public().kid());
    assert_eq!(dir.current("spark", NOW), Some(*key.public()));
    assert_eq!(dir.sender_key("spark", &kid, NOW), Ok(*key.public()));
    assert!(
        matches!(
            dir.sender_key("spark", &kid, LATER),
            Err(EnvelopeError::SenderKeyExpired { .. })
        ),
        "a key past its entry's end authenticates nothing"
    );
    assert_eq!(
        dir.current("spark", LATER),
        None,
        "expired keys are not sealed to"
    );
    // The spec-following independent signer produces entries the product accepts.
    let raw = sign_raw(&home, Component::Spark, "spark", *key.public().as_bytes());
    assert!(trust.verify(&raw, NOW).is_ok());
}

#[test]
fn unsigned_substituted_misattributed_foreign_and_expired_entries_are_refused() {
    let (_t, home) = fresh_home();
    let (_t2, foreign) = fresh_home();
    let trust = DirectoryTrust::load(&home).unwrap();
    let genuine = SecretKeyPair::generate().unwrap();
    let attacker = SecretKeyPair::generate().unwrap();
    let spark = signer(&home, Component::Spark)
        .sign(0, LATER, genuine.public())
        .unwrap();
    let mut dir = Directory::default();

    let mut unsigned = spark.clone();
    unsigned.signature.clear();
    assert_eq!(
        dir.insert(&trust, &unsigned, NOW),
        Err(DirectoryError::Unsigned("spark".into()))
    );

    let mut substituted = spark.clone();
    substituted.public = *attacker.public().as_bytes();
    assert_eq!(
        dir.insert(&trust, &substituted, NOW),
        Err(DirectoryError::BadSignature("spark".into()))
    );

    // BRIDGE's certificate and key, claiming to be SPARK.
    let mut impostor = signer(&home, Component::Bridge)
        .sign(0, LATER, attacker.public())
        .unwrap();
    impostor.service = "spark".into();
    assert!(matches!(
        dir.insert(&trust, &impostor, NOW),
        Err(DirectoryError::WrongService { .. })
    ));

    // SPARK's certificate with a signature made by another key.
    let mut wrong_key = spark.clone();
    wrong_key.signature = signer(&home, Component::Bridge)
        .sign(0, LATER, genuine.public())
        .unwrap()
        .signature;
    assert_eq!(
        dir.insert(&trust, &wrong_key, NOW),
        Err(DirectoryError::BadSignature("spark".into()))
    );

    // A SPARK certificate from another installation's CA.
    let outsider = signer(&foreign, Component::Spark)
        .sign(0, LATER, attacker.public())
        .unwrap();
    assert!(matches!(
        dir.insert(&trust, &outsider, NOW),
        Err(DirectoryError::UntrustedCertificate { .. })
    ));

    assert_eq!(
        dir.insert(&trust, &spark, LATER),
        Err(DirectoryError::Expired("spark".into()))
    );
    assert_eq!(dir.current("spark", NOW), None, "a refused entry got in");
}

#[test]
fn wycheproof_low_order_keys_in_signed_entries_are_refused() {
    let (_t, home) = fresh_home();
    let trust = DirectoryTrust::load(&home).unwrap();
    let w = common::vectors("wycheproof-x25519_test.json");
    let mut refused = 0;
    for g in w["testGroups"].as_array().unwrap() {
        for t in g["tests"].as_array().unwrap() {
            if t["shared"].as_str() != Some(&"00".repeat(32)) {
                continue;
            }
            let public: [u8; 32] = hex::decode(t["public"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let entry = sign_raw(&home, Component::Spark, "spark", public);
            assert_eq!(
                trust.verify(&entry, NOW),
                Err(DirectoryError::BadKey(
                    "spark".into(),
                    EnvelopeError::LowOrderKey
                ))
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 31);
}

#[test]
fn auditor_entries_need_the_auditors_own_certificate() {
    let (_tmp, home) = fresh_home();
    let trust = DirectoryTrust::load(&home).unwrap();
    let console = Identity::new(
        ozone_bus_schemas::IdentityKind::Auditor,
        ozone_security::pki::CONSOLE_AUDITOR,
    )
    .unwrap();
    let entry =
        ozone_security::envelope::auditor_key::directory_entry(&home, &console, LATER).unwrap();
    assert_eq!(entry.service, "urn:ozone:auditor:console");
    let key_file = ozone_security::envelope::auditor_key::path(&home, &console);
    assert_eq!(
        ozone_security::keyfile::mode_of(&key_file).unwrap() & 0o777,
        0o600
    );
    let mut dir = Directory::default();
    dir.insert(&trust, &entry, NOW).unwrap();
    assert_eq!(
        dir.auditors(NOW),
        vec![PublicKey::from_bytes(entry.public).unwrap()]
    );

    // A component cannot publish a key in an auditor's name, nor an auditor in a component's.
    let by_spark = sign_raw(
        &home,
        Component::Spark,
        "urn:ozone:auditor:console",
        entry.public,
    );
    assert!(matches!(
        dir.insert(&trust, &by_spark, NOW),
        Err(DirectoryError::UntrustedCertificate { .. })
    ));
    let mut as_spark = entry.clone();
    as_spark.service = "spark".into();
    assert!(dir.insert(&trust, &as_spark, NOW).is_err());
    // Another auditor's certificate does not carry this auditor's URN.
    let mut renamed = entry;
    renamed.service = "urn:ozone:auditor:siem".into();
    assert!(dir.insert(&trust, &renamed, NOW).is_err());
    assert_eq!(dir.auditors(NOW).len(), 1);
}

#[test]
fn a_republished_epoch_replaces_the_previous_key() {
    // A service whose ring was recreated publishes a new key for the same epoch: senders must
    // seal to the new one only, and the old key no longer authenticates anything.
    let (_tmp, home) = fresh_home();
    let trust = DirectoryTrust::load(&home).unwrap();
    let spark = signer(&home, Component::Spark);
    let old = SecretKeyPair::generate().unwrap();
    let new = SecretKeyPair::generate().unwrap();
    let mut dir = Directory::default();
    dir.insert(&trust, &spark.sign(7, LATER, old.public()).unwrap(), NOW)
        .unwrap();
    dir.insert(&trust, &spark.sign(7, LATER, new.public()).unwrap(), NOW)
        .unwrap();
    assert_eq!(dir.current("spark", NOW), Some(*new.public()));
    assert!(matches!(
        dir.sender_key("spark", &old.public().kid(), NOW),
        Err(EnvelopeError::UnknownSender { .. })
    ));
    assert_eq!(
        dir.sender_key("spark", &new.public().kid(), NOW),
        Ok(*new.public())
    );
}

#[test]
fn a_sender_key_past_its_entry_end_authenticates_nothing() {
    // The entry stays in the directory (its service died before erasing it), but a message
    // sealed with its key after `not_after_ms` is refused: a key stolen later is worthless.
    let (_tmp, home) = fresh_home();
    let trust = DirectoryTrust::load(&home).unwrap();
    let sender = SecretKeyPair::generate().unwrap();
    let end = NOW + 60_000;
    let mut dir = Directory::default();
    dir.insert(
        &trust,
        &signer(&home, Component::Spark)
            .sign(0, end, sender.public())
            .unwrap(),
        NOW,
    )
    .unwrap();
    let me = vec![SecretKeyPair::generate().unwrap()];
    let mut sealer = ozone_security::envelope::Sealer::new(
        "spark",
        sender,
        ozone_security::envelope::SessionLimits::default(),
    );
    let mut opener = ozone_security::envelope::Opener::new(Default::default());
    let before = sealer
        .seal("spark.embed", 1, &[*me[0].public()], b"in time", end - 1)
        .unwrap();
    assert!(opener
        .open("spark.embed", &before, me.as_slice(), &dir, end - 1)
        .is_ok());
    let after = sealer
        .seal("spark.embed", 1, &[*me[0].public()], b"too late", end)
        .unwrap();
    assert!(matches!(
        opener.open("spark.embed", &after, me.as_slice(), &dir, end),
        Err(EnvelopeError::SenderKeyExpired { .. })
    ));
}

#[test]
fn a_revoked_services_entries_are_refused_and_dropped() {
    let (_t, home) = fresh_home();
    let mut trust = DirectoryTrust::load(&home).unwrap();
    let (spark_key, core_key) = (
        SecretKeyPair::generate().unwrap(),
        SecretKeyPair::generate().unwrap(),
    );
    let spark_entry = signer(&home, Component::Spark)
        .sign(0, LATER, spark_key.public())
        .unwrap();
    let core_entry = signer(&home, Component::Core)
        .sign(0, LATER, core_key.public())
        .unwrap();
    let mut dir = Directory::default();
    let spark_kid = dir.insert(&trust, &spark_entry, NOW).unwrap();
    dir.insert(&trust, &core_entry, NOW).unwrap();
    assert!(
        !trust.refresh_revocations().unwrap(),
        "an unchanged registry changes nothing"
    );

    pki::revoke(&home, &Identity::component(Component::Spark)).unwrap();
    assert!(trust.refresh_revocations().unwrap());
    let generation = dir.generation();
    assert_eq!(
        dir.drop_revoked(&trust, NOW),
        vec![("spark".to_string(), 0)]
    );
    assert_ne!(
        dir.generation(),
        generation,
        "cached recipients are recomputed"
    );
    assert!(matches!(
        dir.sender_key("spark", &spark_kid, NOW),
        Err(EnvelopeError::UnknownSender { .. })
    ));
    assert_eq!(dir.current("spark", NOW), None, "nothing is sealed to it");
    assert_eq!(dir.current("ozone-studio", NOW), Some(*core_key.public()));
    // Re-published, or seen by a process that starts after the revocation: refused.
    for t in [&trust, &DirectoryTrust::load(&home).unwrap()] {
        assert!(matches!(
            dir.insert(t, &spark_entry, NOW),
            Err(DirectoryError::Revoked { ref service, .. }) if service == "spark"
        ));
    }
    assert!(dir.drop_revoked(&trust, NOW).is_empty());
    assert!(!trust.refresh_revocations().unwrap());

    // A registry that cannot be read is reported once and keeps what was known.
    std::fs::write(pki::Registry::path(&home), b"not json").unwrap();
    assert!(matches!(
        trust.refresh_revocations(),
        Err(DirectoryError::Load(_))
    ));
    assert!(!trust.refresh_revocations().unwrap(), "reported once");
    assert!(matches!(
        dir.insert(&trust, &spark_entry, NOW),
        Err(DirectoryError::Revoked { .. })
    ));
}

#[test]
fn revocation_covers_renewed_certificates_outlives_reissue_and_spares_the_archive() {
    let (_t, home) = fresh_home();
    let pass = ozone_security::passphrase::resolve(&home, false).unwrap();
    let spark_id = Identity::component(Component::Spark);
    let key = SecretKeyPair::generate().unwrap();
    // Signed with the certificate a running service holds…
    let old_entry = signer(&home, Component::Spark)
        .sign(0, LATER, key.public())
        .unwrap();
    // …then the certificate is renewed (the service keeps the old one until it restarts).
    let opts = pki::IssueOptions::valid_for(std::time::Duration::from_secs(400 * 86_400));
    pki::issue(&home, &spark_id, &opts, &pass).unwrap();
    let mut trust = DirectoryTrust::load(&home).unwrap();
    let mut dir = Directory::default();
    dir.insert(&trust, &old_entry, NOW).unwrap();

    pki::revoke(&home, &spark_id).unwrap();
    assert!(trust.refresh_revocations().unwrap());
    assert_eq!(
        dir.drop_revoked(&trust, NOW),
        vec![("spark".to_string(), 0)],
        "the renewed-away certificate is revoked too"
    );
    // Issued again: the new certificate works, the old ones stay revoked.
    pki::issue(&home, &spark_id, &opts, &pass).unwrap();
    assert!(trust.refresh_revocations().is_ok());
    let fresh = DirectoryTrust::load(&home).unwrap();
    for t in [&trust, &fresh] {
        assert!(matches!(
            dir.insert(t, &old_entry, NOW),
            Err(DirectoryError::Revoked { .. })
        ));
    }
    let new_key = SecretKeyPair::generate().unwrap();
    let new_entry = signer(&home, Component::Spark)
        .sign(1, LATER, new_key.public())
        .unwrap();
    dir.insert(&fresh, &new_entry, NOW).unwrap();
    // Read back from the audit archive as of its publication, before the revocation, the old
    // entry still verifies: events sealed while it was current stay authentic.
    let before = wall_clock_ms() - 60_000;
    assert!(fresh.verify(&old_entry, before).is_ok());

    // A registry that disappears keeps the revocations read before.
    std::fs::remove_file(pki::Registry::path(&home)).unwrap();
    assert!(matches!(
        trust.refresh_revocations(),
        Err(DirectoryError::Load(_))
    ));
    assert!(matches!(
        dir.insert(&trust, &old_entry, NOW),
        Err(DirectoryError::Revoked { .. })
    ));
}

/// The wall clock in Unix milliseconds.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn finding_09_epochs_and_expiries_are_bounded_by_the_clock_and_the_certificate() {
    // A stolen certificate key must not buy a key that outlives the rotation: with the
    // rotation known, an entry may name at most the clock's epoch plus one, and expire by the
    // end of that epoch's grace window; with or without it, by its certificate's expiry.
    let (_tmp, home) = fresh_home();
    let rotation = Rotation::daily();
    let trust = DirectoryTrust::load(&home).unwrap().with_rotation(rotation);
    let spark = signer(&home, Component::Spark);
    let key = SecretKeyPair::generate().unwrap();
    let current = rotation.epoch_at(NOW);
    let mut dir = Directory::default();
    for epoch in [current, current + 1] {
        let entry = spark
            .sign(epoch, rotation.retire_at(epoch), key.public())
            .unwrap();
        assert!(dir.insert(&trust, &entry, NOW).is_ok(), "epoch {epoch}");
    }
    let far = spark.sign(1 << 63, u64::MAX, key.public()).unwrap();
    assert!(matches!(
        dir.insert(&trust, &far, NOW),
        Err(DirectoryError::EpochNotCurrent { epoch, .. }) if epoch == 1 << 63
    ));
    let two_ahead = spark
        .sign(current + 2, rotation.retire_at(current + 2), key.public())
        .unwrap();
    assert!(matches!(
        dir.insert(&trust, &two_ahead, NOW),
        Err(DirectoryError::EpochNotCurrent { .. })
    ));
    let lingering = spark
        .sign(current, rotation.retire_at(current) + 1, key.public())
        .unwrap();
    assert!(matches!(
        dir.insert(&trust, &lingering, NOW),
        Err(DirectoryError::ExpiryTooLate { .. })
    ));
    // The signer caps an expiry at its certificate's; an entry signed past it is refused
    // even by a reader that does not know the rotation (the audit archive's).
    assert!(far.not_after_ms < u64::MAX);
    let past_certificate = sign_raw_at(&home, 0, u64::MAX, *key.public().as_bytes());
    assert!(matches!(
        DirectoryTrust::load(&home)
            .unwrap()
            .verify(&past_certificate, NOW),
        Err(DirectoryError::ExpiryTooLate { .. })
    ));
}

/// [`sign_raw`] for SPARK with a chosen epoch and expiry.
fn sign_raw_at(home: &Home, epoch: u64, not_after_ms: u64, public: [u8; 32]) -> DirectoryEntry {
    let mut entry = sign_raw(home, Component::Spark, "spark", public);
    let files = IdentityFiles::of(home, &Identity::component(Component::Spark));
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.secret_der(), &rng).unwrap();
    let mut msg = b"ozone/keydir/v1".to_vec();
    msg.push(5);
    msg.extend_from_slice(b"spark");
    msg.extend_from_slice(&epoch.to_be_bytes());
    msg.extend_from_slice(&not_after_ms.to_be_bytes());
    msg.extend_from_slice(&public);
    entry.epoch = epoch;
    entry.not_after_ms = not_after_ms;
    entry.signature = pair.sign(&rng, &msg).unwrap().as_ref().to_vec();
    entry
}
