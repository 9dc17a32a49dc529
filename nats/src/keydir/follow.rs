//! Following the directory: a batch read of every key's last entry, then the feed the
//! bucket's stream republishes, applied in stream-sequence order per key; revocations
//! re-checked as the identity registry changes.

use super::*;

/// A follower's state: what entries are checked against, where they go, where refusals are
/// reported, which epoch each key holds (a delete marker names a slot, not an epoch), and the
/// stream sequence last applied per key (a snapshot and the feed overlap).
pub(super) struct Follower {
    pub(super) trust: DirectoryTrust,
    pub(super) directory: Arc<RwLock<Directory>>,
    pub(super) rejected: mpsc::Sender<AuditKind>,
    pub(super) held: HashMap<String, u64>,
    pub(super) applied: HashMap<String, u64>,
}

impl Follower {
    /// Reads the last entry of every key and applies those newer than what it holds.
    pub(super) async fn catch_up(
        &mut self,
        client: &async_nats::Client,
    ) -> Result<(), KeyDirError> {
        let all = ozone_bus_schemas::Subject::key_entries_all();
        let stored = last_per_subject(client, KEY_STREAM, all.as_str())
            .await
            .map_err(|e| KeyDirError::Watch(e.into()))?;
        for s in &stored {
            self.apply(s);
        }
        Ok(())
    }

    /// Applies one stored entry unless an entry as new or newer of its key is applied
    /// already, reporting it if it is ignored.
    pub(super) fn apply(&mut self, stored: &Stored) {
        let Some(key) = bucket_key(&stored.subject) else {
            return;
        };
        if self
            .applied
            .get(key)
            .is_some_and(|&seq| seq >= stored.sequence)
        {
            return;
        }
        self.applied.insert(key.to_string(), stored.sequence);
        let change = if stored.is_delete_marker() {
            Change::Erased
        } else {
            Change::Put(&stored.payload)
        };
        if let Err(reason) = apply(&self.trust, &self.directory, &mut self.held, key, change) {
            let _ = self.rejected.try_send(AuditKind::DirectoryEntryRejected {
                key: key.to_string(),
                reason,
            });
        }
    }

    /// Drops the keys of certificates revoked since the last check and reports each.
    pub(super) fn check_revocations(&mut self) {
        match self.trust.refresh_revocations() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!("cannot re-read revocations: {e}");
                return;
            }
        }
        let Ok(mut dir) = self.directory.write() else {
            return;
        };
        for (service, epoch) in dir.drop_revoked(&self.trust, crate::bus::now_ms()) {
            tracing::warn!(%service, epoch, "key dropped: its certificate is revoked");
            let _ = self.rejected.try_send(AuditKind::DirectoryEntryRejected {
                key: format!("{service} (epoch {epoch})"),
                reason: "its certificate is revoked".into(),
            });
        }
    }
}

/// What the last entry of a key says.
enum Change<'a> {
    Put(&'a [u8]),
    Erased,
}

/// Applies one bucket entry; the error says why it was ignored. `held` is the epoch each key
/// holds: a delete marker removes that one, and a put into a slot replaces the epoch there.
fn apply(
    trust: &DirectoryTrust,
    directory: &RwLock<Directory>,
    held: &mut HashMap<String, u64>,
    key: &str,
    change: Change<'_>,
) -> Result<(), String> {
    let (kind, name, token) =
        parse_key_entry_key(key).ok_or_else(|| "not a key-directory key".to_string())?;
    let identity = Identity::new(kind, &name).map_err(|e| e.to_string())?;
    let expected = identity.directory_name();
    let mut dir = directory
        .write()
        .map_err(|_| "directory lock poisoned".to_string())?;
    match change {
        Change::Erased => {
            // A slot's epoch is what was put there; an old-layout key names its epoch.
            let epoch = held.remove(key).or((token >= KEY_SLOTS).then_some(token));
            if let Some(epoch) = epoch {
                dir.remove(&expected, epoch);
            }
            Ok(())
        }
        Change::Put(value) => {
            let parsed = decode(value).map_err(|e| format!("malformed: {e}"))?;
            if parsed.service != expected || !placed_under(key, &identity, parsed.epoch) {
                return Err(format!(
                    "stored under {key} but claims {} epoch {}",
                    parsed.service, parsed.epoch
                ));
            }
            if kind == IdentityKind::Auditor && parsed.epoch != 0 {
                return Err("auditor keys have epoch 0".into());
            }
            dir.insert(trust, &parsed, crate::bus::now_ms())
                .map_err(|e| e.to_string())?;
            if let Some(before) = held.insert(key.to_string(), parsed.epoch) {
                if before != parsed.epoch {
                    // The slot's previous epoch left the bucket with this put.
                    dir.remove(&expected, before);
                }
            }
            Ok(())
        }
    }
}
