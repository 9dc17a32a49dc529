//! Sender tags: sender authentication that holds per recipient.
//!
//! Every recipient of a session knows its data key, so the body's AES-GCM tag proves only
//! that *some* recipient (or the sender) sealed it: a recipient could seal a message another
//! recipient takes for the sender's. So an envelope of a session with more than one recipient
//! ends in one 16-byte tag per recipient, in the session's recipient order:
//!
//! ```text
//! tag_i = HMAC-SHA256(k_i, SHA-256(u64be(len(aad)) ‖ aad ‖ ciphertext ‖ gcm tag))[..16]
//! ```
//!
//! where `k_i` is exported from recipient *i*'s own HPKE Auth-mode context (known to the
//! sender and recipient *i* alone) and `aad` is exactly the body's associated data (header,
//! record digest for a compact envelope, subject). The tag covers every byte sent before the
//! tags and what the associated data binds without sending: the GCM tag alone would not do,
//! since whoever holds the data key can find a second ciphertext with the same GCM tag. The
//! length fixes the boundary between the associated data and the ciphertext; hashing first
//! lets the sender pay for the message once and for each recipient only an HMAC of 32 bytes
//! (two SHA-256 blocks with the key schedule cached).
//!
//! A session with one recipient carries no tags: that recipient is the only party a forger
//! could fool, and it cannot fool itself.

use super::EnvelopeError;
use ring::digest::{Context, SHA256};
use ring::hmac;
use subtle::ConstantTimeEq;

/// One sender tag's length (HMAC-SHA256 truncated: 128 bits, as the GCM tag).
pub const SENDER_TAG_LEN: usize = 16;

/// The bytes of sender tags an envelope of a session of `recipients` recipients ends in.
pub fn sender_tags_len(recipients: usize) -> usize {
    if recipients > 1 {
        recipients * SENDER_TAG_LEN
    } else {
        0
    }
}

/// The tag key of one recipient of a multi-recipient session, as the sender or that recipient
/// holds it (with the HMAC's key schedule done once per session, not per message).
pub(crate) fn tag_key(secret: &[u8; 32]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// What every tag of one message is computed over:
/// SHA-256(u64be(len(aad)) ‖ aad ‖ sealed body).
pub(crate) fn tag_input(aad: &[u8], sealed_body: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&(aad.len() as u64).to_be_bytes());
    ctx.update(aad);
    ctx.update(sealed_body);
    let mut input = [0u8; 32];
    input.copy_from_slice(ctx.finish().as_ref());
    input
}

/// One recipient's tag over `input`.
pub(crate) fn tag(key: &hmac::Key, input: &[u8; 32]) -> [u8; SENDER_TAG_LEN] {
    let mut tag = [0u8; SENDER_TAG_LEN];
    tag.copy_from_slice(&hmac::sign(key, input).as_ref()[..SENDER_TAG_LEN]);
    tag
}

/// What a recipient of a multi-recipient session needs to check the sender's tag for it.
pub(crate) struct OwnTag {
    /// Our place in the session's recipient order (which tag is ours).
    pub position: usize,
    /// How many recipients (and tags) the session has: authentic, from the session itself.
    pub count: usize,
    pub key: hmac::Key,
}

impl OwnTag {
    /// Checks our tag among `tags` (all of the message's tags) against the message's
    /// associated data and sealed body. Constant time in the tag's bytes.
    pub(crate) fn verify(&self, aad: &[u8], body: &[u8], tags: &[u8]) -> Result<(), EnvelopeError> {
        let start = self.position * SENDER_TAG_LEN;
        let theirs = tags
            .get(start..start + SENDER_TAG_LEN)
            .filter(|_| tags.len() == sender_tags_len(self.count))
            .ok_or(EnvelopeError::SenderTag)?;
        let ours = tag(&self.key, &tag_input(aad, body));
        if bool::from(ours.ct_eq(theirs)) {
            Ok(())
        } else {
            Err(EnvelopeError::SenderTag)
        }
    }
}

/// Splits what follows a header into the sealed body (ciphertext ‖ GCM tag, at least the tag)
/// and the sender tags of a session of `recipients` recipients.
pub(crate) fn split_tags(rest: &[u8], recipients: usize) -> Result<(&[u8], &[u8]), EnvelopeError> {
    let tags = sender_tags_len(recipients);
    if rest.len() < tags + SENDER_TAG_LEN {
        return Err(EnvelopeError::Malformed("ciphertext shorter than its tags"));
    }
    Ok(rest.split_at(rest.len() - tags))
}
