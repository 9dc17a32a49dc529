//! Which settings of `security-config.toml` the platform acts on.
//!
//! The file carries the seed's sections whole, and some of its keys describe parts that do not
//! exist yet (the HTTP door's API keys, logins and rate limits) or that cannot be turned off
//! (every connection is authenticated by certificate; security decisions are always audited).
//! None is accepted silently: a guarantee that cannot be turned off refuses `false`
//! ([`always_on`], called by `SecurityConfig::check`), and a setting that asks for something
//! not built yet is named, with the issue that builds it, by `ozone validate` and `ozone up`
//! ([`unhonoured`]).

use crate::config::{ConfigError, SecurityConfig};

/// A setting that is read but not acted on: its key, its value now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhonoured {
    pub key: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl std::fmt::Display for Unhonoured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.why)
    }
}

/// The guarantees that hold whatever the file says, as (key, value, why): `false` is refused.
fn guarantees(cfg: &SecurityConfig) -> [(&'static str, bool, &'static str); 5] {
    [
        (
            "authentication.certificate_authentication",
            cfg.authentication.certificate_authentication,
            "every NATS connection is authenticated by its client certificate",
        ),
        (
            "authorization.fine_grained_permissions",
            cfg.authorization.fine_grained_permissions,
            "every identity's publish and subscribe rights are generated from the subject table",
        ),
        (
            "authorization.audit_logging_enabled",
            cfg.authorization.audit_logging_enabled,
            "security decisions and refusals always go to the audit stream",
        ),
        (
            "encryption.forward_secrecy_enabled",
            cfg.encryption.forward_secrecy_enabled,
            "envelope keys rotate every key_rotation_interval and are erased after their grace \
             window",
        ),
        (
            "network_security.certificate_pinning",
            cfg.network_security.certificate_pinning,
            "clients trust only the ecosystem's own CA bundle and the server name nats.local, \
             never system roots",
        ),
    ]
}

/// Refuses turning off a guarantee the platform always keeps.
pub fn always_on(cfg: &SecurityConfig) -> Result<(), ConfigError> {
    match guarantees(cfg).into_iter().find(|(_, on, _)| !on) {
        Some((key, _, why)) => Err(ConfigError::Unsupported {
            key,
            value: "false".into(),
            why,
        }),
        None => Ok(()),
    }
}

/// The HTTP door (BRIDGE) that API keys, logins and rate limits belong to.
const BRIDGE: &str = "BRIDGE has no HTTP API, web UI or logins yet; issue 22 (BRIDGE: HTTPS, \
                      OpenAI-compatible API, web UI) builds them";

/// Every setting that asks for something the platform does not do yet.
pub fn unhonoured(cfg: &SecurityConfig) -> Vec<Unhonoured> {
    let duration = |d| crate::duration_text::format(d);
    let a = &cfg.authentication;
    let n = &cfg.network_security;
    let r = &cfg.rate_limiting;
    let candidates = [
        (
            a.api_key_authentication,
            "authentication.api_key_authentication",
            "true".to_string(),
            BRIDGE,
        ),
        (
            true,
            "authentication.session_timeout",
            duration(a.session_timeout),
            BRIDGE,
        ),
        (
            true,
            "authentication.max_failed_attempts",
            a.max_failed_attempts.to_string(),
            BRIDGE,
        ),
        (
            cfg.authorization.role_based_access_control,
            "authorization.role_based_access_control",
            "true".to_string(),
            "there are no user roles yet (every user identity has the same rights); issue 22 \
             (BRIDGE) brings users to the platform",
        ),
        (
            cfg.authorization.privilege_escalation_detection,
            "authorization.privilege_escalation_detection",
            "true".to_string(),
            "permission violations are refused by nats-server and audited, but nothing \
             correlates them yet; issue 21 (COGNIS, the policy gate) does",
        ),
        (
            n.rate_limiting_enabled,
            "network_security.rate_limiting_enabled",
            format!(
                "true (rate_limiting: {}/min, burst {}, ban {})",
                r.requests_per_minute,
                r.burst_limit,
                duration(r.ban_duration)
            ),
            BRIDGE,
        ),
        (
            n.ddos_protection,
            "network_security.ddos_protection",
            "true".to_string(),
            "only nats-server's connection cap (1024) and SPARK's admission limits bound load; \
             the HTTP door's protection comes with issue 22 (BRIDGE)",
        ),
        (
            cfg.encryption.encryption_at_rest_enabled,
            "encryption.encryption_at_rest_enabled",
            "true".to_string(),
            "stored messages are sealed envelopes, but JetStream's files and the logs are not \
             encrypted as a whole; no issue builds this yet",
        ),
        (
            true,
            "certificate_authority.revocation_list_update_interval",
            duration(cfg.certificate_authority.revocation_list_update_interval),
            "not used: there is no revocation list to fetch; `ozone pki revoke` reloads \
             nats-server at once and every service drops the revoked keys within 2 s",
        ),
    ];
    candidates
        .into_iter()
        .filter(|(asked, ..)| *asked)
        .map(|(_, key, value, why)| Unhonoured { key, value, why })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Home;

    fn defaults() -> SecurityConfig {
        SecurityConfig::defaults(&Home::new("/nonexistent"))
    }

    #[test]
    fn the_seeds_defaults_name_what_is_not_built_yet() {
        let named: Vec<&str> = unhonoured(&defaults()).iter().map(|u| u.key).collect();
        assert_eq!(
            named,
            [
                "authentication.api_key_authentication",
                "authentication.session_timeout",
                "authentication.max_failed_attempts",
                "authorization.role_based_access_control",
                "authorization.privilege_escalation_detection",
                "network_security.rate_limiting_enabled",
                "network_security.ddos_protection",
                "certificate_authority.revocation_list_update_interval",
            ]
        );
        assert!(always_on(&defaults()).is_ok());
    }

    #[test]
    fn asking_for_less_is_not_reported_and_asking_for_more_is() {
        let mut cfg = defaults();
        cfg.authentication.api_key_authentication = false;
        cfg.network_security.rate_limiting_enabled = false;
        cfg.encryption.encryption_at_rest_enabled = true;
        let named: Vec<String> = unhonoured(&cfg).iter().map(ToString::to_string).collect();
        assert!(!named.iter().any(|u| u.contains("api_key")), "{named:?}");
        assert!(
            !named.iter().any(|u| u.contains("rate_limiting")),
            "{named:?}"
        );
        assert!(
            named
                .iter()
                .any(|u| u.starts_with("encryption.encryption_at_rest_enabled = true: ")),
            "{named:?}"
        );
    }

    #[test]
    fn turning_off_a_guarantee_is_refused_with_the_reason() {
        let mut cfg = defaults();
        cfg.authorization.audit_logging_enabled = false;
        let err = always_on(&cfg)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("authorization.audit_logging_enabled")
                && err.contains("always go to the audit stream"),
            "{err}"
        );
    }
}
