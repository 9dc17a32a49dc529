//! The eight components as supervised child processes of `ozone supervise`: started in phase
//! order (the bootstrap protocol makes each wait for the earlier phases itself), restarted
//! with backoff when they die, announced degraded on the bus the moment they do, stopped in
//! reverse phase order. Their state is written to `run/components.json` for `ozone status`.

pub mod spark_pool;

use ozone_bus_schemas::phase::PhaseEvent;
use ozone_bus_schemas::{Component, Identity, Subject};
use ozone_nats::bus::{now_ms, Bus};
use ozone_nats::NatsSettings;
use ozone_security::{Home, SecurityConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Restarts in a row (each lasting under a minute) before a component is given up.
pub const MAX_RESTARTS: u32 = 5;

/// What the supervisor knows about one component process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    pub pid: Option<u32>,
    /// running, restarting, failed, stopped
    pub state: String,
    pub restarts: u32,
    pub started_at_ms: u64,
    pub last_exit: Option<String>,
}

pub fn state_file(home: &Home) -> PathBuf {
    home.run().join("components.json")
}

/// Reads `run/components.json` (empty when absent).
pub fn read_states(home: &Home) -> BTreeMap<String, ProcessState> {
    std::fs::read(state_file(home))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub(crate) type States = Arc<Mutex<BTreeMap<String, ProcessState>>>;

/// Updates (creating it if needed) the record of the process called `name`.
pub(crate) fn record(
    home: &Home,
    states: &States,
    name: &str,
    update: impl FnOnce(&mut ProcessState),
) {
    let Ok(mut s) = states.lock() else { return };
    let entry = s.entry(name.to_string()).or_insert(ProcessState {
        pid: None,
        state: "starting".into(),
        restarts: 0,
        started_at_ms: now_ms(),
        last_exit: None,
    });
    update(entry);
    write_states(home, &s);
}

/// Drops the record of a process that is no longer wanted (a SPARK worker scaled away).
pub(crate) fn forget(home: &Home, states: &States, name: &str) {
    let Ok(mut s) = states.lock() else { return };
    if s.remove(name).is_some() {
        write_states(home, &s);
    }
}

fn write_states(home: &Home, states: &BTreeMap<String, ProcessState>) {
    if let Ok(text) = serde_json::to_vec_pretty(states) {
        let path = state_file(home);
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(tmp, path);
        }
    }
}

/// One supervised process: a component's own, or an extra SPARK worker.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub component: Component,
    /// Its name in `run/components.json`: the component's, or `spark-2`, `spark-3`… for the
    /// workers `ozone spark scale` asks for.
    pub name: String,
    /// Environment beyond the home's (a worker's compute threads).
    pub env: Vec<(&'static str, String)>,
}

impl Proc {
    fn main(c: Component) -> Proc {
        Proc {
            component: c,
            name: c.name().to_string(),
            env: Vec::new(),
        }
    }
}

/// Where the component executables are: next to `ozone` itself (the quick start installs all
/// of them into `$OZONE_STUDIO_HOME/bin`; `cargo build` puts them side by side too).
pub fn binary(c: Component) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?;
    let path = dir.join(c.binary_name());
    anyhow::ensure!(
        path.exists(),
        "{} not found next to {} (build the workspace, or run bootstrap/quickstart.sh)",
        c.binary_name(),
        exe.display()
    );
    Ok(path)
}

/// The command that starts one component process for `home`, its output appended to the
/// component's log. It does not inherit the CA passphrase (`OZONE_CA_PASSPHRASE`, `…_FILE`):
/// only `ozone` itself issues certificates, and a compromised component must not be handed the
/// secret that unlocks the CA keys (docs/threat-model.md says what one user account shares).
pub fn command(home: &Home, c: Component) -> anyhow::Result<std::process::Command> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.logs().join(format!("{}.log", c.name())))?;
    let mut cmd = std::process::Command::new(binary(c)?);
    cmd.env("OZONE_STUDIO_HOME", home.root())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for secret in ozone_security::passphrase::CA_SECRET_ENV {
        cmd.env_remove(secret);
    }
    Ok(cmd)
}

/// A bus handle per component, used only to announce a dead process on its behalf (the
/// supervisor holds every identity of this host anyway: it started them).
async fn announcers(home: &Home, cfg: &SecurityConfig) -> anyhow::Result<BTreeMap<Component, Bus>> {
    let url = NatsSettings::load(home)?.url();
    let rotation = cfg.rotation();
    // Connected concurrently: each is a TLS handshake plus a key-directory catch-up.
    let joined = futures::future::join_all(Component::ALL.map(|c| {
        let url = url.clone();
        async move {
            let id = Identity::component(c);
            let conn = crate::connect::connect_to(&url, home, cfg, &id).await?;
            anyhow::Ok((c, Bus::start_announcer(conn, home, rotation).await?))
        }
    }))
    .await;
    // Best effort: a component whose announcer cannot connect still runs; only its death
    // would then go unannounced (its heartbeats stopping still tell its dependents).
    let mut out = BTreeMap::new();
    for r in joined {
        match r {
            Ok((c, bus)) => {
                out.insert(c, bus);
            }
            Err(e) => tracing::error!("announcer: {e:#}"),
        }
    }
    Ok(out)
}

async fn announce_exit(bus: &Bus, c: Component, pid: u32, reason: String) {
    let event = PhaseEvent::process_died(c, pid, env!("CARGO_PKG_VERSION"), now_ms(), reason);
    if let Err(e) = bus.publish(&Subject::phase_announce(c), &event).await {
        tracing::warn!(component = %c, "cannot announce the exit: {e}");
    }
}

fn spawn(home: &Home, p: &Proc) -> anyhow::Result<Child> {
    let mut cmd = command(home, p.component)?;
    cmd.envs(p.env.iter().map(|(k, v)| (k, v)));
    Ok(Command::from(cmd).kill_on_drop(true).spawn()?)
}

/// Sends SIGTERM, waits up to `grace`, then kills.
async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// What the supervisor tells one process's keeper.
#[derive(Clone)]
pub(crate) struct Controls {
    /// Turns true when it is this component's phase's turn to stop.
    pub stop: watch::Receiver<bool>,
    /// Changes when the operator asks to retry components given up on (SIGUSR1).
    pub retry: watch::Receiver<u64>,
}

/// Runs one process until `stop` turns true (for a component, when its phase's turn to stop
/// comes); after [`MAX_RESTARTS`] quick deaths in a row it gives up until the operator asks
/// again. With `bus`, each death is announced on the bus on the component's behalf.
pub(crate) async fn keep_running(
    home: Home,
    p: Proc,
    bus: Option<Bus>,
    states: States,
    mut controls: Controls,
) {
    let (c, name) = (p.component, p.name.as_str());
    let mut failures = 0u32;
    loop {
        let mut child = match spawn(&home, &p) {
            Ok(ch) => ch,
            Err(e) => {
                tracing::error!(process = name, "cannot start: {e:#}");
                record(&home, &states, name, |s| {
                    s.state = "failed".into();
                    s.last_exit = Some(format!("{e:#}"));
                });
                return;
            }
        };
        let pid = child.id().unwrap_or_default();
        let up_since = Instant::now();
        record(&home, &states, name, |s| {
            s.pid = Some(pid);
            s.state = "running".into();
            s.started_at_ms = now_ms();
        });
        tracing::info!(process = name, pid, "started");
        let status = tokio::select! {
            status = child.wait() => status,
            _ = async { let _ = controls.stop.wait_for(|s| *s).await; } => {
                stop_child(&mut child, Duration::from_secs(10)).await;
                record(&home, &states, name, |s| { s.state = "stopped".into(); s.pid = None; });
                return;
            }
        };
        let how = match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(process = name, pid, %how, "exited");
        if let Some(bus) = &bus {
            announce_exit(bus, c, pid, format!("process {pid} exited ({how})")).await;
        }
        if up_since.elapsed() > Duration::from_secs(60) {
            failures = 0;
        }
        failures += 1;
        if failures > MAX_RESTARTS {
            tracing::error!(
                process = name,
                "gave up after {MAX_RESTARTS} restarts in a row"
            );
            record(&home, &states, name, |s| {
                s.state = "failed".into();
                s.pid = None;
                s.last_exit = Some(format!(
                    "{how}; gave up after {MAX_RESTARTS} restarts in a row (`ozone up` retries)"
                ));
            });
            // Given up, not gone: `ozone up` asks again (SIGUSR1 to the supervisor) once the
            // operator has fixed the cause.
            let retry = async {
                if controls.retry.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = retry => {
                    tracing::info!(process = name, "retrying at the operator's request");
                    failures = 0;
                    continue;
                }
                _ = async { let _ = controls.stop.wait_for(|s| *s).await; } => {
                    record(&home, &states, name, |s| s.state = "stopped".into());
                    return;
                }
            }
        }
        record(&home, &states, name, |s| {
            s.state = "restarting".into();
            s.pid = None;
            s.restarts += 1;
            s.last_exit = Some(how.clone());
        });
        // 200 ms, 400 ms, 800 ms … capped at 10 s; a stop request cuts it short.
        let delay = Duration::from_millis(200u64 << failures.min(6)).min(Duration::from_secs(10));
        let stop_requested = tokio::time::timeout(delay, async {
            let _ = controls.stop.wait_for(|s| *s).await;
        })
        .await
        .is_ok();
        if stop_requested {
            record(&home, &states, name, |s| s.state = "stopped".into());
            return;
        }
    }
}

/// Every [`crate::audit_quota::CHECK_EVERY`], reads the audit stream as the console auditor
/// and has the core audit each subject at its cap. Runs as long as the supervisor.
async fn watch_audit_quota(home: Home, cfg: SecurityConfig, core: Bus) {
    let mut alerts = crate::audit_quota::Alerts::default();
    let mut tick = tokio::time::interval(crate::audit_quota::CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    loop {
        tick.tick().await;
        if conn.is_none() {
            match crate::connect::console(&home, &cfg).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!("audit quota: cannot connect as the console auditor: {e:#}");
                    continue;
                }
            }
        }
        let Some(c) = &conn else { continue };
        if let Err(e) = alerts.check(c, &core).await {
            tracing::debug!("audit quota: cannot read the audit stream: {e:#}");
            conn = None;
        }
    }
}

/// What the operator asks a running supervisor, by signal: each changes on every signal.
#[derive(Debug, Clone)]
pub struct OperatorRequests {
    /// SIGUSR1 (`ozone up`): start again the processes given up on.
    pub retry: watch::Receiver<u64>,
    /// SIGUSR2 (`ozone spark scale`): read the SPARK worker count wanted.
    pub scale: watch::Receiver<u64>,
}

/// Starts all eight (and the SPARK workers asked for) and keeps them running until `stop`
/// turns true; then stops them in reverse phase order (each phase fully down before the
/// previous one is asked).
pub async fn supervise_all(
    home: &Home,
    cfg: &SecurityConfig,
    mut stop: watch::Receiver<bool>,
    mut auth_failures: tokio::sync::mpsc::Receiver<String>,
    requests: OperatorRequests,
) -> anyhow::Result<()> {
    let OperatorRequests { retry, scale } = requests;
    let buses = announcers(home, cfg).await?;
    if let Some(core) = buses.get(&Component::Core).cloned() {
        // nats-server has no bus identity: the core audits the clients it refused.
        tokio::spawn(async move {
            while let Some(line) = auth_failures.recv().await {
                let (client, detail) = ozone_nats::server::parse_auth_failure(&line);
                core.audit(ozone_bus_schemas::AuditKind::AuthenticationFailed { client, detail });
            }
        });
    }
    if let Some(core) = buses.get(&Component::Core).cloned() {
        // The audit stream's per-subject quota: a subject at its cap is audited by the core.
        tokio::spawn(watch_audit_quota(home.clone(), cfg.clone(), core));
    }
    let states: States = Arc::default();
    let _ = std::fs::remove_file(state_file(home));
    let mut phase_stops = Vec::new();
    let mut tasks: BTreeMap<u8, Vec<tokio::task::JoinHandle<()>>> = BTreeMap::new();
    for phase in 0..4u8 {
        let (tx, rx) = watch::channel(false);
        phase_stops.push(tx);
        for c in Component::ALL.into_iter().filter(|c| c.phase() == phase) {
            let bus = buses.get(&c).cloned();
            tasks
                .entry(phase)
                .or_default()
                .push(tokio::spawn(keep_running(
                    home.clone(),
                    Proc::main(c),
                    bus,
                    states.clone(),
                    Controls {
                        stop: rx.clone(),
                        retry: retry.clone(),
                    },
                )));
        }
        if phase == Component::Spark.phase() {
            tasks.entry(phase).or_default().push(tokio::spawn(
                crate::supervisor::spark_pool::keep(
                    home.clone(),
                    states.clone(),
                    rx.clone(),
                    scale.clone(),
                    retry.clone(),
                ),
            ));
        }
    }
    let _ = stop.wait_for(|s| *s).await;
    for phase in (0..4u8).rev() {
        if let Some(tx) = phase_stops.get(phase as usize) {
            let _ = tx.send(true);
        }
        for t in tasks.remove(&phase).unwrap_or_default() {
            let _ = t.await;
        }
    }
    Ok(())
}
