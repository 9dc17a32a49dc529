//! The core's phase transitions: it announces on `ecosystem.phase.transitions` each phase
//! becoming ready or losing readiness, as its phase view sees the phase's members.

use ozone_bus_schemas::phase::PhaseTransition;
use ozone_bus_schemas::{Component, Subject};
use ozone_nats::bus::{now_ms, Bus};
use ozone_service::{PhaseView, Serving};

/// Phases 0 to 3 of the seed.
const PHASES: usize = 4;

/// Starts announcing transitions as `serving`'s phase view sees them.
pub fn start(serving: &Serving<'_>) -> Vec<tokio::task::JoinHandle<()>> {
    let (bus, mut view) = (serving.bus.clone(), serving.view.clone());
    let task = tokio::spawn(async move {
        let mut tracker = Tracker::default();
        loop {
            tracker.update(&bus, &view).await;
            if !view.changed().await {
                break;
            }
        }
    });
    vec![task]
}

/// Which phases were last announced ready.
#[derive(Debug, Default)]
struct Tracker {
    ready: [bool; PHASES],
}

impl Tracker {
    async fn update(&mut self, bus: &Bus, view: &PhaseView) {
        for (phase, was_ready) in self.ready.iter_mut().enumerate() {
            let members: Vec<Component> = Component::ALL
                .into_iter()
                .filter(|c| usize::from(c.phase()) == phase)
                .collect();
            let ready = view.missing(&members).is_empty();
            if ready == *was_ready {
                continue;
            }
            *was_ready = ready;
            let t = PhaseTransition {
                component: Component::Core.name().to_string(),
                phase: phase as u8,
                ready,
                at_ms: now_ms(),
            };
            if let Err(e) = bus.publish(&Subject::phase_transitions(), &t).await {
                tracing::warn!("phase transition: {e}");
            }
        }
    }
}
