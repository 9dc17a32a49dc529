//! `ozone supervise`: the long-running process `ozone up` leaves behind. It keeps nats-server
//! alive (restart with backoff) until SIGTERM or SIGINT, then stops it cleanly.
//!
//! It reports readiness by printing `READY <pid>` once on stdout, which `ozone up` waits on
//! (a pipe, not a poll).

use ozone_nats::{find_binary, NatsSettings};
use ozone_security::Home;
use std::io::Write;
use std::path::PathBuf;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub fn pid_file(home: &Home) -> PathBuf {
    home.run().join("ozone-supervisor.pid")
}

/// Restarts allowed in a row before the supervisor gives up.
const MAX_RESTARTS: u32 = 5;

pub async fn run(home: &Home) -> anyhow::Result<()> {
    let settings = NatsSettings::load(home)?;
    let binary = find_binary(&home.bin())?;
    std::fs::write(pid_file(home), std::process::id().to_string())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    let mut announced = false;
    let result =
        ozone_nats::server::supervise(home, &settings, &binary, MAX_RESTARTS, stop_rx, |server| {
            tracing::info!(pid = server.pid, url = %server.url, "nats-server ready");
            if !announced {
                announced = true;
                let mut out = std::io::stdout();
                // The reader may be gone (`ozone up` exited); that is fine.
                let _ = writeln!(out, "READY {}", server.pid);
                let _ = out.flush();
            }
        })
        .await;
    let _ = std::fs::remove_file(pid_file(home));
    if let Err(e) = &result {
        tracing::error!(error = %e, "supervisor stopping");
    }
    Ok(result?)
}
