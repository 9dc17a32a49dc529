//! The key directory on the bus: every identity's signed public keys in a JetStream KV bucket
//! (`ozone-keys`). Each service puts its own entries and
//! follows the bucket; an entry goes into the in-memory [`Directory`] only after its signature
//! and certificate check out, so write access to the bucket is not enough to substitute a key.
//! The bucket refuses roll-ups, purges and deletes (`buckets.rs`), so no member can erase the
//! others' entries; a key is erased with a delete marker on its own key.
//!
//! An entry lives under slot `epoch mod 4` of its identity (`component.<name>.<slot>`), and the
//! permissions let a component write those four keys only: the bucket keeps the newest value
//! per key, so one member holds at most four entries, however many puts it makes, and cannot
//! fill the bucket the others rotate into. The epoch is the one inside the signed entry; a
//! reader never takes it from the key. Keys of the layout before slots (`<name>.<epoch>`)
//! are still read; the running service puts its live entries again under their slots.

use crate::buckets::{BucketError, BucketSpec};
use crate::bus::BoxError;
use crate::stored::{last_per_subject, Stored};
use async_nats::jetstream::kv;
use futures::StreamExt;
use ozone_bus_schemas::streams::{
    key_entry_key, parse_key_entry_key, KEY_BUCKET, KEY_FEED, KEY_SLOTS, KEY_STREAM,
};
use ozone_bus_schemas::{AuditKind, Identity, IdentityKind};
use ozone_security::keydir::{Directory, DirectoryEntry, DirectoryTrust};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

mod follow;
use follow::Follower;

/// How often a follower reads the whole directory again: the feed is plain NATS, and a
/// message it drops (a slow subscriber) would otherwise stay missing until its owner's next
/// put.
const RESYNC: Duration = Duration::from_secs(60);

/// How often a follower looks for new revocations in the identity registry.
const REVOCATION_CHECK: Duration = Duration::from_secs(2);

/// How long opening the bucket retries a JetStream that is briefly unavailable.
const JETSTREAM_SETTLE: Duration = Duration::from_secs(10);

/// The bucket: entries never expire (a service erases its own), one entry is a few hundred
/// bytes (a 32-byte key, a leaf certificate, a signature), at most 8 KiB, and each identity
/// holds at most four keys (its slots), so the whole directory stays far below the cap
/// however much any member writes. Past the cap new puts are refused; nothing already stored
/// is evicted.
pub const KEY_BUCKET_SPEC: BucketSpec = BucketSpec {
    bucket: KEY_BUCKET,
    description: "OZONE STUDIO key directory: signed X25519 public keys",
    max_age: Duration::ZERO,
    max_bytes: 16 << 20,
    max_value_bytes: 8 << 10,
    feed: Some(KEY_FEED),
};

#[derive(Debug, thiserror::Error)]
pub enum KeyDirError {
    #[error("key directory bucket {KEY_BUCKET}: {0}")]
    Bucket(#[source] BoxError),
    #[error("cannot put {key} into the key directory: {detail}")]
    Put {
        key: String,
        #[source]
        detail: BoxError,
    },
    #[error("cannot follow the key directory: {0}")]
    Watch(#[source] BoxError),
    #[error("cannot encode a directory entry: {0}")]
    Encode(#[source] BoxError),
    #[error(transparent)]
    Hardening(#[from] BucketError),
}

/// The `ozone-keys` bucket, opened (and created when absent) by one connection.
#[derive(Clone)]
pub struct KeyDirectory {
    store: kv::Store,
    client: async_nats::Client,
}

impl std::fmt::Debug for KeyDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyDirectory({KEY_BUCKET})")
    }
}

/// Runs `attempt` until it succeeds or [`JETSTREAM_SETTLE`] has passed. Right after
/// nats-server reloads its configuration (`ozone pki issue`/`revoke`), the account's JetStream
/// answers "unavailable" for a moment; the command that caused the reload must not fail on it.
/// Every operation retried here is idempotent (open, put of the same bytes, delete).
async fn settled<T, F, Fut>(mut attempt: F) -> Result<T, KeyDirError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, KeyDirError>>,
{
    let deadline = tokio::time::Instant::now() + JETSTREAM_SETTLE;
    let mut pause = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!("key directory not reachable yet ({e}); retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(800));
            }
            Err(e) => return Err(e),
        }
    }
}

impl KeyDirectory {
    /// Opens the bucket, creating it hardened on first use (file storage, the newest entry
    /// per key).
    pub async fn open(client: &async_nats::Client) -> Result<KeyDirectory, KeyDirError> {
        let store = settled(|| async {
            KEY_BUCKET_SPEC
                .open(client)
                .await
                .map_err(|e| KeyDirError::Bucket(e.into()))
        })
        .await?;
        Ok(KeyDirectory {
            store,
            client: client.clone(),
        })
    }

    /// Brings a bucket created before the hardening to it; returns the settings changed. Only
    /// the core may (`ozone up`).
    pub async fn harden(client: &async_nats::Client) -> Result<Vec<String>, KeyDirError> {
        Ok(crate::buckets::harden(client, &KEY_BUCKET_SPEC).await?)
    }

    /// The hardening settings the bucket's stream lacks now (empty: hardened).
    pub async fn unhardened(&self) -> Result<Vec<String>, KeyDirError> {
        Ok(crate::buckets::drift_of(&self.store, &KEY_BUCKET_SPEC).await?)
    }

    /// Publishes `identity`'s entry (the caller signed it).
    pub async fn put(
        &self,
        identity: &Identity,
        entry: &DirectoryEntry,
    ) -> Result<(), KeyDirError> {
        let key = key_entry_key(identity, entry.epoch);
        let bytes = rmp_serde::to_vec_named(entry).map_err(|e| KeyDirError::Encode(e.into()))?;
        let bytes = bytes::Bytes::from(bytes);
        settled(|| async {
            self.store
                .put(&key, bytes.clone())
                .await
                .map(|_| ())
                .map_err(|e| KeyDirError::Put {
                    key: key.clone(),
                    detail: e.into(),
                })
        })
        .await
    }

    /// Removes `identity`'s entry for `epoch` (its key was erased) with a delete marker: a
    /// purge would need roll-ups, which the bucket refuses. The marker is copied into the
    /// audit stream like every put, so the archive shows when each key left the directory.
    /// Only while the epoch's slot still holds that epoch: a newer one put there (four epochs
    /// on) stays. An entry of the layout before slots cannot be erased (the permissions no
    /// longer list its key); followers stop using it when it expires.
    pub async fn erase(&self, identity: &Identity, epoch: u64) -> Result<(), KeyDirError> {
        let key = key_entry_key(identity, epoch);
        match self.entry(identity, epoch).await? {
            Some(Ok(held)) if held.epoch != epoch => return Ok(()),
            None => return Ok(()),
            _ => {}
        }
        settled(|| async {
            self.store.delete(&key).await.map_err(|e| KeyDirError::Put {
                key: key.clone(),
                detail: e.into(),
            })
        })
        .await
    }

    /// The entry stored in the slot of `identity`'s `epoch`: `Ok(None)` when there is none
    /// (never put, or erased), `Err` with what is there instead when it does not decode. The
    /// slot may hold another epoch (four apart): the caller compares `epoch`.
    pub async fn entry(
        &self,
        identity: &Identity,
        epoch: u64,
    ) -> Result<Option<Result<DirectoryEntry, String>>, KeyDirError> {
        let key = key_entry_key(identity, epoch);
        let value = self
            .store
            .get(&key)
            .await
            .map_err(|e| KeyDirError::Watch(e.into()))?;
        Ok(value.map(|v| decode(&v)))
    }

    /// Every entry `identity` has in the bucket now, by key (its slots, and keys of the
    /// layout before slots), decoded or with what is there instead.
    pub async fn entries_of(
        &self,
        identity: &Identity,
    ) -> Result<Vec<(String, Result<DirectoryEntry, String>)>, KeyDirError> {
        let filter = ozone_bus_schemas::Subject::key_entries_of(identity);
        Ok(self
            .stored(filter.as_str())
            .await?
            .into_iter()
            .filter_map(|(key, stored)| Some((key, decode(&stored?.payload))))
            .collect())
    }

    /// The current value of every key under `filter` (a subject of the bucket), by key:
    /// `None` for a key whose last entry is a delete marker.
    async fn stored(&self, filter: &str) -> Result<Vec<(String, Option<Stored>)>, KeyDirError> {
        let stored = last_per_subject(&self.client, KEY_STREAM, filter)
            .await
            .map_err(|e| KeyDirError::Watch(e.into()))?;
        Ok(stored
            .into_iter()
            .filter_map(|s| {
                let key = bucket_key(&s.subject)?.to_string();
                Some((key, (!s.is_delete_marker()).then_some(s)))
            })
            .collect())
    }

    /// The epochs (as the entries say) for which `identity` has an entry in the bucket now.
    pub async fn epochs_of(&self, identity: &Identity) -> Result<Vec<u64>, KeyDirError> {
        let mut out: Vec<u64> = self
            .entries_of(identity)
            .await?
            .into_iter()
            .filter_map(|(_, e)| e.ok().map(|e| e.epoch))
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// How many slot keys each identity holds in the bucket (by `<kind>.<name>`; keys that
    /// are no directory key count under their own name), and the bucket's bytes against its
    /// cap. Keys of the layout before slots are not counted: nobody may write them any more,
    /// and they cannot be erased either, so counting them would fail an upgraded home forever.
    pub async fn usage(&self) -> Result<(BTreeMap<String, usize>, u64, i64), KeyDirError> {
        let all = ozone_bus_schemas::Subject::key_entries_all();
        let mut per = BTreeMap::new();
        for (key, stored) in self.stored(all.as_str()).await? {
            if stored.is_none() {
                continue;
            }
            let owner = match parse_key_entry_key(&key) {
                Some((_, _, token)) if token >= KEY_SLOTS => continue,
                Some((kind, name, _)) => format!("{} {name}", kind.as_str()),
                None => key,
            };
            *per.entry(owner).or_insert(0) += 1;
        }
        let mut stream = self.store.stream.clone();
        let info = stream
            .info()
            .await
            .map_err(|e| KeyDirError::Watch(e.into()))?;
        Ok((per, info.state.bytes, info.config.max_bytes))
    }

    /// Loads every current entry into `directory`, then keeps following the bucket in a
    /// background task: the entries its stream republishes on the feed, and the whole
    /// directory read again every [`RESYNC`]. No consumer is involved (`stored.rs`). Entries
    /// that fail verification are reported on `rejected` (to be audited) and never used. Every
    /// [`REVOCATION_CHECK`] the task also re-reads the identity registry `trust` was loaded
    /// from and drops (and reports) the keys of certificates revoked since.
    pub async fn follow(
        &self,
        trust: DirectoryTrust,
        directory: Arc<RwLock<Directory>>,
        rejected: mpsc::Sender<AuditKind>,
    ) -> Result<tokio::task::JoinHandle<()>, KeyDirError> {
        // Subscribed before the first read: whatever is stored meanwhile arrives on the feed,
        // and sequences sort out the overlap.
        let mut feed = self
            .client
            .subscribe(KEY_FEED)
            .await
            .map_err(|e| KeyDirError::Watch(e.into()))?;
        // One owner for the trust: the catch-up below, then the follower task.
        let mut follower = Follower {
            trust,
            directory,
            rejected,
            held: HashMap::new(),
            applied: HashMap::new(),
        };
        follower.catch_up(&self.client).await?;
        let client = self.client.clone();
        Ok(tokio::spawn(async move {
            let mut check = tokio::time::interval(REVOCATION_CHECK);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut resync = tokio::time::interval(RESYNC);
            resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            resync.reset();
            loop {
                tokio::select! {
                    msg = feed.next() => {
                        let Some(msg) = msg else { break };
                        match Stored::from_delivery(KEY_STREAM, msg) {
                            Ok(stored) => follower.apply(&stored),
                            Err(e) => tracing::warn!("key directory feed: {e}"),
                        }
                    }
                    _ = check.tick() => follower.check_revocations(),
                    _ = resync.tick() => {
                        if let Err(e) = follower.catch_up(&client).await {
                            tracing::warn!("key directory: {e}");
                        }
                    }
                }
            }
        }))
    }
}

/// The bucket key of a subject of the bucket (`$KV.ozone-keys.<key>`).
fn bucket_key(subject: &str) -> Option<&str> {
    ozone_bus_schemas::streams::bucket_key(KEY_BUCKET, subject)
}

/// A stored value as an entry, or what it is instead.
fn decode(v: &[u8]) -> Result<DirectoryEntry, String> {
    rmp_serde::from_slice::<DirectoryEntry>(v)
        .map_err(|e| format!("{} bytes that are no entry ({e})", v.len()))
}

/// Whether `key` is where an entry of `identity` for `epoch` belongs: its slot, or (the
/// layout before slots) a key whose last token is the epoch itself.
pub fn placed_under(key: &str, identity: &Identity, epoch: u64) -> bool {
    match parse_key_entry_key(key) {
        Some((_, _, token)) if token < KEY_SLOTS => key == key_entry_key(identity, epoch),
        Some((_, _, token)) => token == epoch,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ozone_bus_schemas::Component;

    #[test]
    fn an_entry_belongs_in_its_epochs_slot_or_under_an_old_key_naming_its_epoch() {
        let spark = Identity::component(Component::Spark);
        assert!(placed_under("component.spark.2", &spark, 20418));
        assert!(placed_under("component.spark.2", &spark, 20422));
        assert!(!placed_under("component.spark.3", &spark, 20418));
        // The layout before slots: still read, the key naming the entry's own epoch.
        assert!(placed_under("component.spark.20418", &spark, 20418));
        assert!(!placed_under("component.spark.20419", &spark, 20418));
        assert!(!placed_under("junk", &spark, 2));
        let siem = Identity::new(IdentityKind::Auditor, "siem").unwrap();
        assert!(placed_under("auditor.siem.0", &siem, 0));
    }
}
