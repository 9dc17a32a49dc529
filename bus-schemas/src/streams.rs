//! The JetStream resources of the ecosystem: the key-directory bucket and the audit stream,
//! with the subjects their clients need. Like every subject, these are spelled only here.

use crate::{Identity, IdentityKind, Subject};

/// The key-value bucket holding every identity's signed public keys (in the OZONE account).
pub const KEY_BUCKET: &str = "ozone-keys";
/// The stream behind [`KEY_BUCKET`].
pub const KEY_STREAM: &str = "KV_ozone-keys";
/// The key-value bucket of session records (in the OZONE account): what a compact envelope
/// leaves out, fetched once per session by a recipient that did not see a full envelope of it.
pub const SESSION_BUCKET: &str = "ozone-sessions";
/// The stream behind [`SESSION_BUCKET`].
pub const SESSION_STREAM: &str = "KV_ozone-sessions";
/// Where the key directory's stream republishes each entry it stores: `$KV.ozone-keys.<key>`
/// becomes `ecosystem.keys.<key>`, with the stream sequence in `Nats-Sequence`.
pub const KEY_FEED: &str = "ecosystem.keys.>";
/// ZSEI's methodology registry (in the OZONE account): one entry per methodology version,
/// under `<name>.<version>`; only ZSEI reads and writes it.
pub const METHODOLOGY_BUCKET: &str = "ozone-methodologies";
/// The stream behind [`METHODOLOGY_BUCKET`].
pub const METHODOLOGY_STREAM: &str = "KV_ozone-methodologies";
/// The core's task store (in the OZONE account): one entry per task, rewritten at every step
/// transition; only the core reads and writes it.
pub const TASK_BUCKET: &str = "ozone-tasks";
/// The stream behind [`TASK_BUCKET`].
pub const TASK_STREAM: &str = "KV_ozone-tasks";
/// The audit stream (in the AUDIT account): `audit.>` plus a copy of every key-directory put.
pub const AUDIT_STREAM: &str = "OZONE_AUDIT";

/// How many keys one component holds in the key directory: its entries go to slot
/// `epoch mod KEY_SLOTS`, so a member writes at most this many entries (of at most the
/// bucket's value size) however many it puts, and cannot fill the bucket shared with the
/// others. Four covers the current epoch, the next one published ahead and the ones still
/// in their grace window. The real epoch is inside the signed entry; readers take it from
/// there, never from the key.
pub const KEY_SLOTS: u64 = 4;

/// The bucket key of one identity's entry for one epoch: `<kind>.<name>.<epoch mod 4>`
/// (auditors have epoch 0 only: `auditor.<name>.0`).
pub fn key_entry_key(identity: &Identity, epoch: u64) -> String {
    format!(
        "{}.{}.{}",
        identity.kind.as_str(),
        identity.name,
        epoch % KEY_SLOTS
    )
}

/// Parses a bucket key back into (kind, name, last token): the slot, or in the layout before
/// slots (a deployment not yet rid of it) the epoch itself. The epoch that counts is the one
/// in the entry; `None` for anything that is no directory key.
pub fn parse_key_entry_key(key: &str) -> Option<(IdentityKind, String, u64)> {
    let mut parts = key.split('.');
    let kind = match parts.next()? {
        "component" => IdentityKind::Component,
        "auditor" => IdentityKind::Auditor,
        "operator" => IdentityKind::Operator,
        _ => return None,
    };
    let name = parts.next()?.to_string();
    let epoch = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((kind, name, epoch))
}

/// Every subject of a key-value bucket: `$KV.<bucket>.>` (what its stream stores).
pub fn bucket_subjects(bucket: &str) -> String {
    format!("$KV.{bucket}.>")
}

/// The key a subject of `bucket` stores (`$KV.<bucket>.<key>` gives `<key>`).
pub fn bucket_key<'a>(bucket: &str, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix("$KV.")?
        .strip_prefix(bucket)?
        .strip_prefix('.')
        .filter(|k| !k.is_empty())
}

/// How many session records one sender holds: a record goes to the slot named by the first
/// byte of its (random) session id, so a member keeps at most this many records (of at most
/// the bucket's value size) however many it puts, and cannot fill the bucket the others put
/// into. A sender has a few dozen live sessions (one per route and peer, ten minutes each).
/// The session id is inside the record, authenticated when it is opened; a recipient that
/// finds another session's record in the slot treats the session as unknown.
pub const SESSION_SLOTS: usize = 256;

/// The slot of a session: the first byte of its id, two hex digits (`00`..`ff`).
pub fn session_slot(session_id: &[u8]) -> String {
    format!("{:02x}", session_id.first().copied().unwrap_or(0))
}

/// The bucket key of a session record: `<sender>.<slot>`.
pub fn session_record_key(sender: &str, session_id: &[u8]) -> String {
    format!("{sender}.{}", session_slot(session_id))
}

impl Subject {
    /// Every session record a component puts: `$KV.ozone-sessions.<name>.<slot>` for its
    /// [`SESSION_SLOTS`] slots, listed one by one (a wildcard would admit any key).
    pub fn session_records_of(identity: &Identity) -> Vec<Subject> {
        (0..=u8::MAX)
            .map(|b| {
                Subject(format!(
                    "$KV.{SESSION_BUCKET}.{}",
                    session_record_key(&identity.name, &[b])
                ))
            })
            .collect()
    }

    /// Every key entry of one identity: `$KV.ozone-keys.<kind>.<name>.>` (what a reader
    /// filters on; an identity may write only [`Subject::key_slots_of`]).
    pub fn key_entries_of(identity: &Identity) -> Subject {
        Subject(format!(
            "$KV.{KEY_BUCKET}.{}.{}.>",
            identity.kind.as_str(),
            identity.name
        ))
    }

    /// The key-directory subjects a component may write: its [`KEY_SLOTS`] slots, each
    /// holding one entry (the bucket keeps the newest per key).
    pub fn key_slots_of(identity: &Identity) -> Vec<Subject> {
        (0..KEY_SLOTS)
            .map(|slot| {
                Subject(format!(
                    "$KV.{KEY_BUCKET}.{}",
                    key_entry_key(identity, slot)
                ))
            })
            .collect()
    }

    /// Every auditor's key entry: `$KV.ozone-keys.auditor.*.0` (one per auditor).
    pub fn auditor_keys() -> Subject {
        Subject(format!(
            "$KV.{KEY_BUCKET}.{}.*.0",
            IdentityKind::Auditor.as_str()
        ))
    }

    /// Every key-directory put: `$KV.ozone-keys.>` (what the audit stream copies).
    pub fn key_entries_all() -> Subject {
        Subject(format!("$KV.{KEY_BUCKET}.>"))
    }

    /// Every key-directory entry as the bucket's stream republishes it:
    /// `ecosystem.keys.>` (`$KV.ozone-keys.<key>` becomes `ecosystem.keys.<key>`).
    pub fn key_feed_all() -> Subject {
        Subject(KEY_FEED.into())
    }

    /// A batch or single direct get of what `stream` stored: `$JS.API.DIRECT.GET.<stream>`.
    pub fn direct_get(stream: &str) -> Subject {
        Subject(format!("$JS.API.DIRECT.GET.{stream}"))
    }

    /// The JetStream API calls of a reader that holds no consumer: create-if-absent and info
    /// of the stream, and reads of stored messages (direct and by sequence), each answered to
    /// the caller's own inbox. Nothing that deletes, purges or reconfigures the stream, and no
    /// consumer: one's configuration names where the server delivers.
    pub fn jetstream_reader_api(stream: &str) -> Vec<Subject> {
        vec![
            Subject(format!("$JS.API.STREAM.CREATE.{stream}")),
            Subject(format!("$JS.API.STREAM.INFO.{stream}")),
            Subject(format!("$JS.API.STREAM.MSG.GET.{stream}")),
            Subject::direct_get(stream),
            Subject(format!("$JS.API.DIRECT.GET.{stream}.>")),
        ]
    }

    /// The JetStream API calls a client of `stream` makes: account info, create-if-absent and
    /// info of the stream, ephemeral or ordered consumers, pulls and direct gets. Nothing that
    /// deletes, purges or reconfigures the stream. Only auditors (external tools reading the
    /// audit stream) hold consumers.
    pub fn jetstream_client_api(stream: &str) -> Vec<Subject> {
        let mut out = vec![Subject("$JS.API.INFO".into())];
        out.extend(Subject::jetstream_reader_api(stream));
        for s in [
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.*"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"),
        ] {
            out.push(Subject(s));
        }
        out
    }

    /// Acknowledgements and flow-control answers to a stream's deliveries (nobody has
    /// `allow_responses` for them).
    pub fn jetstream_delivery_replies(stream: &str) -> Vec<Subject> {
        vec![
            Subject(format!("$JS.ACK.{stream}.>")),
            Subject(format!("$JS.FC.{stream}.>")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Component;

    #[test]
    fn key_entry_keys_round_trip_and_match_their_subjects() {
        let spark = Identity::component(Component::Spark);
        let key = key_entry_key(&spark, 20418);
        assert_eq!(key, "component.spark.2");
        assert_eq!(
            key_entry_key(&spark, 20422),
            key,
            "four epochs later: the same slot"
        );
        assert_eq!(
            parse_key_entry_key(&key),
            Some((IdentityKind::Component, "spark".into(), 2))
        );
        // A key of the layout before slots still parses (its last token is the epoch).
        assert_eq!(
            parse_key_entry_key("component.spark.20418"),
            Some((IdentityKind::Component, "spark".into(), 20418))
        );
        let subject = format!("$KV.{KEY_BUCKET}.{key}");
        assert!(Subject::key_entries_of(&spark).matches(&subject));
        assert_eq!(bucket_key(KEY_BUCKET, &subject), Some(key.as_str()));
        assert_eq!(bucket_key(KEY_BUCKET, "$KV.ozone-keysx.a"), None);
        assert_eq!(bucket_key(KEY_BUCKET, "$KV.ozone-keys."), None);
        assert!(Subject(bucket_subjects(KEY_BUCKET)).matches(&subject));
        let slots = Subject::key_slots_of(&spark);
        assert_eq!(slots.len(), 4);
        assert!(slots.iter().any(|s| s.matches(&subject)));
        assert!(!slots
            .iter()
            .any(|s| s.matches("$KV.ozone-keys.component.spark.20418")));
        assert!(Subject::auditor_keys().matches("$KV.ozone-keys.auditor.siem.0"));
        assert!(!Subject::auditor_keys().matches("$KV.ozone-keys.auditor.siem.1"));
        for bad in [
            "user.alice.1",
            "component.spark",
            "component.spark.x",
            "a.b.1.2",
        ] {
            assert_eq!(parse_key_entry_key(bad), None, "{bad}");
        }
        let records = Subject::session_records_of(&spark);
        assert_eq!(records.len(), SESSION_SLOTS);
        assert_eq!(session_record_key("spark", &[0xab, 1, 2]), "spark.ab");
        let subject = format!("$KV.{SESSION_BUCKET}.spark.ab");
        assert!(records.iter().any(|s| s.matches(&subject)));
        for other in ["spark.abcd", "spark.x", "spark.ab.c", "cognis.ab"] {
            let s = format!("$KV.{SESSION_BUCKET}.{other}");
            assert!(!records.iter().any(|r| r.matches(&s)), "{s}");
        }
        for s in Subject::jetstream_client_api(AUDIT_STREAM) {
            assert_eq!(Subject::parse(s.as_str()), Ok(s.clone()));
        }
    }
}
