//! A rogue but authenticated component (FORGE, with its real certificate and permissions)
//! attacking the bus, against a real nats-server from the generated configuration: each test
//! is named after the finding of issue 18 it closes, performs the attack, and shows that it
//! fails and that the refusal is audited where the bus detects it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_nats::jetstream;
use futures::StreamExt;
use ozone_bus_schemas::phase::{Ping, PingReply, PHASE_STREAM};
use ozone_bus_schemas::streams::{KEY_STREAM, SESSION_STREAM};
use ozone_bus_schemas::{AuditKind, Component, Identity, Subject};
use ozone_nats::bus::Bus;
use ozone_nats::client::Violation;
use ozone_nats::SessionStore;
use ozone_security::envelope::Rotation;
use ozone_tests::{audit_events, audited, expect_violation, TestEcosystem};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(5);
/// Long enough for a delivery on loopback that should not happen to have happened.
const QUIET: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ask {
    n: u32,
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> anyhow::Result<u64> {
    Ok(js.get_stream(name).await?.info().await?.state.messages)
}

#[tokio::test]
async fn finding_02_a_reply_goes_only_to_the_requesters_inbox() -> R {
    let eco = TestEcosystem::start().await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let spark = eco.join(Component::Spark).await?;
    let forge = eco.join(Component::Forge).await?;
    let cognis = eco.connect(&Identity::component(Component::Cognis)).await?;
    SessionStore::open(&cognis.client).await?;
    let js = jetstream::new(cognis.client.clone());
    js.get_or_create_stream(jetstream::stream::Config {
        name: PHASE_STREAM.into(),
        subjects: vec![Subject::phase_all().to_string()],
        max_messages_per_subject: 1,
        ..Default::default()
    })
    .await?;
    // Something in each stream a purge would remove.
    cognis
        .client
        .publish(
            Subject::phase_announce(Component::Cognis).to_string(),
            "x".into(),
        )
        .await?;
    cognis
        .client
        .publish("$KV.ozone-sessions.cognis.00", "record".into())
        .await?;
    cognis.sync().await?;
    let before = [
        stream_messages(&js, KEY_STREAM).await?,
        stream_messages(&js, SESSION_STREAM).await?,
        stream_messages(&js, PHASE_STREAM).await?,
    ];
    assert!(before.iter().all(|n| *n > 0), "{before:?}");
    let mut phase_cognis = cognis
        .client
        .subscribe(Subject::phase_announce(Component::Cognis).to_string())
        .await?;
    cognis.sync().await?;

    // SPARK serves through its bus and answers every request it opens.
    let generate = Subject::component_request(Component::Spark, "generate")?;
    let mut work = spark.subscribe::<Ask>(&generate, Some("spark")).await?;
    let server = spark.clone();
    let refusals = tokio::spawn(async move {
        let mut refused = Vec::new();
        while let Some(next) = work.next().await {
            match next {
                Ok(req) => {
                    let _ = server.reply(&req, &req.message).await;
                }
                Err(e) => refused.push(e.to_string()),
            }
        }
        refused
    });

    // FORGE, a legitimate caller of SPARK, seals real requests with borrowed reply subjects.
    let epoch = Rotation::daily().epoch_at(ozone_nats::bus::now_ms());
    let targets = [
        format!("$JS.API.STREAM.PURGE.{KEY_STREAM}"),
        format!("$JS.API.STREAM.PURGE.{SESSION_STREAM}"),
        format!("$JS.API.STREAM.PURGE.{PHASE_STREAM}"),
        format!("$KV.ozone-keys.component.cognis.{}", epoch % 4),
        Subject::phase_announce(Component::Cognis).to_string(),
        "audit.cognis.keys".to_string(),
    ];
    let raw = forge.connection().client.clone();
    for (n, reply) in targets.iter().enumerate() {
        let sealed = forge.seal(&generate, &Ask { n: n as u32 })?;
        raw.publish_with_reply(generate.to_string(), reply.clone(), sealed)
            .await?;
    }
    raw.flush().await?;
    // A request with an honest reply subject is still answered.
    let answer: Ask = forge.request(&generate, &Ask { n: 99 }, WAIT).await?;
    assert_eq!(answer, Ask { n: 99 });

    // Even a responder without the bus's check could not answer there: the server refuses.
    let spark_raw = eco.connect(&Identity::component(Component::Spark)).await?;
    for reply in &targets {
        let mut events = spark_raw.events();
        spark_raw
            .client
            .publish(reply.clone(), "junk".into())
            .await?;
        spark_raw.client.flush().await?;
        expect_violation(&spark_raw, &mut events, Violation::Publish(reply.clone())).await?;
    }

    // Nothing purged, nothing written under COGNIS's name.
    tokio::time::sleep(QUIET).await;
    let after = [
        stream_messages(&js, KEY_STREAM).await?,
        stream_messages(&js, SESSION_STREAM).await?,
        stream_messages(&js, PHASE_STREAM).await?,
    ];
    assert!(
        after.iter().zip(before).all(|(a, b)| *a >= b),
        "{before:?} → {after:?}"
    );
    assert!(
        tokio::time::timeout(QUIET, phase_cognis.next())
            .await
            .is_err(),
        "something was published as COGNIS's phase"
    );
    let kv = js.get_key_value("ozone-keys").await?;
    assert!(kv.get(format!("component.cognis.{epoch}")).await?.is_none());

    // SPARK's bus refused each of the six, and audited each.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused: Vec<String> = audit_events(&eco, "console")
            .await?
            .into_iter()
            .filter_map(|(by, e)| match e {
                AuditKind::MessageRejected {
                    reason,
                    claimed_sender,
                    ..
                } if by == "spark" && claimed_sender.as_deref() == Some("forge") => Some(reason),
                _ => None,
            })
            .collect();
        let all = targets.iter().all(|t| {
            refused
                .iter()
                .any(|r| r.contains(t) && r.contains("not the inbox"))
        });
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "not all audited: {refused:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    refusals.abort();
    Ok(())
}

#[tokio::test]
async fn finding_03_no_component_may_create_a_consumer_and_a_redirected_read_is_refused() -> R {
    let eco = TestEcosystem::start().await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let forge = eco.join(Component::Forge).await?;
    let cognis = eco.join(Component::Cognis).await?;
    let raw = forge.connection().client.clone();
    let mut events = forge.connection().events();
    SessionStore::open(&raw).await?;
    ozone_nats::phase_stream::ensure(&raw).await?;

    // COGNIS listens to SPARK's phase.
    let spark_phase = Subject::phase_announce(Component::Spark);
    let mut listening = cognis.subscribe::<Ask>(&spark_phase, None).await?;

    // FORGE stores a genuinely sealed announcement of its own where it may write…
    let own = Subject::phase_announce(Component::Forge);
    let stored_at = "$KV.ozone-sessions.forge.00";
    raw.publish(stored_at, forge.seal(&own, &Ask { n: 2 })?)
        .await?;
    raw.flush().await?;

    // …and asks JetStream for a consumer delivering it to `ecosystem.phase.spark`, on every
    // stream components use, ephemeral or named: the server refuses each request outright
    // (a consumer's configuration chooses where the server delivers; components get none).
    let push = serde_json::json!({
        "config": { "deliver_subject": spark_phase.as_str(), "ack_policy": "none" }
    });
    for stream in [KEY_STREAM, SESSION_STREAM, PHASE_STREAM] {
        for api in [
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.redirect.>"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.redirect"),
        ] {
            raw.publish_with_reply(api.clone(), raw.new_inbox(), push.to_string().into())
                .await?;
            expect_violation(forge.connection(), &mut events, Violation::Publish(api)).await?;
        }
    }

    // The read it keeps, a direct get, answers to whatever reply subject the caller names:
    // aimed at `ecosystem.phase.spark`, the stored envelope arrives there, and COGNIS's bus
    // refuses it (FORGE does not publish there, and the envelope is bound to FORGE's own
    // phase subject) and audits it.
    let get = serde_json::json!({ "last_by_subj": stored_at });
    raw.publish_with_reply(
        Subject::direct_get(SESSION_STREAM).to_string(),
        spark_phase.to_string(),
        get.to_string().into(),
    )
    .await?;
    raw.flush().await?;
    let got = tokio::time::timeout(WAIT, listening.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert!(got.is_err(), "a redirected read was accepted: {got:?}");
    audited(&eco, "the redirected read", |by, e| {
        by == "cognis"
            && matches!(e, AuditKind::MessageRejected { subject, claimed_sender, .. }
                if subject == spark_phase.as_str() && claimed_sender.as_deref() == Some("forge"))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_17_killing_nats_server_under_load_loses_no_request() -> R {
    let TestEcosystem { server, t } = TestEcosystem::start().await?;
    let connect = |c: Component| {
        let t = &t;
        async move {
            let conn = t.connect(&Identity::component(c)).await?;
            anyhow::Ok(Bus::start(conn, &t.home, Rotation::daily()).await?)
        }
    };
    let spark = connect(Component::Spark).await?;
    let core = connect(Component::Core).await?;
    let echo = Subject::component_request(Component::Spark, "echo")?;
    let mut work = spark.subscribe::<Ask>(&echo, Some("spark")).await?;
    let responder = spark.clone();
    let serving = tokio::spawn(async move {
        while let Some(next) = work.next().await {
            if let Ok(req) = next {
                let _ = responder.reply(&req, &req.message).await;
            }
        }
    });

    // A steady load: four requesters, one request each at a time, each with a 10 s deadline.
    let stop = Arc::new(AtomicBool::new(false));
    let load = (0..4u32).map(|k| {
        let (core, echo, stop) = (core.clone(), echo.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut sent, mut lost) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let n = k * 1_000_000 + sent;
                sent += 1;
                match core
                    .request::<Ask, Ask>(&echo, &Ask { n }, Duration::from_secs(10))
                    .await
                {
                    Ok(a) if a.n == n => {}
                    other => lost.push(format!("{n}: {other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (sent, lost)
        })
    });
    let load: Vec<_> = load.collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // kill -9, then the same server again on the same port (what the supervisor does).
    let pid = nix::unistd::Pid::from_raw(server.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)?;
    let mut server = server;
    server.wait().await;
    let restarted = Instant::now();
    let _server = t.start_server().await?;
    eprintln!("nats-server back after {:?}", restarted.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut sent, mut lost) = (0, Vec::new());
    for l in load {
        let (s, l) = l.await?;
        sent += s;
        lost.extend(l);
    }
    serving.abort();
    eprintln!("{sent} requests, {} lost", lost.len());
    assert!(sent > 100, "too little load: {sent}");
    assert!(lost.is_empty(), "{} of {sent} lost: {lost:?}", lost.len());
    Ok(())
}

#[tokio::test]
async fn finding_11_junk_from_an_unknown_sender_does_not_stall_a_broadcast() -> R {
    let eco = TestEcosystem::start().await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let spark = eco.join(Component::Spark).await?;
    let cognis = eco.join(Component::Cognis).await?;
    // FORGE seals with a key it never published: every directory on the bus lacks it.
    let mut keys = ozone_tests::bus_keys(&eco.t.home)?;
    let unpublished = keys
        .remove(&Component::Forge)
        .ok_or_else(|| anyhow::anyhow!("no FORGE keys"))?;
    let forge = Bus::new(
        eco.connect(&Identity::component(Component::Forge)).await?,
        unpublished,
    );
    let mut phases = cognis.subscribe::<Ask>(&Subject::phase_all(), None).await?;

    const JUNK: u32 = 20;
    let own = Subject::phase_announce(Component::Forge);
    for n in 0..JUNK {
        forge.publish_nowait(&own, &Ask { n }).await?;
    }
    forge.connection().client.flush().await?;
    let sent = Instant::now();
    spark
        .publish(&Subject::phase_announce(Component::Spark), &Ask { n: 7 })
        .await?;

    // SPARK's announcement comes first, long before 20 waits of 150 ms one after another.
    let first = tokio::time::timeout(WAIT, phases.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    let first = first?;
    let waited = sent.elapsed();
    assert_eq!((&*first.sender, first.message.n), ("spark", 7));
    assert!(waited < Duration::from_millis(1_000), "{waited:?}");
    // Then every junk message is refused, as from an unknown sender, and audited.
    for _ in 0..JUNK {
        let next = tokio::time::timeout(WAIT, phases.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        assert!(next.is_err(), "{next:?}");
    }
    audited(&eco, "the unknown sender's junk", |by, e| {
        by == "cognis"
            && matches!(e, AuditKind::MessageRejected { subject, claimed_sender, .. }
                if subject == own.as_str() && claimed_sender.as_deref() == Some("forge"))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn finding_11_a_ping_naming_another_sender_is_refused_and_audited() -> R {
    let eco = TestEcosystem::start().await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    // A real SPARK worker (phase 0: it waits for nobody, so it answers pings once up).
    let _spark =
        ozone_tests::SparkProcess::start(env!("CARGO_BIN_EXE_ozone-cli"), &eco.t.home, &[])?;
    let forge = eco.join(Component::Forge).await?;
    let ping = Subject::ping(Component::Spark);
    let ask = |from: Component| {
        let forge = forge.clone();
        let ping = ping.clone();
        async move {
            forge
                .request::<_, PingReply>(
                    &ping,
                    &Ping {
                        from: from.name().into(),
                    },
                    Duration::from_secs(3),
                )
                .await
        }
    };
    // FORGE naming itself is answered…
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = ask(Component::Forge).await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "SPARK never answered a ping: {e}; its log:\n{}",
            std::fs::read_to_string(eco.t.home.logs().join("spark.log")).unwrap_or_default()
        );
        // A refusal before SPARK's key is known returns at once: give the directory a turn.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …FORGE naming COGNIS gets nothing, and SPARK audits the lie under FORGE's name.
    let lie = ask(Component::Cognis).await;
    assert!(lie.is_err(), "a ping naming cognis was answered: {lie:?}");
    audited(&eco, "the ping naming cognis", |by, e| {
        by == "spark"
            && matches!(e, AuditKind::MessageRejected { subject, reason, claimed_sender }
                if subject == ping.as_str()
                    && reason.contains("names cognis as its sender")
                    && claimed_sender.as_deref() == Some("forge"))
    })
    .await?;
    Ok(())
}
