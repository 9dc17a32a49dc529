//! The audit stream's per-subject quota, watched: which `audit.<component>.<category>`
//! subjects are at the stream's `max_msgs_per_subject` (their oldest events, that component's
//! own, are being dropped). `ozone validate` fails on them; the supervisor has the core
//! publish an `audit-quota-reached` event for each, so the alarm is in the archive itself.
//! Components cannot read the stream (it is in the AUDIT account), so the supervisor reads it
//! as the console auditor.

use async_nats::jetstream;
use futures::StreamExt;
use ozone_bus_schemas::streams::AUDIT_STREAM;
use ozone_bus_schemas::{AuditKind, Subject};
use ozone_nats::bus::Bus;
use ozone_nats::Connection;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the supervisor looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// A subject still at its cap is reported again after this long.
const REPEAT_AFTER: Duration = Duration::from_secs(3600);

/// The stream's per-subject cap (0: none) and the audit subjects at it, busiest first.
pub async fn at_cap(conn: &Connection) -> anyhow::Result<(i64, Vec<(String, usize)>)> {
    let js = jetstream::new(conn.client.clone());
    let mut stream = js.get_stream(AUDIT_STREAM).await?;
    let cap = stream.info().await?.config.max_messages_per_subject.max(0);
    let mut out = Vec::new();
    if cap == 0 {
        return Ok((0, out));
    }
    let mut subjects = stream
        .info_with_subjects(Subject::audit_all().as_str())
        .await?;
    while let Some(s) = subjects.next().await {
        let (subject, n) = s?;
        if i64::try_from(n).unwrap_or(i64::MAX) >= cap {
            out.push((subject, n));
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok((cap, out))
}

/// What the supervisor remembers between looks: when each subject was last reported.
#[derive(Debug, Default)]
pub struct Alerts {
    reported: BTreeMap<String, Instant>,
}

impl Alerts {
    /// Looks once and has `core` audit each subject newly at its cap (or still at it an hour
    /// after its last report); returns the subjects reported.
    pub async fn check(&mut self, conn: &Connection, core: &Bus) -> anyhow::Result<Vec<String>> {
        let (cap, full) = at_cap(conn).await?;
        let now = Instant::now();
        self.reported
            .retain(|s, _| full.iter().any(|(f, _)| f == s));
        let mut out = Vec::new();
        // The core's own alerts are not alerted on: at their cap, the oldest alerts go.
        let own = Subject::audit_event(
            ozone_bus_schemas::Component::Core,
            &AuditKind::AuditQuotaReached {
                subject: String::new(),
                cap: 0,
            },
        );
        for (subject, _) in full {
            if subject == own.as_str()
                || self
                    .reported
                    .get(&subject)
                    .is_some_and(|at| now.duration_since(*at) < REPEAT_AFTER)
            {
                continue;
            }
            tracing::warn!(%subject, cap, "audit subject at its cap: its oldest events are dropped");
            core.audit(AuditKind::AuditQuotaReached {
                subject: subject.clone(),
                cap: u64::try_from(cap).unwrap_or(0),
            });
            self.reported.insert(subject.clone(), now);
            out.push(subject);
        }
        Ok(out)
    }
}
