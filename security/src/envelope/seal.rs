//! Sealing: one data key per session (recipient set), exported for the first recipient and
//! wrapped for the others, then one AES-256-GCM per message (and, with several recipients,
//! one sender tag per recipient: `sender_tags`).

use super::hpke_wrap::{export_session_keys, wrap_session_keys};
use super::sender_tags::{self, sender_tags_len, tag_input, tag_key};
use super::wire::{
    body_aad, body_nonce, compact_aad, record_digest, route_covers, session_record, CompactHeader,
    HeaderRef, RecipientEntry, COMPACT_HEADER_LEN, MAX_ENVELOPE_LEN, SESSION_ID_LEN, SUITE_V1,
    VERSION,
};
use super::{EnvelopeError, KeyId, PublicKey, SecretKeyPair, DATA_KEY_LEN};
use bytes::{Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;

/// When a sender starts a new session (new data key, new wraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A data key is used for at most this long…
    pub max_age_ms: u64,
    /// …and for at most this many messages (our nonces are the session's message counter,
    /// unique under its fresh data key by construction, so this limits exposure, not nonce
    /// safety).
    pub max_messages: u64,
    /// Largest plaintext accepted.
    pub max_payload: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_age_ms: 10 * 60 * 1000,
            max_messages: 1 << 20,
            max_payload: MAX_ENVELOPE_LEN - 64 * 1024,
        }
    }
}

struct Session {
    id: [u8; SESSION_ID_LEN],
    key: LessSafeKey,
    entries: Vec<RecipientEntry>,
    /// Each recipient's sender-tag key, in the entries' order; empty for a single recipient.
    tag_keys: Vec<hmac::Key>,
    counter: u64,
    created_ms: u64,
    /// The session record (what a compact envelope leaves out) and its digest.
    record: Bytes,
    digest: [u8; 32],
    /// Handed to the caller to publish ([`Sealer::new_records`]).
    handed_out: bool,
    /// The caller confirmed the record is where every recipient can fetch it: from now on
    /// messages that may be compact are.
    published: bool,
}

/// Which envelope a message may be sealed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Always a full envelope (version 6): opens with nothing but the recipient's keys and
    /// the key directory — for messages kept in streams and read back later.
    Full,
    /// A compact envelope (version 7) once the session's record is published, a full one
    /// before.
    CompactWhenPublished,
}

/// Where and how one message is sealed: the subject it is published on, the route its
/// session is bound to (the subject pattern of its table row; it must cover `subject`), the
/// payload's schema version, the recipients and the envelope form.
#[derive(Debug, Clone, Copy)]
pub struct SealTo<'a> {
    pub subject: &'a str,
    pub route: &'a str,
    pub schema: u16,
    pub recipients: &'a [PublicKey],
    pub form: Form,
}

/// A new session's record, for the caller to publish where recipients can fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_id: [u8; SESSION_ID_LEN],
    pub record: Bytes,
}

/// Seals payloads from one sender. Not shared between threads: each publisher owns one.
pub struct Sealer {
    sender: String,
    sender_kid: KeyId,
    keys: SecretKeyPair,
    limits: SessionLimits,
    // Route → recipient set → session: a session serves one route only, so a recipient
    // cannot carry its key to another route. Keys are our own routes and recipients' key ids:
    // a fast hasher is safe.
    sessions: HashMap<Box<str>, HashMap<Vec<KeyId>, Session, FastHash>, FastHash>,
    /// The sorted recipient set of the current call (reused: no allocation per message).
    scratch: Vec<KeyId>,
    /// The body's associated data (header ‖ subject) of the current call, reused.
    aad: Vec<u8>,
    /// Envelopes are written here and split off: one allocation per `ARENA_BYTES` of small
    /// envelopes instead of one per message (the chunk is freed when its last envelope is).
    arena: BytesMut,
    rng: SystemRandom,
    /// A session was started whose record is not handed out yet: lets [`Sealer::new_records`],
    /// called after every seal, return at once in steady state.
    records_pending: bool,
}

type FastHash = foldhash::fast::RandomState;

/// 16 KiB: with 64 KiB chunks, sealing 1 KiB while the last 1,000 envelopes were still held
/// (as a publisher's queue holds them) took 850 ns instead of 500 ns: each chunk was fresh
/// memory to fault in and clear.
const ARENA_BYTES: usize = 16 * 1024;

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealer({}, {} sessions)",
            self.sender,
            self.sessions.values().map(HashMap::len).sum::<usize>()
        )
    }
}

/// What a recipient's HPKE context is bound to: the session, the sender's name, the session's
/// route and the recipient's key. (Both lengths fit a byte: the header that carries them was
/// checked.) The route is bound here, not only in the header: every recipient knows the
/// session's data key, so a header field is only as authentic as the key derivation it feeds.
pub(crate) fn wrap_info(
    session_id: &[u8; SESSION_ID_LEN],
    sender: &str,
    route: &str,
    recipient: &KeyId,
) -> Vec<u8> {
    let mut info = b"ozone/envelope/v4/wrap".to_vec();
    info.extend_from_slice(session_id);
    info.push(sender.len() as u8);
    info.extend_from_slice(sender.as_bytes());
    info.push(route.len() as u8);
    info.extend_from_slice(route.as_bytes());
    info.extend_from_slice(&recipient.0);
    info
}

impl Sealer {
    pub fn new(sender: &str, keys: SecretKeyPair, limits: SessionLimits) -> Sealer {
        Sealer {
            sender: sender.to_string(),
            sender_kid: keys.public().kid(),
            keys,
            limits,
            sessions: HashMap::default(),
            scratch: Vec::new(),
            aad: Vec::new(),
            arena: BytesMut::new(),
            rng: SystemRandom::new(),
            records_pending: false,
        }
    }

    pub fn sender_key(&self) -> &PublicKey {
        self.keys.public()
    }

    fn random<const N: usize>(&self) -> Result<[u8; N], EnvelopeError> {
        let mut b = [0u8; N];
        self.rng.fill(&mut b).map_err(|_| EnvelopeError::Random)?;
        Ok(b)
    }

    fn new_session(
        &self,
        route: &str,
        recipients: &[PublicKey],
        now_ms: u64,
    ) -> Result<Session, EnvelopeError> {
        let id: [u8; SESSION_ID_LEN] = self.random()?;
        let (first, others) = recipients
            .split_first()
            .ok_or(EnvelopeError::NoRecipients)?;
        let info = |r: &PublicKey| wrap_info(&id, &self.sender, route, &r.kid());
        let (enc, data_key, first_tag_key) = export_session_keys(&self.keys, first, &info(first))?;
        let data_key: &[u8; DATA_KEY_LEN] = &data_key;
        let mut entries = Vec::with_capacity(recipients.len());
        let mut tag_keys = Vec::with_capacity(recipients.len());
        entries.push(RecipientEntry {
            kid: first.kid(),
            enc,
            wrapped: None,
        });
        tag_keys.push(tag_key(&first_tag_key));
        for r in others {
            let (enc, wrapped, k) = wrap_session_keys(&self.keys, r, &info(r), data_key)?;
            entries.push(RecipientEntry {
                kid: r.kid(),
                enc,
                wrapped: Some(wrapped),
            });
            tag_keys.push(tag_key(&k));
        }
        // One recipient: no tags (it is the only party a forger could fool).
        if tag_keys.len() < 2 {
            tag_keys.clear();
        }
        let key =
            UnboundKey::new(&AES_256_GCM, data_key.as_ref()).map_err(|_| EnvelopeError::Random)?;
        let record = session_record(&self.sender, route, &self.sender_kid, &id, &entries)?;
        Ok(Session {
            id,
            key: LessSafeKey::new(key),
            entries,
            tag_keys,
            counter: 0,
            created_ms: now_ms,
            digest: record_digest(&record),
            record: record.into(),
            handed_out: false,
            published: false,
        })
    }

    /// Records of sessions started since the last call: publish each, then
    /// [`Sealer::mark_published`] it.
    pub fn new_records(&mut self) -> Vec<SessionRecord> {
        if !std::mem::take(&mut self.records_pending) {
            return Vec::new();
        }
        self.sessions
            .values_mut()
            .flat_map(HashMap::values_mut)
            .filter(|s| !s.handed_out)
            .map(|s| {
                s.handed_out = true;
                SessionRecord {
                    session_id: s.id,
                    record: s.record.clone(),
                }
            })
            .collect()
    }

    /// The session's record can now be fetched by every recipient: its messages may be
    /// compact. (A session already replaced is not affected.)
    pub fn mark_published(&mut self, session_id: &[u8; SESSION_ID_LEN]) {
        if let Some(s) = self
            .sessions
            .values_mut()
            .flat_map(HashMap::values_mut)
            .find(|s| s.id == *session_id)
        {
            s.published = true;
        }
    }

    /// Seals `plaintext` for `recipients` (each gets the data key) on `subject`, in a session
    /// bound to exactly that subject (a tool's or a test's; the bus binds sessions to their
    /// subject-table route through [`Sealer::seal_with`]).
    pub fn seal(
        &mut self,
        subject: &str,
        schema: u16,
        recipients: &[PublicKey],
        plaintext: &[u8],
        now_ms: u64,
    ) -> Result<Vec<u8>, EnvelopeError> {
        if plaintext.len() > self.limits.max_payload {
            return Err(EnvelopeError::TooLarge {
                size: plaintext.len(),
                max: self.limits.max_payload,
            });
        }
        self.seal_with(
            SealTo {
                subject,
                route: subject,
                schema,
                recipients,
                form: Form::Full,
            },
            now_ms,
            plaintext.len(),
            |out| {
                out.extend_from_slice(plaintext);
                Ok(())
            },
        )
        .map(|sealed| sealed.to_vec())
    }

    /// Seals what `write` appends to the buffer (a serializer writes the payload straight
    /// after the header: no intermediate copy), for `subject` in a session bound to `route`
    /// (the subject pattern of the subject's table row for its owner; it must cover
    /// `subject`). `size_hint` is the payload size expected.
    pub fn seal_with(
        &mut self,
        to: SealTo<'_>,
        now_ms: u64,
        size_hint: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<(), EnvelopeError>,
    ) -> Result<Bytes, EnvelopeError> {
        let SealTo {
            subject,
            route,
            recipients,
            ..
        } = to;
        if recipients.is_empty() {
            return Err(EnvelopeError::NoRecipients);
        }
        if !route_covers(route, subject) {
            return Err(EnvelopeError::WrongRoute {
                route: route.into(),
                subject: subject.into(),
            });
        }
        let mut set = std::mem::take(&mut self.scratch);
        set.clear();
        set.extend(recipients.iter().map(PublicKey::kid));
        set.sort_unstable();
        set.dedup();
        let result = self.seal_to_set(&set, to, now_ms, size_hint, write);
        self.scratch = set;
        result
    }

    fn seal_to_set(
        &mut self,
        set: &[KeyId],
        to: SealTo<'_>,
        now_ms: u64,
        size_hint: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<(), EnvelopeError>,
    ) -> Result<Bytes, EnvelopeError> {
        let SealTo {
            subject,
            route,
            schema,
            recipients,
            form,
        } = to;
        let limits = self.limits;
        let fresh = |s: &Session| {
            s.counter < limits.max_messages
                && now_ms.saturating_sub(s.created_ms) < limits.max_age_ms
                && now_ms >= s.created_ms
        };
        let current = self.sessions.get(route).and_then(|r| r.get(set));
        if !current.is_some_and(fresh) {
            let session = self.new_session(route, recipients, now_ms)?;
            self.sessions.retain(|_, by_set| {
                by_set.retain(|_, s| now_ms.saturating_sub(s.created_ms) < limits.max_age_ms);
                !by_set.is_empty()
            });
            self.sessions
                .entry(route.into())
                .or_default()
                .insert(set.to_vec(), session);
            self.records_pending = true;
        }
        let session = self
            .sessions
            .get_mut(route)
            .and_then(|r| r.get_mut(set))
            .ok_or(EnvelopeError::NoRecipients)?;
        let compact = form == Form::CompactWhenPublished && session.published;
        // The message id (session ‖ counter) and the nonce (the counter) are derived, not
        // sent: unique without a system call per message.
        let header = HeaderRef {
            schema,
            sender: &self.sender,
            route,
            sender_kid: &self.sender_kid,
            session_id: &session.id,
            counter: session.counter,
            timestamp_ms: now_ms,
            recipients: &session.entries,
        };
        let header_len = if compact {
            COMPACT_HEADER_LEN
        } else {
            header.len()
        };
        let out = &mut self.arena;
        out.clear();
        let tags_len = sender_tags_len(session.entries.len());
        let wanted = header_len + size_hint + 16 + tags_len;
        if out.capacity() < wanted {
            out.reserve(wanted.max(ARENA_BYTES));
        }
        if compact {
            CompactHeader {
                schema,
                sender_kid: self.sender_kid,
                session_id: session.id,
                counter: session.counter,
                timestamp_ms: now_ms,
            }
            .write(SUITE_V1, out);
        } else {
            header.write(VERSION, SUITE_V1, out)?;
        }
        write(out)?;
        let size = out.len() - header_len;
        if size > limits.max_payload {
            out.clear();
            return Err(EnvelopeError::TooLarge {
                size,
                max: limits.max_payload,
            });
        }
        let nonce = body_nonce(session.counter);
        // Counted only once the message is certain to be sealed: a nonce is never reused.
        session.counter += 1;
        let (head, body) = out.split_at_mut(header_len);
        if compact {
            compact_aad(&mut self.aad, head, &session.digest, subject);
        } else {
            body_aad(&mut self.aad, head, subject);
        }
        // Counter nonces under a per-session key: unique by construction.
        let tag = session
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.aad[..]),
                body,
            )
            .map_err(|_| EnvelopeError::Random)?;
        out.extend_from_slice(tag.as_ref());
        if !session.tag_keys.is_empty() {
            // Over the message as sealed (and what its associated data binds), so a
            // recipient cannot reuse a tag on other bytes.
            let input = tag_input(&self.aad, &out[header_len..]);
            for key in &session.tag_keys {
                out.extend_from_slice(&sender_tags::tag(key, &input));
            }
        }
        Ok(out.split().freeze())
    }
}
