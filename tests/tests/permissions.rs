//! Least privilege, observed on a real server: for every component one allowed publish and
//! subscribe works, and a forbidden publish, subscribe and queue subscribe are refused — the
//! violation is reported and the message is not delivered.

use futures::StreamExt;
use ozone_bus_schemas::{Component, Identity, Permissions, Subject};
use ozone_nats::client::Violation;
use ozone_nats::Connection;
use ozone_tests::{expect_violation, TestEcosystem};
use std::collections::HashMap;
use std::time::Duration;

type R = anyhow::Result<()>;
const WAIT: Duration = Duration::from_secs(2);
/// Long enough for a delivery on loopback that should not happen to have happened.
const QUIET: Duration = Duration::from_millis(400);

async fn connect_all(eco: &TestEcosystem) -> anyhow::Result<HashMap<Component, Connection>> {
    let mut all = HashMap::new();
    for c in Component::ALL {
        all.insert(c, eco.connect(&Identity::component(c)).await?);
    }
    Ok(all)
}

fn conn(all: &HashMap<Component, Connection>, c: Component) -> anyhow::Result<&Connection> {
    all.get(&c)
        .ok_or_else(|| anyhow::anyhow!("{c} not connected"))
}

/// A component other than `c` that may publish to `target`'s requests.
fn caller_of(target: Component, not: Component) -> Option<Component> {
    Component::ALL
        .into_iter()
        .find(|o| *o != not && *o != target && o.calls().contains(&target))
}

#[tokio::test]
async fn every_component_has_exactly_its_permissions() -> R {
    let eco = TestEcosystem::start().await?;
    let all = connect_all(&eco).await?;
    for c in Component::ALL {
        let me = conn(&all, c)?;
        let perms =
            Permissions::of(&Identity::component(c)).ok_or_else(|| anyhow::anyhow!("no perms"))?;
        let observer_c = if c == Component::Spark {
            Component::Cognis
        } else {
            Component::Spark
        };
        let observer = conn(&all, observer_c)?;

        // Allowed publish: my readiness announcement reaches another component.
        let mut watch = observer
            .client
            .subscribe(Subject::phase_all().to_string())
            .await?;
        observer.sync().await?;
        me.client
            .publish(Subject::phase_announce(c).to_string(), "ready".into())
            .await?;
        me.client.flush().await?;
        let got = tokio::time::timeout(WAIT, watch.next())
            .await
            .ok()
            .flatten();
        anyhow::ensure!(
            got.is_some_and(|m| m.subject.as_str() == Subject::phase_announce(c).as_str()),
            "{c}: allowed publish not delivered"
        );

        // Allowed subscribe: I receive another component's announcement.
        let mut mine = me
            .client
            .subscribe(Subject::phase_all().to_string())
            .await?;
        me.sync().await?;
        observer
            .client
            .publish(
                Subject::phase_announce(observer_c).to_string(),
                "ready".into(),
            )
            .await?;
        observer.client.flush().await?;
        anyhow::ensure!(
            tokio::time::timeout(WAIT, mine.next())
                .await
                .ok()
                .flatten()
                .is_some(),
            "{c}: allowed subscribe got nothing"
        );
        drop((watch, mine));

        // Forbidden publish: to a component I never call; its owner must not receive it.
        let victim = Component::ALL
            .into_iter()
            .find(|o| *o != c && !perms.may_publish(&format!("{}.x", o.name())))
            .ok_or_else(|| anyhow::anyhow!("{c} may publish everywhere"))?;
        let victim_conn = conn(&all, victim)?;
        let mut victim_sub = victim_conn
            .client
            .subscribe(format!("{}.forbidden", victim.name()))
            .await?;
        victim_conn.sync().await?;
        let mut events = me.events();
        me.client
            .publish(
                format!("{}.forbidden", victim.name()),
                "must not arrive".into(),
            )
            .await?;
        me.client.flush().await?;
        expect_violation(
            me,
            &mut events,
            Violation::Publish(format!("{}.forbidden", victim.name())),
        )
        .await?;
        me.sync().await?;
        anyhow::ensure!(
            tokio::time::timeout(QUIET, victim_sub.next())
                .await
                .is_err(),
            "{c}: forbidden publish to {victim} was delivered"
        );

        // Forbidden subscribe and queue subscribe: another component's requests.
        let target = if c == Component::Spark {
            Component::Cognis
        } else {
            Component::Spark
        };
        let caller =
            caller_of(target, c).ok_or_else(|| anyhow::anyhow!("nobody calls {target}"))?;
        let subject = format!("{}.generate", target.name());
        let mut plain = me.client.subscribe(subject.clone()).await?;
        me.client.flush().await?;
        expect_violation(me, &mut events, Violation::Subscribe(subject.clone())).await?;
        let mut queued = me
            .client
            .queue_subscribe(subject.clone(), "workers".into())
            .await?;
        me.client.flush().await?;
        expect_violation(me, &mut events, Violation::Subscribe(subject.clone())).await?;
        let caller_conn = conn(&all, caller)?;
        caller_conn
            .client
            .publish(subject.clone(), "secret work".into())
            .await?;
        caller_conn.sync().await?;
        anyhow::ensure!(
            tokio::time::timeout(QUIET, plain.next()).await.is_err(),
            "{c}: forbidden subscription received {subject}"
        );
        anyhow::ensure!(
            tokio::time::timeout(QUIET, queued.next()).await.is_err(),
            "{c}: forbidden queue subscription received {subject}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn requests_get_replies_on_a_private_inbox_only() -> R {
    let eco = TestEcosystem::start().await?;
    let core = eco.connect(&Identity::component(Component::Core)).await?;
    let spark = eco.connect(&Identity::component(Component::Spark)).await?;
    let forge = eco.connect(&Identity::component(Component::Forge)).await?;
    let mut requests = spark.client.subscribe("spark.echo").await?;
    spark.sync().await?;
    let responder = spark.client.clone();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            if let Some(reply) = m.reply {
                // SPARK may publish on its callers' inboxes (the core's among them).
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    // FORGE tries to eavesdrop on the core's replies.
    let mut events = forge.events();
    let mut spy = forge.client.subscribe("_INBOX.ozone-studio.>").await?;
    forge.client.flush().await?;
    expect_violation(
        &forge,
        &mut events,
        Violation::Subscribe("_INBOX.ozone-studio.>".into()),
    )
    .await?;

    let reply =
        tokio::time::timeout(WAIT, core.client.request("spark.echo", "hello".into())).await??;
    assert_eq!(reply.payload.as_ref(), b"hello");
    assert!(
        tokio::time::timeout(QUIET, spy.next()).await.is_err(),
        "FORGE read the core's reply"
    );

    // SPARK may not publish to the inbox of anyone that does not call it (NEXUS calls nobody).
    let mut spark_events = spark.events();
    spark
        .client
        .publish("_INBOX.nexus.unsolicited", "x".into())
        .await?;
    spark.client.flush().await?;
    expect_violation(
        &spark,
        &mut spark_events,
        Violation::Publish("_INBOX.nexus.unsolicited".into()),
    )
    .await?;
    Ok(())
}
