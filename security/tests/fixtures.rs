//! Wire fixtures: committed bytes that today's code must decode to the same values and
//! re-encode to the same bytes, so any change to a wire format is a visible diff.
//! Regenerate deliberately with `OZONE_BLESS=1 cargo test -p ozone-security --test fixtures`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_security::envelope::{Envelope, KeyId, RecipientEntry};

use ozone_security::keydir::DirectoryEntry;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check(name: &str, bytes: &[u8]) {
    let path = fixture(name);
    if std::env::var_os("OZONE_BLESS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        committed == bytes,
        "{name} changed: a wire-format change must be deliberate (see the module docs)"
    );
}

fn entry() -> DirectoryEntry {
    DirectoryEntry {
        service: "spark".into(),
        epoch: 20_576,
        not_after_ms: 1_777_852_800_000,
        public: [0x5a; 32],
        certificate: vec![0x30, 0x82, 0x01, 0x0a],
        signature: vec![0x30, 0x45, 0x02, 0x21],
    }
}

#[test]
fn directory_entry_messagepack_is_stable() {
    let bytes = rmp_serde::to_vec_named(&entry()).unwrap();
    check("directory_entry.msgpack", &bytes);
    let back: DirectoryEntry =
        rmp_serde::from_slice(&std::fs::read(fixture("directory_entry.msgpack")).unwrap()).unwrap();
    assert_eq!(back, entry());
}

#[test]
fn envelope_header_layout_is_stable() {
    let header = ozone_security::envelope::Header {
        version: 6,
        suite: 1,
        schema: 1,
        sender: "ozone-studio".into(),
        route: "ecosystem.heartbeat.ozone-studio".into(),
        sender_kid: KeyId([1; 8]),
        session_id: [3; 8],
        counter: 0x0102_0304_0506_0708,
        timestamp_ms: 1_800_000_000_000,
        recipients: vec![
            RecipientEntry {
                kid: KeyId([4; 8]),
                enc: [5; 32],
                wrapped: None,
            },
            RecipientEntry {
                kid: KeyId([9; 8]),
                enc: [10; 32],
                wrapped: Some([6; 48]),
            },
        ],
    };
    let mut bytes = header.encode().unwrap();
    bytes.extend_from_slice(&[8; 16]); // an (empty) ciphertext's tag
    bytes.extend_from_slice(&[11; 16]); // two recipients: the sender's tag for each
    bytes.extend_from_slice(&[12; 16]);
    check("envelope_v6.bin", &bytes);
    let back = Envelope::decode(&std::fs::read(fixture("envelope_v6.bin")).unwrap()).unwrap();
    assert_eq!(back.header, header);
    assert_eq!(back.ciphertext, vec![8; 16]);
    assert_eq!(back.sender_tags, [[11; 16], [12; 16]].concat());
}
