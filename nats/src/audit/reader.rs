//! Reading the audit stream as an auditor: every record in stream order, each event opened
//! with the auditor's key as of its storage time, each directory put verified before use.

use super::*;
use crate::bus::BoxError;

/// One record read back from the audit stream.
#[derive(Debug, Clone)]
pub enum AuditRecord {
    /// An opened, authenticated audit event.
    Event {
        seq: u64,
        subject: String,
        sender: String,
        event: AuditEvent,
    },
    /// A key-directory entry (verified, or the reason it was not).
    Key {
        seq: u64,
        key: String,
        verdict: Result<(), String>,
    },
    /// A component's state change (bootstrap protocol).
    Phase { seq: u64, event: PhaseEvent },
    /// The core's announcement of a phase transition.
    Transition { seq: u64, event: PhaseTransition },
    /// A message that could not be opened or decoded, and why.
    Unreadable {
        seq: u64,
        subject: String,
        reason: String,
    },
}

/// Reads the audit stream as one auditor.
pub struct AuditReader {
    js: jetstream::Context,
    key: SecretKeyPair,
    trust: DirectoryTrust,
    directory: Directory,
    opener: Opener,
}

impl std::fmt::Debug for AuditReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditReader({:?})", self.key)
    }
}

fn published_ms(info: &jetstream::message::Info<'_>) -> u64 {
    u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or_default()
}

impl AuditReader {
    pub fn new(conn: &Connection, key: SecretKeyPair, trust: DirectoryTrust) -> AuditReader {
        AuditReader {
            js: jetstream::new(conn.client.clone()),
            key,
            trust,
            directory: Directory::default(),
            opener: Opener::new(OpenerLimits::default()),
        }
    }

    async fn consumer(
        &self,
        filter: Vec<String>,
        deliver_policy: consumer::DeliverPolicy,
    ) -> Result<(consumer::pull::Ordered, u64), AuditError> {
        let err = |e: BoxError| AuditError::Stream(e);
        let stream = self
            .js
            .get_stream(AUDIT_STREAM)
            .await
            .map_err(|e| err(format!("{e}; has `ozone up` created it?").into()))?;
        let mut consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subjects: filter,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.into()))?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| err(e.into()))?
            .num_pending;
        let messages = consumer.messages().await.map_err(|e| err(e.into()))?;
        Ok((messages, pending))
    }

    /// Reads every key-directory entry in the stream (they are few: one per identity and
    /// epoch), so events from `since` on can be opened.
    pub async fn load_directory(&mut self) -> Result<usize, AuditError> {
        let (mut messages, pending) = self
            .consumer(
                vec![Subject::key_entries_all().to_string()],
                consumer::DeliverPolicy::All,
            )
            .await?;
        let mut n = 0;
        if pending == 0 {
            return Ok(0);
        }
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| AuditError::Stream(e.into()))?;
            let last = msg.info().map(|i| i.pending == 0).unwrap_or(true);
            let _ = self.record(&msg);
            n += 1;
            if last {
                break;
            }
        }
        Ok(n)
    }

    /// Every record from `since` (or the beginning); ends when caught up unless `follow`.
    pub async fn records(
        self,
        since: Option<SystemTime>,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<AuditRecord, AuditError>>, AuditError> {
        self.records_on(
            vec![
                Subject::audit_all().to_string(),
                Subject::key_entries_all().to_string(),
                Subject::phase_all().to_string(),
                Subject::phase_transitions().to_string(),
            ],
            since,
            follow,
        )
        .await
    }

    /// The phase events only (what `ozone status` folds): the server filters the stream, so
    /// a long audit history of other events costs nothing to skip.
    pub async fn phase_records(
        self,
    ) -> Result<impl Stream<Item = Result<AuditRecord, AuditError>>, AuditError> {
        self.records_on(vec![Subject::phase_all().to_string()], None, false)
            .await
    }

    /// [`AuditReader::records`] on `subjects` of the stream (the key directory is read in
    /// full first, so any of them can be opened).
    async fn records_on(
        mut self,
        subjects: Vec<String>,
        since: Option<SystemTime>,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<AuditRecord, AuditError>>, AuditError> {
        self.load_directory().await?;
        let deliver_policy = match since {
            Some(t) => consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from(t),
            },
            None => consumer::DeliverPolicy::All,
        };
        let (messages, pending) = self.consumer(subjects, deliver_policy).await?;
        let done = !follow && pending == 0;
        Ok(futures::stream::unfold(
            (self, messages, done),
            move |(mut reader, mut messages, done)| async move {
                if done {
                    return None;
                }
                let msg = match messages.next().await? {
                    Ok(m) => m,
                    Err(e) => {
                        return Some((Err(AuditError::Stream(e.into())), (reader, messages, true)))
                    }
                };
                let last = !follow && msg.info().map(|i| i.pending == 0).unwrap_or(true);
                let record = reader.record(&msg);
                Some((Ok(record), (reader, messages, last)))
            },
        ))
    }

    /// Interprets one stored message.
    fn record(&mut self, msg: &jetstream::Message) -> AuditRecord {
        let (seq, at_ms) = msg
            .info()
            .map(|i| (i.stream_sequence, published_ms(&i)))
            .unwrap_or_default();
        let subject = msg.subject.to_string();
        let key_prefix = format!(
            "{}.",
            Subject::key_entries_all().as_str().trim_end_matches(".>")
        );
        if let Some(key) = subject.strip_prefix(&key_prefix) {
            let verdict = self.key_entry(key, msg, at_ms);
            return AuditRecord::Key {
                seq,
                key: key.to_string(),
                verdict,
            };
        }
        // The rule live receivers apply, applied at the moment the stream stored the message:
        // sealed within the freshness window of that moment, and never seen before. A
        // recipient's captured message published again later (a replayed phase event, say)
        // is refused by every component, so the record of it must not count either.
        let opened = self.opener.open_with(
            Freshness::Live,
            &subject,
            &msg.payload,
            std::slice::from_ref(&self.key),
            &self.directory,
            at_ms,
        );
        let unreadable = |reason: String| AuditRecord::Unreadable {
            seq,
            subject: subject.clone(),
            reason,
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => return unreadable(e.to_string()),
        };
        if subject == Subject::phase_transitions().as_str() {
            return match rmp_serde::from_slice::<PhaseTransition>(&opened.plaintext) {
                Ok(event) if event.component == opened.header.sender => {
                    AuditRecord::Transition { seq, event }
                }
                Ok(_) => unreadable("a phase transition not from the core".into()),
                Err(e) => unreadable(format!("malformed transition: {e}")),
            };
        }
        if Subject::phase_all().matches(&subject) {
            return match rmp_serde::from_slice::<PhaseEvent>(&opened.plaintext) {
                Ok(event) if event.component == opened.header.sender => {
                    AuditRecord::Phase { seq, event }
                }
                Ok(event) => unreadable(format!(
                    "sealed by {} but claims to come from {}",
                    opened.header.sender, event.component
                )),
                Err(e) => unreadable(format!("malformed phase event: {e}")),
            };
        }
        if opened.header.schema != AUDIT_SCHEMA {
            return unreadable(format!("audit schema {}", opened.header.schema));
        }
        match rmp_serde::from_slice::<AuditEvent>(&opened.plaintext) {
            Ok(event) if event.component == opened.header.sender => AuditRecord::Event {
                seq,
                subject: subject.clone(),
                sender: opened.header.sender,
                event,
            },
            Ok(event) => unreadable(format!(
                "sealed by {} but claims to come from {}",
                opened.header.sender, event.component
            )),
            Err(e) => unreadable(format!("malformed event: {e}")),
        }
    }

    fn key_entry(&mut self, key: &str, msg: &jetstream::Message, at_ms: u64) -> Result<(), String> {
        let (kind, name, _) =
            parse_key_entry_key(key).ok_or_else(|| "not a key-directory key".to_string())?;
        let identity = Identity::new(kind, &name).map_err(|e| e.to_string())?;
        let removed = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some();
        if removed {
            // An archive reader keeps removed keys: events sealed while they were current are
            // still in the stream and still authentic.
            return Ok(());
        }
        let entry: DirectoryEntry =
            rmp_serde::from_slice(&msg.payload).map_err(|e| format!("malformed: {e}"))?;
        // The epoch is the signed one in the entry; the key is its slot (or, before slots,
        // the epoch).
        if entry.service != identity.directory_name()
            || !crate::keydir::placed_under(key, &identity, entry.epoch)
        {
            return Err(format!("stored under {key} but claims {}", entry.service));
        }
        // Checked as of when it was published: the reader may be months later.
        self.directory
            .insert(&self.trust, &entry, at_ms)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
