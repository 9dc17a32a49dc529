//! `ozone bench spark`: SPARK measured against its own baselines in one run, on a private
//! nats-server with real `ozone-spark` worker processes:
//! - decode tokens/s over the bus vs the same model called in-process (same prompt, seed and
//!   token count; median of 5 alternating rounds each) — in-process means `ozone-spark
//!   baseline`, a process with the models and no bus, so this command links no model code;
//! - embedding throughput with 2 workers vs 1, each worker on one thread;
//! - embed latency p50/p99 for one sentence over the bus (in-process latency beside it).

use anyhow::Context;
use ozone_bus_schemas::{Component, Identity};
use ozone_nats::bus::Bus;
use ozone_security::Home;
use ozone_spark_client::{bench_request, SparkClient};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Report {
    /// Where the models ran (the workers and the in-process baseline alike).
    pub device: String,
    pub tokens: u32,
    pub in_process_tok_s: f64,
    pub bus_tok_s: f64,
    pub embeds: usize,
    pub one_worker_per_s: f64,
    pub two_workers_per_s: f64,
    pub embed_p50_ms: f64,
    pub embed_p99_ms: f64,
    pub in_process_embed_p50_ms: f64,
}

/// Decode rounds, alternating in-process and bus; the median of each is reported (this
/// machine's decode speed varies by ±10 % between runs).
const DECODE_ROUNDS: usize = 5;

/// How long a started worker may take to load its models and answer.
const WORKER_START: Duration = Duration::from_secs(60);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// `ozone-spark baseline`: the models in a process of their own, without the bus.
struct Baseline {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Baseline {
    /// Starts it and returns it with the device it computes on.
    fn start(models: &Path) -> anyhow::Result<(Baseline, String)> {
        let mut child = std::process::Command::new(crate::supervisor::binary(Component::Spark)?)
            .arg("baseline")
            .arg("--models")
            .arg(models)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start ozone-spark baseline")?;
        let (input, output) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, BufReader::new(o)),
            _ => anyhow::bail!("ozone-spark baseline has no pipes"),
        };
        let mut baseline = Baseline {
            child,
            input,
            output,
        };
        let device = baseline.answer("device")?;
        let device = device.as_str().unwrap_or("unknown").to_string();
        Ok((baseline, device))
    }

    /// Sends one command; the value of `field` in its answer.
    fn ask(&mut self, command: &str, field: &str) -> anyhow::Result<f64> {
        writeln!(self.input, "{command}")?;
        self.input.flush()?;
        self.answer(field)?
            .as_f64()
            .with_context(|| format!("baseline answered no {field}"))
    }

    fn answer(&mut self, field: &str) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        anyhow::ensure!(
            !line.is_empty(),
            "ozone-spark baseline stopped (are the models installed? `ozone models install`)"
        );
        let v: serde_json::Value = serde_json::from_str(&line)?;
        Ok(v[field].clone())
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker process serving `models` on the bench home.
fn start_worker(home: &Home, models: &Path, threads: usize) -> anyhow::Result<std::process::Child> {
    Ok(crate::supervisor::command(home, Component::Spark)?
        .env("OZONE_MODELS_DIR", models)
        .env("OZONE_SPARK_THREADS", threads.to_string())
        .spawn()?)
}

/// Embedding requests/s with `concurrency` in flight.
async fn embed_throughput(
    client: &SparkClient,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    use futures::StreamExt;
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let c = client.clone();
            async move {
                c.embed(
                    None,
                    vec![format!("sentence number {i} about the weather today")],
                )
                .await
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(models: &Path, tokens: u32, embeds: usize) -> anyhow::Result<Report> {
    // The device the workers pick too: the baseline runs where they run.
    let (mut baseline, device_label) = Baseline::start(models)?;
    eprintln!("  compute device: {device_label}");
    let bench = crate::cmd::bench_bus::BenchServer::start(None).await?;
    let (home, cfg, settings) = (&bench.home, &bench.cfg, &bench.settings);
    // In its own scratch home the bench plays BRIDGE, the component that calls SPARK for
    // people: the figures are a component caller's (compact envelopes), the platform's path.
    let id = Identity::component(Component::Bridge);
    let conn = crate::connect::connect_to(&settings.url(), home, cfg, &id).await?;
    let client = SparkClient::new(Bus::start(conn, home, cfg.rotation()).await?);

    // 1. Decode: one worker with every core vs the same model in the baseline process.
    let mut first = KillOnDrop(start_worker(home, models, 0)?);
    client.wait_for_workers(1, WORKER_START).await?;
    let (mut local, mut bus) = (Vec::new(), Vec::new());
    for round in 0..DECODE_ROUNDS {
        eprintln!("  decode round {}/{DECODE_ROUNDS}", round + 1);
        let decode = format!("decode {tokens}");
        local.push(tokio::task::block_in_place(|| {
            baseline.ask(&decode, "tok_s")
        })?);

        let mut first_at = None;
        let done = client
            .generate(bench_request(tokens), None, |_| {
                first_at.get_or_insert_with(Instant::now);
            })
            .await?;
        let secs = first_at.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        bus.push(f64::from(done.usage.completion_tokens.saturating_sub(1)) / secs.max(1e-9));
    }
    first.stop();

    // 2. Embedding throughput, one thread per worker: 1 worker, then 2.
    let local_p50 = tokio::task::block_in_place(|| baseline.ask("embed 50", "p50_ms"))?;
    drop(baseline);
    let _a = KillOnDrop(start_worker(home, models, 1)?);
    client.wait_for_workers(1, WORKER_START).await?;
    embed_throughput(&client, 50, 16).await?; // warm-up
    let mut one = Vec::new();
    for _ in 0..3 {
        one.push(embed_throughput(&client, embeds, 32).await?);
    }
    let _b = KillOnDrop(start_worker(home, models, 1)?);
    client.wait_for_workers(2, WORKER_START).await?;
    embed_throughput(&client, 50, 16).await?;
    let mut two = Vec::new();
    for _ in 0..3 {
        two.push(embed_throughput(&client, embeds, 32).await?);
    }

    // 3. One sentence at a time over the bus (2 workers up).
    let mut lat = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        client
            .embed(None, vec![format!("a short sentence to embed, number {i}")])
            .await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Report {
        device: device_label,
        tokens,
        in_process_tok_s: median(local),
        bus_tok_s: median(bus),
        embeds,
        one_worker_per_s: median(one),
        two_workers_per_s: median(two),
        embed_p50_ms: percentile(lat.clone(), 0.5),
        embed_p99_ms: percentile(lat, 0.99),
        in_process_embed_p50_ms: local_p50,
    })
}

struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn print(r: &Report) {
    println!("compute device: {}", r.device);
    println!(
        "decode ({} tokens, 1 worker, {}; median of {DECODE_ROUNDS})",
        r.tokens,
        if r.device == "cpu" {
            "all cores"
        } else {
            r.device.as_str()
        }
    );
    println!("  in-process   {:>8.1} tokens/s", r.in_process_tok_s);
    println!("  over the bus {:>8.1} tokens/s", r.bus_tok_s);
    println!(
        "  ratio bus/in-process {:.3} (target >= 0.97)",
        r.bus_tok_s / r.in_process_tok_s.max(1e-9)
    );
    println!("embedding throughput ({} one-sentence requests, 32 in flight, 1 thread per worker; median of 3)", r.embeds);
    println!("  1 worker  {:>8.1} requests/s", r.one_worker_per_s);
    println!("  2 workers {:>8.1} requests/s", r.two_workers_per_s);
    println!(
        "  ratio 2/1 {:.2} (aim >= 1.7)",
        r.two_workers_per_s / r.one_worker_per_s.max(1e-9)
    );
    println!("embed latency, one sentence over the bus (200 sequential, 2 workers)");
    println!(
        "  p50 {:.2} ms  p99 {:.2} ms  (in-process p50 {:.2} ms)",
        r.embed_p50_ms, r.embed_p99_ms, r.in_process_embed_p50_ms
    );
}
