//! What a component does beyond the lifecycle: its own endpoints, started once its
//! dependencies are ready and before it announces `ready` (so `ready` means "serving").

use crate::view::PhaseView;
use futures::future::BoxFuture;
use ozone_bus_schemas::Component;
use ozone_nats::bus::Bus;
use ozone_security::Home;
use std::sync::{Arc, Mutex};

/// Per-endpoint custom data for the micro-service's `$SRV.STATS` answer.
pub type StatsFn = Box<dyn Fn(&str) -> serde_json::Value + Send + Sync>;

/// Where a capability installs its stats function (the runtime registers the micro-service
/// before the capability starts, so it asks this slot on each `$SRV.STATS`).
#[derive(Clone, Default)]
pub struct StatsSlot(Arc<Mutex<Option<StatsFn>>>);

impl std::fmt::Debug for StatsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsSlot")
    }
}

impl StatsSlot {
    pub fn set(&self, f: StatsFn) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(f);
        }
    }

    pub(crate) fn data(&self, endpoint: &str) -> serde_json::Value {
        match self.0.lock() {
            Ok(slot) => slot.as_ref().map(|f| f(endpoint)).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }
}

/// What a capability gets to start with.
#[derive(Debug)]
pub struct Serving<'a> {
    pub component: Component,
    pub bus: Bus,
    /// The component's micro-service: add endpoints here (they join its queue group).
    pub service: &'a async_nats::service::Service,
    /// This process's instance id (as in its phase announcements).
    pub instance: String,
    pub home: Home,
    pub stats: StatsSlot,
    /// Who is ready, as this component sees it (`changed()` wakes on every change).
    pub view: PhaseView,
}

/// A component's own work. `start` sets up (loads, subscribes) and returns the tasks that
/// serve; the runtime aborts them when the component stops.
pub trait Capability: Send + 'static {
    fn start<'a>(
        self: Box<Self>,
        serving: Serving<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>>;
}
