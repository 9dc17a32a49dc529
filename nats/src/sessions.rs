//! Session records on the bus: the part of a session's envelopes that compact envelopes leave
//! out (sender, sender key id, each recipient's encapsulated key and wrap), one per session in
//! a JetStream KV bucket (`ozone-sessions`). A sender publishes a session's record before it
//! seals any compact envelope of it; a recipient that never saw a full envelope of the session
//! (a worker started a minute ago, a queue member that got none of the full ones) reads the
//! record once and caches the session. The bucket is not trusted: a record opens nothing unless
//! HPKE authenticates its sender and the body authenticates under the key it yields.
//!
//! A sender's records live in 256 slots (`<sender>.<first byte of the session id>`), the only
//! keys its permissions list, so one member cannot fill the bucket with many small records.
//! Two live sessions of one sender may meet in a slot: the sender then leaves the newer one
//! without a record (its envelopes stay full, as when a put fails), and a recipient that finds
//! another session's record in a slot treats the session as unknown.

use crate::buckets::BucketSpec;
use crate::bus::BoxError;
use async_nats::jetstream::kv;
use ozone_bus_schemas::streams::{session_record_key, SESSION_BUCKET};
use ozone_security::envelope::{Establishment, SessionLimits, SESSION_ID_LEN};
use std::time::Duration;

/// The bucket (hardened like the key directory: no roll-ups, purges or deletes). Records
/// outlive the keys they lead to: a key opens nothing after its epoch and grace window (25 h
/// by default), and neither does its record after 26 h. A record is 100–300 bytes (one
/// encapsulated key and wrap per recipient), so 8 KiB bounds one write with room for large
/// recipient sets; sessions last 10 minutes, so 256 MiB is far more than the members need.
pub const SESSION_BUCKET_SPEC: BucketSpec = BucketSpec {
    bucket: SESSION_BUCKET,
    description: "OZONE STUDIO session records: what compact envelopes leave out",
    max_age: Duration::from_secs(26 * 3600),
    max_bytes: 256 << 20,
    max_value_bytes: 8 << 10,
    feed: None,
};

#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("session record bucket {SESSION_BUCKET}: {0}")]
    Bucket(#[source] BoxError),
    #[error("cannot put session record {key}: {detail}")]
    Put {
        key: String,
        #[source]
        detail: BoxError,
    },
    #[error("cannot read session record {key}: {detail}")]
    Get {
        key: String,
        #[source]
        detail: BoxError,
    },
    #[error("session record slot {key} holds another live session")]
    SlotTaken { key: String },
}

/// The `ozone-sessions` bucket, opened (and created when absent) by one connection.
#[derive(Clone)]
pub struct SessionStore {
    store: kv::Store,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionStore({SESSION_BUCKET})")
    }
}

impl SessionStore {
    /// Opens the bucket, creating it hardened on first use (file storage: records must survive
    /// a server restart as long as senders keep sealing compact envelopes of their sessions).
    pub async fn open(client: &async_nats::Client) -> Result<SessionStore, SessionStoreError> {
        let store = SESSION_BUCKET_SPEC
            .open(client)
            .await
            .map_err(|e| SessionStoreError::Bucket(e.into()))?;
        Ok(SessionStore { store })
    }

    /// Brings a bucket created before the hardening to it; returns the settings changed. Only
    /// the core may (`ozone up`).
    pub async fn harden(client: &async_nats::Client) -> Result<Vec<String>, SessionStoreError> {
        crate::buckets::harden(client, &SESSION_BUCKET_SPEC)
            .await
            .map_err(|e| SessionStoreError::Bucket(e.into()))
    }

    /// Puts `sender`'s record of a session; returns once JetStream stored it. Refused
    /// ([`SessionStoreError::SlotTaken`]) while the slot holds another session's record young
    /// enough for that session to be live: overwriting it would leave that session's late
    /// recipients without their record.
    pub async fn put(
        &self,
        sender: &str,
        session_id: &[u8; SESSION_ID_LEN],
        record: bytes::Bytes,
    ) -> Result<(), SessionStoreError> {
        let key = session_record_key(sender, session_id);
        let held = self
            .store
            .entry(&key)
            .await
            .map_err(|e| SessionStoreError::Get {
                key: key.clone(),
                detail: e.into(),
            })?;
        if let Some(held) = held.filter(|e| e.operation == kv::Operation::Put) {
            let age = time::OffsetDateTime::now_utc() - held.created;
            let live = age < time::Duration::milliseconds(live_ms());
            if live && session_of(&held.value) != Some(*session_id) {
                return Err(SessionStoreError::SlotTaken { key });
            }
        }
        self.store
            .put(&key, record)
            .await
            .map(|_| ())
            .map_err(|e| SessionStoreError::Put {
                key,
                detail: e.into(),
            })
    }

    /// `sender`'s record of a session, if the bucket holds one: the record in the session's
    /// slot when it names this session, `None` when the slot is empty or holds another's.
    pub async fn get(
        &self,
        sender: &str,
        session_id: &[u8; SESSION_ID_LEN],
    ) -> Result<Option<bytes::Bytes>, SessionStoreError> {
        let key = session_record_key(sender, session_id);
        let record = self
            .store
            .get(&key)
            .await
            .map_err(|e| SessionStoreError::Get {
                key,
                detail: e.into(),
            })?;
        Ok(record.filter(|r| session_of(r) == Some(*session_id)))
    }
}

/// The session a record names (unauthenticated here: the opener authenticates it).
fn session_of(record: &[u8]) -> Option<[u8; SESSION_ID_LEN]> {
    Establishment::parse_record(record)
        .ok()
        .map(|e| e.session_id)
}

/// How long a session may still be sealing after its record was stored: its data key's age
/// limit, plus a minute of clock and queueing slack.
fn live_ms() -> i64 {
    i64::try_from(SessionLimits::default().max_age_ms)
        .unwrap_or(i64::MAX)
        .saturating_add(60_000)
}
