//! A service's rotating X25519 keys: one key per epoch (24 h by default), derived from a
//! one-way chain so every worker of the service computes the same key without coordination,
//! and an erased key can never be derived again.
//!
//! ```text
//! chain[n+1] = HKDF-SHA256(salt = "ozone/keyring/v1", ikm = chain[n], info = "chain" ‖ service)
//! secret[n]  = HKDF-SHA256(salt = "ozone/keyring/v1", ikm = chain[n], info = "x25519" ‖ service ‖ n)
//! ```
//! The ring keeps the chain at the current epoch only, plus the derived secrets of epochs whose
//! grace window is still open. Forward secrecy: someone who steals the ring at time t learns
//! the keys of the current epoch and of epochs still in grace, so at most `interval + grace`
//! of past traffic; earlier epochs cannot be recomputed because HKDF is one-way.

use super::{EnvelopeError, KeyId, SecretKeyPair};
use ring::hkdf;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const SALT: &[u8] = b"ozone/keyring/v1";

/// An epoch and its X25519 secret, as persisted.
pub(crate) type HeldSecret = (u64, Zeroizing<[u8; 32]>);

/// Rotation timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Epoch 0 starts here (Unix ms); epochs are aligned to it.
    pub origin_ms: u64,
    pub interval_ms: u64,
    /// How long after its epoch ends a key still opens messages (in flight, retained,
    /// or sealed by a sender whose directory view lags).
    pub grace_ms: u64,
}

impl Rotation {
    pub fn daily() -> Rotation {
        Rotation {
            origin_ms: 0,
            interval_ms: 24 * 3600 * 1000,
            grace_ms: 3600 * 1000,
        }
    }

    pub fn epoch_at(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.origin_ms) / self.interval_ms.max(1)
    }

    pub fn epoch_start(&self, epoch: u64) -> u64 {
        self.origin_ms + epoch * self.interval_ms
    }

    /// Last instant (exclusive) at which an epoch's key may still open messages.
    pub fn retire_at(&self, epoch: u64) -> u64 {
        self.epoch_start(epoch + 1) + self.grace_ms
    }
}

fn expand(chain: &[u8; 32], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(chain);
    let mut out = Zeroizing::new([0u8; 32]);
    // HKDF-Expand to 32 bytes cannot fail (limit is 255 × 32).
    if let Ok(okm) = prk.expand(info, Len32) {
        let _ = okm.fill(out.as_mut());
    }
    out
}

/// The keys one service holds right now.
pub struct KeyRing {
    service: String,
    rotation: Rotation,
    chain: Zeroizing<[u8; 32]>,
    chain_epoch: u64,
    keys: BTreeMap<u64, SecretKeyPair>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyRing({}, epochs {:?}, secrets redacted)",
            self.service,
            self.keys.keys().collect::<Vec<_>>()
        )
    }
}

impl KeyRing {
    /// Starts a ring from a chain secret valid at `epoch` (a fresh random one for a new
    /// service, or the state another worker saved).
    pub fn from_chain(service: &str, rotation: Rotation, chain: [u8; 32], epoch: u64) -> KeyRing {
        KeyRing {
            service: service.to_string(),
            rotation,
            chain: Zeroizing::new(chain),
            chain_epoch: epoch,
            keys: BTreeMap::new(),
        }
    }

    fn secret_for(&self, epoch: u64) -> Result<SecretKeyPair, EnvelopeError> {
        let e = epoch.to_be_bytes();
        SecretKeyPair::from_secret(*expand(
            &self.chain,
            &[b"x25519", self.service.as_bytes(), &e],
        ))
    }

    /// Brings the ring to `now_ms`: derives keys up to the current epoch, advances the chain,
    /// and erases every key whose grace window has closed. Returns the epochs it erased.
    pub fn advance(&mut self, now_ms: u64) -> Result<Vec<u64>, EnvelopeError> {
        let current = self.rotation.epoch_at(now_ms);
        while self.chain_epoch <= current {
            if self.rotation.retire_at(self.chain_epoch) > now_ms {
                let key = self.secret_for(self.chain_epoch)?;
                self.keys.insert(self.chain_epoch, key);
            }
            if self.chain_epoch == current {
                break;
            }
            self.chain = expand(&self.chain, &[b"chain", self.service.as_bytes()]);
            self.chain_epoch += 1;
        }
        let retired: Vec<u64> = self
            .keys
            .keys()
            .copied()
            .filter(|e| self.rotation.retire_at(*e) <= now_ms)
            .collect();
        for e in &retired {
            // Dropping a SecretKeyPair zeroizes its secret.
            self.keys.remove(e);
        }
        Ok(retired)
    }

    /// The key senders should seal to now (the newest epoch held).
    pub fn current(&self) -> Option<&SecretKeyPair> {
        self.keys.values().next_back()
    }

    pub fn current_epoch(&self) -> u64 {
        self.chain_epoch
    }

    /// Epochs whose secrets are in memory.
    pub fn held_epochs(&self) -> Vec<u64> {
        self.keys.keys().copied().collect()
    }

    /// The key of `epoch`, if held.
    pub fn key(&self, epoch: u64) -> Option<&SecretKeyPair> {
        self.keys.get(&epoch)
    }

    pub fn find(&self, kid: &KeyId) -> Option<&SecretKeyPair> {
        self.keys.values().find(|k| k.public().kid() == *kid)
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// The state to persist: chain epoch, chain, and (epoch, secret) of the keys still held.
    pub(crate) fn export(&self) -> (u64, Zeroizing<[u8; 32]>, Vec<HeldSecret>) {
        let held = self
            .keys
            .iter()
            .map(|(e, k)| (*e, Zeroizing::new(*k.secret_bytes())))
            .collect();
        (self.chain_epoch, Zeroizing::new(*self.chain), held)
    }

    /// Rebuilds a ring from [`KeyRing::export`]ed state.
    pub(crate) fn import(
        service: &str,
        rotation: Rotation,
        chain: [u8; 32],
        chain_epoch: u64,
        held: Vec<HeldSecret>,
    ) -> Result<KeyRing, EnvelopeError> {
        let mut ring = KeyRing::from_chain(service, rotation, chain, chain_epoch);
        for (epoch, secret) in held {
            ring.keys
                .insert(epoch, SecretKeyPair::from_secret(*secret)?);
        }
        Ok(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    #[test]
    fn workers_derive_the_same_keys_and_erased_keys_stay_erased() {
        let r = Rotation {
            origin_ms: 0,
            interval_ms: DAY,
            grace_ms: 3600 * 1000,
        };
        let mut a = KeyRing::from_chain("spark", r, [1; 32], 0);
        let mut b = KeyRing::from_chain("spark", r, [1; 32], 0);
        a.advance(0).unwrap();
        b.advance(3 * DAY + 10).unwrap(); // started later, catches up
        a.advance(3 * DAY + 10).unwrap();
        assert_eq!(
            a.current().map(|k| *k.public()),
            b.current().map(|k| *k.public())
        );
        assert_eq!(
            a.held_epochs(),
            vec![2, 3],
            "epoch 2 still in its grace hour"
        );
        a.advance(3 * DAY + 3600 * 1000).unwrap();
        assert_eq!(a.held_epochs(), vec![3]);
        // Another service with the same chain secret gets different keys.
        let mut c = KeyRing::from_chain("cognis", r, [1; 32], 0);
        c.advance(3 * DAY + 10).unwrap();
        assert_ne!(
            c.current().map(|k| *k.public()),
            a.current().map(|k| *k.public())
        );
    }
}
