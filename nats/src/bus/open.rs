//! Opening: every received message goes through [`Bus::open_plain`] — authenticated and
//! decrypted by the envelope, its route checked against the subject table, its schema
//! checked — and the public `open*` functions only choose freshness and how long to wait
//! for a sender's key or session record.

use super::handle::lock_err;
use super::{coarse_now_ms, Bus, BusError, Received, SCHEMA_VERSION};
use ozone_bus_schemas::{table, Identity, Subject};
use ozone_security::envelope::{
    CompactHeader, EnvelopeError, Freshness, Incoming, KeyId, SESSION_ID_LEN,
};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

impl Bus {
    /// The sender a compact envelope's key id belongs to, per the key directory.
    pub(super) fn compact_sender(&self, payload: &[u8]) -> Option<String> {
        let (header, _) = CompactHeader::parse(payload).ok()?;
        self.service_of(&header.sender_kid)
    }

    /// The service that published key `kid`, per the key directory.
    pub(super) fn service_of(&self, kid: &KeyId) -> Option<String> {
        let dir = self.keys.directory.read().ok()?;
        dir.service_of(kid).map(str::to_string)
    }

    /// `sender`'s record of a session, from the bucket.
    pub(super) async fn fetch_record(
        &self,
        sender: &str,
        session_id: &[u8; SESSION_ID_LEN],
    ) -> Option<bytes::Bytes> {
        let store = self.session_store().await?;
        match store.get(sender, session_id).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }

    /// Opens and decodes one raw message.
    pub fn open<T: DeserializeOwned>(
        &self,
        msg: &async_nats::Message,
    ) -> Result<Received<T>, BusError> {
        self.open_with(msg, Freshness::Live)
    }

    /// Opens a message read back from a stream (retained state): authenticated like
    /// [`Bus::open`] but without the freshness and replay checks, since it is old by design.
    pub fn open_archived<T: DeserializeOwned>(
        &self,
        msg: &async_nats::Message,
    ) -> Result<Received<T>, BusError> {
        self.open_with(msg, Freshness::Archived)
    }

    fn open_with<T: DeserializeOwned>(
        &self,
        msg: &async_nats::Message,
        freshness: Freshness,
    ) -> Result<Received<T>, BusError> {
        let opened = self.open_plain(msg, freshness, None, |p| decode_payload(&msg.subject, p))?;
        decoded(received(msg, opened))
    }

    /// Authenticates and decrypts, checks the schema version, and hands the plaintext to
    /// `decode` (it is decrypted into a reused per-thread buffer, so opening allocates nothing
    /// for it).
    pub(super) fn open_plain<R>(
        &self,
        msg: &async_nats::Message,
        freshness: Freshness,
        record: Option<&[u8]>,
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<Plain<R>, BusError> {
        thread_local! {
            static PLAINTEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        PLAINTEXT.with_borrow_mut(|plain| {
            let opened = self.open_in(msg, freshness, record, plain, decode);
            // A rare huge message (opened or refused) does not pin its buffer to the thread.
            if plain.capacity() > 256 * 1024 {
                *plain = Vec::new();
            }
            opened
        })
    }

    /// [`Bus::open_plain`] with the plaintext buffer given.
    fn open_in<R>(
        &self,
        msg: &async_nats::Message,
        freshness: Freshness,
        record: Option<&[u8]>,
        plain: &mut Vec<u8>,
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<Plain<R>, BusError> {
        let subject = msg.subject.as_str();
        let (sender, schema) = {
            let ring = self.keys.ring.read().map_err(lock_err)?;
            let dir = self.keys.directory.read().map_err(lock_err)?;
            let mut opener = self.keys.opener.lock().map_err(lock_err)?;
            let incoming = Incoming {
                freshness,
                subject,
                bytes: &msg.payload,
                record,
            };
            let opened = opener.open_into(incoming, &*ring, &*dir, coarse_now_ms(), plain);
            let header = opened.map_err(|source| BusError::Envelope {
                subject: subject.to_string(),
                source,
            })?;
            (header.sender, header.schema)
        };
        self.check_route(msg, freshness, &sender)?;
        if schema != SCHEMA_VERSION {
            return Err(BusError::Invalid {
                subject: subject.to_string(),
                detail: format!("schema {schema} (expected {SCHEMA_VERSION})"),
            });
        }
        Ok((sender, decode(plain)))
    }

    /// Refuses an authenticated message its sender could not have sent us by the subject
    /// table: a reply subject outside the sender's own inbox (answering it would lend the
    /// sender our publish rights), or a subject the sender may not publish or we may not
    /// receive (a stored message a JetStream consumer redelivered around the call graph).
    /// Replies on our own inbox come from whoever we asked (the server lets only the
    /// components we call publish there).
    fn check_route(
        &self,
        msg: &async_nats::Message,
        freshness: Freshness,
        sender: &Arc<str>,
    ) -> Result<(), BusError> {
        let subject = msg.subject.as_str();
        if let (Freshness::Live, Some(reply)) = (freshness, &msg.reply) {
            if !Subject::in_inbox_of(reply, &Identity::inbox_stem_of(sender)) {
                return Err(BusError::ForeignReply {
                    subject: subject.to_string(),
                    reply: reply.to_string(),
                    sender: sender.to_string(),
                });
            }
        }
        if Subject::in_inbox_of(subject, &self.conn.identity.inbox_stem()) {
            return Ok(());
        }
        let allowed = {
            let cache = self.senders.lock().map_err(lock_err)?;
            cache.get(subject).and_then(|seen| {
                seen.iter()
                    .find(|(s, _)| Arc::ptr_eq(s, sender) || **s == **sender)
                    .map(|(_, ok)| *ok)
            })
        };
        let allowed = match allowed {
            Some(ok) => ok,
            None => {
                let ok = Identity::from_directory_name(sender)
                    .filter(Identity::is_member)
                    .is_some_and(|who| {
                        table::publishes(&who, subject)
                            && table::receives(&self.conn.identity, subject)
                    });
                let mut cache = self.senders.lock().map_err(lock_err)?;
                if cache.len() > 4096 {
                    cache.clear(); // bounded, like the recipients cache
                }
                let seen = cache.entry(subject.to_string()).or_default();
                if seen.len() < 16 {
                    seen.push((sender.clone(), ok));
                }
                ok
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(BusError::NotAPublisher {
                subject: subject.to_string(),
                sender: sender.to_string(),
            })
        }
    }

    /// Opens a message, giving the key directory a moment when the sender's key is not known
    /// yet: a sender switches to a new epoch's key right after publishing its entry, and the
    /// entry can reach our directory follower a little after the message reaches us. The
    /// failed attempt touched no replay state (authentication comes first). One retry only:
    /// only identities NATS lets publish here can cause the wait.
    pub async fn open_settled<T: DeserializeOwned>(
        &self,
        msg: &async_nats::Message,
    ) -> Result<Received<T>, BusError> {
        let opened = self
            .open_plain_settled(msg, |p| decode_payload(&msg.subject, p))
            .await?;
        decoded(received(msg, opened))
    }

    /// [`Bus::open_settled`] handing the plaintext to `decode`.
    async fn open_plain_settled<R>(
        &self,
        msg: &async_nats::Message,
        decode: impl Fn(&[u8]) -> R,
    ) -> Result<Plain<R>, BusError> {
        let refusal = |r: &Result<Plain<R>, BusError>| match r {
            Err(BusError::Envelope { source, .. }) => Some(source.clone()),
            _ => None,
        };
        let mut result = self.open_plain(msg, Freshness::Live, None, &decode);
        let mut waited = false;
        if let Some(EnvelopeError::UnknownSender { .. }) = refusal(&result) {
            tokio::time::sleep(Duration::from_millis(150)).await;
            waited = true;
            result = self.open_plain(msg, Freshness::Live, None, &decode);
        }
        if let Some(EnvelopeError::UnknownSession { .. }) = refusal(&result) {
            // A compact envelope of a session we have not seen: its record is in the bucket
            // (stored before the sender sealed any compact envelope of it), found under the
            // sender the key directory names for its key id — given the same moment to catch
            // up as above if it names none yet.
            if let Ok((header, _)) = CompactHeader::parse(&msg.payload) {
                let mut sender = self.service_of(&header.sender_kid);
                if sender.is_none() && !waited {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    sender = self.service_of(&header.sender_kid);
                }
                if let Some(sender) = sender {
                    if let Some(record) = self.fetch_record(&sender, &header.session_id).await {
                        result = self.open_plain(msg, Freshness::Live, Some(&record), &decode);
                    }
                }
            }
        }
        result
    }

    /// Opens a request for a server that must answer even a malformed one: authentication
    /// failures are refused (and audited) as usual, but an authenticated message whose
    /// payload does not decode as `T` comes back as `Ok` with the decoding error, so the
    /// server can tell its sender what was wrong.
    pub async fn open_request<T: DeserializeOwned>(
        &self,
        msg: &async_nats::Message,
    ) -> Result<Received<Result<T, String>>, BusError> {
        self.open_plain_settled(msg, |p| {
            decode_payload(&msg.subject, p).map_err(|e| match e {
                BusError::Decode { source, .. } => source.to_string(),
                other => other.to_string(),
            })
        })
        .await
        .map(|opened| received(msg, opened))
        .map_err(|e| self.rejected(&msg.subject, &msg.payload, e))
    }

    /// Whether `msg` is a compact envelope whose key id our key directory does not know.
    pub(super) fn kid_unknown(&self, msg: &async_nats::Message) -> bool {
        CompactHeader::parse(&msg.payload)
            .is_ok_and(|(header, _)| self.service_of(&header.sender_kid).is_none())
    }

    /// Opens one subscription message (refusals audited), handing out its subject and reply.
    pub(super) async fn open_typed_settled<T: DeserializeOwned>(
        &self,
        msg: async_nats::Message,
    ) -> Result<Received<T>, BusError> {
        let opened = self
            .open_plain_settled(&msg, |p| decode_payload(&msg.subject, p))
            .await;
        match opened {
            // The message is ours: its subject and reply inbox move into what we hand out.
            Ok(opened) => decoded(received_on(msg.subject, msg.reply, opened)),
            Err(e) => Err(self.rejected(&msg.subject, &msg.payload, e)),
        }
    }
}

/// An opened message's authenticated sender and what its plaintext decoded to.
pub(super) type Plain<R> = (Arc<str>, R);

/// An opened message, its subject and reply inbox shared with `msg`'s buffer.
pub(super) fn received<R>(msg: &async_nats::Message, opened: Plain<R>) -> Received<R> {
    received_on(msg.subject.clone(), msg.reply.clone(), opened)
}

pub(super) fn received_on<R>(
    subject: async_nats::Subject,
    reply: Option<async_nats::Subject>,
    (sender, message): Plain<R>,
) -> Received<R> {
    Received {
        subject,
        sender,
        reply,
        message,
    }
}

/// An opened message whose payload decoded, or the decoding error.
pub(super) fn decoded<T>(opened: Received<Result<T, BusError>>) -> Result<Received<T>, BusError> {
    let (origin, message) = opened.split();
    let message = message?;
    Ok(Received {
        subject: origin.subject,
        sender: origin.sender,
        reply: origin.reply,
        message,
    })
}

pub(super) fn decode_payload<T: DeserializeOwned>(
    subject: &str,
    payload: &[u8],
) -> Result<T, BusError> {
    rmp_serde::from_slice(payload).map_err(|source| BusError::Decode {
        subject: subject.to_string(),
        source,
    })
}
