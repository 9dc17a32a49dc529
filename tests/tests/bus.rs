//! The encrypted bus end to end on a real server: typed request/reply and events between
//! components, nothing readable on the wire, bad input refused without stopping the service.

use ozone_bus_schemas::{Component, Identity, IdentityKind, Subject};
use ozone_nats::bus::{Bus, BusError};
use ozone_security::envelope::{VERSION, VERSION_COMPACT};
use ozone_tests::{bus_keys, with_permissions, TestEcosystem};
use serde::{Deserialize, Serialize};
use std::time::Duration;

type R = anyhow::Result<()>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ask {
    prompt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Answer {
    text: String,
    tokens: u32,
}

const MARKER: &str = "MARKER-7f3c-capital-of-france";

#[tokio::test]
async fn sealed_request_reply_and_events_leave_no_plaintext_on_the_wire() -> R {
    // A privileged wiretap in the ecosystem account that sees every subject (except the sync
    // subjects: a subscriber there would answer the round trips the bus relies on).
    let eco = TestEcosystem::start_with(
        |t| t.issue(IdentityKind::Device, "wiretap").map(|_| ()),
        |config| {
            with_permissions(
                &config,
                &Identity::new(IdentityKind::Device, "wiretap")
                    .unwrap_or_else(|e| panic!("{e}")),
                r#"{ publish: { allow: ["nexus.device.wiretap.>"] }, subscribe: { allow: [">"], deny: ["ecosystem.sync.>"] } }"#,
            )
        },
    )
    .await?;
    let wiretap = eco
        .connect(&Identity::new(IdentityKind::Device, "wiretap")?)
        .await?;
    let mut wire = wiretap.client.subscribe(">").await?;
    // It hears its own publish once its `>` subscription is live.
    wiretap
        .client
        .publish("nexus.device.wiretap.live", "live?".into())
        .await?;
    let echo =
        tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut wire)).await?;
    assert_eq!(
        echo.map(|m| m.subject.to_string()).as_deref(),
        Some("nexus.device.wiretap.live")
    );

    let mut keys = bus_keys(&eco.t.home)?;
    let mut take = |c: Component| {
        keys.remove(&c)
            .ok_or_else(|| anyhow::anyhow!("no keys for {c}"))
    };
    let spark = Bus::new(
        eco.connect(&Identity::component(Component::Spark)).await?,
        take(Component::Spark)?,
    );
    let core = Bus::new(
        eco.connect(&Identity::component(Component::Core)).await?,
        take(Component::Core)?,
    );
    let cognis = Bus::new(
        eco.connect(&Identity::component(Component::Cognis)).await?,
        take(Component::Cognis)?,
    );

    let generate = Subject::component_request(Component::Spark, "generate")?;
    let mut work = spark.subscribe::<Ask>(&generate, Some("spark")).await?;
    let server = spark.clone();
    let serving = tokio::spawn(async move {
        let mut refused = Vec::new();
        while let Some(next) = work.next().await {
            match next {
                Ok(req) => {
                    assert_eq!(&*req.sender, "ozone-studio");
                    let answer = Answer {
                        text: format!("Paris ({})", req.message.prompt),
                        tokens: 3,
                    };
                    server.reply(&req, &answer).await?;
                }
                // Bad input is refused and the worker keeps serving.
                Err(e) => refused.push(e.to_string()),
            }
            if refused.len() == 2 {
                break;
            }
        }
        anyhow::Ok(refused)
    });

    let answer: Answer = core
        .request(
            &generate,
            &Ask {
                prompt: MARKER.into(),
            },
            Duration::from_secs(5),
        )
        .await?;
    assert_eq!(
        answer,
        Answer {
            text: format!("Paris ({MARKER})"),
            tokens: 3
        }
    );

    // An event to every component: COGNIS opens it, and it names its real sender.
    let phase = Subject::phase_announce(Component::Core);
    let mut phases = cognis.subscribe::<Ask>(&Subject::phase_all(), None).await?;
    core.publish(
        &phase,
        &Ask {
            prompt: MARKER.into(),
        },
    )
    .await?;
    let got = tokio::time::timeout(Duration::from_secs(5), phases.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))??;
    assert_eq!(
        (&*got.sender, got.message.prompt.as_str()),
        ("ozone-studio", MARKER)
    );

    // Garbage and a replayed request reach SPARK: both refused, SPARK still up.
    core.connection()
        .client
        .publish(generate.to_string(), "not an envelope".into())
        .await?;
    core.connection().sync().await?;
    let mut seen = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(
        Duration::from_millis(300),
        futures::StreamExt::next(&mut wire),
    )
    .await
    {
        seen.push(m);
    }
    let captured = seen
        .iter()
        .find(|m| m.subject.as_str() == "spark.generate" && m.payload.len() > 100)
        .ok_or_else(|| anyhow::anyhow!("wiretap saw no request"))?;
    core.connection()
        .client
        .publish(generate.to_string(), captured.payload.clone())
        .await?;
    let refused = tokio::time::timeout(Duration::from_secs(5), serving).await???;
    assert!(refused[0].contains("malformed"), "{refused:?}");
    assert!(refused[1].contains("replayed"), "{refused:?}");

    // The wiretap saw the request, the reply and the event, and no plaintext at all.
    let subjects: Vec<&str> = seen.iter().map(|m| m.subject.as_str()).collect();
    assert!(
        subjects.contains(&"spark.generate") && subjects.contains(&"ecosystem.phase.ozone-studio"),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("_INBOX.ozone-studio.")),
        "{subjects:?}"
    );
    for m in &seen {
        let marker = MARKER.as_bytes();
        assert!(
            !m.payload.windows(marker.len()).any(|w| w == marker),
            "plaintext on {}",
            m.subject
        );
        assert!(
            !m.payload.windows(5).any(|w| w == b"Paris"),
            "plaintext reply on {}",
            m.subject
        );
    }
    Ok(())
}

#[tokio::test]
async fn permission_violations_become_access_denied() -> R {
    let eco = TestEcosystem::start().await?;
    let mut keys = bus_keys(&eco.t.home)?;
    let spark_keys = keys
        .remove(&Component::Spark)
        .ok_or_else(|| anyhow::anyhow!("keys"))?;
    let spark = Bus::new(
        eco.connect(&Identity::component(Component::Spark)).await?,
        spark_keys,
    );
    let other = Subject::component_request(Component::Cognis, "remember")?;
    match spark.subscribe::<Ask>(&other, Some("cognis")).await {
        Err(BusError::AccessDenied(s)) => assert_eq!(s, "cognis.remember"),
        other => anyhow::bail!("expected access denied, got {other:?}"),
    }
    match spark
        .publish(
            &Subject::phase_announce(Component::Cognis),
            &Ask { prompt: "x".into() },
        )
        .await
    {
        Err(BusError::AccessDenied(s)) => assert_eq!(s, "ecosystem.phase.cognis"),
        other => anyhow::bail!("expected access denied, got {other:?}"),
    }
    match spark
        .request::<_, Answer>(&other, &Ask { prompt: "x".into() }, Duration::from_secs(3))
        .await
    {
        Err(BusError::AccessDenied(_)) => {}
        other => anyhow::bail!("expected access denied, got {other:?}"),
    }
    Ok(())
}

/// Serves `spark.generate` in SPARK's queue group, answering with `label`, until aborted.
/// Returns once the subscription is live.
async fn serve(
    bus: Bus,
    label: &'static str,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let generate = Subject::component_request(Component::Spark, "generate")?;
    let mut work = bus.subscribe::<Ask>(&generate, Some("spark")).await?;
    Ok(tokio::spawn(async move {
        while let Some(next) = work.next().await {
            // Refused input (reported and audited by the bus) does not stop the worker.
            let Ok(req) = next else { continue };
            let answer = Answer {
                text: format!("{label}: {}", req.message.prompt),
                tokens: 1,
            };
            bus.reply(&req, &answer).await?;
        }
        Ok(())
    }))
}

/// A tap with SPARK's identity, outside any queue group: it sees every envelope on `subject`.
/// The connection is returned to be kept alive with the subscription.
async fn tap(
    eco: &TestEcosystem,
    subject: &Subject,
) -> anyhow::Result<(ozone_nats::Connection, async_nats::Subscriber)> {
    let conn = eco.connect(&Identity::component(Component::Spark)).await?;
    let sub = conn.client.subscribe(subject.to_string()).await?;
    conn.sync().await?;
    Ok((conn, sub))
}

/// The next envelope the tap saw.
async fn next_tapped(tap: &mut async_nats::Subscriber) -> anyhow::Result<async_nats::Message> {
    tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(tap))
        .await?
        .ok_or_else(|| anyhow::anyhow!("tap closed"))
}

#[tokio::test]
async fn a_worker_started_later_opens_compact_envelopes_through_the_session_record() -> R {
    let eco = TestEcosystem::start().await?;
    let core = eco.join(Component::Core).await?;
    let generate = Subject::component_request(Component::Spark, "generate")?;
    let (_tap_conn, mut tap) = tap(&eco, &generate).await?;
    let version = |m: &async_nats::Message| m.payload.get(2).copied();

    let first = serve(eco.join(Component::Spark).await?, "first").await?;
    let ask = |prompt: &str| Ask {
        prompt: prompt.into(),
    };
    // The session's first requests are full envelopes; once its record is stored they turn
    // compact (38 + 16 bytes of envelope instead of 100 + 16).
    let mut compact = None;
    for i in 0..100 {
        let answer: Answer = core
            .request(&generate, &ask(&format!("q{i}")), Duration::from_secs(5))
            .await?;
        assert_eq!(answer.text, format!("first: q{i}"));
        let seen = next_tapped(&mut tap).await?;
        if i == 0 {
            assert_eq!(
                version(&seen),
                Some(VERSION),
                "a session starts with a full envelope"
            );
        }
        if version(&seen) == Some(VERSION_COMPACT) {
            compact = Some(seen);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let compact = compact.ok_or_else(|| anyhow::anyhow!("requests never turned compact"))?;
    assert!(
        compact.payload.len() < 120,
        "{} bytes for a short request",
        compact.payload.len()
    );

    // The first worker leaves; a second one joins with the same keys and an empty session
    // cache, as a process started a minute later would.
    first.abort();
    let _ = first.await;
    let second = eco.join(Component::Spark).await?;
    let second_serving = serve(second, "second").await?;
    let answer: Answer = core
        .request(&generate, &ask("late"), Duration::from_secs(5))
        .await?;
    assert_eq!(answer.text, "second: late");
    let seen = next_tapped(&mut tap).await?;
    assert_eq!(
        version(&seen),
        Some(VERSION_COMPACT),
        "the late worker got a compact envelope"
    );

    // A compact envelope with one bit flipped, and one naming a session nobody stored, are
    // refused; the worker keeps serving.
    let mut flipped = compact.payload.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut unknown = compact.payload.to_vec();
    unknown[14] ^= 0xff; // inside the session id
    for bad in [flipped, unknown] {
        core.connection()
            .client
            .publish(generate.to_string(), bad.into())
            .await?;
    }
    core.connection().sync().await?;
    let answer: Answer = core
        .request(&generate, &ask("still"), Duration::from_secs(5))
        .await?;
    assert_eq!(answer.text, "second: still");
    assert!(!second_serving.is_finished());
    second_serving.abort();
    Ok(())
}

#[tokio::test]
async fn a_burst_is_opened_in_order_with_each_bad_message_refused_in_its_place() -> R {
    let eco = TestEcosystem::start().await?;
    let core = eco.join(Component::Core).await?;
    let spark = eco.join(Component::Spark).await?;
    let generate = Subject::component_request(Component::Spark, "generate")?;
    let (_tap_conn, mut tap) = tap(&eco, &generate).await?;
    let ask = |prompt: String| Ask { prompt };

    // Warm up until the core's session to SPARK is compact (its record stored).
    let mut warm = spark.subscribe::<Ask>(&generate, None).await?;
    let mut compact = false;
    for i in 0..100 {
        core.publish(&generate, &ask(format!("warm{i}"))).await?;
        warm.next()
            .await
            .ok_or_else(|| anyhow::anyhow!("closed"))??;
        let seen = next_tapped(&mut tap).await?;
        if seen.payload.get(2) == Some(&VERSION_COMPACT) {
            compact = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(compact, "the session never turned compact");

    // A second SPARK process with an empty session cache subscribes; a burst arrives before
    // it reads, with garbage at three places. Its first batch opens only through the
    // session record, every later message of the batch waits on that, and the garbage is
    // refused where it stood.
    let late = eco.join(Component::Spark).await?;
    let mut sub = late.subscribe::<Ask>(&generate, None).await?;
    let garbage_at = [10, 50, 90];
    for i in 0..103 {
        if garbage_at.contains(&i) {
            core.connection()
                .client
                .publish(generate.to_string(), format!("garbage {i}").into())
                .await?;
        } else {
            core.publish_nowait(&generate, &ask(format!("q{i}")))
                .await?;
        }
    }
    core.connection().sync().await?;
    for i in 0..103 {
        let next = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        if garbage_at.contains(&i) {
            let err = next
                .err()
                .ok_or_else(|| anyhow::anyhow!("garbage {i} opened"))?;
            assert!(matches!(err, BusError::Envelope { .. }), "{err}");
        } else {
            let got = next?;
            assert_eq!(
                (&*got.sender, got.message.prompt.as_str()),
                ("ozone-studio", format!("q{i}").as_str())
            );
        }
    }
    Ok(())
}
