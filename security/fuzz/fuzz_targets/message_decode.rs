//! Arbitrary bytes as a bus message body (MessagePack) and as a key-directory entry: decoding
//! must fail cleanly, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ozone_security::envelope::PublicKey;
use ozone_security::keydir::DirectoryEntry;
use serde::Deserialize;

/// The shape of a typical request: strings, numbers, optional and nested fields, bytes.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Request {
    prompt: String,
    max_tokens: u32,
    temperature: Option<f32>,
    stop: Vec<String>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let _ = rmp_serde::from_slice::<Request>(data);
    if let Ok(entry) = rmp_serde::from_slice::<DirectoryEntry>(data) {
        let _ = PublicKey::from_bytes(entry.public);
    }
});
