//! `ozone down`: stop the supervisor (which stops the components in reverse phase order, then
//! nats-server) and make sure no process of ours is left.

use ozone_security::Home;
use std::time::{Duration, Instant};

fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a process with this pid exists (signal 0 checks without signalling).
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Whether this pid is alive and one of ours (its executable is `ozone…` or `nats-server`):
/// a pid file left by a crash may name a pid the system has since given to someone else.
pub fn ours(pid: i32) -> bool {
    if !alive(pid) {
        return false;
    }
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => exe
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ozone") || n.starts_with("nats-server")),
        // Without /proc (or permission to read it) fall back to trusting the pid file.
        Err(_) => true,
    }
}

/// Sends SIGTERM and waits up to `grace` for the process to go; then SIGKILL.
pub fn terminate(pid: i32, grace: Duration) -> bool {
    use nix::sys::signal::{kill, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    if kill(p, Signal::SIGTERM).is_err() {
        return false;
    }
    let deadline = Instant::now() + grace;
    // The process is not our child, so there is nothing to wait on: check until it is gone.
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        let _ = kill(p, Signal::SIGKILL);
    }
    true
}

/// The running supervisor's pid, if any.
pub fn supervisor_pid(home: &Home) -> Option<i32> {
    read_pid(&crate::supervise::pid_file(home)).filter(|p| ours(*p))
}

/// Returns the pids it stopped.
pub fn run(home: &Home) -> Vec<(String, i32)> {
    let mut stopped = Vec::new();
    if let Some(pid) = supervisor_pid(home) {
        // It stops the components phase by phase (each up to 10 s), then nats-server.
        if terminate(pid, Duration::from_secs(60)) {
            stopped.push(("ozone supervisor".to_string(), pid));
        }
    }
    // Components left behind by a crashed supervisor.
    for (name, p) in crate::components::read_states(home) {
        if let Some(pid) = p.pid.map(|x| x as i32).filter(|x| ours(*x)) {
            if terminate(pid, Duration::from_secs(10)) {
                stopped.push((name, pid));
            }
        }
    }
    // A server left behind by a crashed supervisor.
    let nats_pid = home.run().join("nats-server.pid");
    if let Some(pid) = read_pid(&nats_pid).filter(|p| ours(*p)) {
        if terminate(pid, Duration::from_secs(10)) {
            stopped.push(("nats-server".to_string(), pid));
        }
    }
    let _ = std::fs::remove_file(crate::supervise::pid_file(home));
    stopped
}
