//! Our processes by pid: the supervisor's pid file, whether a pid is alive and one of ours,
//! and stopping one (SIGTERM, then SIGKILL after a grace period).

use ozone_security::Home;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the running supervisor writes its pid.
pub fn supervisor_pid_file(home: &Home) -> PathBuf {
    home.run().join("ozone-supervisor.pid")
}

pub fn read_pid(path: &std::path::Path) -> Option<i32> {
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
    read_pid(&supervisor_pid_file(home)).filter(|p| ours(*p))
}
