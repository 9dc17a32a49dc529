//! The bootstrap protocol's messages: each component's state on `ecosystem.phase.<component>`
//! (retained, audited), its heartbeat on `ecosystem.heartbeat.<component>`, the core's phase
//! transitions on `ecosystem.phases`, and the lifecycle ping every component answers.

use crate::{Component, Subject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Schema version of these messages.
pub const PHASE_SCHEMA: u16 = 1;

/// Retained last state per phase subject (OZONE account).
pub const PHASE_STREAM: &str = "OZONE_PHASE";

/// How often a component says it is alive, and after how long without a word it counts as
/// gone.
pub const HEARTBEAT_MS: u64 = 1_000;
pub const HEARTBEAT_STALE_MS: u64 = 3_500;

/// Where a component stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ComponentState {
    /// Process started, connecting and loading its state.
    Starting,
    /// Waiting for these components of earlier phases to be ready; serves nothing.
    Waiting { on: Vec<String> },
    /// Serving.
    Ready,
    /// Not serving: it died or lost a dependency (the reason says which).
    Degraded { reason: String },
    /// Gave up (e.g. a dependency never came up); the reason names what it waited for.
    Failed { reason: String },
    /// Stopped on request.
    Stopped,
}

impl ComponentState {
    pub fn label(&self) -> &'static str {
        match self {
            ComponentState::Starting => "starting",
            ComponentState::Waiting { .. } => "waiting",
            ComponentState::Ready => "ready",
            ComponentState::Degraded { .. } => "degraded",
            ComponentState::Failed { .. } => "failed",
            ComponentState::Stopped => "stopped",
        }
    }
}

/// A component's state change, on `ecosystem.phase.<component>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseEvent {
    pub component: String,
    pub phase: u8,
    /// Random per process: tells a restarted component from its predecessor.
    pub instance: String,
    pub version: String,
    pub pid: u32,
    pub at_ms: u64,
    pub state: ComponentState,
}

/// "Still here", on `ecosystem.heartbeat.<component>` every [`HEARTBEAT_MS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    pub component: String,
    pub instance: String,
    pub ready: bool,
    pub at_ms: u64,
}

/// The core's announcement that a phase became ready (or stopped being), on
/// `ecosystem.phases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseTransition {
    /// Always the core, which announces transitions.
    pub component: String,
    pub phase: u8,
    pub ready: bool,
    pub at_ms: u64,
}

/// The lifecycle request every component answers on `<component>.ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ping {
    pub from: String,
}

/// Served only when ready; otherwise says what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum PingReply {
    Pong {
        component: String,
        instance: String,
        served_at_ms: u64,
    },
    NotReady {
        component: String,
        waiting_on: Vec<String>,
    },
}

impl Subject {
    /// A component's heartbeat: `ecosystem.heartbeat.<component>`.
    pub fn heartbeat(c: Component) -> Subject {
        Subject::join(&["ecosystem", "heartbeat", c.token()])
    }

    /// Every heartbeat: `ecosystem.heartbeat.>`.
    pub fn heartbeat_all() -> Subject {
        Subject::join(&["ecosystem", "heartbeat", ">"])
    }

    /// The core's phase transitions: `ecosystem.phases`.
    pub fn phase_transitions() -> Subject {
        Subject::join(&["ecosystem", "phases"])
    }

    /// The lifecycle ping of a component: `<component>.ping`.
    pub fn ping(c: Component) -> Subject {
        Subject::join(&[c.token(), "ping"])
    }
}

/// Instance ids the supervisor uses when it speaks for a process that died.
const SUPERVISOR_PREFIX: &str = "supervisor:";

impl PhaseEvent {
    /// The supervisor's announcement, on a dead process's behalf, that it is gone.
    pub fn process_died(c: Component, pid: u32, version: &str, at_ms: u64, reason: String) -> Self {
        PhaseEvent {
            component: c.name().to_string(),
            phase: c.phase(),
            instance: format!("{SUPERVISOR_PREFIX}{pid}"),
            version: version.to_string(),
            pid,
            at_ms,
            state: ComponentState::Degraded { reason },
        }
    }
}

impl ComponentState {
    /// The state with its detail, for people: `waiting for spark, cognis`.
    pub fn describe(&self) -> String {
        match self {
            ComponentState::Waiting { on } => format!("waiting for {}", on.join(", ")),
            ComponentState::Degraded { reason } => format!("degraded: {reason}"),
            ComponentState::Failed { reason } => format!("failed: {reason}"),
            s => s.label().to_string(),
        }
    }
}

/// The announced state of each instance of one component, folded from its phase events: an
/// instance's own announcements, the supervisor's word for a dead process (by pid), and
/// `stopped` removing the instance. The one rule the components' view and `ozone status` share.
#[derive(Debug, Clone, Default)]
pub struct Instances {
    pub by_instance: std::collections::BTreeMap<String, PhaseEvent>,
}

impl Instances {
    pub fn apply(&mut self, ev: PhaseEvent) {
        if ev.instance.starts_with(SUPERVISOR_PREFIX) {
            for i in self.by_instance.values_mut().filter(|i| i.pid == ev.pid) {
                i.state = ev.state.clone();
            }
        } else if ev.state == ComponentState::Stopped {
            self.by_instance.remove(&ev.instance);
        } else {
            self.by_instance.insert(ev.instance.clone(), ev);
        }
    }

    /// An instance whose last announced state is ready.
    pub fn ready(&self) -> Option<&PhaseEvent> {
        self.by_instance
            .values()
            .find(|e| e.state == ComponentState::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(instance: &str, pid: u32, state: ComponentState) -> PhaseEvent {
        PhaseEvent {
            component: "forge".into(),
            phase: 3,
            instance: instance.into(),
            version: "0".into(),
            pid,
            at_ms: 0,
            state,
        }
    }

    #[test]
    fn instances_fold_per_process() {
        let mut i = Instances::default();
        i.apply(event("a", 1, ComponentState::Ready));
        i.apply(event("b", 2, ComponentState::Ready));
        i.apply(event("b", 2, ComponentState::Stopped));
        assert_eq!(i.ready().map(|e| e.instance.as_str()), Some("a"));
        i.apply(PhaseEvent::process_died(
            Component::Forge,
            1,
            "0",
            0,
            "killed".into(),
        ));
        assert!(i.ready().is_none());
        assert_eq!(i.by_instance["a"].state.describe(), "degraded: killed");
    }
}
