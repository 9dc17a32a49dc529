//! The verified keys of every service, as senders seal to them and openers check them.

use super::entry::*;
use super::trust::*;
use crate::envelope::{EnvelopeError, KeyId, PublicKey, SenderKeys};
use std::collections::HashMap;

/// A verified key: its epoch, the key, when it stops opening anything, and the serial of the
/// certificate that vouched for it (checked again when revocations change).
#[derive(Debug, Clone)]
struct Published {
    epoch: u64,
    key: PublicKey,
    not_after_ms: u64,
    serial: String,
}

type FastHash = foldhash::fast::RandomState;

/// The verified keys of every service; bad entries never get in.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    /// service → key id → key. Nested so a lookup by `&str` allocates nothing (it runs for
    /// every message opened); hashed with foldhash, since only verified entries get in.
    keys: HashMap<String, HashMap<KeyId, Published, FastHash>, FastHash>,
    /// Bumped on every change, so callers can cache lookups.
    generation: u64,
}

impl Directory {
    /// Verifies and adds an entry; the error says why it was ignored.
    pub fn insert(
        &mut self,
        trust: &DirectoryTrust,
        entry: &DirectoryEntry,
        now_ms: u64,
    ) -> Result<KeyId, DirectoryError> {
        let (key, serial) = trust.verify_entry(entry, now_ms)?;
        self.generation += 1;
        let keys = self.keys.entry(entry.service.clone()).or_default();
        // One key per service and epoch: a re-published epoch (a recreated ring) replaces it.
        keys.retain(|kid, p| p.epoch != entry.epoch || *kid == key.kid());
        keys.insert(
            key.kid(),
            Published {
                epoch: entry.epoch,
                key,
                not_after_ms: entry.not_after_ms,
                serial,
            },
        );
        Ok(key.kid())
    }

    /// Forgets every key whose certificate `trust` now holds revoked; returns each dropped
    /// (service, epoch). A revoked service's keys then neither authenticate its messages nor
    /// receive new ones, even before their entries expire or leave the bucket.
    pub fn drop_revoked(&mut self, trust: &DirectoryTrust, now_ms: u64) -> Vec<(String, u64)> {
        let mut dropped = Vec::new();
        for (service, keys) in &mut self.keys {
            keys.retain(|_, p| {
                let revoked = trust.is_revoked(&p.serial, now_ms);
                if revoked {
                    dropped.push((service.clone(), p.epoch));
                }
                !revoked
            });
        }
        if !dropped.is_empty() {
            self.generation += 1;
        }
        dropped.sort();
        dropped
    }

    /// Forgets a service's key of one epoch (its entry was deleted from the bucket).
    pub fn remove(&mut self, service: &str, epoch: u64) -> bool {
        let Some(keys) = self.keys.get_mut(service) else {
            return false;
        };
        let before = keys.len();
        keys.retain(|_, p| p.epoch != epoch);
        self.generation += 1;
        before != keys.len()
    }

    /// The service that published key `kid` (a compact envelope names its sender by key id
    /// alone; the session's record, authenticated by HPKE, then names the sender).
    pub fn service_of(&self, kid: &KeyId) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, keys)| keys.contains_key(kid))
            .map(|(service, _)| service.as_str())
    }

    /// Changes with every insert or removal.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the earliest of these keys stops being current (its entry's `not_after_ms`).
    pub fn expiry_of(&self, service: &str, key: &PublicKey) -> Option<u64> {
        self.keys
            .get(service)?
            .get(&key.kid())
            .map(|p| p.not_after_ms)
    }

    /// The current key of every auditor: audit events are sealed to all of them.
    pub fn auditors(&self, now_ms: u64) -> Vec<PublicKey> {
        let mut names: Vec<&String> = self
            .keys
            .keys()
            .filter(|s| s.starts_with(AUDITOR_PREFIX))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|s| self.current(s, now_ms))
            .collect()
    }

    /// The newest unexpired key of a service: what senders seal to.
    pub fn current(&self, service: &str, now_ms: u64) -> Option<PublicKey> {
        self.keys
            .get(service)?
            .values()
            .filter(|p| p.not_after_ms > now_ms)
            .max_by_key(|p| p.epoch)
            .map(|p| p.key)
    }
}

impl SenderKeys for Directory {
    /// A key past its entry's `not_after_ms` (its epoch's end plus grace) authenticates
    /// nothing, even while a sender that died before erasing it leaves its entry behind: a key
    /// stolen later cannot speak for its service.
    fn sender_key(
        &self,
        sender: &str,
        kid: &KeyId,
        now_ms: u64,
    ) -> Result<PublicKey, EnvelopeError> {
        let published = self
            .keys
            .get(sender)
            .and_then(|keys| keys.get(kid))
            .ok_or_else(|| EnvelopeError::UnknownSender {
                sender: sender.to_string(),
                kid: kid.to_string(),
            })?;
        if published.not_after_ms <= now_ms {
            return Err(EnvelopeError::SenderKeyExpired {
                sender: sender.to_string(),
                kid: kid.to_string(),
                not_after_ms: published.not_after_ms,
            });
        }
        Ok(published.key)
    }
}
