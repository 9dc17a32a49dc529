//! `ozone audit tail`: reads the audit stream as an auditor and prints each event.

use futures::StreamExt;
use ozone_bus_schemas::AuditKind;
use ozone_nats::audit::AuditRecord;
use ozone_security::{Home, SecurityConfig};
use std::time::{Duration, SystemTime};

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
        AuditKind::TaskSubmitted {
            task_id,
            methodology,
            version,
            by,
        } => format!("task {task_id} submitted by {by}: {methodology} {version}"),
        AuditKind::StepApproved { task_id, step, by } => {
            format!("step {step} of task {task_id} approved by {by}")
        }
        AuditKind::TaskFinished {
            task_id,
            state,
            detail,
        } => match detail {
            Some(d) => format!("task {task_id} {state}: {d}"),
            None => format!("task {task_id} {state}"),
        },
    }
}

fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
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
    let (_conn, reader) = crate::audit_stream::reader(home, cfg, auditor).await?;
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
