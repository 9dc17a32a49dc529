//! Issue 18, the envelope's share: what one authenticated but rogue component (FORGE, with its
//! real certificate, NATS permissions and, where the attack needs them, keys) could do to the
//! envelope and the key directory, each attack performed on a real server started from the
//! generated configuration and shown to fail — and audited where the bus detects it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::streams::key_entry_key;
use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind, Subject};
use ozone_nats::bus::{now_ms, Bus};
use ozone_nats::KeyDirectory;
use ozone_security::envelope::{
    keyring_file, CompactHeader, Envelope, HeaderView, KeyId, Rotation, Sealer, SecretKeyPair,
    SessionLimits, VERSION, VERSION_COMPACT,
};
use ozone_security::keydir::ServiceSigner;
use ozone_tests::stolen::{steal_session, StolenSession};
use ozone_tests::{audit_events, current_key, within, TestEcosystem};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Beat {
    n: u32,
}

/// Polls the audit stream until `done` holds (or 10 s pass), then lets late duplicates arrive
/// for another second before returning what it holds.
async fn audit_until(
    eco: &TestEcosystem,
    done: impl Fn(&[(String, AuditKind)]) -> bool,
) -> anyhow::Result<Vec<(String, AuditKind)>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = audit_events(eco, "siem").await?;
        if done(&events) || Instant::now() > deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return audit_events(eco, "siem").await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_09_a_far_future_epoch_is_refused() -> R {
    let eco = TestEcosystem::audited().await?;
    let forge_id = Identity::component(Component::Forge);
    let core = eco.join(Component::Core).await?;
    let forge = eco.join(Component::Forge).await?;
    // The supervisor's handle for the core (it announces the core's death): it follows the
    // directory too, but the core alone reports what it refuses there (finding 11: each
    // refusal was reported twice, once by the component and once by its announcer).
    let core_conn = eco.connect(&Identity::component(Component::Core)).await?;
    let _announcer = Bus::start_announcer(core_conn, &eco.t.home, Rotation::daily()).await?;
    let real_forge_kid =
        keyring_file::load_or_create(&eco.t.home, &forge_id, Rotation::daily(), now_ms())?
            .current()
            .map(|k| k.public().kid())
            .unwrap();

    // The thief: FORGE's real certificate key, read from the home as a thief would, and its
    // NATS identity. It asks for ten years; the signer caps that at the certificate's expiry,
    // months ahead, which is as good to a thief.
    let thief_signer = ServiceSigner::load(&eco.t.home, &forge_id)?;
    let attacker = SecretKeyPair::generate()?;
    // In a slot (epoch mod 4) of its own, apart from the current and next epochs' slots: the
    // bucket keeps one entry per slot, and the late follower below must meet both.
    let epoch = (1u64 << 63) + (Rotation::daily().epoch_at(now_ms()) + 2) % 4;
    let far_future = now_ms() + 10 * 365 * 24 * 3600 * 1000;
    let entry = thief_signer.sign(epoch, far_future, attacker.public())?;
    assert!(entry.not_after_ms > now_ms() + 30 * 24 * 3600 * 1000);
    // And the next epoch (which the clock allows) signed to live as long.
    let next = Rotation::daily().epoch_at(now_ms()) + 1;
    let lingering = thief_signer.sign(next, far_future, attacker.public())?;
    let rogue = eco.connect(&forge_id).await?;
    let bucket = KeyDirectory::open(&rogue.client).await?;
    bucket.put(&forge_id, &entry).await?;
    bucket.put(&forge_id, &lingering).await?;
    let key = key_entry_key(&forge_id, epoch);
    let next_key = key_entry_key(&forge_id, next);
    // A service that joins after the puts meets them in its catch-up.
    let _late = eco.join(Component::Spark).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The core keeps sealing to FORGE's real key: the envelope's recipients name it and not
    // the thief's, and the real FORGE opens it.
    let heartbeat = Subject::heartbeat(Component::Core);
    let mut tap = rogue.client.subscribe(heartbeat.to_string()).await?;
    rogue.client.flush().await?; // the server has the subscription before the core publishes
    let mut beats = forge.subscribe::<Beat>(&heartbeat, None).await?;
    core.publish(&heartbeat, &Beat { n: 1 }).await?;
    let sealed = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut tap))
        .await?
        .unwrap();
    let kids: Vec<_> = Envelope::decode(&sealed.payload)?
        .header
        .recipients
        .iter()
        .map(|r| r.kid)
        .collect();
    assert!(kids.contains(&real_forge_kid), "{kids:?}");
    assert!(!kids.contains(&attacker.public().kid()), "{kids:?}");
    let opened = tokio::time::timeout(Duration::from_secs(5), beats.next())
        .await?
        .unwrap()?;
    assert_eq!(opened.message, Beat { n: 1 });

    // Each service that follows the directory audits the refusal, once.
    let rejected = |events: &[(String, AuditKind)], who: &str, which: &str, why: &str| {
        events
            .iter()
            .filter(|(s, e)| {
                s == who
                    && matches!(e, AuditKind::DirectoryEntryRejected { key, reason }
                        if key == which && reason.contains(why))
            })
            .count()
    };
    let verdicts = [
        (key.as_str(), "is not the clock's"),
        (next_key.as_str(), "grace window"),
    ];
    let all_seen = |ev: &[(String, AuditKind)]| {
        ["ozone-studio", "forge", "spark"].iter().all(|who| {
            verdicts
                .iter()
                .all(|(k, why)| rejected(ev, who, k, why) >= 1)
        })
    };
    let events = audit_until(&eco, all_seen).await?;
    for who in ["ozone-studio", "forge", "spark"] {
        for (k, why) in verdicts {
            assert_eq!(
                rejected(&events, who, k, why),
                1,
                "{who} on {k}: {events:#?}"
            );
        }
    }
    Ok(())
}

/// Opens a compact envelope by hand with a session's data key and record digest (its
/// `tags` bytes of sender tags left unchecked).
fn open_compact(
    data_key: &[u8; 32],
    digest: &[u8; 32],
    tags: usize,
    envelope: &[u8],
    subject: &str,
) -> anyhow::Result<Vec<u8>> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let (header, start) = CompactHeader::parse(envelope)?;
    let mut aad = envelope[..start].to_vec();
    aad.extend_from_slice(digest);
    aad.extend_from_slice(subject.as_bytes());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&header.counter.to_be_bytes());
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, data_key).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let mut body = envelope[start..envelope.len() - tags].to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut body,
        )
        .map_err(|_| anyhow::anyhow!("the stolen key does not open the session"))?;
    Ok(plain.to_vec())
}

/// A compact envelope (docs/envelope.md, version 7; without sender tags) sealed by hand in a stolen session.
fn forge_compact(
    data_key: &[u8; 32],
    digest: &[u8; 32],
    sender_kid: &KeyId,
    session_id: &[u8; 8],
    counter: u64,
    subject: &str,
    plaintext: &[u8],
) -> anyhow::Result<Vec<u8>> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let mut out = b"OZ".to_vec();
    out.extend_from_slice(&[VERSION_COMPACT, 1, 0, 1]);
    out.extend_from_slice(&sender_kid.0);
    out.extend_from_slice(session_id);
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&now_ms().to_be_bytes());
    let mut aad = out.clone();
    aad.extend_from_slice(digest);
    aad.extend_from_slice(subject.as_bytes());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, data_key).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad[..]),
        &mut body,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    out.extend_from_slice(&body);
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_04_a_co_recipient_cannot_carry_a_session_to_another_route() -> R {
    let eco = TestEcosystem::audited().await?;
    let forge_id = Identity::component(Component::Forge);
    let core = eco.join(Component::Core).await?;
    let spark = eco.join(Component::Spark).await?;
    let _forge = eco.join(Component::Forge).await?;
    // FORGE's real key ring, as a rogue FORGE holds it; the core's public key.
    let forge_key = current_key(&eco.t.home, Component::Forge)?;
    let core_public = *current_key(&eco.t.home, Component::Core)?.public();

    let heartbeat = Subject::heartbeat(Component::Core);
    let generate = Subject::component_request(Component::Spark, "generate")?;
    let mut spark_beats = spark.subscribe::<Beat>(&heartbeat, None).await?;
    let mut spark_work = spark.subscribe::<Beat>(&generate, Some("spark")).await?;
    let rogue = eco.connect(&forge_id).await?;
    let mut tap = rogue.client.subscribe(heartbeat.to_string()).await?;
    rogue.client.flush().await?; // the server has the subscription before the core publishes

    // The core beats until SPARK and FORGE share a session of its heartbeat and its envelopes
    // have turned compact; SPARK opens every beat, so it holds that session.
    let mut stolen = None;
    let mut compact_seen = None;
    for n in 0..300u32 {
        core.publish(&heartbeat, &Beat { n }).await?;
        let sealed = within("a tapped beat", futures::StreamExt::next(&mut tap))
            .await?
            .unwrap();
        let beat = within("a beat at SPARK", spark_beats.next())
            .await?
            .unwrap()?;
        assert_eq!(beat.message, Beat { n });
        match sealed.payload.get(2) {
            Some(&VERSION) => {
                if let Ok(session) = steal_session(&sealed.payload, &forge_key, &core_public) {
                    let (view, _) = HeaderView::parse(&sealed.payload)?;
                    assert_eq!(view.route, "ecosystem.heartbeat.ozone-studio");
                    stolen = Some(session);
                }
            }
            Some(&VERSION_COMPACT) if stolen.is_some() => {
                let (header, _) = CompactHeader::parse(&sealed.payload)?;
                if stolen
                    .as_ref()
                    .is_some_and(|s| s.session_id == header.session_id)
                {
                    compact_seen = Some(sealed.payload.clone());
                    break;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let compact = compact_seen.expect("the heartbeat session never turned compact");
    let StolenSession {
        data_key,
        record_digest: digest,
        tags_len: tags,
        session_id,
        ..
    } = stolen.unwrap();
    // The theft works: the stolen key and digest authenticate the core's own compact beat.
    open_compact(&data_key, &digest, tags, &compact, heartbeat.as_str())?;

    // In that session, as "ozone-studio", a counter far ahead of the core's, onto SPARK's
    // request subject (NATS lets FORGE publish there: it calls SPARK).
    let core_kid = core_public.kid();
    let payload = [0x81, 0xa1, b'n', 0x07]; // MessagePack {"n": 7}
    let forged = forge_compact(
        &data_key,
        &digest,
        &core_kid,
        &session_id,
        1 << 40,
        generate.as_str(),
        &payload,
    )?;
    rogue
        .client
        .publish(generate.to_string(), forged.into())
        .await?;
    let refused = within("refusal of the forged request", spark_work.next())
        .await?
        .unwrap();
    let reason = match refused {
        Err(e) => e.to_string(),
        Ok(r) => panic!("SPARK accepted a forged request from {:?}", r.sender),
    };
    assert!(reason.contains("route"), "{reason}");
    // SPARK's bus audited the refusal, naming the claimed sender.
    let refusals = |ev: &[(String, AuditKind)]| {
        ev.iter()
            .filter(|(s, e)| {
                s == "spark"
                    && matches!(e, AuditKind::MessageRejected { subject, reason, claimed_sender }
                        if subject == generate.as_str()
                            && reason.contains("route")
                            && claimed_sender.as_deref() == Some("ozone-studio"))
            })
            .count()
    };
    let events = audit_until(&eco, |ev| refusals(ev) >= 1).await?;
    assert_eq!(refusals(&events), 1, "{events:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_07_future_stamped_sessions_black_out_nobody_else() -> R {
    let eco = TestEcosystem::audited().await?;
    let forge_id = Identity::component(Component::Forge);
    let core = eco.join(Component::Core).await?;
    let spark = eco.join(Component::Spark).await?;
    let _forge = eco.join(Component::Forge).await?;
    let forge_key = current_key(&eco.t.home, Component::Forge)?;
    let spark_public = *current_key(&eco.t.home, Component::Spark)?.public();

    let core_beat = Subject::heartbeat(Component::Core);
    let forge_beat = Subject::heartbeat(Component::Forge);
    let mut from_core = spark.subscribe::<Beat>(&core_beat, None).await?;
    let mut from_forge = spark.subscribe::<Beat>(&forge_beat, None).await?;
    // The receiver has heard the core before the flood.
    core.publish(&core_beat, &Beat { n: 0 }).await?;
    let first = tokio::time::timeout(Duration::from_secs(5), from_core.next())
        .await?
        .unwrap()?;
    assert_eq!(first.message, Beat { n: 0 });

    // The rogue: FORGE's own key, a new session per message, on its own heartbeat subject.
    let rogue = eco.connect(&forge_id).await?;
    let mut sealer = Sealer::new(
        "forge",
        forge_key,
        SessionLimits {
            max_messages: 1,
            ..SessionLimits::default()
        },
    );
    const FLOOD: u32 = 5_000;
    let drain = tokio::spawn(async move {
        let (mut accepted, mut refused) = (0u32, 0u32);
        while accepted + refused < 2 * FLOOD {
            match from_forge.next().await {
                Some(Ok(_)) => accepted += 1,
                Some(Err(_)) => refused += 1,
                None => break,
            }
        }
        (accepted, refused)
    });
    // First as the finding has it, 119 s ahead; then as far ahead as a sender may be.
    for ahead_ms in [119_000, 4_000] {
        for n in 0..FLOOD {
            let plaintext = [0x81, 0xa1, b'n', 0xcd, (n >> 8) as u8, n as u8];
            let sealed = sealer.seal(
                forge_beat.as_str(),
                1,
                &[spark_public],
                &plaintext,
                now_ms() + ahead_ms,
            )?;
            rogue
                .client
                .publish(forge_beat.to_string(), sealed.into())
                .await?;
        }
    }
    let (accepted, refused) = tokio::time::timeout(Duration::from_secs(120), drain).await??;
    assert_eq!(
        (accepted, refused),
        (FLOOD, FLOOD),
        "the 119 s-ahead flood refused, the 4 s-ahead one accepted"
    );

    // Straight after, the core's next beats are accepted.
    for n in 1..=3 {
        core.publish(&core_beat, &Beat { n }).await?;
        let beat = tokio::time::timeout(Duration::from_secs(5), from_core.next())
            .await?
            .unwrap()?;
        assert_eq!(beat.message, Beat { n });
    }

    // SPARK audited the refusals, naming FORGE (at most 100 a second; the rest are counted).
    let refusals = |ev: &[(String, AuditKind)]| {
        ev.iter()
            .filter(|(s, e)| {
                s == "spark"
                    && matches!(e, AuditKind::MessageRejected { subject, reason, claimed_sender }
                        if subject == forge_beat.as_str()
                            && reason.contains("outside the replay window")
                            && claimed_sender.as_deref() == Some("forge"))
            })
            .count()
    };
    let events = audit_until(&eco, |ev| refusals(ev) >= 100).await?;
    assert!(refusals(&events) >= 100, "{}", refusals(&events));
    Ok(())
}

/// The key a copy of a ring file (its bytes) gives for the epoch at `at_ms`: what a thief
/// holding the file derives, in a home of its own.
fn key_from_copy(ring_file: &[u8], id: &Identity, at_ms: u64) -> anyhow::Result<KeyId> {
    let tmp = tempfile::tempdir()?;
    let home = ozone_security::Home::new(tmp.path().join("thief"));
    std::fs::create_dir_all(home.keys_dir())?;
    std::fs::write(keyring_file::path(&home, id), ring_file)?;
    let ring = keyring_file::load_or_create(&home, id, Rotation::daily(), at_ms)?;
    ring.current()
        .map(|k| k.public().kid())
        .ok_or_else(|| anyhow::anyhow!("no key"))
}

#[tokio::test]
async fn finding_06_revocation_destroys_the_key_ring_and_a_reissued_identity_starts_afresh() -> R {
    let eco = TestEcosystem::start().await?;
    let home = &eco.t.home;
    let forge_id = Identity::component(Component::Forge);
    let forge = eco.join(Component::Forge).await?;
    // The thief copies FORGE's ring: its chain derives every future key of FORGE.
    let ring_path = keyring_file::path(home, &forge_id);
    let stolen = std::fs::read(&ring_path)?;
    let tomorrow = now_ms() + 24 * 3600 * 1000;
    let thief_tomorrow = key_from_copy(&stolen, &forge_id, tomorrow)?;

    assert!(ozone_security::pki::revoke(home, &forge_id)?);
    assert!(
        !ring_path.exists(),
        "the revoked identity's ring outlived the revocation"
    );
    // The revoked process, still running, writes its ring back when it next rotates.
    std::fs::write(&ring_path, &stolen)?;
    drop(forge);

    // Re-issued: a fresh random chain, which the thief's copy does not derive.
    eco.t.issue(IdentityKind::Component, "forge")?;
    let fresh = std::fs::read(&ring_path).ok();
    assert!(
        fresh.is_none(),
        "re-issuing kept the revoked identity's ring"
    );
    let fresh = keyring_file::load_or_create(home, &forge_id, Rotation::daily(), now_ms())?;
    drop(fresh);
    let fresh_tomorrow = key_from_copy(&std::fs::read(&ring_path)?, &forge_id, tomorrow)?;
    assert_ne!(fresh_tomorrow, thief_tomorrow);
    assert_ne!(
        key_from_copy(&std::fs::read(&ring_path)?, &forge_id, now_ms())?,
        key_from_copy(&stolen, &forge_id, now_ms())?
    );
    Ok(())
}
