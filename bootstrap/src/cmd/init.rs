//! `ozone init`: the seed's Phases 1 and 2 — layout, environment, security configuration,
//! CA structure, component certificates — plus the NATS configuration. Idempotent: it only
//! creates what is missing and never replaces a key.

use ozone_nats::NatsSettings;
use ozone_security::pki::{self, CaKind};
use ozone_security::{Home, SecurityConfig};
use std::path::PathBuf;

/// What init did; empty lists mean it found everything in place.
#[derive(Debug, Default)]
pub struct InitReport {
    pub created_dirs: Vec<PathBuf>,
    pub written_files: Vec<PathBuf>,
    pub created_cas: Vec<CaKind>,
    pub issued: Vec<String>,
}

impl InitReport {
    pub fn changed_anything(&self) -> bool {
        !(self.created_dirs.is_empty()
            && self.written_files.is_empty()
            && self.created_cas.is_empty()
            && self.issued.is_empty())
    }
}

/// Initialises `home`. `settings` are used only when `etc/nats.toml` does not exist yet.
pub fn run(
    home: &Home,
    settings: &NatsSettings,
    overrides: &[(String, String)],
) -> anyhow::Result<(InitReport, SecurityConfig)> {
    let mut report = InitReport {
        created_dirs: home.create_layout()?,
        ..InitReport::default()
    };
    if SecurityConfig::write_default_if_missing(home, &home.security_config())? {
        report.written_files.push(home.security_config());
    }
    let cfg = SecurityConfig::load(home, overrides)?;
    if settings.write_if_missing(home)? {
        report.written_files.push(NatsSettings::path(home));
    }
    let settings = NatsSettings::load(home)?;
    let pki_report = pki::ensure(home, &cfg)?;
    report.created_cas = pki_report.created_cas;
    report.issued = pki_report.issued;
    if crate::env_file::write_if_missing(home, &settings)? {
        report.written_files.push(home.ecosystem_env());
    }
    if ozone_nats::config::write(home, &settings)? {
        report.written_files.push(home.nats_config());
    }
    Ok((report, cfg))
}
