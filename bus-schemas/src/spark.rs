//! SPARK's messages: generation, embeddings, the model list, and the per-worker control
//! subject.
//!
//! Generation and embedding answer with a stream of events on the requester's inbox, so a requester
//! always learns which worker took its request and can tell a slow worker (it keeps sending
//! `Alive`) from a dead one (silence). Requests carry an id chosen by the requester and are
//! idempotent: a request whose worker died is sent again with the same id and seed, to
//! another worker of the queue group, and the requester skips the tokens it already has.

use crate::operation::{Limits, Operation, OperationSpec, Refusal, ReplyKind, Streamed};
use crate::table::Party;
use crate::{Component, Subject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::operation::{
    Control, ALIVE_MS, KEEPALIVE_MS, REQUESTER_SILENCE_MS, WORKER_SILENCE_MS,
};

/// The operations, as `spark.<operation>` subjects.
pub const GENERATE: &str = "generate";
pub const EMBED: &str = "embed";
pub const MODELS: &str = "models";

/// `spark.<operation>`.
pub fn operation(op: &str) -> Subject {
    Subject::join(&[Component::Spark.token(), op])
}

/// Where one worker takes cancels and keepalives: `spark.worker.<worker>.control`.
pub fn worker_control(worker: &str) -> Subject {
    crate::operation::worker_control(Component::Spark, worker)
}

/// `spark.generate`: text from a prompt, streamed token by token.
#[derive(Debug, Clone, Copy)]
pub struct Generate;

impl Operation for Generate {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Spark,
        name: GENERATE,
        reply: ReplyKind::Events,
        callers: Party::Callers,
        // Far above any prompt that fits a served model's context.
        limits: Limits {
            max_request_bytes: 256 * 1024,
        },
        doc: "Generates text from a chat or a raw prompt; answers Accepted, Alive, Token… then Done or Failed.",
    };
    type Request = GenerateRequest;
    type Reply = GenerateEvent;
    type Error = SparkError;

    fn failed(error: SparkError) -> Option<GenerateEvent> {
        Some(GenerateEvent::Failed(error))
    }
}

impl Streamed for Generate {
    fn request_id(request: &GenerateRequest) -> &str {
        &request.request_id
    }
    fn accepted(worker: &str) -> GenerateEvent {
        GenerateEvent::Accepted {
            worker: worker.to_string(),
        }
    }
    fn alive() -> GenerateEvent {
        GenerateEvent::Alive
    }
}

/// `spark.embed`: one vector per text, batched across requests on the worker.
#[derive(Debug, Clone, Copy)]
pub struct Embed;

impl Operation for Embed {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Spark,
        name: EMBED,
        reply: ReplyKind::Events,
        callers: Party::Callers,
        // The bus's own payload limit (1 MiB): batches are bounded by count on the worker.
        limits: Limits {
            max_request_bytes: 1024 * 1024,
        },
        doc: "Embeds texts (mean-pooled, L2-normalised); answers Accepted, Alive… then Done or Failed.",
    };
    type Request = EmbedRequest;
    type Reply = EmbedEvent;
    type Error = SparkError;

    fn failed(error: SparkError) -> Option<EmbedEvent> {
        Some(EmbedEvent::Failed(error))
    }
}

impl Streamed for Embed {
    fn request_id(request: &EmbedRequest) -> &str {
        &request.request_id
    }
    fn accepted(worker: &str) -> EmbedEvent {
        EmbedEvent::Accepted {
            worker: worker.to_string(),
        }
    }
    fn alive() -> EmbedEvent {
        EmbedEvent::Alive
    }
}

/// `spark.models`: the models folder one worker serves from.
#[derive(Debug, Clone, Copy)]
pub struct Models;

impl Operation for Models {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Spark,
        name: MODELS,
        reply: ReplyKind::One,
        callers: Party::Callers,
        limits: Limits {
            max_request_bytes: 4 * 1024,
        },
        doc: "Lists the models in the answering worker's folder and whether it serves each.",
    };
    type Request = ModelsRequest;
    type Reply = ModelsReply;
    type Error = SparkError;

    /// The model list has no error form: a refused request is audited and left unanswered.
    fn failed(_: SparkError) -> Option<ModelsReply> {
        None
    }
}

impl From<Refusal> for SparkError {
    fn from(r: Refusal) -> SparkError {
        match r {
            Refusal::Invalid(detail) => SparkError::Invalid(detail),
            Refusal::NotAllowed { caller, operation } => {
                SparkError::NotAllowed { caller, operation }
            }
            Refusal::Overloaded {
                detail,
                retry_after_ms,
            } => SparkError::Overloaded {
                detail,
                retry_after_ms,
            },
            Refusal::Cancelled => SparkError::Cancelled,
            Refusal::Internal(detail) => SparkError::Internal(detail),
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What to continue: a conversation (rendered with the model's own chat template) or raw text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Raw(String),
}

/// `spark.generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateRequest {
    /// Chosen by the requester; the same id on a retry.
    pub request_id: String,
    /// `None`: the worker's default generation model.
    pub model: Option<String>,
    pub prompt: Prompt,
    pub max_tokens: u32,
    /// 0 samples greedily.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    /// 1.0 turns it off.
    pub repeat_penalty: f32,
    /// How many of the last tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Fixed by the requester (a random one if the user gave none) so a retry reproduces the
    /// same tokens.
    pub seed: u64,
    /// Generation ends before the first of these appears; it is not part of the text.
    pub stop: Vec<String>,
}

impl GenerateRequest {
    /// Sane defaults for a small chat model (greedy decoding of a 135M model loops).
    pub fn chat(request_id: String, messages: Vec<ChatMessage>) -> GenerateRequest {
        GenerateRequest {
            request_id,
            model: None,
            prompt: Prompt::Chat(messages),
            max_tokens: 256,
            temperature: 0.7,
            top_p: Some(0.9),
            top_k: None,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model's end-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    Cancelled,
}

/// What a finished generation cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// From the worker taking the request to the first token (queue wait + prefill).
    pub time_to_first_token_ms: f64,
    /// Completion tokens per second of decoding (after the first token).
    pub tokens_per_s: f64,
    /// Time the request waited for a free slot on the worker.
    pub queue_wait_ms: f64,
}

/// The end of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Generated {
    pub model: String,
    /// Exactly the concatenation of the streamed token texts.
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub worker: String,
}

/// The events answering `spark.generate`, in order: `Accepted`, any number of `Alive` and
/// `Token`, then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GenerateEvent {
    Accepted {
        worker: String,
    },
    Alive,
    /// The `index`-th piece of text (0-based; retries resend from 0, requesters skip).
    Token {
        index: u32,
        text: String,
    },
    Done(Generated),
    Failed(SparkError),
}

/// `spark.embed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmbedRequest {
    pub request_id: String,
    pub model: Option<String>,
    pub texts: Vec<String>,
}

/// The vectors, one per text, mean-pooled and L2-normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbedResult {
    pub model: String,
    pub dimensions: u32,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
    pub queue_wait_ms: f64,
    /// How many texts went through the model together with these (batching across requests).
    pub batch_texts: u32,
    pub worker: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmbedEvent {
    Accepted { worker: String },
    Alive,
    Done(EmbedResult),
    Failed(SparkError),
}

/// `spark.models` (answered by any one worker, about the models folder it serves from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelsRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Generation,
    Embedding,
}

/// One model found in the models folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    pub name: String,
    pub kind: ModelKind,
    /// `gguf` or `safetensors`.
    pub format: String,
    pub architecture: String,
    pub parameters: u64,
    /// `Q8_0`, `F32`, …
    pub quantization: String,
    pub context_length: u64,
    pub file: String,
    pub size_bytes: u64,
    /// Whether the answering worker has it loaded and serves it.
    pub served: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelsReply {
    pub worker: String,
    pub models: Vec<ModelInfo>,
}

/// A request SPARK refused or could not finish. The worker keeps serving after each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SparkError {
    #[error("SPARK is overloaded: {detail}; retry after {retry_after_ms} ms or start more workers (`ozone spark scale N`)")]
    Overloaded { detail: String, retry_after_ms: u64 },
    #[error("unknown model {model:?}; available: {}", .available.join(", "))]
    UnknownModel {
        model: String,
        available: Vec<String>,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("max_tokens {requested} is above the limit of {limit}")]
    MaxTokensTooLarge { requested: u32, limit: u32 },
    #[error("the prompt is {tokens} tokens; with max_tokens it must fit the model's context of {context}")]
    PromptTooLong { tokens: u32, context: u32 },
    #[error("{texts} texts in one embedding batch; the limit is {limit}")]
    BatchTooLarge { texts: u32, limit: u32 },
    #[error("{caller} may not call {operation}")]
    NotAllowed { caller: String, operation: String },
    #[error("cancelled")]
    Cancelled,
    #[error("SPARK failed: {0}")]
    Internal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_spark_requests() {
        assert_eq!(operation(GENERATE).as_str(), "spark.generate");
        assert_eq!(
            worker_control("abc123").as_str(),
            "spark.worker.abc123.control"
        );
        assert!(Subject::component_requests(Component::Spark).matches("spark.worker.a.control"));
    }
}
