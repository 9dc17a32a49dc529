//! Running nats-server: version check, start with the generated configuration, readiness
//! from the server's own "ready" event, clean stop, reload, and restart when it dies.
//!
//! One file past 400 lines: these are the lifecycle of one child process and the reading of
//! its one log (readiness, reload confirmation, authentication failures); split, each part
//! would reach into the others' process handle and log channel. A fifth of it is tests.

use crate::version::{check_version, VersionError};
use crate::NatsSettings;
use ozone_security::Home;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, oneshot, watch};

/// Why the server could not be started, stopped or signalled.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("cannot write the NATS configuration {path}: {source}")]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("nats-server exited before it was ready ({status}); last log lines:\n{log}")]
    Exited { status: String, log: String },
    #[error("nats-server was not ready within {0:?}; see var/log/nats-server.log")]
    NotReady(Duration),
    #[error("nats-server is not running (no pid in {0}); start it with `ozone up`")]
    NotRunning(PathBuf),
    #[error("cannot signal nats-server (pid {pid}): {source}")]
    Signal { pid: i32, source: nix::errno::Errno },
    #[error("nats-server died {restarts} times in a row; giving up. last error: {last}")]
    GaveUp { restarts: u32, last: String },
    #[error("nats-server (pid {pid}) refused the new configuration: {line}")]
    ReloadFailed { pid: i32, line: String },
    #[error("nats-server (pid {pid}) did not confirm the reload within {waited:?}; see var/log/nats-server.log")]
    ReloadUnconfirmed { pid: i32, waited: Duration },
}

impl ServerError {
    /// The server could not bind its port because something else holds it.
    pub fn port_was_taken(&self) -> bool {
        matches!(self, ServerError::Exited { log, .. } if log.contains("address already in use"))
    }
}

/// A running nats-server child process.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub config: PathBuf,
    /// Authentication failures the server logged (failed TLS handshakes, unmapped
    /// certificates), one log line each: the supervisor audits them.
    security: broadcast::Sender<String>,
}

const READY_LINE: &str = "Server is ready";
/// What nats-server logs once a reload has been applied in full (accounts and their
/// JetStream state included).
const RELOADED_LINE: &str = "Reloaded server configuration";
/// How long [`reload`] waits for that line.
const RELOAD_WAIT: Duration = Duration::from_secs(15);

fn log_file(home: &Home) -> PathBuf {
    home.logs().join("nats-server.log")
}

fn pid_file(home: &Home) -> PathBuf {
    home.run().join("nats-server.pid")
}

impl NatsServer {
    /// Checks the binary's version, starts the server on the configuration already written
    /// to `etc/nats-server.conf`, and returns once the server itself reports it is ready.
    pub async fn start(
        home: &Home,
        settings: &NatsSettings,
        binary: &Path,
        ready_within: Duration,
    ) -> Result<NatsServer, ServerError> {
        check_version(binary)?;
        let config = home.nats_config();
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tail_tx, tail_rx) = watch::channel(String::new());
        let (security, _) = broadcast::channel(256);
        if let Some(stderr) = child.stderr.take() {
            let stderr = std::fs::File::from(stderr.into_owned_fd().map_err(|source| {
                ServerError::Spawn {
                    binary: binary.to_path_buf(),
                    source,
                }
            })?);
            let (log, security) = (log_file(home), security.clone());
            // Its own thread: the pipe is drained (and the log written) even while this
            // process's runtime is busy or blocked, so the server never stalls on a full pipe.
            std::thread::Builder::new()
                .name("nats-server-log".into())
                .spawn(move || tee_log(stderr, &log, ready_tx, tail_tx, security))
                .map_err(|source| ServerError::Spawn {
                    binary: binary.to_path_buf(),
                    source,
                })?;
        }
        let started = Instant::now();
        tokio::select! {
            ready = ready_rx => {
                if ready.is_err() {
                    let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                    return Err(ServerError::Exited { status, log: tail_rx.borrow().clone() });
                }
            }
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_default();
                return Err(ServerError::Exited { status, log: tail_rx.borrow().clone() });
            }
            _ = tokio::time::sleep(ready_within) => {
                let _ = child.kill().await;
                return Err(ServerError::NotReady(ready_within));
            }
        }
        // The ready line is the server's own event; a connection to the listener confirms it.
        let addr = format!("{}:{}", settings.host, settings.port);
        if let Err(e) = tokio::net::TcpStream::connect(&addr).await {
            let _ = child.kill().await;
            return Err(ServerError::Exited {
                status: format!("reported ready but {addr} refuses connections ({e})"),
                log: tail_rx.borrow().clone(),
            });
        }
        tracing::info!(pid, elapsed = ?started.elapsed(), "nats-server ready");
        Ok(NatsServer {
            child,
            pid,
            url: settings.url(),
            config,
            security,
        })
    }

    /// Asks the server to shut down (SIGTERM), waiting up to 10 s before killing it.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        signal(self.pid as i32, nix::sys::signal::Signal::SIGTERM)?;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        Ok(())
    }

    /// Authentication failures from now on, as the server logged them.
    pub fn security_events(&self) -> broadcast::Receiver<String> {
        self.security.subscribe()
    }

    /// Waits until the process exits and returns how it ended.
    pub async fn wait(&mut self) -> String {
        self.child
            .wait()
            .await
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string())
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) -> Result<(), ServerError> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .map_err(|source| ServerError::Signal { pid, source })
}

/// Tells the running server (found by its pid file) to re-read its configuration, and waits
/// until its log says the reload is applied: nats-server reloads asynchronously, and while it
/// re-registers accounts their JetStream requests can fail ("requested JetStream resource does
/// not exist"), so a caller must not go on before that. Users removed from the configuration
/// are disconnected by the server during the reload. (A server whose log is not ours to read —
/// not started by `ozone up` — is signalled without the wait.)
pub async fn reload(home: &Home) -> Result<i32, ServerError> {
    let log = log_file(home);
    let log_end = tokio::fs::metadata(&log).await.map(|m| m.len()).ok();
    let pid = signal_reload(home)?;
    if let Some(from) = log_end {
        wait_for_reload(&log, from, pid, RELOAD_WAIT).await?;
    }
    Ok(pid)
}

/// Watches the server log past byte `from` for the reload's outcome, reading only what was
/// appended since the last look.
async fn wait_for_reload(
    log: &Path,
    from: u64,
    pid: i32,
    wait: Duration,
) -> Result<(), ServerError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let deadline = Instant::now() + wait;
    let mut file = None;
    let mut written = Vec::new();
    loop {
        if file.is_none() {
            if let Ok(mut f) = tokio::fs::File::open(log).await {
                if f.seek(std::io::SeekFrom::Start(from)).await.is_ok() {
                    file = Some(f);
                }
            }
        }
        if let Some(f) = file.as_mut() {
            let _ = f.read_to_end(&mut written).await;
        }
        if let Some(outcome) = reload_outcome(&String::from_utf8_lossy(&written)) {
            return outcome.map_err(|line| ServerError::ReloadFailed { pid, line });
        }
        if Instant::now() >= deadline {
            return Err(ServerError::ReloadUnconfirmed { pid, waited: wait });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The outcome of a reload in log lines written since it was asked for: `Ok` once applied,
/// `Err(line)` when the server refused it, `None` while neither is logged.
fn reload_outcome(written: &str) -> Option<Result<(), String>> {
    written.lines().find_map(|line| {
        if line.contains(RELOADED_LINE) {
            Some(Ok(()))
        } else if line.contains("[ERR]") && line.to_ascii_lowercase().contains("reload") {
            Some(Err(line.to_string()))
        } else {
            None
        }
    })
}

/// Sends the reload signal to the server named by the pid file.
fn signal_reload(home: &Home) -> Result<i32, ServerError> {
    let path = pid_file(home);
    let pid: i32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| ServerError::NotRunning(path.clone()))?;
    match signal(pid, nix::sys::signal::Signal::SIGHUP) {
        Err(ServerError::Signal { .. })
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() =>
        {
            Err(ServerError::NotRunning(path))
        }
        other => other.map(|()| pid),
    }
}

/// Log lines that record a refused client: a failed TLS handshake (no certificate, unknown
/// CA, expired, wrong usage) or a certificate that maps to no user.
pub fn is_auth_failure(line: &str) -> bool {
    line.contains("[ERR]")
        && (line.contains("TLS handshake error")
            || line.contains("authentication error")
            || line.contains("Authorization Error"))
}

/// Splits a server log line into (client address, what happened).
pub fn parse_auth_failure(line: &str) -> (String, String) {
    let after = line.split_once("[ERR] ").map(|(_, r)| r).unwrap_or(line);
    let client = after.split(" - ").next().unwrap_or_default().to_string();
    let detail = after.splitn(3, " - ").nth(2).unwrap_or(after).to_string();
    (client, detail)
}

/// Copies the server's log to `log_path`, keeps the last lines for error messages, and fires
/// `ready` on the server's own readiness line. Dropping `ready` unfired means "never ready".
/// Blocking: runs on a thread of its own until the server closes its stderr.
fn tee_log(
    stderr: std::fs::File,
    log_path: &Path,
    ready: oneshot::Sender<()>,
    tail: watch::Sender<String>,
    security: broadcast::Sender<String>,
) {
    use std::io::{BufRead, Write};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .ok();
    let mut reader = std::io::BufReader::new(stderr);
    let mut ready = Some(ready);
    let mut last: Vec<String> = Vec::new();
    let mut raw = Vec::new();
    while matches!(reader.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        raw.clear();
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        if is_auth_failure(&line) {
            // Nobody listening is fine.
            let _ = security.send(line.clone());
        }
        if line.contains(READY_LINE) {
            if let Some(tx) = ready.take() {
                let _ = tx.send(());
            }
        }
        last.push(line);
        if last.len() > 8 {
            last.remove(0);
        }
        tail.send_replace(last.join("\n"));
    }
}

/// Keeps nats-server running until `shutdown` turns true: restarts it with exponential
/// backoff when it dies, and gives up after `max_restarts` failures in a row (a server that
/// stays up for a minute resets the count). `on_ready` is called after every (re)start.
pub async fn supervise(
    home: &Home,
    settings: &NatsSettings,
    binary: &Path,
    max_restarts: u32,
    mut shutdown: watch::Receiver<bool>,
    mut on_ready: impl FnMut(&NatsServer),
) -> Result<(), ServerError> {
    let mut failures = 0u32;
    loop {
        // Regenerated before every start so identities issued or revoked meanwhile apply.
        crate::config::write(home, settings).map_err(|source| ServerError::Config {
            path: home.nats_config(),
            source,
        })?;
        let attempt = NatsServer::start(home, settings, binary, Duration::from_secs(30)).await;
        let mut server = match attempt {
            Ok(s) => s,
            Err(e @ ServerError::Version(_)) => return Err(e),
            Err(e) => {
                failures += 1;
                if failures > max_restarts {
                    return Err(ServerError::GaveUp {
                        restarts: failures - 1,
                        last: e.to_string(),
                    });
                }
                backoff(failures, &mut shutdown).await;
                if *shutdown.borrow() {
                    return Ok(());
                }
                continue;
            }
        };
        on_ready(&server);
        let up_since = Instant::now();
        let stop_requested = tokio::select! {
            status = server.wait() => {
                tracing::warn!(%status, "nats-server exited unexpectedly; restarting");
                if up_since.elapsed() > Duration::from_secs(60) {
                    failures = 0;
                }
                failures += 1;
                if failures > max_restarts {
                    return Err(ServerError::GaveUp { restarts: failures - 1, last: status });
                }
                false
            }
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stop_requested {
            return server.stop().await;
        }
        backoff(failures, &mut shutdown).await;
        if *shutdown.borrow() {
            return Ok(());
        }
    }
}

/// 250 ms, 500 ms, 1 s … capped at 30 s; returns early on shutdown.
async fn backoff(failures: u32, shutdown: &mut watch::Receiver<bool>) {
    let delay = Duration::from_millis(250u64.saturating_mul(1 << failures.min(7)))
        .min(Duration::from_secs(30));
    let _ = tokio::time::timeout(delay, shutdown.wait_for(|stop| *stop)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_another_process_is_told_apart_from_other_exits() {
        let taken = ServerError::Exited {
            status: "exit status: 1".into(),
            log: r#"[FTL] Error listening on port: 127.0.0.1:35275, "listen tcp 127.0.0.1:35275: bind: address already in use""#.into(),
        };
        assert!(taken.port_was_taken());
        let bad_config = ServerError::Exited {
            status: "exit status: 1".into(),
            log: "nats-server: config error".into(),
        };
        assert!(!bad_config.port_was_taken());
    }

    #[test]
    fn refused_clients_are_recognised_in_the_server_log() {
        let line = "[16771] 2026/11/26 09:28:04.696998 [ERR] 127.0.0.1:50596 - cid:104 - TLS handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority";
        assert!(is_auth_failure(line));
        let (client, detail) = parse_auth_failure(line);
        assert_eq!(client, "127.0.0.1:50596");
        assert!(
            detail.starts_with("TLS handshake error: tls: failed to verify"),
            "{detail}"
        );
        let violation = "[1] 2026/11/26 09:28:04.024141 [ERR] 127.0.0.1:50556 - cid:95 - \"v0.51.0:rust:scribe\" - \"OZONE/user:scribe.local\" - Publish Violation - Subject \"cognis.selfcheck\"";
        assert!(!is_auth_failure(violation));
        assert!(!is_auth_failure("[1] [INF] Server is ready"));
    }

    #[test]
    fn a_reload_is_done_when_the_server_says_so() {
        // Lines nats-server 2.15 writes on SIGHUP, the last once all is applied.
        let partial = "[20211] 2026/11/27 06:34:47.962714 [INF] Reloaded: authorization users\n\
                       [20211] 2026/11/27 06:34:47.962748 [INF] Reloaded: accounts\n";
        assert_eq!(reload_outcome(partial), None);
        let done = format!("{partial}[20211] 2026/11/27 06:34:47.963763 [INF] Reloaded server configuration (sha256:c4ca77)\n");
        assert_eq!(reload_outcome(&done), Some(Ok(())));
        let refused = "[7] 2026/11/27 06:40:00.000000 [ERR] Failed to reload server configuration: config reload not supported for jetstream storage directory";
        assert!(
            matches!(reload_outcome(refused), Some(Err(line)) if line.contains("storage directory"))
        );
        assert_eq!(reload_outcome(""), None);
    }

    #[tokio::test]
    async fn waiting_for_a_reload_reads_only_what_came_after_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nats-server.log");
        std::fs::write(
            &log,
            "[1] [INF] Reloaded server configuration (an earlier one)\n",
        )
        .unwrap();
        let from = std::fs::metadata(&log).unwrap().len();
        let waited = wait_for_reload(&log, from, 1, Duration::from_millis(200)).await;
        assert!(
            matches!(waited, Err(ServerError::ReloadUnconfirmed { pid: 1, .. })),
            "{waited:?}"
        );
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                std::io::Write::write_all(
                    &mut f,
                    b"[1] [INF] Reloaded server configuration (sha256:x)\n",
                )
                .unwrap();
            })
        };
        wait_for_reload(&log, from, 1, Duration::from_secs(5))
            .await
            .unwrap();
        writer.await.unwrap();
    }
}
