//! Arbitrary bytes through envelope parsing and opening: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ozone_security::envelope::{Envelope, KeyId, Opener, OpenerLimits, PublicKey, SecretKeyPair, Sealer, SessionLimits};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

struct Fixture {
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
    Fixture { mine, senders, opener: Mutex::new(opener) }
});

fuzz_target!(|data: &[u8]| {
    let _ = Envelope::decode(data);
    let f = &*FIXTURE;
    if let Ok(mut opener) = f.opener.lock() {
        let _ = opener.open("spark.generate", data, f.mine.as_slice(), &f.senders, 1);
    }
});
