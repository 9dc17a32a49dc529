//! The envelope's byte layout (version 1), parsed strictly: every length is checked, nothing
//! trails, and the header bytes are exactly what the body's AEAD authenticates.
//!
//! ```text
//! "OZ" version:u8 suite:u8 schema:u16
//! subject_len:u16 subject   sender_len:u8 sender   sender_kid:16
//! msg_id:16 timestamp_ms:u64 session_id:16
//! n:u8 n × (kid:16 enc:32 wrapped:48)
//! nonce:12
//! ciphertext‖tag (the rest, ≥ 16)
//! ```
//! Integers are big-endian. Associated data of the body = every byte before the ciphertext.

use super::hpke_wrap::{ENC_LEN, WRAPPED_LEN};
use super::{EnvelopeError, KeyId};
use bytes::BufMut;

pub const VERSION: u8 = 1;
/// DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + AES-256-GCM, HPKE Auth-mode key wrap.
pub const SUITE_V1: u8 = 1;
const MAGIC: &[u8; 2] = b"OZ";
/// Largest envelope accepted (the NATS max_payload is 1 MiB).
pub const MAX_ENVELOPE_LEN: usize = 1024 * 1024;
const TAG_LEN: usize = 16;

/// One recipient's copy of the session's data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEntry {
    pub kid: KeyId,
    pub enc: [u8; ENC_LEN],
    pub wrapped: [u8; WRAPPED_LEN],
}

/// Everything the body's AEAD authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub suite: u8,
    pub schema: u16,
    pub subject: String,
    pub sender: String,
    pub sender_kid: KeyId,
    pub msg_id: [u8; 16],
    pub timestamp_ms: u64,
    pub session_id: [u8; 16],
    pub recipients: Vec<RecipientEntry>,
    pub nonce: [u8; 12],
}

/// A parsed envelope: header, its exact bytes, and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub header: Header,
    pub header_bytes: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// The header's fields, borrowed: lets the sealer write a header straight into the output
/// buffer without building an owned [`Header`] per message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderRef<'a> {
    pub schema: u16,
    pub subject: &'a str,
    pub sender: &'a str,
    pub sender_kid: &'a KeyId,
    pub msg_id: &'a [u8; 16],
    pub timestamp_ms: u64,
    pub session_id: &'a [u8; 16],
    pub recipients: &'a [RecipientEntry],
    pub nonce: &'a [u8; 12],
}

impl HeaderRef<'_> {
    pub(crate) fn len(&self) -> usize {
        2 + 1
            + 1
            + 2
            + 2
            + self.subject.len()
            + 1
            + self.sender.len()
            + 16
            + 16
            + 8
            + 16
            + 1
            + self.recipients.len() * 96
            + 12
    }

    /// Appends the encoded header (version 1, suite 1) to `out`.
    pub(crate) fn write(
        &self,
        version: u8,
        suite: u8,
        out: &mut impl BufMut,
    ) -> Result<(), EnvelopeError> {
        let subject_len = u16::try_from(self.subject.len())
            .map_err(|_| EnvelopeError::Malformed("subject too long"))?;
        let sender_len = u8::try_from(self.sender.len())
            .map_err(|_| EnvelopeError::Malformed("sender too long"))?;
        let count = u8::try_from(self.recipients.len())
            .map_err(|_| EnvelopeError::Malformed("too many recipients"))?;
        out.put_slice(MAGIC);
        out.put_u8(version);
        out.put_u8(suite);
        out.put_slice(&self.schema.to_be_bytes());
        out.put_slice(&subject_len.to_be_bytes());
        out.put_slice(self.subject.as_bytes());
        out.put_u8(sender_len);
        out.put_slice(self.sender.as_bytes());
        out.put_slice(&self.sender_kid.0);
        out.put_slice(self.msg_id);
        out.put_slice(&self.timestamp_ms.to_be_bytes());
        out.put_slice(self.session_id);
        out.put_u8(count);
        for r in self.recipients {
            out.put_slice(&r.kid.0);
            out.put_slice(&r.enc);
            out.put_slice(&r.wrapped);
        }
        out.put_slice(self.nonce);
        Ok(())
    }
}

impl Header {
    /// Serialises the header; fails on fields too long for their length prefixes.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let h = HeaderRef {
            schema: self.schema,
            subject: &self.subject,
            sender: &self.sender,
            sender_kid: &self.sender_kid,
            msg_id: &self.msg_id,
            timestamp_ms: self.timestamp_ms,
            session_id: &self.session_id,
            recipients: &self.recipients,
            nonce: &self.nonce,
        };
        let mut out = Vec::with_capacity(h.len());
        h.write(self.version, self.suite, &mut out)?;
        Ok(out)
    }
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
}

/// A parsed header borrowing from the received bytes: what opening needs, without copying
/// strings or recipient entries per message.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a> {
    pub version: u8,
    pub suite: u8,
    pub schema: u16,
    pub subject: &'a str,
    pub sender: &'a str,
    pub sender_kid: KeyId,
    pub msg_id: [u8; 16],
    pub timestamp_ms: u64,
    pub session_id: [u8; 16],
    /// `n` entries of `kid ‖ enc ‖ wrapped`, as on the wire.
    recipients: &'a [u8],
    pub nonce: [u8; 12],
}

const ENTRY_LEN: usize = 16 + ENC_LEN + WRAPPED_LEN;

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
        let subject_len = r.u16("subject length")? as usize;
        let subject = r.str(subject_len, "subject")?;
        let sender_len = r.u8("sender length")? as usize;
        let sender = r.str(sender_len, "sender")?;
        let sender_kid = KeyId(r.array("sender key id")?);
        let msg_id = r.array("message id")?;
        let timestamp_ms = u64::from_be_bytes(r.array("timestamp")?);
        let session_id = r.array("session id")?;
        let count = r.u8("recipient count")?;
        if count == 0 {
            return Err(EnvelopeError::Malformed("no recipients"));
        }
        let recipients = r.take(count as usize * ENTRY_LEN, "recipient entries")?;
        let nonce = r.array("nonce")?;
        let header_end = r.pos;
        if bytes.len() - header_end < TAG_LEN {
            return Err(EnvelopeError::Malformed("ciphertext shorter than its tag"));
        }
        Ok((
            HeaderView {
                version,
                suite,
                schema,
                subject,
                sender,
                sender_kid,
                msg_id,
                timestamp_ms,
                session_id,
                recipients,
                nonce,
            },
            header_end,
        ))
    }

    /// The recipient entries, in order.
    pub fn recipients(&self) -> impl Iterator<Item = RecipientEntry> + 'a {
        self.recipients.chunks_exact(ENTRY_LEN).map(|e| {
            let mut kid = [0u8; 16];
            let mut enc = [0u8; ENC_LEN];
            let mut wrapped = [0u8; WRAPPED_LEN];
            kid.copy_from_slice(&e[..16]);
            enc.copy_from_slice(&e[16..16 + ENC_LEN]);
            wrapped.copy_from_slice(&e[16 + ENC_LEN..]);
            RecipientEntry {
                kid: KeyId(kid),
                enc,
                wrapped,
            }
        })
    }

    /// The recipient key ids, in order (no copy of the wraps).
    pub fn recipient_kids(&self) -> impl Iterator<Item = KeyId> + 'a {
        self.recipients.chunks_exact(ENTRY_LEN).map(|e| {
            let mut kid = [0u8; 16];
            kid.copy_from_slice(&e[..16]);
            KeyId(kid)
        })
    }

    pub fn to_header(&self) -> Header {
        Header {
            version: self.version,
            suite: self.suite,
            schema: self.schema,
            subject: self.subject.to_string(),
            sender: self.sender.to_string(),
            sender_kid: self.sender_kid,
            msg_id: self.msg_id,
            timestamp_ms: self.timestamp_ms,
            session_id: self.session_id,
            recipients: self.recipients().collect(),
            nonce: self.nonce,
        }
    }
}

impl Envelope {
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (header, header_end) = HeaderView::parse(bytes)?;
        Ok(Envelope {
            header: header.to_header(),
            header_bytes: bytes[..header_end].to_vec(),
            ciphertext: bytes[header_end..].to_vec(),
        })
    }
}
