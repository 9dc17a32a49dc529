//! Who may hold a certificate and a NATS user, and how the certificate maps to that user.

use crate::Component;
use serde::{Deserialize, Serialize};

/// What an identity is; decides its issuing CA, its NATS account and its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityKind {
    /// One of the eight ecosystem components (AI-App CA).
    Component,
    /// A person; talks to BRIDGE over HTTPS, has no NATS user (User CA).
    User,
    /// A device joining NEXUS (User CA).
    Device,
    /// A read-only external audit tool (User CA, audit account).
    Auditor,
    /// Someone running the `ozone` command on the ecosystem's machine (User CA, ecosystem
    /// account): calls the components that take operators' requests
    /// ([`Component::takes_operators`]) with a key ring of its own.
    Operator,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Component => "component",
            IdentityKind::User => "user",
            IdentityKind::Device => "device",
            IdentityKind::Auditor => "auditor",
            IdentityKind::Operator => "operator",
        }
    }

    pub fn from_name(name: &str) -> Option<IdentityKind> {
        [
            IdentityKind::Component,
            IdentityKind::User,
            IdentityKind::Device,
            IdentityKind::Auditor,
            IdentityKind::Operator,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// The NATS account an identity lives in. Accounts are the trust boundary: nothing crosses
/// from one to another except what is explicitly exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatsAccount {
    /// The ecosystem services (and devices).
    Ecosystem,
    /// Read-only external audit tools; sees only the exported audit subjects.
    Audit,
    /// The server's system account; no client identity lives here.
    System,
}

impl NatsAccount {
    pub fn name(self) -> &'static str {
        match self {
            NatsAccount::Ecosystem => "OZONE",
            NatsAccount::Audit => "AUDIT",
            NatsAccount::System => "SYS",
        }
    }
}

const URN_PREFIX: &str = "urn:ozone:";
/// The first token of every operator's inbox stem (`_INBOX.operator.<name>`).
pub(crate) const OPERATOR_INBOX: &str = "operator";
const OPERATOR_URN_PREFIX: &str = "urn:ozone:operator:";

/// A name that is not allowed for an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid identity name {name:?}: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: &'static str,
}

/// A certificate holder: kind plus a validated name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    pub kind: IdentityKind,
    pub name: String,
}

impl Identity {
    pub fn component(c: Component) -> Identity {
        Identity {
            kind: IdentityKind::Component,
            name: c.name().to_string(),
        }
    }

    /// Validates the name: 1–63 of `[a-z0-9-]`, not starting with `-`; a component identity
    /// must name one of the eight components, and nothing else may take a component's name.
    pub fn new(kind: IdentityKind, name: &str) -> Result<Identity, InvalidName> {
        let bad = |reason| InvalidName {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() || name.len() > 63 {
            return Err(bad("use 1 to 63 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || name.starts_with('-')
        {
            return Err(bad(
                "use lowercase letters, digits and '-', not starting with '-'",
            ));
        }
        let is_component = Component::from_name(name).is_some();
        match kind {
            IdentityKind::Component if !is_component => Err(bad(
                "not a component; use one of spark, cognis, zsei, ozone-studio, nexus, bridge, forge, scribe",
            )),
            IdentityKind::Component => Ok(Identity {
                kind,
                name: name.to_string(),
            }),
            _ if is_component || name == "nats-server" => {
                Err(bad("reserved for an ecosystem component"))
            }
            _ => Ok(Identity {
                kind,
                name: name.to_string(),
            }),
        }
    }

    pub fn as_component(&self) -> Option<Component> {
        match self.kind {
            IdentityKind::Component => Component::from_name(&self.name),
            _ => None,
        }
    }

    /// Base name of the identity's files: `spark`, `auditor-siem`, `device-laptop`.
    pub fn file_stem(&self) -> String {
        match self.kind {
            IdentityKind::Component => self.name.clone(),
            kind => format!("{}-{}", kind.as_str(), self.name),
        }
    }

    /// Whether the identity connects to NATS (everyone but people, who use BRIDGE).
    pub fn has_nats_user(&self) -> bool {
        match self.kind {
            IdentityKind::User => false,
            IdentityKind::Component => self.as_component().is_some(),
            IdentityKind::Device | IdentityKind::Auditor | IdentityKind::Operator => true,
        }
    }

    /// Whether the identity joins the bus with a key ring of its own (seals and opens
    /// messages): the components and operators.
    pub fn is_member(&self) -> bool {
        match self.kind {
            IdentityKind::Component => self.as_component().is_some(),
            IdentityKind::Operator => true,
            _ => false,
        }
    }

    /// The name its key-directory entries and envelopes carry: a component's name (`spark`)
    /// or, for anyone else, the URN its certificate names (`urn:ozone:operator:console`).
    pub fn directory_name(&self) -> String {
        match self.as_component() {
            Some(c) => c.name().to_string(),
            None => self.urn(),
        }
    }

    /// The identity a key-directory name stands for (see [`Identity::directory_name`]).
    pub fn from_directory_name(name: &str) -> Option<Identity> {
        if let Some(c) = Component::from_name(name) {
            return Some(Identity::component(c));
        }
        let (kind, name) = name.strip_prefix(URN_PREFIX)?.split_once(':')?;
        let kind = IdentityKind::from_name(kind).filter(|k| *k != IdentityKind::Component)?;
        Identity::new(kind, name).ok()
    }

    /// What follows `_INBOX.` in the identity's reply subjects: its file stem, except for
    /// operators, whose inboxes share the token `operator` (`_INBOX.operator.<name>`) so
    /// that one permission lets a component answer every operator.
    pub fn inbox_stem(&self) -> std::borrow::Cow<'_, str> {
        match self.kind {
            IdentityKind::Component => self.name.as_str().into(),
            IdentityKind::Operator => format!("{OPERATOR_INBOX}.{}", self.name).into(),
            _ => self.file_stem().into(),
        }
    }

    /// [`Identity::inbox_stem`] of the identity a key-directory name stands for, without
    /// allocating for a component (this runs for every message opened).
    pub fn inbox_stem_of(directory_name: &str) -> std::borrow::Cow<'_, str> {
        match directory_name.strip_prefix(OPERATOR_URN_PREFIX) {
            Some(name) => format!("{OPERATOR_INBOX}.{name}").into(),
            None => directory_name.into(),
        }
    }

    /// The NATS user of one issuance of the identity's certificate (its serial, hex):
    /// `urn:ozone:<kind>:<name>:<serial>`, carried as a URI SAN and the one name in the
    /// certificate that nats-server's `verify_and_map` matches.
    ///
    /// Per issuance, not per name: re-issuing an identity (after a revocation, or to replace a
    /// stolen key) gives it a new user, so an older certificate of the same name — valid for
    /// months — never maps to a user again. DNS names (`spark.local`) and the plain URN stay
    /// in certificates for the key directory's checks, but no user is named after them.
    pub fn nats_user(&self, serial: &str) -> Option<String> {
        self.has_nats_user()
            .then(|| format!("{}{serial}", self.nats_user_prefix()))
    }

    /// What every NATS user of this identity starts with: `urn:ozone:<kind>:<name>:`.
    pub fn nats_user_prefix(&self) -> String {
        format!("{}:", self.urn())
    }

    /// `urn:ozone:<kind>:<name>`, the URI SAN of non-component identities.
    pub fn urn(&self) -> String {
        format!("{URN_PREFIX}{}:{}", self.kind.as_str(), self.name)
    }

    /// The account the identity's NATS user lives in; `None` for people (no NATS user).
    pub fn account(&self) -> Option<NatsAccount> {
        match self.kind {
            IdentityKind::Component | IdentityKind::Device | IdentityKind::Operator => {
                Some(NatsAccount::Ecosystem)
            }
            IdentityKind::Auditor => Some(NatsAccount::Audit),
            IdentityKind::User => None,
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(Identity::new(IdentityKind::Component, "spark").is_ok());
        assert!(Identity::new(IdentityKind::Component, "sparky").is_err());
        assert!(Identity::new(IdentityKind::Auditor, "spark").is_err());
        assert!(Identity::new(IdentityKind::Auditor, "nats-server").is_err());
        assert!(Identity::new(IdentityKind::Device, "Laptop").is_err());
        assert!(Identity::new(IdentityKind::Device, "a.b").is_err());
        assert!(Identity::new(IdentityKind::Device, "").is_err());
        assert!(Identity::new(IdentityKind::Device, "-x").is_err());
        assert!(Identity::new(IdentityKind::Device, "laptop-2").is_ok());
    }

    #[test]
    fn nats_users_are_unambiguous_and_per_issuance() {
        let mut users: Vec<String> = Component::ALL
            .iter()
            .filter_map(|c| Identity::component(*c).nats_user("0a"))
            .collect();
        for kind in [
            IdentityKind::Device,
            IdentityKind::Auditor,
            IdentityKind::Operator,
        ] {
            users.extend(
                Identity::new(kind, "x")
                    .ok()
                    .and_then(|i| i.nats_user("0a")),
            );
        }
        let n = users.len();
        users.sort();
        users.dedup();
        assert_eq!(users.len(), n);
        assert!(!users
            .iter()
            .any(|u| u == "localhost" || u.ends_with(".local")));
        let spark = Identity::component(Component::Spark);
        assert_eq!(
            spark.nats_user("0a").as_deref(),
            Some("urn:ozone:component:spark:0a")
        );
        assert_ne!(spark.nats_user("0a"), spark.nats_user("0b"));
        assert!(!Identity::new(IdentityKind::User, "alice")
            .map(|i| i.has_nats_user())
            .unwrap_or(true));
    }

    #[test]
    fn directory_names_and_inboxes_name_one_identity() {
        let op = Identity::new(IdentityKind::Operator, "console").unwrap();
        assert_eq!(op.directory_name(), "urn:ozone:operator:console");
        assert_eq!(op.inbox_stem(), "operator.console");
        assert_eq!(
            Identity::inbox_stem_of(&op.directory_name()),
            "operator.console"
        );
        assert_eq!(Identity::inbox_stem_of("spark"), "spark");
        let siem = Identity::new(IdentityKind::Auditor, "siem").unwrap();
        for id in [op, siem, Identity::component(Component::Core)] {
            assert_eq!(
                Identity::from_directory_name(&id.directory_name()),
                Some(id)
            );
        }
        for bad in [
            "sparky",
            "urn:ozone:component:spark",
            "urn:ozone:operator:",
            "urn:ozone:operator:Bad",
            "urn:ozone:operator:spark",
            "urn:ozone:wizard:x",
            "urn:other:operator:x",
        ] {
            assert_eq!(Identity::from_directory_name(bad), None, "{bad}");
        }
    }
}
