//! Sender authentication per recipient (issue 18, finding 4): in a session of several
//! recipients, a recipient knows the data key but cannot seal what another recipient takes
//! for the sender's; the sender's own envelopes open for every recipient, full and compact.

// Test helpers may panic: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_security::envelope::{
    import_session_keys, unwrap_session_keys, Envelope, EnvelopeError, Form, Freshness, Incoming,
    KeyId, Opener, OpenerLimits, PublicKey, SealTo, Sealer, SecretKeyPair, SessionLimits,
    SENDER_TAG_LEN, VERSION, VERSION_COMPACT,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::{digest, hmac};
use std::collections::HashMap;

const NOW: u64 = 1_800_000_000_000;
const SUBJECT: &str = "ecosystem.heartbeat.ozone-studio";

/// The core sealing its heartbeat to FORGE, SPARK and an auditor.
struct Broadcast {
    sealer: Sealer,
    senders: HashMap<(String, KeyId), PublicKey>,
    /// FORGE, SPARK, the auditor: the session's recipient order.
    recipients: Vec<SecretKeyPair>,
}

/// A key pair and its secret (the pair is not `Clone`: an opener gets its own copy).
fn key_pair() -> ([u8; 32], SecretKeyPair) {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).unwrap();
    (secret, SecretKeyPair::from_secret(secret).unwrap())
}

fn broadcast() -> Broadcast {
    let core = SecretKeyPair::generate().unwrap();
    let senders = [(
        ("ozone-studio".to_string(), core.public().kid()),
        *core.public(),
    )]
    .into();
    Broadcast {
        sealer: Sealer::new("ozone-studio", core, SessionLimits::default()),
        senders,
        recipients: (0..3).map(|_| key_pair().1).collect(),
    }
}

impl Broadcast {
    fn seal(&mut self, plaintext: &[u8], form: Form) -> Vec<u8> {
        let to: Vec<PublicKey> = self.recipients.iter().map(|k| *k.public()).collect();
        self.sealer
            .seal_with(
                SealTo {
                    subject: SUBJECT,
                    route: SUBJECT,
                    schema: 1,
                    recipients: &to,
                    form,
                },
                NOW,
                0,
                |out| {
                    out.extend_from_slice(plaintext);
                    Ok(())
                },
            )
            .unwrap()
            .to_vec()
    }

    fn open(
        &self,
        opener: &mut Opener,
        who: usize,
        envelope: &[u8],
        record: Option<&[u8]>,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mine = std::slice::from_ref(&self.recipients[who]);
        let mut plain = Vec::new();
        opener
            .open_into(
                Incoming {
                    freshness: Freshness::Live,
                    subject: SUBJECT,
                    bytes: envelope,
                    record,
                },
                mine,
                &self.senders,
                NOW,
                &mut plain,
            )
            .map(|_| plain)
    }

    /// What recipient `who` derives from a full envelope: (data key, its own tag key).
    fn keys_of(&self, who: usize, full: &[u8]) -> ([u8; 32], [u8; 32]) {
        let env = Envelope::decode(full).unwrap();
        let me = &self.recipients[who];
        let entry = &env.header.recipients[who];
        let mut info = b"ozone/envelope/v4/wrap".to_vec();
        info.extend_from_slice(&env.header.session_id);
        info.push(12);
        info.extend_from_slice(b"ozone-studio");
        info.push(SUBJECT.len() as u8);
        info.extend_from_slice(SUBJECT.as_bytes());
        info.extend_from_slice(&me.public().kid().0);
        let sender = self.sealer.sender_key();
        let (data, tag) = match &entry.wrapped {
            None => import_session_keys(me, sender, &info, &entry.enc).unwrap(),
            Some(w) => unwrap_session_keys(me, sender, &info, &entry.enc, w).unwrap(),
        };
        (*data, *tag)
    }
}

/// `tag_i = HMAC-SHA256(k_i, SHA-256(u64be(len(aad)) ‖ aad ‖ ciphertext ‖ gcm tag))[..16]`, written from
/// docs/envelope.md.
fn spec_tag(key: &[u8; 32], aad: &[u8], body: &[u8]) -> [u8; SENDER_TAG_LEN] {
    let framed = [&(aad.len() as u64).to_be_bytes()[..], aad, body].concat();
    let input = digest::digest(&digest::SHA256, &framed);
    let full = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_ref());
    full.as_ref()[..SENDER_TAG_LEN].try_into().unwrap()
}

/// A full envelope of the session sealed with its data key: `header` (as sent) and a body,
/// with no tags; returns (envelope, aad, body).
fn reseal(data_key: &[u8; 32], header: &[u8], counter: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(SUBJECT.as_bytes());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, data_key).unwrap());
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad[..]),
        &mut body,
    )
    .unwrap();
    let mut out = header.to_vec();
    out.extend_from_slice(&body);
    out
}

#[test]
fn finding_04_a_co_recipient_holding_the_data_key_and_its_own_tag_key_cannot_forge_for_another() {
    let mut b = broadcast();
    let genuine = b.seal(b"heartbeat 1", Form::Full);
    let later = b.seal(b"heartbeat 2", Form::Full);
    // FORGE (first recipient: it exports the data key) and the auditor (last: it unwraps it)
    // each try to make SPARK (recipient 1) accept a heartbeat the core never sealed.
    for forger in [0, 2] {
        let (data_key, own_tag_key) = b.keys_of(forger, &genuine);
        let mut header = Envelope::decode(&genuine).unwrap().header;
        header.counter = 1000 + forger as u64;
        let header = header.encode().unwrap();
        let sealed = reseal(
            &data_key,
            &header,
            1000 + forger as u64,
            b"forged heartbeat",
        );
        let mut aad = header.clone();
        aad.extend_from_slice(SUBJECT.as_bytes());
        let own = spec_tag(&own_tag_key, &aad, &sealed[header.len()..]);
        let genuine_tags = Envelope::decode(&later).unwrap().sender_tags;

        let no_tags = sealed.clone();
        let copied_tags = [sealed.as_slice(), &genuine_tags].concat();
        let own_tag_everywhere = [sealed.as_slice(), &own, &own, &own].concat();
        let mut own_tag_in_place = copied_tags.clone();
        let at = sealed.len() + forger * SENDER_TAG_LEN;
        own_tag_in_place[at..at + SENDER_TAG_LEN].copy_from_slice(&own);
        // The forger's own tag is right: the forgery is refused for SPARK alone.
        let mut forger_opener = Opener::new(OpenerLimits::default());
        assert_eq!(
            b.open(&mut forger_opener, forger, &own_tag_in_place, None)
                .unwrap(),
            b"forged heartbeat"
        );

        for forged in [
            &no_tags,
            &copied_tags,
            &own_tag_everywhere,
            &own_tag_in_place,
        ] {
            // A SPARK that never saw the session, and one that has it cached.
            let mut fresh = Opener::new(OpenerLimits::default());
            let refused = b.open(&mut fresh, 1, forged, None).unwrap_err();
            assert!(
                matches!(
                    refused,
                    EnvelopeError::SenderTag | EnvelopeError::Malformed(_)
                ),
                "{refused:?}"
            );
            let mut cached = Opener::new(OpenerLimits::default());
            b.open(&mut cached, 1, &genuine, None).unwrap();
            let refused = b.open(&mut cached, 1, forged, None).unwrap_err();
            assert!(
                matches!(
                    refused,
                    EnvelopeError::SenderTag | EnvelopeError::Malformed(_)
                ),
                "{refused:?}"
            );
        }
        // With tags of the right length, the refusal says what it is.
        let mut fresh = Opener::new(OpenerLimits::default());
        assert_eq!(
            b.open(&mut fresh, 1, &own_tag_in_place, None),
            Err(EnvelopeError::SenderTag)
        );
    }
}

#[test]
fn finding_04_a_forged_header_claiming_one_recipient_does_not_drop_the_tags_of_a_cached_session() {
    // FORGE rewrites the header to name SPARK alone (so no tags would be due) and seals with
    // the data key it knows: SPARK has the session cached under the same id, sender and route.
    let mut b = broadcast();
    let genuine = b.seal(b"heartbeat 1", Form::Full);
    let (data_key, _) = b.keys_of(0, &genuine);
    let mut header = Envelope::decode(&genuine).unwrap().header;
    header.recipients = vec![header.recipients[1].clone()];
    header.recipients[0].wrapped = None;
    header.counter = 7;
    let forged = reseal(&data_key, &header.encode().unwrap(), 7, b"forged");
    let mut spark = Opener::new(OpenerLimits::default());
    b.open(&mut spark, 1, &genuine, None).unwrap();
    assert_eq!(
        b.open(&mut spark, 1, &forged, None),
        Err(EnvelopeError::SenderTag)
    );
}

#[test]
fn finding_04_a_co_recipient_cannot_forge_a_compact_envelope_for_another() {
    let mut b = broadcast();
    let full = b.seal(b"heartbeat 1", Form::CompactWhenPublished);
    let record = b.sealer.new_records().pop().unwrap();
    b.sealer.mark_published(&record.session_id);
    let compact = b.seal(b"heartbeat 2", Form::CompactWhenPublished);
    assert_eq!(compact[2], VERSION_COMPACT);
    let (data_key, _) = b.keys_of(0, &full);

    // FORGE reseals the compact envelope's header with a new counter and body, keeping the
    // genuine tags: the AEAD passes (it holds the data key), SPARK's tag does not.
    let header_len = ozone_security::envelope::COMPACT_HEADER_LEN;
    let mut head = compact[..header_len].to_vec();
    head[22..30].copy_from_slice(&99u64.to_be_bytes());
    let mut aad = head.clone();
    aad.extend_from_slice(&ozone_security::envelope::record_digest(&record.record));
    aad.extend_from_slice(SUBJECT.as_bytes());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&99u64.to_be_bytes());
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &data_key).unwrap());
    let mut body = b"forged".to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad[..]),
        &mut body,
    )
    .unwrap();
    let tags = &compact[compact.len() - 3 * SENDER_TAG_LEN..];
    let forged = [head.as_slice(), &body, tags].concat();

    // A SPARK that learns the session from its record, and one that has it from a full envelope.
    let mut late = Opener::new(OpenerLimits::default());
    assert_eq!(
        b.open(&mut late, 1, &forged, Some(&record.record)),
        Err(EnvelopeError::SenderTag)
    );
    let mut cached = Opener::new(OpenerLimits::default());
    b.open(&mut cached, 1, &full, None).unwrap();
    assert_eq!(
        b.open(&mut cached, 1, &forged, None),
        Err(EnvelopeError::SenderTag)
    );
    // Without the tags: refused too.
    let untagged = [head.as_slice(), &body].concat();
    assert!(b.open(&mut cached, 1, &untagged, None).is_err());
}

#[test]
fn the_senders_broadcasts_open_for_every_recipient_full_compact_and_from_the_record() {
    let mut b = broadcast();
    let full = b.seal(b"first", Form::CompactWhenPublished);
    assert_eq!(full[2], VERSION);
    let record = b.sealer.new_records().pop().unwrap();
    b.sealer.mark_published(&record.session_id);
    let compact = b.seal(b"second", Form::CompactWhenPublished);
    let third = b.seal(b"third", Form::CompactWhenPublished);
    assert_eq!(compact[2], VERSION_COMPACT);

    let env = Envelope::decode(&full).unwrap();
    assert_eq!(env.sender_tags.len(), 3 * SENDER_TAG_LEN);
    let mut aad = env.header_bytes.clone();
    aad.extend_from_slice(SUBJECT.as_bytes());
    for who in 0..3 {
        // Each tag is where the spec puts it and is what the spec says.
        let (_, tag_key) = b.keys_of(who, &full);
        assert_eq!(
            spec_tag(&tag_key, &aad, &env.ciphertext)[..],
            env.sender_tags[who * SENDER_TAG_LEN..(who + 1) * SENDER_TAG_LEN]
        );
        // Full first, then compact from the cache.
        let mut opener = Opener::new(OpenerLimits::default());
        assert_eq!(b.open(&mut opener, who, &full, None).unwrap(), b"first");
        assert_eq!(b.open(&mut opener, who, &compact, None).unwrap(), b"second");
        // A late receiver: compact only, the session learned from its record.
        let mut late = Opener::new(OpenerLimits::default());
        assert!(matches!(
            b.open(&mut late, who, &compact, None),
            Err(EnvelopeError::UnknownSession { .. })
        ));
        assert_eq!(
            b.open(&mut late, who, &compact, Some(&record.record))
                .unwrap(),
            b"second"
        );
        assert_eq!(b.open(&mut late, who, &third, None).unwrap(), b"third");
    }
}

#[test]
fn a_single_recipient_session_carries_no_tags() {
    let mut b = broadcast();
    let to = [*b.recipients[1].public()];
    let one = b
        .sealer
        .seal("spark.generate", 1, &to, &[7; 100], NOW)
        .unwrap();
    let env = Envelope::decode(&one).unwrap();
    assert!(env.sender_tags.is_empty());
    assert_eq!(env.ciphertext.len(), 100 + 16);
    let nine: Vec<PublicKey> = (0..9)
        .map(|_| *SecretKeyPair::generate().unwrap().public())
        .collect();
    let many = b
        .sealer
        .seal("spark.generate", 1, &nine, &[7; 100], NOW)
        .unwrap();
    assert_eq!(
        Envelope::decode(&many).unwrap().sender_tags.len(),
        9 * SENDER_TAG_LEN
    );
}

/// What the tags cost: 1 KiB sealed to 9 recipients (tags) and to 1 (none), opened by one
/// recipient. `cargo test -p ozone-security --test sender_tags -- --ignored --nocapture`
/// (the crypto crates are optimised even in test builds; our own code is not).
#[test]
#[ignore]
fn cost_of_sender_tags() {
    let rounds = 20_000u32;
    let payload = [7u8; 1024];
    // The tags alone, as the sealer computes them (one hash, one HMAC per recipient, key
    // schedules cached) for a 1 KiB compact envelope's 1,043 bytes and 81 of associated data.
    let keys: Vec<hmac::Key> = (0..9)
        .map(|i| hmac::Key::new(hmac::HMAC_SHA256, &[i as u8; 32]))
        .collect();
    let (aad, body) = ([1u8; 81], [2u8; 1043]);
    let started = std::time::Instant::now();
    let mut sink = 0u8;
    for _ in 0..rounds {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&(aad.len() as u64).to_be_bytes());
        ctx.update(&aad);
        ctx.update(&body);
        let input = ctx.finish();
        for k in &keys {
            sink ^= hmac::sign(k, input.as_ref()).as_ref()[0];
        }
    }
    println!(
        "9 tags over 1 KiB: {} ns ({sink})",
        started.elapsed().as_nanos() / u128::from(rounds)
    );
    for n in [1usize, 9] {
        let core = SecretKeyPair::generate().unwrap();
        let senders: HashMap<_, _> = [(
            ("ozone-studio".to_string(), core.public().kid()),
            *core.public(),
        )]
        .into();
        let mut sealer = Sealer::new("ozone-studio", core, SessionLimits::default());
        let keys: Vec<([u8; 32], SecretKeyPair)> = (0..n).map(|_| key_pair()).collect();
        let to: Vec<PublicKey> = keys.iter().map(|k| *k.1.public()).collect();
        let mine = [SecretKeyPair::from_secret(keys[n - 1].0).unwrap()];
        let seal = |sealer: &mut Sealer, form: Form| {
            sealer
                .seal_with(
                    SealTo {
                        subject: SUBJECT,
                        route: SUBJECT,
                        schema: 1,
                        recipients: &to,
                        form,
                    },
                    NOW,
                    1024,
                    |out| {
                        out.extend_from_slice(&payload);
                        Ok(())
                    },
                )
                .unwrap()
        };
        let first = seal(&mut sealer, Form::CompactWhenPublished);
        let record = sealer.new_records().pop().unwrap();
        sealer.mark_published(&record.session_id);
        let mut opener = Opener::new(OpenerLimits::default());
        let mut plain = Vec::new();
        let mut open = |opener: &mut Opener, env: &[u8]| {
            opener
                .open_into(
                    Incoming {
                        freshness: Freshness::Archived,
                        subject: SUBJECT,
                        bytes: env,
                        record: None,
                    },
                    mine.as_slice(),
                    &senders,
                    NOW,
                    &mut plain,
                )
                .unwrap();
        };
        open(&mut opener, &first);
        for form in [Form::Full, Form::CompactWhenPublished] {
            let started = std::time::Instant::now();
            let sealed: Vec<_> = (0..rounds).map(|_| seal(&mut sealer, form)).collect();
            let seal_ns = started.elapsed().as_nanos() / u128::from(rounds);
            let started = std::time::Instant::now();
            for env in &sealed {
                open(&mut opener, env);
            }
            let open_ns = started.elapsed().as_nanos() / u128::from(rounds);
            println!(
                "{n} recipient(s), {form:?}: {} bytes, seal {seal_ns} ns, open {open_ns} ns",
                sealed[0].len()
            );
        }
    }
}
