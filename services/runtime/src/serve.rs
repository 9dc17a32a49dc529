//! Serving: start the capability, announce `ready`, then follow the earlier phases (back to
//! `waiting` while one is missing), answer the lifecycle ping, and stop on a signal.

use crate::capability::{Capability, Serving};
use crate::join::Joined;
use crate::run::RunError;
use crate::wait::waiting_on;
use futures::StreamExt;
use ozone_bus_schemas::phase::{ComponentState, Ping, PingReply};
use ozone_bus_schemas::AuditKind;
use ozone_nats::bus::{now_ms, BusError};

impl Joined {
    pub(crate) async fn serve(
        mut self,
        capability: Option<Box<dyn Capability>>,
    ) -> Result<(), RunError> {
        let tasks = match capability {
            Some(cap) => match cap.start(self.serving()).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    self.fail(format!("{e:#}")).await;
                    return Err(e.into());
                }
            },
            None => Vec::new(),
        };
        let _serving = AbortOnDrop(tasks);
        self.announcer
            .announce(ComponentState::Ready)
            .await
            .map_err(anyhow::Error::from)?;
        tracing::info!(elapsed = ?self.started.elapsed(), "ready");
        loop {
            tokio::select! {
                _ = self.view.changed() => {
                    let missing = self.view.missing(&self.deps);
                    let state = if missing.is_empty() { ComponentState::Ready } else { waiting_on(&missing) };
                    if let Err(e) = self.announcer.announce(state).await {
                        tracing::warn!("announce: {e}");
                    }
                }
                req = self.pings.next() => {
                    let Some(req) = req else { break };
                    self.answer_ping(&req.message).await;
                }
                _ = self.stopping.requested() => break,
            }
        }
        self.stop().await
    }

    fn serving(&self) -> Serving<'_> {
        Serving {
            component: self.component,
            bus: self.bus.clone(),
            service: &self.service,
            instance: self.instance.clone(),
            home: self.home.clone(),
            stats: self.stats.clone(),
            view: self.view.clone(),
        }
    }

    /// The lifecycle ping: a pong only while every dependency is ready.
    async fn answer_ping(&self, msg: &async_nats::Message) {
        // Refusals are audited by the bus, like any other request's.
        let req = match self.bus.open_request::<Ping>(msg).await {
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
            self.bus.audit(AuditKind::MessageRejected {
                subject: req.subject.to_string(),
                reason: refused.to_string(),
                claimed_sender: Some(req.sender.to_string()),
            });
            return;
        }
        let missing = self.view.missing(&self.deps);
        let component = self.component.name().to_string();
        let reply = if missing.is_empty() && self.announcer.is_ready() {
            PingReply::Pong {
                component,
                instance: self.announcer.instance().to_string(),
                served_at_ms: now_ms(),
            }
        } else {
            PingReply::NotReady {
                component,
                waiting_on: missing.iter().map(|d| d.name().to_string()).collect(),
            }
        };
        if let Err(e) = self.bus.reply(&req, &reply).await {
            tracing::warn!("ping reply: {e}");
        }
    }
}

/// Stops the capability's tasks however serving ends.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
