//! `ozone pki verify | issue | renew | revoke`.

use ozone_bus_schemas::{Identity, IdentityKind};
use ozone_nats::NatsSettings;
use ozone_security::pki::{self, IssueOptions, Severity};
use ozone_security::{passphrase, Home, SecurityConfig};
use std::time::Duration;

/// Prints every finding; returns the number of errors (warnings do not fail).
pub fn verify(home: &Home, cfg: &SecurityConfig) -> usize {
    let findings = pki::verify(home, cfg.certificate_authority.renew_before_expiry);
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    for f in &findings {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!("{tag}: {}: {}\n  fix: {}", f.subject, f.problem, f.fix);
    }
    if errors == 0 {
        println!(
            "pki ok: root, AI-App and User CAs, the NATS server and {} identities verified ({} warnings)",
            pki::Registry::load(home).map(|r| r.identities.iter().filter(|i| i.is_active()).count()).unwrap_or(0),
            findings.len()
        );
    }
    errors
}

/// Issues (or re-issues with a fresh key) one identity, then refreshes the NATS configuration
/// and reloads a running server so the new identity can connect at once. An auditor also gets
/// its recipient key, published to the key directory when the server runs.
pub async fn issue(
    home: &Home,
    cfg: &SecurityConfig,
    kind: IdentityKind,
    name: &str,
) -> anyhow::Result<()> {
    let identity = Identity::new(kind, name)?;
    let pass = passphrase::resolve(home, false)?;
    let issued = pki::issue(
        home,
        &identity,
        &IssueOptions::valid_for(cfg.certificate_authority.certificate_validity_duration),
        &pass,
    )?;
    println!("issued {identity}: serial {}", issued.record.serial);
    println!("  certificate  {}", issued.files.cert.display());
    println!("  chain        {}", issued.files.chain.display());
    println!("  private key  {} (0600)", issued.files.key.display());
    match identity.nats_user(&issued.record.serial) {
        Some(user) => println!("  NATS user    {user}"),
        None => println!("  no NATS user (people use BRIDGE)"),
    }
    let running = refresh_nats(home).await?;
    if kind == IdentityKind::Auditor {
        // A re-issued auditor gets a new recipient key too.
        ozone_security::envelope::auditor_key::remove(home, &identity)?;
        ozone_security::envelope::auditor_key::load_or_create(home, &identity)?;
        println!(
            "  recipient    {} (X25519, PKCS#8, 0600): opens the audit events sealed to it",
            ozone_security::envelope::auditor_key::path(home, &identity).display()
        );
        if running {
            crate::audit_stream::publish_auditor_keys(home, cfg, Some(&identity)).await?;
            println!("  published its key: audit events are sealed to it from now on");
        }
    }
    Ok(())
}

/// Renews everything expiring within `within`; reloads NATS if the server cert changed.
pub async fn renew(
    home: &Home,
    cfg: &SecurityConfig,
    within: Duration,
) -> anyhow::Result<Vec<String>> {
    let renewed = pki::renew(home, cfg, within)?;
    if renewed.is_empty() {
        println!(
            "nothing expires within {}",
            ozone_security::duration_text::format(within)
        );
    } else {
        println!("renewed: {}", renewed.join(", "));
        refresh_nats(home).await?;
    }
    Ok(renewed)
}

/// Revokes every identity called `name` (or only the one of `kind`), cuts it off the bus.
pub async fn revoke(
    home: &Home,
    cfg: &SecurityConfig,
    kind: Option<IdentityKind>,
    name: &str,
) -> anyhow::Result<()> {
    let registry = pki::Registry::load(home)?;
    let matches: Vec<Identity> = registry
        .find_by_name(name)
        .into_iter()
        .filter(|r| kind.is_none_or(|k| r.identity.kind == k))
        .map(|r| r.identity.clone())
        .collect();
    match matches.len() {
        0 => anyhow::bail!("no identity named {name:?}; `ozone pki list` shows them"),
        1 => {}
        _ => anyhow::bail!(
            "{name:?} names several identities; add --kind (component, user, device, auditor, operator)"
        ),
    }
    let identity = &matches[0];
    if pki::revoke(home, identity)? {
        println!("revoked {identity}; its private key is destroyed");
    } else {
        println!("{identity} was already revoked");
    }
    let running = refresh_nats(home).await?;
    if identity.kind == IdentityKind::Auditor {
        ozone_security::envelope::auditor_key::remove(home, identity)?;
        if running {
            crate::audit_stream::withdraw_auditor_key(home, cfg, identity).await?;
            println!("withdrew its recipient key: nothing new is sealed to it");
        }
    }
    Ok(())
}

/// Lists identities and their state.
pub fn list(home: &Home) -> anyhow::Result<()> {
    let registry = pki::Registry::load(home)?;
    println!(
        "{:<10} {:<16} {:<12} {:<26} SERIAL",
        "KIND", "NAME", "STATE", "EXPIRES"
    );
    for r in &registry.identities {
        let expires = time::OffsetDateTime::from_unix_timestamp(r.not_after)
            .map(|t| t.date().to_string())
            .unwrap_or_default();
        let state = if r.is_active() { "active" } else { "revoked" };
        println!(
            "{:<10} {:<16} {:<12} {:<26} {}",
            r.identity.kind.as_str(),
            r.identity.name,
            state,
            expires,
            r.serial
        );
    }
    Ok(())
}

/// Regenerates the NATS configuration and, if a server is running, reloads it and waits until
/// the server has applied it (returns whether one was running). During the reload nats-server
/// re-checks every connection, disconnecting users no longer configured.
async fn refresh_nats(home: &Home) -> anyhow::Result<bool> {
    let settings = NatsSettings::load(home)?;
    ozone_nats::config::write(home, &settings)?;
    match ozone_nats::server::reload(home).await {
        Ok(pid) => {
            println!("nats-server (pid {pid}) reloaded");
            Ok(true)
        }
        Err(ozone_nats::ServerError::NotRunning(_)) => {
            println!("nats-server is not running; the change applies at the next `ozone up`");
            Ok(false)
        }
        // Signalled, but its log (not written by an `ozone up` of this home) said nothing.
        Err(e @ ozone_nats::ServerError::ReloadUnconfirmed { .. }) => {
            eprintln!("warning: {e}");
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}
