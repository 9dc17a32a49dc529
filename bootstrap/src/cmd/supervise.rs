//! `ozone supervise`: the long-running process `ozone up` leaves behind. It keeps nats-server
//! alive (restart with backoff), prepares the audit stream, then runs the eight components as
//! supervised children until SIGTERM or SIGINT; it stops them in reverse phase order and
//! nats-server last.
//!
//! It reports readiness by printing `READY <pid>` once on stdout, when nats-server is up and
//! the audit stream exists, just before the components start; `ozone up` waits on that line
//! (a pipe, not a poll) and then follows the bootstrap on the bus.

use ozone_nats::{find_binary, NatsSettings};
use ozone_security::{Home, SecurityConfig};
use std::io::Write;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};

/// Restarts allowed in a row before the supervisor gives up on nats-server.
const MAX_RESTARTS: u32 = 5;

pub async fn run(home: &Home) -> anyhow::Result<()> {
    let settings = NatsSettings::load(home)?;
    let binary = find_binary(&home.bin())?;
    let cfg = SecurityConfig::load(home, &[])?;
    // The operator's signals are ours before the pid file tells anyone where to send them
    // (SIGUSR1 and SIGUSR2 would otherwise end the process).
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    std::fs::write(
        crate::processes::supervisor_pid_file(home),
        std::process::id().to_string(),
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
    let stop_on_signal = stop_tx.clone();
    let (nats_stop_tx, nats_stop_rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop_on_signal.send(true);
    });
    // SIGUSR1 (sent by `ozone up`): retry the components given up on. SIGUSR2 (sent by
    // `ozone spark scale`): read the SPARK worker count wanted.
    let (retry_tx, retry_rx) = watch::channel(0u64);
    let (scale_tx, scale_rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            retry_tx.send_modify(|n| *n += 1);
        }
    });
    tokio::spawn(async move {
        while usr2.recv().await.is_some() {
            scale_tx.send_modify(|n| *n += 1);
        }
    });
    let (ready_tx, ready_rx) = oneshot::channel();
    // Authentication failures from every server instance, audited once the core's bus is up.
    let (auth_tx, auth_rx) = tokio::sync::mpsc::channel::<String>(1024);
    let nats = {
        let home = home.clone();
        let mut ready_tx = Some(ready_tx);
        tokio::spawn(async move {
            ozone_nats::server::supervise(
                &home,
                &settings,
                &binary,
                MAX_RESTARTS,
                nats_stop_rx,
                |server| {
                    tracing::info!(pid = server.pid, url = %server.url, "nats-server ready");
                    let mut lines = server.security_events();
                    let tx = auth_tx.clone();
                    tokio::spawn(async move {
                        while let Ok(line) = lines.recv().await {
                            // Full queue: the audit sink's own limit would drop it anyway.
                            let _ = tx.try_send(line);
                        }
                    });
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(server.pid);
                    }
                },
            )
            .await
        })
    };
    // If nats-server is given up on, the components go too: nothing would reach them.
    let nats = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            let r = nats.await;
            let _ = stop_tx.send(true);
            r
        })
    };
    let result = async {
        let nats_pid = match ready_rx.await {
            Ok(pid) => pid,
            Err(_) => return Err(anyhow::anyhow!("nats-server did not start (see var/log)")),
        };
        let prepared = crate::audit_stream::prepare(home, &cfg).await;
        if let Err(e) = &prepared {
            tracing::error!("audit stream: {e:#}");
        }
        let mut out = std::io::stdout();
        // The reader may be gone (`ozone up` exited); that is fine.
        let _ = writeln!(out, "READY {nats_pid}");
        let _ = out.flush();
        let requests = crate::supervisor::OperatorRequests {
            retry: retry_rx,
            scale: scale_rx,
        };
        crate::supervisor::supervise_all(home, &cfg, stop_rx, auth_rx, requests).await
    }
    .await;
    if let Err(e) = &result {
        tracing::error!("components: {e:#}");
    }
    let _ = nats_stop_tx.send(true);
    let nats_result = nats
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|r| Ok(r?));
    let _ = std::fs::remove_file(crate::processes::supervisor_pid_file(home));
    match nats_result {
        Ok(Err(e)) => {
            tracing::error!(error = %e, "supervisor stopping");
            Err(e.into())
        }
        Err(e) => Err(e),
        Ok(Ok(())) => result,
    }
}
