//! The key material a bus connection needs: the service's own key ring and sealer, and the
//! directory of everyone's verified public keys.

use ozone_security::envelope::{KeyRing, Opener, OpenerLimits, Sealer, SessionLimits};

use ozone_security::keydir::Directory;
use std::sync::{Arc, Mutex, RwLock};

/// Milliseconds since the Unix epoch (the envelope's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch from the kernel's coarse clock, for the per-message paths
/// (sealing, opening): it advances with the scheduler tick (1–4 ms) and costs a few
/// nanoseconds to read, where the precise clock cost ~150 ns per call in this virtual machine
/// (perf: `__vdso_clock_gettime` at 0.15 µs per message opened). What the envelope checks
/// against it is minutes (replay window) or key lifetimes with hour-long grace.
pub(crate) fn coarse_now_ms() -> u64 {
    #[cfg(target_os = "linux")]
    if let Ok(t) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE) {
        let (secs, nanos) = (t.tv_sec(), t.tv_nsec());
        if let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u64::try_from(nanos)) {
            return secs * 1000 + nanos / 1_000_000;
        }
    }
    now_ms()
}

/// Keys and crypto state of one bus connection.
#[derive(Debug, Clone)]
pub struct BusKeys {
    pub ring: Arc<RwLock<KeyRing>>,
    pub directory: Arc<RwLock<Directory>>,
    pub(crate) sealer: Arc<Mutex<Sealer>>,
    pub(crate) opener: Arc<Mutex<Opener>>,
}

impl BusKeys {
    /// `ring` must already be advanced to now. The sender key is the ring's current key.
    pub fn new(ring: KeyRing, directory: Arc<RwLock<Directory>>) -> Option<BusKeys> {
        let sender = ring.current()?;
        let sealer = Sealer::new(ring.service(), sender.duplicate(), SessionLimits::default());
        Some(BusKeys {
            ring: Arc::new(RwLock::new(ring)),
            directory,
            sealer: Arc::new(Mutex::new(sealer)),
            opener: Arc::new(Mutex::new(Opener::new(OpenerLimits::default()))),
        })
    }
}

/// Why local keys could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LocalKeysError {
    #[error(transparent)]
    Directory(#[from] ozone_security::keydir::DirectoryError),
    #[error(transparent)]
    Envelope(#[from] ozone_security::envelope::EnvelopeError),
    #[error("the system random generator failed")]
    Random,
}

/// Fresh key rings for `components` running in this one process, their entries signed with
/// each component's certificate key and verified into a directory of each component's own,
/// as separate processes hold. (Services in separate processes load their own ring and
/// receive entries through the key directory; this is for benchmarks and tests that host
/// several services in one process. One shared directory would also put one lock that every
/// component takes per message on every core, which separate processes never pay.)
pub fn local_keys(
    home: &ozone_security::Home,
    components: &[ozone_bus_schemas::Component],
) -> Result<std::collections::HashMap<ozone_bus_schemas::Component, BusKeys>, LocalKeysError> {
    use ozone_security::envelope::Rotation;
    use ozone_security::keydir::{DirectoryTrust, ServiceSigner};
    let rotation = Rotation::daily();
    let trust = DirectoryTrust::load(home)?.with_rotation(rotation);
    let mut directory = Directory::default();
    let now = now_ms();
    let mut rings = Vec::new();
    for c in components {
        let mut chain = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut chain)
            .map_err(|_| LocalKeysError::Random)?;
        let mut keyring = KeyRing::from_chain(c.name(), rotation, chain, rotation.epoch_at(now));
        keyring.advance(now)?;
        let epoch = keyring.current_epoch();
        let public = *keyring.current().ok_or(LocalKeysError::Random)?.public();
        let entry = ServiceSigner::load(home, &ozone_bus_schemas::Identity::component(*c))?.sign(
            epoch,
            rotation.retire_at(epoch),
            &public,
        )?;
        directory.insert(&trust, &entry, now)?;
        rings.push((*c, keyring));
    }
    let mut out = std::collections::HashMap::new();
    for (c, keyring) in rings {
        let own = Arc::new(RwLock::new(directory.clone()));
        out.insert(c, BusKeys::new(keyring, own).ok_or(LocalKeysError::Random)?);
    }
    Ok(out)
}
