//! Issue 18, finding 4, the last part: a co-recipient of a broadcast session knows its data
//! key, so before sender tags it could seal a message the other recipients took for the
//! sender's, wherever someone able to publish on the sender's subject (the broker operator, or
//! a route with several publishers) delivered it. Performed on a real server started from the
//! generated configuration, with FORGE's real key ring and a privileged connection standing in
//! for the broker operator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind, Subject};
use ozone_nats::bus::now_ms;
use ozone_security::envelope::{Header, SENDER_TAG_LEN, VERSION};
use ozone_tests::stolen::{steal_session, StolenSession};
use ozone_tests::{audit_events, current_key, with_permissions, within, TestEcosystem};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Beat {
    n: u32,
}

fn operator() -> Identity {
    Identity::new(IdentityKind::Device, "operator").unwrap_or_else(|e| panic!("{e}"))
}

/// A full envelope of the stolen session, sealed by hand as `header` says, ending in the sender
/// tags of every recipient: FORGE's own (it holds that key) and, for everyone else, the only
/// thing it has — the tags of a genuine envelope.
fn forge_full(
    header: &Header,
    stolen: &StolenSession,
    genuine_tags: &[u8],
    subject: &str,
    plaintext: &[u8],
) -> anyhow::Result<Vec<u8>> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    use ring::{digest, hmac};
    let head = header.encode()?;
    let mut aad = head.clone();
    aad.extend_from_slice(subject.as_bytes());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&header.counter.to_be_bytes());
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &stolen.data_key).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad[..]),
        &mut body,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let framed = [&(aad.len() as u64).to_be_bytes()[..], &aad, &body].concat();
    let input = digest::digest(&digest::SHA256, &framed);
    let own = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &stolen.tag_key),
        input.as_ref(),
    );
    let mut tags = genuine_tags.to_vec();
    let at = stolen.position * SENDER_TAG_LEN;
    tags[at..at + SENDER_TAG_LEN].copy_from_slice(&own.as_ref()[..SENDER_TAG_LEN]);
    Ok([head.as_slice(), &body, &tags].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_04_a_co_recipient_cannot_forge_a_broadcast_for_another_recipient() -> R {
    // An auditor, and a privileged connection that may publish anywhere: the broker operator.
    let eco = TestEcosystem::start_with(
        |t| {
            t.issue(IdentityKind::Auditor, "siem")?;
            t.issue(IdentityKind::Device, "operator").map(|_| ())
        },
        |config| {
            with_permissions(
                &config,
                &operator(),
                r#"{ publish: { allow: [">"] }, subscribe: { allow: [">"], deny: ["ecosystem.sync.>"] } }"#,
            )
        },
    )
    .await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let core = eco.join(Component::Core).await?;
    let spark = eco.join(Component::Spark).await?;
    let _forge = eco.join(Component::Forge).await?;
    // FORGE's real key ring, as a rogue FORGE holds it; the core's public key.
    let forge_key = current_key(&eco.t.home, Component::Forge)?;
    let core_public = *current_key(&eco.t.home, Component::Core)?.public();

    let heartbeat = Subject::heartbeat(Component::Core);
    let mut spark_beats = spark.subscribe::<Beat>(&heartbeat, None).await?;
    let rogue = eco.connect(&Identity::component(Component::Forge)).await?;
    let mut tap = rogue.client.subscribe(heartbeat.to_string()).await?;
    rogue.client.flush().await?; // the server has the subscription before the core publishes

    // The core beats until a full envelope of its heartbeat session names FORGE (and SPARK,
    // which opens every beat, so it holds that session too).
    let mut stolen = None;
    for n in 0..300u32 {
        core.publish(&heartbeat, &Beat { n }).await?;
        let sealed = within("a tapped beat", futures::StreamExt::next(&mut tap))
            .await?
            .unwrap();
        let beat = within("a beat at SPARK", spark_beats.next())
            .await?
            .unwrap()?;
        assert_eq!(beat.message, Beat { n });
        if sealed.payload.get(2) == Some(&VERSION) {
            if let Ok(keys) = steal_session(&sealed.payload, &forge_key, &core_public) {
                stolen = Some((keys, sealed.payload.clone()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (keys, full) = stolen.expect("no full envelope of the heartbeat named FORGE");
    let envelope = ozone_security::envelope::Envelope::decode(&full)?;
    assert!(
        envelope.header.recipients.len() > 2,
        "a broadcast: {} recipients",
        envelope.header.recipients.len()
    );

    // In that session, as the core, a counter far ahead of the core's, stamped now, with
    // FORGE's own tag right and the genuine envelope's tags for everyone else; the operator
    // publishes it on the core's heartbeat subject.
    let mut header = envelope.header.clone();
    header.counter = 1 << 40;
    header.timestamp_ms = now_ms();
    let payload = [0x81, 0xa1, b'n', 0xcd, 0x03, 0xe7]; // MessagePack {"n": 999}
    let forged = forge_full(
        &header,
        &keys,
        &envelope.sender_tags,
        heartbeat.as_str(),
        &payload,
    )?;
    let operator = eco.connect(&operator()).await?;
    operator
        .client
        .publish(heartbeat.to_string(), forged.into())
        .await?;
    operator.client.flush().await?;
    let refused = within("refusal of the forged beat", spark_beats.next())
        .await?
        .unwrap();
    let reason = match refused {
        Err(e) => e.to_string(),
        Ok(r) => panic!("SPARK accepted a forged beat {:?}", r.message),
    };
    assert!(reason.contains("sender's tag"), "{reason}");

    // The core's genuine beats still open.
    core.publish(&heartbeat, &Beat { n: 1000 }).await?;
    let beat = within("a genuine beat after the forgery", spark_beats.next())
        .await?
        .unwrap()?;
    assert_eq!(beat.message, Beat { n: 1000 });

    // SPARK's bus audited the refusal, naming the claimed sender.
    let refusals = |ev: &[(String, AuditKind)]| {
        ev.iter()
            .filter(|(s, e)| {
                s == "spark"
                    && matches!(e, AuditKind::MessageRejected { subject, reason, claimed_sender }
                        if subject == heartbeat.as_str()
                            && reason.contains("sender's tag")
                            && claimed_sender.as_deref() == Some("ozone-studio"))
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = audit_events(&eco, "siem").await?;
    while refusals(&events) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        events = audit_events(&eco, "siem").await?;
    }
    assert_eq!(refusals(&events), 1, "{events:#?}");
    Ok(())
}
