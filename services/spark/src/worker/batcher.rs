//! Embedding requests that arrive together go through the model together: one forward pass
//! over up to `max_batch` texts from any number of requests.

use crate::engine::Embedder;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// One request's share of a batch.
#[derive(Debug)]
pub struct BatchResult {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
    pub batch_texts: usize,
    pub queue_wait_ms: f64,
}

struct Job {
    texts: Vec<String>,
    queued_at: Instant,
    done: oneshot::Sender<Result<BatchResult, String>>,
}

/// The queue in front of one embedding model, bounded in texts.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batcher({} queued)", self.queued.load(Ordering::Relaxed))
    }
}

/// Why a job was not taken.
#[derive(Debug)]
pub struct Full {
    pub queued: usize,
    pub limit: usize,
}

impl Batcher {
    /// Starts the batching task for `model`; `batches` is told each batch's size.
    pub fn start(
        model: Arc<Embedder>,
        max_batch: usize,
        limit: usize,
        batches: Arc<dyn Fn(usize) + Send + Sync>,
    ) -> (Batcher, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                let mut texts = jobs[0].texts.len();
                while texts < max_batch {
                    match rx.try_recv() {
                        Ok(j) => {
                            texts += j.texts.len();
                            jobs.push(j);
                        }
                        Err(_) => break,
                    }
                }
                q.fetch_sub(texts, Ordering::SeqCst);
                batches(texts);
                let all: Vec<String> = jobs.iter().flat_map(|j| j.texts.clone()).collect();
                let m = model.clone();
                let started = Instant::now();
                let out = tokio::task::spawn_blocking(move || m.embed(&all)).await;
                let out = match out {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(e) => Err(format!("embedding task failed: {e}")),
                };
                match out {
                    Ok((vectors, tokens)) => {
                        let mut vectors = vectors.into_iter();
                        for j in jobs {
                            let n = j.texts.len();
                            let mine: Vec<Vec<f32>> = vectors.by_ref().take(n).collect();
                            // Tokens are shared out by text count: the batch is padded as one.
                            let share = tokens * n / texts.max(1);
                            let wait = started.duration_since(j.queued_at).as_secs_f64() * 1e3;
                            let _ = j.done.send(Ok(BatchResult {
                                vectors: mine,
                                tokens: share,
                                batch_texts: texts,
                                queue_wait_ms: wait,
                            }));
                        }
                    }
                    Err(e) => {
                        for j in jobs {
                            let _ = j.done.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        (Batcher { tx, queued, limit }, task)
    }

    /// Queues `texts`; the answer comes on the returned receiver.
    pub fn submit(
        &self,
        texts: Vec<String>,
    ) -> Result<oneshot::Receiver<Result<BatchResult, String>>, Full> {
        let n = texts.len();
        let before = self.queued.fetch_add(n, Ordering::SeqCst);
        if before + n > self.limit {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(Full {
                queued: before,
                limit: self.limit,
            });
        }
        let (done, rx) = oneshot::channel();
        let job = Job {
            texts,
            queued_at: Instant::now(),
            done,
        };
        if self.tx.send(job).is_err() {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(Full {
                queued: before,
                limit: 0,
            });
        }
        Ok(rx)
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}
