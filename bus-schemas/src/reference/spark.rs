//! `spark.md`: SPARK's operations and the control subject of streamed operations.

use super::{header, Message};
use crate::operation::{
    Control, Operation, OperationSpec, ReplyKind, ALIVE_MS, KEEPALIVE_MS, MAX_REQUEST_ID_BYTES,
    REQUESTER_SILENCE_MS, WORKER_SILENCE_MS,
};
use crate::spark::{
    ChatMessage, Embed, EmbedEvent, EmbedRequest, EmbedResult, FinishReason, Generate,
    GenerateEvent, GenerateRequest, Generated, ModelInfo, ModelKind, Models, ModelsReply,
    ModelsRequest, Prompt, SparkError, Usage,
};
use std::fmt::Write;

const WORKER: &str = "3f9a0c12d4e5b6a7";

pub(super) fn spec_row(out: &mut String, spec: &OperationSpec) {
    let reply = match spec.reply {
        ReplyKind::One => "one reply",
        ReplyKind::Events => "a stream of events",
    };
    let _ = writeln!(
        out,
        "| `{}` | {reply} | {} bytes | {} |",
        spec.subject(),
        spec.limits.max_request_bytes,
        spec.doc
    );
}

fn protocol() -> String {
    let mut out =
        String::from("| subject | answer | largest request | what it does |\n|---|---|---|---|\n");
    spec_row(&mut out, &Generate::SPEC);
    spec_row(&mut out, &Embed::SPEC);
    spec_row(&mut out, &Models::SPEC);
    let _ = write!(
        out,
        "\n**Streams.** A request to `spark.generate` or `spark.embed` goes to the queue group \
         `spark`; its answers come to the requester's reply inbox, in order: `accepted` (naming \
         the worker that took it), any number of `alive` (at least every {ALIVE_MS} ms while \
         the worker has nothing else to say) and `token` events, then one `done` or `failed`. \
         A refusal before work starts (unknown model, bad field, too large, overloaded) is a \
         lone `failed`. Silence longer than {WORKER_SILENCE_MS} ms means the worker is gone: \
         send the same request again (same `request_id`, 1 to {MAX_REQUEST_ID_BYTES} bytes, \
         and the same `seed`); tokens come again from index 0 and the requester skips those \
         it has.\n\n\
         **Keepalive and cancel.** While it waits, the requester publishes `keepalive` with \
         its request ids every {KEEPALIVE_MS} ms on `spark.worker.<worker>.control` (the \
         worker named by `accepted`); a worker stops work whose requester has been silent for \
         {REQUESTER_SILENCE_MS} ms. `cancel` stops a request at once; the answer is then \
         `failed` with `cancelled`. Only the authenticated requester of a request may keep it \
         alive or cancel it.\n\n"
    );
    out
}

fn generate() -> String {
    let request = GenerateRequest {
        request_id: "c1a5e0d2b7f94e38".into(),
        model: None,
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "Name the capital of France.".into(),
        }]),
        max_tokens: 32,
        temperature: 0.7,
        top_p: Some(0.9),
        top_k: None,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        seed: 42,
        stop: vec![],
    };
    let raw = GenerateRequest {
        prompt: Prompt::Raw("Once upon a time".into()),
        top_p: None,
        temperature: 0.0,
        ..request.clone()
    };
    let mut out = Message {
        name: "GenerateRequest",
        subject: "spark.generate",
        about: "Every field is required (`null` where optional). `prompt` is tagged by its \
                key: `chat` (a list of `{role, content}`, rendered with the model's own chat \
                template) or `raw` (text continued as is). `model: null` picks the worker's \
                default generation model; `temperature` 0 is greedy; `repeat_penalty` 1.0 \
                turns the penalty off.",
    }
    .render(&[("a chat", request), ("raw text, greedy", raw)]);
    out.push_str(
        &Message {
            name: "GenerateEvent",
            subject: "the requester's inbox",
            about: "Tagged by its key (a unit event such as `alive` is the bare string). \
                    The `token` texts concatenate exactly to `done.text`.",
        }
        .render(&[
            (
                "accepted",
                GenerateEvent::Accepted {
                    worker: WORKER.into(),
                },
            ),
            ("alive", GenerateEvent::Alive),
            (
                "token",
                GenerateEvent::Token {
                    index: 0,
                    text: "Paris".into(),
                },
            ),
            (
                "done",
                GenerateEvent::Done(Generated {
                    model: "SmolLM2-135M-Instruct.Q8_0".into(),
                    text: "Paris".into(),
                    finish_reason: FinishReason::Stop,
                    usage: Usage {
                        prompt_tokens: 31,
                        completion_tokens: 2,
                        time_to_first_token_ms: 84.5,
                        tokens_per_s: 48.0,
                        queue_wait_ms: 0.25,
                    },
                    worker: WORKER.into(),
                }),
            ),
            (
                "failed",
                GenerateEvent::Failed(SparkError::MaxTokensTooLarge {
                    requested: 100_000,
                    limit: 2048,
                }),
            ),
            ("cancelled", GenerateEvent::Failed(SparkError::Cancelled)),
        ]),
    );
    out
}

fn embed() -> String {
    let mut out = Message {
        name: "EmbedRequest",
        subject: "spark.embed",
        about: "`model: null` picks the worker's default embedding model.",
    }
    .render(&[(
        "",
        EmbedRequest {
            request_id: "9d04b1f3a2c6e857".into(),
            model: None,
            texts: vec!["a cat".into()],
        },
    )]);
    out.push_str(
        &Message {
            name: "EmbedEvent",
            subject: "the requester's inbox",
            about: "`accepted`, `alive`…, then `done` (one vector per text, mean-pooled and \
                    L2-normalised, as 32-bit floats) or `failed`.",
        }
        .render(&[
            (
                "accepted",
                EmbedEvent::Accepted {
                    worker: WORKER.into(),
                },
            ),
            (
                "done (a 4-dimensional vector, to keep the example short)",
                EmbedEvent::Done(EmbedResult {
                    model: "all-MiniLM-L6-v2".into(),
                    dimensions: 4,
                    vectors: vec![vec![0.5, -0.5, 0.5, 0.5]],
                    prompt_tokens: 4,
                    queue_wait_ms: 1.5,
                    batch_texts: 1,
                    worker: WORKER.into(),
                }),
            ),
            (
                "failed",
                EmbedEvent::Failed(SparkError::BatchTooLarge {
                    texts: 300,
                    limit: 256,
                }),
            ),
        ]),
    );
    out
}

fn models() -> String {
    let mut out = Message {
        name: "ModelsRequest",
        subject: "spark.models",
        about: "An empty map.",
    }
    .render(&[("", ModelsRequest {})]);
    out.push_str(
        &Message {
            name: "ModelsReply",
            subject: "the requester's inbox",
            about: "One reply from one worker: the models in its folder and whether it serves \
                    each.",
        }
        .render(&[(
            "",
            ModelsReply {
                worker: WORKER.into(),
                models: vec![ModelInfo {
                    name: "all-MiniLM-L6-v2".into(),
                    kind: ModelKind::Embedding,
                    format: "safetensors".into(),
                    architecture: "bert".into(),
                    parameters: 22_713_216,
                    quantization: "F32".into(),
                    context_length: 512,
                    file: "all-MiniLM-L6-v2/model.safetensors".into(),
                    size_bytes: 90_868_376,
                    served: true,
                }],
            },
        )]),
    );
    out
}

fn control() -> String {
    Message {
        name: "Control",
        subject: "spark.worker.<worker>.control",
        about: "An event to one worker, from the requester of the named requests.",
    }
    .render(&[
        (
            "keepalive",
            Control::Keepalive {
                request_ids: vec!["c1a5e0d2b7f94e38".into()],
            },
        ),
        (
            "cancel",
            Control::Cancel {
                request_id: "c1a5e0d2b7f94e38".into(),
            },
        ),
    ])
}

pub(super) fn page() -> String {
    let mut out = header(
        "SPARK messages",
        "Generation and embeddings on the `spark` queue group (docs/spark.md says what the \
         pool guarantees). Callers: the components whose `calls` include SPARK (docs/subjects.md).",
    );
    out.push_str("\n## Operations\n\n");
    out.push_str(&protocol());
    out.push_str("## `spark.generate`\n\n");
    out.push_str(&generate());
    out.push_str("## `spark.embed`\n\n");
    out.push_str(&embed());
    out.push_str("## `spark.models`\n\n");
    out.push_str(&models());
    out.push_str("## Keepalive and cancel\n\n");
    out.push_str(&control());
    out
}
