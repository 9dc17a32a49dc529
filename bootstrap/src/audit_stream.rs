//! The audit plane's setup and readers, shared by `up`, `supervise`, `pki`, `status` and
//! `audit tail`: the audit stream prepared, auditors' keys published or withdrawn, a reader
//! of the stream as an auditor.

use crate::connect::connect_as;
use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_nats::audit::{self, AuditReader};
use ozone_nats::{Connection, KeyDirectory, NatsSettings, SessionStore};
use ozone_security::envelope::auditor_key;
use ozone_security::keydir::DirectoryTrust;
use ozone_security::pki::Registry;
use ozone_security::{Home, SecurityConfig};

/// What [`prepare`] found.
#[derive(Debug)]
pub struct Prepared {
    pub stream_messages: u64,
    pub auditors: Vec<String>,
}

/// Creates the audit stream if absent (as the console auditor) and puts every active
/// auditor's signed recipient key into the key directory (as the core, the only writer of
/// auditor entries).
pub async fn prepare(home: &Home, cfg: &SecurityConfig) -> anyhow::Result<Prepared> {
    let settings = NatsSettings::load(home)?;
    let info = audit::ensure_stream(&crate::connect::console(home, cfg).await?, &settings).await?;
    let auditors = publish_auditor_keys(home, cfg, None).await?;
    Ok(Prepared {
        stream_messages: info.state.messages,
        auditors,
    })
}

/// Puts the directory entries of every active auditor (or only `only`); returns their names.
pub async fn publish_auditor_keys(
    home: &Home,
    cfg: &SecurityConfig,
    only: Option<&Identity>,
) -> anyhow::Result<Vec<String>> {
    let registry = Registry::load(home)?;
    let core = connect_as(home, cfg, &Identity::component(Component::Core)).await?;
    // Buckets created before their hardening are brought to it here: only the core may.
    for changed in [
        KeyDirectory::harden(&core.client).await?,
        SessionStore::harden(&core.client).await?,
    ] {
        if !changed.is_empty() {
            tracing::info!("hardened a bucket: {}", changed.join(", "));
        }
    }
    if ozone_nats::phase_stream::update(&core.client).await? {
        tracing::info!("phase stream updated: members read it by direct get");
    }
    let keydir = KeyDirectory::open(&core.client).await?;
    let mut names = Vec::new();
    for r in registry.identities.iter().filter(|r| {
        r.is_active()
            && r.identity.kind == IdentityKind::Auditor
            && only.is_none_or(|o| *o == r.identity)
    }) {
        let not_after_ms = u64::try_from(r.not_after).unwrap_or_default() * 1000;
        let entry = auditor_key::directory_entry(home, &r.identity, not_after_ms)?;
        keydir.put(&r.identity, &entry).await?;
        names.push(r.identity.name.clone());
    }
    Ok(names)
}

/// Removes a revoked auditor's key from the directory, so nothing new is sealed to it.
pub async fn withdraw_auditor_key(
    home: &Home,
    cfg: &SecurityConfig,
    auditor: &Identity,
) -> anyhow::Result<()> {
    let core = connect_as(home, cfg, &Identity::component(Component::Core)).await?;
    KeyDirectory::open(&core.client)
        .await?
        .erase(auditor, 0)
        .await?;
    Ok(())
}

/// Connects as `auditor` and prepares a reader of the audit stream with its key (the
/// connection is returned too: the reader lives on it).
pub async fn reader(
    home: &Home,
    cfg: &SecurityConfig,
    auditor: &str,
) -> anyhow::Result<(Connection, AuditReader)> {
    let id = Identity::new(IdentityKind::Auditor, auditor)?;
    let key = auditor_key::load(home, &id).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n  fix: `ozone pki issue auditor {auditor}` creates the identity and its key"
        )
    })?;
    let conn = connect_as(home, cfg, &id).await?;
    let reader = AuditReader::new(&conn, key, DirectoryTrust::load(home)?);
    Ok((conn, reader))
}
