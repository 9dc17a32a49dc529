//! A task as the core keeps it: what callers see ([`TaskView`]) plus what running it needs
//! (the methodology's document as it was when the task started, and the inputs).

use ozone_bus_schemas::core::{StepState, StepView, TaskState, TaskView};
use ozone_methodology::Methodology;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub view: TaskView,
    /// The methodology, fixed for the task's life (a new version does not change a running
    /// task).
    pub methodology: Methodology,
    /// Every input, defaults applied.
    pub inputs: BTreeMap<String, serde_json::Value>,
}

impl TaskRecord {
    pub fn new(
        id: String,
        methodology: Methodology,
        inputs: BTreeMap<String, serde_json::Value>,
        submitted_by: String,
        now_ms: u64,
    ) -> TaskRecord {
        let steps = methodology
            .steps
            .iter()
            .map(|s| StepView {
                id: s.id.clone(),
                call: s.call.clone(),
                state: StepState::Pending,
                attempts: 0,
                started_at_ms: None,
                finished_at_ms: None,
                output: None,
                error: None,
                approved_by: None,
            })
            .collect();
        TaskRecord {
            view: TaskView {
                id,
                methodology: methodology.name.clone(),
                version: methodology.version.clone(),
                submitted_by,
                submitted_at_ms: now_ms,
                state: TaskState::Running,
                steps,
                outputs: None,
                error: None,
                finished_at_ms: None,
            },
            methodology,
            inputs,
        }
    }

    /// What templates read: `inputs`, `steps.<id>.output` (finished steps), `principles`.
    pub fn context(&self) -> serde_json::Value {
        let steps: serde_json::Map<String, serde_json::Value> = self
            .view
            .steps
            .iter()
            .map(|s| {
                let output = s.output.clone().unwrap_or(serde_json::Value::Null);
                (s.id.clone(), serde_json::json!({ "output": output }))
            })
            .collect();
        serde_json::json!({
            "inputs": self.inputs,
            "steps": steps,
            "principles": self.methodology.principles,
        })
    }

    /// A restarted core resumes this task: steps that were running start again (with their
    /// next attempt), finished ones keep their result.
    pub fn prepare_resume(&mut self) {
        for s in &mut self.view.steps {
            if matches!(s.state, StepState::Running | StepState::Retrying) {
                s.state = StepState::Pending;
            }
        }
        if self.view.state == TaskState::WaitingForApproval {
            self.view.state = TaskState::Running;
        }
    }
}
