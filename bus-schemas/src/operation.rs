//! Operations: what a component offers on the bus, declared once, beside the subject table.
//!
//! An operation is a type implementing [`Operation`]: its [`OperationSpec`] (name, reply kind,
//! who may call it, limits) and its message types. The component kit (`ozone-service`'s
//! `kit`) serves it from that declaration alone — sealing and opening, the NATS
//! micro-service endpoint, the caller check, admission, typed errors sent back as values,
//! auditing of refused input, and for streamed operations `Accepted`/`Alive`, cancellation,
//! requester keepalives and idempotency by request id. A component writes the handler.
//!
//! A streamed operation's requester talks to the worker that took its request on
//! `<component>.worker.<worker>.control` ([`Control`]): it says it is still listening every
//! [`KEEPALIVE_MS`] and may cancel. The worker says `Alive` every [`ALIVE_MS`] while it has
//! nothing else to say; silence longer than [`WORKER_SILENCE_MS`] means it is gone and the
//! request goes, with the same id, to another worker.

use crate::table::Party;
use crate::{Component, Identity, Subject};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How often a worker says it is still working on a request (prefill, queue, batch).
pub const ALIVE_MS: u64 = 500;
/// Silence from a worker longer than this means it is gone: the request is retried.
pub const WORKER_SILENCE_MS: u64 = 2_500;
/// How often a requester says it is still listening to a worker.
pub const KEEPALIVE_MS: u64 = 1_000;
/// A worker stops work whose requester has been silent this long (it went away).
pub const REQUESTER_SILENCE_MS: u64 = 4_000;
/// Request ids (the idempotency key of streamed operations) are 1 to this many bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// What answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// One reply message.
    One,
    /// A stream of events on the requester's inbox: `Accepted`, any number of `Alive` and
    /// operation events, then one final event (a result or an error).
    Events,
}

/// Bounds the kit enforces before a handler sees a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request accepted, in bytes as it arrived (sealed envelope included).
    pub max_request_bytes: usize,
}

/// The declaration of one operation.
#[derive(Debug, Clone, Copy)]
pub struct OperationSpec {
    pub component: Component,
    /// The operation's token: the subject is `<component>.<name>`.
    pub name: &'static str,
    pub reply: ReplyKind,
    /// Who may call it (relative to the owning component). NATS lets every caller of the
    /// component publish on `<component>.>`; the kit narrows that per operation.
    pub callers: Party,
    pub limits: Limits,
    pub doc: &'static str,
}

impl OperationSpec {
    /// `<component>.<name>`.
    pub fn subject(&self) -> Subject {
        Subject::join(&[self.component.token(), self.name])
    }

    /// Whether the authenticated `sender` (a key-directory name) may call this operation.
    pub fn allows(&self, sender: &str) -> bool {
        let owner = Identity::component(self.component);
        Identity::from_directory_name(sender).is_some_and(|who| self.callers.includes(&who, &owner))
    }
}

/// What the kit refuses on an operation's behalf; every operation's error type can say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request did not decode or broke a declared limit.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The authenticated caller may not call this operation.
    #[error("{caller} may not call {operation}")]
    NotAllowed { caller: String, operation: String },
    /// Admission is full: the handler would neither run nor wait.
    #[error("overloaded: {detail}")]
    Overloaded { detail: String, retry_after_ms: u64 },
    /// The requester cancelled, went away, or retried elsewhere.
    #[error("cancelled")]
    Cancelled,
    /// The handler's task failed.
    #[error("failed: {0}")]
    Internal(String),
}

/// One operation: its declaration and message types.
pub trait Operation: Send + Sync + 'static {
    const SPEC: OperationSpec;
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The one reply, or (for [`ReplyKind::Events`]) each event.
    type Reply: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Error: From<Refusal> + std::error::Error + Send + Sync + 'static;

    /// The reply that carries an error; `None` when the reply has no error form (the refusal
    /// is then only audited and logged).
    fn failed(error: Self::Error) -> Option<Self::Reply>;
}

/// An operation answered with a stream of events.
pub trait Streamed: Operation {
    /// The idempotency key: a retry carries the same id (and the worker that still runs the
    /// first attempt stops it: its requester no longer listens there).
    fn request_id(request: &Self::Request) -> &str;
    /// The first event: `worker` took the request.
    fn accepted(worker: &str) -> Self::Reply;
    /// Still working.
    fn alive() -> Self::Reply;
}

/// On `<component>.worker.<worker>.control`, from the requester of a streamed operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Stop this request now (its requester answers `Failed(Cancelled)` to the user).
    Cancel { request_id: String },
    /// The requester of these requests is still listening.
    Keepalive { request_ids: Vec<String> },
}

/// Where one worker of `component` takes cancels and keepalives:
/// `<component>.worker.<worker>.control`. Worker ids are made by the worker from `[a-z0-9]`
/// only, so they are valid subject tokens.
pub fn worker_control(component: Component, worker: &str) -> Subject {
    Subject::join(&[component.token(), "worker", worker, "control"])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: OperationSpec = OperationSpec {
        component: Component::Spark,
        name: "generate",
        reply: ReplyKind::Events,
        callers: Party::Callers,
        limits: Limits {
            max_request_bytes: 1024,
        },
        doc: "",
    };

    #[test]
    fn the_subject_is_component_dot_name() {
        assert_eq!(SPEC.subject().as_str(), "spark.generate");
        assert_eq!(
            worker_control(Component::Spark, "abc123").as_str(),
            "spark.worker.abc123.control"
        );
    }

    #[test]
    fn only_the_declared_callers_are_allowed() {
        // BRIDGE calls SPARK; SPARK does not call itself; an auditor or device never does.
        assert!(SPEC.allows("bridge"));
        assert!(!SPEC.allows("spark"));
        assert!(!SPEC.allows("auditor-siem"));
        assert!(!SPEC.allows("urn:ozone:auditor:siem"));
        // SPARK takes operators' requests; SCRIBE does not.
        assert!(SPEC.allows("urn:ozone:operator:console"));
        assert!(!SPEC.allows("urn:ozone:device:console"));
        let scribe_op = OperationSpec {
            component: Component::Scribe,
            ..SPEC
        };
        assert!(!scribe_op.allows("urn:ozone:operator:console"));
        assert!(scribe_op.allows("ozone-studio"));
        let only_core = OperationSpec {
            callers: Party::Only(Component::Core),
            ..SPEC
        };
        assert!(only_core.allows("ozone-studio"));
        assert!(!only_core.allows("bridge"));
    }
}
