//! Arbitrary bytes through envelope parsing and opening: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ozone_security::envelope::{Envelope, KeyId, Opener, OpenerLimits, PublicKey, SecretKeyPair, Sealer, SessionLimits};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

struct Fixture {
    genuine: Vec<u8>,
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
    let genuine = sealer.seal("spark.generate", 1, &[*me.public()], b"seed", 1).expect("seal");
    let mut opener = Opener::new(OpenerLimits::default());
    let mine = vec![me];
    let _ = opener.open("spark.generate", &genuine, mine.as_slice(), &senders, 1);
    Fixture { genuine, mine, senders, opener: Mutex::new(opener) }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    // Raw bytes, and a genuine envelope whose tail from an offset (the first two bytes) is
    // replaced by the rest: the splice reaches every field past the magic, the key unwrap
    // and the AEAD, which random bytes alone rarely do.
    let mut spliced = Vec::new();
    if let [a, b, rest @ ..] = data {
        let at = usize::from(u16::from_le_bytes([*a, *b])) % (f.genuine.len() + 1);
        spliced.extend_from_slice(&f.genuine[..at]);
        spliced.extend_from_slice(rest);
    }
    for input in [data, spliced.as_slice()] {
        let _ = Envelope::decode(input);
        if let Ok(mut opener) = f.opener.lock() {
            let _ = opener.open("spark.generate", input, f.mine.as_slice(), &f.senders, 1);
        }
    }
});
