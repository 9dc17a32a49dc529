//! Arbitrary bytes through envelope parsing and opening: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ozone_security::envelope::{
    CompactHeader, Envelope, Establishment, Form, Freshness, Incoming, KeyId, SealTo, Opener, OpenerLimits,
    PublicKey, Sealer, SecretKeyPair, SessionLimits,
};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

struct Fixture {
    genuine: Vec<u8>,
    /// A full envelope to two recipients: it ends in sender tags.
    broadcast: Vec<u8>,
    /// A compact envelope of the same session, and the session's record.
    compact: Vec<u8>,
    record: Vec<u8>,
    mine: Vec<SecretKeyPair>,
    senders: HashMap<(String, KeyId), PublicKey>,
    opener: Mutex<Opener>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let me = SecretKeyPair::from_secret([1; 32]).expect("fixed key");
    let sender = SecretKeyPair::from_secret([2; 32]).expect("fixed key");
    let senders = [(("ozone-studio".to_string(), sender.public().kid()), *sender.public())].into();
    // Seed the opener's session cache with a genuine session so mutations of real
    // envelopes (from the corpus) reach the AEAD path too.
    let mut sealer = Sealer::new("ozone-studio", sender, SessionLimits::default());
    // `seal` binds its session to the subject itself: the compact envelope below shares it.
    let genuine = sealer.seal("spark.generate", 1, &[*me.public()], b"seed", 1).expect("seal");
    let recipient = *me.public();
    let other = *SecretKeyPair::from_secret([3; 32]).expect("fixed key").public();
    let broadcast =
        sealer.seal("spark.generate", 1, &[recipient, other], b"both", 1).expect("seal");
    let record = sealer
        .new_records()
        .into_iter()
        .find(|r| r.record.len() < 100)
        .expect("the single recipient's session")
        .record
        .to_vec();
    let mut opener = Opener::new(OpenerLimits::default());
    let mine = vec![me];
    let _ = opener.open("spark.generate", &genuine, mine.as_slice(), &senders, 1);
    let _ = opener.open("spark.generate", &broadcast, mine.as_slice(), &senders, 1);
    let session = Establishment::parse_record(&record).expect("record").session_id;
    sealer.mark_published(&session);
    let compact = sealer
        .seal_with(SealTo { subject: "spark.generate", route: "spark.generate", schema: 1, recipients: &[recipient], form: Form::CompactWhenPublished }, 1, 4, |out| {
            out.extend_from_slice(b"next");
            Ok(())
        })
        .expect("seal")
        .to_vec();
    Fixture { genuine, broadcast, compact, record, mine, senders, opener: Mutex::new(opener) }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    // Raw bytes, and a genuine envelope whose tail from an offset (the first two bytes) is
    // replaced by the rest: the splice reaches every field past the magic, the key unwrap
    // and the AEAD, which random bytes alone rarely do.
    // The same for a compact envelope and a session record.
    let splice = |genuine: &[u8]| {
        let mut spliced = Vec::new();
        if let [a, b, rest @ ..] = data {
            let at = usize::from(u16::from_le_bytes([*a, *b])) % (genuine.len() + 1);
            spliced.extend_from_slice(&genuine[..at]);
            spliced.extend_from_slice(rest);
        }
        spliced
    };
    let (spliced, compact, record) = (splice(&f.genuine), splice(&f.compact), splice(&f.record));
    let broadcast = splice(&f.broadcast);
    for input in [data, spliced.as_slice(), compact.as_slice(), broadcast.as_slice()] {
        let _ = Envelope::decode(input);
        let _ = CompactHeader::parse(input);
        if let Ok(mut opener) = f.opener.lock() {
            let _ = opener.open("spark.generate", input, f.mine.as_slice(), &f.senders, 1);
        }
        // A compact envelope of a session the opener has not seen, with its genuine record.
        let mut plain = Vec::new();
        let _ = Opener::new(OpenerLimits::default()).open_into(Incoming { freshness: Freshness::Live, subject: "spark.generate", bytes: input, record: Some(&f.record) }, f.mine.as_slice(), &f.senders, 1, &mut plain);
    }
    // A genuine compact envelope with an arbitrary or spliced record.
    for input in [data, record.as_slice()] {
        let _ = Establishment::parse_record(input);
        let mut plain = Vec::new();
        let _ = Opener::new(OpenerLimits::default()).open_into(Incoming { freshness: Freshness::Live, subject: "spark.generate", bytes: &f.compact, record: Some(input) }, f.mine.as_slice(), &f.senders, 1, &mut plain);
    }
});
