//! Proves, against the running server, that every component identity connects and has
//! exactly its permissions: an allowed publish/subscribe round trip works, and a forbidden
//! publish and subscribe are refused by the server.

use futures::StreamExt;
use ozone_bus_schemas::{Component, Identity, Permissions, Subject};
use ozone_nats::client::{ConnEvent, Connection, Violation};
use ozone_security::{Home, SecurityConfig};
use std::time::{Duration, Instant};

/// The outcome for one component.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub component: Component,
    pub connected: bool,
    pub allowed_round_trip: bool,
    pub denied_publish: bool,
    pub denied_subscribe: bool,
    pub error: Option<String>,
    pub elapsed: Duration,
}

impl CheckResult {
    pub fn ok(&self) -> bool {
        self.connected && self.allowed_round_trip && self.denied_publish && self.denied_subscribe
    }
}

const WAIT: Duration = Duration::from_secs(3);

/// A subject the component may not publish to: a request to another component it never
/// calls, else another component's own self-check subject (only its owner publishes there).
fn forbidden_publish(c: Component, p: &Permissions) -> Option<String> {
    let others = || Component::ALL.into_iter().filter(move |o| *o != c);
    others()
        .filter_map(|o| Subject::component_request(o, "selfcheck").ok())
        .chain(others().map(Subject::selfcheck))
        .map(|s| s.to_string())
        .find(|s| !p.may_publish(s))
}

async fn check_one(url: &str, home: &Home, cfg: &SecurityConfig, c: Component) -> CheckResult {
    let started = Instant::now();
    let mut r = CheckResult {
        component: c,
        connected: false,
        allowed_round_trip: false,
        denied_publish: false,
        denied_subscribe: false,
        error: None,
        elapsed: Duration::ZERO,
    };
    if let Err(e) = run_checks(url, home, cfg, c, &mut r).await {
        r.error = Some(e.to_string());
    }
    r.elapsed = started.elapsed();
    r
}

async fn run_checks(
    url: &str,
    home: &Home,
    cfg: &SecurityConfig,
    c: Component,
    r: &mut CheckResult,
) -> anyhow::Result<()> {
    let id = Identity::component(c);
    let conn = crate::connect::connect_to(url, home, cfg, &id).await?;
    r.connected = true;
    let perms = Permissions::of(&id).ok_or_else(|| anyhow::anyhow!("no permissions for {c}"))?;

    let own = Subject::selfcheck(c);
    let mut sub = conn.client.subscribe(own.to_string()).await?;
    conn.client
        .publish(own.to_string(), "selfcheck".into())
        .await?;
    conn.client.flush().await?;
    r.allowed_round_trip = tokio::time::timeout(WAIT, sub.next())
        .await
        .ok()
        .flatten()
        .is_some();

    let mut events = conn.events();
    let target = forbidden_publish(c, &perms).ok_or_else(|| {
        anyhow::anyhow!(
            "{c} may publish on every other component's subjects: its permissions are too wide"
        )
    })?;
    conn.client
        .publish(target.clone(), "must be refused".into())
        .await?;
    conn.client.flush().await?;
    r.denied_publish = Connection::wait_for(&mut events, WAIT, |e| {
        *e == ConnEvent::Violation(Violation::Publish(target.clone()))
    })
    .await
    .is_some();

    let audit = Subject::audit_all().to_string();
    let _denied = conn.client.subscribe(audit.clone()).await?;
    conn.client.flush().await?;
    r.denied_subscribe = Connection::wait_for(&mut events, WAIT, |e| {
        *e == ConnEvent::Violation(Violation::Subscribe(audit.clone()))
    })
    .await
    .is_some();
    conn.client.drain().await.ok();
    Ok(())
}

/// Checks all eight components concurrently.
pub async fn run(url: &str, home: &Home, cfg: &SecurityConfig) -> Vec<CheckResult> {
    let checks = Component::ALL.map(|c| check_one(url, home, cfg, c));
    futures::future::join_all(checks).await
}
