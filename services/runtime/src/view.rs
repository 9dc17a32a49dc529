//! What a component knows about the others: their last announced state and whether they are
//! still alive (heartbeats), kept current from the bus.

use ozone_bus_schemas::phase::{
    ComponentState, Heartbeat, Instances, PhaseEvent, HEARTBEAT_STALE_MS,
};
use ozone_bus_schemas::{Component, Subject};
use ozone_nats::bus::{Bus, BusError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One component: its instances' announced states and their last heartbeats (whether each
/// said ready, when it arrived).
#[derive(Debug, Clone, Default)]
struct Known {
    states: Instances,
    beats: HashMap<String, (bool, Instant)>,
}

impl Known {
    /// Some instance has a fresh heartbeat saying ready, and its last announced state (if we
    /// have it) is ready too.
    fn ready(&self) -> bool {
        self.beats.iter().any(|(instance, (ready, at))| {
            *ready
                && at.elapsed() < Duration::from_millis(HEARTBEAT_STALE_MS)
                && self
                    .states
                    .by_instance
                    .get(instance)
                    .is_none_or(|e| e.state == ComponentState::Ready)
        })
    }
}

/// The ecosystem as this component sees it.
#[derive(Debug, Clone)]
pub struct PhaseView {
    known: Arc<Mutex<HashMap<Component, Known>>>,
    changed: watch::Receiver<u64>,
    /// Signalled when another instance announces `starting`: it has just subscribed and
    /// should hear everyone's state at once, not at their next heartbeat.
    pub newcomer: Arc<tokio::sync::Notify>,
}

/// Creates the retained phase stream if absent (`ozone_nats::phase_stream`).
pub async fn ensure_phase_stream(client: &async_nats::Client) -> Result<(), BusError> {
    ozone_nats::phase_stream::ensure(client)
        .await
        .map_err(BusError::nats)
}

impl PhaseView {
    /// Starts following phase events and heartbeats, then loads the retained states (a live
    /// event always wins over a retained one).
    pub async fn follow(bus: &Bus) -> Result<(PhaseView, tokio::task::JoinHandle<()>), BusError> {
        let known: Arc<Mutex<HashMap<Component, Known>>> = Arc::default();
        let (tx, rx) = watch::channel(0u64);
        let mut phases = bus
            .subscribe::<PhaseEvent>(&Subject::phase_all(), None)
            .await?;
        let mut beats = bus
            .subscribe::<Heartbeat>(&Subject::heartbeat_all(), None)
            .await?;
        load_retained(bus, &known).await;
        let k = known.clone();
        let newcomer = Arc::new(tokio::sync::Notify::new());
        let greet = newcomer.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                let bump = tokio::select! {
                    ev = phases.next() => match ev {
                        // Only a component speaks for itself (the supervisor does so as that
                        // component): the authenticated sender must match the payload.
                        Some(Ok(ev)) if *ev.sender != *ev.message.component => {
                            tracing::warn!(sender = %ev.sender, claims = %ev.message.component, "phase event in another component's name ignored");
                            false
                        }
                        Some(Ok(ev)) => {
                            if ev.message.state == ComponentState::Starting {
                                greet.notify_one();
                            }
                            if let Some(c) = Component::from_name(&ev.message.component) {
                                if let Ok(mut k) = k.lock() {
                                    k.entry(c).or_default().states.apply(ev.message);
                                }
                            }
                            true
                        }
                        Some(Err(e)) => { tracing::warn!("phase event refused: {e}"); false }
                        None => break,
                    },
                    hb = beats.next() => match hb {
                        Some(Ok(hb)) if *hb.sender != *hb.message.component => {
                            tracing::warn!(sender = %hb.sender, claims = %hb.message.component, "heartbeat in another component's name ignored");
                            false
                        }
                        Some(Ok(hb)) => {
                            let m = hb.message;
                            match Component::from_name(&m.component) {
                                Some(c) => {
                                    let mut k = match k.lock() { Ok(k) => k, Err(_) => break };
                                    let beats = &mut k.entry(c).or_default().beats;
                                    let changed = beats.get(&m.instance).is_none_or(|(r, _)| *r != m.ready);
                                    beats.insert(m.instance, (m.ready, Instant::now()));
                                    changed
                                }
                                None => false,
                            }
                        }
                        Some(Err(e)) => { tracing::warn!("heartbeat refused: {e}"); false }
                        None => break,
                    },
                    // Liveness expires without any message: re-evaluate regularly.
                    _ = tick.tick() => true,
                };
                if bump {
                    tx.send_modify(|v| *v += 1);
                }
            }
        });
        Ok((
            PhaseView {
                known,
                changed: rx,
                newcomer,
            },
            task,
        ))
    }

    /// Whether `c` is ready now: some instance's last announced state is ready (or unknown)
    /// and a fresh heartbeat of that instance says so.
    pub fn is_ready(&self, c: Component) -> bool {
        let Ok(k) = self.known.lock() else {
            return false;
        };
        k.get(&c).is_some_and(Known::ready)
    }

    /// Which of `deps` are not ready.
    pub fn missing(&self, deps: &[Component]) -> Vec<Component> {
        deps.iter()
            .copied()
            .filter(|c| !self.is_ready(*c))
            .collect()
    }

    /// Waits for the next change (an event, a heartbeat, or liveness re-evaluation).
    pub async fn changed(&mut self) -> bool {
        self.changed.changed().await.is_ok()
    }
}

/// Reads the last retained event of every component (the stream keeps one per subject).
/// Events that can no longer be opened (their keys are past grace) are skipped: heartbeats
/// fill in within a second.
async fn load_retained(bus: &Bus, known: &Mutex<HashMap<Component, Known>>) {
    let retained = match ozone_nats::phase_stream::retained(&bus.connection().client).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("retained phase states not read: {e}");
            return;
        }
    };
    for stored in retained {
        match bus.open_archived::<PhaseEvent>(&stored.as_message()) {
            Ok(ev) if *ev.sender != *ev.message.component => {}
            Ok(ev) => {
                if let (Some(c), Ok(mut k)) =
                    (Component::from_name(&ev.message.component), known.lock())
                {
                    let entry = k.entry(c).or_default();
                    if !entry.states.by_instance.contains_key(&ev.message.instance) {
                        entry.states.apply(ev.message);
                    }
                }
            }
            Err(e) => tracing::debug!("retained phase event skipped: {e}"),
        }
    }
}
