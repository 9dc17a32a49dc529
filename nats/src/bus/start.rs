//! Joining the bus as a service: load the key ring, publish this epoch's signed key, follow
//! everyone else's, and keep rotating.

use super::handle::TaskGuard;
use super::rotation::{self, Rotator};
use super::{now_ms, Bus, BusError, BusKeys};
use crate::{Connection, KeyDirectory};
use ozone_security::envelope::{keyring_file, Rotation};
use ozone_security::keydir::{Directory, DirectoryTrust, ServiceSigner};
use ozone_security::Home;
use std::sync::{Arc, RwLock};

impl Bus {
    /// Starts a component's (or an operator's) bus over `conn`: its ring from
    /// `security/keys/<stem>.keyring`
    /// (created on first start), its current key signed into the key directory, the
    /// directory followed in the background, and rotation every `rotation.interval_ms`.
    pub async fn start(conn: Connection, home: &Home, rotation: Rotation) -> Result<Bus, BusError> {
        Self::join(conn, home, rotation, true).await
    }

    /// [`Bus::start`] for a second handle of a component whose own process also runs (the
    /// supervisor's, which announces the process's death on its behalf): it follows the key
    /// directory and rotates like the component, but leaves auditing what the directory and
    /// the rotation do to the component itself — else every rejected entry and every rotation
    /// would be reported twice under the component's name.
    pub async fn start_announcer(
        conn: Connection,
        home: &Home,
        rotation: Rotation,
    ) -> Result<Bus, BusError> {
        Self::join(conn, home, rotation, false).await
    }

    async fn join(
        conn: Connection,
        home: &Home,
        rotation: Rotation,
        audits_keys: bool,
    ) -> Result<Bus, BusError> {
        let identity = conn.identity.clone();
        if !identity.is_member() {
            return Err(BusError::keys(format!(
                "{identity} does not join the bus (only components and operators hold key rings)"
            )));
        }
        // An operator has no audit subjects: what its follower refuses, the components
        // following the same directory report.
        let audits_keys = audits_keys && identity.as_component().is_some();
        let now = now_ms();
        let ring =
            keyring_file::load_or_create(home, &identity, rotation, now).map_err(BusError::keys)?;
        let signer = ServiceSigner::load(home, &identity).map_err(BusError::keys)?;
        let trust = DirectoryTrust::load(home)
            .map_err(BusError::keys)?
            .with_rotation(rotation);
        let keydir = KeyDirectory::open(&conn.client)
            .await
            .map_err(BusError::keys)?;
        let epoch = ring.current_epoch();
        let public = *ring
            .current()
            .ok_or_else(|| BusError::keys("the key ring holds no current key"))?
            .public();
        let entry = signer
            .sign(epoch, ring.rotation().retire_at(epoch), &public)
            .map_err(BusError::keys)?;
        keydir
            .put(&identity, &entry)
            .await
            .map_err(BusError::keys)?;
        let directory = Arc::new(RwLock::new(Directory::default()));
        let keys = BusKeys::new(ring, directory.clone())
            .ok_or_else(|| BusError::keys("the key ring holds no current key"))?;
        let bus = Bus::new(conn, keys);
        let audit = if audits_keys {
            bus.audit_sender()
                .ok_or_else(|| BusError::keys("no audit channel"))?
        } else {
            // Nobody receives: what would be reported here, the component reports itself.
            tokio::sync::mpsc::channel(1).0
        };
        let follower = keydir
            .follow(trust.clone(), directory, audit.clone())
            .await
            .map_err(BusError::keys)?;
        let rotator = Rotator {
            home: home.clone(),
            identity,
            signer,
            keydir,
            keys: bus.keys().clone(),
            audit,
            trust,
        };
        let driver = tokio::spawn(rotation::drive(rotator));
        Ok(bus.with_tasks(TaskGuard(vec![follower, driver])))
    }
}
