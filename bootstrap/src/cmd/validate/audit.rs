//! `ozone validate`'s audit-stream check, the alarm for the per-subject quota. Each component
//! may publish on its own `audit.<component>.<category>` only, and the stream keeps at most
//! `max_msgs_per_subject` messages per subject, chosen so that every subject at its cap fits
//! under the size cap: a flood drops only the flooder's own oldest events of that category,
//! never another component's. A subject at its cap is what a flood (or a very busy
//! category) looks like, so the check fails and names it: its oldest events are being
//! dropped (the supervisor also has the core audit it: `audit_quota.rs`). A stream created
//! before the quota has no per-subject cap; there a flood reaches the size cap and evicts
//! everyone's oldest events, which fails the check too.

use crate::cmd::validate::Outcome;
use futures::StreamExt;
use ozone_bus_schemas::streams::AUDIT_STREAM;
use ozone_bus_schemas::Subject;
use ozone_security::{Home, SecurityConfig};
use std::time::Duration;

/// At or above this share of its cap the stream counts as full.
const FULL_PERCENT: i64 = 95;
/// Slack on the retention: the oldest event may be this much younger before it counts.
const SLACK: Duration = Duration::from_secs(3600);

/// A span as an operator reads it: days when it is days, else hours and minutes.
fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s => humantime::format_duration(Duration::from_secs(s)).to_string(),
    }
}

pub async fn check(home: &Home, cfg: &SecurityConfig) -> Outcome {
    match inspect(home, cfg).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Fail(format!("cannot read the audit stream: {e:#}")),
    }
}

async fn inspect(home: &Home, cfg: &SecurityConfig) -> anyhow::Result<Outcome> {
    let conn = crate::connect::console(home, cfg).await?;
    let js = async_nats::jetstream::new(conn.client.clone());
    let mut stream = js.get_stream(AUDIT_STREAM).await?;
    let info = stream.info().await?.clone();
    let (bytes, max) = (
        i64::try_from(info.state.bytes).unwrap_or(i64::MAX),
        info.config.max_bytes,
    );
    let oldest_age =
        Duration::try_from(time::OffsetDateTime::now_utc() - info.state.first_timestamp)
            .unwrap_or_default();
    let full = max > 0 && bytes.saturating_mul(100) >= max.saturating_mul(FULL_PERCENT);
    let early = oldest_age + SLACK < info.config.max_age;
    let (cap, capped) = crate::audit_quota::at_cap(&conn).await?;
    let at_cap: Vec<String> = capped.iter().map(|(s, _)| s.clone()).collect();
    if !at_cap.is_empty() {
        return Ok(Outcome::Fail(format!(
            "{} at the audit stream's cap of {cap} events per subject: the oldest events \
             there are being dropped (only that component's, of that category); a flood or \
             a component in trouble (fix: find it with `ozone audit tail`, revoke a rogue \
             member with `ozone pki revoke`, or raise `audit_max_bytes` in etc/nats.toml)",
            at_cap.join(", ")
        )));
    }
    if !(full && early) {
        return Ok(Outcome::Pass(format!(
            "{} events, {bytes} of {max} bytes, at most {cap} per subject",
            info.state.messages
        )));
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut subjects = stream
        .info_with_subjects(Subject::audit_all().as_str())
        .await?;
    while let Some(s) = subjects.next().await {
        counts.push(s?);
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let top: Vec<String> = counts
        .iter()
        .take(3)
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    Ok(Outcome::Fail(format!(
        "the audit stream is at its cap ({bytes} of {max} bytes) and drops events after {} \
         instead of {}: a flood evicts other components' evidence (most messages: {}; fix: \
         find the publisher with `ozone audit tail`, raise `audit_max_bytes` in etc/nats.toml)",
        span(oldest_age),
        span(info.config.max_age),
        top.join(", ")
    )))
}
