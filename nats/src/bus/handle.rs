//! The bus handle: a connection, its key material and the caches every publish and every
//! opening share. What a handle does lives beside it: `seal` (recipients and sealing),
//! `open` (the one path that authenticates, checks and decodes a message), `request`
//! (publish, request, reply) and `subscriber` (subscriptions).

use super::audit_sink::{self, AuditSink};
use super::seal::CachedRecipients;
use super::{BusError, BusKeys};
use crate::Connection;
use crate::SessionStore;
use ozone_bus_schemas::{AuditKind, Identity};
use ozone_security::envelope::Envelope;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Schema version carried in every envelope; bump with incompatible wire-type changes.
pub const SCHEMA_VERSION: u16 = 1;

/// A connected service on the encrypted bus.
#[derive(Debug, Clone)]
pub struct Bus {
    pub(super) conn: Connection,
    pub(super) keys: BusKeys,
    /// Subject → its recipients' current keys, valid while the directory's generation is
    /// unchanged and until the first key expires (computing it walks the subject table).
    /// Looked up per message: hashed with foldhash (randomly seeded per process).
    pub(super) recipients:
        Arc<Mutex<HashMap<String, CachedRecipients, foldhash::fast::RandomState>>>,
    /// Size of the last payload sealed: sizes the next output buffer.
    pub(super) size_hint: Arc<std::sync::atomic::AtomicUsize>,
    /// Where refusals and key rotations are reported (components only; `None` in the audit
    /// publisher's own handle).
    pub(super) audit: Option<AuditSink>,
    /// Background tasks (directory follower, key rotation) stopped with the last handle.
    pub(super) tasks: Option<Arc<TaskGuard>>,
    /// The session-record bucket, once opened.
    pub(super) sessions: Arc<tokio::sync::OnceCell<SessionStore>>,
    /// Subject → the authenticated senders seen on it and whether the subject table lets them
    /// send it to us. Looked up per message without allocating (computing it walks the table).
    pub(super) senders: Arc<Mutex<SendersSeen>>,
    /// Reply-inbox prefix (`_INBOX.<requester>`) → the route replies to it are sealed in
    /// (`_INBOX.<requester>.>`): one session per requester, not per request, built once.
    pub(super) reply_routes: Arc<Mutex<ReplyRoutes>>,
    /// The largest message the server takes (its `max_payload`, read when the bus starts; 0:
    /// unknown). A sealed message above it is refused here, by name, instead of costing the
    /// connection.
    pub(super) max_payload: usize,
}

/// Subject → (authenticated sender, whether the table lets it send there to us).
pub(super) type SendersSeen = HashMap<String, Vec<(Arc<str>, bool)>, foldhash::fast::RandomState>;

/// Reply-inbox prefix → the route of replies to it.
pub(super) type ReplyRoutes = HashMap<Box<str>, Arc<str>, foldhash::fast::RandomState>;

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

impl<T> Received<T> {
    /// The message taken out, and where it came from (to answer it).
    pub fn split(self) -> (Received<()>, T) {
        let Received {
            subject,
            sender,
            reply,
            message,
        } = self;
        let origin = Received {
            subject,
            sender,
            reply,
            message: (),
        };
        (origin, message)
    }
}

/// The error for a poisoned internal lock (a thread panicked holding it).
pub(super) fn lock_err<E>(_: E) -> BusError {
    BusError::Poisoned("bus cache")
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
            max_payload: 0,
        };
        bus.max_payload = bus.conn.client.server_info().max_payload;
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
    pub(super) fn rejected(&self, subject: &str, payload: &[u8], error: BusError) -> BusError {
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

    pub(super) fn denied(&self, error: BusError) -> BusError {
        if let BusError::AccessDenied(subject) = &error {
            self.audit(AuditKind::PermissionDenied {
                subject: subject.clone(),
            });
        }
        error
    }

    pub fn identity(&self) -> &Identity {
        &self.conn.identity
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}
