//! SPARK from the command line: `ozone models install|list`, `ozone ask`, `ozone spark scale`.
//! `ozone ask` joins the bus as the console operator (`connect::cli_bus`), which the subject
//! table lets call SPARK.

use crate::supervisor::ProcessState;
use anyhow::Context;
use ozone_bus_schemas::spark::{ChatMessage, GenerateRequest};
use ozone_bus_schemas::Component;
use ozone_security::Home;
use ozone_spark_client::{new_request_id, random_u64, SparkClient};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The models folder the workers of this home serve from.
pub fn models_dir(home: &Home) -> PathBuf {
    std::env::var_os("OZONE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.models())
}

/// `ozone-spark models <args>` beside this binary, its output shown as it comes: model files
/// are SPARK's business, so the CLI links no model code.
fn spark_models(args: &[&str], dir: &Path) -> anyhow::Result<bool> {
    let status = std::process::Command::new(crate::supervisor::binary(Component::Spark)?)
        .arg("models")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .status()
        .context("cannot run ozone-spark")?;
    Ok(status.success())
}

/// `ozone models install`: installs whatever shipped model is missing (a no-op when all are
/// there), with progress bars unless `quiet`.
pub fn install(dir: &Path, quiet: bool) -> anyhow::Result<()> {
    let args: &[&str] = if quiet {
        &["install", "--quiet"]
    } else {
        &["install"]
    };
    anyhow::ensure!(spark_models(args, dir)?, "installing the models failed");
    Ok(())
}

/// Whether every shipped model is in `dir`.
pub fn installed(dir: &Path) -> anyhow::Result<bool> {
    let status = std::process::Command::new(crate::supervisor::binary(Component::Spark)?)
        .args(["models", "check", "--dir"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .context("cannot run ozone-spark")?;
    Ok(status.success())
}

/// `ozone models list`: what discovery finds (the same list `spark.models` answers).
pub fn list(dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(spark_models(&["list"], dir)?, "listing the models failed");
    Ok(())
}

/// Options of `ozone ask`.
#[derive(Debug, Clone)]
pub struct AskOptions {
    pub max_tokens: u32,
    pub temperature: f64,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub system: Option<String>,
}

/// `ozone ask`: one chat turn, tokens printed as they stream; Ctrl-C cancels.
pub async fn ask(home: &Home, prompt: &str, o: &AskOptions) -> anyhow::Result<()> {
    let client = SparkClient::new(crate::connect::cli_bus(home).await?);
    let mut messages = Vec::new();
    if let Some(s) = &o.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: prompt.to_string(),
    });
    let mut req = GenerateRequest::chat(new_request_id(), messages);
    req.max_tokens = o.max_tokens;
    req.temperature = o.temperature;
    req.seed = o.seed.unwrap_or_else(random_u64);
    req.stop = o.stop.clone();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel_tx.send(true);
        }
    });
    let mut out = std::io::stdout();
    let done = client
        .generate(req, Some(cancel_rx), |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        })
        .await?;
    println!();
    let u = &done.usage;
    eprintln!(
        "[{} on worker {}: {} prompt + {} completion tokens, first token {:.0} ms, {:.1} tokens/s, {:?}]",
        done.model,
        done.worker,
        u.prompt_tokens,
        u.completion_tokens,
        u.time_to_first_token_ms,
        u.tokens_per_s,
        done.finish_reason
    );
    Ok(())
}

/// The most SPARK workers `ozone spark scale` asks for on one host: every worker loads the
/// models (hundreds of MB) and runs its own compute threads, so beyond a few per core they
/// only fight over memory and CPU. A typo of `1000` must not start 999 processes.
pub fn max_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 2).clamp(2, 64)
}

/// How long a started worker must stay up to count as started: loading the models takes
/// longer than this, and a worker that cannot load them (or reach the bus) exits sooner.
const STARTUP_CHECK: Duration = Duration::from_secs(2);

/// How long `ozone spark scale` waits for the supervisor to carry the request out.
const SCALE_WAIT: Duration = Duration::from_secs(30);

/// The SPARK worker processes the supervisor runs now, by their number on this host (1: the
/// component's own process), with their records.
fn workers(home: &Home) -> Vec<(usize, ProcessState)> {
    let mut out: Vec<(usize, ProcessState)> = crate::supervisor::read_states(home)
        .into_iter()
        .filter_map(|(name, state)| {
            let n = if name == Component::Spark.name() {
                1
            } else {
                name.strip_prefix("spark-")?.parse().ok()?
            };
            Some((n, state))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out
}

/// `ozone spark scale N`: N workers in all on this host — SPARK's own process plus N-1 the
/// supervisor runs beside it, restarted when they die like every component (or stopped,
/// newest first). Refused when the ecosystem is not up or N is beyond [`max_workers`]; a new
/// worker that dies within [`STARTUP_CHECK`] fails the command with its exit status.
pub fn scale(home: &Home, n: usize, threads: Option<usize>) -> anyhow::Result<usize> {
    anyhow::ensure!(
        n >= 1,
        "at least 1 worker (the supervised one) runs while the ecosystem is up"
    );
    let limit = max_workers();
    anyhow::ensure!(
        n <= limit,
        "{n} workers is more than this host can run usefully (at most {limit}: two per core); \
         add hosts instead — a worker elsewhere needs only its credentials and the NATS URL"
    );
    let supervisor = crate::processes::supervisor_pid(home).ok_or_else(|| {
        anyhow::anyhow!(
            "the ecosystem is not up in {}: start it with `ozone up --detach`",
            home.root().display()
        )
    })?;
    let before = workers(home);
    ask_supervisor(home, supervisor, n, threads)?;
    let deadline = std::time::Instant::now() + SCALE_WAIT;
    loop {
        let now = workers(home);
        match scale_outcome(&before, &now, n, ozone_nats::bus::now_ms()) {
            Outcome::Done => break,
            Outcome::Failed(dead) => {
                // Back to the workers that ran: a new one that cannot start is not left to
                // crash and restart.
                ask_supervisor(home, supervisor, before.len().max(1), threads)?;
                anyhow::bail!(
                    "{} of the new SPARK workers exited at once ({}) and were stopped; see {}",
                    dead.len(),
                    dead.join(", "),
                    home.logs().join("spark.log").display()
                )
            }
            Outcome::Waiting if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Outcome::Waiting => anyhow::bail!(
                "the supervisor did not reach {n} SPARK workers within {}s (see {})",
                SCALE_WAIT.as_secs(),
                home.logs().join("ozone-supervisor.log").display()
            ),
        }
    }
    for (k, state) in &before {
        if *k > n {
            println!(
                "stopped SPARK worker pid {} ({})",
                state.pid.unwrap_or_default(),
                crate::supervisor::spark_pool::worker_name(*k)
            );
        }
    }
    for (k, state) in workers(home) {
        if k > before.len().max(1) {
            println!(
                "started SPARK worker pid {} ({})",
                state.pid.unwrap_or_default(),
                crate::supervisor::spark_pool::worker_name(k)
            );
        }
    }
    Ok(n)
}

/// Writes the request and signals the supervisor to read it.
fn ask_supervisor(
    home: &Home,
    supervisor: i32,
    workers: usize,
    threads: Option<usize>,
) -> anyhow::Result<()> {
    let request = crate::supervisor::spark_pool::ScaleRequest { workers, threads };
    crate::supervisor::spark_pool::write_request(home, &request)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .with_context(|| format!("cannot signal the supervisor (pid {supervisor})"))
}

/// Where a scale request stands, read from the supervisor's records.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Waiting,
    Done,
    /// New workers that exited (name and how).
    Failed(Vec<String>),
}

/// Compares the workers `before` the request with those `now`: done when exactly `n` run and
/// every new one has been up [`STARTUP_CHECK`] without a restart; failed as soon as a new one
/// has exited.
fn scale_outcome(
    before: &[(usize, ProcessState)],
    now: &[(usize, ProcessState)],
    n: usize,
    now_ms: u64,
) -> Outcome {
    let existed = before.len().max(1);
    let dead: Vec<String> = now
        .iter()
        .filter(|(k, s)| *k > existed && (s.restarts > 0 || s.state == "failed"))
        .map(|(k, s)| {
            format!(
                "{} {}",
                crate::supervisor::spark_pool::worker_name(*k),
                s.last_exit.as_deref().unwrap_or("exited")
            )
        })
        .collect();
    if !dead.is_empty() {
        return Outcome::Failed(dead);
    }
    let settled = now.iter().all(|(k, s)| {
        *k <= existed
            || (s.state == "running"
                && now_ms.saturating_sub(s.started_at_ms) >= STARTUP_CHECK.as_millis() as u64)
    });
    if now.len() == n && now.iter().all(|(k, _)| *k <= n) && settled {
        Outcome::Done
    } else {
        Outcome::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(started_at_ms: u64) -> ProcessState {
        ProcessState {
            pid: Some(42),
            state: "running".into(),
            restarts: 0,
            started_at_ms,
            last_exit: None,
        }
    }

    #[test]
    fn a_new_worker_counts_once_it_has_stayed_up() {
        let before = vec![(1, running(0))];
        let now = vec![(1, running(0)), (2, running(10_000))];
        assert_eq!(scale_outcome(&before, &now, 2, 11_000), Outcome::Waiting);
        assert_eq!(scale_outcome(&before, &now, 2, 12_000), Outcome::Done);
        // Not there yet at all.
        assert_eq!(scale_outcome(&before, &before, 2, 12_000), Outcome::Waiting);
    }

    #[test]
    fn a_new_worker_that_exits_fails_the_request_at_once() {
        let before = vec![(1, running(0))];
        let mut dying = running(10_000);
        dying.restarts = 1;
        dying.state = "restarting".into();
        dying.last_exit = Some("exit status: 1".into());
        let now = vec![(1, running(0)), (2, dying)];
        assert_eq!(
            scale_outcome(&before, &now, 2, 10_100),
            Outcome::Failed(vec!["spark-2 exit status: 1".into()])
        );
    }

    #[test]
    fn scaling_down_is_done_when_the_extra_workers_are_gone() {
        let before = vec![(1, running(0)), (2, running(0)), (3, running(0))];
        let now = vec![(1, running(0)), (2, running(0)), (3, running(0))];
        assert_eq!(scale_outcome(&before, &now, 2, 99_000), Outcome::Waiting);
        assert_eq!(scale_outcome(&before, &now[..2], 2, 99_000), Outcome::Done);
        // An old worker that restarted earlier does not fail a later request.
        let mut restarted = running(0);
        restarted.restarts = 3;
        let before = vec![(1, running(0)), (2, restarted.clone())];
        let now = vec![(1, running(0)), (2, restarted), (3, running(0))];
        assert_eq!(scale_outcome(&before, &now, 3, 99_000), Outcome::Done);
    }
}
