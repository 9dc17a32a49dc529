//! A checked NATS subject (or subject pattern) and the constructors for every subject we use.
//!
//! Subjects are built here and nowhere else, so renaming one is a one-line change that the
//! generated permissions follow automatically.

use crate::identity::OPERATOR_INBOX;
use crate::{Component, Identity, IdentityKind};
use std::fmt;

/// A NATS subject or subscription pattern: dot-separated non-empty tokens without spaces;
/// `*` and `>` only as whole tokens, `>` only last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(pub(crate) String);

/// A string that is not a valid subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subject {subject:?}: {reason}")]
pub struct InvalidSubject {
    pub subject: String,
    pub reason: &'static str,
}

impl Subject {
    pub fn parse(s: &str) -> Result<Subject, InvalidSubject> {
        let bad = |reason| InvalidSubject {
            subject: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let tokens: Vec<&str> = s.split('.').collect();
        for (i, t) in tokens.iter().enumerate() {
            if t.is_empty() {
                return Err(bad("empty token"));
            }
            if t.chars().any(|c| c.is_whitespace()) {
                return Err(bad("whitespace"));
            }
            if t.len() > 1 && (t.contains('*') || t.contains('>')) {
                return Err(bad("wildcards must be whole tokens"));
            }
            if *t == ">" && i != tokens.len() - 1 {
                return Err(bad("'>' must be the last token"));
            }
        }
        Ok(Subject(s.to_string()))
    }

    /// Builds from tokens we control; every caller passes validated names.
    pub(crate) fn join(tokens: &[&str]) -> Subject {
        Subject(tokens.join("."))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_pattern(&self) -> bool {
        self.0.split('.').any(|t| t == "*" || t == ">")
    }

    /// Whether `self` (a pattern) matches the concrete subject `other`.
    pub fn matches(&self, other: &str) -> bool {
        pattern_matches(&self.0, other)
    }

    /// Everything a component serves: `<component>.>`.
    pub fn component_requests(c: Component) -> Subject {
        Subject::join(&[c.token(), ">"])
    }

    /// One named request subject of a component: `<component>.<operation>`.
    pub fn component_request(c: Component, operation: &str) -> Result<Subject, InvalidSubject> {
        Subject::parse(&format!("{}.{operation}", c.token())).and_then(|s| {
            if s.is_pattern() {
                Err(InvalidSubject {
                    subject: s.0,
                    reason: "an operation cannot be a wildcard",
                })
            } else {
                Ok(s)
            }
        })
    }

    /// Where a component announces its own readiness: `ecosystem.phase.<component>`.
    pub fn phase_announce(c: Component) -> Subject {
        Subject::join(&["ecosystem", "phase", c.token()])
    }

    /// Every phase event: `ecosystem.phase.>`.
    pub fn phase_all() -> Subject {
        Subject::join(&["ecosystem", "phase", ">"])
    }

    /// A subject only this component may use, to prove its permissions work end to end.
    pub fn selfcheck(c: Component) -> Subject {
        Subject::join(&["ecosystem", "selfcheck", c.token()])
    }

    /// A subject nobody subscribes to: a request there is answered "no responders" by the
    /// server itself, after it has processed everything this connection sent before. That
    /// round trip is how a client knows its subscriptions are live.
    pub fn sync(identity: &Identity) -> Subject {
        Subject(format!("ecosystem.sync.{}", identity.file_stem()))
    }

    /// The component's audit events: `audit.<component>.>`.
    pub fn audit_of(c: Component) -> Subject {
        Subject::join(&["audit", c.token(), ">"])
    }

    /// All audit events: `audit.>`; the only subjects exported to the audit account.
    pub fn audit_all() -> Subject {
        Subject::join(&["audit", ">"])
    }

    /// The private reply-inbox prefix of an identity: `_INBOX.<inbox stem>` (its file stem;
    /// `operator.<name>` for an operator). Per-identity inboxes mean no identity can
    /// subscribe to another's replies.
    pub fn inbox_prefix(identity: &Identity) -> Subject {
        Subject(format!("_INBOX.{}", identity.inbox_stem()))
    }

    /// Whether `subject` lies in the reply inbox of the identity whose inbox stem is `stem`
    /// (`_INBOX.<stem>.…`); compares in place, for the bus's per-message checks.
    pub fn in_inbox_of(subject: &str, stem: &str) -> bool {
        subject
            .strip_prefix("_INBOX.")
            .and_then(|rest| rest.strip_prefix(stem))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| !rest.is_empty())
    }

    /// All inboxes of an identity: `_INBOX.<inbox stem>.>`.
    pub fn inbox_all(identity: &Identity) -> Subject {
        Subject(format!("_INBOX.{}.>", identity.inbox_stem()))
    }

    /// Every operator's inboxes, `_INBOX.operator.>`: where the components that take
    /// operators' requests answer them.
    pub fn operator_inboxes() -> Subject {
        Subject(format!("_INBOX.{OPERATOR_INBOX}.>"))
    }

    /// The operator whose reply inbox `subject` lies in (`_INBOX.operator.<name>.…`).
    pub fn operator_of_inbox(subject: &str) -> Option<Identity> {
        let rest = subject
            .strip_prefix("_INBOX.")?
            .strip_prefix(OPERATOR_INBOX)?
            .strip_prefix('.')?;
        let (name, tail) = rest.split_once('.')?;
        if tail.is_empty() {
            return None;
        }
        Identity::new(IdentityKind::Operator, name).ok()
    }

    /// The requester part of a reply inbox: `_INBOX.<requester>` of
    /// `_INBOX.<requester>.<token>…` (`_INBOX.operator.<name>` for an operator's); `None` for
    /// a subject of any other shape.
    pub fn requester_inbox(reply: &str) -> Option<&str> {
        const INBOX: &str = "_INBOX.";
        let rest = reply.strip_prefix(INBOX)?;
        // An operator's inbox stem is two tokens.
        let skip = match rest.strip_prefix(OPERATOR_INBOX) {
            Some(after) if after.starts_with('.') => OPERATOR_INBOX.len() + 1,
            _ => 0,
        };
        let dot = skip + rest.get(skip..)?.find('.')?;
        reply.get(..INBOX.len() + dot)
    }

    /// A NATS micro-service discovery request to every service: `$SRV.<verb>` (`PING`,
    /// `INFO`, `STATS`).
    pub fn service_discovery_request(verb: &str) -> Subject {
        Subject::join(&["$SRV", verb])
    }

    /// The reply subjects nats-server gives requests that arrive through a service import
    /// (auditors' `$SRV` requests): `_R_.>`.
    pub fn service_import_replies() -> Subject {
        Subject("_R_.>".into())
    }

    /// What a device may tell NEXUS: `nexus.device.<name>.>`.
    pub fn device_reports(device: &Identity) -> Subject {
        Subject(format!(
            "{}.device.{}.>",
            Component::Nexus.token(),
            device.name
        ))
    }

    /// Every discovery subject: `$SRV.>`.
    pub fn service_discovery_all() -> Subject {
        Subject::join(&["$SRV", ">"])
    }

    /// NATS micro-service discovery subjects a service answers: `$SRV.PING`, `$SRV.PING.<name>`,
    /// `$SRV.PING.<name>.<id>` and the same for INFO and STATS.
    pub fn service_discovery(c: Component) -> Vec<Subject> {
        let mut out = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            out.push(Subject::join(&["$SRV", verb]));
            out.push(Subject::join(&["$SRV", verb, c.token()]));
            out.push(Subject::join(&["$SRV", verb, c.token(), "*"]));
        }
        out
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the NATS subject pattern `pattern` (`*` one token, `>` the rest) covers
/// `subject`: token by token, no allocation (the bus and the envelope run it per message).
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    let mut pat = pattern.split('.');
    let mut sub = subject.split('.');
    loop {
        match (pat.next(), sub.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_malformed_subjects() {
        for bad in ["", "a..b", "a b", "a.>.b", "a.b*", ".a", "a."] {
            assert!(Subject::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a.*.c", "a.>", "$SRV.PING", "_INBOX.spark.>"] {
            assert!(Subject::parse(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn a_reply_inbox_names_its_requester() {
        assert_eq!(
            Subject::requester_inbox("_INBOX.forge.abc.1"),
            Some("_INBOX.forge")
        );
        assert_eq!(
            Subject::requester_inbox("_INBOX.operator.console.abc.1"),
            Some("_INBOX.operator.console")
        );
        assert_eq!(Subject::requester_inbox("_INBOX.operator.console"), None);
        let console = Identity::new(IdentityKind::Operator, "console").ok();
        assert_eq!(
            Subject::operator_of_inbox("_INBOX.operator.console.abc.1"),
            console
        );
        for other in [
            "_INBOX.operator.console",
            "_INBOX.operator.console.",
            "_INBOX.operator.spark.x",
            "_INBOX.forge.abc",
            "_INBOX.operators.x.y",
        ] {
            assert_eq!(Subject::operator_of_inbox(other), None, "{other}");
        }
        for other in [
            "_INBOX.forge",
            "_R_.x.y",
            "ecosystem.phase.spark",
            "_INBOXforge.a",
        ] {
            assert_eq!(Subject::requester_inbox(other), None, "{other}");
        }
        assert_eq!(
            Subject::service_discovery_request("PING").as_str(),
            "$SRV.PING"
        );
    }

    #[test]
    fn constructors_produce_valid_subjects() {
        for c in Component::ALL {
            let mut all = vec![
                Subject::component_requests(c),
                Subject::phase_announce(c),
                Subject::selfcheck(c),
                Subject::audit_of(c),
                Subject::inbox_all(&Identity::component(c)),
            ];
            all.extend(Subject::service_discovery(c));
            for s in all {
                assert_eq!(Subject::parse(s.as_str()), Ok(s.clone()));
            }
        }
        assert!(Subject::component_request(Component::Spark, ">").is_err());
    }

    #[test]
    fn matching_follows_nats_rules() {
        let p = Subject::component_requests(Component::Spark);
        assert!(p.matches("spark.generate"));
        assert!(p.matches("spark.a.b"));
        assert!(!p.matches("spark"));
        assert!(!p.matches("sparks.generate"));
        let star = Subject::parse("$SRV.PING.*").unwrap_or_else(|e| panic!("{e}"));
        assert!(star.matches("$SRV.PING.x"));
        assert!(!star.matches("$SRV.PING.x.y"));
    }
}
