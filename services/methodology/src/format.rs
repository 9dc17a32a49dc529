//! A methodology document's types. `deny_unknown_fields` everywhere: a misspelt key is refused
//! with its name, never ignored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A methodology: a named, versioned program of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Methodology {
    /// 1–63 of `[a-z0-9-]`, not starting with `-`.
    pub name: String,
    /// Semantic version (`1.2.0`); build metadata (`+…`) is not allowed.
    pub version: String,
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Text the core puts before the prompt of every `spark.generate` step.
    #[serde(default)]
    pub principles: Vec<String>,
    /// The task's inputs, by name (`[a-z_][a-z0-9_]*`).
    #[serde(default)]
    pub inputs: BTreeMap<String, Input>,
    /// At least one; they run in dependency order, independent ones in parallel.
    pub steps: Vec<Step>,
    /// The task's result, by name: templates over inputs and step outputs.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

/// One input of a methodology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Whether a task must give it; by default an input is required unless it has a default.
    #[serde(default)]
    pub required: Option<bool>,
    /// The value a task that does not give the input gets (of the input's type).
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub description: String,
}

impl Input {
    /// Whether a task must give this input.
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// What an input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// Free text of any length (a document, a question).
    Text,
    /// One line: a name, an identifier.
    String,
    Number,
    Bool,
    /// A file path, resolved by whoever reads it (NEXUS).
    Path,
    /// A list of values.
    List,
}

impl InputType {
    /// Whether `value` is of this type.
    pub fn admits(self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, value) {
            (InputType::Text | InputType::Path, Value::String(_)) => true,
            (InputType::String, Value::String(s)) => !s.contains('\n'),
            (InputType::Number, Value::Number(_)) => true,
            (InputType::Bool, Value::Bool(_)) => true,
            (InputType::List, Value::Array(_)) => true,
            _ => false,
        }
    }
}

/// One step: a call to a component operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the methodology, `[a-z_][a-z0-9_]*`.
    pub id: String,
    /// `<component>.<operation>` as the subject table names it (`spark.generate`).
    pub call: String,
    /// The operation's request fields. A string is a template; a string that is one
    /// `{{ expression }}` and nothing else keeps the expression's type (a number, a list).
    #[serde(default)]
    pub with: BTreeMap<String, serde_json::Value>,
    /// Steps whose outputs this one needs; it starts when they have finished.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// A condition (a template expression); the step is skipped when it is false.
    #[serde(default)]
    pub when: Option<String>,
    /// How long one attempt may take (`30s`, `2m`); 5 minutes when absent.
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retry: Option<Retry>,
    /// A checkpoint on the output; failing it fails (or retries) the step.
    #[serde(default)]
    pub check: Option<Check>,
    /// The task waits, durably, for someone to approve the step before it runs.
    #[serde(default)]
    pub requires_approval: bool,
    /// The step changes something outside the platform (the policy gate decides).
    #[serde(default)]
    pub side_effects: bool,
}

/// How often a failed step is tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all (1 to 10), the first included.
    pub attempts: u32,
    /// The wait before the second attempt (`1s`), doubled before each next one.
    #[serde(default = "default_backoff")]
    pub backoff: String,
}

fn default_backoff() -> String {
    "1s".into()
}

/// A validation checkpoint on a step's output (its text: the `text` field of an object
/// output that has one, else the output as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    /// A JSON Schema the output (parsed as JSON) must satisfy.
    #[serde(default)]
    pub json_schema: Option<serde_json::Value>,
    /// In characters.
    #[serde(default)]
    pub min_length: Option<usize>,
    #[serde(default)]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub on_fail: OnFail,
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// The step fails (and with it the task).
    #[default]
    Fail,
    /// The step is tried again, within its `retry` attempts.
    Retry,
}
