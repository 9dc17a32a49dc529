//! Audit events: what every service publishes on `audit.<component>.<category>`, sealed to
//! the auditors, and what the audit stream keeps.

use crate::{Component, Subject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Schema version of [`AuditEvent`]; bump on incompatible changes.
pub const AUDIT_SCHEMA: u16 = 1;

/// One security-relevant fact, as published by a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEvent {
    /// When it happened (Unix milliseconds, the publisher's clock).
    pub at_ms: u64,
    /// The component reporting it (also the authenticated sender of the envelope).
    pub component: String,
    pub event: AuditKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AuditKind {
    /// The component published its key for a new epoch and erased the keys past grace.
    KeyRotated {
        epoch: u64,
        key_id: String,
        erased_epochs: Vec<u64>,
    },
    /// Keys whose grace window closed were erased (memory, ring file and key directory).
    KeysErased { epochs: Vec<u64> },
    /// A message on the bus was refused: it could not be opened, was replayed, or its
    /// payload did not decode.
    MessageRejected {
        subject: String,
        reason: String,
        /// The sender named in the envelope header (unauthenticated when the open failed).
        claimed_sender: Option<String>,
    },
    /// A key-directory entry was ignored (unsigned, wrongly signed, wrong certificate…).
    DirectoryEntryRejected { key: String, reason: String },
    /// The component found its own directory entry missing or replaced and put it again;
    /// `found` says what the bucket held instead.
    DirectoryEntryRestored { key: String, found: String },
    /// nats-server refused a client: a failed TLS handshake (no certificate, unknown CA,
    /// expired, wrong usage) or a certificate that maps to no user. Reported by the core on
    /// behalf of the server, which has no bus identity of its own.
    AuthenticationFailed { client: String, detail: String },
    /// The server refused one of this component's publishes or subscriptions.
    PermissionDenied { subject: String },
    /// More rejections happened than the audit rate limit lets through; this many were
    /// counted but not reported one by one.
    RejectionsSuppressed { count: u64 },
    /// An audit subject is at the audit stream's per-subject cap: its oldest events (that
    /// component's, of that category) are being dropped. A flood, or a component in trouble.
    /// Reported by the core, which the supervisor tells (components cannot read the stream).
    AuditQuotaReached { subject: String, cap: u64 },
    /// The core started a task for an authenticated submitter.
    TaskSubmitted {
        task_id: String,
        methodology: String,
        version: String,
        by: String,
    },
    /// A step that requires approval was approved.
    StepApproved {
        task_id: String,
        step: String,
        by: String,
    },
    /// A task ended: `succeeded`, `failed` (with why) or `cancelled` (with by whom).
    TaskFinished {
        task_id: String,
        state: String,
        detail: Option<String>,
    },
}

impl AuditKind {
    /// The last subject token: groups events for filtering (`audit.*.rejected`).
    pub fn category(&self) -> &'static str {
        match self {
            AuditKind::KeyRotated { .. } | AuditKind::KeysErased { .. } => "keys",
            AuditKind::MessageRejected { .. } | AuditKind::RejectionsSuppressed { .. } => {
                "rejected"
            }
            // Its own category: the alerts fill no other category of the core's.
            AuditKind::AuditQuotaReached { .. } => "quota",
            AuditKind::DirectoryEntryRejected { .. } | AuditKind::DirectoryEntryRestored { .. } => {
                "directory"
            }
            AuditKind::PermissionDenied { .. } => "denied",
            AuditKind::AuthenticationFailed { .. } => "auth",
            AuditKind::TaskSubmitted { .. }
            | AuditKind::StepApproved { .. }
            | AuditKind::TaskFinished { .. } => "tasks",
        }
    }
}

/// Every category token, the last token of the audit subjects. A component may publish on
/// exactly `audit.<component>.<category>` for these: a fixed set of subjects, so the audit
/// stream can bound each one (`max_msgs_per_subject`) and a flood evicts only the flooder's
/// own oldest events of that category, never another component's.
pub const AUDIT_CATEGORIES: [&str; 7] = [
    "keys",
    "rejected",
    "directory",
    "denied",
    "auth",
    "quota",
    "tasks",
];

impl Subject {
    /// The audit subjects `c` may publish on: one per category.
    pub fn audit_categories_of(c: Component) -> Vec<Subject> {
        AUDIT_CATEGORIES
            .into_iter()
            .map(|cat| Subject::join(&["audit", c.token(), cat]))
            .collect()
    }

    /// Where `c` publishes an audit event: `audit.<component>.<category>`.
    pub fn audit_event(c: Component, event: &AuditKind) -> Subject {
        Subject::join(&["audit", c.token(), event.category()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_events_land_under_their_components_audit_subjects() {
        let ev = AuditKind::PermissionDenied {
            subject: "nexus.read".into(),
        };
        let s = Subject::audit_event(Component::Spark, &ev);
        assert_eq!(s.as_str(), "audit.spark.denied");
        assert!(Subject::audit_of(Component::Spark).matches(s.as_str()));
    }

    #[test]
    fn every_event_kind_has_one_of_the_fixed_categories() {
        let every = [
            AuditKind::KeyRotated {
                epoch: 1,
                key_id: String::new(),
                erased_epochs: Vec::new(),
            },
            AuditKind::KeysErased { epochs: Vec::new() },
            AuditKind::MessageRejected {
                subject: String::new(),
                reason: String::new(),
                claimed_sender: None,
            },
            AuditKind::DirectoryEntryRejected {
                key: String::new(),
                reason: String::new(),
            },
            AuditKind::DirectoryEntryRestored {
                key: String::new(),
                found: String::new(),
            },
            AuditKind::AuthenticationFailed {
                client: String::new(),
                detail: String::new(),
            },
            AuditKind::PermissionDenied {
                subject: String::new(),
            },
            AuditKind::RejectionsSuppressed { count: 1 },
            AuditKind::AuditQuotaReached {
                subject: String::new(),
                cap: 1,
            },
            AuditKind::TaskSubmitted {
                task_id: String::new(),
                methodology: String::new(),
                version: String::new(),
                by: String::new(),
            },
            AuditKind::StepApproved {
                task_id: String::new(),
                step: String::new(),
                by: String::new(),
            },
            AuditKind::TaskFinished {
                task_id: String::new(),
                state: String::new(),
                detail: None,
            },
        ];
        for ev in every {
            let s = Subject::audit_event(Component::Forge, &ev);
            assert!(
                Subject::audit_categories_of(Component::Forge).contains(&s),
                "{s} is not a permitted audit subject"
            );
        }
    }
}
