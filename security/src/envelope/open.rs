//! Opening: find our way to the data key (cached per session), decrypt with the header and
//! the subject the message arrived on as associated data, check the sender's tag for us (a
//! session of several recipients), then — only for authentic messages — check replay.

use super::hpke_wrap::{import_session_keys, unwrap_session_keys};
use super::seal::wrap_info;
use super::sender_tags::{split_tags, tag_key, OwnTag};
use super::wire::{
    body_aad, body_nonce, compact_aad, envelope_version, record_digest, route_covers,
    CompactHeader, Establishment, Header, HeaderView, SESSION_ID_LEN, SUITE_V1, VERSION_COMPACT,
};
use super::{EnvelopeError, KeyId, PublicKey, ReplayGuard, SecretKeyPair};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::collections::HashMap;
use std::sync::Arc;

/// Where an opener finds a sender's public keys (the key directory).
pub trait SenderKeys {
    /// The key `sender` published under `kid`, if it may still authenticate a message at
    /// `now_ms`: `UnknownSender` when there is none, `SenderKeyExpired` past its entry's end.
    fn sender_key(
        &self,
        sender: &str,
        kid: &KeyId,
        now_ms: u64,
    ) -> Result<PublicKey, EnvelopeError>;
}

/// Fixed keys that never expire (tests and tools).
impl SenderKeys for HashMap<(String, KeyId), PublicKey> {
    fn sender_key(
        &self,
        sender: &str,
        kid: &KeyId,
        _now_ms: u64,
    ) -> Result<PublicKey, EnvelopeError> {
        self.get(&(sender.to_string(), *kid))
            .copied()
            .ok_or_else(|| EnvelopeError::UnknownSender {
                sender: sender.to_string(),
                kid: kid.to_string(),
            })
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
    /// Messages the replay window remembers (one bit each: 2^23 is 1 MiB of bitmap).
    pub max_replay_entries: usize,
    /// Sessions whose data keys, and message streams whose replay state, are kept.
    pub max_cached_sessions: usize,
}

impl Default for OpenerLimits {
    fn default() -> Self {
        OpenerLimits {
            replay_window_ms: 2 * 60 * 1000,
            max_replay_entries: 1 << 23,
            max_cached_sessions: 4096,
        }
    }
}

/// Whether an opening checks freshness and replay (live traffic) or not (a stream's archive,
/// old by design).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Live,
    Archived,
}

/// One message to open: how fresh it must be, the subject it arrived on (bound into its
/// associated data, never read from the envelope), its bytes, and — for a compact envelope of
/// a session not cached yet — the session's record fetched by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub freshness: Freshness,
    pub subject: &'a str,
    pub bytes: &'a [u8],
    pub record: Option<&'a [u8]>,
}

impl<'a> Incoming<'a> {
    /// A live message with no session record at hand.
    pub fn live(subject: &'a str, bytes: &'a [u8]) -> Incoming<'a> {
        Incoming {
            freshness: Freshness::Live,
            subject,
            bytes,
            record: None,
        }
    }
}

/// An authentic, fresh message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub header: Header,
    pub plaintext: Vec<u8>,
}

/// What an authentic message's header says, full envelope or compact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub version: u8,
    pub schema: u16,
    /// The sender, authenticated through its session's key (shared by the session's messages).
    pub sender: Arc<str>,
    /// The route its session is bound to (covers the subject it arrived on).
    pub route: Arc<str>,
    pub sender_kid: KeyId,
    pub session_id: [u8; SESSION_ID_LEN],
    pub counter: u64,
    pub timestamp_ms: u64,
}

impl MessageMeta {
    fn of(version: u8, header: &CompactHeader, (sender, route): Bound) -> MessageMeta {
        MessageMeta {
            version,
            schema: header.schema,
            sender,
            route,
            sender_kid: header.sender_kid,
            session_id: header.session_id,
            counter: header.counter,
            timestamp_ms: header.timestamp_ms,
        }
    }
}

/// An authentic message's sender and its session's route (shared, not copied, per message).
type Bound = (Arc<str>, Arc<str>);

/// A session whose data key authenticated a body.
struct CachedSession {
    key: LessSafeKey,
    /// Our sender-tag key and place, in a session of several recipients: every message must
    /// carry our tag, however many recipients a (forged) header claims.
    own_tag: Option<OwnTag>,
    /// Which of our keys the session reached us under: once it is erased, so is the session.
    own_kid: KeyId,
    sender: Arc<str>,
    /// The subjects it may be opened on (bound into our HPKE context: authentic).
    route: Arc<str>,
    /// SHA-256 of the session record: a compact envelope's associated data.
    digest: [u8; 32],
    /// Whether `digest` is known to be the sender's: it came from the session's record, or a
    /// compact envelope opened under it. A digest built from a full envelope is not yet: HPKE
    /// authenticates only our own entry of it, and a co-recipient can alter the others (a
    /// wrong digest would make every compact envelope of the session fail here).
    confirmed: bool,
    last_used_ms: u64,
}

/// (session id, sender key id): a compact envelope names its session by these alone.
type SessionKey = ([u8; SESSION_ID_LEN], KeyId);

/// Opens envelopes addressed to one service's keys; holds the session cache and replay
/// state, not the keys (they rotate underneath it).
pub struct Opener {
    // Keys are random session ids and key ids, and entries are added only after a wrap
    // authenticated: a fast hasher is safe here.
    cache: HashMap<SessionKey, CachedSession, foldhash::fast::RandomState>,
    replay: ReplayGuard,
    limits: OpenerLimits,
    /// The body's associated data (header ‖ subject) of the current call, reused.
    aad: Vec<u8>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener({} cached sessions)", self.cache.len())
    }
}

impl Opener {
    pub fn new(limits: OpenerLimits) -> Opener {
        Opener {
            cache: HashMap::default(),
            replay: ReplayGuard::new(
                limits.replay_window_ms,
                limits.max_replay_entries,
                limits.max_cached_sessions,
            ),
            limits,
            aad: Vec::new(),
        }
    }

    /// Finds our entry among the recipients: its position, key id and our secret key.
    fn locate<'k>(
        h: &Establishment<'_>,
        mine: &'k (impl RecipientKeys + ?Sized),
    ) -> Result<(usize, KeyId, &'k SecretKeyPair), EnvelopeError> {
        // A key past its grace window is gone from `mine`, so sessions cached under it are
        // unreachable too.
        h.recipient_kids()
            .enumerate()
            .find_map(|(i, kid)| mine.recipient_key(&kid).map(|k| (i, kid, k)))
            .ok_or(EnvelopeError::NotARecipient)
    }

    /// Derives a session's data key from our recipient entry (an HPKE export or unwrap), and
    /// our sender-tag key if the session has several recipients.
    fn derive_key(
        h: &Establishment<'_>,
        (position, kid, me): (usize, KeyId, &SecretKeyPair),
        sender: &PublicKey,
    ) -> Result<(LessSafeKey, Option<OwnTag>), EnvelopeError> {
        let entry = h
            .recipients()
            .nth(position)
            .ok_or(EnvelopeError::NotARecipient)?;
        let info = wrap_info(&h.session_id, h.sender, h.route, &kid);
        let (data_key, own_tag_key) = match &entry.wrapped {
            None => import_session_keys(me, sender, &info, &entry.enc)?,
            Some(wrapped) => unwrap_session_keys(me, sender, &info, &entry.enc, wrapped)?,
        };
        let key = UnboundKey::new(&AES_256_GCM, data_key.as_ref())
            .map_err(|_| EnvelopeError::CannotDecrypt)?;
        let count = h.recipient_count();
        let own_tag = (count > 1).then(|| OwnTag {
            position,
            count,
            key: tag_key(&own_tag_key),
        });
        Ok((LessSafeKey::new(key), own_tag))
    }

    /// Caches the key of a session whose first body just authenticated.
    fn remember(&mut self, cache_key: SessionKey, session: CachedSession) {
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
        self.cache.insert(cache_key, session);
    }

    /// Opens an envelope that arrived on `actual_subject` (an envelope sealed for another
    /// subject does not authenticate).
    pub fn open(
        &mut self,
        actual_subject: &str,
        bytes: &[u8],
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
    ) -> Result<Opened, EnvelopeError> {
        self.open_with(
            Freshness::Live,
            actual_subject,
            bytes,
            mine,
            senders,
            now_ms,
        )
    }

    /// [`Opener::open`] with a choice of freshness: a message read back from a stream's
    /// archive (the audit stream) is authenticated and decrypted exactly like a live one, but
    /// with no freshness or replay check — archived messages are old by design, and the
    /// stream's sequence numbers order them.
    pub fn open_with(
        &mut self,
        freshness: Freshness,
        actual_subject: &str,
        bytes: &[u8],
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
    ) -> Result<Opened, EnvelopeError> {
        let mut plaintext = Vec::new();
        let msg = Incoming {
            freshness,
            subject: actual_subject,
            bytes,
            record: None,
        };
        let meta = self.open_into(msg, mine, senders, now_ms, &mut plaintext)?;
        let header = match meta.version {
            VERSION_COMPACT => Header {
                version: meta.version,
                suite: SUITE_V1,
                schema: meta.schema,
                sender: meta.sender.to_string(),
                route: meta.route.to_string(),
                sender_kid: meta.sender_kid,
                session_id: meta.session_id,
                counter: meta.counter,
                timestamp_ms: meta.timestamp_ms,
                recipients: Vec::new(),
            },
            _ => HeaderView::parse(bytes)?.0.to_header(),
        };
        Ok(Opened { header, plaintext })
    }

    /// [`Opener::open_with`], decrypting into `plaintext` (cleared
    /// first; a buffer the caller reuses saves an allocation per message) and returning the
    /// header's facts. A compact envelope of a session not cached yet opens only with its
    /// session `record` (else `UnknownSession`). On an error `plaintext` holds nothing
    /// authentic.
    pub fn open_into(
        &mut self,
        msg: Incoming<'_>,
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
        plaintext: &mut Vec<u8>,
    ) -> Result<MessageMeta, EnvelopeError> {
        plaintext.clear();
        let authentic = match envelope_version(msg.bytes)? {
            VERSION_COMPACT => self.authenticate_compact(msg, mine, senders, now_ms, plaintext),
            _ => self.authenticate(msg.subject, msg.bytes, mine, senders, now_ms, plaintext),
        };
        let freshness = msg.freshness;
        let header = match authentic {
            Ok(h) => h,
            Err(e) => {
                plaintext.clear();
                return Err(e);
            }
        };
        if freshness == Freshness::Live {
            let checked = self.replay.check(
                &header.sender_kid,
                header.session_id,
                header.counter,
                header.timestamp_ms,
                now_ms,
            );
            if let Err(e) = checked {
                plaintext.clear();
                return Err(e);
            }
        }
        Ok(header)
    }

    fn authenticate(
        &mut self,
        actual_subject: &str,
        bytes: &[u8],
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
        plaintext: &mut Vec<u8>,
    ) -> Result<MessageMeta, EnvelopeError> {
        let (header, header_end) = HeaderView::parse(bytes)?;
        // The route is authentic only once the body opens (it feeds the key derivation), but
        // a message off its claimed route is refused either way: say so.
        check_route(header.route, actual_subject)?;
        let sender = senders.sender_key(header.sender, &header.sender_kid, now_ms)?;
        let establishment = header.establishment();
        let ours = Self::locate(&establishment, mine)?;
        let cache_key = (header.session_id, header.sender_kid);
        let (head, rest) = bytes.split_at(header_end);
        let (body, tags) = split_tags(rest, establishment.recipient_count())?;
        let mut aad = std::mem::take(&mut self.aad);
        body_aad(&mut aad, head, actual_subject);
        let nonce = body_nonce(header.counter);
        // One lookup per message on a cached session. A derived key enters the cache only
        // once a body authenticated under it: an exported key is not authenticated by
        // itself, and a forged envelope must not plant a wrong key under a real session's id.
        let opened = match self.cache.get_mut(&cache_key) {
            Some(cached)
                if cached.own_kid == ours.1
                    && *cached.sender == *header.sender
                    && *cached.route == *header.route =>
            {
                open_body(&cached.key, nonce, &aad, body, plaintext)
                    .map_err(|e| low_order_or(&establishment, ours.0, e))
                    .and_then(|()| check_own_tag(cached.own_tag.as_ref(), &aad, body, tags))
                    .map(|()| {
                        cached.last_used_ms = now_ms;
                        (cached.sender.clone(), cached.route.clone())
                    })
            }
            _ => Self::derive_key(&establishment, ours, &sender).and_then(|(key, own_tag)| {
                open_body(&key, nonce, &aad, body, plaintext)?;
                check_own_tag(own_tag.as_ref(), &aad, body, tags)?;
                let digest = record_digest(&establishment.record()?);
                let bound: Bound = (header.sender.into(), header.route.into());
                self.remember(
                    cache_key,
                    CachedSession {
                        key,
                        own_tag,
                        own_kid: ours.1,
                        sender: bound.0.clone(),
                        route: bound.1.clone(),
                        digest,
                        confirmed: false,
                        last_used_ms: now_ms,
                    },
                );
                Ok(bound)
            }),
        };
        self.aad = aad;
        Ok(MessageMeta::of(header.version, &header.compact(), opened?))
    }

    /// A compact envelope: its session's key from the cache, or derived from the session
    /// `record` (fetched by the caller) and cached once the body authenticates.
    fn authenticate_compact(
        &mut self,
        msg: Incoming<'_>,
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
        plaintext: &mut Vec<u8>,
    ) -> Result<MessageMeta, EnvelopeError> {
        let Incoming {
            subject: actual_subject,
            bytes,
            record,
            ..
        } = msg;
        let (header, header_end) = CompactHeader::parse(bytes)?;
        let cache_key = (header.session_id, header.sender_kid);
        let (head, rest) = bytes.split_at(header_end);
        let nonce = body_nonce(header.counter);
        let mut aad = std::mem::take(&mut self.aad);
        // A cached digest that no compact envelope confirmed yet gives way to the record
        // when the caller brings it (see `CachedSession::confirmed`).
        let cached = self
            .cache
            .get_mut(&cache_key)
            .filter(|c| c.confirmed || record.is_none());
        let opened = match cached {
            Some(cached) => {
                if mine.recipient_key(&cached.own_kid).is_none() {
                    // Our key it reached us under is erased: so is what it opened.
                    Err(EnvelopeError::NotARecipient)
                } else {
                    check_route(&cached.route, actual_subject)
                        .and_then(|()| {
                            senders.sender_key(&cached.sender, &header.sender_kid, now_ms)
                        })
                        .and_then(|_| {
                            let (body, tags) = split_tags(rest, session_size(&cached.own_tag))?;
                            compact_aad(&mut aad, head, &cached.digest, actual_subject);
                            match open_body(&cached.key, nonce, &aad, body, plaintext) {
                                // The digest came from a full envelope, whose other entries
                                // a co-recipient could have altered: ask for the record.
                                Err(EnvelopeError::CannotDecrypt) if !cached.confirmed => {
                                    Err(EnvelopeError::UnknownSession {
                                        kid: header.sender_kid.to_string(),
                                        session: hex::encode(header.session_id),
                                    })
                                }
                                other => other,
                            }?;
                            check_own_tag(cached.own_tag.as_ref(), &aad, body, tags)
                        })
                        .map(|()| {
                            cached.last_used_ms = now_ms;
                            cached.confirmed = true;
                            (cached.sender.clone(), cached.route.clone())
                        })
                }
            }
            None => match record {
                None => Err(EnvelopeError::UnknownSession {
                    kid: header.sender_kid.to_string(),
                    session: hex::encode(header.session_id),
                }),
                Some(record) => {
                    let learned = self.learn_session(&header, record, mine, senders, now_ms);
                    learned.and_then(|session| {
                        check_route(&session.route, actual_subject)?;
                        let (body, tags) = split_tags(rest, session_size(&session.own_tag))?;
                        compact_aad(&mut aad, head, &session.digest, actual_subject);
                        if let Err(e) = open_body(&session.key, nonce, &aad, body, plaintext)
                            .and_then(|()| {
                                check_own_tag(session.own_tag.as_ref(), &aad, body, tags)
                            })
                        {
                            // A forged body, not a planted digest, if the record agrees with
                            // what we cached: no need to ask for the record again.
                            if let Some(c) = self.cache.get_mut(&cache_key) {
                                c.confirmed |= c.digest == session.digest;
                            }
                            return Err(e);
                        }
                        let bound = (session.sender.clone(), session.route.clone());
                        self.remember(cache_key, session);
                        Ok(bound)
                    })
                }
            },
        };
        self.aad = aad;
        Ok(MessageMeta::of(VERSION_COMPACT, &header, opened?))
    }

    /// The session a compact envelope belongs to, from its record: the record must be that
    /// session's, its sender's key known and valid, and one of its recipients us. The key is
    /// not authenticated until a body opens under it.
    fn learn_session(
        &self,
        header: &CompactHeader,
        record: &[u8],
        mine: &(impl RecipientKeys + ?Sized),
        senders: &impl SenderKeys,
        now_ms: u64,
    ) -> Result<CachedSession, EnvelopeError> {
        let establishment = Establishment::parse_record(record)?;
        if establishment.session_id != header.session_id
            || establishment.sender_kid != header.sender_kid
        {
            return Err(EnvelopeError::Malformed(
                "the session record is another session's",
            ));
        }
        let sender = senders.sender_key(establishment.sender, &establishment.sender_kid, now_ms)?;
        let ours = Self::locate(&establishment, mine)?;
        let (key, own_tag) = Self::derive_key(&establishment, ours, &sender)?;
        Ok(CachedSession {
            key,
            own_tag,
            own_kid: ours.1,
            sender: establishment.sender.into(),
            route: establishment.route.into(),
            digest: record_digest(record),
            confirmed: true,
            last_used_ms: now_ms,
        })
    }
}

/// Checks the sender's tag for us, in a session of several recipients (after the body opened:
/// a co-recipient's forgery passes the AEAD, and this is what refuses it).
fn check_own_tag(
    own_tag: Option<&OwnTag>,
    aad: &[u8],
    body: &[u8],
    tags: &[u8],
) -> Result<(), EnvelopeError> {
    match own_tag {
        // One recipient, us: its data key is the sender's and ours alone.
        None => Ok(()),
        Some(own) => own.verify(aad, body, tags),
    }
}

/// How many recipients a session has, as far as its tags go (a single one carries none).
fn session_size(own_tag: &Option<OwnTag>) -> usize {
    own_tag.as_ref().map_or(1, |t| t.count)
}

/// A message is opened only on a subject its session's route covers: a recipient of one
/// route's session (who knows its data key) cannot speak in it on another route.
fn check_route(route: &str, subject: &str) -> Result<(), EnvelopeError> {
    if route_covers(route, subject) {
        Ok(())
    } else {
        Err(EnvelopeError::WrongRoute {
            route: route.to_string(),
            subject: subject.to_string(),
        })
    }
}

/// A body that failed under a cached session's key: if our entry's encapsulated key is a
/// low-order point, that is the refusal to report (as a fresh derivation would), not the
/// tag. Checked only on failure, so a cached session costs no X25519 per message.
fn low_order_or(h: &Establishment<'_>, position: usize, e: EnvelopeError) -> EnvelopeError {
    match h.recipients().nth(position) {
        Some(entry) if super::is_low_order(&entry.enc) => EnvelopeError::LowOrderKey,
        _ => e,
    }
}

/// Decrypts `body` into `plaintext` (the one copy of the body, decrypted in place there).
fn open_body(
    key: &LessSafeKey,
    nonce: [u8; 12],
    aad: &[u8],
    body: &[u8],
    plaintext: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    plaintext.extend_from_slice(body);
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            plaintext,
        )
        .map_err(|_| EnvelopeError::CannotDecrypt)?
        .len();
    plaintext.truncate(plain_len);
    Ok(())
}
