//! `security-config.toml`: the seed's security settings, layered defaults → file → `OZONE_*`
//! environment → command-line flags, and checked so that a setting we cannot honour is an
//! error rather than silently ignored.

use crate::Home;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityConfig {
    pub certificate_authority: CertificateAuthority,
    pub encryption: Encryption,
    pub authentication: Authentication,
    pub authorization: Authorization,
    pub network_security: NetworkSecurity,
    pub rate_limiting: RateLimiting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthority {
    pub ca_certificate_path: PathBuf,
    pub ca_private_key_path: PathBuf,
    /// Validity of component, user, device and auditor certificates.
    #[serde(with = "crate::duration_text")]
    pub certificate_validity_duration: Duration,
    /// Renew certificates near expiry whenever the ecosystem starts.
    pub auto_renewal_enabled: bool,
    /// "Near expiry": certificates expiring within this window are renewed.
    #[serde(with = "crate::duration_text")]
    pub renew_before_expiry: Duration,
    /// Revocation takes effect at once (the NATS user is removed and the server reloaded);
    /// this is how often a long-running supervisor re-reads the revocation registry.
    #[serde(with = "crate::duration_text")]
    pub revocation_list_update_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    pub message_encryption_algorithm: String,
    pub key_exchange_protocol: String,
    pub forward_secrecy_enabled: bool,
    #[serde(with = "crate::duration_text")]
    pub key_rotation_interval: Duration,
    pub encryption_at_rest_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    pub mutual_tls_required: bool,
    pub api_key_authentication: bool,
    pub certificate_authentication: bool,
    #[serde(with = "crate::duration_text")]
    pub session_timeout: Duration,
    pub max_failed_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    pub role_based_access_control: bool,
    pub fine_grained_permissions: bool,
    pub audit_logging_enabled: bool,
    pub privilege_escalation_detection: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSecurity {
    pub tls_version: String,
    /// TLS 1.3 suites our clients offer (the server side of TLS 1.3 has no such setting).
    pub cipher_suites: Vec<String>,
    pub certificate_pinning: bool,
    pub rate_limiting_enabled: bool,
    pub ddos_protection: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiting {
    pub requests_per_minute: u32,
    pub burst_limit: u32,
    #[serde(with = "crate::duration_text")]
    pub ban_duration: Duration,
}

/// The TLS 1.3 cipher suites that exist; anything else in `cipher_suites` is a mistake.
pub const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
];

/// A configuration that could not be read or that asks for something we refuse to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the security configuration: {0}")]
    Read(#[from] config::ConfigError),
    #[error("{key} = {value:?} is not supported: {why}")]
    Unsupported {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

const DAY: u64 = 24 * 3600;

impl SecurityConfig {
    /// Key rotation as configured: `encryption.key_rotation_interval` epochs, 1 h grace.
    pub fn rotation(&self) -> crate::envelope::Rotation {
        crate::envelope::Rotation {
            interval_ms: self.encryption.key_rotation_interval.as_millis() as u64,
            ..crate::envelope::Rotation::daily()
        }
    }

    /// The seed's values, with paths under `home`.
    pub fn defaults(home: &Home) -> SecurityConfig {
        SecurityConfig {
            certificate_authority: CertificateAuthority {
                ca_certificate_path: home.ca_dir().join("root-ca.crt"),
                ca_private_key_path: home.ca_dir().join("root-ca.key"),
                certificate_validity_duration: Duration::from_secs(365 * DAY),
                auto_renewal_enabled: true,
                renew_before_expiry: Duration::from_secs(30 * DAY),
                revocation_list_update_interval: Duration::from_secs(3600),
            },
            encryption: Encryption {
                message_encryption_algorithm: "AES-256-GCM".into(),
                key_exchange_protocol: "X25519".into(),
                forward_secrecy_enabled: true,
                key_rotation_interval: Duration::from_secs(DAY),
                encryption_at_rest_enabled: false,
            },
            authentication: Authentication {
                mutual_tls_required: true,
                api_key_authentication: true,
                certificate_authentication: true,
                session_timeout: Duration::from_secs(8 * 3600),
                max_failed_attempts: 3,
            },
            authorization: Authorization {
                role_based_access_control: true,
                fine_grained_permissions: true,
                audit_logging_enabled: true,
                privilege_escalation_detection: true,
            },
            network_security: NetworkSecurity {
                tls_version: "1.3".into(),
                cipher_suites: TLS13_SUITES.iter().map(|s| s.to_string()).collect(),
                certificate_pinning: true,
                rate_limiting_enabled: true,
                ddos_protection: true,
            },
            rate_limiting: RateLimiting {
                requests_per_minute: 1000,
                burst_limit: 100,
                ban_duration: Duration::from_secs(600),
            },
        }
    }

    /// Loads defaults → `etc/security-config.toml` (if present) → `OZONE_<SECTION>__<KEY>`
    /// environment variables → `overrides` (`"section.key"`, value) from command-line flags.
    pub fn load(
        home: &Home,
        overrides: &[(String, String)],
    ) -> Result<SecurityConfig, ConfigError> {
        let defaults = config::Config::try_from(&SecurityConfig::defaults(home))?;
        let mut builder = config::Config::builder()
            .add_source(defaults)
            .add_source(config::File::from(home.security_config()).required(false))
            .add_source(
                config::Environment::with_prefix("OZONE")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("network_security.cipher_suites"),
            );
        for (key, value) in overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let cfg: SecurityConfig = builder.build()?.try_deserialize()?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses settings that would weaken the security plane or that we cannot honour.
    pub fn check(&self) -> Result<(), ConfigError> {
        let unsupported = |key, value: &str, why| ConfigError::Unsupported {
            key,
            value: value.to_string(),
            why,
        };
        let n = &self.network_security;
        if n.tls_version != "1.3" {
            return Err(unsupported(
                "network_security.tls_version",
                &n.tls_version,
                "only TLS 1.3 is allowed",
            ));
        }
        if let Some(bad) = n
            .cipher_suites
            .iter()
            .find(|s| !TLS13_SUITES.contains(&s.as_str()))
        {
            return Err(unsupported(
                "network_security.cipher_suites",
                bad,
                "not a TLS 1.3 suite (TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256)",
            ));
        }
        if n.cipher_suites.is_empty() {
            return Err(unsupported(
                "network_security.cipher_suites",
                "[]",
                "name at least one suite",
            ));
        }
        if !self.authentication.mutual_tls_required {
            return Err(unsupported(
                "authentication.mutual_tls_required",
                "false",
                "every NATS connection is authenticated by its client certificate",
            ));
        }
        let e = &self.encryption;
        if e.message_encryption_algorithm != "AES-256-GCM" {
            return Err(unsupported(
                "encryption.message_encryption_algorithm",
                &e.message_encryption_algorithm,
                "only AES-256-GCM is implemented",
            ));
        }
        if e.key_exchange_protocol != "X25519" {
            return Err(unsupported(
                "encryption.key_exchange_protocol",
                &e.key_exchange_protocol,
                "only X25519 is implemented",
            ));
        }
        let ca = &self.certificate_authority;
        if ca.certificate_validity_duration < Duration::from_secs(DAY) {
            return Err(unsupported(
                "certificate_authority.certificate_validity_duration",
                &crate::duration_text::format(ca.certificate_validity_duration),
                "use at least 1d",
            ));
        }
        if ca.renew_before_expiry >= ca.certificate_validity_duration {
            return Err(unsupported(
                "certificate_authority.renew_before_expiry",
                &crate::duration_text::format(ca.renew_before_expiry),
                "must be shorter than certificate_validity_duration, or every start renews everything",
            ));
        }
        if e.key_rotation_interval < Duration::from_secs(60) {
            return Err(unsupported(
                "encryption.key_rotation_interval",
                &crate::duration_text::format(e.key_rotation_interval),
                "use at least 1m",
            ));
        }
        crate::honoured::always_on(self)
    }

    /// Writes the defaults as `path` unless it exists (init never overwrites an edited file).
    /// Returns whether it wrote the file.
    pub fn write_default_if_missing(home: &Home, path: &Path) -> Result<bool, ConfigError> {
        if path.exists() {
            return Ok(false);
        }
        let body = toml::to_string_pretty(&SecurityConfig::defaults(home)).map_err(|e| {
            ConfigError::Write {
                path: path.to_path_buf(),
                source: std::io::Error::other(e),
            }
        })?;
        let text = format!(
            "# OZONE STUDIO security configuration (the seed's security-config.toml).\n\
             # Precedence: built-in defaults < this file < OZONE_<SECTION>__<KEY> environment\n\
             # variables (e.g. OZONE_ENCRYPTION__KEY_ROTATION_INTERVAL=12h) < command-line flags.\n\n{body}"
        );
        std::fs::write(path, text).map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = Home::new(tmp.path());
        home.create_layout().unwrap_or_else(|e| panic!("{e}"));
        (tmp, home)
    }

    #[test]
    fn written_defaults_read_back_identically() {
        let (_tmp, home) = home();
        assert!(
            SecurityConfig::write_default_if_missing(&home, &home.security_config())
                .unwrap_or(false)
        );
        assert!(
            !SecurityConfig::write_default_if_missing(&home, &home.security_config())
                .unwrap_or(true)
        );
        let cfg = SecurityConfig::load(&home, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg, SecurityConfig::defaults(&home));
    }

    #[test]
    fn file_then_flags_override_and_bad_values_are_refused() {
        let (_tmp, home) = home();
        std::fs::write(
            home.security_config(),
            "[certificate_authority]\ncertificate_validity_duration = \"90d\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = SecurityConfig::load(&home, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.certificate_authority.certificate_validity_duration,
            Duration::from_secs(90 * DAY)
        );
        let flag = [(
            "certificate_authority.certificate_validity_duration".to_string(),
            "60d".to_string(),
        )];
        let cfg = SecurityConfig::load(&home, &flag).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.certificate_authority.certificate_validity_duration,
            Duration::from_secs(60 * DAY)
        );

        let weak = [(
            "network_security.tls_version".to_string(),
            "1.2".to_string(),
        )];
        let err = SecurityConfig::load(&home, &weak)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("only TLS 1.3"), "{err}");

        std::fs::write(
            home.security_config(),
            "[encryption]\nkey_rotaton_interval = \"1h\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = SecurityConfig::load(&home, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("key_rotaton_interval"),
            "typo not reported: {err}"
        );
    }
}
