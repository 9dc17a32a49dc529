//! Calling the SPARK pool from any component (and the CLI): streamed generation with
//! cancellation, embeddings, the model list.
//!
//! No request is lost when a worker dies: every request carries an id and a seed fixed by the
//! client; a worker that goes silent for `WORKER_SILENCE_MS` is presumed dead and the same
//! request goes to the queue group again (NATS hands it to a live worker). The retried
//! generation reproduces the same tokens from the same seed, and the client skips the ones
//! it already delivered. An "overloaded" answer is retried a few times (another worker may
//! be free) and then returned.

use ozone_bus_schemas::spark::{
    self, Control, EmbedEvent, EmbedRequest, EmbedResult, GenerateEvent, GenerateRequest,
    Generated, ModelsReply, ModelsRequest, Prompt, SparkError,
};
use ozone_nats::bus::{Bus, BusError, TypedSubscriber};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Spark(#[from] SparkError),
    #[error("no SPARK worker is running (start one: `ozone up`, or `ozone spark scale 1`)")]
    NoWorkers,
    #[error("SPARK workers stopped answering {attempts} times in a row; giving up")]
    Unanswered { attempts: u32 },
    #[error("{seen} of {wanted} SPARK workers answered in time (last: {last})")]
    TooFewWorkers {
        seen: usize,
        wanted: usize,
        last: String,
    },
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Retry policy.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Silence after which the worker is presumed dead.
    pub silence: Duration,
    /// Tries on worker death or missing workers.
    pub attempts: u32,
    /// Tries on "overloaded".
    pub overload_attempts: u32,
    /// How long "no workers" (nobody in the queue group right now) is retried, with backoff,
    /// before it is the answer: covers workers resubscribing after a nats-server restart.
    pub no_workers_wait: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            silence: Duration::from_millis(spark::WORKER_SILENCE_MS),
            attempts: 5,
            overload_attempts: 3,
            no_workers_wait: Duration::from_secs(5),
        }
    }
}

/// A handle on the SPARK pool over an encrypted bus connection.
#[derive(Debug, Clone)]
pub struct SparkClient {
    bus: Bus,
    opts: ClientOptions,
    retried: Arc<AtomicU64>,
}

/// The generation `ozone bench spark` measures, over the bus and in-process alike (same
/// prompt, seed and token count).
pub fn bench_request(tokens: u32) -> GenerateRequest {
    GenerateRequest {
        request_id: new_request_id(),
        model: None,
        prompt: Prompt::Raw("Once upon a time, in a small village by the sea, there lived".into()),
        max_tokens: tokens,
        temperature: 0.8,
        top_p: Some(0.95),
        top_k: None,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        seed: 42,
        stop: Vec::new(),
    }
}

/// A random id/seed (the same on every retry of one request).
pub fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

pub fn new_request_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// What an event stream says, common to generation and embedding.
enum Heard<T> {
    Accepted(String),
    Alive,
    Token(u32, String),
    Done(T),
    Failed(SparkError),
}

trait Event: DeserializeOwned + Send + 'static {
    type Done;
    /// Whether the worker stops this kind of work when the requester goes quiet (only then
    /// are keepalives worth sending).
    const KEEPALIVE: bool;
    fn heard(self) -> Heard<Self::Done>;
}

impl Event for GenerateEvent {
    type Done = Generated;
    const KEEPALIVE: bool = true;
    fn heard(self) -> Heard<Generated> {
        match self {
            GenerateEvent::Accepted { worker } => Heard::Accepted(worker),
            GenerateEvent::Alive => Heard::Alive,
            GenerateEvent::Token { index, text } => Heard::Token(index, text),
            GenerateEvent::Done(g) => Heard::Done(g),
            GenerateEvent::Failed(e) => Heard::Failed(e),
        }
    }
}

impl Event for EmbedEvent {
    type Done = EmbedResult;
    const KEEPALIVE: bool = false;
    fn heard(self) -> Heard<EmbedResult> {
        match self {
            EmbedEvent::Accepted { worker } => Heard::Accepted(worker),
            EmbedEvent::Alive => Heard::Alive,
            EmbedEvent::Done(e) => Heard::Done(e),
            EmbedEvent::Failed(e) => Heard::Failed(e),
        }
    }
}

/// How one attempt ended.
enum Attempt<T> {
    Done(T),
    Failed(SparkError),
    /// The worker went silent or none answered: try again.
    Lost {
        no_workers: bool,
    },
}

impl SparkClient {
    pub fn new(bus: Bus) -> SparkClient {
        SparkClient::with_options(bus, ClientOptions::default())
    }

    pub fn with_options(bus: Bus, opts: ClientOptions) -> SparkClient {
        SparkClient {
            bus,
            opts,
            retried: Arc::default(),
        }
    }

    /// How many requests were sent again because their worker died or none answered.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Generates, calling `on_token` with each piece of text as it arrives. Setting `cancel`
    /// to true stops the generation (the result is `Spark(Cancelled)`); dropping the future
    /// stops it too (the worker hears no keepalive and gives up).
    pub async fn generate(
        &self,
        req: GenerateRequest,
        cancel: Option<watch::Receiver<bool>>,
        mut on_token: impl FnMut(&str) + Send,
    ) -> Result<Generated, ClientError> {
        let mut delivered = 0u32;
        let mut sink = |index: u32, text: &str| {
            // A retry starts again from token 0: skip what the user already has.
            if index >= delivered {
                on_token(text);
                delivered = index + 1;
            }
        };
        self.call::<_, GenerateEvent>(
            &spark::operation(spark::GENERATE),
            &req,
            &req.request_id,
            cancel,
            &mut sink,
        )
        .await
    }

    /// Embeds `texts` (one vector each, norm 1).
    pub async fn embed(
        &self,
        model: Option<String>,
        texts: Vec<String>,
    ) -> Result<EmbedResult, ClientError> {
        let req = EmbedRequest {
            request_id: new_request_id(),
            model,
            texts,
        };
        self.call::<_, EmbedEvent>(
            &spark::operation(spark::EMBED),
            &req,
            &req.request_id,
            None,
            &mut |_, _| {},
        )
        .await
    }

    /// The models of the folder one worker serves from.
    pub async fn models(&self) -> Result<ModelsReply, ClientError> {
        self.bus
            .request(
                &spark::operation(spark::MODELS),
                &ModelsRequest {},
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| match e {
                BusError::NoResponders(_) => ClientError::NoWorkers,
                e => e.into(),
            })
    }

    /// Waits until `n` distinct workers have answered `spark.models` (workers starting up).
    pub async fn wait_for_workers(&self, n: usize, limit: Duration) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = std::collections::HashSet::new();
        let mut last = String::from("none answered");
        while seen.len() < n {
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::TooFewWorkers {
                    seen: seen.len(),
                    wanted: n,
                    last,
                });
            }
            match self.models().await {
                Ok(r) => {
                    seen.insert(r.worker);
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(())
    }

    async fn call<Req: Serialize, E: Event>(
        &self,
        subject: &ozone_bus_schemas::Subject,
        req: &Req,
        request_id: &str,
        mut cancel: Option<watch::Receiver<bool>>,
        sink: &mut (dyn FnMut(u32, &str) + Send),
    ) -> Result<E::Done, ClientError> {
        let mut lost = 0;
        let mut overloaded = 0;
        // Since when (and how long to wait before the next try) nobody has been serving.
        let mut no_workers: Option<(tokio::time::Instant, Duration)> = None;
        loop {
            let stream = self.bus.request_stream::<Req, E>(subject, req).await?;
            match self.attempt(stream, request_id, &mut cancel, sink).await? {
                Attempt::Done(d) => return Ok(d),
                Attempt::Failed(SparkError::Overloaded {
                    retry_after_ms,
                    detail,
                }) => {
                    overloaded += 1;
                    if overloaded >= self.opts.overload_attempts {
                        return Err(SparkError::Overloaded {
                            detail,
                            retry_after_ms,
                        }
                        .into());
                    }
                    tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
                }
                Attempt::Failed(e) => return Err(e.into()),
                Attempt::Lost { .. } if cancel.as_ref().is_some_and(|c| *c.borrow()) => {
                    return Err(SparkError::Cancelled.into());
                }
                Attempt::Lost { no_workers: true } => {
                    let now = tokio::time::Instant::now();
                    let (since, backoff) = no_workers.unwrap_or((now, Duration::from_millis(50)));
                    if now + backoff >= since + self.opts.no_workers_wait {
                        return Err(ClientError::NoWorkers);
                    }
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    no_workers = Some((since, (backoff * 2).min(Duration::from_secs(1))));
                }
                Attempt::Lost { no_workers: false } => {
                    no_workers = None;
                    lost += 1;
                    if lost >= self.opts.attempts {
                        return Err(ClientError::Unanswered { attempts: lost });
                    }
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        request = request_id,
                        "SPARK worker lost; sending the request again"
                    );
                }
            }
        }
    }

    async fn attempt<E: Event>(
        &self,
        mut stream: TypedSubscriber<E>,
        request_id: &str,
        cancel: &mut Option<watch::Receiver<bool>>,
        sink: &mut (dyn FnMut(u32, &str) + Send),
    ) -> Result<Attempt<E::Done>, ClientError> {
        let mut worker: Option<String> = None;
        let mut keepalive = tokio::time::interval(Duration::from_millis(spark::KEEPALIVE_MS));
        let mut cancelled = false;
        // Measured from the last message, not per wait: the keepalive ticks must not reset it.
        let mut last_heard = tokio::time::Instant::now();
        loop {
            let cancel_changed = async {
                match cancel.as_mut() {
                    Some(c) if !cancelled => c.changed().await.is_ok() && *c.borrow(),
                    _ => futures::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(last_heard + self.opts.silence) => {
                    return Ok(Attempt::Lost { no_workers: false });
                }
                heard = stream.next() => {
                    let msg = match heard {
                        None => return Ok(Attempt::Lost { no_workers: false }),
                        Some(Err(BusError::NoResponders(_))) => return Ok(Attempt::Lost { no_workers: true }),
                        Some(Err(e)) => {
                            tracing::warn!("SPARK answer refused: {e}");
                            continue;
                        }
                        Some(Ok(m)) => m.message,
                    };
                    last_heard = tokio::time::Instant::now();
                    match msg.heard() {
                        Heard::Accepted(w) => worker = Some(w),
                        Heard::Alive => {}
                        Heard::Token(i, t) => sink(i, &t),
                        Heard::Done(d) => return Ok(Attempt::Done(d)),
                        Heard::Failed(e) => return Ok(Attempt::Failed(e)),
                    }
                }
                _ = keepalive.tick(), if E::KEEPALIVE => {
                    if let Some(w) = &worker {
                        let c = Control::Keepalive { request_ids: vec![request_id.to_string()] };
                        if let Err(e) = self.bus.publish_nowait(&spark::worker_control(w), &c).await {
                            tracing::debug!("keepalive: {e}");
                        }
                    }
                }
                stop = cancel_changed => {
                    if stop {
                        cancelled = true;
                        if let Some(w) = &worker {
                            let c = Control::Cancel { request_id: request_id.to_string() };
                            self.bus.publish_nowait(&spark::worker_control(w), &c).await?;
                        } else {
                            return Ok(Attempt::Failed(SparkError::Cancelled));
                        }
                    }
                }
            }
        }
    }
}
