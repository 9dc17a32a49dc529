//! The permission table: what each identity may publish and subscribe to.
//!
//! This is the single source for the `permissions` blocks of the generated nats-server
//! configuration. Least privilege: an identity gets exactly the subjects its role needs.

use crate::table::{PERSONAL, ROUTES};
use crate::{Component, Identity, IdentityKind, Subject};

/// Publish/subscribe allow lists of one NATS user; everything not listed is denied.
///
/// Nobody has NATS `allow_responses`: it lets a responder publish to whatever reply subject
/// the requester chose, and nats-server (2.15.1, tried) applies no publish `deny` list to
/// such replies, so a rogue caller could borrow its callee's rights (purge a stream through
/// `$JS.API`, write under the callee's name). A component answers on its callers' inboxes
/// instead, listed like any other subject (the table's "replies" route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<Subject>,
    pub subscribe: Vec<Subject>,
}

impl Permissions {
    /// The permissions of an identity, read off the subject table; `None` for identities
    /// without a NATS user (people).
    pub fn of(identity: &Identity) -> Option<Permissions> {
        if !identity.has_nats_user() {
            return None;
        }
        let mut p = Permissions {
            publish: Vec::new(),
            subscribe: Vec::new(),
        };
        for route in ROUTES.iter().chain(PERSONAL) {
            // Component subjects exist for all eight owners; the rest only for oneself.
            let owners: Vec<Identity> = match route.owner {
                Some(IdentityKind::Component) => Component::ALL.map(Identity::component).to_vec(),
                _ => vec![identity.clone()],
            };
            for (party, list) in [
                (route.publishers, &mut p.publish),
                (route.subscribers, &mut p.subscribe),
            ] {
                let mine: Vec<&Identity> = owners
                    .iter()
                    .filter(|o| party.includes(identity, o))
                    .collect();
                match route.all_owners {
                    Some(all) if owners.len() > 1 && mine.len() == owners.len() => list.push(all()),
                    _ => list.extend(mine.into_iter().flat_map(|o| route.subjects(o))),
                }
            }
        }
        if identity.kind == IdentityKind::Auditor {
            // External tools are read-only, whatever a future table row might say: the only
            // publishes they make are JetStream API calls that read the audit stream, and
            // service-discovery requests.
            p.publish
                .retain(|s| s.as_str().starts_with("$JS.") || s.as_str().starts_with("$SRV."));
        }
        p.publish.dedup();
        p.subscribe.dedup();
        Some(p)
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

    fn component(c: Component) -> Permissions {
        Permissions::of(&Identity::component(c)).unwrap_or_else(|| panic!("{c} has no permissions"))
    }

    #[test]
    fn components_may_only_call_their_declared_callees() {
        let spark = component(Component::Spark);
        assert!(!spark.may_publish("nexus.read"));
        assert!(!spark.may_subscribe("cognis.remember"));
        assert!(spark.may_subscribe("spark.generate"));
        let core = component(Component::Core);
        assert!(core.may_publish("spark.generate"));
        assert!(!core.may_publish("bridge.anything"));
    }

    #[test]
    fn each_component_writes_only_its_own_key_entries() {
        let spark = component(Component::Spark);
        for slot in 0..4 {
            assert!(spark.may_publish(&format!("$KV.ozone-keys.component.spark.{slot}")));
        }
        // Four slots, nothing else: no member can fill the bucket with many small entries.
        for other in ["4", "20418", "0.x", "x"] {
            let s = format!("$KV.ozone-keys.component.spark.{other}");
            assert!(!spark.may_publish(&s), "{s}");
        }
        assert!(!spark.may_publish("$KV.ozone-keys.component.cognis.3"));
        assert!(!spark.may_publish("$KV.ozone-keys.auditor.siem.0"));
        assert!(!spark.may_publish("$JS.API.STREAM.DELETE.KV_ozone-keys"));
        assert!(!spark.may_publish("$JS.API.STREAM.PURGE.KV_ozone-keys"));
        assert!(spark.may_publish("$JS.API.DIRECT.GET.KV_ozone-keys"));
        assert!(spark.may_subscribe("ecosystem.keys.component.cognis.3"));
        assert!(!spark.may_publish("ecosystem.keys.component.cognis.3"));
        assert!(component(Component::Core).may_publish("$KV.ozone-keys.auditor.siem.0"));
        assert!(!component(Component::Core).may_publish("$KV.ozone-keys.auditor.siem.1"));
        // Only the core brings an old bucket to its hardening; nobody may purge or delete.
        for stream in ["KV_ozone-keys", "KV_ozone-sessions", "OZONE_PHASE"] {
            // No consumers: a consumer's configuration names where the server delivers.
            for c in Component::ALL {
                for api in [
                    format!("CONSUMER.CREATE.{stream}"),
                    format!("CONSUMER.CREATE.{stream}.c.>"),
                    format!("CONSUMER.DURABLE.CREATE.{stream}.c"),
                    format!("CONSUMER.MSG.NEXT.{stream}.c"),
                ] {
                    let s = format!("$JS.API.{api}");
                    assert!(!component(c).may_publish(&s), "{c} may publish {s}");
                }
            }
            let update = format!("$JS.API.STREAM.UPDATE.{stream}");
            assert!(!spark.may_publish(&update));
            assert!(component(Component::Core).may_publish(&update));
            for c in Component::ALL {
                for api in ["PURGE", "DELETE", "MSG.DELETE"] {
                    let s = format!("$JS.API.STREAM.{api}.{stream}");
                    assert!(!component(c).may_publish(&s), "{c} may publish {s}");
                }
            }
        }
    }

    #[test]
    fn no_component_reads_another_components_inbox_or_audit_events() {
        for c in Component::ALL {
            let p = component(c);
            for other in Component::ALL.into_iter().filter(|o| *o != c) {
                let inbox = format!("_INBOX.{}.x", other.name());
                assert!(!p.may_subscribe(&inbox), "{c} reads {other}'s inbox");
                let audit = format!("audit.{}.x", other.name());
                assert!(!p.may_publish(&audit), "{c} forges {other}'s audit events");
            }
            assert!(!p.may_subscribe("audit.x"));
            // Its own audit subjects are the fixed categories, each bounded by the stream.
            assert!(p.may_publish(&format!("audit.{}.rejected", c.name())));
            assert!(!p.may_publish(&format!("audit.{}.x", c.name())));
            assert!(!p.may_publish(&format!("audit.{}.rejected.x", c.name())));
        }
    }

    #[test]
    fn a_component_answers_only_on_its_callers_inboxes() {
        let spark = component(Component::Spark);
        assert!(spark.may_publish("_INBOX.forge.abc.1"));
        assert!(spark.may_publish("_INBOX.ozone-studio.abc"));
        // NEXUS calls nobody; nothing else ever is a reply subject of SPARK's.
        for foreign in [
            "_INBOX.nexus.abc",
            "$JS.API.STREAM.PURGE.KV_ozone-keys",
            "$KV.ozone-keys.component.cognis.7",
            "ecosystem.phase.cognis",
            "audit.cognis.keys",
        ] {
            assert!(!spark.may_publish(foreign), "spark may publish {foreign}");
        }
        let forge = component(Component::Forge);
        assert!(
            !forge.may_publish("_INBOX.spark.abc"),
            "SPARK never calls FORGE"
        );
        assert!(forge.may_publish("_INBOX.ozone-studio.abc"));
    }

    #[test]
    fn an_operator_calls_only_the_components_that_take_operators() {
        let console =
            Identity::new(IdentityKind::Operator, "console").unwrap_or_else(|e| panic!("{e}"));
        let p = Permissions::of(&console).unwrap_or_else(|| panic!("operator has permissions"));
        // Its requests: the components that take operators' requests; its replies: its own
        // inbox only.
        for callee in [
            "spark.generate",
            "zsei.methodology.list",
            "ozone-studio.task.submit",
        ] {
            assert!(p.may_publish(callee), "operator may not publish {callee}");
        }
        for other in ["cognis.remember", "bridge.x", "nexus.read", "forge.x"] {
            assert!(!p.may_publish(other), "operator may publish {other}");
        }
        assert!(p.may_subscribe("_INBOX.operator.console.abc.1"));
        for foreign in [
            "_INBOX.operator.other.abc",
            "_INBOX.bridge.abc",
            "spark.generate",
            "audit.spark.rejected",
        ] {
            assert!(
                !p.may_subscribe(foreign),
                "operator may subscribe {foreign}"
            );
        }
        // Its own key slots and nobody else's; no session records (it seals full envelopes).
        assert!(p.may_publish("$KV.ozone-keys.operator.console.0"));
        assert!(!p.may_publish("$KV.ozone-keys.operator.other.0"));
        assert!(!p.may_publish("$KV.ozone-keys.component.bridge.0"));
        assert!(!p.may_publish("$KV.ozone-sessions.bridge.00"));
        assert!(!p.may_publish("$JS.API.STREAM.PURGE.KV_ozone-keys"));
        assert!(!p.may_publish("$JS.API.STREAM.UPDATE.KV_ozone-keys"));
        assert!(p.may_publish("$JS.API.DIRECT.GET.KV_ozone-sessions"));
        assert!(p.may_subscribe("ecosystem.keys.component.spark.1"));
        // It announces nothing and writes no audit events under anyone's name.
        assert!(!p.may_publish("ecosystem.phase.spark"));
        assert!(!p.may_publish("audit.bridge.rejected"));
        // SPARK, ZSEI and the core answer operators; a component that takes none of their
        // requests cannot.
        assert!(component(Component::Spark).may_publish("_INBOX.operator.console.abc"));
        assert!(component(Component::Core).may_publish("_INBOX.operator.console.abc"));
        assert!(!component(Component::Cognis).may_publish("_INBOX.operator.console.abc"));
        assert_eq!(
            crate::table::recipients("_INBOX.operator.console.abc.1"),
            vec![console]
        );
    }

    #[test]
    fn auditors_are_read_only_and_people_have_no_nats_user() {
        let auditor =
            Identity::new(IdentityKind::Auditor, "siem").unwrap_or_else(|e| panic!("{e}"));
        let p = Permissions::of(&auditor).unwrap_or_else(|| panic!("auditor has permissions"));
        assert!(p.publish.iter().all(|s| s.as_str() == "$JS.API.INFO"
            || s.as_str() == "$SRV.>"
            || s.as_str().contains("OZONE_AUDIT")));
        for forbidden in [
            "audit.spark.keys",
            "$JS.API.STREAM.PURGE.OZONE_AUDIT",
            "$JS.API.STREAM.DELETE.OZONE_AUDIT",
            "$JS.API.STREAM.UPDATE.OZONE_AUDIT",
            "$JS.API.STREAM.MSG.DELETE.OZONE_AUDIT",
            "$KV.ozone-keys.auditor.siem.0",
        ] {
            assert!(!p.may_publish(forbidden), "auditor may publish {forbidden}");
        }
        assert!(p.may_publish("$JS.API.CONSUMER.CREATE.OZONE_AUDIT.x.audit.>"));
        let alice = Identity::new(IdentityKind::User, "alice").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Permissions::of(&alice), None);
    }
}
