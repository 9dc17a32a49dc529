//! Following the bootstrap from `ozone up`: each component's announcements, read from the
//! audit stream as the console auditor, shown as one line per component that changes in
//! place (a progress display on a terminal, plain lines otherwise).

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ozone_bus_schemas::phase::ComponentState;
use ozone_bus_schemas::Component;
use ozone_nats::audit::AuditRecord;
use ozone_security::pki::CONSOLE_AUDITOR;
use ozone_security::{Home, SecurityConfig};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

/// How the bootstrap went.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// From the first announcement to the last component ready.
    pub all_ready_after: Option<Duration>,
    /// Components in the order they announced ready.
    pub ready_order: Vec<Component>,
    /// A component that gave up, with its reason.
    pub failed: Option<(Component, String)>,
}

/// Follows phase announcements published since `since` until all eight are ready, one
/// fails, or `timeout` passes.
pub async fn follow(
    home: &Home,
    cfg: &SecurityConfig,
    since: SystemTime,
    timeout: Duration,
) -> anyhow::Result<BootReport> {
    let (_conn, reader) = crate::audit_stream::reader(home, cfg, CONSOLE_AUDITOR).await?;
    let records = reader.records(Some(since), true).await?;
    futures::pin_mut!(records);

    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("  {spinner} phase {prefix} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars: BTreeMap<Component, ProgressBar> = Component::ALL
        .into_iter()
        .map(|c| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(format!("{} {:<13}", c.phase(), c.name()));
            bar.set_message("not started");
            bar.enable_steady_tick(Duration::from_millis(120));
            (c, bar)
        })
        .collect();

    let mut first_ms: Option<u64> = None;
    let mut ready: BTreeMap<Component, u64> = BTreeMap::new();
    let mut report = BootReport {
        all_ready_after: None,
        ready_order: Vec::new(),
        failed: None,
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while ready.len() < Component::ALL.len() {
        let record = tokio::select! {
            r = records.next() => r,
            _ = &mut deadline => break,
        };
        let Some(record) = record else { break };
        let AuditRecord::Phase { event, .. } = record? else {
            continue;
        };
        let Some(c) = Component::from_name(&event.component) else {
            continue;
        };
        let first = *first_ms.get_or_insert(event.at_ms);
        let line = format!(
            "{:>6.2}s  {}",
            event.at_ms.saturating_sub(first) as f64 / 1000.0,
            event.state.describe()
        );
        if !tty {
            eprintln!("  phase {} {:<13} {line}", c.phase(), c.name());
        }
        match &event.state {
            ComponentState::Ready => {
                if ready.insert(c, event.at_ms).is_none() {
                    report.ready_order.push(c);
                }
                if let Some(b) = bars.get(&c) {
                    b.finish_with_message(line);
                }
            }
            ComponentState::Failed { reason } => {
                report.failed = Some((c, reason.clone()));
                if let Some(b) = bars.get(&c) {
                    b.abandon_with_message(line);
                }
                break;
            }
            _ => {
                ready.remove(&c);
                if let Some(b) = bars.get(&c) {
                    b.set_message(line);
                }
            }
        }
    }
    for bar in bars.values() {
        if !bar.is_finished() {
            bar.abandon();
        }
    }
    if ready.len() == Component::ALL.len() {
        let last = ready.values().max().copied().unwrap_or_default();
        report.all_ready_after = Some(Duration::from_millis(
            last.saturating_sub(first_ms.unwrap_or(last)),
        ));
    }
    Ok(report)
}
