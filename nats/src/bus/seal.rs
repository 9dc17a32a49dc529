//! Sealing: whom a subject's messages go to (the subject table and the key directory,
//! cached per subject), and sealing a payload for them.

use super::handle::lock_err;
use super::{coarse_now_ms, now_ms, Bus, BusError, SCHEMA_VERSION};
use crate::SessionStore;
use ozone_bus_schemas::{table, Identity, IdentityKind, Subject};
use ozone_security::envelope::{EnvelopeError, Form, PublicKey, SealTo, SessionRecord};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(super) struct CachedRecipients {
    generation: u64,
    valid_until_ms: u64,
    keys: Arc<Vec<PublicKey>>,
    /// Full envelopes for subjects kept in streams (read back later by whoever holds the
    /// keys, without the session bucket); compact ones elsewhere.
    form: Form,
    /// The subject's route (its table row for its owner): its sessions serve nothing else.
    route: Arc<str>,
}

/// Where a subject's messages go: the recipients' keys, the envelope form, and the route its
/// sessions are bound to.
#[derive(Debug, Clone)]
pub(super) struct Destination {
    pub(super) keys: Arc<Vec<PublicKey>>,
    pub(super) form: Form,
    pub(super) route: Arc<str>,
}

impl Bus {
    /// The current keys of everyone the subject table says receives `subject`.
    pub(super) fn recipients_of(&self, subject: &str, now: u64) -> Result<Destination, BusError> {
        let dir = self.keys.directory.read().map_err(lock_err)?;
        let generation = dir.generation();
        let mut cache = self.recipients.lock().map_err(lock_err)?;
        if let Some(c) = cache.get(subject) {
            if c.generation == generation && now < c.valid_until_ms {
                return Ok(Destination {
                    keys: c.keys.clone(),
                    form: c.form,
                    route: c.route.clone(),
                });
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
            .filter_map(|id| dir.current(&id.directory_name(), now).map(|k| (id, k)))
            .collect();
        if present.is_empty() || (ids.len() == 1 && present.len() != 1) {
            return Err(BusError::NoKey(
                ids.first()
                    .map(Identity::directory_name)
                    .unwrap_or_default(),
            ));
        }
        let mut valid_until_ms = present
            .iter()
            .filter_map(|(id, k)| dir.expiry_of(&id.directory_name(), k))
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
        Ok(Destination { keys, form, route })
    }

    /// Seals `message` (MessagePack, written straight into the envelope) as `to` says, at
    /// `now`, and hands new sessions' records to the session bucket.
    pub(super) fn seal_for(
        &self,
        to: SealTo<'_>,
        message: &impl Serialize,
        now: u64,
    ) -> Result<bytes::Bytes, BusError> {
        let mut to = to;
        if self.conn.identity.kind != IdentityKind::Component {
            // Only components keep session records (the bucket's keys are theirs): an
            // operator's messages are full envelopes.
            to.form = Form::Full;
        }
        let (subject, form) = (to.subject, to.form);
        use bytes::BufMut;
        use std::sync::atomic::Ordering;
        let mut encode_error = None;
        let hint = self.size_hint.load(Ordering::Relaxed);
        let sealed = {
            let mut sealer = self.keys.sealer.lock().map_err(lock_err)?;
            let sealed = sealer.seal_with(to, now, hint, |out| {
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
        let sealed = sealed.map_err(|source| match encode_error.take() {
            Some(e) => BusError::Encode {
                subject: subject.into(),
                source: e,
            },
            None => BusError::Envelope {
                subject: subject.into(),
                source,
            },
        })?;
        if self.max_payload > 0 && sealed.len() > self.max_payload {
            return Err(BusError::TooLarge {
                subject: subject.into(),
                size: sealed.len(),
                max: self.max_payload,
            });
        }
        Ok(sealed)
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
    pub(super) fn seal_to_subscribers(
        &self,
        subject: &Subject,
        message: &impl Serialize,
    ) -> Result<bytes::Bytes, BusError> {
        // One clock read per message, of the coarse clock: the precise one is not free in a
        // virtual machine.
        let now = coarse_now_ms();
        let destination = self.recipients_of(subject.as_str(), now)?;
        let to = SealTo {
            subject: subject.as_str(),
            route: &destination.route,
            schema: SCHEMA_VERSION,
            recipients: &destination.keys,
            form: destination.form,
        };
        self.seal_for(to, message, now)
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
        let to = SealTo {
            subject: subject.as_str(),
            route: &route,
            schema,
            recipients: &auditors,
            form: Form::Full,
        };
        self.publish_sealed(subject.to_string(), to, record, now)
            .await
    }

    /// Seals `message` as `to` says and publishes it on `on` (`to.subject`, handed over in
    /// the form the caller already holds: a reply inbox is not copied per message).
    pub(super) async fn publish_sealed(
        &self,
        on: impl async_nats::subject::ToSubject,
        to: SealTo<'_>,
        message: &impl Serialize,
        now: u64,
    ) -> Result<(), BusError> {
        let subject = on.to_subject();
        debug_assert_eq!(subject.as_str(), to.subject);
        let sealed = self.seal_for(to, message, now)?;
        self.conn
            .client
            .publish(subject, sealed)
            .await
            .map_err(BusError::nats)
    }

    /// The session-record bucket, opened on first success (`None`, and tried again next time,
    /// while it cannot be: a failure right after a server reload must not leave this service
    /// unable to open other senders' compact envelopes for good).
    pub(super) async fn session_store(&self) -> Option<SessionStore> {
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
}
