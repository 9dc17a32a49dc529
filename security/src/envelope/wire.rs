//! The envelope's byte layout (version 6, and the compact version 7 with its session record),
//! parsed strictly: every length is checked, nothing trails, and the header bytes plus the
//! subject (plus, for a compact envelope, the session record's digest) are exactly what the
//! body's AEAD authenticates.
//!
//! ```text
//! "OZ" version:u8(6) suite:u8 schema:u16
//! sender_len:u8 sender   route_len:u8 route   sender_kid:8
//! session_id:8 counter:u64 timestamp_ms:u64
//! n:u8   kid:8 enc:32   (n−1) × (kid:8 enc:32 wrapped:48)
//! ciphertext‖tag (≥ 16)   n × sender tag:16 (only when n > 1; see `sender_tags`)
//!
//! compact: "OZ" 7 suite:u8 schema:u16 sender_kid:8 session_id:8 counter:u64 timestamp_ms:u64
//!          ciphertext‖tag   n × sender tag:16 (n: the session's, when > 1)
//!          (aad = header ‖ SHA-256(session record) ‖ subject)
//! record:  "OZS" 7 suite:u8 sender_len:u8 sender route_len:u8 route sender_kid:8 session_id:8
//!          n:u8 entries
//! ```
//! The *route* is the subject pattern of the subject-table row the session serves, for its
//! owner (`spark.>`, `ecosystem.heartbeat.ozone-studio`, `_INBOX.ozone-studio.>`): a session
//! opens only on subjects it covers, and every recipient's HPKE context is bound to it.
//! Integers are big-endian. Associated data of the body = every byte before the ciphertext,
//! followed by the subject the message travels on (the subject is bound, not sent: NATS
//! carries it). The body's nonce is `u32 0 ‖ u64be(counter)` and the message id is
//! `session_id ‖ u64be(counter)`; neither is sent. Every byte left out of the header is a byte
//! the broker, TLS and the kernel do not move twice per message.

use super::hpke_wrap::{ENC_LEN, WRAPPED_LEN};
use super::keys::KEY_ID_LEN;
use super::sender_tags::{sender_tags_len, split_tags};
use super::{EnvelopeError, KeyId};
use bytes::BufMut;

/// 6: a session of several recipients ends every envelope in one sender tag per recipient
/// (4 had none: any recipient could seal what the others took for the sender's); 4 bound
/// sessions to their route (2 had no route).
pub const VERSION: u8 = 6;
/// A compact envelope: the session's establishment (sender, route, recipient entries) left out
/// and bound through the digest of its session record, which every recipient holds or can
/// fetch. 7: sender tags as in version 6 (5 had none); 5: the record carries the route (3
/// did not).
pub const VERSION_COMPACT: u8 = 7;
/// DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + AES-256-GCM: HPKE Auth mode, the data key
/// exported from the first recipient's context and wrapped for the others.
pub const SUITE_V1: u8 = 1;
const MAGIC: &[u8; 2] = b"OZ";
/// A session record starts `"OZS"`: never mistaken for an envelope.
const RECORD_MAGIC: &[u8; 3] = b"OZS";
/// magic, version, suite, schema, sender_kid, session_id, counter, timestamp_ms.
pub const COMPACT_HEADER_LEN: usize = 2 + 1 + 1 + 2 + KEY_ID_LEN + SESSION_ID_LEN + 8 + 8;
/// Largest envelope accepted (the NATS max_payload is 1 MiB).
pub const MAX_ENVELOPE_LEN: usize = 1024 * 1024;
const TAG_LEN: usize = 16;
pub const SESSION_ID_LEN: usize = 8;
/// The first recipient's entry: its key id and encapsulated key (its data key is exported).
const FIRST_ENTRY_LEN: usize = KEY_ID_LEN + ENC_LEN;
/// Every further recipient's entry: key id, encapsulated key, wrapped data key.
const ENTRY_LEN: usize = KEY_ID_LEN + ENC_LEN + WRAPPED_LEN;

/// One recipient's way to the session's data key: the first recipient exports it from its
/// HPKE context (`wrapped` is `None`), every other one unwraps its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEntry {
    pub kid: KeyId,
    pub enc: [u8; ENC_LEN],
    pub wrapped: Option<[u8; WRAPPED_LEN]>,
}

/// Everything the body's AEAD authenticates, besides the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub suite: u8,
    pub schema: u16,
    pub sender: String,
    /// The subject pattern the session is bound to (see the module docs).
    pub route: String,
    pub sender_kid: KeyId,
    pub session_id: [u8; SESSION_ID_LEN],
    pub counter: u64,
    pub timestamp_ms: u64,
    pub recipients: Vec<RecipientEntry>,
}

/// A message's id: its session and its number in it.
pub fn message_id(session_id: &[u8; SESSION_ID_LEN], counter: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..SESSION_ID_LEN].copy_from_slice(session_id);
    id[SESSION_ID_LEN..].copy_from_slice(&counter.to_be_bytes());
    id
}

/// The body's associated data, written into `aad` (a buffer the caller reuses): the header
/// bytes, then the subject the message travels on.
pub(crate) fn body_aad(aad: &mut Vec<u8>, header: &[u8], subject: &str) {
    aad.clear();
    aad.extend_from_slice(header);
    aad.extend_from_slice(subject.as_bytes());
}

/// The body's nonce: the counter, unique under the session's data key by construction.
pub(crate) fn body_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

impl Header {
    pub fn msg_id(&self) -> [u8; 16] {
        message_id(&self.session_id, self.counter)
    }

    /// Serialises the header; fails on fields too long for their length prefixes or
    /// recipient entries that break the layout's rule (only the first one without a wrap).
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let h = HeaderRef {
            schema: self.schema,
            sender: &self.sender,
            route: &self.route,
            sender_kid: &self.sender_kid,
            session_id: &self.session_id,
            counter: self.counter,
            timestamp_ms: self.timestamp_ms,
            recipients: &self.recipients,
        };
        let mut out = Vec::with_capacity(h.len());
        h.write(self.version, self.suite, &mut out)?;
        Ok(out)
    }
}

/// A parsed envelope: header, its exact bytes, the ciphertext (with its GCM tag) and the
/// sender tags (none for a single recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub header: Header,
    pub header_bytes: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub sender_tags: Vec<u8>,
}

/// The header's fields, borrowed: lets the sealer write a header straight into the output
/// buffer without building an owned [`Header`] per message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderRef<'a> {
    pub schema: u16,
    pub sender: &'a str,
    pub route: &'a str,
    pub sender_kid: &'a KeyId,
    pub session_id: &'a [u8; SESSION_ID_LEN],
    pub counter: u64,
    pub timestamp_ms: u64,
    pub recipients: &'a [RecipientEntry],
}

impl HeaderRef<'_> {
    pub(crate) fn len(&self) -> usize {
        2 + 1
            + 1
            + 2
            + 1
            + self.sender.len()
            + 1
            + self.route.len()
            + KEY_ID_LEN
            + SESSION_ID_LEN
            + 8
            + 8
            + 1
            + self.recipients.len().saturating_sub(1) * ENTRY_LEN
            + if self.recipients.is_empty() {
                0
            } else {
                FIRST_ENTRY_LEN
            }
    }

    /// Appends the encoded header to `out`.
    pub(crate) fn write(
        &self,
        version: u8,
        suite: u8,
        out: &mut impl BufMut,
    ) -> Result<(), EnvelopeError> {
        let (sender_len, route_len, count) =
            length_bytes(self.sender, self.route, self.recipients.len())?;
        out.put_slice(MAGIC);
        out.put_u8(version);
        out.put_u8(suite);
        out.put_u16(self.schema);
        out.put_u8(sender_len);
        out.put_slice(self.sender.as_bytes());
        out.put_u8(route_len);
        out.put_slice(self.route.as_bytes());
        out.put_slice(&self.sender_kid.0);
        out.put_slice(self.session_id);
        out.put_u64(self.counter);
        out.put_u64(self.timestamp_ms);
        out.put_u8(count);
        write_entries(self.recipients, out)
    }
}

/// The one-byte sender and route lengths and recipient count that a header and a session
/// record carry: each must fit a byte, a session has a route, and a message has at least one
/// recipient.
fn length_bytes(
    sender: &str,
    route: &str,
    recipients: usize,
) -> Result<(u8, u8, u8), EnvelopeError> {
    let sender_len =
        u8::try_from(sender.len()).map_err(|_| EnvelopeError::Malformed("sender too long"))?;
    let route_len =
        u8::try_from(route.len()).map_err(|_| EnvelopeError::Malformed("route too long"))?;
    if route_len == 0 {
        return Err(EnvelopeError::Malformed("no route"));
    }
    let count =
        u8::try_from(recipients).map_err(|_| EnvelopeError::Malformed("too many recipients"))?;
    if count == 0 {
        return Err(EnvelopeError::Malformed("no recipients"));
    }
    Ok((sender_len, route_len, count))
}

/// The recipient entries as on the wire; fails on entries that break the layout's rule (only
/// the first one without a wrap).
fn write_entries(
    recipients: &[RecipientEntry],
    out: &mut impl BufMut,
) -> Result<(), EnvelopeError> {
    for (i, r) in recipients.iter().enumerate() {
        out.put_slice(&r.kid.0);
        out.put_slice(&r.enc);
        match (i, &r.wrapped) {
            (0, None) => {}
            (0, Some(_)) => {
                return Err(EnvelopeError::Malformed(
                    "the first recipient carries a wrap",
                ))
            }
            (_, Some(w)) => out.put_slice(w),
            (_, None) => return Err(EnvelopeError::Malformed("a recipient lacks its wrap")),
        }
    }
    Ok(())
}

/// A cursor that never reads past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(EnvelopeError::Malformed(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], EnvelopeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str, EnvelopeError> {
        std::str::from_utf8(self.take(n, what)?).map_err(|_| EnvelopeError::Malformed(what))
    }
    /// A session's route: length-prefixed, never empty.
    fn route(&mut self) -> Result<&'a str, EnvelopeError> {
        let n = self.u8("route length")? as usize;
        if n == 0 {
            return Err(EnvelopeError::Malformed("no route"));
        }
        self.str(n, "route")
    }
}

/// A parsed header borrowing from the received bytes: what opening needs, without copying
/// strings or recipient entries per message.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a> {
    pub version: u8,
    pub suite: u8,
    pub schema: u16,
    pub sender: &'a str,
    pub route: &'a str,
    pub sender_kid: KeyId,
    pub session_id: [u8; SESSION_ID_LEN],
    pub counter: u64,
    pub timestamp_ms: u64,
    /// The first entry (`kid ‖ enc`), as on the wire.
    first: &'a [u8],
    /// The other entries (`kid ‖ enc ‖ wrapped` each), as on the wire.
    rest: &'a [u8],
}

fn key_id(bytes: &[u8]) -> KeyId {
    let mut kid = [0u8; KEY_ID_LEN];
    kid.copy_from_slice(&bytes[..KEY_ID_LEN]);
    KeyId(kid)
}

fn entry_of(bytes: &[u8]) -> RecipientEntry {
    let mut enc = [0u8; ENC_LEN];
    enc.copy_from_slice(&bytes[KEY_ID_LEN..FIRST_ENTRY_LEN]);
    let wrapped = (bytes.len() == ENTRY_LEN).then(|| {
        let mut w = [0u8; WRAPPED_LEN];
        w.copy_from_slice(&bytes[FIRST_ENTRY_LEN..]);
        w
    });
    RecipientEntry {
        kid: key_id(bytes),
        enc,
        wrapped,
    }
}

impl<'a> HeaderView<'a> {
    /// Parses the header and checks the ciphertext's minimum length without copying it;
    /// returns the header and where the ciphertext starts.
    pub fn parse(bytes: &'a [u8]) -> Result<(HeaderView<'a>, usize), EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(2, "magic")? != MAGIC {
            return Err(EnvelopeError::Malformed("not an OZONE envelope"));
        }
        let version = r.u8("version")?;
        let suite = r.u8("suite")?;
        if version != VERSION || suite != SUITE_V1 {
            return Err(EnvelopeError::Unsupported { version, suite });
        }
        let schema = r.u16("schema")?;
        let sender_len = r.u8("sender length")? as usize;
        let sender = r.str(sender_len, "sender")?;
        let route = r.route()?;
        let sender_kid = key_id(r.take(KEY_ID_LEN, "sender key id")?);
        let session_id = r.array("session id")?;
        let counter = u64::from_be_bytes(r.array("counter")?);
        let timestamp_ms = u64::from_be_bytes(r.array("timestamp")?);
        let count = r.u8("recipient count")?;
        if count == 0 {
            return Err(EnvelopeError::Malformed("no recipients"));
        }
        let first = r.take(FIRST_ENTRY_LEN, "recipient entries")?;
        let rest = r.take((count as usize - 1) * ENTRY_LEN, "recipient entries")?;
        let header_end = r.pos;
        if bytes.len() - header_end < TAG_LEN + sender_tags_len(count as usize) {
            return Err(EnvelopeError::Malformed("ciphertext shorter than its tags"));
        }
        Ok((
            HeaderView {
                version,
                suite,
                schema,
                sender,
                route,
                sender_kid,
                session_id,
                counter,
                timestamp_ms,
                first,
                rest,
            },
            header_end,
        ))
    }

    /// What a compact envelope's header would say of this message.
    pub fn compact(&self) -> CompactHeader {
        CompactHeader {
            schema: self.schema,
            sender_kid: self.sender_kid,
            session_id: self.session_id,
            counter: self.counter,
            timestamp_ms: self.timestamp_ms,
        }
    }

    /// How its session was established (the part a session record repeats).
    pub fn establishment(&self) -> Establishment<'a> {
        Establishment {
            suite: self.suite,
            sender: self.sender,
            route: self.route,
            sender_kid: self.sender_kid,
            session_id: self.session_id,
            first: self.first,
            rest: self.rest,
        }
    }

    /// The recipient entries, in order.
    pub fn recipients(&self) -> impl Iterator<Item = RecipientEntry> + 'a {
        self.establishment().recipients()
    }

    /// How many recipients the header names.
    pub fn recipient_count(&self) -> usize {
        self.establishment().recipient_count()
    }

    /// The recipient key ids, in order (no copy of the keys and wraps).
    pub fn recipient_kids(&self) -> impl Iterator<Item = KeyId> + 'a {
        self.establishment().recipient_kids()
    }

    pub fn to_header(&self) -> Header {
        Header {
            version: self.version,
            suite: self.suite,
            schema: self.schema,
            sender: self.sender.to_string(),
            route: self.route.to_string(),
            sender_kid: self.sender_kid,
            session_id: self.session_id,
            counter: self.counter,
            timestamp_ms: self.timestamp_ms,
            recipients: self.recipients().collect(),
        }
    }
}

impl Envelope {
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (header, header_end) = HeaderView::parse(bytes)?;
        let (ciphertext, sender_tags) = split_tags(&bytes[header_end..], header.recipient_count())?;
        Ok(Envelope {
            header: header.to_header(),
            header_bytes: bytes[..header_end].to_vec(),
            ciphertext: ciphertext.to_vec(),
            sender_tags: sender_tags.to_vec(),
        })
    }
}

/// The version byte of an envelope, after checking its magic (before any other parsing).
pub fn envelope_version(bytes: &[u8]) -> Result<u8, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::TooLarge {
            size: bytes.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    match bytes {
        [b'O', b'Z', version, ..] => Ok(*version),
        _ => Err(EnvelopeError::Malformed("not an OZONE envelope")),
    }
}

/// The header of a compact envelope (version 7): everything a message of a known session
/// needs. Its sender and recipients are the session record's, bound through the record's
/// digest in the body's associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactHeader {
    pub schema: u16,
    pub sender_kid: KeyId,
    pub session_id: [u8; SESSION_ID_LEN],
    pub counter: u64,
    pub timestamp_ms: u64,
}

impl CompactHeader {
    pub(crate) fn write(&self, suite: u8, out: &mut impl BufMut) {
        out.put_slice(MAGIC);
        out.put_u8(VERSION_COMPACT);
        out.put_u8(suite);
        out.put_u16(self.schema);
        out.put_slice(&self.sender_kid.0);
        out.put_slice(&self.session_id);
        out.put_u64(self.counter);
        out.put_u64(self.timestamp_ms);
    }

    /// Parses a compact envelope's header; returns it and where the ciphertext starts.
    pub fn parse(bytes: &[u8]) -> Result<(CompactHeader, usize), EnvelopeError> {
        let version = envelope_version(bytes)?;
        let mut r = Reader { buf: bytes, pos: 2 };
        let _ = r.u8("version")?;
        let suite = r.u8("suite")?;
        if version != VERSION_COMPACT || suite != SUITE_V1 {
            return Err(EnvelopeError::Unsupported { version, suite });
        }
        let schema = r.u16("schema")?;
        let sender_kid = key_id(r.take(KEY_ID_LEN, "sender key id")?);
        let session_id = r.array("session id")?;
        let counter = u64::from_be_bytes(r.array("counter")?);
        let timestamp_ms = u64::from_be_bytes(r.array("timestamp")?);
        if bytes.len() - r.pos < TAG_LEN {
            return Err(EnvelopeError::Malformed("ciphertext shorter than its tag"));
        }
        Ok((
            CompactHeader {
                schema,
                sender_kid,
                session_id,
                counter,
                timestamp_ms,
            },
            r.pos,
        ))
    }
}

/// How a session was established: who made it and each recipient's way to its data key.
/// It is the same in every full envelope of the session and in its session record.
#[derive(Debug, Clone, Copy)]
pub struct Establishment<'a> {
    pub suite: u8,
    pub sender: &'a str,
    pub route: &'a str,
    pub sender_kid: KeyId,
    pub session_id: [u8; SESSION_ID_LEN],
    first: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Establishment<'a> {
    fn entries(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        std::iter::once(self.first).chain(self.rest.chunks_exact(ENTRY_LEN))
    }

    /// The recipient entries, in order.
    pub fn recipients(&self) -> impl Iterator<Item = RecipientEntry> + 'a {
        self.entries().map(entry_of)
    }

    /// The recipient key ids, in order.
    pub fn recipient_kids(&self) -> impl Iterator<Item = KeyId> + 'a {
        self.entries().map(key_id)
    }

    /// How many recipients the session has (so how many sender tags its envelopes carry).
    pub fn recipient_count(&self) -> usize {
        1 + self.rest.len() / ENTRY_LEN
    }

    /// The session record: `"OZS" version:u8(7) suite:u8 sender_len:u8 sender route_len:u8
    /// route sender_kid:8 session_id:8 n:u8 entries` (entries exactly as in the full
    /// envelope's header).
    pub fn record(&self) -> Result<Vec<u8>, EnvelopeError> {
        let count = self.recipient_count();
        let entries_len = self.first.len() + self.rest.len();
        let head = RecordHead {
            suite: self.suite,
            sender: self.sender,
            route: self.route,
            sender_kid: &self.sender_kid,
            session_id: &self.session_id,
        };
        head.record(count, entries_len, |out| {
            out.extend_from_slice(self.first);
            out.extend_from_slice(self.rest);
            Ok(())
        })
    }

    /// Parses a session record strictly (nothing may trail).
    pub fn parse_record(bytes: &'a [u8]) -> Result<Establishment<'a>, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(RECORD_MAGIC.len(), "record magic")? != RECORD_MAGIC {
            return Err(EnvelopeError::Malformed("not an OZONE session record"));
        }
        let version = r.u8("version")?;
        let suite = r.u8("suite")?;
        if version != VERSION_COMPACT || suite != SUITE_V1 {
            return Err(EnvelopeError::Unsupported { version, suite });
        }
        let sender_len = r.u8("sender length")? as usize;
        let sender = r.str(sender_len, "sender")?;
        let route = r.route()?;
        let sender_kid = key_id(r.take(KEY_ID_LEN, "sender key id")?);
        let session_id = r.array("session id")?;
        let count = r.u8("recipient count")?;
        if count == 0 {
            return Err(EnvelopeError::Malformed("no recipients"));
        }
        let first = r.take(FIRST_ENTRY_LEN, "recipient entries")?;
        let rest = r.take((count as usize - 1) * ENTRY_LEN, "recipient entries")?;
        if r.pos != bytes.len() {
            return Err(EnvelopeError::Malformed("bytes after the session record"));
        }
        Ok(Establishment {
            suite,
            sender,
            route,
            sender_kid,
            session_id,
            first,
            rest,
        })
    }
}

/// What a compact envelope's associated data carries in place of the establishment:
/// SHA-256 over the session record.
pub fn record_digest(record: &[u8]) -> [u8; 32] {
    let mut d = [0u8; 32];
    d.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, record).as_ref());
    d
}

/// A compact envelope's associated data: its header, the session record's digest, the subject.
pub(crate) fn compact_aad(aad: &mut Vec<u8>, header: &[u8], digest: &[u8; 32], subject: &str) {
    aad.clear();
    aad.extend_from_slice(header);
    aad.extend_from_slice(digest);
    aad.extend_from_slice(subject.as_bytes());
}

/// The session record of a session the sealer holds: the same bytes [`Establishment::record`]
/// gives for any of its full envelopes (checked by the compact-envelope tests, where an opener
/// that saw a full envelope and one given this record must agree).
pub(crate) fn session_record(
    sender: &str,
    route: &str,
    sender_kid: &KeyId,
    session_id: &[u8; SESSION_ID_LEN],
    recipients: &[RecipientEntry],
) -> Result<Vec<u8>, EnvelopeError> {
    let head = RecordHead {
        suite: SUITE_V1,
        sender,
        route,
        sender_kid,
        session_id,
    };
    let entries_len = recipients.len() * ENTRY_LEN;
    head.record(recipients.len(), entries_len, |out| {
        write_entries(recipients, out)
    })
}

/// What a session record says before its recipient entries.
struct RecordHead<'a> {
    suite: u8,
    sender: &'a str,
    route: &'a str,
    sender_kid: &'a KeyId,
    session_id: &'a [u8; SESSION_ID_LEN],
}

impl RecordHead<'_> {
    /// The record of `count` entries (`entries_len` bytes) that `write_entries` appends.
    fn record(
        &self,
        count: usize,
        entries_len: usize,
        write_entries: impl FnOnce(&mut Vec<u8>) -> Result<(), EnvelopeError>,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let (sender_len, route_len, count) = length_bytes(self.sender, self.route, count)?;
        let mut out = Vec::with_capacity(
            RECORD_MAGIC.len()
                + 4
                + self.sender.len()
                + self.route.len()
                + KEY_ID_LEN
                + SESSION_ID_LEN
                + 1
                + entries_len,
        );
        out.extend_from_slice(RECORD_MAGIC);
        out.push(VERSION_COMPACT);
        out.push(self.suite);
        out.push(sender_len);
        out.extend_from_slice(self.sender.as_bytes());
        out.push(route_len);
        out.extend_from_slice(self.route.as_bytes());
        out.extend_from_slice(&self.sender_kid.0);
        out.extend_from_slice(self.session_id);
        out.push(count);
        write_entries(&mut out)?;
        Ok(out)
    }
}

/// Whether `route` (a subject pattern: `*` one token, `>` the rest) covers `subject`: the
/// subject table's own matcher.
pub fn route_covers(route: &str, subject: &str) -> bool {
    ozone_bus_schemas::subject::pattern_matches(route, subject)
}
