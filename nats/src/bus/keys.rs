//! The key material a bus connection needs: the service's own key ring and sealer, and the
//! directory of everyone's verified public keys.

use ozone_security::envelope::{Directory, KeyRing, Opener, OpenerLimits, Sealer, SessionLimits};
use std::sync::{Arc, Mutex, RwLock};

/// Milliseconds since the Unix epoch (the envelope's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
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
