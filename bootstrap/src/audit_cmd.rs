//! The audit plane from the command line: `ozone up` prepares the audit stream and publishes
//! auditors' keys; `ozone audit tail` reads the stream as an auditor and prints each event.

use futures::StreamExt;
use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind};
use ozone_nats::audit::{self, AuditReader, AuditRecord};
use ozone_nats::{Connection, KeyDirectory, NatsSettings, SessionStore};
use ozone_security::envelope::auditor_key;
use ozone_security::keydir::DirectoryTrust;
use ozone_security::pki::{Registry, CONSOLE_AUDITOR};
use ozone_security::{tls, Home, SecurityConfig};
use std::time::{Duration, SystemTime};

async fn connect(home: &Home, cfg: &SecurityConfig, id: &Identity) -> anyhow::Result<Connection> {
    let url = NatsSettings::load(home)?.url();
    Ok(ozone_nats::connect(&url, id, tls::client_config(home, cfg, id)?).await?)
}

fn console() -> anyhow::Result<Identity> {
    Ok(Identity::new(IdentityKind::Auditor, CONSOLE_AUDITOR)?)
}

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
    let info = audit::ensure_stream(&connect(home, cfg, &console()?).await?, &settings).await?;
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
    let core = connect(home, cfg, &Identity::component(Component::Core)).await?;
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
    let core = connect(home, cfg, &Identity::component(Component::Core)).await?;
    KeyDirectory::open(&core.client)
        .await?
        .erase(auditor, 0)
        .await?;
    Ok(())
}

fn describe(event: &AuditKind) -> String {
    match event {
        AuditKind::KeyRotated {
            epoch,
            key_id,
            erased_epochs,
        } => format!("key rotated to epoch {epoch} (key {key_id}), erased {erased_epochs:?}"),
        AuditKind::KeysErased { epochs } => {
            format!("erased the keys of epochs {epochs:?} (grace window closed)")
        }
        AuditKind::MessageRejected {
            subject,
            reason,
            claimed_sender,
        } => format!(
            "rejected a message on {subject} (claimed sender {}): {reason}",
            claimed_sender.as_deref().unwrap_or("unknown")
        ),
        AuditKind::DirectoryEntryRejected { key, reason } => {
            format!("ignored key-directory entry {key}: {reason}")
        }
        AuditKind::DirectoryEntryRestored { key, found } => {
            format!("put key-directory entry {key} again (the bucket held {found})")
        }
        AuditKind::PermissionDenied { subject } => format!("permission denied on {subject}"),
        AuditKind::AuthenticationFailed { client, detail } => {
            format!("nats-server refused {client}: {detail}")
        }
        AuditKind::RejectionsSuppressed { count } => {
            format!("{count} more rejections (over the audit rate limit)")
        }
        AuditKind::AuditQuotaReached { subject, cap } => {
            format!(
                "{subject} is at the audit stream's cap of {cap}: its oldest events are dropped"
            )
        }
    }
}

fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
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
    let conn = connect(home, cfg, &id).await?;
    let reader = AuditReader::new(&conn, key, DirectoryTrust::load(home)?);
    Ok((conn, reader))
}

/// `ozone audit tail`: prints each event from `since` on; with `follow`, keeps waiting.
/// Returns the number of events printed.
pub async fn tail(
    home: &Home,
    cfg: &SecurityConfig,
    auditor: &str,
    since: Option<Duration>,
    follow: bool,
    keys: bool,
) -> anyhow::Result<usize> {
    let (_conn, reader) = reader(home, cfg, auditor).await?;
    let since = since.map(|d| SystemTime::now() - d);
    let records = reader.records(since, follow).await?;
    futures::pin_mut!(records);
    let mut printed = 0;
    while let Some(record) = records.next().await {
        match record? {
            AuditRecord::Event { event, subject, .. } => {
                println!(
                    "{}  {:<13} {:<10} {}",
                    timestamp(event.at_ms),
                    event.component,
                    subject.rsplit('.').next().unwrap_or_default(),
                    describe(&event.event)
                );
                printed += 1;
            }
            AuditRecord::Phase { event, .. } => {
                println!(
                    "{}  {:<13} {:<10} phase {}: {}",
                    timestamp(event.at_ms),
                    event.component,
                    "lifecycle",
                    event.phase,
                    event.state.describe()
                );
                printed += 1;
            }
            AuditRecord::Transition { event, .. } => {
                println!(
                    "{}  {:<13} {:<10} phase {} {}",
                    timestamp(event.at_ms),
                    event.component,
                    "bootstrap",
                    event.phase,
                    if event.ready {
                        "ready"
                    } else {
                        "no longer ready"
                    }
                );
                printed += 1;
            }
            AuditRecord::Key { key, verdict, .. } => match verdict {
                Ok(()) if keys => println!("{:<24}  key-directory entry {key} verified", ""),
                Ok(()) => {}
                Err(reason) => println!("{:<24}  key-directory entry {key} IGNORED: {reason}", ""),
            },
            AuditRecord::Unreadable {
                seq,
                subject,
                reason,
            } => println!("{:<24}  #{seq} on {subject} UNREADABLE: {reason}", ""),
        }
    }
    Ok(printed)
}
