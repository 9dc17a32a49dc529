//! The OZONE STUDIO core's operations: tasks (`ozone-studio.task.*`), each a run of a
//! methodology (docs/methodologies.md, docs/tasks.md).

use crate::operation::{Limits, Operation, OperationSpec, Refusal, ReplyKind};
use crate::table::Party;
use crate::Component;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const TASK_SUBMIT: &str = "task.submit";
pub const TASK_GET: &str = "task.get";
pub const TASK_LIST: &str = "task.list";
pub const TASK_CANCEL: &str = "task.cancel";
pub const TASK_APPROVE: &str = "task.approve";

/// The largest submission, in bytes as it arrives (its inputs, mostly).
pub const MAX_SUBMIT_BYTES: usize = 256 * 1024;

/// `ozone-studio.task.submit`: run a registered methodology with these inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubmitRequest {
    pub methodology: String,
    /// A registered version; the methodology's default one when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// By input name; each of the input's declared type. Values are data: a `{{ … }}` in
    /// them is text, never a template.
    #[serde(default)]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubmitReply {
    Submitted { task_id: String },
    Failed(CoreError),
}

/// `ozone-studio.task.get`, `.cancel`: one task by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRef {
    pub task_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GetTaskReply {
    Found(TaskView),
    Failed(CoreError),
}

/// `ozone-studio.task.list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ListTasksRequest {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListTasksReply {
    Listed(Vec<TaskSummary>),
    Failed(CoreError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReply {
    /// The task is cancelled (or had already ended: `state` says how).
    Cancelled {
        state: TaskState,
    },
    Failed(CoreError),
}

/// `ozone-studio.task.approve`: let a step that `requires_approval` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApproveRequest {
    pub task_id: String,
    pub step: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApproveReply {
    Approved,
    Failed(CoreError),
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Running,
    /// A step waits for `ozone-studio.task.approve`.
    WaitingForApproval,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    /// Failed an attempt; another one starts after the backoff.
    Retrying,
    WaitingForApproval,
    Succeeded,
    Failed,
    /// Its `when` was false.
    Skipped,
    Cancelled,
}

impl StepState {
    /// Finished in a way its dependents may start after.
    pub fn lets_dependents_run(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Skipped)
    }
}

/// One step of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepView {
    pub id: String,
    pub call: String,
    pub state: StepState,
    /// Attempts started so far.
    pub attempts: u32,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// What the operation answered (a `spark.generate` step: the `Generated` message).
    pub output: Option<serde_json::Value>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Who approved it, for a step that `requires_approval`.
    pub approved_by: Option<String>,
}

/// A task as the core holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskView {
    pub id: String,
    pub methodology: String,
    pub version: String,
    /// The authenticated submitter's key-directory name.
    pub submitted_by: String,
    pub submitted_at_ms: u64,
    pub state: TaskState,
    pub steps: Vec<StepView>,
    /// The methodology's outputs, once the task succeeded.
    pub outputs: Option<BTreeMap<String, serde_json::Value>>,
    /// Why the task failed or who cancelled it.
    pub error: Option<String>,
    pub finished_at_ms: Option<u64>,
}

/// One line of `ozone-studio.task.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskSummary {
    pub id: String,
    pub methodology: String,
    pub version: String,
    pub state: TaskState,
    pub submitted_by: String,
    pub submitted_at_ms: u64,
}

/// Why the core refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CoreError {
    #[error("no methodology {name} is registered (`ozone methodology list`)")]
    UnknownMethodology { name: String },
    /// An input is missing, unknown or of the wrong type.
    #[error("input {input}: {problem}")]
    InvalidInput { input: String, problem: String },
    #[error("no task {task_id}")]
    NoSuchTask { task_id: String },
    #[error("task {task_id} has no step {step} waiting for approval")]
    NothingToApprove { task_id: String, step: String },
    #[error("{running} tasks are running, the most the core runs at once; try again later")]
    Overloaded { running: usize },
    /// The request itself was refused: too large, malformed, not allowed.
    #[error("{detail}")]
    Invalid { detail: String },
    /// The registry or the task store could not be reached.
    #[error("{detail}")]
    Unavailable { detail: String },
}

impl From<Refusal> for CoreError {
    fn from(r: Refusal) -> CoreError {
        CoreError::Invalid {
            detail: r.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors are maps tagged by `kind` (no newtype variants, which a tagged encoding cannot
    /// carry): each one encodes.
    #[test]
    fn every_error_encodes() {
        let s = || "x".to_string();
        for e in [
            CoreError::UnknownMethodology { name: s() },
            CoreError::InvalidInput {
                input: s(),
                problem: s(),
            },
            CoreError::NoSuchTask { task_id: s() },
            CoreError::NothingToApprove {
                task_id: s(),
                step: s(),
            },
            CoreError::Overloaded { running: 1 },
            CoreError::Invalid { detail: s() },
            CoreError::Unavailable { detail: s() },
        ] {
            let reply = SubmitReply::Failed(e.clone());
            let bytes = rmp_serde::to_vec_named(&reply).unwrap_or_default();
            let back: Result<SubmitReply, _> = rmp_serde::from_slice(&bytes);
            assert_eq!(back.ok(), Some(reply), "{e:?}");
        }
    }
}

macro_rules! task_operation {
    ($op:ident, $name:expr, $bytes:expr, $doc:expr, $req:ty, $reply:ty) => {
        #[derive(Debug, Clone, Copy)]
        pub struct $op;

        impl Operation for $op {
            const SPEC: OperationSpec = OperationSpec {
                component: Component::Core,
                name: $name,
                reply: ReplyKind::One,
                callers: Party::Callers,
                limits: Limits {
                    max_request_bytes: $bytes,
                },
                doc: $doc,
            };
            type Request = $req;
            type Reply = $reply;
            type Error = CoreError;

            fn failed(e: CoreError) -> Option<$reply> {
                Some(<$reply>::Failed(e))
            }
        }
    };
}

task_operation!(
    Submit,
    TASK_SUBMIT,
    MAX_SUBMIT_BYTES,
    "Starts a task: a registered methodology run with the given inputs.",
    SubmitRequest,
    SubmitReply
);
task_operation!(
    GetTask,
    TASK_GET,
    4 * 1024,
    "A task's state, steps, outputs.",
    TaskRef,
    GetTaskReply
);
task_operation!(
    ListTasks,
    TASK_LIST,
    4 * 1024,
    "Every task the core holds, newest first.",
    ListTasksRequest,
    ListTasksReply
);
task_operation!(
    CancelTask,
    TASK_CANCEL,
    4 * 1024,
    "Cancels a task; running steps are stopped (a generation is cancelled at SPARK).",
    TaskRef,
    CancelReply
);
task_operation!(
    ApproveStep,
    TASK_APPROVE,
    4 * 1024,
    "Lets a step that requires approval run.",
    ApproveRequest,
    ApproveReply
);
