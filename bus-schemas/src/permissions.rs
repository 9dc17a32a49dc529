//! The permission table: what each identity may publish and subscribe to.
//!
//! This is the single source for the `permissions` blocks of the generated nats-server
//! configuration. Least privilege: an identity gets exactly the subjects its role needs.

use crate::{Component, Identity, IdentityKind, Subject};

/// Publish/subscribe allow lists of one NATS user; everything not listed is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<Subject>,
    pub subscribe: Vec<Subject>,
    /// Whether the user may reply to requests it received (NATS `allow_responses`), without
    /// being allowed to publish to arbitrary inboxes.
    pub allow_responses: bool,
}

impl Permissions {
    /// The permissions of an identity; `None` for identities without a NATS user (people).
    pub fn of(identity: &Identity) -> Option<Permissions> {
        match (identity.kind, identity.as_component()) {
            (IdentityKind::Component, Some(c)) => Some(Self::component(c)),
            (IdentityKind::Device, _) => Some(Permissions {
                publish: vec![Subject::device_reports(identity), Subject::sync(identity)],
                subscribe: vec![Subject::inbox_all(identity)],
                allow_responses: false,
            }),
            (IdentityKind::Auditor, _) => Some(Permissions {
                publish: vec![],
                subscribe: vec![Subject::audit_all(), Subject::inbox_all(identity)],
                allow_responses: false,
            }),
            (IdentityKind::User, _) | (IdentityKind::Component, None) => None,
        }
    }

    fn component(c: Component) -> Permissions {
        let me = Identity::component(c);
        let mut publish = vec![
            Subject::phase_announce(c),
            Subject::selfcheck(c),
            Subject::sync(&me),
            Subject::audit_of(c),
        ];
        publish.extend(
            c.calls()
                .iter()
                .map(|callee| Subject::component_requests(*callee)),
        );
        let mut subscribe = vec![
            Subject::component_requests(c),
            Subject::phase_all(),
            Subject::selfcheck(c),
            Subject::inbox_all(&me),
        ];
        subscribe.extend(Subject::service_discovery(c));
        Permissions {
            publish,
            subscribe,
            allow_responses: true,
        }
    }

    pub fn may_publish(&self, subject: &str) -> bool {
        self.publish.iter().any(|p| p.matches(subject))
    }

    pub fn may_subscribe(&self, subject: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_may_only_call_their_declared_callees() {
        let spark = Permissions::component(Component::Spark);
        assert!(!spark.may_publish("nexus.read"));
        assert!(!spark.may_subscribe("cognis.remember"));
        assert!(spark.may_subscribe("spark.generate"));
        let core = Permissions::component(Component::Core);
        assert!(core.may_publish("spark.generate"));
        assert!(!core.may_publish("bridge.anything"));
    }

    #[test]
    fn no_component_reads_another_components_inbox_or_audit_events() {
        for c in Component::ALL {
            let p = Permissions::component(c);
            for other in Component::ALL.into_iter().filter(|o| *o != c) {
                let inbox = format!("_INBOX.{}.x", other.name());
                assert!(!p.may_subscribe(&inbox), "{c} reads {other}'s inbox");
                let audit = format!("audit.{}.x", other.name());
                assert!(!p.may_publish(&audit), "{c} forges {other}'s audit events");
            }
            assert!(!p.may_subscribe("audit.x"));
        }
    }

    #[test]
    fn auditors_are_read_only_and_people_have_no_nats_user() {
        let auditor =
            Identity::new(IdentityKind::Auditor, "siem").unwrap_or_else(|e| panic!("{e}"));
        let p = Permissions::of(&auditor).unwrap_or_else(|| panic!("auditor has permissions"));
        assert!(p.publish.is_empty());
        assert!(!p.allow_responses);
        let alice = Identity::new(IdentityKind::User, "alice").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Permissions::of(&alice), None);
    }
}
