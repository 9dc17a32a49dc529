//! `ozone bench bus`: raw async-nats against the typed, encrypted bus, on one nats-server in
//! the same run, for publish→subscribe throughput and request/reply latency.

use futures::StreamExt;
use ozone_bus_schemas::{Component, Identity, Subject};
use ozone_nats::bus::{local_keys, Bus};
use ozone_nats::{find_binary, Connection, NatsServer, NatsSettings, ServerError};
use ozone_security::envelope::{Form, SealTo, Sealer, SecretKeyPair, SessionLimits};
use ozone_security::Home;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize)]
struct Blob {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Publishing runs ahead of the subscriber by at most this many messages, for raw and
/// sealed alike, so neither overruns the subscription buffer and is dropped as a slow consumer.
const WINDOW: usize = 1000;
/// …and by at most this many bytes: nats-server cuts a subscriber with more than 64 MiB
/// pending as a slow consumer, which would lose messages and hang the run.
const WINDOW_BYTES: usize = 16 << 20;

fn window(size: usize) -> usize {
    (WINDOW_BYTES / size.max(1)).clamp(1, WINDOW)
}

/// One row of results.
#[derive(Debug, Clone)]
pub struct Row {
    pub size: usize,
    pub raw_msgs_per_s: f64,
    pub bus_msgs_per_s: f64,
    /// Median over rounds of sealed / raw measured back to back in the same round: a shared
    /// machine's speed drifts between rounds, and pairing cancels the drift.
    pub pubsub_ratio: f64,
    /// Raw publish→subscribe of payloads as large as the sealed envelopes: separates what the
    /// extra bytes cost (in TLS, the server, the kernel) from what sealing and opening cost.
    pub raw_envelope_size_msgs_per_s: f64,
    pub envelope_size: usize,
    /// Sequential request/reply round trips a second.
    pub raw_req_per_s: f64,
    pub bus_req_per_s: f64,
    pub raw_p50_us: f64,
    pub raw_p99_us: f64,
    pub bus_p50_us: f64,
    pub bus_p99_us: f64,
}

/// The size of a sealed `Blob` of `size` bytes from the core to one recipient in steady
/// state (a compact envelope, its session's record published): sealed with throwaway keys and
/// measured, not computed from the layout.
fn envelope_size(size: usize) -> anyhow::Result<usize> {
    let payload = rmp_serde::to_vec_named(&Blob {
        data: vec![0; size],
    })?;
    let recipient = *SecretKeyPair::generate()?.public();
    let mut sealer = Sealer::new(
        Component::Core.name(),
        SecretKeyPair::generate()?,
        SessionLimits::default(),
    );
    let subject = Subject::component_request(Component::Spark, "bench")?;
    let route = Subject::component_requests(Component::Spark);
    let seal = |sealer: &mut Sealer| {
        let form = Form::CompactWhenPublished;
        sealer.seal_with(
            SealTo {
                subject: subject.as_str(),
                route: route.as_str(),
                schema: 1,
                recipients: &[recipient],
                form,
            },
            0,
            size,
            |out| {
                out.extend_from_slice(&payload);
                Ok(())
            },
        )
    };
    seal(&mut sealer)?;
    for record in sealer.new_records() {
        sealer.mark_published(&record.session_id);
    }
    Ok(seal(&mut sealer)?.len())
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Messages per publish→subscribe round (a tenth of it above 4 KiB).
    pub messages: usize,
    /// Sequential requests per request/reply round.
    pub requests: usize,
    pub sizes: Vec<usize>,
    /// Rounds of each measurement per size.
    pub rounds: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(f64::NAN)
}

/// Counts what the subscriber has taken, so the publisher can stay within the window.
struct Progress {
    window: usize,
    received: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Progress {
    fn new(size: usize) -> Progress {
        Progress {
            window: window(size),
            received: Default::default(),
            changed: Default::default(),
        }
    }

    fn took_one(&self) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changed.notify_one();
    }

    async fn wait_below_window(&self, sent: usize) {
        while sent.saturating_sub(self.received.load(std::sync::atomic::Ordering::Relaxed))
            >= self.window
        {
            self.changed.notified().await;
        }
    }
}

async fn raw_pubsub(
    pub_c: &async_nats::Client,
    sub_conn: &Connection,
    size: usize,
    n: usize,
) -> anyhow::Result<f64> {
    let subject = Subject::component_request(Component::Spark, "bench.raw")?;
    let mut sub = sub_conn.client.subscribe(subject.to_string()).await?;
    // A server round trip, so the subscription is live before the first publish (a flush
    // only empties the client's buffer).
    sub_conn.sync().await?;
    let progress = std::sync::Arc::new(Progress::new(size));
    let p = progress.clone();
    // Subscriber and publisher run concurrently, as they would in two processes.
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            sub.next()
                .await
                .ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
            p.took_one();
        }
        anyhow::Ok(())
    });
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let started = Instant::now();
    for sent in 0..n {
        progress.wait_below_window(sent).await;
        pub_c.publish(subject.to_string(), payload.clone()).await?;
    }
    reader.await??;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn bus_pubsub(core: &Bus, spark: &Bus, size: usize, n: usize) -> anyhow::Result<f64> {
    let subject = Subject::component_request(Component::Spark, "bench")?;
    let mut sub = spark.subscribe::<Blob>(&subject, None).await?;
    let progress = std::sync::Arc::new(Progress::new(size));
    let p = progress.clone();
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            sub.next()
                .await
                .ok_or_else(|| anyhow::anyhow!("subscription closed"))??;
            p.took_one();
        }
        anyhow::Ok(())
    });
    let blob = Blob {
        data: vec![7u8; size],
    };
    let started = Instant::now();
    for sent in 0..n {
        progress.wait_below_window(sent).await;
        core.publish_nowait(&subject, &blob).await?;
    }
    reader.await??;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn raw_reqrep(
    core: &async_nats::Client,
    spark_conn: &Connection,
    size: usize,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let subject = Subject::component_request(Component::Spark, "bench.rawecho")?;
    let mut sub = spark_conn.client.subscribe(subject.to_string()).await?;
    spark_conn.sync().await?;
    let responder = spark_conn.client.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, m.payload).await;
            }
        }
    });
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        core.request(subject.to_string(), payload.clone()).await?;
        lat.push(t.elapsed());
    }
    task.abort();
    Ok(lat)
}

async fn bus_reqrep(
    core: &Bus,
    spark: &Bus,
    size: usize,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let subject = Subject::component_request(Component::Spark, "echo")?;
    let mut sub = spark.subscribe::<Blob>(&subject, Some("spark")).await?;
    let responder = spark.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = sub.next().await {
            let echo = Blob {
                data: m.message.data.clone(),
            };
            let _ = responder.reply(&m, &echo).await;
        }
    });
    let blob = Blob {
        data: vec![7u8; size],
    };
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _: Blob = core
            .request(&subject, &blob, Duration::from_secs(10))
            .await?;
        lat.push(t.elapsed());
    }
    task.abort();
    Ok(lat)
}

/// A throwaway home with its own nats-server on free ports, for a benchmark run.
#[derive(Debug)]
pub struct BenchServer {
    pub home: Home,
    pub cfg: ozone_security::SecurityConfig,
    pub settings: NatsSettings,
    server: NatsServer,
    _tmp: tempfile::TempDir,
}

impl BenchServer {
    /// Starts one, trying fresh ports when the ones picked were taken in the gap between
    /// picking and binding (an outgoing connection may be handed the same ephemeral port).
    pub async fn start(max_payload: Option<u32>) -> anyhow::Result<BenchServer> {
        const TRIES: u32 = 3;
        let mut tried = 1;
        loop {
            match Self::start_once(max_payload).await {
                Err(e) if tried < TRIES && port_was_taken(&e) => tried += 1,
                other => return other,
            }
        }
    }

    async fn start_once(max_payload: Option<u32>) -> anyhow::Result<BenchServer> {
        let tmp = tempfile::tempdir()?;
        let home = Home::new(tmp.path().join("bench"));
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        };
        let defaults = NatsSettings::default();
        let wanted = NatsSettings {
            port: free()?,
            monitor_port: free()?,
            max_payload: max_payload.unwrap_or(defaults.max_payload),
            ..defaults
        };
        let (_, cfg) = crate::cmd::init::run(&home, &wanted, &[])?;
        let settings = NatsSettings::load(&home)?;
        let server = NatsServer::start(
            &home,
            &settings,
            &find_binary(&home.bin())?,
            Duration::from_secs(20),
        )
        .await?;
        Ok(BenchServer {
            home,
            cfg,
            settings,
            server,
            _tmp: tmp,
        })
    }
}

fn port_was_taken(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>()
        .is_some_and(ServerError::port_was_taken)
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let Plan {
        messages,
        requests,
        rounds,
        ..
    } = *plan;
    let bench = BenchServer::start(Some(2 * 1024 * 1024)).await?;
    let (home, cfg, settings) = (&bench.home, &bench.cfg, &bench.settings);
    let connect = |c: Component| {
        let id = Identity::component(c);
        let url = settings.url();
        async move { crate::connect::connect_to(&url, home, cfg, &id).await }
    };
    let (core_c, spark_c) = (
        connect(Component::Core).await?,
        connect(Component::Spark).await?,
    );
    let mut keys = local_keys(home, &[Component::Core, Component::Spark])?;
    let core = Bus::new(
        core_c.clone(),
        keys.remove(&Component::Core)
            .ok_or_else(|| anyhow::anyhow!("keys"))?,
    );
    let spark = Bus::new(
        spark_c.clone(),
        keys.remove(&Component::Spark)
            .ok_or_else(|| anyhow::anyhow!("keys"))?,
    );
    let mut rows = Vec::new();
    for &size in &plan.sizes {
        let n = if size > 4096 { messages / 10 } else { messages };
        eprintln!(
            "  {size} B: a warm-up, then {rounds} rounds of publish→subscribe × {n} and request/reply × {requests}"
        );
        // Alternate raw and sealed, several rounds, so drift in the machine's load hits both
        // alike; throughput is the median round.
        let envelope_size = envelope_size(size)?;
        // A warm-up pair, not counted: the first sealed messages set up their session (a
        // full envelope, its record stored) and the first round of each kind meets cold
        // buffers; the figures are of the steady state.
        raw_pubsub(&core_c.client, &spark_c, size, n.div_ceil(4)).await?;
        bus_pubsub(&core, &spark, size, n.div_ceil(4)).await?;
        let (mut raw_tp, mut bus_tp, mut raw_env_tp) = (Vec::new(), Vec::new(), Vec::new());
        let (mut raw_lat, mut bus_lat) = (Vec::new(), Vec::new());
        let (mut raw_req_s, mut bus_req_s) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Which of the pair goes first alternates: whatever one leaves behind (the
            // server's garbage, a cold cache) falls on both alike.
            if round % 2 == 0 {
                raw_tp.push(raw_pubsub(&core_c.client, &spark_c, size, n).await?);
                bus_tp.push(bus_pubsub(&core, &spark, size, n).await?);
            } else {
                bus_tp.push(bus_pubsub(&core, &spark, size, n).await?);
                raw_tp.push(raw_pubsub(&core_c.client, &spark_c, size, n).await?);
            }
            if let (Some(r), Some(b)) = (raw_tp.last(), bus_tp.last()) {
                eprintln!(
                    "    round {}/{rounds}: raw {r:.0} msg/s, sealed {b:.0} msg/s, ratio {:.2}",
                    round + 1,
                    b / r
                );
            }
            raw_env_tp.push(raw_pubsub(&core_c.client, &spark_c, envelope_size, n).await?);
            let raw = raw_reqrep(&core_c.client, &spark_c, size, requests).await?;
            raw_req_s.push(requests as f64 / raw.iter().sum::<Duration>().as_secs_f64());
            raw_lat.extend(raw);
            let bus = bus_reqrep(&core, &spark, size, requests).await?;
            bus_req_s.push(requests as f64 / bus.iter().sum::<Duration>().as_secs_f64());
            bus_lat.extend(bus);
        }
        raw_lat.sort();
        bus_lat.sort();
        rows.push(Row {
            size,
            pubsub_ratio: median(bus_tp.iter().zip(&raw_tp).map(|(b, r)| b / r).collect()),
            raw_msgs_per_s: median(raw_tp),
            bus_msgs_per_s: median(bus_tp),
            raw_envelope_size_msgs_per_s: median(raw_env_tp),
            envelope_size,
            raw_req_per_s: median(raw_req_s),
            bus_req_per_s: median(bus_req_s),
            raw_p50_us: percentile(&raw_lat, 0.50),
            raw_p99_us: percentile(&raw_lat, 0.99),
            bus_p50_us: percentile(&bus_lat, 0.50),
            bus_p99_us: percentile(&bus_lat, 0.99),
        });
    }
    bench.server.stop().await?;
    Ok(rows)
}

pub fn print(rows: &[Row], plan: &Plan) {
    let rounds = plan.rounds;
    println!(
        "{:>7} | {:>10} {:>10} {:>6} | {:>8} {:>8} {:>6} | {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}",
        "size",
        "raw msg/s",
        "seal msg/s",
        "ratio",
        "raw rq/s",
        "seal rq/s",
        "ratio",
        "raw p50",
        "raw p99",
        "seal p50",
        "seal p99",
        "p50 ×",
        "p99 ×"
    );
    for r in rows {
        println!(
            "{:>7} | {:>10.0} {:>10.0} {:>6.2} | {:>8.0} {:>8.0} {:>6.2} | {:>7.0}µs {:>7.0}µs {:>7.0}µs {:>7.0}µs {:>6.2} {:>6.2}",
            r.size,
            r.raw_msgs_per_s,
            r.bus_msgs_per_s,
            r.pubsub_ratio,
            r.raw_req_per_s,
            r.bus_req_per_s,
            r.bus_req_per_s / r.raw_req_per_s,
            r.raw_p50_us,
            r.raw_p99_us,
            r.bus_p50_us,
            r.bus_p99_us,
            r.bus_p50_us / r.raw_p50_us,
            r.bus_p99_us / r.raw_p99_us,
        );
    }
    for r in rows {
        println!(
            "{:>7} | raw at the envelope's size ({} B): {:.0} msg/s; sealed / that = {:.2} (the cost of sealing and opening alone)",
            r.size,
            r.envelope_size,
            r.raw_envelope_size_msgs_per_s,
            r.bus_msgs_per_s / r.raw_envelope_size_msgs_per_s
        );
    }
    println!(
        "msg/s, rq/s: median of {rounds} rounds; publish→subscribe ratio: median of the \
         rounds' sealed / raw, each pair measured back to back; request/reply ratio: of the \
         medians (1.0 = no cost); p50 ×, p99 × = sealed / raw latency"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![0.9, 0.7, 0.8]), 0.8);
        assert!((median(vec![0.9, 0.7, 0.8, 0.75]) - 0.775).abs() < 1e-12);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn the_window_bounds_bytes_in_flight_as_well_as_messages() {
        assert_eq!(window(1024), WINDOW);
        assert_eq!(window(64 * 1024), 256);
        assert_eq!(window(WINDOW_BYTES * 2), 1);
    }
}
