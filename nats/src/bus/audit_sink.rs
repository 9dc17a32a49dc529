//! Audit events from a bus connection: queued without blocking the caller, then sealed to
//! every auditor and published on `audit.<component>.<category>` by one background task.
//!
//! Bounded twice so a flood of bad input cannot turn into a flood of audit traffic: the queue
//! holds 1024 events (more are counted, not queued), and the task publishes at most
//! [`RATE_PER_SEC`] events a second; whatever it holds back is reported as one
//! `rejections-suppressed` event with the count.

use super::{now_ms, Bus};
use ozone_bus_schemas::{AuditEvent, AuditKind, Component, Subject, AUDIT_SCHEMA};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Sustained audit events a second per connection (also the burst).
pub const RATE_PER_SEC: u64 = 100;
const QUEUE: usize = 1024;

/// The sending side, held by every clone of a [`Bus`].
#[derive(Debug, Clone)]
pub(crate) struct AuditSink {
    tx: mpsc::Sender<AuditKind>,
    overflow: Arc<AtomicU64>,
}

impl AuditSink {
    pub(crate) fn report(&self, event: AuditKind) {
        if self.tx.try_send(event).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<AuditKind> {
        self.tx.clone()
    }
}

/// Starts the publishing task for `component`; `publisher` must not hold the sink itself (or
/// the queue would never close).
pub(crate) fn start(publisher: Bus, component: Component) -> AuditSink {
    let (tx, mut rx) = mpsc::channel::<AuditKind>(QUEUE);
    let overflow = Arc::new(AtomicU64::new(0));
    let sink = AuditSink {
        tx,
        overflow: overflow.clone(),
    };
    tokio::spawn(async move {
        let mut tokens = RATE_PER_SEC;
        let mut suppressed = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if tokens == 0 {
                        suppressed += 1;
                        continue;
                    }
                    tokens -= 1;
                    publish(&publisher, component, ev).await;
                }
                _ = tick.tick() => {
                    tokens = RATE_PER_SEC;
                    suppressed += overflow.swap(0, Ordering::Relaxed);
                    if suppressed > 0 {
                        tokens -= 1;
                        let count = std::mem::take(&mut suppressed);
                        publish(&publisher, component, AuditKind::RejectionsSuppressed { count }).await;
                    }
                }
            }
        }
    });
    sink
}

async fn publish(bus: &Bus, component: Component, event: AuditKind) {
    let subject = Subject::audit_event(component, &event);
    let record = AuditEvent {
        at_ms: now_ms(),
        component: component.name().to_string(),
        event,
    };
    if let Err(e) = bus.publish_audit(&subject, &record, AUDIT_SCHEMA).await {
        // Nowhere else to report it: the audit channel itself failed (or no auditor exists).
        tracing::warn!(%subject, "audit event not published: {e}");
    }
}
