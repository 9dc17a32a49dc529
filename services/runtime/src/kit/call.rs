//! Taking a request in: opened by the bus (authenticated, route-checked, replay-checked), then
//! held to the operation's declaration — size, caller, shape — and answered on the
//! requester's inbox.

use ozone_bus_schemas::operation::{Operation, Refusal, Streamed};
use ozone_bus_schemas::AuditKind;
use ozone_nats::bus::{Bus, Received};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a request's answers go: its authenticated requester's inbox.
#[derive(Debug)]
pub(crate) struct Replier {
    bus: Bus,
    to: Received<()>,
    last_sent: Mutex<Instant>,
}

impl Replier {
    pub(crate) fn sender(&self) -> &Arc<str> {
        &self.to.sender
    }

    /// Sends one answer; a failure is logged (the requester notices by silence and retries).
    pub(crate) async fn send(&self, message: &impl serde::Serialize) -> bool {
        if let Ok(mut t) = self.last_sent.lock() {
            *t = Instant::now();
        }
        match self.bus.reply(&self.to, message).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot answer {}: {e}", self.to.sender);
                false
            }
        }
    }

    pub(crate) fn idle(&self) -> Duration {
        self.last_sent
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// Sends `error` as the operation's failure reply (when it has one).
    pub(crate) async fn fail<Op: Operation>(&self, error: Op::Error) {
        tracing::debug!(operation = Op::SPEC.name, "refused: {error}");
        if let Some(reply) = Op::failed(error) {
            self.send(&reply).await;
        }
    }
}

/// Opens `msg` as a request for `Op`. `None`: the bus refused it (and audited why); nobody
/// to answer. Otherwise the requester to answer and its request, or the kit's refusal of it
/// (audited here).
pub(crate) async fn take<Op: Operation>(
    bus: &Bus,
    msg: &async_nats::Message,
) -> Option<(Replier, Result<Op::Request, Refusal>)> {
    let opened = bus.open_request::<Op::Request>(msg).await.ok()?;
    let spec = &Op::SPEC;
    let refusal = if msg.payload.len() > spec.limits.max_request_bytes {
        Some(Refusal::Invalid(format!(
            "a request of {} bytes; {} takes at most {}",
            msg.payload.len(),
            spec.subject(),
            spec.limits.max_request_bytes
        )))
    } else if !spec.allows(&opened.sender) {
        Some(Refusal::NotAllowed {
            caller: opened.sender.to_string(),
            operation: spec.subject().to_string(),
        })
    } else {
        match &opened.message {
            Ok(_) => None,
            Err(detail) => Some(Refusal::Invalid(format!(
                "not a {} request: {detail}",
                spec.name
            ))),
        }
    };
    let (to, message) = opened.split();
    if let Some(r) = &refusal {
        bus.audit(AuditKind::MessageRejected {
            subject: to.subject.to_string(),
            reason: r.to_string(),
            claimed_sender: Some(to.sender.to_string()),
        });
    }
    let replier = Replier {
        bus: bus.clone(),
        to,
        last_sent: Mutex::new(Instant::now()),
    };
    let request = match (refusal, message) {
        (Some(r), _) => Err(r),
        (None, Ok(request)) => Ok(request),
        (None, Err(detail)) => Err(Refusal::Invalid(detail)),
    };
    Some((replier, request))
}

/// A streamed request being worked on, as its handler sees it.
#[derive(Debug)]
pub struct Call<Op> {
    replier: Arc<Replier>,
    cancel: Arc<AtomicBool>,
    worker: Arc<str>,
    queue_wait: Duration,
    _op: PhantomData<fn() -> Op>,
}

impl<Op> Clone for Call<Op> {
    fn clone(&self) -> Self {
        Call {
            replier: self.replier.clone(),
            cancel: self.cancel.clone(),
            worker: self.worker.clone(),
            queue_wait: self.queue_wait,
            _op: PhantomData,
        }
    }
}

impl<Op: Streamed> Call<Op> {
    pub(crate) fn new(
        replier: Arc<Replier>,
        cancel: Arc<AtomicBool>,
        worker: Arc<str>,
        queue_wait: Duration,
    ) -> Call<Op> {
        Call {
            replier,
            cancel,
            worker,
            queue_wait,
            _op: PhantomData,
        }
    }

    /// Sends one event to the requester (the kit adds `Alive` whenever the handler is quiet).
    pub async fn send(&self, event: &Op::Reply) -> bool {
        self.replier.send(event).await
    }

    /// The authenticated requester.
    pub fn requester(&self) -> &str {
        self.replier.sender()
    }

    /// This worker's id (as in `Accepted`).
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Set when the requester cancels, goes silent, or retries the request: stop soon.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// From taking the request to admitting it (time waiting for a free slot).
    pub fn queue_wait(&self) -> Duration {
        self.queue_wait
    }
}
