//! Publish, subscribe and request with typed, sealed messages.

use super::audit_sink::{self, AuditSink};
use super::{coarse_now_ms, now_ms, BusError, BusKeys};
use crate::client::{ConnEvent, Violation};
use crate::Connection;
use crate::SessionStore;
use futures::StreamExt;
use ozone_bus_schemas::{table, AuditKind, Component, Identity, Subject};
use ozone_security::envelope::{
    CompactHeader, Envelope, EnvelopeError, Form, Freshness, KeyId, PublicKey, SessionRecord,
    SESSION_ID_LEN,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Schema version carried in every envelope; bump with incompatible wire-type changes.
pub const SCHEMA_VERSION: u16 = 1;

/// A connected service on the encrypted bus.
#[derive(Debug, Clone)]
pub struct Bus {
    conn: Connection,
    keys: BusKeys,
    /// Subject → its recipients' current keys, valid while the directory's generation is
    /// unchanged and until the first key expires (computing it walks the subject table).
    /// Looked up per message: hashed with foldhash (randomly seeded per process).
    recipients: Arc<Mutex<HashMap<String, CachedRecipients, foldhash::fast::RandomState>>>,
    /// Size of the last payload sealed: sizes the next output buffer.
    size_hint: Arc<std::sync::atomic::AtomicUsize>,
    /// Where refusals and key rotations are reported (components only; `None` in the audit
    /// publisher's own handle).
    audit: Option<AuditSink>,
    /// Background tasks (directory follower, key rotation) stopped with the last handle.
    tasks: Option<Arc<TaskGuard>>,
    /// The session-record bucket, once opened.
    sessions: Arc<tokio::sync::OnceCell<SessionStore>>,
    /// Subject → the authenticated senders seen on it and whether the subject table lets them
    /// send it to us. Looked up per message without allocating (computing it walks the table).
    senders: Arc<Mutex<SendersSeen>>,
    /// Reply-inbox prefix (`_INBOX.<requester>`) → the route replies to it are sealed in
    /// (`_INBOX.<requester>.>`): one session per requester, not per request, built once.
    reply_routes: Arc<Mutex<ReplyRoutes>>,
}

/// Subject → (authenticated sender, whether the table lets it send there to us).
type SendersSeen = HashMap<String, Vec<(Arc<str>, bool)>, foldhash::fast::RandomState>;

#[derive(Debug, Clone)]
struct CachedRecipients {
    generation: u64,
    valid_until_ms: u64,
    keys: Arc<Vec<PublicKey>>,
    /// Full envelopes for subjects kept in streams (read back later by whoever holds the
    /// keys, without the session bucket); compact ones elsewhere.
    form: Form,
    /// The subject's route (its table row for its owner): its sessions serve nothing else.
    route: Arc<str>,
}

/// Reply-inbox prefix → the route of replies to it.
type ReplyRoutes = HashMap<Box<str>, Arc<str>, foldhash::fast::RandomState>;

/// Where a subject's messages go: the recipients' keys, the envelope form, the route.
type Destination = (Arc<Vec<PublicKey>>, Form, Arc<str>);

/// Aborts its tasks when dropped.
#[derive(Debug, Default)]
pub(crate) struct TaskGuard(pub(crate) Vec<tokio::task::JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// An opened, verified message.
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// The subject it arrived on (shares the message's buffer: no copy per message).
    pub subject: async_nats::Subject,
    /// The authenticated sender (from the envelope, verified through the key directory;
    /// shared with its session's other messages: no allocation per message).
    pub sender: Arc<str>,
    pub reply: Option<async_nats::Subject>,
    pub message: T,
}

fn lock_err<E>(_: E) -> BusError {
    BusError::Nats("internal lock poisoned".into())
}

impl Bus {
    /// A bus over `conn` with `keys`. For a component this also starts the task that
    /// publishes its audit events (so it must run inside a Tokio runtime).
    pub fn new(conn: Connection, keys: BusKeys) -> Bus {
        let mut bus = Bus {
            conn,
            keys,
            recipients: Arc::default(),
            size_hint: Arc::default(),
            audit: None,
            tasks: None,
            sessions: Arc::default(),
            senders: Arc::default(),
            reply_routes: Arc::default(),
        };
        if let Some(c) = bus.conn.identity.as_component() {
            bus.audit = Some(audit_sink::start(bus.clone(), c));
        }
        bus
    }

    pub(crate) fn keys(&self) -> &BusKeys {
        &self.keys
    }

    pub(crate) fn audit_sender(&self) -> Option<tokio::sync::mpsc::Sender<AuditKind>> {
        self.audit.as_ref().map(|a| a.sender())
    }

    pub(crate) fn with_tasks(mut self, tasks: TaskGuard) -> Bus {
        self.tasks = Some(Arc::new(tasks));
        self
    }

    /// Queues an audit event (never blocks; see `audit_sink` for the bounds).
    pub fn audit(&self, event: AuditKind) {
        if let Some(a) = &self.audit {
            a.report(event);
        }
    }

    /// Reports a refused message and passes the error on.
    fn rejected(&self, subject: &str, payload: &[u8], error: BusError) -> BusError {
        let claimed_sender = Envelope::decode(payload)
            .ok()
            .map(|e| e.header.sender)
            .or_else(|| self.compact_sender(payload));
        self.audit(AuditKind::MessageRejected {
            subject: subject.to_string(),
            reason: error.to_string(),
            claimed_sender,
        });
        error
    }

    fn denied(&self, error: BusError) -> BusError {
        if let BusError::AccessDenied(subject) = &error {
            self.audit(AuditKind::PermissionDenied {
                subject: subject.clone(),
            });
        }
        error
    }

    /// Seals an audit record to every auditor in the directory and publishes it.
    pub(crate) async fn publish_audit(
        &self,
        subject: &Subject,
        record: &impl Serialize,
        schema: u16,
    ) -> Result<(), BusError> {
        let now = now_ms();
        let auditors = {
            let dir = self.keys.directory.read().map_err(lock_err)?;
            dir.auditors(now)
        };
        if auditors.is_empty() {
            return Err(BusError::NoRecipients(subject.to_string()));
        }
        // Audit events are rare (at most 100 a second): the table is walked each time.
        let route = table::route_of(subject.as_str())
            .map(|r| r.as_str().to_string())
            .unwrap_or_else(|| subject.to_string());
        let sealed = self.seal_for(
            subject.as_str(),
            &route,
            &auditors,
            Form::Full,
            record,
            schema,
            now,
        )?;
        self.conn
            .client
            .publish(subject.to_string(), sealed)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))
    }

    pub fn identity(&self) -> &Identity {
        &self.conn.identity
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The current keys of everyone the subject table says receives `subject`.
    fn recipients_of(&self, subject: &str, now: u64) -> Result<Destination, BusError> {
        let dir = self.keys.directory.read().map_err(lock_err)?;
        let generation = dir.generation();
        let mut cache = self.recipients.lock().map_err(lock_err)?;
        if let Some(c) = cache.get(subject) {
            if c.generation == generation && now < c.valid_until_ms {
                return Ok((c.keys.clone(), c.form, c.route.clone()));
            }
        }
        let ids = table::recipients(subject);
        if ids.is_empty() {
            return Err(BusError::NoRecipients(subject.to_string()));
        }
        // A broadcast goes to whoever has a key (a component that never started has none and
        // cannot be listening); a message for one service needs that service's key.
        let present: Vec<(&Identity, PublicKey)> = ids
            .iter()
            .filter_map(|id| dir.current(&id.name, now).map(|k| (id, k)))
            .collect();
        if present.is_empty() || (ids.len() == 1 && present.len() != 1) {
            return Err(BusError::NoKey(
                ids.first().map(|i| i.name.clone()).unwrap_or_default(),
            ));
        }
        let mut valid_until_ms = present
            .iter()
            .filter_map(|(id, k)| dir.expiry_of(&id.name, k))
            .min()
            .unwrap_or(now);
        let mut keys: Vec<PublicKey> = present.into_iter().map(|(_, k)| k).collect();
        let mut form = Form::CompactWhenPublished;
        if table::audited(subject) {
            form = Form::Full;
            // Kept in the audit stream: every auditor can open it too.
            keys.extend(dir.auditors(now));
            valid_until_ms = valid_until_ms.min(now + 60_000);
        }
        let keys = Arc::new(keys);
        let route: Arc<str> = table::route_of(subject)
            .map(|r| r.as_str().into())
            .unwrap_or_else(|| subject.into());
        if cache.len() > 4096 {
            cache.clear(); // bounded: subjects with ids in them would grow it forever
        }
        cache.insert(
            subject.to_string(),
            CachedRecipients {
                generation,
                valid_until_ms,
                keys: keys.clone(),
                form,
                route: route.clone(),
            },
        );
        Ok((keys, form, route))
    }

    #[allow(clippy::too_many_arguments)]
    fn seal_for(
        &self,
        subject: &str,
        route: &str,
        recipients: &[PublicKey],
        form: Form,
        message: &impl Serialize,
        schema: u16,
        now: u64,
    ) -> Result<bytes::Bytes, BusError> {
        use bytes::BufMut;
        use std::sync::atomic::Ordering;
        let mut encode_error = None;
        let hint = self.size_hint.load(Ordering::Relaxed);
        let sealed = {
            let mut sealer = self.keys.sealer.lock().map_err(lock_err)?;
            let sealed =
                sealer.seal_with(subject, route, schema, recipients, form, now, hint, |out| {
                    let start = out.len();
                    rmp_serde::encode::write_named(&mut (&mut *out).writer(), message).map_err(
                        |e| {
                            encode_error = Some(e);
                            EnvelopeError::Malformed("payload encoding failed")
                        },
                    )?;
                    self.size_hint.store(out.len() - start, Ordering::Relaxed);
                    Ok(())
                });
            // A new session: its record goes to the bucket, and its messages stay full
            // envelopes until the record is stored.
            let records = if form == Form::CompactWhenPublished {
                sealer.new_records()
            } else {
                Vec::new()
            };
            if !records.is_empty() {
                self.publish_records(records);
            }
            sealed
        };
        sealed.map_err(|source| match encode_error.take() {
            Some(e) => BusError::Invalid {
                subject: subject.into(),
                detail: e.to_string(),
            },
            None => BusError::Envelope {
                subject: subject.into(),
                source,
            },
        })
    }

    /// The sealed bytes a publish of `message` on `subject` sends, for a caller that
    /// publishes them itself (with headers, say).
    pub fn seal(
        &self,
        subject: &Subject,
        message: &impl Serialize,
    ) -> Result<bytes::Bytes, BusError> {
        self.seal_to_subscribers(subject, message)
    }

    /// Seals `message` to everyone the subject table says receives `subject`.
    fn seal_to_subscribers(
        &self,
        subject: &Subject,
        message: &impl Serialize,
    ) -> Result<bytes::Bytes, BusError> {
        // One clock read per message, of the coarse clock: the precise one is not free in a
        // virtual machine.
        let now = coarse_now_ms();
        let (recipients, form, route) = self.recipients_of(subject.as_str(), now)?;
        self.seal_for(
            subject.as_str(),
            &route,
            &recipients,
            form,
            message,
            SCHEMA_VERSION,
            now,
        )
    }

    /// The session-record bucket, opened on first success (`None`, and tried again next time,
    /// while it cannot be: a failure right after a server reload must not leave this service
    /// unable to open other senders' compact envelopes for good).
    async fn session_store(&self) -> Option<SessionStore> {
        let opened = self
            .sessions
            .get_or_try_init(|| SessionStore::open(&self.conn.client))
            .await;
        match opened {
            Ok(store) => Some(store.clone()),
            Err(e) => {
                tracing::warn!("{e}; sealing full envelopes meanwhile");
                None
            }
        }
    }

    /// Stores new sessions' records in the background; each session's messages turn compact
    /// once its record is stored. (Outside a Tokio runtime they stay full.)
    fn publish_records(&self, records: Vec<SessionRecord>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let bus = self.clone();
        runtime.spawn(async move {
            let Some(store) = bus.session_store().await else {
                return;
            };
            let sender = bus.conn.identity.name.clone();
            for r in records {
                match store.put(&sender, &r.session_id, r.record).await {
                    Ok(()) => {
                        if let Ok(mut sealer) = bus.keys.sealer.lock() {
                            sealer.mark_published(&r.session_id);
                        }
                    }
                    // Two live sessions in one slot: expected now and then (256 slots).
                    Err(e @ crate::SessionStoreError::SlotTaken { .. }) => {
                        tracing::debug!("{e}; that session's envelopes stay full")
                    }
                    Err(e) => tracing::warn!("{e}; that session's envelopes stay full"),
                }
            }
        });
    }

    /// The sender a compact envelope's key id belongs to, per the key directory.
    fn compact_sender(&self, payload: &[u8]) -> Option<String> {
        let (header, _) = CompactHeader::parse(payload).ok()?;
        self.service_of(&header.sender_kid)
    }

    /// The service that published key `kid`, per the key directory.
    fn service_of(&self, kid: &KeyId) -> Option<String> {
        let dir = self.keys.directory.read().ok()?;
        dir.service_of(kid).map(str::to_string)
    }

    /// `sender`'s record of a session, from the bucket.
    async fn fetch_record(
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
    fn open_plain<R>(
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
            let opened = opener.open_into(
                freshness,
                subject,
                &msg.payload,
                &*ring,
                &*dir,
                coarse_now_ms(),
                plain,
                record,
            );
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
            if !Subject::in_inbox_of(reply, sender) {
                return Err(BusError::ForeignReply {
                    subject: subject.to_string(),
                    reply: reply.to_string(),
                    sender: sender.to_string(),
                });
            }
        }
        if Subject::in_inbox_of(subject, &self.conn.identity.name) {
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
                let ok = Component::from_name(sender).is_some_and(|c| {
                    table::publishes(&Identity::component(c), subject)
                        && table::receives(&self.conn.identity, subject)
                });
                let mut cache = self.senders.lock().map_err(lock_err)?;
                if cache.len() > 4096 {
                    cache.clear(); // bounded, like the recipients cache
                }
                let seen = cache.entry(subject.to_string()).or_default();
                if seen.len() < Component::ALL.len() {
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
                BusError::Invalid { detail, .. } => detail,
                other => other.to_string(),
            })
        })
        .await
        .map(|opened| received(msg, opened))
        .map_err(|e| self.rejected(&msg.subject, &msg.payload, e))
    }

    /// Publishes an event, sealed to the subject's subscribers. A denied publish comes back as
    /// `AccessDenied` (checked with a round trip through the server).
    pub async fn publish(
        &self,
        subject: &Subject,
        message: &impl Serialize,
    ) -> Result<(), BusError> {
        // Listen before publishing: the server's -ERR may arrive at once.
        let mut events = self.conn.events();
        self.publish_nowait(subject, message).await?;
        self.check_denied(&mut events, subject.as_str())
            .await
            .map_err(|e| self.denied(e))
    }

    /// Publishes without waiting for the server round trip (for throughput); a denial is
    /// still reported on the connection's events.
    pub async fn publish_nowait(
        &self,
        subject: &Subject,
        message: &impl Serialize,
    ) -> Result<(), BusError> {
        let sealed = self.seal_to_subscribers(subject, message)?;
        self.conn
            .client
            .publish(subject.to_string(), sealed)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))
    }

    async fn check_denied(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<ConnEvent>,
        subject: &str,
    ) -> Result<(), BusError> {
        self.conn
            .sync()
            .await
            .map_err(|e| BusError::Nats(e.to_string()))?;
        // The -ERR for a denied operation arrives before the sync's answer.
        while let Ok(ev) = events.try_recv() {
            if let ConnEvent::Violation(Violation::Publish(s) | Violation::Subscribe(s)) = ev {
                if s == subject {
                    return Err(BusError::AccessDenied(s));
                }
            }
        }
        Ok(())
    }

    /// Subscribes (as part of `queue` if given); a denied subscription is `AccessDenied`.
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        subject: &Subject,
        queue: Option<&str>,
    ) -> Result<TypedSubscriber<T>, BusError> {
        let mut events = self.conn.events();
        let sub = match queue {
            Some(q) => {
                self.conn
                    .client
                    .queue_subscribe(subject.to_string(), q.to_string())
                    .await
            }
            None => self.conn.client.subscribe(subject.to_string()).await,
        }
        .map_err(|e| BusError::Nats(e.to_string()))?;
        self.check_denied(&mut events, subject.as_str())
            .await
            .map_err(|e| self.denied(e))?;
        Ok(TypedSubscriber {
            bus: self.clone(),
            inner: sub,
            pattern: subject.clone(),
            settle_aside: true,
            settling: Settling::default(),
            _t: PhantomData,
        })
    }

    /// Sends a sealed request and opens the sealed reply. "No responders" (nobody subscribed
    /// right now: a responder reconnecting after a server restart, say) and a connection lost
    /// while waiting are retried with backoff until `timeout` has passed, so a server restart
    /// shorter than the deadline is invisible to the caller. A request sent again after a lost
    /// connection may have been served already: responders answer idempotently. Each try is
    /// sealed afresh (the replay guard refuses an envelope seen before).
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &Subject,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.request_once(subject, request, left).await {
                Err(e @ (BusError::NoResponders(_) | BusError::Disconnected(_))) => {
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                // The caller asked for `timeout` in all, not per try.
                Err(BusError::Timeout(_)) => return Err(BusError::Timeout(timeout)),
                other => return other,
            }
        }
    }

    /// One try of [`Bus::request`], waiting at most `timeout`.
    async fn request_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &Subject,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, BusError> {
        let sealed = self.seal_to_subscribers(subject, request)?;
        // The client's shared reply subscription (under this identity's private inbox
        // prefix): no SUB/UNSUB round per request.
        let mut events = self.conn.events();
        let request = async_nats::Request::new()
            .payload(sealed)
            .timeout(Some(timeout));
        let reply = tokio::select! {
            r = self.conn.client.send_request(subject.to_string(), request) => match r {
                Ok(m) => m,
                Err(e) => return Err(match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => BusError::Timeout(timeout),
                    async_nats::RequestErrorKind::NoResponders => BusError::NoResponders(subject.to_string()),
                    _ => BusError::Nats(e.to_string()),
                }),
            },
            v = Connection::wait_for(&mut events, timeout, |e| *e == ConnEvent::Disconnected || matches!(e, ConnEvent::Violation(Violation::Publish(s)) if s == subject.as_str())) => {
                return Err(match v {
                    // The reply, if any, was lost with the connection.
                    Some(ConnEvent::Disconnected) => BusError::Disconnected(subject.to_string()),
                    Some(_) => self.denied(BusError::AccessDenied(subject.to_string())),
                    None => BusError::Timeout(timeout),
                });
            }
        };
        match self.open_settled::<Resp>(&reply).await {
            Ok(r) => Ok(r.message),
            Err(e) => Err(self.rejected(&reply.subject, &reply.payload, e)),
        }
    }

    /// Sends a sealed request whose answer is a stream of messages (each sealed to us) on a
    /// fresh inbox of ours. If nobody serves `subject`, the stream yields `NoResponders`.
    pub async fn request_stream<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &Subject,
        request: &Req,
    ) -> Result<TypedSubscriber<Resp>, BusError> {
        let sealed = self.seal_to_subscribers(subject, request)?;
        let inbox = self.conn.client.new_inbox();
        let pattern = Subject::parse(&inbox).map_err(|e| BusError::Nats(e.to_string()))?;
        let sub = self
            .conn
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| BusError::Nats(e.to_string()))?;
        self.conn
            .client
            .publish_with_reply(subject.to_string(), inbox, sealed)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))?;
        Ok(TypedSubscriber {
            bus: self.clone(),
            inner: sub,
            pattern,
            settle_aside: false,
            settling: Settling::default(),
            _t: PhantomData,
        })
    }

    /// Answers a request: sealed to the authenticated requester only, on its reply inbox.
    pub async fn reply<T>(
        &self,
        to: &Received<T>,
        response: &impl Serialize,
    ) -> Result<(), BusError> {
        let Some(inbox) = &to.reply else {
            return Err(BusError::Invalid {
                subject: to.subject.to_string(),
                detail: "no reply subject".into(),
            });
        };
        if !Subject::in_inbox_of(inbox, &to.sender) {
            let refused = BusError::ForeignReply {
                subject: to.subject.to_string(),
                reply: inbox.to_string(),
                sender: to.sender.to_string(),
            };
            self.audit(AuditKind::MessageRejected {
                subject: to.subject.to_string(),
                reason: refused.to_string(),
                claimed_sender: Some(to.sender.to_string()),
            });
            return Err(refused);
        }
        let now = coarse_now_ms();
        let key = {
            let dir = self.keys.directory.read().map_err(lock_err)?;
            dir.current(&to.sender, now)
                .ok_or_else(|| BusError::NoKey(to.sender.to_string()))?
        };
        let route = self.reply_route(inbox.as_str())?;
        let sealed = self.seal_for(
            inbox.as_str(),
            &route,
            &[key],
            Form::CompactWhenPublished,
            response,
            SCHEMA_VERSION,
            now,
        )?;
        self.conn
            .client
            .publish(inbox.clone(), sealed)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))
    }
}

impl Bus {
    /// The route a reply on `inbox` is sealed in: the requester's whole inbox,
    /// `_INBOX.<requester>.>`, so a server keeps one session per requester. An inbox of
    /// another shape binds its session to itself alone.
    fn reply_route(&self, inbox: &str) -> Result<Arc<str>, BusError> {
        // `_INBOX.<requester>`, the part before the request's own tokens.
        let Some(prefix) = Subject::requester_inbox(inbox) else {
            return Ok(inbox.into());
        };
        let mut routes = self.reply_routes.lock().map_err(lock_err)?;
        if let Some(route) = routes.get(prefix) {
            return Ok(route.clone());
        }
        if routes.len() > 4096 {
            routes.clear(); // bounded: requesters are identities, but never trust a count
        }
        let route: Arc<str> = format!("{prefix}.>").into();
        routes.insert(prefix.into(), route.clone());
        Ok(route)
    }
}

/// An opened message's authenticated sender and what its plaintext decoded to.
type Plain<R> = (Arc<str>, R);

/// An opened message, its subject and reply inbox shared with `msg`'s buffer.
fn received<R>(msg: &async_nats::Message, opened: Plain<R>) -> Received<R> {
    received_on(msg.subject.clone(), msg.reply.clone(), opened)
}

fn received_on<R>(
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
fn decoded<T>(opened: Received<Result<T, BusError>>) -> Result<Received<T>, BusError> {
    let Received {
        subject,
        sender,
        reply,
        message,
    } = opened;
    Ok(Received {
        subject,
        sender,
        reply,
        message: message?,
    })
}

fn decode_payload<T: DeserializeOwned>(subject: &str, payload: &[u8]) -> Result<T, BusError> {
    rmp_serde::from_slice(payload).map_err(|e| BusError::Invalid {
        subject: subject.to_string(),
        detail: e.to_string(),
    })
}

/// A subscription yielding opened messages (or the reason each bad one was refused).
#[derive(Debug)]
pub struct TypedSubscriber<T> {
    bus: Bus,
    inner: async_nats::Subscriber,
    /// What was subscribed to: a JetStream push consumer delivers stored messages under their
    /// original subjects to whatever deliver subject its creator chose, so a message whose
    /// subject this pattern does not match was redirected, not published to us.
    pattern: Subject,
    /// Whether messages from senders not in our directory yet are opened aside (a
    /// subscription with many senders), or in order (a reply stream from one responder).
    settle_aside: bool,
    settling: Settling<T>,
    _t: PhantomData<T>,
}

/// Messages opened aside because their sender's key is not in our directory yet (see
/// [`Bus::open_settled`]): each waits on its own, so junk claiming an unknown sender does not
/// hold up the other senders' messages on a broadcast.
struct Settling<T>(futures::stream::FuturesUnordered<SettlingOpen<T>>);

/// One message being opened aside.
type SettlingOpen<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Received<T>, BusError>> + Send>>;

impl<T> std::fmt::Debug for Settling<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Settling({})", self.0.len())
    }
}

impl<T> Default for Settling<T> {
    fn default() -> Self {
        Settling(futures::stream::FuturesUnordered::new())
    }
}

impl<T: DeserializeOwned + Send + 'static> TypedSubscriber<T> {
    /// The next message; `None` when the subscription ends.
    pub async fn next(&mut self) -> Option<Result<Received<T>, BusError>> {
        loop {
            // Nothing opened aside (the steady state): a plain wait, not a select! that polls
            // both in a random order for every message.
            let next = if self.settling.0.is_empty() {
                self.inner.next().await
            } else {
                tokio::select! {
                    Some(settled) = self.settling.0.next() => return Some(settled),
                    msg = self.inner.next() => msg,
                }
            };
            let msg = match next {
                Some(m) => m,
                None => return self.settling.0.next().await,
            };
            // The server's own "no responders" status (a request nobody serves): not a forgery.
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Some(Err(BusError::NoResponders(msg.subject.to_string())));
            }
            if !self.pattern.matches(&msg.subject) {
                let e = BusError::Misdelivered {
                    subject: msg.subject.to_string(),
                    subscribed: self.pattern.to_string(),
                };
                return Some(Err(self.bus.rejected(&msg.subject, &msg.payload, e)));
            }
            if !self.settle_aside {
                return Some(self.bus.open_typed_settled(msg).await);
            }
            // Opened at once when it can be; refused at once unless the directory may only be
            // lagging behind its sender.
            let first = self.bus.open_plain(&msg, Freshness::Live, None, |p| {
                decode_payload(&msg.subject, p)
            });
            let aside = match &first {
                Ok(_) => false,
                Err(BusError::Envelope { source, .. }) => match source {
                    EnvelopeError::UnknownSender { .. } => true,
                    EnvelopeError::UnknownSession { .. } => {
                        if !self.bus.kid_unknown(&msg) {
                            // A round trip to the session bucket, not a wait: in order.
                            return Some(self.bus.open_typed_settled(msg).await);
                        }
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            };
            if aside {
                let bus = self.bus.clone();
                self.settling
                    .0
                    .push(Box::pin(async move { bus.open_typed_settled(msg).await }));
                continue;
            }
            return Some(match first {
                Ok(opened) => decoded(received_on(msg.subject, msg.reply, opened)),
                Err(e) => Err(self.bus.rejected(&msg.subject, &msg.payload, e)),
            });
        }
    }
}

impl Bus {
    /// Whether `msg` is a compact envelope whose key id our key directory does not know.
    fn kid_unknown(&self, msg: &async_nats::Message) -> bool {
        CompactHeader::parse(&msg.payload)
            .is_ok_and(|(header, _)| self.service_of(&header.sender_kid).is_none())
    }

    /// Opens one subscription message (refusals audited), handing out its subject and reply.
    async fn open_typed_settled<T: DeserializeOwned>(
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
