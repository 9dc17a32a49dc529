//! The envelope's security properties: round trips, tampering, replay, nonce uniqueness,
//! session reuse, and clear refusals of bad input.

// Test helpers may panic: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_security::envelope::{
    Envelope, EnvelopeError, Form, Freshness, Incoming, KeyId, Opener, OpenerLimits, PublicKey,
    SealTo, Sealer, SecretKeyPair, SessionLimits, COMPACT_HEADER_LEN, VERSION, VERSION_COMPACT,
};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::{HashMap, HashSet};

const NOW: u64 = 1_800_000_000_000;

struct Pair {
    sealer: Sealer,
    senders: HashMap<(String, KeyId), PublicKey>,
    secret: [u8; 32],
    recipient: PublicKey,
}

fn pair() -> Pair {
    let sender = SecretKeyPair::generate().unwrap();
    let senders = [(
        ("ozone-studio".to_string(), sender.public().kid()),
        *sender.public(),
    )]
    .into();
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).unwrap();
    let recipient = *SecretKeyPair::from_secret(secret).unwrap().public();
    Pair {
        sealer: Sealer::new("ozone-studio", sender, SessionLimits::default()),
        senders,
        secret,
        recipient,
    }
}

impl Pair {
    fn opener(&self) -> Opener {
        Opener::new(OpenerLimits::default())
    }
    fn mine(&self) -> Vec<SecretKeyPair> {
        vec![SecretKeyPair::from_secret(self.secret).unwrap()]
    }
    fn seal(&mut self, subject: &str, plaintext: &[u8], now: u64) -> Vec<u8> {
        let r = self.recipient;
        self.sealer.seal(subject, 1, &[r], plaintext, now).unwrap()
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).unwrap();
    b
}

#[test]
fn a_sealed_message_opens_only_for_its_recipient_on_its_subject() {
    let mut p = pair();
    let sealed = p.seal("spark.generate", b"capital of France?", NOW);
    let opened = p
        .opener()
        .open(
            "spark.generate",
            &sealed,
            p.mine().as_slice(),
            &p.senders,
            NOW,
        )
        .unwrap();
    assert_eq!(opened.plaintext, b"capital of France?");
    assert_eq!(opened.header.sender, "ozone-studio");

    // The subject is bound, not sent: on another subject the envelope does not authenticate.
    // (This session's route is its one subject, so it is refused before any decryption.)
    assert!(matches!(
        p.opener()
            .open("spark.embed", &sealed, p.mine().as_slice(), &p.senders, NOW),
        Err(EnvelopeError::WrongRoute { .. })
    ));
    // Within a wider route, the subject in the associated data refuses it.
    let r = p.recipient;
    let wide = p
        .sealer
        .seal_with(
            SealTo {
                subject: "spark.generate",
                route: "spark.>",
                schema: 1,
                recipients: &[r],
                form: Form::Full,
            },
            NOW,
            0,
            |out| {
                out.extend_from_slice(b"x");
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(
        p.opener()
            .open("spark.embed", &wide, p.mine().as_slice(), &p.senders, NOW),
        Err(EnvelopeError::CannotDecrypt)
    );
    let strangers = vec![SecretKeyPair::generate().unwrap()];
    let stranger = Opener::new(OpenerLimits::default()).open(
        "spark.generate",
        &sealed,
        strangers.as_slice(),
        &p.senders,
        NOW,
    );
    assert_eq!(stranger, Err(EnvelopeError::NotARecipient));
    let nobody = HashMap::new();
    assert!(matches!(
        p.opener()
            .open("spark.generate", &sealed, p.mine().as_slice(), &nobody, NOW),
        Err(EnvelopeError::UnknownSender { .. })
    ));
}

#[test]
fn a_broadcast_reaches_every_recipient_and_every_worker_of_a_service() {
    let mut p = pair();
    let others: Vec<[u8; 32]> = (0..2)
        .map(|_| random_bytes(32).try_into().unwrap())
        .collect();
    let mut recipients = vec![p.recipient];
    recipients.extend(
        others
            .iter()
            .map(|s| *SecretKeyPair::from_secret(*s).unwrap().public()),
    );
    let sealed = p
        .sealer
        .seal("ecosystem.phase.spark", 1, &recipients, b"ready", NOW)
        .unwrap();
    for secret in others.iter().chain([&p.secret]) {
        // Two workers of the same service hold the same key; a worker started later too.
        for _worker in 0..2 {
            let keys = vec![SecretKeyPair::from_secret(*secret).unwrap()];
            let mut o = Opener::new(OpenerLimits::default());
            assert_eq!(
                o.open(
                    "ecosystem.phase.spark",
                    &sealed,
                    keys.as_slice(),
                    &p.senders,
                    NOW
                )
                .unwrap()
                .plaintext,
                b"ready"
            );
        }
    }
}

#[test]
fn a_forged_sender_is_refused() {
    let mut p = pair();
    // Mallory, a valid recipient key holder, seals in the core's name with her own key.
    let mallory = SecretKeyPair::generate().unwrap();
    let mut forger = Sealer::new("ozone-studio", mallory, SessionLimits::default());
    let r = p.recipient;
    let forged = forger
        .seal("spark.generate", 1, &[r], b"rm -rf", NOW)
        .unwrap();
    assert!(matches!(
        p.opener().open(
            "spark.generate",
            &forged,
            p.mine().as_slice(),
            &p.senders,
            NOW
        ),
        Err(EnvelopeError::UnknownSender { .. })
    ));
    // Claiming the core's key id does not help: the HPKE Auth-mode unwrap fails.
    let mut env = Envelope::decode(&forged).unwrap();
    env.header.sender_kid = p.sealer.sender_key().kid();
    let mut bytes = env.header.encode().unwrap();
    bytes.extend_from_slice(&env.ciphertext);
    assert_eq!(
        p.opener().open(
            "spark.generate",
            &bytes,
            p.mine().as_slice(),
            &p.senders,
            NOW
        ),
        Err(EnvelopeError::CannotDecrypt)
    );
    let _ = p.seal("spark.generate", b"x", NOW);
}

#[test]
fn a_forged_first_message_of_a_session_plants_no_key() {
    // The first recipient's data key is exported, not unwrapped, so deriving it proves
    // nothing: a forgery that claims a real session id, with another encapsulated key, must
    // not leave its (wrong) key cached under that session for the genuine messages.
    let mut p = pair();
    let genuine = p.seal("spark.generate", b"genuine", NOW);
    let mut forged = Envelope::decode(&genuine).unwrap();
    forged.header.recipients[0].enc = *SecretKeyPair::generate().unwrap().public().as_bytes();
    let mut bytes = forged.header.encode().unwrap();
    bytes.extend_from_slice(&forged.ciphertext);
    let mut o = p.opener();
    let mine = p.mine();
    assert_eq!(
        o.open("spark.generate", &bytes, mine.as_slice(), &p.senders, NOW),
        Err(EnvelopeError::CannotDecrypt)
    );
    assert_eq!(
        o.open("spark.generate", &genuine, mine.as_slice(), &p.senders, NOW)
            .unwrap()
            .plaintext,
        b"genuine"
    );
}

#[test]
fn every_bit_flip_and_truncation_of_a_1_kib_envelope_is_refused() {
    let mut p = pair();
    let sealed = p.seal("spark.generate", &random_bytes(1024), NOW);
    let mut opener = p.opener();
    // Warm the session cache so flips are judged by the body's AEAD as well as the unwrap.
    assert!(opener
        .open(
            "spark.generate",
            &sealed,
            p.mine().as_slice(),
            &p.senders,
            NOW
        )
        .is_ok());
    let mut flips = 0;
    for i in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let mut fresh = p.opener();
        assert!(
            fresh
                .open("spark.generate", &bad, p.mine().as_slice(), &p.senders, NOW)
                .is_err(),
            "bit {i} flipped, fresh opener accepted"
        );
        assert!(
            opener
                .open(
                    "spark.generate",
                    &bad,
                    p.mine().as_slice(),
                    &p.senders,
                    NOW + 1
                )
                .is_err(),
            "bit {i} flipped, warm opener accepted"
        );
        flips += 1;
    }
    for len in 0..sealed.len() {
        assert!(
            opener
                .open(
                    "spark.generate",
                    &sealed[..len],
                    p.mine().as_slice(),
                    &p.senders,
                    NOW
                )
                .is_err(),
            "truncated to {len}"
        );
    }
    assert_eq!(flips, sealed.len() * 8);
}

#[test]
fn changing_subject_sender_key_id_or_version_in_the_header_is_refused() {
    let mut p = pair();
    let sealed = p.seal("spark.generate", b"payload", NOW);
    let reencode = |f: &dyn Fn(&mut Envelope)| {
        let mut env = Envelope::decode(&sealed).unwrap();
        f(&mut env);
        let mut b = env.header.encode().unwrap();
        b.extend_from_slice(&env.ciphertext);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("subject", sealed.clone(), "spark.embed"),
        (
            "session id",
            reencode(&|e| e.header.session_id[0] ^= 1),
            "spark.generate",
        ),
        (
            "counter (the nonce)",
            reencode(&|e| e.header.counter += 1),
            "spark.generate",
        ),
        (
            "sender",
            reencode(&|e| e.header.sender = "bridge".into()),
            "spark.generate",
        ),
        (
            "recipient key id",
            reencode(&|e| e.header.recipients[0].kid.0[0] ^= 1),
            "spark.generate",
        ),
        (
            "sender key id",
            reencode(&|e| e.header.sender_kid.0[0] ^= 1),
            "spark.generate",
        ),
        (
            "version",
            reencode(&|e| e.header.version = 2),
            "spark.generate",
        ),
        (
            "schema",
            reencode(&|e| e.header.schema = 2),
            "spark.generate",
        ),
        (
            // A wider route claimed for a session: the route feeds the key derivation.
            "route",
            reencode(&|e| e.header.route = "spark.>".into()),
            "spark.generate",
        ),
        (
            "timestamp",
            reencode(&|e| e.header.timestamp_ms += 1),
            "spark.generate",
        ),
    ];
    let mut senders = p.senders.clone();
    let core_key = *p.sealer.sender_key();
    senders.insert(("bridge".into(), core_key.kid()), core_key);
    for (what, bytes, subject) in cases {
        let r = p
            .opener()
            .open(subject, &bytes, p.mine().as_slice(), &senders, NOW);
        assert!(r.is_err(), "changed {what} accepted");
    }
}

#[test]
fn replay_10000_messages_with_1_percent_duplicates() {
    let mut p = pair();
    let mut opener = p.opener();
    let messages: Vec<Vec<u8>> = (0..10_000u64)
        .map(|i| p.seal("spark.embed", &i.to_be_bytes(), NOW + i))
        .collect();
    let (mut accepted, mut dup_accepted, mut false_rejections, mut dups) = (0, 0, 0, 0);
    for (i, m) in messages.iter().enumerate() {
        let now = NOW + i as u64;
        match opener.open("spark.embed", m, p.mine().as_slice(), &p.senders, now) {
            Ok(_) => accepted += 1,
            Err(e) => panic!("fresh message {i} rejected: {e}"),
        }
        if i % 100 == 99 {
            dups += 1;
            let replayed = &messages[i - (i % 37)];
            match opener.open(
                "spark.embed",
                replayed,
                p.mine().as_slice(),
                &p.senders,
                now,
            ) {
                Ok(_) => dup_accepted += 1,
                Err(EnvelopeError::Replay(_)) => {}
                Err(e) => {
                    false_rejections += 1;
                    eprintln!("unexpected error for a duplicate: {e}");
                }
            }
        }
    }
    assert_eq!(
        (accepted, dups, dup_accepted, false_rejections),
        (10_000, 100, 0, 0)
    );
}

#[test]
fn a_million_seals_use_a_million_distinct_nonces_and_message_ids() {
    let mut p = pair();
    let mut nonces = HashSet::with_capacity(1_000_000);
    let mut ids = HashSet::with_capacity(1_000_000);
    let mut encs = HashSet::new();
    let limits = SessionLimits {
        max_messages: 300_000,
        ..SessionLimits::default()
    };
    let sender = SecretKeyPair::generate().unwrap();
    let mut sealer = Sealer::new("spark", sender, limits);
    let r = p.recipient;
    let mut sessions = HashSet::new();
    for i in 0..1_000_000u64 {
        let sealed = sealer
            .seal("spark.x", 1, &[r], b"", NOW + i / 1000)
            .unwrap();
        let env = Envelope::decode(&sealed).unwrap();
        // The nonce is the session's counter under the session's own data key, so
        // (session, counter) is what must never repeat; each session's key comes from a
        // fresh ephemeral X25519 key.
        sessions.insert(env.header.session_id);
        encs.insert(env.header.recipients[0].enc);
        assert!(
            nonces.insert((env.header.session_id, env.header.counter)),
            "nonce reused at {i}"
        );
        assert!(ids.insert(env.header.msg_id()), "message id reused at {i}");
    }
    // The data key rotated at the message limit: 4 sessions, each with a fresh ephemeral key.
    assert_eq!(sessions.len(), 4);
    assert_eq!(encs.len(), 4);
    let _ = p.seal("spark.x", b"", NOW);
}

#[test]
fn steady_state_reuses_the_session_wraps() {
    let mut p = pair();
    let a = Envelope::decode(&p.seal("spark.x", b"1", NOW)).unwrap();
    let b = Envelope::decode(&p.seal("spark.x", b"2", NOW + 1)).unwrap();
    assert_eq!(a.header.session_id, b.header.session_id);
    assert_eq!(
        a.header.recipients, b.header.recipients,
        "a new X25519 encapsulation per message"
    );
    assert_eq!(
        (a.header.counter, b.header.counter),
        (0, 1),
        "the nonce counts up"
    );
    // Past the session age a new data key is drawn.
    let c = Envelope::decode(&p.seal("spark.x", b"3", NOW + SessionLimits::default().max_age_ms))
        .unwrap();
    assert_ne!(a.header.session_id, c.header.session_id);
}

#[test]
fn property_10000_random_round_trips_and_any_mutation_fails() {
    let mut p = pair();
    let mut opener = p.opener();
    let rng = SystemRandom::new();
    let mut r4 = [0u8; 4];
    for i in 0..10_000u64 {
        rng.fill(&mut r4).unwrap();
        let len = (u32::from_le_bytes(r4) as usize) % (64 * 1024 + 1);
        let plaintext = random_bytes(len);
        let sealed = p.seal("scribe.summarise", &plaintext, NOW + i);
        // A random mutation: flip one random bit anywhere.
        rng.fill(&mut r4).unwrap();
        let bit = (u32::from_le_bytes(r4) as usize) % (sealed.len() * 8);
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            opener
                .open(
                    "scribe.summarise",
                    &bad,
                    p.mine().as_slice(),
                    &p.senders,
                    NOW + i
                )
                .is_err(),
            "mutation at bit {bit} accepted"
        );
        let opened = opener
            .open(
                "scribe.summarise",
                &sealed,
                p.mine().as_slice(),
                &p.senders,
                NOW + i,
            )
            .unwrap();
        assert_eq!(opened.plaintext, plaintext);
    }
}

#[test]
fn oversize_empty_and_garbage_input_get_clear_errors() {
    let mut p = pair();
    let r = p.recipient;
    let too_big = vec![0u8; SessionLimits::default().max_payload + 1];
    assert!(matches!(
        p.sealer.seal("spark.x", 1, &[r], &too_big, NOW),
        Err(EnvelopeError::TooLarge { .. })
    ));
    assert_eq!(
        p.sealer.seal("spark.x", 1, &[], b"x", NOW),
        Err(EnvelopeError::NoRecipients)
    );
    let mut o = p.opener();
    for garbage in [&b""[..], b"OZ", b"not an envelope at all", &[0xff; 100]] {
        assert!(matches!(
            o.open("spark.x", garbage, p.mine().as_slice(), &p.senders, NOW),
            Err(EnvelopeError::Malformed(_))
        ));
    }
    let mut future = p.seal("spark.x", b"x", NOW);
    future[2] = 9;
    assert!(matches!(
        o.open("spark.x", &future, p.mine().as_slice(), &p.senders, NOW),
        Err(EnvelopeError::Unsupported { version: 9, .. })
    ));
    let stale = p.seal("spark.x", b"x", NOW - 10 * 60 * 1000);
    assert!(matches!(
        o.open("spark.x", &stale, p.mine().as_slice(), &p.senders, NOW),
        Err(EnvelopeError::OutsideWindow { .. })
    ));
}

#[test]
fn envelopes_sealed_into_the_shared_arena_stay_intact_while_later_ones_are_sealed() {
    // Small envelopes share arena chunks, large ones get their own; every one kept must open
    // to its own plaintext after hundreds more were sealed behind it.
    let mut p = pair();
    let r = p.recipient;
    let plaintexts: Vec<Vec<u8>> = (0..600usize)
        .map(|i| random_bytes(if i % 97 == 0 { 70_000 } else { i % 1500 }))
        .collect();
    let sealed: Vec<bytes::Bytes> = plaintexts
        .iter()
        .enumerate()
        .map(|(i, plain)| {
            p.sealer
                .seal_with(
                    SealTo {
                        subject: "spark.embed",
                        route: "spark.>",
                        schema: 1,
                        recipients: &[r],
                        form: Form::Full,
                    },
                    NOW + i as u64,
                    0,
                    |out| {
                        out.extend_from_slice(plain);
                        Ok(())
                    },
                )
                .unwrap()
        })
        .collect();
    let mut opener = p.opener();
    let mut buf = Vec::new();
    for (i, (env, plain)) in sealed.iter().zip(&plaintexts).enumerate() {
        let now = NOW + i as u64;
        let header = opener
            .open_into(
                Incoming {
                    freshness: Freshness::Live,
                    subject: "spark.embed",
                    bytes: env,
                    record: None,
                },
                p.mine().as_slice(),
                &p.senders,
                now,
                &mut buf,
            )
            .unwrap();
        assert_eq!(&*header.sender, "ozone-studio");
        assert_eq!(&buf, plain, "envelope {i} changed after it was sealed");
    }
}

/// Seals `plaintext` as the bus does in steady state: the session's record published, so the
/// envelope is compact. Returns the envelope and the session's record.
/// (The record is `None` for a session whose record was handed out before.)
fn seal_compact(
    p: &mut Pair,
    subject: &str,
    plaintext: &[u8],
    now: u64,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let r = p.recipient;
    let seal = |sealer: &mut Sealer| {
        sealer
            .seal_with(
                SealTo {
                    subject,
                    route: "spark.>",
                    schema: 1,
                    recipients: &[r],
                    form: Form::CompactWhenPublished,
                },
                now,
                0,
                |out| {
                    out.extend_from_slice(plaintext);
                    Ok(())
                },
            )
            .unwrap()
    };
    let mut envelope = seal(&mut p.sealer);
    let mut record = None;
    for r in p.sealer.new_records() {
        p.sealer.mark_published(&r.session_id);
        record = Some(r.record.to_vec());
    }
    if envelope[2] != VERSION_COMPACT {
        envelope = seal(&mut p.sealer);
    }
    (envelope.to_vec(), record)
}

#[test]
fn a_session_turns_compact_once_its_record_is_published_and_opens_from_cache_or_record() {
    let mut p = pair();
    let r = p.recipient;
    // Before its record is published, a session's envelopes are full (version 6).
    let full = p
        .sealer
        .seal_with(
            SealTo {
                subject: "spark.embed",
                route: "spark.>",
                schema: 1,
                recipients: &[r],
                form: Form::CompactWhenPublished,
            },
            NOW,
            0,
            |out| {
                out.extend_from_slice(b"first");
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(full[2], VERSION);
    let (compact, record) = seal_compact(&mut p, "spark.embed", b"second", NOW);
    let record = record.unwrap();
    assert_eq!(compact[2], VERSION_COMPACT);
    assert_eq!(compact.len(), COMPACT_HEADER_LEN + b"second".len() + 16);
    // `Form::Full` stays full even then (for messages kept in streams).
    assert_eq!(p.seal("spark.embed", b"kept", NOW)[2], VERSION);

    // A recipient that opened a full envelope of the session opens compact ones from its cache.
    let mine = p.mine();
    let mut saw_full = p.opener();
    saw_full
        .open("spark.embed", &full, mine.as_slice(), &p.senders, NOW)
        .unwrap();
    let opened = saw_full
        .open("spark.embed", &compact, mine.as_slice(), &p.senders, NOW)
        .unwrap();
    assert_eq!(
        (opened.plaintext.as_slice(), opened.header.sender.as_str()),
        (&b"second"[..], "ozone-studio")
    );

    // One that never saw the session needs its record, and caches the session after.
    let (next, _) = seal_compact(&mut p, "spark.embed", b"third", NOW);
    let mut late = p.opener();
    let open = |o: &mut Opener, env: &[u8], record: Option<&[u8]>| {
        let mut plain = Vec::new();
        o.open_into(
            Incoming {
                freshness: Freshness::Live,
                subject: "spark.embed",
                bytes: env,
                record,
            },
            mine.as_slice(),
            &p.senders,
            NOW,
            &mut plain,
        )
        .map(|_| plain)
    };
    assert!(matches!(
        open(&mut late, &compact, None),
        Err(EnvelopeError::UnknownSession { .. })
    ));
    // A record tampered with, or another session's, opens nothing and is not cached.
    let mut bad = record.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(open(&mut late, &compact, Some(&bad)).is_err());
    let mut other = pair();
    let other_record = seal_compact(&mut other, "spark.embed", b"x", NOW)
        .1
        .unwrap();
    assert_eq!(
        open(&mut late, &compact, Some(&other_record)),
        Err(EnvelopeError::Malformed(
            "the session record is another session's"
        ))
    );
    assert!(matches!(
        open(&mut late, &compact, None),
        Err(EnvelopeError::UnknownSession { .. })
    ));
    assert_eq!(open(&mut late, &compact, Some(&record)).unwrap(), b"second");
    assert_eq!(open(&mut late, &next, None).unwrap(), b"third");
    // Replays of compact envelopes are refused like any other.
    assert!(matches!(
        open(&mut late, &next, None),
        Err(EnvelopeError::Replay(_))
    ));
    // Someone else's keys open nothing with the record either.
    let stranger = [SecretKeyPair::generate().unwrap()];
    let mut plain = Vec::new();
    assert_eq!(
        p.opener().open_into(
            Incoming {
                freshness: Freshness::Live,
                subject: "spark.embed",
                bytes: &compact,
                record: Some(&record)
            },
            stranger.as_slice(),
            &p.senders,
            NOW,
            &mut plain
        ),
        Err(EnvelopeError::NotARecipient)
    );
}

#[test]
fn every_bit_flip_and_truncation_of_a_compact_envelope_is_refused() {
    let mut p = pair();
    let plaintext = random_bytes(1024);
    let (compact, record) = seal_compact(&mut p, "spark.embed", &plaintext, NOW);
    let record = record.unwrap();
    let mine = p.mine();
    let try_open = |env: &[u8], subject: &str| {
        let mut plain = Vec::new();
        p.opener()
            .open_into(
                Incoming {
                    freshness: Freshness::Live,
                    subject,
                    bytes: env,
                    record: Some(&record),
                },
                mine.as_slice(),
                &p.senders,
                NOW,
                &mut plain,
            )
            .map(|_| plain)
    };
    for bit in 0..compact.len() * 8 {
        let mut flipped = compact.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            try_open(&flipped, "spark.embed").is_err(),
            "bit {bit} flipped opened"
        );
    }
    for len in 0..compact.len() {
        assert!(
            try_open(&compact[..len], "spark.embed").is_err(),
            "cut to {len} opened"
        );
    }
    assert_eq!(
        try_open(&compact, "spark.generate"),
        Err(EnvelopeError::CannotDecrypt)
    );
    assert_eq!(try_open(&compact, "spark.embed").unwrap(), plaintext);
}

/// Seals `plaintext` by hand in a session whose data key a recipient learned: what a
/// co-recipient can do (every recipient of a session knows its data key).
fn reseal_full(
    data_key: &[u8; 32],
    header: &[u8],
    counter: u64,
    subject: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let mut aad = header.to_vec();
    aad.extend_from_slice(subject.as_bytes());
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
fn finding_11_a_co_recipient_cannot_plant_a_wrong_record_digest_in_a_late_receiver() {
    // The core seals to FORGE (first recipient: it exports the data key) and SPARK.
    let mut p = pair();
    let forge = SecretKeyPair::generate().unwrap();
    let spark = p.recipient;
    let recipients = [*forge.public(), spark];
    let seal = |sealer: &mut Sealer, plaintext: &[u8]| {
        sealer
            .seal_with(
                SealTo {
                    subject: "ecosystem.heartbeat.ozone-studio",
                    route: "ecosystem.heartbeat.ozone-studio",
                    schema: 1,
                    recipients: &recipients,
                    form: Form::CompactWhenPublished,
                },
                NOW,
                0,
                |out| {
                    out.extend_from_slice(plaintext);
                    Ok(())
                },
            )
            .unwrap()
    };
    let subject = "ecosystem.heartbeat.ozone-studio";
    let full = seal(&mut p.sealer, b"first");
    let record = p.sealer.new_records().pop().unwrap();
    p.sealer.mark_published(&record.session_id);
    let compact = seal(&mut p.sealer, b"second");
    assert_eq!(compact[2], VERSION_COMPACT);

    // FORGE derives the data key, alters its own entry (SPARK's still unwraps the same key)
    // and reseals a message of the session: a full envelope whose record is not the sender's.
    let env = Envelope::decode(&full).unwrap();
    let mut info = b"ozone/envelope/v4/wrap".to_vec();
    info.extend_from_slice(&env.header.session_id);
    info.push(12);
    info.extend_from_slice(b"ozone-studio");
    info.push(subject.len() as u8);
    info.extend_from_slice(subject.as_bytes());
    info.extend_from_slice(&forge.public().kid().0);
    let data_key = ozone_security::envelope::import_data_key(
        &forge,
        p.sealer.sender_key(),
        &info,
        &env.header.recipients[0].enc,
    )
    .unwrap();
    let mut planted = env.header.clone();
    planted.recipients[0].enc = *SecretKeyPair::generate().unwrap().public().as_bytes();
    planted.counter = 100;
    let mut planted = reseal_full(
        &data_key,
        &planted.encode().unwrap(),
        100,
        subject,
        b"planted",
    );
    // FORGE cannot make SPARK's sender tag: it appends tags of the right length.
    planted.extend_from_slice(&[0; 32]);

    // A late SPARK meets the planted envelope first: since version 6 it is refused (the
    // sender's tag for SPARK is wrong), and the session's real compact envelopes open —
    // through the record, as nothing was cached.
    let mine = p.mine();
    let mut late = p.opener();
    let mut plain = Vec::new();
    let mut open = |o: &mut Opener, env: &[u8], record: Option<&[u8]>| {
        o.open_into(
            Incoming {
                freshness: Freshness::Live,
                subject,
                bytes: env,
                record,
            },
            mine.as_slice(),
            &p.senders,
            NOW,
            &mut plain,
        )
        .map(|_| plain.clone())
    };
    assert_eq!(
        open(&mut late, &planted, None),
        Err(EnvelopeError::SenderTag)
    );
    assert!(matches!(
        open(&mut late, &compact, None),
        Err(EnvelopeError::UnknownSession { .. })
    ));
    assert_eq!(
        open(&mut late, &compact, Some(&record.record)).unwrap(),
        b"second"
    );
    let third = seal(&mut p.sealer, b"third");
    assert_eq!(open(&mut late, &third, None).unwrap(), b"third");
}

#[test]
fn finding_11_an_all_zero_encapsulated_key_is_refused_as_low_order_even_for_a_cached_session() {
    let mut p = pair();
    let sealed = p.seal("spark.generate", b"first", NOW);
    let mut opener = p.opener();
    let mine = p.mine();
    opener
        .open("spark.generate", &sealed, mine.as_slice(), &p.senders, NOW)
        .unwrap();
    let mut env = Envelope::decode(&p.seal("spark.generate", b"second", NOW)).unwrap();
    env.header.recipients[0].enc = [0; 32];
    let mut zeroed = env.header.encode().unwrap();
    zeroed.extend_from_slice(&env.ciphertext);
    assert_eq!(
        opener.open("spark.generate", &zeroed, mine.as_slice(), &p.senders, NOW),
        Err(EnvelopeError::LowOrderKey)
    );
}
