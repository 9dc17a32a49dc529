//! The rotation driver of a running service: at each epoch boundary it derives the new key,
//! publishes its signed entry, reseals with it, erases keys whose grace window closed (memory,
//! ring file and directory bucket) and audits the rotation. Between rotations it checks that
//! the bucket still holds a valid entry for each key it holds and puts one again where not,
//! so a directory emptied or overwritten (by a member with this identity, or a bucket
//! restored from an old backup) heals within [`HEAL_EVERY`] without waiting for the next
//! epoch.

use super::{now_ms, BusError, BusKeys};
use crate::KeyDirectory;
use ozone_bus_schemas::{AuditKind, Identity};
use ozone_security::envelope::{keyring_file, Sealer, SessionLimits};
use ozone_security::keydir::{DirectoryEntry, DirectoryTrust, ServiceSigner};
use ozone_security::Home;
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest sleep between checks (also covers clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How often a service checks its own entries in the bucket. A check is one direct get per
/// held key (one or two), so this costs the server next to nothing; a put happens only when
/// an entry is missing or wrong, since every put is also copied into the audit stream.
pub const HEAL_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Rotator {
    pub home: Home,
    pub identity: Identity,
    pub signer: ServiceSigner,
    pub keydir: KeyDirectory,
    pub keys: BusKeys,
    pub audit: mpsc::Sender<AuditKind>,
    /// What a stored entry of our own is checked against when healing.
    pub trust: DirectoryTrust,
}

/// When the ring next needs attention: the next epoch start or the next retirement.
fn next_due(keys: &BusKeys, now: u64) -> u64 {
    let Ok(ring) = keys.ring.read() else {
        return now + MAX_SLEEP.as_millis() as u64;
    };
    let r = ring.rotation();
    let next_epoch = r.epoch_start(r.epoch_at(now) + 1);
    ring.held_epochs()
        .into_iter()
        .map(|e| r.retire_at(e))
        .filter(|t| *t > now)
        .chain([next_epoch])
        .min()
        .unwrap_or(next_epoch)
}

pub(crate) async fn drive(r: Rotator) {
    let mut failed = false;
    loop {
        let now = now_ms();
        let wait = if failed {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(next_due(&r.keys, now).saturating_sub(now))
                .min(MAX_SLEEP)
                .min(HEAL_EVERY)
        };
        tokio::time::sleep(wait).await;
        failed = match step(&r).await {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(identity = %r.identity, "key rotation (retried in a second): {e}");
                true
            }
        };
        if !failed {
            if let Err(e) = heal(&r).await {
                tracing::warn!(identity = %r.identity, "checking our key-directory entries: {e}");
            }
        }
    }
}

/// Puts again each held key's entry the bucket no longer holds (or holds in a form that
/// would not be used), and audits what was found instead.
async fn heal(r: &Rotator) -> Result<(), BusError> {
    let now = now_ms();
    let held: Vec<_> = {
        let ring = r
            .keys
            .ring
            .read()
            .map_err(|_| BusError::Poisoned("key ring"))?;
        let rotation = ring.rotation();
        ring.held_epochs()
            .into_iter()
            .filter(|e| rotation.retire_at(*e) > now)
            .filter_map(|e| ring.key(e).map(|k| (e, *k.public(), rotation.retire_at(e))))
            .collect()
    };
    for (epoch, public, not_after_ms) in held {
        let stored = r
            .keydir
            .entry(&r.identity, epoch)
            .await
            .map_err(BusError::keys)?;
        let found = match stored {
            None => "no entry".to_string(),
            Some(Err(junk)) => junk,
            Some(Ok(entry)) => match usable(r, &entry, epoch, &public, not_after_ms, now) {
                Ok(()) => continue,
                Err(why) => why,
            },
        };
        let entry = r
            .signer
            .sign(epoch, not_after_ms, &public)
            .map_err(BusError::keys)?;
        r.keydir
            .put(&r.identity, &entry)
            .await
            .map_err(BusError::keys)?;
        let key = ozone_bus_schemas::streams::key_entry_key(&r.identity, epoch);
        tracing::warn!(identity = %r.identity, %key, "key-directory entry put again (found {found})");
        let _ = r
            .audit
            .try_send(AuditKind::DirectoryEntryRestored { key, found });
    }
    Ok(())
}

/// Whether a stored entry is the one a follower would accept for this key: ours, for this
/// epoch and key, and verifying against the trusted certificates. (Entries are signed with a
/// random nonce, so a sibling process of the same service stores other bytes for the same
/// key; comparing bytes would make siblings overwrite each other forever.)
fn usable(
    r: &Rotator,
    entry: &DirectoryEntry,
    epoch: u64,
    public: &ozone_security::envelope::PublicKey,
    not_after_ms: u64,
    now: u64,
) -> Result<(), String> {
    if entry.service != r.identity.directory_name()
        || entry.epoch != epoch
        || entry.public != *public.as_bytes()
        || entry.not_after_ms != not_after_ms
    {
        return Err(format!("another key under it (epoch {})", entry.epoch));
    }
    r.trust
        .verify(entry, now)
        .map(|_| ())
        .map_err(|e| format!("an entry that does not verify ({e})"))
}

/// Brings the ring to now and acts on what changed. "Rotated" is judged by the key the sealer
/// uses, not by the epoch moving in this call, so a rotation whose publication failed (the
/// server restarting at the boundary) is retried at the next step instead of forgotten.
async fn step(r: &Rotator) -> Result<(), BusError> {
    let now = now_ms();
    let sealing_with = r
        .keys
        .sealer
        .lock()
        .map_err(|_| BusError::Poisoned("sealer"))?
        .sender_key()
        .kid();
    let (erased, pending) = {
        let mut ring = r
            .keys
            .ring
            .write()
            .map_err(|_| BusError::Poisoned("key ring"))?;
        let before = ring.held_epochs();
        let erased = ring.advance(now).map_err(BusError::keys)?;
        if ring.held_epochs() != before {
            keyring_file::save(&r.home, &r.identity, &ring).map_err(BusError::keys)?;
        }
        let pending = ring
            .current()
            .filter(|k| k.public().kid() != sealing_with)
            .map(|k| (ring.current_epoch(), k.duplicate(), ring.rotation()));
        (erased, pending)
    };
    let rotated = pending.is_some();
    if let Some((epoch, key, rotation)) = pending {
        let public = *key.public();
        let entry = r
            .signer
            .sign(epoch, rotation.retire_at(epoch), &public)
            .map_err(BusError::keys)?;
        // Publish before sealing with the new key, so receivers can already verify it.
        r.keydir
            .put(&r.identity, &entry)
            .await
            .map_err(BusError::keys)?;
        let sealer = Sealer::new(&r.identity.name, key, SessionLimits::default());
        *r.keys
            .sealer
            .lock()
            .map_err(|_| BusError::Poisoned("sealer"))? = sealer;
        let _ = r.audit.try_send(AuditKind::KeyRotated {
            epoch,
            key_id: public.kid().to_string(),
            erased_epochs: erased.clone(),
        });
    }
    if !rotated && !erased.is_empty() {
        let _ = r.audit.try_send(AuditKind::KeysErased {
            epochs: erased.clone(),
        });
    }
    for e in erased {
        if let Err(err) = r.keydir.erase(&r.identity, e).await {
            tracing::warn!("{err}");
        }
    }
    Ok(())
}
