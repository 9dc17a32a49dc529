//! Key rotation across seven simulated 24 h boundaries under continuous traffic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_security::envelope::{
    EnvelopeError, KeyId, KeyRing, Opener, OpenerLimits, PublicKey, Rotation, Sealer,
    SecretKeyPair, SessionLimits,
};
use std::collections::HashMap;

const MINUTE: u64 = 60 * 1000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const START: u64 = 1_800_000_000_000;

#[test]
fn seven_daily_rotations_under_continuous_traffic() {
    let rotation = Rotation {
        origin_ms: START,
        interval_ms: DAY,
        grace_ms: HOUR,
    };
    // Two SPARK workers started at different times hold the same ring.
    let mut worker_a = KeyRing::from_chain("spark", rotation, [3u8; 32], 0);
    let mut worker_b = KeyRing::from_chain("spark", rotation, [3u8; 32], 0);
    let core = SecretKeyPair::generate().unwrap();
    let senders: HashMap<(String, KeyId), PublicKey> =
        [(("ozone-studio".into(), core.public().kid()), *core.public())].into();
    let mut sealer = Sealer::new("ozone-studio", core, SessionLimits::default());
    let mut opener_a = Opener::new(OpenerLimits::default());
    let mut opener_b = Opener::new(OpenerLimits::default());

    // The core learns SPARK's current key from the directory with up to 30 minutes' lag.
    let mut directory_view: Option<(u64, PublicKey)> = None;
    let (mut sent, mut failures, mut erased) = (0u64, 0u64, Vec::new());
    let mut retired_epoch_key: Option<PublicKey> = None;
    let mut t = START;
    while t < START + 7 * DAY + 2 * HOUR {
        erased.extend(worker_a.advance(t).unwrap());
        worker_b.advance(t).unwrap();
        let published = *worker_a.current().unwrap().public();
        if directory_view.is_none_or(|(seen_at, _)| t - seen_at >= 30 * MINUTE) {
            if let Some((_, old)) = directory_view {
                if old != published {
                    retired_epoch_key.get_or_insert(old);
                }
            }
            directory_view = Some((t, published));
        }
        let (_, to) = directory_view.unwrap();
        let sealed = sealer
            .seal("spark.generate", 1, &[to], &sent.to_be_bytes(), t)
            .unwrap();
        // Queue work: whichever worker gets it must open it.
        let (opener, ring) = if sent % 2 == 0 {
            (&mut opener_a, &worker_a)
        } else {
            (&mut opener_b, &worker_b)
        };
        if opener
            .open("spark.generate", &sealed, ring, &senders, t)
            .is_err()
        {
            failures += 1;
        }
        sent += 1;
        t += MINUTE;
    }
    assert_eq!(
        failures, 0,
        "{failures} of {sent} messages inside the window failed"
    );
    assert!(sent > 7 * 24 * 60);
    assert_eq!(worker_a.current_epoch(), 7);
    assert_eq!(
        erased,
        (0..7).collect::<Vec<u64>>(),
        "each old epoch erased exactly once"
    );
    // Old private keys are gone: only the current epoch (its predecessor's grace is over).
    assert_eq!(worker_a.held_epochs(), vec![7]);

    // A message sealed to epoch 0's key after its grace window is refused.
    let old = retired_epoch_key.unwrap();
    let late = sealer
        .seal("spark.generate", 1, &[old], b"late", t)
        .unwrap();
    assert_eq!(
        opener_a.open("spark.generate", &late, &worker_a, &senders, t),
        Err(EnvelopeError::NotARecipient)
    );
}

#[test]
fn the_ring_file_is_private_shared_by_workers_and_forgets_erased_keys() {
    use ozone_bus_schemas::{Component, Identity};
    use ozone_security::envelope::keyring_file;
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let home = ozone_security::Home::new(tmp.path().join("h"));
    home.create_layout().unwrap();
    let spark = Identity::component(Component::Spark);
    let rotation = Rotation {
        origin_ms: START,
        interval_ms: DAY,
        grace_ms: HOUR,
    };

    let first = keyring_file::load_or_create(&home, &spark, rotation, START + 10).unwrap();
    let file = keyring_file::path(&home, &spark);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let day0 = std::fs::read_to_string(&file).unwrap();
    // A second worker started later loads the same keys.
    let second = keyring_file::load_or_create(&home, &spark, rotation, START + 20).unwrap();
    assert_eq!(
        first.current().map(|k| *k.public()),
        second.current().map(|k| *k.public())
    );

    // Two days on, epoch 0's secret is out of memory and out of the file.
    let later =
        keyring_file::load_or_create(&home, &spark, rotation, START + 2 * DAY + 2 * HOUR).unwrap();
    assert_eq!(later.held_epochs(), vec![2]);
    let day2 = std::fs::read_to_string(&file).unwrap();
    let secret0 = day0
        .split("\"held\":[[0,\"")
        .nth(1)
        .and_then(|r| r.get(..64))
        .unwrap();
    assert!(!day2.contains(secret0), "epoch 0's secret is still on disk");
    assert!(
        !day2.contains(&day0[day0.find("\"chain\":\"").unwrap()..][..80]),
        "the old chain is still on disk"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A worker restarted from the new file derives the same current key as a running one.
    let mut running = first;
    running.advance(START + 2 * DAY + 2 * HOUR).unwrap();
    assert_eq!(
        running.current().map(|k| *k.public()),
        later.current().map(|k| *k.public())
    );
}
