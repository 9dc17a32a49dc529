//! One `ozone-spark` process: loads the models, joins the `spark` queue group with the
//! `generate`, `embed` and `models` endpoints, and answers each request with a stream of
//! events (see `ozone_bus_schemas::spark`). Scale by starting more processes: NATS spreads
//! requests over the queue group; a worker on another host needs only its credentials and
//! the NATS URL.

pub mod args;
pub mod batcher;
mod handlers;
pub mod metrics;

pub use args::{SparkArgs, WorkerArgs};

use crate::engine::{Embedder, TextModel};
use crate::models::{discover, DiscoveredModel};
use batcher::Batcher;
use futures::future::BoxFuture;
use metrics::Metrics;
use ozone_bus_schemas::spark::{self, ModelKind};
use ozone_service::kit::{Admission, Kit};
use ozone_service::{Capability, Serving};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Worker {
    pub id: String,
    pub(crate) args: WorkerArgs,
    pub(crate) catalog: Vec<DiscoveredModel>,
    pub(crate) text: HashMap<String, Arc<TextModel>>,
    pub(crate) embedders: HashMap<String, Batcher>,
    pub(crate) default_text: Option<String>,
    pub(crate) default_embedder: Option<String>,
    pub(crate) admission: Arc<Admission>,
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
        admission: Arc::new(Admission::new(
            args.concurrency,
            args.queue,
            args.queue_wait,
        )),
        default_text: pick(ModelKind::Generation),
        default_embedder: pick(ModelKind::Embedding),
        args,
        catalog,
        text,
        embedders,
        metrics,
    });
    tracing::info!(worker = %worker.id, "serving {} generation and {} embedding models",
        worker.text.len(), worker.embedders.len());

    let mut kit = Kit::new(&serving);
    let admission = Some(worker.admission.clone());
    kit.serve_stream::<spark::Generate, _>(worker.clone(), admission)
        .await?;
    // Embeddings are bounded by the batcher's own queue (`embed_queue` texts).
    kit.serve_stream::<spark::Embed, _>(worker.clone(), None)
        .await?;
    kit.serve::<spark::Models, _>(worker.clone()).await?;
    let w = worker.clone();
    kit.component_stats(Box::new(move |_endpoint| w.stats()));
    tasks.extend(kit.into_tasks());
    Ok(tasks)
}

impl Worker {
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
