//! The encrypted bus end to end on a real server: typed request/reply and events between
//! components, nothing readable on the wire, bad input refused without stopping the service.

use ozone_bus_schemas::{Component, Identity, IdentityKind, Subject};
use ozone_nats::bus::{Bus, BusError};
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
                "urn:ozone:device:wiretap",
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
                    assert_eq!(req.sender, "ozone-studio");
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
        (got.sender.as_str(), got.message.prompt.as_str()),
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
