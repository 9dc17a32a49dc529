//! `etc/nats.toml`: where the server listens. Written once by `ozone init`, read by everything
//! that starts or connects to the server, so ports are chosen in one place.

use ozone_security::Home;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Client listener; loopback by default. Set to a routable address to admit SPARK workers
    /// and devices from other hosts (they still need a certificate).
    pub host: String,
    pub port: u16,
    /// HTTP monitoring; always bound to 127.0.0.1.
    pub monitor_port: u16,
    /// Largest message the server accepts, in bytes.
    pub max_payload: u32,
    /// How long the audit stream keeps events (the seed's audit retention: 90 days).
    #[serde(
        default = "default_audit_retention",
        with = "ozone_security::duration_text"
    )]
    pub audit_retention: Duration,
    /// Size cap of the audit stream; past it the oldest events are dropped first.
    #[serde(default = "default_audit_max_bytes")]
    pub audit_max_bytes: u64,
}

fn default_audit_retention() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

fn default_audit_max_bytes() -> u64 {
    1 << 30
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            host: "127.0.0.1".into(),
            port: 4222,
            monitor_port: 8222,
            max_payload: 1024 * 1024,
            audit_retention: default_audit_retention(),
            audit_max_bytes: default_audit_max_bytes(),
        }
    }
}

/// Why the settings could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {detail}")]
    Invalid {
        path: PathBuf,
        #[source]
        detail: crate::bus::BoxError,
    },
}

impl NatsSettings {
    pub fn path(home: &Home) -> PathBuf {
        home.etc().join("nats.toml")
    }

    /// Reads `etc/nats.toml`, or the defaults when it does not exist yet.
    pub fn load(home: &Home) -> Result<NatsSettings, SettingsError> {
        let path = Self::path(home);
        let invalid = |detail: crate::bus::BoxError| SettingsError::Invalid {
            path: path.clone(),
            detail,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| invalid(e.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NatsSettings::default()),
            Err(e) => Err(invalid(e.into())),
        }
    }

    /// Writes the settings unless the file exists; returns whether it wrote.
    pub fn write_if_missing(&self, home: &Home) -> Result<bool, SettingsError> {
        let path = Self::path(home);
        if path.exists() {
            return Ok(false);
        }
        let invalid = |detail: crate::bus::BoxError| SettingsError::Invalid {
            path: path.clone(),
            detail,
        };
        let body = toml::to_string(self).map_err(|e| invalid(e.into()))?;
        std::fs::write(
            &path,
            format!("# Where nats-server listens; read by `ozone` and every component.\n{body}"),
        )
        .map_err(|e| invalid(e.into()))?;
        Ok(true)
    }

    /// The URL clients connect to (TLS first: there is no plaintext phase at all).
    pub fn url(&self) -> String {
        let host = if self.host == "0.0.0.0" {
            "127.0.0.1"
        } else {
            &self.host
        };
        format!("tls://{host}:{}", self.port)
    }
}
