//! A service's key ring on disk: `security/keys/<stem>.keyring`, mode 0600, rewritten through a
//! temporary file and a rename whenever the ring advances, so an erased epoch's secret leaves
//! the file in the same step it leaves memory. Workers of one service on one host share it; a
//! worker on another host gets a copy with its credentials.
//!
//! (A rename replaces the file's contents for every reader; blocks of the old file may survive
//! on the disk until reused, as with any file deletion. Full-disk encryption covers that.)

use super::{EnvelopeError, KeyRing, Rotation};
use crate::keyfile::{write_secret, KeyFileError};
use crate::Home;
use ozone_bus_schemas::Identity;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zeroize::{Zeroize, Zeroizing};

/// Why the ring file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingFileError {
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error("{path}: not a key ring ({detail}); delete it to start a new chain (peers must then fetch the new keys)")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} belongs to {found:?}, not {expected:?}")]
    WrongService {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    service: String,
    origin_ms: u64,
    interval_ms: u64,
    grace_ms: u64,
    chain_epoch: u64,
    chain: String,
    held: Vec<(u64, String)>,
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.chain.zeroize();
        for (_, s) in &mut self.held {
            s.zeroize();
        }
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn to_hex(b: &[u8; 32]) -> String {
    hex::encode(b)
}

/// The ring file of a service: in this process's own key directory when it has one
/// ([`crate::credentials::key_dir`]), else in the home's `security/keys`.
pub fn path(home: &Home, identity: &Identity) -> PathBuf {
    crate::credentials::key_dir()
        .unwrap_or_else(|| home.keys_dir())
        .join(file_name(identity))
}

fn file_name(identity: &Identity) -> String {
    format!("{}.keyring", identity.file_stem())
}

/// Destroys an identity's ring file, if any: its chain derives every future key of the
/// service, so a revoked identity's ring must not outlive the revocation (whoever stole it
/// would read what is sealed to the re-issued service), and a re-issued identity starts a
/// fresh random chain ([`load_or_create`] finds no file).
///
/// Also destroys the ring in the identity's systemd state directory, where the units of
/// `ozone install systemd` keep it.
pub fn destroy(home: &Home, identity: &Identity) -> std::io::Result<()> {
    let places = [
        path(home, identity),
        home.keys_dir().join(file_name(identity)),
        crate::credentials::systemd_state_dir(&identity.file_stem()).join(file_name(identity)),
    ];
    for file in places {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Writes the ring (chain at its epoch and the secrets still in grace).
pub fn save(home: &Home, identity: &Identity, ring: &KeyRing) -> Result<(), KeyRingFileError> {
    let r = ring.rotation();
    let (chain_epoch, chain, held) = ring.export();
    let stored = Stored {
        service: ring.service().to_string(),
        origin_ms: r.origin_ms,
        interval_ms: r.interval_ms,
        grace_ms: r.grace_ms,
        chain_epoch,
        chain: to_hex(&chain),
        held: held.iter().map(|(e, s)| (*e, to_hex(s))).collect(),
    };
    let text =
        Zeroizing::new(
            serde_json::to_string(&stored).map_err(|e| KeyRingFileError::Corrupt {
                path: path(home, identity),
                detail: e.to_string(),
            })?,
        );
    write_secret(&path(home, identity), text.as_bytes())?;
    Ok(())
}

/// Loads the ring and brings it to `now_ms` (saving if that erased or added keys), or starts a
/// new random chain when there is no file yet.
pub fn load_or_create(
    home: &Home,
    identity: &Identity,
    rotation: Rotation,
    now_ms: u64,
) -> Result<KeyRing, KeyRingFileError> {
    let file = path(home, identity);
    // The ring's sender name is the one envelopes carry and the key directory lists.
    let service = identity.directory_name();
    // Several processes of one service (SPARK workers started together) share the ring: the
    // first creates it, the others must load that one, not race to create their own.
    let lock_path = file.with_extension("keyring.lock");
    use std::os::unix::fs::OpenOptionsExt;
    let lock = std::fs::OpenOptions::new()
        .mode(0o600)
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| KeyFileError::Io {
            path: lock_path.display().to_string(),
            source: e,
        })?;
    lock.lock().map_err(|e| KeyFileError::Io {
        path: lock_path.display().to_string(),
        source: e,
    })?;
    let mut ring = match std::fs::read(&file) {
        Ok(raw) => {
            let raw = Zeroizing::new(raw);
            let corrupt = |detail: String| KeyRingFileError::Corrupt {
                path: file.clone(),
                detail,
            };
            let stored: Stored =
                serde_json::from_slice(&raw).map_err(|e| corrupt(e.to_string()))?;
            if stored.service != service {
                return Err(KeyRingFileError::WrongService {
                    path: file,
                    found: stored.service.clone(),
                    expected: service.clone(),
                });
            }
            let chain =
                Zeroizing::new(hex32(&stored.chain).ok_or_else(|| corrupt("bad chain".into()))?);
            let held = stored
                .held
                .iter()
                .map(|(e, s)| hex32(s).map(|k| (*e, Zeroizing::new(k))))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| corrupt("bad secret".into()))?;
            let rotation = Rotation {
                origin_ms: stored.origin_ms,
                interval_ms: stored.interval_ms,
                grace_ms: stored.grace_ms,
            };
            KeyRing::import(&service, rotation, *chain, stored.chain_epoch, held)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut chain = Zeroizing::new([0u8; 32]);
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), chain.as_mut())
                .map_err(|_| EnvelopeError::Random)?;
            KeyRing::from_chain(&service, rotation, *chain, rotation.epoch_at(now_ms))
        }
        Err(e) => {
            return Err(KeyFileError::Io {
                path: file.display().to_string(),
                source: e,
            }
            .into())
        }
    };
    let before = ring.held_epochs();
    ring.advance(now_ms)?;
    if ring.held_epochs() != before || !file.exists() {
        save(home, identity, &ring)?;
    }
    Ok(ring)
}
