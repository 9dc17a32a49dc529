//! A component's life: connect, join the bus, register for discovery, wait for the earlier
//! phases, serve while they stay ready, stop cleanly on SIGTERM.

use crate::announce::{new_instance_id, Announcer};
use crate::args::Args;
use crate::capability::{Capability, Serving, StatsSlot};
use crate::view::{ensure_phase_stream, PhaseView};
use async_nats::service::ServiceExt;
use clap::Parser;
use futures::StreamExt;
use ozone_bus_schemas::phase::{ComponentState, PhaseTransition, Ping, PingReply, HEARTBEAT_MS};
use ozone_bus_schemas::{AuditKind, Component, Identity, Subject};
use ozone_nats::bus::{now_ms, Bus, BusError};
use ozone_nats::NatsSettings;
use ozone_security::{tls, Home, SecurityConfig};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// What a component binary declares about itself.
#[derive(Debug, Clone, Copy)]
pub struct ComponentSpec {
    pub component: Component,
    pub version: &'static str,
    pub description: &'static str,
}

/// Why a component stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{component}: timed out after {waited:?} waiting for {}", names(.waiting_for))]
    DependencyTimeout {
        component: Component,
        waited: Duration,
        waiting_for: Vec<Component>,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn names(cs: &[Component]) -> String {
    cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// The components this one needs ready before it serves: every one of an earlier phase.
pub fn dependencies(c: Component) -> Vec<Component> {
    Component::ALL
        .into_iter()
        .filter(|d| d.phase() < c.phase())
        .collect()
}

/// The whole binary: parse arguments, run, map the outcome to an exit code (2: a dependency
/// never became ready).
pub fn main(spec: ComponentSpec) -> ExitCode {
    main_with(spec, Args::parse(), None)
}

/// [`main`] for a component with its own endpoints (and its own arguments, parsed by the
/// caller with [`Args`] flattened in).
pub fn main_with(
    spec: ComponentSpec,
    args: Args,
    capability: Option<Box<dyn Capability>>,
) -> ExitCode {
    let runtime = match args.async_threads.unwrap_or(0) {
        0 => tokio::runtime::Runtime::new(),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(spec, args, capability)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ RunError::DependencyTimeout { .. }) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(
    spec: ComponentSpec,
    args: Args,
    capability: Option<Box<dyn Capability>>,
) -> Result<(), RunError> {
    let c = spec.component;
    let home = args
        .home
        .clone()
        .map(Home::new)
        .unwrap_or_else(Home::from_env);
    crate::logging::init(&home, c.name(), args.log_format, args.log_stderr)?;
    let started = Instant::now();
    let cfg = SecurityConfig::load(&home, &[]).map_err(anyhow::Error::from)?;
    let settings = NatsSettings::load(&home).map_err(anyhow::Error::from)?;
    let id = Identity::component(c);
    let conn = ozone_nats::connect(
        &settings.url(),
        &id,
        tls::client_config(&home, &cfg, &id).map_err(anyhow::Error::from)?,
    )
    .await
    .map_err(anyhow::Error::from)?;
    let rotation = cfg.rotation();
    let bus = Bus::start(conn.clone(), &home, rotation)
        .await
        .map_err(anyhow::Error::from)?;
    ensure_phase_stream(&conn.client)
        .await
        .map_err(anyhow::Error::from)?;
    let instance = new_instance_id();
    let announcer = Announcer::new(
        bus.clone(),
        c,
        instance.clone(),
        spec.version,
        std::process::id(),
    );
    // Listen first, then say "starting": peers answer a newcomer with a heartbeat at once.
    let (mut view, _follower) = PhaseView::follow(&bus).await.map_err(anyhow::Error::from)?;
    announcer
        .announce(ComponentState::Starting)
        .await
        .map_err(anyhow::Error::from)?;
    let beating = {
        let a = announcer.clone();
        let newcomer = view.newcomer.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(HEARTBEAT_MS));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = newcomer.notified() => {}
                }
                if let Err(e) = a.beat().await {
                    tracing::warn!("heartbeat: {e}");
                }
            }
        })
    };
    let stats = StatsSlot::default();
    let service = conn
        .client
        .service_builder()
        .description(spec.description)
        .stats_handler({
            let stats = stats.clone();
            move |endpoint, _| stats.data(&endpoint)
        })
        .start(c.name(), spec.version)
        .await
        .map_err(|e| anyhow::anyhow!("cannot register the {c} micro-service: {e}"))?;
    let mut pings = service
        .group(c.token())
        .endpoint("ping")
        .await
        .map_err(|e| anyhow::anyhow!("cannot add the ping endpoint: {e}"))?;
    tracing::info!(%instance, "connected; waiting for the earlier phases");

    // Stop requests are honoured while waiting too (announce `stopped`, drain).
    let mut term = signal(SignalKind::terminate()).map_err(anyhow::Error::from)?;
    let mut int = signal(SignalKind::interrupt()).map_err(anyhow::Error::from)?;
    // Wait for the earlier phases.
    let deps = dependencies(c);
    let deadline = tokio::time::Instant::now() + args.wait_timeout;
    loop {
        let missing = view.missing(&deps);
        if missing.is_empty() {
            break;
        }
        announcer
            .announce(ComponentState::Waiting {
                on: missing.iter().map(|d| d.name().to_string()).collect(),
            })
            .await
            .map_err(anyhow::Error::from)?;
        tokio::select! {
            _ = view.changed() => {}
            _ = term.recv() => return stop(&announcer, beating, service, &conn).await,
            _ = int.recv() => return stop(&announcer, beating, service, &conn).await,
            _ = tokio::time::sleep_until(deadline) => {
                let err = RunError::DependencyTimeout { component: c, waited: args.wait_timeout, waiting_for: missing };
                let _ = announcer.announce(ComponentState::Failed { reason: err.to_string() }).await;
                beating.abort();
                let _ = conn.client.flush().await;
                return Err(err);
            }
        }
    }
    let serving = match capability {
        Some(cap) => {
            let serving = Serving {
                component: c,
                bus: bus.clone(),
                service: &service,
                instance: instance.clone(),
                home: home.clone(),
                stats: stats.clone(),
            };
            match cap.start(serving).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    let reason = format!("{e:#}");
                    let _ = announcer.announce(ComponentState::Failed { reason }).await;
                    beating.abort();
                    let _ = conn.client.flush().await;
                    return Err(e.into());
                }
            }
        }
        None => Vec::new(),
    };
    let _serving = AbortOnDrop(serving);
    announcer
        .announce(ComponentState::Ready)
        .await
        .map_err(anyhow::Error::from)?;
    tracing::info!(elapsed = ?started.elapsed(), "ready");
    let mut transitions = TransitionTracker::default();
    if c == Component::Core {
        transitions.update(&bus, &view).await;
    }

    loop {
        tokio::select! {
            _ = view.changed() => {
                let missing = view.missing(&deps);
                let state = if missing.is_empty() {
                    ComponentState::Ready
                } else {
                    ComponentState::Waiting { on: missing.iter().map(|d| d.name().to_string()).collect() }
                };
                if let Err(e) = announcer.announce(state).await {
                    tracing::warn!("announce: {e}");
                }
                if c == Component::Core {
                    transitions.update(&bus, &view).await;
                }
            }
            req = pings.next() => {
                let Some(req) = req else { break };
                answer_ping(&bus, c, &announcer, &view, &deps, &req.message).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    stop(&announcer, beating, service, &conn).await
}

/// Stops the capability's tasks however `run` ends.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Announces `stopped`, stops serving and flushes what was published. (Flush, not drain: a
/// drained connection makes async-nats's ordered consumers — the phase view, the key
/// directory follower — panic as they try to recreate themselves; the process exits next.)
async fn stop(
    announcer: &Announcer,
    beating: tokio::task::JoinHandle<()>,
    service: async_nats::service::Service,
    conn: &ozone_nats::Connection,
) -> Result<(), RunError> {
    tracing::info!("stopping");
    let _ = announcer.announce(ComponentState::Stopped).await;
    beating.abort();
    let _ = service.stop().await;
    let _ = conn.client.flush().await;
    Ok(())
}

/// Serves the lifecycle ping: a pong only while every dependency is ready.
async fn answer_ping(
    bus: &Bus,
    c: Component,
    announcer: &Announcer,
    view: &PhaseView,
    deps: &[Component],
    msg: &async_nats::Message,
) {
    // Refusals are audited by the bus, like any other request's.
    let req = match bus.open_request::<Ping>(msg).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("ping refused: {e}");
            return;
        }
    };
    // A ping names its sender; it must be the one that sealed it.
    let claimed = match &req.message {
        Ok(ping) if ping.from == *req.sender => None,
        Ok(ping) => Some(format!("names {} as its sender", ping.from)),
        Err(detail) => Some(detail.clone()),
    };
    if let Some(detail) = claimed {
        let refused = BusError::Invalid {
            subject: req.subject.to_string(),
            detail,
        };
        tracing::warn!("ping refused: {refused}");
        bus.audit(AuditKind::MessageRejected {
            subject: req.subject.to_string(),
            reason: refused.to_string(),
            claimed_sender: Some(req.sender.to_string()),
        });
        return;
    }
    let missing = view.missing(deps);
    let reply = if missing.is_empty() && announcer.is_ready() {
        PingReply::Pong {
            component: c.name().to_string(),
            instance: announcer.instance().to_string(),
            served_at_ms: now_ms(),
        }
    } else {
        PingReply::NotReady {
            component: c.name().to_string(),
            waiting_on: missing.iter().map(|d| d.name().to_string()).collect(),
        }
    };
    if let Err(e) = bus.reply(&req, &reply).await {
        tracing::warn!("ping reply: {e}");
    }
}

/// The core announces each phase becoming ready or losing readiness.
#[derive(Debug, Default)]
struct TransitionTracker {
    ready: [bool; 4],
}

impl TransitionTracker {
    async fn update(&mut self, bus: &Bus, view: &PhaseView) {
        for phase in 0..4u8 {
            let members: Vec<Component> = Component::ALL
                .into_iter()
                .filter(|c| c.phase() == phase)
                .collect();
            let ready = view.missing(&members).is_empty();
            if ready != self.ready[phase as usize] {
                self.ready[phase as usize] = ready;
                let t = PhaseTransition {
                    component: Component::Core.name().to_string(),
                    phase,
                    ready,
                    at_ms: now_ms(),
                };
                if let Err(e) = bus.publish(&Subject::phase_transitions(), &t).await {
                    tracing::warn!("phase transition: {e}");
                }
            }
        }
    }
}
