//! The envelope's primitives against published vectors: RFC 9180 (every mode, every
//! ciphertext of sequence 0–256 and every export) and Wycheproof (X25519 low-order keys,
//! AES-256-GCM with 96-bit nonces).

// Test helpers may panic: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, PskBundle, Serializable};
use ozone_security::envelope::{
    self, EnvelopeError, KeyId, Opener, OpenerLimits, PublicKey, Sealer, SecretKeyPair,
    SessionLimits,
};
use serde_json::Value;
use std::collections::HashMap;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm256;

mod common;
use common::vectors;

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// Yields the vector's ikmE where HPKE asks for randomness, making encapsulation deterministic.
struct FixedIkm(Vec<u8>);

impl rand_core_010::TryRng for FixedIkm {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("HPKE only fills bytes")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!("HPKE only fills bytes")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert_eq!(dst.len(), self.0.len(), "ikm length");
        dst.copy_from_slice(&self.0);
        Ok(())
    }
}
impl rand_core_010::TryCryptoRng for FixedIkm {}

#[test]
fn rfc9180_every_mode_every_sequence_and_export_is_reproduced() {
    let all = vectors("hpke-x25519-sha256-aes256gcm.json");
    let mut modes_seen = Vec::new();
    for tv in all.as_array().unwrap() {
        let mode = tv["mode"].as_u64().unwrap();
        modes_seen.push(mode);
        let info = hx(&tv["info"]);
        let (sk_r, pk_r) = Kem::derive_keypair(&hx(&tv["ikmR"]));
        assert_eq!(pk_r.to_bytes().to_vec(), hx(&tv["pkRm"]));
        let sender = tv.get("ikmS").map(|ikm| Kem::derive_keypair(&hx(ikm)));
        let (psk, psk_id) = (
            tv.get("psk").map(hx).unwrap_or_default(),
            tv.get("psk_id").map(hx).unwrap_or_default(),
        );
        let bundle = PskBundle::new(&psk, &psk_id).unwrap();
        let mode_s = match (mode, &sender) {
            (0, _) => OpModeS::Base,
            (1, _) => OpModeS::Psk(bundle),
            (2, Some((sk, pk))) => OpModeS::Auth((sk.clone(), pk.clone())),
            (3, Some((sk, pk))) => OpModeS::AuthPsk((sk.clone(), pk.clone()), bundle),
            _ => panic!("unexpected mode {mode}"),
        };
        let mode_r = match (mode, &sender) {
            (0, _) => OpModeR::Base,
            (1, _) => OpModeR::Psk(bundle),
            (2, Some((_, pk))) => OpModeR::Auth(pk.clone()),
            (3, Some((_, pk))) => OpModeR::AuthPsk(pk.clone(), bundle),
            _ => panic!("unexpected mode {mode}"),
        };
        let mut rng = FixedIkm(hx(&tv["ikmE"]));
        let (enc, mut tx) =
            hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(&mode_s, &pk_r, &info, &mut rng).unwrap();
        assert_eq!(enc.to_bytes().to_vec(), hx(&tv["enc"]), "mode {mode}: enc");
        let enc_r = <Kem as hpke::Kem>::EncappedKey::from_bytes(&hx(&tv["enc"])).unwrap();
        let mut rx = hpke::setup_receiver::<Aead, Kdf, Kem>(&mode_r, &sk_r, &enc_r, &info).unwrap();
        let encryptions = tv["encryptions"].as_array().unwrap();
        assert_eq!(encryptions.len(), 257, "sequence 0..=256");
        for (seq, e) in encryptions.iter().enumerate() {
            let ct = tx.seal(&hx(&e["pt"]), &hx(&e["aad"])).unwrap();
            assert_eq!(ct, hx(&e["ct"]), "mode {mode} seq {seq}");
            assert_eq!(
                rx.open(&ct, &hx(&e["aad"])).unwrap(),
                hx(&e["pt"]),
                "mode {mode} seq {seq} open"
            );
        }
        for x in tv["exports"].as_array().unwrap() {
            let mut out = vec![0u8; x["L"].as_u64().unwrap() as usize];
            tx.export(&hx(&x["exporter_context"]), &mut out).unwrap();
            assert_eq!(out, hx(&x["exported_value"]), "mode {mode} export");
            rx.export(&hx(&x["exporter_context"]), &mut out).unwrap();
            assert_eq!(out, hx(&x["exported_value"]), "mode {mode} receiver export");
        }
    }
    modes_seen.sort();
    assert_eq!(
        modes_seen,
        [0, 1, 2, 3],
        "the envelope uses mode 2 (Auth); all four are checked"
    );
}

fn low_order_keys() -> Vec<[u8; 32]> {
    let w = vectors("wycheproof-x25519_test.json");
    let mut keys = Vec::new();
    for g in w["testGroups"].as_array().unwrap() {
        for t in g["tests"].as_array().unwrap() {
            if t["shared"].as_str() == Some(&"00".repeat(32)) {
                keys.push(hx(&t["public"]).try_into().unwrap());
            }
        }
    }
    keys
}

#[test]
fn wycheproof_low_order_keys_are_refused_in_directory_wrap_and_envelope() {
    let keys = low_order_keys();
    assert_eq!(keys.len(), 31);
    let sender = SecretKeyPair::generate().unwrap();
    let me_secret = [9u8; 32];
    let me = SecretKeyPair::from_secret(me_secret).unwrap();
    let mut sealer = Sealer::new(
        "spark",
        SecretKeyPair::from_secret([7u8; 32]).unwrap(),
        SessionLimits::default(),
    );
    let good = sealer
        .seal("spark.x", 1, &[*me.public()], b"hello", 1_000)
        .unwrap();
    let senders: HashMap<(String, KeyId), PublicKey> = [(
        ("spark".to_string(), sealer.sender_key().kid()),
        *sealer.sender_key(),
    )]
    .into();
    for k in &keys {
        assert!(envelope::is_low_order(k));
        // As a directory entry (sender or recipient key).
        assert_eq!(PublicKey::from_bytes(*k), Err(EnvelopeError::LowOrderKey));
        // As the encapsulated key of an envelope addressed to us.
        let mut env = envelope::Envelope::decode(&good).unwrap();
        env.header.recipients[0].enc = *k;
        let mut forged = env.header.encode().unwrap();
        forged.extend_from_slice(&env.ciphertext);
        let mine = vec![SecretKeyPair::from_secret(me_secret).unwrap()];
        let mut opener = Opener::new(OpenerLimits::default());
        assert_eq!(
            opener.open("spark.x", &forged, mine.as_slice(), &senders, 1_000),
            Err(EnvelopeError::LowOrderKey)
        );
        // As the encapsulated key handed straight to the unwrap primitive.
        let wrapped = [0u8; 48];
        assert_eq!(
            envelope::unwrap_data_key(&me, sender.public(), b"info", k, &wrapped),
            Err(EnvelopeError::LowOrderKey)
        );
    }
}

#[test]
fn wycheproof_aes_256_gcm_96_bit_nonce_vectors_pass() {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let w = vectors("wycheproof-aes_gcm_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for g in w["testGroups"].as_array().unwrap() {
        if g["keySize"] != 256 || g["ivSize"] != 96 {
            continue;
        }
        for t in g["tests"].as_array().unwrap() {
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &hx(&t["key"])).unwrap());
            let nonce = Nonce::try_assume_unique_for_key(&hx(&t["iv"])).unwrap();
            let mut buf = [hx(&t["ct"]), hx(&t["tag"])].concat();
            let result = key
                .open_in_place(nonce, Aad::from(hx(&t["aad"])), &mut buf)
                .map(|p| p.to_vec());
            match t["result"].as_str().unwrap() {
                "valid" => {
                    assert_eq!(result.unwrap(), hx(&t["msg"]), "tcId {}", t["tcId"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(result.is_err(), "tcId {} accepted", t["tcId"]);
                    invalid += 1;
                }
                other => panic!("unexpected result {other}"),
            }
        }
    }
    assert_eq!((valid, invalid), (39, 27));
}
