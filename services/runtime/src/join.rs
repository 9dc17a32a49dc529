//! Joining the ecosystem: connect with the component's certificate, start the encrypted bus,
//! follow the phase view, say `starting`, keep a heartbeat, register the micro-service and the
//! lifecycle ping. Everything a later step needs is kept in [`Joined`].

use crate::announce::{new_instance_id, Announcer};
use crate::args::Args;
use crate::capability::StatsSlot;
use crate::run::{dependencies, ComponentSpec, RunError};
use crate::view::{ensure_phase_stream, PhaseView};
use async_nats::service::ServiceExt;
use ozone_bus_schemas::phase::{ComponentState, HEARTBEAT_MS};
use ozone_bus_schemas::{Component, Identity};
use ozone_nats::bus::Bus;
use ozone_nats::NatsSettings;
use ozone_security::{tls, Home, SecurityConfig};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// A component on the bus, announced, heard by its peers, not serving yet.
pub(crate) struct Joined {
    pub(crate) component: Component,
    pub(crate) started: Instant,
    pub(crate) home: Home,
    pub(crate) conn: ozone_nats::Connection,
    pub(crate) bus: Bus,
    pub(crate) instance: String,
    pub(crate) announcer: Announcer,
    pub(crate) view: PhaseView,
    /// Every component of an earlier phase.
    pub(crate) deps: Vec<Component>,
    pub(crate) service: async_nats::service::Service,
    pub(crate) stats: StatsSlot,
    pub(crate) pings: async_nats::service::endpoint::Endpoint,
    pub(crate) stopping: Stopping,
    beating: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("component", &self.component)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// SIGTERM and SIGINT: honoured while waiting and while serving.
#[derive(Debug)]
pub(crate) struct Stopping {
    term: Signal,
    int: Signal,
}

impl Stopping {
    fn listen() -> std::io::Result<Stopping> {
        Ok(Stopping {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves when either signal arrives.
    pub(crate) async fn requested(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

impl Joined {
    pub(crate) async fn join(spec: ComponentSpec, args: &Args) -> Result<Joined, RunError> {
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
        let tls = tls::client_config(&home, &cfg, &id).map_err(anyhow::Error::from)?;
        let conn = ozone_nats::connect(&settings.url(), &id, tls)
            .await
            .map_err(anyhow::Error::from)?;
        let bus = Bus::start(conn.clone(), &home, cfg.rotation())
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
        let (view, _follower) = PhaseView::follow(&bus).await.map_err(anyhow::Error::from)?;
        announcer
            .announce(ComponentState::Starting)
            .await
            .map_err(anyhow::Error::from)?;
        let beating = heartbeat(&announcer, &view);
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
        let pings = service
            .group(c.token())
            .endpoint("ping")
            .await
            .map_err(|e| anyhow::anyhow!("cannot add the ping endpoint: {e}"))?;
        tracing::info!(%instance, "connected; waiting for the earlier phases");
        Ok(Joined {
            component: c,
            started,
            home,
            conn,
            bus,
            instance,
            announcer,
            view,
            deps: dependencies(c),
            service,
            stats,
            pings,
            stopping: Stopping::listen().map_err(anyhow::Error::from)?,
            beating,
        })
    }

    /// Announces `failed` with `reason` (a dependency timed out, the capability could not
    /// start) and stops the heartbeat.
    pub(crate) async fn fail(self, reason: String) {
        let _ = self
            .announcer
            .announce(ComponentState::Failed { reason })
            .await;
        self.beating.abort();
        let _ = self.conn.client.flush().await;
    }

    /// Announces `stopped`, stops serving and flushes what was published. (Flush, not drain: a
    /// drained connection makes async-nats's ordered consumers — the phase view, the key
    /// directory follower — panic as they try to recreate themselves; the process exits next.)
    pub(crate) async fn stop(self) -> Result<(), RunError> {
        tracing::info!("stopping");
        let _ = self.announcer.announce(ComponentState::Stopped).await;
        self.beating.abort();
        let _ = self.service.stop().await;
        let _ = self.conn.client.flush().await;
        Ok(())
    }
}

/// The heartbeat: every `HEARTBEAT_MS`, and at once when a newcomer announces itself.
fn heartbeat(announcer: &Announcer, view: &PhaseView) -> tokio::task::JoinHandle<()> {
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
}
