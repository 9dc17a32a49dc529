//! One `ozone-spark` process: loads the models, joins the `spark` queue group with the
//! `generate`, `embed` and `models` endpoints, and answers each request with a stream of
//! events (see `ozone_bus_schemas::spark`). Scale by starting more processes: NATS spreads
//! requests over the queue group; a worker on another host needs only its credentials and
//! the NATS URL.

pub mod admission;
pub mod args;
pub mod batcher;
mod handlers;
pub mod metrics;

pub use args::{SparkArgs, WorkerArgs};

use crate::engine::{Embedder, TextModel};
use crate::models::{discover, DiscoveredModel};
use admission::Admission;
use batcher::Batcher;
use futures::future::BoxFuture;
use futures::StreamExt;
use metrics::Metrics;
use ozone_bus_schemas::spark::{self, Control, ModelKind};
use ozone_nats::bus::Bus;
use ozone_service::{Capability, Serving};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request being worked on, as the control subject sees it.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// Only the authenticated requester may cancel or keep alive its request.
    requester: String,
    cancel: Arc<AtomicBool>,
    last_keepalive: Instant,
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Worker {
    pub id: String,
    pub(crate) bus: Bus,
    pub(crate) args: WorkerArgs,
    pub(crate) catalog: Vec<DiscoveredModel>,
    pub(crate) text: HashMap<String, Arc<TextModel>>,
    pub(crate) embedders: HashMap<String, Batcher>,
    pub(crate) default_text: Option<String>,
    pub(crate) default_embedder: Option<String>,
    pub(crate) admission: Admission,
    pub(crate) inflight: Mutex<HashMap<String, InFlight>>,
    pub(crate) metrics: Arc<Metrics>,
}

/// The capability the runtime starts.
#[derive(Debug)]
pub struct SparkCapability {
    pub args: WorkerArgs,
}

impl Capability for SparkCapability {
    fn start<'a>(
        self: Box<Self>,
        serving: Serving<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>> {
        Box::pin(async move { start(self.args, serving).await })
    }
}

async fn start(
    args: WorkerArgs,
    serving: Serving<'_>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let models_dir = args.models.clone().unwrap_or_else(|| serving.home.models());
    let catalog = discover(&models_dir);
    let device = crate::engine::compute_device()?;
    tracing::info!(device = %crate::engine::device_label(&device), "compute device");
    let mut text = HashMap::new();
    let mut embedders = HashMap::new();
    let mut tasks = Vec::new();
    let metrics = Arc::new(Metrics::default());
    for m in catalog.iter().filter(|m| m.info.served) {
        let started = Instant::now();
        match m.info.kind {
            ModelKind::Generation => {
                let (path, name) = (m.path.clone(), m.info.name.clone());
                let d = device.clone();
                let model = tokio::task::spawn_blocking(move || TextModel::load(&path, &name, &d))
                    .await??;
                text.insert(m.info.name.clone(), Arc::new(model));
            }
            ModelKind::Embedding => {
                let (path, name) = (m.path.clone(), m.info.name.clone());
                let d = device.clone();
                let model =
                    tokio::task::spawn_blocking(move || Embedder::load(&path, &name, &d)).await??;
                let counted = metrics.clone();
                let (batcher, task) = Batcher::start(
                    Arc::new(model),
                    args.embed_batch,
                    args.embed_queue,
                    Arc::new(move |n| {
                        counted.update(|t| {
                            t.embed_batches += 1;
                            t.embed_texts += n as u64;
                        })
                    }),
                );
                embedders.insert(m.info.name.clone(), batcher);
                tasks.push(task);
            }
        }
        tracing::info!(model = %m.info.name, elapsed = ?started.elapsed(), "model loaded");
    }
    if text.is_empty() && embedders.is_empty() {
        anyhow::bail!(
            "no model to serve in {} (`ozone models install` puts the shipped ones there)",
            models_dir.display()
        );
    }
    let pick = |kind: ModelKind| {
        catalog
            .iter()
            .find(|m| m.info.served && m.info.kind == kind)
            .map(|m| m.info.name.clone())
    };
    let worker = Arc::new(Worker {
        // The runtime's instance id (lowercase hex: a valid subject token), so a worker's
        // answers, stats and phase announcements name it the same way.
        id: serving.instance.clone(),
        bus: serving.bus.clone(),
        admission: Admission::new(args.concurrency, args.queue, args.queue_wait),
        default_text: pick(ModelKind::Generation),
        default_embedder: pick(ModelKind::Embedding),
        args,
        catalog,
        text,
        embedders,
        inflight: Mutex::default(),
        metrics,
    });
    tracing::info!(worker = %worker.id, "serving {} generation and {} embedding models",
        worker.text.len(), worker.embedders.len());

    // The control subject first, so a requester's first keepalive is never missed.
    let mut control = worker
        .bus
        .subscribe::<Control>(&spark::worker_control(&worker.id), None)
        .await?;
    let w = worker.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(msg) = control.next().await {
            match msg {
                Ok(m) => w.control(&m.sender, m.message),
                Err(e) => tracing::warn!("control message refused: {e}"),
            }
        }
    }));
    let w = worker.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            w.cancel_abandoned();
        }
    }));
    for op in [spark::GENERATE, spark::EMBED, spark::MODELS] {
        let mut endpoint = serving
            .service
            .endpoint(spark::operation(op).to_string())
            .await
            .map_err(|e| anyhow::anyhow!("cannot add the {op} endpoint: {e}"))?;
        let w = worker.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(req) = endpoint.next().await {
                let w = w.clone();
                tokio::spawn(async move { w.handle(op, req.message).await });
            }
        }));
    }
    let w = worker.clone();
    serving.stats.set(Box::new(move |_endpoint| w.stats()));
    Ok(tasks)
}

impl Worker {
    fn control(&self, sender: &str, c: Control) {
        let Ok(mut inflight) = self.inflight.lock() else {
            return;
        };
        match c {
            Control::Cancel { request_id } => {
                if let Some(f) = inflight.get(&request_id).filter(|f| f.requester == sender) {
                    f.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Control::Keepalive { request_ids } => {
                let now = Instant::now();
                for id in request_ids {
                    if let Some(f) = inflight.get_mut(&id).filter(|f| f.requester == sender) {
                        f.last_keepalive = now;
                    }
                }
            }
        }
    }

    /// Stops work whose requester went away (no keepalive for `REQUESTER_SILENCE_MS`).
    fn cancel_abandoned(&self) {
        let Ok(inflight) = self.inflight.lock() else {
            return;
        };
        let limit = Duration::from_millis(spark::REQUESTER_SILENCE_MS);
        for (id, f) in inflight.iter() {
            if f.last_keepalive.elapsed() > limit
                && !f.cancel.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::info!(request = %id, "requester went away; stopping its generation");
            }
        }
    }

    fn stats(&self) -> serde_json::Value {
        let load = serde_json::json!({
            "worker": self.id,
            "generations_running": self.admission.busy(),
            "generation_slots": self.admission.running,
            "generations_queued": self.admission.waiting(),
            "generation_queue_limit": self.admission.queued,
            "embed_texts_queued": self.embedders.values().map(|b| b.queued()).sum::<usize>(),
            "embed_queue_limit": self.args.embed_queue,
        });
        metrics::summary(&self.metrics.snapshot(), load)
    }
}
