//! A rogue but authenticated component (FORGE, with its real certificate and permissions)
//! attacking the bus, against a real nats-server from the generated configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_tests::{with_permissions, TestEcosystem};
use std::time::Duration;

type R = anyhow::Result<()>;

#[tokio::test]
async fn probe_srv_without_allow_responses() -> R {
    let eco = TestEcosystem::start_with(
        |_| Ok(()),
        |config| {
            with_permissions(
                &config,
                "spark.local",
                r#"{ publish: { allow: ["ecosystem.sync.spark", "_INBOX.forge.>"] }, subscribe: { allow: ["spark.>", "$SRV.>"] } }"#,
            )
        },
    )
    .await?;
    let spark = eco.connect(&Identity::component(Component::Spark)).await?;
    let mut work = spark.client.subscribe("$SRV.PING.spark").await?;
    spark.client.flush().await?;
    let auditor = eco.connect(&Identity::new(IdentityKind::Auditor, "console")?).await?;
    let asking = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(3), auditor.client.request("$SRV.PING.spark", "".into())).await
    });
    let m = tokio::time::timeout(Duration::from_secs(3), work.next()).await?.unwrap();
    eprintln!("PROBE srv reply subject {:?}", m.reply);
    spark.client.publish(m.reply.clone().unwrap(), "pong".into()).await?;
    spark.client.flush().await?;
    eprintln!("PROBE srv answer: {:?}", asking.await?.map(|r| r.map(|m| m.payload)));
    Ok(())
}

#[tokio::test]
async fn probe_push_consumer() -> R {
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
    let mut wire = wiretap.client.subscribe(std::env::var("PROBE_SUB").unwrap_or("ecosystem.phase.>".into())).await?;
    wiretap.client.flush().await?;
    let forge = eco.connect(&Identity::component(Component::Forge)).await?;
    ozone_nats::SessionStore::open(&forge.client).await?;
    let mut events = forge.events();
    forge.client.publish("$KV.ozone-sessions.forge.abc", "junk".into()).await?;
    forge.client.flush().await?;
    let js = async_nats::jetstream::new(forge.client.clone());
    let stream = js.get_stream("KV_ozone-sessions").await?;
    let made = stream
        .create_consumer(async_nats::jetstream::consumer::push::Config {
            deliver_subject: "ecosystem.phase.spark".into(),
            ..Default::default()
        })
        .await;
    eprintln!("PROBE consumer create: {:?}", made.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    let mut stream = stream;
    eprintln!("PROBE stream: {:?}", stream.info().await.map(|i| i.state.clone()));
    if let Ok(mut c) = made { eprintln!("PROBE consumer: {:?}", c.info().await.map(|i| (i.delivered.clone(), i.num_pending, i.push_bound, i.config.ack_policy))); }
    let got = tokio::time::timeout(Duration::from_secs(2), wire.next()).await;
    eprintln!("PROBE delivered: {:?}", got.map(|m| m.map(|m| (m.subject, m.payload))));
    while let Ok(e) = events.try_recv() { eprintln!("PROBE event {e:?}"); }
    Ok(())
}
