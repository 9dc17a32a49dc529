//! Joining the bus from the `ozone` command: one way to connect as an identity.

use anyhow::Context;
use ozone_bus_schemas::{Identity, IdentityKind};
use ozone_nats::bus::Bus;
use ozone_nats::{Connection, NatsSettings};
use ozone_security::pki::{CONSOLE_AUDITOR, CONSOLE_OPERATOR};
use ozone_security::{tls, Home, SecurityConfig};

/// Connects to `url` with `id`'s certificate from `home`.
pub async fn connect_to(
    url: &str,
    home: &Home,
    cfg: &SecurityConfig,
    id: &Identity,
) -> anyhow::Result<Connection> {
    let tls = tls::client_config(home, cfg, id)?;
    Ok(ozone_nats::connect(url, id, tls).await?)
}

/// Connects to this home's nats-server with `id`'s certificate.
pub async fn connect_as(
    home: &Home,
    cfg: &SecurityConfig,
    id: &Identity,
) -> anyhow::Result<Connection> {
    let url = NatsSettings::load(home)?.url();
    connect_to(&url, home, cfg, id).await
}

/// Connects as the console auditor (read-only, in the audit account).
pub async fn console(home: &Home, cfg: &SecurityConfig) -> anyhow::Result<Connection> {
    let id = Identity::new(IdentityKind::Auditor, CONSOLE_AUDITOR)?;
    connect_as(home, cfg, &id).await
}

/// The operator identity the command line speaks as on this host.
pub fn console_operator() -> anyhow::Result<Identity> {
    Ok(Identity::new(IdentityKind::Operator, CONSOLE_OPERATOR)?)
}

/// Joins the bus as the console operator: its own certificate, NATS user and key ring
/// (`security/keys/operator-console.keyring`), never a component's.
pub async fn cli_bus(home: &Home) -> anyhow::Result<Bus> {
    let cfg = SecurityConfig::load(home, &[])?;
    let id = console_operator()?;
    if !ozone_security::pki::IdentityFiles::of(home, &id).exist() {
        anyhow::bail!(
            "this home has no certificate for {id}; run `ozone init` (it issues what is missing)"
        );
    }
    let conn = connect_as(home, &cfg, &id)
        .await
        .context("cannot reach the bus (is the ecosystem up? `ozone up --detach`)")?;
    Ok(Bus::start(conn, home, cfg.rotation()).await?)
}
