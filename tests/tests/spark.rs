//! SPARK with the real models, real worker processes and the project's nats-server
//! configuration (mTLS, permissions, encrypted envelopes): generation, streaming, stop
//! sequences, cancellation, embeddings, worker death, load shedding, bad input.

use futures::StreamExt;
use ozone_bus_schemas::spark::{
    self, ChatMessage, EmbedRequest, FinishReason, GenerateEvent, GenerateRequest, Prompt,
    SparkError,
};
use ozone_bus_schemas::{Component, Identity};
use ozone_nats::bus::Bus;
use ozone_security::envelope::Rotation;
use ozone_spark_client::{new_request_id, ClientError, ClientOptions, SparkClient};
use ozone_tests::{SparkProcess, TestEcosystem};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_ozone-cli");
const ROTATION: Rotation = Rotation {
    origin_ms: 0,
    interval_ms: 24 * 3600 * 1000,
    grace_ms: 3600 * 1000,
};

/// A server, `workers` SPARK processes (each with `env`), and a client joined as BRIDGE.
async fn pool(
    workers: usize,
    env: &[(&str, &str)],
    opts: ClientOptions,
) -> anyhow::Result<(TestEcosystem, Vec<SparkProcess>, SparkClient, Bus)> {
    let eco = TestEcosystem::start().await?;
    let mut procs = Vec::new();
    for _ in 0..workers {
        procs.push(SparkProcess::start(CLI, &eco.t.home, env)?);
    }
    let bridge = Identity::component(Component::Bridge);
    let bus = Bus::start(eco.connect(&bridge).await?, &eco.t.home, ROTATION).await?;
    let client = SparkClient::with_options(bus.clone(), opts);
    // Ready when every worker has answered `spark.models` at least once.
    client
        .wait_for_workers(workers, Duration::from_secs(90))
        .await?;
    Ok((eco, procs, client, bus))
}

fn chat(question: &str) -> GenerateRequest {
    GenerateRequest::chat(
        new_request_id(),
        vec![ChatMessage {
            role: "user".into(),
            content: question.into(),
        }],
    )
}

fn story(max_tokens: u32) -> GenerateRequest {
    let mut r = chat("Tell me a long story about a dragon who learns to bake bread.");
    r.max_tokens = max_tokens;
    r.seed = 11;
    r
}

/// Generates and returns (streamed pieces, result).
async fn generate(
    client: &SparkClient,
    req: GenerateRequest,
) -> Result<(Vec<String>, spark::Generated), ClientError> {
    let mut pieces = Vec::new();
    let done = client
        .generate(req, None, |p| pieces.push(p.to_string()))
        .await?;
    Ok((pieces, done))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_answers_streams_stops_and_cancels() -> anyhow::Result<()> {
    let (_eco, _workers, client, _bus) = pool(1, &[], ClientOptions::default()).await?;

    // The capital of France, decoded greedily: a sampled answer of a 135M model depends on
    // the last bits of the CPU's arithmetic (it differs between Intel and AMD hosts), the
    // greedy one only on which token is likeliest.
    let mut q = chat("What is the capital of France?");
    q.temperature = 0.0;
    q.max_tokens = 60;
    let (pieces, done) = generate(&client, q.clone()).await?;
    println!("answer: {:?} ({:?})", done.text, done.usage);
    assert!(done.text.contains("Paris"), "{:?}", done.text);
    assert_eq!(
        pieces.concat(),
        done.text,
        "streamed pieces must concatenate to the text"
    );
    assert!(
        pieces.len() > 3,
        "tokens were streamed one by one: {pieces:?}"
    );
    // Sampled, the same seed gives the same answer.
    q.temperature = 0.7;
    q.seed = 7;
    let (_, sampled) = generate(&client, q.clone()).await?;
    let (_, again) = generate(&client, q).await?;
    assert_eq!(again.text, sampled.text);

    // max_tokens.
    let (_, short) = generate(&client, story(5)).await?;
    assert_eq!(short.usage.completion_tokens, 5);
    assert_eq!(short.finish_reason, FinishReason::Length);

    // A stop sequence taken from the unstopped text: the stopped text ends right before it.
    let (_, full) = generate(&client, story(40)).await?;
    let words: Vec<&str> = full.text.split(' ').collect();
    assert!(words.len() > 6, "{:?}", full.text);
    let stop = format!(" {}", words[5]);
    let at = full.text.find(&stop).unwrap_or(0);
    let mut stopped = story(40);
    stopped.stop = vec![stop.clone()];
    let (pieces, cut) = generate(&client, stopped).await?;
    assert_eq!(cut.text, full.text[..at], "stop {stop:?}");
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    assert_eq!(pieces.concat(), cut.text);

    // Cancel after 5 tokens: the generation stops within a few more.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut after_cancel = 0usize;
    let mut seen = 0usize;
    let result = client
        .generate(story(400), Some(rx), |_| {
            seen += 1;
            if seen == 5 {
                let _ = tx.send(true);
            } else if seen > 5 {
                after_cancel += 1;
            }
        })
        .await;
    println!("tokens after cancel: {after_cancel}");
    assert!(
        matches!(result, Err(ClientError::Spark(SparkError::Cancelled))),
        "{result:?}"
    );
    assert!(after_cancel <= 8, "{after_cancel} tokens after the cancel");
    Ok(())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_unit_vectors_that_rank_meaning() -> anyhow::Result<()> {
    let (_eco, _workers, client, _bus) = pool(1, &[], ClientOptions::default()).await?;
    let texts: Vec<String> = ["eating food", "eating bread", "quantum chromodynamics"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = client.embed(None, texts.clone()).await?;
    assert_eq!(r.dimensions, 384);
    for v in &r.vectors {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    let (bread, qcd) = (
        cosine(&r.vectors[0], &r.vectors[1]),
        cosine(&r.vectors[0], &r.vectors[2]),
    );
    println!("cos(food, bread) = {bread:.4}, cos(food, qcd) = {qcd:.4}");
    assert!(bread > qcd + 0.3, "{bread} vs {qcd}");

    // Batched with others or alone, padded or not: the same vector.
    let alone = client.embed(None, vec![texts[2].clone()]).await?;
    let diff = alone.vectors[0]
        .iter()
        .zip(&r.vectors[2])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "batched vs alone differ by {diff}");

    // An independent computation (numpy BERT, tests/spark_reference) where Python is set up.
    if let Ok(python) = std::env::var("OZONE_AUDIT_PYTHON") {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/spark_reference/minilm.py");
        let out = std::process::Command::new(python)
            .arg(script)
            .arg(ozone_tests::models_dir()?.join("all-MiniLM-L6-v2"))
            .args(&texts)
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reference: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout)?;
        let worst = reference
            .iter()
            .zip(&r.vectors)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        println!("largest difference from the numpy reference: {worst:e}");
        assert!(worst < 1e-3, "{worst}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_mid_flight_loses_no_request() -> anyhow::Result<()> {
    let (_eco, mut workers, client, _bus) =
        pool(2, &[("OZONE_SPARK_THREADS", "1")], ClientOptions::default()).await?;
    let started = Instant::now();
    let requests = futures::stream::iter(0..200)
        .map(|i| {
            let c = client.clone();
            async move {
                let texts = (0..4)
                    .map(|j| format!("request {i} sentence {j}: the quick brown fox jumps"))
                    .collect();
                c.embed(None, texts).await
            }
        })
        .buffer_unordered(200)
        .collect::<Vec<_>>();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        workers[0].kill9();
    };
    let (results, ()) = tokio::join!(requests, killer);
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .take(3)
        .collect();
    println!(
        "200 requests, {ok} answered, {} retried on the surviving worker, {:?}",
        client.retried(),
        started.elapsed()
    );
    assert_eq!(ok, 200, "{errors:?}");
    assert!(client.retried() > 0, "the kill hit no request in flight");
    for r in results.into_iter().flatten() {
        assert_eq!(r.vectors.len(), 4);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_worker_sheds_load_with_bounded_memory() -> anyhow::Result<()> {
    const L: usize = 2;
    let env = [("OZONE_SPARK_CONCURRENCY", "2"), ("OZONE_SPARK_QUEUE", "0")];
    let no_retry = ClientOptions {
        overload_attempts: 1,
        ..ClientOptions::default()
    };
    let (_eco, workers, client, _bus) = pool(1, &env, no_retry).await?;
    let mut rss = Vec::new();
    for round in 0..3 {
        let results = futures::future::join_all((0..10 * L).map(|_| {
            let c = client.clone();
            async move { generate(&c, story(16)).await }
        }))
        .await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let overloaded = results
            .iter()
            .filter(|r| matches!(r, Err(ClientError::Spark(SparkError::Overloaded { .. }))))
            .count();
        rss.push(workers[0].rss_kib());
        println!(
            "round {round}: {ok} served, {overloaded} overloaded, worker RSS {} MiB",
            rss[round] / 1024
        );
        assert_eq!(ok + overloaded, 10 * L, "every request got an answer");
        assert!(
            ok >= L && overloaded >= 10 * L - 2 * L,
            "{ok} ok, {overloaded} overloaded"
        );
    }
    assert!(
        rss[2] < rss[0] + 64 * 1024,
        "memory grew from {} to {} KiB",
        rss[0],
        rss[2]
    );
    let e = SparkError::Overloaded {
        detail: String::new(),
        retry_after_ms: 1,
    };
    assert!(e.to_string().contains("overloaded"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_the_worker_keeps_serving() -> anyhow::Result<()> {
    let (_eco, _workers, client, bus) = pool(1, &[], ClientOptions::default()).await?;

    let mut unknown = story(8);
    unknown.model = Some("gpt-17".into());
    let e = generate(&client, unknown).await.err();
    assert!(
        matches!(&e, Some(ClientError::Spark(SparkError::UnknownModel { available, .. })) if !available.is_empty()),
        "{e:?}"
    );

    let mut empty = story(8);
    empty.prompt = Prompt::Raw("   ".into());
    let e = generate(&client, empty).await.err();
    assert!(
        matches!(&e, Some(ClientError::Spark(SparkError::Invalid(d))) if d.contains("empty")),
        "{e:?}"
    );

    let e = generate(&client, story(1_000_000)).await.err();
    assert!(
        matches!(
            &e,
            Some(ClientError::Spark(SparkError::MaxTokensTooLarge { .. }))
        ),
        "{e:?}"
    );

    let mut long = story(8);
    long.prompt = Prompt::Raw("word ".repeat(6000));
    let e = generate(&client, long).await.err();
    assert!(
        matches!(
            &e,
            Some(ClientError::Spark(SparkError::PromptTooLong { .. }))
        ),
        "{e:?}"
    );
    println!("{}", e.map(|e| e.to_string()).unwrap_or_default());

    let e = client.embed(None, vec!["x".into(); 300]).await.err();
    assert!(
        matches!(
            &e,
            Some(ClientError::Spark(SparkError::BatchTooLarge {
                texts: 300,
                ..
            }))
        ),
        "{e:?}"
    );

    let e = client.embed(None, Vec::new()).await.err();
    assert!(
        matches!(&e, Some(ClientError::Spark(SparkError::Invalid(_)))),
        "{e:?}"
    );

    // A malformed request: an embedding request sent to `spark.generate`.
    let wrong = EmbedRequest {
        request_id: new_request_id(),
        model: None,
        texts: vec!["hello".into()],
    };
    let mut answers = bus
        .request_stream::<_, GenerateEvent>(&spark::operation(spark::GENERATE), &wrong)
        .await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), answers.next()).await?;
    match answer {
        Some(Ok(m)) => assert!(
            matches!(&m.message, GenerateEvent::Failed(SparkError::Invalid(d)) if d.contains("not a generate request")),
            "{:?}",
            m.message
        ),
        other => anyhow::bail!("no clear answer to a malformed request: {other:?}"),
    }

    // Above the operation's declared size limit (256 KiB for `spark.generate`), below the
    // bus's 1 MiB: the kit refuses it before the handler sees it, and says why.
    let mut huge = story(8);
    huge.prompt = Prompt::Raw("word ".repeat(60_000));
    let e = generate(&client, huge).await.err();
    assert!(
        matches!(&e, Some(ClientError::Spark(SparkError::Invalid(d))) if d.contains("spark.generate takes at most 262144")),
        "{e:?}"
    );

    // Still serving, both operations.
    let (_, ok) = generate(&client, story(4)).await?;
    assert_eq!(ok.usage.completion_tokens, 4);
    assert_eq!(
        client
            .embed(None, vec!["still here".into()])
            .await?
            .vectors
            .len(),
        1
    );
    let models = client.models().await?;
    assert!(models
        .models
        .iter()
        .any(|m| m.name == "all-MiniLM-L6-v2" && m.served));
    assert!(models
        .models
        .iter()
        .any(|m| m.format == "gguf" && m.quantization == "Q8_0"));
    Ok(())
}

/// `$SRV.STATS.spark` as an auditor sees it (micro-service discovery is the auditors' right).
async fn spark_stats(eco: &TestEcosystem) -> anyhow::Result<serde_json::Value> {
    let console = Identity::new(
        ozone_bus_schemas::IdentityKind::Auditor,
        ozone_security::pki::CONSOLE_AUDITOR,
    )?;
    let conn = eco.connect(&console).await?;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        conn.client.request("$SRV.STATS.spark", "".into()),
    )
    .await??;
    Ok(serde_json::from_slice(&reply.payload)?)
}

fn generate_data(stats: &serde_json::Value) -> serde_json::Value {
    stats["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["subject"] == "spark.generate"))
        .map(|e| e["data"].clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_the_work_and_an_abandoned_generation_stops() -> anyhow::Result<()> {
    let (eco, _workers, client, _bus) = pool(1, &[], ClientOptions::default()).await?;
    generate(&client, story(12)).await?;
    client.embed(None, vec!["one".into(), "two".into()]).await?;

    // The requester goes away after 3 tokens (its future is dropped): no more keepalives.
    let mut seen = 0;
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::select! {
        _ = client.generate(story(400), None, |_| {
            seen += 1;
            if seen == 3 {
                let _ = stop_tx.send(());
            }
        }) => anyhow::bail!("a 400-token story finished before the requester left"),
        _ = stop_rx.recv() => {}
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let data = loop {
        let data = generate_data(&spark_stats(&eco).await?);
        if data["totals"]["cancelled"] == 1 || Instant::now() > deadline {
            break data;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("{}", serde_json::to_string_pretty(&data)?);
    assert_eq!(
        data["totals"]["cancelled"], 1,
        "the abandoned generation was not stopped"
    );
    assert!(data["tokens_per_s"].as_f64().unwrap_or(0.0) > 1.0);
    assert!(data["time_to_first_token_ms_avg"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(data["queue_wait_ms_avg"].as_f64().is_some());
    assert_eq!(data["load"]["generation_slots"], 2);
    assert_eq!(data["load"]["generations_running"], 0);
    assert_eq!(data["totals"]["embed_texts"], 2);
    // The kit's own count for this operation: two generations taken, one answered, the
    // abandoned one failed (cancelled).
    assert_eq!(data["operation"]["requests"], 2, "{data}");
    assert_eq!(data["operation"]["answered"], 1, "{data}");
    assert_eq!(data["operation"]["failed"], 1, "{data}");
    Ok(())
}
