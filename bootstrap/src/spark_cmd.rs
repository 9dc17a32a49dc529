//! SPARK from the command line: `ozone models install|list`, `ozone ask`, `ozone spark scale`.
//! The CLI is BRIDGE's command-line face, so it joins the bus as BRIDGE (the component that
//! calls SPARK on behalf of people).

use anyhow::Context;
use ozone_bus_schemas::spark::{ChatMessage, GenerateRequest};
use ozone_bus_schemas::{Component, Identity};
use ozone_nats::bus::Bus;
use ozone_nats::NatsSettings;
use ozone_security::{tls, Home, SecurityConfig};
use ozone_spark::client::{new_request_id, random_u64, SparkClient};
use ozone_spark::models::{self, InstallOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The models folder the workers of this home serve from.
pub fn models_dir(home: &Home) -> PathBuf {
    std::env::var_os("OZONE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.models())
}

/// Installs whatever shipped model is missing (a no-op when all are there).
pub fn install(dir: PathBuf, progress: bool) -> anyhow::Result<Vec<String>> {
    let mut opts = InstallOptions::new(dir);
    opts.progress = progress;
    models::install(&opts)
}

/// `ozone models list`: what discovery finds (the same list `spark.models` answers).
pub fn list(dir: &std::path::Path) {
    let found = models::discover(dir);
    if found.is_empty() {
        println!(
            "no models in {} (`ozone models install` puts the shipped ones there)",
            dir.display()
        );
        return;
    }
    println!(
        "{:<34} {:<10} {:<11} {:<8} {:>7} {:<6} {:>7} {:>8}  SERVED",
        "NAME", "KIND", "FORMAT", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SIZE"
    );
    for m in found {
        let i = m.info;
        println!(
            "{:<34} {:<10} {:<11} {:<8} {:>6.1}M {:<6} {:>7} {:>6.0}MB  {}",
            i.name,
            format!("{:?}", i.kind).to_lowercase(),
            i.format,
            i.architecture,
            i.parameters as f64 / 1e6,
            i.quantization,
            i.context_length,
            i.size_bytes as f64 / 1e6,
            if i.served { "yes" } else { "no" }
        );
    }
}

/// Joins the bus as BRIDGE.
pub async fn bridge_bus(home: &Home) -> anyhow::Result<Bus> {
    let cfg = SecurityConfig::load(home, &[])?;
    let id = Identity::component(Component::Bridge);
    let url = NatsSettings::load(home)?.url();
    let conn = ozone_nats::connect(&url, &id, tls::client_config(home, &cfg, &id)?)
        .await
        .context("cannot reach the bus (is the ecosystem up? `ozone up --detach`)")?;
    Ok(Bus::start(conn, home, cfg.rotation()).await?)
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
    let client = SparkClient::new(bridge_bus(home).await?);
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

/// Where `ozone spark scale` keeps the pids of the workers it started.
fn workers_dir(home: &Home) -> PathBuf {
    home.run().join("spark-workers")
}

/// The extra workers now running (pid files whose process is still ours).
pub fn extra_workers(home: &Home) -> Vec<(PathBuf, i32)> {
    let Ok(entries) = std::fs::read_dir(workers_dir(home)) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, i32)> = entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            if crate::down::ours(pid) {
                Some((e.path(), pid))
            } else {
                let _ = std::fs::remove_file(e.path());
                None
            }
        })
        .collect();
    out.sort();
    out
}

/// The most SPARK workers `ozone spark scale` starts on one host: every worker loads the
/// models (hundreds of MB) and runs its own compute threads, so beyond a few per core they
/// only fight over memory and CPU. A typo of `1000` must not start 999 processes.
pub fn max_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 2).clamp(2, 64)
}

/// How long a started worker must stay alive to count as started: loading the models takes
/// longer than this, and a worker that cannot load them (or reach the bus) exits sooner.
const STARTUP_CHECK: Duration = Duration::from_secs(2);

/// `ozone spark scale N`: N workers in all — the supervised one plus N-1 started here (or
/// stopped, newest first). Extra workers are plain processes with pid files; `ozone down`
/// stops them. Refused when the ecosystem is not up or N is beyond [`max_workers`]; a worker
/// that dies within [`STARTUP_CHECK`] fails the command with its exit status.
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
    anyhow::ensure!(
        crate::down::supervisor_pid(home).is_some(),
        "the ecosystem is not up in {}: start it with `ozone up --detach`",
        home.root().display()
    );
    let mut extra = extra_workers(home);
    let want = n - 1;
    while extra.len() > want {
        if let Some((path, pid)) = extra.pop() {
            crate::down::terminate(pid, Duration::from_secs(10));
            let _ = std::fs::remove_file(path);
            println!("stopped SPARK worker pid {pid}");
        }
    }
    std::fs::create_dir_all(workers_dir(home))?;
    let mut started = Vec::new();
    while extra.len() < want {
        let mut cmd = crate::components::command(home, Component::Spark)?;
        if let Some(t) = threads {
            cmd.env("OZONE_SPARK_THREADS", t.to_string());
        }
        // Its own process group: Ctrl-C in this terminal must not stop it.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().context("cannot start ozone-spark")?;
        let pid = child.id() as i32;
        let path = workers_dir(home).join(format!("{pid}.pid"));
        std::fs::write(&path, pid.to_string())?;
        extra.push((path.clone(), pid));
        started.push((child, path));
    }
    check_started(home, started)?;
    Ok(extra.len() + 1)
}

/// Waits [`STARTUP_CHECK`] and fails if any just-started worker has exited meanwhile.
fn check_started(home: &Home, started: Vec<(std::process::Child, PathBuf)>) -> anyhow::Result<()> {
    if started.is_empty() {
        return Ok(());
    }
    std::thread::sleep(STARTUP_CHECK);
    let mut dead = Vec::new();
    for (mut child, path) in started {
        match child.try_wait()? {
            None => println!("started SPARK worker pid {}", child.id()),
            Some(status) => {
                let _ = std::fs::remove_file(path);
                dead.push(format!("pid {} {status}", child.id()));
            }
        }
    }
    anyhow::ensure!(
        dead.is_empty(),
        "{} of the new SPARK workers exited at once ({}); see {}",
        dead.len(),
        dead.join(", "),
        home.logs().join("spark.log").display()
    );
    Ok(())
}
