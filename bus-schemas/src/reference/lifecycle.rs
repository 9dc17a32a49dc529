//! `lifecycle.md`: the lifecycle ping, phase announcements, heartbeats, phase transitions.

use super::{header, Message};
use crate::phase::{
    ComponentState, Heartbeat, PhaseEvent, PhaseTransition, Ping, PingReply, HEARTBEAT_MS,
    HEARTBEAT_STALE_MS,
};

pub(super) fn page() -> String {
    let mut out = header(
        "Lifecycle messages",
        &format!(
            "Every component answers `<component>.ping` and announces its state on \
             `ecosystem.phase.<component>`; it says it is alive every {HEARTBEAT_MS} ms on \
             `ecosystem.heartbeat.<component>` (silence for {HEARTBEAT_STALE_MS} ms means it is \
             gone); the core announces each phase becoming ready or losing readiness on \
             `ecosystem.phases`. docs/bootstrap.md says how components use them."
        ),
    );
    out.push_str("\n## The lifecycle ping\n\n");
    out.push_str(
        &Message {
            name: "Ping",
            subject: "<component>.ping",
            about: "A request. `from` must be the sender's own key-directory name (a component's \
                name, e.g. `bridge`, `ozone-studio` for the core): a ping naming anyone else is \
                refused and audited, not answered. Any component the table lets call the \
                target may ping it.",
        }
        .render(&[(
            "BRIDGE pinging SPARK",
            Ping {
                from: "bridge".into(),
            },
        )]),
    );
    out.push_str(
        &Message {
            name: "PingReply",
            subject: "the requester's inbox",
            about:
                "One reply, tagged by `reply`: `pong` while every component of an earlier phase \
                is ready, else `not-ready` naming what it waits on.",
        }
        .render(&[
            (
                "ready",
                PingReply::Pong {
                    component: "spark".into(),
                    instance: "3f9a0c12d4e5b6a7".into(),
                    served_at_ms: 1_764_900_000_000,
                },
            ),
            (
                "waiting",
                PingReply::NotReady {
                    component: "bridge".into(),
                    waiting_on: vec!["spark".into()],
                },
            ),
        ]),
    );
    out.push_str("\n## Phase announcements and heartbeats\n\n");
    let event = |component: &str, phase, state| PhaseEvent {
        component: component.into(),
        phase,
        instance: "3f9a0c12d4e5b6a7".into(),
        version: "0.1.0".into(),
        pid: 4242,
        at_ms: 1_764_900_000_000,
        state,
    };
    out.push_str(
        &Message {
            name: "PhaseEvent",
            subject: "ecosystem.phase.<component>",
            about: "An event, published by the component itself (the supervisor publishes \
                `failed` for a process that died). `state` is tagged by `state`: `starting`, \
                `waiting` (with `on`), `ready`, `degraded` and `failed` (with `reason`), \
                `stopped`. The retained stream `OZONE_PHASE` keeps the last one per component.",
        }
        .render(&[
            ("SPARK ready", event("spark", 0, ComponentState::Ready)),
            (
                "BRIDGE waiting",
                event(
                    "bridge",
                    3,
                    ComponentState::Waiting {
                        on: vec!["ozone-studio".into()],
                    },
                ),
            ),
        ]),
    );
    out.push_str(
        &Message {
            name: "Heartbeat",
            subject: "ecosystem.heartbeat.<component>",
            about: "An event, every second and at once when another instance announces `starting`.",
        }
        .render(&[(
            "",
            Heartbeat {
                component: "spark".into(),
                instance: "3f9a0c12d4e5b6a7".into(),
                ready: true,
                at_ms: 1_764_900_000_000,
            },
        )]),
    );
    out.push_str(
        &Message {
            name: "PhaseTransition",
            subject: "ecosystem.phases",
            about: "An event from the core only: a phase (0–3) became ready or lost readiness.",
        }
        .render(&[(
            "",
            PhaseTransition {
                component: "ozone-studio".into(),
                phase: 1,
                ready: true,
                at_ms: 1_764_900_000_000,
            },
        )]),
    );
    out
}
