//! A session's data key reaches its recipients through HPKE Auth mode (RFC 9180 §5.1.3): the
//! first recipient's context *exports* it (§5.3, the secret-export interface), and every
//! other recipient gets it *wrapped* (a single-shot seal). Only the recipient can derive or
//! unwrap it, and only with the sender's public key, which authenticates the sender's key to
//! the recipient.
//!
//! The same context also exports the recipient's *sender-tag key* (its own label): a key only
//! the sender and that one recipient know, which authenticates the sender to that recipient
//! even though every recipient of the session knows the data key (see `sender_tags`).

use super::{EnvelopeError, PublicKey, SecretKeyPair};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm256;

pub const DATA_KEY_LEN: usize = 32;
/// Encapsulated key (32) + wrapped data key (32) + tag (16).
pub(crate) const ENC_LEN: usize = 32;
pub(crate) const WRAPPED_LEN: usize = DATA_KEY_LEN + 16;

fn kem_keys(
    pair: &SecretKeyPair,
) -> Result<
    (
        <Kem as hpke::Kem>::PrivateKey,
        <Kem as hpke::Kem>::PublicKey,
    ),
    EnvelopeError,
> {
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(pair.secret_bytes())
        .map_err(|_| EnvelopeError::CannotDecrypt)?;
    let pk = kem_public(pair.public())?;
    Ok((sk, pk))
}

fn kem_public(key: &PublicKey) -> Result<<Kem as hpke::Kem>::PublicKey, EnvelopeError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(key.as_bytes())
        .map_err(|_| EnvelopeError::LowOrderKey)
}

/// The exporter context of the session's data key (RFC 9180 §5.3).
const DATA_KEY_EXPORT: &[u8] = b"ozone/envelope/v2/data-key";
/// The exporter context of a recipient's sender-tag key: a label of its own, so the tag key
/// is independent of the data key every recipient shares.
const SENDER_TAG_EXPORT: &[u8] = b"ozone/envelope/v6/sender-tag";

/// A 32-byte secret, wiped when dropped.
pub type Secret = zeroize::Zeroizing<[u8; DATA_KEY_LEN]>;

/// Exports a secret from an HPKE context (sender's or receiver's side).
fn export(
    exporter: impl FnOnce(&mut [u8]) -> Result<(), hpke::HpkeError>,
) -> Result<Secret, EnvelopeError> {
    let mut key = zeroize::Zeroizing::new([0u8; DATA_KEY_LEN]);
    exporter(key.as_mut()).map_err(|_| EnvelopeError::CannotDecrypt)?;
    Ok(key)
}

type SenderContext = hpke::aead::AeadCtxS<Aead, Kdf, Kem>;
type ReceiverContext = hpke::aead::AeadCtxR<Aead, Kdf, Kem>;

/// An Auth-mode context from `sender` to `recipient`, bound to `info`; returns (enc, context).
fn sender_context(
    sender: &SecretKeyPair,
    recipient: &PublicKey,
    info: &[u8],
) -> Result<([u8; ENC_LEN], SenderContext), EnvelopeError> {
    let mode = OpModeS::Auth(kem_keys(sender)?);
    let (enc, ctx) = hpke::setup_sender::<Aead, Kdf, Kem>(&mode, &kem_public(recipient)?, info)
        .map_err(|_| EnvelopeError::LowOrderKey)?;
    let enc: [u8; ENC_LEN] = enc
        .to_bytes()
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::Malformed("encapsulated key length"))?;
    Ok((enc, ctx))
}

/// The recipient's side of [`sender_context`]. Setting it up authenticates nothing by itself:
/// a wrong sender key or `enc` gives a different context, which the AEAD then refuses.
fn receiver_context(
    me: &SecretKeyPair,
    sender: &PublicKey,
    info: &[u8],
    enc: &[u8; ENC_LEN],
) -> Result<ReceiverContext, EnvelopeError> {
    if super::is_low_order(enc) {
        return Err(EnvelopeError::LowOrderKey);
    }
    let (sk, _) = kem_keys(me)?;
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| EnvelopeError::LowOrderKey)?;
    let mode = OpModeR::Auth(kem_public(sender)?);
    hpke::setup_receiver::<Aead, Kdf, Kem>(&mode, &sk, &enc, info)
        .map_err(|_| EnvelopeError::CannotDecrypt)
}

/// Sets up an Auth-mode context to `recipient` and exports a new data key and the
/// recipient's sender-tag key from it; returns (enc, data key, tag key). Used for a session's
/// first recipient: no wrap needs to travel.
pub(crate) fn export_session_keys(
    sender: &SecretKeyPair,
    recipient: &PublicKey,
    info: &[u8],
) -> Result<([u8; ENC_LEN], Secret, Secret), EnvelopeError> {
    let (enc, ctx) = sender_context(sender, recipient, info)?;
    let data_key = export(|out| ctx.export(DATA_KEY_EXPORT, out))?;
    let tag_key = export(|out| ctx.export(SENDER_TAG_EXPORT, out))?;
    Ok((enc, data_key, tag_key))
}

/// The recipient's side of [`export_session_keys`]: the same data key, only if `sender` made
/// `enc` for `me` with this `info`. (A wrong key gives a different data key, which the body's
/// AEAD then refuses.)
pub fn import_data_key(
    me: &SecretKeyPair,
    sender: &PublicKey,
    info: &[u8],
    enc: &[u8; ENC_LEN],
) -> Result<Secret, EnvelopeError> {
    let ctx = receiver_context(me, sender, info, enc)?;
    export(|out| ctx.export(DATA_KEY_EXPORT, out))
}

/// The recipient's side of [`export_session_keys`]: (data key, tag key).
pub fn import_session_keys(
    me: &SecretKeyPair,
    sender: &PublicKey,
    info: &[u8],
    enc: &[u8; ENC_LEN],
) -> Result<(Secret, Secret), EnvelopeError> {
    let ctx = receiver_context(me, sender, info, enc)?;
    let data_key = export(|out| ctx.export(DATA_KEY_EXPORT, out))?;
    let tag_key = export(|out| ctx.export(SENDER_TAG_EXPORT, out))?;
    Ok((data_key, tag_key))
}

/// Wraps `data_key` for `recipient`, authenticated as `sender` (the context's first seal,
/// empty AAD: RFC 9180's single-shot seal). `info` binds the wrap to its context (session,
/// sender, recipient); returns (enc, wrapped).
pub fn wrap_data_key(
    sender: &SecretKeyPair,
    recipient: &PublicKey,
    info: &[u8],
    data_key: &[u8; DATA_KEY_LEN],
) -> Result<([u8; ENC_LEN], [u8; WRAPPED_LEN]), EnvelopeError> {
    wrap_session_keys(sender, recipient, info, data_key).map(|(enc, wrapped, _)| (enc, wrapped))
}

/// [`wrap_data_key`], with the recipient's sender-tag key exported from the same context;
/// returns (enc, wrapped, tag key).
pub(crate) fn wrap_session_keys(
    sender: &SecretKeyPair,
    recipient: &PublicKey,
    info: &[u8],
    data_key: &[u8; DATA_KEY_LEN],
) -> Result<([u8; ENC_LEN], [u8; WRAPPED_LEN], Secret), EnvelopeError> {
    let (enc, mut ctx) = sender_context(sender, recipient, info)?;
    let wrapped = ctx
        .seal(data_key, b"")
        .map_err(|_| EnvelopeError::LowOrderKey)?;
    let wrapped: [u8; WRAPPED_LEN] = wrapped
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::Malformed("wrapped key length"))?;
    let tag_key = export(|out| ctx.export(SENDER_TAG_EXPORT, out))?;
    Ok((enc, wrapped, tag_key))
}

/// Unwraps a data key sealed by [`wrap_data_key`]; fails unless `sender` made it for `me`.
pub fn unwrap_data_key(
    me: &SecretKeyPair,
    sender: &PublicKey,
    info: &[u8],
    enc: &[u8; ENC_LEN],
    wrapped: &[u8; WRAPPED_LEN],
) -> Result<Secret, EnvelopeError> {
    unwrap_session_keys(me, sender, info, enc, wrapped).map(|(data_key, _)| data_key)
}

/// The recipient's side of [`wrap_session_keys`]: (data key, tag key).
pub fn unwrap_session_keys(
    me: &SecretKeyPair,
    sender: &PublicKey,
    info: &[u8],
    enc: &[u8; ENC_LEN],
    wrapped: &[u8; WRAPPED_LEN],
) -> Result<(Secret, Secret), EnvelopeError> {
    let mut ctx = receiver_context(me, sender, info, enc)?;
    let plain = ctx
        .open(wrapped, b"")
        .map_err(|_| EnvelopeError::CannotDecrypt)?;
    let plain = zeroize::Zeroizing::new(plain);
    let mut key = zeroize::Zeroizing::new([0u8; DATA_KEY_LEN]);
    if plain.len() != DATA_KEY_LEN {
        return Err(EnvelopeError::CannotDecrypt);
    }
    key.copy_from_slice(&plain);
    let tag_key = export(|out| ctx.export(SENDER_TAG_EXPORT, out))?;
    Ok((key, tag_key))
}
