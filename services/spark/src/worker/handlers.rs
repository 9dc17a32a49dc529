//! SPARK's operations as kit handlers: check a request before it is accepted, then work and
//! stream. The kit answers everything else (opening, the caller check, `Accepted`, admission,
//! `Alive`, cancellation, refusals); every refusal is an answer and the worker keeps serving
//! after each.

use super::Worker;
use crate::engine::{Step, TextModel};
use futures::future::BoxFuture;
use ozone_bus_schemas::spark::{
    self, Embed, EmbedEvent, EmbedRequest, EmbedResult, Generate, GenerateEvent, GenerateRequest,
    Generated, Models, ModelsReply, SparkError, Usage,
};
use ozone_service::kit::{Call, Handler, StreamHandler};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Stop sequences: how many and how long (each is searched for after every token).
const MAX_STOPS: usize = 8;
const MAX_STOP_BYTES: usize = 64;

/// A generate request checked against the served models: its model and encoded prompt.
#[derive(Debug)]
pub struct CheckedGenerate {
    model: Arc<TextModel>,
    prompt: Vec<u32>,
    request: GenerateRequest,
}

impl Worker {
    fn count_failure(&self, e: &SparkError) {
        self.metrics.update(|t| match e {
            SparkError::Overloaded { .. } => t.overloaded += 1,
            SparkError::Cancelled => t.cancelled += 1,
            _ => t.failed += 1,
        });
    }

    fn text_model(&self, r: &GenerateRequest) -> Result<Arc<TextModel>, SparkError> {
        let name = self.name_of(r);
        self.text
            .get(&name)
            .cloned()
            .ok_or_else(|| SparkError::UnknownModel {
                model: name,
                available: self.text.keys().cloned().collect(),
            })
    }

    fn check_sampling(&self, r: &GenerateRequest) -> Result<(), SparkError> {
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
        Ok(())
    }

    fn name_of(&self, r: &GenerateRequest) -> String {
        r.model
            .clone()
            .or_else(|| self.default_text.clone())
            .unwrap_or_default()
    }

    async fn generate(
        self: Arc<Self>,
        checked: CheckedGenerate,
        call: Call<Generate>,
    ) -> Result<GenerateEvent, SparkError> {
        let CheckedGenerate {
            model,
            prompt,
            request: r,
        } = checked;
        let queue_wait_ms = call.queue_wait().as_secs_f64() * 1e3;
        // Only pieces cross to the async side; the kit says `Alive` while none come.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let work = {
            let (r, cancel) = (r.clone(), call.cancel_flag());
            tokio::task::spawn_blocking(move || {
                model.generate(&r, &prompt, &cancel, &mut |step| {
                    if let Step::Piece(p) = step {
                        let _ = tx.send(p.to_string());
                    }
                })
            })
        };
        let mut index = 0u32;
        while let Some(text) = rx.recv().await {
            call.send(&GenerateEvent::Token { index, text }).await;
            index += 1;
        }
        let g = work
            .await
            .map_err(|e| SparkError::Internal(format!("generation task failed: {e}")))??;
        if g.finish_reason == spark::FinishReason::Cancelled {
            return Err(SparkError::Cancelled);
        }
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
        Ok(GenerateEvent::Done(Generated {
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
        }))
    }
}

impl StreamHandler<Generate> for Worker {
    type Checked = CheckedGenerate;

    fn check(&self, request: GenerateRequest) -> Result<CheckedGenerate, SparkError> {
        let model = self.text_model(&request)?;
        self.check_sampling(&request)?;
        let prompt = model.encode_prompt(&request.prompt)?;
        if prompt.len() >= model.context {
            return Err(SparkError::PromptTooLong {
                tokens: prompt.len() as u32,
                context: model.context as u32,
            });
        }
        Ok(CheckedGenerate {
            model,
            prompt,
            request,
        })
    }

    fn run(
        self: Arc<Self>,
        checked: CheckedGenerate,
        call: Call<Generate>,
    ) -> BoxFuture<'static, Result<GenerateEvent, SparkError>> {
        Box::pin(self.generate(checked, call))
    }

    fn failed(&self, e: &SparkError) {
        self.count_failure(e);
    }
}

/// An embed request queued on its model's batcher: the batch's answer arrives here.
#[derive(Debug)]
pub struct QueuedEmbed {
    model: String,
    pending: oneshot::Receiver<Result<super::batcher::BatchResult, String>>,
}

impl StreamHandler<Embed> for Worker {
    type Checked = QueuedEmbed;

    /// Queues the texts at once (the batcher's bounded queue is this operation's admission).
    fn check(&self, r: EmbedRequest) -> Result<QueuedEmbed, SparkError> {
        let name = r
            .model
            .clone()
            .or_else(|| self.default_embedder.clone())
            .unwrap_or_default();
        let batcher = self
            .embedders
            .get(&name)
            .ok_or_else(|| SparkError::UnknownModel {
                model: name.clone(),
                available: self.embedders.keys().cloned().collect(),
            })?;
        if r.texts.is_empty() {
            return Err(SparkError::Invalid("no texts to embed".into()));
        }
        if r.texts.len() > self.args.embed_request_limit {
            return Err(SparkError::BatchTooLarge {
                texts: r.texts.len() as u32,
                limit: self.args.embed_request_limit as u32,
            });
        }
        let pending = batcher
            .submit(r.texts)
            .map_err(|full| SparkError::Overloaded {
                detail: format!(
                    "{} texts queued for embedding on this worker (limit {})",
                    full.queued, full.limit
                ),
                retry_after_ms: 100,
            })?;
        Ok(QueuedEmbed {
            model: name,
            pending,
        })
    }

    fn run(
        self: Arc<Self>,
        queued: QueuedEmbed,
        _call: Call<Embed>,
    ) -> BoxFuture<'static, Result<EmbedEvent, SparkError>> {
        Box::pin(async move {
            let b = match queued.pending.await {
                Ok(Ok(b)) => b,
                Ok(Err(detail)) => return Err(SparkError::Internal(detail)),
                Err(_) => return Err(SparkError::Internal("the batcher stopped".into())),
            };
            self.metrics.update(|t| {
                t.embed_requests += 1;
                t.embed_queue_wait_ms_sum += b.queue_wait_ms;
            });
            let dimensions = b.vectors.first().map(|v| v.len()).unwrap_or(0) as u32;
            Ok(EmbedEvent::Done(EmbedResult {
                model: queued.model,
                dimensions,
                vectors: b.vectors,
                prompt_tokens: b.tokens as u32,
                queue_wait_ms: b.queue_wait_ms,
                batch_texts: b.batch_texts as u32,
                worker: self.id.clone(),
            }))
        })
    }

    fn failed(&self, e: &SparkError) {
        self.count_failure(e);
    }
}

impl Handler<Models> for Worker {
    fn handle(
        self: Arc<Self>,
        _: ozone_bus_schemas::spark::ModelsRequest,
        _caller: Arc<str>,
    ) -> BoxFuture<'static, Result<ModelsReply, SparkError>> {
        Box::pin(async move {
            Ok(ModelsReply {
                worker: self.id.clone(),
                models: self.catalog.iter().map(|m| m.info.clone()).collect(),
            })
        })
    }
}
