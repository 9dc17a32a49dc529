//! The hardened key-value buckets (`ozone-keys`, `ozone-sessions`): the streams behind them
//! refuse what would let one member erase the others' entries, and bound what one write and
//! the whole bucket may take.
//!
//! async-nats creates buckets with roll-ups allowed and purges not denied, so a put to a
//! member's own key with `Nats-Rollup: all` dropped every other entry. Here roll-ups are off
//! and purges and message deletes are denied; nats-server refuses to turn any of the three
//! back (a denial cannot be cancelled, and roll-ups need the purge permission), so once a
//! stream is hardened it stays hardened. Entries are erased with delete markers instead.
//!
//! Every component may create the buckets if absent (with these settings); only the core may
//! update an existing stream, which `ozone up` does for streams created before this (see
//! [`harden`]). A component that opens a stream not yet hardened works with it and says so.

use crate::bus::BoxError;
use async_nats::jetstream::{self, kv, stream};
use ozone_bus_schemas::streams::bucket_subjects;
use std::time::Duration;

/// ZSEI's methodology registry: documents of at most 256 KiB (plus the record around them),
/// kept forever, 64 MiB in all (a few hundred versions of the largest documents).
pub const METHODOLOGY_BUCKET_SPEC: BucketSpec = BucketSpec {
    bucket: ozone_bus_schemas::streams::METHODOLOGY_BUCKET,
    description: "OZONE STUDIO methodology registry: every version of every methodology",
    max_age: Duration::ZERO,
    max_bytes: 64 << 20,
    max_value_bytes: 320 << 10,
    feed: None,
};

/// The core's task store: one record per task (its steps' states and outputs), at most
/// 1 MiB each, kept 30 days after its last change, 256 MiB in all (new tasks are refused
/// past it, never old ones evicted).
pub const TASK_BUCKET_SPEC: BucketSpec = BucketSpec {
    bucket: ozone_bus_schemas::streams::TASK_BUCKET,
    description: "OZONE STUDIO tasks: the durable state of every task",
    max_age: Duration::from_secs(30 * 24 * 3600),
    max_bytes: 256 << 20,
    max_value_bytes: 1 << 20,
    feed: None,
};

/// What one bucket is made of.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub bucket: &'static str,
    pub description: &'static str,
    /// Zero: entries never expire.
    pub max_age: Duration,
    /// A cap on the whole bucket; past it new puts are refused (nothing is evicted).
    pub max_bytes: i64,
    /// A cap on one entry (value plus headers).
    pub max_value_bytes: i32,
    /// Where the stream republishes each entry it stores (`$KV.<bucket>.>` onto this
    /// pattern), for members that follow the bucket without a consumer (`stored.rs`).
    pub feed: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("bucket {bucket}: {detail}")]
    Open {
        bucket: String,
        #[source]
        detail: BoxError,
    },
    #[error("bucket {bucket} is not hardened ({drift}) and cannot be updated: {detail}")]
    Harden {
        bucket: String,
        drift: String,
        #[source]
        detail: BoxError,
    },
}

impl BucketSpec {
    fn stream_name(&self) -> String {
        format!("KV_{}", self.bucket)
    }

    /// The stream configuration: the layout of a KV bucket (one subject per key, the newest
    /// value each, direct gets) with the hardening above.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream_name(),
            description: Some(self.description.into()),
            subjects: vec![bucket_subjects(self.bucket)],
            max_messages_per_subject: 1,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
            max_message_size: self.max_value_bytes,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            allow_rollup: false,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            num_replicas: 1,
            republish: self.feed.map(|destination| stream::Republish {
                source: bucket_subjects(self.bucket),
                destination: destination.into(),
                headers_only: false,
            }),
            ..Default::default()
        }
    }

    /// The settings of `have` that differ from what this spec wants, by name; empty when the
    /// stream is hardened as wanted.
    pub fn drift(&self, have: &stream::Config) -> Vec<String> {
        let want = self.stream_config();
        let mut out = Vec::new();
        let mut check = |name: &str, same: bool| {
            if !same {
                out.push(name.to_string());
            }
        };
        check("allow_rollup_hdrs", have.allow_rollup == want.allow_rollup);
        check("deny_delete", have.deny_delete == want.deny_delete);
        check("deny_purge", have.deny_purge == want.deny_purge);
        check("max_bytes", have.max_bytes == want.max_bytes);
        check(
            "max_msg_size",
            have.max_message_size == want.max_message_size,
        );
        check("max_age", have.max_age == want.max_age);
        check("discard", have.discard == want.discard);
        check(
            "max_msgs_per_subject",
            have.max_messages_per_subject == want.max_messages_per_subject,
        );
        check("subjects", have.subjects == want.subjects);
        check("allow_direct", have.allow_direct == want.allow_direct);
        check("republish", have.republish == want.republish);
        check("sealed", !have.sealed);
        out
    }

    /// Opens the bucket, creating its stream hardened when absent. A stream that exists with
    /// other settings is used as it is (only the core may change it: [`harden`]) and reported.
    pub async fn open(&self, client: &async_nats::Client) -> Result<kv::Store, BucketError> {
        let js = jetstream::new(client.clone());
        let err = |detail: BoxError| BucketError::Open {
            bucket: self.bucket.into(),
            detail,
        };
        match js.get_stream(self.stream_name()).await {
            Ok(mut s) => {
                let drift = self.drift(&s.info().await.map_err(|e| err(e.into()))?.config);
                if !drift.is_empty() {
                    tracing::warn!(
                        bucket = self.bucket,
                        "bucket not hardened ({}); `ozone up` updates it",
                        drift.join(", ")
                    );
                }
            }
            Err(e) if is_not_found(&e) => {
                if let Err(e) = js.create_stream(self.stream_config()).await {
                    // Another member may have created it meanwhile; opening it below decides.
                    tracing::debug!(bucket = self.bucket, "create: {e}");
                }
            }
            Err(e) => return Err(err(e.into())),
        }
        js.get_key_value(self.bucket)
            .await
            .map_err(|e| err(e.into()))
    }
}

/// The settings in which `store`'s stream differs from `spec` now (empty: hardened).
pub async fn drift_of(store: &kv::Store, spec: &BucketSpec) -> Result<Vec<String>, BucketError> {
    let mut stream = store.stream.clone();
    let info = stream.info().await.map_err(|e| BucketError::Open {
        bucket: spec.bucket.into(),
        detail: e.into(),
    })?;
    Ok(spec.drift(&info.config))
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Brings an existing bucket's stream to the hardened settings (creating it when absent);
/// returns the settings it changed. Only the core may update these streams, so only the core
/// calls this (`ozone up`, as it publishes the auditors' keys).
pub async fn harden(
    client: &async_nats::Client,
    spec: &BucketSpec,
) -> Result<Vec<String>, BucketError> {
    spec.open(client).await?;
    let js = jetstream::new(client.clone());
    let mut s = js
        .get_stream(spec.stream_name())
        .await
        .map_err(|e| BucketError::Open {
            bucket: spec.bucket.into(),
            detail: e.into(),
        })?;
    let have = s
        .info()
        .await
        .map_err(|e| BucketError::Open {
            bucket: spec.bucket.into(),
            detail: e.into(),
        })?
        .config
        .clone();
    let drift = spec.drift(&have);
    if drift.is_empty() {
        return Ok(drift);
    }
    let want = stream::Config {
        // Keep what the server filled in and we do not set.
        description: have.description.clone().or(Some(spec.description.into())),
        ..spec.stream_config()
    };
    js.update_stream(want)
        .await
        .map_err(|e| BucketError::Harden {
            bucket: spec.bucket.into(),
            drift: drift.join(", "),
            detail: e.into(),
        })?;
    tracing::info!(
        bucket = spec.bucket,
        "bucket hardened ({})",
        drift.join(", ")
    );
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BucketSpec {
        BucketSpec {
            bucket: "b",
            description: "d",
            max_age: Duration::ZERO,
            max_bytes: 1 << 20,
            max_value_bytes: 4096,
            feed: None,
        }
    }

    #[test]
    fn a_bucket_with_a_feed_republishes_every_entry_and_drifts_without_it() {
        let fed = BucketSpec {
            feed: Some("fed.>"),
            ..spec()
        };
        let c = fed.stream_config();
        let republish = c.republish.clone().expect("a republish");
        assert_eq!(
            (republish.source.as_str(), republish.destination.as_str()),
            ("$KV.b.>", "fed.>")
        );
        assert!(!republish.headers_only);
        assert_eq!(fed.drift(&spec().stream_config()), ["republish"]);
        assert!(fed.drift(&c).is_empty());
    }

    #[test]
    fn the_stream_refuses_roll_ups_purges_and_deletes_and_bounds_writes() {
        let c = spec().stream_config();
        assert!(!c.allow_rollup && c.deny_delete && c.deny_purge);
        assert_eq!(c.discard, stream::DiscardPolicy::New);
        assert_eq!((c.max_bytes, c.max_message_size), (1 << 20, 4096));
        assert_eq!(c.subjects, vec!["$KV.b.>".to_string()]);
        assert!(spec().drift(&c).is_empty());
    }

    #[test]
    fn a_bucket_as_async_nats_creates_it_is_not_hardened() {
        let old = stream::Config {
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            max_bytes: -1,
            max_message_size: -1,
            ..spec().stream_config()
        };
        assert_eq!(
            spec().drift(&old),
            [
                "allow_rollup_hdrs",
                "deny_purge",
                "max_bytes",
                "max_msg_size"
            ]
        );
    }
}
