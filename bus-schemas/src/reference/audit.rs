//! `audit.md`: the audit events every component publishes.

use super::{header, Message};
use crate::audit::{AuditEvent, AuditKind, AUDIT_CATEGORIES};

pub(super) fn page() -> String {
    let mut out = header(
        "Audit events",
        "Each component publishes its security facts on `audit.<component>.<category>`, sealed \
         to every auditor's key; the `OZONE_AUDIT` stream of the AUDIT account keeps them 90 \
         days (docs/envelope.md, Auditors and the audit stream). `event` is tagged by `type`.",
    );
    let event = |event| AuditEvent {
        at_ms: 1_764_900_000_000,
        component: "spark".into(),
        event,
    };
    let about = format!(
        "An event. The category (`AuditKind::category`) is one of: {}.",
        AUDIT_CATEGORIES
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push('\n');
    out.push_str(
        &Message {
            name: "AuditEvent",
            subject: "audit.<component>.<category>",
            about: &about,
        }
        .render(&[
            (
                "a refused request",
                event(AuditKind::MessageRejected {
                    subject: "spark.generate".into(),
                    reason: "invalid request: not a generate request: missing field `prompt`"
                        .into(),
                    claimed_sender: Some("bridge".into()),
                }),
            ),
            (
                "a rotation",
                event(AuditKind::KeyRotated {
                    epoch: 20_427,
                    key_id: "5e1c2a9b0f3d4e67".into(),
                    erased_epochs: vec![20_425],
                }),
            ),
        ]),
    );
    out
}
