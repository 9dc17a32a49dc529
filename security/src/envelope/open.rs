//! Opening: check the subject, find our copy of the data key (cached per session), decrypt
//! with the header as associated data, then — only for authentic messages — check replay.

use super::hpke_wrap::unwrap_data_key;
use super::seal::wrap_info;
use super::wire::{Envelope, Header};
use super::{EnvelopeError, KeyId, PublicKey, ReplayGuard, SecretKeyPair};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::collections::HashMap;

/// Where an opener finds a sender's public keys (the key directory, later).
pub trait SenderKeys {
    fn sender_key(&self, sender: &str, kid: &KeyId) -> Option<PublicKey>;
}

impl SenderKeys for HashMap<(String, KeyId), PublicKey> {
    fn sender_key(&self, sender: &str, kid: &KeyId) -> Option<PublicKey> {
        self.get(&(sender.to_string(), *kid)).copied()
    }
}

/// The secret keys a service can open with (a key ring, or fixed keys in tests).
pub trait RecipientKeys {
    fn recipient_key(&self, kid: &KeyId) -> Option<&SecretKeyPair>;
}

impl RecipientKeys for [SecretKeyPair] {
    fn recipient_key(&self, kid: &KeyId) -> Option<&SecretKeyPair> {
        self.iter().find(|k| k.public().kid() == *kid)
    }
}

impl RecipientKeys for super::KeyRing {
    fn recipient_key(&self, kid: &KeyId) -> Option<&SecretKeyPair> {
        self.find(kid)
    }
}

/// Bounds of an opener's memory and its replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenerLimits {
    pub replay_window_ms: u64,
    pub max_replay_entries: usize,
    pub max_cached_sessions: usize,
}

impl Default for OpenerLimits {
    fn default() -> Self {
        OpenerLimits {
            replay_window_ms: 2 * 60 * 1000,
            max_replay_entries: 1 << 20,
            max_cached_sessions: 4096,
        }
    }
}

/// An authentic, fresh message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub header: Header,
    pub plaintext: Vec<u8>,
}

struct CachedKey {
    key: LessSafeKey,
    last_used_ms: u64,
}

/// Opens envelopes addressed to one service's keys; holds the session cache and replay
/// state, not the keys (they rotate underneath it).
pub struct Opener {
    cache: HashMap<([u8; 16], KeyId, KeyId), CachedKey>,
    replay: ReplayGuard,
    limits: OpenerLimits,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener({} cached sessions)", self.cache.len())
    }
}

impl Opener {
    pub fn new(limits: OpenerLimits) -> Opener {
        Opener {
            cache: HashMap::new(),
            replay: ReplayGuard::new(limits.replay_window_ms, limits.max_replay_entries),
            limits,
        }
    }

    fn data_key(
        &mut self,
        h: &Header,
        mine: &(impl RecipientKeys + ?Sized),
        sender: &PublicKey,
        now_ms: u64,
    ) -> Result<&LessSafeKey, EnvelopeError> {
        // A key past its grace window is gone from `mine`, so sessions cached under it are
        // unreachable too.
        let (me, entry) = h
            .recipients
            .iter()
            .find_map(|r| mine.recipient_key(&r.kid).map(|k| (k, r)))
            .ok_or(EnvelopeError::NotARecipient)?;
        let cache_key = (h.session_id, h.sender_kid, entry.kid);
        if !self.cache.contains_key(&cache_key) {
            let info = wrap_info(&h.session_id, &h.sender, &entry.kid);
            let data_key = unwrap_data_key(me, sender, &info, &entry.enc, &entry.wrapped)?;
            let key = UnboundKey::new(&AES_256_GCM, data_key.as_ref())
                .map_err(|_| EnvelopeError::CannotDecrypt)?;
            if self.cache.len() >= self.limits.max_cached_sessions {
                // Evict the least recently used session: bounded memory under any load.
                if let Some(oldest) = self
                    .cache
                    .iter()
                    .min_by_key(|(_, c)| c.last_used_ms)
                    .map(|(k, _)| *k)
                {
                    self.cache.remove(&oldest);
                }
            }
            self.cache.insert(
                cache_key,
                CachedKey {
                    key: LessSafeKey::new(key),
                    last_used_ms: now_ms,
                },
            );
        }
        let cached = self
            .cache
            .get_mut(&cache_key)
            .ok_or(EnvelopeError::CannotDecrypt)?;
        cached.last_used_ms = now_ms;
        Ok(&cached.key)
    }

    /// Opens an envelope that arrived on `actual_subject`.
    pub fn open(
        &mut self,
        actual_subject: &str,
        bytes: &[u8],
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
    ) -> Result<Opened, EnvelopeError> {
        let opened = self.authenticate(actual_subject, bytes, mine, senders, now_ms)?;
        self.replay
            .check(opened.header.msg_id, opened.header.timestamp_ms, now_ms)?;
        Ok(opened)
    }

    /// Opens an envelope read back from a stream's archive (the audit stream): authenticated
    /// and decrypted exactly like [`Opener::open`], but with no freshness or replay check —
    /// archived messages are old by design, and the stream's sequence numbers order them.
    pub fn open_archived(
        &mut self,
        actual_subject: &str,
        bytes: &[u8],
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
    ) -> Result<Opened, EnvelopeError> {
        self.authenticate(actual_subject, bytes, mine, senders, now_ms)
    }

    fn authenticate(
        &mut self,
        actual_subject: &str,
        bytes: &[u8],
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
    ) -> Result<Opened, EnvelopeError> {
        let (header, header_end) = Envelope::decode_header(bytes)?;
        if header.subject != actual_subject {
            return Err(EnvelopeError::WrongSubject {
                sealed: header.subject.clone(),
                actual: actual_subject.to_string(),
            });
        }
        let sender = senders
            .sender_key(&header.sender, &header.sender_kid)
            .ok_or_else(|| EnvelopeError::UnknownSender {
                sender: header.sender.clone(),
                kid: header.sender_kid.to_string(),
            })?;
        let key = self.data_key(&header, mine, &sender, now_ms)?;
        // The one copy: the body is decrypted in place; the header is authenticated where it
        // lies in the received bytes.
        let (aad, body) = bytes.split_at(header_end);
        let mut buf = body.to_vec();
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(header.nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| EnvelopeError::CannotDecrypt)?
            .len();
        buf.truncate(plain_len);
        Ok(Opened {
            header,
            plaintext: buf,
        })
    }
}
