//! What a component says about itself on the bus: its state changes (retained and audited)
//! and its heartbeat.

use ozone_bus_schemas::phase::{ComponentState, Heartbeat, PhaseEvent};
use ozone_bus_schemas::{Component, Subject};
use ozone_nats::bus::{now_ms, Bus, BusError};
use std::sync::{Arc, Mutex};

/// Announces for one component instance; remembers the last state for the heartbeat.
#[derive(Debug, Clone)]
pub struct Announcer {
    bus: Bus,
    component: Component,
    instance: String,
    version: String,
    pid: u32,
    state: Arc<Mutex<ComponentState>>,
}

/// A random id per process, so a restarted component is told from its predecessor.
pub fn new_instance_id() -> String {
    let mut b = [0u8; 6];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    hex::encode(b)
}

impl Announcer {
    pub fn new(bus: Bus, component: Component, instance: String, version: &str, pid: u32) -> Self {
        Announcer {
            bus,
            component,
            instance,
            version: version.to_string(),
            pid,
            state: Arc::new(Mutex::new(ComponentState::Starting)),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn is_ready(&self) -> bool {
        self.state
            .lock()
            .map(|s| *s == ComponentState::Ready)
            .unwrap_or(false)
    }

    /// Publishes a state change (skipped when the state is unchanged).
    pub async fn announce(&self, state: ComponentState) -> Result<(), BusError> {
        let lock_err = |_| BusError::Poisoned("component state");
        if *self.state.lock().map_err(lock_err)? == state && state != ComponentState::Starting {
            return Ok(());
        }
        tracing::info!(state = state.label(), detail = ?state, "announcing");
        let event = PhaseEvent {
            component: self.component.name().to_string(),
            phase: self.component.phase(),
            instance: self.instance.clone(),
            version: self.version.clone(),
            pid: self.pid,
            at_ms: now_ms(),
            state: state.clone(),
        };
        self.bus
            .publish(&Subject::phase_announce(self.component), &event)
            .await?;
        // Recorded only once published: a failed announcement is repeated at the next change.
        *self.state.lock().map_err(lock_err)? = state;
        // Peers count a component ready on a fresh heartbeat: send one now, not in a second.
        self.beat().await
    }

    /// Publishes one heartbeat.
    pub async fn beat(&self) -> Result<(), BusError> {
        let beat = Heartbeat {
            component: self.component.name().to_string(),
            instance: self.instance.clone(),
            ready: self.is_ready(),
            at_ms: now_ms(),
        };
        self.bus
            .publish_nowait(&Subject::heartbeat(self.component), &beat)
            .await
    }
}
