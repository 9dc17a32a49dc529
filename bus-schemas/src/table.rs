//! The subject table: for every subject, its kind and who publishes and subscribes. It is the
//! single source of the NATS permissions ([`crate::Permissions`]), of the envelope's
//! recipients ([`recipients`]) and of `docs/subjects.md` ([`markdown`]).

use crate::phase::PHASE_STREAM;
use crate::streams::{
    bucket_subjects, AUDIT_STREAM, KEY_STREAM, METHODOLOGY_BUCKET, METHODOLOGY_STREAM,
    SESSION_STREAM, TASK_BUCKET, TASK_STREAM,
};
use crate::{Component, Identity, IdentityKind, Subject};

/// How a subject is used on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Fire-and-forget, to every subscriber.
    Event,
    /// Request/reply, answered by the owner (any worker of its queue group).
    Request,
    /// Replies to this identity's requests.
    Reply,
    /// A put into a JetStream key-value bucket (read back through the JetStream API).
    Store,
    /// Calls to the JetStream API of one stream.
    JetStream,
    /// What a stream stored, republished by the server (nobody publishes here).
    Feed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Request => "request/reply",
            Kind::Reply => "reply inbox",
            Kind::Store => "key-value put",
            Kind::JetStream => "JetStream API",
            Kind::Feed => "stream republish",
        }
    }
}

/// Who may use a subject, relative to the identity that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Owner,
    AllComponents,
    /// Everyone who joins the bus with a key ring: the components and the operators.
    Members,
    /// Components whose `Component::calls` include the owner, and operators when the owner
    /// takes operators' requests (`Component::takes_operators`).
    Callers,
    /// Components the owner calls (`Component::calls` of the owner): who answers its requests.
    Callees,
    /// Components that take operators' requests: who answers an operator.
    OperatorsCallees,
    Auditors,
    Only(Component),
    Nobody,
}

impl Party {
    fn describe(self) -> String {
        match self {
            Party::Owner => "owner".into(),
            Party::AllComponents => "every component".into(),
            Party::Members => "every component and operator".into(),
            Party::Callers => "its callers (operators too, where it takes them)".into(),
            Party::Callees => "the components it calls".into(),
            Party::OperatorsCallees => {
                let names: Vec<&str> = Component::ALL
                    .into_iter()
                    .filter(|c| c.takes_operators())
                    .map(Component::name)
                    .collect();
                names.join(", ")
            }
            Party::Auditors => "auditors (AUDIT account)".into(),
            Party::Only(c) => c.name().into(),
            Party::Nobody => "nobody".into(),
        }
    }

    /// Whether `who` is in this party for a subject owned by `owner`.
    pub fn includes(self, who: &Identity, owner: &Identity) -> bool {
        match self {
            Party::Owner => who == owner,
            Party::AllComponents => who.kind == IdentityKind::Component,
            Party::Members => who.is_member(),
            Party::Callers => match (who.as_component(), owner.as_component()) {
                (Some(w), Some(o)) => w.calls().contains(&o),
                (None, Some(o)) => who.kind == IdentityKind::Operator && o.takes_operators(),
                _ => false,
            },
            Party::Callees => match (who.as_component(), owner.as_component()) {
                (Some(w), Some(o)) => o.calls().contains(&w),
                _ => false,
            },
            Party::Auditors => who.kind == IdentityKind::Auditor,
            Party::OperatorsCallees => who.as_component().is_some_and(|c| c.takes_operators()),
            Party::Only(c) => who.as_component() == Some(c),
            Party::Nobody => false,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub name: &'static str,
    /// The subject with its owner as a placeholder, for documentation.
    pub template: &'static str,
    pub kind: Kind,
    /// What kind of identity owns instances of this subject (`None`: every identity has its
    /// own).
    pub owner: Option<IdentityKind>,
    pub publishers: Party,
    pub subscribers: Party,
    pub doc: &'static str,
    subjects: fn(&Identity) -> Vec<Subject>,
    /// One pattern covering every owner's subjects, used for a party that has the right for
    /// all owners (`ecosystem.phase.>` rather than eight subjects).
    pub all_owners: Option<fn() -> Subject>,
    /// Also sealed to the auditors and kept in the audit stream (the subjects are exported to
    /// the AUDIT account).
    pub audited: bool,
}

impl Route {
    /// The concrete subject patterns owned by `owner`.
    pub fn subjects(&self, owner: &Identity) -> Vec<Subject> {
        if self.owner.is_none_or(|k| k == owner.kind) {
            (self.subjects)(owner)
        } else {
            Vec::new()
        }
    }
}

fn component_of(id: &Identity) -> Vec<Subject> {
    id.as_component()
        .map(|c| vec![Subject::component_requests(c)])
        .unwrap_or_default()
}

/// Every subject the ecosystem uses.
pub const ROUTES: &[Route] = &[
    Route {
        name: "component requests",
        template: "{component}.>",
        kind: Kind::Request,
        owner: Some(IdentityKind::Component),
        publishers: Party::Callers,
        subscribers: Party::Owner,
        doc: "work for a component, served by its queue group",
        subjects: component_of,
        all_owners: None,
        audited: false,
    },
    Route {
        name: "phase announcement",
        template: "ecosystem.phase.{component}",
        kind: Kind::Event,
        owner: Some(IdentityKind::Component),
        publishers: Party::Owner,
        subscribers: Party::AllComponents,
        doc: "a component's state changes (starting, waiting on, ready, degraded, failed, stopped); the last one per component is retained in the OZONE_PHASE stream",
        subjects: |id| {
            id.as_component()
                .map(|c| vec![Subject::phase_announce(c)])
                .unwrap_or_default()
        },
        all_owners: Some(Subject::phase_all),
        audited: true,
    },
    Route {
        name: "phase transitions",
        template: "ecosystem.phases",
        kind: Kind::Event,
        owner: None,
        publishers: Party::Only(Component::Core),
        subscribers: Party::AllComponents,
        doc: "the core announces each bootstrap phase becoming ready (or losing readiness)",
        subjects: |_| vec![Subject::phase_transitions()],
        all_owners: None,
        audited: true,
    },
    Route {
        name: "heartbeat",
        template: "ecosystem.heartbeat.{component}",
        kind: Kind::Event,
        owner: Some(IdentityKind::Component),
        publishers: Party::Owner,
        subscribers: Party::AllComponents,
        doc: "a component is alive (every second); silence for 3.5 s counts as gone",
        subjects: |id| {
            id.as_component()
                .map(|c| vec![Subject::heartbeat(c)])
                .unwrap_or_default()
        },
        all_owners: Some(Subject::heartbeat_all),
        audited: false,
    },
    Route {
        name: "self-check",
        template: "ecosystem.selfcheck.{component}",
        kind: Kind::Event,
        owner: Some(IdentityKind::Component),
        publishers: Party::Owner,
        subscribers: Party::Owner,
        doc: "`ozone up` proves a component's own publish/subscribe rights",
        subjects: |id| {
            id.as_component()
                .map(|c| vec![Subject::selfcheck(c)])
                .unwrap_or_default()
        },
        all_owners: None,
        audited: false,
    },
    Route {
        name: "audit events",
        template: "audit.{component}.{keys,rejected,directory,denied,auth,quota,tasks}",
        kind: Kind::Event,
        owner: Some(IdentityKind::Component),
        publishers: Party::Owner,
        subscribers: Party::Auditors,
        doc: "security decisions, rejections, key rotations; exported to AUDIT, where the \
              stream bounds each subject (a flood evicts only the flooder's own oldest events)",
        subjects: |id| {
            id.as_component()
                .map(Subject::audit_categories_of)
                .unwrap_or_default()
        },
        all_owners: Some(Subject::audit_all),
        audited: false,
    },
    Route {
        name: "key directory",
        template: "$KV.ozone-keys.{component,operator}.{name}.{0,1,2,3}",
        kind: Kind::Store,
        owner: None,
        publishers: Party::Owner,
        subscribers: Party::Nobody,
        doc: "a member's (component's or operator's) signed public key per epoch, in slot \
              `epoch mod 4` (the epoch is in the signed entry): at most four entries per \
              member; read by every member through the bucket's JetStream API, copied into \
              the audit stream",
        subjects: |id| {
            if id.is_member() {
                Subject::key_slots_of(id)
            } else {
                Vec::new()
            }
        },
        all_owners: None,
        audited: false,
    },
    Route {
        name: "auditor keys",
        template: "$KV.ozone-keys.auditor.{auditor}.0",
        kind: Kind::Store,
        owner: None,
        publishers: Party::Only(Component::Core),
        subscribers: Party::Nobody,
        doc: "auditors' recipient keys, signed by each auditor's certificate; `ozone up` and \
              `ozone pki issue auditor` put them as the core",
        subjects: |_| vec![Subject::auditor_keys()],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "session records",
        template: "$KV.ozone-sessions.{component}.{00..ff}",
        kind: Kind::Store,
        owner: Some(IdentityKind::Component),
        publishers: Party::Owner,
        subscribers: Party::Nobody,
        doc: "what the component's compact envelopes leave out (docs/envelope.md), in slot \
              `<first byte of the session id>`: at most 256 records per component; a \
              recipient that has not seen a full envelope of the session reads it through the \
              bucket's JetStream API",
        subjects: Subject::session_records_of,
        all_owners: None,
        audited: false,
    },
    Route {
        name: "key directory feed",
        template: "ecosystem.keys.{kind}.{name}.{slot}",
        kind: Kind::Feed,
        owner: None,
        publishers: Party::Nobody,
        subscribers: Party::Members,
        doc: "every entry the key directory stores, republished by its stream with its \
              sequence (`Nats-Sequence`, `Nats-Subject`): how components and operators follow \
              the directory without a consumer; only the server writes here",
        subjects: |_| vec![Subject::key_feed_all()],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "key directory, session records and phase state API",
        template: "$JS.API.{INFO,STREAM.CREATE,STREAM.INFO,STREAM.MSG.GET,DIRECT.GET}.{KV_ozone-keys,KV_ozone-sessions,OZONE_PHASE}",
        kind: Kind::JetStream,
        owner: None,
        publishers: Party::Members,
        subscribers: Party::Nobody,
        doc: "create the buckets and the phase stream if absent, read them by direct get; no \
              consumers (a consumer's configuration chooses where the server delivers), never \
              delete or reconfigure",
        subjects: |_| {
            let mut s = vec![Subject("$JS.API.INFO".into())];
            for stream in [KEY_STREAM, SESSION_STREAM, PHASE_STREAM] {
                s.extend(Subject::jetstream_reader_api(stream));
            }
            s
        },
        all_owners: None,
        audited: false,
    },
    Route {
        name: "bucket hardening",
        template: "$JS.API.STREAM.UPDATE.{KV_ozone-keys,KV_ozone-sessions,OZONE_PHASE}",
        kind: Kind::JetStream,
        owner: None,
        publishers: Party::Only(Component::Core),
        subscribers: Party::Nobody,
        doc: "`ozone up` brings buckets created before their hardening to it (no roll-ups, purges \
              or deletes; bounded writes; the key directory's feed) and the phase stream to \
              direct gets; nats-server never lets an update take a denial back",
        subjects: |_| {
            [KEY_STREAM, SESSION_STREAM, PHASE_STREAM]
                .map(|s| Subject(format!("$JS.API.STREAM.UPDATE.{s}")))
                .to_vec()
        },
        all_owners: None,
        audited: false,
    },
    Route {
        name: "methodology registry",
        template: "$KV.ozone-methodologies.{name}.{version}",
        kind: Kind::Store,
        owner: None,
        publishers: Party::Only(Component::Zsei),
        subscribers: Party::Nobody,
        doc: "ZSEI's methodology registry, one entry per version (docs/methodologies.md); \
              only ZSEI writes it and reads it back through the bucket's JetStream API",
        subjects: |_| vec![Subject(bucket_subjects(METHODOLOGY_BUCKET))],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "methodology registry API",
        template: "$JS.API.{INFO,STREAM.CREATE,STREAM.INFO,STREAM.MSG.GET,DIRECT.GET}.KV_ozone-methodologies",
        kind: Kind::JetStream,
        owner: None,
        publishers: Party::Only(Component::Zsei),
        subscribers: Party::Nobody,
        doc: "ZSEI creates its registry bucket if absent and reads it by direct get; never \
              deletes, purges or reconfigures it",
        subjects: |_| {
            let mut s = vec![Subject("$JS.API.INFO".into())];
            s.extend(Subject::jetstream_reader_api(METHODOLOGY_STREAM));
            s
        },
        all_owners: None,
        audited: false,
    },
    Route {
        name: "task store",
        template: "$KV.ozone-tasks.{task}",
        kind: Kind::Store,
        owner: None,
        publishers: Party::Only(Component::Core),
        subscribers: Party::Nobody,
        doc: "the core's durable task state, rewritten at every step transition (docs/tasks.md); \
              only the core writes it and reads it back through the bucket's JetStream API",
        subjects: |_| vec![Subject(bucket_subjects(TASK_BUCKET))],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "task store API",
        template: "$JS.API.{INFO,STREAM.CREATE,STREAM.INFO,STREAM.MSG.GET,DIRECT.GET}.KV_ozone-tasks",
        kind: Kind::JetStream,
        owner: None,
        publishers: Party::Only(Component::Core),
        subscribers: Party::Nobody,
        doc: "the core creates its task bucket if absent and reads it by direct get",
        subjects: |_| Subject::jetstream_reader_api(TASK_STREAM),
        all_owners: None,
        audited: false,
    },
    Route {
        name: "audit stream API",
        template: "$JS.API.*.OZONE_AUDIT…, $JS.ACK/FC.OZONE_AUDIT.>",
        kind: Kind::JetStream,
        owner: None,
        publishers: Party::Auditors,
        subscribers: Party::Nobody,
        doc: "auditors create the stream if absent and read it; never purge, delete or reconfigure",
        subjects: |_| {
            let mut s = Subject::jetstream_client_api(AUDIT_STREAM);
            s.extend(Subject::jetstream_delivery_replies(AUDIT_STREAM));
            s
        },
        all_owners: None,
        audited: false,
    },
    Route {
        name: "service discovery",
        template: "$SRV.{PING,INFO,STATS}[.{component}[.*]]",
        kind: Kind::Request,
        owner: Some(IdentityKind::Component),
        publishers: Party::Auditors,
        subscribers: Party::Owner,
        doc: "NATS micro-service discovery, answered by each component; auditors (e.g. `ozone status`) ask through the service import in AUDIT",
        subjects: |id| {
            id.as_component()
                .map(Subject::service_discovery)
                .unwrap_or_default()
        },
        all_owners: Some(Subject::service_discovery_all),
        audited: false,
    },
    Route {
        name: "replies",
        template: "_INBOX.{component}.>",
        kind: Kind::Reply,
        owner: Some(IdentityKind::Component),
        publishers: Party::Callees,
        subscribers: Party::Nobody,
        doc: "answers to a component's requests, by the components it calls (its own \
              subscription is the reply inbox below); no `allow_responses`, so a reply subject \
              a requester chose elsewhere is refused by the server",
        subjects: |id| vec![Subject::inbox_all(id)],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "operator replies",
        template: "_INBOX.operator.{operator}.>",
        kind: Kind::Reply,
        owner: None,
        publishers: Party::OperatorsCallees,
        subscribers: Party::Nobody,
        doc: "answers to operators' requests (the `ozone` command), by the components that \
              take them; each operator subscribes to its own (\"reply inbox\" below), and \
              operators seal full envelopes only (they keep no session records)",
        subjects: |_| vec![Subject::operator_inboxes()],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "service-discovery answers",
        template: "_R_.>",
        kind: Kind::Reply,
        owner: None,
        publishers: Party::AllComponents,
        subscribers: Party::Nobody,
        doc: "answers to auditors' `$SRV` requests, which reach the ecosystem through the \
              service import with reply subjects the server maps back",
        subjects: |_| vec![Subject::service_import_replies()],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "device reports",
        template: "nexus.device.{device}.>",
        kind: Kind::Event,
        owner: Some(IdentityKind::Device),
        publishers: Party::Owner,
        subscribers: Party::Only(Component::Nexus),
        doc: "heartbeats and capabilities of a device (NEXUS receives them through `nexus.>`)",
        subjects: |id| vec![Subject::device_reports(id)],
        all_owners: None,
        audited: false,
    },
];

/// Subjects every NATS identity has for itself, whatever its kind.
pub const PERSONAL: &[Route] = &[
    Route {
        name: "reply inbox",
        template: "_INBOX.{identity}.>",
        kind: Kind::Reply,
        owner: None,
        publishers: Party::Nobody,
        subscribers: Party::Owner,
        doc: "replies to the identity's requests (see \"replies\" for who may answer); an \
              operator's is `_INBOX.operator.{name}.>`",
        subjects: |id| vec![Subject::inbox_all(id)],
        all_owners: None,
        audited: false,
    },
    Route {
        name: "sync",
        template: "ecosystem.sync.{identity}",
        kind: Kind::Request,
        owner: None,
        publishers: Party::Owner,
        subscribers: Party::Nobody,
        doc: "a request nobody answers: the server's \"no responders\" proves a round trip",
        subjects: |id| vec![Subject::sync(id)],
        all_owners: None,
        audited: false,
    },
];

/// The identities that receive (and so must be able to open) what is published on `subject`.
pub fn recipients(subject: &str) -> Vec<Identity> {
    // An operator's inbox is named after it; no table row lists operators by name.
    if let Some(operator) = Subject::operator_of_inbox(subject) {
        return vec![operator];
    }
    let mut out = Vec::new();
    for route in ROUTES
        .iter()
        .chain(PERSONAL)
        .filter(|r| r.owner.is_none_or(|k| k == IdentityKind::Component))
    {
        for owner in Component::ALL.map(Identity::component) {
            if route.subjects(&owner).iter().any(|s| s.matches(subject)) {
                out.extend(
                    Component::ALL
                        .map(Identity::component)
                        .into_iter()
                        .filter(|who| route.subscribers.includes(who, &owner)),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether the table lets `who` publish on `subject` (exactly what its NATS permissions
/// allow): the bus refuses a message whose authenticated sender could not have sent it, such
/// as one a JetStream consumer redelivered somewhere else.
pub fn publishes(who: &Identity, subject: &str) -> bool {
    crate::Permissions::of(who).is_some_and(|p| p.may_publish(subject))
}

/// Whether the table lets `who` receive what is published on `subject`.
pub fn receives(who: &Identity, subject: &str) -> bool {
    crate::Permissions::of(who).is_some_and(|p| p.may_subscribe(subject))
}

/// Whether the auditors receive what is published on `subject`.
pub fn audited(subject: &str) -> bool {
    ROUTES.iter().any(|r| {
        (r.audited || r.subscribers == Party::Auditors)
            && Component::ALL
                .map(Identity::component)
                .iter()
                .any(|o| r.subjects(o).iter().any(|s| s.matches(subject)))
    })
}

/// The route a message on `subject` belongs to: the subject pattern of the first table row
/// that covers it, for the component that owns it (`spark.>` for `spark.generate`,
/// `ecosystem.heartbeat.ozone-studio`, `_INBOX.ozone-studio.>`). The envelope binds each
/// session to it, so a session's key serves that row and owner only. `None`: not a
/// component's subject.
pub fn route_of(subject: &str) -> Option<Subject> {
    ROUTES
        .iter()
        .chain(PERSONAL)
        .filter(|r| r.owner.is_none_or(|k| k == IdentityKind::Component))
        .find_map(|route| {
            Component::ALL.into_iter().find_map(|c| {
                route
                    .subjects(&Identity::component(c))
                    .into_iter()
                    .find(|s| s.matches(subject))
            })
        })
}

/// `docs/subjects.md`, generated.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Subjects\n\nGenerated from `bus-schemas/src/table.rs` by `ozone schema docs`; do not edit.\n\
         The NATS permissions and the envelope's recipients are derived from the same table.\n\n\
         | name | subject | kind | published by | subscribed by | audit stream | what for |\n|---|---|---|---|---|---|---|\n",
    );
    for r in ROUTES.iter().chain(PERSONAL) {
        let kept = r.audited || r.subscribers == Party::Auditors;
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} |\n",
            r.name,
            r.template,
            r.kind.as_str(),
            r.publishers.describe(),
            r.subscribers.describe(),
            if kept { "kept, sealed to auditors" } else { "" },
            r.doc
        ));
    }
    out.push_str(
        "\nWho calls whom: each component, then the components it sends requests to (it may \
         publish on their `{component}.>`):\n\n",
    );
    for c in Component::ALL {
        let callees: Vec<&str> = c.calls().iter().map(|c| c.name()).collect();
        out.push_str(&format!(
            "- {} → {}\n",
            c.name(),
            if callees.is_empty() {
                "nobody".to_string()
            } else {
                callees.join(", ")
            }
        ));
    }
    out.push_str(&format!(
        "- operators (the `ozone` command, identity kind `operator`) → {}\n",
        Party::OperatorsCallees.describe()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_subject_docs_are_current() {
        let committed = include_str!("../../docs/subjects.md");
        assert!(
            committed == markdown(),
            "docs/subjects.md is stale: run `ozone schema docs`"
        );
    }

    #[test]
    fn publishers_and_receivers_follow_the_table() {
        let forge = Identity::component(Component::Forge);
        let spark = Identity::component(Component::Spark);
        assert!(publishes(&forge, "ecosystem.phase.forge"));
        assert!(!publishes(&forge, "ecosystem.phase.spark"));
        assert!(publishes(&forge, "spark.generate"));
        assert!(!publishes(&spark, "forge.x"));
        assert!(publishes(&spark, "_INBOX.forge.abc.1"));
        assert!(!publishes(&forge, "_INBOX.spark.abc.1"));
        assert!(receives(&spark, "ecosystem.phase.forge"));
        assert!(receives(&spark, "spark.generate"));
        assert!(!receives(&spark, "$KV.ozone-sessions.forge.abc"));
        assert!(!receives(&spark, "_INBOX.forge.abc"));
        assert!(Subject::in_inbox_of("_INBOX.forge.abc.1", "forge"));
        for not in [
            "_INBOX.forge",
            "_INBOX.forge.",
            "_INBOX.forger.x",
            "x._INBOX.forge.y",
        ] {
            assert!(!Subject::in_inbox_of(not, "forge"), "{not}");
        }
    }

    #[test]
    fn recipients_follow_the_table() {
        assert_eq!(
            recipients("spark.generate"),
            vec![Identity::component(Component::Spark)]
        );
        assert_eq!(recipients("ecosystem.phase.spark").len(), 8);
        assert!(recipients("audit.spark.keys").is_empty());
        assert!(audited("audit.spark.keys"));
        // Only the fixed categories are audit subjects.
        assert!(!audited("audit.spark.rotation"));
        assert!(!audited("spark.generate"));
    }

    #[test]
    fn routes_name_the_row_and_its_owner() {
        let route = |s: &str| route_of(s).map(|r| r.as_str().to_string());
        assert_eq!(route("spark.generate").as_deref(), Some("spark.>"));
        assert_eq!(
            route("ecosystem.heartbeat.ozone-studio").as_deref(),
            Some("ecosystem.heartbeat.ozone-studio")
        );
        assert_eq!(
            route("ecosystem.phases").as_deref(),
            Some("ecosystem.phases")
        );
        assert_eq!(
            route("audit.spark.keys").as_deref(),
            Some("audit.spark.keys")
        );
        assert_eq!(route("_INBOX.forge.x1").as_deref(), Some("_INBOX.forge.>"));
        assert_eq!(route("nowhere.at.all"), None);
    }
}
