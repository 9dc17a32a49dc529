//! `ozone status`: the ecosystem as an operator sees it — phases, components, instances,
//! versions, uptime — from three sources: the supervisor's process table
//! (`run/components.json`), each component's last announced state (the audit stream, read as
//! the console auditor) and NATS micro-service discovery (`$SRV.STATS`).

use crate::supervisor::{read_states, ProcessState};
use futures::StreamExt;
use ozone_bus_schemas::phase::{ComponentState, Instances, PhaseEvent};
use ozone_bus_schemas::{Component, Subject};
use ozone_nats::audit::{AuditReader, AuditRecord};
use ozone_nats::{Connection, NatsSettings};
use ozone_security::pki::CONSOLE_AUDITOR;
use ozone_security::{Home, SecurityConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One component's row.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub component: String,
    pub phase: u8,
    /// The last state it announced (or the supervisor announced for it).
    pub state: String,
    pub detail: Option<String>,
    pub process: Option<ProcessState>,
    /// Instances answering `$SRV.STATS` (several for a scaled SPARK).
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub version: String,
    pub started: String,
    pub requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub supervisor_pid: Option<i32>,
    pub nats_url: String,
    pub components: Vec<ComponentStatus>,
}

impl Status {
    /// Every component announced ready and answers discovery.
    pub fn all_ready(&self) -> bool {
        self.components
            .iter()
            .all(|c| c.state == "ready" && !c.instances.is_empty())
    }
}

/// Sends a `$SRV` request and gathers every answer that arrives within `wait`.
pub async fn discover(
    conn: &Connection,
    verb: &str,
    wait: Duration,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let inbox = conn.client.new_inbox();
    let mut sub = conn.client.subscribe(inbox.clone()).await?;
    conn.client
        .publish_with_reply(
            Subject::service_discovery_request(verb).to_string(),
            inbox,
            "".into(),
        )
        .await?;
    let mut out = Vec::new();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            m = sub.next() => match m {
                Some(m) => { if let Ok(v) = serde_json::from_slice(&m.payload) { out.push(v) } }
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    Ok(out)
}

/// Each component's state from its phase events, instance by instance (SPARK may run several;
/// a stopped extra instance does not make the component stopped): ready when any instance
/// is, else the latest state announced.
async fn fold(reader: AuditReader) -> anyhow::Result<BTreeMap<String, PhaseEvent>> {
    let records = reader.phase_records().await?;
    futures::pin_mut!(records);
    let mut instances: BTreeMap<String, Instances> = BTreeMap::new();
    let mut latest: BTreeMap<String, PhaseEvent> = BTreeMap::new();
    while let Some(r) = records.next().await {
        let AuditRecord::Phase { event, .. } = r? else {
            continue;
        };
        latest.insert(event.component.clone(), event.clone());
        instances
            .entry(event.component.clone())
            .or_default()
            .apply(event);
    }
    Ok(latest
        .into_iter()
        .map(|(c, last)| {
            let ready = instances.get(&c).and_then(|i| i.ready().cloned());
            (c, ready.unwrap_or(last))
        })
        .collect())
}

fn detail(state: &ComponentState) -> Option<String> {
    match state {
        ComponentState::Ready | ComponentState::Starting | ComponentState::Stopped => None,
        s => Some(s.describe()),
    }
}

pub async fn gather(home: &Home, cfg: &SecurityConfig) -> anyhow::Result<Status> {
    gather_with(home, cfg, Duration::from_millis(400)).await
}

/// [`gather`], waiting `stats_wait` for discovery answers.
pub async fn gather_with(
    home: &Home,
    cfg: &SecurityConfig,
    stats_wait: Duration,
) -> anyhow::Result<Status> {
    let (conn, reader) = crate::audit_stream::reader(home, cfg, CONSOLE_AUDITOR).await?;
    let events = fold(reader).await?;
    let stats = discover(&conn, "STATS", stats_wait).await?;
    let processes = read_states(home);
    let components = Component::ALL
        .into_iter()
        .map(|c| {
            let ev = events.get(c.name());
            let instances = stats
                .iter()
                .filter(|s| s["name"] == c.name())
                .map(|s| Instance {
                    id: s["id"].as_str().unwrap_or_default().to_string(),
                    version: s["version"].as_str().unwrap_or_default().to_string(),
                    started: s["started"].as_str().unwrap_or_default().to_string(),
                    requests: s["endpoints"]
                        .as_array()
                        .map(|e| e.iter().filter_map(|x| x["num_requests"].as_u64()).sum())
                        .unwrap_or(0),
                })
                .collect();
            ComponentStatus {
                component: c.name().to_string(),
                phase: c.phase(),
                state: ev
                    .map(|e| e.state.label().to_string())
                    .unwrap_or_else(|| "unknown".into()),
                detail: ev.and_then(|e| detail(&e.state)),
                process: processes.get(c.name()).cloned(),
                instances,
            }
        })
        .collect();
    Ok(Status {
        supervisor_pid: crate::processes::supervisor_pid(home),
        nats_url: NatsSettings::load(home)?.url(),
        components,
    })
}

fn uptime(started: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(started.split('.').next().unwrap_or(started)) else {
        return "-".into();
    };
    let secs = t.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

pub fn print(s: &Status) {
    println!(
        "{:<6} {:<13} {:<9} {:<8} {:>8} {:>5} {:<10} {:<14} DETAIL",
        "PHASE", "COMPONENT", "STATE", "PROCESS", "PID", "INST", "VERSION", "UPTIME"
    );
    for c in &s.components {
        let p = c.process.as_ref();
        let first = c.instances.first();
        println!(
            "{:<6} {:<13} {:<9} {:<8} {:>8} {:>5} {:<10} {:<14} {}",
            c.phase,
            c.component,
            c.state,
            p.map(|p| p.state.as_str()).unwrap_or("-"),
            p.and_then(|p| p.pid)
                .map(|x| x.to_string())
                .unwrap_or("-".into()),
            c.instances.len(),
            first.map(|i| i.version.as_str()).unwrap_or("-"),
            first.map(|i| uptime(&i.started)).unwrap_or("-".into()),
            c.detail.clone().unwrap_or_default()
                + &p.filter(|p| p.restarts > 0)
                    .map(|p| format!(" (restarted {}×)", p.restarts))
                    .unwrap_or_default()
        );
    }
    let ready = s.components.iter().filter(|c| c.state == "ready").count();
    println!(
        "\n{ready} of 8 components ready; supervisor {}; nats {}",
        s.supervisor_pid
            .map(|p| format!("pid {p}"))
            .unwrap_or("not running".into()),
        s.nats_url
    );
}
