//! The audit stream: a JetStream stream in the AUDIT account over `audit.>` (every
//! component's sealed audit events) and `$KV.ozone-keys.>` (every key-directory put, so a
//! reader can verify who sealed each event). File storage, retention and size cap from
//! `etc/nats.toml` (90 days, 1 GiB by default; the oldest events go first). One message is
//! at most [`AUDIT_MESSAGE_MAX_BYTES`], roll-ups are refused and purges and message deletes
//! denied, so nothing in the stream is removed but by age or the size cap.
//!
//! [`AuditReader`] (`reader.rs`) is what an auditor runs: it verifies directory entries as they
//! come, opens each event with the auditor's own key and checks the sender through the
//! directory.

mod reader;

pub use reader::{AuditReader, AuditRecord};

use crate::bus::BoxError;
use crate::{Connection, NatsSettings};
use async_nats::jetstream::{self, consumer, stream};
use futures::{Stream, StreamExt};
use ozone_bus_schemas::audit::AUDIT_CATEGORIES;
use ozone_bus_schemas::phase::{PhaseEvent, PhaseTransition};
use ozone_bus_schemas::streams::{parse_key_entry_key, AUDIT_STREAM, KEY_SLOTS};
use ozone_bus_schemas::{AuditEvent, Component, Identity, Subject, AUDIT_SCHEMA};
use ozone_security::envelope::{Freshness, Opener, OpenerLimits, SecretKeyPair};
use ozone_security::keydir::{Directory, DirectoryEntry, DirectoryTrust};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit stream {AUDIT_STREAM}: {0}")]
    Stream(#[source] BoxError),
    #[error(
        "audit stream {AUDIT_STREAM} exists with other settings ({0}); \
         its retention is not changed by `ozone up` — check etc/nats.toml"
    )]
    Mismatch(String),
    #[error(
        "audit stream {AUDIT_STREAM} needs {needed} bytes reserved, more than the storage \
         JetStream has left ({detail}); free disk space under the home's data/jetstream, or \
         lower `audit_max_bytes` in etc/nats.toml (the oldest events are dropped past it)"
    )]
    NoStorage { needed: u64, detail: String },
}

/// The largest message the audit stream stores: a sealed event is a few hundred bytes per
/// auditor, a key-directory entry at most the bucket's 8 KiB. Larger publishes on `audit.>`
/// (a flood of 1 MiB messages) are refused by the stream instead of evicting 1 MiB of
/// evidence each.
pub const AUDIT_MESSAGE_MAX_BYTES: i32 = 16 << 10;

/// What one stored message takes at most: [`AUDIT_MESSAGE_MAX_BYTES`] of headers and payload
/// plus its subject and the file store's framing (a few dozen bytes; rounded up).
const STORED_MESSAGE_MAX_BYTES: u64 = (16 << 10) + 512;

/// Auditors the stream's budget leaves room for (one key-directory subject each).
pub const AUDITORS_BUDGETED: u64 = 16;

/// Operators the stream's budget leaves room for ([`KEY_SLOTS`] key-directory subjects each).
pub const OPERATORS_BUDGETED: u64 = 4;

/// The subjects the stream can hold messages on, as the permissions bound them: each
/// component's audit categories and key-directory slots, the auditors' keys, the operators'
/// key-directory slots, the phase announcements and the transitions.
pub fn subjects_budgeted() -> u64 {
    let components = Component::ALL.len() as u64;
    components * AUDIT_CATEGORIES.len() as u64
        + components * KEY_SLOTS
        + AUDITORS_BUDGETED
        + OPERATORS_BUDGETED * KEY_SLOTS
        + components
        + 1
}

/// The stream's `max_msgs_per_subject`: small enough that every budgeted subject at its cap,
/// each message at the largest size, still fits under `max_bytes`. The size cap then never
/// evicts anything: a flood on one subject drops only that subject's own oldest messages (the
/// flooder's own events of that category), never another component's. At least one.
pub fn per_subject_cap(max_bytes: u64) -> i64 {
    let cap = max_bytes / (subjects_budgeted() * STORED_MESSAGE_MAX_BYTES);
    i64::try_from(cap.max(1)).unwrap_or(i64::MAX)
}

/// The stream's configuration from the settings.
pub fn stream_config(settings: &NatsSettings) -> stream::Config {
    stream::Config {
        name: AUDIT_STREAM.into(),
        description: Some(
            "OZONE STUDIO audit events (sealed to auditors) and key-directory puts".into(),
        ),
        subjects: vec![
            Subject::audit_all().to_string(),
            Subject::key_entries_all().to_string(),
            Subject::phase_all().to_string(),
            Subject::phase_transitions().to_string(),
        ],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: settings.audit_retention,
        max_bytes: i64::try_from(settings.audit_max_bytes).unwrap_or(i64::MAX),
        max_message_size: AUDIT_MESSAGE_MAX_BYTES,
        max_messages_per_subject: per_subject_cap(settings.audit_max_bytes),
        allow_rollup: false,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// How an existing stream differs from `want`: `lost` lists settings under which events are
/// lost or never stored (another auditor may have created the stream first with them),
/// `unhardened` what a stream created before the hardening lacks (auditors may not update
/// the stream, so it keeps working and is reported).
fn compare(have: &stream::Config, want: &stream::Config) -> (Vec<String>, Vec<String>) {
    let mut lost = Vec::new();
    let mut unhardened = Vec::new();
    let check = |list: &mut Vec<String>, name: &str, same: bool| {
        if !same {
            list.push(name.to_string());
        }
    };
    check(&mut lost, "max_age", have.max_age == want.max_age);
    check(&mut lost, "max_bytes", have.max_bytes == want.max_bytes);
    check(&mut lost, "storage", have.storage == want.storage);
    check(&mut lost, "subjects", have.subjects == want.subjects);
    check(&mut lost, "retention", have.retention == want.retention);
    check(&mut lost, "discard", have.discard == want.discard);
    // Zero (what we send) and -1 (what the server reports) both mean no limit.
    let limit = |n: i64| if n <= 0 { -1 } else { n };
    check(
        &mut lost,
        "max_msgs",
        limit(have.max_messages) == limit(want.max_messages),
    );
    // No per-subject cap is what a stream from before the quota has (reported below); any
    // other cap than ours was set by someone else.
    check(
        &mut lost,
        "max_msgs_per_subject",
        limit(have.max_messages_per_subject) == limit(want.max_messages_per_subject)
            || limit(have.max_messages_per_subject) == -1,
    );
    check(&mut lost, "allow_rollup_hdrs", !have.allow_rollup);
    check(&mut lost, "sealed", !have.sealed);
    check(
        &mut lost,
        "max_msg_size",
        // Unlimited is what a stream from before the hardening has (reported below); any
        // other size than ours was set by someone else.
        have.max_message_size == want.max_message_size || have.max_message_size == -1,
    );
    check(
        &mut lost,
        "mirror/sources",
        have.mirror.is_none() && have.sources.as_ref().is_none_or(|s| s.is_empty()),
    );
    check(
        &mut unhardened,
        "max_msgs_per_subject",
        limit(have.max_messages_per_subject) == limit(want.max_messages_per_subject),
    );
    check(&mut unhardened, "deny_delete", have.deny_delete);
    check(&mut unhardened, "deny_purge", have.deny_purge);
    check(
        &mut unhardened,
        "max_msg_size",
        have.max_message_size == want.max_message_size,
    );
    (lost, unhardened)
}

/// Creates the audit stream if absent (connected as an auditor); an existing stream with
/// other limits is reported, not changed.
pub async fn ensure_stream(
    conn: &Connection,
    settings: &NatsSettings,
) -> Result<stream::Info, AuditError> {
    let js = jetstream::new(conn.client.clone());
    let want = stream_config(settings);
    let mut stream = js
        .get_or_create_stream(want.clone())
        .await
        .map_err(|e| no_storage(&e, settings).unwrap_or_else(|| AuditError::Stream(e.into())))?;
    let info = stream
        .info()
        .await
        .map_err(|e| AuditError::Stream(e.into()))?
        .clone();
    let (lost, unhardened) = compare(&info.config, &want);
    if !lost.is_empty() {
        let have = &info.config;
        return Err(AuditError::Mismatch(format!(
            "{}: max_age {:?}, max_bytes {}, storage {:?}",
            lost.join(", "),
            have.max_age,
            have.max_bytes,
            have.storage
        )));
    }
    if !unhardened.is_empty() {
        tracing::warn!(
            "audit stream {AUDIT_STREAM} was created before its hardening ({}): it keeps \
             working; recreate it to harden it",
            unhardened.join(", ")
        );
    }
    Ok(info)
}

/// The out-of-storage refusal, told apart so the operator learns what to change.
fn no_storage(
    e: &jetstream::context::CreateStreamError,
    settings: &NatsSettings,
) -> Option<AuditError> {
    let jetstream::context::CreateStreamErrorKind::JetStream(source) = e.kind() else {
        return None;
    };
    (source.error_code() == jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED).then(|| {
        AuditError::NoStorage {
            needed: settings.audit_max_bytes,
            detail: source.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_refuses_large_messages_roll_ups_purges_and_deletes() {
        let want = stream_config(&NatsSettings::default());
        assert_eq!(want.max_message_size, AUDIT_MESSAGE_MAX_BYTES);
        assert!(!want.allow_rollup && want.deny_delete && want.deny_purge);
        assert_eq!(compare(&want, &want), (vec![], vec![]));
    }

    #[test]
    fn a_stream_that_loses_events_is_refused_and_an_old_one_is_reported() {
        let want = stream_config(&NatsSettings::default());
        // As created before the hardening (what the server reports back).
        let old = stream::Config {
            max_message_size: -1,
            deny_delete: false,
            deny_purge: false,
            max_messages: -1,
            max_messages_per_subject: -1,
            ..want.clone()
        };
        assert_eq!(
            compare(&old, &want),
            (
                vec![],
                vec![
                    "max_msgs_per_subject".to_string(),
                    "deny_delete".into(),
                    "deny_purge".into(),
                    "max_msg_size".into()
                ]
            )
        );
        // Created first by someone else: roll-ups let any component wipe it through
        // `audit.<itself>.>`, a per-subject limit evicts by subject.
        let planted = stream::Config {
            allow_rollup: true,
            max_messages_per_subject: 1,
            ..want.clone()
        };
        assert_eq!(
            compare(&planted, &want).0,
            vec!["max_msgs_per_subject", "allow_rollup_hdrs"]
        );
    }

    #[test]
    fn every_subject_at_its_cap_fits_under_the_size_cap() {
        assert_eq!(
            STORED_MESSAGE_MAX_BYTES,
            u64::try_from(AUDIT_MESSAGE_MAX_BYTES).unwrap() + 512
        );
        for max_bytes in [1u64 << 30, 64 << 20, 10 << 30] {
            let cap = u64::try_from(per_subject_cap(max_bytes)).unwrap();
            assert!(cap > 1, "{max_bytes}: {cap}");
            assert!(subjects_budgeted() * cap * STORED_MESSAGE_MAX_BYTES <= max_bytes);
        }
        // The default: 8 components × 7 categories + 8 × 4 key slots + 16 auditors + 4
        // operators × 4 key slots + 9 phase subjects; 492 events of the largest size per
        // subject.
        assert_eq!(subjects_budgeted(), 129);
        assert_eq!(
            stream_config(&NatsSettings::default()).max_messages_per_subject,
            492
        );
    }
}
