//! Answering one request: validate, say `Accepted`, wait for admission (saying `Alive`),
//! work, stream, finish with `Done` or `Failed`. Every refusal is an answer: the worker never
//! drops a request it could read, and keeps serving after any of them.

use super::{InFlight, Worker};
use crate::engine::Step;
use ozone_bus_schemas::spark::{
    self, EmbedEvent, EmbedRequest, EmbedResult, GenerateEvent, GenerateRequest, Generated,
    ModelsReply, ModelsRequest, SparkError, Usage,
};
use ozone_nats::bus::Received;
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALIVE: Duration = Duration::from_millis(spark::ALIVE_MS);
/// Stop sequences: how many and how long (each is searched for after every token).
const MAX_STOPS: usize = 8;
const MAX_STOP_BYTES: usize = 64;

impl Worker {
    pub(crate) async fn handle(self: Arc<Self>, op: &'static str, msg: async_nats::Message) {
        match op {
            spark::GENERATE => self.generate(msg).await,
            spark::EMBED => self.embed(msg).await,
            _ => self.models(msg).await,
        }
    }

    async fn send<T>(&self, to: &Received<T>, event: &impl Serialize) -> bool {
        match self.bus.reply(to, event).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot answer {}: {e}", to.sender);
                false
            }
        }
    }

    fn failed(&self, e: &SparkError) {
        self.metrics.update(|t| match e {
            SparkError::Overloaded { .. } => t.overloaded += 1,
            SparkError::Cancelled => t.cancelled += 1,
            _ => t.failed += 1,
        });
    }

    async fn models(&self, msg: async_nats::Message) {
        let Ok(req) = self.bus.open_request::<ModelsRequest>(&msg).await else {
            return; // refused and audited by the bus
        };
        let reply = ModelsReply {
            worker: self.id.clone(),
            models: self.catalog.iter().map(|m| m.info.clone()).collect(),
        };
        self.send(&req, &reply).await;
    }

    fn check_generate(
        &self,
        r: &GenerateRequest,
    ) -> Result<Arc<crate::engine::TextModel>, SparkError> {
        let name = r
            .model
            .clone()
            .or_else(|| self.default_text.clone())
            .unwrap_or_default();
        let model = self
            .text
            .get(&name)
            .cloned()
            .ok_or_else(|| SparkError::UnknownModel {
                model: name.clone(),
                available: self.text.keys().cloned().collect(),
            })?;
        if r.request_id.is_empty() || r.request_id.len() > 128 {
            return Err(SparkError::Invalid(
                "request_id must be 1 to 128 bytes".into(),
            ));
        }
        if r.max_tokens == 0 {
            return Err(SparkError::Invalid("max_tokens must be at least 1".into()));
        }
        if r.max_tokens > self.args.max_tokens_limit {
            return Err(SparkError::MaxTokensTooLarge {
                requested: r.max_tokens,
                limit: self.args.max_tokens_limit,
            });
        }
        if !r.temperature.is_finite() || r.temperature < 0.0 {
            return Err(SparkError::Invalid("temperature must be 0 or more".into()));
        }
        if r.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return Err(SparkError::Invalid("top_p must be in (0, 1]".into()));
        }
        if r.top_k == Some(0) {
            return Err(SparkError::Invalid("top_k must be at least 1".into()));
        }
        if !r.repeat_penalty.is_finite() || r.repeat_penalty <= 0.0 {
            return Err(SparkError::Invalid("repeat_penalty must be above 0".into()));
        }
        if r.stop.len() > MAX_STOPS || r.stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(SparkError::Invalid(format!(
                "at most {MAX_STOPS} stop sequences of at most {MAX_STOP_BYTES} bytes"
            )));
        }
        Ok(model)
    }

    async fn generate(self: Arc<Self>, msg: async_nats::Message) {
        let Ok(req) = self.bus.open_request::<GenerateRequest>(&msg).await else {
            return;
        };
        let taken = Instant::now();
        let r = match &req.message {
            Ok(r) => r.clone(),
            Err(detail) => {
                let e = SparkError::Invalid(format!("not a generate request: {detail}"));
                self.failed(&e);
                self.send(&req, &GenerateEvent::Failed(e)).await;
                return;
            }
        };
        let checked = self
            .check_generate(&r)
            .and_then(|m| m.encode_prompt(&r.prompt).map(|p| (m, p)))
            .and_then(|(m, p)| {
                if p.len() >= m.context {
                    Err(SparkError::PromptTooLong {
                        tokens: p.len() as u32,
                        context: m.context as u32,
                    })
                } else {
                    Ok((m, p))
                }
            });
        let (model, prompt) = match checked {
            Ok(v) => v,
            Err(e) => {
                self.failed(&e);
                self.send(&req, &GenerateEvent::Failed(e)).await;
                return;
            }
        };
        let cancel = Arc::new(AtomicBool::new(false));
        if let Ok(mut f) = self.inflight.lock() {
            let previous = f.insert(
                r.request_id.clone(),
                InFlight {
                    requester: req.sender.to_string(),
                    cancel: cancel.clone(),
                    last_keepalive: Instant::now(),
                },
            );
            // A retry of a request this worker still runs: the requester no longer listens
            // to the first run.
            if let Some(p) = previous {
                p.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _done = Forget(&self, r.request_id.clone(), cancel.clone());
        self.send(
            &req,
            &GenerateEvent::Accepted {
                worker: self.id.clone(),
            },
        )
        .await;
        let slot = self
            .admission
            .enter(ALIVE, || async {
                self.send(&req, &GenerateEvent::Alive).await;
            })
            .await;
        let slot = match slot {
            Ok(s) => s,
            Err(e) => {
                self.failed(&e);
                self.send(&req, &GenerateEvent::Failed(e)).await;
                return;
            }
        };
        let queue_wait_ms = taken.elapsed().as_secs_f64() * 1e3;
        // Only pieces cross to the async side: `Alive` is driven by the timer below, so a
        // step with nothing to stream wakes nobody.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let work = {
            let (r, cancel) = (r.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                model.generate(&r, &prompt, &cancel, &mut |step| {
                    if let Step::Piece(p) = step {
                        let _ = tx.send(p.to_string());
                    }
                })
            })
        };
        let mut index = 0u32;
        let mut last_sent = Instant::now();
        loop {
            tokio::select! {
                step = rx.recv() => match step {
                    Some(text) => {
                        self.send(&req, &GenerateEvent::Token { index, text }).await;
                        index += 1;
                        last_sent = Instant::now();
                    }
                    None => break, // the generation finished
                },
                _ = tokio::time::sleep(ALIVE) => {}
            }
            if last_sent.elapsed() >= ALIVE {
                self.send(&req, &GenerateEvent::Alive).await;
                last_sent = Instant::now();
            }
        }
        let outcome = match work.await {
            Ok(o) => o,
            Err(e) => Err(SparkError::Internal(format!("generation task failed: {e}"))),
        };
        match outcome {
            Ok(g) if g.finish_reason == spark::FinishReason::Cancelled => {
                self.failed(&SparkError::Cancelled);
                self.send(&req, &GenerateEvent::Failed(SparkError::Cancelled))
                    .await;
            }
            Ok(g) => {
                let tokens_per_s = if g.decode_s > 0.0 && g.completion_tokens > 1 {
                    (g.completion_tokens - 1) as f64 / g.decode_s
                } else {
                    0.0
                };
                let ttft_ms = queue_wait_ms + g.first_token_s * 1e3;
                self.metrics.update(|t| {
                    t.generations += 1;
                    t.completion_tokens += u64::from(g.completion_tokens);
                    t.prompt_tokens += u64::from(g.prompt_tokens);
                    t.decode_tokens += u64::from(g.completion_tokens.saturating_sub(1));
                    t.decode_seconds += g.decode_s;
                    t.first_token_ms_sum += ttft_ms;
                    t.queue_wait_ms_sum += queue_wait_ms;
                });
                let done = Generated {
                    model: self.name_of(&r),
                    text: g.text,
                    finish_reason: g.finish_reason,
                    usage: Usage {
                        prompt_tokens: g.prompt_tokens,
                        completion_tokens: g.completion_tokens,
                        time_to_first_token_ms: ttft_ms,
                        tokens_per_s,
                        queue_wait_ms,
                    },
                    worker: self.id.clone(),
                };
                self.send(&req, &GenerateEvent::Done(done)).await;
            }
            Err(e) => {
                self.failed(&e);
                self.send(&req, &GenerateEvent::Failed(e)).await;
            }
        }
    }

    fn name_of(&self, r: &GenerateRequest) -> String {
        r.model
            .clone()
            .or_else(|| self.default_text.clone())
            .unwrap_or_default()
    }

    async fn embed(self: Arc<Self>, msg: async_nats::Message) {
        let Ok(req) = self.bus.open_request::<EmbedRequest>(&msg).await else {
            return;
        };
        let r = match &req.message {
            Ok(r) => r.clone(),
            Err(detail) => {
                let e = SparkError::Invalid(format!("not an embed request: {detail}"));
                self.failed(&e);
                self.send(&req, &EmbedEvent::Failed(e)).await;
                return;
            }
        };
        let name = r
            .model
            .clone()
            .or_else(|| self.default_embedder.clone())
            .unwrap_or_default();
        let checked = match self.embedders.get(&name) {
            None => Err(SparkError::UnknownModel {
                model: name.clone(),
                available: self.embedders.keys().cloned().collect(),
            }),
            Some(_) if r.texts.is_empty() => Err(SparkError::Invalid("no texts to embed".into())),
            Some(_) if r.texts.len() > self.args.embed_request_limit => {
                Err(SparkError::BatchTooLarge {
                    texts: r.texts.len() as u32,
                    limit: self.args.embed_request_limit as u32,
                })
            }
            Some(b) => b.submit(r.texts).map_err(|full| SparkError::Overloaded {
                detail: format!(
                    "{} texts queued for embedding on this worker (limit {})",
                    full.queued, full.limit
                ),
                retry_after_ms: 100,
            }),
        };
        let mut pending = match checked {
            Ok(rx) => rx,
            Err(e) => {
                self.failed(&e);
                self.send(&req, &EmbedEvent::Failed(e)).await;
                return;
            }
        };
        self.send(
            &req,
            &EmbedEvent::Accepted {
                worker: self.id.clone(),
            },
        )
        .await;
        let result = loop {
            tokio::select! {
                r = &mut pending => break r,
                _ = tokio::time::sleep(ALIVE) => { self.send(&req, &EmbedEvent::Alive).await; }
            }
        };
        let event = match result {
            Ok(Ok(b)) => {
                self.metrics.update(|t| {
                    t.embed_requests += 1;
                    t.embed_queue_wait_ms_sum += b.queue_wait_ms;
                });
                let dimensions = b.vectors.first().map(|v| v.len()).unwrap_or(0) as u32;
                EmbedEvent::Done(EmbedResult {
                    model: name,
                    dimensions,
                    vectors: b.vectors,
                    prompt_tokens: b.tokens as u32,
                    queue_wait_ms: b.queue_wait_ms,
                    batch_texts: b.batch_texts as u32,
                    worker: self.id.clone(),
                })
            }
            Ok(Err(detail)) => EmbedEvent::Failed(SparkError::Internal(detail)),
            Err(_) => EmbedEvent::Failed(SparkError::Internal("the batcher stopped".into())),
        };
        if let EmbedEvent::Failed(e) = &event {
            self.failed(e);
        }
        self.send(&req, &event).await;
    }
}

/// Removes a request from the in-flight table however its handler ends.
struct Forget<'a>(&'a Worker, String, Arc<AtomicBool>);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.0.inflight.lock() {
            // Only this run's entry: a retry with the same id may have replaced it.
            if f.get(&self.1)
                .is_some_and(|e| Arc::ptr_eq(&e.cancel, &self.2))
            {
                f.remove(&self.1);
            }
        }
    }
}
