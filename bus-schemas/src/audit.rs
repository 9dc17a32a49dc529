//! Audit events: what every service publishes on `audit.<component>.<category>`, sealed to
//! the auditors, and what the audit stream keeps.

use crate::{Component, Subject};
use serde::{Deserialize, Serialize};

/// Schema version of [`AuditEvent`]; bump on incompatible changes.
pub const AUDIT_SCHEMA: u16 = 1;

/// One security-relevant fact, as published by a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened (Unix milliseconds, the publisher's clock).
    pub at_ms: u64,
    /// The component reporting it (also the authenticated sender of the envelope).
    pub component: String,
    pub event: AuditKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl AuditKind {
    /// The last subject token: groups events for filtering (`audit.*.rejected`).
    pub fn category(&self) -> &'static str {
        match self {
            AuditKind::KeyRotated { .. } | AuditKind::KeysErased { .. } => "keys",
            AuditKind::MessageRejected { .. } | AuditKind::RejectionsSuppressed { .. } => {
                "rejected"
            }
            AuditKind::DirectoryEntryRejected { .. } | AuditKind::DirectoryEntryRestored { .. } => {
                "directory"
            }
            AuditKind::PermissionDenied { .. } => "denied",
            AuditKind::AuthenticationFailed { .. } => "auth",
        }
    }
}

impl Subject {
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
}
