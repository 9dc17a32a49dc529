//! The component kit: one way to serve an operation declared in `bus-schemas`.
//!
//! A component declares each operation once ([`ozone_bus_schemas::operation::Operation`]) and
//! writes a handler; [`Kit`] does everything else in one place: the NATS micro-service
//! endpoint (so `$SRV.PING/INFO/STATS` list it), opening and sealing, the declared size limit
//! and caller check (refusals audited and answered as the operation's typed error), and for
//! streamed operations `Accepted`, admission with `Overloaded`, `Alive` whenever the handler
//! is quiet, the control subject (cancel, keepalive), cancelling work whose requester went
//! away, and idempotency by request id.
//!
//! ```ignore
//! let mut kit = Kit::new(&serving)?;
//! kit.serve::<spark::Models, _>(worker.clone()).await?;
//! kit.serve_stream::<spark::Generate, _>(worker.clone(), Some(admission)).await?;
//! Ok(kit.into_tasks())
//! ```

mod admission;
mod call;
mod inflight;
mod serve;
mod stats;

pub use admission::{Admission, Slot};
pub use call::Call;

use crate::capability::{Serving, StatsFn};
use futures::future::BoxFuture;
use inflight::InFlight;
use ozone_bus_schemas::operation::{self, Operation, ReplyKind, Streamed, REQUESTER_SILENCE_MS};
use ozone_bus_schemas::Component;
use ozone_nats::bus::BusError;
use std::sync::Arc;
use std::time::Duration;

/// Answers a one-reply operation.
pub trait Handler<Op: Operation>: Send + Sync + 'static {
    /// The reply to `request` from the authenticated `caller`, or the error sent back instead.
    fn handle(
        self: Arc<Self>,
        request: Op::Request,
        caller: Arc<str>,
    ) -> BoxFuture<'static, Result<Op::Reply, Op::Error>>;
}

/// A [`Handler`] made of an async function of the request and the authenticated caller.
pub struct FnHandler<F>(F);

impl<F> std::fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnHandler")
    }
}

/// Wraps `f` as a one-reply handler: `kit.serve::<Op, _>(handler_fn(|request, caller| async move { … }))`.
pub fn handler_fn<F>(f: F) -> Arc<FnHandler<F>> {
    Arc::new(FnHandler(f))
}

impl<Op, F, Fut> Handler<Op> for FnHandler<F>
where
    Op: Operation,
    F: Fn(Op::Request, Arc<str>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Op::Reply, Op::Error>> + Send + 'static,
{
    fn handle(
        self: Arc<Self>,
        request: Op::Request,
        caller: Arc<str>,
    ) -> BoxFuture<'static, Result<Op::Reply, Op::Error>> {
        Box::pin((self.0)(request, caller))
    }
}

/// Answers a streamed operation in two steps: `check` before the request is accepted (an
/// error is the answer, at once), `run` after admission.
pub trait StreamHandler<Op: Streamed>: Send + Sync + 'static {
    /// What `check` hands to `run` (the resolved model, the encoded prompt…).
    type Checked: Send + 'static;

    fn check(&self, request: Op::Request) -> Result<Self::Checked, Op::Error>;

    /// Does the work, sending events through `call`; returns the final event (the kit sends
    /// it) or the error it sends instead.
    fn run(
        self: Arc<Self>,
        checked: Self::Checked,
        call: Call<Op>,
    ) -> BoxFuture<'static, Result<Op::Reply, Op::Error>>;

    /// Told of every error answered for this operation, the kit's refusals included
    /// (for the component's own statistics).
    fn failed(&self, _error: &Op::Error) {}
}

/// Why an operation could not be served.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{operation} belongs to {owner}, not to {component}")]
    NotOurs {
        operation: String,
        owner: Component,
        component: Component,
    },
    #[error("{operation} is declared with {declared:?} replies")]
    WrongReplyKind {
        operation: String,
        declared: ReplyKind,
    },
    #[error("cannot add the {operation} endpoint")]
    Endpoint {
        operation: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot subscribe to this worker's control subject")]
    Control(#[source] BusError),
}

/// Serves one component's operations; hand its tasks to the runtime.
pub struct Kit<'a> {
    serving: &'a Serving<'a>,
    worker: Arc<str>,
    inflight: Option<Arc<InFlight>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counters: stats::Registry,
    component_stats: Option<StatsFn>,
}

impl std::fmt::Debug for Kit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit")
            .field("component", &self.serving.component)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl<'a> Kit<'a> {
    pub fn new(serving: &'a Serving<'a>) -> Kit<'a> {
        Kit {
            serving,
            worker: serving.instance.as_str().into(),
            inflight: None,
            tasks: Vec::new(),
            counters: stats::Registry::default(),
            component_stats: None,
        }
    }

    /// The component's own figures for `$SRV.STATS` (per endpoint name); the kit adds each
    /// operation's counters under `operation`.
    pub fn component_stats(&mut self, f: StatsFn) {
        self.component_stats = Some(f);
    }

    /// Serves a one-reply operation with `handler`.
    pub async fn serve<Op: Operation, H: Handler<Op>>(
        &mut self,
        handler: Arc<H>,
    ) -> Result<(), KitError> {
        self.check::<Op>(ReplyKind::One)?;
        let mut endpoint = self.endpoint::<Op>().await?;
        let bus = self.serving.bus.clone();
        let counters = self.counters.add(Op::SPEC.subject().as_str());
        self.tasks.push(tokio::spawn(async move {
            while let Some(req) = futures::StreamExt::next(&mut endpoint).await {
                let (bus, handler, counters) = (bus.clone(), handler.clone(), counters.clone());
                tokio::spawn(async move {
                    serve::one::<Op, H>(&bus, handler, &counters, req.message).await
                });
            }
        }));
        Ok(())
    }

    /// Serves a streamed operation with `handler`, at most as many at once as `admission`
    /// lets run (none: no limit of the kit's; the handler may bound its own queue).
    pub async fn serve_stream<Op: Streamed, H: StreamHandler<Op>>(
        &mut self,
        handler: Arc<H>,
        admission: Option<Arc<Admission>>,
    ) -> Result<(), KitError> {
        self.check::<Op>(ReplyKind::Events)?;
        let inflight = self.control().await?;
        let mut endpoint = self.endpoint::<Op>().await?;
        let ctx = Arc::new(serve::StreamCtx {
            bus: self.serving.bus.clone(),
            handler,
            admission,
            inflight,
            worker: self.worker.clone(),
            counters: self.counters.add(Op::SPEC.subject().as_str()),
        });
        self.tasks.push(tokio::spawn(async move {
            while let Some(req) = futures::StreamExt::next(&mut endpoint).await {
                let ctx = ctx.clone();
                tokio::spawn(async move { serve::stream::<Op, H>(ctx, req.message).await });
            }
        }));
        Ok(())
    }

    /// Installs the `$SRV.STATS` data (the component's figures and the operations' counters)
    /// and returns the tasks serving the operations (the runtime stops them with the
    /// component).
    pub fn into_tasks(self) -> Vec<tokio::task::JoinHandle<()>> {
        let (counters, component) = (self.counters, self.component_stats);
        self.serving.stats.set(Box::new(move |endpoint| {
            let own = component.as_ref().map(|f| f(endpoint)).unwrap_or_default();
            counters.data(endpoint, own)
        }));
        self.tasks
    }

    fn check<Op: Operation>(&self, reply: ReplyKind) -> Result<(), KitError> {
        let spec = &Op::SPEC;
        if spec.component != self.serving.component {
            return Err(KitError::NotOurs {
                operation: spec.subject().to_string(),
                owner: spec.component,
                component: self.serving.component,
            });
        }
        if spec.reply != reply {
            return Err(KitError::WrongReplyKind {
                operation: spec.subject().to_string(),
                declared: spec.reply,
            });
        }
        Ok(())
    }

    async fn endpoint<Op: Operation>(
        &self,
    ) -> Result<async_nats::service::endpoint::Endpoint, KitError> {
        let subject = Op::SPEC.subject().to_string();
        self.serving
            .service
            .endpoint(subject.clone())
            .await
            .map_err(|source| KitError::Endpoint {
                operation: subject,
                source,
            })
    }

    /// The control subject and the task cancelling abandoned work: started with the first
    /// streamed operation, before its endpoint, so a requester's first keepalive is never
    /// missed.
    async fn control(&mut self) -> Result<Arc<InFlight>, KitError> {
        if let Some(t) = &self.inflight {
            return Ok(t.clone());
        }
        let table = Arc::new(InFlight::default());
        let subject = operation::worker_control(self.serving.component, &self.worker);
        let mut control = self
            .serving
            .bus
            .subscribe::<operation::Control>(&subject, None)
            .await
            .map_err(KitError::Control)?;
        let t = table.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(msg) = control.next().await {
                match msg {
                    Ok(m) => t.control(&m.sender, m.message),
                    Err(e) => tracing::warn!("control message refused: {e}"),
                }
            }
        }));
        let t = table.clone();
        self.tasks.push(tokio::spawn(async move {
            let limit = Duration::from_millis(REQUESTER_SILENCE_MS);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                for id in t.cancel_abandoned(limit) {
                    tracing::info!(request = %id, "requester went away; stopping its work");
                }
            }
        }));
        self.inflight = Some(table.clone());
        Ok(table)
    }
}
