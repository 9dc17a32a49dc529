//! `ozone down`: stop the supervisor (which stops the components in reverse phase order, then
//! nats-server) and make sure no process of ours is left.

use crate::processes::{ours, read_pid, supervisor_pid, supervisor_pid_file, terminate};
use ozone_security::Home;
use std::time::Duration;

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
    for (name, p) in crate::supervisor::read_states(home) {
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
    let _ = std::fs::remove_file(supervisor_pid_file(home));
    stopped
}
